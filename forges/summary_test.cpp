// What a PR's head shows about where it stands: every stage of the queue, in words.
#include "forges/summary.hpp"

#include <doctest/doctest.h>

namespace dmz::forges {
namespace {

namespace q = queue;

q::PullRequest pr(int n, q::PrStatus status) {
  q::PullRequest p;
  p.number = n;
  p.head = q::Sha(40, static_cast<char>('0' + n));
  p.status = status;
  p.approval = q::Approval{p.head, "alice", 1000};
  p.queued_at = n;
  return p;
}

TEST_CASE("summarize: each stage of the queue, with its position, candidate, checks or reasons") {
  q::RepoState s;
  s.prs[1] = pr(1, q::PrStatus::Building);
  s.prs[1].candidate = 7;
  s.prs[2] = pr(2, q::PrStatus::Queued);
  s.prs[3] = pr(3, q::PrStatus::Queued);
  s.prs[3].priority = 5;
  q::Candidate k;
  k.id = 7;
  k.prs = {1};
  k.sha = q::Sha(40, 'c');
  k.status = q::CandidateStatus::Building;
  k.checks["ci/build"] = q::Check{"ci/build", q::CheckState::Success, "", "", 0};
  s.train.push_back(k);
  const std::vector<std::string> required = {"ci/build", "test"};

  auto building = summarize(s, s.prs[1], required);
  REQUIRE(building);
  CHECK(building->state == PullSummary::State::kInProgress);
  CHECK(building->title == "building in candidate 7 (ccccccc)");
  CHECK(building->text == "- ci/build: success\n- test: waiting\n");
  CHECK_FALSE(building->finished());

  // #3's priority puts it first among the waiting.
  auto first = summarize(s, s.prs[3], required);
  REQUIRE(first);
  CHECK(first->state == PullSummary::State::kQueued);
  CHECK(first->title == "queued at position 1 of 2 (priority 5)");
  CHECK(summarize(s, s.prs[2], required)->title == "queued at position 2 of 2");

  auto judging = summarize(s, pr(4, q::PrStatus::Approved), required);
  REQUIRE(judging);
  CHECK(judging->title == "approved by alice; checking the trust policy");

  q::PullRequest failed = pr(5, q::PrStatus::Failed);
  failed.reason = "policy: commit 5555555 is unsigned";
  failed.details = {"commit 5555555 is unsigned", "needs 1 approvals from maintainers, has 0"};
  auto refused = summarize(s, failed, required);
  REQUIRE(refused);
  CHECK(refused->state == PullSummary::State::kFailure);
  CHECK(refused->title == failed.reason);
  CHECK(refused->text ==
        "- commit 5555555 is unsigned\n- needs 1 approvals from maintainers, has 0\n");
  CHECK(refused->finished());

  q::PullRequest merged = pr(6, q::PrStatus::Merged);
  merged.reason = "merged into master at ddddddd";
  CHECK(summarize(s, merged, required)->state == PullSummary::State::kSuccess);
  CHECK(summarize(s, merged, required)->title == "merged into master at ddddddd");

  // Dropped by a push: neutral, with why. Never approved, or closed: nothing to show.
  q::PullRequest dropped = pr(7, q::PrStatus::Open);
  dropped.approval.reset();
  dropped.reason_code = q::Reason::NewPush;
  dropped.reason = "approval dropped: new push";
  CHECK(summarize(s, dropped, required)->title == "not queued: approval dropped: new push");
  q::PullRequest untouched = pr(8, q::PrStatus::Open);
  untouched.approval.reset();
  CHECK_FALSE(summarize(s, untouched, required));
  q::PullRequest closed = pr(9, q::PrStatus::Cancelled);
  closed.reason_code = q::Reason::Closed;
  CHECK_FALSE(summarize(s, closed, required));
}

}  // namespace
}  // namespace dmz::forges

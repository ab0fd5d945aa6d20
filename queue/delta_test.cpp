#include "queue/delta.hpp"

#include <doctest/doctest.h>

namespace dmz::queue {
namespace {

RepoState sample() {
  RepoState s;
  s.repo = "acme/app";
  s.master = std::string(40, 'a');
  for (int n : {1, 2, 3}) {
    PullRequest pr;
    pr.number = n;
    pr.branch = "feature/" + std::to_string(n);
    pr.head = std::string(40, 'b');
    s.prs.emplace(n, pr);
  }
  return s;
}

TEST_CASE("diff of equal states is empty") { CHECK(diff(sample(), sample()).empty()); }

TEST_CASE("diff names the changed, added and removed PRs, and header and train changes") {
  RepoState before = sample(), after = sample();
  after.prs.at(2).status = PrStatus::Queued;
  after.prs.erase(3);
  PullRequest p4;
  p4.number = 4;
  after.prs.emplace(4, p4);
  auto d = diff(before, after);
  CHECK(d.changed_prs == std::vector<int>{2, 4});
  CHECK(d.removed_prs == std::vector<int>{3});
  CHECK_FALSE(d.header_changed);
  CHECK_FALSE(d.train_changed);

  after = sample();
  after.master = std::string(40, 'c');
  CHECK(diff(before, after).header_changed);
  after = sample();
  after.next_candidate = 7;
  CHECK(diff(before, after).header_changed);

  after = sample();
  after.train.push_back(Candidate{});
  CHECK(diff(before, after).train_changed);
  before.train.push_back(Candidate{});
  after.train.back().checks["ci/build"] = Check{"ci/build", CheckState::Success};
  CHECK(diff(before, after).train_changed);
  CHECK(diff(before, after).changed_prs.empty());
}

TEST_CASE("pr_of names the PR of PR events only") {
  CHECK(pr_of(MergeRequested{7}) == 7);
  CHECK(pr_of(PrClosed{3}) == 3);
  CHECK_FALSE(pr_of(Tick{}));
  CHECK_FALSE(pr_of(MasterObserved{}));
  CHECK_FALSE(pr_of(CheckReported{}));
}

}  // namespace
}  // namespace dmz::queue

#include "queue/engine.hpp"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "queue/json.hpp"

using namespace dmz::queue;
using dmz::Code;

namespace {

Sha sha(char c) { return Sha(40, c); }

const Sha kMaster = sha('0');

template <class A>
std::vector<A> all(const Outcome& o) {
  std::vector<A> out;
  for (const auto& a : o.actions)
    if (const auto* x = std::get_if<A>(&a)) out.push_back(*x);
  return out;
}

template <class A>
A only(const Outcome& o) {
  auto found = all<A>(o);
  REQUIRE(found.size() == 1);
  return found.front();
}

template <class A>
bool none(const Outcome& o) {
  return all<A>(o).empty();
}

std::vector<Notify> notices_for(const Outcome& o, int number) {
  std::vector<Notify> out;
  for (const auto& n : all<Notify>(o))
    if (n.number == number) out.push_back(n);
  return out;
}

// A repository with a clock: every helper stamps its event with `now` and advances it.
struct Repo {
  RepoState s;
  Settings cfg;
  Millis now = 1'000'000;

  Repo() {
    s.repo = "acme/app";
    s.master = kMaster;
    cfg.required_checks = {"ci/build"};
    cfg.check_timeout = 600'000;
    cfg.retry_backoff = 30'000;
  }

  Outcome on(Event e) {
    Outcome o = handle(s, e, cfg);
    now += 1000;
    return o;
  }
  Outcome open(int n, Sha head) {
    return on(PrOpened{n, "feature/f" + std::to_string(n), "dev" + std::to_string(n),
                       "Title " + std::to_string(n), head, now});
  }
  Outcome approve(int n, std::string who = "mm") {
    return on(MergeRequested{n, pr(n).head, who, now});
  }
  Outcome policy(int n, bool pass, std::vector<std::string> reasons = {}) {
    return on(PolicyChecked{.number = n,
                            .sha = pr(n).approval.value().sha,
                            .pass = pass,
                            .reasons = reasons,
                            .at = now,
                            .target = s.master,
                            .epoch = s.policy_epoch});
  }
  // The merge reached dmz and the shell judged the candidate's merges as passing: the usual
  // path, with the actions of both events.
  Outcome merged(CandidateId id, Sha commit) {
    Outcome o = merged_unchecked(id, commit);
    Outcome v = on(CandidateChecked{id, commit, true, {}, now});
    o.actions.insert(o.actions.end(), v.actions.begin(), v.actions.end());
    return o;
  }
  Outcome merged_unchecked(CandidateId id, Sha commit) {
    MergeDone e;
    e.candidate = id;
    e.outcome = MergeOutcome::Merged;
    e.sha = commit;
    e.at = now;
    return on(e);
  }
  Outcome check(Sha commit, CheckState state, std::string context = "ci/build",
                std::string description = "", std::string url = "") {
    return on(CheckReported{commit, Check{context, state, description, url, 0}, now});
  }
  Outcome master_pushed(CandidateId id, bool ok, Sha remote = "") {
    return on(MasterPushed{id, ok, remote, ok ? "" : "rejected", now});
  }
  Outcome push(int n, Sha head) { return on(PrPushed{n, head, now}); }
  Outcome tick(Millis at) {
    now = at;
    return on(Tick{at});
  }

  // The passing verdict the shell gives to `asked`, however late.
  Outcome answer(const CheckPolicy& asked) {
    return on(PolicyChecked{.number = asked.number,
                            .sha = asked.sha,
                            .pass = true,
                            .at = now,
                            .target = asked.target,
                            .epoch = asked.epoch});
  }
  // Opens PR n at `head`, approves it and passes the policy, changing `paths`.
  void queue_changing(int n, Sha head, std::vector<std::string> paths) {
    REQUIRE(!open(n, head).rejected);
    REQUIRE(!approve(n).rejected);
    REQUIRE(!on(PolicyChecked{.number = n,
                              .sha = head,
                              .pass = true,
                              .at = now,
                              .paths = std::move(paths),
                              .target = s.master,
                              .epoch = s.policy_epoch})
                 .rejected);
  }
  // Opens PR n at `head`, approves it and passes the policy; returns the last outcome.
  Outcome queue(int n, Sha head) {
    REQUIRE(!open(n, head).rejected);
    REQUIRE(!approve(n).rejected);
    return policy(n, true);
  }
  // Merges the front candidate at `commit` and reports the required check green.
  void green(CandidateId id, Sha commit) {
    REQUIRE(!merged(id, commit).rejected);
    REQUIRE(!check(commit, CheckState::Success).rejected);
  }

  PullRequest& pr(int n) { return s.prs.at(n); }
  std::string dump() const { return to_json(s).dump(); }
};

// Every rejection must leave the state exactly as it was.
Outcome expect_rejected(Repo& r, const Event& e, Code code) {
  const std::string before = r.dump();
  const auto next = r.s.next_candidate;
  Outcome o = handle(r.s, e, r.cfg);
  REQUIRE(o.rejected.has_value());
  CHECK(o.rejected->code == code);
  CHECK(o.actions.empty());
  CHECK(r.dump() == before);
  CHECK(r.s.next_candidate == next);
  return o;
}

}  // namespace

TEST_CASE(
    "PrOpened registers an open PR; a repeated delivery is accepted, a different one refused") {
  Repo r;
  auto o = r.open(1, sha('a'));
  CHECK_FALSE(o.rejected);
  CHECK(o.actions.empty());
  const auto& pr = r.pr(1);
  CHECK(pr.status == PrStatus::Open);
  CHECK(pr.branch == "feature/f1");
  CHECK(pr.author == "dev1");
  CHECK(pr.title == "Title 1");
  CHECK(pr.head == sha('a'));
  CHECK_FALSE(pr.approval);

  CHECK_FALSE(
      handle(r.s, PrOpened{1, "feature/f1", "dev1", "Title 1", sha('a'), r.now}, r.cfg).rejected);
  auto bad = expect_rejected(r, PrOpened{1, "feature/other", "dev1", "Title 1", sha('a'), r.now},
                             Code::kConflict);
  CHECK(bad.rejected->message.find("#1") != std::string::npos);
  expect_rejected(r, PrOpened{0, "feature/x", "dev", "t", sha('b'), r.now}, Code::kInvalid);
  expect_rejected(r, PrOpened{2, "feature/x", "dev", "t", "", r.now}, Code::kInvalid);
}

TEST_CASE("MergeRequested pins the approval to the head and asks for the policy") {
  Repo r;
  r.open(1, sha('a'));
  const Millis at = r.now;
  auto o = r.approve(1, "alice");
  CHECK_FALSE(o.rejected);
  auto cp = only<CheckPolicy>(o);
  CHECK(cp.number == 1);
  CHECK(cp.sha == sha('a'));
  CHECK(o.actions.size() == 1);
  const auto& pr = r.pr(1);
  CHECK(pr.status == PrStatus::Approved);
  REQUIRE(pr.approval);
  CHECK(pr.approval->sha == sha('a'));
  CHECK(pr.approval->approver == "alice");
  CHECK(pr.approval->at == at);
  CHECK(pr.queued_at == at);

  SUBCASE("unknown PR: 404") {
    expect_rejected(r, MergeRequested{9, sha('a'), "alice", r.now}, Code::kNotFound);
  }
  SUBCASE("stale sha: 409 naming both shas") {
    auto bad = expect_rejected(r, MergeRequested{1, sha('b'), "alice", r.now}, Code::kConflict);
    CHECK(bad.rejected->message ==
          "sha " + sha('b') + " is not the head of #1 (head is " + sha('a') + ")");
  }
  SUBCASE("re-approval at the same sha is idempotent in every queued stage") {
    const std::string before = r.dump();
    auto again = r.approve(1, "bob");
    CHECK_FALSE(again.rejected);
    CHECK(again.actions.empty());
    CHECK(r.dump() == before);

    r.policy(1, true);  // Queued -> Merging at once (empty train)
    CHECK(r.pr(1).status == PrStatus::Merging);
    const std::string merging = r.dump();
    auto third = r.approve(1, "carol");
    CHECK_FALSE(third.rejected);
    CHECK(third.actions.empty());
    CHECK(r.dump() == merging);
    CHECK(r.pr(1).approval->approver == "alice");
  }
}

TEST_CASE("MergeRequested on a merged PR is refused") {
  Repo r;
  r.queue(1, sha('a'));
  r.green(1, sha('c'));
  r.master_pushed(1, true);
  REQUIRE(r.pr(1).status == PrStatus::Merged);
  auto bad = expect_rejected(r, MergeRequested{1, sha('a'), "alice", r.now}, Code::kConflict);
  CHECK(bad.rejected->message == "#1 is already merged");
}

TEST_CASE("PolicyChecked: pass queues and schedules, fail reports every reason, stale is ignored") {
  Repo r;
  r.open(1, sha('a'));
  r.approve(1);

  SUBCASE("pass: queued, then at once a candidate on master") {
    auto o = r.policy(1, true);
    auto bc = only<BuildCandidate>(o);
    CHECK(bc.candidate == 1);
    CHECK(bc.base == kMaster);
    REQUIRE(bc.items.size() == 1);
    CHECK(bc.items[0].number == 1);
    CHECK(bc.items[0].head == sha('a'));
    CHECK(bc.items[0].branch == "feature/f1");
    CHECK(bc.items[0].title == "Title 1");
    CHECK(bc.items[0].author == "dev1");
    CHECK(bc.items[0].approver == "mm");
    CHECK(r.pr(1).status == PrStatus::Merging);
    CHECK(r.pr(1).candidate == CandidateId{1});
    REQUIRE(r.s.train.size() == 1);
    CHECK(r.s.train[0].status == CandidateStatus::Merging);
    CHECK(r.s.train[0].prs == std::vector<int>{1});
    CHECK(r.s.next_candidate == 2);
  }
  SUBCASE("fail: Failed with the first reason, all reasons in details, author told") {
    auto o = r.policy(1, false, {"commit abc is unsigned", "approver is not a merge master"});
    CHECK(r.pr(1).status == PrStatus::Failed);
    CHECK(r.pr(1).reason == "policy: commit abc is unsigned");
    CHECK(r.pr(1).details ==
          std::vector<std::string>{"commit abc is unsigned", "approver is not a merge master"});
    auto n = only<Notify>(o);
    CHECK(n.number == 1);
    CHECK(n.kind == NoticeKind::Failure);
    CHECK(n.message == "policy: commit abc is unsigned");
    CHECK(none<BuildCandidate>(o));
    CHECK(r.s.train.empty());
  }
  SUBCASE("a verdict for another sha or a PR that is not Approved changes nothing") {
    const std::string before = r.dump();
    auto o = r.on(PolicyChecked{1, sha('f'), true, {}, r.now});
    CHECK_FALSE(o.rejected);
    CHECK(o.actions.empty());
    CHECK(r.dump() == before);
    auto o2 = r.on(PolicyChecked{7, sha('a'), true, {}, r.now});
    CHECK_FALSE(o2.rejected);
    CHECK(r.dump() == before);
  }
}

TEST_CASE("a PR by signed tag is merged with the tag object its verdict judged, no other") {
  Repo r;
  r.on(PrOpened{1, "tags/v1", "dev1", "Release 1", sha('a'), r.now});
  r.approve(1);
  auto judged = [&](const Sha& tag) {
    return r.on(PolicyChecked{.number = 1,
                              .sha = r.pr(1).approval.value().sha,
                              .pass = true,
                              .at = r.now,
                              .target = r.s.master,
                              .epoch = r.s.policy_epoch,
                              .tag = tag});
  };
  auto bc = only<BuildCandidate>(judged(sha('t')));
  CHECK(r.pr(1).judged_tag == sha('t'));
  REQUIRE(bc.items.size() == 1);
  CHECK(bc.items[0].branch == "tags/v1");
  CHECK(bc.items[0].tag == sha('t'));
  SUBCASE("a new approval forgets it: the next verdict says which tag it judged") {
    r.push(1, sha('b'));  // the tag made again on another commit
    r.approve(1, "mm2");
    CHECK(r.pr(1).status == PrStatus::Approved);
    CHECK(r.pr(1).judged_tag.empty());
    auto again = only<BuildCandidate>(judged(sha('u')));
    CHECK(again.items.at(0).tag == sha('u'));
  }
  SUBCASE("judged again (the trust root changed): forgotten until the new verdict") {
    r.on(TrustRootRead{"another root", r.now});
    CHECK(r.pr(1).status == PrStatus::Approved);
    CHECK(r.pr(1).judged_tag.empty());
  }
}

TEST_CASE("a PR goes from approval to master: merge, build, land") {
  Repo r;
  r.queue(1, sha('a'));
  const Millis merged_at = r.now;
  auto o = r.merged(1, sha('c'));
  auto sb = only<StartBuild>(o);
  CHECK(sb.candidate == 1);
  CHECK(sb.sha == sha('c'));
  CHECK(none<FastForwardMaster>(o));
  const auto& k = r.s.train.at(0);
  CHECK(k.status == CandidateStatus::InDmz);
  CHECK(k.sha == sha('c'));
  CHECK(k.pushed_at == merged_at);
  CHECK(r.pr(1).status == PrStatus::InDmz);

  auto pending = r.check(sha('c'), CheckState::Pending, "ci/build", "running");
  CHECK(pending.actions.empty());
  CHECK(r.s.train.at(0).status == CandidateStatus::Building);
  CHECK(r.pr(1).status == PrStatus::Building);
  CHECK(r.s.train.at(0).checks.at("ci/build").description == "running");

  auto green = r.check(sha('c'), CheckState::Success);
  auto ff = only<FastForwardMaster>(green);
  CHECK(ff.candidate == 1);
  CHECK(ff.from == kMaster);
  CHECK(ff.to == sha('c'));
  CHECK(r.s.train.at(0).status == CandidateStatus::Landing);
  CHECK(r.s.master == kMaster);  // not before the push succeeded

  CHECK(r.pr(1).finished_at == 0);
  const Millis landed_at = r.now;
  auto landed = r.master_pushed(1, true);
  CHECK(r.s.master == sha('c'));
  CHECK(r.s.train.empty());
  CHECK(r.pr(1).status == PrStatus::Merged);
  CHECK(r.pr(1).reason_code == Reason::Merged);
  CHECK(r.pr(1).finished_at == landed_at);
  CHECK_FALSE(r.pr(1).candidate);
  auto n = only<Notify>(landed);
  CHECK(n.kind == NoticeKind::Success);
  CHECK(n.reason == Reason::Merged);
  CHECK(n.number == 1);
  CHECK(n.head == sha('a'));  // forges put statuses on the PR's head
  CHECK(n.message.find(sha('c').substr(0, 7)) != std::string::npos);
}

TEST_CASE("only required checks gate; a non-required failure is recorded but harmless") {
  Repo r;
  r.cfg.required_checks = {"ci/build", "ci/lint"};
  r.queue(1, sha('a'));
  r.merged(1, sha('c'));
  auto o = r.check(sha('c'), CheckState::Failure, "ci/optional", "flaky");
  CHECK(o.actions.empty());
  CHECK(r.pr(1).status == PrStatus::Building);
  CHECK(r.s.train.at(0).checks.at("ci/optional").state == CheckState::Failure);
  CHECK(none<FastForwardMaster>(r.check(sha('c'), CheckState::Success, "ci/build")));
  CHECK(r.s.train.at(0).status == CandidateStatus::Building);
  CHECK(only<FastForwardMaster>(r.check(sha('c'), CheckState::Success, "ci/lint")).to == sha('c'));
}

TEST_CASE("a check on an unknown sha is ignored") {
  Repo r;
  r.queue(1, sha('a'));
  r.merged(1, sha('c'));
  const std::string before = r.dump();
  auto o = r.check(sha('e'), CheckState::Failure);
  CHECK_FALSE(o.rejected);
  CHECK(o.actions.empty());
  CHECK(r.dump() == before);
}

TEST_CASE("with no required checks a candidate lands as soon as it is on dmz") {
  Repo r;
  r.cfg.required_checks.clear();
  r.queue(1, sha('a'));
  auto o = r.merged(1, sha('c'));
  CHECK(only<StartBuild>(o).sha == sha('c'));
  auto ff = only<FastForwardMaster>(o);
  CHECK(ff.from == kMaster);
  CHECK(ff.to == sha('c'));
  CHECK(r.s.train.at(0).status == CandidateStatus::Landing);
}

TEST_CASE("a failed build backs the PR out and the next PR is built on master") {
  Repo r;
  r.queue(1, sha('a'));
  r.queue(2, sha('b'));
  CHECK(r.pr(2).status == PrStatus::Queued);
  CHECK(queue_order(r.s) == std::vector<int>{2});
  r.merged(1, sha('c'));
  auto o =
      r.check(sha('c'), CheckState::Failure, "ci/build", "tests failed", "https://ci.example/1");
  CHECK(r.pr(1).status == PrStatus::Failed);
  CHECK(r.pr(1).reason ==
        "check ci/build failed: tests failed; push a fix and ask for approval again, or retry if "
        "the PR was not the cause");
  CHECK(r.pr(1).reason_code == Reason::BuildFailed);
  CHECK(r.pr(1).details == std::vector<std::string>{"https://ci.example/1"});
  CHECK_FALSE(r.pr(1).candidate);
  auto n = notices_for(o, 1);
  REQUIRE(n.size() == 1);
  CHECK(n[0].kind == NoticeKind::Failure);
  CHECK(n[0].message == r.pr(1).reason);
  CHECK(n[0].reason == Reason::BuildFailed);
  CHECK(only<CancelBuild>(o).sha == sha('c'));
  CHECK(only<ResetDmz>(o).sha == kMaster);
  auto bc = only<BuildCandidate>(o);
  CHECK(bc.candidate == 2);
  CHECK(bc.base == kMaster);
  REQUIRE(bc.items.size() == 1);
  CHECK(bc.items[0].number == 2);
  CHECK(r.pr(2).status == PrStatus::Merging);
  REQUIRE(r.s.train.size() == 1);
  CHECK(r.s.train[0].id == 2);
}

TEST_CASE("an Error check state backs out too, with the state as the description") {
  Repo r;
  r.queue(1, sha('a'));
  r.merged(1, sha('c'));
  r.check(sha('c'), CheckState::Error);
  CHECK(r.pr(1).status == PrStatus::Failed);
  CHECK(r.pr(1).reason.starts_with("check ci/build failed: error; "));
  CHECK(r.pr(1).details.empty());
}

TEST_CASE("a PR whose head is already in the base fails as holding nothing to merge") {
  Repo r;
  r.queue(1, sha('a'));
  REQUIRE(r.s.train.size() == 1);
  const std::string what = std::string(kNothingToMerge) + "aaaaaaa is already in master cccccc";
  r.on(MergeDone{r.s.train[0].id, MergeOutcome::Conflict, "", 1, {what}, "", r.now});
  CHECK(r.pr(1).status == PrStatus::Failed);
  CHECK(r.pr(1).reason.starts_with(what + "; its commits have landed"));
  CHECK(r.pr(1).reason.find("merge conflict") == std::string::npos);
}

TEST_CASE("a merge conflict fails the culprit with the conflicting files") {
  Repo r;
  r.cfg.max_batch = 2;
  r.open(1, sha('a'));
  r.approve(1);
  r.open(2, sha('b'));
  r.approve(2);
  r.policy(2, true);  // 2 is queued first and builds alone
  r.policy(1, true);
  // candidate 1 = [2]; PR 1 waits for the next candidate.
  REQUIRE(r.s.train.size() == 1);
  REQUIRE(r.s.train[0].prs == std::vector<int>{2});
  auto o = r.on(MergeDone{1, MergeOutcome::Conflict, "", 2, {"src/a.cpp", "README.md"}, "", r.now});
  CHECK(r.pr(2).status == PrStatus::Failed);
  CHECK(r.pr(2).reason.starts_with("merge conflict in src/a.cpp, README.md; merge master into"));
  CHECK(r.pr(2).reason_code == Reason::MergeConflict);
  CHECK(r.pr(2).details == std::vector<std::string>{"src/a.cpp", "README.md"});
  auto n = notices_for(o, 2);
  REQUIRE(n.size() == 1);
  CHECK(n[0].kind == NoticeKind::Failure);
  CHECK(n[0].message == r.pr(2).reason);
  CHECK(none<CancelBuild>(o));  // it never reached dmz
  CHECK(only<ResetDmz>(o).sha == kMaster);
  auto bc = only<BuildCandidate>(o);
  CHECK(bc.base == kMaster);
  REQUIRE(bc.items.size() == 1);
  CHECK(bc.items[0].number == 1);
}

TEST_CASE("a conflict in a batch re-queues the innocent PRs ahead of newer ones") {
  Repo r;
  r.cfg.max_batch = 2;
  r.open(1, sha('a'));
  r.open(2, sha('b'));
  r.open(3, sha('d'));
  r.approve(1);
  r.approve(2);
  r.approve(3);
  r.policy(1, true);  // candidate [1] at once
  r.merged(1, sha('c'));
  r.policy(2, true);
  r.policy(3, true);
  r.check(sha('c'), CheckState::Failure);  // 1 out; candidate [2, 3]
  REQUIRE(r.s.train.size() == 1);
  REQUIRE(r.s.train[0].prs == std::vector<int>{2, 3});
  const auto id = r.s.train[0].id;
  auto o = r.on(MergeDone{id, MergeOutcome::Conflict, "", 3, {"x.txt"}, "", r.now});
  CHECK(r.pr(3).status == PrStatus::Failed);
  CHECK(r.pr(2).status == PrStatus::Merging);
  auto bc = only<BuildCandidate>(o);
  REQUIRE(bc.items.size() == 1);
  CHECK(bc.items[0].number == 2);
}

TEST_CASE("a transient merge error re-queues and waits for the backoff") {
  Repo r;
  r.queue(1, sha('a'));
  const Millis at = r.now;
  auto o = r.on(MergeDone{1, MergeOutcome::Error, "", 0, {}, "connection reset", at});
  CHECK(r.pr(1).status == PrStatus::Queued);
  CHECK(r.pr(1).reason.empty());
  CHECK(r.s.train.empty());
  CHECK(r.s.retry_after == at + 30'000);
  auto n = only<Notify>(o);
  CHECK(n.kind == NoticeKind::Info);
  CHECK(n.message.find("connection reset") != std::string::npos);
  CHECK(none<BuildCandidate>(o));

  CHECK(none<BuildCandidate>(r.tick(at + 29'999)));
  CHECK(r.pr(1).status == PrStatus::Queued);
  auto later = r.tick(at + 30'000);
  auto bc = only<BuildCandidate>(later);
  CHECK(bc.candidate == 2);
  CHECK(bc.base == kMaster);
  CHECK(r.pr(1).status == PrStatus::Merging);
}

TEST_CASE("a PR whose merge fails time after time fails as unmergeable; the others go on") {
  Repo r;
  r.queue(1, sha('a'));
  r.queue(2, sha('b'));
  auto fail_merge = [&](int culprit) {
    REQUIRE(r.s.train.size() == 1);
    auto o = r.on(MergeDone{r.s.train[0].id,
                            MergeOutcome::Error,
                            "",
                            culprit,
                            {},
                            "merge: resolve " + sha('a') + ": object not found",
                            r.now});
    r.tick(r.now + 30'000);  // the backoff
    return o;
  };
  // A failure that is nobody's (a push) never ejects anyone, however often it comes.
  for (int i = 0; i < kMaxMergeErrors + 2; ++i) fail_merge(0);
  CHECK(r.pr(1).status == PrStatus::Merging);
  CHECK(r.pr(1).merge_errors == 0);
  // A successful merge clears the count: only failures in a row count.
  for (int i = 0; i < kMaxMergeErrors - 1; ++i) fail_merge(1);
  CHECK(r.pr(1).merge_errors == kMaxMergeErrors - 1);
  r.merged(r.s.train[0].id, sha('c'));
  CHECK(r.pr(1).merge_errors == 0);
  r.check(sha('c'), CheckState::Failure);
  // PR 1 failed its build; PR 2's merge fails on its own head, three times.
  REQUIRE(r.s.train.size() == 1);
  REQUIRE(r.s.train[0].prs == std::vector<int>{2});
  for (int i = 0; i < kMaxMergeErrors - 1; ++i) {
    auto o = fail_merge(2);
    CHECK(r.pr(2).status != PrStatus::Failed);
    CHECK(only<Notify>(o).kind == NoticeKind::Info);
  }
  auto o = fail_merge(2);
  CHECK(r.pr(2).status == PrStatus::Failed);
  CHECK(r.pr(2).reason_code == Reason::Unmergeable);
  CHECK(r.pr(2).reason.find("object not found") != std::string::npos);
  CHECK(r.pr(2).reason.find("3 tries") != std::string::npos);
  auto n = only<Notify>(o);
  CHECK(n.kind == NoticeKind::Failure);
  CHECK(n.reason == Reason::Unmergeable);
  CHECK(r.s.train.empty());
}

TEST_CASE("an unmergeable PR in a batch fails alone; the rest of its candidate is rebuilt") {
  Repo r;
  r.cfg.strategy = Strategy::Batch;
  r.cfg.max_batch = 3;
  r.queue(1, sha('a'));
  r.queue(2, sha('b'));
  r.queue(3, sha('d'));
  // PR 1 went alone; a push failure (nobody's) sends it back, and all three go together.
  r.on(MergeDone{r.s.train[0].id, MergeOutcome::Error, "", 0, {}, "push refused", r.now});
  r.tick(r.now + 30'000);
  REQUIRE(r.s.train.size() == 1);
  REQUIRE(r.s.train[0].prs == std::vector<int>{1, 2, 3});
  for (int i = 0; i < kMaxMergeErrors; ++i) {
    REQUIRE(r.s.train.size() == 1);
    r.on(MergeDone{r.s.train[0].id, MergeOutcome::Error, "", 2, {}, "bad object", r.now});
    r.tick(r.now + 30'000);
  }
  CHECK(r.pr(2).status == PrStatus::Failed);
  CHECK(r.pr(2).reason_code == Reason::Unmergeable);
  REQUIRE(r.s.train.size() == 1);
  CHECK(r.s.train[0].prs == std::vector<int>{1, 3});
}

TEST_CASE("MergeDone for an unknown or finished candidate is stale and ignored") {
  Repo r;
  r.queue(1, sha('a'));
  r.merged(1, sha('c'));
  const std::string before = r.dump();
  auto o = r.merged(1, sha('e'));  // a duplicate delivery
  CHECK_FALSE(o.rejected);
  CHECK(o.actions.empty());
  CHECK(r.dump() == before);
  auto o2 = r.merged(42, sha('e'));
  CHECK(o2.actions.empty());
  CHECK(r.dump() == before);
}

TEST_CASE("new push drops an approved, queued or building PR and cancels its build") {
  Repo r;
  const std::string reason = "new push " + sha('e').substr(0, 7) +
                             " after approval; a merge master must approve the new head";

  SUBCASE("approved, waiting for the policy") {
    r.open(1, sha('a'));
    r.approve(1);
    auto o = r.push(1, sha('e'));
    CHECK(r.pr(1).status == PrStatus::Open);
    CHECK_FALSE(r.pr(1).approval);
    CHECK(r.pr(1).head == sha('e'));
    CHECK(r.pr(1).reason == reason);
    CHECK(only<Notify>(o).message == reason);
    auto late = r.on(PolicyChecked{1, sha('a'), true, {}, r.now});  // the old verdict
    CHECK(late.actions.empty());
    CHECK(r.pr(1).status == PrStatus::Open);
  }
  SUBCASE("queued behind another") {
    r.queue(1, sha('a'));
    r.queue(2, sha('b'));
    REQUIRE(r.pr(2).status == PrStatus::Queued);
    auto o = r.push(2, sha('e'));
    CHECK(r.pr(2).status == PrStatus::Open);
    CHECK(r.pr(2).reason == reason);
    CHECK(none<CancelBuild>(o));
    CHECK(r.pr(1).status == PrStatus::Merging);
    CHECK(queue_order(r.s).empty());
  }
  SUBCASE("building: build cancelled, dmz reset, next PR built") {
    r.queue(1, sha('a'));
    r.queue(2, sha('b'));
    r.merged(1, sha('c'));
    r.check(sha('c'), CheckState::Pending);
    REQUIRE(r.pr(1).status == PrStatus::Building);
    auto o = r.push(1, sha('e'));
    CHECK(r.pr(1).status == PrStatus::Open);
    CHECK_FALSE(r.pr(1).approval);
    CHECK_FALSE(r.pr(1).candidate);
    CHECK(r.pr(1).reason == reason);
    CHECK(only<CancelBuild>(o).sha == sha('c'));
    CHECK(only<ResetDmz>(o).sha == kMaster);
    auto n = notices_for(o, 1);
    REQUIRE(n.size() == 1);
    CHECK(n[0].kind == NoticeKind::Info);
    auto bc = only<BuildCandidate>(o);
    CHECK(bc.items.at(0).number == 2);
    CHECK(bc.base == kMaster);
    // a late check for the cancelled candidate changes nothing
    const std::string before = r.dump();
    CHECK(r.check(sha('c'), CheckState::Success).actions.empty());
    CHECK(r.dump() == before);
  }
  SUBCASE("same head: no change") {
    r.queue(1, sha('a'));
    const std::string before = r.dump();
    auto o = r.push(1, sha('a'));
    CHECK(o.actions.empty());
    CHECK(r.dump() == before);
  }
  SUBCASE("open PR: head updated only") {
    r.open(1, sha('a'));
    auto o = r.push(1, sha('e'));
    CHECK(o.actions.empty());
    CHECK(r.pr(1).head == sha('e'));
    CHECK(r.pr(1).status == PrStatus::Open);
    CHECK(r.pr(1).reason.empty());
  }
  SUBCASE("unknown PR: 404") { expect_rejected(r, PrPushed{5, sha('e'), r.now}, Code::kNotFound); }
}

TEST_CASE("a force-push that rewrites published history is reported as such") {
  Repo r;
  r.queue(1, sha('a'));
  r.merged(1, sha('c'));
  auto o = r.on(PrPushed{1, sha('e'), r.now, /*rewritten=*/true});
  CHECK(r.pr(1).status == PrStatus::Open);
  CHECK_FALSE(r.pr(1).approval);
  CHECK(r.pr(1).reason ==
        "force-push " + sha('e').substr(0, 7) +
            " rewrote published history (commits were dropped); push the dropped commits back or "
            "open a new pull request, then approve again");
  auto n = notices_for(o, 1);
  REQUIRE(n.size() == 1);
  CHECK(n[0].kind == NoticeKind::Failure);
  CHECK(only<CancelBuild>(o).sha == sha('c'));
}

TEST_CASE("a new push does not interrupt a landing candidate: the approved sha lands") {
  Repo r;
  r.queue(1, sha('a'));
  r.green(1, sha('c'));
  REQUIRE(r.s.train.at(0).status == CandidateStatus::Landing);
  auto o = r.push(1, sha('e'));
  CHECK(none<CancelBuild>(o));
  CHECK(r.s.train.at(0).status == CandidateStatus::Landing);
  CHECK(r.pr(1).head == sha('e'));
  CHECK(r.pr(1).reason.find("is landing") != std::string::npos);
  r.master_pushed(1, true);
  CHECK(r.pr(1).status == PrStatus::Merged);
  CHECK(r.s.master == sha('c'));
}

TEST_CASE("a check that never reports times out on Tick") {
  Repo r;
  r.cfg.required_checks = {"ci/build", "ci/lint", "ci/docs"};
  r.queue(1, sha('a'));
  r.queue(2, sha('b'));
  const Millis pushed = r.now;
  r.merged(1, sha('c'));
  r.check(sha('c'), CheckState::Success, "ci/lint");
  r.check(sha('c'), CheckState::Pending, "ci/docs");

  auto early = r.tick(pushed + 600'000 - 1);
  CHECK(early.actions.empty());
  CHECK(r.pr(1).status == PrStatus::Building);

  auto o = r.tick(pushed + 600'000);
  CHECK(r.pr(1).status == PrStatus::Failed);
  CHECK(r.pr(1).reason.starts_with("check ci/build, ci/docs did not report within 600s; "));
  CHECK(r.pr(1).reason_code == Reason::CheckTimeout);
  CHECK(r.pr(1).details == std::vector<std::string>{"ci/build", "ci/docs"});
  CHECK(only<CancelBuild>(o).sha == sha('c'));
  CHECK(notices_for(o, 1).at(0).kind == NoticeKind::Failure);
  auto bc = only<BuildCandidate>(o);
  CHECK(bc.items.at(0).number == 2);
  CHECK(bc.base == kMaster);
}

TEST_CASE("time the forge could not be read does not count towards the check timeout") {
  Repo r;
  r.cfg.required_checks = {"ci/build"};
  r.queue(1, sha('a'));
  const Millis pushed = r.now;
  r.merged(1, sha('c'));
  r.check(sha('c'), CheckState::Pending, "ci/build");

  // 100 s of the first 400 s the forge was down: the deadline moves by exactly that.
  r.tick(pushed + 200'000);
  r.on(Tick{pushed + 300'000, 100'000});
  CHECK(r.s.train.at(0).paused_ms == 100'000);
  CHECK(r.tick(pushed + 700'000 - 1).actions.empty());
  CHECK(r.pr(1).status == PrStatus::Building);
  r.tick(pushed + 700'000);
  CHECK(r.pr(1).status == PrStatus::Failed);
  CHECK(r.pr(1).reason.starts_with(
      "check ci/build did not report within 600s (not counting 100s when the forge was down); "));

  // A candidate pushed during an outage counts only the outage since its push.
  Repo q;
  q.cfg.required_checks = {"ci/build"};
  q.queue(1, sha('a'));
  q.merged(1, sha('c'));
  q.on(Tick{q.s.train.at(0).pushed_at + 5'000, 60'000});
  CHECK(q.s.train.at(0).paused_ms == 5'000);

  // While the forge is down and its time not credited yet, no check times out.
  const Millis deadline = q.s.train.at(0).pushed_at + 5'000 + q.cfg.check_timeout;
  const std::string before = q.dump();
  CHECK(q.on(Tick{deadline + 1, 0, true}).actions.empty());
  CHECK(q.dump() == before);
  q.on(Tick{deadline + 1});
  CHECK(q.pr(1).status == PrStatus::Failed);
}

TEST_CASE("a landing that changes the policy has every queued PR judged again under it") {
  for (Strategy strategy : {Strategy::Serial, Strategy::Train}) {
    CAPTURE(static_cast<int>(strategy));
    Repo r;
    r.cfg.strategy = strategy;
    r.cfg.window_start = 4;
    r.queue_changing(1, sha('a'), {".dmz/keys/mallory.asc"});  // revokes a key
    r.queue_changing(2, sha('b'), {"src/x.c"});
    r.queue_changing(3, sha('d'), {"src/y.c"});
    const CandidateId first = r.pr(1).candidate.value();
    r.green(first, sha('c'));
    if (r.pr(1).status != PrStatus::Merged) REQUIRE(!r.master_pushed(first, true).rejected);
    REQUIRE(r.pr(1).status == PrStatus::Merged);
    // #2 and #3 were judged at the old master: both are judged again at the new one, in their
    // places, and nothing of theirs builds meanwhile.
    for (int n : {2, 3}) {
      CHECK(r.pr(n).status == PrStatus::Approved);
      CHECK_FALSE(r.pr(n).candidate);
    }
    CHECK(r.s.train.empty());
    CHECK(r.pr(2).queued_at < r.pr(3).queued_at);
    // A landing that changes no policy path judges nobody again.
    REQUIRE(!r.policy(2, true).rejected);
    REQUIRE(!r.policy(3, true).rejected);
    const CandidateId next = r.pr(2).candidate.value();
    r.green(next, sha('e'));
    if (r.pr(2).status != PrStatus::Merged) REQUIRE(!r.master_pushed(next, true).rejected);
    CHECK(r.pr(2).status == PrStatus::Merged);
    CHECK(r.pr(3).status != PrStatus::Approved);
  }
}

TEST_CASE("nothing is built on top of a policy change, nor batched or landed with it") {
  for (Strategy strategy :
       {Strategy::Serial, Strategy::Batch, Strategy::Train, Strategy::Adaptive}) {
    CAPTURE(static_cast<int>(strategy));
    Repo r;
    r.cfg.strategy = strategy;
    r.cfg.window_start = 4;
    r.cfg.max_train = 2;  // serial: a second candidate could build behind the first
    r.cfg.max_batch = 4;  // batch: all three could share a candidate
    r.cfg.lanes = Lanes::None;
    r.queue_changing(1, sha('a'), {"src/x.c"});
    r.queue_changing(2, sha('b'), {".dmz/keys/mallory.asc"});  // revokes a key
    r.queue_changing(3, sha('d'), {"src/y.c"});
    // Every merge answered, until nothing more starts.
    for (int round = 0; round < 6; ++round)
      for (const auto& k : std::vector<Candidate>(r.s.train))
        if (k.sha.empty()) REQUIRE(!r.merged(k.id, sha(static_cast<char>('k' + k.id))).rejected);
    // #2 ends whatever holds it: #3 (judged under the old policy) is neither in its candidate
    // nor built behind it.
    REQUIRE(r.pr(2).candidate);
    const CandidateId with_policy = *r.pr(2).candidate;
    CHECK(r.s.train.back().id == with_policy);
    CHECK(r.s.train.back().prs.back() == 2);
    CHECK(r.pr(3).status == PrStatus::Queued);
    CHECK_FALSE(r.pr(3).candidate);
    // Everything up to #2 goes green and lands; #3 is then judged under the new policy.
    for (const auto& k : std::vector<Candidate>(r.s.train))
      if (!k.sha.empty()) REQUIRE(!r.check(k.sha, CheckState::Success).rejected);
    for (int guard = 0; r.pr(2).status != PrStatus::Merged && guard < 4; ++guard) {
      REQUIRE(!r.s.train.empty());
      REQUIRE(!r.master_pushed(r.s.train.front().id, true).rejected);
    }
    CHECK(r.pr(1).status == PrStatus::Merged);
    CHECK(r.pr(2).status == PrStatus::Merged);
    CHECK(r.pr(3).status == PrStatus::Approved);
    CHECK(r.s.train.empty());
  }
}

TEST_CASE("a landing that changes the policy starts no other landing in the same event") {
  for (Strategy strategy : {Strategy::Adaptive}) {
    CAPTURE(static_cast<int>(strategy));
    Repo r;
    r.cfg.strategy = strategy;
    r.cfg.window_start = 4;
    r.cfg.lanes = Lanes::Paths;  // #2 in a lane of its own, built beside #1
    r.queue_changing(1, sha('a'), {".dmz/policy.toml"});
    r.queue_changing(2, sha('b'), {"src/x.c"});
    const CandidateId first = r.pr(1).candidate.value();
    const CandidateId second = r.pr(2).candidate.value();
    REQUIRE(!r.merged(first, sha('c')).rejected);
    REQUIRE(!r.merged(second, sha('d')).rejected);
    REQUIRE(!r.check(sha('c'), CheckState::Success).rejected);  // #1 lands: its push in flight
    REQUIRE(r.s.train.at(0).status == CandidateStatus::Landing);
    REQUIRE(!r.check(sha('d'), CheckState::Success).rejected);  // green too; one landing at a time
    auto o = r.master_pushed(first, true);
    CHECK(r.pr(1).status == PrStatus::Merged);
    // #2 was judged under the old policy: not pushed to master, judged again under the new one.
    CHECK(none<FastForwardMaster>(o));
    CHECK(r.s.train.empty());
    CHECK(r.pr(2).status == PrStatus::Approved);
    CHECK(only<CheckPolicy>(o).number == 2);
  }
}

TEST_CASE("a verdict asked for before a policy change lands is not taken; after others it is") {
  for (Strategy strategy : {Strategy::Serial, Strategy::Adaptive}) {
    for (const std::string changed : {"src/a.c", ".dmz/keys/mallory.asc"}) {
      CAPTURE(static_cast<int>(strategy));
      CAPTURE(changed);
      Repo r;
      r.cfg.strategy = strategy;
      r.queue_changing(1, sha('a'), {changed});
      REQUIRE(!r.open(2, sha('b')).rejected);
      const CheckPolicy asked = only<CheckPolicy>(r.approve(2));
      CHECK(asked.target == kMaster);
      // #1 lands while #2's verdict is being written.
      const CandidateId first = r.pr(1).candidate.value();
      r.green(first, sha('c'));
      if (r.pr(1).status != PrStatus::Merged) REQUIRE(!r.master_pushed(first, true).rejected);
      REQUIRE(r.s.master == sha('c'));
      auto late = r.answer(asked);
      if (changed == "src/a.c") {
        // The policy is the one it was judged by: taken, even on a master that moved since (a
        // slow check still ends on a busy queue).
        CHECK(r.pr(2).status != PrStatus::Approved);
        CHECK(none<CheckPolicy>(late));
        continue;
      }
      // #1 changed the policy: the verdict is not taken; #2 is judged at the new master.
      CHECK(r.pr(2).status == PrStatus::Approved);
      CHECK(none<BuildCandidate>(late));
      const CheckPolicy again = only<CheckPolicy>(late);
      CHECK(again.target == sha('c'));
      CHECK(again.epoch == asked.epoch + 1);
      // The verdict under the new policy decides, either way.
      r.policy(2, false, {"commit bbbbbbb is signed by mallory, whose key was revoked"});
      CHECK(r.pr(2).status == PrStatus::Failed);
    }
  }
}

TEST_CASE("a changed trust root has every waiting PR judged again; a landing in flight ends") {
  for (Strategy strategy : {Strategy::Serial, Strategy::Train, Strategy::Adaptive}) {
    CAPTURE(static_cast<int>(strategy));
    Repo r;
    r.cfg.strategy = strategy;
    r.cfg.window_start = 4;
    r.cfg.max_train = 2;
    // Read at the start: the state had no digest yet, and nothing waits.
    REQUIRE(!r.on(TrustRootRead{"root-1", r.now}).rejected);
    CHECK(r.s.trust_root == "root-1");
    const auto epoch = r.s.policy_epoch;
    // Read again unchanged: nothing happens.
    CHECK(r.on(TrustRootRead{"root-1", r.now}).actions.empty());
    CHECK(r.s.policy_epoch == epoch);

    r.queue_changing(1, sha('a'), {"src/a.c"});
    r.queue_changing(2, sha('b'), {"src/b.c"});
    REQUIRE(!r.open(3, sha('d')).rejected);
    const CheckPolicy asked = only<CheckPolicy>(r.approve(3));
    const CandidateId first = r.pr(1).candidate.value();
    REQUIRE(!r.merged(first, sha('c')).rejected);
    REQUIRE(!r.check(sha('c'), CheckState::Success).rejected);  // #1 lands: its push in flight
    REQUIRE(r.s.train.at(0).status == CandidateStatus::Landing);

    auto o = r.on(TrustRootRead{"root-2", r.now});  // the operator revoked a key
    CHECK(r.s.trust_root == "root-2");
    CHECK(r.s.policy_epoch == epoch + 1);
    // #1's landing goes on; #2 (queued or building) and #3 (being judged) are judged again.
    REQUIRE(r.s.train.size() == 1);
    CHECK(r.s.train[0].id == first);
    CHECK(r.pr(1).candidate == first);
    CHECK(r.pr(2).status == PrStatus::Approved);
    CHECK_FALSE(r.pr(2).candidate);
    CHECK(r.pr(3).status == PrStatus::Approved);
    CHECK(only<CheckPolicy>(o).number == 2);
    CHECK(none<BuildCandidate>(o));
    // #3's verdict under the old root is not taken: it is asked again.
    auto late = r.answer(asked);
    CHECK(r.pr(3).status == PrStatus::Approved);
    CHECK(only<CheckPolicy>(late).epoch == r.s.policy_epoch);
    REQUIRE(!r.master_pushed(first, true).rejected);
    CHECK(r.pr(1).status == PrStatus::Merged);
  }
}

TEST_CASE("a PR closed while its landing is in flight lands, or leaves the queue") {
  for (bool push_ok : {true, false}) {
    CAPTURE(push_ok);
    Repo r;
    r.queue(1, sha('a'));
    const CandidateId first = r.pr(1).candidate.value();
    REQUIRE(!r.merged(first, sha('c')).rejected);
    REQUIRE(!r.check(sha('c'), CheckState::Success).rejected);
    REQUIRE(r.s.train.at(0).status == CandidateStatus::Landing);
    REQUIRE(!r.on(PrClosed{1, r.now}).rejected);
    // Refused with master in place (an answer lost instead keeps it Landing until master is
    // read: strategy_test's "an unanswered push that did land is not undone").
    auto o = r.master_pushed(first, push_ok, push_ok ? Sha() : kMaster);
    if (push_ok) {
      CHECK(r.pr(1).status == PrStatus::Merged);
      continue;
    }
    // The push did not land: the closed PR is not queued again.
    CHECK(r.pr(1).status == PrStatus::Cancelled);
    CHECK(r.pr(1).reason_code == Reason::Closed);
    CHECK(none<BuildCandidate>(o));
    CHECK(r.tick(r.now + r.cfg.retry_backoff).actions.empty());
  }
}

TEST_CASE("a check's Pending that arrives after its end does not take the end back") {
  Repo r;
  r.cfg.required_checks = {"ci/build", "ci/test"};
  r.queue(1, sha('a'));
  const CandidateId first = r.pr(1).candidate.value();
  REQUIRE(!r.merged(first, sha('c')).rejected);
  REQUIRE(!r.on(CheckReported{sha('c'), Check{"ci/build", CheckState::Success, "", "", 0}, r.now})
               .rejected);
  auto late =
      r.on(CheckReported{sha('c'), Check{"ci/build", CheckState::Pending, "", "", 0}, r.now});
  CHECK(late.actions.empty());
  CHECK(r.s.train.at(0).checks.at("ci/build").state == CheckState::Success);
  // The other check's end lands the candidate: nothing waits for ci/build again.
  auto o = r.on(CheckReported{sha('c'), Check{"ci/test", CheckState::Success, "", "", 0}, r.now});
  CHECK(only<FastForwardMaster>(o).to == sha('c'));
}

// Reopened before the landing's push answered: the close is forgotten, as the forge forgot it.
TEST_CASE("a PR closed and reopened while its landing is in flight stays queued if it is cut") {
  Repo r;
  r.queue(1, sha('a'));
  const CandidateId first = r.pr(1).candidate.value();
  REQUIRE(!r.merged(first, sha('c')).rejected);
  REQUIRE(!r.check(sha('c'), CheckState::Success).rejected);
  REQUIRE(r.s.train.at(0).status == CandidateStatus::Landing);
  REQUIRE(!r.on(PrClosed{1, r.now}).rejected);
  PrOpened late{1, r.pr(1).branch, r.pr(1).author, "an edit from before", sha('a'), r.now};
  late.reopens = false;  // a late word of it from before the close is no reopening
  REQUIRE(!r.on(late).rejected);
  CHECK(r.pr(1).reason_code == Reason::Closed);
  REQUIRE(!r.on(PrOpened{1, r.pr(1).branch, r.pr(1).author, "reopened", sha('a'), r.now}).rejected);
  CHECK(r.pr(1).reason_code == Reason::None);
  r.master_pushed(first, false, kMaster);  // refused, master in place: back to its place
  CHECK(r.s.train.empty());
  CHECK(r.pr(1).status == PrStatus::Queued);
  CHECK(r.pr(1).approval);
}

TEST_CASE("a landing kept across a trust root change whose push fails is judged again") {
  for (Strategy strategy : {Strategy::Serial, Strategy::Train}) {
    CAPTURE(static_cast<int>(strategy));
    Repo r;
    r.cfg.strategy = strategy;
    r.queue_changing(1, sha('a'), {"src/a.c"});
    const CandidateId first = r.pr(1).candidate.value();
    REQUIRE(!r.merged(first, sha('c')).rejected);
    REQUIRE(!r.check(sha('c'), CheckState::Success).rejected);
    REQUIRE(r.s.train.at(0).status == CandidateStatus::Landing);
    REQUIRE(!r.on(TrustRootRead{"root-2", r.now}).rejected);
    // The push fails without an answer: it may have landed, so the candidate stays Landing;
    // after the backoff master is read (a push of c onto itself), not pushed from master again.
    const Millis at = r.now;
    CHECK(none<CheckPolicy>(r.master_pushed(first, false)));
    CHECK(r.s.train.at(0).status == CandidateStatus::Landing);
    const auto read = only<FastForwardMaster>(r.tick(at + r.cfg.retry_backoff));
    CHECK(read.from == sha('c'));
    CHECK(read.to == sha('c'));
    // Master is where it was: #1 leaves the train, and its verdict is from the old root.
    auto o = r.master_pushed(first, false, kMaster);
    CHECK(r.pr(1).status == PrStatus::Approved);
    CHECK(only<CheckPolicy>(o).epoch == r.s.policy_epoch);
    CHECK(none<BuildCandidate>(o));
    REQUIRE(!r.policy(1, true).rejected);  // judged again under the new root: queued
    CHECK(r.pr(1).judged_epoch == r.s.policy_epoch);
  }
}

TEST_CASE("cancel takes a PR out; retry puts it back through the policy") {
  Repo r;
  r.queue(1, sha('a'));
  r.queue(2, sha('b'));
  r.merged(1, sha('c'));

  auto o = r.on(CancelRequested{1, "alice", r.now});
  CHECK_FALSE(o.rejected);
  CHECK(r.pr(1).status == PrStatus::Cancelled);
  CHECK(r.pr(1).reason == "cancelled by alice; approve or retry to queue again");
  CHECK(r.pr(1).reason_code == Reason::Cancelled);
  REQUIRE(r.pr(1).approval);  // kept, so that retry can use it
  CHECK(only<CancelBuild>(o).sha == sha('c'));
  CHECK(notices_for(o, 1).at(0).message == r.pr(1).reason);
  CHECK(only<BuildCandidate>(o).items.at(0).number == 2);

  expect_rejected(r, CancelRequested{1, "alice", r.now}, Code::kConflict);
  expect_rejected(r, CancelRequested{8, "alice", r.now}, Code::kNotFound);

  const Millis retry_at = r.now;
  auto retry = r.on(RetryRequested{1, "bob", retry_at});
  CHECK_FALSE(retry.rejected);
  CHECK(r.pr(1).status == PrStatus::Approved);
  CHECK(r.pr(1).reason.empty());
  CHECK(r.pr(1).queued_at == retry_at);
  auto cp = only<CheckPolicy>(retry);
  CHECK(cp.number == 1);
  CHECK(cp.sha == sha('a'));
  r.policy(1, true);
  CHECK(r.pr(1).status == PrStatus::Queued);
  CHECK(queue_order(r.s) == std::vector<int>{1});
}

TEST_CASE("cancel of a queued PR; cancel and retry refusals") {
  Repo r;
  r.queue(1, sha('a'));
  r.queue(2, sha('b'));

  SUBCASE("queued PR cancelled: no build to cancel") {
    auto o = r.on(CancelRequested{2, "alice", r.now});
    CHECK(r.pr(2).status == PrStatus::Cancelled);
    CHECK(none<CancelBuild>(o));
    CHECK(r.pr(1).status == PrStatus::Merging);
  }
  SUBCASE("open PR: not queued") {
    r.open(3, sha('d'));
    auto bad = expect_rejected(r, CancelRequested{3, "alice", r.now}, Code::kConflict);
    CHECK(bad.rejected->message.find("not queued") != std::string::npos);
  }
  SUBCASE("merged PR: 409") {
    r.green(1, sha('c'));
    r.master_pushed(1, true);
    auto bad = expect_rejected(r, CancelRequested{1, "alice", r.now}, Code::kConflict);
    CHECK(bad.rejected->message == "#1 is already merged");
  }
  SUBCASE("retry of a PR that is not failed or cancelled") {
    expect_rejected(r, RetryRequested{2, "bob", r.now}, Code::kConflict);
    expect_rejected(r, RetryRequested{9, "bob", r.now}, Code::kNotFound);
  }
  SUBCASE("retry without an approval") {
    // (A state no event sequence leads to now: a closed PR is refused as closed first.)
    r.open(3, sha('d'));
    r.s.prs.at(3).status = PrStatus::Cancelled;
    r.s.prs.at(3).reason_code = Reason::Cancelled;
    auto bad = expect_rejected(r, RetryRequested{3, "bob", r.now}, Code::kConflict);
    CHECK(bad.rejected->message.find("no approval") != std::string::npos);
  }
  SUBCASE("retry of a failed PR whose head moved since the approval") {
    r.merged(1, sha('c'));
    r.check(sha('c'), CheckState::Failure);
    REQUIRE(r.pr(1).status == PrStatus::Failed);
    r.push(1, sha('e'));
    CHECK(r.pr(1).status == PrStatus::Failed);
    auto bad = expect_rejected(r, RetryRequested{1, "bob", r.now}, Code::kConflict);
    CHECK(bad.rejected->message.find("old head") != std::string::npos);
  }
  SUBCASE("retry of a failed PR at its approved head") {
    r.merged(1, sha('c'));
    r.check(sha('c'), CheckState::Failure);
    auto o = r.on(RetryRequested{1, "bob", r.now});
    CHECK(only<CheckPolicy>(o).sha == sha('a'));
    CHECK(r.pr(1).status == PrStatus::Approved);
    CHECK(r.pr(1).details.empty());
  }
}

TEST_CASE("a landing PR cannot be cancelled") {
  Repo r;
  r.queue(1, sha('a'));
  r.green(1, sha('c'));
  auto bad = expect_rejected(r, CancelRequested{1, "alice", r.now}, Code::kConflict);
  CHECK(bad.rejected->message.find("landing") != std::string::npos);
}

TEST_CASE("PrClosed cancels a queued or building PR; an open PR is just marked closed") {
  Repo r;
  r.queue(1, sha('a'));
  r.queue(2, sha('b'));
  r.open(3, sha('d'));
  r.merged(1, sha('c'));
  auto o = r.on(PrClosed{1, r.now});
  CHECK(r.pr(1).status == PrStatus::Cancelled);
  CHECK(r.pr(1).reason == "closed");
  CHECK(only<CancelBuild>(o).sha == sha('c'));
  CHECK(only<BuildCandidate>(o).items.at(0).number == 2);

  auto o3 = r.on(PrClosed{3, r.now});
  CHECK(o3.actions.empty());
  CHECK(r.pr(3).status == PrStatus::Cancelled);
  CHECK(r.pr(3).reason == "closed");
  expect_rejected(r, PrClosed{77, r.now}, Code::kNotFound);

  // A closed PR is not queued again by an approval or a retry, with or without its old
  // approval; a reopening brings it back, unapproved.
  for (int n : {1, 3}) {
    const std::string before = r.dump();
    expect_rejected(r, MergeRequested{n, r.pr(n).head, "mm", r.now}, Code::kConflict);
    expect_rejected(r, RetryRequested{n, "mm", r.now}, Code::kConflict);
    CHECK(r.dump() == before);
  }
  REQUIRE(r.pr(1).approval);  // what a retry would have used
  r.on(PrOpened{1, "feature/1", "dev", "PR 1", r.pr(1).head, r.now});
  CHECK(r.pr(1).status == PrStatus::Open);
  CHECK_FALSE(r.pr(1).approval);
  CHECK_FALSE(r.on(MergeRequested{1, r.pr(1).head, "mm", r.now}).rejected);
  CHECK(r.pr(1).status == PrStatus::Approved);
}

TEST_CASE("master moved by someone else: the train is rebuilt on the new master, re-judged") {
  Repo r;
  r.queue(1, sha('a'));
  r.merged(1, sha('c'));
  const Sha moved = sha('9');

  SUBCASE("seen by a fetch") {
    auto o = r.on(MasterObserved{moved, r.now});
    CHECK(r.s.master == moved);
    CHECK(only<CancelBuild>(o).sha == sha('c'));
    CHECK(only<ResetDmz>(o).sha == moved);
    auto n = only<Notify>(o);
    CHECK(n.kind == NoticeKind::Info);
    CHECK(n.message == "master moved to " + moved.substr(0, 7) + " outside dmzbot; rebuilding dmz");
    // The push may have changed the policy: #1 is judged again under the new master first.
    CHECK(none<BuildCandidate>(o));
    CHECK(r.pr(1).status == PrStatus::Approved);
    CHECK(only<CheckPolicy>(o).target == moved);
    auto bc = only<BuildCandidate>(r.policy(1, true));
    CHECK(bc.base == moved);
    CHECK(bc.candidate == 2);
    CHECK(r.pr(1).status == PrStatus::Merging);
    CHECK(r.pr(1).approval->sha == sha('a'));
  }
  SUBCASE("a verdict asked for before the move is not taken") {
    REQUIRE(!r.open(2, sha('b')).rejected);
    const CheckPolicy asked = only<CheckPolicy>(r.approve(2));
    REQUIRE(!r.on(MasterObserved{moved, r.now}).rejected);
    auto late = r.answer(asked);
    CHECK(r.pr(2).status == PrStatus::Approved);
    CHECK(only<CheckPolicy>(late).target == moved);
  }
  SUBCASE("the same master again: nothing") {
    const std::string before = r.dump();
    CHECK(r.on(MasterObserved{kMaster, r.now}).actions.empty());
    CHECK(r.dump() == before);
  }
  SUBCASE("a fast-forward refused because the remote moved") {
    r.check(sha('c'), CheckState::Success);
    REQUIRE(r.s.train.at(0).status == CandidateStatus::Landing);
    // while landing, an observation does not interrupt
    CHECK(r.on(MasterObserved{moved, r.now}).actions.empty());
    CHECK(r.s.master == kMaster);
    auto o = r.master_pushed(1, false, moved);
    CHECK(r.s.master == moved);
    CHECK(only<CancelBuild>(o).sha == sha('c'));
    CHECK(only<CheckPolicy>(o).target == moved);
    CHECK(only<BuildCandidate>(r.policy(1, true)).base == moved);
    CHECK(r.pr(1).status == PrStatus::Merging);
    CHECK(only<Notify>(o).message.find("outside dmzbot") != std::string::npos);
  }
  SUBCASE("a push refused with master in place (a hook, a protection) is transient") {
    r.check(sha('c'), CheckState::Success);
    const Millis at = r.now;
    auto o = r.master_pushed(1, false, kMaster);
    CHECK(r.s.master == kMaster);
    CHECK(r.s.train.empty());
    CHECK(r.pr(1).status == PrStatus::Queued);
    CHECK(r.s.retry_after == at + 30'000);
    CHECK(only<Notify>(o).kind == NoticeKind::Info);
    CHECK(none<BuildCandidate>(o));
  }
  SUBCASE("a push without an answer is made again after the backoff, the same, still landing") {
    r.check(sha('c'), CheckState::Success);
    const Millis at = r.now;
    auto o = r.master_pushed(1, false);
    CHECK(r.s.master == kMaster);
    REQUIRE(r.s.train.size() == 1);
    CHECK(r.s.train[0].status == CandidateStatus::Landing);
    CHECK(r.s.retry_after == at + 30'000);
    CHECK(only<Notify>(o).kind == NoticeKind::Info);
    CHECK(none<BuildCandidate>(o));
    CHECK(none<FastForwardMaster>(o));
    CHECK(none<FastForwardMaster>(r.tick(at + 29'000)));  // not before the backoff
    auto again = only<FastForwardMaster>(r.tick(at + 30'000));
    CHECK(again.to == sha('c'));
    CHECK(again.from == kMaster);
    CHECK(r.s.retry_after == 0);
    CHECK(none<FastForwardMaster>(r.tick(at + 60'000)));  // once: its answer is awaited
    // A restart meanwhile pushes it again too (resume), and its answer lands it.
    CHECK(std::get<FastForwardMaster>(resume(r.s, r.cfg).back()).to == sha('c'));
    r.master_pushed(1, true);
    CHECK(r.pr(1).status == PrStatus::Merged);
  }
  SUBCASE("a push without an answer that reached the remote: a fetch seeing it lands it once") {
    r.check(sha('c'), CheckState::Success);
    r.master_pushed(1, false);
    auto o = r.on(MasterObserved{sha('c'), r.now});
    REQUIRE_FALSE(o.rejected);
    CHECK(r.s.master == sha('c'));
    CHECK(r.s.train.empty());
    CHECK(r.pr(1).status == PrStatus::Merged);
    CHECK(none<BuildCandidate>(o));  // not merged again
    CHECK(none<FastForwardMaster>(r.tick(r.now + 60'000)));
    CHECK(r.master_pushed(1, true).actions.empty());  // the retry's answer: stale
  }
  SUBCASE("a refused push whose remote is already the candidate counts as landed") {
    r.check(sha('c'), CheckState::Success);
    r.master_pushed(1, false, sha('c'));
    CHECK(r.s.master == sha('c'));
    CHECK(r.pr(1).status == PrStatus::Merged);
  }
}

TEST_CASE("resume re-issues what was in flight at each stage") {
  Repo r;
  r.open(1, sha('a'));
  r.approve(1);
  auto a = resume(r.s, r.cfg);
  REQUIRE(a.size() == 2);
  CHECK(std::get<CheckPolicy>(a[0]).sha == sha('a'));
  CHECK(std::get<CheckPolicy>(a[0]).target == kMaster);
  CHECK(std::get<ResetDmz>(a[1]).sha == kMaster);  // an empty train: dmz must be master

  r.policy(1, true);
  a = resume(r.s, r.cfg);
  REQUIRE(a.size() == 1);
  auto bc = std::get<BuildCandidate>(a[0]);
  CHECK(bc.candidate == 1);
  CHECK(bc.base == kMaster);
  CHECK(bc.items.at(0).number == 1);
  CHECK(bc.items.at(0).approver == "mm");

  r.merged(1, sha('c'));
  a = resume(r.s, r.cfg);
  REQUIRE(a.size() == 1);
  CHECK(std::get<StartBuild>(a[0]).sha == sha('c'));

  r.check(sha('c'), CheckState::Pending);
  a = resume(r.s, r.cfg);
  REQUIRE(a.size() == 1);
  CHECK(std::get<StartBuild>(a[0]).candidate == 1);

  r.check(sha('c'), CheckState::Success);
  a = resume(r.s, r.cfg);
  REQUIRE(a.size() == 1);
  auto ff = std::get<FastForwardMaster>(a[0]);
  CHECK(ff.from == kMaster);
  CHECK(ff.to == sha('c'));

  r.master_pushed(1, true);
  a = resume(r.s, r.cfg);
  REQUIRE(a.size() == 1);
  CHECK(std::get<ResetDmz>(a[0]).sha == sha('c'));
}

TEST_CASE("resume after a back-out that emptied the train re-issues the reset of dmz") {
  Repo r;
  r.queue(1, sha('a'));
  r.merged(1, sha('c'));
  auto o = r.check(sha('c'), CheckState::Failure);
  CHECK(only<ResetDmz>(o).sha == kMaster);
  // A crash right here, before the reset reached the remote: the restart must redo it.
  auto a = resume(r.s, r.cfg);
  REQUIRE(a.size() == 1);
  CHECK(std::get<ResetDmz>(a[0]).sha == kMaster);
}

TEST_CASE("queue_order sorts queued PRs by queued_at, then number") {
  RepoState s;
  auto add = [&](int n, PrStatus st, Millis at) {
    PullRequest pr;
    pr.number = n;
    pr.status = st;
    pr.queued_at = at;
    s.prs[n] = pr;
  };
  add(5, PrStatus::Queued, 100);
  add(3, PrStatus::Queued, 200);
  add(4, PrStatus::Queued, 100);
  add(1, PrStatus::Approved, 50);
  add(2, PrStatus::Merging, 10);
  CHECK(queue_order(s) == std::vector<int>{4, 5, 3});
}

TEST_CASE("a train of two: candidate 2 is built on candidate 1 and lands after it") {
  Repo r;
  r.cfg.max_train = 2;
  r.queue(1, sha('a'));
  auto o = r.queue(2, sha('b'));
  CHECK(none<BuildCandidate>(o));  // candidate 1's sha is unknown: wait
  CHECK(r.pr(2).status == PrStatus::Queued);

  auto m1 = r.merged(1, sha('c'));
  auto bc = only<BuildCandidate>(m1);
  CHECK(bc.candidate == 2);
  CHECK(bc.base == sha('c'));
  CHECK(r.s.train.size() == 2);
  r.merged(2, sha('d'));

  SUBCASE("candidate 2 green first waits for candidate 1") {
    auto g2 = r.check(sha('d'), CheckState::Success);
    CHECK(none<FastForwardMaster>(g2));
    CHECK(r.s.train[1].status == CandidateStatus::Building);
    auto g1 = r.check(sha('c'), CheckState::Success);
    auto ff1 = only<FastForwardMaster>(g1);
    CHECK(ff1.to == sha('c'));
    auto l1 = r.master_pushed(1, true);
    auto ff2 = only<FastForwardMaster>(l1);  // already green: lands right away
    CHECK(ff2.candidate == 2);
    CHECK(ff2.from == sha('c'));
    CHECK(ff2.to == sha('d'));
    r.master_pushed(2, true);
    CHECK(r.s.master == sha('d'));
    CHECK(r.pr(1).status == PrStatus::Merged);
    CHECK(r.pr(2).status == PrStatus::Merged);
    CHECK(r.s.train.empty());
  }
  SUBCASE("failure of candidate 1 drops candidate 2 and rebuilds it on master") {
    auto f = r.check(sha('c'), CheckState::Failure, "ci/build", "boom");
    CHECK(r.pr(1).status == PrStatus::Failed);
    auto cancels = all<CancelBuild>(f);
    REQUIRE(cancels.size() == 2);
    CHECK(cancels[0].sha == sha('c'));
    CHECK(cancels[1].sha == sha('d'));
    CHECK(only<ResetDmz>(f).sha == kMaster);
    auto rebuilt = only<BuildCandidate>(f);
    CHECK(rebuilt.base == kMaster);
    CHECK(rebuilt.items.at(0).number == 2);
    CHECK(r.pr(2).status == PrStatus::Merging);
    CHECK(notices_for(f, 2).empty());  // not to blame
  }
  SUBCASE("failure of candidate 2 keeps candidate 1 and resets dmz to it") {
    auto f = r.check(sha('d'), CheckState::Failure);
    CHECK(r.pr(2).status == PrStatus::Failed);
    CHECK(r.pr(1).status == PrStatus::InDmz);
    CHECK(only<CancelBuild>(f).sha == sha('d'));
    CHECK(only<ResetDmz>(f).sha == sha('c'));
    REQUIRE(r.s.train.size() == 1);
  }
  SUBCASE("resume lists the train in order") {
    auto a = resume(r.s, r.cfg);
    REQUIRE(a.size() == 2);
    CHECK(std::get<StartBuild>(a[0]).sha == sha('c'));
    CHECK(std::get<StartBuild>(a[1]).sha == sha('d'));
  }
}

TEST_CASE("batches take up to max_batch PRs in queue order") {
  Repo r;
  r.cfg.max_batch = 2;
  r.open(1, sha('a'));
  r.open(2, sha('b'));
  r.open(3, sha('d'));
  r.approve(3);
  r.approve(1);
  r.approve(2);
  r.cfg.max_train = 0;  // hold the queue while the verdicts arrive
  r.policy(1, true);
  r.policy(2, true);
  r.policy(3, true);
  CHECK(queue_order(r.s) == std::vector<int>{3, 1, 2});
  r.cfg.max_train = 1;
  auto o = r.tick(r.now);
  auto bc = only<BuildCandidate>(o);
  REQUIRE(bc.items.size() == 2);
  CHECK(bc.items[0].number == 3);
  CHECK(bc.items[1].number == 1);
  CHECK(r.pr(2).status == PrStatus::Queued);
}

TEST_CASE("handle is deterministic") {
  auto run = [] {
    Repo r;
    r.queue(1, sha('a'));
    r.queue(2, sha('b'));
    r.merged(1, sha('c'));
    r.check(sha('c'), CheckState::Failure);
    return r.dump();
  };
  CHECK(run() == run());
}

TEST_CASE("a PR pushed while landing is re-opened if the landing is rebuilt") {
  Repo r;
  r.queue(1, sha('a'));
  r.green(1, sha('c'));
  r.push(1, sha('e'));
  auto o = r.master_pushed(1, false, sha('9'));
  CHECK(r.s.master == sha('9'));
  CHECK(r.pr(1).status == PrStatus::Open);
  CHECK_FALSE(r.pr(1).approval);
  CHECK(r.pr(1).reason == "new push " + sha('e').substr(0, 7) +
                              " after approval; a merge master must approve the new head");
  CHECK(none<BuildCandidate>(o));
  CHECK(only<ResetDmz>(o).sha == sha('9'));
}

TEST_CASE("the first sight of master, or a move with an empty train, resets dmz") {
  Repo r;
  r.s.master.clear();
  r.queue(1, sha('a'));
  CHECK(r.pr(1).status == PrStatus::Queued);  // no base to build on yet
  auto o = r.on(MasterObserved{kMaster, r.now});
  CHECK(r.s.master == kMaster);
  CHECK(only<ResetDmz>(o).sha == kMaster);
  CHECK(none<Notify>(o));
  // Judged before there was a master to judge it by: judged again at the first one seen.
  CHECK(only<CheckPolicy>(o).target == kMaster);
  CHECK(only<BuildCandidate>(r.policy(1, true)).base == kMaster);
}

TEST_CASE("Tick does not time out a candidate that is still merging") {
  Repo r;
  r.queue(1, sha('a'));
  const std::string before = r.dump();
  auto o = r.tick(r.now + 10 * r.cfg.check_timeout);
  CHECK(o.actions.empty());
  CHECK(r.dump() == before);
}

TEST_CASE("a broken state makes handle refuse the event, not throw, and leaves state alone") {
  Repo r;
  r.queue(1, sha('a'));
  r.s.train.at(0).prs.push_back(99);  // a PR the state does not know
  const std::string before = r.dump();
  Outcome o;
  CHECK_NOTHROW(
      o = handle(r.s, MergeDone{1, MergeOutcome::Merged, sha('c'), 0, {}, "", r.now}, r.cfg));
  REQUIRE(o.rejected);
  CHECK(o.rejected->code == Code::kInternal);
  CHECK(o.actions.empty());
  CHECK(r.dump() == before);
}

TEST_CASE("a conflict blamed on a PR outside the candidate is treated as transient") {
  Repo r;
  r.queue(1, sha('a'));
  auto o = r.on(MergeDone{1, MergeOutcome::Conflict, "", 42, {"a"}, "", r.now});
  CHECK(r.pr(1).status == PrStatus::Queued);
  CHECK(r.s.retry_after > 0);
  CHECK(only<Notify>(o).kind == NoticeKind::Info);
}

TEST_CASE("master moves only when the candidate's own verdict passed as well as every check") {
  Repo r;
  r.queue(1, sha('a'));
  auto o = r.merged_unchecked(1, sha('c'));
  auto cc = only<CheckCandidate>(o);
  CHECK(cc.candidate == 1);
  CHECK(cc.sha == sha('c'));
  CHECK(cc.base == kMaster);
  CHECK(only<StartBuild>(o).sha == sha('c'));
  // Checks green, verdict pending: no fast-forward.
  CHECK(none<FastForwardMaster>(r.check(sha('c'), CheckState::Success)));
  CHECK(r.s.train.at(0).status == CandidateStatus::Building);
  // A verdict for another sha is stale and changes nothing.
  const std::string before = r.dump();
  CHECK(r.on(CandidateChecked{1, sha('d'), true, {}, r.now}).actions.empty());
  CHECK(r.dump() == before);
  auto landed = r.on(CandidateChecked{1, sha('c'), true, {}, r.now});
  CHECK(r.s.train.at(0).policy_passed);
  CHECK(only<FastForwardMaster>(landed).to == sha('c'));
}

TEST_CASE("a failing candidate verdict backs the candidate out with every reason") {
  Repo r;
  r.queue(1, sha('a'));
  r.queue(2, sha('b'));
  r.merged_unchecked(1, sha('c'));
  r.check(sha('c'), CheckState::Success);
  auto o = r.on(CandidateChecked{
      1, sha('c'), false, {"merge commit ccccccc is unsigned", "evil merge: tree differs"}, r.now});
  CHECK(r.pr(1).status == PrStatus::Failed);
  CHECK(r.pr(1).reason == "policy (candidate): merge commit ccccccc is unsigned");
  CHECK(r.pr(1).details ==
        std::vector<std::string>{"merge commit ccccccc is unsigned", "evil merge: tree differs"});
  CHECK(none<FastForwardMaster>(o));
  CHECK(only<CancelBuild>(o).sha == sha('c'));
  auto next = only<BuildCandidate>(o);  // the next PR proceeds on master
  CHECK(next.items.at(0).number == 2);
  CHECK(next.base == kMaster);
}

TEST_CASE("a candidate check that failed on our side blames nobody: built again later") {
  Repo r;
  r.queue(1, sha('a'));
  r.merged_unchecked(1, sha('c'));
  r.check(sha('c'), CheckState::Success);
  CandidateChecked unread{1, sha('c'), false, {}, r.now};
  unread.unavailable = "reading ccccccc: disk I/O error";
  auto o = r.on(unread);
  CHECK(r.pr(1).status == PrStatus::Queued);
  CHECK(only<Notify>(o).reason == Reason::TransientError);
  CHECK(only<Notify>(o).message.find("disk I/O error") != std::string::npos);
  CHECK(none<FastForwardMaster>(o));
  CHECK(only<CancelBuild>(o).sha == sha('c'));
  CHECK(r.s.train.empty());
  CHECK(r.s.retry_after == r.now - 1000 + r.cfg.retry_backoff);
  auto later = r.tick(r.s.retry_after);  // after the backoff it is merged again
  CHECK(only<BuildCandidate>(later).items.at(0).number == 1);
}

TEST_CASE("resume re-issues a candidate check that had not answered, and only that") {
  Repo r;
  r.queue(1, sha('a'));
  r.merged_unchecked(1, sha('c'));
  auto actions = resume(r.s, r.cfg);
  REQUIRE(actions.size() == 2);
  CHECK(std::get<CheckCandidate>(actions[0]).sha == sha('c'));
  CHECK(std::get<StartBuild>(actions[1]).sha == sha('c'));
  r.on(CandidateChecked{1, sha('c'), true, {}, r.now});
  actions = resume(r.s, r.cfg);
  REQUIRE(actions.size() == 1);
  CHECK(std::holds_alternative<StartBuild>(actions[0]));
}

TEST_CASE(
    "PrOpened: a title edit is taken; a closed PR that is reopened is open again, unapproved") {
  Repo r;
  r.queue(1, sha('a'));
  CHECK_FALSE(r.on(PrOpened{1, "feature/f1", "dev1", "New title", sha('a'), r.now}).rejected);
  CHECK(r.pr(1).title == "New title");
  CHECK(r.pr(1).status == PrStatus::Merging);  // nothing else changed
  CHECK_FALSE(r.on(PrClosed{1, r.now}).rejected);
  CHECK(r.pr(1).status == PrStatus::Cancelled);
  r.pr(1).priority = 4;
  // A late word of the PR from before it was closed (a label, an edit) does not reopen it.
  PrOpened late{1, "feature/f1", "dev1", "Old title", sha('a'), r.now};
  late.reopens = false;
  CHECK_FALSE(r.on(late).rejected);
  CHECK(r.pr(1).status == PrStatus::Cancelled);
  CHECK(r.pr(1).reason_code == Reason::Closed);
  CHECK(r.pr(1).title == "New title");
  auto o = r.on(PrOpened{1, "feature/f1", "dev1", "Reopened", sha('b'), r.now});
  CHECK_FALSE(o.rejected);
  CHECK(r.pr(1).status == PrStatus::Open);
  CHECK(r.pr(1).head == sha('b'));
  CHECK(r.pr(1).title == "Reopened");
  CHECK_FALSE(r.pr(1).approval);
  CHECK(r.pr(1).reason_code == Reason::None);
  CHECK(r.pr(1).finished_at == 0);
  CHECK(r.pr(1).priority == 4);
  CHECK(none<CheckPolicy>(o));
  // A cancelled (not closed) PR is not reopened by a PrOpened at another head.
  r.queue(2, sha('c'));
  CHECK_FALSE(r.on(CancelRequested{2, "mm", r.now}).rejected);
  expect_rejected(r, PrOpened{2, "feature/f2", "dev2", "Title 2", sha('d'), r.now},
                  Code::kConflict);
  // A word of an open PR at another head that is no opening (a label, an edit, a push's own
  // webhook, which brings its PrPushed next) changes nothing: only PrPushed moves a head.
  r.queue(3, sha('e'));
  const std::string before = r.dump();
  PrOpened word{3, "feature/f3", "dev3", "Title 3", sha('f'), r.now};
  word.reopens = false;
  CHECK_FALSE(r.on(word).rejected);
  CHECK(r.dump() == before);
}

// Forge reviews are read when the policy is checked: a review withdrawn since (dismissed, or
// changes requested) may have been counted, so a verdict that counted approvals is taken again.
TEST_CASE("ReviewWithdrawn: a verdict that counted approvals is judged again, its candidate cut") {
  Repo r;
  REQUIRE(!r.open(1, sha('a')).rejected);
  REQUIRE(!r.approve(1).rejected);
  REQUIRE(!r.on(PolicyChecked{.number = 1,
                              .sha = sha('a'),
                              .pass = true,
                              .at = r.now,
                              .approvers = {"bob"},
                              .target = r.s.master,
                              .epoch = r.s.policy_epoch})
               .rejected);
  const CandidateId first = r.pr(1).candidate.value();
  REQUIRE(!r.merged(first, sha('c')).rejected);
  REQUIRE(r.pr(1).status == PrStatus::InDmz);
  r.queue(2, sha('b'));  // counted no approval: none was needed
  const std::string quiet = r.dump();
  CHECK_FALSE(r.on(ReviewWithdrawn{2, "bob", r.now}).rejected);
  CHECK(r.dump() == quiet);

  auto o = r.on(ReviewWithdrawn{1, "bob", r.now});
  CHECK_FALSE(o.rejected);
  CHECK(r.pr(1).status == PrStatus::Approved);
  CHECK(r.pr(1).approvers.empty());
  CHECK_FALSE(r.pr(1).candidate);
  CHECK(std::none_of(r.s.train.begin(), r.s.train.end(), [](const Candidate& k) {
    return std::find(k.prs.begin(), k.prs.end(), 1) != k.prs.end();
  }));
  const auto asked = only<CheckPolicy>(o);
  CHECK(asked.number == 1);
  CHECK(asked.sha == sha('a'));
  // Judged again without bob's approval, it fails; the approval stays with the merge master.
  REQUIRE(!r.policy(1, false, {"needs 1 approval from maintainers"}).rejected);
  CHECK(r.pr(1).status == PrStatus::Failed);
  CHECK(r.pr(1).reason_code == Reason::PolicyFailed);
  expect_rejected(r, ReviewWithdrawn{9, "bob", r.now}, Code::kNotFound);
}

TEST_CASE("Reply says something about a PR and changes nothing, known or not") {
  Repo r;
  r.open(1, sha('a'));
  const std::string before = r.dump();
  auto o = r.on(Reply{1, NoticeKind::Failure, "only merge masters may merge", {"see docs"}, r.now});
  CHECK_FALSE(o.rejected);
  CHECK(r.dump() == before);
  auto n = only<Notify>(o);
  CHECK(n == Notify{1,
                    NoticeKind::Failure,
                    Reason::None,
                    "only merge masters may merge",
                    sha('a'),
                    {"see docs"}});
  auto unknown = only<Notify>(r.on(Reply{9, NoticeKind::Info, "help", {}, r.now}));
  CHECK(unknown.number == 9);
  CHECK(unknown.head.empty());
}

TEST_CASE("StatusRequested answers where the PR stands") {
  Repo r;
  r.queue(1, sha('a'));
  r.queue(2, sha('b'));
  r.merged(1, sha('c'));
  auto one = only<Notify>(r.on(StatusRequested{1, "dev", r.now}));
  CHECK(one.kind == NoticeKind::Info);
  CHECK(one.message.find("#1 at aaaaaaa is in_dmz, approved by mm at aaaaaaa") == 0);
  CHECK(one.message.find("in candidate 1 (ccccccc), waiting for ci/build") != std::string::npos);
  auto two = only<Notify>(r.on(StatusRequested{2, "dev", r.now}));
  CHECK(two.message.find("is queued") != std::string::npos);
  CHECK(two.message.find("position 1 of 1") != std::string::npos);
  auto none_such = only<Notify>(r.on(StatusRequested{7, "dev", r.now}));
  CHECK(none_such.message == "#7 is not known to dmzbot (yet)");
}

TEST_CASE("PriorityRequested: higher priority enters the train first; a building one is kept") {
  Repo r;
  r.queue(1, sha('a'));  // takes the train at once
  r.queue(2, sha('b'));
  r.queue(3, sha('c'));
  r.queue(4, sha('d'));
  CHECK(queue_order(r.s) == std::vector<int>{2, 3, 4});
  auto o = r.on(PriorityRequested{4, 10, "mm", r.now});
  CHECK_FALSE(o.rejected);
  CHECK(only<Notify>(o).message == "priority of #4 set to 10 by mm");
  CHECK(none<CancelBuild>(o));  // the candidate being built is not interrupted
  CHECK(queue_order(r.s) == std::vector<int>{4, 2, 3});
  r.on(PriorityRequested{3, 10, "mm", r.now});
  CHECK(queue_order(r.s) == std::vector<int>{3, 4, 2});  // equal priority: queued_at
  r.on(PriorityRequested{1, -5, "mm", r.now});
  CHECK(r.pr(1).status == PrStatus::Merging);
  // The next candidate takes the highest priority.
  REQUIRE(!r.merged(1, sha('e')).rejected);
  auto landed = r.check(sha('e'), CheckState::Success);
  auto ff = only<FastForwardMaster>(landed);
  auto next = r.master_pushed(ff.candidate, true);
  CHECK(only<BuildCandidate>(next).items.front().number == 3);
  expect_rejected(r, PriorityRequested{9, 1, "mm", r.now}, Code::kNotFound);
  expect_rejected(r, PriorityRequested{2, kMaxPriority + 1, "mm", r.now}, Code::kInvalid);
  expect_rejected(r, PriorityRequested{1, 3, "mm", r.now}, Code::kConflict);  // merged
}

TEST_CASE("failure and merge notices carry their details") {
  Repo r;
  r.queue(1, sha('a'));
  r.merged(1, sha('c'));
  auto failed = r.check(sha('c'), CheckState::Failure, "ci/build", "3 tests", "https://ci/9");
  auto n = notices_for(failed, 1);
  REQUIRE(n.size() == 1);
  CHECK(n[0].details == std::vector<std::string>{"https://ci/9"});
  r.queue(2, sha('b'));
  r.green(2, sha('d'));
  auto ff = r.master_pushed(2, true);
  auto merged = notices_for(ff, 2);
  REQUIRE(merged.size() == 1);
  CHECK(merged[0].details == std::vector<std::string>{sha('d')});
}

TEST_CASE(
    "serial with candidate branches: a candidate that leaves the train has its branch pruned") {
  Repo r;
  r.cfg.candidate_branches = true;
  r.queue(1, sha('a'));
  r.queue(2, sha('b'));
  r.merged(1, sha('c'));
  auto failed = r.check(sha('c'), CheckState::Failure);
  CHECK(r.pr(1).status == PrStatus::Failed);
  CHECK(only<PruneCandidates>(failed).keep == std::vector<CandidateId>{2});
  r.green(2, sha('d'));
  auto landed = r.master_pushed(2, true);
  CHECK(r.pr(2).status == PrStatus::Merged);
  CHECK(only<PruneCandidates>(landed).keep.empty());
}

// The strategies' decisions (batch bisection, train windows and rebuild-behind, adaptive lanes,
// flake retries, priority) and a property test of the invariants under random events.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <set>

#include "queue/engine.hpp"
#include "queue/forecast.hpp"
#include "queue/json.hpp"

using namespace dmz::queue;

namespace {

Sha sha_of(char kind, int n) {
  std::string s = std::to_string(n);
  return std::string(1, kind) + std::string(39 - s.size(), '0') + s;
}
const Sha kMaster = sha_of('m', 0);

template <class A>
std::vector<A> all(const Outcome& o) {
  std::vector<A> out;
  for (const auto& a : o.actions)
    if (const auto* x = std::get_if<A>(&a)) out.push_back(*x);
  return out;
}

std::vector<int> numbers(const BuildCandidate& b) {
  std::vector<int> out;
  for (const auto& i : b.items) out.push_back(i.number);
  return out;
}

// A repository driven by hand: every event is stamped with `now`, and the candidates that
// reach dmz get the shas c1, c2, ... in the order they are merged.
struct Repo {
  RepoState s;
  Settings cfg;
  Millis now = 1'000'000;
  int shas = 0;
  std::vector<BuildCandidate> built;  // every BuildCandidate emitted, in order

  explicit Repo(Strategy strategy) {
    s.repo = "acme/app";
    s.master = kMaster;
    cfg.required_checks = {"ci"};
    cfg.strategy = strategy;
  }
  Outcome on(Event e) {
    Outcome o = handle(s, e, cfg);
    REQUIRE_FALSE(o.rejected);
    for (const auto& b : all<BuildCandidate>(o)) built.push_back(b);
    now += 1000;
    return o;
  }
  // Opens, approves and passes the policy of PR n (head h<n>), changing `paths`; `precheck`:
  // its own CI's verdict, reported before the approval.
  Outcome queue(int n, std::vector<std::string> paths = {}, int priority = 0,
                std::optional<CheckState> precheck = std::nullopt) {
    on(PrOpened{n, "f" + std::to_string(n), "dev" + std::to_string(n % 3), "t", sha_of('h', n),
                now});
    if (precheck) on(CheckReported{sha_of('h', n), Check{"ci", *precheck, "", "", 0}, now});
    if (priority != 0) on(PriorityRequested{n, priority, "mm", now});
    on(MergeRequested{n, sha_of('h', n), "mm", now});
    return on(PolicyChecked{.number = n,
                            .sha = sha_of('h', n),
                            .pass = true,
                            .at = now,
                            .paths = std::move(paths),
                            .target = s.master,
                            .epoch = s.policy_epoch});
  }
  // Candidate `id` reached dmz at a fresh sha and its merges passed; returns the sha.
  Sha merge(CandidateId id) {
    const Sha sha = sha_of('c', ++shas);
    on(MergeDone{id, MergeOutcome::Merged, sha, 0, {}, "", now});
    on(CandidateChecked{id, sha, true, {}, now});
    return sha;
  }
  Outcome check(const Sha& sha, bool pass) {
    return on(CheckReported{
        sha, Check{"ci", pass ? CheckState::Success : CheckState::Failure, "", "", 0}, now});
  }
  Outcome pushed(CandidateId id) { return on(MasterPushed{id, true, "", "", now}); }
  const Candidate& candidate(CandidateId id) const {
    for (const auto& k : s.train)
      if (k.id == id) return k;
    FAIL("no candidate " << id);
    return s.train.front();
  }
  bool has(CandidateId id) const {
    return std::any_of(s.train.begin(), s.train.end(), [&](const auto& k) { return k.id == id; });
  }
  // The candidate whose PRs are exactly `prs` (the newest), or 0.
  CandidateId with(std::vector<int> prs) const {
    CandidateId found = 0;
    for (const auto& k : s.train)
      if (k.prs == prs) found = k.id;
    return found;
  }
  PrStatus status(int n) const { return s.prs.at(n).status; }
  // What puts adaptive under load: a PR in four fails, and fifteen arrive during a build.
  void observe_load() {
    cfg.window_start = 20;
    cfg.window_max = 20;
    s.observed.builds = 50;
    s.observed.fail_permille = 250;
    s.observed.build_ms = 45'000;
    s.observed.arrival_ms = 3'000;
    s.observed.last_arrival = now - 3'000;
  }
};

}  // namespace

TEST_CASE("batch: a candidate policy failure about one PR's merge fails only that PR") {
  Repo r(Strategy::Batch);
  r.cfg.max_batch = 3;
  for (int n = 1; n <= 3; ++n) r.queue(n);
  const CandidateId first = r.with({1});
  r.check(r.merge(first), true);
  r.pushed(first);
  const CandidateId batch = r.with({2, 3});
  REQUIRE(batch != 0);
  const Sha sha = sha_of('c', ++r.shas);
  r.on(MergeDone{batch, MergeOutcome::Merged, sha, 0, {}, "", r.now});
  CandidateChecked verdict{batch, sha, false, {"evil merge: c000002's tree differs"}, r.now};
  verdict.culprits = {sha_of('h', 3)};
  auto o = r.on(verdict);
  CHECK(r.status(3) == PrStatus::Failed);
  CHECK(r.s.prs.at(3).reason_code == Reason::CandidatePolicyFailed);
  CHECK(r.s.prs.at(3).details == verdict.reasons);
  CHECK(r.status(2) != PrStatus::Failed);  // innocent: built again, alone
  REQUIRE(all<BuildCandidate>(o).size() == 1);
  CHECK(numbers(all<BuildCandidate>(o)[0]) == std::vector<int>{2});
  CHECK(all<Notify>(o).size() == 1);

  // A verdict about no PR in particular fails the whole candidate, as before.
  const Sha again = sha_of('c', ++r.shas);
  const CandidateId alone = r.with({2});
  r.on(MergeDone{alone, MergeOutcome::Merged, again, 0, {}, "", r.now});
  r.on(CandidateChecked{alone, again, false, {"merge c000003 is unsigned"}, r.now});
  CHECK(r.status(2) == PrStatus::Failed);
}

TEST_CASE("batch: a failing batch is bisected, halves first; only the culprit is ejected") {
  Repo r(Strategy::Batch);
  r.cfg.max_batch = 4;
  r.queue(1);  // alone: the train was empty
  const Sha c1 = r.merge(1);
  for (int n = 2; n <= 5; ++n) r.queue(n);
  CHECK(r.s.train.size() == 1);  // max_train 1: the others wait
  r.check(c1, true);
  r.pushed(1);
  REQUIRE(r.status(1) == PrStatus::Merged);
  const CandidateId batch = r.with({2, 3, 4, 5});
  REQUIRE(batch != 0);
  auto f = r.check(r.merge(batch), false);
  // Halves: {2, 3} builds first (it is ahead), {4, 5} waits as a group; nobody is ejected.
  for (int n : {2, 3, 4, 5}) CHECK(r.status(n) != PrStatus::Failed);
  for (const auto& n : all<Notify>(f)) CHECK(n.kind != NoticeKind::Failure);
  REQUIRE(all<BuildCandidate>(f).size() == 1);
  CHECK(numbers(all<BuildCandidate>(f)[0]) == std::vector<int>{2, 3});
  CHECK(r.s.prs.at(4).group == r.s.prs.at(5).group);
  CHECK(r.s.prs.at(4).group != 0);

  const CandidateId left = r.with({2, 3});
  r.check(r.merge(left), true);
  auto landed = r.pushed(left);
  CHECK(r.status(2) == PrStatus::Merged);
  CHECK(r.status(3) == PrStatus::Merged);
  REQUIRE(all<BuildCandidate>(landed).size() == 1);
  CHECK(numbers(all<BuildCandidate>(landed)[0]) == std::vector<int>{4, 5});

  r.check(r.merge(r.with({4, 5})), false);  // the culprit is in this half: halve again
  const CandidateId four = r.with({4});
  REQUIRE(four != 0);
  CHECK(r.status(5) == PrStatus::Queued);
  auto culprit = r.check(r.merge(four), false);
  CHECK(r.status(4) == PrStatus::Failed);
  REQUIRE(all<Notify>(culprit).size() >= 1);
  std::set<int> failed;
  for (const auto& n : all<Notify>(culprit))
    if (n.kind == NoticeKind::Failure) failed.insert(n.number);
  CHECK(failed == std::set<int>{4});
  const CandidateId five = r.with({5});
  REQUIRE(five != 0);
  r.check(r.merge(five), true);
  r.pushed(five);
  CHECK(r.status(5) == PrStatus::Merged);
  // Builds: the batch, {2,3}, {4,5}, {4}, {5}, after {1}.
  CHECK(r.built.size() == 6);
}

TEST_CASE("batch: a crash in the middle of a bisection resumes it") {
  Repo r(Strategy::Batch);
  r.cfg.max_batch = 4;
  r.queue(1);
  const Sha c1 = r.merge(1);
  for (int n = 2; n <= 5; ++n) r.queue(n);
  r.check(c1, true);
  r.pushed(1);
  r.check(r.merge(r.with({2, 3, 4, 5})), false);
  const CandidateId left = r.with({2, 3});
  REQUIRE(left != 0);
  // The shell crashed: a fresh engine gets the saved state (a JSON round trip is not needed:
  // the state is plain data) and resumes the merge of {2, 3}.
  RepoState saved = r.s;
  auto actions = resume(saved, r.cfg);
  bool rebuilt = false;
  for (const auto& a : actions)
    if (const auto* b = std::get_if<BuildCandidate>(&a))
      rebuilt = b->candidate == left && numbers(*b) == std::vector<int>{2, 3};
  CHECK(rebuilt);
  // The group {4, 5} is still a group after the restart: it builds together next.
  r.s = saved;
  r.check(r.merge(left), true);
  auto landed = r.pushed(left);
  REQUIRE(all<BuildCandidate>(landed).size() == 1);
  CHECK(numbers(all<BuildCandidate>(landed)[0]) == std::vector<int>{4, 5});
}

TEST_CASE(
    "train: the window starts at window_start, grows by one per landing, halves per failure") {
  Repo r(Strategy::Train);
  r.cfg.window_start = 2;
  r.cfg.window_floor = 1;
  r.cfg.window_max = 8;
  r.queue(1);
  const Sha c1 = r.merge(1);
  r.queue(2);
  const CandidateId k2 = r.with({2});
  REQUIRE(k2 != 0);
  CHECK(r.candidate(k2).base == c1);  // speculative: built on candidate 1
  const Sha c2 = r.merge(k2);
  r.queue(3);
  r.queue(4);
  r.queue(5);
  CHECK(r.s.train.size() == 2);  // window 2
  r.check(c1, true);
  auto l1 = r.pushed(1);
  CHECK(r.s.window == 3);  // +1 per landing
  // Two more fit: 3 on candidate 2; 4 waits for 3's sha.
  REQUIRE(all<BuildCandidate>(l1).size() == 1);
  CHECK(numbers(all<BuildCandidate>(l1)[0]) == std::vector<int>{3});
  CHECK(all<BuildCandidate>(l1)[0].base == c2);
  const Sha c3 = r.merge(r.with({3}));
  CHECK(r.with({4}) != 0);
  CHECK(r.s.train.size() == 3);

  // Candidate 2 (PR 2) fails at the front: PR 2 alone is ejected; 3 and 4 are rebuilt on master
  // without it; the window halves.
  auto f = r.check(c2, false);
  CHECK(r.status(2) == PrStatus::Failed);
  CHECK(r.s.window == 1);
  std::set<Sha> cancelled;
  for (const auto& c : all<CancelBuild>(f)) cancelled.insert(c.sha);
  CHECK(cancelled.count(c2));
  CHECK(cancelled.count(c3));
  for (int n : {3, 4, 5}) CHECK(r.status(n) != PrStatus::Failed);
  auto rebuilt = all<BuildCandidate>(f);
  REQUIRE(rebuilt.size() == 1);  // window 1
  CHECK(numbers(rebuilt[0]) == std::vector<int>{3});
  CHECK(rebuilt[0].base == r.s.master);
}

TEST_CASE("train: master fast-forwards along the longest green prefix") {
  Repo r(Strategy::Train);
  r.cfg.window_start = 3;
  r.queue(1);
  const Sha c1 = r.merge(1);
  r.queue(2);
  const Sha c2 = r.merge(r.with({2}));
  r.queue(3);
  const Sha c3 = r.merge(r.with({3}));
  r.check(c3, true);  // green, but 1 and 2 are undecided: nothing lands
  CHECK(all<FastForwardMaster>(r.check(c2, true)).empty());
  auto g = r.check(c1, true);
  auto ff = all<FastForwardMaster>(g);
  REQUIRE(ff.size() == 1);
  CHECK(ff[0].from == kMaster);
  CHECK(ff[0].to == c3);  // one push lands all three
  r.pushed(ff[0].candidate);
  for (int n : {1, 2, 3}) CHECK(r.status(n) == PrStatus::Merged);
  CHECK(r.s.master == c3);
  CHECK(r.s.train.empty());
}

TEST_CASE("train: a chain's push without an answer is made again to the same candidate") {
  Repo r(Strategy::Train);
  r.cfg.window_start = 3;
  r.queue(1);
  const Sha c1 = r.merge(1);
  r.queue(2);
  const Sha c2 = r.merge(r.with({2}));
  r.queue(3);
  const Sha c3 = r.merge(r.with({3}));
  r.check(c2, true);
  const auto ffs = all<FastForwardMaster>(r.check(c1, true));
  REQUIRE(ffs.size() == 1);
  const FastForwardMaster ff = ffs[0];
  CHECK(ff.to == c2);
  // The answer was lost and the remote could not be read: the chain waits to be pushed again.
  const Millis failed_at = r.now;
  r.on(MasterPushed{ff.candidate, false, "", "the remote hung up", r.now});
  CHECK(r.s.train.size() == 3);
  CHECK(r.s.master == kMaster);
  // #3 turns green meanwhile: the push made again is the same (c2 may be master already).
  CHECK(all<FastForwardMaster>(r.check(c3, true)).empty());
  auto again = all<FastForwardMaster>(r.on(Tick{failed_at + r.cfg.retry_backoff}));
  REQUIRE(again.size() == 1);
  CHECK(again[0].to == c2);
  CHECK(again[0].candidate == ff.candidate);
  SUBCASE("its answer lands the chain, then #3") {
    auto o = r.pushed(ff.candidate);
    CHECK(r.s.master == c2);
    CHECK(r.status(1) == PrStatus::Merged);
    CHECK(r.status(2) == PrStatus::Merged);
    CHECK(all<FastForwardMaster>(o).at(0).to == c3);
  }
  SUBCASE("a fetch that finds master at c2 lands both, nothing merged again") {
    const std::size_t built = r.built.size();
    auto o = r.on(MasterObserved{c2, r.now});
    CHECK(r.s.master == c2);
    CHECK(r.status(1) == PrStatus::Merged);
    CHECK(r.status(2) == PrStatus::Merged);
    CHECK(r.built.size() == built);
    CHECK(all<FastForwardMaster>(o).at(0).to == c3);
  }
}

TEST_CASE("train: a PR that failed only behind a bad one is held, then rebuilt, never ejected") {
  Repo r(Strategy::Train);
  r.cfg.window_start = 2;
  r.queue(1);
  const Sha c1 = r.merge(1);
  r.queue(2);
  const Sha c2 = r.merge(r.with({2}));
  // Candidate 2 (master + 1 + 2) fails before candidate 1 has a verdict: is 1 or 2 to blame?
  r.check(c2, false);
  CHECK(r.status(2) == PrStatus::Queued);
  CHECK(r.s.prs.at(2).held_by == CandidateId{1});
  CHECK(queue_order(r.s).empty());  // held: not built again until 1 decides

  SUBCASE("candidate 1 fails: 2 was innocent and is rebuilt on master without 1") {
    auto f = r.check(c1, false);
    CHECK(r.status(1) == PrStatus::Failed);
    CHECK(r.status(2) != PrStatus::Failed);
    CHECK_FALSE(r.s.prs.at(2).held_by);
    auto rebuilt = all<BuildCandidate>(f);
    REQUIRE(rebuilt.size() == 1);
    CHECK(numbers(rebuilt[0]) == std::vector<int>{2});
    CHECK(rebuilt[0].base == kMaster);
  }
  SUBCASE("candidate 1 lands: 2 was to blame and is ejected") {
    r.check(c1, true);
    auto l = r.pushed(1);
    CHECK(r.status(1) == PrStatus::Merged);
    CHECK(r.status(2) == PrStatus::Failed);
    CHECK(all<BuildCandidate>(l).empty());
  }
}

TEST_CASE("train: a merge conflict with a PR ahead that then fails ejects nobody innocent") {
  for (bool ahead_lands : {false, true}) {
    CAPTURE(ahead_lands);
    Repo r(Strategy::Train);
    r.cfg.window_start = 4;
    r.queue(1, {"x.c"});
    const Sha c1 = r.merge(1);
    r.queue(2, {"x.c"});  // edits the same lines as #1
    const CandidateId k2 = r.with({2});
    REQUIRE(k2 != 0);
    REQUIRE(r.candidate(k2).base == c1);
    r.on(MergeDone{k2, MergeOutcome::Conflict, "", 2, {"x.c"}, "", r.now});
    // Not ejected yet: the conflict is with #1, which may never land.
    CHECK(r.status(2) == PrStatus::Queued);
    CHECK_FALSE(r.has(k2));
    const std::size_t before = r.built.size();
    r.check(c1, ahead_lands);
    if (ahead_lands) {
      r.pushed(1);
      REQUIRE(r.status(1) == PrStatus::Merged);
      // #1 landed: #2 conflicts with master now; merged again there, it fails for good.
      for (int round = 0; round < 3 && r.status(2) != PrStatus::Failed; ++round) {
        const CandidateId again = r.with({2});
        REQUIRE(again != 0);
        CHECK(r.candidate(again).base == r.s.master);
        r.on(MergeDone{again, MergeOutcome::Conflict, "", 2, {"x.c"}, "", r.now});
      }
      CHECK(r.status(2) == PrStatus::Failed);
      CHECK(r.s.prs.at(2).reason_code == Reason::MergeConflict);
      continue;
    }
    // #1 failed: #2 was innocent, and is merged again on master.
    CHECK(r.status(1) == PrStatus::Failed);
    REQUIRE(r.built.size() > before);
    CHECK(numbers(r.built.back()) == std::vector<int>{2});
    CHECK(r.built.back().base == kMaster);
  }
}

TEST_CASE("flaky checks: a failure alone is built again before anyone is ejected") {
  Repo r(Strategy::Train);
  r.cfg.window_start = 2;
  r.cfg.flaky_retries = 1;
  r.queue(1);
  const Sha c1 = r.merge(1);
  r.queue(2);
  const Sha c2 = r.merge(r.with({2}));
  auto f = r.check(c1, false);
  CHECK(r.status(1) != PrStatus::Failed);
  auto again = all<StartBuild>(f);
  REQUIRE(again.size() == 1);
  CHECK(again[0].sha == c1);
  CHECK(again[0].attempt == 2);
  CHECK(all<CancelBuild>(f).empty());  // candidate 2 keeps building

  SUBCASE("a later green candidate holding the same PRs clears the failure") {
    auto g = r.check(c2, true);
    auto ff = all<FastForwardMaster>(g);
    REQUIRE(ff.size() == 1);
    CHECK(ff[0].to == c2);
    r.pushed(ff[0].candidate);
    CHECK(r.status(1) == PrStatus::Merged);
    CHECK(r.status(2) == PrStatus::Merged);
    CHECK(r.s.master == c2);
  }
  SUBCASE("the retry fails too: the PR is ejected, the one behind rebuilt without it") {
    auto f2 = r.check(c1, false);
    CHECK(r.status(1) == PrStatus::Failed);
    CHECK(r.status(2) != PrStatus::Failed);
    auto rebuilt = all<BuildCandidate>(f2);
    REQUIRE(rebuilt.size() == 1);
    CHECK(numbers(rebuilt[0]) == std::vector<int>{2});
    CHECK(rebuilt[0].base == kMaster);
  }
}

// Adaptive: PR 1 fails alone at the front of its chain, PR 2 behind it; `probed`: whether
// PR 1's probe had passed; `retry_passes`: whether its flaky retry passes.
void adaptive_fails_alone(bool probed, bool retry_passes) {
  CAPTURE(probed);
  CAPTURE(retry_passes);
  Repo r(Strategy::Adaptive);
  r.cfg.flaky_retries = 1;
  r.queue(1);
  r.s.prs.at(1).probed = probed;
  const Sha c1 = r.merge(r.with({1}));
  r.queue(2);
  const CandidateId k2 = r.with({2});
  REQUIRE(k2 != 0);
  const Sha c2 = r.merge(k2);
  REQUIRE(r.candidate(k2).base == c1);

  auto f = r.check(c1, false);
  CHECK(r.status(1) != PrStatus::Failed);
  CHECK(r.s.prs.at(1).failures == 1);
  CHECK(all<StartBuild>(f).empty());  // no retry in place
  auto cancelled = all<CancelBuild>(f);
  REQUIRE(cancelled.size() == 2);
  CHECK(cancelled[1].sha == c2);
  std::map<std::vector<int>, Sha> rebuilt;  // by PRs: the base
  for (const auto& b : all<BuildCandidate>(f)) rebuilt[numbers(b)] = b.base;
  CHECK(rebuilt.size() == 2);
  CHECK(rebuilt[{2}] == kMaster);
  CHECK(rebuilt[{1}] == kMaster);
  const CandidateId retry = r.with({1});
  REQUIRE(retry != 0);
  CHECK(r.candidate(retry).probe);  // nothing is built on it
  const CandidateId k2again = r.with({2});
  REQUIRE(k2again != 0);
  CHECK_FALSE(r.candidate(k2again).probe);
  r.merge(k2again);
  r.check(r.merge(retry), retry_passes);
  if (!retry_passes) {  // ejected; the chain built on without it
    CHECK(r.status(1) == PrStatus::Failed);
    CHECK(r.has(k2again));
    return;
  }
  CHECK(r.status(1) != PrStatus::Failed);  // a flake: it joins the chain again, behind PR 2
  CHECK(r.s.prs.at(1).probed);
  const CandidateId joined = r.with({1});
  REQUIRE(joined != 0);
  CHECK_FALSE(r.candidate(joined).probe);
  CHECK(r.candidate(joined).base == r.candidate(k2again).sha);
}

// Retried in place, at the tail of the chain, a failure that was the PR's own (or a conflict
// with what is ahead of it) failed what was built behind it once more.
TEST_CASE("adaptive flaky checks: a failure alone leaves the chain, to be built again aside") {
  for (bool probed : {false, true})
    for (bool retry_passes : {false, true}) adaptive_fails_alone(probed, retry_passes);
}

// PRs 2-5 fail together, in one candidate at the front of the chain; `load`: under load.
void adaptive_batch_fails(bool load) {
  CAPTURE(load);
  Repo r(Strategy::Adaptive);
  r.cfg.max_batch = 8;
  r.cfg.flaky_retries = 1;
  if (load) {
    r.observe_load();
  } else {  // one runner free for four PRs, 5% failing: they enter in one batch
    r.cfg.window_start = 2;
    r.cfg.window_max = 2;
    r.s.observed.builds = 50;
    r.s.observed.fail_permille = 50;
  }
  r.s.observed.risk["precheck:green"] = {64, 0};  // PRs with a green CI go straight in
  for (int n = 1; n <= 5; ++n)
    r.queue(n, {std::string(1, char('a' + n)) + "/x.cpp"}, 0, CheckState::Success);
  const CandidateId k1 = r.with({1});
  REQUIRE(k1 != 0);
  const Sha c1 = r.merge(k1);  // PRs 2-5 waited for its sha
  const CandidateId batch = r.with({2, 3, 4, 5});
  REQUIRE(batch != 0);
  const Sha failed = r.merge(batch);
  r.check(c1, true);
  r.pushed(k1);
  REQUIRE(r.status(1) == PrStatus::Merged);

  r.check(failed, false);
  CHECK_FALSE(r.has(batch));
  CHECK(r.with({2, 3}) == 0);  // no halves
  for (int n = 2; n <= 5; ++n) {
    CAPTURE(n);
    CHECK(r.status(n) != PrStatus::Failed);
    CHECK(r.s.prs.at(n).failures == 0);  // blamed for nothing yet
  }
  if (!load) {  // alone in the chain, one behind the other
    REQUIRE(r.s.train.size() == 1);
    const Candidate first = r.s.train.front();
    CHECK(first.prs.size() == 1);
    CHECK_FALSE(first.probe);
    CHECK(first.base == c1);
    const Sha sha = r.merge(first.id);
    REQUIRE(r.s.train.size() == 2);
    CHECK(r.s.train[1].prs.size() == 1);
    CHECK(r.s.train[1].base == sha);
    return;
  }
  std::map<int, Sha> probe;  // under load: each is probed, on master
  for (int n = 2; n <= 5; ++n) {
    const CandidateId id = r.with({n});
    REQUIRE(id != 0);
    CHECK(r.candidate(id).probe);
    CHECK(r.candidate(id).base == c1);
    probe[n] = r.merge(id);
  }
  r.queue(6, {"g/x.cpp"}, 0, CheckState::Success);  // straight into the chain
  const CandidateId k6 = r.with({6});
  REQUIRE(k6 != 0);
  REQUIRE_FALSE(r.candidate(k6).probe);
  r.check(probe[3], false);  // PR 3 was the culprit: its retry fails too
  r.check(probe[3], false);
  CHECK(r.status(3) == PrStatus::Failed);
  for (int n : {2, 4, 5}) r.check(probe[n], true);  // they wait for k6's sha
  r.merge(k6);
  REQUIRE(r.s.train.size() == 2);  // together again, in a batch behind k6
  const Candidate& joined = r.s.train.back();
  CHECK(std::set<int>(joined.prs.begin(), joined.prs.end()) == std::set<int>{2, 4, 5});
  CHECK(joined.base == r.candidate(k6).sha);
  CHECK_FALSE(joined.probe);
}

TEST_CASE("adaptive: each PR of a batch that failed at the front is built again alone") {
  for (bool load : {false, true}) adaptive_batch_fails(load);
}

TEST_CASE("adaptive lanes: a failure in one lane cancels nothing in another") {
  Repo r(Strategy::Adaptive);
  r.cfg.lanes = Lanes::Paths;
  r.cfg.window_start = 4;
  r.queue(1, {"app/main.cpp"});
  const Sha c1 = r.merge(1);
  r.queue(2, {"docs/guide.md"});  // disjoint from lane 0: a lane of its own, on master
  const CandidateId k2 = r.with({2});
  REQUIRE(k2 != 0);
  CHECK(r.candidate(k2).lane != r.candidate(1).lane);
  CHECK(r.candidate(k2).base == kMaster);
  const Sha c2 = r.merge(k2);
  // Overlaps the lane of PR 1: probed on its tip first (a conflict with PR 1 would fail what
  // is built behind it), then behind it.
  r.queue(3, {"app/main.cpp", "app/util.cpp"});
  const CandidateId probe = r.with({3});
  REQUIRE(probe != 0);
  CHECK(r.candidate(probe).probe);
  CHECK(r.candidate(probe).base == c1);
  r.check(r.merge(probe), true);
  CHECK_FALSE(r.has(probe));
  CHECK(r.s.prs.at(3).probed);
  const CandidateId k3 = r.with({3});
  REQUIRE(k3 != 0);
  CHECK_FALSE(r.candidate(k3).probe);
  CHECK(r.candidate(k3).lane == r.candidate(1).lane);
  CHECK(r.candidate(k3).base == c1);
  r.merge(k3);

  auto f = r.check(c1, false);  // PR 1 is bad
  CHECK(r.status(1) == PrStatus::Failed);
  for (const auto& c : all<CancelBuild>(f)) CHECK(c.sha != c2);  // the docs lane builds on
  CHECK(r.has(k2));
  CHECK(r.candidate(k2).base == kMaster);
  // PR 3 is rebuilt on master, alone.
  bool rebuilt = false;
  for (const auto& b : all<BuildCandidate>(f)) rebuilt |= numbers(b) == std::vector<int>{3};
  CHECK(rebuilt);
  auto g = r.check(c2, true);
  auto ff = all<FastForwardMaster>(g);
  REQUIRE(ff.size() == 1);
  CHECK(ff[0].to == c2);
}

TEST_CASE("adaptive lanes by path groups: a PR within one group queues in that group's lane") {
  Repo r(Strategy::Adaptive);
  r.cfg.lanes = Lanes::Groups;
  r.cfg.path_groups = {{"docs", {"docs/**"}}, {"app", {"app/**"}}};
  r.cfg.window_start = 8;
  r.queue(1, {"app/main.cpp"});
  REQUIRE(r.with({1}) != 0);
  CHECK(r.candidate(r.with({1})).lane == 2);  // the second group's lane
  const Sha c1 = r.merge(r.with({1}));
  r.queue(2, {"docs/guide.md", "docs/faq.md"});
  REQUIRE(r.with({2}) != 0);
  CHECK(r.candidate(r.with({2})).lane == 1);
  CHECK(r.candidate(r.with({2})).base == kMaster);  // beside PR 1, not on it
  r.merge(r.with({2}));
  // Another app change queues behind PR 1, in its lane; one that spans both groups, or touches
  // a path no group holds, goes in the shared lane 0.
  r.queue(3, {"app/util.cpp"});
  REQUIRE(r.with({3}) != 0);
  CHECK(r.candidate(r.with({3})).lane == 2);
  CHECK(r.candidate(r.with({3})).base == c1);
  r.queue(4, {"app/x.cpp", "docs/y.md"});
  REQUIRE(r.with({4}) != 0);
  CHECK(r.candidate(r.with({4})).lane == 0);
  CHECK(r.candidate(r.with({4})).base == kMaster);
  const Sha c4 = r.merge(r.with({4}));
  r.queue(5, {"Makefile"});
  REQUIRE(r.with({5}) != 0);
  CHECK(r.candidate(r.with({5})).lane == 0);
  CHECK(r.candidate(r.with({5})).base == c4);
}

TEST_CASE("adaptive: PRs waiting together enter the train by how likely they are to pass") {
  Repo r(Strategy::Adaptive);
  r.cfg.window_start = 1;
  r.cfg.window_max = 1;
  r.cfg.window_floor = 1;
  r.queue(1, {"a/1"});
  const CandidateId k1 = r.with({1});
  REQUIRE(k1 != 0);
  // Queued in this order while the window is full; their own CI before the queue then says
  // #2 is red and #3 green.
  r.queue(2, {"b/2"});
  r.queue(3, {"c/3"});
  r.on(CheckReported{sha_of('h', 2), Check{"ci", CheckState::Failure, "", "", 0}, r.now});
  r.on(CheckReported{sha_of('h', 3), Check{"ci", CheckState::Success, "", "", 0}, r.now});
  CHECK(r.s.prs.at(2).precheck == CheckState::Failure);
  const std::size_t before = r.built.size();
  r.check(r.merge(k1), true);
  r.pushed(k1);
  REQUIRE(r.status(1) == PrStatus::Merged);
  REQUIRE(r.built.size() > before);
  // The next candidate starts with #3: a likely failure sits behind as little as possible.
  CHECK(numbers(r.built[before]).front() == 3);
}

TEST_CASE(
    "adaptive: a PR touching what a PR in the train touches is probed on the train's tip; the "
    "candidate under it decides who is to blame") {
  Repo r(Strategy::Adaptive);
  r.cfg.window_start = 4;
  r.queue(1, {"app/main.cpp"});
  const Sha c1 = r.merge(1);
  r.queue(2, {"app/main.cpp"});  // may conflict with PR 1: probed beside the train, on c1
  const CandidateId probe = r.with({2});
  REQUIRE(probe != 0);
  CHECK(r.candidate(probe).probe);
  CHECK(r.candidate(probe).base == c1);
  CHECK(r.built.back().tip == false);  // dmz stays at the tip of the train
  r.queue(3, {"docs/guide.md"});       // touches nothing ahead: straight into the train
  const CandidateId k3 = r.with({3});
  REQUIRE(k3 != 0);
  CHECK_FALSE(r.candidate(k3).probe);
  CHECK(r.candidate(k3).base == c1);
  const Sha p2 = r.merge(probe);
  r.merge(k3);

  SUBCASE("the probe fails and PR 1 lands: PR 2 conflicts with it and is ejected") {
    auto f = r.check(p2, false);
    CHECK(r.status(2) == PrStatus::Queued);  // held: PR 1 may be the one to blame
    CHECK(r.s.prs.at(2).held_by == CandidateId{1});
    for (const auto& c : all<CancelBuild>(f)) CHECK(c.sha != c1);  // the train builds on
    auto g = r.check(c1, true);
    REQUIRE(all<FastForwardMaster>(g).size() == 1);
    r.pushed(1);
    CHECK(r.status(1) == PrStatus::Merged);
    CHECK(r.status(2) == PrStatus::Failed);
    CHECK(r.s.prs.at(2).reason_code == Reason::BuildFailed);
  }
  SUBCASE("the probe fails and PR 1 fails too: PR 2 was innocent and waits again") {
    r.check(p2, false);
    r.check(c1, false);
    CHECK(r.status(1) == PrStatus::Failed);
    CHECK(r.status(2) != PrStatus::Failed);
    CHECK_FALSE(r.s.prs.at(2).held_by.has_value());
  }
  SUBCASE("PR 1 fails before the probe reports: the probe is dropped, PR 2 waits again") {
    auto f = r.check(c1, false);
    CHECK(r.status(1) == PrStatus::Failed);
    CHECK_FALSE(r.has(probe));
    bool cancelled = false;
    for (const auto& c : all<CancelBuild>(f)) cancelled |= c.sha == p2;
    CHECK(cancelled);
    CHECK(r.status(2) != PrStatus::Failed);
    CHECK_FALSE(r.s.prs.at(2).held_by.has_value());
    for (const auto& k : r.s.train) CHECK(k.base == kMaster);  // nothing built on c1 is left
  }
}

TEST_CASE("adaptive: the window is cut to the run a chain lands between two failures") {
  Repo r(Strategy::Adaptive);
  r.cfg.window_start = 20;
  r.cfg.window_max = 20;
  r.cfg.window_floor = 1;
  CHECK(window_of(r.s, r.cfg) == 9);  // before evidence, a 10% prior: (1 - 0.1) / 0.1
  r.s.observed.builds = 50;
  r.s.observed.fail_permille = 250;
  CHECK(window_of(r.s, r.cfg) == 3);
  r.s.observed.fail_permille = 20;
  CHECK(window_of(r.s, r.cfg) == 20);  // 49 > the runners: the configured window
  // The train strategy keeps Zuul's window.
  r.cfg.strategy = Strategy::Train;
  r.s.observed.fail_permille = 250;
  CHECK(window_of(r.s, r.cfg) == 20);
  // And the engine fills no more than that (3 PRs at 25%: not under load, no probes first).
  Repo q(Strategy::Adaptive);
  q.cfg.window_start = 20;
  q.cfg.window_max = 20;
  q.s.observed.builds = 50;
  q.s.observed.fail_permille = 250;
  for (int n = 1; n <= 3; ++n) q.queue(n, {"p" + std::to_string(n) + "/x.cpp"});
  for (bool merged = true; merged;) {  // each candidate reaches dmz; the next is built on it
    merged = false;
    for (const auto& k : std::vector<Candidate>(q.s.train))
      if (k.sha.empty()) {
        q.merge(k.id);
        merged = true;
      }
  }
  CHECK(q.s.train.size() == 3);
}

// Under load adaptive probes every PR before it joins the chain, and batches those whose probes
// passed.
TEST_CASE(
    "adaptive under load: every PR is probed first; those that passed join in a batch; "
    "landings that may conflict with a probe have it redone") {
  Repo r(Strategy::Adaptive);
  r.observe_load();
  r.cfg.max_batch = 8;
  // PRs 1-4 change b/, c/, d/, e/; PR 5 changes what PRs 2, 3 and 4 change.
  for (int n = 1; n <= 4; ++n) r.queue(n, {std::string(1, char('a' + n)) + "/x.cpp"});
  r.queue(5, {"c/x.cpp", "d/x.cpp", "e/x.cpp"});
  std::map<int, CandidateId> probe;
  std::map<int, Sha> built;
  for (int n = 1; n <= 5; ++n) {
    probe[n] = r.with({n});
    REQUIRE(probe[n] != 0);
    CHECK(r.candidate(probe[n]).probe);
    CHECK(r.candidate(probe[n]).base == kMaster);
    built[n] = r.merge(probe[n]);
  }
  // The first green probe on master lands itself: nothing else is in the chain.
  REQUIRE(all<FastForwardMaster>(r.check(built[1], true)).size() == 1);
  r.pushed(probe[1]);
  CHECK(r.status(1) == PrStatus::Merged);
  CHECK(r.has(probe[5]));  // PR 1 changes nothing PR 5 changes: its probe still counts
  // PR 2's probe was on the old master: PR 2 joins the chain on the new one.
  r.check(built[2], true);
  const CandidateId k2 = r.with({2});
  REQUIRE(k2 != 0);
  CHECK_FALSE(r.candidate(k2).probe);
  CHECK(r.candidate(k2).base == built[1]);
  // PRs 3 and 4 pass while k2 is merging: they join it together, in one candidate.
  r.check(built[3], true);
  r.check(built[4], true);
  CHECK(r.s.prs.at(3).probed);
  CHECK(r.s.prs.at(4).probed);
  const Sha c2 = r.merge(k2);
  CandidateId k34 = 0;
  for (const auto& k : r.s.train)
    if (std::set<int>(k.prs.begin(), k.prs.end()) == std::set<int>{3, 4}) k34 = k.id;
  REQUIRE(k34 != 0);
  CHECK_FALSE(r.candidate(k34).probe);
  CHECK(r.candidate(k34).base == c2);
  const Sha c34 = r.merge(k34);
  SUBCASE("under load") {
    // k34 lands (with k2 ahead of it). PR 5's probe, still building, was built without three
    // PRs that may conflict with it: it says too little about the new master, so it is cut and
    // PR 5 is probed again there.
    REQUIRE(all<FastForwardMaster>(r.check(c34, true)).size() == 1);
    auto after = r.pushed(k34);
    for (int n : {2, 3, 4}) CHECK(r.status(n) == PrStatus::Merged);
    CHECK(r.s.master == c34);
    bool cancelled = false;
    for (const auto& c : all<CancelBuild>(after)) cancelled |= c.sha == built[5];
    CHECK(cancelled);
    CHECK_FALSE(r.has(probe[5]));
    const CandidateId again = r.with({5});
    REQUIRE(again != 0);
    CHECK(r.candidate(again).probe);
    CHECK(r.candidate(again).base == c34);
    CHECK(r.s.prs.at(5).untested == 0);
    // Its new probe passes on master as it is: it lands itself.
    REQUIRE(all<FastForwardMaster>(r.check(r.merge(again), true)).size() == 1);
    r.pushed(again);
    CHECK(r.status(5) == PrStatus::Merged);
  }
  SUBCASE(
      "without load the landing is still counted, so that the probe is redone when load returns") {
    r.s.observed.fail_permille = 10;  // 1% of 15 arrivals per build: not under load
    REQUIRE(all<FastForwardMaster>(r.check(c34, true)).size() == 1);
    r.pushed(k34);
    CHECK(r.s.master == c34);
    CHECK(r.has(probe[5]));  // not cut: without load a probe is not redone
    CHECK(r.s.prs.at(5).untested == 3);
    r.s.observed.fail_permille = 250;  // load again
    r.check(built[5], true);
    const CandidateId again = r.with({5});
    REQUIRE(again != 0);
    CHECK(r.candidate(again).probe);  // built without PRs 2-4: probed again, not joined
    CHECK(r.candidate(again).base == c34);
  }
}

// A long queue alone does not put adaptive under load: probing every PR takes more builds, and
// the queue that grows from that would keep it probing.
TEST_CASE("adaptive under load: counts the train and the PRs queued to enter it soon") {
  RepoState s;
  Settings cfg;
  cfg.strategy = Strategy::Adaptive;
  s.observed.builds = 50;
  s.observed.fail_permille = 250;  // a PR in four fails
  s.observed.build_ms = 4'500;     // 1.5 approvals per build
  s.observed.arrival_ms = 3'000;
  auto add = [&](int n, PrStatus status) { s.prs[n] = PullRequest{.number = n, .status = status}; };
  for (int n = 1; n <= 10; ++n) add(n, PrStatus::Queued);
  CHECK_FALSE(under_load(cfg, s));  // 3 queued count, the rest wait: 0.25 * 3 < 1
  add(11, PrStatus::Building);
  CHECK(under_load(cfg, s));  // 0.25 * (1 + 3) >= 1
  cfg.strategy = Strategy::Train;
  CHECK_FALSE(under_load(cfg, s));  // adaptive only
}

TEST_CASE("adaptive: the weight of a PR's own CI is learned once 16 PRs tell") {
  RepoState s;
  s.observed.builds = 50;
  s.observed.fail_permille = 100;
  PullRequest green;
  green.precheck = CheckState::Success;
  const double prior = failure_risk(s, green);
  CHECK(prior == doctest::Approx(0.0625));      // odds 1:9, times 0.6
  s.observed.risk["precheck:green"] = {10, 5};  // too few to tell: the prior holds
  CHECK(failure_risk(s, green) == doctest::Approx(prior));
  s.observed.risk["precheck:green"] = {64, 0};  // green PRs have not failed here
  CHECK(failure_risk(s, green) < 0.01);
  s.observed.risk["precheck:green"] = {32, 32};  // here a green one fails half the time
  CHECK(failure_risk(s, green) > 0.4);
}

// Under load a PR whose risk, times the PRs a failure of it in the chain would send back, stays
// under one build skips its probe: the probe would cost it a build and a build's time.
TEST_CASE("adaptive under load: a PR its own CI clears goes straight into the chain") {
  Repo r(Strategy::Adaptive);
  r.observe_load();  // 25% fail, 15 arrive during a build
  SUBCASE("green PRs have not failed here: straight in; one whose CI has not spoken: probed") {
    r.s.observed.risk["precheck:green"] = {64, 0};
    r.queue(1, {"a/x.cpp"}, 0, CheckState::Success);
    const CandidateId k1 = r.with({1});
    REQUIRE(k1 != 0);
    CHECK_FALSE(r.candidate(k1).probe);
    r.merge(k1);
    r.queue(2, {"b/x.cpp"});
    REQUIRE(r.with({2}) != 0);
    CHECK(r.candidate(r.with({2})).probe);
  }
  SUBCASE("until green PRs are seen to pass, green alone is not enough") {
    r.queue(1, {"a/x.cpp"}, 0, CheckState::Success);
    REQUIRE(r.with({1}) != 0);
    CHECK(r.candidate(r.with({1})).probe);
  }
}

TEST_CASE(
    "adaptive under load: a PR changing what untested PRs ahead change goes straight in only "
    "while such PRs are not seen to fail builds") {
  Repo r(Strategy::Adaptive);
  r.observe_load();
  r.s.observed.risk["precheck:green"] = {64, 0};
  r.queue(1, {"a/x.cpp"}, 0, CheckState::Success);
  const CandidateId k1 = r.with({1});
  REQUIRE(k1 != 0);
  REQUIRE_FALSE(r.candidate(k1).probe);
  r.merge(k1);
  auto& tally = r.s.observed.risk;
  SUBCASE("no evidence yet: two such PRs are taken, three are not; the probe is tallied") {
    for (int n : {2, 3}) {
      r.queue(n, {"a/x.cpp"}, 0, CheckState::Success);
      const CandidateId k = r.with({n});
      REQUIRE(k != 0);
      CHECK_FALSE(r.candidate(k).probe);
      r.merge(k);
    }
    r.queue(4, {"a/x.cpp", "b/x.cpp"}, 0, CheckState::Success);
    const CandidateId probe = r.with({4});
    REQUIRE(probe != 0);
    CHECK(r.candidate(probe).probe);
    CHECK(tally.count("overlap:some") == 0);
    r.check(r.merge(probe), true);  // it passed with PRs 1-3, each changing a/x.cpp
    CHECK(tally["overlap:some"].passed == 1);
    CHECK(tally["overlap:pairs"].passed == 3);
    // What its four PRs' own risks (each cleared by its own CI) made of a failure.
    CHECK(tally["overlap:some"].expected_permille > 0);
    CHECK(tally["overlap:some"].expected_permille < 100);
  }
  SUBCASE("such PRs have failed builds here: probed") {
    tally["overlap:0"] = {60, 4};
    tally["overlap:some"] = {30, 20};
    tally["overlap:pairs"] = {60, 0};
    r.queue(2, {"a/x.cpp"}, 0, CheckState::Success);
    REQUIRE(r.with({2}) != 0);
    CHECK(r.candidate(r.with({2})).probe);
  }
  SUBCASE("their failures were their own PRs' (by those PRs' risks): straight in") {
    tally["overlap:0"] = {60, 4, 4000};
    tally["overlap:some"] = {30, 20, 20000};
    tally["overlap:pairs"] = {60, 0};
    r.queue(2, {"a/x.cpp"}, 0, CheckState::Success);
    REQUIRE(r.with({2}) != 0);
    CHECK_FALSE(r.candidate(r.with({2})).probe);
  }
  SUBCASE("they have not: straight in, even behind two") {
    tally["overlap:0"] = {60, 4};
    tally["overlap:some"] = {47, 3};
    tally["overlap:pairs"] = {60, 0};
    r.queue(2, {"a/x.cpp"}, 0, CheckState::Success);
    const CandidateId k2 = r.with({2});
    REQUIRE(k2 != 0);
    CHECK_FALSE(r.candidate(k2).probe);
    r.merge(k2);
    r.queue(3, {"a/x.cpp"}, 0, CheckState::Success);
    REQUIRE(r.with({3}) != 0);
    CHECK_FALSE(r.candidate(r.with({3})).probe);
    CHECK(r.candidate(r.with({3})).base == r.candidate(k2).sha);
  }
}

// A probed PR behind more than two PRs it was never built with that change a path it changes
// is probed again, unless builds with such PRs are seen not to fail here: the learned risk
// decides, as for a PR that was never probed.
TEST_CASE(
    "adaptive under load: a probed PR joins the chain behind three untested overlapping PRs only "
    "while such PRs are not seen to fail builds") {
  Repo r(Strategy::Adaptive);
  r.observe_load();
  auto& tally = r.s.observed.risk;
  tally["precheck:green"] = {64, 0};
  tally["overlap:0"] = {60, 4};
  tally["overlap:some"] = {47, 3};
  tally["overlap:pairs"] = {60, 0};
  r.queue(1, {"a/x.cpp"}, 0, CheckState::Failure);  // its own CI is red: probed
  const CandidateId probe = r.with({1});
  REQUIRE(probe != 0);
  REQUIRE(r.candidate(probe).probe);
  const Sha built = r.merge(probe);
  for (int n : {2, 3, 4}) {  // green, harmless overlaps: straight into the chain meanwhile
    r.queue(n, {"a/x.cpp"}, 0, CheckState::Success);
    REQUIRE(r.with({n}) != 0);
    REQUIRE_FALSE(r.candidate(r.with({n})).probe);
    r.merge(r.with({n}));
  }
  SUBCASE("harmless here: it joins") {
    r.check(built, true);
    REQUIRE(r.with({1}) != 0);
    CHECK_FALSE(r.candidate(r.with({1})).probe);
  }
  SUBCASE("such builds fail here: probed again, with PRs 2-4") {
    tally["overlap:some"] = {30, 20};
    r.check(built, true);
    REQUIRE(r.with({1}) != 0);
    CHECK(r.candidate(r.with({1})).probe);
    CHECK(r.candidate(r.with({1})).with == std::vector<int>{2, 3, 4});
  }
}

// A probe on the tip of the chain was cut by every failure in it. Built on master with the PRs
// of the chain it may conflict with, it tests the same pairs and outlives the chain's cuts.
TEST_CASE(
    "adaptive under load: a probe is built on master with the PRs of the chain it may conflict "
    "with; a cut chain leaves it building") {
  Repo r(Strategy::Adaptive);
  r.observe_load();
  r.cfg.flaky_retries = 1;
  r.s.observed.risk["precheck:green"] = {64, 0};
  // A chain of three candidates: PR 1 changes a/, PR 2 b/, PR 3 c/ and b/.
  std::map<int, CandidateId> k;
  std::map<int, Sha> sha;
  const std::vector<std::vector<std::string>> paths = {
      {"a/x.cpp"}, {"b/x.cpp"}, {"c/x.cpp", "b/y.cpp"}};
  for (int n = 1; n <= 3; ++n) {
    r.queue(n, paths[n - 1], 0, CheckState::Success);
    k[n] = r.with({n});
    REQUIRE(k[n] != 0);
    REQUIRE_FALSE(r.candidate(k[n]).probe);
    sha[n] = r.merge(k[n]);
  }
  r.queue(4, {"b/x.cpp", "b/y.cpp"});  // may conflict with PRs 2 and 3
  r.queue(5, {"e/x.cpp"});             // with none of them
  const CandidateId p4 = r.with({4});
  const CandidateId p5 = r.with({5});
  REQUIRE(p4 != 0);
  REQUIRE(p5 != 0);
  CHECK(r.candidate(p4).probe);
  CHECK(r.candidate(p4).base == kMaster);
  CHECK(r.candidate(p4).with == std::vector<int>{2, 3});
  CHECK(r.s.prs.at(4).probed_with == std::vector<int>{2, 3});
  // The build merges them first, then the PR: what it tests.
  CHECK(numbers(r.built.at(r.built.size() - 2)) == std::vector<int>{2, 3, 4});
  CHECK(r.candidate(p5).base == kMaster);
  CHECK(r.candidate(p5).with.empty());
  const Sha s4 = r.merge(p4);
  r.merge(p5);
  SUBCASE("the chain is cut under it: it goes on building; failing then, it blames nobody") {
    r.check(sha[2], false);  // PR 2 fails behind PR 1: held; PR 3 is sent back
    CHECK(r.has(p4));
    CHECK(r.has(p5));
    CHECK(r.status(2) == PrStatus::Queued);
    r.check(s4, false);  // PR 2 (out of the chain now) may have failed it: probed again
    CHECK_FALSE(r.has(p4));
    CHECK(r.s.prs.at(4).failures == 0);
    CHECK_FALSE(r.s.prs.at(4).held_by);
    const CandidateId again = r.with({4});
    REQUIRE(again != 0);
    CHECK(again != p4);
    CHECK(r.candidate(again).probe);
  }
  SUBCASE("failing while PRs 2 and 3 are in the chain: held on PR 3's candidate, then blamed") {
    r.check(s4, false);
    CHECK_FALSE(r.has(p4));
    REQUIRE(r.s.prs.at(4).held_by);
    CHECK(*r.s.prs.at(4).held_by == k[3]);
    REQUIRE(all<FastForwardMaster>(r.check(sha[3], true)).size() == 1);  // lands PRs 1-3
    r.pushed(k[3]);
    CHECK(r.status(3) == PrStatus::Merged);
    CHECK(r.s.prs.at(4).failures == 1);  // to blame: built again (the flaky retry), not ejected
  }
  SUBCASE(
      "passing, it joins the chain: it was built with every PR there that it may conflict "
      "with") {
    r.check(s4, true);
    const CandidateId j4 = r.with({4});
    REQUIRE(j4 != 0);
    CHECK_FALSE(r.candidate(j4).probe);
    CHECK(r.candidate(j4).base == sha[3]);
  }
}

// A probe merges its `with` PRs without the PRs between them in the chain: an order the chain
// never merged. A conflict of one of them says nothing about the probe's PR.
TEST_CASE("adaptive under load: a probe's merge conflict on a PR it is built with blames nobody") {
  Repo r(Strategy::Adaptive);
  r.observe_load();
  r.s.observed.risk["precheck:green"] = {64, 0};
  for (int n = 1; n <= 3; ++n) {
    r.queue(n, {n == 2 ? "a/y.cpp" : "b/x.cpp"}, 0, CheckState::Success);
    REQUIRE(r.with({n}) != 0);
    REQUIRE_FALSE(r.candidate(r.with({n})).probe);
    r.merge(r.with({n}));
  }
  const CandidateId k3 = r.with({3});
  r.queue(4, {"b/x.cpp"});
  const CandidateId p4 = r.with({4});
  REQUIRE(p4 != 0);
  REQUIRE(r.candidate(p4).with == std::vector<int>{1, 3});
  r.on(MergeDone{p4, MergeOutcome::Conflict, "", 3, {"b/x.cpp"}, "", r.now});
  CHECK_FALSE(r.has(p4));
  for (int n : {3, 4}) CHECK(r.status(n) != PrStatus::Failed);
  CHECK(r.s.prs.at(4).failures == 0);
  CHECK(r.has(k3));                // PR 3's chain candidate goes on
  CHECK(r.s.retry_after > r.now);  // as any transient error: the queue waits for the backoff
}

TEST_CASE(
    "adaptive without load: a PR changing what a PR ahead changes is probed until such PRs are "
    "seen not to fail builds") {
  Repo r(Strategy::Adaptive);
  r.observe_load();
  r.s.observed.fail_permille = 20;  // 2% of 15 arrivals per build: not under load
  r.queue(1, {"a/x.cpp"});
  const CandidateId k1 = r.with({1});
  REQUIRE(k1 != 0);
  REQUIRE_FALSE(r.candidate(k1).probe);
  r.merge(k1);
  SUBCASE("no evidence: probed, on PR 1's candidate; its verdict is tallied as such") {
    r.queue(2, {"a/x.cpp"});
    const CandidateId probe = r.with({2});
    REQUIRE(probe != 0);
    CHECK(r.candidate(probe).probe);
    CHECK(r.candidate(probe).base == r.candidate(k1).sha);
    r.check(r.merge(probe), false);
    CHECK(r.s.observed.risk["overlap:some"].failed == 1);
    CHECK(r.s.observed.risk["overlap:pairs"].passed == 1);
    CHECK(r.s.observed.risk.count("overlap:0") == 0);
  }
  SUBCASE("builds with such PRs fail no more than others here: straight in") {
    r.s.observed.risk["overlap:0"] = {60, 4};
    r.s.observed.risk["overlap:some"] = {47, 3};
    r.s.observed.risk["overlap:pairs"] = {60, 0};
    r.queue(2, {"a/x.cpp"});
    REQUIRE(r.with({2}) != 0);
    CHECK_FALSE(r.candidate(r.with({2})).probe);
  }
}

TEST_CASE(
    "adaptive under load with lanes by paths: a PR disjoint from every lane joins a lane "
    "of its own") {
  Repo r(Strategy::Adaptive);
  r.cfg.lanes = Lanes::Paths;
  r.observe_load();
  for (int n = 1; n <= 3; ++n) r.queue(n, {std::string(1, char('a' + n)) + "/x.cpp"});
  std::map<int, Sha> probe;
  for (int n = 1; n <= 3; ++n) probe[n] = r.merge(r.with({n}));
  REQUIRE(all<FastForwardMaster>(r.check(probe[1], true)).size() == 1);  // alone: lands itself
  r.pushed(r.with({1}));
  r.check(probe[2], true);  // on the old master: PR 2 starts the chain of lane 0
  const CandidateId k2 = r.with({2});
  REQUIRE(k2 != 0);
  CHECK_FALSE(r.candidate(k2).probe);
  // PR 3 changes nothing lane 0 changes: it joins a lane of its own, in a candidate that holds
  // it (deciding the lane twice once gave two different new lanes and an empty candidate).
  r.check(probe[3], true);
  const CandidateId k3 = r.with({3});
  REQUIRE(k3 != 0);
  CHECK_FALSE(r.candidate(k3).probe);
  CHECK(r.candidate(k3).lane != r.candidate(k2).lane);
  CHECK(r.candidate(k3).base == r.s.master);
  for (const auto& k : r.s.train) CHECK_FALSE(k.prs.empty());
}

TEST_CASE("priority: a higher priority enters the train first; a building candidate stays") {
  for (Strategy st : {Strategy::Serial, Strategy::Batch, Strategy::Train, Strategy::Adaptive}) {
    CAPTURE(to_string(st));
    Repo r(st);
    r.cfg.window_start = 1;
    r.cfg.window_max = 1;
    r.queue(1);
    const Sha c1 = r.merge(1);
    r.queue(2);
    r.queue(3, {}, 5);  // urgent: ahead of 2
    CHECK(queue_order(r.s) == std::vector<int>{3, 2});
    CHECK(r.has(1));  // not interrupted
    r.check(c1, true);
    auto l = r.pushed(1);
    auto next = all<BuildCandidate>(l);
    REQUIRE(next.size() == 1);
    CHECK(numbers(next[0]).front() == 3);
  }
}

TEST_CASE("priority_interrupts: a higher priority cuts the lower candidates that build") {
  Repo r(Strategy::Train);
  r.cfg.window_start = 1;
  r.cfg.window_max = 1;
  r.cfg.priority_interrupts = true;
  r.queue(1);
  const Sha c1 = r.merge(1);
  auto o = r.queue(2, {}, 5);
  bool cancelled = false;
  for (const auto& c : all<CancelBuild>(o)) cancelled |= c.sha == c1;
  CHECK(cancelled);
  CHECK(r.status(1) == PrStatus::Queued);  // back at its place, not blamed
  auto next = all<BuildCandidate>(o);
  REQUIRE(next.size() == 1);
  CHECK(numbers(next[0]) == std::vector<int>{2});
}

TEST_CASE(
    "flaky checks: the first attempt's reports that arrive after its retry started do not use "
    "up the retry") {
  Repo r(Strategy::Train);
  r.cfg.required_checks = {"ci/build", "ci/test"};
  r.cfg.flaky_retries = 1;
  r.queue(1);
  const Sha c1 = r.merge(1);
  auto report = [&](const std::string& context, CheckState state) {
    return r.on(CheckReported{c1, Check{context, state, "", "", 0}, r.now});
  };
  // The CI announces both runs, then ci/build fails: the build is retried in place.
  report("ci/build", CheckState::Pending);
  report("ci/test", CheckState::Pending);
  auto retry = report("ci/build", CheckState::Failure);
  REQUIRE(all<StartBuild>(retry).size() == 1);
  CHECK(all<StartBuild>(retry)[0].attempt == 2);
  // The first attempt's ci/test ends, and the forge reports its failed ci/build again, both
  // before the second attempt announced its runs: nobody is ejected.
  CHECK(report("ci/test", CheckState::Failure).actions.empty());
  CHECK(report("ci/build", CheckState::Failure).actions.empty());
  CHECK(r.status(1) == PrStatus::InDmz);
  // The second attempt announces its runs: what they report counts.
  report("ci/build", CheckState::Pending);
  report("ci/test", CheckState::Pending);
  SUBCASE("it passes: the PR lands") {
    report("ci/build", CheckState::Success);
    auto g = report("ci/test", CheckState::Success);
    REQUIRE(all<FastForwardMaster>(g).size() == 1);
    r.pushed(1);
    CHECK(r.status(1) == PrStatus::Merged);
  }
  SUBCASE("it fails too: the PR is ejected") {
    report("ci/test", CheckState::Failure);
    CHECK(r.status(1) == PrStatus::Failed);
    CHECK(r.s.prs.at(1).reason_code == Reason::BuildFailed);
  }
}

TEST_CASE("adaptive: a probe that lands itself takes dmz along to the new master") {
  Repo r(Strategy::Adaptive);
  r.observe_load();  // every PR is probed first
  r.queue(1, {"a/x.cpp"});
  r.queue(2, {"b/x.cpp"});
  const CandidateId probe = r.with({1});
  REQUIRE(probe != 0);
  REQUIRE(r.candidate(probe).probe);
  REQUIRE(r.with({2}) != 0);
  const Sha p1 = r.merge(probe);
  r.merge(r.with({2}));
  REQUIRE(all<FastForwardMaster>(r.check(p1, true)).size() == 1);
  auto o = r.pushed(probe);
  CHECK(r.status(1) == PrStatus::Merged);
  CHECK(r.s.master == p1);
  // dmz was left at the old master (a probe never moves it): it follows master now.
  REQUIRE(all<ResetDmz>(o).size() == 1);
  CHECK(all<ResetDmz>(o)[0].sha == p1);
  // ... and again after a restart, with only PR 2's probe in the train.
  REQUIRE(r.s.train.size() == 1);
  REQUIRE(r.s.train[0].probe);
  bool reset = false;
  for (const auto& a : resume(r.s, r.cfg))
    if (const auto* d = std::get_if<ResetDmz>(&a)) reset |= d->sha == p1;
  CHECK(reset);
}

TEST_CASE("adaptive: a probe held on a candidate whose landing changes the policy is to blame") {
  Repo r(Strategy::Adaptive);
  r.cfg.window_start = 4;
  r.queue(1, {".dmz/policy.toml", "app/main.cpp"});
  const Sha c1 = r.merge(1);
  r.queue(2, {"app/main.cpp"});  // may conflict with PR 1: probed on c1
  const CandidateId probe = r.with({2});
  REQUIRE(probe != 0);
  REQUIRE(r.candidate(probe).probe);
  REQUIRE(r.candidate(probe).base == c1);
  r.check(r.merge(probe), false);
  REQUIRE(r.s.prs.at(2).held_by == CandidateId{1});
  REQUIRE(all<FastForwardMaster>(r.check(c1, true)).size() == 1);
  auto o = r.pushed(1);
  CHECK(r.status(1) == PrStatus::Merged);
  // PR 1 landed: PR 2 was to blame, and is not judged again under the new policy as innocent.
  CHECK(r.status(2) == PrStatus::Failed);
  CHECK(r.s.prs.at(2).reason_code == Reason::BuildFailed);
  CHECK(all<CheckPolicy>(o).empty());
}

TEST_CASE("held PRs are decided after a restart with the serial strategy, not left waiting") {
  Repo r(Strategy::Train);
  r.cfg.window_start = 2;
  r.queue(1);
  const Sha c1 = r.merge(1);
  r.queue(2);
  const Sha c2 = r.merge(r.with({2}));
  r.check(c2, false);
  REQUIRE(r.s.prs.at(2).held_by == CandidateId{1});
  r.cfg.strategy = Strategy::Serial;  // the operator goes back to the default

  SUBCASE("candidate 1 fails: 2 was innocent and is built on master") {
    auto f = r.check(c1, false);
    CHECK(r.status(1) == PrStatus::Failed);
    CHECK_FALSE(r.s.prs.at(2).held_by);
    auto rebuilt = all<BuildCandidate>(f);
    REQUIRE(rebuilt.size() == 1);
    CHECK(numbers(rebuilt[0]) == std::vector<int>{2});
    CHECK(rebuilt[0].base == kMaster);
  }
  SUBCASE("candidate 1 lands: 2 was to blame and is ejected") {
    REQUIRE(all<FastForwardMaster>(r.check(c1, true)).size() == 1);
    r.pushed(1);
    CHECK(r.status(1) == PrStatus::Merged);
    CHECK(r.status(2) == PrStatus::Failed);
    CHECK(r.s.prs.at(2).reason_code == Reason::BuildFailed);
  }
}

TEST_CASE("train: a held pair loses its culprit; the other is not ejected") {
  for (const char* leaves : {"pushed", "cancelled", "closed"})
    for (const bool green : {true, false}) {
      CAPTURE(leaves);
      CAPTURE(green);
      Repo r(Strategy::Train);
      r.cfg.window_start = 2;
      r.cfg.max_batch = 2;
      r.queue(1, {"a/x"});
      const CandidateId k1 = r.with({1});
      r.queue(2, {"b/x"});
      r.queue(3, {"c/x"});
      const Sha c1 = r.merge(k1);
      const CandidateId k2 = r.with({2, 3});
      REQUIRE(k2 != 0);
      r.check(r.merge(k2), false);
      REQUIRE(r.s.prs.at(2).held_by == k1);
      REQUIRE(r.s.prs.at(3).held_by == k1);
      if (leaves == std::string("pushed"))
        r.on(PrPushed{3, sha_of('p', 3), r.now});
      else if (leaves == std::string("cancelled"))
        r.on(CancelRequested{3, "mm", r.now});
      else
        r.on(PrClosed{3, r.now});
      // #2 never failed alone: back to its place, to be built alone like a bisection half.
      CHECK_FALSE(r.s.prs.at(2).held_by);
      CHECK(r.s.prs.at(2).reason_code == Reason::None);
      r.check(c1, true);
      r.pushed(k1);
      CHECK(r.status(1) == PrStatus::Merged);
      CHECK(r.status(2) != PrStatus::Failed);
      CHECK(r.s.prs.at(2).failures == 0);  // nothing counted against it
      const CandidateId alone = r.with({2});
      REQUIRE(alone != 0);
      // Alone, it is judged by its own build: green lands it, red ejects it.
      const Sha c3 = r.merge(alone);
      r.check(c3, green);
      if (green) {
        r.pushed(alone);
        CHECK(r.status(2) == PrStatus::Merged);
      } else {
        CHECK(r.status(2) == PrStatus::Failed);
      }
    }
}

TEST_CASE("train: a held group of three that loses one is bisected, nobody ejected unbuilt") {
  Repo r(Strategy::Train);
  r.cfg.window_start = 2;
  r.cfg.max_batch = 3;
  r.queue(1, {"a/x"});
  const CandidateId k1 = r.with({1});
  for (int n = 2; n <= 4; ++n) r.queue(n, {"d" + std::to_string(n) + "/x"});
  const Sha c1 = r.merge(k1);
  const CandidateId k2 = r.with({2, 3, 4});
  REQUIRE(k2 != 0);
  r.check(r.merge(k2), false);
  r.on(CancelRequested{3, "mm", r.now});
  // Two are left: they stay held (if #1 lands one of them was to blame, with #3 maybe).
  CHECK(r.s.prs.at(2).held_by == k1);
  CHECK(r.s.prs.at(4).held_by == k1);
  r.check(c1, true);
  r.pushed(k1);
  for (int n : {2, 4}) CHECK(r.status(n) != PrStatus::Failed);
  CHECK(r.with({2}) != 0);  // bisected: each half alone
  CHECK(r.s.prs.at(4).group != 0);
  CHECK(r.s.prs.at(4).group != r.s.prs.at(2).group);
}

TEST_CASE("serial: an unanswered push that did land is not undone") {
  Repo r(Strategy::Serial);
  r.queue(1, {"a/x"});
  const Sha c1 = r.merge(1);
  REQUIRE(all<FastForwardMaster>(r.check(c1, true)).size() == 1);
  SUBCASE("closed") { r.on(PrClosed{1, r.now}); }
  SUBCASE("pushed") { r.on(PrPushed{1, sha_of('p', 1), r.now}); }
  r.on(MasterPushed{1, false, "", "timeout", r.now});
  // The push may have moved master: the candidate stays Landing until master is read.
  REQUIRE(r.s.train.size() == 1);
  CHECK(r.s.train[0].status == CandidateStatus::Landing);
  r.on(MasterObserved{c1, r.now});
  CHECK(r.status(1) == PrStatus::Merged);
  CHECK(r.s.master == c1);
  CHECK(r.s.train.empty());
}

TEST_CASE("serial: a PR closed or pushed while landing leaves when the push did not land") {
  for (const bool closed : {true, false})
    for (const bool answered : {true, false}) {
      CAPTURE(closed);
      CAPTURE(answered);
      Repo r(Strategy::Serial);
      r.queue(1, {"a/x"});
      const Sha c1 = r.merge(1);
      REQUIRE(all<FastForwardMaster>(r.check(c1, true)).size() == 1);
      if (closed)
        r.on(PrClosed{1, r.now});
      else
        r.on(PrPushed{1, sha_of('p', 1), r.now});
      Outcome o;
      if (answered) {  // refused with master in place (a hook, a protection)
        o = r.on(MasterPushed{1, false, kMaster, "refused by a hook", r.now});
      } else {
        const Millis at = r.now;
        r.on(MasterPushed{1, false, "", "timeout", r.now});
        REQUIRE(r.s.train.size() == 1);
        CHECK(r.s.train[0].status == CandidateStatus::Landing);
        // A fetch that sees master where it was tells nothing new (the shell sends none).
        r.on(MasterObserved{kMaster, r.now});
        REQUIRE(r.s.train.size() == 1);
        CHECK(r.s.train[0].status == CandidateStatus::Landing);
        // After the backoff master is read, not pushed: what changed forbids landing #1 now.
        // A push of c1 with c1 as its lease moves nothing; it succeeds only if master is c1.
        const auto read = all<FastForwardMaster>(r.on(Tick{at + r.cfg.retry_backoff}));
        REQUIRE(read.size() == 1);
        CHECK(read[0].from == c1);
        CHECK(read[0].to == c1);
        CHECK(std::get<FastForwardMaster>(resume(r.s, r.cfg).back()).from == c1);  // a restart
        o = r.on(MasterPushed{1, false, kMaster, "stale lease", r.now});
      }
      CHECK(r.s.master == kMaster);
      CHECK(r.s.train.empty());
      CHECK(all<BuildCandidate>(o).empty());
      if (closed) {
        CHECK(r.status(1) == PrStatus::Cancelled);
        CHECK(r.s.prs.at(1).reason_code == Reason::Closed);
      } else {
        CHECK(r.status(1) == PrStatus::Open);
        CHECK(r.s.prs.at(1).reason_code == Reason::NewPush);
        CHECK_FALSE(r.s.prs.at(1).approval);
      }
      for (const auto& n : all<Notify>(o)) CHECK(n.reason != Reason::TransientError);
    }
}

// ---- the property test -------------------------------------------------------------------------

namespace {

// A random world: PRs (some bad), a git that merges, CI that reports in any order, pushes
// (some of whose answers are lost: the remote may or may not have moved), cancels, crashes
// (resume from a copy of the state). After every event the invariants hold: master moves only
// by fast-forward to a candidate that was green and whose merges passed, with exactly the PRs
// of its chain; no PR lands twice; a PR on master (as the engine knows it) is Merged; and, in a
// run without flakes, no PR that is not bad is ever ejected for a failed build (a PR held with
// others that then leave is built again alone, not blamed).
struct World {
  Settings cfg;
  RepoState s;
  std::mt19937_64 rng;
  std::map<Sha, std::vector<int>> content;  // what a candidate sha holds on top of the origin
  std::map<Sha, std::set<int>> prs_of;      // the PRs in the candidate itself
  std::set<int> bad, landed;
  std::vector<int> master_content;
  std::set<Sha> green;  // shas that built green and passed their merges
  std::vector<std::pair<CandidateId, Sha>> pending_merge;
  std::vector<Sha> pending_check;
  std::vector<FastForwardMaster> pending_push;
  Sha world_master = kMaster;  // where the remote's master is (ahead of s.master after a lost
                               // answer, until the engine reads it)
  Sha known_master;            // the last master whose PRs were all found Merged
  bool flakes = true;          // 3% of builds fail whatever they hold
  int burst = 1;               // PRs that arrive together, on average
  std::vector<CheckPolicy> pending_policy;  // asked again (a policy change, a push to master)
  int shas = 0, next_pr = 1, events = 0;
  int forecasts = 0;  // of the state so far (every 1,000th event)
  Millis now = 1'000'000;

  World(Settings c, std::uint64_t seed) : cfg(std::move(c)), rng(seed) {
    s.repo = "acme/app";
    s.master = kMaster;
    content[kMaster] = {};
  }
  int pick(int n) { return static_cast<int>(rng() % static_cast<std::uint64_t>(n)); }

  void absorb(const Outcome& o) {
    REQUIRE_FALSE(o.rejected);
    for (const auto& a : o.actions) {
      if (const auto* b = std::get_if<BuildCandidate>(&a)) {
        pending_merge.emplace_back(b->candidate, b->base);
        std::vector<int> items;
        for (const auto& i : b->items) items.push_back(i.number);
        merges[b->candidate] = items;
      } else if (const auto* sb = std::get_if<StartBuild>(&a)) {
        pending_check.push_back(sb->sha);
      } else if (const auto* ff = std::get_if<FastForwardMaster>(&a)) {
        pending_push.push_back(*ff);
        // Everything it lands was judged under the policy in force now (a landing already
        // pushing master when the trust root changed finishes, pushed again after a crash).
        // A push from its target to itself is a read: it moves nothing.
        if (!landing_at_root_change.count(ff->candidate) && ff->from != ff->to)
          for (int n : content.at(ff->to))
            if (!std::count(master_content.begin(), master_content.end(), n))
              CHECK_MESSAGE((judged_at.count(n) > 0 && judged_at.at(n) == s.policy_epoch), "#", n,
                            " lands judged under an older policy");
      } else if (const auto* cp = std::get_if<CheckPolicy>(&a)) {
        pending_policy.push_back(*cp);
      }
    }
  }
  std::map<CandidateId, std::vector<int>> merges;
  int stale_verdicts = 0;  // verdicts answered after the policy changed: none may be taken
  std::map<int, std::uint64_t> judged_at;  // the policy epoch of each PR's verdict taken last

  // Applies a verdict and notes its epoch when it is taken (the PR was waiting for it).
  void verdict(const PolicyChecked& v) {
    const auto pr = s.prs.find(v.number);
    const bool taken = pr != s.prs.end() && pr->second.status == PrStatus::Approved &&
                       pr->second.approval && pr->second.approval->sha == v.sha &&
                       v.epoch == s.policy_epoch;
    apply(v);
    if (taken) judged_at[v.number] = v.epoch;
  }

  void apply(const Event& e) {
    Outcome o = handle(s, e, cfg);
    now += 1000 + pick(60'000);
    ++events;
    if (o.rejected) {  // only stale or refused requests may be refused
      CHECK((o.rejected->code == dmz::Code::kConflict || o.rejected->code == dmz::Code::kNotFound));
      return;
    }
    absorb(o);
    check_invariants();
    // The status page's forecast plays any state forward without harm, never into the past.
    if (events % 1000 == 0 && s.observed.build_ms > 0) {
      ++forecasts;
      for (const auto& [n, at] : forecast_landings(s, cfg, now, ForecastOptions{1}))
        if (at < now) CHECK_MESSAGE(false, "#", n, " forecast before now after event ", events);
    }
  }

  // Plain loops with one CHECK per event: a doctest assertion per PR per event would
  // dominate the run time.
  void check_invariants() {
    std::string broken;
    std::set<int> seen;
    for (int n : master_content)
      if (!seen.insert(n).second) broken = "#" + std::to_string(n) + " landed twice";
    for (int n : landed)
      if (s.prs.at(n).status != PrStatus::Merged) broken = "#" + std::to_string(n) + " un-landed";
    std::map<CandidateId, const Candidate*> by_id;
    for (const auto& k : s.train) {
      by_id[k.id] = &k;
      if (k.prs.empty()) broken = "candidate " + std::to_string(k.id) + " holds no PR";
      for (int n : k.prs)
        if (!s.prs.count(n) || s.prs.at(n).candidate != k.id)
          broken = "candidate " + std::to_string(k.id) + " lost #" + std::to_string(n);
    }
    // Nothing is lost: a PR in the train's statuses is in a candidate of the train.
    for (const auto& [n, pr] : s.prs) {
      const bool in_train = pr.status == PrStatus::Merging || pr.status == PrStatus::InDmz ||
                            pr.status == PrStatus::Building;
      if (in_train && (!pr.candidate || !by_id.count(*pr.candidate)))
        broken = "#" + std::to_string(n) + " is " + std::string(to_string(pr.status)) +
                 " outside the train";
      if ((pr.status == PrStatus::Queued || pr.status == PrStatus::Approved) && pr.candidate)
        broken = "#" + std::to_string(n) + " waits but holds a candidate";
      if (pr.held_by && pr.status != PrStatus::Queued)
        broken = "#" + std::to_string(n) + " is held but not queued";
      // Without flakes a build fails only for a bad PR it holds: an innocent PR is never
      // ejected for it (bisection and holds tell them apart).
      if (!flakes && pr.status == PrStatus::Failed && pr.reason_code == Reason::BuildFailed &&
          !bad.count(n))
        broken = "#" + std::to_string(n) + " (not bad) ejected: " + pr.reason;
    }
    // What the engine knows master to be holds only Merged PRs, however it learnt it (then
    // `landed` keeps them so).
    if (s.master == world_master && s.master != known_master)
      for (int n : master_content) {
        if (s.prs.at(n).status != PrStatus::Merged)
          broken = "#" + std::to_string(n) + " is on master but " +
                   std::string(to_string(s.prs.at(n).status));
        landed.insert(n);
        known_master = s.master;
      }
    if (!broken.empty()) CHECK_MESSAGE(false, broken, " after event ", events);
  }

  // What a PR changes: one of three directories, or now and then the policy's keys (its landing
  // has every PR waiting judged again).
  std::vector<std::string> some_paths() {
    if (pick(10) == 0) return {".dmz/keys/k.asc"};
    return {"d" + std::to_string(pick(3)) + "/f"};
  }

  void step() {
    switch (pick(14)) {
      case 0:
      case 1:  // a new PR, approved; now and then several at once (a backlog forms batches)
        do arrive();
        while (pick(burst) != 0);
        break;
      case 2:
      case 3:
      case 4: {  // a merge answers (any order)
        if (pending_merge.empty()) break;
        const auto i = static_cast<std::size_t>(pick(static_cast<int>(pending_merge.size())));
        auto [id, base] = pending_merge[i];
        pending_merge.erase(pending_merge.begin() + static_cast<std::ptrdiff_t>(i));
        auto b = content.find(base);
        if (b == content.end() || !merges.count(id)) break;
        const Sha sha = sha_of('c', ++shas);
        auto c = b->second;
        for (int n : merges[id]) c.push_back(n);
        content[sha] = c;
        apply(MergeDone{id, MergeOutcome::Merged, sha, 0, {}, "", now});
        apply(CandidateChecked{id, sha, true, {}, now});
        break;
      }
      case 5:
      case 6:
      case 7: {  // a build reports (any order); bad PRs fail it, 3% flakes
        if (pending_check.empty()) break;
        const auto i = static_cast<std::size_t>(pick(static_cast<int>(pending_check.size())));
        const Sha sha = pending_check[i];
        pending_check.erase(pending_check.begin() + static_cast<std::ptrdiff_t>(i));
        bool pass = !flakes || pick(33) != 0;
        for (int n : content.at(sha)) pass &= !bad.count(n);
        if (pass) green.insert(sha);
        apply(CheckReported{
            sha, Check{"ci", pass ? CheckState::Success : CheckState::Failure, "", "", 0}, now});
        // Maybe a group was held just now: PRs leave it, often until one is left.
        if (!pass)
          while (pick(3) != 0 && leave_held(true)) {
          }
        break;
      }
      case 8: {  // master is pushed, with a lease: it moves only from `from`
        if (pending_push.empty()) break;
        const FastForwardMaster ff = pending_push.front();
        pending_push.erase(pending_push.begin());
        if (world_master == ff.to) {  // already there (a push made again, or a read)
          apply(MasterPushed{ff.candidate, true, ff.to, "already at it", now});
          break;
        }
        if (world_master != ff.from) {  // the lease fails; the remote is read
          apply(MasterPushed{ff.candidate, false, world_master, "stale lease", now});
          break;
        }
        // While the push is in flight a PR of the landing is closed or pushed to.
        if (pick(4) == 0)
          for (const auto& k : s.train)
            if (k.id == ff.candidate && k.status == CandidateStatus::Landing) {
              const int n = k.prs[static_cast<std::size_t>(pick(static_cast<int>(k.prs.size())))];
              if (pick(2) == 0)
                apply(PrClosed{n, now});
              else
                apply(PrPushed{n, sha_of('p', n * 100 + pick(99)), now});
              break;
            }
        // Now and then the answer is lost and the remote cannot be read: it moved, or not.
        const bool lost = pick(6) == 0;
        if (!lost || pick(2) == 0) {
          const auto& next = content.at(ff.to);
          // The invariant: a fast-forward to a green sha whose content extends master's.
          REQUIRE(green.count(ff.to));
          REQUIRE(next.size() >= master_content.size());
          REQUIRE(std::equal(master_content.begin(), master_content.end(), next.begin()));
          for (int n : next)
            if (!std::count(master_content.begin(), master_content.end(), n)) {
              REQUIRE_FALSE(landed.count(n));
              REQUIRE_FALSE(bad.count(n));  // no breakage escapes
            }
          master_content = next;
          world_master = ff.to;
        }
        if (!lost) {
          apply(MasterPushed{ff.candidate, true, "", "", now});
          break;
        }
        apply(MasterPushed{ff.candidate, false, "", "timeout", now});
        // A fetch reads master: at the candidate, or where it was (which the engine knows).
        if (pick(2) == 0) apply(MasterObserved{world_master, now});
        break;
      }
      case 9: {  // a push to or a cancel of a random PR, or of one held
        if (next_pr == 1) break;
        if (pick(2) == 0 && leave_held()) break;
        withdraw(1 + pick(next_pr - 1));
        break;
      }
      case 10: {  // time passes; a fetch sees master where the remote has it
        apply(Tick{now});
        if (world_master != s.master && pick(2) == 0) apply(MasterObserved{world_master, now});
        break;
      }
      case 11: {  // a crash: the shell forgets what was in flight and resumes
        pending_merge.clear();
        pending_check.clear();
        pending_push.clear();
        pending_policy.clear();
        absorb(Outcome{std::nullopt, resume(s, cfg)});
        break;
      }
      case 12: {  // a policy verdict answers (any order; the policy may have changed since)
        if (pending_policy.empty()) break;
        const auto i = static_cast<std::size_t>(pick(static_cast<int>(pending_policy.size())));
        const CheckPolicy asked = pending_policy[i];
        pending_policy.erase(pending_policy.begin() + static_cast<std::ptrdiff_t>(i));
        const bool stale = asked.epoch != s.policy_epoch;
        const auto pr = s.prs.find(asked.number);
        const bool waiting = pr != s.prs.end() && pr->second.status == PrStatus::Approved;
        verdict(PolicyChecked{.number = asked.number,
                              .sha = asked.sha,
                              .pass = pick(10) != 0,
                              .at = now,
                              .paths = some_paths(),
                              .approvers = some_approvers(),
                              .target = asked.target,
                              .epoch = asked.epoch});
        // A verdict asked for under an older policy is never taken.
        if (stale && waiting) CHECK(s.prs.at(asked.number).status == PrStatus::Approved);
        if (stale && waiting) ++stale_verdicts;
        break;
      }
      case 13: {  // the trust root is read: now and then the operator has edited it
        if (pick(2) == 0) {
          ++trust_roots;
          for (const auto& k : s.train)
            if (k.status == CandidateStatus::Landing) landing_at_root_change.insert(k.id);
        }
        apply(TrustRootRead{"root-" + std::to_string(trust_roots), now});
        break;
      }
    }
  }
  // A new PR, approved; its verdict comes at once, or later (case 12).
  void arrive() {
    const int n = next_pr++;
    if (pick(5) == 0) bad.insert(n);
    apply(PrOpened{n, "f", "dev" + std::to_string(n % 3), "t", sha_of('h', n), now});
    if (pick(4) == 0) apply(PriorityRequested{n, pick(3), "mm", now});
    apply(MergeRequested{n, sha_of('h', n), "mm", now});
    // Its verdict comes at once, or later (case 12), any number of events after.
    if (pick(2) == 0) return;
    std::erase_if(pending_policy, [&](const CheckPolicy& a) { return a.number == n; });
    verdict(PolicyChecked{.number = n,
                          .sha = sha_of('h', n),
                          .pass = pick(10) != 0,
                          .at = now,
                          .paths = some_paths(),
                          .approvers = some_approvers(),
                          .target = s.master,
                          .epoch = s.policy_epoch});
  }
  // Whose approvals a verdict counted: a forge review by bob, or none.
  std::vector<std::string> some_approvers() {
    return pick(2) == 0 ? std::vector<std::string>{"bob"} : std::vector<std::string>{};
  }
  // A cancel of, a push to, or a review withdrawn from PR n.
  void withdraw(int n) {
    const int what = pick(3);
    if (what == 0)
      apply(CancelRequested{n, "mm", now});
    else if (what == 2)
      apply(ReviewWithdrawn{n, "bob", now});
    else if (s.prs.count(n) && s.prs.at(n).status != PrStatus::Merged)
      apply(PrPushed{n, sha_of('p', n * 100 + pick(99)), now});
  }
  // A PR held behind an undecided candidate leaves its held group (cancelled or pushed to),
  // most often the bad one of a group of several (`several`: only then): what is left of the
  // group never failed alone. False if there was none.
  bool leave_held(bool several = false) {
    std::map<std::uint64_t, std::vector<int>> held;  // by group
    for (const auto& [m, pr] : s.prs)
      if (pr.held_by) held[pr.group].push_back(m);
    std::vector<int> any, culprits;
    for (const auto& [g, members] : held)
      for (int m : members) {
        if (!several || members.size() > 1) any.push_back(m);
        if (members.size() > 1 && bad.count(m)) culprits.push_back(m);
      }
    if (!culprits.empty() && pick(4) != 0) any = culprits;
    if (any.empty()) return false;
    const int n = any[static_cast<std::size_t>(pick(static_cast<int>(any.size())))];
    withdraw(n);
    return true;
  }
  int trust_roots = 0;
  std::set<CandidateId> landing_at_root_change;
};

}  // namespace

TEST_CASE("property: random events keep every strategy's invariants") {
  struct Named {
    const char* name;
    Settings cfg;
    int burst = 1;  // World::burst
  };
  std::vector<Named> settings;
  for (Strategy st : {Strategy::Serial, Strategy::Batch, Strategy::Train, Strategy::Adaptive}) {
    Settings cfg;
    cfg.required_checks = {"ci"};
    cfg.check_timeout = 3'600'000;
    cfg.strategy = st;
    cfg.max_batch = st == Strategy::Serial ? 1 : 4;
    cfg.window_start = 3;
    settings.push_back({"plain", cfg});
    if (st != Strategy::Serial) {
      cfg.flaky_retries = 1;
      settings.push_back({"flaky", cfg});
    }
    if (st == Strategy::Adaptive) {
      settings.push_back({"learned", cfg});  // observations that let PRs skip their probes
      cfg.lanes = Lanes::Paths;
      settings.push_back({"lanes", cfg});
    }
    if (st == Strategy::Train) {
      cfg.priority_interrupts = true;
      // A narrow window and PRs in bursts: the queue backs up into batches, which fail
      // behind undecided candidates and are held (some then lose a PR).
      cfg.window_max = 2;
      cfg.flaky_retries = 0;  // failures trusted: a PR blamed alone is ejected at once
      settings.push_back({"interrupts", cfg, 2});
    }
  }
  int forecasts = 0, stale_verdicts = 0;
  long direct = 0;  // steps that saw a chain candidate holding an unprobed PR ("learned")
  for (const auto& named : settings) {
    for (std::uint64_t seed = 1; seed <= 8; ++seed) {
      CAPTURE(to_string(named.cfg.strategy));
      CAPTURE(named.name);
      CAPTURE(seed);
      World w(named.cfg, seed);
      if (std::string(named.name) == "learned") {
        // Under load from the start, with PRs' own CI and overlaps seen to predict no failure:
        // PRs join the chain unprobed, and some fail there.
        w.s.observed.builds = 50;
        w.s.observed.fail_permille = 300;
        w.s.observed.build_ms = 60'000;
        w.s.observed.arrival_ms = 10'000;
        w.s.observed.risk["precheck:none"] = {64, 0};
        w.s.observed.risk["overlap:0"] = {60, 4};
        w.s.observed.risk["overlap:some"] = {47, 3};
        w.s.observed.risk["overlap:pairs"] = {60, 0};
      }
      w.flakes = seed % 2 == 1;
      w.burst = named.burst;
      for (int i = 0; i < 1200; ++i) {
        w.step();
        if (std::string(named.name) == "learned")
          for (const auto& k : w.s.train)
            direct += !k.probe && std::any_of(k.prs.begin(), k.prs.end(),
                                              [&](int n) { return !w.s.prs.at(n).probed; });
      }
      CHECK(w.landed.size() > 0);
      forecasts += w.forecasts;
      stale_verdicts += w.stale_verdicts;
    }
  }
  CHECK(forecasts > 20);
  CHECK(stale_verdicts > 20);  // the policy did change under verdicts in flight
  CHECK(direct > 100);
}

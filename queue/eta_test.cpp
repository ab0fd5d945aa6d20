#include "queue/eta.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>

#include "queue/engine.hpp"
#include "queue/forecast.hpp"
#include "queue/queue_test_support.hpp"

namespace dmz::queue {

namespace {

Candidate candidate(CandidateId id, std::vector<int> prs, Millis pushed_at) {
  Candidate c;
  c.id = id;
  c.prs = std::move(prs);
  c.created_at = pushed_at > 0 ? pushed_at - 1 : 0;
  c.pushed_at = pushed_at;
  c.status = pushed_at > 0 ? CandidateStatus::Building : CandidateStatus::Merging;
  return c;
}

}  // namespace

TEST_CASE("eta: the median of observations") {
  CHECK(!median({}).has_value());
  CHECK(median({7}) == 7);
  CHECK(median({30, 10, 20}) == 20);
  CHECK(median({40, 10, 30, 20}) == 20);  // the lower middle
}

TEST_CASE("eta: a pace from the newest landed durations and the settings") {
  Settings s;
  CHECK(!pace_from_observed({}, s).has_value());
  // Only the newest `window` count: the old slow builds no longer matter.
  auto p = pace_from_observed({900, 900, 900, 100, 120, 110}, s, 3);
  REQUIRE(p);
  CHECK(p->per_candidate == 110);
  CHECK(p->parallel == 1);
  CHECK(p->per_batch == 1);
  s.max_train = 3;
  s.max_batch = 4;
  p = pace_from_observed({100}, s);
  REQUIRE(p);
  CHECK(p->parallel == 3);
  CHECK(p->per_batch == 4);
}

TEST_CASE("eta: serial queue, the candidate and the waiting PRs one after another") {
  RepoState st;
  st.train.push_back(candidate(1, {5}, 1000));
  const Pace pace{600, 1, 1};
  auto eta = estimate_landings(st, {7, 9}, pace, 1200);
  CHECK(eta.at(5) == 1600);  // pushed at 1000 + 600
  CHECK(eta.at(7) == 2200);  // starts when #5 lands
  CHECK(eta.at(9) == 2800);
  CHECK(eta.count(11) == 0);  // neither in the train nor waiting

  // An overdue candidate is expected now, never in the past; the rest follow from now.
  eta = estimate_landings(st, {7}, pace, 5000);
  CHECK(eta.at(5) == 5000);
  CHECK(eta.at(7) == 5600);

  // A candidate still merging (not pushed) counts from now.
  RepoState merging;
  merging.train.push_back(candidate(2, {3}, 0));
  CHECK(estimate_landings(merging, {}, pace, 400).at(3) == 1000);

  // Empty train: the first waiting PR starts now.
  CHECK(estimate_landings(RepoState{}, {4}, pace, 100).at(4) == 700);
}

TEST_CASE("eta: a train builds in parallel and lands in order; batches share a landing") {
  RepoState st;
  st.train.push_back(candidate(1, {1}, 1000));
  st.train.push_back(candidate(2, {2}, 1100));
  const Pace pace{1000, 3, 2};
  auto eta = estimate_landings(st, {3, 4, 5}, pace, 1200);
  CHECK(eta.at(1) == 2000);
  CHECK(eta.at(2) == 2100);
  // A free third place: #3 and #4 in one candidate starting now, landing after #2.
  CHECK(eta.at(3) == 2200);
  CHECK(eta.at(4) == 2200);
  // #5 takes the first place freed (when #1 lands at 2000).
  CHECK(eta.at(5) == 3000);

  // A slow candidate ahead holds back a faster one behind it.
  RepoState slow;
  slow.train.push_back(candidate(1, {1}, 1000));
  slow.train.push_back(candidate(2, {2}, 1050));
  auto e2 = estimate_landings(slow, {}, Pace{100, 2, 1}, 1500);
  CHECK(e2.at(1) == 1500);
  CHECK(e2.at(2) == 1500);
}

TEST_CASE("eta: the pace follows the active strategy and what the engine observed") {
  RepoState st;
  Settings cfg;
  // Nothing observed: no estimate. A build duration observed before any landing is used.
  CHECK_FALSE(pace_of(st, cfg, {}).has_value());
  st.observed.build_ms = 900;
  auto p = pace_of(st, cfg, {});
  REQUIRE(p);
  CHECK(p->per_candidate == 900);
  CHECK(p->parallel == 1);
  // Landed durations win over the build duration.
  p = pace_of(st, cfg, {600, 600, 600});
  REQUIRE(p);
  CHECK(p->per_candidate == 600);

  // Serial with batches of 4 and a 10% failure rate observed (after enough verdicts): a batch
  // passes 0.9^4 of the time, so a candidate takes 600 / 0.6561 on average.
  cfg.max_batch = 4;
  cfg.max_train = 2;
  st.observed.fail_permille = 100;
  st.observed.builds = 3;  // too few verdicts: the failure rate is not trusted yet
  p = pace_of(st, cfg, {600});
  REQUIRE(p);
  CHECK(p->per_candidate == 600);
  CHECK(p->parallel == 2);
  CHECK(p->per_batch == 4);
  st.observed.builds = 50;
  p = pace_of(st, cfg, {600});
  REQUIRE(p);
  CHECK(p->per_candidate == 914);

  // Train: the current window in flight, one PR per candidate...
  cfg = Settings{};
  cfg.strategy = Strategy::Train;
  cfg.window_start = 8;
  cfg.window_max = 20;
  st.observed.fail_permille = 0;
  p = pace_of(st, cfg, {600});
  REQUIRE(p);
  CHECK(p->parallel == 8);
  CHECK(p->per_batch == 1);
  st.window = 12;  // grown by landings
  CHECK(pace_of(st, cfg, {600})->parallel == 12);
  // ...but a chain lands only the run before its first failure: (1 - 0.2) / 0.2 = 4.
  st.observed.fail_permille = 200;
  CHECK(pace_of(st, cfg, {600})->parallel == 4);

  // Adaptive: one PR per candidate while the window has room; batches sized from the failure
  // rate (a batch should pass 70% of the time: 3 PRs at 10%) when many PRs wait.
  cfg.strategy = Strategy::Adaptive;
  cfg.max_batch = 8;
  st.window = 2;
  st.observed.fail_permille = 100;
  CHECK(pace_of(st, cfg, {600})->per_batch == 1);
  for (int n = 1; n <= 30; ++n) {
    PullRequest pr;
    pr.number = n;
    pr.status = PrStatus::Queued;
    pr.queued_at = n;
    st.prs[n] = pr;
  }
  CHECK(pace_of(st, cfg, {600})->per_batch == 3);

  // The estimate follows: with the train's pace, the tenth waiting PR lands far sooner than
  // behind a serial queue.
  std::vector<int> waiting;
  for (int n = 1; n <= 10; ++n) waiting.push_back(n);
  st.observed.fail_permille = 0;
  cfg.strategy = Strategy::Train;
  st.window = 10;
  const auto train = estimate_landings(st, waiting, *pace_of(st, cfg, {600}), 0);
  cfg = Settings{};
  const auto serial = estimate_landings(st, waiting, *pace_of(st, cfg, {600}), 0);
  CHECK(train.at(10) == 600);
  CHECK(serial.at(10) == 6000);
}

namespace {

constexpr Millis kNow = 10'000'000;
constexpr Millis kBuild = 600'000;

using testing::sha_of;

// PRs 1..count queued a second apart before kNow, as the engine leaves them, with a build
// duration observed.
struct Queue {
  RepoState s;
  Settings cfg;

  Queue(Strategy strategy, int count) {
    s.repo = "acme/app";
    s.master = sha_of('m', 0);
    s.observed.builds = 50;
    s.observed.build_ms = kBuild;
    cfg.required_checks = {"ci"};
    cfg.strategy = strategy;
    cfg.window_start = 20;
    cfg.window_max = 20;
    testing::queue_approved(s, cfg, count, kNow, 1'000);
  }
  void apply(const Event& e) { REQUIRE_FALSE(handle(s, e, cfg).rejected); }
  // Every candidate merged and pushed to dmz at `at`.
  void push_all(Millis at) {
    for (std::size_t i = 0; i < s.train.size(); ++i) {
      if (!s.train[i].sha.empty()) continue;
      const CandidateId id = s.train[i].id;
      const Sha sha = sha_of('c', static_cast<int>(id));
      apply(MergeDone{id, MergeOutcome::Merged, sha, 0, {}, "", at});
      apply(CandidateChecked{id, sha, true, {}, at});
    }
  }
  const Candidate& holding(int number) const {
    for (const auto& k : s.train)
      if (std::find(k.prs.begin(), k.prs.end(), number) != k.prs.end()) return k;
    FAIL("#" << number << " is in no candidate");
    return s.train.front();
  }
};

// What the page promises: every PR waiting (queued or held) or in the train has an expected
// landing, none before `now`.
void check_every_pr_estimated(const Queue& q, Millis now, const char* state) {
  INFO(std::string(state));
  const auto eta = expected_landings(q.s, q.cfg, {kBuild + 60'000}, now);
  for (const auto& [n, pr] : q.s.prs) {
    if (pr.status != PrStatus::Queued && !pr.candidate) continue;
    const std::string which = "#" + std::to_string(n) + (pr.held_by ? " (held)" : "");
    INFO(which);
    REQUIRE(eta.count(n));
    CHECK(eta.at(n) >= now);
  }
}

}  // namespace

TEST_CASE("eta: a PR held behind an undecided candidate is expected after its holder") {
  Queue q(Strategy::Train, 3);
  q.push_all(kNow);
  REQUIRE(q.s.train.size() == 3);
  // #2's candidate fails while #1's still builds: #2 (and #3 behind it) wait for #1's fate.
  q.apply(CheckReported{q.holding(2).sha, Check{"ci", CheckState::Failure}, kNow + 1'000});
  REQUIRE(q.s.prs.at(2).held_by == q.s.train.front().id);
  REQUIRE(queue_order(q.s).empty());
  const auto pace = pace_of(q.s, q.cfg, {kBuild});
  REQUIRE(pace);
  const auto eta = estimate_landings(q.s, queue_order(q.s), *pace, kNow + 2'000);
  REQUIRE(eta.count(1));
  REQUIRE(eta.count(2));
  REQUIRE(eta.count(3));
  CHECK(eta.at(2) >= eta.at(1) + pace->per_candidate);  // built again once #1 is decided
}

TEST_CASE("eta: every waiting, held or building PR has an expected landing, never before now") {
  // Adaptive is forecast up to kMaxForecastPrs PRs, estimated by the formula beyond.
  const int many = static_cast<int>(kMaxForecastPrs) + 1;
  for (auto [strategy, count] : {std::pair{Strategy::Serial, 4},
                                 {Strategy::Train, 4},
                                 {Strategy::Adaptive, 4},
                                 {Strategy::Adaptive, many}}) {
    INFO(to_string(strategy) << " with " << count << " PRs");
    {  // a plain train
      Queue q(strategy, count);
      q.push_all(kNow - 1'000);
      check_every_pr_estimated(q, kNow, "a plain train");
      check_every_pr_estimated(q, kNow + 2 * kBuild, "overdue builds");
    }
    {  // a backoff after a transient error
      Queue q(strategy, count);
      q.cfg.retry_backoff = 2 * kBuild;
      q.apply(MergeDone{q.s.train.front().id, MergeOutcome::Error, "", 0, {}, "git down", kNow});
      REQUIRE(q.s.retry_after > kNow);
      check_every_pr_estimated(q, kNow, "a backoff");
    }
    if (strategy == Strategy::Train) {  // a PR held behind a candidate (a chain's failure)
      Queue q(strategy, count);
      q.push_all(kNow - 1'000);
      q.apply(CheckReported{q.s.train.back().sha, Check{"ci", CheckState::Failure}, kNow});
      REQUIRE(q.s.prs.at(count).held_by.has_value());
      check_every_pr_estimated(q, kNow, "a held PR");
    }
  }
}

}  // namespace dmz::queue

#include "queue/eta.hpp"

#include <doctest/doctest.h>

#include "queue/engine.hpp"
#include "queue/forecast.hpp"

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

TEST_CASE("eta: the page forecasts adaptive queues and uses the formula for the others") {
  RepoState st;
  st.master = std::string(40, 'a');
  st.observed.builds = 50;
  st.observed.build_ms = 600;
  for (int n = 1; n <= 3; ++n) {
    PullRequest pr;
    pr.number = n;
    pr.status = PrStatus::Queued;
    pr.head = std::string(40, char('0' + n));
    pr.approval = Approval{pr.head, "mm", 1};
    pr.queued_at = n;
    st.prs[n] = pr;
  }
  Settings cfg;
  cfg.required_checks = {"ci"};
  const std::vector<Millis> landed = {700, 700};
  const auto pace = pace_of(st, cfg, landed);
  REQUIRE(pace);
  CHECK(expected_landings(st, cfg, landed, 1000) ==
        estimate_landings(st, queue_order(st), *pace, 1000));
  cfg.strategy = Strategy::Adaptive;
  ForecastOptions three;
  three.runs = 3;
  const auto forecast = forecast_landings(st, cfg, 1000, three);
  REQUIRE(forecast.size() == 3);
  CHECK(expected_landings(st, cfg, landed, 1000) == forecast);
  // A queue too long to forecast on every page gets the formula, and a build more for each PR
  // not in the chain yet (its probe).
  for (int n = 4; n <= static_cast<int>(kMaxForecastPrs) + 1; ++n) {
    PullRequest pr = st.prs.at(1);
    pr.number = n;
    pr.queued_at = n;
    st.prs[n] = pr;
  }
  st.train.push_back(candidate(1, {1}, 900));  // PR 1 is in the chain already
  st.prs.at(1).status = PrStatus::Building;
  st.prs.at(1).candidate = 1;
  const auto long_pace = pace_of(st, cfg, landed);
  REQUIRE(long_pace);
  auto formula = estimate_landings(st, queue_order(st), *long_pace, 1000);
  REQUIRE(formula.size() == kMaxForecastPrs + 1);  // every PR, the one in the chain too
  for (auto& [n, at] : formula)
    if (n != 1) at += long_pace->per_candidate;
  CHECK(expected_landings(st, cfg, landed, 1000) == formula);
}

}  // namespace dmz::queue

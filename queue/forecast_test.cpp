// The forecast of landings: the engine played forward, builds taking the observed duration and
// PRs failing with their risk.
#include "queue/forecast.hpp"

#include <doctest/doctest.h>

#include <string>

#include "queue/engine.hpp"
#include "queue/queue_test_support.hpp"

using namespace dmz::queue;

namespace {

constexpr Millis kNow = 10'000'000;
constexpr Millis kBuild = 1'800'000;  // 30 minutes

using testing::sha_of;

// A repository with PRs 1..count queued 3 s apart, the last 3 s before kNow (PR n changes
// p<n>/x.cpp), as the engine leaves it.
struct Queue {
  RepoState s;
  Settings cfg;

  Queue(Strategy strategy, int count, std::uint32_t fail_permille, Millis build_ms = kBuild) {
    s.repo = "acme/app";
    s.master = sha_of('m', 0);
    cfg.required_checks = {"ci"};
    cfg.strategy = strategy;
    cfg.window_start = 20;
    cfg.window_max = 20;
    s.observed.builds = 50;
    s.observed.build_ms = build_ms;
    s.observed.fail_permille = fail_permille;
    s.observed.arrival_ms = 3'000;
    testing::queue_approved(s, cfg, count, kNow, 3'000);
  }
  void apply(const Event& e) { REQUIRE_FALSE(handle(s, e, cfg).rejected); }
};

}  // namespace

TEST_CASE("forecast: a serial queue that nothing fails lands one PR per build") {
  Queue q(Strategy::Serial, 3, 0);  // no failure observed: a 1% floor of risk
  const RepoState before = q.s;
  const auto at = forecast_landings(q.s, q.cfg, kNow);
  CHECK(q.s == before);  // played on a copy
  REQUIRE(at.size() == 3);
  CHECK(at.at(1) == kNow + kBuild);
  CHECK(at.at(2) == kNow + 2 * kBuild);
  CHECK(at.at(3) == kNow + 3 * kBuild);
  CHECK(forecast_landings(q.s, q.cfg, kNow) == at);  // the same state, the same forecast
}

TEST_CASE("forecast: a build that started before the forecast ends a build after it started") {
  Queue q(Strategy::Serial, 2, 0);
  REQUIRE(q.s.train.size() == 1);
  const CandidateId id = q.s.train.front().id;
  const Sha sha = sha_of('c', 1);
  const Millis pushed = kNow - 600'000;  // ten minutes ago
  q.apply(MergeDone{id, MergeOutcome::Merged, sha, 0, {}, "", pushed});
  q.apply(CandidateChecked{id, sha, true, {}, pushed});
  REQUIRE(q.s.train.front().pushed_at == pushed);
  const auto at = forecast_landings(q.s, q.cfg, kNow);
  CHECK(at.at(1) == pushed + kBuild);
  CHECK(at.at(2) == pushed + 2 * kBuild);
}

TEST_CASE("forecast: a PR that will most likely fail gets no estimate, and costs a build") {
  Queue q(Strategy::Serial, 3, 10);
  // PR 1 failed its own CI before the queue, and its author's PRs failed 50 times out of 50.
  q.s.prs.at(1).author = "mallory";
  q.s.prs.at(1).precheck = CheckState::Failure;
  q.s.observed.risk["author:mallory"] = Tally{0, 50};
  CHECK(failure_risk(q.s, q.s.prs.at(1)) > 0.98);
  CHECK(failure_risk(q.s, q.s.prs.at(2)) < 0.02);
  const auto at = forecast_landings(q.s, q.cfg, kNow);
  CHECK_FALSE(at.count(1));
  REQUIRE(at.size() == 2);
  CHECK(at.at(2) == kNow + 2 * kBuild);  // after PR 1's failed build
  CHECK(at.at(3) == kNow + 3 * kBuild);
}

TEST_CASE("forecast: adaptive under load probes before the chain, which takes a build more") {
  // A PR in four fails and fifteen are approved during a 45 s build: under load.
  Queue q(Strategy::Adaptive, 4, 250, 45'000);
  REQUIRE_FALSE(q.s.train.empty());
  for (const auto& k : q.s.train) REQUIRE(k.probe);  // every PR is probed first
  const auto at = forecast_landings(q.s, q.cfg, kNow);
  REQUIRE_FALSE(at.empty());
  int after_two_builds = 0;
  for (const auto& [n, when] : at) {
    CHECK(when >= kNow + 45'000);
    after_two_builds += when >= kNow + 2 * 45'000 ? 1 : 0;
  }
  // The first green probe on master lands itself; the others join a chain and build again.
  CHECK(after_two_builds >= 1);
}

TEST_CASE("forecast: nothing before a build duration is observed") {
  Queue q(Strategy::Serial, 2, 0);
  q.s.observed.build_ms = 0;
  CHECK(forecast_landings(q.s, q.cfg, kNow).empty());
  ForecastOptions none;
  none.runs = 0;
  q.s.observed.build_ms = kBuild;
  CHECK(forecast_landings(q.s, q.cfg, kNow, none).empty());
}

TEST_CASE("forecast: after a transient error the queue starts again when the backoff ends") {
  Queue q(Strategy::Serial, 2, 0);
  q.cfg.retry_backoff = 3'600'000;  // an hour: longer than a build
  REQUIRE(q.s.train.size() == 1);
  q.apply(MergeDone{q.s.train.front().id, MergeOutcome::Error, "", 0, {}, "git is down", kNow});
  REQUIRE(q.s.train.empty());
  const Millis resumes = kNow + q.cfg.retry_backoff;
  REQUIRE(q.s.retry_after == resumes);
  const auto at = forecast_landings(q.s, q.cfg, kNow);
  REQUIRE(at.size() == 2);
  CHECK(at.at(1) == resumes + kBuild);
  CHECK(at.at(2) == resumes + 2 * kBuild);
}

TEST_CASE("forecast: PRs that change a common path conflict at the rate observed here") {
  Queue q(Strategy::Serial, 3, 10);
  q.s.prs.at(2).paths = q.s.prs.at(1).paths;  // PRs 1 and 2 change the same file
  SUBCASE("nothing observed of such pairs: they pass") {
    const auto at = forecast_landings(q.s, q.cfg, kNow);
    CHECK(at.at(2) == kNow + 2 * kBuild);
  }
  SUBCASE("every build holding such a pair failed here: PR 2 fails on PR 1, then PR 3 lands") {
    q.s.observed.risk["overlap:0"] = Tally{60, 0};
    q.s.observed.risk["overlap:some"] = Tally{0, 60};
    q.s.observed.risk["overlap:pairs"] = Tally{60, 0};
    REQUIRE(conflict_risk(q.s) == doctest::Approx(1.0));
    const auto at = forecast_landings(q.s, q.cfg, kNow);
    CHECK(at.at(1) == kNow + kBuild);
    CHECK_FALSE(at.count(2));
    CHECK(at.at(3) == kNow + 3 * kBuild);
  }
  SUBCASE("a passed probe built them together: no conflict is drawn") {
    q.s.observed.risk["overlap:0"] = Tally{60, 0};
    q.s.observed.risk["overlap:some"] = Tally{0, 60};
    q.s.observed.risk["overlap:pairs"] = Tally{60, 0};
    q.s.prs.at(2).probed = true;
    q.s.prs.at(2).probed_with = {1};
    const auto at = forecast_landings(q.s, q.cfg, kNow);
    CHECK(at.at(2) == kNow + 2 * kBuild);
  }
}

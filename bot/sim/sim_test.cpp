// The simulator: serial's numbers against a case worked by hand, the conflict calibration,
// the oracle as a lower bound, every strategy keeping the invariants (with crashes), and each
// invariant check of the ledger firing on the move that breaks it.
#include <doctest/doctest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "bot/sim/ledger.hpp"
#include "bot/sim/oracle.hpp"
#include "bot/sim/report.hpp"
#include "bot/sim/simulate.hpp"
#include "bot/sim/workload.hpp"
#include "bot/sim/world.hpp"

namespace dmz::sim {
namespace {

SimPr pr_at(int number, Millis approved_at, bool bad = false) {
  SimPr p;
  p.number = number;
  p.approved_at = approved_at;
  p.author = "dev";
  p.targets = {number};  // nobody shares a target: no semantic conflicts
  p.bad = bad;
  return p;
}

namespace q = queue;
using Outcome = Ledger::Outcome;

// A ledger over PRs 1..4, master at "m0".
Ledger fresh_ledger() { return Ledger("m0", 4); }

// Git writes `sha` (`parent` plus `prs`) and CI builds it green, holding exactly that.
void commit_green(Ledger& l, const std::string& sha, const std::string& parent,
                  std::vector<int> prs) {
  REQUIRE(l.record_commit(sha, parent, std::move(prs)));
  l.record_build(sha, l.contents(sha), true);
}

// How many violations mention `what`.
std::size_t violations_naming(const Ledger& l, std::string_view what) {
  return static_cast<std::size_t>(
      std::count_if(l.violations().begin(), l.violations().end(),
                    [&](const std::string& v) { return v.find(what) != std::string::npos; }));
}

void show(const Ledger& l) {
  for (const auto& v : l.violations()) MESSAGE(v);
}

}  // namespace

TEST_CASE("simulate: serial matches the closed form of a case worked by hand") {
  // Four PRs approved within a second; CI takes exactly 30 minutes (sigma 0), PR 2 is bad, no
  // flakes. The simulated shell answers a policy check in 2 s, a merge in 5 s, a push in 3 s.
  // Serial builds one candidate at a time:
  //   PR 1: policy 2 s, merge 5 s, build 1800 s, push 3 s: lands 1810 s after approval;
  //   PR 2: merged when 1 lands (5 s), fails after its build: ejected at 1810 + 1805 = 3615 s;
  //   PR 3: 3615 + 5 + 1800 + 3 = 5423 s; PR 4: 5423 + 1808 = 7231 s.
  WorkloadOptions o;
  o.ci_median_minutes = 30;
  o.ci_sigma = 0;
  o.flake = 0;
  o.fail = 0;
  o.runners = 4;
  o.hours = 0.01;
  std::vector<SimPr> prs = {pr_at(1, 0), pr_at(2, 200, true), pr_at(3, 400), pr_at(4, 600)};
  Workload w = Workload::from_prs(o, 7, prs);
  RunResult r = run(w, *strategy_named("serial", o));
  CHECK(r.violations.empty());
  CHECK(r.landed == 3);
  CHECK(r.ejected == 1);
  CHECK(r.innocent == 0);
  CHECK(r.escaped == 0);
  CHECK(r.unfinished == 0);
  CHECK(r.builds_started == 4);
  REQUIRE(r.ttm_minutes.size() == 3);
  std::sort(r.ttm_minutes.begin(), r.ttm_minutes.end());
  CHECK(r.ttm_minutes[0] == doctest::Approx(1810.0 / 60));
  CHECK(r.ttm_minutes[1] == doctest::Approx((5423.0 - 0.4) / 60));
  CHECK(r.ttm_minutes[2] == doctest::Approx((7231.0 - 0.6) / 60));
  // Where the time went (sim_bench stats): every landed PR was in one candidate and no probe;
  // the candidates were merged 2 s, 3,615 s and 5,423 s into the run (the median: PR 3's).
  CHECK(r.counters["landed_mean_probes"] == 0);
  CHECK(r.counters["landed_mean_chain_builds"] == 1);
  CHECK(r.counters["landed_median_min_to_first_chain_build"] ==
        doctest::Approx((3615.0 - 0.4) / 60));
  CHECK(r.counters["landed_median_min_to_last_chain_build"] ==
        doctest::Approx((3615.0 - 0.4) / 60));
  CHECK(r.counters.count("landed_median_min_landing_1probe_1chain") == 0);  // no probe
  CHECK(r.counters["landed_median_min_to_landing"] == doctest::Approx((5423.0 - 0.4) / 60));
  CHECK(r.counters.count("landed_p95_min_to_first_probe") == 0);
  CHECK(r.counters["ejected_mean_builds"] == 1);  // PR 2, in one candidate
  CHECK(r.counters["chain_passed"] == 3);
  CHECK(r.counters["chain_failed_bad_pr"] == 1);
  CHECK(r.counters["runner_minutes_finished"] == doctest::Approx(4 * 30.0));
  CHECK(r.counters.count("runner_minutes_cancelled") == 0);
  // The oracle builds each good PR as it arrives: every one lands 30 minutes after approval.
  RunResult best = oracle(w);
  CHECK(best.landed == 3);
  CHECK(best.ejected == 1);
  for (double m : best.ttm_minutes) CHECK(m == doctest::Approx(30.0));
}

TEST_CASE("simulate: conflicts are calibrated: about 1% of pairs, most 16-PR groups") {
  WorkloadOptions o;
  o.rate = 200;
  o.hours = 4;
  Workload w = Workload::generate(o, 3);
  const int n = static_cast<int>(w.prs().size());
  REQUIRE(n > 500);
  long pairs = 0, conflicts = 0;
  for (int a = 1; a <= n; a += 3)
    for (int b = a + 1; b <= n; b += 5) {
      ++pairs;
      conflicts += w.conflict(a, b);
    }
  const double rate = static_cast<double>(conflicts) / static_cast<double>(pairs);
  CHECK(rate > 0.005);
  CHECK(rate < 0.02);
  int groups = 0, with_conflict = 0;
  for (int start = 1; start + 16 <= n; start += 16, ++groups) {
    bool any = false;
    for (int a = start; a < start + 16 && !any; ++a)
      for (int b = a + 1; b < start + 16 && !any; ++b) any = w.conflict(a, b);
    with_conflict += any;
  }
  CHECK(with_conflict * 2 > groups);
}

TEST_CASE("simulate: every strategy keeps the invariants on a loaded queue, with crashes") {
  WorkloadOptions o;
  o.rate = 20;
  o.hours = 2;
  o.fail = 0.1;
  o.flake = 0.05;
  o.runners = 8;
  Workload w = Workload::generate(o, 11);
  RunResult best = oracle(w);
  for (const auto& s : standard_strategies(o)) {
    CAPTURE(s.name);
    RunOptions plain;
    RunResult r = run(w, s, plain);
    CHECK(r.violations.empty());
    for (const auto& v : r.violations) MESSAGE(v);
    CHECK(r.escaped == 0);
    CHECK(r.landed + r.ejected + r.unfinished == r.prs);
    CHECK(r.landed > 0);
    CHECK(r.landed <= best.landed + best.unfinished + 2);  // flakes aside, no more than the oracle
    if (s.name == "adaptive") {  // under load: probes first, then the chain
      CHECK(r.counters["landed_mean_probes"] > 0);
      CHECK(r.counters.count("landed_median_min_landing_1probe_1chain") == 1);
      CHECK(r.counters["landed_median_min_to_first_chain_build"] <=
            r.counters["landed_median_min_to_last_chain_build"]);
      CHECK(r.counters["landed_median_min_to_first_probe"] <=
            r.counters["landed_p95_min_to_first_probe"]);
      CHECK(r.counters["ejected_mean_builds"] >= 2);  // each failed a build and its retry
    }
    RunOptions crashing;
    crashing.crash_every = 37;
    RunResult c = run(w, s, crashing);
    CHECK(c.restarts > 0);
    CHECK(c.violations.empty());
    for (const auto& v : c.violations) MESSAGE(v);
    CHECK(c.escaped == 0);
  }
}

TEST_CASE("ledger: a correct run breaks nothing") {
  Ledger l = fresh_ledger();
  // A train: c2 is chained on c1 and built green before c1 landed, so it held m0 + #1 + #2;
  // after c1 lands that is the same tree as c1 + #2.
  commit_green(l, "c1", "m0", {1});
  commit_green(l, "c2", "c1", {2});
  CHECK(l.master_moved("m0", "c1", 10));
  l.outcome(1, Outcome::Landed);
  CHECK(l.master_moved("c1", "c2", 20));
  l.outcome(2, Outcome::Landed);
  l.outcome(2, Outcome::Landed);  // resent after a restart
  l.outcome(3, Outcome::Ejected);
  l.outcome(3, Outcome::Ejected);
  // A red build after a green one (a flaky retry) does not undo it.
  commit_green(l, "c3", "c2", {4});
  l.record_build("c3", l.contents("c3"), false);
  CHECK(l.master_moved("c2", "c3", 30));
  l.outcome(4, Outcome::Landed);
  for (int pr = 1; pr <= 4; ++pr) {
    l.check_told(pr, pr == 3 ? q::PrStatus::Failed : q::PrStatus::Merged);
    l.check_landing_told(pr);
  }
  show(l);
  CHECK(l.violations().empty());
  CHECK(l.master() == "c3");
  CHECK(l.undecided() == 0);
  CHECK(l.landed_at(2) == 20);
  CHECK(l.landed_at(3) == Ledger::kNever);
  CHECK(l.landings().size() == 3);
}

TEST_CASE("ledger: master moving other than by fast-forward is a violation") {
  Ledger l = fresh_ledger();
  SUBCASE("to a sibling: master loses what it held") {
    commit_green(l, "c1", "m0", {1});
    commit_green(l, "c2", "m0", {2});  // a sibling of c1, not its child
    CHECK(l.master_moved("m0", "c1", 10));
    REQUIRE(l.violations().empty());
    CHECK(l.master_moved("c1", "c2", 20));
    show(l);
    CHECK(violations_naming(l, "master moved to c2, not a fast-forward") == 1);
    CHECK(l.violations().size() == 1);
  }
  SUBCASE("from a master it was not at") {
    commit_green(l, "c1", "m0", {1});
    CHECK(l.master_moved("c9", "c1", 10));
    show(l);
    CHECK(violations_naming(l, "master moved from c9, but it was at m0") == 1);
    CHECK(l.violations().size() == 1);
  }
  SUBCASE("to a sha git never wrote: master stays") {
    CHECK_FALSE(l.master_moved("m0", "c9", 10));
    CHECK(violations_naming(l, "master pushed to an unknown sha") == 1);
    CHECK(l.master() == "m0");
    CHECK_FALSE(l.record_commit("c1", "c9", {1}));
    CHECK(violations_naming(l, "commit c1 on an unknown base c9") == 1);
    CHECK(l.violations().size() == 2);
  }
}

TEST_CASE("ledger: master moving to a sha not built green as it is is a violation") {
  Ledger l = fresh_ledger();
  SUBCASE("never built") {
    REQUIRE(l.record_commit("c1", "m0", {1}));
    l.master_moved("m0", "c1", 10);
    show(l);
    CHECK(violations_naming(l, "master moved to c1, which never built green") == 1);
  }
  SUBCASE("built red") {
    REQUIRE(l.record_commit("c1", "m0", {1}));
    l.record_build("c1", l.contents("c1"), false);
    l.master_moved("m0", "c1", 10);
    show(l);
    CHECK(violations_naming(l, "master moved to c1, which never built green") == 1);
  }
  SUBCASE("built green holding other PRs") {
    REQUIRE(l.record_commit("c1", "m0", {1, 2}));
    l.record_build("c1", Contents{"m0", {1}}, true);  // CI built without #2
    l.master_moved("m0", "c1", 10);
    show(l);
    CHECK(violations_naming(l,
                            "master moved to c1, which built green with other contents (m0 "
                            "+#1, not m0 +#1 +#2)") == 1);
  }
  SUBCASE("built green on another master") {
    commit_green(l, "c1", "m0", {1});
    REQUIRE(l.record_commit("c2", "c1", {2}));
    l.record_build("c2", Contents{"m0", {2}}, true);  // CI built #2 without #1 under it
    l.master_moved("m0", "c1", 10);
    l.master_moved("c1", "c2", 20);
    show(l);
    CHECK(violations_naming(l, "master moved to c2, which built green with other contents") == 1);
  }
  CHECK(l.violations().size() == 1);
}

TEST_CASE("ledger: a PR landing twice is a violation") {
  Ledger l = fresh_ledger();
  SUBCASE("in two landings") {
    commit_green(l, "c1", "m0", {1});
    commit_green(l, "c2", "c1", {2, 1});
    l.master_moved("m0", "c1", 10);
    l.master_moved("c1", "c2", 20);
  }
  SUBCASE("twice in one candidate") {
    commit_green(l, "c1", "m0", {1, 2, 1});
    l.master_moved("m0", "c1", 10);
  }
  show(l);
  CHECK(violations_naming(l, "#1 is on master twice") == 1);
  CHECK(l.violations().size() == 1);
}

TEST_CASE("ledger: an outcome told is never changed") {
  Ledger l = fresh_ledger();
  commit_green(l, "c1", "m0", {1, 2});
  l.master_moved("m0", "c1", 10);
  SUBCASE("landed, then failed") {
    l.outcome(1, Outcome::Landed);
    l.outcome(1, Outcome::Ejected);
    show(l);
    CHECK(violations_naming(l, "#1 failed after it landed") == 1);
  }
  SUBCASE("failed, then landed") {
    l.outcome(2, Outcome::Ejected);
    l.outcome(2, Outcome::Landed);
    show(l);
    CHECK(violations_naming(l, "#2 landed after it was reported failed") == 1);
  }
  SUBCASE("reported merged, never on master") {
    l.outcome(3, Outcome::Landed);
    show(l);
    CHECK(violations_naming(l, "#3 reported merged but not on master") == 1);
  }
  CHECK(l.violations().size() == 1);
}

TEST_CASE("ledger: at the end, every PR the engine finished was told") {
  Ledger l = fresh_ledger();
  commit_green(l, "c1", "m0", {1});
  l.master_moved("m0", "c1", 10);
  SUBCASE("merged in the engine, no notice") {
    l.check_told(1, q::PrStatus::Merged);
    show(l);
    CHECK(violations_naming(l, "#1 lost notice: merged in the engine, never told") == 1);
  }
  SUBCASE("failed in the engine, no notice") {
    l.check_told(2, q::PrStatus::Failed);
    show(l);
    CHECK(violations_naming(l, "#2 lost notice: failed in the engine, never told") == 1);
  }
  SUBCASE("dropped by the engine, or unknown to it") {
    l.check_told(2, q::PrStatus::Open);
    l.check_told(3, std::nullopt);
    show(l);
    CHECK(violations_naming(l, "#2 was lost") == 1);
    CHECK(violations_naming(l, "#3 was lost") == 1);
    CHECK(l.violations().size() == 2);
  }
  SUBCASE("on master, never reported merged") {
    l.check_landing_told(1);
    show(l);
    CHECK(violations_naming(l, "#1 is on master but was not reported merged") == 1);
  }
  SUBCASE("still in flight: nothing yet") {
    l.check_told(2, q::PrStatus::Building);
    l.check_told(3, q::PrStatus::Queued);
    CHECK(l.violations().empty());
  }
  CHECK(l.violations().size() <= 2);
}

TEST_CASE("simulate: the report's statistics and JSON") {
  CHECK(percentile({}, 50) == 0);
  CHECK(percentile({1, 2, 3, 4}, 50) == doctest::Approx(2.5));
  CHECK(percentile({5}, 99) == 5);
  Stat s = stat({1, 2, 3});
  CHECK(s.mean == doctest::Approx(2));
  CHECK(s.half > 0);
  SimulateOptions opts;
  opts.strategy = "nope";
  std::string problem;
  CHECK(chosen_strategies(opts, &problem).empty());
  CHECK(problem.find("unknown strategy 'nope'") != std::string::npos);
  opts.strategy = "all";
  opts.window_max = 5;
  auto all = chosen_strategies(opts, &problem);
  REQUIRE(all.size() == 4);
  CHECK(all[2].settings.window_max == 5);
  CHECK(all[2].settings.window_start <= 5);

  WorkloadOptions o;
  o.rate = 10;
  o.hours = 1;
  Workload w = Workload::generate(o, 1);
  std::vector<RunResult> oracle_runs = {oracle(w)};
  std::vector<RunResult> runs = {run(w, *strategy_named("train", o))};
  auto json = to_json({summarize("train", runs, oracle_runs)});
  REQUIRE(json.is_array());
  REQUIRE(json.size() == 1);
  for (const char* key :
       {"strategy", "landed", "ejected", "ejected_innocent", "unfinished", "p50_minutes",
        "p95_minutes", "p99_minutes", "p50_to_oracle", "p95_to_oracle", "p99_to_oracle",
        "builds_per_landed", "landings_per_hour", "escaped_breakages"})
    CHECK_MESSAGE(json[0].contains(key), key);
  // Each figure is a mean with its 95% half-width over seeds.
  CHECK(json[0]["p95_to_oracle"].contains("mean"));
  CHECK(json[0]["p95_to_oracle"]["mean"].get<double>() >= 1.0);  // never better than the bound
}

TEST_CASE("simulate: a seed leaves out what it does not define; the oracle is its own 1") {
  WorkloadOptions o;
  o.rate = 10;
  o.hours = 1;
  o.fail = 1;  // every PR is bad: nothing lands, under any strategy or the oracle
  o.flake = 0;
  Workload doomed = Workload::generate(o, 1);
  o.fail = 0.1;
  Workload fine = Workload::generate(o, 2);
  const std::vector<RunResult> oracle_runs = {oracle(doomed), oracle(fine)};
  const std::vector<RunResult> serial = {run(doomed, *strategy_named("serial", o)),
                                         run(fine, *strategy_named("serial", o))};
  REQUIRE(serial[0].landed == 0);
  REQUIRE(serial[0].builds_started > 0);
  REQUIRE(serial[1].landed > 0);
  // Builds per landed PR: the seed that landed something alone (not a mean with 0).
  const Summary mixed = summarize("serial", serial, oracle_runs);
  CHECK(mixed.builds_per_landed.seeds == 1);
  CHECK(mixed.builds_per_landed.mean ==
        doctest::Approx(static_cast<double>(serial[1].builds_started) / serial[1].landed));
  CHECK(mixed.p50_ratio.seeds == 1);
  const Summary best = summarize("oracle", oracle_runs, oracle_runs);
  CHECK(best.p50_ratio.seeds == 1);
  CHECK(best.p50_ratio.mean == 1);  // exactly
  CHECK(best.p99_ratio.mean == 1);
  CHECK(best.p99_ratio.half == 0);

  // Defined for no seed: "-" in the table, null in the JSON.
  const Summary none = summarize("serial", {serial[0]}, {oracle_runs[0]});
  CHECK_FALSE(none.builds_per_landed.defined());
  CHECK_FALSE(none.p50_ratio.defined());
  CHECK(none.landed.defined());  // 0 landed is a figure
  const std::string text = table({none});
  CHECK(text.find("0.00±0.00") == std::string::npos);
  CHECK(text.find(" -") != std::string::npos);
  const auto json = to_json({none});
  CHECK(json[0]["builds_per_landed"].is_null());
  CHECK(json[0]["p50_to_oracle"].is_null());
  CHECK(json[0]["landed"]["mean"] == 0);
}

TEST_CASE("simulate: --svg draws one curve per strategy, ending at every PR") {
  const std::string drawn =
      svg({{"oracle", {10, 20, 30, 40}}, {"serial", {50, 60}}, {"adaptive", {}}});
  CHECK(drawn.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0) == 0);
  CHECK(drawn.ends_with("</svg>\n"));
  std::size_t curves = 0;
  for (std::size_t at = 0; (at = drawn.find("<polyline", at)) != std::string::npos; ++at) ++curves;
  CHECK(curves == 3);
  for (const char* name : {">oracle<", ">serial<", ">adaptive<"})
    CHECK_MESSAGE(drawn.find(name) != std::string::npos, name);
  // The serial curve reaches 100% (the top of the plot, y = 30) at its last PR.
  const auto serial = drawn.find("stroke=\"#d62728\" stroke-width=\"2\" points=\"");
  REQUIRE(serial != std::string::npos);
  const auto end = drawn.find('"', drawn.find("points=\"", serial) + 8);
  CHECK(drawn.substr(0, end).ends_with(",30.0"));
}

TEST_CASE("simulate: bursts and the working day shape the arrivals, not their mean") {
  WorkloadOptions o;
  o.rate = 20;
  o.hours = 24;
  auto gaps_of = [](const Workload& w) {
    std::vector<Millis> gaps;
    for (std::size_t i = 1; i < w.prs().size(); ++i)
      gaps.push_back(w.prs()[i].approved_at - w.prs()[i - 1].approved_at);
    return gaps;
  };
  std::size_t plain = 0, bursty_close = 0, plain_close = 0;
  std::vector<int> by_hour(24, 0);
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    const Workload w = Workload::generate(o, seed);
    plain += w.prs().size();
    for (Millis g : gaps_of(w)) plain_close += g == 30'000;
    WorkloadOptions b = o;
    b.burst = 0.3;
    for (Millis g : gaps_of(Workload::generate(b, seed))) bursty_close += g == 30'000;
    WorkloadOptions d = o;
    d.day_profile = true;
    const Workload day = Workload::generate(d, seed);
    for (const auto& p : day.prs()) ++by_hour[static_cast<std::size_t>(p.approved_at / kHour) % 24];
  }
  CHECK(plain == doctest::Approx(5 * 20 * 24).epsilon(0.1));
  // A burst: a merge master's round, one approval every 30 s.
  CHECK(plain_close == 0);
  CHECK(bursty_close > 100);
  // The day starts at 09:00 and peaks at 14:00 (hour 5), lowest at 02:00 (hour 17).
  CHECK(by_hour[5] > 3 * by_hour[17]);
  int total = 0;
  for (int n : by_hour) total += n;
  CHECK(total == doctest::Approx(5 * 20 * 24).epsilon(0.15));
}

}  // namespace dmz::sim

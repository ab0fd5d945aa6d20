// sim_bench: the simulator figures. `sim_bench big [N]` drives N simulated PRs (default
// 100,000) through the production driver and engine (adaptive strategy, the light workload)
// and prints events per second per tenth of the run, so that a per-event cost growing with
// history shows, and the peak memory. `sim_bench main [SEEDS]` times `dmzbot simulate` of the
// main workload (all strategies, SEEDS seeds, default 30) on the machine's cores.
// Not part of the tests: `cmake --build build --target sim_bench && build/sim_bench big`.
// Threading: `big` is single-threaded; `main` runs simulate's worker threads.
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "bot/sim/oracle.hpp"
#include "bot/sim/report.hpp"
#include "bot/sim/simulate.hpp"
#include "bot/sim/world.hpp"

namespace {

using namespace dmz::sim;
using SteadyClock = std::chrono::steady_clock;

double seconds_since(SteadyClock::time_point t) {
  return std::chrono::duration<double>(SteadyClock::now() - t).count();
}

long peak_rss_kib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

int big(long n) {
  // The light workload with arrivals long enough for n PRs, and 8 runners instead of
  // 4: at 4 the runners are busy most of the time, and over weeks of arrivals a run of bad
  // luck grows a backlog that never drains (measured: 112 PRs waiting on average over 300
  // hours), so the per-event figure would measure the backlog's growth. With 8 the queue keeps
  // up (4 waiting on average), the hot state stays small and only the history grows.
  WorkloadOptions o;
  o.rate = 5;
  o.runners = 8;
  o.fail = 0.05;
  o.flake = 0;
  o.hours = static_cast<double>(n) / o.rate;
  const auto generated = SteadyClock::now();
  const Workload w = Workload::generate(o, 1);
  std::printf("workload: %zu PRs over %.0f virtual hours, generated in %.2f s\n", w.prs().size(),
              o.hours, seconds_since(generated));
  RunOptions ro;
  ro.drain_hours = 48;
  const auto started = SteadyClock::now();
  ro.progress = [&, last = SteadyClock::now(), last_events = 0L, tenth = 1](int decided,
                                                                            long events) mutable {
    if (decided * 10L < tenth * static_cast<long>(w.prs().size())) return;
    const double s = seconds_since(last);
    std::printf("  %3d%% of PRs decided: %9ld events, %8.0f events/s in this tenth\n", tenth * 10,
                events, static_cast<double>(events - last_events) / std::max(s, 1e-9));
    std::fflush(stdout);
    last = SteadyClock::now();
    last_events = events;
    ++tenth;
  };
  auto strategy = *strategy_named("adaptive", o);
  RunResult r = run(w, strategy, ro);
  const double took = seconds_since(started);
  std::printf(
      "adaptive: %d PRs, %d landed, %d ejected, %d unfinished, %ld events in %.1f s: %.0f "
      "events/s, %.0f PRs/s; %zu violations; peak RSS %.1f MiB\n",
      r.prs, r.landed, r.ejected, r.unfinished, r.events, took,
      static_cast<double>(r.events) / took, r.prs / took, r.violations.size(),
      static_cast<double>(peak_rss_kib()) / 1024);
  for (const auto& v : r.violations) std::printf("  violation: %s\n", v.c_str());
  return r.violations.empty() ? 0 : 1;
}

int main_workload(int seeds) {
  SimulateOptions s;
  s.workload.rate = 20;
  s.workload.ci_median_minutes = 30;
  s.workload.ci_sigma = 0.5;
  s.workload.fail = 0.10;
  s.workload.flake = 0.02;
  s.workload.runners = 20;
  s.workload.hours = 8;
  s.seeds = seeds;
  const auto started = SteadyClock::now();
  const int rc = run_simulate(s);
  std::printf("simulate, main workload, all strategies, %d seeds: %.1f s wall; peak RSS %.1f MiB\n",
              seeds, seconds_since(started), static_cast<double>(peak_rss_kib()) / 1024);
  return rc;
}

// Why a strategy does what it does: the world's counters (builds by how they ended, failures
// by cause, probes, the mean backlog, train and window), averaged over seeds, beside the
// oracle's landings. Options: rate= runners= hours= fail= flake= conflict= precheck= ci= (median
// minutes) seeds= seed= (the first) retries= (flaky retries).
int stats(const std::string& name, int argc, char** argv) {
  WorkloadOptions o;
  int seeds = 4, first = 1, retries = -1;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    const auto eq = a.find('=');
    if (eq == std::string::npos) continue;
    const std::string key = a.substr(0, eq);
    const double v = std::atof(a.c_str() + eq + 1);
    if (key == "rate") o.rate = v;
    if (key == "runners") o.runners = static_cast<int>(v);
    if (key == "hours") o.hours = v;
    if (key == "fail") o.fail = v;
    if (key == "flake") o.flake = v;
    if (key == "ci") o.ci_median_minutes = v;
    if (key == "seeds") seeds = static_cast<int>(v);
    if (key == "seed") first = static_cast<int>(v);
    if (key == "conflict") o.pair_conflict = v;
    if (key == "precheck") o.precheck = v;
    if (key == "retries") retries = static_cast<int>(v);
  }
  auto strategy = strategy_named(name, o);
  if (!strategy) return 2;
  if (retries >= 0) strategy->settings.flaky_retries = retries;
  std::map<std::string, double> sum;
  double landed = 0, oracle_landed = 0, p50 = 0, oracle_p50 = 0;
  for (int seed = first; seed < first + seeds; ++seed) {
    const Workload w = Workload::generate(o, static_cast<std::uint64_t>(seed));
    RunOptions ro;
    ro.measure_eta = true;
    RunResult r = run(w, *strategy, ro);
    RunResult best = oracle(w);
    for (const auto& [k, v] : r.counters) sum[k] += v / seeds;
    sum["builds_started"] += static_cast<double>(r.builds_started) / seeds;
    sum["ejected"] += static_cast<double>(r.ejected) / seeds;
    sum["innocent"] += static_cast<double>(r.innocent) / seeds;
    sum["unfinished"] += static_cast<double>(r.unfinished) / seeds;
    landed += static_cast<double>(r.landed) / seeds;
    oracle_landed += static_cast<double>(best.landed) / seeds;
    p50 += percentile(r.ttm_minutes, 50) / seeds;
    oracle_p50 += percentile(best.ttm_minutes, 50) / seeds;
    for (const auto& v : r.violations) std::printf("violation (seed %d): %s\n", seed, v.c_str());
  }
  std::printf("%s over %d seeds: landed %.1f (oracle %.1f), p50 of landed %.0f min (oracle %.0f)\n",
              name.c_str(), seeds, landed, oracle_landed, p50, oracle_p50);
  for (const auto& [k, v] : sum) std::printf("  %-40s %10.2f\n", k.c_str(), v);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::err);  // a simulated queue's notices are not news
  const std::string mode = argc > 1 ? argv[1] : "big";
  if (mode == "big") return big(argc > 2 ? std::atol(argv[2]) : 100'000);
  if (mode == "main") return main_workload(argc > 2 ? std::atoi(argv[2]) : 30);
  if (mode == "stats" && argc > 2) return stats(argv[2], argc - 3, argv + 3);
  std::fprintf(stderr,
               "usage: sim_bench big [PRS] | main [SEEDS] | stats STRATEGY [rate=R runners=N "
               "hours=H fail=P flake=P conflict=P precheck=P ci=M seeds=N]\n");
  return 2;
}

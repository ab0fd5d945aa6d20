#include "bot/sim/simulate.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "bot/sim/oracle.hpp"
#include "bot/sim/replay.hpp"
#include "bot/sim/report.hpp"

namespace dmz::sim {

std::vector<Strategy> chosen_strategies(const SimulateOptions& o, std::string* problem) {
  std::vector<Strategy> out;
  if (o.strategy == "all") {
    out = standard_strategies(o.workload);
  } else if (auto s = strategy_named(o.strategy, o.workload)) {
    out.push_back(*s);
  } else {
    *problem =
        "unknown strategy '" + o.strategy + "' (expected serial, batch, train, adaptive or all)";
    return {};
  }
  for (auto& s : out) {
    auto& cfg = s.settings;
    if (o.window_max > 0) {
      cfg.window_max = static_cast<std::size_t>(o.window_max);
      cfg.window_start = std::min(cfg.window_start, cfg.window_max);
      cfg.window_floor = std::min(cfg.window_floor, cfg.window_max);
    }
    if (o.max_batch > 0 && cfg.strategy != queue::Strategy::Serial)
      cfg.max_batch = static_cast<std::size_t>(o.max_batch);
    if (o.flaky_retries >= 0 && cfg.strategy != queue::Strategy::Serial)
      cfg.flaky_retries = o.flaky_retries;
    if (!o.lanes.empty() && cfg.strategy == queue::Strategy::Adaptive) {
      auto lanes = queue::parse_lanes(o.lanes);
      if (!lanes || *lanes == queue::Lanes::Groups) {
        *problem = "--lanes must be none or paths";
        return {};
      }
      cfg.lanes = *lanes;
    }
  }
  return out;
}

namespace {

// The options' own problems (before any workload is made), or "".
std::string bad_options(const SimulateOptions& o) {
  if (o.seeds < 1 || o.seeds > 1000) return "--seeds must be between 1 and 1000";
  const auto last =
      std::numeric_limits<std::uint64_t>::max() - static_cast<std::uint64_t>(o.seeds - 1);
  if (o.first_seed > last) return "--seed plus --seeds overflows the seeds (at most 2^64 - 1)";
  if (!o.lanes.empty()) {  // whichever strategies run: a typo is not silently ignored
    auto lanes = queue::parse_lanes(o.lanes);
    if (!lanes || *lanes == queue::Lanes::Groups) return "--lanes must be none or paths";
  }
  const double prs = o.workload.rate * o.workload.hours;
  if (o.replay_dir.empty() && prs > kMaxPrsPerSeed)
    return "--rate times --hours is " + std::to_string(static_cast<long long>(prs)) +
           " PRs per seed; at most " + std::to_string(kMaxPrsPerSeed) + " are simulated";
  return "";
}

// Opens (creating) the --svg file now, so that a bad path fails before the run.
std::optional<std::ofstream> open_svg(const std::string& path) {
  std::ofstream out(path);
  if (!out) return std::nullopt;
  return out;
}

}  // namespace

int run_simulate(const SimulateOptions& given) {
  SimulateOptions o = given;
  if (std::string problem = bad_options(o); !problem.empty()) {
    std::fprintf(stderr, "simulate: %s\n", problem.c_str());
    return 2;
  }
  std::optional<std::ofstream> svg_file;
  if (!o.svg.empty() && !(svg_file = open_svg(o.svg))) {
    std::fprintf(stderr, "simulate: cannot write %s\n", o.svg.c_str());
    return 2;
  }
  // The workloads: generated per seed, or the repository's own history.
  std::optional<Replay> replay;
  if (!o.replay_dir.empty()) {
    if (o.replay_repo.empty()) {
      std::fprintf(stderr, "simulate: --replay needs --repo owner/name\n");
      return 2;
    }
    auto r = load_replay(o.replay_dir, o.replay_repo, o.workload);
    if (!r) {
      std::fprintf(stderr, "simulate: %s\n", r.message().c_str());
      return 2;
    }
    replay = std::move(*r);
    o.workload = replay->options;
  }
  const WorkloadOptions& wo = o.workload;
  std::string problem;
  auto strategies = chosen_strategies(o, &problem);
  if (strategies.empty()) {
    std::fprintf(stderr, "simulate: %s\n", problem.c_str());
    return 2;
  }
  std::vector<Workload> workloads;
  for (int i = 0; i < o.seeds; ++i) {
    const std::uint64_t seed = o.first_seed + static_cast<std::uint64_t>(i);
    workloads.push_back(replay ? replay->workload(seed) : Workload::generate(wo, seed));
  }

  // Every (strategy, seed) is one job; the oracle is cheap and computed here.
  std::vector<RunResult> oracle_runs;
  for (const auto& w : workloads) oracle_runs.push_back(oracle(w));
  std::vector<std::vector<RunResult>> results(strategies.size(),
                                              std::vector<RunResult>(workloads.size()));
  std::atomic<std::size_t> next{0};
  const std::size_t jobs = strategies.size() * workloads.size();
  auto level = spdlog::get_level();
  spdlog::set_level(spdlog::level::err);  // a simulated queue's refusals are not news
  auto worker = [&] {
    for (std::size_t j; (j = next++) < jobs;) {
      // The slowest runs first: strategies in reverse (serial drains longest), then seeds.
      const std::size_t si = strategies.size() - 1 - j / workloads.size();
      const std::size_t wi = j % workloads.size();
      results[si][wi] = run(workloads[wi], strategies[si], o.run);
    }
  };
  const unsigned threads = o.threads > 0 ? static_cast<unsigned>(o.threads)
                                         : std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < std::min<std::size_t>(threads, jobs); ++t) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
  spdlog::set_level(level);

  std::vector<Summary> summaries;
  summaries.push_back(summarize("oracle", oracle_runs, oracle_runs));
  for (std::size_t s = 0; s < strategies.size(); ++s)
    summaries.push_back(summarize(strategies[s].name, results[s], oracle_runs));
  bool broken = false;
  for (const auto& s : summaries) broken |= s.violations > 0 || s.escaped.mean > 0;

  if (o.json) {
    std::printf("%s\n", to_json(summaries).dump(2).c_str());
  } else {
    if (replay)
      std::printf(
          "replay of %s: %zu PRs over %.1f hours (%d approvals left out: cancelled, closed, "
          "refused or conflicting); builds %.0f min median; %.1f%% bad, %.1f%% flaky builds\n",
          o.replay_repo.c_str(), replay->prs.size(), wo.hours, replay->left_out,
          wo.ci_median_minutes, 100 * wo.fail, 100 * wo.flake);
    std::printf(
        "%d seeds (%llu..%llu), %d runners; mean ± 95%% CI over seeds; times in "
        "minutes from approval (unfinished PRs count at the stop)\n",
        o.seeds, static_cast<unsigned long long>(o.first_seed),
        static_cast<unsigned long long>(o.first_seed + o.seeds - 1), wo.runners);
    std::printf("%s", table(summaries).c_str());
  }
  if (!o.svg.empty()) {
    std::vector<std::pair<std::string, std::vector<double>>> samples;
    auto pool_of = [](const std::vector<RunResult>& runs) {
      std::vector<double> v;
      for (const auto& r : runs) {
        v.insert(v.end(), r.ttm_minutes.begin(), r.ttm_minutes.end());
        v.insert(v.end(), r.censored_minutes.begin(), r.censored_minutes.end());
      }
      return v;
    };
    samples.emplace_back("oracle", pool_of(oracle_runs));
    for (std::size_t s = 0; s < strategies.size(); ++s)
      samples.emplace_back(strategies[s].name, pool_of(results[s]));
    *svg_file << svg(samples);
    svg_file->flush();
    if (!*svg_file) {
      std::fprintf(stderr, "simulate: cannot write %s\n", o.svg.c_str());
      if (!broken) return 2;  // a broken invariant says more than a lost drawing
    }
  }
  return broken ? 1 : 0;
}

}  // namespace dmz::sim

// `dmzbot simulate`: runs each strategy (and the oracle) on the same seeded workloads, in
// parallel over seeds, and prints the table (or JSON, or an SVG of the distributions). With
// --replay, the workload is a repository's own recorded history (bot/sim/replay.hpp).
// Threading: run_simulate starts its own worker threads and joins them.
#pragma once

#include <cstdint>
#include <string>

#include "bot/sim/workload.hpp"
#include "bot/sim/world.hpp"

namespace dmz::sim {

struct SimulateOptions {
  WorkloadOptions workload;
  std::string strategy = "all";  // or one of serial, batch, train, adaptive
  int seeds = 10;
  std::uint64_t first_seed = 1;
  bool json = false;
  std::string svg;  // a file to draw the distributions into
  RunOptions run;
  int threads = 0;  // 0: one per core
  // Settings tried instead of the standard ones (0 or -1: keep)
  int window_max = 0;
  int max_batch = 0;
  int flaky_retries = -1;
  std::string lanes;  // adaptive: "none", "paths"
  // --replay DATA_DIR --repo owner/name
  std::string replay_dir;
  std::string replay_repo;
};

// A generated workload holds at most this many PRs per seed (rate times hours).
constexpr int kMaxPrsPerSeed = 100'000;

// Prints the results to stdout; problems to stderr. Exit code: 0, 1 when a run broke an
// invariant or a breakage escaped, 2 for bad options.
int run_simulate(const SimulateOptions& options);

// The strategies an options asks for, with its overrides applied.
std::vector<Strategy> chosen_strategies(const SimulateOptions& options, std::string* problem);

}  // namespace dmz::sim

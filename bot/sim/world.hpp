// One simulated run: the production Driver and engine, with an in-memory store, on a manual
// clock, facing a simulated world: PRs approved as the workload says, a git remote that
// merges instantly (no textual conflicts), the trust policy passing, and CI runners whose
// builds take the workload's durations and fail when the candidate holds a bad PR, a
// semantic conflict that matters, or a flake. The world also checks the invariants, through
// its ledger (bot/sim/ledger.hpp): master only moves by fast-forward to a sha that built green
// holding what it holds, nothing lands twice, an outcome told never changes, nothing is lost
// (nor finished untold); and it counts the landings of a master that holds a breakage (escaped).
// Threading: a run is single-threaded; different runs share nothing but the Workload.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "bot/sim/workload.hpp"
#include "queue/model.hpp"

namespace dmz::sim {

struct Strategy {
  std::string name;          // "serial", "adaptive", ...
  queue::Settings settings;  // required_checks and check_timeout are set by the run
};

// The strategies as `dmzbot simulate` runs them for a workload (flaky retries when the
// workload has flakes; windows up to the runners).
std::vector<Strategy> standard_strategies(const WorkloadOptions& options);
// One of them by name; nullopt for an unknown name.
std::optional<Strategy> strategy_named(const std::string& name, const WorkloadOptions& options);

struct RunOptions {
  double drain_hours = 48;      // after the arrivals end, the queue may drain this long
  queue::Millis tick = 60'000;  // how often time passes for the driver
  int crash_every = 0;          // >0: a crash and restart of the driver every N events
  // Record the expected landing the status page would show each PR when it is queued, and
  // count how far off it was (counters landed_median_min_eta_*). Costly for adaptive (a
  // forecast per approval), so only sim_bench stats asks for it.
  bool measure_eta = false;
  // Called after each applied event with the PRs decided (landed or ejected) and the events so
  // far (sim_bench's progress).
  std::function<void(int decided, long events)> progress;
};

struct RunResult {
  std::string strategy;
  int prs = 0;
  int landed = 0;
  int ejected = 0;                       // failed out of the queue (as the culprit or not)
  int innocent = 0;                      // ejected although good and passing on master alone
  int unfinished = 0;                    // still queued when the run stopped
  std::vector<double> ttm_minutes;       // landed PRs: landing minus approval
  std::vector<double> censored_minutes;  // unfinished PRs: the stop minus approval
  long builds_started = 0;
  double active_hours = 0;              // from the first approval to the last landing
  int escaped = 0;                      // landings of a master that was broken (must be 0)
  std::vector<std::string> violations;  // invariants broken (must be empty)
  long events = 0;                      // applied to the driver
  int restarts = 0;
  // What happened inside, for finding out why a strategy does what it does: builds by how
  // they ended, failures by cause and by kind of candidate, runner minutes, probes, the backlog,
  // and where the landed PRs' time went (sim_bench stats).
  std::map<std::string, double> counters;
};

RunResult run(const Workload& workload, const Strategy& strategy, const RunOptions& options = {});

}  // namespace dmz::sim

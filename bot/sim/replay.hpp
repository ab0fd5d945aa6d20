// What-if replay: a repository's own recorded history (the store's event log and outcomes)
// turned into a workload: its approvals (times, authors, changed paths, priorities), which
// PRs failed as the culprit, its observed build durations and flake rate, and its PRs' own
// CI before the queue. Each approval is an arrival (a PR fixed and approved again arrives
// again); a build's verdict is the newest state of each of its checks (every required
// context, as far as the log says), failed if one failed. The log is read in pages. `dmzbot
// simulate --replay DATA_DIR --repo owner/name` runs it under each strategy, so a team sees what
// another strategy or setting would have done. Threading: load_replay reads the store on the
// calling thread; a Replay is immutable.
#pragma once

#include <string>
#include <vector>

#include "base/status.hpp"
#include "bot/sim/workload.hpp"
#include "bot/store/store.hpp"

namespace dmz::sim {

struct Replay {
  WorkloadOptions options;        // fitted to the history (runners as given)
  std::vector<SimPr> prs;         // numbered 1..n in approval order
  std::vector<int> numbers;       // the recorded PR number of each
  std::vector<Millis> durations;  // observed build durations (ms)
  // Approvals left out: the PR was cancelled, closed, refused by the policy or conflicted
  // textually (nothing a strategy changes), not a good arrival that must land.
  int left_out = 0;
  Workload workload(std::uint64_t seed) const;  // the seed draws durations and flakes
};

// From a store (any implementation).
Result<Replay> replay_from(Store& store, const std::string& repo, const WorkloadOptions& base);
// From DATA_DIR/dmzbot.db.
Result<Replay> load_replay(const std::string& data_dir, const std::string& repo,
                           const WorkloadOptions& base);

}  // namespace dmz::sim

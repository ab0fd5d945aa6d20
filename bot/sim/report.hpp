// What `dmzbot simulate` prints: per strategy, the mean over seeds of each figure with the
// half-width of its 95% confidence interval (Student's t), as a table, JSON or an SVG of the
// time-to-merge distributions.
// Threading: pure functions.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "bot/sim/world.hpp"

namespace dmz::sim {

struct Stat {
  double mean = 0;
  double half = 0;  // the 95% interval is mean +- half
  int seeds = 0;    // the seeds it is defined for (0: none; printed "-" or null)
  bool defined() const { return seeds > 0; }
};

struct Summary {
  std::string strategy;
  int seeds = 0;
  Stat landed, ejected, innocent, unfinished;
  Stat p50, p95, p99;                    // time to merge, minutes
  Stat p50_ratio, p95_ratio, p99_ratio;  // to the oracle's, per seed
  Stat builds_per_landed, landings_per_hour, escaped;
  int violations = 0;
  std::vector<std::string> first_violations;
};

// The p-th percentile (0..100) of `values` (linear interpolation); 0 for none.
double percentile(std::vector<double> values, double p);
Stat stat(const std::vector<double>& samples);

// `runs[i]` and `oracle[i]` are the same seed. Percentiles count unfinished PRs at the time
// the run stopped (a lower bound for them). A seed is left out of a figure it does not define
// (a percentile of no PR, a ratio to an oracle that landed nothing, builds per landed PR when
// nothing landed), rather than counted as 0.
Summary summarize(const std::string& strategy, const std::vector<RunResult>& runs,
                  const std::vector<RunResult>& oracle);

std::string table(const std::vector<Summary>& summaries);
nlohmann::json to_json(const std::vector<Summary>& summaries);
// Empirical distributions (CDFs) of time to merge, all seeds pooled, one line per strategy.
std::string svg(const std::vector<std::pair<std::string, std::vector<double>>>& samples);

}  // namespace dmz::sim

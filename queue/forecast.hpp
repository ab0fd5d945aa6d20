// When each PR in the train or waiting for it is expected to land, by forward simulation: the
// engine itself plays the repository's state on from `now`, with every build taking the
// observed build duration and each PR failing with its risk (failure_risk), a few times over.
// What the strategy would do (probes, batches, bisections, rebuilds behind a failure) is in the
// estimate because the strategy itself makes it.
// Threading: a pure function of its arguments.
#pragma once

#include <cstdint>
#include <map>

#include "queue/model.hpp"

namespace dmz::queue {

struct ForecastOptions {
  int runs = 5;                       // independent draws of which PRs fail
  std::uint64_t seed = 1;             // the same state and seed give the same forecast
  Millis horizon = 7 * 86'400'000LL;  // nothing is forecast further ahead than this
};

// For each PR that landed in most of the runs: the median of its landing times. PRs that do
// not (likely to be ejected), and every PR when no build duration has been observed yet,
// get no estimate.
std::map<int, Millis> forecast_landings(const RepoState& state, const Settings& settings,
                                        Millis now, const ForecastOptions& options = {});

}  // namespace dmz::queue

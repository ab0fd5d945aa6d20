// When the train's candidates and the waiting PRs are expected to land, from the pace of the
// queue: how long a candidate takes from its push to dmz to its landing, how many candidates
// build at once and how many PRs share one. pace_of() derives it from the active strategy
// (its window, batch size) and what the engine observed (build durations, failure rate);
// pace_from_observed() from landed durations and the settings alone.
// Threading: pure functions.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <vector>

#include "queue/model.hpp"

namespace dmz::queue {

struct Pace {
  Millis per_candidate = 0;   // from a candidate's push to dmz until it lands
  std::size_t parallel = 1;   // candidates in flight at once (the train's length)
  std::size_t per_batch = 1;  // PRs merged into one candidate
};

// The median of `samples` (the lower middle for an even count); nullopt when there is none.
std::optional<Millis> median(std::vector<Millis> samples);

// A pace from the durations of candidates that landed (newest last; the newest `window` count)
// and the repository's settings; nullopt before any candidate landed.
std::optional<Pace> pace_from_observed(const std::vector<Millis>& landed_durations,
                                       const Settings& settings, std::size_t window = 10);

// The pace of the repository's strategy as it is now: candidates in flight (serial and batch:
// max_train; train and adaptive: the current window, cut to the run of PRs a chain lands
// between two failures at the observed failure rate), PRs per candidate (batch: max_batch;
// adaptive: what its failure rate allows for the PRs waiting), and a candidate's time (the
// median of the newest landed durations, else the observed build duration), stretched by the
// rebuilds a failure costs a serial queue. nullopt before anything was observed.
std::optional<Pace> pace_of(const RepoState& state, const Settings& settings,
                            const std::vector<Millis>& landed_durations, std::size_t window = 10);

// The expected landing time of each PR in the train or waiting in `waiting` (queue order):
// a candidate lands `per_candidate` after its push (never before the one ahead of it, never
// before `now`); a waiting PR takes the first free place once a candidate ahead lands, in
// groups of `per_batch`. PRs held behind an undecided candidate go first, none before its
// holder lands. PRs in none of these get no estimate.
std::map<int, Millis> estimate_landings(const RepoState& state, const std::vector<int>& waiting,
                                        const Pace& pace, Millis now);

// What the status page shows: the expected landing of each PR in the train or waiting. For
// `adaptive`, a forecast (queue/forecast.hpp), because the strategy probes, batches and rebuilds
// in ways the formula of estimate_landings does not follow (in the simulator's main workload
// the formula's estimates were 83 minutes early at the median, the forecast's 42); for the
// others the formula at pace_of; for adaptive past kMaxForecastPrs, the formula plus a build for
// each PR not in a chain yet (its probe). Empty before anything was observed.
// Every page view waits for it (bot/http/eta_memo.hpp shares one among the viewers of a state),
// so the forecast's cost is bounded: in the simulator it took 13 ms on average with 30 to 40
// PRs in the hot state, 66 ms with 60 to 80.
constexpr std::size_t kMaxForecastPrs = 50;
std::map<int, Millis> expected_landings(const RepoState& state, const Settings& settings,
                                        const std::vector<Millis>& landed_durations, Millis now);

}  // namespace dmz::queue

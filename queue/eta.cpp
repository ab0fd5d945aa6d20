#include "queue/eta.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <queue>
#include <set>

#include "queue/engine.hpp"
#include "queue/forecast.hpp"

namespace dmz::queue {

std::optional<Millis> median(std::vector<Millis> samples) {
  if (samples.empty()) return std::nullopt;
  auto mid = samples.begin() + static_cast<std::ptrdiff_t>((samples.size() - 1) / 2);
  std::nth_element(samples.begin(), mid, samples.end());
  return *mid;
}

std::optional<Pace> pace_from_observed(const std::vector<Millis>& landed_durations,
                                       const Settings& settings, std::size_t window) {
  std::vector<Millis> recent;
  const std::size_t skip = landed_durations.size() > window ? landed_durations.size() - window : 0;
  for (std::size_t i = skip; i < landed_durations.size(); ++i)
    if (landed_durations[i] >= 0) recent.push_back(landed_durations[i]);
  auto m = median(std::move(recent));
  if (!m) return std::nullopt;
  return Pace{*m, std::max<std::size_t>(1, settings.max_train),
              std::max<std::size_t>(1, settings.max_batch)};
}

std::optional<Pace> pace_of(const RepoState& s, const Settings& cfg,
                            const std::vector<Millis>& landed_durations, std::size_t window) {
  std::optional<Pace> pace = pace_from_observed(landed_durations, cfg, window);
  if (!pace) {
    if (s.observed.build_ms <= 0) return std::nullopt;
    pace = Pace{s.observed.build_ms, 1, 1};
  }
  // The engine trusts its failure rate after 8 verdicts (as the adaptive strategy does).
  const double f =
      s.observed.builds >= 8 ? std::clamp(s.observed.fail_permille / 1000.0, 0.0, 0.9) : 0.0;
  const std::size_t waiting = queue_order(s).size();
  const std::size_t in_flight = window_of(s, cfg);
  switch (cfg.strategy) {
    case Strategy::Serial:
    case Strategy::Batch: {
      pace->parallel = in_flight;
      pace->per_batch = std::max<std::size_t>(1, cfg.max_batch);
      // A candidate of b PRs fails with 1 - (1-f)^b and is built again (without its culprit,
      // or bisected): on average 1 / (1-f)^b builds before it lands.
      const double passes = std::pow(1 - f, static_cast<double>(pace->per_batch));
      pace->per_candidate =
          static_cast<Millis>(static_cast<double>(pace->per_candidate) / std::max(passes, 0.1));
      break;
    }
    case Strategy::Train:
    case Strategy::Adaptive: {
      // A chain lands the run of passing candidates before its first failure, (1-f)/f on
      // average; what was behind the failure is built again.
      const double run = f > 0 ? (1 - f) / f : static_cast<double>(in_flight);
      pace->parallel = std::clamp<std::size_t>(static_cast<std::size_t>(std::lround(run)), 1,
                                               std::max<std::size_t>(1, in_flight));
      pace->per_batch = batch_size(s, cfg, waiting, in_flight);
      break;
    }
  }
  return pace;
}

namespace {

// A PR to place in the train once a place is free, not before `not_before`.
struct Waiting {
  int number = 0;
  Millis not_before = 0;
};

// The PRs held behind an undecided candidate (Queued with held_by: the PRs behind a failure)
// are built again once it is decided, ahead of the queue: after the candidates that hold them
// (in train order), each holder's in queued_at order, none before its holder lands.
std::vector<Waiting> held_behind(const RepoState& state, const std::map<CandidateId, Millis>& lands,
                                 Millis now) {
  std::vector<std::pair<std::size_t, const PullRequest*>> held;  // (holder's place, PR)
  for (const auto& [n, pr] : state.prs) {
    if (pr.status != PrStatus::Queued || !pr.held_by) continue;
    std::size_t place = state.train.size();  // a holder gone: after the train
    for (std::size_t i = 0; i < state.train.size(); ++i)
      if (state.train[i].id == *pr.held_by) place = i;
    held.emplace_back(place, &pr);
  }
  std::stable_sort(held.begin(), held.end(), [](const auto& a, const auto& b) {
    if (a.first != b.first) return a.first < b.first;
    return a.second->queued_at < b.second->queued_at;
  });
  std::vector<Waiting> out;
  for (const auto& [place, pr] : held) {
    auto holder = lands.find(*pr->held_by);
    out.push_back({pr->number, holder == lands.end() ? now : holder->second});
  }
  return out;
}

}  // namespace

std::map<int, Millis> estimate_landings(const RepoState& state, const std::vector<int>& waiting,
                                        const Pace& pace, Millis now) {
  std::map<int, Millis> out;
  const std::size_t parallel = std::max<std::size_t>(1, pace.parallel);
  const std::size_t per_batch = std::max<std::size_t>(1, pace.per_batch);
  // When each place in the train becomes free (earliest first).
  std::priority_queue<Millis, std::vector<Millis>, std::greater<>> free_at;
  std::map<CandidateId, Millis> lands_at;
  Millis last_landing = now;  // candidates land in train order
  for (const auto& c : state.train) {
    const Millis start = c.pushed_at > 0 ? c.pushed_at : (c.created_at > 0 ? c.created_at : now);
    const Millis lands = std::max({start + pace.per_candidate, last_landing, now});
    last_landing = lands;
    for (int n : c.prs) out[n] = lands;
    lands_at[c.id] = lands;
    free_at.push(lands);
  }
  while (free_at.size() < parallel) free_at.push(now);
  std::vector<Waiting> line = held_behind(state, lands_at, now);
  for (int n : waiting) line.push_back({n, now});
  for (std::size_t i = 0; i < line.size(); i += per_batch) {
    const std::size_t end = std::min(line.size(), i + per_batch);
    Millis start = free_at.top();
    free_at.pop();
    for (std::size_t j = i; j < end; ++j) start = std::max(start, line[j].not_before);
    const Millis lands = std::max(start + pace.per_candidate, last_landing);
    last_landing = lands;
    for (std::size_t j = i; j < end; ++j) out[line[j].number] = lands;
    free_at.push(lands);
  }
  return out;
}

std::map<int, Millis> expected_landings(const RepoState& state, const Settings& settings,
                                        const std::vector<Millis>& landed_durations, Millis now) {
  if (settings.strategy == Strategy::Adaptive && state.prs.size() <= kMaxForecastPrs) {
    ForecastOptions options;
    options.runs = 3;
    return forecast_landings(state, settings, now, options);
  }
  auto pace = pace_of(state, settings, landed_durations);
  if (!pace) return {};
  auto out = estimate_landings(state, queue_order(state), *pace, now);
  if (settings.strategy == Strategy::Adaptive) {
    // Too many PRs to forecast: the formula, plus a build for each PR that is not in the chain
    // yet (its probe comes first; in the simulator's main workload this moved the estimates
    // from 83 to 62 minutes early at the median).
    std::set<int> in_chain;
    for (const auto& k : state.train)
      if (!k.probe) in_chain.insert(k.prs.begin(), k.prs.end());
    for (auto& [n, at] : out)
      if (!in_chain.count(n)) at += pace->per_candidate;
  }
  return out;
}

}  // namespace dmz::queue

#include "queue/eta.hpp"

#include <algorithm>
#include <functional>
#include <queue>

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

std::map<int, Millis> estimate_landings(const RepoState& state, const std::vector<int>& waiting,
                                        const Pace& pace, Millis now) {
  std::map<int, Millis> out;
  const std::size_t parallel = std::max<std::size_t>(1, pace.parallel);
  const std::size_t per_batch = std::max<std::size_t>(1, pace.per_batch);
  // When each place in the train becomes free (earliest first).
  std::priority_queue<Millis, std::vector<Millis>, std::greater<>> free_at;
  Millis last_landing = now;  // candidates land in train order
  for (const auto& c : state.train) {
    const Millis start = c.pushed_at > 0 ? c.pushed_at : (c.created_at > 0 ? c.created_at : now);
    const Millis lands = std::max({start + pace.per_candidate, last_landing, now});
    last_landing = lands;
    for (int n : c.prs) out[n] = lands;
    free_at.push(lands);
  }
  while (free_at.size() < parallel) free_at.push(now);
  for (std::size_t i = 0; i < waiting.size(); i += per_batch) {
    const Millis start = free_at.top();
    free_at.pop();
    const Millis lands = std::max(start + pace.per_candidate, last_landing);
    last_landing = lands;
    for (std::size_t j = i; j < std::min(waiting.size(), i + per_batch); ++j)
      out[waiting[j]] = lands;
    free_at.push(lands);
  }
  return out;
}

}  // namespace dmz::queue

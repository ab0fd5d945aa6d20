#include "bot/sim/oracle.hpp"

#include <algorithm>
#include <limits>

namespace dmz::sim {

RunResult oracle(const Workload& w) {
  RunResult r;
  r.strategy = "oracle";
  const auto& prs = w.prs();
  r.prs = static_cast<int>(prs.size());
  constexpr Millis kNever = std::numeric_limits<Millis>::max();
  const std::size_t n = prs.size();
  std::vector<bool> included(n, false);
  std::vector<Millis> finish(n, kNever);  // of the build started at PR i's approval
  for (std::size_t y = 0; y < n; ++y) {
    const SimPr& p = prs[y];
    bool ok = !p.bad;
    // A conflict with an earlier PR x matters unless x landed before y was written: x lands
    // at the first good build started at or after its approval (and before y's). Walking back
    // from y keeps that minimum as it goes; once it is before y's approval every earlier PR
    // had landed too, so the walk covers only the PRs in flight (not the whole history).
    Millis landed = kNever;
    for (std::size_t x = y; x-- > 0 && ok;) {
      landed = std::min(landed, finish[x]);
      if (landed <= p.approved_at) break;
      if (included[x] && w.conflict(prs[x].number, p.number)) ok = false;
    }
    if (!ok) {
      ++r.ejected;
      continue;
    }
    included[y] = true;
    ++r.builds_started;
    if (!w.flaky(p.number, 0)) finish[y] = p.approved_at + w.build_duration(p.number, 0);
  }
  Millis best = kNever, last = 0;
  std::vector<Millis> landed(n, kNever);
  for (std::size_t i = n; i-- > 0;) {
    best = std::min(best, finish[i]);
    if (included[i]) landed[i] = best;
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (!included[i]) continue;
    if (landed[i] == kNever) {  // only flaky builds after it: it would wait for a rebuild
      ++r.unfinished;
      continue;
    }
    ++r.landed;
    r.ttm_minutes.push_back(static_cast<double>(landed[i] - prs[i].approved_at) / kMinute);
    last = std::max(last, landed[i]);
  }
  r.active_hours =
      n ? static_cast<double>(std::max<Millis>(last - prs.front().approved_at, 0)) / kHour : 0;
  return r;
}

}  // namespace dmz::sim

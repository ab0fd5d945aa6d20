#include "queue/forecast.hpp"

#include <algorithm>
#include <queue>
#include <random>
#include <set>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "queue/engine.hpp"

namespace dmz::queue {
namespace {

// Whether `a` passed a probe built with `b`.
bool tested_together(const PullRequest& a, const PullRequest& b) {
  return a.probed &&
         std::find(a.probed_with.begin(), a.probed_with.end(), b.number) != a.probed_with.end();
}

// One forward run: a world that answers the engine's actions at once (policy, merges, pushes
// pass) except builds, which take `build_ms` and fail when they hold a PR drawn bad or a pair
// of PRs drawn to conflict.
class Run {
 public:
  Run(RepoState state, const Settings& settings, Millis now, Millis horizon, std::mt19937_64& rng)
      : s_(std::move(state)), cfg_(settings), now_(now), end_(now + horizon) {
    std::uniform_real_distribution<double> u(0, 1);
    for (const auto& [n, pr] : s_.prs) {
      if (pr.status == PrStatus::Merged) continue;
      if (u(rng) < failure_risk(s_, pr)) bad_.insert(n);
      if (in_queue(pr.status)) open_.insert(n);
    }
    // Pairs that change a common path conflict at the rate observed, unless a passed probe
    // built them together.
    if (const auto pair_risk = conflict_risk(s_); pair_risk && *pair_risk > 0)
      for (auto a = open_.begin(); a != open_.end(); ++a)
        for (auto b = std::next(a); b != open_.end(); ++b) {
          const PullRequest& pa = s_.prs.at(*a);
          const PullRequest& pb = s_.prs.at(*b);
          if (tested_together(pa, pb) || tested_together(pb, pa) || !may_conflict(pa, pb)) continue;
          if (u(rng) < *pair_risk) conflicts_.emplace_back(*a, *b);
        }
    // What the candidates already pushed hold, and when their builds started.
    for (const auto& k : s_.train) {
      if (k.sha.empty()) continue;
      auto held = content(k.base);
      held.insert(held.end(), k.prs.begin(), k.prs.end());
      content_[k.sha] = std::move(held);
      if (k.pushed_at > 0) started_[k.sha] = k.pushed_at;
    }
  }

  std::map<int, Millis> landings() {
    step(Tick{.at = now_});
    for (const auto& a : resume(s_, cfg_))
      if (!waits_for_backoff(a)) act(a);
    // After a transient error nothing is scheduled (and a failed push is not made again)
    // before retry_after: the engine waits for a tick then, so the forecast sends one.
    if (s_.retry_after > now_) later(s_.retry_after, Tick{.at = s_.retry_after});
    // Bounded: a strategy that could go on forever (it does not) would still stop here.
    const std::size_t budget = 50 * (s_.prs.size() + s_.train.size()) + 100;
    for (std::size_t events = 0; !pending_.empty() && events < budget; ++events) {
      auto next = pending_.top();
      pending_.pop();
      if (next.at > end_) break;
      now_ = next.at;
      if (next.build) {
        auto it = building_.find(next.sha);
        if (it == building_.end()) continue;  // cancelled
        if (--it->second == 0) building_.erase(it);
      }
      step(next.event);
    }
    return landed_;
  }

 private:
  struct Pending {
    Millis at;
    std::uint64_t seq;
    Event event;
    bool build = false;  // a build's result: dropped if the build was cancelled
    Sha sha;
    bool operator>(const Pending& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };

  std::vector<int> content(const Sha& sha) const {
    auto it = content_.find(sha);
    return it == content_.end() ? std::vector<int>{} : it->second;  // master: all good
  }

  // A push of master that failed without an answer is made again by the tick at retry_after
  // (on(Tick)), not when the forecast resumes.
  bool waits_for_backoff(const Action& a) const {
    return std::holds_alternative<FastForwardMaster>(a) && s_.retry_after > now_;
  }

  void later(Millis at, Event e, bool build = false, Sha sha = {}) {
    pending_.push(Pending{at, ++seq_, std::move(e), build, std::move(sha)});
  }

  void step(const Event& e) {
    Outcome o = handle(s_, e, cfg_);
    if (o.rejected) return;
    for (const auto& a : o.actions) act(a);
    for (auto it = open_.begin(); it != open_.end();) {
      auto pr = s_.prs.find(*it);
      if (pr != s_.prs.end() && pr->second.status == PrStatus::Merged) {
        landed_[*it] = now_;
        it = open_.erase(it);
      } else {
        ++it;
      }
    }
  }

  void act(const Action& action) {
    std::visit(
        [&](const auto& a) {
          using A = std::decay_t<decltype(a)>;
          if constexpr (std::is_same_v<A, CheckPolicy>) {
            auto pr = s_.prs.find(a.number);
            std::vector<std::string> paths;
            if (pr != s_.prs.end()) paths = pr->second.paths;
            PolicyChecked verdict{a.number, a.sha, true, {}, now_, std::move(paths)};
            verdict.target = a.target;
            verdict.epoch = a.epoch;
            later(now_, std::move(verdict));
          } else if constexpr (std::is_same_v<A, BuildCandidate>) {
            const Sha sha = "forecast-" + std::to_string(++shas_);
            auto held = content(a.base);
            for (const auto& item : a.items) held.push_back(item.number);
            content_[sha] = std::move(held);
            later(now_, MergeDone{a.candidate, MergeOutcome::Merged, sha, 0, {}, "", now_});
            later(now_, CandidateChecked{a.candidate, sha, true, {}, now_});
          } else if constexpr (std::is_same_v<A, CheckCandidate>) {
            later(now_, CandidateChecked{a.candidate, a.sha, true, {}, now_});
          } else if constexpr (std::is_same_v<A, StartBuild>) {
            Millis start = now_;
            if (auto it = started_.find(a.sha); it != started_.end()) {
              start = it->second;  // building (or built again) since before the forecast
              started_.erase(it);
            }
            const auto held = content(a.sha);
            const std::set<int> in(held.begin(), held.end());
            const bool pass =
                std::none_of(held.begin(), held.end(), [&](int n) { return bad_.count(n); }) &&
                std::none_of(conflicts_.begin(), conflicts_.end(), [&](const auto& c) {
                  return in.count(c.first) && in.count(c.second);
                });
            int& results = building_[a.sha];
            for (const auto& context : cfg_.required_checks) {
              Check check{context, pass ? CheckState::Success : CheckState::Failure, "", "", 0};
              later(std::max(now_, start + s_.observed.build_ms), CheckReported{a.sha, check, 0},
                    true, a.sha);
              ++results;
              if (!pass) break;  // one failed check decides
            }
          } else if constexpr (std::is_same_v<A, CancelBuild>) {
            building_.erase(a.sha);
          } else if constexpr (std::is_same_v<A, FastForwardMaster>) {
            later(now_, MasterPushed{a.candidate, true, "", "", now_});
          }
          // ResetDmz, Notify, PruneCandidates: nothing comes back.
        },
        action);
  }

  RepoState s_;
  const Settings& cfg_;
  Millis now_, end_;
  std::set<int> bad_, open_;
  std::vector<std::pair<int, int>> conflicts_;  // pairs drawn to conflict
  std::map<Sha, std::vector<int>> content_;     // the PRs a candidate holds beyond master
  std::map<Sha, Millis> started_;               // builds already running when the forecast began
  std::map<Sha, int> building_;                 // builds running: their results still to come
  std::priority_queue<Pending, std::vector<Pending>, std::greater<>> pending_;
  std::uint64_t seq_ = 0, shas_ = 0;
  std::map<int, Millis> landed_;
};

}  // namespace

std::map<int, Millis> forecast_landings(const RepoState& state, const Settings& settings,
                                        Millis now, const ForecastOptions& options) {
  std::map<int, Millis> out;
  if (state.observed.build_ms <= 0 || options.runs <= 0) return out;
  std::mt19937_64 rng(options.seed);
  std::map<int, std::vector<Millis>> times;
  for (int r = 0; r < options.runs; ++r)
    for (const auto& [n, at] : Run(state, settings, now, options.horizon, rng).landings())
      times[n].push_back(at);
  for (auto& [n, v] : times) {
    if (2 * static_cast<int>(v.size()) <= options.runs) continue;  // ejected in most runs
    auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
    std::nth_element(v.begin(), mid, v.end());
    out[n] = *mid;
  }
  return out;
}

}  // namespace dmz::queue

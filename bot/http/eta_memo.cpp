#include "bot/http/eta_memo.hpp"

#include "queue/eta.hpp"

namespace dmz {

std::map<int, queue::Millis> EtaMemo::expected_landings(const queue::RepoState& state,
                                                        const queue::Settings& settings,
                                                        const std::vector<queue::Millis>& landed,
                                                        queue::Millis now) {
  // Held while computing: viewers that ask together wait for one answer, not compute it each.
  std::lock_guard lock(mu_);
  if (auto it = newest_.find(state.repo); it != newest_.end()) {
    const Entry& e = it->second;
    const queue::Millis age = now >= e.at ? now - e.at : e.at - now;
    if (age < kReuse && e.state == state && e.settings == settings && e.landed == landed)
      return e.etas;
  }
  ++computed_;
  Entry& e = newest_[state.repo];
  e = Entry{state, settings, landed, now, queue::expected_landings(state, settings, landed, now)};
  return e.etas;
}

std::size_t EtaMemo::computed() const {
  std::lock_guard lock(mu_);
  return computed_;
}

}  // namespace dmz

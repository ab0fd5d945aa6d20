// Expected landings remembered per repository by what they were computed from: every viewer
// of a live page asks again after each change, and adaptive's forecast costs tens of ms.
// Threading: any thread; one computation at a time.
#pragma once

#include <cstddef>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "queue/model.hpp"

namespace dmz {

class EtaMemo {
 public:
  // How long an answer stands for the same inputs: the clock moves the forecast of a build
  // that runs late, so it is not kept for ever.
  static constexpr queue::Millis kReuse = 10'000;

  // queue::expected_landings(state, settings, landed, now), or the answer computed from an
  // equal state, settings and landed durations less than kReuse before or after `now`.
  std::map<int, queue::Millis> expected_landings(const queue::RepoState& state,
                                                 const queue::Settings& settings,
                                                 const std::vector<queue::Millis>& landed,
                                                 queue::Millis now);
  std::size_t computed() const;  // how many answers were computed rather than remembered

 private:
  struct Entry {
    queue::RepoState state;
    queue::Settings settings;
    std::vector<queue::Millis> landed;
    queue::Millis at = 0;
    std::map<int, queue::Millis> etas;
  };
  mutable std::mutex mu_;
  std::map<std::string, Entry> newest_;  // by repository: only its newest answer
  std::size_t computed_ = 0;
};

}  // namespace dmz

#include "base/clock.hpp"

#include <algorithm>
#include <chrono>

namespace dmz {
namespace {

class WallClock final : public Clock {
 public:
  Millis now() const override {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  }
};

}  // namespace

Clock& wall_clock() {
  static WallClock clock;
  return clock;
}

Millis backoff(Millis base, int failures, Millis cap) {
  Millis wait = base;
  for (int i = 1; i < failures && wait < cap; ++i) wait *= 2;
  return std::min(wait, cap);
}

}  // namespace dmz

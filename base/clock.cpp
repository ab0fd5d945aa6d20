#include "base/clock.hpp"

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

}  // namespace dmz

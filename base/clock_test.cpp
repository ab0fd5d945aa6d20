#include "base/clock.hpp"

#include <doctest/doctest.h>

namespace dmz {
namespace {

TEST_CASE("the wall clock is real time; a manual clock moves only when told") {
  Millis wall = wall_clock().now();
  CHECK(wall > 1'700'000'000'000);  // after November 2023
  CHECK(wall_clock().now() >= wall);
  ManualClock clock(1000);
  CHECK(clock.now() == 1000);
  clock.advance(500);
  CHECK(clock.now() == 1500);
  clock.set(42);
  CHECK(clock.now() == 42);
}

}  // namespace
}  // namespace dmz

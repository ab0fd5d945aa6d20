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

TEST_CASE("backoff doubles from its base after each failure, up to its cap") {
  CHECK(backoff(2'000, 1, 300'000) == 2'000);
  CHECK(backoff(2'000, 2, 300'000) == 4'000);
  CHECK(backoff(2'000, 4, 300'000) == 16'000);
  CHECK(backoff(2'000, 20, 300'000) == 300'000);
  CHECK(backoff(2'000, 0, 300'000) == 2'000);  // before any failure: the base
}

}  // namespace
}  // namespace dmz

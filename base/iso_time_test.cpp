#include "base/iso_time.hpp"

#include <doctest/doctest.h>

#include <limits>

namespace dmz {
namespace {

TEST_CASE("iso8601_utc writes UTC seconds, and a time it cannot represent as its number") {
  CHECK(iso8601_utc(0) == "1970-01-01T00:00:00Z");
  CHECK(iso8601_utc(1'700'000'000) == "2023-11-14T22:13:20Z");
  CHECK(iso8601_utc(-1) == "1969-12-31T23:59:59Z");
  const auto huge = std::numeric_limits<std::int64_t>::max();
  CHECK(iso8601_utc(huge) == std::to_string(huge));
}

}  // namespace
}  // namespace dmz

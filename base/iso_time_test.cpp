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

TEST_CASE("parse_iso8601_ms reads GitHub's timestamps, and refuses anything else") {
  CHECK(parse_iso8601_ms("2011-04-14T16:00:49Z") == 1302796849000);
  CHECK(parse_iso8601_ms("2011-04-14T16:00:49.123Z") == 1302796849000);
  CHECK_FALSE(parse_iso8601_ms("yesterday"));
  CHECK_FALSE(parse_iso8601_ms("2011-04-14T16:00:49"));
}

TEST_CASE("parse_http_date reads an HTTP Date header, and refuses anything else") {
  CHECK(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777000);
  CHECK(parse_http_date("Fri, 27 Nov 2026 19:10:11 GMT") ==
        parse_iso8601_ms("2026-11-27T19:10:11Z"));
  for (const char* bad : {"", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
                          "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 06 Nov 1994 08:49:37 GMT x",
                          "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 06 Nov 1994 25:49:37 GMT",
                          "Sun, 06 Nov 1994 08:49 GMT"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_http_date(bad));
  }
}

}  // namespace
}  // namespace dmz

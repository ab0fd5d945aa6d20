// ISO 8601 UTC timestamps ("2026-11-26T12:00:00Z"), as GitHub's API, SSH signatures and the
// status page write them.
// Threading: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace dmz {

// `unix_seconds` as "YYYY-MM-DDTHH:MM:SSZ"; a time gmtime cannot represent comes back as
// its decimal number, so a hostile value still prints as something true.
std::string iso8601_utc(std::int64_t unix_seconds);

// "2011-04-14T16:00:49Z" (fractions ignored) as milliseconds since the epoch; nullopt if
// malformed.
std::optional<std::int64_t> parse_iso8601_ms(const std::string& iso8601);

// An HTTP Date header in the IMF-fixdate form servers send (RFC 9110 5.6.7: "Sun, 06 Nov 1994
// 08:49:37 GMT") as milliseconds since the epoch; nullopt for anything else (the obsolete
// forms included).
std::optional<std::int64_t> parse_http_date(const std::string& date);

}  // namespace dmz

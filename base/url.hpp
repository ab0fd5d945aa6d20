// Absolute http(s) URLs as dmzbot's HTTP client and its configuration need them: scheme, host,
// port and the rest. Hand-written (a few lines) because none of the Debian URL libraries is
// already a dependency, and only this strict subset is accepted: no user information, no
// fragment, no whitespace or control characters.
// Threading: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.hpp"

namespace dmz {

struct Url {
  std::string scheme;  // "http" or "https"
  std::string host;    // a name, an IPv4 address or an IPv6 address without brackets
  std::uint16_t port = 0;
  std::string path;  // "/..." with the query, "/" at least

  // "host" or "host:port" (port left out when it is the scheme's default), as the Host header
  // wants it; IPv6 in brackets.
  std::string authority() const;
  // scheme://authority (no path): where relative links of this URL resolve.
  std::string origin() const;
};

// invalid with a reason for anything else than http(s)://host[:port][/path][?query].
Result<Url> parse_url(std::string_view text);

}  // namespace dmz

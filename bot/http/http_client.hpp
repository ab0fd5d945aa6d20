// A small synchronous HTTP/1.1 client (Beast) with a deadline, for the demo, the CLI and tests.
// Threading: each call is independent; safe from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "base/status.hpp"

namespace dmz {

struct ClientResponse {
  int status = 0;
  std::string content_type;
  std::string body;
};

Result<ClientResponse> http_request(
    const std::string& host, std::uint16_t port, const std::string& method,
    const std::string& target, const std::string& body = {},
    const std::vector<std::pair<std::string, std::string>>& headers = {},
    std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace dmz

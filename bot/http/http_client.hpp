// Small synchronous HTTP/1.1 clients (Beast): http_request() for plain HTTP with a deadline (the
// demo, the CLI and tests), and BeastHttpClient, base/http_client.hpp's port over http:// and
// https:// (OpenSSL: the server's certificate verified against the system's CAs and an extra
// CA file, its name checked, SNI), with one deadline per call, bounded answers, and stop() for
// shutdown.
// Threading: each call is independent; safe from any thread, stop() too.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/http_client.hpp"
#include "base/status.hpp"

namespace dmz {

struct ClientResponse {
  int status = 0;
  std::string content_type;
  std::string retry_after;  // the Retry-After header ("" if none)
  std::string body;
};

Result<ClientResponse> http_request(
    const std::string& host, std::uint16_t port, const std::string& method,
    const std::string& target, const std::string& body = {},
    const std::vector<std::pair<std::string, std::string>>& headers = {},
    std::chrono::milliseconds timeout = std::chrono::seconds(10));

struct HttpClientOptions {
  std::filesystem::path ca_file;  // an extra CA (PEM) trusted beside the system's
  bool system_cas = true;         // the system's CA store (tests turn it off)
  // The whole call (lookup, connect, TLS handshake, write, read) ends within this: a server
  // slow at every step does not get the full timeout for each.
  std::chrono::milliseconds timeout{30'000};
  std::size_t max_body = 16u << 20;  // larger answers are refused (unavailable)
  // Called on the lookup's thread before the system resolver: tests make a lookup hang.
  std::function<void()> before_lookup;
};

class BeastHttpClient final : public HttpClient {
 public:
  // invalid if the CA file cannot be loaded.
  static Result<std::unique_ptr<BeastHttpClient>> create(HttpClientOptions options);
  ~BeastHttpClient() override;
  Result<HttpReply> send(const HttpCall& call) override;
  // For shutdown: the calls under way end at once (their sockets closed, a lookup no longer
  // waited for), and later calls fail at once; both unavailable, "...: stopping". For good.
  void stop();

 private:
  struct Impl;
  explicit BeastHttpClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dmz

// The port through which code outside bot/http makes HTTP requests (the GitHub REST client):
// plain values, no sockets, so that forges/ never includes Beast or Asio. bot/http's
// BeastHttpClient implements it (TLS with verified certificates, deadlines, bounded bodies);
// tests use recording fakes.
// Threading: implementations are safe to call from several threads at once.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "base/status.hpp"

namespace dmz {

struct HttpCall {
  std::string method = "GET";
  std::string url;  // absolute: https://api.github.com/repos/o/r/pulls?state=open
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

struct HttpReply {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lowercased
  std::string body;
  std::string header(const std::string& lowercase_name) const {
    auto it = headers.find(lowercase_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

class HttpClient {
 public:
  virtual ~HttpClient() = default;
  // Any answer the server gave (whatever its status) is a reply. Errors: invalid for a URL it
  // cannot use; unavailable when the server could not be reached or did not answer in time,
  // TLS failed (an unverifiable certificate included) or the answer was too large.
  virtual Result<HttpReply> send(const HttpCall& call) = 0;
};

}  // namespace dmz

// Plain HTTP request/response values passed between the Beast server and the handlers, so that
// request handling never sees a socket and never includes Beast.
// Threading: values.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace dmz {

struct HttpRequest {
  std::string method;                          // "GET", "POST", ...
  std::string target;                          // path and query, e.g. "/api/v1/repos/o/n/queue?x=1"
  std::map<std::string, std::string> headers;  // names lowercased
  std::string body;

  std::string header(const std::string& lowercase_name) const {
    auto it = headers.find(lowercase_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// A body written piece by piece as it becomes available (Server-Sent Events). After the head,
// the server asks for one piece at a time; while none comes it writes `keepalive_text` every
// `keepalive`, and it ends the body after `max_duration` (a client reconnects). The
// connection closes after the body.
// Threading: next() and close() may be called from any thread.
class BodyStream {
 public:
  virtual ~BodyStream() = default;
  // Asks for the next piece: `deliver` is called once, from any thread, with it, or with
  // nullopt when the body ends. Not called again before `deliver` ran.
  virtual void next(std::function<void(std::optional<std::string>)> deliver) = 0;
  // The connection is closing (the body ended, the client left, the server stops): release
  // what the stream holds; a pending `deliver` may be called or dropped.
  virtual void close() = 0;

  std::chrono::milliseconds keepalive{15'000};
  std::string keepalive_text = ": keep-alive\n\n";
  std::chrono::milliseconds max_duration{600'000};
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;  // unused when `stream` is set
  std::vector<std::pair<std::string, std::string>> headers;
  std::shared_ptr<BodyStream> stream;  // set: the body is streamed (HTTP/1.1 chunked)
};

// Called exactly once per request, from any thread.
using Respond = std::function<void(HttpResponse)>;
using Handler = std::function<void(HttpRequest, Respond)>;

// {"error": message} with `status`; the one shape of every 4xx/5xx answer.
HttpResponse json_error(int status, const std::string& message);

}  // namespace dmz

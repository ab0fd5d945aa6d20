#include "bot/http/http.hpp"

#include <nlohmann/json.hpp>

namespace dmz {

HttpResponse json_error(int status, const std::string& message) {
  std::string line = message;  // the contract is a one-line message
  for (char& c : line)
    if (c == '\n' || c == '\r') c = ' ';
  HttpResponse r;
  r.status = status;
  r.content_type = "application/json";
  // replace: a message may echo client bytes that are not valid UTF-8; dump must not throw.
  r.body = nlohmann::json{{"error", line}}.dump(-1, ' ', false,
                                                nlohmann::json::error_handler_t::replace);
  return r;
}

}  // namespace dmz

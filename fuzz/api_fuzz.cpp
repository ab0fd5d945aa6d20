// Fuzzes the HTTP API router (make_api) with whole requests, against the recording fake
// backend. Input: "METHOD TARGET\n", then "name: value\n" header lines, a blank line, the body.
// Beyond crashes it checks the API's promises: one answer per request, never a 5xx, every error
// a one-line {"error": "..."} JSON, and a refused request reaches no backend call.
// Kept thin on purpose: it depends only on make_api and FakeBackend's recordings.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "bot/http/api.hpp"
#include "bot/http/api_fake_backend.hpp"
#include "fuzz/fuzz_check.hpp"

namespace {

dmz::HttpRequest parse_request(std::string_view in) {
  dmz::HttpRequest req;
  auto line = [&in]() {
    auto nl = in.find('\n');
    std::string_view l = in.substr(0, nl);
    in.remove_prefix(nl == std::string_view::npos ? in.size() : nl + 1);
    return l;
  };
  std::string_view first = line();
  auto space = first.find(' ');
  req.method = std::string(first.substr(0, space));
  if (space != std::string_view::npos) req.target = std::string(first.substr(space + 1));
  for (std::string_view h = line(); !h.empty(); h = line()) {
    auto colon = h.find(':');
    if (colon == std::string_view::npos) continue;
    std::string name(h.substr(0, colon));
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string_view value = h.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    req.headers[name] = std::string(value);
  }
  req.body = std::string(in);
  return req;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dmz::test::FakeBackend backend;  // repos "o/n" (api token "tok", status token "st"), "o/notoken"
  backend.states["o/n"] = dmz::queue::RepoState{};
  auto api = dmz::make_api(backend);
  int answers = 0;
  dmz::HttpResponse response;
  api(parse_request({reinterpret_cast<const char*>(data), size}), [&](dmz::HttpResponse r) {
    ++answers;
    response = std::move(r);
  });
  FUZZ_CHECK(answers == 1, "the fake answers synchronously: exactly one response");
  FUZZ_CHECK(response.status >= 200 && response.status < 500, "a status other than 2xx-4xx");
  if (response.status >= 400 && response.content_type == "text/html; charset=utf-8") {
    // A status page's error is a page (for people), still without state change.
    FUZZ_CHECK(response.body.find("<h1>Error ") != std::string::npos,
               "an error page without a title");
    FUZZ_CHECK(backend.events.empty() && backend.registrations.empty(),
               "a refused request reached the backend");
  } else if (response.status >= 400) {
    FUZZ_CHECK(response.content_type == "application/json", "an error that is not JSON");
    auto body = nlohmann::json::parse(response.body, nullptr, /*allow_exceptions=*/false);
    FUZZ_CHECK(body.is_object() && body.contains("error") && body["error"].is_string(),
               "an error body that is not {\"error\": \"...\"}");
    FUZZ_CHECK(response.body.find('\n') == std::string::npos, "an error of more than one line");
    FUZZ_CHECK(backend.events.empty() && backend.registrations.empty(),
               "a refused request reached the backend");
  }
  return 0;
}

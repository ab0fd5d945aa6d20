// Fuzzes the GitHub webhook edge after the signature check (forges/github/webhook.hpp): a
// delivery's body through payload_of and parse_delivery, which anyone holding the webhook secret
// (or a compromised GitHub) can shape. Input: the X-GitHub-Event name on the first line, the
// body after it. Checks: a JSON body always reaches the parser, and a refusal is `invalid` or
// `not_found` with a message (never an internal failure).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "forges/github/webhook.hpp"
#include "fuzz/fuzz_check.hpp"

namespace gh = dmz::forges::github;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto newline = input.find('\n');
  if (newline == std::string_view::npos) return 0;
  dmz::forges::InboundRequest request;
  request.headers["content-type"] = "application/json";
  request.body = std::string(input.substr(newline + 1));
  auto payload = gh::payload_of(request);
  FUZZ_CHECK(payload.ok(), "a JSON body refused before it was parsed");
  gh::WebhookSettings settings;
  settings.repo = "Codertocat/Hello-World";  // the repository of GitHub's examples
  auto delivery = gh::parse_delivery(settings, input.substr(0, newline), "fuzz", *payload, 1000);
  if (!delivery.ok()) {
    FUZZ_CHECK(delivery.code() == dmz::Code::kInvalid || delivery.code() == dmz::Code::kNotFound,
               "a refusal that is neither invalid nor not_found");
    FUZZ_CHECK(!delivery.message().empty(), "a refusal without a message");
  }
  return 0;
}

// Fuzzes the GitHub webhook edge after the signature check (forges/github/webhook.hpp): a
// delivery's body through payload_of and parse_delivery, which anyone holding the webhook secret
// (or a compromised GitHub) can shape. Input: the X-GitHub-Event name on the first line, the
// body after it; a first line that starts with a digit takes it (and only it) as the choice of
// Content-Type from kContentTypes below, else the delivery is application/json (as the seeds).
// Checks: payload_of takes a JSON body (also without a Content-Type) as it is; takes a form body
// if and only if one of its &-separated fields starts with `payload=`, and then gives the first
// such field's value URL-decoded; refuses any other content type as invalid. A refusal of
// parse_delivery is `invalid` or `not_found` with a message (never an internal failure).
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.hpp"
#include "forges/github/webhook.hpp"
#include "fuzz/fuzz_check.hpp"

namespace gh = dmz::forges::github;

namespace {

enum class Kind { kJson, kForm, kOther };

struct ContentType {
  const char* header;  // nullptr: no Content-Type header at all
  Kind kind;
};

// Chosen by the input's first digit, '0' + index.
constexpr ContentType kContentTypes[] = {
    {"application/json", Kind::kJson},
    {"application/x-www-form-urlencoded", Kind::kForm},
    {"Application/X-WWW-Form-URLEncoded ; charset=utf-8", Kind::kForm},
    {"application/json; charset=utf-8", Kind::kJson},
    {nullptr, Kind::kJson},
    {"text/plain", Kind::kOther},
    {"application/jsonx", Kind::kOther},
};

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

// application/x-www-form-urlencoded decoding: '+' is a space, %XX a byte; a '%' without two hex
// digits after it stays as it is.
std::string form_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    int hi = -1, lo = -1;
    if (s[i] == '%' && i + 2 < s.size()) hi = hex_digit(s[i + 1]), lo = hex_digit(s[i + 2]);
    if (s[i] == '+') {
      out += ' ';
    } else if (hi >= 0 && lo >= 0) {
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  ContentType type = kContentTypes[0];
  if (!input.empty() && input.front() >= '0' && input.front() <= '9') {
    const std::size_t choice = static_cast<std::size_t>(input.front() - '0');
    if (choice >= std::size(kContentTypes)) return 0;
    type = kContentTypes[choice];
    input.remove_prefix(1);
  }
  const auto newline = input.find('\n');
  if (newline == std::string_view::npos) return 0;
  dmz::forges::InboundRequest request;
  if (type.header) request.headers["content-type"] = type.header;
  request.body = std::string(input.substr(newline + 1));
  const std::string_view body = request.body;
  auto payload = gh::payload_of(request);
  switch (type.kind) {
    case Kind::kJson:
      FUZZ_CHECK(payload.ok(), "a JSON body refused before it was parsed");
      FUZZ_CHECK(*payload == body, "a JSON body changed before it was parsed");
      break;
    case Kind::kForm: {
      // The first field named payload: at the start of the body or right after an '&'.
      std::size_t at = body.starts_with("payload=") ? 0 : body.find("&payload=");
      if (at == std::string_view::npos) {
        FUZZ_CHECK(!payload.ok(), "a form without a payload field taken");
        FUZZ_CHECK(payload.code() == dmz::Code::kInvalid, "a form refused, but not as invalid");
        return 0;
      }
      FUZZ_CHECK(payload.ok(), "a form with a payload field refused");
      const std::size_t value = body.find('=', at) + 1;
      const std::size_t end = body.find('&', value);
      FUZZ_CHECK(*payload == form_decode(body.substr(
                                 value, end == std::string_view::npos ? end : end - value)),
                 "a form's payload field not decoded as it reads");
      break;
    }
    case Kind::kOther:
      FUZZ_CHECK(!payload.ok(), "a body of an unknown content type taken");
      FUZZ_CHECK(payload.code() == dmz::Code::kInvalid, "an unknown content type not invalid");
      return 0;
  }
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

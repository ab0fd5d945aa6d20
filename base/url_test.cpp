#include "base/url.hpp"

#include <doctest/doctest.h>

namespace dmz {
namespace {

TEST_CASE("parse_url: the parts of http(s) URLs") {
  auto u = parse_url("https://api.github.com");
  REQUIRE(u.ok());
  CHECK(u->scheme == "https");
  CHECK(u->host == "api.github.com");
  CHECK(u->port == 443);
  CHECK(u->path == "/");
  CHECK(u->authority() == "api.github.com");

  u = parse_url("HTTPS://ghes.example.com:8443/api/v3?x=1");
  REQUIRE(u.ok());
  CHECK(u->scheme == "https");
  CHECK(u->port == 8443);
  CHECK(u->path == "/api/v3?x=1");
  CHECK(u->authority() == "ghes.example.com:8443");
  CHECK(u->origin() == "https://ghes.example.com:8443");

  u = parse_url("http://127.0.0.1:8080?q");
  REQUIRE(u.ok());
  CHECK(u->path == "/?q");

  u = parse_url("http://[::1]:9000/x");
  REQUIRE(u.ok());
  CHECK(u->host == "::1");
  CHECK(u->authority() == "[::1]:9000");
}

TEST_CASE("parse_url: anything else is refused with a reason") {
  for (const char* bad :
       {"", "api.github.com", "ftp://x/", "https://", "https://user:pw@host/", "https://h/#frag",
        "https://h:0/", "https://h:65536/", "https://h:12x/", "https://h:/", "https://a b/",
        "https://h/\n", "https://[::1/", "https://ho$t/"}) {
    CAPTURE(bad);
    auto u = parse_url(bad);
    CHECK(u.code() == Code::kInvalid);
  }
}

// Config problems go to stderr and the journal: a token written into a URL is not repeated.
TEST_CASE("parse_url: a refusal quotes the URL without its user info or query") {
  auto u = parse_url("https://x-access-token:ghp_SECRET@ghe.example/api/v3");
  CHECK(
      u.message() ==
      "'https://***@ghe.example/api/v3' is not an http(s) URL: credentials do not belong in a URL");
  u = parse_url("https://h:0/x?token=ghp_SECRET");
  CHECK(u.message().find("SECRET") == std::string::npos);
  CHECK(u.message().rfind("'https://h:0/x' is not", 0) == 0);
  u = parse_url("ftp://user:ghp_SECRET@h/a@b");
  CHECK(u.message().rfind("'ftp://***@h/a@b' is not", 0) == 0);
}

}  // namespace
}  // namespace dmz

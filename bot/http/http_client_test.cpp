// The outbound HTTPS client against a real TLS server on 127.0.0.1 (the fake GitHub) with a CA
// made at test time: it talks to a server its CA signed for the name it asked for, and to
// nothing else.
#include "bot/http/http_client.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <thread>

#include "tests/fake_github.hpp"
#include "tests/support.hpp"
#include "tests/test_ca.hpp"

namespace dmz {
namespace {

struct TlsServer {
  test::TempDir dir;
  test::TestCa ca = test::make_test_ca(dir / "ca");
  std::unique_ptr<test::FakeGitHub> api;
  TlsServer() {
    test::FakeGitHub::Options o;
    o.cert = ca.server_cert;
    o.key = ca.server_key;
    o.token = "t";
    api = std::make_unique<test::FakeGitHub>(o);
    REQUIRE_MESSAGE(api->error().empty(), api->error());
  }
  std::string port() const { return api->api_url().substr(api->api_url().rfind(':') + 1); }
};

Result<HttpReply> get(const std::filesystem::path& ca, const std::string& url) {
  HttpClientOptions o;
  o.ca_file = ca;
  o.system_cas = false;
  o.timeout = std::chrono::seconds(5);
  auto client = BeastHttpClient::create(o);
  REQUIRE(client.ok());
  return (*client)->send(HttpCall{"GET", url, {{"Authorization", "token t"}}, ""});
}

TEST_CASE("https client: the server's certificate must chain to a trusted CA and name the host") {
  TlsServer server;
  // Trusted CA, an address the certificate names: answered. (Only addresses: CI runs this on
  // a machine without /etc/hosts, where not even localhost resolves.)
  auto ok = get(server.ca.ca_cert, server.api->api_url() + "/rate_limit");
  REQUIRE_MESSAGE(ok.ok(), (ok.ok() ? "" : ok.message()));
  CHECK(ok->status > 0);
  // A CA that did not sign it: refused before a byte of the request is sent.
  const auto asked = server.api->requests().size();
  auto untrusted = get(server.ca.other_ca_cert, server.api->api_url() + "/rate_limit");
  REQUIRE_FALSE(untrusted.ok());
  CHECK(untrusted.code() == Code::kUnavailable);
  CHECK(untrusted.message().find("certificate verify failed") != std::string::npos);
  // The right CA, another name for the same address (127.1 is 127.0.0.1 to the resolver, and
  // not a name the certificate holds): refused too.
  auto misnamed = get(server.ca.ca_cert, "https://127.1:" + server.port() + "/rate_limit");
  REQUIRE_FALSE(misnamed.ok());
  CHECK(misnamed.message().find("certificate verify failed") != std::string::npos);
  CHECK(server.api->requests().size() == asked);
}

// A resolver that does not answer (a DNS server dropping queries) cannot be cancelled: the
// call gives up at its deadline all the same, and the next call is not held up by it.
TEST_CASE("https client: a lookup that hangs ends the call at its deadline") {
  TlsServer s;
  HttpClientOptions o;
  o.ca_file = s.ca.ca_cert;
  o.system_cas = false;
  o.timeout = std::chrono::milliseconds(300);
  std::atomic<int> lookups{0};
  o.before_lookup = [&lookups] {
    if (lookups++ == 0) std::this_thread::sleep_for(std::chrono::seconds(3));
  };
  auto client = BeastHttpClient::create(o);
  REQUIRE(client.ok());
  const auto t0 = std::chrono::steady_clock::now();
  auto hung = (*client)->send(HttpCall{"GET", s.api->api_url() + "/rate_limit", {}, ""});
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));
  CHECK(hung.code() == Code::kUnavailable);
  CHECK(hung.message().find("cannot resolve 127.0.0.1: no answer within 300 ms") !=
        std::string::npos);
  auto next = (*client)->send(HttpCall{"GET", s.api->api_url() + "/rate_limit", {}, ""});
  CHECK(next.ok());
}

}  // namespace
}  // namespace dmz

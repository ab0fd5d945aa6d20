// The outbound HTTPS client against a real TLS server on 127.0.0.1 (the fake GitHub) with a CA
// made at test time: it talks to a server its CA signed for the name it asked for, and to
// nothing else. And both clients against raw TCP servers that misbehave: framing without end,
// answers late, none at all.
#include "bot/http/http_client.hpp"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <future>
#include <string_view>
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

// A TCP server on 127.0.0.1 that hands each connection it accepts, one at a time, to
// `behave` on its own thread: for answers no well-behaved server gives. `behave` gets the
// socket and a flag set when the server is going; it must return soon after.
class RawServer {
 public:
  using Behaviour = std::function<void(int fd, const std::atomic<bool>& stopping)>;
  explicit RawServer(Behaviour behave) : behave_(std::move(behave)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(listen_fd_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listen_fd_, 8) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~RawServer() {
    stopping_ = true;
    thread_.join();
    ::close(listen_fd_);
  }
  RawServer(const RawServer&) = delete;
  RawServer& operator=(const RawServer&) = delete;

  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  std::uint16_t port() const { return port_; }
  int accepted() const { return accepted_; }

 private:
  void serve() {
    while (!stopping_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      ++accepted_;
      timeval tv{5, 0};  // no single recv or send waits longer
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      behave_(fd, stopping_);
      ::close(fd);
    }
  }

  Behaviour behave_;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

// Reads a request's head (callers send no body); false on EOF, error or timeout.
bool read_request_head(int fd) {
  std::string head;
  char c[1024];
  while (head.find("\r\n\r\n") == std::string::npos) {
    auto n = ::recv(fd, c, sizeof c, 0);
    if (n <= 0) return false;
    head.append(c, static_cast<std::size_t>(n));
  }
  return true;
}

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    auto n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// Sleeps `d` in short steps; false if the server is stopping meanwhile.
bool pause(std::chrono::milliseconds d, const std::atomic<bool>& stopping) {
  const auto end = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < end) {
    if (stopping) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

std::unique_ptr<BeastHttpClient> plain_client(std::chrono::milliseconds timeout,
                                              std::function<void()> before_lookup = {}) {
  HttpClientOptions o;
  o.system_cas = false;
  o.timeout = timeout;
  o.before_lookup = std::move(before_lookup);
  auto client = BeastHttpClient::create(o);
  REQUIRE(client.ok());
  return std::move(*client);
}

bool contains(const std::string& message, const std::string& text) {
  return message.find(text) != std::string::npos;
}

// Beast bounds neither a chunk's extensions nor the trailer (max_body counts chunk data):
// without a cap on its buffer the client would hold all a server sends until its deadline.
TEST_CASE("http client: an endless chunk extension ends the call, the buffer capped") {
  constexpr std::size_t kSent = 32u << 20;  // the server gives up after this much
  RawServer server([](int fd, const std::atomic<bool>& stopping) {
    if (!read_request_head(fd)) return;
    if (!send_all(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;")) return;
    const std::string extension(64 * 1024, 'a');
    for (std::size_t sent = 0; sent < kSent && !stopping; sent += extension.size())
      if (!send_all(fd, extension)) return;  // the client left
  });
  auto client = plain_client(std::chrono::seconds(20));
  auto r = client->send(HttpCall{"GET", server.url("/x"), {}, ""});
  REQUIRE_FALSE(r.ok());
  CHECK(r.code() == Code::kUnavailable);
  CHECK_MESSAGE(contains(r.message(), "answer framing too large"), r.message());

  auto plain =
      http_request("127.0.0.1", server.port(), "GET", "/x", {}, {}, std::chrono::seconds(20));
  REQUIRE_FALSE(plain.ok());
  CHECK_MESSAGE(contains(plain.message(), "answer framing too large"), plain.message());
}

// The lookup takes 600 ms of the call's 1 s, and the answer comes 700 ms after the request:
// with one deadline the call has ended by then; with a timeout per step the read would have
// had a second of its own and taken the answer.
TEST_CASE("http client: one deadline covers all the steps of a call") {
  RawServer server([](int fd, const std::atomic<bool>& stopping) {
    if (!read_request_head(fd)) return;
    if (!pause(std::chrono::milliseconds(700), stopping)) return;
    send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  });
  auto client = plain_client(std::chrono::seconds(1),
                             [] { std::this_thread::sleep_for(std::chrono::milliseconds(600)); });
  auto r = client->send(HttpCall{"GET", server.url("/slow"), {}, ""});
  REQUIRE_FALSE(r.ok());
  CHECK(r.code() == Code::kUnavailable);
  CHECK_MESSAGE(contains(r.message(), ": read: "), r.message());
}

// Shutdown must not wait out a stalled call's timeout (systemd kills a stop that takes long).
TEST_CASE("http client: stop() ends the calls under way and refuses later ones") {
  std::atomic<int> requests{0};
  RawServer server([&requests](int fd, const std::atomic<bool>& stopping) {
    if (!read_request_head(fd)) return;
    ++requests;
    while (pause(std::chrono::milliseconds(50), stopping)) {
    }  // and never answers
  });
  SUBCASE("a call waiting for its answer") {
    auto client = plain_client(std::chrono::seconds(30));
    auto call = std::async(std::launch::async, [&] {
      return client->send(HttpCall{"GET", server.url("/stalled?token=x"), {}, ""});
    });
    for (int i = 0; i < 250 && requests == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    REQUIRE(requests == 1);
    client->stop();
    REQUIRE(call.wait_for(std::chrono::seconds(5)) == std::future_status::ready);
    auto r = call.get();
    REQUIRE_FALSE(r.ok());
    CHECK(r.code() == Code::kUnavailable);
    CHECK(r.message() == "GET " + server.url("/stalled") + ": stopping");

    auto later = client->send(HttpCall{"GET", server.url("/later"), {}, ""});
    CHECK(later.message() == "GET " + server.url("/later") + ": stopping");
    CHECK(server.accepted() == 1);
  }
  SUBCASE("a call waiting for its name lookup") {
    auto entered = std::make_shared<std::atomic<bool>>(false);
    // The hook outlives the test on the lookup's thread: it holds nothing of the test's.
    auto client = plain_client(std::chrono::seconds(30), [entered] {
      *entered = true;
      std::this_thread::sleep_for(std::chrono::seconds(20));
    });
    auto call = std::async(std::launch::async, [&] {
      return client->send(HttpCall{"GET", server.url("/x"), {}, ""});
    });
    for (int i = 0; i < 250 && !*entered; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    REQUIRE(*entered);
    client->stop();
    REQUIRE(call.wait_for(std::chrono::seconds(5)) == std::future_status::ready);
    CHECK(call.get().message() == "GET " + server.url("/x") + ": stopping");
    CHECK(server.accepted() == 0);
  }
}

}  // namespace
}  // namespace dmz

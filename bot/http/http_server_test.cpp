// A real HttpServer on 127.0.0.1 (port 0) in front of make_api and a recording fake backend,
// driven by the real http_client and by raw POSIX sockets for the misbehaving clients. Every
// wait is bounded.
#include "bot/http/http_server.hpp"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "bot/http/api.hpp"
#include "bot/http/api_fake_backend.hpp"
#include "bot/http/http_client.hpp"

using namespace dmz;
using namespace std::chrono_literals;
using dmz::test::FakeBackend;
using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

namespace {

const std::string kSha = "0123456789abcdef0123456789abcdef01234567";

config::Server test_config() {
  config::Server cfg;
  cfg.host = "127.0.0.1";
  cfg.port = 0;
  cfg.body_limit = 1024;
  cfg.read_timeout = std::chrono::seconds(1);
  cfg.threads = 2;
  return cfg;
}

// A blocking TCP client on 127.0.0.1 with a receive timeout, for requests http_client would not
// send: partial request lines, several requests on one connection.
class RawClient {
 public:
  explicit RawClient(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    timeval tv{5, 0};  // no single recv waits longer
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~RawClient() { ::close(fd_); }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool send(const std::string& data) {
    std::size_t off = 0;
    while (off < data.size()) {
      auto n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }

  // One response (headers and a Content-Length body, unless it answers a HEAD); nullopt on
  // EOF, error or timeout.
  std::optional<std::string> read_response(bool to_head = false) {
    std::size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos)
      if (!fill()) return std::nullopt;
    std::string head = buf_.substr(0, end + 4);
    std::string lower = head;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::size_t length = 0;
    auto cl = lower.find("content-length:");
    if (cl != std::string::npos && !to_head) length = std::stoul(head.substr(cl + 15));
    while (buf_.size() < end + 4 + length)
      if (!fill()) return std::nullopt;
    std::string response = buf_.substr(0, end + 4 + length);
    buf_.erase(0, end + 4 + length);
    return response;
  }

  // What the server sends before it closes the connection (EOF or reset) within `limit`;
  // nullopt if it does not close by then.
  std::optional<std::string> rest_until_closed(std::chrono::milliseconds limit) {
    std::string rest = std::exchange(buf_, {});
    auto deadline = SteadyClock::now() + limit;
    char c[256];
    while (SteadyClock::now() < deadline) {
      auto n = ::recv(fd_, c, sizeof c, 0);
      if (n == 0) return rest;
      if (n > 0) {
        rest.append(c, static_cast<std::size_t>(n));
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      return rest;  // ECONNRESET
    }
    return std::nullopt;
  }

  // True if the server closes the connection (EOF or reset) within `limit`.
  bool closed_within(std::chrono::milliseconds limit) {
    auto deadline = SteadyClock::now() + limit;
    char c[256];
    while (SteadyClock::now() < deadline) {
      auto n = ::recv(fd_, c, sizeof c, 0);
      if (n == 0) return true;
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
        return true;  // ECONNRESET
      }
    }
    return false;
  }

 private:
  bool fill() {
    char chunk[4096];
    auto n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    buf_.append(chunk, static_cast<std::size_t>(n));
    return true;
  }
  int fd_ = -1;
  std::string buf_;
};

std::string status_of(const std::string& response) { return response.substr(9, 3); }

bool has_header(const std::string& response, const std::string& line) {
  auto head = response.substr(0, response.find("\r\n\r\n"));
  return head.find("\r\n" + line + "\r\n") != std::string::npos || head.ends_with("\r\n" + line);
}

std::string body_of(const std::string& response) {
  return response.substr(response.find("\r\n\r\n") + 4);
}

struct Served {
  FakeBackend fake;
  HttpServer server;
  std::uint16_t port = 0;
  explicit Served(config::Server cfg = test_config()) : server(cfg, make_api(fake)) {
    auto started = server.start();
    REQUIRE_MESSAGE(started.ok(), (started.ok() ? "" : started.message()));
    port = *started;
    REQUIRE(port != 0);
  }
};

}  // namespace

TEST_CASE("server: healthz through the real client") {
  Served s;
  auto r = http_request("127.0.0.1", s.port, "GET", "/healthz");
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
  CHECK(r->status == 200);
  CHECK(r->content_type == "application/json");
  CHECK(json::parse(r->body) == json{{"status", "ok"}});
}

TEST_CASE("server: a status post is accepted and reaches the backend") {
  Served s;
  auto r =
      http_request("127.0.0.1", s.port, "POST", "/api/v1/repos/o/n/statuses/" + kSha,
                   R"({"state":"failure","context":"ci/build"})", {{"Authorization", "Bearer st"}});
  REQUIRE(r.ok());
  CHECK(r->status == 202);
  CHECK(json::parse(r->body) == json{{"accepted", true}});
  REQUIRE(s.fake.event_count() == 1);
  auto& e = std::get<queue::CheckReported>(s.fake.events[0].second);
  CHECK(e.sha == kSha);
  CHECK(e.check.state == queue::CheckState::Failure);
  CHECK(e.check.context == "ci/build");

  // The wrong token over the wire: 401, nothing more recorded.
  auto bad = http_request("127.0.0.1", s.port, "POST", "/api/v1/repos/o/n/statuses/" + kSha,
                          R"({"state":"failure","context":"ci/build"})",
                          {{"Authorization", "Bearer nope"}});
  REQUIRE(bad.ok());
  CHECK(bad->status == 401);
  CHECK(s.fake.event_count() == 1);
}

TEST_CASE("server: a body over the limit gets 413 and records nothing") {
  Served s;
  std::string big = R"({"state":"success","context":")" + std::string(4096, 'x') + R"("})";
  auto r = http_request("127.0.0.1", s.port, "POST", "/api/v1/repos/o/n/statuses/" + kSha, big,
                        {{"Authorization", "Bearer st"}}, 5s);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
  CHECK(r->status == 413);
  CHECK(json::parse(r->body) == json{{"error", "body exceeds 1024 bytes"}});
  CHECK(s.fake.event_count() == 0);

  SUBCASE("chunked, without a Content-Length") {
    RawClient c(s.port);
    std::string chunk(2000, 'y');
    char size[16];
    std::snprintf(size, sizeof size, "%zx", chunk.size());
    c.send(
        "POST /api/v1/repos/o/n/statuses/" + kSha +
        " HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer st\r\nTransfer-Encoding: chunked\r\n\r\n" +
        size + "\r\n" + chunk + "\r\n0\r\n\r\n");
    auto resp = c.read_response();
    REQUIRE(resp);
    CHECK(status_of(*resp) == "413");
    CHECK(has_header(*resp, "Connection: close"));
    CHECK(c.closed_within(3000ms));
    CHECK(s.fake.event_count() == 0);
  }
}

TEST_CASE("server: a slowloris client is disconnected after read_timeout") {
  Served s;
  RawClient c(s.port);
  REQUIRE(c.send("GET /heal"));
  auto t0 = SteadyClock::now();
  CHECK(c.closed_within(4000ms));
  auto waited = SteadyClock::now() - t0;
  CHECK(waited >= 800ms);
  CHECK(waited < 3000ms);
  // The server still serves others.
  auto r = http_request("127.0.0.1", s.port, "GET", "/healthz");
  REQUIRE(r.ok());
  CHECK(r->status == 200);
}

TEST_CASE("server: an idle keep-alive connection is closed after read_timeout too") {
  Served s;
  RawClient c(s.port);
  c.send("GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
  REQUIRE(c.read_response());
  CHECK(c.closed_within(4000ms));
}

TEST_CASE("server: keep-alive serves several requests on one connection") {
  Served s;
  RawClient c(s.port);
  REQUIRE(c.send("GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"));
  auto first = c.read_response();
  REQUIRE(first);
  CHECK(status_of(*first) == "200");
  CHECK(has_header(*first, "Server: dmzbot"));
  CHECK(has_header(*first, "Content-Length: 15"));
  CHECK(body_of(*first) == R"({"status":"ok"})");
  CHECK_FALSE(has_header(*first, "Connection: close"));

  // Two pipelined requests, the last one asking to close.
  REQUIRE(
      c.send("GET /nope HTTP/1.1\r\nHost: t\r\n\r\n"
             "GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
  auto second = c.read_response();
  REQUIRE(second);
  CHECK(status_of(*second) == "404");
  CHECK(json::parse(body_of(*second)).at("error") == "no route for /nope");
  auto third = c.read_response();
  REQUIRE(third);
  CHECK(status_of(*third) == "200");
  CHECK(has_header(*third, "Connection: close"));
  CHECK(c.closed_within(2000ms));
}

TEST_CASE("server: HTTP/1.0 without keep-alive is answered with Connection: close") {
  Served s;
  RawClient c(s.port);
  c.send("GET /healthz HTTP/1.0\r\n\r\n");
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(status_of(*r) == "200");
  CHECK(has_header(*r, "Connection: close"));
  CHECK(c.closed_within(2000ms));
}

TEST_CASE("server: a malformed request gets 400 and the connection closes") {
  Served s;
  RawClient c(s.port);
  c.send("THIS IS NOT HTTP\r\n\r\n");
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(status_of(*r) == "400");
  CHECK(json::parse(body_of(*r)).contains("error"));
  CHECK(c.closed_within(2000ms));
}

// Beast bounds neither a chunk's extensions nor the trailer; body_limit counts chunk data only.
TEST_CASE("server: endless chunk framing gets 431 at once, not a buffer grown until timeout") {
  Served s;
  for (const std::string& framing :
       {std::string("1;") + std::string(200'000, 'a'),  // a chunk extension without end
        std::string("0\r\nX-Trailer: ") + std::string(200'000, 't')}) {  // an endless trailer
    RawClient c(s.port);
    c.send("POST /api/v1/repos/o/n/statuses/" + kSha +
           " HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer st\r\n"
           "Transfer-Encoding: chunked\r\n\r\n" +
           framing);
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(status_of(*r) == "431");
    CHECK(s.fake.event_count() == 0);
  }
}

// read_timeout (1 s) is for the whole request: a slow header does not buy the body a fresh one.
// The header ends at 700 ms and the body comes at 1400 ms: the request's deadline has closed
// the connection by then, where a timeout per phase (body due by 1700 ms) would have taken it
// to the handler. Sleeps only overrun, which keeps the outcome.
TEST_CASE("server: one read_timeout covers a request's headers and body together") {
  Served s;
  RawClient c(s.port);
  const std::string body = R"({"state":"success","context":"ci/build"})";
  REQUIRE(c.send("POST /api/v1/repos/o/n/statuses/" + kSha +
                 " HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer st\r\n"));
  std::this_thread::sleep_for(700ms);
  REQUIRE(c.send("Content-Length: " + std::to_string(body.size()) + "\r\n\r\n"));
  std::this_thread::sleep_for(700ms);
  c.send(body);  // may fail: the server has closed
  CHECK_FALSE(c.read_response());
  CHECK(s.fake.event_count() == 0);
}

// Framing Beast would read as no body (or a wrong one) turns the body into a second request: a
// request smuggled past a proxy that framed it otherwise. Refused with one answer, then closed.
TEST_CASE("server: a body framed by anything but chunked alone is refused, never smuggled") {
  Served s;
  const std::string smuggled = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
  struct Case {
    std::string version, encoding, status;
  };
  for (const auto& [version, encoding, status] : std::vector<Case>{
           {"1.1", "Transfer-Encoding: gzip\r\n", "501"},
           {"1.1", "Transfer-Encoding: xchunked\r\n", "501"},
           {"1.1", "Transfer-Encoding: identity\r\n", "501"},
           {"1.1", "Transfer-Encoding: \r\n", "400"},
           {"1.1", "Transfer-Encoding: chunked, identity\r\n", "400"},
           {"1.1", "Transfer-Encoding: gzip, chunked\r\n", "501"},
           {"1.1", "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", "501"},
           {"1.1", "Transfer-Encoding: gzip\r\nContent-Length: 0\r\n", "501"},
           {"1.0", "Transfer-Encoding: chunked\r\n", "400"},
       }) {
    CAPTURE(version);
    CAPTURE(encoding);
    RawClient c(s.port);
    // A chunked body holding the smuggled request: read as framed, it is a body.
    char size[16];
    std::snprintf(size, sizeof size, "%zx", smuggled.size());
    REQUIRE(c.send("POST /api/v1/repos/o/n/statuses/" + kSha + " HTTP/" + version +
                   "\r\nHost: t\r\nAuthorization: Bearer st\r\n" + encoding + "\r\n" + size +
                   "\r\n" + smuggled + "\r\n0\r\n\r\n" + smuggled));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(status_of(*r) == status);
    CHECK(has_header(*r, "Connection: close"));
    CHECK(c.rest_until_closed(3000ms) == std::string());  // the smuggled request is not answered
  }
  CHECK(s.fake.event_count() == 0);

  // Chunked alone is read as framed, whatever its case.
  RawClient c(s.port);
  const std::string body = R"({"state":"success","context":"ci/build"})";
  char size[16];
  std::snprintf(size, sizeof size, "%zx", body.size());
  REQUIRE(c.send("POST /api/v1/repos/o/n/statuses/" + kSha +
                 " HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer st\r\n"
                 "Transfer-Encoding: Chunked\r\n\r\n" +
                 size + "\r\n" + body + "\r\n0\r\n\r\n" + smuggled));
  auto posted = c.read_response();
  REQUIRE(posted);
  CHECK(status_of(*posted) == "202");
  auto next = c.read_response();
  REQUIRE(next);
  CHECK(status_of(*next) == "200");
  CHECK(s.fake.event_count() == 1);
}

// RFC 9112 3.2: an HTTP/1.1 request has one Host field; HTTP/1.0 may have none (tested above).
TEST_CASE("server: an HTTP/1.1 request without Host, or with two, gets 400") {
  Served s;
  for (const std::string& hosts : {std::string(), std::string("Host: a\r\nHost: b\r\n")}) {
    CAPTURE(hosts);
    RawClient c(s.port);
    REQUIRE(c.send("GET /healthz HTTP/1.1\r\n" + hosts + "\r\n"));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(status_of(*r) == "400");
    CHECK(c.rest_until_closed(3000ms) == std::string());
  }
  RawClient two(s.port);
  REQUIRE(two.send("GET /healthz HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"));
  auto r = two.read_response();
  REQUIRE(r);
  CHECK(status_of(*r) == "400");
}

// RFC 9112 3.2.2: a server accepts the absolute form (what a request to a proxy carries).
TEST_CASE("server: an absolute-form target is handled as its path and query") {
  HttpServer server(test_config(), [](HttpRequest req, Respond respond) {
    respond({.status = 200, .body = req.target});
  });
  auto port = server.start();
  REQUIRE(port.ok());
  for (const auto& [target, seen] : std::vector<std::pair<std::string, std::string>>{
           {"http://x/healthz", "/healthz"},
           {"HTTPS://x:8443/a/b?c=http://y/", "/a/b?c=http://y/"},
           {"http://x?q=1", "/?q=1"},
           {"http://x", "/"},
           {"/plain?x=1", "/plain?x=1"},
       }) {
    RawClient c(*port);
    REQUIRE(c.send("GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(body_of(*r) == seen);
  }
  Served s;  // and the API routes it
  RawClient c(s.port);
  REQUIRE(c.send("GET http://x/healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(status_of(*r) == "200");
}

TEST_CASE("server: oversized headers get 431") {
  Served s;
  RawClient c(s.port);
  c.send("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + std::string(20000, 'h') + "\r\n\r\n");
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(status_of(*r) == "431");
  CHECK(c.closed_within(3000ms));
}

TEST_CASE("server: answers that come from another thread") {
  SUBCASE("a handler answering from its own thread") {
    std::vector<std::thread> workers;
    std::mutex mu;
    Handler handler = [&](HttpRequest req, Respond respond) {
      std::lock_guard lock(mu);
      workers.emplace_back([req, respond] {
        std::this_thread::sleep_for(50ms);
        HttpResponse r;
        r.body = json{{"echo", req.body}, {"x", req.header("x-test")}}.dump();
        respond(r);
        respond(json_error(500, "second answer is ignored"));
      });
    };
    {
      HttpServer server(test_config(), handler);
      auto port = server.start();
      REQUIRE(port.ok());
      for (int i = 0; i < 3; ++i) {
        auto r = http_request("127.0.0.1", *port, "POST", "/anything", "hello",
                              {{"X-Test", "v" + std::to_string(i)}});
        REQUIRE(r.ok());
        CHECK(r->status == 200);
        CHECK(json::parse(r->body) == json{{"echo", "hello"}, {"x", "v" + std::to_string(i)}});
      }
    }
    for (auto& t : workers) t.join();
  }
  SUBCASE("make_api over a backend that answers on its engine thread") {
    Served s;
    s.fake.answer_from_thread = true;
    auto r = http_request("127.0.0.1", s.port, "POST", "/api/v1/repos/o/n/pulls/3/cancel",
                          R"({"by":"mm"})", {{"Authorization", "Bearer tok"}});
    REQUIRE(r.ok());
    CHECK(r->status == 202);
    s.fake.join();
    CHECK(s.fake.event_count() == 1);
  }
  SUBCASE("a handler that drops Respond unanswered yields 500, not a hang") {
    HttpServer server(test_config(), [](HttpRequest, Respond) {});
    auto port = server.start();
    REQUIRE(port.ok());
    auto r = http_request("127.0.0.1", *port, "GET", "/x", {}, {}, 5s);
    REQUIRE(r.ok());
    CHECK(r->status == 500);
  }
  SUBCASE("a handler that throws yields 500") {
    HttpServer server(test_config(),
                      [](HttpRequest, Respond) { throw std::runtime_error("boom"); });
    auto port = server.start();
    REQUIRE(port.ok());
    auto r = http_request("127.0.0.1", *port, "GET", "/x", {}, {}, 5s);
    REQUIRE(r.ok());
    CHECK(r->status == 500);
    CHECK(json::parse(r->body).at("error") == "internal error: boom");
  }
}

TEST_CASE("server: a handler that never answers gets 503 after answer_timeout") {
  auto cfg = test_config();
  cfg.answer_timeout = std::chrono::seconds(1);
  std::mutex mu;
  std::vector<Respond> held;  // answered only after the timeout, and then ignored
  HttpServer server(cfg, [&](HttpRequest, Respond respond) {
    std::lock_guard lock(mu);
    held.push_back(std::move(respond));
  });
  auto port = server.start();
  REQUIRE(port.ok());
  RawClient c(*port);
  REQUIRE(c.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto start = SteadyClock::now();
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(status_of(*r) == "503");
  CHECK(SteadyClock::now() - start >= 900ms);
  CHECK(json::parse(body_of(*r)).at("error").get<std::string>().starts_with("no answer within 1s"));
  CHECK(r->find("\r\nRetry-After: 1\r\n") != std::string::npos);
  {
    std::lock_guard lock(mu);
    REQUIRE(held.size() == 1);
    held[0](HttpResponse{});  // too late: dropped, and the connection carries on
  }
  REQUIRE(c.send("GET /again HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto again = c.read_response();
  REQUIRE(again);
  CHECK(status_of(*again) == "503");  // the second request was held and timed out too
  std::lock_guard lock(mu);
  CHECK(held.size() == 2);
}

TEST_CASE("server: connections beyond max_connections get 503 and are closed") {
  auto cfg = test_config();
  cfg.max_connections = 2;
  cfg.read_timeout = std::chrono::seconds(5);
  std::mutex mu;
  std::vector<Respond> held;  // requests to /hold wait here; anything else is answered at once
  HttpServer server(cfg, [&](HttpRequest req, Respond respond) {
    if (req.target != "/hold") return respond(HttpResponse{});
    std::lock_guard lock(mu);
    held.push_back(std::move(respond));
  });
  auto port = server.start();
  REQUIRE(port.ok());
  auto held_count = [&] {
    std::lock_guard lock(mu);
    return held.size();
  };
  // Two connections that are surely registered: their requests reached the handler.
  std::optional<RawClient> a(std::in_place, *port);
  RawClient b(*port);
  REQUIRE(a->send("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"));
  REQUIRE(b.send("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"));
  for (int i = 0; i < 250 && held_count() < 2; ++i) std::this_thread::sleep_for(20ms);
  REQUIRE(held_count() == 2);

  RawClient third(*port);
  REQUIRE(third.send("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto refused = third.read_response();
  REQUIRE(refused);
  CHECK(status_of(*refused) == "503");
  CHECK(has_header(*refused, "Retry-After: 1"));
  CHECK(third.closed_within(3000ms));
  CHECK(held_count() == 2);  // the refused request never reached the handler

  {
    std::lock_guard lock(mu);
    for (auto& respond : held) respond(HttpResponse{});
  }
  REQUIRE(a->read_response());
  a.reset();  // frees a slot once the server sees the close
  std::string status;
  for (int i = 0; i < 100 && status != "200"; ++i) {
    RawClient next(*port);
    next.send("GET /now HTTP/1.1\r\nHost: x\r\n\r\n");
    auto r = next.read_response();
    status = r ? status_of(*r) : "none";
    if (status != "200") std::this_thread::sleep_for(20ms);
  }
  CHECK(status == "200");
}

// The clients' timeouts are long: only stop() closes their connections. The bound on stop() is
// far below them and far above what it takes, so a slow machine does not fail it.
TEST_CASE("server: stop() returns promptly with clients connected") {
  auto cfg = test_config();
  cfg.read_timeout = std::chrono::seconds(60);
  SUBCASE("idle and half-sent connections") {
    Served s(cfg);
    RawClient idle(s.port);
    RawClient half(s.port);
    half.send("POST /api/v1/repos/o/n/pulls HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{");
    std::this_thread::sleep_for(100ms);
    auto t0 = SteadyClock::now();
    s.server.stop();
    CHECK(SteadyClock::now() - t0 < 15s);
    CHECK(idle.closed_within(2000ms));
    CHECK(half.closed_within(2000ms));
    s.server.stop();  // idempotent
    auto r = http_request("127.0.0.1", s.port, "GET", "/healthz", {}, {}, 1s);
    CHECK_FALSE(r.ok());
  }
  SUBCASE("a request the handler never answers, answered after stop") {
    std::promise<Respond> held;
    std::atomic<bool> taken{false};
    auto server = std::make_unique<HttpServer>(cfg, [&](HttpRequest, Respond respond) {
      if (!taken.exchange(true)) held.set_value(respond);
    });
    auto port = server->start();
    REQUIRE(port.ok());
    auto client = std::async(std::launch::async, [p = *port] {
      return http_request("127.0.0.1", p, "GET", "/slow", {}, {}, 5s);
    });
    auto future = held.get_future();
    REQUIRE(future.wait_for(5s) == std::future_status::ready);
    Respond respond = future.get();
    auto t0 = SteadyClock::now();
    server->stop();
    CHECK(SteadyClock::now() - t0 < 15s);
    REQUIRE(client.wait_for(5s) == std::future_status::ready);
    CHECK_FALSE(client.get().ok());  // closed without an answer
    server.reset();
    respond(HttpResponse{});  // late answer after the server is gone: dropped, no crash
  }
}

TEST_CASE("server: start fails cleanly on a bad address") {
  auto cfg = test_config();
  cfg.host = "256.0.0.1";
  HttpServer server(cfg, [](HttpRequest, Respond r) { r(HttpResponse{}); });
  auto port = server.start();
  CHECK_FALSE(port.ok());
}

TEST_CASE("client: connection refused is an error with a message") {
  // Bind and close to find a port nobody listens on.
  std::uint16_t port;
  {
    HttpServer server(test_config(), [](HttpRequest, Respond r) { r(HttpResponse{}); });
    auto p = server.start();
    REQUIRE(p.ok());
    port = *p;
  }
  auto r = http_request("127.0.0.1", port, "GET", "/", {}, {}, 2s);
  REQUIRE_FALSE(r.ok());
  CHECK(r.message().find("connect") != std::string::npos);
}

TEST_CASE("server: a port in use is an error; a stopped server starts again") {
  Served s;
  auto cfg = test_config();
  cfg.port = s.port;
  HttpServer other(cfg, [](HttpRequest, Respond r) { r(HttpResponse{}); });
  auto clash = other.start();
  REQUIRE_FALSE(clash.ok());
  CHECK(clash.message().find("127.0.0.1:" + std::to_string(s.port)) != std::string::npos);

  s.server.stop();
  auto again = s.server.start();
  REQUIRE(again.ok());
  auto r = http_request("127.0.0.1", *again, "GET", "/healthz");
  REQUIRE(r.ok());
  CHECK(r->status == 200);
}

TEST_CASE("server: a 204 answer goes out without a body and the connection stays usable") {
  HttpServer server(test_config(), [](HttpRequest req, Respond respond) {
    HttpResponse r;
    r.status = req.target == "/empty" ? 204 : 200;
    r.body = "{}";
    respond(r);
  });
  auto port = server.start();
  REQUIRE(port.ok());
  RawClient c(*port);
  c.send("GET /empty HTTP/1.1\r\nHost: t\r\n\r\nGET /full HTTP/1.1\r\nHost: t\r\n\r\n");
  auto first = c.read_response();
  REQUIRE(first);
  CHECK(status_of(*first) == "204");
  CHECK(body_of(*first).empty());
  auto second = c.read_response();
  REQUIRE(second);
  CHECK(status_of(*second) == "200");
  CHECK(body_of(*second) == "{}");
}

TEST_CASE("server: Expect: 100-continue is honoured, and refused early when too big") {
  Served s;
  const std::string body = R"({"state":"success","context":"ci/build"})";
  RawClient c(s.port);
  c.send("POST /api/v1/repos/o/n/statuses/" + kSha +
         " HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer st\r\nExpect: 100-continue\r\n"
         "Content-Length: " +
         std::to_string(body.size()) + "\r\n\r\n");
  auto cont = c.read_response();
  REQUIRE(cont);
  CHECK(status_of(*cont) == "100");
  c.send(body);
  auto done = c.read_response();
  REQUIRE(done);
  CHECK(status_of(*done) == "202");
  CHECK(s.fake.event_count() == 1);

  RawClient big(s.port);
  big.send("POST /api/v1/repos/o/n/statuses/" + kSha +
           " HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 999999\r\n\r\n");
  auto refused = big.read_response();
  REQUIRE(refused);
  CHECK(status_of(*refused) == "413");
  CHECK(s.fake.event_count() == 1);
}

TEST_CASE("http server: HEAD is answered as the GET would be, without its body") {
  HttpServer server(test_config(), [](HttpRequest req, Respond respond) {
    respond({.status = 200, .body = req.method + " " + req.target});
  });
  auto port = server.start();
  REQUIRE(port.ok());
  RawClient c(*port);
  // Pipelined: a body after the HEAD's header would be read as the start of the next answer.
  REQUIRE(c.send("HEAD /x HTTP/1.1\r\nHost: x\r\n\r\nGET /yy HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto head = c.read_response(true);
  REQUIRE(head);
  CHECK(status_of(*head) == "200");
  CHECK(head->find("Content-Length: 6\r\n") != std::string::npos);  // "GET /x"
  auto get = c.read_response();
  REQUIRE(get);
  CHECK(status_of(*get) == "200");
  CHECK(body_of(*get) == "GET /yy");
}

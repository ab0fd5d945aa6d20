// The live feed through a real HttpServer on 127.0.0.1 in front of make_api and the recording
// fake backend (whose event log is in memory), read by a small chunked SSE client on a POSIX
// socket. Every wait is bounded.
#include "bot/http/sse.hpp"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "bot/http/api.hpp"
#include "bot/http/api_fake_backend.hpp"
#include "bot/http/http_server.hpp"

using namespace dmz;
using namespace std::chrono_literals;
using dmz::test::FakeBackend;
using SteadyClock = std::chrono::steady_clock;

namespace {

config::Server server_config() {
  config::Server cfg;
  cfg.host = "127.0.0.1";
  cfg.port = 0;
  cfg.read_timeout = std::chrono::seconds(2);
  cfg.threads = 2;
  return cfg;
}

EventLogEntry entry(const std::string& repo, const std::string& kind, int number) {
  EventLogEntry e;
  e.repo = repo;
  e.kind = kind;
  e.json = R"({"type":")" + kind + R"(","number":)" + std::to_string(number) + "}";
  e.number = number;
  e.at = 1000;
  return e;
}

// A GET that reads the response head and then the (chunked) body as it arrives.
class SseClient {
 public:
  SseClient(std::uint16_t port, const std::string& target, const std::string& headers = "") {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    timeval tv{0, 100'000};  // recv returns at least every 100 ms, so deadlines are kept
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string req = "GET " + target +
                      " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n" + headers +
                      "\r\n";
    REQUIRE(::send(fd_, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size()));
    const auto deadline = SteadyClock::now() + 5s;
    while (raw_.find("\r\n\r\n") == std::string::npos && SteadyClock::now() < deadline)
      if (!fill()) break;
    auto end = raw_.find("\r\n\r\n");
    REQUIRE(end != std::string::npos);
    head = raw_.substr(0, end + 4);
    raw_.erase(0, end + 4);
    status = std::stoi(head.substr(9, 3));
    chunked = head.find("chunked") != std::string::npos;
  }
  ~SseClient() { close(); }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // Reads until `body` satisfies `done` or `limit` passes; true if it did.
  bool wait_for(const std::function<bool(const std::string&)>& done,
                std::chrono::milliseconds limit = 5s) {
    const auto deadline = SteadyClock::now() + limit;
    for (;;) {
      decode();
      if (done(body)) return true;
      if (SteadyClock::now() > deadline || ended) return done(body);
      if (!fill() && eof) {
        decode();
        return done(body);
      }
    }
  }
  bool wait_for_text(const std::string& text, std::chrono::milliseconds limit = 5s) {
    return wait_for([&](const std::string& b) { return b.find(text) != std::string::npos; }, limit);
  }
  // True once the body ended (the last chunk) or the server closed, within `limit`.
  bool wait_end(std::chrono::milliseconds limit) {
    wait_for([&](const std::string&) { return ended || eof; }, limit);
    return ended || eof;
  }

  std::string head, body;
  int status = 0;
  bool chunked = false, ended = false, eof = false;

 private:
  bool fill() {
    char buf[4096];
    auto n = ::recv(fd_, buf, sizeof buf, 0);
    if (n == 0) eof = true;
    if (n <= 0) return false;
    raw_.append(buf, static_cast<std::size_t>(n));
    return true;
  }
  void decode() {
    if (!chunked) {
      body += raw_;
      raw_.clear();
      return;
    }
    for (;;) {
      auto crlf = raw_.find("\r\n");
      if (crlf == std::string::npos) return;
      std::size_t size = std::stoul(raw_.substr(0, crlf), nullptr, 16);
      if (size == 0) {
        ended = true;
        return;
      }
      if (raw_.size() < crlf + 2 + size + 2) return;
      body += raw_.substr(crlf + 2, size);
      raw_.erase(0, crlf + 2 + size + 2);
    }
  }

  int fd_ = -1;
  std::string raw_;
};

struct Served {
  explicit Served(FakeBackend& fake, SseOptions sse = {})
      : server(server_config(), make_api(fake, ApiOptions{sse})) {
    auto p = server.start();
    REQUIRE(p.ok());
    port = *p;
  }
  HttpServer server;
  std::uint16_t port = 0;
};

const std::string kEvents = "/api/v1/repos/o/n/events";

// An event whose data is about `bytes` long.
EventLogEntry big_entry(int number, std::size_t bytes) {
  EventLogEntry e = entry("o/n", "tick", number);
  e.json = R"({"pad":")" + std::string(bytes, 'p') + R"("})";
  return e;
}

// What a stream delivers to a client that always asks for more (a fast one), in pieces.
class Reader {
 public:
  explicit Reader(std::shared_ptr<BodyStream> s) : stream_(std::move(s)) { ask(); }
  ~Reader() { stream_->close(); }  // drops the parked request that refers to this
  // The pieces once `count` have come (within 5 s), or what came.
  std::vector<std::string> pieces(std::size_t count) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, 5s, [&] { return pieces_.size() >= count; });
    return pieces_;
  }

 private:
  void ask() {
    stream_->next([this](std::optional<std::string> piece) {
      if (!piece) return;
      {
        std::lock_guard lock(mu_);
        pieces_.push_back(std::move(*piece));
      }
      cv_.notify_all();
      ask();
    });
  }
  std::shared_ptr<BodyStream> stream_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> pieces_;
};

// A FakeBackend whose event reads wait at a gate the test opens.
class GatedBackend : public FakeBackend {
 public:
  Result<std::vector<EventLogEntry>> events_after(const std::string& repo, std::int64_t after,
                                                  std::size_t limit) override {
    {
      std::unique_lock lock(gate_mu_);
      ++waiting_;
      gate_cv_.notify_all();
      gate_cv_.wait(lock, [&] { return open_; });
      --waiting_;
    }
    return FakeBackend::events_after(repo, after, limit);
  }
  void set_open(bool open) {
    {
      std::lock_guard lock(gate_mu_);
      open_ = open;
    }
    gate_cv_.notify_all();
  }
  bool wait_for_reader() {
    std::unique_lock lock(gate_mu_);
    return gate_cv_.wait_for(lock, 5s, [&] { return waiting_ > 0; });
  }

 private:
  std::mutex gate_mu_;
  std::condition_variable gate_cv_;
  bool open_ = true;
  int waiting_ = 0;
};

}  // namespace

TEST_CASE("sse: an event arrives after a change; a client resumes after its Last-Event-ID") {
  FakeBackend fake;
  const auto first = fake.publish(entry("o/n", "pr_opened", 7));
  Served s(fake);

  SseClient live(s.port, kEvents);
  CHECK(live.status == 200);
  CHECK(live.head.find("text/event-stream") != std::string::npos);
  CHECK(live.head.find("Cache-Control: no-store") != std::string::npos);
  // A stream from now starts with the newest id, so that a reconnect misses nothing.
  REQUIRE(live.wait_for_text("id: " + std::to_string(first) + "\nevent: hello\n"));
  CHECK(live.body.find("retry: ") == 0);

  const auto second = fake.publish(entry("o/n", "merge_requested", 7));
  fake.publish(entry("o/notoken", "pr_opened", 1));  // another repository: not on this feed
  const auto third = fake.publish(entry("o/n", "policy_checked", 7));
  REQUIRE(live.wait_for_text("id: " + std::to_string(third) + "\n"));
  CHECK(live.body.find("id: " + std::to_string(second) + "\ndata: {") != std::string::npos);
  CHECK(live.body.find(R"("kind":"merge_requested")") != std::string::npos);
  CHECK(live.body.find(R"("number":7)") != std::string::npos);
  CHECK(live.body.find("o/notoken") == std::string::npos);
  CHECK(live.body.find("id: " + std::to_string(third - 1) + "\n") == std::string::npos);

  // A browser that reconnects sends the id it saw last: it gets what it missed, in order,
  // and nothing before it.
  SseClient resumed(s.port, kEvents, "Last-Event-ID: " + std::to_string(first) + "\r\n");
  REQUIRE(resumed.wait_for_text("id: " + std::to_string(third) + "\n"));
  const auto at2 = resumed.body.find("id: " + std::to_string(second) + "\n");
  const auto at3 = resumed.body.find("id: " + std::to_string(third) + "\n");
  CHECK(at2 < at3);
  CHECK(resumed.body.find("id: " + std::to_string(first) + "\n") == std::string::npos);
  CHECK(resumed.body.find("hello") == std::string::npos);

  // A page starts from the seq it was rendered at (?after=).
  SseClient page(s.port, kEvents + "?after=0");
  REQUIRE(page.wait_for_text("id: " + std::to_string(third) + "\n"));
  CHECK(page.body.find("id: " + std::to_string(first) + "\n") != std::string::npos);
  // Another parameter that ends in "after" is not ?after: the stream starts from now.
  SseClient other(s.port, kEvents + "?xafter=0");
  REQUIRE(other.wait_for_text("id: " + std::to_string(third) + "\nevent: hello\n"));
  CHECK(other.body.find("\"kind\"") == std::string::npos);  // nothing replayed

  // Refused: an unknown repository, a malformed ?after.
  SseClient unknown(s.port, "/api/v1/repos/x/y/events");
  CHECK(unknown.status == 404);
  SseClient bad(s.port, kEvents + "?after=abc");
  CHECK(bad.status == 422);
}

TEST_CASE("sse: the overview's stream carries every repository's events; one id resumes it") {
  FakeBackend fake;
  fake.publish(entry("o/notoken", "pr_opened", 3));
  const auto first = fake.publish(entry("o/n", "pr_opened", 7));
  Served s(fake);

  SseClient all(s.port, "/api/v1/events");
  CHECK(all.status == 200);
  CHECK(all.head.find("text/event-stream") != std::string::npos);
  // From now on: the newest id of any repository.
  REQUIRE(all.wait_for_text("id: " + std::to_string(first) + "\nevent: hello\n"));
  const auto a = fake.publish(entry("o/n", "merge_requested", 7));
  const auto b = fake.publish(entry("o/notoken", "merge_requested", 3));
  REQUIRE(all.wait_for_text("id: " + std::to_string(b) + "\n"));
  CHECK(all.body.find("id: " + std::to_string(a) + "\n") != std::string::npos);
  CHECK(all.body.find(R"("repo":"o/notoken")") != std::string::npos);
  CHECK(all.body.find(R"("repo":"o/n")") != std::string::npos);

  // A reconnect with the last id it saw gets what it missed, of every repository, and no more.
  SseClient resumed(s.port, "/api/v1/events", "Last-Event-ID: " + std::to_string(first) + "\r\n");
  REQUIRE(resumed.wait_for_text("id: " + std::to_string(b) + "\n"));
  CHECK(resumed.body.find("id: " + std::to_string(a) + "\n") != std::string::npos);
  CHECK(resumed.body.find("id: " + std::to_string(first) + "\n") == std::string::npos);
  CHECK(resumed.body.find("hello") == std::string::npos);

  SseClient bad(s.port, "/api/v1/events?after=-1");
  CHECK(bad.status == 422);
}

TEST_CASE("sse: a client too far behind gets a reset to the newest id") {
  FakeBackend fake;
  for (int i = 0; i < 5; ++i) fake.publish(entry("o/n", "tick", i));
  const auto newest = fake.publish(entry("o/n", "tick", 9));
  SseOptions o;
  o.max_replay = 3;
  Served s(fake, o);
  SseClient behind(s.port, kEvents, "Last-Event-ID: 1\r\n");
  REQUIRE(behind.wait_for_text("id: " + std::to_string(newest) + "\nevent: reset\n"));
  CHECK(behind.body.find("data: {\"seq\"") != std::string::npos);
  CHECK(behind.body.find("\"kind\"") == std::string::npos);  // nothing replayed

  // An id from after the newest event (a store restored from a backup): reset to the newest,
  // then the events that follow are sent.
  SseClient ahead(s.port, kEvents, "Last-Event-ID: " + std::to_string(newest + 100) + "\r\n");
  REQUIRE(ahead.wait_for_text("id: " + std::to_string(newest) + "\nevent: reset\n"));
  const auto next = fake.publish(entry("o/n", "tick", 10));
  REQUIRE(ahead.wait_for_text("id: " + std::to_string(next) + "\n"));
}

TEST_CASE("sse: streams are bounded, keep alive, end after their time and on shutdown") {
  FakeBackend fake;
  SseOptions o;
  o.max_streams = 2;
  o.keepalive = 100ms;
  o.max_duration = 60s;
  auto s = std::make_unique<Served>(fake, o);

  auto a = std::make_unique<SseClient>(s->port, kEvents);
  SseClient b(s->port, kEvents);
  REQUIRE(a->wait_for_text("event: hello"));
  REQUIRE(b.wait_for_text("event: hello"));
  SseClient refused(s->port, kEvents);
  CHECK(refused.status == 503);
  CHECK(refused.head.find("Retry-After:") != std::string::npos);
  // The rest of the API is still served meanwhile.
  SseClient queue(s->port, "/healthz");
  CHECK(queue.status == 200);

  // A quiet stream carries keep-alive comments; a client that left is noticed, and its place
  // is free again.
  CHECK(b.wait_for_text(": keep-alive\n\n", 2s));
  a.reset();
  bool freed = false;
  const auto deadline = SteadyClock::now() + 5s;
  while (!freed && SteadyClock::now() < deadline) {
    SseClient again(s->port, kEvents);
    freed = again.status == 200;
    if (!freed) std::this_thread::sleep_for(50ms);  // retrying a refusal, as a browser does
  }
  CHECK(freed);

  // Stopping the server ends the open stream promptly.
  const auto started = SteadyClock::now();
  s->server.stop();
  CHECK(SteadyClock::now() - started < 2s);
  CHECK(b.wait_end(2s));
  s.reset();
  // With the API gone, the backend holds no callback of the hub any more.
  CHECK(fake.watcher_count() == 0);
}

TEST_CASE("sse: a client that leaves frees its place at once, not at the next keep-alive") {
  FakeBackend fake;
  SseOptions o;
  o.max_streams = 1;
  o.keepalive = 60s;  // no write in this test would find the client gone
  Served s(fake, o);
  for (int visit = 0; visit < 3; ++visit) {  // a page reloaded, three times
    bool served = false;
    const auto deadline = SteadyClock::now() + 3s;
    while (!served && SteadyClock::now() < deadline) {
      SseClient c(s.port, kEvents);
      served = c.status == 200;
      if (served)
        REQUIRE(c.wait_for_text("event: hello"));
      else
        std::this_thread::sleep_for(20ms);  // retrying a refusal, as a browser does
    }                                       // the client closes its connection here
    CHECK(served);
  }
}

TEST_CASE("sse: a stream ends after its maximum duration (the client reconnects)") {
  FakeBackend fake;
  SseOptions o;
  o.keepalive = 50ms;
  o.max_duration = 300ms;
  Served s(fake, o);
  SseClient c(s.port, kEvents);
  REQUIRE(c.wait_for_text("event: hello"));
  CHECK(c.wait_end(3s));
  CHECK(c.ended);  // a clean end of the chunked body, not a reset
}

TEST_CASE("sse: a batch of events is sent in pieces of about batch_bytes") {
  GatedBackend fake;
  SseOptions o;
  o.batch_bytes = 1'000;
  SseHub hub(fake, o);
  auto stream = hub.open("o/n", std::nullopt);
  REQUIRE(stream);
  Reader reader(*stream);
  REQUIRE(reader.pieces(1).size() == 1);  // retry and hello
  // Three events of about 700 bytes, read from the store at once.
  fake.set_open(false);
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i)
    ids.push_back("id: " + std::to_string(fake.publish(big_entry(i, 600))) + "\n");
  REQUIRE(fake.wait_for_reader());
  fake.set_open(true);
  const auto pieces = reader.pieces(3);
  REQUIRE(pieces.size() == 3);
  CHECK(pieces[1].find(ids[0]) != std::string::npos);
  CHECK(pieces[1].find(ids[1]) != std::string::npos);  // the piece that reached 1,000 bytes
  CHECK(pieces[1].find(ids[2]) == std::string::npos);
  CHECK(pieces[2].find(ids[2]) != std::string::npos);
}

TEST_CASE("sse: a slow client's stream ends before its buffer passes max_buffered") {
  FakeBackend fake;
  SseOptions o;
  o.max_buffered = 1'000;
  SseHub hub(fake, o);
  auto slow = hub.open("o/n", std::nullopt);  // reads only when the test says
  REQUIRE(slow);
  // Takes what the slow stream holds now (nullopt: it ended).
  auto take = [&] {
    std::optional<std::string> got;
    bool called = false;
    (*slow)->next([&](std::optional<std::string> piece) {
      called = true;
      got = std::move(piece);
    });
    REQUIRE(called);  // something was queued, or the stream ended: answered at once
    return got;
  };
  REQUIRE(take());  // retry and hello
  // The hub feeds streams in the order they opened: once a later one has an event, the slow
  // one was given it too.
  auto fast = hub.open("o/n", std::nullopt);
  REQUIRE(fast);
  Reader after_slow(*fast);
  std::size_t seen = 1;
  auto publish = [&](int number, std::size_t bytes) {
    fake.publish(big_entry(number, bytes));
    REQUIRE(after_slow.pieces(++seen).size() == seen);
  };
  // An event larger than the whole buffer still gets through to a client that keeps up.
  publish(1, 1'500);
  auto first = take();
  REQUIRE(first);
  CHECK(first->find(std::string(1'500, 'p')) != std::string::npos);
  // Two that together would pass it end the stream (the client resumes from the store).
  publish(2, 600);
  publish(3, 600);
  CHECK_FALSE(take());
}

// The Beast listener behind bot/http_server.hpp. One C++20 coroutine per connection, each on its
// own strand; expected errors come back as values (as_tuple), never as exceptions.
//
// Lifetimes, the tricky part:
//  * A request's answer travels through a Reply, a small mutex-protected object that holds no
//    Asio state. The Respond callback given to the handler owns a shared_ptr to it, so it stays
//    safe to call (or drop) from any thread, at any time, even after the server is gone.
//  * While the connection waits, the Reply holds a "waiter" that posts the coroutine's
//    resumption onto the connection's strand. It is taken under the Reply's mutex, and stop()
//    abandons every Reply (under the same mutex) before the io_context is destroyed, so nothing
//    is ever posted to a dead io_context.
//  * Every live connection is in a registry (id -> strand, stream, current Reply). stop() posts
//    a close onto each connection's strand, which aborts its pending read/write and wakes it if
//    it is waiting for the handler; if that does not drain within a grace period the
//    io_context is stopped outright.
#include "bot/http/http_server.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "base/text.hpp"
#include "base/this_thread.hpp"

namespace dmz {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr std::uint32_t kHeaderLimit = 16 * 1024;                // request line + headers
constexpr std::size_t kFramingLimit = 64 * 1024;                 // unparsed bytes beyond them
constexpr auto kStopGrace = std::chrono::seconds(2);             // before the io_context is stopped
constexpr auto kLingerTimeout = std::chrono::milliseconds(500);  // draining after an early error
constexpr std::size_t kLingerBytes = 1 << 20;

constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

// The meeting point of a connection waiting for something (an answer, a piece of a streamed
// body) and a callback that provides it from anywhere.
struct Slot {
  std::mutex mu;
  bool abandoned = false;        // the connection is gone or going; drop any answer
  std::function<void()> waiter;  // set while the connection waits; posts its resumption

  virtual ~Slot() = default;
  virtual bool filled_locked() const = 0;

  void abandon() {
    std::lock_guard lock(mu);
    abandoned = true;
    wake_locked();
  }
  // Wakes the connection without an answer (its keep-alive timer).
  void poke() {
    std::lock_guard lock(mu);
    wake_locked();
  }
  // Removes the waiter without running it (after the io_context has stopped for good).
  std::function<void()> take_waiter() {
    std::lock_guard lock(mu);
    abandoned = true;
    return std::exchange(waiter, nullptr);
  }

 protected:
  void wake_locked() {
    // Posting under the lock: stop() abandons under the same lock before the io_context dies.
    if (auto w = std::exchange(waiter, nullptr)) w();
  }
};

// A request's answer.
struct Reply : Slot {
  std::optional<HttpResponse> response;

  bool filled_locked() const override { return response.has_value(); }
  // First answer wins; later ones (and answers after abandon) are dropped.
  void deliver(HttpResponse r) {
    std::lock_guard lock(mu);
    if (response || abandoned) return;
    response = std::move(r);
    wake_locked();
  }
};

// One piece of a streamed body; nullopt ends the body.
struct Piece : Slot {
  bool filled = false;
  std::optional<std::string> text;

  bool filled_locked() const override { return filled; }
  void deliver(std::optional<std::string> t) {
    std::lock_guard lock(mu);
    if (filled || abandoned) return;
    filled = true;
    text = std::move(t);
    wake_locked();
  }
};

// Owned (shared) by the Respond callback: answers 500 if the handler drops it unanswered, so a
// buggy handler cannot leave a connection hanging.
struct Responder {
  explicit Responder(std::shared_ptr<Reply> r) : reply(std::move(r)) {}
  Responder(const Responder&) = delete;
  Responder& operator=(const Responder&) = delete;
  std::shared_ptr<Reply> reply;
  ~Responder() { reply->deliver(json_error(500, "internal error: the request was not answered")); }
};

// The same for a streamed body: a dropped `deliver` ends the body.
struct PieceResponder {
  explicit PieceResponder(std::shared_ptr<Piece> p) : piece(std::move(p)) {}
  PieceResponder(const PieceResponder&) = delete;
  PieceResponder& operator=(const PieceResponder&) = delete;
  std::shared_ptr<Piece> piece;
  ~PieceResponder() { piece->deliver(std::nullopt); }
};

// co_await async_wait_reply(slot, ex, use_awaitable): resumes on `ex` once the slot is filled,
// abandoned or poked.
template <class Token>
auto async_wait_reply(std::shared_ptr<Slot> reply, asio::any_io_executor ex, Token&& token) {
  return asio::async_initiate<Token, void()>(
      [reply, ex](auto handler) {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        auto resume = [h, ex] { asio::post(ex, [h] { std::move (*h)(); }); };
        std::lock_guard lock(reply->mu);
        if (reply->filled_locked() || reply->abandoned)
          resume();
        else
          reply->waiter = resume;
      },
      token);
}

// The path and query of a request target: an absolute-form target ("http://host/path?q", which
// a server must accept, RFC 9112 3.2.2) is reduced to them, so that it routes as origin-form.
std::string origin_form(std::string_view target) {
  for (std::string_view scheme : {"http://", "https://"}) {
    if (target.size() < scheme.size() || ascii_lower(target.substr(0, scheme.size())) != scheme)
      continue;
    const auto rest = target.substr(scheme.size());
    const auto path = rest.find_first_of("/?");
    if (path == std::string_view::npos) return "/";
    return (rest[path] == '?' ? "/" : "") + std::string(rest.substr(path));
  }
  return std::string(target);
}

HttpRequest to_plain(const http::request<http::string_body>& req) {
  HttpRequest r;
  r.method = std::string(req.method_string());
  r.target = origin_form(req.target());
  for (const auto& field : req) {
    auto name = ascii_lower(field.name_string());
    auto [it, inserted] = r.headers.emplace(name, std::string(field.value()));
    if (!inserted) it->second += ", " + std::string(field.value());  // RFC 9110 5.3
  }
  r.body = req.body();
  return r;
}

// The transfer codings of a request, in order, from all its Transfer-Encoding fields.
std::vector<std::string> transfer_codings(const http::request_header<>& req) {
  std::vector<std::string> codings;
  auto [it, end] = req.equal_range(http::field::transfer_encoding);
  for (; it != end; ++it) {
    std::string_view rest = it->value();
    for (;;) {
      const auto comma = rest.find(',');
      auto coding = rest.substr(0, comma);
      while (!coding.empty() && (coding.front() == ' ' || coding.front() == '\t'))
        coding.remove_prefix(1);
      while (!coding.empty() && (coding.back() == ' ' || coding.back() == '\t'))
        coding.remove_suffix(1);
      if (!coding.empty()) codings.push_back(ascii_lower(coding));
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  return codings;
}

// nullopt when the body's framing is one Beast reads as the client meant it: none, a
// Content-Length, or Transfer-Encoding exactly `chunked`. Anything else (another coding, chunked
// twice or not last, an empty field, Transfer-Encoding on HTTP/1.0) Beast would read as no body
// or a wrong one, and what follows as the next request: a request smuggled past a proxy that
// frames it otherwise. Such a request is refused and its connection closed (RFC 9112 6.1, 6.3).
std::optional<HttpResponse> framing_refusal(const http::request_header<>& req) {
  if (req.count(http::field::transfer_encoding) == 0) return std::nullopt;
  if (req.version() < 11) return json_error(400, "Transfer-Encoding in an HTTP/1.0 request");
  const auto codings = transfer_codings(req);
  if (codings.empty()) return json_error(400, "an empty Transfer-Encoding");
  const auto chunked = std::count(codings.begin(), codings.end(), "chunked");
  if (chunked > 1 || (chunked == 1 && codings.back() != "chunked"))
    return json_error(400, "chunked must be the last transfer coding, and only once");
  for (const auto& coding : codings)
    if (coding != "chunked")
      return json_error(501, "transfer coding not supported: " + coding.substr(0, 40));
  return std::nullopt;
}

// nullopt when the Host fields are as RFC 9112 3.2 wants them: one, or none on HTTP/1.0.
std::optional<HttpResponse> host_refusal(const http::request_header<>& req) {
  const auto hosts = req.count(http::field::host);
  if (hosts > 1) return json_error(400, "more than one Host field");
  if (hosts == 0 && req.version() >= 11) return json_error(400, "an HTTP/1.1 request without Host");
  return std::nullopt;
}

http::response<http::string_body> to_beast(const HttpResponse& r, unsigned version,
                                           bool keep_alive) {
  http::response<http::string_body> res;
  res.version(version);
  res.result(static_cast<unsigned>(r.status));
  res.set(http::field::server, "dmzbot");
  res.set(http::field::content_type, r.content_type);
  for (const auto& [name, value] : r.headers) res.set(name, value);
  // 1xx, 204 and 304 carry no body (prepare_payload would throw on one).
  const bool bodiless = r.status < 200 || r.status == 204 || r.status == 304;
  if (!bodiless) res.body() = r.body;
  res.keep_alive(keep_alive);
  if (!keep_alive) res.set(http::field::connection, "close");
  res.prepare_payload();
  return res;
}

}  // namespace

struct HttpServer::Impl {
  config::Server cfg;
  Handler handler;

  struct Conn {
    asio::any_io_executor ex;
    beast::tcp_stream* stream = nullptr;
    std::shared_ptr<Slot> reply;       // the answer or body piece being waited for, if any
    std::shared_ptr<BodyStream> body;  // the streamed body being written, if any
  };
  std::mutex mu;  // guards conns, stopping, running_threads
  std::condition_variable threads_done;
  std::map<std::uint64_t, Conn> conns;
  std::uint64_t next_id = 1;
  bool stopping = false;
  int running_threads = 0;

  // Declared after the registry: destroying the io_context destroys coroutine frames, whose
  // guards unregister themselves.
  std::unique_ptr<asio::io_context> ioc;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::optional<asio::strand<asio::io_context::executor_type>> accept_strand;
  std::vector<std::thread> threads;

  // Registers a connection for the lifetime of its coroutine frame.
  class ConnGuard {
   public:
    ConnGuard(Impl& impl, asio::any_io_executor ex, beast::tcp_stream& stream) : impl_(impl) {
      std::lock_guard lock(impl_.mu);
      if (impl_.stopping) return;
      if (impl_.conns.size() >= static_cast<std::size_t>(impl_.cfg.max_connections)) {
        over_limit_ = true;
        return;
      }
      id_ = impl_.next_id++;
      impl_.conns.emplace(id_, Conn{std::move(ex), &stream, nullptr});
    }
    ~ConnGuard() {
      if (!id_) return;
      std::lock_guard lock(impl_.mu);
      impl_.conns.erase(id_);
    }
    bool registered() const { return id_ != 0; }
    bool over_limit() const { return over_limit_; }
    // Publishes the reply in flight so that stop() can abandon it; false when stopping.
    bool set_reply(std::shared_ptr<Slot> reply) {
      std::lock_guard lock(impl_.mu);
      auto it = impl_.conns.find(id_);
      if (impl_.stopping || it == impl_.conns.end()) return false;
      it->second.reply = std::move(reply);
      return true;
    }
    // Publishes the streamed body so that stop() can close it; false when stopping.
    bool set_body(std::shared_ptr<BodyStream> body) {
      std::lock_guard lock(impl_.mu);
      auto it = impl_.conns.find(id_);
      if (impl_.stopping || it == impl_.conns.end()) return false;
      it->second.body = std::move(body);
      return true;
    }
    ConnGuard(const ConnGuard&) = delete;
    ConnGuard& operator=(const ConnGuard&) = delete;

   private:
    Impl& impl_;
    std::uint64_t id_ = 0;
    bool over_limit_ = false;
  };

  // `head_only`: the answer to a HEAD, its header (with the GET's Content-Length) and no body.
  asio::awaitable<void> write(beast::tcp_stream& stream, const HttpResponse& r, unsigned version,
                              bool keep_alive, bool& ok, bool head_only = false) {
    auto res = to_beast(r, version, keep_alive);
    stream.expires_after(cfg.read_timeout);
    if (head_only) {
      http::response_serializer<http::string_body> header(res);
      auto [ec, n] = co_await http::async_write_header(stream, header, tuple_awaitable);
      ok = !ec;
      co_return;
    }
    auto [ec, n] = co_await http::async_write(stream, res, tuple_awaitable);
    ok = !ec;
  }

  // After answering an error before the whole request was read: stop sending, then read and
  // discard for a moment so that the client sees the answer rather than a reset.
  asio::awaitable<void> linger_close(beast::tcp_stream& stream) {
    error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    std::vector<char> sink(16 * 1024);
    std::size_t drained = 0;
    stream.expires_after(kLingerTimeout);
    while (drained < kLingerBytes) {
      auto [rec, n] = co_await stream.async_read_some(asio::buffer(sink), tuple_awaitable);
      if (rec) break;
      drained += n;
    }
    stream.close();
  }

  // Answers `r` with Connection: close to a request that was not (wholly) read, then lingers.
  asio::awaitable<void> refuse(beast::tcp_stream& stream, const HttpResponse& r) {
    bool ok = false;
    co_await write(stream, r, 11, false, ok);
    if (ok) co_await linger_close(stream);
  }

  asio::awaitable<bool> write_piece(beast::tcp_stream& stream, const std::string& text,
                                    bool chunked) {
    stream.expires_after(cfg.read_timeout);
    if (chunked) {
      auto [ec, n] =
          co_await asio::async_write(stream, http::make_chunk(asio::buffer(text)), tuple_awaitable);
      co_return !ec;
    }
    auto [ec, n] = co_await asio::async_write(stream, asio::buffer(text), tuple_awaitable);
    co_return !ec;
  }

  // Writes `head` and then its body piece by piece (chunked on HTTP/1.1), with keep-alive
  // comments while no piece comes, until the body ends, its time is up, the client goes or the
  // server stops. The body is closed in every case.
  asio::awaitable<void> stream_body(beast::tcp_stream& stream, const HttpResponse& head,
                                    unsigned version, ConnGuard& guard, asio::any_io_executor ex) {
    const std::shared_ptr<BodyStream> body = head.stream;
    struct Closer {
      std::shared_ptr<BodyStream> body;
      ~Closer() { body->close(); }
    } closer{body};
    if (!guard.set_body(body)) co_return;

    http::response<http::empty_body> res{static_cast<http::status>(head.status), version};
    res.set(http::field::server, "dmzbot");
    res.set(http::field::content_type, head.content_type);
    for (const auto& [name, value] : head.headers) res.set(name, value);
    const bool chunked = version >= 11;
    if (chunked) res.chunked(true);
    res.keep_alive(false);  // the connection ends with the body
    http::response_serializer<http::empty_body> sr{res};
    stream.expires_after(cfg.read_timeout);
    auto [hec, hn] = co_await http::async_write_header(stream, sr, tuple_awaitable);
    if (hec) co_return;

    // A client that leaves is noticed at once, not at the next keep-alive write (up to 15 s
    // later, holding one of the few stream slots): a read stays posted on the socket, where the
    // client sends nothing more, and its end (EOF, a reset, or stray bytes, which end the stream
    // too) wakes the loop. Its handler runs on the connection's strand, as this coroutine does,
    // and touches only what it shares.
    struct Departure {
      bool gone = false;
      std::shared_ptr<Piece> waiting;
      std::array<char, 64> sink{};
    };
    auto departure = std::make_shared<Departure>();
    stream.socket().async_read_some(asio::buffer(departure->sink),
                                    [departure](error_code, std::size_t) {
                                      departure->gone = true;
                                      if (departure->waiting) departure->waiting->poke();
                                    });

    const auto end_at = std::chrono::steady_clock::now() + body->max_duration;
    for (bool ended = false; !ended;) {
      auto piece = std::make_shared<Piece>();
      if (!guard.set_reply(piece)) co_return;
      departure->waiting = piece;
      {
        auto responder = std::make_shared<PieceResponder>(piece);
        body->next(
            [responder](std::optional<std::string> t) { responder->piece->deliver(std::move(t)); });
      }
      std::optional<std::string> text;
      for (;;) {
        const auto now = std::chrono::steady_clock::now();
        if (now >= end_at) {
          ended = true;
          break;
        }
        asio::steady_timer timer(
            ex, std::min<std::chrono::steady_clock::duration>(body->keepalive, end_at - now));
        timer.async_wait([piece](error_code ec) {
          if (!ec) piece->poke();
        });
        if (departure->gone) co_return;
        co_await async_wait_reply(piece, ex, asio::use_awaitable);
        timer.cancel();
        if (departure->gone) co_return;
        bool filled = false, abandoned = false;
        {
          std::lock_guard lock(piece->mu);
          filled = piece->filled;
          abandoned = piece->abandoned;
          if (filled) text = std::move(piece->text);
        }
        if (abandoned) co_return;  // stopping
        if (filled) {
          ended = !text;
          break;
        }
        // Nothing for a while: a comment keeps proxies and the client from timing out, and
        // finds a client that left.
        if (!co_await write_piece(stream, body->keepalive_text, chunked)) co_return;
      }
      if (!ended && !text->empty() && !co_await write_piece(stream, *text, chunked)) co_return;
    }
    guard.set_reply(nullptr);
    if (chunked) {
      stream.expires_after(cfg.read_timeout);
      auto [ec, n] = co_await asio::async_write(stream, http::make_chunk_last(), tuple_awaitable);
      if (ec) co_return;
    }
    error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  asio::awaitable<void> session(beast::tcp_stream stream) {
    auto ex = co_await asio::this_coro::executor;
    ConnGuard guard(*this, ex, stream);
    if (guard.over_limit()) {  // refuse politely without reading: the client may retry later
      auto busy = json_error(
          503, "too many connections (" + std::to_string(cfg.max_connections) + "); retry later");
      busy.headers.emplace_back("Retry-After", "1");
      co_await refuse(stream, busy);
      co_return;
    }
    if (!guard.registered()) co_return;  // accepted just as stop() began
    // Capped: body_limit counts only chunk data, and Beast bounds neither a chunk's extensions
    // nor the trailer, which would otherwise grow the buffer until the read timeout. The body
    // is copied out as it is parsed, so the cap is on what waits unparsed.
    beast::flat_buffer buffer(kHeaderLimit + kFramingLimit);
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(kHeaderLimit);
      parser.body_limit(cfg.body_limit);

      // One deadline for the whole request, headers and body: not one per phase.
      stream.expires_after(cfg.read_timeout);
      auto [hec, hn] = co_await http::async_read_header(stream, buffer, parser, tuple_awaitable);
      error_code ec = hec;
      if (!ec) {
        auto refusal = framing_refusal(parser.get());
        if (!refusal) refusal = host_refusal(parser.get());
        if (refusal) {
          co_await refuse(stream, *refusal);
          co_return;
        }
      }
      if (!ec && parser.get()[http::field::expect] == "100-continue") {
        http::response<http::empty_body> cont{http::status::continue_, parser.get().version()};
        auto [cec, cn] = co_await http::async_write(stream, cont, tuple_awaitable);
        if (cec) co_return;
      }
      if (!ec && !parser.is_done()) {
        auto [bec, bn] = co_await http::async_read(stream, buffer, parser, tuple_awaitable);
        ec = bec;
      }

      if (ec == http::error::end_of_stream) {  // the client closed between requests
        error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
        co_return;
      }
      if (ec) {
        std::optional<HttpResponse> answer;
        if (ec == http::error::body_limit)
          answer = json_error(413, "body exceeds " + std::to_string(cfg.body_limit) + " bytes");
        else if (ec == http::error::header_limit)
          answer =
              json_error(431, "request header exceeds " + std::to_string(kHeaderLimit) + " bytes");
        else if (ec == http::error::buffer_overflow)
          answer = json_error(431, "request framing (a chunk header or trailer) exceeds " +
                                       std::to_string(kFramingLimit) + " bytes");
        else if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
                 ec != http::error::partial_message)
          answer = json_error(400, "bad request: " + ec.message());
        // Anything else (timeout, reset, cancellation, truncated request) just closes.
        if (answer) co_await refuse(stream, *answer);
        co_return;
      }

      auto& req = parser.get();
      const bool keep_alive = req.keep_alive();
      const unsigned version = req.version();
      const bool head = req.method() == http::verb::head;

      auto reply = std::make_shared<Reply>();
      if (!guard.set_reply(reply)) co_return;
      {
        auto responder = std::make_shared<Responder>(reply);
        Respond respond = [responder](HttpResponse r) { responder->reply->deliver(std::move(r)); };
        try {
          HttpRequest plain = to_plain(req);
          if (head) plain.method = "GET";  // RFC 9110 9.3.2: a GET whose answer has no body
          handler(std::move(plain), std::move(respond));
        } catch (const std::exception& e) {
          reply->deliver(json_error(500, std::string("internal error: ") + e.what()));
        } catch (...) {
          reply->deliver(json_error(500, "internal error"));
        }
      }
      // A service that never answers (a stuck engine) must not hold the connection forever.
      asio::steady_timer answer_deadline(ex, cfg.answer_timeout);
      answer_deadline.async_wait([reply, seconds = cfg.answer_timeout.count()](error_code ec) {
        if (ec) return;
        HttpResponse late =
            json_error(503, "no answer within " + std::to_string(seconds) +
                                "s; the request may still take effect, check before retrying");
        late.headers.emplace_back("Retry-After", std::to_string(seconds));
        reply->deliver(std::move(late));
      });
      co_await async_wait_reply(reply, ex, asio::use_awaitable);
      answer_deadline.cancel();
      std::optional<HttpResponse> answer;
      {
        std::lock_guard lock(reply->mu);
        if (!reply->abandoned) answer = std::move(reply->response);
      }
      guard.set_reply(nullptr);
      if (!answer) co_return;        // stopping
      if (answer->stream && head) {  // a stream's header, then the connection ends
        answer->stream->close();
        answer->stream.reset();
        bool ok = false;
        co_await write(stream, *answer, version, false, ok, true);
        co_return;
      }
      if (answer->stream) {
        co_await stream_body(stream, *answer, version, guard, ex);
        co_return;
      }

      bool ok = false;
      co_await write(stream, *answer, version, keep_alive, ok, head);
      if (!ok) co_return;
      if (!keep_alive) {
        error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
        co_return;
      }
    }
  }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor->async_accept(asio::make_strand(*ioc), tuple_awaitable);
      if (!acceptor->is_open()) co_return;
      if (ec) {
        if (ec == asio::error::operation_aborted) co_return;
        // EMFILE and friends: back off briefly instead of spinning.
        asio::steady_timer pause(co_await asio::this_coro::executor, std::chrono::milliseconds(50));
        co_await pause.async_wait(tuple_awaitable);
        continue;
      }
      auto ex = socket.get_executor();
      asio::co_spawn(ex, session(beast::tcp_stream(std::move(socket))), asio::detached);
    }
  }

  Result<std::uint16_t> start() {
    if (ioc) return error("HTTP server already started");
    {
      std::lock_guard lock(mu);
      stopping = false;  // a stopped server may be started again
    }
    auto started = listen_and_run();
    if (!started.ok()) {  // leave the server as if never started
      acceptor.reset();
      accept_strand.reset();
      ioc.reset();
    }
    return started;
  }

  Result<std::uint16_t> listen_and_run() {
    ioc = std::make_unique<asio::io_context>(std::max(1, cfg.threads));
    accept_strand.emplace(asio::make_strand(*ioc));
    error_code ec;
    tcp::resolver resolver(*ioc);
    auto endpoints = resolver.resolve(cfg.host, std::to_string(cfg.port),
                                      tcp::resolver::passive | tcp::resolver::numeric_service, ec);
    if (ec || endpoints.empty())
      return error("cannot resolve " + cfg.host + ": " + (ec ? ec.message() : "no address"));
    tcp::endpoint endpoint = endpoints.begin()->endpoint();
    acceptor = std::make_unique<tcp::acceptor>(*accept_strand);
    auto where = [&] { return cfg.host + ":" + std::to_string(cfg.port) + ": "; };
    if (acceptor->open(endpoint.protocol(), ec); ec)
      return error("cannot listen on " + where() + ec.message());
    if (acceptor->set_option(asio::socket_base::reuse_address(true), ec); ec)
      return error("cannot listen on " + where() + ec.message());
    if (acceptor->bind(endpoint, ec); ec) return error("cannot bind " + where() + ec.message());
    if (acceptor->listen(asio::socket_base::max_listen_connections, ec); ec)
      return error("cannot listen on " + where() + ec.message());
    auto port = acceptor->local_endpoint(ec).port();
    if (ec) return error("cannot listen on " + where() + ec.message());

    asio::co_spawn(*accept_strand, accept_loop(), asio::detached);
    int n = std::max(1, cfg.threads);
    {
      std::lock_guard lock(mu);
      running_threads = n;
    }
    for (int i = 0; i < n; ++i)
      threads.emplace_back([this] {
        name_this_thread("http");
        for (;;) {
          try {
            ioc->run();
            break;
          } catch (...) {  // a handler threw through Asio; keep serving
          }
        }
        std::lock_guard lock(mu);
        --running_threads;
        threads_done.notify_all();
      });
    return port;
  }

  void stop() {
    if (!ioc) return;
    std::vector<std::pair<asio::any_io_executor, std::uint64_t>> to_close;
    {
      std::lock_guard lock(mu);
      stopping = true;
      for (const auto& [id, conn] : conns) to_close.emplace_back(conn.ex, id);
    }
    asio::post(*accept_strand, [this] {
      error_code ignored;
      acceptor->close(ignored);
    });
    for (auto& [ex, id] : to_close)
      asio::post(ex, [this, id = id] {
        std::shared_ptr<Slot> reply;
        std::shared_ptr<BodyStream> body;
        {
          std::lock_guard lock(mu);
          auto it = conns.find(id);
          if (it == conns.end()) return;
          it->second.stream->close();  // on the connection's strand: aborts its read/write
          reply = it->second.reply;
          body = it->second.body;
        }
        if (reply) reply->abandon();
        if (body) body->close();
      });
    to_close.clear();  // strand executors must not outlive the io_context
    {
      std::unique_lock lock(mu);
      threads_done.wait_for(lock, kStopGrace, [&] { return running_threads == 0; });
    }
    ioc->stop();  // whatever did not drain in time
    for (auto& t : threads) t.join();
    threads.clear();

    // No thread runs the io_context now. Abandon the replies still waited on, so that a late
    // Respond posts nothing; dropping their waiters posts the frames' destruction to the
    // stopped io_context, which destroys them below.
    std::vector<std::function<void()>> waiters;
    {
      std::lock_guard lock(mu);
      for (auto& [id, conn] : conns)
        if (conn.reply) waiters.push_back(conn.reply->take_waiter());
    }
    waiters.clear();
    acceptor.reset();
    accept_strand.reset();
    ioc.reset();  // destroys the remaining coroutine frames; their guards unregister
  }
};

HttpServer::HttpServer(config::Server cfg, Handler handler) : impl_(std::make_unique<Impl>()) {
  impl_->cfg = std::move(cfg);
  impl_->handler = std::move(handler);
}

HttpServer::~HttpServer() { stop(); }

Result<std::uint16_t> HttpServer::start() { return impl_->start(); }

void HttpServer::stop() { impl_->stop(); }

}  // namespace dmz

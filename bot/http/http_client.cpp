// The synchronous client behind bot/http_client.hpp. Beast's stream timeouts only apply to
// asynchronous operations, so each call runs its own io_context and drives async operations to
// completion one at a time. BeastHttpClient gives each call one deadline for all its steps, and
// stop() ends the calls under way by stopping their io_contexts.
#include "bot/http/http_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace dmz {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr std::uint64_t kResponseBodyLimit = 64ull << 20;
constexpr std::uint32_t kHeaderLimit = 64 * 1024;  // status line and headers
// Unparsed bytes beyond the header limit. Beast bounds neither a chunk's extensions nor the
// trailer (max_body counts chunk data only), so an unbounded buffer would grow for as long as a
// server sends them; the body is copied out as it is parsed, so this caps only what waits.
constexpr std::size_t kFramingLimit = 64 * 1024;
constexpr std::size_t kBufferLimit = kHeaderLimit + kFramingLimit;

// Why reading the answer failed.
std::string read_failure(error_code ec) {
  if (ec == http::error::buffer_overflow)
    return "answer framing too large (a chunk header or trailer over " +
           std::to_string(kFramingLimit) + " bytes)";
  return ec.message();
}

// Runs the operation started by `start(callback)` until it completes; returns its error.
template <class Start>
error_code run_one(asio::io_context& ioc, Start&& start) {
  error_code result = asio::error::would_block;
  start([&result](error_code ec, auto&&...) { result = ec; });
  ioc.restart();
  ioc.run();
  return result;
}

}  // namespace

Result<ClientResponse> http_request(const std::string& host, std::uint16_t port,
                                    const std::string& method, const std::string& target,
                                    const std::string& body,
                                    const std::vector<std::pair<std::string, std::string>>& headers,
                                    std::chrono::milliseconds timeout) {
  const std::string where = method + " http://" + host + ":" + std::to_string(port) + target;
  try {
    asio::io_context ioc;
    // A synchronous lookup, outside the deadline: callers pass numeric addresses.
    tcp::resolver resolver(ioc);
    error_code ec;
    auto endpoints = resolver.resolve(host, std::to_string(port), ec);
    if (ec) return error(where + ": cannot resolve " + host + ": " + ec.message());

    beast::tcp_stream stream(ioc);
    stream.expires_after(timeout);
    ec = run_one(ioc, [&](auto cb) { stream.async_connect(*endpoints, cb); });
    if (ec) return error(where + ": connect: " + ec.message());

    http::request<http::string_body> req;
    req.version(11);
    auto verb = http::string_to_verb(method);
    if (verb == http::verb::unknown)
      req.method_string(method);
    else
      req.method(verb);
    req.target(target);
    req.set(http::field::host, host + ":" + std::to_string(port));
    req.set(http::field::user_agent, "dmzbot");
    bool has_content_type = false;
    for (const auto& [name, value] : headers) {
      if (beast::iequals(name, "content-type")) has_content_type = true;
      req.set(name, value);
    }
    if (!body.empty() && !has_content_type) req.set(http::field::content_type, "application/json");
    req.body() = body;
    req.keep_alive(false);
    req.prepare_payload();

    stream.expires_after(timeout);
    ec = run_one(ioc, [&](auto cb) { http::async_write(stream, req, cb); });
    if (ec) return error(where + ": write: " + ec.message());

    beast::flat_buffer buffer(kBufferLimit);
    http::response_parser<http::string_body> parser;
    parser.header_limit(kHeaderLimit);
    parser.body_limit(kResponseBodyLimit);
    stream.expires_after(timeout);
    ec = run_one(ioc, [&](auto cb) { http::async_read(stream, buffer, parser, cb); });
    if (ec) return error(where + ": read: " + read_failure(ec));

    auto& res = parser.get();
    ClientResponse out;
    out.status = static_cast<int>(res.result_int());
    out.content_type = std::string(res[http::field::content_type]);
    out.retry_after = std::string(res[http::field::retry_after]);
    out.body = std::move(res.body());
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    return out;
  } catch (const std::exception& e) {  // e.g. bad_alloc, invalid header characters
    return error(where + ": " + e.what());
  }
}

}  // namespace dmz

// ---- BeastHttpClient -------------------------------------------------------------------------

#include <atomic>
#include <boost/asio/ssl.hpp>
#include <boost/beast/ssl.hpp>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "base/text.hpp"
#include "base/url.hpp"

namespace dmz {

namespace ssl = boost::asio::ssl;
using SteadyTime = std::chrono::steady_clock::time_point;

namespace {

// A name lookup on a thread of its own (see Impl::resolve), shared with that thread, which may
// outlive the call.
struct Lookup {
  std::mutex mu;
  std::condition_variable done_cv;
  bool done = false;
  bool cancelled = false;  // by stop(): the call waits no longer
  error_code ec;
  tcp::resolver::results_type endpoints;

  void cancel() {
    std::lock_guard lock(mu);
    cancelled = true;
    done_cv.notify_all();
  }
};

// One send() under way: what stop() ends.
struct Call {
  asio::io_context ioc;
  SteadyTime deadline;  // of the whole call: every step ends by then
  std::atomic<bool> stopped{false};
  std::shared_ptr<Lookup> lookup;  // while the name is looked up (guarded by Impl::mu)
};

// run_one for a call that stop() may end: operation_aborted once it has.
template <class Start>
error_code run_step(Call& call, Start&& start) {
  error_code result = asio::error::would_block;
  start([&result](error_code ec, auto&&...) { result = ec; });
  call.ioc.restart();
  // stop() marks the call before it stops the io_context: either the mark is seen here, or
  // the restart above came first and the run below is ended by stop().
  if (!call.stopped) call.ioc.run();
  return call.stopped ? error_code(asio::error::operation_aborted) : result;
}

// "where: step: why", or "where: stopping" once stop() ended the call.
Error step_failed(const Call& call, const std::string& where, const std::string& step,
                  const std::string& why) {
  if (call.stopped) return unavailable(where + ": stopping");
  return unavailable(where + ": " + step + ": " + why);
}

// Writes `req` and reads the answer on `stream` (plain or TLS), by the call's deadline.
template <class Stream>
Result<HttpReply> exchange(Call& call, Stream& stream, beast::tcp_stream& tcp,
                           http::request<http::string_body>& req, const HttpClientOptions& options,
                           const std::string& where) {
  tcp.expires_at(call.deadline);
  error_code ec = run_step(call, [&](auto cb) { http::async_write(stream, req, cb); });
  if (ec) return step_failed(call, where, "write", ec.message());
  beast::flat_buffer buffer(kBufferLimit);
  http::response_parser<http::string_body> parser;
  parser.header_limit(kHeaderLimit);
  parser.body_limit(options.max_body);
  tcp.expires_at(call.deadline);
  ec = run_step(call, [&](auto cb) { http::async_read(stream, buffer, parser, cb); });
  if (ec) return step_failed(call, where, "read", read_failure(ec));
  auto& res = parser.get();
  HttpReply out;
  out.status = static_cast<int>(res.result_int());
  for (const auto& field : res) {
    out.headers[ascii_lower(field.name_string())] = std::string(field.value());
  }
  out.body = std::move(res.body());
  return out;
}

http::request<http::string_body> make_request(const HttpCall& call, const Url& url) {
  http::request<http::string_body> req;
  req.version(11);
  auto verb = http::string_to_verb(call.method);
  if (verb == http::verb::unknown)
    req.method_string(call.method);
  else
    req.method(verb);
  req.target(url.path);
  req.set(http::field::host, url.authority());
  req.set(http::field::user_agent, "dmzbot");
  for (const auto& [name, value] : call.headers) req.set(name, value);
  req.body() = call.body;
  req.keep_alive(false);
  req.prepare_payload();
  return req;
}

}  // namespace

struct BeastHttpClient::Impl {
  HttpClientOptions options;
  std::unique_ptr<ssl::context> tls;  // shared by every call (thread-safe once set up)

  std::mutex mu;  // guards stopping, calls and each call's lookup
  bool stopping = false;
  std::set<Call*> calls;

  // Registers `call` for stop(); false once stopping.
  bool enter(Call& call) {
    std::lock_guard lock(mu);
    if (stopping) return false;
    calls.insert(&call);
    return true;
  }
  void leave(Call& call) {
    std::lock_guard lock(mu);
    calls.erase(&call);
  }

  void stop() {
    std::lock_guard lock(mu);
    stopping = true;
    for (Call* call : calls) {
      call->stopped = true;
      call->ioc.stop();  // its pending step ends; send() closes the socket as it returns
      if (call->lookup) call->lookup->cancel();
    }
  }

  Result<tcp::resolver::results_type> resolve(Call& call, const std::string& host, int port);
  Result<HttpReply> send(const HttpCall& http_call);
};

BeastHttpClient::BeastHttpClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
BeastHttpClient::~BeastHttpClient() = default;

Result<std::unique_ptr<BeastHttpClient>> BeastHttpClient::create(HttpClientOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  try {
    impl->tls = std::make_unique<ssl::context>(ssl::context::tls_client);
    impl->tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                           ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                           ssl::context::no_tlsv1_1);
    impl->tls->set_verify_mode(ssl::verify_peer);
    if (impl->options.system_cas) impl->tls->set_default_verify_paths();
    if (!impl->options.ca_file.empty()) {
      error_code ec;
      impl->tls->load_verify_file(impl->options.ca_file.string(), ec);
      if (ec)
        return invalid("cannot load the CA file " + impl->options.ca_file.string() + ": " +
                       ec.message());
    }
  } catch (const std::exception& e) {
    return internal(std::string("TLS setup: ") + e.what());
  }
  return std::unique_ptr<BeastHttpClient>(new BeastHttpClient(std::move(impl)));
}

void BeastHttpClient::stop() { impl_->stop(); }

// The addresses of `host`, by the call's deadline. getaddrinfo cannot be cancelled (Asio's
// resolver.cancel() does not stop a lookup under way, and io_context waits for it), so the
// lookup runs on a thread of its own, left behind when the deadline passes or stop() comes: it
// ends when the system's resolver gives up, and its answer is dropped.
Result<tcp::resolver::results_type> BeastHttpClient::Impl::resolve(Call& call,
                                                                   const std::string& host,
                                                                   int port) {
  auto lookup = std::make_shared<Lookup>();
  {
    std::lock_guard lock(mu);
    if (call.stopped) return unavailable("stopping");
    call.lookup = lookup;
  }
  struct Forget {  // the lookup is stop()'s business only while it is waited for
    Impl& impl;
    Call& call;
    ~Forget() {
      std::lock_guard lock(impl.mu);
      call.lookup.reset();
    }
  } forget{*this, call};
  try {
    std::thread([lookup, host, port, hook = options.before_lookup] {
      if (hook) hook();
      asio::io_context own;
      tcp::resolver resolver(own);
      error_code ec;
      auto endpoints = resolver.resolve(host, std::to_string(port), ec);
      std::lock_guard lock(lookup->mu);
      lookup->ec = ec;
      lookup->endpoints = std::move(endpoints);
      lookup->done = true;
      lookup->done_cv.notify_all();
    }).detach();
  } catch (const std::system_error& e) {
    return unavailable("cannot resolve " + host + ": no thread for the lookup: " + e.what());
  }
  std::unique_lock lock(lookup->mu);
  lookup->done_cv.wait_until(lock, call.deadline,
                             [&] { return lookup->done || lookup->cancelled; });
  if (lookup->cancelled) return unavailable("stopping");
  if (!lookup->done)
    return unavailable("cannot resolve " + host + ": no answer within " +
                       std::to_string(options.timeout.count()) + " ms");
  if (lookup->ec) return unavailable("cannot resolve " + host + ": " + lookup->ec.message());
  return lookup->endpoints;
}

Result<HttpReply> BeastHttpClient::Impl::send(const HttpCall& http_call) {
  auto url = parse_url(http_call.url);
  if (!url) return url.error();
  const bool use_tls = url->scheme == "https";
  // The URL without its query: queries may carry what does not belong in a log.
  const std::string where =
      http_call.method + " " + url->origin() + url->path.substr(0, url->path.find('?'));
  Call call;
  call.deadline = std::chrono::steady_clock::now() + options.timeout;
  if (!enter(call)) return unavailable(where + ": stopping");
  struct Leave {  // declared before the streams: they close before stop() forgets the call
    Impl& impl;
    Call& call;
    ~Leave() { impl.leave(call); }
  } leave{*this, call};
  try {
    auto endpoints = resolve(call, url->host, url->port);
    if (!endpoints) return unavailable(where + ": " + endpoints.message());
    auto req = make_request(http_call, *url);

    if (!use_tls) {
      beast::tcp_stream stream(call.ioc);
      stream.expires_at(call.deadline);
      error_code ec = run_step(call, [&](auto cb) { stream.async_connect(*endpoints, cb); });
      if (ec) return step_failed(call, where, "connect", ec.message());
      auto out = exchange(call, stream, stream, req, options, where);
      stream.socket().shutdown(tcp::socket::shutdown_both, ec);
      return out;
    }

    beast::ssl_stream<beast::tcp_stream> stream(call.ioc, *tls);
    // SNI (not for an address), and the certificate must name the host (or the address).
    error_code parsed;
    asio::ip::make_address(url->host, parsed);
    if (parsed && !SSL_set_tlsext_host_name(stream.native_handle(), url->host.c_str()))
      return unavailable(where + ": cannot set the TLS server name");
    stream.set_verify_callback(ssl::host_name_verification(url->host));
    auto& tcp_layer = beast::get_lowest_layer(stream);
    tcp_layer.expires_at(call.deadline);
    error_code ec = run_step(call, [&](auto cb) { tcp_layer.async_connect(*endpoints, cb); });
    if (ec) return step_failed(call, where, "connect", ec.message());
    tcp_layer.expires_at(call.deadline);
    ec = run_step(call, [&](auto cb) { stream.async_handshake(ssl::stream_base::client, cb); });
    if (ec) return step_failed(call, where, "TLS", ec.message());
    auto out = exchange(call, stream, tcp_layer, req, options, where);
    // No TLS close_notify exchange: the answer is complete (Content-Length or chunked) and the
    // connection is not reused; closing the socket is enough.
    tcp_layer.socket().shutdown(tcp::socket::shutdown_both, ec);
    return out;
  } catch (const std::exception& e) {  // bad_alloc, header values Beast refuses
    return unavailable(where + ": " + e.what());
  }
}

Result<HttpReply> BeastHttpClient::send(const HttpCall& call) { return impl_->send(call); }

}  // namespace dmz

// The synchronous client behind bot/http_client.hpp. Beast's stream timeouts only apply to
// asynchronous operations, so each call runs its own io_context and drives async operations to
// completion one at a time; every step gets the full timeout.
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

    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(kResponseBodyLimit);
    stream.expires_after(timeout);
    ec = run_one(ioc, [&](auto cb) { http::async_read(stream, buffer, parser, cb); });
    if (ec) return error(where + ": read: " + ec.message());

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

#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/ssl.hpp>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "base/text.hpp"
#include "base/url.hpp"

namespace dmz {

namespace ssl = boost::asio::ssl;

struct BeastHttpClient::Impl {
  HttpClientOptions options;
  std::unique_ptr<ssl::context> tls;  // shared by every call (thread-safe once set up)
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

namespace {

// Writes `req` and reads the answer on `stream` (plain or TLS), each step under `timeout`.
template <class Stream>
Result<HttpReply> exchange(asio::io_context& ioc, Stream& stream, beast::tcp_stream& tcp,
                           http::request<http::string_body>& req, const HttpClientOptions& options,
                           const std::string& where) {
  tcp.expires_after(options.timeout);
  error_code ec = run_one(ioc, [&](auto cb) { http::async_write(stream, req, cb); });
  if (ec) return unavailable(where + ": write: " + ec.message());
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.header_limit(64 * 1024);
  parser.body_limit(options.max_body);
  tcp.expires_after(options.timeout);
  ec = run_one(ioc, [&](auto cb) { http::async_read(stream, buffer, parser, cb); });
  if (ec) return unavailable(where + ": read: " + ec.message());
  auto& res = parser.get();
  HttpReply out;
  out.status = static_cast<int>(res.result_int());
  for (const auto& field : res) {
    out.headers[ascii_lower(field.name_string())] = std::string(field.value());
  }
  out.body = std::move(res.body());
  return out;
}

// The addresses of `host`, within options.timeout. getaddrinfo cannot be cancelled (Asio's
// resolver.cancel() does not stop a lookup under way, and io_context waits for it), so the
// lookup runs on a thread of its own, left behind when the deadline passes: it ends when the
// system's resolver gives up, and its answer is dropped.
Result<tcp::resolver::results_type> resolve(const std::string& host, int port,
                                            const HttpClientOptions& options) {
  struct Lookup {
    std::mutex mu;
    std::condition_variable done_cv;
    bool done = false;
    error_code ec;
    tcp::resolver::results_type endpoints;
  };
  auto lookup = std::make_shared<Lookup>();
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
  if (!lookup->done_cv.wait_for(lock, options.timeout, [&] { return lookup->done; }))
    return unavailable("cannot resolve " + host + ": no answer within " +
                       std::to_string(options.timeout.count()) + " ms");
  if (lookup->ec) return unavailable("cannot resolve " + host + ": " + lookup->ec.message());
  return lookup->endpoints;
}

}  // namespace

Result<HttpReply> BeastHttpClient::send(const HttpCall& call) {
  auto url = parse_url(call.url);
  if (!url) return url.error();
  const bool tls = url->scheme == "https";
  // The URL without its query: queries may carry what does not belong in a log.
  const std::string where =
      call.method + " " + url->origin() + url->path.substr(0, url->path.find('?'));
  const auto& options = impl_->options;
  try {
    asio::io_context ioc;
    auto endpoints = resolve(url->host, url->port, options);
    if (!endpoints) return unavailable(where + ": " + endpoints.message());

    http::request<http::string_body> req;
    req.version(11);
    auto verb = http::string_to_verb(call.method);
    if (verb == http::verb::unknown)
      req.method_string(call.method);
    else
      req.method(verb);
    req.target(url->path);
    req.set(http::field::host, url->authority());
    req.set(http::field::user_agent, "dmzbot");
    for (const auto& [name, value] : call.headers) req.set(name, value);
    req.body() = call.body;
    req.keep_alive(false);
    req.prepare_payload();

    if (!tls) {
      beast::tcp_stream stream(ioc);
      stream.expires_after(options.timeout);
      error_code ec = run_one(ioc, [&](auto cb) { stream.async_connect(*endpoints, cb); });
      if (ec) return unavailable(where + ": connect: " + ec.message());
      auto out = exchange(ioc, stream, stream, req, options, where);
      stream.socket().shutdown(tcp::socket::shutdown_both, ec);
      return out;
    }

    beast::ssl_stream<beast::tcp_stream> stream(ioc, *impl_->tls);
    // SNI (not for an address), and the certificate must name the host (or the address).
    error_code parsed;
    asio::ip::make_address(url->host, parsed);
    if (parsed && !SSL_set_tlsext_host_name(stream.native_handle(), url->host.c_str()))
      return unavailable(where + ": cannot set the TLS server name");
    stream.set_verify_callback(ssl::host_name_verification(url->host));
    auto& tcp_layer = beast::get_lowest_layer(stream);
    tcp_layer.expires_after(options.timeout);
    error_code ec = run_one(ioc, [&](auto cb) { tcp_layer.async_connect(*endpoints, cb); });
    if (ec) return unavailable(where + ": connect: " + ec.message());
    tcp_layer.expires_after(options.timeout);
    ec = run_one(ioc, [&](auto cb) { stream.async_handshake(ssl::stream_base::client, cb); });
    if (ec) return unavailable(where + ": TLS: " + ec.message());
    auto out = exchange(ioc, stream, tcp_layer, req, options, where);
    // No TLS close_notify exchange: the answer is complete (Content-Length or chunked) and the
    // connection is not reused; closing the socket is enough.
    tcp_layer.socket().shutdown(tcp::socket::shutdown_both, ec);
    return out;
  } catch (const std::exception& e) {  // bad_alloc, header values Beast refuses
    return unavailable(where + ": " + e.what());
  }
}

}  // namespace dmz

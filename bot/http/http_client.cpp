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
    ec = run_one(ioc, [&](auto cb) { stream.async_connect(endpoints, cb); });
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
    out.body = std::move(res.body());
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    return out;
  } catch (const std::exception& e) {  // e.g. bad_alloc, invalid header characters
    return error(where + ": " + e.what());
  }
}

}  // namespace dmz

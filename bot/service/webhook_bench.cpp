// webhook_bench: signed GitHub webhooks from @octokit/webhooks-examples posted to
// POST /webhooks/github of the real service (signature check, parse, the delivery and its
// request stored in SQLite, group-committed, then 202), beside two Node peers in the same run:
// the same requests posted the same way to @octokit/webhooks' own Node HTTP middleware (which
// keeps nothing on disk), and the same payloads verified and parsed by @octokit/webhooks in
// process (no HTTP). Prints requests per second (CLIENTS concurrent connections, as fast as
// they go: GitHub sends deliveries concurrently, each on its own connection; then the same
// CLIENTS each on one persistent connection, without the cost of a connection per request),
// and the p50/p99 latency of the answer at a fixed 1,000 requests per second (an open loop
// from one asynchronous client thread: each request on its own connection, timed from when it
// was due, so a stall counts). Target: 5x Node's rate, p99 under 5 ms. Not part of the tests:
// `cmake --build build --target webhook_bench && build/webhook_bench [SECONDS]
// [CLIENTS] [EVENT]` from the checkout, after `npm ci --prefix tests/github` (deploy/setup.sh
// --test); EVENT posts only that event's examples (which kind costs what).
// Threading: the bench's threads plus the service's.
#include <signal.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "base/crypto.hpp"
#include "base/text.hpp"
#include "bot/http/http_client.hpp"
#include "bot/http/http_server.hpp"
#include "bot/service/service.hpp"
#include "forges/github/webhook.hpp"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
using namespace std::chrono_literals;
constexpr const char* kRepo = "bench/widgets";
constexpr const char* kSecret = "webhook-bench-secret";

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "webhook_bench: %s\n", what.c_str());
  std::exit(1);
}

std::string sh(const std::string& command) {
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (!p) die("popen");
  std::string out;
  std::array<char, 4096> buf;
  for (std::size_t n; (n = fread(buf.data(), 1, buf.size(), p)) > 0;) out.append(buf.data(), n);
  if (pclose(p) != 0) die(command + ": " + out);
  return out;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5)];
}

// The checkout: DMZ_SOURCE_DIR, or the current directory (or its parent, from build/).
fs::path source_dir() {
  if (const char* d = std::getenv("DMZ_SOURCE_DIR")) return d;
  for (fs::path p : {fs::current_path(), fs::current_path().parent_path()})
    if (fs::exists(p / "tests" / "github" / "package.json")) return p;
  die("run from the checkout (or set DMZ_SOURCE_DIR)");
}

struct Delivery {
  std::string event, body, signature;
};

struct Figures {
  double rate = 0, p50 = 0, p99 = 0;
  double rate_kept = 0;  // on persistent connections (keep-alive), one per client
};

namespace asio = boost::asio;
namespace beast = boost::beast;

// One delivery posted on a connection of its own (as GitHub sends them), from the open loop's
// single client thread; the answer must be `status`. Its latency is counted from `due`.
asio::awaitable<void> post_at(std::uint16_t port, const Delivery& d, std::string id, int status,
                              SteadyClock::time_point due, double& latency_ms) {
  beast::tcp_stream stream(co_await asio::this_coro::executor);
  stream.expires_after(10s);
  co_await stream.async_connect({asio::ip::make_address("127.0.0.1"), port}, asio::use_awaitable);
  beast::http::request<beast::http::string_body> req{beast::http::verb::post, "/webhooks/github",
                                                     11};
  req.set(beast::http::field::host, "127.0.0.1");
  req.set(beast::http::field::content_type, "application/json");
  req.set("X-GitHub-Event", d.event);
  req.set("X-GitHub-Delivery", id);
  req.set("X-Hub-Signature-256", d.signature);
  req.body() = d.body;
  req.prepare_payload();
  co_await beast::http::async_write(stream, req, asio::use_awaitable);
  beast::flat_buffer buffer;
  beast::http::response<beast::http::string_body> res;
  co_await beast::http::async_read(stream, buffer, res, asio::use_awaitable);
  latency_ms = std::chrono::duration<double, std::milli>(SteadyClock::now() - due).count();
  if (static_cast<int>(res.result_int()) != status)
    die(d.event + ": " + std::to_string(res.result_int()) + " " + res.body());
  beast::error_code ignored;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
}

// The open loop: one request due every millisecond for `count` ms, each started when due
// whether or not the earlier ones were answered (so a stall counts), from one thread that does
// nothing else, so that the client's own scheduling adds as little as it can to the tail.
std::vector<double> open_loop(std::uint16_t port, int status,
                              const std::vector<Delivery>& deliveries, std::size_t count,
                              std::atomic<std::size_t>& next) {
  std::vector<double> latency(count);
  asio::io_context io;
  const auto start = SteadyClock::now() + 10ms;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        asio::steady_timer timer(io);
        for (std::size_t i = 0; i < count; ++i) {
          const auto due = start + std::chrono::microseconds(i * 1000);
          timer.expires_at(due);
          co_await timer.async_wait(asio::use_awaitable);
          const std::size_t k = next++;
          asio::co_spawn(io,
                         post_at(port, deliveries[k % deliveries.size()],
                                 "bench-" + std::to_string(k), status, due, latency[i]),
                         [](std::exception_ptr e) {
                           if (!e) return;
                           try {
                             std::rethrow_exception(e);
                           } catch (const std::exception& x) {
                             die(std::string("open loop: ") + x.what());
                           }
                         });
        }
      },
      asio::detached);
  io.run();
  return latency;
}

// Requests per second of `clients_n` threads, each running `client(until, done)` (posting until
// `until`, counting each answer in `done`).
template <class Client>
double clients_rate(int clients_n, double seconds, Client client) {
  std::atomic<std::size_t> done{0};
  const auto t0 = SteadyClock::now();
  const SteadyClock::time_point until = t0 + std::chrono::duration_cast<SteadyClock::duration>(
                                                 std::chrono::duration<double>(seconds));
  std::vector<std::thread> clients;
  for (int t = 0; t < clients_n; ++t) clients.emplace_back([&] { client(until, done); });
  for (auto& c : clients) c.join();
  return static_cast<double>(done) / std::chrono::duration<double>(SteadyClock::now() - t0).count();
}

// Requests per second from `clients_n` threads, each posting one delivery after another on one
// persistent connection (reopened only when the server closes it), as fast as they go for
// `seconds`: what the receivers do once the clients' and the kernel's cost of a connection per
// request is out of the way.

double keep_alive_rate(std::uint16_t port, int status, const std::vector<Delivery>& deliveries,
                       double seconds, int clients_n, std::atomic<std::size_t>& next) {
  return clients_rate(
      clients_n, seconds, [&](SteadyClock::time_point until, std::atomic<std::size_t>& done) {
        asio::io_context io;
        std::optional<beast::tcp_stream> stream;
        beast::flat_buffer buffer;
        while (SteadyClock::now() < until) {
          if (!stream) {
            stream.emplace(io);
            stream->connect({asio::ip::make_address("127.0.0.1"), port});
            buffer.clear();
          }
          const std::size_t i = next++;
          const Delivery& d = deliveries[i % deliveries.size()];
          beast::http::request<beast::http::string_body> req{beast::http::verb::post,
                                                             "/webhooks/github", 11};
          req.set(beast::http::field::host, "127.0.0.1");
          req.set(beast::http::field::content_type, "application/json");
          req.set("X-GitHub-Event", d.event);
          req.set("X-GitHub-Delivery", "bench-" + std::to_string(i));
          req.set("X-Hub-Signature-256", d.signature);
          req.body() = d.body;
          req.keep_alive(true);
          req.prepare_payload();
          beast::http::write(*stream, req);
          beast::http::response<beast::http::string_body> res;
          beast::http::read(*stream, buffer, res);
          if (static_cast<int>(res.result_int()) != status)
            die(d.event + ": " + std::to_string(res.result_int()) + " " + res.body());
          ++done;
          if (!res.keep_alive()) stream.reset();
        }
      });
}

// Posts the deliveries to 127.0.0.1:port/webhooks/github, each answer expected to be `status`:
// first the open loop at 1,000 per second, then from `clients_n` threads as fast as they go,
// each phase for `seconds`.
Figures measure(std::uint16_t port, int status, const std::vector<Delivery>& deliveries,
                double seconds, int clients_n, std::atomic<std::size_t>& next) {
  auto post = [&](std::size_t i) {
    const Delivery& d = deliveries[i % deliveries.size()];
    auto r = dmz::http_request("127.0.0.1", port, "POST", "/webhooks/github", d.body,
                               {{"X-GitHub-Event", d.event},
                                {"X-GitHub-Delivery", "bench-" + std::to_string(i)},
                                {"Content-Type", "application/json"},
                                {"X-Hub-Signature-256", d.signature}});
    if (!r || r->status != status)
      die(d.event + ": " + (r ? std::to_string(r->status) + " " + r->body : r.message()));
  };
  Figures f;
  // 1. A fixed 1,000 per second, first, so that no backlog of the second phase's handling is
  // still running.
  const auto latency =
      open_loop(port, status, deliveries, static_cast<std::size_t>(seconds * 1000), next);
  f.p50 = percentile(latency, 0.5);
  f.p99 = percentile(latency, 0.99);

  // 2. As fast as the clients go.
  f.rate = clients_rate(clients_n, seconds,
                        [&](SteadyClock::time_point until, std::atomic<std::size_t>& done) {
                          while (SteadyClock::now() < until) {
                            post(next++);
                            ++done;
                          }
                        });
  f.rate_kept = keep_alive_rate(port, status, deliveries, seconds, clients_n, next);
  return f;
}

// The in-process peer of @octokit/webhooks' verifyAndReceive: what the adapter does with each
// delivery before it is stored (signature, payload, parse into events), on one thread, as fast
// as it goes for `seconds`. Per second.
double in_process_rate(const std::vector<Delivery>& deliveries, double seconds) {
  dmz::forges::github::WebhookSettings settings;
  settings.repo = kRepo;
  std::vector<dmz::forges::InboundRequest> requests;
  for (std::size_t i = 0; i < deliveries.size(); ++i)
    requests.push_back({{{"content-type", "application/json"},
                         {"x-github-event", deliveries[i].event},
                         {"x-github-delivery", "bench-" + std::to_string(i)},
                         {"x-hub-signature-256", deliveries[i].signature}},
                        deliveries[i].body});
  std::size_t done = 0;
  const auto t0 = SteadyClock::now();
  const auto until = t0 + std::chrono::duration<double>(seconds);
  for (; SteadyClock::now() < until; ++done) {
    const auto& r = requests[done % requests.size()];
    auto delivery = dmz::forges::github::read_delivery(settings, kSecret, r, 0);
    if (!delivery) die(r.header("x-github-event") + ": " + delivery.message());
  }
  return static_cast<double>(done) / std::chrono::duration<double>(SteadyClock::now() - t0).count();
}

// What any receiver must pay at least in process: the HMAC-SHA256 of each body against its
// signature (the rest, parse and dispatch, only adds). Per second, on one thread.
double hmac_only_rate(const std::vector<Delivery>& deliveries, double seconds) {
  std::size_t done = 0;
  const auto t0 = SteadyClock::now();
  const auto until = t0 + std::chrono::duration<double>(seconds);
  for (; SteadyClock::now() < until; ++done) {
    const Delivery& d = deliveries[done % deliveries.size()];
    if (!dmz::constant_time_equal("sha256=" + dmz::to_hex(dmz::hmac_sha256(kSecret, d.body)),
                                  d.signature))
      die(d.event + ": bad signature");
  }
  return static_cast<double>(done) / std::chrono::duration<double>(SteadyClock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 3;
  if (seconds <= 0) die("SECONDS must be positive");
  const int clients_n = argc > 2 ? std::atoi(argv[2]) : 16;
  if (clients_n <= 0 || clients_n > 256) die("CLIENTS must be 1..256");
  std::signal(SIGPIPE, SIG_IGN);
  spdlog::set_level(spdlog::level::off);  // no API and an empty remote: their errors are noise
  const fs::path src = source_dir();
  const fs::path examples =
      src / "tests/github/node_modules/@octokit/webhooks-examples/api.github.com/index.json";
  std::ifstream in(examples);
  if (!in) die("no " + examples.string() + ": run `npm ci --prefix tests/github`");
  const json corpus = json::parse(in);

  // Every example, about this repository, signed.
  std::vector<Delivery> deliveries;
  const std::string only = argc > 3 ? argv[3] : "";
  for (const auto& event : corpus)
    for (json payload : event["examples"]) {
      if (!only.empty() && event["name"] != only) continue;
      payload["repository"] = {
          {"full_name", kRepo}, {"name", "widgets"}, {"owner", {{"login", "bench"}}}};
      std::string body = payload.dump();
      deliveries.push_back({event["name"].get<std::string>(), body,
                            "sha256=" + dmz::to_hex(dmz::hmac_sha256(kSecret, body))});
    }
  // Before anything is measured: every phase cycles through the deliveries.
  if (deliveries.empty()) die("no example of event " + only);

  std::string pattern = (fs::temp_directory_path() / "webhook-bench-XXXXXX").string();
  if (!mkdtemp(pattern.data())) die("mkdtemp");
  const fs::path dir = pattern;
  const std::string origin = (dir / "origin.git").string();
  sh("git init -q --bare -b master " + dmz::sh_quote(origin));

  dmz::config::Config cfg;
  cfg.data_dir = dir / "data";
  cfg.server.port = 0;
  cfg.server.threads = 1;
  dmz::config::Repo repo;
  repo.name = kRepo;
  repo.forge = "github";
  repo.remote = origin;
  repo.required_checks = {"build"};
  dmz::config::GitHub settings;
  settings.api_url = "https://127.0.0.1:9";  // nothing answers: webhooks need no API
  settings.webhook_secret = dmz::config::Secret(kSecret);
  settings.token = dmz::config::Secret("bench-token");
  settings.merge_masters = {"octocat"};
  repo.github = settings;
  cfg.repos.push_back(repo);
  dmz::Service::Options options;
  options.reconcile_interval = 3'600'000ms;
  // The follow-ups some examples ask for (check suites read back) fail at once against the
  // absent API; without a backoff they do not hold up the service's stop.
  options.api_backoff = 1ms;
  auto service = dmz::Service::start(cfg, options);
  if (!service) die(service.message());
  dmz::HttpServer server(cfg.server, dmz::make_api(**service));
  auto port = server.start();
  if (!port) die(port.message());

  const double ours_in_process = in_process_rate(deliveries, seconds);
  const double hmac_alone = hmac_only_rate(deliveries, seconds);
  std::atomic<std::size_t> next{0};
  const Figures ours = measure(*port, 202, deliveries, seconds, clients_n, next);
  server.stop();
  (*service)->stop();

  // The same server answering 202 to each request it has read, with no work: the most the
  // clients and the kernel let any receiver answer on this machine.
  dmz::HttpServer empty(cfg.server, [](dmz::HttpRequest, dmz::Respond respond) {
    respond({.status = 202, .body = "{}"});
  });
  auto empty_port = empty.start();
  if (!empty_port) die(empty_port.message());
  const Figures nothing = measure(*empty_port, 202, deliveries, seconds, clients_n, next);
  empty.stop();

  // The same requests to @octokit/webhooks' Node HTTP middleware.
  const std::string script = (src / "tests/github/webhooks_server.mjs").string();
  FILE* node_server = popen(
      ("WEBHOOK_SECRET=" + dmz::sh_quote(kSecret) + " exec node " + dmz::sh_quote(script)).c_str(),
      "r");
  if (!node_server) die("popen node");
  std::array<char, 256> line{};
  if (!fgets(line.data(), line.size(), node_server)) die("node server: no port");
  const json listening = json::parse(line.data(), nullptr, false);
  if (!listening.is_object() || !listening.contains("port"))
    die("node server: " + std::string(line.data()));
  const auto node_port = listening["port"].get<std::uint16_t>();
  const Figures node_http = measure(node_port, 200, deliveries, seconds, clients_n, next);
  (void)dmz::http_request("127.0.0.1", node_port, "GET", "/quit", "");
  pclose(node_server);

  // 3. The same payloads through @octokit/webhooks (verify, parse, dispatch) on Node.
  json items = json::array();
  for (const auto& d : deliveries)
    items.push_back({{"event", d.event}, {"body", d.body}, {"signature", d.signature}});
  std::ofstream(dir / "deliveries.json") << json{{"secret", kSecret}, {"items", items}}.dump();
  const std::string node_out =
      sh("node " + dmz::sh_quote((src / "tests/github/webhooks_bench.mjs").string()) + " " +
         dmz::sh_quote((dir / "deliveries.json").string()) + " " + std::to_string(seconds));
  fs::remove_all(dir);
  const auto brace = node_out.find('{');
  const json node =
      brace == std::string::npos ? json() : json::parse(node_out.substr(brace), nullptr, false);
  const auto field = [&](const char* name) { return node.value(name, json()); };
  if (!node.is_object() || !field("rate").is_number() || !field("done").is_number_unsigned() ||
      !field("errors").is_number_unsigned() || !field("handled").is_number_unsigned())
    die("node: no {rate, done, errors, handled} in: " + node_out);
  // Node's rate counts every delivery it tried: it is only Node's rate of verifying and parsing
  // if each one passed and reached the handler.
  const auto node_done = field("done").get<std::uint64_t>(),
             node_errors = field("errors").get<std::uint64_t>(),
             node_handled = field("handled").get<std::uint64_t>();
  if (node_done == 0 || node_errors != 0 || node_handled != node_done)
    die("node: @octokit/webhooks refused deliveries: " + std::to_string(node_errors) + " of " +
        std::to_string(node_done) + " failed, " + std::to_string(node_handled) +
        " handled; first: " +
        (field("first_error").is_string() ? field("first_error").get<std::string>() : "none"));
  const double node_rate = field("rate").get<double>();

  std::printf("webhook_bench: %zu example payloads, %g s per phase, %d clients, 127.0.0.1\n",
              deliveries.size(), seconds, clients_n);
  std::printf("%-52s %10s %12s %12s %10s\n", "", "per second", "p50 1,000/s", "p99 1,000/s",
              "keep-alive");
  auto row = [](const char* what, const Figures& f) {
    std::printf("%-52s %10.0f %9.2f ms %9.2f ms %10.0f\n", what, f.rate, f.p50, f.p99, f.rate_kept);
  };
  row("dmzbot (HTTP, request durable in SQLite, 202)", ours);
  row("@octokit/webhooks Node middleware (HTTP, 200)", node_http);
  row("no work (the same server, 202 once read)", nothing);
  std::printf("%-52s %10.0f\n", "dmzbot in process (verify, parse; no HTTP)", ours_in_process);
  std::printf("%-52s %10.0f\n", "@octokit/webhooks in process (verify, parse; no HTTP)", node_rate);
  std::printf("%-52s %10.0f\n", "HMAC-SHA256 of the body alone (in process)", hmac_alone);
  std::printf("p99 at 1,000/s under 5 ms: %s\n", ours.p99 < 5 ? "met" : "NOT met");
  // The reach: the most any receiver could show against the same peer, with the floor above.
  for (auto [what, mine, peer, reach] :
       {std::tuple{"HTTP", ours.rate, node_http.rate, nothing.rate},
        std::tuple{"HTTP keep-alive", ours.rate_kept, node_http.rate_kept, nothing.rate_kept},
        std::tuple{"in process", ours_in_process, node_rate, hmac_alone}}) {
    const auto ratio = [&](double x) { return peer > 0 ? x / peer : 0; };
    std::printf("dmzbot / Node, %s: %.1fx (target >= 5x): %s; at most %.1fx on this machine\n",
                what, ratio(mine), ratio(mine) >= 5 ? "met" : "NOT met", ratio(reach));
  }
  return 0;
}

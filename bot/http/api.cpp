// The router behind bot/api.hpp. Order of checks on a command route: route, method, repository,
// bearer token, path parameters, JSON body, fields; only a request that passes all of them
// reaches the Backend, so bad input never changes state.
#include "bot/http/api.hpp"

#include <algorithm>
#include <cctype>
#include <climits>
#include <limits>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

#include "base/crypto.hpp"
#include "base/text.hpp"
#include "bot/http/assets.hpp"
#include "bot/http/page_model.hpp"
#include "bot/http/pages.hpp"
#include "forges/plain.hpp"
#include "queue/json.hpp"

namespace dmz {

namespace {

using nlohmann::json;

constexpr std::size_t kLogLimit = 1 << 20;  // the tail of a build log that is served
constexpr std::size_t kPageEvents = 500;    // of the event log, read for a status page
constexpr std::size_t kPageOutcomes = 50;   // finished PRs on a repository's page

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

HttpResponse json_ok(int status, const json& body) {
  HttpResponse r;
  r.status = status;
  r.body = dump(body);
  return r;
}

HttpResponse accepted() { return json_ok(202, {{"accepted", true}}); }

// The one place where an error's code becomes an HTTP status. A failure on the service's side
// is 503 with Retry-After: CI systems and forges retry that, and give up on a 4xx.
int http_status(Code code) {
  switch (code) {
    case Code::kOk:
      return 200;
    case Code::kInvalid:
      return 422;
    case Code::kNotFound:
      return 404;
    case Code::kConflict:
      return 409;
    case Code::kUnauthenticated:
      return 401;
    case Code::kPermissionDenied:
      return 403;
    case Code::kUnavailable:
      return 503;
    case Code::kInternal:
      return 500;
  }
  return 500;
}

constexpr const char* kRetryAfterSeconds = "5";

HttpResponse error_response(const Error& e) {
  auto r = json_error(http_status(e.code), e.message);
  if (e.code == Code::kUnavailable) r.headers.emplace_back("Retry-After", kRetryAfterSeconds);
  return r;
}

HttpResponse method_not_allowed(const std::string& method, const std::string& allowed) {
  auto r = json_error(405, "method " + method + " not allowed; use " + allowed);
  r.headers.emplace_back("Allow", allowed);
  return r;
}

HttpResponse unauthorized(const std::string& message) {
  auto r = json_error(401, message);
  r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"dmzbot\"");
  return r;
}

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> parts;
  if (path.empty() || path[0] != '/') return parts;
  path.remove_prefix(1);
  for (;;) {
    auto slash = path.find('/');
    parts.emplace_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return parts;
}

// A tag name dmzbot accepts from the API: what git allows (check-ref-format), narrowed to the
// characters release tags use, so that nothing odd reaches a ref lookup or a log line.
bool valid_tag_name(const std::string& s) {
  if (s.empty() || s.size() > 200 || s.front() == '.' || s.front() == '-' || s.back() == '.' ||
      s.back() == '/' || s.find("..") != std::string::npos || s.find("//") != std::string::npos ||
      s.find("/.") != std::string::npos || s.ends_with(".lock") ||
      s.find("@{") != std::string::npos)
    return false;
  for (unsigned char c : s)
    if (!std::isalnum(c) && c != '.' && c != '-' && c != '_' && c != '/' && c != '+') return false;
  return true;
}

// A positive decimal int without sign or leading zeros.
std::optional<int> parse_number(const std::string& s) {
  if (s.empty() || s.size() > 10 || s[0] == '0') return std::nullopt;
  long long v = 0;
  for (unsigned char c : s) {
    if (!std::isdigit(c)) return std::nullopt;
    v = v * 10 + (c - '0');
  }
  if (v > INT_MAX) return std::nullopt;
  return static_cast<int>(v);
}

// Thrown while reading a body; turned into its 4xx answer in one place.
struct BadInput {
  HttpResponse response;
};

json parse_object(const std::string& body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1E400
    throw BadInput{json_error(400, std::string("malformed JSON: ") + e.what())};
  }
  if (!j.is_object()) throw BadInput{json_error(422, "body must be a JSON object")};
  return j;
}

// Required unless `fallback` is given; null counts as absent for optional fields. Control
// characters are refused in identifiers (names, branches, titles, contexts): a name with a newline
// would forge a trailer in dmzbot's signed merge commits ("mm\nApproved-by: someone") or a line in
// its log.
enum class Text { Identifier, Free };  // free text (a CI's description) keeps what it holds
constexpr std::size_t kMaxIdentifier = 1024;
std::string string_field(const json& j, const char* name,
                         std::optional<std::string> fallback = std::nullopt, bool non_empty = false,
                         Text text = Text::Identifier) {
  auto it = j.find(name);
  if (it == j.end() || (fallback && it->is_null())) {
    if (fallback) return *fallback;
    throw BadInput{json_error(422, std::string("missing field '") + name + "'")};
  }
  if (!it->is_string())
    throw BadInput{json_error(422, std::string("field '") + name + "' must be a string")};
  auto value = it->get<std::string>();
  if (text == Text::Identifier && has_control(value))
    throw BadInput{json_error(422, std::string("field '") + name +
                                       "' must not contain control characters (got \"" +
                                       escape_control(value) + "\")")};
  if (non_empty && value.empty())
    throw BadInput{json_error(422, std::string("field '") + name + "' must not be empty")};
  // Identifiers are shown on every page view and kept in every candidate's state: one field
  // must not make them heavy. 1 KiB holds any branch, login, title or check name a forge takes.
  if (text == Text::Identifier && value.size() > kMaxIdentifier)
    throw BadInput{json_error(422, std::string("field '") + name + "' must be at most " +
                                       std::to_string(kMaxIdentifier) + " bytes")};
  return value;
}

// A CI's free text (optional), at most `max` bytes: it is kept with its candidate and sent to
// every reader of the pages and the queue, so one status must not make them heavy.
std::string free_text_field(const json& j, const char* name, std::size_t max) {
  auto value = string_field(j, name, "", false, Text::Free);
  if (value.size() > max)
    throw BadInput{json_error(422, std::string("field '") + name + "' must be at most " +
                                       std::to_string(max) + " bytes")};
  return value;
}

int number_field(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end()) throw BadInput{json_error(422, std::string("missing field '") + name + "'")};
  bool ok = it->is_number_integer();
  if (ok && it->is_number_unsigned())
    ok = it->get<std::uint64_t>() >= 1 && it->get<std::uint64_t>() <= INT_MAX;
  else if (ok)
    ok = it->get<std::int64_t>() >= 1 && it->get<std::int64_t>() <= INT_MAX;
  if (!ok)
    throw BadInput{json_error(422, std::string("field '") + name + "' must be a positive integer")};
  return static_cast<int>(it->get<std::int64_t>());
}

std::string sha_field(const json& j, const char* name) {
  auto value = ascii_lower(string_field(j, name));
  if (!is_object_id(value))
    throw BadInput{json_error(
        422, std::string("field '") + name + "' must be a commit SHA (40 or 64 hex digits)")};
  return value;
}

HttpResponse outcome_response(const queue::Outcome& outcome) {
  if (!outcome.rejected) return accepted();
  return error_response(*outcome.rejected);
}

constexpr std::int64_t kMaxPage = 500;  // outcomes in one page of history

// The integer query parameter `key` of `target`, `fallback` if absent; refused (BadInput) if
// it is not a number in [0, max].
std::int64_t query_number(const std::string& target, const std::string& key, std::int64_t fallback,
                          std::int64_t max) {
  auto q = target.find('?');
  if (q == std::string::npos) return fallback;
  std::string_view rest = std::string_view(target).substr(q + 1);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    auto eq = pair.find('=');
    if (pair.substr(0, eq) != key) continue;
    std::string_view value = eq == std::string_view::npos ? "" : pair.substr(eq + 1);
    std::int64_t v = 0;
    bool ok = !value.empty() && value.size() <= 18;  // 18 digits: no overflow below
    for (std::size_t i = 0; ok && i < value.size(); ++i) {
      if (value[i] < '0' || value[i] > '9') ok = false;
      v = v * 10 + (value[i] - '0');
    }
    if (!ok || v > max)
      throw BadInput{json_error(
          422, "query parameter '" + key + "' must be a number from 0 to " + std::to_string(max))};
    return v;
  }
  return fallback;
}

json health_json(const driver::Health& h) {
  return {{"served", h.loaded},
          {"remote_ok", h.remote_ok},
          {"last_fetch_ok", h.last_fetch_ok},
          {"last_fetch_failed", h.last_fetch_failed},
          {"fetch_failures", h.fetch_failures},
          {"next_fetch_at", h.next_fetch_at},
          {"last_error", h.last_error},
          {"outbox_pending", h.outbox_pending},
          {"api", h.api.used ? json{{"ok", h.api.ok},
                                    {"last_error", h.api.last_error},
                                    {"rate_limited_until", h.api.blocked_until},
                                    {"rate_remaining", h.api.rate_remaining},
                                    {"last_reconcile", h.api.last_reconcile}}
                             : json(nullptr)}};
}

json history_json(const std::vector<HistoryEntry>& entries) {
  json out = json::array();
  for (const auto& h : entries)
    out.push_back({{"seq", h.seq},
                   {"number", h.number},
                   {"status", queue::to_string(h.status)},
                   {"reason_code", queue::to_string(h.reason)},
                   {"reason", h.message},
                   {"details", h.details},
                   {"branch", h.branch},
                   {"author", h.author},
                   {"title", h.title},
                   {"head", h.head},
                   {"approver", h.approver},
                   {"approved_at", h.approved_at},
                   {"at", h.at}});
  return out;
}

// A Last-Event-ID or ?after= value: a seq (digits only).
std::optional<std::int64_t> parse_seq(std::string_view s) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  std::int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

class Api : public std::enable_shared_from_this<Api> {
 public:
  Api(Backend& backend, const ApiOptions& options)
      : backend_(backend), sse_(sse_options(backend, options.sse)) {}

  void handle(const HttpRequest& req, Respond respond) {
    try {
      route(req, respond);
    } catch (const BadInput& bad) {
      respond(bad.response);
    }
  }

 private:
  Backend& backend_;
  const SseOptions sse_;
  std::mutex hub_mu_;
  std::unique_ptr<SseHub> hub_;  // made by the first live stream (it runs a thread)
  // Every live page asks again after each change: its viewers share one forecast.
  EtaMemo etas_;

  SseHub& hub() {
    std::lock_guard lock(hub_mu_);
    if (!hub_) hub_ = std::make_unique<SseHub>(backend_, sse_);
    return *hub_;
  }

  // Live streams never take more than half the server's connections: the API stays reachable.
  static SseOptions sse_options(const Backend& backend, SseOptions o) {
    const auto half =
        static_cast<std::size_t>(std::max(1, backend.config().server.max_connections / 2));
    o.max_streams = std::min(o.max_streams, half);
    return o;
  }

  const config::Repo* find_repo(const std::string& name) const {
    return backend_.config().find_repo(name);
  }

  // nullopt: authorized; otherwise the answer.
  static std::optional<HttpResponse> authorize(const HttpRequest& req, const config::Secret& secret,
                                               const char* secret_name) {
    if (secret.empty()) return json_error(403, std::string("no ") + secret_name + " configured");
    auto header = req.header("authorization");
    constexpr std::string_view scheme = "bearer ";
    if (header.size() < scheme.size() || ascii_lower(header.substr(0, scheme.size())) != scheme)
      return unauthorized("missing bearer token");
    auto token = header.substr(scheme.size());
    while (!token.empty() && token.front() == ' ') token.erase(0, 1);
    while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.pop_back();
    if (!constant_time_equal(token, secret.reveal())) return unauthorized("invalid bearer token");
    return std::nullopt;
  }

  void route(const HttpRequest& req, const Respond& respond) {
    std::string path = req.target.substr(0, req.target.find('?'));
    auto p = split_path(path);
    const auto& m = req.method;
    auto n = p.size();

    if (path == "/healthz") {
      if (m != "GET") return respond(method_not_allowed(m, "GET"));
      return respond(json_ok(200, {{"status", "ok"}}));
    }
    if (path == "/readyz") {
      if (m != "GET") return respond(method_not_allowed(m, "GET"));
      if (!backend_.ready()) return respond(error_response(unavailable("not ready")));
      backend_.health([respond](std::vector<std::pair<std::string, driver::Health>> repos) {
        // Ready while the service serves; a repository whose remote or store fails is shown
        // as degraded (the others are still served).
        json out = {{"status", "ready"}, {"repos", json::object()}};
        for (const auto& [name, h] : repos) {
          out["repos"][name] = health_json(h);
          if (!h.loaded || !h.remote_ok) out["status"] = "degraded";
          if (h.api.used && (!h.api.ok || h.api.blocked_until != 0)) out["status"] = "degraded";
        }
        respond(json_ok(200, out));
      });
      return;
    }
    if (path == "/metrics") {
      if (m != "GET") return respond(method_not_allowed(m, "GET"));
      HttpResponse r;
      r.content_type = "text/plain; version=0.0.4";
      r.body = backend_.metrics();
      return respond(r);
    }
    if (path == "/") {
      if (m != "GET") return respond(method_not_allowed(m, "GET"));
      return index_page(respond);
    }
    if ((n == 3 || n == 5) && p[0] == "repos" && (n == 3 || p[3] == "pulls")) {
      if (m != "GET") return respond(method_not_allowed(m, "GET"));
      auto name = p[1] + "/" + p[2];
      if (!find_repo(name)) return respond(html_error(404, "unknown repository " + name));
      if (n == 3) return repo_page(name, respond);
      auto number = parse_number(p[4]);
      if (!number)
        return respond(
            html_error(404, "pull request number '" + p[4] + "' must be a positive integer"));
      return pull_page(name, *number, respond);
    }
    if (n == 2 && p[0] == "assets") {
      if (m != "GET") return respond(method_not_allowed(m, "GET"));
      const Asset* asset = find_asset(path);
      if (!asset) return respond(json_error(404, "no asset " + path));
      HttpResponse r;
      r.content_type = std::string(asset->content_type);
      r.headers.emplace_back("ETag", asset->etag);
      r.headers.emplace_back("Cache-Control", "no-cache");  // revalidated: a new build shows
      r.headers.emplace_back("X-Content-Type-Options", "nosniff");
      if (req.header("if-none-match") == asset->etag) {
        r.status = 304;
        return respond(r);
      }
      r.body = std::string(asset->body);
      return respond(r);
    }
    if (n == 3 && p[0] == "api" && p[1] == "v1" && p[2] == "events") {
      if (m != "GET") return respond(method_not_allowed(m, "GET"));
      return events_stream(req, "", respond);
    }
    if (n == 3 && p[0] == "api" && p[1] == "v1" && p[2] == "repos") {
      if (m != "GET") return respond(method_not_allowed(m, "GET"));
      json names = json::array();
      for (const auto& r : backend_.config().repos) names.push_back(r.name);
      return respond(json_ok(200, names));
    }
    if (n >= 6 && p[0] == "api" && p[1] == "v1" && p[2] == "repos")
      return repo_route(req, p, respond);
    if (n == 2 && p[0] == "webhooks") {
      if (m != "POST") return respond(method_not_allowed(m, "POST"));
      forges::InboundRequest in{req.headers, req.body};
      backend_.webhook(p[1], std::move(in), [respond](Result<WebhookAccepted> r) {
        if (!r) return respond(error_response(r.error()));
        respond(json_ok(202, {{"accepted", true},
                              {"repo", r->repo},
                              {"duplicate", r->duplicate},
                              {"events", r->events}}));
      });
      return;
    }
    respond(json_error(404, "no route for " + path));
  }

  static HttpResponse html(std::string body, int status = 200) {
    HttpResponse r;
    r.status = status;
    r.content_type = "text/html; charset=utf-8";
    r.headers.emplace_back("Content-Security-Policy", page::pages_csp());
    r.headers.emplace_back("X-Content-Type-Options", "nosniff");
    r.headers.emplace_back("Cache-Control", "no-store");
    r.headers.emplace_back("Referrer-Policy", "same-origin");
    r.body = std::move(body);
    return r;
  }

  static HttpResponse html_error(int status, const std::string& message) {
    return html(page::render_error(status, message), status);
  }
  static HttpResponse html_error(const Error& e) {
    auto r = html_error(http_status(e.code), e.message);
    if (e.code == Code::kUnavailable) r.headers.emplace_back("Retry-After", kRetryAfterSeconds);
    return r;
  }

  page::RepoInput page_input(const std::string& name) {
    const config::Repo* repo = find_repo(name);
    page::RepoInput in;
    in.name = name;
    in.forge = repo->forge;
    in.master_branch = repo->master;
    in.dmz_branch = repo->dmz;
    in.now = backend_.now();
    in.eta_memo = &etas_;
    return in;
  }

  // Every repository: their views, gathered as they answer; rendered once all have.
  void index_page(const Respond& respond) {
    struct Gather {
      std::mutex mu;
      std::vector<std::optional<page::RepoSummary>> summaries;
      std::size_t left = 0;
      std::int64_t last_seq = 0;  // the newest event of any repository: the feed resumes there
    };
    const auto& repos = backend_.config().repos;
    auto g = std::make_shared<Gather>();
    g->summaries.resize(repos.size());
    g->left = repos.size();
    if (repos.empty()) return respond(html(page::render_index({}, backend_.now())));
    // The newest event is read before any state, so the feed resumes no later than the oldest
    // state shown: a change saved in between is sent again, never skipped.
    for (const auto& repo : repos)
      if (auto newest = backend_.recent_events(repo.name, 1); newest && !newest->empty())
        g->last_seq = std::max(g->last_seq, newest->back().seq);
    auto self = shared_from_this();  // answers may come after the server dropped its handler
    for (std::size_t i = 0; i < repos.size(); ++i) {
      const std::string name = repos[i].name;
      backend_.view(name, [this, self, g, i, name, respond](Result<RepoView> v) {
        std::optional<page::RepoSummary> summary;
        if (v) {
          auto events = backend_.recent_events(name, kPageEvents);
          auto in = page_input(name);
          in.view = &*v;
          if (events) in.events = &*events;
          summary = page::build_summary(in);
        } else {
          page::RepoSummary s;  // shown as not served, with why
          s.name = name;
          s.forge = find_repo(name)->forge;
          s.health.last_error = v.message();
          s.warnings.push_back({"not-served", "this repository cannot be read: " + v.message()});
          summary = std::move(s);
        }
        std::vector<page::RepoSummary> all;
        {
          std::lock_guard lock(g->mu);
          g->summaries[i] = std::move(summary);
          if (--g->left > 0) return;
          for (auto& s : g->summaries) all.push_back(std::move(*s));
        }
        respond(html(page::render_index(all, backend_.now(), g->last_seq)));
      });
    }
  }

  // The repository's page model: its view, its newest outcomes and events.
  void repo_model(const std::string& name, std::function<void(Result<page::RepoPage>)> done) {
    // The events before the state: the page's last_seq (where its feed resumes) is then never
    // newer than the state it shows, so a change saved in between is sent again, not skipped.
    auto read = backend_.recent_events(name, kPageEvents);
    if (!read) return done(read.error());
    auto self = shared_from_this();
    backend_.view(name, [this, self, name, done, events = std::move(*read)](Result<RepoView>&& v) {
      if (!v) return done(v.error());
      backend_.history(
          name, 0, kPageOutcomes,
          [this, self, name, done, events, v = std::move(*v)](Result<std::vector<HistoryEntry>> h) {
            if (!h) return done(h.error());
            auto in = page_input(name);
            in.view = &v;
            in.events = &events;
            in.outcomes = &*h;
            auto page = page::build_repo_page(in);
            if (auto r = backend_.releases(name))  // the releases section (releases_view.hpp)
              if (auto v = page::parse_releases(*r); v && !v->empty()) page.releases = *v;
            done(std::move(page));
          });
    });
  }

  void repo_page(const std::string& name, const Respond& respond) {
    repo_model(name, [respond](Result<page::RepoPage> p) {
      if (!p) return respond(html_error(p.error()));
      respond(html(page::render_repo(*p)));
    });
  }

  void pull_page(const std::string& name, int number, const Respond& respond) {
    // The newest event before the PR is read (repo_model reads its own only after): the page
    // resumes its feed there, no later than the PR it shows.
    auto newest = backend_.recent_events(name, 1);
    if (!newest) return respond(html_error(newest.error()));
    const std::int64_t last_seq = newest->empty() ? 0 : newest->back().seq;
    auto self = shared_from_this();
    backend_.pull(name, number, [this, self, name, last_seq, respond](Result<PullView> pv) {
      if (!pv) return respond(html_error(pv.error()));
      repo_model(name, [name, last_seq, respond, pv = std::move(*pv)](Result<page::RepoPage> p) {
        if (!p) return respond(html_error(p.error()));
        auto page = page::build_pull_page(name, pv, *p);
        page.last_seq = last_seq;
        respond(html(page::render_pull(page)));
      });
    });
  }

  // The live feed of `repo` (empty: of every repository).
  void events_stream(const HttpRequest& req, const std::string& repo, const Respond& respond) {
    // The browser resends the id it saw last on a reconnect (Last-Event-ID); a page starts
    // from the seq it was rendered at (?after=). A malformed header is ignored.
    std::optional<std::int64_t> after = parse_seq(req.header("last-event-id"));
    if (!after) {
      const auto query =
          query_number(req.target, "after", -1, std::numeric_limits<std::int64_t>::max());
      if (query >= 0) after = query;
    }
    auto stream = hub().open(repo, after);
    if (!stream) return respond(error_response(stream.error()));
    HttpResponse r;
    r.content_type = "text/event-stream; charset=utf-8";
    r.headers.emplace_back("Cache-Control", "no-store");
    r.headers.emplace_back("X-Accel-Buffering", "no");  // proxies must not hold events back
    r.stream = std::move(*stream);
    respond(r);
  }

  // /api/v1/repos/{owner}/{name}/...
  void repo_route(const HttpRequest& req, const std::vector<std::string>& p,
                  const Respond& respond) {
    const auto& m = req.method;
    const auto n = p.size();
    const std::string name = p[3] + "/" + p[4];
    const std::string& what = p[5];
    enum {
      Queue,
      History,
      Events,
      Pull,
      Log,
      Status,
      Register,
      Command,
      Promote,
      None
    } kind = None;
    if (n == 6 && what == "promote")
      kind = Promote;
    else if (n == 6 && what == "queue")
      kind = Queue;
    else if (n == 6 && what == "events")
      kind = Events;
    else if (n == 6 && what == "history")
      kind = History;
    else if (n == 7 && what == "pulls")
      kind = Pull;
    else if (n == 7 && what == "logs")
      kind = Log;
    else if (n == 7 && what == "statuses")
      kind = Status;
    else if (n == 6 && what == "pulls")
      kind = Register;
    else if (n == 8 && what == "pulls" && (p[7] == "merge" || p[7] == "cancel" || p[7] == "retry"))
      kind = Command;
    if (kind == None)
      return respond(json_error(404, "no route for " + req.target.substr(0, req.target.find('?'))));

    const char* allowed =
        kind == Queue || kind == History || kind == Events || kind == Pull || kind == Log ? "GET"
                                                                                          : "POST";
    if (m != allowed) return respond(method_not_allowed(m, allowed));
    const config::Repo* repo = find_repo(name);
    if (!repo) return respond(json_error(404, "unknown repository " + name));

    if (kind == Queue) {
      auto self = shared_from_this();
      backend_.view(name, [this, self, name, respond,
                           releases = backend_.releases(name)](Result<RepoView> v) {
        if (!v) return respond(error_response(v.error()));
        // The same expected landings as the repo page (a PR without one has "eta": null).
        std::map<int, Millis> etas;
        if (auto events = backend_.recent_events(name, kPageEvents))
          etas = page::expected_landings(*v, *events, backend_.now(), &etas_);
        json doc = queue::to_json(v->state, &etas);
        doc["health"] = health_json(v->health);
        doc["recent"] = history_json(v->recent);
        if (releases) doc["releases"] = json::parse(*releases, nullptr, false);
        respond(json_ok(200, doc));
      });
      return;
    }

    if (kind == Events) return events_stream(req, name, respond);

    if (kind == History) {
      auto before = query_number(req.target, "before", 0, std::numeric_limits<std::int64_t>::max());
      auto limit = query_number(req.target, "limit", 50, kMaxPage);
      backend_.history(name, before, static_cast<std::size_t>(limit),
                       [respond](Result<std::vector<HistoryEntry>> h) {
                         if (!h) return respond(error_response(h.error()));
                         json out = {{"outcomes", history_json(*h)}};
                         // The cursor for the next (older) page, if there may be one.
                         out["next_before"] = h->empty() ? json(nullptr) : json(h->back().seq);
                         respond(json_ok(200, out));
                       });
      return;
    }

    if (kind == Pull) {
      auto number = parse_number(p[6]);
      if (!number)
        return respond(
            json_error(422, "pull request number '" + p[6] + "' must be a positive integer"));
      backend_.pull(name, *number, [respond](Result<PullView> v) {
        if (!v) return respond(error_response(v.error()));
        json events = json::array();
        for (const auto& e : v->events) {
          json ev = json::parse(e.json, nullptr, /*allow_exceptions=*/false);
          events.push_back({{"seq", e.seq}, {"kind", e.kind}, {"at", e.at}, {"event", ev}});
        }
        respond(json_ok(200, {{"pr", queue::to_json(v->pr, v->position)},
                              {"archived", v->archived},
                              {"outcomes", history_json(v->outcomes)},
                              {"events", events}}));
      });
      return;
    }

    if (kind == Log) {  // public, like the queue and the status page that links to it
      const std::string sha = ascii_lower(p[6]);
      if (!is_object_id(sha))
        return respond(json_error(422, "'" + p[6] + "' is not a commit SHA (40 or 64 hex digits)"));
      auto log = backend_.build_log(name, sha, kLogLimit);
      if (!log) return respond(error_response(log.error()));
      if (!*log) return respond(json_error(404, "no build log for " + p[6] + " in " + name));
      HttpResponse r;
      r.content_type = "text/plain; charset=utf-8";
      r.headers.emplace_back("X-Content-Type-Options", "nosniff");  // never rendered as HTML
      r.body = std::move(**log);
      return respond(r);
    }

    if (kind == Status) {
      if (auto denied = authorize(req, repo->status_token, "status_token")) return respond(*denied);
      const std::string sha = ascii_lower(p[6]);
      if (!is_object_id(sha))
        return respond(json_error(422, "'" + p[6] + "' is not a commit SHA (40 or 64 hex digits)"));
      auto body = parse_object(req.body);
      auto state_name = string_field(body, "state");
      auto state = queue::parse_check_state(state_name);
      if (!state)
        return respond(
            json_error(422, "field 'state' must be one of pending, success, failure, error"));
      queue::Check check;
      check.context = string_field(body, "context", std::nullopt, true);
      check.state = *state;
      // GitHub keeps 140 characters of a description; 1 KiB leaves room for any CI's.
      check.description = free_text_field(body, "description", 1024);
      check.url = free_text_field(body, "target_url", 2048);
      check.at = backend_.now();
      queue::CheckReported event{sha, check, check.at};
      return submit(name, event, respond);
    }

    if (auto denied = authorize(req, repo->api_token, "api_token")) return respond(*denied);

    if (kind == Promote) {
      auto body = parse_object(req.body);
      auto tag = string_field(body, "tag", std::nullopt, true);
      if (!valid_tag_name(tag))
        return respond(json_error(422, "field 'tag' is not a valid tag name"));
      backend_.promote(name, tag, [respond](Result<std::string> r) {
        if (!r) return respond(error_response(r.error()));
        json doc = json::parse(*r, nullptr, false);
        const bool promoted = doc.is_object() && doc.value("promoted", false);
        if (!promoted && doc.is_object()) {
          std::string why;
          for (const auto& reason : doc.value("reasons", json::array()))
            why += (why.empty() ? "" : "; ") + reason.get<std::string>();
          doc["error"] = "not promoted: " + why;
        }
        respond(json_ok(promoted ? 200 : 409, doc));
      });
      return;
    }

    if (kind == Register) {
      auto body = parse_object(req.body);
      int number = number_field(body, "number");
      // A PR is a branch, or a signed tag (the pull-request-by-signed-tag flow), known as
      // "tags/<name>". The field says which: a branch named "tags/..." would pass for a tag,
      // escaping the branch patterns, so it is refused.
      std::string branch;
      if (auto tag = string_field(body, "tag", ""); !tag.empty()) {
        if (body.contains("branch"))
          return respond(json_error(422, "give either 'branch' or 'tag', not both"));
        if (!valid_tag_name(tag))
          return respond(json_error(422, "field 'tag' is not a valid tag name"));
        branch = std::string(forges::kTagPrefix) + tag;
      } else {
        branch = string_field(body, "branch", std::nullopt, true);
        if (branch.starts_with(forges::kTagPrefix))
          return respond(json_error(422,
                                    "field 'branch' must not start with 'tags/': give a "
                                    "signed tag as 'tag'"));
      }
      forges::Registration r{number, branch, string_field(body, "author", ""),
                             string_field(body, "title", "")};
      backend_.register_pull(name, std::move(r),
                             [respond](queue::Outcome o) { respond(outcome_response(o)); });
      return;
    }

    auto number = parse_number(p[6]);
    if (!number)
      return respond(
          json_error(422, "pull request number '" + p[6] + "' must be a positive integer"));
    auto body = parse_object(req.body);
    const auto at = backend_.now();
    if (p[7] == "merge") {
      auto sha = sha_field(body, "sha");
      auto approver = string_field(body, "approver", std::nullopt, true);
      return submit(name, queue::MergeRequested{*number, sha, approver, at}, respond);
    }
    auto by = string_field(body, "by", std::nullopt, true);
    if (p[7] == "cancel") return submit(name, queue::CancelRequested{*number, by, at}, respond);
    return submit(name, queue::RetryRequested{*number, by, at}, respond);
  }

  void submit(const std::string& repo, queue::Event event, const Respond& respond) {
    backend_.submit(repo, std::move(event),
                    [respond](queue::Outcome o) { respond(outcome_response(o)); });
  }
};

}  // namespace

Handler make_api(Backend& backend, ApiOptions options) {
  auto api = std::make_shared<Api>(backend, options);
  return [api](HttpRequest req, Respond respond) {
    try {
      api->handle(req, respond);
    } catch (const std::exception& e) {
      respond(error_response(internal(std::string("internal error: ") + e.what())));
    }
  };
}

}  // namespace dmz

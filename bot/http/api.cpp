// The router behind bot/api.hpp. Order of checks on a command route: route, method, repository,
// bearer token, path parameters, JSON body, fields; only a request that passes all of them
// reaches the Backend, so bad input never changes state.
#include "bot/http/api.hpp"

#include <cctype>
#include <climits>
#include <memory>
#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

#include "base/crypto.hpp"
#include "bot/http/status_page.hpp"
#include "queue/json.hpp"

namespace dmz {

namespace {

using nlohmann::json;

constexpr std::size_t kLogLimit = 1 << 20;  // the tail of a build log that is served

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

HttpResponse json_ok(int status, const json& body) {
  HttpResponse r;
  r.status = status;
  r.body = dump(body);
  return r;
}

HttpResponse accepted() { return json_ok(202, {{"accepted", true}}); }

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

bool is_sha(const std::string& s) {
  if (s.size() != 40 && s.size() != 64) return false;
  for (unsigned char c : s)
    if (!std::isxdigit(c)) return false;
  return true;
}

std::string lowercase(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
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

// Required unless `fallback` is given; null counts as absent for optional fields.
std::string string_field(const json& j, const char* name,
                         std::optional<std::string> fallback = std::nullopt,
                         bool non_empty = false) {
  auto it = j.find(name);
  if (it == j.end() || (fallback && it->is_null())) {
    if (fallback) return *fallback;
    throw BadInput{json_error(422, std::string("missing field '") + name + "'")};
  }
  if (!it->is_string())
    throw BadInput{json_error(422, std::string("field '") + name + "' must be a string")};
  auto value = it->get<std::string>();
  if (non_empty && value.empty())
    throw BadInput{json_error(422, std::string("field '") + name + "' must not be empty")};
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
  auto value = string_field(j, name);
  if (!is_sha(value))
    throw BadInput{json_error(
        422, std::string("field '") + name + "' must be a commit SHA (40 or 64 hex digits)")};
  return lowercase(value);
}

HttpResponse outcome_response(const queue::Outcome& outcome) {
  if (!outcome.rejected) return accepted();
  int code = outcome.code >= 400 && outcome.code < 500 ? outcome.code : 409;
  return json_error(code, *outcome.rejected);
}

class Api {
 public:
  explicit Api(Backend& backend) : backend_(backend) {}

  void handle(const HttpRequest& req, Respond respond) {
    try {
      route(req, respond);
    } catch (const BadInput& bad) {
      respond(bad.response);
    }
  }

 private:
  Backend& backend_;

  const config::Repo* find_repo(const std::string& name) const {
    return backend_.config().find_repo(name);
  }

  // nullopt: authorized; otherwise the answer.
  static std::optional<HttpResponse> authorize(const HttpRequest& req, const config::Secret& secret,
                                               const char* secret_name) {
    if (secret.empty()) return json_error(403, std::string("no ") + secret_name + " configured");
    auto header = req.header("authorization");
    constexpr std::string_view scheme = "bearer ";
    if (header.size() < scheme.size() || lowercase(header.substr(0, scheme.size())) != scheme)
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
      if (!backend_.ready()) return respond(json_error(503, "not ready"));
      return respond(json_ok(200, {{"status", "ready"}}));
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
      return respond(html(status_page_html("")));
    }
    if (n == 3 && p[0] == "repos") {
      if (m != "GET") return respond(method_not_allowed(m, "GET"));
      auto name = p[1] + "/" + p[2];
      if (!find_repo(name)) return respond(json_error(404, "unknown repository " + name));
      return respond(html(status_page_html(name)));
    }
    if (n == 3 && p[0] == "api" && p[1] == "v1" && p[2] == "repos") {
      if (m != "GET") return respond(method_not_allowed(m, "GET"));
      json names = json::array();
      for (const auto& r : backend_.config().repos) names.push_back(r.name);
      return respond(json_ok(200, names));
    }
    if (n >= 6 && p[0] == "api" && p[1] == "v1" && p[2] == "repos")
      return repo_route(req, p, respond);
    respond(json_error(404, "no route for " + path));
  }

  static HttpResponse html(std::string body) {
    HttpResponse r;
    r.content_type = "text/html; charset=utf-8";
    r.headers.emplace_back("Content-Security-Policy", status_page_csp());
    r.headers.emplace_back("X-Content-Type-Options", "nosniff");
    r.body = std::move(body);
    return r;
  }

  // /api/v1/repos/{owner}/{name}/...
  void repo_route(const HttpRequest& req, const std::vector<std::string>& p,
                  const Respond& respond) {
    const auto& m = req.method;
    const auto n = p.size();
    const std::string name = p[3] + "/" + p[4];
    const std::string& what = p[5];
    enum { Queue, Log, Status, Register, Command, None } kind = None;
    if (n == 6 && what == "queue")
      kind = Queue;
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

    const char* allowed = kind == Queue || kind == Log ? "GET" : "POST";
    if (m != allowed) return respond(method_not_allowed(m, allowed));
    const config::Repo* repo = find_repo(name);
    if (!repo) return respond(json_error(404, "unknown repository " + name));

    if (kind == Queue) {
      backend_.snapshot(name, [respond, name](std::optional<queue::RepoState> state) {
        if (!state) return respond(json_error(404, "unknown repository " + name));
        HttpResponse r;
        r.body = dump(queue::to_json(*state));
        respond(r);
      });
      return;
    }

    if (kind == Log) {  // public, like the queue and the status page that links to it
      if (!is_sha(p[6]))
        return respond(json_error(422, "'" + p[6] + "' is not a commit SHA (40 or 64 hex digits)"));
      auto log = backend_.build_log(name, lowercase(p[6]), kLogLimit);
      if (!log) return respond(json_error(404, "no build log for " + p[6] + " in " + name));
      HttpResponse r;
      r.content_type = "text/plain; charset=utf-8";
      r.headers.emplace_back("X-Content-Type-Options", "nosniff");  // never rendered as HTML
      r.body = std::move(*log);
      return respond(r);
    }

    if (kind == Status) {
      if (auto denied = authorize(req, repo->status_token, "status_token")) return respond(*denied);
      if (!is_sha(p[6]))
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
      check.description = string_field(body, "description", "");
      check.url = string_field(body, "target_url", "");
      check.at = backend_.now();
      queue::CheckReported event{lowercase(p[6]), check, check.at};
      return submit(name, event, respond);
    }

    if (auto denied = authorize(req, repo->api_token, "api_token")) return respond(*denied);

    if (kind == Register) {
      auto body = parse_object(req.body);
      int number = number_field(body, "number");
      // A PR is a branch, or a signed tag (the pull-request-by-signed-tag flow): "tags/<name>".
      auto tag = string_field(body, "tag", "");
      if (!tag.empty() && body.contains("branch"))
        return respond(json_error(422, "give either 'branch' or 'tag', not both"));
      auto branch = tag.empty() ? string_field(body, "branch", std::nullopt, true) : "tags/" + tag;
      auto author = string_field(body, "author", "");
      auto title = string_field(body, "title", "");
      backend_.register_pull(name, number, branch, author, title,
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

Handler make_api(Backend& backend) {
  auto api = std::make_shared<Api>(backend);
  return [api](HttpRequest req, Respond respond) {
    try {
      api->handle(req, respond);
    } catch (const std::exception& e) {
      respond(json_error(500, std::string("internal error: ") + e.what()));
    }
  };
}

}  // namespace dmz

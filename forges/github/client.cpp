#include "forges/github/client.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <limits>
#include <map>
#include <set>

#include "base/crypto.hpp"
#include "base/iso_time.hpp"
#include "base/metrics.hpp"
#include "base/text.hpp"
#include "base/url.hpp"
#include "forges/github/webhook.hpp"

namespace dmz::forges::github {
namespace {

namespace q = queue;
using nlohmann::json;

constexpr q::Millis kTokenMargin = 5 * 60'000;  // an installation token is renewed this early

// Where a path ends and its query starts, for adding per_page.
std::string with_per_page(const std::string& path) {
  if (path.find("per_page=") != std::string::npos) return path;
  return path + (path.find('?') == std::string::npos ? "?" : "&") + "per_page=100";
}

std::string message_of(const json& body) {
  if (body.is_object())
    if (auto it = body.find("message"); it != body.end() && it->is_string())
      return escape_control(it->get<std::string>().substr(0, 200));
  return "";
}

// "You have exceeded a secondary rate limit...", "API rate limit exceeded for ...".
bool mentions_rate_limit(std::string_view message) {
  return ascii_lower(message).find("rate limit") != std::string::npos;
}

std::string str(const json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The integer under `key`, else `fallback`. GitHub's answers pass proxies (and GHES versions):
// a field of another type is missing data, never an exception (nlohmann's value() throws).
std::int64_t integer(const json& j, const char* key, std::int64_t fallback = 0) {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<std::int64_t>() : fallback;
}
bool boolean(const json& j, const char* key) {
  if (!j.is_object()) return false;
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

std::string when(q::Millis t) { return iso8601_utc(t / 1000); }

// The login of the account under `key` ("user", "actor"), "" when there is none.
std::string login_of(const json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it == j.end() ? "" : str(*it, "login");
}

// A `labeled` or `unlabeled` event of `label` (GET .../issues/{n}/events), else none.
std::optional<LabelChange> label_change(const json& e, const std::string& label) {
  const std::string event = str(e, "event");
  auto at = parse_iso8601_ms(str(e, "created_at"));
  if ((event != "labeled" && event != "unlabeled") || !at || !e.contains("label") ||
      str(e["label"], "name") != label)
    return std::nullopt;
  return LabelChange{login_of(e, "actor"), *at, event == "labeled"};
}

}  // namespace

Result<std::string> app_jwt(std::int64_t app_id, const std::string& pem, q::Millis now) {
  const std::int64_t iat = now / 1000 - 60;
  const std::string header = base64url_encode(R"({"alg":"RS256","typ":"JWT"})");
  const std::string claims =
      base64url_encode(json{{"iat", iat}, {"exp", iat + 600 - 60}, {"iss", app_id}}.dump());
  const std::string signing_input = header + "." + claims;
  auto sig = rs256_sign(pem, signing_input);
  if (!sig) return sig.error();
  return signing_input + "." + base64url_encode(*sig);
}

std::string next_link(const std::string& link) {
  std::size_t pos = 0;
  while (pos < link.size()) {
    auto open = link.find('<', pos);
    if (open == std::string::npos) break;
    auto close = link.find('>', open);
    if (close == std::string::npos) break;
    auto end = link.find(',', close);
    std::string params =
        link.substr(close + 1, end == std::string::npos ? std::string::npos : end - close - 1);
    if (params.find("rel=\"next\"") != std::string::npos)
      return link.substr(open + 1, close - open - 1);
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  return "";
}

std::string path_segment(const std::string& s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

Client::Client(HttpClient& http, const Clock& clock, ClientOptions options)
    : http_(http), clock_(clock), options_(std::move(options)) {
  if (auto url = parse_url(options_.api_url)) origin_ = url->origin();
  health_.used = true;
}

void Client::stop() {
  {
    std::lock_guard lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
}

bool Client::stopping() const {
  std::lock_guard lock(stop_mu_);
  return stopping_;
}

bool Client::pause(q::Millis ms) {
  if (options_.sleep) {
    if (stopping()) return false;
    options_.sleep(ms);
    return !stopping();
  }
  std::unique_lock lock(stop_mu_);
  return !stop_cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stopping_; });
}

std::string Client::url_of(const std::string& path) const {
  if (path.starts_with("https://") || path.starts_with("http://")) return path;
  return options_.api_url + path;
}

void Client::counted(const Result<HttpReply>& reply) {
  {
    std::lock_guard lock(mu_);
    ++requests_;
  }
  // By the HTTP status GitHub answered (a 304 is a request the ETag made free); "error" when
  // there was no answer (connect, TLS, timeout).
  metrics::global().add("dmzbot_forge_api_requests_total",
                        {{"forge", "github"},
                         {"code", reply ? std::to_string(reply->status) : std::string("error")}});
}

void Client::note_error(const std::string& message) {
  std::lock_guard lock(mu_);
  health_.ok = false;
  health_.last_error = message;
}

void Client::note_ok(const HttpReply& reply) {
  std::lock_guard lock(mu_);
  health_.ok = true;
  health_.last_error.clear();
  // The Date is whole seconds, truncated: +500 ms is the middle of the second it names.
  if (auto date = parse_http_date(reply.header("date")))
    health_.clock_offset = *date + 500 - clock_.now();
  const std::string remaining = reply.header("x-ratelimit-remaining");
  if (!remaining.empty()) {
    try {
      health_.rate_remaining = std::stoi(remaining);
    } catch (const std::exception&) {
    }
  }
}

ApiHealth Client::health() const {
  std::lock_guard lock(mu_);
  ApiHealth h = health_;
  if (h.blocked_until <= clock_.now()) h.blocked_until = 0;
  return h;
}

std::uint64_t Client::requests() const {
  std::lock_guard lock(mu_);
  return requests_;
}

Result<std::string> Client::token() {
  if (!app()) return options_.token;
  std::lock_guard lock(token_mu_);
  if (!installation_token_.empty() && installation_expires_ - clock_.now() > kTokenMargin)
    return installation_token_;
  return refresh_installation_token();
}

// Called with token_mu_ held. A few quick attempts: without a token nothing else works.
Result<std::string> Client::refresh_installation_token() {
  const std::string url = options_.api_url + "/app/installations/" +
                          std::to_string(options_.installation_id) + "/access_tokens";
  Error last = unavailable("no attempt");
  for (int attempt = 1; attempt <= options_.max_attempts; ++attempt) {
    if (stopping()) return unavailable("installation token: stopping");
    auto jwt = this->jwt();
    if (!jwt) return jwt.error();
    HttpCall c{"POST",
               url,
               {{"Accept", "application/vnd.github+json"},
                {"X-GitHub-Api-Version", "2022-11-28"},
                {"User-Agent", "dmzbot"},
                {"Authorization", "Bearer " + *jwt}},
               ""};
    auto r = http_.send(c);
    counted(r);
    if (r && r->status == 201) {
      json body = json::parse(r->body, nullptr, false);
      std::string token = str(body, "token");
      auto expires = parse_iso8601_ms(str(body, "expires_at"));
      if (token.empty() || !expires)
        return unavailable("the installation token answer has no token or expiry");
      note_ok(*r);
      installation_token_ = token;
      installation_expires_ = *expires - health().clock_offset;  // on our clock
      return installation_token_;
    }
    if (r && r->status >= 400 && r->status < 500 && r->status != 429) {
      std::string why = "installation token: " + std::to_string(r->status) + " " +
                        message_of(json::parse(r->body, nullptr, false));
      note_error(why);
      return r->status == 401 ? unauthenticated(why) : permission_denied(why);
    }
    last = r ? unavailable("installation token: " + std::to_string(r->status))
             : unavailable("installation token: " + r.message());
    note_error(last.message);
    if (attempt < options_.max_attempts && !pause(options_.backoff))
      return unavailable("installation token: stopping");
  }
  return last;
}

// On GitHub's clock as far as it is known: a JWT from a clock ahead of it is refused.
Result<std::string> Client::jwt() const {
  return app_jwt(options_.app_id, options_.private_key, clock_.now() + health().clock_offset);
}

Result<std::string> Client::bearer(const std::string& url) {
  if (app() && url.starts_with(options_.api_url + "/app/")) return jwt();  // GitHub's App endpoints
  return token();
}

Result<Client::Response> Client::call(const std::string& method, const std::string& path,
                                      const json* body, bool once) {
  const std::string url = url_of(path);
  // The token goes only to the API's own origin (a Link header could point elsewhere).
  if (origin_.empty() || !(url == origin_ || url.starts_with(origin_ + "/")))
    return invalid("refusing to send the API token to " + escape_control(url));
  const std::string what = method + " " + url.substr(origin_.size());
  const bool get = method == "GET";
  Error last = unavailable(what + ": no attempt");
  bool retried_auth = false;
  q::Millis backoff = options_.backoff;
  const Error stopped = unavailable(what + ": stopping");
  for (int attempt = 1; attempt <= options_.max_attempts; ++attempt) {
    if (stopping()) return stopped;
    // A rate limit in force: waited out if short, else refused at once (no request is spent).
    q::Millis blocked = 0;
    {
      std::lock_guard lock(mu_);
      blocked = health_.blocked_until;
    }
    if (const q::Millis wait = blocked - clock_.now(); wait > 0) {
      if (wait > options_.max_rate_wait)
        return unavailable(what + ": rate limited until " + when(blocked));
      if (!pause(wait)) return stopped;
    }
    auto auth = bearer(url);
    if (!auth) return auth.error();
    HttpCall c;
    c.method = method;
    c.url = url;
    c.headers = {{"Accept", "application/vnd.github+json"},
                 {"X-GitHub-Api-Version", "2022-11-28"},
                 {"User-Agent", "dmzbot"},
                 {"Authorization", "Bearer " + *auth}};
    const Cached* known = get ? cached(url) : nullptr;
    if (known) c.headers.emplace_back("If-None-Match", known->etag);
    if (body) {
      c.body = body->dump(-1, ' ', false, json::error_handler_t::replace);
      c.headers.emplace_back("Content-Type", "application/json");
    }
    auto r = http_.send(c);
    counted(r);
    // No answer, or a 5xx: the API may have carried the request out. True when it is sent
    // again (after the doubling backoff); a request that creates (`once`) is not.
    auto again_after = [&](const std::string& failure) {
      last = unavailable(what + ": " + failure);
      note_error(last.message);
      if (once) return false;
      if (attempt < options_.max_attempts) {
        pause(backoff);  // stop() ends it, and the next attempt is not made
        backoff = std::min(backoff * 2, options_.max_backoff);
      }
      return true;
    };
    if (!r) {
      if (!again_after(r.message())) return last;
      continue;
    }
    HttpReply reply = std::move(*r);
    // A 304 tells how the API is now (rate limit, date); the cached answer only its body.
    const bool not_modified = reply.status == 304 && known;
    if (not_modified) {
      note_ok(reply);
      reply = known->reply;
    }
    const int st = reply.status;
    json parsed = reply.body.empty() ? json() : json::parse(reply.body, nullptr, false);
    if (parsed.is_discarded()) parsed = json();
    if (st >= 200 && st < 300) {
      if (!not_modified) note_ok(reply);
      if (get && !reply.header("etag").empty()) cache(url, reply.header("etag"), reply);
      return Response{st, std::move(parsed), reply.headers};
    }
    const std::string said =
        std::to_string(st) + (message_of(parsed).empty() ? "" : " ") + message_of(parsed);
    // Rate limits (GitHub's "Rate limits for the REST API"): a 403 or 429 that says Retry-After,
    // or X-RateLimit-Remaining 0 (until X-RateLimit-Reset), or only its message (a secondary
    // limit: wait at least a minute; asking again meanwhile can get the integration banned).
    const std::string retry_after = reply.header("retry-after");
    const bool exhausted = reply.header("x-ratelimit-remaining") == "0";
    if (st == 429 || (st == 403 && (!retry_after.empty() || exhausted ||
                                    mentions_rate_limit(message_of(parsed))))) {
      // GitHub's order: Retry-After; else the reset, when nothing remains (the primary
      // limit); else (a secondary limit) at least a minute.
      q::Millis until = clock_.now() + 60'000;
      try {
        if (!retry_after.empty())
          until = clock_.now() + std::stoll(retry_after) * 1000;
        else if (exhausted && !reply.header("x-ratelimit-reset").empty())
          until = std::stoll(reply.header("x-ratelimit-reset")) * 1000;
      } catch (const std::exception&) {
      }
      {
        std::lock_guard lock(mu_);
        health_.blocked_until = std::max(until, clock_.now() + 1000);
        if (exhausted) health_.rate_remaining = 0;
      }
      last = unavailable(what + ": rate limited (" + said + ")");
      note_error(last.message);
      continue;
    }
    if (st >= 500) {
      if (!again_after(said)) return last;
      continue;
    }
    note_ok(reply);  // the API answered: a refusal is about the request, not the API
    if (st == 401 && app() && !retried_auth) {  // the installation token was revoked: renew
      retried_auth = true;
      std::lock_guard lock(token_mu_);
      installation_token_.clear();
      --attempt;
      continue;
    }
    switch (st) {
      case 401:
        return unauthenticated(what + ": " + said);
      case 403:
        return permission_denied(what + ": " + said);
      case 404:
      case 410:
        return not_found(what + ": " + said);
      case 409:
        return conflict(what + ": " + said);
      default:
        return invalid(what + ": " + said);
    }
  }
  return last;
}

const Client::Cached* Client::cached(const std::string& url) {
  auto it = etags_.find(url);
  if (it == etags_.end()) return nullptr;
  etag_order_.splice(etag_order_.end(), etag_order_, it->second.used);
  return &it->second;
}

void Client::cache(const std::string& url, std::string etag, HttpReply reply) {
  if (auto it = etags_.find(url); it != etags_.end()) {
    etag_bytes_ -= it->second.reply.body.size();
    etag_order_.erase(it->second.used);
    etags_.erase(it);
  }
  if (reply.body.size() > options_.max_cached_bytes) return;
  etag_bytes_ += reply.body.size();
  etag_order_.push_back(url);
  etags_.emplace(url, Cached{std::move(etag), std::move(reply), std::prev(etag_order_.end())});
  while (etag_bytes_ > options_.max_cached_bytes) {
    auto oldest = etags_.find(etag_order_.front());
    etag_bytes_ -= oldest->second.reply.body.size();
    etags_.erase(oldest);
    etag_order_.pop_front();
  }
}

Result<std::vector<json>> Client::list(const std::string& path, const std::string& field,
                                       bool* complete,
                                       const std::function<bool(const json&)>& enough) {
  std::vector<json> items;
  std::string url = with_per_page(path);
  if (complete) *complete = false;
  for (std::size_t page = 0; page < options_.max_pages; ++page) {
    auto r = call("GET", url);
    if (!r) return r.error();
    const json* array = &r->body;
    if (!field.empty()) {
      if (!r->body.is_object() || !r->body.contains(field)) return items;
      array = &r->body[field];
    }
    bool done = false;
    if (array->is_array())
      for (const auto& item : *array) {
        items.push_back(item);
        done = done || (enough && enough(item));
      }
    auto link = r->headers.find("link");
    url = link == r->headers.end() || done ? std::string() : next_link(link->second);
    if (url.empty()) {
      if (complete) *complete = true;
      return items;
    }
  }
  return items;  // truncated: complete stays false
}

namespace {

// A pull request as the API shows it (GET /pulls, GET /pulls/{n}, POST /pulls).
PullInfo pull_info(const json& p) {
  PullInfo info;
  const std::int64_t number = integer(p, "number");
  info.number = number > 0 && number <= std::numeric_limits<int>::max() ? int(number) : 0;
  if (p.contains("state")) info.state = str(p, "state");
  info.title = str(p, "title");
  info.author = login_of(p, "user");
  if (p.contains("head")) {
    info.head = str(p["head"], "sha");
    info.head_ref = str(p["head"], "ref");
  }
  if (p.contains("base")) info.base = str(p["base"], "ref");
  info.draft = boolean(p, "draft");
  if (p.contains("labels") && p["labels"].is_array())
    for (const auto& l : p["labels"]) info.labels.push_back(str(l, "name"));
  return info;
}

}  // namespace

Result<std::pair<std::vector<PullInfo>, bool>> Client::open_pulls(const std::string& base) {
  bool complete = false;
  auto items = list("/repos/" + options_.repo + "/pulls?state=open&base=" + path_segment(base), "",
                    &complete);
  if (!items) return items.error();
  std::vector<PullInfo> out;
  for (const auto& p : *items) {
    PullInfo info = pull_info(p);
    if (info.number > 0 && !info.head.empty()) out.push_back(std::move(info));
  }
  return std::make_pair(std::move(out), complete);
}

Result<PullInfo> Client::pull(int number) {
  auto r = call("GET", "/repos/" + options_.repo + "/pulls/" + std::to_string(number));
  if (!r) return r.error();
  if (!r->body.is_object())
    return unavailable("GET /pulls/" + std::to_string(number) +
                       ": the answer is not a pull request");
  PullInfo info = pull_info(r->body);
  info.number = number;
  return info;
}

Result<std::vector<PullInfo>> Client::pulls_of_branch(const std::string& branch) {
  const std::string owner = options_.repo.substr(0, options_.repo.find('/'));
  auto items = list("/repos/" + options_.repo +
                    "/pulls?state=all&head=" + path_segment(owner + ":" + branch));
  if (!items) return items.error();
  std::vector<PullInfo> out;
  for (const auto& p : *items) {
    PullInfo info = pull_info(p);
    if (info.number > 0 && info.head_ref == branch) out.push_back(std::move(info));
  }
  return out;
}

Result<PullInfo> Client::create_pull(const std::string& head, const std::string& base,
                                     const std::string& title, const std::string& body) {
  json b{{"title", title}, {"head", head}, {"base", base}, {"body", body}};
  auto r = call("POST", "/repos/" + options_.repo + "/pulls", &b, true);  // open_pull looks first
  if (!r) return r.error();
  PullInfo info = pull_info(r->body);
  if (info.number <= 0 || info.head.empty())
    return unavailable("POST /pulls: the answer names no pull request");
  return info;
}

Result<std::optional<LabelEvent>> Client::last_labeled(int number, const std::string& label) {
  auto items = list("/repos/" + options_.repo + "/issues/" + std::to_string(number) + "/events");
  if (!items) return items.error();
  std::optional<LabelEvent> found;
  q::Millis ready_at = 0;
  const q::Millis offset = health().clock_offset;
  for (const auto& e : *items) {
    if (str(e, "event") == "ready_for_review")
      if (auto at = parse_iso8601_ms(str(e, "created_at")))
        ready_at = std::max(ready_at, *at - offset);  // on dmzbot's clock
    auto change = label_change(e, label);
    if (!change || !change->added) continue;
    const q::Millis at = change->at - offset;
    if (!found || at >= found->at) found = LabelEvent{change->actor, at};
  }
  if (found) found->ready_at = ready_at;
  return found;
}

Result<std::vector<HookDelivery>> Client::hook_deliveries(std::int64_t hook_id, q::Millis since) {
  const q::Millis offset = health().clock_offset;
  auto delivered_at = [&](const json& d) {
    auto at = parse_iso8601_ms(str(d, "delivered_at"));
    return at ? std::optional<q::Millis>(*at - offset) : std::nullopt;  // on dmzbot's clock
  };
  auto items = list(hook_path(hook_id) + "/deliveries", "", nullptr, [&](const json& d) {
    auto at = delivered_at(d);
    return at && *at < since;
  });
  if (!items) return items.error();
  std::vector<HookDelivery> out;
  for (const auto& d : *items) {
    auto at = delivered_at(d);
    const std::int64_t id = integer(d, "id");
    if (!at || id <= 0) continue;
    const std::int64_t code = integer(d, "status_code");
    out.push_back(HookDelivery{id, str(d, "guid"), *at,
                               code > 0 && code < 1000 ? static_cast<int>(code) : 0,
                               str(d, "event"), integer(d, "repository_id")});
  }
  return out;
}

std::string Client::hook_path(std::int64_t hook_id) const {
  return hook_id ? "/repos/" + options_.repo + "/hooks/" + std::to_string(hook_id) : "/app/hook";
}

Status Client::redeliver(std::int64_t hook_id, std::int64_t delivery_id) {
  // Not `once`: a delivery asked for twice arrives twice with one guid, and is taken once.
  return call("POST",
              hook_path(hook_id) + "/deliveries/" + std::to_string(delivery_id) + "/attempts")
      .status();
}

Result<std::int64_t> Client::repository_id() {
  if (repository_id_) return repository_id_;
  auto r = call("GET", "/repos/" + options_.repo);
  if (!r) return r.error();
  const std::int64_t id = integer(r->body, "id");
  if (id <= 0) return unavailable("GET /repos/" + options_.repo + ": the answer has no id");
  return repository_id_ = id;
}

Result<std::vector<std::string>> Client::commit_authors(int number) {
  auto items = list("/repos/" + options_.repo + "/pulls/" + std::to_string(number) + "/commits");
  if (!items) return items.error();
  std::vector<std::string> out;
  for (const auto& c : *items) {
    const std::string login =
        c.is_object() && c.contains("author") ? str(c["author"], "login") : "";
    if (!login.empty() && std::find(out.begin(), out.end(), login) == out.end())
      out.push_back(login);
  }
  return out;
}

Result<std::vector<std::string>> Client::approving_reviewers(int number, const queue::Sha& sha) {
  auto items = list("/repos/" + options_.repo + "/pulls/" + std::to_string(number) + "/reviews");
  if (!items) return items.error();
  std::map<std::string, const nlohmann::json*> latest;  // by login; the list is oldest first
  for (const auto& r : *items) {
    const std::string state = str(r, "state");
    const std::string login = login_of(r, "user");
    if (state != "COMMENTED" && state != "PENDING" && !login.empty()) latest[login] = &r;
  }
  std::vector<std::string> out;
  for (const auto& [login, r] : latest)
    if (str(*r, "state") == "APPROVED" && str(*r, "commit_id") == sha) out.push_back(login);
  return out;
}

Result<std::string> Client::permission(const std::string& login) {
  auto r = call(
      "GET", "/repos/" + options_.repo + "/collaborators/" + path_segment(login) + "/permission");
  if (!r) {
    if (r.code() == Code::kNotFound) return std::string("none");
    return r.error();
  }
  return str(r->body, "permission");
}

Result<bool> Client::team_member(const std::string& org, const std::string& slug,
                                 const std::string& login) {
  auto r = call("GET", "/orgs/" + path_segment(org) + "/teams/" + path_segment(slug) +
                           "/memberships/" + path_segment(login));
  if (!r) {
    if (r.code() == Code::kNotFound) return false;
    return r.error();
  }
  return str(r->body, "state") == "active";
}

Status Client::comment(int number, const std::string& body) {
  json b{{"body", body}};
  // Once: the outbox's next attempt looks for the comment's marker before posting again.
  return call("POST", "/repos/" + options_.repo + "/issues/" + std::to_string(number) + "/comments",
              &b, true)
      .status();
}

Result<bool> Client::has_comment_with(int number, const std::string& marker) {
  auto items = list("/repos/" + options_.repo + "/issues/" + std::to_string(number) + "/comments");
  if (!items) return items.error();
  return std::any_of(items->begin(), items->end(), [&](const json& c) {
    return str(c, "body").find(marker) != std::string::npos;
  });
}

Result<std::vector<IssueComment>> Client::comments_since(int number, q::Millis since) {
  auto items = list("/repos/" + options_.repo + "/issues/" + std::to_string(number) +
                    "/comments?since=" + when(since));
  if (!items) return items.error();
  std::vector<IssueComment> out;
  for (const auto& c : *items) {
    auto at = parse_iso8601_ms(str(c, "created_at"));
    if (!at || *at < since) continue;
    out.push_back({login_of(c, "user"), str(c, "body"), *at});
  }
  return out;
}

Result<std::vector<IssueComment>> Client::review_bodies(int number) {
  auto items = list("/repos/" + options_.repo + "/pulls/" + std::to_string(number) + "/reviews");
  if (!items) return items.error();
  std::vector<IssueComment> out;
  for (const auto& r : *items)
    if (auto at = parse_iso8601_ms(str(r, "submitted_at")))  // none while pending
      out.push_back({login_of(r, "user"), str(r, "body"), *at});
  return out;
}

Result<std::vector<LabelChange>> Client::label_changes(int number, const std::string& label) {
  auto items = list("/repos/" + options_.repo + "/issues/" + std::to_string(number) + "/events");
  if (!items) return items.error();
  std::vector<LabelChange> out;
  for (const auto& e : *items)
    if (auto change = label_change(e, label)) out.push_back(std::move(*change));
  return out;
}

Status Client::add_labels(int number, const std::vector<std::string>& labels) {
  json b{{"labels", labels}};
  return call("POST", "/repos/" + options_.repo + "/issues/" + std::to_string(number) + "/labels",
              &b)
      .status();
}

Status Client::remove_label(int number, const std::string& label) {
  auto r = call("DELETE", "/repos/" + options_.repo + "/issues/" + std::to_string(number) +
                              "/labels/" + path_segment(label));
  if (!r && r.code() == Code::kNotFound) return {};
  return r.status();
}

Status Client::commit_status(const q::Sha& sha, const std::string& state,
                             const std::string& context, const std::string& description,
                             const std::string& target_url) {
  json b{{"state", state}, {"context", context}};
  // GitHub refuses descriptions over 140 characters (cut on a UTF-8 boundary).
  b["description"] =
      description.size() > 140 ? std::string(utf8_prefix(description, 137)) + "..." : description;
  if (!target_url.empty()) b["target_url"] = target_url;
  return call("POST", "/repos/" + options_.repo + "/statuses/" + sha, &b).status();
}

Result<std::int64_t> Client::check_run(std::optional<std::int64_t> id, const json& fields) {
  auto r =
      id ? call("PATCH", "/repos/" + options_.repo + "/check-runs/" + std::to_string(*id), &fields)
         : call("POST", "/repos/" + options_.repo + "/check-runs", &fields);
  if (!r) return r.error();
  const std::int64_t run = integer(r->body, "id");
  if (run <= 0) return unavailable("the check run answer has no id");
  return run;
}

Result<std::optional<std::int64_t>> Client::find_check_run(const q::Sha& sha,
                                                           const std::string& name) {
  auto r = call("GET", "/repos/" + options_.repo + "/commits/" + sha +
                           "/check-runs?check_name=" + path_segment(name) + "&filter=latest");
  if (!r) return r.error();
  auto runs = r->body.is_object() ? r->body.find("check_runs") : r->body.end();
  const std::int64_t id =
      runs != r->body.end() && runs->is_array() && !runs->empty() ? integer((*runs)[0], "id") : 0;
  return id > 0 ? std::optional<std::int64_t>(id) : std::nullopt;
}

Result<std::vector<q::Check>> Client::checks(const q::Sha& sha, const CheckSources& sources,
                                             std::vector<std::string>* ignored) {
  std::vector<q::Check> out;
  std::set<std::string> noted;  // one note per check and reporter
  auto refused = [&](const std::string& name, bool check_run, const std::string& reporter,
                     std::int64_t app_id = 0) {
    if (from_source(sources, name, check_run, reporter, app_id)) return false;
    if (ignored && noted
                       .insert((check_run ? "r:" : "s:") + name + "\n" + reporter + "\n" +
                               std::to_string(app_id))
                       .second)
      ignored->push_back(ignored_report(sources, name, sha, check_run, reporter, app_id));
    return true;
  };
  if (sources.empty()) {
    // Every page of the combined status (30 contexts by default; a CI that posts one status
    // per job has more).
    auto statuses = list("/repos/" + options_.repo + "/commits/" + sha + "/status", "statuses");
    if (!statuses) return statuses.error();
    for (const auto& s : *statuses)
      out.push_back(q::Check{str(s, "context"), status_state(str(s, "state")),
                             str(s, "description"), str(s, "target_url"), 0});
  } else {
    // The combined status names no creator: the statuses themselves, newest first. Each
    // context's newest status that counts stands for it (a newer one from another source is
    // passed over, as GitHub's branch protection passes it over).
    auto statuses = list("/repos/" + options_.repo + "/commits/" + sha + "/statuses");
    if (!statuses) return statuses.error();
    std::set<std::string> seen;
    for (const auto& s : *statuses) {
      const std::string context = str(s, "context");
      if (context.empty() || seen.count(context)) continue;
      const std::string creator = s.contains("creator") ? str(s["creator"], "login") : "";
      if (refused(context, false, creator)) continue;
      seen.insert(context);
      out.push_back(q::Check{context, status_state(str(s, "state")), str(s, "description"),
                             str(s, "target_url"), 0});
    }
  }
  auto runs = list("/repos/" + options_.repo + "/commits/" + sha + "/check-runs", "check_runs");
  if (!runs) return runs.error();
  for (const auto& run : *runs) {
    const std::string name = str(run, "name");
    const std::string app = run.contains("app") ? str(run["app"], "slug") : "";
    const std::int64_t app_id = run.contains("app") ? integer(run["app"], "id") : 0;
    if (refused(name, true, app, app_id)) continue;
    std::string description = run.contains("output") ? str(run["output"], "title") : "";
    if (description.empty()) description = str(run, "conclusion");
    std::string url = str(run, "html_url");
    if (url.empty()) url = str(run, "details_url");
    out.push_back(
        q::Check{name, run_state(str(run, "status"), str(run, "conclusion")), description, url, 0});
  }
  return out;
}

}  // namespace dmz::forges::github

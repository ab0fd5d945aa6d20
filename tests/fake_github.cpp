// Beast and asio's OpenSSL stream serve the TLS; the API itself is a small router over
// in-memory state. One connection at a time is enough: the bot's calls are sequential.
#include "tests/fake_github.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <cstring>
#include <ctime>
#include <memory>
#include <sstream>
#include <tuple>

#include "base/iso_time.hpp"

namespace dmz::test {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using nlohmann::json;

std::vector<std::string> split(const std::string& path) {
  std::vector<std::string> out;
  std::stringstream in(path);
  for (std::string part; std::getline(in, part, '/');)
    if (!part.empty()) out.push_back(part);
  return out;
}

std::string decode(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::map<std::string, std::string> query_of(const std::string& target) {
  std::map<std::string, std::string> out;
  auto q = target.find('?');
  if (q == std::string::npos) return out;
  std::stringstream in(target.substr(q + 1));
  for (std::string kv; std::getline(in, kv, '&');) {
    auto eq = kv.find('=');
    out[decode(kv.substr(0, eq))] = eq == std::string::npos ? "" : decode(kv.substr(eq + 1));
  }
  return out;
}

std::string iso(std::int64_t ms) { return iso8601_utc(ms / 1000); }

// "Sun, 06 Nov 1994 08:49:37 GMT", as every answer of GitHub's carries.
std::string http_date(std::int64_t ms) {
  const std::time_t t = ms / 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

std::string b64url_decode(std::string s) {
  for (char& c : s) {
    if (c == '-') c = '+';
    if (c == '_') c = '/';
  }
  while (s.size() % 4) s += '=';
  std::string out(s.size(), '\0');
  int n =
      EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(s.data()), static_cast<int>(s.size()));
  if (n < 0) return "";
  std::size_t pad = 0;
  while (pad < 2 && s.size() > pad && s[s.size() - 1 - pad] == '=') ++pad;
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

// An RS256 JWT checked with `pem` (a public key): its signature, iss and lifetime.
bool valid_jwt(const std::string& jwt, const std::string& pem, std::int64_t app_id,
               std::int64_t now_s) {
  auto d1 = jwt.find('.'), d2 = jwt.rfind('.');
  if (d1 == std::string::npos || d2 == d1) return false;
  const std::string input = jwt.substr(0, d2);
  const std::string sig = b64url_decode(jwt.substr(d2 + 1));
  json header = json::parse(b64url_decode(jwt.substr(0, d1)), nullptr, false);
  json claims = json::parse(b64url_decode(jwt.substr(d1 + 1, d2 - d1 - 1)), nullptr, false);
  if (!header.is_object() || header.value("alg", "") != "RS256" || !claims.is_object())
    return false;
  if (claims.value("iss", std::int64_t{0}) != app_id) return false;
  const std::int64_t iat = claims.value("iat", std::int64_t{0});
  const std::int64_t exp = claims.value("exp", std::int64_t{0});
  if (iat > now_s + 60 || exp <= now_s || exp - iat > 600) return false;
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* key = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (!key) return false;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok =
      EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1 &&
      EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                       reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(key);
  return ok;
}

json pull_json(const FakeGitHub::Pull& p, const std::string& repo) {
  json labels = json::array();
  for (const auto& l : p.labels) labels.push_back({{"name", l}});
  return {{"number", p.number},
          {"state", p.state},
          {"title", p.title},
          {"draft", p.draft},
          {"user", {{"login", p.author}}},
          {"head", {{"ref", p.head_ref}, {"sha", p.head_sha}, {"repo", {{"full_name", repo}}}}},
          {"base", {{"ref", p.base}, {"repo", {{"full_name", repo}}}}},
          {"labels", labels}};
}

json run_json(const FakeGitHub::CheckRun& r) {
  json j{{"id", r.id},
         {"name", r.name},
         {"head_sha", r.head_sha},
         {"status", r.status},
         {"conclusion", r.conclusion.empty() ? json() : json(r.conclusion)},
         {"output", {{"title", r.title}, {"summary", r.summary}}},
         {"html_url", "https://github.example/runs/" + std::to_string(r.id)}};
  if (!r.details_url.empty()) j["details_url"] = r.details_url;
  return j;
}

}  // namespace

FakeGitHub::FakeGitHub(Options options) : options_(std::move(options)) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 ||
      ::listen(listen_fd_, 64) < 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) < 0 ||
      ::pipe2(stop_pipe_, O_CLOEXEC) < 0) {
    error_ = std::string("listen: ") + std::strerror(errno);
    return;
  }
  port_ = ntohs(addr.sin_port);
  thread_ = std::thread([this] { serve(); });
}

FakeGitHub::~FakeGitHub() {
  if (stop_pipe_[1] >= 0) {
    char c = 0;
    (void)!::write(stop_pipe_[1], &c, 1);
  }
  if (thread_.joinable()) thread_.join();
  for (int fd : hung_) ::close(fd);
  for (int fd : {listen_fd_, stop_pipe_[0], stop_pipe_[1]})
    if (fd >= 0) ::close(fd);
}

std::string FakeGitHub::api_url() const { return "https://127.0.0.1:" + std::to_string(port_); }

std::int64_t FakeGitHub::now_ms() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
             .count() +
         options_.clock_skew_ms;
}

void FakeGitHub::serve() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents) return;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    {
      std::lock_guard lock(mu_);
      if (hang_ > 0) {
        --hang_;
        hung_.push_back(fd);
        continue;
      }
    }
    handle(fd);
  }
}

void FakeGitHub::handle(int fd) {
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  try {
    asio::io_context ioc;
    ssl::context ctx(ssl::context::tls_server);
    ctx.use_certificate_chain_file(options_.cert.string());
    ctx.use_private_key_file(options_.key.string(), ssl::context::pem);
    asio::ip::tcp::socket socket(ioc);
    socket.assign(asio::ip::tcp::v4(), fd);
    beast::ssl_stream<asio::ip::tcp::socket&> stream(socket, ctx);
    beast::error_code ec;
    stream.handshake(ssl::stream_base::server, ec);
    if (ec) return;  // e.g. a client that does not trust our CA: the socket closes with it
    beast::flat_buffer buffer;
    http::request_parser<http::string_body> parser;
    parser.body_limit(4 << 20);
    http::read(stream, buffer, parser, ec);
    if (ec) return;
    auto& req = parser.get();
    Request record;
    record.method = std::string(req.method_string());
    record.target = std::string(req.target());
    record.path = record.target.substr(0, record.target.find('?'));
    record.body = req.body();
    Answer a = route(record.method, record.target, req.body(),
                     std::string(req[http::field::authorization]),
                     std::string(req[http::field::if_none_match]), record);
    record.status = a.status;
    {
      std::lock_guard lock(mu_);
      requests_.push_back(record);
    }
    http::response<http::string_body> res{static_cast<http::status>(a.status), 11};
    res.set(http::field::server, "fake-github");
    res.set(http::field::date, http_date(now_ms()));
    res.set(http::field::content_type, "application/json; charset=utf-8");
    for (const auto& [k, v] : a.headers) res.set(k, v);
    if (!a.raw_empty) res.body() = a.body.is_null() ? std::string() : a.body.dump();
    res.keep_alive(false);
    res.prepare_payload();
    http::write(stream, res, ec);
    socket.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  } catch (const std::exception&) {
    // a broken connection: nothing to answer
  }
}

std::string FakeGitHub::check_auth(const std::string& authorization, const std::string& path) {
  if (authorization.rfind("Bearer ", 0) != 0 && authorization.rfind("token ", 0) != 0) return "";
  const std::string value = authorization.substr(authorization.find(' ') + 1);
  if (path.rfind("/app/", 0) == 0)
    return options_.app_id &&
                   valid_jwt(value, options_.app_public_key, options_.app_id, now_ms() / 1000)
               ? "jwt"
               : "bad";
  if (!options_.token.empty() && value == options_.token) return "token";
  auto it = installation_tokens_.find(value);
  if (it != installation_tokens_.end() && it->second > now_ms()) return "installation";
  return "bad";
}

// GitHub's per_page (30 unless asked), at most the page size this fake is set to.
int FakeGitHub::per_page_of(std::map<std::string, std::string>& query) const {
  const int asked = query.count("per_page") ? std::stoi(query["per_page"]) : 30;
  return std::max(1, std::min(asked, options_.page_size));
}

FakeGitHub::Answer FakeGitHub::list(const std::string& target, const json& items,
                                    const std::string& if_none_match) {
  auto q = query_of(target);
  const int per_page = per_page_of(q);
  int page = q.count("page") ? std::stoi(q["page"]) : 1;
  const int total = static_cast<int>(items.size());
  json slice = json::array();
  for (int i = (page - 1) * per_page; i < std::min(total, page * per_page); ++i)
    slice.push_back(items[static_cast<std::size_t>(i)]);
  Answer a{200, slice, {}, false};
  if (page * per_page < total) {
    std::string base = target;
    // Drop any page=, keep the rest of the query.
    auto qpos = base.find('?');
    std::string path = base.substr(0, qpos);
    std::string rebuilt;
    for (const auto& [k, v] : q)
      if (k != "page") rebuilt += (rebuilt.empty() ? "?" : "&") + k + "=" + v;
    rebuilt += (rebuilt.empty() ? "?" : "&") + std::string("page=") + std::to_string(page + 1);
    a.headers.emplace_back("Link", "<" + api_url() + path + rebuilt + ">; rel=\"next\"");
  }
  const std::string etag = "W/\"" + std::to_string(std::hash<std::string>{}(slice.dump())) + "\"";
  a.headers.emplace_back("ETag", etag);
  if (!if_none_match.empty() && if_none_match == etag) {
    a.status = 304;
    a.raw_empty = true;
  }
  return a;
}

FakeGitHub::Answer FakeGitHub::route(const std::string& method, const std::string& target,
                                     const std::string& body, const std::string& authorization,
                                     const std::string& if_none_match, Request& record) {
  std::lock_guard lock(mu_);
  const std::string path = target.substr(0, target.find('?'));
  if ((fail_rate_ > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < fail_rate_) ||
      (!fail_prefix_.empty() && path.starts_with(fail_prefix_)))
    return Answer{502, json{{"message", "Server Error"}}, {}, false};
  if (limited_until_ > now_ms()) {
    if (secondary_limit_)
      return Answer{429,
                    json{{"message", "You have exceeded a secondary rate limit."}},
                    {{"Retry-After", std::to_string((limited_until_ - now_ms()) / 1000 + 1)}},
                    false};
    return Answer{403,
                  json{{"message", "API rate limit exceeded"}},
                  {{"X-RateLimit-Remaining", "0"},
                   {"X-RateLimit-Reset", std::to_string(limited_until_ / 1000 + 1)}},
                  false};
  }
  record.auth = check_auth(authorization, path);
  if (record.auth.empty() || record.auth == "bad")
    return Answer{401, json{{"message", "Bad credentials"}}, {}, false};
  const std::vector<std::string> p = split(path);
  json in = body.empty() ? json() : json::parse(body, nullptr, false);
  auto ok = [](json b, int status = 200) { return Answer{status, std::move(b), {}, false}; };
  auto not_found = [] { return Answer{404, json{{"message", "Not Found"}}, {}, false}; };
  auto invalid = [](const std::string& why) {
    return Answer{422, json{{"message", "Validation Failed: " + why}}, {}, false};
  };
  std::vector<std::pair<std::string, std::string>> limit_headers = {
      {"X-RateLimit-Remaining", "4999"}};

  // POST /app/installations/{id}/access_tokens
  if (p.size() == 4 && p[0] == "app" && p[1] == "installations" && p[3] == "access_tokens") {
    if (method != "POST" || record.auth != "jwt")
      return Answer{401, json{{"message", "JWT"}}, {}, false};
    if (p[2] != std::to_string(options_.installation_id)) return not_found();
    const std::string token = options_.installation_token.empty()
                                  ? "ghs_fake" + std::to_string(next_id_++)
                                  : options_.installation_token;
    ++tokens_issued_;
    const std::int64_t expires = now_ms() + options_.installation_token_ttl_ms;
    installation_tokens_[token] = expires;
    return ok({{"token", token}, {"expires_at", iso(expires)}}, 201);
  }
  // GET /orgs/{org}/teams/{slug}/memberships/{login}
  if (p.size() == 6 && p[0] == "orgs" && p[2] == "teams" && p[4] == "memberships") {
    if (team_members_.count(p[1] + "/" + p[3] + "/" + decode(p[5])))
      return ok({{"state", "active"}, {"role", "member"}});
    return not_found();
  }
  // GET /app/hook/deliveries and POST /app/hook/deliveries/{id}/attempts: the App's webhook.
  if (p.size() >= 3 && p[0] == "app" && p[1] == "hook" && p[2] == "deliveries") {
    if (record.auth != "jwt") return Answer{401, json{{"message", "JWT"}}, {}, false};
    return deliveries(0, {p.begin() + 3, p.end()}, method, target, path);
  }
  if (p.size() < 3 || p[0] != "repos" || p[1] + "/" + p[2] != options_.repo) return not_found();
  if (p.size() == 3)  // GET /repos/{o}/{r}: the repository
    return method == "GET" ? ok({{"id", kRepositoryId}, {"full_name", options_.repo}})
                           : not_found();
  const std::string what = p[3];

  if (what == "pulls") {
    if (p.size() == 4 && method == "GET") {
      auto q = query_of(target);
      json items = json::array();
      for (const auto& [n, pull] : pulls_) {
        if (q.count("state") && q["state"] != "all" && pull.state != q["state"]) continue;
        if (q.count("base") && pull.base != q["base"]) continue;
        const std::string owner = options_.repo.substr(0, options_.repo.find('/'));
        if (q.count("head") && q["head"] != owner + ":" + pull.head_ref) continue;
        items.push_back(pull_json(pull, options_.repo));
      }
      return list(target, items, if_none_match);
    }
    if (p.size() == 4 && method == "POST") {  // a pull request opened by the bot
      for (const char* field : {"title", "head", "base"})
        if (!in.is_object() || !in.contains(field) || !in[field].is_string()) return invalid(field);
      const std::string head = in["head"], base = in["base"];
      const std::string sha = options_.branch_head ? options_.branch_head(head) : "";
      if (sha.empty() || !options_.branch_head || options_.branch_head(base).empty())
        return invalid("head or base is not a branch");
      for (const auto& [n, pull] : pulls_)
        if (pull.state == "open" && pull.head_ref == head && pull.base == base)
          return invalid("A pull request already exists for " + head);
      Pull made;
      made.number = pulls_.empty() ? 1 : pulls_.rbegin()->first + 1;
      made.title = in["title"];
      made.author = "dmzbot";
      made.head_ref = head;
      made.head_sha = sha;
      made.base = base;
      pulls_[made.number] = made;
      return ok(pull_json(made, options_.repo), 201);
    }
    if (p.size() == 5 && method == "GET") {
      auto it = pulls_.find(std::atoi(p[4].c_str()));
      if (it == pulls_.end()) return not_found();
      return ok(pull_json(it->second, options_.repo));
    }
    if (p.size() == 6 && p[5] == "commits" && method == "GET") {  // oldest first
      const int n = std::atoi(p[4].c_str());
      if (!pulls_.count(n)) return not_found();
      json items = json::array();
      for (const auto& [sha, login] : pull_commits_[n])
        items.push_back({{"sha", sha},
                         {"commit", {{"author", {{"name", "A"}, {"email", "a@example.com"}}}}},
                         {"author", login.empty() ? json() : json{{"login", login}}}});
      return list(target, items, if_none_match);
    }
    if (p.size() == 6 && p[5] == "reviews" && method == "GET") {  // oldest first
      const int n = std::atoi(p[4].c_str());
      if (!pulls_.count(n)) return not_found();
      json items = json::array();
      std::int64_t id = 0;
      for (const auto& r : reviews_)
        if (r.number == n)
          items.push_back({{"id", ++id},
                           {"user", {{"login", r.login}}},
                           {"state", r.state},
                           {"commit_id", r.sha},
                           {"body", ""},
                           {"submitted_at", iso(r.at_ms)}});
      return list(target, items, if_none_match);
    }
  }
  // GET /repos/{o}/{r}/hooks/{id}/deliveries and POST .../deliveries/{delivery_id}/attempts.
  if (what == "hooks" && p.size() >= 6 && p[5] == "deliveries")
    return deliveries(std::atoll(p[4].c_str()), {p.begin() + 6, p.end()}, method, target, path);
  if (what == "issues" && p.size() >= 6) {
    const int n = std::atoi(p[4].c_str());
    auto pull = pulls_.find(n);
    if (pull == pulls_.end()) return not_found();
    if (p[5] == "events" && method == "GET") {
      json items = json::array();
      for (const auto& e : label_events_)
        if (e.number == n)
          items.push_back({{"event", e.added ? "labeled" : "unlabeled"},
                           {"actor", {{"login", e.actor}}},
                           {"label", {{"name", e.label}}},
                           {"created_at", iso(e.at_ms)}});
      return list(target, items, if_none_match);
    }
    if (p[5] == "comments" && method == "GET") {  // oldest first; `since`: updated since
      auto q = query_of(target);
      const std::int64_t since =
          q.count("since") ? parse_iso8601_ms(q["since"]).value_or(INT64_MAX) : 0;
      json items = json::array();
      for (const auto& c : comments_)
        if (c.number == n && c.at_ms >= since)
          items.push_back({{"id", c.id},
                           {"body", c.body},
                           {"user", {{"login", c.author}}},
                           {"created_at", iso(c.at_ms)},
                           {"updated_at", iso(c.at_ms)}});
      return list(target, items, if_none_match);
    }
    if (p[5] == "comments" && method == "POST") {
      if (!in.is_object() || !in.contains("body") || !in["body"].is_string())
        return invalid("body");
      Comment c{next_id_++, n, "dmzbot", in["body"].get<std::string>(), now_ms()};
      comments_.push_back(c);
      return ok({{"id", c.id}, {"body", c.body}}, 201);
    }
    if (p[5] == "labels" && p.size() == 6 && method == "POST") {
      if (!in.is_object() || !in.contains("labels") || !in["labels"].is_array())
        return invalid("labels");
      for (const auto& l : in["labels"]) {
        auto name = l.get<std::string>();
        if (std::find(pull->second.labels.begin(), pull->second.labels.end(), name) ==
            pull->second.labels.end()) {
          pull->second.labels.push_back(name);
          label_events_.push_back({n, name, "dmzbot", now_ms()});
        }
      }
      return ok(json::array());
    }
    if (p[5] == "labels" && p.size() == 7 && method == "DELETE") {
      auto& labels = pull->second.labels;
      auto it = std::find(labels.begin(), labels.end(), decode(p[6]));
      if (it == labels.end()) return not_found();
      labels.erase(it);
      label_events_.push_back({n, decode(p[6]), "dmzbot", now_ms(), false});
      return ok(json::array());
    }
  }
  if (what == "collaborators" && p.size() == 6 && p[5] == "permission" && method == "GET") {
    auto it = permissions_.find(decode(p[4]));
    std::string perm = it == permissions_.end() ? "read" : it->second;
    std::string role = perm;
    if (perm == "maintain") perm = "write";
    return ok({{"permission", perm}, {"role_name", role}, {"user", {{"login", decode(p[4])}}}});
  }
  if (what == "statuses" && p.size() == 5 && method == "POST") {
    if (!in.is_object() || !in.contains("state") || !in["state"].is_string())
      return invalid("state");
    Status s{p[4],
             in.value("context", "default"),
             in["state"].get<std::string>(),
             in.value("description", ""),
             in.value("target_url", ""),
             record.auth};
    if (s.description.size() > 140) return invalid("description is too long");
    statuses_.push_back(s);
    return ok({{"state", s.state}, {"context", s.context}}, 201);
  }
  if (what == "check-runs") {
    if (record.auth == "token")
      return Answer{
          403, json{{"message", "Resource not accessible by personal access token"}}, {}, false};
    if (p.size() == 4 && method == "POST") {
      if (!in.is_object() || !in.contains("name") || !in.contains("head_sha"))
        return invalid("name, head_sha");
      CheckRun r;
      r.id = next_id_++;
      r.name = in["name"].get<std::string>();
      r.head_sha = in["head_sha"].get<std::string>();
      r.status = in.value("status", "queued");
      r.conclusion = in.value("conclusion", "");
      if (in.contains("output")) {
        r.title = in["output"].value("title", "");
        r.summary = in["output"].value("summary", "");
      }
      r.details_url = in.value("details_url", "");
      r.app = "dmzbot";
      check_runs_.push_back(r);
      return ok(run_json(r), 201);
    }
    if (p.size() == 5 && method == "PATCH") {
      const std::int64_t id = std::atoll(p[4].c_str());
      for (auto& r : check_runs_)
        if (r.id == id) {
          if (in.contains("status")) r.status = in["status"].get<std::string>();
          if (in.contains("conclusion")) r.conclusion = in["conclusion"].get<std::string>();
          if (in.contains("output")) {
            r.title = in["output"].value("title", "");
            r.summary = in["output"].value("summary", "");
          }
          if (in.contains("details_url")) r.details_url = in["details_url"].get<std::string>();
          return ok(run_json(r));
        }
      return not_found();
    }
  }
  if (what == "commits" && p.size() == 6 && method == "GET") {
    const std::string sha = p[4];
    if (p[5] == "status") {
      std::map<std::string, const Status*> latest;
      for (const auto& s : statuses_)
        if (s.sha == sha) latest[s.context] = &s;
      json items = json::array();
      for (const auto& [context, s] : latest)
        items.push_back({{"context", s->context},
                         {"state", s->state},
                         {"description", s->description},
                         {"target_url", s->target_url}});
      return Answer{
          200, {{"sha", sha}, {"state", "pending"}, {"statuses", items}}, limit_headers, false};
    }
    if (p[5] == "check-runs") {
      auto q = query_of(target);
      std::map<std::string, const CheckRun*> latest;  // filter=latest, the default
      for (const auto& r : check_runs_)
        if (r.head_sha == sha && (!q.count("check_name") || q["check_name"] == r.name))
          latest[r.name] = &r;
      json runs = json::array();
      for (const auto& [name, r] : latest) runs.push_back(run_json(*r));
      return ok({{"total_count", runs.size()}, {"check_runs", runs}});
    }
  }
  return not_found();
}

// ---- state -------------------------------------------------------------------------------------

void FakeGitHub::put_pull(const Pull& pull) {
  std::lock_guard lock(mu_);
  pulls_[pull.number] = pull;
}
void FakeGitHub::set_head(int number, const std::string& sha) {
  std::lock_guard lock(mu_);
  pulls_.at(number).head_sha = sha;
}
void FakeGitHub::set_state(int number, const std::string& state) {
  std::lock_guard lock(mu_);
  pulls_.at(number).state = state;
}
void FakeGitHub::add_label(int number, const std::string& label, const std::string& actor,
                           std::int64_t at_ms) {
  std::lock_guard lock(mu_);
  auto& labels = pulls_.at(number).labels;
  if (std::find(labels.begin(), labels.end(), label) == labels.end()) labels.push_back(label);
  label_events_.push_back({number, label, actor, at_ms});
}
void FakeGitHub::remove_label(int number, const std::string& label, const std::string& actor,
                              std::int64_t at_ms) {
  std::lock_guard lock(mu_);
  auto& labels = pulls_.at(number).labels;
  labels.erase(std::remove(labels.begin(), labels.end(), label), labels.end());
  if (!actor.empty()) label_events_.push_back({number, label, actor, at_ms, false});
}
void FakeGitHub::add_comment(int number, const std::string& author, const std::string& body,
                             std::int64_t at_ms) {
  std::lock_guard lock(mu_);
  comments_.push_back({next_id_++, number, author, body, at_ms});
}
void FakeGitHub::add_review(int number, const std::string& login, const std::string& state,
                            const std::string& sha) {
  std::lock_guard lock(mu_);
  reviews_.push_back({number, login, state, sha, now_ms()});
}
void FakeGitHub::set_pull_commits(int number,
                                  std::vector<std::pair<std::string, std::string>> commits) {
  std::lock_guard lock(mu_);
  pull_commits_[number] = std::move(commits);
}
void FakeGitHub::set_permission(const std::string& login, const std::string& permission) {
  std::lock_guard lock(mu_);
  permissions_[login] = permission;
}
void FakeGitHub::add_team_member(const std::string& org, const std::string& slug,
                                 const std::string& login) {
  std::lock_guard lock(mu_);
  team_members_.insert(org + "/" + slug + "/" + login);
}
void FakeGitHub::add_status(const Status& status) {
  std::lock_guard lock(mu_);
  statuses_.push_back(status);
}
std::int64_t FakeGitHub::add_check_run(CheckRun run) {
  std::lock_guard lock(mu_);
  run.id = next_id_++;
  check_runs_.push_back(run);
  return run.id;
}

std::vector<FakeGitHub::Pull> FakeGitHub::pulls() const {
  std::lock_guard lock(mu_);
  std::vector<Pull> out;
  for (const auto& [n, p] : pulls_) out.push_back(p);
  return out;
}
FakeGitHub::Pull FakeGitHub::pull(int number) const {
  std::lock_guard lock(mu_);
  auto it = pulls_.find(number);
  return it == pulls_.end() ? Pull{} : it->second;
}
// Called with mu_ held. `rest`: what follows ".../deliveries" in the path.
FakeGitHub::Answer FakeGitHub::deliveries(std::int64_t hook_id,
                                          const std::vector<std::string>& rest,
                                          const std::string& method, const std::string& target,
                                          const std::string& path) {
  const Answer not_found{404, json{{"message", "Not Found"}}, {}, false};
  auto hook = deliveries_.find(hook_id);
  if (hook == deliveries_.end()) return not_found;
  std::vector<HookDelivery> log = hook->second;
  std::sort(log.begin(), log.end(), [](const HookDelivery& a, const HookDelivery& b) {
    return std::tie(a.delivered_at_ms, a.id) > std::tie(b.delivered_at_ms, b.id);
  });
  if (rest.size() == 2 && rest[1] == "attempts" && method == "POST") {
    for (const auto& d : log)
      if (std::to_string(d.id) == rest[0]) {
        redeliveries_.push_back(d);
        return Answer{202, json::object(), {}, false};
      }
    return not_found;
  }
  if (!rest.empty() || method != "GET") return not_found;
  auto q = query_of(target);
  const int per_page = per_page_of(q);
  std::size_t at = 0;
  if (q.count("cursor"))
    while (at < log.size() && std::to_string(log[at].id) != q["cursor"]) ++at;
  json page = json::array();
  for (; at < log.size() && page.size() < static_cast<std::size_t>(per_page); ++at) {
    const HookDelivery& d = log[at];
    page.push_back({{"id", d.id},
                    {"guid", d.guid},
                    {"delivered_at", iso(d.delivered_at_ms)},
                    {"redelivery", d.redelivery},
                    {"duration", 0.25},
                    {"status", d.status_code ? "OK" : "failed to connect to host"},
                    {"status_code", d.status_code},
                    {"event", d.event},
                    {"action", nullptr},
                    {"installation_id", hook_id ? json() : json(options_.installation_id)},
                    {"repository_id", d.repository_id ? json(d.repository_id) : json()}});
  }
  Answer a{200, page, {}, false};
  if (at < log.size())
    a.headers.emplace_back("Link", "<" + api_url() + path +
                                       "?per_page=" + std::to_string(per_page) +
                                       "&cursor=" + std::to_string(log[at].id) + ">; rel=\"next\"");
  return a;
}

std::int64_t FakeGitHub::add_delivery(std::int64_t hook_id, HookDelivery delivery) {
  std::lock_guard lock(mu_);
  delivery.id = next_id_++;
  deliveries_[hook_id].push_back(delivery);
  return delivery.id;
}
std::vector<FakeGitHub::HookDelivery> FakeGitHub::redeliveries() const {
  std::lock_guard lock(mu_);
  return redeliveries_;
}
std::vector<FakeGitHub::Comment> FakeGitHub::comments(int number) const {
  std::lock_guard lock(mu_);
  std::vector<Comment> out;
  for (const auto& c : comments_)
    if (number == 0 || c.number == number) out.push_back(c);
  return out;
}
std::vector<FakeGitHub::Status> FakeGitHub::statuses(const std::string& sha) const {
  std::lock_guard lock(mu_);
  std::vector<Status> out;
  for (const auto& s : statuses_)
    if (sha.empty() || s.sha == sha) out.push_back(s);
  return out;
}
std::vector<FakeGitHub::CheckRun> FakeGitHub::check_runs(const std::string& sha) const {
  std::lock_guard lock(mu_);
  std::vector<CheckRun> out;
  for (const auto& r : check_runs_)
    if (sha.empty() || r.head_sha == sha) out.push_back(r);
  return out;
}
std::vector<FakeGitHub::Request> FakeGitHub::requests() const {
  std::lock_guard lock(mu_);
  return requests_;
}
std::size_t FakeGitHub::installation_tokens_issued() const {
  std::lock_guard lock(mu_);
  return tokens_issued_;
}

void FakeGitHub::fail_share(double rate, unsigned seed) {
  std::lock_guard lock(mu_);
  fail_rate_ = rate;
  rng_.seed(seed);
}
void FakeGitHub::fail_paths(std::string prefix) {
  std::lock_guard lock(mu_);
  fail_prefix_ = std::move(prefix);
}
void FakeGitHub::rate_limit_for(std::int64_t ms, bool secondary) {
  std::lock_guard lock(mu_);
  limited_until_ = now_ms() + ms;
  secondary_limit_ = secondary;
}
void FakeGitHub::hang_next(int n) {
  std::lock_guard lock(mu_);
  hang_ = n;
}
std::size_t FakeGitHub::hung() const {
  std::lock_guard lock(mu_);
  return hung_.size();
}

}  // namespace dmz::test

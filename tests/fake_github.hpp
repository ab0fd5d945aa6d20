// A fake GitHub REST API for tests, over TLS on 127.0.0.1 (with a certificate from
// tests/test_ca.hpp): in-memory pull requests, labels and their events, comments, commit
// statuses, check runs, collaborator permissions and team memberships, the log of webhook
// deliveries (and asks to redeliver them); token or GitHub App
// authentication (the App's JWT is verified with its public key, installation tokens are
// issued with an expiry); pagination and ETags; and faults on command: a share of requests
// answered 502, and rate-limit windows. It records every request, for assertions and for the
// check against GitHub's published OpenAPI description.
// Threading: it serves on a thread of its own, one connection at a time; every method is safe
// from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace dmz::test {

class FakeGitHub {
 public:
  static constexpr std::int64_t kRepositoryId = 1296269;  // what GET /repos/{o}/{r} says

  struct Options {
    std::filesystem::path cert, key;  // the server's certificate and key (PEM)
    std::string repo = "octo/widgets";
    std::string token;           // accepted as "Bearer <token>" ("" = none)
    std::int64_t app_id = 0;     // a GitHub App: JWTs verified with app_public_key
    std::string app_public_key;  // PEM
    std::int64_t installation_id = 0;
    std::int64_t installation_token_ttl_ms = 3'600'000;
    std::string installation_token;  // what every installation token is ("" = fresh each time)
    int page_size = 100;             // at most this many items per page, whatever per_page says
    // How far GitHub's clock is ahead of this machine's: its Date headers, the times it writes
    // and those it checks (a JWT's) are on it.
    std::int64_t clock_skew_ms = 0;
    // The commit a branch of the repository points at ("" = no such branch), for POST /pulls.
    std::function<std::string(const std::string& branch)> branch_head;
  };

  struct Pull {
    int number = 0;
    std::string title, author, head_ref, head_sha, base = "master", state = "open";
    bool draft = false;
    std::vector<std::string> labels;
  };
  struct LabelEvent {
    int number = 0;
    std::string label, actor;
    std::int64_t at_ms = 0;
    bool added = true;  // labeled, else unlabeled
  };
  struct Comment {
    std::int64_t id = 0;
    int number = 0;
    std::string author, body;
    std::int64_t at_ms = 0;  // created (and last updated)
  };
  struct Status {
    std::string sha, context, state, description, target_url, creator;
  };
  struct CheckRun {
    std::int64_t id = 0;
    std::string name, head_sha, status, conclusion, title, summary, details_url, app;
  };
  // One attempt at delivering a repository webhook, as GitHub logs it.
  struct HookDelivery {
    std::int64_t id = 0;  // given by add_delivery
    std::string guid, event;
    std::int64_t delivered_at_ms = 0;
    int status_code = 0;  // what the receiver answered (0: no answer)
    bool redelivery = false;
    std::int64_t repository_id = kRepositoryId;  // 0: none (an installation event)
  };
  struct Request {
    std::string method, target, path;  // target with the query, path without
    std::string body;
    std::string auth;  // "token", "installation", "jwt", "" (none) or "bad"
    int status = 0;    // what it was answered
  };

  explicit FakeGitHub(Options options);
  ~FakeGitHub();
  FakeGitHub(const FakeGitHub&) = delete;
  FakeGitHub& operator=(const FakeGitHub&) = delete;

  std::string api_url() const;  // https://127.0.0.1:PORT
  int port() const { return port_; }
  const std::string& error() const { return error_; }  // why it could not start

  // ---- the repository (what people and CI do) ----
  void put_pull(const Pull& pull);
  void set_head(int number, const std::string& sha);
  void set_state(int number, const std::string& state);
  void add_label(int number, const std::string& label, const std::string& actor,
                 std::int64_t at_ms);
  // Taken off by `actor` at `at_ms` (logged as an unlabeled event unless `actor` is "").
  void remove_label(int number, const std::string& label, const std::string& actor = "",
                    std::int64_t at_ms = 0);
  // A comment someone wrote on `number` at `at_ms` (GET .../issues/{n}/comments lists it).
  void add_comment(int number, const std::string& author, const std::string& body,
                   std::int64_t at_ms);
  // A review of PR `number` by `login` of commit `sha`: "APPROVED", "CHANGES_REQUESTED", ...
  void add_review(int number, const std::string& login, const std::string& state,
                  const std::string& sha);
  // The commits GET /pulls/{n}/commits lists: (sha, the GitHub login of its author or "" for an
  // email GitHub maps to nobody), oldest first.
  void set_pull_commits(int number, std::vector<std::pair<std::string, std::string>> commits);
  void set_permission(const std::string& login, const std::string& permission);
  void add_team_member(const std::string& org, const std::string& slug, const std::string& login);
  void add_status(const Status& status);
  std::int64_t add_check_run(CheckRun run);  // returns its id
  // Logs an attempt to deliver repository webhook `hook_id`, or with 0 the App's webhook (GET
  // .../hooks/{id}/deliveries, or /app/hook/deliveries with the App's JWT, list them newest
  // first, by cursor); returns its id.
  std::int64_t add_delivery(std::int64_t hook_id, HookDelivery delivery);

  // ---- what the bot did ----
  std::vector<Pull> pulls() const;
  Pull pull(int number) const;
  std::vector<Comment> comments(int number = 0) const;  // 0: all
  std::vector<Status> statuses(const std::string& sha = "") const;
  std::vector<CheckRun> check_runs(const std::string& sha = "") const;
  std::vector<Request> requests() const;
  // The attempts asked to be delivered again (POST .../deliveries/{id}/attempts), in order.
  std::vector<HookDelivery> redeliveries() const;
  std::size_t installation_tokens_issued() const;

  // ---- faults ----
  // Answers a share `rate` of the requests 502 (before doing anything), from a seeded PRNG.
  void fail_share(double rate, unsigned seed = 1);
  // Answers every request whose path starts with `prefix` 502 ("" = none): one endpoint down.
  void fail_paths(std::string prefix);
  // For `ms` from now, every request is refused as rate limited: 403 with
  // X-RateLimit-Remaining 0 and X-RateLimit-Reset (primary), or 429 with Retry-After.
  void rate_limit_for(std::int64_t ms, bool secondary = false);
  // The next `n` requests get no answer at all (the connection is held until the client
  // gives up): a server that hangs.
  void hang_next(int n);
  std::size_t hung() const;  // connections held so far

 private:
  struct Answer {
    int status = 200;
    nlohmann::json body;
    std::vector<std::pair<std::string, std::string>> headers;
    bool raw_empty = false;  // 204/304: no body
  };
  void serve();
  void handle(int fd);
  Answer route(const std::string& method, const std::string& target, const std::string& body,
               const std::string& authorization, const std::string& if_none_match, Request& record);
  Answer list(const std::string& target, const nlohmann::json& items,
              const std::string& if_none_match);
  int per_page_of(std::map<std::string, std::string>& query) const;
  Answer deliveries(std::int64_t hook_id, const std::vector<std::string>& rest,
                    const std::string& method, const std::string& target, const std::string& path);
  std::string check_auth(const std::string& authorization, const std::string& path);
  std::int64_t now_ms() const;

  Options options_;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  int port_ = 0;
  std::string error_;
  std::thread thread_;

  mutable std::mutex mu_;
  std::map<int, Pull> pulls_;
  std::vector<LabelEvent> label_events_;
  struct Review {
    int number = 0;
    std::string login, state, sha;
    std::int64_t at_ms = 0;  // submitted
  };
  std::vector<Review> reviews_;
  std::map<int, std::vector<std::pair<std::string, std::string>>> pull_commits_;
  std::vector<Comment> comments_;
  std::vector<Status> statuses_;
  std::vector<CheckRun> check_runs_;
  std::map<std::int64_t, std::vector<HookDelivery>> deliveries_;  // by hook id
  std::vector<HookDelivery> redeliveries_;
  std::map<std::string, std::string> permissions_;
  std::set<std::string> team_members_;                       // "org/slug/login"
  std::map<std::string, std::int64_t> installation_tokens_;  // token -> expiry
  std::size_t tokens_issued_ = 0;
  std::vector<Request> requests_;
  std::int64_t next_id_ = 1000;
  double fail_rate_ = 0;
  std::string fail_prefix_;
  std::mt19937 rng_{1};
  std::int64_t limited_until_ = 0;
  bool secondary_limit_ = false;
  int hang_ = 0;
  std::vector<int> hung_;  // connections held open
};

}  // namespace dmz::test

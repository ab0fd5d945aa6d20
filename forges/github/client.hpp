// The GitHub REST client dmzbot needs: pull requests, labels, comments, commit statuses, check
// runs, collaborator permissions and team memberships, with pagination (Link headers),
// conditional requests (ETags: a 304 costs no rate limit), authentication by a token or as a
// GitHub App (an RS256 JWT exchanged for installation tokens, refreshed before they expire),
// and retries: 5xx and network errors with doubling backoff, rate limits (403/429 with
// Retry-After or X-RateLimit-Reset) waited out when short, else refused at once until they
// end, so that one repository's limits never hold up another's thread for long.
// HTTP goes through the HttpClient port (base/http_client.hpp).
// Threading: one thread makes the calls (the repository's forge thread); token(), health() and
// stop() are safe from any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.hpp"
#include "base/http_client.hpp"
#include "base/status.hpp"
#include "forges/forge.hpp"
#include "forges/github/webhook.hpp"
#include "queue/model.hpp"

namespace dmz::forges::github {

struct ClientOptions {
  std::string api_url = "https://api.github.com";  // no trailing slash
  std::string repo;                                // "owner/name"
  std::string token;                               // a token, or an App:
  std::int64_t app_id = 0, installation_id = 0;
  std::string private_key;      // PEM (RSA)
  int max_attempts = 4;         // per call, for 5xx and network errors
  queue::Millis backoff = 500;  // before the second attempt; doubles
  queue::Millis max_backoff = 8'000;
  queue::Millis max_rate_wait = 10'000;  // a rate limit ending sooner is waited for
  std::size_t max_pages = 30;            // of 100 items each
  // The ETag cache keeps the newest answers, up to this many bytes of bodies (URLs name PRs
  // and commits, so without a bound it would grow with every one ever read).
  std::size_t max_cached_bytes = 16 << 20;
  // How the client waits (backoff, short rate limits); tests make it record or advance a clock.
  // Unset: a wait that stop() ends.
  std::function<void(queue::Millis)> sleep;
};

// An open pull request as the API lists it.
struct PullInfo {
  int number = 0;
  std::string state = "open";  // "open" or "closed"
  std::string title, author, head_ref, base;
  queue::Sha head;
  bool draft = false;
  std::vector<std::string> labels;
};

// One attempt at delivering a webhook, as GitHub logged it (GET .../hooks/{id}/deliveries).
struct HookDelivery {
  std::int64_t id = 0;
  std::string guid;                // X-GitHub-Delivery: the same for every attempt of a delivery
  queue::Millis delivered_at = 0;  // on dmzbot's clock (GitHub's, less ApiHealth::clock_offset)
  int status_code = 0;             // what the receiver answered (0: no answer at all)
  std::string event;
  std::int64_t repository_id = 0;  // 0: none (an App's installation events)
};

// A comment on an issue or PR (GET .../issues/{n}/comments), or a review's body.
struct IssueComment {
  std::string author, body;
  queue::Millis created_at = 0;  // GitHub's clock, as the webhook's comment.created_at
};

// A label added to or removed from an issue or PR (GET .../issues/{n}/events).
struct LabelChange {
  std::string actor;
  queue::Millis at = 0;  // GitHub's clock
  bool added = false;
};

// Who added a label to an issue or PR, and when (GitHub's clock).
struct LabelEvent {  // times on dmzbot's clock (GitHub's, less ApiHealth::clock_offset)
  std::string actor;
  queue::Millis at = 0;
  // The PR's last ready_for_review event (0: none): a label added while it was a draft was
  // refused then, and approves nothing later.
  queue::Millis ready_at = 0;
};

class Client {
 public:
  Client(HttpClient& http, const Clock& clock, ClientOptions options);

  // ---- typed calls ----
  // The open PRs into `base`; `complete` is false if there were more pages than max_pages.
  Result<std::pair<std::vector<PullInfo>, bool>> open_pulls(const std::string& base);
  Result<PullInfo> pull(int number);
  // Every pull request (open and closed) whose head is `branch` of this repository.
  Result<std::vector<PullInfo>> pulls_of_branch(const std::string& branch);
  // Opens a pull request (POST /repos/{owner}/{repo}/pulls).
  Result<PullInfo> create_pull(const std::string& head, const std::string& base,
                               const std::string& title, const std::string& body);
  // The latest "labeled" event of `label` on issue `number`, if any.
  Result<std::optional<LabelEvent>> last_labeled(int number, const std::string& label);
  // The login's base access: "admin", "write" (maintain too), "read" (triage too) or "none".
  // Not the role's name, which may be a custom role's ("release-manager" with write access).
  Result<std::string> permission(const std::string& login);
  // Whether `login` is an active member of team `org/slug`.
  Result<bool> team_member(const std::string& org, const std::string& slug,
                           const std::string& login);
  Status comment(int number, const std::string& body);
  // The logins whose latest review of PR `number` (APPROVED, CHANGES_REQUESTED or DISMISSED; a
  // COMMENTED review changes no verdict) approves commit `sha`, sorted: an approval of an
  // older head, or one taken back since, does not count.
  Result<std::vector<std::string>> approving_reviewers(int number, const queue::Sha& sha);
  // The GitHub logins of the authors of PR `number`'s commits (GitHub lists up to 250), each
  // once, in the order of their first commit; commits whose email maps to no account are left
  // out.
  Result<std::vector<std::string>> commit_authors(int number);
  // Whether a comment on `number` contains `marker` (to not repeat a comment that was posted
  // when its answer was lost).
  Result<bool> has_comment_with(int number, const std::string& marker);
  // The comments on `number` written at or after `since` (GitHub's clock), oldest first.
  // (GitHub's `since` is the last edit: older comments edited since are left out here.)
  Result<std::vector<IssueComment>> comments_since(int number, queue::Millis since);
  // The bodies of PR `number`'s submitted reviews, oldest first (submitted_at as created_at).
  Result<std::vector<IssueComment>> review_bodies(int number);
  // Every time `label` was added to or taken off issue `number`, oldest first.
  Result<std::vector<LabelChange>> label_changes(int number, const std::string& label);
  Status add_labels(int number, const std::vector<std::string>& labels);
  Status remove_label(int number, const std::string& label);  // absent: ok
  Status commit_status(const queue::Sha& sha, const std::string& state, const std::string& context,
                       const std::string& description, const std::string& target_url);
  // Creates or updates (by id) a check run; returns its id.
  Result<std::int64_t> check_run(std::optional<std::int64_t> id, const nlohmann::json& fields);
  // The id of the newest check run `name` on `sha`, if any.
  Result<std::optional<std::int64_t>> find_check_run(const queue::Sha& sha,
                                                     const std::string& name);
  // Every check state GitHub holds for `sha`: commit statuses (the latest of each context) and
  // check runs, only those from_source() takes under `sources` (webhook.hpp): a status or run
  // of a check from another source is left out, and noted in `ignored` (when given). Without
  // sources, the combined status; with them, the statuses list (newest first, each with its
  // creator, which the combined status does not name), of which each context's newest
  // status from its source counts.
  Result<std::vector<queue::Check>> checks(const queue::Sha& sha, const CheckSources& sources = {},
                                           std::vector<std::string>* ignored = nullptr);

  // The attempts to deliver repository webhook `hook_id`'s events (0: the GitHub App's own
  // webhook, every repository's, read with the App's JWT), newest first, back to at least
  // `since` (dmzbot's clock): pages stop once one reaches it.
  Result<std::vector<HookDelivery>> hook_deliveries(std::int64_t hook_id, queue::Millis since);
  // Asks GitHub to deliver the attempt `delivery_id` of that webhook again (same guid).
  Status redeliver(std::int64_t hook_id, std::int64_t delivery_id);
  // The repository's numeric id (asked once), which an App's delivery log names.
  Result<std::int64_t> repository_id();

  // ---- plumbing ----
  struct Response {
    int status = 0;
    nlohmann::json body;  // null when empty
    std::map<std::string, std::string> headers;
  };
  // One call to `path` (relative to api_url, or an absolute URL on the API's origin), with
  // authentication, retries and, for GETs, the ETag cache. Statuses are errors by code: 401
  // unauthenticated, 403 permission_denied, 404 not_found, 409 conflict, 422 invalid, 5xx and
  // rate limits unavailable. `once`: a request that creates (a comment, a pull request) is not
  // sent again after an answer that may have come after its effect (none, or a 5xx); the
  // caller looks before it tries again, or it would be created twice.
  Result<Response> call(const std::string& method, const std::string& path,
                        const nlohmann::json* body = nullptr, bool once = false);
  // Every item of a paginated list (the array itself, or the array under `field`). With
  // `enough`, no page is read after one holding an item it says is enough (a list that is
  // newest first, read back to a time).
  Result<std::vector<nlohmann::json>> list(
      const std::string& path, const std::string& field = "", bool* complete = nullptr,
      const std::function<bool(const nlohmann::json&)>& enough = {});

  // The token git uses (the configured one, or the current installation token).
  Result<std::string> token();
  ApiHealth health() const;
  bool app() const { return options_.app_id != 0; }
  queue::Millis now() const { return clock_.now(); }
  std::uint64_t requests() const;  // HTTP requests made (including retries)
  // For shutdown: no request is sent or retried any more and a wait (backoff, a short rate
  // limit) ends at once; the calls fail unavailable ("...: stopping"), so what they were for
  // stays queued. A request under way is the HttpClient's to end. For good.
  void stop();

 private:
  // What goes after "Authorization: Bearer " for `url`: the App's JWT for its /app endpoints,
  // else token().
  Result<std::string> bearer(const std::string& url);
  Result<std::string> jwt() const;  // the App's, signed now
  std::string hook_path(std::int64_t hook_id) const;
  Result<std::string> refresh_installation_token();
  // One HTTP exchange made: the request count, and dmzbot_forge_api_requests_total{forge,code}.
  void counted(const Result<HttpReply>& reply);
  void note_error(const std::string& message);
  void note_ok(const HttpReply& reply);
  std::string url_of(const std::string& path) const;
  bool stopping() const;
  // Waits `ms` (options_.sleep, else until stop()); false when stopping.
  bool pause(queue::Millis ms);

  HttpClient& http_;
  const Clock& clock_;
  ClientOptions options_;
  std::string origin_;  // scheme://host[:port] of api_url

  mutable std::mutex token_mu_;  // the installation token, refreshed by whichever thread needs it
  std::string installation_token_;
  queue::Millis installation_expires_ = 0;

  mutable std::mutex stop_mu_;  // stopping_; stop_cv_ wakes a pause()
  std::condition_variable stop_cv_;
  bool stopping_ = false;

  mutable std::mutex mu_;  // health, rate limit, counters
  ApiHealth health_;
  std::uint64_t requests_ = 0;

  // The ETag cache, the forge thread only: answers by URL, least recently used first in
  // `etag_order_`, evicted from there beyond max_cached_bytes.
  struct Cached {
    std::string etag;
    HttpReply reply;
    std::list<std::string>::iterator used;
  };
  std::map<std::string, Cached> etags_;
  std::list<std::string> etag_order_;
  std::size_t etag_bytes_ = 0;
  std::int64_t repository_id_ = 0;               // the forge thread only; 0 until asked
  const Cached* cached(const std::string& url);  // marks it used
  void cache(const std::string& url, std::string etag, HttpReply reply);
};

// The RS256 JWT a GitHub App authenticates with: issued 60 s ago (clock drift), valid 9 min.
Result<std::string> app_jwt(std::int64_t app_id, const std::string& private_key_pem,
                            queue::Millis now);
// The URL of rel="next" in a Link header, or "".
std::string next_link(const std::string& link_header);
// `s` percent-encoded for a URL path segment (a label name, a login).
std::string path_segment(const std::string& s);

}  // namespace dmz::forges::github

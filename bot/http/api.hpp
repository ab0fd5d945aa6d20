// The HTTP API as a pure router from HttpRequest to HttpResponse: routes, bearer-token checks
// (constant time), JSON parsing and validation into domain events. Never sees a socket; talks
// to the service only through Backend.
// Threading: the handler may be called from several I/O threads at once; Backend calls answer
// on the engine thread.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "bot/driver/driver.hpp"
#include "bot/http/http.hpp"
#include "bot/http/sse.hpp"
#include "bot/store/store.hpp"
#include "config/config.hpp"
#include "forges/forge.hpp"
#include "queue/model.hpp"

namespace dmz {

// What the queue page and the queue JSON show of a repository.
struct RepoView {
  queue::RepoState state;
  driver::Health health;
  std::vector<HistoryEntry> recent;  // the newest finished PRs, newest first
  queue::Settings settings;          // what the engine runs it with (checks, strategy)
};

// Everything known about one PR: its state (hot, or archived after it finished), every way it
// left the queue, and the events about it.
struct PullView {
  queue::PullRequest pr;
  bool archived = false;
  std::optional<std::size_t> position;  // 1-based place among the waiting PRs
  std::vector<HistoryEntry> outcomes;   // newest first
  std::vector<EventLogEntry> events;    // oldest first
};

// How a webhook delivery was taken.
struct WebhookAccepted {
  std::string repo;  // who took it, ", "-separated (several: an App installed on them); "" for ping
  bool duplicate = false;  // a redelivery of an id already taken: acknowledged, ignored
  std::size_t events = 0;  // domain events it carried
};

// What the API needs from the running service. Callbacks may run on any thread; errors carry
// their code (not_found, unavailable, ...), which the router turns into the HTTP status.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual const config::Config& config() const = 0;
  virtual queue::Millis now() const = 0;
  virtual bool ready() const = 0;  // started: state loaded, listening
  // Each repository's health (for /readyz).
  virtual void health(
      std::function<void(std::vector<std::pair<std::string, driver::Health>>)> done) = 0;
  // Applies `event` to `repo`'s engine (persisting first) and calls `done` with the outcome.
  virtual void submit(const std::string& repo, queue::Event event,
                      std::function<void(queue::Outcome)> done) = 0;
  // Plain git forge: registers a PR (fetches, resolves the branch or tag, checks the branch
  // patterns) and submits PrOpened; rejected outcomes carry the reason.
  virtual void register_pull(const std::string& repo, forges::Registration registration,
                             std::function<void(queue::Outcome)> done) = 0;
  virtual void view(const std::string& repo, std::function<void(Result<RepoView>)> done) = 0;
  // Finished PRs, newest first, `limit` of them with seq < `before` (0: the newest).
  virtual void history(const std::string& repo, std::int64_t before, std::size_t limit,
                       std::function<void(Result<std::vector<HistoryEntry>>)> done) = 0;
  virtual void pull(const std::string& repo, int number,
                    std::function<void(Result<PullView>)> done) = 0;
  // A forge's webhook (`forge` is the path segment: github, gitlab, gitea).
  virtual void webhook(const std::string& forge, forges::InboundRequest request,
                       std::function<void(Result<WebhookAccepted>)> done) = 0;
  // Prometheus text for /metrics.
  virtual std::string metrics() const = 0;
  // The newest `limit` events of `repo`, oldest first (the status pages read verdicts, check
  // reports and landings from them). Called on I/O threads.
  virtual Result<std::vector<EventLogEntry>> recent_events(const std::string& repo,
                                                           std::size_t limit) = 0;
  // `repo`'s events with seq > `after`, oldest first, at most `limit` (the live feed).
  virtual Result<std::vector<EventLogEntry>> events_after(const std::string& repo,
                                                          std::int64_t after,
                                                          std::size_t limit) = 0;
  // Calls `on_change(repo)` after each saved change of any repository, from the service's
  // threads, until the returned handle is dropped. It must return quickly.
  virtual std::shared_ptr<void> watch(std::function<void(const std::string& repo)> on_change) = 0;
  // The local runner's log of `repo`'s build of `sha` (hex, validated), at most `max_bytes` of
  // it; nullopt if there is none, unavailable if it cannot be read. Called on I/O threads.
  virtual Result<std::optional<std::string>> build_log(const std::string& repo,
                                                       const queue::Sha& sha,
                                                       std::size_t max_bytes) const = 0;
  // Release promotion: judges refs/tags/<tag> and moves staging or production if it passes;
  // `done` gets the promotion record as JSON ({"promoted": bool, "reasons": [...], ...}).
  virtual void promote(const std::string& repo, const std::string& tag,
                       std::function<void(Result<std::string>)> done) {
    (void)repo, (void)tag;
    done(unavailable("release promotion is not available"));
  }
  // What staging and production hold and the last promotions (JSON), for the queue document.
  virtual std::optional<std::string> releases(const std::string& repo) const {
    (void)repo;
    return std::nullopt;
  }
};

// Routes (JSON unless stated; every error is {"error": "..."} with a 4xx, or a 503 with
// Retry-After when the failure is on the service's side):
//   GET  /healthz, /readyz (each repository's health; 503 until started)
//   POST /webhooks/{forge}                                 authenticated by the forge adapter
//   POST /api/v1/repos/{owner}/{name}/statuses/{sha}      bearer status_token
//        {"state": "pending|success|failure|error", "context": "...", "description", "target_url"}
//   POST /api/v1/repos/{owner}/{name}/pulls                bearer api_token (plain forge)
//        {"number": 7, "branch": "feature/x", "author": "...", "title": "..."}
//        or {"number": 7, "tag": "frotz-for-xyzzy", ...}: a PR made by a signed tag
//   POST /api/v1/repos/{owner}/{name}/pulls/{n}/merge      bearer api_token
//        {"sha": "<head being approved>", "approver": "..."}
//   POST /api/v1/repos/{owner}/{name}/pulls/{n}/cancel     bearer api_token {"by": "..."}
//   POST /api/v1/repos/{owner}/{name}/pulls/{n}/retry      bearer api_token {"by": "..."}
//   POST /api/v1/repos/{owner}/{name}/promote              bearer api_token {"tag": "v1.0-rc1"}
//        200 {"promoted": true, ...}; 409 {"error", "reasons": [...], "promoted": false, ...}
//   GET  /api/v1/repos/{owner}/{name}/queue                the train, the waiting PRs, health,
//                                                          the newest outcomes
//   GET  /api/v1/repos/{owner}/{name}/history?before=&limit=  finished PRs, paged
//   GET  /api/v1/repos/{owner}/{name}/pulls/{n}            one PR with its outcomes and events
//   GET  /api/v1/repos/{owner}/{name}/logs/{sha}           a local build's log (text, tail 1 MiB)
//   GET  /api/v1/repos/{owner}/{name}/events[?after=SEQ]   Server-Sent Events of the event
//                                                          log; resumes after Last-Event-ID
//   GET  /api/v1/events[?after=SEQ]                       the same for every repository (the
//                                                          overview follows it)
//   GET  /                                                 every repository (HTML, live)
//   GET  /repos/{owner}/{name}                             the train, the waiting PRs, the
//                                                          last 50 outcomes (HTML, live)
//   GET  /repos/{owner}/{name}/pulls/{n}                   one PR's timeline (HTML, live)
//   GET  /assets/{file}                                    the pages' CSS and JS
//   GET  /metrics                                          Prometheus text
struct ApiOptions {
  SseOptions sse;
};
Handler make_api(Backend& backend, ApiOptions options);
inline Handler make_api(Backend& backend) { return make_api(backend, ApiOptions{}); }

}  // namespace dmz

// The HTTP API as a pure router from HttpRequest to HttpResponse: routes, bearer-token checks
// (constant time), JSON parsing and validation into domain events. Never sees a socket; talks
// to the service only through Backend.
// Threading: the handler may be called from several I/O threads at once; Backend calls answer
// on the engine thread.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "bot/http/http.hpp"
#include "config/config.hpp"
#include "queue/model.hpp"

namespace dmz {

// What the API needs from the running service.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual const config::Config& config() const = 0;
  virtual queue::Millis now() const = 0;
  virtual bool ready() const = 0;  // state loaded and mirrors opened
  // Applies `event` to `repo`'s engine (persisting first) and calls `done` with the outcome.
  virtual void submit(const std::string& repo, queue::Event event,
                      std::function<void(queue::Outcome)> done) = 0;
  // Plain git forge: registers PR `number` for `branch` (fetches, resolves the branch head,
  // checks the branch patterns) and submits PrOpened; rejected outcomes carry the reason.
  virtual void register_pull(const std::string& repo, int number, const std::string& branch,
                             const std::string& author, const std::string& title,
                             std::function<void(queue::Outcome)> done) = 0;
  // A copy of `repo`'s state taken on the engine thread (nullopt: unknown repo).
  virtual void snapshot(const std::string& repo,
                        std::function<void(std::optional<queue::RepoState>)> done) = 0;
  // Prometheus text for /metrics.
  virtual std::string metrics() const = 0;
  // The local runner's log of `repo`'s build of `sha` (hex, validated), at most `max_bytes` of
  // it; nullopt if there is none. Called on I/O threads.
  virtual std::optional<std::string> build_log(const std::string& repo, const queue::Sha& sha,
                                               std::size_t max_bytes) const = 0;
};

// Routes (JSON unless stated; every error is {"error": "..."} with a 4xx):
//   GET  /healthz, /readyz
//   POST /api/v1/repos/{owner}/{name}/statuses/{sha}      bearer status_token
//        {"state": "pending|success|failure|error", "context": "...", "description", "target_url"}
//   POST /api/v1/repos/{owner}/{name}/pulls                bearer api_token (plain forge)
//        {"number": 7, "branch": "feature/x", "author": "...", "title": "..."}
//        or {"number": 7, "tag": "frotz-for-xyzzy", ...}: a PR made by a signed tag
//   POST /api/v1/repos/{owner}/{name}/pulls/{n}/merge      bearer api_token
//        {"sha": "<head being approved>", "approver": "..."}
//   POST /api/v1/repos/{owner}/{name}/pulls/{n}/cancel     bearer api_token {"by": "..."}
//   POST /api/v1/repos/{owner}/{name}/pulls/{n}/retry      bearer api_token {"by": "..."}
//   GET  /api/v1/repos/{owner}/{name}/queue
//   GET  /api/v1/repos/{owner}/{name}/logs/{sha}           a local build's log (text, tail 1 MiB)
//   GET  /, /repos/{owner}/{name}                          status page (HTML)
//   GET  /metrics                                          Prometheus text
Handler make_api(Backend& backend);

}  // namespace dmz

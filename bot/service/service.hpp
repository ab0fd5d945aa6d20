// The running service: the driver on one engine thread, a git thread per repository (its
// GitWorker), the local runner, a forge thread per repository (the outbox's deliveries, and for
// GitHub: webhook follow-ups, reconciliation, the PR summaries), and a timer that makes time
// pass for the driver. It is the Backend the HTTP API uses.
// Threading: Backend calls from any thread; everything else is internal.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "base/clock.hpp"
#include "base/status.hpp"
#include "bot/http/api.hpp"
#include "bot/store/store.hpp"
#include "config/config.hpp"
#include "queue/model.hpp"

namespace dmz {

// The database of webhook deliveries beside the store's file: "dmzbot.db" -> "dmzbot-webhooks.db".
std::filesystem::path deliveries_file(const std::filesystem::path& store_file);

class Service final : public Backend {
 public:
  struct Options {
    std::chrono::milliseconds fetch_interval{5000};  // how often remotes are fetched
    std::chrono::milliseconds tick_interval{1000};   // how often time passes for the driver
    // The least time from one fetch a webhook started to the next: a burst shares one.
    std::chrono::milliseconds webhook_fetch_gap{1000};
    const Clock* clock = nullptr;  // the wall clock unless set
    SqliteOptions store;           // e.g. how long a write waits for a lock
    // GitHub repositories (tests make these short): how often the REST API is read back
    // (unset: [repo.github] reconcile_interval), the first backoff of a failed API call, the
    // longest rate limit a call waits out, and how long after dmzbot learned a PR's head a
    // merge label found by reconciliation must have been added to approve it.
    std::optional<std::chrono::milliseconds> reconcile_interval;
    std::chrono::milliseconds api_backoff{500};
    std::chrono::milliseconds api_max_rate_wait{10'000};
    std::chrono::milliseconds label_skew{5'000};
    // A command that reaches dmzbot this long after it was written (a webhook the forge
    // delivered again, one handled again after a restart) is applied only if no merge master
    // wrote a command on the PR after it (Forge::later_command).
    std::chrono::milliseconds late_command{30'000};
    // Webhook deliveries accepted and not yet handled beyond which new ones are answered 503.
    std::size_t max_unfinished_deliveries = 10'000;
    // Events of one repository waiting for the store beyond which a delivery's event is not
    // held: its delivery stays unhandled and is handled again at the next start.
    std::size_t max_parked_events = 10'000;
    std::chrono::milliseconds api_timeout{30'000};  // a whole API call, every step in it
  };

  // Takes the data directory (one service per directory), opens the store and the mirrors,
  // loads each repository's state and resumes what was in flight (after a crash: merges,
  // builds, fast-forwards, the reset of dmz), then starts fetching and ticking. A remote that
  // cannot be reached does not stop the start: its repository is unhealthy and retried.
  // A database that is missing or empty beside the mirrors of an earlier run is refused.
  static Result<std::unique_ptr<Service>> start(config::Config config, Options options);
  static Result<std::unique_ptr<Service>> start(config::Config config) {
    return start(std::move(config), Options{});
  }
  ~Service() override;
  void stop();  // stops the timer, builds, git threads, the outbox and the engine, in that order

  // Backend
  const config::Config& config() const override;
  queue::Millis now() const override;
  bool ready() const override;
  void health(
      std::function<void(std::vector<std::pair<std::string, driver::Health>>)> done) override;
  void submit(const std::string& repo, queue::Event event,
              std::function<void(queue::Outcome)> done) override;
  void register_pull(const std::string& repo, forges::Registration registration,
                     std::function<void(queue::Outcome)> done) override;
  void view(const std::string& repo, std::function<void(Result<RepoView>)> done) override;
  void history(const std::string& repo, std::int64_t before, std::size_t limit,
               std::function<void(Result<std::vector<HistoryEntry>>)> done) override;
  void pull(const std::string& repo, int number,
            std::function<void(Result<PullView>)> done) override;
  void webhook(const std::string& forge, forges::InboundRequest request,
               std::function<void(Result<WebhookAccepted>)> done) override;
  std::string metrics() const override;
  Result<std::vector<EventLogEntry>> recent_events(const std::string& repo,
                                                   std::size_t limit) override;
  Result<std::vector<EventLogEntry>> events_after(const std::string& repo, std::int64_t after,
                                                  std::size_t limit) override;
  std::shared_ptr<void> watch(std::function<void(const std::string& repo)> on_change) override;
  Result<std::optional<std::string>> build_log(const std::string& repo, const queue::Sha& sha,
                                               std::size_t max_bytes) const override;
  void promote(const std::string& repo, const std::string& tag,
               std::function<void(Result<std::string>)> done) override;
  std::optional<std::string> releases(const std::string& repo) const override;

  // Synchronous helpers for the demo, the CLI and tests.
  queue::Outcome submit_and_wait(const std::string& repo, queue::Event event);
  std::optional<queue::RepoState> state(const std::string& repo);
  Result<RepoView> view_now(const std::string& repo);
  Result<PullView> pull_now(const std::string& repo, int number);
  void fetch_now(const std::string& repo);  // fetch + notice pushes, then wait for both

 private:
  struct Impl;
  explicit Service(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dmz

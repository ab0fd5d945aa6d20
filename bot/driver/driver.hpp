// The loop of the service without its threads: applies events to the engine, saves what each
// one changed (with the outbox messages it produced) before anything it enables runs, hands
// the actions to the ports, moves finished PRs out of the hot state, and runs the fetch
// schedule, the outbox's retries and the engine's timeouts from one clock. The same driver
// runs in `serve` (real ports, the wall clock, one engine thread), in tests (recording fakes,
// a manual clock) and in `dmzbot simulate`.
// Threading: not thread-safe; one thread calls everything (see ports.hpp for the results).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.hpp"
#include "base/metrics.hpp"
#include "bot/driver/ports.hpp"
#include "bot/store/store.hpp"
#include "forges/forge.hpp"
#include "queue/delta.hpp"
#include "queue/model.hpp"

namespace dmz::driver {

struct RepoConfig {
  std::string name;  // "owner/name"
  queue::Settings settings;
  forges::Forge* forge = nullptr;            // not owned
  queue::Millis fetch_interval = 5'000;      // between fetches while the remote answers
  queue::Millis archive_after = 86'400'000;  // a failed or cancelled PR stays hot (retryable,
                                             // on the page) this long, then moves to history
};

// What a saved change did to a repository's hot state, for observers (the service keeps the
// forge's view of each PR current from it).
struct Committed {
  const queue::RepoState* state = nullptr;                    // the new hot state
  const queue::StateDelta* delta = nullptr;                   // what changed in it
  const std::vector<queue::PullRequest>* archived = nullptr;  // PRs that just left it
};

struct Options {
  std::string owner = "dmzbot";  // who holds the leases (host:pid in serve)
  queue::Millis lease_ttl = 60'000;
  queue::Millis max_fetch_backoff = 300'000;  // an unreachable remote is retried at least
                                              // this often
  queue::Millis outbox_backoff = 2'000;       // first retry of a failed delivery; doubles
  queue::Millis max_outbox_backoff = 3'600'000;
  int max_outbox_attempts = 30;  // then the message is dropped, with a log line
  queue::Millis delivery_retention = 7 * 86'400'000LL;  // webhook ids older than this are
                                                        // forgotten, a batch at a time
  // Events and outcomes older than this are pruned, a batch at a time (0: kept forever).
  queue::Millis history_retention = 365 * 86'400'000LL;
  // Rows of each kind (events, outcomes, webhook deliveries) per delete when old ones are
  // pruned: milliseconds of the store.
  std::size_t prune_batch = 2'000;
  Store* deliveries = nullptr;  // where webhook deliveries are kept (null: the driver's store)
  // Called on the driver's thread after each saved change, before its actions are handed out.
  std::function<void(const std::string& repo, const Committed&)> on_commit;
  metrics::Registry* metrics = nullptr;  // where landings, ejections, builds are counted
  // Called (on the driver's thread) after each change of a repository is saved, before its
  // actions run: live feeds read the new events from the store then.
  std::function<void(const std::string& repo)> on_saved;
};

// What the service knows about a repository's health, for /readyz, the queue JSON and the
// status page.
struct Health {
  bool loaded = false;     // its state is loaded and it is served
  bool remote_ok = false;  // the last fetch succeeded
  queue::Millis last_fetch_ok = 0;
  queue::Millis last_fetch_failed = 0;
  int fetch_failures = 0;  // in a row
  queue::Millis next_fetch_at = 0;
  std::string last_error;  // of the remote, the store or the lease; "" when healthy
  std::size_t outbox_pending = 0;
  forges::ApiHealth api;  // the forge's API (rate limits, errors), for forges that have one
};

class Driver {
 public:
  Driver(const Clock& clock, Store& store, GitPort& git, PolicyPort& policy, CiPort& ci,
         OutboxPort& outbox, std::vector<RepoConfig> repos, Options options = {});
  ~Driver();
  Driver(const Driver&) = delete;
  Driver& operator=(const Driver&) = delete;

  // Loads every repository's state, moves finished PRs out, re-issues what was in flight
  // (queue::resume), resends the outbox and asks for a first fetch. A repository whose lease
  // another process holds is left unloaded (and unhealthy); a store that cannot be read fails.
  Status start();

  // The engine's answer to `event`, after the change it made is saved and its actions are
  // handed out. A refused event changes nothing; a save that fails is `unavailable` (or
  // `conflict` if another writer moved the repository on) and changes nothing either; an
  // exception on the way (a bug) is `internal`, and changes nothing if it came before the save.
  queue::Outcome apply(const std::string& repo, const queue::Event& event);

  // Time passes (read from the clock): the engine's timeouts, the fetch schedule, outbox
  // retries, lease renewals.
  void tick();

  // Results of the ports.
  void fetched(const std::string& repo, const forges::RemoteRefs& refs);
  void fetch_failed(const std::string& repo, const Status& why);
  void delivered(std::int64_t outbox_id, const Status& result);
  // The forge's API health, as its owner last saw it.
  void set_api_health(const std::string& repo, const forges::ApiHealth& api);

  // Reads (nullptr for an unknown repository).
  const queue::RepoState* state(const std::string& repo) const;
  const Health* health(const std::string& repo) const;
  const RepoConfig* config(const std::string& repo) const;
  std::vector<std::string> repos() const;
  queue::Millis now() const { return clock_.now(); }

 private:
  struct Slot;
  struct Pending {
    forges::OutboxMessage message;
    bool in_flight = false;
  };

  Slot* find(const std::string& repo);
  const Slot* find(const std::string& repo) const;
  void load(Slot& slot);
  Status save_first(Slot& slot, queue::Millis now);
  // apply() without its guard against exceptions.
  queue::Outcome apply_event(const std::string& repo, const queue::Event& event);
  // Saves `next` as the slot's new state (archiving what is finished) with the event and the
  // notices among `actions`; then hands the actions out. `restored`: a PR the event brought
  // back from the archive, as it was there (it has no new outcome unless it changed).
  Status commit(Slot& slot, queue::RepoState next, const queue::Event* event,
                const std::vector<queue::Action>& actions,
                const std::optional<queue::PullRequest>& restored = std::nullopt);
  void dispatch(Slot& slot, const std::vector<queue::Action>& actions,
                const std::vector<std::int64_t>& outbox_ids);
  // Sends the outbox messages that are due, in id order and one at a time per PR, so that a
  // PR's comments appear in the order they were decided.
  void send_due_outbox(queue::Millis now);
  static bool same_pr(const forges::OutboxMessage& a, const forges::OutboxMessage& b);
  void renew_lease(Slot& slot, queue::Millis now);
  // Counts what the change from the slot's state to `next` means: landings, ejections, the
  // builds that ended.
  void record(const Slot& slot, const queue::RepoState& next,
              const std::vector<HistoryEntry>& outcomes, queue::Millis now);
  void record_gauges(const Slot& slot);
  int innocent_ejections(const std::string& repo, const HistoryEntry& landed);

  const Clock& clock_;
  Store& store_;
  GitPort& git_;
  PolicyPort& policy_;
  CiPort& ci_;
  OutboxPort& outbox_;
  Options options_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::map<std::int64_t, Pending> pending_;  // the outbox, by id
  queue::Millis next_prune_at_ = 0;
};

}  // namespace dmz::driver

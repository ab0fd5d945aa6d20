// The durable state of the service: each repository's hot state (its open PRs and its train),
// the history of finished PRs, the event log, the outbox of messages to the forge, webhook
// delivery ids and the leases that say which process owns a repository. SQLite (WAL) is the
// embedded default; the interface is what a PostgreSQL store implements too.
// Every save is one transaction that writes only what changed, committed before the actions
// it enables are executed; it fails with `conflict` if another writer moved the repository's
// version on, and with `unavailable` if the database cannot write (full disk, locked, I/O).
// Threading: every call is safe from any thread (serialized inside).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/status.hpp"
#include "forges/forge.hpp"
#include "queue/delta.hpp"
#include "queue/model.hpp"

namespace dmz {

struct EventLogEntry {
  std::int64_t seq = 0;
  std::string repo;
  std::string kind;           // e.g. "merge_requested"
  std::string json;           // the event as JSON
  std::optional<int> number;  // the PR it is about, if any
  queue::Millis at = 0;
  // Other PRs it is about: those of the candidate a merge, check or landing names, so that a
  // PR's events (pr_events) hold its candidates' too. Written by save; reads may leave it empty.
  std::vector<int> also;
};

// One way a PR left the queue: merged, failed, cancelled, closed.
struct HistoryEntry {
  std::int64_t seq = 0;  // increases with time; pages are asked for "before seq"
  std::string repo;
  int number = 0;
  queue::PrStatus status = queue::PrStatus::Merged;
  queue::Reason reason = queue::Reason::None;
  std::string message;
  std::vector<std::string> details;
  std::string branch, author, title;
  queue::Sha head;
  std::string approver;  // empty if it was never approved
  queue::Millis approved_at = 0;
  queue::Millis at = 0;  // when it finished

  // The entry for `pr` as it is now (it just became Merged, Failed or Cancelled).
  static HistoryEntry of(const std::string& repo, const queue::PullRequest& pr);
};

// One change of one repository, written atomically.
struct Change {
  const queue::RepoState* state = nullptr;   // the new hot state
  queue::StateDelta delta;                   // what in `state` changed since the last save
  std::uint64_t expected_version = 0;        // the version the change was made on (0: none)
  std::vector<queue::PullRequest> archived;  // leaving the hot state (also in delta.removed_prs)
  std::vector<HistoryEntry> outcomes;        // PRs that just finished
  std::optional<EventLogEntry> event;        // the event that made the change
  std::vector<queue::Notify> notices;        // new outbox messages
  queue::Millis at = 0;                      // when (outbox messages are due from then)
};

// A webhook delivery: its id and when it arrived, and (when `forge` is set) the request as it
// came, so that a delivery answered 202 and not handled yet (a crash) is handled at the next
// start. The headers are those the forge's adapter reads, as a JSON object.
struct DeliveryId {
  std::string id;
  queue::Millis at = 0;
  std::string forge;           // "": an id alone, handled once recorded
  std::string headers = "{}";  // JSON object: lowercased name -> value
  std::string body;
  std::int64_t seq = 0;  // set by the store: increases with arrival (unhandled_deliveries)
};

// One judgement of a release tag (bot/service/promoter): a promotion of `staging` or
// `production`, or a refusal with every reason. Kept so that the records survive a restart and
// a tag judged once is not judged again by every fetch.
struct PromotionRecord {
  std::int64_t seq = 0;  // set by the store; increases with time
  std::string repo;
  std::string tag;
  std::string tag_object;  // the tag's object id when judged ("" if there was no such tag)
  std::string kind;        // "candidate", "release" or "none"
  std::string target;      // the branch it moves ("" for a tag of no kind)
  std::string commit;
  std::string from;  // the branch's tip before ("" = it did not exist)
  std::vector<std::string> signers;
  std::vector<std::string> reasons;  // empty iff promoted
  bool promoted = false;
  std::string source;         // "api" or "fetch"
  std::string hotfix_branch;  // a hotfix candidate's or release's hotfix/* branch ("" = none)
  queue::Millis at = 0;       // unix milliseconds
};

struct Saved {
  std::uint64_t version = 0;             // the repository's version after the change
  std::vector<std::int64_t> outbox_ids;  // of change.notices, in order
};

struct Loaded {
  queue::RepoState state;
  std::uint64_t version = 0;
};

class Store {
 public:
  virtual ~Store() = default;

  virtual Result<Saved> save(const Change& change) = 0;
  // The repository's hot state, or nullopt if it was never saved.
  virtual Result<std::optional<Loaded>> load(const std::string& repo) = 0;
  // True once any repository has been saved (an empty database is a fresh one).
  virtual Result<bool> has_state() = 0;

  // A PR archived out of the hot state (to bring it back when an event names it again).
  virtual Result<std::optional<queue::PullRequest>> archived(const std::string& repo,
                                                             int number) = 0;
  // Finished PRs, newest first: at most `limit` with seq < `before` (0: from the newest).
  virtual Result<std::vector<HistoryEntry>> history(const std::string& repo, std::int64_t before,
                                                    std::size_t limit) = 0;
  // The same for one PR (its every outcome, newest first).
  virtual Result<std::vector<HistoryEntry>> pr_history(const std::string& repo, int number,
                                                       std::size_t limit) = 0;
  // The newest `limit` events of the repository (or of one PR: those about it, and those that
  // name it in `also`), oldest first.
  virtual Result<std::vector<EventLogEntry>> events(const std::string& repo, std::size_t limit) = 0;
  virtual Result<std::vector<EventLogEntry>> pr_events(const std::string& repo, int number,
                                                       std::size_t limit) = 0;
  // The events that gave PR `number` its heads (pr_opened, pr_pushed), the newest `limit`,
  // oldest first: when dmzbot learned each head, however many other events name the PR since.
  virtual Result<std::vector<EventLogEntry>> pr_heads(const std::string& repo, int number,
                                                      std::size_t limit) = 0;
  // The repository's events with seq > `after`, oldest first, at most `limit` (a live feed
  // resuming where a client left off).
  virtual Result<std::vector<EventLogEntry>> events_after(const std::string& repo,
                                                          std::int64_t after,
                                                          std::size_t limit) = 0;

  // The repository's undelivered outbox messages, oldest first.
  virtual Result<std::vector<forges::OutboxMessage>> outbox(const std::string& repo) = 0;
  virtual Status outbox_delivered(std::int64_t id) = 0;
  virtual Status outbox_retry(std::int64_t id, int attempts, queue::Millis next_at,
                              const std::string& last_error) = 0;

  // Records webhook deliveries, each seen at its `at`, in one transaction (one commit for a
  // burst of deliveries): for each, in order, true if it is new, false if it was already
  // recorded (earlier, or earlier in the same batch; a duplicate's request is not kept). A new
  // one with a `forge` is kept with its request, unhandled. The deliveries in `handled` are
  // marked handled in the same transaction (as mark_deliveries_handled does), so that under a
  // steady stream of webhooks the marks cost no commit of their own. Fails as a whole: then
  // none is recorded and none marked.
  virtual Result<std::vector<bool>> record_deliveries(const std::vector<DeliveryId>& ids,
                                                      const std::vector<std::string>& handled) = 0;
  Result<std::vector<bool>> record_deliveries(const std::vector<DeliveryId>& ids) {
    return record_deliveries(ids, {});
  }
  // The same for one id.
  Result<bool> record_delivery(const std::string& delivery_id, queue::Millis at) {
    auto r = record_deliveries({DeliveryId{delivery_id, at}});
    if (!r) return r.error();
    return bool(r->front());
  }
  // Marks recorded deliveries handled (their events applied, their follow-ups carried out), in
  // one transaction: they are not handed out again, their request may be dropped, their id
  // still makes a redelivery a duplicate. Unknown ids are ignored.
  virtual Status mark_deliveries_handled(const std::vector<std::string>& ids) = 0;
  // Deliveries recorded with a request and not handled, oldest first: at most `limit` with
  // seq > `after` (page on with the last one's seq).
  virtual Result<std::vector<DeliveryId>> unhandled_deliveries(std::int64_t after,
                                                               std::size_t limit) = 0;
  // Forgets deliveries first seen before `before`, handled or not (a forge redelivers within
  // days, not months; a delivery unhandled that long is not going to be): the oldest `limit`
  // of them, so that a backlog (after downtime) holds the webhooks up for one short delete at
  // a time. Returns how many it forgot.
  virtual Result<std::size_t> prune_deliveries(queue::Millis before, std::size_t limit) = 0;
  // Forgets history older than `before`: the oldest events (with the timelines that name them)
  // and outcomes, at most `limit` of each, in one transaction (a long backlog goes in several
  // calls, so that no call holds the writers up for long). Finished PRs stay archived. The
  // heads of PRs still in the hot state stay (their pr_opened and pr_pushed events): a comment
  // is pinned to the head its PR had when it was written, by the log. Returns how many rows it
  // removed.
  virtual Result<std::size_t> prune_history(queue::Millis before, std::size_t limit) = 0;

  // Takes (or renews) the lease on `repo` for `owner` until now + ttl: true if `owner` holds
  // it now, false if another owner's lease has not expired.
  virtual Result<bool> acquire_lease(const std::string& repo, const std::string& owner,
                                     queue::Millis now, queue::Millis ttl) = 0;
  virtual Status release_lease(const std::string& repo, const std::string& owner) = 0;

  // Release promotion records (bot/service/promoter). Appends one and returns the seq the
  // store gave it (the record's own seq is ignored).
  virtual Result<std::int64_t> record_promotion(const PromotionRecord& record) = 0;
  // The repository's newest `limit` records, newest first.
  virtual Result<std::vector<PromotionRecord>> promotions(const std::string& repo,
                                                          std::size_t limit) = 0;
  // The newest record that promoted `target` (moved it, or found it already there).
  virtual Result<std::optional<PromotionRecord>> last_promotion(const std::string& repo,
                                                                const std::string& target) = 0;
  // Every (tag, tag_object) of the repository that has a record, each once.
  virtual Result<std::vector<std::pair<std::string, std::string>>> judged_tags(
      const std::string& repo) = 0;
};

// `j` as JSON text, for the store. A string in it that is not UTF-8 (a path or a message from
// git, which deals in bytes) is kept with U+FFFD for its bad bytes: nlohmann's plain dump()
// throws on it, and an event that cannot be saved would be lost and its PR stalled.
std::string json_text(const nlohmann::json& j);

struct SqliteOptions {
  int busy_timeout_ms = 5000;  // how long a write waits for another writer before `unavailable`
  std::int64_t max_pages = 0;  // a cap on the database's size in pages (0: SQLite's default)
};

// Opens (creating if needed) the SQLite database at `file` (mode 0600), in WAL mode, schema
// migrated.
Result<std::unique_ptr<Store>> open_sqlite_store(const std::filesystem::path& file,
                                                 SqliteOptions options = {});

}  // namespace dmz

// The durable state of the service: each repository's RepoState (PRs, approvals, candidates,
// checks), the event log and webhook delivery ids. SQLite (WAL) is the embedded default.
// Every save is one transaction, committed before the actions it enables are executed.
// Threading: calls are serialized by an internal mutex; intended for the engine thread.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.hpp"
#include "queue/model.hpp"

namespace dmz {

struct EventLogEntry {
  std::int64_t seq = 0;
  std::string repo;
  std::string kind;  // e.g. "merge_requested"
  std::string json;  // the event as JSON
  queue::Millis at = 0;
};

class Store {
 public:
  virtual ~Store() = default;
  // Replaces the stored state of `state.repo` and appends one event-log entry, atomically.
  virtual Status save(const queue::RepoState& state, const std::string& event_kind,
                      const std::string& event_json, queue::Millis at) = 0;
  virtual Result<std::optional<queue::RepoState>> load(const std::string& repo) = 0;
  virtual Result<std::vector<EventLogEntry>> events(const std::string& repo, std::size_t limit) = 0;
  // Records a webhook delivery id; false if it was already recorded (a duplicate).
  virtual Result<bool> record_delivery(const std::string& delivery_id) = 0;
};

// Opens (creating if needed) the SQLite database at `file`, in WAL mode, schema migrated.
Result<std::unique_ptr<Store>> open_sqlite_store(const std::filesystem::path& file);

}  // namespace dmz

// The SQLite store: one database file in WAL mode holding every repository's hot state in
// normalized tables (so an operator can query them with the sqlite3 shell), the history of
// finished PRs, an append-only event log, the outbox, webhook delivery ids and leases.
//
// Durability: synchronous=FULL, because the engine writes its state *before* the side effects
// that depend on it; a committed save must survive a power loss, not only a crash.
// Atomicity: save() is one BEGIN IMMEDIATE transaction that writes the changed rows (the PRs
// the delta names, the train when it changed), the history, the event and the outbox; any
// error rolls the whole thing back. The repository's version is compared and bumped in the
// same transaction, so two writers cannot both build on one version.
// Errors: what SQLite reports while reading or writing (busy, full, I/O) is `unavailable`;
// a row that does not parse is a corrupt store (`internal`), never guessed.
// Threading: one connection, every call under one mutex; statements are prepared once (again
// at their next use if that failed).
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <limits>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string_view>
#include <system_error>
#include <type_traits>

#include "bot/store/store.hpp"

namespace dmz {

std::string json_text(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

HistoryEntry HistoryEntry::of(const std::string& repo, const queue::PullRequest& pr) {
  HistoryEntry h;
  h.repo = repo;
  h.number = pr.number;
  h.status = pr.status;
  h.reason = pr.reason_code;
  h.message = pr.reason;
  h.details = pr.details;
  h.branch = pr.branch;
  h.author = pr.author;
  h.title = pr.title;
  h.head = pr.approval ? pr.approval->sha : pr.head;
  if (pr.approval) {
    h.approver = pr.approval->approver;
    h.approved_at = pr.approval->at;
  }
  h.at = pr.finished_at;
  return h;
}

namespace {

using queue::CandidateStatus;
using queue::CheckState;
using queue::PrStatus;

// ---- Schema ----------------------------------------------------------------------------------
// Migrations in order; migration i (0-based) takes the schema from version i to i+1. Never edit
// one that has shipped: append a new one.
constexpr std::array<std::string_view, 18> kMigrations = {
    R"sql(
CREATE TABLE repos(
  name TEXT PRIMARY KEY,
  master TEXT NOT NULL,
  next_candidate INTEGER NOT NULL,
  retry_after INTEGER NOT NULL
);
CREATE TABLE prs(
  repo TEXT NOT NULL REFERENCES repos(name) ON DELETE CASCADE,
  number INTEGER NOT NULL,
  branch TEXT NOT NULL,
  author TEXT NOT NULL,
  title TEXT NOT NULL,
  head TEXT NOT NULL,
  status TEXT NOT NULL,
  reason TEXT NOT NULL,
  details TEXT NOT NULL,          -- JSON array of strings
  queued_at INTEGER NOT NULL,
  candidate INTEGER,              -- NULL when not in a candidate
  PRIMARY KEY(repo, number)
);
CREATE TABLE approvals(
  repo TEXT NOT NULL,
  number INTEGER NOT NULL,
  sha TEXT NOT NULL,
  approver TEXT NOT NULL,
  at INTEGER NOT NULL,
  PRIMARY KEY(repo, number),
  FOREIGN KEY(repo, number) REFERENCES prs(repo, number) ON DELETE CASCADE
);
CREATE TABLE candidates(
  repo TEXT NOT NULL REFERENCES repos(name) ON DELETE CASCADE,
  id INTEGER NOT NULL,
  position INTEGER NOT NULL,      -- 0 lands first
  base TEXT NOT NULL,
  sha TEXT NOT NULL,
  status TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  pushed_at INTEGER NOT NULL,
  PRIMARY KEY(repo, id),
  UNIQUE(repo, position)
);
CREATE TABLE candidate_prs(
  repo TEXT NOT NULL,
  candidate INTEGER NOT NULL,
  position INTEGER NOT NULL,      -- merge order within the candidate
  number INTEGER NOT NULL,
  PRIMARY KEY(repo, candidate, position),
  FOREIGN KEY(repo, candidate) REFERENCES candidates(repo, id) ON DELETE CASCADE
);
CREATE TABLE checks(
  repo TEXT NOT NULL,
  candidate INTEGER NOT NULL,
  context TEXT NOT NULL,
  state TEXT NOT NULL,
  description TEXT NOT NULL,
  url TEXT NOT NULL,
  at INTEGER NOT NULL,
  PRIMARY KEY(repo, candidate, context),
  FOREIGN KEY(repo, candidate) REFERENCES candidates(repo, id) ON DELETE CASCADE
);
CREATE TABLE events(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  repo TEXT NOT NULL,
  kind TEXT NOT NULL,
  json TEXT NOT NULL,
  at INTEGER NOT NULL
);
CREATE INDEX events_by_repo ON events(repo, seq);
CREATE TABLE deliveries(
  id TEXT PRIMARY KEY,
  at INTEGER NOT NULL             -- wall-clock ms when first seen
);
)sql",
    // 2: the candidate's own policy verdict (CheckCandidate) gates landing too.
    R"sql(
ALTER TABLE candidates ADD COLUMN policy_passed INTEGER NOT NULL DEFAULT 0;
)sql",
    // 3: state that does not grow: finished PRs move to pr_archive and outcomes; writes are
    // incremental and versioned; reason codes; the outbox; leases; PR timelines.
    R"sql(
ALTER TABLE repos ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE prs ADD COLUMN reason_code TEXT NOT NULL DEFAULT '';
ALTER TABLE prs ADD COLUMN finished_at INTEGER NOT NULL DEFAULT 0;
CREATE TABLE pr_archive(
  repo TEXT NOT NULL,
  number INTEGER NOT NULL,
  branch TEXT NOT NULL,
  author TEXT NOT NULL,
  title TEXT NOT NULL,
  head TEXT NOT NULL,
  status TEXT NOT NULL,
  reason_code TEXT NOT NULL,
  reason TEXT NOT NULL,
  details TEXT NOT NULL,
  queued_at INTEGER NOT NULL,
  finished_at INTEGER NOT NULL,
  approval_sha TEXT,              -- NULL: no approval
  approver TEXT,
  approved_at INTEGER,
  PRIMARY KEY(repo, number)
);
CREATE TABLE outcomes(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  repo TEXT NOT NULL,
  number INTEGER NOT NULL,
  status TEXT NOT NULL,
  reason_code TEXT NOT NULL,
  message TEXT NOT NULL,
  details TEXT NOT NULL,
  branch TEXT NOT NULL,
  author TEXT NOT NULL,
  title TEXT NOT NULL,
  head TEXT NOT NULL,
  approver TEXT NOT NULL,
  approved_at INTEGER NOT NULL,
  at INTEGER NOT NULL
);
CREATE INDEX outcomes_by_repo ON outcomes(repo, seq);
CREATE INDEX outcomes_by_pr ON outcomes(repo, number, seq);
ALTER TABLE events ADD COLUMN number INTEGER;
CREATE INDEX events_by_pr ON events(repo, number, seq);
CREATE TABLE outbox(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  repo TEXT NOT NULL,
  number INTEGER NOT NULL,
  kind TEXT NOT NULL,
  reason_code TEXT NOT NULL,
  message TEXT NOT NULL,
  head TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  next_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  last_error TEXT NOT NULL
);
CREATE INDEX outbox_by_repo ON outbox(repo, id);
CREATE INDEX deliveries_by_time ON deliveries(at);
CREATE TABLE leases(
  repo TEXT PRIMARY KEY,
  owner TEXT NOT NULL,
  expires_at INTEGER NOT NULL
);
)sql",
    // 4: PR priorities (higher lands first); the details of a notice (every policy reason,
    // the conflicting paths, a check's link) go out with it.
    R"sql(
ALTER TABLE prs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pr_archive ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN details TEXT NOT NULL DEFAULT '[]';
)sql",
    // 5: the strategies' state: the train's window and what was observed of builds and PRs;
    // a PR's changed paths, pre-queue CI, hold, bisection group, probe and failures; a
    // candidate's lane, probe flag, build attempt and retried failure.
    R"sql(
ALTER TABLE repos ADD COLUMN train_window INTEGER NOT NULL DEFAULT 0;
ALTER TABLE repos ADD COLUMN observed TEXT NOT NULL DEFAULT '{}';
ALTER TABLE prs ADD COLUMN paths TEXT NOT NULL DEFAULT '[]';
ALTER TABLE prs ADD COLUMN precheck TEXT NOT NULL DEFAULT 'pending';
ALTER TABLE prs ADD COLUMN held_by INTEGER;
ALTER TABLE prs ADD COLUMN bisect_group INTEGER NOT NULL DEFAULT 0;
ALTER TABLE prs ADD COLUMN probed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE prs ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE candidates ADD COLUMN lane INTEGER NOT NULL DEFAULT 0;
ALTER TABLE candidates ADD COLUMN probe INTEGER NOT NULL DEFAULT 0;
ALTER TABLE candidates ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
ALTER TABLE candidates ADD COLUMN failed INTEGER NOT NULL DEFAULT 0;
)sql",
    // 6: release promotion records (promotions and refusals of staging/production), so they
    // survive a restart and a tag judged once is not judged again.
    R"sql(
CREATE TABLE promotions(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  repo TEXT NOT NULL,
  tag TEXT NOT NULL,
  tag_object TEXT NOT NULL,
  kind TEXT NOT NULL,
  target TEXT NOT NULL,
  commit_sha TEXT NOT NULL,
  from_sha TEXT NOT NULL,
  signers TEXT NOT NULL,          -- JSON array of strings
  reasons TEXT NOT NULL,          -- JSON array of strings; empty iff promoted
  promoted INTEGER NOT NULL,
  source TEXT NOT NULL,
  hotfix_branch TEXT NOT NULL,
  at INTEGER NOT NULL
);
CREATE INDEX promotions_by_repo ON promotions(repo, seq);
CREATE INDEX promotions_by_target ON promotions(repo, target, promoted, seq);
)sql",
    // 7: who signed a PR's commits, kept with its policy verdict (the status page shows them).
    R"sql(
ALTER TABLE prs ADD COLUMN signers TEXT NOT NULL DEFAULT '[]';
ALTER TABLE pr_archive ADD COLUMN signers TEXT NOT NULL DEFAULT '[]';
-- the PRs of the candidate an event names (merge, checks, landing): a PR's timeline holds them
CREATE TABLE event_prs(
  repo TEXT NOT NULL,
  number INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  PRIMARY KEY(repo, number, seq)
);
)sql",
    // 8: whose approvals the policy verdict counted (signed tags, signed notes, forge reviews a
    // rule allows), kept beside its signers: the status page shows them apart from the merge
    // master who asked to merge.
    R"sql(
ALTER TABLE prs ADD COLUMN approvers TEXT NOT NULL DEFAULT '[]';
ALTER TABLE pr_archive ADD COLUMN approvers TEXT NOT NULL DEFAULT '[]';
)sql",
    // 9: a webhook delivery keeps its request until it is handled, so that one answered 202
    // just before a crash is handled at the next start. Older rows were handled (or are lost).
    R"sql(
ALTER TABLE deliveries ADD COLUMN forge TEXT NOT NULL DEFAULT '';
ALTER TABLE deliveries ADD COLUMN headers TEXT NOT NULL DEFAULT '{}';  -- JSON object
ALTER TABLE deliveries ADD COLUMN body BLOB;                           -- NULL once handled
ALTER TABLE deliveries ADD COLUMN handled INTEGER NOT NULL DEFAULT 1;
CREATE INDEX deliveries_unhandled ON deliveries(handled) WHERE handled = 0;
)sql",
    // 10: how often in a row a PR's merge failed (it fails as unmergeable after a few).
    R"sql(
ALTER TABLE prs ADD COLUMN merge_errors INTEGER NOT NULL DEFAULT 0;
)sql",
    // 11: how long a candidate's checks could not be observed (its check timeout waits it out).
    R"sql(
ALTER TABLE candidates ADD COLUMN paused_ms INTEGER NOT NULL DEFAULT 0;
)sql",
    // 12: adaptive under load: the PRs a PR's probe was built with, and the PRs that landed
    // since without it that change what it changes.
    R"sql(
ALTER TABLE prs ADD COLUMN probed_with TEXT NOT NULL DEFAULT '[]';  -- JSON array of numbers
ALTER TABLE prs ADD COLUMN untested INTEGER NOT NULL DEFAULT 0;
)sql",
    // 13: history older than [store] history_days is pruned, oldest first.
    R"sql(
CREATE INDEX events_by_time ON events(at);
CREATE INDEX outcomes_by_time ON outcomes(at);
CREATE INDEX event_prs_by_seq ON event_prs(seq);
)sql",
    // 14: the policy epoch: a policy verdict asked for before the policy may have changed is
    // not taken.
    R"sql(
ALTER TABLE repos ADD COLUMN policy_epoch INTEGER NOT NULL DEFAULT 0;
)sql",
    // 15: the trust root as last read (its digest): a change voids every verdict.
    R"sql(
ALTER TABLE repos ADD COLUMN trust_root TEXT NOT NULL DEFAULT '';
)sql",
    // 16: the policy epoch of each PR's verdict (0: judged again if it leaves the train).
    R"sql(
ALTER TABLE prs ADD COLUMN judged_epoch INTEGER NOT NULL DEFAULT 0;
)sql",
    // 17: the PRs of the chain a probe is built with (adaptive under load).
    R"sql(
ALTER TABLE candidates ADD COLUMN with_prs TEXT NOT NULL DEFAULT '[]';  -- JSON array of numbers
)sql",
    // 18: the tag object a signed-tag PR's verdict judged (its mergetag must be that one).
    R"sql(
ALTER TABLE prs ADD COLUMN judged_tag TEXT NOT NULL DEFAULT '';
)sql",
};

// ---- RAII over the C API ---------------------------------------------------------------------

struct DbClose {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using Db = std::unique_ptr<sqlite3, DbClose>;

// What SQLite's result code means for a caller: the database could not do it now (busy,
// locked, full, I/O, out of memory: worth a retry, 503 at the edge), or our SQL or data is
// wrong (a constraint, a corrupt file: a bug).
Error sql_failure(int rc, std::string message) {
  switch (rc & 0xff) {  // the primary code of an extended one
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PROTOCOL:
    case SQLITE_NOMEM:
    case SQLITE_INTERRUPT:
      return unavailable(std::move(message));
    default:
      return internal(std::move(message));
  }
}

Error sql_error(sqlite3* db, std::string_view what) {
  return sql_failure(sqlite3_extended_errcode(db),
                     "sqlite: " + std::string(what) + ": " + sqlite3_errmsg(db));
}

// One prepared statement. Bind errors are remembered and reported by the next step(); so is
// the error of one that did not prepare (failed()), whose bindings are ignored.
class Stmt {
 public:
  static Result<Stmt> prepare(sqlite3* db, std::string_view sql) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), 0, &s, nullptr) !=
        SQLITE_OK)
      return sql_error(db, "prepare '" + std::string(sql.substr(0, 60)) + "'");
    return Stmt(db, s);
  }
  static Stmt failed(sqlite3* db, Error why) {
    Stmt s(db, nullptr);
    s.prepare_error_ = std::move(why);
    return s;
  }
  Stmt(Stmt&& o) noexcept
      : db_(o.db_),
        s_(std::exchange(o.s_, nullptr)),
        bind_rc_(o.bind_rc_),
        prepare_error_(std::move(o.prepare_error_)) {}
  Stmt& operator=(Stmt&&) = delete;
  Stmt(const Stmt&) = delete;
  ~Stmt() { sqlite3_finalize(s_); }

  bool prepared() const { return s_ != nullptr; }

  Stmt& bind(int i, std::string_view v) {
    if (!s_) return *this;
    return check(sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
  }
  Stmt& bind(int i, std::int64_t v) { return s_ ? check(sqlite3_bind_int64(s_, i, v)) : *this; }
  Stmt& bind(int i, std::nullopt_t) { return s_ ? check(sqlite3_bind_null(s_, i)) : *this; }
  // Bytes kept as they came (a webhook body is signed byte for byte).
  Stmt& bind_blob(int i, std::string_view v) {
    if (!s_) return *this;
    return check(sqlite3_bind_blob64(s_, i, v.data(), v.size(), SQLITE_TRANSIENT));
  }

  // true: a row is available; false: done.
  Result<bool> step() {
    if (!s_) return *prepare_error_;
    if (bind_rc_ != SQLITE_OK) return error_from(bind_rc_, "bind");
    int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return error_from(rc, "step");
  }
  // Runs a statement that returns no rows (or whose rows are ignored).
  Status exec() {
    auto r = step();
    return r.ok() ? Status() : r.status();
  }
  void reset() {
    if (!s_) return;
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
    bind_rc_ = SQLITE_OK;
  }

  std::int64_t int64(int col) const { return sqlite3_column_int64(s_, col); }
  bool is_null(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }
  std::string text(int col) const {
    auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s_, col))) : "";
  }
  std::string blob(int col) const {
    auto* p = static_cast<const char*>(sqlite3_column_blob(s_, col));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s_, col))) : "";
  }

 private:
  Stmt(sqlite3* db, sqlite3_stmt* s) : db_(db), s_(s) {}
  Stmt& check(int rc) {
    if (bind_rc_ == SQLITE_OK && rc != SQLITE_OK) bind_rc_ = rc;
    return *this;
  }
  Error error_from(int rc, std::string_view what) const {
    const char* sql = sqlite3_sql(s_);
    std::string head = sql ? std::string(sql).substr(0, 60) : "";
    return sql_failure(rc, "sqlite: " + std::string(what) + " '" + head +
                               "': " + (rc == bind_rc_ ? sqlite3_errstr(rc) : sqlite3_errmsg(db_)));
  }

  sqlite3* db_;
  sqlite3_stmt* s_;
  int bind_rc_ = SQLITE_OK;
  std::optional<Error> prepare_error_;  // set iff s_ is null
};

// Resets a statement when its reader leaves, at the end or early (an error, a corrupt row): one
// left in the middle of its rows keeps its read snapshot until its next use, and while it does
// no WAL checkpoint can finish.
class ResetAfter {
 public:
  explicit ResetAfter(Stmt& s) : s_(s) {}
  ~ResetAfter() { s_.reset(); }
  ResetAfter(const ResetAfter&) = delete;
  ResetAfter& operator=(const ResetAfter&) = delete;

 private:
  Stmt& s_;
};

Status exec_script(sqlite3* db, const std::string& sql) {
  char* msg = nullptr;
  if (int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg); rc != SQLITE_OK) {
    std::string m = msg ? msg : sqlite3_errmsg(db);
    sqlite3_free(msg);
    return sql_failure(rc, "sqlite: " + m);
  }
  return {};
}

// BEGIN IMMEDIATE (a writer's) or BEGIN (a reader's: one snapshot for several statements) on
// construction (check begun()); ROLLBACK on destruction unless committed, however the caller
// leaves: a transaction left open would fail every later BEGIN.
class Transaction {
 public:
  enum Kind { kWrite, kRead };
  explicit Transaction(sqlite3* db, Kind kind = kWrite) : db_(db) {
    begun_ = exec_script(db_, kind == kWrite ? "BEGIN IMMEDIATE" : "BEGIN");
  }
  ~Transaction() {
    if (begun_.ok() && !done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  const Status& begun() const { return begun_; }
  Status commit() {
    Status s = exec_script(db_, "COMMIT");
    if (s.ok()) done_ = true;  // on failure the destructor rolls back
    return s;
  }

 private:
  sqlite3* db_;
  Status begun_;
  bool done_ = false;
};

// ---- Enum names ------------------------------------------------------------------------------

template <class E, std::size_t N>
std::optional<E> parse_enum(std::string_view s, const std::array<E, N>& all) {
  for (E e : all)
    if (queue::to_string(e) == s) return e;
  return std::nullopt;
}
constexpr std::array kPrStatuses = {PrStatus::Open,    PrStatus::Approved, PrStatus::Queued,
                                    PrStatus::Merging, PrStatus::InDmz,    PrStatus::Building,
                                    PrStatus::Merged,  PrStatus::Failed,   PrStatus::Cancelled};
constexpr std::array kCandidateStatuses = {CandidateStatus::Merging, CandidateStatus::InDmz,
                                           CandidateStatus::Building, CandidateStatus::Landing};
constexpr std::array kCheckStates = {CheckState::Pending, CheckState::Success, CheckState::Failure,
                                     CheckState::Error};

Error corrupt(const std::string& repo, const std::string& what) {
  return internal("store: corrupt state for " + repo + ": " + what);
}

std::int64_t as_int64(std::uint64_t v) { return static_cast<std::int64_t>(v); }
std::uint64_t as_uint64(std::int64_t v) { return static_cast<std::uint64_t>(v); }
// The events that give a PR a head: pruning keeps them for PRs in the hot state, and pr_heads
// reads them.
const std::string kHeadKinds = "kind IN ('pr_opened', 'pr_pushed')";

std::int64_t clamp_limit(std::size_t limit) {
  constexpr auto max = static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max());
  return static_cast<std::int64_t>(std::min(limit, max));
}

std::string details_json(const std::vector<std::string>& details) {
  return json_text(nlohmann::json(details));
}

// A JSON array column of strings or of integers; anything else is corruption, said with
// `not_array` or `bad_item`.
// `whose`: the row it belongs to ("PR #7 ", "candidate 3 ").
template <class T>
Result<std::vector<T>> parse_array(const std::string& repo, const std::string& whose,
                                   const std::string& text, std::string_view not_array,
                                   std::string_view bad_item) {
  auto items = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!items.is_array()) return corrupt(repo, whose + std::string(not_array));
  std::vector<T> out;
  for (const auto& item : items) {
    const bool ok = std::is_same_v<T, std::string> ? item.is_string() : item.is_number_integer();
    if (!ok) return corrupt(repo, whose + std::string(bad_item));
    out.push_back(item.get<T>());
  }
  return out;
}

Result<std::vector<std::string>> parse_details(const std::string& repo, int number,
                                               const std::string& text) {
  return parse_array<std::string>(repo, "PR #" + std::to_string(number) + " ", text,
                                  "details are not a JSON array", "details are not strings");
}

Result<std::vector<int>> parse_numbers(const std::string& repo, int number,
                                       const std::string& text) {
  return parse_array<int>(repo, "PR #" + std::to_string(number) + " ", text,
                          "probed_with is not a JSON array", "probed_with holds a non-number");
}

// The observations of a repository (moving averages and tallies) as one JSON text: they are
// read and written whole, with the header.
std::string observed_json(const queue::Observed& o) {
  nlohmann::json risk = nlohmann::json::object();
  for (const auto& [key, t] : o.risk)
    risk[key] = t.expected_permille ? nlohmann::json{t.passed, t.failed, t.expected_permille}
                                    : nlohmann::json{t.passed, t.failed};
  return json_text(nlohmann::json{{"build_ms", o.build_ms},
                                  {"fail_permille", o.fail_permille},
                                  {"builds", o.builds},
                                  {"arrival_ms", o.arrival_ms},
                                  {"last_arrival", o.last_arrival},
                                  {"risk", risk}});
}

Result<queue::Observed> parse_observed(const std::string& repo, const std::string& text) {
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return corrupt(repo, "observations are not a JSON object");
  queue::Observed o;
  auto number = [&](const char* key, auto& out) {
    auto it = j.find(key);
    if (it == j.end()) return true;  // an older row: nothing observed yet
    if (!it->is_number_unsigned() && !it->is_number_integer()) return false;
    out = it->get<std::remove_reference_t<decltype(out)>>();
    return true;
  };
  if (!number("build_ms", o.build_ms) || !number("fail_permille", o.fail_permille) ||
      !number("builds", o.builds) || !number("arrival_ms", o.arrival_ms) ||
      !number("last_arrival", o.last_arrival))
    return corrupt(repo, "observations have a field that is not a number");
  if (auto it = j.find("risk"); it != j.end()) {
    if (!it->is_object()) return corrupt(repo, "observed risk is not an object");
    for (const auto& [key, v] : it->items()) {
      if (!v.is_array() || v.size() < 2 || v.size() > 3 ||
          !std::all_of(v.begin(), v.end(), [](const auto& n) { return n.is_number_unsigned(); }))
        return corrupt(repo, "observed risk of '" + key +
                                 "' is not [passed, failed] or [passed, failed, expected]");
      o.risk[key] = queue::Tally{v[0].get<std::uint32_t>(), v[1].get<std::uint32_t>(),
                                 v.size() == 3 ? v[2].get<std::uint32_t>() : 0};
    }
  }
  return o;
}

#define DMZ_TRY(expr)                            \
  do {                                           \
    if (Status s_ = (expr); !s_.ok()) return s_; \
  } while (0)
#define DMZ_TRY_R(expr)                                  \
  do {                                                   \
    if (Status s_ = (expr); !s_.ok()) return s_.error(); \
  } while (0)

// ---- The store -------------------------------------------------------------------------------

class SqliteStore final : public Store {
 public:
  explicit SqliteStore(Db db) : db_(std::move(db)) {}

  Result<Saved> save(const Change& change) override {
    std::lock_guard lock(mu_);
    if (!change.state) return internal("store: a change without a state");
    const queue::RepoState& st = *change.state;
    Transaction tx(db_.get());
    DMZ_TRY_R(tx.begun());
    auto version = write_header(st, change.expected_version);
    if (!version) return version.error();
    for (int number : change.delta.removed_prs) DMZ_TRY_R(delete_pr(st.repo, number));
    for (int number : change.delta.changed_prs) {
      auto it = st.prs.find(number);
      if (it == st.prs.end())
        return internal("store: changed PR #" + std::to_string(number) +
                        " is not in the state of " + st.repo);
      DMZ_TRY_R(write_pr(st.repo, it->second));
    }
    for (const auto& pr : change.archived) DMZ_TRY_R(write_archive(st.repo, pr));
    if (change.delta.train_changed) DMZ_TRY_R(write_train(st));
    for (const auto& h : change.outcomes) DMZ_TRY_R(write_outcome(h));
    if (change.event) DMZ_TRY_R(write_event(*change.event));
    Saved saved{*version, {}};
    for (const auto& n : change.notices) {
      auto id = write_outbox(st.repo, n, change.at);
      if (!id) return id.error();
      saved.outbox_ids.push_back(*id);
    }
    DMZ_TRY_R(tx.commit());
    return saved;
  }

  Result<std::optional<Loaded>> load(const std::string& repo) override {
    std::lock_guard lock(mu_);
    // A read transaction so that the rows of all tables come from one snapshot; it is rolled
    // back when it ends (read-only: nothing to lose).
    Transaction tx(db_.get(), Transaction::kRead);
    DMZ_TRY_R(tx.begun());
    return read_state(repo);
  }

  Result<bool> has_state() override {
    std::lock_guard lock(mu_);
    auto& q = stmt("SELECT 1 FROM repos LIMIT 1");
    ResetAfter reset_after(q);
    auto row = q.step();
    if (!row) return row.error();
    return *row;
  }

  Result<std::optional<queue::PullRequest>> archived(const std::string& repo, int number) override {
    std::lock_guard lock(mu_);
    auto& q = stmt(
        "SELECT number, branch, author, title, head, status, reason_code, reason, details,"
        " queued_at, finished_at, approval_sha, approver, approved_at, priority, signers,"
        " approvers FROM pr_archive WHERE repo = ?1 AND number = ?2");
    q.bind(1, repo).bind(2, std::int64_t{number});
    ResetAfter reset_after(q);
    auto row = q.step();
    if (!row) return row.error();
    if (!*row) return std::optional<queue::PullRequest>();
    queue::PullRequest p;
    p.number = static_cast<int>(q.int64(0));
    p.branch = q.text(1);
    p.author = q.text(2);
    p.title = q.text(3);
    p.head = q.text(4);
    auto status = parse_enum(q.text(5), kPrStatuses);
    auto reason = queue::parse_reason(q.text(6));
    if (!status || !reason)
      return corrupt(repo, "archived PR #" + std::to_string(number) + " has an unknown status");
    p.status = *status;
    p.reason_code = *reason;
    p.reason = q.text(7);
    auto details = parse_details(repo, number, q.text(8));
    if (!details) return details.error();
    p.details = std::move(*details);
    p.queued_at = q.int64(9);
    p.finished_at = q.int64(10);
    if (!q.is_null(11)) p.approval = queue::Approval{q.text(11), q.text(12), q.int64(13)};
    p.priority = static_cast<int>(q.int64(14));
    auto signers = parse_details(repo, number, q.text(15));
    if (!signers) return signers.error();
    p.signers = std::move(*signers);
    auto approvers = parse_details(repo, number, q.text(16));
    if (!approvers) return approvers.error();
    p.approvers = std::move(*approvers);
    return std::optional<queue::PullRequest>(std::move(p));
  }

  Result<std::vector<HistoryEntry>> history(const std::string& repo, std::int64_t before,
                                            std::size_t limit) override {
    std::lock_guard lock(mu_);
    auto& q = stmt(std::string(kHistorySelect) +
                   " WHERE repo = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3");
    q.bind(1, repo)
        .bind(2, before > 0 ? before : std::numeric_limits<std::int64_t>::max())
        .bind(3, clamp_limit(limit));
    return read_history(q, repo);
  }

  Result<std::vector<HistoryEntry>> pr_history(const std::string& repo, int number,
                                               std::size_t limit) override {
    std::lock_guard lock(mu_);
    auto& q = stmt(std::string(kHistorySelect) +
                   " WHERE repo = ?1 AND number = ?2 ORDER BY seq DESC LIMIT ?3");
    q.bind(1, repo).bind(2, std::int64_t{number}).bind(3, clamp_limit(limit));
    return read_history(q, repo);
  }

  Result<std::vector<EventLogEntry>> events(const std::string& repo, std::size_t limit) override {
    std::lock_guard lock(mu_);
    auto& q = stmt(
        "SELECT seq, repo, kind, json, number, at FROM ("
        "  SELECT * FROM events WHERE repo = ?1 ORDER BY seq DESC LIMIT ?2"
        ") ORDER BY seq");
    q.bind(1, repo).bind(2, clamp_limit(limit));
    return read_events(q);
  }

  Result<std::vector<EventLogEntry>> pr_events(const std::string& repo, int number,
                                               std::size_t limit) override {
    std::lock_guard lock(mu_);
    auto& q = stmt(
        "SELECT seq, repo, kind, json, number, at FROM ("
        "  SELECT * FROM events WHERE repo = ?1 AND (number = ?2 OR seq IN ("
        "    SELECT seq FROM event_prs WHERE repo = ?1 AND number = ?2))"
        "  ORDER BY seq DESC LIMIT ?3"
        ") ORDER BY seq");
    q.bind(1, repo).bind(2, std::int64_t{number}).bind(3, clamp_limit(limit));
    return read_events(q);
  }

  Result<std::vector<EventLogEntry>> pr_heads(const std::string& repo, int number,
                                              std::size_t limit) override {
    std::lock_guard lock(mu_);
    auto& q = stmt(
        "SELECT seq, repo, kind, json, number, at FROM ("
        "  SELECT * FROM events WHERE repo = ?1 AND number = ?2 AND " +
        kHeadKinds + " ORDER BY seq DESC LIMIT ?3) ORDER BY seq");
    q.bind(1, repo).bind(2, std::int64_t{number}).bind(3, clamp_limit(limit));
    return read_events(q);
  }

  Result<std::vector<EventLogEntry>> events_after(const std::string& repo, std::int64_t after,
                                                  std::size_t limit) override {
    std::lock_guard lock(mu_);
    auto& q = stmt(
        "SELECT seq, repo, kind, json, number, at FROM events"
        " WHERE repo = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3");
    q.bind(1, repo).bind(2, after).bind(3, clamp_limit(limit));
    return read_events(q);
  }

  Result<std::vector<forges::OutboxMessage>> outbox(const std::string& repo) override {
    std::lock_guard lock(mu_);
    auto& q = stmt(
        "SELECT id, number, kind, reason_code, message, head, attempts, next_at, last_error,"
        " details, created_at FROM outbox WHERE repo = ?1 ORDER BY id");
    q.bind(1, repo);
    ResetAfter reset_after(q);
    std::vector<forges::OutboxMessage> out;
    for (;;) {
      auto row = q.step();
      if (!row) return row.error();
      if (!*row) break;
      forges::OutboxMessage m;
      m.id = q.int64(0);
      m.repo = repo;
      m.notice.number = static_cast<int>(q.int64(1));
      auto kind = queue::parse_notice_kind(q.text(2));
      auto reason = queue::parse_reason(q.text(3));
      if (!kind || !reason) return corrupt(repo, "outbox message " + q.text(0) + " has bad enums");
      m.notice.kind = *kind;
      m.notice.reason = *reason;
      m.notice.message = q.text(4);
      m.notice.head = q.text(5);
      m.attempts = static_cast<int>(q.int64(6));
      m.next_at = q.int64(7);
      m.last_error = q.text(8);
      m.created_at = q.int64(10);
      auto details = parse_details(repo, m.notice.number, q.text(9));
      if (!details) return details.error();
      m.notice.details = std::move(*details);
      out.push_back(std::move(m));
    }
    return out;
  }

  Status outbox_delivered(std::int64_t id) override {
    std::lock_guard lock(mu_);
    return stmt("DELETE FROM outbox WHERE id = ?1").bind(1, id).exec();
  }

  Status outbox_retry(std::int64_t id, int attempts, queue::Millis next_at,
                      const std::string& last_error) override {
    std::lock_guard lock(mu_);
    return stmt("UPDATE outbox SET attempts = ?2, next_at = ?3, last_error = ?4 WHERE id = ?1")
        .bind(1, id)
        .bind(2, std::int64_t{attempts})
        .bind(3, next_at)
        .bind(4, last_error)
        .exec();
  }

  Result<std::vector<bool>> record_deliveries(const std::vector<DeliveryId>& ids,
                                              const std::vector<std::string>& handled) override {
    std::lock_guard lock(mu_);
    // One transaction, so one fsync (synchronous=FULL) for the whole burst and its marks.
    Transaction tx(db_.get());
    DMZ_TRY_R(tx.begun());
    std::vector<bool> fresh;
    fresh.reserve(ids.size());
    for (const auto& d : ids) {
      auto& q = stmt(
          "INSERT OR IGNORE INTO deliveries(id, at, forge, headers, body, handled)"
          " VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
      q.bind(1, d.id).bind(2, d.at).bind(3, d.forge).bind(4, d.headers);
      if (d.forge.empty())
        q.bind(5, std::nullopt).bind(6, std::int64_t{1});
      else
        q.bind_blob(5, d.body).bind(6, std::int64_t{0});
      DMZ_TRY_R(q.exec());
      fresh.push_back(sqlite3_changes(db_.get()) == 1);
    }
    DMZ_TRY_R(mark_handled(handled));
    DMZ_TRY_R(tx.commit());
    return fresh;
  }

  Status mark_deliveries_handled(const std::vector<std::string>& ids) override {
    std::lock_guard lock(mu_);
    Transaction tx(db_.get());
    DMZ_TRY(tx.begun());
    DMZ_TRY(mark_handled(ids));
    return tx.commit();
  }

  Status mark_handled(const std::vector<std::string>& ids) {  // mu_ held, in a transaction
    for (const auto& id : ids)
      DMZ_TRY(stmt("UPDATE deliveries SET handled = 1, body = NULL, headers = '{}'"
                   " WHERE id = ?1 AND handled = 0")
                  .bind(1, id)
                  .exec());
    return {};
  }

  Result<std::vector<DeliveryId>> unhandled_deliveries(std::int64_t after,
                                                       std::size_t limit) override {
    std::lock_guard lock(mu_);
    auto& q = stmt(
        "SELECT rowid, id, at, forge, headers, body FROM deliveries"
        " WHERE handled = 0 AND rowid > ?1 ORDER BY rowid LIMIT ?2");
    q.bind(1, after).bind(2, as_int64(limit));
    ResetAfter reset_after(q);
    std::vector<DeliveryId> out;
    for (;;) {
      auto row = q.step();
      if (!row) return row.error();
      if (!*row) break;
      DeliveryId d;
      d.seq = q.int64(0);
      d.id = q.text(1);
      d.at = q.int64(2);
      d.forge = q.text(3);
      d.headers = q.text(4);
      d.body = q.blob(5);
      out.push_back(std::move(d));
    }
    return out;
  }

  Result<std::size_t> prune_deliveries(queue::Millis before, std::size_t limit) override {
    std::lock_guard lock(mu_);
    DMZ_TRY_R(stmt("DELETE FROM deliveries WHERE rowid IN"
                   " (SELECT rowid FROM deliveries WHERE at < ?1 ORDER BY at LIMIT ?2)")
                  .bind(1, before)
                  .bind(2, clamp_limit(limit))
                  .exec());
    return static_cast<std::size_t>(sqlite3_changes(db_.get()));
  }

  Result<std::size_t> prune_history(queue::Millis before, std::size_t limit) override {
    std::lock_guard lock(mu_);
    Transaction tx(db_.get());
    DMZ_TRY_R(tx.begun());
    auto remove = [&](const std::string& sql) -> Result<std::size_t> {
      DMZ_TRY_R(stmt(sql).bind(1, before).bind(2, as_int64(limit)).exec());
      return static_cast<std::size_t>(sqlite3_changes(db_.get()));
    };
    // The same oldest events twice in one transaction: their timeline rows, then themselves;
    // not the heads of PRs in the hot state.
    const std::string oldest_events = " (SELECT seq FROM events WHERE at < ?1 AND NOT (" +
                                      kHeadKinds +
                                      " AND EXISTS (SELECT 1 FROM prs WHERE prs.repo = events.repo "
                                      "AND prs.number = events.number))"
                                      " ORDER BY at, seq LIMIT ?2)";
    auto timelines = remove("DELETE FROM event_prs WHERE seq IN" + oldest_events);
    if (!timelines) return timelines.error();
    auto events = remove("DELETE FROM events WHERE seq IN" + oldest_events);
    if (!events) return events.error();
    auto outcomes = remove(
        "DELETE FROM outcomes WHERE seq IN"
        " (SELECT seq FROM outcomes WHERE at < ?1 ORDER BY at, seq LIMIT ?2)");
    if (!outcomes) return outcomes.error();
    DMZ_TRY_R(tx.commit());
    return *events + *outcomes;
  }

  Result<bool> acquire_lease(const std::string& repo, const std::string& owner, queue::Millis now,
                             queue::Millis ttl) override {
    std::lock_guard lock(mu_);
    Transaction tx(db_.get());
    DMZ_TRY_R(tx.begun());
    bool held = false;
    {
      auto& q = stmt("SELECT owner, expires_at FROM leases WHERE repo = ?1");
      q.bind(1, repo);
      ResetAfter reset_after(q);
      auto row = q.step();
      if (!row) return row.error();
      held = *row && q.text(0) != owner && q.int64(1) > now;  // another live owner
    }
    if (held) return false;
    DMZ_TRY_R(stmt("INSERT OR REPLACE INTO leases(repo, owner, expires_at) VALUES(?1, ?2, ?3)")
                  .bind(1, repo)
                  .bind(2, owner)
                  .bind(3, now + ttl)
                  .exec());
    DMZ_TRY_R(tx.commit());
    return true;
  }

  Status release_lease(const std::string& repo, const std::string& owner) override {
    std::lock_guard lock(mu_);
    return stmt("DELETE FROM leases WHERE repo = ?1 AND owner = ?2")
        .bind(1, repo)
        .bind(2, owner)
        .exec();
  }

  Result<std::int64_t> record_promotion(const PromotionRecord& r) override {
    std::lock_guard lock(mu_);
    DMZ_TRY_R(stmt("INSERT INTO promotions(repo, tag, tag_object, kind, target, commit_sha,"
                   " from_sha, signers, reasons, promoted, source, hotfix_branch, at)"
                   " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)")
                  .bind(1, r.repo)
                  .bind(2, r.tag)
                  .bind(3, r.tag_object)
                  .bind(4, r.kind)
                  .bind(5, r.target)
                  .bind(6, r.commit)
                  .bind(7, r.from)
                  .bind(8, details_json(r.signers))
                  .bind(9, details_json(r.reasons))
                  .bind(10, std::int64_t{r.promoted ? 1 : 0})
                  .bind(11, r.source)
                  .bind(12, r.hotfix_branch)
                  .bind(13, r.at)
                  .exec());
    return sqlite3_last_insert_rowid(db_.get());
  }

  Result<std::vector<PromotionRecord>> promotions(const std::string& repo,
                                                  std::size_t limit) override {
    std::lock_guard lock(mu_);
    auto& q = stmt(std::string(kPromotionSelect) + " WHERE repo = ?1 ORDER BY seq DESC LIMIT ?2");
    q.bind(1, repo).bind(2, clamp_limit(limit));
    return read_promotions(q, repo);
  }

  Result<std::optional<PromotionRecord>> last_promotion(const std::string& repo,
                                                        const std::string& target) override {
    std::lock_guard lock(mu_);
    auto& q = stmt(std::string(kPromotionSelect) +
                   " WHERE repo = ?1 AND target = ?2 AND promoted = 1 ORDER BY seq DESC LIMIT 1");
    q.bind(1, repo).bind(2, target);
    auto rows = read_promotions(q, repo);
    if (!rows) return rows.error();
    if (rows->empty()) return std::optional<PromotionRecord>();
    return std::optional<PromotionRecord>(std::move(rows->front()));
  }

  Result<std::vector<std::pair<std::string, std::string>>> judged_tags(
      const std::string& repo) override {
    std::lock_guard lock(mu_);
    auto& q = stmt("SELECT DISTINCT tag, tag_object FROM promotions WHERE repo = ?1");
    q.bind(1, repo);
    ResetAfter reset_after(q);
    std::vector<std::pair<std::string, std::string>> out;
    for (;;) {
      auto row = q.step();
      if (!row) return row.error();
      if (!*row) break;
      out.emplace_back(q.text(0), q.text(1));
    }
    return out;
  }

 private:
  static constexpr const char* kPromotionSelect =
      "SELECT seq, tag, tag_object, kind, target, commit_sha, from_sha, signers, reasons,"
      " promoted, source, hotfix_branch, at FROM promotions";

  Result<std::vector<PromotionRecord>> read_promotions(Stmt& q, const std::string& repo) {
    std::vector<PromotionRecord> out;
    ResetAfter reset_after(q);
    for (;;) {
      auto row = q.step();
      if (!row) return row.error();
      if (!*row) break;
      PromotionRecord r;
      r.seq = q.int64(0);
      r.repo = repo;
      r.tag = q.text(1);
      r.tag_object = q.text(2);
      r.kind = q.text(3);
      r.target = q.text(4);
      r.commit = q.text(5);
      r.from = q.text(6);
      auto signers = parse_details(repo, 0, q.text(7));
      auto reasons = parse_details(repo, 0, q.text(8));
      if (!signers || !reasons)
        return corrupt(repo, "promotion record " + std::to_string(r.seq) +
                                 " has signers or reasons that are not a JSON array of strings");
      r.signers = std::move(*signers);
      r.reasons = std::move(*reasons);
      r.promoted = q.int64(9) != 0;
      r.source = q.text(10);
      r.hotfix_branch = q.text(11);
      r.at = q.int64(12);
      out.push_back(std::move(r));
    }
    return out;
  }

  static constexpr const char* kHistorySelect =
      "SELECT seq, number, status, reason_code, message, details, branch, author, title, head,"
      " approver, approved_at, at FROM outcomes";

  // A prepared statement for `sql`, reset and ready to bind; prepared on first use. One that
  // does not prepare (the database busy, out of memory or failing to read its schema; or our
  // SQL wrong) reports why at its step(), as unavailable or internal, and is prepared again at
  // its next use.
  Stmt& stmt(const std::string& sql) {
    auto it = stmts_.find(sql);
    if (it != stmts_.end() && !it->second.prepared()) {
      stmts_.erase(it);
      it = stmts_.end();
    }
    if (it == stmts_.end()) {
      auto s = Stmt::prepare(db_.get(), sql);
      it = stmts_.emplace(sql, s ? std::move(*s) : Stmt::failed(db_.get(), s.error())).first;
    }
    it->second.reset();
    return it->second;
  }

  // Bumps the repository's version from `expected` (0: the repository is new).
  Result<std::uint64_t> write_header(const queue::RepoState& st, std::uint64_t expected) {
    if (expected == 0) {
      // Another writer may have saved this repository first: that is a conflict, not a bug.
      bool taken = false;
      {
        auto& exists = stmt("SELECT 1 FROM repos WHERE name = ?1");
        exists.bind(1, st.repo);
        ResetAfter reset_after(exists);
        auto row = exists.step();
        if (!row) return row.error();
        taken = *row;
      }
      if (taken) return conflict("store: " + st.repo + " was saved by another writer");
      DMZ_TRY_R(stmt("INSERT INTO repos(name, master, next_candidate, retry_after, version,"
                     " train_window, observed, policy_epoch, trust_root)"
                     " VALUES(?1, ?2, ?3, ?4, 1, ?5, ?6, ?7, ?8)")
                    .bind(1, st.repo)
                    .bind(2, st.master)
                    .bind(3, as_int64(st.next_candidate))
                    .bind(4, st.retry_after)
                    .bind(5, static_cast<std::int64_t>(st.window))
                    .bind(6, observed_json(st.observed))
                    .bind(7, as_int64(st.policy_epoch))
                    .bind(8, st.trust_root)
                    .exec()
                    .prefixed("store: " + st.repo + " was saved by another writer: "));
      return std::uint64_t{1};
    }
    DMZ_TRY_R(stmt("UPDATE repos SET master = ?2, next_candidate = ?3, retry_after = ?4,"
                   " version = version + 1, train_window = ?6, observed = ?7, policy_epoch = ?8,"
                   " trust_root = ?9"
                   " WHERE name = ?1 AND version = ?5")
                  .bind(1, st.repo)
                  .bind(2, st.master)
                  .bind(3, as_int64(st.next_candidate))
                  .bind(4, st.retry_after)
                  .bind(5, as_int64(expected))
                  .bind(6, static_cast<std::int64_t>(st.window))
                  .bind(7, observed_json(st.observed))
                  .bind(8, as_int64(st.policy_epoch))
                  .bind(9, st.trust_root)
                  .exec());
    if (sqlite3_changes(db_.get()) != 1)
      return conflict("store: " + st.repo + " is not at version " + std::to_string(expected) +
                      ": another process wrote it");
    return expected + 1;
  }

  Status delete_pr(const std::string& repo, int number) {
    DMZ_TRY(stmt("DELETE FROM approvals WHERE repo = ?1 AND number = ?2")
                .bind(1, repo)
                .bind(2, std::int64_t{number})
                .exec());
    return stmt("DELETE FROM prs WHERE repo = ?1 AND number = ?2")
        .bind(1, repo)
        .bind(2, std::int64_t{number})
        .exec();
  }

  Status write_pr(const std::string& repo, const queue::PullRequest& p) {
    auto& pr = stmt(
        "INSERT OR REPLACE INTO prs(repo, number, branch, author, title, head, status, reason,"
        " details, queued_at, candidate, reason_code, finished_at, priority, paths, precheck,"
        " held_by, bisect_group, probed, failures, signers, approvers, merge_errors,"
        " probed_with, untested, judged_epoch, judged_tag)"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,"
        " ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27)");
    pr.bind(1, repo)
        .bind(2, std::int64_t{p.number})
        .bind(3, p.branch)
        .bind(4, p.author)
        .bind(5, p.title)
        .bind(6, p.head)
        .bind(7, queue::to_string(p.status))
        .bind(8, p.reason)
        .bind(9, details_json(p.details))
        .bind(10, p.queued_at)
        .bind(12, queue::to_string(p.reason_code))
        .bind(13, p.finished_at)
        .bind(14, std::int64_t{p.priority})
        .bind(15, details_json(p.paths))
        .bind(16, queue::to_string(p.precheck))
        .bind(18, as_int64(p.group))
        .bind(19, std::int64_t{p.probed ? 1 : 0})
        .bind(20, std::int64_t{p.failures})
        .bind(21, details_json(p.signers))
        .bind(22, details_json(p.approvers))
        .bind(23, std::int64_t{p.merge_errors})
        .bind(24, json_text(nlohmann::json(p.probed_with)))
        .bind(25, std::int64_t{p.untested})
        .bind(26, as_int64(p.judged_epoch))
        .bind(27, p.judged_tag);
    if (p.held_by)
      pr.bind(17, as_int64(*p.held_by));
    else
      pr.bind(17, std::nullopt);
    if (p.candidate)
      pr.bind(11, as_int64(*p.candidate));
    else
      pr.bind(11, std::nullopt);
    DMZ_TRY(pr.exec());
    DMZ_TRY(stmt("DELETE FROM approvals WHERE repo = ?1 AND number = ?2")
                .bind(1, repo)
                .bind(2, std::int64_t{p.number})
                .exec());
    if (p.approval)
      DMZ_TRY(stmt("INSERT INTO approvals(repo, number, sha, approver, at)"
                   " VALUES(?1, ?2, ?3, ?4, ?5)")
                  .bind(1, repo)
                  .bind(2, std::int64_t{p.number})
                  .bind(3, p.approval->sha)
                  .bind(4, p.approval->approver)
                  .bind(5, p.approval->at)
                  .exec());
    // A PR that came back from the archive lives in one place only.
    return stmt("DELETE FROM pr_archive WHERE repo = ?1 AND number = ?2")
        .bind(1, repo)
        .bind(2, std::int64_t{p.number})
        .exec();
  }

  Status write_archive(const std::string& repo, const queue::PullRequest& p) {
    auto& q = stmt(
        "INSERT OR REPLACE INTO pr_archive(repo, number, branch, author, title, head, status,"
        " reason_code, reason, details, queued_at, finished_at, approval_sha, approver,"
        " approved_at, priority, signers, approvers) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,"
        " ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)");
    q.bind(1, repo)
        .bind(2, std::int64_t{p.number})
        .bind(3, p.branch)
        .bind(4, p.author)
        .bind(5, p.title)
        .bind(6, p.head)
        .bind(7, queue::to_string(p.status))
        .bind(8, queue::to_string(p.reason_code))
        .bind(9, p.reason)
        .bind(10, details_json(p.details))
        .bind(11, p.queued_at)
        .bind(12, p.finished_at)
        .bind(16, std::int64_t{p.priority})
        .bind(17, details_json(p.signers))
        .bind(18, details_json(p.approvers));
    if (p.approval)
      q.bind(13, p.approval->sha).bind(14, p.approval->approver).bind(15, p.approval->at);
    else
      q.bind(13, std::nullopt).bind(14, std::nullopt).bind(15, std::nullopt);
    return q.exec();
  }

  // The train is short (a window of candidates): rewritten whole when any of it changed.
  Status write_train(const queue::RepoState& st) {
    for (const char* table : {"checks", "candidate_prs", "candidates"})
      DMZ_TRY(
          stmt(std::string("DELETE FROM ") + table + " WHERE repo = ?1").bind(1, st.repo).exec());
    for (std::size_t pos = 0; pos < st.train.size(); ++pos) {
      const auto& c = st.train[pos];
      DMZ_TRY(stmt("INSERT INTO candidates(repo, id, position, base, sha, status, created_at,"
                   " pushed_at, policy_passed, lane, probe, attempt, failed, paused_ms, with_prs)"
                   " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)")
                  .bind(1, st.repo)
                  .bind(2, as_int64(c.id))
                  .bind(3, static_cast<std::int64_t>(pos))
                  .bind(4, c.base)
                  .bind(5, c.sha)
                  .bind(6, queue::to_string(c.status))
                  .bind(7, c.created_at)
                  .bind(8, c.pushed_at)
                  .bind(9, static_cast<std::int64_t>(c.policy_passed ? 1 : 0))
                  .bind(10, as_int64(c.lane))
                  .bind(11, static_cast<std::int64_t>(c.probe ? 1 : 0))
                  .bind(12, std::int64_t{c.attempt})
                  .bind(13, static_cast<std::int64_t>(c.failed ? 1 : 0))
                  .bind(14, c.paused_ms)
                  .bind(15, json_text(nlohmann::json(c.with)))
                  .exec());
      for (std::size_t i = 0; i < c.prs.size(); ++i)
        DMZ_TRY(stmt("INSERT INTO candidate_prs(repo, candidate, position, number)"
                     " VALUES(?1, ?2, ?3, ?4)")
                    .bind(1, st.repo)
                    .bind(2, as_int64(c.id))
                    .bind(3, static_cast<std::int64_t>(i))
                    .bind(4, std::int64_t{c.prs[i]})
                    .exec());
      for (const auto& [context, k] : c.checks)
        DMZ_TRY(stmt("INSERT INTO checks(repo, candidate, context, state, description, url, at)"
                     " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                    .bind(1, st.repo)
                    .bind(2, as_int64(c.id))
                    .bind(3, context)
                    .bind(4, queue::to_string(k.state))
                    .bind(5, k.description)
                    .bind(6, k.url)
                    .bind(7, k.at)
                    .exec());
    }
    return {};
  }

  Status write_outcome(const HistoryEntry& h) {
    return stmt(
               "INSERT INTO outcomes(repo, number, status, reason_code, message, details,"
               " branch, author, title, head, approver, approved_at, at)"
               " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)")
        .bind(1, h.repo)
        .bind(2, std::int64_t{h.number})
        .bind(3, queue::to_string(h.status))
        .bind(4, queue::to_string(h.reason))
        .bind(5, h.message)
        .bind(6, details_json(h.details))
        .bind(7, h.branch)
        .bind(8, h.author)
        .bind(9, h.title)
        .bind(10, h.head)
        .bind(11, h.approver)
        .bind(12, h.approved_at)
        .bind(13, h.at)
        .exec();
  }

  Status write_event(const EventLogEntry& e) {
    auto& q = stmt("INSERT INTO events(repo, kind, json, number, at) VALUES(?1, ?2, ?3, ?4, ?5)");
    q.bind(1, e.repo).bind(2, e.kind).bind(3, e.json).bind(5, e.at);
    if (e.number)
      q.bind(4, std::int64_t{*e.number});
    else
      q.bind(4, std::nullopt);
    DMZ_TRY(q.exec());
    if (e.also.empty()) return {};
    const auto seq = static_cast<std::int64_t>(sqlite3_last_insert_rowid(db_.get()));
    for (int n : e.also)
      DMZ_TRY(stmt("INSERT OR IGNORE INTO event_prs(repo, number, seq) VALUES(?1, ?2, ?3)")
                  .bind(1, e.repo)
                  .bind(2, std::int64_t{n})
                  .bind(3, seq)
                  .exec());
    return {};
  }

  Result<std::int64_t> write_outbox(const std::string& repo, const queue::Notify& n,
                                    queue::Millis at) {
    DMZ_TRY_R(stmt("INSERT INTO outbox(repo, number, kind, reason_code, message, head, attempts,"
                   " next_at, created_at, last_error, details)"
                   " VALUES(?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?7, '', ?8)")
                  .bind(1, repo)
                  .bind(2, std::int64_t{n.number})
                  .bind(3, queue::to_string(n.kind))
                  .bind(4, queue::to_string(n.reason))
                  .bind(5, n.message)
                  .bind(6, n.head)
                  .bind(7, at)
                  .bind(8, details_json(n.details))
                  .exec());
    return static_cast<std::int64_t>(sqlite3_last_insert_rowid(db_.get()));
  }

  Result<std::vector<HistoryEntry>> read_history(Stmt& q, const std::string& repo) {
    ResetAfter reset_after(q);
    std::vector<HistoryEntry> out;
    for (;;) {
      auto row = q.step();
      if (!row) return row.error();
      if (!*row) break;
      HistoryEntry h;
      h.seq = q.int64(0);
      h.repo = repo;
      h.number = static_cast<int>(q.int64(1));
      auto status = parse_enum(q.text(2), kPrStatuses);
      auto reason = queue::parse_reason(q.text(3));
      if (!status || !reason)
        return corrupt(repo, "outcome " + q.text(0) + " has an unknown status or reason");
      h.status = *status;
      h.reason = *reason;
      h.message = q.text(4);
      auto details = parse_details(repo, h.number, q.text(5));
      if (!details) return details.error();
      h.details = std::move(*details);
      h.branch = q.text(6);
      h.author = q.text(7);
      h.title = q.text(8);
      h.head = q.text(9);
      h.approver = q.text(10);
      h.approved_at = q.int64(11);
      h.at = q.int64(12);
      out.push_back(std::move(h));
    }
    return out;
  }

  static Result<std::vector<EventLogEntry>> read_events(Stmt& q) {
    ResetAfter reset_after(q);
    std::vector<EventLogEntry> out;
    for (;;) {
      auto row = q.step();
      if (!row) return row.error();
      if (!*row) break;
      EventLogEntry e{q.int64(0), q.text(1), q.text(2), q.text(3), std::nullopt, q.int64(5)};
      if (!q.is_null(4)) e.number = static_cast<int>(q.int64(4));
      out.push_back(std::move(e));
    }
    return out;
  }

  Result<std::optional<Loaded>> read_state(const std::string& name) {
    Loaded loaded;
    queue::RepoState& st = loaded.state;
    {
      auto& q = stmt(
          "SELECT master, next_candidate, retry_after, version, train_window, observed,"
          " policy_epoch, trust_root FROM repos WHERE name = ?1");
      q.bind(1, name);
      ResetAfter reset_after(q);
      auto row = q.step();
      if (!row) return row.error();
      if (!*row) return std::optional<Loaded>();
      st.repo = name;
      st.master = q.text(0);
      st.next_candidate = as_uint64(q.int64(1));
      st.retry_after = q.int64(2);
      loaded.version = as_uint64(q.int64(3));
      st.window = static_cast<std::size_t>(q.int64(4));
      st.policy_epoch = as_uint64(q.int64(6));
      st.trust_root = q.text(7);
      auto observed = parse_observed(name, q.text(5));
      if (!observed) return observed.error();
      st.observed = std::move(*observed);
    }
    {
      auto& q = stmt(
          "SELECT number, branch, author, title, head, status, reason, details, queued_at,"
          " candidate, reason_code, finished_at, priority, paths, precheck, held_by,"
          " bisect_group, probed, failures, signers, approvers, merge_errors, probed_with,"
          " untested, judged_epoch, judged_tag FROM prs"
          " WHERE repo = ?1"
          " ORDER BY number");
      q.bind(1, name);
      ResetAfter reset_after(q);
      for (;;) {
        auto row = q.step();
        if (!row) return row.error();
        if (!*row) break;
        queue::PullRequest p;
        p.number = static_cast<int>(q.int64(0));
        p.branch = q.text(1);
        p.author = q.text(2);
        p.title = q.text(3);
        p.head = q.text(4);
        auto status = parse_enum(q.text(5), kPrStatuses);
        if (!status)
          return corrupt(
              name, "PR #" + std::to_string(p.number) + " has unknown status '" + q.text(5) + "'");
        p.status = *status;
        p.reason = q.text(6);
        auto details = parse_details(name, p.number, q.text(7));
        if (!details) return details.error();
        p.details = std::move(*details);
        p.queued_at = q.int64(8);
        if (!q.is_null(9)) p.candidate = as_uint64(q.int64(9));
        auto reason = queue::parse_reason(q.text(10));
        if (!reason)
          return corrupt(name, "PR #" + std::to_string(p.number) + " has unknown reason code '" +
                                   q.text(10) + "'");
        p.reason_code = *reason;
        p.finished_at = q.int64(11);
        p.priority = static_cast<int>(q.int64(12));
        auto paths = parse_details(name, p.number, q.text(13));
        if (!paths) return paths.error();
        p.paths = std::move(*paths);
        auto precheck = parse_enum(q.text(14), kCheckStates);
        if (!precheck)
          return corrupt(name, "PR #" + std::to_string(p.number) + " has unknown precheck '" +
                                   q.text(14) + "'");
        p.precheck = *precheck;
        if (!q.is_null(15)) p.held_by = as_uint64(q.int64(15));
        p.group = as_uint64(q.int64(16));
        p.probed = q.int64(17) != 0;
        p.failures = static_cast<int>(q.int64(18));
        auto signers = parse_details(name, p.number, q.text(19));
        if (!signers) return signers.error();
        p.signers = std::move(*signers);
        auto approvers = parse_details(name, p.number, q.text(20));
        if (!approvers) return approvers.error();
        p.approvers = std::move(*approvers);
        p.merge_errors = static_cast<int>(q.int64(21));
        auto probed_with = parse_numbers(name, p.number, q.text(22));
        if (!probed_with) return probed_with.error();
        p.probed_with = std::move(*probed_with);
        p.untested = static_cast<int>(q.int64(23));
        p.judged_epoch = as_uint64(q.int64(24));
        p.judged_tag = q.text(25);
        st.prs.emplace(p.number, std::move(p));
      }
    }
    {
      auto& q = stmt("SELECT number, sha, approver, at FROM approvals WHERE repo = ?1");
      q.bind(1, name);
      ResetAfter reset_after(q);
      for (;;) {
        auto row = q.step();
        if (!row) return row.error();
        if (!*row) break;
        int number = static_cast<int>(q.int64(0));
        auto it = st.prs.find(number);
        if (it == st.prs.end())
          return corrupt(name, "approval for unknown PR #" + std::to_string(number));
        it->second.approval = queue::Approval{q.text(1), q.text(2), q.int64(3)};
      }
    }
    {
      auto& q = stmt(
          "SELECT id, base, sha, status, created_at, pushed_at, policy_passed, lane, probe,"
          " attempt, failed, paused_ms, with_prs FROM candidates"
          " WHERE repo = ?1 ORDER BY position");
      q.bind(1, name);
      ResetAfter reset_after(q);
      for (;;) {
        auto row = q.step();
        if (!row) return row.error();
        if (!*row) break;
        queue::Candidate c;
        c.id = as_uint64(q.int64(0));
        c.base = q.text(1);
        c.sha = q.text(2);
        auto status = parse_enum(q.text(3), kCandidateStatuses);
        if (!status)
          return corrupt(name, "candidate " + std::to_string(c.id) + " has unknown status '" +
                                   q.text(3) + "'");
        c.status = *status;
        c.created_at = q.int64(4);
        c.pushed_at = q.int64(5);
        c.policy_passed = q.int64(6) != 0;
        c.lane = as_uint64(q.int64(7));
        c.probe = q.int64(8) != 0;
        c.attempt = static_cast<int>(q.int64(9));
        c.failed = q.int64(10) != 0;
        c.paused_ms = q.int64(11);
        auto with = parse_array<int>(name, "candidate " + std::to_string(c.id) + " ", q.text(12),
                                     "with_prs is not a JSON array", "with_prs holds a non-number");
        if (!with) return with.error();
        c.with = std::move(*with);
        st.train.push_back(std::move(c));
      }
    }
    auto find_candidate = [&](std::uint64_t id) -> queue::Candidate* {
      for (auto& c : st.train)
        if (c.id == id) return &c;
      return nullptr;
    };
    {
      auto& q = stmt(
          "SELECT candidate, number FROM candidate_prs WHERE repo = ?1"
          " ORDER BY candidate, position");
      q.bind(1, name);
      ResetAfter reset_after(q);
      for (;;) {
        auto row = q.step();
        if (!row) return row.error();
        if (!*row) break;
        auto* c = find_candidate(as_uint64(q.int64(0)));
        if (!c) return corrupt(name, "PR of unknown candidate " + q.text(0));
        c->prs.push_back(static_cast<int>(q.int64(1)));
      }
    }
    {
      auto& q = stmt(
          "SELECT candidate, context, state, description, url, at FROM checks WHERE repo = ?1");
      q.bind(1, name);
      ResetAfter reset_after(q);
      for (;;) {
        auto row = q.step();
        if (!row) return row.error();
        if (!*row) break;
        auto* c = find_candidate(as_uint64(q.int64(0)));
        if (!c) return corrupt(name, "check of unknown candidate " + q.text(0));
        queue::Check k;
        k.context = q.text(1);
        auto state = parse_enum(q.text(2), kCheckStates);
        if (!state)
          return corrupt(name, "check " + k.context + " has unknown state '" + q.text(2) + "'");
        k.state = *state;
        k.description = q.text(3);
        k.url = q.text(4);
        k.at = q.int64(5);
        c->checks.emplace(k.context, std::move(k));
      }
    }
    return std::optional<Loaded>(std::move(loaded));
  }

  std::mutex mu_;
  Db db_;
  std::map<std::string, Stmt> stmts_;  // prepared once, reused (destroyed before db_ closes)
};

Status migrate(sqlite3* db) {
  Transaction tx(db);
  DMZ_TRY(tx.begun());
  DMZ_TRY(exec_script(db, "CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)"));
  std::int64_t version = 0;
  bool has_row = false;
  {
    auto q = Stmt::prepare(db, "SELECT version FROM schema_version");
    if (!q) return q.status();
    auto row = q->step();
    if (!row) return row.status();
    if (*row) {
      has_row = true;
      version = q->int64(0);
    }
  }
  const auto latest = static_cast<std::int64_t>(kMigrations.size());
  if (version > latest)
    return error("store: database schema version " + std::to_string(version) +
                 " is newer than this dmzbot understands (" + std::to_string(latest) + ")");
  if (version == latest && has_row) return tx.commit();
  for (auto v = version; v < latest; ++v) {
    Status s = exec_script(db, std::string(kMigrations[static_cast<std::size_t>(v)]));
    if (!s.ok())
      return error("store: migration to schema version " + std::to_string(v + 1) +
                   " failed: " + s.message());
  }
  auto upd = Stmt::prepare(db, has_row ? "UPDATE schema_version SET version = ?1"
                                       : "INSERT INTO schema_version(version) VALUES(?1)");
  if (!upd) return upd.status();
  DMZ_TRY(upd->bind(1, latest).exec());
  return tx.commit();
}

}  // namespace

Result<std::unique_ptr<Store>> open_sqlite_store(const std::filesystem::path& file,
                                                 SqliteOptions options) {
  if (file.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(file.parent_path(), ec);
    if (ec)
      return error("store: cannot create " + file.parent_path().string() + ": " + ec.message());
  }
  // The database holds who approved what in private repositories: only dmzbot's user may
  // read it. SQLite gives its -wal and -shm files the main file's mode.
  if (int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600); fd >= 0) {
    ::fchmod(fd, 0600);  // an older database made under a looser umask
    ::close(fd);
  }
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(file.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  Db db(raw);  // sqlite3_open_v2 allocates a handle even on failure: close it in every case
  if (rc != SQLITE_OK)
    return error("store: cannot open " + file.string() + ": " +
                 (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  sqlite3_extended_result_codes(raw, 1);
  if (sqlite3_busy_timeout(raw, options.busy_timeout_ms) != SQLITE_OK)
    return sql_error(raw, "busy_timeout");

  // journal_mode answers with the mode in effect; anything but "wal" (e.g. on a file system
  // without shared memory) is an error rather than a silent downgrade.
  {
    auto q = Stmt::prepare(raw, "PRAGMA journal_mode=WAL");
    if (!q) return error("store: " + file.string() + ": " + q.message());
    auto row = q->step();
    if (!row) return error("store: " + file.string() + ": " + row.message());
    if (!*row || q->text(0) != "wal")
      return error("store: " + file.string() + ": cannot enable WAL journal mode (got '" +
                   (*row ? q->text(0) : std::string()) + "')");
  }
  // A 32 MiB page cache keeps the indexes of a long history (events, outcomes, the archive)
  // in memory, so that an event's cost does not grow with it (driver_bench).
  if (Status s = exec_script(
          raw, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA cache_size=-32768;");
      !s.ok())
    return error("store: " + file.string() + ": " + s.message());
  if (Status s = migrate(raw); !s.ok()) return s.prefixed(file.string() + ": ").error();
  if (options.max_pages > 0)
    if (Status s = exec_script(raw, "PRAGMA max_page_count=" + std::to_string(options.max_pages));
        !s.ok())
      return s.prefixed("store: " + file.string() + ": ").error();
  return std::unique_ptr<Store>(std::make_unique<SqliteStore>(std::move(db)));
}

}  // namespace dmz

// The SQLite store: one database file in WAL mode holding every repository's RepoState in
// normalized tables (so an operator can query them with the sqlite3 shell), an append-only
// event log and the webhook delivery ids.
//
// Durability: synchronous=FULL, because the engine writes its state *before* the side effects
// that depend on it; a committed save must survive a power loss, not only a crash.
// Atomicity: save() is one BEGIN IMMEDIATE transaction that deletes the repository's rows,
// rewrites them and appends the event; any error rolls the whole thing back.
// Enums are stored as their queue::to_string names and parsed back strictly: an unknown name
// is reported as a corrupt store, never guessed.
// Threading: one connection, every call under one mutex.
#include <sqlite3.h>

#include <array>
#include <chrono>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string_view>
#include <system_error>

#include "bot/store/store.hpp"

namespace dmz {
namespace {

using queue::CandidateStatus;
using queue::CheckState;
using queue::PrStatus;

// ---- Schema ----------------------------------------------------------------------------------
// Migrations in order; migration i (0-based) takes the schema from version i to i+1. Never edit
// one that has shipped: append a new one.
constexpr std::array<std::string_view, 2> kMigrations = {
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
};

// ---- RAII over the C API ---------------------------------------------------------------------

struct DbClose {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using Db = std::unique_ptr<sqlite3, DbClose>;

Error sql_error(sqlite3* db, std::string_view what) {
  return unavailable("sqlite: " + std::string(what) + ": " + sqlite3_errmsg(db));
}

// One prepared statement. Bind errors are remembered and reported by the next step().
class Stmt {
 public:
  static Result<Stmt> prepare(sqlite3* db, std::string_view sql) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), 0, &s, nullptr) !=
        SQLITE_OK)
      return sql_error(db, "prepare '" + std::string(sql.substr(0, 60)) + "'");
    return Stmt(db, s);
  }
  Stmt(Stmt&& o) noexcept : db_(o.db_), s_(std::exchange(o.s_, nullptr)), bind_rc_(o.bind_rc_) {}
  Stmt& operator=(Stmt&&) = delete;
  Stmt(const Stmt&) = delete;
  ~Stmt() { sqlite3_finalize(s_); }

  Stmt& bind(int i, std::string_view v) {
    return check(sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
  }
  Stmt& bind(int i, std::int64_t v) { return check(sqlite3_bind_int64(s_, i, v)); }
  Stmt& bind(int i, std::nullopt_t) { return check(sqlite3_bind_null(s_, i)); }

  // true: a row is available; false: done.
  Result<bool> step() {
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

 private:
  Stmt(sqlite3* db, sqlite3_stmt* s) : db_(db), s_(s) {}
  Stmt& check(int rc) {
    if (bind_rc_ == SQLITE_OK && rc != SQLITE_OK) bind_rc_ = rc;
    return *this;
  }
  Error error_from(int rc, std::string_view what) const {
    (void)rc;
    const char* sql = sqlite3_sql(s_);
    std::string head = sql ? std::string(sql).substr(0, 60) : "";
    return sql_error(db_, std::string(what) + " '" + head + "'");
  }

  sqlite3* db_;
  sqlite3_stmt* s_;
  int bind_rc_ = SQLITE_OK;
};

Status exec_script(sqlite3* db, const std::string& sql) {
  char* msg = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg) != SQLITE_OK) {
    std::string m = msg ? msg : sqlite3_errmsg(db);
    sqlite3_free(msg);
    return unavailable("sqlite: " + m);
  }
  return {};
}

// BEGIN IMMEDIATE on construction (check ok()), ROLLBACK on destruction unless committed.
class Transaction {
 public:
  explicit Transaction(sqlite3* db) : db_(db) { begun_ = exec_script(db_, "BEGIN IMMEDIATE"); }
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
  return error("store: corrupt state for " + repo + ": " + what);
}

std::int64_t as_int64(std::uint64_t v) { return static_cast<std::int64_t>(v); }
std::uint64_t as_uint64(std::int64_t v) { return static_cast<std::uint64_t>(v); }

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

  Status save(const queue::RepoState& st, const std::string& event_kind,
              const std::string& event_json, queue::Millis at) override {
    std::lock_guard lock(mu_);
    sqlite3* db = db_.get();
    Transaction tx(db);
    DMZ_TRY(tx.begun());
    DMZ_TRY(write_state(st));
    auto ev = Stmt::prepare(db, "INSERT INTO events(repo, kind, json, at) VALUES(?1, ?2, ?3, ?4)");
    if (!ev) return ev.status();
    DMZ_TRY(ev->bind(1, st.repo).bind(2, event_kind).bind(3, event_json).bind(4, at).exec());
    return tx.commit();
  }

  Result<std::optional<queue::RepoState>> load(const std::string& repo) override {
    std::lock_guard lock(mu_);
    // A read transaction so that the rows of all tables come from one snapshot.
    DMZ_TRY_R(exec_script(db_.get(), "BEGIN"));
    auto r = read_state(repo);
    (void)exec_script(db_.get(), r.ok() ? "COMMIT" : "ROLLBACK");  // read-only: nothing to lose
    return r;
  }

  Result<std::vector<EventLogEntry>> events(const std::string& repo, std::size_t limit) override {
    std::lock_guard lock(mu_);
    auto q = Stmt::prepare(db_.get(),
                           "SELECT seq, repo, kind, json, at FROM ("
                           "  SELECT * FROM events WHERE repo = ?1 ORDER BY seq DESC LIMIT ?2"
                           ") ORDER BY seq");
    if (!q) return q.error();
    constexpr auto max = static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max());
    q->bind(1, repo).bind(2, static_cast<std::int64_t>(std::min(limit, max)));
    std::vector<EventLogEntry> out;
    for (;;) {
      auto row = q->step();
      if (!row) return row.error();
      if (!*row) break;
      out.push_back({q->int64(0), q->text(1), q->text(2), q->text(3), q->int64(4)});
    }
    return out;
  }

  Result<bool> record_delivery(const std::string& delivery_id) override {
    std::lock_guard lock(mu_);
    auto q = Stmt::prepare(db_.get(), "INSERT OR IGNORE INTO deliveries(id, at) VALUES(?1, ?2)");
    if (!q) return q.error();
    auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
    DMZ_TRY_R(q->bind(1, delivery_id).bind(2, static_cast<std::int64_t>(now)).exec());
    return sqlite3_changes(db_.get()) == 1;
  }

 private:
  Status write_state(const queue::RepoState& st) {
    sqlite3* db = db_.get();
    // Children first, so that the result does not depend on ON DELETE CASCADE.
    for (const char* table : {"checks", "candidate_prs", "candidates", "approvals", "prs"}) {
      auto del = Stmt::prepare(db, std::string("DELETE FROM ") + table + " WHERE repo = ?1");
      if (!del) return del.status();
      DMZ_TRY(del->bind(1, st.repo).exec());
    }
    {
      auto del = Stmt::prepare(db, "DELETE FROM repos WHERE name = ?1");
      if (!del) return del.status();
      DMZ_TRY(del->bind(1, st.repo).exec());
    }
    auto repo = Stmt::prepare(
        db, "INSERT INTO repos(name, master, next_candidate, retry_after) VALUES(?1, ?2, ?3, ?4)");
    if (!repo) return repo.status();
    DMZ_TRY(repo->bind(1, st.repo)
                .bind(2, st.master)
                .bind(3, as_int64(st.next_candidate))
                .bind(4, st.retry_after)
                .exec());

    auto pr = Stmt::prepare(db,
                            "INSERT INTO prs(repo, number, branch, author, title, head, status,"
                            " reason, details, queued_at, candidate)"
                            " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)");
    if (!pr) return pr.status();
    auto ap = Stmt::prepare(db,
                            "INSERT INTO approvals(repo, number, sha, approver, at)"
                            " VALUES(?1, ?2, ?3, ?4, ?5)");
    if (!ap) return ap.status();
    for (const auto& [number, p] : st.prs) {
      pr->reset();
      pr->bind(1, st.repo)
          .bind(2, std::int64_t{number})
          .bind(3, p.branch)
          .bind(4, p.author)
          .bind(5, p.title)
          .bind(6, p.head)
          .bind(7, queue::to_string(p.status))
          .bind(8, p.reason)
          .bind(9, nlohmann::json(p.details).dump())
          .bind(10, p.queued_at);
      if (p.candidate)
        pr->bind(11, as_int64(*p.candidate));
      else
        pr->bind(11, std::nullopt);
      DMZ_TRY(pr->exec());
      if (p.approval) {
        ap->reset();
        DMZ_TRY(ap->bind(1, st.repo)
                    .bind(2, std::int64_t{number})
                    .bind(3, p.approval->sha)
                    .bind(4, p.approval->approver)
                    .bind(5, p.approval->at)
                    .exec());
      }
    }

    auto cand = Stmt::prepare(db,
                              "INSERT INTO candidates(repo, id, position, base, sha, status,"
                              " created_at, pushed_at, policy_passed)"
                              " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
    if (!cand) return cand.status();
    auto cpr = Stmt::prepare(db,
                             "INSERT INTO candidate_prs(repo, candidate, position, number)"
                             " VALUES(?1, ?2, ?3, ?4)");
    if (!cpr) return cpr.status();
    auto chk = Stmt::prepare(db,
                             "INSERT INTO checks(repo, candidate, context, state, description,"
                             " url, at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    if (!chk) return chk.status();
    for (std::size_t pos = 0; pos < st.train.size(); ++pos) {
      const auto& c = st.train[pos];
      cand->reset();
      DMZ_TRY(cand->bind(1, st.repo)
                  .bind(2, as_int64(c.id))
                  .bind(3, static_cast<std::int64_t>(pos))
                  .bind(4, c.base)
                  .bind(5, c.sha)
                  .bind(6, queue::to_string(c.status))
                  .bind(7, c.created_at)
                  .bind(8, c.pushed_at)
                  .bind(9, static_cast<std::int64_t>(c.policy_passed ? 1 : 0))
                  .exec());
      for (std::size_t i = 0; i < c.prs.size(); ++i) {
        cpr->reset();
        DMZ_TRY(cpr->bind(1, st.repo)
                    .bind(2, as_int64(c.id))
                    .bind(3, static_cast<std::int64_t>(i))
                    .bind(4, std::int64_t{c.prs[i]})
                    .exec());
      }
      for (const auto& [context, k] : c.checks) {
        chk->reset();
        DMZ_TRY(chk->bind(1, st.repo)
                    .bind(2, as_int64(c.id))
                    .bind(3, context)
                    .bind(4, queue::to_string(k.state))
                    .bind(5, k.description)
                    .bind(6, k.url)
                    .bind(7, k.at)
                    .exec());
      }
    }
    return {};
  }

  Result<std::optional<queue::RepoState>> read_state(const std::string& name) {
    sqlite3* db = db_.get();
    queue::RepoState st;
    {
      auto q = Stmt::prepare(
          db, "SELECT master, next_candidate, retry_after FROM repos WHERE name = ?1");
      if (!q) return q.error();
      q->bind(1, name);
      auto row = q->step();
      if (!row) return row.error();
      if (!*row) return std::optional<queue::RepoState>();
      st.repo = name;
      st.master = q->text(0);
      st.next_candidate = as_uint64(q->int64(1));
      st.retry_after = q->int64(2);
    }
    {
      auto q = Stmt::prepare(db,
                             "SELECT number, branch, author, title, head, status, reason, details,"
                             " queued_at, candidate FROM prs WHERE repo = ?1 ORDER BY number");
      if (!q) return q.error();
      q->bind(1, name);
      for (;;) {
        auto row = q->step();
        if (!row) return row.error();
        if (!*row) break;
        queue::PullRequest p;
        p.number = static_cast<int>(q->int64(0));
        p.branch = q->text(1);
        p.author = q->text(2);
        p.title = q->text(3);
        p.head = q->text(4);
        auto status = parse_enum(q->text(5), kPrStatuses);
        if (!status)
          return corrupt(
              name, "PR #" + std::to_string(p.number) + " has unknown status '" + q->text(5) + "'");
        p.status = *status;
        p.reason = q->text(6);
        auto details = nlohmann::json::parse(q->text(7), nullptr, /*allow_exceptions=*/false);
        if (!details.is_array())
          return corrupt(name, "PR #" + std::to_string(p.number) + " details are not a JSON array");
        for (const auto& d : details) {
          if (!d.is_string())
            return corrupt(name, "PR #" + std::to_string(p.number) + " details are not strings");
          p.details.push_back(d.get<std::string>());
        }
        p.queued_at = q->int64(8);
        if (!q->is_null(9)) p.candidate = as_uint64(q->int64(9));
        st.prs.emplace(p.number, std::move(p));
      }
    }
    {
      auto q = Stmt::prepare(db, "SELECT number, sha, approver, at FROM approvals WHERE repo = ?1");
      if (!q) return q.error();
      q->bind(1, name);
      for (;;) {
        auto row = q->step();
        if (!row) return row.error();
        if (!*row) break;
        int number = static_cast<int>(q->int64(0));
        auto it = st.prs.find(number);
        if (it == st.prs.end())
          return corrupt(name, "approval for unknown PR #" + std::to_string(number));
        it->second.approval = queue::Approval{q->text(1), q->text(2), q->int64(3)};
      }
    }
    {
      auto q = Stmt::prepare(
          db,
          "SELECT id, base, sha, status, created_at, pushed_at, policy_passed FROM candidates"
          " WHERE repo = ?1 ORDER BY position");
      if (!q) return q.error();
      q->bind(1, name);
      for (;;) {
        auto row = q->step();
        if (!row) return row.error();
        if (!*row) break;
        queue::Candidate c;
        c.id = as_uint64(q->int64(0));
        c.base = q->text(1);
        c.sha = q->text(2);
        auto status = parse_enum(q->text(3), kCandidateStatuses);
        if (!status)
          return corrupt(name, "candidate " + std::to_string(c.id) + " has unknown status '" +
                                   q->text(3) + "'");
        c.status = *status;
        c.created_at = q->int64(4);
        c.pushed_at = q->int64(5);
        c.policy_passed = q->int64(6) != 0;
        st.train.push_back(std::move(c));
      }
    }
    auto find_candidate = [&](std::uint64_t id) -> queue::Candidate* {
      for (auto& c : st.train)
        if (c.id == id) return &c;
      return nullptr;
    };
    {
      auto q = Stmt::prepare(db,
                             "SELECT candidate, number FROM candidate_prs WHERE repo = ?1"
                             " ORDER BY candidate, position");
      if (!q) return q.error();
      q->bind(1, name);
      for (;;) {
        auto row = q->step();
        if (!row) return row.error();
        if (!*row) break;
        auto* c = find_candidate(as_uint64(q->int64(0)));
        if (!c) return corrupt(name, "PR of unknown candidate " + q->text(0));
        c->prs.push_back(static_cast<int>(q->int64(1)));
      }
    }
    {
      auto q = Stmt::prepare(db,
                             "SELECT candidate, context, state, description, url, at FROM checks"
                             " WHERE repo = ?1");
      if (!q) return q.error();
      q->bind(1, name);
      for (;;) {
        auto row = q->step();
        if (!row) return row.error();
        if (!*row) break;
        auto* c = find_candidate(as_uint64(q->int64(0)));
        if (!c) return corrupt(name, "check of unknown candidate " + q->text(0));
        queue::Check k;
        k.context = q->text(1);
        auto state = parse_enum(q->text(2), kCheckStates);
        if (!state)
          return corrupt(name, "check " + k.context + " has unknown state '" + q->text(2) + "'");
        k.state = *state;
        k.description = q->text(3);
        k.url = q->text(4);
        k.at = q->int64(5);
        c->checks.emplace(k.context, std::move(k));
      }
    }
    return std::optional<queue::RepoState>(std::move(st));
  }

  std::mutex mu_;
  Db db_;
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

Result<std::unique_ptr<Store>> open_sqlite_store(const std::filesystem::path& file) {
  if (file.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(file.parent_path(), ec);
    if (ec)
      return error("store: cannot create " + file.parent_path().string() + ": " + ec.message());
  }
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(file.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  Db db(raw);  // sqlite3_open_v2 allocates a handle even on failure: close it in every case
  if (rc != SQLITE_OK)
    return error("store: cannot open " + file.string() + ": " +
                 (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  sqlite3_extended_result_codes(raw, 1);
  if (sqlite3_busy_timeout(raw, 5000) != SQLITE_OK) return sql_error(raw, "busy_timeout");

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
  if (Status s = exec_script(raw, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"); !s.ok())
    return error("store: " + file.string() + ": " + s.message());
  if (Status s = migrate(raw); !s.ok()) return error(file.string() + ": " + s.message());
  return std::unique_ptr<Store>(std::make_unique<SqliteStore>(std::move(db)));
}

}  // namespace dmz

#include "bot/store/store.hpp"

#include <doctest/doctest.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "tests/support.hpp"

namespace dmz {
namespace {

using namespace queue;

// Field-by-field comparison with a doctest CHECK per field, so a failure names the field.
void check_equal(const Check& a, const Check& b) {
  CHECK(a.context == b.context);
  CHECK(a.state == b.state);
  CHECK(a.description == b.description);
  CHECK(a.url == b.url);
  CHECK(a.at == b.at);
}

void check_equal(const PullRequest& a, const PullRequest& b) {
  INFO("PR #", b.number);
  CHECK(a.number == b.number);
  CHECK(a.branch == b.branch);
  CHECK(a.author == b.author);
  CHECK(a.title == b.title);
  CHECK(a.head == b.head);
  CHECK(a.status == b.status);
  REQUIRE(a.approval.has_value() == b.approval.has_value());
  if (a.approval) {
    CHECK(a.approval->sha == b.approval->sha);
    CHECK(a.approval->approver == b.approval->approver);
    CHECK(a.approval->at == b.approval->at);
  }
  CHECK(a.reason == b.reason);
  CHECK(a.details == b.details);
  CHECK(a.queued_at == b.queued_at);
  CHECK(a.candidate == b.candidate);
}

void check_equal(const Candidate& a, const Candidate& b) {
  INFO("candidate ", b.id);
  CHECK(a.id == b.id);
  CHECK(a.prs == b.prs);
  CHECK(a.base == b.base);
  CHECK(a.sha == b.sha);
  CHECK(a.status == b.status);
  CHECK(a.created_at == b.created_at);
  CHECK(a.pushed_at == b.pushed_at);
  CHECK(a.policy_passed == b.policy_passed);
  REQUIRE(a.checks.size() == b.checks.size());
  for (auto ia = a.checks.begin(), ib = b.checks.begin(); ia != a.checks.end(); ++ia, ++ib) {
    CHECK(ia->first == ib->first);
    check_equal(ia->second, ib->second);
  }
}

void check_equal(const RepoState& a, const RepoState& b) {
  CHECK(a.repo == b.repo);
  CHECK(a.master == b.master);
  CHECK(a.next_candidate == b.next_candidate);
  CHECK(a.retry_after == b.retry_after);
  REQUIRE(a.prs.size() == b.prs.size());
  for (auto ia = a.prs.begin(), ib = b.prs.begin(); ia != a.prs.end(); ++ia, ++ib) {
    CHECK(ia->first == ib->first);
    check_equal(ia->second, ib->second);
  }
  REQUIRE(a.train.size() == b.train.size());
  for (std::size_t i = 0; i < a.train.size(); ++i) check_equal(a.train[i], b.train[i]);
}

std::string sha(char c) { return std::string(40, c); }

PullRequest make_pr(int number, PrStatus status) {
  PullRequest p;
  p.number = number;
  p.branch = "feature/f" + std::to_string(number);
  p.author = "dev" + std::to_string(number % 3);
  p.title = "Title of #" + std::to_string(number) + " with 'quotes', \"dq\" and ünïcödé";
  p.head = sha(static_cast<char>('a' + number % 6));
  p.status = status;
  p.queued_at = 1000 + number;
  return p;
}

// A state exercising every field: a PR in each status, approvals, failure details, a train
// of two candidates (a batch of two PRs, then one PR) with checks in every state.
RepoState rich_state() {
  RepoState s;
  s.repo = "acme/widgets";
  s.master = sha('0');
  s.next_candidate = 8;
  s.retry_after = 1'700'000'000'123;
  const PrStatus all[] = {PrStatus::Open,    PrStatus::Approved, PrStatus::Queued,
                          PrStatus::Merging, PrStatus::InDmz,    PrStatus::Building,
                          PrStatus::Merged,  PrStatus::Failed,   PrStatus::Cancelled};
  int n = 1;
  for (PrStatus st : all) {
    auto p = make_pr(n, st);
    if (st != PrStatus::Open) p.approval = Approval{p.head, "master" + std::to_string(n), 5000 + n};
    s.prs[n] = p;
    ++n;
  }
  s.prs[8].reason = "build failed: ci/build";
  s.prs[8].details = {"ci/build: failure", "path with \"quotes\" and [brackets]", ""};
  s.prs[9].reason = "cancelled by alice";
  s.prs[10] = make_pr(10, PrStatus::Building);  // batched with #6
  s.prs[10].approval = Approval{s.prs[10].head, "bob", 42};
  s.prs[4].candidate = 7;  // Merging, in the last candidate... see below
  s.prs[5].candidate = 6;
  s.prs[6].candidate = 5;
  s.prs[10].candidate = 5;

  Candidate c1;
  c1.id = 5;
  c1.prs = {10, 6};  // order within the candidate is not the PR number order
  c1.base = s.master;
  c1.sha = sha('c');
  c1.status = CandidateStatus::Building;
  c1.created_at = 2000;
  c1.pushed_at = 2100;
  c1.policy_passed = true;  // c2 keeps false: both values round-trip
  c1.checks["ci/build"] = Check{"ci/build", CheckState::Success, "ok", "https://ci/1", 2200};
  c1.checks["ci/test"] = Check{"ci/test", CheckState::Failure, "3 failed", "", 2300};
  c1.checks["ci/lint"] = Check{"ci/lint", CheckState::Error, "", "https://ci/3", 2250};
  Candidate c2;
  c2.id = 6;
  c2.prs = {5};
  c2.base = c1.sha;
  c2.sha = sha('d');
  c2.status = CandidateStatus::InDmz;
  c2.created_at = 2400;
  c2.pushed_at = 2500;
  c2.checks["ci/build"] = Check{"ci/build", CheckState::Pending, "queued", "", 2600};
  Candidate c3;
  c3.id = 7;
  c3.prs = {4};
  c3.base = c2.sha;
  c3.status = CandidateStatus::Merging;  // sha empty while merging
  c3.created_at = 2700;
  s.train = {c1, c2, c3};
  return s;
}

std::unique_ptr<Store> open_store(const std::filesystem::path& file) {
  auto r = open_sqlite_store(file);
  INFO((r.ok() ? std::string() : r.message()));
  REQUIRE(r.ok());
  return std::move(r).value();
}

RepoState must_load(Store& store, const std::string& repo) {
  auto r = store.load(repo);
  INFO((r.ok() ? std::string() : r.message()));
  REQUIRE(r.ok());
  REQUIRE(r->has_value());
  return **r;
}

// Runs one SQL statement on a second, raw connection (what an operator would do).
std::string sql_scalar(const std::filesystem::path& file, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE_MESSAGE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK,
                  sqlite3_errmsg(db));
  std::string out;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW && sqlite3_column_text(st, 0))
    out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  CHECK_MESSAGE((rc == SQLITE_ROW || rc == SQLITE_DONE), sqlite3_errmsg(db));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

TEST_CASE("store: a rich state round-trips field by field") {
  test::TempDir dir;
  auto store = open_store(dir / "dmz.db");
  CHECK(store->load("acme/widgets")->has_value() == false);

  RepoState s = rich_state();
  REQUIRE(store->save(s, "merge_requested", R"({"number":1})", 10).ok());
  RepoState back = must_load(*store, "acme/widgets");
  check_equal(back, s);

  // The tables are normalized and readable by an operator.
  CHECK(sql_scalar(dir / "dmz.db",
                   "SELECT status FROM prs WHERE repo='acme/widgets' AND number=5") == "in_dmz");
  CHECK(sql_scalar(dir / "dmz.db", "SELECT count(*) FROM checks WHERE candidate=5") == "3");
  CHECK(sql_scalar(dir / "dmz.db",
                   "SELECT group_concat(number) FROM (SELECT number FROM candidate_prs"
                   " WHERE candidate=5 ORDER BY position)") == "10,6");
  CHECK(sql_scalar(dir / "dmz.db", "SELECT version FROM schema_version") == "2");
  CHECK(sql_scalar(dir / "dmz.db",
                   "SELECT group_concat(policy_passed) FROM (SELECT policy_passed"
                   " FROM candidates WHERE repo='acme/widgets' ORDER BY position)") == "1,0,0");

  // Another repository is independent.
  RepoState other;
  other.repo = "acme/gadgets";
  other.master = sha('9');
  REQUIRE(store->save(other, "tick", "{}", 11).ok());
  check_equal(must_load(*store, "acme/gadgets"), other);
  check_equal(must_load(*store, "acme/widgets"), s);
}

TEST_CASE("store: save replaces the repository's rows") {
  test::TempDir dir;
  auto store = open_store(dir / "dmz.db");
  RepoState s = rich_state();
  REQUIRE(store->save(s, "a", "{}", 1).ok());

  s.prs.erase(9);             // a PR disappears
  s.prs[8].details = {"x"};   // details shrink
  s.prs[2].approval.reset();  // an approval is dropped
  s.train.erase(s.train.begin() + 1, s.train.end());
  s.train[0].checks.erase("ci/lint");
  s.master = sha('1');
  REQUIRE(store->save(s, "b", "{}", 2).ok());

  RepoState back = must_load(*store, "acme/widgets");
  check_equal(back, s);
  CHECK(back.prs.count(9) == 0);
  CHECK(sql_scalar(dir / "dmz.db", "SELECT count(*) FROM prs") == std::to_string(s.prs.size()));
  CHECK(sql_scalar(dir / "dmz.db", "SELECT count(*) FROM approvals WHERE number=2") == "0");
  CHECK(sql_scalar(dir / "dmz.db", "SELECT count(*) FROM candidates") == "1");
  CHECK(sql_scalar(dir / "dmz.db", "SELECT count(*) FROM checks") == "2");
  CHECK(sql_scalar(dir / "dmz.db", "SELECT count(*) FROM candidate_prs") == "2");
}

TEST_CASE("store: state survives closing and reopening") {
  test::TempDir dir;
  RepoState s = rich_state();
  {
    auto store = open_store(dir / "sub" / "dmz.db");  // the directory is created
    REQUIRE(store->save(s, "a", R"({"n":1})", 1).ok());
    REQUIRE(store->record_delivery("d-1").value());
  }
  auto store = open_store(dir / "sub" / "dmz.db");  // migrations are not re-applied
  check_equal(must_load(*store, "acme/widgets"), s);
  CHECK(store->record_delivery("d-1").value() == false);
  auto ev = store->events("acme/widgets", 10);
  REQUIRE(ev.ok());
  REQUIRE(ev->size() == 1);
  CHECK((*ev)[0].json == R"({"n":1})");
}

TEST_CASE("store: WAL mode is on") {
  test::TempDir dir;
  auto store = open_store(dir / "dmz.db");
  CHECK(sql_scalar(dir / "dmz.db", "PRAGMA journal_mode") == "wal");
}

TEST_CASE("store: the event log keeps order, per repository, and the limit keeps the newest") {
  test::TempDir dir;
  auto store = open_store(dir / "dmz.db");
  RepoState a = rich_state();
  RepoState b;
  b.repo = "acme/other";
  for (int i = 1; i <= 6; ++i) {
    REQUIRE(store->save(a, "kind" + std::to_string(i), "{\"i\":" + std::to_string(i) + "}", 100 + i)
                .ok());
    REQUIRE(store->save(b, "other", "{}", 200 + i).ok());
  }
  auto all = store->events("acme/widgets", 100);
  REQUIRE(all.ok());
  REQUIRE(all->size() == 6);
  for (int i = 0; i < 6; ++i) {
    CHECK((*all)[i].repo == "acme/widgets");
    CHECK((*all)[i].kind == "kind" + std::to_string(i + 1));
    CHECK((*all)[i].json == "{\"i\":" + std::to_string(i + 1) + "}");
    CHECK((*all)[i].at == 101 + i);
    if (i > 0) CHECK((*all)[i].seq > (*all)[i - 1].seq);
  }
  auto last3 = store->events("acme/widgets", 3);
  REQUIRE(last3.ok());
  REQUIRE(last3->size() == 3);
  CHECK((*last3)[0].kind == "kind4");
  CHECK((*last3)[2].kind == "kind6");
  CHECK(store->events("acme/widgets", 0)->empty());
  CHECK(store->events("nobody/none", 5)->empty());
  CHECK(store->events("acme/other", 100)->size() == 6);
}

TEST_CASE("store: duplicate delivery ids are detected") {
  test::TempDir dir;
  auto store = open_store(dir / "dmz.db");
  CHECK(store->record_delivery("abc").value() == true);
  CHECK(store->record_delivery("abd").value() == true);
  CHECK(store->record_delivery("abc").value() == false);
  CHECK(store->record_delivery("abc").value() == false);
  CHECK(store->record_delivery("").value() == true);
  CHECK(sql_scalar(dir / "dmz.db", "SELECT count(*) FROM deliveries") == "3");
}

TEST_CASE("store: calls from several threads are serialized") {
  test::TempDir dir;
  auto store = open_store(dir / "dmz.db");
  std::atomic<int> inserted{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      RepoState s = rich_state();
      s.repo = "acme/t" + std::to_string(t);
      for (int i = 0; i < 6; ++i) {
        auto r = store->record_delivery("shared-" + std::to_string(i));  // all threads race
        if (!r.ok())
          ++failed;
        else if (*r)
          ++inserted;
        if (!store->save(s, "k", "{}", i).ok()) ++failed;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failed == 0);
  CHECK(inserted == 6);  // each id won by exactly one thread
  for (int t = 0; t < 4; ++t) {
    CHECK(store->events("acme/t" + std::to_string(t), 100)->size() == 6);
    CHECK(must_load(*store, "acme/t" + std::to_string(t)).prs.size() == rich_state().prs.size());
  }
}

TEST_CASE("store: a failed save leaves the previous state and log intact") {
  test::TempDir dir;
  auto store = open_store(dir / "dmz.db");
  RepoState s = rich_state();
  REQUIRE(store->save(s, "good", "{}", 1).ok());

  SUBCASE("an invalid state: two candidates with one id (a primary-key violation)") {
    RepoState bad = s;
    bad.prs.erase(1);
    bad.train[1].id = bad.train[0].id;
    Status st = store->save(bad, "bad", "{}", 2);
    REQUIRE_FALSE(st.ok());
    CHECK(st.message().find("UNIQUE constraint failed: candidates") != std::string::npos);
  }
  SUBCASE("a fault injected after the old rows are deleted and half the new ones written") {
    // A trigger on a second connection fails the insert of PR #7 (after #1..#6 went in).
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open((dir / "dmz.db").c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db,
                         "CREATE TRIGGER inject BEFORE INSERT ON prs WHEN NEW.number = 7"
                         " BEGIN SELECT RAISE(ABORT, 'injected fault'); END;",
                         nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
    RepoState bad = s;
    bad.master = sha('f');
    Status st = store->save(bad, "bad", "{}", 2);
    REQUIRE_FALSE(st.ok());
    CHECK(st.message().find("injected fault") != std::string::npos);
    sql_scalar(dir / "dmz.db", "DROP TRIGGER inject");
  }
  check_equal(must_load(*store, "acme/widgets"), s);
  auto ev = store->events("acme/widgets", 10);
  REQUIRE(ev->size() == 1);
  CHECK((*ev)[0].kind == "good");
  // The store is still usable after the rollback.
  s.prs.erase(1);
  REQUIRE(store->save(s, "after", "{}", 3).ok());
  CHECK(must_load(*store, "acme/widgets").prs.count(1) == 0);
}

TEST_CASE("store: an unknown enum name in the database is reported, not guessed") {
  test::TempDir dir;
  auto store = open_store(dir / "dmz.db");
  REQUIRE(store->save(rich_state(), "a", "{}", 1).ok());
  sql_scalar(dir / "dmz.db", "UPDATE prs SET status='limbo' WHERE number=3");
  auto r = store->load("acme/widgets");
  REQUIRE_FALSE(r.ok());
  CHECK(r.message() == "store: corrupt state for acme/widgets: PR #3 has unknown status 'limbo'");
}

TEST_CASE("store: a database from a newer dmzbot is refused") {
  test::TempDir dir;
  { auto store = open_store(dir / "dmz.db"); }
  sql_scalar(dir / "dmz.db", "UPDATE schema_version SET version = 99");
  auto r = open_sqlite_store(dir / "dmz.db");
  REQUIRE_FALSE(r.ok());
  CHECK(r.message().find("schema version 99 is newer") != std::string::npos);
}

// Version v of the crash test's state: N PRs all titled "v<v>", master names v too.
constexpr int kCrashPrs = 12;
RepoState version_state(int v) {
  RepoState s;
  s.repo = "acme/crash";
  s.master = "v" + std::to_string(v);
  s.next_candidate = static_cast<CandidateId>(v);
  for (int i = 1; i <= kCrashPrs; ++i) {
    auto p = make_pr(i, PrStatus::Queued);
    p.title = "v" + std::to_string(v);
    p.details = {std::string(200, 'x'), "v" + std::to_string(v)};
    s.prs[i] = p;
  }
  return s;
}

TEST_CASE("store: a process killed mid-save leaves a consistent, durable state") {
  test::TempDir dir;
  const auto file = dir / "dmz.db";
  {
    auto store = open_store(file);
    REQUIRE(store->save(version_state(0), "v", "{}", 0).ok());
  }
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {  // child: save versions 1, 2, ... forever; report each committed version
    close(fds[0]);
    auto r = open_sqlite_store(file);
    if (!r.ok()) _exit(3);
    for (int v = 1;; ++v) {
      if (!(*r)->save(version_state(v), "v", "{}", v).ok()) _exit(4);
      if (write(fds[1], &v, sizeof v) != sizeof v) _exit(5);
    }
  }
  close(fds[1]);
  // Let a few saves commit, then kill at an arbitrary moment (most likely mid-transaction).
  int last = 0;
  auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::steady_clock::now() - start; };
  while (elapsed() < std::chrono::milliseconds(200) || last < 3) {
    if (elapsed() > std::chrono::seconds(3)) break;
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, 50) > 0) {
      int v;
      if (read(fds[0], &v, sizeof v) != sizeof v) break;
      last = v;
    }
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  // Drain what the child reported before it died.
  for (int v; read(fds[0], &v, sizeof v) == sizeof v;) last = v;
  close(fds[0]);
  REQUIRE(WIFSIGNALED(status));
  REQUIRE(last >= 3);

  auto store = open_store(file);
  RepoState got = must_load(*store, "acme/crash");
  INFO("last acknowledged version: ", last, ", loaded master: ", got.master);
  // Every acknowledged save survived; at most the one in flight may have committed too.
  int v = std::stoi(got.master.substr(1));
  CHECK(v >= last);
  CHECK(v <= last + 1);
  check_equal(got, version_state(v));
  auto ev = store->events("acme/crash", 1'000'000);
  REQUIRE(ev.ok());
  CHECK(ev->size() == static_cast<std::size_t>(v + 1));  // the log commits with the state
  CHECK(ev->back().at == v);
}

}  // namespace
}  // namespace dmz

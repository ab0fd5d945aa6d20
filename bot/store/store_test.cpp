#include "bot/store/store.hpp"

#include <doctest/doctest.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "bot/store/store_test_support.hpp"
#include "tests/support.hpp"

namespace dmz {
namespace {

using namespace queue;

// Runs SQL on a second, raw connection (what an operator would do); the first column of the
// first row.
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
  CHECK(store->has_state().value() == false);

  RepoState s = rich_state();
  Writer w{*store, RepoState{s.repo}};
  w.must_save(s, "merge_requested");
  CHECK(w.version == 1);
  CHECK(store->has_state().value());
  Loaded back = must_load(*store, "acme/widgets");
  check_equal(back.state, s);
  CHECK(back.version == 1);

  // The tables are normalized and readable by an operator.
  CHECK(sql_scalar(dir / "dmz.db",
                   "SELECT status FROM prs WHERE repo='acme/widgets' AND number=5") == "in_dmz");
  CHECK(sql_scalar(dir / "dmz.db", "SELECT reason_code FROM prs WHERE number=8") == "build-failed");
  CHECK(sql_scalar(dir / "dmz.db", "SELECT count(*) FROM checks WHERE candidate=5") == "3");
  CHECK(sql_scalar(dir / "dmz.db",
                   "SELECT group_concat(number) FROM (SELECT number FROM candidate_prs"
                   " WHERE candidate=5 ORDER BY position)") == "10,6");
  CHECK(sql_scalar(dir / "dmz.db", "SELECT version FROM schema_version") == "18");
  CHECK(sql_scalar(dir / "dmz.db", "SELECT approvers FROM prs WHERE number=3") ==
        R"(["bob","carol"])");
  CHECK(sql_scalar(dir / "dmz.db", "SELECT paths FROM prs WHERE number=3") ==
        R"(["src/a.cpp","docs/ünïcödé.md"])");
  CHECK(sql_scalar(dir / "dmz.db",
                   "SELECT held_by || '/' || bisect_group || '/' || precheck"
                   " FROM prs WHERE number=3") == "5/11/failure");
  CHECK(sql_scalar(dir / "dmz.db",
                   "SELECT lane || '/' || attempt || '/' || failed FROM"
                   " candidates WHERE id=6") == "4/2/1");
  CHECK(sql_scalar(dir / "dmz.db", "SELECT train_window FROM repos") == "6");
  CHECK(sql_scalar(dir / "dmz.db", "SELECT policy_epoch FROM repos") == "3");
  CHECK(sql_scalar(dir / "dmz.db", "SELECT trust_root FROM repos") == std::string(64, 'e'));
  CHECK(sql_scalar(dir / "dmz.db",
                   "SELECT group_concat(policy_passed) FROM (SELECT policy_passed"
                   " FROM candidates WHERE repo='acme/widgets' ORDER BY position)") == "1,0,0");

  // Another repository is independent.
  RepoState other;
  other.repo = "acme/gadgets";
  other.master = sha('9');
  Writer w2{*store, RepoState{other.repo}};
  w2.must_save(other);
  check_equal(must_load(*store, "acme/gadgets").state, other);
  check_equal(must_load(*store, "acme/widgets").state, s);
}

TEST_CASE("store: a save writes only the rows that changed") {
  test::TempDir dir;
  auto store = open_store(dir / "dmz.db");
  RepoState s = rich_state();
  Writer w{*store, RepoState{s.repo}};
  w.must_save(s);
  // Count the rows written from now on, on the database itself.
  sql_scalar(dir / "dmz.db", "CREATE TABLE writes(tbl TEXT)");
  for (const char* t : {"prs", "approvals", "candidates", "checks", "candidate_prs"})
    sql_scalar(dir / "dmz.db", std::string("CREATE TRIGGER count_") + t + " AFTER INSERT ON " + t +
                                   " BEGIN INSERT INTO writes VALUES('" + t + "'); END");

  RepoState next = s;
  next.prs[1].title = "renamed";  // one PR changes, nothing else
  w.must_save(next);
  CHECK(sql_scalar(dir / "dmz.db", "SELECT count(*) FROM writes WHERE tbl='prs'") == "1");
  CHECK(sql_scalar(dir / "dmz.db", "SELECT count(*) FROM writes WHERE tbl='candidates'") == "0");

  sql_scalar(dir / "dmz.db", "DELETE FROM writes");
  next.train[0].checks["ci/build"].description = "rebuilt";  // the train changes: rewritten
  w.must_save(next);
  CHECK(sql_scalar(dir / "dmz.db", "SELECT count(*) FROM writes WHERE tbl='prs'") == "0");
  CHECK(sql_scalar(dir / "dmz.db", "SELECT count(*) FROM writes WHERE tbl='candidates'") == "3");
  check_equal(must_load(*store, s.repo).state, next);
}

TEST_CASE("store: removed PRs, dropped approvals and a shorter train are gone after a save") {
  test::TempDir dir;
  auto store = open_store(dir / "dmz.db");
  RepoState s = rich_state();
  Writer w{*store, RepoState{s.repo}};
  w.must_save(s);

  s.prs.erase(9);             // a PR disappears
  s.prs[8].details = {"x"};   // details shrink
  s.prs[2].approval.reset();  // an approval is dropped
  s.train.erase(s.train.begin() + 1, s.train.end());
  s.train[0].checks.erase("ci/lint");
  s.master = sha('1');
  w.must_save(s);

  Loaded back = must_load(*store, "acme/widgets");
  check_equal(back.state, s);
  CHECK(back.version == 2);
  CHECK(back.state.prs.count(9) == 0);
  CHECK(sql_scalar(dir / "dmz.db", "SELECT count(*) FROM prs") == std::to_string(s.prs.size()));
  CHECK(sql_scalar(dir / "dmz.db", "SELECT count(*) FROM approvals WHERE number=2") == "0");
  CHECK(sql_scalar(dir / "dmz.db", "SELECT count(*) FROM candidates") == "1");
  CHECK(sql_scalar(dir / "dmz.db", "SELECT count(*) FROM checks") == "2");
  CHECK(sql_scalar(dir / "dmz.db", "SELECT count(*) FROM candidate_prs") == "2");
}

TEST_CASE("store: a save on a version another writer moved on is a conflict and writes nothing") {
  test::TempDir dir;
  auto store = open_store(dir / "dmz.db");
  RepoState s = rich_state();
  Writer a{*store, RepoState{s.repo}};
  a.must_save(s);
  Writer b = a;  // a second process that loaded the same version
  RepoState sa = s, sb = s;
  sa.prs[1].title = "by a";
  sb.prs[1].title = "by b";
  a.must_save(sa);
  auto r = b.save(sb);
  REQUIRE_FALSE(r.ok());
  CHECK(r.code() == Code::kConflict);
  CHECK(must_load(*store, s.repo).state.prs.at(1).title == "by a");
  // A second "new" repository with the same name is a conflict too.
  Writer c{*store, RepoState{s.repo}};
  auto again = c.save(s);
  REQUIRE_FALSE(again.ok());
  CHECK(again.code() == Code::kConflict);
  CHECK(must_load(*store, s.repo).state.prs.at(1).title == "by a");
}

TEST_CASE("store: archived PRs leave the hot state, keep their history and can come back") {
  test::TempDir dir;
  auto store = open_store(dir / "dmz.db");
  RepoState s = rich_state();
  Writer w{*store, RepoState{s.repo}};
  w.must_save(s);

  PullRequest merged = s.prs.at(7);  // Merged, approved
  merged.finished_at = 9000;
  merged.reason_code = Reason::Merged;
  merged.reason = "merged into master at 0000000";
  RepoState next = s;
  next.prs.erase(7);
  auto h = HistoryEntry::of(s.repo, merged);
  REQUIRE(w.save(next, "master_pushed", {merged}, {h}).ok());

  CHECK(must_load(*store, s.repo).state.prs.count(7) == 0);
  auto back = store->archived(s.repo, 7);
  REQUIRE(back.ok());
  REQUIRE(back->has_value());
  check_equal(**back, merged);
  CHECK(store->archived(s.repo, 99)->has_value() == false);

  auto hist = store->history(s.repo, 0, 10);
  REQUIRE(hist.ok());
  REQUIRE(hist->size() == 1);
  CHECK((*hist)[0].number == 7);
  CHECK((*hist)[0].status == PrStatus::Merged);
  CHECK((*hist)[0].reason == Reason::Merged);
  CHECK((*hist)[0].approver == "master7");
  CHECK((*hist)[0].at == 9000);

  // Brought back by an event that names it: it is hot again and no longer archived.
  RepoState restored = next;
  restored.prs.emplace(7, merged);
  w.must_save(restored);
  CHECK(must_load(*store, s.repo).state.prs.count(7) == 1);
  CHECK(store->archived(s.repo, 7)->has_value() == false);
}

TEST_CASE("store: history pages newest first; one PR's outcomes and events") {
  test::TempDir dir;
  auto store = open_store(dir / "dmz.db");
  RepoState s;
  s.repo = "acme/h";
  Writer w{*store, RepoState{s.repo}};
  for (int i = 1; i <= 7; ++i) {
    PullRequest p = make_pr(i % 3 + 1, PrStatus::Failed);
    p.finished_at = 100 + i;
    s.next_candidate = static_cast<CandidateId>(i);  // something changes each time
    Change c;
    REQUIRE(w.save(s, "e" + std::to_string(i), {}, {HistoryEntry::of(s.repo, p)}).ok());
  }
  auto page1 = store->history(s.repo, 0, 3);
  REQUIRE(page1->size() == 3);
  CHECK((*page1)[0].at == 107);
  CHECK((*page1)[2].at == 105);
  auto page2 = store->history(s.repo, (*page1)[2].seq, 3);
  REQUIRE(page2->size() == 3);
  CHECK((*page2)[0].at == 104);
  auto page3 = store->history(s.repo, (*page2)[2].seq, 3);
  REQUIRE(page3->size() == 1);
  CHECK((*page3)[0].at == 101);
  auto of2 = store->pr_history(s.repo, 2, 10);  // i % 3 + 1 == 2 for i = 1, 4, 7
  REQUIRE(of2->size() == 3);
  CHECK((*of2)[0].at == 107);

  // Events name their PR for its timeline.
  Change c;
  RepoState t = s;
  t.master = sha('7');
  c.state = &t;
  c.delta = diff(s, t);
  c.expected_version = w.version;
  c.event = EventLogEntry{0, s.repo, "merge_requested", "{}", 5, 999};
  auto saved_c = store->save(c);
  REQUIRE(saved_c.ok());
  auto ev = store->pr_events(s.repo, 5, 10);
  REQUIRE(ev->size() == 1);
  CHECK(ev->at(0).kind == "merge_requested");
  CHECK(ev->at(0).number == 5);
  CHECK(store->pr_events(s.repo, 6, 10)->empty());

  // A candidate's event names the PRs of the candidate: it is in each one's timeline.
  RepoState u = t;
  u.master = sha('8');
  Change d;
  d.state = &u;
  d.delta = diff(t, u);
  d.expected_version = saved_c->version;
  d.event = EventLogEntry{0, s.repo, "merge_done", "{\"candidate\":3}", std::nullopt, 1000, {5, 6}};
  REQUIRE(store->save(d).ok());
  ev = store->pr_events(s.repo, 5, 10);
  REQUIRE(ev->size() == 2);
  CHECK(ev->at(0).kind == "merge_requested");
  CHECK(ev->at(1).kind == "merge_done");
  CHECK_FALSE(ev->at(1).number.has_value());
  REQUIRE(store->pr_events(s.repo, 6, 10)->size() == 1);
  CHECK(store->pr_events(s.repo, 7, 10)->empty());
  CHECK(store->pr_events(s.repo, 5, 1)->at(0).kind == "merge_done");  // the newest first
}

TEST_CASE("store: the outbox is saved with the change, delivered or rescheduled") {
  test::TempDir dir;
  auto store = open_store(dir / "dmz.db");
  RepoState s;
  s.repo = "acme/o";
  Writer w{*store, RepoState{s.repo}};
  s.master = sha('1');
  auto saved = w.save(s, "x", {}, {},
                      {Notify{3,
                              NoticeKind::Failure,
                              Reason::BuildFailed,
                              "boom",
                              sha('a'),
                              {"https://ci/7", "every detail"}},
                       Notify{4, NoticeKind::Success, Reason::Merged, "landed", sha('b')}},
                      500);
  REQUIRE(saved.ok());
  REQUIRE(saved->outbox_ids.size() == 2);
  auto box = store->outbox(s.repo);
  REQUIRE(box.ok());
  REQUIRE(box->size() == 2);
  CHECK((*box)[0].id == saved->outbox_ids[0]);
  CHECK((*box)[0].notice == Notify{3,
                                   NoticeKind::Failure,
                                   Reason::BuildFailed,
                                   "boom",
                                   sha('a'),
                                   {"https://ci/7", "every detail"}});
  CHECK((*box)[0].next_at == 500);
  CHECK((*box)[0].attempts == 0);
  REQUIRE(store->outbox_retry((*box)[0].id, 1, 2500, "forge answered 502").ok());
  REQUIRE(store->outbox_delivered((*box)[1].id).ok());
  box = store->outbox(s.repo);
  REQUIRE(box->size() == 1);
  CHECK((*box)[0].attempts == 1);
  CHECK((*box)[0].next_at == 2500);
  CHECK((*box)[0].created_at == 500);  // when it was decided, whatever the retries
  CHECK((*box)[0].last_error == "forge answered 502");
  CHECK(store->outbox("other/repo")->empty());
}

TEST_CASE("store: state survives closing and reopening") {
  test::TempDir dir;
  RepoState s = rich_state();
  {
    auto store = open_store(dir / "sub" / "dmz.db");  // the directory is created
    Writer w{*store, RepoState{s.repo}};
    w.must_save(s, "a");
    REQUIRE(store->record_delivery("d-1", 5).value());
  }
  auto store = open_store(dir / "sub" / "dmz.db");  // migrations are not re-applied
  check_equal(must_load(*store, "acme/widgets").state, s);
  CHECK(store->record_delivery("d-1", 6).value() == false);
  auto ev = store->events("acme/widgets", 10);
  REQUIRE(ev.ok());
  REQUIRE(ev->size() == 1);
  CHECK((*ev)[0].json == R"({"kind":"a"})");
}

TEST_CASE("store: promotion records survive closing and reopening") {
  test::TempDir dir;
  {
    auto store = open_store(dir / "dmz.db");
    PromotionRecord r;
    r.repo = "acme/widgets";
    r.tag = "v1.0-rc1";
    r.tag_object = std::string(40, 'a');
    r.kind = "candidate";
    r.target = "staging";
    r.commit = std::string(40, 'c');
    r.signers = {"lead"};
    r.promoted = true;
    r.source = "api";
    r.at = 1234;
    REQUIRE(store->record_promotion(r).ok());
  }
  auto store = open_store(dir / "dmz.db");
  auto held = store->last_promotion("acme/widgets", "staging");
  REQUIRE(held.ok());
  REQUIRE(held->has_value());
  CHECK((*held)->tag == "v1.0-rc1");
  CHECK((*held)->signers == std::vector<std::string>{"lead"});
  CHECK((*held)->at == 1234);
  CHECK(sql_scalar(dir / "dmz.db", "SELECT signers FROM promotions") == R"(["lead"])");
}

TEST_CASE("store: a promotion record whose signers are not a JSON array is corrupt, not guessed") {
  test::TempDir dir;
  {
    auto store = open_store(dir / "dmz.db");
    PromotionRecord r;
    r.repo = "acme/widgets";
    r.tag = "v1";
    REQUIRE(store->record_promotion(r).ok());
  }
  sql_scalar(dir / "dmz.db", "UPDATE promotions SET signers = '{'");
  auto store = open_store(dir / "dmz.db");
  auto all = store->promotions("acme/widgets", 5);
  REQUIRE_FALSE(all.ok());
  CHECK(all.code() == Code::kInternal);
  CHECK(all.message().find("promotion record 1") != std::string::npos);
}

TEST_CASE("store: WAL mode is on and the files are private") {
  test::TempDir dir;
  ::umask(022);
  auto store = open_store(dir / "dmz.db");
  CHECK(sql_scalar(dir / "dmz.db", "PRAGMA journal_mode") == "wal");
  struct stat st {};
  REQUIRE(::stat((dir / "dmz.db").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
}

TEST_CASE("store: the event log keeps order, per repository, and the limit keeps the newest") {
  test::TempDir dir;
  auto store = open_store(dir / "dmz.db");
  RepoState a = rich_state();
  RepoState b;
  b.repo = "acme/other";
  Writer wa{*store, RepoState{a.repo}}, wb{*store, RepoState{b.repo}};
  for (int i = 1; i <= 6; ++i) {
    a.next_candidate = static_cast<CandidateId>(i);
    b.next_candidate = static_cast<CandidateId>(i);
    REQUIRE(wa.save(a, "kind" + std::to_string(i), {}, {}, {}, 100 + i).ok());
    REQUIRE(wb.save(b, "other", {}, {}, {}, 200 + i).ok());
  }
  auto all = store->events("acme/widgets", 100);
  REQUIRE(all.ok());
  REQUIRE(all->size() == 6);
  for (int i = 0; i < 6; ++i) {
    CHECK((*all)[i].repo == "acme/widgets");
    CHECK((*all)[i].kind == "kind" + std::to_string(i + 1));
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

  // A live feed resumes after a seq: only this repository's later events, oldest first, paged.
  auto after = store->events_after("acme/widgets", (*all)[2].seq, 2);
  REQUIRE(after.ok());
  REQUIRE(after->size() == 2);
  CHECK((*after)[0].kind == "kind4");
  CHECK((*after)[1].kind == "kind5");
  CHECK(store->events_after("acme/widgets", (*all)[5].seq, 10)->empty());
  CHECK(store->events_after("acme/widgets", 0, 100)->size() == 6);
}

TEST_CASE("store: duplicate delivery ids are detected; old ones are pruned") {
  test::TempDir dir;
  auto store = open_store(dir / "dmz.db");
  CHECK(store->record_delivery("abc", 10).value() == true);
  CHECK(store->record_delivery("abd", 20).value() == true);
  CHECK(store->record_delivery("abc", 30).value() == false);
  CHECK(store->record_delivery("abc", 40).value() == false);
  CHECK(store->record_delivery("", 50).value() == true);
  CHECK(sql_scalar(dir / "dmz.db", "SELECT count(*) FROM deliveries") == "3");
  REQUIRE(store->prune_deliveries(20, 100).value() == 1);  // first seen before 20: "abc"
  CHECK(sql_scalar(dir / "dmz.db", "SELECT count(*) FROM deliveries") == "2");
  CHECK(store->record_delivery("abc", 60).value() == true);
}

TEST_CASE("store: pruned events take their timeline rows with them") {
  test::TempDir dir;
  auto store = open_store(dir / "dmz.db");
  RepoState s;
  s.repo = "acme/p";
  Writer w{*store, RepoState{s.repo}};
  for (int i = 1; i <= 3; ++i) {
    s.next_candidate = static_cast<CandidateId>(i);
    w.must_save_event(
        s, EventLogEntry{0, s.repo, "merge_done", "{}", std::nullopt, 100 * i, {i, i + 10}});
  }
  CHECK(sql_scalar(dir / "dmz.db", "SELECT count(*) FROM event_prs") == "6");
  REQUIRE(store->prune_history(250, 100).value() == 2);  // timeline rows are not counted
  CHECK(sql_scalar(dir / "dmz.db", "SELECT count(*) FROM event_prs") == "2");
  CHECK(sql_scalar(dir / "dmz.db", "SELECT min(seq) FROM event_prs") ==
        sql_scalar(dir / "dmz.db", "SELECT min(seq) FROM events"));
}

TEST_CASE("store: a batch of delivery ids is one transaction, deduplicated within it") {
  test::TempDir dir;
  auto store = open_store(dir / "dmz.db");
  REQUIRE(store->record_delivery("old", 5).value());
  auto r = store->record_deliveries({{"a", 10}, {"old", 11}, {"b", 12}, {"a", 13}, {"c", 14}});
  REQUIRE(r.ok());
  CHECK(*r == std::vector<bool>{true, false, true, false, true});  // the second "a" is a redelivery
  CHECK(sql_scalar(dir / "dmz.db", "SELECT at FROM deliveries WHERE id = 'a'") == "10");
  CHECK(sql_scalar(dir / "dmz.db", "SELECT count(*) FROM deliveries") == "4");
  CHECK(store->record_deliveries({})->empty());

  // A batch that cannot be written records none of its ids, so none was answered 202.
  auto limited = open_sqlite_store(dir / "dmz.db", {.busy_timeout_ms = 5000, .max_pages = 64});
  REQUIRE(limited.ok());
  std::vector<DeliveryId> big;
  for (int i = 0; i < 400; ++i)
    big.push_back({"big-" + std::to_string(i) + std::string(900, 'x'), 20});
  auto full = (*limited)->record_deliveries(big);
  REQUIRE_FALSE(full.ok());
  CHECK(full.code() == Code::kUnavailable);
  CHECK(sql_scalar(dir / "dmz.db", "SELECT count(*) FROM deliveries") == "4");
  CHECK((*limited)->record_delivery("d", 30).value());  // a small batch still fits
}

TEST_CASE("store: a lease is held by one owner until it expires") {
  test::TempDir dir;
  auto store = open_store(dir / "dmz.db");
  CHECK(store->acquire_lease("acme/a", "host-1", 1000, 500).value() == true);
  CHECK(store->acquire_lease("acme/a", "host-2", 1200, 500).value() == false);
  CHECK(store->acquire_lease("acme/a", "host-1", 1400, 500).value() == true);  // renewed to 1900
  CHECK(store->acquire_lease("acme/a", "host-2", 1800, 500).value() == false);
  CHECK(store->acquire_lease("acme/a", "host-2", 1901, 500).value() == true);  // expired
  CHECK(store->acquire_lease("acme/b", "host-1", 1901, 500).value() == true);  // per repository
  REQUIRE(store->release_lease("acme/a", "host-1").ok());  // not the owner: nothing happens
  CHECK(store->acquire_lease("acme/a", "host-1", 1902, 500).value() == false);
  REQUIRE(store->release_lease("acme/a", "host-2").ok());
  CHECK(store->acquire_lease("acme/a", "host-1", 1903, 500).value() == true);
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
      Writer w{*store, RepoState{s.repo}};
      for (int i = 0; i < 6; ++i) {
        auto r = store->record_delivery("shared-" + std::to_string(i), i);  // all threads race
        if (!r.ok())
          ++failed;
        else if (*r)
          ++inserted;
        s.next_candidate = static_cast<CandidateId>(100 + i);
        if (!w.save(s, "k").ok()) ++failed;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failed == 0);
  CHECK(inserted == 6);  // each id won by exactly one thread
  for (int t = 0; t < 4; ++t) {
    CHECK(store->events("acme/t" + std::to_string(t), 100)->size() == 6);
    CHECK(must_load(*store, "acme/t" + std::to_string(t)).state.prs.size() ==
          rich_state().prs.size());
  }
}

TEST_CASE("store: a failed save leaves the previous state, log and outbox intact") {
  test::TempDir dir;
  auto store = open_store(dir / "dmz.db");
  RepoState s = rich_state();
  Writer w{*store, RepoState{s.repo}};
  w.must_save(s, "good");

  SUBCASE("an invalid state: two candidates with one id (a primary-key violation)") {
    RepoState bad = s;
    bad.prs.erase(1);
    bad.train[1].id = bad.train[0].id;
    auto st = w.save(bad, "bad", {}, {}, {Notify{1, NoticeKind::Info, Reason::None, "x"}});
    REQUIRE_FALSE(st.ok());
    CHECK(st.code() == Code::kInternal);  // our bug, not the database's
    CHECK(st.message().find("UNIQUE constraint failed: candidates") != std::string::npos);
  }
  SUBCASE("a fault injected half-way through the changed rows") {
    // A trigger on a second connection fails the write of PR #7 (after others went in).
    sql_scalar(dir / "dmz.db",
               "CREATE TRIGGER inject BEFORE INSERT ON prs WHEN NEW.number = 7"
               " BEGIN SELECT RAISE(ABORT, 'injected fault'); END");
    RepoState bad = s;
    bad.master = sha('f');
    for (auto& [n, pr] : bad.prs) pr.title = "changed";
    auto st = w.save(bad, "bad");
    REQUIRE_FALSE(st.ok());
    CHECK(st.message().find("injected fault") != std::string::npos);
    sql_scalar(dir / "dmz.db", "DROP TRIGGER inject");
  }
  check_equal(must_load(*store, "acme/widgets").state, s);
  CHECK(must_load(*store, "acme/widgets").version == 1);
  auto ev = store->events("acme/widgets", 10);
  REQUIRE(ev->size() == 1);
  CHECK((*ev)[0].kind == "good");
  CHECK(store->outbox("acme/widgets")->empty());
  // The store is still usable after the rollback.
  s.prs.erase(1);
  w.must_save(s, "after");
  CHECK(must_load(*store, "acme/widgets").state.prs.count(1) == 0);
}

TEST_CASE("store: a full disk or a locked database is unavailable (503), not a conflict") {
  test::TempDir dir;
  auto store = open_store(dir / "dmz.db");
  RepoState s = rich_state();
  Writer w{*store, RepoState{s.repo}};
  w.must_save(s);

  SUBCASE("full: the database may not grow") {
    // A cap on the database's pages makes SQLite report SQLITE_FULL, exactly as a full disk.
    auto limited = open_sqlite_store(dir / "dmz.db", {.busy_timeout_ms = 5000, .max_pages = 64});
    REQUIRE(limited.ok());
    RepoState big = s;
    big.prs[1].details.assign(1, std::string(1 << 20, 'x'));  // 1 MiB: more than 64 pages
    Writer wl{**limited, s, w.version};
    auto r = wl.save(big);
    REQUIRE_FALSE(r.ok());
    CHECK(r.code() == Code::kUnavailable);
    CHECK(r.message().find("full") != std::string::npos);
  }
  SUBCASE("locked: another writer holds the database") {
    auto impatient = open_sqlite_store(dir / "dmz.db", {.busy_timeout_ms = 50});
    REQUIRE(impatient.ok());
    sqlite3* other = nullptr;
    REQUIRE(sqlite3_open((dir / "dmz.db").c_str(), &other) == SQLITE_OK);
    REQUIRE(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
    RepoState next = s;
    next.master = sha('2');
    Writer wi{**impatient, s, w.version};
    auto r = wi.save(next);
    sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(other);
    REQUIRE_FALSE(r.ok());
    CHECK(r.code() == Code::kUnavailable);
  }
  check_equal(must_load(*store, s.repo).state, s);
}

// A store at `file` that saved rich_state(), for the tests that then break its rows.
std::unique_ptr<Store> store_with_rich_state(const std::filesystem::path& file) {
  auto store = open_store(file);
  Writer w{*store, RepoState{"acme/widgets"}};
  w.must_save(rich_state());
  return store;
}

TEST_CASE("store: an unknown enum name in the database is reported, not guessed") {
  test::TempDir dir;
  auto store = store_with_rich_state(dir / "dmz.db");
  sql_scalar(dir / "dmz.db", "UPDATE prs SET status='limbo' WHERE number=3");
  auto r = store->load("acme/widgets");
  REQUIRE_FALSE(r.ok());
  CHECK(r.message() == "store: corrupt state for acme/widgets: PR #3 has unknown status 'limbo'");
}

TEST_CASE("store: a probe's PRs that are not a JSON array of numbers are reported, not guessed") {
  test::TempDir dir;
  auto store = store_with_rich_state(dir / "dmz.db");
  sql_scalar(dir / "dmz.db", "UPDATE candidates SET with_prs='[2, \"x\"]' WHERE probe=1");
  auto r = store->load("acme/widgets");
  REQUIRE_FALSE(r.ok());
  CHECK(r.message() ==
        "store: corrupt state for acme/widgets: candidate 7 with_prs holds a non-number");
}

TEST_CASE("store: a tally that is not two or three counts is reported, not guessed") {
  test::TempDir dir;
  auto store = store_with_rich_state(dir / "dmz.db");
  // An older row's two counts read as no expectation; a fourth count is not a tally.
  sql_scalar(dir / "dmz.db", "UPDATE repos SET observed='{\"risk\": {\"overlap:0\": [5, 1]}}'");
  auto old = store->load("acme/widgets");
  REQUIRE(old.ok());
  REQUIRE(old.value().has_value());
  CHECK(old.value()->state.observed.risk.at("overlap:0") == Tally{5, 1, 0});
  sql_scalar(dir / "dmz.db",
             "UPDATE repos SET observed='{\"risk\": {\"overlap:0\": [5, 1, 2, 3]}}'");
  auto r = store->load("acme/widgets");
  REQUIRE_FALSE(r.ok());
  CHECK(r.message() ==
        "store: corrupt state for acme/widgets: observed risk of 'overlap:0' is "
        "not [passed, failed] or [passed, failed, expected]");
}

TEST_CASE("store: a statement that cannot be prepared is an error, and leaves no transaction") {
  test::TempDir dir;
  auto store = store_with_rich_state(dir / "dmz.db");
  // The load's statement for the checks cannot be prepared while the table is away.
  sql_scalar(dir / "dmz.db", "ALTER TABLE checks RENAME TO checks_away");
  auto r = store->load("acme/widgets");
  REQUIRE_FALSE(r.ok());
  CHECK(r.code() == Code::kInternal);
  CHECK(r.message().find("checks") != std::string::npos);
  // Its read transaction ended: a writer can begin.
  CHECK(store->acquire_lease("acme/widgets", "me", 1000, 500).value());
  // The statement is prepared again once it can be.
  sql_scalar(dir / "dmz.db", "ALTER TABLE checks_away RENAME TO checks");
  check_equal(must_load(*store, "acme/widgets").state, rich_state());
}

TEST_CASE("store: a reader that stops at a corrupt row keeps no snapshot") {
  test::TempDir dir;
  const auto db = dir / "dmz.db";
  auto store = open_store(db);
  RepoState s = rich_state();
  Writer w{*store, RepoState{s.repo}};
  std::vector<HistoryEntry> outcomes;
  for (int n : {8, 9}) outcomes.push_back(HistoryEntry::of(s.repo, s.prs.at(n)));
  REQUIRE(
      w.save(s, "test", {}, outcomes, {Notify{1, NoticeKind::Info, Reason::None, "x", sha('a')}})
          .ok());
  // While a statement of the store's connection holds a snapshot, a checkpoint cannot finish.
  auto checkpoint_busy = [&] { return sql_scalar(db, "PRAGMA wal_checkpoint(TRUNCATE)"); };
  REQUIRE(checkpoint_busy() == "0");

  sql_scalar(db, "UPDATE outcomes SET status = 'limbo'");
  CHECK_FALSE(store->history(s.repo, 0, 10).ok());
  CHECK(checkpoint_busy() == "0");
  sql_scalar(db, "UPDATE outbox SET kind = 'limbo'");
  CHECK_FALSE(store->outbox(s.repo).ok());
  CHECK(checkpoint_busy() == "0");
  sql_scalar(db, "UPDATE prs SET status = 'limbo' WHERE number = 3");
  CHECK_FALSE(store->load(s.repo).ok());
  CHECK(checkpoint_busy() == "0");
}

TEST_CASE("store: a database from a newer dmzbot is refused") {
  test::TempDir dir;
  { auto store = open_store(dir / "dmz.db"); }
  sql_scalar(dir / "dmz.db", "UPDATE schema_version SET version = 99");
  auto r = open_sqlite_store(dir / "dmz.db");
  REQUIRE_FALSE(r.ok());
  CHECK(r.message().find("schema version 99 is newer") != std::string::npos);
}

TEST_CASE("store: a database of schema version 2 is migrated with its state") {
  test::TempDir dir;
  const auto file = dir / "old.db";
  // The tables of version 2 as an older dmzbot left them, with one PR and one approval.
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
  const char* v2 = R"sql(
    CREATE TABLE schema_version(version INTEGER NOT NULL); INSERT INTO schema_version VALUES(2);
    CREATE TABLE repos(name TEXT PRIMARY KEY, master TEXT NOT NULL,
      next_candidate INTEGER NOT NULL, retry_after INTEGER NOT NULL);
    CREATE TABLE prs(repo TEXT NOT NULL, number INTEGER NOT NULL, branch TEXT NOT NULL,
      author TEXT NOT NULL, title TEXT NOT NULL, head TEXT NOT NULL, status TEXT NOT NULL,
      reason TEXT NOT NULL, details TEXT NOT NULL, queued_at INTEGER NOT NULL,
      candidate INTEGER, PRIMARY KEY(repo, number));
    CREATE TABLE approvals(repo TEXT NOT NULL, number INTEGER NOT NULL, sha TEXT NOT NULL,
      approver TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY(repo, number));
    CREATE TABLE candidates(repo TEXT NOT NULL, id INTEGER NOT NULL, position INTEGER NOT NULL,
      base TEXT NOT NULL, sha TEXT NOT NULL, status TEXT NOT NULL, created_at INTEGER NOT NULL,
      pushed_at INTEGER NOT NULL, policy_passed INTEGER NOT NULL DEFAULT 0,
      PRIMARY KEY(repo, id), UNIQUE(repo, position));
    CREATE TABLE candidate_prs(repo TEXT NOT NULL, candidate INTEGER NOT NULL,
      position INTEGER NOT NULL, number INTEGER NOT NULL, PRIMARY KEY(repo, candidate, position));
    CREATE TABLE checks(repo TEXT NOT NULL, candidate INTEGER NOT NULL, context TEXT NOT NULL,
      state TEXT NOT NULL, description TEXT NOT NULL, url TEXT NOT NULL, at INTEGER NOT NULL,
      PRIMARY KEY(repo, candidate, context));
    CREATE TABLE events(seq INTEGER PRIMARY KEY AUTOINCREMENT, repo TEXT NOT NULL,
      kind TEXT NOT NULL, json TEXT NOT NULL, at INTEGER NOT NULL);
    CREATE INDEX events_by_repo ON events(repo, seq);
    CREATE TABLE deliveries(id TEXT PRIMARY KEY, at INTEGER NOT NULL);
    INSERT INTO repos VALUES('acme/old', 'aaaa', 3, 0);
    INSERT INTO prs VALUES('acme/old', 4, 'feature/x', 'ann', 'T', 'bbbb', 'queued', '', '[]',
      77, NULL);
    INSERT INTO approvals VALUES('acme/old', 4, 'bbbb', 'mm', 70);
  )sql";
  REQUIRE_MESSAGE(sqlite3_exec(db, v2, nullptr, nullptr, nullptr) == SQLITE_OK, sqlite3_errmsg(db));
  sqlite3_close(db);

  auto store = open_store(file);
  Loaded back = must_load(*store, "acme/old");
  CHECK(back.version == 1);
  CHECK(back.state.master == "aaaa");
  REQUIRE(back.state.prs.count(4));
  CHECK(back.state.prs.at(4).status == PrStatus::Queued);
  CHECK(back.state.prs.at(4).reason_code == Reason::None);
  CHECK(back.state.prs.at(4).approval->approver == "mm");
  CHECK(sql_scalar(file, "SELECT version FROM schema_version") == "18");
  CHECK(back.state.prs.at(4).priority == 0);
  CHECK(back.state.prs.at(4).signers.empty());     // migration 7: nobody known to have signed
  CHECK(back.state.prs.at(4).approvers.empty());   // migration 8: no counted approval known
  CHECK(back.state.prs.at(4).merge_errors == 0);   // migration 10
  CHECK(back.state.prs.at(4).judged_epoch == 0);   // migration 16: judged again if requeued
  CHECK(back.state.prs.at(4).judged_tag.empty());  // migration 18: no tag object judged
  CHECK(back.state.prs.at(4).precheck == CheckState::Pending);
  CHECK(back.state.window == 0);
  CHECK(back.state.policy_epoch == 0);
  CHECK(back.state.trust_root.empty());  // migration 15: read again at the start
  CHECK(back.state.observed == Observed{});
  Writer w{*store, back.state, back.version};
  RepoState next = back.state;
  next.master = "cccc";
  w.must_save(next);
  CHECK(must_load(*store, "acme/old").version == 2);
}

// Without migration 18's tag object judged.
void undo_migration_18(const std::filesystem::path& file) {
  sql_scalar(file, "ALTER TABLE prs DROP COLUMN judged_tag");
}

// Without migration 17's PRs a probe is built with.
void undo_migration_17(const std::filesystem::path& file) {
  undo_migration_18(file);
  sql_scalar(file, "ALTER TABLE candidates DROP COLUMN with_prs");
}

// Without migration 16's epoch of each PR's verdict.
void undo_migration_16(const std::filesystem::path& file) {
  undo_migration_17(file);
  sql_scalar(file, "ALTER TABLE prs DROP COLUMN judged_epoch");
}

// Without migration 15's trust root digest.
void undo_migration_15(const std::filesystem::path& file) {
  undo_migration_16(file);
  sql_scalar(file, "ALTER TABLE repos DROP COLUMN trust_root");
}

// Without migration 14's policy epoch.
void undo_migration_14(const std::filesystem::path& file) {
  undo_migration_15(file);
  sql_scalar(file, "ALTER TABLE repos DROP COLUMN policy_epoch");
}

// Without migration 13's indexes for pruning history.
void undo_migration_13(const std::filesystem::path& file) {
  undo_migration_14(file);
  for (const char* index : {"events_by_time", "outcomes_by_time", "event_prs_by_seq"})
    sql_scalar(file, std::string("DROP INDEX ") + index);
}

// The prs table without migration 12's probe bookkeeping.
void undo_migration_12(const std::filesystem::path& file) {
  undo_migration_13(file);
  sql_scalar(file, "ALTER TABLE prs DROP COLUMN probed_with");
  sql_scalar(file, "ALTER TABLE prs DROP COLUMN untested");
}

void undo_migration_11(const std::filesystem::path& file) {
  undo_migration_12(file);
  sql_scalar(file, "ALTER TABLE candidates DROP COLUMN paused_ms");
}

// The prs table without migration 10's merge error count.
void undo_migration_10(const std::filesystem::path& file) {
  undo_migration_11(file);
  sql_scalar(file, "ALTER TABLE prs DROP COLUMN merge_errors");
}

// The deliveries table as dmzbot of schema version 8 left it: ids and times only.
void undo_migration_9(const std::filesystem::path& file) {
  undo_migration_10(file);
  sql_scalar(file, "DROP INDEX deliveries_unhandled");
  for (const char* column : {"forge", "headers", "body", "handled"})
    sql_scalar(file, std::string("ALTER TABLE deliveries DROP COLUMN ") + column);
}

TEST_CASE("store: a database of schema version 17 loads its tag PRs as judged on no tag") {
  test::TempDir dir;
  const auto file = dir / "v17.db";
  const RepoState s = rich_state();
  REQUIRE(s.prs.at(10).judged_tag == sha('t'));
  {
    auto store = open_store(file);
    Writer w{*store, RepoState{s.repo}};
    w.must_save(s);
    CHECK(must_load(*store, s.repo).state.prs.at(10).judged_tag == sha('t'));  // round trip
  }
  undo_migration_18(file);
  sql_scalar(file, "UPDATE schema_version SET version = 17");
  auto store = open_store(file);
  CHECK(sql_scalar(file, "SELECT version FROM schema_version") == "18");
  Loaded back = must_load(*store, s.repo);
  // What dmzbot before it judged pinned no tag object: its merge refuses the tag until a new
  // approval has it judged (GitWorker, pinned_mergetag).
  CHECK(back.state.prs.at(10).judged_tag.empty());
  CHECK(back.state.prs.at(10).branch == "tags/v10");
  CHECK(back.state.train.size() == 3);
}

TEST_CASE("store: a database of schema version 16 loads its probes as built with no PRs") {
  test::TempDir dir;
  const auto file = dir / "v16.db";
  const RepoState s = rich_state();
  {
    auto store = open_store(file);
    Writer w{*store, RepoState{s.repo}};
    w.must_save(s);
  }
  undo_migration_17(file);
  sql_scalar(file, "UPDATE schema_version SET version = 16");
  auto store = open_store(file);
  CHECK(sql_scalar(file, "SELECT version FROM schema_version") == "18");
  Loaded back = must_load(*store, s.repo);
  REQUIRE(back.state.train.size() == 3);
  CHECK(back.state.train[2].probe);
  CHECK(back.state.train[2].with.empty());  // what dmzbot before it built: no PRs with it
  CHECK(back.state.train[1].paused_ms == 42'000);
}

TEST_CASE("store: a database of schema version 7 gains the counted approvers, keeping the rest") {
  test::TempDir dir;
  const auto file = dir / "v7.db";
  RepoState s = rich_state();
  PullRequest merged = s.prs.at(7);
  merged.finished_at = 9000;
  merged.reason_code = Reason::Merged;
  {
    auto store = open_store(file);
    Writer w{*store, RepoState{s.repo}};
    w.must_save(s);
    RepoState next = s;
    next.prs.erase(7);
    REQUIRE(w.save(next, "master_pushed", {merged}, {HistoryEntry::of(s.repo, merged)}).ok());
  }
  // The database as dmzbot of schema version 7 left it: no approvers columns.
  sql_scalar(file, "ALTER TABLE prs DROP COLUMN approvers");
  sql_scalar(file, "ALTER TABLE pr_archive DROP COLUMN approvers");
  undo_migration_9(file);
  sql_scalar(file, "UPDATE schema_version SET version = 7");
  CHECK(sql_scalar(file, "SELECT count(*) FROM pragma_table_info('prs') WHERE name='approvers'") ==
        "0");

  auto store = open_store(file);
  CHECK(sql_scalar(file, "SELECT version FROM schema_version") == "18");
  Loaded back = must_load(*store, s.repo);
  REQUIRE(back.state.prs.count(3));
  CHECK(back.state.prs.at(3).signers == std::vector<std::string>{"alice", "bob"});  // kept
  CHECK(back.state.prs.at(3).approvers.empty());  // not known until it is judged again
  auto archived = store->archived(s.repo, 7);
  REQUIRE(archived.ok());
  REQUIRE(archived->has_value());
  CHECK((*archived)->signers == std::vector<std::string>{"carol"});
  CHECK((*archived)->approvers.empty());

  // And they are written from now on.
  Writer w{*store, back.state, back.version};
  RepoState next = back.state;
  next.prs.at(3).approvers = {"erin"};
  w.must_save(next);
  CHECK(must_load(*store, s.repo).state.prs.at(3).approvers == std::vector<std::string>{"erin"});
}

TEST_CASE("store: a delivery's request is kept byte for byte and dropped once handled") {
  test::TempDir dir;
  auto store = open_store(dir / "dmz.db");
  std::string body = "payload=%7B%7D&x";
  body += std::string("\0\xff\x01", 3);  // a webhook is signed byte for byte
  REQUIRE(store->record_deliveries({{"github:z", 7, "github", R"({"a":"b"})", body}}).ok());
  auto got = store->unhandled_deliveries(0, 10);
  REQUIRE(got.ok());
  REQUIRE(got->size() == 1);
  CHECK((*got)[0].body == body);
  CHECK(sql_scalar(dir / "dmz.db", "SELECT handled FROM deliveries WHERE id = 'github:z'") == "0");
  REQUIRE(store->mark_deliveries_handled({"github:z"}).ok());
  CHECK(sql_scalar(dir / "dmz.db",
                   "SELECT handled || '/' || ifnull(body, 'null') || '/' || headers"
                   " FROM deliveries WHERE id = 'github:z'") == "1/null/{}");
  CHECK(store->unhandled_deliveries(0, 10)->empty());
  CHECK_FALSE(store->record_delivery("github:z", 8).value());
}

TEST_CASE("store: a database of schema version 8 keeps its delivery ids, all handled") {
  test::TempDir dir;
  const auto file = dir / "v8.db";
  {
    auto store = open_store(file);
    REQUIRE(store->record_delivery("github:old", 10).value());
  }
  undo_migration_9(file);
  sql_scalar(file, "UPDATE schema_version SET version = 8");
  CHECK(sql_scalar(file, "SELECT count(*) FROM pragma_table_info('deliveries')") == "2");

  auto store = open_store(file);
  CHECK(sql_scalar(file, "SELECT version FROM schema_version") == "18");
  CHECK(store->unhandled_deliveries(0, 10)->empty());             // nothing to handle again
  CHECK_FALSE(store->record_delivery("github:old", 20).value());  // still a duplicate
  REQUIRE(store->record_deliveries({{"github:new", 30, "github", "{}", "{}"}}).ok());
  auto got = store->unhandled_deliveries(0, 10);
  REQUIRE(got->size() == 1);
  CHECK((*got)[0].id == "github:new");
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
    Writer w{*store, RepoState{"acme/crash"}};
    w.must_save(version_state(0), "v");
  }
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {  // child: save versions 1, 2, ... forever; report each committed version
    close(fds[0]);
    auto r = open_sqlite_store(file);
    if (!r.ok()) _exit(3);
    Writer w{**r, version_state(0), 1};
    for (int v = 1;; ++v) {
      if (!w.save(version_state(v), "v", {}, {}, {}, v).ok()) _exit(4);
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
  Loaded got = must_load(*store, "acme/crash");
  INFO("last acknowledged version: ", last, ", loaded master: ", got.state.master);
  // Every acknowledged save survived; at most the one in flight may have committed too.
  int v = std::stoi(got.state.master.substr(1));
  CHECK(v >= last);
  CHECK(v <= last + 1);
  check_equal(got.state, version_state(v));
  CHECK(got.version == static_cast<std::uint64_t>(v + 1));
  auto ev = store->events("acme/crash", 1'000'000);
  REQUIRE(ev.ok());
  CHECK(ev->size() == static_cast<std::size_t>(v + 1));  // the log commits with the state
  CHECK(ev->back().at == v);
}

}  // namespace
}  // namespace dmz

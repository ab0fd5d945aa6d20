#include "bot/service/delivery_recorder.hpp"

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bot/store/fault_injection.hpp"
#include "bot/store/store_test_support.hpp"
#include "tests/support.hpp"

namespace dmz {

namespace {

using namespace std::chrono_literals;

// Whether `id` is committed, read through a connection of its own (it sees only commits).
// Plain code, no assertions: it runs on the recorder's thread too.
bool committed(const std::filesystem::path& db, const std::string& id) {
  sqlite3* c = nullptr;
  bool found = false;
  if (sqlite3_open_v2(db.c_str(), &c, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* q = nullptr;
    if (sqlite3_prepare_v2(c, "SELECT count(*) FROM deliveries WHERE id = ?1", -1, &q, nullptr) ==
        SQLITE_OK) {
      sqlite3_bind_text(q, 1, id.c_str(), -1, SQLITE_TRANSIENT);
      found = sqlite3_step(q) == SQLITE_ROW && sqlite3_column_int(q, 0) == 1;
    }
    sqlite3_finalize(q);
  }
  sqlite3_close(c);
  return found;
}

// The body of delivery `id` as committed (read as `committed` does), or "" if there is none.
std::string committed_body(const std::filesystem::path& db, const std::string& id) {
  sqlite3* c = nullptr;
  std::string body;
  if (sqlite3_open_v2(db.c_str(), &c, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* q = nullptr;
    if (sqlite3_prepare_v2(c, "SELECT body FROM deliveries WHERE id = ?1", -1, &q, nullptr) ==
        SQLITE_OK) {
      sqlite3_bind_text(q, 1, id.c_str(), -1, SQLITE_TRANSIENT);
      if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_blob(q, 0))
        body.assign(static_cast<const char*>(sqlite3_column_blob(q, 0)),
                    static_cast<std::size_t>(sqlite3_column_bytes(q, 0)));
    }
    sqlite3_finalize(q);
  }
  sqlite3_close(c);
  return body;
}

DeliveryId with_request(std::string id, queue::Millis at) {
  std::string body = R"({"delivery":")" + id + R"("})";
  return DeliveryId{std::move(id), at, "github", R"({"x-github-event":"issue_comment"})", body};
}

// Waits (with a deadline) until `done` holds.
bool eventually(const std::function<bool()>& done) {
  for (auto until = std::chrono::steady_clock::now() + 10s;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::yield();
  }
}

// The answers, in the order they came, waited for with a deadline.
struct Answers {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<std::string, Result<bool>>> got;

  DeliveryRecorder::Answer for_id(std::string id, std::function<void()> also = {}) {
    return [this, id, also](Result<bool> r) {
      if (also) also();
      std::lock_guard lock(mu);
      got.emplace_back(id, std::move(r));
      cv.notify_all();
    };
  }
  bool wait_for(std::size_t n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, 10s, [&] { return got.size() >= n; });
  }
};

// Holds the recorder inside the store (as a slow fsync would) until the test opens it.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool held = false, opened = false;

  void hold() {  // on the recorder's thread
    std::unique_lock lock(mu);
    held = true;
    cv.notify_all();
    cv.wait_for(lock, 10s, [&] { return opened; });
  }
  bool wait_held() {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, 10s, [&] { return held; });
  }
  void open() {
    {
      std::lock_guard lock(mu);
      opened = true;
    }
    cv.notify_all();
  }
};

// A SQLite store in a temp dir, behind a fault injector the tests arm.
struct Db {
  test::TempDir dir;
  std::filesystem::path file = dir / "dmz.db";
  std::unique_ptr<Store> real = open_store(file);
  FaultInjectionStore store{*real};
};

}  // namespace

TEST_CASE("DeliveryRecorder: ids arriving during a commit share the next one, deduplicated") {
  Db db;
  FaultInjectionStore& store = db.store;
  // The first batch waits (inside the store) until the test has queued four more ids, as a
  // slow fsync would hold it while a burst arrives.
  Gate gate;
  std::vector<std::vector<std::string>> batches;  // written before the gate, read after it
  store.before_deliveries = [&](const std::vector<DeliveryId>& ids) {
    std::vector<std::string> names;
    for (const auto& d : ids) names.push_back(d.id);
    batches.push_back(names);
    if (batches.size() == 1) gate.hold();
  };
  Answers answers;
  // Each answer checks that its id was committed before it was given.
  std::atomic<int> answered_before_commit{0};
  auto check_committed = [&](const std::string& id) {
    return [&, id] {
      if (!committed(db.file, id)) ++answered_before_commit;
    };
  };
  {
    DeliveryRecorder recorder(store);
    recorder.record("a", 1, answers.for_id("a", check_committed("a")));
    // Wait until the recorder holds "a" inside the store, then queue the burst.
    REQUIRE(gate.wait_held());
    for (std::string id : {"b", "c", "b", "a"})
      recorder.record(id, 2, answers.for_id(id, check_committed(id)));
    gate.open();
    REQUIRE(answers.wait_for(5));
    CHECK(recorder.batches() == 2);
  }
  REQUIRE(batches.size() == 2);
  CHECK(batches[1] == std::vector<std::string>{"b", "c", "b", "a"});
  std::vector<std::string> order;
  std::vector<bool> fresh;
  for (auto& [id, r] : answers.got) {
    REQUIRE(r.ok());
    order.push_back(id);
    fresh.push_back(*r);
  }
  CHECK(order == std::vector<std::string>{"a", "b", "c", "b", "a"});  // the order they came
  // The second "b" arrived in the same batch as the first: a redelivery, as is the old "a".
  CHECK(fresh == std::vector<bool>{true, true, true, false, false});
  CHECK(answered_before_commit == 0);
}

TEST_CASE("DeliveryRecorder: a failed batch answers every id in it with the error") {
  Db db;
  FaultInjectionStore& store = db.store;
  store.fail_deliveries = 1;
  Answers answers;
  DeliveryRecorder recorder(store);
  recorder.record("x", 1, answers.for_id("x"));
  REQUIRE(answers.wait_for(1));
  CHECK(answers.got[0].second.code() == Code::kUnavailable);
  CHECK_FALSE(committed(db.file, "x"));
  recorder.record("x", 2, answers.for_id("x"));  // GitHub's manual redelivery is taken
  REQUIRE(answers.wait_for(2));
  CHECK(answers.got[1].second.value() == true);
}

TEST_CASE("DeliveryRecorder: stop answers what waits; later ids are refused at once") {
  Db db;
  Answers answers;
  DeliveryRecorder recorder(*db.real);
  for (int i = 0; i < 50; ++i) recorder.record("id-" + std::to_string(i), i, answers.for_id("x"));
  recorder.stop();
  {
    std::lock_guard lock(answers.mu);
    REQUIRE(answers.got.size() == 50);
    for (auto& [id, r] : answers.got) CHECK(r.value() == true);
  }
  CHECK(committed(db.file, "id-49"));
  recorder.record("late", 99, answers.for_id("late"));
  REQUIRE(answers.wait_for(51));
  CHECK(answers.got[50].second.code() == Code::kUnavailable);
  CHECK_FALSE(committed(db.file, "late"));
}

TEST_CASE("DeliveryRecorder: a request is written in its id's batch, before the answer") {
  Db db;
  FaultInjectionStore& store = db.store;
  std::mutex seen_mu;
  std::vector<std::vector<DeliveryId>> seen;  // each batch as the store was asked to write it
  store.before_deliveries = [&](const std::vector<DeliveryId>& ids) {
    std::lock_guard lock(seen_mu);
    seen.push_back(ids);
  };
  Answers answers;
  std::atomic<int> answered_without_body{0};
  DeliveryRecorder recorder(store);
  for (std::string id : {"github:1", "github:2", "github:1"})
    recorder.record(with_request(id, 5), answers.for_id(id, [&, id] {
      if (committed_body(db.file, id) != with_request(id, 5).body) ++answered_without_body;
    }));
  REQUIRE(answers.wait_for(3));
  CHECK(answered_without_body == 0);
  {
    std::lock_guard lock(seen_mu);
    std::size_t with_body = 0;
    for (const auto& batch : seen)
      for (const auto& d : batch) {
        CHECK(d.forge == "github");
        CHECK(d.body == with_request(d.id, 5).body);
        ++with_body;
      }
    CHECK(with_body == 3);
    CHECK(seen.size() == recorder.batches());
  }
  auto unhandled = store.unhandled_deliveries(0, 10);
  REQUIRE(unhandled.ok());
  REQUIRE(unhandled->size() == 2);
  CHECK((*unhandled)[0].id == "github:1");
  CHECK((*unhandled)[0].headers == R"({"x-github-event":"issue_comment"})");
}

TEST_CASE("DeliveryRecorder: handled deliveries are marked in batches; a failed mark keeps one") {
  Db db;
  FaultInjectionStore& store = db.store;
  Answers answers;
  DeliveryRecorder recorder(store);
  for (std::string id : {"github:a", "github:b", "github:c"})
    recorder.record(with_request(id, 1), answers.for_id(id));
  REQUIRE(answers.wait_for(3));
  recorder.handled("github:a");
  recorder.handled("github:b");
  REQUIRE(eventually([&] { return recorder.marked() == 2; }));
  auto left = store.unhandled_deliveries(0, 10);
  REQUIRE(left->size() == 1);
  CHECK((*left)[0].id == "github:c");
  CHECK(committed_body(db.file, "github:a").empty());  // the request is dropped

  store.fail_marks = 1;  // a mark written alone fails now
  recorder.handled("github:c");
  REQUIRE(eventually([&] { return store.fail_marks == 0; }));
  recorder.stop();
  CHECK(recorder.marked() == 2);
  CHECK(store.unhandled_deliveries(0, 10)->size() == 1);  // handled again at the next start
  recorder.handled("github:c");                           // after stop: dropped, no crash
  CHECK(store.unhandled_deliveries(0, 10)->size() == 1);
}

TEST_CASE("DeliveryRecorder: a mark that failed is written later, not left for a replay") {
  Db db;
  FaultInjectionStore& store = db.store;
  Answers answers;
  DeliveryRecorder recorder(store);
  recorder.record(with_request("github:a", 1), answers.for_id("github:a"));
  REQUIRE(answers.wait_for(1));
  store.fail_marks = 2;  // the database is locked for two attempts
  recorder.handled("github:a");
  // Before: the mark was dropped, and the delivery replayed at the next start, after newer
  // ones were handled (a stale push or close undoing them).
  CHECK(eventually([&] { return recorder.marked() == 1; }));  // within 10 s
  CHECK(store.fail_marks == 0);
  CHECK(store.unhandled_deliveries(0, 10)->empty());
  recorder.stop();
}

TEST_CASE("DeliveryRecorder: marks that failed alone, then rode in a batch, do not hold up stop") {
  Db db;
  FaultInjectionStore& store = db.store;
  Answers answers;
  DeliveryRecorder recorder(store);
  for (std::string id : {"github:a", "github:b"})
    recorder.record(with_request(id, 1), answers.for_id(id));
  REQUIRE(answers.wait_for(2));
  store.fail_marks = 1;  // "a" written alone fails...
  recorder.handled("github:a");
  REQUIRE(eventually([&] { return store.fail_marks == 0; }));
  recorder.record(with_request("github:c", 2), answers.for_id("github:c"));
  REQUIRE(answers.wait_for(3));
  CHECK(recorder.marked() == 1);  // ...then rides in c's batch, which commits
  // The marks work again: stop() writes the one waiting, not leaving it to a replay.
  recorder.handled("github:b");
  recorder.stop();
  CHECK(recorder.marked() == 2);
  auto left = store.unhandled_deliveries(0, 10);
  REQUIRE(left->size() == 1);
  CHECK((*left)[0].id == "github:c");
}

TEST_CASE("DeliveryRecorder: an answer that throws is logged; the others still come") {
  Db db;
  FaultInjectionStore& store = db.store;
  Gate gate;
  store.before_deliveries = [&](const std::vector<DeliveryId>& ids) {
    if (ids.front().id == "github:a") gate.hold();
  };
  Answers answers;
  DeliveryRecorder recorder(store);
  recorder.record(with_request("github:a", 1), answers.for_id("github:a"));
  REQUIRE(gate.wait_held());
  // One batch: b's answer throws, c's is still given.
  recorder.record(with_request("github:b", 2),
                  [](Result<bool>) { throw std::runtime_error("the caller's bug"); });
  recorder.record(with_request("github:c", 3), answers.for_id("github:c"));
  gate.open();
  REQUIRE(answers.wait_for(2));
  recorder.record(with_request("github:d", 4), answers.for_id("github:d"));
  REQUIRE(answers.wait_for(3));  // the thread goes on
  std::lock_guard lock(answers.mu);
  CHECK(answers.got[1].first == "github:c");
  CHECK(answers.got[2].first == "github:d");
}

// A store that throws (a bug) fails the batch: the recorder's thread answers it with the error
// and goes on.
TEST_CASE("DeliveryRecorder: a store that throws is an error for the batch, not a crash") {
  Db db;
  FaultInjectionStore& store = db.store;
  int thrown = 0;
  store.before_deliveries = [&](const std::vector<DeliveryId>&) {
    if (thrown++ == 0) throw std::logic_error("prepare: out of memory");
  };
  Answers answers;
  DeliveryRecorder recorder(store);
  recorder.record(with_request("github:a", 1), answers.for_id("github:a"));
  REQUIRE(answers.wait_for(1));
  recorder.record(with_request("github:b", 2), answers.for_id("github:b"));
  REQUIRE(answers.wait_for(2));
  std::lock_guard lock(answers.mu);
  CHECK(answers.got[0].first == "github:a");
  CHECK(answers.got[0].second.code() == Code::kUnavailable);
  CHECK(answers.got[0].second.message().find("out of memory") != std::string::npos);
  CHECK(answers.got[1].first == "github:b");
  CHECK(answers.got[1].second.ok());
}

TEST_CASE("DeliveryRecorder: marks waiting ride in the next batch of deliveries, one commit") {
  Db db;
  FaultInjectionStore& store = db.store;
  Gate gate;
  store.before_deliveries = [&](const std::vector<DeliveryId>& ids) {
    if (ids.front().id == "github:b") gate.hold();
  };
  store.fail_marks = 1;  // a mark written in a transaction of its own would fail
  Answers answers;
  DeliveryRecorder recorder(store);
  recorder.record(with_request("github:a", 1), answers.for_id("github:a"));
  REQUIRE(answers.wait_for(1));
  // While "b" is being written, "a" is reported handled and "c" arrives: the next
  // transaction records "c" and marks "a".
  recorder.record(with_request("github:b", 2), answers.for_id("github:b"));
  REQUIRE(gate.wait_held());
  recorder.handled("github:a");
  recorder.record(with_request("github:c", 3), answers.for_id("github:c"));
  gate.open();
  REQUIRE(answers.wait_for(3));
  CHECK(recorder.batches() == 3);
  CHECK(recorder.marked() == 1);
  CHECK(store.fail_marks == 1);  // no mark was written alone
  auto left = store.unhandled_deliveries(0, 10);
  REQUIRE(left->size() == 2);
  CHECK((*left)[0].id == "github:b");
  CHECK((*left)[1].id == "github:c");
  CHECK(committed_body(db.file, "github:a").empty());
}

}  // namespace dmz

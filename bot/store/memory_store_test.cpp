// The Store contract, run against both implementations (SQLite and in-memory): every test
// here goes through the interface only, so the simulator's store behaves as the real one.
#include "bot/store/memory_store.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "bot/store/store_test_support.hpp"
#include "tests/support.hpp"

namespace dmz {
namespace {

struct SqliteFactory {
  test::TempDir dir;
  std::unique_ptr<Store> open() { return open_store(dir / "dmz.db"); }
};
struct MemoryFactory {
  std::unique_ptr<Store> open() { return make_memory_store(); }
};

TEST_CASE_TEMPLATE("store contract: a rich state round-trips, then shrinks", F, SqliteFactory,
                   MemoryFactory) {
  F f;
  auto store = f.open();
  CHECK(store->load("acme/widgets")->has_value() == false);
  CHECK(store->has_state().value() == false);
  RepoState s = rich_state();
  Writer w{*store, RepoState{s.repo}};
  w.must_save(s);
  CHECK(store->has_state().value());
  Loaded back = must_load(*store, s.repo);
  check_equal(back.state, s);
  CHECK(back.version == 1);

  s.prs.erase(9);
  s.prs[2].approval.reset();
  s.prs[3].held_by.reset();
  s.prs[3].paths.clear();
  s.train.erase(s.train.begin() + 1, s.train.end());
  s.window = 3;
  s.observed.risk.erase("author:dev1");
  s.master = sha('1');
  w.must_save(s);
  back = must_load(*store, s.repo);
  check_equal(back.state, s);
  CHECK(back.version == 2);
}

TEST_CASE_TEMPLATE("store contract: a stale version is a conflict and writes nothing", F,
                   SqliteFactory, MemoryFactory) {
  F f;
  auto store = f.open();
  RepoState s = rich_state();
  Writer a{*store, RepoState{s.repo}};
  a.must_save(s);
  Writer b = a;
  RepoState sa = s, sb = s;
  sa.prs[1].title = "by a";
  sb.prs[1].title = "by b";
  a.must_save(sa);
  auto r = b.save(sb, "b", {}, {}, {Notify{1, NoticeKind::Info, Reason::None, "x", sha('a')}});
  REQUIRE_FALSE(r.ok());
  CHECK(r.code() == Code::kConflict);
  CHECK(must_load(*store, s.repo).state.prs.at(1).title == "by a");
  CHECK(store->outbox(s.repo)->empty());
  CHECK(store->events(s.repo, 10)->size() == 2);
  Writer c{*store, RepoState{s.repo}};  // a second "new" repository of that name
  CHECK(c.save(s).code() == Code::kConflict);
}

TEST_CASE_TEMPLATE("store contract: a delta naming a PR the state lacks is refused whole", F,
                   SqliteFactory, MemoryFactory) {
  F f;
  auto store = f.open();
  RepoState s = rich_state();
  Writer w{*store, RepoState{s.repo}};
  w.must_save(s);
  RepoState next = s;
  next.master = sha('e');
  Change c;
  c.state = &next;
  c.delta = diff(s, next);
  c.delta.changed_prs.push_back(99);
  c.expected_version = w.version;
  auto r = store->save(c);
  REQUIRE_FALSE(r.ok());
  CHECK(r.code() == Code::kInternal);
  check_equal(must_load(*store, s.repo).state, s);
}

TEST_CASE_TEMPLATE("store contract: a change without a state is refused", F, SqliteFactory,
                   MemoryFactory) {
  F f;
  auto store = f.open();
  auto r = store->save(Change{});
  REQUIRE_FALSE(r.ok());
  CHECK(r.code() == Code::kInternal);
}

TEST_CASE_TEMPLATE("store contract: the archive keeps a PR's outcome, not its queue bookkeeping", F,
                   SqliteFactory, MemoryFactory) {
  F f;
  auto store = f.open();
  RepoState s = rich_state();
  Writer w{*store, RepoState{s.repo}};
  w.must_save(s);
  PullRequest failed = s.prs.at(2);  // in the strategies' bookkeeping, in every field
  failed.status = PrStatus::Failed;
  failed.reason_code = Reason::BuildFailed;
  failed.finished_at = 9000;
  RepoState next = s;
  next.prs.erase(2);
  REQUIRE(w.save(next, "check_reported", {failed}).ok());
  auto back = store->archived(s.repo, 2);
  REQUIRE(back->has_value());
  PullRequest kept = failed;  // what comes back: the outcome, who approved and signed
  kept.candidate.reset();
  kept.paths.clear();
  kept.precheck = CheckState::Pending;
  kept.held_by.reset();
  kept.group = 0;
  kept.probed = false;
  kept.probed_with.clear();
  kept.untested = 0;
  kept.failures = 0;
  kept.merge_errors = 0;
  kept.judged_epoch = 0;
  check_equal(**back, kept);
  CHECK(**back == kept);  // every field, those check_equal does not name too
}

TEST_CASE_TEMPLATE("store contract: archive, history pages and PR timelines", F, SqliteFactory,
                   MemoryFactory) {
  F f;
  auto store = f.open();
  RepoState s = rich_state();
  Writer w{*store, RepoState{s.repo}};
  w.must_save(s);
  PullRequest merged = s.prs.at(7);
  merged.finished_at = 9000;
  merged.reason_code = Reason::Merged;
  merged.priority = 3;
  RepoState next = s;
  next.prs.erase(7);
  REQUIRE(w.save(next, "master_pushed", {merged}, {HistoryEntry::of(s.repo, merged)}).ok());
  CHECK(must_load(*store, s.repo).state.prs.count(7) == 0);
  auto back = store->archived(s.repo, 7);
  REQUIRE(back->has_value());
  check_equal(**back, merged);
  CHECK(store->archived(s.repo, 99)->has_value() == false);
  CHECK(store->archived("no/repo", 7)->has_value() == false);
  RepoState restored = next;
  restored.prs.emplace(7, merged);
  w.must_save(restored);
  CHECK(store->archived(s.repo, 7)->has_value() == false);

  for (int i = 1; i <= 5; ++i) {
    PullRequest p = make_pr(i % 2 + 1, PrStatus::Failed);
    p.finished_at = 100 + i;
    restored.next_candidate = static_cast<CandidateId>(20 + i);
    REQUIRE(w.save(restored, "e", {}, {HistoryEntry::of(s.repo, p)}).ok());
  }
  auto page = store->history(s.repo, 0, 2);
  REQUIRE(page->size() == 2);
  CHECK((*page)[0].at == 105);
  auto older = store->history(s.repo, (*page)[1].seq, 10);
  REQUIRE(older->size() == 4);  // 103, 102, 101 and the merged one
  CHECK((*older)[0].at == 103);
  CHECK(store->pr_history(s.repo, 2, 10)->size() == 3);  // i = 1, 3, 5
  CHECK(store->history("no/repo", 0, 10)->empty());
}

TEST_CASE_TEMPLATE("store contract: events keep order and the newest within a limit", F,
                   SqliteFactory, MemoryFactory) {
  F f;
  auto store = f.open();
  RepoState s;
  s.repo = "acme/e";
  Writer w{*store, RepoState{s.repo}};
  for (int i = 1; i <= 5; ++i) {
    s.next_candidate = static_cast<CandidateId>(i);
    EventLogEntry e{
        0,      s.repo, "k" + std::to_string(i), "{}", i % 2 ? std::optional<int>(7) : std::nullopt,
        100 + i};
    if (i == 2) e.also = {7, 8};  // a candidate's event: about the PRs it holds
    w.must_save_event(s, std::move(e));
  }
  auto all = store->events(s.repo, 100);
  REQUIRE(all->size() == 5);
  for (std::size_t i = 1; i < all->size(); ++i) CHECK((*all)[i].seq > (*all)[i - 1].seq);
  auto last2 = store->events(s.repo, 2);
  REQUIRE(last2->size() == 2);
  CHECK((*last2)[0].kind == "k4");
  CHECK((*last2)[1].kind == "k5");
  auto of7 = store->pr_events(s.repo, 7, 10);
  REQUIRE(of7->size() == 4);
  CHECK((*of7)[1].kind == "k2");
  CHECK((*of7)[3].kind == "k5");
  auto of8 = store->pr_events(s.repo, 8, 10);
  REQUIRE(of8->size() == 1);
  CHECK((*of8)[0].kind == "k2");
  CHECK(store->events(s.repo, 0)->empty());
}

TEST_CASE_TEMPLATE("store contract: old history is pruned oldest first, a limit at a time", F,
                   SqliteFactory, MemoryFactory) {
  F f;
  auto store = f.open();
  // Two repositories, each with an event and an outcome at 101..106 (the event at 102 is
  // about PRs 7 and 8); the archived PR stays whatever its age.
  RepoState a = rich_state(), b;
  b.repo = "acme/other";
  Writer wa{*store, RepoState{a.repo}}, wb{*store, RepoState{b.repo}};
  for (int i = 1; i <= 6; ++i) {
    for (auto [w, next] : {std::pair{&wa, &a}, std::pair{&wb, &b}}) {
      next->next_candidate = static_cast<CandidateId>(i);
      PullRequest p = make_pr(i, PrStatus::Failed);
      p.finished_at = 100 + i;
      EventLogEntry e{0, next->repo, "k" + std::to_string(i), "{}", i, 100 + i};
      if (i == 2) e.also = {7, 8};
      w->must_save_event(*next, std::move(e), {HistoryEntry::of(next->repo, p)});
    }
  }
  // Before 104: 3 events and 3 outcomes of each repository are old; 4 of each kind at a time.
  auto first = store->prune_history(104, 4);
  REQUIRE(first.ok());
  CHECK(*first == 8);
  auto second = store->prune_history(104, 4);
  REQUIRE(second.ok());
  CHECK(*second == 4);
  CHECK(store->prune_history(104, 4).value() == 0);
  for (const auto& repo : {a.repo, b.repo}) {
    auto left = store->events(repo, 100);
    REQUIRE(left->size() == 3);
    CHECK(left->front().kind == "k4");
    auto outcomes = store->history(repo, 0, 100);
    REQUIRE(outcomes->size() == 3);
    CHECK(outcomes->back().at == 104);
    CHECK(store->pr_events(repo, 8, 10)->empty());  // its only event was pruned
    REQUIRE(store->pr_events(repo, 5, 10)->size() == 1);
    CHECK(store->pr_history(repo, 2, 10)->empty());
    CHECK(store->pr_history(repo, 5, 10)->size() == 1);
  }
  // The hot state is untouched.
  check_equal(must_load(*store, a.repo).state, wa.last);
}

// A clock that stepped back stamps an entry older than the one before it: it is pruned all
// the same (the memory store reads only the front of a history kept in time order).
TEST_CASE_TEMPLATE("store contract: an old entry behind a newer one is pruned too", F,
                   SqliteFactory, MemoryFactory) {
  F f;
  auto store = f.open();
  RepoState s;
  s.repo = "acme/clock";
  Writer w{*store, RepoState{s.repo}};
  for (Millis at : {200, 100, 300}) {
    PullRequest p = make_pr(static_cast<int>(at), PrStatus::Failed);
    p.finished_at = at;
    w.must_save_event(s, EventLogEntry{0, s.repo, "k" + std::to_string(at), "{}", 0, at},
                      {HistoryEntry::of(s.repo, p)});
  }
  CHECK(store->prune_history(150, 100).value() == 2);  // the event and the outcome at 100
  auto left = store->events(s.repo, 10);
  REQUIRE(left->size() == 2);
  CHECK((*left)[0].kind == "k200");
  CHECK((*left)[1].kind == "k300");
  CHECK(store->history(s.repo, 0, 10)->size() == 2);
  CHECK(store->prune_history(150, 100).value() == 0);
}

TEST_CASE_TEMPLATE("store contract: pruning keeps the heads of PRs in the hot state", F,
                   SqliteFactory, MemoryFactory) {
  F f;
  auto store = f.open();
  RepoState s;
  s.repo = "acme/p";
  Writer w{*store, RepoState{s.repo}};
  s.prs[1] = make_pr(1, PrStatus::Queued);  // open for a long time; #2 left the hot state
  w.must_save_event(s, EventLogEntry{0, s.repo, "pr_opened", R"({"head":"h1"})", 1, 100});
  w.must_save_event(s, EventLogEntry{0, s.repo, "pr_opened", R"({"head":"h2"})", 2, 101});
  w.must_save_event(s, EventLogEntry{0, s.repo, "merge_requested", "{}", 1, 102});
  w.must_save_event(s, EventLogEntry{0, s.repo, "pr_pushed", R"({"head":"h3"})", 1, 103});
  REQUIRE(store->prune_history(1000, 100).value() == 2);
  auto left = store->pr_events(s.repo, 1, 10);
  REQUIRE(left->size() == 2);
  CHECK((*left)[0].kind == "pr_opened");
  CHECK((*left)[1].kind == "pr_pushed");
  CHECK(store->pr_events(s.repo, 2, 10)->empty());
  CHECK(store->prune_history(1000, 100).value() == 0);
}

// When dmzbot learned a PR's heads is read however many events named the PR since (a PR built
// in many candidates): a merge command pins the head the PR had when it was written.
TEST_CASE_TEMPLATE("store contract: a PR's heads are read past any number of its other events", F,
                   SqliteFactory, MemoryFactory) {
  F f;
  auto store = f.open();
  RepoState s;
  s.repo = "acme/p";
  Writer w{*store, RepoState{s.repo}};
  s.prs[1] = make_pr(1, PrStatus::Queued);
  w.must_save_event(s, EventLogEntry{0, s.repo, "pr_opened", R"({"head":"h1"})", 1, 100});
  w.must_save_event(s, EventLogEntry{0, s.repo, "pr_opened", R"({"head":"h2"})", 2, 101});
  w.must_save_event(s, EventLogEntry{0, s.repo, "pr_pushed", R"({"head":"h3"})", 1, 102});
  for (int i = 0; i < 250; ++i)
    w.must_save_event(s, i % 2 ? EventLogEntry{0, s.repo, "merge_done", "{}", {}, 200 + i, {1, 2}}
                               : EventLogEntry{0, s.repo, "priority_set", "{}", 1, 200 + i});
  REQUIRE(store->pr_events(s.repo, 1, 200)->front().kind != "pr_opened");  // out of its window
  auto heads = store->pr_heads(s.repo, 1, 200);
  REQUIRE(heads->size() == 2);
  CHECK((*heads)[0].json == R"({"head":"h1"})");
  CHECK((*heads)[0].at == 100);
  CHECK((*heads)[1].json == R"({"head":"h3"})");
  REQUIRE(store->pr_heads(s.repo, 1, 1)->size() == 1);
  CHECK(store->pr_heads(s.repo, 1, 1)->front().at == 102);  // the newest
  REQUIRE(store->pr_heads(s.repo, 2, 10)->size() == 1);
  CHECK(store->pr_heads(s.repo, 2, 10)->front().json == R"({"head":"h2"})");
  CHECK(store->pr_heads(s.repo, 3, 10)->empty());
  CHECK(store->pr_heads("other/repo", 1, 10)->empty());
}

TEST_CASE_TEMPLATE("store contract: a delivery keeps its request until it is marked handled", F,
                   SqliteFactory, MemoryFactory) {
  F f;
  auto store = f.open();
  auto with_request = [](std::string id, Millis at, std::string body) {
    return DeliveryId{std::move(id), at, "github", R"({"x-github-event":"ping"})", std::move(body)};
  };
  REQUIRE(store->record_delivery("bare", 5).value());  // an id alone is never handed out
  auto fresh = store->record_deliveries(
      {with_request("github:a", 10, "{\"n\":1}"), with_request("github:b", 11, "{\"n\":2}"),
       with_request("github:a", 12, "{\"n\":3}"), with_request("github:c", 13, "{\"n\":4}")});
  REQUIRE(fresh.ok());
  CHECK(*fresh == std::vector<bool>{true, true, false, true});

  auto all = store->unhandled_deliveries(0, 100);
  REQUIRE(all.ok());
  REQUIRE(all->size() == 3);  // oldest first; the duplicate's request was not kept
  CHECK((*all)[0].id == "github:a");
  CHECK((*all)[0].at == 10);
  CHECK((*all)[0].forge == "github");
  CHECK((*all)[0].headers == R"({"x-github-event":"ping"})");
  CHECK((*all)[0].body == "{\"n\":1}");
  CHECK((*all)[1].id == "github:b");
  CHECK((*all)[2].id == "github:c");
  CHECK((*all)[0].seq < (*all)[1].seq);
  CHECK((*all)[1].seq < (*all)[2].seq);
  // Paged by seq.
  auto page = store->unhandled_deliveries((*all)[0].seq, 1);
  REQUIRE(page->size() == 1);
  CHECK((*page)[0].id == "github:b");

  REQUIRE(store->mark_deliveries_handled({"github:a", "github:c", "unknown"}).ok());
  auto left = store->unhandled_deliveries(0, 100);
  REQUIRE(left->size() == 1);
  CHECK((*left)[0].id == "github:b");
  // A handled delivery's id still makes a redelivery a duplicate, which is not kept either.
  CHECK(*store->record_deliveries({with_request("github:a", 20, "again")}) ==
        std::vector<bool>{false});
  CHECK(store->unhandled_deliveries(0, 100)->size() == 1);
  // Marks ride in a batch of new deliveries: one transaction records d and marks b.
  CHECK(*store->record_deliveries({with_request("github:d", 11, "{}")}, {"github:b"}) ==
        std::vector<bool>{true});
  left = store->unhandled_deliveries(0, 100);
  REQUIRE(left->size() == 1);
  CHECK((*left)[0].id == "github:d");
  // A delivery marked in the batch that records it is handled (recorded first, then marked).
  CHECK(*store->record_deliveries({with_request("github:e", 11, "{}")}, {"github:e"}) ==
        std::vector<bool>{true});
  REQUIRE(store->unhandled_deliveries(0, 100)->size() == 1);
  // Pruning forgets old deliveries, handled or not.
  REQUIRE(store->prune_deliveries(12, 100).ok());
  CHECK(store->unhandled_deliveries(0, 100)->empty());
  CHECK(store->record_delivery("github:a", 30).value());
  CHECK_FALSE(store->record_delivery("github:c", 31).value());
}

TEST_CASE_TEMPLATE("store contract: old deliveries are pruned oldest first, a limit at a time", F,
                   SqliteFactory, MemoryFactory) {
  F f;
  auto store = f.open();
  std::vector<DeliveryId> ids;
  for (int i = 0; i < 5; ++i)  // first seen at 14, 13, ... 10: the oldest came last
    ids.push_back(DeliveryId{"github:" + std::to_string(i), 14 - i, "github", "{}", "{}"});
  ids.push_back(DeliveryId{"github:new", 100, "github", "{}", "{}"});
  REQUIRE(store->record_deliveries(ids).ok());
  CHECK(store->prune_deliveries(50, 2).value() == 2);
  auto left = store->unhandled_deliveries(0, 100);
  REQUIRE(left->size() == 4);
  CHECK((*left)[0].id == "github:0");  // 14 and 13 stay; 10 and 11 went
  CHECK((*left)[2].id == "github:2");
  CHECK(store->prune_deliveries(50, 2).value() == 2);
  CHECK(store->prune_deliveries(50, 2).value() == 1);
  CHECK(store->prune_deliveries(50, 2).value() == 0);
  left = store->unhandled_deliveries(0, 100);
  REQUIRE(left->size() == 1);
  CHECK((*left)[0].id == "github:new");
  CHECK(store->record_delivery("github:4", 200).value());  // forgotten: new again
}

TEST_CASE_TEMPLATE("store contract: outbox, deliveries and leases", F, SqliteFactory,
                   MemoryFactory) {
  F f;
  auto store = f.open();
  RepoState s;
  s.repo = "acme/o";
  Writer w{*store, RepoState{s.repo}};
  auto saved = w.save(s, "x", {}, {},
                      {Notify{3, NoticeKind::Failure, Reason::BuildFailed, "boom", sha('a')},
                       Notify{4, NoticeKind::Success, Reason::Merged, "landed", sha('b')}},
                      500);
  REQUIRE(saved.ok());
  REQUIRE(saved->outbox_ids.size() == 2);
  auto box = store->outbox(s.repo);
  REQUIRE(box->size() == 2);
  CHECK((*box)[0].notice.message == "boom");
  CHECK((*box)[0].next_at == 500);
  CHECK((*box)[0].created_at == 500);
  REQUIRE(store->outbox_retry((*box)[0].id, 1, 2500, "502").ok());
  REQUIRE(store->outbox_delivered((*box)[1].id).ok());
  box = store->outbox(s.repo);
  REQUIRE(box->size() == 1);
  CHECK((*box)[0].attempts == 1);
  CHECK((*box)[0].last_error == "502");

  CHECK(store->record_delivery("abc", 10).value());
  CHECK_FALSE(store->record_delivery("abc", 30).value());
  REQUIRE(store->prune_deliveries(20, 100).ok());
  CHECK(store->record_delivery("abc", 40).value());
  CHECK(*store->record_deliveries({{"x", 50}, {"abc", 50}, {"x", 51}}) ==
        std::vector<bool>{true, false, false});

  CHECK(store->acquire_lease("acme/a", "h1", 1000, 500).value());
  CHECK_FALSE(store->acquire_lease("acme/a", "h2", 1200, 500).value());
  CHECK(store->acquire_lease("acme/a", "h2", 1501, 500).value());
  REQUIRE(store->release_lease("acme/a", "h1").ok());  // not the owner
  CHECK_FALSE(store->acquire_lease("acme/a", "h1", 1600, 500).value());
  REQUIRE(store->release_lease("acme/a", "h2").ok());
  CHECK(store->acquire_lease("acme/a", "h1", 1601, 500).value());
}

TEST_CASE_TEMPLATE("store contract: promotion records, newest first, per repository", F,
                   SqliteFactory, MemoryFactory) {
  F f;
  auto store = f.open();
  auto record = [&](std::string repo, std::string tag, std::string object, std::string target,
                    bool promoted, queue::Millis at) {
    PromotionRecord r;
    r.repo = std::move(repo);
    r.tag = std::move(tag);
    r.tag_object = std::move(object);
    r.kind = "candidate";
    r.target = std::move(target);
    r.commit = sha('c');
    r.from = sha('b');
    r.signers = {"lead", "lead2"};
    if (!promoted) r.reasons = {"tag is not signed", "commit is not on master"};
    r.promoted = promoted;
    r.source = "fetch";
    r.hotfix_branch = promoted ? "hotfix/x" : "";
    r.at = at;
    auto seq = store->record_promotion(r);
    REQUIRE(seq.ok());
    return *seq;
  };
  auto s1 = record("acme/a", "v1-rc1", sha('1'), "staging", true, 100);
  auto s2 = record("acme/a", "v1", sha('2'), "production", false, 200);
  record("acme/b", "v9-rc1", sha('9'), "staging", true, 250);
  auto s3 = record("acme/a", "v1", sha('3'), "production", true, 300);
  CHECK(s1 < s2);
  CHECK(s2 < s3);

  auto all = store->promotions("acme/a", 10);
  REQUIRE(all.ok());
  REQUIRE(all->size() == 3);
  CHECK((*all)[0].seq == s3);
  CHECK((*all)[2].seq == s1);
  const PromotionRecord& refused = (*all)[1];
  CHECK(refused.repo == "acme/a");
  CHECK(refused.tag == "v1");
  CHECK(refused.tag_object == sha('2'));
  CHECK(refused.kind == "candidate");
  CHECK(refused.target == "production");
  CHECK(refused.commit == sha('c'));
  CHECK(refused.from == sha('b'));
  CHECK(refused.signers == std::vector<std::string>{"lead", "lead2"});
  CHECK(refused.reasons ==
        std::vector<std::string>{"tag is not signed", "commit is not on master"});
  CHECK_FALSE(refused.promoted);
  CHECK(refused.source == "fetch");
  CHECK(refused.at == 200);
  CHECK((*all)[0].hotfix_branch == "hotfix/x");
  CHECK(store->promotions("acme/a", 1)->size() == 1);

  auto prod = store->last_promotion("acme/a", "production");
  REQUIRE(prod.ok());
  REQUIRE(prod->has_value());
  CHECK((*prod)->seq == s3);  // the refusal before it does not count
  CHECK_FALSE(store->last_promotion("acme/a", "nowhere")->has_value());
  CHECK_FALSE(store->last_promotion("acme/c", "staging")->has_value());

  auto judged = store->judged_tags("acme/a");
  REQUIRE(judged.ok());
  std::sort(judged->begin(), judged->end());
  CHECK(*judged == std::vector<std::pair<std::string, std::string>>{
                       {"v1", sha('2')}, {"v1", sha('3')}, {"v1-rc1", sha('1')}});
}

TEST_CASE_TEMPLATE("store contract: calls from several threads are serialized", F, SqliteFactory,
                   MemoryFactory) {
  F f;
  auto store = f.open();
  std::atomic<int> inserted{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      RepoState s = rich_state();
      s.repo = "acme/t" + std::to_string(t);
      Writer w{*store, RepoState{s.repo}};
      for (int i = 0; i < 6; ++i) {
        auto r = store->record_delivery("shared-" + std::to_string(i), i);
        if (!r.ok())
          ++failed;
        else if (*r)
          ++inserted;
        s.next_candidate = static_cast<CandidateId>(100 + i);
        if (!w.save(s, "k").ok()) ++failed;
      }
    });
  for (auto& th : threads) th.join();
  CHECK(failed == 0);
  CHECK(inserted == 6);
  for (int t = 0; t < 4; ++t)
    CHECK(must_load(*store, "acme/t" + std::to_string(t)).state.next_candidate == 105);
}

TEST_CASE("memory store: the event log can be capped or left out") {
  for (auto [options, expected] : {std::pair{MemoryStoreOptions{3, true}, std::size_t{3}},
                                   std::pair{MemoryStoreOptions{0, false}, std::size_t{0}}}) {
    auto store = make_memory_store(options);
    RepoState s;
    s.repo = "acme/m";
    Writer w{*store, RepoState{s.repo}};
    for (int i = 1; i <= 5; ++i) {
      s.next_candidate = static_cast<CandidateId>(i);
      w.must_save(s, "k" + std::to_string(i));
    }
    auto ev = store->events(s.repo, 100);
    REQUIRE(ev->size() == expected);
    if (expected) CHECK(ev->back().kind == "k5");
    CHECK(must_load(*store, s.repo).version == 5);
  }
}

}  // namespace
}  // namespace dmz

// The driver on recording fakes, a manual clock and a real SQLite store: every test asserts on
// what the ports were asked, and time moves only when the test advances the clock.
#include "bot/driver/driver.hpp"

#include <doctest/doctest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "base/log.hpp"
#include "bot/driver/fakes.hpp"
#include "bot/store/fault_injection.hpp"
#include "bot/store/store_test_support.hpp"
#include "forges/fake.hpp"
#include "tests/support.hpp"

namespace dmz::driver {
namespace {

namespace q = queue;
constexpr const char* kRepo = "acme/app";

q::Sha sha(char c) { return q::Sha(40, c); }

// A driver with its world: a store in a temp dir (behind a fault injector), recording ports, a
// fake forge and a manual clock.
struct World {
  test::TempDir dir;
  ManualClock clock{1'000'000};
  std::unique_ptr<Store> real = open_store(dir / "dmz.db");
  FaultInjectionStore store{*real};
  RecordingPorts ports;
  forges::FakeForge forge;
  std::unique_ptr<Driver> driver;

  RepoConfig config() {
    RepoConfig c;
    c.name = kRepo;
    c.settings.required_checks = {"ci/build"};
    c.settings.check_timeout = 600'000;
    c.forge = &forge;
    c.fetch_interval = 5'000;
    c.archive_after = 3'600'000;
    return c;
  }

  // (Re)starts the driver on the same store, as a restarted service would.
  void start(Options options = {}) {
    driver = std::make_unique<Driver>(clock, store, ports, ports, ports, ports,
                                      std::vector<RepoConfig>{config()}, options);
    REQUIRE(driver->start().ok());
  }

  q::Outcome apply(const q::Event& e) { return driver->apply(kRepo, e); }
  void must(const q::Event& e) {
    auto o = apply(e);
    INFO((o.rejected ? o.rejected->message : std::string()));
    REQUIRE_FALSE(o.rejected);
  }
  const q::RepoState& state() { return *driver->state(kRepo); }

  // Answers the pending fetch with master at `master` and the given PR branches.
  void fetch_answer(const q::Sha& master, std::map<std::string, q::Sha> branches = {}) {
    forges::RemoteRefs refs;
    refs.branches = std::move(branches);
    refs.branches["master"] = master;
    driver->fetched(kRepo, refs);
  }

  // The policy's pass for PR n at `head`, judged at the master the driver last asked about.
  q::PolicyChecked passed(int n, const q::Sha& head) {
    return {.number = n,
            .sha = head,
            .pass = true,
            .at = clock.now(),
            .target = ports.of<q::CheckPolicy>().back().target,
            .epoch = ports.of<q::CheckPolicy>().back().epoch};
  }
  // A PR from registration to Queued; returns nothing, asserts every step.
  void queue_pr(int n, const q::Sha& head) {
    must(q::PrOpened{n, "feature/" + std::to_string(n), "dev", "PR " + std::to_string(n), head,
                     clock.now()});
    must(q::MergeRequested{n, head, "mm", clock.now()});
    must(passed(n, head));
  }
  // Answers the newest BuildCandidate with a merge at `commit`; returns that BuildCandidate.
  q::BuildCandidate merge_front(const q::Sha& commit) {
    auto bc = ports.of<q::BuildCandidate>().back();
    must(q::MergeDone{bc.candidate, q::MergeOutcome::Merged, commit, 0, {}, "", clock.now()});
    return bc;
  }
  // Answers the newest BuildCandidate with a merge at `commit`, then its checks green.
  q::Outcome land_front(const q::Sha& commit) {
    auto bc = merge_front(commit);
    must(q::CandidateChecked{bc.candidate, commit, true, {}, clock.now()});
    must(q::CheckReported{commit, q::Check{"ci/build", q::CheckState::Success}, clock.now()});
    auto ff = ports.of<q::FastForwardMaster>().back();
    REQUIRE(ff.to == commit);
    return apply(q::MasterPushed{bc.candidate, true, "", "", clock.now()});
  }
};

TEST_CASE("driver: a fresh repository fetches first and adopts master from the remote") {
  World w;
  REQUIRE(w.store.has_state().ok());
  CHECK_FALSE(*w.store.has_state());
  w.start();
  // Saved at once, before any change: a stop now must not leave a store without state beside
  // the repository's mirror, which the next start would take for a lost database.
  CHECK(*w.store.has_state());
  REQUIRE(w.ports.of<Fetch>().size() == 1);
  CHECK(w.state().master.empty());
  CHECK(w.driver->health(kRepo)->loaded);
  CHECK_FALSE(w.driver->health(kRepo)->remote_ok);
  w.fetch_answer(sha('0'));
  CHECK(w.state().master == sha('0'));
  CHECK(w.driver->health(kRepo)->remote_ok);
  // dmz is dmzbot's own branch: on a new master it is reset to it.
  REQUIRE(w.ports.of<q::ResetDmz>().size() == 1);
  CHECK(w.ports.of<q::ResetDmz>()[0].sha == sha('0'));
}

TEST_CASE(
    "driver: a PR goes through the ports to master; the outbox says so; it leaves the hot "
    "state for history") {
  World w;
  w.start();
  w.fetch_answer(sha('0'));
  w.ports.clear();

  w.must(q::PrOpened{1, "feature/1", "dev", "PR 1", sha('a'), w.clock.now()});
  w.must(q::MergeRequested{1, sha('a'), "mm", w.clock.now()});
  // The action carries what its executor needs: no executor reads engine state.
  auto cp = w.ports.of<q::CheckPolicy>();
  REQUIRE(cp.size() == 1);
  CHECK(cp[0].branch == "feature/1");
  CHECK(cp[0].author == "dev");
  CHECK(cp[0].target == sha('0'));
  w.must(w.passed(1, sha('a')));
  REQUIRE(w.ports.of<q::BuildCandidate>().size() == 1);
  CHECK(w.ports.of<q::BuildCandidate>()[0].items.at(0).approver == "mm");

  auto landed = w.land_front(sha('c'));
  REQUIRE_FALSE(landed.rejected);
  CHECK(w.ports.of<q::StartBuild>().size() == 1);
  CHECK(w.ports.of<q::CheckCandidate>().size() == 1);
  CHECK(w.state().master == sha('c'));
  // Merged PRs leave the hot state at once; their outcome is in the history.
  CHECK(w.state().prs.empty());
  auto hist = w.store.history(kRepo, 0, 10);
  REQUIRE(hist->size() == 1);
  CHECK(hist->at(0).number == 1);
  CHECK(hist->at(0).reason == q::Reason::Merged);
  CHECK(hist->at(0).approver == "mm");
  // The notice went to the outbox, saved before it was sent.
  auto sent = w.ports.of<forges::OutboxMessage>();
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].notice.reason == q::Reason::Merged);
  CHECK(sent[0].notice.head == sha('a'));
  REQUIRE(w.store.outbox(kRepo)->size() == 1);
  w.driver->delivered(sent[0].id, {});
  CHECK(w.store.outbox(kRepo)->empty());
  CHECK(w.driver->health(kRepo)->outbox_pending == 0);
}

TEST_CASE("driver: a restart resumes what was in flight and resends the undelivered outbox") {
  World w;
  w.start();
  w.fetch_answer(sha('0'));
  w.queue_pr(1, sha('a'));
  w.queue_pr(2, sha('b'));  // waits behind #1
  auto bc = w.ports.of<q::BuildCandidate>().back();
  w.must(q::MergeDone{bc.candidate,
                      q::MergeOutcome::Conflict,
                      "",
                      1,
                      {"x.txt"},
                      "",
                      w.clock.now()});  // #1 fails with a notice; #2 goes into a candidate
  auto notices = w.ports.of<forges::OutboxMessage>();
  REQUIRE(notices.size() == 1);
  CHECK(notices[0].notice.reason == q::Reason::MergeConflict);
  const q::RepoState before = w.state();

  w.ports.clear();
  w.start();  // a new driver on the same store: the crash-restart path
  CHECK(w.state() == before);
  // In flight: #2's candidate merge (re-issued), the undelivered notice (resent), a fetch.
  REQUIRE(w.ports.of<q::BuildCandidate>().size() == 1);
  CHECK(w.ports.of<q::BuildCandidate>()[0].items.at(0).number == 2);
  REQUIRE(w.ports.of<forges::OutboxMessage>().size() == 1);
  CHECK(w.ports.of<forges::OutboxMessage>()[0].id == notices[0].id);
  CHECK(w.ports.of<Fetch>().size() == 1);
}

TEST_CASE("driver: a delivery that fails is retried with doubling backoff on the clock") {
  World w;
  w.start();
  w.fetch_answer(sha('0'));
  w.queue_pr(1, sha('a'));
  auto bc = w.ports.of<q::BuildCandidate>().back();
  w.must(q::MergeDone{bc.candidate, q::MergeOutcome::Conflict, "", 1, {"x"}, "", w.clock.now()});
  auto first = w.ports.of<forges::OutboxMessage>().at(0);
  w.ports.clear();

  w.driver->delivered(first.id, unavailable("forge answered 502"));
  auto saved = w.store.outbox(kRepo);
  REQUIRE(saved->size() == 1);
  CHECK(saved->at(0).attempts == 1);
  CHECK(saved->at(0).next_at == w.clock.now() + 2'000);
  CHECK(saved->at(0).last_error == "forge answered 502");

  w.clock.advance(1'999);
  w.driver->tick();
  CHECK(w.ports.of<forges::OutboxMessage>().empty());  // not yet
  w.clock.advance(1);
  w.driver->tick();
  REQUIRE(w.ports.of<forges::OutboxMessage>().size() == 1);  // the first retry
  w.driver->delivered(first.id, unavailable("forge answered 502 again"));
  CHECK(w.store.outbox(kRepo)->at(0).next_at == w.clock.now() + 4'000);  // doubled
  w.clock.advance(4'000);
  w.driver->tick();
  REQUIRE(w.ports.of<forges::OutboxMessage>().size() == 2);
  w.driver->delivered(first.id, {});
  CHECK(w.store.outbox(kRepo)->empty());

  SUBCASE("a message the forge refuses for good is dropped, not retried") {
    w.queue_pr(2, sha('b'));
    auto bc2 = w.ports.of<q::BuildCandidate>().back();
    w.must(q::MergeDone{bc2.candidate, q::MergeOutcome::Conflict, "", 2, {"y"}, "", w.clock.now()});
    auto m = w.ports.of<forges::OutboxMessage>().back();
    w.driver->delivered(m.id, not_found("pull request #2 does not exist on the forge"));
    CHECK(w.store.outbox(kRepo)->empty());
    w.ports.clear();
    w.clock.advance(3'600'000);
    w.driver->tick();
    CHECK(w.ports.of<forges::OutboxMessage>().empty());
  }
}

// A PR's comments appear in the order they were decided: while one is being sent or waits for
// a retry, the PR's later ones wait behind it (before, a later comment overtook a retried one).
// Other PRs' comments do not wait.
TEST_CASE("driver: a PR's outbox messages go one at a time, in order; other PRs' do not wait") {
  World w;
  w.start();
  w.fetch_answer(sha('0'));
  w.must(q::PrOpened{1, "feature/1", "dev", "PR 1", sha('a'), w.clock.now()});
  w.must(q::PrOpened{2, "feature/2", "dev", "PR 2", sha('b'), w.clock.now()});
  w.ports.clear();
  auto reply = [&](int n, const std::string& text) {
    w.must(q::Reply{n, q::NoticeKind::Info, text, {}, w.clock.now()});
  };
  auto sent = [&] {
    std::vector<std::string> out;
    for (const auto& m : w.ports.of<forges::OutboxMessage>())
      out.push_back(std::to_string(m.notice.number) + ":" + m.notice.message);
    return out;
  };
  reply(1, "first");
  reply(1, "second");  // waits for the first
  reply(2, "other");   // another PR: sent at once
  CHECK(sent() == std::vector<std::string>{"1:first", "2:other"});
  const auto first = w.ports.of<forges::OutboxMessage>().at(0);
  w.ports.clear();
  w.driver->delivered(first.id, unavailable("forge answered 502"));
  w.clock.advance(1'000);
  w.driver->tick();
  CHECK(sent().empty());  // the second still waits behind the first's retry
  w.clock.advance(1'000);
  w.driver->tick();
  CHECK(sent() == std::vector<std::string>{"1:first"});
  w.ports.clear();
  w.driver->delivered(first.id, {});
  CHECK(sent() == std::vector<std::string>{"1:second"});  // at once, not at the next tick
  CHECK(w.driver->health(kRepo)->outbox_pending == 2);    // the second, and PR 2's
}

TEST_CASE(
    "driver: an unreachable remote makes the repository unhealthy and is retried with "
    "backoff") {
  World w;
  w.start();
  REQUIRE(w.ports.of<Fetch>().size() == 1);
  w.driver->fetch_failed(kRepo, unavailable("git fetch: connection refused"));
  const Health* h = w.driver->health(kRepo);
  CHECK_FALSE(h->remote_ok);
  CHECK(h->fetch_failures == 1);
  CHECK(h->last_error == "git fetch: connection refused");
  CHECK(h->next_fetch_at == w.clock.now() + 5'000);

  w.clock.advance(4'999);
  w.driver->tick();
  CHECK(w.ports.of<Fetch>().size() == 1);
  w.clock.advance(1);
  w.driver->tick();
  CHECK(w.ports.of<Fetch>().size() == 2);
  w.driver->fetch_failed(kRepo, unavailable("still refused"));
  CHECK(w.driver->health(kRepo)->next_fetch_at == w.clock.now() + 10'000);  // doubled
  w.driver->tick();
  CHECK(w.ports.of<Fetch>().size() == 2);  // no second fetch while waiting

  // The API still answers for it (the state is loaded); the remote comes back.
  CHECK_FALSE(w.apply(q::PrOpened{1, "feature/1", "dev", "t", sha('a'), w.clock.now()}).rejected);
  w.clock.advance(10'000);
  w.driver->tick();
  REQUIRE(w.ports.of<Fetch>().size() == 3);
  w.fetch_answer(sha('0'));
  CHECK(w.driver->health(kRepo)->remote_ok);
  CHECK(w.driver->health(kRepo)->fetch_failures == 0);
  CHECK(w.driver->health(kRepo)->next_fetch_at == w.clock.now() + 5'000);

  SUBCASE("the backoff stops doubling at its cap") {
    for (int i = 0; i < 12; ++i) {
      w.clock.advance(400'000);
      w.driver->tick();
      w.driver->fetch_failed(kRepo, unavailable("down"));
    }
    CHECK(w.driver->health(kRepo)->next_fetch_at == w.clock.now() + 300'000);
  }
}

TEST_CASE("driver: a required check that never reports times out when the clock says so") {
  World w;
  w.start();
  w.fetch_answer(sha('0'));
  w.queue_pr(1, sha('a'));
  auto bc = w.merge_front(sha('c'));
  w.clock.advance(599'999);
  w.driver->tick();
  CHECK(w.state().prs.at(1).status == q::PrStatus::InDmz);
  w.clock.advance(1);
  w.driver->tick();
  CHECK(w.state().prs.at(1).status == q::PrStatus::Failed);
  CHECK(w.state().prs.at(1).reason_code == q::Reason::CheckTimeout);
  CHECK(w.ports.of<q::ResetDmz>().back().sha == sha('0'));
}

TEST_CASE("driver: a store that cannot write answers unavailable and changes nothing") {
  World w;
  w.start();
  w.fetch_answer(sha('0'));
  w.queue_pr(1, sha('a'));
  const q::RepoState before = w.state();
  const auto events_before = w.store.events(kRepo, 1000)->size();
  w.ports.clear();

  w.store.fail_saves = 1;
  auto o = w.apply(q::PrOpened{2, "feature/2", "dev", "t", sha('b'), w.clock.now()});
  REQUIRE(o.rejected);
  CHECK(o.rejected->code == Code::kUnavailable);
  CHECK(o.rejected->message.find("disk is full") != std::string::npos);
  CHECK(o.actions.empty());
  CHECK(w.state() == before);
  CHECK(w.ports.calls.empty());  // nothing was handed out
  CHECK(w.store.events(kRepo, 1000)->size() == events_before);

  // A failed read of the archive (to bring back a PR an event names) is unavailable too.
  w.store.fail_reads = 1;
  auto r = w.apply(q::RetryRequested{77, "mm", w.clock.now()});
  REQUIRE(r.rejected);
  CHECK(r.rejected->code == Code::kUnavailable);

  // The next try goes through.
  CHECK_FALSE(w.apply(q::PrOpened{2, "feature/2", "dev", "t", sha('b'), w.clock.now()}).rejected);
}

TEST_CASE("driver: paths and git messages that are not UTF-8 are saved; the PRs move on") {
  World w;
  w.start();
  w.fetch_answer(sha('0'));
  const std::string latin1 = "caf\xe9.txt";  // a file name git gives as bytes
  w.must(q::PrOpened{1, "feature/1", "dev", "PR 1", sha('a'), w.clock.now()});
  w.must(q::MergeRequested{1, sha('a'), "mm", w.clock.now()});
  q::PolicyChecked verdict = w.passed(1, sha('a'));
  verdict.paths = {latin1};
  w.must(verdict);
  auto bc = w.ports.of<q::BuildCandidate>();
  REQUIRE(bc.size() == 1);
  w.must(
      q::MergeDone{bc[0].candidate, q::MergeOutcome::Conflict, "", 1, {latin1}, "", w.clock.now()});
  CHECK(w.state().prs.at(1).status == q::PrStatus::Failed);
  CHECK(w.state().prs.at(1).reason_code == q::Reason::MergeConflict);
  // A git error message is such bytes too.
  w.queue_pr(2, sha('b'));
  bc = w.ports.of<q::BuildCandidate>();
  w.must(q::MergeDone{bc.back().candidate,
                      q::MergeOutcome::Error,
                      "",
                      2,
                      {},
                      "fatal: cannot read " + latin1,
                      w.clock.now()});
  CHECK(w.state().prs.at(2).merge_errors == 1);

  // The log holds each event as JSON, the bytes replaced; a restart loads what was saved.
  auto events = w.store.events(kRepo, 1000);
  REQUIRE(events.ok());
  int merges = 0;
  for (const auto& e : *events) {
    CHECK(nlohmann::json::accept(e.json));
    if (e.kind == "merge_done") ++merges;
  }
  CHECK(merges == 2);
  w.start();
  CHECK(w.state().prs.at(1).status == q::PrStatus::Failed);
  CHECK(w.state().prs.at(2).merge_errors == 1);
}

TEST_CASE("driver: an observer that throws does not hold back the saved change's actions") {
  World w;
  Options options;
  options.on_commit = [](const std::string&, const Committed&) {
    throw std::runtime_error("observer bug");
  };
  options.on_saved = [](const std::string&) { throw std::runtime_error("feed bug"); };
  w.start(options);
  w.fetch_answer(sha('0'));
  w.queue_pr(1, sha('a'));  // each step saved, its actions handed out, the version kept
  auto bc = w.ports.of<q::BuildCandidate>();
  REQUIRE(bc.size() == 1);
  w.must(q::MergeDone{
      bc[0].candidate, q::MergeOutcome::Conflict, "", 1, {"x.txt"}, "", w.clock.now()});
  CHECK(w.state().prs.at(1).status == q::PrStatus::Failed);
  CHECK(w.ports.of<forges::OutboxMessage>().size() == 1);  // the notice went out
}

TEST_CASE("driver: a store that throws is an internal error and changes nothing") {
  World w;
  w.start();
  w.fetch_answer(sha('0'));
  const q::RepoState before = w.state();
  w.ports.clear();
  w.store.throw_saves = 1;
  auto o = w.apply(q::PrOpened{1, "feature/1", "dev", "t", sha('a'), w.clock.now()});
  REQUIRE(o.rejected);
  CHECK(o.rejected->code == Code::kInternal);
  CHECK(w.state() == before);
  CHECK(w.ports.calls.empty());
  CHECK_FALSE(w.apply(q::PrOpened{1, "feature/1", "dev", "t", sha('a'), w.clock.now()}).rejected);
}

TEST_CASE(
    "driver: a failed PR stays retryable, moves to history when old, and comes back when "
    "named") {
  World w;
  w.start();
  w.fetch_answer(sha('0'));
  w.queue_pr(1, sha('a'));
  auto bc = w.merge_front(sha('c'));
  w.must(q::CheckReported{sha('c'), q::Check{"ci/build", q::CheckState::Failure}, w.clock.now()});
  CHECK(w.state().prs.at(1).status == q::PrStatus::Failed);
  REQUIRE(w.store.history(kRepo, 0, 10)->size() == 1);

  w.clock.advance(3'600'000 - 1);
  w.driver->tick();
  CHECK(w.state().prs.count(1) == 1);  // still hot: shown and retryable
  w.clock.advance(1);
  w.driver->tick();
  CHECK(w.state().prs.count(1) == 0);  // archived
  CHECK(w.store.archived(kRepo, 1)->has_value());
  CHECK(w.store.history(kRepo, 0, 10)->size() == 1);  // one outcome, not two

  // A merge master retries it: it comes back with its approval and goes through the policy.
  w.ports.clear();
  w.must(q::RetryRequested{1, "mm", w.clock.now()});
  CHECK(w.state().prs.at(1).status == q::PrStatus::Approved);
  CHECK(w.ports.of<q::CheckPolicy>().size() == 1);
  CHECK_FALSE(w.store.archived(kRepo, 1)->has_value());

  // An unknown PR is still unknown.
  auto o = w.apply(q::RetryRequested{99, "mm", w.clock.now()});
  REQUIRE(o.rejected);
  CHECK(o.rejected->code == Code::kNotFound);
}

TEST_CASE("driver: an event about a landed PR that changes nothing writes nothing") {
  World w;
  w.start();
  w.fetch_answer(sha('0'));
  w.queue_pr(1, sha('a'));
  REQUIRE_FALSE(w.land_front(sha('c')).rejected);
  REQUIRE(w.state().prs.count(1) == 0);  // merged: archived
  REQUIRE(w.store.history(kRepo, 0, 10)->size() == 1);
  const auto events = w.real->pr_events(kRepo, 1, 100)->size();
  const auto archived = w.store.archived(kRepo, 1);

  // GitHub's `closed` webhook follows every landing; a repeated registration is the same.
  w.must(q::PrClosed{1, w.clock.now()});
  w.must(q::PrOpened{1, archived->value().branch, archived->value().author, archived->value().title,
                     archived->value().head, w.clock.now()});
  CHECK(w.store.history(kRepo, 0, 10)->size() == 1);  // one outcome, not three
  CHECK(w.real->pr_events(kRepo, 1, 100)->size() == events);
  CHECK(w.state().prs.count(1) == 0);
  CHECK(w.store.archived(kRepo, 1).value() == archived.value());
}

TEST_CASE("driver: the hot state does not grow with history") {
  World w;
  w.start();
  w.fetch_answer(sha('0'));
  for (int n = 1; n <= 60; ++n) {
    const q::Sha head = q::Sha(38, 'a') + (n < 10 ? "0" : "") + std::to_string(n);
    w.queue_pr(n, head);
    const q::Sha commit = q::Sha(38, 'c') + (n < 10 ? "0" : "") + std::to_string(n);
    REQUIRE_FALSE(w.land_front(commit).rejected);
  }
  CHECK(w.state().prs.empty());
  CHECK(w.state().master == q::Sha(38, 'c') + "60");
  CHECK(w.store.history(kRepo, 0, 1000)->size() == 60);
  // A new driver loads a small state.
  w.start();
  CHECK(w.state().prs.empty());
}

TEST_CASE("driver: history older than its retention is pruned, a batch at a time") {
  World w;
  Options options;
  options.history_retention = 86'400'000;
  options.prune_batch = 8;
  w.start(options);
  w.fetch_answer(sha('0'));
  for (int n = 1; n <= 3; ++n) {
    w.queue_pr(n, q::Sha(39, 'a') + std::to_string(n));
    REQUIRE_FALSE(w.land_front(q::Sha(39, 'c') + std::to_string(n)).rejected);
  }
  w.driver->tick();  // nothing is old yet
  const auto old_events = w.store.events(kRepo, 1000)->size();
  REQUIRE(old_events > 8);
  CHECK(w.store.history(kRepo, 0, 100)->size() == 3);

  w.clock.advance(86'400'000 + 3'600'000);
  w.queue_pr(4, q::Sha(39, 'a') + "4");
  REQUIRE_FALSE(w.land_front(q::Sha(39, 'c') + "4").rejected);
  const auto new_events = w.store.events(kRepo, 1000)->size() - old_events;
  w.driver->tick();  // the first batch: 8 events and the 3 outcomes
  CHECK(w.store.events(kRepo, 1000)->size() == old_events + new_events - 8);
  CHECK(w.store.history(kRepo, 0, 100)->size() == 1);
  w.clock.advance(1'000);
  w.driver->tick();  // not yet: the next batch is 10 s after a full one
  CHECK(w.store.events(kRepo, 1000)->size() == old_events + new_events - 8);
  for (int i = 0; i < 10; ++i) {
    w.clock.advance(10'000);
    w.driver->tick();
  }
  CHECK(w.store.events(kRepo, 1000)->size() == new_events);
  CHECK(w.store.pr_events(kRepo, 1, 100)->empty());
  CHECK_FALSE(w.store.pr_events(kRepo, 4, 100)->empty());
  CHECK(w.state().master == q::Sha(39, 'c') + "4");
}

TEST_CASE("driver: old webhook deliveries are pruned a batch at a time") {
  World w;
  std::vector<DeliveryId> old;
  for (int i = 0; i < 20; ++i)
    old.push_back(DeliveryId{"github:" + std::to_string(i), i, "github", "{}", "{}"});
  REQUIRE(w.store.record_deliveries(old, {}).ok());
  Options options;
  options.delivery_retention = 1'000;
  options.prune_batch = 8;
  w.start(options);
  auto left = [&] { return w.store.unhandled_deliveries(0, 100)->size(); };
  w.driver->tick();  // the first batch
  CHECK(left() == 12);
  w.clock.advance(1'000);
  w.driver->tick();  // not yet: the next batch is 10 s after a full one
  CHECK(left() == 12);
  for (int i = 0; i < 3; ++i) {
    w.clock.advance(10'000);
    w.driver->tick();
  }
  CHECK(left() == 0);
}

TEST_CASE("driver: an idle tick writes nothing") {
  World w;
  w.start();
  w.fetch_answer(sha('0'));
  w.queue_pr(1, sha('a'));
  const auto events = w.store.events(kRepo, 1000)->size();
  const auto version = w.store.load(kRepo)->value().version;
  for (int i = 0; i < 5; ++i) {
    w.clock.advance(100);
    w.driver->tick();
  }
  CHECK(w.store.events(kRepo, 1000)->size() == events);
  CHECK(w.store.load(kRepo)->value().version == version);  // no save without an event either
}

TEST_CASE("driver: on_saved hears of each saved change, after its events are readable") {
  World w;
  std::vector<std::string> heard;
  std::vector<std::size_t> readable;  // events in the store when each call came
  Options options;
  options.on_saved = [&](const std::string& repo) {
    heard.push_back(repo);
    readable.push_back(w.store.events(kRepo, 1000)->size());
  };
  w.start(options);
  w.fetch_answer(sha('0'));
  const auto before = heard.size();
  w.must(q::PrOpened{1, "feature/1", "dev", "PR 1", sha('a'), w.clock.now()});
  REQUIRE(heard.size() == before + 1);
  CHECK(heard.back() == kRepo);
  CHECK(readable.back() == w.store.events(kRepo, 1000)->size());
  // A refused event and an idle tick change nothing: nobody is told.
  CHECK(w.apply(q::MergeRequested{9, sha('b'), "mm", w.clock.now()}).rejected);
  w.clock.advance(100);
  w.driver->tick();
  CHECK(heard.size() == before + 1);
}

TEST_CASE("driver: a repository another process holds the lease on is not served") {
  World w;
  REQUIRE(w.store.acquire_lease(kRepo, "other-host:1", w.clock.now(), 60'000).value());
  w.start();
  CHECK_FALSE(w.driver->health(kRepo)->loaded);
  CHECK(w.driver->health(kRepo)->last_error.find("lease") != std::string::npos);
  CHECK(w.ports.calls.empty());  // no fetch, no resume
  auto o = w.apply(q::PrOpened{1, "feature/1", "dev", "t", sha('a'), w.clock.now()});
  REQUIRE(o.rejected);
  CHECK(o.rejected->code == Code::kUnavailable);
  // When the other's lease expires, the next tick takes over.
  w.clock.advance(60'001);
  w.driver->tick();
  CHECK(w.driver->health(kRepo)->loaded);
  CHECK(w.ports.of<Fetch>().size() == 1);
}

TEST_CASE("driver: a forge outage is credited to check deadlines once a minute, not every tick") {
  World w;
  w.start();
  w.fetch_answer(sha('0'));
  w.queue_pr(1, sha('a'));
  w.merge_front(sha('c'));
  w.must(q::CheckReported{sha('c'), q::Check{"ci/build", q::CheckState::Pending}, w.clock.now()});
  const auto events_before = w.store.events(kRepo, 100000)->size();
  forges::ApiHealth down;
  down.used = true;
  down.ok = false;
  w.driver->set_api_health(kRepo, down);
  // Twice the check timeout of ticks a second apart, the forge down throughout.
  const q::Millis timeout = w.driver->config(kRepo)->settings.check_timeout;
  for (q::Millis t = 0; t < 2 * timeout; t += 1000) {
    w.clock.advance(1000);
    w.driver->tick();
  }
  CHECK(w.state().prs.at(1).status == q::PrStatus::Building);  // nobody's fault
  const auto written = w.store.events(kRepo, 100000)->size() - events_before;
  CHECK(written <= static_cast<std::size_t>(2 * timeout / 60'000 + 1));  // a credit a minute
  const q::Millis paused = w.state().train.at(0).paused_ms;
  CHECK(paused >= 2 * timeout - 60'000);
  // Back up: the rest is credited at once, and the deadline counts from there.
  w.driver->set_api_health(kRepo, forges::ApiHealth{.used = true});
  w.clock.advance(1000);
  w.driver->tick();
  const q::Candidate k = w.state().train.at(0);
  CHECK(k.paused_ms >= 2 * timeout - 1000);  // all of it (less the tick before the first)
  CHECK(k.paused_ms > paused);
  const q::Millis deadline = k.pushed_at + k.paused_ms + timeout;
  w.clock.advance(deadline - 1 - w.clock.now());
  w.driver->tick();
  CHECK(w.state().prs.at(1).status == q::PrStatus::Building);
  w.clock.advance(1);
  w.driver->tick();
  CHECK(w.state().prs.at(1).status == q::PrStatus::Failed);
}

TEST_CASE("driver: a repository taken back after losing its lease sends nothing twice") {
  World w;
  w.start();
  w.fetch_answer(sha('0'));
  w.queue_pr(1, sha('a'));
  auto bc = w.ports.of<q::BuildCandidate>().back();
  w.must(
      q::MergeDone{bc.candidate, q::MergeOutcome::Conflict, "", 1, {"x.txt"}, "", w.clock.now()});
  REQUIRE(w.ports.of<forges::OutboxMessage>().size() == 1);  // being sent, not answered yet
  // Our lease lapses, another process holds it for a while, then we take it back.
  w.clock.advance(Options{}.lease_ttl + 1);
  REQUIRE(w.store.acquire_lease(kRepo, "other-host:1", w.clock.now(), 60'000).value());
  w.driver->tick();
  REQUIRE_FALSE(w.driver->health(kRepo)->loaded);
  w.clock.advance(60'001);
  w.driver->tick();
  REQUIRE(w.driver->health(kRepo)->loaded);
  CHECK(w.ports.of<forges::OutboxMessage>().size() == 1);  // the one in flight keeps its flight
}

TEST_CASE("driver: landings, ejections and builds are counted for /metrics") {
  World w;
  metrics::Registry& m = metrics::global();
  const metrics::Labels repo{{"repo", kRepo}};
  const double landed = m.value("dmzbot_prs_landed_total", repo);
  const double failed =
      m.value("dmzbot_prs_dequeued_total", {{"repo", kRepo}, {"reason", "build-failed"}});
  const double builds = m.value("dmzbot_builds_started_total", repo);
  const double merges = m.value("dmzbot_time_to_merge_seconds", repo);
  const double durations = m.value("dmzbot_build_duration_seconds", repo);
  Options o;
  o.metrics = &m;
  w.start(o);
  w.fetch_answer(sha('0'));
  w.queue_pr(1, sha('a'));
  w.clock.advance(60'000);
  REQUIRE_FALSE(w.land_front(sha('c')).rejected);
  w.queue_pr(2, sha('b'));
  auto bc = w.merge_front(sha('d'));
  w.must(q::CheckReported{sha('d'), q::Check{"ci/build", q::CheckState::Failure}, w.clock.now()});
  CHECK(m.value("dmzbot_prs_landed_total", repo) == landed + 1);
  CHECK(m.value("dmzbot_prs_dequeued_total", {{"repo", kRepo}, {"reason", "build-failed"}}) ==
        failed + 1);
  CHECK(m.value("dmzbot_builds_started_total", repo) == builds + 2);
  CHECK(m.value("dmzbot_time_to_merge_seconds", repo) == merges + 1);
  CHECK(m.value("dmzbot_build_duration_seconds", repo) == durations + 2);
  w.driver->tick();
  CHECK(m.value("dmzbot_queue_length", repo) == 0);
  CHECK(m.value("dmzbot_repository_healthy", repo) == 1);
  CHECK(m.text().find("dmzbot_time_to_merge_seconds_bucket{repo=\"acme/app\",le=\"60\"}") !=
        std::string::npos);
}

TEST_CASE(
    "driver: an ejection is counted innocent when the PR later lands at the same head; not "
    "after a new push") {
  World w;
  metrics::Registry& m = metrics::global();
  const metrics::Labels repo{{"repo", kRepo}};
  const double innocent = m.value("dmzbot_innocent_ejections_total", repo);
  Options o;
  o.metrics = &m;
  w.start(o);
  w.fetch_answer(sha('0'));
  auto fail_front = [&](const q::Sha& commit) {
    (void)w.merge_front(commit);
    w.must(q::CheckReported{commit, q::Check{"ci/build", q::CheckState::Failure}, w.clock.now()});
  };
  // #1 fails (a flake), is retried at the same head and lands: its ejection was innocent.
  w.queue_pr(1, sha('a'));
  fail_front(sha('c'));
  REQUIRE(w.state().prs.at(1).status == q::PrStatus::Failed);
  CHECK(m.value("dmzbot_innocent_ejections_total", repo) == innocent);
  w.must(q::RetryRequested{1, "mm", w.clock.now()});
  w.must(w.passed(1, sha('a')));
  REQUIRE_FALSE(w.land_front(sha('d')).rejected);
  CHECK(m.value("dmzbot_innocent_ejections_total", repo) == innocent + 1);
  // #2 fails, its author pushes a fix, it lands at the new head: it was to blame.
  w.queue_pr(2, sha('b'));
  fail_front(sha('e'));
  w.must(q::PrPushed{2, sha('f'), w.clock.now()});
  w.must(q::MergeRequested{2, sha('f'), "mm", w.clock.now()});
  w.must(w.passed(2, sha('f')));
  REQUIRE_FALSE(w.land_front(sha('9')).rejected);
  REQUIRE(w.state().master == sha('9'));
  CHECK(m.value("dmzbot_innocent_ejections_total", repo) == innocent + 1);
  CHECK(m.text().find("dmzbot_innocent_ejections_total{repo=\"acme/app\"} ") != std::string::npos);
}

TEST_CASE("driver: a candidate's merge, checks and landing are in its PRs' timelines") {
  World w;
  w.start();
  w.fetch_answer(sha('0'));
  w.queue_pr(1, sha('a'));
  auto bc = w.merge_front(sha('c'));
  w.must(q::CandidateChecked{bc.candidate, sha('c'), true, {}, w.clock.now()});
  // A pending report is not filed under the PR (its end is), nor is a check on another sha.
  w.must(q::CheckReported{sha('c'), q::Check{"ci/build", q::CheckState::Pending}, w.clock.now()});
  (void)w.apply(
      q::CheckReported{sha('e'), q::Check{"ci/build", q::CheckState::Failure}, w.clock.now()});
  w.must(q::CheckReported{
      sha('c'), q::Check{"ci/build", q::CheckState::Success, "", "https://ci/1"}, w.clock.now()});
  w.must(q::MasterPushed{bc.candidate, true, "", "", w.clock.now()});
  REQUIRE(w.state().prs.count(1) == 0);  // merged: archived

  auto events = w.real->pr_events(kRepo, 1, 100);
  REQUIRE(events.ok());
  std::vector<std::string> kinds;
  for (const auto& e : *events) kinds.push_back(e.kind);
  CHECK(kinds == std::vector<std::string>{"pr_opened", "merge_requested", "policy_checked",
                                          "merge_done", "candidate_checked", "check_reported",
                                          "master_pushed"});
  CHECK(events->at(5).json.find("https://ci/1") != std::string::npos);
}

TEST_CASE("driver: each PR that leaves the queue is one JSON log line with its fields") {
  std::ostringstream out;
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      "test", std::make_shared<spdlog::sinks::ostream_sink_mt>(out)));
  log::use_format(log::Format::Json);
  {
    World w;
    w.start();
    w.fetch_answer(sha('0'));
    w.queue_pr(1, sha('a'));
    REQUIRE_FALSE(w.land_front(sha('c')).rejected);
    w.queue_pr(2, sha('b'));
    (void)w.merge_front(sha('d'));
    w.must(q::CheckReported{sha('d'), q::Check{"ci/build", q::CheckState::Failure}, w.clock.now()});
  }
  spdlog::set_default_logger(previous);
  log::use_format(log::Format::Text);
  std::map<int, nlohmann::json> left;  // by PR
  std::istringstream lines(out.str());
  for (std::string line; std::getline(lines, line);) {
    auto j = nlohmann::json::parse(line);  // every line is one JSON object
    if (j.contains("pr") && j.contains("reason")) left[j["pr"].get<int>()] = j;
  }
  CAPTURE(out.str());
  REQUIRE(left.count(1));
  CHECK(left[1]["repo"] == kRepo);
  CHECK(left[1]["reason"] == "merged");
  CHECK(left[1]["sha"] == sha('a'));
  CHECK(left[1]["event"] == "master_pushed");
  CHECK(left[1]["level"] == "info");
  REQUIRE(left.count(2));
  CHECK(left[2]["reason"] == "build-failed");
  CHECK(left[2]["sha"] == sha('b'));
  CHECK(left[2]["msg"].get<std::string>().starts_with("failed: "));
}

TEST_CASE("driver: unknown repositories are not found") {
  World w;
  w.start();
  auto o = w.driver->apply("nobody/here", q::Tick{w.clock.now()});
  REQUIRE(o.rejected);
  CHECK(o.rejected->code == Code::kNotFound);
  CHECK(w.driver->state("nobody/here") == nullptr);
}

}  // namespace
}  // namespace dmz::driver

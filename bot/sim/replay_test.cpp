// What-if replay: a queue's history is recorded by the production driver into a real SQLite
// store, read back by `--replay`, and run again; the replayed workload must be the recorded one
// (its approvals, authors, paths, culprits, its builds' durations), not a generated one.
#include "bot/sim/replay.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <string>

#include "base/clock.hpp"
#include "bot/driver/driver.hpp"
#include "bot/driver/fakes.hpp"
#include "bot/sim/simulate.hpp"
#include "bot/sim/world.hpp"
#include "forges/fake.hpp"
#include "tests/support.hpp"

namespace dmz::sim {
namespace {

namespace q = queue;
using namespace std::string_literals;
constexpr const char* kRepo = "acme/app";
constexpr Millis kStart = 1'700'000'000'000;

q::Sha sha(char c) { return q::Sha(40, c); }

// A train (one PR at a time here) driven by hand through the production driver into
// DATA_DIR/dmzbot.db (a strategy other than serial records a PR head's own CI):
// #1 (alice, src/) builds 20 minutes and lands; #2 (bob, docs/, red on its own CI) fails its
// build after 10 minutes; #3 (alice, src/ and lib/) builds 40 minutes and lands.
void record_history(const std::filesystem::path& data_dir) {
  auto store = open_sqlite_store(data_dir / "dmzbot.db");
  REQUIRE(store.ok());
  ManualClock clock(kStart);
  driver::RecordingPorts ports;
  forges::FakeForge forge;
  driver::RepoConfig cfg;
  cfg.name = kRepo;
  cfg.settings.required_checks = {"ci"};
  cfg.settings.strategy = q::Strategy::Train;
  cfg.forge = &forge;
  driver::Driver d(clock, **store, ports, ports, ports, ports, {cfg});
  REQUIRE(d.start().ok());
  forges::RemoteRefs refs;
  refs.branches["master"] = sha('0');
  d.fetched(kRepo, refs);
  auto must = [&](const q::Event& e) {
    auto o = d.apply(kRepo, e);
    INFO((o.rejected ? o.rejected->message : std::string()));
    REQUIRE_FALSE(o.rejected);
  };
  auto pr = [&](int n, const std::string& author, char head, std::vector<std::string> paths,
                bool red, Millis build, bool pass, char commit) {
    must(q::PrOpened{n, "feature/" + std::to_string(n), author, "t", sha(head), clock.now()});
    if (red) must(q::CheckReported{sha(head), q::Check{"ci", q::CheckState::Failure}, clock.now()});
    must(q::MergeRequested{n, sha(head), "mm", clock.now()});
    must(q::PolicyChecked{.number = n,
                          .sha = sha(head),
                          .pass = true,
                          .at = clock.now(),
                          .paths = std::move(paths),
                          .target = ports.of<q::CheckPolicy>().back().target,
                          .epoch = ports.of<q::CheckPolicy>().back().epoch});
    auto bc = ports.of<q::BuildCandidate>().back();
    must(q::MergeDone{bc.candidate, q::MergeOutcome::Merged, sha(commit), 0, {}, "", clock.now()});
    must(q::CandidateChecked{bc.candidate, sha(commit), true, {}, clock.now()});
    clock.advance(build);
    must(q::CheckReported{sha(commit),
                          q::Check{"ci", pass ? q::CheckState::Success : q::CheckState::Failure},
                          clock.now()});
    if (pass) must(q::MasterPushed{bc.candidate, true, "", "", clock.now()});
  };
  pr(11, "alice", 'a', {"src/a.cpp"}, false, 20 * kMinute, true, '1');
  clock.set(kStart + 30 * kMinute);
  pr(12, "bob", 'b', {"docs/x.md"}, true, 10 * kMinute, false, '2');
  clock.set(kStart + 60 * kMinute);
  pr(13, "alice", 'c', {"src/b.cpp", "lib/c.cpp"}, false, 40 * kMinute, true, '3');
  REQUIRE(d.state(kRepo)->prs.at(12).status == q::PrStatus::Failed);
}

TEST_CASE("replay: a recorded queue is read back as its own workload and replayed") {
  test::TempDir dir;
  record_history(dir.path());

  WorkloadOptions base;  // what the history does not say: the runners, the conflict model
  base.runners = 2;
  auto r = load_replay(dir.path().string(), kRepo, base);
  REQUIRE_MESSAGE(r.ok(), r.message());
  // The approvals, in order, relative to the first, with their recorded numbers and authors.
  REQUIRE(r->prs.size() == 3);
  CHECK(r->numbers == std::vector<int>{11, 12, 13});
  CHECK(r->prs[0].approved_at == 0);
  CHECK(r->prs[1].approved_at == 30 * kMinute);
  CHECK(r->prs[2].approved_at == 60 * kMinute);
  CHECK(r->prs[0].author == "alice");
  CHECK(r->prs[1].author == "bob");
  // The culprit and the red pre-queue CI; top-level directories as build targets.
  CHECK_FALSE(r->prs[0].bad);
  CHECK(r->prs[1].bad);
  CHECK_FALSE(r->prs[2].bad);
  CHECK(r->prs[1].precheck_red);
  CHECK_FALSE(r->prs[0].precheck_red);
  CHECK(r->prs[0].targets == std::vector<int>{0});  // src
  CHECK(r->prs[1].targets == std::vector<int>{1});  // docs
  CHECK(r->prs[2].targets.size() == 2);             // src and lib
  CHECK(std::find(r->prs[2].targets.begin(), r->prs[2].targets.end(), 0) !=
        r->prs[2].targets.end());
  // The builds as they were, and the workload fitted to them.
  auto durations = r->durations;
  std::sort(durations.begin(), durations.end());
  CHECK(durations == std::vector<Millis>{10 * kMinute, 20 * kMinute, 40 * kMinute});
  CHECK(r->options.fail == doctest::Approx(1.0 / 3));
  CHECK(r->options.flake == 0);
  CHECK(r->options.ci_median_minutes == doctest::Approx(20));
  CHECK(r->options.hours == doctest::Approx(1.0));
  CHECK(r->options.runners == 2);

  // Replayed under serial: the same three PRs, #2 ejected as the culprit, the others landing
  // after one of the recorded build durations (plus the simulated shell's few seconds).
  const Workload w = r->workload(7);
  CHECK(w.prs().size() == 3);
  auto serial = strategy_named("serial", r->options);
  REQUIRE(serial);
  RunResult run_result = run(w, *serial);
  CHECK(run_result.violations.empty());
  CHECK(run_result.prs == 3);
  CHECK(run_result.landed == 2);
  CHECK(run_result.ejected == 1);
  CHECK(run_result.innocent == 0);
  REQUIRE(run_result.ttm_minutes.size() == 2);
  for (double ttm : run_result.ttm_minutes) {
    const bool recorded = std::any_of(durations.begin(), durations.end(), [&](Millis d) {
      const double minutes = static_cast<double>(d) / kMinute;
      return ttm >= minutes && ttm < minutes + 1;
    });
    CHECK_MESSAGE(recorded, ttm);
  }
}

// The production driver on a SQLite store, its requests answered by hand: the policy passes
// (but for the PRs in `refused`), merges and pushes succeed, builds end when a test reports.
struct Shell {
  ManualClock clock{kStart};
  driver::RecordingPorts ports;
  forges::FakeForge forge;
  std::unique_ptr<Store> store;
  std::unique_ptr<driver::Driver> d;
  std::set<int> refused;
  std::size_t answered = 0;                  // ports.calls handled so far
  std::map<q::Sha, std::vector<int>> holds;  // candidate sha -> its PRs beyond master
  int shas = 0;

  Shell(const std::filesystem::path& dir, q::Strategy strategy,
        std::vector<std::string> checks = {"ci"}) {
    auto opened = open_sqlite_store(dir / "dmzbot.db");
    REQUIRE(opened.ok());
    store = std::move(*opened);
    driver::RepoConfig cfg;
    cfg.name = kRepo;
    cfg.settings.required_checks = std::move(checks);
    cfg.settings.strategy = strategy;
    cfg.forge = &forge;
    d = std::make_unique<driver::Driver>(clock, *store, ports, ports, ports, ports,
                                         std::vector<driver::RepoConfig>{cfg});
    REQUIRE(d->start().ok());
    forges::RemoteRefs refs;
    refs.branches["master"] = sha('0');
    d->fetched(kRepo, refs);
  }
  void must(const q::Event& e) {
    auto o = d->apply(kRepo, e);
    INFO((o.rejected ? o.rejected->message : std::string()));
    REQUIRE_FALSE(o.rejected);
  }
  void approve(int n, char head) {
    must(q::PrOpened{n, "f" + std::to_string(n), "dev", "t", sha(head), clock.now()});
    must(q::MergeRequested{n, sha(head), "mm", clock.now()});
    settle();
  }
  // Answers what the driver asked for until it asks for nothing more.
  void settle() {
    while (answered < ports.calls.size()) {
      const auto call = ports.calls[answered++];
      if (const auto* a = std::get_if<q::CheckPolicy>(&call)) {
        const bool pass = !refused.count(a->number);
        must(q::PolicyChecked{.number = a->number,
                              .sha = a->sha,
                              .pass = pass,
                              .reasons = pass ? std::vector<std::string>{} : std::vector{"no"s},
                              .at = clock.now(),
                              .paths = {"src/x.cpp"},
                              .target = a->target,
                              .epoch = a->epoch});
      } else if (const auto* a = std::get_if<q::BuildCandidate>(&call)) {
        const q::Sha commit = "c" + std::string(38, '0') + std::to_string(++shas % 10);
        auto held = holds[a->base];
        for (const auto& item : a->items) held.push_back(item.number);
        holds[commit] = held;
        must(q::MergeDone{a->candidate, q::MergeOutcome::Merged, commit, 0, {}, "", clock.now()});
        must(q::CandidateChecked{a->candidate, commit, true, {}, clock.now()});
      } else if (const auto* a = std::get_if<q::FastForwardMaster>(&call)) {
        must(q::MasterPushed{a->candidate, true, "", "", clock.now()});
      }
    }
  }
  // `context` ends on every candidate on dmz, the newest first: failed if it holds a PR in `bad`.
  void report(const std::string& context, const std::set<int>& bad) {
    const auto train = d->state(kRepo)->train;
    for (auto k = train.rbegin(); k != train.rend(); ++k) {
      if (k->sha.empty() || k->status == q::CandidateStatus::Landing) continue;
      const auto& held = holds[k->sha];
      const bool fails = std::any_of(held.begin(), held.end(), [&](int n) { return bad.count(n); });
      d->apply(kRepo, q::CheckReported{k->sha,
                                       q::Check{context, fails ? q::CheckState::Failure
                                                               : q::CheckState::Success},
                                       clock.now()});
    }
    settle();
  }
};

TEST_CASE("replay: builds that failed behind a culprit are not flakes") {
  test::TempDir dir;
  {
    Shell sh(dir.path(), q::Strategy::Train);
    sh.approve(1, 'a');  // bad
    sh.approve(2, 'b');
    sh.approve(3, 'c');
    REQUIRE(sh.d->state(kRepo)->train.size() == 3);  // {1}, {1,2}, {1,2,3}
    sh.clock.advance(10 * kMinute);
    sh.report("ci", {1});  // all three fail; #2 and #3 are built again without #1
    REQUIRE(sh.d->state(kRepo)->prs.at(1).status == q::PrStatus::Failed);
    sh.clock.advance(10 * kMinute);
    sh.report("ci", {1});
    sh.clock.advance(10 * kMinute);
    sh.report("ci", {1});
    REQUIRE(sh.d->state(kRepo)->prs.count(3) == 0);  // landed and archived
  }
  auto r = load_replay(dir.path().string(), kRepo, WorkloadOptions{});
  REQUIRE_MESSAGE(r.ok(), r.message());
  REQUIRE(r->prs.size() == 3);
  CHECK(r->prs[0].bad);
  CHECK(r->durations.size() == 5);  // three failed, two passed
  CHECK(r->options.fail == doctest::Approx(1.0 / 3));
  CHECK(r->options.flake == 0);
}

TEST_CASE("replay: each approval arrives; cancelled and refused PRs are left out") {
  test::TempDir dir;
  {
    Shell sh(dir.path(), q::Strategy::Serial);
    sh.refused = {4};
    sh.approve(1, 'a');  // bad: ejected, fixed, approved again, lands
    sh.clock.advance(10 * kMinute);
    sh.report("ci", {1});
    REQUIRE(sh.d->state(kRepo)->prs.at(1).status == q::PrStatus::Failed);
    sh.approve(2, 'b');  // lands
    sh.must(q::PrPushed{1, sha('f'), sh.clock.now()});
    sh.must(q::MergeRequested{1, sha('f'), "mm", sh.clock.now()});
    sh.settle();
    sh.approve(3, 'c');  // closed while it waits
    sh.must(q::PrClosed{3, sh.clock.now()});
    sh.approve(4, 'd');  // refused by the policy
    for (int round = 0; round < 3; ++round) {
      sh.clock.advance(10 * kMinute);
      sh.report("ci", {});
    }
    REQUIRE(sh.d->state(kRepo)->prs.count(1) == 0);  // landed and archived
  }
  auto r = load_replay(dir.path().string(), kRepo, WorkloadOptions{});
  REQUIRE_MESSAGE(r.ok(), r.message());
  CHECK(r->numbers == std::vector<int>{1, 2, 1});
  REQUIRE(r->prs.size() == 3);
  CHECK(r->prs[0].bad);
  CHECK_FALSE(r->prs[1].bad);
  CHECK_FALSE(r->prs[2].bad);  // the fix
  CHECK(r->left_out == 2);
}

TEST_CASE("replay: a build's verdict waits for every check it reports") {
  test::TempDir dir;
  {
    Shell sh(dir.path(), q::Strategy::Serial, {"ci", "lint"});
    sh.approve(1, 'a');  // bad, but only lint says so, 20 minutes after ci passed
    sh.clock.advance(10 * kMinute);
    sh.report("ci", {});
    sh.clock.advance(20 * kMinute);
    sh.report("lint", {1});
    REQUIRE(sh.d->state(kRepo)->prs.at(1).status == q::PrStatus::Failed);
  }
  auto r = load_replay(dir.path().string(), kRepo, WorkloadOptions{});
  REQUIRE_MESSAGE(r.ok(), r.message());
  REQUIRE(r->prs.size() == 1);
  CHECK(r->prs[0].bad);
  CHECK(r->durations == std::vector<Millis>{30 * kMinute});
  CHECK(r->options.flake == 0);  // the failed build held the culprit
}

TEST_CASE("replay: no history, or no such repository, is a clear error") {
  test::TempDir dir;
  WorkloadOptions base;
  auto none = load_replay(dir.path().string(), kRepo, base);
  REQUIRE_FALSE(none.ok());
  CHECK(none.code() == Code::kNotFound);
  record_history(dir.path());
  auto other = load_replay(dir.path().string(), "acme/other", base);
  REQUIRE_FALSE(other.ok());
  CHECK(other.code() == Code::kNotFound);
  SimulateOptions o;
  o.replay_dir = dir.path().string();  // --replay without --repo
  CHECK(run_simulate(o) == 2);
}

}  // namespace
}  // namespace dmz::sim

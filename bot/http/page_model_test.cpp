#include "bot/http/page_model.hpp"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "queue/delta.hpp"
#include "queue/json.hpp"

using namespace dmz;
using namespace dmz::page;
namespace q = dmz::queue;

namespace {

constexpr Millis kMin = 60'000;

q::Sha sha(char c) { return q::Sha(40, c); }

// An event as the driver logs it.
EventLogEntry logged(const q::Event& e, Millis at, std::int64_t seq) {
  EventLogEntry out;
  out.seq = seq;
  out.repo = "acme/widget";
  out.kind = q::event_kind(e);
  out.json = q::to_json(e).dump();
  out.number = q::pr_of(e);
  out.at = at;
  return out;
}

struct Log {
  std::vector<EventLogEntry> events;
  void add(const q::Event& e, Millis at) { events.push_back(logged(e, at, events.size() + 1)); }
  // A candidate pushed at `at` whose checks report `states` after `took`.
  void candidate(q::CandidateId id, char c, Millis at, Millis took,
                 std::vector<std::pair<std::string, q::CheckState>> states, bool lands) {
    add(q::MergeDone{id, q::MergeOutcome::Merged, sha(c), 0, {}, "", at}, at);
    for (const auto& [context, state] : states)
      add(q::CheckReported{sha(c), q::Check{context, state, "", "", at + took}, at + took},
          at + took);
    if (lands) add(q::MasterPushed{id, true, "", "", at + took + 1000}, at + took + 1000);
  }
};

}  // namespace

TEST_CASE("page model: candidates as the event log tells them") {
  Log log;
  log.candidate(1, 'a', 10 * kMin, 5 * kMin, {{"ci/test", q::CheckState::Success}}, true);
  log.add(q::MergeDone{2, q::MergeOutcome::Conflict, "", 4, {"x.c"}, "", 20 * kMin}, 20 * kMin);
  log.candidate(3, 'c', 30 * kMin, 2 * kMin, {{"ci/test", q::CheckState::Failure}}, false);
  q::RepoState state;
  q::Candidate live;
  live.id = 3;
  state.train.push_back(live);

  auto records = candidate_records(log.events, state);
  REQUIRE(records.size() == 2);  // a conflict never reached dmz
  CHECK(records[0].id == 1);
  CHECK(records[0].sha == sha('a'));
  CHECK(records[0].pushed_at == 10 * kMin);
  CHECK(records[0].landed_at == 15 * kMin + 1000);
  CHECK(records[0].ended);
  CHECK(records[0].passed_at.at("ci/test") == 15 * kMin);
  CHECK(records[1].id == 3);
  CHECK_FALSE(records[1].ended);  // still in the train
  CHECK(records[1].landed_at == 0);
  CHECK(records[1].checks.at("ci/test").state == q::CheckState::Failure);
  CHECK(records[1].passed_at.empty());
}

TEST_CASE("warnings: a required check that never reports on the last candidates") {
  WarningInput in;
  in.required_checks = {"ci/test", "ci/lint"};
  in.health.loaded = true;
  in.health.remote_ok = true;
  in.now = 100 * kMin;
  for (int i = 0; i < 3; ++i) {
    CandidateRecord r;
    r.id = static_cast<q::CandidateId>(i + 1);
    r.pushed_at = (10 + i) * kMin;
    r.ended = true;
    r.checks["ci/lint"] = q::Check{"ci/lint", q::CheckState::Success};
    r.checks["ci/tests"] = q::Check{"ci/tests", q::CheckState::Success};  // a near miss
    in.candidates.push_back(r);
  }
  auto w = warnings(in);
  REQUIRE(w.size() == 1);
  CHECK(w[0].code == "check-never-reports");
  CHECK(w[0].text.starts_with(
      "`ci/test` never reports on `dmz` (none of the last 3 candidates): does your CI build on "
      "push to it?"));
  CHECK(w[0].text.find("It reported `ci/tests` instead") != std::string::npos);

  SUBCASE("one report on any of them is enough") {
    in.candidates[1].checks["ci/test"] = q::Check{"ci/test", q::CheckState::Pending};
    CHECK(warnings(in).empty());
  }
  SUBCASE("too few settled candidates: no judgement yet") {
    in.candidates[2].ended = false;
    in.candidates[2].pushed_at = in.now - 2 * kMin;  // still within the grace period
    CHECK(warnings(in).empty());
    in.now += in.grace;  // now it has had its time
    CHECK(warnings(in).size() == 1);
  }
  SUBCASE("a check that failed on each of them") {
    for (auto& r : in.candidates) r.checks["ci/test"] = q::Check{"ci/test", q::CheckState::Error};
    w = warnings(in);
    REQUIRE(w.size() == 1);
    CHECK(w[0].code == "check-always-fails");
    CHECK(w[0].text.find("`ci/test` failed on each of the last 3 candidates") == 0);
    in.candidates[0].checks["ci/test"].state = q::CheckState::Success;
    CHECK(warnings(in).empty());
  }
}

// A train's speculative candidates, cut seconds after their push, never hear from a CI that
// reports only when a build is done: they are no sign that it never builds dmz.
TEST_CASE("warnings: candidates cut before CI could report are not judged") {
  WarningInput in;
  in.required_checks = {"ci/test"};
  in.health.loaded = true;
  in.health.remote_ok = true;
  in.now = 100 * kMin;
  auto judged = [&](const Log& log) {
    in.candidates = candidate_records(log.events, q::RepoState{});  // the train is empty
    return warnings(in);
  };
  Log cut;
  for (int i = 0; i < 3; ++i) {
    const Millis at = (10 + i) * kMin;
    cut.candidate(static_cast<q::CandidateId>(i + 1), static_cast<char>('a' + i), at, 0, {}, false);
    cut.add(q::CandidateChecked{static_cast<q::CandidateId>(i + 1), sha('a' + i), true, {}, at},
            at + 1000);  // what every build brings: no end
    cut.add(q::CancelRequested{7, "mm", at + 20'000}, at + 20'000);
  }
  const auto records = candidate_records(cut.events, q::RepoState{});
  REQUIRE(records.size() == 3);
  CHECK(records[0].alive_until == 10 * kMin + 20'000);
  CHECK(judged(cut).empty());

  // Ended by the check timeout half an hour after each push: CI had its chance.
  Log timed_out;
  for (int i = 0; i < 3; ++i) {
    const Millis at = (10 + 31 * i) * kMin;
    timed_out.candidate(static_cast<q::CandidateId>(i + 1), static_cast<char>('a' + i), at, 0, {},
                        false);
    timed_out.add(q::Tick{at + 30 * kMin}, at + 30 * kMin);
  }
  in.now = 200 * kMin;
  auto w = judged(timed_out);
  REQUIRE(w.size() == 1);
  CHECK(w[0].code == "check-never-reports");
}

TEST_CASE("warnings: the remote, the service and the outbox") {
  WarningInput in;
  in.health.loaded = true;
  in.health.remote_ok = false;
  in.health.fetch_failures = 2;
  in.health.last_error = "connection refused";
  CHECK(warnings(in).empty());  // two failures may be a blip
  in.health.fetch_failures = 3;
  auto w = warnings(in);
  REQUIRE(w.size() == 1);
  CHECK(w[0].code == "remote-unreachable");
  CHECK(w[0].text.find("3 fetches in a row: connection refused") != std::string::npos);

  in.health.loaded = false;
  in.health.last_error = "lease held by host-2";
  w = warnings(in);
  REQUIRE(w.size() == 1);
  CHECK(w[0].code == "not-served");
  CHECK(w[0].text.find("lease held by host-2") != std::string::npos);

  in.health.loaded = true;
  in.health.remote_ok = true;
  in.health.outbox_pending = 25;
  w = warnings(in);
  REQUIRE(w.size() == 1);
  CHECK(w[0].code == "outbox-backlog");
}

TEST_CASE("page model: the train, verdicts, positions and expected times") {
  Log log;
  // Two landed candidates: one took 10 min, one 6 min (push to landing, +1 s each).
  log.candidate(1, 'a', 0, 10 * kMin, {{"ci/test", q::CheckState::Success}}, true);
  log.candidate(2, 'b', 20 * kMin, 6 * kMin, {{"ci/test", q::CheckState::Success}}, true);
  log.add(q::PolicyChecked{5, sha('5'), true, {}, 40 * kMin}, 40 * kMin);
  log.add(q::PolicyChecked{6, sha('6'), true, {}, 41 * kMin}, 41 * kMin);
  log.add(
      q::PolicyChecked{
          8, sha('8'), false, {"commit 8888888 is not signed by its author"}, 42 * kMin},
      42 * kMin);
  log.candidate(3, 'c', 50 * kMin, 1 * kMin, {{"ci/test", q::CheckState::Pending}}, false);

  RepoView view;
  view.settings.required_checks = {"ci/test"};
  view.health.loaded = true;
  view.health.remote_ok = true;
  view.state.master = sha('m');
  auto pr = [](int n, q::PrStatus st, char head) {
    q::PullRequest p;
    p.number = n;
    p.title = "PR " + std::to_string(n);
    p.branch = "feature/" + std::to_string(n);
    p.head = q::Sha(40, head);
    p.status = st;
    p.approval = q::Approval{p.head, "mm", 39 * kMin};
    p.queued_at = n;
    return p;
  };
  view.state.prs[5] = pr(5, q::PrStatus::Building, '5');
  view.state.prs[5].candidate = 3;
  view.state.prs[6] = pr(6, q::PrStatus::Queued, '6');
  view.state.prs[7] = pr(7, q::PrStatus::Approved, '7');
  view.state.prs[8] = pr(8, q::PrStatus::Failed, '8');
  view.state.prs[8].reason_code = q::Reason::PolicyFailed;
  q::Candidate c;
  c.id = 3;
  c.prs = {5};
  c.sha = sha('c');
  c.status = q::CandidateStatus::Building;
  c.pushed_at = 50 * kMin;
  c.checks["ci/test"] = q::Check{"ci/test", q::CheckState::Pending, "", "", 51 * kMin};
  c.checks["ci/extra"] =
      q::Check{"ci/extra", q::CheckState::Success, "", "https://ci/x", 52 * kMin};
  view.state.train.push_back(c);
  HistoryEntry landed;
  landed.number = 4;
  landed.status = q::PrStatus::Merged;
  landed.at = 27 * kMin;
  std::vector<HistoryEntry> outcomes = {landed};

  RepoInput in;
  in.name = "acme/widget";
  in.forge = "plain";
  in.view = &view;
  in.events = &log.events;
  in.outcomes = &outcomes;
  in.now = 53 * kMin;
  auto page = build_repo_page(in);

  CHECK(page.summary.strategy == "serial");
  CHECK(page.summary.queue_length == 2);  // #5 building, #6 waiting
  REQUIRE(page.summary.last_landing);
  CHECK(page.summary.last_landing->number == 4);
  REQUIRE(page.summary.last_check);
  CHECK(page.summary.last_check->context == "ci/test");
  CHECK(page.last_seq == log.events.back().seq);

  // The pace: the median of 10 min 1 s and 6 min 1 s is the lower one.
  REQUIRE(page.pace);
  CHECK(page.pace->per_candidate == 6 * kMin + 1000);
  REQUIRE(page.train.size() == 1);
  const auto& cr = page.train[0];
  CHECK(cr.elapsed == 3 * kMin);
  CHECK(cr.eta == 56 * kMin + 1000);
  REQUIRE(cr.checks.size() == 2);
  CHECK(cr.checks[0].context == "ci/test");  // required first
  CHECK(cr.checks[0].required);
  CHECK(cr.checks[0].look == CheckLook::Running);
  CHECK(cr.checks[0].expected == 6 * kMin);  // the median of 10 and 6 min to pass, lower
  CHECK(cr.checks[1].context == "ci/extra");
  CHECK_FALSE(cr.checks[1].required);
  CHECK(cr.checks[1].look == CheckLook::Passed);
  CHECK(cr.checks[1].elapsed == 2 * kMin);  // until it reported
  REQUIRE(cr.prs.size() == 1);
  CHECK(cr.prs[0].verdict.state == Verdict::State::Passed);
  CHECK(cr.prs[0].verdict.approver == "mm");

  REQUIRE(page.waiting.size() == 1);
  CHECK(page.waiting[0].pr.number == 6);
  CHECK(page.waiting[0].position == 1);
  CHECK(page.waiting[0].eta == *cr.eta + page.pace->per_candidate);

  REQUIRE(page.others.size() == 2);
  CHECK(page.others[0].pr.number == 7);
  CHECK(page.others[0].verdict.state == Verdict::State::Checking);
  CHECK(page.others[1].pr.number == 8);
  CHECK(page.others[1].verdict.state == Verdict::State::Failed);
  CHECK(page.others[1].verdict.reasons ==
        std::vector<std::string>{"commit 8888888 is not signed by its author"});

  SUBCASE("the PR page: its timeline, verdict, candidate and ETA") {
    PullView pv;
    pv.pr = view.state.prs[5];
    pv.position = std::nullopt;
    pv.events.push_back(
        logged(q::PrOpened{5, "feature/5", "dev", "PR 5", sha('5'), 38 * kMin}, 38 * kMin, 1));
    pv.events.push_back(logged(q::MergeRequested{5, sha('5'), "mm", 39 * kMin}, 39 * kMin, 2));
    pv.events.push_back(logged(q::PolicyChecked{5, sha('5'), true, {}, 40 * kMin}, 40 * kMin, 3));
    auto pull = build_pull_page("acme/widget", pv, page);
    REQUIRE(pull.candidate);
    CHECK(pull.candidate->candidate.id == 3);
    CHECK(pull.row.eta == cr.eta);
    CHECK(pull.row.verdict.state == Verdict::State::Passed);
    REQUIRE(pull.timeline.size() == 3);
    CHECK(pull.timeline[0].what ==
          "registered from `feature/5` at `" + sha('5').substr(0, 10) + "` by dev");
    CHECK(pull.timeline[1].what == "merge requested by mm at `" + sha('5').substr(0, 10) + "`");
    CHECK(pull.timeline[2].what.find("policy verdict") == 0);
  }
  SUBCASE("a finished PR: its outcome with its reason in the timeline") {
    PullView pv;
    pv.archived = true;
    pv.pr = view.state.prs[8];
    pv.events.push_back(
        logged(q::PolicyChecked{8, sha('8'), false, {"unsigned"}, 42 * kMin}, 42 * kMin, 1));
    HistoryEntry failed;
    failed.number = 8;
    failed.status = q::PrStatus::Failed;
    failed.reason = q::Reason::PolicyFailed;
    failed.message = "the policy refused it: sign your commits, then push";
    failed.details = {"unsigned"};
    failed.at = 42 * kMin + 1;
    pv.outcomes.push_back(failed);
    auto pull = build_pull_page("acme/widget", pv, page);
    CHECK_FALSE(pull.candidate);
    REQUIRE(pull.timeline.size() == 2);
    CHECK(pull.timeline[0].reason_code == "policy-failed");
    CHECK(pull.timeline[0].details == std::vector<std::string>{"unsigned"});
    CHECK(pull.timeline[1].what == "failed: the policy refused it: sign your commits, then push");
    CHECK(pull.timeline[1].reason_code == "policy-failed");
  }
}

TEST_CASE("page model: the strategy's name") {
  q::Settings s;
  CHECK(strategy_name(s) == "serial");
  s.max_train = 3;
  CHECK(strategy_name(s) == "train of 3");
  s.max_batch = 4;
  CHECK(strategy_name(s) == "train of 3, batches of 4");
  s.strategy = q::Strategy::Batch;
  s.max_train = 1;
  CHECK(strategy_name(s) == "batches of 4, bisected on failure");
  s.strategy = q::Strategy::Train;
  s.max_batch = 1;
  s.flaky_retries = 1;
  CHECK(strategy_name(s) == "train, window 4 (1..32), flaky checks built again 1 time");
  s.strategy = q::Strategy::Adaptive;
  s.flaky_retries = 0;
  s.lanes = q::Lanes::Paths;
  CHECK(strategy_name(s) == "adaptive, window 4 (1..32), lanes by paths");
  s.lanes = q::Lanes::Groups;
  s.path_groups = {{"docs", {"docs/**"}}, {"web", {"web/**"}}};
  CHECK(strategy_name(s) == "adaptive, window 4 (1..32), lanes by path groups (docs, web)");
}

TEST_CASE("page model: the train's lanes, and probes apart") {
  q::Settings s;
  auto cand = [](q::CandidateId id, std::uint64_t lane, bool probe = false) {
    q::Candidate c;
    c.id = id;
    c.lane = lane;
    c.probe = probe;
    return c;
  };
  // One chain: no lanes to draw.
  CHECK(lanes_of({cand(1, 0), cand(2, 0)}, s).empty());
  CHECK(lanes_of({}, s).empty());

  s.lanes = q::Lanes::Groups;
  s.path_groups = {{"docs", {"docs/**"}}, {"web", {"web/**"}}};
  auto lanes = lanes_of({cand(1, 0), cand(2, 2), cand(3, 0), cand(4, 4, true), cand(5, 2)}, s);
  REQUIRE(lanes.size() == 3);
  CHECK(lanes[0].name == "main lane");
  CHECK(lanes[0].candidates == std::vector<std::size_t>{0, 2});
  CHECK(lanes[1].id == 2);
  CHECK(lanes[1].name == "lane `web`");
  CHECK(lanes[1].candidates == std::vector<std::size_t>{1, 4});
  CHECK(lanes[2].probes);
  CHECK(lanes[2].candidates == std::vector<std::size_t>{3});

  s.lanes = q::Lanes::Paths;  // lanes by paths have numbers, not names
  lanes = lanes_of({cand(1, 0), cand(2, 9)}, s);
  REQUIRE(lanes.size() == 2);
  CHECK(lanes[1].name == "lane 9");
}

// PR n at head nnnn..., approved by mm and queued.
q::PullRequest queued_pr(int n) {
  q::PullRequest p;
  p.number = n;
  p.head = sha(static_cast<char>('0' + n));
  p.status = q::PrStatus::Queued;
  p.approval = q::Approval{p.head, "mm", 1000};
  return p;
}

// The scenario the verdict's names (signers, counted approvers) are tested on: #5 queued with
// its names, #6 queued from an older state that lacks them (its verdict's event has them:
// "carol"), #7 being judged with stale names. `names` is the field of the PR and of the event.
struct NamesScenario {
  RepoView view;
  Log log;
  q::PullRequest last;  // #7, to build more PRs from

  NamesScenario(std::vector<std::string> q::PullRequest::*pr_names,
                std::vector<std::string> q::PolicyChecked::*event_names) {
    view.settings.required_checks = {"ci/test"};
    q::PullRequest p = queued_pr(5);
    p.*pr_names = {"alice", "bob"};
    view.state.prs[5] = p;
    p.number = 6;
    p.head = sha('6');
    p.approval = q::Approval{p.head, "mm", 1000};
    (p.*pr_names).clear();  // an older state: the event log still knows
    view.state.prs[6] = p;
    p.number = 7;
    p.head = sha('7');
    p.status = q::PrStatus::Approved;  // being judged: no name is known to count yet
    p.approval = q::Approval{p.head, "mm", 1000};
    p.*pr_names = {"stale"};
    view.state.prs[7] = p;
    last = p;
    q::PolicyChecked six{6, sha('6'), true, {}, 2000};
    six.*event_names = {"carol"};
    log.add(six, 2000);
  }

  RepoPage page() const {
    RepoInput in;
    in.name = "acme/widget";
    in.view = &view;
    in.events = &log.events;
    in.now = 3000;
    return build_repo_page(in);
  }
};

// A verdict asked for under an older policy that comes back last (the engine did not take it,
// or judged the PR again since) does not stand over the newer one, and says so in the timeline.
TEST_CASE("page model: a verdict under an older policy epoch is superseded, even if it came last") {
  RepoView view;
  view.settings.required_checks = {"ci/test"};
  const q::PullRequest p = queued_pr(5);
  view.state.prs[5] = p;
  view.state.policy_epoch = 2;
  q::PolicyChecked taken{5, sha('5'), true, {}, 2000};
  taken.epoch = 2;
  q::PolicyChecked late{5, sha('5'), false, {"commit 5555555 is not signed"}, 3000};
  late.epoch = 1;
  Log log;
  log.add(taken, 2000);
  log.add(late, 3000);
  RepoInput in;
  in.name = "acme/widget";
  in.view = &view;
  in.events = &log.events;
  in.now = 4000;
  auto page = build_repo_page(in);
  REQUIRE(page.waiting.size() == 1);
  CHECK(page.waiting[0].verdict.state == Verdict::State::Passed);
  CHECK(page.waiting[0].verdict.reasons.empty());

  PullView pv;
  pv.pr = p;
  pv.events = log.events;
  auto pull = build_pull_page("acme/widget", pv, page);
  CHECK(pull.row.verdict.state == Verdict::State::Passed);
  REQUIRE(pull.timeline.size() == 2);
  CHECK(pull.timeline[0].what.find("superseded") == std::string::npos);
  CHECK(pull.timeline[1].what.find("failed (superseded: judged again under a newer policy)") !=
        std::string::npos);
  CHECK(pull.timeline[1].reason_code.empty());
}

TEST_CASE("page model: who signed, from the PR or from its verdict's event") {
  const NamesScenario scenario(&q::PullRequest::signers, &q::PolicyChecked::signers);
  auto page = scenario.page();
  REQUIRE(page.waiting.size() == 2);
  CHECK(page.waiting[0].verdict.signers == std::vector<std::string>{"alice", "bob"});
  CHECK(page.waiting[1].verdict.signers == std::vector<std::string>{"carol"});
  REQUIRE(page.others.size() == 1);
  CHECK(page.others[0].verdict.state == Verdict::State::Checking);
  CHECK(page.others[0].verdict.signers.empty());
}

TEST_CASE("page model: whose approvals counted, from the PR or from its verdict's event") {
  NamesScenario scenario(&q::PullRequest::approvers, &q::PolicyChecked::approvers);
  q::PullRequest p = scenario.last;
  p.number = 8;  // refused by the policy, its approval gone: it keeps what did count
  p.head = sha('8');
  p.status = q::PrStatus::Failed;
  p.approval.reset();
  p.reason_code = q::Reason::PolicyFailed;
  p.details = {"needs 2 approvals from maintainers for paths **, has 1 (dave)"};
  p.approvers = {"dave"};
  scenario.view.state.prs[8] = p;
  auto page = scenario.page();
  REQUIRE(page.waiting.size() == 2);
  CHECK(page.waiting[0].verdict.approvers == std::vector<std::string>{"alice", "bob"});
  CHECK(page.waiting[0].verdict.approver == "mm");  // who asked to merge, kept apart
  CHECK(page.waiting[1].verdict.approvers == std::vector<std::string>{"carol"});
  REQUIRE(page.others.size() == 2);
  CHECK(page.others[0].verdict.state == Verdict::State::Checking);
  CHECK(page.others[0].verdict.approvers.empty());
  CHECK(page.others[1].verdict.state == Verdict::State::Failed);
  CHECK(page.others[1].verdict.approvers == std::vector<std::string>{"dave"});
  CHECK(page.others[1].verdict.reasons == p.details);

  // The PR page's timeline: the merge request, then the verdict with whose approvals counted.
  PullView pv;
  pv.pr = scenario.view.state.prs[5];
  pv.events.push_back(logged(q::MergeRequested{5, sha('5'), "mm", 1000}, 1000, 1));
  q::PolicyChecked five{5, sha('5'), true, {}, 1500};
  five.approvers = {"alice", "bob"};
  pv.events.push_back(logged(five, 1500, 2));
  q::PolicyChecked none{5, sha('5'), false, {"needs 2 approvals from maintainers"}, 1600};
  pv.events.push_back(logged(none, 1600, 3));
  auto pull = build_pull_page("acme/widget", pv, page);
  REQUIRE(pull.timeline.size() == 3);
  CHECK(pull.timeline[0].what == "merge requested by mm at `" + sha('5').substr(0, 10) + "`");
  CHECK(pull.timeline[1].what == "policy verdict at `" + sha('5').substr(0, 10) +
                                     "`: passed; approved (policy): `alice`, `bob`");
  CHECK(pull.timeline[2].what == "policy verdict at `" + sha('5').substr(0, 10) + "`: failed");
  CHECK(pull.timeline[2].details == std::vector<std::string>{"needs 2 approvals from maintainers"});
}

TEST_CASE("page model: a finished PR's timeline holds its candidates and their checks") {
  Log log;  // the PR's events as the store files them: its own and its candidates'
  log.add(q::PrOpened{2, "feature/2", "dev", "PR 2", sha('2'), 1000}, 1000);
  log.add(q::MergeRequested{2, sha('2'), "mm", 2000}, 2000);
  log.add(q::MergeDone{7, q::MergeOutcome::Conflict, "", 3, {"a.txt"}, "", 3000}, 3000);
  log.add(q::MergeDone{8, q::MergeOutcome::Merged, sha('c'), 0, {}, "", 4000}, 4000);
  log.add(q::CandidateChecked{8, sha('c'), true, {}, 4500}, 4500);
  log.add(
      q::CheckReported{
          sha('c'), q::Check{"ci/lint", q::CheckState::Success, "", "https://ci/lint", 5000}, 5000},
      5000);
  log.add(q::CheckReported{sha('c'),
                           q::Check{"ci/test", q::CheckState::Failure, "2 failed",
                                    "https://ci/test/8", 64'000},
                           64'000},
          64'000);
  RepoView view;
  view.settings.required_checks = {"ci/test", "ci/build"};
  RepoInput in;
  in.name = "acme/widget";
  in.view = &view;
  in.now = 100'000;
  auto repo = build_repo_page(in);  // #2 is not in the train any more

  PullView pv;
  pv.archived = true;
  pv.pr.number = 2;
  pv.pr.status = q::PrStatus::Failed;
  pv.events = log.events;
  auto pull = build_pull_page("acme/widget", pv, repo);
  std::vector<std::string> what;
  for (const auto& t : pull.timeline) what.push_back(t.what);
  REQUIRE(what.size() == 5);  // the check reports are inside their candidate's entry
  CHECK(what[2] == "candidate 7: merge conflict in #3's merge");
  CHECK(pull.timeline[2].reason_code.empty());  // not its own conflict
  CHECK(what[3] == "in candidate 8, pushed to `dmz` at `" + sha('c').substr(0, 10) + "`");
  CHECK(what[4] == "candidate 8's own merge commits passed the policy");
  const auto& checks = pull.timeline[3].checks;
  REQUIRE(checks.size() == 3);
  CHECK(checks[0].context == "ci/test");  // required ones first, in their order
  CHECK(checks[0].required);
  CHECK(checks[0].look == CheckLook::Failed);
  CHECK(checks[0].url == "https://ci/test/8");
  CHECK(checks[0].description == "2 failed");
  CHECK(checks[0].elapsed == 60'000);
  CHECK(checks[0].at == 64'000);
  CHECK(checks[1].context == "ci/build");  // required, never reported
  CHECK(checks[1].look == CheckLook::Pending);
  CHECK(checks[2].context == "ci/lint");
  CHECK_FALSE(checks[2].required);
  CHECK(checks[2].look == CheckLook::Passed);

  SUBCASE("and its landing") {
    log.add(q::MasterPushed{8, true, "", "", 70'000}, 70'000);
    pv.events = log.events;
    auto landed = build_pull_page("acme/widget", pv, repo);
    CHECK(landed.timeline.back().what ==
          "candidate 8 landed: `master` moved to `" + sha('c').substr(0, 10) + "`");
  }
}

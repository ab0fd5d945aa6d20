#include "queue/json.hpp"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

using namespace dmz::queue;
using nlohmann::json;

namespace {

Sha sha(char c) { return Sha(40, c); }

RepoState sample() {
  RepoState s;
  s.repo = "acme/app";
  s.master = sha('0');
  s.next_candidate = 8;

  PullRequest building;
  building.number = 3;
  building.branch = "feature/login";
  building.author = "ann";
  building.title = "Login";
  building.head = sha('a');
  building.status = PrStatus::Building;
  building.approval = Approval{sha('a'), "mm", 111};
  building.queued_at = 111;
  building.candidate = 7;
  s.prs[3] = building;

  PullRequest late;
  late.number = 5;
  late.branch = "bug/crash";
  late.author = "bob";
  late.title = "Crash";
  late.head = sha('b');
  late.status = PrStatus::Queued;
  late.approval = Approval{sha('b'), "mm", 300};
  late.queued_at = 300;
  s.prs[5] = late;

  PullRequest early = late;
  early.number = 6;
  early.head = sha('d');
  early.approval = Approval{sha('d'), "mm", 200};
  early.queued_at = 200;
  s.prs[6] = early;

  PullRequest failed;
  failed.number = 9;
  failed.branch = "feature/x";
  failed.head = sha('e');
  failed.status = PrStatus::Failed;
  failed.reason = "merge conflict in a.txt";
  failed.details = {"a.txt"};
  s.prs[9] = failed;

  Candidate k;
  k.id = 7;
  k.prs = {3};
  k.base = sha('0');
  k.sha = sha('c');
  k.status = CandidateStatus::Building;
  k.checks["ci/build"] = Check{"ci/build", CheckState::Pending, "running", "https://ci/1", 400};
  k.created_at = 120;
  k.pushed_at = 130;
  s.train.push_back(k);
  return s;
}

const json& pr_by_number(const json& doc, int n) {
  for (const auto& pr : doc.at("prs"))
    if (pr.at("number") == n) return pr;
  FAIL("no pr " << n);
  static json none;
  return none;
}

}  // namespace

TEST_CASE("the queue document shows every PR, its position and the train") {
  const json doc = to_json(sample());
  CHECK(doc.at("repo") == "acme/app");
  CHECK(doc.at("master") == sha('0'));
  REQUIRE(doc.at("prs").size() == 4);
  CHECK(doc.at("prs")[0].at("number") == 3);  // by number

  const json& b = pr_by_number(doc, 3);
  CHECK(b.at("branch") == "feature/login");
  CHECK(b.at("author") == "ann");
  CHECK(b.at("title") == "Login");
  CHECK(b.at("head") == sha('a'));
  CHECK(b.at("status") == "building");
  CHECK(b.at("approval") == json{{"sha", sha('a')}, {"approver", "mm"}, {"at", 111}});
  CHECK(b.at("candidate") == 7);
  CHECK(b.at("position").is_null());
  CHECK(b.at("queued_at") == 111);
  CHECK(b.at("reason") == "");
  CHECK(b.at("details") == json::array());

  CHECK(pr_by_number(doc, 6).at("position") == 1);  // queued earlier
  CHECK(pr_by_number(doc, 5).at("position") == 2);
  CHECK(pr_by_number(doc, 5).at("candidate").is_null());

  const json& f = pr_by_number(doc, 9);
  CHECK(f.at("status") == "failed");
  CHECK(f.at("approval").is_null());
  CHECK(f.at("reason") == "merge conflict in a.txt");
  CHECK(f.at("details") == json::array({"a.txt"}));

  REQUIRE(doc.at("train").size() == 1);
  const json& k = doc.at("train")[0];
  CHECK(k.at("id") == 7);
  CHECK(k.at("prs") == json::array({3}));
  CHECK(k.at("base") == sha('0'));
  CHECK(k.at("sha") == sha('c'));
  CHECK(k.at("status") == "building");
  CHECK(k.at("created_at") == 120);
  CHECK(k.at("pushed_at") == 130);
  CHECK(k.at("checks") == json::array({json{{"context", "ci/build"},
                                            {"state", "pending"},
                                            {"description", "running"},
                                            {"url", "https://ci/1"},
                                            {"at", 400}}}));
}

TEST_CASE("the queue document shows the strategies' bookkeeping and, when given, the ETA") {
  RepoState s = sample();
  s.window = 5;
  s.observed.build_ms = 1800;
  s.observed.fail_permille = 90;
  s.observed.builds = 12;
  auto& held = s.prs.at(5);
  held.priority = 3;
  held.held_by = 7;
  held.group = 12;
  held.precheck = CheckState::Failure;
  held.paths.assign(150, "src/x.c");  // the document shows the first 100
  s.train[0].lane = 2;
  s.train[0].attempt = 2;
  s.train[0].failed = true;
  std::map<int, Millis> eta = {{3, 5000}};
  const json doc = to_json(s, &eta);
  CHECK(doc.at("window") == 5);
  CHECK(doc.at("observed") == json{{"build_ms", 1800}, {"fail_permille", 90}, {"builds", 12}});
  const json& p = pr_by_number(doc, 5);
  CHECK(p.at("priority") == 3);
  CHECK(p.at("held_by") == 7);
  CHECK(p.at("group") == 12);
  CHECK(p.at("precheck") == "failure");
  CHECK(p.at("paths").size() == 100);
  CHECK(p.at("position").is_null());  // held: not waiting for the train
  CHECK(p.at("eta").is_null());
  CHECK(pr_by_number(doc, 3).at("eta") == 5000);
  const json& k = doc.at("train")[0];
  CHECK(k.at("lane") == 2);
  CHECK(k.at("probe") == false);
  CHECK(k.at("with") == json::array());
  CHECK(k.at("attempt") == 2);
  CHECK(k.at("failed") == true);
  CHECK_FALSE(to_json(s).at("prs")[0].contains("eta"));  // no estimate asked for
}

TEST_CASE("an empty repository is an empty document, not nulls") {
  RepoState s;
  s.repo = "o/n";
  const json doc = to_json(s);
  CHECK(doc.at("prs") == json::array());
  CHECK(doc.at("train") == json::array());
  CHECK(doc.at("master") == "");
}

TEST_CASE("events carry their snake_case type and fields") {
  CHECK(to_json(Event{MergeRequested{4, sha('a'), "mm", 55}}) == json{{"type", "merge_requested"},
                                                                      {"number", 4},
                                                                      {"sha", sha('a')},
                                                                      {"approver", "mm"},
                                                                      {"at", 55}});
  PolicyChecked judged{4,         sha('a'), true,    {}, 56, {"src/a.c", "docs/b.md"},
                       {"alice"}, {"bob"},  sha('m')};
  judged.tag = sha('t');
  CHECK(to_json(Event{judged}) == json{{"type", "policy_checked"},
                                       {"number", 4},
                                       {"sha", sha('a')},
                                       {"pass", true},
                                       {"reasons", json::array()},
                                       {"at", 56},
                                       {"paths", {"src/a.c", "docs/b.md"}},
                                       {"signers", {"alice"}},
                                       {"approvers", {"bob"}},
                                       {"target", sha('m')},
                                       {"epoch", 0},
                                       {"tag", sha('t')},
                                       {"unavailable", ""}});
  CHECK(to_json(Event{PrOpened{1, "feature/a", "ann", "A", sha('a'), 1}}) ==
        json{{"type", "pr_opened"},
             {"number", 1},
             {"branch", "feature/a"},
             {"author", "ann"},
             {"title", "A"},
             {"head", sha('a')},
             {"at", 1}});
  CHECK(to_json(Event{MergeDone{2, MergeOutcome::Conflict, "", 4, {"x", "y"}, "", 9}}) ==
        json{{"type", "merge_done"},
             {"candidate", 2},
             {"outcome", "conflict"},
             {"sha", ""},
             {"culprit", 4},
             {"conflicts", {"x", "y"}},
             {"message", ""},
             {"at", 9}});
  const json check =
      to_json(Event{CheckReported{sha('c'), {"ci/build", CheckState::Failure, "red", "u", 3}, 4}});
  CHECK(check.at("type") == "check_reported");
  CHECK(check.at("check").at("state") == "failure");
  CHECK(check.at("check").at("context") == "ci/build");
  CHECK(to_json(Event{MasterPushed{2, false, sha('9'), "stale", 5}}) ==
        json{{"type", "master_pushed"},
             {"candidate", 2},
             {"ok", false},
             {"remote_master", sha('9')},
             {"message", "stale"},
             {"at", 5}});
  CHECK(to_json(Event{PolicyChecked{3, sha('a'), false, {"unsigned"}, 6}}).at("reasons") ==
        json::array({"unsigned"}));
  CHECK(to_json(Event{Tick{77}}) == json{{"type", "tick"}, {"at", 77}});
  CHECK(to_json(Event{Tick{77, 5}}) == json{{"type", "tick"}, {"at", 77}, {"unobserved_ms", 5}});
  CHECK(to_json(Event{Tick{77, 0, true}}) == json{{"type", "tick"}, {"at", 77}, {"blind", true}});
}

TEST_CASE("event_kind names every event type") {
  CHECK(event_kind(PrOpened{}) == "pr_opened");
  CHECK(event_kind(PrPushed{}) == "pr_pushed");
  CHECK(event_kind(PrClosed{}) == "pr_closed");
  CHECK(event_kind(MergeRequested{}) == "merge_requested");
  CHECK(event_kind(CancelRequested{}) == "cancel_requested");
  CHECK(event_kind(RetryRequested{}) == "retry_requested");
  CHECK(event_kind(PolicyChecked{}) == "policy_checked");
  CHECK(event_kind(MergeDone{}) == "merge_done");
  CHECK(event_kind(CheckReported{}) == "check_reported");
  CHECK(event_kind(MasterPushed{}) == "master_pushed");
  CHECK(event_kind(MasterObserved{}) == "master_observed");
  CHECK(event_kind(Tick{}) == "tick");
}

TEST_CASE("actions carry their snake_case type and fields") {
  CHECK(to_json(Action{CheckPolicy{4, sha('a'), "feature/a", "ann", sha('0'), 2}}) ==
        json{{"type", "check_policy"},
             {"number", 4},
             {"sha", sha('a')},
             {"branch", "feature/a"},
             {"author", "ann"},
             {"target", sha('0')},
             {"epoch", 2}});
  CHECK(to_json(Action{BuildCandidate{
            3, sha('0'), {MergeItem{4, sha('a'), "tags/v1", "A", "ann", "mm", sha('t')}}}}) ==
        json{{"type", "build_candidate"},
             {"candidate", 3},
             {"base", sha('0')},
             {"items", json::array({json{{"number", 4},
                                         {"head", sha('a')},
                                         {"branch", "tags/v1"},
                                         {"title", "A"},
                                         {"author", "ann"},
                                         {"approver", "mm"},
                                         {"tag", sha('t')}}})},
             {"tip", true}});
  CHECK(to_json(Action{BuildCandidate{3, sha('0'), {}, false}}).at("tip") == false);
  CHECK(to_json(Action{ResetDmz{sha('0')}}) == json{{"type", "reset_dmz"}, {"sha", sha('0')}});
  CHECK(to_json(Action{StartBuild{3, sha('c'), 2}}) ==
        json{{"type", "start_build"}, {"candidate", 3}, {"sha", sha('c')}, {"attempt", 2}});
  CHECK(to_json(Action{CancelBuild{sha('c'), 3}}) ==
        json{{"type", "cancel_build"}, {"sha", sha('c')}, {"candidate", 3}});
  CHECK(to_json(Action{PruneCandidates{{4, 6}}}) ==
        json{{"type", "prune_candidates"}, {"keep", {4, 6}}});
  CHECK(
      to_json(Action{FastForwardMaster{3, sha('0'), sha('c')}}) ==
      json{
          {"type", "fast_forward_master"}, {"candidate", 3}, {"from", sha('0')}, {"to", sha('c')}});
  CHECK(to_json(Action{Notify{
            4, NoticeKind::Failure, Reason::BuildFailed, "boom", sha('a'), {"https://ci/4"}}}) ==
        json{{"type", "notify"},
             {"details", {"https://ci/4"}},
             {"number", 4},
             {"kind", "failure"},
             {"reason", "build-failed"},
             {"message", "boom"},
             {"head", sha('a')}});
  CHECK(to_json(Action{Notify{4, NoticeKind::Success}}).at("kind") == "success");
  CHECK(to_json(Action{Notify{4, NoticeKind::Info}}).at("kind") == "info");
}

TEST_CASE("every reason code has a stable kebab-case name that parses back") {
  CHECK(to_string(Reason::None) == "");
  CHECK(to_string(Reason::CheckTimeout) == "check-timeout");
  CHECK(to_string(Reason::MergeConflict) == "merge-conflict");
  for (int i = 0; i <= static_cast<int>(Reason::Merged); ++i) {
    auto r = static_cast<Reason>(i);
    CHECK(to_string(r) != "?");
    CHECK(parse_reason(to_string(r)) == r);
  }
  CHECK_FALSE(parse_reason("no-such-reason"));
}

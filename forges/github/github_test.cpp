// The GitHub forge over a scripted API: answers on PRs (comments, labels, check runs or
// statuses), who may approve, reconciliation, and PR heads seen by a fetch.
#include "forges/github/github.hpp"

#include <doctest/doctest.h>

#include "base/iso_time.hpp"
#include "forges/github/test_support.hpp"
#include "queue/json.hpp"

namespace dmz::forges::github {
namespace {

using nlohmann::json;
using testing::ScriptedHttp;
namespace q = queue;

const q::Sha kA(40, 'a'), kB(40, 'b'), kC(40, 'c'), kD(40, 'd');

struct Fixture {
  ScriptedHttp http;
  ManualClock clock{1'700'000'000'000};
  Options options;
  ClientOptions client;
  Fixture() {
    options.webhook.repo = "octo/widgets";
    options.secret = "s";
    options.merge_masters = {"alice", "octo/release"};
    options.required_checks = {"build"};
    options.public_url = "https://dmz.example";
    options.label_skew = 5'000;
    client.api_url = "https://api.example.com";
    client.repo = "octo/widgets";
    client.token = "t";
    client.sleep = [this](q::Millis ms) { clock.advance(ms); };
  }
  std::unique_ptr<GitHubForge> forge() {
    return std::make_unique<GitHubForge>(options, std::make_unique<Client>(http, clock, client));
  }
  std::vector<std::string> calls() const {
    std::vector<std::string> out;
    for (const auto& c : http.calls)
      out.push_back(c.method + " " + c.url.substr(std::string("https://api.example.com").size()));
    return out;
  }
};

using Calls = std::vector<std::string>;

forges::OutboxMessage message(q::Notify n, std::int64_t id = 7, int attempts = 0,
                              q::Millis created_at = 1'700'000'000'000) {
  forges::OutboxMessage m;
  m.id = id;
  m.repo = "octo/widgets";
  m.notice = std::move(n);
  m.attempts = attempts;
  m.created_at = created_at;
  return m;
}

std::string iso(q::Millis t) { return iso8601_utc(t / 1000); }

// An issue events page: the merge label added by `actor` at `at`.
std::string labeled_at(q::Millis at, const std::string& actor = "alice") {
  return json::array({{{"event", "labeled"},
                       {"actor", {{"login", actor}}},
                       {"label", {{"name", "dmz:merge"}}},
                       {"created_at", iso(at)}}})
      .dump();
}

TEST_CASE("github forge: a failure takes the merge label off and comments every detail") {
  Fixture f;
  auto forge = f.forge();
  f.http.answer(200, labeled_at(f.clock.now() - 60'000));  // approved a minute before
  f.http.answer(200, "[]");                                // DELETE label
  // The PR's commits: its author's, a co-author's (twice), an email GitHub maps to nobody,
  // bots'.
  f.http.answer(200, R"js([{"sha":"1","author":{"login":"dev"}},
                         {"sha":"2","author":{"login":"carol"}},
                         {"sha":"3","author":null},
                         {"sha":"4","author":{"login":"Carol"}},
                         {"sha":"5","author":{"login":"dependabot[bot]"}},
                         {"sha":"6","author":{"login":"dmzbot"}},
                         {"sha":"7","author":{"login":"x](evil)"}},
                         {"sha":"8","author":{"login":"dave"}}])js");
  f.http.answer(200, R"({"number":3,"user":{"login":"dev"},"head":{"sha":"1"}})");
  f.http.answer(201, "{}");  // comment
  auto s = forge->deliver(message(q::Notify{3,
                                            q::NoticeKind::Failure,
                                            q::Reason::PolicyFailed,
                                            "policy: commit abc is unsigned",
                                            kA,
                                            {"commit abc is unsigned", "path x is not covered"}}));
  REQUIRE(s.ok());
  CHECK(f.calls() == Calls{"GET /repos/octo/widgets/issues/3/events?per_page=100",
                           "DELETE /repos/octo/widgets/issues/3/labels/dmz%3Amerge",
                           "GET /repos/octo/widgets/pulls/3/commits?per_page=100",
                           "GET /repos/octo/widgets/pulls/3",
                           "POST /repos/octo/widgets/issues/3/comments"});
  const std::string body = json::parse(f.http.calls[4].body)["body"];
  CHECK(body ==
        "**Policy failed**: policy: commit abc is unsigned\n\n"
        "- commit abc is unsigned\n- path x is not covered\n\n"
        "cc @carol @Carol @dave\n\n"
        "[Queue status](https://dmz.example/repos/octo/widgets/pulls/3)\n\n"
        "<!-- dmzbot:notice:7 -->");
}

TEST_CASE("github forge: a comment stays under GitHub's size limit, its link and marker kept") {
  // A merge conflict in thousands of files (a mass reformat): every path is a detail.
  std::vector<std::string> files;
  for (int i = 0; i < 5000; ++i) files.push_back("src/module_" + std::to_string(i) + "/file.cpp");
  const q::Notify n{3,
                    q::NoticeKind::Failure,
                    q::Reason::MergeConflict,
                    "merge conflict in " + std::string(10'000, 'x'),
                    kA,
                    files};
  const std::string body =
      forges::github::comment_for(n, "octo/widgets", "https://dmz.example", "<!-- m -->");
  CHECK(body.size() <= 65'536);
  CHECK(body.find("src/module_0/file.cpp") != std::string::npos);
  CHECK(body.find("src/module_4999/file.cpp") == std::string::npos);
  CHECK(body.find(" more\n\n[Queue status](https://dmz.example/repos/octo/widgets/pulls/3)") !=
        std::string::npos);
  CHECK(body.ends_with("<!-- m -->"));
}

TEST_CASE("github forge: a late or retried label removal keeps a label added again since") {
  Fixture f;
  auto forge = f.forge();
  const q::Millis decided = f.clock.now() - 20'000;  // the failure was saved 20 s ago
  const q::Notify failed{3, q::NoticeKind::Failure, q::Reason::BuildFailed, "build failed", kA};
  auto answer_events = [&](q::Millis labeled) {
    f.http.calls.clear();
    f.http.otherwise = [&, labeled](const HttpCall& c) -> Result<HttpReply> {
      if (c.url.find("/events") != std::string::npos)
        return HttpReply{200, {}, labeled_at(labeled)};
      if (c.method == "GET" && c.url.ends_with("/pulls/3"))
        return HttpReply{200, {}, R"({"number":3,"user":{"login":"dev"}})"};
      if (c.method == "GET") return HttpReply{200, {}, "[]"};
      return HttpReply{c.method == "POST" ? 201 : 200, {}, "{}"};
    };
  };
  auto deleted = [&] {
    for (const auto& c : f.calls())
      if (c.rfind("DELETE ", 0) == 0) return true;
    return false;
  };
  SUBCASE("a merge master added the label again after the failure: it stays") {
    // The first attempt's answer was lost; meanwhile alice re-approved with the label.
    answer_events(decided + 5'000);
    REQUIRE(forge->deliver(message(failed, 11, 1, decided)).ok());
    CHECK_FALSE(deleted());
    CHECK(f.calls().back() == "POST /repos/octo/widgets/issues/3/comments");  // still said
  }
  SUBCASE("dmzbot applied a new approval since: it stays, without asking GitHub") {
    answer_events(decided - 1'000);
    auto m = message(failed, 11, 1, decided);
    m.approved_since = true;
    REQUIRE(forge->deliver(m).ok());
    CHECK_FALSE(deleted());
    for (const auto& c : f.calls()) CHECK(c.find("/events") == std::string::npos);
  }
  SUBCASE("a label of the decision's own second is the approval that ended: taken off") {
    answer_events(decided - decided % 1000);
    REQUIRE(forge->deliver(message(failed, 11, 0, decided + 999 - decided % 1000)).ok());
    CHECK(deleted());
  }
  SUBCASE("the label of the approval that failed is taken off, first attempt or retry") {
    answer_events(decided - 1'000);
    REQUIRE(forge->deliver(message(failed, 11, 0, decided)).ok());
    CHECK(deleted());
    answer_events(decided - 1'000);
    REQUIRE(forge->deliver(message(failed, 11, 2, decided)).ok());
    CHECK(deleted());
  }
}

TEST_CASE("github forge: open_pull finds the open PR of the branch, or opens one, once") {
  Fixture f;
  auto forge = f.forge();
  const forges::PullToOpen want{"hotfix/crash", "master", kB, "Bring hotfix v1.0.1 back", "body"};
  auto pull = [](int n, const std::string& state, const q::Sha& head, const char* base) {
    return json{{"number", n},
                {"state", state},
                {"title", "t"},
                {"user", {{"login", "dmzbot"}}},
                {"head", {{"ref", "hotfix/crash"}, {"sha", head}}},
                {"base", {{"ref", base}}}};
  };
  // None yet (a closed one at another head, one into another base): opened.
  f.http.answer(
      200, json::array({pull(4, "closed", kA, "master"), pull(5, "open", kB, "maint")}).dump());
  f.http.answer(201, pull(9, "open", kB, "master").dump());
  auto opened = forge->open_pull(want, 100);
  REQUIRE(opened.ok());
  REQUIRE(opened->has_value());
  CHECK((*opened)->number == 9);
  CHECK((*opened)->branch == "hotfix/crash");
  CHECK((*opened)->author == "dmzbot");
  CHECK((*opened)->head == kB);
  CHECK(f.calls() == Calls{"GET /repos/octo/widgets/pulls?state=all&head=octo%3Ahotfix%2Fcrash"
                           "&per_page=100",
                           "POST /repos/octo/widgets/pulls"});
  CHECK(json::parse(f.http.calls[1].body) == json{{"title", "Bring hotfix v1.0.1 back"},
                                                  {"head", "hotfix/crash"},
                                                  {"base", "master"},
                                                  {"body", "body"}});
  // Asked again (a restart): the open one is found, nothing is opened twice.
  f.http.answer(200, json::array({pull(9, "open", kB, "master")}).dump());
  auto again = forge->open_pull(want, 200);
  REQUIRE(again.ok());
  REQUIRE(again->has_value());
  CHECK((*again)->number == 9);
  CHECK(f.http.calls.size() == 3);
  // Closed at that head: it was brought back (or refused) before; nothing to do.
  f.http.answer(200, json::array({pull(9, "closed", kB, "master")}).dump());
  auto done = forge->open_pull(want, 300);
  REQUIRE(done.ok());
  CHECK_FALSE(done->has_value());
  CHECK(f.http.calls.size() == 4);
  // GitHub refuses (no commits between the branches): the error keeps its code.
  f.http.answer(200, "[]");
  f.http.answer(422, R"({"message":"Validation Failed"})");
  auto refused = forge->open_pull(want, 400);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.code() == Code::kInvalid);
}

TEST_CASE("github forge: merged says the master commit; transient notices need no comment") {
  Fixture f;
  f.options.public_url.clear();
  auto forge = f.forge();
  f.http.answer(201, "{}");
  REQUIRE(forge
              ->deliver(message(q::Notify{3,
                                          q::NoticeKind::Success,
                                          q::Reason::Merged,
                                          "merged into master at ccccccc",
                                          kA,
                                          {kC}}))
              .ok());
  CHECK(f.calls() == Calls{"POST /repos/octo/widgets/issues/3/comments"});  // label kept
  CHECK(json::parse(f.http.calls[0].body)["body"] ==
        "**Merged**: merged into master at ccccccc\n\nThe master commit: " + kC +
            "\n\n<!-- dmzbot:notice:7 -->");
  f.http.calls.clear();
  REQUIRE(forge
              ->deliver(message(q::Notify{3, q::NoticeKind::Info, q::Reason::TransientError,
                                          "transient error: x", kA}))
              .ok());
  CHECK(f.http.calls.empty());
}

TEST_CASE("github forge: a retried notice is not commented twice; errors keep their codes") {
  Fixture f;
  auto forge = f.forge();
  // The first attempt posted the comment but its answer was lost: the retry finds the marker.
  f.http.answer(200, "[]");  // no label events
  f.http.answer(200, "[]");  // DELETE label
  f.http.answer(200, R"([{"body":"**Cancelled**: x\n\n<!-- dmzbot:notice:9 -->"}])");
  REQUIRE(forge
              ->deliver(message(
                  q::Notify{4, q::NoticeKind::Info, q::Reason::Cancelled, "cancelled by alice", kA},
                  9, 1))
              .ok());
  CHECK(f.calls() == Calls{"GET /repos/octo/widgets/issues/4/events?per_page=100",
                           "DELETE /repos/octo/widgets/issues/4/labels/dmz%3Amerge",
                           "GET /repos/octo/widgets/issues/4/comments?per_page=100"});
  // A PR GitHub does not know: not_found (the outbox drops it); 5xx: unavailable (retried).
  f.http.answer(404, R"({"message":"Not Found"})");
  CHECK(forge->deliver(message(q::Notify{5, q::NoticeKind::Info, q::Reason::None, "hi", kA}))
            .code() == Code::kNotFound);
  f.client.max_attempts = 1;
  auto once = f.forge();
  f.http.answer(502, "");
  CHECK(
      once->deliver(message(q::Notify{5, q::NoticeKind::Info, q::Reason::None, "hi", kA})).code() ==
      Code::kUnavailable);
}

TEST_CASE("github forge: merge masters are listed users or team members who can push; cached") {
  Fixture f;
  auto forge = f.forge();
  // Write access through a custom role (answers as GitHub gives them: both fields).
  f.http.answer(200, R"({"permission":"write","role_name":"release-manager"})");
  CHECK(forge->may_approve("Alice").value());  // logins compare without case
  CHECK(f.calls() == Calls{"GET /repos/octo/widgets/collaborators/Alice/permission"});
  CHECK(forge->may_approve("alice").value());  // cached
  CHECK(f.http.calls.size() == 1);
  // A team member with write access.
  f.http.answer(200, R"({"state":"active"})");
  f.http.answer(200, R"({"permission":"admin"})");
  CHECK(forge->may_approve("bob").value());
  CHECK(f.calls()[1] == "GET /orgs/octo/teams/release/memberships/bob");
  // Not listed, not in the team: refused without asking for permissions.
  f.http.answer(404, R"({"message":"Not Found"})");
  CHECK_FALSE(forge->may_approve("mallory").value());
  CHECK(f.http.calls.size() == 4);
  // Listed, but lost write access.
  f.clock.advance(61'000);
  f.http.answer(200, R"({"permission":"read","role_name":"triage"})");
  CHECK_FALSE(forge->may_approve("alice").value());
  // The API down: an error, not a refusal (the service asks again later).
  f.clock.advance(61'000);
  f.client.max_attempts = 1;
  auto down = f.forge();
  f.http.answer(502, "");
  CHECK(down->may_approve("alice").code() == Code::kUnavailable);
}

TEST_CASE("github forge: a gesture a merge master made later overtakes a late command") {
  Fixture f;
  auto forge = f.forge();
  const q::Millis written = 1'699'999'000'000;
  auto comment = [](const std::string& who, q::Millis at, const std::string& body) {
    return json{{"user", {{"login", who}}}, {"created_at", iso(at)}, {"body", body}};
  };
  auto review = [](const std::string& who, q::Millis at, const std::string& body) {
    json r{{"user", {{"login", who}}}, {"state", at ? "COMMENTED" : "PENDING"}, {"body", body}};
    if (at) r["submitted_at"] = iso(at);
    return r;
  };
  auto label = [](const std::string& who, q::Millis at, const std::string& event,
                  const std::string& name = "dmz:merge") {
    return json{{"event", event},
                {"actor", {{"login", who}}},
                {"label", {{"name", name}}},
                {"created_at", iso(at)}};
  };
  f.http.answer(200, json::array({label("dmzbot", written + 1'000, "unlabeled"),
                                  label("alice", written + 2'000, "labeled", "bug"),
                                  label("alice", written + 5'000, "unlabeled"),
                                  label("alice", written + 7'000, "labeled")})
                         .dump());
  f.http.answer(200, json::array({comment("alice", written, "@dmzbot cancel"),  // same second
                                  comment("dmzbot", written + 1'000, "@dmzbot merge"),
                                  comment("mallory", written + 2'000, "@dmzbot cancel"),
                                  comment("carol", written + 3'000, "@dmzbot status\nthanks"),
                                  comment("alice", written + 4'000, "> @dmzbot merge\nno"),
                                  comment("alice", written + 6'000, "ok\n@dmzbot retry")})
                         .dump());
  f.http.answer(200, json::array({review("alice", 0, "@dmzbot cancel"),  // pending: not sent
                                  review("mallory", written + 5'000, "@dmzbot merge")})
                         .dump());
  f.http.answer(404, R"({"message":"Not Found"})");  // mallory is not in octo/release
  f.http.answer(200, R"({"permission":"write"})");   // alice may push
  auto later = forge->later_command(7, written);
  REQUIRE(later.ok());
  REQUIRE(later->has_value());
  CHECK((*later)->actor == "alice");
  CHECK((*later)->command == "remove the dmz:merge label");
  CHECK((*later)->written == written + 5'000);
  CHECK(f.calls() ==
        Calls{"GET /repos/octo/widgets/issues/7/events?per_page=100",
              "GET /repos/octo/widgets/issues/7/comments?since=" + iso(written) + "&per_page=100",
              "GET /repos/octo/widgets/pulls/7/reviews?per_page=100",
              "GET /orgs/octo/teams/release/memberships/mallory",
              "GET /repos/octo/widgets/collaborators/alice/permission"});
  // A later comment's command, where the label was not touched.
  f.http.answer(200, "[]");
  f.http.answer(200, json::array({comment("alice", written + 6'000, "@dmzbot retry")}).dump());
  f.http.answer(200, "[]");
  later = forge->later_command(8, written);
  REQUIRE(later.ok());
  REQUIRE(later->has_value());
  CHECK((*later)->command == "retry");
  // Nothing later that changes the queue: none.
  f.http.answer(200, json::array({label("alice", written - 1'000, "unlabeled")}).dump());
  f.http.answer(200, json::array({comment("carol", written + 3'000, "@dmzbot help")}).dump());
  f.http.answer(200, "[]");
  later = forge->later_command(8, written);
  REQUIRE(later.ok());
  CHECK_FALSE(later->has_value());
  // The API down: an error, not "none" (the service asks again later).
  f.client.max_attempts = 1;
  auto down = f.forge();
  f.http.answer(502, "");
  CHECK(down->later_command(7, written).code() == Code::kUnavailable);
}

TEST_CASE("github forge: what overtook a merge-label gesture, whatever order webhooks came in") {
  Fixture f;
  const q::Millis t = 1'699'999'000'000;
  const q::Millis late = t + 60'000;  // gestures at t reached dmzbot late
  auto pull = [](const std::string& state, bool draft, const std::string& base,
                 std::vector<std::string> labels) {
    json p{{"number", 7}, {"state", state}, {"draft", draft}, {"base", {{"ref", base}}}};
    p["labels"] = json::array();
    for (const auto& name : labels) p["labels"].push_back({{"name", name}});
    return p.dump();
  };
  auto change = [](const std::string& who, q::Millis at, bool added) {
    return json{{"event", added ? "labeled" : "unlabeled"},
                {"actor", {{"login", who}}},
                {"label", {{"name", "dmz:merge"}}},
                {"created_at", iso(at)}};
  };
  const std::string pulls = "GET /repos/octo/widgets/pulls/7";
  const std::string events = "GET /repos/octo/widgets/issues/7/events?per_page=100";
  const std::string comments =
      "GET /repos/octo/widgets/issues/7/comments?since=" + iso(t) + "&per_page=100";
  const std::string reviews = "GET /repos/octo/widgets/pulls/7/reviews?per_page=100";

  SUBCASE("an addition to a PR closed, made a draft or moved off master since") {
    auto forge = f.forge();
    for (auto [state, draft, base, since] :
         {std::tuple{"closed", false, "master", "the PR is closed"},
          std::tuple{"open", true, "master", "the PR is a draft"},
          std::tuple{"open", false, "release", "the PR is not into master"}}) {
      f.http.answer(200, pull(state, draft, base, {"dmz:merge"}));
      auto later = forge->label_overtaken(7, true, "alice", late);
      REQUIRE(later.ok());
      REQUIRE(later->has_value());
      CHECK((*later)->command == since);
    }
    CHECK(f.calls() == Calls{pulls, pulls, pulls});
  }
  SUBCASE("a removal by a merge master after the addition; a later one by another is no gesture") {
    auto forge = f.forge();
    f.http.answer(200, pull("open", false, "master", {"dmz:merge"}));
    f.http.answer(200, json::array({change("alice", t, true), change("bob", t + 2'000, false),
                                    change("mallory", t + 3'000, true)})
                           .dump());
    f.http.answer(200, "[]");
    f.http.answer(200, "[]");
    f.http.answer(200, R"({"state":"active"})");  // bob is in octo/release
    f.http.answer(200, R"({"permission":"write"})");
    auto later = forge->label_overtaken(7, true, "alice", late);
    REQUIRE(later.ok());
    REQUIRE(later->has_value());
    CHECK((*later)->actor == "bob");
    CHECK((*later)->command == "remove the dmz:merge label");
    CHECK(f.calls() == Calls{pulls, events, comments, reviews,
                             "GET /orgs/octo/teams/release/memberships/bob",
                             "GET /repos/octo/widgets/collaborators/bob/permission"});
  }
  SUBCASE("a merge master's removal stands though someone else put the label back on") {
    auto forge = f.forge();
    f.http.answer(
        200, json::array({change("alice", t, false), change("mallory", t + 2'000, true)}).dump());
    f.http.answer(200, "[]");
    f.http.answer(200, "[]");
    f.http.answer(404, R"({"message":"Not Found"})");  // mallory may label, not approve
    auto later = forge->label_overtaken(7, false, "alice", late);
    REQUIRE(later.ok());
    CHECK_FALSE(later->has_value());
    CHECK(f.calls().front() == events);  // a removal needs no read of the PR
  }
  SUBCASE("a later comment command by a merge master overtakes it") {
    auto forge = f.forge();
    f.http.answer(200, pull("open", false, "master", {"dmz:merge"}));
    f.http.answer(200, json::array({change("alice", t, true)}).dump());
    f.http.answer(200, json::array({{{"user", {{"login", "alice"}}},
                                     {"created_at", iso(t + 4'000)},
                                     {"body", "@dmzbot cancel"}}})
                           .dump());
    f.http.answer(200, "[]");
    f.http.answer(200, R"({"permission":"write"})");
    auto later = forge->label_overtaken(7, true, "alice", late);
    REQUIRE(later.ok());
    REQUIRE(later->has_value());
    CHECK((*later)->command == "cancel");
    // A gesture that came at once: its comments and reviews are not read.
    f.http.calls.clear();
    f.http.answer(200, pull("open", false, "master", {"dmz:merge"}));
    f.http.answer(200, json::array({change("alice", t, true)}).dump());
    later = forge->label_overtaken(7, true, "alice", t);
    REQUIRE(later.ok());
    CHECK_FALSE(later->has_value());
    CHECK(f.calls() == Calls{pulls, events});
  }
  SUBCASE("within one second, the order of GitHub's events decides") {
    auto forge = f.forge();
    f.http.answer(200, pull("open", false, "master", {}));
    f.http.answer(200, json::array({change("alice", t, true), change("alice", t, false)}).dump());
    f.http.answer(200, "[]");
    f.http.answer(200, "[]");
    f.http.answer(200, R"({"permission":"write"})");
    auto later = forge->label_overtaken(7, true, "alice", late);
    REQUIRE(later.ok());
    REQUIRE(later->has_value());
    CHECK((*later)->command == "remove the dmz:merge label");
    // The other way round, the addition stands.
    f.http.answer(200, pull("open", false, "master", {"dmz:merge"}));
    f.http.answer(200, json::array({change("alice", t, false), change("alice", t, true)}).dump());
    f.http.answer(200, "[]");
    f.http.answer(200, "[]");
    later = forge->label_overtaken(7, true, "alice", late);
    REQUIRE(later.ok());
    CHECK_FALSE(later->has_value());
  }
  SUBCASE("dmzbot took the label off since: the PR left the queue after the gesture") {
    auto forge = f.forge();
    f.http.answer(200, pull("open", false, "master", {}));
    f.http.answer(
        200, json::array({change("alice", t, true), change("dmzbot", t + 9'000, false)}).dump());
    auto later = forge->label_overtaken(7, true, "alice", late);
    REQUIRE(later.ok());
    REQUIRE(later->has_value());
    CHECK((*later)->actor == "dmzbot");
    CHECK(f.calls() == Calls{pulls, events});
  }
  SUBCASE("its own event not shown yet: the label as it is now decides") {
    auto forge = f.forge();
    f.http.answer(200, pull("open", false, "master", {"dmz:merge"}));
    f.http.answer(200, "[]");
    auto on = forge->label_overtaken(7, true, "alice", late);
    REQUIRE(on.ok());
    CHECK_FALSE(on->has_value());
    f.http.answer(200, pull("open", false, "master", {"dmz:merged"}));  // alike, not it
    f.http.answer(200, "[]");
    auto off = forge->label_overtaken(7, true, "alice", late);
    REQUIRE(off.ok());
    REQUIRE(off->has_value());
    CHECK((*off)->command == "the dmz:merge label is off");
  }
  SUBCASE("the API down: an error, not an answer") {
    f.client.max_attempts = 1;
    auto down = f.forge();
    f.http.answer(502, "");
    CHECK(down->label_overtaken(7, false, "alice", late).code() == Code::kUnavailable);
  }
}

TEST_CASE("github forge: the summary is a commit status with a token, a check run for an App") {
  Fixture f;
  auto forge = f.forge();
  PullSummary s{3, kA, PullSummary::State::kQueued, "queued at position 2 of 3", ""};
  f.http.answer(201, "{}");
  REQUIRE(forge->show(s).ok());
  REQUIRE(f.calls() == Calls{"POST /repos/octo/widgets/statuses/" + kA});
  json st = json::parse(f.http.calls[0].body);
  CHECK(st == json{{"state", "pending"},
                   {"context", "dmzbot"},
                   {"description", "queued at position 2 of 3"},
                   {"target_url", "https://dmz.example/repos/octo/widgets/pulls/3"}});

  Fixture app;
  app.client.token.clear();
  app.client.app_id = 1;
  app.client.installation_id = 2;
  test::TempDir dir;
  test::must("openssl genrsa -out " + (dir / "k.pem").string() + " 2048 2>/dev/null");
  app.client.private_key = test::read_file(dir / "k.pem");
  auto appforge = app.forge();
  app.http.answer(201, R"({"token":"ghs_x","expires_at":"2099-01-01T00:00:00Z"})");
  app.http.answer(200, R"({"total_count":0,"check_runs":[]})");
  app.http.answer(201, R"({"id":55})");
  REQUIRE(appforge->show(s).ok());
  CHECK(app.calls() == Calls{"POST /app/installations/2/access_tokens",
                             "GET /repos/octo/widgets/commits/" + kA +
                                 "/check-runs?check_name=dmzbot&filter=latest",
                             "POST /repos/octo/widgets/check-runs"});
  json run = json::parse(app.http.calls[2].body);
  CHECK(run["name"] == "dmzbot");
  CHECK(run["head_sha"] == kA);
  CHECK(run["status"] == "queued");
  CHECK_FALSE(run.contains("conclusion"));
  CHECK(run["output"]["title"] == "queued at position 2 of 3");
  // The same run is updated afterwards, without asking for it again.
  app.http.answer(200, R"({"id":55})");
  REQUIRE(appforge
              ->show(PullSummary{3, kA, PullSummary::State::kFailure, "check build failed",
                                 "- https://ci/1\n"})
              .ok());
  CHECK(app.calls().back() == "PATCH /repos/octo/widgets/check-runs/55");
  json patch = json::parse(app.http.calls.back().body);
  CHECK(patch["status"] == "completed");
  CHECK(patch["conclusion"] == "failure");
  CHECK_FALSE(patch.contains("head_sha"));
  // A finished PR's run is not remembered: shown again (retried), it is looked up first.
  app.http.answer(200, R"({"total_count":1,"check_runs":[{"id":55}]})");
  app.http.answer(200, R"({"id":55})");
  REQUIRE(appforge->show(s).ok());
  CHECK(app.calls().size() == 6);
  CHECK(app.calls()[4] ==
        "GET /repos/octo/widgets/commits/" + kA + "/check-runs?check_name=dmzbot&filter=latest");
  CHECK(app.calls()[5] == "PATCH /repos/octo/widgets/check-runs/55");
}

TEST_CASE("github forge: status labels follow the summary when configured") {
  Fixture f;
  f.options.status_labels = true;
  auto forge = f.forge();
  f.http.otherwise = [](const HttpCall& c) {
    return HttpReply{c.method == "POST" ? 201 : 200, {}, "[]"};
  };
  REQUIRE(forge->show(PullSummary{3, kA, PullSummary::State::kQueued, "queued", ""}).ok());
  REQUIRE(forge->show(PullSummary{3, kA, PullSummary::State::kInProgress, "building", ""}).ok());
  REQUIRE(forge->show(PullSummary{3, kA, PullSummary::State::kFailure, "failed", ""}).ok());
  CHECK(f.calls() == Calls{
                         "POST /repos/octo/widgets/statuses/" + kA,
                         "DELETE /repos/octo/widgets/issues/3/labels/dmz%3Afailed",
                         "POST /repos/octo/widgets/issues/3/labels",
                         "POST /repos/octo/widgets/statuses/" + kA,  // label already right
                         "POST /repos/octo/widgets/statuses/" + kA,
                         "DELETE /repos/octo/widgets/issues/3/labels/dmz%3Aqueued",
                         "POST /repos/octo/widgets/issues/3/labels",
                     });
  // Failed, it is forgotten: shown as failed again, its labels are set again (not skipped).
  REQUIRE(forge->show(PullSummary{3, kA, PullSummary::State::kFailure, "failed", ""}).ok());
  CHECK(f.calls().size() == 10);
  CHECK(f.calls().back() == "POST /repos/octo/widgets/issues/3/labels");
}

q::PullRequest pr(int n, q::Sha head, q::PrStatus status = q::PrStatus::Open) {
  q::PullRequest p;
  p.number = n;
  p.branch = "f" + std::to_string(n);
  p.author = "dev";
  p.title = "T" + std::to_string(n);
  p.head = std::move(head);
  p.status = status;
  return p;
}

PullInfo info(int n, q::Sha head, std::vector<std::string> labels = {}) {
  PullInfo i;
  i.number = n;
  i.head = std::move(head);
  i.head_ref = "f" + std::to_string(n);
  i.author = "dev";
  i.title = "T" + std::to_string(n);
  i.base = "master";
  i.labels = std::move(labels);
  return i;
}

std::vector<std::string> kinds(const std::vector<q::Event>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) out.push_back(q::to_json(e).dump());
  return out;
}

TEST_CASE("reconcile_pulls: missed openings, pushes, reopenings, titles and closings") {
  q::RepoState s;
  s.prs[1] = pr(1, kA);                         // unchanged
  s.prs[2] = pr(2, kA, q::PrStatus::Queued);    // pushed since
  s.prs[3] = pr(3, kA, q::PrStatus::Building);  // closed since
  s.prs[4] = pr(4, kA, q::PrStatus::Cancelled);
  s.prs[4].reason_code = q::Reason::Closed;   // reopened since
  s.prs[5] = pr(5, kA, q::PrStatus::Merged);  // merged: never touched
  s.prs[6] = pr(6, kA);                       // title edited
  std::vector<PullInfo> open = {info(1, kA), info(2, kB), info(4, kC), info(6, kA), info(7, kB)};
  open[3].title = "Better title";
  const q::Millis now = 99;
  auto events = reconcile_pulls(s, open, true, now);
  CHECK(kinds(events) ==
        kinds({q::PrPushed{2, kB, now, false}, q::PrOpened{4, "f4", "dev", "T4", kC, now},
               q::PrOpened{6, "f6", "dev", "Better title", kA, now},
               q::PrOpened{7, "f7", "dev", "T7", kB, now}, q::PrClosed{3, now}}));
  // An incomplete list closes nothing; `missing` names what to confirm instead.
  CHECK(reconcile_pulls(s, open, false, now).size() == 4);
  std::vector<int> missing;
  reconcile_pulls(s, open, true, now, &missing);
  CHECK(missing == std::vector<int>{3});
}

// A PR converted to a draft whose webhook was lost: GitHub would not merge it, nor does dmzbot.
TEST_CASE("reconcile_pulls: a draft waiting or in the train is taken out; others are left") {
  q::RepoState s;
  s.prs[1] = pr(1, kA, q::PrStatus::Queued);
  s.prs[2] = pr(2, kA, q::PrStatus::Building);
  s.prs[3] = pr(3, kA, q::PrStatus::Approved);
  s.prs[4] = pr(4, kA);                          // not queued: nothing to take out
  s.prs[5] = pr(5, kA, q::PrStatus::Queued);     // not a draft
  s.prs[6] = pr(6, kA, q::PrStatus::Cancelled);  // out already
  std::vector<PullInfo> open = {info(1, kA), info(2, kA), info(3, kA),
                                info(4, kA), info(5, kA), info(6, kA)};
  for (int i : {0, 1, 2, 3, 5}) open[i].draft = true;
  const q::Millis now = 99;
  const std::string by = "GitHub (it is a draft now)";
  CHECK(kinds(reconcile_pulls(s, open, true, now)) ==
        kinds({q::CancelRequested{1, by, now}, q::CancelRequested{2, by, now},
               q::CancelRequested{3, by, now}}));
}

TEST_CASE("reconcile_checks: only states that differ from what the candidate holds") {
  q::Candidate k;
  k.sha = kC;
  k.checks["build"] = q::Check{"build", q::CheckState::Pending, "", "", 1};
  k.checks["lint"] = q::Check{"lint", q::CheckState::Success, "", "", 1};
  auto events = reconcile_checks(k,
                                 {q::Check{"build", q::CheckState::Success, "ok", "u", 0},
                                  q::Check{"lint", q::CheckState::Success, "", "", 0},
                                  q::Check{"test", q::CheckState::Failure, "2 failed", "", 0}},
                                 50);
  REQUIRE(events.size() == 2);
  CHECK(std::get<q::CheckReported>(events[0]).check.context == "build");
  CHECK(std::get<q::CheckReported>(events[0]).check.at == 50);
  CHECK(std::get<q::CheckReported>(events[1]).check.context == "test");
}

TEST_CASE("github forge reconcile: a lost label approves only when added after the head") {
  Fixture f;
  auto forge = f.forge();
  const q::Millis now = f.clock.now();
  q::RepoState s;
  s.prs[1] = pr(1, kA);
  s.prs[2] = pr(2, kB);
  s.prs[3] = pr(3, kC);
  s.prs[4] = pr(4, kD);
  ReconcileInput in{s, [&](int n) { return n == 2 ? now - 1'000 : now - 60'000; }};
  f.http.otherwise = [&](const HttpCall& c) -> Result<HttpReply> {
    if (c.url.find("/pulls?") != std::string::npos)
      return HttpReply{200,
                       {},
                       json::array({{{"number", 1},
                                     {"title", "T1"},
                                     {"user", {{"login", "dev"}}},
                                     {"head", {{"sha", kA}, {"ref", "f1"}}},
                                     {"base", {{"ref", "master"}}},
                                     {"labels", {{{"name", "dmz:merge"}}}}},
                                    {{"number", 2},
                                     {"title", "T2"},
                                     {"user", {{"login", "dev"}}},
                                     {"head", {{"sha", kB}, {"ref", "f2"}}},
                                     {"base", {{"ref", "master"}}},
                                     {"labels", {{{"name", "dmz:merge"}}}}},
                                    {{"number", 3},
                                     {"title", "T3"},
                                     {"user", {{"login", "dev"}}},
                                     {"head", {{"sha", kC}, {"ref", "f3"}}},
                                     {"base", {{"ref", "master"}}},
                                     {"labels", {{{"name", "dmz:merge"}}}}},
                                    {{"number", 4},
                                     {"title", "T4"},
                                     {"user", {{"login", "dev"}}},
                                     {"head", {{"sha", kD}, {"ref", "f4"}}},
                                     {"base", {{"ref", "master"}}},
                                     {"labels", {{{"name", "dmz:merge"}}}}}})
                           .dump()};
    // On PR 4 alice wrote `cancel` 20 s ago (answered "not queued": the label was unknown).
    if (c.url.find("/issues/4/comments") != std::string::npos)
      return HttpReply{200,
                       {},
                       json::array({{{"user", {{"login", "alice"}}},
                                     {"created_at", iso(now - 20'000)},
                                     {"body", "@dmzbot cancel"}}})
                           .dump()};
    if (c.url.find("/comments") != std::string::npos || c.url.find("/reviews") != std::string::npos)
      return HttpReply{200, {}, "[]"};
    // The labels were added 30 s ago: after PR 1's head was seen, before PR 2's. PR 3 was a
    // draft then (the label was refused), marked ready 10 s ago: its label approves nothing.
    json events = json::array({{{"event", "labeled"},
                                {"actor", {{"login", "alice"}}},
                                {"label", {{"name", "dmz:merge"}}},
                                {"created_at", iso(now - 30'000)}}});
    if (c.url.find("/issues/3/events") != std::string::npos)
      events.push_back({{"event", "ready_for_review"},
                        {"actor", {{"login", "dev"}}},
                        {"created_at", iso(now - 10'000)}});
    if (c.url.find("/events") != std::string::npos) return HttpReply{200, {}, events.dump()};
    if (c.url.find("/permission") != std::string::npos)
      return HttpReply{200, {}, R"({"permission":"write"})"};
    return HttpReply{404, {}, "{}"};
  };
  auto events = forge->reconcile(in, now);
  REQUIRE(events.ok());
  CHECK(kinds(*events) == kinds({q::MergeRequested{1, kA, "alice", now}}));
  CHECK(forge->api_health().last_reconcile == now);
}

TEST_CASE("github forge reconcile: a PR missing from the list is closed only when GitHub says so") {
  Fixture f;
  auto forge = f.forge();
  q::RepoState s;
  s.prs[1] = pr(1, kA, q::PrStatus::Queued);
  s.prs[2] = pr(2, kA, q::PrStatus::Queued);
  f.http.answer(200, "[]");  // the open list
  f.http.answer(200, R"({"number":1,"state":"open","base":{"ref":"master"},"head":{"sha":"x"}})");
  f.http.answer(200, R"({"number":2,"state":"closed","base":{"ref":"master"}})");
  auto events = forge->reconcile(ReconcileInput{s, {}}, 5);
  REQUIRE(events.ok());
  CHECK(kinds(*events) == kinds({q::PrClosed{2, 5}}));
}

TEST_CASE("deliveries_to_redeliver: each failed delivery, oldest first, none dmzbot took") {
  const q::Millis t = 1'700'000'000'000;
  auto at = [&](q::Millis minutes, std::int64_t id, std::string guid, int code) {
    return HookDelivery{id, std::move(guid), t + minutes * 60'000, code, "issue_comment"};
  };
  const std::vector<HookDelivery> log = {
      at(9, 20, "taken-then-down", 0),  // someone asked again; it took it before
      at(9, 19, "taken-on-redelivery", 202),
      at(8, 18, "down-twice", 0),
      at(7, 17, "proxy-502", 502),
      at(6, 16, "refused", 400),  // a 4xx would be refused again
      at(5, 15, "taken", 202),
      at(4, 14, "down-twice", 0),
      at(3, 13, "taken-on-redelivery", 503),
      at(2, 12, "down", 0),
      at(1, 11, "", 0),  // no guid: nothing to match it by
      at(1, 10, "taken-then-down", 202),
  };
  const q::Millis now = t + 10 * 60'000;
  auto attempts = [](const std::vector<Redelivery*>& due) {
    std::vector<std::int64_t> out;
    for (const Redelivery* r : due) out.push_back(r->attempt);
    return out;
  };
  std::map<std::string, Redelivery> pending;
  pending["taken"] = {15, t, 1, t};  // asked for once; the log shows it taken since
  // Oldest delivery first (by its first attempt); the newest attempt of each is asked for.
  auto due = deliveries_to_redeliver(log, pending, now);
  CHECK(attempts(due) == std::vector<std::int64_t>{12, 18, 17});
  CHECK(pending.size() == 3);
  CHECK(due[1]->first == t + 4 * 60'000);
  for (Redelivery* r : due) r->asks = 1, r->at = now;  // asked
  // Asked lately: not again until the pause, which doubles with each ask, has passed; a
  // delivery the log's window no longer shows stays pending.
  CHECK(deliveries_to_redeliver(log, pending, now + kRedeliveryPause - 1).empty());
  CHECK(attempts(deliveries_to_redeliver({}, pending, now + kRedeliveryPause)) ==
        std::vector<std::int64_t>{12, 18, 17});
  pending["down"].asks = 3;
  pending["down-twice"].asks = kMaxRedeliveries;  // given up
  CHECK(attempts(deliveries_to_redeliver({}, pending, now + 4 * kRedeliveryPause - 1)) ==
        std::vector<std::int64_t>{17});
  CHECK(attempts(deliveries_to_redeliver({}, pending, now + 4 * kRedeliveryPause)) ==
        std::vector<std::int64_t>{12, 17});
  // A later window that shows one taken (its redelivery reached dmzbot) settles it.
  deliveries_to_redeliver({at(20, 30, "down", 202)}, pending, now);
  CHECK(pending.count("down") == 0);
}

TEST_CASE("github forge reconcile: failed webhook deliveries are asked for again, once each") {
  Fixture f;
  f.options.redeliver_hook = 77;
  f.options.redeliver_lookback = 3'600'000;
  auto forge = f.forge();
  const q::Millis now = f.clock.now();
  auto deliveries = [&](json items) {
    f.http.answer(200, "[]");  // open PRs
    f.http.answer(200, items.dump());
  };
  auto item = [&](std::int64_t id, const std::string& guid, q::Millis at, int code) {
    return json{{"id", id},
                {"guid", guid},
                {"delivered_at", iso(at)},
                {"redelivery", false},
                {"status_code", code},
                {"event", "issue_comment"}};
  };
  deliveries(
      json::array({item(2, "g-ok", now - 60'000, 202), item(1, "g-down", now - 120'000, 0)}));
  f.http.answer(202, "{}");
  REQUIRE(forge->reconcile({}, now).ok());
  CHECK(f.calls() == std::vector<std::string>{
                         "GET /repos/octo/widgets/pulls?state=open&base=master&per_page=100",
                         "GET /repos/octo/widgets/hooks/77/deliveries?per_page=100",
                         "POST /repos/octo/widgets/hooks/77/deliveries/1/attempts"});
  // The next reconciliation reads the log again (overlapping the last read) and does not ask
  // for g-down again while its redelivery may be under way.
  f.http.calls.clear();
  deliveries(json::array({item(1, "g-down", now - 120'000, 0)}));
  REQUIRE(forge->reconcile({}, now + 60'000).ok());
  CHECK(f.calls().size() == 2);
  // A log the token may not read: logged, and the rest of the reconciliation goes on.
  f.http.calls.clear();
  f.http.answer(200, "[]");
  f.http.answer(403, R"({"message":"Resource not accessible by integration"})");
  CHECK(forge->reconcile({}, now + 120'000).ok());
  CHECK(f.calls().size() == 2);
}

TEST_CASE("github forge reconcile: an App's repositories share one read of its delivery log") {
  test::TempDir dir;
  test::must("openssl genrsa -out " + (dir / "k.pem").string() + " 2048 2>/dev/null");
  auto app_log = std::make_shared<AppDeliveryLog>(30'000);
  auto as_app = [&](Fixture& f, const std::string& repo) {
    f.options.webhook.repo = repo;
    f.client.repo = repo;
    f.client.token.clear();
    f.client.app_id = 1;
    f.client.installation_id = 2;
    f.client.private_key = test::read_file(dir / "k.pem");
    f.options.redeliver_hook = 0;
    f.options.app_log = app_log;
  };
  Fixture widgets, gadgets;
  as_app(widgets, "octo/widgets");
  as_app(gadgets, "octo/gadgets");
  gadgets.clock.advance(10'000);
  auto a = widgets.forge(), b = gadgets.forge();
  const q::Millis now = widgets.clock.now();
  auto item = [&](std::int64_t id, const std::string& guid, std::int64_t repository) {
    return json{{"id", id},
                {"guid", guid},
                {"delivered_at", iso(now - 60'000)},
                {"redelivery", false},
                {"status_code", 0},
                {"event", "issue_comment"},
                {"repository_id", repository}};
  };
  const std::string token = R"({"token":"ghs_x","expires_at":"2099-01-01T00:00:00Z"})";
  widgets.http.answer(201, token);
  widgets.http.answer(200, "[]");  // open PRs
  widgets.http.answer(200,
                      json::array({item(2, "g-gadgets", 20), item(1, "g-widgets", 10)}).dump());
  widgets.http.answer(200, R"({"id":10})");
  widgets.http.answer(202, "{}");
  REQUIRE(a->reconcile({}, now).ok());
  CHECK(widgets.calls() ==
        Calls{"POST /app/installations/2/access_tokens",
              "GET /repos/octo/widgets/pulls?state=open&base=master&per_page=100",
              "GET /app/hook/deliveries?per_page=100", "GET /repos/octo/widgets",
              "POST /app/hook/deliveries/1/attempts"});
  // Ten seconds later the other repository takes the same read, and its own delivery.
  gadgets.http.answer(201, token);
  gadgets.http.answer(200, "[]");
  gadgets.http.answer(200, R"({"id":20})");
  gadgets.http.answer(202, "{}");
  REQUIRE(b->reconcile({}, now + 10'000).ok());
  CHECK(gadgets.calls() ==
        Calls{"POST /app/installations/2/access_tokens",
              "GET /repos/octo/gadgets/pulls?state=open&base=master&per_page=100",
              "GET /repos/octo/gadgets", "POST /app/hook/deliveries/2/attempts"});
}

TEST_CASE("github forge reconcile: the checks of a waiting candidate are read back") {
  Fixture f;
  auto forge = f.forge();
  q::RepoState s;
  q::Candidate k;
  k.id = 1;
  k.sha = kC;
  k.status = q::CandidateStatus::InDmz;
  s.train.push_back(k);
  f.http.answer(200, "[]");
  // The combined status in two pages (a CI that posts a status per job has more than 30).
  const std::string status_url =
      "https://api.example.com/repos/octo/widgets/commits/" + kC + "/status";
  f.http.answer(200, json{{"statuses", {{{"context", "lint"}, {"state", "success"}}}}}.dump(),
                {{"link", "<" + status_url + "?per_page=100&page=2>; rel=\"next\""}});
  f.http.answer(200, json{{"statuses", {{{"context", "build"}, {"state", "failure"}}}}}.dump());
  f.http.answer(200, R"({"total_count":0,"check_runs":[]})");
  auto events = forge->reconcile(ReconcileInput{s, {}}, 5);
  REQUIRE(events.ok());
  std::map<std::string, q::CheckState> read;
  for (const auto& e : *events) {
    const auto& check = std::get<q::CheckReported>(e).check;
    read[check.context] = check.state;
  }
  CHECK(read == std::map<std::string, q::CheckState>{{"build", q::CheckState::Failure},
                                                     {"lint", q::CheckState::Success}});
  CHECK(f.http.calls[1].url == status_url + "?per_page=100");
  CHECK(f.http.calls[2].url == status_url + "?per_page=100&page=2");
}

TEST_CASE("github forge: reconciliation and read-backs take a check only from its source") {
  Fixture f;
  f.options.webhook.check_sources = {{"build", "github-actions"}};
  auto forge = f.forge();
  q::RepoState s;
  q::Candidate k;
  k.id = 1;
  k.sha = kC;
  k.status = q::CandidateStatus::InDmz;
  s.train.push_back(k);
  // Someone with push access posted `build` success over the CI's pending, and an App of
  // their own a successful `build` run: neither counts, as neither would by webhook.
  const std::string statuses =
      json::array({{{"context", "build"}, {"state", "success"}, {"creator", {{"login", "eve"}}}},
                   {{"context", "build"},
                    {"state", "pending"},
                    {"creator", {{"login", "github-actions[bot]"}}}}})
          .dump();
  const std::string runs =
      R"({"check_runs":[{"name":"build","status":"completed","conclusion":"success",
                         "app":{"slug":"eves-app"}}]})";
  f.http.answer(200, "[]");  // the open list
  f.http.answer(200, statuses);
  f.http.answer(200, runs);
  auto events = forge->reconcile(ReconcileInput{s, {}}, 5);
  REQUIRE(events.ok());
  REQUIRE(events->size() == 1);
  CHECK(std::get<q::CheckReported>(events->at(0)).check.state == q::CheckState::Pending);
  CHECK(f.calls()[1] == "GET /repos/octo/widgets/commits/" + kC + "/statuses?per_page=100");
  // A completed check_suite's read-back (checks_of) applies the same rule.
  f.http.answer(200, statuses);
  f.http.answer(200, runs);
  auto read = forge->checks_of(kC, 6);
  REQUIRE(read.ok());
  REQUIRE(read->size() == 1);
  const auto& check = std::get<q::CheckReported>(read->at(0));
  CHECK(check.check.context == "build");
  CHECK(check.check.state == q::CheckState::Pending);
}

TEST_CASE("github forge: a fetch's refs/pull/N/head moves PRs; branches do not") {
  Fixture f;
  auto forge = f.forge();
  q::RepoState s;
  s.master = kA;
  s.prs[1] = pr(1, kA, q::PrStatus::Queued);
  s.prs[2] = pr(2, kA);
  RemoteRefs refs;
  refs.branches = {{"master", kA}, {"f2", kC}};  // a fork's branch name means nothing here
  refs.pulls = {{1, kB}, {2, kA}};
  refs.rewritten = {"pull/1"};
  refs.moved_pulls = {1, 2};
  auto events = forge->events_from_fetch(s, refs, 3);
  CHECK(kinds(events) == kinds({q::PrPushed{1, kB, 3, true}}));
  refs.branches["master"] = kC;
  CHECK(forge->events_from_fetch(s, refs, 3).size() == 2);
  refs.branches["master"] = kA;
  // A cancelled PR's head is kept current (a `retry` queues the head it has now); a closed or
  // merged one is left alone.
  s.prs[3] = pr(3, kA, q::PrStatus::Cancelled);
  s.prs[4] = pr(4, kA, q::PrStatus::Cancelled);
  s.prs[4].reason_code = q::Reason::Closed;
  s.prs[5] = pr(5, kA, q::PrStatus::Merged);
  refs.pulls = {{3, kC}, {4, kC}, {5, kC}};
  refs.rewritten.clear();
  refs.moved_pulls = {3, 4, 5};
  CHECK(kinds(forge->events_from_fetch(s, refs, 3)) == kinds({q::PrPushed{3, kC, 3, false}}));
}

TEST_CASE("github forge: a fetch that saw a PR's head again does not undo a newer webhook") {
  Fixture f;
  auto forge = f.forge();
  q::RepoState s;
  s.master = kA;
  s.prs[3] = pr(3, kB, q::PrStatus::Queued);  // a `synchronize` webhook already moved it to kB
  RemoteRefs refs;
  refs.branches = {{"master", kA}};
  refs.pulls = {{3, kA}};  // read before the push; the mirror held kA already
  CHECK(forge->events_from_fetch(s, refs, 3).empty());
  refs.moved_pulls = {3};  // had the fetch itself moved it, it would be news
  CHECK(forge->events_from_fetch(s, refs, 3).size() == 1);
}

}  // namespace
}  // namespace dmz::forges::github

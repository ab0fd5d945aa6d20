// The webhook edge of the GitHub adapter: signatures, the whole example corpus of
// @octokit/webhooks-examples (every payload accepted; the relevant ones the right events),
// commands in comments and reviews, and bad input.
#include "forges/github/webhook.hpp"

#include <doctest/doctest.h>

#include <map>
#include <nlohmann/json.hpp>

#include "base/iso_time.hpp"
#include "forges/github/commands.hpp"
#include "forges/github/github.hpp"
#include "forges/github/test_support.hpp"
#include "queue/json.hpp"

namespace dmz::forges::github {
namespace {

namespace q = queue;
using nlohmann::json;
using testing::signed_request;

constexpr const char* kSecret = "It's a Secret to Everybody";
constexpr q::Millis kNow = 1'700'000'000'000;

// A forge whose API is never called (webhooks need none).
struct Forge {
  testing::ScriptedHttp http;
  ManualClock clock;
  std::unique_ptr<GitHubForge> forge;
  explicit Forge(const std::string& repo, const std::string& label = "dmz:merge",
                 CheckSources sources = {}) {
    Options o;
    o.webhook.repo = repo;
    o.webhook.merge_label = label;
    o.webhook.check_sources = std::move(sources);
    o.secret = kSecret;
    ClientOptions c;
    c.repo = repo;
    c.token = "t";
    forge = std::make_unique<GitHubForge>(o, std::make_unique<Client>(http, clock, c));
  }
  Result<Delivery> hook(const std::string& event, const json& payload,
                        const std::string& id = "d-1") {
    return forge->webhook(signed_request(kSecret, event, id, payload.dump()), kNow);
  }
};

std::vector<std::string> kinds(const Delivery& d) {
  std::vector<std::string> out;
  for (const auto& e : d.events) out.push_back(q::event_kind(e));
  for (const auto& f : d.follow_ups) {
    switch (f.kind) {
      case FollowUp::Kind::kAuthorize:
        out.push_back("authorize:" + (f.event ? q::event_kind(*f.event) : std::string("?")));
        break;
      case FollowUp::Kind::kTry:
        out.push_back("try");
        break;
      case FollowUp::Kind::kRefreshChecks:
        out.push_back("refresh_checks");
        break;
      case FollowUp::Kind::kReconcile:
        out.push_back("reconcile");
        break;
    }
  }
  if (out.empty() && d.fetch) out.push_back("fetch");  // nothing but what a fetch reads
  return out;
}

using Kinds = std::vector<std::string>;

std::string s(const json& j, std::initializer_list<const char*> path) {
  const json* cur = &j;
  for (const char* k : path) {
    if (!cur->is_object() || !cur->contains(k) || (*cur)[k].is_null()) return "";
    cur = &(*cur)[k];
  }
  return cur->is_string() ? cur->get<std::string>() : "";
}

// What an example must become, from GitHub's documented meaning of the event (written out
// per event and action, independently of the adapter's code).
Kinds expected(const std::string& event, const json& p, const std::string& label) {
  const std::string action = s(p, {"action"});
  if (event == "pull_request") {
    if (s(p, {"pull_request", "base", "ref"}) != "master") return {};
    if (action == "opened" || action == "reopened" || action == "ready_for_review")
      return {"pr_opened"};
    // A push made known first: it may overtake its PR's `opened`.
    if (action == "synchronize")
      return s(p, {"pull_request", "state"}) == "closed" ? Kinds{"pr_pushed"}
                                                         : Kinds{"pr_opened", "pr_pushed"};
    if (action == "closed") return {"pr_closed"};
    if (action == "converted_to_draft") return {"cancel_requested"};
    // A closed PR is known again only when reopened; GitHub merges no closed PR.
    const bool closed = s(p, {"pull_request", "state"}) == "closed";
    if (action == "edited") return closed ? Kinds{} : Kinds{"pr_opened"};
    if ((action == "labeled" || action == "unlabeled") && s(p, {"label", "name"}) == label) {
      if (action == "unlabeled") return {"authorize:cancel_requested"};
      if (closed || p["pull_request"].value("draft", false)) return {"reply"};
      return {"pr_opened", "authorize:merge_requested"};
    }
    return {};
  }
  if (event == "pull_request_review" && s(p, {"pull_request", "base", "ref"}) == "master") {
    // A reviewer's latest review decides whether their approval counts: a dismissal, or a
    // request for changes, withdraws it.
    const std::string state = s(p, {"review", "state"});
    if (action == "dismissed" ||
        (action == "submitted" && (state == "changes_requested" || state == "CHANGES_REQUESTED")))
      return {"review_withdrawn"};
    return {};  // the corpus's reviews carry no commands
  }
  if (event == "status") return {"check_reported"};
  if (event == "check_run") return {"check_reported"};
  if (event == "check_suite") return action == "completed" ? Kinds{"refresh_checks"} : Kinds{};
  if (event == "push")
    return s(p, {"ref"}) == "refs/heads/master" && !p.value("deleted", false)
               ? Kinds{"fetch"}  // where master is, the fetch reads: `after` may be old
               : Kinds{};
  if (event == "installation" || event == "installation_repositories") {
    if (action == "deleted" || action == "suspend") return {};
    for (const char* list : {"repositories", "repositories_added"})
      if (p.contains(list) && p[list].is_array())
        for (const auto& r : p[list])
          if (s(r, {"full_name"}) == "Codertocat/Hello-World") return {"reconcile"};
    return {};
  }
  return {};  // ping, issue comments without commands, reviews without commands, the rest
}

// The fields of each event against the payload it came from.
void check_fields(const std::string& event, const json& p, const Delivery& d) {
  for (const auto& e : d.events) {
    if (const auto* o = std::get_if<q::PrOpened>(&e)) {
      CHECK(o->number == p["pull_request"]["number"].get<int>());
      CHECK(o->head == s(p, {"pull_request", "head", "sha"}));
      CHECK(o->branch == s(p, {"pull_request", "head", "ref"}));
      CHECK(o->author == s(p, {"pull_request", "user", "login"}));
      CHECK(o->title == s(p, {"pull_request", "title"}));
      CHECK(o->at == kNow);
      // Only these make a closed PR known again; a late edit, label or ready does not.
      const std::string action = s(p, {"action"});
      const bool base_moved = p.contains("changes") && p["changes"].contains("base");
      CHECK(o->reopens ==
            (action == "opened" || action == "reopened" || (action == "edited" && base_moved)));
    } else if (const auto* pushed = std::get_if<q::PrPushed>(&e)) {
      CHECK(pushed->number == p["pull_request"]["number"].get<int>());
      CHECK(pushed->head == s(p, {"pull_request", "head", "sha"}));
      CHECK(d.pushed_from.at(pushed->number) == s(p, {"before"}));
    } else if (const auto* closed = std::get_if<q::PrClosed>(&e)) {
      CHECK(closed->number == p["pull_request"]["number"].get<int>());
    } else if (const auto* check = std::get_if<q::CheckReported>(&e)) {
      if (event == "status") {
        CHECK(check->sha == s(p, {"sha"}));
        CHECK(check->check.context == s(p, {"context"}));
        CHECK(q::to_string(check->check.state) == s(p, {"state"}));
      } else {
        CHECK(check->sha == s(p, {"check_run", "head_sha"}));
        CHECK(check->check.context == s(p, {"check_run", "name"}));
        const std::string status = s(p, {"check_run", "status"});
        const std::string conclusion = s(p, {"check_run", "conclusion"});
        q::CheckState want =
            status != "completed" ? q::CheckState::Pending
            : conclusion == "success" || conclusion == "neutral" || conclusion == "skipped"
                ? q::CheckState::Success
            : conclusion == "cancelled" ? q::CheckState::Error
                                        : q::CheckState::Failure;
        CHECK(check->check.state == want);
      }
    } else if (const auto* withdrawn = std::get_if<q::ReviewWithdrawn>(&e)) {
      CHECK(withdrawn->number == p["pull_request"]["number"].get<int>());
      CHECK(withdrawn->reviewer == s(p, {"review", "user", "login"}));  // not who dismissed it
      CHECK(withdrawn->at == kNow);
    } else {
      CHECK(std::holds_alternative<q::CancelRequested>(e));  // no other event from a webhook
    }
  }
  for (const auto& f : d.follow_ups) {
    if (f.kind == FollowUp::Kind::kAuthorize && f.event) {
      CHECK(f.actor == s(p, {"sender", "login"}));
      if (const auto* m = std::get_if<q::MergeRequested>(&*f.event)) {
        CHECK(m->sha == s(p, {"pull_request", "head", "sha"}));  // the head when labelled
        CHECK(m->approver == f.actor);
        CHECK_FALSE(f.pin_head);
      }
    }
    if (f.kind == FollowUp::Kind::kRefreshChecks) CHECK(f.sha == s(p, {"check_suite", "head_sha"}));
  }
}

TEST_CASE("github webhooks: every example of the corpus is accepted and means what it says") {
  auto all = testing::corpus();
  std::map<std::string, int> relevant;  // events that became something, by event name
  int n = 0;
  for (const std::string label : {"dmz:merge", "bug"}) {  // "bug": the corpus labels' name
    for (const auto& ex : all) {
      const json& p = ex.payload;
      const std::string repo = p.contains("repository") && p["repository"].is_object()
                                   ? s(p, {"repository", "full_name"})
                                   : "Codertocat/Hello-World";
      Forge f(repo, label);
      const std::string id = "corpus-" + std::to_string(++n);
      CAPTURE(ex.corpus);
      CAPTURE(ex.event);
      CAPTURE(s(p, {"action"}));
      auto d = f.hook(ex.event, p, id);
      REQUIRE_MESSAGE(d.ok(), d.message());
      CHECK(d->id == id);
      CHECK(d->repo == (p.contains("repository") || !expected(ex.event, p, label).empty()
                            ? repo
                            : std::string()));
      CHECK(kinds(*d) == expected(ex.event, p, label));
      check_fields(ex.event, p, *d);
      if (!kinds(*d).empty()) ++relevant[ex.event];
      CHECK(f.http.calls.empty());  // parsing a webhook never calls the API
    }
  }
  // The events dmzbot acts on are all in the corpus and all became something.
  for (const char* event :
       {"pull_request", "status", "check_run", "check_suite", "push", "installation"})
    CHECK_MESSAGE(relevant[event] > 0, event);
}

TEST_CASE("github webhooks: the signature is required, checked over the exact body") {
  const json p = testing::example("ping");
  Forge f(s(p, {"repository", "full_name"}));
  const std::string body = p.dump();
  auto good = signed_request(kSecret, "ping", "d-1", body);
  CHECK(f.forge->webhook(good, kNow).ok());

  auto missing = good;
  missing.headers.erase("x-hub-signature-256");
  CHECK(f.forge->webhook(missing, kNow).code() == Code::kUnauthenticated);
  auto wrong = signed_request("another secret", "ping", "d-1", body);
  CHECK(f.forge->webhook(wrong, kNow).code() == Code::kUnauthenticated);
  auto altered = good;
  altered.body += " ";  // the same JSON, another body
  CHECK(f.forge->webhook(altered, kNow).code() == Code::kUnauthenticated);
  auto sha1 = good;
  sha1.headers["x-hub-signature-256"] = "sha1=" + to_hex(hmac_sha256(kSecret, body)).substr(0, 40);
  CHECK(f.forge->webhook(sha1, kNow).code() == Code::kUnauthenticated);
  auto upper = good;
  for (char& c : upper.headers["x-hub-signature-256"]) c = static_cast<char>(std::toupper(c));
  CHECK(f.forge->webhook(upper, kNow).ok());  // hex digits in either case
  CHECK(verify_signature("", body, good.header("x-hub-signature-256")).code() ==
        Code::kUnauthenticated);  // no secret: never accepted
}

TEST_CASE("github webhooks: bad input is refused with a reason, nothing else") {
  Forge f("Codertocat/Hello-World");
  const json pr =
      testing::example("pull_request", [](const json& p) { return p["action"] == "opened"; });
  const std::string body = pr.dump();
  // Truncated JSON (signed as it is: the signature is right, the payload is not).
  auto truncated = f.forge->webhook(
      signed_request(kSecret, "pull_request", "d-2", body.substr(0, body.size() / 2)), kNow);
  CHECK(truncated.code() == Code::kInvalid);
  CHECK(f.forge->webhook(signed_request(kSecret, "pull_request", "d-2", "[]"), kNow).code() ==
        Code::kInvalid);
  // No event or delivery id.
  auto no_event = signed_request(kSecret, "pull_request", "d-3", body);
  no_event.headers.erase("x-github-event");
  CHECK(f.forge->webhook(no_event, kNow).code() == Code::kInvalid);
  auto no_id = signed_request(kSecret, "pull_request", "", body);
  CHECK(f.forge->webhook(no_id, kNow).code() == Code::kInvalid);
  // Another repository: not ours (the service then asks the next repository's adapter).
  Forge other("octo/other");
  CHECK(other.hook("pull_request", pr).code() == Code::kNotFound);
  // An event dmzbot does not use: acknowledged, nothing happens.
  auto star = f.hook("star", testing::example("star"));
  REQUIRE(star.ok());
  CHECK(kinds(*star).empty());
  auto unknown = f.hook("something_new", json{{"action", "x"}});
  REQUIRE(unknown.ok());
  CHECK(kinds(*unknown).empty());
  // A pull_request event whose payload lacks the pull request is malformed.
  json broken = pr;
  broken.erase("pull_request");
  CHECK(f.hook("pull_request", broken).code() == Code::kInvalid);
  // A content type that is neither JSON nor a form.
  auto xml = signed_request(kSecret, "ping", "d-4", body);
  xml.headers["content-type"] = "application/xml";
  CHECK(f.forge->webhook(xml, kNow).code() == Code::kInvalid);
}

TEST_CASE("github webhooks: a field of the wrong type or null is absent; the text must be UTF-8") {
  Forge f("Codertocat/Hello-World");
  json p = testing::example("pull_request", [](const json& p) { return p["action"] == "opened"; });
  json bad = p;
  bad["pull_request"]["number"] = std::to_string(p["pull_request"]["number"].get<int>());
  CHECK(f.hook("pull_request", bad).code() == Code::kInvalid);
  bad = p;
  bad["pull_request"]["number"] = 2.5;
  CHECK(f.hook("pull_request", bad).code() == Code::kInvalid);
  bad = p;
  bad["pull_request"]["head"]["sha"] = nullptr;
  auto no_head = f.hook("pull_request", bad);
  REQUIRE(no_head.code() == Code::kInvalid);
  CHECK(no_head.message().find("has no head sha") != std::string::npos);
  bad = p;
  bad["pull_request"]["head"] = json::array({p["pull_request"]["head"]});  // not an object
  CHECK(f.hook("pull_request", bad).code() == Code::kInvalid);
  // "draft": "true" is not a draft (only the JSON true is).
  json labeled = p;
  labeled["action"] = "labeled";
  labeled["label"] = {{"name", "dmz:merge"}};
  labeled["sender"]["login"] = "alice";
  labeled["pull_request"]["draft"] = "true";
  CHECK(kinds(*f.hook("pull_request", labeled)) == Kinds{"pr_opened", "authorize:merge_requested"});
  // Invalid UTF-8 inside a string: not JSON.
  std::string body = p.dump();
  body.insert(body.find("\"title\":\"") + 9, "\xC3\x28");
  CHECK(f.forge->webhook(signed_request(kSecret, "pull_request", "d-9", body), kNow).code() ==
        Code::kInvalid);
}

TEST_CASE("github webhooks: a payload over a megabyte means the same as a small one") {
  // Big payloads are parsed apart from the thread's kept parser; the next small one still reads.
  Forge f("Codertocat/Hello-World");
  json p = testing::example("pull_request", [](const json& p) { return p["action"] == "opened"; });
  auto small = f.hook("pull_request", p);
  REQUIRE(small.ok());
  json big = p;
  big["pull_request"]["body"] = std::string(3 << 20, 'x');
  auto large = f.hook("pull_request", big);
  REQUIRE(large.ok());
  CHECK(kinds(*large) == kinds(*small));
  CHECK(std::get<q::PrOpened>(large->events[0]).head ==
        std::get<q::PrOpened>(small->events[0]).head);
  auto again = f.hook("pull_request", p);
  REQUIRE(again.ok());
  CHECK(std::get<q::PrOpened>(again->events[0]).title ==
        std::get<q::PrOpened>(small->events[0]).title);
}

TEST_CASE("github webhooks: a form-encoded delivery carries its JSON in `payload`") {
  Forge f("Codertocat/Hello-World");
  const json pr =
      testing::example("pull_request", [](const json& p) { return p["action"] == "closed"; });
  std::string encoded;
  for (unsigned char c : pr.dump()) {
    if (std::isalnum(c)) {
      encoded += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      encoded += buf;
    }
  }
  auto r = signed_request(kSecret, "pull_request", "d-5", "payload=" + encoded);
  r.headers["content-type"] = "application/x-www-form-urlencoded";
  auto d = f.forge->webhook(r, kNow);
  REQUIRE(d.ok());
  CHECK(kinds(*d) == Kinds{"pr_closed"});
}

// A comment on PR 2 of the corpus's repository, by `who`.
json comment(const std::string& body, const std::string& who = "alice", bool draft = false) {
  json p =
      testing::example("issue_comment", [](const json& p) { return p["action"] == "created"; });
  p["issue"]["pull_request"] = {
      {"url", "https://api.github.com/repos/Codertocat/Hello-World/pulls/2"}};
  p["issue"]["number"] = 2;
  p["issue"]["draft"] = draft;
  p["comment"]["body"] = body;
  p["comment"]["user"]["login"] = who;
  p["sender"]["login"] = who;
  return p;
}

TEST_CASE("github webhooks: commands in comments become follow-ups, events or answers") {
  Forge f("Codertocat/Hello-World");
  const std::string head(40, 'a');
  auto d = f.hook("issue_comment", comment("Looks good.\n@dmzbot merge\n"));
  REQUIRE(d.ok());
  REQUIRE(kinds(*d) == Kinds{"authorize:merge_requested"});
  const FollowUp& merge = d->follow_ups[0];
  CHECK(merge.number == 2);
  CHECK(merge.actor == "alice");
  CHECK(merge.command == "merge");
  CHECK(merge.pin_head);  // approves the head known when the comment arrived
  CHECK(std::get<q::MergeRequested>(*merge.event).sha.empty());
  CHECK(d->fetch);

  d = f.hook("issue_comment", comment("@DMZBot merge " + head));
  REQUIRE(kinds(*d) == Kinds{"authorize:merge_requested"});
  CHECK_FALSE(d->follow_ups[0].pin_head);  // a full sha is taken as given
  CHECK(std::get<q::MergeRequested>(*d->follow_ups[0].event).sha == head);
  d = f.hook("issue_comment", comment("@dmzbot merge ABCDEF1"));
  CHECK(d->follow_ups[0].pin_head);  // an abbreviation is matched against the head
  CHECK(std::get<q::MergeRequested>(*d->follow_ups[0].event).sha == "abcdef1");

  d = f.hook("issue_comment",
             comment("@dmzbot cancel\n@dmzbot retry\n@dmzbot priority 5\n@dmzbot try\n"));
  REQUIRE(d.ok());
  CHECK(kinds(*d) == Kinds{"authorize:cancel_requested", "authorize:retry_requested",
                           "authorize:priority_requested", "try"});
  CHECK(std::get<q::PriorityRequested>(*d->follow_ups[2].event).priority == 5);
  // A cancel or retry carries when it was written, as a merge does: one that arrives late is
  // checked against the commands written after it.
  const q::Millis written = *parse_iso8601_ms(comment("")["comment"]["created_at"]);
  CHECK(d->follow_ups[0].written_at == written);
  CHECK(d->follow_ups[1].written_at == written);
  d = f.hook("issue_comment", comment("@dmzbot status\n@dmzbot: frobnicate"));
  REQUIRE(kinds(*d) == Kinds{"status_requested", "reply"});
  const auto& help = std::get<q::Reply>(d->events[1]);
  CHECK(help.number == 2);
  CHECK(help.message.find("@alice: I do not know `frobnicate`") == 0);
  CHECK(help.message.find("`@dmzbot merge [sha]`") != std::string::npos);
  // Anyone may ask, so one answer of each per comment, and nothing echoed can mention anyone
  // or leave its code span.
  d = f.hook("issue_comment", comment("@dmzbot x` @org/security `y\n@dmzbot z\n@dmzbot status\n"
                                      "@dmzbot status\n",
                                      "mallory"));
  REQUIRE(kinds(*d) == Kinds{"reply", "status_requested"});
  CHECK(std::get<q::Reply>(d->events[0])
            .message.find("@mallory: I do not know `x org/security y`;") == 0);

  // Not commands: quoted, in a code fence, not addressed, by the bot itself, a plain issue.
  d = f.hook("issue_comment",
             comment("> @dmzbot merge\n```\n@dmzbot merge\n```\nhey @dmzbot merge"));
  CHECK(kinds(*d).empty());
  d = f.hook("issue_comment", comment("@dmzbot merge", "dmzbot"));
  CHECK(kinds(*d).empty());
  d = f.hook("issue_comment", comment("@dmzbot merge", "dmzbot[bot]"));
  CHECK(kinds(*d).empty());
  json plain_issue = comment("@dmzbot merge");
  plain_issue["issue"].erase("pull_request");
  CHECK(kinds(*f.hook("issue_comment", plain_issue)).empty());
  json edited = comment("@dmzbot merge");
  edited["action"] = "edited";  // only new comments are commands
  CHECK(kinds(*f.hook("issue_comment", edited)).empty());

  // A draft is refused with a reason; nothing is asked of the queue.
  d = f.hook("issue_comment", comment("@dmzbot merge", "alice", true));
  REQUIRE(kinds(*d) == Kinds{"reply"});
  CHECK(std::get<q::Reply>(d->events[0]).message.find("is a draft") != std::string::npos);
  CHECK(std::get<q::Reply>(d->events[0]).kind == q::NoticeKind::Failure);
  // So is a closed PR, for every command that would queue it; the others are answered.
  json closed = comment("@dmzbot merge\n@dmzbot retry\n@dmzbot try\n@dmzbot status");
  closed["issue"]["state"] = "closed";
  d = f.hook("issue_comment", closed);
  REQUIRE(kinds(*d) == Kinds{"reply", "reply", "reply", "status_requested"});
  CHECK(std::get<q::Reply>(d->events[0]).message ==
        "@alice: #2 is closed; reopen it, then ask again. Nothing changed.");
  // At most kMaxCommands per comment.
  std::string many;
  for (int i = 0; i < 9; ++i) many += "@dmzbot priority " + std::to_string(i) + "\n";
  CHECK(kinds(*f.hook("issue_comment", comment(many))).size() == kMaxCommands);
}

TEST_CASE("github webhooks: a review's command approves the commit the reviewer saw") {
  Forge f("Codertocat/Hello-World");
  json p = testing::example("pull_request_review",
                            [](const json& p) { return p["action"] == "submitted"; });
  p["review"]["body"] = "LGTM\n@dmzbot merge";
  p["review"]["user"]["login"] = "bob";
  auto d = f.hook("pull_request_review", p);
  REQUIRE(d.ok());
  REQUIRE(kinds(*d) == Kinds{"authorize:merge_requested"});
  CHECK(std::get<q::MergeRequested>(*d->follow_ups[0].event).sha == s(p, {"review", "commit_id"}));
  CHECK_FALSE(d->follow_ups[0].pin_head);
  p["pull_request"]["state"] = "closed";
  CHECK(kinds(*f.hook("pull_request_review", p)) == Kinds{"reply"});
}

// The policy counts a reviewer's latest review: one that requests changes, or the dismissal of
// an approval, withdraws it; a comment or an approval withdraws nothing.
TEST_CASE("github webhooks: a review dismissed or requesting changes is a withdrawn review") {
  Forge f("Codertocat/Hello-World");
  json p = testing::example("pull_request_review",
                            [](const json& p) { return p["action"] == "submitted"; });
  p["review"]["user"]["login"] = "bob";
  for (const char* state : {"commented", "approved"}) {
    p["review"]["state"] = state;
    CHECK(kinds(*f.hook("pull_request_review", p)).empty());
  }
  p["review"]["state"] = "changes_requested";
  p["review"]["body"] = "@dmzbot status";  // its commands are still read
  auto d = f.hook("pull_request_review", p);
  REQUIRE(d.ok());
  REQUIRE(kinds(*d) == Kinds{"review_withdrawn", "status_requested"});
  CHECK(std::get<q::ReviewWithdrawn>(d->events[0]).reviewer == "bob");
  p["review"]["state"] = "dismissed";
  p["action"] = "dismissed";
  p["sender"]["login"] = "alice";  // who dismissed it; the review is still bob's
  d = f.hook("pull_request_review", p);
  REQUIRE(kinds(*d) == Kinds{"review_withdrawn"});
  CHECK(std::get<q::ReviewWithdrawn>(d->events[0]).reviewer == "bob");
  p["pull_request"]["base"]["ref"] = "release";  // not dmzbot's
  CHECK(kinds(*f.hook("pull_request_review", p)).empty());
}

TEST_CASE("github webhooks: the merge label approves the head it was added to; drafts refused") {
  Forge f("Codertocat/Hello-World");
  json p = testing::example("pull_request", [](const json& p) { return p["action"] == "labeled"; });
  p["label"]["name"] = "dmz:merge";
  p["sender"]["login"] = "alice";
  auto d = f.hook("pull_request", p);
  REQUIRE(kinds(*d) == Kinds{"pr_opened", "authorize:merge_requested"});
  CHECK_FALSE(std::get<q::PrOpened>(d->events[0]).reopens);  // a label reopens nothing
  CHECK(d->follow_ups[0].command == "add the label dmz:merge");
  CHECK(d->follow_ups[0].label_added == true);  // applied only while the label is on
  CHECK(std::get<q::MergeRequested>(*d->follow_ups[0].event).sha ==
        s(p, {"pull_request", "head", "sha"}));
  // The bot's own label changes are not gestures.
  p["sender"]["login"] = "dmzbot[bot]";
  CHECK(kinds(*f.hook("pull_request", p)).empty());
  p["sender"]["login"] = "alice";
  p["pull_request"]["draft"] = true;
  d = f.hook("pull_request", p);
  REQUIRE(kinds(*d) == Kinds{"reply"});
  CHECK(std::get<q::Reply>(d->events[0]).message.find("@alice: #2 is a draft") == 0);
  // A closed PR is refused the same way, and is not made known again.
  p["pull_request"]["draft"] = false;
  p["pull_request"]["state"] = "closed";
  d = f.hook("pull_request", p);
  REQUIRE(kinds(*d) == Kinds{"reply"});
  CHECK(std::get<q::Reply>(d->events[0]).message.find("@alice: #2 is closed; reopen it") == 0);
  p["action"] = "edited";
  CHECK(kinds(*f.hook("pull_request", p)).empty());
  p["pull_request"]["state"] = "open";
  CHECK(kinds(*f.hook("pull_request", p)) == Kinds{"pr_opened"});
  // Removing it cancels, quietly when nothing was queued.
  p["action"] = "unlabeled";
  d = f.hook("pull_request", p);
  REQUIRE(kinds(*d) == Kinds{"authorize:cancel_requested"});
  CHECK(d->follow_ups[0].quiet);
  CHECK(d->follow_ups[0].label_added == false);  // applied only while the label is off
  // Into another branch: not dmzbot's.
  p["action"] = "labeled";
  p["pull_request"]["draft"] = false;
  p["pull_request"]["base"]["ref"] = "release";
  CHECK(kinds(*f.hook("pull_request", p)).empty());
}

TEST_CASE("github webhooks: a base edited away from master closes, onto master opens") {
  Forge f("Codertocat/Hello-World");
  json p = testing::example("pull_request", [](const json& p) { return p["action"] == "opened"; });
  p["action"] = "edited";
  p["changes"] = {{"base", {{"ref", {{"from", "master"}}}, {"sha", {{"from", "x"}}}}}};
  p["pull_request"]["base"]["ref"] = "release";
  CHECK(kinds(*f.hook("pull_request", p)) == Kinds{"pr_closed"});
  p["changes"] = {{"base", {{"ref", {{"from", "release"}}}, {"sha", {{"from", "x"}}}}}};
  p["pull_request"]["base"]["ref"] = "master";
  auto d = f.hook("pull_request", p);
  REQUIRE(kinds(*d) == Kinds{"pr_opened"});
  CHECK(std::get<q::PrOpened>(d->events[0]).reopens);  // back onto master: known again
  // A new title only: the PR as it was then, which reopens nothing if it was closed since.
  p["changes"] = {{"title", {{"from", "Old"}}}};
  d = f.hook("pull_request", p);
  REQUIRE(kinds(*d) == Kinds{"pr_opened"});
  CHECK_FALSE(std::get<q::PrOpened>(d->events[0]).reopens);
}

TEST_CASE("github webhooks: check results on a try branch are answered on the PR") {
  Forge f("Codertocat/Hello-World");
  json st = testing::example("status");
  const std::string sha = s(st, {"sha"});
  st["state"] = "failure";
  st["context"] = "ci/build";
  st["target_url"] = "https://ci.example/7";
  st["branches"] = json::array({{{"name", "dmz-try/7"}, {"commit", {{"sha", sha}}}}});
  auto d = f.hook("status", st);
  REQUIRE(kinds(*d) == Kinds{"check_reported", "reply"});
  const auto& reply = std::get<q::Reply>(d->events[1]);
  CHECK(reply.number == 7);
  CHECK(reply.kind == q::NoticeKind::Failure);
  CHECK(reply.message == "try " + sha.substr(0, 7) + ": ci/build failure");
  CHECK(reply.details == std::vector<std::string>{"https://ci.example/7"});
  st["state"] = "pending";  // nothing to say yet
  CHECK(kinds(*f.hook("status", st)) == Kinds{"check_reported"});
  CHECK(try_number("dmz-try/12", "dmz-try") == 12);
  CHECK(try_number("dmz-try/012", "dmz-try") == 0);
  CHECK(try_number("dmz-try/x", "dmz-try") == 0);
  CHECK(try_number("feature/12", "dmz-try") == 0);
}

TEST_CASE("github webhooks: a check named in check_sources counts only from its source") {
  const std::string repo = "Codertocat/Hello-World";
  Forge f(repo, "dmz:merge", {{"build", "github-actions"}, {"ci/test", "jenkins"}});
  WebhookSettings settings;
  settings.repo = repo;
  settings.check_sources = {{"build", "github-actions"}};
  // A status's creator is the event's sender (the payload names no creator).
  json st = testing::example("status");
  const std::string sha = s(st, {"sha"});
  st["state"] = "success";
  st["context"] = "build";
  st["branches"] = json::array({{{"name", "dmz-try/7"}, {"commit", {{"sha", sha}}}}});
  st["sender"]["login"] = "mallory";               // may push, and post statuses: not the CI
  CHECK(kinds(*f.hook("status", st)) == Kinds{});  // no check, no try answer either
  std::vector<std::string> ignored;
  auto d = parse_delivery(settings, "status", "d-1", st.dump(), kNow, &ignored);
  REQUIRE(d.ok());
  CHECK(d->events.empty());
  CHECK(ignored == std::vector<std::string>{"status 'build' on " + sha +
                                            " ignored: it came from 'mallory', and "
                                            "check_sources takes it only from 'github-actions'"});
  // From the App (its statuses are "slug[bot]"), or its slug itself, in any case: counted.
  for (const std::string who : {"github-actions[bot]", "github-actions", "GitHub-Actions[bot]"}) {
    CAPTURE(who);
    st["sender"]["login"] = who;
    auto taken = f.hook("status", st);
    REQUIRE(kinds(*taken) == Kinds{"check_reported", "reply"});
    const auto& check = std::get<q::CheckReported>(taken->events[0]);
    CHECK(check.sha == sha);
    CHECK(check.check.context == "build");
    CHECK(check.check.state == q::CheckState::Success);
  }
  // A status object's own creator, where there is one, is who made it.
  st["creator"] = {{"login", "mallory"}};
  CHECK(kinds(*f.hook("status", st)) == Kinds{});
  st["creator"] = {{"login", "github-actions[bot]"}};
  st["sender"]["login"] = "mallory";
  CHECK(kinds(*f.hook("status", st)) == Kinds{"check_reported", "reply"});
  st.erase("creator");
  // A login that merely starts with the source is another one; a check named nowhere in
  // check_sources counts from anyone, as before.
  st["sender"]["login"] = "github-actions-evil";
  CHECK(kinds(*f.hook("status", st)) == Kinds{});
  st["context"] = "lint";
  CHECK(kinds(*f.hook("status", st)) == Kinds{"check_reported", "reply"});

  // A check run counts from its App (app.slug) alone.
  json run = testing::example("check_run", [](const json& p) {
    return s(p, {"check_run", "app", "slug"}) == "github-actions";
  });
  run["check_run"]["name"] = "build";
  const std::string run_sha = s(run, {"check_run", "head_sha"});
  REQUIRE(kinds(*f.hook("check_run", run)) == Kinds{"check_reported"});
  run["check_run"]["app"]["slug"] = "someone-elses-app";
  CHECK(kinds(*f.hook("check_run", run)) == Kinds{});
  ignored.clear();
  d = parse_delivery(settings, "check_run", "d-2", run.dump(), kNow, &ignored);
  REQUIRE(d.ok());
  CHECK(d->events.empty());
  CHECK(ignored == std::vector<std::string>{"check run 'build' on " + run_sha +
                                            " ignored: it came from 'someone-elses-app', and "
                                            "check_sources takes it only from 'github-actions'"});
  run["check_run"]["app"] = nullptr;  // no App at all
  CHECK(kinds(*f.hook("check_run", run)) == Kinds{});
  run["check_run"]["name"] = "lint";
  CHECK(kinds(*f.hook("check_run", run)) == Kinds{"check_reported"});

  // An App named by its id: a check run counts by app.id (GitHub does not require the slug,
  // and GHES examples have none), and only a check run.
  json octo = testing::example("check_run", [](const json& p) {
    const json app = p["check_run"].value("app", json());
    return app.is_object() && app.value("slug", "").empty() && app.contains("id");
  });
  octo["check_run"]["name"] = "build";
  const int app_id = octo["check_run"]["app"]["id"].get<int>();
  WebhookSettings by_id = settings;
  by_id.check_sources = {{"build", std::to_string(app_id)}};
  auto counted = parse_delivery(by_id, "check_run", "d-3", octo.dump(), kNow);
  REQUIRE(counted.ok());
  CHECK(counted->events.size() == 1);
  ignored.clear();
  auto slugless = parse_delivery(settings, "check_run", "d-4", octo.dump(), kNow, &ignored);
  REQUIRE(slugless.ok());
  CHECK(slugless->events.empty());
  CHECK(ignored == std::vector<std::string>{
                       "check run 'build' on " + s(octo, {"check_run", "head_sha"}) +
                       " ignored: it came from App " + std::to_string(app_id) +
                       " (no slug), and check_sources takes it only from 'github-actions'"});
  CHECK_FALSE(from_source({{"build", "42"}}, "build", true, "", 41));
  CHECK_FALSE(from_source({{"build", "42"}}, "build", false, "", 42));  // a status has no App id

  CHECK(from_source({{"build", "ci-bot[bot]"}}, "build", true, "ci-bot"));  // the App's bot
  CHECK_FALSE(from_source({{"build", "ci-bot"}}, "build", true, "ci-bot[bot]"));
  CHECK_FALSE(from_source({{"build", "ci-bot"}}, "build", false, ""));
  CHECK(from_source({{"build", "ci-bot"}}, "Build", false, "anyone"));  // names are exact
}

TEST_CASE("commands: parsing") {
  using K = Command::Kind;
  auto one = [](const std::string& body) {
    auto c = parse_commands(body, "dmzbot");
    REQUIRE(c.size() == 1);
    return c[0];
  };
  CHECK(one("@dmzbot merge").kind == K::kMerge);
  CHECK(one("  @dmzbot   merge   0123abcd  ").sha == "0123abcd");
  CHECK(one("@dmzbot merge 0123ab").kind == K::kHelp);  // too short for a sha
  CHECK(one("@dmzbot merge xyz1234").kind == K::kHelp);
  CHECK(one("@dmzbot merge now please").kind == K::kHelp);
  CHECK(one("@dmzbot priority -3").priority == -3);
  CHECK(one("@dmzbot priority 1001").kind == K::kHelp);
  CHECK(one("@dmzbot priority 2x").kind == K::kHelp);
  CHECK(one("@dmzbot").kind == K::kHelp);
  CHECK(one("@dmzbot").words.empty());
  CHECK(one("@dmzbot Status").kind == K::kStatus);
  CHECK(one("@dmzbot[bot] try").kind == K::kTry);
  CHECK(parse_commands("@dmzbotx merge", "dmzbot").empty());
  CHECK(parse_commands("email@dmzbot merge", "dmzbot").empty());
  CHECK(needs_merge_master(K::kMerge));
  CHECK_FALSE(needs_merge_master(K::kStatus));
}

}  // namespace
}  // namespace dmz::forges::github

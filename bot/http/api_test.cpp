// make_api driven directly with a recording fake Backend: no sockets, no threads.
#include "bot/http/api.hpp"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "bot/http/api_fake_backend.hpp"

using namespace dmz;
using dmz::test::FakeBackend;
using nlohmann::json;

namespace {

const std::string kSha = "0123456789abcdef0123456789abcdef01234567";
const std::string kSha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

struct Call {
  bool answered = false;
  int answers = 0;
  HttpResponse response;
  json body() const { return json::parse(response.body); }
  std::string error() const { return body().at("error").get<std::string>(); }
  std::string header(const std::string& name) const {
    for (const auto& [n, v] : response.headers)
      if (n == name) return v;
    return {};
  }
};

Call call(Handler& api, const std::string& method, const std::string& target,
          const std::string& body = {}, const std::string& token = {}) {
  HttpRequest req;
  req.method = method;
  req.target = target;
  req.body = body;
  if (!token.empty()) req.headers["authorization"] = "Bearer " + token;
  Call c;
  api(req, [&c](HttpResponse r) {
    c.answered = true;
    ++c.answers;
    c.response = std::move(r);
  });
  REQUIRE(c.answered);  // the fake answers synchronously
  CHECK(c.answers == 1);
  return c;
}

const std::string kStatus = "/api/v1/repos/o/n/statuses/" + kSha;
const std::string kStatusBody =
    R"({"state":"success","context":"ci/build","description":"ok","target_url":"http://ci/1"})";

// Asserts a 4xx JSON error answer and that nothing reached the engine.
void expect_refused(const Call& c, const FakeBackend& fake, int status,
                    const std::string& contains) {
  CHECK(c.response.status == status);
  CHECK(c.response.content_type == "application/json");
  CAPTURE(c.response.body);
  CHECK(c.error().find(contains) != std::string::npos);
  CHECK(c.response.body.find('\n') == std::string::npos);
  CHECK(fake.events.empty());
  CHECK(fake.applied.empty());
  CHECK(fake.registrations.empty());
}

}  // namespace

TEST_CASE("health, readiness, metrics") {
  FakeBackend fake;
  auto api = make_api(fake);
  auto h = call(api, "GET", "/healthz");
  CHECK(h.response.status == 200);
  CHECK(h.body() == json{{"status", "ok"}});

  fake.is_ready = false;
  auto r = call(api, "GET", "/readyz");
  CHECK(r.response.status == 503);
  CHECK(r.error() == "not ready");
  fake.is_ready = true;
  CHECK(call(api, "GET", "/readyz?verbose=1").response.status == 200);

  auto m = call(api, "GET", "/metrics");
  CHECK(m.response.status == 200);
  CHECK(m.response.content_type == "text/plain; version=0.0.4");
  CHECK(m.response.body == fake.metrics_text);

  auto w = call(api, "POST", "/healthz");
  CHECK(w.response.status == 405);
  CHECK(w.header("Allow") == "GET");
}

TEST_CASE("status: happy path records the exact CheckReported") {
  FakeBackend fake;
  fake.clock = 1234;
  auto api = make_api(fake);
  auto c = call(api, "POST", kStatus + "?ignored=1", kStatusBody, "st");
  CHECK(c.response.status == 202);
  CHECK(c.body() == json{{"accepted", true}});
  REQUIRE(fake.events.size() == 1);
  CHECK(fake.events[0].first == "o/n");
  auto* e = std::get_if<queue::CheckReported>(&fake.events[0].second);
  REQUIRE(e);
  CHECK(e->sha == kSha);
  CHECK(e->at == 1234);
  CHECK(e->check.context == "ci/build");
  CHECK(e->check.state == queue::CheckState::Success);
  CHECK(e->check.description == "ok");
  CHECK(e->check.url == "http://ci/1");
  CHECK(e->check.at == 1234);
}

TEST_CASE("status: 64-digit and uppercase SHAs are accepted, normalised to lowercase") {
  FakeBackend fake;
  auto api = make_api(fake);
  CHECK(call(api, "POST", "/api/v1/repos/o/n/statuses/" + kSha256,
             R"({"state":"pending","context":"c"})", "st")
            .response.status == 202);
  std::string upper = "0123456789ABCDEF0123456789ABCDEF01234567";
  CHECK(call(api, "POST", "/api/v1/repos/o/n/statuses/" + upper,
             R"({"state":"failure","context":"c","description":null})", "st")
            .response.status == 202);
  REQUIRE(fake.events.size() == 2);
  CHECK(std::get<queue::CheckReported>(fake.events[0].second).sha == kSha256);
  CHECK(std::get<queue::CheckReported>(fake.events[0].second).check.state ==
        queue::CheckState::Pending);
  CHECK(std::get<queue::CheckReported>(fake.events[1].second).sha == kSha);
  CHECK(std::get<queue::CheckReported>(fake.events[1].second).check.description.empty());
}

TEST_CASE("status: bad input is refused and records nothing") {
  FakeBackend fake;
  auto api = make_api(fake);
  SUBCASE("malformed JSON") {
    expect_refused(call(api, "POST", kStatus, "{\"state\":", "st"), fake, 400, "malformed JSON");
  }
  SUBCASE("empty body") {
    expect_refused(call(api, "POST", kStatus, "", "st"), fake, 400, "malformed JSON");
  }
  SUBCASE("a number too large for a double") {  // found by fuzz/api_fuzz.cpp: it was a 500
    expect_refused(call(api, "POST", kStatus, R"({"state":1E400})", "st"), fake, 400,
                   "malformed JSON");
    expect_refused(call(api, "POST", "/api/v1/repos/o/n/pulls", "7777777E777", "tok"), fake, 400,
                   "malformed JSON");
  }
  SUBCASE("not an object") {
    expect_refused(call(api, "POST", kStatus, "[1,2]", "st"), fake, 422, "JSON object");
  }
  SUBCASE("missing state") {
    expect_refused(call(api, "POST", kStatus, R"({"context":"c"})", "st"), fake, 422, "'state'");
  }
  SUBCASE("unknown state") {
    expect_refused(call(api, "POST", kStatus, R"({"state":"green","context":"c"})", "st"), fake,
                   422, "'state'");
  }
  SUBCASE("state of the wrong type") {
    expect_refused(call(api, "POST", kStatus, R"({"state":1,"context":"c"})", "st"), fake, 422,
                   "'state' must be a string");
  }
  SUBCASE("missing context") {
    expect_refused(call(api, "POST", kStatus, R"({"state":"success"})", "st"), fake, 422,
                   "missing field 'context'");
  }
  SUBCASE("a context or a title over 1 KiB") {  // shown whole on every page view
    const std::string long_name(1025, 'a');
    expect_refused(
        call(api, "POST", kStatus, R"({"state":"pending","context":")" + long_name + R"("})", "st"),
        fake, 422, "'context' must be at most 1024 bytes");
    expect_refused(
        call(api, "POST", "/api/v1/repos/o/n/pulls",
             R"({"number":3,"branch":"feature/x","title":")" + long_name + R"("})", "tok"),
        fake, 422, "'title' must be at most 1024 bytes");
    CHECK(call(api, "POST", kStatus,
               R"({"state":"pending","context":")" + long_name.substr(1) + R"("})", "st")
              .response.status == 202);
  }
  SUBCASE("empty context") {
    expect_refused(call(api, "POST", kStatus, R"({"state":"success","context":""})", "st"), fake,
                   422, "'context' must not be empty");
  }
  SUBCASE("description of the wrong type") {
    expect_refused(
        call(api, "POST", kStatus, R"({"state":"success","context":"c","description":5})", "st"),
        fake, 422, "'description' must be a string");
  }
  SUBCASE("target_url of the wrong type") {
    expect_refused(
        call(api, "POST", kStatus, R"({"state":"success","context":"c","target_url":[]})", "st"),
        fake, 422, "'target_url' must be a string");
  }
  SUBCASE("description or target_url too long") {
    auto status = [](const std::string& field, std::size_t bytes) {
      return json{{"state", "success"}, {"context", "c"}, {field, std::string(bytes, 'x')}}.dump();
    };
    expect_refused(call(api, "POST", kStatus, status("description", 1025), "st"), fake, 422,
                   "field 'description' must be at most 1024 bytes");
    expect_refused(call(api, "POST", kStatus, status("target_url", 2049), "st"), fake, 422,
                   "field 'target_url' must be at most 2048 bytes");
    CHECK(call(api, "POST", kStatus, status("description", 1024), "st").response.status == 202);
    CHECK(call(api, "POST", kStatus, status("target_url", 2048), "st").response.status == 202);
  }
  SUBCASE("bad sha: too short") {
    expect_refused(call(api, "POST", "/api/v1/repos/o/n/statuses/abc123", kStatusBody, "st"), fake,
                   422, "not a commit SHA");
  }
  SUBCASE("bad sha: not hex") {
    std::string bad = kSha;
    bad[5] = 'g';
    expect_refused(call(api, "POST", "/api/v1/repos/o/n/statuses/" + bad, kStatusBody, "st"), fake,
                   422, "not a commit SHA");
  }
  SUBCASE("unknown repo") {
    expect_refused(call(api, "POST", "/api/v1/repos/x/y/statuses/" + kSha, kStatusBody, "st"), fake,
                   404, "unknown repository x/y");
  }
  SUBCASE("missing token") {
    auto c = call(api, "POST", kStatus, kStatusBody);
    expect_refused(c, fake, 401, "missing bearer token");
    CHECK(c.header("WWW-Authenticate").rfind("Bearer", 0) == 0);
  }
  SUBCASE("wrong token, and the api token is not the status token") {
    auto c = call(api, "POST", kStatus, kStatusBody, "sT");
    expect_refused(c, fake, 401, "invalid bearer token");
    CHECK(c.response.body.find("st") == std::string::npos);
    CHECK(c.header("WWW-Authenticate").rfind("Bearer", 0) == 0);
    expect_refused(call(api, "POST", kStatus, kStatusBody, "tok"), fake, 401,
                   "invalid bearer token");
  }
  SUBCASE("non-bearer scheme") {
    HttpRequest req{"POST", kStatus, {{"authorization", "Basic c3Q="}}, kStatusBody};
    Call c;
    api(req, [&](HttpResponse r) {
      c.answered = true;
      c.response = r;
    });
    expect_refused(c, fake, 401, "missing bearer token");
  }
  SUBCASE("no status token configured") {
    expect_refused(call(api, "POST", "/api/v1/repos/o/notoken/statuses/" + kSha, kStatusBody, "st"),
                   fake, 403, "no status_token configured");
    expect_refused(call(api, "POST", "/api/v1/repos/o/notoken/statuses/" + kSha, kStatusBody, ""),
                   fake, 403, "no status_token configured");
  }
  SUBCASE("wrong method") {
    auto c = call(api, "GET", kStatus);
    expect_refused(c, fake, 405, "not allowed");
    CHECK(c.header("Allow") == "POST");
  }
}

TEST_CASE("merge, cancel, retry: happy paths record the exact events") {
  FakeBackend fake;
  fake.clock = 77;
  auto api = make_api(fake);
  auto m = call(api, "POST", "/api/v1/repos/o/n/pulls/7/merge",
                R"({"sha":")" + kSha + R"(","approver":"mm"})", "tok");
  CHECK(m.response.status == 202);
  CHECK(m.body() == json{{"accepted", true}});
  CHECK(call(api, "POST", "/api/v1/repos/o/n/pulls/8/cancel", R"({"by":"alice"})", "tok")
            .response.status == 202);
  CHECK(call(api, "POST", "/api/v1/repos/o/n/pulls/9/retry?x", R"({"by":"bob"})", "tok")
            .response.status == 202);
  REQUIRE(fake.events.size() == 3);
  for (auto& [repo, e] : fake.events) CHECK(repo == "o/n");
  auto& merge = std::get<queue::MergeRequested>(fake.events[0].second);
  CHECK(merge.number == 7);
  CHECK(merge.sha == kSha);
  CHECK(merge.approver == "mm");
  CHECK(merge.at == 77);
  auto& cancel = std::get<queue::CancelRequested>(fake.events[1].second);
  CHECK(cancel.number == 8);
  CHECK(cancel.by == "alice");
  CHECK(cancel.at == 77);
  auto& retry = std::get<queue::RetryRequested>(fake.events[2].second);
  CHECK(retry.number == 9);
  CHECK(retry.by == "bob");
  CHECK(retry.at == 77);
}

TEST_CASE("merge: the engine's rejection is passed through with its code") {
  FakeBackend fake;
  auto api = make_api(fake);
  const std::string url = "/api/v1/repos/o/n/pulls/7/merge";
  const std::string body = R"({"sha":")" + kSha + R"(","approver":"mm"})";
  SUBCASE("SHA is not the PR head: 409") {
    fake.outcome.rejected = conflict("PR #7 head is abcdef0, not 0123456");
    auto c = call(api, "POST", url, body, "tok");
    CHECK(c.response.status == 409);
    CHECK(c.error() == "PR #7 head is abcdef0, not 0123456");
  }
  SUBCASE("unknown PR: 404") {
    fake.outcome.rejected = not_found("no pull request #7");
    auto c = call(api, "POST", url, body, "tok");
    CHECK(c.response.status == 404);
    CHECK(c.error() == "no pull request #7");
  }
  SUBCASE("invalid: 422") {
    fake.outcome.rejected = invalid("cannot retry a merged PR");
    CHECK(call(api, "POST", url, body, "tok").response.status == 422);
  }
  SUBCASE("a failure on the service's side (the store cannot write): 503 with Retry-After") {
    fake.outcome.rejected = unavailable("sqlite: step 'INSERT': database or disk is full");
    auto c = call(api, "POST", url, body, "tok");
    CHECK(c.response.status == 503);
    CHECK(c.header("Retry-After") == "5");
    CHECK(c.error().find("disk is full") != std::string::npos);
  }
  SUBCASE("a bug: 500") {
    fake.outcome.rejected = internal("internal error: boom");
    CHECK(call(api, "POST", url, body, "tok").response.status == 500);
  }
  // The API passed the command on; the engine (the fake's outcome) refused it: no state change.
  CHECK(fake.events.size() == 1);
  CHECK(fake.applied.empty());
}

TEST_CASE("merge, cancel, retry: bad input is refused and records nothing") {
  FakeBackend fake;
  auto api = make_api(fake);
  const std::string merge = "/api/v1/repos/o/n/pulls/7/merge";
  const std::string ok_body = R"({"sha":")" + kSha + R"(","approver":"mm"})";
  SUBCASE("malformed JSON") {
    expect_refused(call(api, "POST", merge, "{sha:1}", "tok"), fake, 400, "malformed JSON");
  }
  SUBCASE("missing sha") {
    expect_refused(call(api, "POST", merge, R"({"approver":"mm"})", "tok"), fake, 422,
                   "missing field 'sha'");
  }
  SUBCASE("sha of the wrong type") {
    expect_refused(call(api, "POST", merge, R"({"sha":42,"approver":"mm"})", "tok"), fake, 422,
                   "'sha' must be a string");
  }
  SUBCASE("bad sha format") {
    expect_refused(call(api, "POST", merge, R"({"sha":"abc","approver":"mm"})", "tok"), fake, 422,
                   "'sha' must be a commit SHA");
  }
  SUBCASE("missing approver") {
    expect_refused(call(api, "POST", merge, R"({"sha":")" + kSha + R"("})", "tok"), fake, 422,
                   "missing field 'approver'");
  }
  SUBCASE("cancel without by") {
    expect_refused(call(api, "POST", "/api/v1/repos/o/n/pulls/7/cancel", "{}", "tok"), fake, 422,
                   "missing field 'by'");
  }
  SUBCASE("retry with by of the wrong type") {
    expect_refused(call(api, "POST", "/api/v1/repos/o/n/pulls/7/retry", R"({"by":true})", "tok"),
                   fake, 422, "'by' must be a string");
  }
  SUBCASE("PR number not a positive integer") {
    for (std::string n : {"0", "-1", "abc", "07", "1.5", "99999999999"})
      expect_refused(call(api, "POST", "/api/v1/repos/o/n/pulls/" + n + "/merge", ok_body, "tok"),
                     fake, 422, "positive integer");
  }
  SUBCASE("unknown repo") {
    expect_refused(call(api, "POST", "/api/v1/repos/o/zz/pulls/7/merge", ok_body, "tok"), fake, 404,
                   "unknown repository o/zz");
  }
  SUBCASE("missing token") {
    expect_refused(call(api, "POST", merge, ok_body), fake, 401, "missing bearer token");
  }
  SUBCASE("wrong token (the status token is not an api token)") {
    expect_refused(call(api, "POST", merge, ok_body, "st"), fake, 401, "invalid bearer token");
  }
  SUBCASE("no api token configured") {
    expect_refused(call(api, "POST", "/api/v1/repos/o/notoken/pulls/7/merge", ok_body, "tok"), fake,
                   403, "no api_token configured");
  }
  SUBCASE("wrong method") {
    expect_refused(call(api, "GET", merge, "", "tok"), fake, 405, "not allowed");
    expect_refused(call(api, "PUT", merge, ok_body, "tok"), fake, 405, "not allowed");
  }
  SUBCASE("unknown command") {
    expect_refused(call(api, "POST", "/api/v1/repos/o/n/pulls/7/squash", ok_body, "tok"), fake, 404,
                   "no route");
  }
}

TEST_CASE("pulls: register") {
  FakeBackend fake;
  auto api = make_api(fake);
  const std::string url = "/api/v1/repos/o/n/pulls";
  SUBCASE("happy path") {
    auto c = call(api, "POST", url,
                  R"({"number":7,"branch":"feature/x","author":"ann","title":"Add x"})", "tok");
    CHECK(c.response.status == 202);
    REQUIRE(fake.registrations.size() == 1);
    const auto& r = fake.registrations[0];
    CHECK(r.repo == "o/n");
    CHECK(r.number == 7);
    CHECK(r.branch == "feature/x");
    CHECK(r.author == "ann");
    CHECK(r.title == "Add x");
    CHECK(fake.events.empty());
  }
  SUBCASE("a PR by signed tag") {
    auto c = call(api, "POST", url, R"({"number":8,"tag":"v1-for-you","author":"ann"})", "tok");
    CHECK(c.response.status == 202);
    REQUIRE(fake.registrations.size() == 1);
    CHECK(fake.registrations[0].branch == "tags/v1-for-you");
  }
  SUBCASE("tag or branch: the field says which") {
    // A branch named tags/... would pass for a tag and skip the branch patterns.
    expect_refused(call(api, "POST", url, R"({"number":7,"branch":"tags/v1"})", "tok"), fake, 422,
                   "field 'branch' must not start with 'tags/'");
    expect_refused(call(api, "POST", url, R"({"number":7,"tag":"v1","branch":"feature/x"})", "tok"),
                   fake, 422, "give either 'branch' or 'tag', not both");
    expect_refused(call(api, "POST", url, R"({"number":7,"tag":"../v1"})", "tok"), fake, 422,
                   "field 'tag' is not a valid tag name");
  }
  SUBCASE("rejected by the backend (refused branch)") {
    fake.outcome.rejected = invalid("branch wip/x matches refused pattern wip/*");
    auto c = call(api, "POST", url, R"({"number":7,"branch":"wip/x"})", "tok");
    CHECK(c.response.status == 422);
    CHECK(c.error() == "branch wip/x matches refused pattern wip/*");
  }
  SUBCASE("bad input") {
    expect_refused(call(api, "POST", url, "nope", "tok"), fake, 400, "malformed JSON");
    expect_refused(call(api, "POST", url, R"({"branch":"feature/x"})", "tok"), fake, 422,
                   "missing field 'number'");
    expect_refused(call(api, "POST", url, R"({"number":"7","branch":"feature/x"})", "tok"), fake,
                   422, "'number' must be a positive integer");
    expect_refused(call(api, "POST", url, R"({"number":0,"branch":"feature/x"})", "tok"), fake, 422,
                   "'number' must be a positive integer");
    expect_refused(call(api, "POST", url, R"({"number":-3,"branch":"feature/x"})", "tok"), fake,
                   422, "'number' must be a positive integer");
    expect_refused(call(api, "POST", url, R"({"number":1.5,"branch":"feature/x"})", "tok"), fake,
                   422, "'number' must be a positive integer");
    expect_refused(call(api, "POST", url, R"({"number":4294967296,"branch":"feature/x"})", "tok"),
                   fake, 422, "'number' must be a positive integer");
    expect_refused(call(api, "POST", url, R"({"number":7})", "tok"), fake, 422,
                   "missing field 'branch'");
    expect_refused(call(api, "POST", url, R"({"number":7,"branch":"x","title":3})", "tok"), fake,
                   422, "'title' must be a string");
    expect_refused(call(api, "POST", url, R"({"number":7,"branch":"x"})", "bad"), fake, 401,
                   "invalid bearer token");
    expect_refused(call(api, "POST", url, R"({"number":7,"branch":"x"})"), fake, 401,
                   "missing bearer token");
    expect_refused(
        call(api, "POST", "/api/v1/repos/q/q/pulls", R"({"number":7,"branch":"x"})", "tok"), fake,
        404, "unknown repository q/q");
    expect_refused(call(api, "GET", url, "", "tok"), fake, 405, "not allowed");
  }
}

TEST_CASE("queue document") {
  FakeBackend fake;
  queue::RepoState state;
  state.repo = "o/n";
  state.master = kSha;
  queue::PullRequest pr;
  pr.number = 7;
  pr.head = kSha256.substr(0, 40);
  pr.status = queue::PrStatus::Queued;
  state.prs[7] = pr;
  pr.number = 8;  // not approved: no estimate
  pr.status = queue::PrStatus::Open;
  state.prs[8] = pr;
  state.observed.build_ms = 600'000;  // ten-minute builds, none landed yet
  fake.states["o/n"] = state;
  auto api = make_api(fake);

  auto c = call(api, "GET", "/api/v1/repos/o/n/queue?t=1");
  CHECK(c.response.status == 200);
  CHECK(c.response.content_type == "application/json");
  auto j = c.body();
  CHECK(j.at("repo") == "o/n");
  CHECK(j.at("master") == kSha);
  REQUIRE(j.at("prs").size() == 2);
  CHECK(j["prs"][0].at("number") == 7);
  CHECK(j["prs"][0].at("status") == "queued");
  CHECK(j["prs"][0].at("head") == pr.head);
  // The status page's expected landing: first in a serial queue, one build from now.
  CHECK(j["prs"][0].at("eta") == fake.clock + 600'000);
  CHECK(j["prs"][1].at("eta").is_null());

  // Configured but no state (engine does not know it): 404; not configured: 404.
  auto unknown = call(api, "GET", "/api/v1/repos/o/notoken/queue");
  CHECK(unknown.response.status == 404);
  CHECK(unknown.error() == "unknown repository o/notoken");
  CHECK(call(api, "GET", "/api/v1/repos/a/b/queue").response.status == 404);
  CHECK(call(api, "POST", "/api/v1/repos/o/n/queue").response.status == 405);
  CHECK(fake.events.empty());
}

TEST_CASE("build logs are served as plain text, never as a page") {
  FakeBackend fake;
  fake.logs["o/n " + kSha] = "<script>alert(1)</script>\nok\n";
  auto api = make_api(fake);

  auto c = call(api, "GET", "/api/v1/repos/o/n/logs/" + kSha);
  CHECK(c.response.status == 200);
  CHECK(c.response.content_type == "text/plain; charset=utf-8");
  CHECK(c.header("X-Content-Type-Options") == "nosniff");
  CHECK(c.response.body == "<script>alert(1)</script>\nok\n");
  CHECK(fake.log_limits == std::vector<std::size_t>{1u << 20});

  std::string upper = kSha;
  for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  CHECK(call(api, "GET", "/api/v1/repos/o/n/logs/" + upper).response.status == 200);

  auto missing = call(api, "GET", "/api/v1/repos/o/n/logs/" + kSha256);
  CHECK(missing.response.status == 404);
  CHECK(missing.error() == "no build log for " + kSha256 + " in o/n");
  // A log the disk cannot give is our failure, not a missing log: 503, to be asked again.
  fake.logs_fail = true;
  auto unreadable = call(api, "GET", "/api/v1/repos/o/n/logs/" + kSha);
  CHECK(unreadable.response.status == 503);
  CHECK(unreadable.header("Retry-After") != "");
  CHECK(unreadable.error().find("Input/output error") != std::string::npos);
  fake.logs_fail = false;
  // A name that is not a SHA never reaches the backend (it would become a file name).
  auto traversal = call(api, "GET", "/api/v1/repos/o/n/logs/..%2F..%2Fetc%2Fpasswd");
  expect_refused(traversal, fake, 422, "is not a commit SHA");
  CHECK(call(api, "GET", "/api/v1/repos/a/b/logs/" + kSha).response.status == 404);
  CHECK(call(api, "POST", "/api/v1/repos/o/n/logs/" + kSha).response.status == 405);
  CHECK(fake.log_limits.size() == 4);  // not the traversal, other repo or POST
}

// A FakeBackend that saves an event just after it read a PR, as the engine may.
class SavesAfterPull : public FakeBackend {
 public:
  void pull(const std::string& repo, int number,
            std::function<void(Result<PullView>)> done) override {
    FakeBackend::pull(repo, number, [this, repo, done](Result<PullView> v) {
      EventLogEntry later;
      later.repo = repo;
      later.kind = "merge_requested";
      later.json = "{}";
      publish(later);
      done(v);
    });
  }
};

TEST_CASE("a PR's page resumes its feed before any change saved after the PR was read") {
  SavesAfterPull fake;
  fake.states["o/n"].repo = "o/n";
  queue::PullRequest pr;
  pr.number = 7;
  pr.status = queue::PrStatus::Open;
  fake.pulls[7].pr = pr;
  EventLogEntry opened;
  opened.repo = "o/n";
  opened.kind = "pr_opened";
  opened.json = "{}";
  const auto before = fake.publish(opened);
  auto api = make_api(fake);
  auto shown = call(api, "GET", "/repos/o/n/pulls/7");
  CHECK(shown.response.status == 200);
  CAPTURE(shown.response.body);
  CHECK(shown.response.body.find("data-last-seq=\"" + std::to_string(before) + "\"") !=
        std::string::npos);
  CHECK(fake.recent_events("o/n", 1)->back().seq > before);
}

TEST_CASE("repository list and status pages") {
  FakeBackend fake;
  queue::RepoState st;
  st.repo = "o/n";
  queue::PullRequest pr;
  pr.number = 7;
  pr.title = "<script>x()</script>";
  pr.branch = "feature/<b>";
  pr.status = queue::PrStatus::Open;
  st.prs[7] = pr;
  fake.states["o/n"] = st;
  fake.healths["o/n"].loaded = true;
  fake.settings["o/n"].required_checks = {"ci/test"};
  PullView pv;
  pv.pr = pr;
  fake.pulls[7] = pv;
  auto api = make_api(fake);
  auto list = call(api, "GET", "/api/v1/repos");
  CHECK(list.response.status == 200);
  CHECK(list.body() == json::array({"o/n", "o/notoken"}));

  EventLogEntry opened;
  opened.repo = "o/n";
  opened.kind = "pr_opened";
  opened.json = "{}";
  const auto newest = fake.publish(opened);
  auto index = call(api, "GET", "/");
  CHECK(index.response.status == 200);
  // The overview follows every repository's feed from the newest event it was rendered with.
  CHECK(index.response.body.find("data-events=\"/api/v1/events\" data-last-seq=\"" +
                                 std::to_string(newest) + "\"") != std::string::npos);
  CHECK(call(api, "POST", "/api/v1/events").response.status == 405);
  // A change saved after the state was read: both pages resume before it, so their feeds send
  // it (they would skip it if they resumed from the newest event read later).
  fake.after_view = [&](const std::string& repo) {
    EventLogEntry later = opened;
    later.repo = repo;
    later.kind = "merge_requested";
    fake.publish(later);
  };
  for (const char* path : {"/", "/repos/o/n"}) {
    const auto before = fake.recent_events("o/n", 1)->back().seq;
    auto shown = call(api, "GET", path);
    CHECK(shown.response.body.find("data-last-seq=\"" + std::to_string(before) + "\"") !=
          std::string::npos);
    CHECK(fake.recent_events("o/n", 1)->back().seq > before);
  }
  fake.after_view = nullptr;
  CHECK(index.response.content_type == "text/html; charset=utf-8");
  CHECK(index.response.body.find("href=\"/repos/o/n\"") != std::string::npos);
  // A repository that cannot be read is listed with why.
  CHECK(index.response.body.find("cannot be read: unknown repository o/notoken") !=
        std::string::npos);
  // Scripts and styles only from dmzbot's own assets; no inline code at all.
  auto csp = index.header("Content-Security-Policy");
  CHECK(csp.starts_with("default-src 'none'; script-src 'self'; style-src 'self'"));
  CHECK(csp.find("frame-ancestors 'none'") != std::string::npos);
  CHECK(csp.find("unsafe-inline") == std::string::npos);
  CHECK(index.response.body.find("<script>") == std::string::npos);

  auto page = call(api, "GET", "/repos/o/n");
  CHECK(page.response.status == 200);
  CHECK(page.header("Content-Security-Policy") == csp);
  CHECK(page.response.body.find("data-events=\"/api/v1/repos/o/n/events\"") != std::string::npos);
  CHECK(page.response.body.find("&lt;script&gt;x()&lt;/script&gt;") != std::string::npos);
  CHECK(page.response.body.find("<script>x()") == std::string::npos);
  CHECK(fake.history_calls.back() == std::pair<std::int64_t, std::size_t>{0, 50});

  auto pull = call(api, "GET", "/repos/o/n/pulls/7");
  CHECK(pull.response.status == 200);
  CHECK(pull.response.body.find("<h1>#7 &lt;script&gt;x()&lt;/script&gt;</h1>") !=
        std::string::npos);
  auto missing = call(api, "GET", "/repos/o/n/pulls/8");
  CHECK(missing.response.status == 404);
  CHECK(missing.response.content_type == "text/html; charset=utf-8");
  CHECK(missing.response.body.find("unknown pull request #8") != std::string::npos);
  CHECK(call(api, "GET", "/repos/o/n/pulls/x").response.status == 404);
  CHECK(call(api, "GET", "/repos/x/y").response.status == 404);
  CHECK(call(api, "POST", "/").response.status == 405);

  // The service failing to answer is a 503 page that says so.
  fake.read_error = unavailable("store: locked");
  auto down = call(api, "GET", "/repos/o/n");
  CHECK(down.response.status == 503);
  CHECK(down.response.body.find("store: locked") != std::string::npos);
}

TEST_CASE("assets are served with their type and an ETag") {
  FakeBackend fake;
  auto api = make_api(fake);
  auto css = call(api, "GET", "/assets/dmzbot.css");
  CHECK(css.response.status == 200);
  CHECK(css.response.content_type == "text/css; charset=utf-8");
  CHECK(css.response.body.find("prefers-color-scheme: dark") != std::string::npos);
  CHECK(css.response.body.find(":focus-visible") != std::string::npos);
  auto js = call(api, "GET", "/assets/dmzbot.js");
  CHECK(js.response.status == 200);
  CHECK(js.response.content_type == "text/javascript; charset=utf-8");
  CHECK(js.response.body.find("EventSource") != std::string::npos);
  CHECK(js.response.body.find("innerHTML") == std::string::npos);
  const auto etag = js.header("ETag");
  CHECK(etag.size() == 18);
  HttpRequest again{"GET", "/assets/dmzbot.js", {{"if-none-match", etag}}, ""};
  std::optional<HttpResponse> r;
  api(again, [&](HttpResponse x) { r = std::move(x); });
  REQUIRE(r);
  CHECK(r->status == 304);
  CHECK(r->body.empty());
  CHECK(call(api, "GET", "/assets/other.js").response.status == 404);
  CHECK(call(api, "GET", "/assets/../api.cpp").response.status == 404);
}

TEST_CASE("unknown routes and methods") {
  FakeBackend fake;
  auto api = make_api(fake);
  for (std::string target :
       {"/nope", "/healthz/", "/api/v1", "/api/v1/repos/o/n", "/api/v1/repos/o/n/queue/x",
        "/api/v2/repos/o/n/queue", "/api/v1/repos/o/n/statuses", "/api/v1/repos/o/n/pulls/7/x",
        "/webhooks", "/webhooks/github/x", "", "nonsense"})
    expect_refused(call(api, "POST", target, "{}", "tok"), fake, 404, "no route");
  expect_refused(call(api, "DELETE", "/metrics"), fake, 405, "not allowed");
}

TEST_CASE("readiness lists each repository's health; an unhealthy one degrades, not fails") {
  FakeBackend fake;
  driver::Health good;
  good.loaded = good.remote_ok = true;
  driver::Health bad;
  bad.loaded = true;
  bad.last_error = "git fetch: connection refused";
  bad.fetch_failures = 3;
  fake.healths = {{"o/n", good}};
  auto api = make_api(fake);
  auto r = call(api, "GET", "/readyz");
  CHECK(r.response.status == 200);
  CHECK(r.body().at("status") == "ready");
  CHECK(r.body().at("repos").at("o/n").at("remote_ok") == true);
  fake.healths["o/notoken"] = bad;
  r = call(api, "GET", "/readyz");
  CHECK(r.response.status == 200);
  CHECK(r.body().at("status") == "degraded");
  CHECK(r.body()["repos"]["o/notoken"].at("last_error") == "git fetch: connection refused");
  CHECK(r.body()["repos"]["o/notoken"].at("fetch_failures") == 3);
  fake.is_ready = false;
  auto down = call(api, "GET", "/readyz");
  CHECK(down.response.status == 503);
  CHECK(down.header("Retry-After") == "5");
}

TEST_CASE("queue document carries health and the newest outcomes; a failed read is 503") {
  FakeBackend fake;
  queue::RepoState state;
  state.repo = "o/n";
  fake.states["o/n"] = state;
  fake.healths["o/n"].remote_ok = true;
  HistoryEntry h;
  h.seq = 9;
  h.number = 3;
  h.status = queue::PrStatus::Failed;
  h.reason = queue::Reason::BuildFailed;
  h.message = "check ci/build failed";
  fake.outcomes = {h};
  auto api = make_api(fake);
  auto c = call(api, "GET", "/api/v1/repos/o/n/queue");
  REQUIRE(c.response.status == 200);
  CHECK(c.body().at("health").at("remote_ok") == true);
  REQUIRE(c.body().at("recent").size() == 1);
  CHECK(c.body()["recent"][0].at("reason_code") == "build-failed");
  CHECK(c.body()["recent"][0].at("number") == 3);

  fake.read_error = unavailable("sqlite: database is locked");
  auto down = call(api, "GET", "/api/v1/repos/o/n/queue");
  CHECK(down.response.status == 503);
  CHECK(down.header("Retry-After") == "5");
}

TEST_CASE("history is paged by seq with a bounded limit") {
  FakeBackend fake;
  HistoryEntry a, b;
  a.seq = 12;
  b.seq = 7;
  fake.outcomes = {a, b};
  auto api = make_api(fake);
  auto c = call(api, "GET", "/api/v1/repos/o/n/history?before=20&limit=2");
  REQUIRE(c.response.status == 200);
  CHECK(c.body().at("outcomes").size() == 2);
  CHECK(c.body().at("next_before") == 7);
  CHECK(call(api, "GET", "/api/v1/repos/o/n/history").response.status == 200);
  REQUIRE(fake.history_calls.size() == 2);
  CHECK(fake.history_calls[0] == std::pair<std::int64_t, std::size_t>{20, 2});
  CHECK(fake.history_calls[1] == std::pair<std::int64_t, std::size_t>{0, 50});
  expect_refused(call(api, "GET", "/api/v1/repos/o/n/history?limit=100000"), fake, 422,
                 "'limit' must be a number from 0 to 500");
  expect_refused(call(api, "GET", "/api/v1/repos/o/n/history?before=-1"), fake, 422,
                 "'before' must be a number");
  // Twenty digits: refused before any arithmetic could overflow (UBSan aborts on it).
  expect_refused(call(api, "GET", "/api/v1/repos/o/n/history?limit=99999999999999999999"), fake,
                 422, "'limit' must be a number from 0 to 500");
  expect_refused(call(api, "GET", "/api/v1/repos/o/n/history?before=9x99999999999999999999"), fake,
                 422, "'before' must be a number");
  CHECK(call(api, "GET", "/api/v1/repos/x/y/history").response.status == 404);
}

TEST_CASE("one pull request with its outcomes and events") {
  FakeBackend fake;
  PullView v;
  v.pr.number = 7;
  v.pr.status = queue::PrStatus::Merged;
  v.archived = true;
  v.events.push_back(EventLogEntry{5, "o/n", "merge_requested", R"({"number":7})", 7, 100});
  fake.pulls[7] = v;
  auto api = make_api(fake);
  auto c = call(api, "GET", "/api/v1/repos/o/n/pulls/7");
  REQUIRE(c.response.status == 200);
  CHECK(c.body().at("pr").at("status") == "merged");
  CHECK(c.body().at("archived") == true);
  CHECK(c.body().at("events")[0].at("kind") == "merge_requested");
  CHECK(c.body().at("events")[0].at("event").at("number") == 7);
  CHECK(call(api, "GET", "/api/v1/repos/o/n/pulls/8").response.status == 404);
  expect_refused(call(api, "GET", "/api/v1/repos/o/n/pulls/x"), fake, 422,
                 "must be a positive integer");
}

TEST_CASE("webhooks go to the backend with their headers; its refusal keeps its code") {
  FakeBackend fake;
  auto api = make_api(fake);
  HttpRequest req{"POST", "/webhooks/github", {{"x-github-event", "ping"}}, "{}"};
  HttpResponse answer;
  api(req, [&](HttpResponse r) { answer = std::move(r); });
  CHECK(answer.status == 202);
  REQUIRE(fake.webhooks.size() == 1);
  CHECK(fake.webhooks[0].forge == "github");
  CHECK(fake.webhooks[0].request.header("x-github-event") == "ping");
  CHECK(fake.webhooks[0].request.body == "{}");
  fake.webhook_answer = unauthenticated("X-Hub-Signature-256 does not match");
  CHECK(call(api, "POST", "/webhooks/github", "{}").response.status == 401);
  fake.webhook_answer = unavailable("store: database is locked");
  CHECK(call(api, "POST", "/webhooks/github", "{}").response.status == 503);
  CHECK(call(api, "GET", "/webhooks/github").response.status == 405);
}

TEST_CASE("control characters in names are refused: they would forge trailers and log lines") {
  FakeBackend fake;
  auto api = make_api(fake);
  const std::string merge = "/api/v1/repos/o/n/pulls/7/merge";
  expect_refused(call(api, "POST", merge,
                      R"({"sha":")" + kSha + R"(","approver":"mm\nApproved-by: someone"})", "tok"),
                 fake, 422, "'approver' must not contain control characters");
  expect_refused(call(api, "POST", "/api/v1/repos/o/n/pulls/7/cancel", R"({"by":"a\rb"})", "tok"),
                 fake, 422, "'by' must not contain control characters");
  const std::string reg = "/api/v1/repos/o/n/pulls";
  expect_refused(call(api, "POST", reg, R"({"number":7,"branch":"feature/x\u0000y"})", "tok"), fake,
                 422, "'branch' must not contain control characters");
  expect_refused(
      call(api, "POST", reg, R"({"number":7,"branch":"feature/x","author":"a\tb"})", "tok"), fake,
      422, "'author' must not contain control characters");
  expect_refused(
      call(api, "POST", reg, R"({"number":7,"branch":"feature/x","title":"t\u001b[2J"})", "tok"),
      fake, 422, "'title' must not contain control characters");
  expect_refused(call(api, "POST", "/api/v1/repos/o/n/statuses/" + kSha,
                      R"({"state":"success","context":"ci/\nx"})", "st"),
                 fake, 422, "'context' must not contain control characters");
  // A CI's free-text description may hold a newline: it is kept (and escaped where logged).
  CHECK(call(api, "POST", "/api/v1/repos/o/n/statuses/" + kSha,
             R"({"state":"success","context":"ci/x","description":"line1\nline2"})", "st")
            .response.status == 202);
}

TEST_CASE("promote: token, tag name checked before the backend; a backend without promotion") {
  FakeBackend fake;
  auto api = make_api(fake);
  expect_refused(call(api, "POST", "/api/v1/repos/o/n/promote", R"({"tag":"v1"})", "wrong"), fake,
                 401, "token");
  for (const char* bad : {"../x", "v1..2", "-v1", "v1.lock", "a b", "v1@{0}", ""})
    expect_refused(call(api, "POST", "/api/v1/repos/o/n/promote", json{{"tag", bad}}.dump(), "tok"),
                   fake, 422, "tag");
  CHECK(call(api, "GET", "/api/v1/repos/o/n/promote", "", "tok").response.status == 405);
  // The fake, like any backend that does not override promote(), has no release promotion.
  auto c = call(api, "POST", "/api/v1/repos/o/n/promote", R"({"tag":"v1.0-rc1"})", "tok");
  CHECK(c.response.status == 503);
  CHECK(c.error().find("release promotion is not available") != std::string::npos);
}

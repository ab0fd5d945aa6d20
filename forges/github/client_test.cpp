// The REST client against a scripted HttpClient: what it sends, retries and backoff, rate
// limits, pagination, ETags, and GitHub App tokens.
#include "forges/github/client.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <future>

#include "base/iso_time.hpp"
#include "base/metrics.hpp"
#include "forges/github/test_support.hpp"

namespace dmz::forges::github {
namespace {

using nlohmann::json;
using testing::ScriptedHttp;
namespace q = queue;

struct Fixture {
  ScriptedHttp http;
  ManualClock clock{1'700'000'000'000};
  std::vector<q::Millis> slept;
  ClientOptions options;
  Fixture() {
    options.api_url = "https://api.example.com";
    options.repo = "octo/widgets";
    options.token = "ghp_secret";
    options.sleep = [this](q::Millis ms) {
      slept.push_back(ms);
      clock.advance(ms);
    };
  }
  Client client() { return Client(http, clock, options); }
};

std::string header(const HttpCall& c, const std::string& name) {
  for (const auto& [k, v] : c.headers)
    if (k == name) return v;
  return "";
}

TEST_CASE("github client: a call carries the token and GitHub's headers; codes by status") {
  Fixture f;
  Client c = f.client();
  // The base access, not the role's name (GitHub maps maintain to write; a custom role has
  // a name of its own).
  f.http.answer(200, R"({"permission":"write","role_name":"maintain"})");
  auto perm = c.permission("ali ce");
  REQUIRE(perm.ok());
  CHECK(*perm == "write");
  REQUIRE(f.http.calls.size() == 1);
  const auto& call = f.http.calls[0];
  CHECK(call.method == "GET");
  CHECK(call.url == "https://api.example.com/repos/octo/widgets/collaborators/ali%20ce/permission");
  CHECK(header(call, "Authorization") == "Bearer ghp_secret");
  CHECK(header(call, "Accept") == "application/vnd.github+json");
  CHECK(header(call, "X-GitHub-Api-Version") == "2022-11-28");
  CHECK(header(call, "User-Agent") == "dmzbot");

  f.http.answer(404, R"({"message":"Not Found"})");
  CHECK(c.call("GET", "/x").code() == Code::kNotFound);
  f.http.answer(422, R"({"message":"Validation Failed"})");
  auto bad = c.call("POST", "/x");
  CHECK(bad.code() == Code::kInvalid);
  CHECK(bad.message() == "POST /x: 422 Validation Failed");
  f.http.answer(403, R"({"message":"Must have admin rights"})");
  CHECK(c.call("GET", "/x").code() == Code::kPermissionDenied);
  f.http.answer(401, R"({"message":"Bad credentials"})");
  CHECK(c.call("GET", "/x").code() == Code::kUnauthenticated);
  CHECK(f.slept.empty());  // none of these is retried
  // The token never leaves for another origin (a Link header could point anywhere).
  CHECK(c.call("GET", "https://evil.example.com/steal").code() == Code::kInvalid);
  CHECK(f.http.calls.size() == 5);
}

TEST_CASE("github client: 5xx and network errors are retried with doubling backoff") {
  Fixture f;
  f.options.max_attempts = 4;
  f.options.backoff = 100;
  Client c = f.client();
  f.http.answer(502, "");
  f.http.replies.push_back(unavailable("connect: refused"));
  f.http.answer(200, R"({"id": 7})");
  auto r = c.call("GET", "/ok");
  REQUIRE(r.ok());
  CHECK(r->body["id"] == 7);
  CHECK(f.slept == std::vector<q::Millis>{100, 200});
  CHECK(c.health().ok);

  f.slept.clear();
  for (int i = 0; i < 4; ++i) f.http.answer(503, R"({"message":"busy"})");
  auto gone = c.call("GET", "/down");
  CHECK(gone.code() == Code::kUnavailable);
  CHECK(gone.message() == "GET /down: 503 busy");
  CHECK(f.slept == std::vector<q::Millis>{100, 200, 400});
  CHECK_FALSE(c.health().ok);
  CHECK(c.health().last_error == "GET /down: 503 busy");
  CHECK(c.requests() == 7);

  // What creates is sent once: a comment or a pull request that may exist despite the error
  // is looked for by the caller before it is sent again.
  f.slept.clear();
  f.http.answer(502, "");
  CHECK(c.comment(3, "hello").code() == Code::kUnavailable);
  f.http.replies.push_back(unavailable("read: timed out"));
  CHECK(c.create_pull("f", "master", "t", "b").code() == Code::kUnavailable);
  CHECK(c.requests() == 9);
  CHECK(f.slept.empty());
  // A rate limit says it was not done: sent again once it ends.
  f.options.max_rate_wait = 10'000;
  Client patient = f.client();
  f.http.answer(429, R"({"message":"slow down"})", {{"retry-after", "2"}});
  f.http.answer(201, R"({"id": 1})");
  CHECK(patient.comment(3, "hello").ok());
  CHECK(f.slept == std::vector<q::Millis>{2000});
}

// Shutdown must not wait out a backoff (up to 8 s each) or send what is left of the retries:
// the call ends "stopping", unavailable, so its follow-up stays queued for the next start.
TEST_CASE("github client: stop() ends a backoff under way and refuses later calls") {
  Fixture f;
  f.options.sleep = nullptr;  // the real wait, which stop() ends
  f.options.backoff = 20'000;
  f.options.max_attempts = 2;
  Client c = f.client();
  std::promise<void> first_sent;
  f.http.otherwise = [&first_sent](const HttpCall&) -> Result<HttpReply> {
    first_sent.set_value();
    return HttpReply{503, {}, R"({"message":"busy"})"};
  };
  auto call = std::async(std::launch::async, [&c] { return c.call("GET", "/down"); });
  REQUIRE(first_sent.get_future().wait_for(std::chrono::seconds(5)) == std::future_status::ready);
  c.stop();  // while it waits out the backoff, or just before
  REQUIRE(call.wait_for(std::chrono::seconds(5)) == std::future_status::ready);
  auto r = call.get();
  CHECK(r.code() == Code::kUnavailable);
  CHECK(r.message() == "GET /down: stopping");
  CHECK(f.http.calls.size() == 1);  // no second attempt

  auto later = c.permission("alice");
  CHECK(later.code() == Code::kUnavailable);
  CHECK(later.message().ends_with(": stopping"));
  CHECK(f.http.calls.size() == 1);
}

TEST_CASE("github client: every HTTP exchange is counted by its status for /metrics") {
  auto count = [](const std::string& code) {
    return metrics::global().value("dmzbot_forge_api_requests_total",
                                   {{"forge", "github"}, {"code", code}});
  };
  const double ok0 = count("200"), bad0 = count("502"), none0 = count("error"),
               free0 = count("304");
  Fixture f;
  f.options.backoff = 1;
  Client c = f.client();
  f.http.answer(502, "");
  f.http.replies.push_back(unavailable("connect: refused"));
  f.http.answer(200, R"({"id": 1})", {{"etag", "\"v1\""}});
  REQUIRE(c.call("GET", "/a").ok());
  f.http.answer(304, "");
  REQUIRE(c.call("GET", "/a").ok());  // the same answer, from the ETag cache
  CHECK(count("200") - ok0 == 1);
  CHECK(count("502") - bad0 == 1);
  CHECK(count("error") - none0 == 1);
  CHECK(count("304") - free0 == 1);
  CHECK(c.requests() == 4);
}

TEST_CASE("github client: rate limits are waited out when short, refused at once when long") {
  Fixture f;
  f.options.max_rate_wait = 10'000;
  Client c = f.client();
  const q::Millis now = f.clock.now();
  // Primary limit: 403, nothing remaining, reset in 3 s: waited for, then the call succeeds.
  f.http.answer(
      403, R"({"message":"API rate limit exceeded"})",
      {{"x-ratelimit-remaining", "0"}, {"x-ratelimit-reset", std::to_string(now / 1000 + 3)}});
  f.http.answer(200, "{}", {{"x-ratelimit-remaining", "4999"}});
  REQUIRE(c.call("GET", "/a").ok());
  REQUIRE(f.slept.size() == 1);
  CHECK(f.slept[0] >= 2000);
  CHECK(f.slept[0] <= 3000);
  CHECK(c.health().rate_remaining == 4999);

  // Secondary limit: 429 with Retry-After of an hour: refused, and no request is spent until
  // it ends (another repository's thread is never held up this long).
  f.slept.clear();
  f.http.answer(429, R"({"message":"secondary rate limit"})", {{"retry-after", "3600"}});
  auto limited = c.call("GET", "/b");
  CHECK(limited.code() == Code::kUnavailable);
  CHECK(limited.message().find("rate limited until") != std::string::npos);
  const auto calls = f.http.calls.size();
  CHECK(c.call("GET", "/c").code() == Code::kUnavailable);
  CHECK(f.http.calls.size() == calls);
  CHECK(c.health().blocked_until == f.clock.now() + 3'600'000);
  CHECK(f.slept.empty());
  f.clock.advance(3'600'001);
  f.http.answer(200, "{}");
  CHECK(c.call("GET", "/c").ok());
  CHECK(c.health().blocked_until == 0);
  // A secondary limit that says only so in its message (a 403 or a 429 without headers):
  // nothing asked for a minute, as GitHub's documentation asks.
  for (int status : {403, 429}) {
    f.slept.clear();
    f.http.answer(status,
                  R"({"message":"You have exceeded a secondary rate limit. Please wait a few )"
                  R"(minutes before you try again."})");
    const auto before = f.http.calls.size();
    CHECK(c.call("POST", "/repos/octo/widgets/issues/1/comments").code() == Code::kUnavailable);
    CHECK(f.http.calls.size() == before + 1);  // not retried at once
    CHECK(c.health().blocked_until == f.clock.now() + 60'000);
    CHECK(c.call("GET", "/e").code() == Code::kUnavailable);
    CHECK(f.http.calls.size() == before + 1);
    CHECK(f.slept.empty());
    f.clock.advance(60'001);
    f.http.answer(200, "{}");
    CHECK(c.call("GET", "/e").ok());
  }
  // A secondary limit with the primary limit's headers (plenty remaining, a reset 45 minutes
  // away): a minute, not until the primary window resets.
  f.http.answer(403, R"({"message":"You have exceeded a secondary rate limit."})",
                {{"x-ratelimit-remaining", "4100"},
                 {"x-ratelimit-reset", std::to_string(f.clock.now() / 1000 + 45 * 60)}});
  CHECK(c.call("GET", "/f").code() == Code::kUnavailable);
  CHECK(c.health().blocked_until == f.clock.now() + 60'000);
  CHECK(c.health().rate_remaining != 0);  // the primary limit was not reached
  f.clock.advance(60'001);
  // A 403 that is not a rate limit is a refusal, not retried.
  f.http.answer(403, R"({"message":"Resource not accessible"})");
  CHECK(c.call("GET", "/d").code() == Code::kPermissionDenied);
}

TEST_CASE("github client: lists follow Link rel=next pages; ETags make repeats free") {
  Fixture f;
  Client c = f.client();
  f.http.answer(200, R"([{"number":1,"head":{"sha":"a","ref":"f1"},"user":{"login":"x"}}])",
                {{"link",
                  "<https://api.example.com/repos/octo/widgets/pulls?state=open&page=2>; "
                  "rel=\"next\", <https://api.example.com/x?page=2>; rel=\"last\""},
                 {"etag", "\"p1\""}});
  f.http.answer(200, R"([{"number":2,"head":{"sha":"b","ref":"f2"},"draft":true,
                         "labels":[{"name":"dmz:merge"}]}])",
                {{"etag", "\"p2\""}});
  auto pulls = c.open_pulls("master");
  REQUIRE(pulls.ok());
  CHECK(pulls->second);  // complete
  REQUIRE(pulls->first.size() == 2);
  CHECK(pulls->first[0].number == 1);
  CHECK(pulls->first[0].head_ref == "f1");
  CHECK(pulls->first[1].draft);
  CHECK(pulls->first[1].labels == std::vector<std::string>{"dmz:merge"});
  CHECK(f.http.calls[0].url ==
        "https://api.example.com/repos/octo/widgets/pulls?state=open&base=master&per_page=100");
  CHECK(f.http.calls[1].url ==
        "https://api.example.com/repos/octo/widgets/pulls?state=open&page=2");
  CHECK(header(f.http.calls[0], "If-None-Match").empty());

  // Again: each page is asked with its ETag; 304s give the same answer.
  f.http.answer(304, "", {{"etag", "\"p1\""}});
  f.http.answer(304, "", {{"etag", "\"p2\""}});
  auto again = c.open_pulls("master");
  REQUIRE(again.ok());
  CHECK(again->first.size() == 2);
  CHECK(header(f.http.calls[2], "If-None-Match") == "\"p1\"");
  CHECK(header(f.http.calls[3], "If-None-Match") == "\"p2\"");

  // Too many pages: incomplete (reconciliation then closes nothing).
  f.options.max_pages = 1;
  Client short_client = f.client();
  f.http.answer(200, "[]", {{"link", "<https://api.example.com/p?page=2>; rel=\"next\""}});
  auto partial = short_client.open_pulls("master");
  REQUIRE(partial.ok());
  CHECK_FALSE(partial->second);
}

TEST_CASE("github client: webhook deliveries are read back to a time, then no further page") {
  Fixture f;
  Client c = f.client();
  const q::Millis now = f.clock.now();
  auto item = [&](std::int64_t id, q::Millis ago, const json& code) {
    return json{{"id", id},
                {"guid", "g" + std::to_string(id)},
                {"delivered_at", iso8601_utc((now - ago) / 1000)},
                {"redelivery", id == 4},
                {"status_code", code},
                {"event", "issue_comment"}};
  };
  const std::string more =
      "<https://api.example.com/repos/octo/widgets/hooks/77/deliveries"
      "?per_page=100&cursor=";
  f.http.answer(200, json::array({item(4, 60'000, 202), item(3, 3'600'000, 0)}).dump(),
                {{"link", more + "2>; rel=\"next\""}});
  // The page that reaches `since` is the last one read, though it links to more.
  f.http.answer(200, json::array({item(2, 7'200'000, 503), item(1, 90'000'000, nullptr)}).dump(),
                {{"link", more + "1>; rel=\"next\""}});
  auto log = c.hook_deliveries(77, now - 86'400'000 / 2);
  REQUIRE(log.ok());
  REQUIRE(f.http.calls.size() == 2);
  CHECK(f.http.calls[0].url ==
        "https://api.example.com/repos/octo/widgets/hooks/77/deliveries?per_page=100");
  CHECK(f.http.calls[1].url ==
        "https://api.example.com/repos/octo/widgets/hooks/77/deliveries?per_page=100&cursor=2");
  REQUIRE(log->size() == 4);
  CHECK((*log)[0].id == 4);
  CHECK((*log)[0].guid == "g4");
  CHECK((*log)[0].status_code == 202);
  CHECK((*log)[0].delivered_at == (now - 60'000) / 1000 * 1000);
  CHECK((*log)[1].status_code == 0);
  CHECK((*log)[2].status_code == 503);
  CHECK((*log)[3].status_code == 0);  // null: no answer
  CHECK((*log)[3].event == "issue_comment");

  f.http.answer(202, "{}");
  CHECK(c.redeliver(77, 3).ok());
  CHECK(f.http.calls[2].method == "POST");
  CHECK(f.http.calls[2].url ==
        "https://api.example.com/repos/octo/widgets/hooks/77/deliveries/3/attempts");
  f.http.answer(404, R"({"message":"Not Found"})");
  CHECK(c.redeliver(77, 99).code() == Code::kNotFound);
}

TEST_CASE("github client: comments since a time, with who wrote them and when") {
  Fixture f;
  Client c = f.client();
  const q::Millis since = 1'700'000'000'000;
  auto comment = [&](const std::string& who, q::Millis at, const std::string& body) {
    return json{{"user", {{"login", who}}}, {"created_at", iso8601_utc(at / 1000)}, {"body", body}};
  };
  // GitHub filters by the last edit: a comment written before `since`, edited after, comes too.
  f.http.answer(200, json::array({comment("old", since - 60'000, "edited"),
                                  comment("bob", since, "@dmzbot cancel"),
                                  json{{"body", "no time"}}, comment("carol", since + 5'000, "hi")})
                         .dump());
  auto got = c.comments_since(7, since);
  REQUIRE(got.ok());
  REQUIRE(f.http.calls.size() == 1);
  CHECK(f.http.calls[0].url ==
        "https://api.example.com/repos/octo/widgets/issues/7/comments"
        "?since=" +
            iso8601_utc(since / 1000) + "&per_page=100");
  REQUIRE(got->size() == 2);
  CHECK((*got)[0].author == "bob");
  CHECK((*got)[0].body == "@dmzbot cancel");
  CHECK((*got)[0].created_at == since);
  CHECK((*got)[1].author == "carol");
  CHECK((*got)[1].created_at == since + 5'000);
  f.http.answer(404, R"({"message":"Not Found"})");
  CHECK(c.comments_since(8, since).code() == Code::kNotFound);
}

TEST_CASE("github client: the ETag cache keeps the newest answers within its bytes") {
  Fixture f;
  f.options.max_cached_bytes = 25;  // two of the 10-byte bodies below, not three
  Client c = f.client();
  auto get = [&](const std::string& path, const std::string& etag) {
    f.http.answer(200, R"({"x":"12"})", {{"etag", etag}});
    REQUIRE(c.call("GET", path).ok());
    return header(f.http.calls.back(), "If-None-Match");
  };
  CHECK(get("/a", "\"a\"").empty());
  CHECK(get("/b", "\"b\"").empty());
  CHECK(get("/a", "\"a\"") == "\"a\"");  // kept; now the newest used
  CHECK(get("/c", "\"c\"").empty());     // /b, the least recently used, makes room
  CHECK(get("/a", "\"a\"") == "\"a\"");
  CHECK(get("/c", "\"c\"") == "\"c\"");
  CHECK(get("/b", "\"b\"").empty());
  // A 304 answers from the cache.
  f.http.answer(304, "", {{"etag", "\"b\""}});
  auto again = c.call("GET", "/b");
  REQUIRE(again.ok());
  CHECK(again->body["x"] == "12");
  // An answer bigger than the whole cache is not kept.
  f.http.answer(200, std::string(R"({"x":")") + std::string(40, 'y') + "\"}", {{"etag", "\"d\""}});
  REQUIRE(c.call("GET", "/d").ok());
  CHECK(get("/d", "\"d\"").empty());
}

TEST_CASE(
    "github client: the approving reviewers are those whose latest review approves the head") {
  Fixture f;
  Client c = f.client();
  const std::string head(40, 'a'), old(40, 'b');
  auto review = [](const std::string& login, const std::string& state, const std::string& sha) {
    return json{{"user", {{"login", login}}}, {"state", state}, {"commit_id", sha}};
  };
  json reviews = json::array({
      review("alice", "APPROVED", head),  // counts
      review("bob", "APPROVED", old),     // an older head
      review("carol", "APPROVED", head),  // then asked for changes
      review("carol", "CHANGES_REQUESTED", head),
      review("dave", "CHANGES_REQUESTED", old),  // then approved the head
      review("dave", "APPROVED", head),
      review("erin", "APPROVED", head),  // a comment changes no verdict
      review("erin", "COMMENTED", head),
      review("frank", "APPROVED", head),  // dismissed
      review("frank", "DISMISSED", head),
  });
  f.http.answer(200, reviews.dump());
  auto got = c.approving_reviewers(7, head);
  REQUIRE(got.ok());
  CHECK(*got == std::vector<std::string>{"alice", "dave", "erin"});
  CHECK(f.http.calls[0].method == "GET");
  CHECK(f.http.calls[0].url ==
        "https://api.example.com/repos/octo/widgets/pulls/7/reviews?per_page=100");

  f.http.answer(500, "");
  f.options.max_attempts = 1;
  CHECK(f.client().approving_reviewers(7, head).code() == Code::kUnavailable);
}

TEST_CASE("github client: a GitHub App's JWT buys installation tokens, renewed before expiry") {
  Fixture f;
  test::TempDir dir;
  test::must("openssl genrsa -out " + (dir / "app.pem").string() + " 2048 2>/dev/null");
  test::must("openssl pkey -in " + (dir / "app.pem").string() + " -pubout -out " +
             (dir / "app.pub").string());
  f.options.token.clear();
  f.options.app_id = 42;
  f.options.installation_id = 99;
  f.options.private_key = test::read_file(dir / "app.pem");
  Client c = f.client();
  auto expiry = [&](q::Millis in) { return iso8601_utc((f.clock.now() + in) / 1000); };
  f.http.answer(201, json{{"token", "ghs_1"}, {"expires_at", expiry(3'600'000)}}.dump());
  f.http.answer(200, "{}");
  REQUIRE(c.call("GET", "/x").ok());
  REQUIRE(f.http.calls.size() == 2);
  const auto& exchange = f.http.calls[0];
  CHECK(exchange.method == "POST");
  CHECK(exchange.url == "https://api.example.com/app/installations/99/access_tokens");
  const std::string jwt = header(exchange, "Authorization").substr(7);
  CHECK(header(f.http.calls[1], "Authorization") == "Bearer ghs_1");
  // The JWT: RS256 over header.claims, verified by openssl with the App's public key.
  auto d2 = jwt.rfind('.');
  std::string sig = jwt.substr(d2 + 1);
  for (char& ch : sig) ch = ch == '-' ? '+' : ch == '_' ? '/' : ch;
  while (sig.size() % 4) sig += '=';
  test::write_file(dir / "input", jwt.substr(0, d2));
  test::write_file(dir / "sig", *base64_decode(sig));
  test::must("openssl dgst -sha256 -verify " + (dir / "app.pub").string() + " -signature " +
             (dir / "sig").string() + " " + (dir / "input").string());
  std::string claims = jwt.substr(jwt.find('.') + 1, d2 - jwt.find('.') - 1);
  for (char& ch : claims) ch = ch == '-' ? '+' : ch == '_' ? '/' : ch;
  while (claims.size() % 4) claims += '=';
  json cl = json::parse(*base64_decode(claims));
  CHECK(cl["iss"] == 42);
  CHECK(cl["iat"].get<std::int64_t>() == f.clock.now() / 1000 - 60);
  CHECK(cl["exp"].get<std::int64_t>() - cl["iat"].get<std::int64_t>() <= 600);

  // Used until 5 minutes before it expires, then renewed.
  f.clock.advance(50 * 60'000);
  f.http.answer(200, "{}");
  REQUIRE(c.call("GET", "/y").ok());
  CHECK(f.http.calls.size() == 3);
  CHECK(c.token().value() == "ghs_1");
  f.clock.advance(6 * 60'000);
  f.http.answer(201, json{{"token", "ghs_2"}, {"expires_at", expiry(3'600'000)}}.dump());
  CHECK(c.token().value() == "ghs_2");
  // A token the API stops taking (401) is renewed once.
  f.http.answer(401, R"({"message":"Bad credentials"})");
  f.http.answer(201, json{{"token", "ghs_3"}, {"expires_at", expiry(3'600'000)}}.dump());
  f.http.answer(200, "{}");
  REQUIRE(c.call("GET", "/z").ok());
  CHECK(header(f.http.calls.back(), "Authorization") == "Bearer ghs_3");
  // A refused JWT is unauthenticated, not retried.
  Client fresh = f.client();
  f.http.answer(401, R"({"message":"A JSON web token could not be decoded"})");
  CHECK(fresh.call("GET", "/w").code() == Code::kUnauthenticated);
}

// A proxy or an odd GHES can answer 200 with anything: an answer of the wrong shape is an
// error or no data, never an exception (one thrown on the forge thread stopped reconciliation).
TEST_CASE("github client: answers of the wrong shape are errors or no data, never a throw") {
  Fixture f;
  Client c = f.client();
  for (const char* body : {"", "[]", "\"x\"", "null"}) {
    CAPTURE(body);
    f.http.answer(200, body);
    auto pull = c.pull(5);
    CHECK(pull.code() == Code::kUnavailable);
  }
  f.http.answer(200, R"({"number":"5","draft":"yes","head":{"sha":7},"user":"x","labels":{}})");
  auto odd = c.pull(5);
  REQUIRE(odd.ok());
  CHECK(odd->number == 5);
  CHECK_FALSE(odd->draft);
  CHECK(odd->head.empty());
  f.http.answer(200, R"([1, "x", {"number": 1e30, "head": {"sha": "a"}},
                         {"number": 3, "head": {"sha": "b"}, "draft": true}])");
  auto open = c.open_pulls("master");
  REQUIRE(open.ok());
  REQUIRE(open->first.size() == 1);
  CHECK(open->first[0].number == 3);
  CHECK(open->first[0].draft);
  for (const char* body :
       {R"({"check_runs":"x"})", R"({"check_runs":[{"id":"7"}]})", R"({"check_runs":[3]})", "[]"}) {
    CAPTURE(body);
    f.http.answer(200, body);
    auto run = c.find_check_run(std::string(40, 'a'), "dmzbot");
    REQUIRE(run.ok());
    CHECK_FALSE(*run);
  }
  f.http.answer(200, R"({"check_runs":[{"id":7}]})");
  CHECK(*c.find_check_run(std::string(40, 'a'), "dmzbot") == std::optional<std::int64_t>(7));
}

TEST_CASE("github client: checks() takes a check named in check_sources only from its source") {
  Fixture f;
  Client c = f.client();
  const std::string sha(40, 'c');
  const CheckSources sources{{"build", "github-actions"}, {"ci/test", "jenkins"}};
  // The statuses list, newest first (the combined status names no creator).
  f.http.answer(200, R"js([
      {"context":"build","state":"success","creator":{"login":"mallory"}},
      {"context":"build","state":"pending","creator":{"login":"github-actions[bot]"},
       "description":"running","target_url":"https://ci.example/1"},
      {"context":"lint","state":"failure","creator":{"login":"mallory"}},
      {"context":"build","state":"failure","creator":{"login":"github-actions[bot]"}},
      {"context":"lint","state":"success","creator":{"login":"github-actions[bot]"}},
      {"context":"build","state":"success","creator":"github-actions[bot]"},
      {"context":"build","state":"success"}, 7])js");
  f.http.answer(200, R"js({"check_runs":[
      {"name":"ci/test","status":"completed","conclusion":"success","app":{"slug":"evil"}},
      {"name":"ci/test","status":"completed","conclusion":"success"},
      {"name":"ci/test","status":"completed","conclusion":"failure","app":{"slug":"Jenkins"}},
      {"name":"other","status":"in_progress","app":null}]})js");
  std::vector<std::string> ignored;
  auto checks = c.checks(sha, sources, &ignored);
  REQUIRE(checks.ok());
  std::vector<std::pair<std::string, q::CheckState>> got;
  for (const auto& check : *checks) got.emplace_back(check.context, check.state);
  // build: the newest status of the App's (not mallory's newer success); lint is anyone's, its
  // newest; ci/test: jenkins's run; other: anyone's.
  CHECK(got ==
        std::vector<std::pair<std::string, q::CheckState>>{{"build", q::CheckState::Pending},
                                                           {"lint", q::CheckState::Failure},
                                                           {"ci/test", q::CheckState::Failure},
                                                           {"other", q::CheckState::Pending}});
  CHECK(checks->at(0).description == "running");
  CHECK(checks->at(0).url == "https://ci.example/1");
  const std::string from = " ignored: it came from ";
  CHECK(ignored == std::vector<std::string>{
                       "status 'build' on " + sha + from +
                           "'mallory', and check_sources takes it only from 'github-actions'",
                       "check run 'ci/test' on " + sha + from +
                           "'evil', and check_sources takes it only from 'jenkins'",
                       "check run 'ci/test' on " + sha + from +
                           "no App, and check_sources takes it only from 'jenkins'"});
  REQUIRE(f.http.calls.size() == 2);
  CHECK(f.http.calls[0].url ==
        "https://api.example.com/repos/octo/widgets/commits/" + sha + "/statuses?per_page=100");
  CHECK(f.http.calls[1].url ==
        "https://api.example.com/repos/octo/widgets/commits/" + sha + "/check-runs?per_page=100");
  // A check whose every status came from others is not reported at all (it stays pending).
  f.http.answer(200, R"([{"context":"build","state":"success","creator":{"login":"mallory"}}])");
  f.http.answer(200, R"({"check_runs":[]})");
  checks = c.checks(sha, sources);
  REQUIRE(checks.ok());
  CHECK(checks->empty());
  // Without check_sources: the combined status, every status and run, as before.
  f.http.answer(200, R"({"statuses":[{"context":"build","state":"success"}]})");
  f.http.answer(200, R"({"check_runs":[{"name":"ci/test","status":"queued","app":{"slug":"x"}}]})");
  checks = c.checks(sha);
  REQUIRE(checks.ok());
  CHECK(checks->size() == 2);
  CHECK(f.http.calls[4].url ==
        "https://api.example.com/repos/octo/widgets/commits/" + sha + "/status?per_page=100");
}

// GitHub's times are on its clock: the offset from its Date header puts them on ours.
TEST_CASE("github client: the API's clock offset is read from its Date; its times moved by it") {
  Fixture f;
  Client c = f.client();
  CHECK(c.health().clock_offset == 0);                     // nothing answered yet
  const std::int64_t github_now = f.clock.now() + 30'000;  // GitHub's clock is 30 s ahead
  auto date = [](std::int64_t ms) {
    const std::time_t t = ms / 1000;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[40];
    std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    return std::string(buf);
  };
  f.http.answer(
      200,
      json::array({{{"event", "labeled"},
                    {"label", {{"name", "dmz:merge"}}},
                    {"actor", {{"login", "alice"}}},
                    {"created_at", iso8601_utc(github_now / 1000 - 5)}}})
          .dump(),
      {{"date", date(github_now)}, {"x-ratelimit-remaining", "4000"}, {"etag", "\"v1\""}});
  auto labeled = c.last_labeled(3, "dmz:merge");
  REQUIRE(labeled.ok());
  REQUIRE(*labeled);
  const std::int64_t offset = c.health().clock_offset;
  CHECK(offset > 29'000);
  CHECK(offset <= 31'000);
  // Labelled 5 s before GitHub's now: on our clock, about 5 s before ours.
  CHECK((*labeled)->at == (github_now / 1000 - 5) * 1000 - offset);
  CHECK(std::llabs(f.clock.now() - 5'000 - (*labeled)->at) <= 1'000);
  CHECK(c.health().rate_remaining == 4000);

  // A 304 tells how the API is now: its own rate limit and date, not the cached answer's.
  f.http.answer(304, "", {{"date", date(github_now)}, {"x-ratelimit-remaining", "3999"}});
  auto again = c.last_labeled(3, "dmz:merge");
  REQUIRE(again.ok());
  CHECK(c.health().rate_remaining == 3999);
}

TEST_CASE("github client: small parsers") {
  CHECK(next_link("<https://a/x?page=2>; rel=\"next\", <https://a/x?page=9>; rel=\"last\"") ==
        "https://a/x?page=2");
  CHECK(next_link("<https://a/x?page=1>; rel=\"prev\"") == "");
  CHECK(next_link("") == "");
  CHECK(path_segment("dmz:merge") == "dmz%3Amerge");
  CHECK(path_segment("a b/c") == "a%20b%2Fc");
  CHECK(path_segment("x-y_z.1~") == "x-y_z.1~");
}

}  // namespace
}  // namespace dmz::forges::github

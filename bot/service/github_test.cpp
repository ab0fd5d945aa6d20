// End to end on GitHub: the real service (engine, SQLite store, mirror, HTTP server, the GitHub
// adapter on Beast over TLS) against a fake GitHub on 127.0.0.1 (TLS, a CA made at test time)
// and a real git remote over smart HTTP that demands the token as basic auth and serves
// refs/pull/N/head. Webhooks are built from @octokit/webhooks-examples, signed, and posted to
// POST /webhooks/github; CI reports as commit statuses and as check runs. Every request the
// bot made is checked against GitHub's published REST description.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "base/crypto.hpp"
#include "base/iso_time.hpp"
#include "base/metrics.hpp"
#include "bot/http/http_client.hpp"
#include "bot/http/http_server.hpp"
#include "bot/service/service.hpp"
#include "bot/store/store_test_support.hpp"
#include "forges/github/test_support.hpp"
#include "tests/fake_github.hpp"
#include "tests/git_http.hpp"
#include "tests/ssh_keys.hpp"
#include "tests/support.hpp"
#include "tests/test_ca.hpp"

namespace dmz {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using test::must;
namespace q = queue;

constexpr const char* kRepo = "octo/widgets";
constexpr const char* kToken = "ghp_dmzbot_test_token";
constexpr const char* kSecret = "webhook-secret";

// Polls `done` every 20 ms until it holds or `limit` passes; true if it held.
template <class F>
bool eventually(F done, std::chrono::milliseconds limit = 30s) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return done();
}

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The GitHub side: the fake API and the git remote (a bare repository served over smart HTTP).
struct GitHub {
  test::TempDir dir;
  test::TestCa ca = test::make_test_ca(dir / "ca");
  std::filesystem::path repos = dir / "git";
  std::filesystem::path origin = repos / "widgets.git";
  std::filesystem::path work = dir / "work";
  std::string initial;
  std::unique_ptr<test::FakeGitHub> api;
  std::unique_ptr<test::GitHttpServer> git;

  explicit GitHub(test::FakeGitHub::Options options, const std::string& git_token = kToken) {
    must("git init -q --bare -b master " + origin.string());
    // Every move of master is logged: the test checks each was a fast-forward.
    must("git -C " + origin.string() + " config core.logAllRefUpdates always");
    initial = test::init_repo(work, {{"README", "widgets\n"}, {"shared.txt", "1\n2\n3\n"}});
    must(test::git_env() + "git push -q " + origin.string() + " master", work);
    options.cert = ca.server_cert;
    options.key = ca.server_key;
    options.repo = kRepo;
    options.branch_head = [this](const std::string& branch) {
      auto r = test::run("git rev-parse --verify -q refs/heads/" + branch, origin);
      return r.exit_code == 0 ? r.out.substr(0, 40) : std::string();
    };
    if (options.app_id == 0) options.token = kToken;  // a plain token, for the API and git
    api = std::make_unique<test::FakeGitHub>(options);
    REQUIRE_MESSAGE(api->error().empty(), api->error());
    git = std::make_unique<test::GitHttpServer>(repos, "x-access-token", git_token);
    REQUIRE_MESSAGE(git->error().empty(), git->error());
    api->set_permission("alice", "write");
    api->set_permission("bob", "write");
    api->set_permission("mallory", "read");
    api->add_team_member("octo", "release", "bob");
  }

  // A commit on `branch` (from master) with `files`, pushed to the remote's branch (or only to
  // refs/pull/<n>/head for a fork's PR); returns its sha.
  std::string commit(const std::string& branch, const std::string& file, const std::string& content,
                     int fork_pr = 0, bool from_master = true) {
    if (from_master) {
      must(test::git_env() + "git fetch -q " + origin.string() + " master", work);
      must(test::git_env() + "git checkout -q -B " + branch + " FETCH_HEAD", work);
    } else {
      must(test::git_env() + "git checkout -q " + branch, work);
    }
    std::string sha = test::commit_files(work, {{file, content}}, "change " + file);
    const std::string ref =
        fork_pr ? "refs/pull/" + std::to_string(fork_pr) + "/head" : "refs/heads/" + branch;
    must(test::git_env() + "git push -q -f " + origin.string() + " " + sha + ":" + ref, work);
    return sha;
  }
  // GitHub keeps refs/pull/N/head for every PR, forks' included.
  void pull_ref(int n, const std::string& sha) {
    must("git -C " + origin.string() + " update-ref refs/pull/" + std::to_string(n) + "/head " +
         sha);
  }
  std::string rev(const std::string& ref) { return must("git rev-parse " + ref, origin); }
};

// Webhook payloads, from the corpus's examples with the fields of this repository.
json repo_json() {
  return {{"full_name", kRepo}, {"name", "widgets"}, {"owner", {{"login", "octo"}}}};
}

json pr_payload(const std::string& action, const test::FakeGitHub::Pull& p,
                const std::string& sender, const std::string& fork = "") {
  json e = forges::github::testing::example("pull_request",
                                            [&](const json& x) { return x["action"] == "opened"; });
  e["action"] = action;
  e["number"] = p.number;
  auto& pr = e["pull_request"];
  pr["number"] = p.number;
  pr["title"] = p.title;
  pr["user"]["login"] = p.author;
  pr["draft"] = p.draft;
  pr["head"]["sha"] = p.head_sha;
  pr["head"]["ref"] = p.head_ref;
  pr["head"]["repo"]["full_name"] = fork.empty() ? kRepo : fork;
  pr["base"]["ref"] = "master";
  pr["base"]["repo"]["full_name"] = kRepo;
  e["repository"] = repo_json();
  e["sender"]["login"] = sender;
  return e;
}

// A comment written now (GitHub's second resolution), or at `written` (ms since the epoch).
json comment_payload(int number, const std::string& who, const std::string& body,
                     std::int64_t written = wall_ms()) {
  json e = forges::github::testing::example("issue_comment",
                                            [](const json& x) { return x["action"] == "created"; });
  e["comment"]["created_at"] = iso8601_utc(written / 1000);
  e["issue"]["number"] = number;
  e["issue"]["pull_request"] = {{"url", std::string("https://api.github.com/repos/") + kRepo +
                                            "/pulls/" + std::to_string(number)}};
  e["issue"]["draft"] = false;
  e["comment"]["body"] = body;
  e["comment"]["user"]["login"] = who;
  e["sender"]["login"] = who;
  e["repository"] = repo_json();
  return e;
}

// One run of the bot against the fake GitHub: the service, its HTTP server, and helpers that
// act as people and CI do (on the fake, then by webhook).
struct Bot {
  GitHub& gh;
  test::TempDir data;
  std::unique_ptr<Service> service;
  std::unique_ptr<HttpServer> server;
  std::uint16_t port = 0;
  int deliveries = 0;
  std::set<std::string> lost;  // "event:key" of webhooks that are never sent

  config::Config cfg;
  Service::Options options;

  // `seed` runs on the data directory before the service starts (e.g. to leave what a crash
  // left in the store).
  Bot(GitHub& g, std::function<void(config::Repo&)> tweak = {},
      std::function<void(const std::filesystem::path&)> seed = {})
      : gh(g) {
    if (seed) seed(data.path());
    cfg.data_dir = data.path();
    cfg.server.port = 0;
    cfg.server.read_timeout = 5s;
    cfg.server.public_url = "https://dmz.example";
    config::Repo repo;
    repo.name = kRepo;
    repo.forge = "github";
    repo.remote = gh.git->url("widgets.git");
    repo.required_checks = {"ci/build", "test"};
    repo.check_timeout = 3s;
    repo.network_timeout = 10s;
    config::GitHub settings;
    settings.api_url = gh.api->api_url();
    settings.webhook_secret = config::Secret(kSecret);
    settings.token = config::Secret(kToken);
    settings.merge_masters = {"alice", "octo/release"};
    settings.ca_file = gh.ca.ca_cert;
    repo.github = settings;
    if (tweak) tweak(repo);
    cfg.repos.push_back(repo);
    options.fetch_interval = 200ms;
    options.tick_interval = 50ms;
    options.webhook_fetch_gap = 50ms;
    options.reconcile_interval = 300ms;
    options.api_backoff = 20ms;
    options.api_max_rate_wait = 5s;
    options.api_timeout = 5s;
    start();
  }
  ~Bot() { stop(); }
  void start() {
    auto s = Service::start(cfg, options);
    REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.message()));
    service = std::move(*s);
    server = std::make_unique<HttpServer>(cfg.server, make_api(*service));
    auto p = server->start();
    REQUIRE(p.ok());
    port = *p;
  }
  void stop() {
    if (server) server->stop();
    if (service) service->stop();
    server.reset();
    service.reset();
  }

  // Posts a signed webhook; returns the answer.
  ClientResponse post(const std::string& event, const json& payload, std::string id = "",
                      const std::string& secret = kSecret) {
    if (id.empty()) id = "delivery-" + std::to_string(++deliveries);
    const std::string body = payload.dump();
    auto r = http_request("127.0.0.1", port, "POST", "/webhooks/github", body,
                          {{"X-GitHub-Event", event},
                           {"X-GitHub-Delivery", id},
                           {"Content-Type", "application/json"},
                           {"X-Hub-Signature-256", "sha256=" + to_hex(hmac_sha256(secret, body))}});
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
    return *r;
  }
  void hook(const std::string& event, const json& payload, const std::string& key = "",
            const std::string& id = "") {
    if (!key.empty() && lost.count(event + ":" + key)) return;  // GitHub never sent it
    auto r = post(event, payload, id);
    REQUIRE_MESSAGE(r.status == 202, r.body);
  }

  // ---- people ----
  test::FakeGitHub::Pull open(int n, const std::string& branch, const std::string& head,
                              const std::string& author = "dev", const std::string& fork = "") {
    test::FakeGitHub::Pull p = create_pull(n, branch, head, author);
    hook("pull_request", pr_payload("opened", p, author, fork), "opened#" + std::to_string(n));
    return p;
  }
  // The PR as GitHub holds it (API and refs/pull/N/head), before its webhook is sent.
  test::FakeGitHub::Pull create_pull(int n, const std::string& branch, const std::string& head,
                                     const std::string& author = "dev") {
    test::FakeGitHub::Pull p;
    p.number = n;
    p.title = "Change " + std::to_string(n);
    p.author = author;
    p.head_ref = branch;
    p.head_sha = head;
    gh.api->put_pull(p);
    gh.pull_ref(n, head);
    return p;
  }
  // Started again with dmzbot's merges signed by `key` (ssh).
  void sign_merges_with(const test::SshKey& key) {
    stop();
    cfg.signing.format = "ssh";
    cfg.signing.key = key.private_path;
    start();
  }
  void label(int n, const std::string& who) {
    gh.api->add_label(n, "dmz:merge", who, wall_ms());
    json e = pr_payload("labeled", gh.api->pull(n), who);
    e["label"] = {{"name", "dmz:merge"}};
    hook("pull_request", e, "labeled#" + std::to_string(n));
  }
  void push(int n, const std::string& branch, const std::string& file) {
    auto before = gh.api->pull(n);
    std::string sha = gh.commit(branch, file, "pushed again\n", 0, false);
    gh.api->set_head(n, sha);
    gh.pull_ref(n, sha);
    json e = pr_payload("synchronize", gh.api->pull(n), before.author);
    e["before"] = before.head_sha;
    e["after"] = sha;
    hook("pull_request", e, "synchronize#" + std::to_string(n));
  }
  void comment(int n, const std::string& who, const std::string& body, const std::string& id = "") {
    hook("issue_comment", comment_payload(n, who, body), "", id);
  }

  // ---- CI ----
  void status(const std::string& sha, const std::string& context, const std::string& state,
              const std::string& url = "", const std::string& branch = "dmz") {
    gh.api->add_status({sha, context, state, state + " on CI", url, "ci"});
    json e = forges::github::testing::example("status");
    e["sha"] = sha;
    e["context"] = context;
    e["state"] = state;
    e["description"] = state + " on CI";
    e["target_url"] = url;
    e["branches"] = json::array({{{"name", branch}, {"commit", {{"sha", sha}}}}});
    e["repository"] = repo_json();
    hook("status", e, "status:" + sha.substr(0, 7));
  }
  void check_run(const std::string& sha, const std::string& name, const std::string& conclusion,
                 const std::string& branch = "dmz") {
    auto id =
        gh.api->add_check_run({0, name, sha, "completed", conclusion, conclusion, "", "", "ci"});
    json e = forges::github::testing::example(
        "check_run", [](const json& x) { return x["action"] == "completed"; });
    e["check_run"]["id"] = id;
    e["check_run"]["name"] = name;
    e["check_run"]["head_sha"] = sha;
    e["check_run"]["status"] = "completed";
    e["check_run"]["conclusion"] = conclusion;
    e["check_run"]["check_suite"]["head_branch"] = branch;
    e["check_run"]["html_url"] = "https://ci.example/runs/" + std::to_string(id);
    e["repository"] = repo_json();
    hook("check_run", e, "check_run:" + sha.substr(0, 7));
  }

  // ---- what the bot knows ----
  q::PullRequest pr(int n) {
    auto v = service->pull_now(kRepo, n);
    return v.ok() ? v->pr : q::PullRequest{};
  }
  // What the bot said on PR n, for failure messages.
  std::string comments_of(int n) {
    std::string out;
    for (const auto& c : gh.api->comments(n)) out += "\n  " + c.body;
    return out;
  }
  // The sha of the candidate holding PR n once it is on dmz.
  std::string candidate_of(int n) {
    std::string sha;
    REQUIRE_MESSAGE(eventually([&] {
                      auto st = service->state(kRepo);
                      for (const auto& k : st->train)
                        if (std::find(k.prs.begin(), k.prs.end(), n) != k.prs.end() &&
                            !k.sha.empty() &&
                            (k.status == q::CandidateStatus::InDmz ||
                             k.status == q::CandidateStatus::Building)) {
                          sha = k.sha;
                          return true;
                        }
                      return false;
                    }),
                    "PR #" << n << " never reached dmz; it is " << q::to_string(pr(n).status)
                           << ": " << pr(n).reason << "; its comments:" << comments_of(n));
    return sha;
  }
  void until(int n, q::PrStatus status) {
    REQUIRE_MESSAGE(eventually([&] { return pr(n).status == status; }),
                    "PR #" << n << " is " << q::to_string(pr(n).status) << ", not "
                           << q::to_string(status) << ": " << pr(n).reason);
  }
  // GitHub marks a PR merged (and closed) once master contains its head.
  void merged(int n) {
    until(n, q::PrStatus::Merged);
    gh.api->set_state(n, "closed");
    hook("pull_request", pr_payload("closed", gh.api->pull(n), "dev"));
  }
  void green(int n) {
    std::string sha = candidate_of(n);
    status(sha, "ci/build", "success", "https://ci.example/build/" + sha.substr(0, 7));
    check_run(sha, "test", "success");
    merged(n);
  }
};

// Comment headings ("**Merged**") per PR, and what each PR head shows as the dmzbot status.
struct Outcome {
  std::vector<std::string> master;  // first-parent subjects since the initial commit
  std::map<int, std::string> status;
  std::map<int, std::vector<std::string>> comments;
  std::map<int, std::string> shown;  // the last `dmzbot` commit status on the PR's head
  bool operator==(const Outcome&) const = default;
};

std::string describe(const Outcome& o) {
  std::string out = "\n master:";
  for (const auto& m : o.master) out += " [" + m + "]";
  for (const auto& [n, st] : o.status) {
    out += "\n #" + std::to_string(n) + " " + st + ", shows " +
           (o.shown.count(n) ? o.shown.at(n) : "-") + ", comments:";
    if (o.comments.count(n))
      for (const auto& c : o.comments.at(n)) out += " [" + c + "]";
  }
  return out;
}

std::string heading(const std::string& body) {
  if (body.rfind("**", 0) == 0) return body.substr(2, body.find("**", 2) - 2);
  return body.substr(0, body.find(':'));
}

Outcome outcome_of(Bot& bot, const std::vector<int>& prs) {
  Outcome o;
  std::istringstream log(
      must("git log --first-parent --reverse --format=%s " + bot.gh.initial + "..master",
           bot.gh.origin));
  for (std::string line; std::getline(log, line);) o.master.push_back(line);
  for (int n : prs) {
    auto pr = bot.pr(n);
    o.status[n] =
        std::string(q::to_string(pr.status)) + " " + std::string(q::to_string(pr.reason_code));
    for (const auto& c : bot.gh.api->comments(n)) o.comments[n].push_back(heading(c.body));
    auto head = bot.gh.api->pull(n).head_sha;
    for (const auto& s : bot.gh.api->statuses(head))
      if (s.context == "dmzbot") o.shown[n] = s.state;
  }
  return o;
}

// Every request the bot made exists in GitHub's REST description, with a body that fits.
void check_against_openapi(const test::FakeGitHub& api, const std::filesystem::path& dir) {
  json all = json::array();
  for (const auto& r : api.requests())
    all.push_back({{"method", r.method}, {"target", r.target}, {"body", r.body}});
  // Enough that the check is not vacuous: a run this test reaches asks at least its reads of the
  // open PRs and one write (a slow sanitizer run, whose stop drops queued work, asks fewer).
  REQUIRE(all.size() >= 5);
  test::write_file(dir / "requests.json", all.dump());
  auto script = forges::github::testing::source_dir() / "tests" / "github" / "check_requests.mjs";
  auto r = test::run("node " + test::shell_quote(script.string()) + " " +
                     test::shell_quote((dir / "requests.json").string()));
  INFO(r.out);
  CHECK(r.exit_code == 0);
}

// The check itself refuses what GitHub would: an operation that does not exist, a method a
// path does not take, an unknown query parameter, a query value or a path parameter that does
// not fit its schema, a missing required field, a wrong type.
TEST_CASE("github requests check: requests GitHub does not describe are refused") {
  test::TempDir dir;
  auto script = forges::github::testing::source_dir() / "tests" / "github" / "check_requests.mjs";
  auto check = [&](const json& requests) {
    test::write_file(dir / "r.json", requests.dump());
    return test::run("node " + test::shell_quote(script.string()) + " " +
                     test::shell_quote((dir / "r.json").string()));
  };
  const std::string statuses = "/repos/octo/widgets/statuses/" + std::string(40, 'a');
  auto good =
      check(json::array({{{"method", "POST"},
                          {"target", statuses},
                          {"body", R"({"state":"success","context":"dmzbot"})"}},
                         {{"method", "GET"},
                          {"target", "/repos/octo/widgets/pulls?state=open&per_page=100"},
                          {"body", ""}},
                         {{"method", "GET"},
                          {"target", "/repos/octo/widgets/pulls/7/reviews?per_page=100&page=2"},
                          {"body", ""}}}));
  CHECK_MESSAGE(good.exit_code == 0, good.out);
  for (const json& bad : std::vector<json>{
           {{"method", "GET"}, {"target", "/repos/octo/widgets/no-such-thing"}, {"body", ""}},
           {{"method", "DELETE"}, {"target", "/repos/octo/widgets/pulls"}, {"body", ""}},
           {{"method", "GET"}, {"target", "/repos/octo/widgets/pulls?colour=red"}, {"body", ""}},
           // query values and path parameters that do not fit their schemas
           {{"method", "GET"}, {"target", "/repos/octo/widgets/pulls?state=opened"}, {"body", ""}},
           {{"method", "GET"}, {"target", "/repos/octo/widgets/pulls?per_page=1000"}, {"body", ""}},
           {{"method", "GET"}, {"target", "/repos/octo/widgets/pulls?per_page=ten"}, {"body", ""}},
           {{"method", "GET"}, {"target", "/repos/octo/widgets/pulls/abc"}, {"body", ""}},
           {{"method", "POST"}, {"target", statuses}, {"body", R"({"context":"dmzbot"})"}},
           {{"method", "POST"}, {"target", statuses}, {"body", R"({"state":"green"})"}},
           {{"method", "POST"},
            {"target", "/repos/octo/widgets/issues/1/comments"},
            {"body", R"({"body":42})"}}}) {
    auto r = check(json::array({bad}));
    CHECK_MESSAGE(r.exit_code == 1, bad.dump() << ": " << r.out);
  }
}

// Each move of master (its reflog in the remote, oldest first) was a fast-forward.
void check_fast_forwards(GitHub& gh) {
  std::istringstream log(must("git reflog show --format=%H refs/heads/master", gh.origin));
  std::vector<std::string> shas;
  for (std::string line; std::getline(log, line);) shas.insert(shas.begin(), line);
  REQUIRE(shas.size() >= 2);
  for (std::size_t i = 1; i < shas.size(); ++i)
    CHECK_MESSAGE(
        test::run("git merge-base --is-ancestor " + shas[i - 1] + " " + shas[i], gh.origin)
                .exit_code == 0,
        "master moved from " << shas[i - 1] << " to " << shas[i] << " without a fast-forward");
}

// The scenario of the issue, from first webhook to last landing; with `faults`, the fake
// answers a tenth of the requests 502 and refuses everything for a while as rate limited.
Outcome scenario(bool faults) {
  GitHub gh(test::FakeGitHub::Options{});
  Bot bot(gh);
  if (faults) gh.api->fail_share(0.10, 7);
  bot.lost = {"pull_request:opened#5"};  // and PR 5's CI status, below

  // 1. A PR approved by the merge label, built by CI (a status and a check run), merged.
  std::string h1 = gh.commit("feature/one", "one.txt", "1\n");
  bot.open(1, "feature/one", h1);
  if (faults) gh.api->rate_limit_for(1500);  // while the label's merge master is checked
  bot.label(1, "alice");
  bot.green(1);

  // 2. A PR from a fork (its head only at refs/pull/2/head), approved by a team's member.
  std::string h2 = gh.commit("patch-1", "two.txt", "2\n", 2);
  bot.open(2, "patch-1", h2, "forker", "forker/widgets");
  bot.comment(2, "bob", "Thanks!\n\n@dmzbot merge");
  bot.green(2);

  // 3. Approved, then pushed again: the approval is dropped (with a comment, the label taken
  //    off); approved again, it lands at the new head.
  std::string h3 = gh.commit("feature/three", "three.txt", "3\n");
  bot.open(3, "feature/three", h3);
  bot.label(3, "alice");
  bot.candidate_of(3);  // in the train, CI holding
  bot.push(3, "feature/three", "three-more.txt");
  bot.until(3, q::PrStatus::Open);
  CHECK(bot.pr(3).reason_code == q::Reason::NewPush);
  REQUIRE(eventually([&] { return gh.api->pull(3).labels.empty(); }));
  bot.label(3, "alice");
  bot.green(3);
  CHECK(gh.rev("master^2") == gh.api->pull(3).head_sha);

  // 4. A required check that never reports: the candidate fails after the timeout, naming it.
  std::string h4 = gh.commit("feature/four", "four.txt", "4\n");
  bot.open(4, "feature/four", h4);
  bot.label(4, "alice");
  bot.status(bot.candidate_of(4), "ci/build", "success");
  bot.until(4, q::PrStatus::Failed);
  CHECK(bot.pr(4).reason_code == q::Reason::CheckTimeout);
  CHECK(bot.pr(4).reason.find("check test did not report") != std::string::npos);

  // 5. Its opening webhook and its CI status webhook are lost: reconciliation finds both.
  std::string h5 = gh.commit("feature/five", "five.txt", "5\n");
  bot.open(5, "feature/five", h5);
  REQUIRE_MESSAGE(eventually([&] { return bot.pr(5).number == 5; }), "reconciliation missed #5");
  bot.label(5, "alice");
  std::string k5 = bot.candidate_of(5);
  bot.lost.insert("status:" + k5.substr(0, 7));
  bot.status(k5, "ci/build", "success");  // GitHub has it; dmzbot never hears of it
  bot.check_run(k5, "test", "success");
  bot.merged(5);

  // 6. A command from someone who may not give it; the merge master's delivered twice.
  std::string h6 = gh.commit("feature/six", "six.txt", "6\n");
  bot.open(6, "feature/six", h6);
  bot.comment(6, "mallory", "@dmzbot merge");
  REQUIRE(eventually([&] { return gh.api->comments(6).size() == 1; }));
  CHECK(bot.pr(6).status == q::PrStatus::Open);
  bot.comment(6, "alice", "@dmzbot merge", "twice-6");
  auto again = bot.post("issue_comment", comment_payload(6, "alice", "@dmzbot merge"), "twice-6");
  CHECK(again.status == 202);
  CHECK(json::parse(again.body)["duplicate"] == true);
  bot.green(6);

  // 7. A build that fails: the PR fails with the check and its link.
  std::string h7 = gh.commit("feature/seven", "seven.txt", "7\n");
  bot.open(7, "feature/seven", h7);
  gh.api->set_pull_commits(7, {{h7, "dev"}, {h7, "carol"}});  // carol wrote some of it
  bot.label(7, "alice");
  std::string k7 = bot.candidate_of(7);
  bot.status(k7, "ci/build", "failure", "https://ci.example/build/7");
  bot.until(7, q::PrStatus::Failed);
  CHECK(bot.pr(7).reason_code == q::Reason::BuildFailed);
  // Its commits' other author is told too; its author hears of every comment anyway.
  REQUIRE(eventually([&] { return gh.api->comments(7).size() == 1; }));
  CHECK(gh.api->comments(7)[0].body.find("\n\ncc @carol\n\n") != std::string::npos);

  // 8. The merge label from someone who may not approve: refused, nothing changes.
  std::string h8 = gh.commit("feature/eight", "eight.txt", "8\n");
  bot.open(8, "feature/eight", h8);
  bot.label(8, "mallory");
  REQUIRE(eventually([&] { return gh.api->comments(8).size() == 1; }));
  CHECK(bot.pr(8).status == q::PrStatus::Open);
  CHECK_FALSE(bot.pr(8).approval);

  // The answers settle: every comment and status is out.
  REQUIRE(eventually([&] {
    auto h = bot.service->view_now(kRepo);
    return h.ok() && h->health.outbox_pending == 0;
  }));
  const std::vector<int> prs = {1, 2, 3, 4, 5, 6, 7, 8};
  std::map<int, std::string> want_shown = {{1, "success"}, {2, "success"}, {3, "success"},
                                           {4, "failure"}, {5, "success"}, {6, "success"},
                                           {7, "failure"}};
  REQUIRE_MESSAGE(eventually([&] {
                    auto o = outcome_of(bot, prs);
                    for (const auto& [n, state] : want_shown)
                      if (o.shown[n] != state) return false;
                    return true;
                  }),
                  "the PR heads do not show their outcome");
  bool timeout_shown = false;
  for (const auto& s : gh.api->statuses(h4))
    if (s.context == "dmzbot" && s.description.find("check test did not report") == 0)
      timeout_shown = true;
  CHECK(timeout_shown);

  check_fast_forwards(gh);
  // The contributors' commits are merged as they are, never rewritten.
  for (const auto& [n, sha] : std::map<int, std::string>{{1, h1}, {2, h2}, {5, h5}, {6, h6}})
    CHECK(test::run("git merge-base --is-ancestor " + sha + " master", gh.origin).exit_code == 0);
  // Every request: authenticated with the token, and known to GitHub's REST description.
  for (const auto& r : gh.api->requests())
    if (r.status != 502 && r.status != 403)
      CHECK_MESSAGE(r.auth == "token", r.method << " " << r.target);
  check_against_openapi(*gh.api, bot.data.path());
  // The API's answers are counted on /metrics by status, the 502s among them.
  const std::string scraped = bot.service->metrics();
  CHECK(scraped.find("dmzbot_forge_api_requests_total{forge=\"github\",code=\"201\"}") !=
        std::string::npos);
  if (faults)
    CHECK(scraped.find("dmzbot_forge_api_requests_total{forge=\"github\",code=\"502\"}") !=
          std::string::npos);
  return outcome_of(bot, prs);
}

TEST_CASE("github end to end: labels, commands, forks, pushes, a silent check, lost webhooks") {
  const metrics::Labels accepted{{"forge", "github"}, {"result", "accepted"}};
  const double delivered = metrics::global().value("dmzbot_webhook_deliveries_total", accepted);
  Outcome o = scenario(false);
  CHECK(metrics::global().value("dmzbot_webhook_deliveries_total", accepted) > delivered);
  CHECK(o.master == std::vector<std::string>{"Merge #1 from feature/one: Change 1",
                                             "Merge #2 from patch-1: Change 2",
                                             "Merge #3 from feature/three: Change 3",
                                             "Merge #5 from feature/five: Change 5",
                                             "Merge #6 from feature/six: Change 6"});
  CHECK(o.status == std::map<int, std::string>{{1, "merged merged"},
                                               {2, "merged merged"},
                                               {3, "merged merged"},
                                               {4, "failed check-timeout"},
                                               {5, "merged merged"},
                                               {6, "merged merged"},
                                               {7, "failed build-failed"},
                                               {8, "open "}});
  using V = std::vector<std::string>;
  CHECK(o.comments[1] == V{"Merged"});
  CHECK(o.comments[2] == V{"Merged"});
  CHECK(o.comments[3] == V{"Approval dropped", "Merged"});
  CHECK(o.comments[4] == V{"Check timed out"});
  CHECK(o.comments[5] == V{"Merged"});
  CHECK(o.comments[6] == V{"@mallory", "Merged"});
  CHECK(o.comments[7] == V{"Build failed"});
  CHECK(o.comments[8] == V{"@mallory"});
  CHECK(o.shown.size() == 7);  // #8 was never approved: nothing to show

  // And once more with a tenth of GitHub's answers 502 and a rate-limit window: the same end.
  Outcome faulty = scenario(true);
  CHECK_MESSAGE(faulty == o, "with faults:" << describe(faulty) << "\nwithout:" << describe(o));
}

// The candidate branches on the remote: name -> sha.
std::map<std::string, std::string> candidate_branches(GitHub& gh) {
  std::map<std::string, std::string> out;
  std::istringstream refs(
      must("git for-each-ref --format='%(refname:short) %(objectname)' refs/heads/dmz-queue",
           gh.origin));
  for (std::string name, sha; refs >> name >> sha;) out[name] = sha;
  return out;
}

// A train on GitHub: every candidate is pushed to its own branch (with dmz at the tip, in one
// atomic push) so CI builds each on push; checks are matched by each candidate's sha; a failure
// rebuilds what was behind it on new branches and the obsolete ones are deleted. `try` builds
// on a branch of its own and its result is answered on the PR.
TEST_CASE("github end to end: a train of candidates, each on its own branch; try on its own") {
  GitHub gh(test::FakeGitHub::Options{});
  Bot bot(gh, [](config::Repo& repo) {
    repo.queue.strategy = q::Strategy::Train;
    repo.queue.window_start = 3;
    repo.check_timeout = 60s;  // nothing here waits for a timeout
  });
  for (int n = 1; n <= 3; ++n) {
    const std::string branch = "feature/t" + std::to_string(n);
    bot.open(n, branch, gh.commit(branch, "t" + std::to_string(n) + ".txt", "t\n"));
  }
  for (int n = 1; n <= 3; ++n) bot.label(n, "alice");

  // Three candidates, master+1, master+1+2, master+1+2+3, each on dmz-queue/<id>.
  std::vector<q::Candidate> train;
  REQUIRE_MESSAGE(eventually([&] {
                    train = bot.service->state(kRepo)->train;
                    if (train.size() != 3) return false;
                    for (const auto& k : train)
                      if (k.sha.empty() || k.status == q::CandidateStatus::Merging) return false;
                    return true;
                  }),
                  "the train never held three candidates on the remote");
  auto branch_of = [](const q::Candidate& k) { return "dmz-queue/" + std::to_string(k.id); };
  {
    auto remote = candidate_branches(gh);
    CHECK(remote.size() == 3);
    for (const auto& k : train) CHECK(remote[branch_of(k)] == k.sha);
    CHECK(gh.rev("dmz") == train.back().sha);  // the tip of the train
  }
  const q::Candidate k1 = train[0], k2 = train[1], k3 = train[2];
  CHECK(k2.base == k1.sha);  // each based on the one before
  CHECK(k3.base == k2.sha);
  CHECK(k3.prs == std::vector<int>{3});

  // CI reports on each branch by its sha: the first is green and lands by itself (the others
  // wait for their checks), the second fails.
  bot.status(k1.sha, "ci/build", "success", "", branch_of(k1));
  bot.check_run(k1.sha, "test", "success", branch_of(k1));
  bot.merged(1);
  CHECK(gh.rev("master") == k1.sha);
  bot.status(k2.sha, "ci/build", "failure", "https://ci.example/build/k2", branch_of(k2));
  bot.until(2, q::PrStatus::Failed);
  CHECK(bot.pr(2).reason_code == q::Reason::BuildFailed);
  // PR 3 was innocent: rebuilt on the new master without PR 2, on a new branch; the branches
  // of the candidates that left the train are deleted.
  q::Candidate k4;
  REQUIRE(eventually([&] {
    auto t = bot.service->state(kRepo)->train;
    if (t.size() != 1 || t[0].sha.empty() || t[0].id == k3.id ||
        t[0].status == q::CandidateStatus::Merging)
      return false;
    k4 = t[0];
    return true;
  }));
  CHECK(k4.prs == std::vector<int>{3});
  REQUIRE_MESSAGE(eventually([&] {
                    return candidate_branches(gh) ==
                           std::map<std::string, std::string>{{branch_of(k4), k4.sha}};
                  }),
                  "candidate branches left: " << candidate_branches(gh).size());
  // A late success on the obsolete candidate that held PR 2 lands nothing.
  bot.status(k3.sha, "ci/build", "success", "", branch_of(k3));
  bot.check_run(k3.sha, "test", "success", branch_of(k3));
  bot.status(k4.sha, "ci/build", "success", "", branch_of(k4));
  bot.check_run(k4.sha, "test", "success", branch_of(k4));
  bot.merged(3);
  CHECK(gh.rev("master") == k4.sha);
  CHECK(test::run("git merge-base --is-ancestor " + k3.sha + " master", gh.origin).exit_code != 0);
  check_fast_forwards(gh);
  REQUIRE(eventually([&] { return candidate_branches(gh).empty(); }));

  // try: the PR's head on master, built on its own branch, the result answered on the PR.
  std::string h5 = gh.commit("feature/five", "five.txt", "5\n");
  bot.open(5, "feature/five", h5);
  REQUIRE(eventually([&] { return bot.pr(5).number == 5; }));
  bot.comment(5, "alice", "@dmzbot try");
  std::string tried;
  REQUIRE(eventually([&] {
    auto r = test::run("git rev-parse --verify -q refs/heads/dmz-try/5", gh.origin);
    if (r.exit_code != 0) return false;
    tried = r.out.substr(0, 40);
    return true;
  }));
  CHECK(must("git rev-parse " + tried + "^1", gh.origin).substr(0, 40) == gh.rev("master"));
  CHECK(must("git rev-parse " + tried + "^2", gh.origin).substr(0, 40) == h5);
  bot.status(tried, "ci/build", "success", "https://ci.example/try/5", "dmz-try/5");
  REQUIRE_MESSAGE(
      eventually([&] {
        for (const auto& c : gh.api->comments(5))
          if (c.body.find("try " + tried.substr(0, 7) + ": ci/build success") != std::string::npos)
            return true;
        return false;
      }),
      "no try result on #5:" << bot.comments_of(5));
  CHECK(bot.pr(5).status == q::PrStatus::Open);  // tried, not queued
  CHECK(gh.rev("master") == k4.sha);
  // Closed, the PR's try branch is obsolete and deleted.
  gh.api->set_state(5, "closed");
  bot.hook("pull_request", pr_payload("closed", gh.api->pull(5), "dev"));
  REQUIRE_MESSAGE(
      eventually([&] {
        return test::run("git rev-parse --verify -q refs/heads/dmz-try/5", gh.origin).exit_code !=
               0;
      }),
      "dmz-try/5 was not deleted");
  // The answers settle; every comment names its outcome.
  REQUIRE(eventually([&] {
    auto h = bot.service->view_now(kRepo);
    return h.ok() && h->health.outbox_pending == 0;
  }));
  CHECK(outcome_of(bot, {1, 2, 3}).comments ==
        std::map<int, std::vector<std::string>>{
            {1, {"Merged"}}, {2, {"Build failed"}}, {3, {"Merged"}}});
  // No committed policy, so no rule lets forge reviews count: nobody asked GitHub for them.
  for (const auto& r : gh.api->requests())
    CHECK_MESSAGE(r.target.find("/reviews") == std::string::npos, r.target);
  check_against_openapi(*gh.api, bot.data.path());
}

TEST_CASE(
    "github end to end as a GitHub App: installation tokens for the API and git, check runs") {
  test::TempDir keys;
  must("openssl genrsa -out " + (keys / "app.pem").string() + " 2048 2>/dev/null");
  must("openssl pkey -in " + (keys / "app.pem").string() + " -pubout -out " +
       (keys / "app.pub").string());
  test::FakeGitHub::Options o;
  o.app_id = 77;
  o.installation_id = 88;
  o.app_public_key = test::read_file(keys / "app.pub");
  o.installation_token = "ghs_installation_token_for_tests";
  // Tokens that live no longer than the renewal margin: each next use buys a new one, so the
  // renewal is exercised however fast the test runs.
  o.installation_token_ttl_ms = 5 * 60'000;
  GitHub gh(o, o.installation_token);
  // The App's webhook log, which names every repository of the App: a delivery that never
  // reached dmzbot is asked for again only when it is this repository's.
  gh.api->add_delivery(0, {0, "g-other-repo", "issue_comment", wall_ms(), 0, false, 999});
  gh.api->add_delivery(0, {0, "g-installation", "installation", wall_ms(), 0, false, 0});
  gh.api->add_delivery(0, {0, "g-mine", "ping", wall_ms(), 502, false});
  Bot bot(gh, [&](config::Repo& repo) {
    repo.github->token = config::Secret();
    repo.github->app_id = 77;
    repo.github->installation_id = 88;
    repo.github->private_key = config::Secret(test::read_file(keys / "app.pem"));
    repo.github->bot_name = "dmzbot[bot]";
  });
  std::string h1 = gh.commit("feature/one", "one.txt", "1\n");
  bot.open(1, "feature/one", h1);
  bot.comment(1, "alice", "@dmzbot merge");
  bot.green(1);
  CHECK(gh.rev("master^2") == h1);
  // The PR's head shows one check run `dmzbot`, completed with success.
  REQUIRE(eventually([&] {
    auto runs = gh.api->check_runs(h1);
    return runs.size() == 1 && runs[0].conclusion == "success";
  }));
  auto run = gh.api->check_runs(h1)[0];
  CHECK(run.name == "dmzbot");
  CHECK(run.status == "completed");
  CHECK(run.title.find("merged into master at") == 0);
  CHECK(run.details_url == "https://dmz.example/repos/octo/widgets/pulls/1");
  CHECK(gh.api->statuses(h1).size() == 0);  // an App answers with check runs, not statuses
  // Installation tokens were bought with JWTs and renewed; git used them too.
  CHECK(gh.api->installation_tokens_issued() >= 2);
  std::set<std::string> auths;
  for (const auto& r : gh.api->requests()) auths.insert(r.auth);
  CHECK(auths == std::set<std::string>{"installation", "jwt"});
  bool git_authorized = false;
  for (const auto& r : gh.git->requests()) git_authorized = git_authorized || r.authorized;
  CHECK(git_authorized);
  REQUIRE(eventually([&] { return !gh.api->redeliveries().empty(); }));
  CHECK(gh.api->redeliveries().size() == 1);
  CHECK(gh.api->redeliveries()[0].guid == "g-mine");
  check_against_openapi(*gh.api, bot.data.path());
}

// A hotfix released to production comes back into master as a PR dmzbot opens on GitHub;
// the hand-over is repeated after a stop (here: the stop came right after the push of
// production), and opens nothing twice.
// A public key as the policy lists it: "type base64", without the comment.
std::string ssh_key_line(const test::SshKey& k) {
  return k.public_line.substr(0, k.public_line.find(' ', k.public_line.find(' ') + 1));
}

// From here on gh's commits are signed by alice, and master holds `policy`, in which {alice}
// and {dmzbot} stand for their keys. Returns dmzbot's key, for the merges.
const test::SshKey& commit_policy(GitHub& gh, std::string policy) {
  const auto& alice = test::cached_ssh_key("ed25519", 1);
  const auto& dmzbot = test::cached_ssh_key("ed25519", 2);
  test::configure_ssh_signing(gh.work, alice);
  must(test::git_env() + "git config commit.gpgsign true", gh.work);
  for (const auto& [name, key] : {std::pair{"{alice}", &alice}, std::pair{"{dmzbot}", &dmzbot}})
    for (auto at = policy.find(name); at != std::string::npos; at = policy.find(name))
      policy.replace(at, std::string_view(name).size(), ssh_key_line(*key));
  gh.commit("master", ".dmz/policy.toml", policy);
  return dmzbot;
}

std::string reviews_path(int n) {
  return "/repos/octo/widgets/pulls/" + std::to_string(n) + "/reviews";
}

// How often dmzbot asked GitHub for PR n's reviews.
int review_reads(const GitHub& gh, int n) {
  int reads = 0;
  for (const auto& r : gh.api->requests())
    if (r.path == reviews_path(n)) ++reads;
  return reads;
}

// Whether PR n's reviews were read, then a reconciliation asked for the open PRs, then PR n's
// reviews were read again. The forge thread does one thing at a time: the reconciliation ran
// once the first check (its retries included) was done with.
bool reviews_read_again_after_reconciliation(const GitHub& gh, int n) {
  enum { kNone, kRead, kReconciled, kReadAgain } seen = kNone;
  for (const auto& r : gh.api->requests()) {
    if (r.path == reviews_path(n))
      seen = seen == kNone ? kRead : seen == kReconciled ? kReadAgain : seen;
    else if (seen == kRead && r.method == "GET" && r.path == "/repos/octo/widgets/pulls")
      seen = kReconciled;
  }
  return seen == kReadAgain;
}

// One approval from a maintainer (alice, bob), and a GitHub review is one; dmzbot signs merges.
const char* const kReviewPolicy =
    "version = 1\n"
    "[accounts.alice]\nssh = ['{alice}']\nlogins = [\"alice\"]\n"
    "[accounts.bob]\nlogins = [\"bob\"]\n"
    "[accounts.dmzbot]\nssh = ['{dmzbot}']\n"
    "[groups]\nmaintainers = [\"alice\", \"bob\"]\nbots = [\"dmzbot\"]\n"
    "[[rule]]\nbranch = \"master\"\npaths = [\"**\"]\napprovals = 1\n"
    "approvers = \"maintainers\"\nforge_reviews = true\n"
    "[merges]\nsigners = \"bots\"\n";

TEST_CASE("github: approving reviews count where the committed policy lets forge reviews count") {
  GitHub gh(test::FakeGitHub::Options{});
  // Commits signed by alice, merges by dmzbot; one approval from a maintainer, and a GitHub
  // review is one.
  const auto& dmzbot = commit_policy(gh, kReviewPolicy);
  Bot bot(gh);
  bot.sign_merges_with(dmzbot);
  const std::string old_head = gh.commit("feature/r1", "r1.txt", "one\n");
  bot.open(1, "feature/r1", old_head);
  const std::string h2 = gh.commit("feature/r2", "r2.txt", "two\n");
  bot.open(2, "feature/r2", h2);
  gh.api->add_review(2, "bob", "APPROVED", h2);
  // PR 1: bob approved an older head, then it moved; reviews of the head by nobody in the
  // policy do not count either.
  gh.api->add_review(1, "bob", "APPROVED", old_head);
  bot.push(1, "feature/r1", "r1.txt");
  const std::string h1 = gh.api->pull(1).head_sha;
  gh.api->add_review(1, "stranger", "APPROVED", h1);
  REQUIRE(eventually([&] { return bot.pr(1).head == h1; }));

  bot.label(2, "alice");
  bot.green(2);
  CHECK(bot.pr(2).approvers == std::vector<std::string>{"bob"});

  bot.label(1, "alice");
  bot.until(1, q::PrStatus::Failed);
  CHECK(bot.pr(1).reason_code == q::Reason::PolicyFailed);
  const auto& details = bot.pr(1).details;
  CHECK(std::find(details.begin(), details.end(),
                  "forge review by @stranger does not count: no policy account has that login") !=
        details.end());
  CHECK(review_reads(gh, 1) > 0);
  check_against_openapi(*gh.api, bot.data.path());
}

// PR 1, a commit signed by alice, approved on GitHub by bob (a maintainer under kReviewPolicy)
// and known to `bot`; returns its head.
std::string open_approved_by_bob(GitHub& gh, Bot& bot) {
  const std::string head = gh.commit("feature/r", "r.txt", "r\n");
  bot.open(1, "feature/r", head);
  gh.api->add_review(1, "bob", "APPROVED", head);
  REQUIRE(eventually([&] { return bot.pr(1).head == head; }));
  return head;
}

// Reviews are read when the policy is checked: a review dismissed after its verdict counted it
// takes the PR out of the train to be judged again, here failing for want of an approval.
TEST_CASE("github: an approving review dismissed after the verdict counted it is judged again") {
  GitHub gh(test::FakeGitHub::Options{});
  const auto& dmzbot = commit_policy(gh, kReviewPolicy);
  Bot bot(gh);
  bot.sign_merges_with(dmzbot);
  const std::string head = open_approved_by_bob(gh, bot);
  bot.label(1, "alice");
  bot.candidate_of(1);
  REQUIRE(bot.pr(1).approvers == std::vector<std::string>{"bob"});
  const std::string master = gh.rev("master");
  const int reads = review_reads(gh, 1);

  gh.api->add_review(1, "bob", "DISMISSED", head);  // bob's latest review is no approval now
  json e = forges::github::testing::example(
      "pull_request_review", [](const json& x) { return x["action"] == "dismissed"; });
  e["pull_request"]["number"] = 1;
  e["pull_request"]["base"]["ref"] = "master";
  e["pull_request"]["head"]["sha"] = head;
  e["review"]["user"]["login"] = "bob";
  e["review"]["commit_id"] = head;
  e["sender"]["login"] = "alice";  // who dismissed it
  e["repository"] = repo_json();
  bot.hook("pull_request_review", e);
  bot.until(1, q::PrStatus::Failed);
  CHECK(bot.pr(1).reason_code == q::Reason::PolicyFailed);
  CHECK(review_reads(gh, 1) > reads);
  CHECK(gh.rev("master") == master);
  check_against_openapi(*gh.api, bot.data.path());
}

// GitHub's reviews down when a check asks for them: the verdict waits for the API instead of
// failing the PR for GitHub's outage, and counts the review once the API answers.
TEST_CASE("github: a policy check whose reviews the API cannot give waits for the API") {
  GitHub gh(test::FakeGitHub::Options{});
  const auto& dmzbot = commit_policy(gh, kReviewPolicy);
  Bot bot(gh);
  bot.sign_merges_with(dmzbot);
  const std::string head = open_approved_by_bob(gh, bot);
  gh.api->fail_paths(reviews_path(1));  // that endpoint down from here
  bot.label(1, "alice");
  // The decision in question: the check, its reviews unreadable, is held for the API rather
  // than judged. Its sign: after the reviews were read, a reconciliation ran (on the forge
  // thread, which the check had by then let go of), and the reviews were read again, as a
  // reconciliation does for the checks held for the API.
  REQUIRE(eventually([&] { return reviews_read_again_after_reconciliation(gh, 1); }));
  CHECK(bot.pr(1).status == q::PrStatus::Approved);
  INFO("reason: ", bot.pr(1).reason);
  CHECK(bot.pr(1).reason_code == q::Reason::None);

  gh.api->fail_paths("");  // back: the next reconciliation lets the check go on
  bot.green(1);
  CHECK(bot.pr(1).approvers == std::vector<std::string>{"bob"});
  check_against_openapi(*gh.api, bot.data.path());
}

// While GitHub's API answers nothing, CI results may go unseen (a lost webhook cannot be made up
// by reconciliation): a candidate's check timeout waits for the API instead of failing its PRs.
TEST_CASE("github: an API outage longer than the check timeout fails nobody") {
  GitHub gh(test::FakeGitHub::Options{});
  // Long enough that the API is seen down before the check's deadline even on a slow (sanitizer)
  // run: the candidate must still be in flight when the outage begins.
  static constexpr q::Millis kCheckTimeout = 6'000;
  Bot bot(gh,
          [](config::Repo& r) { r.check_timeout = std::chrono::seconds(kCheckTimeout / 1000); });
  const std::string head = gh.commit("feature/wait", "wait.txt", "wait\n");
  bot.open(1, "feature/wait", head);
  bot.label(1, "alice");
  bot.candidate_of(1);
  gh.api->fail_share(1.0);  // every API request 502 from here
  auto paused = [&] {
    auto st = bot.service->state(kRepo);
    return st->train.empty() ? q::Millis{0} : st->train.front().paused_ms;
  };
  REQUIRE(eventually([&] { return !bot.service->view_now(kRepo)->health.api.ok; }));
  const q::Millis down_seen = wall_ms();  // the service's clock is the wall clock too
  // The decision in question is that of a tick past the check's deadline (from the push), once
  // the outage has lasted longer than the check timeout. Ticks start the fetches,
  // one at a time, each after the tick was applied: a fetch that ends after one that ended past
  // both was started, and its tick applied, past both.
  const auto before = bot.service->state(kRepo);
  REQUIRE(before);
  REQUIRE(!before->train.empty());
  const q::Millis past =
      std::max(before->train.front().pushed_at + before->train.front().paused_ms + kCheckTimeout,
               down_seen + kCheckTimeout);
  auto last_fetch = [&] {
    auto v = bot.service->view_now(kRepo);
    return v ? std::max(v->health.last_fetch_ok, v->health.last_fetch_failed) : q::Millis{0};
  };
  q::Millis ended_past = 0;  // the end of a fetch past both
  REQUIRE(eventually([&] {
    const q::Millis at = last_fetch();
    if (ended_past == 0 && at >= past) ended_past = at;
    return ended_past != 0 && at > ended_past;
  }));
  INFO("reason: ", bot.pr(1).reason);
  CHECK(bot.pr(1).status == q::PrStatus::InDmz);

  // Back up: the outage is credited to the candidate's deadline (once a minute while it
  // lasts, and when it ends).
  gh.api->fail_share(0);
  REQUIRE(eventually([&] { return paused() >= 2000; }));
  CHECK(bot.pr(1).status == q::PrStatus::InDmz);
  bot.green(1);
}

// The fetches of the test repository so far: the process's count, every test's add to it.
double fetch_count() {
  return metrics::global().value("dmzbot_git_operation_seconds",
                                 {{"repo", kRepo}, {"op", "fetch"}});
}

// Starts `bot` again with no periodic fetch or reconciliation, so that only webhooks fetch, and
// waits for the first fetch of the run.
void only_webhooks_fetch(Bot& bot, std::chrono::milliseconds gap) {
  bot.stop();
  bot.options.fetch_interval = std::chrono::hours(1);
  bot.options.reconcile_interval = std::chrono::hours(1);
  bot.options.webhook_fetch_gap = gap;
  const double before = fetch_count();
  bot.start();
  REQUIRE(eventually([&] { return fetch_count() >= before + 1; }));
}

// A second connection to the bot's database, as an operator's sqlite3 shell would be.
struct SideConnection {
  sqlite3* db = nullptr;
  explicit SideConnection(const Bot& bot) {
    REQUIRE(sqlite3_open((bot.data.path() / "dmzbot.db").c_str(), &db) == SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);  // the service may be writing at this moment
  }
  ~SideConnection() { sqlite3_close(db); }
  void exec(const std::string& sql) {
    REQUIRE_MESSAGE(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK,
                    sqlite3_errmsg(db));
  }
};

// The delivery is acknowledged once recorded (in its own database); the events it carries
// are applied later, and wait for the main database when it cannot be written.
TEST_CASE("github: a webhook's events the store cannot save now are applied once it can") {
  GitHub gh(test::FakeGitHub::Options{});
  Bot bot(gh);
  bot.options.store.busy_timeout_ms = 100;
  only_webhooks_fetch(bot, 50ms);  // no reconciliation to make up for a lost event
  const std::string head = gh.commit("feature/late", "late.txt", "late\n");
  sqlite3* other = nullptr;
  REQUIRE(sqlite3_open((bot.data.path() / "dmzbot.db").c_str(), &other) == SQLITE_OK);
  sqlite3_busy_timeout(other, 5000);
  REQUIRE(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
  bot.open(1, "feature/late", head);  // answered 202
  std::this_thread::sleep_for(1s);
  CHECK(bot.pr(1).number == 0);  // not known yet
  sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(other);
  // Before: the PrOpened was refused, logged and lost with its delivery marked handled.
  CHECK(eventually([&] { return bot.pr(1).head == head; }));
}

// Beyond the bound of events waiting for the store, a delivery's event is not held: its delivery
// waits, unhandled, for the next start, and stops counting against the deliveries held in
// memory (before, it counted for good, and enough of them refused every webhook 503).
TEST_CASE("github: a webhook beyond the parked bound waits for the next start, uncounted") {
  GitHub gh(test::FakeGitHub::Options{});
  Bot bot(gh);
  bot.options.store.busy_timeout_ms = 100;
  bot.options.max_parked_events = 1;
  bot.options.max_unfinished_deliveries = 2;
  only_webhooks_fetch(bot, 50ms);
  std::vector<std::string> heads;
  for (int n = 1; n <= 3; ++n)
    heads.push_back(gh.commit("feature/" + std::to_string(n), std::to_string(n) + ".txt", "x\n"));
  {
    SideConnection other(bot);
    other.exec("BEGIN IMMEDIATE");
    bot.open(1, "feature/1", heads[0]);  // parked
    bot.open(2, "feature/2", heads[1]);  // beyond the bound: dropped until the next start
    CHECK(eventually([&] {
      return bot.service->metrics().find("\ndmzbot_webhook_deliveries_unfinished 1\n") !=
             std::string::npos;
    }));
    bot.open(3, "feature/3", heads[2]);  // room for it: not refused 503
    other.exec("ROLLBACK");
  }
  REQUIRE(eventually([&] { return bot.pr(1).head == heads[0]; }));
  CHECK(bot.pr(2).number == 0);
  bot.stop();
  bot.start();
  CHECK(eventually([&] { return bot.pr(2).head == heads[1] && bot.pr(3).head == heads[2]; }));
}

// A merge master's command is not lost when the database is locked: it waits for the store,
// and its delivery is marked handled only once it was applied, so that a stop meanwhile hands
// it to the next start. (Reconciliation cannot bring a comment back, except by asking GitHub
// to deliver it again, with hook_id: below.)
TEST_CASE("github: a command the store cannot save now is applied once it can, or after a stop") {
  GitHub gh(test::FakeGitHub::Options{});
  Bot bot(gh, [](config::Repo& r) { r.check_timeout = 600s; });
  bot.options.store.busy_timeout_ms = 100;
  only_webhooks_fetch(bot, 50ms);
  const std::string one = gh.commit("feature/one", "one.txt", "one\n");
  const std::string two = gh.commit("feature/two", "two.txt", "two\n");
  bot.open(1, "feature/one", one);
  bot.open(2, "feature/two", two);
  REQUIRE(eventually([&] { return bot.pr(1).head == one && bot.pr(2).head == two; }));
  auto approved = [&](int n) { return bot.pr(n).approval.has_value(); };
  sqlite3* other = nullptr;
  REQUIRE(sqlite3_open((bot.data.path() / "dmzbot.db").c_str(), &other) == SQLITE_OK);
  sqlite3_busy_timeout(other, 5000);
  auto lock = [&] {
    REQUIRE(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
  };
  auto unlock = [&] { sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr); };

  lock();
  bot.comment(1, "alice", "@dmzbot merge");
  std::this_thread::sleep_for(1s);
  CHECK_FALSE(approved(1));
  unlock();
  // Before: refused as unavailable, the refusal's answer refused too, the delivery handled.
  CHECK(eventually([&] { return approved(1); }));

  lock();
  bot.comment(2, "alice", "@dmzbot merge");
  std::this_thread::sleep_for(1s);
  bot.stop();
  unlock();
  sqlite3_close(other);
  bot.start();
  REQUIRE(eventually([&] { return approved(2); }));
  CHECK(bot.pr(2).approval->sha == two);
}

// A refused command's answer is part of its delivery: while the store cannot save the answer,
// the delivery is not marked handled, so a stop meanwhile leaves the answer to the next start
// (before, the delivery was marked handled with its answer held in memory, and lost).
TEST_CASE("github: a refusal the store cannot save now is answered after a stop") {
  GitHub gh(test::FakeGitHub::Options{});
  Bot bot(gh);
  bot.options.store.busy_timeout_ms = 100;
  only_webhooks_fetch(bot, 50ms);
  const std::string one = gh.commit("feature/one", "one.txt", "one\n");
  bot.open(1, "feature/one", one);
  REQUIRE(eventually([&] { return bot.pr(1).head == one; }));
  {
    SideConnection other(bot);
    other.exec("BEGIN IMMEDIATE");
    bot.comment(1, "mallory", "@dmzbot merge");  // not a merge master
    std::this_thread::sleep_for(1s);
    bot.stop();
    other.exec("ROLLBACK");
  }
  CHECK(gh.api->comments(1).empty());
  bot.start();
  REQUIRE(eventually([&] { return gh.api->comments(1).size() == 1; }));
  CHECK(gh.api->comments(1)[0].body.find("@mallory: only merge masters may merge") !=
        std::string::npos);
  CHECK_FALSE(bot.pr(1).approval.has_value());
}

// A webhook that names only commits the mirror has starts no git process; one that names a
// new head, or a push, fetches.
TEST_CASE("github: a label on a head the mirror holds fetches nothing; new heads are fetched") {
  GitHub gh(test::FakeGitHub::Options{});
  Bot bot(gh);
  only_webhooks_fetch(bot, 50ms);
  const double base = fetch_count();

  const std::string head = gh.commit("feature/one", "one.txt", "one\n");
  bot.open(1, "feature/one", head);  // a head the mirror has never seen
  REQUIRE(eventually([&] { return fetch_count() >= base + 1; }));
  REQUIRE(eventually([&] { return bot.pr(1).head == head; }));
  double seen = fetch_count();
  bot.label(1, "alice");  // the same head: in the mirror since the fetch
  const std::string candidate = bot.candidate_of(1);
  CHECK(fetch_count() == seen);
  CHECK(bot.pr(1).approval->sha == head);

  bot.push(1, "feature/one", "one.txt");  // a push always fetches (a rewrite shows only so)
  REQUIRE(eventually([&] { return fetch_count() >= seen + 1; }));
  CHECK(eventually([&] { return bot.pr(1).head == gh.api->pull(1).head_sha; }));
}

TEST_CASE("github: a burst of webhooks naming new heads shares a fetch after the first") {
  GitHub gh(test::FakeGitHub::Options{});
  Bot bot(gh);
  only_webhooks_fetch(bot, 2s);
  const double seen = fetch_count();
  std::vector<std::string> heads;
  for (int n = 1; n <= 6; ++n) {  // each a head the remote had not before
    const std::string branch = "feature/" + std::to_string(n);
    heads.push_back(gh.commit(branch, std::to_string(n) + ".txt", "x\n"));
    bot.open(n, branch, heads.back());
    std::this_thread::sleep_for(80ms);  // time for a fetch of its own without the gap
  }
  // The first webhook's fetch at once, then one for the five that came within the gap.
  REQUIRE(eventually([&] { return fetch_count() >= seen + 2; }));
  std::this_thread::sleep_for(300ms);  // a third fetch, if one were coming
  CHECK(fetch_count() == seen + 2);
  for (int n = 1; n <= 6; ++n) CHECK(bot.pr(n).head == heads[n - 1]);
}

// A head named while the remote cannot be fetched is judged once it can: before, its policy
// check failed on the missing commits and the PR with it, for the remote's outage.
TEST_CASE("github: a policy check of a head the remote could not give waits for the remote") {
  GitHub gh(test::FakeGitHub::Options{});
  // Commits signed by alice, merges by dmzbot.
  const auto& dmzbot = commit_policy(
      gh,
      "version = 1\n[accounts.alice]\nssh = ['{alice}']\n[accounts.dmzbot]\nssh = ['{dmzbot}']\n"
      "[groups]\nbots = [\"dmzbot\"]\n[[rule]]\nbranch = \"master\"\n"
      "[merges]\nsigners = \"bots\"\n");
  Bot bot(gh);
  bot.sign_merges_with(dmzbot);
  only_webhooks_fetch(bot, 50ms);

  const std::string head = gh.commit("feature/late", "late.txt", "late\n");
  test::FakeGitHub::Pull p;
  p.number = 1;
  p.title = "Late";
  p.author = "dev";
  p.head_ref = "feature/late";
  p.head_sha = head;
  gh.api->put_pull(p);
  gh.pull_ref(1, head);
  const auto away = gh.origin.parent_path() / "away.git";
  std::filesystem::rename(gh.origin, away);  // the remote is out of reach from here
  const double before = fetch_count();
  bot.hook("pull_request", pr_payload("opened", p, "dev"), "opened#1");
  bot.label(1, "alice");
  // The fetch they asked for failed (one, or one each when the label came after the first had
  // started: a queued fetch covers the webhooks behind it).
  REQUIRE(eventually([&] { return fetch_count() >= before + 1; }));
  REQUIRE(eventually([&] { return bot.pr(1).approval.has_value(); }));
  std::this_thread::sleep_for(500ms);  // time enough for a verdict, had there been one
  CHECK(bot.pr(1).status == q::PrStatus::Approved);
  INFO("reason: ", bot.pr(1).reason);
  CHECK(bot.pr(1).reason_code == q::Reason::None);

  std::filesystem::rename(away, gh.origin);  // back: the next fetch (a new PR's) brings the head
  bot.open(2, "feature/other", gh.commit("feature/other", "other.txt", "other\n"));
  bot.green(1);
  CHECK(test::run("git merge-base --is-ancestor " + head + " master", gh.origin).exit_code == 0);
}

TEST_CASE("github: a hotfix in production comes back as a pull request dmzbot opens, once") {
  GitHub gh({});
  std::string fix = gh.commit("hotfix/crash", "fix.txt", "no more crash\n");
  must("git -C " + gh.origin.string() + " update-ref refs/heads/production " + fix);
  auto seed = [&](const std::filesystem::path& data) {
    record_released_hotfix(data / "dmzbot.db", kRepo, "v1.0.1", "hotfix/crash", fix, gh.initial);
  };
  auto opened = [&] {
    int n = 0;
    for (const auto& r : gh.api->requests())
      if (r.method == "POST" && r.path == "/repos/octo/widgets/pulls") ++n;
    return n;
  };
  // Nothing here waits for a check's timeout; a restart on a slow run must not meet one.
  Bot bot(
      gh, [](config::Repo& r) { r.check_timeout = 600s; }, seed);
  REQUIRE(eventually([&] { return gh.api->pulls().size() == 1; }));
  const auto pull = gh.api->pulls()[0];
  CHECK(pull.head_ref == "hotfix/crash");
  CHECK(pull.head_sha == fix);
  CHECK(pull.base == "master");
  CHECK(pull.title == "Bring hotfix v1.0.1 back into master");
  // Queued on the release signers' behalf at the released commit, built on dmz.
  auto queued = [&] {
    auto state = bot.service->state(kRepo);
    if (!state || !state->prs.count(pull.number)) return std::optional<q::PullRequest>();
    const auto& pr = state->prs.at(pull.number);
    return pr.approval && pr.candidate ? std::optional(pr) : std::nullopt;
  };
  REQUIRE(eventually([&] { return queued().has_value(); }));
  const q::Approval approval = *queued()->approval;
  CHECK(approval.sha == fix);
  CHECK(approval.approver == "dmzbot (release v1.0.1 signed by releng)");
  CHECK(opened() == 1);
  // Started again before it landed: found, not opened or approved again.
  bot.stop();
  bot.start();
  REQUIRE(eventually([&] { return queued().has_value(); }));
  std::this_thread::sleep_for(500ms);  // reconciliations and fetches: none opens it again
  CHECK(queued()->approval == approval);
  bot.green(pull.number);
  CHECK(test::run("git merge-base --is-ancestor " + fix + " master", gh.origin).exit_code == 0);
  CHECK(opened() == 1);
  CHECK(gh.api->pulls().size() == 1);
  check_against_openapi(*gh.api, bot.data.path());
}

// The headers GitHub signs a delivery with, as the store keeps them (JSON).
std::string stored_headers(const std::string& event, const std::string& id,
                           const std::string& body) {
  return json{{"content-type", "application/json"},
              {"x-github-event", event},
              {"x-github-delivery", id},
              {"x-hub-signature-256", "sha256=" + to_hex(hmac_sha256(kSecret, body))}}
      .dump();
}

// How often dmzbot asked GitHub whether `login` may approve.
int permission_checks(const GitHub& gh, const std::string& login) {
  int n = 0;
  for (const auto& r : gh.api->requests())
    if (r.path == "/repos/octo/widgets/collaborators/" + login + "/permission") ++n;
  return n;
}

// A delivery answered 202 right before a crash (recorded, not handled) is handled at the next
// start without GitHub sending it again; once handled, it is not handled again.
TEST_CASE("github: a webhook answered just before a crash is handled at the next start, once") {
  GitHub gh({});
  Bot bot(gh, [](config::Repo& r) { r.check_timeout = 600s; });  // the train waits meanwhile
  const std::string h1 = gh.commit("feature/one", "one.txt", "1\n");
  bot.open(1, "feature/one", h1);
  REQUIRE(eventually([&] { return bot.pr(1).head == h1; }));
  bot.stop();
  // What the crash left: the `@dmzbot merge` of a merge master, recorded with its request.
  const json merge = comment_payload(1, "alice", "@dmzbot merge");
  const std::string body = merge.dump();
  auto db = deliveries_file(bot.data.path() / "dmzbot.db");  // the deliveries' own file
  SUBCASE("in the deliveries' own file") {}
  SUBCASE("in the main database, where a dmzbot before the deliveries' own file kept them") {
    db = bot.data.path() / "dmzbot.db";
  }
  {
    auto store = open_sqlite_store(db);
    REQUIRE(store.ok());
    REQUIRE((*store)
                ->record_deliveries({{"github:crashed-1", wall_ms(), "github",
                                      stored_headers("issue_comment", "crashed-1", body), body}})
                .ok());
  }
  const int sent = bot.deliveries;
  bot.start();
  REQUIRE_MESSAGE(
      eventually([&] {
        auto pr = bot.pr(1);
        return pr.approval && pr.approval->approver == "alice" && pr.approval->sha == h1;
      }),
      "PR #1 is " << q::to_string(bot.pr(1).status) << "; its comments:" << bot.comments_of(1));
  CHECK(bot.deliveries == sent);       // GitHub sent nothing again
  auto store = open_sqlite_store(db);  // a second connection, as an operator's
  REQUIRE(store.ok());
  REQUIRE(eventually([&] { return (*store)->unhandled_deliveries(0, 10)->empty(); }));
  auto inbox = open_sqlite_store(deliveries_file(bot.data.path() / "dmzbot.db"));
  REQUIRE(inbox.ok());
  REQUIRE(eventually([&] { return (*inbox)->unhandled_deliveries(0, 10)->empty(); }));
  // GitHub's redelivery of it is a duplicate.
  auto again = bot.post("issue_comment", merge, "crashed-1");
  CHECK(again.status == 202);
  CHECK(json::parse(again.body)["duplicate"] == true);

  // Cancelled since; a restart must not replay the handled merge (it would queue #1 again).
  bot.comment(1, "alice", "@dmzbot cancel");
  bot.until(1, q::PrStatus::Cancelled);
  bot.stop();
  bot.start();
  const int alice_checks = permission_checks(gh, "alice");
  // A delivery after the restart is handled after any replay: once its answer is on the PR,
  // a replayed merge would have been applied.
  bot.comment(1, "mallory", "@dmzbot merge");
  REQUIRE(eventually([&] {
    for (const auto& c : gh.api->comments(1))
      if (c.body.find("@mallory") != std::string::npos) return true;
    return false;
  }));
  CHECK(bot.pr(1).status == q::PrStatus::Cancelled);
  CHECK(permission_checks(gh, "alice") == alice_checks);
  CHECK((*store)->unhandled_deliveries(0, 10)->empty());
}

// A crash after a delivery's effects but before it was marked handled: it is handled again at
// the next start, and the engine takes the second approval of the same head for a duplicate.
// A webhook GitHub could not deliver (dmzbot was down: a deploy, a crash) is asked for again by
// the next start's reconciliation, and taken once GitHub delivers it again: a comment's command
// has no other way back. Deliveries dmzbot took, or refused, are not asked for.
TEST_CASE("github: webhooks that never reached dmzbot are asked for again and taken once") {
  GitHub gh({});
  constexpr std::int64_t kHook = 77;
  Bot bot(gh, [](config::Repo& r) { r.github->hook_id = kHook; });
  // GitHub's log of the hook: each attempt with what dmzbot answered (0: no answer).
  auto logged = [&](const std::string& guid, const std::string& event, int code) {
    gh.api->add_delivery(kHook, {0, guid, event, wall_ms(), code, false});
  };
  const std::string head = gh.commit("feature/late", "late.txt", "late\n");
  bot.open(1, "feature/late", head);
  logged("g-opened", "pull_request", 202);
  REQUIRE(eventually([&] { return bot.pr(1).head == head; }));
  logged("g-refused", "issue_comment", 400);

  bot.stop();
  const json merge = comment_payload(1, "alice", "@dmzbot merge");
  logged("g-merge", "issue_comment", 0);
  const metrics::Labels repo{{"repo", kRepo}};
  const double asked_before = metrics::global().value("dmzbot_webhook_redeliveries_total", repo);
  bot.start();
  REQUIRE(eventually([&] { return !gh.api->redeliveries().empty(); }));
  CHECK_FALSE(bot.pr(1).approval.has_value());
  CHECK(gh.api->redeliveries()[0].guid == "g-merge");
  // GitHub delivers it again, with its guid.
  REQUIRE(bot.post("issue_comment", merge, "g-merge").status == 202);
  logged("g-merge", "issue_comment", 202);
  REQUIRE(eventually([&] { return bot.pr(1).approval.has_value(); }));
  CHECK(bot.pr(1).approval->sha == head);
  // Later reconciliations (every 300 ms here) ask for nothing more.
  std::this_thread::sleep_for(1s);
  CHECK(gh.api->redeliveries().size() == 1);
  CHECK(metrics::global().value("dmzbot_webhook_redeliveries_total", repo) == asked_before + 1);
  check_against_openapi(*gh.api, bot.data.path());
}

// A command that reaches dmzbot late (GitHub delivered it again after dmzbot was down) is not
// applied over a gesture a merge master made after it (a command, the merge label taken off):
// an old merge must not queue a PR that was cancelled since. A late command nobody overtook is
// applied.
TEST_CASE("github: a late command stands only if no later command was written") {
  GitHub gh({});
  Bot bot(gh);
  std::map<int, std::string> heads;
  for (int n : {1, 2, 3}) {
    const std::string branch = "feature/" + std::to_string(n);
    heads[n] = gh.commit(branch, branch.substr(8) + ".txt", "x\n");
    bot.open(n, branch, heads[n]);
  }
  REQUIRE(eventually([&] {
    return bot.pr(1).head == heads[1] && bot.pr(2).head == heads[2] && bot.pr(3).head == heads[3];
  }));
  bot.stop();  // down: what alice writes now reaches it late
  bot.options.label_skew = 100ms;
  // Late by 1.6 s at least, less up to half a second of the clock offset read from GitHub's
  // Date (whole seconds).
  bot.options.late_command = 500ms;
  std::this_thread::sleep_for(2200ms);  // whole seconds (GitHub's) after the heads were known
  const std::int64_t merge_written = wall_ms() / 1000 * 1000;
  for (int n : {1, 2, 3}) gh.api->add_comment(n, "alice", "@dmzbot merge", merge_written);
  std::this_thread::sleep_for(1600ms);
  const std::int64_t cancel_written = wall_ms() / 1000 * 1000;
  gh.api->add_comment(1, "alice", "@dmzbot cancel", cancel_written);
  gh.api->remove_label(3, "dmz:merge", "alice", cancel_written);
  bot.start();
  auto answered = [&](int n, const std::string& words) {
    for (const auto& c : gh.api->comments(n))
      if (c.author == "dmzbot" && c.body.find(words) != std::string::npos) return true;
    return false;
  };
  bot.post("issue_comment", comment_payload(1, "alice", "@dmzbot cancel", cancel_written));
  REQUIRE(eventually([&] { return answered(1, "is not queued"); }));
  // GitHub delivers the merges again.
  for (int n : {1, 2, 3})
    bot.post("issue_comment", comment_payload(n, "alice", "@dmzbot merge", merge_written),
             "m" + std::to_string(n));
  REQUIRE(eventually([&] { return bot.pr(2).approval.has_value(); }));
  CHECK(bot.pr(2).approval->sha == heads[2]);
  REQUIRE(
      eventually([&] { return answered(1, "a later command on #1 stands: `cancel` by @alice"); }));
  CHECK(answered(1, "@alice: merge refused: it reached dmzbot "));
  CHECK(answered(1, " s after it was written, and a later command"));
  REQUIRE(eventually([&] {
    return answered(3, "a later command on #3 stands: `remove the dmz:merge label` by @alice");
  }));
  for (int n : {1, 3}) {
    CHECK_FALSE(bot.pr(n).approval.has_value());
    CHECK(bot.pr(n).status == q::PrStatus::Open);
  }
  CHECK_FALSE(answered(2, "a later command"));
  check_against_openapi(*gh.api, bot.data.path());
}

// GitHub does not deliver webhooks in order: a merge label added and taken off again may arrive
// the other way round, or one may come again from the delivery log after the other. A label
// gesture stands unless a later one by a merge master (or dmzbot) overtook it, or the PR was
// closed since; nobody is answered for a gesture a later one overtook.
TEST_CASE("github: merge-label webhooks out of order: the later gesture stands") {
  GitHub gh({});
  Bot bot(gh);
  std::map<int, std::string> heads;
  for (int n : {1, 2, 3, 4, 5}) {
    const std::string branch = "feature/" + std::to_string(n);
    heads[n] = gh.commit(branch, branch.substr(8) + ".txt", "x\n");
    bot.open(n, branch, heads[n]);
  }
  REQUIRE(eventually([&] {
    for (int n : {1, 2, 3, 4, 5})
      if (bot.pr(n).head != heads[n]) return false;
    return true;
  }));
  auto label_hook = [&](int n, const std::string& action, const std::string& who = "alice") {
    json e = pr_payload(action, gh.api->pull(n), who);
    e["label"] = {{"name", "dmz:merge"}};
    bot.post("pull_request", e);
  };
  for (int n : {2, 4}) bot.label(n, "alice");
  REQUIRE(eventually([&] { return bot.pr(2).approval && bot.pr(4).approval; }));
  // What people do next, in whole seconds (GitHub's) after those labels.
  const std::int64_t t = (wall_ms() / 1000 + 2) * 1000;
  // #1: alice adds the label and takes it off; the removal arrives first.
  gh.api->add_label(1, "dmz:merge", "alice", t);
  gh.api->remove_label(1, "dmz:merge", "alice", t + 1'000);
  label_hook(1, "unlabeled");
  label_hook(1, "labeled");
  // #2: queued by its label; alice takes it off and puts it back; the removal comes last.
  gh.api->remove_label(2, "dmz:merge", "alice", t + 1'000);
  gh.api->add_label(2, "dmz:merge", "alice", t + 2'000);
  label_hook(2, "labeled");
  label_hook(2, "unlabeled");
  // #3: two minutes ago alice labelled it, then wrote `cancel`; both reach dmzbot only now
  // (late), the cancel first, which finds nothing queued.
  const std::int64_t ago = (wall_ms() / 1000 - 120) * 1000;
  gh.api->add_label(3, "dmz:merge", "alice", ago);
  gh.api->add_comment(3, "alice", "@dmzbot cancel", ago + 1'000);
  bot.post("issue_comment", comment_payload(3, "alice", "@dmzbot cancel", ago + 1'000));
  label_hook(3, "labeled");
  // #4: queued; alice takes the label off and mallory, who may label but is no merge master,
  // puts it back before alice's removal is handled. Alice's removal stands.
  gh.api->remove_label(4, "dmz:merge", "alice", t + 1'000);
  gh.api->add_label(4, "dmz:merge", "mallory", t + 2'000);
  label_hook(4, "labeled", "mallory");
  label_hook(4, "unlabeled");
  // #5: labeled, then closed; the close comes first.
  gh.api->add_label(5, "dmz:merge", "alice", t);
  json labeled5 = pr_payload("labeled", gh.api->pull(5), "alice");  // as it was then: open
  labeled5["label"] = {{"name", "dmz:merge"}};
  gh.api->set_state(5, "closed");
  bot.post("pull_request", pr_payload("closed", gh.api->pull(5), "alice"));
  REQUIRE(eventually([&] { return bot.pr(5).status == q::PrStatus::Cancelled; }));
  bot.post("pull_request", labeled5);
  // #6: GitHub cannot show the PR (404): an addition is not applied (reconciliation reads the
  // label back by its event), never guessed.
  test::FakeGitHub::Pull ghost;
  ghost.number = 6;
  ghost.title = "Change 6";
  ghost.author = "dev";
  ghost.head_ref = "feature/6";
  ghost.head_sha = heads[1];
  bot.post("pull_request", pr_payload("opened", ghost, "dev"));
  json e = pr_payload("labeled", ghost, "alice");
  e["label"] = {{"name", "dmz:merge"}};
  bot.post("pull_request", e);
  // Follow-ups are handled in order: once these are, the label webhooks before them were.
  for (int n : {1, 2, 3, 4, 6})
    bot.post("issue_comment", comment_payload(n, "alice", "@dmzbot priority 4"));
  REQUIRE(eventually([&] {
    for (int n : {1, 2, 3, 4, 6})
      if (bot.pr(n).priority != 4) return false;
    return true;
  }));
  for (int n : {1, 3, 6}) {
    INFO("#" << n);
    CHECK_FALSE(bot.pr(n).approval.has_value());
  }
  REQUIRE(bot.pr(2).approval.has_value());
  CHECK(bot.pr(2).approval->sha == heads[2]);
  // Not cancelled (it may have failed since, its check never reporting within this test's
  // short timeout on a slow build).
  CHECK(bot.pr(2).status != q::PrStatus::Cancelled);
  CHECK(bot.pr(4).status == q::PrStatus::Cancelled);
  CHECK(bot.pr(5).status == q::PrStatus::Cancelled);  // closed, not made known again
  CHECK(bot.pr(5).reason_code == q::Reason::Closed);
  for (const auto& c : gh.api->comments()) {
    INFO(c.body);
    CHECK(c.body.find("label dmz:merge refused") == std::string::npos);
  }
  check_against_openapi(*gh.api, bot.data.path());
}

// Deliveries accepted but not yet handled are bounded: while the forge's API cannot answer the
// permission checks of two commands, a third delivery is refused 503 (not recorded, so GitHub
// may send it again); once they are handled, deliveries are taken again.
TEST_CASE("github: webhooks beyond the unfinished bound are refused 503, then taken again") {
  GitHub gh({});
  Bot bot(gh);
  const std::string h1 = gh.commit("feature/one", "one.txt", "1\n");
  bot.open(1, "feature/one", h1);
  REQUIRE(eventually([&] { return bot.pr(1).head == h1; }));
  bot.stop();
  bot.options.max_unfinished_deliveries = 2;
  bot.start();
  gh.api->fail_paths("/repos/octo/widgets/collaborators/");  // who may approve: no answer
  CHECK(bot.post("issue_comment", comment_payload(1, "alice", "@dmzbot priority 3"), "c1").status ==
        202);
  CHECK(bot.post("issue_comment", comment_payload(1, "alice", "@dmzbot merge"), "c2").status ==
        202);
  const ClientResponse refused =
      bot.post("issue_comment", comment_payload(1, "alice", "@dmzbot cancel"), "c3");
  CHECK(refused.status == 503);
  CHECK(refused.retry_after == "5");
  CHECK(refused.body.find("2 webhook deliveries are still being handled") != std::string::npos);
  CHECK(bot.service->metrics().find("\ndmzbot_webhook_deliveries_unfinished 2\n") !=
        std::string::npos);
  CHECK_FALSE(bot.pr(1).approval.has_value());
  gh.api->fail_paths("");
  REQUIRE(eventually([&] { return bot.pr(1).approval.has_value(); }));
  CHECK(bot.pr(1).priority == 3);
  // Handled: room again. The refused delivery was not recorded, so sent again it is taken.
  REQUIRE(eventually([&] {
    return bot.post("issue_comment", comment_payload(1, "alice", "@dmzbot cancel"), "c3").status ==
           202;
  }));
  REQUIRE(eventually([&] { return bot.pr(1).status == q::PrStatus::Cancelled; }));
}

TEST_CASE("github: a delivery replayed after its effects changes nothing") {
  GitHub gh({});
  Bot bot(gh, [](config::Repo& r) { r.check_timeout = 600s; });  // the train waits meanwhile
  const std::string h1 = gh.commit("feature/one", "one.txt", "1\n");
  bot.open(1, "feature/one", h1);
  REQUIRE(eventually([&] { return bot.pr(1).head == h1; }));
  const json merge = comment_payload(1, "alice", "@dmzbot merge");
  bot.hook("issue_comment", merge, "", "live-merge");
  REQUIRE(eventually([&] { return bot.pr(1).approval.has_value(); }));
  const q::Approval approval = *bot.pr(1).approval;
  bot.stop();
  auto answers_to_alice = [&] {
    int n = 0;
    for (const auto& c : gh.api->comments(1)) n += c.body.find("@alice") != std::string::npos;
    return n;
  };
  const int alice_answers = answers_to_alice();
  // Undo the mark, as if the process died between the effects and the mark's commit.
  const auto db = bot.data.path() / "dmzbot.db";
  const auto inbox = deliveries_file(db);  // the deliveries' own database
  {
    const std::string body = merge.dump();
    const std::string headers = stored_headers("issue_comment", "live-merge", body);
    sqlite3* c = nullptr;
    REQUIRE(sqlite3_open(inbox.c_str(), &c) == SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(c,
                               "UPDATE deliveries SET handled = 0, forge = 'github', headers = ?1,"
                               " body = ?2 WHERE id = 'github:live-merge'",
                               -1, &st, nullptr) == SQLITE_OK);
    sqlite3_bind_text(st, 1, headers.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 2, body.data(), static_cast<int>(body.size()), SQLITE_TRANSIENT);
    CHECK(sqlite3_step(st) == SQLITE_DONE);
    CHECK(sqlite3_changes(c) == 1);
    sqlite3_finalize(st);
    sqlite3_close(c);
  }
  std::size_t logged_before = 0;
  {
    auto deliveries = open_sqlite_store(inbox);
    REQUIRE(deliveries.ok());
    REQUIRE((*deliveries)->unhandled_deliveries(0, 10)->size() == 1);
    auto store = open_sqlite_store(db);
    REQUIRE(store.ok());
    logged_before = (*store)->pr_events(kRepo, 1, 1000)->size();
  }
  const int alice_checks = permission_checks(gh, "alice");
  bot.start();
  // Replayed: alice's permission is asked again (the cache did not survive), then the merge is
  // applied, and is a duplicate.
  REQUIRE(eventually([&] { return permission_checks(gh, "alice") > alice_checks; }));
  auto deliveries = open_sqlite_store(inbox);
  REQUIRE(deliveries.ok());
  REQUIRE(eventually([&] { return (*deliveries)->unhandled_deliveries(0, 10)->empty(); }));
  auto store = open_sqlite_store(db);
  REQUIRE(store.ok());
  bot.comment(1, "mallory", "@dmzbot merge");  // answered after the replay (see above)
  REQUIRE(eventually([&] {
    for (const auto& c : gh.api->comments(1))
      if (c.body.find("@mallory") != std::string::npos) return true;
    return false;
  }));
  REQUIRE(bot.pr(1).approval.has_value());
  CHECK(*bot.pr(1).approval == approval);      // the same approval, not a second one
  CHECK(answers_to_alice() == alice_answers);  // no refusal of the replayed merge
  // Nothing but mallory's refused command was logged for #1 since.
  auto logged = (*store)->pr_events(kRepo, 1, 1000);
  REQUIRE(logged.ok());
  for (std::size_t i = logged_before; i < logged->size(); ++i)
    CHECK_MESSAGE((*logged)[i].kind != "merge_requested", (*logged)[i].json);
}

TEST_CASE("github: a completed check suite is read back only for a commit the queue follows") {
  GitHub gh(test::FakeGitHub::Options{});
  Bot bot(gh);
  const std::string head = gh.commit("feature/one", "one.txt", "one\n");
  bot.open(1, "feature/one", head);
  REQUIRE(eventually([&] { return bot.pr(1).head == head; }));
  json suite = forges::github::testing::example(
      "check_suite", [](const json& x) { return x["action"] == "completed"; });
  suite["repository"] = repo_json();
  const std::string elsewhere = std::string(39, 'e') + "1";  // a branch no PR holds
  auto reads_of = [&](const std::string& sha) {
    std::size_t n = 0;
    for (const auto& r : gh.api->requests())
      n += r.path.find("/commits/" + sha + "/") != std::string::npos;
    return n;
  };
  suite["check_suite"]["head_sha"] = elsewhere;
  bot.hook("check_suite", suite);
  suite["check_suite"]["head_sha"] = head;
  bot.hook("check_suite", suite);
  // Follow-ups run in order: once the PR's head was read back, the other was passed over.
  REQUIRE(eventually([&] { return reads_of(head) >= 2; }));  // its statuses and check runs
  CHECK(reads_of(elsewhere) == 0);
}

// While GitHub answers nothing but 502s, a burst of webhooks that need the API queues one
// drain of their follow-ups, not one each (every drain costs a round of retries): the forge
// thread keeps up, and stop() does not wait for a pile of doomed retries.
TEST_CASE("github: a burst of webhooks during an API outage does not pile up work") {
  GitHub gh(test::FakeGitHub::Options{});
  Bot bot(gh);
  // Suites of a PR's head (the queue follows it, so each is read back).
  const std::string head = gh.commit("feature/one", "one.txt", "one\n");
  bot.open(1, "feature/one", head);
  REQUIRE(eventually([&] { return bot.pr(1).head == head; }));
  gh.api->fail_share(1.0);
  json suite = forges::github::testing::example(
      "check_suite", [](const json& x) { return x["action"] == "completed"; });
  suite["repository"] = repo_json();
  suite["check_suite"]["head_sha"] = head;
  for (int i = 0; i < 60; ++i) bot.hook("check_suite", suite);
  const auto t0 = std::chrono::steady_clock::now();
  bot.service->stop();
  const auto took = std::chrono::steady_clock::now() - t0;
  CHECK_MESSAGE(
      took < 5s,
      "stop() took " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                     << " ms");
}

// Deliveries arriving together share one commit of their ids; a redelivery among them (GitHub's
// "redeliver" clicked while the first is in flight) is still taken only once.
// GitHub delivers late, and a delivery is replayed at a restart: a push webhook older than
// what dmzbot knows must neither set a PR back to an older head (dropping the approval of the
// newer) nor set master back (cutting the train to rebuild it).
TEST_CASE("github webhooks: a late push webhook, of a PR or of master, takes nothing back") {
  GitHub gh({});
  Bot bot(gh);
  // A webhook that a later one must follow: once #n is known, every earlier one was handled.
  int barrier = 10;
  auto handled = [&] {
    const int n = ++barrier;
    bot.open(n, "barrier/" + std::to_string(n),
             gh.commit("barrier/" + std::to_string(n), "b" + std::to_string(n), "b\n"));
    REQUIRE(eventually([&] { return bot.pr(n).status == q::PrStatus::Open; }));
  };

  const std::string a = gh.commit("feature/a", "a.txt", "a\n");
  bot.open(1, "feature/a", a);
  bot.push(1, "feature/a", "a2.txt");
  const std::string b = gh.rev("refs/heads/feature/a");
  REQUIRE(eventually([&] { return bot.pr(1).head == b; }));
  bot.label(1, "alice");
  bot.candidate_of(1);
  // The synchronize that made `a` the head, delivered now.
  auto old = gh.api->pull(1);
  old.head_sha = a;
  json late = pr_payload("synchronize", old, "dev");
  late["before"] = gh.initial;
  late["after"] = a;
  bot.hook("pull_request", late);
  handled();
  CHECK(bot.pr(1).head == b);
  REQUIRE(bot.pr(1).approval);
  CHECK(bot.pr(1).approval->sha == b);
  bot.green(1);
  const std::string landed = gh.rev("master");

  bot.open(2, "feature/b", gh.commit("feature/b", "b.txt", "b\n"));
  bot.label(2, "alice");
  const std::string candidate = bot.candidate_of(2);
  // The push of master that the landing of #1 made, delivered now: it names the old master.
  json push = forges::github::testing::example("push");
  push["ref"] = "refs/heads/master";
  push["before"] = gh.initial;
  push["after"] = gh.initial;
  push["deleted"] = false;
  push["repository"] = repo_json();
  bot.hook("push", push);
  handled();
  CHECK(bot.service->state(kRepo)->master == landed);
  CHECK(bot.candidate_of(2) == candidate);  // not cut and rebuilt
  bot.green(2);
  CHECK(gh.rev("master^1") == landed);
}

// A push's webhook may also overtake its PR's `opened`: the PR is known at the pushed head, and
// the late `opened` does not take it back, so the head the merge master saw can be approved
// (by its sha: a plain `merge` within seconds of a push is refused as ambiguous).
TEST_CASE("github webhooks: a push delivered before its PR's opened keeps the pushed head") {
  GitHub gh({});
  Bot bot(gh);
  only_webhooks_fetch(bot, 50ms);  // no reconciliation reads the PR's head for it
  REQUIRE(eventually([&] {
    for (const auto& r : gh.api->requests())
      if (r.method == "GET" && r.path == "/repos/octo/widgets/pulls") return true;
    return false;  // the start's reconciliation, before the PR exists
  }));
  const std::string a = gh.commit("feature/a", "a.txt", "a\n");
  const auto first = bot.create_pull(1, "feature/a", a);
  const std::string b = gh.commit("feature/a", "a2.txt", "a2\n", 0, false);
  gh.api->set_head(1, b);
  gh.pull_ref(1, b);
  json push = pr_payload("synchronize", gh.api->pull(1), "dev");
  push["before"] = a;
  push["after"] = b;
  bot.hook("pull_request", push);
  REQUIRE(eventually([&] { return bot.pr(1).head == b; }));
  bot.hook("pull_request", pr_payload("opened", first, "dev"));
  // Handled in order: once #2 is known, the late `opened` of #1 was handled.
  bot.open(2, "feature/b", gh.commit("feature/b", "b.txt", "b\n"));
  REQUIRE(eventually([&] { return bot.pr(2).status == q::PrStatus::Open; }));
  CHECK(bot.pr(1).head == b);
  bot.comment(1, "alice", "@dmzbot merge " + b);
  REQUIRE_MESSAGE(eventually([&] { return bot.pr(1).approval.has_value(); }), bot.comments_of(1));
  CHECK(bot.pr(1).approval->sha == b);
}

// A fetch reads the remote's refs, then its pack: a push and its webhook can come between.
// The fetch, the first to see the PR, must not take it back to the head it read.
TEST_CASE("github webhooks: a fetch that read the remote before a push takes nothing back") {
  GitHub gh({});
  Bot bot(gh);
  gh.git->hold_fetches(true);
  // A fetch that read the refs once `a` was there (the git thread fetches one at a time)
  // waits for its pack. Counted before `a` is made: a fetch (the start's, a reconciliation's)
  // that listed the refs after it would bring `a`, and the webhook's fetch, finding `a` in
  // the mirror, would not run; one that listed them before is let go. Counted before the
  // webhook goes too: a fetch it starts may read the refs before this thread runs again.
  const int read_before = gh.git->refs_read();
  const std::string a = gh.commit("feature/a", "a.txt", "a\n");
  const auto pull = bot.create_pull(1, "feature/a", a);
  bot.hook("pull_request", pr_payload("opened", pull, "dev"));
  REQUIRE(eventually([&] {
    if (!gh.git->fetch_waiting()) return false;
    if (gh.git->refs_read() > read_before) return true;
    gh.git->release_waiting_fetch();  // one that read the refs before: let it go
    return false;
  }));
  bot.push(1, "feature/a", "a2.txt");
  const std::string b = gh.rev("refs/heads/feature/a");
  REQUIRE(eventually([&] { return bot.pr(1).head == b; }));
  bot.label(1, "alice");
  REQUIRE(eventually([&] { return bot.pr(1).approval && bot.pr(1).approval->sha == b; }));
  auto packs = [&] {
    int n = 0;
    for (const auto& r : gh.git->requests())
      n += r.target.find("git-upload-pack") != std::string::npos && r.method == "POST";
    return n;
  };
  const int before = packs();
  gh.git->hold_fetches(false);
  bot.candidate_of(1);  // the held fetch and those after it were applied: #1 went on
  CHECK(packs() > before);
  CHECK(bot.pr(1).head == b);
  REQUIRE(bot.pr(1).approval);
  CHECK(bot.pr(1).approval->sha == b);
}

TEST_CASE("github webhooks: one delivery posted many times at once is taken once") {
  GitHub gh(test::FakeGitHub::Options{});
  Bot bot(gh);
  std::string h1 = gh.commit("feature/one", "one.txt", "1\n");
  test::FakeGitHub::Pull p{1, "Change 1", "dev", "feature/one", h1};
  gh.api->put_pull(p);
  const json opened = pr_payload("opened", p, "dev");
  std::vector<std::thread> senders;
  std::atomic<int> fresh{0}, duplicate{0}, other{0};
  for (int i = 0; i < 8; ++i)
    senders.emplace_back([&, i] {
      // Other deliveries in the same bursts, each its own id.
      json star = forges::github::testing::example("star");
      star["repository"] = repo_json();
      auto s = bot.post("star", star, "star-" + std::to_string(i));
      auto r = bot.post("pull_request", opened, "same-delivery");
      if (r.status != 202 || s.status != 202)
        ++other;
      else if (json::parse(r.body)["duplicate"] == true)
        ++duplicate;
      else
        ++fresh;
    });
  for (auto& t : senders) t.join();
  CHECK(other.load() == 0);
  CHECK(fresh.load() == 1);
  CHECK(duplicate.load() == 7);
  REQUIRE(eventually([&] { return bot.pr(1).number == 1; }));  // and the one was handled
}

TEST_CASE("github webhooks: bad input is answered with a code and changes nothing") {
  GitHub gh(test::FakeGitHub::Options{});
  Bot bot(gh);
  std::string h1 = gh.commit("feature/one", "one.txt", "1\n");
  auto opened = pr_payload("opened", {1, "T", "dev", "feature/one", h1}, "dev");
  // A wrong or missing signature: 401.
  CHECK(bot.post("pull_request", opened, "bad-1", "not the secret").status == 401);
  auto unsigned_r =
      http_request("127.0.0.1", bot.port, "POST", "/webhooks/github", opened.dump(),
                   {{"X-GitHub-Event", "pull_request"}, {"X-GitHub-Delivery", "bad-2"}});
  REQUIRE(unsigned_r.ok());
  CHECK(unsigned_r->status == 401);
  // Truncated JSON, correctly signed: refused as invalid (422, as every invalid body of the API).
  const std::string body = opened.dump();
  const std::string cut = body.substr(0, body.size() / 2);
  auto truncated =
      http_request("127.0.0.1", bot.port, "POST", "/webhooks/github", cut,
                   {{"X-GitHub-Event", "pull_request"},
                    {"X-GitHub-Delivery", "bad-3"},
                    {"X-Hub-Signature-256", "sha256=" + to_hex(hmac_sha256(kSecret, cut))}});
  REQUIRE(truncated.ok());
  CHECK(truncated->status == 422);
  // A repository dmzbot does not serve: 404.
  json other = opened;
  other["repository"]["full_name"] = "octo/elsewhere";
  CHECK(bot.post("pull_request", other, "bad-4").status == 404);
  // An event dmzbot does not use: acknowledged, nothing to do.
  auto star = bot.post("star", forges::github::testing::example("star"), "bad-5");
  CHECK(star.status == 404);  // the example is about another repository...
  json ours = forges::github::testing::example("star");
  ours["repository"] = repo_json();
  auto star_ours = bot.post("star", ours, "bad-6");
  CHECK(star_ours.status == 202);  // ...and about ours it is taken and ignored
  CHECK(json::parse(star_ours.body)["events"] == 0);
  // None of it reached the queue.
  auto state = bot.service->state(kRepo);
  REQUIRE(state);
  CHECK(state->prs.empty());
  // A body over the server's limit: 413 before anyone reads it. Over it by less than the server
  // drains after refusing (1 MiB, in 500 ms): at the limit plus all of that, a slow run could
  // find the connection reset before the answer was read.
  std::string huge((1 << 20) + (64 << 10), 'x');
  auto big = http_request("127.0.0.1", bot.port, "POST", "/webhooks/github", huge,
                          {{"X-GitHub-Event", "push"}, {"X-GitHub-Delivery", "bad-7"}});
  REQUIRE(big.ok());
  CHECK(big->status == 413);
  // A forge nobody configured: 404, counted without its name (each would be a new series).
  for (const char* forge : {"not-a-forge-1", "not-a-forge-2"}) {
    auto odd = http_request("127.0.0.1", bot.port, "POST", std::string("/webhooks/") + forge, "{}",
                            {{"X-GitHub-Event", "push"}});
    REQUIRE(odd.ok());
    CHECK(odd->status == 404);
  }
  const std::string scraped = bot.service->metrics();
  CHECK(scraped.find("not-a-forge") == std::string::npos);
  CHECK(scraped.find("dmzbot_webhook_deliveries_total{forge=\"other\",result=\"not found\"} 2") !=
        std::string::npos);
}

// An App installed on several configured repositories says so in one delivery: each of them
// reads itself back, and the delivery is still taken once.
// An API that accepts and never answers: a stop ends the call under way instead of waiting out
// the API timeout on every attempt (systemd kills a stop that takes 60 s).
TEST_CASE("github: a stop while an API call hangs ends the call") {
  GitHub gh(test::FakeGitHub::Options{});
  Bot bot(gh);
  bot.stop();
  bot.options.api_timeout = 30s;
  gh.api->hang_next(1'000);
  bot.start();
  REQUIRE(eventually([&] { return gh.api->hung() >= 1; }));  // the start's reconciliation
  const auto began = std::chrono::steady_clock::now();
  bot.stop();
  // Without stop() reaching the call it would return after 30 s at least (four attempts).
  CHECK(std::chrono::steady_clock::now() - began < 20s);
}

TEST_CASE("github webhooks: an installation naming several repositories reaches each of them") {
  GitHub gh(test::FakeGitHub::Options{});
  Bot bot(gh);
  bot.stop();
  must("git init -q --bare -b master " + (gh.repos / "gadgets.git").string());
  must(test::git_env() + "git push -q " + (gh.repos / "gadgets.git").string() + " master", gh.work);
  for (const char* name : {"octo/gadgets", "octo/unnamed"}) {
    config::Repo other = bot.cfg.repos.front();
    other.name = name;
    other.remote = gh.git->url("gadgets.git");
    bot.cfg.repos.push_back(other);
  }
  bot.options.reconcile_interval = 1h;  // only the start's reconciliation, and the event's
  bot.start();
  auto reads_of_pulls = [&] {
    int n = 0;
    for (const auto& r : gh.api->requests())
      if (r.method == "GET" && r.path == "/repos/octo/widgets/pulls") ++n;
    return n;
  };
  REQUIRE(eventually([&] { return reads_of_pulls() == 1; }));

  json e = forges::github::testing::example("installation_repositories");
  e["action"] = "added";
  e["repositories_added"] = json::array();
  for (const char* name : {"octo/gadgets", "octo/widgets"})
    e["repositories_added"].push_back({{"full_name", name}, {"name", name + 5}});
  auto r = bot.post("installation_repositories", e, "installed");
  REQUIRE(r.status == 202);
  CHECK(json::parse(r.body)["repo"] == "octo/widgets, octo/gadgets");
  CHECK(json::parse(r.body)["events"] == 2);
  CHECK(eventually([&] { return reads_of_pulls() == 2; }));
  auto again = bot.post("installation_repositories", e, "installed");
  CHECK(json::parse(again.body)["duplicate"] == true);
}

// GitHub does not deliver in order: a push made after a merge master's comment may arrive
// first. The comment approves (or tries) the head the PR had when it was written, never the
// later push.
// GitHub writes a comment's time on its clock, dmzbot logs heads on its own: with GitHub's
// clock 30 s ahead, a comment written 10 s before a push looks 20 s after it. The offset read
// from the API's Date headers puts the two on one clock.
TEST_CASE("github commands: a comment is pinned to its head on one clock, GitHub's ahead") {
  test::FakeGitHub::Options ahead;
  ahead.clock_skew_ms = 30'000;
  GitHub gh(ahead);
  Bot bot(gh, [](config::Repo& r) { r.check_timeout = 600s; });
  bot.stop();
  bot.options.label_skew = 1s;  // GitHub's timestamps have whole seconds
  bot.start();
  const std::string h1 = gh.commit("feature/one", "one.txt", "1\n");
  bot.open(1, "feature/one", h1);
  REQUIRE(eventually([&] { return bot.pr(1).head == h1; }));
  // Two answers from the API (one thread asks): the first one's Date was read.
  REQUIRE(eventually([&] { return gh.api->requests().size() >= 2; }));
  std::this_thread::sleep_for(3100ms);
  // Written (on GitHub's clock) 2 s before the push, reviewing h1; delivered after it.
  const std::int64_t written = wall_ms() + ahead.clock_skew_ms - 2'000;
  bot.push(1, "feature/one", "later.txt");
  const std::string h2 = gh.api->pull(1).head_sha;
  REQUIRE(eventually([&] { return bot.pr(1).head == h2; }));
  bot.hook("issue_comment", comment_payload(1, "alice", "@dmzbot merge", written), "", "late");
  REQUIRE_MESSAGE(eventually([&] {
                    for (const auto& c : gh.api->comments(1))
                      if (c.body.find("@alice: merge refused: sha " + h1) == 0) return true;
                    return false;
                  }),
                  "its comments:" << bot.comments_of(1));
  CHECK_FALSE(bot.pr(1).approval);
}

TEST_CASE("github commands: a comment never approves or tries a push made after it") {
  GitHub gh({});
  Bot bot(gh, [](config::Repo& r) { r.check_timeout = 600s; });
  bot.stop();
  bot.options.label_skew = 1s;  // GitHub's timestamps have whole seconds
  bot.start();
  const std::string h1 = gh.commit("feature/one", "one.txt", "1\n");
  bot.open(1, "feature/one", h1);
  REQUIRE(eventually([&] { return bot.pr(1).head == h1; }));
  std::this_thread::sleep_for(2100ms);
  const std::int64_t written = wall_ms();  // alice writes her comments, reviewing h1
  std::this_thread::sleep_for(1500ms);
  bot.push(1, "feature/one", "later.txt");  // pushed after them, delivered before them
  const std::string h2 = gh.api->pull(1).head_sha;
  REQUIRE(eventually([&] { return bot.pr(1).head == h2; }));
  bot.hook("issue_comment", comment_payload(1, "alice", "@dmzbot merge", written), "",
           "late-merge");
  bot.hook("issue_comment", comment_payload(1, "alice", "@dmzbot try", written), "", "late-try");
  REQUIRE_MESSAGE(eventually([&] {
                    int refused = 0;
                    for (const auto& c : gh.api->comments(1))
                      refused += c.body.find("@alice: merge refused: sha " + h1) == 0 ||
                                 c.body.find("@alice: try refused: #1 was pushed after") == 0;
                    return refused == 2;
                  }),
                  "its comments:" << bot.comments_of(1));
  CHECK_FALSE(bot.pr(1).approval);
  CHECK(test::run("git rev-parse --verify -q refs/heads/dmz-try/1", gh.origin).exit_code != 0);
  // Written within a second of the push: which head it meant is not certain, so it is refused.
  bot.comment(1, "alice", "@dmzbot merge");
  REQUIRE(eventually([&] {
    for (const auto& c : gh.api->comments(1))
      if (c.body.find("@alice: merge refused: #1 was pushed within seconds") == 0) return true;
    return false;
  }));
  CHECK_FALSE(bot.pr(1).approval);
  // Written a while after the push, the same words approve the head as it is.
  std::this_thread::sleep_for(2100ms);
  bot.comment(1, "alice", "@dmzbot merge");
  REQUIRE(eventually([&] { return bot.pr(1).approval && bot.pr(1).approval->sha == h2; }));
}

// PR #1 at its first head, which dmzbot learned more than `label_skew` (1 s here) ago: a
// comment written now meant that head. Returns it.
std::string open_settled(GitHub& gh, Bot& bot) {
  bot.stop();
  bot.options.label_skew = 1s;
  bot.start();
  const std::string h1 = gh.commit("feature/one", "one.txt", "1\n");
  bot.open(1, "feature/one", h1);
  REQUIRE(eventually([&] { return bot.pr(1).head == h1; }));
  std::this_thread::sleep_for(1100ms);
  return h1;
}

// A merge comment whose head cannot be read from the event log (a failure on our side) waits
// for the log, and is neither refused nor dropped (before, it was refused as if just pushed).
TEST_CASE("github commands: a merge comment waits while its head cannot be read") {
  GitHub gh({});
  Bot bot(gh, [](config::Repo& r) { r.check_timeout = 600s; });
  const std::string h1 = open_settled(gh, bot);
  SideConnection other(bot);
  other.exec("ALTER TABLE events RENAME TO events_away");  // the log cannot be read
  bot.comment(1, "alice", "@dmzbot merge");
  std::this_thread::sleep_for(1500ms);
  CHECK_FALSE(bot.pr(1).approval.has_value());
  other.exec("ALTER TABLE events_away RENAME TO events");
  REQUIRE_MESSAGE(eventually([&] { return bot.pr(1).approval.has_value(); }),
                  "its comments:" << bot.comments_of(1));
  CHECK(bot.pr(1).approval->sha == h1);
  CHECK(gh.api->comments(1).empty());
}

// The head a comment meant is read from the PR's own head events, however many other events
// named the PR since (before, only among its newest 200 events of any kind: a PR rebuilt in
// many candidates, or given many commands, had its plain `merge` refused as if just pushed).
TEST_CASE("github commands: a merge comment pins the head however many events came since") {
  GitHub gh({});
  Bot bot(gh, [](config::Repo& r) { r.check_timeout = 600s; });
  const std::string h1 = open_settled(gh, bot);
  // A long history since the push (as many commands, or candidates, would leave), written
  // straight into the log: 210 comments through the webhook took a minute under ASan.
  SideConnection(bot).exec(
      "WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < 210) "
      "INSERT INTO events(repo, kind, json, number, at) SELECT '" +
      std::string(kRepo) + "', 'priority_set', '{}', 1, " + std::to_string(wall_ms()) + " FROM i");
  bot.comment(1, "alice", "@dmzbot merge");
  REQUIRE_MESSAGE(eventually([&] { return bot.pr(1).approval.has_value(); }),
                  "its comments:" << bot.comments_of(1));
  CHECK(bot.pr(1).approval->sha == h1);
}

}  // namespace
}  // namespace dmz

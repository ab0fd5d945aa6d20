// Release promotion through the running service: a bare remote whose master carries a policy
// with [release] and real OpenPGP keys, tags made with `git tag -s`, promotion asked over HTTP
// and found by the service's own fetches, and the queue JSON that shows it.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "bot/http/http_client.hpp"
#include "bot/http/http_server.hpp"
#include "bot/service/service.hpp"
#include "bot/store/store_test_support.hpp"
#include "tests/gpg_keys.hpp"
#include "tests/support.hpp"

namespace dmz {
namespace {

using namespace std::chrono_literals;
using test::must;

constexpr const char* kRepo = "acme/release";
constexpr const char* kToken = "promotion-token-for-tests";

template <class F>
bool eventually(F done, std::chrono::milliseconds limit = 60s) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return done();
}

struct ReleaseRemote {
  test::TempDir dir;
  test::GpgHome home;
  std::string lead, releng, bot;
  std::filesystem::path origin = dir / "origin.git";
  std::filesystem::path work = dir / "work";
  std::string base;

  ReleaseRemote() {
    lead = home.generate("Lead <lead@example.com>");
    releng = home.generate("Releng <releng@example.com>");
    bot = home.generate("dmzbot <dmzbot@example.com>");
    must("git init -q --bare -b master " + origin.string());
    base = test::init_repo(
        work, {{".dmz/policy.toml",
                "version = 1\n[accounts.lead]\nopenpgp = [\"" + lead +
                    "\"]\n[accounts.releng]\nopenpgp = [\"" + releng +
                    "\"]\n[accounts.dmzbot]\nopenpgp = [\"" + bot +
                    "\"]\n[groups]\nleads = [\"lead\"]\nreleng = [\"releng\"]\n"
                    "bots = [\"dmzbot\"]\n[[rule]]\n"
                    "branch = \"master\"\n[merges]\nsigners = \"bots\"\n"
                    "[release]\ncandidate_signers = \"leads\"\nrelease_signers = \"releng\"\n"},
               {".dmz/keys/lead.asc", home.export_public(lead)},
               {".dmz/keys/releng.asc", home.export_public(releng)},
               {".dmz/keys/dmzbot.asc", home.export_public(bot)},
               {"app", "1\n"}});
    git("remote add origin " + origin.string());
    git("push -q origin master");
  }
  std::string git(const std::string& args) {
    return must(test::git_env() + home.env() + "git " + args, work);
  }
  void tag(const std::string& name, const std::string& key, const std::string& at) {
    git("-c gpg.program=gpg tag -s -u " + key + " -m " + name + " " + name + " " + at);
    git("push -q origin refs/tags/" + name);
  }
  std::optional<std::string> rev(const std::string& ref) {
    auto r = test::run("git rev-parse --verify -q " + ref, origin);
    if (r.exit_code != 0) return std::nullopt;
    return r.out.substr(0, 40);
  }
};

// The service's configuration for the one repository of `remote`, on port 0.
config::Config service_config(const ReleaseRemote& remote, const std::filesystem::path& data) {
  config::Config cfg;
  cfg.data_dir = data;
  cfg.server.port = 0;
  config::Repo repo;
  repo.name = kRepo;
  repo.remote = remote.origin.string();
  repo.api_token = config::Secret(kToken);
  repo.status_token = config::Secret(kToken);
  repo.required_checks = {"ci"};
  cfg.repos.push_back(repo);
  return cfg;
}

// Fetches and ticks often, so that the tests wait little for what the service notices.
Service::Options quick_options() {
  Service::Options o;
  o.fetch_interval = 100ms;
  o.tick_interval = 50ms;
  return o;
}

// dmzbot signs its merges with its own key, as the policy's [merges] wants.
void sign_merges_as_bot(config::Config& cfg, const ReleaseRemote& remote) {
  cfg.signing.format = "openpgp";
  cfg.signing.fingerprint = remote.bot;
  cfg.signing.gnupg_home = remote.home.path();
}

// A signed fix on hotfix/crash off v1.0, pushed straight to production as release v1.0.1: what
// a stop right after the push of production leaves (the record, and no PR). Returns the fix.
std::string released_hotfix(ReleaseRemote& remote, const config::Config& cfg) {
  remote.git("checkout -q -b hotfix/crash " + remote.base);
  test::write_file(remote.work / "fix", "no more crash\n");
  remote.git("add fix");
  remote.git("-c gpg.program=gpg commit -q -S" + remote.lead + " -m 'fix the crash'");
  const std::string fix = remote.git("rev-parse HEAD");
  remote.git("push -q origin hotfix/crash " + fix + ":refs/heads/production");
  remote.git("checkout -q master");
  record_released_hotfix(cfg.data_dir / cfg.store.path, kRepo, "v1.0.1", "hotfix/crash", fix,
                         remote.base);
  return fix;
}

}  // namespace

TEST_CASE("release promotion through the service: by API, by fetch, refusals, the queue JSON") {
  ReleaseRemote remote;
  test::TempDir data;
  config::Config cfg = service_config(remote, data.path());

  remote.tag("v1.0-rc1", remote.lead, remote.base);
  remote.tag("v1.0", remote.lead, remote.base);  // a release tag by the wrong person

  const Service::Options o = quick_options();
  auto started = Service::start(cfg, o);
  REQUIRE_MESSAGE(started.ok(), (started.ok() ? "" : started.message()));
  auto& service = **started;
  HttpServer server(cfg.server, make_api(service));
  auto port = server.start();
  REQUIRE(port.ok());
  auto call = [&](const std::string& method, const std::string& path, const std::string& body,
                  const std::string& token = kToken) {
    auto r = http_request("127.0.0.1", *port, method, std::string("/api/v1/repos/") + kRepo + path,
                          body, {{"Authorization", "Bearer " + token}});
    REQUIRE(r.ok());
    return *r;
  };

  // Tags already there at the start were never judged: they are, as new tags are. The good
  // candidate moves staging; the release signed by the wrong person is refused.
  service.fetch_now(kRepo);
  CHECK(eventually([&] { return remote.rev("refs/heads/staging") == remote.base; }));
  CHECK_FALSE(remote.rev("refs/heads/production"));

  auto unauthorized = call("POST", "/promote", R"({"tag": "v1.0-rc1"})", "wrong");
  CHECK(unauthorized.status == 401);
  CHECK(call("POST", "/promote", R"({"tag": "../x"})").status == 422);

  // Asked for again: it is already there.
  auto candidate = call("POST", "/promote", R"({"tag": "v1.0-rc1"})");
  CHECK_MESSAGE(candidate.status == 200, candidate.body);
  auto cdoc = nlohmann::json::parse(candidate.body);
  CHECK(cdoc["promoted"] == true);
  CHECK(cdoc["target"] == "staging");
  CHECK(cdoc["signers"] == nlohmann::json::array({"lead"}));
  CHECK(remote.rev("refs/heads/staging") == remote.base);

  auto wrong = call("POST", "/promote", R"({"tag": "v1.0"})");
  CHECK_MESSAGE(wrong.status == 409, wrong.body);
  auto wdoc = nlohmann::json::parse(wrong.body);
  CHECK(wdoc["promoted"] == false);
  CHECK(wdoc["error"].get<std::string>().find(
            "signed by lead, who is not in the release signers") != std::string::npos);
  CHECK_FALSE(remote.rev("refs/heads/production"));

  // New tags found by the service's fetches promote by themselves: a candidate on a new master
  // commit, then its release.
  std::string next = test::commit_files(remote.work, {{"app", "2\n"}}, "two");
  remote.git("push -q origin master");
  remote.tag("v1.1-rc1", remote.lead, next);
  CHECK(eventually([&] { return remote.rev("refs/heads/staging") == next; }));
  remote.tag("v1.1", remote.releng, next);
  CHECK(eventually([&] { return remote.rev("refs/heads/production") == next; }));

  // The queue JSON: what each branch holds, and the last promotions and refusals (recorded on
  // the git thread just after the push the test saw).
  nlohmann::json qdoc;
  CHECK(eventually([&] {
    auto queue = call("GET", "/queue", "");
    REQUIRE(queue.status == 200);
    qdoc = nlohmann::json::parse(queue.body);
    return qdoc.contains("releases") && qdoc["releases"]["production"].is_object() &&
           qdoc["releases"]["production"].contains("tag");
  }));
  REQUIRE(qdoc.contains("releases"));
  const auto& rel = qdoc["releases"];
  CHECK(rel["staging"]["commit"] == next);
  CHECK(rel["staging"]["tag"] == "v1.1-rc1");
  CHECK(rel["production"]["tag"] == "v1.1");
  CHECK(rel["production"]["signers"] == nlohmann::json::array({"releng"}));
  // The repository's status page shows the same.
  auto page = http_request("127.0.0.1", *port, "GET", std::string("/repos/") + kRepo, "", {});
  REQUIRE(page.ok());
  CHECK(page->status == 200);
  CHECK(page->body.find("<h2 id=\"h-releases\">Releases</h2>") != std::string::npos);
  CHECK(page->body.find("tag <code>v1.1</code> signed by releng") != std::string::npos);
  CHECK(page->body.find("who is not in the release signers") != std::string::npos);

  int refusals = 0;
  for (const auto& r : rel["recent"])
    if (r["tag"] == "v1.0" && r["promoted"] == false) ++refusals;
  CHECK(refusals == 2);  // by the first fetch, then by the API

  // A tag whose name is not UTF-8 (git takes any byte over 0x7f), refused: the queue JSON and
  // the page still answer, the byte replaced.
  remote.tag("v1.2\xff", remote.lead, next);
  CHECK(eventually([&] {
    auto queue = call("GET", "/queue", "");
    return queue.status == 200 && queue.body.find("v1.2\xef\xbf\xbd") != std::string::npos;
  }));
  auto page_after = http_request("127.0.0.1", *port, "GET", std::string("/repos/") + kRepo, "", {});
  REQUIRE(page_after.ok());
  CHECK(page_after->status == 200);
  const auto recent_before =
      nlohmann::json::parse(call("GET", "/queue", "").body)["releases"]["recent"];

  // A restart: the records come back from the store, and no tag is judged again.
  server.stop();
  service.stop();
  started->reset();  // releases the data directory's lock, as the process exiting would
  auto again = Service::start(cfg, o);
  REQUIRE_MESSAGE(again.ok(), (again.ok() ? "" : again.message()));
  HttpServer server2(cfg.server, make_api(**again));
  auto port2 = server2.start();
  REQUIRE(port2.ok());
  (*again)->fetch_now(kRepo);
  (*again)->fetch_now(kRepo);
  auto after =
      http_request("127.0.0.1", *port2, "GET", std::string("/api/v1/repos/") + kRepo + "/queue", "",
                   {{"Authorization", std::string("Bearer ") + kToken}});
  REQUIRE(after.ok());
  auto adoc = nlohmann::json::parse(after->body);
  REQUIRE(adoc.contains("releases"));
  CHECK(adoc["releases"]["production"]["tag"] == "v1.1");
  CHECK(adoc["releases"]["production"]["signers"] == nlohmann::json::array({"releng"}));
  CHECK(adoc["releases"]["staging"]["tag"] == "v1.1-rc1");
  CHECK(adoc["releases"]["recent"] == recent_before);
  server2.stop();
  (*again)->stop();
}

TEST_CASE("hotfix flow: a hotfix branch off production reaches staging, production, then master") {
  ReleaseRemote remote;
  test::TempDir data;
  config::Config cfg = service_config(remote, data.path());
  cfg.repos[0].hotfix_branches = "fix/*";  // not the default: a fix/ branch is a hotfix here
  sign_merges_as_bot(cfg, remote);

  // v1.0 is in production; master moved on and v2.0-rc1 is on staging.
  remote.tag("v1.0-rc1", remote.lead, remote.base);
  remote.tag("v1.0", remote.releng, remote.base);
  std::string two = test::commit_files(remote.work, {{"app", "2\n"}}, "two");
  remote.git("push -q origin master");
  remote.tag("v2.0-rc1", remote.lead, two);

  const Service::Options o = quick_options();
  auto started = Service::start(cfg, o);
  REQUIRE_MESSAGE(started.ok(), (started.ok() ? "" : started.message()));
  auto& service = **started;
  HttpServer server(cfg.server, make_api(service));
  auto port = server.start();
  REQUIRE(port.ok());
  auto call = [&](const std::string& method, const std::string& path, const std::string& body) {
    auto r = http_request("127.0.0.1", *port, method, std::string("/api/v1/repos/") + kRepo + path,
                          body, {{"Authorization", std::string("Bearer ") + kToken}});
    REQUIRE(r.ok());
    return *r;
  };
  CHECK(eventually([&] { return remote.rev("refs/heads/production") == remote.base; }));
  CHECK(eventually([&] { return remote.rev("refs/heads/staging") == two; }));

  // The hotfix, made from the production tag, tagged as a candidate by the lead.
  remote.git("checkout -q -b fix/crash v1.0");
  // Signed by its author, as the policy wants every commit of a PR into master.
  test::write_file(remote.work / "fix", "no more crash\n");
  remote.git("add fix");
  remote.git("-c gpg.program=gpg commit -q -S" + remote.lead + " -m 'fix the crash'");
  std::string fix = remote.git("rev-parse HEAD");
  remote.git("push -q origin fix/crash");
  remote.git("checkout -q master");
  remote.tag("v1.0.1-rc1", remote.lead, fix);
  // staging goes back from v2.0-rc1 to the hotfix (not a fast-forward: allowed for a hotfix).
  CHECK(eventually([&] { return remote.rev("refs/heads/staging") == fix; }));
  CHECK(remote.rev("refs/heads/production") == remote.base);
  remote.tag("v1.0.1", remote.releng, fix);
  CHECK(eventually([&] { return remote.rev("refs/heads/production") == fix; }));
  // master never held it.
  CHECK(test::run("git merge-base --is-ancestor " + fix + " master", remote.origin).exit_code != 0);

  // dmzbot brings it back through the queue: a PR of fix/crash, approved on the release
  // signers' behalf, merged into dmz, built, landed.
  std::optional<std::string> candidate;
  CHECK(eventually([&] {
    auto q = nlohmann::json::parse(call("GET", "/queue", "").body);
    if (q["train"].empty() || q["prs"].empty() || q["prs"][0]["branch"] != "fix/crash")
      return false;
    candidate = q["train"][0]["sha"].get<std::string>();
    return remote.rev("refs/heads/dmz") == candidate;
  }));
  REQUIRE(candidate);
  CHECK(test::run("git merge-base --is-ancestor " + fix + " " + *candidate, remote.origin)
            .exit_code == 0);
  auto status = call("POST", "/statuses/" + *candidate, R"({"state":"success","context":"ci"})");
  CHECK_MESSAGE(status.status < 300, status.body);
  CHECK(eventually([&] { return remote.rev("refs/heads/master") == *candidate; }));
  CHECK(test::run("git merge-base --is-ancestor " + fix + " master", remote.origin).exit_code == 0);
  CHECK(test::run("git merge-base --is-ancestor " + two + " master", remote.origin).exit_code == 0);

  // The records: the hotfix candidate and release name their branch.
  auto q = nlohmann::json::parse(call("GET", "/queue", "").body);
  bool release_listed = false;
  for (const auto& r : q["releases"]["recent"])
    if (r["tag"] == "v1.0.1" && r["promoted"] == true && r["hotfix_branch"] == "fix/crash")
      release_listed = true;
  CHECK(release_listed);
  // The remote's master moved before the engine records the landing: wait for the outcome.
  CHECK(eventually([&] {
    auto doc = nlohmann::json::parse(call("GET", "/queue", "").body);
    for (const auto& h : doc["recent"])
      if (h["branch"] == "fix/crash" && h["status"] == "merged") return true;
    return false;
  }));

  server.stop();
  service.stop();
}

// The release is pushed while the database is locked (an operator's shell, a backup): neither
// its record nor the hand-over can be saved then. Both are tried again once the store is back.
TEST_CASE("hotfix flow: a hotfix released while the store refuses writes is brought back after") {
  ReleaseRemote remote;
  test::TempDir data;
  config::Config cfg = service_config(remote, data.path());
  cfg.repos[0].hotfix_branches = "fix/*";
  sign_merges_as_bot(cfg, remote);
  remote.tag("v1.0-rc1", remote.lead, remote.base);
  remote.tag("v1.0", remote.releng, remote.base);
  Service::Options o = quick_options();
  o.store.busy_timeout_ms = 100;
  auto started = Service::start(cfg, o);
  REQUIRE_MESSAGE(started.ok(), (started.ok() ? "" : started.message()));
  auto& service = **started;
  CHECK(eventually([&] { return remote.rev("refs/heads/production") == remote.base; }));
  remote.git("checkout -q -b fix/crash v1.0");
  test::write_file(remote.work / "fix", "no more crash\n");
  remote.git("add fix");
  remote.git("-c gpg.program=gpg commit -q -S" + remote.lead + " -m 'fix the crash'");
  const std::string fix = remote.git("rev-parse HEAD");
  remote.git("push -q origin fix/crash");
  remote.git("checkout -q master");
  remote.tag("v1.0.1-rc1", remote.lead, fix);
  CHECK(eventually([&] { return remote.rev("refs/heads/staging") == fix; }));
  auto hotfix_approval = [&]() -> std::optional<queue::Approval> {
    if (auto state = service.state(kRepo))
      for (const auto& [n, pr] : state->prs)
        if (pr.branch == "fix/crash") return pr.approval;
    return std::nullopt;
  };

  sqlite3* other = nullptr;
  REQUIRE(sqlite3_open((data.path() / cfg.store.path).c_str(), &other) == SQLITE_OK);
  sqlite3_busy_timeout(other, 5000);
  REQUIRE(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
  remote.tag("v1.0.1", remote.releng, fix);
  CHECK(eventually([&] { return remote.rev("refs/heads/production") == fix; }));
  std::this_thread::sleep_for(500ms);  // several fetches, each refused by the store
  CHECK_FALSE(hotfix_approval());
  sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(other);
  // Before: the record kept no seq and the hand-over was refused, never to be tried again.
  CHECK(eventually([&] {
    auto approval = hotfix_approval();
    return approval && approval->sha == fix;
  }));
  service.stop();
}

TEST_CASE("hotfix flow: a hotfix in production but never handed over is brought back on start") {
  ReleaseRemote remote;
  test::TempDir data;
  config::Config cfg = service_config(remote, data.path());
  sign_merges_as_bot(cfg, remote);
  std::string two = test::commit_files(remote.work, {{"app", "2\n"}}, "two");
  remote.git("push -q origin master");
  const std::string fix = released_hotfix(remote, cfg);
  const Service::Options o = quick_options();
  auto hotfix_prs = [&](Service& service) {
    std::vector<queue::PullRequest> out;
    if (auto state = service.state(kRepo))
      for (const auto& [n, pr] : state->prs)
        if (pr.branch == "hotfix/crash") out.push_back(pr);
    return out;
  };
  std::string candidate;
  std::optional<queue::Approval> approval;
  {
    auto started = Service::start(cfg, o);
    REQUIRE_MESSAGE(started.ok(), (started.ok() ? "" : started.message()));
    auto& service = **started;
    CHECK(eventually([&] {
      auto prs = hotfix_prs(service);
      if (prs.size() != 1 || !prs[0].candidate) return false;
      approval = prs[0].approval;
      return true;
    }));
    REQUIRE(approval);
    CHECK(approval->sha == fix);
    CHECK(approval->approver == "dmzbot (release v1.0.1 signed by releng)");
    service.stop();
  }
  // Started again before it landed: the PR is found, not registered or approved again.
  auto started = Service::start(cfg, o);
  REQUIRE_MESSAGE(started.ok(), (started.ok() ? "" : started.message()));
  auto& service = **started;
  CHECK(eventually([&] {
    auto state = service.state(kRepo);
    if (!state || state->train.empty() || state->train[0].sha.empty()) return false;
    candidate = state->train[0].sha;
    return remote.rev("refs/heads/dmz") == candidate;
  }));
  std::this_thread::sleep_for(500ms);  // several fetches: each could hand it over again
  auto prs = hotfix_prs(service);
  REQUIRE(prs.size() == 1);
  CHECK(prs[0].approval == approval);
  HttpServer server(cfg.server, make_api(service));
  auto port = server.start();
  REQUIRE(port.ok());
  auto status = http_request("127.0.0.1", *port, "POST",
                             std::string("/api/v1/repos/") + kRepo + "/statuses/" + candidate,
                             R"({"state":"success","context":"ci"})",
                             {{"Authorization", std::string("Bearer ") + kToken}});
  REQUIRE(status.ok());
  CHECK_MESSAGE(status->status < 300, status->body);
  CHECK(eventually([&] { return remote.rev("refs/heads/master") == candidate; }));
  CHECK(test::run("git merge-base --is-ancestor " + fix + " master", remote.origin).exit_code == 0);
  CHECK(test::run("git merge-base --is-ancestor " + two + " master", remote.origin).exit_code == 0);
  server.stop();
  service.stop();
}

TEST_CASE("hotfix flow: a hotfix released while the remote has no master waits for master") {
  ReleaseRemote remote;
  test::TempDir data;
  config::Config cfg = service_config(remote, data.path());
  sign_merges_as_bot(cfg, remote);
  const std::string fix = released_hotfix(remote, cfg);
  // master is gone for a while (a botched push, a migration): nothing to bring the fix into.
  REQUIRE(test::run("git update-ref -d refs/heads/master", remote.origin).exit_code == 0);
  const Service::Options o = quick_options();
  auto started = Service::start(cfg, o);
  REQUIRE_MESSAGE(started.ok(), (started.ok() ? "" : started.message()));
  auto& service = **started;
  auto hotfix_approval = [&]() -> std::optional<queue::Approval> {
    if (auto state = service.state(kRepo))
      for (const auto& [n, pr] : state->prs)
        if (pr.branch == "hotfix/crash") return pr.approval;
    return std::nullopt;
  };
  std::this_thread::sleep_for(400ms);  // several fetches without master
  CHECK_FALSE(hotfix_approval());
  // master is back: the next fetch hands the hotfix over.
  REQUIRE(test::run("git update-ref refs/heads/master " + remote.base, remote.origin).exit_code ==
          0);
  CHECK(eventually([&] {
    auto approval = hotfix_approval();
    return approval && approval->sha == fix;
  }));
  service.stop();
}

}  // namespace dmz

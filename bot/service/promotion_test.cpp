// Release promotion through the running service: a bare remote whose master carries a policy
// with [release] and real OpenPGP keys, tags made with `git tag -s`, promotion asked over HTTP
// and found by the service's own fetches, and the queue JSON that shows it.
#include <doctest/doctest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "bot/http/http_client.hpp"
#include "bot/http/http_server.hpp"
#include "bot/service/service.hpp"
#include "tests/gpg_keys.hpp"
#include "tests/support.hpp"

namespace dmz {
namespace {

using namespace std::chrono_literals;
using test::must;

constexpr const char* kRepo = "acme/release";
constexpr const char* kToken = "promotion-token-for-tests";

template <class F>
bool eventually(F done, std::chrono::milliseconds limit = 30s) {
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
  std::string lead, releng;
  std::filesystem::path origin = dir / "origin.git";
  std::filesystem::path work = dir / "work";
  std::string base;

  ReleaseRemote() {
    lead = home.generate("Lead <lead@example.com>");
    releng = home.generate("Releng <releng@example.com>");
    must("git init -q --bare -b master " + origin.string());
    base = test::init_repo(
        work, {{".dmz/policy.toml",
                "version = 1\n[accounts.lead]\nopenpgp = [\"" + lead +
                    "\"]\n[accounts.releng]\nopenpgp = [\"" + releng +
                    "\"]\n[groups]\nleads = [\"lead\"]\nreleng = [\"releng\"]\n[[rule]]\n"
                    "branch = \"master\"\n[release]\ncandidate_signers = \"leads\"\n"
                    "release_signers = \"releng\"\n"},
               {".dmz/keys/lead.asc", home.export_public(lead)},
               {".dmz/keys/releng.asc", home.export_public(releng)},
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

}  // namespace

TEST_CASE("release promotion through the service: by API, by fetch, refusals, the queue JSON") {
  ReleaseRemote remote;
  test::TempDir data;
  config::Config cfg;
  cfg.data_dir = data.path();
  cfg.server.port = 0;
  config::Repo repo;
  repo.name = kRepo;
  repo.remote = remote.origin.string();
  repo.api_token = config::Secret(kToken);
  repo.status_token = config::Secret(kToken);
  repo.required_checks = {"ci"};
  cfg.repos.push_back(repo);

  remote.tag("v1.0-rc1", remote.lead, remote.base);
  remote.tag("v1.0", remote.lead, remote.base);  // a release tag by the wrong person

  Service::Options o;
  o.fetch_interval = 100ms;
  o.tick_interval = 50ms;
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

  // Tags already there at the start are not promoted by themselves.
  service.fetch_now(kRepo);
  CHECK_FALSE(remote.rev("refs/heads/staging"));

  auto unauthorized = call("POST", "/promote", R"({"tag": "v1.0-rc1"})", "wrong");
  CHECK(unauthorized.status == 401);
  CHECK(call("POST", "/promote", R"({"tag": "../x"})").status == 422);

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
  bool refusal_listed = false;
  for (const auto& r : rel["recent"])
    if (r["tag"] == "v1.0" && r["promoted"] == false) refusal_listed = true;
  CHECK(refusal_listed);

  server.stop();
  service.stop();
}

}  // namespace dmz

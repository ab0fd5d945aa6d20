// land_bench: how long from a CI success to `master` moved on the remote, beside a plain
// `git push` of the same kind of fast-forward, in one run, both to bare repositories served by
// `git daemon` on 127.0.0.1. dmzbot's figure covers the status POST over HTTP, the engine, the
// store's save, the git thread and its leased push; the plain push is one `git push` process.
// Not part of the tests: `cmake --build build --target land_bench && build/land_bench [ROUNDS]`.
// Needs git on PATH. Threading: the bench's own thread plus the service's.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "bot/http/http_client.hpp"
#include "bot/http/http_server.hpp"
#include "bot/service/service.hpp"

namespace {

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;
using namespace std::chrono_literals;
constexpr const char* kRepo = "bench/land";
constexpr const char* kToken = "land-bench-token";
const std::string kGitEnv =
    "GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_NAME=bench "
    "GIT_AUTHOR_EMAIL=bench@example.invalid GIT_COMMITTER_NAME=bench "
    "GIT_COMMITTER_EMAIL=bench@example.invalid ";

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "land_bench: %s\n", what.c_str());
  std::exit(1);
}

std::string sh(const std::string& command, const fs::path& cwd) {
  std::string full = "cd '" + cwd.string() + "' && " + kGitEnv + command + " 2>&1";
  FILE* p = popen(full.c_str(), "r");
  if (!p) die("popen");
  std::string out;
  std::array<char, 4096> buf;
  for (std::size_t n; (n = fread(buf.data(), 1, buf.size(), p)) > 0;) out.append(buf.data(), n);
  if (pclose(p) != 0) die(command + ": " + out);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::uint16_t free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    die("no free port");
  close(fd);
  return ntohs(a.sin_port);
}

// The remote's master, read the way git daemon's receive-pack writes it (a loose ref).
std::string remote_master(const fs::path& bare) {
  std::ifstream in(bare / "refs" / "heads" / "master");
  std::string sha;
  in >> sha;
  return sha;
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5)];
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 10;
  if (rounds < 1) die("ROUNDS must be positive");
  std::signal(SIGPIPE, SIG_IGN);
  std::string pattern = (fs::temp_directory_path() / "land-bench-XXXXXX").string();
  if (!mkdtemp(pattern.data())) die("mkdtemp");
  const fs::path dir = pattern;
  for (const char* bare : {"origin.git", "plain.git"}) {
    sh("git init -q --bare -b master " + std::string(bare), dir);
    sh("git config receive.denyCurrentBranch ignore", dir / bare);
  }
  fs::create_directories(dir / "work");
  sh("git init -q -b master . && echo base > base.txt && git add -A && git commit -qm base",
     dir / "work");
  const std::uint16_t port = free_port();
  const std::string url = "git://127.0.0.1:" + std::to_string(port) + "/";
  pid_t daemon = fork();
  if (daemon == 0) {
    setpgid(0, 0);
    std::string base = "--base-path=" + dir.string(), p = "--port=" + std::to_string(port);
    execlp("git", "git", "daemon", "--reuseaddr", "--listen=127.0.0.1", p.c_str(), base.c_str(),
           "--export-all", "--enable=receive-pack", dir.c_str(), nullptr);
    _exit(127);
  }
  for (int i = 0;; ++i) {
    if (std::system(("git ls-remote " + url + "origin.git >/dev/null 2>&1").c_str()) == 0) break;
    if (i > 200) die("git daemon did not start");
    std::this_thread::sleep_for(20ms);
  }
  sh("git push -q " + url + "origin.git master && git push -q " + url + "plain.git master",
     dir / "work");

  dmz::config::Config cfg;
  cfg.data_dir = dir / "data";
  cfg.server.port = 0;
  dmz::config::Repo repo;
  repo.name = kRepo;
  repo.remote = url + "origin.git";
  repo.api_token = dmz::config::Secret(kToken);
  repo.status_token = dmz::config::Secret(kToken);
  repo.required_checks = {"ci/build"};
  cfg.repos.push_back(repo);
  dmz::Service::Options options;
  options.tick_interval = 20ms;
  auto service = dmz::Service::start(cfg, options);
  if (!service) die(service.message());
  dmz::HttpServer server(cfg.server, dmz::make_api(**service));
  auto http = server.start();
  if (!http) die(http.message());
  auto post = [&](const std::string& path, const nlohmann::json& body) {
    auto r =
        dmz::http_request("127.0.0.1", *http, "POST", std::string("/api/v1/repos/") + kRepo + path,
                          body.dump(), {{"Authorization", std::string("Bearer ") + kToken}});
    if (!r || r->status != 202) die(path + ": " + (r ? r->body : r.message()));
  };

  std::vector<double> dmzbot_ms, plain_ms;
  for (int i = 1; i <= rounds; ++i) {
    // dmzbot: a PR on origin, queued and merged into dmz; then CI says success.
    const std::string branch = "feature/b" + std::to_string(i);
    sh("git checkout -q -B " + branch + " master && echo " + std::to_string(i) + " > b" +
           std::to_string(i) + ".txt && git add -A && git commit -qm b" + std::to_string(i) +
           " && git push -q " + url + "origin.git " + branch,
       dir / "work");
    const std::string head = sh("git rev-parse HEAD", dir / "work");
    post("/pulls", {{"number", i}, {"branch", branch}});
    post("/pulls/" + std::to_string(i) + "/merge", {{"sha", head}, {"approver", "mm"}});
    std::string candidate;
    for (int w = 0; w < 2000 && candidate.empty(); ++w) {
      auto st = (*service)->state(kRepo);
      if (st && !st->train.empty() && st->train[0].policy_passed) candidate = st->train[0].sha;
      if (candidate.empty()) std::this_thread::sleep_for(5ms);
    }
    if (candidate.empty()) die("no candidate for round " + std::to_string(i));
    auto t0 = SteadyClock::now();
    post("/statuses/" + candidate, {{"state", "success"}, {"context", "ci/build"}});
    while (remote_master(dir / "origin.git") != candidate) {
      if (SteadyClock::now() - t0 > 30s) die("master never moved in round " + std::to_string(i));
      std::this_thread::sleep_for(100us);
    }
    dmzbot_ms.push_back(std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count());

    // Plain git: the same kind of fast-forward, one `git push` to the other bare repository.
    sh("git checkout -q master && echo " + std::to_string(i) + " > p.txt && git add -A && " +
           "git commit -qm p" + std::to_string(i),
       dir / "work");
    auto p0 = SteadyClock::now();
    sh("git push -q " + url + "plain.git master", dir / "work");
    plain_ms.push_back(std::chrono::duration<double, std::milli>(SteadyClock::now() - p0).count());
  }
  server.stop();
  (*service)->stop();
  kill(-daemon, SIGTERM);
  waitpid(daemon, nullptr, 0);
  fs::remove_all(dir);

  std::printf("land_bench: %d rounds, git daemon on 127.0.0.1\n", rounds);
  std::printf("%-44s %10s %10s\n", "", "p50 ms", "p90 ms");
  std::printf("%-44s %10.1f %10.1f\n", "dmzbot: CI success -> master moved",
              percentile(dmzbot_ms, 0.5), percentile(dmzbot_ms, 0.9));
  std::printf("%-44s %10.1f %10.1f\n", "plain git push of a fast-forward",
              percentile(plain_ms, 0.5), percentile(plain_ms, 0.9));
  const double ratio = percentile(dmzbot_ms, 0.5) / percentile(plain_ms, 0.5);
  std::printf("dmzbot / plain push (p50): %.2fx (target <= 1.2x): %s\n", ratio,
              ratio <= 1.2 ? "met" : "NOT met");
  return 0;
}

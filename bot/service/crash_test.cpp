// Invariant 5 of DESIGN.md against the real binary: `dmzbot serve` killed with SIGKILL at
// arbitrary moments and restarted loses no queued PR and merges nothing twice.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "bot/ci/runner.hpp"
#include "bot/http/http_client.hpp"
#include "tests/git_daemon.hpp"
#include "tests/support.hpp"

namespace dmz {
namespace {

using namespace std::chrono_literals;
using test::must;

// A running `dmzbot serve`. It owns the process: however the test leaves its scope (a failed
// REQUIRE throws), the destructor kills and reaps it, so no server outlives its test.
struct Child {
  pid_t pid = -1;
  std::uint16_t port = 0;

  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  Child(Child&& other) noexcept
      : pid(std::exchange(other.pid, -1)), port(std::exchange(other.port, 0)) {}
  Child& operator=(Child&& other) noexcept {
    if (this != &other) {
      kill_hard();
      pid = std::exchange(other.pid, -1);
      port = std::exchange(other.port, 0);
    }
    return *this;
  }
  ~Child() { kill_hard(); }

  // SIGKILL and reap; a no-op once done.
  void kill_hard() {
    if (pid <= 0) return;
    kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    pid = -1;
  }
};

// One log per run of the server (serve.0.log, serve.1.log, ...), so that what an earlier run
// wrote is still there to check after a restart.
struct Logs {
  std::filesystem::path dir;
  std::vector<std::filesystem::path> runs;

  std::filesystem::path next() {
    return runs.emplace_back(dir / ("serve." + std::to_string(runs.size()) + ".log"));
  }
  const std::filesystem::path& last() const { return runs.back(); }
};

// Starts `dmzbot serve` with output to a new log and waits (bounded) until it answers /readyz.
Child start_server(const std::string& bin, const std::filesystem::path& config, Logs& logs) {
  const std::filesystem::path log = logs.next();
  const pid_t parent = getpid();
  Child c;
  c.pid = fork();
  REQUIRE(c.pid >= 0);
  if (c.pid == 0) {
    // Should the test process die before it can kill the server (a crash, a SIGKILL), the
    // kernel kills the server too; the check closes the race of a parent gone before prctl.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(126);
    FILE* out = std::freopen(log.c_str(), "w", stdout);
    if (out) dup2(fileno(out), 2);
    execl(bin.c_str(), bin.c_str(), "serve", "--config", config.c_str(), nullptr);
    _exit(127);
  }
  std::regex listening(R"(listening on http://127\.0\.0\.1:(\d+))");
  for (int i = 0; i < 500 && c.port == 0; ++i) {
    std::smatch m;
    std::string text = test::read_file(log);
    if (std::regex_search(text, m, listening))
      c.port = static_cast<std::uint16_t>(std::stoi(m[1]));
    else
      std::this_thread::sleep_for(20ms);
  }
  INFO("server log: ", test::read_file(log));
  REQUIRE(c.port != 0);
  return c;
}

void kill_hard(Child& c) { c.kill_hard(); }

TEST_CASE("kill -9 at arbitrary moments loses no queued PR and merges nothing twice") {
  const char* bin = std::getenv("DMZBOT_BIN");
  REQUIRE_MESSAGE(bin, "DMZBOT_BIN must name the dmzbot binary (ctest sets it)");
  test::TempDir dir;
  auto origin = dir / "origin.git", work = dir / "work";
  must("git init -q --bare -b master " + origin.string());
  std::string initial = test::init_repo(work, {{"test.sh", "#!/bin/sh\nsleep 0.2\n"}});
  must(test::git_env() + "git remote add origin " + origin.string(), work);
  must(test::git_env() + "git push -q origin master", work);
  std::vector<std::string> heads;
  const int kPrs = 4;
  for (int n = 1; n <= kPrs; ++n) {
    must(test::git_env() + "git checkout -q -b feature/f" + std::to_string(n) + " master", work);
    heads.push_back(test::commit_files(work, {{"f" + std::to_string(n) + ".txt", "x\n"}}, "f"));
    must(test::git_env() + "git push -q origin feature/f" + std::to_string(n), work);
  }
  // The remote is a separate process, as in production: a push cut off by the kill leaves
  // no lock behind in origin (libgit2's local transport would write origin's refs itself).
  test::GitDaemon daemon(dir.path(), "origin.git");
  REQUIRE_MESSAGE(!daemon.url().empty(), daemon.log());
  test::write_file(dir / "token", "crash-test-token\n");
  test::write_file(dir / "dmzbot.toml",
                   "data_dir = \"data\"\n[server]\nport = 0\n"
                   "[[repo]]\nname = \"acme/crash\"\nremote = \"" +
                       daemon.url() +
                       "\"\n"
                       "api_token = { file = \"token\" }\nstatus_token = { file = \"token\" }\n"
                       "[repo.runner]\ncommand = \"sh ./test.sh\"\ntimeout = 30\n"
                       // unconfined only where bubblewrap cannot work (serve would refuse)
                       "sandbox = \"" +
                       (check_sandbox(config::Runner{}).ok() ? "bwrap" : "none") + "\"\n");
  auto config = dir / "dmzbot.toml";
  Logs logs{dir.path()};
  auto api = [](const Child& c, const std::string& method, const std::string& path,
                const nlohmann::json& body) {
    return http_request("127.0.0.1", c.port, method, "/api/v1/repos/acme/crash" + path,
                        body.is_null() ? "" : body.dump(),
                        {{"Authorization", "Bearer crash-test-token"}}, 5s);
  };
  std::string last_queue;
  auto merged_count = [&](const Child& c) {
    auto r = api(c, "GET", "/queue", nullptr);
    last_queue = r ? r->body : r.message();
    if (!r || r->status != 200) return -1;
    // Merged PRs leave the hot state for the history: the queue document's "recent".
    std::set<int> merged;
    auto queue = nlohmann::json::parse(r->body);  // kept alive for the loops below
    for (const auto& pr : queue.at("prs"))
      if (pr.at("status") == "merged") merged.insert(pr.at("number").get<int>());
    for (const auto& h : queue.at("recent"))
      if (h.at("status") == "merged") merged.insert(h.at("number").get<int>());
    return static_cast<int>(merged.size());
  };

  Child c = start_server(bin, config, logs);
  for (int n = 1; n <= kPrs; ++n) {
    auto reg =
        api(c, "POST", "/pulls", {{"number", n}, {"branch", "feature/f" + std::to_string(n)}});
    REQUIRE(reg.ok());
    REQUIRE_MESSAGE(reg->status == 202, reg->body);
    auto ok = api(c, "POST", "/pulls/" + std::to_string(n) + "/merge",
                  {{"sha", heads[n - 1]}, {"approver", "mm"}});
    REQUIRE(ok.ok());
    REQUIRE_MESSAGE(ok->status == 202, ok->body);
  }
  // Kill at pseudo-random moments (fixed seed: a failure reproduces), restart each time.
  std::mt19937 rng(20261121);
  std::uniform_int_distribution<int> pause_ms(50, 600);
  int kills = 0;
  for (; kills < 12 && merged_count(c) < kPrs; ++kills) {
    std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(rng)));
    kill_hard(c);
    c = start_server(bin, config, logs);
  }
  int merged = 0;
  for (int i = 0; i < 600 && merged < kPrs; ++i) {
    merged = merged_count(c);
    if (merged < kPrs) std::this_thread::sleep_for(50ms);
  }
  kill_hard(c);
  INFO("kills: ", kills, "; queue: ", last_queue, "; server log: ", test::read_file(logs.last()));
  CHECK(merged == kPrs);
  // Every request carried the bearer token: none of it reaches the log of any run.
  for (const auto& log : logs.runs) {
    CAPTURE(log);
    CHECK(test::read_file(log).find("crash-test-token") == std::string::npos);
  }
  // Each PR merged exactly once, in queue order, every master step a merge of one PR.
  std::string subjects =
      must("git log --first-parent --reverse --format=%s " + initial + "..master", origin);
  CHECK(subjects ==
        "Merge #1 from feature/f1\nMerge #2 from feature/f2\nMerge #3 from feature/f3\n"
        "Merge #4 from feature/f4");
}

}  // namespace
}  // namespace dmz

namespace dmz {
namespace {

TEST_CASE("kill -9 after a back-out emptied the train: the restart puts dmz back on master") {
  const char* bin = std::getenv("DMZBOT_BIN");
  REQUIRE_MESSAGE(bin, "DMZBOT_BIN must name the dmzbot binary (ctest sets it)");
  test::TempDir dir;
  auto origin = dir / "origin.git", work = dir / "work";
  must("git init -q --bare -b master " + origin.string());
  test::init_repo(work, {{"test.sh", "#!/bin/sh\n! test -e FAIL\n"}});
  must(test::git_env() + "git remote add origin " + origin.string(), work);
  must(test::git_env() + "git push -q origin master", work);
  must(test::git_env() + "git checkout -q -b feature/bad master", work);
  std::string bad = test::commit_files(work, {{"FAIL", "x\n"}}, "breaks the build");
  must(test::git_env() + "git push -q origin feature/bad", work);
  const std::string master = must("git rev-parse master", origin);
  // The remote refuses to move an existing dmz back to master while the test says so: the
  // back-out's reset is lost exactly as if the service had died right after saving it.
  test::block_dmz_reset(origin, master);
  test::GitDaemon daemon(dir.path(), "origin.git");
  REQUIRE_MESSAGE(!daemon.url().empty(), daemon.log());
  test::write_file(dir / "token", "crash-test-token\n");
  test::write_file(dir / "dmzbot.toml",
                   "data_dir = \"data\"\n[server]\nport = 0\n"
                   "[[repo]]\nname = \"acme/crash\"\nremote = \"" +
                       daemon.url() +
                       "\"\napi_token = { file = \"token\" }\nstatus_token = { file = \"token\" }\n"
                       "[repo.runner]\ncommand = \"sh ./test.sh\"\ntimeout = 30\n");
  auto config = dir / "dmzbot.toml";
  Logs logs{dir.path()};
  auto api = [](const Child& c, const std::string& path, const nlohmann::json& body) {
    return http_request("127.0.0.1", c.port, "POST", "/api/v1/repos/acme/crash" + path, body.dump(),
                        {{"Authorization", "Bearer crash-test-token"}}, 5s);
  };

  Child c = start_server(bin, config, logs);
  REQUIRE(api(c, "/pulls", {{"number", 1}, {"branch", "feature/bad"}})->status == 202);
  REQUIRE(api(c, "/pulls/1/merge", {{"sha", bad}, {"approver", "mm"}})->status == 202);
  // The build fails, the back-out empties the train, its reset of dmz is refused.
  bool blocked = false;
  for (int i = 0; i < 600 && !blocked; ++i) {
    blocked = test::read_file(logs.last()).find("reset blocked by the test") != std::string::npos;
    if (!blocked) std::this_thread::sleep_for(50ms);
  }
  INFO("server log: ", test::read_file(logs.last()));
  REQUIRE(blocked);
  const std::string failed_candidate = must("git rev-parse dmz", origin);
  CHECK(failed_candidate != master);
  kill_hard(c);

  std::filesystem::remove(origin / "block-reset");
  c = start_server(bin, config, logs);
  std::string dmz;
  for (int i = 0; i < 600; ++i) {
    dmz = must("git rev-parse dmz", origin);
    if (dmz == master) break;
    std::this_thread::sleep_for(50ms);
  }
  kill_hard(c);
  CHECK(dmz == master);
}

}  // namespace
}  // namespace dmz

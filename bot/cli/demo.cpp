#include "bot/cli/demo.hpp"

#include <spdlog/spdlog.h>
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <thread>

#include "base/crypto.hpp"
#include "base/text.hpp"
#include "bot/ci/runner.hpp"
#include "bot/cli/serve.hpp"
#include "bot/http/http_client.hpp"
#include "bot/http/http_server.hpp"
#include "bot/service/service.hpp"
#include "queue/engine.hpp"

namespace dmz {
namespace fs = std::filesystem;
namespace q = queue;

namespace {

constexpr const char* kRepo = "demo/widget";

struct Shell {
  int code = -1;
  std::string out;
};

// The demo builds its sandbox with the git command line, exactly as a user would.
Shell sh(const std::string& command, const fs::path& cwd) {
  std::string full = "cd " + sh_quote(cwd.string()) + " && { " + command + " ; } 2>&1";
  Shell r;
  FILE* pipe = popen(full.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.out.append(buf.data(), n);
  int status = pclose(pipe);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  while (!r.out.empty() && r.out.back() == '\n') r.out.pop_back();
  return r;
}

const char* kGitEnv =
    "GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1 "
    "GIT_AUTHOR_NAME='Demo Dev' GIT_AUTHOR_EMAIL=dev@demo.invalid "
    "GIT_COMMITTER_NAME='Demo Dev' GIT_COMMITTER_EMAIL=dev@demo.invalid ";

bool git(const std::string& args, const fs::path& cwd, std::string* out = nullptr) {
  Shell r = sh(std::string(kGitEnv) + "git " + args, cwd);
  if (r.code != 0) spdlog::error("git {}: {}", args, r.out);
  if (out) *out = r.out;
  return r.code == 0;
}

void write(const fs::path& file, const std::string& text) {
  fs::create_directories(file.parent_path());
  std::ofstream(file) << text;
}

struct Branch {
  int number;
  std::string name, title, author;
  std::vector<std::pair<std::string, std::string>> files;
};

// The sample project: a tiny shell library whose test script is the CI command.
const char* kLib = "add() { echo $(($1 + $2)); }\n";
const char* kTest =
    "#!/bin/sh\nset -e\nsleep 1  # a build worth watching on the status page\nfor t in tests/*.sh; "
    "do sh \"$t\" || { echo \"FAIL $t\"; exit 1; }; done\n"
    "echo all tests passed\n";

std::vector<Branch> demo_branches() {
  return {
      {1,
       "feature/greeting",
       "Greet people by name",
       "alice",
       {{"greet.sh", "greet() { echo \"hello, $1\"; }\n"},
        {"tests/greet.sh", ". ./greet.sh\n[ \"$(greet bob)\" = \"hello, bob\" ]\n"},
        {"settings.conf", "greeting=hello\nlanguage=en\n"}}},
      {2,
       "bug/fast-add",
       "Make add faster",
       "bob",
       {{"lib.sh", "add() { echo $(($1 - $2)); }\n"}}},  // breaks tests/add.sh
      {3,
       "feature/farewell",
       "Say goodbye",
       "carol",
       {{"farewell.sh", "farewell() { echo \"bye, $1\"; }\n"},
        {"tests/farewell.sh", ". ./farewell.sh\n[ \"$(farewell bob)\" = \"bye, bob\" ]\n"}}},
      {4,
       "feature/salute",
       "Salute instead of greeting",
       "dave",
       {{"settings.conf", "greeting=salute\nlanguage=en\n"}}},  // conflicts with #1
  };
}

Status make_sandbox(const fs::path& dir, std::string* master) {
  fs::path work = dir / "work", origin = dir / "origin.git";
  fs::create_directories(work);
  if (!git("init -q --bare -b master " + sh_quote(origin.string()), dir) ||
      !git("-C " + sh_quote(origin.string()) + " config core.logAllRefUpdates always", dir))
    return error("cannot create the origin repository");
  write(work / "lib.sh", kLib);
  write(work / "test.sh", kTest);
  write(work / "tests/add.sh", ". ./lib.sh\n[ \"$(add 2 3)\" = 5 ]\n");
  write(work / "settings.conf", "greeting=hi\nlanguage=en\n");
  write(work / "README.md", "# widget\n\nA tiny project that dmzbot's demo merges into.\n");
  if (!git("init -q -b master .", work) || !git("add -A", work) ||
      !git("commit -q -m 'Initial project'", work) ||
      !git("remote add origin " + sh_quote(origin.string()), work) ||
      !git("push -q origin master", work) || !git("rev-parse HEAD", work, master))
    return error("cannot create the sample project");
  for (const auto& b : demo_branches()) {
    if (!git("checkout -q -b " + b.name + " master", work)) return error("branch " + b.name);
    for (const auto& [file, text] : b.files) write(work / file, text);
    if (!git("add -A", work) || !git("commit -q -m " + sh_quote(b.title), work) ||
        !git("push -q origin " + b.name, work))
      return error("cannot push " + b.name);
  }
  // A work-in-progress branch, which the DMZ flow never merges.
  if (!git("checkout -q -b wip/experiment master", work) ||
      !git("commit -q --allow-empty -m 'Half-done idea'", work) ||
      !git("push -q origin wip/experiment", work))
    return error("cannot push wip/experiment");
  return {};
}

// The bot's signing key, made fresh for each sandbox (never shipped, never committed).
Status make_bot_key(const fs::path& dir) {
  Shell r = sh("ssh-keygen -q -t ed25519 -N '' -C dmzbot@demo -f bot_key", dir);
  if (r.code != 0) return error("ssh-keygen: " + r.out);
  std::ifstream pub(dir / "bot_key.pub");
  std::string line;
  std::getline(pub, line);
  write(dir / "allowed_signers", "dmzbot@demo " + line + "\n");
  return {};
}

config::Config demo_config(const fs::path& dir, std::uint16_t port, const std::string& token) {
  config::Config cfg;
  cfg.signing.format = "ssh";
  cfg.signing.key = dir / "bot_key";
  cfg.signing.email = "dmzbot@demo";
  cfg.file = dir / "dmzbot.toml";
  cfg.data_dir = dir / "data";
  cfg.server.port = port;
  config::Repo repo;
  repo.name = kRepo;
  repo.remote = (dir / "origin.git").string();
  repo.api_token = config::Secret(token);
  repo.status_token = config::Secret(token);
  repo.check_timeout = std::chrono::seconds(120);
  config::Runner runner;
  runner.command = "sh ./test.sh";
  runner.timeout = std::chrono::seconds(60);
  runner.max_parallel = 2;
  repo.runner = runner;
  repo.required_checks = {runner.context};
  cfg.repos.push_back(repo);
  return cfg;
}

struct Api {
  std::uint16_t port;
  std::string token;

  Result<ClientResponse> post(const std::string& path, const nlohmann::json& body) const {
    return http_request(
        "127.0.0.1", port, "POST", std::string("/api/v1/repos/") + kRepo + path, body.dump(),
        {{"Authorization", "Bearer " + token}, {"Content-Type", "application/json"}});
  }
};

std::string clock_now() {
  std::time_t t = std::time(nullptr);
  char buf[16];
  std::strftime(buf, sizeof buf, "%H:%M:%S", std::localtime(&t));
  return buf;
}

void say(const std::string& line) {
  std::printf("[%s] %s\n", clock_now().c_str(), line.c_str());
  std::fflush(stdout);
}

bool enqueue(const Api& api, const Branch& b, const std::string& head) {
  auto reg = api.post(
      "/pulls",
      {{"number", b.number}, {"branch", b.name}, {"author", b.author}, {"title", b.title}});
  if (!reg || reg->status != 202) {
    say("could not register #" + std::to_string(b.number) + ": " +
        (reg ? reg->body : reg.message()));
    return false;
  }
  auto merge = api.post("/pulls/" + std::to_string(b.number) + "/merge",
                        {{"sha", head}, {"approver", "merge-master"}});
  if (!merge || merge->status != 202) {
    say("could not approve #" + std::to_string(b.number) + ": " +
        (merge ? merge->body : merge.message()));
    return false;
  }
  say("#" + std::to_string(b.number) + " " + b.name + " registered and approved at " +
      head.substr(0, 8));
  return true;
}

// The address (a path on the service) of the build log a failure reason links, if any.
std::optional<std::string> log_link(const q::PullRequest& pr) {
  for (const auto& d : pr.details)
    if (d.starts_with("/api/v1/repos/")) return d;
  return std::nullopt;
}

bool terminal(q::PrStatus s) {
  return s == q::PrStatus::Merged || s == q::PrStatus::Failed || s == q::PrStatus::Cancelled;
}

// Prints every status change since the last call, with a failed build's log address on
// `base` (http://host:port); returns true once every PR is settled.
// Every PR the demo registered, as it stands now: in the queue, or finished and moved to the
// history (a merged PR leaves the hot state at once).
struct DemoState {
  std::map<int, q::PullRequest> prs;
  bool train_empty = false;
};

std::optional<DemoState> demo_state(Service& service) {
  auto hot = service.state(kRepo);
  if (!hot) return std::nullopt;
  DemoState out;
  out.train_empty = hot->train.empty();
  for (const auto& b : demo_branches())
    if (auto v = service.pull_now(kRepo, b.number); v) out.prs[b.number] = v->pr;
  return out;
}

bool report_progress(const DemoState& state, std::map<int, q::PrStatus>& last,
                     const std::string& base) {
  bool settled = state.train_empty;
  for (const auto& [n, pr] : state.prs) {
    auto it = last.find(n);
    if (it == last.end() || it->second != pr.status) {
      std::string line =
          "#" + std::to_string(n) + " " + pr.branch + ": " + std::string(q::to_string(pr.status));
      if (!pr.reason.empty() &&
          (pr.status == q::PrStatus::Failed || pr.status == q::PrStatus::Cancelled))
        line += " (" + pr.reason + ")";
      say(line);
      if (auto link = log_link(pr); link && pr.status == q::PrStatus::Failed)
        say("   log: " + base + *link);
      last[n] = pr.status;
    }
    settled = settled && terminal(pr.status);
  }
  return settled;
}

// The outcome the demo promises: master holds exactly the passing PRs, every master update was
// a fast-forward, and the failing and conflicting PRs carry their reasons.
std::vector<std::string> check_outcome(const fs::path& dir, const DemoState& state,
                                       const std::string& initial_master, std::uint16_t port) {
  std::vector<std::string> problems;
  fs::path origin = dir / "origin.git";
  auto status_of = [&](int n) {
    return state.prs.count(n) ? state.prs.at(n).status : q::PrStatus::Open;
  };
  auto reason_of = [&](int n) {
    return state.prs.count(n) ? state.prs.at(n).reason : std::string();
  };
  if (status_of(1) != q::PrStatus::Merged) problems.push_back("#1 was not merged");
  if (status_of(3) != q::PrStatus::Merged) problems.push_back("#3 was not merged");
  if (status_of(2) != q::PrStatus::Failed || reason_of(2).find("failed") == std::string::npos)
    problems.push_back("#2 should have failed its build, is " +
                       std::string(q::to_string(status_of(2))) + " " + reason_of(2));
  // #2's reason links its build log, which the service serves.
  if (state.prs.count(2)) {
    auto link = log_link(state.prs.at(2));
    auto log = link ? http_request("127.0.0.1", port, "GET", *link)
                    : Result<ClientResponse>(error("no log link"));
    if (!log || log->status != 200 || log->body.find("[dmzbot] exit code") == std::string::npos)
      problems.push_back("#2's build log is not served: " + (log ? log->body : log.message()));
  }
  if (status_of(4) != q::PrStatus::Failed || reason_of(4).find("conflict") == std::string::npos)
    problems.push_back("#4 should have failed with a conflict, is " +
                       std::string(q::to_string(status_of(4))) + " " + reason_of(4));

  // master's first-parent history since the initial commit: exactly the merges of #1 and #3.
  std::string log;
  git("log --first-parent --format=%s " + initial_master + "..master", origin, &log);
  std::istringstream lines(log);
  std::vector<std::string> subjects;
  for (std::string s; std::getline(lines, s);) subjects.insert(subjects.begin(), s);
  if (subjects.size() != 2 || subjects[0].rfind("Merge #1 ", 0) != 0 ||
      subjects[1].rfind("Merge #3 ", 0) != 0)
    problems.push_back("master does not hold exactly #1 then #3: " + log);

  // Every update of master recorded in origin's reflog was a fast-forward.
  std::ifstream reflog(origin / "logs/refs/heads/master");
  int updates = 0;
  for (std::string line; std::getline(reflog, line);) {
    std::istringstream in(line);
    std::string old_sha, new_sha;
    in >> old_sha >> new_sha;
    if (old_sha.find_first_not_of('0') == std::string::npos) continue;  // creation
    ++updates;
    if (sh("git merge-base --is-ancestor " + old_sha + " " + new_sha, origin).code != 0)
      problems.push_back("master moved from " + old_sha + " to " + new_sha +
                         " without a fast-forward");
  }
  if (updates != 2)
    problems.push_back("expected 2 updates of master, saw " + std::to_string(updates));

  // Every merge commit on master carries the bot's signature, as git itself verifies it.
  std::string merges;
  git("rev-list --merges " + initial_master + "..master", origin, &merges);
  std::istringstream merge_lines(merges);
  for (std::string sha; std::getline(merge_lines, sha);) {
    Shell v = sh(std::string(kGitEnv) + "git -c " +
                     sh_quote("gpg.ssh.allowedSignersFile=" + (dir / "allowed_signers").string()) +
                     " verify-commit " + sha,
                 origin);
    if (v.code != 0) problems.push_back("merge " + sha + " is not signed by dmzbot: " + v.out);
  }
  return problems;
}

}  // namespace

namespace {

// The demo in its sandbox `dir`, with everything it starts stopped when it returns.
int demo_in(const DemoOptions& options, const fs::path& dir) {
  std::string initial_master;
  if (Status s = make_sandbox(dir, &initial_master); !s.ok()) {
    say("cannot build the sandbox: " + s.message());
    return 1;
  }

  if (Status s = make_bot_key(dir); !s.ok()) {
    say("cannot make the bot's signing key: " + s.message());
    return 1;
  }
  std::string token = random_hex(16);
  config::Config cfg = demo_config(dir, options.port, token);
  // The demo builds only its own sample project, so where the sandbox cannot work (e.g. in a
  // container without user namespaces) it says so and builds unconfined; `serve` refuses.
  if (Status s = check_sandbox(*cfg.repos[0].runner); !s.ok()) {
    say("note: " + s.message() + "; the demo builds its own sample project without it");
    cfg.repos[0].runner->sandbox = "none";
  }
  Service::Options service_options;
  service_options.fetch_interval = std::chrono::milliseconds(1000);
  service_options.tick_interval = std::chrono::milliseconds(200);
  auto service = Service::start(cfg, service_options);
  if (!service) {
    say("cannot start the service: " + service.message());
    return 1;
  }
  HttpServer server(cfg.server, make_api(**service));
  auto port = server.start();
  if (!port) {
    say("cannot listen on port " + std::to_string(options.port) + ": " + port.message());
    return 1;
  }
  say("status page: http://127.0.0.1:" + std::to_string(*port) + "/repos/" + kRepo);
  say("queue JSON:  http://127.0.0.1:" + std::to_string(*port) + "/api/v1/repos/" + kRepo +
      "/queue");

  Api api{*port, token};
  for (const auto& b : demo_branches()) {
    std::string head;
    git("rev-parse " + b.name, dir / "origin.git", &head);
    if (!enqueue(api, b, head)) return 1;
  }
  auto wip = api.post("/pulls", {{"number", 5}, {"branch", "wip/experiment"}, {"author", "erin"}});
  say("wip/experiment as #5: " +
      (wip ? std::to_string(wip->status) + " " + wip->body : wip.message()));

  std::map<int, q::PrStatus> last;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(options.timeout_s);
  bool settled = false;
  bool announced = false;
  bool unexpected = false;  // the outcome check found problems: the demo failed
  for (;;) {
    auto state = demo_state(**service);
    if (state) settled = report_progress(*state, last, "http://127.0.0.1:" + std::to_string(*port));
    if (settled && !announced) {
      auto problems = check_outcome(dir, *state, initial_master, *port);
      for (const auto& p : problems) say("UNEXPECTED: " + p);
      unexpected = !problems.empty();
      if (problems.empty())
        say("queue drained: master holds #1 and #3, each a signed merge reached by fast-forward; "
            "#2 and #4 were backed out with reasons");
      if (options.until_idle) {
        server.stop();
        (*service)->stop();
        return problems.empty() ? 0 : 1;
      }
      say("the service keeps running; press Ctrl-C to stop");
      announced = true;
    }
    if (options.until_idle && std::chrono::steady_clock::now() > deadline) {
      say("the queue did not drain within " + std::to_string(options.timeout_s) + "s");
      return 1;
    }
    if (wait_for_shutdown_signal(300)) break;
  }
  server.stop();
  (*service)->stop();
  // Only a signal gets --until-idle here: the outcome it exits 0 for was never reached.
  if (options.until_idle) {
    say("interrupted before the queue drained");
    return 1;
  }
  return unexpected ? 1 : 0;
}

}  // namespace

int run_demo(const DemoOptions& options) {
  block_shutdown_signals();
  fs::path dir = options.dir;
  std::error_code ec;
  if (dir.empty()) {
    const fs::path tmp = fs::temp_directory_path(ec);
    if (ec) return say("no directory for temporary files: " + ec.message()), 1;
    std::string pattern = (tmp / "dmzbot-demo-XXXXXX").string();
    if (!mkdtemp(pattern.data())) return std::perror(pattern.c_str()), 1;
    dir = pattern;
  }
  // The demo fills its directory and removes it when it ends: never one that holds something
  // already.
  if (fs::exists(dir, ec) && !(fs::is_directory(dir, ec) && fs::is_empty(dir, ec))) {
    say(dir.string() + ": not an empty directory; give --dir a new or empty one");
    return 2;
  }
  fs::create_directories(dir, ec);
  if (!ec) dir = fs::canonical(dir, ec);
  if (ec) return say(dir.string() + ": cannot create the demo's directory: " + ec.message()), 2;
  say("sandbox: " + dir.string());
  const int rc = demo_in(options, dir);
  // A demo that went wrong keeps its sandbox to be looked at; one that ended well (or was
  // stopped) leaves nothing behind, not even its throwaway signing key.
  if (rc == 0 && !options.keep)
    fs::remove_all(dir, ec);
  else
    say("sandbox kept: " + dir.string());
  return rc;
}

}  // namespace dmz

// Tests of the local CI runner with real /bin/sh commands. Every wait is bounded (a condition
// variable with a timeout); no test sleeps blindly for long.
#include "bot/ci/runner.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

#include "bot/http/http_server.hpp"
#include "tests/support.hpp"

namespace fs = std::filesystem;
using namespace dmz;
using namespace dmz::test;
using namespace std::chrono_literals;
using queue::CheckState;

namespace {

struct Report {
  std::string repo, sha;
  queue::Check check;
};

// Records what the runner reports; waits for it with a deadline.
class Recorder {
 public:
  LocalRunner::Done callback() {
    return [this](const std::string& repo, const queue::Sha& sha, queue::Check c) {
      std::lock_guard lock(mu_);
      reports_.push_back({repo, sha, std::move(c)});
      cv_.notify_all();
    };
  }
  // Waits until `sha` has a final (non-Pending) report; returns it.
  std::optional<Report> final_for(const std::string& sha, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mu_);
    std::optional<Report> found;
    cv_.wait_for(lock, timeout, [&] {
      for (const auto& r : reports_)
        if (r.sha == sha && r.check.state != CheckState::Pending) found = r;
      return found.has_value();
    });
    return found;
  }
  bool wait_pending(const std::string& sha, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] {
      for (const auto& r : reports_)
        if (r.sha == sha && r.check.state == CheckState::Pending) return true;
      return false;
    });
  }
  std::vector<Report> all() {
    std::lock_guard lock(mu_);
    return reports_;
  }
  std::vector<Report> for_sha(const std::string& sha) {
    std::vector<Report> out;
    for (auto& r : all())
      if (r.sha == sha) out.push_back(r);
    return out;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Report> reports_;
};

LocalRunner::Export write_tree(std::vector<std::pair<std::string, std::string>> files) {
  return [files](const fs::path& dir) -> Status {
    for (const auto& [name, content] : files) write_file(dir / name, content);
    return {};
  };
}

// Unconfined, so that commands can leave marks (pids, order files) where the test looks; the
// sandbox has its own tests below.
config::Runner cfg(std::string command, int max_parallel = 2, std::chrono::seconds timeout = 30s) {
  config::Runner c;
  c.command = std::move(command);
  c.context = "dmzbot/local";
  c.max_parallel = max_parallel;
  c.timeout = timeout;
  c.sandbox = "none";
  return c;
}

config::Runner sandboxed(std::string command, std::chrono::seconds timeout = 30s) {
  auto c = cfg(std::move(command), 1, timeout);
  c.sandbox = "bwrap";
  return c;
}

// Whether bubblewrap works on this machine; where it cannot (no user namespaces, as in many
// containers) the sandboxed tests say so and stop: dmzbot serve refuses to start there (see
// bot/cli/cli_test.cpp), so no build would ever run in it. Where the sandbox must work
// (DMZ_REQUIRE_SANDBOX=1, as CI sets it), that is a failure instead: a skipped test would pass.
bool sandbox_works() {
  static const Status probe = check_sandbox(sandboxed("true"));
  if (probe.ok()) return true;
  const char* required = std::getenv("DMZ_REQUIRE_SANDBOX");
  if (required && std::string_view(required) == "1")
    FAIL("DMZ_REQUIRE_SANDBOX=1, but " << probe.message());
  MESSAGE("not run here: " << probe.message());
  return false;
}

// Pids of live processes whose command line contains `needle`.
std::vector<int> processes_with(const std::string& needle) {
  std::vector<int> out;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = read_file(entry.path() / "cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(needle) != std::string::npos) out.push_back(std::stoi(name));
  }
  return out;
}

// Waits (bounded) until `file` exists.
bool wait_file(const fs::path& file, std::chrono::milliseconds timeout = 10s) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (!fs::exists(file)) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// Waits (bounded) until no process has the pid written in `pid_file`.
bool wait_gone(const fs::path& pid_file, std::chrono::milliseconds timeout = 5s) {
  std::string text = read_file(pid_file);
  REQUIRE_FALSE(text.empty());
  pid_t pid = std::stoi(text);
  auto end = std::chrono::steady_clock::now() + timeout;
  while (::kill(pid, 0) == 0) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

}  // namespace

TEST_CASE("a passing command reports Pending then Success, with env, log and cleanup") {
  TempDir tmp;
  Recorder rec;
  const std::string sha = "aaaa000000000000000000000000000000000001";
  {
    ::setenv("DMZBOT_TEST_SECRET", "hunter2", 1);  // the bot's environment stays private
    LocalRunner runner(cfg("cat marker.txt && echo \"sha=$DMZ_SHA repo=$DMZ_REPO\" && pwd > " +
                           shell_quote((tmp / "pwd").string()) +
                           " && echo \"secret=$DMZBOT_TEST_SECRET\" && command -v ls >/dev/null"),
                       tmp / "logs", rec.callback());
    runner.start("owner/name", sha, write_tree({{"marker.txt", "from the tree\n"}}));
    auto r = rec.final_for(sha);
    REQUIRE(r.has_value());
    CHECK(r->repo == "owner/name");
    CHECK(r->check.state == CheckState::Success);
    CHECK(starts_with(r->check.description, "passed in "));
    CHECK(r->check.description.back() == 's');
    CHECK(r->check.context == "dmzbot/local");
    CHECK(r->check.url == "/api/v1/repos/owner/name/logs/" + sha);  // no server path leaks
    CHECK(r->check.url == build_log_url("owner/name", sha));
    CHECK(runner.log_file(sha) == tmp / "logs" / (sha + ".log"));
    CHECK(r->check.at == 0);  // the service stamps checks with its own clock

    auto reports = rec.for_sha(sha);
    REQUIRE(reports.size() == 2);
    CHECK(reports[0].check.state == CheckState::Pending);
    CHECK(reports[0].check.description == "running");
    CHECK(reports[0].check.url == r->check.url);

    std::string log = read_file(runner.log_file(sha));
    CHECK(starts_with(log, "from the tree\nsha=" + sha + " repo=owner/name\nsecret=\n"));
    ::unsetenv("DMZBOT_TEST_SECRET");
    std::string pwd = read_file(tmp / "pwd");
    REQUIRE(!pwd.empty());
    pwd.pop_back();
    CHECK(starts_with(fs::path(pwd).filename().string(), "build-"));
    CHECK_FALSE(fs::exists(pwd));  // the build directory is gone
  }
}

TEST_CASE("a runner started after a killed one kills its orphaned build and clears the debris") {
  TempDir dir;
  const fs::path work = dir / "builds", pid_file = dir / "sleeper.pid";
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // A dmzbot that dies in the middle of an unsandboxed build: the build outlives it.
    LocalRunner runner(
        cfg("echo $$ > " + shell_quote(pid_file.string()) + "; exec sleep 300"), dir / "logs",
        [](const std::string&, const queue::Sha&, queue::Check) {}, {}, work);
    runner.start("o/n", "deadbeef", write_tree({{"x", "y"}}));
    // Dies once the build runs and the runner has recorded it (its thread may write the
    // record after the build has started).
    auto recorded = [&] {
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(work, ec))
        if (e.path().extension() == ".pid" && !read_file(e.path()).empty()) return true;
      return false;
    };
    for (int i = 0; i < 1000 && (read_file(pid_file).empty() || !recorded()); ++i) ::usleep(10'000);
    _exit(0);  // no destructors, as after kill -9
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(wait_file(pid_file));
  REQUIRE_FALSE(read_file(pid_file).empty());
  const pid_t sleeper = std::stoi(read_file(pid_file));
  CHECK(::kill(sleeper, 0) == 0);  // still running, its directory still there
  CHECK_FALSE(fs::is_empty(work));

  Recorder r;
  LocalRunner again(cfg("true"), dir / "logs", r.callback(), {}, work);
  CHECK(wait_gone(pid_file));  // killed rather than left to run beside its rebuild
  CHECK(fs::is_empty(work));   // and its directory is gone
}

TEST_CASE("read_build_log: whole, missing, cut to its tail, or unreadable") {
  TempDir tmp;
  fs::create_directories(tmp / "logs");
  write_file(tmp / "logs" / "abc.log", "line one\nline two\n");
  CHECK(read_build_log(tmp / "logs", "abc", 100).value() == "line one\nline two\n");
  CHECK(read_build_log(tmp / "logs", "abc", 9).value() ==
        "[dmzbot] log cut: showing the last 9 of 18 bytes\nline two\n");
  CHECK_FALSE(read_build_log(tmp / "logs", "nope", 100).value().has_value());
  write_file(tmp / "logs" / "empty.log", "");
  CHECK(read_build_log(tmp / "logs", "empty", 100).value() == "");
  // The disk's failures (here as root too: a directory where the log is, a file where the
  // directory is) are unavailable, not "no log" and not a log cut short.
  fs::create_directories(tmp / "logs" / "dir.log");
  auto unreadable = read_build_log(tmp / "logs", "dir", 100);
  REQUIRE_FALSE(unreadable.ok());
  CHECK(unreadable.code() == Code::kUnavailable);
  CHECK(unreadable.message().find("cannot read") != std::string::npos);
  write_file(tmp / "file", "x");
  auto unopenable = read_build_log(tmp / "file", "abc", 100);
  REQUIRE_FALSE(unopenable.ok());
  CHECK(unopenable.code() == Code::kUnavailable);
  CHECK(unopenable.message().find("cannot open") != std::string::npos);
}

TEST_CASE("a build runs in a session of its own, without dmzbot's controlling terminal") {
  TempDir tmp;
  Recorder rec;
  LocalRunner runner(cfg("cut -d' ' -f6 /proc/self/stat"), tmp / "logs", rec.callback());
  runner.start("o/r", "session", write_tree({}));
  auto r = rec.final_for("session");
  REQUIRE(r.has_value());
  CHECK(r->check.state == CheckState::Success);
  const std::string log = read_file(runner.log_file("session"));
  REQUIRE(!log.empty());
  CHECK(std::stol(log) != static_cast<long>(::getsid(0)));
}

TEST_CASE("a failing command reports its exit code and keeps its output") {
  TempDir tmp;
  Recorder rec;
  LocalRunner runner(cfg("echo compiling; echo 'error: it broke' >&2; exit 3"), tmp / "logs",
                     rec.callback());
  runner.start("o/r", "bad", write_tree({}));
  auto r = rec.final_for("bad");
  REQUIRE(r.has_value());
  CHECK(r->check.state == CheckState::Failure);
  CHECK(starts_with(r->check.description, "exit code 3 after "));
  std::string log = read_file(runner.log_file("bad"));
  CHECK(starts_with(log, "compiling\nerror: it broke\n"));
  CHECK(log.find("[dmzbot] exit code 3 after ") != std::string::npos);
}

TEST_CASE("a build gets stdin, stdout and stderr, and no other descriptor of dmzbot's") {
  // Like Asio's listening socket and the HTTP client's sockets: not close-on-exec. A build that
  // inherited the listener could accept dmzbot's requests and print their tokens.
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(listener >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(listener, 1) == 0);
  int file = ::open("/dev/null", O_RDONLY);
  REQUIRE(file >= 0);
  for (std::string sandbox : {"none", "bwrap"}) {
    CAPTURE(sandbox);
    if (sandbox == "bwrap" && !sandbox_works()) continue;
    TempDir tmp;
    Recorder rec;
    auto c = cfg("ls /proc/$$/fd; echo end");  // the shell's own descriptors
    c.sandbox = sandbox;
    LocalRunner runner(c, tmp / "logs", rec.callback());
    runner.start("o/r", "fds", write_tree({}));
    auto r = rec.final_for("fds");
    REQUIRE(r.has_value());
    const std::string log = read_file(runner.log_file("fds"));
    CAPTURE(log);
    CHECK(r->check.state == CheckState::Success);
    CHECK(starts_with(log, "0\n1\n2\nend\n"));
  }
  ::close(file);
  ::close(listener);
}

TEST_CASE("a build whose output passes the log's cap is stopped and fails; its log holds the cap") {
  TempDir tmp;
  Recorder rec;
  SUBCASE("a build that writes on is stopped long before its timeout") {
    auto begin = std::chrono::steady_clock::now();
    LocalRunner runner(cfg("yes", 1, 30s), tmp / "logs", rec.callback(), {}, {},
                       {.max_bytes = 1 << 20});
    runner.start("o/r", "loud", write_tree({}));
    auto r = rec.final_for("loud", 20s);
    REQUIRE(r.has_value());
    CHECK(r->check.state == CheckState::Failure);
    CHECK(r->check.description == "log exceeded 1 MiB");
    CHECK(std::chrono::steady_clock::now() - begin < 10s);
    const std::string tail = "[dmzbot] log exceeded 1 MiB\n";
    CHECK(fs::file_size(runner.log_file("loud")) == (1 << 20) + tail.size());
    CHECK(read_file(runner.log_file("loud")).ends_with("y\n" + tail));
  }
  SUBCASE("up to the cap is fine; one byte more fails, even from a build that exited at once") {
    LocalRunner runner(cfg("head -c $DMZ_SHA /dev/zero | tr '\\0' x"), tmp / "logs", rec.callback(),
                       {}, {}, {.max_bytes = 1000});
    runner.start("o/r", "1000", write_tree({}));
    runner.start("o/r", "1001", write_tree({}));
    auto fits = rec.final_for("1000"), over = rec.final_for("1001");
    REQUIRE(fits.has_value());
    REQUIRE(over.has_value());
    CHECK(fits->check.state == CheckState::Success);
    CHECK(starts_with(read_file(runner.log_file("1000")),
                      std::string(1000, 'x') + "[dmzbot] passed in "));
    CHECK(over->check.state == CheckState::Failure);
    CHECK(over->check.description == "log exceeded 1000 bytes");
    CHECK(read_file(runner.log_file("1001")) ==
          std::string(1000, 'x') + "[dmzbot] log exceeded 1000 bytes\n");
  }
}

TEST_CASE("logs older than their retention are deleted: as builds start, and by prune_logs") {
  TempDir tmp;
  Recorder rec;
  const auto now = fs::file_time_type::clock::now();
  const auto days = [](int n) { return std::chrono::hours(24 * n); };
  for (const char* name : {"old.log", "recent.log", "notes.txt"})
    write_file(tmp / "logs" / name, "output\n");
  fs::last_write_time(tmp / "logs" / "old.log", now - days(31));
  fs::last_write_time(tmp / "logs" / "recent.log", now - days(29));
  fs::last_write_time(tmp / "logs" / "notes.txt", now - days(400));  // not a build log
  LocalRunner runner(cfg("true"), tmp / "logs", rec.callback());     // keeps them 30 days
  runner.start("o/r", "new", write_tree({}));
  REQUIRE(rec.final_for("new").has_value());
  CHECK_FALSE(fs::exists(tmp / "logs" / "old.log"));
  CHECK(fs::exists(tmp / "logs" / "recent.log"));
  CHECK(fs::exists(tmp / "logs" / "notes.txt"));
  CHECK(fs::exists(runner.log_file("new")));

  CHECK(runner.prune_logs(days(28)) == 1);
  CHECK_FALSE(fs::exists(tmp / "logs" / "recent.log"));
  CHECK(fs::exists(runner.log_file("new")));
  CHECK(fs::exists(tmp / "logs" / "notes.txt"));
  CHECK(runner.prune_logs(days(28)) == 0);
}

TEST_CASE("a command that runs too long is killed with its process group") {
  TempDir tmp;
  Recorder rec;
  auto begin = std::chrono::steady_clock::now();
  {
    // The background sleep is in the same process group and must die too.
    LocalRunner runner(
        cfg("sleep 30 & echo $! > " + shell_quote((tmp / "bg.pid").string()) + "; sleep 30", 1, 1s),
        tmp / "logs", rec.callback());
    runner.start("o/r", "slow", write_tree({}));
    auto r = rec.final_for("slow");
    REQUIRE(r.has_value());
    CHECK(r->check.state == CheckState::Failure);
    CHECK(r->check.description == "timed out after 1s");
    CHECK(wait_gone(tmp / "bg.pid"));
  }
  CHECK(std::chrono::steady_clock::now() - begin < 6s);
}

TEST_CASE("max_parallel bounds how many commands run at once") {
  TempDir tmp;
  Recorder rec;
  const std::string order = shell_quote((tmp / "order").string());
  SUBCASE("one at a time, in order") {
    LocalRunner runner(
        cfg("echo start $DMZ_SHA >> " + order + "; sleep 0.3; echo end $DMZ_SHA >> " + order, 1),
        tmp / "logs", rec.callback());
    runner.start("o/r", "first", write_tree({}));
    runner.start("o/r", "second", write_tree({}));
    REQUIRE(rec.final_for("first").has_value());
    REQUIRE(rec.final_for("second").has_value());
    CHECK(read_file(tmp / "order") == "start first\nend first\nstart second\nend second\n");
  }
  SUBCASE("three builds, two workers: two run at once, never three") {
    // Each build marks itself running, waits (bounded) until a second one runs beside it or one
    // has finished (the third starts only then), then counts the running builds a few times
    // before it unmarks itself: the count is 2 at some point and never more.
    const std::string d = shell_quote(tmp.path().string());
    LocalRunner runner(
        cfg("d=" + d +
                "; touch \"$d/run-$DMZ_SHA\"; "
                "running() { set -- \"$d\"/run-*; echo $#; }; "
                "finished() { set -- \"$d\"/done-*; [ -e \"$1\" ]; }; "
                "i=0; while [ \"$(running)\" -lt 2 ] && ! finished && [ $i -lt 100 ]; do "
                "i=$((i+1)); sleep 0.02; done; "
                "for k in 1 2 3 4; do running >> \"$d/seen-$DMZ_SHA\"; sleep 0.05; done; "
                "touch \"$d/done-$DMZ_SHA\"; rm \"$d/run-$DMZ_SHA\"",
            2),
        tmp / "logs", rec.callback());
    for (const char* sha : {"a", "b", "c"}) runner.start("o/r", sha, write_tree({}));
    int most = 0;
    for (const char* sha : {"a", "b", "c"}) {
      CAPTURE(sha);
      auto r = rec.final_for(sha);
      REQUIRE(r.has_value());
      CHECK(r->check.state == CheckState::Success);
      std::istringstream seen(read_file(tmp / (std::string("seen-") + sha)));
      int samples = 0;
      for (int running; seen >> running; ++samples) most = std::max(most, running);
      CHECK(samples == 4);
    }
    CHECK(most == 2);
  }
}

TEST_CASE("cancel kills a running build, drops a queued one, and nothing is reported") {
  TempDir tmp;
  Recorder rec;
  const std::string d = shell_quote(tmp.path().string());
  LocalRunner runner(cfg("echo $$ > " + d + "/$DMZ_SHA.tmp; mv " + d + "/$DMZ_SHA.tmp " + d +
                             "/$DMZ_SHA.pid; [ $DMZ_SHA = quick ] || sleep 30",
                         1),
                     tmp / "logs", rec.callback());
  runner.start("o/r", "running", write_tree({}));
  runner.start("o/r", "queued", write_tree({}));
  REQUIRE(rec.wait_pending("running"));
  REQUIRE(wait_file(tmp / "running.pid"));
  runner.cancel("queued");
  runner.cancel("running");
  CHECK(wait_gone(tmp / "running.pid"));
  // The worker is free again: a new build runs and reports.
  runner.start("o/r", "quick", write_tree({}));
  auto quick = rec.final_for("quick");
  REQUIRE(quick.has_value());
  CHECK(quick->check.state == CheckState::Success);
  CHECK_FALSE(rec.final_for("running", 200ms).has_value());
  CHECK(rec.for_sha("running").size() == 1);  // only its Pending
  CHECK(rec.for_sha("queued").empty());
  CHECK_FALSE(fs::exists(tmp / "queued.pid"));
}

TEST_CASE("a tree that cannot be exported is an Error check at once, and no command runs") {
  TempDir tmp;
  Recorder rec;
  int exports = 0;
  LocalRunner runner(cfg("touch " + shell_quote((tmp / "ran").string())), tmp / "logs",
                     rec.callback());
  runner.start("o/r", "noexport", [&](const fs::path&) -> Status {
    ++exports;
    return invalid("unsafe path in tree: ../x");  // the tree's fault: no retry helps
  });
  auto r = rec.final_for("noexport");
  REQUIRE(r.has_value());
  CHECK(r->check.state == CheckState::Error);
  CHECK(r->check.description == "export failed: unsafe path in tree: ../x");
  CHECK(rec.for_sha("noexport").size() == 1);  // no Pending: the command never started
  CHECK(exports == 1);
  CHECK_FALSE(fs::exists(tmp / "ran"));
  CHECK(read_file(runner.log_file("noexport")).find("unsafe path") != std::string::npos);
}

// The runner's own failures are not the PR's: it tries again after each wait, and reports
// Error, saying it is dmzbot's side, only when every try failed.
TEST_CASE("a build dmzbot itself could not run is tried again before anything is reported") {
  TempDir tmp;
  Recorder rec;
  const fs::path logs = tmp / "logs";
  std::atomic<int> exports = 0;
  auto exported = [&](int n) {  // waits (bounded) for the n-th export
    auto end = std::chrono::steady_clock::now() + 10s;
    while (exports < n && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(10ms);
    return exports >= n;
  };

  SUBCASE("an export that fails on dmzbot's side, then works") {
    LocalRunner runner(cfg("cat marker.txt"), logs, rec.callback(), {}, {}, {}, {50ms, 50ms});
    runner.start("o/r", "flaky", [&](const fs::path& dir) -> Status {
      if (++exports == 1) return unavailable("the mirror is busy");
      return write_tree({{"marker.txt", "exported\n"}})(dir);
    });
    auto r = rec.final_for("flaky");
    REQUIRE(r.has_value());
    CHECK(r->check.state == CheckState::Success);
    CHECK(exports == 2);
    CHECK(rec.for_sha("flaky").size() == 2);  // Pending and Success: no Error in between
  }

  SUBCASE("a log that cannot be opened, fixed before the next try") {
    // A directory where the log goes: open() fails for the runner whatever its privileges.
    fs::create_directories(logs / "blocked.log");
    LocalRunner runner(cfg("echo built"), logs, rec.callback(), {}, {}, {}, {50ms, 50ms});
    runner.start("o/r", "blocked", [&](const fs::path&) -> Status {
      if (++exports == 2) fs::remove(logs / "blocked.log");  // freed during the wait
      return {};
    });
    auto r = rec.final_for("blocked");
    REQUIRE(r.has_value());
    CHECK(r->check.state == CheckState::Success);
    CHECK(exports == 2);
    CHECK(read_file(runner.log_file("blocked")).find("built\n") == 0);
  }

  SUBCASE("a failure that lasts: Error after the last try, saying whose it is") {
    fs::create_directories(logs / "blocked.log");
    LocalRunner runner(cfg("true"), logs, rec.callback(), {}, {}, {}, {10ms, 10ms, 10ms});
    runner.start("o/r", "blocked", [&](const fs::path&) -> Status {
      ++exports;
      return {};
    });
    auto r = rec.final_for("blocked");
    REQUIRE(r.has_value());
    CHECK(r->check.state == CheckState::Error);
    CHECK_MESSAGE(
        starts_with(r->check.description, "dmzbot could not run the build: cannot open log"),
        r->check.description);
    CHECK(exports == 4);                        // the first try and three more
    CHECK(rec.for_sha("blocked").size() == 1);  // only the final report
  }

  SUBCASE("cancel and shutdown end the wait") {
    fs::create_directories(logs / "blocked.log");
    auto runner =
        std::make_unique<LocalRunner>(cfg("true", 1), logs, rec.callback(), std::vector<fs::path>{},
                                      fs::path{}, BuildLogLimits{}, std::vector{60'000ms});
    auto blocked = [&](const fs::path&) -> Status {
      ++exports;
      return {};
    };
    runner->start("o/r", "blocked", blocked);
    REQUIRE(exported(1));
    std::this_thread::sleep_for(100ms);  // its log fails to open; it waits to try again
    runner->cancel("blocked");
    // The one worker is free again at once, not after the minute's wait.
    runner->start("o/r", "quick", write_tree({}));
    auto quick = rec.final_for("quick", 5s);
    REQUIRE(quick.has_value());
    CHECK(quick->check.state == CheckState::Success);
    CHECK(rec.for_sha("blocked").empty());

    runner->start("o/r", "blocked", blocked);
    REQUIRE(exported(2));
    std::this_thread::sleep_for(100ms);
    auto begin = std::chrono::steady_clock::now();
    runner.reset();
    CHECK(std::chrono::steady_clock::now() - begin < 4s);
    CHECK(rec.for_sha("blocked").empty());
    CHECK(exports == 2);
  }
}

TEST_CASE(
    "destroying the runner kills running commands, reports nothing more, and returns quickly") {
  TempDir tmp;
  Recorder rec;
  auto runner = std::make_unique<LocalRunner>(
      cfg("echo $$ > pid.tmp; mv pid.tmp " + shell_quote((tmp / "pid").string()) + "; sleep 30", 1),
      tmp / "logs", rec.callback());
  runner->start("o/r", "long", write_tree({}));
  runner->start("o/r", "never", write_tree({}));
  REQUIRE(rec.wait_pending("long"));
  REQUIRE(wait_file(tmp / "pid"));
  auto begin = std::chrono::steady_clock::now();
  runner.reset();
  CHECK(std::chrono::steady_clock::now() - begin < 4s);
  CHECK(wait_gone(tmp / "pid"));
  CHECK(rec.for_sha("long").size() == 1);
  CHECK(rec.for_sha("never").empty());
}

TEST_CASE("sandboxed: the build sees its tree and nothing of dmzbot's") {
  if (!sandbox_works()) return;
  TempDir tmp;
  Recorder rec;
  // Stand-ins for what the bot holds: its data directory and a signing key next to it.
  write_file(tmp / "data" / "dmzbot.db", "state\n");
  write_file(tmp / "keys" / "dmzbot_ed25519", "PRIVATE KEY\n");
  const std::string secret = (tmp / "keys" / "dmzbot_ed25519").string();
  LocalRunner runner(
      sandboxed("cat marker.txt; echo built > out.txt && cat out.txt; "
                "test -e " +
                shell_quote(secret) +
                " && echo KEY-VISIBLE; "
                "test -e " +
                shell_quote((tmp / "data").string()) +
                " && echo DATA-VISIBLE; "
                "touch /usr/dmzbot-probe 2>/dev/null && echo USR-WRITABLE; "
                "touch /etc/dmzbot-probe 2>/dev/null && echo ETC-WRITABLE; "
                "echo tmp > /tmp/probe && cat /tmp/probe; "
                "test \"$HOME\" = \"$(pwd)\" && echo home-is-build-dir; pwd; "
                "echo \"pid1=$(cat /proc/1/comm)\"; command -v git >/dev/null && echo has-git"),
      tmp / "logs", rec.callback());
  runner.start("o/r", "box", write_tree({{"marker.txt", "from the tree\n"}}));
  auto r = rec.final_for("box");
  REQUIRE(r.has_value());
  std::string log = read_file(runner.log_file("box"));
  CAPTURE(log);
  CHECK(r->check.state == CheckState::Success);
  CHECK(starts_with(log, "from the tree\nbuilt\ntmp\nhome-is-build-dir\n"));
  CHECK(log.find("/build-") != std::string::npos);  // at the same path as outside
  CHECK(log.find("pid1=") != std::string::npos);
  CHECK(log.find("has-git") != std::string::npos);  // /usr is there, read-only
  for (const char* leak : {"KEY-VISIBLE", "DATA-VISIBLE", "USR-WRITABLE", "ETC-WRITABLE"})
    CHECK_MESSAGE(log.find(leak) == std::string::npos, leak);
  CHECK_FALSE(fs::exists("/tmp/probe"));  // its /tmp was private
}

TEST_CASE("sandboxed: no network unless the runner allows it") {
  if (!sandbox_works()) return;
  std::atomic<int> requests{0};
  config::Server server_cfg;
  server_cfg.host = "127.0.0.1";
  server_cfg.port = 0;
  HttpServer server(server_cfg, [&](HttpRequest, Respond respond) {
    ++requests;
    respond(json_error(404, "nothing here"));
  });
  auto port = server.start();
  REQUIRE(port.ok());
  const std::string probe =
      "git -c http.lowSpeedTime=5 ls-remote http://127.0.0.1:" + std::to_string(*port) +
      "/repo.git; echo \"exit=$?\"";
  TempDir tmp;
  Recorder rec;
  {
    LocalRunner runner(sandboxed(probe), tmp / "logs", rec.callback());
    runner.start("o/r", "nonet", write_tree({}));
    REQUIRE(rec.final_for("nonet").has_value());
  }
  CAPTURE(read_file(tmp / "logs" / "nonet.log"));
  CHECK(requests == 0);
  {
    auto with_net = sandboxed(probe);
    with_net.network = true;
    LocalRunner runner(with_net, tmp / "logs", rec.callback());
    runner.start("o/r", "net", write_tree({}));
    REQUIRE(rec.final_for("net").has_value());
  }
  CAPTURE(read_file(tmp / "logs" / "net.log"));
  CHECK(requests >= 1);  // the same probe reaches the server once the network is shared
}

TEST_CASE("sandboxed: a command that runs too long is killed with everything it started") {
  if (!sandbox_works()) return;
  TempDir tmp;
  Recorder rec;
  const std::string marker = "31.4159";  // a sleep no other process runs
  {
    LocalRunner runner(sandboxed("sleep " + marker + " & sleep " + marker, 1s), tmp / "logs",
                       rec.callback());
    runner.start("o/r", "slow", write_tree({}));
    auto r = rec.final_for("slow");
    REQUIRE(r.has_value());
    CHECK(r->check.description == "timed out after 1s");
  }
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    gone = processes_with("sleep " + marker).empty();
    if (!gone) std::this_thread::sleep_for(50ms);
  }
  CHECK(gone);
}

// Whether process `pid` has ended: gone, or a zombie nobody reaped (its parent died).
bool ended(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return true;
  const auto name_end = line.rfind(')');
  return name_end == std::string::npos || name_end + 2 >= line.size() ||
         line[name_end + 2] == 'Z' || line[name_end + 2] == 'X';
}

// Waits (bounded) until `pred` holds.
template <class F>
bool wait_until(F pred, std::chrono::milliseconds timeout = 10s) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

TEST_CASE("an unsandboxed build's group dies with the process that started it, killed -9") {
  if (!fs::exists("/usr/bin/setpriv")) {
    MESSAGE("skipped: no /usr/bin/setpriv (util-linux)");
    return;
  }
  TempDir dir;
  const fs::path job_pid = dir / "job.pid";
  // The build: a session of its own, as the runner starts it, with a background job.
  std::string script = "sleep 1000 & echo $! > '" + job_pid.string() + "'; wait";
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  // A process standing for dmzbot: starts the build and its guard, says so, and waits.
  const pid_t parent = ::fork();
  REQUIRE(parent >= 0);
  if (parent == 0) {
    ::close(ready[0]);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
    char* argv[] = {const_cast<char*>("/bin/sh"), const_cast<char*>("-c"), script.data(), nullptr};
    pid_t pids[2] = {0, 0};
    if (posix_spawn(&pids[0], "/bin/sh", nullptr, &attr, argv, environ) != 0) ::_exit(1);
    pids[1] = guard_build_group(pids[0]);
    if (::write(ready[1], pids, sizeof pids) != sizeof pids) ::_exit(1);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  pid_t pids[2] = {0, 0};
  REQUIRE(::read(ready[0], pids, sizeof pids) == sizeof pids);
  ::close(ready[0]);
  const pid_t build = pids[0], guard = pids[1];
  REQUIRE(guard > 0);
  // The guard has set its trap once it waits on its sleep (its one child).
  const std::string children =
      "/proc/" + std::to_string(guard) + "/task/" + std::to_string(guard) + "/children";
  REQUIRE(wait_until([&] { return !read_file(children).empty() && fs::exists(job_pid); }));
  REQUIRE(wait_until([&] { return !read_file(job_pid).empty(); }));
  const pid_t job = std::stoi(read_file(job_pid));
  CHECK_FALSE(ended(build));
  ::kill(parent, SIGKILL);
  ::waitpid(parent, nullptr, 0);
  // Before: both ran on for 1000 s.
  CHECK(wait_until([&] { return ended(build) && ended(job) && ended(guard); }));
  ::kill(-build, SIGKILL);  // whatever the outcome, nothing is left running
}

TEST_CASE("build_command_line: plain sh unconfined, bwrap with hidden paths otherwise") {
  auto plain = cfg("make check");
  CHECK(build_command_line(plain, "/tmp/b", {"/etc/apt"}) ==
        std::vector<std::string>{"/bin/sh", "-c", "make check"});

  auto box = sandboxed("make check");
  auto argv = build_command_line(box, "/tmp/b",
                                 {"/etc/apt", "/etc/passwd", "/etc", "/var/lib/dmzbot", "rel/x",
                                  "/etc/../var/x", "/etc/no-such-dmzbot-dir", ""});
  auto joined = [&] {
    std::string s;
    for (const auto& a : argv) s += a + " ";
    return s;
  }();
  CAPTURE(joined);
  CHECK(argv.front() == "/usr/bin/bwrap");
  CHECK(joined.find("--unshare-all ") != std::string::npos);
  CHECK(joined.find("--new-session ") != std::string::npos);
  CHECK(joined.find("--share-net") == std::string::npos);
  // Hidden after /etc is bound (bwrap applies mounts in order): a directory gets a tmpfs, a
  // file /dev/null; / and paths outside /usr and /etc get nothing; so does what does not exist.
  auto etc = joined.find("--ro-bind /etc /etc ");
  auto apt = joined.find("--tmpfs /etc/apt ");
  auto passwd = joined.find("--ro-bind /dev/null /etc/passwd ");
  REQUIRE(etc != std::string::npos);
  CHECK((apt != std::string::npos && apt > etc));
  CHECK((passwd != std::string::npos && passwd > etc));
  CHECK(joined.find("--tmpfs /etc ") == std::string::npos);
  for (const char* absent : {"/var/lib/dmzbot", "rel/x", "/var/x", "no-such-dmzbot-dir"})
    CHECK_MESSAGE(joined.find(absent) == std::string::npos, absent);
  CHECK(
      joined.ends_with("--chdir /tmp/b --setenv HOME /tmp/b --setenv TMPDIR /tmp -- /bin/sh -c "
                       "make check "));
  box.network = true;
  argv = build_command_line(box, "/tmp/b", {});
  CHECK(std::find(argv.begin(), argv.end(), "--share-net") != argv.end());
}

TEST_CASE("sandboxed: hidden paths under /etc are not visible to the build") {
  if (!sandbox_works()) return;
  // Outside the sandbox there is something to hide, and something left visible: /etc/group is
  // in every Debian system (base-passwd), unlike /etc/hosts, which a fresh root may lack.
  REQUIRE(!fs::is_empty("/etc/apt"));
  REQUIRE(fs::is_regular_file("/etc/group"));
  TempDir tmp;
  Recorder rec;
  LocalRunner runner(sandboxed("ls -A /etc/apt | grep -q . && echo APT-VISIBLE; "
                               "test -s /etc/passwd && echo PASSWD-VISIBLE; "
                               "test -s /etc/group && echo group-visible"),
                     tmp / "logs", rec.callback(), {"/etc/apt", "/etc/passwd"});
  runner.start("o/r", "hide", write_tree({}));
  REQUIRE(rec.final_for("hide").has_value());
  CHECK(read_file(runner.log_file("hide")).starts_with("group-visible\n"));
}

TEST_CASE("check_sandbox: nothing to check unconfined; with bwrap it agrees with a real build") {
  CHECK(check_sandbox(cfg("false")).ok());         // sandbox "none": the command is not run
  auto probe = check_sandbox(sandboxed("false"));  // runs `true`, never the build command
  TempDir tmp;
  Recorder rec;
  LocalRunner runner(sandboxed("true"), tmp / "logs", rec.callback());
  runner.start("o/r", "probe", write_tree({}));
  auto built = rec.final_for("probe");
  REQUIRE(built.has_value());
  CAPTURE(read_file(runner.log_file("probe")));
  CHECK(probe.ok() == (built->check.state == CheckState::Success));
  if (!probe.ok()) {
    CHECK(probe.code() == Code::kUnavailable);
    const std::string prefix = "the build sandbox (bubblewrap) does not work here: ";
    REQUIRE(starts_with(probe.message(), prefix));
    // bwrap's own words, as the failed build logged them
    std::string said = probe.message().substr(prefix.size());
    CHECK(read_file(runner.log_file("probe")).find(said) != std::string::npos);
  }
}

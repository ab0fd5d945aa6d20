#include "tests/git_daemon.hpp"

#include <unistd.h>

#include <chrono>
#include <random>
#include <system_error>
#include <thread>

#include "tests/support.hpp"

namespace dmz::test {

GitDaemon::GitDaemon(const std::filesystem::path& base, const std::string& repo) : base_(base) {
  auto pid_file = base_ / "daemon.pid";
  auto log_file = base_ / "daemon.log";
  // A repository only this daemon serves, under a name no other test's daemon has: an answer
  // from it through the port proves that the port is ours, not that of another test's daemon
  // (whose base is elsewhere) that took it first. The destructor removes it.
  std::random_device random;
  probe_ = "daemon-probe-" + std::to_string(::getpid()) + "-" + std::to_string(random()) + ".git";
  must("git init -q --bare " + shell_quote((base_ / probe_).string()));
  // git daemon takes a port number, not 0: a random port in 20000-49999, another on a clash
  // (a port in use makes our daemon exit; the probe then never answers).
  for (int attempt = 0; attempt < 8 && url_.empty(); ++attempt) {
    int port = 20000 + static_cast<int>(random() % 30000);
    std::filesystem::remove(pid_file);
    run("(git daemon --listen=127.0.0.1 --port=" + std::to_string(port) +
        " --base-path=" + shell_quote(base_.string()) +
        " --export-all --enable=receive-pack --reuseaddr --pid-file=" +
        shell_quote(pid_file.string()) + " >" + shell_quote(log_file.string()) +
        " 2>&1 </dev/null &)");
    const std::string at = "git://127.0.0.1:" + std::to_string(port) + "/";
    for (int i = 0; i < 50; ++i) {  // up to 5 s for it to listen
      if (run(git_env() + "git ls-remote " + shell_quote(at + probe_)).exit_code == 0) {
        // Ours: now `repo` through it.
        if (run(git_env() + "git ls-remote " + shell_quote(at + repo)).exit_code == 0)
          url_ = at + repo;
        break;
      }
      if (read_file(log_file).find("unable to allocate any listen sockets") != std::string::npos)
        break;  // the port is taken: the next one
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (url_.empty()) stop();
  }
}

std::string GitDaemon::log() const { return read_file(base_ / "daemon.log"); }

void GitDaemon::stop() {
  auto pid_file = base_ / "daemon.pid";
  std::string pid = read_file(pid_file);
  if (!pid.empty()) {
    // Wait (bounded) until it is gone, so that the next daemon can take the port.
    std::string kill = "kill " + std::to_string(std::stoi(pid));
    run(kill);
    for (int i = 0; i < 50 && run(kill + " 2>/dev/null").exit_code == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::filesystem::remove(pid_file);
}

GitDaemon::~GitDaemon() {
  stop();
  std::error_code ignored;
  if (!probe_.empty()) std::filesystem::remove_all(base_ / probe_, ignored);
}

}  // namespace dmz::test

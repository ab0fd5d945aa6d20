#include "tests/git_daemon.hpp"

#include <unistd.h>

#include <chrono>
#include <thread>

#include "tests/support.hpp"

namespace dmz::test {

GitDaemon::GitDaemon(const std::filesystem::path& base, const std::string& repo) : base_(base) {
  auto pid_file = base_ / "daemon.pid";
  // git daemon takes a port number, not 0: try a few pid-derived ports so parallel test
  // processes rarely collide, and confirm each with an ls-remote of `repo` through it.
  for (int attempt = 0; attempt < 5 && url_.empty(); ++attempt) {
    int port = 20000 + static_cast<int>((::getpid() * 7919 + attempt * 104729) % 30000);
    std::filesystem::remove(pid_file);
    run("(git daemon --listen=127.0.0.1 --port=" + std::to_string(port) +
        " --base-path=" + shell_quote(base_.string()) +
        " --export-all --enable=receive-pack --reuseaddr --pid-file=" +
        shell_quote(pid_file.string()) + " >" + shell_quote((base_ / "daemon.log").string()) +
        " 2>&1 </dev/null &)");
    std::string url = "git://127.0.0.1:" + std::to_string(port) + "/" + repo;
    for (int i = 0; i < 50; ++i) {  // up to 5 s for it to listen
      if (run(git_env() + "git ls-remote " + url).exit_code == 0) {
        url_ = url;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (url_.empty()) stop();
  }
}

GitDaemon::~GitDaemon() { stop(); }

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

}  // namespace dmz::test

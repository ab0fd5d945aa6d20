// The built-in local CI runner: builds a candidate by exporting its tree into a temp directory
// and running the configured command there with a timeout, keeping the log; reports a check.
// A timeout or a cancel kills the build's process group. With sandbox "none" that is all it
// kills: a process the build moved out of the group (setsid, a daemon) survives it. Only
// bubblewrap (the default) ends everything the build started: use it for untrusted PRs.
// Threading: start()/cancel()/prune_logs() from any thread; `done` is called on a runner thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.hpp"
#include "config/config.hpp"
#include "queue/model.hpp"

namespace dmz {

// How much of the disk build logs may take: a build's output is PR code's to choose.
struct BuildLogLimits {
  std::uintmax_t max_bytes = 64 << 20;  // a build that writes more is stopped and fails
  std::chrono::hours keep{24 * 30};     // older logs are deleted (more than any build's timeout)
};

class LocalRunner {
 public:
  // Called once per build with the final check (Success, Failure or Error) and once, earlier,
  // with Pending when the command starts (for the try that runs it).
  using Done = std::function<void(const std::string& repo, const queue::Sha& sha, queue::Check)>;
  // Writes the tree to build into the given empty directory. `invalid` means the tree cannot
  // be built (e.g. an unsafe path in it): the PR's fault, an Error at once. Any other failure
  // is taken for dmzbot's own, and retried.
  using Export = std::function<Status(const std::filesystem::path& dir)>;

  // Logs go to <log_dir>/<sha>.log; at most cfg.max_parallel commands run at once. `hidden`
  // names what a sandboxed build must not see even where it sees /usr and /etc (dmzbot's
  // configuration directory, data directory, keys). Builds run in directories under
  // `work_dir` (one runner's own; default $TMPDIR/dmzbot-builds-UID), which the constructor
  // first clears of a killed run's debris: builds still running are killed, not duplicated.
  // Logs are bounded by `limits`; the runner prunes them itself at most once an hour, when a
  // build starts. A build the runner itself cannot run (a full disk, bubblewrap failing to
  // start, an export failing for a reason other than the tree's content: not the PR's fault)
  // is tried again after each of `retry_waits`, and only then reported as Error, saying it is
  // dmzbot's side.
  LocalRunner(config::Runner cfg, std::filesystem::path log_dir, Done done,
              std::vector<std::filesystem::path> hidden = {}, std::filesystem::path work_dir = {},
              BuildLogLimits limits = {},
              std::vector<std::chrono::milliseconds> retry_waits = {
                  std::chrono::seconds(5), std::chrono::seconds(20), std::chrono::seconds(60)});
  ~LocalRunner();  // kills running commands (their process groups) and joins

  void start(const std::string& repo, const queue::Sha& sha, Export export_tree);
  // Kills it if running, or ends its wait to be retried; no report follows.
  void cancel(const queue::Sha& sha);
  std::filesystem::path log_file(const queue::Sha& sha) const;
  // Deletes the logs (<log_dir>/*.log) last written more than `older_than` ago; returns how many.
  std::size_t prune_logs(std::chrono::seconds older_than);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The argv that runs cfg.command in `dir`: /bin/sh -c, inside bubblewrap unless cfg.sandbox is
// "none" (see config::Runner). Each `hidden` path under /usr or /etc is covered: a directory by
// an empty tmpfs, a file by /dev/null. Other paths are outside the sandbox's world anyway.
std::vector<std::string> build_command_line(const config::Runner& cfg,
                                            const std::filesystem::path& dir,
                                            const std::vector<std::filesystem::path>& hidden);

// Starts a guard of process group `group` (a build run without bubblewrap, whose
// --die-with-parent covers its own builds): when the calling thread dies, with dmzbot (kill -9
// included), the kernel sends the guard its parent-death signal (util-linux's setpriv
// --pdeathsig) and it kills the group, so that the build does not run on beside its rerun after
// a restart. Returns the guard's pid, the leader of a group of its own, or 0 if it cannot start
// (no /usr/bin/setpriv): then only the next start's recovery kills such a build. A kill in the
// moment between the spawn and the guard's trap is not covered.
pid_t guard_build_group(pid_t group);
// Ends a guard (once its build was reaped) and reaps it; nothing for 0.
void end_guard(pid_t guard);

// Whether builds can run in cfg's sandbox on this machine: runs `true` exactly as a build runs
// (build_command_line, in an empty temporary directory), at most 10 s. Success at once for
// sandbox "none". Fails with unavailable("...") carrying bubblewrap's own message where it
// cannot work, e.g. without user namespaces (inside many containers, or where the kernel or a
// seccomp profile forbids them): there, every sandboxed build would fail.
Status check_sandbox(const config::Runner& cfg);

// Where the API serves the log of `repo`'s build of `sha` (a path on dmzbot's own server); the
// runner's checks link to it.
std::string build_log_url(const std::string& repo, const queue::Sha& sha);

// The log <log_dir>/<sha>.log, or its last `max_bytes` after a line saying how much was cut;
// nullopt if there is none; unavailable if it cannot be read (the disk's failure, not the
// reader's). `sha` must already be validated as hex (it becomes a file name).
Result<std::optional<std::string>> read_build_log(const std::filesystem::path& log_dir,
                                                  const queue::Sha& sha, std::size_t max_bytes);

}  // namespace dmz

// The built-in local CI runner: builds a candidate by exporting its tree into a temp directory
// and running the configured command there with a timeout, keeping the log; reports a check.
// Threading: start()/cancel() from any thread; `done` is called on a runner thread.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "config/config.hpp"
#include "queue/model.hpp"
#include "queue/result.hpp"

namespace dmz {

class LocalRunner {
 public:
  // Called once per build with the final check (Success, Failure or Error) and once, earlier,
  // with Pending when the command starts.
  using Done = std::function<void(const std::string& repo, const queue::Sha& sha, queue::Check)>;
  // Writes the tree to build into the given empty directory.
  using Export = std::function<Status(const std::filesystem::path& dir)>;

  // Logs go to <log_dir>/<sha>.log; at most cfg.max_parallel commands run at once.
  LocalRunner(config::Runner cfg, std::filesystem::path log_dir, Done done);
  ~LocalRunner();  // kills running commands (their process groups) and joins

  void start(const std::string& repo, const queue::Sha& sha, Export export_tree);
  void cancel(const queue::Sha& sha);  // kills it if running; no report follows
  std::filesystem::path log_file(const queue::Sha& sha) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Where the API serves the log of `repo`'s build of `sha` (a path on dmzbot's own server); the
// runner's checks link to it.
std::string build_log_url(const std::string& repo, const queue::Sha& sha);

// The log <log_dir>/<sha>.log, or its last `max_bytes` after a line saying how much was cut;
// nullopt if there is none. `sha` must already be validated as hex (it becomes a file name).
std::optional<std::string> read_build_log(const std::filesystem::path& log_dir,
                                          const queue::Sha& sha, std::size_t max_bytes);

}  // namespace dmz

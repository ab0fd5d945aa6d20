// `git daemon` on 127.0.0.1 serving a directory over git:// with receive-pack enabled, for tests
// whose remote must be a separate process (smart protocol, server-side hooks and locks).
// Threading: one thread owns a GitDaemon; it stops the daemon on destruction.
#pragma once

#include <filesystem>
#include <string>

namespace dmz::test {

class GitDaemon {
 public:
  // Serves the repositories under `base` and waits until `repo` (a bare repository directly
  // under it, e.g. "origin.git") answers through this daemon (not another test's on the same
  // port: a probe repository it makes under `base` for the daemon's lifetime says whose it
  // is); url() is empty if that never happened.
  GitDaemon(const std::filesystem::path& base, const std::string& repo);
  ~GitDaemon();
  GitDaemon(const GitDaemon&) = delete;
  GitDaemon& operator=(const GitDaemon&) = delete;

  // git://127.0.0.1:PORT/REPO
  const std::string& url() const { return url_; }
  // What the daemon printed (for failure messages).
  std::string log() const;

 private:
  void stop();
  std::filesystem::path base_;
  std::string probe_;  // the probe repository's name under base_
  std::string url_;
};

}  // namespace dmz::test

// Helpers shared by the tests: temporary directories, running commands, writing files.
// Threading: TempDir and the functions are safe to use from any one thread at a time.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace dmz::test {

// A fresh directory under $TMPDIR, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

struct RunResult {
  int exit_code = -1;
  std::string out;  // stdout and stderr, interleaved
};

// Runs `command` with /bin/sh -c in `cwd` (or the current directory) and waits for it.
RunResult run(const std::string& command, const std::filesystem::path& cwd = {});

// Like run() but fails the current test (doctest REQUIRE) unless the exit code is 0; returns
// stdout+stderr with one trailing newline trimmed.
std::string must(const std::string& command, const std::filesystem::path& cwd = {});

// Single-quotes `s` for /bin/sh.
std::string shell_quote(const std::string& s);

void write_file(const std::filesystem::path& file, const std::string& content);
std::string read_file(const std::filesystem::path& file);

// Makes the bare repository `origin` refuse to move an existing dmz back to `master` while the
// file block-reset exists in it (created here; remove it to let resets through): a back-out's
// reset of dmz that the remote refuses.
void block_dmz_reset(const std::filesystem::path& origin, const std::string& master);

// Environment that makes `git commit` deterministic and independent of the user's config:
// GIT_CONFIG_GLOBAL=/dev/null, fixed author/committer, no system config. Prefix for commands.
std::string git_env();

// Creates a non-bare repository at `dir` with branch master and one commit of `files`
// (name -> content); returns the commit sha.
std::string init_repo(const std::filesystem::path& dir,
                      const std::vector<std::pair<std::string, std::string>>& files);

// Commits `files` on the current branch of the non-bare repo `dir`; returns the new sha.
std::string commit_files(const std::filesystem::path& dir,
                         const std::vector<std::pair<std::string, std::string>>& files,
                         const std::string& message);

// The checkout's root: $DMZ_SOURCE_DIR (ctest sets it), else the nearest of the current
// directory and its parents holding deploy/setup.sh. Read at run time, not compiled in, so a
// test object does not depend on where the checkout lives (ccache shares it across clones).
std::filesystem::path source_dir();

}  // namespace dmz::test

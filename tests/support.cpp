#include "tests/support.hpp"

#include <doctest/doctest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "base/text.hpp"

namespace dmz::test {

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "dmzbot-test-XXXXXX").string();
  if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string shell_quote(const std::string& s) { return sh_quote(s); }

RunResult run(const std::string& command, const std::filesystem::path& cwd) {
  std::string full = cwd.empty() ? command : "cd " + shell_quote(cwd.string()) + " && " + command;
  full = "{ " + full + " ; } 2>&1 </dev/null";
  RunResult r;
  FILE* pipe = popen(full.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.out.append(buf.data(), n);
  int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string must(const std::string& command, const std::filesystem::path& cwd) {
  RunResult r = run(command, cwd);
  INFO("command: ", command, "\noutput: ", r.out);
  REQUIRE(r.exit_code == 0);
  if (!r.out.empty() && r.out.back() == '\n') r.out.pop_back();
  return r.out;
}

void write_file(const std::filesystem::path& file, const std::string& content) {
  if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::binary);
  out << content;
  if (!out) throw std::runtime_error("cannot write " + file.string());
}

void block_dmz_reset(const std::filesystem::path& origin, const std::string& master) {
  write_file(origin / "hooks" / "pre-receive",
             "#!/bin/sh\n"
             "while read old new ref; do\n"
             "  if [ \"$ref\" = refs/heads/dmz ] && [ \"$new\" = " +
                 master +
                 " ] && [ \"$old\" != 0000000000000000000000000000000000000000 ] &&"
                 " [ -e \"$GIT_DIR/block-reset\" ]; then\n"
                 "    echo 'reset blocked by the test' >&2; exit 1\n"
                 "  fi\n"
                 "done\n");
  must("chmod +x hooks/pre-receive && touch block-reset", origin);
}

std::string read_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string git_env() {
  return "GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1 "
         "GIT_AUTHOR_NAME=Tester GIT_AUTHOR_EMAIL=tester@example.com "
         "GIT_COMMITTER_NAME=Tester GIT_COMMITTER_EMAIL=tester@example.com ";
}

std::string commit_files(const std::filesystem::path& dir,
                         const std::vector<std::pair<std::string, std::string>>& files,
                         const std::string& message) {
  for (const auto& [name, content] : files) write_file(dir / name, content);
  must(git_env() + "git add -A && " + git_env() + "git commit -q -m " + shell_quote(message), dir);
  return must(git_env() + "git rev-parse HEAD", dir);
}

std::string init_repo(const std::filesystem::path& dir,
                      const std::vector<std::pair<std::string, std::string>>& files) {
  std::filesystem::create_directories(dir);
  must(git_env() + "git init -q -b master .", dir);
  return commit_files(dir, files, "initial commit");
}

std::filesystem::path source_dir() {
  if (const char* d = std::getenv("DMZ_SOURCE_DIR"); d && *d) return d;
  for (auto dir = std::filesystem::current_path(); !dir.empty(); dir = dir.parent_path()) {
    if (std::filesystem::exists(dir / "deploy" / "setup.sh")) return dir;
    if (dir == dir.parent_path()) break;
  }
  FAIL("test::source_dir: set DMZ_SOURCE_DIR or run from the checkout (or its build/)");
  return {};
}

}  // namespace dmz::test

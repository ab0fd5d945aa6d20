// The command line as users and scripts see it: exit codes and file:line messages of the real
// dmzbot binary.
#include <doctest/doctest.h>

#include <cstdlib>
#include <optional>

#include "bot/ci/runner.hpp"
#include "tests/support.hpp"

namespace dmz {
namespace {

std::string dmzbot() {
  const char* bin = std::getenv("DMZBOT_BIN");
  REQUIRE_MESSAGE(bin, "DMZBOT_BIN must name the dmzbot binary (ctest sets it)");
  return test::shell_quote(bin);
}

// A shell command that runs `command` where bubblewrap cannot create its namespaces, as in a
// container: as root of a new user namespace, with every capability dropped and no user
// namespace allowed below it (user.max_user_namespaces is per user namespace). Where this machine
// gives the test no user namespace either, the condition is already real and `command` runs as
// is; nullopt where neither holds (the test then cannot say anything).
std::optional<std::string> without_user_namespaces(const std::string& command) {
  if (test::run("unshare --user --map-root-user true").exit_code == 0)
    return "unshare --user --map-root-user sh -c 'echo 0 > /proc/sys/user/max_user_namespaces "
           "&& exec setpriv --inh-caps=-all --ambient-caps=-all --bounding-set=-all "
           "-- sh -c \"exec $0\"' " +
           test::shell_quote(command);
  config::Runner runner;
  runner.command = "true";
  if (!check_sandbox(runner).ok()) return command;
  return std::nullopt;
}

// A configuration of one repository whose builds run in `sandbox`; origin is a real repository.
void write_runner_config(const test::TempDir& dir, const std::string& sandbox) {
  test::init_repo(dir / "work", {{"README", "hello\n"}});
  test::must(test::git_env() + "git clone -q --bare work origin.git", dir.path());
  test::write_file(dir / "token", "t0ken\n");
  test::write_file(dir / "dmzbot.toml",
                   "data_dir = \"data\"\n[server]\nport = 0\n[[repo]]\nname = \"acme/widget\"\n"
                   "remote = \"origin.git\"\napi_token = { file = \"token\" }\n"
                   "[repo.runner]\ncommand = \"true\"\nsandbox = \"" +
                       sandbox + "\"\n");
}

TEST_CASE("serve refuses to start where the build sandbox cannot work, and names the fixes") {
  test::TempDir dir;
  write_runner_config(dir, "bwrap");
  auto command = without_user_namespaces(dmzbot() + " serve --config dmzbot.toml 2>stderr.txt");
  if (!command) {
    MESSAGE("not run: bubblewrap works here and no user namespace can be made to take it away");
    return;
  }
  auto r = test::run("timeout 60 " + *command, dir.path());
  std::string err = test::read_file(dir / "stderr.txt");
  CAPTURE(r.out);
  CAPTURE(err);
  CHECK(r.exit_code == 1);
  CHECK(err.find("cannot start: repository acme/widget runs builds in a sandbox, but the build "
                 "sandbox (bubblewrap) does not work here: bwrap: ") != std::string::npos);
  for (const char* fix : {"kernel.unprivileged_userns_clone=1", "user.max_user_namespaces",
                          "run dmzbot as root", "sandbox = \"none\""})
    CHECK_MESSAGE(err.find(fix) != std::string::npos, fix);
  CHECK(r.out.find("listening") == std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir / "data"));  // it stopped before touching its state
}

TEST_CASE("serve starts where the sandbox cannot work if the operator chose sandbox = none") {
  test::TempDir dir;
  write_runner_config(dir, "none");
  auto command = without_user_namespaces(dmzbot() + " serve --config " +
                                         test::shell_quote((dir / "dmzbot.toml").string()));
  if (!command) {
    MESSAGE("not run: bubblewrap works here and no user namespace can be made to take it away");
    return;
  }
  // Started in the background; stopped with SIGTERM once it listens (at most 30 s).
  const std::string log = test::shell_quote((dir / "log.txt").string());
  auto r = test::run(*command + " >" + log + " 2>&1 & pid=$!; i=0; until grep -q 'listening on' " +
                     log + "; do i=$((i+1)); [ $i -gt 300 ] && break; sleep 0.1; done; " +
                     "kill -TERM $pid; wait $pid; echo \"exit=$?\"; cat " + log);
  CAPTURE(r.out);
  CHECK(r.out.find("dmzbot listening on http://127.0.0.1:") != std::string::npos);
  CHECK(r.out.find("exit=0") != std::string::npos);
}

TEST_CASE("the demo says in one line that it builds unsandboxed where the sandbox cannot work") {
  auto command = without_user_namespaces(dmzbot() + " demo --until-idle --port 0");
  if (!command) {
    MESSAGE("not run: bubblewrap works here and no user namespace can be made to take it away");
    return;
  }
  auto r = test::run("timeout 280 " + *command);
  CAPTURE(r.out);
  CHECK(r.exit_code == 0);
  const std::string note = "note: the build sandbox (bubblewrap) does not work here: bwrap: ";
  auto at = r.out.find(note);
  CHECK(at != std::string::npos);
  CHECK(r.out.find(note, at + 1) == std::string::npos);  // said once
  CHECK(r.out.find("the demo builds its own sample project without it") != std::string::npos);
  CHECK(r.out.find("queue drained") != std::string::npos);
  CHECK(r.out.find("UNEXPECTED") == std::string::npos);
}

TEST_CASE("check-config accepts a valid file and exits 0") {
  test::TempDir dir;
  test::write_file(dir / "token", "t0ken\n");
  test::write_file(dir / "ok.toml",
                   "[[repo]]\nname = \"acme/widget\"\nremote = \"/srv/git/widget.git\"\n"
                   "required_checks = [\"ci/build\"]\napi_token = { file = \"token\" }\n");
  auto r = test::run(dmzbot() + " check-config ok.toml", dir.path());
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("ok (1 repositories)") != std::string::npos);
}

TEST_CASE("check-config prints file:line: message for every problem and exits 1") {
  test::TempDir dir;
  test::write_file(dir / "bad.toml",
                   "[server]\nport = 70000\n"
                   "[[repo]]\nname = \"acme/widget\"\nremote = \"/srv/git/widget.git\"\n"
                   "requird_checks = [\"ci/build\"]\napi_token = \"inline-secret\"\n");
  auto r = test::run(dmzbot() + " check-config bad.toml", dir.path());
  CHECK(r.exit_code == 1);
  CHECK(r.out.find("bad.toml:2: ") != std::string::npos);  // the port
  CHECK(r.out.find("bad.toml:6: unknown key 'requird_checks' in [[repo]]") != std::string::npos);
  CHECK(r.out.find("bad.toml:7: ") != std::string::npos);   // inline token
  CHECK(r.out.find("inline-secret") == std::string::npos);  // never echoed
}

TEST_CASE("check-config reports an unreadable file and a TOML syntax error") {
  test::TempDir dir;
  auto missing = test::run(dmzbot() + " check-config nowhere.toml", dir.path());
  CHECK(missing.exit_code == 1);
  CHECK(missing.out.find("nowhere.toml") != std::string::npos);
  test::write_file(dir / "syntax.toml", "[server\nport = 1\n");
  auto syntax = test::run(dmzbot() + " check-config syntax.toml", dir.path());
  CHECK(syntax.exit_code == 1);
  CHECK(syntax.out.find("syntax.toml:1: ") != std::string::npos);
}

TEST_CASE("usage errors exit 2") {
  CHECK(test::run(dmzbot() + " verify").exit_code == 2);
  CHECK(test::run(dmzbot() + " no-such-command").exit_code == 2);
  CHECK(test::run(dmzbot() + " --version").exit_code == 0);
}

}  // namespace
}  // namespace dmz

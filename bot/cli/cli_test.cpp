// The command line as users and scripts see it: exit codes and file:line messages of the real
// dmzbot binary.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "bot/ci/runner.hpp"
#include "tests/ssh_keys.hpp"
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

// `command` as without_user_namespaces makes it, or nullopt when the test cannot take the
// sandbox away: the test then says so and stops, unless DMZ_REQUIRE_SANDBOX=1 (as CI sets it),
// when it fails: CI has bubblewrap and user namespaces, and a skipped test would count as passed.
std::optional<std::string> sandbox_test_or_skip(const std::string& command) {
  auto wrapped = without_user_namespaces(command);
  if (wrapped) return wrapped;
  const char* required = std::getenv("DMZ_REQUIRE_SANDBOX");
  const std::string why = "bubblewrap works here and no user namespace can be made to take it away";
  if (required && std::string(required) == "1") FAIL("DMZ_REQUIRE_SANDBOX=1, but " << why);
  MESSAGE("not run: " << why);
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
  auto command = sandbox_test_or_skip(dmzbot() + " serve --config dmzbot.toml 2>stderr.txt");
  if (!command) return;
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
  auto command = sandbox_test_or_skip(dmzbot() + " serve --config " +
                                      test::shell_quote((dir / "dmzbot.toml").string()));
  if (!command) return;
  // Started in the background; stopped with SIGTERM once it listens (at most 30 s).
  const std::string log = test::shell_quote((dir / "log.txt").string());
  auto r = test::run(*command + " >" + log + " 2>&1 & pid=$!; i=0; until grep -q 'listening on' " +
                     log + "; do i=$((i+1)); [ $i -gt 300 ] && break; sleep 0.1; done; " +
                     "kill -TERM $pid; wait $pid; echo \"exit=$?\"; cat " + log);
  CAPTURE(r.out);
  CHECK(r.out.find("dmzbot listening on http://127.0.0.1:") != std::string::npos);
  CHECK(r.out.find("exit=0") != std::string::npos);
}

TEST_CASE("serve stops gracefully on SIGHUP, as on SIGTERM") {
  test::TempDir dir;
  test::write_file(dir / "token", "t0ken\n");
  test::write_file(dir / "dmzbot.toml",
                   "data_dir = \"data\"\n[server]\nport = 0\n[[repo]]\nname = \"acme/widget\"\n"
                   "remote = \"http://127.0.0.1:1/widget.git\"\nrequired_checks = [\"ci/build\"]\n"
                   "api_token = { file = \"token\" }\n");
  const std::string log = test::shell_quote((dir / "log.txt").string());
  auto r =
      test::run(dmzbot() + " serve --config " + test::shell_quote((dir / "dmzbot.toml").string()) +
                " >" + log + " 2>&1 & pid=$!; i=0; until grep -q 'listening on' " + log +
                "; do i=$((i+1)); [ $i -gt 300 ] && break; sleep 0.1; done; "
                "kill -HUP $pid; wait $pid; echo \"exit=$?\"; cat " +
                log);
  CAPTURE(r.out);
  CHECK(r.out.find("exit=0") != std::string::npos);  // not 129: killed by the signal
  CHECK(r.out.find("shutting down") != std::string::npos);
}

TEST_CASE(
    "serve --log-format=json writes one JSON object per line, with the repository, no secret") {
  test::TempDir dir;
  test::write_file(dir / "token", "t0ken-secret\n");
  // Nothing listens on port 1: every fetch fails at once.
  auto config = [&](const std::string& remote, const std::string& data) {
    test::write_file(
        dir / "dmzbot.toml",
        "data_dir = \"" + data +
            "\"\n[server]\nport = 0\n[[repo]]\nname = \"acme/widget\"\nremote = \"" + remote +
            "\"\nrequired_checks = [\"ci/build\"]\napi_token = { file = \"token\" }\n");
  };
  // A remote URL with a password is refused before the start, at its line, without it.
  config("http://bot:pa55word@127.0.0.1:1/widget.git", "refused");
  auto refused = test::run(dmzbot() + " serve --log-format=json --config " +
                           test::shell_quote((dir / "dmzbot.toml").string()) + " 2>&1");
  CHECK(refused.exit_code != 0);
  CHECK(refused.out.find("pa55word") == std::string::npos);
  CHECK(refused.out.find("dmzbot.toml:6: repo.remote: the remote URL carries credentials "
                         "(http://...@127.0.0.1:1)") != std::string::npos);

  config("http://127.0.0.1:1/widget.git", "data");
  const std::string log = test::shell_quote((dir / "log.txt").string());
  auto r = test::run(dmzbot() + " serve --log-format=json --config " +
                     test::shell_quote((dir / "dmzbot.toml").string()) + " >" + log +
                     " 2>&1 & pid=$!; i=0; until grep -q 'fetch failed' " + log +
                     "; do i=$((i+1)); [ $i -gt 300 ] && break; sleep 0.1; done; "
                     "kill -TERM $pid; wait $pid; echo \"exit=$?\"");
  CHECK(r.out.find("exit=0") != std::string::npos);
  const std::string text = test::read_file(dir / "log.txt");
  CAPTURE(text);
  CHECK(text.find("t0ken-secret") == std::string::npos);
  std::istringstream in(text);
  int lines = 0;
  bool listening = false, fetch_failed = false;
  for (std::string line; std::getline(in, line);) {
    ++lines;
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    REQUIRE_MESSAGE(j.is_object(), line);
    CHECK(j["time"].is_string());
    CHECK(j["level"].is_string());
    CHECK(j["msg"].is_string());
    const std::string msg = j["msg"];
    if (msg.starts_with("dmzbot listening on http://127.0.0.1:")) listening = true;
    if (msg.starts_with("fetch failed")) {
      fetch_failed = true;
      CHECK(j["repo"] == "acme/widget");
      CHECK(j["level"] == "warning");
      CHECK_FALSE(j.contains("pr"));  // only the fields that apply
    }
  }
  CHECK(lines >= 2);
  CHECK(listening);
  CHECK(fetch_failed);
}

TEST_CASE("serve --log-format refuses a format it does not know") {
  auto r = test::run(dmzbot() + " serve --log-format=xml --config /nonexistent.toml 2>&1");
  CHECK(r.exit_code != 0);
  CHECK(r.out.find("xml") != std::string::npos);
}

TEST_CASE("the demo refuses a --dir that holds something: it would remove it afterwards") {
  test::TempDir tmp;
  test::write_file(tmp / "mine" / "precious.txt", "important\n");
  auto r = test::run(dmzbot() + " demo --until-idle --port 0 --dir " + (tmp / "mine").string() +
                     " 2>&1");
  CHECK(r.exit_code == 2);
  CHECK(r.out.find("not an empty directory") != std::string::npos);
  CHECK(test::read_file(tmp / "mine" / "precious.txt") == "important\n");
  test::write_file(tmp / "file", "x");
  CHECK(test::run(dmzbot() + " demo --until-idle --port 0 --dir " + (tmp / "file").string())
            .exit_code == 2);
  CHECK(test::read_file(tmp / "file") == "x");
}

// A directory it cannot make, and no directory for temporary files: a message and exit code,
// not an exception out of main (before: std::terminate, exit 134).
TEST_CASE("the demo refuses a --dir it cannot create, and a TMPDIR that is not there") {
  test::TempDir tmp;
  test::write_file(tmp / "file", "x");
  const std::string under_file = (tmp / "file" / "demo").string();
  auto r = test::run(dmzbot() + " demo --until-idle --port 0 --dir " + under_file + " 2>&1");
  CHECK(r.exit_code == 2);
  CHECK(r.out.find(under_file + ": cannot create the demo's directory") != std::string::npos);
  auto t = test::run("TMPDIR=" + (tmp / "gone").string() + " " + dmzbot() +
                     " demo --until-idle --port 0 2>&1");
  CHECK(t.exit_code == 1);
  CHECK(t.out.find("no directory for temporary files") != std::string::npos);
}

TEST_CASE("the demo says in one line that it builds unsandboxed where the sandbox cannot work") {
  auto command = sandbox_test_or_skip(dmzbot() + " demo --until-idle --port 0");
  if (!command) return;
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

TEST_CASE("the demo runs in a directory whose name holds a space and a quote") {
  test::TempDir tmp;
  const auto dir = tmp / "my demo's dir";
  auto r = test::run("timeout 120 " + dmzbot() + " demo --until-idle --port 0 --dir " +
                     test::shell_quote(dir.string()));
  CAPTURE(r.out);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("queue drained") != std::string::npos);
  CHECK(r.out.find("UNEXPECTED") == std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir));  // removed once it succeeded
}

TEST_CASE("the demo stopped by Ctrl-C after the queue drained exits 0 and leaves no sandbox") {
  test::TempDir tmp;
  const auto dir = tmp / "demo";
  const std::string log = test::shell_quote((tmp / "log.txt").string());
  auto r = test::run("timeout 120 " + dmzbot() + " demo --port 0 --dir " +
                     test::shell_quote(dir.string()) + " >" + log +
                     " 2>&1 & pid=$!; i=0; until grep -qs 'keeps running' " + log +
                     "; do i=$((i+1)); [ $i -gt 900 ] && break; sleep 0.1; done; "
                     "kill -INT $pid; wait $pid; echo \"exit=$?\"");
  const std::string out = test::read_file(tmp / "log.txt");
  CAPTURE(out);
  CHECK(r.out == "exit=0\n");
  CHECK(out.find("queue drained:") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir));  // not even its throwaway signing key stays behind
}

TEST_CASE("demo --until-idle stopped by a signal before the queue drains exits 1") {
  test::TempDir tmp;
  // Stopped once it waits for the queue (every PR approved; a signal before that stops the
  // approvals themselves): the queue takes seconds to drain (each build sleeps 1 s).
  const std::string log = test::shell_quote((tmp / "log.txt").string());
  auto r = test::run("timeout 120 " + dmzbot() + " demo --until-idle --port 0 --dir " +
                     test::shell_quote((tmp / "demo").string()) + " >" + log +
                     " 2>&1 & pid=$!; i=0; until grep -qs 'wip/experiment as #5' " + log +
                     "; do i=$((i+1)); [ $i -gt 300 ] && break; sleep 0.1; done; "
                     "kill -TERM $pid; wait $pid; echo \"exit=$?\"");
  const std::string out = test::read_file(tmp / "log.txt");
  CAPTURE(out);
  CHECK(r.out == "exit=1\n");
  CHECK(out.find("interrupted before the queue drained") != std::string::npos);
  CHECK(out.find("queue drained:") == std::string::npos);
  // A demo that did not end well keeps its sandbox to be looked at, and says where.
  CHECK(out.find("sandbox kept: ") != std::string::npos);
  CHECK(std::filesystem::exists(tmp / "demo" / "origin.git"));
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

TEST_CASE("check-config parses policy_root: its problems at their own lines, exit 1") {
  test::TempDir dir;
  test::write_file(dir / "ok.toml",
                   "[[repo]]\nname = \"acme/widget\"\nremote = \"/srv/git/widget.git\"\n"
                   "required_checks = [\"ci/build\"]\npolicy_root = \"trust/policy.toml\"\n");
  const std::string accounts = "version = 1\n[accounts.alice]\nlogins = [\"alice\"]\n";
  test::write_file(dir / "trust" / "policy.toml",
                   accounts +
                       "[groups]\ndevs = [\"alice\"]\n[[rule]]\nbranch = \"master\"\n"
                       "signers = \"devs\"\n");
  auto good = test::run(dmzbot() + " check-config ok.toml", dir.path());
  CHECK(good.exit_code == 0);
  // A typo would make the gate refuse every PR once serving: said before.
  test::write_file(dir / "trust" / "policy.toml",
                   accounts + "sssh = [\"x\"]\n[[rule]]\nbranch = \"master\"\n");
  auto bad = test::run(dmzbot() + " check-config ok.toml", dir.path());
  CHECK(bad.exit_code == 1);
  CHECK(bad.out.find("trust/policy.toml:4: unknown key 'sssh' in [accounts.alice]") !=
        std::string::npos);
  CHECK(bad.out.find(": ok (") == std::string::npos);
  // A policy that cannot be read is reported at its [[repo]], its names' control characters
  // escaped: the line is one line.
  test::write_file(dir / "trust" / "policy.toml", accounts);
  std::filesystem::create_directories(dir / "trust" / "keys" / "evil\nkey.asc");
  auto unreadable = test::run(dmzbot() + " check-config ok.toml", dir.path());
  CHECK(unreadable.exit_code == 1);
  CHECK(unreadable.out.find("ok.toml:1: repo.policy_root: ") != std::string::npos);
  CHECK(unreadable.out.find("evil\\nkey.asc") != std::string::npos);
  CHECK(unreadable.out.find("evil\nkey") == std::string::npos);
  // A key file GnuPG cannot import would refuse every OpenPGP signature once serving.
  std::filesystem::remove_all(dir / "trust" / "keys");
  test::write_file(dir / "trust" / "policy.toml",
                   accounts +
                       "[groups]\ndevs = [\"alice\"]\n[[rule]]\nbranch = \"master\"\n"
                       "signers = \"devs\"\n");
  test::write_file(dir / "trust" / "keys" / "alice.asc", "not an armored key\n");
  auto garbage = test::run(dmzbot() + " check-config ok.toml", dir.path());
  CHECK(garbage.exit_code == 1);
  CHECK(garbage.out.find("ok.toml:1: repo.policy_root: key file " +
                         (dir / "trust" / "keys" / "alice.asc").string() + ": ") !=
        std::string::npos);
}

TEST_CASE("check-config loads the signing key as serve will: one with a passphrase is refused") {
  test::TempDir dir;
  test::must("ssh-keygen -q -t ed25519 -N '' -C bot -f plain", dir.path());
  test::must("ssh-keygen -q -t ed25519 -N secret -C bot -f locked", dir.path());
  auto config = [&](const std::string& key) {
    test::write_file(dir / "c.toml",
                     "[signing]\nformat = \"ssh\"\nkey = \"" + key +
                         "\"\n[[repo]]\nname = \"acme/widget\"\nremote = \"/srv/w.git\"\n"
                         "required_checks = [\"ci/build\"]\n");
    return test::run(dmzbot() + " check-config c.toml", dir.path());
  };
  CHECK(config("plain").exit_code == 0);
  auto locked = config("locked");
  CHECK(locked.exit_code == 1);
  CHECK(locked.out.find("c.toml:3: signing: ") != std::string::npos);  // at signing.key
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

// Runs dmzbot with `args`. Its output is compared whole, so the sanitizer build's summary of
// the LeakSanitizer suppressions it used (printed at exit) is turned off.
test::RunResult dmzbot_run(const std::string& args, const std::filesystem::path& cwd) {
  return test::run(
      "LSAN_OPTIONS=${LSAN_OPTIONS:+$LSAN_OPTIONS:}print_suppressions=0 " + dmzbot() + " " + args,
      cwd);
}

// The same under a 20 s timeout: a command that blocked (on a FIFO) exits 124.
test::RunResult bounded(const std::string& args, const std::filesystem::path& cwd) {
  return test::run("LSAN_OPTIONS=${LSAN_OPTIONS:+$LSAN_OPTIONS:}print_suppressions=0 timeout 20 " +
                       dmzbot() + " " + args,
                   cwd);
}

// The lines of `text`.
std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

TEST_CASE("check-config refuses /dev/zero, a FIFO, a directory and a huge file, at once") {
  test::TempDir dir;
  const std::string d = dir.path().string();
  REQUIRE(::mkfifo((dir / "fifo").c_str(), 0600) == 0);
  std::filesystem::create_directories(dir / "adir");
  test::write_file(dir / "big.token", std::string(64 * 1024 + 1, 'x'));
  test::write_file(dir / "hostile.toml",
                   "[[repo]]\nname = \"acme/widget\"\nremote = \"/srv/git/widget.git\"\n"
                   "required_checks = [\"ci/build\"]\napi_token = { file = \"/dev/zero\" }\n"
                   "status_token = { file = \"fifo\" }\npolicy_root = \"adir\"\n"
                   "[[repo]]\nname = \"acme/gadget\"\nremote = \"/srv/git/gadget.git\"\n"
                   "required_checks = [\"ci/build\"]\napi_token = { file = \"big.token\" }\n");
  auto r = bounded("check-config hostile.toml", dir.path());
  CHECK(r.exit_code == 1);
  CHECK(
      lines(r.out) ==
      std::vector<std::string>{
          "hostile.toml:5: repo.api_token file '/dev/zero' is not a regular file (a character "
          "device)",
          "hostile.toml:6: repo.status_token file '" + d + "/fifo' is not a regular file (a FIFO)",
          "hostile.toml:7: repo.policy_root '" + d + "/adir' is not a regular file (a directory)",
          "hostile.toml:12: repo.api_token file '" + d + "/big.token' is larger than 65536 bytes"});
  // The configuration file itself.
  auto zero = bounded("check-config /dev/zero", dir.path());
  CHECK(zero.exit_code == 1);
  CHECK(zero.out ==
        "/dev/zero:0: the configuration file '/dev/zero' is not a regular file (a "
        "character device)\n");
  auto fifo = bounded("check-config fifo", dir.path());
  CHECK(fifo.exit_code == 1);
  CHECK(fifo.out == "fifo:0: the configuration file 'fifo' is not a regular file (a FIFO)\n");
}

TEST_CASE("check-config bounds every duration and count") {
  test::TempDir dir;
  test::write_file(dir / "huge.toml",
                   "[server]\nbody_limit = 9223372036854775807\n"
                   "[[repo]]\nname = \"acme/widget\"\nremote = \"/srv/git/widget.git\"\n"
                   "check_timeout = 9223372036854775807\n"
                   "[repo.runner]\ncommand = \"make\"\ntimeout = 9223372036854775807\n"
                   "max_parallel = 1000\n");
  auto r = dmzbot_run("check-config huge.toml", dir.path());
  CHECK(r.exit_code == 1);
  CHECK(lines(r.out) ==
        std::vector<std::string>{
            "huge.toml:2: server.body_limit must be between 1024 and 67108864 bytes (64 MiB), not "
            "9223372036854775807",
            "huge.toml:6: repo.check_timeout must be between 1 and 604800 seconds (7 days), not "
            "9223372036854775807",
            "huge.toml:9: repo.runner.timeout must be between 1 and 86400 seconds (24 hours), not "
            "9223372036854775807",
            "huge.toml:10: repo.runner.max_parallel must be between 1 and 64, not 1000"});
}

TEST_CASE("check-config prints one line per problem, whatever the values hold") {
  test::TempDir dir;
  // TOML escapes: a newline, a carriage return and an ESC sequence in values and a key.
  test::write_file(dir / "ctl.toml",
                   "\"a\\nb\" = 1\n"
                   "[[repo]]\nname = \"acme\\nwidget\"\nremote = \"/r\"\n"
                   "forge = \"x\\r\\u001b[2J\"\nrequired_checks = [\"ci\"]\n"
                   "api_token = { file = \"no\\nfile\" }\n");
  auto r = dmzbot_run("check-config ctl.toml", dir.path());
  CHECK(r.exit_code == 1);
  const auto printed = lines(r.out);
  CHECK(printed == std::vector<std::string>{
                       "ctl.toml:1: unknown key 'a\\nb' at the top level",
                       "ctl.toml:3: repo.name 'acme\\nwidget' must look like \"owner/name\"",
                       "ctl.toml:5: unknown forge 'x\\r\\x1b[2J' (expected plain, github, gitlab "
                       "or gitea)",
                       "ctl.toml:7: repo.api_token file '" + dir.path().string() +
                           "/no\\nfile' does not exist"});
  CHECK(r.out.find('\x1b') == std::string::npos);
  CHECK(r.out.find('\r') == std::string::npos);
}

// A repository whose first commit holds a policy trusting one ssh key, and ssh-signed commits.
struct SignedRepo {
  test::TempDir dir;
  std::filesystem::path work = dir / "work";
  const test::SshKey& key = test::cached_ssh_key("ed25519");
  std::string root;
  SignedRepo() {
    std::string line = key.public_line.substr(0, key.public_line.rfind(' '));
    root = test::init_repo(work,
                           {{".dmz/policy.toml", "version = 1\n[accounts.alice]\nssh = ['" + line +
                                                     "']\n[groups]\ndevs = [\"alice\"]\n[[rule]]\n"
                                                     "branch = \"master\"\nsigners = \"devs\"\n"}});
  }
  std::string git(const std::string& args) {
    return test::must(test::git_env() + "git " + args, work);
  }
  std::string commit(const std::string& file) {
    return test::ssh_signed_commit(work, key, {{file, file + "\n"}}, "add " + file);
  }
};

TEST_CASE("verify prints a verdict for every commit: a malformed one is a FAIL line, exit 1") {
  SignedRepo r;
  std::string before = r.commit("a.txt");
  std::string good = r.commit("b.txt");
  // The same signed commit with its gpgsig header moved before author: git accepts it.
  std::string bytes = r.git("cat-file commit " + good) + "\n";
  size_t start = bytes.find("\ngpgsig ") + 1, end = start;
  do end = bytes.find('\n', end) + 1;
  while (bytes[end] == ' ');
  std::string header = bytes.substr(start, end - start);
  bytes.erase(start, end - start);
  bytes.insert(bytes.find("\nauthor ") + 1, header);
  test::write_file(r.dir / "odd", bytes);
  std::string odd =
      r.git("hash-object -t commit -w --literally " + test::shell_quote((r.dir / "odd").string()));
  r.git("update-ref HEAD " + odd);
  std::string after = r.commit("c.txt");

  auto v = dmzbot_run("verify " + r.root + "..master", r.work);
  INFO(v.out);
  CHECK(v.exit_code == 1);
  CHECK(lines(v.out) ==
        std::vector<std::string>{before.substr(0, 7) + " pass alice",
                                 odd.substr(0, 7) + " FAIL - commit " + odd.substr(0, 7) +
                                     ": bad-header: gpgsig header before the author header",
                                 after.substr(0, 7) + " pass alice"});
}

TEST_CASE("verify: an empty or reversed range and a hostile --policy are exit 2") {
  SignedRepo r;
  r.commit("a.txt");
  auto reversed = dmzbot_run("verify master.." + r.root, r.work);
  CHECK(reversed.exit_code == 2);
  CHECK(reversed.out == "dmzbot verify: the range master.." + r.root + " is empty\n");
  auto json = dmzbot_run("verify --json master..master", r.work);
  CHECK(json.exit_code == 2);
  CHECK(json.out == "dmzbot verify: the range master..master is empty\n");

  auto zero = bounded("verify --policy /dev/zero master", r.work);
  CHECK(zero.exit_code == 2);
  CHECK(zero.out == "dmzbot verify: '/dev/zero' is not a regular file (a character device)\n");
  REQUIRE(::mkfifo((r.dir / "fifo").c_str(), 0600) == 0);
  auto fifo = bounded("verify --policy " + test::shell_quote((r.dir / "fifo").string()) + " master",
                      r.work);
  CHECK(fifo.exit_code == 2);
  CHECK(fifo.out ==
        "dmzbot verify: '" + (r.dir / "fifo").string() + "' is not a regular file (a FIFO)\n");
}

TEST_CASE("verify --releases: a branch that does not exist is exit 2, not a clean audit") {
  SignedRepo r;
  r.commit("a.txt");
  r.git("branch staging");
  r.git("branch production");
  auto misspelt = dmzbot_run("verify --releases --staging stagign --production production", r.work);
  CHECK(misspelt.exit_code == 2);
  CHECK(misspelt.out.find("no branch stagign") != std::string::npos);
  CHECK(
      dmzbot_run("verify --releases --staging staging --production prodution", r.work).exit_code ==
      2);
  // Neither of the default names there: nothing to audit is not a pass either.
  r.git("branch -D staging production");
  auto none = dmzbot_run("verify --releases", r.work);
  CHECK(none.exit_code == 2);
  CHECK(none.out.find("no branch staging") != std::string::npos);
}

TEST_CASE("check-config's usage errors exit 1, as every problem it reports") {
  test::TempDir dir;
  test::write_file(dir / "token", "t0ken\n");
  test::write_file(dir / "ok.toml",
                   "[[repo]]\nname = \"acme/widget\"\nremote = \"/srv/git/widget.git\"\n"
                   "required_checks = [\"ci/build\"]\napi_token = { file = \"token\" }\n");
  for (const char* args : {"", "ok.toml ok.toml", "--strict ok.toml"}) {
    auto r = dmzbot_run(std::string("check-config ") + args, dir.path());
    CAPTURE(args);
    CAPTURE(r.out);
    CHECK(r.exit_code == 1);
    CHECK(r.out.find(": ok (") == std::string::npos);
  }
  CHECK(dmzbot_run("check-config --help", dir.path()).exit_code == 0);
}

// Each audit takes its own options: one meant for another would be ignored, silently.
TEST_CASE("verify: options of another audit are usage errors, exit 2") {
  for (const auto& [args, says] : std::vector<std::pair<std::string, std::string>>{
           {"--pushes --releases", "--pushes excludes --releases"},
           {"--pushes master", "--pushes excludes REVRANGE"},
           {"--releases master", "--releases excludes REVRANGE"},
           {"--staging s master", "--staging requires --releases"},
           {"--production p --pushes", "--production requires --releases"},
           {"--push-log refs/x master", "--push-log requires --releases"},
           {"--config hooks.toml master", "--config requires --pushes"},
           {"--config hooks.toml --releases", "--config requires --pushes"},
           {"--json --releases", "--json excludes --releases"}}) {
    auto r = test::run(dmzbot() + " verify " + args + " 2>&1");
    CAPTURE(args);
    CAPTURE(r.out);
    CHECK(r.exit_code == 2);
    CHECK(r.out.find(says) != std::string::npos);
  }
}

TEST_CASE("usage errors exit 2") {
  CHECK(test::run(dmzbot() + " verify").exit_code == 2);
  CHECK(test::run(dmzbot() + " no-such-command").exit_code == 2);
  // A mistyped command is named, with the commands there are.
  auto typo = test::run(dmzbot() + " check x.toml 2>&1");
  CHECK(typo.exit_code == 2);
  CHECK(typo.out.find("unknown command 'check'") != std::string::npos);
  CHECK(typo.out.find("check-config") != std::string::npos);
  CHECK(test::run(dmzbot() + " verify --no-such-flag master").exit_code == 2);
  CHECK(test::run(dmzbot() + " demo --port nope").exit_code == 2);
  CHECK(test::run(dmzbot() + " --version").exit_code == 0);
  // Numbers out of range, NaN among them (CLI11's Range lets it through).
  for (const char* bad : {"--rate nan", "--rate -1", "--fail 1.5", "--ci-median inf"}) {
    auto r = test::run(dmzbot() + " simulate --seeds 1 --hours 1 " + bad + " 2>&1");
    CAPTURE(bad);
    CHECK(r.exit_code == 2);
  }
}

TEST_CASE("simulate: options that cannot run exit 2 at once, saying why") {
  for (auto [args, says] : std::initializer_list<std::pair<const char*, const char*>>{
           {"--seeds 1 --hours 1 --seed -1", "--seed"},
           {"--seeds 2 --hours 1 --seed 18446744073709551615", "overflows"},
           {"--seeds 1 --hours 1 --strategy serial --lanes bogus", "--lanes must be none or paths"},
           {"--seeds 1 --rate 10000 --hours 100", "at most 100000"},
           {"--seeds 1 --hours 1 --svg /nonexistent-dir/x.svg", "cannot write /nonexistent-dir"}}) {
    auto r = test::run(dmzbot() + " simulate " + args + " 2>&1");
    CAPTURE(args);
    CAPTURE(r.out);
    CHECK(r.exit_code == 2);
    CHECK(r.out.find(says) != std::string::npos);
    CHECK(r.out.find("strategy ") == std::string::npos);  // no table: nothing was run
  }
}

}  // namespace
}  // namespace dmz

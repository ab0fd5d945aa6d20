// The command line as users and scripts see it: exit codes and file:line messages of the real
// dmzbot binary.
#include <doctest/doctest.h>

#include <cstdlib>

#include "tests/support.hpp"

namespace dmz {
namespace {

std::string dmzbot() {
  const char* bin = std::getenv("DMZBOT_BIN");
  REQUIRE_MESSAGE(bin, "DMZBOT_BIN must name the dmzbot binary (ctest sets it)");
  return test::shell_quote(bin);
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

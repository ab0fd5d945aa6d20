#include "config/config.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <future>
#include <string>
#include <vector>

#include "queue/glob.hpp"
#include "tests/support.hpp"
#include "tests/test_ca.hpp"

// Lists of problems print whole when a comparison fails.
namespace doctest {
template <>
struct StringMaker<std::vector<std::string>> {
  static String convert(const std::vector<std::string>& lines) {
    std::string out = "{";
    for (const auto& l : lines) out += "\n  \"" + l + "\"";
    return String((out + "\n}").c_str());
  }
};
}  // namespace doctest

namespace dmz::config {
namespace {

namespace fs = std::filesystem;

// Writes `text` to DIR/dmzbot.toml and loads it.
struct Fixture {
  test::TempDir dir;
  fs::path file() const { return dir / "dmzbot.toml"; }
  LoadResult load_text(const std::string& text) {
    test::write_file(file(), text);
    return load(file());
  }
  // The problems as "line: message" (as printed: one line each), after checking that each
  // names the config file.
  std::vector<std::string> problems(const std::string& text) { return lines_of(load_text(text)); }
  std::vector<std::string> lines_of(const LoadResult& r) {
    CHECK_FALSE(r.config.has_value());
    std::vector<std::string> out;
    for (const auto& p : r.problems) {
      CHECK(p.file == file().string());
      const std::string printed = p.to_string();
      const std::string prefix = file().string() + ":" + std::to_string(p.line) + ": ";
      REQUIRE(printed.rfind(prefix, 0) == 0);
      CHECK_MESSAGE(std::none_of(printed.begin(), printed.end(),
                                 [](char c) { return static_cast<unsigned char>(c) < 0x20; }),
                    printed);
      out.push_back(std::to_string(p.line) + ": " + printed.substr(prefix.size()));
    }
    return out;
  }
  Config ok(const std::string& text) {
    LoadResult r = load_text(text);
    std::string all;
    for (const auto& p : r.problems) all += p.to_string() + "\n";
    INFO(all);
    REQUIRE(r.problems.empty());
    REQUIRE(r.config.has_value());
    return *r.config;
  }
};

using Lines = std::vector<std::string>;

// A valid [[repo]] block of four lines, for tests about something else.
const std::string kRepo =
    "[[repo]]\nname = \"acme/widgets\"\nremote = \"/srv/widgets.git\"\n"
    "required_checks = [\"ci/build\"]\n";

struct ScopedEnv {
  std::string name;
  ScopedEnv(std::string n, const char* value) : name(std::move(n)) {
    if (value)
      setenv(name.c_str(), value, 1);
    else
      unsetenv(name.c_str());
  }
  ~ScopedEnv() { unsetenv(name.c_str()); }
};

TEST_CASE("config: a full valid configuration loads with every field") {
  Fixture f;
  test::write_file(f.dir / "secrets" / "api.token", "  s3cret-api\n");
  test::write_file(f.dir / "keys" / "bot", "-----BEGIN OPENSSH PRIVATE KEY-----\n...\n");
  test::write_file(f.dir / "trust" / "policy.toml", "# policy\n");
  fs::create_directories(f.dir / "gnupg");
  ScopedEnv env("DMZ_TEST_STATUS_TOKEN", "s3cret-status");
  Config c = f.ok(R"(data_dir = "state"

[server]
host = "0.0.0.0"
port = 9090
body_limit = 65536
read_timeout = 12
answer_timeout = 7
max_connections = 64
threads = 4

[store]
kind = "sqlite"
path = "db/dmz.db"
history_days = 90

[signing]
format = "ssh"
key = "keys/bot"
fingerprint = "0123456789ABCDEF0123456789abcdef01234567"
gnupg_home = "gnupg"
name = "Merge Bot"
email = "bot@example.com"

[[repo]]
name = "acme/widgets"
forge = "plain"
remote = "https://git.example.com/acme/widgets.git"
master = "main"
dmz = "staging"
required_checks = ["ci/build", "ci/test"]
check_timeout = 900
branch_patterns = ["feature/*"]
refused_patterns = ["wip/*", "tmp/*"]
api_token = { file = "secrets/api.token" }
status_token = { env = "DMZ_TEST_STATUS_TOKEN" }
policy_root = "trust/policy.toml"

[repo.runner]
command = "make check"
context = "local/build"
timeout = 120
max_parallel = 3
sandbox = "none"
network = true

[[repo]]
name = "acme/gadgets"
remote = "../remotes/gadgets.git"

[repo.runner]
command = "true"
)");
  const fs::path d = f.dir.path();
  CHECK(c.file == f.file());
  CHECK(c.data_dir == d / "state");
  CHECK(c.server.host == "0.0.0.0");
  CHECK(c.server.port == 9090);
  CHECK(c.server.body_limit == 65536);
  CHECK(c.server.read_timeout == std::chrono::seconds(12));
  CHECK(c.server.answer_timeout == std::chrono::seconds(7));
  CHECK(c.server.max_connections == 64);
  CHECK(c.server.threads == 4);
  CHECK(c.store.kind == "sqlite");
  CHECK(c.store.path == d / "state" / "db" / "dmz.db");
  CHECK(c.store.history_days == 90);
  CHECK(c.signing.format == "ssh");
  CHECK(c.signing.key == d / "keys" / "bot");
  CHECK(c.signing.fingerprint == "0123456789ABCDEF0123456789abcdef01234567");
  CHECK(c.signing.gnupg_home == d / "gnupg");
  CHECK(c.signing.name == "Merge Bot");
  CHECK(c.signing.email == "bot@example.com");

  REQUIRE(c.repos.size() == 2);
  const Repo& w = c.repos[0];
  CHECK(w.name == "acme/widgets");
  CHECK(w.forge == "plain");
  CHECK(w.remote == "https://git.example.com/acme/widgets.git");
  CHECK(w.master == "main");
  CHECK(w.dmz == "staging");
  CHECK(w.required_checks == std::vector<std::string>{"ci/build", "ci/test"});
  CHECK(w.check_timeout == std::chrono::seconds(900));
  CHECK(w.branch_patterns == std::vector<std::string>{"feature/*"});
  CHECK(w.refused_patterns == std::vector<std::string>{"wip/*", "tmp/*"});
  CHECK(w.api_token.reveal() == "s3cret-api");  // trimmed
  CHECK(w.status_token.reveal() == "s3cret-status");
  CHECK(w.policy_root == d / "trust" / "policy.toml");
  REQUIRE(w.runner.has_value());
  CHECK(w.runner->command == "make check");
  CHECK(w.runner->context == "local/build");
  CHECK(w.runner->timeout == std::chrono::seconds(120));
  CHECK(w.runner->max_parallel == 3);
  CHECK(w.runner->sandbox == "none");
  CHECK(w.runner->network);
  CHECK(w.line == 25);

  const Repo& g = c.repos[1];
  CHECK(g.name == "acme/gadgets");
  CHECK(g.line == 47);
  CHECK(g.remote == (d.parent_path() / "remotes" / "gadgets.git").string());  // a local path
  CHECK(g.forge == "plain");
  CHECK(g.master == "master");
  CHECK(g.dmz == "dmz");
  CHECK(g.check_timeout == std::chrono::seconds(1800));
  CHECK(g.branch_patterns == std::vector<std::string>{"feature/*", "bug/*", "hotfix/*"});
  CHECK(g.refused_patterns == std::vector<std::string>{"wip/*"});
  CHECK(g.api_token.empty());
  CHECK(g.status_token.empty());
  CHECK(g.policy_root.empty());
  REQUIRE(g.runner.has_value());
  CHECK(g.runner->command == "true");
  CHECK(g.runner->context == "dmzbot/local");
  CHECK(g.runner->timeout == std::chrono::seconds(600));
  CHECK(g.runner->max_parallel == 2);
  CHECK(g.runner->max_log_mib == 64);
  CHECK(g.runner->log_days == 30);
  CHECK(g.runner->sandbox == "bwrap");  // pull-request code is confined unless told otherwise
  CHECK_FALSE(g.runner->network);
  CHECK(g.required_checks == std::vector<std::string>{"dmzbot/local"});  // the runner's check

  CHECK(c.find_repo("acme/gadgets") == &c.repos[1]);
  CHECK(c.find_repo("acme/none") == nullptr);
}

TEST_CASE("config: defaults, and paths relative to the config file's directory") {
  Fixture f;
  Config c = f.ok(kRepo);
  const fs::path d = f.dir.path();
  CHECK(c.data_dir == d);
  CHECK(c.store.path == d / "dmzbot.db");
  CHECK(c.store.history_days == 365);
  CHECK(c.server.host == "127.0.0.1");
  CHECK(c.server.port == 8080);
  CHECK(c.server.body_limit == 1u << 20);
  CHECK(c.server.read_timeout == std::chrono::seconds(30));
  CHECK(c.server.threads == 2);
  CHECK(c.signing.format.empty());
  CHECK(c.signing.name == "dmzbot");
  REQUIRE(c.repos.size() == 1);
  CHECK(c.repos[0].remote == "/srv/widgets.git");
  CHECK_FALSE(c.repos[0].runner.has_value());

  // An absolute data_dir and store path are kept; an scp-like remote is not a path.
  Config c2 = f.ok(
      "data_dir = \"/var/lib/x\"\n[store]\npath = \"/db/x.db\"\n"
      "[[repo]]\nname = \"a/b\"\nremote = \"git@host:a/b.git\"\n"
      "required_checks = [\"c\"]\n");
  CHECK(c2.data_dir == "/var/lib/x");
  CHECK(c2.store.path == "/db/x.db");
  CHECK(c2.repos[0].remote == "git@host:a/b.git");
  // parse() resolves against the directory of the name it is given.
  LoadResult p = parse("data_dir = \"d\"\n" + kRepo, (f.dir / "sub" / "x.toml").string());
  REQUIRE(p.config.has_value());
  CHECK(p.config->data_dir == d / "sub" / "d");
  CHECK(p.config->file == d / "sub" / "x.toml");
}

TEST_CASE("config: a TOML syntax error is reported with its line") {
  Fixture f;
  auto p = f.problems("[server]\nport = 80\nhost = \"x\n");
  REQUIRE(p.size() == 1);
  CHECK(p[0].rfind("3: ", 0) == 0);
  CHECK(p[0].find("string") != std::string::npos);  // toml++: "encountered end-of-line ..."

  auto q = f.problems(kRepo + "[server]\nport = 1\nport = 2\n");
  CHECK(q ==
        Lines{"7: Error while parsing key-value pair: cannot redefine existing integer 'port'"});
}

TEST_CASE("config: a configuration without [[repo]] is refused: it would serve nothing") {
  Fixture f;
  const Lines nothing = {
      "1: no [[repo]]: dmzbot would serve nothing (add a [[repo]] table for each repository)"};
  CHECK(f.problems("") == nothing);
  CHECK(f.problems("[server]\nport = 8080\n") == nothing);
}

TEST_CASE("config: unknown keys are reported where they are") {
  Fixture f;
  CHECK(f.problems(R"(data_dri = "x"
[server]
prot = 1
[store]
knd = "sqlite"
[signing]
fromat = "ssh"
[[repo]]
name = "a/b"
remote = "/r"
requird_checks = ["ci"]
required_checks = ["ci"]
api_token = { file = "t", mode = "0600" }
[repo.runner]
command = "x"
cmd = "y"
)") == Lines{"1: unknown key 'data_dri' at the top level", "3: unknown key 'prot' in [server]",
             "5: unknown key 'knd' in [store]", "7: unknown key 'fromat' in [signing]",
             "11: unknown key 'requird_checks' in [[repo]]",
             "13: unknown key 'mode' in repo.api_token",
             "13: repo.api_token file '" + (f.dir / "t").string() + "' does not exist",
             "16: unknown key 'cmd' in [repo.runner]"});
}

TEST_CASE("config: wrong types") {
  Fixture f;
  CHECK(f.problems(R"(data_dir = 5
[server]
port = "80"
threads = 1.5
host = ""
[[repo]]
name = "a/b"
remote = "/r"
required_checks = "ci/build"
check_timeout = "30m"
branch_patterns = ["feature/*", 3]
runner = "make"
)") == Lines{"1: data_dir must be a string, not an integer",
             "3: server.port must be an integer, not a string",
             "4: server.threads must be an integer, not a float",
             "5: server.host must not be empty",
             "9: repo.required_checks must be an array of strings",
             "10: repo.check_timeout must be an integer, not a string",
             "11: repo.branch_patterns must be an array of strings",
             "12: repo.runner must be a table, not a string"});
  CHECK(f.problems("server = 3\n" + kRepo) == Lines{"1: server must be a table, not an integer"});
  CHECK(f.problems("repo = \"acme/widgets\"\n") ==
        Lines{"1: repo must be an array of tables ([[repo]])"});
}

TEST_CASE("config: missing required keys point at the table header") {
  Fixture f;
  CHECK(f.problems(kRepo + "\n[[repo]]\nforge = \"plain\"\nrequired_checks = [\"c\"]\n") ==
        Lines{"6: missing required key 'name' in [[repo]]",
              "6: missing required key 'remote' in [[repo]]"});
  CHECK(f.problems(kRepo + "[repo.runner]\ncontext = \"x\"\n") ==
        Lines{"5: missing required key 'command' in [repo.runner]"});
  CHECK(f.problems(kRepo + "[repo.runner]\ncommand = \"\"\n") ==
        Lines{"6: repo.runner.command must not be empty"});
}

TEST_CASE("config: a data_dir that is a file is a problem at its line") {
  Fixture f;
  test::write_file(f.dir / "taken", "x");
  CHECK(f.problems("data_dir = \"taken\"\n" + kRepo) ==
        Lines{"1: data_dir '" + (f.dir / "taken").string() + "' exists and is not a directory"});
  CHECK(f.ok("data_dir = \"new\"\n" + kRepo).data_dir == f.dir / "new");  // made at start
}

TEST_CASE("config: repository names, forges and branches") {
  Fixture f;
  CHECK(f.problems(kRepo + "\n[[repo]]\nname = \"acme/widgets\"\nremote = \"/x\"\n"
                           "required_checks = [\"c\"]\n") ==
        Lines{"7: duplicate repo 'acme/widgets' (first defined on line 2)"});
  // Names that would share a mirror directory (and GitHub's routing, which ignores case).
  CHECK(f.problems(
            "[[repo]]\nname = \"acme_x/widgets\"\nremote = \"/r\"\nrequired_checks = [\"c\"]\n"
            "[[repo]]\nname = \"acme/x_widgets\"\nremote = \"/s\"\nrequired_checks = [\"c\"]\n"
            "[[repo]]\nname = \"Acme_X/Widgets\"\nremote = \"/t\"\nrequired_checks = [\"c\"]\n") ==
        Lines{"6: repo 'acme/x_widgets' is the same as 'acme_x/widgets' (line 2) to dmzbot: names "
              "compare without case, and '/' as '_'",
              "10: repo 'Acme_X/Widgets' is the same as 'acme_x/widgets' (line 2) to dmzbot: names "
              "compare without case, and '/' as '_'"});
  CHECK(f.problems("[[repo]]\nname = \"widgets\"\nremote = \"/r\"\nrequired_checks = [\"c\"]\n"
                   "[[repo]]\nname = \"a/b/c\"\nremote = \"/r\"\nrequired_checks = [\"c\"]\n"
                   "[[repo]]\nname = \"a/..\"\nremote = \"/r\"\nrequired_checks = [\"c\"]\n") ==
        Lines{"2: repo.name 'widgets' must look like \"owner/name\"",
              "6: repo.name 'a/b/c' must look like \"owner/name\"",
              "10: repo.name 'a/..' must look like \"owner/name\""});
  CHECK(f.problems(kRepo + "forge = \"gitlab\"\n") ==
        Lines{"5: forge gitlab is not supported yet"});
  CHECK(f.problems(kRepo + "forge = \"bitbucket\"\n") ==
        Lines{"5: unknown forge 'bitbucket' (expected plain, github, gitlab or gitea)"});
  CHECK(f.problems(kRepo + "master = \"main\"\ndmz = \"main\"\n") ==
        Lines{"6: repo.dmz must differ from repo.master (both are 'main')"});
  CHECK(f.problems(kRepo + "master = \"dmz\"\n") ==
        Lines{"5: repo.dmz must differ from repo.master (both are 'dmz')"});
  // Release branches: configurable, distinct from each other and from master and dmz.
  Config named = f.ok(kRepo + "staging = \"pre\"\nproduction = \"live\"\n");
  CHECK(named.repos[0].staging == "pre");
  CHECK(named.repos[0].production == "live");
  const std::string release_clash =
      "repo.staging and repo.production must differ from each other and from master and dmz, "
      "and not be under one of them (git cannot hold a/b beside a)";
  CHECK(f.problems(kRepo + "staging = \"master\"\n") == Lines{"5: " + release_clash});
  CHECK(f.problems(kRepo + "production = \"master/prod\"\n") == Lines{"5: " + release_clash});
  CHECK(f.problems(kRepo + "staging = \"dmz/pre\"\n") == Lines{"5: " + release_clash});
  CHECK(f.problems(kRepo + "staging = \"pre\"\nproduction = \"pre/live\"\n") ==
        Lines{"6: " + release_clash});
  CHECK(f.problems(kRepo + "dmz = \"master/dmz\"\n") ==
        Lines{"5: repo.dmz 'master/dmz' and repo.master 'master' cannot both be branches: one is "
              "under the other"});
  CHECK(f.problems(kRepo + "master = \"dmz/main\"\n") ==
        Lines{"5: repo.dmz 'dmz' and repo.master 'dmz/main' cannot both be branches: one is "
              "under the other"});
  CHECK(f.ok(kRepo + "master = \"main\"\ndmz = \"main-dmz\"\n").repos[0].dmz == "main-dmz");
  // The hotfix flow's branches: a glob, default hotfix/*.
  CHECK(named.repos[0].hotfix_branches == "hotfix/*");
  CHECK(f.ok(kRepo + "hotfix_branches = \"fix-*\"\n").repos[0].hotfix_branches == "fix-*");
  CHECK(f.problems(kRepo + "hotfix_branches = \"a..*\"\n") ==
        Lines{"5: repo.hotfix_branches 'a..*' is not a branch name pattern"});
  CHECK(f.problems(kRepo + "hotfix_branches = \"*\"\n") ==
        Lines{"5: repo.hotfix_branches '*' matches master, dmz, staging or production"});
  CHECK(f.problems(kRepo + "production = \"a..b\"\n") ==
        Lines{"5: repo.production 'a..b' is not a valid branch name"});
  CHECK(f.problems(kRepo + "master = \"ma ster\"\ndmz = \"a..b\"\n") ==
        Lines{"5: repo.master 'ma ster' is not a valid branch name",
              "6: repo.dmz 'a..b' is not a valid branch name"});
  // git check-ref-format's rules for each part between slashes.
  for (const char* bad : {".dmz", "q/.hidden", "rel.lock/staging", "x.lock", "a//b", "/a", "a/",
                          "a.", "@", "a@{b", "-a", "a~b", "a:b"}) {
    INFO(bad);
    CHECK(f.problems(kRepo + "dmz = \"" + std::string(bad) + "\"\n") ==
          Lines{"5: repo.dmz '" + std::string(bad) + "' is not a valid branch name"});
  }
  for (const char* good : {"dmz.next", "team/dmz", "a.b/c-d_e", "v1.2", "a@b", "lock.x"}) {
    INFO(good);
    CHECK(f.ok(kRepo + "dmz = \"" + std::string(good) + "\"\n").repos[0].dmz == good);
  }
}

TEST_CASE("config: server ranges") {
  Fixture f;
  CHECK(f.problems("[server]\nport = 70000\nbody_limit = 0\nread_timeout = -1\nthreads = 0\n" +
                   kRepo) ==
        Lines{"2: server.port must be between 0 and 65535, not 70000",
              "3: server.body_limit must be between 1024 and 67108864 bytes (64 MiB), not 0",
              "4: server.read_timeout must be between 1 and 3600 seconds (1 hour), not -1",
              "5: server.threads must be between 1 and 256, not 0"});
  CHECK(f.problems("[server]\nanswer_timeout = 0\nmax_connections = 0\n" + kRepo) ==
        Lines{"2: server.answer_timeout must be between 1 and 3600 seconds (1 hour), not 0",
              "3: server.max_connections must be between 1 and 65536, not 0"});
  CHECK(f.ok("[server]\nport = 0\n" + kRepo).server.port == 0);  // any free port
  CHECK(f.ok("[server]\nport = 65535\n" + kRepo).server.port == 65535);
  CHECK(f.problems("[store]\nkind = \"postgres\"\n" + kRepo) ==
        Lines{"2: store.kind 'postgres' is not supported (use \"sqlite\")"});
  CHECK(f.problems("[store]\nhistory_days = -1\n" + kRepo) ==
        Lines{"2: store.history_days must be between 0 and 36500 days (100 years), not -1"});
  CHECK(f.ok("[store]\nhistory_days = 0\n" + kRepo).store.history_days == 0);  // kept forever
  CHECK(f.problems("[store]\nhistory_days = 3\n" + kRepo) ==
        Lines{"2: store.history_days must be 0 (kept forever) or at least 7, not 3"});
}

TEST_CASE("config: [log] format is text (the default) or json") {
  Fixture f;
  CHECK(f.ok(kRepo).log_format == "text");
  CHECK(f.ok("[log]\nformat = \"json\"\n" + kRepo).log_format == "json");
  CHECK(f.ok("[log]\nformat = \"text\"\n" + kRepo).log_format == "text");
  CHECK(
      f.problems("[log]\nformat = \"xml\"\nlevel = \"debug\"\n" + kRepo) ==
      Lines{"2: log.format 'xml' must be \"text\" or \"json\"", "3: unknown key 'level' in [log]"});
}

TEST_CASE("config: required checks") {
  Fixture f;
  const std::string head = "[[repo]]\nname = \"a/b\"\nremote = \"/r\"\n";
  CHECK(f.problems(head + "required_checks = []\n") ==
        Lines{"4: repo.required_checks is empty: nothing would gate master"});
  CHECK(f.problems(head + "required_checks = [\"ci\", \"\", \"ci\"]\n") ==
        Lines{"4: repo.required_checks has an empty entry",
              "4: repo.required_checks lists 'ci' twice"});
  CHECK(f.problems(head) ==
        Lines{"1: [[repo]] has neither required_checks nor [repo.runner]: nothing would gate "
              "master"});
  CHECK(f.problems(head + "required_checks = [\"ci\"]\ncheck_timeout = 0\n") ==
        Lines{"5: repo.check_timeout must be between 1 and 604800 seconds (7 days), not 0"});
  CHECK(f.problems(head + "[repo.runner]\ncommand = \"x\"\ntimeout = 0\nmax_parallel = 0\n") ==
        Lines{"6: repo.runner.timeout must be between 1 and 86400 seconds (24 hours), not 0",
              "7: repo.runner.max_parallel must be between 1 and 64, not 0"});
  CHECK(f.problems(head +
                   "[repo.runner]\ncommand = \"x\"\nsandbox = \"docker\"\nnetwork = \"yes\"\n") ==
        Lines{"6: repo.runner.sandbox must be \"bwrap\" or \"none\", not \"docker\"",
              "7: repo.runner.network must be a boolean, not a string"});
}

TEST_CASE("config: tokens come from a file or the environment, never inline") {
  Fixture f;
  const std::string head = kRepo;  // lines 1-4
  test::write_file(f.dir / "api.token", "tok-from-file\n");
  test::write_file(f.dir / "empty.token", " \n");
  fs::create_directories(f.dir / "adir");
  ScopedEnv set("DMZ_TEST_TOKEN", "tok-from-env");
  ScopedEnv unset("DMZ_TEST_UNSET", nullptr);
  ScopedEnv blank("DMZ_TEST_BLANK", "");

  Config c = f.ok(head +
                  "api_token = { file = \"api.token\" }\n"
                  "status_token = { env = \"DMZ_TEST_TOKEN\" }\n");
  CHECK(c.repos[0].api_token.reveal() == "tok-from-file");
  CHECK(c.repos[0].status_token.reveal() == "tok-from-env");
  CHECK(c.secret_files == std::vector<fs::path>{f.dir / "api.token"});
  // The [repo.api_token] table form works too; absolute paths are kept.
  Config c2 = f.ok(head + "[repo.api_token]\nfile = \"" + (f.dir / "api.token").string() + "\"\n");
  CHECK(c2.repos[0].api_token.reveal() == "tok-from-file");

  const std::string d = f.dir.path().string();
  auto p = f.problems(head +
                      "api_token = \"inline-secret-value\"\n"
                      "status_token = { file = \"missing.token\" }\n" +
                      "\n[[repo]]\nname = \"a/b\"\nremote = \"/r\"\nrequired_checks = [\"c\"]\n"
                      "api_token = { file = \"adir\" }\n"
                      "status_token = { file = \"empty.token\" }\n"
                      "\n[[repo]]\nname = \"a/c\"\nremote = \"/r\"\nrequired_checks = [\"c\"]\n"
                      "api_token = { env = \"DMZ_TEST_UNSET\" }\n"
                      "status_token = { env = \"DMZ_TEST_BLANK\" }\n"
                      "\n[[repo]]\nname = \"a/d\"\nremote = \"/r\"\nrequired_checks = [\"c\"]\n"
                      "api_token = { file = \"api.token\", env = \"DMZ_TEST_TOKEN\" }\n"
                      "status_token = {}\n");
  CHECK(p == Lines{
                 "5: repo.api_token is inline: secrets must come from a file or the environment "
                 "(api_token = { file = \"...\" } or { env = \"NAME\" })",
                 "6: repo.status_token file '" + d + "/missing.token' does not exist",
                 "12: repo.api_token file '" + d + "/adir' is not a regular file (a directory)",
                 "13: repo.status_token file '" + d + "/empty.token' is empty",
                 "19: repo.api_token: environment variable DMZ_TEST_UNSET is not set",
                 "20: repo.status_token: environment variable DMZ_TEST_BLANK is empty",
                 "26: repo.api_token must have either 'file' or 'env', not both",
                 "27: repo.status_token must have 'file' or 'env'",
             });
  for (const auto& line : p) {
    CHECK(line.find("inline-secret-value") == std::string::npos);
    CHECK(line.find("tok-from") == std::string::npos);
  }
}

TEST_CASE("config: a token is one line; a key file may hold many") {
  Fixture f;
  const std::string head = kRepo;  // lines 1-4
  test::write_file(f.dir / "crlf.token", "tok-crlf\r\n");
  test::write_file(f.dir / "commented.token", "# the bot's token, expires 2027\ntok-hidden\n");
  ScopedEnv two("DMZ_TEST_TWO_LINES", "tok-one\ntok-two");
  // A trailing newline, CRLF included, is no second line.
  CHECK(f.ok(head + "api_token = { file = \"crlf.token\" }\n").repos[0].api_token.reveal() ==
        "tok-crlf");
  const std::string d = f.dir.path().string();
  auto p = f.problems(head +
                      "api_token = { file = \"commented.token\" }\n"
                      "status_token = { env = \"DMZ_TEST_TWO_LINES\" }\n");
  CHECK(p == Lines{"5: repo.api_token file '" + d +
                       "/commented.token' holds more than one line or a control character: it "
                       "must hold the secret alone, on one line",
                   "6: repo.status_token: environment variable DMZ_TEST_TWO_LINES holds more "
                   "than one line or a control character"});
  for (const auto& line : p) CHECK(line.find("tok-") == std::string::npos);
}

TEST_CASE("config: credentials for the remote and the network timeout") {
  Fixture f;
  const std::string head = kRepo;  // lines 1-4
  test::write_file(f.dir / "git.token", "ghs_secret-token\n");
  test::write_file(f.dir / "deploy_key", "-----BEGIN OPENSSH PRIVATE KEY-----\n...\n");
  fs::permissions(f.dir / "deploy_key", fs::perms::owner_read | fs::perms::owner_write);
  test::write_file(f.dir / "known_hosts", "[127.0.0.1]:2222 ssh-ed25519 AAAA...\n");

  Config c = f.ok(head +
                  "network_timeout = 15\n"
                  "[repo.auth]\ntoken = { file = \"git.token\" }\nusername = \"bot\"\n"
                  "ssh_key = { file = \"deploy_key\" }\nknown_hosts = \"known_hosts\"\n");
  const Repo& r = c.repos[0];
  CHECK(r.network_timeout == std::chrono::seconds(15));
  CHECK(r.auth.token.reveal() == "ghs_secret-token");
  CHECK(r.auth.username == "bot");
  CHECK(r.auth.ssh_key == f.dir / "deploy_key");
  CHECK(r.auth.known_hosts == f.dir / "known_hosts");
  // A key others may read: ssh would refuse it at the first fetch.
  fs::permissions(f.dir / "deploy_key", fs::perms::group_read | fs::perms::others_read,
                  fs::perm_options::add);
  CHECK(f.problems(head + "[repo.auth]\nssh_key = { file = \"deploy_key\" }\n"
                          "known_hosts = \"known_hosts\"\n") ==
        Lines{"6: repo.auth.ssh_key file '" + (f.dir / "deploy_key").string() +
              "' is readable by others (mode 0644); ssh refuses it: chmod 600"});
  fs::permissions(f.dir / "deploy_key", fs::perms::owner_read | fs::perms::owner_write);
  // A token goes only over https, or plain http on this machine.
  const std::string over_http =
      "[[repo]]\nname = \"acme/widgets\"\n"
      "remote = \"http://git.example.com/widgets.git\"\n"
      "required_checks = [\"ci\"]\n"
      "[repo.auth]\ntoken = { file = \"git.token\" }\n";  // line 6
  CHECK(f.problems(over_http) ==
        Lines{"6: repo.auth.token goes only over https: repo.remote "
              "http://git.example.com/widgets.git is plain http (a token would cross the network "
              "in clear text)"});
  f.ok(
      "[[repo]]\nname = \"acme/widgets\"\nremote = \"http://127.0.0.1:8080/widgets.git\"\n"
      "required_checks = [\"ci\"]\n[repo.auth]\ntoken = { file = \"git.token\" }\n");
  // The files of secrets and keys, which the builds' sandbox hides (not the public hosts).
  CHECK(c.secret_files == std::vector<fs::path>{f.dir / "git.token", f.dir / "deploy_key"});
  Config d = f.ok(head);
  CHECK(d.repos[0].network_timeout == std::chrono::seconds(60));
  CHECK(d.repos[0].auth.username == "x-access-token");
  CHECK(d.repos[0].auth.token.empty());

  const std::string dir = f.dir.path().string();
  auto p = f.problems(head +
                      "network_timeout = 0\n"            // 5
                      "[repo.auth]\n"                    // 6
                      "token = \"ghs_inline\"\n"         // 7
                      "username = \"a:b\"\n"             // 8
                      "ssh_key = { file = \"nope\" }\n"  // 9
                      "pasword = 1\n");                  // 10
  CHECK(p == Lines{
                 "5: repo.network_timeout must be between 1 and 3600 seconds (1 hour), not 0",
                 "6: [repo.auth] has ssh_key but no known_hosts: the remote's host key must be "
                 "pinned",
                 "7: repo.auth.token is inline: secrets must come from a file or the environment "
                 "(token = { file = \"...\" } or { env = \"NAME\" })",
                 "8: repo.auth.username must be a non-empty name without ':', '@', '/' or "
                 "newlines",
                 "9: repo.auth.ssh_key file '" + dir + "/nope' does not exist",
                 "10: unknown key 'pasword' in [repo.auth]",
             });
  for (const auto& line : p) CHECK(line.find("ghs_inline") == std::string::npos);
  auto env_key = f.problems(head + "[repo.auth]\nssh_key = { env = \"KEY\" }\n");
  CHECK(env_key == Lines{"6: repo.auth.ssh_key must be { file = \"...\" }"});
}

TEST_CASE("config: a remote git would run as a helper, or with credentials in it, is refused") {
  Fixture f;
  auto with_remote = [](const std::string& url) {
    return "[[repo]]\nname = \"acme/widgets\"\nremote = \"" + url +
           "\"\nrequired_checks = [\"ci/build\"]\n";
  };
  CHECK(f.problems(with_remote("ext::sh -c touch% /tmp/pwned")) ==
        Lines{"3: repo.remote: remote helper URLs (ext::) are not allowed"});
  CHECK(f.problems(with_remote("ftp://example.com/x.git")) ==
        Lines{"3: repo.remote: unsupported remote URL scheme 'ftp'"});
  CHECK(f.problems(with_remote("-oProxyCommand=evil")) ==
        Lines{"3: repo.remote: the remote URL starts with '-'"});
  for (const char* url :
       {"https://bob:hunter2@example.com/x.git", "https://hunter2@example.com/x"}) {
    auto p = f.problems(with_remote(url));
    REQUIRE(p.size() == 1);
    CHECK(
        p[0].starts_with("3: repo.remote: the remote URL carries credentials (https://...@"
                         "example.com): give the token as the repository's token"));
    CHECK(p[0].find("hunter2") == std::string::npos);
  }
  // ssh names its user in the URL; local paths and the usual URLs load.
  for (const char* url : {"ssh://git@example.com/x.git", "git@example.com:x.git",
                          "https://example.com/x.git", "/srv/x.git"})
    CHECK(f.ok(with_remote(url)).repos.at(0).remote.ends_with("x.git"));
}

TEST_CASE("config: signing") {
  Fixture f;
  test::write_file(f.dir / "key", "-----BEGIN OPENSSH PRIVATE KEY-----\n...\n");
  Config c = f.ok(
      "[signing]\nformat = \"openpgp\"\nfingerprint = "
      "\"0123456789ABCDEF0123456789abcdef01234567\"\n" +
      kRepo);
  CHECK(c.signing.format == "openpgp");
  CHECK(c.signing.fingerprint == "0123456789ABCDEF0123456789abcdef01234567");
  CHECK(f.ok("[signing]\nformat = \"ssh\"\nkey = \"key\"\n" + kRepo).signing.key == f.dir / "key");
  CHECK(f.problems("[signing]\nformat = \"ssh\"\n" + kRepo) ==
        Lines{"2: signing.format \"ssh\" needs signing.key"});
  CHECK(f.problems("[signing]\nformat = \"openpgp\"\n" + kRepo) ==
        Lines{"2: signing.format \"openpgp\" needs signing.fingerprint"});
  CHECK(f.problems("[signing]\nformat = \"x509\"\n" + kRepo) ==
        Lines{"2: signing.format must be \"ssh\" or \"openpgp\", not 'x509'"});
  // A key without its format: merges would silently go unsigned.
  CHECK(f.problems("[signing]\nname = \"dmzbot\"\nkey = \"key\"\n" + kRepo) ==
        Lines{"3: signing.key is set but signing.format is not (\"ssh\" or \"openpgp\"): merges "
              "would not be signed"});
  CHECK(f.ok("[signing]\nname = \"dmzbot\"\n" + kRepo).signing.format.empty());
  // Registration patterns: only the plain forge reads them, and each must match some branch.
  CHECK(f.problems(kRepo + "branch_patterns = [\"feature/\", \"bug/*\"]\n") ==
        Lines{"5: repo.branch_patterns 'feature/' matches no branch: " +
              queue::unmatchable("feature/")});
  const Lines github = f.problems(kRepo + "forge = \"github\"\nrefused_patterns = [\"wip/*\"]\n");
  CHECK(
      std::count(github.begin(), github.end(),
                 "6: repo.refused_patterns applies to forge = \"plain\" only: on github, allow or "
                 "refuse branches in the trust policy's [branches]") == 1);
  // The committer line of every merge: no header break, no nested angle brackets.
  CHECK(f.problems("[signing]\nname = \"dmz\\nbot\"\nemail = \"<bot@x>\"\n" + kRepo) ==
        Lines{"2: signing.name must not be empty or hold a control character, '<' or '>'",
              "3: signing.email must not be empty or hold a control character, '<' or '>'"});
  CHECK(f.ok("[signing]\nname = \"Merge Bot (dmz)\"\nemail = \"bot+dmz@example.com\"\n" + kRepo)
            .signing.email == "bot+dmz@example.com");
  fs::create_directories(f.dir / "keydir");
  CHECK(f.problems("[signing]\nformat = \"ssh\"\nkey = \"nokey\"\n" + kRepo) ==
        Lines{"3: signing.key file '" + (f.dir / "nokey").string() + "' does not exist"});
  CHECK(f.problems("[signing]\nformat = \"ssh\"\nkey = \"keydir\"\n" + kRepo) ==
        Lines{"3: signing.key file '" + (f.dir / "keydir").string() +
              "' is not a regular file (a directory)"});
  CHECK(f.problems("[signing]\nformat = \"openpgp\"\nfingerprint = "
                   "\"0123456789ABCDEF0123456789abcdef01234567\"\ngnupg_home = \"key\"\n" +
                   kRepo) ==
        Lines{"4: signing.gnupg_home '" + (f.dir / "key").string() + "' is not a directory"});
  // A short key id, a fingerprint with spaces, a public key instead of the private one.
  CHECK(
      f.problems("[signing]\nformat = \"openpgp\"\nfingerprint = \"89ABCDEF01234567\"\n" + kRepo) ==
      Lines{"3: signing.fingerprint must be the key's full fingerprint (40 hex digits, no "
            "spaces), not '89ABCDEF01234567'"});
  CHECK(f.problems("[signing]\nformat = \"openpgp\"\nfingerprint = \"0123 4567 89AB CDEF 0123  "
                   "4567 89AB CDEF 0123 4567\"\n" +
                   kRepo)
            .size() == 1);
  test::write_file(f.dir / "key.pub", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB bot@host\n");
  CHECK(f.problems("[signing]\nformat = \"ssh\"\nkey = \"key.pub\"\n" + kRepo) ==
        Lines{"3: signing.key file '" + (f.dir / "key.pub").string() +
              "' is not an OpenSSH private key (a public key, or PEM?): give the private key "
              "ssh-keygen wrote, without a passphrase"});
  test::write_file(f.dir / "key.pem", "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n");
  CHECK(f.problems("[signing]\nformat = \"ssh\"\nkey = \"key.pem\"\n" + kRepo).size() == 1);
}

TEST_CASE("config: every problem is reported, in line order") {
  Fixture f;
  auto p = f.problems(R"([server]
port = 99999

[[repo]]
name = "acme/widgets"
requird_checks = ["ci/build"]
required_checks = ["ci/build"]
api_token = "hunter2"

[[repo]]
name = "acme/widgets"
remote = "/r"
forge = "gitlab"
required_checks = ["ci/build"]
[repo.runner]
context = "x"
)");
  CHECK(p == Lines{
                 "2: server.port must be between 0 and 65535, not 99999",
                 "4: missing required key 'remote' in [[repo]]",
                 "6: unknown key 'requird_checks' in [[repo]]",
                 "8: repo.api_token is inline: secrets must come from a file or the environment "
                 "(api_token = { file = \"...\" } or { env = \"NAME\" })",
                 "11: duplicate repo 'acme/widgets' (first defined on line 5)",
                 "13: forge gitlab is not supported yet",
                 "15: missing required key 'command' in [repo.runner]",
             });
}

TEST_CASE("config: a file that cannot be read") {
  test::TempDir dir;
  LoadResult r = load(dir / "nope.toml");
  CHECK_FALSE(r.config.has_value());
  REQUIRE(r.problems.size() == 1);
  CHECK(r.problems[0].to_string() == (dir / "nope.toml").string() + ":0: the configuration file '" +
                                         (dir / "nope.toml").string() + "' does not exist");
}

TEST_CASE("config: the example in deploy/ is valid") {
  Fixture f;
  const fs::path example = test::source_dir() / "deploy" / "dmzbot.example.toml";
  std::string text = test::read_file(example);
  REQUIRE_FALSE(text.empty());
  test::write_file(f.dir / "secrets" / "widgets-api.token", "a\n");
  test::write_file(f.dir / "secrets" / "gadgets-api.token", "b\n");
  test::write_file(f.dir / "keys" / "dmzbot_ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----\n");
  test::write_file(f.dir / "keys" / "gadgets_deploy_ed25519", "k\n");
  fs::permissions(f.dir / "keys" / "gadgets_deploy_ed25519",
                  fs::perms::owner_read | fs::perms::owner_write);
  test::write_file(f.dir / "keys" / "known_hosts", "git.example.com ssh-ed25519 AAAA\n");
  test::write_file(f.dir / "secrets" / "octo-webhook", "w\n");
  test::write_file(f.dir / "secrets" / "octo-token", "t\n");
  ScopedEnv env("DMZBOT_WIDGETS_STATUS_TOKEN", "c");
  Config c = f.ok(text);
  CHECK(c.data_dir == "/var/lib/dmzbot");
  CHECK(c.store.path == "/var/lib/dmzbot/dmzbot.db");
  CHECK(c.log_format == "text");
  REQUIRE(c.repos.size() == 3);
  CHECK(c.repos[0].required_checks == std::vector<std::string>{"ci/build", "ci/test"});
  CHECK(c.repos[1].required_checks == std::vector<std::string>{"dmzbot/local"});
  CHECK(c.repos[1].api_token.reveal() == "b");
  CHECK(c.repos[2].forge == "github");
  CHECK(c.repos[2].remote == "https://github.com/octo/widgets.git");
  REQUIRE(c.repos[2].github.has_value());
  CHECK(c.repos[2].github->merge_masters == std::vector<std::string>{"alice", "octo/release-team"});
}

// A FIFO at `fifo` with a writer held open while `load` runs: a reader that blocked would wait
// for data that never comes, until the writer is closed after 5 seconds; so the test ends
// either way, and says whether the load returned at once.
LoadResult load_beside_fifo(const fs::path& fifo, const std::function<LoadResult()>& load) {
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  int writer = ::open(fifo.c_str(), O_RDWR | O_CLOEXEC);
  REQUIRE(writer >= 0);
  auto pending = std::async(std::launch::async, load);
  const bool prompt = pending.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  ::close(writer);
  LoadResult r = pending.get();
  CHECK_MESSAGE(prompt, "loading blocked on a FIFO");
  return r;
}

TEST_CASE("config: token, key and policy files are regular files within a size limit") {
  Fixture f;
  const std::string d = f.dir.path().string();
  fs::create_directories(f.dir / "adir");
  test::write_file(f.dir / "max.token", std::string(64 * 1024, 'x'));
  test::write_file(f.dir / "big.token", std::string(64 * 1024 + 1, 'x'));
  test::write_file(f.dir / "big-policy.toml", std::string((1 << 20) + 1, '#'));
  test::write_file(f.dir / "policy.toml", "# policy\n");
  fs::create_symlink(f.dir / "max.token", f.dir / "link.token");

  // 64 KiB exactly, through a symlink, and a 1 MiB policy are fine.
  Config c = f.ok(kRepo + "api_token = { file = \"link.token\" }\npolicy_root = \"policy.toml\"\n");
  CHECK(c.repos[0].api_token.reveal().size() == 64 * 1024);

  LoadResult r = load_beside_fifo(f.dir / "fifo", [&] {
    test::write_file(f.file(),
                     kRepo +  // lines 1-4
                         "api_token = { file = \"/dev/zero\" }\n"
                         "status_token = { file = \"fifo\" }\n"
                         "policy_root = \"/dev/zero\"\n"
                         "\n[[repo]]\nname = \"a/b\"\nremote = \"/r\"\nrequired_checks = [\"c\"]\n"
                         "api_token = { file = \"adir\" }\n"
                         "status_token = { file = \"big.token\" }\n"
                         "policy_root = \"big-policy.toml\"\n"
                         "\n[[repo]]\nname = \"a/c\"\nremote = \"/r\"\nrequired_checks = [\"c\"]\n"
                         "policy_root = \"fifo\"\n"
                         "[signing]\nformat = \"ssh\"\nkey = \"/dev/zero\"\n");
    return load(f.file());
  });
  CHECK(f.lines_of(r) ==
        Lines{
            "5: repo.api_token file '/dev/zero' is not a regular file (a character device)",
            "6: repo.status_token file '" + d + "/fifo' is not a regular file (a FIFO)",
            "7: repo.policy_root '/dev/zero' is not a regular file (a character device)",
            "13: repo.api_token file '" + d + "/adir' is not a regular file (a directory)",
            "14: repo.status_token file '" + d + "/big.token' is larger than 65536 bytes",
            "15: repo.policy_root '" + d + "/big-policy.toml' is larger than 1048576 bytes",
            "21: repo.policy_root '" + d + "/fifo' is not a regular file (a FIFO)",
            "24: signing.key file '/dev/zero' is not a regular file (a character device)",
        });
}

TEST_CASE("config: the configuration file itself is a regular file of at most 1 MiB") {
  Fixture f;
  const std::string d = f.dir.path().string();
  auto only = [](const LoadResult& r) {
    CHECK_FALSE(r.config.has_value());
    REQUIRE(r.problems.size() == 1);
    return r.problems[0].to_string();
  };
  CHECK(only(load("/dev/zero")) ==
        "/dev/zero:0: the configuration file '/dev/zero' is not a regular file (a character "
        "device)");
  CHECK(only(load(f.dir.path())) ==
        d + ":0: the configuration file '" + d + "' is not a regular file (a directory)");
  test::write_file(f.dir / "big.toml", kRepo + std::string(1 << 20, '#'));
  CHECK(only(load(f.dir / "big.toml")) == d + "/big.toml:0: the configuration file '" + d +
                                              "/big.toml' is larger than 1048576 bytes");
  LoadResult fifo = load_beside_fifo(f.dir / "fifo", [&] { return load(f.dir / "fifo"); });
  CHECK(only(fifo) ==
        d + "/fifo:0: the configuration file '" + d + "/fifo' is not a regular file (a FIFO)");
}

TEST_CASE("config: every duration and count has a range, named in its message") {
  Fixture f;
  const std::string head = "[[repo]]\nname = \"a/b\"\nremote = \"/r\"\n";
  CHECK(f.problems(head + "required_checks = [\"ci\"]\ncheck_timeout = 9223372036854775807\n") ==
        Lines{"5: repo.check_timeout must be between 1 and 604800 seconds (7 days), not "
              "9223372036854775807"});
  CHECK(f.problems(head + "required_checks = [\"ci\"]\ncheck_timeout = 0\n") ==
        Lines{"5: repo.check_timeout must be between 1 and 604800 seconds (7 days), not 0"});
  CHECK(
      f.ok(head + "required_checks = [\"ci\"]\ncheck_timeout = 604800\n").repos[0].check_timeout ==
      std::chrono::hours(24 * 7));
  CHECK(f.problems(head + "[repo.runner]\ncommand = \"x\"\ntimeout = 86401\nmax_parallel = 65\n"
                          "max_log_mib = 0\nlog_days = 3651\n") ==
        Lines{"6: repo.runner.timeout must be between 1 and 86400 seconds (24 hours), not 86401",
              "7: repo.runner.max_parallel must be between 1 and 64, not 65",
              "8: repo.runner.max_log_mib must be between 1 and 4096, not 0",
              "9: repo.runner.log_days must be between 1 and 3650, not 3651"});
  CHECK(f.problems(head + "[repo.runner]\ncommand = \"x\"\ntimeout = 9223372036854775807\n") ==
        Lines{"6: repo.runner.timeout must be between 1 and 86400 seconds (24 hours), not "
              "9223372036854775807"});
  Config ok = f.ok(head +
                   "[repo.runner]\ncommand = \"x\"\ntimeout = 86400\nmax_parallel = 64\n"
                   "max_log_mib = 4096\nlog_days = 3650\n");
  CHECK(ok.repos[0].runner->timeout == std::chrono::hours(24));
  CHECK(ok.repos[0].runner->max_parallel == 64);
  CHECK(ok.repos[0].runner->max_log_mib == 4096);
  CHECK(ok.repos[0].runner->log_days == 3650);
  CHECK(f.problems("[server]\nbody_limit = 9223372036854775807\nread_timeout = 3601\n"
                   "answer_timeout = 3601\nmax_connections = 65537\nthreads = 257\nport = -1\n" +
                   kRepo) ==
        Lines{"2: server.body_limit must be between 1024 and 67108864 bytes (64 MiB), not "
              "9223372036854775807",
              "3: server.read_timeout must be between 1 and 3600 seconds (1 hour), not 3601",
              "4: server.answer_timeout must be between 1 and 3600 seconds (1 hour), not 3601",
              "5: server.max_connections must be between 1 and 65536, not 65537",
              "6: server.threads must be between 1 and 256, not 257",
              "7: server.port must be between 0 and 65535, not -1"});
  Config s = f.ok("[server]\nbody_limit = 67108864\nread_timeout = 3600\n" + kRepo);
  CHECK(s.server.body_limit == 64u << 20);
  CHECK(s.server.read_timeout == std::chrono::hours(1));
}

TEST_CASE("config: Problem::to_string is one line, whatever its file name and message hold") {
  const Problem p{"dir\n/x.toml", 3, "value 'a\r\nb\x1b[2J\x7f\tc'"};
  CHECK(p.to_string() == "dir\\n/x.toml:3: value 'a\\r\\nb\\x1b[2J\\x7f\\tc'");
}

TEST_CASE("config: control characters in values are escaped: one line per problem") {
  Fixture f;
  ScopedEnv unset("DMZ_TEST_UNSET", nullptr);
  // TOML escapes put a newline, a carriage return and an ESC into the values and a key.
  const std::string esc = "\\u001b[31m";
  auto p = f.problems(
      "\"bad\\nkey\" = 1\n"
      "[store]\nkind = \"post\\ngres\"\n"
      "[signing]\nformat = \"x" +
      esc +
      "\"\n"
      "[[repo]]\nname = \"acme\\nwidgets\"\nremote = \"/r\"\n"
      "forge = \"git\\rhub\"\nmaster = \"ma\\nster\"\n"
      "required_checks = [\"c\\nd\", \"c\\nd\"]\n"
      "api_token = { file = \"no\\nfile\" }\n"
      "status_token = { env = \"DMZ_TEST_UNSET\\n\" }\n"
      "policy_root = \"no\\npolicy\"\n"
      "[repo.runner]\ncommand = \"x\"\nsandbox = \"d\\nocker\"\n");
  const std::string d = f.dir.path().string();
  CHECK(p == Lines{
                 "1: unknown key 'bad\\nkey' at the top level",
                 "3: store.kind 'post\\ngres' is not supported (use \"sqlite\")",
                 "5: signing.format must be \"ssh\" or \"openpgp\", not 'x\\x1b[31m'",
                 "7: repo.name 'acme\\nwidgets' must look like \"owner/name\"",
                 "9: unknown forge 'git\\rhub' (expected plain, github, gitlab or gitea)",
                 "10: repo.master 'ma\\nster' is not a valid branch name",
                 "11: repo.required_checks lists 'c\\nd' twice",
                 "12: repo.api_token file '" + d + "/no\\nfile' does not exist",
                 "13: repo.status_token: environment variable DMZ_TEST_UNSET\\n is not set",
                 "14: repo.policy_root '" + d + "/no\\npolicy' does not exist",
                 "17: repo.runner.sandbox must be \"bwrap\" or \"none\", not \"d\\nocker\"",
             });
}

}  // namespace
}  // namespace dmz::config

namespace dmz::config {
namespace {

// A GitHub repository with a token; `extra` lines go into [repo.github].
std::string github_repo(const std::string& extra, const std::string& repo_extra = "") {
  return "[[repo]]\nname = \"octo/widgets\"\nforge = \"github\"\nrequired_checks = [\"build\"]\n" +
         repo_extra + "[repo.github]\nwebhook_secret = { file = \"hook\" }\n" + extra;
}

TEST_CASE("config: a ca_file OpenSSL cannot read is refused at its line, as serve would") {
  Fixture f;
  test::write_file(f.dir / "hook", "whsec\n");
  test::write_file(f.dir / "token", "ghp_x\n");
  // The armour of a certificate around what is not base64 (check-config took it, serve did not).
  test::write_file(
      f.dir / "bad.pem",
      "-----BEGIN CERTIFICATE-----\nnot base64 at all !!\n-----END CERTIFICATE-----\n");
  // A good certificate followed by a broken one is refused too.
  const test::TestCa ca = test::make_test_ca(f.dir / "ca");
  test::write_file(f.dir / "half.pem", test::read_file(ca.ca_cert) +
                                           "-----BEGIN CERTIFICATE-----\nMII\n"
                                           "-----END CERTIFICATE-----\n");
  for (const std::string file : {"bad.pem", "half.pem"}) {
    CAPTURE(file);
    auto p =
        f.problems(github_repo("token = { file = \"token\" }\nmerge_masters = [\"alice\"]\n"
                               "ca_file = \"" +
                               file + "\"\n"));
    REQUIRE(p.size() == 1);
    CAPTURE(p[0]);
    CHECK(p[0].starts_with("9: repo.github.ca_file '" + (f.dir / file).string() +
                           "' holds a certificate OpenSSL cannot read ("));
  }
  CHECK(f.ok(github_repo("token = { file = \"token\" }\nmerge_masters = [\"alice\"]\n"
                         "ca_file = \"" +
                         ca.ca_cert.string() + "\"\n"))
            .repos[0]
            .github->ca_file == ca.ca_cert);
}

TEST_CASE("config: [repo.github] with a token, every key, and the clone URL as the remote") {
  Fixture f;
  test::write_file(f.dir / "hook", "whsec\n");
  test::write_file(f.dir / "token", "ghp_x\n");
  // A real certificate: the file is read as the HTTP client will load it.
  const test::TestCa ca = test::make_test_ca(f.dir / "ca");
  test::write_file(f.dir / "certs" / "ca.pem", test::read_file(ca.ca_cert));
  Config c = f.ok("[server]\npublic_url = \"https://dmzbot.example.com/\"\n" +
                  github_repo("api_url = \"https://ghes.example.com/api/v3/\"\n"
                              "token = { file = \"token\" }\n"
                              "merge_label = \"ship it\"\n"
                              "merge_masters = [\"alice\", \"octo/release-team\"]\n"
                              "ca_file = \"certs/ca.pem\"\n"
                              "bot_name = \"merge-bot\"\n"
                              "reconcile_interval = 30\n"
                              "permission_cache = 0\n"
                              "status_labels = true\n"
                              "try_branch = \"try\"\n"
                              "hook_id = 4242\n"));
  CHECK(c.server.public_url == "https://dmzbot.example.com");
  REQUIRE(c.repos.size() == 1);
  const Repo& r = c.repos[0];
  CHECK(r.forge == "github");
  REQUIRE(r.github.has_value());
  const GitHub& g = *r.github;
  CHECK(g.api_url == "https://ghes.example.com/api/v3");
  CHECK(r.remote == "https://ghes.example.com/octo/widgets.git");
  CHECK(g.webhook_secret.reveal() == "whsec");
  CHECK(g.token.reveal() == "ghp_x");
  CHECK_FALSE(g.app());
  CHECK(g.merge_label == "ship it");
  CHECK(g.merge_masters == std::vector<std::string>{"alice", "octo/release-team"});
  CHECK(g.ca_file == f.dir / "certs" / "ca.pem");
  CHECK(g.bot_name == "merge-bot");
  CHECK(g.reconcile_interval == std::chrono::seconds(30));
  CHECK(g.permission_cache == std::chrono::seconds(0));
  CHECK(g.status_labels);
  CHECK(g.try_branch == "try");
  CHECK(g.hook_id == 4242);

  // Defaults: github.com's clone URL, the default label; an explicit remote wins.
  Config d = f.ok(github_repo("token = { file = \"token\" }\nmerge_masters = [\"alice\"]\n"));
  CHECK(d.repos[0].remote == "https://github.com/octo/widgets.git");
  CHECK(d.repos[0].github->api_url == "https://api.github.com");
  CHECK(d.repos[0].github->merge_label == "dmz:merge");
  CHECK(d.repos[0].github->bot_name == "dmzbot");
  Config e = f.ok(github_repo("token = { file = \"token\" }\nmerge_masters = [\"alice\"]\n",
                              "remote = \"https://mirror.example.com/w.git\"\n"));
  CHECK(e.repos[0].remote == "https://mirror.example.com/w.git");
}

TEST_CASE("config: [repo.github] as a GitHub App; the key must be an RSA key that signs") {
  Fixture f;
  test::write_file(f.dir / "hook", "whsec\n");
  test::must("openssl genrsa -out " + (f.dir / "app.pem").string() + " 2048 2>/dev/null");
  test::must("openssl genpkey -algorithm ed25519 -out " + (f.dir / "ed.pem").string());
  const std::string app =
      "app_id = 123\ninstallation_id = 456\nprivate_key = { file = \"app.pem\" }\n"
      "merge_masters = [\"alice\"]\n";
  Config c = f.ok(github_repo(app));
  const GitHub& g = *c.repos[0].github;
  CHECK(g.app());
  CHECK(g.app_id == 123);
  CHECK(g.installation_id == 456);
  CHECK(g.private_key.reveal().find("PRIVATE KEY") != std::string::npos);
  CHECK(f.problems(
            github_repo("app_id = 123\ninstallation_id = 456\nprivate_key = { file = \"ed.pem\" }\n"
                        "merge_masters = [\"alice\"]\n")) ==
        Lines{"9: repo.github.private_key: not an RSA private key"});
}

TEST_CASE("config: [repo.github] try_branch must not hold anyone else's branches") {
  Fixture f;
  test::write_file(f.dir / "hook", "whsec\n");
  test::write_file(f.dir / "token", "ghp_x\n");
  const std::string github = "token = { file = \"token\" }\nmerge_masters = [\"alice\"]\n";
  auto try_branch = [&](const std::string& name, const std::string& repo_extra = "") {
    return f.problems(github_repo(github + "try_branch = \"" + name + "\"\n", repo_extra));
  };
  const std::string why = "': dmzbot deletes the try branches of pull requests it does not follow";
  CHECK(try_branch("dmz-queue") ==
        Lines{"9: repo.github.try_branch 'dmz-queue' overlaps 'dmz-queue/{id}" + why});
  CHECK(try_branch("release", "hotfix_branches = \"release/*\"\n") ==
        Lines{"10: repo.github.try_branch 'release' overlaps 'release/*" + why});
  CHECK(try_branch("master") == Lines{"9: repo.github.try_branch 'master' overlaps 'master" + why});
  CHECK(try_branch("dmz/try") == Lines{"9: repo.github.try_branch 'dmz/try' overlaps 'dmz" + why});
  // A candidate's branch cannot sit beside try branches under it either.
  CHECK(try_branch("dmz-queue/1") ==
        Lines{"9: repo.github.try_branch 'dmz-queue/1' overlaps 'dmz-queue/{id}" + why});
  CHECK(f.ok(github_repo(github + "try_branch = \"dmz-try-builds\"\n"))
            .repos.at(0)
            .github->try_branch == "dmz-try-builds");
}

// git is given the GitHub token when [repo.auth] has none: a plain http remote is refused at its
// line, as the transport would refuse it at serve (before, check-config said ok).
TEST_CASE("config: a GitHub token does not go to a plain http remote") {
  Fixture f;
  test::write_file(f.dir / "hook", "whsec\n");
  test::write_file(f.dir / "token", "ghp_x\n");
  const std::string github = "token = { file = \"token\" }\nmerge_masters = [\"alice\"]\n";
  CHECK(f.problems(github_repo(github, "remote = \"http://ghe.example.com/octo/widgets.git\"\n")) ==
        Lines{"5: repo.remote http://ghe.example.com/octo/widgets.git is plain http, and git "
              "would send it the GitHub token in clear text: use https"});
  CHECK(f.problems(github_repo(github + "api_url = \"http://ghe.example.com/api/v3\"\n")).size() >=
        1);  // the API's own refusal, and the clone URL made from it
  f.ok(github_repo(github, "remote = \"https://ghe.example.com/octo/widgets.git\"\n"));
  f.ok(github_repo(github, "remote = \"http://127.0.0.1:9/octo/widgets.git\"\n"));
}

TEST_CASE("config: [repo.github] check_sources names a required check's only source") {
  Fixture f;
  test::write_file(f.dir / "hook", "whsec\n");
  test::write_file(f.dir / "token", "ghp_x\n");
  const std::string github = "token = { file = \"token\" }\nmerge_masters = [\"alice\"]\n";
  const std::string checks = "required_checks = [\"build\", \"ci/test\"]\n";
  auto repo = [&](const std::string& extra) {
    return "[[repo]]\nname = \"octo/widgets\"\nforge = \"github\"\n" + checks +
           "[repo.github]\nwebhook_secret = { file = \"hook\" }\n" + github + extra;
  };
  Config c = f.ok(
      repo("check_sources = { build = \"github-actions\", \"ci/test\" = \"jenkins-bot[bot]\" }\n"));
  CHECK(c.repos.at(0).github->check_sources ==
        std::map<std::string, std::string>{{"build", "github-actions"},
                                           {"ci/test", "jenkins-bot[bot]"}});
  // As a table of its own too; absent: none (every check from anyone, as before).
  CHECK(f.ok(repo("[repo.github.check_sources]\nbuild = \"ci-user\"\n"))
            .repos.at(0)
            .github->check_sources == std::map<std::string, std::string>{{"build", "ci-user"}});
  CHECK(f.ok(repo("")).repos.at(0).github->check_sources.empty());
  // A check that is not required (a typo would leave the real one open), at the key's line.
  CHECK(f.problems(repo("check_sources = { biuld = \"github-actions\" }\n")) ==
        Lines{"9: repo.github.check_sources names 'biuld', which is not in repo.required_checks"});
  CHECK(f.problems(repo("[repo.github.check_sources]\nbuild = \"github-actions\"\n"
                        "lint = \"github-actions\"\n")) ==
        Lines{"11: repo.github.check_sources names 'lint', which is not in "
              "repo.required_checks"});
  // The runner's context is the required check when required_checks is absent.
  CHECK(f.problems("[[repo]]\nname = \"octo/widgets\"\nforge = \"github\"\n"
                   "[repo.runner]\ncommand = \"make\"\ncontext = \"local\"\n"
                   "[repo.github]\nwebhook_secret = { file = \"hook\" }\n" +
                   github + "check_sources = { local = \"x\", build = \"y\" }\n") ==
        Lines{"11: repo.github.check_sources names 'build', which is not in "
              "repo.required_checks"});
  // Of the wrong type, empty, or not a login or slug.
  CHECK(f.problems(repo("check_sources = [\"build\"]\n")) ==
        Lines{"9: repo.github.check_sources must be a table, not an array"});
  CHECK(f.problems(repo("check_sources = \"github-actions\"\n")) ==
        Lines{"9: repo.github.check_sources must be a table, not a string"});
  CHECK(f.problems(repo("[repo.github.check_sources]\nbuild = 7\n\"ci/test\" = \"\"\n")) ==
        Lines{"10: repo.github.check_sources.build must be a string, not an integer",
              "11: repo.github.check_sources.ci/test must not be empty"});
  CHECK(f.problems(repo("check_sources = { build = \"git hub\\n\" }\n")) ==
        Lines{"9: repo.github.check_sources.build: 'git hub\\n' is neither a GitHub login nor "
              "an App's slug"});
}

TEST_CASE("config: [repo.github] problems, each at its line") {
  Fixture f;
  test::write_file(f.dir / "hook", "whsec\n");
  test::write_file(f.dir / "token", "ghp_x\n");
  test::write_file(f.dir / "notca.pem", "hello\n");
  CHECK(f.problems(github_repo("api_url = \"http://api.github.com\"\n"
                               "token = { file = \"token\" }\n"
                               "merge_label = \"" +
                               std::string(51, 'x') +
                               "\"\n"
                               "merge_masters = [\"alice\", \"bad login!\", \"octo/\"]\n"
                               "ca_file = \"notca.pem\"\n"
                               "bot_name = \"-x\"\n"
                               "reconcile_interval = 1\n"
                               "status_labels = \"yes\"\n"
                               "try_branch = \"a..b\"\n"
                               "hook_id = 0\n"
                               "colour = \"red\"\n")) ==
        Lines{
            "7: repo.github.api_url must be https:// (tokens travel on it)",
            "9: repo.github.merge_label must be at most 50 characters, without control "
            "characters",
            "10: repo.github.merge_masters: 'bad login!' is neither a GitHub login nor "
            "\"org/team-slug\"",
            "10: repo.github.merge_masters: 'octo/' is neither a GitHub login nor "
            "\"org/team-slug\"",
            "11: repo.github.ca_file '" + (f.dir / "notca.pem").string() +
                "' holds no PEM certificate",
            "12: repo.github.bot_name '-x' is not a GitHub login",
            "13: repo.github.reconcile_interval must be between 5 and 3600 seconds (1 hour), "
            "not 1",
            "14: repo.github.status_labels must be a boolean, not a string",
            "15: repo.github.try_branch 'a..b' is not a valid branch name",
            "16: repo.github.hook_id must be between 1 and 9007199254740992, not 0",
            "17: unknown key 'colour' in [repo.github]",
        });
  // Neither, or both, ways to authenticate; an incomplete App; no merge masters; no secret.
  CHECK(f.problems(github_repo("merge_masters = [\"alice\"]\n")) ==
        Lines{"5: [repo.github] needs token, or app_id, installation_id and private_key"});
  CHECK(f.problems(github_repo("token = { file = \"token\" }\napp_id = 1\n"
                               "merge_masters = [\"alice\"]\n")) ==
        Lines{"5: [repo.github] has both token and GitHub App keys: use one way to authenticate"});
  CHECK(f.problems(github_repo("app_id = 1\nmerge_masters = [\"alice\"]\n")) ==
        Lines{"5: [repo.github] needs all of app_id, installation_id and private_key for a "
              "GitHub App"});
  CHECK(f.problems(github_repo("token = { file = \"token\" }\nmerge_masters = []\n")) ==
        Lines{"8: repo.github.merge_masters is empty: nobody could approve a pull request"});
  CHECK(f.problems(github_repo("token = { file = \"token\" }\n")) ==
        Lines{"5: missing required key 'merge_masters' in [repo.github] (who may approve)"});
  CHECK(f.problems("[[repo]]\nname = \"octo/w\"\nforge = \"github\"\nrequired_checks = [\"b\"]\n"
                   "[repo.github]\ntoken = { file = \"token\" }\nmerge_masters = [\"a\"]\n") ==
        Lines{"5: missing required key 'webhook_secret' in [repo.github] (webhooks are never "
              "taken unsigned)"});
  // The table belongs to forge = "github", which needs it.
  CHECK(
      f.problems("[[repo]]\nname = \"octo/w\"\nforge = \"github\"\nrequired_checks = [\"b\"]\n") ==
      Lines{"1: [[repo]] with forge = \"github\" needs a [repo.github] table",
            "1: missing required key 'remote' in [[repo]]"});
  CHECK(f.problems(kRepo + "[repo.github]\nwebhook_secret = { file = \"hook\" }\n"
                           "token = { file = \"token\" }\nmerge_masters = [\"a\"]\n") ==
        Lines{"5: [repo.github] belongs to a repository with forge = \"github\""});
  CHECK(f.problems("[server]\npublic_url = \"dmzbot.example.com\"\n" + kRepo) ==
        Lines{"2: server.public_url: 'dmzbot.example.com' is not an http(s) URL: no scheme"});
}

}  // namespace
}  // namespace dmz::config

// The git server hooks' configuration: defaults, every key, and problems with lines.
#include "config/hook_config.hpp"

#include <doctest/doctest.h>

#include "tests/support.hpp"

using namespace dmz::config;

TEST_CASE("hook config: defaults protect master, dmz, staging, production and v* tags") {
  auto c = parse_hook_config("", "/etc/dmz/hooks.toml");
  REQUIRE(c.config);
  CHECK(c.config->protected_refs ==
        std::vector<std::string>{"refs/heads/master", "refs/heads/dmz", "refs/heads/staging",
                                 "refs/heads/production", "refs/tags/v*"});
  CHECK_FALSE(c.config->require_signed);
  CHECK(c.config->nonce_slop == 0);
  CHECK(c.config->log_ref == "refs/dmz/push-log");
}

TEST_CASE("hook config: every key, relative policy_root from the file's directory") {
  auto c = parse_hook_config(
      "[hooks]\nprotected = [\"refs/heads/main\"]\nrequire_signed = true\nnonce_slop = 60\n"
      "policy_branch = \"main\"\npolicy_root = \"root/policy.toml\"\nlog_ref = \"refs/x/log\"\n",
      "/etc/dmz/hooks.toml");
  REQUIRE(c.config);
  CHECK(c.config->protected_refs == std::vector<std::string>{"refs/heads/main"});
  CHECK(c.config->require_signed);
  CHECK(c.config->nonce_slop == 60);
  CHECK(c.config->policy_branch == "main");
  CHECK(c.config->policy_root == "/etc/dmz/root/policy.toml");
  CHECK(c.config->log_ref == "refs/x/log");
}

TEST_CASE("hook config: every problem with its line, and no config") {
  auto c = parse_hook_config(
      "[hooks]\nprotected = [\"master\"]\nnonce_slop = -1\nlog_ref = \"log\"\ncolour = 1\n"
      "require_signed = \"yes\"\n[other]\n",
      "h.toml");
  CHECK_FALSE(c.config);
  REQUIRE(c.problems.size() == 7);
  CHECK(c.problems[0].line == 2);
  CHECK(c.problems[1].line == 2);  // nothing left protects refs/heads/master
  CHECK(c.problems[2].line == 3);
  CHECK(c.problems[3].line == 4);
  CHECK(c.problems[4].to_string() == "h.toml:5: unknown key 'colour' in [hooks]");
  CHECK(c.problems[5].line == 6);
  CHECK(c.problems[6].to_string() ==
        "h.toml:7: unknown key 'other' (the hooks' settings go in [hooks])");
  auto broken = parse_hook_config("[hooks\n", "h.toml");
  CHECK_FALSE(broken.config);
  CHECK(broken.problems.size() == 1);
}

// Refs git cannot hold, and a log on a branch or tag: pre-receive would refuse every push to
// it, and post-receive write the log's commits onto it (before, all were accepted).
TEST_CASE("hook config: log_ref outside branches and tags; both refs valid names") {
  auto problem_of = [](const std::string& hooks) {
    auto c = parse_hook_config("[hooks]\n" + hooks, "h.toml");
    CHECK_FALSE(c.config);
    return c.problems.empty() ? std::string() : c.problems[0].to_string();
  };
  CHECK(problem_of("log_ref = \"refs/heads/master\"\n") ==
        "h.toml:2: hooks.log_ref 'refs/heads/master' must be outside refs/heads/ and refs/tags/");
  CHECK(problem_of("log_ref = \"refs/tags/log\"\n") ==
        "h.toml:2: hooks.log_ref 'refs/tags/log' must be outside refs/heads/ and refs/tags/");
  CHECK(problem_of("log_ref = \"refs/\"\n") ==
        "h.toml:2: hooks.log_ref must be a full ref name (refs/...), not 'refs/'");
  CHECK(problem_of("log_ref = \"refs/x/.log\"\n") ==
        "h.toml:2: hooks.log_ref must be a full ref name (refs/...), not 'refs/x/.log'");
  CHECK(problem_of("policy_branch = \"a..b\"\n")
            .starts_with("h.toml:2: hooks.policy_branch 'a..b' is not a valid branch name"));
  CHECK(parse_hook_config("[hooks]\nlog_ref = \"refs/notes/push-log\"\n", "h.toml").config);
}

TEST_CASE("hook config: the policy branch must be protected") {
  const std::string why =
      " (the policy_branch): otherwise an unsigned push could change the policy that judges "
      "pushes";
  auto moved = parse_hook_config("[hooks]\npolicy_branch = \"main\"\n", "h.toml");
  CHECK_FALSE(moved.config);
  REQUIRE(moved.problems.size() == 1);
  CHECK(moved.problems[0].to_string() ==
        "h.toml:2: hooks.protected must cover refs/heads/main" + why);
  auto narrowed = parse_hook_config("[hooks]\nprotected = [\"refs/tags/v*\"]\n", "h.toml");
  CHECK_FALSE(narrowed.config);
  REQUIRE(narrowed.problems.size() == 1);
  CHECK(narrowed.problems[0].to_string() ==
        "h.toml:2: hooks.protected must cover refs/heads/master" + why);
  // A glob covers it as it covers the refs it protects.
  auto glob = parse_hook_config(
      "[hooks]\nprotected = [\"refs/heads/release/*\"]\npolicy_branch = \"release/1\"\n", "h.toml");
  CHECK(glob.problems.empty());
  CHECK(glob.config);
}

TEST_CASE("hook config: the example in deploy/ is valid") {
  auto c = load_hook_config(dmz::test::source_dir() / "deploy" / "hooks.example.toml");
  CHECK(c.problems.empty());
  REQUIRE(c.config);
  CHECK(c.config->policy_root == "/etc/dmzbot/policy.toml");
}

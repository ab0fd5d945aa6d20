#include "config/policy_file.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

// Prints a failing list comparison one element per line.
template <>
struct doctest::StringMaker<std::vector<std::string>> {
  static doctest::String convert(const std::vector<std::string>& items) {
    std::string out = "{";
    for (const auto& item : items) out += "\n  \"" + item + "\"";
    return (out + "\n}").c_str();
  }
};

using dmz::config::parse_policy;
using dmz::config::PolicyLoad;
using dmz::queue::Account;
using dmz::queue::Policy;
using dmz::queue::Rule;

namespace {

const std::string kAliceFpr = "0123456789ABCDEF0123456789ABCDEF01234567";
const std::string kAliceSsh =
    "valid-after=\"20250101\" ssh-ed25519 "
    "AAAAC3NzaC1lZDI1NTE5AAAAIGXo2cVBbbV1cD9Uu1VfGtkAmGN3TNxBXnJjbpcbRmBd alice@laptop";
const std::string kBotSsh =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJ5ncYH5CsQgXw8WnpZyvHszRUDYlDMg5C2pDy1wqfI dmzbot";

// The example of docs/POLICY.md (alice's fingerprint written in lowercase on purpose).
const std::string kExample = R"(version = 1
[accounts.alice]
openpgp = ["0123456789abcdef0123456789ABCDEF01234567"]
ssh = [')" + kAliceSsh + R"(']
logins = ["alice", "alice@example.com"]
[accounts.bob]
logins = ["bob"]
[accounts.carol]
logins = ["carol"]
[accounts.dave]
logins = ["dave"]
[accounts.dmzbot]
ssh = [")" + kBotSsh + R"("]
[groups]
maintainers = ["alice", "bob", "carol"]
developers = ["alice", "bob", "carol", "dave"]
bots = ["dmzbot"]
[branches]
allowed = ["feature/*", "bug/*", "hotfix/*"]
refused = ["wip/*"]
[[rule]]
branch = "master"
paths = ["**"]
signers = "developers"
author_signs = true
approvals = 2
approvers = "maintainers"
forge_reviews = false
[[rule]]
branch = "master"
paths = [".dmz/**", "deploy/**"]
approvals = 3
approvers = "maintainers"
[merges]
signers = "bots"
conflict_resolvers = "maintainers"
)";

// Every problem as "file:line: message".
std::vector<std::string> problems(std::string_view text) {
  const PolicyLoad load = parse_policy(text, "policy.toml");
  CHECK(load.policy.has_value() == load.problems.empty());
  std::vector<std::string> out;
  for (const auto& p : load.problems) out.push_back(p.to_string());
  return out;
}

using Lines = std::vector<std::string>;

// A valid policy to which a test appends or prepends a little.
const std::string kAccounts = R"([accounts.alice]
logins = ["alice"]
[accounts.bob]
logins = ["bob"]
[groups]
maintainers = ["alice", "bob"]
)";
const std::string kRule = R"([[rule]]
branch = "master"
)";

}  // namespace

TEST_CASE("policy file: the example parses into the exact model") {
  const PolicyLoad load = parse_policy(kExample, ".dmz/policy.toml");
  CHECK(load.problems.empty());
  REQUIRE(load.policy.has_value());
  const Policy& got = *load.policy;

  Policy want;
  want.accounts["alice"] =
      Account{"alice", {kAliceFpr}, {kAliceSsh}, {"alice", "alice@example.com"}};
  want.accounts["bob"] = Account{"bob", {}, {}, {"bob"}};
  want.accounts["carol"] = Account{"carol", {}, {}, {"carol"}};
  want.accounts["dave"] = Account{"dave", {}, {}, {"dave"}};
  want.accounts["dmzbot"] = Account{"dmzbot", {}, {kBotSsh}, {}};
  want.groups["maintainers"] = {"alice", "bob", "carol"};
  want.groups["developers"] = {"alice", "bob", "carol", "dave"};
  want.groups["bots"] = {"dmzbot"};
  want.allowed_branches = {"feature/*", "bug/*", "hotfix/*"};
  want.refused_branches = {"wip/*"};
  Rule all{"master", {"**"}, "developers", true, 2, "maintainers", false};
  Rule deploy{"master", {".dmz/**", "deploy/**"}, "", false, 3, "maintainers", false};
  want.rules = {all, deploy};
  want.merge_signers = "bots";
  want.conflict_resolvers = "maintainers";

  CHECK(got.accounts == want.accounts);
  CHECK(got.groups == want.groups);
  CHECK(got.allowed_branches == want.allowed_branches);
  CHECK(got.refused_branches == want.refused_branches);
  CHECK(got.rules == want.rules);
  CHECK(got.merge_signers == want.merge_signers);
  CHECK(got.conflict_resolvers == want.conflict_resolvers);
  CHECK(got == want);
  CHECK(got.account_for_openpgp(kAliceFpr)->name == "alice");
}

TEST_CASE("policy file: defaults of an omitted rule key and of omitted sections") {
  const PolicyLoad load = parse_policy("version = 1\n" + kRule, "p.toml");
  REQUIRE(load.policy.has_value());
  CHECK(load.policy->rules == std::vector<Rule>{Rule{"master", {"**"}, "", false, 0, "", false}});
  CHECK(load.policy->allowed_branches.empty());
  CHECK(load.policy->merge_signers.empty());
}

TEST_CASE("policy file: a syntax error is reported with its line, and nothing else") {
  CHECK(problems("version = 1\n[groups]\nx = [\"a\",\n  = 3\n") ==
        Lines{"policy.toml:4: Error while parsing value: could not determine value type"});
  CHECK(problems("version = 1\nversion = 2\n") ==
        Lines{"policy.toml:2: Error while parsing key-value pair: cannot redefine existing integer "
              "'version'"});
}

TEST_CASE("policy file: version") {
  CHECK(problems(kRule) == Lines{"policy.toml:1: missing 'version = 1'"});
  CHECK(problems("version = 2\n" + kRule) ==
        Lines{"policy.toml:1: unsupported policy version 2 (this dmzbot reads version 1)"});
  CHECK(problems(kRule + "version = \"1\"\n") ==  // line 3
        Lines{"policy.toml:1: missing 'version = 1'",
              "policy.toml:3: unknown key 'version' in [[rule]]"});
  CHECK(problems("\nversion = \"1\"\n" + kRule) ==
        Lines{"policy.toml:2: version must be an integer, not a string"});
}

TEST_CASE("policy file: no rules at all") {
  CHECK(problems("version = 1\n") ==
        Lines{"policy.toml:1: no [[rule]]: every pull request would be refused"});
  CHECK(problems("version = 1\nrule = []\n") ==
        Lines{"policy.toml:2: no [[rule]]: every pull request would be refused"});
  CHECK(problems("version = 1\nrule = \"master\"\n") ==
        Lines{"policy.toml:2: rule must be an array of tables ([[rule]]), not a string"});
}

TEST_CASE("policy file: unknown keys, at every level") {
  const std::string text =
      "version = 1\n"              // 1
      "[accounts.alice]\n"         // 2
      "login = [\"alice\"]\n"      // 3: logins
      "[groups]\n"                 // 4
      "devs = [\"alice\"]\n"       // 5
      "[branches]\n"               // 6
      "allow = [\"feature/*\"]\n"  // 7: allowed
      "[[rule]]\n"                 // 8
      "branch = \"master\"\n"      // 9
      "approval = 2\n"             // 10: approvals
      "[merges]\n"                 // 11
      "signer = \"devs\"\n"        // 12: signers
      "[rules]\n";                 // 13
  CHECK(problems(text) == Lines{"policy.toml:3: unknown key 'login' in [accounts.alice]",
                                "policy.toml:7: unknown key 'allow' in [branches]",
                                "policy.toml:10: unknown key 'approval' in [[rule]]",
                                "policy.toml:12: unknown key 'signer' in [merges]",
                                "policy.toml:13: unknown key 'rules' in the policy"});
}

TEST_CASE("policy file: wrong types") {
  const std::string text =
      "version = 1\n"                 // 1
      "accounts = 3\n"                // 2
      "groups = { g = \"alice\" }\n"  // 3
      "[branches]\n"                  // 4
      "allowed = \"feature/*\"\n"     // 5
      "refused = [\"wip/*\", 7]\n"    // 6
      "[[rule]]\n"                    // 7
      "branch = [\"master\"]\n"       // 8
      "paths = \"**\"\n"              // 9
      "author_signs = \"yes\"\n"      // 10
      "forge_reviews = 1\n"           // 11
      "approvals = 2.5\n"             // 12
      "signers = 1\n";                // 13
  CHECK(problems(text) ==
        Lines{"policy.toml:2: accounts must be a table, not an integer",
              "policy.toml:3: groups.g must be an array of strings, not a string",
              "policy.toml:5: branches.allowed must be an array of strings, not a string",
              "policy.toml:6: branches.refused[] must be a string, not an integer",
              "policy.toml:8: rule.branch must be a string, not an array",
              "policy.toml:9: rule.paths must be an array of strings, not a string",
              "policy.toml:10: rule.author_signs must be true or false, not a string",
              "policy.toml:11: rule.forge_reviews must be true or false, not an integer",
              "policy.toml:12: rule.approvals must be an integer, not a float",
              "policy.toml:13: rule.signers must be a string, not an integer"});
  CHECK(problems("version = 1\naccounts.alice = 3\n" + kRule) ==
        Lines{"policy.toml:2: accounts.alice must be a table, not an integer"});
}

TEST_CASE("policy file: accounts: fingerprints, ssh lines, logins") {
  const std::string text =
      "version = 1\n"       // 1
      "[accounts.alice]\n"  // 2
      "openpgp = [\n"       // 3
      "  \"" +
      kAliceFpr +
      "\",\n"  // 4 good (40)
      "  \"" +
      kAliceFpr +
      "0123456789ABCDEF01234567\",\n"                                // 5 good (64)
      "  \"0123456789ABCDEF\",\n"                                    // 6 a key id
      "  \"0123 4567 89AB CDEF 0123  4567 89AB CDEF 0123 4567\",\n"  // 7 spaces
      "  \"" +
      std::string(39, 'A') +
      "G\",\n"                  // 8 not hex
      "]\n"                     // 9
      "ssh = [\"  \"]\n"        // 10
      "logins = [\"Alice\"]\n"  // 11
      "[accounts.bob]\n"        // 12
      "openpgp = [\"" +
      kAliceFpr +
      "\"]\n"                         // 13 alice's key
      "logins = [\"alice\", \"\"]\n"  // 14 alice's login
      + kRule;
  CHECK(problems(text) ==
        Lines{"policy.toml:6: malformed OpenPGP fingerprint '0123456789ABCDEF' (expected 40 or 64 "
              "hex digits, no spaces)",
              "policy.toml:7: malformed OpenPGP fingerprint '0123 4567 89AB CDEF 0123  4567 89AB "
              "CDEF 0123 4567' (expected 40 or 64 hex digits, no spaces)",
              "policy.toml:8: malformed OpenPGP fingerprint '" + std::string(39, 'A') +
                  "G' (expected 40 or 64 hex digits, no spaces)",
              "policy.toml:10: empty ssh key line",
              "policy.toml:13: fingerprint '" + kAliceFpr + "' of bob is already alice's",
              "policy.toml:14: empty login",
              "policy.toml:14: login 'alice' of bob is already alice's"});
}

TEST_CASE("policy file: groups and rules name known accounts and groups") {
  const std::string text = "version = 1\n" + kAccounts +              // 1-7
                           "developers = [\"alice\", \"zed\"]\n"      // 8
                           "[[rule]]\n"                               // 9
                           "branch = \"master\"\n"                    // 10
                           "signers = \"devs\"\n"                     // 11
                           "approvers = \"admins\"\n"                 // 12
                           "approvals = 1\n"                          // 13
                           "[merges]\n"                               // 14
                           "signers = \"bots\"\n"                     // 15
                           "conflict_resolvers = \"maintainers\"\n";  // 16
  CHECK(problems(text) == Lines{"policy.toml:8: group developers names unknown account 'zed'",
                                "policy.toml:11: rule.signers names unknown group 'devs'",
                                "policy.toml:12: rule.approvers names unknown group 'admins'",
                                "policy.toml:15: merges.signers names unknown group 'bots'"});
  // A repeated member: approvals count distinct accounts.
  const std::string twice = "version = 1\n" + kAccounts +  // 1-7
                            "developers = [\"alice\",\n\"alice\"]\n";
  CHECK(problems(twice) == Lines{"policy.toml:1: no [[rule]]: every pull request would be refused",
                                 "policy.toml:9: group developers names account 'alice' twice"});
}

TEST_CASE("policy file: approvals between 0 and the approvers group's size") {
  const std::string head = "version = 1\n" + kAccounts + "[[rule]]\nbranch = \"master\"\n";  // 1-9
  CHECK(problems(head + "approvers = \"maintainers\"\napprovals = 2\n").empty());
  CHECK(
      problems(head + "approvers = \"maintainers\"\napprovals = 3\n") ==
      Lines{
          "policy.toml:11: rule.approvals = 3 can never be met: group maintainers has 2 members"});
  CHECK(problems(head + "approvers = \"maintainers\"\napprovals = -1\n") ==
        Lines{"policy.toml:11: rule.approvals must not be negative, is -1"});
  CHECK(problems(head + "approvals = 1\n") ==
        Lines{"policy.toml:10: rule.approvals = 1 needs approvers = \"<group>\""});
  CHECK(problems(head + "approvals = 0\n").empty());
  CHECK(problems(head + "approvers = \"maintainers\"\napprovals = 9223372036854775807\n") ==
        Lines{"policy.toml:11: rule.approvals = 9223372036854775807 can never be met: group "
              "maintainers has 2 members"});
  CHECK(problems(head + "approvers = \"x\"\napprovals = 4294967296\n") ==
        Lines{"policy.toml:10: rule.approvers names unknown group 'x'",
              "policy.toml:11: rule.approvals = 4294967296 is too large"});
}

TEST_CASE("policy file: a rule needs a branch and some paths") {
  const std::string text =
      "version = 1\n"           // 1
      "[[rule]]\n"              // 2
      "paths = [\"src/**\"]\n"  // 3
      "[[rule]]\n"              // 4
      "branch = \"master\"\n"   // 5
      "paths = []\n";           // 6
  CHECK(problems(text) == Lines{"policy.toml:2: rule has no branch (e.g. branch = \"master\")",
                                "policy.toml:6: rule.paths is empty: the rule would never apply"});
}

TEST_CASE("policy file: a pattern that can never match is refused at its line") {
  const std::string text = "version = 1\n" + kAccounts +                        // 1-7
                           "[branches]\n"                                       // 8
                           "allowed = [\"feature/*\", \"refs/heads/bug/*\"]\n"  // 9
                           "refused = [\"wip/\"]\n"                             // 10
                           "[[rule]]\n"                                         // 11
                           "branch = \"refs/heads/master\"\n"                   // 12
                           "paths = [\n"                                        // 13
                           "  \"/deploy/**\",\n"                                // 14
                           "  \"deploy/\",\n"                                   // 15
                           "  \"a//b\", \"./x\", \"src/../x\", \"\",\n"         // 16
                           "]\n"                                                // 17
                           "[release]\n"                                        // 18
                           "candidate_signers = \"maintainers\"\n"              // 19
                           "release_signers = \"maintainers\"\n"                // 20
                           "release_tags = [\"refs/tags/v*\"]\n";               // 21
  CHECK(problems(text) ==
        Lines{"policy.toml:9: branches.allowed: \"refs/heads/bug/*\" can never match: branches "
              "are matched by their short name (\"bug/*\")",
              "policy.toml:10: branches.refused: \"wip/\" can never match: it ends with '/' "
              "(\"wip/**\" matches what is under it)",
              "policy.toml:12: rule.branch: \"refs/heads/master\" can never match: branches are "
              "matched by their short name (\"master\")",
              "policy.toml:14: rule.paths: \"/deploy/**\" can never match: it starts with '/'",
              "policy.toml:15: rule.paths: \"deploy/\" can never match: it ends with '/' "
              "(\"deploy/**\" matches what is under it)",
              "policy.toml:16: rule.paths: \"a//b\" can never match: it has an empty segment (//)",
              "policy.toml:16: rule.paths: \"./x\" can never match: it has a \".\" segment",
              "policy.toml:16: rule.paths: \"src/../x\" can never match: it has a \"..\" segment",
              "policy.toml:16: rule.paths: \"\" can never match: it is empty",
              "policy.toml:21: release.release_tags: \"refs/tags/v*\" can never match: tags are "
              "matched by their short name (\"v*\")"});
  // [[push]] rules name full refs, as they must.
  CHECK(problems("version = 1\n" + kAccounts + kRule +
                 "[[push]]\nrefs = [\"refs/heads/master\"]\nsigners = \"maintainers\"\n")
            .empty());
}

TEST_CASE("policy file: every problem of a file at once, in line order") {
  const std::string text =
      "version = 3\n"           // 1
      "[groups]\n"              // 2
      "devs = [\"ghost\"]\n"    // 3
      "[[rule]]\n"              // 4
      "signers = \"nobody\"\n"  // 5
      "colour = \"blue\"\n";    // 6
  CHECK(problems(text) ==
        Lines{"policy.toml:1: unsupported policy version 3 (this dmzbot reads version 1)",
              "policy.toml:3: group devs names unknown account 'ghost'",
              "policy.toml:4: rule has no branch (e.g. branch = \"master\")",
              "policy.toml:5: rule.signers names unknown group 'nobody'",
              "policy.toml:6: unknown key 'colour' in [[rule]]"});
}

TEST_CASE("policy file: control characters in values are escaped: one line per problem") {
  const std::string text =
      "version = 1\n"                      // 1
      "[accounts.alice]\n"                 // 2
      "openpgp = [\"AB\\nCD\"]\n"          // 3
      "\"col\\nour\" = 1\n"                // 4
      "[groups]\n"                         // 5
      "devs = [\"gh\\nost\"]\n"            // 6
      "[[rule]]\n"                         // 7
      "branch = \"master\"\n"              // 8
      "signers = \"no\\u001b[2Jbody\"\n";  // 9
  const auto lines = problems(text);
  CHECK(lines == Lines{"policy.toml:3: malformed OpenPGP fingerprint 'AB\\nCD' (expected 40 or 64 "
                       "hex digits, no spaces)",
                       "policy.toml:4: unknown key 'col\\nour' in [accounts.alice]",
                       "policy.toml:6: group devs names unknown account 'gh\\nost'",
                       "policy.toml:9: rule.signers names unknown group 'no\\x1b[2Jbody'"});
  for (const auto& line : lines)
    CHECK(std::none_of(line.begin(), line.end(),
                       [](char c) { return static_cast<unsigned char>(c) < 0x20; }));
}

TEST_CASE("policy file: ssh lines are checked by the caller's checker, each at its line") {
  const std::string text =
      "version = 1\n"            // 1
      "[accounts.alice]\n"       // 2
      "ssh = [\n"                // 3
      "  \"good\",\n"            // 4
      "  \"bad one\",\n"         // 5
      "]\n"                      // 6
      "[accounts.bob]\n"         // 7
      "ssh = [\"bad\\ntwo\"]\n"  // 8
      + kRule;
  std::vector<std::string> asked;
  auto check = [&](std::string_view line) -> std::string {
    asked.emplace_back(line);
    return line.rfind("bad", 0) == 0 ? "bad-key-line: not a key\nat all" : "";
  };
  const PolicyLoad load = parse_policy(text, "policy.toml", check);
  CHECK_FALSE(load.policy.has_value());
  std::vector<std::string> lines;
  for (const auto& p : load.problems) lines.push_back(p.to_string());
  CHECK(lines == Lines{"policy.toml:5: accounts.alice.ssh: bad-key-line: not a key\\nat all",
                       "policy.toml:8: accounts.bob.ssh: bad-key-line: not a key\\nat all"});
  CHECK(asked == Lines{"good", "bad one", "bad\ntwo"});
  // Without a checker the lines are kept as written.
  const PolicyLoad unchecked = parse_policy(text, "policy.toml");
  REQUIRE(unchecked.policy.has_value());
  CHECK(unchecked.policy->accounts.at("bob").ssh == Lines{"bad\ntwo"});
}

TEST_CASE("policy file: [[push]] names who may push which refs; Policy::pushers") {
  const PolicyLoad load = parse_policy(
      "version = 1\n" + kAccounts + "ops = [\"bob\"]\n" + kRule +
          "[[push]]\nrefs = [\"refs/heads/master\", \"refs/tags/v*\"]\nsigners = \"maintainers\"\n"
          "[[push]]\nrefs = [\"refs/tags/v*\"]\nsigners = \"ops\"\n",
      "p.toml");
  REQUIRE_MESSAGE(load.policy.has_value(), load.problems.front().to_string());
  REQUIRE(load.policy->push_rules.size() == 2);
  CHECK(load.policy->pushers("refs/heads/master") == Lines{"alice", "bob"});
  CHECK(load.policy->pushers("refs/tags/v1.0") == Lines{"alice", "bob"});
  CHECK(load.policy->pushers("refs/heads/dmz").empty());
}

TEST_CASE("policy file: bad [[push]] tables") {
  CHECK(problems("version = 1\n" + kAccounts + kRule +
                 "[[push]]\nrefs = [\"master\"]\nsigners = \"nobody\"\ncolour = 1\n") ==
        Lines{"policy.toml:11: push.refs: \"master\" is not a full ref name (refs/heads/...)",
              "policy.toml:12: push.signers names unknown group 'nobody'",
              "policy.toml:13: unknown key 'colour' in [[push]]"});
  CHECK(problems("version = 1\npush = 3\n" + kAccounts + kRule) ==
        Lines{"policy.toml:2: push must be an array of tables ([[push]]), not an integer"});
}

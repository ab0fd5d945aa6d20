#include "queue/policy.hpp"

#include <doctest/doctest.h>

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

using namespace dmz::queue;

namespace {

const std::string kHead = "89abcde0000000000000000000000000000000ff";
const std::string kOld = "1234567000000000000000000000000000000000";
const std::string kFprAlice = "0123456789ABCDEF0123456789ABCDEF01234567";

// The policy of docs/POLICY.md's example.
Policy example_policy() {
  Policy p;
  p.accounts["alice"] = Account{"alice", {kFprAlice}, {}, {"alice", "alice@example.com"}};
  for (const char* name : {"bob", "carol", "dave", "mallory", "dmzbot"})
    p.accounts[name] = Account{name, {}, {}, {name}};
  p.groups["maintainers"] = {"alice", "bob", "carol"};
  p.groups["developers"] = {"alice", "bob", "carol", "dave"};
  p.groups["bots"] = {"dmzbot"};
  p.allowed_branches = {"feature/*", "bug/*", "hotfix/*"};
  p.refused_branches = {"wip/*"};
  Rule all;
  all.branch = "master";
  all.paths = {"**"};
  all.signers = "developers";
  all.author_signs = true;
  all.approvals = 2;
  all.approvers = "maintainers";
  Rule deploy;
  deploy.branch = "master";
  deploy.paths = {".dmz/**", "deploy/**"};
  deploy.approvals = 3;
  deploy.approvers = "maintainers";
  p.rules = {all, deploy};
  p.merge_signers = "bots";
  p.conflict_resolvers = "maintainers";
  return p;
}

CommitFact signed_by(std::string sha, std::string account) {
  CommitFact c;
  c.sha = std::move(sha);
  c.signer = std::move(account);
  return c;
}

ApprovalFact signed_approval(std::string account, std::string sha = kHead) {
  return ApprovalFact{std::move(account), std::move(sha),
                      "signed tag refs/tags/dmz-approve/7-89abcde", true};
}

ApprovalFact forge_review(std::string account) {
  return ApprovalFact{std::move(account), kHead, "forge review", false};
}

// A PR by dave that passes the example policy: one commit signed by dave, approved by bob
// and carol with signed tags on the head.
PrFacts good_pr() {
  PrFacts pr;
  pr.number = 7;
  pr.branch = "feature/login";
  pr.target_branch = "master";
  pr.head = kHead;
  pr.author_account = "dave";
  pr.commits = {signed_by("aaaaaaa1111", "dave"), signed_by(kHead, "dave")};
  pr.changed_paths = {"src/login.cpp"};
  pr.approvals = {signed_approval("bob"), signed_approval("carol")};
  return pr;
}

using Reasons = std::vector<std::string>;

}  // namespace

TEST_CASE("policy: lookups by fingerprint, login and group") {
  const Policy p = example_policy();
  REQUIRE(p.account_for_openpgp(kFprAlice) != nullptr);
  CHECK(p.account_for_openpgp(kFprAlice)->name == "alice");
  CHECK(p.account_for_openpgp("0123456789abcdef0123456789abcdef01234567")->name == "alice");
  CHECK(p.account_for_openpgp("89ABCDEF01234567") == nullptr);  // a key id is not enough
  CHECK(p.account_for_openpgp("") == nullptr);
  CHECK(p.account_for_login("Alice@Example.com")->name == "alice");
  CHECK(p.account_for_login("bob")->name == "bob");
  CHECK(p.account_for_login("eve") == nullptr);
  CHECK(p.members("bots") == std::vector<std::string>{"dmzbot"});
  CHECK(p.members("nobody").empty());
  CHECK(p.is_member("dave", "developers"));
  CHECK_FALSE(p.is_member("dave", "maintainers"));
  CHECK_FALSE(p.is_member("dave", "no-such-group"));
}

TEST_CASE("policy: touches_policy") {
  CHECK(touches_policy({"src/a.cpp", ".dmz/policy.toml"}));
  CHECK_FALSE(touches_policy({"src/a.cpp", ".dmz/other.toml", "x/.dmz/policy.toml"}));
  // Its sources: the policy and the keys beside it, nothing named like them elsewhere.
  CHECK(touches_policy_sources({"src/a.cpp", ".dmz/keys/alice.asc"}));
  CHECK(touches_policy_sources({".dmz/policy.toml"}));
  CHECK(touches_policy_sources({".dmz"}));  // a file, symlink or submodule in its place
  CHECK_FALSE(touches_policy_sources({"x/.dmz/policy.toml", ".dmzignore", "dmz/keys/a.asc"}));
  CHECK_FALSE(touches_policy({}));
}

TEST_CASE("policy: a well-signed PR with 2 of 3 maintainers passes") {
  const Verdict v = evaluate(example_policy(), good_pr());
  CHECK(v.reasons == Reasons{});
  CHECK(v.pass);
  CHECK(v.approvers == std::vector<std::string>{"bob", "carol"});
}

TEST_CASE("policy: branch names") {
  const Policy p = example_policy();
  PrFacts pr = good_pr();
  pr.branch = "wip/x";
  CHECK(evaluate(p, pr).reasons == Reasons{"branch wip/x is refused by pattern wip/*"});
  pr.branch = "foo";
  CHECK(evaluate(p, pr).reasons ==
        Reasons{"branch foo matches none of the allowed patterns feature/*, bug/*, hotfix/*"});
  pr.branch = "feature/a/b";  // '*' does not cross '/'
  CHECK_FALSE(evaluate(p, pr).pass);
  pr.branch = "hotfix/db";
  CHECK(evaluate(p, pr).pass);

  Policy open = p;
  open.allowed_branches.clear();  // no allowed list: any branch that is not refused
  pr.branch = "foo";
  CHECK(evaluate(open, pr).pass);
  pr.branch = "wip/y";
  CHECK_FALSE(evaluate(open, pr).pass);
}

TEST_CASE("policy: unsigned and badly signed commits pass the shell's reason through") {
  PrFacts pr = good_pr();
  CommitFact unsigned_commit;
  unsigned_commit.sha = "abc1234ffff";
  CommitFact said_unsigned;
  said_unsigned.sha = "abc5678ffff";
  said_unsigned.signature_problem = "unsigned";
  CommitFact no_key;
  no_key.sha = "def4567ffff";
  no_key.signature_problem = "no-key: ED25519 SHA256:xyz is in no account";
  CommitFact expired = signed_by("0a0b0c0d0e", "dave");  // signer known, but the key expired
  expired.signature_problem = "expired-key: 2025-01-01";
  pr.commits = {unsigned_commit, said_unsigned, no_key, expired, signed_by(kHead, "dave")};
  const Verdict v = evaluate(example_policy(), pr);
  CHECK_FALSE(v.pass);
  CHECK(v.reasons == Reasons{"commit abc1234 is unsigned", "commit abc5678 is unsigned",
                             "commit def4567: no-key: ED25519 SHA256:xyz is in no account",
                             "commit 0a0b0c0: expired-key: 2025-01-01"});
}

TEST_CASE("policy: signer outside the signers group, and not the author") {
  PrFacts pr = good_pr();
  pr.author_account = "mallory";
  pr.commits = {signed_by("abc1234ffff", "mallory"), signed_by(kHead, "alice")};
  const Verdict v = evaluate(example_policy(), pr);
  CHECK(v.reasons == Reasons{"commit abc1234 is signed by mallory, who is not in group developers",
                             "commit 89abcde is signed by alice but the PR author is mallory"});
}

TEST_CASE("policy: author_signs needs a known author") {
  PrFacts pr = good_pr();
  pr.author_account.reset();
  const Verdict v = evaluate(example_policy(), pr);
  CHECK(v.reasons == Reasons{"PR author is not a policy account"});
}

TEST_CASE("policy: author_signs disabled allows co-authored commits by group members") {
  Policy p = example_policy();
  p.rules[0].author_signs = false;
  PrFacts pr = good_pr();
  pr.commits = {signed_by("abc1234ffff", "alice"), signed_by(kHead, "dave")};
  CHECK(evaluate(p, pr).pass);
  pr.commits.push_back(signed_by("fff0000", "mallory"));  // still: signers group holds
  CHECK(evaluate(p, pr).reasons ==
        Reasons{"commit fff0000 is signed by mallory, who is not in group developers"});
  // ...and with author_signs on, alice's commit in dave's PR is refused.
  pr.commits.pop_back();
  CHECK(evaluate(example_policy(), pr).reasons ==
        Reasons{"commit abc1234 is signed by alice but the PR author is dave"});
}

TEST_CASE("policy: too few approvals, with every uncounted approval explained") {
  PrFacts pr = good_pr();
  pr.approvals = {signed_approval("bob"), signed_approval("bob"),  // one person, counted once
                  signed_approval("dave"),                         // the author
                  forge_review("alice"),                           // forge review, not signed
                  signed_approval("carol", kOld)};                 // not pinned to the head
  const Verdict v = evaluate(example_policy(), pr);
  CHECK_FALSE(v.pass);
  CHECK(v.reasons == Reasons{"needs 2 approvals from maintainers for paths **, has 1 (bob)",
                             "approval by dave does not count: dave is the PR's author",
                             "forge review by alice does not count: rule requires signed approvals",
                             "approval by carol for 1234567 does not count: PR head is 89abcde"});
  CHECK(v.approvers == std::vector<std::string>{"bob"});
}

TEST_CASE("policy: the author never counts, even as a maintainer") {
  PrFacts pr = good_pr();
  pr.author_account = "alice";
  pr.commits = {signed_by(kHead, "alice")};
  pr.approvals = {signed_approval("alice"), signed_approval("bob")};
  CHECK(evaluate(example_policy(), pr).reasons ==
        Reasons{"needs 2 approvals from maintainers for paths **, has 1 (bob)",
                "approval by alice does not count: alice is the PR's author"});
}

TEST_CASE("policy: an author of no account never approves the commits they signed") {
  Policy p = example_policy();
  p.rules[0].author_signs = false;  // else "PR author is not a policy account" fails it anyway
  PrFacts pr = good_pr();
  pr.author_account.reset();  // e.g. a login no account lists
  pr.commits = {signed_by("abc1234ffff", "bob"), signed_by(kHead, "dave")};
  pr.approvals = {signed_approval("bob"), signed_approval("carol")};
  CHECK(evaluate(p, pr).reasons ==
        Reasons{"needs 2 approvals from maintainers for paths **, has 1 (carol)",
                "approval by bob does not count: bob signed commit abc1234 of the PR, whose "
                "author is not a policy account"});
  // A known author: the other signers of a co-authored PR may approve it.
  pr.author_account = "dave";
  CHECK(evaluate(p, pr).pass);
}

TEST_CASE("policy: approvals from outside the approvers group, and none at all") {
  PrFacts pr = good_pr();
  pr.author_account = "bob";
  pr.commits = {signed_by(kHead, "bob")};
  pr.approvals = {signed_approval("dave")};
  CHECK(evaluate(example_policy(), pr).reasons ==
        Reasons{"needs 2 approvals from maintainers for paths **, has 0",
                "approval by dave does not count: dave is not in group maintainers"});
}

TEST_CASE("policy: a stale approval does not hide a fresh one by the same person") {
  PrFacts pr = good_pr();
  pr.approvals = {signed_approval("bob", kOld), signed_approval("bob"), signed_approval("carol")};
  const Verdict v = evaluate(example_policy(), pr);
  CHECK(v.pass);
  CHECK(v.approvers == std::vector<std::string>{"bob", "carol"});
}

TEST_CASE("policy: forge reviews count when the rule allows them") {
  Policy p = example_policy();
  PrFacts pr = good_pr();
  pr.approvals = {forge_review("bob"), signed_approval("carol")};
  CHECK_FALSE(evaluate(p, pr).pass);
  p.rules[0].forge_reviews = true;
  const Verdict v = evaluate(p, pr);
  CHECK(v.reasons == Reasons{});
  CHECK(v.approvers == std::vector<std::string>{"bob", "carol"});
}

TEST_CASE("policy: the strictest rule wins when paths match two rules") {
  const Policy p = example_policy();
  PrFacts pr = good_pr();
  pr.changed_paths = {"src/a.cpp", "deploy/setup.sh"};
  CHECK(evaluate(p, pr).reasons ==
        Reasons{
            "needs 3 approvals from maintainers for paths .dmz/**, deploy/**, has 2 (bob, carol)"});
  pr.approvals.push_back(signed_approval("alice"));
  const Verdict v = evaluate(p, pr);
  CHECK(v.pass);
  CHECK(v.approvers == std::vector<std::string>{"alice", "bob", "carol"});

  // A policy change is held to the stricter rule too; a forge review does not help.
  pr.changed_paths = {".dmz/policy.toml"};
  pr.approvals = {signed_approval("bob"), signed_approval("carol"), forge_review("alice")};
  CHECK(
      evaluate(p, pr).reasons ==
      Reasons{"needs 3 approvals from maintainers for paths .dmz/**, deploy/**, has 2 (bob, carol)",
              "forge review by alice does not count: rule requires signed approvals"});
}

TEST_CASE("policy: signer constraints of all applicable rules add up") {
  Policy p = example_policy();
  p.rules[1].signers = "maintainers";  // deploy/** also needs a maintainer's signature
  PrFacts pr = good_pr();
  pr.approvals.push_back(signed_approval("alice"));
  CHECK(evaluate(p, pr).pass);  // src/ only: the deploy rule does not apply
  pr.changed_paths = {"deploy/x"};
  CHECK(evaluate(p, pr).reasons ==
        Reasons{"commit aaaaaaa is signed by dave, who is not in group maintainers",
                "commit 89abcde is signed by dave, who is not in group maintainers"});
}

TEST_CASE("policy: deny by default: paths and branches no rule covers") {
  Policy p = example_policy();
  p.rules[0].paths = {"src/**"};
  PrFacts pr = good_pr();
  pr.changed_paths = {"src/a.cpp", "README.md", "docs/x.md"};
  CHECK(evaluate(p, pr).reasons ==
        Reasons{"no rule for branch master covers README.md, docs/x.md"});

  pr = good_pr();
  pr.target_branch = "release";
  CHECK(evaluate(p, pr).reasons == Reasons{"no rule of the policy applies to branch release"});

  // Master has rules, only not for these paths: the reason names them, not the branch.
  pr = good_pr();
  pr.changed_paths = {"README.md", "docs/x.md"};
  CHECK(evaluate(p, pr).reasons ==
        Reasons{"no rule for branch master covers README.md, docs/x.md"});
}

TEST_CASE("evaluate_commit: a changed path no rule covers fails the commit, as it fails a PR") {
  Policy p = example_policy();
  p.rules[0].paths = {"src/**"};
  CommitFact c = signed_by("abc1234ff", "dave");
  c.changed_paths = std::vector<std::string>{"src/a.cpp", "README.md"};
  CHECK(evaluate_commit(p, "master", c).reasons ==
        Reasons{"no rule for branch master covers README.md"});
  c.changed_paths = std::vector<std::string>{"README.md", "docs/x.md"};
  CHECK(evaluate_commit(p, "master", c).reasons ==
        Reasons{"no rule for branch master covers README.md, docs/x.md"});
  c.changed_paths = std::vector<std::string>{"src/a.cpp"};
  CHECK(evaluate_commit(p, "master", c).pass);
  CHECK(evaluate_commit(p, "release", c).reasons ==
        Reasons{"no rule of the policy applies to branch release"});

  // The audit and the gate agree on coverage for a PR of that one commit.
  for (const auto& paths : std::vector<std::vector<std::string>>{
           {"src/a.cpp"}, {"README.md"}, {"src/a.cpp", "README.md"}, {"deploy/x", "docs/y"}}) {
    CAPTURE(paths.size());
    c.changed_paths = paths;
    PrFacts pr = good_pr();
    pr.commits = {c};
    pr.changed_paths = paths;
    pr.approvals = {signed_approval("alice"), signed_approval("bob"), signed_approval("carol")};
    const Verdict gate = evaluate(p, pr);
    const Verdict audit = evaluate_commit(p, "master", c);
    CHECK(gate.pass == audit.pass);
    CHECK(gate.reasons == audit.reasons);
  }
}

TEST_CASE("policy: a PR that changes no path is judged by every rule of its branch") {
  PrFacts pr = good_pr();
  pr.changed_paths.clear();
  CHECK(evaluate(example_policy(), pr).reasons ==
        Reasons{
            "needs 3 approvals from maintainers for paths .dmz/**, deploy/**, has 2 (bob, carol)"});
}

TEST_CASE("policy: history rewritten") {
  PrFacts pr = good_pr();
  pr.history_rewritten = true;
  CHECK(evaluate(example_policy(), pr).reasons ==
        Reasons{"history rewritten: a force-push dropped published commits"});
}

TEST_CASE("policy: every failing condition is reported, each once") {
  PrFacts pr;
  pr.branch = "wip/x";
  pr.target_branch = "master";
  pr.head = kHead;
  pr.author_account = "mallory";
  pr.history_rewritten = true;
  CommitFact unsigned_commit;
  unsigned_commit.sha = kHead;
  pr.commits = {signed_by("abc1234ffff", "mallory"), unsigned_commit};
  pr.changed_paths = {"deploy/x"};
  pr.approvals = {forge_review("bob")};
  const Verdict v = evaluate(example_policy(), pr);
  CHECK_FALSE(v.pass);
  CHECK(v.reasons ==
        Reasons{"branch wip/x is refused by pattern wip/*",
                "history rewritten: a force-push dropped published commits",
                "commit abc1234 is signed by mallory, who is not in group developers",
                "commit 89abcde is unsigned",
                "needs 2 approvals from maintainers for paths **, has 0",
                "forge review by bob does not count: rule requires signed approvals",
                "needs 3 approvals from maintainers for paths .dmz/**, deploy/**, has 0"});
  CHECK(v.approvers.empty());
}

TEST_CASE("evaluate_commit: ordinary commits need a signer of every rule of the branch") {
  const Policy p = example_policy();
  CHECK(evaluate_commit(p, "master", signed_by("abc1234ff", "dave")).pass);
  CHECK(evaluate_commit(p, "master", signed_by("abc1234ff", "mallory")).reasons ==
        Reasons{"commit abc1234 is signed by mallory, who is not in group developers"});
  CommitFact unsigned_commit;
  unsigned_commit.sha = "abc1234ff";
  CHECK(evaluate_commit(p, "master", unsigned_commit).reasons ==
        Reasons{"commit abc1234 is unsigned"});
  CHECK(evaluate_commit(p, "release", signed_by("abc1234ff", "dave")).reasons ==
        Reasons{"no rule of the policy applies to branch release"});
}

TEST_CASE("evaluate_commit: unknown paths apply every rule of the branch, known paths filter") {
  Policy p = example_policy();
  p.rules[1].signers = "maintainers";
  CommitFact c = signed_by("abc1234ff", "dave");
  CHECK(evaluate_commit(p, "master", c).reasons ==
        Reasons{"commit abc1234 is signed by dave, who is not in group maintainers"});
  c.changed_paths = std::vector<std::string>{"src/a.cpp"};
  CHECK(evaluate_commit(p, "master", c).pass);
  c.changed_paths = std::vector<std::string>{"deploy/a.sh"};
  CHECK_FALSE(evaluate_commit(p, "master", c).pass);
}

TEST_CASE("evaluate_commit: merge commits") {
  const Policy p = example_policy();
  CommitFact merge = signed_by("abc1234ff", "dmzbot");
  merge.is_merge = true;
  CHECK(evaluate_commit(p, "master", merge).pass);
  merge.signer = "carol";  // a conflict resolver may sign any merge
  CHECK(evaluate_commit(p, "master", merge).pass);
  merge.signer = "dave";
  CHECK(evaluate_commit(p, "master", merge).reasons ==
        Reasons{"merge commit abc1234 is signed by dave, who is in neither merge signers (bots) "
                "nor conflict resolvers (maintainers)"});
  merge.signer = "dmzbot";
  merge.resolved_conflicts = true;  // the bot cannot have resolved conflicts by hand
  CHECK(evaluate_commit(p, "master", merge).reasons ==
        Reasons{"merge commit abc1234 resolves conflicts but is signed by dmzbot, who is not in "
                "group maintainers"});
  merge.signer = "alice";
  CHECK(evaluate_commit(p, "master", merge).pass);
  merge.signer.reset();
  CHECK(evaluate_commit(p, "master", merge).reasons == Reasons{"commit abc1234 is unsigned"});
}

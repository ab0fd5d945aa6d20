// The policy gate against real repositories and real keys: every refusal is asserted with its
// reason, and good signatures are cross-checked with `git verify-commit`.
#include "bot/trust/gate.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <future>

#include "base/file.hpp"
#include "base/metrics.hpp"
#include "bot/git/mirror.hpp"
#include "bot/trust/facts.hpp"
#include "bot/trust/test_fixture.hpp"

using namespace dmz;
using namespace dmz::trust_test;
using dmz::test::TempDir;

namespace {

bool has(const std::vector<std::string>& reasons, const std::string& reason) {
  return std::find(reasons.begin(), reasons.end(), reason) != reasons.end();
}
bool has_prefix(const std::vector<std::string>& reasons, const std::string& prefix) {
  return std::any_of(reasons.begin(), reasons.end(),
                     [&](const std::string& r) { return r.rfind(prefix, 0) == 0; });
}
std::string all(const std::vector<std::string>& reasons) {
  std::string out;
  for (const auto& r : reasons) out += r + "\n";
  return out;
}
std::string s7(const std::string& sha) { return sha.substr(0, 7); }

// A repository with the fixture's policy on master and a PR branch feature/x checked out.
struct PrRepo : Repo {
  std::string master;
  std::unique_ptr<PolicyChecker> checker;
  explicit PrRepo(const std::string& policy = keys().policy()) : Repo(policy_files(policy)) {
    master = root;
    git("checkout -q -b feature/x");
    config::Repo cfg;
    cfg.name = "o/r";
    checker = make_policy_checker(cfg);
  }
  queue::PolicyChecked check(const std::string& author, const std::string& head,
                             const std::string& branch = "feature/x", int number = 1,
                             const ForgeReviews& reviews = {}) {
    fetch();
    queue::PullRequest pr;
    pr.number = number;
    pr.branch = branch;
    pr.author = author;
    pr.head = head;
    return checker->check(*mirror, pr, head, master, 0, reviews);
  }
  void approve(const test::SshKey& key, const std::string& who, const std::string& head) {
    ssh_tag(key, "dmz-approve/1-" + who, head);
  }
  void approvals(const std::string& head) {
    approve(keys().bob_ssh, "bob", head);
    approve(keys().carol_ssh, "carol", head);
  }
  // A signed-note approval by `key`, made with exactly the reviewer commands of docs/POLICY.md
  // ("A signed note"); `what` is what the note approves, e.g. "o/r#1".
  void note_approve(const test::SshKey& key, const std::string& what, const std::string& head) {
    test::configure_ssh_signing(work, key);  // `git config gpg.format ssh` + user.signingkey
    must("export " + test::git_env() + "; set -e; HEAD=" + head + "; WHAT=" + shell_quote(what) +
             "\n" + kNoteApprovalCommands,
         work);
  }
  // The first and last of those commands only: an unsigned notes commit.
  std::string unsigned_note(const std::string& what, const std::string& head) {
    must(test::git_env() + "git notes --ref=dmz-approvals append -m " +
             shell_quote("dmz-approve " + what + " " + head) + " " + head,
         work);
    git("push -q origin refs/notes/dmz-approvals");
    return git("rev-parse refs/notes/dmz-approvals");
  }
  static constexpr const char* kNoteApprovalCommands = R"(
git fetch origin '+refs/notes/*:refs/notes/*'
git notes --ref=dmz-approvals append -m "dmz-approve $WHAT $HEAD" "$HEAD"
tip=$(git rev-parse refs/notes/dmz-approvals)
parents=$(git log -1 --format=%P "$tip" | sed 's/[^ ][^ ]*/-p &/g')
signed=$(git commit-tree -S $parents -m "dmz-approve $WHAT" "$tip^{tree}")
git update-ref refs/notes/dmz-approvals "$signed" "$tip"
git push origin refs/notes/dmz-approvals)";
};

}  // namespace

TEST_CASE("trust: an ssh-signed PR by its author with two signed-tag approvals passes") {
  auto& k = keys();
  PrRepo r;
  std::string head = r.commit({{"a.txt", "a\n"}}, "feature", k.ssh(k.alice_ssh));
  r.approvals(head);
  const metrics::Labels good_ssh{{"format", "ssh"}, {"result", "good"}};
  const double verified = metrics::global().value("dmzbot_signature_verifications_total", good_ssh);
  auto v = r.check("alice", head);
  CHECK_MESSAGE(v.pass, all(v.reasons));
  // The commit and both approval tags, each verified once, counted for /metrics.
  CHECK(metrics::global().value("dmzbot_signature_verifications_total", good_ssh) >= verified + 3);
  CHECK(v.reasons.empty());
  CHECK(v.number == 1);
  CHECK(v.sha == head);
  CHECK(v.signers == std::vector<std::string>{"alice"});  // who signed, for the status page
  // Whose approvals counted: the two signed tags' accounts.
  CHECK(v.approvers == std::vector<std::string>{"bob", "carol"});
  // git agrees that the signature is good.
  test::write_allowed_signers(r.tmp / "allowed", {{"alice", &k.alice_ssh, ""}});
  CHECK(test::run(test::git_env() + "git " + test::ssh_verify_options(r.tmp / "allowed") +
                      "verify-commit " + head,
                  r.work)
            .exit_code == 0);
}

// The stricter rule of .dmz/** needs 3 approvals; the PR has the 2 of **.
TEST_CASE("trust: a merge inside the PR that undoes master's change to a protected path") {
  auto& k = keys();
  PrRepo r;
  // Master moves on: a change under .dmz/ (unsigned: the target's history is not judged here).
  r.git("checkout -q master");
  r.master = test::commit_files(r.work, {{".dmz/notes.txt", "tightened\n"}}, "tighten");
  r.git("checkout -q feature/x");
  std::string own = r.commit({{"a.txt", "a\n"}}, "feature", k.ssh(k.alice_ssh));

  SUBCASE("alone, the PR changes only a.txt") {
    r.approvals(own);
    auto v = r.check("alice", own);
    CHECK_MESSAGE(v.pass, all(v.reasons));
    CHECK(v.paths == std::vector<std::string>{"a.txt"});
  }
  SUBCASE("merged with master's history but keeping its own tree (-s ours), it undoes it") {
    r.git("merge -q -s ours --no-edit master");
    const std::string head = r.sign_head(k.ssh(k.alice_ssh));  // alice resolves conflicts
    r.approvals(head);
    auto v = r.check("alice", head);
    CHECK_FALSE(v.pass);
    CHECK_MESSAGE(has_prefix(v.reasons, "needs 3 approvals from maintainers"), all(v.reasons));
    CHECK(std::find(v.paths.begin(), v.paths.end(), ".dmz/notes.txt") != v.paths.end());
  }
}

TEST_CASE("trust: a signed PR nobody approved lists no approvers, and says what is missing") {
  auto& k = keys();
  PrRepo r;
  std::string head = r.commit({{"a.txt", "a\n"}}, "feature", k.ssh(k.alice_ssh));
  // An approval tag of another PR on another commit is not one of this PR's.
  std::string other = r.commit({{"b.txt", "b\n"}}, "other", k.ssh(k.alice_ssh));
  r.ssh_tag(k.bob_ssh, "dmz-approve/2-bob", other);
  auto v = r.check("alice", head);
  CHECK_FALSE(v.pass);
  CHECK(v.approvers.empty());
  CHECK(v.signers == std::vector<std::string>{"alice"});
  CHECK_MESSAGE(has(v.reasons, "needs 2 approvals from maintainers for paths **, has 0"),
                all(v.reasons));
}

// A plain-forge PR registered without an author, or by a login no account lists.
TEST_CASE("trust: when the author is no account, whoever signed the PR does not approve it") {
  auto& k = keys();
  std::string policy = k.policy();
  policy.replace(policy.find("author_signs = true"), 19, "author_signs = false");
  PrRepo r(policy);
  std::string head = r.commit({{"a.txt", "a\n"}}, "feature", k.ssh(k.bob_ssh));
  r.approvals(head);  // bob and carol
  const std::vector<std::string> refused = {
      "needs 2 approvals from maintainers for paths **, has 1 (carol)",
      "approval by bob does not count: bob signed commit " + s7(head) +
          " of the PR, whose author is not a policy account"};
  for (const std::string author : {"", "stranger"}) {
    CAPTURE(author);
    auto v = r.check(author, head);
    CHECK_FALSE(v.pass);
    CHECK_MESSAGE(v.reasons == refused, all(v.reasons));
  }
  auto v = r.check("bob", head);  // the author known: bob's approval is refused as the author's
  CHECK(has(v.reasons, "approval by bob does not count: bob is the PR's author"));
}

TEST_CASE("trust: forge reviews count where a rule allows them, through the accounts' logins") {
  auto& k = keys();
  std::string policy = k.policy();
  const std::string main_rule = "approvers = \"maintainers\"\n";
  policy.insert(policy.find(main_rule) + main_rule.size(), "forge_reviews = true\n");
  PrRepo r(policy);
  std::string head = r.commit({{"a.txt", "a\n"}}, "feature", k.ssh(k.alice_ssh));
  auto check = [&](ForgeReviews reviews) {
    return r.check("alice", head, "feature/x", 1, reviews);
  };

  auto v = check({{"bob", "carol"}, ""});
  CHECK(r.checker->counts_forge_reviews(*r.mirror, r.master));  // the mirror is fetched now
  CHECK_MESSAGE(v.pass, all(v.reasons));
  CHECK(v.approvers == std::vector<std::string>{"bob", "carol"});

  v = check({{"bob", "stranger"}, ""});
  CHECK_FALSE(v.pass);
  CHECK_MESSAGE(has(v.reasons, "needs 2 approvals from maintainers for paths **, has 1 (bob)"),
                all(v.reasons));
  CHECK(
      has(v.reasons, "forge review by @stranger does not count: no policy account has that login"));

  v = check({{"alice", "bob"}, ""});  // the author's own review
  CHECK_FALSE(v.pass);
  CHECK(has(v.reasons, "approval by alice does not count: alice is the PR's author"));

  v = check({{"bob"}, "GitHub answered 502"});
  CHECK_FALSE(v.pass);
  CHECK(has(v.reasons,
            "the forge's reviews could not be read (GitHub answered 502); ask again "
            "once it answers"));

  // Where the rule asks for signed approvals, a forge review is refused with the reason.
  PrRepo strict;
  std::string strict_head = strict.commit({{"a.txt", "a\n"}}, "feature", k.ssh(k.alice_ssh));
  v = strict.check("alice", strict_head, "feature/x", 1, {{"bob", "carol"}, ""});
  CHECK_FALSE(strict.checker->counts_forge_reviews(*strict.mirror, strict.master));
  CHECK_FALSE(v.pass);
  CHECK_MESSAGE(has(v.reasons,
                    "forge review (@bob) by bob does not count: rule requires signed "
                    "approvals"),
                all(v.reasons));
}

TEST_CASE("trust: an OpenPGP-signed PR by its author with two signed-tag approvals passes") {
  auto& k = keys();
  PrRepo r;
  std::string c1 = r.commit({{"a.txt", "a\n"}}, "one", k.openpgp(k.gpg.alice));
  std::string head = r.commit({{"b.txt", "b\n"}}, "two", k.openpgp(k.gpg.alice));
  r.approvals(head);
  auto v = r.check("alice@example.com", head);
  CHECK_MESSAGE(v.pass, all(v.reasons));
  CHECK(v.signers == std::vector<std::string>{"alice"});  // two commits, one signer
  CHECK(v.paths == std::vector<std::string>{"a.txt", "b.txt"});
  for (const auto& c : {c1, head})
    CHECK(test::run(k.gpg.home.env() + test::git_env() + "git verify-commit " + c, r.work)
              .exit_code == 0);
}

TEST_CASE("trust: without a policy_root or a committed policy every PR passes") {
  Repo r(std::vector<std::pair<std::string, std::string>>{{"README", "x\n"}});
  r.git("checkout -q -b feature/x");
  std::string head = r.commit({{"a.txt", "a\n"}}, "unsigned", nullptr);
  r.fetch();
  config::Repo cfg;
  auto checker = make_policy_checker(cfg);
  queue::PullRequest pr{1, "feature/x", "nobody"};
  auto v = checker->check(*r.mirror, pr, head, r.root, 0, {});
  CHECK(v.pass);
  CHECK(v.reasons.empty());
  CHECK(v.signers.empty());                                    // nothing was verified
  CHECK(v.approvers.empty());                                  // and no approval was asked for
  CHECK(v.paths == std::vector<std::string>{"a.txt"});         // what it changes: lanes need it
  CHECK(checker->check(*r.mirror, pr, head, "", 0, {}).pass);  // no master known yet
  CHECK_FALSE(checker->counts_forge_reviews(*r.mirror, r.root));
  // What it changes cannot be read (a head the mirror does not hold): it fails, with the error,
  // rather than pass with no paths (a landing of the first policy would go unseen).
  auto unread = checker->check(*r.mirror, pr, std::string(40, 'e'), r.root, 0, {});
  CHECK_FALSE(unread.pass);
  REQUIRE(unread.reasons.size() == 1);
  CHECK(unread.reasons[0].rfind("error: ", 0) == 0);
}

TEST_CASE("trust: the trust root judges a repository without a committed policy") {
  auto& k = keys();
  Repo r(std::vector<std::pair<std::string, std::string>>{{"README", "x\n"}});
  r.git("checkout -q -b feature/x");
  std::string head = r.commit({{"a.txt", "a\n"}}, "unsigned", nullptr);
  r.fetch();
  TempDir etc;
  test::write_file(etc / "policy.toml", k.policy());
  config::Repo cfg;
  cfg.policy_root = etc / "policy.toml";
  auto checker = make_policy_checker(cfg);
  queue::PullRequest pr{1, "feature/x", "alice"};
  auto v = checker->check(*r.mirror, pr, head, r.root, 0, {});
  CHECK_FALSE(v.pass);
  CHECK_MESSAGE(has(v.reasons, "commit " + s7(head) + " is unsigned"), all(v.reasons));

  SUBCASE("the trust root's keys/ directory holds its OpenPGP keys") {
    r.git("checkout -q master");
    r.git("checkout -q -b feature/y");
    std::string signed_head = r.commit({{"b.txt", "b\n"}}, "signed", k.openpgp(k.gpg.alice));
    r.ssh_tag(k.bob_ssh, "dmz-approve/2-bob", signed_head);
    r.ssh_tag(k.carol_ssh, "dmz-approve/2-carol", signed_head);
    r.fetch();
    queue::PullRequest pr2{2, "feature/y", "alice"};
    auto no_keys = checker->check(*r.mirror, pr2, signed_head, r.root, 0, {});
    CHECK_FALSE(no_keys.pass);
    CHECK_MESSAGE(has_prefix(no_keys.reasons, "commit " + s7(signed_head) + ": no-key: "),
                  all(no_keys.reasons));
    std::filesystem::create_directories(etc / "keys");
    test::write_file(etc / "keys" / "alice.asc", k.gpg.home.export_public(k.gpg.alice));
    auto with_keys = checker->check(*r.mirror, pr2, signed_head, r.root, 0, {});
    CHECK_MESSAGE(with_keys.pass, all(with_keys.reasons));
  }
  SUBCASE("an unreadable trust root fails closed") {
    config::Repo bad;
    bad.policy_root = etc / "missing.toml";
    auto v2 = make_policy_checker(bad)->check(*r.mirror, pr, head, r.root, 0, {});
    CHECK_FALSE(v2.pass);
    CHECK(v2.reasons == std::vector<std::string>{"error: reading the trust root: '" +
                                                 bad.policy_root.string() + "' does not exist"});
  }
  SUBCASE("a trust root that is a FIFO or /dev/zero fails closed at once") {
    REQUIRE(::mkfifo((etc / "fifo").c_str(), 0600) == 0);
    // A writer held open: a reader that blocked would wait until it is closed.
    int writer = ::open((etc / "fifo").c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(writer >= 0);
    config::Repo bad;
    bad.policy_root = etc / "fifo";
    auto checker2 = make_policy_checker(bad);
    auto pending = std::async(std::launch::async,
                              [&] { return checker2->check(*r.mirror, pr, head, r.root, 0, {}); });
    const bool prompt = pending.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
    ::close(writer);
    auto v2 = pending.get();
    CHECK(prompt);
    CHECK(v2.reasons ==
          std::vector<std::string>{"error: reading the trust root: '" + bad.policy_root.string() +
                                   "' is not a regular file (a FIFO)"});
    bad.policy_root = "/dev/zero";
    CHECK(make_policy_checker(bad)->check(*r.mirror, pr, head, r.root, 0, {}).reasons ==
          std::vector<std::string>{"error: reading the trust root: '/dev/zero' is not a regular "
                                   "file (a character device)"});
  }
}

TEST_CASE("trust: a committed policy that does not parse fails every PR, closed") {
  PrRepo r("version = 2\n");
  std::string head = r.commit({{"a.txt", "a\n"}}, "x", keys().ssh(keys().alice_ssh));
  auto v = r.check("alice", head);
  CHECK_FALSE(v.pass);
  CHECK(has(v.reasons, "the policy does not parse"));
  CHECK_MESSAGE(has_prefix(v.reasons, ".dmz/policy.toml@" + s7(r.master) + ":1: "), all(v.reasons));
}

TEST_CASE("trust: refusals, each with its reason") {
  auto& k = keys();
  PrRepo r;

  SUBCASE("unsigned commit") {
    std::string head = r.commit({{"a.txt", "a\n"}}, "x", nullptr);
    r.approvals(head);
    auto v = r.check("alice", head);
    CHECK_FALSE(v.pass);
    CHECK_MESSAGE(has(v.reasons, "commit " + s7(head) + " is unsigned"), all(v.reasons));
  }
  SUBCASE("ssh signature by a key no account names") {
    std::string head = r.commit({{"a.txt", "a\n"}}, "x", k.ssh(k.stranger_ssh));
    r.approvals(head);
    const metrics::Labels refused{{"format", "ssh"}, {"result", "refused"}};
    const double before = metrics::global().value("dmzbot_signature_verifications_total", refused);
    auto v = r.check("alice", head);
    CHECK(metrics::global().value("dmzbot_signature_verifications_total", refused) == before + 1);
    CHECK_MESSAGE(has_prefix(v.reasons, "commit " + s7(head) + ": no-key: "), all(v.reasons));
    CHECK_FALSE(v.pass);
  }
  SUBCASE("OpenPGP key present in .dmz/keys but named by no account") {
    std::string head = r.commit({{"a.txt", "a\n"}}, "x", k.openpgp(k.gpg.mallory));
    r.approvals(head);
    auto v = r.check("alice", head);
    CHECK_MESSAGE(has(v.reasons, "commit " + s7(head) + ": no-key: " + k.gpg.mallory +
                                     " is named by no account of the policy"),
                  all(v.reasons));
  }
  SUBCASE("expired OpenPGP key") {
    std::string head = r.commit({{"a.txt", "a\n"}}, "x",
                                k.openpgp(k.gpg.expired, TrustKeysFixture::ten_days_ago_options()));
    r.approvals(head);
    auto v = r.check("past", head);
    CHECK_MESSAGE(has_prefix(v.reasons, "commit " + s7(head) + ": expired-key: "), all(v.reasons));
  }
  SUBCASE("revoked OpenPGP key") {
    std::string head = r.commit({{"a.txt", "a\n"}}, "x", k.openpgp_revoked());
    r.approvals(head);
    auto v = r.check("past", head);
    CHECK_MESSAGE(has_prefix(v.reasons, "commit " + s7(head) + ": revoked-key: "), all(v.reasons));
  }
  SUBCASE("expired OpenPGP signature") {
    std::string head =
        r.commit({{"a.txt", "a\n"}}, "x",
                 k.openpgp(k.gpg.past + "!",
                           TrustKeysFixture::ten_days_ago_options() + "--default-sig-expire 1d "));
    r.approvals(head);
    auto v = r.check("past", head);
    CHECK_MESSAGE(has_prefix(v.reasons, "commit " + s7(head) + ": expired-signature: "),
                  all(v.reasons));
  }
  SUBCASE("ssh key used outside its validity window (valid-before)") {
    std::string head = r.commit({{"a.txt", "a\n"}}, "x", k.ssh(k.dave_ssh));
    r.approvals(head);
    auto v = r.check("dave", head);
    CHECK_MESSAGE(has_prefix(v.reasons, "commit " + s7(head) + ": expired-key: "), all(v.reasons));
  }
  SUBCASE("payload tampered after signing") {
    std::string head = r.commit({{"a.txt", "a\n"}}, "x", k.ssh(k.alice_ssh),
                                [](std::string b) { return b.replace(b.rfind("x\n"), 2, "y\n"); });
    r.approvals(head);
    auto v = r.check("alice", head);
    CHECK_MESSAGE(has_prefix(v.reasons, "commit " + s7(head) + ": bad-signature"), all(v.reasons));
  }
  SUBCASE("tampered OpenPGP payload") {
    std::string head = r.commit({{"a.txt", "a\n"}}, "x", k.openpgp(k.gpg.alice),
                                [](std::string b) { return b.replace(b.rfind("x\n"), 2, "y\n"); });
    r.approvals(head);
    auto v = r.check("alice", head);
    CHECK_MESSAGE(has_prefix(v.reasons, "commit " + s7(head) + ": bad-signature"), all(v.reasons));
  }
  SUBCASE("NUL appended to a signed commit") {
    std::string head = r.commit({{"a.txt", "a\n"}}, "x", k.ssh(k.alice_ssh),
                                [](std::string b) { return b + std::string("\0extra", 6); });
    r.approvals(head);
    auto v = r.check("alice", head);
    CHECK_MESSAGE(has_prefix(v.reasons, "commit " + s7(head) + ": nul: "), all(v.reasons));
  }
  SUBCASE("a second signature") {
    auto second = k.ssh(k.bob_ssh);
    std::string head = r.commit({{"a.txt", "a\n"}}, "x", k.ssh(k.alice_ssh), [&](std::string b) {
      return with_gpgsig(b, second(b));  // a second gpgsig header
    });
    r.approvals(head);
    auto v = r.check("alice", head);
    CHECK_MESSAGE(has_prefix(v.reasons, "commit " + s7(head) + ": duplicate-gpgsig: "),
                  all(v.reasons));
  }
  SUBCASE("a junk gpgsig-sha256 header") {
    std::string head = r.commit({{"a.txt", "a\n"}}, "x", k.ssh(k.alice_ssh), [](std::string b) {
      size_t end = b.find("\n\n");
      return b.substr(0, end + 1) +
             "gpgsig-sha256 -----BEGIN PGP SIGNATURE-----\n junk\n -----END PGP SIGNATURE-----\n" +
             b.substr(end + 1);
    });
    r.approvals(head);
    auto v = r.check("alice", head);
    CHECK_MESSAGE(has_prefix(v.reasons, "commit " + s7(head) + ": gpgsig-sha256: "),
                  all(v.reasons));
  }
  SUBCASE("a text-mode OpenPGP signature") {
    std::string head = r.commit({{"a.txt", "a\n"}}, "x", k.openpgp(k.gpg.alice, "--textmode "));
    r.approvals(head);
    auto v = r.check("alice", head);
    CHECK_FALSE(v.pass);
    CHECK_MESSAGE(v.reasons == std::vector<std::string>{"commit " + s7(head) +
                                                        ": bad-signature: signature type 0x01 is "
                                                        "not a binary-document signature"},
                  all(v.reasons));
  }
  SUBCASE("a commit git accepts with its signature before author: its reason, not an error") {
    r.fetch_with_git = true;
    std::string odd = r.commit({{"a.txt", "a\n"}}, "odd", k.ssh(k.alice_ssh), gpgsig_before_author);
    std::string head = r.commit({{"b.txt", "b\n"}}, "after", k.ssh(k.alice_ssh));
    for (int number : {1, 2}) {  // the odd commit as the head (PR 1), and below it (PR 2)
      const std::string tip = number == 1 ? odd : head;
      r.ssh_tag(k.bob_ssh, "dmz-approve/" + std::to_string(number) + "-bob", tip);
      r.ssh_tag(k.carol_ssh, "dmz-approve/" + std::to_string(number) + "-carol", tip);
      auto v = r.check("alice", tip, "feature/x", number);
      CHECK_FALSE(v.pass);
      CHECK_MESSAGE(v.reasons == std::vector<std::string>{"commit " + s7(odd) +
                                                          ": bad-header: gpgsig header before the "
                                                          "author header"},
                    all(v.reasons));
    }
  }
  SUBCASE("a signed commit replayed into a PR of another account") {
    std::string head = r.commit({{"a.txt", "a\n"}}, "x", k.ssh(k.alice_ssh));
    r.approvals(head);
    auto v = r.check("bob", head);
    CHECK_FALSE(v.pass);
    CHECK_MESSAGE(
        has(v.reasons, "commit " + s7(head) + " is signed by alice but the PR author is bob"),
        all(v.reasons));
  }
  SUBCASE("too few approvals") {
    std::string head = r.commit({{"a.txt", "a\n"}}, "x", k.ssh(k.alice_ssh));
    r.approve(k.bob_ssh, "bob", head);
    auto v = r.check("alice", head);
    CHECK_FALSE(v.pass);
    CHECK_MESSAGE(has(v.reasons, "needs 2 approvals from maintainers for paths **, has 1 (bob)"),
                  all(v.reasons));
  }
  SUBCASE("an approval by the PR's own author does not count") {
    std::string head = r.commit({{"a.txt", "a\n"}}, "x", k.ssh(k.alice_ssh));
    r.approve(k.bob_ssh, "bob", head);
    r.approve(k.alice_ssh, "alice", head);
    auto v = r.check("alice", head);
    CHECK_FALSE(v.pass);
    CHECK_MESSAGE(has(v.reasons, "approval by alice does not count: alice is the PR's author"),
                  all(v.reasons));
  }
  SUBCASE("an approval for an older head does not count") {
    std::string old = r.commit({{"a.txt", "a\n"}}, "x", k.ssh(k.alice_ssh));
    r.approve(k.carol_ssh, "carol", old);
    std::string head = r.commit({{"a.txt", "b\n"}}, "y", k.ssh(k.alice_ssh));
    r.approve(k.bob_ssh, "bob", head);
    auto v = r.check("alice", head);
    CHECK_FALSE(v.pass);
    CHECK_MESSAGE(has(v.reasons, "approval by carol for " + s7(old) +
                                     " does not count: PR head is " + s7(head)),
                  all(v.reasons));
  }
  SUBCASE("a tag whose tag header differs from its ref name") {
    std::string head = r.commit({{"a.txt", "a\n"}}, "x", k.ssh(k.alice_ssh));
    r.approve(k.bob_ssh, "bob", head);
    std::string tag = r.ssh_tag(k.carol_ssh, "dmz-approve/1-carol", head);
    r.git("update-ref refs/tags/dmz-approve/1-renamed " + tag);
    r.git("tag -d dmz-approve/1-carol");
    auto v = r.check("alice", head);
    CHECK_FALSE(v.pass);
    CHECK_MESSAGE(
        has(v.reasons, "tag refs/tags/dmz-approve/1-renamed claims to be dmz-approve/1-carol"),
        all(v.reasons));
    CHECK(has(v.reasons, "needs 2 approvals from maintainers for paths **, has 1 (bob)"));
  }
  SUBCASE("a policy change authorized only by itself is judged by the old policy") {
    // mallory adds herself to developers and drops the approvals, signs it herself.
    std::string head = r.commit({{".dmz/policy.toml", k.policy(", \"mallory\"", 0)}}, "trust me",
                                k.ssh(k.mallory_ssh));
    auto v = r.check("mallory", head);
    CHECK_FALSE(v.pass);
    CHECK_MESSAGE(has(v.reasons, "commit " + s7(head) +
                                     " is signed by mallory, who is not in group developers"),
                  all(v.reasons));
    CHECK(has(v.reasons, "needs 3 approvals from maintainers for paths .dmz/**, has 0"));
  }
}

TEST_CASE("trust: the paths no rule covers are named, as dmzbot verify names them") {
  auto& k = keys();
  std::string policy = k.policy();
  const std::string all_paths = "paths = [\"**\"]";
  policy.replace(policy.find(all_paths), all_paths.size(), "paths = [\"src/**\"]");
  PrRepo r(policy);
  std::string head = r.commit({{"a.txt", "a\n"}, {"docs/b.md", "b\n"}}, "x", k.ssh(k.alice_ssh));
  r.approvals(head);
  auto v = r.check("alice", head);
  CHECK_FALSE(v.pass);
  CHECK_MESSAGE(v.reasons == std::vector<std::string>{"no rule for branch master covers a.txt, "
                                                      "docs/b.md"},
                all(v.reasons));
}

TEST_CASE("trust: a second check of an unchanged PR verifies no signature; new keys do") {
  auto& k = keys();
  PrRepo r;
  std::string c1 = r.commit({{"a.txt", "a\n"}}, "one", k.ssh(k.alice_ssh));
  std::string head = r.commit({{"b.txt", "b\n"}}, "two", k.openpgp(k.gpg.alice));
  r.approvals(head);
  r.ssh_tag(k.bob_ssh, "dmz-approve/7-bob", c1);  // another PR's approval: not verified
  auto v1 = r.check("alice", head);
  CHECK_MESSAGE(v1.pass, all(v1.reasons));
  const auto first = r.checker->signature_verifications();
  CHECK(first == 4);  // two commits, two approval tags
  auto v2 = r.check("alice", head);
  CHECK(v2.pass);
  CHECK(r.checker->signature_verifications() == first);

  // master moves and changes the key set (a new key file): everything is verified again.
  r.git("checkout -q master");
  r.master =
      r.commit({{".dmz/keys/extra.asc", k.gpg.home.export_public(k.gpg.rotated)}}, "key", nullptr);
  r.git("checkout -q feature/x");
  auto v3 = r.check("alice", head);
  CHECK(v3.pass);
  CHECK(r.checker->signature_verifications() == 2 * first);
}

TEST_CASE("trust: a PR by signed tag") {
  auto& k = keys();
  PrRepo r;
  std::string head = r.commit({{"a.txt", "a\n"}}, "x", k.ssh(k.alice_ssh));
  r.approvals(head);

  SUBCASE("signed by its author: passes, and mergetag_for gives the tag object") {
    std::string tag = r.ssh_tag(k.alice_ssh, "for-master", head);
    auto v = r.check("alice", head, "tags/for-master");
    CHECK_MESSAGE(v.pass, all(v.reasons));
    CHECK(v.tag == tag);  // the object judged: the merge records that one, no other
    auto text = mergetag_for(*r.mirror, "for-master");
    REQUIRE_MESSAGE(text.ok(), (text.ok() ? "" : text.message()));
    CHECK(*text == r.cat("tag", tag));
  }
  SUBCASE("signed by someone else") {
    r.ssh_tag(k.bob_ssh, "for-master", head);
    auto v = r.check("alice", head, "tags/for-master");
    CHECK_FALSE(v.pass);
    CHECK_MESSAGE(
        has(v.reasons,
            "pull request tag refs/tags/for-master is signed by bob but the PR author is alice"),
        all(v.reasons));
  }
  SUBCASE("not a tag PR: no tag object judged") {
    r.ssh_tag(k.alice_ssh, "for-master", head);
    auto v = r.check("alice", head, "feature/x");
    CHECK(v.tag.empty());
  }
  SUBCASE("a tag whose header names another tag") {
    std::string tag = r.ssh_tag(k.alice_ssh, "for-next", head);
    r.git("update-ref refs/tags/for-master " + tag);
    auto v = r.check("alice", head, "tags/for-master");
    CHECK_FALSE(v.pass);
    CHECK_MESSAGE(has(v.reasons, "tag refs/tags/for-master claims to be for-next"), all(v.reasons));
    auto text = mergetag_for(*r.mirror, "for-master");
    REQUIRE_FALSE(text.ok());
    CHECK(text.message() == "tag refs/tags/for-master claims to be for-next");
  }
}

// Alice's PR (one commit, signed by `signer` if any) on master, judged without a trust root.
queue::PolicyChecked judge_a_pr(Repo& r, const SignFn& signer) {
  const std::string target = r.git("rev-parse HEAD");
  r.git("checkout -q -b feature/x");
  const std::string head = r.commit({{"a.txt", "a\n"}}, "a change", signer);
  r.fetch();
  auto checker = make_policy_checker(config::Repo{});
  queue::PullRequest pr{1, "feature/x", "alice"};
  return checker->check(*r.mirror, pr, head, target, 0, {});
}

TEST_CASE("trust: without a policy a PR by tag still pins the tag object seen") {
  Repo r(std::vector<std::pair<std::string, std::string>>{{"README", "x\n"}});
  const std::string target = r.git("rev-parse HEAD");
  r.git("checkout -q -b feature/x");
  const std::string head = r.commit({{"a.txt", "a\n"}}, "a change", nullptr);
  r.git("tag -a for-master -m 'please merge' " + head);
  const std::string tag = r.git("rev-parse refs/tags/for-master");
  r.fetch();
  auto checker = make_policy_checker(config::Repo{});
  auto v = checker->check(*r.mirror, {1, "tags/for-master", "alice"}, head, target, 0, {});
  CHECK_MESSAGE(v.pass, all(v.reasons));  // nothing to check a signature against
  CHECK(v.tag == tag);
}

TEST_CASE("trust: a policy path that is not a regular file fails closed, not open") {
  auto& k = keys();
  Repo r(std::vector<std::pair<std::string, std::string>>{{".dmz/real.toml", k.policy()}});
  std::string kind;
  SUBCASE("a directory") {
    r.commit({{".dmz/policy.toml/x", "x\n"}}, "a directory", nullptr);
    kind = "a directory";
  }
  SUBCASE("a submodule") {
    r.git("update-index --add --cacheinfo 160000," + r.root + ",.dmz/policy.toml");
    r.git("commit -q -m 'a submodule'");
    kind = "a submodule";
  }
  SUBCASE("a symlink to a good policy") {
    std::filesystem::create_symlink("real.toml", r.work / ".dmz" / "policy.toml");
    r.commit({}, "a symlink", nullptr);
    kind = "a symlink";
  }
  std::string target = r.git("rev-parse HEAD");
  auto v = judge_a_pr(r, k.ssh(k.alice_ssh));
  CHECK_FALSE(v.pass);
  CHECK(v.reasons == std::vector<std::string>{".dmz/policy.toml at " + s7(target) +
                                              " is not a regular file (" + kind + ")"});
}

TEST_CASE("trust: a policy file over 1 MiB fails closed, refused before it is read") {
  auto& k = keys();
  Repo r(std::vector<std::pair<std::string, std::string>>{{".dmz/policy.toml", k.policy()}});
  // A valid policy, padded with a comment past the limit.
  r.commit({{".dmz/policy.toml", k.policy() + "#" + std::string(kMaxPolicyFileBytes, 'x') + "\n"}},
           "a large policy", nullptr);
  const std::string target = r.git("rev-parse HEAD");
  const std::string blob = r.git("rev-parse HEAD:.dmz/policy.toml");
  auto v = judge_a_pr(r, k.ssh(k.alice_ssh));
  CHECK_FALSE(v.pass);
  CHECK_MESSAGE(has(v.reasons, ".dmz/policy.toml at " + s7(target) + ": " + s7(blob) +
                                   " is larger than 1048576 bytes"),
                all(v.reasons));
}

TEST_CASE("trust: a .dmz that is not a directory fails closed, not open") {
  auto& k = keys();
  Repo r(std::vector<std::pair<std::string, std::string>>{{"real/policy.toml", k.policy()}});
  std::filesystem::remove_all(r.work / ".dmz");
  std::string kind;
  SUBCASE("a symlink to a directory holding a good policy") {
    std::filesystem::create_symlink("real", r.work / ".dmz");
    r.commit({}, "a symlink", nullptr);
    kind = "a symlink";
  }
  SUBCASE("a file") {
    r.commit({{".dmz", "x\n"}}, "a file", nullptr);
    kind = "a regular file";
  }
  SUBCASE("a submodule") {
    r.git("update-index --add --cacheinfo 160000," + r.root + ",.dmz");
    r.git("commit -q -m 'a submodule'");
    kind = "a submodule";
  }
  std::string target = r.git("rev-parse HEAD");
  // Without a trust root an absent policy passes every PR: this one must not.
  auto v = judge_a_pr(r, nullptr);
  CHECK_FALSE(v.pass);
  CHECK(v.reasons ==
        std::vector<std::string>{".dmz at " + s7(target) + " is not a directory (" + kind + ")"});
}

// Once landed, such a .dmz would fail every later PR, the one that deletes it included.
TEST_CASE("trust: a PR that makes .dmz a file or a submodule is refused before it lands") {
  auto& k = keys();
  Repo r(std::vector<std::pair<std::string, std::string>>{{"README", "x\n"}});
  std::filesystem::remove_all(r.work / ".dmz");
  r.git("checkout -q -b feature/x");
  std::string kind;
  SUBCASE("a file") {
    r.commit({{".dmz", "x\n"}}, "a file", nullptr);
    kind = "a regular file";
  }
  SUBCASE("a submodule") {
    r.git("update-index --add --cacheinfo 160000," + r.root + ",.dmz");
    r.git("commit -q -m 'a submodule'");
    kind = "a submodule";
  }
  const std::string head = r.sign_head(k.ssh(k.alice_ssh));
  r.ssh_tag(k.bob_ssh, "dmz-approve/1-bob", head);
  r.ssh_tag(k.carol_ssh, "dmz-approve/1-carol", head);
  r.fetch();
  const std::vector<std::string> refused = {
      "the pull request would leave no usable policy: .dmz at " + s7(head) +
      " is not a directory (" + kind + ")"};
  queue::PullRequest pr{1, "feature/x", "alice"};

  // No policy at all: everything else passes.
  auto v = make_policy_checker(config::Repo{})->check(*r.mirror, pr, head, r.root, 0, {});
  CHECK_FALSE(v.pass);
  CHECK(v.reasons == refused);
  CHECK(v.paths == std::vector<std::string>{".dmz"});
  // The trust root: signed by the author and approved by two maintainers, as ** asks.
  TempDir etc;
  test::write_file(etc / "policy.toml", k.policy());
  config::Repo cfg;
  cfg.policy_root = etc / "policy.toml";
  v = make_policy_checker(cfg)->check(*r.mirror, pr, head, r.root, 0, {});
  CHECK_FALSE(v.pass);
  CHECK(v.reasons == refused);
}

// A policy that does not parse allows nothing: landed, it would fail every later PR, the one
// that repairs it included. So the PR that would land it is refused, with the parser's reasons.
TEST_CASE("trust: a PR whose policy does not parse is refused before it lands, with why") {
  auto& k = keys();
  std::string base = k.policy();  // .dmz/** with the two approvals the fixture gives
  base.replace(base.find("approvals = 3"), 13, "approvals = 2");
  PrRepo r(base);
  std::string policy = base;
  SUBCASE("a policy that parses lands") {}
  SUBCASE("a TOML error") { policy += "[merges\n"; }
  SUBCASE("an unknown group") {
    policy.replace(policy.find("approvers = \"maintainers\""), 25, "approvers = \"nobody\"");
  }
  const bool broken = policy != base;
  std::string head =
      r.commit({{".dmz/policy.toml", policy + "# edited\n"}}, "policy", k.ssh(k.alice_ssh));
  r.approvals(head);
  auto v = r.check("alice", head);
  CHECK_MESSAGE(v.pass == !broken, all(v.reasons));
  CHECK(v.unavailable.empty());  // the PR's fault: no asking again
  if (broken) {
    REQUIRE(v.reasons.size() == 1);
    CHECK_MESSAGE(has_prefix(v.reasons,
                             "the pull request would leave no usable policy: "
                             ".dmz/policy.toml@" +
                                 s7(head) + ":"),
                  all(v.reasons));
  }
}

// A failure on dmzbot's side is not the PR's: the verdict fails closed and says so, and the
// shell asks again rather than failing the PR.
TEST_CASE("trust: a verdict that failed on our side says so; asked again, it passes") {
  auto& k = keys();
  PrRepo r;
  std::string head = r.commit({{"a.txt", "a\n"}}, "feature", k.openpgp(k.gpg.alice));
  r.approvals(head);
  queue::PolicyChecked failed;
  {
    // No temporary directory (no GnuPG home) can be made under /proc, whoever runs the test.
    const char* old = std::getenv("TMPDIR");
    const std::string saved = old ? old : "";
    setenv("TMPDIR", "/proc", 1);
    failed = r.check("alice", head);
    if (old)
      setenv("TMPDIR", saved.c_str(), 1);
    else
      unsetenv("TMPDIR");
  }
  CHECK_FALSE(failed.pass);
  CHECK(failed.unavailable == "error: cannot create a GnuPG home under /proc");
  CHECK_MESSAGE(has(failed.reasons, "commit " + s7(head) + ": " + failed.unavailable),
                all(failed.reasons));
  auto again = r.check("alice", head);
  CHECK_MESSAGE(again.pass, all(again.reasons));
  CHECK(again.unavailable.empty());
}

TEST_CASE("trust: verifying on a pool (prefetch) gives the results of one thread, once each") {
  auto& k = keys();
  Repo r(policy_files(k.policy()));
  std::vector<std::string> shas;
  for (int i = 0; i < 20; ++i) {
    SignFn sign = i % 4 == 1 ? k.openpgp(k.gpg.mallory) : k.openpgp(k.gpg.alice);
    auto mutate = i % 4 == 3 ? std::function<std::string(std::string)>([](std::string b) {
      return b.replace(b.rfind("\n") - 1, 1, "X");
    })
                             : std::function<std::string(std::string)>();
    shas.push_back(
        r.commit({{"f.txt", std::to_string(i) + "\n"}}, "c" + std::to_string(i), sign, mutate));
  }
  shas.push_back(r.commit({{"g.txt", "ssh\n"}}, "ssh", k.ssh(k.bob_ssh)));
  auto src = trust::policy_source_at(*r.mirror, r.root);  // the mirror has nothing yet
  CHECK_FALSE(src.ok());
  r.fetch();
  src = trust::policy_source_at(*r.mirror, r.root);
  REQUIRE(src.ok());
  REQUIRE(src->has_value());
  auto loaded = trust::TrustKeys::load(**src);
  REQUIRE(loaded.keys);

  trust::FactGatherer one, pool;
  pool.prefetch(r.mirror->path(), *loaded.keys, shas, 2);
  CHECK(pool.verifications() == 20);  // the OpenPGP ones; ssh is verified in process later
  for (const auto& sha : shas) {
    auto a = one.commit_fact(*r.mirror, *loaded.keys, sha);
    auto b = pool.commit_fact(*r.mirror, *loaded.keys, sha);
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    CHECK(a->signer == b->signer);
    CHECK(a->signature_problem == b->signature_problem);
  }
  CHECK(one.verifications() == 21);
  CHECK(pool.verifications() == 21);
  auto tampered = one.commit_fact(*r.mirror, *loaded.keys, shas[3]);
  CHECK(tampered->signature_problem.rfind("bad-signature", 0) == 0);
  auto stranger = one.commit_fact(*r.mirror, *loaded.keys, shas[1]);
  CHECK(stranger->signature_problem.rfind("no-key: ", 0) == 0);
  CHECK(one.commit_fact(*r.mirror, *loaded.keys, shas[0])->signer ==
        std::optional<std::string>("alice"));
}

TEST_CASE("trust: signed notes under refs/notes/dmz-approvals are approvals") {
  auto& k = keys();
  PrRepo r;
  std::string head = r.commit({{"a.txt", "a\n"}}, "feature", k.ssh(k.alice_ssh));
  auto notes_tip = [&] { return r.git("rev-parse refs/notes/dmz-approvals"); };

  SUBCASE("one signed tag and one signed note by two maintainers make 2 approvals") {
    r.approve(k.bob_ssh, "bob", head);
    auto one = r.check("alice", head);
    CHECK_FALSE(one.pass);
    CHECK_MESSAGE(has(one.reasons, "needs 2 approvals from maintainers for paths **, has 1 (bob)"),
                  all(one.reasons));
    CHECK(one.approvers == std::vector<std::string>{"bob"});  // the one that counted, so far
    r.note_approve(k.carol_ssh, "o/r#1", head);
    // git itself sees a good signature by carol on the notes commit.
    test::write_allowed_signers(r.tmp / "allowed", {{"carol", &k.carol_ssh, ""}});
    CHECK(test::run(test::git_env() + "git " + test::ssh_verify_options(r.tmp / "allowed") +
                        "verify-commit refs/notes/dmz-approvals",
                    r.work)
              .exit_code == 0);
    CHECK(r.git("notes --ref=dmz-approvals show " + head) == "dmz-approve o/r#1 " + head);
    auto v = r.check("alice", head);
    CHECK_MESSAGE(v.pass, all(v.reasons));
    CHECK(v.reasons.empty());
    CHECK(v.approvers == std::vector<std::string>{"bob", "carol"});  // a tag and a note

    SUBCASE("cache: re-checking verifies no signature") {
      const auto before = r.checker->signature_verifications();
      CHECK(before == 3);  // the commit, bob's tag, carol's notes commit
      auto again = r.check("alice", head);
      CHECK(again.pass);
      CHECK(r.checker->signature_verifications() == before);
    }
  }
  SUBCASE("notes by two reviewers in two successive notes commits both count") {
    r.note_approve(k.bob_ssh, "o/r#1", head);
    std::string first = notes_tip();
    r.note_approve(k.carol_ssh, "o/r#1", head);
    CHECK(r.git("rev-parse refs/notes/dmz-approvals^") == first);
    auto v = r.check("alice", head);
    CHECK_MESSAGE(v.pass, all(v.reasons));
    CHECK(v.approvers == std::vector<std::string>{"bob", "carol"});  // two notes
    CHECK(r.checker->signature_verifications() == 3);
    CHECK(r.check("alice", head).pass);
    CHECK(r.checker->signature_verifications() == 3);
  }
  SUBCASE("a note approval by the PR's author does not count") {
    r.approve(k.bob_ssh, "bob", head);
    r.note_approve(k.alice_ssh, "o/r#1", head);
    auto v = r.check("alice", head);
    CHECK_FALSE(v.pass);
    CHECK_MESSAGE(has(v.reasons, "approval by alice does not count: alice is the PR's author"),
                  all(v.reasons));
    CHECK(has(v.reasons, "needs 2 approvals from maintainers for paths **, has 1 (bob)"));
    CHECK(v.approvers == std::vector<std::string>{"bob"});  // the author's own is not one
  }
  SUBCASE("an unsigned notes commit does not count") {
    r.approve(k.bob_ssh, "bob", head);
    std::string commit = r.unsigned_note("o/r#1", head);
    auto v = r.check("alice", head);
    CHECK_FALSE(v.pass);
    CHECK(v.approvers == std::vector<std::string>{"bob"});  // the unsigned note is not one
    CHECK_MESSAGE(
        has(v.reasons, "notes commit " + s7(commit) + " (note on " + s7(head) + ") is unsigned"),
        all(v.reasons));
    CHECK(has(v.reasons, "needs 2 approvals from maintainers for paths **, has 1 (bob)"));
  }
  SUBCASE("a notes commit signed by a key outside the policy does not count") {
    r.approve(k.bob_ssh, "bob", head);
    r.note_approve(k.stranger_ssh, "o/r#1", head);
    auto v = r.check("alice", head);
    CHECK_FALSE(v.pass);
    CHECK_MESSAGE(has_prefix(v.reasons, "notes commit " + s7(notes_tip()) + ": no-key: "),
                  all(v.reasons));
  }
  SUBCASE("a note naming another PR is refused here (no replay), and counts for that PR") {
    r.approve(k.bob_ssh, "bob", head);
    r.note_approve(k.carol_ssh, "o/r#2", head);
    auto v = r.check("alice", head);
    CHECK_FALSE(v.pass);
    CHECK_MESSAGE(has(v.reasons, "notes commit " + s7(notes_tip()) +
                                     " does not approve o/r#1: it does not add the line "
                                     "\"dmz-approve o/r#1 " +
                                     head + "\" to the note on " + s7(head)),
                  all(v.reasons));
    CHECK(has(v.reasons, "needs 2 approvals from maintainers for paths **, has 1 (bob)"));
    // The same head opened as PR 2: carol's note counts there; bob's tag names PR 1, so it
    // does not, until bob approves PR 2 too.
    auto v2 = r.check("alice", head, "feature/x", 2);
    CHECK_FALSE(v2.pass);
    CHECK_MESSAGE(has(v2.reasons, "needs 2 approvals from maintainers for paths **, has 1 (carol)"),
                  all(v2.reasons));
    r.ssh_tag(k.bob_ssh, "dmz-approve/2-bob", head);
    v2 = r.check("alice", head, "feature/x", 2);
    CHECK_MESSAGE(v2.pass, all(v2.reasons));
  }
  SUBCASE("a note naming another repository is refused") {
    r.approve(k.bob_ssh, "bob", head);
    r.note_approve(k.carol_ssh, "other/repo#1", head);
    auto v = r.check("alice", head);
    CHECK_FALSE(v.pass);
    CHECK_MESSAGE(
        has_prefix(v.reasons, "notes commit " + s7(notes_tip()) + " does not approve o/r#1: "),
        all(v.reasons));
  }
  SUBCASE("a note larger than 64 KiB is not read, and approves nothing") {
    r.approve(k.bob_ssh, "bob", head);
    // carol's signed note adds the line, after 64 KiB of padding.
    r.git("notes --ref=dmz-approvals add -m " + std::string(trust::kMaxNoteBytes, 'x') + " " +
          head);
    r.git("push -q origin refs/notes/dmz-approvals");
    r.note_approve(k.carol_ssh, "o/r#1", head);
    auto v = r.check("alice", head);
    CHECK_FALSE(v.pass);
    CHECK(v.approvers == std::vector<std::string>{"bob"});
    const std::string blob = r.git("rev-parse " + notes_tip() + ":" + head);
    CHECK_MESSAGE(has(v.reasons, "notes commit " + s7(notes_tip()) + " (note on " + s7(head) +
                                     "): note " + s7(blob) + " is larger than 65536 bytes"),
                  all(v.reasons));
    CHECK(r.checker->signature_verifications() == 2);  // the commit and bob's tag only
  }
  SUBCASE("a note approval for an older head does not count") {
    r.note_approve(k.carol_ssh, "o/r#1", head);
    std::string newer = r.commit({{"a.txt", "b\n"}}, "fixup", k.ssh(k.alice_ssh));
    r.approve(k.bob_ssh, "bob", newer);
    auto v = r.check("alice", newer);
    CHECK_FALSE(v.pass);
    CHECK_MESSAGE(has(v.reasons, "needs 2 approvals from maintainers for paths **, has 1 (bob)"),
                  all(v.reasons));
    // carol's note on the old head was not even verified: only the two commits and bob's tag.
    CHECK(r.checker->signature_verifications() == 3);
  }
}

TEST_CASE("trust: note_changes finds a note in a fanned-out notes tree") {
  auto& k = keys();
  PrRepo r;
  std::string head = r.commit({{"a.txt", "a\n"}}, "feature", k.ssh(k.alice_ssh));
  r.note_approve(k.bob_ssh, "o/r#1", head);
  // The same note moved to ab/cdef... (as git fans out a large notes tree), then changed there.
  std::string tip = r.git("rev-parse refs/notes/dmz-approvals");
  auto sh = [&](const std::string& cmd) {
    return must("export " + test::git_env() + "; " + cmd, r.work);
  };
  auto fanned = [&](const std::string& blob) {  // a notes tree holding `blob` at ab/cdef...
    std::string sub =
        sh("printf '100644 blob " + blob + "\\t" + head.substr(2) + "\\n' | git mktree");
    return sh("printf '040000 tree " + sub + "\\t" + head.substr(0, 2) + "\\n' | git mktree");
  };
  std::string moved = r.git("commit-tree -p " + tip + " -m fanout " +
                            fanned(r.git("rev-parse " + tip + ":" + head)));
  std::string changed = r.git("commit-tree -p " + moved + " -m change " +
                              fanned(sh("printf 'changed\\n' | git hash-object -w --stdin")));
  r.git("update-ref refs/notes/dmz-approvals " + changed);
  CHECK(r.git("notes --ref=dmz-approvals show " + head) == "changed");
  r.git("push -q -f origin refs/notes/dmz-approvals");
  r.fetch();

  trust::FactGatherer g;
  auto changes = g.note_changes(*r.mirror, changed, head);
  REQUIRE_MESSAGE(changes.ok(), (changes.ok() ? "" : changes.message()));
  REQUIRE(changes->size() == 2);  // the move changed nothing
  auto text = [&](const std::string& blob) { return trust::note_text(*r.mirror, blob).value(); };
  CHECK((*changes)[0].commit == tip);
  CHECK((*changes)[0].before_blob == "");
  CHECK(text((*changes)[0].after_blob) == "dmz-approve o/r#1 " + head + "\n");
  CHECK((*changes)[1].commit == changed);
  CHECK(text((*changes)[1].before_blob) == "dmz-approve o/r#1 " + head + "\n");
  CHECK(text((*changes)[1].after_blob) == "changed\n");
  auto bounded = g.note_changes(*r.mirror, changed, head, 1);  // only the newest commit
  REQUIRE(bounded.ok());
  REQUIRE(bounded->size() == 1);
  CHECK((*bounded)[0].commit == changed);
  auto other = g.note_changes(*r.mirror, changed, r.master);
  REQUIRE(other.ok());
  CHECK(other->empty());
}

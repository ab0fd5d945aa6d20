// `dmzbot verify` run in process on real repositories with real signatures: exit codes 0/1/2,
// the text lines and the JSON.
#include "bot/trust/verify_command.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "bot/trust/test_fixture.hpp"

using namespace dmz;
using namespace dmz::trust_test;
using dmz::test::TempDir;

namespace {

struct Ran {
  int code = -1;
  std::string out, err;
  std::vector<std::string> lines;
};

// Runs run_verify with stdout and stderr captured in files.
Ran verify(const VerifyOptions& options) {
  TempDir dir;
  std::fflush(stdout);
  std::fflush(stderr);
  int saved_out = ::dup(1), saved_err = ::dup(2);
  int out = ::open((dir / "out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  int err = ::open((dir / "err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ::dup2(out, 1);
  ::dup2(err, 2);
  Ran r;
  r.code = run_verify(options);
  std::fflush(stdout);
  std::fflush(stderr);
  ::dup2(saved_out, 1);
  ::dup2(saved_err, 2);
  for (int fd : {out, err, saved_out, saved_err}) ::close(fd);
  r.out = test::read_file(dir / "out");
  r.err = test::read_file(dir / "err");
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) r.lines.push_back(line);
  return r;
}

VerifyOptions opts(const Repo& r, const std::string& range, bool json = false) {
  VerifyOptions o;
  o.repo = r.work.string();
  o.range = range;
  o.json = json;
  return o;
}

std::string s7(const std::string& sha) { return sha.substr(0, 7); }

// A branch side/y off HEAD with one commit signed by `sign`, merged back with --no-ff by git
// (no commit yet when `edit` is set: the caller changes the tree first). Returns the side commit.
std::string side_commit(Repo& r, const std::string& name, const SignFn& sign) {
  r.git("checkout -q -b " + name);
  std::string c = r.commit({{name + ".txt", "side\n"}}, "side work", sign);
  r.git("checkout -q master");
  return c;
}

}  // namespace

TEST_CASE("verify: a signed history passes, as text and JSON") {
  auto& k = keys();
  Repo r(policy_files(k.policy()));
  std::string c1 = r.commit({{"a.txt", "a\n"}}, "alice's work", k.ssh(k.alice_ssh));
  std::string c2 = side_commit(r, "side", k.ssh(k.bob_ssh));
  std::string c3 = r.commit({{"c.txt", "c\n"}}, "carol's work", k.openpgp(k.gpg.alice));
  r.git("merge -q --no-ff -m 'Merge side' side");
  std::string merge = r.sign_head(k.ssh(k.bot_ssh));

  Ran ran = verify(opts(r, r.root + "..master"));
  CHECK_MESSAGE(ran.code == 0, (ran.out + ran.err));
  REQUIRE(ran.lines.size() == 4);
  CHECK(ran.lines.front() == s7(c1) + " pass alice");
  CHECK(ran.lines.back() == s7(merge) + " pass dmzbot");
  CHECK(std::find(ran.lines.begin(), ran.lines.end(), s7(c2) + " pass bob") != ran.lines.end());
  CHECK(std::find(ran.lines.begin(), ran.lines.end(), s7(c3) + " pass alice") != ran.lines.end());

  Ran json = verify(opts(r, r.root + "..master", true));
  CHECK(json.code == 0);
  auto doc = nlohmann::json::parse(json.out);
  REQUIRE(doc.is_array());
  REQUIRE(doc.size() == 4);
  CHECK(doc[0]["sha"] == c1);
  CHECK(doc[0]["verdict"] == "pass");
  CHECK(doc[0]["signer"] == "alice");
  CHECK(doc[0]["reasons"].empty());
}

TEST_CASE("verify: violations are exit 1 with their reasons") {
  auto& k = keys();
  Repo r(policy_files(k.policy()));

  SUBCASE("unsigned commit, and a good one after it") {
    std::string bad = r.commit({{"a.txt", "a\n"}}, "x", nullptr);
    std::string good = r.commit({{"b.txt", "b\n"}}, "y", k.ssh(k.carol_ssh));
    Ran ran = verify(opts(r, r.root + "..master"));
    CHECK(ran.code == 1);
    REQUIRE(ran.lines.size() == 2);
    CHECK(ran.lines[0] == s7(bad) + " FAIL - commit " + s7(bad) + " is unsigned");
    CHECK(ran.lines[1] == s7(good) + " pass carol");
    Ran json = verify(opts(r, r.root + "..master", true));
    CHECK(json.code == 1);
    auto doc = nlohmann::json::parse(json.out);
    CHECK(doc[0]["verdict"] == "fail");
    CHECK(doc[0]["signer"].is_null());
    CHECK(doc[0]["reasons"][0] == "commit " + s7(bad) + " is unsigned");
  }
  SUBCASE("an evil merge signed by the bot fails; signed by a conflict resolver it passes") {
    side_commit(r, "side", k.ssh(k.bob_ssh));
    r.git("merge -q --no-ff --no-commit side");
    test::write_file(r.work / "sneaky.txt", "not in any PR\n");
    r.git("add sneaky.txt");
    r.git("commit -q -m 'Merge side'");
    std::string evil = r.sign_head(k.ssh(k.bot_ssh));
    Ran ran = verify(opts(r, "HEAD^..HEAD"));
    CHECK(ran.code == 1);
    // HEAD^..HEAD is the merge and the side commit.
    REQUIRE(ran.lines.size() == 2);
    CHECK(ran.lines[1] == s7(evil) + " FAIL dmzbot merge commit " + s7(evil) +
                              " resolves conflicts but is signed by dmzbot, who is not in group "
                              "maintainers; evil merge: tree differs from the recomputed merge of "
                              "its parents");

    r.git("reset -q --hard HEAD^");
    r.git("merge -q --no-ff --no-commit side");
    test::write_file(r.work / "resolved.txt", "by hand\n");
    r.git("add resolved.txt");
    r.git("commit -q -m 'Merge side, resolved'");
    std::string resolved = r.sign_head(k.ssh(k.alice_ssh));
    Ran ok = verify(opts(r, "HEAD^..HEAD"));
    CHECK_MESSAGE(ok.code == 0, ok.out);
    CHECK(ok.lines.back() == s7(resolved) + " pass alice");
  }
  SUBCASE("a policy change is judged by its parent's policy, later commits by the new one") {
    std::string change = r.commit({{".dmz/policy.toml", k.policy(", \"mallory\"", 0)}},
                                  "add mallory", k.ssh(k.mallory_ssh));
    std::string after = r.commit({{"m.txt", "m\n"}}, "mallory's work", k.ssh(k.mallory_ssh));
    Ran ran = verify(opts(r, r.root + "..master"));
    CHECK(ran.code == 1);
    REQUIRE(ran.lines.size() == 2);
    CHECK(ran.lines[0] == s7(change) + " FAIL mallory commit " + s7(change) +
                              " is signed by mallory, who is not in group developers");
    CHECK(ran.lines[1] == s7(after) + " pass mallory");
  }
  SUBCASE("a PR's commits are judged by the policy of the branch it was merged into") {
    // The PR adds mallory (alice signs that), then mallory signs on the PR's own branch: the
    // gate judged both under master's policy, and so does the audit, whatever the PR proposed.
    r.git("checkout -q -b pr");
    std::string change = r.commit({{".dmz/policy.toml", k.policy(", \"mallory\"", 0)}},
                                  "add mallory", k.ssh(k.alice_ssh));
    std::string sneaky = r.commit({{"m.txt", "m\n"}}, "mallory's work", k.ssh(k.mallory_ssh));
    r.git("checkout -q master");
    r.git("merge -q --no-ff -m 'Merge pr' pr");
    std::string merge = r.sign_head(k.ssh(k.bot_ssh));
    // Once merged, the policy is master's: mallory may sign on master now.
    std::string after = r.commit({{"n.txt", "n\n"}}, "mallory on master", k.ssh(k.mallory_ssh));
    Ran ran = verify(opts(r, r.root + "..master"));
    CHECK(ran.code == 1);
    REQUIRE(ran.lines.size() == 4);
    std::map<std::string, std::string> by_sha;
    for (const auto& line : ran.lines) by_sha[line.substr(0, 7)] = line;
    CHECK(by_sha[s7(change)] == s7(change) + " pass alice");
    CHECK(by_sha[s7(sneaky)] == s7(sneaky) + " FAIL mallory commit " + s7(sneaky) +
                                    " is signed by mallory, who is not in group developers");
    CHECK(by_sha[s7(merge)] == s7(merge) + " pass dmzbot");
    CHECK(by_sha[s7(after)] == s7(after) + " pass mallory");
  }
  SUBCASE("a committed policy that does not parse fails the commits it judges") {
    std::string broken =
        r.commit({{".dmz/policy.toml", "version = 2\n"}}, "oops", k.ssh(k.alice_ssh));
    std::string next = r.commit({{"n.txt", "n\n"}}, "next", k.ssh(k.alice_ssh));
    Ran ran = verify(opts(r, r.root + "..master"));
    CHECK(ran.code == 1);
    REQUIRE(ran.lines.size() == 2);
    CHECK(ran.lines[0] == s7(broken) + " pass alice");
    CHECK(ran.lines[1].rfind(s7(next) + " FAIL - the policy at " + s7(broken) +
                                 " does not parse; .dmz/policy.toml@" + s7(broken) + ":1: ",
                             0) == 0);
  }
  SUBCASE("a commit with no policy in force, and --policy as the trust root") {
    Ran ran = verify(opts(r, "master"));
    CHECK(ran.code == 1);
    REQUIRE(ran.lines.size() == 1);
    CHECK(ran.lines[0] == s7(r.root) + " FAIL - no policy in force");

    TempDir etc;
    test::write_file(etc / "policy.toml", k.policy());
    VerifyOptions o = opts(r, "master");
    o.policy = (etc / "policy.toml").string();
    Ran rooted = verify(o);
    CHECK(rooted.code == 1);
    REQUIRE(rooted.lines.size() == 1);
    CHECK(rooted.lines[0] == s7(r.root) + " FAIL - commit " + s7(r.root) + " is unsigned");
  }
}

TEST_CASE("verify: a commit git accepts but dmzbot refuses fails, and the range goes on") {
  auto& k = keys();
  Repo r(policy_files(k.policy()));
  std::string before = r.commit({{"a.txt", "a\n"}}, "before", k.ssh(k.alice_ssh));
  std::string odd = r.commit({{"b.txt", "b\n"}}, "odd", k.ssh(k.alice_ssh), gpgsig_before_author);
  std::string after = r.commit({{"c.txt", "c\n"}}, "after", k.ssh(k.bob_ssh));
  // git reads the odd commit, and its signature is good to git.
  test::write_allowed_signers(r.tmp / "allowed", {{"alice", &k.alice_ssh, ""}});
  CHECK(test::run(test::git_env() + "git " + test::ssh_verify_options(r.tmp / "allowed") +
                      "verify-commit " + odd,
                  r.work)
            .exit_code == 0);
  const std::string refused = s7(odd) + " FAIL - commit " + s7(odd) +
                              ": bad-header: gpgsig header before the author header";

  Ran ran = verify(opts(r, r.root + "..master"));
  CHECK_MESSAGE(ran.code == 1, ran.err);
  CHECK(ran.err.empty());
  CHECK(ran.lines ==
        std::vector<std::string>{s7(before) + " pass alice", refused, s7(after) + " pass bob"});
  Ran json = verify(opts(r, r.root + "..master", true));
  CHECK(json.code == 1);
  auto doc = nlohmann::json::parse(json.out);
  REQUIRE(doc.size() == 3);
  CHECK(doc[1]["sha"] == odd);
  CHECK(doc[1]["verdict"] == "fail");
  CHECK(doc[1]["signer"].is_null());
  CHECK(doc[1]["reasons"] == nlohmann::json::array({"commit " + s7(odd) +
                                                    ": bad-header: gpgsig header before the "
                                                    "author header"}));

  // The odd commit as the tip (by branch name and by sha) and as the excluded end.
  r.git("branch odd " + odd);
  Ran tip = verify(opts(r, before + "..odd"));
  CHECK_MESSAGE(tip.code == 1, tip.err);
  CHECK(tip.lines == std::vector<std::string>{refused});
  CHECK(verify(opts(r, before + ".." + odd)).lines == std::vector<std::string>{refused});
  Ran excluded = verify(opts(r, "odd..master"));
  CHECK_MESSAGE(excluded.code == 0, excluded.err);
  CHECK(excluded.lines == std::vector<std::string>{s7(after) + " pass bob"});
}

TEST_CASE("verify: a committed policy that is not a regular file fails the commits it judges") {
  auto& k = keys();
  Repo r(policy_files(k.policy()));
  std::filesystem::remove(r.work / ".dmz" / "policy.toml");
  std::string change, kind;
  SUBCASE("a directory") {
    change = r.commit({{".dmz/policy.toml/x", "x\n"}}, "a directory", k.ssh(k.alice_ssh));
    kind = "a directory";
  }
  SUBCASE("a submodule") {
    r.git("rm -q --cached .dmz/policy.toml");
    r.git("update-index --add --cacheinfo 160000," + r.root + ",.dmz/policy.toml");
    r.git("commit -q -m 'a submodule'");
    change = r.sign_head(k.ssh(k.alice_ssh));
    kind = "a submodule";
  }
  SUBCASE("a symlink to a good policy is refused, not followed") {
    std::filesystem::create_symlink("real.toml", r.work / ".dmz" / "policy.toml");
    change = r.commit({{".dmz/real.toml", k.policy()}}, "a symlink", k.ssh(k.alice_ssh));
    kind = "a symlink";
  }
  std::string next = r.commit({{"n.txt", "n\n"}}, "next", k.ssh(k.alice_ssh));
  Ran ran = verify(opts(r, r.root + "..master"));
  CHECK_MESSAGE(ran.code == 1, ran.err);
  CHECK(ran.err.empty());
  CHECK(ran.lines ==
        std::vector<std::string>{s7(change) + " pass alice",
                                 s7(next) + " FAIL - .dmz/policy.toml at " + s7(change) +
                                     " is not a regular file (" + kind + ")"});
}

TEST_CASE("verify: a change to a path no rule covers fails, as the gate fails it") {
  auto& k = keys();
  std::string policy = k.policy();
  const std::string all_paths = "paths = [\"**\"]";
  policy.replace(policy.find(all_paths), all_paths.size(), "paths = [\"src/**\"]");
  Repo r(policy_files(policy));
  std::string covered = r.commit({{"src/a.cpp", "a\n"}}, "covered", k.ssh(k.alice_ssh));
  std::string mixed =
      r.commit({{"src/b.cpp", "b\n"}, {"docs/x.md", "x\n"}}, "mixed", k.ssh(k.alice_ssh));
  std::string outside = r.commit({{"README", "changed\n"}}, "outside", k.ssh(k.alice_ssh));
  Ran ran = verify(opts(r, r.root + "..master"));
  CHECK(ran.code == 1);
  CHECK(ran.lines == std::vector<std::string>{
                         s7(covered) + " pass alice",
                         s7(mixed) + " FAIL alice no rule for branch master covers docs/x.md",
                         s7(outside) + " FAIL alice no rule for branch master covers README"});
}

TEST_CASE("verify: a reason that echoes control characters stays on its line") {
  auto& k = keys();
  Repo r(policy_files(k.policy()));
  // A committed policy whose problem echoes a newline and an escape sequence.
  std::string bad = r.commit({{".dmz/policy.toml", "version = 1\n\"x\\ny\\u001b[2J\" = 1\n"}},
                             "bad policy", k.ssh(k.alice_ssh));
  std::string next = r.commit({{"n.txt", "n\n"}}, "next", k.ssh(k.alice_ssh));
  Ran ran = verify(opts(r, bad + "..master"));
  CHECK(ran.code == 1);
  REQUIRE(ran.lines.size() == 1);
  CHECK(ran.lines[0] == s7(next) + " FAIL - the policy at " + s7(bad) +
                            " does not parse; .dmz/policy.toml@" + s7(bad) +
                            ":1: no [[rule]]: every pull request would be refused; "
                            ".dmz/policy.toml@" +
                            s7(bad) + ":2: unknown key 'x\\ny\\x1b[2J' in the policy");
}

TEST_CASE("verify: usage and I/O errors are exit 2") {
  auto& k = keys();
  Repo r(policy_files(k.policy()));
  TempDir nowhere;

  VerifyOptions o = opts(r, "master");
  o.repo = (nowhere / "missing").string();
  Ran bad_repo = verify(o);
  CHECK(bad_repo.code == 2);
  CHECK(bad_repo.err.rfind("dmzbot verify: ", 0) == 0);

  Ran bad_range = verify(opts(r, "nope..master"));
  CHECK(bad_range.code == 2);
  CHECK(bad_range.err.find("nope") != std::string::npos);
  CHECK(verify(opts(r, "..master")).code == 2);
  CHECK(verify(opts(r, "")).code == 2);

  o = opts(r, "master");
  o.policy = (nowhere / "policy.toml").string();
  Ran bad_policy = verify(o);
  CHECK(bad_policy.code == 2);
  CHECK(bad_policy.err ==
        "dmzbot verify: '" + (nowhere / "policy.toml").string() + "' does not exist\n");
  CHECK(bad_policy.out.empty());

  // A reversed or empty range says so.
  for (const std::string& range : {"master.." + r.root, std::string("master..master")}) {
    for (bool json : {false, true}) {
      Ran empty = verify(opts(r, range, json));
      CHECK(empty.code == 2);
      CHECK(empty.out.empty());
      CHECK(empty.err == "dmzbot verify: the range " + range + " is empty\n");
    }
  }

  test::write_file(nowhere / "broken.toml", "version = 2\n");
  o.policy = (nowhere / "broken.toml").string();
  Ran broken = verify(o);
  CHECK(broken.code == 2);
  CHECK(broken.err.find("broken.toml:1: ") != std::string::npos);
}

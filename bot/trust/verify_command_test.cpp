// `dmzbot verify` run in process on real repositories with real signatures: exit codes 0/1/2,
// the text lines and the JSON.
#include "bot/trust/verify_command.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
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
  CHECK(bad_policy.err.find("cannot read") != std::string::npos);

  test::write_file(nowhere / "broken.toml", "version = 2\n");
  o.policy = (nowhere / "broken.toml").string();
  Ran broken = verify(o);
  CHECK(broken.code == 2);
  CHECK(broken.err.find("broken.toml:1: ") != std::string::npos);
}

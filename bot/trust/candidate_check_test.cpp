#include "bot/trust/candidate_check.hpp"

#include <doctest/doctest.h>

#include "bot/git/mirror.hpp"
#include "bot/trust/test_fixture.hpp"
#include "tests/support.hpp"

namespace dmz {
namespace {

using test::must;

// A bare origin with master and a mirror of it; `work` commits and pushes.
struct Fixture {
  test::TempDir dir;
  std::filesystem::path origin = dir / "origin.git", work = dir / "work";
  std::string base;
  std::unique_ptr<git::Mirror> mirror;

  Fixture() {
    git::init();
    must("git init -q --bare -b master " + origin.string());
    base = test::init_repo(work, {{"a.txt", "a\n"}});
    must(test::git_env() + "git remote add origin " + origin.string(), work);
    must(test::git_env() + "git checkout -q -b feature/x && " + test::git_env() +
             "git commit -q --allow-empty -m x && " + test::git_env() + "git checkout -q master",
         work);
  }
  // Pushes `ref` and fetches it into the mirror.
  void publish(const std::string& ref) {
    must(test::git_env() + "git push -q -f origin " + ref, work);
    auto m = git::Mirror::open(dir / "mirror.git", origin.string());
    REQUIRE(m.ok());
    mirror = std::move(*m);
    REQUIRE(mirror->fetch().ok());
  }
};

config::Repo no_policy() {
  config::Repo repo;
  repo.name = "acme/widget";
  return repo;
}

TEST_CASE("an honest merge passes without a policy; an evil merge never does") {
  Fixture f;
  must(test::git_env() + "git merge -q --no-ff -m honest feature/x", f.work);
  std::string honest = must("git rev-parse HEAD", f.work);
  // The same merge with a tree that differs from the merge of its parents.
  test::write_file(f.work / "backdoor.txt", "x\n");
  must(test::git_env() + "git add backdoor.txt && " + test::git_env() +
           "git commit -q --amend -m evil",
       f.work);
  std::string evil = must("git rev-parse HEAD", f.work);
  must(test::git_env() + "git branch -f honest " + honest, f.work);
  f.publish("honest");
  f.publish("master");
  CandidateChecker checker(no_policy());
  auto ok = checker.check(*f.mirror, queue::CheckCandidate{1, honest, f.base}, 7);
  CHECK(ok.pass);
  CHECK(ok.reasons.empty());
  CHECK(ok.culprits.empty());
  CHECK(ok.candidate == 1);
  CHECK(ok.at == 7);
  auto bad = checker.check(*f.mirror, queue::CheckCandidate{2, evil, f.base}, 7);
  CHECK_FALSE(bad.pass);
  REQUIRE(bad.reasons.size() == 1);
  CHECK(bad.reasons[0] ==
        "evil merge: " + evil.substr(0, 7) + "'s tree differs from the merge of its parents");
  // The reason is about the PR the evil merge merged.
  const std::string feature = must("git rev-parse feature/x", f.work);
  CHECK(bad.culprits == std::vector<std::string>{feature});

  // In a batch, only the merge that is wrong names its PR.
  must(test::git_env() + "git checkout -q -b feature/y " + f.base + " && " + test::git_env() +
           "git commit -q --allow-empty -m y && " + test::git_env() + "git checkout -q master",
       f.work);
  const std::string y = must("git rev-parse feature/y", f.work);
  must(test::git_env() + "git reset -q --hard " + honest + " && " + test::git_env() +
           "git merge -q --no-ff -m second feature/y",
       f.work);
  const std::string second = must("git rev-parse HEAD", f.work);
  test::write_file(f.work / "backdoor.txt", "x\n");
  must(test::git_env() + "git add backdoor.txt && " + test::git_env() +
           "git commit -q --amend -m evil-second",
       f.work);
  const std::string evil_second = must("git rev-parse HEAD", f.work);
  must(test::git_env() + "git branch -f batch " + evil_second, f.work);
  f.publish("batch");
  f.publish("master");
  auto batch = checker.check(*f.mirror, queue::CheckCandidate{3, evil_second, f.base}, 7);
  CHECK_FALSE(batch.pass);
  CHECK(batch.reasons.size() == 1);
  CHECK(batch.culprits == std::vector<std::string>{y});
  CHECK(second != evil_second);
}

TEST_CASE("a merge that changes .dmz/ beyond its PR's own changes is refused") {
  Fixture f;
  const std::string text = "line 1\nline 2\nline 3\nline 4\nline 5\nline 6\n";
  const std::string before = test::commit_files(f.work, {{"x.txt", text}}, "x");
  // master moves x.txt into the policy's keys; a PR made before that edits x.txt.
  must(test::git_env() + "git checkout -q -b pr", f.work);
  const std::string pr =
      test::commit_files(f.work, {{"x.txt", "line 1\nline 2 edited\n" + text.substr(14)}}, "edit");
  must(test::git_env() + "git checkout -q master && mkdir -p .dmz/keys && " + test::git_env() +
           "git mv x.txt .dmz/keys/k.asc && " + test::git_env() + "git commit -q -m move",
       f.work);
  const std::string master = must("git rev-parse HEAD", f.work).substr(0, 40);
  f.publish("pr");
  f.publish("master");
  // dmzbot's merge (libgit2, renames found) carries the PR's edit into .dmz/keys/k.asc.
  auto merged = f.mirror->merge(master, pr, "Merge PR #1\n", {});
  REQUIRE(merged);
  REQUIRE(merged->clean);
  CandidateChecker checker(no_policy());
  auto v = checker.check(*f.mirror, queue::CheckCandidate{1, merged->commit, master}, 0);
  CHECK_FALSE(v.pass);
  REQUIRE(v.reasons.size() == 1);
  CHECK(v.reasons[0] == "merge " + merged->commit.substr(0, 7) +
                            " changes .dmz/ although its pull request's changes do not (a file "
                            "master moved there?): rebase the pull request");
  CHECK(v.culprits == std::vector<std::string>{pr});
  // A PR whose own changes are in .dmz/ is a policy change the gate judged as one: it passes.
  must(test::git_env() + "git checkout -q -b keys " + before, f.work);
  const std::string keys = test::commit_files(f.work, {{".dmz/keys/b.asc", "b\n"}}, "key");
  f.publish("keys");
  auto own = f.mirror->merge(master, keys, "Merge PR #2\n", {});
  REQUIRE(own);
  REQUIRE(own->clean);
  CHECK(checker.check(*f.mirror, queue::CheckCandidate{2, own->commit, master}, 0).pass);
}

TEST_CASE("a merge that changes a path beyond its PR's own changes is refused") {
  Fixture f;
  const std::string text = "line 1\nline 2\nline 3\nline 4\nline 5\nline 6\n";
  const std::string before =
      test::commit_files(f.work, {{"scripts/x.sh", text}, {"notes.txt", text}}, "x");
  auto branch = [&](const std::string& name,
                    const std::vector<std::pair<std::string, std::string>>& files) {
    must(test::git_env() + "git checkout -q -b " + name + " " + before, f.work);
    const std::string head = test::commit_files(f.work, files, name);
    must(test::git_env() + "git checkout -q master", f.work);
    f.publish(name);
    return head;
  };
  const std::string edited = "line 1\nline 2 edited\n" + text.substr(14);
  // A PR made before master moved scripts/x.sh to deploy/x.sh (a path with stricter rules)
  // edits scripts/x.sh: it was judged by the rules of scripts/, not of deploy/.
  const std::string pr = branch("pr", {{"scripts/x.sh", edited}});
  test::commit_files(f.work, {{"notes.txt", text.substr(0, 28) + "line 5 on master\nline 6\n"}},
                     "master's edit");
  must("mkdir deploy && " + test::git_env() + "git mv scripts/x.sh deploy/x.sh && " +
           test::git_env() + "git commit -q -m move",
       f.work);
  const std::string master = must("git rev-parse HEAD", f.work).substr(0, 40);
  f.publish("master");
  CandidateChecker checker(no_policy());
  auto merge = [&](const std::string& head) {
    auto merged = f.mirror->merge(master, head, "Merge\n", {});
    REQUIRE(merged);
    REQUIRE(merged->clean);
    return merged->commit;
  };
  const std::string carried = merge(pr);
  CHECK(f.mirror->read_file(carried, "deploy/x.sh").value() == edited);  // libgit2's renames
  auto v = checker.check(*f.mirror, queue::CheckCandidate{1, carried, master}, 0);
  CHECK_FALSE(v.pass);
  CHECK(v.reasons == std::vector<std::string>{
                         "merge " + carried.substr(0, 7) +
                         " changes deploy/x.sh although its pull request's changes do not (a file "
                         "master moved there?): rebase the pull request"});
  CHECK(v.culprits == std::vector<std::string>{pr});

  // An honest merge changes only what its PR changes.
  const std::string honest = branch("honest", {{"b.txt", "b\n"}, {"notes.txt", edited}});
  CHECK(checker.check(*f.mirror, queue::CheckCandidate{2, merge(honest), master}, 0).pass);
  // A PR that renames a file itself: master's edit follows it, both paths are the PR's own.
  must(test::git_env() + "git checkout -q -b renames " + before + " && " + test::git_env() +
           "git mv notes.txt renamed.txt && " + test::git_env() + "git commit -q -m rename && " +
           test::git_env() + "git checkout -q master",
       f.work);
  f.publish("renames");
  const std::string renames = must("git rev-parse renames", f.work).substr(0, 40);
  auto own = checker.check(*f.mirror, queue::CheckCandidate{3, merge(renames), master}, 0);
  CHECK_MESSAGE(own.pass, (own.reasons.empty() ? "" : own.reasons[0]));
}

TEST_CASE("a commit on dmz that is not a merge is refused") {
  Fixture f;
  std::string plain = test::commit_files(f.work, {{"b.txt", "b\n"}}, "direct commit");
  f.publish("master");
  CandidateChecker checker(no_policy());
  auto r = checker.check(*f.mirror, queue::CheckCandidate{1, plain, f.base}, 0);
  CHECK_FALSE(r.pass);
  REQUIRE(r.reasons.size() == 1);
  CHECK(r.reasons[0] == "commit " + plain.substr(0, 7) + " on dmz is not a merge dmzbot wrote");
}

TEST_CASE("a commit git accepts but dmzbot refuses fails the candidate with its reason") {
  using namespace trust_test;
  auto& k = keys();
  Repo r(std::vector<std::pair<std::string, std::string>>{{"a.txt", "a\n"}});
  r.fetch_with_git = true;
  r.git("checkout -q -b feature/x");
  // Signed, then its gpgsig header moved before author: git reads it, libgit2 refuses it.
  std::string odd = r.commit({{"b.txt", "b\n"}}, "odd", k.ssh(k.alice_ssh), gpgsig_before_author);
  r.git("checkout -q master");
  const std::string odd_reason =
      "commit " + odd.substr(0, 7) + ": bad-header: gpgsig header before the author header";
  CandidateChecker checker(no_policy());

  SUBCASE("the PR head a merge brings in") {
    r.git("merge -q --no-ff -m merge feature/x");
    std::string merge = r.git("rev-parse HEAD");
    r.fetch();
    auto v = checker.check(*r.mirror, queue::CheckCandidate{1, merge, r.root}, 0);
    CHECK_FALSE(v.pass);
    CHECK(v.reasons == std::vector<std::string>{odd_reason});
  }
  SUBCASE("the candidate's own merge") {
    r.git("merge -q --no-ff -m merge feature/x");
    std::string merge = r.sign_head(k.ssh(k.bot_ssh));
    std::string bytes = gpgsig_before_author(r.cat("commit", merge));
    std::string odd_merge = r.store("commit", bytes);
    r.git("update-ref HEAD " + odd_merge);
    r.fetch();
    auto v = checker.check(*r.mirror, queue::CheckCandidate{1, odd_merge, r.root}, 0);
    CHECK_FALSE(v.pass);
    CHECK(v.reasons == std::vector<std::string>{"commit " + odd_merge.substr(0, 7) +
                                                ": bad-header: gpgsig header before the author "
                                                "header"});
  }
}

// A feature branch off master, merged into it (no fast-forward) and fetched: the merge.
std::string merge_a_feature(trust_test::Repo& r) {
  r.git("checkout -q -b feature/x");
  r.commit({{"b.txt", "b\n"}}, "feature", nullptr);
  r.git("checkout -q master");
  r.git("merge -q --no-ff -m merge feature/x");
  std::string merge = r.git("rev-parse HEAD");
  r.fetch();
  return merge;
}

TEST_CASE("a policy path that is not a regular file fails the candidate, closed") {
  using namespace trust_test;
  Repo r(std::vector<std::pair<std::string, std::string>>{{".dmz/policy.toml/x", "x\n"}});
  const std::string merge = merge_a_feature(r);
  CandidateChecker checker(no_policy());
  auto v = checker.check(*r.mirror, queue::CheckCandidate{1, merge, r.root}, 0);
  CHECK_FALSE(v.pass);
  CHECK(v.reasons == std::vector<std::string>{".dmz/policy.toml at " + r.root.substr(0, 7) +
                                              " is not a regular file (a directory)"});
}

TEST_CASE("a .dmz that is not a directory fails the candidate, closed") {
  using namespace trust_test;
  Repo r(std::vector<std::pair<std::string, std::string>>{{"a.txt", "a\n"}});
  std::filesystem::remove_all(r.work / ".dmz");
  const std::string base = r.commit({{".dmz", "version = 1\n"}}, ".dmz as a file", nullptr);
  const std::string merge = merge_a_feature(r);
  CandidateChecker checker(no_policy());
  auto v = checker.check(*r.mirror, queue::CheckCandidate{1, merge, base}, 0);
  CHECK_FALSE(v.pass);
  CHECK(v.reasons == std::vector<std::string>{".dmz at " + base.substr(0, 7) +
                                              " is not a directory (a regular file)"});
}

}  // namespace
}  // namespace dmz

#include "bot/trust/candidate_check.hpp"

#include <doctest/doctest.h>

#include "bot/git/mirror.hpp"
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
  CHECK(ok.candidate == 1);
  CHECK(ok.at == 7);
  auto bad = checker.check(*f.mirror, queue::CheckCandidate{2, evil, f.base}, 7);
  CHECK_FALSE(bad.pass);
  REQUIRE(bad.reasons.size() == 1);
  CHECK(bad.reasons[0] ==
        "evil merge: " + evil.substr(0, 7) + "'s tree differs from the merge of its parents");
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

}  // namespace
}  // namespace dmz

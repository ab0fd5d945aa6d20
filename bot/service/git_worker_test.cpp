#include "bot/service/git_worker.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "base/clock.hpp"
#include "bot/git/mirror.hpp"
#include "bot/trust/signing.hpp"
#include "tests/support.hpp"

namespace dmz {

namespace {

namespace fs = std::filesystem;
using test::git_env;
using test::must;
using test::shell_quote;

// A remote with master and a feature branch, a mirror of it, and a worker over the mirror.
struct Worker {
  test::TempDir tmp;
  fs::path work = tmp / "work";
  fs::path origin = tmp / "origin.git";
  std::string master, feature;
  ManualClock clock;
  std::unique_ptr<GitWorker> worker;

  explicit Worker(std::unique_ptr<Signer> signer = nullptr) {
    git::init();
    master = test::init_repo(work, {{"README", "hello\n"}});
    must(git_env() + "git init -q --bare -b master " + shell_quote(origin.string()));
    must(git_env() + "git remote add origin " + shell_quote(origin.string()), work);
    must(git_env() + "git push -q origin master", work);
    must(git_env() + "git checkout -q -b feature", work);
    feature = test::commit_files(work, {{"feature.txt", "new\n"}}, "Add a feature");
    must(git_env() + "git push -q origin feature", work);
    auto mirror = git::Mirror::open(tmp / "mirror.git", origin.string());
    REQUIRE_MESSAGE(mirror.ok(), (mirror.ok() ? "" : mirror.message()));
    config::Repo repo;
    repo.name = "acme/app";
    worker = std::make_unique<GitWorker>(repo, config::Signing{}, std::move(*mirror),
                                         std::move(signer), clock);
    REQUIRE(worker->fetch().ok());
  }

  queue::MergeDone build(queue::CandidateId id, std::vector<queue::MergeItem> items) {
    return worker->build_candidate(queue::BuildCandidate{id, master, std::move(items)});
  }
};

// A signer whose key is gone (an agent down, a key expired): dmzbot's failure, no PR's.
class BrokenSigner : public Signer {
 public:
  Result<std::string> sign(std::string_view) override { return error("no secret key"); }
};

queue::MergeItem item(int number, const std::string& head) {
  return {number, head, "feature/" + std::to_string(number), "T", "dev", "mm"};
}

}  // namespace

TEST_CASE("GitWorker: a head git cannot merge is blamed on its PR; a failed push on nobody") {
  Worker w;
  SUBCASE("a head that is not a commit") {
    const std::string blob = must(git_env() + "git rev-parse master:README", w.work);
    auto done = w.build(1, {item(1, w.feature), item(2, blob)});
    CHECK(done.outcome == queue::MergeOutcome::Error);
    CHECK(done.culprit == 2);
    CHECK(done.message.find(blob) != std::string::npos);
  }
  SUBCASE("a head the mirror does not have") {
    const std::string missing(40, 'e');
    auto done = w.build(1, {item(3, missing)});
    CHECK(done.outcome == queue::MergeOutcome::Error);
    CHECK(done.culprit == 3);
  }
  SUBCASE("a head the mirror does not have while the remote is out of reach: nobody's fault") {
    fs::rename(w.origin, w.tmp / "gone.git");
    REQUIRE_FALSE(w.worker->fetch().ok());
    const std::string missing(40, 'e');
    auto done = w.build(1, {item(1, w.feature), item(3, missing)});
    CHECK(done.outcome == queue::MergeOutcome::Error);
    CHECK(done.culprit == 0);
    CHECK(done.message.find(missing) != std::string::npos);
    CHECK(done.message.find("cannot be fetched") != std::string::npos);
    fs::rename(w.tmp / "gone.git", w.origin);  // back, and fetched: the missing head is its PR's
    REQUIRE(w.worker->fetch().ok());
    CHECK(w.build(2, {item(3, missing)}).culprit == 3);
  }
  SUBCASE("the remote refuses the push: nobody's fault") {
    fs::rename(w.origin, w.tmp / "gone.git");
    auto done = w.build(1, {item(1, w.feature)});
    CHECK(done.outcome == queue::MergeOutcome::Error);
    CHECK(done.culprit == 0);
    CHECK_FALSE(done.message.empty());
  }
  SUBCASE("a clean merge") {
    auto done = w.build(1, {item(1, w.feature)});
    CHECK(done.outcome == queue::MergeOutcome::Merged);
    CHECK(done.culprit == 0);
    CHECK(must("git -C " + shell_quote(w.origin.string()) + " rev-parse dmz") == done.sha);
  }
}

TEST_CASE("GitWorker: a merge the signer cannot sign is nobody's fault") {
  Worker w(std::make_unique<BrokenSigner>());
  auto done = w.build(1, {item(1, w.feature)});
  CHECK(done.outcome == queue::MergeOutcome::Error);
  CHECK(done.culprit == 0);
  CHECK(done.message.find("sign: no secret key") != std::string::npos);
}

TEST_CASE("GitWorker: a try of a head the remote cannot give is unavailable, not a failure") {
  Worker w;
  fs::rename(w.origin, w.tmp / "gone.git");
  REQUIRE_FALSE(w.worker->fetch().ok());
  auto tried = w.worker->try_build(3, std::string(40, 'e'), w.master, "dmz-try/3");
  REQUIRE_FALSE(tried.ok());
  CHECK(tried.code() == Code::kUnavailable);
  CHECK(tried.message().find("cannot be fetched") != std::string::npos);
  fs::rename(w.tmp / "gone.git", w.origin);
  REQUIRE(w.worker->fetch().ok());
  auto missing = w.worker->try_build(3, std::string(40, 'e'), w.master, "dmz-try/3");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.code() != Code::kUnavailable);  // fetched, and still missing: the PR's head
  auto built = w.worker->try_build(1, w.feature, w.master, "dmz-try/1");
  REQUIRE_MESSAGE(built.ok(), (built.ok() ? "" : built.message()));
  CHECK(must("git -C " + shell_quote(w.origin.string()) + " rev-parse dmz-try/1") == *built);
}

}  // namespace dmz

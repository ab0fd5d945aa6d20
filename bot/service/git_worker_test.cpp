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

  // `git_program`: the git the mirror's transport runs (a wrapper, to watch or break it).
  explicit Worker(std::unique_ptr<Signer> signer = nullptr, std::string git_program = "git") {
    git::init();
    master = test::init_repo(work, {{"README", "hello\n"}});
    must(git_env() + "git init -q --bare -b master " + shell_quote(origin.string()));
    must(git_env() + "git remote add origin " + shell_quote(origin.string()), work);
    must(git_env() + "git push -q origin master", work);
    must(git_env() + "git checkout -q -b feature", work);
    feature = test::commit_files(work, {{"feature.txt", "new\n"}}, "Add a feature");
    must(git_env() + "git push -q origin feature", work);
    git::TransportOptions transport;
    transport.url = origin.string();
    transport.git_program = std::move(git_program);
    auto mirror = git::Mirror::open(tmp / "mirror.git", transport);
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
  void git(const std::string& args) { must(git_env() + "git " + args, work); }
  std::string origin_git(const std::string& args) {
    return must(git_env() + "git -C " + shell_quote(origin.string()) + " " + args);
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

TEST_CASE("GitWorker: a head already in what it is merged onto is refused at once, by name") {
  Worker w;
  SUBCASE("the head is the base") {
    auto done = w.build(1, {item(1, w.master)});
    CHECK(done.outcome == queue::MergeOutcome::Conflict);  // the PR fails once, at once
    CHECK(done.culprit == 1);
    CHECK(done.conflicts ==
          std::vector<std::string>{"nothing to merge: " + w.master.substr(0, 7) +
                                   " is already in the base " + w.master.substr(0, 7)});
  }
  SUBCASE("the head is an ancestor of the base") {
    w.git("checkout -q master");
    const std::string next = test::commit_files(w.work, {{"next.txt", "n\n"}}, "next");
    w.git("push -q origin master");
    REQUIRE(w.worker->fetch().ok());
    auto done = w.worker->build_candidate(queue::BuildCandidate{1, next, {item(1, w.master)}});
    CHECK(done.outcome == queue::MergeOutcome::Conflict);
    CHECK(done.culprit == 1);
    REQUIRE(done.conflicts.size() == 1);
    CHECK(done.conflicts[0].find(w.master.substr(0, 7) + " is already in the base") !=
          std::string::npos);
  }
  SUBCASE("the head is one an earlier PR of the candidate merged") {
    auto done = w.build(1, {item(1, w.feature), item(2, w.feature)});
    CHECK(done.outcome == queue::MergeOutcome::Conflict);
    CHECK(done.culprit == 2);
    REQUIRE(done.conflicts.size() == 1);
    CHECK(done.conflicts[0].find("is already in the merge of #1") != std::string::npos);
  }
  SUBCASE("a try of it is refused as a conflict") {
    auto tried = w.worker->try_build(1, w.master, w.master, "dmz-try/1");
    REQUIRE_FALSE(tried.ok());
    CHECK(tried.code() == Code::kConflict);
    CHECK(tried.message().find("nothing to merge") != std::string::npos);
  }
  CHECK(test::run(git_env() + "git -C " + shell_quote(w.origin.string()) +
                  " rev-parse -q --verify dmz")
            .exit_code != 0);  // nothing pushed
}

TEST_CASE("GitWorker: a signed-tag PR's mergetag is the tag judged, at its approved head") {
  Worker w;
  w.git("tag -a for-master -m 'please merge' " + w.feature);
  w.git("push -q origin for-master");
  REQUIRE(w.worker->fetch().ok());
  const std::string judged = w.origin_git("rev-parse refs/tags/for-master");
  queue::MergeItem tagged{1, w.feature, "tags/for-master", "T", "dev", "mm", judged};
  auto refused = [&](const std::string& why) {
    auto done = w.build(1, {tagged});
    CHECK(done.outcome == queue::MergeOutcome::Error);
    CHECK(done.culprit == 1);
    CHECK_MESSAGE(done.message.find(why) != std::string::npos, done.message);
    CHECK(test::run(git_env() + "git -C " + shell_quote(w.origin.string()) +
                    " rev-parse -q --verify dmz")
              .exit_code != 0);
  };
  SUBCASE("the tag judged still points at the head: recorded") {
    auto done = w.build(1, {tagged});
    REQUIRE_MESSAGE(done.outcome == queue::MergeOutcome::Merged, done.message);
    const std::string raw = w.origin_git("cat-file commit " + done.sha);
    CHECK(raw.find("\nmergetag object " + w.feature) != std::string::npos);
    CHECK(raw.find(" please merge") != std::string::npos);  // the judged tag's own message
  }
  SUBCASE("the tag made again on the same commit after the approval: the merge is refused") {
    w.git("tag -f -a for-master -m 'words nobody judged' " + w.feature);
    w.git("push -q -f origin for-master");
    REQUIRE(w.worker->fetch().ok());
    refused("refs/tags/for-master is tag object " +
            w.origin_git("rev-parse refs/tags/for-master").substr(0, 7) + ", not " +
            judged.substr(0, 7) + " that the policy judged");
  }
  SUBCASE("a tag no verdict judged (an approval from before tags were pinned): refused") {
    tagged.tag.clear();
    refused("refs/tags/for-master (tag object " + judged.substr(0, 7) +
            ") was not judged by the policy");
  }
  SUBCASE("the tag moved to another commit after the approval: the merge is refused") {
    w.git("tag -f -a for-master -m 'something else' " + w.master);
    w.git("push -q -f origin for-master");
    REQUIRE(w.worker->fetch().ok());
    refused("the tag was made again after the approval");
  }
  SUBCASE("the tag is gone: the PR's") {
    w.git("push -q origin :refs/tags/for-master");
    REQUIRE(w.worker->fetch().ok());
    auto done = w.build(1, {tagged});
    CHECK(done.outcome == queue::MergeOutcome::Error);
    CHECK(done.culprit == 1);
  }
  SUBCASE("the tag object cannot be read from the mirror: nobody's (retried)") {
    // The mirror's tag ref names an object it lacks: our disk, not the PR.
    test::write_file(w.tmp / "mirror.git/refs/tags/for-master", std::string(40, 'e') + "\n");
    auto done = w.build(1, {tagged});
    CHECK(done.outcome == queue::MergeOutcome::Error);
    CHECK(done.culprit == 0);
    CHECK_FALSE(done.message.empty());
  }
}

TEST_CASE(
    "GitWorker: the mirror is garbage-collected after a fetch, once a day; a failure is no "
    "fetch's") {
  test::TempDir bin;
  const fs::path calls = bin / "calls";
  // A git that records its arguments and fails every gc.
  test::write_file(bin / "git",
                   "#!/bin/sh\n"
                   "echo \"$*\" >> " +
                       shell_quote(calls.string()) +
                       "\n"
                       "case \" $* \" in *' gc '*) echo 'gc broke' >&2; exit 1;; esac\n"
                       "exec /usr/bin/env git \"$@\"\n");
  must("chmod +x " + shell_quote((bin / "git").string()));
  auto gcs = [&] {
    const std::string text = test::read_file(calls);
    size_t n = 0;
    for (size_t at = 0; (at = text.find(" gc --auto", at)) != std::string::npos; ++at) ++n;
    return n;
  };
  Worker w(nullptr, (bin / "git").string());  // its first fetch
  CHECK(gcs() == 1);
  CHECK(test::read_file(calls).find("gc.reflogExpire=never") != std::string::npos);
  REQUIRE(w.worker->fetch().ok());  // the same day: no gc
  CHECK(gcs() == 1);
  w.clock.advance(kGcInterval);
  auto refs = w.worker->fetch();  // a day later: gc again, and its failure fails nothing
  CHECK_MESSAGE(refs.ok(), (refs.ok() ? "" : refs.message()));
  CHECK(gcs() == 2);
}

}  // namespace dmz

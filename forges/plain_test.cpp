#include "forges/plain.hpp"

#include <doctest/doctest.h>

using namespace dmz;
using dmz::forges::branch_refusal;
using dmz::forges::events_from_fetch;

TEST_CASE("branch_refusal explains a refused or unmatched branch") {
  const std::vector<std::string> allowed{"feature/*", "bug/*", "hotfix/*"};
  const std::vector<std::string> refused{"wip/*"};
  CHECK_FALSE(branch_refusal("feature/login", allowed, refused));
  CHECK_FALSE(branch_refusal("hotfix/x", allowed, refused));
  CHECK(branch_refusal("wip/x", allowed, refused) == "branch wip/x is refused by pattern wip/*");
  CHECK(branch_refusal("foo", allowed, refused) ==
        "branch foo matches none of feature/*, bug/*, hotfix/*");
  CHECK(branch_refusal("wip/x", {"**"}, refused) == "branch wip/x is refused by pattern wip/*");
  CHECK_FALSE(branch_refusal("anything", {}, refused));
}

namespace {

queue::Sha sha(char c) { return queue::Sha(40, c); }

queue::PullRequest pr(int n, std::string branch, queue::Sha head, queue::PrStatus status) {
  queue::PullRequest p;
  p.number = n;
  p.branch = std::move(branch);
  p.head = std::move(head);
  p.status = status;
  return p;
}

}  // namespace

TEST_CASE("events_from_fetch: pushes, vanished branches and a moved master") {
  queue::RepoState s;
  s.master = sha('0');
  s.prs[1] = pr(1, "feature/same", sha('a'), queue::PrStatus::Queued);
  s.prs[2] = pr(2, "feature/moved", sha('b'), queue::PrStatus::Building);
  s.prs[3] = pr(3, "feature/gone", sha('c'), queue::PrStatus::Failed);
  s.prs[4] = pr(4, "feature/merged", sha('d'), queue::PrStatus::Merged);
  s.prs[5] = pr(5, "feature/cancelled", sha('e'), queue::PrStatus::Cancelled);
  forges::RemoteRefs refs;
  refs.branches = {
      {"master", sha('9')},
      {"feature/same", sha('a')},
      {"feature/moved", sha('f')},
      {"feature/merged", sha('1')},  // ignored: terminal
  };
  const auto events = events_from_fetch(s, refs, "master", 4242);
  REQUIRE(events.size() == 3);
  const auto& pushed = std::get<queue::PrPushed>(events[0]);
  CHECK(pushed.number == 2);
  CHECK(pushed.head == sha('f'));
  CHECK(pushed.at == 4242);
  CHECK_FALSE(pushed.rewritten);
  const auto& closed = std::get<queue::PrClosed>(events[1]);
  CHECK(closed.number == 3);
  CHECK(closed.at == 4242);
  const auto& master = std::get<queue::MasterObserved>(events[2]);
  CHECK(master.sha == sha('9'));
  CHECK(master.at == 4242);
}

TEST_CASE("events_from_fetch: nothing changed, nothing to say") {
  queue::RepoState s;
  s.master = sha('0');
  s.prs[1] = pr(1, "feature/a", sha('a'), queue::PrStatus::Open);
  forges::RemoteRefs refs;
  refs.branches = {{"master", sha('0')}, {"feature/a", sha('a')}};
  CHECK(events_from_fetch(s, refs, "master", 1).empty());
  // a fetch that does not include master says nothing about it
  refs.branches = {{"feature/a", sha('a')}};
  CHECK(events_from_fetch(s, refs, "master", 1).empty());
}

TEST_CASE("events_from_fetch: a rewritten branch and a PR by signed tag") {
  queue::RepoState s;
  s.master = sha('0');
  s.prs[1] = pr(1, "feature/a", sha('a'), queue::PrStatus::Queued);
  s.prs[2] = pr(2, "tags/frotz-for-xyzzy", sha('b'), queue::PrStatus::Queued);
  forges::RemoteRefs refs;
  refs.branches = {{"master", sha('0')}, {"feature/a", sha('c')}};
  refs.tags = {{"frotz-for-xyzzy", sha('d')}};
  refs.rewritten = {"feature/a"};
  const auto events = events_from_fetch(s, refs, "master", 7);
  REQUIRE(events.size() == 2);
  CHECK(std::get<queue::PrPushed>(events[0]).rewritten);
  CHECK(std::get<queue::PrPushed>(events[1]).number == 2);
  CHECK(std::get<queue::PrPushed>(events[1]).head == sha('d'));
  CHECK_FALSE(std::get<queue::PrPushed>(events[1]).rewritten);
}

// A branch literally named "tags/v1" must not stand in for tag v1.
TEST_CASE("a PR by signed tag follows the tag, never a branch named tags/<name>") {
  queue::RepoState s;
  s.master = sha('0');
  s.prs[1] = pr(1, "tags/v1", sha('t'), queue::PrStatus::Queued);
  forges::RemoteRefs refs;
  refs.branches = {{"master", sha('0')}, {"tags/v1", sha('b')}};
  refs.tags = {{"v1", sha('t')}};
  CHECK(events_from_fetch(s, refs, "master", 7).empty());
  CHECK(forges::pr_heads(refs) ==
        std::map<std::string, queue::Sha>{{"master", sha('0')}, {"tags/v1", sha('t')}});
  refs.tags.clear();  // the tag is gone: the branch does not keep the PR open
  const auto events = events_from_fetch(s, refs, "master", 7);
  REQUIRE(events.size() == 1);
  CHECK(std::get<queue::PrClosed>(events[0]).number == 1);

  forges::PlainForge forge({"acme/app", "master", {"**"}, {}});
  auto missing = forge.register_pull(refs, {2, "tags/v1", "ann", ""}, 99);
  REQUIRE_FALSE(missing);
  CHECK(missing.message() == "annotated tag v1 does not exist on the remote");
  refs.tags = {{"v1", sha('t')}};
  auto tag = forge.register_pull(refs, {2, "tags/v1", "ann", ""}, 99);
  REQUIRE(tag);
  CHECK(tag->head == sha('t'));
}

TEST_CASE("PlainForge::register_pull resolves the head and refuses what cannot be a PR") {
  forges::PlainForge forge({"acme/app", "master", {"feature/*", "bug/*"}, {"wip/*"}});
  forges::RemoteRefs refs;
  refs.branches = {{"master", sha('0')}, {"feature/a", sha('a')}, {"wip/x", sha('w')}};
  refs.tags = {{"v1-for-you", sha('t')}};

  auto ok = forge.register_pull(refs, {7, "feature/a", "ann", "A title"}, 99);
  REQUIRE(ok);
  CHECK(ok->number == 7);
  CHECK(ok->head == sha('a'));
  CHECK(ok->author == "ann");
  CHECK(ok->at == 99);
  auto tag = forge.register_pull(refs, {8, "tags/v1-for-you", "ann", ""}, 99);
  REQUIRE(tag);
  CHECK(tag->head == sha('t'));

  auto wip = forge.register_pull(refs, {9, "wip/x", "ann", ""}, 99);
  REQUIRE_FALSE(wip);
  CHECK(wip.code() == Code::kInvalid);
  CHECK(wip.message() == "branch wip/x is refused by pattern wip/*");
  auto missing = forge.register_pull(refs, {9, "feature/none", "ann", ""}, 99);
  REQUIRE_FALSE(missing);
  CHECK(missing.message() == "branch feature/none does not exist on the remote");
  auto no_tag = forge.register_pull(refs, {9, "tags/nope", "ann", ""}, 99);
  REQUIRE_FALSE(no_tag);
  CHECK(no_tag.message() == "annotated tag nope does not exist on the remote");
}

TEST_CASE("the plain forge has no webhooks") {
  forges::PlainForge forge({"acme/app"});
  auto r = forge.webhook({}, 1);
  REQUIRE_FALSE(r);
  CHECK(r.code() == Code::kNotFound);
}

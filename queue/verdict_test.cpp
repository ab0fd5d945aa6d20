// The policy verdict a PR keeps for the status page: who signed its commits, whose approvals
// counted.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "queue/engine.hpp"
#include "queue/json.hpp"

using namespace dmz::queue;

namespace {

Sha sha(char c) { return Sha(40, c); }

struct Repo {
  RepoState s;
  Settings cfg;
  Millis now = 1'000;

  Repo() {
    s.repo = "acme/app";
    s.master = sha('0');
    cfg.required_checks = {"ci/build"};
  }
  Outcome on(Event e) {
    Outcome o = handle(s, e, cfg);
    now += 1000;
    return o;
  }
};

TEST_CASE("verdict: the signers of a judged PR are kept, cleared by a new approval") {
  Repo r;
  REQUIRE_FALSE(r.on(PrOpened{1, "feature/x", "dev", "X", sha('a'), r.now}).rejected);
  REQUIRE_FALSE(r.on(MergeRequested{1, sha('a'), "mm", r.now}).rejected);
  CHECK(r.s.prs.at(1).signers.empty());

  PolicyChecked verdict{1, sha('a'), true, {}, r.now, {"src/a.cpp"}, {"alice", "bob"}};
  verdict.target = r.s.master;
  REQUIRE_FALSE(r.on(verdict).rejected);
  CHECK(r.s.prs.at(1).status != PrStatus::Approved);
  CHECK(r.s.prs.at(1).signers == std::vector<std::string>{"alice", "bob"});
  // In the queue JSON and in the event log.
  CHECK(to_json(r.s.prs.at(1), std::nullopt)["signers"] == nlohmann::json{"alice", "bob"});
  CHECK(to_json(Event{verdict})["signers"] == nlohmann::json{"alice", "bob"});

  // A stale verdict (another sha) changes nothing.
  REQUIRE_FALSE(r.on(PolicyChecked{1, sha('b'), true, {}, r.now, {}, {"mallory"}}).rejected);
  CHECK(r.s.prs.at(1).signers == std::vector<std::string>{"alice", "bob"});

  // Pushed and approved again: the old signers do not describe the new head.
  REQUIRE_FALSE(r.on(CancelRequested{1, "mm", r.now}).rejected);
  REQUIRE_FALSE(r.on(PrPushed{1, sha('c'), r.now}).rejected);
  REQUIRE_FALSE(r.on(MergeRequested{1, sha('c'), "mm", r.now}).rejected);
  CHECK(r.s.prs.at(1).signers.empty());
  // A failing verdict keeps who signed too (the page shows who did, beside what is missing).
  REQUIRE_FALSE(r.on(PolicyChecked{1,
                                   sha('c'),
                                   false,
                                   {"commit c0ffee1 is unsigned"},
                                   r.now,
                                   {},
                                   {"alice"},
                                   {},
                                   r.s.master})
                    .rejected);
  CHECK(r.s.prs.at(1).status == PrStatus::Failed);
  CHECK(r.s.prs.at(1).signers == std::vector<std::string>{"alice"});
}

TEST_CASE("verdict: the approvers the policy counted are kept, apart from who asked to merge") {
  Repo r;
  REQUIRE_FALSE(r.on(PrOpened{1, "feature/x", "dev", "X", sha('a'), r.now}).rejected);
  REQUIRE_FALSE(r.on(MergeRequested{1, sha('a'), "mm", r.now}).rejected);
  CHECK(r.s.prs.at(1).approvers.empty());

  PolicyChecked verdict{1, sha('a'), true, {}, r.now, {}, {"alice"}, {"bob", "carol"}, r.s.master};
  REQUIRE_FALSE(r.on(verdict).rejected);
  CHECK(r.s.prs.at(1).status != PrStatus::Approved);  // judged: queued and merging
  CHECK(r.s.prs.at(1).approvers == std::vector<std::string>{"bob", "carol"});
  CHECK(r.s.prs.at(1).approval->approver == "mm");  // who asked to merge is not an approver
  CHECK(to_json(r.s.prs.at(1), std::nullopt)["approvers"] == nlohmann::json{"bob", "carol"});
  CHECK(to_json(r.s.prs.at(1), std::nullopt)["approval"]["approver"] == "mm");
  CHECK(to_json(Event{verdict})["approvers"] == nlohmann::json{"bob", "carol"});

  // A stale verdict (another sha) changes nothing.
  REQUIRE_FALSE(r.on(PolicyChecked{1, sha('b'), true, {}, r.now, {}, {}, {"mallory"}}).rejected);
  CHECK(r.s.prs.at(1).approvers == std::vector<std::string>{"bob", "carol"});

  // Pushed and approved again: approvals of the old head do not count for the new one.
  REQUIRE_FALSE(r.on(CancelRequested{1, "mm", r.now}).rejected);
  REQUIRE_FALSE(r.on(PrPushed{1, sha('c'), r.now}).rejected);
  REQUIRE_FALSE(r.on(MergeRequested{1, sha('c'), "mm", r.now}).rejected);
  CHECK(r.s.prs.at(1).approvers.empty());
  // A failing verdict keeps the approvals that did count, beside the reason more are needed.
  REQUIRE_FALSE(r.on(PolicyChecked{1,
                                   sha('c'),
                                   false,
                                   {"needs 2 approvals from maintainers for paths **, has 1 (bob)"},
                                   r.now,
                                   {},
                                   {"alice"},
                                   {"bob"},
                                   r.s.master})
                    .rejected);
  CHECK(r.s.prs.at(1).status == PrStatus::Failed);
  CHECK(r.s.prs.at(1).approvers == std::vector<std::string>{"bob"});
  // Retried: judged again from nothing.
  REQUIRE_FALSE(r.on(RetryRequested{1, "mm", r.now}).rejected);
  CHECK(r.s.prs.at(1).status == PrStatus::Approved);
  CHECK(r.s.prs.at(1).approvers.empty());
}

}  // namespace

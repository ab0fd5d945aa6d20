// Shared by the store tests (SQLite and in-memory): a field-by-field comparison, a state that
// exercises every field, and a writer that saves diffs as the driver does; and for service
// tests, what a stop right after a release of a hotfix leaves in a store.
// Threading: test code, one thread at a time (each Writer).
#pragma once

#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "bot/store/store.hpp"

namespace dmz {
inline namespace store_test {

using namespace queue;

// The SQLite store at `file` (created if needed); the test stops if it cannot be opened.
inline std::unique_ptr<Store> open_store(const std::filesystem::path& file) {
  auto r = open_sqlite_store(file);
  INFO((r.ok() ? std::string() : r.message()));
  REQUIRE(r.ok());
  return std::move(r).value();
}

// Field-by-field comparison with a doctest CHECK per field, so a failure names the field.
inline void check_equal(const Check& a, const Check& b) {
  CHECK(a.context == b.context);
  CHECK(a.state == b.state);
  CHECK(a.description == b.description);
  CHECK(a.url == b.url);
  CHECK(a.at == b.at);
}

inline void check_equal(const PullRequest& a, const PullRequest& b) {
  INFO("PR #", b.number);
  CHECK(a.number == b.number);
  CHECK(a.branch == b.branch);
  CHECK(a.author == b.author);
  CHECK(a.title == b.title);
  CHECK(a.head == b.head);
  CHECK(a.status == b.status);
  REQUIRE(a.approval.has_value() == b.approval.has_value());
  if (a.approval) {
    CHECK(a.approval->sha == b.approval->sha);
    CHECK(a.approval->approver == b.approval->approver);
    CHECK(a.approval->at == b.approval->at);
  }
  CHECK(a.reason_code == b.reason_code);
  CHECK(a.reason == b.reason);
  CHECK(a.details == b.details);
  CHECK(a.queued_at == b.queued_at);
  CHECK(a.candidate == b.candidate);
  CHECK(a.finished_at == b.finished_at);
  CHECK(a.priority == b.priority);
  CHECK(a.paths == b.paths);
  CHECK(a.precheck == b.precheck);
  CHECK(a.held_by == b.held_by);
  CHECK(a.group == b.group);
  CHECK(a.probed == b.probed);
  CHECK(a.probed_with == b.probed_with);
  CHECK(a.untested == b.untested);
  CHECK(a.judged_epoch == b.judged_epoch);
  CHECK(a.failures == b.failures);
  CHECK(a.signers == b.signers);
  CHECK(a.approvers == b.approvers);
}

inline void check_equal(const Candidate& a, const Candidate& b) {
  INFO("candidate ", b.id);
  CHECK(a.id == b.id);
  CHECK(a.prs == b.prs);
  CHECK(a.base == b.base);
  CHECK(a.sha == b.sha);
  CHECK(a.status == b.status);
  CHECK(a.created_at == b.created_at);
  CHECK(a.pushed_at == b.pushed_at);
  CHECK(a.policy_passed == b.policy_passed);
  CHECK(a.lane == b.lane);
  CHECK(a.probe == b.probe);
  CHECK(a.with == b.with);
  CHECK(a.attempt == b.attempt);
  CHECK(a.failed == b.failed);
  CHECK(a.paused_ms == b.paused_ms);
  REQUIRE(a.checks.size() == b.checks.size());
  for (auto ia = a.checks.begin(), ib = b.checks.begin(); ia != a.checks.end(); ++ia, ++ib) {
    CHECK(ia->first == ib->first);
    check_equal(ia->second, ib->second);
  }
}

inline void check_equal(const RepoState& a, const RepoState& b) {
  CHECK(a.repo == b.repo);
  CHECK(a.master == b.master);
  CHECK(a.next_candidate == b.next_candidate);
  CHECK(a.retry_after == b.retry_after);
  CHECK(a.window == b.window);
  CHECK(a.policy_epoch == b.policy_epoch);
  CHECK(a.trust_root == b.trust_root);
  CHECK(a.observed == b.observed);
  REQUIRE(a.prs.size() == b.prs.size());
  for (auto ia = a.prs.begin(), ib = b.prs.begin(); ia != a.prs.end(); ++ia, ++ib) {
    CHECK(ia->first == ib->first);
    check_equal(ia->second, ib->second);
  }
  REQUIRE(a.train.size() == b.train.size());
  for (std::size_t i = 0; i < a.train.size(); ++i) check_equal(a.train[i], b.train[i]);
}

inline std::string sha(char c) { return std::string(40, c); }

inline PullRequest make_pr(int number, PrStatus status) {
  PullRequest p;
  p.number = number;
  p.branch = "feature/f" + std::to_string(number);
  p.author = "dev" + std::to_string(number % 3);
  p.title = "Title of #" + std::to_string(number) + " with 'quotes', \"dq\" and ünïcödé";
  p.head = sha(static_cast<char>('a' + number % 6));
  p.status = status;
  p.queued_at = 1000 + number;
  return p;
}

// A state exercising every field: a PR in each status, approvals, failure details, a train
// of two candidates (a batch of two PRs, then one PR) with checks in every state.
inline RepoState rich_state() {
  RepoState s;
  s.repo = "acme/widgets";
  s.master = sha('0');
  s.next_candidate = 8;
  s.retry_after = 1'700'000'000'123;
  const PrStatus all[] = {PrStatus::Open,    PrStatus::Approved, PrStatus::Queued,
                          PrStatus::Merging, PrStatus::InDmz,    PrStatus::Building,
                          PrStatus::Merged,  PrStatus::Failed,   PrStatus::Cancelled};
  int n = 1;
  for (PrStatus st : all) {
    auto p = make_pr(n, st);
    if (st != PrStatus::Open) p.approval = Approval{p.head, "master" + std::to_string(n), 5000 + n};
    s.prs[n] = p;
    ++n;
  }
  s.prs[8].reason = "build failed: ci/build";
  s.prs[8].reason_code = Reason::BuildFailed;
  s.prs[8].finished_at = 7777;
  s.prs[8].details = {"ci/build: failure", "path with \"quotes\" and [brackets]", ""};
  s.prs[9].reason = "cancelled by alice";
  s.prs[10] = make_pr(10, PrStatus::Building);  // batched with #6
  s.prs[10].approval = Approval{s.prs[10].head, "bob", 42};
  s.prs[10].branch = "tags/v10";  // a PR by signed tag: the tag object its verdict judged
  s.prs[10].judged_tag = sha('t');
  s.prs[4].candidate = 7;  // Merging, in the last candidate... see below
  s.prs[5].candidate = 6;
  s.prs[6].candidate = 5;
  s.prs[10].candidate = 5;

  Candidate c1;
  c1.id = 5;
  c1.prs = {10, 6};  // order within the candidate is not the PR number order
  c1.base = s.master;
  c1.sha = sha('c');
  c1.status = CandidateStatus::Building;
  c1.created_at = 2000;
  c1.pushed_at = 2100;
  c1.policy_passed = true;  // c2 keeps false: both values round-trip
  c1.checks["ci/build"] = Check{"ci/build", CheckState::Success, "ok", "https://ci/1", 2200};
  c1.checks["ci/test"] = Check{"ci/test", CheckState::Failure, "3 failed", "", 2300};
  c1.checks["ci/lint"] = Check{"ci/lint", CheckState::Error, "", "https://ci/3", 2250};
  Candidate c2;
  c2.id = 6;
  c2.prs = {5};
  c2.base = c1.sha;
  c2.sha = sha('d');
  c2.status = CandidateStatus::InDmz;
  c2.created_at = 2400;
  c2.pushed_at = 2500;
  c2.checks["ci/build"] = Check{"ci/build", CheckState::Pending, "queued", "", 2600};
  Candidate c3;
  c3.id = 7;
  c3.prs = {4};
  c3.base = c2.sha;
  c3.status = CandidateStatus::Merging;  // sha empty while merging
  c3.created_at = 2700;
  // The strategies' bookkeeping, in every form.
  s.window = 6;
  s.policy_epoch = 3;
  s.trust_root = std::string(64, 'e');
  s.observed.build_ms = 1'800'000;
  s.observed.fail_permille = 123;
  s.observed.builds = 77;
  s.observed.arrival_ms = 180'000;
  s.observed.last_arrival = 1'700'000'000'000;
  s.observed.risk["author:dev1"] = Tally{5, 2};
  s.observed.risk["path:src \"quoted\""] = Tally{0, 1};
  s.observed.risk["overlap:some"] = Tally{3, 4, 1250};  // with its expected failures
  s.prs[3].priority = -2;
  s.prs[3].paths = {"src/a.cpp", "docs/ünïcödé.md"};
  s.prs[3].precheck = CheckState::Failure;
  s.prs[3].held_by = 5;
  s.prs[3].group = 11;
  s.prs[2].priority = 7;
  s.prs[2].precheck = CheckState::Success;
  s.prs[2].probed = true;
  s.prs[2].failures = 1;
  s.prs[2].merge_errors = 2;
  s.prs[2].probed_with = {1, 5};
  s.prs[2].untested = 1;
  s.prs[2].judged_epoch = 3;
  s.prs[3].signers = {"alice", "bob"};
  s.prs[7].signers = {"carol"};  // kept when it is archived
  s.prs[3].approvers = {"bob", "carol"};
  s.prs[7].approvers = {"dave"};  // kept when it is archived
  c2.lane = 4;
  c2.attempt = 2;
  c2.failed = true;
  c2.paused_ms = 42'000;
  c3.lane = 7;
  c3.probe = true;
  c3.with = {2, 1};  // in chain order, not sorted
  s.train = {c1, c2, c3};
  return s;
}

inline Loaded must_load(Store& store, const std::string& repo) {
  auto r = store.load(repo);
  INFO((r.ok() ? std::string() : r.message()));
  REQUIRE(r.ok());
  REQUIRE(r->has_value());
  return **r;
}

// A writer of one repository that remembers its last saved state and version, as the driver
// does: each save() writes the diff from the previous one.
struct Writer {
  Store& store;
  RepoState last;
  std::uint64_t version = 0;

  Result<Saved> save(const RepoState& next, const std::string& kind = "test",
                     std::vector<PullRequest> archived = {},
                     std::vector<HistoryEntry> outcomes = {}, std::vector<Notify> notices = {},
                     Millis at = 10) {
    Change c;
    c.state = &next;
    c.delta = diff(last, next);
    c.expected_version = version;
    c.archived = std::move(archived);
    c.outcomes = std::move(outcomes);
    c.event = EventLogEntry{0, next.repo, kind, "{\"kind\":\"" + kind + "\"}", std::nullopt, at};
    c.notices = std::move(notices);
    c.at = at;
    auto saved = store.save(c);
    if (saved.ok()) {
      last = next;
      version = saved->version;
    }
    return saved;
  }
  // Saves `next` with this event (its own `at`, PRs and `also`) and these outcomes.
  void must_save_event(const RepoState& next, EventLogEntry event,
                       std::vector<HistoryEntry> outcomes = {}) {
    Change c;
    c.state = &next;
    c.delta = diff(last, next);
    c.expected_version = version;
    c.outcomes = std::move(outcomes);
    c.at = event.at;
    c.event = std::move(event);
    auto saved = store.save(c);
    INFO((saved.ok() ? std::string() : saved.message()));
    REQUIRE(saved.ok());
    last = next;
    version = saved->version;
  }
  void must_save(const RepoState& next, const std::string& kind = "test") {
    auto r = save(next, kind);
    INFO((r.ok() ? std::string() : r.message()));
    REQUIRE(r.ok());
  }
};

// Records in the SQLite store at `db` that release `tag` put hotfix `branch` (at `commit`,
// production before: `from`) on production, signed by releng: what a stop right after the push
// of production leaves, before the hotfix was handed over to the queue.
inline void record_released_hotfix(const std::filesystem::path& db, const std::string& repo,
                                   const std::string& tag, const std::string& branch,
                                   const Sha& commit, const Sha& from) {
  auto store = open_sqlite_store(db);
  REQUIRE(store.ok());
  PromotionRecord r;
  r.repo = repo;
  r.tag = tag;
  r.kind = "release";
  r.target = "production";
  r.commit = commit;
  r.from = from;
  r.signers = {"releng"};
  r.promoted = true;
  r.source = "fetch";
  r.hotfix_branch = branch;
  r.at = 1;
  REQUIRE((*store)->record_promotion(r).ok());
}

}  // namespace store_test
}  // namespace dmz

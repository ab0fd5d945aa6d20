// The vocabulary of the merge queue: a repository's state, the events that change it and the
// actions the engine asks the shell to carry out. Plain data, no behaviour, no I/O.
// Threading: values; the engine owns one RepoState per repository on one thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "base/status.hpp"

namespace dmz::queue {

using Sha = std::string;      // 40 (or 64) lowercase hex digits
using Millis = std::int64_t;  // wall-clock milliseconds since the epoch; only ever read from events
using CandidateId = std::uint64_t;

// ---- State ---------------------------------------------------------------------------------

enum class PrStatus {
  Open,       // known, not approved (or approval dropped)
  Approved,   // approved at `approval->sha`, waiting for the policy verdict
  Queued,     // approved and verdict passed, waiting for a place in the train
  Merging,    // in a candidate whose merge commit is being written and pushed to dmz
  InDmz,      // in a candidate that is on dmz, no check has reported yet
  Building,   // in a candidate some check has reported on
  Merged,     // master contains it (terminal)
  Failed,     // dropped with `reason` (conflict, build failure, timeout, policy); retry re-queues
  Cancelled,  // cancelled by a merge master or closed; retry re-queues
};

enum class CheckState { Pending, Success, Failure, Error };

// Why a PR left the queue (or was sent back into it): a stable code beside the message, for
// people, the status page, notifications and scripts. to_string gives the kebab-case name.
enum class Reason {
  None,
  BuildFailed,            // a required check failed on its candidate
  CheckTimeout,           // a required check did not report in time
  MergeConflict,          // its merge into the candidate conflicted
  PolicyFailed,           // the trust policy refused the PR
  CandidatePolicyFailed,  // the candidate's own merge commits failed the policy
  NewPush,                // pushed after approval: the approval is dropped
  RewrittenHistory,       // force-pushed over published commits
  Cancelled,              // a merge master cancelled it
  Closed,                 // the pull request was closed
  MasterMoved,            // master moved outside dmzbot: re-queued on the new master
  TransientError,         // git or the remote failed: re-queued, retried after a backoff
  Merged,                 // landed on master
};

struct Approval {
  Sha sha;               // the head the approval is pinned to
  std::string approver;  // the merge master
  Millis at = 0;

  bool operator==(const Approval&) const = default;
};

struct PullRequest {
  int number = 0;
  std::string branch;  // source branch, e.g. feature/login
  std::string author;
  std::string title;
  Sha head;
  PrStatus status = PrStatus::Open;
  std::optional<Approval> approval;
  Reason reason_code = Reason::None;     // why it is Failed/Cancelled (or last sent back)
  std::string reason;                    // one line: the same for people, with what to do next
  std::vector<std::string> details;      // every policy reason, every conflicting path, ...
  Millis queued_at = 0;                  // ordering key in the queue (then number)
  std::optional<CandidateId> candidate;  // set while Merging/InDmz/Building
  Millis finished_at = 0;                // when it became Merged, Failed or Cancelled
  int priority = 0;                      // higher enters the train first (then queued_at)

  bool operator==(const PullRequest&) const = default;
};

struct Check {
  std::string context;  // e.g. "ci/build", "dmzbot/local"
  CheckState state = CheckState::Pending;
  std::string description;
  std::string url;
  Millis at = 0;

  bool operator==(const Check&) const = default;
};

enum class CandidateStatus {
  Merging,   // BuildCandidate issued, waiting for MergeDone
  InDmz,     // pushed to dmz, no check reported yet
  Building,  // some check reported
  Landing,   // every required check green: FastForwardMaster issued, waiting for MasterPushed
};

// One commit of the train: `base` plus the merges of `prs`, in order. The first candidate's
// base is master; candidate i's base is candidate i-1's sha. A serial queue has one candidate.
struct Candidate {
  CandidateId id = 0;
  std::vector<int> prs;
  Sha base;
  Sha sha;  // empty while Merging
  CandidateStatus status = CandidateStatus::Merging;
  std::map<std::string, Check> checks;  // by context
  Millis created_at = 0;
  Millis pushed_at = 0;        // when it reached dmz; the check timeout counts from here
  bool policy_passed = false;  // the shell judged the candidate's own merges (CheckCandidate)

  bool operator==(const Candidate&) const = default;
};

// The hot state of a repository: the PRs that are open or still worth showing and the train.
// Finished PRs move out to the store's history (the shell decides when; see the driver), so
// the cost of an event does not grow with the repository's history.
struct RepoState {
  std::string repo;  // "owner/name"
  Sha master;        // last known master
  std::map<int, PullRequest> prs;
  std::vector<Candidate> train;  // ordered; front() lands first
  CandidateId next_candidate = 1;
  Millis retry_after = 0;  // after a transient git error, no new candidate before this time

  bool operator==(const RepoState&) const = default;
};

// What the engine needs to know about the repository's configuration.
struct Settings {
  std::vector<std::string> required_checks;  // all must be Success on a candidate
  Millis check_timeout = 30 * 60 * 1000;     // from pushed_at until every required check reports
  std::size_t max_train = 1;                 // candidates in flight; 1 = serial strategy
  std::size_t max_batch = 1;                 // PRs per candidate; 1 = no batching
  Millis retry_backoff = 30 * 1000;          // after a transient error
};

// ---- Events (inputs) -------------------------------------------------------------------------

struct PrOpened {
  int number = 0;
  std::string branch, author, title;
  Sha head;
  Millis at = 0;
};
struct PrPushed {  // the PR's head moved (webhook, or noticed on fetch)
  int number = 0;
  Sha head;
  Millis at = 0;
  bool rewritten = false;  // the new head does not contain the old one: published commits dropped
};
struct PrClosed {
  int number = 0;
  Millis at = 0;
};
struct MergeRequested {  // a merge master approves the PR at `sha`
  int number = 0;
  Sha sha;
  std::string approver;
  Millis at = 0;
};
struct CancelRequested {
  int number = 0;
  std::string by;
  Millis at = 0;
};
struct RetryRequested {
  int number = 0;
  std::string by;
  Millis at = 0;
};
struct PolicyChecked {  // the shell's verdict for CheckPolicy
  int number = 0;
  Sha sha;
  bool pass = false;
  std::vector<std::string> reasons;
  Millis at = 0;
};
enum class MergeOutcome { Merged, Conflict, Error };
struct MergeDone {  // result of BuildCandidate
  CandidateId candidate = 0;
  MergeOutcome outcome = MergeOutcome::Error;
  Sha sha;                             // Merged: the candidate commit, already on dmz
  int culprit = 0;                     // Conflict: the PR whose merge conflicted
  std::vector<std::string> conflicts;  // Conflict: the conflicting paths
  std::string message;                 // Error: what went wrong (transient; retried)
  Millis at = 0;
};
struct CandidateChecked {  // the shell's verdict for CheckCandidate
  CandidateId candidate = 0;
  Sha sha;
  bool pass = false;
  std::vector<std::string> reasons;
  Millis at = 0;
};
struct CheckReported {  // a check state on a commit (local runner, status API, forge)
  Sha sha;
  Check check;
  Millis at = 0;
};
struct MasterPushed {  // result of FastForwardMaster
  CandidateId candidate = 0;
  bool ok = false;
  Sha remote_master;  // when !ok and the remote moved: what master is now (else empty)
  std::string message;
  Millis at = 0;
};
struct MasterObserved {  // a fetch saw master at `sha`
  Sha sha;
  Millis at = 0;
};
struct Tick {  // time passes; drives timeouts and retries
  Millis at = 0;
};
enum class NoticeKind { Info, Success, Failure };
// A message for a PR that changes nothing: a forge's answer to a command (a refusal, help),
// the result of a try build. It goes out through the outbox like every notice.
struct Reply {
  int number = 0;
  NoticeKind kind = NoticeKind::Info;
  std::string message;
  std::vector<std::string> details;
  Millis at = 0;
};
struct StatusRequested {  // someone asked where a PR stands: answered with a Notify
  int number = 0;
  std::string by;
  Millis at = 0;
};
inline constexpr int kMaxPriority = 1000;  // priorities are -kMaxPriority..kMaxPriority
struct PriorityRequested {                 // a merge master sets a PR's priority
  int number = 0;
  int priority = 0;
  std::string by;
  Millis at = 0;
};

using Event =
    std::variant<PrOpened, PrPushed, PrClosed, MergeRequested, CancelRequested, RetryRequested,
                 PolicyChecked, MergeDone, CandidateChecked, CheckReported, MasterPushed,
                 MasterObserved, Tick, Reply, StatusRequested, PriorityRequested>;

// ---- Actions (outputs) -------------------------------------------------------------------------

// Evaluate the trust policy for PR `number` at `sha` against master at `target` (whose policy
// judges the PR); answer PolicyChecked.
struct CheckPolicy {
  int number = 0;
  Sha sha;
  std::string branch, author;  // a PR by signed tag is "tags/<name>", signed by its author
  Sha target;
};
struct MergeItem {
  int number = 0;
  Sha head;
  std::string branch, title, author, approver;
};
struct BuildCandidate {  // merge `items` onto `base` in memory, force-push dmz; answer MergeDone
  CandidateId candidate = 0;
  Sha base;
  std::vector<MergeItem> items;
};
// Judge the candidate's own merge commits (base..sha, first parents) with the policy of
// `base`: signed by an account allowed to sign merges, trees equal to the recomputed merges.
// Answer CandidateChecked. master moves only when this passed and every required check is green.
struct CheckCandidate {
  CandidateId candidate = 0;
  Sha sha, base;
};
struct ResetDmz {  // force-push dmz to `sha` (master) when the train empties after a back-out
  Sha sha;
};
struct StartBuild {  // the local runner (if configured) builds `sha`; answers CheckReported
  CandidateId candidate = 0;
  Sha sha;
};
struct CancelBuild {
  Sha sha;
};
struct FastForwardMaster {  // push master from `from` to `to` only as a fast-forward with lease
  CandidateId candidate = 0;
  Sha from, to;
};
struct Notify {  // tell the PR's author/merge master (forge comment, log, status page)
  int number = 0;
  NoticeKind kind = NoticeKind::Info;
  Reason reason = Reason::None;
  std::string message;
  Sha head;  // the PR's head when it was said (forges put statuses on it)
  // What the one-line message leaves out: every policy reason, every conflicting path, the
  // failing check's link, the full master commit of a merge.
  std::vector<std::string> details;

  bool operator==(const Notify&) const = default;
};

using Action = std::variant<CheckPolicy, BuildCandidate, CheckCandidate, ResetDmz, StartBuild,
                            CancelBuild, FastForwardMaster, Notify>;

// What handle() returns: either the event was refused (state unchanged, `rejected` says why
// with a code: not_found for an unknown PR, conflict for a stale SHA or a PR already merged,
// invalid for malformed input) or it was applied and `actions` follow.
struct Outcome {
  std::optional<Error> rejected;
  std::vector<Action> actions;
};

std::string_view to_string(PrStatus);
std::string_view to_string(CheckState);
std::string_view to_string(CandidateStatus);
std::string_view to_string(Reason);  // "build-failed", ...; "" for None
std::optional<Reason> parse_reason(std::string_view);
std::string_view to_string(NoticeKind);
std::optional<NoticeKind> parse_notice_kind(std::string_view);
std::optional<CheckState> parse_check_state(std::string_view);  // "pending", "success", ...

}  // namespace dmz::queue

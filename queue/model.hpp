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

// Where a PR stands relative to the queue: one exhaustive switch (stage()), so a new status
// forces a decision there rather than a silent default in every handler.
enum class Stage { Idle, Waiting, InTrain, Done };
Stage stage(PrStatus status);

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
  Unmergeable,            // git failed to merge its head, time after time (kMaxMergeErrors)
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
  // Facts the strategies use (plain data gathered by the shell):
  int priority = 0;                // higher enters the train first (PriorityRequested)
  std::vector<std::string> paths;  // files it changes against master (from the policy check)
  CheckState precheck = CheckState::Pending;  // its own CI on its head, before the queue
  // Where it stands in a strategy's bookkeeping:
  std::optional<CandidateId> held_by;  // its candidate failed behind candidate X, whose fate
                                       // decides whether it was to blame: Queued, not built
  std::uint64_t group = 0;       // a batch being bisected: builds only with its group (0: none)
  bool probed = false;           // passed an isolation build at its approved head (adaptive)
  std::vector<int> probed_with;  // the unlanded PRs its probe was built on (adaptive)
  int untested = 0;  // PRs landed since its probe, not built with it, that change what it changes
  int failures = 0;  // builds that failed with it alone to blame (flaky: built again)
  int merge_errors = 0;  // merges of its approved head that failed in a row (not conflicts)
  // The policy accounts whose valid signatures the verdict at approval->sha found on the PR's
  // commits, sorted; kept with the verdict for the status page (empty until it is judged).
  std::vector<std::string> signers;
  // The policy accounts whose approvals that verdict counted (signed approval tags, signed
  // notes, forge reviews where a rule allows them), sorted; not the merge master of `approval`,
  // who asked to merge. Empty until it is judged, and when no rule asks for approvals.
  std::vector<std::string> approvers;
  // The policy epoch (RepoState::policy_epoch) of the verdict that queued it: a PR that comes
  // back from the train after the epoch moved is judged again, not queued on the old verdict.
  std::uint64_t judged_epoch = 0;
  // A PR by signed tag: the tag object that verdict judged (its signature, its name). The merge
  // records exactly that object in its mergetag; a tag made again since, even on the same
  // commit, was never judged.
  Sha judged_tag;

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
  Millis paused_ms = 0;        // time on dmz while checks could not be observed (not counted)
  bool policy_passed = false;  // the shell judged the candidate's own merges (CheckCandidate)
  // Candidates of one lane form a chain (each based on the one before, the first on master);
  // 0 is the main lane. A probe is a build of one PR beside the chain, on master or a chain
  // candidate, before it joins the chain; a probe lands only when it is all that is left. `with`:
  // PRs of the chain a probe on master merges before its own, those that may conflict with it (they
  // are built with it, never landed by it).
  std::uint64_t lane = 0;
  bool probe = false;
  std::vector<int> with;
  int attempt = 1;      // builds of this sha so far (a flaky failure is built again)
  bool failed = false;  // a required check failed and the build is being retried

  bool operator==(const Candidate&) const = default;
};

// What the engine has observed of a repository's builds and PRs: moving averages for the
// adaptive strategy and the ETA, and pass/fail tallies by author and top-level directory.
struct Tally {
  std::uint32_t passed = 0, failed = 0;
  std::uint32_t expected_permille = 0;  // failures its outcomes were expected to have; 0: unknown
  bool operator==(const Tally&) const = default;
};
struct Observed {
  Millis build_ms = 0;                // a build's duration (pushed to its verdict); 0: none yet
  std::uint32_t fail_permille = 0;    // how often a PR turns out bad (per mille)
  std::uint32_t builds = 0;           // verdicts observed (saturates)
  Millis arrival_ms = 0;              // the gap between two approvals
  Millis last_arrival = 0;            // when the last PR was approved
  std::map<std::string, Tally> risk;  // "author:<name>", "path:<dir>"; at most kMaxRiskKeys

  static constexpr std::size_t kMaxRiskKeys = 512;
  bool operator==(const Observed&) const = default;
};

// The hot state of a repository: the PRs that are open or still worth showing and the train.
// Finished PRs move out to the store's history (the shell decides when; see the driver), so
// the cost of an event does not grow with the repository's history.
struct RepoState {
  std::string repo;  // "owner/name"
  Sha master;        // last known master
  std::map<int, PullRequest> prs;
  std::vector<Candidate> train;    // ordered; front() lands first
  CandidateId next_candidate = 1;  // also numbers lanes and bisection groups
  Millis retry_after = 0;          // after a transient git error, no new candidate before this
                                   // time; with a candidate Landing, when its push is made again
  std::size_t window = 0;          // train/adaptive: candidates allowed in flight (0: window_start)
  Observed observed;
  // Raised each time the policy in force may have changed (a landing that touched .dmz/, master
  // moved outside dmzbot): a verdict asked for before is not taken.
  std::uint64_t policy_epoch = 0;
  // The operator's trust root (policy_root) as last read: TrustRootRead's digest.
  std::string trust_root;

  bool operator==(const RepoState&) const = default;
};

// How the queue turns waiting PRs into candidates (see docs/ARCHITECTURE.md, Strategies).
enum class Strategy {
  Serial,    // one candidate of up to max_batch PRs (max_train in flight); a failure fails it
  Batch,     // up to max_batch PRs per candidate, bisected on failure (bors-ng)
  Train,     // speculative candidates in a window (Zuul): start, floor, +1 per landing, /2
  Adaptive,  // batches sized from the failure rate, risky PRs probed alone, lanes, jumps
};
// How PRs are split into lanes (independent chains of candidates) by the adaptive strategy.
enum class Lanes {
  None,    // one chain
  Groups,  // by the configured path groups
  Paths,   // PRs whose changed paths are disjoint from every other lane's
};
struct PathGroup {
  std::string name;
  std::vector<std::string> globs;  // queue/glob.hpp patterns ("docs/**")
  bool operator==(const PathGroup&) const = default;
};

// What the engine needs to know about the repository's configuration.
struct Settings {
  std::vector<std::string> required_checks;  // all must be Success on a candidate
  Millis check_timeout = 30 * 60 * 1000;     // from pushed_at until every required check reports
                                             // (time the forge could not be read not counted)
  Strategy strategy = Strategy::Serial;
  std::size_t max_train = 1;         // serial and batch: candidates in flight
  std::size_t max_batch = 1;         // PRs per candidate; 1 = no batching
  Millis retry_backoff = 30 * 1000;  // after a transient error
  // train and adaptive: Zuul's window of candidates in flight
  std::size_t window_start = 4, window_floor = 1, window_max = 32;
  int flaky_retries = 0;             // a failed build is built again this often before anyone is
                                     // ejected; 0: failures are trusted (checks are not flaky)
  bool priority_interrupts = false;  // a higher-priority PR may cut candidates already building
  Lanes lanes = Lanes::None;
  std::vector<PathGroup> path_groups;
  bool candidate_branches = false;  // candidates have their own branches: PruneCandidates

  bool operator==(const Settings&) const = default;
};

// ---- Events (inputs) -------------------------------------------------------------------------

struct PrOpened {
  int number = 0;
  std::string branch, author, title;
  Sha head;
  Millis at = 0;
  // It makes a closed PR known again: an opening, a reopening, a base moved onto master, a
  // reconciliation. A late word of a PR that was open then (an edit, a label, a push, ready
  // for review) does not: webhooks arrive in any order. Nor does such a word move the head of
  // a PR known at another one: PrPushed does that.
  bool reopens = true;
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
  std::vector<std::string> paths;      // the files the PR changes against master (lanes, risk)
  std::vector<std::string> signers;    // accounts that validly signed its commits, sorted
  std::vector<std::string> approvers;  // accounts whose approvals the policy counted, sorted
  Sha target;                          // the master it was judged at (CheckPolicy's target)
  std::uint64_t epoch = 0;             // CheckPolicy's: taken only while it is the state's
  Sha tag;                             // a PR by signed tag: the tag object judged
  // Set when the verdict failed because of dmzbot's side (I/O, a GnuPG home that could not be
  // made), not the PR: the shell asks again, backing off, before it passes such a verdict on
  // (it then fails closed, the error among the reasons).
  std::string unavailable;
};
enum class MergeOutcome { Merged, Conflict, Error };
// How a Conflict whose PR holds nothing new (its head is already in the base) names it: its one
// `conflicts` entry starts with this, so the PR's reason says so instead of "merge conflict".
inline constexpr std::string_view kNothingToMerge = "nothing to merge: ";

struct MergeDone {  // result of BuildCandidate
  CandidateId candidate = 0;
  MergeOutcome outcome = MergeOutcome::Error;
  Sha sha;                             // Merged: the candidate commit, already on dmz
  int culprit = 0;                     // Conflict: the PR whose merge conflicted; Error: the PR
                                       // whose merge failed (0: nobody's, e.g. the push)
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
  // Set when the check could not be made on dmzbot's side (an I/O error): no verdict, nobody
  // blamed; the candidate is built again after the backoff.
  std::string unavailable;
  // The PR heads whose merges the reasons are about (empty: none in particular). A batch fails
  // only those PRs; the others go back to their place.
  std::vector<Sha> culprits;
};
// A check state on a commit (local runner, status API, forge): a candidate's, or a PR head's
// own CI before the queue (the adaptive strategy's first hint of how likely it is to pass).
struct CheckReported {
  Sha sha;
  Check check;
  Millis at = 0;
};
struct MasterPushed {  // result of FastForwardMaster
  CandidateId candidate = 0;
  bool ok = false;
  Sha remote_master;  // where the remote's master was read to be; empty: unknown (no answer)
  std::string message;
  Millis at = 0;
};
struct MasterObserved {  // a fetch saw master at `sha`
  Sha sha;
  Millis at = 0;
};
struct Tick {  // time passes; drives timeouts and retries
  Millis at = 0;
  // How much time CI results could not be observed (the forge's API was down or rate
  // limited): check timeouts do not count it.
  Millis unobserved_ms = 0;
  // CI results cannot be observed now: no check times out at this tick (the time is credited
  // as unobserved_ms later, when it ends or every minute, so that an outage is not a save and
  // an event per tick).
  bool blind = false;
};
// The shell read the repository's trust root (policy_root, outside the repository): the digest
// of what it holds ("" when none is configured). A change voids every verdict given so far.
struct TrustRootRead {
  std::string digest;
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
// Merges of one PR's head that may fail in a row (git errors, not conflicts: a head that is not
// a commit, a merge libgit2 refuses) before it fails as Unmergeable; until then each is
// retried as transient, since a failure on our side must not eject anyone.
inline constexpr int kMaxMergeErrors = 3;
inline constexpr int kMaxPriority = 1000;  // priorities are -kMaxPriority..kMaxPriority
struct PriorityRequested {                 // a merge master sets a PR's priority
  int number = 0;
  int priority = 0;
  std::string by;
  Millis at = 0;
};

// A forge review of the PR by `reviewer` was dismissed, or followed by a request for changes:
// a verdict that counted forge reviews may have counted it (the policy maps logins to accounts,
// so the engine cannot tell), and is not trusted any more.
struct ReviewWithdrawn {
  int number = 0;
  std::string reviewer;  // the forge login
  Millis at = 0;
};

using Event = std::variant<PrOpened, PrPushed, PrClosed, MergeRequested, CancelRequested,
                           RetryRequested, PolicyChecked, MergeDone, CandidateChecked,
                           CheckReported, MasterPushed, MasterObserved, Tick, Reply,
                           StatusRequested, PriorityRequested, TrustRootRead, ReviewWithdrawn>;

// ---- Actions (outputs) -------------------------------------------------------------------------

// Evaluate the trust policy for PR `number` at `sha` against master at `target` (whose policy
// judges the PR); answer PolicyChecked.
struct CheckPolicy {
  int number = 0;
  Sha sha;
  std::string branch, author;  // a PR by signed tag is "tags/<name>", signed by its author
  Sha target;
  std::uint64_t epoch = 0;  // RepoState::policy_epoch when asked; the verdict carries it back
};
struct MergeItem {
  int number = 0;
  Sha head;
  std::string branch, title, author, approver;
  Sha tag;  // a PR by signed tag: the tag object its verdict judged (PullRequest::judged_tag)
};
// Merge `items` onto `base` in memory, push the candidate (to its own branch when the shell
// has a pattern for them) and, if `tip`, force dmz to it; answer MergeDone.
struct BuildCandidate {
  CandidateId candidate = 0;
  Sha base;
  std::vector<MergeItem> items;
  bool tip = true;  // false for a probe: dmz stays at the tip of the train
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
  int attempt = 1;  // >1: a retry of a failed build (the shell starts it again)
};
struct CancelBuild {  // the candidate left the train: stop building it
  Sha sha;
  CandidateId candidate = 0;
};
// Delete the candidate branches of every candidate not in `keep` (the train). Emitted when
// candidates leave the train and on resume, when Settings::candidate_branches is set.
struct PruneCandidates {
  std::vector<CandidateId> keep;
};
// Push master from `from` to `to` only as a fast-forward with lease. With from == to it only
// reads master: ok if master is at the candidate already, else the answer says where it is.
struct FastForwardMaster {
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
                            CancelBuild, FastForwardMaster, Notify, PruneCandidates>;

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
std::string_view to_string(Strategy);  // "serial", "batch", "train", "adaptive"
std::optional<Strategy> parse_strategy(std::string_view);
std::string_view to_string(Lanes);  // "none", "groups", "paths"
std::optional<Lanes> parse_lanes(std::string_view);

}  // namespace dmz::queue

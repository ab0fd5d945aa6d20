#include "queue/engine.hpp"

#include <algorithm>
#include <exception>
#include <string>
#include <utility>

namespace dmz::queue {
namespace {

// ---- small helpers ---------------------------------------------------------------------------

using Verdict = std::optional<Error>;  // nullopt: the event was applied

Error unknown(int number) { return not_found("unknown pull request #" + std::to_string(number)); }

std::string short_sha(const Sha& sha) { return sha.substr(0, 7); }
std::string pr_name(int number) { return "#" + std::to_string(number); }

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += sep;
    out += p;
  }
  return out;
}

Millis time_of(const Event& event) {
  return std::visit([](const auto& e) { return e.at; }, event);
}

// Where a PR stands relative to the queue: one exhaustive switch, so a new status forces a
// decision here rather than a silent default in every handler.
enum class Stage { Idle, Waiting, InTrain, Done };
Stage stage(PrStatus status) {
  switch (status) {
    case PrStatus::Open:
    case PrStatus::Failed:
    case PrStatus::Cancelled:
      return Stage::Idle;
    case PrStatus::Approved:
    case PrStatus::Queued:
      return Stage::Waiting;
    case PrStatus::Merging:
    case PrStatus::InDmz:
    case PrStatus::Building:
      return Stage::InTrain;
    case PrStatus::Merged:
      return Stage::Done;
  }
  return Stage::Idle;
}

// True for a candidate that is on dmz and waiting for its checks.
bool on_dmz(CandidateStatus status) {
  switch (status) {
    case CandidateStatus::InDmz:
    case CandidateStatus::Building:
      return true;
    case CandidateStatus::Merging:
    case CandidateStatus::Landing:
      return false;
  }
  return false;
}

std::optional<std::size_t> index_of(const RepoState& s, CandidateId id) {
  for (std::size_t i = 0; i < s.train.size(); ++i)
    if (s.train[i].id == id) return i;
  return std::nullopt;
}

std::optional<std::size_t> index_of_sha(const RepoState& s, const Sha& sha) {
  if (sha.empty()) return std::nullopt;  // a merging candidate has no sha yet
  for (std::size_t i = 0; i < s.train.size(); ++i)
    if (s.train[i].sha == sha) return i;
  return std::nullopt;
}

bool is_required(const Settings& cfg, const std::string& context) {
  return std::find(cfg.required_checks.begin(), cfg.required_checks.end(), context) !=
         cfg.required_checks.end();
}

// Required contexts that are not (yet) Success on `k`, in configuration order.
std::vector<std::string> not_green(const Candidate& k, const Settings& cfg) {
  std::vector<std::string> out;
  for (const auto& context : cfg.required_checks) {
    auto it = k.checks.find(context);
    if (it == k.checks.end() || it->second.state != CheckState::Success) out.push_back(context);
  }
  return out;
}

BuildCandidate build_action(const RepoState& s, const Candidate& k) {
  BuildCandidate action{k.id, k.base, {}};
  for (int n : k.prs) {
    const auto& pr = s.prs.at(n);
    const Sha& head = pr.approval ? pr.approval->sha : pr.head;
    const std::string approver = pr.approval ? pr.approval->approver : std::string();
    action.items.push_back(MergeItem{n, head, pr.branch, pr.title, pr.author, approver});
  }
  return action;
}

// ---- the context of one handle() call ------------------------------------------------------

struct Ctx {
  RepoState& s;  // a working copy; committed only if the event is accepted
  const Settings& cfg;
  Millis at = 0;
  std::vector<Action> out;

  template <class A>
  void emit(A a) {
    out.emplace_back(std::in_place_type<A>, std::move(a));
  }
  void notify(const PullRequest& pr, NoticeKind kind, Reason reason, std::string message,
              std::vector<std::string> details = {}) {
    emit(Notify{pr.number, kind, reason, std::move(message), pr.head, std::move(details)});
  }
  PullRequest* find(int n) {
    auto it = s.prs.find(n);
    return it == s.prs.end() ? nullptr : &it->second;
  }
  PullRequest& pr(int n) { return s.prs.at(n); }
  bool landing(const PullRequest& p) const {
    if (!p.candidate) return false;
    auto i = index_of(s, *p.candidate);
    return i && s.train[*i].status == CandidateStatus::Landing;
  }
};

// ---- PR fates ----------------------------------------------------------------------------------

void approve(Ctx& c, PullRequest& pr, Approval approval) {
  pr.approval = std::move(approval);
  pr.status = PrStatus::Approved;
  pr.queued_at = c.at;
  pr.reason_code = Reason::None;
  pr.reason.clear();
  pr.details.clear();
  pr.candidate.reset();
  pr.finished_at = 0;
  c.emit(CheckPolicy{pr.number, pr.approval->sha, pr.branch, pr.author, c.s.master});
}

// Invariant 2: an approval is pinned to a head; a new head needs a new approval.
void drop_approval(Ctx& c, PullRequest& pr, bool rewritten = false) {
  pr.approval.reset();
  pr.status = PrStatus::Open;
  pr.candidate.reset();
  pr.details.clear();
  // A rebase of published history is worth more than an "approve again": the DMZ flow forbids
  // it because others may have built on the dropped commits.
  pr.reason_code = rewritten ? Reason::RewrittenHistory : Reason::NewPush;
  pr.reason = rewritten ? "force-push " + short_sha(pr.head) +
                              " rewrote published history (commits were dropped); push the "
                              "dropped commits back or open a new pull request, then approve again"
                        : "new push " + short_sha(pr.head) +
                              " after approval; a merge master must approve the new head";
  c.notify(pr, rewritten ? NoticeKind::Failure : NoticeKind::Info, pr.reason_code, pr.reason);
}

// Back to the queue, keeping its approval and its place (queued_at). A PR whose head moved
// while its candidate was landing cannot be re-queued at the old approval.
void requeue(Ctx& c, PullRequest& pr) {
  pr.candidate.reset();
  if (pr.approval && pr.approval->sha == pr.head) {
    pr.status = PrStatus::Queued;
    return;
  }
  drop_approval(c, pr);
}

void fail(Ctx& c, PullRequest& pr, Reason code, std::string reason,
          std::vector<std::string> details) {
  pr.status = PrStatus::Failed;
  pr.candidate.reset();
  pr.reason_code = code;
  pr.reason = std::move(reason);
  pr.details = std::move(details);
  pr.finished_at = c.at;
  c.notify(pr, NoticeKind::Failure, code, pr.reason, pr.details);
}

// ---- the train ---------------------------------------------------------------------------------

// Removes train[from..]: cancels the builds of candidates that reached dmz, re-queues the PRs
// of the later candidates (they were based on train[from]) and points dmz back at the new
// tail (master if the train is now empty). Returns the PRs of train[from], detached from it;
// what becomes of them is the caller's decision.
std::vector<int> cut_train(Ctx& c, std::size_t from) {
  auto& train = c.s.train;
  if (from >= train.size()) return {};
  std::vector<int> first = train[from].prs;
  bool pushed = false;
  for (std::size_t i = from; i < train.size(); ++i) {
    if (!train[i].sha.empty()) {
      c.emit(CancelBuild{train[i].sha});
      pushed = true;
    }
    for (int n : train[i].prs) {
      c.pr(n).candidate.reset();
      if (i > from) requeue(c, c.pr(n));
    }
  }
  train.erase(train.begin() + static_cast<std::ptrdiff_t>(from), train.end());
  if (train.empty())
    c.emit(ResetDmz{c.s.master});
  else if (pushed)
    c.emit(ResetDmz{train.back().sha});
  return first;
}

// A candidate failed (check failure or timeout): its PRs are Failed, later ones re-queued.
void back_out(Ctx& c, std::size_t index, Reason code, const std::string& reason,
              const std::vector<std::string>& details) {
  for (int n : cut_train(c, index)) fail(c, c.pr(n), code, reason, details);
}

// A transient git error: nobody is to blame; retry after the backoff.
void transient(Ctx& c, std::size_t index, const std::string& message) {
  const std::string text = "transient error: " + message + "; retrying in " +
                           std::to_string(c.cfg.retry_backoff / 1000) + "s";
  for (int n : cut_train(c, index)) {
    requeue(c, c.pr(n));
    c.notify(c.pr(n), NoticeKind::Info, Reason::TransientError, text);
  }
  c.s.retry_after = c.at + c.cfg.retry_backoff;
}

// Only the front candidate lands; a later green one waits for its turn.
void land_front_if_green(Ctx& c) {
  if (c.s.train.empty()) return;
  auto& k = c.s.train.front();
  if (!on_dmz(k.status) || !k.policy_passed || !not_green(k, c.cfg).empty()) return;
  k.status = CandidateStatus::Landing;
  c.emit(FastForwardMaster{k.id, c.s.master, k.sha});
}

void landed(Ctx& c) {
  Candidate k = std::move(c.s.train.front());
  c.s.train.erase(c.s.train.begin());
  c.s.master = k.sha;
  for (int n : k.prs) {
    auto& pr = c.pr(n);
    pr.status = PrStatus::Merged;
    pr.candidate.reset();
    pr.reason_code = Reason::Merged;
    pr.reason = "merged into master at " + short_sha(k.sha);
    pr.details.clear();
    pr.finished_at = c.at;
    c.notify(pr, NoticeKind::Success, Reason::Merged, pr.reason, {k.sha});
  }
  land_front_if_green(c);
}

// Master moved outside dmzbot: everything built on the old master is void.
void rebuild_on(Ctx& c, const Sha& master) {
  std::vector<int> affected;
  for (const auto& k : c.s.train) affected.insert(affected.end(), k.prs.begin(), k.prs.end());
  c.s.master = master;
  if (c.s.train.empty())
    c.emit(ResetDmz{master});
  else
    for (int n : cut_train(c, 0)) requeue(c, c.pr(n));
  const std::string text =
      "master moved to " + short_sha(master) + " outside dmzbot; rebuilding dmz";
  for (int n : affected) c.notify(c.pr(n), NoticeKind::Info, Reason::MasterMoved, text);
}

// Takes a PR out of the train or the queue (cancel, close); its candidate's other PRs and the
// later candidates go back to the queue.
void withdraw(Ctx& c, PullRequest& pr, Reason code, std::string reason) {
  if (pr.candidate) {
    if (auto i = index_of(c.s, *pr.candidate))
      for (int n : cut_train(c, *i))
        if (n != pr.number) requeue(c, c.pr(n));
  }
  pr.status = PrStatus::Cancelled;
  pr.candidate.reset();
  pr.reason_code = code;
  pr.reason = std::move(reason);
  pr.details.clear();
  pr.finished_at = c.at;
  c.notify(pr, NoticeKind::Info, code, pr.reason);
}

// The scheduling step after every event: fill the train from the queue.
void schedule(Ctx& c) {
  auto& s = c.s;
  const std::size_t batch = std::max<std::size_t>(1, c.cfg.max_batch);
  while (s.train.size() < c.cfg.max_train && c.at >= s.retry_after) {
    const Sha base = s.train.empty() ? s.master : s.train.back().sha;
    if (base.empty()) return;  // the tail is still merging (or master unknown): wait
    auto order = queue_order(s);
    if (order.empty()) return;
    if (order.size() > batch) order.resize(batch);
    Candidate k;
    k.id = s.next_candidate++;
    k.prs = order;
    k.base = base;
    k.created_at = c.at;
    for (int n : k.prs) {
      c.pr(n).status = PrStatus::Merging;
      c.pr(n).candidate = k.id;
    }
    c.emit(build_action(s, k));
    s.train.push_back(std::move(k));
  }
}

// ---- event handlers
// ------------------------------------------------------------------------------

Verdict on(Ctx& c, const PrOpened& e) {
  if (e.number <= 0) return invalid("invalid pull request number " + std::to_string(e.number));
  if (e.head.empty()) return invalid("pull request " + pr_name(e.number) + " has no head sha");
  if (auto* pr = c.find(e.number)) {
    if (pr->status == PrStatus::Cancelled && pr->reason_code == Reason::Closed) {
      // Reopened: known again as it is now, with no approval (a merge master approves anew).
      PullRequest reopened;
      reopened.number = e.number;
      reopened.branch = e.branch;
      reopened.author = e.author;
      reopened.title = e.title;
      reopened.head = e.head;
      reopened.priority = pr->priority;
      *pr = std::move(reopened);
      return std::nullopt;
    }
    if (pr->head == e.head && pr->branch == e.branch && pr->author == e.author) {
      pr->title = e.title;  // a repeated delivery, or a forge re-reading an edited title
      return std::nullopt;
    }
    return conflict(pr_name(e.number) + " is already known (branch " + pr->branch + ", head " +
                    short_sha(pr->head) + ")");
  }
  PullRequest pr;
  pr.number = e.number;
  pr.branch = e.branch;
  pr.author = e.author;
  pr.title = e.title;
  pr.head = e.head;
  c.s.prs.emplace(e.number, std::move(pr));
  return std::nullopt;
}

Verdict on(Ctx& c, const PrPushed& e) {
  auto* pr = c.find(e.number);
  if (!pr) return unknown(e.number);
  if (e.head.empty()) return invalid("push to " + pr_name(e.number) + " has no head sha");
  if (e.head == pr->head || pr->status == PrStatus::Merged) return std::nullopt;
  pr->head = e.head;
  switch (stage(pr->status)) {
    case Stage::Idle:
    case Stage::Done:
      return std::nullopt;
    case Stage::Waiting:
      drop_approval(c, *pr, e.rewritten);
      return std::nullopt;
    case Stage::InTrain:
      break;
  }
  if (c.landing(*pr)) {  // too late to stop: the approved sha lands, the new push does not
    pr->reason = "new push " + short_sha(e.head) + " after approval; the approved " +
                 short_sha(pr->approval ? pr->approval->sha : Sha()) + " is landing";
    c.notify(*pr, NoticeKind::Info, Reason::NewPush, pr->reason);
    return std::nullopt;
  }
  if (auto i = index_of(c.s, pr->candidate.value_or(0)))
    for (int n : cut_train(c, *i))
      if (n != pr->number) requeue(c, c.pr(n));
  drop_approval(c, *pr, e.rewritten);
  return std::nullopt;
}

Verdict on(Ctx& c, const PrClosed& e) {
  auto* pr = c.find(e.number);
  if (!pr) return unknown(e.number);
  if (pr->status == PrStatus::Merged || pr->status == PrStatus::Cancelled) return std::nullopt;
  if (c.landing(*pr)) {
    pr->reason = "closed while landing";
    return std::nullopt;
  }
  if (stage(pr->status) == Stage::Idle) {  // nothing to take out of the queue
    pr->status = PrStatus::Cancelled;
    pr->reason_code = Reason::Closed;
    pr->reason = "closed";
    pr->finished_at = c.at;
    return std::nullopt;
  }
  withdraw(c, *pr, Reason::Closed, "closed");
  return std::nullopt;
}

Verdict on(Ctx& c, const MergeRequested& e) {
  auto* pr = c.find(e.number);
  if (!pr) return unknown(e.number);
  if (e.sha != pr->head)
    return conflict("sha " + e.sha + " is not the head of " + pr_name(e.number) + " (head is " +
                    pr->head + ")");
  if (pr->status == PrStatus::Merged) return conflict(pr_name(e.number) + " is already merged");
  const Stage st = stage(pr->status);
  const bool pinned_here = pr->approval && pr->approval->sha == e.sha;
  if ((st == Stage::Waiting || st == Stage::InTrain) && pinned_here) return std::nullopt;
  if (st == Stage::InTrain)  // only a landing candidate keeps a PR whose head moved
    return conflict(pr_name(e.number) + " is landing at " +
                    short_sha(pr->approval ? pr->approval->sha : Sha()) +
                    "; newer commits need a new pull request");
  approve(c, *pr, Approval{e.sha, e.approver, e.at});
  return std::nullopt;
}

Verdict on(Ctx& c, const CancelRequested& e) {
  auto* pr = c.find(e.number);
  if (!pr) return unknown(e.number);
  switch (stage(pr->status)) {
    case Stage::Done:
      return conflict(pr_name(e.number) + " is already merged");
    case Stage::Idle:
      return conflict(pr_name(e.number) + " is not queued (it is " +
                      std::string(to_string(pr->status)) + ")");
    case Stage::Waiting:
    case Stage::InTrain:
      break;
  }
  if (c.landing(*pr))
    return conflict(pr_name(e.number) + " is landing on master; too late to cancel");
  withdraw(c, *pr, Reason::Cancelled, "cancelled by " + e.by + "; approve or retry to queue again");
  return std::nullopt;
}

Verdict on(Ctx& c, const RetryRequested& e) {
  auto* pr = c.find(e.number);
  if (!pr) return unknown(e.number);
  if (pr->status != PrStatus::Failed && pr->status != PrStatus::Cancelled)
    return conflict(pr_name(e.number) + " is " + std::string(to_string(pr->status)) +
                    "; only failed or cancelled pull requests can be retried");
  if (!pr->approval)
    return conflict(pr_name(e.number) + " has no approval; a merge master must approve it");
  if (pr->approval->sha != pr->head)
    return conflict("the approval of " + pr_name(e.number) + " is for an old head " +
                    short_sha(pr->approval->sha) + " (head is " + short_sha(pr->head) +
                    "); approve again");
  approve(c, *pr, *pr->approval);  // the policy is checked again
  return std::nullopt;
}

Verdict on(Ctx& c, const PolicyChecked& e) {
  auto* pr = c.find(e.number);
  if (!pr || pr->status != PrStatus::Approved || !pr->approval || pr->approval->sha != e.sha)
    return std::nullopt;  // a stale verdict
  if (e.pass) {
    pr->status = PrStatus::Queued;
    return std::nullopt;
  }
  const std::string first = e.reasons.empty() ? std::string("failed") : e.reasons.front();
  fail(c, *pr, Reason::PolicyFailed, "policy: " + first, e.reasons);
  return std::nullopt;
}

void merged(Ctx& c, std::size_t index, const MergeDone& e) {
  auto& k = c.s.train[index];
  k.sha = e.sha;
  k.status = CandidateStatus::InDmz;
  k.pushed_at = c.at;
  for (int n : k.prs) c.pr(n).status = PrStatus::InDmz;
  c.emit(CheckCandidate{k.id, k.sha, k.base});
  c.emit(StartBuild{k.id, k.sha});
}

void conflicted(Ctx& c, std::size_t index, const MergeDone& e) {
  const auto& prs = c.s.train[index].prs;
  if (std::find(prs.begin(), prs.end(), e.culprit) == prs.end())
    return transient(c, index,
                     "conflict reported for " + pr_name(e.culprit) +
                         ", which is not in candidate " + std::to_string(c.s.train[index].id));
  for (int n : cut_train(c, index)) {
    if (n == e.culprit)
      fail(c, c.pr(n), Reason::MergeConflict,
           "merge conflict in " + join(e.conflicts, ", ") +
               "; merge master into the branch (or rebase), push, and ask for approval again",
           e.conflicts);
    else
      requeue(c, c.pr(n));
  }
}

Verdict on(Ctx& c, const MergeDone& e) {
  auto i = index_of(c.s, e.candidate);
  if (!i || c.s.train[*i].status != CandidateStatus::Merging) return std::nullopt;  // stale
  switch (e.outcome) {
    case MergeOutcome::Merged:
      if (e.sha.empty())
        transient(c, *i, "merge reported no sha");
      else
        merged(c, *i, e);
      break;
    case MergeOutcome::Conflict:
      conflicted(c, *i, e);
      break;
    case MergeOutcome::Error:
      transient(c, *i, e.message);
      break;
  }
  return std::nullopt;
}

Verdict on(Ctx& c, const CandidateChecked& e) {
  auto i = index_of(c.s, e.candidate);
  if (!i || c.s.train[*i].sha != e.sha || !on_dmz(c.s.train[*i].status))
    return std::nullopt;  // stale: the candidate was dropped or rebuilt
  if (!e.pass) {
    const std::string first = e.reasons.empty() ? std::string("failed") : e.reasons.front();
    back_out(c, *i, Reason::CandidatePolicyFailed, "policy (candidate): " + first, e.reasons);
    return std::nullopt;
  }
  c.s.train[*i].policy_passed = true;
  land_front_if_green(c);  // with no required checks a candidate lands at once
  return std::nullopt;
}

Verdict on(Ctx& c, const CheckReported& e) {
  auto i = index_of_sha(c.s, e.sha);
  if (!i) return std::nullopt;  // not a candidate of ours (any more)
  auto& k = c.s.train[*i];
  Check check = e.check;
  if (check.at == 0) check.at = c.at;
  k.checks[check.context] = check;
  if (!on_dmz(k.status)) return std::nullopt;  // landing: too late to matter
  const bool bad = check.state == CheckState::Failure || check.state == CheckState::Error;
  if (bad && is_required(c.cfg, check.context)) {
    const std::string what =
        check.description.empty() ? std::string(to_string(check.state)) : check.description;
    std::vector<std::string> details;
    if (!check.url.empty()) details.push_back(check.url);
    back_out(c, *i, Reason::BuildFailed,
             "check " + check.context + " failed: " + what +
                 "; push a fix and ask for approval again, or retry if the PR was not the cause",
             details);
    return std::nullopt;
  }
  if (k.status == CandidateStatus::InDmz) {
    k.status = CandidateStatus::Building;
    for (int n : k.prs) c.pr(n).status = PrStatus::Building;
  }
  land_front_if_green(c);
  return std::nullopt;
}

Verdict on(Ctx& c, const MasterPushed& e) {
  auto i = index_of(c.s, e.candidate);
  if (!i || c.s.train[*i].status != CandidateStatus::Landing) return std::nullopt;  // stale
  const Sha sha = c.s.train[*i].sha;
  if (e.ok || e.remote_master == sha) {  // the remote already has it: a repeated push
    landed(c);
    return std::nullopt;
  }
  if (!e.remote_master.empty() && e.remote_master != c.s.master) {
    rebuild_on(c, e.remote_master);
    return std::nullopt;
  }
  transient(c, *i, "pushing master failed: " + e.message);
  return std::nullopt;
}

Verdict on(Ctx& c, const MasterObserved& e) {
  if (e.sha.empty() || e.sha == c.s.master) return std::nullopt;
  for (const auto& k : c.s.train)
    if (k.status == CandidateStatus::Landing) return std::nullopt;  // MasterPushed will tell
  rebuild_on(c, e.sha);
  return std::nullopt;
}

Verdict on(Ctx& c, const Reply& e) {
  const auto* pr = c.find(e.number);
  c.emit(Notify{e.number, e.kind, Reason::None, e.message, pr ? pr->head : Sha(), e.details});
  return std::nullopt;
}

// Where a PR stands, in one line: what a `status` command answers.
std::string standing(const Ctx& c, const PullRequest& pr) {
  std::string out =
      pr_name(pr.number) + " at " + short_sha(pr.head) + " is " + std::string(to_string(pr.status));
  if (pr.approval)
    out += ", approved by " + pr.approval->approver + " at " + short_sha(pr.approval->sha);
  if (pr.status == PrStatus::Queued) {
    auto order = queue_order(c.s);
    auto at = std::find(order.begin(), order.end(), pr.number);
    if (at != order.end())
      out += ", position " + std::to_string(at - order.begin() + 1) + " of " +
             std::to_string(order.size());
  }
  if (pr.candidate)
    if (auto i = index_of(c.s, *pr.candidate)) {
      const auto& k = c.s.train[*i];
      out += ", in candidate " + std::to_string(k.id) +
             (k.sha.empty() ? std::string(" (merging)") : " (" + short_sha(k.sha) + ")");
      if (auto missing = not_green(k, c.cfg); !missing.empty() && on_dmz(k.status))
        out += ", waiting for " + join(missing, ", ");
    }
  if (pr.priority != 0) out += ", priority " + std::to_string(pr.priority);
  if (!pr.reason.empty()) out += ": " + pr.reason;
  return out;
}

Verdict on(Ctx& c, const StatusRequested& e) {
  const auto* pr = c.find(e.number);
  if (!pr) {
    c.emit(Notify{e.number,
                  NoticeKind::Info,
                  Reason::None,
                  pr_name(e.number) + " is not known to dmzbot (yet)",
                  Sha(),
                  {}});
    return std::nullopt;
  }
  c.notify(*pr, NoticeKind::Info, Reason::None, standing(c, *pr), pr->details);
  return std::nullopt;
}

Verdict on(Ctx& c, const PriorityRequested& e) {
  auto* pr = c.find(e.number);
  if (!pr) return unknown(e.number);
  if (e.priority < -kMaxPriority || e.priority > kMaxPriority)
    return invalid("priority must be between " + std::to_string(-kMaxPriority) + " and " +
                   std::to_string(kMaxPriority));
  if (pr->status == PrStatus::Merged) return conflict(pr_name(e.number) + " is already merged");
  pr->priority = e.priority;
  // A candidate already being built is not interrupted; the order of the waiting PRs changes.
  c.notify(
      *pr, NoticeKind::Info, Reason::None,
      "priority of " + pr_name(e.number) + " set to " + std::to_string(e.priority) + " by " + e.by);
  return std::nullopt;
}

Verdict on(Ctx& c, const Tick&) {
  for (std::size_t i = 0; i < c.s.train.size(); ++i) {
    const auto& k = c.s.train[i];
    if (!on_dmz(k.status) || c.at < k.pushed_at + c.cfg.check_timeout) continue;
    const auto missing = not_green(k, c.cfg);
    if (missing.empty()) continue;
    back_out(c, i, Reason::CheckTimeout,
             "check " + join(missing, ", ") + " did not report within " +
                 std::to_string(c.cfg.check_timeout / 1000) +
                 "s; make sure CI builds the dmz branch and reports this check, then retry",
             missing);
    break;  // later candidates went with it
  }
  return std::nullopt;
}

}  // namespace

Outcome handle(RepoState& state, const Event& event, const Settings& settings) {
  try {
    RepoState work = state;  // applied to a copy: a rejection leaves `state` untouched
    Ctx c{work, settings, time_of(event), {}};
    if (Verdict v = std::visit([&](const auto& e) { return on(c, e); }, event))
      return Outcome{std::move(*v), {}};
    schedule(c);
    state = std::move(work);
    return Outcome{std::nullopt, std::move(c.out)};
  } catch (const std::exception& e) {
    return Outcome{internal(std::string("internal error: ") + e.what()), {}};
  }
}

std::vector<Action> resume(const RepoState& state, const Settings&) {
  std::vector<Action> out;
  for (const auto& [n, pr] : state.prs)
    if (pr.status == PrStatus::Approved && pr.approval)
      out.push_back(CheckPolicy{n, pr.approval->sha, pr.branch, pr.author, state.master});
  for (const auto& k : state.train) {
    switch (k.status) {
      case CandidateStatus::Merging:
        out.push_back(build_action(state, k));
        break;
      case CandidateStatus::InDmz:
      case CandidateStatus::Building:
        if (!k.policy_passed) out.push_back(CheckCandidate{k.id, k.sha, k.base});
        out.push_back(StartBuild{k.id, k.sha});
        break;
      case CandidateStatus::Landing:
        out.push_back(FastForwardMaster{k.id, state.master, k.sha});
        break;
    }
  }
  // With an empty train dmz must be master; a back-out's reset may have been lost in a crash.
  // Forcing dmz to where it already is changes nothing.
  if (state.train.empty() && !state.master.empty()) out.push_back(ResetDmz{state.master});
  return out;
}

std::vector<int> queue_order(const RepoState& state) {
  std::vector<const PullRequest*> queued;
  for (const auto& [n, pr] : state.prs)
    if (pr.status == PrStatus::Queued) queued.push_back(&pr);
  std::stable_sort(queued.begin(), queued.end(), [](const auto* a, const auto* b) {
    if (a->priority != b->priority) return a->priority > b->priority;
    return a->queued_at < b->queued_at;  // the map already orders by number
  });
  std::vector<int> out;
  for (const auto* pr : queued) out.push_back(pr->number);
  return out;
}

}  // namespace dmz::queue

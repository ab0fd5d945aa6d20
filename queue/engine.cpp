#include "queue/engine.hpp"

#include <algorithm>
#include <cmath>
#include <exception>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "queue/glob.hpp"
#include "queue/policy_paths.hpp"

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

// The strategies other than serial share one machinery: lanes, holds, bisection, retries,
// jumps (see "the strategies" below). Serial keeps the original code paths.
bool generic(const Settings& cfg) { return cfg.strategy != Strategy::Serial; }

bool same_chain(const Candidate& a, const Candidate& b) {
  return a.probe == b.probe && a.lane == b.lane;  // a probe's lane is its own id
}

// The train indices of `k`'s chain, front first.
std::vector<std::size_t> chain_of(const RepoState& s, const Candidate& k) {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < s.train.size(); ++i)
    if (same_chain(s.train[i], k)) out.push_back(i);
  return out;
}

bool green(const Candidate& k, const Settings& cfg) {
  switch (k.status) {
    case CandidateStatus::InDmz:
    case CandidateStatus::Building:
    case CandidateStatus::Landing:
      return not_green(k, cfg).empty();
    case CandidateStatus::Merging:
      return false;
  }
  return false;
}

// The head a candidate merges for `pr`: the one its approval is pinned to.
const Sha& merged_head(const PullRequest& pr) { return pr.approval ? pr.approval->sha : pr.head; }

BuildCandidate build_action(const RepoState& s, const Candidate& k) {
  BuildCandidate action{k.id, k.base, {}, !k.probe};
  std::vector<int> merged = k.with;
  merged.insert(merged.end(), k.prs.begin(), k.prs.end());
  for (int n : merged) {
    const auto& pr = s.prs.at(n);
    const Sha& head = merged_head(pr);
    const std::string approver = pr.approval ? pr.approval->approver : std::string();
    action.items.push_back(
        MergeItem{n, head, pr.branch, pr.title, pr.author, approver, pr.judged_tag});
  }
  return action;
}

// ---- the context of one handle() call ------------------------------------------------------

struct Ctx {
  RepoState& s;  // a working copy; committed only if the event is accepted
  const Settings& cfg;
  Millis at = 0;
  std::vector<Action> out;
  // A landing that changes the policy is being handled: no other candidate starts landing in
  // the same event (it holds PRs judged under the old policy, and is about to be cut).
  bool hold_landings = false;

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
  std::vector<CandidateId> landed;  // candidates that landed during this event
  // dmz may not be at the tip of the train: candidates left it without landing, or a probe
  // (never on dmz) landed.
  bool dmz_stale = false;
  bool landing(const PullRequest& p) const {
    if (!p.candidate) return false;
    auto i = index_of(s, *p.candidate);
    return i && s.train[*i].status == CandidateStatus::Landing;
  }
};

// ---- PR fates ----------------------------------------------------------------------------------

// The policy check of `pr`'s approved head at master, under the current policy epoch.
CheckPolicy ask_policy(const RepoState& s, const PullRequest& pr) {
  return CheckPolicy{pr.number, pr.approval->sha, pr.branch, pr.author, s.master, s.policy_epoch};
}

// A held group (hold(), below) failed together behind an undecided candidate: if that one
// lands, the culprit is among them, and a landing bisects them. Once all but one have left the
// group (cancelled, closed, pushed to, judged again), the one left never failed alone: it goes
// back to its place, a group of one that builds alone (like a bisection half), rather than be
// ejected by the landing.
void release_lone_survivor(Ctx& c, std::uint64_t group) {
  PullRequest* lone = nullptr;
  for (auto& [n, p] : c.s.prs) {
    if (!p.held_by || p.group != group) continue;
    if (lone) return;  // several are left
    lone = &p;
  }
  if (!lone) return;
  lone->held_by.reset();
  lone->reason_code = Reason::None;
  lone->reason.clear();
  lone->details.clear();
}

// A PR leaving the strategies' bookkeeping (a new approval, a push, a failure, a cancel).
void forget_bookkeeping(Ctx& c, PullRequest& pr) {
  const bool held = pr.held_by.has_value();
  const std::uint64_t group = pr.group;
  pr.held_by.reset();
  pr.group = 0;
  pr.probed = false;
  pr.probed_with.clear();
  pr.untested = 0;
  pr.failures = 0;
  pr.merge_errors = 0;
  if (held && group != 0) release_lone_survivor(c, group);
}

// What the last policy verdict said of `pr`: the next one says again who signed, whose
// approvals count and which tag object it judged.
void forget_verdict(PullRequest& pr) {
  pr.signers.clear();
  pr.approvers.clear();
  pr.judged_tag.clear();
}

void approve(Ctx& c, PullRequest& pr, Approval approval) {
  forget_bookkeeping(c, pr);
  pr.approval = std::move(approval);
  pr.status = PrStatus::Approved;
  pr.queued_at = c.at;
  pr.reason_code = Reason::None;
  pr.reason.clear();
  pr.details.clear();
  pr.candidate.reset();
  pr.finished_at = 0;
  forget_verdict(pr);
  c.emit(ask_policy(c.s, pr));
}

// Invariant 2: an approval is pinned to a head; a new head needs a new approval.
void drop_approval(Ctx& c, PullRequest& pr, bool rewritten = false) {
  forget_bookkeeping(c, pr);
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

// Sends an approved PR back to the gate: it is judged again under the policy in force now.
void judge_again(Ctx& c, PullRequest& pr) {
  forget_bookkeeping(c, pr);
  pr.status = PrStatus::Approved;
  pr.candidate.reset();
  forget_verdict(pr);
  c.emit(ask_policy(c.s, pr));
}

// A PR closed on the forge, out of the queue (a PR in the train is withdrawn first).
void mark_closed(Ctx& c, PullRequest& pr) {
  pr.status = PrStatus::Cancelled;
  pr.reason_code = Reason::Closed;
  pr.reason = "closed";
  pr.finished_at = c.at;
}

// Back to the queue, keeping its approval and its place (queued_at). A PR whose head moved
// while its candidate was landing cannot be re-queued at the old approval.
void requeue(Ctx& c, PullRequest& pr) {
  pr.candidate.reset();
  pr.held_by.reset();
  if (pr.reason_code == Reason::Closed) {  // closed while its landing was in flight
    forget_bookkeeping(c, pr);
    return mark_closed(c, pr);
  }
  if (!pr.approval || pr.approval->sha != pr.head) return drop_approval(c, pr);
  // Its verdict was given under a policy that has changed since (a landing in flight finished
  // after the trust root changed, then its push failed): judged again, never queued on it.
  if (pr.judged_epoch != c.s.policy_epoch) return judge_again(c, pr);
  pr.status = PrStatus::Queued;
}

void fail(Ctx& c, PullRequest& pr, Reason code, std::string reason,
          std::vector<std::string> details) {
  forget_bookkeeping(c, pr);
  pr.status = PrStatus::Failed;
  pr.candidate.reset();
  pr.reason_code = code;
  pr.reason = std::move(reason);
  pr.details = std::move(details);
  pr.finished_at = c.at;
  c.notify(pr, NoticeKind::Failure, code, pr.reason, pr.details);
}

// ---- the train ---------------------------------------------------------------------------------

// A PR that changes what the policy is made of (.dmz/: the policy, its keys). The PRs after it
// were judged under the policy it replaces: it is the last PR of its candidate, nothing is built
// on top of it, and a landing ends with it (then everything waiting is judged again).
bool changes_policy(const Ctx& c, int n) { return touches_policy_sources(c.s.prs.at(n).paths); }
bool ends_chain(const Ctx& c, const Candidate& k) {
  return std::any_of(k.prs.begin(), k.prs.end(), [&](int n) { return changes_policy(c, n); });
}
// Puts a candidate's policy-changing PR last (a bisected group keeps its members, whose batch
// held at most one such PR).
void policy_change_last(const Ctx& c, std::vector<int>& prs) {
  std::stable_partition(prs.begin(), prs.end(), [&](int n) { return !changes_policy(c, n); });
}

std::vector<int> cut(Ctx& c, std::size_t index);  // below: by the strategy's rules
void land(Ctx& c);                                // below: lands what is green
void observe_pr(Ctx& c, const PullRequest& pr, bool bad);
void observe_arrival(Ctx& c);

// Cuts train[index] (and what was built on it) and sends all their PRs back to the queue, each
// keeping its place.
void requeue_cut(Ctx& c, std::size_t index) {
  for (int n : cut(c, index)) requeue(c, c.pr(n));
}

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
              const std::vector<std::string>& details);

// A transient git error: nobody is to blame; retry after the backoff.
void transient(Ctx& c, std::size_t index, const std::string& message);

// The candidate master is being pushed to. One landing at a time (serial: the front; a chain
// lands at once, its push going to its last Landing candidate, the newest of them).
std::optional<std::size_t> landing_target(const RepoState& s) {
  std::optional<std::size_t> out;
  for (std::size_t i = 0; i < s.train.size(); ++i)
    if (s.train[i].status == CandidateStatus::Landing) out = i;
  return out;
}

// Whether what is landing may still land: nothing that came while its push was in flight (a PR
// closed or pushed to, a policy change) forbids it.
bool landing_allowed(const RepoState& s) {
  for (const auto& k : s.train) {
    if (k.status != CandidateStatus::Landing) continue;
    for (int n : k.prs) {
      const PullRequest& pr = s.prs.at(n);
      if (pr.reason_code == Reason::Closed || !pr.approval || pr.approval->sha != pr.head ||
          pr.judged_epoch != s.policy_epoch)
        return false;
    }
  }
  return true;
}

// The push of master to `k` made again, its first answer lost (or after a restart): the same
// push (same target, same lease) while the landing is allowed; otherwise a read of master, a
// push of `k` onto itself, whose lease holds only where master is `k` already (the lost push
// landed: the answer is ok) and which moves nothing (master elsewhere: the answer says where).
FastForwardMaster push_again(const RepoState& s, const Candidate& k) {
  if (landing_allowed(s)) return FastForwardMaster{k.id, s.master, k.sha};
  return FastForwardMaster{k.id, k.sha, k.sha};
}

// Only the front candidate lands; a later green one waits for its turn.
// Asks for master to be pushed to `k` (marked Landing by the caller, with what lands with it).
// A retry_after in the past is cleared: set again, it marks a push that failed without an answer
// (on(MasterPushed)), which the next tick pushes again.
void push_master(Ctx& c, const Candidate& k) {
  if (c.s.retry_after <= c.at) c.s.retry_after = 0;
  c.emit(FastForwardMaster{k.id, c.s.master, k.sha});
}

void land_front_if_green(Ctx& c) {
  if (c.s.train.empty() || c.hold_landings) return;
  auto& k = c.s.train.front();
  if (!on_dmz(k.status) || !k.policy_passed || !not_green(k, c.cfg).empty()) return;
  k.status = CandidateStatus::Landing;
  push_master(c, k);
}

void landed(Ctx& c) {
  Candidate k = std::move(c.s.train.front());
  c.s.train.erase(c.s.train.begin());
  c.s.master = k.sha;
  c.landed.push_back(k.id);  // PRs held on it (before a switch to serial) were to blame
  for (int n : k.prs) {
    auto& pr = c.pr(n);
    observe_pr(c, pr, false);
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

// The policy in force may have changed: a verdict asked for before is not taken (its epoch is
// past), and every PR queued is judged again at the current master, keeping its place.
void judge_queued_again(Ctx& c, const std::string& why) {
  ++c.s.policy_epoch;
  for (auto& [n, pr] : c.s.prs) {
    if (pr.status != PrStatus::Queued || !pr.approval) continue;
    judge_again(c, pr);
    if (!why.empty()) c.notify(pr, NoticeKind::Info, Reason::None, why);
  }
}

// Master moved outside dmzbot: everything built on the old master is void; the train is cut
// and rebuilt on the new one. The push may have changed the policy (the engine cannot see what
// it changed), so every PR is judged again under it: the safe side, as such pushes are rare.
void rebuild_on(Ctx& c, const Sha& master) {
  std::vector<int> affected;
  for (const auto& k : c.s.train) affected.insert(affected.end(), k.prs.begin(), k.prs.end());
  c.s.master = master;
  if (c.s.train.empty())
    c.emit(ResetDmz{master});
  else
    while (!c.s.train.empty()) requeue_cut(c, 0);
  const std::string text =
      "master moved to " + short_sha(master) + " outside dmzbot; rebuilding dmz";
  for (int n : affected) c.notify(c.pr(n), NoticeKind::Info, Reason::MasterMoved, text);
  judge_queued_again(c, {});
}

// Takes a PR out of the train or the queue (cancel, close); its candidate's other PRs and the
// later candidates go back to the queue.
void withdraw(Ctx& c, PullRequest& pr, Reason code, std::string reason) {
  if (pr.candidate) {
    if (auto i = index_of(c.s, *pr.candidate))
      for (int n : cut(c, *i))
        if (n != pr.number) requeue(c, c.pr(n));
  }
  forget_bookkeeping(c, pr);
  pr.status = PrStatus::Cancelled;
  pr.candidate.reset();
  pr.reason_code = code;
  pr.reason = std::move(reason);
  pr.details.clear();
  pr.finished_at = c.at;
  c.notify(pr, NoticeKind::Info, code, pr.reason);
}

// ---- observations ------------------------------------------------------------------------------

// Moving averages, in integers so that a state compares and stores exactly.
void observe_build(Ctx& c, const Candidate& k) {
  if (k.pushed_at <= 0 || c.at < k.pushed_at) return;
  auto& o = c.s.observed;
  const Millis took = c.at - k.pushed_at;
  o.build_ms = o.build_ms == 0 ? took : (7 * o.build_ms + took) / 8;
  if (o.builds < 1'000'000) ++o.builds;
}

// How often PRs are approved: how many would be built behind a PR before its result.
void observe_arrival(Ctx& c) {
  auto& o = c.s.observed;
  if (o.last_arrival > 0 && c.at > o.last_arrival) {
    const Millis gap = c.at - o.last_arrival;
    o.arrival_ms = o.arrival_ms == 0 ? gap : (7 * o.arrival_ms + gap) / 8;
  }
  o.last_arrival = std::max(o.last_arrival, c.at);
}

std::string top_dir(const std::string& path) {
  auto slash = path.find('/');
  return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
}

// The risk key of a PR's own CI before the queue: how well it predicts is learned, not assumed.
std::string precheck_key(const PullRequest& pr) {
  switch (pr.precheck) {
    case CheckState::Success:
      return "precheck:green";
    case CheckState::Failure:
    case CheckState::Error:
      return "precheck:red";
    default:
      return "precheck:none";
  }
}

// Counts an outcome in `t`, which was to fail with probability `expected` (when known); past 64
// outcomes the counts are halved (recent history weighs more). Returns whether they were.
bool tally(Tally& t, bool failed, double expected = 0) {
  (failed ? t.failed : t.passed) += 1;
  t.expected_permille += static_cast<std::uint32_t>(std::lround(expected * 1000));
  if (t.passed + t.failed <= 64) return false;
  t.passed /= 2;
  t.failed /= 2;
  t.expected_permille /= 2;
  return true;
}

// A PR's fate as evidence: landed (bad = false) or ejected as the culprit (bad = true).
void observe_pr(Ctx& c, const PullRequest& pr, bool bad) {
  auto& o = c.s.observed;
  o.fail_permille =
      static_cast<std::uint32_t>((31 * std::uint64_t{o.fail_permille} + (bad ? 1000u : 0u)) / 32);
  std::set<std::string> keys = {"author:" + pr.author, precheck_key(pr)};
  for (const auto& p : pr.paths) {
    keys.insert("path:" + top_dir(p));
    if (keys.size() > 8) break;  // a huge PR says little about each directory
  }
  for (const auto& key : keys) tally(o.risk[key], bad);
  while (o.risk.size() > Observed::kMaxRiskKeys) {  // forget the least informative key
    auto least = o.risk.begin();
    for (auto it = o.risk.begin(); it != o.risk.end(); ++it)
      if (it->second.passed + it->second.failed < least->second.passed + least->second.failed)
        least = it;
    o.risk.erase(least);
  }
}

// The observed probability that a PR is bad (a prior of 10% until there is evidence).
double base_failure(const RepoState& s) {
  double f = s.observed.builds >= 8 ? s.observed.fail_permille / 1000.0 : 0.10;
  return std::clamp(f, 0.01, 0.9);
}

// How much likelier than `f` to fail the tally `key` says (in odds), shrunk towards `f`.
double odds_ratio(const RepoState& s, const std::string& key, double f) {
  auto it = s.observed.risk.find(key);
  if (it == s.observed.risk.end()) return 1.0;
  const double n = it->second.passed + it->second.failed;
  const double p = (it->second.failed + 4 * f) / (n + 4);
  return (p / (1 - p)) / (f / (1 - f));
}

// Whether the tally `key` holds enough outcomes to say more than a prior.
bool tells(const RepoState& s, const std::string& key) {
  auto it = s.observed.risk.find(key);
  return it != s.observed.risk.end() && it->second.passed + it->second.failed >= 16;
}

// How likely `pr` is to fail: the base rate, moved by its own pre-queue CI and by its
// author's and directories' history (likelihood ratios in odds, shrunk towards the base).
double risk_of(const RepoState& s, const PullRequest& pr) {
  const double f = base_failure(s);
  double odds = f / (1 - f);
  auto ratio = [&](const std::string& key) { return odds_ratio(s, key, f); };
  // The PR's own CI: what its state has predicted here, once there are enough PRs to tell;
  // until then a red one is taken as 8 times likelier to fail, a green one 0.6 times.
  const std::string own = precheck_key(pr);
  if (tells(s, own))
    odds *= ratio(own);
  else if (pr.precheck == CheckState::Failure || pr.precheck == CheckState::Error)
    odds *= 8;
  else if (pr.precheck == CheckState::Success)
    odds *= 0.6;
  odds *= ratio("author:" + pr.author);
  double worst_dir = 1.0;
  for (const auto& p : pr.paths) worst_dir = std::max(worst_dir, ratio("path:" + top_dir(p)));
  odds *= worst_dir;
  if (pr.probed) odds *= 0.1;  // it passed alone: only a conflict or a flake can fail it now
  return odds / (1 + odds);
}

// ---- the strategies: batch, train, adaptive ------------------------------------------------
//
// Candidates form chains (lanes): each is based on the one before it in its lane, the first on
// master. A chain lands by fast-forwarding master to its furthest green candidate (train: the
// longest green prefix; adaptive, or with flaky checks: any green candidate, which was tested
// with everything ahead of it). When a candidate fails:
//   - flaky checks: it is built again (attempt 2), the candidates behind it keep building;
//   - a candidate ahead of it still undecided: it leaves the train and its PRs are held,
//     waiting for that candidate's fate (it lands: they were to blame; it fails: they are
//     innocent and go back to their place); what was behind it is rebuilt without it;
//   - at the front of its chain: one PR is ejected; a batch is bisected (halves first, each a
//     group that builds alone) and nobody else is touched.

}  // namespace

double failure_risk(const RepoState& s, const PullRequest& pr) { return risk_of(s, pr); }

bool may_conflict(const PullRequest& a, const PullRequest& b) {
  if (a.paths.empty() || b.paths.empty()) return true;
  return std::any_of(a.paths.begin(), a.paths.end(), [&](const std::string& x) {
    return std::find(b.paths.begin(), b.paths.end(), x) != b.paths.end();
  });
}

// The failures of builds with such PRs beyond those of builds without, per such PR.
std::optional<double> conflict_risk(const RepoState& s) {
  const auto& t = s.observed.risk;
  const auto pairs = t.find("overlap:pairs");
  if (!tells(s, "overlap:0") || !tells(s, "overlap:some") || pairs == t.end() ||
      pairs->second.passed == 0)
    return std::nullopt;
  const Tally& none = t.at("overlap:0");
  const Tally& some = t.at("overlap:some");
  // What the builds' own PRs explain (their risks) is taken out of both: otherwise builds with
  // such PRs, often probes of riskier PRs, would show conflicts where there are none.
  auto unexplained = [](const Tally& t) { return t.failed - t.expected_permille / 1000.0; };
  const double base = unexplained(none) / (none.passed + none.failed);
  const double excess = unexplained(some) - base * (some.passed + some.failed);
  return std::clamp(excess / pairs->second.passed, 0.0, 1.0);
}

bool in_queue(PrStatus status) {
  return stage(status) == Stage::Waiting || stage(status) == Stage::InTrain;
}

std::size_t window_of(const RepoState& s, const Settings& cfg) {
  switch (cfg.strategy) {
    case Strategy::Serial:
    case Strategy::Batch:
      return std::max<std::size_t>(1, cfg.max_train);
    case Strategy::Train:
    case Strategy::Adaptive:
      break;
  }
  const std::size_t floor = std::max<std::size_t>(1, cfg.window_floor);
  const std::size_t max = std::max(floor, cfg.window_max);
  std::size_t w = s.window == 0 ? cfg.window_start : s.window;
  // Adaptive: a chain lands the run of PRs before its first failure, (1-f)/f of them on
  // average, and builds everything behind that failure again. A longer speculation burns
  // runners without landing more (measured with sim_bench stats: at the main workload's
  // observed 24% a window of 20 started 31 builds per landed PR, this cap 4, with the same
  // landings and time to merge).
  if (cfg.strategy == Strategy::Adaptive) {
    const double f = base_failure(s);
    w = std::min(w, static_cast<std::size_t>(std::ceil((1 - f) / f)));
  }
  return std::clamp(w, floor, max);
}

namespace {

bool zuul_window(const Settings& cfg) {
  return cfg.strategy == Strategy::Train || cfg.strategy == Strategy::Adaptive;
}

// Whether a chain may land past a candidate that is not green (yet): a green candidate was
// tested with everything ahead of it.
bool jumps(const Settings& cfg) {
  return cfg.strategy == Strategy::Adaptive || cfg.flaky_retries > 0;
}

// Removes train[index] and every later candidate of its chain: cancels what was pushed and
// re-queues the PRs behind. Returns the PRs of train[index], detached; the caller decides.
std::vector<int> cut_lane(Ctx& c, std::size_t index) {
  auto& train = c.s.train;
  const Candidate head = train[index];
  std::vector<Candidate> kept;
  std::set<Sha> gone;  // shas of chain candidates removed
  for (std::size_t i = 0; i < train.size(); ++i) {
    Candidate& k = train[i];
    if (i < index || !same_chain(k, head)) {
      kept.push_back(std::move(k));
      continue;
    }
    if (!k.sha.empty()) c.emit(CancelBuild{k.sha, k.id});
    if (!k.sha.empty() && !k.probe) gone.insert(k.sha);
    for (int n : k.prs) {
      c.pr(n).candidate.reset();
      if (i != index) requeue(c, c.pr(n));
    }
    if (!k.probe) c.dmz_stale = true;  // dmz may have to follow the tip
  }
  // Probes built on a candidate that is gone say nothing any more: their PRs wait again.
  std::vector<Candidate> still;
  for (auto& k : kept) {
    if (!k.probe || !gone.count(k.base) || k.status == CandidateStatus::Landing) {
      still.push_back(std::move(k));
      continue;
    }
    if (!k.sha.empty()) c.emit(CancelBuild{k.sha, k.id});
    for (int n : k.prs) requeue(c, c.pr(n));
  }
  train = std::move(still);
  return head.prs;
}

// Cuts train[index] and what depends on it, in the strategy's terms.
std::vector<int> cut(Ctx& c, std::size_t index) {
  return generic(c.cfg) ? cut_lane(c, index) : cut_train(c, index);
}

// Requeues `prs` as one group: they build together (a single PR alone), and are bisected if
// they fail together.
void regroup(Ctx& c, const std::vector<int>& prs) {
  const std::uint64_t group = c.s.next_candidate++;
  for (int n : prs) {
    requeue(c, c.pr(n));
    if (c.pr(n).status == PrStatus::Queued) c.pr(n).group = group;
  }
}

// `prs` failed at the front of their chain: one PR is the culprit; a batch is bisected.
void blame(Ctx& c, const std::vector<int>& prs, Reason code, const std::string& reason,
           const std::vector<std::string>& details) {
  if (prs.size() == 1) {
    auto& pr = c.pr(prs[0]);
    if (pr.failures < c.cfg.flaky_retries) {  // maybe a flake: it builds again, alone
      ++pr.failures;
      // Adaptive: as a probe, beside the chain, not at its tail, where a failure that was its
      // own (or a conflict with what is ahead of it) failed the chain behind it once more
      // (the main workload, 150 seeds: p50 110 min against 125, p95 357 against 408).
      if (c.cfg.strategy == Strategy::Adaptive) pr.probed = false;
      regroup(c, prs);
      return;
    }
    observe_pr(c, pr, true);
    fail(c, pr, code, reason, details);
    return;
  }
  // Adaptive: each PR of the batch is built again alone, in a group of its own (never batched
  // again with the culprit), as a probe under load. Bisected in the chain instead, each half
  // that failed cut what was built behind it once more (the main workload, 150 seeds: p50 92
  // min against 110, p95 331 against 357, 3.93 builds per landed PR against 4.18).
  if (c.cfg.strategy == Strategy::Adaptive) {
    for (int n : prs) {
      c.pr(n).probed = false;
      regroup(c, {n});
    }
    return;
  }
  const auto half = static_cast<std::ptrdiff_t>((prs.size() + 1) / 2);
  regroup(c, std::vector<int>(prs.begin(), prs.begin() + half));
  regroup(c, std::vector<int>(prs.begin() + half, prs.end()));
}

// `prs` failed behind candidate `ahead`, whose fate decides who was to blame.
void hold(Ctx& c, const std::vector<int>& prs, CandidateId ahead, Reason code,
          const std::string& reason, const std::vector<std::string>& details) {
  const std::uint64_t group = c.s.next_candidate++;
  for (int n : prs) {
    auto& pr = c.pr(n);
    requeue(c, pr);
    if (pr.status != PrStatus::Queued) continue;
    pr.held_by = ahead;
    pr.group = group;
    pr.reason_code = code;
    pr.reason = reason;
    pr.details = details;
  }
  // Failed with others that could not wait (judged again, pushed to): not held alone.
  if (prs.size() > 1) release_lone_survivor(c, group);
}

// After the train changed: held PRs whose candidate ahead landed were to blame; those whose
// candidate ahead left without landing go back to their place.
void resolve_holds(Ctx& c) {
  std::map<std::uint64_t, std::vector<int>> guilty;  // by group
  for (auto& [n, pr] : c.s.prs) {
    if (!pr.held_by || index_of(c.s, *pr.held_by)) continue;
    const bool landed = std::find(c.landed.begin(), c.landed.end(), *pr.held_by) != c.landed.end();
    pr.held_by.reset();
    if (landed) {
      guilty[pr.group].push_back(n);
    } else {  // innocent: back to its place, with its batch
      pr.reason_code = Reason::None;
      pr.reason.clear();
      pr.details.clear();
    }
  }
  for (auto& [group, prs] : guilty) {
    std::stable_sort(prs.begin(), prs.end(),
                     [&](int a, int b) { return c.pr(a).queued_at < c.pr(b).queued_at; });
    const auto& first = c.pr(prs.front());
    const Reason code = first.reason_code;
    const std::string reason = first.reason;
    const std::vector<std::string> details = first.details;
    blame(c, prs, code == Reason::None ? Reason::BuildFailed : code, reason, details);
  }
}

// A required check failed (or timed out) on train[index].
// The undecided candidate train[index] was built on, whose fate decides whether what failed in
// it was to blame; none for the front of its chain (or a probe on master).
std::optional<CandidateId> ahead_of(const Ctx& c, std::size_t index) {
  const Candidate& k = c.s.train[index];
  std::optional<CandidateId> ahead;
  for (std::size_t i = 0; i < index; ++i)
    if (same_chain(c.s.train[i], k)) ahead = c.s.train[i].id;
  // A probe built on a candidate of the train: that candidate's fate decides who was to blame.
  if (k.probe && k.base != c.s.master)
    for (const auto& t : c.s.train)
      if (!t.probe && t.sha == k.base) ahead = t.id;
  // A probe built with PRs of the chain: the candidate holding the last of them that has not
  // landed (a landed PR has left the hot state, or is Merged).
  if (k.probe)
    for (const auto& t : c.s.train)
      if (!t.probe && std::any_of(t.prs.begin(), t.prs.end(), [&](int n) {
            return std::find(k.with.begin(), k.with.end(), n) != k.with.end();
          }))
        ahead = t.id;
  return ahead;
}

// Whether a probe built with PRs of the chain cannot say who failed it: one of them has left
// the chain without landing (sent back, ejected), so the failure may be its.
bool inconclusive(const Ctx& c, const Candidate& k) {
  return std::any_of(k.with.begin(), k.with.end(), [&](int n) {
    auto it = c.s.prs.find(n);
    if (it == c.s.prs.end() || it->second.status == PrStatus::Merged) return false;
    const auto i = it->second.candidate ? index_of(c.s, *it->second.candidate) : std::nullopt;
    return !i || c.s.train[*i].probe;
  });
}

// Cuts an inconclusive probe: its PR goes back to its place, blamed for nothing, and is probed
// again with the chain as it is now.
void probe_again(Ctx& c, std::size_t index) {
  for (int n : cut_lane(c, index)) requeue(c, c.pr(n));
}

// `announced`: the Pending the failing report replaced (the CI announced that run), if any.
void fail_candidate(Ctx& c, std::size_t index, Reason code, const std::string& reason,
                    const std::vector<std::string>& details,
                    const std::optional<Check>& announced = std::nullopt) {
  Candidate& k = c.s.train[index];
  if (inconclusive(c, k)) return probe_again(c, index);
  const std::optional<CandidateId> ahead = ahead_of(c, index);
  // A PR alone at the front would be ejected: with flaky checks it is built again first. A
  // probe, and a chain candidate of the other strategies, is built again in place, so that the
  // candidates behind it keep building (a green one clears it). Adaptive takes the PR out of
  // its chain, to be built again as a probe (blame(), below), and rebuilds what was behind it
  // without it now, not after a retry that would likely fail too. Retrying in place measured
  // worse even where flakes were most of the failures (`simulate --fail 0.02 --flake 0.10
  // --precheck 1 --conflict 0`: p50 43 min against 38, p95 132 against 116), and so did
  // retrying in place where retries were seen to pass more often than not (until 2026-11-28).
  if (!ahead && k.prs.size() == 1 && c.pr(k.prs[0]).failures < c.cfg.flaky_retries &&
      (k.probe || c.cfg.strategy != Strategy::Adaptive)) {
    ++c.pr(k.prs[0]).failures;
    ++k.attempt;
    k.failed = true;
    // A run this attempt announced (Pending), the failed one too, keeps its record: its end,
    // arriving after the retry started, is told apart from the retry's (CheckReported).
    for (const auto& context : c.cfg.required_checks) {
      auto it = k.checks.find(context);
      if (it != k.checks.end() && it->second.state != CheckState::Success &&
          it->second.state != CheckState::Pending)
        k.checks.erase(it);
    }
    if (announced) k.checks[announced->context] = *announced;
    k.status = CandidateStatus::InDmz;
    k.pushed_at = c.at;
    k.paused_ms = 0;
    for (int n : k.prs) c.pr(n).status = PrStatus::InDmz;
    c.emit(StartBuild{k.id, k.sha, k.attempt});
    return;
  }
  // Zuul halves its window on a failure; adaptive keeps its runners busy (a failure already
  // costs the rebuild of what was behind it).
  if (c.cfg.strategy == Strategy::Train)
    c.s.window = std::max(c.cfg.window_floor, window_of(c.s, c.cfg) / 2);
  auto prs = cut_lane(c, index);
  if (ahead)
    hold(c, prs, *ahead, code, reason, details);
  else
    blame(c, prs, code, reason, details);  // a probe, or the front of its chain
}

// The lane a PR goes to (adaptive): by its configured path group, or with the lane whose PRs
// touch the same paths; 0 is the main lane.
std::uint64_t lane_for(Ctx& c, const PullRequest& pr) {
  if (c.cfg.strategy != Strategy::Adaptive || pr.paths.empty()) return 0;
  switch (c.cfg.lanes) {
    case Lanes::None:
      return 0;
    case Lanes::Groups: {
      std::optional<std::size_t> only;
      for (const auto& path : pr.paths) {
        std::optional<std::size_t> hit;
        for (std::size_t g = 0; g < c.cfg.path_groups.size() && !hit; ++g)
          for (const auto& glob : c.cfg.path_groups[g].globs)
            if (glob_match(glob, path)) {
              hit = g;
              break;
            }
        if (!hit || (only && *only != *hit)) return 0;  // outside the groups, or several
        only = hit;
      }
      return only ? *only + 1 : 0;
    }
    case Lanes::Paths: {
      const std::set<std::string> mine(pr.paths.begin(), pr.paths.end());
      bool any = false;
      for (const auto& k : c.s.train) {
        if (k.probe) continue;
        any = true;
        for (int n : k.prs) {
          const auto& other = c.pr(n).paths;
          if (other.empty()) return k.lane;
          for (const auto& p : other)
            if (mine.count(p)) return k.lane;
        }
      }
      return any ? c.s.next_candidate++ : 0;  // disjoint from every lane: a lane of its own
    }
  }
  return 0;
}

// Fast-forwards master along a chain: to its furthest green candidate (train without flaky
// checks: the end of its green prefix). One landing at a time.
void try_land(Ctx& c) {
  if (c.hold_landings) return;
  for (const auto& k : c.s.train)
    if (k.status == CandidateStatus::Landing) return;
  // A green probe built on master lands itself when no chain would be left stale by it.
  const bool chains =
      std::any_of(c.s.train.begin(), c.s.train.end(), [](const Candidate& k) { return !k.probe; });
  if (!chains)
    for (auto& k : c.s.train)
      if (k.probe && k.with.empty() && k.base == c.s.master && k.policy_passed && green(k, c.cfg)) {
        k.status = CandidateStatus::Landing;
        push_master(c, k);
        return;
      }
  std::set<std::pair<bool, std::uint64_t>> seen;
  for (const auto& first : c.s.train) {
    if (first.probe || !seen.insert({first.probe, first.lane}).second) continue;
    if (first.base != c.s.master) continue;  // stale: rebuilt when its lane is cut
    const auto idx = chain_of(c.s, first);
    std::optional<std::size_t> best;
    for (std::size_t i = 0; i < idx.size(); ++i) {
      const Candidate& k = c.s.train[idx[i]];
      if (!k.policy_passed) break;  // its merges are not judged yet
      if (green(k, c.cfg))
        best = i;
      else if (!jumps(c.cfg))
        break;
      if (ends_chain(c, k)) break;  // what is behind it is judged again once it lands
    }
    if (!best) continue;
    for (std::size_t i = 0; i <= *best; ++i) c.s.train[idx[i]].status = CandidateStatus::Landing;
    push_master(c, c.s.train[idx[*best]]);
    return;
  }
}

// How many PRs are approved during a build, as observed (0 until a build and two approvals are).
double arrivals_per_build(const RepoState& s) {
  if (s.observed.arrival_ms <= 0 || s.observed.build_ms <= 0) return 0;
  return static_cast<double>(s.observed.build_ms) / static_cast<double>(s.observed.arrival_ms);
}

// The newest chain candidate (not a probe) of `lane`, if any: the next one is built on it.
const Candidate* tail_of(const RepoState& s, std::uint64_t lane) {
  const Candidate* tail = nullptr;
  for (const auto& k : s.train)
    if (!k.probe && k.lane == lane) tail = &k;
  return tail;
}

// Beyond this many approvals during a build, PRs that change a common path land during nearly
// every probe, and probes are redone over and over (the heavy workload of the README: 57 builds
// per landed PR); the chain without probes first does better there.
constexpr double kMaxArrivalsPerBuild = 20;

// The PRs in the train and those queued for it: all that a failure in the chain could send
// back (schedule_probe_first), or put at stake soon (under_load).
struct Backlog {
  double in_train = 0, queued = 0;
};
Backlog backlog_of(const RepoState& s) {
  Backlog b;
  for (const auto& [number, p] : s.prs) {
    b.in_train += stage(p.status) == Stage::InTrain ? 1 : 0;
    b.queued += p.status == PrStatus::Queued ? 1 : 0;
  }
  return b;
}

// What a failure in the chain puts at stake soon: the PRs in the train, and those queued up to
// two builds' worth of arrivals. Not the whole queue: under load every PR is probed first,
// which takes more builds, and a queue grown by that kept it under load for the rest of the
// day (`simulate --precheck 1 --conflict 0 --hours 24 --seed 6`: p95 435 min against 138).
double at_stake(const RepoState& s, double per_build) {
  const Backlog b = backlog_of(s);
  return b.in_train + std::min(b.queued, 2 * per_build);
}

}  // namespace

bool under_load(const Settings& cfg, const RepoState& s) {
  if (cfg.strategy != Strategy::Adaptive) return false;
  // Until a build and two approvals are observed the load is not known.
  const double per_build = arrivals_per_build(s);
  if (per_build <= 0 || per_build > kMaxArrivalsPerBuild) return false;
  return base_failure(s) * std::max(at_stake(s, per_build), per_build) >= 1.0;
}

namespace {

// How many PRs of `with` may conflict with `p` without its probe having been built with them.
int untested_with(const Ctx& c, const PullRequest& p, const std::vector<int>& with) {
  int n = 0;
  for (int x : with)
    if (x != p.number &&
        std::find(p.probed_with.begin(), p.probed_with.end(), x) == p.probed_with.end() &&
        may_conflict(p, c.s.prs.at(x)))
      ++n;
  return n;
}

// A probe stays good for joining the chain with at most this many PRs it was not built with
// that change a path it changes. A common path makes a conflict likelier, not likely (in the
// simulator's workload 1 in 20 such pairs conflict); probing again for every one of them cost
// more builds and time than the rare conflict that reaches the chain. Since a failed batch is
// no longer bisected in the chain, a conflict there costs less, and 2 measured better than 1
// on every workload of docs/THROUGHPUT.md (the main one, 150 seeds: p50 88 min against 92,
// p95 285 against 331, 3.61 builds per landed PR against 3.93); 3 and more, worse on the main
// one.
constexpr int kUntestedOverlaps = 2;

// The PRs of train candidate `k` and of every candidate ahead of it in its chain.
std::vector<int> prs_up_to(const RepoState& s, const Candidate& k) {
  std::vector<int> out;
  for (auto i : chain_of(s, k)) {
    out.insert(out.end(), s.train[i].prs.begin(), s.train[i].prs.end());
    if (s.train[i].id == k.id) break;
  }
  return out;
}

// Builds of one PR, tallied by whether it was built with PRs that change a path it changes and
// that it was never built with ("overlap:0", "overlap:some"; "overlap:pairs" counts such PRs in
// its `passed`): whether such PRs make builds fail here, and how much (risk_with_overlaps).
void observe_overlaps(Ctx& c, const Candidate& k, bool failed) {
  if (c.cfg.strategy != Strategy::Adaptive || k.prs.size() != 1) return;
  const PullRequest& p = c.pr(k.prs.front());
  const auto& tried = p.probed_with;
  std::vector<int> with = k.probe ? tried : prs_up_to(c.s, k);
  if (k.probe && tried.empty())  // probed without load: on the chain candidate it was built on
    for (const auto& t : c.s.train)
      if (!t.probe && t.sha == k.base) with = prs_up_to(c.s, t);
  std::uint32_t untested = k.probe ? 0 : static_cast<std::uint32_t>(p.untested);
  for (int x : with) {
    auto it = c.s.prs.find(x);
    if (x == p.number || it == c.s.prs.end() || !may_conflict(p, it->second)) continue;
    untested += k.probe || std::find(tried.begin(), tried.end(), x) == tried.end() ? 1 : 0;
  }
  // How likely the build was to fail from its PRs' own risks alone (conflict_risk).
  double passes = 1 - risk_of(c.s, p);
  for (int x : with)
    if (auto it = c.s.prs.find(x); x != p.number && it != c.s.prs.end())
      passes *= 1 - risk_of(c.s, it->second);
  auto& risk = c.s.observed.risk;
  if (untested == 0) {
    tally(risk["overlap:0"], failed, 1 - passes);
    return;
  }
  auto& pairs = risk["overlap:pairs"].passed;
  pairs += untested;
  if (tally(risk["overlap:some"], failed, 1 - passes)) pairs /= 2;  // decays with its builds
}

// The risk of a PR with risk `risk` built with `untested` PRs that change a path it changes
// and that it was never built with. Each such PR fails the build with the chance observed here:
// the failures of builds with such PRs beyond those of builds without, per such PR. Until 16
// builds of each kind have been seen it is not known (nullopt) past `allowed` such PRs.
std::optional<double> risk_with_overlaps(const RepoState& s, double risk, int untested,
                                         int allowed) {
  if (untested == 0) return risk;
  const auto per_pr = conflict_risk(s);
  if (!per_pr) return untested <= allowed ? std::optional<double>(risk) : std::nullopt;
  return 1 - (1 - risk) * std::pow(1 - *per_pr, untested);
}

// PRs landed: a probe (green, or still building) not built with those of them that may
// conflict with its PR counts them; past kUntestedOverlaps it says too little about master
// now: under load (`act`), a green one is forgotten, one in flight is cut, and either is probed
// again. The count is kept without load too, so that it is right when load comes.
void forget_stale_probes(Ctx& c, const std::vector<Candidate>& landing, bool act) {
  std::vector<int> landed;
  for (const auto& k : landing) landed.insert(landed.end(), k.prs.begin(), k.prs.end());
  auto stale = [&](PullRequest& p) {
    p.untested += untested_with(c, p, landed);
    return act && p.untested > kUntestedOverlaps;
  };
  for (auto& [n, p] : c.s.prs)
    if (p.status == PrStatus::Queued && p.probed && stale(p)) p.probed = false;
  for (std::size_t i = 0; i < c.s.train.size(); ++i) {
    const Candidate& k = c.s.train[i];
    if (!k.probe || k.status == CandidateStatus::Landing || !stale(c.pr(k.prs.front()))) continue;
    for (int n : cut_lane(c, i)) requeue(c, c.pr(n));
    --i;
  }
}

// Master reached candidate `id`: it and every candidate ahead of it in its chain landed.
// Other chains were built on the old master: they are rebuilt on the new one, each as a batch.
void land_chain(Ctx& c, CandidateId id) {
  const Candidate target = c.s.train[*index_of(c.s, id)];
  std::set<CandidateId> ids;  // the target and the candidates ahead of it in its chain
  for (auto i : chain_of(c.s, target)) {
    ids.insert(c.s.train[i].id);
    if (c.s.train[i].id == id) break;
  }
  std::vector<Candidate> landing, kept;
  for (auto& k : c.s.train) (ids.count(k.id) ? landing : kept).push_back(std::move(k));
  c.s.train = std::move(kept);
  c.s.master = target.sha;
  if (target.probe) c.dmz_stale = true;  // a probe is not on dmz: dmz is behind master now
  for (const auto& k : landing) {
    if (!green(k, c.cfg) && !k.sha.empty()) c.emit(CancelBuild{k.sha, k.id});  // jumped over
    c.landed.push_back(k.id);
    for (int n : k.prs) {
      auto& pr = c.pr(n);
      observe_pr(c, pr, false);
      forget_bookkeeping(c, pr);
      pr.status = PrStatus::Merged;
      pr.candidate.reset();
      pr.reason_code = Reason::Merged;
      pr.reason = "merged into master at " + short_sha(target.sha);
      pr.details.clear();
      pr.finished_at = c.at;
      c.notify(pr, NoticeKind::Success, Reason::Merged, pr.reason);
    }
  }
  if (zuul_window(c.cfg))
    c.s.window = std::min(std::max(c.cfg.window_floor, c.cfg.window_max),
                          window_of(c.s, c.cfg) + landing.size());
  if (c.cfg.strategy == Strategy::Adaptive) forget_stale_probes(c, landing, under_load(c.cfg, c.s));
  // Other lanes were built on the old master: each builds again on the new one, as a batch.
  for (;;) {
    std::optional<std::size_t> stale;
    for (std::size_t i = 0; i < c.s.train.size() && !stale; ++i)
      if (!c.s.train[i].probe && chain_of(c.s, c.s.train[i]).front() == i &&
          c.s.train[i].base != c.s.master)
        stale = i;
    if (!stale) break;
    std::vector<int> prs;
    for (auto j : chain_of(c.s, c.s.train[*stale]))
      prs.insert(prs.end(), c.s.train[j].prs.begin(), c.s.train[j].prs.end());
    cut_lane(c, *stale);
    regroup(c, prs);
  }
  try_land(c);
}

// A higher-priority PR waits while lower-priority candidates build: with priority_interrupts
// they are cut (nobody is blamed) so that it enters the train first.
void interrupt_for_priority(Ctx& c) {
  if (!c.cfg.priority_interrupts) return;
  auto order = queue_order(c.s);
  if (order.empty()) return;
  const PullRequest& top = c.pr(order.front());
  for (std::size_t i = 0; i < c.s.train.size(); ++i) {
    const Candidate& k = c.s.train[i];
    if (k.probe || k.status == CandidateStatus::Landing) continue;
    int highest = k.prs.empty() ? 0 : c.pr(k.prs.front()).priority;
    for (int n : k.prs) highest = std::max(highest, c.pr(n).priority);
    if (highest >= top.priority) continue;
    const std::string text = "interrupted by #" + std::to_string(top.number) + " (priority " +
                             std::to_string(top.priority) +
                             "); back in the queue at the same place";
    for (int n : cut(c, i)) {
      requeue(c, c.pr(n));
      c.notify(c.pr(n), NoticeKind::Info, Reason::None, text);
    }
    i = static_cast<std::size_t>(-1);  // the train changed: look again from the front
  }
}

}  // namespace

// Adaptive batches: one PR per candidate while the window has room for every waiting PR;
// otherwise as many as the failure rate allows (a batch should pass 70% of the time).
std::size_t batch_size(const RepoState& s, const Settings& cfg, std::size_t waiting,
                       std::size_t free_slots) {
  const std::size_t max = std::max<std::size_t>(1, cfg.max_batch);
  if (cfg.strategy != Strategy::Adaptive) return max;
  if (free_slots == 0 || waiting <= free_slots) return 1;
  const double f = base_failure(s);
  const auto by_rate =
      static_cast<std::size_t>(std::max(1.0, std::floor(std::log(0.7) / std::log(1 - f))));
  const std::size_t needed = (waiting + free_slots - 1) / free_slots;
  return std::clamp<std::size_t>(std::min(by_rate, needed), 1, max);
}

namespace {

// Adaptive: a PR is probed (built beside the train, on the newest candidate of its lane, and
// never landed, before it joins the train) when it was found to blame once (the flaky retry),
// or when the rebuilds it would cause by failing in the train, its risk times the PRs that
// would be built behind it before its result, outweigh what the probe costs it: one build, and
// one build's delay. `overlaps` PRs ahead of it touch paths it touches (a semantic conflict
// with one would fail every candidate behind it): until builds with such PRs are seen here,
// any of them makes it probed; then each adds the chance observed (risk_with_overlaps). A
// probe that fails while the candidate it was built on is undecided waits for that candidate's
// fate (as a held PR does).
bool wants_probe(const RepoState& s, const PullRequest& p, double risk, std::size_t waiting_behind,
                 int overlaps) {
  if (p.probed) return false;
  if (p.failures > 0) return true;  // found to blame once: the flake retry is built aside too
  if (p.group != 0) return false;
  const auto r = risk_with_overlaps(s, risk, overlaps, 0);
  return !r || *r * std::max(static_cast<double>(waiting_behind), arrivals_per_build(s)) >= 1.0;
}

// Puts candidate `k` on the train: its PRs are merging into it, and it is built.
void start(Ctx& c, Candidate k, std::set<int>& taken) {
  for (int m : k.prs) {
    taken.insert(m);
    c.pr(m).status = PrStatus::Merging;
    c.pr(m).candidate = k.id;
  }
  c.emit(build_action(c.s, k));
  c.s.train.push_back(std::move(k));
}

// The PRs of `lane`'s chain that may conflict with `p`, in chain order.
std::vector<int> chain_overlaps(const Ctx& c, const PullRequest& p, std::uint64_t lane) {
  std::vector<int> out;
  for (const auto& k : c.s.train)
    if (!k.probe && k.lane == lane)
      for (int n : k.prs)
        if (n != p.number && may_conflict(p, c.s.prs.at(n))) out.push_back(n);
  return out;
}

// Adaptive under load, probe first: every PR is first built beside the chain, on master with
// the PRs of its lane's chain that may conflict with it (a probe), so that a bad PR, or a
// conflict with what is ahead, fails one build instead of every candidate behind it. A PR whose
// probe passed joins the chain in a batch with others whose probes passed, as long as the chain
// holds at most kUntestedOverlaps PRs its probe was not built with that may conflict with it
// (more while their learned risk allows); otherwise it is probed again. Candidates (probes and
// chain) are bounded by window_max, the runners.
void schedule_probe_first(Ctx& c, const std::vector<int>& order,
                          const std::map<int, double>& risk) {
  auto& s = c.s;
  const std::size_t runners = std::max<std::size_t>(1, c.cfg.window_max);
  const std::size_t batch = std::max<std::size_t>(1, c.cfg.max_batch);
  const Backlog backlog = backlog_of(s);
  const double sent_back = std::max(backlog.in_train + backlog.queued, arrivals_per_build(s));
  auto fits = [&](const PullRequest& p, const std::vector<int>& with) {
    const int untested = p.untested + untested_with(c, p, with);
    if (p.probed && untested <= kUntestedOverlaps) return true;
    if (!p.probed && (p.failures > 0 || p.group != 0)) return false;
    // A passed probe tested the PR itself: what is left is the PRs it was not built with.
    const double own = p.probed ? 0.0 : risk.at(p.number);
    const auto r = risk_with_overlaps(s, own, untested, kUntestedOverlaps);
    return r && *r * sent_back < 1.0;
  };
  std::set<int> taken;
  for (std::size_t at = 0; at < order.size() && s.train.size() < runners; ++at) {
    const int n = order[at];
    if (taken.count(n)) continue;
    PullRequest& p = c.pr(n);
    const std::uint64_t lane = lane_for(c, p);
    const Candidate* tail = tail_of(s, lane);
    if (tail && ends_chain(c, *tail)) continue;  // wait for a policy change to land
    std::vector<int> with = tail ? prs_up_to(s, *tail) : std::vector<int>{};
    const bool probe = p.group == 0 ? !fits(p, with) : !p.probed;
    if (!probe && tail && tail->sha.empty()) continue;  // wait for the tail's sha to build on
    Candidate k;
    k.id = s.next_candidate++;
    k.lane = lane;
    k.base = tail ? tail->sha : s.master;
    k.created_at = c.at;
    if (probe) {
      k.lane = k.id;
      k.probe = true;
      k.prs = {n};
      // On master with the PRs of the chain that may conflict with it: tested with each PR it
      // may conflict with, and left building when the chain is cut (its merges do not change).
      k.base = s.master;
      k.with = chain_overlaps(c, p, lane);
      p.probed = false;
      p.probed_with = k.with;
      p.untested = 0;
    } else {  // a bisected group builds alone; others in a batch of PRs that fit
      for (std::size_t j = at; j < order.size(); ++j) {
        const PullRequest& q = c.pr(order[j]);
        const bool joins = p.group != 0 ? q.group == p.group
                                        : q.group == 0 && k.prs.size() < batch && fits(q, with) &&
                                              (j == at || lane_for(c, q) == lane);
        if (taken.count(q.number) || !joins) continue;
        k.prs.push_back(q.number);
        with.push_back(q.number);
        if (p.group == 0 && changes_policy(c, q.number)) break;
      }
      policy_change_last(c, k.prs);
    }
    start(c, std::move(k), taken);
  }
}

void schedule_generic(Ctx& c) {
  auto& s = c.s;
  if (c.at < s.retry_after || s.master.empty()) return;
  interrupt_for_priority(c);
  const std::size_t window = window_of(s, c.cfg);
  const bool adaptive = c.cfg.strategy == Strategy::Adaptive;
  auto order = queue_order(s);
  if (order.empty()) return;
  // Adaptive: PRs entering the train together go in order of how likely they are to pass,
  // so that a likely failure sits behind as little as possible.
  std::map<int, double> risk;
  std::map<int, bool> probe;
  if (adaptive) {
    for (int n : order) risk[n] = risk_of(s, c.pr(n));
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      const auto& pa = c.pr(a);
      const auto& pb = c.pr(b);
      if (pa.priority != pb.priority) return pa.priority > pb.priority;
      if ((pa.group != 0) != (pb.group != 0)) return pa.group != 0;  // bisections first
      return risk[a] < risk[b];
    });
    if (under_load(c.cfg, s)) return schedule_probe_first(c, order, risk);
    // A PR touching paths that PRs ahead of it (in the train, or waiting before it) touch may
    // conflict with them: it is probed on the tip of the train, beside it, so that a conflict
    // fails the probe rather than every candidate that would be built behind it, unless such
    // PRs are seen not to fail builds here (wants_probe).
    // How many PRs ahead change each path (a PR ahead sharing two paths counts twice: the
    // count errs towards probing, and stays linear in the queue).
    std::map<std::string, int> ahead_paths;
    auto add = [&](const PullRequest& p) {
      for (const auto& x : p.paths) ++ahead_paths[x];
    };
    for (const auto& k : s.train)
      if (!k.probe)
        for (int m : k.prs) add(c.pr(m));
    for (std::size_t i = 0; i < order.size(); ++i) {
      const PullRequest& p = c.pr(order[i]);
      int overlaps = 0;
      for (const auto& x : p.paths)
        if (auto it = ahead_paths.find(x); it != ahead_paths.end()) overlaps += it->second;
      probe[order[i]] = wants_probe(s, p, risk[order[i]], order.size() - i - 1, overlaps);
      add(p);
    }
  }
  std::set<int> taken;
  std::set<std::uint64_t> blocked_lanes;  // whose tail is still merging
  for (std::size_t at = 0; at < order.size(); ++at) {
    const int n = order[at];
    if (taken.count(n)) continue;
    PullRequest& p = c.pr(n);
    std::size_t in_flight = 0;  // adaptive: probes share the window (the runners)
    for (const auto& k : s.train) in_flight += adaptive || !k.probe ? 1 : 0;
    if (in_flight >= window) break;
    if (adaptive && probe[n]) {
      Candidate k;
      k.id = s.next_candidate++;
      k.lane = k.id;
      k.probe = true;
      k.prs = {n};
      k.base = s.master;
      // On the newest candidate of its lane that has a sha: built with what is ahead of it.
      const std::uint64_t lane = lane_for(c, p);
      for (const auto& t : s.train)
        if (!t.probe && t.lane == lane && !t.sha.empty()) k.base = t.sha;
      k.created_at = c.at;
      start(c, std::move(k), taken);
      continue;
    }
    const std::uint64_t lane = lane_for(c, p);
    if (blocked_lanes.count(lane)) continue;
    const Candidate* tail = tail_of(s, lane);
    // Wait for the tail's sha to build on, or for a policy change to land.
    if (tail && (tail->sha.empty() || ends_chain(c, *tail))) {
      blocked_lanes.insert(lane);
      continue;
    }
    Candidate k;
    k.id = s.next_candidate++;
    k.lane = lane;
    k.base = tail ? tail->sha : s.master;
    k.created_at = c.at;
    if (p.group != 0) {
      for (std::size_t j = at; j < order.size(); ++j)
        if (c.pr(order[j]).group == p.group && !taken.count(order[j])) k.prs.push_back(order[j]);
      policy_change_last(c, k.prs);
    } else {
      std::size_t waiting = 0;
      for (std::size_t j = at; j < order.size(); ++j) waiting += taken.count(order[j]) ? 0 : 1;
      const std::size_t size = batch_size(s, c.cfg, waiting, window - in_flight);
      for (std::size_t j = at; j < order.size() && k.prs.size() < size; ++j) {
        const auto& q = c.pr(order[j]);
        if (taken.count(q.number) || q.group != 0) continue;
        if (adaptive && probe[q.number]) continue;
        if (j != at && lane_for(c, q) != lane) continue;
        k.prs.push_back(q.number);
        if (changes_policy(c, q.number)) break;
      }
    }
    start(c, std::move(k), taken);
  }
}

// The tip of the train (its last candidate that is not a probe), if any.
const Candidate* tip_of(const RepoState& s) {
  const Candidate* tip = nullptr;
  for (const auto& k : s.train)
    if (!k.probe) tip = &k;
  return tip;
}

// After an event: dmz follows the tip when candidates were cut, and their branches go.
void finish_event(Ctx& c, const std::set<CandidateId>& before) {
  std::set<CandidateId> now;
  for (const auto& k : c.s.train) now.insert(k.id);
  if (c.dmz_stale) {
    const Candidate* tip = tip_of(c.s);
    if (!tip)
      c.emit(ResetDmz{c.s.master});
    else if (!tip->sha.empty())
      c.emit(ResetDmz{tip->sha});
    // else: the tip is being merged; its push moves dmz
  }
  const bool shrank =
      std::any_of(before.begin(), before.end(), [&](CandidateId id) { return !now.count(id); });
  if (c.cfg.candidate_branches && shrank)
    c.emit(PruneCandidates{std::vector<CandidateId>(now.begin(), now.end())});
}

// A candidate failed for good in a way that is nobody's to bisect (serial: any failure): its
// PRs are Failed, later ones re-queued.
void back_out(Ctx& c, std::size_t index, Reason code, const std::string& reason,
              const std::vector<std::string>& details) {
  for (int n : cut(c, index)) fail(c, c.pr(n), code, reason, details);
}

void transient(Ctx& c, std::size_t index, const std::string& message) {
  const std::string text = "transient error: " + message + "; retrying in " +
                           std::to_string(c.cfg.retry_backoff / 1000) + "s";
  // A chain that was landing goes back whole: its landing candidates all wait for the push.
  if (generic(c.cfg) && c.s.train[index].status == CandidateStatus::Landing)
    index = chain_of(c.s, c.s.train[index]).front();
  for (int n : cut(c, index)) {
    requeue(c, c.pr(n));
    // Closed or pushed to meanwhile (the PR has left the queue and was told why): not retried.
    if (in_queue(c.pr(n).status)) c.notify(c.pr(n), NoticeKind::Info, Reason::TransientError, text);
  }
  c.s.retry_after = c.at + c.cfg.retry_backoff;
}

void land(Ctx& c) {
  if (generic(c.cfg))
    try_land(c);
  else
    land_front_if_green(c);
}

// The scheduling step after every event: fill the train from the queue.
void schedule(Ctx& c) {
  if (generic(c.cfg)) return schedule_generic(c);
  auto& s = c.s;
  const std::size_t batch = std::max<std::size_t>(1, c.cfg.max_batch);
  while (s.train.size() < c.cfg.max_train && c.at >= s.retry_after) {
    const Sha base = s.train.empty() ? s.master : s.train.back().sha;
    if (base.empty()) return;  // the tail is still merging (or master unknown): wait
    if (!s.train.empty() && ends_chain(c, s.train.back())) return;  // a policy change lands first
    auto order = queue_order(s);
    if (order.empty()) return;
    if (order.size() > batch) order.resize(batch);
    auto change =
        std::find_if(order.begin(), order.end(), [&](int n) { return changes_policy(c, n); });
    if (change != order.end()) order.erase(change + 1, order.end());
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

// Closed on the forge (or moved off master): only a reopening brings it back.
bool closed(const PullRequest& pr) {
  return pr.status == PrStatus::Cancelled && pr.reason_code == Reason::Closed;
}

Verdict on(Ctx& c, const PrOpened& e) {
  if (e.number <= 0) return invalid("invalid pull request number " + std::to_string(e.number));
  if (e.head.empty()) return invalid("pull request " + pr_name(e.number) + " has no head sha");
  if (auto* pr = c.find(e.number)) {
    if (closed(*pr)) {
      if (!e.reopens) return std::nullopt;  // a late word of it from while it was open
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
      // Closed while landing, then reopened: a cut landing queues it again.
      if (e.reopens && pr->reason_code == Reason::Closed && c.landing(*pr)) {
        pr->reason_code = Reason::None;
        pr->reason.clear();
      }
      return std::nullopt;
    }
    // A word of the PR from before or after a push (a label, an edit, a push's own webhook):
    // its head moves only by PrPushed, which tells a late push from a new one.
    if (!e.reopens) return std::nullopt;
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
    for (int n : cut(c, *i))
      if (n != pr->number) requeue(c, c.pr(n));
  drop_approval(c, *pr, e.rewritten);
  return std::nullopt;
}

Verdict on(Ctx& c, const PrClosed& e) {
  auto* pr = c.find(e.number);
  if (!pr) return unknown(e.number);
  if (pr->status == PrStatus::Merged || pr->status == PrStatus::Cancelled) return std::nullopt;
  if (c.landing(*pr)) {  // its push is in flight: it lands, or leaves the queue (requeue)
    pr->reason_code = Reason::Closed;
    pr->reason = "closed while landing";
    return std::nullopt;
  }
  if (stage(pr->status) == Stage::Idle) {  // nothing to take out of the queue
    mark_closed(c, *pr);
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
  if (closed(*pr)) return conflict(pr_name(e.number) + " is closed; reopen it first");
  const Stage st = stage(pr->status);
  const bool pinned_here = pr->approval && pr->approval->sha == e.sha;
  if ((st == Stage::Waiting || st == Stage::InTrain) && pinned_here) return std::nullopt;
  if (st == Stage::InTrain)  // only a landing candidate keeps a PR whose head moved
    return conflict(pr_name(e.number) + " is landing at " +
                    short_sha(pr->approval ? pr->approval->sha : Sha()) +
                    "; newer commits need a new pull request");
  approve(c, *pr, Approval{e.sha, e.approver, e.at});
  observe_arrival(c);
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
  if (closed(*pr)) return conflict(pr_name(e.number) + " is closed; reopen it first");
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
  // Asked for before the policy may have changed (a landing that touched .dmz/, a push to
  // master): not taken, it is judged again under the current one. A landing that left the
  // policy as it was does not void it: a slow check still ends on a busy queue.
  if (e.epoch != c.s.policy_epoch) {
    c.emit(ask_policy(c.s, *pr));
    return std::nullopt;
  }
  pr->signers = e.signers;
  pr->approvers = e.approvers;
  if (e.pass) {
    pr->status = PrStatus::Queued;
    pr->judged_epoch = e.epoch;
    pr->judged_tag = e.tag;
    pr->paths = e.paths;
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
  k.paused_ms = 0;
  for (int n : k.prs) {
    c.pr(n).status = PrStatus::InDmz;
    c.pr(n).merge_errors = 0;
  }
  c.emit(CheckCandidate{k.id, k.sha, k.base});
  c.emit(StartBuild{k.id, k.sha});
}

// Whether the merge of train[index] failed on one of its own PRs.
bool in_candidate(const Ctx& c, std::size_t index, int culprit) {
  const auto& prs = c.s.train[index].prs;
  return std::find(prs.begin(), prs.end(), culprit) != prs.end();
}

// The merge of train[index] failed on `culprit`: it fails; the candidate's other PRs and the
// later candidates go back to their place.
void fail_merge_of(Ctx& c, std::size_t index, const std::set<int>& culprits, Reason code,
                   const std::string& reason, const std::vector<std::string>& details) {
  for (int n : cut(c, index)) {
    if (culprits.count(n))
      fail(c, c.pr(n), code, reason, details);
    else
      requeue(c, c.pr(n));
  }
}

void conflicted(Ctx& c, std::size_t index, const MergeDone& e) {
  if (!in_candidate(c, index, e.culprit))
    return transient(c, index,
                     "conflict reported for " + pr_name(e.culprit) +
                         ", which is not in candidate " + std::to_string(c.s.train[index].id));
  const bool nothing_new = e.conflicts.size() == 1 && e.conflicts[0].starts_with(kNothingToMerge);
  const std::string reason =
      nothing_new ? e.conflicts[0] +
                        "; its commits have landed or are in a PR ahead of it: push new commits "
                        "and ask for approval again, or close it"
                  : "merge conflict in " + join(e.conflicts, ", ") +
                        "; merge master into the branch (or rebase), push, and ask for approval "
                        "again";
  // Built on a candidate that may still fail: the conflict may be with a PR that never lands.
  // The culprit waits for that candidate's fate (landed: to blame; failed: built again).
  if (inconclusive(c, c.s.train[index])) return probe_again(c, index);
  if (generic(c.cfg))
    if (const auto ahead = ahead_of(c, index)) {
      for (int n : cut_lane(c, index))
        if (n != e.culprit) requeue(c, c.pr(n));
      hold(c, {e.culprit}, *ahead, Reason::MergeConflict, reason, e.conflicts);
      return;
    }
  fail_merge_of(c, index, {e.culprit}, Reason::MergeConflict, reason, e.conflicts);
}

// Git failed to build the candidate. A failure of one PR's merge is retried as transient until
// it has failed kMaxMergeErrors times in a row: then that PR fails (a head git cannot merge
// would otherwise hold the queue forever) and the others keep their place. Any other failure
// (the push, the remote) is nobody's fault and is retried for as long as it lasts.
void merge_failed(Ctx& c, std::size_t index, const MergeDone& e) {
  if (!in_candidate(c, index, e.culprit) || ++c.pr(e.culprit).merge_errors < kMaxMergeErrors)
    return transient(c, index, e.message);
  fail_merge_of(c, index, {e.culprit}, Reason::Unmergeable,
                "dmzbot could not merge its head " + short_sha(c.pr(e.culprit).head) + " (" +
                    std::to_string(kMaxMergeErrors) + " tries): " + e.message +
                    "; push a new head (or rebase) and ask for approval again",
                {e.message});
}

Verdict on(Ctx& c, const MergeDone& e) {
  auto i = index_of(c.s, e.candidate);
  if (!i || c.s.train[*i].status != CandidateStatus::Merging) {  // stale
    // Its branch may have been pushed after the prune that followed its removal.
    if (!i && e.outcome == MergeOutcome::Merged && c.cfg.candidate_branches) {
      std::vector<CandidateId> keep;
      for (const auto& k : c.s.train) keep.push_back(k.id);
      c.emit(PruneCandidates{keep});
    }
    return std::nullopt;
  }
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
      merge_failed(c, *i, e);
      break;
  }
  return std::nullopt;
}

Verdict on(Ctx& c, const CandidateChecked& e) {
  auto i = index_of(c.s, e.candidate);
  if (!i || c.s.train[*i].sha != e.sha || !on_dmz(c.s.train[*i].status))
    return std::nullopt;  // stale: the candidate was dropped or rebuilt
  if (!e.unavailable.empty()) {
    transient(c, *i, "checking candidate " + std::to_string(e.candidate) + ": " + e.unavailable);
    return std::nullopt;
  }
  if (!e.pass) {
    const std::string reason =
        "policy (candidate): " + (e.reasons.empty() ? std::string("failed") : e.reasons.front());
    // The merges of some of its PRs failed: those PRs fail, the others go back to their place.
    std::set<int> culprits;
    for (int n : c.s.train[*i].prs)
      for (const auto& head : e.culprits)
        if (merged_head(c.pr(n)) == head) culprits.insert(n);
    if (culprits.empty())  // about none in particular (or all): every PR of it fails
      culprits.insert(c.s.train[*i].prs.begin(), c.s.train[*i].prs.end());
    fail_merge_of(c, *i, culprits, Reason::CandidatePolicyFailed, reason, e.reasons);
    return std::nullopt;
  }
  c.s.train[*i].policy_passed = true;
  land(c);  // with no required checks a candidate lands at once
  return std::nullopt;
}

// A PR head's own CI before the queue: the adaptive strategy's hint of its risk.
void record_precheck(Ctx& c, const CheckReported& e) {
  if (!generic(c.cfg) || !is_required(c.cfg, e.check.context)) return;
  for (auto& [n, pr] : c.s.prs) {
    if (pr.head != e.sha || pr.status == PrStatus::Merged) continue;
    if (e.check.state == CheckState::Failure || e.check.state == CheckState::Error)
      pr.precheck = e.check.state;
    else if (e.check.state == CheckState::Success && pr.precheck == CheckState::Pending)
      pr.precheck = CheckState::Success;
  }
}

// A probe passed: its PR goes back to its place in the queue, cleared to join the train, out
// of any group (one of its own from blame(), or a held batch): it joins in a batch with the PRs
// that fit, as any probed PR does.
void probe_passed(Ctx& c, std::size_t index) {
  for (int n : cut_lane(c, index)) {
    requeue(c, c.pr(n));
    c.pr(n).probed = true;
    c.pr(n).group = 0;
  }
}

Verdict on(Ctx& c, const CheckReported& e) {
  auto i = index_of_sha(c.s, e.sha);
  if (!i) {  // not a candidate of ours (any more), or a PR head's own CI
    record_precheck(c, e);
    return std::nullopt;
  }
  auto& k = c.s.train[*i];
  const bool was_green = green(k, c.cfg);
  Check check = e.check;
  if (check.at == 0) check.at = c.at;
  const bool bad = check.state == CheckState::Failure || check.state == CheckState::Error;
  const bool required = is_required(c.cfg, check.context);
  std::optional<Check> announced;  // the Pending that announced the run this report is about
  if (auto it = k.checks.find(check.context); it != k.checks.end()) {
    if (it->second.state == CheckState::Pending)
      announced = it->second;
    else if (check.state == CheckState::Pending)
      // A run's start that arrives after its end (GitHub does not deliver in order) does not
      // take the end back; a run started again reports its own end later.
      return std::nullopt;
  }
  // Built again in place (flaky): the failure of a run announced before the retry started is
  // the failed attempt's, ending late or reported again, not the retry's, whose runs announce
  // themselves first (Check::at is when a report arrived). A CI that never reports Pending is
  // taken at its word.
  if (bad && required && k.attempt > 1 && announced && announced->at <= k.pushed_at)
    return std::nullopt;
  k.checks[check.context] = check;
  if (!on_dmz(k.status)) return std::nullopt;  // landing: too late to matter
  if (bad && required) {
    observe_build(c, k);
    observe_overlaps(c, k, true);
    const std::string what =
        check.description.empty() ? std::string(to_string(check.state)) : check.description;
    std::vector<std::string> details;
    if (!check.url.empty()) details.push_back(check.url);
    const std::string reason =
        "check " + check.context + " failed: " + what +
        "; push a fix and ask for approval again, or retry if the PR was not the cause";
    if (generic(c.cfg)) {
      fail_candidate(c, *i, Reason::BuildFailed, reason, details, announced);
    } else {
      if (k.prs.size() == 1) observe_pr(c, c.pr(k.prs.front()), true);
      back_out(c, *i, Reason::BuildFailed, reason, details);
    }
    return std::nullopt;
  }
  if (k.status == CandidateStatus::InDmz) {
    k.status = CandidateStatus::Building;
    for (int n : k.prs) c.pr(n).status = PrStatus::Building;
  }
  if (!was_green && green(k, c.cfg)) {
    observe_build(c, k);
    observe_overlaps(c, k, false);
    k.failed = false;  // a retry (or a late report) cleared the earlier failure
  }
  land(c);
  // A green probe that could not land: its PR joins the train, cleared.
  if (auto j = index_of_sha(c.s, e.sha); j && c.s.train[*j].probe &&
                                         c.s.train[*j].status != CandidateStatus::Landing &&
                                         green(c.s.train[*j], c.cfg))
    probe_passed(c, *j);
  return std::nullopt;
}

// Whether landing train[index] (with the candidates ahead of it in its chain, which land with
// it: land_chain, or the front alone: landed) changes what the policy is made of (.dmz/: the
// policy, its keys). The gate fails a PR whose changes it cannot read, so a PR's paths are all
// it changes.
bool landing_changes_policy(const Ctx& c, std::size_t index) {
  std::vector<std::size_t> landing = {index};
  if (generic(c.cfg)) {
    landing.clear();
    for (auto j : chain_of(c.s, c.s.train[index])) {
      landing.push_back(j);
      if (j == index) break;
    }
  }
  return std::any_of(landing.begin(), landing.end(),
                     [&](std::size_t j) { return ends_chain(c, c.s.train[j]); });
}

// A landing changed what the policy is made of: every PR still queued or in the train was
// judged under the old one, at an older master. Each is judged again at the new master,
// keeping its place; the candidates left are cut, as they hold PRs judged under the old policy.
void judge_again_after_policy_change(Ctx& c) {
  resolve_holds(c);  // first: judging again forgets whom a PR was held on, and what landed
  while (!c.s.train.empty()) requeue_cut(c, 0);
  judge_queued_again(c, "the policy changed on master: judged again under it");
}

Verdict on(Ctx& c, const MasterPushed& e) {
  auto i = index_of(c.s, e.candidate);
  if (!i || c.s.train[*i].status != CandidateStatus::Landing) return std::nullopt;  // stale
  const Sha sha = c.s.train[*i].sha;
  if (e.ok || e.remote_master == sha) {  // the remote already has it: a repeated push
    // Known before it lands: a landing that changes the policy starts no other landing, and
    // what waits is judged again after it.
    const bool policy_changed = landing_changes_policy(c, *i);
    c.hold_landings = policy_changed;
    if (generic(c.cfg))
      land_chain(c, e.candidate);
    else
      landed(c);
    if (policy_changed) judge_again_after_policy_change(c);
    return std::nullopt;
  }
  if (!e.remote_master.empty() && e.remote_master != c.s.master) {
    rebuild_on(c, e.remote_master);
    return std::nullopt;
  }
  if (e.remote_master.empty()) {
    // No answer, and the remote could not be read after it: the push may have moved master.
    // Cut and rebuilt, a landing that did happen would land twice (and a PR closed or pushed
    // to meanwhile would stay closed or open though master holds it); so the candidates stay
    // Landing and, after the backoff (a tick), the same push is made again, or, when something
    // that came while it was in flight forbids landing it now (a PR closed or pushed to, a
    // policy change), master is read (push_again). A fetch that sees master at the candidate
    // lands it meanwhile.
    const bool allowed = landing_allowed(c.s);
    const std::string text = "pushing master failed: " + e.message + "; " +
                             (allowed ? "trying again" : "reading master") + " in " +
                             std::to_string(c.cfg.retry_backoff / 1000) + "s";
    for (const auto& k : c.s.train)
      if (k.status == CandidateStatus::Landing)
        for (int n : k.prs) c.notify(c.pr(n), NoticeKind::Info, Reason::TransientError, text);
    c.s.retry_after = c.at + c.cfg.retry_backoff;
    return std::nullopt;
  }
  // Refused with master where it was (a hook, a protection; or the read of a landing no
  // longer allowed): nothing landed, the train is rebuilt, and a close or push that came
  // meanwhile takes effect (requeue).
  transient(c, *i, "pushing master failed: " + e.message);
  return std::nullopt;
}

Verdict on(Ctx& c, const MasterObserved& e) {
  if (e.sha.empty() || e.sha == c.s.master) return std::nullopt;
  if (auto t = landing_target(c.s)) {
    // Master already at the candidate being pushed: landed (its push's answer, or the retry
    // of a push whose answer was lost, then finds it there and is stale).
    if (c.s.train[*t].sha == e.sha)
      return on(c, MasterPushed{c.s.train[*t].id, true, e.sha, "master seen at it", c.at});
    return std::nullopt;  // MasterPushed will tell
  }
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
  // A candidate already being built is not interrupted (unless Settings::priority_interrupts:
  // the scheduling step after this event cuts lower candidates); the waiting PRs reorder.
  c.notify(
      *pr, NoticeKind::Info, Reason::None,
      "priority of " + pr_name(e.number) + " set to " + std::to_string(e.priority) + " by " + e.by);
  return std::nullopt;
}

// A forge review was withdrawn (dismissed, or changes requested since): the verdict may have
// counted it, and forge reviews are read when the policy is checked, so the PR is judged again.
// A candidate holding it is cut first (what was behind it goes back to its place), unless it is
// landing already. A PR whose verdict counted no approval needed none.
Verdict on(Ctx& c, const ReviewWithdrawn& e) {
  auto* pr = c.find(e.number);
  if (!pr) return unknown(e.number);
  if (pr->approvers.empty() || !pr->approval) return std::nullopt;
  if (pr->status != PrStatus::Queued && stage(pr->status) != Stage::InTrain) return std::nullopt;
  if (c.landing(*pr)) return std::nullopt;
  if (pr->candidate)
    if (auto i = index_of(c.s, *pr->candidate)) requeue_cut(c, *i);
  if (pr->status != PrStatus::Queued) return std::nullopt;  // requeue dropped its approval
  judge_again(c, *pr);
  c.notify(*pr, NoticeKind::Info, Reason::None,
           "a review by @" + e.reviewer + " was withdrawn: judged again");
  return std::nullopt;
}

// The operator changed the trust root: every verdict was given under the old one (it is the
// policy of a target without .dmz/policy.toml, and the anchor of the chain of policies). The
// candidates not yet landing are cut and everything waiting is judged again; a landing already
// pushing master finishes, as it would had the edit come a moment later.
Verdict on(Ctx& c, const TrustRootRead& e) {
  if (e.digest == c.s.trust_root) return std::nullopt;
  c.s.trust_root = e.digest;
  auto building = [&] {  // each chain's landing candidates come first in it
    return std::find_if(c.s.train.begin(), c.s.train.end(),
                        [](const Candidate& k) { return k.status != CandidateStatus::Landing; });
  };
  for (auto k = building(); k != c.s.train.end(); k = building())
    requeue_cut(c, static_cast<std::size_t>(k - c.s.train.begin()));
  judge_queued_again(c, "dmzbot's trust root (policy_root) changed: judged again under it");
  return std::nullopt;
}

Verdict on(Ctx& c, const Tick& e) {
  // While CI results cannot be observed (the forge is down), a silent check is nobody's fault:
  // the time is added to each waiting candidate's deadline rather than failing its PRs.
  if (e.unobserved_ms > 0)
    for (auto& k : c.s.train)
      if (on_dmz(k.status) && c.at > k.pushed_at)
        k.paused_ms += std::min(e.unobserved_ms, c.at - k.pushed_at);
  for (std::size_t i = 0; i < c.s.train.size() && !e.blind; ++i) {
    const auto& k = c.s.train[i];
    if (!on_dmz(k.status) || c.at < k.pushed_at + k.paused_ms + c.cfg.check_timeout) continue;
    const auto missing = not_green(k, c.cfg);
    if (missing.empty()) continue;
    const std::string paused =
        k.paused_ms > 0
            ? " (not counting " + std::to_string(k.paused_ms / 1000) + "s when the forge was down)"
            : "";
    const std::string reason =
        "check " + join(missing, ", ") + " did not report within " +
        std::to_string(c.cfg.check_timeout / 1000) + "s" + paused +
        "; make sure CI builds the dmz branch and reports this check, then retry";
    if (generic(c.cfg))
      fail_candidate(c, i, Reason::CheckTimeout, reason, missing);
    else
      back_out(c, i, Reason::CheckTimeout, reason, missing);
    break;  // later candidates went with it
  }
  // A push of master that failed without an answer is made again once the backoff is over (or
  // master is read, when the landing is no longer allowed).
  if (c.s.retry_after != 0 && c.at >= c.s.retry_after)
    if (auto t = landing_target(c.s)) {
      c.s.retry_after = 0;
      c.emit(push_again(c.s, c.s.train[*t]));
    }
  return std::nullopt;
}

}  // namespace

Outcome handle(RepoState& state, const Event& event, const Settings& settings) {
  try {
    RepoState work = state;  // applied to a copy: a rejection leaves `state` untouched
    Ctx c{work, settings, time_of(event), {}};
    std::set<CandidateId> before;
    for (const auto& k : work.train) before.insert(k.id);
    if (Verdict v = std::visit([&](const auto& e) { return on(c, e); }, event))
      return Outcome{std::move(*v), {}};
    resolve_holds(c);  // every strategy: held PRs survive a switch to serial
    schedule(c);
    finish_event(c, before);  // every strategy: serial candidates have branches too
    state = std::move(work);
    return Outcome{std::nullopt, std::move(c.out)};
  } catch (const std::exception& e) {
    return Outcome{internal(std::string("internal error: ") + e.what()), {}};
  }
}

std::vector<Action> resume(const RepoState& state, const Settings& settings) {
  std::vector<Action> out;
  for (const auto& [n, pr] : state.prs)
    if (pr.status == PrStatus::Approved && pr.approval) out.push_back(ask_policy(state, pr));
  for (std::size_t i = 0; i < state.train.size(); ++i) {
    const Candidate& k = state.train[i];
    switch (k.status) {
      case CandidateStatus::Merging:
        out.push_back(build_action(state, k));
        break;
      case CandidateStatus::InDmz:
      case CandidateStatus::Building:
        if (!k.policy_passed) out.push_back(CheckCandidate{k.id, k.sha, k.base});
        out.push_back(StartBuild{k.id, k.sha, k.attempt});
        break;
      case CandidateStatus::Landing:
        if (landing_target(state) == i) out.push_back(push_again(state, k));
        break;
    }
  }
  // With an empty train dmz must be master; a back-out's reset may have been lost in a crash.
  // Forcing dmz to where it already is changes nothing.
  if (state.train.empty() && !state.master.empty()) {
    out.push_back(ResetDmz{state.master});
  } else if (generic(settings)) {
    const Candidate* tip = tip_of(state);
    if (!tip && !state.master.empty())  // probes alone (one may have landed): dmz is master
      out.push_back(ResetDmz{state.master});
    else if (tip && !tip->sha.empty())
      out.push_back(ResetDmz{tip->sha});
  }
  if (settings.candidate_branches) {
    PruneCandidates prune;
    for (const auto& k : state.train) prune.keep.push_back(k.id);
    out.push_back(std::move(prune));
  }
  return out;
}

std::vector<int> queue_order(const RepoState& state) {
  std::vector<const PullRequest*> queued;
  for (const auto& [n, pr] : state.prs)
    if (pr.status == PrStatus::Queued && !pr.held_by) queued.push_back(&pr);
  std::stable_sort(queued.begin(), queued.end(), [](const auto* a, const auto* b) {
    if (a->priority != b->priority) return a->priority > b->priority;
    return a->queued_at < b->queued_at;  // the map already orders by number
  });
  std::vector<int> out;
  for (const auto* pr : queued) out.push_back(pr->number);
  return out;
}

}  // namespace dmz::queue

#include "queue/json.hpp"

#include <nlohmann/json.hpp>

#include "queue/engine.hpp"

namespace dmz::queue {
namespace {

using nlohmann::json;

template <class... Ts>
struct overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
overloaded(Ts...) -> overloaded<Ts...>;

std::string_view to_string(MergeOutcome o) {
  switch (o) {
    case MergeOutcome::Merged:
      return "merged";
    case MergeOutcome::Conflict:
      return "conflict";
    case MergeOutcome::Error:
      return "error";
  }
  return "?";
}

template <class T>
json or_null(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

json check_json(const Check& c) {
  return {{"context", c.context},
          {"state", to_string(c.state)},
          {"description", c.description},
          {"url", c.url},
          {"at", c.at}};
}

json approval_json(const std::optional<Approval>& a) {
  if (!a) return nullptr;
  return {{"sha", a->sha}, {"approver", a->approver}, {"at", a->at}};
}

// A PR's changed paths in the queue document: the first kMaxPaths (a huge PR would bloat it).
constexpr std::size_t kMaxPaths = 100;
json paths_json(const std::vector<std::string>& paths) {
  json out = json::array();
  for (std::size_t i = 0; i < paths.size() && i < kMaxPaths; ++i) out.push_back(paths[i]);
  return out;
}

json pr_json(const PullRequest& pr, std::optional<std::size_t> position) {
  return {{"number", pr.number},
          {"branch", pr.branch},
          {"author", pr.author},
          {"title", pr.title},
          {"head", pr.head},
          {"status", to_string(pr.status)},
          {"approval", approval_json(pr.approval)},
          {"reason_code", to_string(pr.reason_code)},
          {"reason", pr.reason},
          {"details", pr.details},
          {"candidate", or_null(pr.candidate)},
          {"position", or_null(position)},
          {"queued_at", pr.queued_at},
          {"finished_at", pr.finished_at},
          {"priority", pr.priority},
          {"paths", paths_json(pr.paths)},
          {"precheck", to_string(pr.precheck)},
          {"held_by", or_null(pr.held_by)},
          {"group", pr.group},
          {"probed", pr.probed},
          {"failures", pr.failures},
          {"merge_errors", pr.merge_errors},
          {"signers", pr.signers},
          {"approvers", pr.approvers}};
}

json candidate_json(const Candidate& k) {
  json checks = json::array();
  for (const auto& [context, check] : k.checks) checks.push_back(check_json(check));
  return {{"id", k.id},
          {"prs", k.prs},
          {"base", k.base},
          {"sha", k.sha},
          {"status", to_string(k.status)},
          {"checks", checks},
          {"created_at", k.created_at},
          {"pushed_at", k.pushed_at},
          {"paused_ms", k.paused_ms},
          {"policy_passed", k.policy_passed},
          {"lane", k.lane},
          {"probe", k.probe},
          {"with", k.with},
          {"attempt", k.attempt},
          {"failed", k.failed}};
}

// ---- events: the fields of each, without "type" ----

json fields(const PrOpened& e) {
  json j{{"number", e.number}, {"branch", e.branch}, {"author", e.author},
         {"title", e.title},   {"head", e.head},     {"at", e.at}};
  if (!e.reopens) j["reopens"] = false;
  return j;
}
json fields(const PrPushed& e) {
  return {{"number", e.number}, {"head", e.head}, {"at", e.at}, {"rewritten", e.rewritten}};
}
json fields(const PrClosed& e) { return {{"number", e.number}, {"at", e.at}}; }
json fields(const MergeRequested& e) {
  return {{"number", e.number}, {"sha", e.sha}, {"approver", e.approver}, {"at", e.at}};
}
json fields(const CancelRequested& e) { return {{"number", e.number}, {"by", e.by}, {"at", e.at}}; }
json fields(const RetryRequested& e) { return {{"number", e.number}, {"by", e.by}, {"at", e.at}}; }
json fields(const PolicyChecked& e) {
  return {{"number", e.number},   {"sha", e.sha},
          {"pass", e.pass},       {"reasons", e.reasons},
          {"at", e.at},           {"paths", e.paths},
          {"signers", e.signers}, {"approvers", e.approvers},
          {"target", e.target},   {"epoch", e.epoch},
          {"tag", e.tag},         {"unavailable", e.unavailable}};
}
json fields(const MergeDone& e) {
  return {{"candidate", e.candidate},
          {"outcome", to_string(e.outcome)},
          {"sha", e.sha},
          {"culprit", e.culprit},
          {"conflicts", e.conflicts},
          {"message", e.message},
          {"at", e.at}};
}
json fields(const CandidateChecked& e) {
  return {{"candidate", e.candidate}, {"sha", e.sha}, {"pass", e.pass},
          {"reasons", e.reasons},     {"at", e.at},   {"unavailable", e.unavailable},
          {"culprits", e.culprits}};
}
json fields(const CheckReported& e) {
  return {{"sha", e.sha}, {"check", check_json(e.check)}, {"at", e.at}};
}
json fields(const MasterPushed& e) {
  return {{"candidate", e.candidate},
          {"ok", e.ok},
          {"remote_master", e.remote_master},
          {"message", e.message},
          {"at", e.at}};
}
json fields(const MasterObserved& e) { return {{"sha", e.sha}, {"at", e.at}}; }
json fields(const Tick& e) {
  json out{{"at", e.at}};
  if (e.unobserved_ms > 0) out["unobserved_ms"] = e.unobserved_ms;
  if (e.blind) out["blind"] = true;
  return out;
}
json fields(const Reply& e) {
  return {{"number", e.number},
          {"kind", to_string(e.kind)},
          {"message", e.message},
          {"details", e.details},
          {"at", e.at}};
}
json fields(const StatusRequested& e) { return {{"number", e.number}, {"by", e.by}, {"at", e.at}}; }
json fields(const PriorityRequested& e) {
  return {{"number", e.number}, {"priority", e.priority}, {"by", e.by}, {"at", e.at}};
}

json fields(const TrustRootRead& e) { return {{"digest", e.digest}, {"at", e.at}}; }
json fields(const ReviewWithdrawn& e) {
  return {{"number", e.number}, {"reviewer", e.reviewer}, {"at", e.at}};
}

// ---- actions ----

json item_json(const MergeItem& i) {
  return {{"number", i.number}, {"head", i.head},         {"branch", i.branch}, {"title", i.title},
          {"author", i.author}, {"approver", i.approver}, {"tag", i.tag}};
}

json fields(const CheckPolicy& a) {
  return {{"number", a.number}, {"sha", a.sha},       {"branch", a.branch},
          {"author", a.author}, {"target", a.target}, {"epoch", a.epoch}};
}
json fields(const BuildCandidate& a) {
  json items = json::array();
  for (const auto& i : a.items) items.push_back(item_json(i));
  return {{"candidate", a.candidate}, {"base", a.base}, {"items", items}, {"tip", a.tip}};
}
json fields(const CheckCandidate& a) {
  return {{"candidate", a.candidate}, {"sha", a.sha}, {"base", a.base}};
}
json fields(const ResetDmz& a) { return {{"sha", a.sha}}; }
json fields(const StartBuild& a) {
  return {{"candidate", a.candidate}, {"sha", a.sha}, {"attempt", a.attempt}};
}
json fields(const CancelBuild& a) { return {{"sha", a.sha}, {"candidate", a.candidate}}; }
json fields(const PruneCandidates& a) { return {{"keep", a.keep}}; }
json fields(const FastForwardMaster& a) {
  return {{"candidate", a.candidate}, {"from", a.from}, {"to", a.to}};
}
json fields(const Notify& a) {
  return {{"number", a.number},
          {"kind", to_string(a.kind)},
          {"reason", to_string(a.reason)},
          {"message", a.message},
          {"head", a.head},
          {"details", a.details}};
}

std::string action_kind(const Action& action) {
  return std::visit(overloaded{
                        [](const CheckPolicy&) { return "check_policy"; },
                        [](const BuildCandidate&) { return "build_candidate"; },
                        [](const CheckCandidate&) { return "check_candidate"; },
                        [](const ResetDmz&) { return "reset_dmz"; },
                        [](const StartBuild&) { return "start_build"; },
                        [](const CancelBuild&) { return "cancel_build"; },
                        [](const FastForwardMaster&) { return "fast_forward_master"; },
                        [](const Notify&) { return "notify"; },
                        [](const PruneCandidates&) { return "prune_candidates"; },
                    },
                    action);
}

}  // namespace

std::string event_kind(const Event& event) {
  return std::visit(overloaded{
                        [](const PrOpened&) { return "pr_opened"; },
                        [](const PrPushed&) { return "pr_pushed"; },
                        [](const PrClosed&) { return "pr_closed"; },
                        [](const MergeRequested&) { return "merge_requested"; },
                        [](const CancelRequested&) { return "cancel_requested"; },
                        [](const RetryRequested&) { return "retry_requested"; },
                        [](const PolicyChecked&) { return "policy_checked"; },
                        [](const MergeDone&) { return "merge_done"; },
                        [](const CandidateChecked&) { return "candidate_checked"; },
                        [](const CheckReported&) { return "check_reported"; },
                        [](const MasterPushed&) { return "master_pushed"; },
                        [](const MasterObserved&) { return "master_observed"; },
                        [](const Tick&) { return "tick"; },
                        [](const Reply&) { return "reply"; },
                        [](const StatusRequested&) { return "status_requested"; },
                        [](const PriorityRequested&) { return "priority_requested"; },
                        [](const TrustRootRead&) { return "trust_root_read"; },
                        [](const ReviewWithdrawn&) { return "review_withdrawn"; },
                    },
                    event);
}

nlohmann::json to_json(const Event& event) {
  json j = std::visit([](const auto& e) { return fields(e); }, event);
  j["type"] = event_kind(event);
  return j;
}

nlohmann::json to_json(const Action& action) {
  json j = std::visit([](const auto& a) { return fields(a); }, action);
  j["type"] = action_kind(action);
  return j;
}

nlohmann::json to_json(const PullRequest& pr, std::optional<std::size_t> position) {
  return pr_json(pr, position);
}

nlohmann::json to_json(const RepoState& state, const std::map<int, Millis>* eta) {
  std::map<int, std::size_t> positions;  // 1-based place in the queue
  for (int n : queue_order(state)) positions.emplace(n, positions.size() + 1);
  json prs = json::array();
  for (const auto& [n, pr] : state.prs) {
    auto it = positions.find(n);
    json j = pr_json(pr, it == positions.end() ? std::nullopt : std::optional(it->second));
    if (eta) {
      auto e = eta->find(n);
      j["eta"] = e == eta->end() ? json(nullptr) : json(e->second);
    }
    prs.push_back(std::move(j));
  }
  json train = json::array();
  for (const auto& k : state.train) train.push_back(candidate_json(k));
  return {{"repo", state.repo},
          {"master", state.master},
          {"prs", prs},
          {"train", train},
          {"retry_after", state.retry_after},
          {"next_candidate", state.next_candidate},
          {"window", state.window},
          {"policy_epoch", state.policy_epoch},
          {"trust_root", state.trust_root},
          {"observed",
           {{"build_ms", state.observed.build_ms},
            {"fail_permille", state.observed.fail_permille},
            {"builds", state.observed.builds}}}};
}

}  // namespace dmz::queue

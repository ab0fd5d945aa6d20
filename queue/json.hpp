// JSON forms of the queue's vocabulary: the queue document served by the API and the status
// page, and events/actions as written to the event log.
// Threading: pure functions.
#pragma once

#include <map>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "queue/model.hpp"

namespace dmz::queue {

// {"repo", "master", "prs": [{number, branch, author, title, head, status, approval,
//   reason, details, candidate, position, priority, paths, precheck, held_by, group, probed,
//   signers, approvers (whose approvals the policy verdict counted; `approval` is the merge
//   request), eta}], "train": [{id, prs, base, sha, status, checks, lane, probe, attempt, failed}],
//   "window", "observed": {build_ms, fail_permille, builds}}. `eta` (epoch ms when the PR is
// expected to land, or null) is there only when `eta` is given (queue::expected_landings).
nlohmann::json to_json(const RepoState& state, const std::map<int, Millis>* eta = nullptr);
// One PR as it appears in the queue document (position: its 1-based place among waiting PRs).
nlohmann::json to_json(const PullRequest& pr, std::optional<std::size_t> position);
nlohmann::json to_json(const Event& event);    // {"type": "merge_requested", ...fields}
nlohmann::json to_json(const Action& action);  // {"type": "build_candidate", ...fields}
std::string event_kind(const Event& event);    // "merge_requested", ...

}  // namespace dmz::queue

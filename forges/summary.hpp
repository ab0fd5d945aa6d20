// What a forge shows on a pull request's head about where it stands in the queue (GitHub: the
// `dmzbot` check run, or a commit status): a pure function of the queue's state.
// Threading: pure functions.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "forges/forge.hpp"
#include "queue/model.hpp"

namespace dmz::forges {

// The summary of `pr` (hot in `state`, or just archived), or nullopt for a PR that has nothing
// to show: never approved, or closed. `required` names the checks a candidate waits for.
std::optional<PullSummary> summarize(const queue::RepoState& state, const queue::PullRequest& pr,
                                     const std::vector<std::string>& required);

std::string_view to_string(PullSummary::State state);

}  // namespace dmz::forges

// The plain git forge: for a remote with no forge API a pull request is a branch matching the
// configured patterns (feature/*, bug/*), registered through the API with its number; pushes
// are noticed by comparing fetched branch heads with the known PR heads.
// Threading: pure functions.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "queue/model.hpp"

namespace dmz::forges {

// Why `branch` cannot be a PR (refused pattern such as wip/*, or not matching any allowed
// pattern), or nullopt if it can.
std::optional<std::string> branch_refusal(const std::string& branch,
                                          const std::vector<std::string>& allowed,
                                          const std::vector<std::string>& refused);

// The events a fetch implies: PrPushed for every open PR whose branch head moved, PrClosed for
// PRs whose branch vanished, MasterObserved when master differs from state.master.
std::vector<queue::Event> events_from_fetch(const queue::RepoState& state,
                                            const std::map<std::string, queue::Sha>& branches,
                                            const std::string& master_branch, queue::Millis now);

}  // namespace dmz::forges

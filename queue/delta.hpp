// What one event changed in a repository's hot state, so that a store writes only that and the
// shell can tell which PRs just finished.
// Threading: pure functions.
#pragma once

#include <vector>

#include "queue/model.hpp"

namespace dmz::queue {

struct StateDelta {
  bool header_changed = false;   // master, next_candidate, retry_after, window, observed
  std::vector<int> changed_prs;  // added or modified: look them up in the new state
  std::vector<int> removed_prs;  // no longer in the hot state
  bool train_changed = false;    // any candidate (its PRs, checks, status) or their order

  bool empty() const {
    return !header_changed && changed_prs.empty() && removed_prs.empty() && !train_changed;
  }
};

// Compares two states of the same repository: O(PRs in them), no allocation for what is equal.
StateDelta diff(const RepoState& before, const RepoState& after);

// The PR an event is about, if it names one (for the event log and history lookups).
std::optional<int> pr_of(const Event& event);

}  // namespace dmz::queue

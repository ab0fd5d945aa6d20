#include "forges/plain.hpp"

#include <vector>

#include "queue/glob.hpp"

namespace dmz::forges {
namespace {

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += ", ";
    out += p;
  }
  return out;
}

bool terminal(queue::PrStatus status) {
  switch (status) {
    case queue::PrStatus::Merged:
    case queue::PrStatus::Cancelled:
      return true;
    case queue::PrStatus::Open:
    case queue::PrStatus::Approved:
    case queue::PrStatus::Queued:
    case queue::PrStatus::Merging:
    case queue::PrStatus::InDmz:
    case queue::PrStatus::Building:
    case queue::PrStatus::Failed:
      return false;
  }
  return false;
}

}  // namespace

// An empty `allowed` list allows every branch that is not refused.
std::optional<std::string> branch_refusal(const std::string& branch,
                                          const std::vector<std::string>& allowed,
                                          const std::vector<std::string>& refused) {
  for (const auto& pattern : refused)
    if (queue::glob_match(pattern, branch))
      return "branch " + branch + " is refused by pattern " + pattern;
  if (allowed.empty()) return std::nullopt;
  for (const auto& pattern : allowed)
    if (queue::glob_match(pattern, branch)) return std::nullopt;
  return "branch " + branch + " matches none of " + join(allowed);
}

// PR events first (in PR number order), then master, so that a pushed PR has left the train
// before the engine rebuilds it on a moved master.
std::vector<queue::Event> events_from_fetch(const queue::RepoState& state,
                                            const std::map<std::string, queue::Sha>& branches,
                                            const std::string& master_branch, queue::Millis now) {
  std::vector<queue::Event> out;
  for (const auto& [number, pr] : state.prs) {
    if (terminal(pr.status)) continue;
    auto it = branches.find(pr.branch);
    if (it == branches.end())
      out.push_back(queue::PrClosed{number, now});
    else if (it->second != pr.head)
      out.push_back(queue::PrPushed{number, it->second, now});
  }
  auto master = branches.find(master_branch);
  if (master != branches.end() && master->second != state.master)
    out.push_back(queue::MasterObserved{master->second, now});
  return out;
}

}  // namespace dmz::forges

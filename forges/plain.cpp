#include "forges/plain.hpp"

#include <vector>

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
    case queue::PrStatus::Cancelled: return true;
    case queue::PrStatus::Open:
    case queue::PrStatus::Approved:
    case queue::PrStatus::Queued:
    case queue::PrStatus::Merging:
    case queue::PrStatus::InDmz:
    case queue::PrStatus::Building:
    case queue::PrStatus::Failed: return false;
  }
  return false;
}

}  // namespace

// Written by hand rather than with fnmatch(3): with FNM_PATHNAME, "**" is just two '*'
// that still stop at '/', and without it '*' crosses '/'; ref patterns need both behaviours.
// Dynamic programming over (pattern position, name position): no exponential backtracking.
// '?' matches one character other than '/', like '*'.
bool glob_match(std::string_view pattern, std::string_view name) {
  const std::size_t P = pattern.size(), N = name.size();
  // ok[i][j]: pattern[i..] matches name[j..]
  std::vector<std::vector<char>> ok(P + 1, std::vector<char>(N + 1, 0));
  ok[P][N] = 1;
  for (std::size_t i = P; i-- > 0;) {
    const bool star = pattern[i] == '*';
    const bool globstar = star && i + 1 < P && pattern[i + 1] == '*';
    for (std::size_t j = N + 1; j-- > 0;) {
      if (globstar) {  // "**": nothing, or one more character of any kind
        ok[i][j] = ok[i + 2][j] || (j < N && ok[i][j + 1]);
      } else if (star) {  // '*': nothing, or one more character within the segment
        ok[i][j] = ok[i + 1][j] || (j < N && name[j] != '/' && ok[i][j + 1]);
      } else if (j < N) {
        const bool one = pattern[i] == '?' ? name[j] != '/' : pattern[i] == name[j];
        ok[i][j] = one && ok[i + 1][j + 1];
      }
    }
  }
  return ok[0][0];
}

// An empty `allowed` list allows every branch that is not refused.
std::optional<std::string> branch_refusal(const std::string& branch,
                                          const std::vector<std::string>& allowed,
                                          const std::vector<std::string>& refused) {
  for (const auto& pattern : refused)
    if (glob_match(pattern, branch)) return "branch " + branch + " is refused by pattern " + pattern;
  if (allowed.empty()) return std::nullopt;
  for (const auto& pattern : allowed)
    if (glob_match(pattern, branch)) return std::nullopt;
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

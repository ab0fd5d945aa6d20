// Release promotion facts from a repository: classifies a tag with the policy at the target
// branch's tip, verifies it and every tag at its commit with that policy's keys, reads master
// and the target branch, and judges (release_judge). Also the audit of staging/production tips.
// Threading: one thread at a time (the repository's git worker, or the CLI).
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/status.hpp"
#include "bot/trust/release_judge.hpp"

namespace dmz {
namespace git {
class Mirror;
}
namespace trust {

struct ReleaseBranches {
  std::string master = "master";
  std::string staging = "staging";
  std::string production = "production";
};

// A branch's tip: refs/remotes/origin/<name> in dmzbot's mirror, refs/heads/<name> in a plain
// repository; nullopt if there is no such branch.
using BranchTip = std::function<std::optional<std::string>(const std::string& branch)>;

struct PromotionPlan {
  std::string tag;
  std::string target;        // the branch to move ("" when the tag is of no kind)
  std::string commit;        // where to move it
  std::string expected_old;  // the target's tip now ("" = the branch does not exist yet)
  PromotionVerdict verdict;
};

// Judges promoting refs/tags/<tag>. Errors are I/O failures; every refusal is a reason in the
// verdict (a tag that does not exist too).
Result<PromotionPlan> plan_promotion(git::Mirror& mirror, const std::string& tag,
                                     const ReleaseBranches& branches, const BranchTip& tip_of,
                                     const std::filesystem::path& policy_root);

// The tags a release policy would promote, by name (for automatic promotion after a fetch):
// the names matching candidate or release patterns of the policy at master's tip.
Result<std::vector<std::pair<std::string, TagKind>>> promotable_tags(
    git::Mirror& mirror, const ReleaseBranches& branches, const BranchTip& tip_of,
    const std::filesystem::path& policy_root);

// The audit of `dmzbot verify --releases`: staging's tip must carry a candidate tag and
// production's a release tag that pass the policy at that tip (fast-forward and master
// membership aside: history is not re-judged). One problem per line; empty = good.
Result<std::vector<std::string>> audit_release_branches(git::Mirror& mirror,
                                                        const ReleaseBranches& branches,
                                                        const BranchTip& tip_of,
                                                        const std::filesystem::path& policy_root);

}  // namespace trust
}  // namespace dmz

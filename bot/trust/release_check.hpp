// Release promotion facts from a repository: classifies a tag with the policy at the target
// branch's tip, verifies it and every tag at its commit with that policy's keys, reads master
// and the target branch, and judges (release_judge). Also the audit of staging/production tips.
// Threading: one thread at a time (the repository's git worker, or the CLI).
#pragma once

#include <filesystem>
#include <functional>
#include <map>
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
  std::string hotfix = "hotfix/*";  // glob of the hotfix branches (the hotfix flow)
};

// A branch's tip: refs/remotes/origin/<name> in dmzbot's mirror, refs/heads/<name> in a plain
// repository; nullopt if there is no such branch.
using BranchTip = std::function<std::optional<std::string>(const std::string& branch)>;
// Every branch with its tip (to find the hotfix branch that holds a commit).
using BranchHeads = std::function<std::map<std::string, std::string>()>;
// Every commit `branch` ever pointed at, oldest first (a reflog, a push log): the audit's input.
using BranchHistory = std::function<Result<std::vector<std::string>>(const std::string& branch)>;

struct PromotionPlan {
  std::string tag;
  std::string target;         // the branch to move ("" when the tag is of no kind)
  std::string commit;         // where to move it
  std::string expected_old;   // the target's tip now ("" = the branch does not exist yet)
  std::string hotfix_branch;  // the hotfix branch holding an off-master commit ("" = none)
  PromotionVerdict verdict;
};

// Judges promoting refs/tags/<tag>. Errors are I/O failures; every refusal is a reason in the
// verdict (a tag that does not exist too). `heads` (optional) lists the branches, for the
// hotfix flow: a commit off master on a branch matching branches.hotfix that descends from
// production's tip.
Result<PromotionPlan> plan_promotion(git::Mirror& mirror, const std::string& tag,
                                     const ReleaseBranches& branches, const BranchTip& tip_of,
                                     const std::filesystem::path& policy_root,
                                     const BranchHeads& heads = nullptr);

// The tags a release policy would promote, by name (for automatic promotion after a fetch):
// the names matching candidate or release patterns of the policy at master's tip.
Result<std::vector<std::pair<std::string, TagKind>>> promotable_tags(
    git::Mirror& mirror, const ReleaseBranches& branches, const BranchTip& tip_of,
    const std::filesystem::path& policy_root);

// The audit of `dmzbot verify --releases`: every commit staging ever held must carry a
// candidate tag and every commit production ever held a release tag that passes the policy in
// force when the branch moved there (the policy at the commit the branch held before; at the
// commit itself for the first); fast-forward and master membership aside. `history` gives the
// commits (oldest first); without it, or for a branch it knows nothing of, the tip alone is
// judged. One problem per line; empty = good.
Result<std::vector<std::string>> audit_release_branches(git::Mirror& mirror,
                                                        const ReleaseBranches& branches,
                                                        const BranchTip& tip_of,
                                                        const std::filesystem::path& policy_root,
                                                        const BranchHistory& history = nullptr);

}  // namespace trust
}  // namespace dmz

// The policy gate of the shell: gathers verified facts about a PR (signatures of its commits,
// signed approvals, changed paths) from the mirror and judges them with the repository's
// policy. With no policy configured for a repository every PR passes.
// Threading: check() runs on the repository's git worker (it reads the mirror).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "queue/model.hpp"

namespace dmz {
namespace git {
class Mirror;
}

class PolicyChecker {
 public:
  virtual ~PolicyChecker() = default;
  // The verdict for `pr` at `sha` against the target branch's current tip `target`.
  virtual queue::PolicyChecked check(git::Mirror& mirror, const queue::PullRequest& pr,
                                     const queue::Sha& sha, const queue::Sha& target,
                                     queue::Millis now) = 0;
};

// The checker configured for `repo` (its policy_root and the policy file in the repository).
std::unique_ptr<PolicyChecker> make_policy_checker(const config::Repo& repo);

}  // namespace dmz

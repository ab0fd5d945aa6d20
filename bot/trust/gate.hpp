// The policy gate of the shell: judges a PR with the policy of its target (docs/POLICY.md) from
// verified facts. Threading: check() runs on the repository's git worker, one call at a time.
//
// With neither a policy_root nor a committed .dmz/policy.toml on the target, every PR passes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.hpp"
#include "config/config.hpp"
#include "queue/model.hpp"

namespace dmz {
namespace git {
class Mirror;
}

// A PR's reviews as a forge with an API reports them.
struct ForgeReviews {
  std::vector<std::string> approving;  // logins whose latest review approves the head
  std::string unreadable;              // why they could not be read; "" if they were
};

class PolicyChecker {
 public:
  virtual ~PolicyChecker() = default;
  // The verdict for `pr` at `sha` against the target branch's current tip `target`.
  // `reviews`: what the forge says of the PR's reviews (they count only for rules with
  // forge_reviews = true, through the accounts' `logins`).
  virtual queue::PolicyChecked check(git::Mirror& mirror, const queue::PullRequest& pr,
                                     const queue::Sha& sha, const queue::Sha& target,
                                     queue::Millis now, const ForgeReviews& reviews) = 0;
  // Whether the policy in force at `target` lets forge reviews count (a rule with
  // forge_reviews = true): when it does not, nobody need ask the forge for them.
  virtual bool counts_forge_reviews(git::Mirror& mirror, const queue::Sha& target) = 0;
  // Signature operations (GnuPG or SSHSIG verifications) performed so far; results are cached
  // by (object id, key set), so re-checking an unchanged PR adds none. For tests and metrics.
  virtual std::uint64_t signature_verifications() const { return 0; }
};

// The files merging `sha` into `target` changes (what differs between their newest merge bases
// and `sha`, with what each of the PR's commits changes). They must be known: the engine judges
// queued PRs again when a landing changed .dmz/, the first policy included.
Result<std::vector<std::string>> pr_paths(git::Mirror& mirror, const queue::Sha& target,
                                          const queue::Sha& sha);

// The checker configured for `repo` (its policy_root, its master branch and the policy file
// committed in the repository).
std::unique_ptr<PolicyChecker> make_policy_checker(const config::Repo& repo);

// For a PR made by a signed tag (pull-request-by-signed-tag flow): the raw tag object at
// refs/tags/<tag_name>, to be put in the merge commit's `mergetag` header. Fails if there is no
// such annotated tag or if the tag's own `tag` header names another tag.
Result<std::string> mergetag_for(git::Mirror& mirror, const std::string& tag_name);

}  // namespace dmz

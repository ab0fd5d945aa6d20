// The signature policy (.dmz/policy.toml) as a model, and its pure judgement of verified facts.
// Threading: plain values and pure functions; safe from any thread.
//
// Division of labour. The shell (bot/) verifies every signature cryptographically, maps keys
// and forge logins to policy accounts, and gathers the facts below; this core only judges
// them. A change to the policy itself must satisfy the policy of its parent: the shell
// evaluates a PR with the policy at the tip of the target branch, never with the policy the
// PR proposes (and again whenever a landing changes the policy's sources), and audits each
// commit with the policy of its first parent.
// Rules for ".dmz/**" (see touches_policy) are how a policy makes its own changes harder.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "queue/policy_paths.hpp"

namespace dmz::queue {

struct Account {
  std::string name;
  std::vector<std::string> openpgp;  // primary key fingerprints, 40 or 64 uppercase hex digits
  std::vector<std::string> ssh;      // allowed_signers-style lines, checked by the shell
  std::vector<std::string> logins;   // forge logins and e-mail addresses of this person
  bool operator==(const Account&) const = default;
};

struct Rule {
  std::string branch;                       // glob over the target branch
  std::vector<std::string> paths = {"**"};  // applies if the PR changes a path matching one
  std::string signers;                      // group that must sign every commit; "" = anyone
  bool author_signs = false;                // every commit signed by the PR author's account
  int approvals = 0;                        // how many distinct accounts must approve ...
  std::string approvers;                    // ... from this group
  bool forge_reviews = false;               // forge reviews count, not only signed approvals
  bool operator==(const Rule&) const = default;
};

// Who may move which refs of a git server by a signed push (dmzbot pre-receive).
struct PushRule {
  std::vector<std::string> refs;  // globs over full ref names ("refs/heads/master", "refs/tags/v*")
  std::string signers;            // the group whose members may push them
  bool operator==(const PushRule&) const = default;
};

// Release promotion (the distributed-trust flow): which tags move `staging` and `production`,
// and who must sign them. A tag is a candidate if its name matches candidate_tags; otherwise a
// release if it matches release_tags.
struct ReleasePolicy {
  std::vector<std::string> candidate_tags = {"v*-rc*"};  // globs over tag names
  std::string candidate_signers;                         // group (the team leads)
  int candidate_signatures = 1;  // distinct members who signed candidate tags of the commit
  std::vector<std::string> release_tags = {"v*"};
  std::string release_signers;  // group (the release engineers)
  int release_signatures = 1;
  bool operator==(const ReleasePolicy&) const = default;
};

struct Policy {
  std::map<std::string, Account> accounts;                 // by account name
  std::map<std::string, std::vector<std::string>> groups;  // group -> account names
  std::vector<std::string> allowed_branches;  // PR source branch globs; empty = any branch
  std::vector<std::string> refused_branches;  // PR source branch globs, checked first
  std::vector<Rule> rules;
  std::string merge_signers;             // group that signs merge commits (the bot)
  std::string conflict_resolvers;        // group that may sign a merge whose tree was hand-resolved
  std::vector<PushRule> push_rules;      // [[push]]: who may push protected refs (signed pushes)
  std::optional<ReleasePolicy> release;  // [release]; unset: no tag promotes anything

  // The accounts that may push `ref` by a signed push: members of the groups of every
  // [[push]] whose refs match it, each once, sorted.
  std::vector<std::string> pushers(std::string_view ref) const;

  // The account whose primary key has this fingerprint (case-insensitive), or nullptr.
  const Account* account_for_openpgp(std::string_view fingerprint) const;
  // The account that lists this forge login or e-mail (ASCII case-insensitive), or nullptr.
  const Account* account_for_login(std::string_view login) const;
  // The accounts of a group; empty for an unknown group.
  std::vector<std::string> members(std::string_view group) const;
  bool is_member(std::string_view account, std::string_view group) const;

  bool operator==(const Policy&) const = default;
};

// ---- Facts gathered and verified by the shell ----------------------------------------------

struct CommitFact {
  std::string sha;                    // full hex; reasons use the first 7 digits
  std::optional<std::string> signer;  // the account whose key made a valid signature
  // Empty when the signature is good (signer set) or when the commit is simply unsigned
  // (signer empty); otherwise the shell's reason, e.g. "no-key: ...", "expired-key: ...",
  // "bad-signature". A commit with a problem never counts as signed, even if signer is set.
  std::string signature_problem;
  bool is_merge = false;
  bool changes_policy = false;  // touches .dmz/policy.toml: later commits use the new policy
  // Merge commits only: the shell recomputed the merge and the commit's tree differs, so a
  // person resolved conflicts. Such a merge must be signed by a conflict resolver.
  bool resolved_conflicts = false;
  // The paths this commit changes against its first parent, when the shell knows them; for
  // evaluate_commit only. Unknown: every rule of the branch applies (see evaluate_commit).
  std::optional<std::vector<std::string>> changed_paths;
};

struct ApprovalFact {
  std::string account;     // the approving policy account
  std::string sha;         // the commit the approval names (must be the PR head)
  std::string via;         // "signed tag refs/tags/x", "signed note", "forge review"
  bool is_signed = false;  // a verified signed tag or note by `account`
};

struct PrFacts {
  std::uint64_t number = 0;
  std::string branch;                         // the PR's source branch
  std::string target_branch;                  // e.g. "master"
  std::string head;                           // the PR head sha
  std::optional<std::string> author_account;  // the PR author's policy account, if mapped
  std::vector<CommitFact> commits;            // the PR's commits not in the target, oldest first
  std::vector<std::string> changed_paths;     // paths changed between merge base and head
  std::vector<ApprovalFact> approvals;
  bool history_rewritten = false;  // a force-push dropped commits already published in the PR
};

struct Verdict {
  bool pass = false;
  std::vector<std::string> reasons;    // every failing condition, each once; empty iff pass
  std::vector<std::string> approvers;  // accounts whose approval counted, sorted
};

// Judges a pull request: source branch allowed, history not rewritten, every commit signed as
// the applicable rules demand, enough approvals pinned to the head. A rule applies when its
// branch glob matches the target and one of its path globs matches a changed path (every rule
// of the branch applies when changed_paths is empty). Each applicable rule is judged on its
// own, so the strictest requirement wins; a changed path that no rule of the branch covers
// fails the PR (deny by default).
Verdict evaluate(const Policy& policy, const PrFacts& pr);

// Judges one commit already on `target_branch` (dmzbot verify). A merge commit must be
// signed by a merge signer or a conflict resolver (only a conflict resolver if it
// resolved_conflicts). Any other commit must be signed by a member of the signers group of
// every rule of the branch whose paths match the commit's changed_paths; when those are
// unknown, every rule of the branch counts, whatever its paths (an audit may then over-report,
// never under-report). Coverage is judged as evaluate() judges it, so that the audit and the
// gate agree: a branch no rule names, or a changed path no rule of the branch covers, fails the
// commit. author_signs and approvals cannot be judged per commit.
Verdict evaluate_commit(const Policy& policy, const std::string& target_branch,
                        const CommitFact& commit);

}  // namespace dmz::queue

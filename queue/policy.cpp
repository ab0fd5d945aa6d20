#include "queue/policy.hpp"

#include <algorithm>
#include <set>

#include "queue/glob.hpp"

namespace dmz::queue {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; };
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [&](char x, char y) { return lower(x) == lower(y); });
}

std::string short_sha(std::string_view sha) { return std::string(sha.substr(0, 7)); }

std::string join(const std::vector<std::string>& items, std::string_view separator = ", ") {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += separator;
    out += item;
  }
  return out;
}

// Reasons in the order found, each once (several rules can find the same fault).
class Reasons {
 public:
  void add(std::string reason) {
    if (seen_.insert(reason).second) list_.push_back(std::move(reason));
  }
  std::vector<std::string> take() { return std::move(list_); }

 private:
  std::set<std::string> seen_;
  std::vector<std::string> list_;
};

bool any_match(const std::vector<std::string>& patterns, std::string_view text) {
  return std::any_of(patterns.begin(), patterns.end(),
                     [&](const std::string& p) { return glob_match(p, text); });
}

// The rules of a branch whose paths match one of `paths`; all of the branch's rules when
// `paths` is empty or unknown.
std::vector<const Rule*> applicable_rules(const Policy& policy, std::string_view branch,
                                          const std::vector<std::string>* paths) {
  std::vector<const Rule*> out;
  for (const auto& rule : policy.rules) {
    if (!glob_match(rule.branch, branch)) continue;
    bool applies = paths == nullptr || paths->empty();
    for (std::size_t i = 0; !applies && i < paths->size(); ++i)
      applies = any_match(rule.paths, (*paths)[i]);
    if (applies) out.push_back(&rule);
  }
  return out;
}

// Adds the reason why `commit` has no good signature; returns whether it has one.
bool check_signature(const CommitFact& commit, Reasons& reasons) {
  const std::string sha = short_sha(commit.sha);
  if (!commit.signature_problem.empty() && commit.signature_problem != "unsigned") {
    reasons.add("commit " + sha + ": " + commit.signature_problem);
    return false;
  }
  if (!commit.signer || !commit.signature_problem.empty()) {
    reasons.add("commit " + sha + " is unsigned");
    return false;
  }
  return true;
}

void check_signers(const Policy& policy, const std::vector<const Rule*>& rules,
                   const CommitFact& commit, Reasons& reasons) {
  for (const Rule* rule : rules) {
    if (rule->signers.empty() || policy.is_member(*commit.signer, rule->signers)) continue;
    reasons.add("commit " + short_sha(commit.sha) + " is signed by " + *commit.signer +
                ", who is not in group " + rule->signers);
  }
}

void check_branch(const Policy& policy, const std::string& branch, Reasons& reasons) {
  for (const auto& pattern : policy.refused_branches) {
    if (glob_match(pattern, branch)) {
      reasons.add("branch " + branch + " is refused by pattern " + pattern);
      return;
    }
  }
  if (!policy.allowed_branches.empty() && !any_match(policy.allowed_branches, branch))
    reasons.add("branch " + branch + " matches none of the allowed patterns " +
                join(policy.allowed_branches));
}

bool branch_has_rules(const Policy& policy, std::string_view branch) {
  return std::any_of(policy.rules.begin(), policy.rules.end(),
                     [&](const Rule& rule) { return glob_match(rule.branch, branch); });
}

// Deny by default, the same for a PR and for one commit: a branch no rule names fails, and so
// does each changed path that no rule of the branch covers (named, so the author can fix it).
void check_coverage(const Policy& policy, const std::string& branch,
                    const std::vector<std::string>& paths, Reasons& reasons) {
  if (!branch_has_rules(policy, branch)) {
    reasons.add("no rule of the policy applies to branch " + branch);
    return;
  }
  std::vector<std::string> uncovered;
  for (const auto& path : paths) {
    bool covered = false;
    for (const auto& rule : policy.rules)
      covered = covered || (glob_match(rule.branch, branch) && any_match(rule.paths, path));
    if (!covered) uncovered.push_back(path);
  }
  if (!uncovered.empty())
    reasons.add("no rule for branch " + branch + " covers " + join(uncovered));
}

// The first commit of the PR with a good signature by `account`, or nullptr.
const CommitFact* commit_signed_by(const PrFacts& pr, std::string_view account) {
  for (const auto& c : pr.commits)
    if (c.signer && c.signature_problem.empty() && *c.signer == account) return &c;
  return nullptr;
}

// Judges one rule's approvals; returns the accounts that counted.
std::set<std::string> check_approvals(const Policy& policy, const PrFacts& pr, const Rule& rule,
                                      Reasons& reasons) {
  std::set<std::string> counted;
  auto why_not = [&](const ApprovalFact& a) -> std::string {
    if (a.sha != pr.head)
      return "approval by " + a.account + " for " + short_sha(a.sha) +
             " does not count: PR head is " + short_sha(pr.head);
    if (pr.author_account && a.account == *pr.author_account)
      return "approval by " + a.account + " does not count: " + a.account + " is the PR's author";
    // An author the policy cannot name may still be one of its accounts: whoever signed a
    // commit of the PR is its author as far as the policy can tell.
    if (!pr.author_account)
      if (const CommitFact* c = commit_signed_by(pr, a.account))
        return "approval by " + a.account + " does not count: " + a.account + " signed commit " +
               short_sha(c->sha) + " of the PR, whose author is not a policy account";
    if (!a.is_signed && !rule.forge_reviews)
      return (a.via.empty() ? std::string("unsigned approval") : a.via) + " by " + a.account +
             " does not count: rule requires signed approvals";
    if (!policy.is_member(a.account, rule.approvers))
      return "approval by " + a.account + " does not count: " + a.account + " is not in group " +
             rule.approvers;
    return {};
  };
  for (const auto& a : pr.approvals)
    if (why_not(a).empty()) counted.insert(a.account);
  if (static_cast<int>(counted.size()) >= rule.approvals) return counted;

  std::vector<std::string> names(counted.begin(), counted.end());
  reasons.add("needs " + std::to_string(rule.approvals) + " approvals from " + rule.approvers +
              " for paths " + join(rule.paths) + ", has " + std::to_string(counted.size()) +
              (names.empty() ? "" : " (" + join(names) + ")"));
  for (const auto& a : pr.approvals)  // explain the ones that did not count
    if (!counted.count(a.account)) reasons.add(why_not(a));
  return counted;
}

}  // namespace

const Account* Policy::account_for_openpgp(std::string_view fingerprint) const {
  for (const auto& [name, account] : accounts)
    for (const auto& fpr : account.openpgp)
      if (iequals(fpr, fingerprint)) return &account;
  return nullptr;
}

const Account* Policy::account_for_login(std::string_view login) const {
  for (const auto& [name, account] : accounts)
    for (const auto& l : account.logins)
      if (iequals(l, login)) return &account;
  return nullptr;
}

std::vector<std::string> Policy::pushers(std::string_view ref) const {
  std::vector<std::string> out;
  for (const PushRule& rule : push_rules) {
    bool match = false;
    for (const std::string& g : rule.refs) match = match || glob_match(g, ref);
    if (!match) continue;
    for (std::string& m : members(rule.signers)) out.push_back(std::move(m));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<std::string> Policy::members(std::string_view group) const {
  auto it = groups.find(std::string(group));
  return it == groups.end() ? std::vector<std::string>{} : it->second;
}

bool Policy::is_member(std::string_view account, std::string_view group) const {
  auto it = groups.find(std::string(group));
  return it != groups.end() &&
         std::find(it->second.begin(), it->second.end(), account) != it->second.end();
}

bool touches_policy(const std::vector<std::string>& changed_paths) {
  return std::find(changed_paths.begin(), changed_paths.end(), kPolicyPath) != changed_paths.end();
}

bool touches_policy_sources(const std::vector<std::string>& changed_paths) {
  // ".dmz" itself too: a file, symlink or submodule there takes the directory's place.
  return std::any_of(changed_paths.begin(), changed_paths.end(), [](std::string_view p) {
    return p.starts_with(kPolicyDir) &&
           (p.size() == kPolicyDir.size() || p[kPolicyDir.size()] == '/');
  });
}

Verdict evaluate(const Policy& policy, const PrFacts& pr) {
  Reasons reasons;
  check_branch(policy, pr.branch, reasons);
  if (pr.history_rewritten)
    reasons.add("history rewritten: a force-push dropped published commits");

  const auto rules = applicable_rules(policy, pr.target_branch, &pr.changed_paths);
  check_coverage(policy, pr.target_branch, pr.changed_paths, reasons);

  const bool author_signs =
      std::any_of(rules.begin(), rules.end(), [](const Rule* r) { return r->author_signs; });
  if (author_signs && !pr.author_account) reasons.add("PR author is not a policy account");
  for (const auto& commit : pr.commits) {
    if (!check_signature(commit, reasons)) continue;
    check_signers(policy, rules, commit, reasons);
    if (author_signs && pr.author_account && *commit.signer != *pr.author_account)
      reasons.add("commit " + short_sha(commit.sha) + " is signed by " + *commit.signer +
                  " but the PR author is " + *pr.author_account);
  }

  std::set<std::string> approvers;
  for (const Rule* rule : rules) {
    if (rule->approvals <= 0) continue;
    approvers.merge(check_approvals(policy, pr, *rule, reasons));
  }

  Verdict verdict;
  verdict.reasons = reasons.take();
  verdict.pass = verdict.reasons.empty();
  verdict.approvers.assign(approvers.begin(), approvers.end());
  return verdict;
}

Verdict evaluate_commit(const Policy& policy, const std::string& target_branch,
                        const CommitFact& commit) {
  Reasons reasons;
  if (commit.is_merge) {
    if (check_signature(commit, reasons)) {
      const std::string& signer = *commit.signer;
      const bool resolver = policy.is_member(signer, policy.conflict_resolvers);
      if (commit.resolved_conflicts && !resolver)
        reasons.add("merge commit " + short_sha(commit.sha) +
                    " resolves conflicts but is signed by " + signer + ", who is not in group " +
                    (policy.conflict_resolvers.empty() ? "(none)" : policy.conflict_resolvers));
      else if (!resolver && !policy.is_member(signer, policy.merge_signers))
        reasons.add("merge commit " + short_sha(commit.sha) + " is signed by " + signer +
                    ", who is in neither merge signers (" +
                    (policy.merge_signers.empty() ? "none" : policy.merge_signers) +
                    ") nor conflict resolvers (" +
                    (policy.conflict_resolvers.empty() ? "none" : policy.conflict_resolvers) + ")");
    }
  } else {
    // As evaluate() judges a PR of this one commit: coverage first, then the signature.
    static const std::vector<std::string> kUnknown;
    const std::vector<std::string>& paths = commit.changed_paths ? *commit.changed_paths : kUnknown;
    check_coverage(policy, target_branch, paths, reasons);
    if (check_signature(commit, reasons))
      check_signers(policy, applicable_rules(policy, target_branch, &paths), commit, reasons);
  }
  Verdict verdict;
  verdict.reasons = reasons.take();
  verdict.pass = verdict.reasons.empty();
  return verdict;
}

}  // namespace dmz::queue

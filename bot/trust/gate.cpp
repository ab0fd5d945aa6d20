#include "bot/trust/gate.hpp"

#include <algorithm>
#include <set>

#include "bot/git/mirror.hpp"
#include "bot/trust/facts.hpp"
#include "bot/trust/raw_objects.hpp"
#include "bot/trust/signed_object.hpp"
#include "queue/policy.hpp"

namespace dmz {
namespace {

// Signed approvals are annotated tags under this prefix: dmz-approve/<pr>-<anything>.
constexpr std::string_view kApprovePrefix = "dmz-approve/";
// A PR whose source "branch" is tags/<name> is a signed tag (pull-request-by-signed-tag).
constexpr std::string_view kTagBranchPrefix = "tags/";

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// What merging the PR changes on its target: the paths that differ between each merge base of
// the two and the head (the newest commits of the target's history that the PR's `commits`,
// rev_list(target, head), build on). Not only what its commits change each on their first parent: a
// merge inside the PR (`git merge -s ours master`) can undo what master changed, a protected file
// among it, while every commit's own diff leaves that out.
Result<std::vector<std::string>> merge_effect(git::Mirror& mirror, const queue::Sha& head,
                                              const std::vector<std::string>& commits) {
  if (commits.empty()) return std::vector<std::string>{};
  const std::set<std::string> range(commits.begin(), commits.end());
  std::set<std::string> bases;  // parents outside the PR: in the target's history
  for (const auto& c : commits) {
    auto links = trust::commit_links(mirror, c);
    if (!links) return links.error();
    for (const auto& p : links->parents)
      if (!range.count(p)) bases.insert(p);
  }
  // Only the newest: a base that another base descends from is behind it.
  std::vector<std::string> newest;
  for (const auto& b : bases) {
    bool behind = false;
    for (const auto& other : bases) {
      if (other == b) continue;
      auto ahead_of_other = trust::rev_list(mirror, other, b);  // b's commits not in other's
      if (!ahead_of_other) return ahead_of_other.error();
      if (ahead_of_other->empty()) behind = true;
    }
    if (!behind) newest.push_back(b);
  }
  auto head_links = trust::commit_links(mirror, head);
  if (!head_links) return head_links.error();
  std::set<std::string> paths;
  if (newest.empty()) newest.push_back("");  // a PR from an unrelated root: every path
  for (const auto& base : newest) {
    std::string base_tree;
    if (!base.empty()) {
      auto links = trust::commit_links(mirror, base);
      if (!links) return links.error();
      base_tree = links->tree;
    }
    auto changed = trust::changed_paths(mirror, base_tree, head_links->tree);
    if (!changed) return changed.error();
    paths.insert(changed->begin(), changed->end());
  }
  return std::vector<std::string>(paths.begin(), paths.end());
}

// Why the policy would be unusable at the PR's head (a `.dmz` that is no directory, a policy
// file that is no regular file, too large or that does not parse), or "". Once landed, such a
// PR would fail every later one, the one that undoes it included, so it is refused before it
// lands. Parsing does not import keys: TrustKeys::load only reads the text and the ssh lines.
Result<std::string> head_policy_refusal(git::Mirror& mirror, const queue::Sha& head,
                                        const std::vector<std::string>& paths) {
  if (!queue::touches_policy_sources(paths)) return std::string();
  auto at_head = trust::policy_source_at(mirror, head);
  if (!at_head) return at_head.error();
  if (!*at_head) return std::string();  // no policy file: the trust root (if any) judges
  auto loaded = trust::TrustKeys::load(**at_head);
  if (loaded.keys) return std::string();
  constexpr size_t kShown = 5;  // the rest are for `dmzbot verify`
  std::string why;
  for (size_t i = 0; i < loaded.problems.size() && i < kShown; ++i)
    why += (i ? "; " : "") + loaded.problems[i];
  if (loaded.problems.size() > kShown)
    why += "; and " + std::to_string(loaded.problems.size() - kShown) + " more";
  return "the pull request would leave no usable policy: " + why;
}

}  // namespace

Result<std::vector<std::string>> pr_paths(git::Mirror& mirror, const queue::Sha& target,
                                          const queue::Sha& sha) {
  auto commits = trust::rev_list(mirror, target, sha);
  if (!commits) return commits.error();
  return merge_effect(mirror, sha, *commits);
}

namespace {

class TrustPolicy final : public PolicyChecker {
 public:
  explicit TrustPolicy(config::Repo repo) : repo_(std::move(repo)) {}

  queue::PolicyChecked check(git::Mirror& mirror, const queue::PullRequest& pr,
                             const queue::Sha& sha, const queue::Sha& target, queue::Millis now,
                             const ForgeReviews& reviews) override {
    queue::PolicyChecked out{pr.number, sha, false, {}, now};
    our_side_.clear();
    auto fail = [&](std::vector<std::string> reasons) {
      out.pass = false;
      out.reasons = std::move(reasons);
      out.unavailable = our_side_;
      return out;
    };
    // Reading what to judge failed: closed, and asked again when it may be ours (not kInvalid).
    auto error = [&](const Error& e) {
      note_our_side(e);
      return fail({"error: " + e.message});
    };

    // The policy in force is the one in the TARGET (the parent side of the merge), never the
    // one the PR proposes: a PR that edits .dmz/policy.toml is judged by the old policy, so no
    // PR can authorize itself. Without a committed policy, the operator's trust root.
    // An empty target (the service knows no master yet) has no committed policy.
    auto in_force = trust::policy_in_force(mirror, target, repo_.policy_root);
    if (!in_force) return error(in_force.error());
    if (!*in_force) {
      // No policy at all: the checks alone gate master. What the PR changes is still needed (a
      // PR that brings the first policy makes the queue judge the others again; lanes, risk).
      auto paths = pr_paths(mirror, target, sha);
      if (!paths) return error(paths.error());
      out.paths = std::move(*paths);
      // A PR by tag: no signature to check; the merge still records only the object seen here.
      if (starts_with(pr.branch, kTagBranchPrefix))
        out.tag = mirror.reference("refs/tags/" + pr.branch.substr(kTagBranchPrefix.size()))
                      .value_or(queue::Sha());
      auto refusal = head_policy_refusal(mirror, sha, out.paths);
      if (!refusal) return error(refusal.error());
      if (!refusal->empty()) return fail({*refusal});
      out.pass = true;
      return out;
    }
    trust::PolicySource source = std::move(**in_force);
    if (!source.refusal.empty()) return fail({source.refusal});  // there, unusable: closed
    auto loaded = keys_.load(source);
    if (!loaded.keys) {  // fail closed: a policy that does not parse allows nothing
      std::vector<std::string> reasons = {"the policy does not parse"};
      reasons.insert(reasons.end(), loaded.problems.begin(), loaded.problems.end());
      return fail(std::move(reasons));
    }
    trust::TrustKeys& keys = *loaded.keys;
    const queue::Policy& policy = keys.policy();

    queue::PrFacts facts;
    facts.number = static_cast<std::uint64_t>(pr.number);
    facts.branch = pr.branch;
    facts.target_branch = repo_.master;
    facts.head = sha;
    if (const queue::Account* a = policy.account_for_login(pr.author))
      facts.author_account = a->name;

    auto commits = trust::rev_list(mirror, target, sha);
    if (!commits) return error(commits.error());
    std::set<std::string> paths;
    for (const auto& c : *commits) {
      auto fact = gatherer_.commit_fact(mirror, keys, c);
      if (!fact) return error(fact.error());
      note_our_side(fact->signature_problem);
      if (fact->changed_paths)
        paths.insert(fact->changed_paths->begin(), fact->changed_paths->end());
      facts.commits.push_back(std::move(*fact));
    }
    // What the PR changes on the target, and what each of its commits changes (a PR whose
    // commits touch a protected path and then undo it is judged by the stricter rule too).
    auto effect = merge_effect(mirror, sha, *commits);
    if (!effect) return error(effect.error());
    paths.insert(effect->begin(), effect->end());
    facts.changed_paths.assign(paths.begin(), paths.end());
    out.paths = facts.changed_paths;
    // Who signed: the accounts behind the valid signatures found (the status page shows them).
    std::set<std::string> signers;
    for (const auto& c : facts.commits)
      if (c.signer && c.signature_problem.empty()) signers.insert(*c.signer);
    out.signers.assign(signers.begin(), signers.end());

    // Hard failures the core cannot see (the signed tag of a tag PR), and notes on approvals
    // that were refused before reaching the core (shown only when the PR fails).
    std::vector<std::string> extra_failures, approval_notes;
    const auto tags = mirror.tags();
    gather_approvals(mirror, keys, pr, tags, facts, approval_notes);
    gather_note_approvals(mirror, keys, pr, sha, facts, approval_notes);
    for (const auto& login : reviews.approving) {
      if (const queue::Account* a = policy.account_for_login(login))
        facts.approvals.push_back({a->name, sha, "forge review (@" + login + ")", false});
      else
        approval_notes.push_back("forge review by @" + login +
                                 " does not count: no policy account has that login");
    }
    if (!reviews.unreadable.empty())
      approval_notes.push_back("the forge's reviews could not be read (" + reviews.unreadable +
                               "); ask again once it answers");
    if (starts_with(pr.branch, kTagBranchPrefix))
      out.tag = check_tag_pr(mirror, keys, pr, sha, tags, facts, extra_failures);
    auto refusal = head_policy_refusal(mirror, sha, facts.changed_paths);
    if (!refusal) return error(refusal.error());
    if (!refusal->empty()) extra_failures.push_back(std::move(*refusal));

    queue::Verdict verdict = queue::evaluate(policy, facts);
    out.pass = verdict.pass && extra_failures.empty();
    out.reasons = std::move(verdict.reasons);
    // Whose approvals counted (the status page shows them apart from who asked to merge).
    out.approvers = std::move(verdict.approvers);
    out.reasons.insert(out.reasons.end(), extra_failures.begin(), extra_failures.end());
    if (!out.pass) {
      out.reasons.insert(out.reasons.end(), approval_notes.begin(), approval_notes.end());
      out.unavailable = our_side_;
    }
    return out;
  }

  bool counts_forge_reviews(git::Mirror& mirror, const queue::Sha& target) override {
    auto in_force = trust::policy_in_force(mirror, target, repo_.policy_root);
    if (!in_force || !*in_force || !(*in_force)->refusal.empty()) return false;  // fails anyway
    auto loaded = keys_.load(**in_force);
    if (!loaded.keys) return false;
    const auto& rules = loaded.keys->policy().rules;
    return std::any_of(rules.begin(), rules.end(),
                       [](const queue::Rule& r) { return r.forge_reviews; });
  }

  std::uint64_t signature_verifications() const override { return gatherer_.verifications(); }

 private:
  // Signed-tag approvals: annotated tags named dmz-approve/<this PR>-*; those that point
  // elsewhere than the head are stale (the core says why they do not count). The name is in
  // the signed tag, so an approval of PR 5 never counts for PR 9 with the same head. Other tags
  // are never approvals, so a signed release tag is not one.
  void gather_approvals(git::Mirror& mirror, trust::TrustKeys& keys, const queue::PullRequest& pr,
                        const std::map<std::string, std::string>& tags, queue::PrFacts& facts,
                        std::vector<std::string>& notes) {
    const std::string own_prefix = std::string(kApprovePrefix) + std::to_string(pr.number) + "-";
    for (const auto& [name, tag_id] : tags) {
      if (!starts_with(name, own_prefix)) continue;
      auto checked = gatherer_.tag_check(mirror, keys, name, tag_id);
      if (!checked) {
        note_our_side(checked.error());
        notes.push_back("approval tag refs/tags/" + name + ": " + checked.message());
        continue;
      }
      if (!checked->refusal.empty()) {
        notes.push_back(checked->refusal);
        continue;
      }
      if (checked->tag.type != "commit") continue;
      const trust::SignatureCheck& sig = checked->signature;
      note_our_side(sig.problem);
      if (!sig.problem.empty()) {
        notes.push_back("approval tag refs/tags/" + name + ": " + sig.problem);
      } else if (!sig.signer) {
        notes.push_back("approval tag refs/tags/" + name + " is unsigned");
      } else {
        facts.approvals.push_back(
            {*sig.signer, checked->tag.object, "signed tag refs/tags/" + name, true});
      }
    }
  }

  // Signed-note approvals: each commit of refs/notes/dmz-approvals that adds the line
  // "dmz-approve <repo>#<pr> <head>" to the note on the head is an approval by its signer. The
  // line names the repository and the PR, so a note cannot be replayed into another PR.
  void gather_note_approvals(git::Mirror& mirror, trust::TrustKeys& keys,
                             const queue::PullRequest& pr, const queue::Sha& sha,
                             queue::PrFacts& facts, std::vector<std::string>& notes) {
    const std::string ref(trust::kApprovalNotesRef);
    auto tip = mirror.reference(ref);
    if (!tip) return;  // nobody has approved by note yet
    const std::string what = repo_.name + "#" + std::to_string(pr.number);
    const std::string line = "dmz-approve " + what + " " + sha;
    auto changes = gatherer_.note_changes(mirror, *tip, sha);
    if (!changes) {
      note_our_side(changes.error());
      notes.push_back("approval notes " + ref + ": " + changes.message());
      return;
    }
    for (const auto& change : *changes) {
      const std::string commit = "notes commit " + trust::short_sha(change.commit);
      // A removed note approves nothing, withdraws nothing.
      if (change.after_blob.empty()) continue;
      // One note at a time, each bounded: what is not read approves nothing.
      auto before = trust::note_text(mirror, change.before_blob);
      auto after = trust::note_text(mirror, change.after_blob);
      if (!before || !after) {
        note_our_side((after ? before : after).error());
        notes.push_back(commit + " (note on " + trust::short_sha(sha) +
                        "): " + (after ? before : after).message());
        continue;
      }
      if (count_lines(*after, line) <= count_lines(*before, line)) {
        notes.push_back(commit + " does not approve " + what + ": it does not add the line \"" +
                        line + "\" to the note on " + trust::short_sha(sha));
        continue;
      }
      auto sig = gatherer_.commit_signature(mirror, keys, change.commit);
      if (!sig) {
        note_our_side(sig.error());
        notes.push_back(commit + ": " + sig.message());
      } else if (!sig->problem.empty()) {
        note_our_side(sig->problem);
        notes.push_back(commit + ": " + sig->problem);
      } else if (!sig->signer) {
        notes.push_back(commit + " (note on " + trust::short_sha(sha) + ") is unsigned");
      } else {
        facts.approvals.push_back(
            {*sig->signer, sha, "signed note " + change.commit.substr(0, 7), true});
      }
    }
  }

  // How many lines of `text` are exactly `line` (a trailing CR or blank is ignored).
  static size_t count_lines(std::string_view text, std::string_view line) {
    size_t n = 0;
    while (!text.empty()) {
      size_t eol = text.find('\n');
      std::string_view l = text.substr(0, eol);
      while (!l.empty() && (l.back() == '\r' || l.back() == ' ' || l.back() == '\t'))
        l.remove_suffix(1);
      if (l == line) ++n;
      if (eol == std::string_view::npos) break;
      text.remove_prefix(eol + 1);
    }
    return n;
  }

  // A PR by signed tag: the tag refs/tags/<name> must name itself, point at the head and be
  // signed by the PR author's account. Returns the tag object judged ("" when there is none).
  queue::Sha check_tag_pr(git::Mirror& mirror, trust::TrustKeys& keys, const queue::PullRequest& pr,
                          const queue::Sha& sha, const std::map<std::string, std::string>& tags,
                          const queue::PrFacts& facts, std::vector<std::string>& failures) {
    const std::string name = pr.branch.substr(kTagBranchPrefix.size());
    const std::string ref = "refs/tags/" + name;
    auto it = tags.find(name);
    if (it == tags.end()) {
      failures.push_back("pull request tag " + ref + " is not an annotated tag in the repository");
      return {};
    }
    const queue::Sha& judged = it->second;
    auto checked = gatherer_.tag_check(mirror, keys, name, judged);
    if (!checked) {
      note_our_side(checked.error());
      failures.push_back("pull request tag " + ref + ": " + checked.message());
      return judged;
    }
    if (!checked->refusal.empty()) {
      failures.push_back(checked->refusal);
      return judged;
    }
    if (checked->tag.object != sha)
      failures.push_back("pull request tag " + ref + " points at " +
                         trust::short_sha(checked->tag.object) + ", not at the PR head " +
                         trust::short_sha(sha));
    const trust::SignatureCheck& sig = checked->signature;
    note_our_side(sig.problem);
    if (!sig.problem.empty()) {
      failures.push_back("pull request tag " + ref + ": " + sig.problem);
    } else if (!sig.signer) {
      failures.push_back("pull request tag " + ref + " is unsigned");
    } else if (!facts.author_account) {
      failures.push_back("pull request tag " + ref + " is signed by " + *sig.signer +
                         " but the PR author is not a policy account");
    } else if (*sig.signer != *facts.author_account) {
      failures.push_back("pull request tag " + ref + " is signed by " + *sig.signer +
                         " but the PR author is " + *facts.author_account);
    }
    return judged;
  }

  // The first failure on dmzbot's side met by the check under way: an error that is not the
  // repository's (kInvalid), or a signature problem starting "error:" (a machine failure, see
  // TrustKeys::verify). A verdict that fails with one is asked again (PolicyChecked::unavailable).
  void note_our_side(const Error& e) {
    if (e.code != Code::kInvalid && our_side_.empty()) our_side_ = e.message;
  }
  void note_our_side(const std::string& signature_problem) {
    if (signature_problem.starts_with("error:") && our_side_.empty()) our_side_ = signature_problem;
  }

  config::Repo repo_;
  std::string our_side_;
  trust::FactGatherer gatherer_;
  trust::KeyCache keys_;
};

}  // namespace

std::unique_ptr<PolicyChecker> make_policy_checker(const config::Repo& repo) {
  // Whether a repository has a committed policy is only known per target commit, so every
  // repository gets the real checker; with no policy at all it passes every PR.
  return std::make_unique<TrustPolicy>(repo);
}

Result<std::string> mergetag_for(git::Mirror& mirror, const std::string& tag_name) {
  const std::string ref = "refs/tags/" + tag_name;
  auto tags = mirror.tags();
  auto it = tags.find(tag_name);
  if (it == tags.end()) return not_found(ref + " is not an annotated tag");
  auto obj = mirror.read_object(it->second);
  if (!obj) return obj.error();
  if (obj->second != "tag") return not_found(ref + " is not an annotated tag");
  auto parsed = parse_tag(obj->first);
  if (!parsed) return parsed.status().prefixed(ref + ": ").error();
  if (parsed->tag != tag_name) return invalid("tag " + ref + " claims to be " + parsed->tag);
  return std::move(obj->first);
}

}  // namespace dmz

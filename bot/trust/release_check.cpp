// Release promotion facts from a repository (see release_check.hpp).
#include "bot/trust/release_check.hpp"

#include <algorithm>
#include <set>

#include "bot/git/mirror.hpp"
#include "bot/trust/facts.hpp"
#include "bot/trust/signed_object.hpp"
#include "queue/glob.hpp"

namespace dmz::trust {
namespace {

// The policy in force at `branch`'s tip (master's when the branch does not exist yet), or the
// trust root; with its keys.
struct LoadedPolicy {
  std::shared_ptr<TrustKeys> keys;
  std::string problem;
};
Result<LoadedPolicy> policy_at(git::Mirror& mirror, const std::string& branch,
                               const ReleaseBranches& b, const BranchTip& tip_of,
                               const std::filesystem::path& root) {
  auto tip = tip_of(branch);
  if (!tip) tip = tip_of(b.master);
  auto source = policy_in_force(mirror, tip.value_or(""), root);
  if (!source) return source.error();
  LoadedPolicy out;
  if (!*source) {
    out.problem = "no policy at the tip of " + branch + " and no trust root";
    return out;
  }
  auto loaded = TrustKeys::load(**source);
  out.keys = loaded.keys;
  for (const auto& p : loaded.problems) out.problem += (out.problem.empty() ? "" : "; ") + p;
  return out;
}

// One tag verified with `keys`. The commit is "" when it does not peel to one.
Result<TagFact> tag_fact(git::Mirror& mirror, TrustKeys& keys, const std::string& name,
                         const std::string& id) {
  TagFact f;
  f.name = name;
  auto obj = mirror.read_object(id);
  if (!obj) return obj.error();
  auto commit = mirror.resolve(id);
  if (commit) f.commit = *commit;
  if (obj->second != "tag") return f;  // lightweight
  f.annotated = true;
  auto parsed = parse_tag(obj->first);
  if (!parsed) {
    f.refusal = parsed.status().message();
    return f;
  }
  f.header_name = parsed->tag;
  if (!parsed->signature) return f;
  std::int64_t when = parsed->tagger ? parsed->tagger->time : 0;
  SignatureCheck check =
      keys.verify(parsed->signature_kind, parsed->payload, *parsed->signature, when);
  f.signer = check.signer;
  f.signature_problem = check.problem;
  return f;
}

// Every tag (annotated or not) that peels to `commit`, verified.
Result<std::vector<TagFact>> tags_at(git::Mirror& mirror, TrustKeys& keys,
                                     const std::string& commit,
                                     const std::vector<std::pair<std::string, std::string>>& all) {
  std::vector<TagFact> out;
  for (const auto& [name, id] : all) {
    auto peeled = mirror.resolve(id);
    if (!peeled || *peeled != commit) continue;
    auto f = tag_fact(mirror, keys, name, id);
    if (!f) return f.error();
    out.push_back(std::move(*f));
  }
  return out;
}

// refs/tags/* -> object id, lightweight tags included (Mirror::tags() has annotated only).
std::vector<std::pair<std::string, std::string>> all_tags(git::Mirror& mirror) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [name, id] : mirror.tags()) out.emplace_back(name, id);
  return out;
}

// The policy in force at a commit, with its keys.
Result<LoadedPolicy> policy_at_commit(git::Mirror& mirror, const std::string& commit,
                                      const std::filesystem::path& root) {
  auto source = policy_in_force(mirror, commit, root);
  if (!source) return source.error();
  LoadedPolicy out;
  if (!*source) {
    out.problem = "no policy at " + commit.substr(0, 12) + " and no trust root";
    return out;
  }
  auto loaded = TrustKeys::load(**source);
  out.keys = loaded.keys;
  for (const auto& p : loaded.problems) out.problem += (out.problem.empty() ? "" : "; ") + p;
  return out;
}

// The hotfix branch that holds `commit` when it descends from production's tip ("" if none).
Result<std::string> hotfix_branch_of(git::Mirror& mirror, const std::string& commit,
                                     const ReleaseBranches& b, const BranchTip& tip_of,
                                     const BranchHeads& heads) {
  if (!heads) return std::string();
  auto production = tip_of(b.production);
  if (!production) return std::string();  // nothing in production to fix
  if (*production != commit) {
    auto from_production = mirror.is_ancestor(*production, commit);
    if (!from_production) return from_production.error();
    if (!*from_production) return std::string();
  }
  for (const auto& [name, tip] : heads()) {
    if (!queue::glob_match(b.hotfix, name)) continue;
    if (tip == commit) return name;
    auto holds = mirror.is_ancestor(commit, tip);
    if (!holds) return holds.error();
    if (*holds) return name;
  }
  return std::string();
}

Result<bool> reachable(git::Mirror& mirror, const std::string& commit,
                       const std::optional<std::string>& tip) {
  if (!tip) return false;
  if (*tip == commit) return true;
  return mirror.is_ancestor(commit, *tip);
}

}  // namespace

Result<PromotionPlan> plan_promotion(git::Mirror& mirror, const std::string& tag,
                                     const ReleaseBranches& b, const BranchTip& tip_of,
                                     const std::filesystem::path& root, const BranchHeads& heads) {
  PromotionPlan plan;
  plan.tag = tag;
  auto id = mirror.reference("refs/tags/" + tag);
  if (!id) {
    plan.verdict.reasons.push_back("there is no tag " + tag);
    return plan;
  }
  // Classified by the policy of the branch it would move: a candidate by staging's, else a
  // release by production's.
  auto staging_policy = policy_at(mirror, b.staging, b, tip_of, root);
  if (!staging_policy) return staging_policy.error();
  LoadedPolicy policy = std::move(*staging_policy);
  TagKind kind = policy.keys ? tag_kind(policy.keys->policy(), tag) : TagKind::kNone;
  plan.target = b.staging;
  if (kind != TagKind::kCandidate) {
    auto production_policy = policy_at(mirror, b.production, b, tip_of, root);
    if (!production_policy) return production_policy.error();
    policy = std::move(*production_policy);
    kind = policy.keys ? tag_kind(policy.keys->policy(), tag) : TagKind::kNone;
    plan.target = kind == TagKind::kRelease ? b.production : "";
  }
  if (!policy.keys) {
    plan.verdict.reasons.push_back("the policy cannot be used: " + policy.problem);
    return plan;
  }
  auto fact = tag_fact(mirror, *policy.keys, tag, *id);
  if (!fact) return fact.error();
  PromotionFacts facts;
  facts.tag = std::move(*fact);
  plan.commit = facts.tag.commit;
  if (!facts.tag.commit.empty()) {
    auto at = tags_at(mirror, *policy.keys, facts.tag.commit, all_tags(mirror));
    if (!at) return at.error();
    facts.at_commit = std::move(*at);
    auto on_master = reachable(mirror, facts.tag.commit, tip_of(b.master));
    if (!on_master) return on_master.error();
    facts.on_master = *on_master;
    if (!facts.on_master) {
      auto hotfix = hotfix_branch_of(mirror, facts.tag.commit, b, tip_of, heads);
      if (!hotfix) return hotfix.error();
      facts.hotfix_branch = plan.hotfix_branch = std::move(*hotfix);
    }
    if (!plan.target.empty()) {
      auto target_tip = tip_of(plan.target);
      facts.target_tip = target_tip.value_or("");
      plan.expected_old = facts.target_tip;
      if (facts.target_tip.empty() || facts.target_tip == facts.tag.commit) {
        facts.fast_forward = true;
      } else {
        auto ff = mirror.is_ancestor(facts.target_tip, facts.tag.commit);
        if (!ff) return ff.error();
        facts.fast_forward = *ff;
      }
    }
  }
  plan.verdict = judge_promotion(policy.keys->policy(), kind, facts, b.master);
  return plan;
}

Result<std::vector<std::pair<std::string, TagKind>>> promotable_tags(
    git::Mirror& mirror, const ReleaseBranches& b, const BranchTip& tip_of,
    const std::filesystem::path& root) {
  auto policy = policy_at(mirror, b.master, b, tip_of, root);
  if (!policy) return policy.error();
  std::vector<std::pair<std::string, TagKind>> out;
  if (!policy->keys) return out;
  for (const auto& [name, id] : all_tags(mirror))
    if (TagKind k = tag_kind(policy->keys->policy(), name); k != TagKind::kNone)
      out.emplace_back(name, k);
  return out;
}

Result<std::vector<std::string>> audit_release_branches(git::Mirror& mirror,
                                                        const ReleaseBranches& b,
                                                        const BranchTip& tip_of,
                                                        const std::filesystem::path& root,
                                                        const BranchHistory& history) {
  std::vector<std::string> problems;
  const auto tags = all_tags(mirror);
  for (auto [branch, kind] :
       {std::pair{b.staging, TagKind::kCandidate}, std::pair{b.production, TagKind::kRelease}}) {
    std::vector<std::string> held;
    if (history) {
      auto h = history(branch);
      if (!h) return h.status().prefixed(branch + ": history: ").error();
      held = std::move(*h);
    }
    auto tip = tip_of(branch);
    if (tip && (held.empty() || held.back() != *tip)) held.push_back(*tip);
    std::set<std::string> judged;
    std::string before;  // the commit the branch held before (its policy judged the move)
    for (const std::string& commit : held) {
      const std::string policy_commit = before.empty() ? commit : before;
      before = commit;
      if (!judged.insert(commit).second) continue;
      auto policy = policy_at_commit(mirror, policy_commit, root);
      if (!policy) return policy.error();
      const bool current = tip && commit == *tip;
      const std::string where = branch + (current ? " is at " : " was at ") + commit.substr(0, 12);
      if (!policy->keys) {
        problems.push_back(where + ": the policy cannot be used: " + policy->problem);
        continue;
      }
      auto at = tags_at(mirror, *policy->keys, commit, tags);
      if (!at) return at.error();
      std::vector<std::string> why;
      bool good = false;
      for (const TagFact& t : *at) {
        if (tag_kind(policy->keys->policy(), t.name) != kind) continue;
        PromotionFacts facts;
        facts.tag = t;
        facts.at_commit = *at;
        facts.on_master = true;  // history is not re-judged: only the tag and its signatures
        facts.fast_forward = true;
        PromotionVerdict v = judge_promotion(policy->keys->policy(), kind, facts, b.master);
        if (v.ok()) {
          good = true;
          break;
        }
        for (auto& r : v.reasons) why.push_back(std::move(r));
      }
      if (!good) {
        std::string line =
            where + ", which carries no valid " + std::string(to_string(kind)) + " tag";
        for (const auto& w : why) line += "; " + w;
        problems.push_back(line);
      }
    }
  }
  return problems;
}

}  // namespace dmz::trust

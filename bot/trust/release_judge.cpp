// Release promotion judged from verified facts (see release_judge.hpp).
#include "bot/trust/release_judge.hpp"

#include <algorithm>
#include <set>

#include "queue/glob.hpp"

namespace dmz::trust {
namespace {

bool any_match(const std::vector<std::string>& globs, std::string_view name) {
  return std::any_of(globs.begin(), globs.end(),
                     [&](const std::string& g) { return queue::glob_match(g, name); });
}

// Why `tag` does not count as signed by a member of `group` (empty = it counts).
std::vector<std::string> tag_problems(const queue::Policy& policy, const TagFact& tag,
                                      const std::string& group, std::string_view what) {
  std::vector<std::string> out;
  const std::string label = "tag " + tag.name;
  if (!tag.annotated) {
    out.push_back(label + " is a lightweight tag: it carries no signature");
    return out;
  }
  if (!tag.refusal.empty()) {
    out.push_back(label + " is refused: " + tag.refusal);
    return out;
  }
  if (tag.header_name != tag.name)
    out.push_back(label + " claims to be " + tag.header_name + " (its tag header)");
  if (tag.commit.empty()) out.push_back(label + " does not point at a commit");
  if (!tag.signature_problem.empty())
    out.push_back(label + " has a bad signature: " + tag.signature_problem);
  else if (!tag.signer)
    out.push_back(label + " is not signed");
  else if (!policy.is_member(*tag.signer, group))
    out.push_back(label + " is signed by " + *tag.signer + ", who is not in the " +
                  std::string(what) + " signers (group " + (group.empty() ? "none" : group) + ")");
  return out;
}

// The distinct members of `group` who signed valid tags of `kind` at the commit.
std::vector<std::string> signers_at(const queue::Policy& policy, TagKind kind,
                                    const std::vector<TagFact>& tags, const std::string& group,
                                    const std::string& commit) {
  std::set<std::string> out;
  for (const TagFact& t : tags)
    if (t.commit == commit && tag_kind(policy, t.name) == kind &&
        tag_problems(policy, t, group, "").empty())
      out.insert(*t.signer);
  return {out.begin(), out.end()};
}

}  // namespace

std::string_view to_string(TagKind kind) {
  switch (kind) {
    case TagKind::kNone:
      return "none";
    case TagKind::kCandidate:
      return "candidate";
    case TagKind::kRelease:
      return "release";
  }
  return "none";
}

TagKind tag_kind(const queue::Policy& policy, std::string_view name) {
  if (!policy.release) return TagKind::kNone;
  if (any_match(policy.release->candidate_tags, name)) return TagKind::kCandidate;
  if (any_match(policy.release->release_tags, name)) return TagKind::kRelease;
  return TagKind::kNone;
}

PromotionVerdict judge_promotion(const queue::Policy& policy, TagKind kind,
                                 const PromotionFacts& facts, const std::string& master_name) {
  PromotionVerdict v;
  v.kind = kind;
  const TagFact& tag = facts.tag;
  if (!policy.release) {
    v.reasons.push_back("the policy has no [release]: no tag promotes anything");
    return v;
  }
  if (kind == TagKind::kNone) {
    v.reasons.push_back("tag " + tag.name +
                        " matches neither the candidate nor the release tag patterns");
    return v;
  }
  const queue::ReleasePolicy& r = *policy.release;
  const bool candidate = kind == TagKind::kCandidate;
  const std::string& group = candidate ? r.candidate_signers : r.release_signers;
  const int needed = candidate ? r.candidate_signatures : r.release_signatures;
  const char* what = candidate ? "candidate" : "release";
  v.reasons = tag_problems(policy, tag, group, what);
  if (tag.commit.empty()) return v;

  std::vector<TagFact> all = facts.at_commit;
  if (std::none_of(all.begin(), all.end(), [&](const TagFact& t) { return t.name == tag.name; }))
    all.push_back(tag);
  v.signers = signers_at(policy, kind, all, group, tag.commit);
  if (v.reasons.empty() && static_cast<int>(v.signers.size()) < needed)
    v.reasons.push_back(std::to_string(needed) + " distinct " + what + " signers must sign " +
                        what + " tags of this commit; " + std::to_string(v.signers.size()) +
                        " did");

  const std::string short_commit = tag.commit.substr(0, 12);
  // A candidate's commit is on master or a hotfix; a release's commit must pass the candidate
  // rules, that one included, so a candidate tag alone cannot release a commit from elsewhere.
  if (!facts.on_master && facts.hotfix_branch.empty())
    v.reasons.push_back("commit " + short_commit + " of tag " + tag.name + " is not on " +
                        master_name + ", nor on a hotfix branch made from production's tip");
  if (candidate) {
    v.hotfix = !facts.on_master && !facts.hotfix_branch.empty();
  } else {
    auto cand = signers_at(policy, TagKind::kCandidate, all, r.candidate_signers, tag.commit);
    if (cand.empty())
      v.reasons.push_back("commit " + short_commit + " of release tag " + tag.name +
                          " carries no verified release candidate tag");
    else if (static_cast<int>(cand.size()) < r.candidate_signatures)
      v.reasons.push_back("commit " + short_commit + " of release tag " + tag.name +
                          " has candidate tags by " + std::to_string(cand.size()) + " signers, " +
                          std::to_string(r.candidate_signatures) + " needed");
  }
  if (!facts.fast_forward && !v.hotfix)
    v.reasons.push_back("moving to " + short_commit + " from " + facts.target_tip.substr(0, 12) +
                        " is not a fast-forward");
  return v;
}

}  // namespace dmz::trust

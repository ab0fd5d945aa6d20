// Release promotion (the distributed-trust flow), judged purely from verified facts: whether a
// tag may move `staging` (a release candidate tag) or `production` (a release tag), with every
// reason when not. The shell (release_check) verifies the tags and reads the branches.
// Threading: pure functions; any thread.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "queue/policy.hpp"

namespace dmz::trust {

enum class TagKind { kNone, kCandidate, kRelease };
std::string_view to_string(TagKind kind);

// What a tag name is under `policy`'s [release]: a candidate pattern wins over a release one.
TagKind tag_kind(const queue::Policy& policy, std::string_view name);

// One tag, verified by the shell.
struct TagFact {
  std::string name;                   // the ref name without refs/tags/
  bool annotated = false;             // false: a lightweight tag (a ref straight to a commit)
  std::string header_name;            // the tag object's `tag` header
  std::string commit;                 // the commit it peels to ("" if it does not peel to a commit)
  std::optional<std::string> signer;  // the policy account whose key made a good signature
  std::string signature_problem;      // why the signature does not count ("" if good/unsigned)
  std::string refusal;                // the parser's refusal of the object, if any
};

struct PromotionFacts {
  TagFact tag;
  std::vector<TagFact> at_commit;  // every tag at the same commit (tag itself may be included)
  bool on_master = false;          // the commit is reachable from master's tip
  std::string target_tip;          // the target branch's tip now ("" = it does not exist)
  bool fast_forward = false;       // target_tip is empty, or an ancestor of the commit
  // Hotfix flow: a branch matching the hotfix pattern (hotfix/*) that holds the commit, when
  // the commit is not on master but descends from production's tip ("" otherwise).
  std::string hotfix_branch;
};

struct PromotionVerdict {
  TagKind kind = TagKind::kNone;
  std::vector<std::string> signers;  // distinct accounts whose signatures counted, sorted
  std::vector<std::string> reasons;  // every reason to refuse; empty = promote
  // A hotfix candidate: off master, on a hotfix branch made from production's tip. Staging
  // then moves to it even if that is not a fast-forward (it may hold a newer candidate).
  bool hotfix = false;
  bool ok() const { return reasons.empty(); }
};

// Judges a promotion of facts.tag as a tag of `kind` (the shell classifies the tag with the
// policy of the target branch's tip and judges with the same policy):
//  - the tag is annotated, its header names its ref, it peels to a commit, it is signed by a
//    member of the kind's signer group (and N distinct members signed tags of the same kind
//    at the commit, N = candidate_signatures / release_signatures);
//  - a candidate's commit is on master, or it is a hotfix candidate (facts.hotfix_branch: on a
//    hotfix branch made from production's tip); a release's commit is marked by a candidate tag
//    that passes the candidate rules, so it is on master or such a hotfix branch too;
//  - the target branch moves by fast-forward only (staging excepted for a hotfix candidate).
PromotionVerdict judge_promotion(const queue::Policy& policy, TagKind kind,
                                 const PromotionFacts& facts, const std::string& master_name);

}  // namespace dmz::trust

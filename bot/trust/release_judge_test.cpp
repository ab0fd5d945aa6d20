// Release promotion judged from facts: kinds, every refusal at once, N of M signers.
#include "bot/trust/release_judge.hpp"

#include <doctest/doctest.h>

#include <algorithm>

using namespace dmz;
using namespace dmz::trust;

namespace {

queue::Policy policy(int candidates = 1, int releases = 1) {
  queue::Policy p;
  for (const char* a : {"lead", "lead2", "releng", "dev"}) p.accounts[a] = queue::Account{a};
  p.groups["leads"] = {"lead", "lead2"};
  p.groups["releng"] = {"releng"};
  queue::ReleasePolicy r;
  r.candidate_signers = "leads";
  r.release_signers = "releng";
  r.candidate_signatures = candidates;
  r.release_signatures = releases;
  p.release = r;
  return p;
}

const std::string C1(40, '1');

TagFact signed_tag(const std::string& name, const std::string& signer,
                   const std::string& commit = C1) {
  TagFact t;
  t.name = name;
  t.annotated = true;
  t.header_name = name;
  t.commit = commit;
  t.signer = signer;
  return t;
}

bool has(const std::vector<std::string>& v, const std::string& part) {
  return std::any_of(v.begin(), v.end(),
                     [&](const std::string& s) { return s.find(part) != std::string::npos; });
}

PromotionFacts facts_for(TagFact t) {
  PromotionFacts f;
  f.tag = std::move(t);
  f.on_master = true;
  f.fast_forward = true;
  return f;
}

}  // namespace

TEST_CASE("tag kinds: candidate patterns win over release patterns; no [release], no kind") {
  auto p = policy();
  CHECK(tag_kind(p, "v1.0-rc1") == TagKind::kCandidate);
  CHECK(tag_kind(p, "v1.0") == TagKind::kRelease);
  CHECK(tag_kind(p, "nightly") == TagKind::kNone);
  p.release.reset();
  CHECK(tag_kind(p, "v1.0") == TagKind::kNone);
}

TEST_CASE("a good candidate and a good release") {
  auto p = policy();
  auto v =
      judge_promotion(p, TagKind::kCandidate, facts_for(signed_tag("v1-rc1", "lead")), "master");
  CHECK(v.ok());
  CHECK(v.signers == std::vector<std::string>{"lead"});
  PromotionFacts rel = facts_for(signed_tag("v1", "releng"));
  rel.at_commit = {signed_tag("v1-rc1", "lead")};
  auto r = judge_promotion(p, TagKind::kRelease, rel, "master");
  CHECK_MESSAGE(r.ok(), (r.reasons.empty() ? "" : r.reasons.front()));
  rel.on_master = false;  // a hotfix: off master, on a hotfix branch made from production's tip
  rel.hotfix_branch = "hotfix/1";
  auto hotfix = judge_promotion(p, TagKind::kRelease, rel, "master");
  CHECK_MESSAGE(hotfix.ok(), (hotfix.reasons.empty() ? "" : hotfix.reasons.front()));
  CHECK_FALSE(hotfix.hotfix);  // production still moves by fast-forward only
}

TEST_CASE("a release's commit must pass the candidate rules: on master or a hotfix branch") {
  auto p = policy();
  PromotionFacts rel = facts_for(signed_tag("v1", "releng"));
  rel.at_commit = {signed_tag("v1-rc1", "lead")};
  rel.on_master = false;
  auto r = judge_promotion(p, TagKind::kRelease, rel, "master");
  CHECK(r.reasons == std::vector<std::string>{"commit 111111111111 of tag v1 is not on master, nor "
                                              "on a hotfix branch made from production's tip"});
}

TEST_CASE("every reason at once, and nothing counts from a refused tag") {
  auto p = policy();
  TagFact t = signed_tag("v1-rc2", "dev");
  t.header_name = "v1-rc9";
  PromotionFacts f = facts_for(t);
  f.on_master = false;
  f.fast_forward = false;
  f.target_tip = std::string(40, '2');
  auto v = judge_promotion(p, TagKind::kCandidate, f, "master");
  CHECK(v.reasons.size() == 4);
  CHECK(has(v.reasons, "tag v1-rc2 claims to be v1-rc9"));
  CHECK(has(v.reasons, "signed by dev, who is not in the candidate signers (group leads)"));
  CHECK(has(v.reasons, "is not on master"));
  CHECK(has(v.reasons, "from 222222222222 is not a fast-forward"));
  CHECK(v.signers.empty());
}

TEST_CASE("lightweight, unsigned, badly signed tags") {
  auto p = policy();
  TagFact light;
  light.name = "v1-rc1";
  light.commit = C1;
  CHECK(has(judge_promotion(p, TagKind::kCandidate, facts_for(light), "master").reasons,
            "lightweight"));
  TagFact bare = signed_tag("v1-rc1", "lead");
  bare.signer.reset();
  CHECK(has(judge_promotion(p, TagKind::kCandidate, facts_for(bare), "master").reasons,
            "is not signed"));
  TagFact bad = signed_tag("v1-rc1", "lead");
  bad.signature_problem = "bad-signature";
  CHECK(has(judge_promotion(p, TagKind::kCandidate, facts_for(bad), "master").reasons,
            "bad signature: bad-signature"));
  TagFact refused = signed_tag("v1-rc1", "lead");
  refused.refusal = "two-signatures: x";
  CHECK(has(judge_promotion(p, TagKind::kCandidate, facts_for(refused), "master").reasons,
            "is refused: two-signatures"));
}

TEST_CASE("a release tag needs a verified candidate at its commit, by the candidate signers") {
  auto p = policy();
  PromotionFacts f = facts_for(signed_tag("v1", "releng"));
  CHECK(has(judge_promotion(p, TagKind::kRelease, f, "master").reasons,
            "carries no verified release candidate tag"));
  f.at_commit = {signed_tag("v1-rc1", "dev")};  // signed, but not by a lead
  CHECK(has(judge_promotion(p, TagKind::kRelease, f, "master").reasons,
            "carries no verified release candidate tag"));
  f.at_commit = {signed_tag("v1-rc1", "lead", std::string(40, '3'))};  // another commit
  CHECK(has(judge_promotion(p, TagKind::kRelease, f, "master").reasons,
            "carries no verified release candidate tag"));
  PromotionFacts by_lead = facts_for(signed_tag("v1", "lead"));
  by_lead.at_commit = {signed_tag("v1-rc1", "lead")};
  CHECK(has(judge_promotion(p, TagKind::kRelease, by_lead, "master").reasons,
            "not in the release signers (group releng)"));
}

TEST_CASE("N of M: distinct members of the group, each once") {
  auto p = policy(2, 1);
  PromotionFacts f = facts_for(signed_tag("v1-rc1", "lead"));
  f.at_commit = {signed_tag("v1-rc1", "lead"), signed_tag("v1-rc1-again", "lead")};
  auto one = judge_promotion(p, TagKind::kCandidate, f, "master");
  CHECK(has(one.reasons,
            "2 distinct candidate signers must sign candidate tags of this commit; 1 did"));
  f.at_commit.push_back(signed_tag("v1-rc1-lead2", "lead2"));
  auto two = judge_promotion(p, TagKind::kCandidate, f, "master");
  CHECK(two.ok());
  CHECK(two.signers == std::vector<std::string>{"lead", "lead2"});
  // A release at that commit needs the two candidate signers too.
  PromotionFacts rel = facts_for(signed_tag("v1", "releng"));
  rel.at_commit = {signed_tag("v1-rc1", "lead")};
  CHECK(has(judge_promotion(p, TagKind::kRelease, rel, "master").reasons,
            "has candidate tags by 1 signers, 2 needed"));
}

TEST_CASE("no [release] or a tag of no kind promotes nothing") {
  auto p = policy();
  CHECK(
      has(judge_promotion(p, TagKind::kNone, facts_for(signed_tag("x", "lead")), "master").reasons,
          "matches neither"));
  p.release.reset();
  CHECK(
      has(judge_promotion(p, TagKind::kCandidate, facts_for(signed_tag("v1-rc1", "lead")), "master")
              .reasons,
          "no [release]"));
}

TEST_CASE("a hotfix candidate: off master on a hotfix branch, staging need not fast-forward") {
  auto p = policy();
  PromotionFacts f = facts_for(signed_tag("v1.0.1-rc1", "lead"));
  f.on_master = false;
  f.fast_forward = false;  // staging holds a newer candidate from master
  f.target_tip = std::string(40, '2');
  f.hotfix_branch = "hotfix/login";
  auto v = judge_promotion(p, TagKind::kCandidate, f, "master");
  CHECK_MESSAGE(v.ok(), (v.reasons.empty() ? "" : v.reasons.front()));
  CHECK(v.hotfix);
  // The same tag without a hotfix branch made from production is refused twice over.
  f.hotfix_branch.clear();
  v = judge_promotion(p, TagKind::kCandidate, f, "master");
  CHECK_FALSE(v.hotfix);
  CHECK(has(v.reasons, "is not on master, nor on a hotfix branch made from production's tip"));
  CHECK(has(v.reasons, "is not a fast-forward"));
  // A candidate on master is never a hotfix, even if a hotfix branch holds it too.
  PromotionFacts on_master = facts_for(signed_tag("v1.1-rc1", "lead"));
  on_master.hotfix_branch = "hotfix/login";
  CHECK_FALSE(judge_promotion(p, TagKind::kCandidate, on_master, "master").hotfix);
  // A release is never excused from fast-forwarding production.
  PromotionFacts rel = facts_for(signed_tag("v1.0.1", "releng"));
  rel.at_commit = {signed_tag("v1.0.1-rc1", "lead")};
  rel.on_master = false;
  rel.hotfix_branch = "hotfix/login";
  rel.fast_forward = false;
  rel.target_tip = std::string(40, '3');
  CHECK(has(judge_promotion(p, TagKind::kRelease, rel, "master").reasons, "is not a fast-forward"));
}

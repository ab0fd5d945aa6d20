#include "bot/trust/candidate_check.hpp"

#include <algorithm>
#include <vector>

#include "bot/git/mirror.hpp"
#include "bot/trust/gate.hpp"
#include "bot/trust/raw_objects.hpp"
#include "bot/trust/signed_object.hpp"
#include "queue/policy.hpp"
#include "queue/policy_paths.hpp"

namespace dmz {

namespace {
// A train is at most a few dozen merges deep; anything longer is not a candidate of ours.
constexpr int kMaxMerges = 1000;

// Up to three of `paths`, for a reason that must stay one line.
std::string some_of(const std::vector<std::string>& paths) {
  std::string out;
  for (size_t i = 0; i < paths.size() && i < 3; ++i) out += (i ? ", " : "") + paths[i];
  if (paths.size() > 3) out += " and " + std::to_string(paths.size() - 3) + " more";
  return out;
}
}  // namespace

CandidateChecker::CandidateChecker(const config::Repo& repo)
    : policy_root_(repo.policy_root), master_(repo.master) {}

queue::CandidateChecked CandidateChecker::check(git::Mirror& mirror, const queue::CheckCandidate& c,
                                                queue::Millis now) {
  queue::CandidateChecked out{c.candidate, c.sha, false, {}, now};
  auto fail = [&](std::string reason) {
    out.reasons.push_back(std::move(reason));
    return out;
  };
  // Reading what to judge failed: on our side (I/O), nobody is blamed and the candidate is
  // built again; anything else fails closed.
  auto error = [&](const Error& e) {
    if (e.code == Code::kUnavailable) {
      out.unavailable = e.message;
      return out;
    }
    return fail("error: " + e.message);
  };

  // The candidate's own merges, newest first, down its first parents to the base.
  struct Merge {
    std::string sha, ours, theirs, tree;
  };
  std::vector<Merge> merges;
  for (std::string at = c.sha; at != c.base;) {
    if (merges.size() >= kMaxMerges)
      return fail("candidate " + trust::short_sha(c.sha) + " does not reach its base " +
                  trust::short_sha(c.base) + " along first parents");
    auto raw = mirror.read_object(at);
    if (!raw) return error(raw.error());
    auto parsed = parse_commit(raw->first);
    if (!parsed) return fail("commit " + trust::short_sha(at) + ": " + parsed.message());
    if (parsed->parents.size() != 2)
      return fail("commit " + trust::short_sha(at) + " on dmz is not a merge dmzbot wrote");
    merges.push_back({at, parsed->parents[0], parsed->parents[1], parsed->tree});
    at = parsed->parents[0];
  }

  auto source = trust::policy_in_force(mirror, c.base, policy_root_);
  if (!source) return error(source.error());
  std::shared_ptr<trust::TrustKeys> keys;
  if (*source && !(*source)->refusal.empty()) return fail((*source)->refusal);
  if (*source) {
    auto loaded = key_cache_.load(**source);
    if (!loaded.keys) {  // fail closed: a policy that does not parse allows nothing
      out.reasons = {"the policy does not parse"};
      out.reasons.insert(out.reasons.end(), loaded.problems.begin(), loaded.problems.end());
      return out;
    }
    keys = loaded.keys;
  }

  for (auto m = merges.rbegin(); m != merges.rend(); ++m) {
    const std::size_t reasons_before = out.reasons.size();
    // dmzbot never resolves conflicts, so its merge must be exactly the recomputed one.
    auto recomputed = mirror.merge_tree(m->ours, m->theirs);
    if (!recomputed) {
      // libgit2 refuses some commits that git accepts: then the strict parser names what is
      // wrong with the parent, a reason for the verdict rather than an error.
      for (const auto& parent : {m->ours, m->theirs}) {
        auto raw = mirror.read_object(parent);
        if (!raw) continue;
        if (auto parsed = parse_commit(raw->first); !parsed)
          return fail("commit " + trust::short_sha(parent) + ": " + parsed.message());
      }
      return fail("error: recomputing merge " + trust::short_sha(m->sha) + ": " +
                  recomputed.message());
    }
    if (!*recomputed || **recomputed != m->tree)
      out.reasons.push_back("evil merge: " + trust::short_sha(m->sha) +
                            "'s tree differs from the merge of its parents");
    // The gate judged the PR by the paths it changes, and the queue judges everyone again
    // after a change to .dmz/. A merge that changes any other path was judged by neither: git's
    // rename detection carries an edit of a file master has since moved (to deploy/, to
    // .dmz/keys/) to the new path, under rules the PR never met.
    if (*recomputed) {
      auto ours = trust::commit_links(mirror, m->ours);
      if (!ours) return error(ours.error());
      auto changed = trust::changed_paths(mirror, ours->tree, **recomputed);
      if (!changed) return error(changed.error());
      auto own = pr_paths(mirror, m->ours, m->theirs);
      if (!own) return error(own.error());
      std::vector<std::string> policy, other;  // both sorted: changed_paths sorts
      for (const auto& p : *changed)
        if (!std::binary_search(own->begin(), own->end(), p))
          (queue::touches_policy_sources({p}) ? policy : other).push_back(p);
      const std::string what = "merge " + trust::short_sha(m->sha) + " changes ";
      const std::string why =
          " although its pull request's changes do not (a file master moved there?): rebase the "
          "pull request";
      if (!policy.empty()) out.reasons.push_back(what + ".dmz/" + why);
      if (!other.empty()) out.reasons.push_back(what + some_of(other) + why);
    }
    if (keys) {  // without a policy the checks alone gate master
      auto fact = gatherer_.commit_fact(mirror, *keys, m->sha);
      if (!fact) return error(fact.error());
      auto verdict = queue::evaluate_commit(keys->policy(), master_, *fact);
      out.reasons.insert(out.reasons.end(), verdict.reasons.begin(), verdict.reasons.end());
    }
    // The reasons of this loop are about this merge, so about the PR it merged.
    if (out.reasons.size() > reasons_before) out.culprits.push_back(m->theirs);
  }
  out.pass = out.reasons.empty();
  return out;
}

}  // namespace dmz

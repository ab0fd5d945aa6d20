// Release promotion in the service (see promoter.hpp).
#include "bot/service/promoter.hpp"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "bot/git/mirror.hpp"
#include "bot/trust/release_check.hpp"

namespace dmz {
namespace {

nlohmann::json to_json(const PromotionRecord& r) {
  return {{"tag", r.tag},         {"kind", r.kind},
          {"target", r.target},   {"commit", r.commit},
          {"from", r.from},       {"signers", r.signers},
          {"reasons", r.reasons}, {"promoted", r.promoted},
          {"source", r.source},   {"at", r.at}};
}

}  // namespace

Result<PromotionRecord> Promoter::promote(git::Mirror& mirror, const std::string& tag,
                                          const std::string& source) {
  if (Status s = mirror.fetch(); !s.ok()) return s.error();
  auto r = judge_and_move(mirror, tag, source);
  note_tips(mirror);
  return r;
}

Result<PromotionRecord> Promoter::judge_and_move(git::Mirror& mirror, const std::string& tag,
                                                 const std::string& source) {
  trust::ReleaseBranches branches{repo_.master, repo_.staging, repo_.production};
  trust::BranchTip tip = [&mirror](const std::string& b) { return mirror.remote_branch(b); };
  auto plan = trust::plan_promotion(mirror, tag, branches, tip, repo_.policy_root);
  if (!plan) return plan.error();
  PromotionRecord rec;
  rec.tag = tag;
  rec.kind = std::string(trust::to_string(plan->verdict.kind));
  rec.target = plan->target;
  rec.commit = plan->commit;
  rec.from = plan->expected_old;
  rec.signers = plan->verdict.signers;
  rec.reasons = plan->verdict.reasons;
  rec.source = source;
  rec.at = clock_.now();
  if (rec.reasons.empty() && (rec.target == repo_.master || rec.target == repo_.dmz))
    rec.reasons.push_back(rec.target + " is also this repository's " +
                          std::string(rec.target == repo_.master ? "master" : "dmz") +
                          ": set staging and production in its configuration");
  if (rec.reasons.empty()) {
    if (rec.from == rec.commit) {
      rec.promoted = true;  // already there: nothing to move
    } else {
      auto pushed = mirror.push_fast_forward(rec.target, rec.from, rec.commit);
      if (!pushed) return pushed.error();
      if (pushed->ok)
        rec.promoted = true;
      else
        rec.reasons.push_back(pushed->remote_moved
                                  ? rec.target + " moved on the remote meanwhile (now " +
                                        pushed->remote_sha.substr(0, 12) + "): nothing pushed"
                                  : "the push of " + rec.target +
                                        " was refused: " + pushed->message);
    }
  }
  if (rec.promoted)
    spdlog::info("{}: {} {} promoted to {} at {}", repo_.name, rec.kind, tag, rec.target,
                 rec.commit.substr(0, 12));
  else
    spdlog::warn("{}: promotion of {} refused: {}", repo_.name, tag,
                 rec.reasons.empty() ? "" : rec.reasons.front());
  remember(rec);
  return rec;
}

void Promoter::after_fetch(git::Mirror& mirror) {
  trust::ReleaseBranches branches{repo_.master, repo_.staging, repo_.production};
  trust::BranchTip tip = [&mirror](const std::string& b) { return mirror.remote_branch(b); };
  auto names = trust::promotable_tags(mirror, branches, tip, repo_.policy_root);
  if (!names) {
    spdlog::warn("{}: release tags: {}", repo_.name, names.message());
    return;
  }
  // Candidates first: a release tag pushed together with its candidate then finds staging
  // already moved (names sort "v1.0" before "v1.0-rc1").
  std::vector<std::pair<std::string, trust::TagKind>> fresh;
  for (const auto& [n, kind] : *names)
    if (seen_tags_.insert(n).second && looked_) fresh.emplace_back(n, kind);
  looked_ = true;
  for (trust::TagKind pass : {trust::TagKind::kCandidate, trust::TagKind::kRelease})
    for (const auto& [n, kind] : fresh) {
      if (kind != pass) continue;
      auto r = judge_and_move(mirror, n, "fetch");
      if (!r) spdlog::warn("{}: promotion of {}: {}", repo_.name, n, r.message());
    }
  note_tips(mirror);
}

void Promoter::remember(const PromotionRecord& r) {
  std::lock_guard lock(mu_);
  recent_.push_front(r);
  if (recent_.size() > kRecent) recent_.pop_back();
  if (r.promoted) {
    holds_[r.target] = r;
    tips_[r.target] = r.commit;
  }
}

void Promoter::note_tips(git::Mirror& mirror) {
  std::map<std::string, std::string> tips;
  for (const std::string& b : {repo_.staging, repo_.production})
    if (auto t = mirror.remote_branch(b)) tips[b] = *t;
  std::lock_guard lock(mu_);
  tips_ = std::move(tips);
}

std::string Promoter::record_json(const PromotionRecord& r) { return to_json(r).dump(); }

std::string Promoter::json() const {
  std::lock_guard lock(mu_);
  nlohmann::json out;
  for (const std::string& b : {repo_.staging, repo_.production}) {
    const std::string key = b == repo_.staging ? "staging" : "production";
    auto tip = tips_.find(b);
    if (tip == tips_.end()) {
      out[key] = nullptr;
      continue;
    }
    nlohmann::json held = {{"branch", b}, {"commit", tip->second}};
    // What dmzbot put there, if the branch is still where it left it.
    if (auto h = holds_.find(b); h != holds_.end() && h->second.commit == tip->second) {
      held["tag"] = h->second.tag;
      held["signers"] = h->second.signers;
      held["at"] = h->second.at;
    }
    out[key] = held;
  }
  out["recent"] = nlohmann::json::array();
  for (const auto& r : recent_) out["recent"].push_back(to_json(r));
  return out.dump();
}

}  // namespace dmz

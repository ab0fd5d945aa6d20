// Release promotion in the service (see promoter.hpp).
#include "bot/service/promoter.hpp"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "bot/git/mirror.hpp"
#include "bot/trust/release_check.hpp"

namespace dmz {
namespace {

nlohmann::json to_json(const PromotionRecord& r) {
  nlohmann::json out = {{"tag", r.tag},         {"kind", r.kind},
                        {"target", r.target},   {"commit", r.commit},
                        {"from", r.from},       {"signers", r.signers},
                        {"reasons", r.reasons}, {"promoted", r.promoted},
                        {"source", r.source},   {"at", r.at}};
  if (!r.hotfix_branch.empty()) out["hotfix_branch"] = r.hotfix_branch;
  return out;
}

trust::ReleaseBranches branches_of(const config::Repo& r) {
  return {r.master, r.staging, r.production, r.hotfix_branches};
}

}  // namespace

bool Promoter::load() {
  if (loaded_) return true;
  if (!store_) return loaded_ = true;
  auto recent = store_->promotions(repo_.name, kRecent);
  auto judged = store_->judged_tags(repo_.name);
  std::map<std::string, PromotionRecord> holds;
  for (const std::string& b : {repo_.staging, repo_.production}) {
    auto held = store_->last_promotion(repo_.name, b);
    if (!held) {
      spdlog::warn("{}: promotion records: {}", repo_.name, held.message());
      return false;
    }
    if (*held) holds[b] = **held;
  }
  if (!recent || !judged) {
    spdlog::warn("{}: promotion records: {}", repo_.name,
                 recent ? judged.message() : recent.message());
    return false;
  }
  judged_.insert(judged->begin(), judged->end());
  std::lock_guard lock(mu_);
  recent_.assign(recent->begin(), recent->end());
  for (auto& [b, r] : holds) holds_.emplace(b, std::move(r));  // newer ones of this run win
  return loaded_ = true;
}

Result<PromotionRecord> Promoter::promote(git::Mirror& mirror, const std::string& tag,
                                          const std::string& source) {
  if (Status s = mirror.fetch(); !s.ok()) return s.error();
  (void)load();  // asked for: judged even if earlier records cannot be read now
  auto r = judge_and_move(mirror, tag, source);
  note_tips(mirror);
  return r;
}

Result<PromotionRecord> Promoter::judge_and_move(git::Mirror& mirror, const std::string& tag,
                                                 const std::string& source) {
  trust::ReleaseBranches branches = branches_of(repo_);
  trust::BranchTip tip = [&mirror](const std::string& b) { return mirror.remote_branch(b); };
  trust::BranchHeads heads = [&mirror] { return mirror.remote_branches(); };
  auto plan = trust::plan_promotion(mirror, tag, branches, tip, repo_.policy_root, heads);
  if (!plan) return plan.error();
  PromotionRecord rec;
  rec.repo = repo_.name;
  rec.tag = tag;
  rec.tag_object = mirror.reference("refs/tags/" + tag).value_or("");
  rec.kind = std::string(trust::to_string(plan->verdict.kind));
  rec.target = plan->target;
  rec.commit = plan->commit;
  rec.from = plan->expected_old;
  rec.signers = plan->verdict.signers;
  rec.reasons = plan->verdict.reasons;
  rec.hotfix_branch = plan->hotfix_branch;
  rec.source = source;
  rec.at = clock_.now();
  // Found by a fetch, a tag whose commit the branch already holds behind its tip is an old
  // release, not a request: judging it would only record a refusal (not a fast-forward).
  if (source == "fetch" && !plan->verdict.hotfix && !rec.target.empty() && !rec.from.empty() &&
      !rec.commit.empty() && rec.commit != rec.from) {
    auto behind = mirror.is_ancestor(rec.commit, rec.from);
    if (!behind) return behind.error();
    if (*behind) {
      judged_.emplace(rec.tag, rec.tag_object);
      rec.reasons = {rec.target + " already holds " + rec.commit.substr(0, 12) +
                     " behind its tip: nothing to promote"};
      return rec;
    }
  }
  if (rec.reasons.empty() && (rec.target == repo_.master || rec.target == repo_.dmz))
    rec.reasons.push_back(rec.target + " is also this repository's " +
                          std::string(rec.target == repo_.master ? "master" : "dmz") +
                          ": set staging and production in its configuration");
  if (rec.reasons.empty()) {
    if (rec.from == rec.commit) {
      rec.promoted = true;  // already there: nothing to move
    } else if (plan->verdict.hotfix) {
      auto pushed = push_hotfix_candidate(mirror, rec);
      if (!pushed) return pushed.error();
      rec.promoted = *pushed;
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
    spdlog::info("{}: {} {} promoted to {} at {}{}", repo_.name, rec.kind, tag, rec.target,
                 rec.commit.substr(0, 12),
                 rec.hotfix_branch.empty() ? "" : " (hotfix " + rec.hotfix_branch + ")");
  else
    spdlog::warn("{}: promotion of {} refused: {}", repo_.name, tag,
                 rec.reasons.empty() ? "" : rec.reasons.front());
  remember(rec);
  // A hotfix in production is not on master yet: the service brings it back through the queue.
  if (rec.promoted && rec.target == repo_.production && !rec.hotfix_branch.empty() &&
      rec.from != rec.commit && on_hotfix_)
    on_hotfix_(rec);
  return rec;
}

// A hotfix candidate moves staging back from a newer candidate to the hotfix: a compare-and-swap
// on staging's tip (the server checks it), not a fast-forward.
Result<bool> Promoter::push_hotfix_candidate(git::Mirror& mirror, PromotionRecord& rec) {
  git::RefUpdate update;
  update.ref = "refs/heads/" + rec.target;
  update.new_sha = rec.commit;
  update.expected_old = rec.from;
  auto pushed = mirror.push_refs({update});
  if (!pushed) return pushed.error();
  if (pushed->ok()) return true;
  const git::RefResult& r = pushed->refs.empty() ? git::RefResult{} : pushed->refs.front();
  rec.reasons.push_back(r.status == git::RefStatus::kStale
                            ? rec.target + " moved on the remote meanwhile: nothing pushed"
                            : "the push of " + rec.target + " was refused: " + r.summary);
  return false;
}

void Promoter::after_fetch(git::Mirror& mirror) {
  if (!load()) {  // without the records every old tag would be judged again
    note_tips(mirror);
    return;
  }
  trust::ReleaseBranches branches = branches_of(repo_);
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
    if (!judged_.count({n, mirror.reference("refs/tags/" + n).value_or("")}))
      fresh.emplace_back(n, kind);
  for (trust::TagKind pass : {trust::TagKind::kCandidate, trust::TagKind::kRelease})
    for (const auto& [n, kind] : fresh) {
      if (kind != pass) continue;
      auto r = judge_and_move(mirror, n, "fetch");
      if (!r) spdlog::warn("{}: promotion of {}: {}", repo_.name, n, r.message());
    }
  note_tips(mirror);
  save_unsaved();
  hand_over_hotfixes(mirror);
}

void Promoter::hand_over_hotfixes(git::Mirror& mirror) {
  if (!on_hotfix_ || hotfixes_handed_.exchange(true)) return;
  auto master = mirror.remote_branch(repo_.master);
  if (!master) {
    hotfixes_handed_ = false;  // nothing to bring them into yet: again after the next fetch
    return;
  }
  std::map<std::int64_t, PromotionRecord> released;  // by seq: the holder and the recent ones
  {
    std::lock_guard lock(mu_);
    if (auto held = holds_.find(repo_.production); held != holds_.end())
      released.emplace(held->second.seq, held->second);
    for (const auto& r : recent_) released.emplace(r.seq, r);
  }
  for (const auto& [seq, r] : released) {
    if (!r.promoted || r.target != repo_.production || r.hotfix_branch.empty() ||
        r.from == r.commit)
      continue;
    auto on_master = mirror.is_ancestor(r.commit, *master);
    if (!on_master) {
      spdlog::warn("{}: hotfix {}: {}", repo_.name, r.tag, on_master.message());
      hotfixes_handed_ = false;  // again after the next fetch
    } else if (!*on_master) {
      on_hotfix_(r);
    }
  }
}

void Promoter::remember(PromotionRecord& r) {
  judged_.emplace(r.tag, r.tag_object);
  if (store_) {
    // The branches and tags are the durable truth; a record that cannot be written is logged,
    // and the tag may be judged again after a restart (idempotent: it is then already there).
    auto seq = store_->record_promotion(r);
    if (seq) {
      r.seq = *seq;
    } else {
      // Saved again after the next fetches: a hotfix needs its seq to be brought back.
      spdlog::warn("{}: promotion record of {} not saved: {}", repo_.name, r.tag, seq.message());
      if (unsaved_.size() < kRecent) unsaved_.push_back(r);
    }
  }
  std::lock_guard lock(mu_);
  recent_.push_front(r);
  if (recent_.size() > kRecent) recent_.pop_back();
  if (r.promoted) {
    holds_[r.target] = r;
    tips_[r.target] = r.commit;
  }
}

void Promoter::save_unsaved() {
  for (auto it = unsaved_.begin(); it != unsaved_.end();) {
    auto seq = store_->record_promotion(*it);
    if (!seq) return;  // the store still refuses: the rest wait too
    auto same = [&](const PromotionRecord& x) {
      return x.seq == 0 && x.tag == it->tag && x.tag_object == it->tag_object && x.at == it->at;
    };
    {
      std::lock_guard lock(mu_);
      for (auto& r : recent_)
        if (same(r)) r.seq = *seq;
      for (auto& [branch, r] : holds_)
        if (same(r)) r.seq = *seq;
    }
    it = unsaved_.erase(it);
  }
}

void Promoter::note_tips(git::Mirror& mirror) {
  std::map<std::string, std::string> tips;
  for (const std::string& b : {repo_.staging, repo_.production})
    if (auto t = mirror.remote_branch(b)) tips[b] = *t;
  std::lock_guard lock(mu_);
  tips_ = std::move(tips);
}

std::string Promoter::record_json(const PromotionRecord& r) { return json_text(to_json(r)); }

Promoter::Holdings Promoter::holdings() const {
  std::lock_guard lock(mu_);
  Holdings out;
  for (const std::string& b : {repo_.staging, repo_.production}) {
    const bool staging = b == repo_.staging;
    auto tip = tips_.find(b);
    if (tip == tips_.end()) continue;
    (staging ? out.staging_tip : out.production_tip) = tip->second;
    // What dmzbot put there, if the branch is still where it left it.
    if (auto h = holds_.find(b); h != holds_.end() && h->second.commit == tip->second)
      (staging ? out.staging : out.production) = h->second;
  }
  out.recent.assign(recent_.begin(), recent_.end());
  return out;
}

std::string Promoter::json() const {
  Holdings h = holdings();
  nlohmann::json out;
  auto branch = [](const std::string& name, const std::optional<std::string>& tip,
                   const std::optional<PromotionRecord>& held) -> nlohmann::json {
    if (!tip) return nullptr;
    nlohmann::json j = {{"branch", name}, {"commit", *tip}};
    if (held) {
      j["tag"] = held->tag;
      j["signers"] = held->signers;
      j["at"] = held->at;
    }
    return j;
  };
  out["staging"] = branch(repo_.staging, h.staging_tip, h.staging);
  out["production"] = branch(repo_.production, h.production_tip, h.production);
  out["recent"] = nlohmann::json::array();
  for (const auto& r : h.recent) out["recent"].push_back(to_json(r));
  // A tag's name is bytes a pusher chose: one that is not UTF-8 must not fail the page.
  return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace dmz

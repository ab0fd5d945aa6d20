#include "bot/service/git_worker.hpp"

#include <algorithm>
#include <chrono>
#include <set>

#include "base/log.hpp"
#include "base/metrics.hpp"
#include "base/text.hpp"
#include "bot/git/mirror.hpp"
#include "bot/git/signer.hpp"
#include "bot/trust/candidate_check.hpp"
#include "bot/trust/gate.hpp"
#include "bot/trust/signed_object.hpp"
#include "forges/plain.hpp"

namespace dmz {

namespace q = queue;

namespace {
// Times one git operation on `repo` for /metrics.
class GitTimer {
 public:
  GitTimer(std::string repo, std::string op)
      : repo_(std::move(repo)), op_(std::move(op)), start_(std::chrono::steady_clock::now()) {}
  ~GitTimer() {
    metrics::global().observe(
        "dmzbot_git_operation_seconds", {{"repo", repo_}, {"op", op_}},
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  }

 private:
  std::string repo_, op_;
  std::chrono::steady_clock::time_point start_;
};
}  // namespace

std::string merge_message(const std::string& repo, const q::MergeItem& item) {
  std::string subject =
      "Merge #" + std::to_string(item.number) + " from " + escape_control(item.branch);
  if (!item.title.empty()) subject += ": " + escape_control(item.title);
  return subject + "\n\nMerged into " + repo + " by dmzbot after approval at " +
         item.head.substr(0, 12) + ".\n\nPull-Request: #" + std::to_string(item.number) +
         "\nHead: " + item.head + "\nApproved-by: " + escape_control(item.approver) + "\n";
}

GitWorker::GitWorker(config::Repo repo, config::Signing signing,
                     std::unique_ptr<git::Mirror> mirror, std::unique_ptr<Signer> signer,
                     const Clock& clock)
    : repo_(std::move(repo)),
      signing_(std::move(signing)),
      mirror_(std::move(mirror)),
      signer_(std::move(signer)),
      policy_(make_policy_checker(repo_)),
      candidates_(std::make_unique<CandidateChecker>(repo_)),
      clock_(clock),
      last_fetch_(unavailable("the remote has not been fetched yet")) {}

GitWorker::~GitWorker() = default;

forges::RemoteRefs GitWorker::read_refs() {
  forges::RemoteRefs refs;
  refs.branches = mirror_->remote_branches();
  std::map<std::string, std::pair<q::Sha, q::Sha>> peeled;
  for (const auto& [name, object] : mirror_->tags()) {
    auto known = peeled_.find(name);
    if (known != peeled_.end() && known->second.first == object) {
      peeled.emplace(name, known->second);
    } else if (auto commit = mirror_->resolve(object); commit) {
      peeled.emplace(name, std::make_pair(object, *commit));
    }
  }
  peeled_ = std::move(peeled);
  for (const auto& [name, objects] : peeled_) refs.tags.emplace(name, objects.second);
  // A forge's pull request heads (GitHub: refs/pull/N/head, fetched as refs/remotes/pull/N):
  // the head of a PR from a fork is nowhere else.
  for (const auto& [name, sha] : mirror_->refs_under("refs/remotes/pull/")) {
    if (name.empty() || name.size() > 9 ||
        name.find_first_not_of("0123456789") != std::string::npos)
      continue;
    refs.pulls.emplace(std::stoi(name), sha);
  }
  return refs;
}

namespace {

// Every head a PR can have, by the name RemoteRefs::rewritten uses: branches, "tags/<name>"
// and "pull/<N>".
std::map<std::string, q::Sha> all_heads(const forges::RemoteRefs& refs) {
  auto heads = forges::pr_heads(refs);
  for (const auto& [n, sha] : refs.pulls) heads.emplace("pull/" + std::to_string(n), sha);
  return heads;
}

}  // namespace

Result<forges::RemoteRefs> GitWorker::fetch() {
  GitTimer timer(repo_.name, "fetch");
  // What the mirror held before: a head that no longer contains it was force-pushed.
  const auto before = all_heads(read_refs());
  if (Status s = mirror_->fetch(); !s.ok()) {
    last_fetch_ = unavailable("fetch " + repo_.name + ": " + s.message());
    return last_fetch_.error();
  }
  last_fetch_ = {};
  collect_garbage_daily();
  auto refs = read_refs();
  for (const auto& [n, sha] : refs.pulls) {
    auto old = before.find("pull/" + std::to_string(n));
    if (old == before.end() || old->second != sha) refs.moved_pulls.insert(n);
  }
  for (const auto& [name, sha] : all_heads(refs)) {
    auto old = before.find(name);
    if (old == before.end() || old->second == sha) continue;
    auto contains = mirror_->is_ancestor(old->second, sha);
    if (contains && !*contains) refs.rewritten.insert(name);
  }
  return refs;
}

void GitWorker::collect_garbage_daily() {
  const Millis now = clock_.now();
  if (last_gc_ && now - *last_gc_ < kGcInterval) return;
  last_gc_ = now;  // tried: a gc that fails is not run again at every fetch
  GitTimer timer(repo_.name, "gc");
  if (Status s = mirror_->collect_garbage(); !s.ok())
    log::warn({.repo = repo_.name}, "garbage collection of the mirror failed: {}", s.message());
}

namespace {

std::string nothing_to_merge(const q::Sha& head, const std::string& where) {
  return std::string(q::kNothingToMerge) + head.substr(0, 7) + " is already in " + where;
}

// Whether a failure to give a tag PR its mergetag is the PR's (its tag is gone, malformed or
// moved) rather than dmzbot's (reading the mirror: retried, nobody blamed).
bool tag_at_fault(Code code) { return code == Code::kNotFound || code == Code::kInvalid; }

// The mergetag header of a PR made by a signed tag: the tag object refs/tags/<name> names now
// (fetched, forced), which must be the very object the gate judged (its signature, its name)
// and point at the head the approval pinned. A tag made again since, even on the same commit
// and by the same signer, was never judged: the PR fails, to be judged again on approval.
// (mergetag_for would take a tag object the mirror cannot read for a missing tag: the PR's.)
Result<std::string> pinned_mergetag(git::Mirror& mirror, const q::MergeItem& item) {
  const std::string name = item.branch.substr(forges::kTagPrefix.size());
  const std::string ref = "refs/tags/" + name;
  auto id = mirror.reference(ref);
  if (!id) return not_found(ref + " is not in the repository");
  auto object = mirror.read_object(*id);
  if (!object) return object.status().prefixed(ref + ": ").error();
  if (item.tag.empty())
    return invalid(ref + " (tag object " + id->substr(0, 7) +
                   ") was not judged by the policy; approve again to have it judged");
  if (*id != item.tag)
    return invalid(ref + " is tag object " + id->substr(0, 7) + ", not " + item.tag.substr(0, 7) +
                   " that the policy judged: the tag was made again after the approval; "
                   "approve again to have it judged");
  if (object->second != "tag") return not_found(ref + " is not an annotated tag");
  auto tag = parse_tag(object->first);
  if (!tag) return tag.status().prefixed(ref + ": ").error();
  if (tag->tag != name) return invalid("tag " + ref + " claims to be " + tag->tag);
  if (tag->type != "commit" || tag->object != item.head)
    return invalid(ref + " now points at " + tag->object.substr(0, 7) +
                   ", not at the approved head " + item.head.substr(0, 7) +
                   ": the tag moved after the approval");
  return std::move(object->first);
}

}  // namespace

Result<q::Sha> GitWorker::try_build(int number, const q::Sha& head, const q::Sha& base,
                                    const std::string& branch) {
  git::Identity who{signing_.name, signing_.email, clock_.now() / 1000, 0};
  q::MergeItem item{number, head, "pull/" + std::to_string(number), "try", "", ""};
  const std::string message = "Try #" + std::to_string(number) + " on " + base.substr(0, 12) +
                              "\n\nBuilt by dmzbot on request; not queued.\n\n" +
                              "Pull-Request: #" + std::to_string(number) + "\nHead: " + head + "\n";
  if (out_of_reach(head))  // not the PR's fault: the remote is down and the mirror lacks it
    return unavailable("head " + head.substr(0, 12) +
                       " is not in the mirror yet, and the remote cannot be fetched (" +
                       last_fetch_.message() + ")");
  auto merged = mirror_->merge(base, head, message, who, signer_.get(), {});
  if (!merged) return merged.error();
  if (merged->up_to_date) return conflict(nothing_to_merge(head, "master " + base.substr(0, 7)));
  if (!merged->clean) {
    std::string paths;
    for (const auto& p : merged->conflicts) paths += (paths.empty() ? "" : ", ") + p;
    return conflict("merge conflict in " + paths);
  }
  if (Status s = mirror_->push_force(merged->commit, branch); !s.ok()) return s.error();
  return merged->commit;
}

Status GitWorker::prune_try_branches(const std::string& prefix, const std::set<int>& keep) {
  std::vector<git::RefUpdate> deletes;
  for (const auto& [branch, sha] : mirror_->remote_branches()) {
    if (!branch.starts_with(prefix + "/")) continue;
    const std::string digits = branch.substr(prefix.size() + 1);
    if (digits.empty() || digits.size() > 9 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;  // not one of dmzbot's
    if (!keep.count(std::stoi(digits))) deletes.push_back({"refs/heads/" + branch, "", {}});
  }
  if (deletes.empty()) return {};
  auto r = mirror_->push_refs(deletes);
  if (!r) return r.status();
  if (!r->ok()) return conflict("deleting obsolete try branches was refused");
  return {};
}

q::MergeDone GitWorker::build_candidate(const q::BuildCandidate& a) {
  GitTimer timer(repo_.name, "build_candidate");
  q::MergeDone done{a.candidate};
  git::Identity who{signing_.name, signing_.email, clock_.now() / 1000, 0};
  git::Sha tip = a.base;
  int merged_before = 0;  // the PR whose merge `tip` is (0: tip is the base)
  auto finish = [&] {
    done.at = clock_.now();
    return done;
  };
  for (const auto& item : a.items) {
    std::vector<std::pair<std::string, std::string>> headers;
    if (item.branch.starts_with(forges::kTagPrefix)) {
      // Record the contributor's signed tag so `git show --show-signature` verifies it later.
      auto tag = pinned_mergetag(*mirror_, item);
      if (!tag) {
        done.message = tag.message();
        if (tag_at_fault(tag.code())) done.culprit = item.number;
        return finish();
      }
      headers.emplace_back("mergetag", *tag);
    }
    if (out_of_reach(item.head)) {
      // Not a bad head: one the remote may have, out of reach (a webhook named it, or the
      // service restarted with the remote down). Blaming the PR would fail it after a few
      // tries for the remote's outage.
      done.message = "head " + item.head + " of #" + std::to_string(item.number) +
                     " is not in the mirror yet, and the remote cannot be fetched (" +
                     last_fetch_.message() + ")";
      return finish();
    }
    auto merged = mirror_->merge(tip, item.head, merge_message(repo_.name, item), who,
                                 signer_.get(), headers);
    if (!merged) {
      // This PR's head, unless the mirror says it failed on our side (the signer, the disk):
      // then it is nobody's, as the push below.
      done.message = merged.message();
      if (merged.code() != Code::kUnavailable) done.culprit = item.number;
      return finish();
    }
    if (merged->up_to_date) {
      // As a conflict: the engine fails the PR at once with this reason (or, behind a
      // candidate that may still fail, holds it for that candidate's fate).
      const std::string where = merged_before == 0
                                    ? "the base " + tip.substr(0, 7)
                                    : "the merge of #" + std::to_string(merged_before);
      done.outcome = q::MergeOutcome::Conflict;
      done.culprit = item.number;
      done.conflicts = {nothing_to_merge(item.head, where)};
      done.message = done.conflicts.front();
      return finish();
    }
    if (!merged->clean) {
      done.outcome = q::MergeOutcome::Conflict;
      done.culprit = item.number;
      done.conflicts = merged->conflicts;
      return finish();
    }
    tip = merged->commit;
    merged_before = item.number;
  }
  // The candidate's own branch (any CI builds it on push) and, at the tip of the train, dmz:
  // both forced, in one atomic push.
  std::vector<git::RefUpdate> updates;
  const std::string& pattern = repo_.queue.candidate_branch;
  if (!pattern.empty())
    updates.push_back({"refs/heads/" + config::candidate_branch(pattern, a.candidate), tip, {}});
  if (a.tip) updates.push_back({"refs/heads/" + repo_.dmz, tip, {}});
  Status pushed;
  if (!updates.empty()) {
    auto r = mirror_->push_refs(updates);
    if (!r)
      pushed = r.status();
    else if (!r->ok())
      pushed =
          conflict("push of candidate " + std::to_string(a.candidate) + " refused: " +
                   (r->remote_messages.empty() ? r->refs.front().summary : r->remote_messages));
  }
  if (!pushed.ok()) {
    done.message = pushed.message();
  } else {
    done.outcome = q::MergeOutcome::Merged;
    done.sha = tip;
  }
  return finish();
}

Status GitWorker::prune_candidates(const q::PruneCandidates& a) {
  const std::string& pattern = repo_.queue.candidate_branch;
  if (pattern.empty()) return {};
  const std::set<q::CandidateId> keep(a.keep.begin(), a.keep.end());
  auto obsolete = [&] {
    std::vector<git::RefUpdate> deletes;
    for (const auto& [branch, sha] : mirror_->remote_branches())
      if (auto id = config::candidate_of_branch(pattern, branch); id && !keep.count(*id))
        deletes.push_back({"refs/heads/" + branch, "", {}});
    return deletes;
  };
  auto deletes = obsolete();
  if (deletes.empty()) return {};
  auto r = mirror_->push_refs(deletes);
  if (r && r->ok()) return {};
  // Someone else deleted one of them (the push is atomic): see what is really there, once.
  if (Status s = mirror_->fetch(); !s.ok()) return s;
  deletes = obsolete();
  if (deletes.empty()) return {};
  r = mirror_->push_refs(deletes);
  if (!r) return r.status();
  if (!r->ok()) return conflict("deleting obsolete candidate branches was refused");
  return {};
}

Status GitWorker::repush_candidate(q::CandidateId id, const q::Sha& sha) {
  const std::string& pattern = repo_.queue.candidate_branch;
  if (pattern.empty()) return {};
  const std::string ref = "refs/heads/" + config::candidate_branch(pattern, id);
  if (mirror_->remote_branch(config::candidate_branch(pattern, id))) {
    auto gone = mirror_->push_refs({{ref, "", {}}});
    if (!gone) return gone.status();
  }
  auto back = mirror_->push_refs({{ref, sha, {}}});
  if (!back) return back.status();
  if (!back->ok()) return conflict("push of " + ref + " refused");
  return {};
}

q::PolicyChecked GitWorker::check_policy(const q::CheckPolicy& a, const ForgeReviews& reviews) {
  q::PullRequest pr;
  pr.number = a.number;
  pr.branch = a.branch;
  pr.author = a.author;
  pr.head = a.sha;
  auto verdict = policy_->check(*mirror_, pr, a.sha, a.target, clock_.now(), reviews);
  verdict.target = a.target;
  verdict.epoch = a.epoch;  // the engine takes it only while the policy is the one it asked under
  return verdict;
}

bool GitWorker::has_commits(const std::vector<q::Sha>& commits) {
  return std::all_of(commits.begin(), commits.end(), [&](const q::Sha& sha) {
    auto object = mirror_->read_object(sha);
    return object && object->second == "commit";
  });
}

bool GitWorker::out_of_reach(const q::Sha& sha) {
  return !last_fetch_.ok() && !mirror_->read_object(sha);
}

bool GitWorker::counts_forge_reviews(const q::CheckPolicy& a) {
  return policy_->counts_forge_reviews(*mirror_, a.target);
}

q::CandidateChecked GitWorker::check_candidate(const q::CheckCandidate& a) {
  return candidates_->check(*mirror_, a, clock_.now());
}

Status GitWorker::reset_dmz(const q::ResetDmz& a) {
  GitTimer timer(repo_.name, "reset_dmz");
  return mirror_->push_force(a.sha, repo_.dmz);
}

q::MasterPushed GitWorker::fast_forward(const q::FastForwardMaster& a) {
  GitTimer timer(repo_.name, "fast_forward");
  q::MasterPushed pushed{a.candidate};
  auto r = mirror_->push_fast_forward(repo_.master, a.from, a.to);
  if (!r) {
    pushed.message = r.message();
  } else {
    pushed.ok = r->ok;
    pushed.message = r->message;
    // Where the remote was read to be: the engine tells a push refused with master in place
    // from one without an answer (remote_master empty: the error above).
    pushed.remote_master = r->remote_sha;
    if (r->remote_moved) {
      // The engine will rebuild on the new master: its objects must be in the mirror.
      if (Status s = mirror_->fetch(); !s.ok())
        log::warn({.repo = repo_.name}, "fetch after a moved master failed: {}", s.message());
    }
  }
  pushed.at = clock_.now();
  return pushed;
}

Status GitWorker::export_tree(const q::Sha& commit, const std::filesystem::path& dir) {
  return mirror_->export_tree(commit, dir);
}

std::uint64_t GitWorker::signature_verifications() const {
  return policy_->signature_verifications() + candidates_->signature_verifications();
}

}  // namespace dmz

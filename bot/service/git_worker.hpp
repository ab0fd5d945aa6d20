// What one repository's git thread does, as blocking calls over its mirror: fetch and read the
// remote's refs, build candidates (in-memory merges with signed merge commits), judge PRs and
// candidates against the trust policy, reset dmz, fast-forward master. Each call answers with
// the event the driver expects; no call reads engine state (the actions carry what they need).
// Threading: one thread at a time (the repository's git worker).
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "base/clock.hpp"
#include "base/status.hpp"
#include "bot/trust/gate.hpp"
#include "config/config.hpp"
#include "forges/forge.hpp"
#include "queue/model.hpp"

namespace dmz {
namespace git {
class Mirror;
}
class Signer;
class CandidateChecker;

class GitWorker {
 public:
  GitWorker(config::Repo repo, config::Signing signing, std::unique_ptr<git::Mirror> mirror,
            std::unique_ptr<Signer> signer, const Clock& clock);
  ~GitWorker();

  // Fetches, then reads the remote's branches and annotated tags (peeled to commits; a tag
  // object is peeled once). A head that no longer contains the head seen before the fetch is
  // reported as rewritten. A failure to reach the remote is `unavailable`. After the first
  // successful fetch, then at most once a day (kGcInterval), the mirror is garbage-collected
  // (git gc --auto); a failure of that is only logged.
  Result<forges::RemoteRefs> fetch();
  // Whether the mirror holds every one of `commits` as a commit (none: true).
  bool has_commits(const std::vector<queue::Sha>& commits);
  // Whether the mirror lacks `sha` while the last fetch failed: whether that head is good or
  // bad cannot be told until the remote answers again.
  bool out_of_reach(const queue::Sha& sha);
  // A head that cannot be merged is its PR's fault (MergeDone::culprit), unless the mirror
  // lacks it while the last fetch failed: then the remote is (nobody's, retried). A head
  // already in what it is merged onto is refused as a conflict ("nothing to merge: ..."), so
  // that its PR fails at once instead of landing as an empty merge. A PR made by a signed tag
  // fails (as an error) if refs/tags/<name> no longer points at its approved head.
  queue::MergeDone build_candidate(const queue::BuildCandidate& action);
  // `reviews`: the PR's reviews as the forge reports them (none for a forge without an API).
  queue::PolicyChecked check_policy(const queue::CheckPolicy& action,
                                    const ForgeReviews& reviews = {});
  // Whether the policy the action would be judged by lets forge reviews count.
  bool counts_forge_reviews(const queue::CheckPolicy& action);
  queue::CandidateChecked check_candidate(const queue::CheckCandidate& action);
  Status reset_dmz(const queue::ResetDmz& action);
  // Deletes every remote candidate branch (repo.queue.candidate_branch) not in `keep`.
  Status prune_candidates(const queue::PruneCandidates& action);
  // Pushes a candidate's branch again (deleted, then created) so that a CI that builds on
  // push builds it again: the retry of a build that may have been a flake.
  Status repush_candidate(queue::CandidateId id, const queue::Sha& sha);
  queue::MasterPushed fast_forward(const queue::FastForwardMaster& action);
  Status export_tree(const queue::Sha& commit, const std::filesystem::path& dir);
  // A try build: `head` merged onto `base` (master) in memory and force-pushed to `branch`, so
  // CI builds it; nothing is queued. conflict (with the paths) if the merge conflicts.
  Result<queue::Sha> try_build(int number, const queue::Sha& head, const queue::Sha& base,
                               const std::string& branch);
  // Deletes every remote try branch `<prefix>/<n>` (as the mirror last saw the remote) whose
  // PR `n` is not in `keep`: the PR merged or closed, so its try build is obsolete.
  Status prune_try_branches(const std::string& prefix, const std::set<int>& keep);
  std::uint64_t signature_verifications() const;
  // The mirror, for other work on this thread (release promotion).
  git::Mirror& mirror() { return *mirror_; }

 private:
  forges::RemoteRefs read_refs();
  void collect_garbage_daily();

  config::Repo repo_;
  config::Signing signing_;
  std::unique_ptr<git::Mirror> mirror_;
  std::unique_ptr<Signer> signer_;
  std::unique_ptr<PolicyChecker> policy_;
  std::unique_ptr<CandidateChecker> candidates_;
  const Clock& clock_;
  std::map<std::string, std::pair<queue::Sha, queue::Sha>> peeled_;  // tag -> (object, commit)
  Status last_fetch_;              // how the last fetch went (an error until one succeeded)
  std::optional<Millis> last_gc_;  // when the mirror was last garbage-collected (tried)
};

// How often the git thread runs `git gc --auto` on the mirror: fetches leave up to
// transfer.unpackLimit (100) objects loose each, and merges write theirs loose, so a busy
// repository gathers thousands a day. A gc --auto under git's thresholds costs a directory
// listing, but one that repacks can hold the git thread (merges, landings) for minutes on a
// large repository: once a day bounds that, and a day's loose objects cost little.
inline constexpr Millis kGcInterval = 24 * 60 * 60 * 1000;

// The merge commit message dmzbot writes: a subject naming the PR, then trailers naming the
// PR, its head SHA and its approver (invariant 4 of DESIGN.md). Control characters in the
// names are escaped, so no name can add a line (a forged trailer) to the message.
std::string merge_message(const std::string& repo, const queue::MergeItem& item);

}  // namespace dmz

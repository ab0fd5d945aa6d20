// dmzbot's bare mirror of a remote: libgit2 for reading objects, in-memory merges, writing
// commits and tree export; the git command (bot/git/transport.hpp) for fetch and push, with
// credentials and deadlines. RAII for every libgit2 object; errors carry libgit2's or git's
// own message, read on the thread that failed.
// Threading: a Mirror is used by one thread at a time (the repository's git worker).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/status.hpp"
#include "bot/git/transport.hpp"

namespace dmz {
class Signer;
}

namespace dmz::git {

// Call once per process before any other function here (safe to call again).
void init();

// What read_object holds at most by default: dmzbot parses commits, tags, trees and small files
// (policies, notes, certificates), none of which is this large in good faith.
inline constexpr std::size_t kMaxObjectBytes = std::size_t{64} << 20;

struct Identity {
  std::string name = "dmzbot";
  std::string email = "dmzbot@localhost";
  std::int64_t time = 0;  // seconds since the epoch; 0 = now
  int offset_minutes = 0;
};

struct MergeOutcome {
  bool clean = false;
  Sha commit;                          // clean: the merge commit written to the object database
  std::vector<std::string> conflicts;  // !clean: the conflicting paths, sorted
  // !clean, no conflicts: the head is the base or already in it, so there is nothing to merge
  // (git: "Already up to date"); no commit is written.
  bool up_to_date = false;
};

struct FastForwardOutcome {
  bool ok = false;            // the remote branch now points at the new sha
  bool remote_moved = false;  // the remote was not at the expected old value; nothing pushed
  Sha remote_sha;             // what the remote branch was at when checked
  std::string message;
};

class Mirror {
 public:
  // Opens the bare repository at `dir`, creating it (and remote "origin" -> `transport.url`)
  // if missing; an existing mirror gets its origin URL updated. fetch and the pushes go
  // through `transport` (credentials, timeouts, fetch refspecs, push signing).
  static Result<std::unique_ptr<Mirror>> open(const std::filesystem::path& dir,
                                              TransportOptions transport);
  // The same with default transport options (no credentials, 60 s network timeout).
  static Result<std::unique_ptr<Mirror>> open(const std::filesystem::path& dir,
                                              const std::string& remote_url);
  // Opens an existing repository (bare, or a work tree or any directory inside one) without
  // touching its configuration; no remote is needed (for `dmzbot verify --repo DIR`). fetch and
  // the pushes fail on a mirror opened this way unless the repository has an "origin" remote
  // (reached with default transport options).
  static Result<std::unique_ptr<Mirror>> open_existing(const std::filesystem::path& dir);
  ~Mirror();
  Mirror(const Mirror&) = delete;
  Mirror& operator=(const Mirror&) = delete;

  const std::filesystem::path& path() const;

  // The transport's fetch refspecs, by default +refs/heads/*:refs/remotes/origin/*,
  // +refs/tags/*:refs/tags/* and +refs/notes/*:refs/notes/* (pruning deleted branches).
  // A fetch or push stopped at its deadline may leave git's *.lock files: the next one of a
  // mirror made by open() removes them first (nothing else writes to it).
  Status fetch();
  // git gc --auto, under the transport's deadline (the mirror's fetches never start one).
  Status collect_garbage();
  std::optional<Sha> remote_branch(const std::string& name) const;  // refs/remotes/origin/<name>
  std::map<std::string, Sha> remote_branches() const;               // branch name -> sha
  // The direct refs under `prefix` ("refs/remotes/pull/"), by their name after it.
  std::map<std::string, Sha> refs_under(const std::string& prefix) const;
  // What the local ref `name` ("refs/notes/dmz-approvals") points at, symbolic refs resolved;
  // nullopt if there is no such ref.
  std::optional<Sha> reference(const std::string& name) const;
  // Every value the local ref `name` took, oldest first, from its reflog (a mirror keeps one
  // for its branches and tracking refs: core.logAllRefUpdates=true); empty without a reflog.
  Result<std::vector<Sha>> reflog(const std::string& name) const;

  // Merges `head` into `base` in memory (no working tree) and writes a merge commit with
  // parents (base, head), the merged tree, `message`, committer/author `who`, the extra header
  // lines (e.g. {"mergetag", tag object text}) and, if `signer` is set, a gpgsig header over
  // the rest of the commit exactly as git signs. A conflict is a value, not an error; so is a
  // head that is the base or one of its ancestors (up_to_date: an empty merge would record a
  // PR as merged that brought nothing).
  Result<MergeOutcome> merge(
      const Sha& base, const Sha& head, const std::string& message, const Identity& who,
      Signer* signer = nullptr,
      const std::vector<std::pair<std::string, std::string>>& extra_headers = {});

  // Force-pushes `sha` to refs/heads/<branch> on origin (dmz is dmzbot's own branch). A
  // refusal by the server is a `conflict` error.
  Status push_force(const Sha& sha, const std::string& branch);
  // Pushes `new_sha` to refs/heads/<branch> only if the remote is at `expected_old` ("" = the
  // branch must not exist) and only as a fast-forward; the server checks the old value when
  // it updates the ref (--force-with-lease). If the remote is already at `new_sha`, ok
  // (idempotent after a crash).
  Result<FastForwardOutcome> push_fast_forward(const std::string& branch, const Sha& expected_old,
                                               const Sha& new_sha);
  // Pushes several ref updates at once, atomically when there are several (all move or none);
  // a RefUpdate with an empty new_sha deletes the remote ref (e.g. an obsolete
  // refs/heads/dmz-queue/<id>). Every new sha must be in the mirror. Refusals are values;
  // the tracking refs (refs/remotes/origin/<branch>) follow the branches that moved.
  Result<PushOutcome> push_refs(const std::vector<RefUpdate>& updates);
  // The remote's current values of the given full ref names (absent refs are left out).
  Result<std::map<std::string, Sha>> ls_remote(const std::vector<std::string>& refs);

  // Writes the tree of `commit` into `dir` (created if missing; empty). No .git in it. Every
  // entry is created exclusively under its parent directory, never through a symlink. What
  // the tree makes impossible (an unsafe name, a name twice, a name too long, a symlink
  // without a target) is kInvalid: the tree's fault, not dmzbot's.
  Status export_tree(const Sha& commit, const std::filesystem::path& dir);

  Result<bool> is_ancestor(const Sha& ancestor, const Sha& descendant);
  // Raw object bytes (as `git cat-file <type> <sha>` prints) and its type ("commit", "tag", ...).
  // An object over `max_bytes` is refused (kInvalid, "<sha7> is larger than N bytes") from its
  // header, before it is inflated: a pushed giant blob costs no memory to turn down.
  Result<std::pair<std::string, std::string>> read_object(const Sha& sha,
                                                          std::size_t max_bytes = kMaxObjectBytes);
  // Commits reachable from `to` and not from `exclude` (if not empty), oldest first.
  Result<std::vector<Sha>> rev_list(const Sha& exclude, const Sha& to);
  // At most `limit` commits reachable from `tip`, breadth-first from it (a child before its
  // parents), each with its first parent ("" for a root): a bounded walk of a history that may
  // be long (notes refs).
  Result<std::vector<std::pair<Sha, Sha>>> newest_commits(const Sha& tip, std::size_t limit);
  // Resolves any revision (sha, ref name, "HEAD~2") to a commit sha.
  Result<Sha> resolve(const std::string& revision);

  // The tree of the in-memory merge of two commits, written to the object database; nullopt if
  // the merge conflicts. libgit2's merge (the one merge() writes), which agrees with `git
  // merge-tree --write-tree` (ort) on clean merges, conflicts and criss-cross histories, except
  // that it detects no directory renames: master renaming old/ to new/ while the PR adds
  // old/c.txt conflicts for git, while libgit2 merges it as old/c.txt.
  Result<std::optional<Sha>> merge_tree(const Sha& ours, const Sha& theirs);
  // The content of the blob at `path` ("a/b.txt") in `commit`; nullopt if there is no such path
  // or it is not a blob.
  Result<std::optional<std::string>> read_file(const Sha& commit, const std::string& path);
  // The tree of a commit (its sha).
  Result<Sha> tree_of(const Sha& commit);
  // Local annotated tags: tag name (without refs/tags/) -> the tag OBJECT id. Lightweight tags
  // (refs pointing straight at a commit) are left out.
  std::map<std::string, Sha> tags() const;

 private:
  struct Impl;
  explicit Mirror(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dmz::git

// Commits, trees and files read straight from raw objects (Mirror::read_object), the way git
// reads them, for the audit and the gates. libgit2's commit parser refuses some commits that git
// accepts (a gpgsig header before `author`: git fsck only warns), and every Mirror call that
// names a commit goes through it; dmzbot must still walk past such a commit, judge it (the
// strict parser of signed_object.hpp says why it is refused) and judge the commits after it.
// Threading: like the Mirror, one thread at a time.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.hpp"

namespace dmz {
namespace git {
class Mirror;
}

namespace trust {

// What git needs of a commit to walk history: its tree and parents (commit.c
// parse_commit_buffer reads "tree" on the first line and the "parent" lines right after it;
// the other headers may be in any order).
struct CommitLinks {
  std::string tree;
  std::vector<std::string> parents;
};
// Fails (invalid) if `sha` is not a commit with a tree line first.
Result<CommitLinks> commit_links(git::Mirror& mirror, const std::string& sha);

// One entry of a git tree object: "<mode> <name>\0<20-byte id>".
struct TreeEntry {
  std::string mode;  // as git reads it: "100644", "100755", "120000", "40000" or "160000"
  std::string name;
  std::string id;  // hex
};
bool is_regular_file(const TreeEntry& entry);  // a blob of mode 100644 or 100755
bool is_tree(const TreeEntry& entry);          // a directory (mode 40000)
// "a directory", "a symlink", "a submodule", ... for messages.
std::string kind_of(const TreeEntry& entry);

// The entries of the directory `dir` ("a/b"; "" for the top) of the tree `tree`; nullopt if
// there is no such directory.
Result<std::optional<std::vector<TreeEntry>>> list_tree(git::Mirror& mirror,
                                                        const std::string& tree,
                                                        std::string_view dir);

// The paths that differ between two trees (`from` empty: every path of `to`), each side's
// path of a change listed: the set of paths git diff --name-only --no-renames prints. Fails
// (invalid) after comparing kMaxDiffEntries tree entries, on a path over 4,096 bytes, or past
// 64 MiB of paths: shared subtrees make a few small objects stand for more paths than fit in
// memory.
inline constexpr std::size_t kMaxDiffEntries = 1'000'000;
Result<std::vector<std::string>> changed_paths(git::Mirror& mirror, const std::string& from_tree,
                                               const std::string& to_tree);

// Commits reachable from `tip` and not from `exclude` (if not empty), parents before
// children: Mirror::rev_list, or, if libgit2 refuses a commit on the way, the same walk over
// raw objects.
Result<std::vector<std::string>> rev_list(git::Mirror& mirror, const std::string& exclude,
                                          const std::string& tip);

// A revision resolved to a commit: Mirror::resolve, or, if libgit2 refuses the commit it names,
// a full sha, refs/heads/<rev>, refs/tags/<rev> (annotated tags peeled) or the ref <rev>.
Result<std::string> resolve_commit(git::Mirror& mirror, const std::string& revision);

}  // namespace trust
}  // namespace dmz

// Hand-written over raw objects on purpose: libgit2 (the only git library here) parses every
// commit it looks up strictly, and a refusal there would stop the audit (see the header).
#include "bot/trust/raw_objects.hpp"

#include <algorithm>
#include <map>
#include <set>

#include "base/crypto.hpp"
#include "base/text.hpp"
#include "bot/git/mirror.hpp"

namespace dmz::trust {
namespace {

// changed_paths also fails on a path longer than kMaxPathBytes (git's own practical limit;
// each policy glob costs |pattern| * |path| on it) and once the paths listed add up to more
// than kMaxPathsBytes: a deep tree of long names is a few small objects, and huge as paths.
constexpr std::size_t kMaxPathBytes = 4096;
constexpr std::size_t kMaxPathsBytes = std::size_t{64} << 20;

// A tree entry's mode as git reads it (tree-walk.c get_mode and canon_mode): octal digits of
// any length (an unsigned that wraps, as git's), then the canonical mode of its type. A
// zero-padded "040000" is a directory to git and "100664" a regular file; judged by their
// text, such entries would hide the paths they hold from the gate.
std::optional<std::string> canonical_mode(std::string_view text) {
  if (text.empty()) return std::nullopt;
  unsigned mode = 0;
  for (char c : text) {
    if (c < '0' || c > '7') return std::nullopt;
    mode = (mode << 3) + static_cast<unsigned>(c - '0');
  }
  switch (mode & 0170000) {
    case 0100000:
      return (mode & 0100) ? "100755" : "100644";
    case 0120000:
      return "120000";
    case 0040000:
      return "40000";
    default:
      return "160000";  // git takes any other type for a submodule (a gitlink)
  }
}

// A name git's fsck refuses and its checkout will not write (fsck.c fsck_tree, verify_path):
// read here, it would name a path other than the one a checkout produces.
bool unsafe_name(std::string_view name) {
  return name.empty() || name == "." || name == ".." || name.find('/') != std::string_view::npos ||
         ascii_lower(name) == ".git";
}

// The entries of a raw tree, or why it is not one git would check out as the gate reads it.
// A name twice (two blobs, or a blob and a tree) is refused: the gate would judge the first
// entry and a checkout writes the last, so a changed file could hide behind its old self.
Result<std::vector<TreeEntry>> parse_tree(std::string_view raw) {
  std::vector<TreeEntry> out;
  std::set<std::string, std::less<>> names;
  while (!raw.empty()) {
    size_t sp = raw.find(' ');
    if (sp == std::string_view::npos) return invalid("an entry has no mode");
    size_t nul = raw.find('\0', sp);
    if (nul == std::string_view::npos || raw.size() < nul + 21)
      return invalid("an entry is cut short");
    TreeEntry e;
    auto mode = canonical_mode(raw.substr(0, sp));
    if (!mode) return invalid("an entry has the mode '" + escape_control(raw.substr(0, sp)) + "'");
    e.mode = std::move(*mode);
    e.name = std::string(raw.substr(sp + 1, nul - sp - 1));
    if (unsafe_name(e.name)) return invalid("an entry is named '" + escape_control(e.name) + "'");
    if (!names.insert(e.name).second)
      return invalid("it holds '" + escape_control(e.name) + "' twice");
    e.id = to_hex(raw.substr(nul + 1, 20));
    out.push_back(std::move(e));
    raw.remove_prefix(nul + 21);
  }
  return out;
}

// The entries of the tree object `tree`, by name.
Result<std::map<std::string, TreeEntry>> entries_of(git::Mirror& mirror, const std::string& tree) {
  std::map<std::string, TreeEntry> out;
  if (tree.empty()) return out;
  auto obj = mirror.read_object(tree);
  if (!obj) return obj.error();
  if (obj->second != "tree") return invalid(tree + " is a " + obj->second + ", not a tree");
  auto entries = parse_tree(obj->first);
  if (!entries) return invalid("tree " + tree + " is malformed: " + entries.message());
  for (auto& e : *entries) out.emplace(e.name, std::move(e));
  return out;
}

// The commit an object id names, annotated tags peeled (a few levels at most).
Result<std::string> peel_to_commit(git::Mirror& mirror, std::string id) {
  for (int depth = 0; depth < 8; ++depth) {
    auto obj = mirror.read_object(id);
    if (!obj) return obj.error();
    if (obj->second == "commit") return id;
    if (obj->second != "tag" || obj->first.rfind("object ", 0) != 0)
      return invalid(id + " is a " + obj->second + ", not a commit");
    id = obj->first.substr(7, obj->first.find('\n') - 7);
  }
  return invalid(id + ": too many nested tags");
}

}  // namespace

bool is_regular_file(const TreeEntry& e) { return e.mode == "100644" || e.mode == "100755"; }
bool is_tree(const TreeEntry& e) { return e.mode == "40000"; }

std::string kind_of(const TreeEntry& e) {
  if (is_regular_file(e)) return "a regular file";
  if (is_tree(e)) return "a directory";
  if (e.mode == "120000") return "a symlink";
  return "a submodule";  // the only mode left once canonical
}

Result<CommitLinks> commit_links(git::Mirror& mirror, const std::string& sha) {
  auto obj = mirror.read_object(sha);
  if (!obj) return obj.error();
  if (obj->second != "commit") return invalid(sha + " is a " + obj->second + ", not a commit");
  std::string_view raw = obj->first;
  auto line = [&]() {
    size_t nl = raw.find('\n');
    std::string_view l = raw.substr(0, nl);
    raw.remove_prefix(nl == std::string_view::npos ? raw.size() : nl + 1);
    return l;
  };
  CommitLinks links;
  std::string_view first = line();
  if (!first.starts_with("tree ") || !is_sha1_hex(first.substr(5)))
    return invalid("commit " + sha + " does not start with a tree line");
  links.tree = std::string(first.substr(5));
  while (raw.starts_with("parent ")) {
    std::string_view p = line().substr(7);
    if (!is_sha1_hex(p)) return invalid("commit " + sha + " has a malformed parent line");
    links.parents.emplace_back(p);
  }
  return links;
}

Result<std::optional<std::vector<TreeEntry>>> list_tree(git::Mirror& mirror,
                                                        const std::string& tree,
                                                        std::string_view dir) {
  using Out = std::optional<std::vector<TreeEntry>>;
  std::string at = tree;
  while (true) {
    auto obj = mirror.read_object(at);
    if (!obj) return obj.error();
    if (obj->second != "tree") return Out();
    auto entries = parse_tree(obj->first);
    if (!entries) return invalid("tree " + at + " is malformed");
    if (dir.empty()) return Out(std::move(*entries));
    size_t slash = dir.find('/');
    std::string_view head = dir.substr(0, slash);
    dir = slash == std::string_view::npos ? std::string_view() : dir.substr(slash + 1);
    auto it = std::find_if(entries->begin(), entries->end(),
                           [&](const TreeEntry& e) { return e.name == head; });
    if (it == entries->end() || !is_tree(*it)) return Out();
    at = it->id;
  }
}

Result<std::vector<std::string>> changed_paths(git::Mirror& mirror, const std::string& from_tree,
                                               const std::string& to_tree) {
  struct Pair {
    std::string from, to, prefix;  // tree ids ("" = no tree on that side)
  };
  std::set<std::string> out;
  std::vector<Pair> todo{{from_tree, to_tree, ""}};  // a work list: no recursion on deep trees
  // Trees are shared by id, so a few small objects (1000 entries naming one subtree, four
  // levels deep) stand for 10^12 paths: bound the work, not only the objects.
  std::size_t entries = 0, bytes = 0;
  while (!todo.empty()) {
    Pair pair = std::move(todo.back());
    todo.pop_back();
    if (pair.from == pair.to) continue;
    auto a = entries_of(mirror, pair.from);
    if (!a) return a.error();
    auto b = entries_of(mirror, pair.to);
    if (!b) return b.error();
    std::set<std::string> names;
    for (const auto& [name, e] : *a) names.insert(name);
    for (const auto& [name, e] : *b) names.insert(name);
    for (const auto& name : names) {
      if (++entries > kMaxDiffEntries)
        return invalid("tree " + to_tree + " has too many paths to compare (more than " +
                       std::to_string(kMaxDiffEntries) + " tree entries)");
      auto ia = a->find(name);
      auto ib = b->find(name);
      const TreeEntry* ea = ia == a->end() ? nullptr : &ia->second;
      const TreeEntry* eb = ib == b->end() ? nullptr : &ib->second;
      if (ea && eb && ea->mode == eb->mode && ea->id == eb->id) continue;
      // Checked before it is built: a directory's path is the prefix of everything under it.
      if (pair.prefix.size() + name.size() > kMaxPathBytes) {
        const std::string start = pair.prefix.substr(0, 64) + name.substr(0, 64);
        return invalid("tree " + to_tree + " has a path longer than " +
                       std::to_string(kMaxPathBytes) + " bytes (" +
                       escape_control(utf8_prefix(start, 64)) + "...)");
      }
      const std::string path = pair.prefix + name;
      const bool tree_a = ea && is_tree(*ea), tree_b = eb && is_tree(*eb);
      if (tree_a || tree_b)
        todo.push_back({tree_a ? ea->id : "", tree_b ? eb->id : "", path + "/"});
      if ((ea && !tree_a) || (eb && !tree_b)) {
        if ((bytes += path.size()) > kMaxPathsBytes)
          return invalid("tree " + to_tree + " has too many paths to compare (more than " +
                         std::to_string(kMaxPathsBytes) + " bytes of paths)");
        out.insert(path);
      }
    }
  }
  return std::vector<std::string>(out.begin(), out.end());
}

Result<std::vector<std::string>> rev_list(git::Mirror& mirror, const std::string& exclude,
                                          const std::string& tip) {
  auto fast = mirror.rev_list(exclude, tip);
  if (fast) return fast;

  std::set<std::string> hidden;  // every ancestor of `exclude`, itself included
  if (!exclude.empty()) {
    std::vector<std::string> todo{exclude};
    hidden.insert(exclude);
    while (!todo.empty()) {
      std::string sha = std::move(todo.back());
      todo.pop_back();
      auto links = commit_links(mirror, sha);
      if (!links) return links.error();
      for (auto& p : links->parents)
        if (hidden.insert(p).second) todo.push_back(std::move(p));
    }
  }
  // Depth-first from the tip, each commit listed after all of its parents.
  struct Frame {
    std::string sha;
    std::vector<std::string> parents;
    size_t next = 0;
  };
  std::vector<std::string> out;
  std::set<std::string> seen{tip};
  std::vector<Frame> stack;
  auto push = [&](const std::string& sha) -> Status {
    auto links = commit_links(mirror, sha);
    if (!links) return links.error();
    stack.push_back({sha, std::move(links->parents), 0});
    return {};
  };
  if (!hidden.count(tip))
    if (Status s = push(tip); !s) return s.error();
  while (!stack.empty()) {
    Frame& top = stack.back();
    if (top.next < top.parents.size()) {
      std::string parent = top.parents[top.next++];
      if (!hidden.count(parent) && seen.insert(parent).second)
        if (Status s = push(parent); !s) return s.error();
      continue;
    }
    out.push_back(std::move(top.sha));
    stack.pop_back();
  }
  return out;
}

Result<std::string> resolve_commit(git::Mirror& mirror, const std::string& revision) {
  auto resolved = mirror.resolve(revision);
  if (resolved) return resolved;
  std::vector<std::string> ids;
  if (is_sha1_hex(revision)) ids.push_back(revision);
  for (const std::string& ref : {"refs/heads/" + revision, "refs/tags/" + revision, revision})
    if (auto id = mirror.reference(ref)) ids.push_back(*id);
  for (const auto& id : ids)
    if (auto commit = peel_to_commit(mirror, id)) return commit;
  return resolved.error();
}

}  // namespace dmz::trust

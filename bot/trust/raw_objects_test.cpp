// Trees read as git reads them, on objects written byte for byte (git hash-object --literally):
// a mode git would canonicalize hides nothing from the gate.
#include "bot/trust/raw_objects.hpp"

#include <doctest/doctest.h>

#include <string>

#include "bot/git/mirror.hpp"
#include "tests/support.hpp"

namespace dmz::trust {
namespace {

// Writes a tree object with these raw entries ("<mode> <name>", id) and returns its id.
std::string raw_tree(const std::filesystem::path& repo,
                     const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string bytes;
  for (const auto& [head, hex] : entries) {
    bytes += head + '\0';
    for (size_t i = 0; i < hex.size(); i += 2)
      bytes += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  }
  test::write_file(repo / "tree.bin", bytes);
  std::string id = test::must("git hash-object -w -t tree --literally tree.bin", repo);
  return id.substr(0, 40);
}

// A bare-bones repository with one blob ("x\n") and a mirror on it, for trees made by hand.
struct RawRepo {
  test::TempDir dir;
  std::string blob;
  std::unique_ptr<git::Mirror> mirror;
  RawRepo() {
    test::must("git init -q " + dir.path().string());
    test::write_file(dir / "f", "x\n");
    blob = test::must("git hash-object -w f", dir.path()).substr(0, 40);
    auto m = git::Mirror::open_existing(dir.path());
    REQUIRE(m);
    mirror = std::move(*m);
  }
  std::string tree(const std::vector<std::pair<std::string, std::string>>& entries) {
    return raw_tree(dir.path(), entries);
  }
  // `n` entries e1000, e1001, ... of `mode`, all naming `id`.
  std::string fan(int n, const std::string& mode, const std::string& id) {
    std::vector<std::pair<std::string, std::string>> entries;
    for (int i = 0; i < n; ++i) entries.emplace_back(mode + " e" + std::to_string(1000 + i), id);
    return tree(entries);
  }
};

TEST_CASE("raw trees: modes are read as git reads them") {
  test::TempDir dir;
  test::must("git init -q " + dir.path().string());
  test::write_file(dir / "policy.toml", "version = 1\n");
  const std::string blob = test::must("git hash-object -w policy.toml", dir.path()).substr(0, 40);
  auto mirror = git::Mirror::open_existing(dir.path());
  REQUIRE(mirror);

  // `.dmz` as a zero-padded directory, a group-writable file: what git checks out.
  const std::string dmz = raw_tree(dir.path(), {{"100644 policy.toml", blob}});
  const std::string top = raw_tree(dir.path(), {{"040000 .dmz", dmz}, {"100664 a.txt", blob}});
  auto paths = changed_paths(**mirror, "", top);
  REQUIRE(paths);
  CHECK(*paths == std::vector<std::string>{".dmz/policy.toml", "a.txt"});
  auto listed = list_tree(**mirror, top, ".dmz");
  REQUIRE(listed);
  REQUIRE(listed->has_value());
  REQUIRE((*listed)->size() == 1);
  CHECK(is_regular_file((**listed)[0]));
  auto root = list_tree(**mirror, top, "");
  REQUIRE(root);
  REQUIRE(root->has_value());
  CHECK((**root)[1].mode == "100644");  // a.txt: 100664 is a regular file to git

  // The canonical tree has the same paths: no change between the two.
  const std::string canonical = raw_tree(dir.path(), {{"40000 .dmz", dmz}, {"100644 a.txt", blob}});
  auto none = changed_paths(**mirror, canonical, top);
  REQUIRE(none);
  CHECK(none->empty());

  // Any number of leading zeros: still what git reads.
  const std::string padded =
      raw_tree(dir.path(), {{"0000000040000 .dmz", dmz}, {"000000100644 a.txt", blob}});
  auto same = changed_paths(**mirror, canonical, padded);
  REQUIRE(same);
  CHECK(same->empty());

  // A mode git cannot read is a malformed tree, not a guess.
  const std::string bad = raw_tree(dir.path(), {{"10x644 a.txt", blob}});
  auto refused = changed_paths(**mirror, "", bad);
  CHECK_FALSE(refused);
  CHECK(refused.message().find("malformed") != std::string::npos);
}

TEST_CASE("raw trees: a name twice, or one git will not check out, fails the diff") {
  RawRepo r;
  test::write_file(r.dir / "g", "changed\n");
  const std::string changed = test::must("git hash-object -w g", r.dir.path()).substr(0, 40);
  const std::string base = r.tree({{"100644 secret", r.blob}});
  const std::string sub = r.tree({{"100644 f", changed}});
  struct Case {
    std::vector<std::pair<std::string, std::string>> entries;
    std::string why;
  };
  for (const Case& c : std::vector<Case>{
           // A checkout writes the second `secret`; read first-wins, the change would not show.
           {{{"100644 secret", r.blob}, {"100644 secret", changed}}, "it holds 'secret' twice"},
           {{{"100644 secret", r.blob}, {"40000 secret", sub}}, "it holds 'secret' twice"},
           {{{"100644 secret", r.blob}, {"40000 .GIT", sub}}, "an entry is named '.GIT'"},
           {{{"100644 secret", r.blob}, {"40000 ..", sub}}, "an entry is named '..'"},
           {{{"100644 secret", r.blob}, {"100644 a/b", changed}}, "an entry is named 'a/b'"},
       }) {
    const std::string head = r.tree(c.entries);
    auto paths = changed_paths(*r.mirror, base, head);
    REQUIRE_FALSE(paths);
    CHECK(paths.code() == Code::kInvalid);
    CHECK(paths.message() == "tree " + head + " is malformed: " + c.why);
  }
}

TEST_CASE("raw trees: a tree bomb fails the diff instead of expanding") {
  RawRepo r;
  // 1000 entries naming the same object, four levels deep: four small trees, 10^12 paths.
  std::string bomb = r.fan(1000, "100644", r.blob);
  for (int level = 1; level < 4; ++level) bomb = r.fan(1000, "40000", bomb);
  auto paths = changed_paths(*r.mirror, "", bomb);
  REQUIRE_FALSE(paths);
  CHECK(paths.code() == Code::kInvalid);
  CHECK(paths.message() ==
        "tree " + bomb + " has too many paths to compare (more than 1000000 tree entries)");
}

// 15 directories of 255-byte names, nested: 3,840 bytes of path ("ddd.../ddd.../") before
// what `leaf` holds; a few small objects.
std::string deep_tree(const std::filesystem::path& repo, const std::string& leaf) {
  std::string tree = leaf;
  for (int level = 0; level < 15; ++level)
    tree = raw_tree(repo, {{"40000 " + std::string(255, 'd'), tree}});
  return tree;
}

TEST_CASE("raw trees: a path longer than 4096 bytes fails the diff") {
  RawRepo r;
  // 3,840 + 256 bytes: the longest path read.
  const std::string longest =
      deep_tree(r.dir.path(), r.tree({{"100644 " + std::string(256, 'f'), r.blob}}));
  auto paths = changed_paths(*r.mirror, "", longest);
  REQUIRE(paths);
  REQUIRE(paths->size() == 1);
  CHECK(paths->front().size() == 4096);
  // One byte more, as a file or as a directory.
  for (const std::string mode : {"100644", "40000"}) {
    const std::string entry = mode + " " + std::string(257, 'f');
    const std::string tree = deep_tree(r.dir.path(), r.tree({{entry, r.blob}}));
    auto refused = changed_paths(*r.mirror, "", tree);
    REQUIRE_FALSE(refused);
    CHECK(refused.code() == Code::kInvalid);
    CHECK(refused.message() ==
          "tree " + tree + " has a path longer than 4096 bytes (" + std::string(64, 'd') + "...)");
  }
}

TEST_CASE("raw trees: paths that add up to more than 64 MiB fail the diff") {
  RawRepo r;
  // 1000 * 20 paths of about 3,850 bytes: 77 MB of paths, 21,000 tree entries.
  const std::string tree =
      deep_tree(r.dir.path(), r.fan(1000, "40000", r.fan(20, "100644", r.blob)));
  auto paths = changed_paths(*r.mirror, "", tree);
  REQUIRE_FALSE(paths);
  CHECK(paths.code() == Code::kInvalid);
  CHECK(paths.message() ==
        "tree " + tree + " has too many paths to compare (more than 67108864 bytes of paths)");
}

}  // namespace
}  // namespace dmz::trust

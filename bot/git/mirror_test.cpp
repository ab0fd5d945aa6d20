// Tests of the libgit2 mirror against real repositories: a work repo pushes to a bare
// "origin" (made by git itself); a Mirror fetches from it, merges, pushes back.
#include "bot/git/mirror.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <tuple>

#include "bot/git/signer.hpp"
#include "tests/git_daemon.hpp"
#include "tests/git_http.hpp"
#include "tests/support.hpp"

namespace fs = std::filesystem;
using namespace dmz;
using namespace dmz::test;

namespace {

std::string q(const fs::path& p) { return shell_quote(p.string()); }

// A work repo with an initial commit on master, pushed to a bare origin, and a Mirror of it.
struct Fixture {
  TempDir tmp;
  fs::path work = tmp / "work";
  fs::path origin = tmp / "origin.git";
  fs::path mirror_dir = tmp / "mirror.git";
  std::string initial;
  std::unique_ptr<git::Mirror> mirror;

  Fixture() {
    git::init();
    initial = init_repo(work, {{"README", "hello\n"}, {"shared.txt", "one\ntwo\nthree\n"}});
    must(git_env() + "git init -q --bare -b master " + q(origin));
    must(git_env() + "git remote add origin " + q(origin), work);
    push("master");
    auto m = git::Mirror::open(mirror_dir, origin.string());
    REQUIRE_MESSAGE(m.ok(), (m.ok() ? "" : m.message()));
    mirror = std::move(*m);
  }

  void git(const std::string& args) { must(git_env() + "git " + args, work); }
  std::string origin_git(const std::string& args) {
    return must(git_env() + "git -C " + q(origin) + " " + args);
  }
  std::string mirror_git(const std::string& args) {
    return must(git_env() + "git -C " + q(mirror_dir) + " " + args);
  }
  void push(const std::string& branch) { git("push -q -f origin " + branch); }
  void fetch() {
    Status s = mirror->fetch();
    REQUIRE_MESSAGE(s.ok(), s.message());
  }
  // master gets a commit touching master.txt, branch feature one touching feature.txt.
  std::pair<std::string, std::string> diverge() {
    git("checkout -q -b feature");
    std::string feature = commit_files(work, {{"feature.txt", "feature\n"}}, "feature work");
    git("checkout -q master");
    std::string master = commit_files(work, {{"master.txt", "master\n"}}, "master work");
    push("master");
    push("feature");
    fetch();
    return {master, feature};
  }
};

class FakeSigner : public Signer {
 public:
  std::string payload;
  int calls = 0;
  static constexpr const char* kSignature =
      "-----BEGIN SSH SIGNATURE-----\nU1NIU0lHAAAAAQ==\nAAAAfake\n-----END SSH SIGNATURE-----\n";
  Result<std::string> sign(std::string_view p) override {
    ++calls;
    payload = std::string(p);
    return std::string(kSignature);
  }
};

class FailingSigner : public Signer {
 public:
  Result<std::string> sign(std::string_view) override { return error("no key loaded"); }
};

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// What `git merge-tree --write-tree` (git's own merge, ort) makes of merging `theirs` into
// `ours` in `repo`: the tree, or nullopt on a conflict.
std::optional<std::string> git_merge_tree(const fs::path& repo, const std::string& ours,
                                          const std::string& theirs) {
  auto r = run(git_env() + "git -C " + q(repo) + " merge-tree --write-tree " + ours + " " + theirs);
  REQUIRE_MESSAGE((r.exit_code == 0 || r.exit_code == 1), r.out);
  if (r.exit_code == 1) return std::nullopt;
  return r.out.substr(0, r.out.find('\n'));
}

// A tree object written as raw bytes into `repo` (git hash-object --literally: no checks), from
// entries of (mode, name, object id): what a hostile push can hold and git mktree refuses.
std::string raw_tree(
    const fs::path& repo, const fs::path& scratch,
    const std::vector<std::tuple<std::string, std::string, std::string>>& entries) {
  std::string bytes;
  for (const auto& [mode, name, id] : entries) {
    bytes += mode + " " + name + '\0';
    for (size_t i = 0; i < id.size(); i += 2)
      bytes += static_cast<char>(std::stoi(id.substr(i, 2), nullptr, 16));
  }
  write_file(scratch, bytes);
  return must(git_env() + "git -C " + q(repo) + " hash-object -t tree --literally -w " +
              q(scratch));
}

size_t pack_files(const fs::path& repo) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(repo / "objects" / "pack"))
    if (e.path().extension() == ".pack") ++n;
  return n;
}

size_t loose_objects(const fs::path& repo) {
  size_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(repo / "objects"))
    if (e.is_regular_file() && e.path().parent_path().filename().string().size() == 2) ++n;
  return n;
}

}  // namespace

TEST_CASE("fetch mirrors branches and tags and prunes deleted branches") {
  Fixture f;
  f.git("checkout -q -b feature/x");
  std::string x = commit_files(f.work, {{"x.txt", "x\n"}}, "x");
  f.git("tag -a v1 -m 'release one'");
  f.push("feature/x");
  f.git("push -q origin v1");
  f.fetch();

  CHECK(f.mirror->remote_branch("master") == f.initial);
  CHECK(f.mirror->remote_branch("feature/x") == x);
  CHECK_FALSE(f.mirror->remote_branch("nope").has_value());
  auto branches = f.mirror->remote_branches();
  CHECK(branches == std::map<std::string, std::string>{{"master", f.initial}, {"feature/x", x}});
  CHECK(f.mirror_git("rev-parse v1^{commit}") == x);

  f.git("push -q origin --delete feature/x");
  f.fetch();
  CHECK_FALSE(f.mirror->remote_branch("feature/x").has_value());
  CHECK(f.mirror->remote_branches().size() == 1);
}

TEST_CASE("the mirror keeps a reflog of its tracking refs: every value a fetch saw") {
  Fixture f;
  f.fetch();
  std::string two = commit_files(f.work, {{"README", "two\n"}}, "two");
  f.push("master");
  f.fetch();
  std::string three = commit_files(f.work, {{"README", "three\n"}}, "three");
  f.push("master");
  f.fetch();
  CHECK(f.mirror_git("config core.logAllRefUpdates") == "true");
  auto held = f.mirror->reflog("refs/remotes/origin/master");
  REQUIRE(held.ok());
  CHECK(*held == std::vector<std::string>{f.initial, two, three});
  // A ref without a reflog has no history, and that is not an error.
  auto none = f.mirror->reflog("refs/remotes/origin/nope");
  REQUIRE(none.ok());
  CHECK(none->empty());
}

TEST_CASE("fetch mirrors notes refs as they are, reference reads a local ref") {
  Fixture f;
  CHECK_FALSE(f.mirror->reference("refs/notes/dmz-approvals").has_value());
  f.git("notes --ref=dmz-approvals add -m 'first' " + f.initial);
  f.git("push -q origin refs/notes/dmz-approvals");
  f.fetch();
  std::string first = must(git_env() + "git rev-parse refs/notes/dmz-approvals", f.work);
  CHECK(f.mirror->reference("refs/notes/dmz-approvals") == first);
  CHECK(f.mirror_git("notes --ref=dmz-approvals show " + f.initial) == "first");
  CHECK_FALSE(f.mirror->reference("refs/notes/other").has_value());
  CHECK(f.mirror->reference("refs/remotes/origin/master") == f.initial);

  // A rewritten notes ref (force-pushed) is followed, not merged.
  f.git("notes --ref=dmz-approvals add -f -m 'second' " + f.initial);
  // The identity goes inside the command substitution too: git cannot always guess one.
  f.git("update-ref refs/notes/dmz-approvals $(" + git_env() +
        "git commit-tree -m rewritten refs/notes/dmz-approvals^{tree})");
  std::string rewritten = must(git_env() + "git rev-parse refs/notes/dmz-approvals", f.work);
  f.git("push -q -f origin refs/notes/dmz-approvals");
  f.fetch();
  CHECK(f.mirror->reference("refs/notes/dmz-approvals") == rewritten);
  CHECK(rewritten != first);
}

TEST_CASE("newest_commits walks at most `limit` commits, children first, with first parents") {
  Fixture f;
  std::string a = commit_files(f.work, {{"a.txt", "a\n"}}, "a");
  std::string b = commit_files(f.work, {{"b.txt", "b\n"}}, "b");
  f.push("master");
  f.fetch();
  using Pairs = std::vector<std::pair<std::string, std::string>>;
  auto two = f.mirror->newest_commits(b, 2);
  REQUIRE(two.ok());
  CHECK(*two == Pairs{{b, a}, {a, f.initial}});
  auto all = f.mirror->newest_commits(b, 100);
  REQUIRE(all.ok());
  CHECK(*all == Pairs{{b, a}, {a, f.initial}, {f.initial, ""}});  // the root has no parent
  auto none = f.mirror->newest_commits(b, 0);
  REQUIRE(none.ok());
  CHECK(none->empty());
  // A merge: both parents' histories, each commit once, the merge's first parent reported.
  f.git("checkout -q -b side " + f.initial);
  std::string side = commit_files(f.work, {{"side.txt", "s\n"}}, "side");
  f.git("checkout -q master");
  f.git("merge -q --no-edit side");
  std::string merge = must(git_env() + "git rev-parse HEAD", f.work);
  f.push("master");
  f.fetch();
  auto merged = f.mirror->newest_commits(merge, 100);
  REQUIRE(merged.ok());
  CHECK(*merged == Pairs{{merge, b}, {b, a}, {side, f.initial}, {a, f.initial}, {f.initial, ""}});

  auto bad = f.mirror->newest_commits("0123456789012345678901234567890123456789", 5);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.message().rfind("walk 0123456789012345678901234567890123456789: ", 0) == 0);
}

TEST_CASE("open reuses an existing mirror and updates its origin url") {
  Fixture f;
  f.fetch();
  f.mirror.reset();
  fs::path moved = f.tmp / "moved.git";
  fs::rename(f.origin, moved);
  auto m = git::Mirror::open(f.mirror_dir, "file://" + moved.string());
  REQUIRE_MESSAGE(m.ok(), (m.ok() ? "" : m.message()));
  CHECK(f.mirror_git("config remote.origin.url") == "file://" + moved.string());
  CHECK((*m)->remote_branch("master") == f.initial);  // still there from the first fetch
  Status s = (*m)->fetch();
  CHECK_MESSAGE(s.ok(), s.message());
  CHECK((*m)->path() == f.mirror_dir);
}

TEST_CASE("open removes lock files a crashed run left, so pushes work again") {
  Fixture f;
  auto [master, feature] = f.diverge();
  f.mirror.reset();
  // What kill -9 in the middle of a push leaves behind.
  write_file(f.mirror_dir / "refs/dmzbot/push/master.lock", "");
  write_file(f.mirror_dir / "refs/remotes/origin/master.lock", "");
  auto m = git::Mirror::open(f.mirror_dir, f.origin.string());
  REQUIRE_MESSAGE(m.ok(), (m.ok() ? "" : m.message()));
  CHECK_FALSE(fs::exists(f.mirror_dir / "refs/dmzbot/push/master.lock"));
  CHECK_FALSE(fs::exists(f.mirror_dir / "refs/remotes/origin/master.lock"));
  auto merged = (*m)->merge(master, feature, "merge", git::Identity{});
  REQUIRE(merged.ok());
  auto pushed = (*m)->push_fast_forward("master", master, merged->commit);
  REQUIRE_MESSAGE(pushed.ok(), (pushed.ok() ? "" : pushed.message()));
  CHECK(pushed->ok);
  CHECK(f.origin_git("rev-parse master") == merged->commit);
}

TEST_CASE("fetch from a remote that does not exist fails with git's message") {
  TempDir tmp;
  git::init();
  auto m = git::Mirror::open(tmp / "mirror.git", (tmp / "no-such-remote").string());
  REQUIRE(m.ok());
  Status s = (*m)->fetch();
  REQUIRE_FALSE(s.ok());
  CHECK(s.message().rfind("fetch origin: ", 0) == 0);
  CHECK(s.message().size() > std::string("fetch origin: ").size() + 5);
  CHECK(s.code() == Code::kNotFound);

  auto r = (*m)->resolve("no-such-branch");
  REQUIRE_FALSE(r.ok());
  CHECK(r.message().find("no-such-branch") != std::string::npos);
}

TEST_CASE("a clean merge writes a two-parent commit that git accepts and push_force publishes") {
  Fixture f;
  auto [master, feature] = f.diverge();
  git::Identity who{"dmzbot", "bot@example.com", 1700000000, 60};
  auto r = f.mirror->merge(master, feature, "Merge PR #1\n\nPR: #1\n", who);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
  REQUIRE(r->clean);
  CHECK(r->conflicts.empty());
  const std::string c = r->commit;

  CHECK(f.mirror_git("log -1 --format=%P " + c) == master + " " + feature);
  CHECK(
      f.mirror_git("log -1 --format='%an <%ae> %at %ai|%cn|%s|%b' " + c) ==
      "dmzbot <bot@example.com> 1700000000 2023-11-14 23:13:20 +0100|dmzbot|Merge PR #1|PR: #1\n");
  f.mirror_git("fsck --strict --no-dangling");

  Status s = f.mirror->push_force(c, "dmz");
  REQUIRE_MESSAGE(s.ok(), s.message());
  CHECK(f.origin_git("rev-parse dmz") == c);
  CHECK(f.origin_git("show dmz:feature.txt") == "feature");
  CHECK(f.origin_git("show dmz:master.txt") == "master");
  CHECK(f.origin_git("show dmz:README") == "hello");
  CHECK(f.origin_git("log --format=%H dmz").find(feature) != std::string::npos);
  f.origin_git("fsck --strict");
  CHECK(f.mirror->remote_branch("dmz") == c);
  // The push made no local ref of its own: only the tracking ref of the branch it moved.
  CHECK(f.mirror_git("for-each-ref --format='%(refname)'") ==
        "refs/remotes/origin/dmz\nrefs/remotes/origin/feature\nrefs/remotes/origin/master");

  // dmz is rewritten freely: a force push back to master's commit is accepted.
  s = f.mirror->push_force(master, "dmz");
  REQUIRE_MESSAGE(s.ok(), s.message());
  CHECK(f.origin_git("rev-parse dmz") == master);
}

TEST_CASE("a signed merge puts gpgsig last and signs exactly the rest of the commit") {
  Fixture f;
  auto [master, feature] = f.diverge();
  f.git("tag -a v2 -m 'signed-off release' -m 'second paragraph' feature");
  std::string tag = must(git_env() + "git cat-file tag v2", f.work) + "\n";
  FakeSigner signer;
  git::Identity who{"dmzbot", "bot@example.com", 1700000000, -330};
  auto r = f.mirror->merge(master, feature, "Merge tag v2", who, &signer, {{"mergetag", tag}});
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
  REQUIRE(r->clean);
  CHECK(signer.calls == 1);

  auto obj = f.mirror->read_object(r->commit);
  REQUIRE(obj.ok());
  CHECK(obj->second == "commit");
  const std::string& raw = obj->first;
  // Byte-for-byte what git stores (cat-file pretty-prints nothing for commits).
  CHECK(raw == f.mirror_git("cat-file commit " + r->commit) + "\n");

  auto ls = lines(raw);
  REQUIRE(ls.size() > 8);
  CHECK(ls[0].rfind("tree ", 0) == 0);
  CHECK(ls[1] == "parent " + master);
  CHECK(ls[2] == "parent " + feature);
  CHECK(ls[3] == "author dmzbot <bot@example.com> 1700000000 -0530");
  CHECK(ls[4] == "committer dmzbot <bot@example.com> 1700000000 -0530");
  CHECK(ls[5] == "mergetag object " + feature);
  // gpgsig comes after the whole mergetag, as the last header, continued with one space.
  size_t gpg = raw.find(
      "\ngpgsig -----BEGIN SSH SIGNATURE-----\n U1NIU0lHAAAAAQ==\n AAAAfake\n"
      " -----END SSH SIGNATURE-----\n\nMerge tag v2\n");
  REQUIRE(gpg != std::string::npos);
  CHECK(raw.find(" second paragraph\n") < gpg);
  CHECK(raw.find("\n\n") ==
        gpg + std::string("\ngpgsig -----BEGIN SSH SIGNATURE-----\n U1NIU0lHAAAAAQ==\n AAAAfake\n "
                          "-----END SSH SIGNATURE-----")
                  .size());
  // The empty line of the tag (between its headers and its message) is a lone space.
  CHECK(raw.find("\n \n signed-off release\n") != std::string::npos);

  // Removing the gpgsig header gives back exactly what the signer signed.
  std::string stripped = raw;
  size_t start = gpg + 1;
  size_t end = raw.find("\n\n", start);
  stripped.erase(start, end + 1 - start);
  CHECK(stripped == signer.payload);

  // git parses both headers: the mergetag round-trips, and git's own view of the signed
  // payload (what verify-commit would check) is the signer's payload.
  CHECK(f.mirror_git("log -1 --format=%s " + r->commit) == "Merge tag v2");
  std::string shown = must(git_env() + "git -C " + q(f.mirror_dir) +
                           " show -s --format=%H --show-signature " + r->commit + " 2>&1 || true");
  INFO("git show: ", shown);
  CHECK(shown.find("merged tag 'v2'") != std::string::npos);  // git decoded the mergetag
  f.mirror_git("fsck --strict --no-dangling");
  Status s = f.mirror->push_force(r->commit, "dmz");
  REQUIRE_MESSAGE(s.ok(), s.message());
  f.origin_git("fsck --strict");
}

// The merged tree is written before the commit can be signed (its id is in the payload); an
// unreferenced tree is garbage for git gc, an unsigned commit would be a merge nobody signed.
TEST_CASE("a failing signer is an error and no commit is written") {
  Fixture f;
  auto [master, feature] = f.diverge();
  FailingSigner signer;
  auto objects = [&] {
    return f.mirror_git("cat-file --batch-all-objects --batch-check='%(objecttype)'");
  };
  const std::string before = objects();
  auto r = f.mirror->merge(master, feature, "m", {}, &signer);
  REQUIRE_FALSE(r.ok());
  CHECK(r.message().find("sign: no key loaded") != std::string::npos);
  CHECK(r.code() == Code::kUnavailable);  // dmzbot's side: no PR is to blame
  // A head that is no commit is the PR's.
  auto bad_head = f.mirror->merge(master, "1111111111111111111111111111111111111111", "m", {});
  REQUIRE_FALSE(bad_head.ok());
  CHECK(bad_head.code() != Code::kUnavailable);
  auto no_base = f.mirror->merge("1111111111111111111111111111111111111111", feature, "m", {});
  REQUIRE_FALSE(no_base.ok());
  CHECK(no_base.code() == Code::kUnavailable);
  const std::string after = objects();
  auto count = [](const std::string& listing, const std::string& type) {
    size_t n = 0;
    for (size_t at = listing.find(type); at != std::string::npos; at = listing.find(type, at + 1))
      ++n;
    return n;
  };
  CHECK(count(after, "commit") == count(before, "commit"));
  CHECK(count(after, "tree") == count(before, "tree") + 1);  // the merged tree, unreferenced
}

// A clean merge of a file both sides changed writes the merged blob inside the merge itself:
// an object database that cannot take it (a full disk, a directory dmzbot may not write) is
// dmzbot's failure, never the PR's.
TEST_CASE("a merge whose blob cannot be written is unavailable: no PR is to blame") {
  Fixture f;
  auto lines = [](std::string first, std::string last) {
    std::string text = first + "\n";
    for (int i = 2; i < 20; ++i) text += "line " + std::to_string(i) + "\n";
    return text + last + "\n";
  };
  commit_files(f.work, {{"both.txt", lines("first", "last")}}, "base");
  f.git("checkout -q -b feature");
  const std::string feature =
      commit_files(f.work, {{"both.txt", lines("FIRST", "last")}}, "feature edits line 1");
  f.git("checkout -q master");
  const std::string master =
      commit_files(f.work, {{"both.txt", lines("first", "LAST")}}, "master edits line 20");
  f.push("master");
  f.push("feature");
  f.fetch();
  // Every object packed, then a file where each loose object's directory would go.
  f.mirror_git("repack -adq");
  f.mirror_git("prune-packed");
  char name[3];
  for (int i = 0; i < 256; ++i) {
    std::snprintf(name, sizeof name, "%02x", i);
    const fs::path fanout = f.mirror_dir / "objects" / name;
    REQUIRE_FALSE(fs::exists(fanout));
    std::ofstream(fanout) << "in the way\n";
  }
  auto r = f.mirror->merge(master, feature, "m", {});
  REQUIRE_FALSE(r.ok());
  CHECK(r.code() == Code::kUnavailable);
}

TEST_CASE("a conflicting merge lists exactly the conflicting paths and writes nothing") {
  Fixture f;
  f.git("checkout -q -b feature");
  commit_files(f.work,
               {{"shared.txt", "one\nTWO feature\nthree\n"},
                {"b.txt", "feature b\n"},
                {"ok.txt", "no conflict\n"}},
               "feature");
  f.git("checkout -q master");
  commit_files(f.work, {{"shared.txt", "one\nTWO master\nthree\n"}, {"b.txt", "master b\n"}},
               "master");
  f.push("master");
  f.push("feature");
  f.fetch();
  size_t before = loose_objects(f.mirror_dir);
  auto r = f.mirror->merge("refs/remotes/origin/master", "refs/remotes/origin/feature", "m", {});
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
  CHECK_FALSE(r->clean);
  CHECK(r->commit.empty());
  CHECK(r->conflicts == std::vector<std::string>{"b.txt", "shared.txt"});
  CHECK(loose_objects(f.mirror_dir) == before);
}

TEST_CASE("push_fast_forward moves master only forward and only from the expected value") {
  Fixture f;
  auto [master, feature] = f.diverge();
  auto merged = f.mirror->merge(master, feature, "Merge feature", {});
  REQUIRE(merged.ok());
  REQUIRE(merged->clean);
  const std::string c = merged->commit;

  SUBCASE("fast-forward succeeds and is idempotent") {
    auto r = f.mirror->push_fast_forward("master", master, c);
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
    CHECK(r->ok);
    CHECK_FALSE(r->remote_moved);
    CHECK(r->remote_sha == master);
    CHECK(f.origin_git("rev-parse master") == c);
    CHECK(f.mirror->remote_branch("master") == c);

    auto again = f.mirror->push_fast_forward("master", master, c);
    REQUIRE(again.ok());
    CHECK(again->ok);
    CHECK(again->remote_sha == c);
    CHECK(f.origin_git("rev-parse master") == c);
  }

  SUBCASE("refuses when someone else moved master, and leaves it alone") {
    f.git("reset -q --hard " + master);
    std::string other = commit_files(f.work, {{"other.txt", "x\n"}}, "someone pushed");
    f.push("master");
    auto r = f.mirror->push_fast_forward("master", master, c);
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
    CHECK_FALSE(r->ok);
    CHECK(r->remote_moved);
    CHECK(r->remote_sha == other);
    CHECK_FALSE(r->message.empty());
    CHECK(f.origin_git("rev-parse master") == other);
  }

  SUBCASE("refuses a non-fast-forward even when the expected value matches") {
    // feature does not descend from master (they diverged).
    auto r = f.mirror->push_fast_forward("master", master, feature);
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
    CHECK_FALSE(r->ok);
    CHECK_FALSE(r->remote_moved);
    CHECK(r->remote_sha == master);
    CHECK(f.origin_git("rev-parse master") == master);
    CHECK(f.mirror->remote_branch("master") == master);
  }

  SUBCASE("creates nothing when the branch is missing and something was expected") {
    auto r = f.mirror->push_fast_forward("release", master, c);
    REQUIRE(r.ok());
    CHECK_FALSE(r->ok);
    CHECK(r->remote_moved);
    CHECK(r->remote_sha.empty());
    CHECK(run(git_env() + "git -C " + q(f.origin) + " rev-parse --verify -q refs/heads/release")
              .exit_code != 0);
  }
}

TEST_CASE("push_fast_forward whose answer is lost after the remote moved reports it moved") {
  Fixture f;
  auto [master, feature] = f.diverge();
  auto merged = f.mirror->merge(master, feature, "Merge feature", {});
  REQUIRE(merged.ok());
  // The server updates master, then a hook holds the connection past the push's deadline.
  write_file(f.origin / "hooks" / "post-receive", "#!/bin/sh\nsleep 4\n");
  fs::permissions(f.origin / "hooks" / "post-receive", fs::perms::owner_all);
  git::TransportOptions options;
  options.url = f.origin.string();
  options.network_timeout = std::chrono::seconds(1);
  options.operation_timeout = std::chrono::seconds(1);
  auto slow = git::Mirror::open(f.mirror_dir, options);
  REQUIRE(slow.ok());
  auto r = (*slow)->push_fast_forward("master", master, merged->commit);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
  CHECK(r->ok);
  CHECK(r->remote_sha == merged->commit);
  CHECK(f.origin_git("rev-parse master") == merged->commit);
}

TEST_CASE("export_tree writes files, modes and symlinks, without .git") {
  Fixture f;
  write_file(f.work / "build.sh", "#!/bin/sh\necho built\n");
  must("chmod +x build.sh", f.work);
  must("ln -s README link", f.work);
  std::string c = commit_files(f.work, {{"dir/sub/deep.txt", "deep\n"}}, "more");
  f.push("master");
  f.fetch();
  fs::path out = f.tmp / "export" / "x";
  Status s = f.mirror->export_tree(c, out);
  REQUIRE_MESSAGE(s.ok(), s.message());
  CHECK(read_file(out / "README") == "hello\n");
  CHECK(read_file(out / "dir/sub/deep.txt") == "deep\n");
  auto exec = fs::status(out / "build.sh").permissions();
  CHECK((exec & fs::perms::owner_exec) != fs::perms::none);
  auto plain = fs::status(out / "README").permissions();
  CHECK((plain & fs::perms::owner_exec) == fs::perms::none);
  CHECK(fs::is_symlink(out / "link"));
  CHECK(fs::read_symlink(out / "link") == "README");
  CHECK_FALSE(fs::exists(out / ".git"));
  CHECK(must("./build.sh", out) == "built");

  Status bad = f.mirror->export_tree("0000000000000000000000000000000000000001", f.tmp / "e2");
  CHECK_FALSE(bad.ok());
  CHECK(bad.message().rfind("export ", 0) == 0);
}

TEST_CASE("export_tree refuses a tree entry that would escape the directory") {
  Fixture f;
  // git mktree accepts "..": a hostile PR could push such a tree.
  std::string blob = must(git_env() + "git rev-parse HEAD:README", f.work);
  std::string inner = must(
      "printf '100644 blob " + blob + "\\tescaped.txt\\n' | " + git_env() + "git mktree", f.work);
  std::string outer =
      must("printf '040000 tree " + inner + "\\t..\\n' | " + git_env() + "git mktree", f.work);
  std::string evil = must(git_env() + "git commit-tree -m evil " + outer, f.work);
  f.git("push -q origin " + evil + ":refs/heads/evil");
  f.fetch();
  REQUIRE(f.mirror->remote_branch("evil") == evil);
  Status s = f.mirror->export_tree(evil, f.tmp / "export" / "inner");
  REQUIRE_FALSE(s.ok());
  CHECK(s.message().find("unsafe path in tree: ..") != std::string::npos);
  CHECK(s.code() == Code::kInvalid);  // the tree's fault: the runner fails it at once
  CHECK_FALSE(fs::exists(f.tmp / "export" / "escaped.txt"));

  std::string dotgit =
      must("printf '040000 tree " + inner + "\\t.GIT\\n' | " + git_env() + "git mktree", f.work);
  std::string sneaky = must(git_env() + "git commit-tree -m sneaky " + dotgit, f.work);
  f.git("push -q origin " + sneaky + ":refs/heads/sneaky");
  f.fetch();
  s = f.mirror->export_tree(sneaky, f.tmp / "export2");
  REQUIRE_FALSE(s.ok());
  CHECK(s.message().find("unsafe path in tree: .GIT") != std::string::npos);
}

TEST_CASE("rev_list, is_ancestor, read_object, resolve") {
  Fixture f;
  std::string c1 =
      commit_files(f.work, {{"a.txt", "a\n"}, {"c.txt", "to be renamed, long enough\n"}}, "c1");
  std::string c2 = commit_files(f.work, {{"b.txt", "b\n"}}, "c2");
  f.git("mv c.txt d.txt");
  std::string c3 = commit_files(f.work, {{"a.txt", "a changed\n"}}, "c3");
  f.push("master");
  f.fetch();

  auto all = f.mirror->rev_list("", c3);
  REQUIRE(all.ok());
  CHECK(*all == std::vector<std::string>{f.initial, c1, c2, c3});
  auto some = f.mirror->rev_list(c1, "refs/remotes/origin/master");
  REQUIRE(some.ok());
  CHECK(*some == std::vector<std::string>{c2, c3});
  auto none = f.mirror->rev_list(c3, c3);
  REQUIRE(none.ok());
  CHECK(none->empty());

  CHECK(*f.mirror->is_ancestor(c1, c3));
  CHECK(*f.mirror->is_ancestor(c3, c3));
  CHECK_FALSE(*f.mirror->is_ancestor(c3, c1));
  CHECK_FALSE(f.mirror->is_ancestor("deadbeef", c1).ok());

  auto obj = f.mirror->read_object(c2);
  REQUIRE(obj.ok());
  CHECK(obj->second == "commit");
  CHECK(obj->first == must(git_env() + "git cat-file commit " + c2, f.work) + "\n");
  std::string blob_id = must(git_env() + "git rev-parse " + c3 + ":a.txt", f.work);
  auto blob = f.mirror->read_object(blob_id);
  REQUIRE(blob.ok());
  CHECK(blob->second == "blob");
  CHECK(blob->first == "a changed\n");
  CHECK_FALSE(f.mirror->read_object("1111111111111111111111111111111111111111").ok());
  // A limit is checked against the object's header: 10 bytes pass a limit of 10, not one of 9.
  CHECK(f.mirror->read_object(blob_id, 10).ok());
  auto over = f.mirror->read_object(blob_id, 9);
  REQUIRE_FALSE(over.ok());
  CHECK(over.code() == Code::kInvalid);
  CHECK(over.message() == blob_id.substr(0, 7) + " is larger than 9 bytes");

  CHECK(*f.mirror->resolve("refs/remotes/origin/master~1") == c2);
  CHECK(*f.mirror->resolve(c1) == c1);
  CHECK(*f.mirror->resolve("origin/master") == c3);
}

TEST_CASE("over the smart protocol, a server-side rejection or a lost race is reported") {
  Fixture f;
  GitDaemon daemon(f.tmp.path(), "origin.git");
  REQUIRE_MESSAGE(!daemon.url().empty(), daemon.log());
  auto m = git::Mirror::open(f.tmp / "smart-mirror.git", daemon.url());
  REQUIRE(m.ok());
  auto& mirror = **m;
  f.git("checkout -q -b other");
  std::string other = commit_files(f.work, {{"other.txt", "o\n"}}, "other");
  f.push("other");
  f.git("checkout -q master");
  std::string next = commit_files(f.work, {{"next.txt", "n\n"}}, "next");
  f.git("push -q origin " + next + ":refs/heads/feature");
  Status s = mirror.fetch();
  REQUIRE_MESSAGE(s.ok(), s.message());
  REQUIRE(mirror.remote_branch("feature") == next);
  fs::path hook = f.origin / "hooks" / "pre-receive";

  SUBCASE("a plain fast-forward goes through") {
    auto r = mirror.push_fast_forward("master", f.initial, next);
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
    CHECK(r->ok);
    CHECK(f.origin_git("rev-parse master") == next);
  }

  SUBCASE("someone moves master between our check and the update: the server refuses") {
    // The hook runs after we read master and before the server takes the ref lock.
    write_file(hook, "#!/bin/sh\nenv -u GIT_QUARANTINE_PATH git update-ref refs/heads/master " +
                         other + "\n");
    fs::permissions(hook, fs::perms::owner_all);
    auto r = mirror.push_fast_forward("master", f.initial, next);
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
    CHECK_FALSE(r->ok);
    CHECK(r->remote_moved);
    CHECK(r->remote_sha == other);
    CHECK(r->message.find("rejected") != std::string::npos);
    CHECK(f.origin_git("rev-parse master") == other);
  }

  SUBCASE("a hook rejection is an error for push_force and a refusal for push_fast_forward") {
    write_file(hook, "#!/bin/sh\necho 'protected by policy' >&2\nexit 1\n");
    fs::permissions(hook, fs::perms::owner_all);
    Status forced = mirror.push_force(next, "dmz");
    REQUIRE_FALSE(forced.ok());
    CHECK(forced.message().find("rejected") != std::string::npos);
    CHECK(run(git_env() + "git -C " + q(f.origin) + " rev-parse --verify -q refs/heads/dmz")
              .exit_code != 0);

    auto r = mirror.push_fast_forward("master", f.initial, next);
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
    CHECK_FALSE(r->ok);
    CHECK_FALSE(r->remote_moved);
    CHECK(r->remote_sha == f.initial);
    CHECK(r->message.find("rejected") != std::string::npos);
    CHECK(f.origin_git("rev-parse master") == f.initial);
  }
}

namespace {

// Signs with `ssh-keygen -Y sign`, as git itself does for gpg.format=ssh.
class SshKeygenSigner : public Signer {
 public:
  explicit SshKeygenSigner(fs::path dir) : dir_(std::move(dir)) {
    must("ssh-keygen -q -t ed25519 -N '' -C dmzbot -f " + q(dir_ / "key"));
  }
  std::string public_key() { return read_file(dir_ / "key.pub"); }
  Result<std::string> sign(std::string_view payload) override {
    write_file(dir_ / "payload", std::string(payload));
    fs::remove(dir_ / "payload.sig");
    RunResult r =
        run("ssh-keygen -q -Y sign -n git -f " + q(dir_ / "key") + " " + q(dir_ / "payload"));
    if (r.exit_code != 0) return error("ssh-keygen: " + r.out);
    return read_file(dir_ / "payload.sig");
  }

 private:
  fs::path dir_;
};

}  // namespace

TEST_CASE("git verify-commit accepts a merge commit signed through the Signer") {
  Fixture f;
  auto [master, feature] = f.diverge();
  f.git("tag -a v3 -m 'tagged' feature");
  std::string tag = must(git_env() + "git cat-file tag v3", f.work) + "\n";
  fs::create_directories(f.tmp / "ssh");
  SshKeygenSigner signer(f.tmp / "ssh");
  write_file(f.tmp / "allowed_signers", "bot@example.com " + signer.public_key());
  git::Identity who{"dmzbot", "bot@example.com", 0, 0};
  auto r = f.mirror->merge(master, feature, "Merge tag v3\n\nPR: #3\n", who, &signer,
                           {{"mergetag", tag}});
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
  REQUIRE(r->clean);
  const std::string verify =
      git_env() + "git -C " + q(f.mirror_dir) +
      " -c gpg.format=ssh -c gpg.ssh.allowedSignersFile=" + q(f.tmp / "allowed_signers") + " ";
  std::string out = must(verify + "verify-commit -v " + r->commit);
  CHECK(out.find("Good \"git\" signature for bot@example.com") != std::string::npos);
  CHECK(must(verify + "log -1 --format=%G?%n%GS " + r->commit) == "G\nbot@example.com");

  // A different key is not accepted: the check above is not vacuous.
  fs::create_directories(f.tmp / "ssh2");
  SshKeygenSigner stranger(f.tmp / "ssh2");
  write_file(f.tmp / "allowed_signers", "bot@example.com " + stranger.public_key());
  CHECK(run(verify + "verify-commit " + r->commit).exit_code != 0);
}

TEST_CASE("open_existing opens a work tree or a bare repository, with or without origin") {
  Fixture f;
  auto work = git::Mirror::open_existing(f.work);
  REQUIRE_MESSAGE(work.ok(), (work.ok() ? "" : work.message()));
  auto head = (*work)->resolve("HEAD");
  REQUIRE(head.ok());
  CHECK(*head == f.initial);
  CHECK(fs::equivalent((*work)->path(), f.work / ".git"));
  auto bare = git::Mirror::open_existing(f.origin);
  REQUIRE(bare.ok());
  CHECK((*bare)->resolve("master").ok());
  // The bare origin has no remote of its own: it can be read but not fetched from.
  Status s = (*bare)->fetch();
  CHECK_FALSE(s.ok());
  CHECK(s.message() == "fetch origin: the repository has no origin remote");
  // The mirror's configuration is untouched (open() would add the tag refspec).
  CHECK(run(git_env() + "git -C " + q(f.origin) + " config remote.origin.url").exit_code != 0);

  TempDir empty;
  auto none = git::Mirror::open_existing(empty / "nothing");
  CHECK_FALSE(none.ok());
}

TEST_CASE("merge_tree is the tree merge() writes, nullopt on conflict; read_file, tree_of, tags") {
  Fixture f;
  auto [master, feature] = f.diverge();
  auto tree = f.mirror->merge_tree(master, feature);
  REQUIRE(tree.ok());
  REQUIRE(tree->has_value());
  auto merged = f.mirror->merge(master, feature, "m", git::Identity{});
  REQUIRE(merged.ok());
  auto merged_tree = f.mirror->tree_of(merged->commit);
  REQUIRE(merged_tree.ok());
  CHECK(**tree == *merged_tree);
  CHECK(*merged_tree == f.mirror_git("rev-parse " + merged->commit + "^{tree}"));

  f.git("checkout -q feature");
  std::string c1 = commit_files(f.work, {{"shared.txt", "feature side\n"}}, "f");
  f.git("checkout -q master");
  std::string c2 = commit_files(f.work, {{"shared.txt", "master side\n"}}, "m");
  f.push("master");
  f.push("feature");
  f.fetch();
  auto conflict = f.mirror->merge_tree(c2, c1);
  REQUIRE(conflict.ok());
  CHECK_FALSE(conflict->has_value());
  CHECK_FALSE(f.mirror->merge_tree(c2, "nope").ok());

  auto readme = f.mirror->read_file(master, "README");
  REQUIRE(readme.ok());
  CHECK(*readme == std::optional<std::string>("hello\n"));
  auto missing = f.mirror->read_file(master, "no/such/file");
  REQUIRE(missing.ok());
  CHECK_FALSE(missing->has_value());
  f.git("checkout -q master");
  commit_files(f.work, {{"dir/x.txt", "x\n"}}, "dir");
  std::string with_dir = must(git_env() + "git rev-parse HEAD", f.work);
  f.push("master");
  f.fetch();
  auto dir = f.mirror->read_file(with_dir, "dir");
  REQUIRE(dir.ok());
  CHECK_FALSE(dir->has_value());  // a tree, not a blob
  auto nested = f.mirror->read_file(with_dir, "dir/x.txt");
  REQUIRE(nested.ok());
  CHECK(*nested == std::optional<std::string>("x\n"));

  f.git("tag light " + master);
  f.git("tag -a -m annotated v1 " + master);
  f.git("push -q origin light v1");
  f.fetch();
  auto tags = f.mirror->tags();
  CHECK(tags.size() == 1);
  CHECK(tags["v1"] == must(git_env() + "git rev-parse refs/tags/v1", f.work));
}

TEST_CASE("push_refs moves several branches atomically, deletes, and the tracking refs follow") {
  Fixture f;
  auto [master, feature] = f.diverge();
  auto merged = f.mirror->merge(master, feature, "Merge feature", {});
  REQUIRE(merged.ok());
  const std::string c = merged->commit;
  using git::RefUpdate;

  // One stale lease: nothing moves, on the remote or in the tracking refs.
  auto r = f.mirror->push_refs({{"refs/heads/master", c, feature},
                                {"refs/heads/dmz-queue/7", c, std::string()},
                                {"refs/heads/dmz", c, std::nullopt}});
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
  CHECK_FALSE(r->ok());
  CHECK(r->refs[0].status == git::RefStatus::kStale);
  CHECK(f.origin_git("rev-parse master") == master);
  CHECK(run(git_env() + "git -C " + q(f.origin) + " rev-parse -q --verify dmz").exit_code != 0);
  CHECK(f.mirror->remote_branch("master") == master);
  CHECK_FALSE(f.mirror->remote_branch("dmz-queue/7").has_value());

  r = f.mirror->push_refs({{"refs/heads/master", c, master},
                           {"refs/heads/dmz-queue/7", c, std::string()},
                           {"refs/heads/dmz", c, std::nullopt}});
  REQUIRE(r.ok());
  CHECK(r->ok());
  CHECK(f.origin_git("rev-parse master dmz dmz-queue/7") == c + "\n" + c + "\n" + c);
  CHECK(f.mirror->remote_branch("master") == c);
  CHECK(f.mirror->remote_branch("dmz-queue/7") == c);
  CHECK(f.mirror->remote_branch("dmz") == c);

  // Deleting an obsolete candidate branch.
  r = f.mirror->push_refs({{"refs/heads/dmz-queue/7", "", c}});
  REQUIRE(r.ok());
  CHECK(r->ok());
  CHECK(run(git_env() + "git -C " + q(f.origin) + " rev-parse -q --verify dmz-queue/7").exit_code !=
        0);
  CHECK_FALSE(f.mirror->remote_branch("dmz-queue/7").has_value());

  auto values = f.mirror->ls_remote({"refs/heads/master", "refs/heads/dmz-queue/7"});
  REQUIRE(values.ok());
  CHECK(*values == std::map<std::string, std::string>{{"refs/heads/master", c}});

  // A sha the mirror does not have is bad input, and nothing is run.
  auto missing = f.mirror->push_refs({{"refs/heads/dmz", std::string(40, 'a'), std::nullopt}});
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.code() == Code::kInvalid);
  CHECK(missing.message().find("is not in the mirror") != std::string::npos);
  CHECK(f.origin_git("rev-parse dmz") == c);
}

TEST_CASE("open with transport options: smart HTTP with a token; bad options change nothing") {
  Fixture f;
  const std::string token = "test-token-0123456789abcdef";
  GitHttpServer http(f.tmp.path(), "x-access-token", token);
  REQUIRE_MESSAGE(http.error().empty(), http.error());
  git::TransportOptions options;
  options.url = http.url("origin.git");
  options.token = token;
  options.network_timeout = std::chrono::seconds(20);
  auto m = git::Mirror::open(f.tmp / "http-mirror.git", options);
  REQUIRE_MESSAGE(m.ok(), (m.ok() ? "" : m.message()));
  auto& mirror = **m;
  Status s = mirror.fetch();
  REQUIRE_MESSAGE(s.ok(), s.message());
  CHECK(mirror.remote_branch("master") == f.initial);
  std::string next = commit_files(f.work, {{"next.txt", "n\n"}}, "next");
  f.git("push -q " + q(f.tmp / "http-mirror.git") + " master:refs/heads/scratch");
  auto ff = mirror.push_fast_forward("master", f.initial, next);
  REQUIRE_MESSAGE(ff.ok(), (ff.ok() ? "" : ff.message()));
  CHECK(ff->ok);
  CHECK(f.origin_git("rev-parse master") == next);
  s = mirror.push_force(f.initial, "dmz");
  REQUIRE_MESSAGE(s.ok(), s.message());
  CHECK(f.origin_git("rev-parse dmz") == f.initial);

  options.token = "wrong";
  auto wrong = git::Mirror::open(f.tmp / "http-mirror.git", options);
  REQUIRE(wrong.ok());
  Status denied = (*wrong)->fetch();
  CHECK(denied.code() == Code::kUnauthenticated);
  CHECK(denied.message().find("fetch origin: authentication failed for " + options.url) == 0);
  auto ff2 = (*wrong)->push_fast_forward("master", next, next);
  CHECK(ff2.code() == Code::kUnauthenticated);

  options.url = "https://user:password@example.com/x.git";
  auto refused = git::Mirror::open(f.tmp / "never.git", options);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.code() == Code::kInvalid);
  CHECK(refused.message().find("password@") == std::string::npos);
  CHECK_FALSE(fs::exists(f.tmp / "never.git"));
}

TEST_CASE("a fetch stopped at its deadline: git gets SIGTERM, and its lock goes before the next") {
  Fixture f;
  // A git that, the first time, takes the tracking ref's lock as a fetch does, then hangs
  // through SIGTERM (noting it) until the SIGKILL: the lock stays, as after a real kill.
  const fs::path slow = f.tmp / "slow.git";
  const fs::path hang = f.tmp / "hang", log = f.tmp / "signals";
  write_file(hang, "");
  write_file(f.tmp / "git-wrapper",
             "#!/bin/sh\n"
             "if [ -e " +
                 q(hang) +
                 " ]; then\n"
                 "  rm -f " +
                 q(hang) +
                 "\n"
                 "  mkdir -p " +
                 q(slow / "refs/remotes/origin") +
                 "\n"
                 "  : > " +
                 q(slow / "refs/remotes/origin/master.lock") +
                 "\n"
                 "  trap 'echo TERM >> " +
                 q(log) +
                 "' TERM\n"
                 "  while :; do sleep 0.1; done\n"
                 "fi\n"
                 "exec git \"$@\"\n");
  must("chmod +x " + q(f.tmp / "git-wrapper"));
  git::TransportOptions options;
  options.url = f.origin.string();
  options.git_program = (f.tmp / "git-wrapper").string();
  options.operation_timeout = std::chrono::seconds(1);
  auto m = git::Mirror::open(slow, options);
  REQUIRE_MESSAGE(m.ok(), (m.ok() ? "" : m.message()));

  Status stopped = (*m)->fetch();
  REQUIRE_FALSE(stopped.ok());
  CHECK(stopped.code() == Code::kUnavailable);
  CHECK(stopped.message().find("no answer within 1 s") != std::string::npos);
  CHECK(read_file(log) == "TERM\n");  // asked to stop (and clean up) before it was killed
  CHECK(fs::exists(slow / "refs/remotes/origin/master.lock"));

  Status next = (*m)->fetch();
  CHECK_MESSAGE(next.ok(), next.message());
  CHECK((*m)->remote_branch("master") == f.initial);
  CHECK_FALSE(fs::exists(slow / "refs/remotes/origin/master.lock"));
}

TEST_CASE("merging a head that is the base or already in it writes nothing: up to date") {
  Fixture f;
  auto [master, feature] = f.diverge();
  const size_t objects = loose_objects(f.mirror_dir);
  for (const auto& head : {master, f.initial}) {  // the base itself, then one of its ancestors
    CAPTURE(head);
    auto r = f.mirror->merge(master, head, "Merge", git::Identity{});
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
    CHECK(r->up_to_date);
    CHECK_FALSE(r->clean);
    CHECK(r->commit.empty());
    CHECK(r->conflicts.empty());
  }
  CHECK(loose_objects(f.mirror_dir) == objects);
  // The other way round is a real merge (a fast-forward git would make, recorded as a merge).
  auto forward = f.mirror->merge(f.initial, master, "Merge", git::Identity{});
  REQUIRE(forward.ok());
  CHECK(forward->clean);
  CHECK_FALSE(forward->up_to_date);
}

TEST_CASE("export_tree never writes through a symlink of the tree; what the tree breaks is its") {
  Fixture f;
  const fs::path outside = f.tmp / "outside";
  fs::create_directories(outside);
  auto blob = [&](const std::string& content) {
    write_file(f.tmp / "blob", content);
    return f.mirror_git("hash-object -w " + q(f.tmp / "blob"));
  };
  auto commit_of = [&](const std::string& tree) {
    return f.mirror_git("commit-tree -m hostile " + tree);
  };
  const std::string x = blob("written outside\n");
  const std::string inner = raw_tree(f.mirror_dir, f.tmp / "t1", {{"100644", "x", x}});

  SUBCASE("a symlink a -> outside, then a tree a/") {
    const std::string tree =
        raw_tree(f.mirror_dir, f.tmp / "t2",
                 {{"120000", "a", blob(outside.string())}, {"40000", "a", inner}});
    Status s = f.mirror->export_tree(commit_of(tree), f.tmp / "export");
    REQUIRE_FALSE(s.ok());
    CHECK(s.code() == Code::kInvalid);
    CHECK(s.message().find("the tree cannot be written: mkdir a: File exists") !=
          std::string::npos);
    CHECK_FALSE(fs::exists(outside / "x"));
  }
  SUBCASE("a symlink a -> outside, then a file a") {
    const std::string tree =
        raw_tree(f.mirror_dir, f.tmp / "t3",
                 {{"120000", "a", blob((outside / "x").string())}, {"100644", "a", x}});
    Status s = f.mirror->export_tree(commit_of(tree), f.tmp / "export");
    CHECK(s.code() == Code::kInvalid);
    CHECK_FALSE(fs::exists(outside / "x"));
  }
  SUBCASE("a symlink with an empty target") {
    const std::string tree = raw_tree(f.mirror_dir, f.tmp / "t4", {{"120000", "e", blob("")}});
    Status s = f.mirror->export_tree(commit_of(tree), f.tmp / "export");
    CHECK(s.code() == Code::kInvalid);
    CHECK(s.message().find("symlink e has no usable target") != std::string::npos);
  }
  SUBCASE("a name longer than the file system takes") {
    const std::string tree =
        raw_tree(f.mirror_dir, f.tmp / "t5", {{"100644", std::string(300, 'n'), x}});
    Status s = f.mirror->export_tree(commit_of(tree), f.tmp / "export");
    CHECK(s.code() == Code::kInvalid);
    CHECK(s.message().find("File name too long") != std::string::npos);
  }
}

TEST_CASE("collect_garbage runs git gc --auto: past gc.autoPackLimit, the packs become one") {
  Fixture f;
  // Each fetch keeps its pack (none is unpacked to loose objects), and two are too many.
  f.mirror_git("config fetch.unpackLimit 1");
  f.mirror_git("config gc.autoPackLimit 1");
  f.fetch();
  commit_files(f.work, {{"more.txt", "more\n"}}, "more");
  f.push("master");
  f.fetch();
  REQUIRE(pack_files(f.mirror_dir) == 2);
  Status s = f.mirror->collect_garbage();
  REQUIRE_MESSAGE(s.ok(), s.message());
  CHECK(pack_files(f.mirror_dir) == 1);
  // The reflogs are kept (gc would expire old entries), and the mirror still works.
  auto held = f.mirror->reflog("refs/remotes/origin/master");
  REQUIRE(held.ok());
  CHECK(held->size() == 2);
  CHECK(f.mirror->resolve("refs/remotes/origin/master").ok());
  f.mirror_git("fsck --no-dangling");
}

TEST_CASE("merge_tree agrees with git merge-tree --write-tree: clean, conflicting, criss-cross") {
  Fixture f;
  auto agree = [&](const std::string& ours, const std::string& theirs) {
    auto ours_tree = f.mirror->merge_tree(ours, theirs);
    REQUIRE_MESSAGE(ours_tree.ok(), (ours_tree.ok() ? "" : ours_tree.message()));
    const auto git_tree = git_merge_tree(f.mirror_dir, ours, theirs);
    CHECK(*ours_tree == git_tree);
    return git_tree.has_value();
  };
  auto [master, feature] = f.diverge();
  CHECK(agree(master, feature));  // clean
  auto merged = f.mirror->merge(master, feature, "m", git::Identity{});
  REQUIRE(merged.ok());
  CHECK(git_merge_tree(f.mirror_dir, master, feature) == *f.mirror->tree_of(merged->commit));

  // The same lines changed on both sides: a conflict for both.
  f.git("checkout -q feature");
  const std::string f1 = commit_files(f.work, {{"shared.txt", "one\nfeature\nthree\n"}}, "f1");
  f.git("checkout -q master");
  const std::string m1 = commit_files(f.work, {{"shared.txt", "one\nmaster\nthree\n"}}, "m1");
  // Criss-cross: a and b each merge the other's first commit, so they have two merge bases.
  f.git("checkout -q -b a " + f.initial);
  const std::string a1 =
      commit_files(f.work, {{"a.txt", "a1\n"}, {"shared.txt", "one\ntwo\nthree\nfour\n"}}, "a1");
  f.git("checkout -q -b b " + f.initial);
  const std::string b1 =
      commit_files(f.work, {{"b.txt", "b1\n"}, {"shared.txt", "zero\none\ntwo\nthree\n"}}, "b1");
  f.git("merge -q --no-edit " + a1);
  commit_files(f.work, {{"b.txt", "b2\n"}}, "b2");
  const std::string b2 = must(git_env() + "git rev-parse HEAD", f.work);
  f.git("checkout -q a");
  f.git("merge -q --no-edit " + b1);
  const std::string a2 = commit_files(f.work, {{"a.txt", "a2\n"}}, "a2");
  f.git("checkout -q -b c " + a2);
  const std::string c3 = commit_files(f.work, {{"b.txt", "c3\n"}}, "c3");  // b2 changed it too
  f.git("push -q origin master feature a b c");
  f.fetch();
  REQUIRE(must(git_env() + "git merge-base --all " + a2 + " " + b2, f.work).find('\n') !=
          std::string::npos);
  CHECK_FALSE(agree(m1, f1));  // conflicting
  CHECK(agree(a2, b2));        // criss-cross, clean
  CHECK_FALSE(agree(c3, b2));  // criss-cross, conflicting
}

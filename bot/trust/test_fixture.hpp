// Test-only fixture shared by trust_test.cpp and verify_command_test.cpp: real SSH and OpenPGP
// keys, a policy naming them, and repositories whose commits and tags are signed for real
// (raw objects written with `git hash-object --literally` where a test needs a bad one).
// Threading: test thread only.
#pragma once

#include <doctest/doctest.h>

#include <ctime>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bot/git/mirror.hpp"
#include "bot/trust/ssh_signer.hpp"
#include "tests/gpg_keys.hpp"
#include "tests/ssh_keys.hpp"
#include "tests/support.hpp"

namespace dmz::trust_test {

namespace fs = std::filesystem;
using test::must;
using test::shell_quote;

inline std::string q(const fs::path& p) { return shell_quote(p.string()); }

// A signing function: payload -> armored signature.
using SignFn = std::function<std::string(const std::string&)>;

struct TrustKeysFixture {
  const test::SshKey& alice_ssh = test::cached_ssh_key("ed25519", 20);
  const test::SshKey& bob_ssh = test::cached_ssh_key("ed25519", 21);
  const test::SshKey& carol_ssh = test::cached_ssh_key("ed25519", 22);
  const test::SshKey& dave_ssh = test::cached_ssh_key("ed25519", 23);  // valid-before 2020
  const test::SshKey& mallory_ssh = test::cached_ssh_key("ed25519", 24);
  const test::SshKey& stranger_ssh = test::cached_ssh_key("ed25519", 25);  // in no account
  const test::SshKey& bot_ssh = test::cached_ssh_key("ed25519", 26);
  test::TestKeys& gpg = test::test_keys();
  // A key of its own home, never revoked there (so it can still sign); the policy's key file
  // carries its revocation certificate.
  test::GpgHome revoked_home;
  std::string revoked;
  std::string revoked_public;  // public key + revocation certificate

  TrustKeysFixture() {
    revoked = revoked_home.generate("Revoked Two <revoked2@example.com>");
    std::string cert =
        test::read_file(revoked_home.path() / "openpgp-revocs.d" / (revoked + ".rev"));
    cert.replace(cert.find(":-----BEGIN"), 1, "");
    revoked_public = revoked_home.export_public(revoked) + cert;
  }

  static std::string key_part(const test::SshKey& k) {  // "type base64"
    auto first = k.public_line.find(' ');
    return k.public_line.substr(0, k.public_line.find(' ', first + 1));
  }

  SignFn ssh(const test::SshKey& key) const {
    return [path = key.private_path](const std::string& payload) {
      auto signer = SshSigner::from_file(path);
      REQUIRE_MESSAGE(signer.ok(), (signer.ok() ? "" : signer.message()));
      auto sig = (*signer)->sign(payload);
      REQUIRE(sig.ok());
      return *sig;
    };
  }
  // Signs with `key` in test_keys()' home; `options` e.g. a faked system time.
  SignFn openpgp(const std::string& key, const std::string& options = "") {
    return [this, key, options](const std::string& payload) {
      return gpg.home.sign(key, payload, options);
    };
  }
  SignFn openpgp_revoked() {
    return [this](const std::string& payload) { return revoked_home.sign(revoked, payload); };
  }
  // "--faked-system-time" a bit after test_keys() made its keys of ten days ago.
  static std::string ten_days_ago_options() {
    return "--faked-system-time " + std::to_string(std::time(nullptr) - 10 * 86400 + 7200) + "! ";
  }

  // The policy: maintainers alice, bob, carol; developers those plus dave (ssh key valid only
  // before 2020) and past (OpenPGP keys past, expired, revoked); mallory is an account in no
  // group; dmzbot signs merges. `developers_extra` adds accounts to developers.
  std::string policy(const std::string& developers_extra = "", int approvals = 2) const {
    auto quoted = [](const std::string& s) { return "'" + s + "'"; };
    std::string t = "version = 1\n\n";
    t += "[accounts.alice]\nopenpgp = [\"" + gpg.alice + "\"]\nssh = [" +
         quoted(key_part(alice_ssh)) + "]\nlogins = [\"alice\", \"alice@example.com\"]\n";
    t += "[accounts.bob]\nssh = [" + quoted(key_part(bob_ssh)) + "]\nlogins = [\"bob\"]\n";
    t += "[accounts.carol]\nssh = [" + quoted(key_part(carol_ssh)) + "]\nlogins = [\"carol\"]\n";
    t += "[accounts.dave]\nssh = [" + quoted("valid-before=\"20200101\" " + key_part(dave_ssh)) +
         "]\nlogins = [\"dave\"]\n";
    t += "[accounts.mallory]\nssh = [" + quoted(key_part(mallory_ssh)) +
         "]\nlogins = [\"mallory\"]\n";
    t += "[accounts.past]\nopenpgp = [\"" + gpg.past + "\", \"" + gpg.expired + "\", \"" + revoked +
         "\"]\nlogins = [\"past\"]\n";
    t += "[accounts.dmzbot]\nssh = [" + quoted(key_part(bot_ssh)) + "]\n";
    t += "\n[groups]\nmaintainers = [\"alice\", \"bob\", \"carol\"]\n";
    t += "developers = [\"alice\", \"bob\", \"carol\", \"dave\", \"past\"" + developers_extra +
         "]\n";
    t += "bots = [\"dmzbot\"]\n";
    t += "\n[branches]\nallowed = [\"feature/*\", \"tags/*\"]\nrefused = [\"wip/*\"]\n";
    t += "\n[[rule]]\nbranch = \"master\"\npaths = [\"**\"]\nsigners = \"developers\"\n"
         "author_signs = true\napprovals = " +
         std::to_string(approvals) + "\napprovers = \"maintainers\"\n";
    t += "\n[[rule]]\nbranch = \"master\"\npaths = [\".dmz/**\"]\napprovals = 3\n"
         "approvers = \"maintainers\"\n";
    t += "\n[merges]\nsigners = \"bots\"\nconflict_resolvers = \"maintainers\"\n";
    return t;
  }

  // The key files of the policy commit: every OpenPGP key it names, plus one it does not.
  std::vector<std::pair<std::string, std::string>> key_files() {
    return {{".dmz/keys/alice.asc", gpg.home.export_public(gpg.alice)},
            {".dmz/keys/past.asc", gpg.home.export_public(gpg.past)},
            {".dmz/keys/expired.asc", gpg.home.export_public(gpg.expired)},
            {".dmz/keys/revoked.asc", revoked_public},
            {".dmz/keys/stranger.asc", gpg.home.export_public(gpg.mallory)}};
  }
};

inline TrustKeysFixture& keys() {
  static TrustKeysFixture k;
  return k;
}

// Adds a gpgsig header (folded as git writes it) at the end of the headers of `payload`.
inline std::string with_gpgsig(const std::string& payload, std::string signature) {
  if (!signature.empty() && signature.back() == '\n') signature.pop_back();
  std::string header = "gpgsig ";
  for (char c : signature) {
    header += c;
    if (c == '\n') header += ' ';
  }
  header += "\n";
  size_t end = payload.find("\n\n");
  REQUIRE(end != std::string::npos);
  return payload.substr(0, end + 1) + header + payload.substr(end + 1);
}

// Moves the gpgsig header (with its continuation lines) of a signed commit to just before its
// author header. git accepts such a commit and verifies its signature (the payload is the same;
// git fsck only warns); libgit2 refuses to parse it, and dmzbot refuses it as malformed.
inline std::string gpgsig_before_author(std::string bytes) {
  size_t start = bytes.find("\ngpgsig ");
  REQUIRE(start != std::string::npos);
  ++start;
  size_t end = start;
  do end = bytes.find('\n', end) + 1;
  while (bytes[end] == ' ');
  const std::string header = bytes.substr(start, end - start);
  bytes.erase(start, end - start);
  bytes.insert(bytes.find("\nauthor ") + 1, header);
  return bytes;
}

// A work repository with a bare origin and a dmzbot Mirror of it.
struct Repo {
  test::TempDir tmp;
  fs::path work = tmp / "work";
  fs::path origin = tmp / "origin.git";
  std::unique_ptr<git::Mirror> mirror;
  std::string root;

  // The first commit on master holds `files` (unsigned: it is the repository's start).
  explicit Repo(const std::vector<std::pair<std::string, std::string>>& files) {
    git::init();
    fs::create_directories(work / ".dmz" / "keys");
    root = test::init_repo(work, files);
    must(test::git_env() + "git init -q --bare -b master " + q(origin));
    git("remote add origin " + q(origin));
    auto m = git::Mirror::open(tmp / "mirror.git", origin.string());
    REQUIRE_MESSAGE(m.ok(), (m.ok() ? "" : m.message()));
    mirror = std::move(*m);
  }

  std::string git(const std::string& args) { return must(test::git_env() + "git " + args, work); }

  // The exact bytes of an object.
  std::string cat(const std::string& type, const std::string& sha) {
    test::TempDir scratch;
    must(test::git_env() + "git cat-file " + type + " " + sha + " > " + q(scratch / "obj"), work);
    return test::read_file(scratch / "obj");
  }
  // Stores `bytes` without git's checks; returns the object id.
  std::string store(const std::string& type, const std::string& bytes) {
    test::TempDir scratch;
    test::write_file(scratch / "obj", bytes);
    return git("hash-object -t " + type + " -w --literally " + q(scratch / "obj"));
  }

  // Commits `files` on the current branch; the commit is signed by `sign` (if set) and its
  // bytes pass through `mutate` (after signing) before they are stored. Returns the sha; the
  // branch points at it.
  std::string commit(const std::vector<std::pair<std::string, std::string>>& files,
                     const std::string& message, const SignFn& sign,
                     const std::function<std::string(std::string)>& mutate = {}) {
    std::string plain = test::commit_files(work, files, message);
    if (!sign && !mutate) return plain;
    std::string bytes = cat("commit", plain);
    if (sign) bytes = with_gpgsig(bytes, sign(bytes));
    if (mutate) bytes = mutate(bytes);
    std::string sha = store("commit", bytes);
    git("update-ref HEAD " + sha);
    return sha;
  }

  // Replaces the (unsigned) commit at HEAD, e.g. a merge made by git, with a signed copy.
  std::string sign_head(const SignFn& sign) {
    std::string bytes = cat("commit", git("rev-parse HEAD"));
    std::string sha = store("commit", with_gpgsig(bytes, sign(bytes)));
    git("update-ref HEAD " + sha);
    return sha;
  }

  // An annotated tag signed with an SSH key.
  std::string ssh_tag(const test::SshKey& key, const std::string& name, const std::string& target) {
    return test::ssh_signed_tag(work, key, name, target, "approve " + target);
  }

  void push() {
    git("push -q -f origin 'refs/heads/*:refs/heads/*'");
    if (!git("tag -l").empty()) git("push -q -f origin 'refs/tags/*:refs/tags/*'");
  }
  // Mirror::fetch (libgit2) fails on a ref whose history holds a commit libgit2 cannot parse
  // (gpgsig_before_author); tests of such commits fill the mirror with git itself, using the
  // same refspecs.
  bool fetch_with_git = false;
  void fetch() {
    push();
    if (fetch_with_git) {
      must(test::git_env() + "git --git-dir=" + q(tmp / "mirror.git") +
           " fetch -q --prune origin '+refs/heads/*:refs/remotes/origin/*' "
           "'+refs/tags/*:refs/tags/*' '+refs/notes/*:refs/notes/*'");
      return;
    }
    Status s = mirror->fetch();
    REQUIRE_MESSAGE(s.ok(), s.message());
  }
};

// A repository whose first commit on master carries the fixture's policy and keys.
inline std::vector<std::pair<std::string, std::string>> policy_files(const std::string& policy) {
  auto files = keys().key_files();
  files.emplace_back(".dmz/policy.toml", policy);
  files.emplace_back("README", "hello\n");
  return files;
}

}  // namespace dmz::trust_test

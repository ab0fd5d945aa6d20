// dmzbot as a plain git server's hooks, end to end: a bare repository served by `git daemon`
// with `dmzbot install-hooks`, real OpenPGP keys made here, real `git push --signed` and
// dmzbot's own signed pushes through its git transport; then the push log audited, forged and
// reordered.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "bot/git/transport.hpp"
#include "bot/service/transport_options.hpp"
#include "tests/git_daemon.hpp"
#include "tests/gpg_keys.hpp"
#include "tests/support.hpp"

namespace dmz {
namespace {

using namespace dmz::test;
namespace fs = std::filesystem;

std::string dmzbot() {
  const char* bin = std::getenv("DMZBOT_BIN");
  REQUIRE_MESSAGE(bin, "DMZBOT_BIN must name the dmzbot binary (ctest sets it)");
  return shell_quote(bin);
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

struct Server {
  TempDir tmp;
  GpgHome home;
  std::string bot, alice, mallory;  // fingerprints
  fs::path srv = tmp / "srv";
  fs::path origin = srv / "origin.git";
  fs::path work = tmp / "work";
  fs::path hooks_toml = tmp / "hooks.toml";

  Server() {
    bot = home.generate("dmzbot <dmzbot@example.com>");
    alice = home.generate("Alice <alice@example.com>");
    mallory = home.generate("Mallory <mallory@example.com>");
    // The trust root: dmzbot may push master and dmz, alice (release engineer) tags and
    // production; mallory is a known developer allowed nothing here.
    fs::create_directories(tmp / "root" / "keys");
    const std::vector<std::pair<std::string, std::string>> keys = {
        {"bot", bot}, {"alice", alice}, {"mallory", mallory}};
    for (const auto& [name, fpr] : keys)
      write_file(tmp / "root" / "keys" / (name + ".asc"), home.export_public(fpr));
    write_file(tmp / "root" / "policy.toml",
               "version = 1\n[accounts.dmzbot]\nopenpgp = [\"" + bot +
                   "\"]\n[accounts.alice]\nopenpgp = [\"" + alice +
                   "\"]\n[accounts.mallory]\nopenpgp = [\"" + mallory +
                   "\"]\n[groups]\nbots = [\"dmzbot\"]\nreleng = [\"alice\"]\n"
                   "devs = [\"mallory\"]\n[[rule]]\nbranch = \"master\"\n"
                   "[[push]]\nrefs = [\"refs/heads/master\", \"refs/heads/dmz\"]\n"
                   "signers = \"bots\"\n[[push]]\nrefs = [\"refs/tags/v*\", "
                   "\"refs/heads/staging\", \"refs/heads/production\"]\nsigners = \"releng\"\n"
                   "[release]\ncandidate_signers = \"releng\"\nrelease_signers = \"releng\"\n");
    write_file(hooks_toml, "[hooks]\npolicy_root = \"root/policy.toml\"\n");
    must(git_env() + "git init -q --bare " + shell_quote(origin.string()));
    // receive-pack verifies certificates with gpg: point it at the keys' home.
    write_file(tmp / "gpg-wrapper",
               "#!/bin/sh\nGNUPGHOME=" + shell_quote(home.path().string()) + " exec gpg \"$@\"\n");
    fs::permissions(tmp / "gpg-wrapper", fs::perms::owner_all);
    must(git_env() + "git -C " + shell_quote(origin.string()) + " config gpg.program " +
         shell_quote((tmp / "gpg-wrapper").string()));
    init_repo(work, {{"README", "hello\n"}});
  }

  std::string git_srv(const std::string& args) {
    return must(git_env() + "git -C " + shell_quote(origin.string()) + " " + args);
  }
  std::optional<std::string> remote_ref(const std::string& ref) {
    RunResult r =
        run(git_env() + "git -C " + shell_quote(origin.string()) + " rev-parse --verify -q " + ref);
    if (r.exit_code != 0) return std::nullopt;
    return r.out.substr(0, 40);
  }
  // `git push` from the work tree, signed by `key` (or unsigned if empty).
  RunResult push(const std::string& url, const std::string& refspec, const std::string& key = "") {
    std::string signing = key.empty() ? "" : "-c user.signingKey=" + key + " -c gpg.program=gpg ";
    return run(git_env() + home.env() + "git -C " + shell_quote(work.string()) + " " + signing +
               "push --porcelain " + (key.empty() ? "" : "--signed ") + url + " " + refspec);
  }
  // Runs the installed pre-receive hook as receive-pack would, with the given environment.
  RunResult pre_receive(const std::string& env, const std::string& stdin_text) {
    write_file(tmp / "stdin", stdin_text);
    return run(env + " " + dmzbot() + " pre-receive --config " + shell_quote(hooks_toml.string()) +
                   " < " + shell_quote((tmp / "stdin").string()),
               origin);
  }
  RunResult install_hooks(const std::string& env = "") {
    return run(env + dmzbot() + " install-hooks --repo " + shell_quote(origin.string()) +
               " --config " + shell_quote(hooks_toml.string()));
  }
  RunResult verify_pushes(const fs::path& repo) {
    return run(dmzbot() + " verify --pushes --repo " + shell_quote(repo.string()) + " --config " +
               shell_quote(hooks_toml.string()));
  }
};

}  // namespace

TEST_CASE("git server hooks: signed pushes enforced, logged, audited") {
  Server s;
  RunResult install = run(dmzbot() + " install-hooks --repo " + shell_quote(s.origin.string()) +
                          " --config " + shell_quote(s.hooks_toml.string()));
  REQUIRE_MESSAGE(install.exit_code == 0, install.out);
  CHECK(fs::exists(s.origin / "hooks" / "pre-receive"));
  CHECK(fs::exists(s.origin / "hooks" / "post-receive"));
  const std::string seed = s.git_srv("config receive.certNonceSeed");
  CHECK(seed.size() == 64);
  // Installing again keeps the seed (nonces given out stay valid).
  REQUIRE(run(dmzbot() + " install-hooks --repo " + shell_quote(s.origin.string()) + " --config " +
              shell_quote(s.hooks_toml.string()))
              .exit_code == 0);
  CHECK(s.git_srv("config receive.certNonceSeed") == seed);

  GitDaemon daemon(s.srv, "origin.git");
  REQUIRE_MESSAGE(!daemon.url().empty(), daemon.log());
  const std::string first =
      must(git_env() + "git -C " + shell_quote(s.work.string()) + " rev-parse HEAD");

  // An unsigned push to master is refused, and master does not exist.
  RunResult unsigned_push = s.push(daemon.url(), "HEAD:refs/heads/master");
  CHECK(unsigned_push.exit_code != 0);
  CHECK_MESSAGE(contains(unsigned_push.out,
                         "dmzbot: refused: protected refs/heads/master: the push is not signed"),
                unsigned_push.out);
  CHECK_FALSE(s.remote_ref("refs/heads/master"));

  // A feature branch may be pushed unsigned, and is not logged.
  RunResult feature = s.push(daemon.url(), "HEAD:refs/heads/feature/x");
  CHECK_MESSAGE(feature.exit_code == 0, feature.out);
  CHECK_FALSE(s.remote_ref("refs/dmz/push-log"));

  // A push signed by a key the policy does not allow for master.
  RunResult wrong = s.push(daemon.url(), "HEAD:refs/heads/master", s.mallory);
  CHECK(wrong.exit_code != 0);
  CHECK_MESSAGE(contains(wrong.out,
                         "refs/heads/master: mallory may not push it (the policy "
                         "allows dmzbot)"),
                wrong.out);
  CHECK_FALSE(s.remote_ref("refs/heads/master"));

  // dmzbot's own push, through its transport configured as the service configures it.
  config::Repo repo;
  repo.remote = daemon.url();
  config::Signing signing;
  signing.format = "openpgp";
  signing.fingerprint = s.bot;
  signing.gnupg_home = s.home.path();
  auto transport = git::Transport::create(s.work / ".git", transport_options(repo, signing));
  REQUIRE(transport.ok());
  auto created = (*transport)->push({{"refs/heads/master", first, std::string()}});
  REQUIRE(created.ok());
  CHECK_MESSAGE(created->ok(), created->remote_messages);
  CHECK(s.remote_ref("refs/heads/master") == first);
  const std::string second = commit_files(s.work, {{"README", "two\n"}}, "second");
  auto moved = (*transport)->push({{"refs/heads/master", second, first}});
  REQUIRE(moved.ok());
  CHECK_MESSAGE(moved->ok(), moved->remote_messages);
  CHECK(s.remote_ref("refs/heads/master") == second);

  // The release engineer's signed tag push; the log ref itself cannot be pushed.
  must(git_env() + "git -C " + shell_quote(s.work.string()) + " tag v1.0 " + first);
  RunResult tag = s.push(daemon.url(), "refs/tags/v1.0", s.alice);
  CHECK_MESSAGE(tag.exit_code == 0, tag.out);
  RunResult log_push = s.push(daemon.url(), "+HEAD:refs/dmz/push-log", s.bot);
  CHECK(log_push.exit_code != 0);
  CHECK_MESSAGE(contains(log_push.out, "refs/dmz/push-log: written only by the server's"),
                log_push.out);

  // The log: three entries (master created, master moved, the tag), which verify.
  CHECK(s.git_srv("rev-list --count refs/dmz/push-log") == "3");
  RunResult audit = s.verify_pushes(s.origin);
  CHECK_MESSAGE(audit.exit_code == 0, audit.out);
  CHECK_MESSAGE(contains(audit.out, "refs/dmz/push-log: 3 entries, 0 problems"), audit.out);
  CHECK(contains(audit.out, "dmzbot 0000000000000000000000000000000000000000 " + first +
                                " refs/heads/master"));

  // Replaying the certificate of the first master push (through the hook, with what
  // receive-pack reports for an old certificate over a stateful connection).
  const std::string first_entry = s.git_srv("rev-list --reverse refs/dmz/push-log").substr(0, 40);
  const std::string old_cert = s.git_srv("rev-parse " + first_entry + ":certificate");
  const std::string third = commit_files(s.work, {{"README", "three\n"}}, "third");
  const std::string zero(40, '0');
  RunResult replay = s.pre_receive(
      "GIT_PUSH_CERT=" + old_cert + " GIT_PUSH_CERT_STATUS=G GIT_PUSH_CERT_NONCE_STATUS=BAD",
      zero + " " + first + " refs/heads/master\n");
  CHECK(replay.exit_code == 1);
  CHECK_MESSAGE(contains(replay.out, "nonce is not the one this server gave"), replay.out);
  RunResult replay_moved = s.pre_receive(
      "GIT_PUSH_CERT=" + old_cert + " GIT_PUSH_CERT_STATUS=G GIT_PUSH_CERT_NONCE_STATUS=OK",
      second + " " + first + " refs/heads/master\n");
  CHECK(replay_moved.exit_code == 1);
  CHECK_MESSAGE(contains(replay_moved.out, "a replayed certificate"), replay_moved.out);
  // Commands that differ from the update, a stale nonce, a missing nonce.
  RunResult differ = s.pre_receive(
      "GIT_PUSH_CERT=" + old_cert + " GIT_PUSH_CERT_STATUS=G GIT_PUSH_CERT_NONCE_STATUS=OK",
      zero + " " + third + " refs/heads/master\n");
  CHECK(differ.exit_code == 1);
  CHECK_MESSAGE(contains(differ.out, "certifies new value"), differ.out);
  RunResult stale = s.pre_receive("GIT_PUSH_CERT=" + old_cert +
                                      " GIT_PUSH_CERT_STATUS=G GIT_PUSH_CERT_NONCE_STATUS=SLOP "
                                      "GIT_PUSH_CERT_NONCE_SLOP=400",
                                  zero + " " + first + " refs/heads/master\n");
  CHECK(stale.exit_code == 1);
  CHECK_MESSAGE(contains(stale.out, "nonce is stale: 400 s old, at most 0 s allowed"), stale.out);
  RunResult missing = s.pre_receive(
      "GIT_PUSH_CERT=" + old_cert + " GIT_PUSH_CERT_STATUS=G GIT_PUSH_CERT_NONCE_STATUS=MISSING",
      zero + " " + first + " refs/heads/master\n");
  CHECK(missing.exit_code == 1);
  CHECK(contains(missing.out, "has no nonce"));
  // The same certificate with what receive-pack reported for it at the time passes: the
  // refusals above are the environment's doing, not a hook that refuses everything.
  RunResult as_then = s.pre_receive(
      "GIT_PUSH_CERT=" + old_cert + " GIT_PUSH_CERT_STATUS=G GIT_PUSH_CERT_NONCE_STATUS=OK",
      zero + " " + first + " refs/heads/master\n");
  CHECK_MESSAGE(as_then.exit_code == 0, as_then.out);
  CHECK(s.remote_ref("refs/heads/master") == second);

  SUBCASE("a forged log entry is detected") {
    // Entry 2's certificate with its new value changed: the signature no longer verifies.
    const std::string entries = s.git_srv("rev-list --reverse refs/dmz/push-log");
    const std::string e2 = entries.substr(41, 40);
    std::string cert = s.git_srv("cat-file blob " + e2 + ":certificate");
    cert += "\n";  // must() trimmed the final newline
    size_t at = cert.find(first + " " + second);
    REQUIRE(at != std::string::npos);
    cert.replace(at + 41, 40, third);
    write_file(s.tmp / "forged", cert);
    const std::string blob =
        s.git_srv("hash-object -w " + shell_quote((s.tmp / "forged").string()));
    const std::string updates = s.git_srv("rev-parse " + e2 + ":updates");
    write_file(s.tmp / "tree",
               "100644 blob " + blob + "\tcertificate\n100644 blob " + updates + "\tupdates\n");
    const std::string tree = s.git_srv("mktree < " + shell_quote((s.tmp / "tree").string()));
    const std::string forged =
        s.git_srv("commit-tree " + tree + " -p " + entries.substr(0, 40) + " -m forged");
    const std::string e3 = entries.substr(82, 40);
    const std::string e3_tree = s.git_srv("rev-parse " + e3 + "^{tree}");
    const std::string top = s.git_srv("commit-tree " + e3_tree + " -p " + forged + " -m tag");
    s.git_srv("update-ref refs/dmz/push-log " + top);
    RunResult r = s.verify_pushes(s.origin);
    CHECK(r.exit_code == 1);
    CHECK_MESSAGE(contains(r.out, "entry 2 (" + forged.substr(0, 12) +
                                      "): the certificate does not verify with the policy's keys"),
                  r.out);
  }
  SUBCASE("a certificate without a nonce is reported") {
    // Entry 1 re-signed by dmzbot's key without its nonce line: it verifies, but pre-receive
    // never accepts such a certificate, so the hook did not log it.
    const std::string entries = s.git_srv("rev-list --reverse refs/dmz/push-log");
    const std::string e1 = entries.substr(0, 40);
    const std::string cert = s.git_srv("cat-file blob " + e1 + ":certificate") + "\n";
    std::string payload = cert.substr(0, cert.find("-----BEGIN"));
    const size_t nonce = payload.find("\nnonce ");
    REQUIRE(nonce != std::string::npos);
    payload.erase(nonce + 1, payload.find('\n', nonce + 1) - nonce);
    write_file(s.tmp / "no-nonce", payload + s.home.sign(s.bot, payload));
    const std::string blob =
        s.git_srv("hash-object -w " + shell_quote((s.tmp / "no-nonce").string()));
    const std::string updates = s.git_srv("rev-parse " + e1 + ":updates");
    write_file(s.tmp / "tree",
               "100644 blob " + blob + "\tcertificate\n100644 blob " + updates + "\tupdates\n");
    const std::string tree = s.git_srv("mktree < " + shell_quote((s.tmp / "tree").string()));
    std::string top = s.git_srv("commit-tree " + tree + " -m forged");
    const std::string forged = top;
    for (size_t i = 1; i < 3; ++i)
      top = s.git_srv("commit-tree " + entries.substr(41 * i, 40) + "^{tree} -p " + top + " -m x");
    s.git_srv("update-ref refs/dmz/push-log " + top);
    RunResult r = s.verify_pushes(s.origin);
    CHECK(r.exit_code == 1);
    CHECK_MESSAGE(
        contains(r.out, "entry 1 (" + forged.substr(0, 12) +
                            "): the certificate has no nonce this server could have given"),
        r.out);
  }
  SUBCASE("a reordered log is detected") {
    const std::string entries = s.git_srv("rev-list --reverse refs/dmz/push-log");
    auto tree_of = [&](size_t i) {
      return s.git_srv("rev-parse " + entries.substr(41 * i, 40) + "^{tree}");
    };
    // Entries 1 and 2 (both of master) swapped.
    const std::string a = s.git_srv("commit-tree " + tree_of(1) + " -m swapped");
    const std::string b = s.git_srv("commit-tree " + tree_of(0) + " -p " + a + " -m swapped");
    const std::string c = s.git_srv("commit-tree " + tree_of(2) + " -p " + b + " -m swapped");
    s.git_srv("update-ref refs/dmz/push-log " + c);
    RunResult r = s.verify_pushes(s.origin);
    CHECK(r.exit_code == 1);
    CHECK_MESSAGE(contains(r.out,
                           "refs/heads/master: moves from 000000000000 but the previous "
                           "entry left it at " +
                               second.substr(0, 12)),
                  r.out);
  }
  SUBCASE("a protected ref moved behind the log's back is detected") {
    s.git_srv("update-ref refs/heads/master " + first);
    RunResult r = s.verify_pushes(s.origin);
    CHECK(r.exit_code == 1);
    CHECK_MESSAGE(contains(r.out, "refs/heads/master is at " + first.substr(0, 12) +
                                      " but the log leaves it at " + second.substr(0, 12)),
                  r.out);
  }
}

}  // namespace dmz

namespace dmz {

TEST_CASE("hooks and verify: usage errors, a broken hooks configuration refuses every push") {
  test::TempDir tmp;
  auto no_range = test::run(dmzbot() + " verify");
  CHECK(no_range.exit_code == 2);
  CHECK(contains(no_range.out, "REVRANGE is required (or --pushes)"));
  test::write_file(tmp / "bad.toml", "[hooks]\nnonce_slop = -5\n");
  test::must(test::git_env() + "git init -q --bare " + test::shell_quote((tmp / "r.git").string()));
  auto pre = test::run("echo | " + dmzbot() + " pre-receive --config " +
                           test::shell_quote((tmp / "bad.toml").string()),
                       tmp / "r.git");
  CHECK(pre.exit_code == 1);
  CHECK_MESSAGE(contains(pre.out, "bad.toml:2: hooks.nonce_slop must be"), pre.out);
  CHECK(contains(pre.out, "dmzbot: refused: the hooks' configuration is broken"));
  auto install =
      test::run(dmzbot() + " install-hooks --repo " + test::shell_quote((tmp / "r.git").string()) +
                " --config " + test::shell_quote((tmp / "bad.toml").string()));
  CHECK(install.exit_code == 2);
  CHECK_FALSE(std::filesystem::exists(tmp / "r.git" / "hooks" / "pre-receive"));
}

TEST_CASE("install-hooks never replaces a hook it did not write") {
  Server s;
  const fs::path theirs = s.origin / "hooks" / "post-receive";
  test::write_file(theirs, "#!/bin/sh\necho my CI trigger\n");
  const std::string install = dmzbot() + " install-hooks --repo " + shell_quote(s.origin.string()) +
                              " --config " + shell_quote(s.hooks_toml.string());
  RunResult refused = run(install);
  CHECK(refused.exit_code == 2);
  CHECK_MESSAGE(contains(refused.out, "was not written by dmzbot"), refused.out);
  CHECK(test::read_file(theirs) == "#!/bin/sh\necho my CI trigger\n");
  CHECK_FALSE(fs::exists(s.origin / "hooks" / "pre-receive"));  // nothing half-installed
  // Moved aside, it installs; installing again over its own hooks is fine.
  fs::rename(theirs, s.origin / "hooks" / "post-receive.mine");
  CHECK(run(install).exit_code == 0);
  CHECK(run(install).exit_code == 0);
}

TEST_CASE("verify --releases judges every commit production was pushed to, from the push log") {
  Server s;
  REQUIRE(run(dmzbot() + " install-hooks --repo " + shell_quote(s.origin.string()) + " --config " +
              shell_quote(s.hooks_toml.string()))
              .exit_code == 0);
  // The server keeps a reflog of its branches now.
  CHECK(s.git_srv("config core.logAllRefUpdates") == "true");
  GitDaemon daemon(s.srv, "origin.git");
  REQUIRE_MESSAGE(!daemon.url().empty(), daemon.log());
  auto git_work = [&](const std::string& args) {
    return must(git_env() + s.home.env() + "git -C " + shell_quote(s.work.string()) + " " + args);
  };
  auto signed_tag = [&](const std::string& name, const std::string& at) {
    git_work("-c gpg.program=gpg tag -s -u " + s.alice + " -m " + name + " " + name + " " + at);
  };
  const std::string one = git_work("rev-parse HEAD");
  signed_tag("v1.0-rc1", one);
  signed_tag("v1.0", one);
  RunResult first = s.push(
      daemon.url(), "refs/tags/v1.0-rc1 refs/tags/v1.0 " + one + ":refs/heads/production", s.alice);
  REQUIRE_MESSAGE(first.exit_code == 0, first.out);
  // The release engineer may push production, but this commit was never released.
  const std::string unreleased = commit_files(s.work, {{"README", "unreleased\n"}}, "unreleased");
  RunResult sneaked = s.push(daemon.url(), unreleased + ":refs/heads/production", s.alice);
  REQUIRE_MESSAGE(sneaked.exit_code == 0, sneaked.out);
  const std::string two = commit_files(s.work, {{"README", "two\n"}}, "two");
  signed_tag("v2.0-rc1", two);
  signed_tag("v2.0", two);
  RunResult second = s.push(
      daemon.url(), "refs/tags/v2.0-rc1 refs/tags/v2.0 " + two + ":refs/heads/production", s.alice);
  REQUIRE_MESSAGE(second.exit_code == 0, second.out);

  auto verify_releases = [&] {
    return run(dmzbot() + " verify --releases --repo " + shell_quote(s.origin.string()) +
               " --policy " + shell_quote((s.tmp / "root" / "policy.toml").string()));
  };
  // Production's tip carries a good release tag; the commit it held before does not.
  RunResult audit = verify_releases();
  CHECK(audit.exit_code == 1);
  CHECK_MESSAGE(contains(audit.out, "problem: production was at " + unreleased.substr(0, 12) +
                                        ", which carries no valid release tag"),
                audit.out);
  CHECK(contains(audit.out, "staging and production: 1 problems"));
  // Without the server's reflog the push log alone still shows it.
  fs::remove_all(s.origin / "logs");
  audit = verify_releases();
  CHECK(audit.exit_code == 1);
  CHECK_MESSAGE(contains(audit.out, "production was at " + unreleased.substr(0, 12)), audit.out);
  // With neither source (no reflog, another log ref) only the good tip is judged.
  RunResult tip_only = run(dmzbot() + " verify --releases --push-log refs/dmz/none --repo " +
                           shell_quote(s.origin.string()) + " --policy " +
                           shell_quote((s.tmp / "root" / "policy.toml").string()));
  CHECK_MESSAGE(tip_only.exit_code == 0, tip_only.out);
}

TEST_CASE("install-hooks refuses where core.hooksPath sends receive-pack's hooks elsewhere") {
  Server s;
  const std::string other = (s.tmp / "other-hooks").string();
  s.git_srv("config core.hooksPath " + shell_quote(other));
  RunResult local = s.install_hooks();
  CHECK(local.exit_code == 2);
  CHECK_MESSAGE(
      contains(local.out, "core.hooksPath is set to " + other + " in the repository's config"),
      local.out);
  CHECK_FALSE(fs::exists(s.origin / "hooks" / "pre-receive"));
  // Set for the user that runs receive-pack ($HOME/.gitconfig).
  s.git_srv("config --unset core.hooksPath");
  write_file(s.tmp / "home" / ".gitconfig", "[core]\n\thooksPath = /srv/git-hooks\n");
  RunResult global = s.install_hooks("HOME=" + shell_quote((s.tmp / "home").string()) + " ");
  CHECK(global.exit_code == 2);
  CHECK_MESSAGE(contains(global.out, "/srv/git-hooks in the user's global config"), global.out);
  // The repository's own hooks directory is where it installs anyway.
  s.git_srv("config core.hooksPath hooks");
  RunResult same = s.install_hooks();
  CHECK_MESSAGE(same.exit_code == 0, same.out);
}

TEST_CASE("install-hooks refuses a policy_root it cannot read: every push would be refused") {
  Server s;
  write_file(s.hooks_toml, "[hooks]\npolicy_root = \"root/polcy.toml\"\n");
  RunResult typo = s.install_hooks();
  CHECK(typo.exit_code == 2);
  CHECK_MESSAGE(contains(typo.out, "policy_root: "), typo.out);
  CHECK_MESSAGE(contains(typo.out, "polcy.toml"), typo.out);
  CHECK_FALSE(fs::exists(s.origin / "hooks" / "pre-receive"));
  write_file(s.hooks_toml, "[hooks]\npolicy_root = \"root/policy.toml\"\n");
  CHECK(s.install_hooks().exit_code == 0);
}

TEST_CASE("install-hooks sets receive.certNonceSlop to nonce_slop, 0 included") {
  Server s;
  // An earlier install's slop: git would report a nonce up to 600 s old as OK.
  s.git_srv("config receive.certNonceSlop 600");
  REQUIRE(s.install_hooks().exit_code == 0);
  CHECK(s.git_srv("config receive.certNonceSlop") == "0");
}

TEST_CASE("the log holds judged pushes only, and no push blocks it or goes around a protection") {
  Server s;
  REQUIRE(s.install_hooks().exit_code == 0);
  GitDaemon daemon(s.srv, "origin.git");
  REQUIRE_MESSAGE(!daemon.url().empty(), daemon.log());
  const std::string first =
      must(git_env() + "git -C " + shell_quote(s.work.string()) + " rev-parse HEAD");

  // A developer's signed push of a feature branch (push.gpgSign=if-asked) with a key the policy
  // does not know: nothing judged it, so it is not logged, and the audit still passes.
  const std::string eve = s.home.generate("Eve <eve@example.com>");
  RunResult feature = s.push(daemon.url(), "HEAD:refs/heads/feature/eve", eve);
  CHECK_MESSAGE(feature.exit_code == 0, feature.out);
  CHECK_FALSE(s.remote_ref("refs/dmz/push-log"));
  RunResult audit = s.verify_pushes(s.origin);
  CHECK_MESSAGE(audit.exit_code == 0, audit.out);

  // A ref under the log ref, or at a parent path of it, would keep post-receive from ever
  // writing the log (a ref cannot be both a file and a directory).
  RunResult under = s.push(daemon.url(), "HEAD:refs/dmz/push-log/x");
  CHECK(under.exit_code != 0);
  CHECK_MESSAGE(contains(under.out,
                         "refs/dmz/push-log/x: would keep the server's post-receive hook from "
                         "writing refs/dmz/push-log"),
                under.out);
  CHECK_FALSE(s.remote_ref("refs/dmz/push-log/x"));
  const std::string hooks_toml = read_file(s.hooks_toml);
  write_file(s.hooks_toml, hooks_toml + "log_ref = \"refs/dmz/audit/log\"\n");
  RunResult parent = s.push(daemon.url(), "HEAD:refs/dmz/audit");
  CHECK(parent.exit_code != 0);
  CHECK_MESSAGE(contains(parent.out,
                         "refs/dmz/audit: would keep the server's post-receive hook "
                         "from writing refs/dmz/audit/log"),
                parent.out);
  write_file(s.hooks_toml, hooks_toml);

  // receive-pack updates through a symbolic ref: an unsigned push (or deletion) of main would
  // move master.
  s.git_srv("update-ref refs/heads/master " + first);
  s.git_srv("symbolic-ref refs/heads/main refs/heads/master");
  commit_files(s.work, {{"README", "two\n"}}, "second");
  RunResult via = s.push(daemon.url(), "HEAD:refs/heads/main");
  CHECK(via.exit_code != 0);
  CHECK_MESSAGE(contains(via.out,
                         "refs/heads/main is a symbolic ref to refs/heads/master; push "
                         "refs/heads/master itself"),
                via.out);
  RunResult deleted = s.push(daemon.url(), ":refs/heads/main");
  CHECK(deleted.exit_code != 0);
  CHECK(s.remote_ref("refs/heads/master") == first);

  // Refs that cannot be listed fail the audit (here master, which no certificate moved, would
  // otherwise go unseen).
  s.git_srv("pack-refs --all");
  write_file(s.origin / "packed-refs", read_file(s.origin / "packed-refs") + "garbage\n");
  RunResult broken = s.verify_pushes(s.origin);
  CHECK(broken.exit_code == 2);
  CHECK_MESSAGE(contains(broken.out, "list refs: corrupted packed references file"), broken.out);
}

}  // namespace dmz

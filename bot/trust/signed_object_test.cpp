#include "bot/trust/signed_object.hpp"

#include <doctest/doctest.h>

#include <vector>

#include "bot/trust/sshsig.hpp"
#include "tests/ssh_keys.hpp"
#include "tests/support.hpp"

using namespace dmz;
using namespace dmz::test;

namespace {

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

// The raw bytes of an object, as `git cat-file <type>` prints them (binary safe).
std::string cat_object(const std::filesystem::path& repo, const std::string& type,
                       const std::string& sha) {
  TempDir scratch;
  must("git cat-file " + type + " " + sha + " > " + shell_quote((scratch / "obj").string()), repo);
  return read_file(scratch / "obj");
}

// Stores `bytes` as an object of `type` without git's checks and returns what git stored.
std::string store_literally(const std::filesystem::path& repo, const std::string& type,
                            const std::string& bytes) {
  TempDir scratch;
  write_file(scratch / "obj", bytes);
  std::string sha = must(
      "git hash-object -t " + type + " -w --literally " + shell_quote((scratch / "obj").string()),
      repo);
  std::string stored = cat_object(repo, type, sha);
  REQUIRE(stored == bytes);
  return stored;
}

// Runs `ssh-keygen -Y verify` on `payload` with `signature` against `key`: true if good.
bool keygen_verifies(const SshKey& key, const std::string& payload, const std::string& signature) {
  TempDir dir;
  write_file(dir / "payload", payload);
  write_file(dir / "payload.sig", signature);
  write_allowed_signers(dir / "allowed", {{"tester@example.com", &key, ""}});
  RunResult r =
      run("ssh-keygen -Y verify -f allowed -I tester@example.com -n git -s payload.sig < payload",
          dir.path());
  if (r.exit_code == 0)
    CHECK(r.out.find("Good \"git\" signature for tester@example.com") != std::string::npos);
  return r.exit_code == 0;
}

std::vector<std::string> names(const std::vector<Header>& headers) {
  std::vector<std::string> out;
  for (const Header& h : headers) out.push_back(h.name);
  return out;
}

// The gpgsig header of a raw commit with its continuation lines, exactly as stored.
std::string gpgsig_block(const std::string& raw) {
  size_t begin = raw.find("\ngpgsig ");
  REQUIRE(begin != std::string::npos);
  ++begin;
  size_t end = begin;
  do end = raw.find('\n', end) + 1;
  while (raw[end] == ' ');
  return raw.substr(begin, end - begin);
}

// Folds `text` into a header named `name` as git writes it (each line after the first prefixed by a
// space).
std::string fold(const std::string& name, const std::string& text) {
  std::string out = name;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    out += " " + text.substr(pos, nl - pos) + "\n";
    pos = nl + 1;
  }
  return out;
}

std::string reason(Result<ParsedCommit> r) {
  REQUIRE_FALSE(r.ok());
  return r.message();
}

std::string tag_reason(Result<ParsedTag> r) {
  REQUIRE_FALSE(r.ok());
  return r.message();
}

}  // namespace

TEST_CASE("signed_object: an unsigned commit from git") {
  TempDir dir;
  std::string first = init_repo(dir.path(), {{"a.txt", "a\n"}});
  std::string second = commit_files(dir.path(), {{"b.txt", "b\n"}}, "second commit\n\nwith a body");
  std::string raw = cat_object(dir.path(), "commit", second);

  auto c = parse_commit(raw);
  INFO((c ? "" : c.message()));
  REQUIRE(c.ok());
  CHECK(c->tree == must("git rev-parse HEAD^{tree}", dir.path()));
  CHECK(c->parents == std::vector<std::string>{first});
  CHECK(c->author.name == "Tester");
  CHECK(c->author.email == "tester@example.com");
  CHECK(c->author.time == std::stoll(must("git log -1 --format=%at", dir.path())));
  CHECK(c->committer.time == std::stoll(must("git log -1 --format=%ct", dir.path())));
  CHECK(c->committer.raw ==
        must("git log -1 --format='%cn <%ce> %ct' ", dir.path()) + " " + c->committer.tz);
  CHECK(names(c->headers) == std::vector<std::string>{"tree", "parent", "author", "committer"});
  CHECK(c->message == "second commit\n\nwith a body\n");
  CHECK_FALSE(c->signature.has_value());
  CHECK(c->signature_kind == SignatureKind::none);
  CHECK(c->payload == raw);
  CHECK(c->mergetags.empty());

  auto root = parse_commit(cat_object(dir.path(), "commit", first));
  REQUIRE(root.ok());
  CHECK(root->parents.empty());
}

TEST_CASE("signed_object: the payload of an ssh-signed commit is what git and ssh-keygen verify") {
  for (std::string type : {"ed25519", "ecdsa"}) {
    CAPTURE(type);
    const SshKey& key = cached_ssh_key(type);
    TempDir dir;
    init_repo(dir.path(), {{"a.txt", "a\n"}});
    std::string sha = ssh_signed_commit(dir.path(), key, {{"b.txt", "b\n"}}, "signed change");
    std::string raw = cat_object(dir.path(), "commit", sha);

    auto c = parse_commit(raw);
    INFO((c ? "" : c.message()));
    REQUIRE(c.ok());
    REQUIRE(c->signature.has_value());
    CHECK(c->signature_kind == SignatureKind::ssh);
    CHECK(starts_with(*c->signature, "-----BEGIN SSH SIGNATURE-----\n"));
    CHECK(c->signature->ends_with("-----END SSH SIGNATURE-----\n"));
    CHECK(names(c->headers) ==
          std::vector<std::string>{"tree", "parent", "author", "committer", "gpgsig"});
    CHECK(c->message == "signed change\n");
    // The payload is the object with the gpgsig header cut out, nothing else changed.
    CHECK(c->payload.find("gpgsig") == std::string::npos);
    std::string block = gpgsig_block(raw);
    CHECK(block == fold("gpgsig", *c->signature));
    CHECK(c->payload.size() + block.size() == raw.size());

    CHECK(keygen_verifies(key, c->payload, *c->signature));
    CHECK_FALSE(keygen_verifies(key, c->payload + "x", *c->signature));  // the check can fail

    TempDir trust;
    write_allowed_signers(trust / "allowed", {{"tester@example.com", &key, ""}});
    must(git_env() + "git " + ssh_verify_options(trust / "allowed") + "verify-commit " + sha,
         dir.path());

    auto keys = parse_allowed_signers(read_file(trust / "allowed"));
    REQUIRE(keys.ok());
    auto v = verify_sshsig(*c->signature, c->payload, *keys, c->committer.time);
    INFO((v ? "" : v.message()));
    CHECK(v.ok());
  }
}

TEST_CASE("signed_object: a signed merge of a signed tag carries the tag as a mergetag") {
  const SshKey& key = cached_ssh_key("ed25519");
  TempDir dir;
  init_repo(dir.path(), {{"a.txt", "a\n"}});
  must(git_env() + "git checkout -q -b topic", dir.path());
  std::string topic = commit_files(dir.path(), {{"t.txt", "t\n"}}, "topic work");
  std::string tag_sha = ssh_signed_tag(dir.path(), key, "v1", topic, "release one");
  must(git_env() + "git checkout -q master", dir.path());
  commit_files(dir.path(), {{"m.txt", "m\n"}}, "master work");
  must(git_env() + "git " + ssh_sign_options(key) + "merge -q --no-ff -S -m 'merge v1' v1",
       dir.path());
  std::string merge = must("git rev-parse HEAD", dir.path());
  std::string raw = cat_object(dir.path(), "commit", merge);

  auto c = parse_commit(raw);
  INFO((c ? "" : c.message()));
  REQUIRE(c.ok());
  CHECK(c->parents.size() == 2);
  CHECK(c->parents[1] == topic);
  REQUIRE(c->mergetags.size() == 1);
  CHECK(c->mergetags[0] ==
        cat_object(dir.path(), "tag", tag_sha));  // unfolded = the tag object itself
  CHECK(c->payload.find("mergetag object " + topic) !=
        std::string::npos);  // mergetag stays in the payload
  REQUIRE(c->signature.has_value());
  CHECK(keygen_verifies(key, c->payload, *c->signature));

  auto t = parse_tag(c->mergetags[0]);
  REQUIRE(t.ok());
  CHECK(t->tag == "v1");
  REQUIRE(t->signature.has_value());
  CHECK(keygen_verifies(key, t->payload, *t->signature));
}

TEST_CASE("signed_object: tampered commits are refused with a named reason") {
  const SshKey& key = cached_ssh_key("ed25519");
  TempDir dir;
  init_repo(dir.path(), {{"a.txt", "a\n"}});
  std::string sha = ssh_signed_commit(dir.path(), key, {{"b.txt", "b\n"}}, "signed change");
  const std::string raw = cat_object(dir.path(), "commit", sha);
  const std::string block = gpgsig_block(raw);
  const size_t block_at = raw.find(block);
  auto with_block = [&](const std::string& replacement) {
    return raw.substr(0, block_at) + replacement + raw.substr(block_at + block.size());
  };
  auto stored = [&](const std::string& bytes) {
    return store_literally(dir.path(), "commit", bytes);
  };
  REQUIRE(parse_commit(raw).ok());

  SUBCASE("NUL appended (libgit2 would sign-check only the part before it)") {
    std::string m = reason(parse_commit(stored(raw + std::string("\0extra", 6))));
    CHECK(m == "nul: object contains a NUL byte at offset " + std::to_string(raw.size()));
  }
  SUBCASE("two gpgsig headers") {
    CHECK(
        starts_with(reason(parse_commit(stored(with_block(block + block)))), "duplicate-gpgsig: "));
  }
  SUBCASE("gpgsig-sha256 junk header, which git itself ignores in a SHA-1 repository") {
    std::string junk = with_block(
        block +
        "gpgsig-sha256 -----BEGIN PGP SIGNATURE-----\n junk\n -----END PGP SIGNATURE-----\n");
    std::string m = reason(parse_commit(stored(junk)));
    CHECK(m == "gpgsig-sha256: unverifiable signature header");
    // git strips it from the payload and still calls the commit good: the reason we refuse.
    TempDir scratch;
    write_file(scratch / "obj", junk);
    std::string junk_sha =
        must("git hash-object -t commit -w --literally " + shell_quote((scratch / "obj").string()),
             dir.path());
    write_allowed_signers(scratch / "allowed", {{"tester@example.com", &key, ""}});
    CHECK(run(git_env() + "git " + ssh_verify_options(scratch / "allowed") + "verify-commit " +
                  junk_sha,
              dir.path())
              .exit_code == 0);
  }
  SUBCASE("two armor blocks in one signature") {
    auto c = parse_commit(raw);
    REQUIRE(c.ok());
    std::string twice = with_block(fold("gpgsig", *c->signature + *c->signature));
    CHECK(starts_with(reason(parse_commit(stored(twice))), "two-signatures: "));
  }
  SUBCASE("signature armor that is not one known block") {
    CHECK(starts_with(reason(parse_commit(stored(
                          with_block("gpgsig -----BEGIN FOO-----\n x\n -----END FOO-----\n")))),
                      "bad-armor: "));
    CHECK(starts_with(
        reason(parse_commit(stored(with_block("gpgsig -----BEGIN SSH SIGNATURE-----\n AAAA\n")))),
        "bad-armor: no "));
    auto c = parse_commit(raw);
    REQUIRE(c.ok());
    CHECK(starts_with(
        reason(parse_commit(stored(with_block(fold("gpgsig", *c->signature + "trailer\n"))))),
        "bad-armor: text after "));
  }
  SUBCASE("missing tree") {
    std::string no_tree = raw.substr(raw.find('\n') + 1);
    CHECK(reason(parse_commit(stored(no_tree))) == "missing-header: commit has no tree header");
  }
  SUBCASE("headers out of order or repeated") {
    size_t tree_end = raw.find('\n') + 1;
    size_t parent_end = raw.find('\n', tree_end) + 1;
    std::string swapped = raw.substr(tree_end, parent_end - tree_end) + raw.substr(0, tree_end) +
                          raw.substr(parent_end);
    CHECK(reason(parse_commit(stored(swapped))) == "bad-header: tree must be the first header");
    std::string two_trees =
        raw.substr(0, block_at) + raw.substr(0, tree_end) + raw.substr(block_at);
    CHECK(reason(parse_commit(stored(two_trees))) ==
          "bad-header: tree header out of order or repeated");
    std::string no_author = raw;
    size_t a = no_author.find("\nauthor ") + 1;
    no_author.erase(a, no_author.find('\n', a) + 1 - a);
    CHECK(reason(parse_commit(stored(no_author))) == "missing-header: commit has no author header");
    // The signature moved before author (git accepts it): the header that is out of place is named.
    std::string signature_first = with_block("");
    signature_first.insert(signature_first.find("\nauthor ") + 1, block);
    CHECK(reason(parse_commit(stored(signature_first))) ==
          "bad-header: gpgsig header before the author header");
    std::string committer_first = raw;
    size_t c = committer_first.find("\ncommitter ") + 1;
    std::string committer_line = committer_first.substr(c, committer_first.find('\n', c) + 1 - c);
    committer_first.erase(c, committer_line.size());
    committer_first.insert(committer_first.find("\nauthor ") + 1, committer_line);
    CHECK(reason(parse_commit(stored(committer_first))) ==
          "bad-header: committer header before the author header");
  }
  SUBCASE("bad continuation lines") {
    CHECK(starts_with(reason(parse_commit(stored(" stray\n" + raw))), "bad-continuation: line 1 "));
    size_t tree_end = raw.find('\n') + 1;
    std::string folded_tree = raw.substr(0, tree_end) + " more\n" + raw.substr(tree_end);
    CHECK(reason(parse_commit(stored(folded_tree))) ==
          "bad-continuation: the tree header cannot have continuation lines");
  }
  SUBCASE("a gpgsig header after the message separator") {
    std::string unsigned_raw = with_block("");
    std::string moved = unsigned_raw + "\n" + block;
    CHECK(starts_with(reason(parse_commit(stored(moved))), "header-after-message: "));
  }
  SUBCASE("malformed header lines and idents") {
    CHECK(starts_with(reason(parse_commit(stored(raw.substr(0, raw.find('\n'))))),
                      "unterminated-header: "));
    CHECK(starts_with(reason(parse_commit(stored(with_block("Bad-Name x\n" + block)))),
                      "bad-header: line "));
    std::string bad_ident = raw;
    size_t a = bad_ident.find("\nauthor ") + 1;
    bad_ident.replace(a, bad_ident.find('\n', a) - a,
                      "author Tester <tester@example.com> yesterday +0000");
    CHECK(starts_with(reason(parse_commit(stored(bad_ident))), "bad-ident: author "));
  }
}

TEST_CASE("signed_object: commits with other signature kinds are told apart by their armor") {
  const std::string head =
      "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n"
      "author A U Thor <a@example.com> 1700000000 -0130\n"
      "committer C O Mitter <c@example.com> 1700000001 +0100\n";
  auto pgp = parse_commit(
      head +
      fold("gpgsig", "-----BEGIN PGP SIGNATURE-----\n\nwsBc\n-----END PGP SIGNATURE-----\n") +
      "\nmsg\n");
  REQUIRE(pgp.ok());
  CHECK(pgp->signature_kind == SignatureKind::openpgp);
  CHECK(pgp->signature == "-----BEGIN PGP SIGNATURE-----\n\nwsBc\n-----END PGP SIGNATURE-----\n");
  CHECK(pgp->payload == head + "\nmsg\n");
  CHECK(pgp->author.tz_minutes == -90);
  CHECK(pgp->committer.tz_minutes == 60);
  CHECK(pgp->author.name == "A U Thor");
  auto x509 = parse_commit(
      head + fold("gpgsig", "-----BEGIN SIGNED MESSAGE-----\nMII\n-----END SIGNED MESSAGE-----\n") +
      "\n");
  REQUIRE(x509.ok());
  CHECK(x509->signature_kind == SignatureKind::x509);
  CHECK(x509->message.empty());
  // A commit with no message at all is valid as long as the last header line ends.
  auto bare = parse_commit(head);
  REQUIRE(bare.ok());
  CHECK(bare->message.empty());
  CHECK(to_string(SignatureKind::ssh) == "ssh");
  CHECK(signature_kind_of("-----BEGIN PGP MESSAGE-----\n") == SignatureKind::openpgp);
  CHECK(signature_kind_of("hello") == SignatureKind::none);
}

TEST_CASE("signed_object: tags") {
  const SshKey& key = cached_ssh_key("ed25519");
  TempDir dir;
  std::string commit = init_repo(dir.path(), {{"a.txt", "a\n"}});

  SUBCASE("an unsigned annotated tag") {
    must(git_env() + "git tag -a -m 'plain tag' v0", dir.path());
    std::string raw = cat_object(dir.path(), "tag", must("git rev-parse v0", dir.path()));
    auto t = parse_tag(raw);
    REQUIRE(t.ok());
    CHECK(t->object == commit);
    CHECK(t->type == "commit");
    CHECK(t->tag == "v0");
    REQUIRE(t->tagger.has_value());
    CHECK(t->tagger->email == "tester@example.com");
    CHECK(t->message == "plain tag\n");
    CHECK_FALSE(t->signature.has_value());
    CHECK(t->payload == raw);
  }

  SUBCASE("an ssh-signed tag: payload is everything before the armor") {
    std::string tag_sha = ssh_signed_tag(dir.path(), key, "v1", commit, "release one");
    std::string raw = cat_object(dir.path(), "tag", tag_sha);
    auto t = parse_tag(raw);
    INFO((t ? "" : t.message()));
    REQUIRE(t.ok());
    CHECK(t->object == commit);
    CHECK(t->tag == "v1");
    CHECK(t->message == "release one\n");
    REQUIRE(t->signature.has_value());
    CHECK(t->signature_kind == SignatureKind::ssh);
    CHECK(t->payload + *t->signature == raw);
    CHECK(t->payload.ends_with("\n\nrelease one\n"));
    CHECK(names(t->headers) == std::vector<std::string>{"object", "type", "tag", "tagger"});
    CHECK(keygen_verifies(key, t->payload, *t->signature));

    TempDir trust;
    write_allowed_signers(trust / "allowed", {{"tester@example.com", &key, ""}});
    must(git_env() + "git " + ssh_verify_options(trust / "allowed") + "verify-tag v1", dir.path());
    auto keys = parse_allowed_signers(read_file(trust / "allowed"));
    REQUIRE(keys.ok());
    CHECK(verify_sshsig(*t->signature, t->payload, *keys, t->tagger->time).ok());

    auto stored = [&](const std::string& bytes) {
      return store_literally(dir.path(), "tag", bytes);
    };
    // Refusals.
    CHECK(starts_with(tag_reason(parse_tag(stored(raw + std::string("\0", 1)))), "nul: "));
    CHECK(starts_with(tag_reason(parse_tag(stored(raw + *t->signature))), "two-signatures: "));
    size_t tag_line = raw.find("\ntag v1\n") + 1;
    std::string no_tag = raw.substr(0, tag_line) + raw.substr(tag_line + 7);
    CHECK(tag_reason(parse_tag(stored(no_tag))) == "missing-header: tag has no tag header");
    size_t tagger_end = raw.find('\n', raw.find("\ntagger ") + 1) + 1;
    std::string sha256 = raw.substr(0, tagger_end) +
                         "gpgsig-sha256 -----BEGIN SSH SIGNATURE-----\n x\n" +
                         raw.substr(tagger_end);
    CHECK(tag_reason(parse_tag(stored(sha256))) == "gpgsig-sha256: unverifiable signature header");
    std::string trailing = raw + "more text\n";
    CHECK(starts_with(tag_reason(parse_tag(stored(trailing))), "bad-armor: text after "));
  }
}

TEST_CASE(
    "signed_object: every truncation and byte flip of a signed commit parses or fails cleanly") {
  const SshKey& key = cached_ssh_key("ed25519");
  TempDir dir;
  init_repo(dir.path(), {{"a.txt", "a\n"}});
  configure_ssh_signing(dir.path(), key);
  must(git_env() + "git commit -q -S --allow-empty -m 'signed by config'", dir.path());
  const std::string raw = cat_object(dir.path(), "commit", must("git rev-parse HEAD", dir.path()));
  auto original = parse_commit(raw);
  REQUIRE(original.ok());
  REQUIRE(original->signature.has_value());
  auto consistent = [](const std::string& bytes, const Result<ParsedCommit>& c) {
    if (!c.ok()) return;
    // Whatever parses keeps the invariant: payload + folded signature header = the object.
    size_t sig_size = c->signature ? fold("gpgsig", *c->signature).size() : 0;
    CHECK(c->payload.size() + sig_size == bytes.size());
    CHECK(c->payload.find('\0') == std::string::npos);
  };
  for (size_t n = 0; n < raw.size(); ++n) {
    std::string cut = raw.substr(0, n);
    consistent(cut, parse_commit(cut));
    std::string flipped = raw;
    flipped[n] = static_cast<char>(flipped[n] ^ 0x20);
    consistent(flipped, parse_commit(flipped));
    (void)parse_tag(flipped);
  }
}

#include "bot/trust/ssh_signer.hpp"

#include <doctest/doctest.h>

#include <sstream>
#include <vector>

#include "base/crypto.hpp"
#include "bot/trust/signed_object.hpp"
#include "bot/trust/sshsig.hpp"
#include "tests/ssh_keys.hpp"
#include "tests/support.hpp"

using namespace dmz;
using namespace dmz::test;

namespace {

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

std::unique_ptr<SshSigner> load(const SshKey& key) {
  auto signer = SshSigner::from_file(key.private_path);
  INFO((signer ? "" : signer.message()));
  REQUIRE(signer.ok());
  return std::move(*signer);
}

// ssh-keygen -Y verify of `signature` over `payload`, trusting only `key`.
RunResult keygen_verify(const SshKey& key, const std::string& payload,
                        const std::string& signature) {
  TempDir dir;
  write_file(dir / "payload", payload);
  write_file(dir / "payload.sig", signature);
  write_allowed_signers(dir / "allowed", {{"bot@example.com", &key, ""}});
  return run("ssh-keygen -Y verify -f allowed -I bot@example.com -n git -s payload.sig < payload",
             dir.path());
}

std::string fold(const std::string& name, const std::string& text) {
  std::string out = name;
  for (size_t pos = 0; pos < text.size();) {
    size_t nl = text.find('\n', pos);
    out += " " + text.substr(pos, nl - pos) + "\n";
    pos = nl + 1;
  }
  return out;
}

}  // namespace

TEST_CASE("ssh_signer: signatures verify with ssh-keygen and in process, for each key type") {
  const std::string payload = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\npayload to sign\n";
  for (std::string type : {"ed25519", "ecdsa", "rsa"}) {
    CAPTURE(type);
    const SshKey& key = cached_ssh_key(type);
    auto signer = load(key);
    CHECK(signer->public_key_line() == key.public_line);
    CHECK(signer->fingerprint() == key.fingerprint);

    auto sig = signer->sign(payload);
    REQUIRE(sig.ok());
    // ssh-keygen's layout: BEGIN line, base64 lines of at most 70 columns, END line.
    std::istringstream lines(*sig);
    std::vector<std::string> ls;
    for (std::string l; std::getline(lines, l);) ls.push_back(l);
    REQUIRE(ls.size() >= 3);
    CHECK(ls.front() == "-----BEGIN SSH SIGNATURE-----");
    CHECK(ls.back() == "-----END SSH SIGNATURE-----");
    for (size_t i = 1; i + 2 < ls.size(); ++i) CHECK(ls[i].size() == 70);
    CHECK(sig->ends_with("-----END SSH SIGNATURE-----\n"));

    RunResult good = keygen_verify(key, payload, *sig);
    INFO(good.out);
    CHECK(good.exit_code == 0);
    CHECK(good.out.find("Good \"git\" signature for bot@example.com") != std::string::npos);
    CHECK(keygen_verify(key, payload + "tampered", *sig).exit_code != 0);

    auto allowed = parse_ssh_public_key(signer->public_key_line());
    REQUIRE(allowed.ok());
    std::vector<SshPublicKey> keys{*allowed};
    auto v = verify_sshsig(*sig, payload, keys, 1700000000);
    INFO((v ? "" : v.message()));
    REQUIRE(v.ok());
    CHECK(v->hash_algorithm == "sha512");
    CHECK(v->fingerprint == key.fingerprint);
    auto parsed = parse_sshsig_blob(*dearmor_sshsig(*sig));
    REQUIRE(parsed.ok());
    ssh::Reader r(parsed->signature);
    std::string_view sig_type;
    REQUIRE(r.string(sig_type));
    CHECK(sig_type == (type == "rsa" ? "rsa-sha2-512" : allowed->type));
  }
}

TEST_CASE("ssh_signer: ed25519 signatures are byte-identical to ssh-keygen's") {
  // Ed25519 is deterministic, so the whole armored SSHSIG must match.
  const SshKey& key = cached_ssh_key("ed25519");
  TempDir dir;
  const std::string payload = "deterministic\n";
  write_file(dir / "msg", payload);
  must("ssh-keygen -q -Y sign -n git -f " + shell_quote(key.private_path.string()) + " msg",
       dir.path());
  auto sig = load(key)->sign(payload);
  REQUIRE(sig.ok());
  CHECK(*sig == read_file(dir / "msg.sig"));
}

TEST_CASE("ssh_signer: a commit signed in process passes git verify-commit") {
  for (std::string type : {"ed25519", "ecdsa"}) {
    CAPTURE(type);
    const SshKey& key = cached_ssh_key(type);
    auto signer = load(key);
    TempDir dir;
    std::string parent = init_repo(dir.path(), {{"a.txt", "a\n"}});
    std::string tree = must("git rev-parse HEAD^{tree}", dir.path());
    const std::string headers = "tree " + tree + "\nparent " + parent +
                                "\nauthor dmzbot <bot@example.com> 1700000000 +0000"
                                "\ncommitter dmzbot <bot@example.com> 1700000000 +0000\n";
    const std::string body = "\nMerge PR #1\n\nPR: #1\n";
    auto sig = signer->sign(headers + body);
    REQUIRE(sig.ok());
    const std::string raw = headers + fold("gpgsig", *sig) + body;  // gpgsig is the last header

    TempDir scratch;
    write_file(scratch / "commit", raw);
    std::string sha = must(
        "git hash-object -t commit -w " + shell_quote((scratch / "commit").string()), dir.path());
    write_allowed_signers(scratch / "allowed", {{"bot@example.com", &key, ""}});
    RunResult verify =
        run(git_env() + "git " + ssh_verify_options(scratch / "allowed") + "verify-commit " + sha,
            dir.path());
    INFO(verify.out);
    CHECK(verify.exit_code == 0);
    CHECK(verify.out.find("Good \"git\" signature for bot@example.com") != std::string::npos);
    CHECK(must(git_env() + "git " + ssh_verify_options(scratch / "allowed") +
                   "log -1 --format=%G? " + sha,
               dir.path()) == "G");

    // Our own parser recovers exactly the payload we signed.
    auto c = parse_commit(raw);
    REQUIRE(c.ok());
    CHECK(c->payload == headers + body);
    CHECK(c->signature == *sig);

    // And a key git does not trust makes verify-commit fail: the check above can fail.
    const SshKey& other = cached_ssh_key("ed25519", 1);
    write_allowed_signers(scratch / "other", {{"bot@example.com", &other, ""}});
    CHECK(run(git_env() + "git " + ssh_verify_options(scratch / "other") + "verify-commit " + sha,
              dir.path())
              .exit_code != 0);
  }
}

TEST_CASE("ssh_signer: unusable key files are refused with a reason") {
  TempDir dir;
  auto reason = [](Result<std::unique_ptr<SshSigner>> r) {
    REQUIRE_FALSE(r.ok());
    return r.message();
  };
  CHECK(reason(SshSigner::from_file(dir / "missing")) ==
        "no-file: '" + (dir / "missing").string() + "' does not exist");
  // Never read without bound (a FIFO is refused the same way: base/file_test.cpp).
  CHECK(reason(SshSigner::from_file("/dev/zero")) ==
        "no-file: '/dev/zero' is not a regular file (a character device)");
  write_file(dir / "huge", std::string(64 * 1024 + 1, 'k'));
  CHECK(reason(SshSigner::from_file(dir / "huge")) ==
        "no-file: '" + (dir / "huge").string() + "' is larger than 65536 bytes");

  must("ssh-keygen -q -t ed25519 -N secret-passphrase -f " +
       shell_quote((dir / "locked").string()));
  CHECK(starts_with(reason(SshSigner::from_file(dir / "locked")), "encrypted-key: "));

  write_file(dir / "junk", "not a key\n");
  CHECK(starts_with(reason(SshSigner::from_file(dir / "junk")), "bad-key: "));

  // A public key file is not a private key.
  CHECK(starts_with(
      reason(SshSigner::from_file(cached_ssh_key("ed25519").private_path.string() + ".pub")),
      "bad-key: "));

  // A PEM (non-OpenSSH) private key.
  must("ssh-keygen -q -t ecdsa -b 256 -m PEM -N '' -f " + shell_quote((dir / "pem").string()));
  CHECK(starts_with(reason(SshSigner::from_file(dir / "pem")),
                    "bad-key: not an OpenSSH private key"));

  // Flip one byte of the private half of an ed25519 key: the keys no longer match.
  std::string text = read_file(cached_ssh_key("ed25519").private_path);
  size_t begin = text.find('\n') + 1;
  size_t end = text.find("-----END");
  auto blob = base64_decode(text.substr(begin, end - begin));
  REQUIRE(blob.has_value());
  // Find the private section (PROTOCOL.key): magic, 3 strings, u32 count, public key, private
  // section.
  ssh::Reader r(std::string_view(*blob).substr(15));
  std::string_view field, priv;
  uint32_t count = 0;
  REQUIRE((r.string(field) && r.string(field) && r.string(field) && r.u32(count) &&
           r.string(field) && r.string(priv)));
  const size_t priv_at = static_cast<size_t>(priv.data() - blob->data());
  // checkints (8), string "ssh-ed25519" (4+11), string pk (4+32), length of sk (4), then the seed.
  std::string corrupt = *blob;
  corrupt[priv_at + 8 + 15 + 36 + 4] ^= 1;
  write_file(dir / "corrupt", "-----BEGIN OPENSSH PRIVATE KEY-----\n" + base64_encode(corrupt) +
                                  "\n-----END OPENSSH PRIVATE KEY-----\n");
  CHECK(starts_with(reason(SshSigner::from_file(dir / "corrupt")),
                    "bad-key: the ssh-ed25519 private and public keys do not match"));

  std::string checkints = *blob;
  checkints[priv_at] ^= 1;
  write_file(dir / "checkints", "-----BEGIN OPENSSH PRIVATE KEY-----\n" + base64_encode(checkints) +
                                    "\n-----END OPENSSH PRIVATE KEY-----\n");
  CHECK(starts_with(reason(SshSigner::from_file(dir / "checkints")),
                    "bad-key: check integers differ"));
}

TEST_CASE("ssh_signer: a tag signed in process passes git verify-tag") {
  const SshKey& key = cached_ssh_key("ed25519");
  auto signer = load(key);
  TempDir dir;
  std::string commit = init_repo(dir.path(), {{"a.txt", "a\n"}});
  const std::string payload = "object " + commit +
                              "\ntype commit\ntag v1.0\n"
                              "tagger dmzbot <bot@example.com> 1700000000 +0000\n\nrelease 1.0\n";
  auto sig = signer->sign(payload);
  REQUIRE(sig.ok());
  TempDir scratch;
  write_file(scratch / "tag", payload + *sig);  // a tag's signature ends its message
  std::string sha =
      must("git hash-object -t tag -w " + shell_quote((scratch / "tag").string()), dir.path());
  must("git update-ref refs/tags/v1.0 " + sha, dir.path());
  write_allowed_signers(scratch / "allowed", {{"bot@example.com", &key, ""}});
  RunResult verify = run(
      git_env() + "git " + ssh_verify_options(scratch / "allowed") + "verify-tag v1.0", dir.path());
  INFO(verify.out);
  CHECK(verify.exit_code == 0);

  auto t = parse_tag(payload + *sig);
  REQUIRE(t.ok());
  CHECK(t->payload == payload);
  CHECK(t->signature == *sig);
}

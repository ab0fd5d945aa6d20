#include "bot/trust/openpgp.hpp"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <thread>

#include "tests/gpg_keys.hpp"
#include "tests/support.hpp"

namespace dmz {
namespace {

using test::test_keys;

template <class T>
std::string why(const Result<T>& r) {
  return r.ok() ? std::string() : r.message();
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

OpenPgpVerifier verifier_with(const std::vector<std::string>& fprs) {
  auto v = OpenPgpVerifier::create();
  REQUIRE_MESSAGE(v.ok(), why(v));
  for (const auto& fpr : fprs) {
    auto imported = v->import_keys(test_keys().home.export_public(fpr));
    REQUIRE_MESSAGE(imported.ok(), why(imported));
    REQUIRE(*imported == std::vector<std::string>{fpr});
  }
  return std::move(*v);
}

// Rejection reason of a verification that must fail.
std::string rejection(OpenPgpVerifier& v, const std::string& payload, const std::string& sig) {
  auto r = v.verify(payload, sig);
  REQUIRE_FALSE(r.ok());
  return r.message();
}

// Splits a raw commit object into the payload git signs (the object without its gpgsig header)
// and the armored signature (the header's value, continuation lines unindented).
std::pair<std::string, std::string> split_signed_commit(const std::string& raw) {
  std::string payload, signature;
  size_t pos = 0;
  bool in_headers = true, in_sig = false;
  while (pos < raw.size()) {
    size_t end = raw.find('\n', pos);
    end = end == std::string::npos ? raw.size() : end + 1;
    std::string line = raw.substr(pos, end - pos);
    pos = end;
    if (in_headers && in_sig && line[0] == ' ') {
      signature += line.substr(1);
      continue;
    }
    in_sig = false;
    if (in_headers && line.rfind("gpgsig ", 0) == 0) {
      signature += line.substr(7);
      in_sig = true;
      continue;
    }
    if (line == "\n") in_headers = false;
    payload += line;
  }
  return {payload, signature};
}

TEST_CASE("a verifier lives in its own 0700 home, removed when it goes away") {
  std::string home;
  {
    auto v = OpenPgpVerifier::create();
    REQUIRE_MESSAGE(v.ok(), why(v));
    home = v->home();
    struct stat st {};
    REQUIRE(stat(home.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0700);
    auto fprs = v->fingerprints();
    REQUIRE(fprs.ok());
    CHECK(fprs->empty());
  }
  CHECK_FALSE(std::filesystem::exists(home));
}

TEST_CASE("import_keys returns primary fingerprints and refuses what is not a public key") {
  auto& keys = test_keys();
  auto v = OpenPgpVerifier::create();
  REQUIRE(v.ok());
  auto both = keys.home.export_public(keys.alice) + keys.home.export_public(keys.past);
  auto imported = v->import_keys(both);
  REQUIRE_MESSAGE(imported.ok(), why(imported));
  // alice's signing subkey is not a separate key: only the two primaries come back.
  CHECK(*imported == std::vector<std::string>{keys.alice, keys.past});
  auto listed = v->fingerprints();
  REQUIRE(listed.ok());
  std::vector<std::string> sorted{keys.alice, keys.past};
  std::sort(sorted.begin(), sorted.end());
  CHECK(*listed == sorted);

  auto again = v->import_keys(keys.home.export_public(keys.alice));
  REQUIRE(again.ok());
  CHECK(*again == std::vector<std::string>{keys.alice});

  CHECK_FALSE(v->import_keys("not a key").ok());
  CHECK_FALSE(
      v->import_keys(
           "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----\n")
          .ok());
  std::string secret = keys.home.gpg("--armor --export-secret-keys " + keys.mallory);
  auto refused = v->import_keys(secret);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.message() == "error: refusing to import a secret key");
  auto after = v->fingerprints();
  REQUIRE(after.ok());
  CHECK(after->size() == 2);
}

TEST_CASE("a good signature by a primary key resolves to that key") {
  auto& keys = test_keys();
  auto v = verifier_with({keys.alice});
  std::time_t before = std::time(nullptr);
  std::string sig = keys.home.sign(keys.alice + "!", keys.payload);
  auto r = v.verify(keys.payload, sig);
  REQUIRE_MESSAGE(r.ok(), why(r));
  CHECK(r->primary_fingerprint == keys.alice);
  CHECK(r->signing_subkey_fingerprint == keys.alice);
  CHECK(r->signature_time >= before - 1);
  CHECK(r->signature_time <= std::time(nullptr) + 1);
}

TEST_CASE("a signature by a subkey resolves to the primary key") {
  auto& keys = test_keys();
  auto v = verifier_with({keys.alice});
  auto r = v.verify(keys.payload, keys.home.sign(keys.alice_subkey + "!", keys.payload));
  REQUIRE_MESSAGE(r.ok(), why(r));
  CHECK(r->primary_fingerprint == keys.alice);
  CHECK(r->signing_subkey_fingerprint == keys.alice_subkey);
  CHECK(keys.alice != keys.alice_subkey);
}

TEST_CASE("a signature by a key not given to the verifier is no-key") {
  auto& keys = test_keys();
  auto v = verifier_with({keys.alice});
  std::string why = rejection(v, keys.payload, keys.home.sign(keys.mallory, keys.payload));
  CHECK(starts_with(why, "no-key: signed by key "));
  CHECK(why.find(keys.mallory.substr(24)) != std::string::npos);  // at least the key id
  CHECK(why.find("not in the policy") != std::string::npos);
}

TEST_CASE("a tampered payload is bad-signature") {
  auto& keys = test_keys();
  auto v = verifier_with({keys.alice});
  std::string sig = keys.home.sign(keys.alice, keys.payload);
  REQUIRE(v.verify(keys.payload, sig).ok());
  std::string tampered = keys.payload;
  tampered[tampered.size() - 2] ^= 1;
  CHECK(starts_with(rejection(v, tampered, sig), "bad-signature"));
  CHECK(starts_with(rejection(v, keys.payload + "\n", sig), "bad-signature"));
  CHECK(starts_with(rejection(v, "", sig), "bad-signature"));
}

TEST_CASE("malformed signatures are bad-signature") {
  auto& keys = test_keys();
  auto v = verifier_with({keys.alice});
  CHECK(starts_with(rejection(v, keys.payload, ""), "bad-signature"));
  CHECK(starts_with(rejection(v, keys.payload, "garbage\n"), "bad-signature"));
  CHECK(
      starts_with(rejection(v, keys.payload,
                            "-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n"),
                  "bad-signature"));
  // An inline-signed message carries its own text: it must never vouch for the payload, not
  // even when its armor header is relabelled as a detached signature.
  auto in = keys.home.path() / "inline-payload";
  test::write_file(in, "some other text\n");
  std::string message = keys.home.gpg("--armor --local-user " + keys.alice + " --output - --sign " +
                                      test::shell_quote(in.string()));
  CHECK(starts_with(rejection(v, keys.payload, message), "bad-signature"));
  std::string relabelled = message;
  for (auto [from, to] :
       {std::pair<std::string, std::string>{"BEGIN PGP MESSAGE", "BEGIN PGP SIGNATURE"},
        {"END PGP MESSAGE", "END PGP SIGNATURE"}}) {
    relabelled.replace(relabelled.find(from), from.size(), to);
  }
  CHECK(starts_with(rejection(v, keys.payload, relabelled), "bad-signature"));
  CHECK(starts_with(rejection(v, "some other text\n", relabelled), "bad-signature"));
}

TEST_CASE("a text-mode signature is refused: it would also vouch for other line endings") {
  auto& keys = test_keys();
  auto v = verifier_with({keys.alice});
  std::string text = keys.home.sign(keys.alice, keys.payload, "--textmode");
  CHECK(rejection(v, keys.payload, text) ==
        "bad-signature: signature type 0x01 is not a binary-document signature");
  // What text mode would have let through: the same payload with CRLF line endings.
  std::string crlf;
  for (char c : keys.payload) crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
  CHECK(starts_with(rejection(v, crlf, text), "bad-signature"));
}

// The primary fingerprint of the key with `uid` in `home`.
std::string fingerprint_of(const test::GpgHome& home, const std::string& uid) {
  std::string listing = home.gpg("--with-colons --list-keys " + test::shell_quote(uid));
  size_t fpr = listing.find("\nfpr:");
  REQUIRE(fpr != std::string::npos);
  size_t end = listing.find('\n', fpr + 1);
  std::string line = listing.substr(fpr + 1, end - fpr - 2);  // without the final ':'
  return line.substr(line.rfind(':') + 1);
}

TEST_CASE("an RSA key shorter than 2048 bits is weak-key, as for SSH keys") {
  test::GpgHome home;
  home.gpg("--quick-gen-key 'Weak <weak@example.com>' rsa1024 sign 1y");
  home.gpg("--quick-gen-key 'Strong <strong@example.com>' rsa2048 sign 1y");
  const std::string weak = fingerprint_of(home, "Weak <weak@example.com>");
  const std::string strong = fingerprint_of(home, "Strong <strong@example.com>");
  auto v = OpenPgpVerifier::create();
  REQUIRE_MESSAGE(v.ok(), why(v));
  for (const auto& fpr : {weak, strong}) REQUIRE(v->import_keys(home.export_public(fpr)).ok());
  const std::string payload = test_keys().payload;
  // GnuPG itself calls the weak signature good.
  std::string sig = home.sign(weak, payload);
  test::write_file(home.path() / "payload", payload);
  test::write_file(home.path() / "payload.asc", sig);
  CHECK(home.try_gpg("--verify " + test::shell_quote((home.path() / "payload.asc").string()) + " " +
                     test::shell_quote((home.path() / "payload").string()))
            .exit_code == 0);
  CHECK(rejection(*v, payload, sig) ==
        "weak-key: " + weak + " is a 1024-bit RSA key (at least 2048 bits are required)");
  auto good = v->verify(payload, home.sign(strong, payload));
  REQUIRE_MESSAGE(good.ok(), why(good));
  CHECK(good->primary_fingerprint == strong);
}

TEST_CASE("a corrupted armor is bad-signature") {
  auto& keys = test_keys();
  auto v = verifier_with({keys.alice});
  std::string sig = keys.home.sign(keys.alice, keys.payload);
  std::string broken = sig;
  broken[broken.find("\n\n") + 5] = '*';
  CHECK(rejection(v, keys.payload, broken) == "bad-signature: malformed armor");
  std::string truncated = sig.substr(0, sig.find("\n\n") + 12) + "\n-----END PGP SIGNATURE-----\n";
  CHECK(starts_with(rejection(v, keys.payload, truncated), "bad-signature"));
}

TEST_CASE("a key that has expired is expired-key, even for a signature made before") {
  auto& keys = test_keys();
  auto v = verifier_with({keys.expired});
  CHECK(starts_with(rejection(v, keys.payload, keys.expired_key_signature), "expired-key"));
}

TEST_CASE("a revoked key is revoked-key, even for a signature made before the revocation") {
  auto& keys = test_keys();
  auto v = verifier_with({keys.revoked});
  CHECK(starts_with(rejection(v, keys.payload, keys.revoked_signature), "revoked-key"));
}

TEST_CASE("an expired or revoked subkey is refused while its primary key still signs") {
  auto& keys = test_keys();
  auto past = verifier_with({keys.past});
  CHECK(starts_with(rejection(past, keys.payload, keys.expired_subkey_signature), "expired-key"));
  auto by_past = past.verify(keys.payload, keys.home.sign(keys.past, keys.payload));
  REQUIRE_MESSAGE(by_past.ok(), why(by_past));
  CHECK(by_past->signing_subkey_fingerprint == keys.past);

  auto rotated = verifier_with({keys.rotated});
  CHECK(
      starts_with(rejection(rotated, keys.payload, keys.revoked_subkey_signature), "revoked-key"));
  auto by_rotated = rotated.verify(keys.payload, keys.home.sign(keys.rotated, keys.payload));
  REQUIRE_MESSAGE(by_rotated.ok(), why(by_rotated));
  CHECK(by_rotated->primary_fingerprint == keys.rotated);
  CHECK(by_rotated->signing_subkey_fingerprint == keys.rotated);
}

TEST_CASE("an expired signature is expired-signature") {
  auto& keys = test_keys();
  auto v = verifier_with({keys.past});
  CHECK(starts_with(rejection(v, keys.payload, keys.expired_signature), "expired-signature"));
  // The same key still makes good signatures today.
  auto r = v.verify(keys.payload, keys.home.sign(keys.past, keys.payload));
  REQUIRE_MESSAGE(r.ok(), why(r));
  CHECK(r->primary_fingerprint == keys.past);
}

TEST_CASE("two signatures are multiple-signatures") {
  auto& keys = test_keys();
  auto v = verifier_with({keys.alice, keys.past});
  SUBCASE("in one armor block") {
    std::string both = keys.home.sign(keys.alice + "!", keys.payload, "--local-user " + keys.past);
    REQUIRE(both.find("BEGIN PGP") == both.rfind("BEGIN PGP"));  // one block
    CHECK(rejection(v, keys.payload, both) == "multiple-signatures: 2 signature packets");
  }
  SUBCASE("two armor blocks concatenated") {
    std::string a = keys.home.sign(keys.alice, keys.payload);
    std::string b = keys.home.sign(keys.past, keys.payload);
    CHECK(starts_with(rejection(v, keys.payload, a + b), "multiple-signatures"));
  }
}

TEST_CASE("a signature over a weak digest is weak-digest") {
  auto& keys = test_keys();
  auto v = verifier_with({keys.alice});
  // GnuPG 2.2 still makes SHA-1 signatures with an ed25519 key when asked to.
  std::string sha1 = keys.home.sign(keys.alice, keys.payload, "--digest-algo SHA1");
  CHECK(rejection(v, keys.payload, sha1) == "weak-digest: SHA1");
  // RIPEMD-160 is as weak; MD5 GnuPG refuses to make at all with an EdDSA key.
  std::string ripemd = keys.home.sign(keys.alice, keys.payload, "--digest-algo RIPEMD160");
  CHECK(rejection(v, keys.payload, ripemd) == "weak-digest: RIPEMD160");
  std::string sha512 = keys.home.sign(keys.alice, keys.payload, "--digest-algo SHA512");
  CHECK(v.verify(keys.payload, sha512).ok());
}

TEST_CASE("a commit signed by git verifies, and git agrees") {
  auto& keys = test_keys();
  test::TempDir dir;
  auto repo = dir / "repo";
  test::init_repo(repo, {{"README", "hello\n"}});
  test::write_file(repo / "file", "signed change\n");
  std::string git = keys.home.env() + test::git_env() +
                    "git -c gpg.program=gpg -c user.signingkey=" + keys.alice + " ";
  test::must(git + "add file && " + git + "commit -q -S -m 'a signed commit'", repo);
  test::must(git + "verify-commit HEAD", repo);
  test::must("git cat-file commit HEAD > ../raw", repo);
  auto [payload, signature] = split_signed_commit(test::read_file(dir / "raw"));
  REQUIRE(starts_with(signature, "-----BEGIN PGP SIGNATURE-----"));
  CHECK(payload.find("gpgsig") == std::string::npos);
  CHECK(payload.find("\n\na signed commit\n") != std::string::npos);

  auto v = verifier_with({keys.alice});
  auto r = v.verify(payload, signature);
  REQUIRE_MESSAGE(r.ok(), why(r));
  CHECK(r->primary_fingerprint == keys.alice);
  // gpg signs with the newest signing subkey when given the primary's fingerprint.
  CHECK(r->signing_subkey_fingerprint == keys.alice_subkey);

  std::string forged = payload;
  forged.replace(forged.find("a signed commit"), 15, "a forged commit");
  CHECK(starts_with(rejection(v, forged, signature), "bad-signature"));
  // An unsigned commit from the same repository has nothing to verify.
  auto other = verifier_with({keys.mallory});
  CHECK(starts_with(rejection(other, payload, signature), "no-key"));
}

TEST_CASE("verifiers on different threads work independently") {
  auto& keys = test_keys();
  std::string good = keys.home.sign(keys.alice, keys.payload);
  std::string alice_key = keys.home.export_public(keys.alice);
  std::string past_key = keys.home.export_public(keys.past);
  std::string past_sig = keys.home.sign(keys.past, keys.payload);
  // Each thread owns its verifier; results are checked on the test thread.
  std::vector<std::string> outcomes(4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < outcomes.size(); ++t) {
    threads.emplace_back([&, t] {
      auto v = OpenPgpVerifier::create();
      if (!v) return void(outcomes[t] = v.message());
      auto imported = v->import_keys(t % 2 ? past_key : alice_key);
      if (!imported) return void(outcomes[t] = imported.message());
      for (int i = 0; i < 3; ++i) {
        auto r = v->verify(keys.payload, t % 2 ? past_sig : good);
        outcomes[t] += r ? r->primary_fingerprint.substr(0, 8) + " " : r.message() + " ";
      }
    });
  }
  for (auto& th : threads) th.join();
  for (size_t t = 0; t < outcomes.size(); ++t) {
    std::string fpr = (t % 2 ? keys.past : keys.alice).substr(0, 8) + " ";
    CHECK(outcomes[t] == fpr + fpr + fpr);
  }
}

}  // namespace
}  // namespace dmz

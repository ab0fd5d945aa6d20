#include "bot/trust/gpg_signer.hpp"

#include <doctest/doctest.h>
#include <stdlib.h>

#include <cstdlib>

#include "bot/git/mirror.hpp"
#include "bot/trust/openpgp.hpp"
#include "tests/gpg_keys.hpp"
#include "tests/support.hpp"

namespace dmz {
namespace {

using test::must;
using test::shell_quote;
using test::test_keys;

template <class T>
std::string why(const Result<T>& r) {
  return r.ok() ? std::string() : r.message();
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

std::unique_ptr<GpgSigner> alice_signer() {
  auto& keys = test_keys();
  auto signer = GpgSigner::create(keys.home.path().string(), keys.alice);
  REQUIRE_MESSAGE(signer.ok(), why(signer));
  return std::move(*signer);
}

OpenPgpVerifier verifier_of(const std::string& fpr) {
  auto v = OpenPgpVerifier::create();
  REQUIRE_MESSAGE(v.ok(), why(v));
  auto imported = v->import_keys(test_keys().home.export_public(fpr));
  REQUIRE_MESSAGE(imported.ok(), why(imported));
  return std::move(*v);
}

// A commit object with `signature` as its gpgsig header: the last header, each continuation
// line prefixed by one space, as git writes it.
std::string with_gpgsig(const std::string& payload, const std::string& signature) {
  size_t body = payload.find("\n\n");
  REQUIRE(body != std::string::npos);
  std::string header = "gpgsig ";
  for (size_t i = 0; i + 1 < signature.size(); ++i) {
    header += signature[i];
    if (signature[i] == '\n') header += ' ';
  }
  return payload.substr(0, body + 1) + header + "\n" + payload.substr(body + 1);
}

TEST_CASE("GpgSigner signs so that OpenPgpVerifier and gpg --verify accept it") {
  auto& keys = test_keys();
  auto signer = alice_signer();
  CHECK(signer->fingerprint() == keys.alice);
  std::string payload = "tree 1234\n\nmerge of PR #7\n";
  auto sig = signer->sign(payload);
  REQUIRE_MESSAGE(sig.ok(), why(sig));
  CHECK(sig->rfind("-----BEGIN PGP SIGNATURE-----\n", 0) == 0);
  CHECK(sig->back() == '\n');
  CHECK(contains(*sig, "-----END PGP SIGNATURE-----\n"));

  auto v = verifier_of(keys.alice);
  auto verified = v.verify(payload, *sig);
  REQUIRE_MESSAGE(verified.ok(), why(verified));
  CHECK(verified->primary_fingerprint == keys.alice);
  CHECK(verified->signing_subkey_fingerprint == keys.alice_subkey);
  CHECK_FALSE(v.verify(payload + "x", *sig).ok());

  test::TempDir dir;
  test::write_file(dir / "payload", payload);
  test::write_file(dir / "payload.asc", *sig);
  std::string out = must(keys.home.env() + "gpg --batch --status-fd 1 --verify " +
                         shell_quote((dir / "payload.asc").string()) + " " +
                         shell_quote((dir / "payload").string()));
  CHECK(contains(out, "[GNUPG:] VALIDSIG " + keys.alice_subkey));
  CHECK(contains(out, keys.alice + "\n"));  // VALIDSIG ends with the primary fingerprint

  // Each call makes a fresh signature; the signer can be used again.
  auto second = signer->sign("another payload\n");
  REQUIRE(second.ok());
  CHECK(v.verify("another payload\n", *second).ok());
}

TEST_CASE("GpgSigner accepts a lowercase fingerprint or a subkey's, and names the primary") {
  auto& keys = test_keys();
  std::string lower = keys.alice;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto by_lower = GpgSigner::create(keys.home.path().string(), lower);
  REQUIRE_MESSAGE(by_lower.ok(), why(by_lower));
  CHECK((*by_lower)->fingerprint() == keys.alice);
  auto by_subkey = GpgSigner::create(keys.home.path().string(), keys.alice_subkey);
  REQUIRE_MESSAGE(by_subkey.ok(), why(by_subkey));
  CHECK((*by_subkey)->fingerprint() == keys.alice);
}

TEST_CASE("GpgSigner fails clearly without a usable secret key") {
  auto& keys = test_keys();
  std::string home = keys.home.path().string();

  auto short_id = GpgSigner::create(home, keys.alice.substr(24));
  REQUIRE_FALSE(short_id.ok());
  CHECK(contains(short_id.message(), "40-hex-digit fingerprint"));

  std::string unknown = "0123456789ABCDEF0123456789ABCDEF01234567";
  auto missing = GpgSigner::create(home, unknown);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.message() == "signing key " + unknown + " not found in GnuPG home " + home);
  {  // Without a home of its own it names the one GPGME searched, not an empty one.
    const char* before = std::getenv("GNUPGHOME");
    const std::string saved = before ? before : "";
    setenv("GNUPGHOME", home.c_str(), 1);
    auto in_env = GpgSigner::create("", unknown);
    if (before)
      setenv("GNUPGHOME", saved.c_str(), 1);
    else
      unsetenv("GNUPGHOME");
    REQUIRE_FALSE(in_env.ok());
    CHECK(in_env.message() ==
          "signing key " + unknown + " not found in GnuPG home " + home + " ($GNUPGHOME)");
  }

  auto revoked = GpgSigner::create(home, keys.revoked);
  REQUIRE_FALSE(revoked.ok());
  CHECK(revoked.message() == "signing key " + keys.revoked + " is revoked");

  auto expired = GpgSigner::create(home, keys.expired);
  REQUIRE_FALSE(expired.ok());
  CHECK(expired.message() == "signing key " + keys.expired + " has expired");

  // A home that holds only alice's public key.
  test::GpgHome public_only;
  auto file = public_only.path() / "alice.asc";
  test::write_file(file, keys.home.export_public(keys.alice));
  public_only.gpg("--import " + shell_quote(file.string()));
  auto no_secret = GpgSigner::create(public_only.path().string(), keys.alice);
  REQUIRE_FALSE(no_secret.ok());
  CHECK(no_secret.message() == "signing key " + keys.alice + " has no secret key in GnuPG home " +
                                   public_only.path().string());

  auto nowhere = GpgSigner::create((public_only.path() / "does-not-exist").string(), keys.alice);
  CHECK_FALSE(nowhere.ok());
}

TEST_CASE("GpgSigner refuses a key that needs a passphrase instead of prompting") {
  test::GpgHome home;
  must(home.env() +
       "gpg --batch --quiet --pinentry-mode loopback --passphrase secret "
       "--quick-gen-key 'Locked <locked@example.com>' ed25519 sign 1y");
  // Forget any passphrase the agent cached while generating the key.
  must("gpgconf --homedir " + shell_quote(home.path().string()) + " --kill gpg-agent");
  std::string listing = home.gpg("--with-colons --list-keys locked@example.com");
  size_t fpr_at = listing.find("\nfpr:");
  REQUIRE(fpr_at != std::string::npos);
  std::string fpr = listing.substr(listing.find_first_not_of(':', fpr_at + 5), 40);

  auto signer = GpgSigner::create(home.path().string(), fpr);
  REQUIRE_MESSAGE(signer.ok(), why(signer));
  auto sig = (*signer)->sign("payload\n");
  REQUIRE_FALSE(sig.ok());
  CHECK(contains(sig.message(), "signing key " + fpr + " needs a passphrase; it must have none"));
}

TEST_CASE("a commit object signed by GpgSigner passes git verify-commit") {
  auto& keys = test_keys();
  test::TempDir dir;
  auto repo = dir / "repo";
  std::string parent = test::init_repo(repo, {{"README", "hello\n"}});
  std::string tree = must("git rev-parse HEAD^{tree}", repo);
  std::string payload = "tree " + tree + "\nparent " + parent +
                        "\nauthor dmzbot <dmzbot@example.com> 1700000000 +0000"
                        "\ncommitter dmzbot <dmzbot@example.com> 1700000000 +0000"
                        "\n\nMerge PR #1\n\nDmz-Pr: 1\n";
  auto signer = alice_signer();
  auto sig = signer->sign(payload);
  REQUIRE_MESSAGE(sig.ok(), why(sig));
  std::string object = with_gpgsig(payload, *sig);
  test::write_file(dir / "object", object);
  std::string sha =
      must(test::git_env() + "git hash-object -t commit -w --stdin < ../object", repo);
  REQUIRE(sha.size() == 40);
  CHECK(must("git cat-file commit " + sha + " > ../back && cmp ../object ../back && echo same",
             repo) == "same");

  std::string git = keys.home.env() + test::git_env() + "git -c gpg.program=gpg ";
  std::string out = must(git + "verify-commit -v " + sha, repo);
  CHECK(contains(out, "Good signature from \"Alice <alice@example.com>\""));
  CHECK(must(git + "log -1 --format=%G?:%GF:%GP " + sha, repo) ==
        "G:" + keys.alice_subkey + ":" + keys.alice);

  // A commit whose message was changed after signing is rejected by git.
  std::string forged = object;
  forged.replace(forged.find("Merge PR #1"), 11, "Merge PR #2");
  test::write_file(dir / "forged", forged);
  std::string forged_sha =
      must(test::git_env() + "git hash-object -t commit -w --stdin < ../forged", repo);
  CHECK(test::run(git + "verify-commit " + forged_sha, repo).exit_code != 0);
}

TEST_CASE("Mirror::merge signed by GpgSigner, with a mergetag, passes git verify-commit") {
  auto& keys = test_keys();
  test::TempDir dir;
  const auto work = dir / "work";
  const std::string base = test::init_repo(work, {{"README", "hello\n"}});
  must(test::git_env() + "git checkout -q -b feature", work);
  const std::string head = test::commit_files(work, {{"feature.txt", "new\n"}}, "feature");
  must(test::git_env() + "git tag -a for-master -m 'please merge' " + head, work);
  const std::string tag = must(test::git_env() + "git cat-file tag for-master", work) + "\n";
  git::init();
  auto mirror = git::Mirror::open(dir / "mirror.git", work.string());
  REQUIRE_MESSAGE(mirror.ok(), why(mirror));
  REQUIRE((*mirror)->fetch().ok());
  auto signer = alice_signer();
  git::Identity who{"dmzbot", "dmzbot@example.com", 1700000000, 0};
  auto merged = (*mirror)->merge(base, head, "Merge #1 from tags/for-master\n", who, signer.get(),
                                 {{"mergetag", tag}});
  REQUIRE_MESSAGE(merged.ok(), why(merged));
  REQUIRE(merged->clean);

  const std::string git = keys.home.env() + test::git_env() + "git -C " +
                          shell_quote((dir / "mirror.git").string()) + " -c gpg.program=gpg ";
  std::string out = must(git + "verify-commit -v " + merged->commit);
  CHECK(contains(out, "Good signature from \"Alice <alice@example.com>\""));
  CHECK(must(git + "log -1 --format=%G?:%GP:%P " + merged->commit) ==
        "G:" + keys.alice + ":" + base + " " + head);
  CHECK(contains(must(git + "cat-file commit " + merged->commit), "\nmergetag object " + head));
}

}  // namespace
}  // namespace dmz

// Test helper: real OpenPGP keys (ed25519) generated at test time in a temporary GnuPG home,
// once per test binary, plus signatures made in the past. Threading: test thread only.
#pragma once

#include <filesystem>
#include <string>

#include "tests/support.hpp"

namespace dmz::test {

// A temporary GnuPG home driven with the gpg command line (batch, no passphrase). Its
// gpg-agent is stopped and the directory removed on destruction.
class GpgHome {
 public:
  GpgHome();
  ~GpgHome();
  GpgHome(const GpgHome&) = delete;
  GpgHome& operator=(const GpgHome&) = delete;

  const std::filesystem::path& path() const { return dir_.path(); }
  // "GNUPGHOME='<path>' ", a prefix for commands (gpg, git) that must use this home.
  std::string env() const;
  // Runs `gpg --batch --pinentry-mode loopback --passphrase '' <args>`; REQUIREs success.
  std::string gpg(const std::string& args) const;
  // The same without the REQUIRE.
  RunResult try_gpg(const std::string& args) const;

  // Generates a primary ed25519 signing key; `options` go before --quick-gen-key (e.g.
  // "--faked-system-time 1700000000!"). Returns its fingerprint.
  std::string generate(const std::string& uid, const std::string& expire = "1y",
                       const std::string& options = "");
  // Adds an ed25519 signing subkey to `primary`; returns the subkey's fingerprint.
  std::string add_signing_subkey(const std::string& primary, const std::string& expire = "1y",
                                 const std::string& options = "");
  // Revokes the `index`-th subkey (1 = the first) of `primary`.
  void revoke_subkey(const std::string& primary, int index);
  // Imports the revocation certificate gpg wrote for `fpr` at generation time.
  void revoke(const std::string& fpr);
  std::string export_public(const std::string& fpr) const;
  // A detached armored signature over `payload` by `key` (append "!" to force a subkey);
  // `options` go before --detach-sign.
  std::string sign(const std::string& key, const std::string& payload,
                   const std::string& options = "");

 private:
  std::filesystem::path scratch(const std::string& stem);
  TempDir dir_;
  int counter_ = 0;
};

struct TestKeys {
  TestKeys();  // generates everything (a few seconds)
  GpgHome home;
  std::string payload = "tree 0000\nauthor A <a@example.com> 0 +0000\n\nsigned by the fixture\n";
  std::string alice;         // primary key (ed25519, 1y) with a signing subkey
  std::string alice_subkey;  // alice's signing subkey
  std::string mallory;       // a key that tests never give to a verifier
  std::string expired;       // created 10 days ago, expired 8 days ago
  std::string revoked;       // revoked after signing revoked_signature
  std::string past;          // created 10 days ago, valid for a year
  std::string past_subkey;   // past's signing subkey, created 10 days ago, expired 8 days ago
  std::string rotated;       // valid primary key whose signing subkey was revoked
  std::string rotated_subkey;
  std::string expired_key_signature;     // by `expired`, over payload, while it was valid
  std::string revoked_signature;         // by `revoked`, over payload, before the revocation
  std::string expired_signature;         // by `past`, over payload, 10 days ago, 1-day expiry
  std::string expired_subkey_signature;  // by past_subkey, over payload, while it was valid
  std::string revoked_subkey_signature;  // by rotated_subkey, over payload, before revocation
};

// The keys of this test binary, generated on first use.
TestKeys& test_keys();

}  // namespace dmz::test

// GpgSigner: the OpenPGP Signer; signs commit payloads (detached, armored) with one key of a
// GnuPG home through GPGME. Threading: one call at a time per instance (the Signer contract).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "base/status.hpp"
#include "bot/git/signer.hpp"
#include "bot/trust/openpgp.hpp"

namespace dmz {

// Each sign() runs gpg (and its agent) once: call it from the blocking pool. As GPGME requires,
// the process must ignore SIGPIPE. The GnuPG home is the caller's: its agent is left running.
class GpgSigner : public Signer {
 public:
  // Opens `gnupg_home` and checks that `fingerprint` (40 hex digits, the primary key or one of
  // its subkeys) names a key that is neither revoked nor expired and whose secret signing key
  // is present. The key must have no passphrase: pinentry is loopback and none is supplied.
  // gpg signs with the newest usable signing (sub)key of that key.
  static Result<std::unique_ptr<GpgSigner>> create(std::string gnupg_home, std::string fingerprint);

  // The armored detached signature of `payload` (a commit's `gpgsig` value), ending in "\n".
  Result<std::string> sign(std::string_view payload) override;

  // The primary fingerprint of the signing key, uppercase hex.
  const std::string& fingerprint() const { return primary_; }

 private:
  GpgSigner(std::string home, std::string primary, gpgme::Context ctx);
  std::string home_;
  std::string primary_;
  gpgme::Context ctx_;
};

}  // namespace dmz

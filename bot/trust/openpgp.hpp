// OpenPGP signature verification (GPGME) against a fixed set of public keys, in an isolated,
// offline GnuPG home. Threading: one OpenPgpVerifier per thread; an instance is not shared.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.hpp"

struct gpgme_context;  // gpgme_ctx_t
struct _gpgme_key;     // gpgme_key_t
struct gpgme_data;     // gpgme_data_t

namespace dmz {

// GPGME handles owned once at the boundary (used by OpenPgpVerifier and GpgSigner).
namespace gpgme {

struct ContextDeleter {
  void operator()(gpgme_context* ctx) const;
};
struct DataDeleter {
  void operator()(gpgme_data* data) const;
};
struct KeyDeleter {
  void operator()(_gpgme_key* key) const;
};
using Context = std::unique_ptr<gpgme_context, ContextDeleter>;
using Data = std::unique_ptr<gpgme_data, DataDeleter>;
using Key = std::unique_ptr<_gpgme_key, KeyDeleter>;

// Fingerprints are compared in uppercase hex.
std::string upper(std::string_view s);

// Initializes GPGME once per process (thread-safe) and returns an OpenPGP context bound to the
// GnuPG home `home`, offline (no dirmngr, hence no keyserver), with loopback pinentry.
Result<Context> open_context(const std::string& home);
// A data object holding a copy of `bytes`.
Result<Data> data_from(std::string_view bytes);
// An empty, growing memory data object (for output).
Result<Data> new_data();
// The whole content of a memory data object.
std::string contents(gpgme_data* data);
// "what: <gpgme source>: <gpgme message>" for a gpgme_error_t.
std::string describe(const std::string& what, unsigned int err);
// Stops the gpg-agent and dirmngr started for `home` (gpgconf --kill all); best effort.
void kill_daemons(const std::string& home);

}  // namespace gpgme

struct OpenPgpVerified {
  std::string primary_fingerprint;         // uppercase hex, the key the policy names
  std::string signing_subkey_fingerprint;  // uppercase hex; equals the primary if it signed
  std::int64_t signature_time = 0;         // unix seconds, from the signature
};

// Verifies detached, armored OpenPGP signatures (git's `gpgsig`) made by one of the keys it was
// given. It judges every signature itself and never consults owner trust or key validity.
// verify() fails with a message that starts with one of these reasons:
//   "bad-signature", "no-key", "multiple-signatures", "revoked-key", "expired-key",
//   "expired-signature", "weak-digest", "weak-key" (RSA or DSA below 2048 bits, the primary key
//   or the signing subkey, as for SSH keys), "wrong-key-usage";
// any other failure (GnuPG missing, unexpected GPGME error) starts with "error:". Fails closed.
// Each verify() runs gpg once (a few milliseconds; key listings are cached per signing key): call
// it from the blocking pool, never from an I/O thread. As GPGME requires, the process must ignore
// SIGPIPE. A moved-from verifier may only be destroyed or assigned to.
class OpenPgpVerifier {
 public:
  // Creates a fresh GnuPG home (a 0700 temporary directory) holding no keys.
  static Result<OpenPgpVerifier> create();

  OpenPgpVerifier(OpenPgpVerifier&&) noexcept;
  OpenPgpVerifier& operator=(OpenPgpVerifier&&) noexcept;
  // Stops the GnuPG daemons of the home and removes it.
  ~OpenPgpVerifier();

  // Imports armored public keys (one or several blocks); returns the primary fingerprints
  // (uppercase hex) of the keys imported or already present. Secret keys are refused.
  Result<std::vector<std::string>> import_keys(std::string_view armored);

  // Verifies that `armored_signature` is exactly one good detached signature over `payload`
  // by an imported key that was neither revoked nor expired, using a strong digest.
  Result<OpenPgpVerified> verify(std::string_view payload, std::string_view armored_signature);

  // Primary fingerprints of every key in the home, uppercase hex, sorted.
  Result<std::vector<std::string>> fingerprints();

  // The isolated GnuPG home directory (for diagnostics and tests).
  const std::string& home() const;

 private:
  struct State;
  explicit OpenPgpVerifier(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace dmz

// SSH signatures as git writes them (gpg.format=ssh: OpenSSH SSHSIG, namespace "git") verified in
// process with OpenSSL 3, plus the SSH wire/armor helpers the signer shares. Threading: pure
// functions.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.hpp"

namespace dmz {

// One allowed signer: a public key line in authorized_keys / allowed_signers style.
struct SshPublicKey {
  std::string type;         // "ssh-ed25519", "ecdsa-sha2-nistp256" or "ssh-rsa"
  std::string blob;         // the wire-format public key (what the base64 field decodes to)
  std::string fingerprint;  // "SHA256:" + unpadded base64 of SHA-256(blob), as `ssh-keygen -l`
  std::optional<int64_t> valid_after;   // unix seconds; a signature before it is rejected
  std::optional<int64_t> valid_before;  // unix seconds; a signature after it is rejected
  std::vector<std::string> namespaces;  // namespaces="..."; empty means any namespace
  std::vector<std::string> principals;  // allowed_signers' first field, when present
  std::string comment;
  std::string line() const;  // "type base64", the key without options or comment
};

// Parses `[principals] [options] keytype base64 [comment]`. Options:
// valid-after="YYYYMMDD[HHMM[SS]][Z]", valid-before=..., namespaces="git,...". Times are UTC
// (ssh-keygen reads them without Z as local time; dmzbot runs in UTC). Unknown options,
// cert-authority and unsupported key types are errors.
Result<SshPublicKey> parse_ssh_public_key(std::string_view line);

// Parses an allowed_signers file: one key per line, blank lines and '#' comments skipped.
// Errors name the line: "line 3: ...".
Result<std::vector<SshPublicKey>> parse_allowed_signers(std::string_view text);

struct SshVerified {
  std::string fingerprint;     // of the key that made the signature
  std::string key_type;        // "ssh-ed25519", ...
  std::string hash_algorithm;  // "sha256" or "sha512"
};

// Verifies the armored SSHSIG `armored` over `message`. The signing key must byte-equal the blob of
// one of `allowed` whose validity window contains `signed_at` (the commit or tag time, as git
// passes -Overify-time) and whose namespaces admit `ns`. Fails closed; the message starts with a
// reason: bad-armor, bad-sshsig, wrong-namespace, weak-hash, bad-hash, no-key, not-yet-valid-key,
// expired-key, unsupported-key, weak-signature, bad-signature.
Result<SshVerified> verify_sshsig(std::string_view armored, std::string_view message,
                                  std::span<const SshPublicKey> allowed, int64_t signed_at,
                                  std::string_view ns = "git");

// The fields of an SSHSIG blob (PROTOCOL.sshsig), after the "SSHSIG" magic and version 1.
struct SshSig {
  std::string public_key;  // wire-format public key blob
  std::string ns;          // namespace
  std::string reserved;
  std::string hash_algorithm;  // "sha256", "sha512"
  std::string signature;       // wire-format signature: string sig-type, string sig-bytes
};

// "-----BEGIN SSH SIGNATURE-----" armor -> blob. Exactly one block, nothing but whitespace around
// it.
Result<std::string> dearmor_sshsig(std::string_view armored);
// Blob -> fields; checks magic, version 1 and that nothing trails.
Result<SshSig> parse_sshsig_blob(std::string_view blob);
std::string encode_sshsig_blob(const SshSig& sig);
// Blob -> armor with 70-column base64 lines, ending in "\n", as ssh-keygen writes it.
std::string armor_sshsig(std::string_view blob);
// The data the signature covers: "SSHSIG" || string ns || string reserved || string alg || string
// H(msg).
std::string sshsig_signed_data(std::string_view ns, std::string_view hash_algorithm,
                               std::string_view message_hash);
// H(message) for "sha256" or "sha512".
Result<std::string> sshsig_hash(std::string_view hash_algorithm, std::string_view message);
// "SHA256:..." for a wire-format public key blob.
std::string ssh_fingerprint(std::string_view blob);

// SSH wire encoding (RFC 4251 section 5); base64 is in base/crypto.hpp.
namespace ssh {

class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  bool u32(uint32_t& out);
  bool string(std::string_view& out);
  bool bytes(size_t n, std::string_view& out);
  bool empty() const { return data_.empty(); }
  std::string_view rest() const { return data_; }

 private:
  std::string_view data_;
};

void put_u32(std::string& out, uint32_t v);
void put_string(std::string& out, std::string_view s);
// Encodes an unsigned big-endian magnitude as an SSH mpint (minimal, 0x00 prefix if the top bit is
// set).
void put_mpint(std::string& out, std::string_view magnitude);
// The unsigned magnitude of an mpint; fails on negative numbers and non-minimal encodings.
bool mpint_magnitude(std::string_view mpint, std::string_view& magnitude);

}  // namespace ssh
}  // namespace dmz

// SshSigner: signs the commits and tags dmzbot writes as git's gpg.format=ssh does (armored SSHSIG,
// namespace "git", sha512), in process with OpenSSL. Threading: one call at a time (see Signer).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "base/status.hpp"
#include "bot/git/signer.hpp"

namespace dmz {

class SshSigner : public Signer {
 public:
  // Loads an unencrypted OpenSSH private key ("-----BEGIN OPENSSH PRIVATE KEY-----", the
  // openssh-key-v1 format ssh-keygen writes by default): ssh-ed25519, ecdsa-sha2-nistp256 or
  // ssh-rsa (signing rsa-sha2-512). Errors start with a reason: no-file, bad-key, encrypted-key,
  // unsupported-key.
  static Result<std::unique_ptr<SshSigner>> from_file(const std::filesystem::path& private_key);
  static Result<std::unique_ptr<SshSigner>> from_private_key(std::string_view armored);
  ~SshSigner() override;

  // Armored SSHSIG over `payload`, 70-column base64 lines like ssh-keygen, ending in "\n".
  Result<std::string> sign(std::string_view payload) override;

  const std::string& key_type() const;  // "ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"
  const std::string& public_key_blob() const;
  const std::string& fingerprint() const;  // "SHA256:..."
  // "type base64 comment": the key as a .pub line, for allowed_signers and policy files.
  std::string public_key_line() const;

 private:
  struct Key;
  explicit SshSigner(std::unique_ptr<Key> key);
  std::unique_ptr<Key> key_;
};

}  // namespace dmz

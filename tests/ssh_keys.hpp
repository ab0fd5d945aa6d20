// Test helpers for SSH signing: generate OpenSSH keys with ssh-keygen and make ssh-signed commits
// and tags in temporary repositories with git. Threading: like tests/support.hpp, one thread at a
// time.
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace dmz::test {

struct SshKey {
  std::string type;                    // "ed25519", "ecdsa" (P-256) or "rsa" (2048 bits)
  std::filesystem::path private_path;  // unencrypted openssh-key-v1 file; public at <path>.pub
  std::string public_line;             // "ssh-ed25519 AAAA... comment" (the .pub file, one line)
  std::string fingerprint;             // "SHA256:..." as `ssh-keygen -lf` prints it
};

// Generates a fresh key of `type` ("ed25519", "ecdsa", "rsa") at dir/name with ssh-keygen.
SshKey generate_ssh_key(const std::filesystem::path& dir, const std::string& type,
                        const std::string& name);

// A key of `type` generated once per test binary run (RSA keygen is slow); `slot` gives distinct
// keys of the same type. The files live until the process exits.
const SshKey& cached_ssh_key(const std::string& type, int slot = 0);

// `git -c` options that make git sign with `key` in ssh format: "-c gpg.format=ssh -c
// user.signingkey=...".
std::string ssh_sign_options(const SshKey& key);

// Writes the same settings into the repository's own config (for commands that cannot take -c).
void configure_ssh_signing(const std::filesystem::path& repo, const SshKey& key);

// `git -c` options that make `git verify-commit`/`verify-tag` trust the allowed_signers `file`.
std::string ssh_verify_options(const std::filesystem::path& allowed_signers);

// Writes an allowed_signers file: one "principal [options] keytype base64" line per entry.
// `options` may be empty or e.g. `valid-before="20200101"`.
struct AllowedSigner {
  std::string principal;
  const SshKey* key;
  std::string options;
};
void write_allowed_signers(const std::filesystem::path& file,
                           const std::vector<AllowedSigner>& signers);

// Commits `files` in the non-bare repo `dir`, signed (-S) with `key`; returns the commit sha.
std::string ssh_signed_commit(const std::filesystem::path& dir, const SshKey& key,
                              const std::vector<std::pair<std::string, std::string>>& files,
                              const std::string& message);

// Creates the annotated tag `name` on `target`, signed (-s) with `key`; returns the tag object sha.
std::string ssh_signed_tag(const std::filesystem::path& dir, const SshKey& key,
                           const std::string& name, const std::string& target,
                           const std::string& message);

}  // namespace dmz::test

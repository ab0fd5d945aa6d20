#include "tests/ssh_keys.hpp"

#include <doctest/doctest.h>

#include <map>
#include <memory>

#include "tests/support.hpp"

namespace dmz::test {

SshKey generate_ssh_key(const std::filesystem::path& dir, const std::string& type,
                        const std::string& name) {
  std::string args;
  if (type == "ed25519")
    args = "-t ed25519";
  else if (type == "ecdsa")
    args = "-t ecdsa -b 256";
  else if (type == "rsa")
    args = "-t rsa -b 2048";
  else
    FAIL("generate_ssh_key: unknown key type " << type);
  std::filesystem::create_directories(dir);
  SshKey key;
  key.type = type;
  key.private_path = dir / name;
  const std::string path = shell_quote(key.private_path.string());
  must("ssh-keygen -q " + args + " -N '' -C " + shell_quote(name + "@dmzbot.test") + " -f " + path);
  key.public_line = must("cat " + path + ".pub");
  // `ssh-keygen -lf` prints "256 SHA256:xxxx comment (ED25519)".
  std::string listing = must("ssh-keygen -lf " + path + ".pub");
  auto start = listing.find("SHA256:");
  REQUIRE(start != std::string::npos);
  key.fingerprint = listing.substr(start, listing.find(' ', start) - start);
  return key;
}

const SshKey& cached_ssh_key(const std::string& type, int slot) {
  static TempDir dir;  // removed at process exit
  static std::map<std::pair<std::string, int>, std::unique_ptr<SshKey>> keys;
  auto& entry = keys[{type, slot}];
  if (!entry) {
    entry = std::make_unique<SshKey>(
        generate_ssh_key(dir.path(), type, "cached-" + type + "-" + std::to_string(slot)));
  }
  return *entry;
}

std::string ssh_sign_options(const SshKey& key) {
  return "-c gpg.format=ssh -c user.signingkey=" + shell_quote(key.private_path.string()) + " ";
}

void configure_ssh_signing(const std::filesystem::path& repo, const SshKey& key) {
  must(git_env() + "git config gpg.format ssh && " + git_env() + "git config user.signingkey " +
           shell_quote(key.private_path.string()),
       repo);
}

std::string ssh_verify_options(const std::filesystem::path& allowed_signers) {
  return "-c gpg.format=ssh -c gpg.ssh.allowedSignersFile=" +
         shell_quote(allowed_signers.string()) + " ";
}

void write_allowed_signers(const std::filesystem::path& file,
                           const std::vector<AllowedSigner>& signers) {
  std::string text;
  for (const auto& s : signers) {
    // The .pub line is "type base64 comment"; allowed_signers wants "principal [options] type
    // base64".
    std::string line = s.key->public_line;
    auto first = line.find(' ');
    auto second = line.find(' ', first + 1);
    std::string key_part = line.substr(0, second);
    text += s.principal + " " + (s.options.empty() ? "" : s.options + " ") + key_part + "\n";
  }
  write_file(file, text);
}

std::string ssh_signed_commit(const std::filesystem::path& dir, const SshKey& key,
                              const std::vector<std::pair<std::string, std::string>>& files,
                              const std::string& message) {
  for (const auto& [name, content] : files) write_file(dir / name, content);
  must(git_env() + "git add -A && " + git_env() + "git " + ssh_sign_options(key) +
           "commit -q -S -m " + shell_quote(message),
       dir);
  return must(git_env() + "git rev-parse HEAD", dir);
}

std::string ssh_signed_tag(const std::filesystem::path& dir, const SshKey& key,
                           const std::string& name, const std::string& target,
                           const std::string& message) {
  must(git_env() + "git " + ssh_sign_options(key) + "tag -s -m " + shell_quote(message) + " " +
           shell_quote(name) + " " + shell_quote(target),
       dir);
  return must(git_env() + "git rev-parse " + shell_quote("refs/tags/" + name), dir);
}

}  // namespace dmz::test

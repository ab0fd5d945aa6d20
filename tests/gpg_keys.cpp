#include "tests/gpg_keys.hpp"

#include <doctest/doctest.h>

#include <ctime>
#include <sstream>

namespace dmz::test {

GpgHome::GpgHome() {
  // Without this the agent calibrates its passphrase KDF, which costs seconds per protected key.
  write_file(path() / "gpg-agent.conf", "s2k-count 65536\n");
}

GpgHome::~GpgHome() {
  // Stop the gpg-agent this home started so that the test binary leaves nothing running.
  run("gpgconf --homedir " + shell_quote(path().string()) + " --kill all");
}

std::string GpgHome::env() const { return "GNUPGHOME=" + shell_quote(path().string()) + " "; }

static std::string gpg_command(const GpgHome& home, const std::string& args) {
  return home.env() + "gpg --batch --quiet --pinentry-mode loopback --passphrase '' " + args;
}

std::string GpgHome::gpg(const std::string& args) const { return must(gpg_command(*this, args)); }

RunResult GpgHome::try_gpg(const std::string& args) const { return run(gpg_command(*this, args)); }

std::filesystem::path GpgHome::scratch(const std::string& stem) {
  std::filesystem::create_directories(path() / "scratch");
  return path() / "scratch" / (stem + std::to_string(++counter_));
}

static std::string fingerprints(const GpgHome& home, const std::string& key) {
  // fpr records, in order: the primary first, then each subkey.
  std::string listing = home.gpg("--with-colons --list-keys " + shell_quote(key));
  std::istringstream in(listing);
  std::string line, out;
  while (std::getline(in, line)) {
    if (line.rfind("fpr:", 0) != 0) continue;
    std::string fpr = line.substr(0, line.size() - 1);  // drop the final ':'
    out += fpr.substr(fpr.rfind(':') + 1) + "\n";
  }
  return out;
}

std::string GpgHome::generate(const std::string& uid, const std::string& expire,
                              const std::string& options) {
  gpg(options + " --quick-gen-key " + shell_quote(uid) + " ed25519 sign " + expire);
  std::string fprs = fingerprints(*this, "=" + uid);
  REQUIRE(fprs.size() >= 40);
  return fprs.substr(0, 40);
}

std::string GpgHome::add_signing_subkey(const std::string& primary, const std::string& expire,
                                        const std::string& options) {
  gpg(options + " --quick-add-key " + primary + " ed25519 sign " + expire);
  std::string fprs = fingerprints(*this, primary);
  size_t last = fprs.rfind('\n', fprs.size() - 2);
  REQUIRE(last != std::string::npos);
  return fprs.substr(last + 1, 40);
}

void GpgHome::revoke(const std::string& fpr) {
  // gpg stores a revocation certificate per key, its armor line escaped with ':' against
  // accidental import; unescape it and import it.
  std::string cert = read_file(path() / "openpgp-revocs.d" / (fpr + ".rev"));
  REQUIRE(cert.find(":-----BEGIN PGP PUBLIC KEY BLOCK-----") != std::string::npos);
  cert.replace(cert.find(":-----BEGIN"), 1, "");
  auto file = scratch("revocation");
  write_file(file, cert);
  gpg("--import " + shell_quote(file.string()));
}

void GpgHome::revoke_subkey(const std::string& primary, int index) {
  // GnuPG 2.2 has no --quick-revoke-subkey: answer --edit-key's prompts through --command-fd
  // (select the subkey, revoke it, "no reason", empty description, confirm, save).
  auto answers = scratch("answers");
  write_file(answers, "key " + std::to_string(index) + "\nrevkey\ny\n0\n\ny\nsave\n");
  gpg("--command-fd 0 --edit-key " + primary + " < " + shell_quote(answers.string()));
  std::string listing = gpg("--with-colons --list-keys " + primary);
  REQUIRE(listing.find("\nsub:r:") != std::string::npos);
}

std::string GpgHome::export_public(const std::string& fpr) const {
  std::string key = gpg("--armor --export " + fpr);
  REQUIRE(key.find("-----BEGIN PGP PUBLIC KEY BLOCK-----") != std::string::npos);
  return key + "\n";
}

std::string GpgHome::sign(const std::string& key, const std::string& payload,
                          const std::string& options) {
  auto in = scratch("payload"), out = scratch("signature");
  write_file(in, payload);
  gpg(options + " --local-user " + shell_quote(key) + " --armor --output " +
      shell_quote(out.string()) + " --detach-sign " + shell_quote(in.string()));
  return read_file(out);
}

static std::string at(std::time_t t) { return "--faked-system-time " + std::to_string(t) + "! "; }

TestKeys::TestKeys() {
  const std::time_t ten_days_ago = std::time(nullptr) - 10 * 86400;
  alice = home.generate("Alice <alice@example.com>");
  alice_subkey = home.add_signing_subkey(alice);
  mallory = home.generate("Mallory <mallory@example.com>");
  expired = home.generate("Expired <expired@example.com>", "2d", at(ten_days_ago));
  expired_key_signature = home.sign(expired, payload, at(ten_days_ago + 3600));
  revoked = home.generate("Revoked <revoked@example.com>");
  revoked_signature = home.sign(revoked, payload);
  home.revoke(revoked);
  past = home.generate("Past <past@example.com>", "1y", at(ten_days_ago));
  expired_signature = home.sign(past, payload, at(ten_days_ago + 3600) + "--default-sig-expire 1d");
  past_subkey = home.add_signing_subkey(past, "2d", at(ten_days_ago + 60));
  expired_subkey_signature = home.sign(past_subkey + "!", payload, at(ten_days_ago + 3600));
  rotated = home.generate("Rotated <rotated@example.com>");
  rotated_subkey = home.add_signing_subkey(rotated);
  revoked_subkey_signature = home.sign(rotated_subkey + "!", payload);
  home.revoke_subkey(rotated, 1);
}

TestKeys& test_keys() {
  static TestKeys keys;
  return keys;
}

}  // namespace dmz::test

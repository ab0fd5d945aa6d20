// Fuzzes the SSH signature code (bot/trust/sshsig.hpp): allowed_signers text, SSHSIG armor and
// blobs, and verification in process with OpenSSL. Input: allowed_signers text, a line "--",
// the armored signature, a line "--", the signed message; without separators the whole input
// is tried as each of them. Checks: blob and armor round-trip byte for byte.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "bot/trust/sshsig.hpp"
#include "fuzz/fuzz_check.hpp"

namespace {

constexpr int64_t kSignedAt = 1700000000;  // 2023-11-14: inside any key's window of the seeds

std::vector<std::string_view> split(std::string_view in, std::string_view sep) {
  std::vector<std::string_view> parts;
  for (size_t at; (at = in.find(sep)) != std::string_view::npos;) {
    parts.push_back(in.substr(0, at));
    in.remove_prefix(at + sep.size());
  }
  parts.push_back(in);
  return parts;
}

void blob_round_trip(std::string_view blob) {
  auto sig = dmz::parse_sshsig_blob(blob);
  if (!sig) return;
  FUZZ_CHECK(dmz::encode_sshsig_blob(*sig) == blob, "an SSHSIG blob that does not round-trip");
  auto again = dmz::dearmor_sshsig(dmz::armor_sshsig(blob));
  FUZZ_CHECK(again.ok() && *again == blob, "armor that does not round-trip");
  dmz::ssh::Reader r(sig->signature);
  std::string_view type, bytes;
  if (r.string(type) && r.string(bytes)) {
    dmz::ssh::Reader rs(bytes);
    std::string_view mpint, magnitude;
    while (rs.string(mpint)) (void)dmz::ssh::mpint_magnitude(mpint, magnitude);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto parts = split(in, "\n--\n");
  std::string_view signers = parts[0];
  std::string_view armored = parts.size() > 1 ? parts[1] : in;
  std::string_view message = parts.size() > 2 ? parts[2] : in;

  std::vector<dmz::SshPublicKey> allowed;
  if (auto keys = dmz::parse_allowed_signers(signers)) allowed = *keys;
  for (const auto& key : allowed) {
    auto again = dmz::parse_ssh_public_key(key.line());
    FUZZ_CHECK(again.ok() && again->blob == key.blob, "a parsed key whose line does not parse");
  }
  if (auto blob = dmz::dearmor_sshsig(armored)) blob_round_trip(*blob);
  blob_round_trip(in);
  (void)dmz::verify_sshsig(armored, message, allowed, kSignedAt);
  return 0;
}

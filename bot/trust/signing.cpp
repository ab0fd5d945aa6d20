#include "bot/trust/signing.hpp"

#include "bot/trust/gpg_signer.hpp"
#include "bot/trust/ssh_signer.hpp"

namespace dmz {

Result<std::unique_ptr<Signer>> make_signer(const config::Signing& signing) {
  if (signing.format.empty()) return std::unique_ptr<Signer>();
  if (signing.format == "ssh") {
    auto signer = SshSigner::from_file(signing.key);
    if (!signer) return signer.error();
    return std::unique_ptr<Signer>(std::move(*signer));
  }
  if (signing.format == "openpgp") {
    auto signer = GpgSigner::create(signing.gnupg_home.string(), signing.fingerprint);
    if (!signer) return signer.error();
    return std::unique_ptr<Signer>(std::move(*signer));
  }
  return error("unknown signing format '" + signing.format + "'");
}

}  // namespace dmz

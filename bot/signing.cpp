#include "bot/signing.hpp"

namespace dmz {

Result<std::unique_ptr<Signer>> make_signer(const config::Signing& signing) {
  if (signing.format.empty()) return std::unique_ptr<Signer>();
  return error("signing format '" + signing.format + "' is not available in this build");
}

}  // namespace dmz

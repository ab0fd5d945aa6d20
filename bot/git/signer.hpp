// Signer: signs the payload of a commit or tag that dmzbot writes (its merge commits).
// Implementations: SSH (OpenSSL, in process) and OpenPGP (GPGME). Threading: one call at a time.
#pragma once

#include <string>
#include <string_view>

#include "base/status.hpp"

namespace dmz {

class Signer {
 public:
  virtual ~Signer() = default;
  // Returns the armored signature (the value of the commit's `gpgsig` header), ending in "\n".
  virtual Result<std::string> sign(std::string_view payload) = 0;
};

}  // namespace dmz

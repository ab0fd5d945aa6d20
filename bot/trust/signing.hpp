// Builds the Signer for dmzbot's merge commits from the [signing] configuration.
// Threading: the returned Signer is used by one git worker at a time.
#pragma once

#include <memory>

#include "base/status.hpp"
#include "bot/git/signer.hpp"
#include "config/config.hpp"

namespace dmz {

// nullptr when signing is not configured (format empty).
Result<std::unique_ptr<Signer>> make_signer(const config::Signing& signing);

}  // namespace dmz

// `dmzbot verify`: audits a range of history against the signature policy.
// Exit codes: 0 every commit passes, 1 any violation, 2 usage or I/O error.
// Threading: call from the main thread.
#pragma once

#include <string>

namespace dmz {

struct VerifyOptions {
  std::string repo = ".";
  std::string policy;  // empty: the policy committed in the repository
  bool json = false;
  std::string range;
};

int run_verify(const VerifyOptions& options);

}  // namespace dmz

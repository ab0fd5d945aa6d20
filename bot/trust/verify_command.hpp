// `dmzbot verify`: audits a range of history against the signature policy, with a verdict for
// every commit of the range (a commit that cannot be judged fails, it does not stop the audit).
// Exit codes: 0 every commit passes, 1 any violation, 2 usage or I/O error (an empty range too).
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

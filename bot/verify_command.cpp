#include "bot/verify_command.hpp"

#include <cstdio>

namespace dmz {

int run_verify(const VerifyOptions&) {
  std::fprintf(stderr, "dmzbot verify: not available in this build yet\n");
  return 2;
}

}  // namespace dmz

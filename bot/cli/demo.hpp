// `dmzbot demo`: a self-contained sandbox (a bare origin with a small project and four PR
// branches), the real service with the local runner on SQLite, the PRs enqueued through the
// real HTTP API, and progress printed as it happens.
// Threading: call from the main thread (it blocks signals like serve()).
#pragma once

#include <cstdint>
#include <filesystem>

namespace dmz {

struct DemoOptions {
  bool until_idle = false;    // exit when the queue drains; non-zero unless the outcome is right
  std::uint16_t port = 8080;  // 0 = any free port
  std::filesystem::path dir;  // sandbox; empty = a new temp directory
  bool keep = false;          // keep the sandbox after --until-idle
  int timeout_s = 180;        // --until-idle gives up after this long
};

int run_demo(const DemoOptions& options);

}  // namespace dmz

// Runs the service and its HTTP listener until SIGINT, SIGTERM or SIGHUP, each a graceful stop
// (dmzbot serve), and the pieces of that the demo reuses.
// Threading: call from the main thread before any other thread exists (it blocks signals).
#pragma once

#include "config/config.hpp"

namespace dmz {

// Blocks SIGINT, SIGTERM and SIGHUP in this thread (and so in every thread started later) so that
// wait_for_shutdown_signal() can receive them synchronously.
void block_shutdown_signals();
// Waits for SIGINT, SIGTERM or SIGHUP (or returns false at once if `timeout_ms` >= 0 elapses
// first).
bool wait_for_shutdown_signal(int timeout_ms = -1);

int serve(const config::Config& config);

}  // namespace dmz

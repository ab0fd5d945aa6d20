// A Store held in memory, for the simulator and benches (like leveldb's memenv): the same
// contract as the SQLite store (versioned saves that write only what the delta names, the
// archive, history, event log, outbox, deliveries, leases), nothing on disk. A "crash" is
// simply a new Driver on the same MemoryStore.
// Threading: every call is safe from any thread (one mutex).
#pragma once

#include <cstddef>
#include <memory>

#include "bot/store/store.hpp"

namespace dmz {

struct MemoryStoreOptions {
  // The event log keeps at most this many newest events per repository (0: all of them); a
  // long simulation needs none.
  std::size_t max_events = 0;
  bool keep_events = true;  // false: the event log is not kept at all
};

std::unique_ptr<Store> make_memory_store(MemoryStoreOptions options = {});

}  // namespace dmz

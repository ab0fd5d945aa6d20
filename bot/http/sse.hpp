// Server-Sent Events of a repository's event log (or of every repository's, for the overview),
// for the live status pages and for scripts:
// each stream sends the events after the one its client saw last (Last-Event-ID, or ?after=),
// then every new one as the service saves it. Ids are the store's event seqs. The number of
// open streams is bounded; a stream ends after a while (the client reconnects and resumes), and
// every stream ends when the hub stops.
// Threading: thread-safe. One internal thread reads the store (through the Backend) and feeds
// the streams; the Backend's change callback only marks a repository as changed.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "base/status.hpp"
#include "bot/http/http.hpp"
#include "bot/store/store.hpp"

namespace dmz {

class Backend;

struct SseOptions {
  std::size_t max_streams = 32;  // open at once; more are refused (503)
  std::chrono::milliseconds keepalive{15'000};
  std::chrono::milliseconds max_duration{600'000};  // then the client reconnects and resumes
  std::size_t max_replay = 1000;       // events replayed to a resuming client; beyond: a "reset"
  std::size_t batch = 100;             // events read from the store at once
  std::size_t batch_bytes = 64 << 10;  // sent in pieces of about this many bytes (one event
                                       // at least)
  std::size_t max_buffered = 1 << 20;  // bytes waiting for a slow client before its stream ends
};

// The text of one event: "id: <seq>\ndata: <json>\n\n" (a plain message) where the JSON is
// {"seq", "repo", "kind", "number", "at", "event"}.
std::string sse_event(const EventLogEntry& e);

class SseHub {
 public:
  SseHub(Backend& backend, SseOptions options);
  ~SseHub();  // stops
  SseHub(const SseHub&) = delete;
  SseHub& operator=(const SseHub&) = delete;

  // A stream of `repo`'s events after `after` (nullopt: from now on); an empty `repo` streams
  // every configured repository's (seqs are the store's, shared by all repositories, so one id
  // resumes them all). It opens with
  // "retry:" and, when it starts from now, a "hello" event carrying the newest id; a client
  // further behind than max_replay events gets a "reset" event (reload, then follow).
  // unavailable when max_streams are open or the hub has stopped.
  Result<std::shared_ptr<BodyStream>> open(const std::string& repo,
                                           std::optional<std::int64_t> after);
  std::size_t open_streams() const;
  void stop();  // ends every stream; later opens are refused

  struct Core;  // internal (its streams refer to it)

 private:
  std::shared_ptr<Core> core_;
};

}  // namespace dmz

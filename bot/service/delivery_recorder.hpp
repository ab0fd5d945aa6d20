// DeliveryRecorder: webhook delivery ids made durable by group commit. Deliveries that arrive
// while a commit is under way are written together in the next transaction (one fsync for the
// burst), and each is answered only after the transaction holding its id committed.
// Threading: record() from any thread; answers run on the recorder's own thread, in the order
// the ids were recorded.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "base/status.hpp"
#include "bot/store/store.hpp"

namespace dmz {

class DeliveryRecorder {
 public:
  // Called once per id: true if it is new, false for a redelivery (also of an id earlier in the
  // same batch), or the store's error (nothing of that batch was recorded).
  using Answer = std::function<void(Result<bool>)>;

  explicit DeliveryRecorder(Store& store, std::size_t max_batch = 1024);
  ~DeliveryRecorder();  // stop()
  DeliveryRecorder(const DeliveryRecorder&) = delete;
  DeliveryRecorder& operator=(const DeliveryRecorder&) = delete;

  void record(std::string id, queue::Millis at, Answer answer);
  // Records and answers what is already waiting, then joins; later ids are answered
  // `unavailable` at once.
  void stop();

  // How many transactions were committed (or failed) so far: for tests and the bench.
  std::size_t batches() const;

 private:
  struct Pending {
    DeliveryId id;
    Answer answer;
  };
  void loop();

  Store& store_;
  const std::size_t max_batch_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Pending> pending_;  // guarded by mu_
  bool stopping_ = false;        // guarded by mu_
  std::size_t batches_ = 0;      // guarded by mu_
  std::thread thread_;
};

}  // namespace dmz

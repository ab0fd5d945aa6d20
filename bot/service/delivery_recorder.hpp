// DeliveryRecorder: webhook deliveries (their ids and requests) made durable by group commit.
// Deliveries that arrive while a commit is under way are written together in the next
// transaction (one fsync for the burst), and each is answered only after the transaction
// holding it committed. Deliveries reported handled are marked so in batches, after the
// waiting records (a mark that fails only means the delivery may be handled again).
// Threading: record() and handled() from any thread; answers run on the recorder's own
// thread, in the order the deliveries were recorded.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

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

  void record(DeliveryId delivery, Answer answer);
  void record(std::string id, queue::Millis at, Answer answer) {
    record(DeliveryId{std::move(id), at}, std::move(answer));
  }
  // The delivery with this id was handled: marked so in the store with others.
  void handled(std::string id);
  // Records and answers what is already waiting; later deliveries are answered `unavailable` at
  // once. Marks are still taken.
  void close();
  // close(), writes the marks waiting, then joins; later marks are dropped.
  void stop();

  // How many record transactions were committed (or failed) so far: for tests and the bench.
  std::size_t batches() const;
  // How many ids were marked handled so far (in transactions that committed).
  std::size_t marked() const;

 private:
  struct Pending {
    DeliveryId id;
    Answer answer;
  };
  void loop();
  // Counts the marks written, or keeps them for a later attempt; notes whether they failed.
  // mu_ held.
  void count_marks(std::vector<std::string>& marks, const Status& written);
  static constexpr std::chrono::milliseconds kMarksRetry{1000};

  Store& store_;
  const std::size_t max_batch_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Pending> pending_;       // guarded by mu_
  std::vector<std::string> handled_;  // guarded by mu_
  // guarded by mu_: marks alone are written again from then on (after a failed attempt)
  std::chrono::steady_clock::time_point marks_retry_at_{};
  bool marks_failing_ = false;    // guarded by mu_: the last attempt at marks (alone or in a
                                  // batch) failed
  std::size_t marked_ = 0;        // guarded by mu_
  std::condition_variable idle_;  // no record batch waits or is being written
  bool closing_ = false;          // guarded by mu_: no more records
  bool writing_ = false;          // guarded by mu_: a record batch is being written
  bool stopping_ = false;         // guarded by mu_
  bool finished_ = false;         // guarded by mu_: the thread has written its last batch
  std::size_t batches_ = 0;       // guarded by mu_
  std::thread thread_;
};

}  // namespace dmz

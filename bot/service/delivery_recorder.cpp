#include "bot/service/delivery_recorder.hpp"

#include <spdlog/spdlog.h>

#include "base/this_thread.hpp"

namespace dmz {

DeliveryRecorder::DeliveryRecorder(Store& store, std::size_t max_batch)
    : store_(store), max_batch_(max_batch == 0 ? 1 : max_batch) {
  thread_ = std::thread([this] {
    name_this_thread("deliveries");
    loop();
  });
}

DeliveryRecorder::~DeliveryRecorder() { stop(); }

void DeliveryRecorder::record(DeliveryId delivery, Answer answer) {
  {
    std::lock_guard lock(mu_);
    if (!closing_) {
      pending_.push_back({std::move(delivery), std::move(answer)});
      wake_.notify_one();
      return;
    }
  }
  answer(unavailable("the service is stopping"));
}

void DeliveryRecorder::handled(std::string id) {
  std::lock_guard lock(mu_);
  if (finished_) return;  // stopped: it is handled again at the next start
  handled_.push_back(std::move(id));
  wake_.notify_one();
}

void DeliveryRecorder::close() {
  std::unique_lock lock(mu_);
  closing_ = true;
  wake_.notify_all();
  idle_.wait(lock, [&] { return finished_ || (pending_.empty() && !writing_); });
}

void DeliveryRecorder::stop() {
  close();
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::size_t DeliveryRecorder::batches() const {
  std::lock_guard lock(mu_);
  return batches_;
}

std::size_t DeliveryRecorder::marked() const {
  std::lock_guard lock(mu_);
  return marked_;
}

void DeliveryRecorder::count_marks(std::vector<std::string>& marks, const Status& written) {
  if (marks.empty()) return;
  // The last attempt at marks, alone or riding in a batch, is what stop() goes by.
  const bool was_failing = marks_failing_;
  marks_failing_ = !written.ok();
  if (written.ok()) {
    marked_ += marks.size();
    return;
  }
  // Not written: kept for a later transaction (a delivery left unmarked is replayed at the
  // next start, after newer ones were handled). While stopping, they are left to that replay.
  if (stopping_) {
    spdlog::warn("cannot mark {} webhook deliveries handled (handled again at the next start): {}",
                 marks.size(), written.message());
    return;
  }
  if (!was_failing)
    spdlog::warn("cannot mark {} webhook deliveries handled yet, trying again: {}", marks.size(),
                 written.message());
  handled_.insert(handled_.end(), std::make_move_iterator(marks.begin()),
                  std::make_move_iterator(marks.end()));
  marks_retry_at_ = std::chrono::steady_clock::now() + kMarksRetry;
}

namespace {

// The store's calls, with whatever they throw (a bug) as an error: this thread must never end.
template <class F>
auto guarded(F write) -> decltype(write()) {
  try {
    return write();
  } catch (const std::exception& e) {
    return unavailable(std::string("store: ") + e.what());
  } catch (...) {
    return unavailable("store: an unknown exception");
  }
}

// Gives a delivery its answer. One that throws is its caller's bug: logged, and the other
// answers still go out (this thread must never end).
void give(const DeliveryRecorder::Answer& answer, Result<bool> result) {
  try {
    answer(std::move(result));
  } catch (const std::exception& e) {
    spdlog::error("the answer to a webhook delivery threw: {}", e.what());
  } catch (...) {
    spdlog::error("the answer to a webhook delivery threw");
  }
}

}  // namespace

void DeliveryRecorder::loop() {
  std::vector<Pending> batch;
  std::vector<DeliveryId> deliveries;
  std::vector<std::string> marks;
  for (;;) {
    batch.clear();
    deliveries.clear();
    marks.clear();
    {
      std::unique_lock lock(mu_);
      // No timer: a lone delivery is written at once; whatever arrives while that commit
      // waits for the disk forms the next batch. Marks alone wait out a failed attempt.
      for (;;) {
        const bool marks_due =
            !handled_.empty() && std::chrono::steady_clock::now() >= marks_retry_at_;
        if (!pending_.empty() || marks_due) break;
        if (stopping_) {
          // Everything is recorded; the marks left are tried once more, unless they just
          // failed (then the next start's replay handles their deliveries again).
          if (handled_.empty() || marks_failing_) {
            finished_ = true;
            idle_.notify_all();
            return;
          }
          break;
        }
        if (handled_.empty())
          wake_.wait(lock);
        else
          wake_.wait_until(lock, marks_retry_at_);
      }
      while (!pending_.empty() && batch.size() < max_batch_) {
        batch.push_back(std::move(pending_.front()));
        pending_.pop_front();
      }
      writing_ = !batch.empty();
      // The marks waiting ride in the batch's transaction (one commit for both), or are written
      // alone when no delivery waits.
      marks.swap(handled_);
    }
    if (batch.empty()) {
      Status s = guarded([&] { return store_.mark_deliveries_handled(marks); });
      std::lock_guard lock(mu_);
      count_marks(marks, s);
      continue;
    }
    for (auto& p : batch) deliveries.push_back(std::move(p.id));
    auto fresh = guarded(
        [&]() -> Result<std::vector<bool>> { return store_.record_deliveries(deliveries, marks); });
    {
      std::lock_guard lock(mu_);
      ++batches_;
      count_marks(marks, fresh.status());
    }
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (!fresh)
        give(batch[i].answer, fresh.error());
      else
        give(batch[i].answer, bool((*fresh)[i]));
    }
    {
      std::lock_guard lock(mu_);
      writing_ = false;
    }
    idle_.notify_all();
  }
}

}  // namespace dmz

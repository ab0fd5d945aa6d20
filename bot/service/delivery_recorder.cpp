#include "bot/service/delivery_recorder.hpp"

#include <vector>

namespace dmz {

DeliveryRecorder::DeliveryRecorder(Store& store, std::size_t max_batch)
    : store_(store), max_batch_(max_batch == 0 ? 1 : max_batch) {
  thread_ = std::thread([this] { loop(); });
}

DeliveryRecorder::~DeliveryRecorder() { stop(); }

void DeliveryRecorder::record(std::string id, queue::Millis at, Answer answer) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      pending_.push_back({DeliveryId{std::move(id), at}, std::move(answer)});
      wake_.notify_one();
      return;
    }
  }
  answer(unavailable("the service is stopping"));
}

void DeliveryRecorder::stop() {
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

void DeliveryRecorder::loop() {
  std::vector<Pending> batch;
  std::vector<DeliveryId> ids;
  for (;;) {
    batch.clear();
    ids.clear();
    {
      std::unique_lock lock(mu_);
      // No timer: a lone delivery is written at once; whatever arrives while that commit
      // waits for the disk forms the next batch.
      wake_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
      if (pending_.empty()) return;  // stopping, and everything was answered
      while (!pending_.empty() && batch.size() < max_batch_) {
        batch.push_back(std::move(pending_.front()));
        pending_.pop_front();
      }
    }
    for (const auto& p : batch) ids.push_back(p.id);
    auto fresh = store_.record_deliveries(ids);
    {
      std::lock_guard lock(mu_);
      ++batches_;
    }
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (!fresh)
        batch[i].answer(fresh.error());
      else
        batch[i].answer(bool((*fresh)[i]));
    }
  }
}

}  // namespace dmz

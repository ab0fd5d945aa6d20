// A Store that passes every call to a real one, except the calls a test tells it to fail (as
// leveldb's fault-injection tests break a file system): for proving that a failure on our side
// changes no state and is answered as `unavailable`.
// Threading: like the wrapped store; the fault counters are atomic.
#pragma once

#include <atomic>
#include <functional>
#include <stdexcept>
#include <vector>

#include "bot/store/store.hpp"

namespace dmz {

class FaultInjectionStore final : public Store {
 public:
  explicit FaultInjectionStore(Store& real) : real_(real) {}

  std::atomic<int> fail_saves{0};   // the next N saves fail as a full disk would
  std::atomic<int> throw_saves{0};  // the next N saves throw, as a bug would
  std::atomic<int> fail_reads{0};   // the next N reads of archived PRs fail as a locked database
  std::atomic<int> fail_deliveries{0};  // the next N delivery batches fail as a locked database
  std::atomic<int> fail_marks{0};       // the next N marks of handled deliveries fail so too
  // Runs before each batch of delivery ids is written (set it before the store is shared).
  std::function<void(const std::vector<DeliveryId>&)> before_deliveries;

  Result<Saved> save(const Change& c) override {
    if (take(fail_saves)) return unavailable("sqlite: step 'INSERT': database or disk is full");
    if (take(throw_saves)) throw std::logic_error("store: a bug");
    return real_.save(c);
  }
  Result<std::optional<Loaded>> load(const std::string& repo) override { return real_.load(repo); }
  Result<bool> has_state() override { return real_.has_state(); }
  Result<std::optional<queue::PullRequest>> archived(const std::string& repo, int n) override {
    if (take(fail_reads)) return unavailable("sqlite: step 'SELECT': database is locked");
    return real_.archived(repo, n);
  }
  Result<std::vector<HistoryEntry>> history(const std::string& repo, std::int64_t before,
                                            std::size_t limit) override {
    return real_.history(repo, before, limit);
  }
  Result<std::vector<HistoryEntry>> pr_history(const std::string& repo, int n,
                                               std::size_t limit) override {
    return real_.pr_history(repo, n, limit);
  }
  Result<std::vector<EventLogEntry>> events(const std::string& repo, std::size_t limit) override {
    return real_.events(repo, limit);
  }
  Result<std::vector<EventLogEntry>> pr_events(const std::string& repo, int n,
                                               std::size_t limit) override {
    return real_.pr_events(repo, n, limit);
  }
  Result<std::vector<EventLogEntry>> pr_heads(const std::string& repo, int n,
                                              std::size_t limit) override {
    return real_.pr_heads(repo, n, limit);
  }
  Result<std::vector<EventLogEntry>> events_after(const std::string& repo, std::int64_t after,
                                                  std::size_t limit) override {
    return real_.events_after(repo, after, limit);
  }
  Result<std::vector<forges::OutboxMessage>> outbox(const std::string& repo) override {
    return real_.outbox(repo);
  }
  Status outbox_delivered(std::int64_t id) override { return real_.outbox_delivered(id); }
  Status outbox_retry(std::int64_t id, int attempts, queue::Millis next_at,
                      const std::string& e) override {
    return real_.outbox_retry(id, attempts, next_at, e);
  }
  Result<std::vector<bool>> record_deliveries(const std::vector<DeliveryId>& ids,
                                              const std::vector<std::string>& handled) override {
    if (before_deliveries) before_deliveries(ids);
    if (take(fail_deliveries)) return unavailable("sqlite: step 'INSERT': database is locked");
    return real_.record_deliveries(ids, handled);
  }
  Status mark_deliveries_handled(const std::vector<std::string>& ids) override {
    if (take(fail_marks)) return unavailable("sqlite: step 'UPDATE': database is locked");
    return real_.mark_deliveries_handled(ids);
  }
  Result<std::vector<DeliveryId>> unhandled_deliveries(std::int64_t after,
                                                       std::size_t limit) override {
    return real_.unhandled_deliveries(after, limit);
  }
  Result<std::size_t> prune_deliveries(queue::Millis before, std::size_t limit) override {
    return real_.prune_deliveries(before, limit);
  }
  Result<std::size_t> prune_history(queue::Millis before, std::size_t limit) override {
    return real_.prune_history(before, limit);
  }
  Result<bool> acquire_lease(const std::string& repo, const std::string& owner, queue::Millis now,
                             queue::Millis ttl) override {
    return real_.acquire_lease(repo, owner, now, ttl);
  }
  Status release_lease(const std::string& repo, const std::string& owner) override {
    return real_.release_lease(repo, owner);
  }
  Result<std::int64_t> record_promotion(const PromotionRecord& r) override {
    if (take(fail_saves)) return unavailable("sqlite: step 'INSERT': database or disk is full");
    return real_.record_promotion(r);
  }
  Result<std::vector<PromotionRecord>> promotions(const std::string& repo,
                                                  std::size_t limit) override {
    return real_.promotions(repo, limit);
  }
  Result<std::optional<PromotionRecord>> last_promotion(const std::string& repo,
                                                        const std::string& target) override {
    return real_.last_promotion(repo, target);
  }
  Result<std::vector<std::pair<std::string, std::string>>> judged_tags(
      const std::string& repo) override {
    return real_.judged_tags(repo);
  }

 private:
  static bool take(std::atomic<int>& n) {
    int v = n.load();
    while (v > 0)
      if (n.compare_exchange_weak(v, v - 1)) return true;
    return false;
  }
  Store& real_;
};

}  // namespace dmz

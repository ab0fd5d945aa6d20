// A recording fake forge for tests: it remembers every message it was asked to deliver, fails
// the next deliveries when told to, answers webhooks with scripted deliveries, and turns
// fetches into events as the plain forge does.
// Threading: one thread at a time (tests).
#pragma once

#include <deque>
#include <vector>

#include "forges/forge.hpp"
#include "forges/plain.hpp"

namespace dmz::forges {

class FakeForge final : public Forge {
 public:
  explicit FakeForge(std::string master = "master") : master_(std::move(master)) {}

  std::string_view kind() const override { return "fake"; }
  std::vector<queue::Event> events_from_fetch(const queue::RepoState& state, const RemoteRefs& refs,
                                              queue::Millis now) const override {
    return forges::events_from_fetch(state, refs, master_, now);
  }
  Result<Delivery> webhook(const InboundRequest& request, queue::Millis) const override {
    webhooks.push_back(request);
    if (scripted_webhooks.empty()) return not_found("no scripted webhook");
    Result<Delivery> next = scripted_webhooks.front();
    scripted_webhooks.pop_front();
    return next;
  }
  Status deliver(const OutboxMessage& message) override {
    delivered.push_back(message);
    if (failures.empty()) return {};
    Status next = failures.front();
    failures.pop_front();
    return next;
  }

  // What it was asked.
  std::vector<OutboxMessage> delivered;
  mutable std::vector<InboundRequest> webhooks;
  // What it answers next.
  std::deque<Status> failures;  // one per delivery, then success
  mutable std::deque<Result<Delivery>> scripted_webhooks;

 private:
  std::string master_;
};

}  // namespace dmz::forges

// A fake forge for tests of the driver and the simulator: fetches turn into events as the plain
// forge makes them, on a master of the test's choosing; it takes no webhooks (the base class's
// answer), and every delivery succeeds. The tests that use it drive the outbox through their
// own OutboxPort, so nothing is ever delivered through it.
// Threading: one thread at a time (tests).
#pragma once

#include <string>
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
  Status deliver(const OutboxMessage&) override { return {}; }

 private:
  std::string master_;
};

}  // namespace dmz::forges

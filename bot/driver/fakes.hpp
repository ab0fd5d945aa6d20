// Recording fakes of the driver's ports, for tests and the simulator's checks: each remembers
// what it was asked, in order; the test answers by calling the driver itself.
// Threading: one thread at a time.
#pragma once

#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "bot/driver/ports.hpp"
#include "forges/forge.hpp"

namespace dmz::driver {

struct Fetch {
  std::string repo;
};

// Every call of every port, as one ordered log.
using Call = std::variant<Fetch, queue::BuildCandidate, queue::ResetDmz, queue::FastForwardMaster,
                          queue::CheckPolicy, queue::CheckCandidate, queue::StartBuild,
                          queue::CancelBuild, forges::OutboxMessage, queue::PruneCandidates>;

class RecordingPorts final : public GitPort, public PolicyPort, public CiPort, public OutboxPort {
 public:
  void fetch(const std::string& repo) override { calls.emplace_back(Fetch{repo}); }
  void build_candidate(const std::string&, const queue::BuildCandidate& a) override {
    calls.emplace_back(a);
  }
  void reset_dmz(const std::string&, const queue::ResetDmz& a) override { calls.emplace_back(a); }
  void fast_forward(const std::string&, const queue::FastForwardMaster& a) override {
    calls.emplace_back(a);
  }
  void prune_candidates(const std::string&, const queue::PruneCandidates& a) override {
    calls.emplace_back(a);
  }
  void check_policy(const std::string&, const queue::CheckPolicy& a) override {
    calls.emplace_back(a);
  }
  void check_candidate(const std::string&, const queue::CheckCandidate& a) override {
    calls.emplace_back(a);
  }
  void start_build(const std::string&, const queue::StartBuild& a) override {
    calls.emplace_back(a);
  }
  void cancel_build(const std::string&, const queue::CancelBuild& a) override {
    calls.emplace_back(a);
  }
  void send(const forges::OutboxMessage& m) override { calls.emplace_back(m); }

  // The calls of type T so far, in order.
  template <class T>
  std::vector<T> of() const {
    std::vector<T> out;
    for (const auto& c : calls)
      if (const auto* t = std::get_if<T>(&c)) out.push_back(*t);
    return out;
  }
  // Forgets what was recorded (after a test has looked at it).
  void clear() { calls.clear(); }

  std::vector<Call> calls;
};

}  // namespace dmz::driver

// The narrow ports through which the driver asks the world for things: git, the policy gate,
// CI and the forge's outbox. Each call returns at once and never calls back into the driver;
// its result comes back later through the driver's own methods (apply, fetched, fetch_failed,
// delivered), called by whoever owns both: the service's engine thread, a test, the simulator.
// Threading: called on the driver's thread only.
#pragma once

#include <string>

#include "forges/forge.hpp"
#include "queue/model.hpp"

namespace dmz::driver {

class GitPort {
 public:
  virtual ~GitPort() = default;
  // Fetches the remote; answers fetched(repo, refs) or fetch_failed(repo, why).
  virtual void fetch(const std::string& repo) = 0;
  // Merges the items onto the base in memory, signs, pushes dmz; answers apply(MergeDone).
  virtual void build_candidate(const std::string& repo, const queue::BuildCandidate& action) = 0;
  // Forces dmz to a commit. No answer: a failure is logged and redone after a restart.
  virtual void reset_dmz(const std::string& repo, const queue::ResetDmz& action) = 0;
  // Pushes master forward with a lease; answers apply(MasterPushed).
  virtual void fast_forward(const std::string& repo, const queue::FastForwardMaster& action) = 0;
  // Deletes the remote branches of candidates that left the train. No answer: a failure is
  // logged and redone after a restart.
  virtual void prune_candidates(const std::string& repo, const queue::PruneCandidates& action) = 0;
};

class PolicyPort {
 public:
  virtual ~PolicyPort() = default;
  // Judges a PR; answers apply(PolicyChecked).
  virtual void check_policy(const std::string& repo, const queue::CheckPolicy& action) = 0;
  // Judges a candidate's own merge commits; answers apply(CandidateChecked).
  virtual void check_candidate(const std::string& repo, const queue::CheckCandidate& action) = 0;
};

class CiPort {
 public:
  virtual ~CiPort() = default;
  // Builds a candidate (a local runner) or nothing (external CI); answers apply(CheckReported).
  virtual void start_build(const std::string& repo, const queue::StartBuild& action) = 0;
  virtual void cancel_build(const std::string& repo, const queue::CancelBuild& action) = 0;
};

class OutboxPort {
 public:
  virtual ~OutboxPort() = default;
  // Delivers through the repository's forge; answers delivered(message.id, status).
  virtual void send(const forges::OutboxMessage& message) = 0;
};

}  // namespace dmz::driver

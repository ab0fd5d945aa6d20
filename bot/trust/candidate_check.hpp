// The candidate gate: judges what dmzbot itself adds to dmz for a candidate, its merge commits
// (base..sha along first parents). Each must be signed by an account the policy allows to sign
// merges, and its tree must equal the recomputed merge of its parents (no evil merge).
// Threading: check() runs on the repository's git worker, one call at a time.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "bot/trust/facts.hpp"
#include "config/config.hpp"
#include "queue/model.hpp"

namespace dmz {
namespace git {
class Mirror;
}

class CandidateChecker {
 public:
  explicit CandidateChecker(const config::Repo& repo);
  queue::CandidateChecked check(git::Mirror& mirror, const queue::CheckCandidate& candidate,
                                queue::Millis now);
  std::uint64_t signature_verifications() const { return gatherer_.verifications(); }

 private:
  std::filesystem::path policy_root_;
  std::string master_;
  trust::FactGatherer gatherer_;
  trust::KeyCache key_cache_;
};

}  // namespace dmz

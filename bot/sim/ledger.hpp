// The simulated world's record of what its git, its CI and the notices did, and the invariants
// of a merge queue checked against it as it happens: master only fast-forwards, to a sha that
// built green holding exactly what it holds; nothing lands twice; an outcome, once told, never
// changes; and at the end, every PR the engine finished was told, every landing reported.
// Kept apart from the world so that tests can feed it the moves a broken queue would make.
// A commit is its parent plus the PRs merged onto it; every master remembers how many landings
// it held. What a commit holds beyond the master it descends from is found by walking up a
// chain of candidates, never the whole history, so that a check costs the same after 100,000
// landings as after ten.
// Threading: none; one run owns its ledger.
#pragma once

#include <cstddef>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "queue/model.hpp"

namespace dmz::sim {

// What a sha holds: the PRs merged (in order) on top of the master commit `base`.
struct Contents {
  queue::Sha base;
  std::vector<int> prs;

  bool operator==(const Contents&) const = default;
};

class Ledger {
 public:
  enum class Outcome { None, Landed, Ejected };
  static constexpr queue::Millis kNever = std::numeric_limits<queue::Millis>::max();
  static constexpr std::size_t kMaxViolations = 20;  // the first ones tell the story

  // Master starts at `origin`; PRs are numbered 1..prs.
  Ledger(const queue::Sha& origin, int prs);

  // ---- what happened (each checked as it is recorded) ----------------------------------------

  // Git wrote `sha`: `parent` with `prs` merged onto it. False (a violation) on an unknown
  // parent, and nothing is recorded.
  bool record_commit(const queue::Sha& sha, const queue::Sha& parent, std::vector<int> prs);
  // CI finished a build of `sha` that held `held`. Only a green build lets master move there; a
  // red one does not undo an earlier green one (a flaky retry).
  void record_build(const queue::Sha& sha, Contents held, bool green);
  // Master was pushed from `from` to `to` at `at`. False (a violation) for an unknown sha, and
  // master stays; otherwise master moves, whatever else broke, and what it brought has landed.
  bool master_moved(const queue::Sha& from, const queue::Sha& to, queue::Millis at);
  // A notice told PR `pr`'s outcome. Telling the same outcome again is fine (the outbox
  // delivers at least once); any other change is a violation.
  void outcome(int pr, Outcome told);
  // At the end of a run, PR `pr` (approved before the stop) stands at `engine` (nullopt: the
  // engine does not know it). Still untold, it must be in flight: not lost, and not finished
  // without a notice.
  void check_told(int pr, std::optional<queue::PrStatus> engine);
  // At the end of a run: a PR on master must have been reported merged.
  void check_landing_told(int pr);
  // A violation the world found itself (a refused event), kept in order with the ledger's.
  void violation(std::string what);

  // ---- what it knows --------------------------------------------------------------------------

  const std::vector<std::string>& violations() const { return violations_; }
  const queue::Sha& master() const { return master_; }
  bool knows(const queue::Sha& sha) const { return commits_.count(sha) != 0; }
  // What `sha` holds beyond the master it descends from (or the unknown sha its walk ends at).
  Contents contents(const queue::Sha& sha) const;
  // The last PR merged into `sha` or its ancestors; 0 for none.
  int last_pr(queue::Sha sha) const;
  // How many landings `master` held when master was there; 0 if it never was.
  std::size_t landings_at(const queue::Sha& master) const;
  const std::vector<std::pair<queue::Millis, int>>& landings() const { return landings_; }
  queue::Millis landed_at(int pr) const { return landed_at_.at(index(pr)); }
  Outcome outcome_of(int pr) const { return outcome_.at(index(pr)); }
  int undecided() const { return undecided_; }  // PRs neither landed nor ejected

 private:
  struct Commit {
    queue::Sha parent;  // empty for the origin
    std::vector<int> added;
  };
  static std::size_t index(int pr) { return static_cast<std::size_t>(pr); }

  void check_fast_forward(const queue::Sha& from, const queue::Sha& to, const Contents& next);
  void check_built_green(const queue::Sha& to, const Contents& next);
  void check_lands_once(const std::vector<int>& prs);
  bool same_tree(const Contents& a, const Contents& b) const;

  queue::Sha master_;
  std::map<queue::Sha, Commit> commits_;
  std::map<queue::Sha, std::size_t> master_history_;     // every master so far: landings it held
  std::vector<std::pair<queue::Millis, int>> landings_;  // (when, PR), in landing order
  std::map<queue::Sha, Contents> green_;  // what each sha held when it last built green
  std::vector<queue::Millis> landed_at_;  // by PR number
  std::vector<Outcome> outcome_;          // by PR number: what the notices told
  int undecided_ = 0;
  std::vector<std::string> violations_;
};

}  // namespace dmz::sim

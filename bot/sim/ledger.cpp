#include "bot/sim/ledger.hpp"

#include <algorithm>
#include <set>

namespace dmz::sim {
namespace {

namespace q = queue;

std::string pr_name(int pr) { return "#" + std::to_string(pr); }

std::string describe(const Contents& c) {
  std::string out = c.base;
  for (int pr : c.prs) out += " +" + pr_name(pr);
  return out;
}

}  // namespace

Ledger::Ledger(const q::Sha& origin, int prs)
    : master_(origin),
      landed_at_(index(prs) + 1, kNever),
      outcome_(index(prs) + 1, Outcome::None),
      undecided_(prs) {
  commits_[origin] = {};
  master_history_[origin] = 0;
}

bool Ledger::record_commit(const q::Sha& sha, const q::Sha& parent, std::vector<int> prs) {
  if (!knows(parent)) {
    violation("commit " + sha + " on an unknown base " + parent);
    return false;
  }
  commits_[sha] = Commit{parent, std::move(prs)};
  return true;
}

void Ledger::record_build(const q::Sha& sha, Contents held, bool green) {
  if (green) green_[sha] = std::move(held);
}

bool Ledger::master_moved(const q::Sha& from, const q::Sha& to, q::Millis at) {
  if (!knows(to)) {
    violation("master pushed to an unknown sha");
    return false;
  }
  const Contents next = contents(to);
  check_fast_forward(from, to, next);
  check_built_green(to, next);
  check_lands_once(next.prs);
  for (int pr : next.prs) {
    landed_at_.at(index(pr)) = at;
    landings_.emplace_back(at, pr);
  }
  master_history_[to] = landings_.size();
  master_ = to;
  return true;
}

void Ledger::outcome(int pr, Outcome told) {
  if (told == Outcome::None) return;  // a notice tells an outcome or nothing
  Outcome& slot = outcome_.at(index(pr));
  if (told == Outcome::Landed && landed_at(pr) == kNever)
    violation(pr_name(pr) + " reported merged but not on master");
  if (slot != Outcome::None && slot != told)
    violation(pr_name(pr) + (slot == Outcome::Landed ? " failed after it landed"
                                                     : " landed after it was reported failed"));
  if (slot == Outcome::None) --undecided_;
  slot = told;
}

void Ledger::check_told(int pr, std::optional<q::PrStatus> engine) {
  if (outcome_of(pr) != Outcome::None) return;
  if (!engine || *engine == q::PrStatus::Open || *engine == q::PrStatus::Cancelled) {
    violation(pr_name(pr) + " was lost");
  } else if (*engine == q::PrStatus::Failed || *engine == q::PrStatus::Merged) {
    violation(pr_name(pr) + " lost notice: " + std::string(q::to_string(*engine)) +
              " in the engine, never told");
  }
}

void Ledger::check_landing_told(int pr) {
  if (landed_at(pr) != kNever && outcome_of(pr) != Outcome::Landed)
    violation(pr_name(pr) + " is on master but was not reported merged");
}

void Ledger::violation(std::string what) {
  if (violations_.size() < kMaxViolations) violations_.push_back(std::move(what));
}

Contents Ledger::contents(const q::Sha& sha) const {
  std::vector<const std::vector<int>*> parts;  // newest first
  q::Sha at = sha;
  while (!master_history_.count(at)) {
    auto it = commits_.find(at);
    if (it == commits_.end()) break;
    parts.push_back(&it->second.added);
    at = it->second.parent;
  }
  Contents out{at, {}};
  for (auto p = parts.rbegin(); p != parts.rend(); ++p)
    out.prs.insert(out.prs.end(), (*p)->begin(), (*p)->end());
  return out;
}

int Ledger::last_pr(q::Sha sha) const {
  for (;;) {
    auto it = commits_.find(sha);
    if (it == commits_.end()) return 0;
    if (!it->second.added.empty()) return it->second.added.back();
    sha = it->second.parent;
  }
}

std::size_t Ledger::landings_at(const q::Sha& master) const {
  auto it = master_history_.find(master);
  return it == master_history_.end() ? 0 : it->second;
}

void Ledger::check_fast_forward(const q::Sha& from, const q::Sha& to, const Contents& next) {
  if (from != master_) violation("master moved from " + from + ", but it was at " + master_);
  if (next.base != master_) violation("master moved to " + to + ", not a fast-forward");
}

void Ledger::check_built_green(const q::Sha& to, const Contents& next) {
  auto green = green_.find(to);
  if (green == green_.end()) {
    violation("master moved to " + to + ", which never built green");
  } else if (!same_tree(green->second, next)) {
    violation("master moved to " + to + ", which built green with other contents (" +
              describe(green->second) + ", not " + describe(next) + ")");
  }
}

void Ledger::check_lands_once(const std::vector<int>& prs) {
  std::set<int> seen;
  for (int pr : prs)
    if (!seen.insert(pr).second || landed_at(pr) != kNever)
      violation(pr_name(pr) + " is on master twice");
}

// Whether two contents make the same tree. A build may have held a master that has moved on
// since (a candidate chained on one that landed first): then the older one's PRs must be what
// master gained in between, followed by the newer one's.
bool Ledger::same_tree(const Contents& a, const Contents& b) const {
  if (a == b) return true;
  if (!master_history_.count(a.base) || !master_history_.count(b.base)) return false;
  const bool a_older = landings_at(a.base) <= landings_at(b.base);
  const Contents& older = a_older ? a : b;
  const Contents& newer = a_older ? b : a;
  const std::size_t from = landings_at(older.base), to = landings_at(newer.base);
  if (older.prs.size() != to - from + newer.prs.size()) return false;
  for (std::size_t i = from; i < to; ++i)
    if (older.prs[i - from] != landings_[i].second) return false;
  return std::equal(newer.prs.begin(), newer.prs.end(),
                    older.prs.begin() + static_cast<std::ptrdiff_t>(to - from));
}

}  // namespace dmz::sim

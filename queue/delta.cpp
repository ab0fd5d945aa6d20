#include "queue/delta.hpp"

namespace dmz::queue {

StateDelta diff(const RepoState& before, const RepoState& after) {
  StateDelta d;
  d.header_changed =
      before.master != after.master || before.next_candidate != after.next_candidate ||
      before.retry_after != after.retry_after || before.window != after.window ||
      before.observed != after.observed || before.policy_epoch != after.policy_epoch ||
      before.trust_root != after.trust_root;
  d.train_changed = before.train != after.train;
  // Both maps are ordered by number: one merge-like walk.
  auto b = before.prs.begin();
  auto a = after.prs.begin();
  while (b != before.prs.end() || a != after.prs.end()) {
    if (a == after.prs.end() || (b != before.prs.end() && b->first < a->first)) {
      d.removed_prs.push_back(b->first);
      ++b;
    } else if (b == before.prs.end() || a->first < b->first) {
      d.changed_prs.push_back(a->first);
      ++a;
    } else {
      if (!(a->second == b->second)) d.changed_prs.push_back(a->first);
      ++a;
      ++b;
    }
  }
  return d;
}

std::optional<int> pr_of(const Event& event) {
  return std::visit(
      [](const auto& e) -> std::optional<int> {
        if constexpr (requires { e.number; })
          return e.number;
        else
          return std::nullopt;
      },
      event);
}

}  // namespace dmz::queue

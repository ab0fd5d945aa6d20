#include "forges/forge.hpp"

#include "queue/delta.hpp"

namespace dmz::forges {

bool still_current(const queue::RepoState& snapshot, const queue::RepoState& now,
                   const queue::Event& e) {
  const auto n = queue::pr_of(e);
  if (!n) return true;
  auto then = snapshot.prs.find(*n);
  auto current = now.prs.find(*n);
  if (then == snapshot.prs.end()) return current == now.prs.end();
  return current != now.prs.end() && current->second.head == then->second.head;
}

Result<queue::PrOpened> Forge::register_pull(const RemoteRefs&, const Registration&,
                                             queue::Millis) const {
  return invalid("pull requests of a " + std::string(kind()) +
                 " repository are registered by the forge, not through dmzbot's API");
}

Result<Delivery> Forge::webhook(const InboundRequest&, queue::Millis) const {
  return not_found("the " + std::string(kind()) + " forge has no webhooks");
}

Result<bool> Forge::may_approve(const std::string&) {
  return not_found("the " + std::string(kind()) + " forge has no API to ask who may approve");
}

Result<std::optional<LaterCommand>> Forge::later_command(int, queue::Millis) {
  return std::optional<LaterCommand>{};
}

Result<std::optional<LaterCommand>> Forge::label_overtaken(int, bool, const std::string&,
                                                           queue::Millis) {
  return std::optional<LaterCommand>{};
}

Result<std::vector<std::string>> Forge::approving_reviewers(int, const queue::Sha&) {
  return std::vector<std::string>{};
}

Result<std::vector<queue::Event>> Forge::checks_of(const queue::Sha&, queue::Millis) {
  return std::vector<queue::Event>{};
}

Result<std::vector<queue::Event>> Forge::reconcile(const ReconcileInput&, queue::Millis) {
  return std::vector<queue::Event>{};
}

Result<std::optional<queue::PrOpened>> Forge::open_pull(const PullToOpen&, queue::Millis) {
  return not_found("the " + std::string(kind()) + " forge has no API to open pull requests");
}

Status Forge::show(const PullSummary&) { return {}; }

}  // namespace dmz::forges

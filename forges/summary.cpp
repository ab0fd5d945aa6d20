#include "forges/summary.hpp"

#include <algorithm>

#include "queue/engine.hpp"

namespace dmz::forges {
namespace {

namespace q = queue;

std::string short_sha(const q::Sha& sha) { return sha.substr(0, 7); }

}  // namespace

std::string_view to_string(PullSummary::State state) {
  switch (state) {
    case PullSummary::State::kQueued:
      return "queued";
    case PullSummary::State::kInProgress:
      return "in_progress";
    case PullSummary::State::kSuccess:
      return "success";
    case PullSummary::State::kFailure:
      return "failure";
    case PullSummary::State::kNeutral:
      return "neutral";
  }
  return "?";
}

std::optional<PullSummary> summarize(const q::RepoState& state, const q::PullRequest& pr,
                                     const std::vector<std::string>& required) {
  PullSummary s;
  s.number = pr.number;
  s.head = pr.head;
  auto lines = [](const std::vector<std::string>& items) {
    std::string out;
    for (const auto& i : items) out += "- " + i + "\n";
    return out;
  };
  switch (pr.status) {
    case q::PrStatus::Open:
      if (pr.reason_code == q::Reason::None) return std::nullopt;  // nothing asked of dmzbot
      s.state = PullSummary::State::kNeutral;
      s.title = "not queued: " + pr.reason;
      break;
    case q::PrStatus::Approved:
      s.state = PullSummary::State::kQueued;
      s.title = "approved by " + (pr.approval ? pr.approval->approver : std::string("?")) +
                "; checking the trust policy";
      break;
    case q::PrStatus::Queued: {
      s.state = PullSummary::State::kQueued;
      auto order = q::queue_order(state);
      auto at = std::find(order.begin(), order.end(), pr.number);
      s.title = at == order.end() ? std::string("queued")
                                  : "queued at position " + std::to_string(at - order.begin() + 1) +
                                        " of " + std::to_string(order.size());
      if (pr.priority != 0) s.title += " (priority " + std::to_string(pr.priority) + ")";
      break;
    }
    case q::PrStatus::Merging:
    case q::PrStatus::InDmz:
    case q::PrStatus::Building: {
      s.state = PullSummary::State::kInProgress;
      const q::Candidate* k = nullptr;
      for (const auto& c : state.train)
        if (pr.candidate && c.id == *pr.candidate) k = &c;
      if (!k) {
        s.title = "building";
        break;
      }
      s.title = "building in candidate " + std::to_string(k->id) +
                (k->sha.empty() ? std::string(" (merging)") : " (" + short_sha(k->sha) + ")");
      std::vector<std::string> checks;
      for (const auto& context : required) {
        auto it = k->checks.find(context);
        checks.push_back(context + ": " +
                         (it == k->checks.end() ? std::string("waiting")
                                                : std::string(q::to_string(it->second.state))));
      }
      s.text = lines(checks);
      break;
    }
    case q::PrStatus::Merged:
      s.state = PullSummary::State::kSuccess;
      s.title = pr.reason.empty() ? std::string("merged") : pr.reason;
      break;
    case q::PrStatus::Failed:
      s.state = PullSummary::State::kFailure;
      s.title = pr.reason;
      s.text = lines(pr.details);
      break;
    case q::PrStatus::Cancelled:
      if (pr.reason_code == q::Reason::Closed) return std::nullopt;
      s.state = PullSummary::State::kNeutral;
      s.title = pr.reason;
      break;
  }
  return s;
}

}  // namespace dmz::forges

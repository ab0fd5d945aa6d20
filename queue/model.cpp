#include "queue/model.hpp"

namespace dmz::queue {

std::string_view to_string(PrStatus s) {
  switch (s) {
    case PrStatus::Open:
      return "open";
    case PrStatus::Approved:
      return "approved";
    case PrStatus::Queued:
      return "queued";
    case PrStatus::Merging:
      return "merging";
    case PrStatus::InDmz:
      return "in_dmz";
    case PrStatus::Building:
      return "building";
    case PrStatus::Merged:
      return "merged";
    case PrStatus::Failed:
      return "failed";
    case PrStatus::Cancelled:
      return "cancelled";
  }
  return "?";
}

std::string_view to_string(CheckState s) {
  switch (s) {
    case CheckState::Pending:
      return "pending";
    case CheckState::Success:
      return "success";
    case CheckState::Failure:
      return "failure";
    case CheckState::Error:
      return "error";
  }
  return "?";
}

std::string_view to_string(CandidateStatus s) {
  switch (s) {
    case CandidateStatus::Merging:
      return "merging";
    case CandidateStatus::InDmz:
      return "in_dmz";
    case CandidateStatus::Building:
      return "building";
    case CandidateStatus::Landing:
      return "landing";
  }
  return "?";
}

std::optional<CheckState> parse_check_state(std::string_view s) {
  for (auto c : {CheckState::Pending, CheckState::Success, CheckState::Failure, CheckState::Error})
    if (to_string(c) == s) return c;
  return std::nullopt;
}

}  // namespace dmz::queue

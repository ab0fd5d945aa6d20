#include "queue/model.hpp"

namespace dmz::queue {

Stage stage(PrStatus status) {
  switch (status) {
    case PrStatus::Open:
    case PrStatus::Failed:
    case PrStatus::Cancelled:
      return Stage::Idle;
    case PrStatus::Approved:
    case PrStatus::Queued:
      return Stage::Waiting;
    case PrStatus::Merging:
    case PrStatus::InDmz:
    case PrStatus::Building:
      return Stage::InTrain;
    case PrStatus::Merged:
      return Stage::Done;
  }
  return Stage::Idle;
}

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

std::string_view to_string(Reason r) {
  switch (r) {
    case Reason::None:
      return "";
    case Reason::BuildFailed:
      return "build-failed";
    case Reason::CheckTimeout:
      return "check-timeout";
    case Reason::MergeConflict:
      return "merge-conflict";
    case Reason::PolicyFailed:
      return "policy-failed";
    case Reason::CandidatePolicyFailed:
      return "candidate-policy-failed";
    case Reason::NewPush:
      return "new-push";
    case Reason::RewrittenHistory:
      return "rewritten-history";
    case Reason::Cancelled:
      return "cancelled";
    case Reason::Closed:
      return "closed";
    case Reason::MasterMoved:
      return "master-moved";
    case Reason::TransientError:
      return "transient-error";
    case Reason::Unmergeable:
      return "unmergeable";
    case Reason::Merged:
      return "merged";
  }
  return "?";
}

std::optional<Reason> parse_reason(std::string_view s) {
  for (int i = static_cast<int>(Reason::None); i <= static_cast<int>(Reason::Merged); ++i)
    if (to_string(static_cast<Reason>(i)) == s) return static_cast<Reason>(i);
  return std::nullopt;
}

std::string_view to_string(NoticeKind k) {
  switch (k) {
    case NoticeKind::Info:
      return "info";
    case NoticeKind::Success:
      return "success";
    case NoticeKind::Failure:
      return "failure";
  }
  return "?";
}

std::optional<NoticeKind> parse_notice_kind(std::string_view s) {
  for (auto k : {NoticeKind::Info, NoticeKind::Success, NoticeKind::Failure})
    if (to_string(k) == s) return k;
  return std::nullopt;
}

std::optional<CheckState> parse_check_state(std::string_view s) {
  for (auto c : {CheckState::Pending, CheckState::Success, CheckState::Failure, CheckState::Error})
    if (to_string(c) == s) return c;
  return std::nullopt;
}

std::string_view to_string(Strategy s) {
  switch (s) {
    case Strategy::Serial:
      return "serial";
    case Strategy::Batch:
      return "batch";
    case Strategy::Train:
      return "train";
    case Strategy::Adaptive:
      return "adaptive";
  }
  return "?";
}

std::optional<Strategy> parse_strategy(std::string_view s) {
  for (auto k : {Strategy::Serial, Strategy::Batch, Strategy::Train, Strategy::Adaptive})
    if (to_string(k) == s) return k;
  return std::nullopt;
}

std::string_view to_string(Lanes l) {
  switch (l) {
    case Lanes::None:
      return "none";
    case Lanes::Groups:
      return "groups";
    case Lanes::Paths:
      return "paths";
  }
  return "?";
}

std::optional<Lanes> parse_lanes(std::string_view s) {
  for (auto k : {Lanes::None, Lanes::Groups, Lanes::Paths})
    if (to_string(k) == s) return k;
  return std::nullopt;
}

}  // namespace dmz::queue

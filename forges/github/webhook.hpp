// GitHub webhooks: the signature check (X-Hub-Signature-256, HMAC-SHA256 of the body, compared
// in constant time) and what each delivery means for one repository, as domain events and
// follow-ups. Pure: no I/O, no clock (time comes in `now`).
// Threading: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "base/status.hpp"
#include "forges/forge.hpp"

namespace dmz::forges::github {

struct WebhookSettings {
  std::string repo;  // "owner/name" (compared without regard to case, as GitHub does)
  std::string master = "master";
  std::string merge_label = "dmz:merge";
  std::string bot_name = "dmzbot";  // a login; "name[bot]" for an App
  std::string try_branch = "dmz-try";
};

// unauthenticated unless `header` is "sha256=" and the hex HMAC-SHA256 of `body` under
// `secret`. An empty secret never matches: webhooks are never taken unsigned.
Status verify_signature(std::string_view secret, std::string_view body, std::string_view header);

// The JSON text of a delivery: the body (application/json), or its `payload` field
// (application/x-www-form-urlencoded). invalid for anything else.
Result<std::string> payload_of(const InboundRequest& request);

// What delivery `id` of event `event` (X-GitHub-Event) with JSON `payload` means for
// `settings.repo`: not_found when it is about another repository; invalid when the JSON is
// malformed or lacks what the event must carry. Events dmzbot does not use give an empty
// delivery (acknowledged and ignored).
Result<Delivery> parse_delivery(const WebhookSettings& settings, std::string_view event,
                                std::string_view id, std::string_view payload, queue::Millis now);

// A delivery as it came: the signature checked under `secret`, then the payload read and
// parsed for `settings.repo` (payload_of, parse_delivery). GitHubForge::webhook.
Result<Delivery> read_delivery(const WebhookSettings& settings, std::string_view secret,
                               const InboundRequest& request, queue::Millis now);

// A commit status's state ("success", "failure", "error", else pending) as a check state.
queue::CheckState status_state(const std::string& state);
// A check run's state: anything not completed is pending; skipped and neutral runs do not
// stand in the way (as on GitHub's own branch protection); cancelled is an error. Webhooks and
// reconciliation both read check runs through this one translation.
queue::CheckState run_state(const std::string& status, const std::string& conclusion);

// The login people mention to address the bot: bot_name without a trailing "[bot]".
std::string mention_name(std::string_view bot_name);
// Whether `login` is the bot itself (its own labels and comments are not commands).
bool is_bot(std::string_view login, std::string_view bot_name);

// The PR number of a try branch "<try_branch>/<n>", or 0.
int try_number(std::string_view branch, std::string_view try_branch);

}  // namespace dmz::forges::github

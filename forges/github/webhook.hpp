// GitHub webhooks: the signature check (X-Hub-Signature-256, HMAC-SHA256 of the body, compared
// in constant time) and what each delivery means for one repository, as domain events and
// follow-ups. Pure: no I/O, no clock (time comes in `now`).
// Threading: pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.hpp"
#include "forges/forge.hpp"

namespace dmz::forges::github {

// Who may report a check ([repo.github] check_sources): check name -> its source, a GitHub App
// (its slug) for check runs or a login for commit statuses. A check named here counts only
// from its source (as the "expected source" of GitHub's own branch protection), so that anyone
// else who may write statuses or check runs cannot decide it; a check not named here counts
// from anyone.
using CheckSources = std::map<std::string, std::string>;

struct WebhookSettings {
  std::string repo;  // "owner/name" (compared without regard to case, as GitHub does)
  std::string master = "master";
  std::string merge_label = "dmz:merge";
  std::string bot_name = "dmzbot";  // a login; "name[bot]" for an App
  std::string try_branch = "dmz-try";
  CheckSources check_sources;
};

// Whether a report of check `name` counts under `sources`: always for a check not named there;
// else a check run (`check_run`) only when `reporter`, its App's slug, is the source, and a
// commit status only when `reporter`, the login that created it, is the source or the source
// followed by "[bot]" (an App posts statuses as "slug[bot]"). A source written "slug[bot]" names
// the same App for check runs, and a source of digits its id (`app_id`; GitHub's schemas do
// not require an App's slug in a check run, and older GHES payloads lack it). Compared without
// regard to case, as GitHub compares logins; a check run without an App never counts.
bool from_source(const CheckSources& sources, std::string_view name, bool check_run,
                 std::string_view reporter, std::int64_t app_id = 0);
// The one-line note for a report that from_source() refused (for the log): the check, the
// sha, who reported it and the source that was expected, control characters escaped.
std::string ignored_report(const CheckSources& sources, std::string_view name, std::string_view sha,
                           bool check_run, std::string_view reporter, std::int64_t app_id = 0);

// unauthenticated unless `header` is "sha256=" and the hex HMAC-SHA256 of `body` under
// `secret`. An empty secret never matches: webhooks are never taken unsigned.
Status verify_signature(std::string_view secret, std::string_view body, std::string_view header);

// The JSON text of a delivery: the body (application/json), or its `payload` field
// (application/x-www-form-urlencoded). invalid for anything else.
Result<std::string> payload_of(const InboundRequest& request);

// What delivery `id` of event `event` (X-GitHub-Event) with JSON `payload` means for
// `settings.repo`: not_found when it is about another repository; invalid when the JSON is
// malformed or lacks what the event must carry. Events dmzbot does not use give an empty
// delivery (acknowledged and ignored). A status or check run of a check whose source it is not
// (settings.check_sources) gives none either, and a note of it in `ignored` (when given).
Result<Delivery> parse_delivery(const WebhookSettings& settings, std::string_view event,
                                std::string_view id, std::string_view payload, queue::Millis now,
                                std::vector<std::string>* ignored = nullptr);

// A delivery as it came: the signature checked under `secret`, then the payload read and
// parsed for `settings.repo` (payload_of, parse_delivery). GitHubForge::webhook.
Result<Delivery> read_delivery(const WebhookSettings& settings, std::string_view secret,
                               const InboundRequest& request, queue::Millis now,
                               std::vector<std::string>* ignored = nullptr);

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

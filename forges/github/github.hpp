// The GitHub forge: webhooks (forges/github/webhook.hpp), fetched PR heads (refs/pull/N/head),
// answers on pull requests (comments, the `dmzbot` check run, or a commit status with a plain
// token, labels), who may approve (merge masters, checked through the API and cached briefly),
// check states read back, and the reconciliation that reads the open PRs, their labels and
// heads and the checks of the train, so that a lost webhook never stalls the queue.
// Threading: kind(), events_from_fetch() and webhook() are pure and run on any thread; every
// other call blocks on the API and runs on the repository's forge thread.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "forges/forge.hpp"
#include "forges/github/app_log.hpp"
#include "forges/github/client.hpp"
#include "forges/github/webhook.hpp"

namespace dmz::forges::github {

struct Options {
  WebhookSettings webhook;                 // repo, master, label, bot, try branch, check sources
  std::string secret;                      // the webhook secret
  std::vector<std::string> merge_masters;  // logins, or "org/team-slug"
  std::vector<std::string> required_checks;
  queue::Millis permission_cache = 60'000;
  // A merge label found by reconciliation approves only if it was added this long after
  // dmzbot learned the PR's head: clocks differ, and a label older than the head must never
  // approve it (the webhook of the label carries the exact head; this is the fallback).
  queue::Millis label_skew = 5'000;
  bool status_labels = false;
  std::string queued_label = "dmz:queued", failed_label = "dmz:failed";
  std::string public_url;  // the status page, for links ("" for none)
  std::string check_name = "dmzbot";
  // The webhook whose deliveries that never reached dmzbot (it was down, or could not record
  // them) are asked for again at each reconciliation, back to `redeliver_lookback` before the
  // first: a repository webhook's id, 0 for the GitHub App's own webhook (this repository's
  // deliveries), or none.
  std::optional<std::int64_t> redeliver_hook;
  queue::Millis redeliver_lookback = 24 * 3'600'000;
  // The App's log as read for every repository of the App (none: each reads it itself).
  std::shared_ptr<AppDeliveryLog> app_log;
};

// A webhook delivery dmzbot asks GitHub for again, by guid: the attempt asked for (any attempt
// of a delivery will do), when the delivery was first tried, and how often and when it was
// asked for.
struct Redelivery {
  std::int64_t attempt = 0;
  queue::Millis first = 0;
  int asks = 0;
  queue::Millis at = 0;
  std::string event;  // for the log
  int status_code = 0;
};
// Per guid: at most this many asks, the second 5 minutes after the first, each later one
// twice as long after the one before (about 21 hours in all), so that an outage of dmzbot's
// that outlasts a few redeliveries loses nothing.
inline constexpr int kMaxRedeliveries = 8;
inline constexpr queue::Millis kRedeliveryPause = 300'000;

// Brings `pending` (by guid) in line with `log` (hook_deliveries, a window of it) and returns
// the deliveries to ask for now, oldest first. A delivery is pending while none of its attempts
// was taken (2xx or 3xx) and its newest attempt found no answer or a 5xx (a 4xx was a refusal,
// and would be again); the log's window may have moved past it, so what it showed is kept.
// A pending delivery is asked for unless it was asked for kMaxRedeliveries times, or its pause
// since the last ask has not passed. The caller counts the asks it made.
std::vector<Redelivery*> deliveries_to_redeliver(const std::vector<HookDelivery>& log,
                                                 std::map<std::string, Redelivery>& pending,
                                                 queue::Millis now);

// The pure part of reconciliation: the events that bring `state` in line with the open PRs
// the API listed. PRs the list misses are closed (PrClosed), or, with `missing`, named there
// for the caller to confirm; only when `complete` (every page was read).
std::vector<queue::Event> reconcile_pulls(const queue::RepoState& state,
                                          const std::vector<PullInfo>& open, bool complete,
                                          queue::Millis now, std::vector<int>* missing = nullptr);
// The check events that bring candidate `k` in line with what GitHub holds for its sha.
std::vector<queue::Event> reconcile_checks(const queue::Candidate& k,
                                           const std::vector<queue::Check>& checks,
                                           queue::Millis now);
// The comment a notice becomes, or "" for a notice that needs none (a transient error, a
// moved master: the check run says it). `cc`: logins mentioned at the end (the authors of
// the PR's commits, for a failure they can fix); `marker` goes at the end, invisible.
std::string comment_for(const queue::Notify& n, const std::string& repo,
                        const std::string& public_url, const std::string& marker,
                        const std::vector<std::string>& cc = {});

class GitHubForge final : public Forge {
 public:
  GitHubForge(Options options, std::unique_ptr<Client> client);

  std::string_view kind() const override { return "github"; }
  std::vector<queue::Event> events_from_fetch(const queue::RepoState& state, const RemoteRefs& refs,
                                              queue::Millis now) const override;
  Result<Delivery> webhook(const InboundRequest& request, queue::Millis now) const override;
  std::vector<std::string> webhook_headers() const override {
    return {"content-type", "x-github-delivery", "x-github-event", "x-hub-signature-256"};
  }
  Status deliver(const OutboxMessage& message) override;
  Result<bool> may_approve(const std::string& login) override;
  Result<std::optional<LaterCommand>> later_command(int number, queue::Millis written) override;
  Result<std::optional<LaterCommand>> label_overtaken(int number, bool added,
                                                      const std::string& actor,
                                                      queue::Millis late) override;
  Result<std::vector<std::string>> approving_reviewers(int number, const queue::Sha& sha) override;
  Result<std::vector<queue::Event>> checks_of(const queue::Sha& sha, queue::Millis now) override;
  Result<std::vector<queue::Event>> reconcile(const ReconcileInput& input,
                                              queue::Millis now) override;
  Result<std::optional<queue::PrOpened>> open_pull(const PullToOpen& p, queue::Millis now) override;
  Status show(const PullSummary& summary) override;
  ApiHealth api_health() const override;

  Client& client() { return *client_; }

 private:
  Status set_status_labels(int number, PullSummary::State state);
  void forget(const PullSummary& summary);
  Status drop_merge_label(const OutboxMessage& m);
  // Asks GitHub to deliver again the webhooks that never reached dmzbot (redeliver_hook). Its
  // failures are logged, not returned: the rest of a reconciliation does not wait on them.
  void redeliver_failed(queue::Millis now);
  // Logs each report of a check that came from another source than check_sources names: at
  // info, or at debug when `repeated` (reconciliation reads the same ones again).
  void log_ignored(const std::vector<std::string>& ignored, bool repeated) const;
  // later_command with the merge label's changes already read; the comments and reviews are
  // read only when `commands`.
  Result<std::optional<LaterCommand>> later_gesture(int number, queue::Millis written,
                                                    const std::vector<LabelChange>& labels,
                                                    bool commands = true);

  Options options_;
  std::unique_ptr<Client> client_;
  // Forge thread only.
  std::map<std::string, std::pair<bool, queue::Millis>> permissions_;  // login -> (ok, until)
  std::map<queue::Sha, std::int64_t> check_runs_;                      // head -> check run id
  std::map<int, std::string> status_label_;         // the status label each PR has ("" none)
  std::map<std::string, Redelivery> redeliveries_;  // pending, by guid
  queue::Millis deliveries_read_at_ = 0;            // the last complete read of the log
  std::string redelivery_error_;                    // the last one logged
  mutable std::mutex mu_;                           // the last reconciliation, read by api_health()
  queue::Millis last_reconcile_ = 0;
};

}  // namespace dmz::forges::github

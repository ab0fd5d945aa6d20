// The forge port: everything forge-specific behind one interface. Inbound, a forge turns what
// it hears (a webhook request, the refs a fetch saw, a registration on the plain forge) into
// domain events; outbound, it carries out the messages of the outbox (comments, statuses,
// labels). A forge never touches git or the store.
// Threading: the inbound functions are pure and may run on any thread; deliver() blocks and is
// called on the outbox's own thread, one message at a time per forge.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/status.hpp"
#include "queue/model.hpp"

namespace dmz::forges {

// What a fetch of the repository's remote saw.
struct RemoteRefs {
  std::map<std::string, queue::Sha> branches;  // branch name -> commit
  std::map<std::string, queue::Sha> tags;      // annotated tag name -> the commit it peels to
  std::map<int, queue::Sha> pulls;  // a forge's pull request heads (refs/pull/N/head), if fetched
  // Branches (or "tags/<name>", or "pull/<N>") whose new head does not contain the head seen
  // before: a force-push dropped published commits.
  std::set<std::string> rewritten;
  // Pull request heads this fetch moved (or saw first). A webhook may have told of a newer head
  // while the fetch ran; a head the fetch merely saw again must not take it back.
  std::set<int> moved_pulls;
};

// An inbound HTTP request for a forge (a webhook), without the socket.
struct InboundRequest {
  std::map<std::string, std::string> headers;  // names lowercased
  std::string body;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// Something a webhook asked for that needs the forge's API (or git) before it becomes events:
// whether its sender may do it, what a check suite holds. The service handles follow-ups after
// the answer to the webhook, on the repository's forge thread, in the order they came.
struct FollowUp {
  enum class Kind {
    kAuthorize,      // `event` is applied if `actor` may approve; else a Reply says why not
    kTry,            // if `actor` may approve: build the PR on master on its own branch
    kRefreshChecks,  // read the check states of `sha` back from the forge
    kReconcile,      // read the whole repository back now (e.g. the App was installed)
  };
  Kind kind = Kind::kAuthorize;
  int number = 0;       // the PR (kAuthorize, kTry)
  std::string actor;    // who asked
  std::string command;  // what they asked, for a refusal: "merge", "label dmz:merge"
  std::optional<queue::Event> event;
  // The event's sha (MergeRequested) is pinned by the service to the PR's head when the comment
  // was written: a push made after it is never approved by it, whatever order they arrive in.
  bool pin_head = false;
  // A refusal by the engine (e.g. cancel of a PR that is not queued) is logged, not answered
  // on the PR: for gestures such as removing a label, which need no answer.
  bool quiet = false;
  queue::Sha sha;  // kRefreshChecks; kTry: the head to try ("" until pinned, as pin_head)
  // When the comment that asked was written (forge time; 0: not a comment): pin_head and a
  // try take the head the PR had then, not the one known when the webhook is handled; a
  // command that arrives late is checked against those written after it (later_command).
  queue::Millis written_at = 0;
  // A merge-label gesture: whether it added the label (true) or took it off (false). Webhooks
  // may arrive in any order, so it is applied only if nothing overtook it (label_overtaken).
  std::optional<bool> label_added;
};

// What a webhook delivery means for one repository.
struct Delivery {
  std::string id;    // the forge's delivery id (a redelivery repeats it)
  std::string repo;  // "owner/name"; empty for deliveries about no repository (ping)
  std::vector<queue::Event> events;
  std::vector<FollowUp> follow_ups;
  bool fetch = false;  // it names commits the mirror may not have yet: fetch before acting
  // For each PR whose push it reports (a PrPushed among `events`), the head that push replaced
  // (GitHub's `before`). A PR whose head is another one by the time the event is applied has
  // moved on (the webhook is late) or missed a push (one was lost): the head is left to the
  // fetch the delivery asks for, which reads the real one.
  std::map<int, queue::Sha> pushed_from;
};

// Where a PR stands, as the forge shows it on the PR's head (a check run or a commit status),
// kept current by the service: made by summarize() in forges/summary.hpp.
struct PullSummary {
  enum class State { kQueued, kInProgress, kSuccess, kFailure, kNeutral };
  int number = 0;
  queue::Sha head;
  State state = State::kNeutral;
  std::string title;  // one line: "queued at position 2"
  std::string text;   // the details, one per line
  bool operator==(const PullSummary&) const = default;
  // The PR left the queue (landed, failed or not queued): what is kept to show it can go.
  bool finished() const { return state != State::kQueued && state != State::kInProgress; }
};

// What the service needs from a repository's view of the forge to reconcile it.
struct ReconcileInput {
  queue::RepoState state;  // a snapshot of the hot state
  // When dmzbot learned PR n's current head (from its event log); asked only for the few PRs
  // that need it. A very large value when unknown: nothing is trusted to be newer.
  std::function<queue::Millis(int)> head_seen_at;
};

// Whether `e`, which a reconciliation computed from a snapshot of the state (`snapshot`), still
// applies to the state as it is `now` (the API calls take seconds, and webhooks are applied
// meanwhile): an event about a PR whose head moved since, or that became known since, is
// dropped (the next reconciliation sees the newer state); events about no PR always apply.
bool still_current(const queue::RepoState& snapshot, const queue::RepoState& now,
                   const queue::Event& e);

// The health of the forge's API (rate limits, errors), for /readyz, the queue JSON and the
// status page.
struct ApiHealth {
  bool used = false;  // this forge has an API
  bool ok = true;
  std::string last_error;            // "" when ok
  queue::Millis blocked_until = 0;   // rate limited until then (0: not)
  int rate_remaining = -1;           // what the API said is left (-1: unknown)
  queue::Millis last_reconcile = 0;  // the last complete reconciliation
  // The API's clock minus dmzbot's, from the Date of its latest answer (0 until one came): the
  // times the forge writes (a comment's, a label's) are on its clock, the heads dmzbot logged
  // on its own, and pinning an approval to a head compares the two.
  queue::Millis clock_offset = 0;
};

// A plain-forge registration of a pull request (POST .../pulls).
struct Registration {
  int number = 0;
  std::string branch;  // or "tags/<name>" for a pull request by signed tag
  std::string author, title;
};

// A pull request dmzbot opens itself (a hotfix brought back into master).
struct PullToOpen {
  std::string branch;  // its head branch, on the repository itself
  std::string base;    // the branch it goes into
  queue::Sha head;     // the commit it is opened for: a PR of `branch` closed at it means done
  std::string title, body;
};

// One message of the outbox: persisted with the state change that produced it, delivered
// after the change is saved, retried with backoff until the forge takes it.
struct OutboxMessage {
  std::int64_t id = 0;
  std::string repo;
  queue::Notify notice;
  int attempts = 0;       // failed deliveries so far
  queue::Millis next_at;  // not before this time
  std::string last_error;
  queue::Millis created_at = 0;  // when the change that said it was saved (the decision)
  // Set when it is sent: the PR has been approved again since created_at, so a merge label on
  // it now stands for that approval (a late removal must leave it).
  bool approved_since = false;
};

// A command on a PR written after another one (Forge::later_command).
struct LaterCommand {
  std::string actor;          // who wrote it
  std::string command;        // "merge", "cancel", "retry", "remove the dmz:merge label"
  queue::Millis written = 0;  // forge time
};

class Forge {
 public:
  virtual ~Forge() = default;
  virtual std::string_view kind() const = 0;  // "plain", "github", ...

  // The events a fetch implies: pushes to PR heads, PRs whose head vanished, a moved master.
  virtual std::vector<queue::Event> events_from_fetch(const queue::RepoState& state,
                                                      const RemoteRefs& refs,
                                                      queue::Millis now) const = 0;

  // A registration through dmzbot's own API; forges with an API of their own refuse it.
  virtual Result<queue::PrOpened> register_pull(const RemoteRefs& refs, const Registration& r,
                                                queue::Millis now) const;

  // A webhook: authenticated (unauthenticated when the signature is missing or wrong) and
  // parsed (invalid for a malformed payload). Forges without webhooks answer not_found.
  virtual Result<Delivery> webhook(const InboundRequest& request, queue::Millis now) const;
  // The headers webhook() reads (lowercased): kept with the body so that a delivery can be
  // handled again after a crash, and nothing else (a proxy's headers are not ours to keep).
  virtual std::vector<std::string> webhook_headers() const { return {}; }

  // Carries out one message. A transient failure (unavailable) is retried later; any other
  // error drops the message.
  virtual Status deliver(const OutboxMessage& message) = 0;

  // ---- forges with an API (the defaults are for forges without one) ----
  // The remaining calls block and run on the repository's forge thread.

  // Whether `login` is a merge master of the repository (the forge may cache the answer).
  virtual Result<bool> may_approve(const std::string& login);
  // The first gesture that changes whether PR `number` is queued (a merge, cancel or retry
  // command, the merge label added or taken off) made on it after `written` (forge time) by
  // someone who may approve: a late command it overtook is not applied. None by default (a
  // forge without comments).
  virtual Result<std::optional<LaterCommand>> later_command(int number, queue::Millis written);
  // What overtook `actor`'s merge-label gesture on PR `number` (`added`: put on, else taken off):
  // a later change of the label by a merge master, dmzbot taking it off since, or, for an
  // addition, the PR closed, made a draft or moved off master since; and, for a gesture made
  // before `late` (forge time: it reached dmzbot late), a later command (as later_command).
  // None by default (a forge without labels).
  virtual Result<std::optional<LaterCommand>> label_overtaken(int number, bool added,
                                                              const std::string& actor,
                                                              queue::Millis late);
  // The logins whose latest review of PR `number` approves `sha`, sorted (none by default).
  virtual Result<std::vector<std::string>> approving_reviewers(int number, const queue::Sha& sha);
  // The check states the forge holds for `sha`, as CheckReported events.
  virtual Result<std::vector<queue::Event>> checks_of(const queue::Sha& sha, queue::Millis now);
  // Reads the forge's view of the repository (open PRs, their heads and labels, the checks
  // of the train) and returns the events that bring `input.state` in line with it.
  virtual Result<std::vector<queue::Event>> reconcile(const ReconcileInput& input,
                                                      queue::Millis now);
  // Opens a pull request of `p.branch` into `p.base`, or finds the one already open for it
  // (so that asking again after a crash opens nothing twice). nullopt when a pull request of
  // the branch at `p.head` was already closed: it was opened and finished before.
  virtual Result<std::optional<queue::PrOpened>> open_pull(const PullToOpen& p, queue::Millis now);
  // Shows `summary` on the PR's head (replacing what it showed before).
  virtual Status show(const PullSummary& summary);
  virtual ApiHealth api_health() const { return {}; }
};

}  // namespace dmz::forges

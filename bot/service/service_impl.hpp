// Service's internals, shared by service.cpp (start, stop, the engine's ports and reads) and
// forge_sync.cpp (webhook deliveries, their follow-ups on the forge's API, reconciliation).
// Threading: each member says which thread owns it (engine, git, forge or any).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/log.hpp"
#include "base/metrics.hpp"
#include "base/text.hpp"
#include "base/this_thread.hpp"
#include "bot/ci/runner.hpp"
#include "bot/driver/driver.hpp"
#include "bot/git/mirror.hpp"
#include "bot/http/http_client.hpp"
#include "bot/service/delivery_recorder.hpp"
#include "bot/service/git_worker.hpp"
#include "bot/service/promoter.hpp"
#include "bot/service/serial_executor.hpp"
#include "bot/service/service.hpp"
#include "bot/service/transport_options.hpp"
#include "bot/store/store.hpp"
#include "bot/trust/facts.hpp"
#include "bot/trust/signing.hpp"
#include "forges/github/github.hpp"
#include "forges/plain.hpp"
#include "forges/summary.hpp"
#include "queue/engine.hpp"
#include "queue/json.hpp"

namespace dmz {

namespace q = queue;
namespace fs = std::filesystem;

inline Error stopping() { return unavailable("the service is stopping"); }

// An answer a posted task owns, given once: by the task, or by the task's last copy when it is
// destroyed without giving it (its executor stopped and dropped it unrun: `stopping()`), so that
// no caller waits forever on work that will never run. Copies share the one answer.
template <class R>
class Answer {
 public:
  using Done = std::function<void(R)>;
  using FromError = std::function<R(Error)>;
  Answer(Done done, FromError from_error)
      : state_(std::make_shared<State>(std::move(done), std::move(from_error))) {}
  void operator()(R r) const { state_->give(std::move(r)); }
  void fail(Error e) const { state_->give(state_->from_error(std::move(e))); }

 private:
  struct State {
    State(Done d, FromError f) : done(std::move(d)), from_error(std::move(f)) {}
    State(const State&) = delete;
    State& operator=(const State&) = delete;
    ~State() {
      if (done) give(from_error(stopping()));
    }
    void give(R r) {
      if (auto d = std::exchange(done, nullptr)) d(std::move(r));
    }
    Done done;
    FromError from_error;
  };
  std::shared_ptr<State> state_;
};

// One webhook delivery being handled: it is marked handled once its events were applied and
// each of its follow-ups was carried out (or dropped for good). A part that never completes
// (the service stopped, or crashed) leaves it unhandled in the store: it is handled again at
// the next start.
struct DeliveryTicket {
  DeliveryTicket(std::string id, std::size_t parts, DeliveryRecorder& recorder,
                 std::atomic<std::size_t>& unfinished)
      : id(std::move(id)),
        open(static_cast<int>(parts)),
        recorder(recorder),
        unfinished(unfinished) {
    ++unfinished;
  }
  // A ticket dropped before its last part was done (an event beyond the parked bound, a
  // follow-up dropped at a stop) leaves its delivery unhandled, to be handled again at the next
  // start; it no longer counts against the bound of deliveries held in memory.
  ~DeliveryTicket() {
    if (open.load() > 0) --unfinished;
  }
  DeliveryTicket(const DeliveryTicket&) = delete;
  DeliveryTicket& operator=(const DeliveryTicket&) = delete;
  void done() {
    if (open.fetch_sub(1) != 1) return;
    recorder.handled(id);
    --unfinished;
  }
  const std::string id;
  std::atomic<int> open;
  DeliveryRecorder& recorder;
  std::atomic<std::size_t>& unfinished;  // the service's count of deliveries not yet handled
};

// A follow-up with the delivery it came with.
struct QueuedFollowUp {
  forges::FollowUp f;
  std::shared_ptr<DeliveryTicket> ticket;
};

// Everything a repository needs at run time. The worker belongs to the git thread; the forge's
// blocking calls run on the forge thread.
struct RepoRuntime {
  config::Repo cfg;
  q::Settings settings;
  std::unique_ptr<BeastHttpClient> http;         // the forge's API transport (GitHub)
  forges::github::Client* api_client = nullptr;  // GitHub's REST client, owned by `forge`
  std::unique_ptr<forges::Forge> forge;
  bool api = false;  // the forge has an API: follow-ups, reconciliation, summaries
  std::unique_ptr<GitWorker> worker;
  std::unique_ptr<LocalRunner> runner;
  std::unique_ptr<SerialExecutor> git;
  std::unique_ptr<SerialExecutor> forge_thread;
  // Webhook fetches (request_fetch), guarded by fetch_mu: whether one is queued on the git
  // thread, and what the webhooks since it was queued need from it: these commits, or
  // (fetch_always) whatever the remote has now.
  std::mutex fetch_mu;
  bool fetch_queued = false;
  std::vector<q::Sha> fetch_for;
  bool fetch_always = false;
  // When the last webhook fetch ended (git thread only): the next waits out options'
  // webhook_fetch_gap from it.
  std::chrono::steady_clock::time_point webhook_fetch_done{};
  // Registrations through dmzbot's API (POST .../pulls), guarded by fetch_mu: each waits for
  // the next fetch that begins after it (a branch pushed a moment ago is found), and is answered
  // on the engine thread once that fetch was applied.
  struct Registering {
    forges::Registration registration;
    Answer<q::Outcome> answer;
  };
  std::vector<Registering> registering;
  std::atomic<bool> periodic_queued{false};
  // Policy checks of heads out of reach (git thread only): judged after the next good fetch.
  std::vector<q::CheckPolicy> policy_waiting;
  // PR heads a webhook set (engine thread only), with when: a fetch that began before then read
  // the remote before that push, and its head for the PR is older news. Kept until a fetch
  // that began after them has been applied.
  std::map<int, std::pair<q::Sha, q::Millis>> webhook_heads;
  // Policy checks whose verdict failed on our side (git thread only): judged again at the
  // first fetch after `not_before`, `tries` verdicts so far.
  struct PolicyRetry {
    q::CheckPolicy check;
    int tries = 0;
    q::Millis not_before = 0;
  };
  std::vector<PolicyRetry> policy_retrying;
  // The reset of dmz whose push failed (git thread only): pushed again after the first fetch
  // past `not_before`, until it goes through or a later build or reset of dmz replaces it (the
  // git work runs in order here, so a retry never takes dmz back over a newer candidate).
  struct ResetRetry {
    q::ResetDmz reset;
    int tries = 0;
    q::Millis not_before = 0;
  };
  std::optional<ResetRetry> reset_retrying;
  // Policy checks whose forge reviews the API could not give (forge thread only): judged again
  // after the next reconciliation that reads the API.
  std::vector<q::CheckPolicy> reviews_waiting;
  // Follow-ups of webhooks, handed from the engine thread to the forge thread. One drain is
  // queued at a time: while the API is down each drain costs a full round of retries, so a
  // burst of webhooks must not queue one drain each (the forge thread, and stop(), would be
  // held up for minutes).
  std::mutex inbox_mu;
  std::vector<QueuedFollowUp> inbox;  // guarded by inbox_mu
  std::atomic<bool> drain_queued{false};

  // Summaries to show, handed from the engine thread to the forge thread the same way: one
  // flush queued at a time takes every summary handed over until it runs (the newest of each PR).
  std::mutex show_mu;
  std::map<int, forges::PullSummary> show_inbox;  // guarded by show_mu
  std::atomic<bool> show_queued{false};

  // Forge thread only.
  std::deque<QueuedFollowUp> follow_ups;       // in the order the webhooks came
  std::map<int, forges::PullSummary> to_show;  // summaries not shown yet
  std::map<int, forges::PullSummary> shown;    // what the PR heads show
  bool api_was_ok = true;

  // Engine thread only.
  // Commands whose head could not be pinned (the event log could not be read), pinned again
  // at each tick.
  std::vector<QueuedFollowUp> unpinned;
  std::map<int, forges::PullSummary> desired;  // the summary each PR should show
  q::Millis next_reconcile_at = 0;             // 0: at the next tick
  bool reconcile_in_flight = false;
  q::Millis reconcile_interval = 60'000;
  std::unique_ptr<Promoter> promoter;  // release promotion; used on the git thread
};

// A webhook delivery as one repository read it.
struct Taken {
  RepoRuntime* rt;
  forges::Delivery d;
};

struct Service::Impl final : driver::GitPort,
                             driver::PolicyPort,
                             driver::CiPort,
                             driver::OutboxPort {
  ~Impl() {
    if (instance_fd >= 0) ::close(instance_fd);  // releases the data directory's lock
  }

  int instance_fd = -1;
  config::Config cfg;
  Options options;
  const Clock* clock = &wall_clock();
  std::unique_ptr<Store> store;
  std::unique_ptr<Store> delivery_store;  // the webhook deliveries (deliveries_file)
  // Deliveries accepted and not yet handled (their follow-ups may wait for the forge's API):
  // past Options::max_unfinished_deliveries, new ones are refused 503, not held in memory.
  // Declared before every member that may hold a DeliveryTicket, which counts down here.
  std::atomic<std::size_t> unfinished_deliveries{0};
  std::vector<std::unique_ptr<RepoRuntime>> repos;
  // A GitHub App's webhook log (by API and App id), read once for all its repositories.
  std::map<std::pair<std::string, std::int64_t>, std::shared_ptr<forges::github::AppDeliveryLog>>
      app_logs;
  std::unique_ptr<driver::Driver> driver;  // engine thread only
  // The answers to reads of the hot state (view, pull, health) are handed over here, so that
  // what a caller builds from them (a page, its forecast) never holds up the engine.
  SerialExecutor views{"views"};
  SerialExecutor engine{"engine", SerialExecutor::Priority::kBackground};
  // Webhook delivery ids, group-committed (declared after `engine`: its answers post there).
  std::unique_ptr<DeliveryRecorder> deliveries;
  std::atomic<bool> started{false};
  std::atomic<bool> stopped{false};

  // Live feeds (the status page's events) hear of each saved change. A watcher is called under
  // its own mutex, which dropping its handle takes too, so that once the handle is gone no call
  // is under way or to come (recursive: a callback may drop its own handle).
  struct Watcher {
    std::recursive_mutex mu;
    bool live = true;
    std::function<void(const std::string&)> on_change;
  };
  std::mutex watch_mutex;
  std::vector<std::weak_ptr<Watcher>> watchers;
  void notify_saved(const std::string& repo);

  std::thread timer;
  std::mutex timer_mutex;
  std::condition_variable timer_wake;
  bool timer_stop = false;
  std::atomic<bool> tick_queued{false};  // a tick waits on the engine thread

  q::Millis now() const;

  // One service per data directory: its mirrors and database must have a single writer (that
  // is also what makes removing a crashed run's git lock files safe). flock is released by the
  // kernel when the process dies, even by kill -9.
  Status lock_data_dir();

  // Deliveries that a dmzbot older than the deliveries' own file answered 202 and had not
  // handled are in the main database: copied to the deliveries' file, then marked handled where
  // they were, so the replay at start handles them once (a crash in between copies none twice:
  // the copy of a recorded id is a duplicate).
  Status move_old_deliveries();

  // The store, refusing to take a missing or empty database for an empty queue when the data
  // directory holds the mirrors of an earlier run: that would silently forget every queued PR.
  Status open_store();

  // The mirrors this start made (open_repo). A start that fails before any state was saved
  // removes them: the next start would take them for the mirrors of an earlier run beside a
  // lost database (open_store), and refuse to start for good.
  std::vector<fs::path> new_mirrors;
  void forget_new_mirrors();

  // What a sandboxed build must not see: the configuration (and its directory, where token
  // files usually live, unless that is a top-level directory like /etc), the data directory
  // and the signing key or GnuPG home.
  std::vector<fs::path> secret_paths() const;

  fs::path log_dir(const std::string& repo) const;

  RepoRuntime* find(const std::string& name);

  // The GitHub adapter: its REST client over TLS, and the forge.
  Status open_github(RepoRuntime& rt);

  // How git reaches the repository's remote: [repo.auth], and for GitHub the token (or the
  // App's installation token, renewed as it expires) and the heads of pull requests.
  git::TransportOptions transport_for(const RepoRuntime& rt) const;

  Status open_repo(const config::Repo& repo);

  std::vector<driver::RepoConfig> driver_configs() const;

  // ---- results back to the engine thread ------------------------------------------------------

  void post_event(const std::string& repo, q::Event event);

  // Events the store could not save, applied again at each tick, in order, until they are;
  // the repository's later events wait behind them.
  //  - Results of work already done (a merge pushed, a build finished, a verdict): nothing
  //    else would ever bring them again. Dropped only when the repository is not served any
  //    more (another writer took it: its load re-issues the work).
  //  - A webhook's events and commands: they wait even while the repository is not served (it
  //    may be loaded again), and their delivery is marked handled only once they were applied
  //    (`then`), so that one never applied is handled again at the next start.
  //  - A fetch's result (`fetched`, instead of `event`): handed to the driver in its turn, so
  //    that the events it implies come after those before it (one the store cannot save then
  //    is read again by the next fetch).
  // Nothing else applies an event of a repository while events wait for it: a command of the
  // API is refused (unavailable: its caller tries again), other events park behind them.
  // Engine thread only.
  struct Parked {
    enum Keep { kWhileServed, kUntilApplied };
    q::Event event;
    Keep keep = kWhileServed;
    std::function<void(const q::Outcome&)> then;  // once applied (or refused for good)
    std::function<void()> fetched;                // a fetch's result, run instead of `event`
  };
  std::map<std::string, std::deque<Parked>> unsaved;

  // Applies `event` now, or parks it when the store cannot save it (or events wait before it).
  void apply_or_park(const std::string& repo, q::Event event, Parked::Keep keep,
                     std::function<void(const q::Outcome&)> then = nullptr);

  void apply_unsaved(const std::string& repo);
  std::set<std::string> retrying;  // repositories whose first waiting event was refused

  // Whether events of `repo` wait to be saved, and the refusal of a command that would jump
  // ahead of them (503: its caller tries again).
  bool events_wait(const std::string& repo) const;
  static Error earlier_change_unsaved();

  // Refused because the store cannot save now (or the repository is not served now): worth
  // waiting, as `keep` says.
  bool must_wait(const std::string& repo, const q::Outcome& out, Parked::Keep keep) const;

  // Runs `work` on the repository's git thread; false if the service is stopping.
  template <class F>
  bool on_git(const std::string& repo, F work) {
    RepoRuntime* rt = find(repo);
    return rt && rt->git->post([rt, work = std::move(work)] { work(*rt); });
  }

  void fetch_into_driver(RepoRuntime& rt, std::function<void()> then = nullptr);

  // Engine thread, once the fetch they waited for was applied: registrations against the refs
  // it read (never while events wait to be saved: fetch_into_driver refuses them then).
  void register_pulls(RepoRuntime& rt, const Result<forges::RemoteRefs>& refs,
                      const std::vector<RepoRuntime::Registering>& registering);

  // The forge's refusal of `r` whatever the remote holds (a forge with an API of its own, a
  // branch dmzbot does not queue): asked as if the remote had the branch, so that a registration
  // that can only be refused costs no fetch. Any thread: register_pull reads only options.
  std::optional<Error> refused_anyway(const RepoRuntime& rt, const forges::Registration& r) const;

  // Answers the registrations still waiting for a fetch (stopping): the git thread is gone.
  static void drop_registrations(RepoRuntime& rt);

  // A hotfix released to production is not on master: it comes back through the queue as its
  // own PR, approved by dmzbot on the release signers' behalf at the released commit (a later
  // push to the branch is not approved); the policy check and CI judge it as any PR. On the
  // plain forge the PR is registered as POST .../pulls would, numbered kHotfixPullBase + its
  // promotion record's seq (no PR people registered has it, and a second hand-over finds it);
  // a forge with an API opens it there (open_pull finds one already open). The promoter hands
  // a hotfix over again after a restart until master holds it, so a stop between the push of
  // production and the hand-over loses nothing, and nothing is opened or approved twice.
  // Git thread (the promoter's callback).
  static constexpr int kHotfixPullBase = 1'000'000;
  void bring_hotfix_back(RepoRuntime& rt, const PromotionRecord& r);

  // Engine thread (the one that archives, so that a PR is in the hot state or in the archive,
  // never in between): whether PR `number` was approved at `commit` and finished (landed, or
  // refused: its outcome said why); an error (logged) hands the hotfixes over again after the
  // next fetch.
  Result<bool> brought_back_before(RepoRuntime& rt, int number, const q::Sha& commit);

  // Engine thread: approves PR `number` of `branch` at `commit`, unless it is approved there
  // already or was, and finished; a PR the engine does not know yet is opened (registered, or
  // the PR the forge opened) first.
  void queue_hotfix(RepoRuntime& rt, int number, const std::string& branch,
                    const std::string& approver, const q::Sha& commit,
                    const std::function<Result<q::PrOpened>()>& open);

  // ---- ports (called on the engine thread) -----------------------------------------------------

  void fetch(const std::string& repo) override;
  void build_candidate(const std::string& repo, const q::BuildCandidate& a) override;
  void reset_dmz(const std::string& repo, const q::ResetDmz& a) override;
  // The first wait before a retry on our side (a policy check, a reset of dmz): the fetch
  // interval, at least 2 s.
  q::Millis retry_base() const;
  // Git thread. A reset whose push failed (a remote timeout, a hook refusing it) is pushed
  // again after a backoff from the fetch interval (at least 2 s, doubling up to 5 min): dmz
  // must not keep a backed-out merge, which CI would go on building, until the next candidate
  // or restart.
  void push_reset(RepoRuntime& rt, const q::ResetDmz& a, int tries);
  // Git thread (after each fetch): the failed reset, once its backoff is over.
  void retry_reset(RepoRuntime& rt);
  void prune_candidates(const std::string& repo, const q::PruneCandidates& a) override;
  void fast_forward(const std::string& repo, const q::FastForwardMaster& a) override;
  void check_policy(const std::string& repo, const q::CheckPolicy& a) override;
  // A check joins those waiting, or replaces the one of the same PR at the same head (the
  // newer names the newer master).
  static void wait_once(std::vector<q::CheckPolicy>& waiting, const q::CheckPolicy& a);
  // Git thread. A verdict that failed on our side (PolicyChecked::unavailable: I/O, GnuPG) is
  // not the PR's fault: it is asked again, backing off from the fetch interval (5 s, 10 s, 20 s,
  // 40 s by default), and only the kPolicyTries-th such verdict fails the PR, closed, the error
  // among its reasons (`retry` asks again).
  static constexpr int kPolicyTries = 5;
  void take_verdict(RepoRuntime& rt, const q::CheckPolicy& a, q::PolicyChecked verdict, int tries);
  // Git thread (after each fetch): the checks whose backoff is over are judged again.
  void retry_policies(RepoRuntime& rt);
  // Git thread. A head the mirror lacks while the remote cannot be fetched waits for the next
  // good fetch: judged now, it would fail the policy for the remote's outage.
  void judge_policy(RepoRuntime& rt, const q::CheckPolicy& a, int tries = 0);
  void check_candidate(const std::string& repo, const q::CheckCandidate& a) override;
  void start_build(const std::string& repo, const q::StartBuild& a) override;
  void cancel_build(const std::string& repo, const q::CancelBuild& a) override;
  void send(const forges::OutboxMessage& message) override;

  // ---- the forge's API: webhook follow-ups, reconciliation, summaries ------------------------

  // A fetch before the events of a webhook that names new commits are acted on (git work runs
  // in order on the git thread), unless the mirror has every commit they name (a label or a
  // `merge <sha>` on a head fetched before: no git process for it). `commits` empty: the
  // webhook needs what only a fetch can tell (a push, a comment's PR head, a try). Coalesced:
  // one queued fetch covers every webhook before it, and it waits out webhook_fetch_gap since
  // the last one (a burst of deliveries costs one git process, not one each) while later
  // webhooks join it. The git thread waits: what is queued behind the fetch needs it anyway.
  void request_fetch(RepoRuntime& rt, std::vector<q::Sha> commits);

  // The commits the events of a delivery that asks for a fetch name: PRs opened (or labelled)
  // at a head, approvals of a full sha. Empty when one of them needs the remote itself: a push
  // (the PR's branch moved: a rewrite shows only in a fetch), master pushed, a command whose
  // head is pinned later, a try.
  static std::vector<q::Sha> commits_named(const forges::Delivery& d);

  // A delivery authenticated and parsed, recorded as new (or from before a crash): a fetch if
  // it names new commits, and its handling on the engine thread, by every repository that took
  // it (several only for an App's installation events, which name repositories); it is marked
  // handled once all of them are done with it.
  void accept(std::vector<Taken> taken, std::string key);

  // The repositories of `forge` that take `request` as it was at `at`, each with its reading of
  // it. Every one is asked: an App's installation event may name several. Empty with the
  // reason when none does; a refusal other than "not mine" stops the search.
  Result<std::vector<Taken>> takers(const std::string& forge, const forges::InboundRequest& request,
                                    q::Millis at);

  // The heads PR n took by the event log (its newest 200 pr_opened and pr_pushed events), with
  // when dmzbot learned each, oldest first.
  Result<std::vector<std::pair<q::Millis, q::Sha>>> logged_heads(const std::string& repo, int n);

  // When f's comment was written (on the forge's clock), on dmzbot's.
  static q::Millis written_here(const RepoRuntime& rt, const forges::FollowUp& f);

  // The head PR f.number had when f's comment was written (the adapter sets the time of
  // every comment, or of its delivery), by the event log: the order the webhooks arrived in
  // does not matter, and a delivery handled again after a restart pins what it pinned then.
  // "" when that is not certain: two heads within the clock skew of the comment, or none known
  // by then. Without a time: the head known now. An error when the log cannot be read.
  Result<q::Sha> head_when_written(const RepoRuntime& rt, const forges::FollowUp& f);

  // Engine thread: pins a merge or try by comment to head_when_written. False when `f` is
  // done (refused: the head is not certain) or waits in rt.unpinned (the log cannot be read;
  // logged unless `again`, a retry at a tick).
  bool pin_head(RepoRuntime& rt, forges::FollowUp& f, const std::shared_ptr<DeliveryTicket>& ticket,
                bool again);
  // Engine thread: hands follow-ups to the forge thread.
  void queue_follow_ups(RepoRuntime& rt, std::vector<QueuedFollowUp> follow_ups);

  // Whether `sha` is a candidate's, or the head of a PR that is not finished.
  static bool follows(const q::RepoState& state, const q::Sha& sha);

  // Engine thread: the events of a delivery (its own, or those a follow-up read from the API).
  // It is acknowledged (202): an event the store cannot save now waits, in order, and this
  // part of the delivery is done once the last of them was applied.
  void apply_delivered(const std::string& repo, const std::vector<q::Event>& events,
                       const std::shared_ptr<DeliveryTicket>& ticket);

  // Engine thread. A PR head a fetch read before a webhook told of a newer one is not news: the
  // fetch began before that push (its webhook came first), and taken as a move it would set the
  // PR back and drop the approval of the newer head. (The mirror's own ref cannot tell when the
  // fetch is the first to see the PR.)
  static void older_than_webhooks(RepoRuntime& rt, forges::RemoteRefs& refs, q::Millis began);

  // Whether `e` is a push webhook's new head for a PR whose head is neither the one that push
  // replaced nor the new one: a late webhook would set the PR back to an older head (and drop
  // an approval of the newer); after a lost one it is still news, but the delivery's fetch
  // reads the real head either way (GitHubForge::events_from_fetch).
  static bool stale_push(const q::RepoState& state, const forges::Delivery& d, const q::Event& e);

  // Engine thread: a webhook's events, then its follow-ups with heads pinned as they were when
  // the comment was written.
  void handle_delivery(RepoRuntime& rt, forges::Delivery d,
                       const std::shared_ptr<DeliveryTicket>& ticket);

  // Engine thread: a command that was allowed, and the answer if it was refused. One the store
  // cannot save now waits, and its delivery is done once it was applied.
  void apply_command(RepoRuntime& rt, const forges::FollowUp& f,
                     const std::shared_ptr<DeliveryTicket>& ticket);
  void command_refused(RepoRuntime& rt, const forges::FollowUp& f, const std::string& why,
                       const std::shared_ptr<DeliveryTicket>& ticket);

  // Engine thread: answers on PR `number`, a part of a delivery's handling. The answer waits
  // for the store like the delivery's events, and `ticket` is done once it was saved (or
  // refused for good), so a delivery is never marked handled with its answer unwritten.
  void reply(RepoRuntime& rt, int number, q::NoticeKind kind, std::string message,
             const std::shared_ptr<DeliveryTicket>& ticket);

  // Forge thread: why merge-label gesture `f` is not applied (nullopt: it is, as is every
  // other follow-up). GitHub does not deliver webhooks in order, and a label added and taken
  // off again may arrive the other way round, or one come again from the delivery log; a label
  // carries no time in its webhook, so its own event is looked up (Forge::label_overtaken). A
  // later label change by a merge master stands, and any later gesture of theirs when the label
  // reached dmzbot late (`late_command`), as for a late command; not answered on the PR, as
  // the later gesture speaks for itself. When the forge cannot tell, an addition waits for the
  // next reconciliation (which approves a label by its event) and a removal is applied: the
  // safe side. An error (unavailable) when the forge cannot say now: asked again later.
  Result<std::optional<std::string>> label_overtaken(RepoRuntime& rt, const forges::FollowUp& f);

  // Forge thread: why command `f` is not applied when it reached dmzbot long after it was
  // written and a merge master changed their mind on the PR since (a command, the merge label:
  // the newer gesture stands, so an old merge delivered again does not queue a PR its merge
  // master cancelled meanwhile); nullopt to apply it. Fails closed: when the forge cannot say, the
  // writer is asked to write it again. An error (unavailable) when it cannot say now: asked again
  // later.
  Result<std::optional<std::string>> overtaken(RepoRuntime& rt, const forges::FollowUp& f);

  // Forge thread: the follow-ups in order; one the API cannot answer now stays first and is
  // tried again at the next tick (a rate limit or an outage delays commands, never drops them).
  void drain_follow_ups(RepoRuntime& rt);

  // Engine thread: a try build of the PR's head on master, on its own branch.
  void start_try(RepoRuntime& rt, const forges::FollowUp& f,
                 const std::shared_ptr<DeliveryTicket>& ticket);

  // Forge thread: the summaries that changed, shown on the PR heads; one the API cannot take
  // now stays for the next tick.
  void flush_shows(RepoRuntime& rt);

  // Engine thread (after each saved change): the summaries of the PRs it touched, and of
  // every waiting PR when places in the queue may have moved.
  void on_commit(const std::string& repo, const driver::Committed& c);

  // Engine thread. While the API is down each flush costs a full round of retries: a burst of
  // changes must not queue one flush each (the forge thread would be held up for minutes).
  void show(RepoRuntime& rt, std::vector<forges::PullSummary> summaries);

  // Engine thread, each tick: reconciliation when due, and the forge thread's retries.
  void forge_tick(RepoRuntime& rt);

  // Engine thread: reads the forge's view back on the forge thread and applies the events
  // that bring the state in line with it.
  void reconcile(RepoRuntime& rt);

  // At start, before serving: every delivery answered 202 and not handled when the last run
  // ended (a crash, or a stop before its follow-ups were carried out) is handled again, through
  // the adapter as it came. One that no longer authenticates or parses is logged and dropped.
  // At least once: a delivery whose effects were applied but not yet marked is applied again,
  // which the engine takes as a duplicate (an approval of the same head changes nothing).
  Status replay_unhandled();

  // One stored delivery handed to its repository as a new one; false if none takes it.
  bool replay(DeliveryId& stored);

  // Engine thread, at start: every hot PR's summary (what GitHub shows may be from an earlier
  // run, or missing).
  void show_all();

  // ---- timer ------------------------------------------------------------------------------------

  void timer_loop();
};

}  // namespace dmz

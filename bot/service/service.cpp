#include "bot/service/service.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <limits>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>
#include <utility>
#include <variant>

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

namespace {

constexpr std::size_t kRecentOutcomes = 20;  // in the queue document
constexpr std::size_t kPullEvents = 500;     // of one PR's timeline

q::Settings settings_for(const config::Repo& repo) {
  q::Settings s;
  s.required_checks = repo.required_checks;
  // A repository with a local runner and no explicit checks is gated by the runner's check.
  if (s.required_checks.empty() && repo.runner) s.required_checks = {repo.runner->context};
  s.check_timeout =
      std::chrono::duration_cast<std::chrono::milliseconds>(repo.check_timeout).count();
  const config::Queue& queue = repo.queue;
  s.strategy = queue.strategy;
  s.max_batch = static_cast<std::size_t>(queue.max_batch);
  s.window_start = static_cast<std::size_t>(queue.window_start);
  s.window_floor = static_cast<std::size_t>(queue.window_floor);
  s.window_max = static_cast<std::size_t>(queue.window_max);
  s.flaky_retries = queue.flaky_retries;
  s.priority_interrupts = queue.priority_interrupts;
  s.lanes = queue.lanes;
  s.path_groups = queue.path_groups;
  s.candidate_branches = !queue.candidate_branch.empty();
  return s;
}

q::Outcome refusal(Error e) { return q::Outcome{std::move(e), {}}; }

Error stopping() { return unavailable("the service is stopping"); }

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

// An Answer that sets a promise, and the future its caller waits on.
template <class R>
std::pair<Answer<R>, std::future<R>> promised() {
  auto promise = std::make_shared<std::promise<R>>();
  auto future = promise->get_future();
  return {Answer<R>([promise](R r) { promise->set_value(std::move(r)); },
                    [](Error e) { return R(std::move(e)); }),
          std::move(future)};
}

// Runs `body`, which gives `answer`; if it throws, the answer is internal(what: ...) before the
// executor logs the exception, so that the caller hears of it instead of waiting forever.
template <class R, class F>
void answering(const Answer<R>& answer, const std::string& what, F&& body) {
  try {
    body();
  } catch (const std::exception& e) {
    answer.fail(internal(what + ": " + e.what()));
    throw;
  } catch (...) {
    answer.fail(internal(what + ": an exception that is not a std::exception"));
    throw;
  }
}

// Creates `dir` (and its parents) private to dmzbot's user: mirrors of private code, the
// database and the build logs live under it.
Status make_private_dir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return unavailable("cannot create " + dir.string() + ": " + ec.message());
  if (::chmod(dir.c_str(), 0700) != 0)
    return unavailable("cannot make " + dir.string() + " private: " + std::strerror(errno));
  return {};
}

bool has_entries(const fs::path& dir) {
  std::error_code ec;
  return fs::is_directory(dir, ec) && fs::directory_iterator(dir, ec) != fs::directory_iterator();
}

// Who holds the leases: this host and data directory. It stays the same across restarts, so a
// service restarted after kill -9 takes its repositories straight back (the data directory's
// flock already keeps a second process on this host out).
std::string owner_id(const fs::path& data_dir) {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  std::error_code ec;
  return std::string(host) + ":" + fs::weakly_canonical(data_dir, ec).string();
}

}  // namespace

fs::path deliveries_file(const fs::path& store_file) {
  return store_file.parent_path() /
         (store_file.stem().string() + "-webhooks" + store_file.extension().string());
}

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
  // Deliveries accepted and not yet handled (their follow-ups may wait for the forge's API):
  // past Options::max_unfinished_deliveries, new ones are refused 503, not held in memory.
  std::atomic<std::size_t> unfinished_deliveries{0};
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
  void notify_saved(const std::string& repo) {
    std::vector<std::shared_ptr<Watcher>> live;
    {
      std::lock_guard lock(watch_mutex);
      std::erase_if(watchers, [](const auto& w) { return w.expired(); });
      for (const auto& w : watchers)
        if (auto f = w.lock()) live.push_back(std::move(f));
    }
    for (const auto& w : live) {
      std::lock_guard lock(w->mu);
      if (w->live) w->on_change(repo);
    }
  }

  std::thread timer;
  std::mutex timer_mutex;
  std::condition_variable timer_wake;
  bool timer_stop = false;
  std::atomic<bool> tick_queued{false};  // a tick waits on the engine thread

  q::Millis now() const { return clock->now(); }

  // One service per data directory: its mirrors and database must have a single writer (that
  // is also what makes removing a crashed run's git lock files safe). flock is released by the
  // kernel when the process dies, even by kill -9.
  Status lock_data_dir() {
    if (Status s = make_private_dir(cfg.data_dir); !s.ok()) return s;
    auto file = cfg.data_dir / "dmzbot.instance";
    instance_fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (instance_fd < 0)
      return unavailable("cannot open " + file.string() + ": " + std::strerror(errno));
    if (::flock(instance_fd, LOCK_EX | LOCK_NB) != 0)
      return conflict("another dmzbot is already serving data directory " + cfg.data_dir.string());
    return {};
  }

  // Deliveries that a dmzbot older than the deliveries' own file answered 202 and had not
  // handled are in the main database: copied to the deliveries' file, then marked handled where
  // they were, so the replay at start handles them once (a crash in between copies none twice:
  // the copy of a recorded id is a duplicate).
  Status move_old_deliveries() {
    for (std::int64_t after = 0;;) {
      auto old = store->unhandled_deliveries(after, 256);
      if (!old) return old.status();
      if (old->empty()) return {};
      if (auto copied = delivery_store->record_deliveries(*old); !copied) return copied.status();
      std::vector<std::string> ids;
      for (const DeliveryId& d : *old) ids.push_back(d.id);
      if (Status s = store->mark_deliveries_handled(ids); !s.ok()) return s;
      spdlog::info("moved {} unhandled webhook deliveries to {}", ids.size(),
                   deliveries_file(cfg.data_dir / cfg.store.path).string());
      after = old->back().seq;
    }
  }

  // The store, refusing to take a missing or empty database for an empty queue when the data
  // directory holds the mirrors of an earlier run: that would silently forget every queued PR.
  Status open_store() {
    const fs::path file = cfg.data_dir / cfg.store.path;
    const fs::path mirrors = cfg.data_dir / "mirrors";
    std::error_code ec;
    const bool existed = fs::exists(file, ec);
    auto opened = open_sqlite_store(file, options.store);
    if (!opened) return opened.status().prefixed("store: ");
    store = std::move(*opened);
    // Webhook deliveries have a database file of their own: a 202 waits for its commit, which
    // must not queue behind the engine's saves for SQLite's one writer per file.
    auto inbox = open_sqlite_store(deliveries_file(file), options.store);
    if (!inbox) return inbox.status().prefixed("store (webhook deliveries): ");
    delivery_store = std::move(*inbox);
    deliveries = std::make_unique<DeliveryRecorder>(*delivery_store);
    if (Status s = move_old_deliveries(); !s.ok()) return s.prefixed("store: ");
    auto has_state = store->has_state();
    if (!has_state) return has_state.status().prefixed("store: ");
    if (!*has_state && has_entries(mirrors))
      return invalid("the database " + file.string() + " is " + (existed ? "empty" : "missing") +
                     " but " + mirrors.string() +
                     " holds the mirrors of an earlier run, whose queue would be lost; restore "
                     "the database, or remove " +
                     mirrors.string() + " to start with an empty queue on purpose");
    return make_private_dir(mirrors);
  }

  // The mirrors this start made (open_repo). A start that fails before any state was saved
  // removes them: the next start would take them for the mirrors of an earlier run beside a
  // lost database (open_store), and refuse to start for good.
  std::vector<fs::path> new_mirrors;
  void forget_new_mirrors() {
    if (new_mirrors.empty() || !store) return;
    auto has_state = store->has_state();
    if (!has_state || *has_state) return;  // a state refers to them now (or cannot tell): kept
    for (const auto& dir : new_mirrors) {
      std::error_code ec;
      fs::remove_all(dir, ec);
      if (ec)
        spdlog::warn("cannot remove {}, made by the start that failed: {}", dir.string(),
                     ec.message());
    }
  }

  // What a sandboxed build must not see: the configuration (and its directory, where token
  // files usually live, unless that is a top-level directory like /etc), the data directory
  // and the signing key or GnuPG home.
  std::vector<fs::path> secret_paths() const {
    std::vector<fs::path> out = {cfg.data_dir, cfg.signing.key, cfg.signing.gnupg_home};
    out.insert(out.end(), cfg.secret_files.begin(), cfg.secret_files.end());
    if (!cfg.file.empty()) {
      auto file = fs::absolute(cfg.file);
      out.push_back(file);
      if (std::distance(file.parent_path().begin(), file.parent_path().end()) > 2)
        out.push_back(file.parent_path());
    }
    return out;
  }

  fs::path log_dir(const std::string& repo) const {
    return cfg.data_dir / "logs" / config::mirror_dir_name(repo);
  }

  RepoRuntime* find(const std::string& name) {
    for (auto& r : repos)
      if (r->cfg.name == name) return r.get();
    return nullptr;
  }

  // The GitHub adapter: its REST client over TLS, and the forge.
  Status open_github(RepoRuntime& rt) {
    const config::GitHub& g = *rt.cfg.github;
    HttpClientOptions http;
    http.ca_file = g.ca_file;
    http.timeout = options.api_timeout;
    auto client = BeastHttpClient::create(http);
    if (!client) return client.status().prefixed(rt.cfg.name + ": ");
    rt.http = std::move(*client);
    forges::github::ClientOptions c;
    c.api_url = g.api_url;
    c.repo = rt.cfg.name;
    c.token = g.token.reveal();
    c.app_id = g.app_id;
    c.installation_id = g.installation_id;
    c.private_key = g.private_key.reveal();
    c.backoff = options.api_backoff.count();
    c.max_backoff = std::max<q::Millis>(c.backoff, 8'000);
    c.max_rate_wait = options.api_max_rate_wait.count();
    forges::github::Options f;
    f.webhook = {rt.cfg.name, rt.cfg.master, g.merge_label, g.bot_name, g.try_branch};
    f.secret = g.webhook_secret.reveal();
    f.webhook.check_sources = g.check_sources;
    f.merge_masters = g.merge_masters;
    f.required_checks = rt.settings.required_checks;
    f.permission_cache =
        std::chrono::duration_cast<std::chrono::milliseconds>(g.permission_cache).count();
    f.label_skew = options.label_skew.count();
    f.status_labels = g.status_labels;
    if (g.hook_id)
      f.redeliver_hook = g.hook_id;
    else if (g.app())
      f.redeliver_hook = 0;  // the App's own webhook
    f.public_url = cfg.server.public_url;
    rt.reconcile_interval =
        options.reconcile_interval
            ? options.reconcile_interval->count()
            : std::chrono::duration_cast<std::chrono::milliseconds>(g.reconcile_interval).count();
    if (f.redeliver_hook == 0) {  // shared while fresher than half a reconciliation interval
      auto& shared = app_logs[{g.api_url, g.app_id}];
      if (!shared)
        shared = std::make_shared<forges::github::AppDeliveryLog>(rt.reconcile_interval / 2);
      f.app_log = shared;
    }
    auto api_client = std::make_unique<forges::github::Client>(*rt.http, *clock, c);
    rt.api_client = api_client.get();
    rt.forge = std::make_unique<forges::github::GitHubForge>(f, std::move(api_client));
    rt.api = true;
    return {};
  }

  // How git reaches the repository's remote: [repo.auth], and for GitHub the token (or the
  // App's installation token, renewed as it expires) and the heads of pull requests.
  git::TransportOptions transport_for(const RepoRuntime& rt) const {
    const config::Repo& repo = rt.cfg;
    git::TransportOptions t = transport_options(repo, cfg.signing);
    if (repo.github) {
      t.fetch_refspecs.push_back("+refs/pull/*/head:refs/remotes/pull/*");
      if (t.token.empty() && !repo.github->app()) t.token = repo.github->token.reveal();
      if (t.token.empty() && repo.github->app()) {
        auto* forge = static_cast<forges::github::GitHubForge*>(rt.forge.get());
        t.token_source = [forge] { return forge->client().token(); };
      }
    }
    return t;
  }

  Status open_repo(const config::Repo& repo) {
    auto rt = std::make_unique<RepoRuntime>();
    rt->cfg = repo;
    rt->settings = settings_for(repo);
    if (repo.forge == "plain") {
      // The hotfix branches come back into master as PRs of their own (bring_hotfix_back).
      auto patterns = repo.branch_patterns;
      if (std::find(patterns.begin(), patterns.end(), repo.hotfix_branches) == patterns.end())
        patterns.push_back(repo.hotfix_branches);
      rt->forge = std::make_unique<forges::PlainForge>(forges::PlainForge::Options{
          repo.name, repo.master, std::move(patterns), repo.refused_patterns});
    } else if (repo.forge == "github" && repo.github) {
      if (Status s = open_github(*rt); !s.ok()) return s;
    } else
      return invalid(repo.name + ": forge " + repo.forge + " is not supported");
    const fs::path mirror_dir = cfg.data_dir / "mirrors" / config::mirror_dir_name(repo.name);
    if (std::error_code ec; !fs::exists(mirror_dir, ec) && !ec) new_mirrors.push_back(mirror_dir);
    auto mirror = git::Mirror::open(mirror_dir, transport_for(*rt));
    if (!mirror) return mirror.status().prefixed(repo.name + ": ");
    auto signer = make_signer(cfg.signing);
    if (!signer) return signer.status().prefixed(repo.name + ": signing: ");
    rt->worker = std::make_unique<GitWorker>(repo, cfg.signing, std::move(*mirror),
                                             std::move(*signer), *clock);
    if (repo.runner) {
      if (Status s = make_private_dir(log_dir(repo.name)); !s.ok()) return s;
      RepoRuntime* raw = rt.get();
      rt->runner = std::make_unique<LocalRunner>(
          *repo.runner, log_dir(repo.name),
          [this, raw](const std::string&, const q::Sha& sha, q::Check check) {
            check.at = now();
            post_event(raw->cfg.name, q::CheckReported{sha, std::move(check), check.at});
          },
          secret_paths(), cfg.data_dir / "builds" / config::mirror_dir_name(repo.name),
          BuildLogLimits{static_cast<std::uintmax_t>(repo.runner->max_log_mib) << 20,
                         std::chrono::hours(24 * repo.runner->log_days)});
    }
    rt->git =
        std::make_unique<SerialExecutor>("git " + repo.name, SerialExecutor::Priority::kBackground);
    rt->forge_thread = std::make_unique<SerialExecutor>("forge " + repo.name,
                                                        SerialExecutor::Priority::kBackground);
    RepoRuntime* raw_rt = rt.get();
    rt->promoter = std::make_unique<Promoter>(
        repo, *clock, store.get(),
        [this, raw_rt](const PromotionRecord& r) { bring_hotfix_back(*raw_rt, r); });
    repos.push_back(std::move(rt));
    return {};
  }

  std::vector<driver::RepoConfig> driver_configs() const {
    std::vector<driver::RepoConfig> out;
    for (const auto& rt : repos) {
      driver::RepoConfig c;
      c.name = rt->cfg.name;
      c.settings = rt->settings;
      c.forge = rt->forge.get();
      c.fetch_interval = options.fetch_interval.count();
      out.push_back(std::move(c));
    }
    return out;
  }

  // ---- results back to the engine thread ------------------------------------------------------

  void post_event(const std::string& repo, q::Event event) {
    engine.post([this, repo, event = std::move(event)]() mutable {
      apply_or_park(repo, std::move(event), Parked::kWhileServed);
    });
  }

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
  // Beyond this many events waiting for a repository, a delivery's event is not kept: its
  // delivery stays unhandled and is handled again at the next start.
  static constexpr std::size_t kMaxParked = 10'000;

  // Applies `event` now, or parks it when the store cannot save it (or events wait before it).
  void apply_or_park(const std::string& repo, q::Event event, Parked::Keep keep,
                     std::function<void(const q::Outcome&)> then = nullptr) {
    if (!unsaved.count(repo)) {
      auto out = driver->apply(repo, event);
      if (!must_wait(repo, out, keep)) {
        if (then) then(out);
        return;
      }
    }
    auto& waiting = unsaved[repo];
    if (keep == Parked::kUntilApplied && waiting.size() >= kMaxParked) {
      log::error({.repo = repo, .event = q::event_kind(event)},
                 "{} events wait to be saved; this {} waits for the next start", waiting.size(),
                 q::event_kind(event));
      return;
    }
    waiting.push_back({std::move(event), keep, std::move(then)});
  }

  void apply_unsaved(const std::string& repo) {
    auto it = unsaved.find(repo);
    if (it == unsaved.end()) return;
    auto& waiting = it->second;
    while (!waiting.empty()) {
      if (waiting.front().fetched) {
        auto fetched = std::move(waiting.front().fetched);
        waiting.pop_front();
        fetched();  // may park more events, behind those still waiting
        continue;
      }
      const Parked& p = waiting.front();
      auto out = driver->apply(repo, p.event);
      if (must_wait(repo, out, p.keep)) {
        if (!retrying.count(repo))  // once, not at every tick
          log::warn({.repo = repo, .event = q::event_kind(p.event)},
                    "cannot save {} yet, tried again at each tick: {}", q::event_kind(p.event),
                    escape_control(out.rejected->message));
        retrying.insert(repo);
        return;
      }
      auto then = std::move(waiting.front().then);
      // A refusal for good is reported by whoever waits for the outcome (`then`), else here.
      if (!then && out.rejected && out.rejected->code != Code::kNotFound)
        log::warn(
            {.repo = repo, .pr = q::pr_of(p.event).value_or(0), .event = q::event_kind(p.event)},
            "{} refused: {}", q::event_kind(p.event), escape_control(out.rejected->message));
      waiting.pop_front();
      if (then) then(out);
    }
    retrying.erase(repo);
    unsaved.erase(repo);
  }
  std::set<std::string> retrying;  // repositories whose first waiting event was refused

  // Whether events of `repo` wait to be saved, and the refusal of a command that would jump
  // ahead of them (503: its caller tries again).
  bool events_wait(const std::string& repo) const { return unsaved.count(repo) > 0; }
  static Error earlier_change_unsaved() {
    return unavailable("the store could not save an earlier change; try again");
  }

  // Refused because the store cannot save now (or the repository is not served now): worth
  // waiting, as `keep` says.
  bool must_wait(const std::string& repo, const q::Outcome& out, Parked::Keep keep) const {
    if (!out.rejected || out.rejected->code != Code::kUnavailable) return false;
    const auto* health = driver->health(repo);
    return health && (health->loaded || keep == Parked::kUntilApplied);
  }

  // Runs `work` on the repository's git thread; false if the service is stopping.
  template <class F>
  bool on_git(const std::string& repo, F work) {
    RepoRuntime* rt = find(repo);
    return rt && rt->git->post([rt, work = std::move(work)] { work(*rt); });
  }

  void fetch_into_driver(RepoRuntime& rt, std::function<void()> then = nullptr) {
    std::vector<RepoRuntime::Registering> registering;  // this fetch is the one they wait for
    {
      std::lock_guard lock(rt.fetch_mu);
      registering.swap(rt.registering);
    }
    const q::Millis began = now();
    auto refs = rt.worker->fetch();
    if (refs) rt.promoter->after_fetch(rt.worker->mirror());
    const bool fetched = refs.ok();
    // The trust root is read as often as the remote: an edit of it (a key revoked) voids the
    // verdicts given under the old one within a fetch interval, and at the start.
    auto trust_root = trust::trust_root_digest(rt.cfg.policy_root);
    engine.post([this, &rt, repo = rt.cfg.name, refs = std::move(refs), then = std::move(then),
                 trust_root = std::move(trust_root), began,
                 registering = std::move(registering)]() mutable {
      if (!refs) driver->fetch_failed(repo, refs.status());
      // A failed reset of dmz is pushed again only while this instance serves the repository:
      // after a lost lease another instance's candidate may be on dmz.
      if (const driver::Health* h = driver->health(repo); h && h->loaded)
        on_git(repo, [this](RepoRuntime& r) { retry_reset(r); });
      else
        on_git(repo, [](RepoRuntime& r) { r.reset_retrying.reset(); });
      if (events_wait(repo)) {  // answered now; the fetch's events wait behind the others
        for (const auto& r : registering) r.answer(refusal(earlier_change_unsaved()));
        registering.clear();
      }
      auto apply = [this, &rt, repo, refs = std::move(refs), then = std::move(then),
                    trust_root = std::move(trust_root), began,
                    registering = std::move(registering)]() mutable {
        if (refs) {
          older_than_webhooks(rt, *refs, began);
          driver->fetched(repo, *refs);
        }
        register_pulls(rt, refs, registering);
        if (const q::RepoState* state = driver->state(repo);
            trust_root && state && state->trust_root != *trust_root) {
          apply_or_park(repo, q::TrustRootRead{*trust_root, now()}, Parked::kWhileServed);
        }
        if (then) then();
      };
      if (events_wait(repo))
        unsaved[repo].push_back({q::Event{}, Parked::kWhileServed, nullptr, std::move(apply)});
      else
        apply();
    });
    if (fetched)
      for (const auto& a : std::exchange(rt.policy_waiting, {})) judge_policy(rt, a);
    retry_policies(rt);
  }

  // Engine thread, once the fetch they waited for was applied: registrations against the refs
  // it read (never while events wait to be saved: fetch_into_driver refuses them then).
  void register_pulls(RepoRuntime& rt, const Result<forges::RemoteRefs>& refs,
                      const std::vector<RepoRuntime::Registering>& registering) {
    for (const auto& r : registering) {
      if (!refs) {
        r.answer(refusal(unavailable(refs.message())));
        continue;
      }
      auto opened = rt.forge->register_pull(*refs, r.registration, now());
      r.answer(opened ? driver->apply(rt.cfg.name, *opened) : refusal(opened.error()));
    }
  }

  // The forge's refusal of `r` whatever the remote holds (a forge with an API of its own, a
  // branch dmzbot does not queue): asked as if the remote had the branch, so that a registration
  // that can only be refused costs no fetch. Any thread: register_pull reads only options.
  std::optional<Error> refused_anyway(const RepoRuntime& rt, const forges::Registration& r) const {
    forges::RemoteRefs imagined;
    const q::Sha any(40, '0');
    imagined.branches[r.branch] = any;
    if (r.branch.starts_with(forges::kTagPrefix))
      imagined.tags[r.branch.substr(forges::kTagPrefix.size())] = any;
    auto opened = rt.forge->register_pull(imagined, r, now());
    if (opened) return std::nullopt;
    return opened.error();
  }

  // Answers the registrations still waiting for a fetch (stopping): the git thread is gone.
  static void drop_registrations(RepoRuntime& rt) {
    std::vector<RepoRuntime::Registering> dropped;
    {
      std::lock_guard lock(rt.fetch_mu);
      dropped.swap(rt.registering);
    }
  }

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
  void bring_hotfix_back(RepoRuntime& rt, const PromotionRecord& r) {
    std::string approver = "dmzbot (release " + r.tag + " signed by";
    for (const auto& s : r.signers) approver += " " + s;
    approver += ")";
    const forges::PullToOpen want{r.hotfix_branch, rt.cfg.master, r.commit,
                                  "Bring hotfix " + r.tag + " back into " + rt.cfg.master,
                                  "dmzbot released " + r.tag + " from " + r.hotfix_branch + " to " +
                                      rt.cfg.production + " without " + rt.cfg.master +
                                      ". This pull request brings the fix into " + rt.cfg.master +
                                      " through the queue, so that the next release keeps it."};
    if (rt.api) {
      rt.forge_thread->post([this, &rt, want, approver] {
        auto opened = rt.forge->open_pull(want, now());
        if (!opened) {
          spdlog::warn("{}: bringing {} back: {}", rt.cfg.name, want.branch, opened.message());
          if (opened.code() == Code::kUnavailable) rt.promoter->resume_hotfixes();
          return;
        }
        if (!*opened) return;  // a PR of it at that commit was closed: brought back before
        engine.post([this, &rt, pr = **opened, approver, commit = want.head] {
          queue_hotfix(rt, pr.number, pr.branch, approver, commit, [&] { return pr; });
        });
      });
      return;
    }
    if (r.seq == 0) {  // its record is not saved yet: without a seq it has no number of its own
      spdlog::warn("{}: hotfix {} waits for its promotion record to be saved", rt.cfg.name, r.tag);
      rt.promoter->resume_hotfixes();
      return;
    }
    const int number = kHotfixPullBase + static_cast<int>(r.seq);
    forges::RemoteRefs refs;
    refs.branches = rt.worker->mirror().remote_branches();
    forges::Registration reg{number, r.hotfix_branch, "dmzbot", want.title};
    engine.post([this, &rt, refs = std::move(refs), reg, approver, commit = r.commit] {
      queue_hotfix(rt, reg.number, reg.branch, approver, commit,
                   [&] { return rt.forge->register_pull(refs, reg, now()); });
    });
  }

  // Engine thread (the one that archives, so that a PR is in the hot state or in the archive,
  // never in between): whether PR `number` was approved at `commit` and finished (landed, or
  // refused: its outcome said why); an error (logged) hands the hotfixes over again after the
  // next fetch.
  Result<bool> brought_back_before(RepoRuntime& rt, int number, const q::Sha& commit) {
    auto archived = store->archived(rt.cfg.name, number);
    if (!archived) {
      spdlog::warn("{}: bringing the hotfix back as #{}: {}", rt.cfg.name, number,
                   archived.message());
      rt.promoter->resume_hotfixes();
      return archived.error();
    }
    return *archived && (*archived)->approval && (*archived)->approval->sha == commit;
  }

  // Engine thread: approves PR `number` of `branch` at `commit`, unless it is approved there
  // already or was, and finished; a PR the engine does not know yet is opened (registered, or
  // the PR the forge opened) first.
  void queue_hotfix(RepoRuntime& rt, int number, const std::string& branch,
                    const std::string& approver, const q::Sha& commit,
                    const std::function<Result<q::PrOpened>()>& open) {
    const std::string& repo = rt.cfg.name;
    const q::RepoState* state = driver->state(repo);
    std::vector<q::Event> events;
    const q::PullRequest* known = nullptr;
    if (state)
      if (auto it = state->prs.find(number); it != state->prs.end()) known = &it->second;
    if (!known) {
      auto before = brought_back_before(rt, number, commit);
      if (!before || *before) return;
      auto opened = open();
      if (!opened) {
        spdlog::warn("{}: bringing {} back: {}", repo, branch, opened.message());
        if (opened.code() == Code::kUnavailable) rt.promoter->resume_hotfixes();
        return;
      }
      events.push_back(*opened);
    } else if (known->approval && known->approval->sha == commit) {
      return;
    }
    events.push_back(q::MergeRequested{number, commit, approver, now()});
    if (events_wait(repo)) {  // not ahead of them: handed over again after the next fetch
      spdlog::warn("{}: bringing the hotfix back as #{} waits for the store: {}", repo, number,
                   earlier_change_unsaved().message);
      rt.promoter->resume_hotfixes();
      return;
    }
    for (const q::Event& e : events) {
      auto out = driver->apply(repo, e);
      if (out.rejected) {
        spdlog::warn("{}: bringing the hotfix back as #{}: {}", repo, number,
                     escape_control(out.rejected->message));
        // The store could not save it: handed over again after the next fetch.
        if (out.rejected->code == Code::kUnavailable) rt.promoter->resume_hotfixes();
        return;
      }
    }
    spdlog::info("{}: hotfix branch {} queued for {} as #{}", repo, branch, rt.cfg.master, number);
  }

  // ---- ports (called on the engine thread) -----------------------------------------------------

  void fetch(const std::string& repo) override {
    on_git(repo, [this](RepoRuntime& rt) { fetch_into_driver(rt); });
  }
  void build_candidate(const std::string& repo, const q::BuildCandidate& a) override {
    on_git(repo, [this, a](RepoRuntime& rt) {
      if (a.tip) rt.reset_retrying.reset();  // dmz follows the newer train now
      post_event(rt.cfg.name, rt.worker->build_candidate(a));
    });
  }
  void reset_dmz(const std::string& repo, const q::ResetDmz& a) override {
    on_git(repo, [this, a](RepoRuntime& rt) { push_reset(rt, a, 0); });
  }
  // The first wait before a retry on our side (a policy check, a reset of dmz): the fetch
  // interval, at least 2 s.
  q::Millis retry_base() const {
    return std::max<q::Millis>(options.fetch_interval.count(), 2'000);
  }
  // Git thread. A reset whose push failed (a remote timeout, a hook refusing it) is pushed
  // again after a backoff from the fetch interval (at least 2 s, doubling up to 5 min): dmz
  // must not keep a backed-out merge, which CI would go on building, until the next candidate
  // or restart.
  void push_reset(RepoRuntime& rt, const q::ResetDmz& a, int tries) {
    rt.reset_retrying.reset();
    Status s = rt.worker->reset_dmz(a);
    if (s.ok()) return;
    const q::Millis wait = backoff(retry_base(), tries + 1, 300'000);
    log::error({.repo = rt.cfg.name, .sha = a.sha}, "reset {} to {} failed, tried again in {}s: {}",
               rt.cfg.dmz, a.sha, wait / 1000, s.message());
    rt.reset_retrying = RepoRuntime::ResetRetry{a, tries + 1, now() + wait};
  }
  // Git thread (after each fetch): the failed reset, once its backoff is over.
  void retry_reset(RepoRuntime& rt) {
    if (!rt.reset_retrying || rt.reset_retrying->not_before > now()) return;
    const RepoRuntime::ResetRetry r = *rt.reset_retrying;
    push_reset(rt, r.reset, r.tries);
  }
  void prune_candidates(const std::string& repo, const q::PruneCandidates& a) override {
    on_git(repo, [a](RepoRuntime& rt) {
      if (Status s = rt.worker->prune_candidates(a); !s.ok())
        log::warn({.repo = rt.cfg.name}, "deleting obsolete candidate branches failed: {}",
                  s.message());
    });
  }
  void fast_forward(const std::string& repo, const q::FastForwardMaster& a) override {
    on_git(repo,
           [this, a](RepoRuntime& rt) { post_event(rt.cfg.name, rt.worker->fast_forward(a)); });
  }
  void check_policy(const std::string& repo, const q::CheckPolicy& a) override {
    RepoRuntime* rt = find(repo);
    if (!rt) return;
    rt->git->post([this, rt, a] { judge_policy(*rt, a); });
  }
  // A check joins those waiting, or replaces the one of the same PR at the same head (the
  // newer names the newer master).
  static void wait_once(std::vector<q::CheckPolicy>& waiting, const q::CheckPolicy& a) {
    auto same = std::find_if(waiting.begin(), waiting.end(), [&](const q::CheckPolicy& w) {
      return w.number == a.number && w.sha == a.sha;
    });
    if (same == waiting.end())
      waiting.push_back(a);
    else
      *same = a;
  }
  // Git thread. A verdict that failed on our side (PolicyChecked::unavailable: I/O, GnuPG) is
  // not the PR's fault: it is asked again, backing off from the fetch interval (5 s, 10 s, 20 s,
  // 40 s by default), and only the kPolicyTries-th such verdict fails the PR, closed, the error
  // among its reasons (`retry` asks again).
  static constexpr int kPolicyTries = 5;
  void take_verdict(RepoRuntime& rt, const q::CheckPolicy& a, q::PolicyChecked verdict, int tries) {
    if (!verdict.unavailable.empty() && tries + 1 < kPolicyTries) {
      const q::Millis wait =
          backoff(retry_base(), tries + 1,
                  std::numeric_limits<q::Millis>::max());  // no cap: kPolicyTries bounds it
      log::warn({.repo = rt.cfg.name, .pr = a.number, .sha = a.sha},
                "policy check failed on our side, asked again in {}s: {}", wait / 1000,
                verdict.unavailable);
      metrics::global().add("dmzbot_policy_checks_deferred_total", {{"repo", rt.cfg.name}});
      std::erase_if(rt.policy_retrying, [&](const RepoRuntime::PolicyRetry& r) {
        return r.check.number == a.number && r.check.sha == a.sha;
      });
      rt.policy_retrying.push_back({a, tries + 1, now() + wait});
      return;
    }
    post_event(rt.cfg.name, std::move(verdict));
  }
  // Git thread (after each fetch): the checks whose backoff is over are judged again.
  void retry_policies(RepoRuntime& rt) {
    const q::Millis t = now();
    std::vector<RepoRuntime::PolicyRetry> later;
    for (auto& r : std::exchange(rt.policy_retrying, {})) {
      if (r.not_before <= t)
        judge_policy(rt, r.check, r.tries);  // may wait again, in policy_retrying
      else
        later.push_back(std::move(r));
    }
    for (auto& r : later) rt.policy_retrying.push_back(std::move(r));
  }
  // Git thread. A head the mirror lacks while the remote cannot be fetched waits for the next
  // good fetch: judged now, it would fail the policy for the remote's outage.
  void judge_policy(RepoRuntime& rt, const q::CheckPolicy& a, int tries = 0) {
    if (rt.worker->out_of_reach(a.sha)) {
      log::info({.repo = rt.cfg.name, .pr = a.number, .sha = a.sha},
                "policy check waits for the remote: the head is not fetched yet");
      wait_once(rt.policy_waiting, a);
      return;
    }
    if (!rt.api || !rt.worker->counts_forge_reviews(a))
      return take_verdict(rt, a, rt.worker->check_policy(a), tries);
    // The forge's reviews first (the API may block: the forge thread), then the verdict. An
    // API that is down (unavailable, after the client's retries) holds the verdict back until
    // it answers again; any other refusal (no access to reviews) fails closed, with the reason.
    rt.forge_thread->post([this, rt = &rt, a, tries] {
      ForgeReviews reviews;
      auto approving = rt->forge->approving_reviewers(a.number, a.sha);
      if (!approving && approving.code() == Code::kUnavailable) {
        log::info({.repo = rt->cfg.name, .pr = a.number, .sha = a.sha},
                  "policy check waits for the API: {}", approving.message());
        wait_once(rt->reviews_waiting, a);
        return;
      }
      if (approving)
        reviews.approving = std::move(*approving);
      else
        reviews.unreadable = approving.message();
      rt->git->post([this, rt, a, tries, reviews = std::move(reviews)] {
        take_verdict(*rt, a, rt->worker->check_policy(a, reviews), tries);
      });
    });
  }
  void check_candidate(const std::string& repo, const q::CheckCandidate& a) override {
    on_git(repo,
           [this, a](RepoRuntime& rt) { post_event(rt.cfg.name, rt.worker->check_candidate(a)); });
  }
  void start_build(const std::string& repo, const q::StartBuild& a) override {
    RepoRuntime* rt = find(repo);
    if (!rt || stopped) return;  // stopping: the runners are gone or going
    if (!rt->runner) {    // external CI builds the candidate's branch on push and posts statuses
      if (a.attempt > 1)  // a retry: push the branch again so that CI builds it again
        on_git(repo, [a](RepoRuntime& rt) {
          if (Status s = rt.worker->repush_candidate(a.candidate, a.sha); !s.ok())
            log::warn({.repo = rt.cfg.name, .sha = a.sha}, "pushing candidate {} again failed: {}",
                      a.candidate, s.message());
        });
      return;
    }
    SerialExecutor* git = rt->git.get();
    GitWorker* worker = rt->worker.get();
    rt->runner->start(repo, a.sha, [git, worker, sha = a.sha](const fs::path& dir) {
      // The mirror belongs to the git thread: export there, and wait. The answer comes even if
      // the export throws or the git thread drops it at a stop.
      auto [exported, future] = promised<Status>();
      git->post([exported, worker, sha, dir] {
        answering(exported, "exporting the tree", [&] { exported(worker->export_tree(sha, dir)); });
      });
      return future.get();
    });
  }
  void cancel_build(const std::string& repo, const q::CancelBuild& a) override {
    if (RepoRuntime* rt = find(repo); rt && rt->runner) rt->runner->cancel(a.sha);
  }
  void send(const forges::OutboxMessage& message) override {
    RepoRuntime* rt = find(message.repo);
    if (!rt) return;
    forges::OutboxMessage m = message;
    if (const q::RepoState* state = driver->state(m.repo)) {  // engine thread: as it is now
      auto pr = state->prs.find(m.notice.number);
      m.approved_since =
          pr != state->prs.end() && pr->second.approval && pr->second.approval->at > m.created_at;
    }
    rt->forge_thread->post([this, rt, m] {
      Status s = rt->forge->deliver(m);
      engine.post([this, id = m.id, s] { driver->delivered(id, s); });
    });
  }

  // ---- the forge's API: webhook follow-ups, reconciliation, summaries ------------------------

  // A fetch before the events of a webhook that names new commits are acted on (git work runs
  // in order on the git thread), unless the mirror has every commit they name (a label or a
  // `merge <sha>` on a head fetched before: no git process for it). `commits` empty: the
  // webhook needs what only a fetch can tell (a push, a comment's PR head, a try). Coalesced:
  // one queued fetch covers every webhook before it, and it waits out webhook_fetch_gap since
  // the last one (a burst of deliveries costs one git process, not one each) while later
  // webhooks join it. The git thread waits: what is queued behind the fetch needs it anyway.
  void request_fetch(RepoRuntime& rt, std::vector<q::Sha> commits) {
    {
      std::lock_guard lock(rt.fetch_mu);
      if (commits.empty())
        rt.fetch_always = true;
      else
        rt.fetch_for.insert(rt.fetch_for.end(), commits.begin(), commits.end());
      if (std::exchange(rt.fetch_queued, true)) return;  // the queued one takes them too
    }
    rt.git->post([this, &rt] {
      std::this_thread::sleep_until(rt.webhook_fetch_done + options.webhook_fetch_gap);
      std::vector<q::Sha> wanted;
      bool always = false;
      {
        std::lock_guard lock(rt.fetch_mu);
        rt.fetch_queued = false;
        wanted.swap(rt.fetch_for);
        always = std::exchange(rt.fetch_always, false);
      }
      if (!always && rt.worker->has_commits(wanted)) return;
      fetch_into_driver(rt);
      rt.webhook_fetch_done = std::chrono::steady_clock::now();
    });
  }

  // The commits the events of a delivery that asks for a fetch name: PRs opened (or labelled)
  // at a head, approvals of a full sha. Empty when one of them needs the remote itself: a push
  // (the PR's branch moved: a rewrite shows only in a fetch), master pushed, a command whose
  // head is pinned later, a try.
  static std::vector<q::Sha> commits_named(const forges::Delivery& d) {
    std::vector<q::Sha> named;
    for (const auto& e : d.events) {
      if (const auto* opened = std::get_if<q::PrOpened>(&e))
        named.push_back(opened->head);
      else if (std::holds_alternative<q::PrPushed>(e) ||
               std::holds_alternative<q::MasterObserved>(e))
        return {};
    }
    for (const auto& f : d.follow_ups) {
      if (f.kind == forges::FollowUp::Kind::kTry) return {};
      if (f.kind != forges::FollowUp::Kind::kAuthorize || !f.event) continue;
      if (const auto* merge = std::get_if<q::MergeRequested>(&*f.event)) {
        if (f.pin_head || merge->sha.size() < 40) return {};
        named.push_back(merge->sha);
      }
    }
    return named;
  }

  // A delivery authenticated and parsed, recorded as new (or from before a crash): a fetch if
  // it names new commits, and its handling on the engine thread, by every repository that took
  // it (several only for an App's installation events, which name repositories); it is marked
  // handled once all of them are done with it.
  void accept(std::vector<Taken> taken, std::string key) {
    std::size_t parts = 0;
    for (const auto& t : taken) parts += 1 + t.d.follow_ups.size();
    auto ticket =
        std::make_shared<DeliveryTicket>(std::move(key), parts, *deliveries, unfinished_deliveries);
    for (auto& [rt, d] : taken) {
      if (d.fetch) request_fetch(*rt, commits_named(d));
      engine.post([this, rt, d = std::move(d), ticket]() mutable {
        handle_delivery(*rt, std::move(d), ticket);
      });
    }
  }

  // The repositories of `forge` that take `request` as it was at `at`, each with its reading of
  // it. Every one is asked: an App's installation event may name several. Empty with the
  // reason when none does; a refusal other than "not mine" stops the search.
  Result<std::vector<Taken>> takers(const std::string& forge, const forges::InboundRequest& request,
                                    q::Millis at) {
    std::vector<Taken> taken;
    bool any = false, unauthenticated_seen = false;
    for (auto& rt : repos) {
      if (rt->forge->kind() != forge) continue;
      any = true;
      auto delivery = rt->forge->webhook(request, at);
      if (delivery) {
        taken.push_back({rt.get(), std::move(*delivery)});
        continue;
      }
      const Code code = delivery.code();
      if (code != Code::kUnauthenticated && code != Code::kNotFound) {
        if (taken.empty()) return delivery.error();
        break;  // the same body another repository could read: not ours to refuse
      }
      unauthenticated_seen |= code == Code::kUnauthenticated;
    }
    if (!taken.empty()) return taken;
    if (!any) return not_found("no " + forge + " repository is configured");
    if (unauthenticated_seen)
      return unauthenticated("the webhook's signature matches no configured repository");
    return not_found("the webhook is about no configured repository");
  }

  // The heads PR n took by the event log (its pr_opened and pr_pushed events, among its newest
  // 200), with when dmzbot learned each, oldest first; empty if the log cannot be read.
  std::vector<std::pair<q::Millis, q::Sha>> logged_heads(const std::string& repo, int n) {
    std::vector<std::pair<q::Millis, q::Sha>> out;
    auto events = store->pr_events(repo, n, 200);
    if (!events) return out;
    for (const auto& e : *events) {
      if (e.kind != "pr_opened" && e.kind != "pr_pushed") continue;
      auto j = nlohmann::json::parse(e.json, nullptr, false);
      out.emplace_back(e.at, j.is_object() ? j.value("head", "") : "");
    }
    return out;
  }

  // When f's comment was written (on the forge's clock), on dmzbot's.
  static q::Millis written_here(const RepoRuntime& rt, const forges::FollowUp& f) {
    return f.written_at - rt.forge->api_health().clock_offset;
  }

  // The head PR f.number had when f's comment was written (the adapter sets the time of
  // every comment, or of its delivery), by the event log: the order the webhooks arrived in
  // does not matter, and a delivery handled again after a restart pins what it pinned then.
  // "" when that is not certain: two heads within the clock skew of the comment, or none known
  // by then. Without a time: the head known now.
  q::Sha head_when_written(const RepoRuntime& rt, const forges::FollowUp& f) {
    const std::string& repo = rt.cfg.name;
    if (f.written_at == 0) {
      const q::RepoState* state = driver->state(repo);
      if (!state || !state->prs.count(f.number)) return {};
      return state->prs.at(f.number).head;
    }
    const q::Millis skew = options.label_skew.count();
    const q::Millis written = written_here(rt, f);  // the heads are logged on our clock
    q::Sha before;                                  // the head at written - skew
    std::set<q::Sha> within;                        // the heads it took until written + skew
    for (const auto& [at, head] : logged_heads(repo, f.number)) {
      if (at > written + skew) continue;
      if (at <= written - skew)
        before = head;
      else
        within.insert(head);
    }
    if (!before.empty()) within.insert(before);
    return within.size() == 1 ? *within.begin() : q::Sha();
  }

  // Whether `sha` is a candidate's, or the head of a PR that is not finished.
  static bool follows(const q::RepoState& state, const q::Sha& sha) {
    for (const auto& k : state.train)
      if (k.sha == sha) return true;
    for (const auto& [n, pr] : state.prs)
      if (pr.head == sha && pr.finished_at == 0) return true;
    return false;
  }

  // Engine thread: the events of a delivery (its own, or those a follow-up read from the API).
  // It is acknowledged (202): an event the store cannot save now waits, in order, and this
  // part of the delivery is done once the last of them was applied.
  void apply_delivered(const std::string& repo, const std::vector<q::Event>& events,
                       const std::shared_ptr<DeliveryTicket>& ticket) {
    if (events.empty()) return ticket->done();
    for (std::size_t i = 0; i < events.size(); ++i)
      apply_or_park(
          repo, events[i], Parked::kUntilApplied,
          [repo, event = events[i],
           ticket = i + 1 == events.size() ? ticket : nullptr](const q::Outcome& out) {
            if (out.rejected && out.rejected->code != Code::kNotFound)
              log::info(
                  {.repo = repo, .pr = q::pr_of(event).value_or(0), .event = q::event_kind(event)},
                  "{} from a webhook refused: {}", q::event_kind(event),
                  escape_control(out.rejected->message));
            if (ticket) ticket->done();
          });
  }

  // Engine thread. A PR head a fetch read before a webhook told of a newer one is not news: the
  // fetch began before that push (its webhook came first), and taken as a move it would set the
  // PR back and drop the approval of the newer head. (The mirror's own ref cannot tell when the
  // fetch is the first to see the PR.)
  static void older_than_webhooks(RepoRuntime& rt, forges::RemoteRefs& refs, q::Millis began) {
    for (auto it = rt.webhook_heads.begin(); it != rt.webhook_heads.end();) {
      const auto& [n, told] = *it;
      auto read = refs.pulls.find(n);
      if (told.second >= began && read != refs.pulls.end() && read->second != told.first)
        refs.moved_pulls.erase(n);
      it = told.second < began ? rt.webhook_heads.erase(it) : std::next(it);
    }
  }

  // Whether `e` is a push webhook's new head for a PR whose head is neither the one that push
  // replaced nor the new one: a late webhook would set the PR back to an older head (and drop
  // an approval of the newer); after a lost one it is still news, but the delivery's fetch
  // reads the real head either way (GitHubForge::events_from_fetch).
  static bool stale_push(const q::RepoState& state, const forges::Delivery& d, const q::Event& e) {
    const auto* pushed = std::get_if<q::PrPushed>(&e);
    if (!pushed) return false;
    auto before = d.pushed_from.find(pushed->number);
    auto pr = state.prs.find(pushed->number);
    if (before == d.pushed_from.end() || pr == state.prs.end()) return false;
    const q::Sha& head = pr->second.head;
    if (head == before->second || head == pushed->head) return false;
    log::info({.repo = d.repo, .pr = pushed->number, .sha = pushed->head},
              "push webhook left to the fetch: it replaced {}, the head is {}",
              before->second.substr(0, 7), head.substr(0, 7));
    return true;
  }

  // Engine thread: a webhook's events, then its follow-ups with heads pinned as they were when
  // the comment was written.
  void handle_delivery(RepoRuntime& rt, forges::Delivery d,
                       const std::shared_ptr<DeliveryTicket>& ticket) {
    if (const q::RepoState* state = driver->state(rt.cfg.name))
      std::erase_if(d.events, [&](const q::Event& e) { return stale_push(*state, d, e); });
    for (const auto& e : d.events) {
      if (const auto* pushed = std::get_if<q::PrPushed>(&e))
        rt.webhook_heads[pushed->number] = {pushed->head, now()};
      else if (const auto* opened = std::get_if<q::PrOpened>(&e))
        rt.webhook_heads[opened->number] = {opened->head, now()};
    }
    apply_delivered(rt.cfg.name, d.events, ticket);
    if (d.follow_ups.empty()) return;
    const q::RepoState* state = driver->state(rt.cfg.name);
    // A completed check suite is read back only for a commit the queue follows (a candidate,
    // or a PR's head for its pre-queue result): every push to any branch completes suites, and
    // each read costs two or more API requests.
    std::erase_if(d.follow_ups, [&](const forges::FollowUp& f) {
      if (f.kind != forges::FollowUp::Kind::kRefreshChecks || !state || follows(*state, f.sha))
        return false;
      ticket->done();
      return true;
    });
    // A merge or try by comment takes the head the PR had when the comment was written.
    std::erase_if(d.follow_ups, [&](forges::FollowUp& f) {
      auto* merge = f.event ? std::get_if<q::MergeRequested>(&*f.event) : nullptr;
      const bool pins =
          (f.pin_head && merge) || (f.kind == forges::FollowUp::Kind::kTry && f.sha.empty());
      if (!pins || !state || !state->prs.count(f.number)) return false;
      const q::Sha head = head_when_written(rt, f);
      if (head.empty()) {
        reply(rt, f.number, q::NoticeKind::Failure,
              "@" + f.actor + ": " + f.command + " refused: #" + std::to_string(f.number) +
                  " was pushed within seconds of your comment, so which commit you meant is not "
                  "certain; write `merge <sha>` with the commit you reviewed. Nothing changed.");
        ticket->done();
        return true;
      }
      if (!merge)
        f.sha = head;
      else if (merge->sha.empty() || (merge->sha.size() >= 7 && head.starts_with(merge->sha)))
        merge->sha = head;  // an abbreviation that is not the head stays, and is refused
      return false;
    });
    {
      std::lock_guard lock(rt.inbox_mu);
      for (auto& f : d.follow_ups) rt.inbox.push_back({std::move(f), ticket});
    }
    if (rt.drain_queued.exchange(true)) return;  // the drain already queued takes them too
    rt.forge_thread->post([this, &rt] {
      rt.drain_queued = false;
      drain_follow_ups(rt);
    });
  }

  // Engine thread: a command that was allowed, and the answer if it was refused. One the store
  // cannot save now waits, and its delivery is done once it was applied.
  void apply_command(RepoRuntime& rt, const forges::FollowUp& f,
                     const std::shared_ptr<DeliveryTicket>& ticket) {
    apply_or_park(rt.cfg.name, *f.event, Parked::kUntilApplied,
                  [this, &rt, f, ticket](const q::Outcome& out) {
                    if (out.rejected) command_refused(rt, f, out.rejected->message);
                    ticket->done();
                  });
  }
  void command_refused(RepoRuntime& rt, const forges::FollowUp& f, const std::string& why) {
    if (f.quiet)
      log::info({.repo = rt.cfg.name, .pr = f.number}, "{} by {} changed nothing: {}", f.command,
                escape_control(f.actor), escape_control(why));
    else
      reply(rt, f.number, q::NoticeKind::Failure,
            "@" + f.actor + ": " + f.command + " refused: " + why);
  }

  // Engine thread.
  void reply(RepoRuntime& rt, int number, q::NoticeKind kind, std::string message,
             std::vector<std::string> details = {}) {
    apply_or_park(rt.cfg.name,
                  q::Reply{number, kind, std::move(message), std::move(details), now()},
                  Parked::kWhileServed, [&rt, number](const q::Outcome& out) {
                    if (out.rejected)
                      log::warn({.repo = rt.cfg.name, .pr = number}, "cannot answer: {}",
                                out.rejected->message);
                  });
  }

  // Forge thread: why merge-label gesture `f` is not applied (nullopt: it is, as is every
  // other follow-up). GitHub does not deliver webhooks in order, and a label added and taken
  // off again may arrive the other way round, or one come again from the delivery log; a label
  // carries no time in its webhook, so its own event is looked up (Forge::label_overtaken). A
  // later label change by a merge master stands, and any later gesture of theirs when the label
  // reached dmzbot late (`late_command`), as for a late command; not answered on the PR, as
  // the later gesture speaks for itself. When the forge cannot tell, an addition waits for the
  // next reconciliation (which approves a label by its event) and a removal is applied: the
  // safe side. An error (unavailable) when the forge cannot say now: asked again later.
  Result<std::optional<std::string>> label_overtaken(RepoRuntime& rt, const forges::FollowUp& f) {
    if (!f.label_added) return std::optional<std::string>{};
    const bool added = *f.label_added;
    const q::Millis late = now() - options.late_command.count() +
                           rt.forge->api_health().clock_offset;  // on the forge's clock
    auto later = rt.forge->label_overtaken(f.number, added, f.actor, late);
    if (!later && later.code() == Code::kUnavailable) return later.error();
    if (!later)
      return added ? std::optional<std::string>(
                         "whether a later gesture overtook it cannot be "
                         "read (" +
                         later.message() + "); the next reconciliation reads the label back")
                   : std::optional<std::string>{};
    if (!*later) return std::optional<std::string>{};
    const forges::LaterCommand& by = **later;
    return std::optional<std::string>(
        "overtaken: " +
        (by.actor.empty() ? std::string("GitHub shows now: ") : "later, @" + by.actor + ": ") +
        by.command);
  }

  // Forge thread: why command `f` is not applied when it reached dmzbot long after it was
  // written and a merge master changed their mind on the PR since (a command, the merge label:
  // the newer gesture stands, so an old merge delivered again does not queue a PR its merge
  // master cancelled meanwhile); nullopt to apply it. Fails closed: when the forge cannot say, the
  // writer is asked to write it again. An error (unavailable) when it cannot say now: asked again
  // later.
  Result<std::optional<std::string>> overtaken(RepoRuntime& rt, const forges::FollowUp& f) {
    const bool queueing = f.event && (std::holds_alternative<q::MergeRequested>(*f.event) ||
                                      std::holds_alternative<q::CancelRequested>(*f.event) ||
                                      std::holds_alternative<q::RetryRequested>(*f.event));
    const q::Millis late = now() - written_here(rt, f);
    if (!queueing || f.written_at == 0 || late < options.late_command.count())
      return std::optional<std::string>{};
    const std::string delay = "it reached dmzbot " +
                              (late < 120'000 ? std::to_string(late / 1000) + " s"
                                              : std::to_string(late / 60'000) + " min") +
                              " after it was written";
    auto later = rt.forge->later_command(f.number, f.written_at);
    if (!later && later.code() == Code::kUnavailable) return later.error();
    if (!later)
      return std::optional<std::string>(delay +
                                        ", and whether a later command overtook it "
                                        "cannot be read (" +
                                        later.message() + "); write it again. Nothing changed.");
    if (!*later) return std::optional<std::string>{};
    return std::optional<std::string>(delay + ", and a later command on #" +
                                      std::to_string(f.number) + " stands: `" + (*later)->command +
                                      "` by @" + (*later)->actor + ". Nothing changed.");
  }

  // Forge thread: the follow-ups in order; one the API cannot answer now stays first and is
  // tried again at the next tick (a rate limit or an outage delays commands, never drops them).
  void drain_follow_ups(RepoRuntime& rt) {
    {
      std::lock_guard lock(rt.inbox_mu);
      for (auto& f : rt.inbox) rt.follow_ups.push_back(std::move(f));
      rt.inbox.clear();
    }
    while (!rt.follow_ups.empty()) {
      forges::FollowUp& f = rt.follow_ups.front().f;
      std::shared_ptr<DeliveryTicket> ticket = rt.follow_ups.front().ticket;
      // Each branch completes the follow-up where it is carried out (on the engine thread), so
      // that its delivery is marked handled only then.
      switch (f.kind) {
        case forges::FollowUp::Kind::kAuthorize:
        case forges::FollowUp::Kind::kTry: {
          auto allowed = rt.forge->may_approve(f.actor);
          if (!allowed && allowed.code() == Code::kUnavailable) return;
          if (!allowed || !*allowed) {
            const std::string why =
                allowed ? "only merge masters may " + f.command + "; nothing changed"
                        : "cannot tell whether you may " + f.command + " (" + allowed.message() +
                              "); nothing changed";
            if (f.quiet) {
              log::info({.repo = rt.cfg.name, .pr = f.number}, "{} by {} ignored: {}", f.command,
                        escape_control(f.actor), why);
              ticket->done();
            } else {
              engine.post([this, &rt, n = f.number, text = "@" + f.actor + ": " + why, ticket] {
                reply(rt, n, q::NoticeKind::Failure, text);
                ticket->done();
              });
            }
          } else if (f.kind == forges::FollowUp::Kind::kTry) {
            engine.post([this, &rt, f, ticket] { start_try(rt, f, ticket); });
          } else if (auto stale = label_overtaken(rt, f); !stale) {
            return;  // the forge cannot tell now: asked again at the next tick
          } else if (*stale) {
            log::info({.repo = rt.cfg.name, .pr = f.number}, "{} by {} not applied: {}", f.command,
                      escape_control(f.actor), **stale);
            ticket->done();
          } else if (auto why = overtaken(rt, f); !why) {
            return;  // the forge cannot tell now: asked again at the next tick
          } else if (*why) {
            engine.post([this, &rt, f, why = **why, ticket] {
              command_refused(rt, f, why);
              ticket->done();
            });
          } else {
            engine.post([this, &rt, f, ticket] { apply_command(rt, f, ticket); });
          }
          break;
        }
        case forges::FollowUp::Kind::kRefreshChecks: {
          auto events = rt.forge->checks_of(f.sha, now());
          if (!events && events.code() == Code::kUnavailable) return;
          if (events)
            engine.post([this, &rt, events = std::move(*events), ticket] {
              apply_delivered(rt.cfg.name, events, ticket);
            });
          else
            ticket->done();  // dropped for good
          break;
        }
        case forges::FollowUp::Kind::kReconcile:
          engine.post([&rt, ticket] {
            rt.next_reconcile_at = 0;
            ticket->done();
          });
          break;
      }
      rt.follow_ups.pop_front();
    }
  }

  // Engine thread: a try build of the PR's head on master, on its own branch.
  void start_try(RepoRuntime& rt, const forges::FollowUp& f,
                 const std::shared_ptr<DeliveryTicket>& ticket) {
    const q::RepoState& state = *driver->state(rt.cfg.name);
    auto pr = state.prs.find(f.number);
    if (pr == state.prs.end() || state.master.empty()) {
      reply(rt, f.number, q::NoticeKind::Failure,
            "@" + f.actor + ": try refused: #" + std::to_string(f.number) +
                " is not known to dmzbot yet; ask again in a minute");
      return ticket->done();
    }
    if (!f.sha.empty() && f.sha != pr->second.head) {
      reply(rt, f.number, q::NoticeKind::Failure,
            "@" + f.actor + ": try refused: #" + std::to_string(f.number) + " was pushed after " +
                "your comment (its head is now " + pr->second.head.substr(0, 7) +
                "); ask again to try it. Nothing changed.");
      return ticket->done();
    }
    const std::string branch = rt.cfg.github->try_branch + "/" + std::to_string(f.number);
    on_git(rt.cfg.name, [this, n = f.number, head = pr->second.head, master = state.master, branch,
                         actor = f.actor, ticket](RepoRuntime& rt) {
      auto built = rt.worker->try_build(n, head, master, branch);
      engine.post([this, &rt, n, head, master, branch, actor, built, ticket] {
        if (built)
          reply(rt, n, q::NoticeKind::Info,
                "@" + actor + ": trying " + head.substr(0, 7) + " on master " +
                    master.substr(0, 7) + " as " + built->substr(0, 7) + " on branch " + branch +
                    " (not queued); the results will follow here");
        else if (built.code() == Code::kUnavailable)  // the remote's fault, not the PR's
          reply(rt, n, q::NoticeKind::Info,
                "@" + actor + ": try of " + head.substr(0, 7) +
                    " could not start, the git remote is unavailable (" + built.message() +
                    "); ask again once it is back");
        else
          reply(rt, n, q::NoticeKind::Failure,
                "@" + actor + ": try of " + head.substr(0, 7) + " failed: " + built.message());
        ticket->done();
      });
    });
  }

  // Forge thread: the summaries that changed, shown on the PR heads; one the API cannot take
  // now stays for the next tick.
  void flush_shows(RepoRuntime& rt) {
    {
      std::lock_guard lock(rt.show_mu);
      for (auto& [n, summary] : rt.show_inbox) rt.to_show[n] = std::move(summary);
      rt.show_inbox.clear();
    }
    for (auto it = rt.to_show.begin(); it != rt.to_show.end();) {
      auto shown = rt.shown.find(it->first);
      if (shown != rt.shown.end() && shown->second == it->second) {
        it = rt.to_show.erase(it);
        continue;
      }
      Status s = rt.forge->show(it->second);
      if (!s.ok() && s.code() == Code::kUnavailable) return;
      if (!s.ok())
        log::warn({.repo = rt.cfg.name, .pr = it->first}, "cannot show where it stands: {}",
                  s.message());
      else if (it->second.finished())  // it left the queue: not kept for months
        rt.shown.erase(it->first);
      else
        rt.shown[it->first] = it->second;
      it = rt.to_show.erase(it);
    }
  }

  // Engine thread (after each saved change): the summaries of the PRs it touched, and of
  // every waiting PR when places in the queue may have moved.
  void on_commit(const std::string& repo, const driver::Committed& c) {
    RepoRuntime* rt = find(repo);
    if (!rt || !rt->api) return;
    std::vector<forges::PullSummary> changed;
    auto consider = [&](const q::PullRequest& pr) {
      auto s = forges::summarize(*c.state, pr, rt->settings.required_checks);
      if (!s) return;
      auto known = rt->desired.find(pr.number);
      if (known != rt->desired.end() && known->second == *s) return;
      rt->desired[pr.number] = *s;
      changed.push_back(*s);
    };
    for (int n : c.delta->changed_prs) consider(c.state->prs.at(n));
    for (const auto& pr : *c.archived) consider(pr);
    if (!c.delta->changed_prs.empty() || !c.delta->removed_prs.empty() || c.delta->train_changed)
      for (const auto& [n, pr] : c.state->prs)
        if (pr.status == q::PrStatus::Queued || pr.candidate) consider(pr);
    for (const auto& pr : *c.archived) rt->desired.erase(pr.number);
    show(*rt, std::move(changed));
    // PRs that left the hot state (merged, closed, long finished) need their try builds no
    // more: their branches are deleted, as obsolete candidate branches are.
    if (!c.archived->empty() && rt->cfg.github) {
      std::set<int> keep;
      for (const auto& [n, pr] : c.state->prs) keep.insert(n);
      on_git(repo, [keep = std::move(keep)](RepoRuntime& rt) {
        if (Status s = rt.worker->prune_try_branches(rt.cfg.github->try_branch, keep); !s.ok())
          spdlog::warn("{}: cannot delete obsolete try branches: {}", rt.cfg.name, s.message());
      });
    }
  }

  // Engine thread. While the API is down each flush costs a full round of retries: a burst of
  // changes must not queue one flush each (the forge thread would be held up for minutes).
  void show(RepoRuntime& rt, std::vector<forges::PullSummary> summaries) {
    if (summaries.empty()) return;
    {
      std::lock_guard lock(rt.show_mu);
      for (auto& s : summaries) rt.show_inbox[s.number] = std::move(s);
    }
    if (rt.show_queued.exchange(true)) return;  // the flush already queued takes them too
    rt.forge_thread->post([this, &rt] {
      rt.show_queued = false;  // before flush_shows takes the inbox: none is left behind
      flush_shows(rt);
    });
  }

  // Engine thread, each tick: reconciliation when due, and the forge thread's retries.
  void forge_tick(RepoRuntime& rt) {
    if (!rt.api || !driver->health(rt.cfg.name)->loaded) return;
    const q::Millis t = now();
    if (!rt.reconcile_in_flight && t >= rt.next_reconcile_at) reconcile(rt);
    if (rt.periodic_queued.exchange(true)) return;
    rt.forge_thread->post([this, &rt] {
      rt.periodic_queued = false;
      drain_follow_ups(rt);
      flush_shows(rt);
      const forges::ApiHealth health = rt.forge->api_health();
      const bool ok = health.ok && health.blocked_until == 0;
      const bool recovered = ok && !rt.api_was_ok;
      rt.api_was_ok = ok;
      engine.post([this, &rt, health, recovered] {
        driver->set_api_health(rt.cfg.name, health);
        if (recovered) rt.next_reconcile_at = 0;  // whatever was missed while it was down
      });
    });
  }

  // Engine thread: reads the forge's view back on the forge thread and applies the events
  // that bring the state in line with it.
  void reconcile(RepoRuntime& rt) {
    rt.reconcile_in_flight = true;
    forges::ReconcileInput input;
    input.state = *driver->state(rt.cfg.name);
    const std::string repo = rt.cfg.name;
    std::map<int, q::Sha> heads;
    for (const auto& [n, pr] : input.state.prs) heads[n] = pr.head;
    // When dmzbot learned each PR's head: from the event log, durable across restarts.
    input.head_seen_at = [this, repo, heads](int n) -> q::Millis {
      auto head = heads.find(n);
      if (head == heads.end()) return std::numeric_limits<q::Millis>::max();
      const auto logged = logged_heads(repo, n);
      for (auto e = logged.rbegin(); e != logged.rend(); ++e)
        if (e->second == head->second) return e->first;
      return std::numeric_limits<q::Millis>::max();
    };
    bool posted = rt.forge_thread->post([this, &rt, input = std::move(input)] {
      // Whatever happens in the adapter, the engine hears back: reconcile_in_flight is
      // cleared there, and an exception left unanswered would stop reconciliation for good.
      Result<std::vector<q::Event>> events = internal("reconciliation threw");
      try {
        events = rt.forge->reconcile(input, now());
      } catch (const std::exception& e) {
        events = internal(std::string("reconciliation threw: ") + e.what());
      }
      if (events)  // the API answers again: the checks that waited for reviews go on
        for (const auto& a : std::exchange(rt.reviews_waiting, {}))
          rt.git->post([this, &rt, a] { judge_policy(rt, a); });
      engine.post([this, &rt, snapshot = input.state, events = std::move(events)]() mutable {
        rt.reconcile_in_flight = false;
        const q::Millis t = now();
        if (!events) {
          log::warn({.repo = rt.cfg.name}, "reconciliation failed: {}", events.message());
          rt.next_reconcile_at = t + std::min<q::Millis>(rt.reconcile_interval, 5'000);
          return;
        }
        rt.next_reconcile_at = t + rt.reconcile_interval;
        // Judged against the state before any of them is applied (one may open a PR that the
        // next approves).
        const q::RepoState* current = driver->state(rt.cfg.name);
        if (!current) return;
        std::erase_if(*events, [&](const q::Event& e) {
          return !forges::still_current(snapshot, *current, e);
        });
        // In order behind any event that waits to be saved, as the store can take them.
        for (const auto& e : *events)
          apply_or_park(rt.cfg.name, e, Parked::kWhileServed, [&rt, e](const q::Outcome& out) {
            if (out.rejected && out.rejected->code != Code::kNotFound)
              log::info(
                  {.repo = rt.cfg.name, .pr = q::pr_of(e).value_or(0), .event = q::event_kind(e)},
                  "{} from reconciliation refused: {}", q::event_kind(e),
                  escape_control(out.rejected->message));
            else if (!out.rejected)
              log::debug({.repo = rt.cfg.name, .pr = q::pr_of(e).value_or(0)}, "reconciliation: {}",
                         q::event_kind(e));
          });
      });
    });
    if (!posted) rt.reconcile_in_flight = false;
  }

  // At start, before serving: every delivery answered 202 and not handled when the last run
  // ended (a crash, or a stop before its follow-ups were carried out) is handled again, through
  // the adapter as it came. One that no longer authenticates or parses is logged and dropped.
  // At least once: a delivery whose effects were applied but not yet marked is applied again,
  // which the engine takes as a duplicate (an approval of the same head changes nothing).
  Status replay_unhandled() {
    constexpr std::size_t kPage = 256;
    std::size_t replayed = 0, dropped = 0;
    for (std::int64_t after = 0;;) {
      auto page = delivery_store->unhandled_deliveries(after, kPage);
      if (!page) return page.status().prefixed("store: unhandled webhook deliveries: ");
      for (auto& stored : *page) {
        after = stored.seq;
        if (replay(stored))
          ++replayed;
        else {
          deliveries->handled(stored.id);
          ++dropped;
        }
      }
      if (page->size() < kPage) break;
    }
    if (replayed + dropped > 0)
      spdlog::info("{} webhook deliveries from before the restart handled again ({} dropped)",
                   replayed, dropped);
    return {};
  }

  // One stored delivery handed to its repository as a new one; false if none takes it.
  bool replay(DeliveryId& stored) {
    forges::InboundRequest request;
    auto headers = nlohmann::json::parse(stored.headers, nullptr, false);
    if (headers.is_object())
      for (const auto& [name, value] : headers.items())
        if (value.is_string()) request.headers[name] = value.get<std::string>();
    request.body = std::move(stored.body);
    auto taken = takers(stored.forge, request, stored.at);  // as it was when it came
    if (taken) {
      accept(std::move(*taken), stored.id);
      return true;
    }
    const std::string why = taken.message();
    spdlog::warn("webhook delivery {} from before the restart is dropped: {}",
                 escape_control(stored.id), escape_control(why));
    return false;
  }

  // Engine thread, at start: every hot PR's summary (what GitHub shows may be from an earlier
  // run, or missing).
  void show_all() {
    for (auto& rt : repos) {
      if (!rt->api) continue;
      const q::RepoState* state = driver->state(rt->cfg.name);
      if (!state) continue;
      std::vector<forges::PullSummary> all;
      for (const auto& [n, pr] : state->prs)
        if (auto s = forges::summarize(*state, pr, rt->settings.required_checks)) {
          rt->desired[n] = *s;
          all.push_back(*s);
        }
      show(*rt, std::move(all));
    }
  }

  // ---- timer ------------------------------------------------------------------------------------

  void timer_loop() {
    std::unique_lock lock(timer_mutex);
    while (!timer_stop) {
      timer_wake.wait_for(lock, options.tick_interval, [this] { return timer_stop; });
      if (timer_stop) break;
      lock.unlock();
      // One tick at a time: while the store is locked a tick takes its busy timeout per
      // repository, and ticks queued behind it would delay every answer of the engine.
      if (!tick_queued.exchange(true))
        engine.post([this] {
          tick_queued = false;
          std::vector<std::string> waiting;
          for (const auto& [repo, events] : unsaved) waiting.push_back(repo);
          for (const auto& repo : waiting) apply_unsaved(repo);
          driver->tick();
          for (auto& rt : repos) forge_tick(*rt);
        });
      lock.lock();
    }
  }
};

Service::Service(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Service::~Service() { stop(); }

Result<std::unique_ptr<Service>> Service::start(config::Config config, Options options) {
  git::init();
  auto impl = std::make_unique<Impl>();
  impl->cfg = std::move(config);
  impl->options = options;
  if (options.clock) impl->clock = options.clock;
  if (Status s = impl->lock_data_dir(); !s.ok()) return s.error();
  if (Status s = impl->open_store(); !s.ok()) return s.error();
  for (const auto& repo : impl->cfg.repos)
    if (Status s = impl->open_repo(repo); !s.ok()) {
      impl->forget_new_mirrors();
      return s.error();
    }

  std::unique_ptr<Service> service(new Service(std::move(impl)));
  Impl& im = *service->impl_;
  driver::Options driver_options;
  driver_options.owner = owner_id(im.cfg.data_dir);
  driver_options.on_commit = [&im](const std::string& repo, const driver::Committed& c) {
    im.on_commit(repo, c);
  };
  driver_options.metrics = &metrics::global();
  driver_options.on_saved = [&im](const std::string& repo) { im.notify_saved(repo); };
  driver_options.deliveries = im.delivery_store.get();
  driver_options.history_retention = std::int64_t{im.cfg.store.history_days} * 86'400'000;
  im.driver = std::make_unique<driver::Driver>(*im.clock, *im.store, im, im, im, im,
                                               im.driver_configs(), driver_options);
  // Answered even if the driver throws: signals are blocked by now (serve), so a start that
  // waited forever would hang the process.
  auto [started, started_future] = promised<Status>();
  im.engine.post([&im, started] {
    answering(started, "starting the driver", [&] {
      Status s = im.driver->start();
      if (s.ok()) im.show_all();
      im.driver->tick();  // the gauges, before the first scrape
      started(s);
    });
  });
  // A start that fails stops what it started before it removes the mirrors it made.
  auto failed = [&service, &im](Error e) {
    service->stop();
    im.forget_new_mirrors();
    return e;
  };
  if (Status s = started_future.get(); !s.ok()) return failed(s.error());
  // Queued on the engine before any new webhook can be: the deliveries keep their order.
  if (Status s = im.replay_unhandled(); !s.ok()) return failed(s.error());
  im.timer = std::thread([&im] {
    name_this_thread("timer");
    im.timer_loop();
  });
  im.started = true;
  return service;
}

void Service::stop() {
  Impl& im = *impl_;
  if (im.stopped.exchange(true)) return;
  im.started = false;
  // Deliveries already taken are written and handed to the engine before anything stops.
  if (im.deliveries) im.deliveries->close();
  {
    std::lock_guard lock(im.timer_mutex);
    im.timer_stop = true;
  }
  im.timer_wake.notify_all();
  if (im.timer.joinable()) im.timer.join();
  // The runners kill their builds (no reports follow). The engine thread starts and cancels
  // builds, so they go on it, between two of its tasks.
  std::promise<void> runners_gone;
  auto reset_runners = [&] {
    for (auto& rt : im.repos) rt->runner.reset();
    runners_gone.set_value();
  };
  if (!im.engine.post(reset_runners)) reset_runners();
  runners_gone.get_future().wait();
  // The git and forge threads finish the step under way and drop what is queued: fetches,
  // outbox messages, summaries and follow-ups may each wait out network timeouts and API
  // retries, which would hold the stop for minutes. Nothing dropped is lost: the next start
  // re-issues it (queue::resume: policy checks, merges, builds, fast-forwards, the reset of
  // dmz; the stored outbox is resent; a webhook whose follow-ups or try did not complete is
  // unhandled and replayed; show_all shows every summary; the driver fetches; the promoter
  // hands its hotfixes over again). A dropped task that owns an answer gives it (Answer).
  // An API call under way (the forge thread's, or a fetch renewing an App's token) ends at once
  // and no retry waits out its backoff, so the threads below are joined without delay.
  for (auto& rt : im.repos) {
    if (rt->api_client) rt->api_client->stop();
    if (rt->http) rt->http->stop();
  }
  for (auto& rt : im.repos) rt->git->stop(SerialExecutor::Pending::kDrop);
  for (auto& rt : im.repos) Impl::drop_registrations(*rt);
  for (auto& rt : im.repos) rt->forge_thread->stop(SerialExecutor::Pending::kDrop);
  im.engine.stop();
  im.views.stop();
  // The deliveries handled until now are marked so; the others are handled at the next start.
  if (im.deliveries) im.deliveries->stop();
}

const config::Config& Service::config() const { return impl_->cfg; }
q::Millis Service::now() const { return impl_->now(); }
bool Service::ready() const { return impl_->started; }

void Service::health(
    std::function<void(std::vector<std::pair<std::string, driver::Health>>)> done) {
  if (!impl_->engine.post([this, done] {
        std::vector<std::pair<std::string, driver::Health>> out;
        for (const auto& name : impl_->driver->repos())
          out.emplace_back(name, *impl_->driver->health(name));
        if (!impl_->views.post([done, out = std::move(out)]() mutable { done(std::move(out)); }))
          done({});
      }))
    done({});
}

void Service::submit(const std::string& repo, q::Event event,
                     std::function<void(q::Outcome)> done) {
  if (!impl_->find(repo)) return done(refusal(not_found("unknown repository " + repo)));
  auto task = [this, repo, event = std::move(event), done] {
    // Applied now, it would come before events that wait to be saved (a candidate's check
    // before the merge that made the candidate): refused, the caller tries again.
    if (impl_->events_wait(repo)) return done(refusal(Impl::earlier_change_unsaved()));
    done(impl_->driver->apply(repo, event));
  };
  if (!impl_->engine.post(std::move(task))) done(refusal(stopping()));
}

void Service::register_pull(const std::string& repo, forges::Registration registration,
                            std::function<void(q::Outcome)> done) {
  RepoRuntime* rt = impl_->find(repo);
  if (!rt) return done(refusal(not_found("unknown repository " + repo)));
  if (auto refused = impl_->refused_anyway(*rt, registration)) return done(refusal(*refused));
  // It waits for a fresh fetch (a branch pushed a moment ago is found), shared with the
  // webhooks' and the other registrations' (a burst of them costs one or two fetches), and
  // applied as any fetch is (fetch_into_driver).
  {
    std::lock_guard lock(rt->fetch_mu);
    rt->registering.push_back(
        {std::move(registration),
         Answer<q::Outcome>(std::move(done), [](Error e) { return refusal(std::move(e)); })});
  }
  impl_->request_fetch(*rt, {});
  // stop() sets `stopped` before it answers what waits: one of the two sees this registration.
  if (impl_->stopped) Impl::drop_registrations(*rt);
}

void Service::promote(const std::string& repo, const std::string& tag,
                      std::function<void(Result<std::string>)> done) {
  RepoRuntime* rt = impl_->find(repo);
  if (!rt) return done(not_found("unknown repository " + repo));
  Answer<Result<std::string>> answer(std::move(done),
                                     [](Error e) { return Result<std::string>(std::move(e)); });
  rt->git->post([rt, tag, answer] {  // dropped unrun at a stop: answered `stopping`
    answering(answer, "promoting " + tag, [&] {
      auto r = rt->promoter->promote(rt->worker->mirror(), tag, "api");
      if (!r) return answer(r.error());
      answer(rt->promoter->record_json(*r));
    });
  });
}

std::optional<std::string> Service::releases(const std::string& repo) const {
  RepoRuntime* rt = impl_->find(repo);
  if (!rt) return std::nullopt;
  return rt->promoter->json();
}

void Service::view(const std::string& repo, std::function<void(Result<RepoView>)> done) {
  if (!impl_->find(repo)) return done(not_found("unknown repository " + repo));
  // The history is read here (the store is safe from any thread), the hot state on the engine.
  auto recent = impl_->store->history(repo, 0, kRecentOutcomes);
  if (!recent) return done(recent.status().prefixed("store: ").error());
  if (!impl_->engine.post([this, repo, recent = std::move(*recent), done] {
        RepoView v{*impl_->driver->state(repo), *impl_->driver->health(repo), recent,
                   impl_->driver->config(repo)->settings};
        if (!impl_->views.post([done, v = std::move(v)]() mutable { done(std::move(v)); }))
          done(stopping());
      }))
    done(stopping());
}

void Service::history(const std::string& repo, std::int64_t before, std::size_t limit,
                      std::function<void(Result<std::vector<HistoryEntry>>)> done) {
  if (!impl_->find(repo)) return done(not_found("unknown repository " + repo));
  auto h = impl_->store->history(repo, before, limit);
  if (!h) return done(h.status().prefixed("store: ").error());
  done(std::move(*h));
}

void Service::pull(const std::string& repo, int number,
                   std::function<void(Result<PullView>)> done) {
  if (!impl_->find(repo)) return done(not_found("unknown repository " + repo));
  Store& store = *impl_->store;
  auto outcomes = store.pr_history(repo, number, kPullEvents);
  auto events = store.pr_events(repo, number, kPullEvents);
  if (!outcomes || !events)
    return done(unavailable("store: cannot read pull request #" + std::to_string(number)));
  PullView view;
  view.outcomes = std::move(*outcomes);
  view.events = std::move(*events);
  if (!impl_->engine.post([this, &store, repo, number, view = std::move(view), done]() mutable {
        auto read = [&]() -> Result<PullView> {
          const q::RepoState& state = *impl_->driver->state(repo);
          auto it = state.prs.find(number);
          if (it != state.prs.end()) {
            view.pr = it->second;
            auto order = q::queue_order(state);
            auto at = std::find(order.begin(), order.end(), number);
            if (at != order.end()) view.position = static_cast<std::size_t>(at - order.begin()) + 1;
            return std::move(view);
          }
          // Read on the engine thread, which is the one that archives: a PR is
          // either in the hot state or already in the archive, never in between.
          auto archived = store.archived(repo, number);
          if (!archived)
            return unavailable("store: cannot read pull request #" + std::to_string(number));
          if (!*archived)
            return not_found("unknown pull request #" + std::to_string(number) + " in " + repo);
          view.pr = std::move(**archived);
          view.archived = true;
          return std::move(view);
        };
        if (!impl_->views.post([done, r = read()]() mutable { done(std::move(r)); }))
          done(stopping());
      }))
    done(stopping());
}

void Service::webhook(const std::string& forge, forges::InboundRequest request,
                      std::function<void(Result<WebhookAccepted>)> answer) {
  // Counted by how it ended: accepted, duplicate, or the code of the refusal; by forge only
  // for a forge some repository has (the path is the sender's: each name would be a series).
  const bool served = std::any_of(impl_->repos.begin(), impl_->repos.end(),
                                  [&](const auto& rt) { return rt->forge->kind() == forge; });
  auto done = [label = served ? forge : std::string("other"),
               answer = std::move(answer)](Result<WebhookAccepted> r) {
    const std::string result = !r             ? std::string(to_string(r.code()))
                               : r->duplicate ? "duplicate"
                                              : "accepted";
    metrics::global().add("dmzbot_webhook_deliveries_total",
                          {{"forge", label}, {"result", result}});
    answer(std::move(r));
  };
  // The adapters authenticate (each repository may have its own secret) and parse.
  auto taken = impl_->takers(forge, request, impl_->now());
  if (!taken) return done(taken.error());
  // Bounded: a backlog this deep (the engine or the forge's API far behind) is not grown in
  // memory. The forge may send it again; where dmzbot reads its delivery log, it asks.
  if (impl_->unfinished_deliveries >= impl_->options.max_unfinished_deliveries)
    return done(unavailable(std::to_string(impl_->unfinished_deliveries) +
                            " webhook deliveries are still being handled; send it again later"));
  // Durable before the answer: a redelivery of this id changes nothing, and a crash before
  // it was handled leaves it to be handled at the next start. It is written together with
  // the deliveries arriving meanwhile (group commit); the 202 and the handling wait for that.
  const forges::Forge& adapter = *taken->front().rt->forge;
  DeliveryId record{forge + ":" + taken->front().d.id, impl_->now(), forge, "{}",
                    std::move(request.body)};  // parsed already; not read again
  nlohmann::json headers = nlohmann::json::object();
  for (const auto& name : adapter.webhook_headers())
    if (auto it = request.headers.find(name); it != request.headers.end())
      headers[name] = it->second;
  record.headers = headers.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  auto recorded = [this, done, key = record.id,
                   taken = std::move(*taken)](Result<bool> fresh) mutable {
    if (!fresh) {
      // The forge will not send it again by itself: read the repositories back as soon as we
      // can (which also asks for this delivery again, where the forge's log is read).
      for (auto& t : taken) impl_->engine.post([rt = t.rt] { rt->next_reconcile_at = 0; });
      return done(fresh.status().prefixed("store: ").error());
    }
    WebhookAccepted accepted{"", !*fresh, 0};
    for (const auto& t : taken) {
      if (!t.d.repo.empty()) accepted.repo += (accepted.repo.empty() ? "" : ", ") + t.d.repo;
      accepted.events += t.d.events.size() + t.d.follow_ups.size();
    }
    if (*fresh) impl_->accept(std::move(taken), std::move(key));
    done(accepted);
  };
  impl_->deliveries->record(std::move(record), std::move(recorded));
}

std::optional<std::string> Service::build_log(const std::string& repo, const q::Sha& sha,
                                              std::size_t max_bytes) const {
  if (!impl_->find(repo)) return std::nullopt;
  return read_build_log(impl_->log_dir(repo), sha, max_bytes);
}

std::string Service::metrics() const {
  metrics::global().set("dmzbot_webhook_deliveries_unfinished", {},
                        static_cast<double>(impl_->unfinished_deliveries.load()));
  return metrics::global().text();
}

Result<std::vector<EventLogEntry>> Service::recent_events(const std::string& repo,
                                                          std::size_t limit) {
  if (!impl_->find(repo)) return not_found("unknown repository " + repo);
  auto events = impl_->store->events(repo, limit);
  if (!events) return events.status().prefixed("store: ").error();
  return std::move(*events);
}

Result<std::vector<EventLogEntry>> Service::events_after(const std::string& repo,
                                                         std::int64_t after, std::size_t limit) {
  if (!impl_->find(repo)) return not_found("unknown repository " + repo);
  auto events = impl_->store->events_after(repo, after, limit);
  if (!events) return events.status().prefixed("store: ").error();
  return std::move(*events);
}

std::shared_ptr<void> Service::watch(std::function<void(const std::string& repo)> on_change) {
  auto w = std::make_shared<Impl::Watcher>();
  w->on_change = std::move(on_change);
  {
    std::lock_guard lock(impl_->watch_mutex);
    impl_->watchers.push_back(w);
  }
  // The handle: dropping it waits for a call under way and stops the next.
  return std::shared_ptr<void>(w.get(), [w](void*) {
    std::lock_guard lock(w->mu);
    w->live = false;
  });
}

q::Outcome Service::submit_and_wait(const std::string& repo, q::Event event) {
  std::promise<q::Outcome> result;
  auto future = result.get_future();
  submit(repo, std::move(event), [&result](q::Outcome o) { result.set_value(std::move(o)); });
  return future.get();
}

std::optional<q::RepoState> Service::state(const std::string& repo) {
  auto [result, future] = promised<Result<q::RepoState>>();
  impl_->engine.post([this, repo, result] {
    answering(result, "reading the state", [&] {
      const auto* s = impl_->driver->state(repo);
      result(s ? Result<q::RepoState>(*s) : not_found(repo));
    });
  });
  auto s = future.get();
  return s ? std::optional<q::RepoState>(std::move(*s)) : std::nullopt;
}

Result<RepoView> Service::view_now(const std::string& repo) {
  std::promise<Result<RepoView>> result;
  auto future = result.get_future();
  view(repo, [&result](Result<RepoView> v) { result.set_value(std::move(v)); });
  return future.get();
}

Result<PullView> Service::pull_now(const std::string& repo, int number) {
  std::promise<Result<PullView>> result;
  auto future = result.get_future();
  pull(repo, number, [&result](Result<PullView> v) { result.set_value(std::move(v)); });
  return future.get();
}

void Service::fetch_now(const std::string& repo) {
  // Answered also when a task on the way is dropped (a stop) or throws.
  auto [fetched, future] = promised<Status>();
  impl_->on_git(repo, [this, fetched](RepoRuntime& rt) {
    answering(fetched, "fetching",
              [&] { impl_->fetch_into_driver(rt, [fetched] { fetched(Status()); }); });
  });
  future.wait();
  impl_->engine.drain();  // the events the fetch implied are applied too
}

}  // namespace dmz

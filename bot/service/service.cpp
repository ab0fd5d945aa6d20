#include "bot/service/service.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <future>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "base/metrics.hpp"
#include "base/text.hpp"
#include "bot/ci/runner.hpp"
#include "bot/driver/driver.hpp"
#include "bot/git/mirror.hpp"
#include "bot/service/git_worker.hpp"
#include "bot/service/serial_executor.hpp"
#include "bot/store/store.hpp"
#include "bot/trust/signing.hpp"
#include "forges/plain.hpp"
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

std::string mirror_dir_name(const std::string& repo) {
  std::string name = repo;
  for (char& c : name)
    if (c == '/') c = '_';
  return name + ".git";
}

q::Outcome refusal(Error e) { return q::Outcome{std::move(e), {}}; }

Error stopping() { return unavailable("the service is stopping"); }

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

// Everything a repository needs at run time. The worker belongs to the git thread.
struct RepoRuntime {
  config::Repo cfg;
  std::unique_ptr<forges::Forge> forge;
  std::unique_ptr<GitWorker> worker;
  std::unique_ptr<LocalRunner> runner;
  std::unique_ptr<SerialExecutor> git;
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
  std::vector<std::unique_ptr<RepoRuntime>> repos;
  std::unique_ptr<driver::Driver> driver;  // engine thread only
  SerialExecutor engine{"engine"};
  SerialExecutor outbox{"outbox"};
  std::atomic<bool> started{false};
  std::atomic<bool> stopped{false};

  std::thread timer;
  std::mutex timer_mutex;
  std::condition_variable timer_wake;
  bool timer_stop = false;

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

  // What a sandboxed build must not see: the configuration (and its directory, where token
  // files usually live, unless that is a top-level directory like /etc), the data directory
  // and the signing key or GnuPG home.
  std::vector<fs::path> secret_paths() const {
    std::vector<fs::path> out = {cfg.data_dir, cfg.signing.key, cfg.signing.gnupg_home};
    if (!cfg.file.empty()) {
      auto file = fs::absolute(cfg.file);
      out.push_back(file);
      if (std::distance(file.parent_path().begin(), file.parent_path().end()) > 2)
        out.push_back(file.parent_path());
    }
    return out;
  }

  fs::path log_dir(const std::string& repo) const {
    return cfg.data_dir / "logs" / mirror_dir_name(repo);
  }

  RepoRuntime* find(const std::string& name) {
    for (auto& r : repos)
      if (r->cfg.name == name) return r.get();
    return nullptr;
  }

  Status open_repo(const config::Repo& repo) {
    auto rt = std::make_unique<RepoRuntime>();
    rt->cfg = repo;
    auto mirror =
        git::Mirror::open(cfg.data_dir / "mirrors" / mirror_dir_name(repo.name), repo.remote);
    if (!mirror) return mirror.status().prefixed(repo.name + ": ");
    auto signer = make_signer(cfg.signing);
    if (!signer) return signer.status().prefixed(repo.name + ": signing: ");
    rt->worker = std::make_unique<GitWorker>(repo, cfg.signing, std::move(*mirror),
                                             std::move(*signer), *clock);
    if (repo.forge == "plain")
      rt->forge = std::make_unique<forges::PlainForge>(forges::PlainForge::Options{
          repo.name, repo.master, repo.branch_patterns, repo.refused_patterns});
    else
      return invalid(repo.name + ": forge " + repo.forge + " is not supported");
    if (repo.runner) {
      if (Status s = make_private_dir(log_dir(repo.name)); !s.ok()) return s;
      RepoRuntime* raw = rt.get();
      rt->runner = std::make_unique<LocalRunner>(
          *repo.runner, log_dir(repo.name),
          [this, raw](const std::string&, const q::Sha& sha, q::Check check) {
            check.at = now();
            post_event(raw->cfg.name, q::CheckReported{sha, std::move(check), check.at});
          },
          secret_paths(), cfg.data_dir / "builds" / mirror_dir_name(repo.name));
    }
    rt->git = std::make_unique<SerialExecutor>("git " + repo.name);
    repos.push_back(std::move(rt));
    return {};
  }

  std::vector<driver::RepoConfig> driver_configs() const {
    std::vector<driver::RepoConfig> out;
    for (const auto& rt : repos) {
      driver::RepoConfig c;
      c.name = rt->cfg.name;
      c.settings = settings_for(rt->cfg);
      c.forge = rt->forge.get();
      c.fetch_interval = options.fetch_interval.count();
      out.push_back(std::move(c));
    }
    return out;
  }

  // ---- results back to the engine thread ------------------------------------------------------

  void post_event(const std::string& repo, q::Event event) {
    engine.post([this, repo, event = std::move(event)] {
      auto out = driver->apply(repo, event);
      if (out.rejected && out.rejected->code != Code::kNotFound)
        spdlog::warn("{}: {} refused: {}", repo, q::event_kind(event),
                     escape_control(out.rejected->message));
    });
  }

  // Runs `work` on the repository's git thread; false if the service is stopping.
  template <class F>
  bool on_git(const std::string& repo, F work) {
    RepoRuntime* rt = find(repo);
    return rt && rt->git->post([rt, work = std::move(work)] { work(*rt); });
  }

  void fetch_into_driver(RepoRuntime& rt, std::function<void()> then = nullptr) {
    auto refs = rt.worker->fetch();
    engine.post([this, repo = rt.cfg.name, refs = std::move(refs), then = std::move(then)] {
      if (refs)
        driver->fetched(repo, *refs);
      else
        driver->fetch_failed(repo, refs.status());
      if (then) then();
    });
  }

  // ---- ports (called on the engine thread) -----------------------------------------------------

  void fetch(const std::string& repo) override {
    on_git(repo, [this](RepoRuntime& rt) { fetch_into_driver(rt); });
  }
  void build_candidate(const std::string& repo, const q::BuildCandidate& a) override {
    on_git(repo,
           [this, a](RepoRuntime& rt) { post_event(rt.cfg.name, rt.worker->build_candidate(a)); });
  }
  void reset_dmz(const std::string& repo, const q::ResetDmz& a) override {
    on_git(repo, [a](RepoRuntime& rt) {
      if (Status s = rt.worker->reset_dmz(a); !s.ok())
        spdlog::error("{}: reset {} to {} failed: {}", rt.cfg.name, rt.cfg.dmz, a.sha, s.message());
    });
  }
  void prune_candidates(const std::string& repo, const q::PruneCandidates& a) override {
    on_git(repo, [a](RepoRuntime& rt) {
      if (Status s = rt.worker->prune_candidates(a); !s.ok())
        spdlog::warn("{}: deleting obsolete candidate branches failed: {}", rt.cfg.name,
                     s.message());
    });
  }
  void fast_forward(const std::string& repo, const q::FastForwardMaster& a) override {
    on_git(repo,
           [this, a](RepoRuntime& rt) { post_event(rt.cfg.name, rt.worker->fast_forward(a)); });
  }
  void check_policy(const std::string& repo, const q::CheckPolicy& a) override {
    on_git(repo,
           [this, a](RepoRuntime& rt) { post_event(rt.cfg.name, rt.worker->check_policy(a)); });
  }
  void check_candidate(const std::string& repo, const q::CheckCandidate& a) override {
    on_git(repo,
           [this, a](RepoRuntime& rt) { post_event(rt.cfg.name, rt.worker->check_candidate(a)); });
  }
  void start_build(const std::string& repo, const q::StartBuild& a) override {
    RepoRuntime* rt = find(repo);
    if (!rt) return;
    if (!rt->runner) {  // external CI builds the candidate's branch on push and posts statuses
      if (a.attempt > 1)  // a retry: push the branch again so that CI builds it again
        on_git(repo, [a](RepoRuntime& rt) {
          if (Status s = rt.worker->repush_candidate(a.candidate, a.sha); !s.ok())
            spdlog::warn("{}: pushing candidate {} again failed: {}", rt.cfg.name, a.candidate,
                         s.message());
        });
      return;
    }
    SerialExecutor* git = rt->git.get();
    GitWorker* worker = rt->worker.get();
    rt->runner->start(repo, a.sha, [git, worker, sha = a.sha](const fs::path& dir) {
      // The mirror belongs to the git thread: export there, and wait.
      std::promise<Status> result;
      auto future = result.get_future();
      if (!git->post([&] { result.set_value(worker->export_tree(sha, dir)); }))
        return Status(stopping());
      return future.get();
    });
  }
  void cancel_build(const std::string& repo, const q::CancelBuild& a) override {
    if (RepoRuntime* rt = find(repo); rt && rt->runner) rt->runner->cancel(a.sha);
  }
  void send(const forges::OutboxMessage& m) override {
    RepoRuntime* rt = find(m.repo);
    if (!rt) return;
    outbox.post([this, rt, m] {
      Status s = rt->forge->deliver(m);
      engine.post([this, id = m.id, s] { driver->delivered(id, s); });
    });
  }

  // ---- timer ------------------------------------------------------------------------------------

  void timer_loop() {
    std::unique_lock lock(timer_mutex);
    while (!timer_stop) {
      timer_wake.wait_for(lock, options.tick_interval, [this] { return timer_stop; });
      if (timer_stop) break;
      lock.unlock();
      engine.post([this] { driver->tick(); });
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
    if (Status s = impl->open_repo(repo); !s.ok()) return s.error();

  std::unique_ptr<Service> service(new Service(std::move(impl)));
  Impl& im = *service->impl_;
  driver::Options driver_options;
  driver_options.owner = owner_id(im.cfg.data_dir);
  driver_options.metrics = &metrics::global();
  im.driver = std::make_unique<driver::Driver>(*im.clock, *im.store, im, im, im, im,
                                               im.driver_configs(), driver_options);
  std::promise<Status> started;
  im.engine.post([&] {
    Status s = im.driver->start();
    im.driver->tick();  // the gauges, before the first scrape
    started.set_value(s);
  });
  if (Status s = started.get_future().get(); !s.ok()) return s.error();
  im.timer = std::thread([&im] { im.timer_loop(); });
  im.started = true;
  return service;
}

void Service::stop() {
  Impl& im = *impl_;
  if (im.stopped.exchange(true)) return;
  im.started = false;
  {
    std::lock_guard lock(im.timer_mutex);
    im.timer_stop = true;
  }
  im.timer_wake.notify_all();
  if (im.timer.joinable()) im.timer.join();
  for (auto& rt : im.repos) rt->runner.reset();  // kills builds; no reports follow
  for (auto& rt : im.repos) rt->git->stop();     // finishes the git step under way
  im.outbox.stop();
  im.engine.stop();
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
        done(std::move(out));
      }))
    done({});
}

void Service::submit(const std::string& repo, q::Event event,
                     std::function<void(q::Outcome)> done) {
  if (!impl_->find(repo)) return done(refusal(not_found("unknown repository " + repo)));
  auto task = [this, repo, event = std::move(event), done] {
    done(impl_->driver->apply(repo, event));
  };
  if (!impl_->engine.post(std::move(task))) done(refusal(stopping()));
}

void Service::register_pull(const std::string& repo, forges::Registration registration,
                            std::function<void(q::Outcome)> done) {
  RepoRuntime* rt = impl_->find(repo);
  if (!rt) return done(refusal(not_found("unknown repository " + repo)));
  // A fresh fetch, so that a branch pushed a moment ago is found.
  bool posted = rt->git->post([this, rt, registration, done] {
    auto refs = rt->worker->fetch();
    bool on_engine = impl_->engine.post([this, rt, refs, registration, done] {
      auto& driver = *impl_->driver;
      if (!refs) {
        driver.fetch_failed(rt->cfg.name, refs.status());
        return done(refusal(unavailable(refs.message())));
      }
      driver.fetched(rt->cfg.name, *refs);
      auto opened = rt->forge->register_pull(*refs, registration, impl_->now());
      if (!opened) return done(refusal(opened.error()));
      done(driver.apply(rt->cfg.name, *opened));
    });
    if (!on_engine) done(refusal(stopping()));
  });
  if (!posted) done(refusal(stopping()));
}

void Service::view(const std::string& repo, std::function<void(Result<RepoView>)> done) {
  if (!impl_->find(repo)) return done(not_found("unknown repository " + repo));
  // The history is read here (the store is safe from any thread), the hot state on the engine.
  auto recent = impl_->store->history(repo, 0, kRecentOutcomes);
  if (!recent) return done(recent.status().prefixed("store: ").error());
  if (!impl_->engine.post([this, repo, recent = std::move(*recent), done] {
        done(RepoView{*impl_->driver->state(repo), *impl_->driver->health(repo), recent});
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
        const q::RepoState& state = *impl_->driver->state(repo);
        auto it = state.prs.find(number);
        if (it != state.prs.end()) {
          view.pr = it->second;
          auto order = q::queue_order(state);
          auto at = std::find(order.begin(), order.end(), number);
          if (at != order.end()) view.position = static_cast<std::size_t>(at - order.begin()) + 1;
          return done(std::move(view));
        }
        // Read on the engine thread, which is the one that archives: a PR is
        // either in the hot state or already in the archive, never in between.
        auto archived = store.archived(repo, number);
        if (!archived)
          return done(unavailable("store: cannot read pull request #" + std::to_string(number)));
        if (!*archived)
          return done(not_found("unknown pull request #" + std::to_string(number) + " in " + repo));
        view.pr = std::move(**archived);
        view.archived = true;
        done(std::move(view));
      }))
    done(stopping());
}

void Service::webhook(const std::string& forge, forges::InboundRequest request,
                      std::function<void(Result<WebhookAccepted>)> answer) {
  // Counted by how it ended: accepted, duplicate, or the code of the refusal.
  auto done = [forge, answer = std::move(answer)](Result<WebhookAccepted> r) {
    const std::string result = !r             ? std::string(to_string(r.code()))
                               : r->duplicate ? "duplicate"
                                              : "accepted";
    metrics::global().add("dmzbot_webhook_deliveries_total",
                          {{"forge", forge}, {"result", result}});
    answer(std::move(r));
  };
  bool any = false, unauthenticated_seen = false;
  for (auto& rt : impl_->repos) {
    if (rt->forge->kind() != forge) continue;
    any = true;
    // The adapter authenticates (each repository may have its own secret) and parses; a
    // delivery for another repository is not_found here and goes to the next one.
    auto delivery = rt->forge->webhook(request, impl_->now());
    if (!delivery) {
      if (delivery.code() == Code::kUnauthenticated) unauthenticated_seen = true;
      if (delivery.code() == Code::kUnauthenticated || delivery.code() == Code::kNotFound) continue;
      return done(delivery.error());
    }
    // Durable before the answer: a redelivery of this id changes nothing.
    auto fresh = impl_->store->record_delivery(forge + ":" + delivery->id, impl_->now());
    if (!fresh) return done(fresh.status().prefixed("store: ").error());
    WebhookAccepted accepted{delivery->repo, !*fresh, delivery->events.size()};
    if (*fresh)
      for (auto& event : delivery->events) impl_->post_event(rt->cfg.name, std::move(event));
    return done(accepted);
  }
  if (!any) return done(not_found("no " + forge + " repository is configured"));
  if (unauthenticated_seen)
    return done(unauthenticated("the webhook's signature matches no configured repository"));
  done(not_found("the webhook is about no configured repository"));
}

std::optional<std::string> Service::build_log(const std::string& repo, const q::Sha& sha,
                                              std::size_t max_bytes) const {
  if (!impl_->find(repo)) return std::nullopt;
  return read_build_log(impl_->log_dir(repo), sha, max_bytes);
}

std::string Service::metrics() const { return metrics::global().text(); }

q::Outcome Service::submit_and_wait(const std::string& repo, q::Event event) {
  std::promise<q::Outcome> result;
  auto future = result.get_future();
  submit(repo, std::move(event), [&result](q::Outcome o) { result.set_value(std::move(o)); });
  return future.get();
}

std::optional<q::RepoState> Service::state(const std::string& repo) {
  std::promise<std::optional<q::RepoState>> result;
  auto future = result.get_future();
  if (!impl_->engine.post([&] {
        const auto* s = impl_->driver->state(repo);
        result.set_value(s ? std::optional<q::RepoState>(*s) : std::nullopt);
      }))
    return std::nullopt;
  return future.get();
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
  std::promise<void> done;
  auto future = done.get_future();
  bool posted = impl_->on_git(
      repo, [&](RepoRuntime& rt) { impl_->fetch_into_driver(rt, [&done] { done.set_value(); }); });
  if (posted) future.wait();
  impl_->engine.drain();  // the events the fetch implied are applied too
}

}  // namespace dmz

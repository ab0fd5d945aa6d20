#include "bot/service/service.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <variant>

#include "bot/service/service_impl.hpp"

namespace dmz {

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

void Service::Impl::notify_saved(const std::string& repo) {
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

q::Millis Service::Impl::now() const { return clock->now(); }

Status Service::Impl::lock_data_dir() {
  if (Status s = make_private_dir(cfg.data_dir); !s.ok()) return s;
  auto file = cfg.data_dir / "dmzbot.instance";
  instance_fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (instance_fd < 0)
    return unavailable("cannot open " + file.string() + ": " + std::strerror(errno));
  if (::flock(instance_fd, LOCK_EX | LOCK_NB) != 0)
    return conflict("another dmzbot is already serving data directory " + cfg.data_dir.string());
  return {};
}

Status Service::Impl::move_old_deliveries() {
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

Status Service::Impl::open_store() {
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

void Service::Impl::forget_new_mirrors() {
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

std::vector<fs::path> Service::Impl::secret_paths() const {
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

fs::path Service::Impl::log_dir(const std::string& repo) const {
  return cfg.data_dir / "logs" / config::mirror_dir_name(repo);
}

RepoRuntime* Service::Impl::find(const std::string& name) {
  for (auto& r : repos)
    if (r->cfg.name == name) return r.get();
  return nullptr;
}

Status Service::Impl::open_github(RepoRuntime& rt) {
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

git::TransportOptions Service::Impl::transport_for(const RepoRuntime& rt) const {
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

Status Service::Impl::open_repo(const config::Repo& repo) {
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
  rt->forge_thread =
      std::make_unique<SerialExecutor>("forge " + repo.name, SerialExecutor::Priority::kBackground);
  RepoRuntime* raw_rt = rt.get();
  rt->promoter = std::make_unique<Promoter>(
      repo, *clock, store.get(),
      [this, raw_rt](const PromotionRecord& r) { bring_hotfix_back(*raw_rt, r); });
  repos.push_back(std::move(rt));
  return {};
}

std::vector<driver::RepoConfig> Service::Impl::driver_configs() const {
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

void Service::Impl::post_event(const std::string& repo, q::Event event) {
  engine.post([this, repo, event = std::move(event)]() mutable {
    apply_or_park(repo, std::move(event), Parked::kWhileServed);
  });
}

void Service::Impl::apply_or_park(const std::string& repo, q::Event event, Parked::Keep keep,
                                  std::function<void(const q::Outcome&)> then) {
  if (!unsaved.count(repo)) {
    auto out = driver->apply(repo, event);
    if (!must_wait(repo, out, keep)) {
      if (then) then(out);
      return;
    }
  }
  auto& waiting = unsaved[repo];
  if (keep == Parked::kUntilApplied && waiting.size() >= options.max_parked_events) {
    log::error({.repo = repo, .event = q::event_kind(event)},
               "{} events wait to be saved; this {} waits for the next start", waiting.size(),
               q::event_kind(event));
    return;
  }
  waiting.push_back({std::move(event), keep, std::move(then)});
}

void Service::Impl::apply_unsaved(const std::string& repo) {
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

bool Service::Impl::events_wait(const std::string& repo) const { return unsaved.count(repo) > 0; }

Error Service::Impl::earlier_change_unsaved() {
  return unavailable("the store could not save an earlier change; try again");
}

bool Service::Impl::must_wait(const std::string& repo, const q::Outcome& out,
                              Parked::Keep keep) const {
  if (!out.rejected || out.rejected->code != Code::kUnavailable) return false;
  const auto* health = driver->health(repo);
  return health && (health->loaded || keep == Parked::kUntilApplied);
}

void Service::Impl::fetch_into_driver(RepoRuntime& rt, std::function<void()> then) {
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

void Service::Impl::register_pulls(RepoRuntime& rt, const Result<forges::RemoteRefs>& refs,
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

std::optional<Error> Service::Impl::refused_anyway(const RepoRuntime& rt,
                                                   const forges::Registration& r) const {
  forges::RemoteRefs imagined;
  const q::Sha any(40, '0');
  imagined.branches[r.branch] = any;
  if (r.branch.starts_with(forges::kTagPrefix))
    imagined.tags[r.branch.substr(forges::kTagPrefix.size())] = any;
  auto opened = rt.forge->register_pull(imagined, r, now());
  if (opened) return std::nullopt;
  return opened.error();
}

void Service::Impl::drop_registrations(RepoRuntime& rt) {
  std::vector<RepoRuntime::Registering> dropped;
  {
    std::lock_guard lock(rt.fetch_mu);
    dropped.swap(rt.registering);
  }
}

void Service::Impl::bring_hotfix_back(RepoRuntime& rt, const PromotionRecord& r) {
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

Result<bool> Service::Impl::brought_back_before(RepoRuntime& rt, int number, const q::Sha& commit) {
  auto archived = store->archived(rt.cfg.name, number);
  if (!archived) {
    spdlog::warn("{}: bringing the hotfix back as #{}: {}", rt.cfg.name, number,
                 archived.message());
    rt.promoter->resume_hotfixes();
    return archived.error();
  }
  return *archived && (*archived)->approval && (*archived)->approval->sha == commit;
}

void Service::Impl::queue_hotfix(RepoRuntime& rt, int number, const std::string& branch,
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

void Service::Impl::fetch(const std::string& repo) {
  on_git(repo, [this](RepoRuntime& rt) { fetch_into_driver(rt); });
}

void Service::Impl::build_candidate(const std::string& repo, const q::BuildCandidate& a) {
  on_git(repo, [this, a](RepoRuntime& rt) {
    if (a.tip) rt.reset_retrying.reset();  // dmz follows the newer train now
    post_event(rt.cfg.name, rt.worker->build_candidate(a));
  });
}

void Service::Impl::reset_dmz(const std::string& repo, const q::ResetDmz& a) {
  on_git(repo, [this, a](RepoRuntime& rt) { push_reset(rt, a, 0); });
}

q::Millis Service::Impl::retry_base() const {
  return std::max<q::Millis>(options.fetch_interval.count(), 2'000);
}

void Service::Impl::push_reset(RepoRuntime& rt, const q::ResetDmz& a, int tries) {
  rt.reset_retrying.reset();
  Status s = rt.worker->reset_dmz(a);
  if (s.ok()) return;
  const q::Millis wait = backoff(retry_base(), tries + 1, 300'000);
  log::error({.repo = rt.cfg.name, .sha = a.sha}, "reset {} to {} failed, tried again in {}s: {}",
             rt.cfg.dmz, a.sha, wait / 1000, s.message());
  rt.reset_retrying = RepoRuntime::ResetRetry{a, tries + 1, now() + wait};
}

void Service::Impl::retry_reset(RepoRuntime& rt) {
  if (!rt.reset_retrying || rt.reset_retrying->not_before > now()) return;
  const RepoRuntime::ResetRetry r = *rt.reset_retrying;
  push_reset(rt, r.reset, r.tries);
}

void Service::Impl::prune_candidates(const std::string& repo, const q::PruneCandidates& a) {
  on_git(repo, [a](RepoRuntime& rt) {
    if (Status s = rt.worker->prune_candidates(a); !s.ok())
      log::warn({.repo = rt.cfg.name}, "deleting obsolete candidate branches failed: {}",
                s.message());
  });
}

void Service::Impl::fast_forward(const std::string& repo, const q::FastForwardMaster& a) {
  on_git(repo, [this, a](RepoRuntime& rt) { post_event(rt.cfg.name, rt.worker->fast_forward(a)); });
}

void Service::Impl::check_policy(const std::string& repo, const q::CheckPolicy& a) {
  RepoRuntime* rt = find(repo);
  if (!rt) return;
  rt->git->post([this, rt, a] { judge_policy(*rt, a); });
}

void Service::Impl::wait_once(std::vector<q::CheckPolicy>& waiting, const q::CheckPolicy& a) {
  auto same = std::find_if(waiting.begin(), waiting.end(), [&](const q::CheckPolicy& w) {
    return w.number == a.number && w.sha == a.sha;
  });
  if (same == waiting.end())
    waiting.push_back(a);
  else
    *same = a;
}

void Service::Impl::take_verdict(RepoRuntime& rt, const q::CheckPolicy& a, q::PolicyChecked verdict,
                                 int tries) {
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

void Service::Impl::retry_policies(RepoRuntime& rt) {
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

void Service::Impl::judge_policy(RepoRuntime& rt, const q::CheckPolicy& a, int tries) {
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

void Service::Impl::check_candidate(const std::string& repo, const q::CheckCandidate& a) {
  on_git(repo,
         [this, a](RepoRuntime& rt) { post_event(rt.cfg.name, rt.worker->check_candidate(a)); });
}

void Service::Impl::start_build(const std::string& repo, const q::StartBuild& a) {
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

void Service::Impl::cancel_build(const std::string& repo, const q::CancelBuild& a) {
  if (RepoRuntime* rt = find(repo); rt && rt->runner) rt->runner->cancel(a.sha);
}

void Service::Impl::send(const forges::OutboxMessage& message) {
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

// ---- timer ------------------------------------------------------------------------------------

void Service::Impl::timer_loop() {
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

Result<std::optional<std::string>> Service::build_log(const std::string& repo, const q::Sha& sha,
                                                      std::size_t max_bytes) const {
  if (!impl_->find(repo)) return std::optional<std::string>();
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

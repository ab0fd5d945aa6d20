#include "bot/service/service.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "bot/ci/runner.hpp"
#include "bot/git/mirror.hpp"
#include "bot/service/serial_executor.hpp"
#include "bot/store/store.hpp"
#include "bot/trust/candidate_check.hpp"
#include "bot/trust/gate.hpp"
#include "bot/trust/signing.hpp"
#include "forges/plain.hpp"
#include "queue/engine.hpp"
#include "queue/json.hpp"

namespace dmz {

namespace q = queue;

std::string merge_message(const std::string& repo, const q::MergeItem& item) {
  std::string subject = "Merge #" + std::to_string(item.number) + " from " + item.branch;
  if (!item.title.empty()) subject += ": " + item.title;
  return subject + "\n\nMerged into " + repo + " by dmzbot after approval at " +
         item.head.substr(0, 12) + ".\n\nPull-Request: #" + std::to_string(item.number) +
         "\nHead: " + item.head + "\nApproved-by: " + item.approver + "\n";
}

namespace {

// The branch name under which a PR made by a signed tag is known: "tags/<tag name>".
constexpr std::string_view kTagPrefix = "tags/";

q::Settings settings_for(const config::Repo& repo) {
  q::Settings s;
  s.required_checks = repo.required_checks;
  // A repository with a local runner and no explicit checks is gated by the runner's check.
  if (s.required_checks.empty() && repo.runner) s.required_checks = {repo.runner->context};
  s.check_timeout =
      std::chrono::duration_cast<std::chrono::milliseconds>(repo.check_timeout).count();
  return s;
}

std::string mirror_dir_name(const std::string& repo) {
  std::string name = repo;
  for (char& c : name)
    if (c == '/') c = '_';
  return name + ".git";
}

q::Millis system_now() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

q::Outcome refusal(int code, std::string message) {
  q::Outcome out;
  out.rejected = std::move(message);
  out.code = code;
  return out;
}

}  // namespace

// Everything a repository needs at run time. `state` belongs to the engine thread; `mirror`,
// `policy` and `signer` to the git worker.
struct RepoRuntime {
  config::Repo cfg;
  q::Settings settings;
  q::RepoState state;
  std::unique_ptr<git::Mirror> mirror;
  std::unique_ptr<PolicyChecker> policy;
  std::unique_ptr<CandidateChecker> candidates;
  std::unique_ptr<Signer> signer;
  std::unique_ptr<LocalRunner> runner;
  std::unique_ptr<SerialExecutor> git;
  std::map<std::string, std::pair<q::Sha, q::Sha>>
      peeled_tags;  // git worker: tag -> (object, commit)
};

struct Service::Impl {
  ~Impl() {
    if (instance_fd >= 0) ::close(instance_fd);  // releases the data directory's lock
  }

  // One service per data directory: its mirrors and database must have a single writer (that
  // is also what makes removing a crashed run's git lock files safe). flock is released by the
  // kernel when the process dies, even by kill -9.
  Status lock_data_dir() {
    std::error_code ec;
    std::filesystem::create_directories(cfg.data_dir, ec);
    auto file = cfg.data_dir / "dmzbot.instance";
    instance_fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (instance_fd < 0) return error("cannot open " + file.string() + ": " + std::strerror(errno));
    if (::flock(instance_fd, LOCK_EX | LOCK_NB) != 0)
      return error("another dmzbot is already serving data directory " + cfg.data_dir.string());
    return {};
  }

  int instance_fd = -1;
  config::Config cfg;
  Options options;
  std::unique_ptr<Store> store;
  std::vector<std::unique_ptr<RepoRuntime>> repos;
  SerialExecutor engine{"engine"};
  std::atomic<bool> ready{false};
  std::atomic<bool> stopped{false};

  std::thread poller;
  std::mutex poller_mutex;
  std::condition_variable poller_wake;
  bool poller_stop = false;

  mutable std::mutex metrics_mutex;
  std::string metrics_text;
  std::uint64_t events_applied = 0;  // engine thread

  q::Millis now() const { return options.clock ? options.clock() : system_now(); }

  // What a sandboxed build must not see: the configuration (and its directory, where token
  // files usually live, unless that is a top-level directory like /etc), the data directory
  // and the signing key or GnuPG home.
  std::vector<std::filesystem::path> secret_paths() const {
    std::vector<std::filesystem::path> out = {cfg.data_dir, cfg.signing.key,
                                              cfg.signing.gnupg_home};
    if (!cfg.file.empty()) {
      auto file = std::filesystem::absolute(cfg.file);
      out.push_back(file);
      if (std::distance(file.parent_path().begin(), file.parent_path().end()) > 2)
        out.push_back(file.parent_path());
    }
    return out;
  }

  std::filesystem::path log_dir(const std::string& repo) const {
    return cfg.data_dir / "logs" / mirror_dir_name(repo);
  }

  RepoRuntime* find(const std::string& name) {
    for (auto& r : repos)
      if (r->cfg.name == name) return r.get();
    return nullptr;
  }

  // ---- engine thread ------------------------------------------------------------------------

  void apply(RepoRuntime& rt, const q::Event& event, const std::function<void(q::Outcome)>& done) {
    q::RepoState before = rt.state;
    q::Outcome out = q::handle(rt.state, event, rt.settings);
    bool idle_tick = std::holds_alternative<q::Tick>(event) && out.actions.empty();
    if (!out.rejected && !idle_tick) {
      // Invariant: state is durable before any action it enables runs.
      Status saved = store->save(rt.state, q::event_kind(event), q::to_json(event).dump(), now());
      if (!saved.ok()) {
        spdlog::error("{}: cannot persist state, event dropped: {}", rt.cfg.name, saved.message());
        rt.state = std::move(before);
        out = refusal(503, "store unavailable: " + saved.message());
      } else {
        ++events_applied;
        render_metrics();
        for (const auto& action : out.actions) execute(rt, action);
      }
    }
    if (done) done(std::move(out));
  }

  void post_event(RepoRuntime& rt, q::Event event) {
    engine.post([this, &rt, event = std::move(event)] { apply(rt, event, nullptr); });
  }

  void execute(RepoRuntime& rt, const q::Action& action) {
    std::visit([&](const auto& a) { run(rt, a); }, action);
  }

  void run(RepoRuntime& rt, const q::CheckPolicy& a) {
    auto pr_it = rt.state.prs.find(a.number);
    if (pr_it == rt.state.prs.end()) return;
    rt.git->post([this, &rt, pr = pr_it->second, sha = a.sha, target = rt.state.master] {
      post_event(rt, rt.policy->check(*rt.mirror, pr, sha, target, now()));
    });
  }

  void run(RepoRuntime& rt, const q::BuildCandidate& a) {
    rt.git->post([this, &rt, a] { post_event(rt, build_candidate(rt, a)); });
  }

  void run(RepoRuntime& rt, const q::CheckCandidate& a) {
    rt.git->post([this, &rt, a] { post_event(rt, rt.candidates->check(*rt.mirror, a, now())); });
  }

  void run(RepoRuntime& rt, const q::ResetDmz& a) {
    rt.git->post([&rt, sha = a.sha] {
      if (Status s = rt.mirror->push_force(sha, rt.cfg.dmz); !s.ok())
        spdlog::error("{}: reset {} to master failed: {}", rt.cfg.name, rt.cfg.dmz, s.message());
    });
  }

  void run(RepoRuntime& rt, const q::StartBuild& a) {
    if (!rt.runner) return;  // external CI builds dmz and posts statuses
    SerialExecutor* git = rt.git.get();
    git::Mirror* mirror = rt.mirror.get();
    rt.runner->start(rt.cfg.name, a.sha,
                     [git, mirror, sha = a.sha](const std::filesystem::path& dir) {
                       // The mirror belongs to the git worker: export there, and wait.
                       std::promise<Status> result;
                       auto future = result.get_future();
                       if (!git->post([&] { result.set_value(mirror->export_tree(sha, dir)); }))
                         return Status(error("service is stopping"));
                       return future.get();
                     });
  }

  void run(RepoRuntime& rt, const q::CancelBuild& a) {
    if (rt.runner) rt.runner->cancel(a.sha);
  }

  void run(RepoRuntime& rt, const q::FastForwardMaster& a) {
    rt.git->post([this, &rt, a] {
      q::MasterPushed pushed{a.candidate};
      auto r = rt.mirror->push_fast_forward(rt.cfg.master, a.from, a.to);
      if (!r) {
        pushed.message = r.message();
      } else {
        pushed.ok = r->ok;
        pushed.message = r->message;
        if (r->remote_moved) {
          pushed.remote_master = r->remote_sha;
          // The engine will rebuild on the new master: its objects must be in the mirror.
          if (Status s = rt.mirror->fetch(); !s.ok())
            spdlog::warn("{}: fetch after a moved master failed: {}", rt.cfg.name, s.message());
        }
      }
      pushed.at = now();
      post_event(rt, pushed);
    });
  }

  void run(RepoRuntime& rt, const q::Notify& a) {
    // The plain forge has no comment API: the notice is logged, and the PR's reason carries
    // it to the queue API and the status page.
    auto level = a.kind == q::NoticeKind::Failure ? spdlog::level::warn : spdlog::level::info;
    spdlog::log(level, "{}#{}: {}", rt.cfg.name, a.number, a.message);
  }

  // ---- git worker ---------------------------------------------------------------------------

  q::MergeDone build_candidate(RepoRuntime& rt, const q::BuildCandidate& a) {
    q::MergeDone done{a.candidate};
    git::Identity who{cfg.signing.name, cfg.signing.email};
    git::Sha tip = a.base;
    for (const auto& item : a.items) {
      std::vector<std::pair<std::string, std::string>> headers;
      if (item.branch.rfind(kTagPrefix, 0) == 0) {
        // Record the contributor's signed tag so `git show --show-signature` verifies it later.
        auto tag = mergetag_for(*rt.mirror, item.branch.substr(kTagPrefix.size()));
        if (!tag) {
          done.message = tag.message();
          done.at = now();
          return done;
        }
        headers.emplace_back("mergetag", *tag);
      }
      auto merged = rt.mirror->merge(tip, item.head, merge_message(rt.cfg.name, item), who,
                                     rt.signer.get(), headers);
      if (!merged) {
        done.message = merged.message();
        done.at = now();
        return done;
      }
      if (!merged->clean) {
        done.outcome = q::MergeOutcome::Conflict;
        done.culprit = item.number;
        done.conflicts = merged->conflicts;
        done.at = now();
        return done;
      }
      tip = merged->commit;
    }
    if (Status s = rt.mirror->push_force(tip, rt.cfg.dmz); !s.ok()) {
      done.message = s.message();
    } else {
      done.outcome = q::MergeOutcome::Merged;
      done.sha = tip;
    }
    done.at = now();
    return done;
  }

  // What a PR can point at: every remote branch by name, and every annotated tag as
  // "tags/<name>" peeled to its commit (tag objects are peeled once and remembered).
  std::map<std::string, q::Sha> pr_heads(RepoRuntime& rt) {
    auto heads = rt.mirror->remote_branches();
    std::map<std::string, std::pair<q::Sha, q::Sha>> peeled;  // name -> (tag object, commit)
    for (const auto& [name, object] : rt.mirror->tags()) {
      auto known = rt.peeled_tags.find(name);
      if (known != rt.peeled_tags.end() && known->second.first == object) {
        peeled.emplace(name, known->second);
      } else if (auto commit = rt.mirror->resolve(object); commit) {
        peeled.emplace(name, std::make_pair(object, *commit));
      }
    }
    rt.peeled_tags = std::move(peeled);
    for (const auto& [name, objects] : rt.peeled_tags)
      heads.emplace(std::string(kTagPrefix) + name, objects.second);
    return heads;
  }

  // Fetches and turns what moved on the remote into events for the engine.
  void fetch_and_notice(RepoRuntime& rt) {
    auto before = pr_heads(rt);
    if (Status s = rt.mirror->fetch(); !s.ok()) {
      spdlog::warn("{}: fetch failed: {}", rt.cfg.name, s.message());
      return;
    }
    auto branches = pr_heads(rt);
    // Branches whose new head does not contain the old one: a force-push dropped commits.
    std::set<std::string> rewritten;
    for (const auto& [name, sha] : branches) {
      auto old = before.find(name);
      if (old == before.end() || old->second == sha) continue;
      auto contains = rt.mirror->is_ancestor(old->second, sha);
      if (contains && !*contains) rewritten.insert(name);
    }
    engine.post([this, &rt, branches = std::move(branches), rewritten = std::move(rewritten)] {
      for (auto& event : forges::events_from_fetch(rt.state, branches, rt.cfg.master, now())) {
        if (auto* push = std::get_if<q::PrPushed>(&event)) {
          auto pr = rt.state.prs.find(push->number);
          push->rewritten = pr != rt.state.prs.end() && rewritten.count(pr->second.branch) > 0;
        }
        apply(rt, event, nullptr);
      }
    });
  }

  // ---- timers -------------------------------------------------------------------------------

  void poll_loop() {
    auto next_fetch = std::chrono::steady_clock::now() + options.fetch_interval;
    std::unique_lock lock(poller_mutex);
    while (!poller_stop) {
      poller_wake.wait_for(lock, options.tick_interval, [this] { return poller_stop; });
      if (poller_stop) break;
      lock.unlock();
      for (auto& rt : repos) post_event(*rt, q::Tick{now()});
      if (std::chrono::steady_clock::now() >= next_fetch) {
        for (auto& rt : repos) rt->git->post([this, r = rt.get()] { fetch_and_notice(*r); });
        next_fetch = std::chrono::steady_clock::now() + options.fetch_interval;
      }
      lock.lock();
    }
  }

  void render_metrics() {
    std::ostringstream out;
    out << "# HELP dmzbot_pull_requests Pull requests by status.\n"
           "# TYPE dmzbot_pull_requests gauge\n";
    for (auto& rt : repos) {
      std::map<std::string_view, int> counts;
      for (const auto& [n, pr] : rt->state.prs) ++counts[q::to_string(pr.status)];
      for (const auto& [status, count] : counts)
        out << "dmzbot_pull_requests{repo=\"" << rt->cfg.name << "\",status=\"" << status << "\"} "
            << count << "\n";
    }
    out << "# HELP dmzbot_train_length Candidates in flight.\n# TYPE dmzbot_train_length gauge\n";
    for (auto& rt : repos)
      out << "dmzbot_train_length{repo=\"" << rt->cfg.name << "\"} " << rt->state.train.size()
          << "\n";
    out << "# HELP dmzbot_events_total Events applied.\n# TYPE dmzbot_events_total counter\n"
        << "dmzbot_events_total " << events_applied << "\n";
    std::lock_guard lock(metrics_mutex);
    metrics_text = out.str();
  }

  Status open_repo(const config::Repo& repo) {
    auto rt = std::make_unique<RepoRuntime>();
    rt->cfg = repo;
    rt->settings = settings_for(repo);
    auto mirror =
        git::Mirror::open(cfg.data_dir / "mirrors" / mirror_dir_name(repo.name), repo.remote);
    if (!mirror) return error(repo.name + ": " + mirror.message());
    rt->mirror = std::move(*mirror);
    if (Status s = rt->mirror->fetch(); !s.ok()) return error(repo.name + ": " + s.message());
    auto signer = make_signer(cfg.signing);
    if (!signer) return error(repo.name + ": signing: " + signer.message());
    rt->signer = std::move(*signer);
    rt->policy = make_policy_checker(repo);
    rt->candidates = std::make_unique<CandidateChecker>(repo);

    auto loaded = store->load(repo.name);
    if (!loaded) return error(repo.name + ": " + loaded.message());
    if (*loaded) {
      rt->state = std::move(**loaded);
    } else {
      rt->state.repo = repo.name;
      rt->state.master = rt->mirror->remote_branch(repo.master).value_or("");
      if (rt->state.master.empty())
        return error(repo.name + ": remote has no branch " + repo.master);
    }
    if (repo.runner) {
      RepoRuntime* raw = rt.get();
      rt->runner = std::make_unique<LocalRunner>(
          *repo.runner, log_dir(repo.name),
          [this, raw](const std::string&, const q::Sha& sha, q::Check check) {
            post_event(*raw, q::CheckReported{sha, std::move(check), now()});
          },
          secret_paths());
    }
    rt->git = std::make_unique<SerialExecutor>("git " + repo.name);
    repos.push_back(std::move(rt));
    return {};
  }
};

Service::Service(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Service::~Service() { stop(); }

Result<std::unique_ptr<Service>> Service::start(config::Config config, Options options) {
  git::init();
  auto impl = std::make_unique<Impl>();
  impl->cfg = std::move(config);
  impl->options = std::move(options);
  if (Status s = impl->lock_data_dir(); !s.ok()) return s.error();
  auto store = open_sqlite_store(impl->cfg.data_dir / impl->cfg.store.path);
  if (!store) return error("store: " + store.message());
  impl->store = std::move(*store);
  for (const auto& repo : impl->cfg.repos)
    if (Status s = impl->open_repo(repo); !s.ok()) return s.error();

  std::unique_ptr<Service> service(new Service(std::move(impl)));
  Impl& im = *service->impl_;
  im.engine.post([&im] {
    for (auto& rt : im.repos) {
      // Recovery: re-run what was in flight, then notice what moved while we were down.
      for (const auto& action : q::resume(rt->state, rt->settings)) im.execute(*rt, action);
      rt->git->post([&im, r = rt.get()] { im.fetch_and_notice(*r); });
    }
    im.render_metrics();
  });
  im.engine.drain();
  im.poller = std::thread([&im] { im.poll_loop(); });
  im.ready = true;
  return service;
}

void Service::stop() {
  Impl& im = *impl_;
  if (im.stopped.exchange(true)) return;
  im.ready = false;
  {
    std::lock_guard lock(im.poller_mutex);
    im.poller_stop = true;
  }
  im.poller_wake.notify_all();
  if (im.poller.joinable()) im.poller.join();
  for (auto& rt : im.repos) rt->runner.reset();  // kills builds; no reports follow
  for (auto& rt : im.repos) rt->git->stop();     // finishes the git step under way
  im.engine.stop();
}

const config::Config& Service::config() const { return impl_->cfg; }
q::Millis Service::now() const { return impl_->now(); }
bool Service::ready() const { return impl_->ready; }

void Service::submit(const std::string& repo, q::Event event,
                     std::function<void(q::Outcome)> done) {
  RepoRuntime* rt = impl_->find(repo);
  if (!rt) return done(refusal(404, "unknown repository " + repo));
  auto task = [this, rt, event = std::move(event), done] { impl_->apply(*rt, event, done); };
  if (!impl_->engine.post(std::move(task))) done(refusal(503, "service is stopping"));
}

void Service::register_pull(const std::string& repo, int number, const std::string& branch,
                            const std::string& author, const std::string& title,
                            std::function<void(q::Outcome)> done) {
  RepoRuntime* rt = impl_->find(repo);
  if (!rt) return done(refusal(404, "unknown repository " + repo));
  // A signed-tag PR is judged by the policy's branch rules (tags/*), not by branch patterns.
  const bool is_tag = branch.rfind(kTagPrefix, 0) == 0;
  if (!is_tag)
    if (auto why =
            forges::branch_refusal(branch, rt->cfg.branch_patterns, rt->cfg.refused_patterns))
      return done(refusal(422, *why));
  bool posted = rt->git->post([this, rt, is_tag, number, branch, author, title, done] {
    if (Status s = rt->mirror->fetch(); !s.ok()) return done(refusal(503, "fetch: " + s.message()));
    auto heads = impl_->pr_heads(*rt);
    auto found = heads.find(branch);
    if (found == heads.end())
      return done(refusal(
          422, (is_tag ? "annotated tag " + branch.substr(kTagPrefix.size()) : "branch " + branch) +
                   " does not exist on the remote"));
    std::optional<std::string> head = found->second;
    q::PrOpened opened{number, branch, author, title, *head, impl_->now()};
    if (!impl_->engine.post([this, rt, opened, done] { impl_->apply(*rt, opened, done); }))
      done(refusal(503, "service is stopping"));
  });
  if (!posted) done(refusal(503, "service is stopping"));
}

void Service::snapshot(const std::string& repo,
                       std::function<void(std::optional<q::RepoState>)> done) {
  RepoRuntime* rt = impl_->find(repo);
  if (!rt) return done(std::nullopt);
  if (!impl_->engine.post([rt, done] { done(rt->state); })) done(std::nullopt);
}

std::optional<std::string> Service::build_log(const std::string& repo, const q::Sha& sha,
                                              std::size_t max_bytes) const {
  if (!impl_->find(repo)) return std::nullopt;
  return read_build_log(impl_->log_dir(repo), sha, max_bytes);
}

std::string Service::metrics() const {
  std::lock_guard lock(impl_->metrics_mutex);
  return impl_->metrics_text;
}

q::Outcome Service::submit_and_wait(const std::string& repo, q::Event event) {
  std::promise<q::Outcome> result;
  auto future = result.get_future();
  submit(repo, std::move(event), [&result](q::Outcome o) { result.set_value(std::move(o)); });
  return future.get();
}

std::optional<q::RepoState> Service::state(const std::string& repo) {
  std::promise<std::optional<q::RepoState>> result;
  auto future = result.get_future();
  snapshot(repo, [&result](std::optional<q::RepoState> s) { result.set_value(std::move(s)); });
  return future.get();
}

void Service::fetch_now(const std::string& repo) {
  RepoRuntime* rt = impl_->find(repo);
  if (!rt) return;
  rt->git->post([this, rt] { impl_->fetch_and_notice(*rt); });
  rt->git->drain();
  impl_->engine.drain();
}

}  // namespace dmz

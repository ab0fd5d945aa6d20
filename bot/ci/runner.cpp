// The local CI runner (see runner.hpp): a fixed pool of cfg.max_parallel worker threads takes
// builds from a FIFO queue; each build exports its tree into a fresh temp directory and runs
// `/bin/sh -c <command>` there in its own process group. Its output goes through a pipe that the
// worker copies into <log_dir>/<sha>.log, so that the log stays under its cap whatever the build
// (or a leftover of it) writes.
//
// Processes are started with posix_spawn rather than fork+exec: in a multi-threaded program
// only async-signal-safe calls are allowed between fork and exec, and posix_spawn does exactly
// setpgid + dup2 + chdir + exec for us (glibc implements it with a vfork-like clone).
// `done` is only ever called from a worker thread with no lock of ours held.
#include "bot/ci/runner.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <variant>
#include <vector>

#include "base/log.hpp"
#include "base/this_thread.hpp"

extern char** environ;

namespace dmz {
namespace {

using Clock = std::chrono::steady_clock;

struct Job {
  std::string repo;
  queue::Sha sha;
  LocalRunner::Export export_tree;
  pid_t pid = 0;           // process group of the running command (0 = not started)
  bool cancelled = false;  // guarded by Impl::mu
};

// What one try at a build came to: its final check; Cancelled (nothing to report); or a
// RunnerFailure, when dmzbot itself could not run it (its disk, bubblewrap failing to start):
// not the PR's fault, so it is tried again before anything is reported.
struct Cancelled {};
struct RunnerFailure {
  std::string why;
};
using Attempt = std::variant<queue::Check, Cancelled, RunnerFailure>;

// The start time of process `pid` in clock ticks since boot (field 22 of /proc/PID/stat), or
// nullopt if there is no such process. With the pid it names one process for good: a pid the
// kernel reuses later has another start time.
std::optional<unsigned long long> start_time(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return std::nullopt;
  auto close = stat.rfind(')');  // the command name may hold spaces and parentheses
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i)
    if (i == 22) return std::stoull(field);
  return std::nullopt;
}

// Removes `path` and everything in it, making read-only directories a build left writable.
void remove_tree(const std::filesystem::path& path) {
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(path, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_directory(ec) && !it->is_symlink(ec))
      std::filesystem::permissions(it->path(), std::filesystem::perms::owner_all,
                                   std::filesystem::perm_options::add, ec);
  }
  std::filesystem::remove_all(path, ec);
}

std::string seconds(Clock::duration d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1fs", std::chrono::duration<double>(d).count());
  return buf;
}

// A temp directory removed with everything in it when the guard goes away.
struct TempDirGuard {
  std::filesystem::path path;
  ~TempDirGuard() {
    if (path.empty()) return;
    remove_tree(path);
    std::error_code ec;
    std::filesystem::remove(record_of(path), ec);
  }
  // Where a build records its process group: "<build dir>.pid".
  static std::filesystem::path record_of(const std::filesystem::path& dir) {
    return dir.string() + ".pid";
  }
};

void append_line(const std::filesystem::path& file, const std::string& line) {
  if (FILE* f = std::fopen(file.c_str(), "a")) {
    std::fputs(line.c_str(), f);
    std::fputc('\n', f);
    std::fclose(f);
  }
}

// The command runs code from pull requests: it gets a small allowlisted environment, never
// the bot's own (which holds webhook secrets and API tokens).
std::vector<std::string> build_environment() {
  static constexpr std::string_view kPassed[] = {"PATH",   "HOME",     "USER",   "LOGNAME", "LANG",
                                                 "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ"};
  std::vector<std::string> env;
  bool has_path = false;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    std::string_view name = kv.substr(0, kv.find('='));
    for (std::string_view allowed : kPassed) {
      if (name == allowed) {
        env.emplace_back(kv);
        has_path = has_path || name == "PATH";
      }
    }
  }
  if (!has_path) env.emplace_back("PATH=/usr/local/bin:/usr/bin:/bin");
  return env;
}

constexpr const char* kBwrap = "/usr/bin/bwrap";
constexpr const char* kSetpriv = "/usr/bin/setpriv";  // util-linux

// <log_dir>/<sha>.log: where a build's output goes and where read_build_log finds it.
std::filesystem::path log_path(const std::filesystem::path& log_dir, const queue::Sha& sha) {
  return log_dir / (sha + ".log");
}

// True if `path` is strictly inside `root` (never `root` itself).
bool under(const std::filesystem::path& path, const char* root) {
  auto rel = path.lexically_normal().lexically_relative(root);
  return !rel.empty() && rel != "." && *rel.begin() != "..";
}

// Starts `args` in `dir` with environment `env`, in a session and process group of its own
// (so that all of it can be killed, and it has no controlling terminal: a build run from a
// shell's `dmzbot serve` could otherwise type into that shell with TIOCSTI), stdin from
// /dev/null, stdout and stderr to `out_fd`, no other descriptor, every signal at its default.
// Returns posix_spawn's error number.
int spawn_in_group(pid_t& pid, std::vector<std::string>& args, std::vector<std::string>& env,
                   const std::filesystem::path& dir, int out_fd) {
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
  posix_spawn_file_actions_adddup2(&actions, out_fd, 2);
  // Not every descriptor of dmzbot is close-on-exec (Asio's listening socket and connections,
  // the HTTP client's sockets): a build that inherited one could accept dmzbot's requests and
  // print their tokens. bubblewrap passes on what it is given, so close them here.
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  posix_spawn_file_actions_addchdir_np(&actions, dir.c_str());
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);  // e.g. an ignored SIGPIPE is not inherited
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  int rc = posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  return rc;
}

void write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // e.g. a full disk: the rest of the log is lost, not the build
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

// "64 MiB", or "1000 bytes" for a cap that is not a whole number of MiB.
std::string size_text(std::uintmax_t bytes) {
  constexpr std::uintmax_t kMiB = 1 << 20;
  return bytes % kMiB == 0 ? std::to_string(bytes / kMiB) + " MiB"
                           : std::to_string(bytes) + " bytes";
}

// Copies a build's output from its pipe into its log, at most `cap` bytes of it. The rest is
// read and dropped: the build is stopped for it, not left blocked on a full pipe.
struct LogCopy {
  int from, to;
  std::uintmax_t cap;
  std::uintmax_t seen = 0;  // bytes the build wrote
  bool eof = false;         // every writer has closed the pipe

  bool over() const { return seen > cap; }

  // Reads what is there, at most `max` bytes; returns how many (0 at the end or on an error).
  std::size_t pump(std::size_t max) {
    char buf[64 * 1024];
    ssize_t n = ::read(from, buf, std::min(max, sizeof buf));
    if (n < 0 && errno == EINTR) return 0;
    if (n <= 0) {
      eof = true;
      return 0;
    }
    const auto got = static_cast<std::size_t>(n);
    write_all(to, buf,
              seen < cap ? static_cast<std::size_t>(std::min<std::uintmax_t>(got, cap - seen)) : 0);
    seen += got;
    return got;
  }

  // Reads what the pipe holds now, not what is written after.
  void drain() {
    int pending = 0;
    if (eof || ::ioctl(from, FIONREAD, &pending) != 0) return;
    for (std::size_t n; pending > 0 && (n = pump(static_cast<std::size_t>(pending))) > 0;)
      pending -= static_cast<int>(n);
  }
};

}  // namespace

struct LocalRunner::Impl {
  config::Runner cfg;
  std::filesystem::path log_dir;
  std::vector<std::filesystem::path> hidden;  // see build_command_line
  std::filesystem::path work_dir;             // where build directories go
  std::filesystem::path owned_work_dir;       // removed with the runner (a temp dir of its own)
  BuildLogLimits limits;
  std::vector<std::chrono::milliseconds> retry_waits;  // before each retry of a RunnerFailure
  Done done;

  std::mutex mu;
  std::condition_variable cv;        // queue changes and stop
  std::condition_variable retry_cv;  // cancels and stop, for builds waiting to be retried
  std::deque<std::shared_ptr<Job>> queue;
  std::vector<std::shared_ptr<Job>> running;
  bool stopping = false;
  Clock::time_point next_prune{};  // when a worker next prunes the logs
  std::vector<std::thread> workers;

  std::filesystem::path log_file(const queue::Sha& sha) const { return log_path(log_dir, sha); }

  queue::Check check(queue::CheckState state, std::string description, const Job& job) {
    queue::Check c;
    c.context = cfg.context;
    c.state = state;
    c.description = std::move(description);
    c.url = build_log_url(job.repo, job.sha);  // served by the API, not a path on this machine
    c.at = 0;                                  // the service stamps it with its clock
    return c;
  }

  // Reports unless the build was cancelled or the runner is going away.
  void report(const Job& job, queue::Check c) {
    {
      std::lock_guard lock(mu);
      if (job.cancelled || stopping) return;
    }
    if (done) done(job.repo, job.sha, std::move(c));
  }

  void worker() {
    for (;;) {
      std::shared_ptr<Job> job;
      bool prune = false;
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return stopping || !queue.empty(); });
        if (stopping) return;
        job = queue.front();
        queue.pop_front();
        running.push_back(job);
        prune = Clock::now() >= next_prune;
        if (prune) next_prune = Clock::now() + std::chrono::hours(1);
      }
      // Logs are only written by builds, so pruning as builds start keeps them bounded.
      if (prune) prune_logs(limits.keep);
      build(*job);
      std::lock_guard lock(mu);
      std::erase(running, job);
    }
  }

  bool should_stop(const Job& job) {
    std::lock_guard lock(mu);
    return job.cancelled || stopping;
  }

  // Records the build's process group beside its directory, so that a dmzbot restarted after
  // being killed can kill a build that outlived it (one run unsandboxed: bubblewrap's builds
  // die with their parent) instead of running it twice.
  static void record(const std::filesystem::path& dir, pid_t pid) {
    auto started = start_time(pid);
    std::ofstream out(TempDirGuard::record_of(dir));
    out << pid << " " << (started ? *started : 0) << "\n";
  }

  // The debris of a dmzbot that was killed: builds still running are killed (only if the
  // recorded process is still the one that was started), directories removed.
  void recover() {
    std::error_code ec;
    std::filesystem::create_directories(work_dir, ec);
    for (const auto& entry : std::filesystem::directory_iterator(work_dir, ec)) {
      if (entry.path().extension() != ".pid") continue;
      std::ifstream in(entry.path());
      pid_t pid = 0;
      unsigned long long started = 0;
      if (in >> pid >> started && pid > 1 && started != 0 && start_time(pid) == started) {
        ::kill(-pid, SIGKILL);
        ::kill(pid, SIGKILL);  // in case it left its group
      }
    }
    for (const auto& entry : std::filesystem::directory_iterator(work_dir, ec))
      remove_tree(entry.path());
  }

  std::size_t prune_logs(std::chrono::seconds older_than) {
    const auto cutoff = std::filesystem::file_time_type::clock::now() - older_than;
    std::size_t removed = 0;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(log_dir, ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
      std::error_code file_ec;
      if (it->path().extension() != ".log" || !it->is_regular_file(file_ec)) continue;
      auto written = it->last_write_time(file_ec);
      if (!file_ec && written < cutoff && std::filesystem::remove(it->path(), file_ec)) ++removed;
    }
    return removed;
  }

  // Waits `delay`, or less if the build is cancelled or the runner stops; true if it waited
  // it out.
  bool wait_to_retry(const Job& job, std::chrono::milliseconds delay) {
    std::unique_lock lock(mu);
    return !retry_cv.wait_for(lock, delay, [&] { return job.cancelled || stopping; });
  }

  // Tries the build until it ends or fails for its own reasons; a failure of dmzbot's is tried
  // again after each of retry_waits (a full disk may be freed, bubblewrap may work again), so
  // that a PR is not ejected as build-failed for it. The final report goes out after the build
  // directory is gone.
  void build(Job& job) {
    for (std::size_t tries = 0;; ++tries) {
      Attempt attempt;
      {
        TempDirGuard dir;
        attempt = execute(job, dir);
      }
      if (auto* result = std::get_if<queue::Check>(&attempt)) return report(job, *result);
      auto* failed = std::get_if<RunnerFailure>(&attempt);
      if (!failed || should_stop(job)) return;  // cancelled
      if (tries == retry_waits.size()) {
        const std::string msg = "dmzbot could not run the build: " + failed->why;
        append_line(log_file(job.sha), "[dmzbot] " + msg);
        return report(job, check(queue::CheckState::Error, msg, job));
      }
      const std::string wait = seconds(retry_waits[tries]);
      log::warn({.repo = job.repo, .sha = job.sha},
                "could not run the build ({}); trying again in {}", failed->why, wait);
      append_line(log_file(job.sha), "[dmzbot] could not run the build (" + failed->why +
                                         "); trying again in " + wait);
      if (!wait_to_retry(job, retry_waits[tries])) return;
    }
  }

  // Runs one try at a build.
  Attempt execute(Job& job, TempDirGuard& dir) {
    const auto log = log_file(job.sha);
    std::error_code ec;
    if (std::filesystem::create_directories(log_dir, ec); ec)
      return RunnerFailure{"cannot create the log directory " + log_dir.string() + ": " +
                           ec.message()};

    std::string pattern = (work_dir / "build-XXXXXX").string();
    if (!mkdtemp(pattern.data()))
      return RunnerFailure{std::string("cannot create a build directory: ") + std::strerror(errno)};
    dir.path = pattern;

    Status exported =
        job.export_tree ? job.export_tree(dir.path) : Status(error("nothing to export"));
    if (!exported) {
      std::string msg = "export failed: " + exported.message();
      // Only `invalid` is the tree's own fault (an unsafe path in it); anything else (the
      // mirror, the disk, a service that is stopping) is dmzbot's, and worth another try.
      if (exported.code() != Code::kInvalid) return RunnerFailure{msg};
      if (FILE* f = std::fopen(log.c_str(), "w")) std::fclose(f);
      append_line(log, msg);
      return check(queue::CheckState::Error, msg, job);
    }
    if (should_stop(job)) return Cancelled{};

    int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log_fd < 0)
      return RunnerFailure{"cannot open log " + log.string() + ": " + std::strerror(errno)};
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) {
      std::string msg = std::string("cannot make a pipe for the log: ") + std::strerror(errno);
      ::close(log_fd);
      return RunnerFailure{msg};
    }

    std::vector<std::string> env = build_environment();
    env.push_back("DMZ_SHA=" + job.sha);
    env.push_back("DMZ_REPO=" + job.repo);
    std::vector<std::string> args = build_command_line(cfg, dir.path, hidden);

    pid_t pid = 0;
    const auto started = Clock::now();
    int rc;
    {
      // Under the lock so that cancel() either sees the pid or has already marked the job.
      std::lock_guard lock(mu);
      if (job.cancelled || stopping) {
        rc = -1;
      } else {
        rc = spawn_in_group(pid, args, env, dir.path, out[1]);
        if (rc == 0) {
          job.pid = pid;
          record(dir.path, pid);
        }
      }
    }
    ::close(out[1]);
    if (rc != 0) {
      ::close(out[0]);
      ::close(log_fd);
    }
    if (rc < 0) return Cancelled{};
    if (rc != 0) {
      std::string msg = "cannot start " + args[0] + ": " + std::strerror(rc);
      if (args[0] == kBwrap && rc == ENOENT)
        msg += " (install bubblewrap, or set sandbox = \"none\" to run builds unconfined)";
      return RunnerFailure{msg};
    }
    // bubblewrap's builds die with dmzbot (--die-with-parent); an unsandboxed one is guarded.
    const pid_t guard = cfg.sandbox == "bwrap" ? 0 : guard_build_group(pid);
    report(job, check(queue::CheckState::Pending, "running", job));

    const auto deadline = started + cfg.timeout;
    LogCopy copy{out[0], log_fd, limits.max_bytes};
    const std::string log_exceeded = "log exceeded " + size_text(limits.max_bytes);
    std::string failure;  // why the runner stopped the build, if it did
    bool terminating = false;
    Clock::time_point kill_at{};
    siginfo_t info{};
    for (;;) {
      info.si_pid = 0;
      // WNOWAIT: the exited leader stays a zombie, so its pid (= the group id) cannot be
      // reused before we have killed whatever it left running in its group.
      if (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
          info.si_pid == pid)
        break;
      auto now = Clock::now();
      if (!terminating && (should_stop(job) || copy.over() || now >= deadline)) {
        if (!should_stop(job))
          failure = copy.over() ? log_exceeded
                                : "timed out after " + std::to_string(cfg.timeout.count()) + "s";
        terminating = true;
        ::kill(-pid, SIGTERM);
        kill_at = now + std::chrono::seconds(2);
      }
      if (terminating && now >= kill_at) {
        ::kill(-pid, SIGKILL);
        kill_at = now + std::chrono::hours(1);
      }
      // Its output as it comes, or a look at the build again within 20 ms.
      pollfd p{out[0], POLLIN, 0};
      if (copy.eof)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      else if (::poll(&p, 1, 20) > 0)
        copy.pump(SIZE_MAX);
    }
    {
      // Before reaping: once reaped, the pid may be reused and cancel() must not kill it.
      std::lock_guard lock(mu);
      job.pid = 0;
    }
    ::kill(-pid, SIGKILL);  // leftovers in the group (background jobs) die with the build
    // All the leader wrote is in the pipe by now; a leftover outside the group that writes on
    // is not waited for (and gets EPIPE once the pipe is closed).
    copy.drain();
    ::close(out[0]);
    ::close(log_fd);
    if (failure.empty() && copy.over()) failure = log_exceeded;  // it exited before we saw it
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    const auto elapsed = Clock::now() - started;
    end_guard(guard);

    queue::Check result;
    if (!failure.empty()) {
      result = check(queue::CheckState::Failure, failure, job);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      result = check(queue::CheckState::Success, "passed in " + seconds(elapsed), job);
    } else if (WIFEXITED(status)) {
      result = check(
          queue::CheckState::Failure,
          "exit code " + std::to_string(WEXITSTATUS(status)) + " after " + seconds(elapsed), job);
    } else {
      int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
      result = check(queue::CheckState::Failure,
                     "killed by signal " + std::to_string(sig) + " after " + seconds(elapsed), job);
    }
    if (should_stop(job)) return Cancelled{};
    append_line(log, "[dmzbot] " + result.description);
    return result;
  }
};

LocalRunner::LocalRunner(config::Runner cfg, std::filesystem::path log_dir, Done done,
                         std::vector<std::filesystem::path> hidden, std::filesystem::path work_dir,
                         BuildLogLimits limits, std::vector<std::chrono::milliseconds> retry_waits)
    : impl_(std::make_unique<Impl>()) {
  impl_->cfg = std::move(cfg);
  impl_->limits = limits;
  impl_->retry_waits = std::move(retry_waits);
  impl_->hidden = std::move(hidden);
  if (work_dir.empty()) {  // a directory of its own, gone with the runner
    std::error_code ec;
    std::string pattern =
        (std::filesystem::temp_directory_path(ec) / "dmzbot-builds-XXXXXX").string();
    if (mkdtemp(pattern.data())) impl_->owned_work_dir = pattern;
    impl_->work_dir = pattern;
  } else {
    impl_->work_dir = std::move(work_dir);
    impl_->recover();
  }
  impl_->log_dir = std::move(log_dir);
  impl_->done = std::move(done);
  int n = impl_->cfg.max_parallel > 0 ? impl_->cfg.max_parallel : 1;
  for (int i = 0; i < n; ++i)
    impl_->workers.emplace_back([this] {
      name_this_thread("ci-runner");
      make_this_thread_background();  // and so the builds it starts
      impl_->worker();
    });
}

LocalRunner::~LocalRunner() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
    impl_->queue.clear();
    for (auto& job : impl_->running)
      if (job->pid > 0) ::kill(-job->pid, SIGTERM);  // workers escalate to SIGKILL after 2s
  }
  impl_->cv.notify_all();
  impl_->retry_cv.notify_all();
  for (auto& t : impl_->workers) t.join();
  if (!impl_->owned_work_dir.empty()) remove_tree(impl_->owned_work_dir);
}

void LocalRunner::start(const std::string& repo, const queue::Sha& sha, Export export_tree) {
  auto job = std::make_shared<Job>();
  job->repo = repo;
  job->sha = sha;
  job->export_tree = std::move(export_tree);
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping) return;
    impl_->queue.push_back(std::move(job));
  }
  impl_->cv.notify_one();
}

void LocalRunner::cancel(const queue::Sha& sha) {
  {
    std::lock_guard lock(impl_->mu);
    std::erase_if(impl_->queue, [&](const auto& job) { return job->sha == sha; });
    for (auto& job : impl_->running) {
      if (job->sha != sha) continue;
      job->cancelled = true;
      if (job->pid > 0) ::kill(-job->pid, SIGTERM);  // its worker escalates to SIGKILL after 2s
    }
  }
  impl_->retry_cv.notify_all();  // a build waiting to be retried stops waiting
}

// A root made of /usr and /etc read-only, `dir` read-write at the same path, a private /tmp,
// /proc and /dev, and new namespaces (no network unless cfg.network). The top-level
// directories that merged-/usr systems make symlinks stay symlinks; on older layouts they are
// bound read-only like /usr.
std::vector<std::string> build_command_line(const config::Runner& cfg,
                                            const std::filesystem::path& dir,
                                            const std::vector<std::filesystem::path>& hidden) {
  std::vector<std::string> argv;
  if (cfg.sandbox == "bwrap") {
    argv = {kBwrap, "--die-with-parent", "--new-session", "--unshare-all"};
    if (cfg.network) argv.push_back("--share-net");
    argv.insert(argv.end(), {"--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"});
    for (const char* top : {"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}) {
      std::error_code ec;
      auto status = std::filesystem::symlink_status(top, ec);
      if (ec || !std::filesystem::exists(status)) continue;
      if (std::filesystem::is_symlink(status))
        argv.insert(argv.end(),
                    {"--symlink", std::filesystem::read_symlink(top, ec).string(), top});
      else
        argv.insert(argv.end(), {"--ro-bind", top, top});
    }
    for (const auto& path : hidden) {
      if (!path.is_absolute() || !(under(path, "/usr") || under(path, "/etc"))) continue;
      std::error_code ec;
      if (std::filesystem::is_directory(path, ec))
        argv.insert(argv.end(), {"--tmpfs", path.string()});
      else if (std::filesystem::exists(path, ec))
        argv.insert(argv.end(), {"--ro-bind", "/dev/null", path.string()});
    }
    argv.insert(argv.end(), {"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--bind",
                             dir.string(), dir.string(), "--chdir", dir.string(), "--setenv",
                             "HOME", dir.string(), "--setenv", "TMPDIR", "/tmp", "--"});
  }
  argv.insert(argv.end(), {"/bin/sh", "-c", cfg.command});
  return argv;
}

pid_t guard_build_group(pid_t group) {
  std::error_code ec;
  if (!std::filesystem::exists(kSetpriv, ec)) return 0;
  // The trap is taken while `wait` waits (a foreground sleep would hold it back); `kill ... 0`
  // ends the guard's own group, its sleep included.
  const std::string script =
      "trap 'kill -KILL -\"$1\" 0' TERM; while :; do sleep 3600 & wait $!; done";
  std::vector<std::string> args = {kSetpriv, "--pdeathsig",  "TERM",
                                   "--",     "/bin/sh",      "-c",
                                   script,   "dmzbot-guard", std::to_string(group)};
  std::vector<std::string> env = {"PATH=/usr/bin:/bin"};
  const int null_fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (null_fd < 0) return 0;
  pid_t pid = 0;
  const int rc = spawn_in_group(pid, args, env, "/", null_fd);
  ::close(null_fd);
  return rc == 0 ? pid : 0;
}

void end_guard(pid_t guard) {
  if (guard <= 0) return;
  ::kill(-guard, SIGKILL);  // the guard and its sleep
  while (::waitpid(guard, nullptr, 0) < 0 && errno == EINTR) {
  }
}

Status check_sandbox(const config::Runner& cfg) {
  if (cfg.sandbox != "bwrap") return Status::success();
  constexpr auto kTimeout = std::chrono::seconds(10);
  constexpr std::size_t kMaxOutput = 4096;
  std::error_code ec;
  std::string pattern = (std::filesystem::temp_directory_path(ec) / "dmzbot-probe-XXXXXX").string();
  if (ec || !mkdtemp(pattern.data()))
    return unavailable(std::string("cannot create a directory to probe the build sandbox: ") +
                       std::strerror(errno));
  TempDirGuard dir{pattern};
  config::Runner probe = cfg;
  probe.command = "true";
  std::vector<std::string> args = build_command_line(probe, dir.path, {});
  std::vector<std::string> env = build_environment();
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0)
    return unavailable(std::string("cannot probe the build sandbox: ") + std::strerror(errno));
  pid_t pid = 0;
  int rc = spawn_in_group(pid, args, env, dir.path, out[1]);
  ::close(out[1]);
  if (rc != 0) {
    ::close(out[0]);
    return unavailable("cannot start " + args[0] + ": " + std::strerror(rc) +
                       (rc == ENOENT ? " (bubblewrap is not installed)" : ""));
  }

  // Its output until it closes the pipe, bounded in size and time; then its exit status.
  const auto deadline = Clock::now() + kTimeout;
  std::string output;
  bool timed_out = false;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{out[0], POLLIN, 0};
    int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;  // the deadline check above ends it
    char buf[512];
    ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (output.size() < kMaxOutput)
      output.append(buf, std::min(static_cast<std::size_t>(n), kMaxOutput - output.size()));
  }
  ::close(out[0]);
  if (timed_out) ::kill(-pid, SIGKILL);
  for (;;) {
    // WNOWAIT: the exited leader stays a zombie, so its group id is not reused before the
    // group is killed below.
    siginfo_t info{};
    if (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == pid)
      break;
    if (!timed_out && Clock::now() >= deadline) {
      timed_out = true;
      ::kill(-pid, SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(-pid, SIGKILL);  // anything it left in its group
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out)
    return unavailable("the build sandbox (bubblewrap) did not run `true` within " +
                       std::to_string(kTimeout.count()) + "s");
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return Status::success();
  std::string said = output.substr(0, output.find('\n'));
  if (said.empty())
    said = WIFEXITED(status) ? "exit code " + std::to_string(WEXITSTATUS(status))
                             : "killed by signal " + std::to_string(WTERMSIG(status));
  return unavailable("the build sandbox (bubblewrap) does not work here: " + said);
}

std::filesystem::path LocalRunner::log_file(const queue::Sha& sha) const {
  return impl_->log_file(sha);
}

std::size_t LocalRunner::prune_logs(std::chrono::seconds older_than) {
  return impl_->prune_logs(older_than);
}

std::string build_log_url(const std::string& repo, const queue::Sha& sha) {
  return "/api/v1/repos/" + repo + "/logs/" + sha;
}

Result<std::optional<std::string>> read_build_log(const std::filesystem::path& log_dir,
                                                  const queue::Sha& sha, std::size_t max_bytes) {
  const std::filesystem::path path = log_path(log_dir, sha);
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f && errno == ENOENT) return std::optional<std::string>();
  if (!f) return unavailable("cannot open " + path.string() + ": " + std::strerror(errno));
  std::string out;
  long size = std::fseek(f, 0, SEEK_END) == 0 ? std::ftell(f) : -1;
  if (size > 0 && static_cast<std::size_t>(size) > max_bytes) {
    out = "[dmzbot] log cut: showing the last " + std::to_string(max_bytes) + " of " +
          std::to_string(size) + " bytes\n";
    std::fseek(f, size - static_cast<long>(max_bytes), SEEK_SET);
  } else {
    std::fseek(f, 0, SEEK_SET);
  }
  char chunk[16 * 1024];
  std::size_t budget = max_bytes, n;
  while (budget > 0 && (n = std::fread(chunk, 1, std::min(sizeof chunk, budget), f)) > 0) {
    out.append(chunk, n);
    budget -= n;
  }
  const bool failed = std::ferror(f) != 0;
  const int error = errno;
  std::fclose(f);
  if (failed) return unavailable("cannot read " + path.string() + ": " + std::strerror(error));
  return std::optional<std::string>(std::move(out));
}

}  // namespace dmz

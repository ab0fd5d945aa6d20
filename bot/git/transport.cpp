// The `git` command as dmzbot's transport (see transport.hpp for the contract).
//
// Why the git command and not libgit2 (1.5): libgit2's transports have no timeouts, and git
// brings the protocol features we need (--force-with-lease checked by the server,
// --atomic, push certificates, protocol v2) with the credential and ssh handling every forge
// is tested against.
//
// How a secret reaches git: the token is written once into a sealed memfd; each git child
// gets it as fd 3 (the only fd besides 0-2) and GIT_ASKPASS points at a script that prints
// the username for git's "Username for '<remote>'" prompt and `cat /proc/self/fd/3` for its
// "Password for '<scheme>://<user>@<host>'" prompt, when they name the configured remote's
// scheme and host, and nothing for any other (opening /proc/self/fd/N of a memfd starts at
// offset 0, so every prompt gets it whole). The token is never in argv, in the child's
// environment or in a file. It goes only over https (or http to this machine), and git
// follows no redirect (http.followRedirects=false): with git's default it would follow the
// first request's redirect to another host and ask for that host's password.
#include "bot/git/transport.hpp"

#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <set>
#include <utility>

#include "base/file.hpp"
#include "base/git_remote.hpp"
#include "base/text.hpp"

namespace dmz::git {
namespace {

using Clock = std::chrono::steady_clock;

// The fd number at which a git child finds the token (the askpass script reads it).
constexpr int kSecretFd = 3;
constexpr size_t kStderrTail = 8 * 1024;         // what is kept of git's stderr
constexpr size_t kMessageTail = 2 * 1024;        // what of it goes into an error message
constexpr size_t kMaxStdout = 16 * 1024 * 1024;  // porcelain / ls-remote output
constexpr auto kDrainAfterKill = std::chrono::seconds(5);
// Between SIGTERM and SIGKILL at the deadline: git removes its *.lock files when terminated,
// not when killed, and a lock left behind makes every later update of that ref fail.
constexpr auto kTermGrace = std::chrono::seconds(2);

constexpr const char* kAskpassName = "askpass.sh";
// Written into the scratch directory (again if it differs); holds no secret. The prompts it
// answers come from the environment (Impl::environment), with their closing quote: a prompt
// for another host or port gets nothing, and git fails as unauthenticated.
constexpr const char* kAskpassScript =
    "#!/bin/sh\n"
    "# dmzbot's askpass helper: the username, and the token (from the memfd git inherited as\n"
    "# fd 3), only for the configured remote's own host; nothing for any other.\n"
    "case \"$1\" in\n"
    "\"$DMZBOT_GIT_USERNAME_PROMPT\"*) printf '%s\\n' \"$DMZBOT_GIT_USERNAME\" ;;\n"
    "\"$DMZBOT_GIT_PASSWORD_PROMPT\"*) exec cat /proc/self/fd/3 ;;\n"
    "*) printf 'dmzbot askpass: no credentials for: %s\\n' \"$1\" >&2; exit 1 ;;\n"
    "esac\n";

// "https://host:port" of an http(s) URL: how git names the remote in its prompts.
std::string url_origin(const std::string& url) {
  const size_t sep = url.find("://");
  if (sep == std::string::npos) return "";
  const size_t end = url.find_first_of("/?#", sep + 3);
  return ascii_lower(url.substr(0, sep)) + "://" + url.substr(sep + 3, end - sep - 3);
}

bool has_control_chars(const std::string& s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

// git check-ref-format's rules for a full ref name ("refs/..."), so that a bad name is our
// `invalid` and never reaches git's command line as something else.
bool valid_ref_name(const std::string& ref) {
  if (ref.rfind("refs/", 0) != 0 || ref.size() <= 5) return false;
  if (has_control_chars(ref) || ref.find_first_of(" ~^:?*[\\") != std::string::npos) return false;
  if (ref.find("..") != std::string::npos || ref.find("@{") != std::string::npos) return false;
  if (ref.find("//") != std::string::npos || ref.back() == '/' || ref.back() == '.') return false;
  size_t start = 0;
  while (start <= ref.size()) {
    size_t end = ref.find('/', start);
    if (end == std::string::npos) end = ref.size();
    std::string_view part(ref.data() + start, end - start);
    if (part.empty() || part.front() == '.' || part.front() == '-') return false;
    if (part.size() >= 5 && part.substr(part.size() - 5) == ".lock") return false;
    start = end + 1;
  }
  return true;
}

bool valid_refspec(const std::string& spec) {
  return !spec.empty() && spec.front() != '-' && !has_control_chars(spec) &&
         spec.find(' ') == std::string::npos;
}

// The last lines of git's stderr for an error message: redacted, hints and blank lines
// dropped, joined with " | ", at most kMessageTail characters.
std::string stderr_summary(const std::string& err, const std::string& secret) {
  std::string text = redact(err, secret);
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    start = end + 1;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty() || line.rfind("hint:", 0) == 0) continue;
    lines.push_back(std::move(line));
  }
  std::string out;
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    if (out.size() + it->size() > kMessageTail) break;
    out = out.empty() ? *it : *it + " | " + out;
  }
  return out;
}

// An fd number >= 10 with FD_CLOEXEC, so that the child's dup2s to 0..3 never collide with it.
int high_fd(int fd) {
  if (fd < 0 || fd >= 10) return fd;
  int high = ::fcntl(fd, F_DUPFD_CLOEXEC, 10);
  ::close(fd);
  return high;
}

// `name` if it has a slash, else its first executable file in PATH ("" if none): resolved
// before fork, as the child may only make async-signal-safe calls.
std::string find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  std::string dirs = path && *path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string dir = dirs.substr(start, end - start);
    start = end + 1;
    std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0)
      return candidate;
  }
  return "";
}

struct GitRun {
  int exit_code = -1;  // -1: killed by a signal
  bool timed_out = false;
  bool stdout_overflow = false;
  std::string out;
  std::string err;  // the last kStderrTail bytes
};

std::string seconds_text(std::chrono::seconds s) { return std::to_string(s.count()) + " s"; }

// What the child of vfork needs, gathered before it runs: it shares the parent's memory and
// may only make system calls until execve.
struct ChildSetup {
  pid_t parent;
  int null_fd, out_fd, err_fd, exec_fd, secret_fd, keep_below;
  long max_fd;
  const char* program;
  char* const* argv;
  char* const* envp;
};

[[noreturn]] void exec_child(const ChildSetup& c) noexcept {
  ::setpgid(0, 0);  // its own process group: a deadline kills it all
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != c.parent) ::_exit(127);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);  // e.g. SIGPIPE
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::dup2(c.null_fd, 0);
  ::dup2(c.out_fd, 1);
  ::dup2(c.err_fd, 2);
  if (c.secret_fd >= 0) ::dup2(c.secret_fd, kSecretFd);
  // Nothing else crosses execve.
  if (::syscall(SYS_close_range, c.keep_below, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
    for (long fd = c.keep_below; fd < c.max_fd; ++fd)
      ::fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC);
  ::execve(c.program, c.argv, c.envp);
  int e = errno;
  [[maybe_unused]] ssize_t n = ::write(c.exec_fd, &e, sizeof e);
  ::_exit(127);
}

}  // namespace

std::string redact(std::string text, const std::string& secret) {
  if (!secret.empty()) {
    for (size_t pos = 0; (pos = text.find(secret, pos)) != std::string::npos;) {
      text.replace(pos, secret.size(), "***");
      pos += 3;
    }
  }
  for (size_t pos = 0; (pos = text.find("://", pos)) != std::string::npos;) {
    size_t scheme_start = pos;
    while (scheme_start > 0 && (std::isalnum(static_cast<unsigned char>(text[scheme_start - 1])) ||
                                text[scheme_start - 1] == '+'))
      --scheme_start;
    bool http = ascii_lower(text.substr(scheme_start, pos - scheme_start)).rfind("http", 0) == 0;
    size_t start = pos + 3;
    size_t end = text.find_first_of("/ \t\r\n'\"<>", start);
    if (end == std::string::npos) end = text.size();
    size_t at = end > start ? text.rfind('@', end - 1) : std::string::npos;
    if (at != std::string::npos && at >= start) {
      // http(s): a user part alone may be a token (https://<token>@host), so all of it goes.
      size_t colon = text.find(':', start);
      size_t from = http ? start : (colon < at ? colon + 1 : at);
      if (from < at && text.compare(from, at - from, "***") != 0) {
        text.replace(from, at - from, "***");
        end = from + 3 + (end - at);
      }
    }
    pos = start;
  }
  return text;
}

bool PushOutcome::ok() const {
  return std::all_of(refs.begin(), refs.end(), [](const RefResult& r) { return r.ok(); });
}

struct Transport::Impl {
  std::filesystem::path git_dir;
  TransportOptions opt;
  GitRemote scheme = GitRemote::kLocal;
  std::string display_url;
  int secret_fd = -1;        // the sealed memfd holding the token; -1 without a token
  bool interrupted = false;  // a run was stopped at its deadline since locks_cleared()

  ~Impl() {
    if (secret_fd >= 0) ::close(secret_fd);
  }

  std::chrono::seconds total_timeout() const {
    return opt.operation_timeout.count() > 0 ? opt.operation_timeout : opt.network_timeout * 10;
  }

  // The scratch directory, private to us, with the askpass helper in it.
  Status prepare_scratch() {
    const auto& dir = opt.scratch_dir;
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return unavailable("create " + dir.string() + ": " + ec.message());
    struct stat st {};
    if (::lstat(dir.c_str(), &st) < 0)
      return unavailable("stat " + dir.string() + ": " + std::strerror(errno));
    if (!S_ISDIR(st.st_mode) || st.st_uid != ::geteuid())
      return permission_denied(dir.string() + " is not a directory of this user");
    if ((st.st_mode & 077) != 0 && ::chmod(dir.c_str(), 0700) < 0)
      return unavailable("chmod 0700 " + dir.string() + ": " + std::strerror(errno));
    if (opt.token.empty() && !opt.token_source) return {};
    auto script = dir / kAskpassName;
    // An older dmzbot's script (which answered any host) is replaced.
    if (auto current = read_regular_file(script, 4096);
        ::access(script.c_str(), X_OK) == 0 && current && *current == kAskpassScript)
      return {};
    auto tmp = dir / (std::string(kAskpassName) + ".tmp");
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0700);
    if (fd < 0) return unavailable("create " + tmp.string() + ": " + std::strerror(errno));
    std::string_view text(kAskpassScript);
    bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    if (::close(fd) < 0 || !written || ::rename(tmp.c_str(), script.c_str()) < 0)
      return unavailable("write " + script.string() + ": " + std::strerror(errno));
    return {};
  }

  std::vector<std::string> environment() const {
    const char* path = std::getenv("PATH");
    std::vector<std::string> env = {
        std::string("PATH=") + (path && *path ? path : "/usr/local/bin:/usr/bin:/bin"),
        "HOME=" + opt.scratch_dir.string(),
        "LANG=C",
        "LC_ALL=C",
        "GIT_TERMINAL_PROMPT=0",
        "GIT_CONFIG_NOSYSTEM=1",
        "GIT_CONFIG_GLOBAL=/dev/null",
    };
    // The operator's network settings (proxies, CA bundles) and where temporary files go.
    for (const char* name : {"http_proxy", "https_proxy", "no_proxy", "all_proxy", "HTTP_PROXY",
                             "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "SSL_CERT_FILE",
                             "SSL_CERT_DIR", "GIT_SSL_CAINFO", "GIT_SSL_CAPATH", "TMPDIR"})
      if (const char* value = std::getenv(name);
          value && (opt.ca_file.empty() || std::string_view(name) != "GIT_SSL_CAINFO"))
        env.push_back(std::string(name) + "=" + value);
    // The remote's own CA: in the environment, which git ranks above its configuration.
    if (!opt.ca_file.empty()) env.push_back("GIT_SSL_CAINFO=" + opt.ca_file.string());
    // The token answers only an http(s) remote's prompts: a local, file, git or ssh remote has
    // no origin for the askpass check (and needs no password).
    if (!opt.token.empty() && scheme == GitRemote::kHttp) {
      // git's prompts for the remote's own scheme, host and port (git 2.39 asks "Username
      // for 'https://github.com': ", then "Password for 'https://USER@github.com': ").
      const std::string origin = url_origin(opt.url);
      const size_t host = origin.find("://") + 3;
      env.push_back("GIT_ASKPASS=" + (opt.scratch_dir / kAskpassName).string());
      env.push_back("DMZBOT_GIT_USERNAME=" + opt.username);
      env.push_back("DMZBOT_GIT_USERNAME_PROMPT=Username for '" + origin + "'");
      env.push_back("DMZBOT_GIT_PASSWORD_PROMPT=Password for '" + origin.substr(0, host) +
                    opt.username + "@" + origin.substr(host) + "'");
    }
    if (scheme == GitRemote::kSsh) env.push_back("GIT_SSH_COMMAND=" + ssh_command());
    if (opt.sign_pushes && opt.sign_pushes->format == PushSigning::Format::kOpenPgp &&
        !opt.sign_pushes->gnupg_home.empty())
      env.push_back("GNUPGHOME=" + opt.sign_pushes->gnupg_home.string());
    return env;
  }

  // ssh run by git (through /bin/sh, hence the quoting): no user or system ssh config, never
  // a prompt, strict host keys, bounded connect and keepalives.
  std::string ssh_command() const {
    long t = std::max<long>(1, opt.network_timeout.count());
    long alive = std::max<long>(1, t / 3);
    std::string cmd = "ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes";
    cmd += " -o UpdateHostKeys=no -o ConnectTimeout=" + std::to_string(t);
    cmd += " -o ServerAliveInterval=" + std::to_string(alive) + " -o ServerAliveCountMax=3";
    if (!opt.ssh_key.empty())
      cmd += " -o IdentitiesOnly=yes -o IdentityFile=" + sh_quote(opt.ssh_key.string());
    if (!opt.known_hosts.empty())
      cmd += " -o UserKnownHostsFile=" + sh_quote(opt.known_hosts.string()) +
             " -o GlobalKnownHostsFile=/dev/null";
    return cmd;
  }

  // git's argv up to the subcommand: the repository and the settings that hold for every
  // operation (only the transports we support, no credential helpers, stall detection, no
  // redirects: a token must not follow one to another host).
  std::vector<std::string> git_prefix() const {
    std::vector<std::string> a = {opt.git_program, "--git-dir=" + git_dir.string()};
    for (const char* c :
         {"protocol.allow=never", "protocol.file.allow=always", "protocol.git.allow=always",
          "protocol.http.allow=always", "protocol.https.allow=always", "protocol.ssh.allow=always",
          "credential.helper=", "core.askPass=", "http.followRedirects=false",
          "http.lowSpeedLimit=1"}) {
      a.push_back("-c");
      a.push_back(c);
    }
    a.push_back("-c");
    a.push_back("http.lowSpeedTime=" +
                std::to_string(std::max<long>(1, opt.network_timeout.count())));
    return a;
  }

  // Puts `token` into a fresh sealed memfd, which replaces the one held before.
  Status seal_token(const std::string& token) {
    int fd = ::memfd_create("dmzbot-token", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return internal(std::string("memfd_create: ") + std::strerror(errno));
    fd = high_fd(fd);
    if (::write(fd, token.data(), token.size()) != static_cast<ssize_t>(token.size())) {
      ::close(fd);
      return internal(std::string("write token memfd: ") + std::strerror(errno));
    }
    // Read-only from now on, for us and for every child that inherits it.
    if (::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
      ::close(fd);
      return internal(std::string("seal token memfd: ") + std::strerror(errno));
    }
    if (secret_fd >= 0) ::close(secret_fd);
    secret_fd = fd;
    return {};
  }

  // A token that changes (a GitHub App's installation token): asked for before each run.
  Status refresh_token() {
    if (!opt.token_source) return {};
    auto token = opt.token_source();
    if (!token) return token.status().prefixed("the remote's token: ");
    if (*token == opt.token) return {};
    if (token->empty() || has_control_chars(*token))
      return invalid("the remote's token is empty or has control characters");
    if (Status s = seal_token(*token); !s.ok()) return s;
    opt.token = *token;
    return {};
  }

  // Runs git with `args` after the common prefix, under the total deadline.
  Result<GitRun> run(const std::vector<std::string>& args) {
    if (Status s = refresh_token(); !s.ok()) return s.error();
    if (Status s = prepare_scratch(); !s.ok()) return s.error();
    std::vector<std::string> argv_strings = git_prefix();
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<std::string> env_strings = environment();
    std::vector<char*> argv, envp;
    for (auto& s : argv_strings) argv.push_back(s.data());
    argv.push_back(nullptr);
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);

    std::string program = find_program(opt.git_program);
    if (program.empty()) return internal("cannot run " + opt.git_program + ": not found in PATH");
    // Every fd the child dup2s from is >= 10 and close-on-exec.
    int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1}, exec_pipe[2] = {-1, -1};
    int null_fd = high_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    bool ok = null_fd >= 0 && ::pipe2(out_pipe, O_CLOEXEC) == 0 &&
              ::pipe2(err_pipe, O_CLOEXEC) == 0 && ::pipe2(exec_pipe, O_CLOEXEC) == 0;
    int saved_errno = errno;
    int* all_fds[] = {&out_pipe[0], &out_pipe[1],  &err_pipe[0],
                      &err_pipe[1], &exec_pipe[0], &exec_pipe[1]};
    for (int* fd : all_fds) *fd = high_fd(*fd);
    auto close_all = [&] {
      for (int* fd : all_fds)
        if (*fd >= 0) ::close(std::exchange(*fd, -1));
      if (null_fd >= 0) ::close(std::exchange(null_fd, -1));
    };
    if (!ok) {
      close_all();
      return internal(std::string("pipe: ") + std::strerror(saved_errno));
    }
    const ChildSetup child{::getpid(),
                           null_fd,
                           out_pipe[1],
                           err_pipe[1],
                           exec_pipe[1],
                           secret_fd,
                           secret_fd >= 0 ? kSecretFd + 1 : 3,
                           ::sysconf(_SC_OPEN_MAX),
                           program.c_str(),
                           argv.data(),
                           envp.data()};
    const auto started = Clock::now();
    // vfork rather than posix_spawn: only a child we start ourselves can ask to be killed when
    // we die (PR_SET_PDEATHSIG), so that git does not go on fetching into the mirror after a
    // crash. And vfork rather than fork: fork copies the page tables of this multi-threaded
    // process and write-protects its memory, so every other thread stalls on the memory map
    // lock and then on copy-on-write faults (measured with webhook_bench: with a fetch for
    // every few deliveries, the 202s waited over a second). The child shares our memory until
    // execve, so it makes only system calls, on its own frame, with every signal blocked until
    // its handlers are back to the defaults (as glibc's posix_spawn does).
    sigset_t all_signals, old_mask;
    sigfillset(&all_signals);
    ::pthread_sigmask(SIG_SETMASK, &all_signals, &old_mask);
    const pid_t pid = ::vfork();
    if (pid == 0) exec_child(child);
    saved_errno = errno;  // vfork's when it failed (the child may have set it otherwise)
    ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    ::close(std::exchange(out_pipe[1], -1));
    ::close(std::exchange(err_pipe[1], -1));
    ::close(std::exchange(exec_pipe[1], -1));
    ::close(std::exchange(null_fd, -1));
    if (pid < 0) {
      close_all();
      return internal(std::string("vfork: ") + std::strerror(saved_errno));
    }
    int exec_errno = 0;
    ssize_t got_errno;
    while ((got_errno = ::read(exec_pipe[0], &exec_errno, sizeof exec_errno)) < 0 &&
           errno == EINTR) {
    }
    ::close(std::exchange(exec_pipe[0], -1));
    if (got_errno > 0) {
      int status = 0;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      close_all();
      return internal("cannot run " + program + ": " + std::strerror(exec_errno));
    }

    GitRun r;
    const auto deadline = started + total_timeout();
    const auto kill_at = deadline + kTermGrace;
    const auto give_up = kill_at + kDrainAfterKill;
    bool killed = false;
    int fds[2] = {std::exchange(out_pipe[0], -1), std::exchange(err_pipe[0], -1)};
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));  // -1: poll waitid instead
    bool exited = false, reaped_elsewhere = false;
    char buf[64 * 1024];
    while (fds[0] >= 0 || fds[1] >= 0 || !exited) {
      auto now = Clock::now();
      if (!exited) {
        siginfo_t info{};
        // WNOWAIT: the exited leader stays a zombie, so its pid (= the group id) is not
        // reused before the group is killed below.
        int waited = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT);
        if (waited == 0 && info.si_pid == pid) {
          exited = true;
          // git waits for its own helpers; anything left in the group is of no use now.
          ::kill(-pid, SIGKILL);
          continue;
        }
        if (waited < 0 && errno == ECHILD) {  // reaped elsewhere: its pid may be reused
          exited = reaped_elsewhere = true;
          continue;
        }
        if (!r.timed_out && now >= deadline) {
          r.timed_out = true;
          interrupted = true;
          ::kill(-pid, SIGTERM);
        } else if (r.timed_out && !killed && now >= kill_at) {
          killed = true;
          ::kill(-pid, SIGKILL);
        }
      }
      // Pipes held open by something outside the group: stop reading.
      if (now >= give_up) break;
      pollfd p[3];
      int n = 0;
      for (int fd : fds)
        if (fd >= 0) p[n++] = {fd, POLLIN, 0};
      if (!exited && pidfd >= 0) p[n++] = {pidfd, POLLIN, 0};
      auto limit = (exited || killed) ? give_up : r.timed_out ? kill_at : deadline;
      long wait_ms = std::max<long>(
          0, std::chrono::duration_cast<std::chrono::milliseconds>(limit - now).count() + 1);
      if (!exited && pidfd < 0) wait_ms = std::min<long>(wait_ms, 50);
      if (::poll(p, n, static_cast<int>(std::min<long>(wait_ms, 60'000))) < 0 && errno != EINTR)
        break;
      for (int i = 0; i < 2; ++i) {
        if (fds[i] < 0) continue;
        bool ready = false;
        for (int j = 0; j < n; ++j)
          if (p[j].fd == fds[i] && p[j].revents != 0) ready = true;
        if (!ready) continue;
        ssize_t got = ::read(fds[i], buf, sizeof buf);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
          ::close(fds[i]);
          fds[i] = -1;
          continue;
        }
        if (i == 0) {
          if (r.out.size() + static_cast<size_t>(got) > kMaxStdout)
            r.stdout_overflow = true;
          else
            r.out.append(buf, static_cast<size_t>(got));
        } else {
          r.err.append(buf, static_cast<size_t>(got));
          if (r.err.size() > 2 * kStderrTail) r.err.erase(0, r.err.size() - kStderrTail);
        }
      }
    }
    for (int fd : fds)
      if (fd >= 0) ::close(fd);
    if (pidfd >= 0) ::close(pidfd);
    if (!exited) ::kill(-pid, SIGKILL);
    int status = -1;  // not an exit status: "killed"
    while (!reaped_elsewhere && ::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (r.err.size() > kStderrTail) r.err.erase(0, r.err.size() - kStderrTail);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
  }

  // A git run that failed to talk to the remote, as an error with a code. git tells why only
  // in words on stderr (its exit code is 128 for every fatal error), so its and ssh's fixed
  // messages (LANG=C: untranslated) are what we can go by.
  Error failure(const std::string& op, const GitRun& r) const {
    const std::string what = op + " " + display_url;
    std::string said = stderr_summary(r.err, opt.token);
    std::string detail = said.empty() ? "" : "; git: " + said;
    if (r.timed_out)
      return unavailable(what + ": no answer within " + seconds_text(total_timeout()) +
                         ", git stopped" + detail);
    auto has = [&](const char* s) { return r.err.find(s) != std::string::npos; };
    if (has("Host key verification failed") || has("REMOTE HOST IDENTIFICATION HAS CHANGED"))
      return unauthenticated("host key verification failed for " + display_url + " (" +
                             (opt.known_hosts.empty()
                                  ? std::string("not in ssh's known_hosts files")
                                  : "not the key pinned in " + opt.known_hosts.string()) +
                             ")" + detail);
    if (has("Permission denied (") || has("Permission denied, please try again"))
      return unauthenticated(
          "authentication failed for " + display_url +
          (opt.ssh_key.empty() ? " (no ssh key configured)" : " (ssh key rejected)") + detail);
    if (has("Authentication failed for") || has("returned error: 401") ||
        has("could not read Username") || has("could not read Password"))
      return unauthenticated("authentication failed for " + display_url +
                             (opt.token.empty() ? " (no token configured)" : " (token rejected)") +
                             detail);
    if (has("returned error: 30"))  // curl's words for a redirect it was told not to follow
      return unavailable(what + ": the remote redirects, and dmzbot follows no redirect (the " +
                         "token must not go to another host): configure where it redirects to" +
                         detail);
    if (has("returned error: 403"))
      return permission_denied(what + ": access denied (HTTP 403)" + detail);
    if (has("does not appear to be a git repository") || has("returned error: 404") ||
        has("Repository not found"))
      return not_found(what + ": no such repository" + detail);
    if (r.stdout_overflow) return internal(what + ": more output than expected from git");
    std::string how = r.exit_code >= 0 ? "git exited with " + std::to_string(r.exit_code)
                                       : std::string("git was killed");
    return unavailable(what + ": " + how + detail);
  }
};

Transport::Transport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Transport::~Transport() = default;

const std::string& Transport::display_url() const { return impl_->display_url; }

Result<std::unique_ptr<Transport>> Transport::create(const std::filesystem::path& git_dir,
                                                     TransportOptions options) {
  auto impl = std::make_unique<Impl>();
  auto scheme = classify_git_remote(options.url);
  if (!scheme) return scheme.error();
  impl->scheme = *scheme;
  impl->display_url = redact(options.url, options.token);
  if (options.network_timeout.count() <= 0) return invalid("network_timeout must be positive");
  if (options.operation_timeout.count() < 0) return invalid("operation_timeout is negative");
  if (has_control_chars(options.username) || options.username.find(':') != std::string::npos)
    return invalid("bad HTTP username");
  if (has_control_chars(options.token)) return invalid("the token has control characters");
  // Plain http would show the token to anyone on the way; on this machine it crosses no network.
  if ((!options.token.empty() || options.token_source) && !token_may_go_to(options.url))
    return invalid("a token goes only over https: the remote " + impl->display_url +
                   " is plain http");
  for (const auto& file : {options.ssh_key, options.known_hosts}) {
    std::error_code ec;
    if (!file.empty() && !std::filesystem::is_regular_file(file, ec))
      return invalid("no such file: " + file.string());
  }
  for (const auto& spec : options.fetch_refspecs)
    if (!valid_refspec(spec)) return invalid("bad fetch refspec '" + spec + "'");
  if (options.fetch_refspecs.empty()) return invalid("no fetch refspecs");
  if (options.git_program.empty()) return invalid("no git program");
  if (options.sign_pushes) {
    const auto& s = *options.sign_pushes;
    if (s.key.empty() || has_control_chars(s.key)) return invalid("bad push signing key");
  }
  if (options.scratch_dir.empty()) options.scratch_dir = git_dir / "dmzbot-transport";
  options.scratch_dir = std::filesystem::absolute(options.scratch_dir);
  impl->git_dir = std::filesystem::absolute(git_dir);
  if (!options.token.empty())
    if (Status s = impl->seal_token(options.token); !s.ok()) return s.error();
  impl->opt = std::move(options);
  return std::unique_ptr<Transport>(new Transport(std::move(impl)));
}

Status Transport::fetch() {
  std::vector<std::string> args = {"fetch",
                                   "--quiet",
                                   "--prune",
                                   "--no-tags",
                                   "--no-write-fetch-head",
                                   "--no-auto-gc",
                                   "--no-recurse-submodules",
                                   "--no-show-forced-updates",
                                   "--",
                                   impl_->opt.url};
  args.insert(args.end(), impl_->opt.fetch_refspecs.begin(), impl_->opt.fetch_refspecs.end());
  auto r = impl_->run(args);
  if (!r) return r.error();
  if (r->exit_code != 0 || r->timed_out) return impl_->failure("fetch", *r);
  return {};
}

bool Transport::may_have_left_locks() const { return impl_->interrupted; }
void Transport::locks_cleared() { impl_->interrupted = false; }

Status Transport::gc() {
  // In the foreground (a detached gc leaves the process group, out of the deadline's reach),
  // keeping every reflog: `dmzbot verify --releases` audits what the branches ever held.
  auto r = impl_->run({"-c", "gc.autoDetach=false", "-c", "gc.reflogExpire=never", "-c",
                       "gc.reflogExpireUnreachable=never", "gc", "--auto", "--quiet"});
  if (!r) return r.status();
  if (r->timed_out)
    return unavailable("git gc: not done within " + seconds_text(impl_->total_timeout()));
  if (r->exit_code != 0)
    return unavailable("git gc failed: " + stderr_summary(r->err, impl_->opt.token));
  return {};
}

Result<PushOutcome> Transport::push(const std::vector<RefUpdate>& updates) {
  PushOutcome outcome;
  if (updates.empty()) return outcome;
  std::set<std::string> seen;
  std::vector<std::string> args = {"push", "--porcelain", "--no-verify"};
  std::vector<std::string> specs;
  for (const auto& u : updates) {
    if (!valid_ref_name(u.ref)) return invalid("bad ref name '" + u.ref + "'");
    if (!seen.insert(u.ref).second) return invalid("ref " + u.ref + " is updated twice");
    if (!u.new_sha.empty() && !is_object_id(u.new_sha))
      return invalid("bad sha '" + u.new_sha + "' for " + u.ref);
    if (u.expected_old && !u.expected_old->empty() && !is_object_id(*u.expected_old))
      return invalid("bad expected sha '" + *u.expected_old + "' for " + u.ref);
    if (u.expected_old) {
      args.push_back("--force-with-lease=" + u.ref + ":" + *u.expected_old);
      specs.push_back(u.new_sha + ":" + u.ref);
    } else {
      specs.push_back("+" + u.new_sha + ":" + u.ref);
    }
  }
  if (updates.size() > 1) args.push_back("--atomic");
  if (impl_->opt.sign_pushes) args.push_back("--signed=if-asked");
  if (const auto& s = impl_->opt.sign_pushes) {
    bool ssh = s->format == PushSigning::Format::kSsh;
    std::vector<std::string> config = {ssh ? "gpg.format=ssh" : "gpg.format=openpgp",
                                       "user.signingKey=" + s->key};
    if (!s->program.empty())
      config.push_back((ssh ? "gpg.ssh.program=" : "gpg.program=") + s->program);
    // `-c` options belong before the subcommand.
    for (auto it = config.rbegin(); it != config.rend(); ++it) {
      args.insert(args.begin(), *it);
      args.insert(args.begin(), "-c");
    }
  }
  args.push_back("--");
  args.push_back(impl_->opt.url);
  args.insert(args.end(), specs.begin(), specs.end());
  auto r = impl_->run(args);
  if (!r) return r.error();

  // --porcelain: "<flag>\t<from>:<to>\t<summary>" per ref, flag one of ' ' '+' '-' '*' '=' '!'.
  std::map<std::string, RefResult> by_ref;
  size_t start = 0;
  const std::string& out = r->out;
  while (start < out.size()) {
    size_t end = out.find('\n', start);
    if (end == std::string::npos) end = out.size();
    std::string line = out.substr(start, end - start);
    start = end + 1;
    size_t tab1 = line.find('\t');
    if (tab1 != 1) continue;  // "To <url>", "Done"
    size_t tab2 = line.find('\t', tab1 + 1);
    if (tab2 == std::string::npos) continue;
    std::string spec = line.substr(tab1 + 1, tab2 - tab1 - 1);
    size_t colon = spec.rfind(':');
    if (colon == std::string::npos) continue;
    RefResult res;
    res.ref = spec.substr(colon + 1);
    res.summary = line.substr(tab2 + 1);
    switch (line[0]) {
      case ' ':
      case '+':
      case '-':
      case '*':
        res.status = RefStatus::kUpdated;
        break;
      case '=':
        res.status = RefStatus::kUpToDate;
        break;
      default:
        if (res.summary.rfind("[remote rejected]", 0) == 0)
          res.status = RefStatus::kRemoteRejected;
        else if (res.summary.find("(stale info)") != std::string::npos)
          res.status = RefStatus::kStale;
        else if (res.summary.find("(non-fast-forward)") != std::string::npos ||
                 res.summary.find("(fetch first)") != std::string::npos)
          res.status = RefStatus::kNonFastForward;
        else
          res.status = RefStatus::kRejected;
    }
    by_ref[res.ref] = res;
  }
  for (const auto& u : updates) {
    auto it = by_ref.find(u.ref);
    // A ref git said nothing about: the push did not get through.
    if (it == by_ref.end() || r->timed_out) return impl_->failure("push to", *r);
    outcome.refs.push_back(it->second);
  }
  std::string remote = redact(r->err, impl_->opt.token);
  for (size_t pos = 0; pos < remote.size();) {
    size_t end = remote.find('\n', pos);
    if (end == std::string::npos) end = remote.size();
    std::string line = remote.substr(pos, end - pos);
    pos = end + 1;
    if (line.rfind("remote: ", 0) != 0) continue;
    line = line.substr(8);
    // The server pads lines and clears to the end of line (ESC [K) for terminals.
    if (size_t esc = line.find('\x1b'); esc != std::string::npos) line.erase(esc);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.pop_back();
    if (line.empty()) continue;
    outcome.remote_messages += (outcome.remote_messages.empty() ? "" : "\n") + line;
  }
  return outcome;
}

Result<std::map<std::string, Sha>> Transport::ls_remote(const std::vector<std::string>& refs) {
  std::map<std::string, Sha> out;
  if (refs.empty()) return out;
  std::vector<std::string> args = {"ls-remote", "--", impl_->opt.url};
  for (const auto& ref : refs) {
    if (!valid_ref_name(ref)) return invalid("bad ref name '" + ref + "'");
    args.push_back(ref);
  }
  auto r = impl_->run(args);
  if (!r) return r.error();
  if (r->exit_code != 0 || r->timed_out || r->stdout_overflow)
    return impl_->failure("ls-remote", *r);
  // Patterns match ref names by their tail: keep the exact names only.
  std::set<std::string> wanted(refs.begin(), refs.end());
  size_t start = 0;
  while (start < r->out.size()) {
    size_t end = r->out.find('\n', start);
    if (end == std::string::npos) end = r->out.size();
    std::string line = r->out.substr(start, end - start);
    start = end + 1;
    size_t tab = line.find('\t');
    if (tab == std::string::npos) continue;
    std::string name = line.substr(tab + 1);
    if (wanted.count(name) && is_object_id(line.substr(0, tab))) out[name] = line.substr(0, tab);
  }
  return out;
}

}  // namespace dmz::git

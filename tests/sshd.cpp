#include "tests/sshd.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "tests/support.hpp"

namespace dmz::test {
namespace {

// A port that was free a moment ago (sshd takes a number, not 0; a lost race is retried).
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

// Whether an SSH server answers on the port: it sends its "SSH-2.0-..." banner first.
bool answers(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = false;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    pollfd p{fd, POLLIN, 0};
    char banner[8] = {};
    ok = ::poll(&p, 1, 2000) == 1 && ::recv(fd, banner, 7, 0) == 7 &&
         std::string(banner) == "SSH-2.0";
  }
  ::close(fd);
  return ok;
}

}  // namespace

bool Sshd::installed() { return ::access(kProgram, X_OK) == 0; }

Sshd::Sshd(const std::filesystem::path& dir, const std::string& authorized_key) : dir_(dir) {
  if (!installed()) return;
  std::filesystem::create_directories(dir_);
  if (passwd* pw = ::getpwuid(::geteuid())) user_ = pw->pw_name;
  // Run as root, sshd wants its privilege separation directory.
  if (::geteuid() == 0 && !std::filesystem::exists("/run/sshd")) {
    std::filesystem::create_directories("/run/sshd");
    ::chmod("/run/sshd", 0755);
  }
  auto host_key = dir_ / "host_key";
  std::filesystem::remove(host_key);
  std::filesystem::remove(dir_ / "host_key.pub");
  must("ssh-keygen -q -t ed25519 -N '' -C dmzbot-test-host -f " + shell_quote(host_key.string()));
  host_key_ = read_file(dir_ / "host_key.pub");
  while (!host_key_.empty() && host_key_.back() == '\n') host_key_.pop_back();
  write_file(dir_ / "authorized_keys", authorized_key + "\n");

  for (int attempt = 0; attempt < 5 && pid_ < 0; ++attempt) {
    port_ = free_port();
    if (port_ == 0) continue;
    write_file(dir_ / "sshd_config",
               "ListenAddress 127.0.0.1:" + std::to_string(port_) + "\n" + "HostKey " +
                   host_key.string() + "\n" +
                   "PidFile none\n"
                   "AuthorizedKeysFile " +
                   (dir_ / "authorized_keys").string() + "\n" + "AllowUsers " + user_ + "\n" +
                   "PubkeyAuthentication yes\n"
                   "PasswordAuthentication no\n"
                   "KbdInteractiveAuthentication no\n"
                   "PermitRootLogin prohibit-password\n"
                   "StrictModes no\n"  // the test's temporary directory may be group-writable
                   "UsePAM no\n"
                   "LogLevel VERBOSE\n");
    int log = ::open((dir_ / "sshd.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log < 0) return;
    std::string program = kProgram, cfg = (dir_ / "sshd_config").string();
    char d[] = "-D", e[] = "-e", f[] = "-f";
    char* argv[] = {program.data(), d, e, f, cfg.data(), nullptr};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, log, 1);
    posix_spawn_file_actions_adddup2(&actions, log, 2);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    pid_t pid = -1;
    int rc = ::posix_spawn(&pid, kProgram, &actions, &attr, argv, ::environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    ::close(log);
    if (rc != 0) return;
    pid_ = pid;
    // Up to 10 s for it to answer; it exits at once if the port was taken meanwhile.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    bool up = false;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      if (answers(port_)) {
        up = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!up) stop();
  }
}

Sshd::~Sshd() { stop(); }

void Sshd::stop() {
  if (pid_ <= 0) return;
  // Sessions run in sessions of their own (setsid) and end when their clients go.
  ::kill(-pid_, SIGTERM);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

std::string Sshd::url(const std::filesystem::path& repo) const {
  return "ssh://" + user_ + "@127.0.0.1:" + std::to_string(port_) +
         std::filesystem::absolute(repo).string();
}

std::string Sshd::known_hosts_line() const {
  return "[127.0.0.1]:" + std::to_string(port_) + " " + host_key_;
}

std::string Sshd::log() const { return read_file(dir_ / "sshd.log"); }

}  // namespace dmz::test

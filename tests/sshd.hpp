// A real OpenSSH server for tests: /usr/sbin/sshd on 127.0.0.1 on a free port, with a host key
// made at start (ssh-keygen), letting the current user log in with one public key only.
// Threading: one thread owns an Sshd; the destructor stops the server and its sessions.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>

namespace dmz::test {

class Sshd {
 public:
  static constexpr const char* kProgram = "/usr/sbin/sshd";
  static bool installed();

  // Starts sshd with its files under `dir`, authorizing `authorized_key` (a .pub line) for
  // the current user; running() says whether it answers.
  Sshd(const std::filesystem::path& dir, const std::string& authorized_key);
  ~Sshd();
  Sshd(const Sshd&) = delete;
  Sshd& operator=(const Sshd&) = delete;

  bool running() const { return pid_ > 0; }
  int port() const { return port_; }
  const std::string& user() const { return user_; }
  // ssh://<user>@127.0.0.1:<port><absolute path of repo>
  std::string url(const std::filesystem::path& repo) const;
  // The known_hosts line of this server's host key: "[127.0.0.1]:<port> ssh-ed25519 AAAA...".
  std::string known_hosts_line() const;
  // What sshd logged (for failure messages).
  std::string log() const;

 private:
  void stop();
  std::filesystem::path dir_;
  std::string user_;
  std::string host_key_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace dmz::test

// Written by hand rather than on bot/http's server: the test support library (dmz_test_main)
// links no project library, and a CGI bridge for one client at a time needs little more
// than a request parser (with chunked bodies, which git sends for pushes over
// http.postBuffer) and posix_spawn.
#include "tests/git_http.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>

#include "tests/support.hpp"

namespace dmz::test {
namespace {

constexpr size_t kMaxHead = 64 * 1024;
constexpr size_t kMaxBody = 256 * 1024 * 1024;
constexpr int kIoTimeoutSeconds = 10;
constexpr auto kBackendTimeout = std::chrono::seconds(60);

// Listens on 127.0.0.1 on a port the kernel picks.
int listen_local(int& port, std::string& error) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::string("socket: ") + std::strerror(errno);
    return -1;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 || ::listen(fd, 16) < 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) < 0) {
    error = std::string("listen on 127.0.0.1: ") + std::strerror(errno);
    ::close(fd);
    return -1;
  }
  port = ntohs(addr.sin_port);
  return fd;
}

}  // namespace

// A client's connection: the socket, and its TLS session when the server has one.
struct Conn {
  int fd;
  SSL* ssl = nullptr;
};

namespace {

bool send_all(Conn& c, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = c.ssl ? SSL_write(c.ssl, data.data(), static_cast<int>(data.size()))
                      : ::send(c.fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && !c.ssl && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Reads from a socket into a buffer, for a parser that takes lines and exact byte counts.
struct Reader {
  Conn& c;
  std::string buf;
  bool fill() {
    char chunk[64 * 1024];
    for (;;) {
      ssize_t n = c.ssl ? SSL_read(c.ssl, chunk, static_cast<int>(sizeof chunk))
                        : ::recv(c.fd, chunk, sizeof chunk, 0);
      if (n < 0 && !c.ssl && errno == EINTR) continue;
      if (n <= 0) return false;  // closed, error or SO_RCVTIMEO
      buf.append(chunk, static_cast<size_t>(n));
      return true;
    }
  }
  bool line(std::string& out) {  // up to CRLF, which is dropped
    size_t pos;
    while ((pos = buf.find("\r\n")) == std::string::npos) {
      if (buf.size() > kMaxHead || !fill()) return false;
    }
    out = buf.substr(0, pos);
    buf.erase(0, pos + 2);
    return true;
  }
  bool bytes(size_t n, std::string& out) {
    while (buf.size() < n)
      if (!fill()) return false;
    out.append(buf, 0, n);
    buf.erase(0, n);
    return true;
  }
};

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Base64 (RFC 4648) decoding of an Authorization header; "" for anything malformed.
std::string base64_decode(const std::string& in) {
  static const std::string alphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  unsigned value = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    size_t digit = alphabet.find(c);
    if (digit == std::string::npos) return "";
    value = (value << 6) | static_cast<unsigned>(digit);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((value >> bits) & 0xff);
    }
  }
  return out;
}

bool same_secret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

std::string status_text(int status) {
  switch (status) {
    case 200:
      return "200 OK";
    case 400:
      return "400 Bad Request";
    case 401:
      return "401 Unauthorized";
    default:
      return "500 Internal Server Error";
  }
}

void answer(Conn& fd, int status, const std::string& extra_headers, const std::string& body) {
  send_all(fd, "HTTP/1.1 " + status_text(status) + "\r\n" + extra_headers + "Content-Length: " +
                   std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
}

}  // namespace

GitHttpServer::GitHttpServer(std::filesystem::path base, std::string username, std::string token,
                             Tls tls)
    : base_(std::move(base)), username_(std::move(username)), token_(std::move(token)) {
  if (!tls.cert.empty()) {
    tls_ = SSL_CTX_new(TLS_server_method());
    if (!tls_ || SSL_CTX_use_certificate_chain_file(tls_, tls.cert.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(tls_, tls.key.c_str(), SSL_FILETYPE_PEM) != 1) {
      error_ = "TLS: cannot load " + tls.cert.string() + " and its key";
      return;
    }
  }
  listen_fd_ = listen_local(port_, error_);
  if (listen_fd_ < 0) return;
  if (::pipe2(stop_pipe_, O_CLOEXEC) < 0) {
    error_ = std::string("pipe: ") + std::strerror(errno);
    return;
  }
  thread_ = std::thread([this] { serve(); });
}

GitHttpServer::~GitHttpServer() {
  hold_fetches(false);
  if (thread_.joinable()) {
    [[maybe_unused]] ssize_t n = ::write(stop_pipe_[1], "x", 1);
    thread_.join();
  }
  for (int fd : {listen_fd_, stop_pipe_[0], stop_pipe_[1]})
    if (fd >= 0) ::close(fd);
  SSL_CTX_free(tls_);
}

std::string GitHttpServer::url(const std::string& repo) const {
  if (!error_.empty() || port_ == 0) return "";
  return std::string(tls_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_) + "/" +
         repo;
}

std::vector<GitHttpServer::Request> GitHttpServer::requests() const {
  std::lock_guard lock(mu_);
  return requests_;
}

void GitHttpServer::hold_fetches(bool hold) {
  {
    std::lock_guard lock(mu_);
    hold_ = hold;
  }
  released_.notify_all();
}

void GitHttpServer::release_waiting_fetch() {
  {
    std::lock_guard lock(mu_);
    ++released_count_;
  }
  released_.notify_all();
}

int GitHttpServer::refs_read() const {
  std::lock_guard lock(mu_);
  int n = 0;
  for (const auto& r : requests_) n += r.lists_refs;
  return n;
}

bool GitHttpServer::fetch_waiting() const {
  std::lock_guard lock(mu_);
  return waiting_;
}

std::string GitHttpServer::backend_log() const { return read_file(base_ / "http-backend.log"); }

void GitHttpServer::serve() {
  // SSL_write writes with write(2), not send(MSG_NOSIGNAL): a client that hung up (git refusing
  // our certificate) would raise SIGPIPE and kill the test. Blocked on this thread, the write
  // fails with EPIPE instead.
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
  for (;;) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    if (::poll(p, 2, -1) < 0 && errno != EINTR) return;
    if (p[1].revents != 0) return;
    if (p[0].revents == 0) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    timeval tv{kIoTimeoutSeconds, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    Conn c{fd};
    if (tls_) {
      c.ssl = SSL_new(tls_);
      SSL_set_fd(c.ssl, fd);
      if (SSL_accept(c.ssl) == 1) handle(c);  // a client that refused our certificate: nothing
      SSL_shutdown(c.ssl);
      SSL_free(c.ssl);
    } else {
      handle(c);
    }
    ::close(fd);
  }
}

void GitHttpServer::handle(Conn& fd) {
  Reader in{fd, {}};
  std::string line;
  if (!in.line(line)) return;
  Request rec;
  size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
  if (sp1 == std::string::npos || sp2 == sp1) return answer(fd, 400, "", "bad request line\n");
  rec.method = line.substr(0, sp1);
  rec.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::map<std::string, std::string> headers;
  for (;;) {
    if (!in.line(line)) return;
    if (line.empty()) break;
    size_t colon = line.find(':');
    if (colon == std::string::npos) return answer(fd, 400, "", "bad header\n");
    size_t v = line.find_first_not_of(' ', colon + 1);
    headers[lower(line.substr(0, colon))] = v == std::string::npos ? "" : line.substr(v);
  }
  auto record = [&](int status) {
    rec.status = status;
    std::lock_guard lock(mu_);
    requests_.push_back(rec);
  };

  const std::string& auth = headers["authorization"];
  if (auth.rfind("Basic ", 0) == 0) {
    std::string pair = base64_decode(auth.substr(6));
    size_t colon = pair.find(':');
    if (colon != std::string::npos) {
      rec.user = pair.substr(0, colon);
      rec.authorized = rec.user == username_ && same_secret(pair.substr(colon + 1), token_);
    }
  }
  static const std::string challenge = "WWW-Authenticate: Basic realm=\"dmzbot test\"\r\n";
  bool expect_continue = lower(headers["expect"]) == "100-continue";
  if (!rec.authorized && expect_continue) {  // the body was not sent yet: do not wait for it
    record(401);
    return answer(fd, 401, challenge, "authentication required\n");
  }
  if (expect_continue && !send_all(fd, "HTTP/1.1 100 Continue\r\n\r\n")) return;

  std::string body;
  if (lower(headers["transfer-encoding"]).find("chunked") != std::string::npos) {
    rec.chunked = true;
    for (;;) {
      if (!in.line(line)) return;
      size_t size = std::strtoul(line.c_str(), nullptr, 16);
      if (size == 0) {
        while (in.line(line) && !line.empty()) {  // trailers
        }
        break;
      }
      if (body.size() + size > kMaxBody || !in.bytes(size, body) || !in.line(line))
        return answer(fd, 400, "", "bad chunked body\n");
    }
  } else if (headers.count("content-length")) {
    size_t size = std::strtoul(headers["content-length"].c_str(), nullptr, 10);
    if (size > kMaxBody || !in.bytes(size, body)) return answer(fd, 400, "", "short body\n");
  }
  rec.body_size = body.size();
  if (!rec.authorized) {
    record(401);
    return answer(fd, 401, challenge, "authentication required\n");
  }
  // Protocol v2 (git's default): the refs are listed by a POST of its own (ls-refs), the pack
  // comes with the next (fetch).
  rec.lists_refs = rec.method == "POST" && body.find("command=ls-refs") != std::string::npos;
  if (rec.method == "POST" && rec.target.find("git-upload-pack") != std::string::npos &&
      body.find("command=fetch") != std::string::npos) {
    std::unique_lock lock(mu_);
    waiting_ = hold_;
    const int released = released_count_;
    released_.wait_for(lock, std::chrono::seconds(20),
                       [&] { return !hold_ || released_count_ != released; });
    waiting_ = false;
  }

  // The CGI environment git http-backend reads.
  size_t q = rec.target.find('?');
  std::vector<std::string> env = {
      "GIT_PROJECT_ROOT=" + base_.string(),
      "GIT_HTTP_EXPORT_ALL=1",
      "REQUEST_METHOD=" + rec.method,
      "PATH_INFO=" + rec.target.substr(0, q),
      "QUERY_STRING=" + (q == std::string::npos ? "" : rec.target.substr(q + 1)),
      "REMOTE_USER=" + rec.user,
      "REMOTE_ADDR=127.0.0.1",
      "GIT_CONFIG_NOSYSTEM=1",
      "GIT_CONFIG_GLOBAL=/dev/null",
      "GIT_CONFIG_COUNT=1",
      "GIT_CONFIG_KEY_0=http.receivepack",
      "GIT_CONFIG_VALUE_0=true",
      "HOME=" + base_.string(),
      std::string("PATH=") + (std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin"),
  };
  if (rec.method == "POST") env.push_back("CONTENT_LENGTH=" + std::to_string(body.size()));
  if (headers.count("content-type")) env.push_back("CONTENT_TYPE=" + headers["content-type"]);
  if (headers.count("content-encoding"))
    env.push_back("HTTP_CONTENT_ENCODING=" + headers["content-encoding"]);
  if (headers.count("git-protocol")) env.push_back("HTTP_GIT_PROTOCOL=" + headers["git-protocol"]);

  int input = ::memfd_create("cgi-body", MFD_CLOEXEC);
  int out[2] = {-1, -1};
  int log =
      ::open((base_ / "http-backend.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  bool ok = input >= 0 && log >= 0 && ::pipe2(out, O_CLOEXEC) == 0 &&
            ::write(input, body.data(), body.size()) == static_cast<ssize_t>(body.size()) &&
            ::lseek(input, 0, SEEK_SET) == 0;
  pid_t pid = -1;
  if (ok) {
    std::vector<char*> envp;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    char git[] = "git", backend[] = "http-backend";
    char* argv[] = {git, backend, nullptr};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, input, 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_adddup2(&actions, log, 2);
    ok = ::posix_spawnp(&pid, "git", &actions, nullptr, argv, envp.data()) == 0;
    posix_spawn_file_actions_destroy(&actions);
  }
  for (int f : {input, out[1], log})
    if (f >= 0) ::close(f);
  std::string output;
  if (ok) {
    auto deadline = std::chrono::steady_clock::now() + kBackendTimeout;
    char chunk[64 * 1024];
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{out[0], POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) == 0) {
        ::kill(pid, SIGKILL);
        ok = false;
        break;
      }
      ssize_t n = ::read(out[0], chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      output.append(chunk, static_cast<size_t>(n));
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (out[0] >= 0) ::close(out[0]);
  if (!ok) {
    record(500);
    return answer(fd, 500, "", "http-backend failed\n");
  }
  // CGI output: headers (maybe "Status: 404 Not Found"), an empty line, the body.
  size_t end = output.find("\r\n\r\n");
  size_t skip = 4;
  if (end == std::string::npos) {
    end = output.find("\n\n");
    skip = 2;
  }
  if (end == std::string::npos) {
    record(500);
    return answer(fd, 500, "", "bad CGI output\n");
  }
  std::string status = "200 OK", response_headers;
  size_t pos = 0;
  while (pos < end) {
    size_t eol = output.find('\n', pos);
    if (eol == std::string::npos || eol > end) eol = end;
    std::string h = output.substr(pos, eol - pos);
    pos = eol + 1;
    if (!h.empty() && h.back() == '\r') h.pop_back();
    if (h.empty()) continue;
    if (lower(h).rfind("status:", 0) == 0)
      status = h.substr(h.find_first_not_of(' ', 7));
    else
      response_headers += h + "\r\n";
  }
  std::string response_body = output.substr(end + skip);
  record(std::atoi(status.c_str()));
  send_all(fd, "HTTP/1.1 " + status + "\r\n" + response_headers +
                   "Content-Length: " + std::to_string(response_body.size()) +
                   "\r\nConnection: close\r\n\r\n" + response_body);
}

StallingServer::StallingServer() {
  std::string error;
  listen_fd_ = listen_local(port_, error);
  if (listen_fd_ < 0 || ::pipe2(stop_pipe_, O_CLOEXEC) < 0) {
    port_ = 0;
    return;
  }
  thread_ = std::thread([this] {
    for (;;) {
      pollfd p[2] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
      if (::poll(p, 2, -1) < 0 && errno != EINTR) return;
      if (p[1].revents != 0) return;
      if (p[0].revents == 0) continue;
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      held_.push_back(fd);  // read nothing, answer nothing
      ++accepted_;
    }
  });
}

StallingServer::~StallingServer() {
  if (thread_.joinable()) {
    [[maybe_unused]] ssize_t n = ::write(stop_pipe_[1], "x", 1);
    thread_.join();
  }
  for (int fd : held_) ::close(fd);
  for (int fd : {listen_fd_, stop_pipe_[0], stop_pipe_[1]})
    if (fd >= 0) ::close(fd);
}

}  // namespace dmz::test

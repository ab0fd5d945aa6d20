// Smart HTTP for tests: `git http-backend` (CGI) behind a small HTTP/1.1 server on 127.0.0.1
// that demands HTTP basic auth with one username and token (401 + WWW-Authenticate otherwise)
// and serves the bare repositories of a directory, push enabled; over TLS (OpenSSL) when given
// a certificate and key.
// Threading: the server answers on a thread of its own, one connection at a time; the owner
// thread constructs, reads and destroys it (the destructor stops it).
#pragma once

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

typedef struct ssl_ctx_st SSL_CTX;

namespace dmz::test {

struct Conn;

class GitHttpServer {
 public:
  struct Request {
    std::string method;
    std::string target;  // "/origin.git/info/refs?service=git-upload-pack"
    std::string user;    // the username of the Authorization header ("" if none)
    bool authorized = false;
    bool chunked = false;     // the body came with Transfer-Encoding: chunked
    size_t body_size = 0;     // decoded
    bool lists_refs = false;  // a protocol v2 ls-refs: the refs a fetch goes by
    int status = 0;           // what we answered
  };

  struct Tls {
    std::filesystem::path cert, key;  // PEM; empty: plain HTTP
  };
  GitHttpServer(std::filesystem::path base, std::string username, std::string token, Tls tls = {});
  ~GitHttpServer();
  GitHttpServer(const GitHttpServer&) = delete;
  GitHttpServer& operator=(const GitHttpServer&) = delete;

  // Empty if the server could not start (see error()).
  std::string url(const std::string& repo) const;  // http(s)://127.0.0.1:PORT/<repo>
  int port() const { return port_; }
  const std::string& error() const { return error_; }
  std::vector<Request> requests() const;
  // What git http-backend wrote to stderr.
  std::string backend_log() const;
  // While held, a fetch that has read the refs (protocol v2 ls-refs) waits before its pack
  // (command=fetch) is served, for at most 20 s: a fetch whose answer comes after a push made
  // meanwhile. `fetch_waiting` says whether one waits now.
  void hold_fetches(bool hold);
  bool fetch_waiting() const;
  void release_waiting_fetch();  // lets the one waiting go on; the next ones are held still
  // How many ref listings (ls-refs) were served.
  int refs_read() const;

 private:
  void serve();
  void handle(Conn& c);

  std::filesystem::path base_;
  std::string username_;
  std::string token_;
  SSL_CTX* tls_ = nullptr;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  int port_ = 0;
  std::string error_;
  mutable std::mutex mu_;
  std::condition_variable released_;
  bool hold_ = false, waiting_ = false;  // guarded by mu_
  int released_count_ = 0;               // guarded by mu_
  std::vector<Request> requests_;
  std::thread thread_;
};

// A TCP listener on 127.0.0.1 that accepts connections and never answers: a remote that
// stalls. Connections are held until destruction.
class StallingServer {
 public:
  StallingServer();
  ~StallingServer();
  StallingServer(const StallingServer&) = delete;
  StallingServer& operator=(const StallingServer&) = delete;
  int port() const { return port_; }  // 0 if it could not listen
  int accepted() const { return accepted_.load(); }

 private:
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  int port_ = 0;
  std::atomic<int> accepted_{0};
  std::vector<int> held_;
  std::thread thread_;
};

}  // namespace dmz::test

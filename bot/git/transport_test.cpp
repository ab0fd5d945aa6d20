// Tests of the git-command transport over real remotes started here on 127.0.0.1: a local
// path, file://, git daemon, smart HTTP (git http-backend behind basic auth) and sshd, plus
// a remote that never answers. A recording `git` wrapper shows what the child was given.
#include "bot/git/transport.hpp"

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <set>
#include <sstream>
#include <thread>

#include "tests/git_daemon.hpp"
#include "tests/git_http.hpp"
#include "tests/gpg_keys.hpp"
#include "tests/ssh_keys.hpp"
#include "tests/sshd.hpp"
#include "tests/support.hpp"
#include "tests/test_ca.hpp"

namespace fs = std::filesystem;
using namespace dmz;
using namespace dmz::test;
using git::RefStatus;
using git::RefUpdate;
using git::Transport;
using git::TransportOptions;

namespace {

constexpr const char* kToken = "ghs_s3cr3tT0kenForTests0123456789";

std::string q(const fs::path& p) { return shell_quote(p.string()); }

// An origin (bare, under srv/) with master, feature and an annotated tag v1, and an empty
// bare mirror to fetch into and push from.
struct Repos {
  TempDir tmp;
  fs::path work = tmp / "work";
  fs::path srv = tmp / "srv";
  fs::path origin = srv / "origin.git";
  fs::path mirror = tmp / "mirror.git";
  std::string initial, feature;

  Repos() {
    initial = init_repo(work, {{"README", "hello\n"}});
    must(git_env() + "git init -q --bare -b master " + q(origin));
    git("remote add origin " + q(origin));
    git("checkout -q -b feature");
    feature = commit_files(work, {{"feature.txt", "f\n"}}, "feature");
    git("checkout -q master");
    git("tag -a v1 -m v1");
    git("push -q origin master feature v1");
    must(git_env() + "git init -q --bare " + q(mirror));
  }
  void git(const std::string& args) { must(git_env() + "git " + args, work); }
  // The origin's value of `ref`, "" if it has none.
  std::string at_origin(const std::string& ref) {
    RunResult r = run(git_env() + "git -C " + q(origin) + " rev-parse --verify -q " + ref);
    return r.exit_code == 0 ? r.out.substr(0, r.out.find('\n')) : "";
  }
  std::string in_mirror(const std::string& ref) {
    RunResult r = run(git_env() + "git --git-dir=" + q(mirror) + " rev-parse --verify -q " + ref);
    return r.exit_code == 0 ? r.out.substr(0, r.out.find('\n')) : "";
  }
  // A new commit on `parent` that exists only in the mirror.
  std::string mirror_commit(const std::string& parent, const std::string& message) {
    return must(git_env() + "git --git-dir=" + q(mirror) + " commit-tree -p " + parent + " -m " +
                shell_quote(message) + " " + parent + "^{tree}");
  }
  // The objects of master in the mirror without a fetch (for pushes where fetch fails).
  void seed_mirror() { git("push -q " + q(mirror) + " master:refs/seed/master"); }
  void hook(const std::string& name, const std::string& script) {
    write_file(origin / "hooks" / name, "#!/bin/sh\n" + script);
    fs::permissions(origin / "hooks" / name, fs::perms::owner_all);
  }
};

std::unique_ptr<Transport> make(const fs::path& mirror, TransportOptions options) {
  auto t = Transport::create(mirror, std::move(options));
  REQUIRE_MESSAGE(t.ok(), (t.ok() ? "" : t.message()));
  return std::move(*t);
}

TransportOptions options_for(const std::string& url) {
  TransportOptions o;
  o.url = url;
  o.network_timeout = std::chrono::seconds(20);
  return o;
}

git::PushOutcome push(Transport& t, const std::vector<RefUpdate>& updates) {
  auto r = t.push(updates);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
  REQUIRE(r->refs.size() == updates.size());
  return *r;
}

// Fetch, forced and leased pushes, atomic pushes, deletes and ls-remote through one remote.
void exercise(Repos& r, const TransportOptions& options) {
  auto t = make(r.mirror, options);
  Status fetched = t->fetch();
  REQUIRE_MESSAGE(fetched.ok(), fetched.message());
  CHECK(r.in_mirror("refs/remotes/origin/master") == r.initial);
  CHECK(r.in_mirror("refs/remotes/origin/feature") == r.feature);
  CHECK(r.in_mirror("refs/tags/v1") == r.at_origin("refs/tags/v1"));

  // dmz is forced: created, then rewritten to an unrelated history.
  std::string d1 = r.mirror_commit(r.initial, "dmz one");
  auto out = push(*t, {{"refs/heads/dmz", d1, std::nullopt}});
  CHECK(out.refs[0].status == RefStatus::kUpdated);
  CHECK(out.ok());
  CHECK(r.at_origin("refs/heads/dmz") == d1);
  std::string d2 = r.mirror_commit(r.feature, "dmz two");
  out = push(*t, {{"refs/heads/dmz", d2, std::nullopt}});
  CHECK(out.refs[0].status == RefStatus::kUpdated);
  CHECK(r.at_origin("refs/heads/dmz") == d2);

  // master moves only from the expected value.
  std::string m1 = r.mirror_commit(r.initial, "master one");
  out = push(*t, {{"refs/heads/master", m1, r.initial}});
  CHECK(out.refs[0].status == RefStatus::kUpdated);
  CHECK(r.at_origin("refs/heads/master") == m1);
  std::string m2 = r.mirror_commit(m1, "master two");
  out = push(*t, {{"refs/heads/master", m2, r.initial}});  // stale: master is at m1
  CHECK(out.refs[0].status == RefStatus::kStale);
  CHECK_FALSE(out.ok());
  CHECK(r.at_origin("refs/heads/master") == m1);
  // Pushing what is already there is fine.
  out = push(*t, {{"refs/heads/master", m1, r.initial}});
  CHECK(out.refs[0].status == RefStatus::kUpToDate);
  CHECK(out.ok());

  // Atomic: one stale lease and nothing moves.
  out = push(*t, {{"refs/heads/master", m2, r.initial},
                  {"refs/heads/dmz-queue/1", d1, std::string()},
                  {"refs/heads/dmz", "", std::nullopt}});
  CHECK(out.refs[0].status == RefStatus::kStale);
  CHECK_FALSE(out.refs[1].ok());
  CHECK_FALSE(out.refs[2].ok());
  CHECK(r.at_origin("refs/heads/master") == m1);
  CHECK(r.at_origin("refs/heads/dmz-queue/1").empty());
  CHECK(r.at_origin("refs/heads/dmz") == d2);
  // ... and all move together when every lease holds.
  out = push(*t, {{"refs/heads/master", m2, m1},
                  {"refs/heads/dmz-queue/1", d1, std::string()},
                  {"refs/heads/dmz", d1, std::nullopt}});
  CHECK(out.ok());
  CHECK(r.at_origin("refs/heads/master") == m2);
  CHECK(r.at_origin("refs/heads/dmz-queue/1") == d1);
  CHECK(r.at_origin("refs/heads/dmz") == d1);
  // "" as the expected value: the ref must not exist.
  out = push(*t, {{"refs/heads/dmz-queue/1", d2, std::string()}});
  CHECK(out.refs[0].status == RefStatus::kStale);
  CHECK(r.at_origin("refs/heads/dmz-queue/1") == d1);

  // Deletes: leased (refused while the value differs) and forced.
  out = push(*t, {{"refs/heads/dmz-queue/1", "", d2}});
  CHECK(out.refs[0].status == RefStatus::kStale);
  CHECK(r.at_origin("refs/heads/dmz-queue/1") == d1);
  out = push(*t, {{"refs/heads/dmz-queue/1", "", d1}});
  CHECK(out.refs[0].status == RefStatus::kUpdated);
  CHECK(r.at_origin("refs/heads/dmz-queue/1").empty());
  out = push(*t, {{"refs/heads/dmz", "", std::nullopt}});
  CHECK(out.refs[0].status == RefStatus::kUpdated);
  CHECK(r.at_origin("refs/heads/dmz").empty());

  auto values = t->ls_remote({"refs/heads/master", "refs/heads/dmz", "refs/heads/feature"});
  REQUIRE_MESSAGE(values.ok(), (values.ok() ? "" : values.message()));
  CHECK(*values == std::map<std::string, std::string>{{"refs/heads/master", m2},
                                                      {"refs/heads/feature", r.feature}});
  // A pattern matches by its tail in git; only exact names come back.
  r.git("push -q origin " + r.feature + ":refs/heads/x/refs/heads/master");
  values = t->ls_remote({"refs/heads/master"});
  REQUIRE(values.ok());
  CHECK(values->size() == 1);

  // fetch prunes what the remote no longer has.
  r.git("push -q origin --delete feature");
  fetched = t->fetch();
  REQUIRE_MESSAGE(fetched.ok(), fetched.message());
  CHECK(r.in_mirror("refs/remotes/origin/feature").empty());
  CHECK(r.in_mirror("refs/remotes/origin/master") == m2);
}

// A `git` that records its argv, environment and open fds, then runs the real git.
struct RecordingGit {
  fs::path dir;
  fs::path program;
  RecordingGit(const fs::path& d, bool leave_sleeper = false) : dir(d), program(d / "git") {
    fs::create_directories(dir);
    std::string real = must("command -v git");
    std::string script = "#!/bin/sh\nd=" + q(dir) +
                         "\n"
                         "echo run >> \"$d/runs\"\n"
                         "echo $$ >> \"$d/pids\"\n"
                         "printf '%s\\n' \"$@\" >> \"$d/argv\"\n"
                         "env >> \"$d/env\"\n"
                         "ls -l /proc/self/fd >> \"$d/fds\"\n";
    // A process of the group that outlives nothing: a deadline must kill it with git.
    if (leave_sleeper) script += "sleep 300 & echo $! > \"$d/sleeper\"\n";
    script += "exec " + shell_quote(real) + " \"$@\"\n";
    write_file(program, script);
    fs::permissions(program, fs::perms::owner_all);
  }
  std::string file(const std::string& name) const { return read_file(dir / name); }
  int runs() const {
    std::string r = file("runs");
    return static_cast<int>(std::count(r.begin(), r.end(), '\n'));
  }
  // "fd -> target" for every fd the wrapper's children inherit (what git gets), but the one
  // ls opened to list them.
  std::vector<std::pair<int, std::string>> open_fds() const {
    std::vector<std::pair<int, std::string>> fds;
    std::istringstream in(file("fds"));
    for (std::string line; std::getline(in, line);) {
      size_t arrow = line.find(" -> ");
      if (arrow == std::string::npos) continue;
      size_t space = line.rfind(' ', arrow - 1);
      int fd = std::stoi(line.substr(space + 1, arrow - space - 1));
      std::string target = line.substr(arrow + 4);
      if (target.rfind("/proc/", 0) == 0 && target.size() > 3 &&
          target.compare(target.size() - 3, 3, "/fd") == 0)
        continue;
      fds.emplace_back(fd, target);
    }
    return fds;
  }
};

// Waits (bounded) until `file` has content.
bool wait_for_file(const fs::path& file, std::chrono::seconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (read_file(file).empty()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

bool process_gone(pid_t pid) {
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  if (stat.empty()) return true;
  size_t paren = stat.rfind(')');
  return paren != std::string::npos && stat.size() > paren + 2 && stat[paren + 2] == 'Z';
}

bool wait_until_gone(pid_t pid, std::chrono::seconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!process_gone(pid)) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// An HTTP server on 127.0.0.1 that answers every request with a 302 to `to` + its target: a
// remote that sends git elsewhere.
class RedirectServer {
 public:
  explicit RedirectServer(std::string to) : to_(std::move(to)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd_, 8) != 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      return;
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~RedirectServer() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  int port() const { return port_; }
  int redirected() const { return redirected_; }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int conn = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn < 0) continue;
      std::string request;
      char buf[4096];
      pollfd c{conn, POLLIN, 0};
      while (request.find("\r\n\r\n") == std::string::npos && ::poll(&c, 1, 5000) > 0) {
        ssize_t n = ::read(conn, buf, sizeof buf);
        if (n <= 0) break;
        request.append(buf, static_cast<size_t>(n));
      }
      size_t start = request.find(' ') + 1, end = request.find(' ', start);
      std::string answer = "HTTP/1.1 302 Found\r\nLocation: " + to_ +
                           request.substr(start, end - start) +
                           "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      // Counted before it is written: once git has the answer it exits, and the test may read
      // the count before this thread would get past a write.
      ++redirected_;
      (void)!::write(conn, answer.data(), answer.size());
      ::close(conn);
    }
  }

  std::string to_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_ = false;
  std::atomic<int> redirected_ = 0;
  std::thread thread_;
};

}  // namespace

TEST_CASE("redact hides credentials in URLs and the secret anywhere") {
  CHECK(git::redact("fatal: https://bob:hunter2@example.com/x.git failed") ==
        "fatal: https://***@example.com/x.git failed");
  CHECK(git::redact("'https://tok3n@example.com/x'") == "'https://***@example.com/x'");
  CHECK(git::redact("ssh://git@example.com/x") == "ssh://git@example.com/x");
  CHECK(git::redact("ssh://git:pw@example.com/x") == "ssh://git:***@example.com/x");
  CHECK(git::redact("a http://u:p@h/ b https://v:q@i/") == "a http://***@h/ b https://***@i/");
  CHECK(git::redact("token abc123 and abc123", "abc123") == "token *** and ***");
  CHECK(git::redact("nothing here") == "nothing here");
}

TEST_CASE("bad options and bad updates are refused before git runs") {
  Repos r;
  RecordingGit rec(r.tmp / "rec");
  auto create = [&](TransportOptions o) {
    o.git_program = rec.program.string();
    return Transport::create(r.mirror, std::move(o));
  };
  for (const std::string& url : std::vector<std::string>{
           "", "-oProxyCommand=evil", "ext::sh -c touch% /tmp/pwned", "fd::17",
           "https://bob:hunter2@example.com/x.git", "https://hunter2@example.com/x.git",
           "ftp://example.com/x", "https://example.com/\nx"}) {
    auto t = create(options_for(url));
    REQUIRE_FALSE(t.ok());
    CHECK(t.code() == Code::kInvalid);
    CHECK(t.message().find("hunter2") == std::string::npos);
  }
  TransportOptions o = options_for(r.origin.string());
  o.fetch_refspecs.push_back("--upload-pack=evil");
  CHECK(create(o).code() == Code::kInvalid);
  o = options_for(r.origin.string());
  o.ssh_key = r.tmp / "no-such-key";
  CHECK(create(o).code() == Code::kInvalid);
  o = options_for(r.origin.string());
  o.network_timeout = std::chrono::seconds(0);
  CHECK(create(o).code() == Code::kInvalid);

  auto t = create(options_for(r.origin.string()));
  REQUIRE(t.ok());
  std::string sha = r.initial;
  for (const auto& bad : std::vector<std::vector<RefUpdate>>{
           {{"master", sha, std::nullopt}},               // not a full name
           {{"refs/heads/a..b", sha, std::nullopt}},      // not a valid ref
           {{"refs/heads/-x", sha, std::nullopt}},        // an option in disguise
           {{"refs/heads/x.lock", sha, std::nullopt}},    // git's lock file name
           {{"refs/heads/x", "HEAD~1", std::nullopt}},    // not a sha
           {{"refs/heads/x", sha, std::string("main")}},  // expected value not a sha
           {{"refs/heads/x", sha, std::nullopt}, {"refs/heads/x", "", std::nullopt}},  // twice
       }) {
    auto res = (*t)->push(bad);
    REQUIRE_FALSE(res.ok());
    CHECK(res.code() == Code::kInvalid);
  }
  CHECK((*t)->ls_remote({"refs/heads/a b"}).code() == Code::kInvalid);
  CHECK(rec.runs() == 0);
  CHECK(r.at_origin("refs/heads/x").empty());
}

TEST_CASE("a local path and a file:// remote") {
  SUBCASE("path") {
    Repos r;
    exercise(r, options_for(r.origin.string()));
  }
  SUBCASE("file://") {
    Repos r;
    exercise(r, options_for("file://" + r.origin.string()));
  }
  SUBCASE("path, with a token (a forge's, for its API): git is asked for no password") {
    Repos r;
    TransportOptions o = options_for(r.origin.string());
    o.token = kToken;
    exercise(r, o);
  }
}

TEST_CASE("git daemon: fetch, forced, leased, atomic pushes and deletes") {
  Repos r;
  GitDaemon daemon(r.srv, "origin.git");
  REQUIRE_MESSAGE(!daemon.url().empty(), daemon.log());
  exercise(r, options_for(daemon.url()));
}

TEST_CASE("git daemon: the server checks the lease and reports hook refusals") {
  Repos r;
  GitDaemon daemon(r.srv, "origin.git");
  REQUIRE_MESSAGE(!daemon.url().empty(), daemon.log());
  auto t = make(r.mirror, options_for(daemon.url()));
  REQUIRE(t->fetch().ok());
  std::string next = r.mirror_commit(r.initial, "next");

  SUBCASE("master moves after the advertisement: the server refuses, nothing is pushed") {
    // The hook runs after git compared the lease with what the server advertised and before
    // the server updates the ref with the old value it was sent.
    r.hook("pre-receive",
           "env -u GIT_QUARANTINE_PATH git update-ref refs/heads/master " + r.feature + "\n");
    auto out = push(*t, {{"refs/heads/master", next, r.initial}});
    CHECK(out.refs[0].status == RefStatus::kRemoteRejected);
    CHECK(r.at_origin("refs/heads/master") == r.feature);
  }
  SUBCASE("a hook's refusal comes with what it said") {
    r.hook("pre-receive", "echo 'protected by policy' >&2\nexit 1\n");
    auto out = push(*t, {{"refs/heads/master", next, r.initial}, {"refs/heads/dmz", next, {}}});
    CHECK(out.refs[0].status == RefStatus::kRemoteRejected);
    CHECK(out.refs[0].summary.find("pre-receive hook declined") != std::string::npos);
    CHECK(out.refs[1].status == RefStatus::kRemoteRejected);
    CHECK(out.remote_messages == "protected by policy");
    CHECK(r.at_origin("refs/heads/master") == r.initial);
    CHECK(r.at_origin("refs/heads/dmz").empty());
  }
  SUBCASE("a lease allows any move; the server's own rules still apply") {
    // (Mirror::push_fast_forward checks fast-forwards itself before it pushes.)
    auto out = push(*t, {{"refs/heads/master", next, r.initial}});
    REQUIRE(out.ok());
    std::string side = r.mirror_commit(r.feature, "side");  // not a descendant of next
    must(git_env() + "git -C " + q(r.origin) + " config receive.denyNonFastForwards true");
    out = push(*t, {{"refs/heads/master", side, next}});
    CHECK_MESSAGE(out.refs[0].status == RefStatus::kRemoteRejected, out.refs[0].summary);
    CHECK(r.at_origin("refs/heads/master") == next);
  }
}

TEST_CASE("smart HTTP with a token: fetch and pushes, as x-access-token") {
  Repos r;
  GitHttpServer http(r.srv, "x-access-token", kToken);
  REQUIRE_MESSAGE(http.error().empty(), http.error());
  TransportOptions o = options_for(http.url("origin.git"));
  o.token = kToken;
  exercise(r, o);
  auto requests = http.requests();
  REQUIRE_FALSE(requests.empty());
  int authorized = 0;
  for (const auto& req : requests) {
    CHECK((req.user.empty() || req.user == "x-access-token"));
    authorized += req.authorized;
    CHECK((req.authorized || req.status == 401));
  }
  CHECK(authorized > 10);  // fetches, pushes and ls-remotes got through with the token
  INFO(http.backend_log());
}

TEST_CASE("smart HTTP: a configured username, and a push large enough to be sent chunked") {
  Repos r;
  GitHttpServer http(r.srv, "dmzbot", kToken);
  REQUIRE_MESSAGE(http.error().empty(), http.error());
  TransportOptions o = options_for(http.url("origin.git"));
  o.token = kToken;
  o.username = "dmzbot";
  auto t = make(r.mirror, o);
  REQUIRE(t->fetch().ok());
  // 3 MiB that do not compress: more than git's 1 MiB http.postBuffer.
  must("head -c 3145728 /dev/urandom > " + q(r.work / "big.bin"));
  std::string big = commit_files(r.work, {}, "big");
  r.git("push -q " + q(r.mirror) + " " + big + ":refs/tmp/big");
  auto out = push(*t, {{"refs/heads/big", big, std::string()}});
  CHECK(out.ok());
  CHECK(r.at_origin("refs/heads/big") == big);
  bool chunked = false;
  for (const auto& req : http.requests()) chunked = chunked || (req.chunked && req.authorized);
  CHECK(chunked);
  CHECK(run(git_env() + "git -C " + q(r.origin) + " fsck --strict").exit_code == 0);
}

TEST_CASE("smart HTTP over TLS: a private CA (a GHES's) is trusted through ca_file, only") {
  Repos r;
  const test::TestCa ca = test::make_test_ca(r.tmp / "ca");
  GitHttpServer https(r.srv, "x-access-token", kToken, {ca.server_cert, ca.server_key});
  REQUIRE_MESSAGE(https.error().empty(), https.error());
  const std::string url = https.url("origin.git");
  REQUIRE(url.rfind("https://", 0) == 0);
  TransportOptions o = options_for(url);
  o.token = kToken;
  // Without the CA, or with one that did not sign the server's certificate: refused, and the
  // token never sent.
  for (const std::filesystem::path& wrong : {std::filesystem::path(), ca.other_ca_cert}) {
    TransportOptions untrusting = o;
    untrusting.ca_file = wrong;
    Status s = make(r.mirror, untrusting)->fetch();
    REQUIRE_FALSE(s.ok());
    CHECK_MESSAGE(s.message().find("certificate") != std::string::npos, s.message());
  }
  CHECK(https.requests().empty());
  o.ca_file = ca.ca_cert;
  auto t = make(r.mirror, o);
  Status fetched = t->fetch();
  REQUIRE_MESSAGE(fetched.ok(), fetched.message());
  CHECK(r.in_mirror("refs/remotes/origin/master") == r.initial);
  r.seed_mirror();
  auto pushed = t->push({{"refs/heads/dmz", r.initial, std::nullopt}});
  REQUIRE_MESSAGE(pushed.ok(), (pushed.ok() ? "" : pushed.message()));
  CHECK(r.at_origin("refs/heads/dmz") == r.initial);
}

TEST_CASE("smart HTTP: a wrong or missing token fails as unauthenticated, the token unsaid") {
  Repos r;
  GitHttpServer http(r.srv, "x-access-token", kToken);
  REQUIRE_MESSAGE(http.error().empty(), http.error());
  const std::string url = http.url("origin.git");
  TransportOptions o = options_for(url);
  o.token = "ghs_wrongWRONGwrong";
  auto t = make(r.mirror, o);
  Status s = t->fetch();
  REQUIRE_FALSE(s.ok());
  CHECK(s.code() == Code::kUnauthenticated);
  CHECK_MESSAGE(s.message().rfind("authentication failed for " + url + " (token rejected)", 0) == 0,
                s.message());
  CHECK(s.message().find("ghs_wrongWRONGwrong") == std::string::npos);
  r.seed_mirror();
  auto pushed = t->push({{"refs/heads/dmz", r.initial, std::nullopt}});
  REQUIRE_FALSE(pushed.ok());
  CHECK(pushed.code() == Code::kUnauthenticated);
  CHECK(r.at_origin("refs/heads/dmz").empty());
  auto listed = t->ls_remote({"refs/heads/master"});
  CHECK(listed.code() == Code::kUnauthenticated);
  for (const auto& req : http.requests()) CHECK_FALSE(req.authorized);

  TransportOptions none = options_for(url);
  Status s2 = make(r.mirror, none)->fetch();
  CHECK(s2.code() == Code::kUnauthenticated);
  CHECK_MESSAGE(s2.message().rfind("authentication failed for " + url + " (no token", 0) == 0,
                s2.message());
}

TEST_CASE("the token reaches git only through the askpass helper and fd 3") {
  Repos r;
  GitHttpServer http(r.srv, "x-access-token", kToken);
  REQUIRE_MESSAGE(http.error().empty(), http.error());
  RecordingGit rec(r.tmp / "rec");
  ::setenv("DMZBOT_TEST_CANARY", "inherited", 1);
  TransportOptions o = options_for(http.url("origin.git"));
  o.token = kToken;
  o.git_program = rec.program.string();
  o.scratch_dir = r.tmp / "scratch";
  auto t = make(r.mirror, o);
  Status s = t->fetch();
  REQUIRE_MESSAGE(s.ok(), s.message());
  std::string next = r.mirror_commit(r.initial, "next");
  auto out = push(*t, {{"refs/heads/master", next, r.initial}});
  CHECK(out.ok());
  ::unsetenv("DMZBOT_TEST_CANARY");
  REQUIRE(rec.runs() == 2);

  // The token got through (the server saw it) ...
  bool authorized = false;
  for (const auto& req : http.requests()) authorized = authorized || req.authorized;
  CHECK(authorized);
  // ... but not through argv or the environment.
  std::string argv = rec.file("argv"), env = rec.file("env");
  CHECK(argv.find(kToken) == std::string::npos);
  CHECK(env.find(kToken) == std::string::npos);
  CHECK(env.find("DMZBOT_TEST_CANARY") == std::string::npos);  // a minimal environment
  CHECK(env.find("GIT_TERMINAL_PROMPT=0\n") != std::string::npos);
  CHECK(env.find("GIT_CONFIG_GLOBAL=/dev/null\n") != std::string::npos);
  CHECK(env.find("HOME=" + (r.tmp / "scratch").string() + "\n") != std::string::npos);
  // The lease is a real compare-and-swap: no plain force for master.
  CHECK(argv.find("--force-with-lease=refs/heads/master:" + r.initial + "\n") != std::string::npos);
  CHECK(argv.find("\n" + next + ":refs/heads/master\n") != std::string::npos);
  CHECK(argv.find("\n--force\n") == std::string::npos);
  CHECK(argv.find("\n-f\n") == std::string::npos);
  // Open fds: stdio and the sealed token memfd at 3, nothing else.
  auto fds = rec.open_fds();
  INFO("fds: ", rec.file("fds"));
  std::set<int> numbers;
  for (const auto& [fd, target] : fds) {
    numbers.insert(fd);
    if (fd == 3) CHECK(target.rfind("/memfd:dmzbot-token", 0) == 0);
  }
  CHECK(numbers == std::set<int>{0, 1, 2, 3});
  // The scratch directory is private and holds no secret.
  CHECK((fs::status(r.tmp / "scratch").permissions() & fs::perms::mask) == fs::perms::owner_all);
  for (const auto& e : fs::directory_iterator(r.tmp / "scratch"))
    if (e.is_regular_file()) CHECK(read_file(e.path()).find(kToken) == std::string::npos);
}

TEST_CASE("a token goes only over https, or over plain http to this machine") {
  Repos r;
  for (const std::string& url : std::vector<std::string>{
           "http://example.com/o/r.git", "HTTP://example.com/o/r.git", "http://10.0.0.1:8080/r",
           "http://127.0.0.1.example.com/r", "http://localhost.example.com/r"}) {
    TransportOptions o = options_for(url);
    o.token = kToken;
    auto t = Transport::create(r.mirror, o);
    REQUIRE_FALSE(t.ok());
    CHECK(t.code() == Code::kInvalid);
    CHECK_MESSAGE(t.message().find("a token goes only over https") == 0, t.message());
    CHECK(t.message().find(kToken) == std::string::npos);
    o.token.clear();  // a token that comes later (a GitHub App's) is refused as well
    o.token_source = [] { return Result<std::string>(std::string(kToken)); };
    CHECK(Transport::create(r.mirror, o).code() == Code::kInvalid);
    o.token_source = nullptr;
    CHECK(Transport::create(r.mirror, o).ok());  // no token, nothing to leak
  }
  for (const std::string& url : std::vector<std::string>{
           "https://example.com/o/r.git", "http://127.0.0.1:8080/o/r.git", "http://[::1]:8080/r",
           "http://localhost/r", "http://LOCALHOST:80/r"}) {
    TransportOptions o = options_for(url);
    o.token = kToken;
    auto t = Transport::create(r.mirror, o);
    CHECK_MESSAGE(t.ok(), url, ": ", (t.ok() ? "" : t.message()));
  }
}

TEST_CASE("smart HTTP: a redirect is not followed, so the token never goes elsewhere") {
  Repos r;
  GitHttpServer http(r.srv, "x-access-token", kToken);
  REQUIRE_MESSAGE(http.error().empty(), http.error());
  // To another port: for git's credentials another host, which would be asked for the token.
  RedirectServer redirect("http://127.0.0.1:" + std::to_string(http.port()));
  REQUIRE(redirect.port() != 0);
  TransportOptions o = options_for(redirect.url("/origin.git"));
  o.token = kToken;
  Status s = make(r.mirror, o)->fetch();
  REQUIRE_FALSE(s.ok());
  CHECK_MESSAGE(s.message().find("the remote redirects") != std::string::npos, s.message());
  CHECK(redirect.redirected() >= 1);
  CHECK(http.requests().empty());  // git did not even go there
}

TEST_CASE("the askpass helper answers only git's prompts for the remote's own host") {
  Repos r;
  GitHttpServer http(r.srv, "x-access-token", kToken);
  REQUIRE_MESSAGE(http.error().empty(), http.error());
  RecordingGit rec(r.tmp / "rec");
  TransportOptions o = options_for(http.url("origin.git"));
  o.token = kToken;
  o.git_program = rec.program.string();
  o.scratch_dir = r.tmp / "scratch";
  // The script an older dmzbot left, which answered every prompt, is replaced.
  fs::create_directories(o.scratch_dir);
  write_file(o.scratch_dir / "askpass.sh",
             "#!/bin/sh\ncase \"$1\" in\nUsername*) printf '%s\\n' \"$DMZBOT_GIT_USERNAME\" ;;\n"
             "*) exec cat /proc/self/fd/3 ;;\nesac\n");
  fs::permissions(o.scratch_dir / "askpass.sh", fs::perms::owner_all);
  Status fetched = make(r.mirror, o)->fetch();
  REQUIRE_MESSAGE(fetched.ok(), fetched.message());

  // The script as git runs it: its environment, the token at fd 3.
  std::string env;
  std::istringstream recorded(rec.file("env"));
  for (std::string line; std::getline(recorded, line);)
    if (line.rfind("DMZBOT_GIT_", 0) == 0) env += " " + shell_quote(line);
  write_file(r.tmp / "token", kToken);
  auto askpass = [&](const std::string& prompt) {
    return run("env -i" + env + " /bin/sh " + q(o.scratch_dir / "askpass.sh") + " " +
               shell_quote(prompt) + " 3<" + q(r.tmp / "token"));
  };
  const std::string host = "127.0.0.1:" + std::to_string(http.port());
  RunResult user = askpass("Username for 'http://" + host + "': ");
  CHECK(user.exit_code == 0);
  CHECK(user.out == "x-access-token\n");
  RunResult password = askpass("Password for 'http://x-access-token@" + host + "': ");
  CHECK(password.exit_code == 0);
  CHECK(password.out == kToken);
  for (const std::string& elsewhere : std::vector<std::string>{
           "Password for 'http://x-access-token@evil.example.com': ",
           "Password for 'http://x-access-token@" + host + "0': ",      // another port
           "Password for 'https://x-access-token@" + host + "': ",      // another scheme
           "Password for 'http://x-access-token@" + host + ".evil': ",  // a longer host
           "Username for 'http://evil.example.com': "}) {
    RunResult refused = askpass(elsewhere);
    CHECK_MESSAGE(refused.exit_code != 0, elsewhere);
    CHECK_MESSAGE(refused.out.find(kToken) == std::string::npos, elsewhere);
    CHECK_MESSAGE(refused.out.find("x-access-token\n") == std::string::npos, elsewhere);
  }
}

TEST_CASE("without a token, a git child gets no fd beyond stdio") {
  Repos r;
  RecordingGit rec(r.tmp / "rec");
  TransportOptions o = options_for(r.origin.string());
  o.git_program = rec.program.string();
  REQUIRE(make(r.mirror, o)->fetch().ok());
  std::set<int> numbers;
  for (const auto& [fd, target] : rec.open_fds()) numbers.insert(fd);
  INFO("fds: ", rec.file("fds"));
  CHECK(numbers == std::set<int>{0, 1, 2});
  CHECK(rec.file("env").find("GIT_ASKPASS") == std::string::npos);
}

TEST_CASE("sshd with a key: fetch and pushes; a wrong key or an unknown host key fails closed") {
  if (!Sshd::installed()) {
    // CI sets DMZ_REQUIRE_TOOLS=1: there a missing sshd is a broken setup, not a skip.
    const char* required = std::getenv("DMZ_REQUIRE_TOOLS");
    if (required && std::string(required) == "1")
      FAIL(
          "DMZ_REQUIRE_TOOLS=1, but /usr/sbin/sshd is not installed "
          "(deploy/setup.sh --test installs it)");
    MESSAGE(
        "SKIPPED: /usr/sbin/sshd is not installed (deploy/setup.sh --test installs it; "
        "DMZ_REQUIRE_TOOLS=1 makes this a failure)");
    return;
  }
  Repos r;
  SshKey user = generate_ssh_key(r.tmp / "keys", "ed25519", "user");
  Sshd sshd(r.tmp / "sshd", user.public_line);
  REQUIRE_MESSAGE(sshd.running(), sshd.log());
  write_file(r.tmp / "known_hosts", sshd.known_hosts_line() + "\n");
  TransportOptions o = options_for(sshd.url(r.origin));
  o.ssh_key = user.private_path;
  o.known_hosts = r.tmp / "known_hosts";

  SUBCASE("the right key and host key") { exercise(r, o); }

  SUBCASE("a key the server does not know") {
    r.seed_mirror();
    SshKey stranger = generate_ssh_key(r.tmp / "keys", "ed25519", "stranger");
    o.ssh_key = stranger.private_path;
    auto t = make(r.mirror, o);
    Status s = t->fetch();
    REQUIRE_FALSE(s.ok());
    CHECK(s.code() == Code::kUnauthenticated);
    CHECK_MESSAGE(
        s.message().rfind("authentication failed for " + sshd.url(r.origin) + " (ssh key rejected)",
                          0) == 0,
        s.message());
    auto pushed = t->push({{"refs/heads/dmz", r.initial, std::nullopt}});
    CHECK(pushed.code() == Code::kUnauthenticated);
  }

  SUBCASE("a host key that is not the pinned one") {
    r.seed_mirror();
    SshKey other = generate_ssh_key(r.tmp / "keys", "ed25519", "other-host");
    write_file(r.tmp / "known_hosts",
               "[127.0.0.1]:" + std::to_string(sshd.port()) + " " + other.public_line + "\n");
    auto t = make(r.mirror, o);
    Status s = t->fetch();
    REQUIRE_FALSE(s.ok());
    CHECK(s.code() == Code::kUnauthenticated);
    CHECK_MESSAGE(s.message().rfind("host key verification failed for", 0) == 0, s.message());
    // An empty known_hosts: unknown is refused too, and nothing is learnt.
    write_file(r.tmp / "known_hosts", "");
    auto t2 = make(r.mirror, o);
    Status fetched = t2->fetch();
    CHECK(fetched.code() == Code::kUnauthenticated);
    auto pushed = t2->push({{"refs/heads/dmz", r.initial, std::nullopt}});
    CHECK(pushed.code() == Code::kUnauthenticated);
    CHECK(read_file(r.tmp / "known_hosts").empty());
    CHECK(r.at_origin("refs/heads/dmz").empty());
  }
}

TEST_CASE("a remote that never answers is cut at the deadline, with git's whole group") {
  StallingServer stall;
  REQUIRE(stall.port() != 0);
  Repos r;
  const std::string port = std::to_string(stall.port());

  SUBCASE("git:// has no timeout of its own: the total deadline kills the group") {
    RecordingGit rec(r.tmp / "rec", /*leave_sleeper=*/true);
    TransportOptions o = options_for("git://127.0.0.1:" + port + "/origin.git");
    o.network_timeout = std::chrono::seconds(1);
    o.operation_timeout = std::chrono::seconds(2);
    o.git_program = rec.program.string();
    auto t = make(r.mirror, o);
    auto start = std::chrono::steady_clock::now();
    Status s = t->fetch();
    auto elapsed = std::chrono::steady_clock::now() - start;
    REQUIRE_FALSE(s.ok());
    CHECK(s.code() == Code::kUnavailable);
    CHECK_MESSAGE(s.message().find("no answer within 2 s") != std::string::npos, s.message());
    CHECK(elapsed >= std::chrono::milliseconds(1900));
    CHECK(elapsed < std::chrono::seconds(20));
    CHECK(stall.accepted() >= 1);
    pid_t sleeper = std::stoi(rec.file("sleeper"));
    // Killed with the group (its pipes closed, so it is exiting): gone within moments.
    CHECK(wait_until_gone(sleeper, std::chrono::seconds(5)));
    if (!process_gone(sleeper)) ::kill(sleeper, SIGKILL);
  }

  SUBCASE("http: the stalled transfer is cut by the low-speed limit") {
    TransportOptions o = options_for("http://127.0.0.1:" + port + "/origin.git");
    o.network_timeout = std::chrono::seconds(2);
    o.operation_timeout = std::chrono::seconds(60);
    auto t = make(r.mirror, o);
    auto start = std::chrono::steady_clock::now();
    auto listed = t->ls_remote({"refs/heads/master"});
    auto elapsed = std::chrono::steady_clock::now() - start;
    REQUIRE_FALSE(listed.ok());
    CHECK(listed.code() == Code::kUnavailable);
    CHECK_MESSAGE(listed.message().find("no answer within") == std::string::npos,
                  listed.message());  // curl gave up by itself, before the total deadline
    CHECK(elapsed < std::chrono::seconds(20));
  }
}

TEST_CASE("a refused connection is unavailable, a missing repository not_found") {
  Repos r;
  int port = 0;
  {
    StallingServer gone;  // a port that was free a moment ago; nothing listens there now
    port = gone.port();
  }
  auto t = make(r.mirror, options_for("git://127.0.0.1:" + std::to_string(port) + "/x.git"));
  Status s = t->fetch();
  CHECK(s.code() == Code::kUnavailable);
  CHECK(s.message().find("git://127.0.0.1:" + std::to_string(port) + "/x.git") !=
        std::string::npos);
  Status missing = make(r.mirror, options_for((r.tmp / "nope.git").string()))->fetch();
  CHECK(missing.code() == Code::kNotFound);
  CHECK(missing.message().find("does not appear to be a git repository") != std::string::npos);
}

TEST_CASE("signed pushes: a push certificate the server verifies, SSH and OpenPGP keys") {
  Repos r;
  must(git_env() + "git -C " + q(r.origin) + " config receive.certNonceSeed test-seed");
  // The hook records what receive-pack found about the certificate.
  r.hook("pre-receive",
         "echo \"$GIT_PUSH_CERT_STATUS $GIT_PUSH_CERT_NONCE_STATUS $GIT_PUSH_CERT_SIGNER\" > " +
             q(r.tmp / "cert") + "\n");
  GitDaemon daemon(r.srv, "origin.git");
  REQUIRE_MESSAGE(!daemon.url().empty(), daemon.log());

  SUBCASE("ssh") {
    SshKey key = generate_ssh_key(r.tmp / "keys", "ed25519", "pusher");
    write_allowed_signers(r.tmp / "allowed", {{"dmzbot@example.com", &key, ""}});
    must(git_env() + "git -C " + q(r.origin) + " config gpg.ssh.allowedSignersFile " +
         q(r.tmp / "allowed"));
    TransportOptions o = options_for(daemon.url());
    o.sign_pushes =
        git::PushSigning{git::PushSigning::Format::kSsh, key.private_path.string(), {}, {}};
    auto t = make(r.mirror, o);
    REQUIRE(t->fetch().ok());
    auto out = push(*t, {{"refs/heads/dmz", r.mirror_commit(r.initial, "signed"), {}}});
    CHECK(out.ok());
    CHECK(read_file(r.tmp / "cert") == "G OK dmzbot@example.com\n");
  }

  SUBCASE("openpgp") {
    GpgHome home;
    std::string fpr = home.generate("dmzbot <dmzbot@example.com>");
    // receive-pack runs gpg with the daemon's environment: point it at the same home.
    write_file(r.tmp / "gpg-wrapper",
               "#!/bin/sh\nGNUPGHOME=" + q(home.path()) + " exec gpg \"$@\"\n");
    fs::permissions(r.tmp / "gpg-wrapper", fs::perms::owner_all);
    must(git_env() + "git -C " + q(r.origin) + " config gpg.program " + q(r.tmp / "gpg-wrapper"));
    TransportOptions o = options_for(daemon.url());
    o.sign_pushes = git::PushSigning{git::PushSigning::Format::kOpenPgp, fpr, home.path(), {}};
    auto t = make(r.mirror, o);
    REQUIRE(t->fetch().ok());
    auto out = push(*t, {{"refs/heads/dmz", r.mirror_commit(r.initial, "signed"), {}}});
    CHECK(out.ok());
    std::string cert = read_file(r.tmp / "cert");
    CHECK_MESSAGE(cert.rfind("G OK dmzbot <dmzbot@example.com>", 0) == 0, cert);
  }

  SUBCASE("a server that does not ask gets an unsigned push (if-asked)") {
    must(git_env() + "git -C " + q(r.origin) + " config --unset receive.certNonceSeed");
    SshKey key = generate_ssh_key(r.tmp / "keys", "ed25519", "pusher");
    TransportOptions o = options_for(daemon.url());
    o.sign_pushes =
        git::PushSigning{git::PushSigning::Format::kSsh, key.private_path.string(), {}, {}};
    auto t = make(r.mirror, o);
    REQUIRE(t->fetch().ok());
    auto out = push(*t, {{"refs/heads/dmz", r.mirror_commit(r.initial, "unsigned"), {}}});
    CHECK(out.ok());
    CHECK(read_file(r.tmp / "cert") == "  \n");
  }
}

// Run only as a child process by the next test (doctest skips it otherwise).
TEST_CASE("helper: a fetch from the stalling remote, until this process is killed" *
          doctest::skip()) {
  const char* mirror = std::getenv("DMZ_TEST_MIRROR");
  const char* url = std::getenv("DMZ_TEST_URL");
  const char* program = std::getenv("DMZ_TEST_GIT");
  REQUIRE((mirror && url && program));
  TransportOptions o = options_for(url);
  o.operation_timeout = std::chrono::seconds(120);
  o.git_program = program;
  auto t = make(mirror, o);
  CHECK_FALSE(t->fetch().ok());
}

TEST_CASE("git dies with dmzbot: a killed service leaves no git running on") {
  StallingServer stall;
  REQUIRE(stall.port() != 0);
  Repos r;
  RecordingGit rec(r.tmp / "rec");
  std::string self = fs::read_symlink("/proc/self/exe").string();
  std::vector<std::string> env = {
      "DMZ_TEST_MIRROR=" + r.mirror.string(),
      "DMZ_TEST_URL=git://127.0.0.1:" + std::to_string(stall.port()) + "/origin.git",
      "DMZ_TEST_GIT=" + rec.program.string(), std::string("PATH=") + std::getenv("PATH")};
  std::vector<std::string> args = {self, "--no-skip", "--no-intro", "--no-version",
                                   "-tc=helper: a fetch from the stalling remote*"};
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::execve(self.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }
  // git is running (the wrapper wrote its pid, then became git) and the remote has it.
  bool started = wait_for_file(rec.dir / "pids", std::chrono::seconds(30));
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  REQUIRE(started);
  pid_t git_pid = std::stoi(rec.file("pids"));
  CHECK(wait_until_gone(git_pid, std::chrono::seconds(10)));
  if (!process_gone(git_pid)) ::kill(git_pid, SIGKILL);
}

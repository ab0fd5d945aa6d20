// verify_bench: signature verification throughput of dmzbot (cold cache: a new verifier and
// cache per run) against a loop of `git verify-commit`, over the same N signed commits, for
// OpenPGP and SSH. Not part of the tests: `cmake --build build --target verify_bench`, then
// `./build/verify_bench [N]` (default 1000). Needs git, gpg and ssh-keygen on PATH.
// Threading: single-threaded, except for the pool column (`./verify_bench N THREADS`), which
// verifies with FactGatherer::prefetch on THREADS threads (default: min(4, cores)).
#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/text.hpp"
#include "bot/git/mirror.hpp"
#include "bot/trust/facts.hpp"
#include "bot/trust/gpg_signer.hpp"
#include "bot/trust/openpgp.hpp"
#include "bot/trust/signed_object.hpp"
#include "bot/trust/ssh_signer.hpp"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "verify_bench: %s\n", what.c_str());
  std::exit(1);
}

// Runs a shell command; returns its stdout (trailing newline trimmed); dies on failure.
std::string sh(const std::string& command) {
  FILE* p = ::popen(command.c_str(), "r");
  if (!p) die("popen " + command);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int rc = ::pclose(p);
  if (rc != 0) die("command failed (" + std::to_string(rc) + "): " + command);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::string git_object_id(const std::string& type, const std::string& body) {
  std::string full = type + " " + std::to_string(body.size()) + std::string(1, '\0') + body;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(full.data(), full.size(), md, &len, EVP_sha1(), nullptr);
  static const char digits[] = "0123456789abcdef";
  std::string hex;
  for (unsigned i = 0; i < len; ++i) {
    hex += digits[md[i] >> 4];
    hex += digits[md[i] & 15];
  }
  return hex;
}

std::string fold_gpgsig(const std::string& payload, std::string sig) {
  if (!sig.empty() && sig.back() == '\n') sig.pop_back();
  std::string header = "gpgsig ";
  for (char c : sig) {
    header += c;
    if (c == '\n') header += ' ';
  }
  size_t end = payload.find("\n\n");
  return payload.substr(0, end + 1) + header + "\n" + payload.substr(end + 1);
}

// Writes `n` signed commits (a chain on an empty tree) into `repo` in one `git hash-object`
// batch and points refs/heads/<branch> at the last; returns their ids, oldest first.
std::vector<std::string> make_commits(const fs::path& repo, const std::string& branch, int n,
                                      dmz::Signer& signer) {
  const std::string tree = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";  // the empty tree
  const fs::path dir = repo / ("objects-" + branch);
  fs::create_directories(dir);
  std::vector<std::string> ids;
  std::string list;
  std::int64_t t = 1700000000;
  std::string parent;
  for (int i = 0; i < n; ++i) {
    std::string payload = "tree " + tree + "\n";
    if (!parent.empty()) payload += "parent " + parent + "\n";
    std::string who = "Bench <bench@example.com> " + std::to_string(t + i) + " +0000";
    payload += "author " + who + "\ncommitter " + who + "\n\ncommit " + std::to_string(i) + "\n";
    auto sig = signer.sign(payload);
    if (!sig) die("sign: " + sig.message());
    std::string object = fold_gpgsig(payload, *sig);
    parent = git_object_id("commit", object);
    ids.push_back(parent);
    fs::path file = dir / std::to_string(i);
    std::ofstream(file, std::ios::binary) << object;
    list += file.string() + "\n";
  }
  std::ofstream(dir / "list") << list;
  std::string written = sh("cd " + dmz::sh_quote(repo.string()) +
                           " && git hash-object -t commit -w --stdin-paths < " +
                           dmz::sh_quote((dir / "list").string()));
  if (written.substr(written.size() - 40) != ids.back()) die("object ids differ from git's");
  sh("cd " + dmz::sh_quote(repo.string()) + " && git update-ref refs/heads/" + branch + " " +
     ids.back());
  fs::remove_all(dir);
  return ids;
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// dmzbot, cold: a fresh TrustKeys (fresh GnuPG home, keys imported) and a fresh cache, then
// FactGatherer::commit_fact on every commit (read, parse, verify, changed paths), as the gate and
// `dmzbot verify` do. With threads > 1, FactGatherer::prefetch first verifies on that many
// threads (what `dmzbot verify` does for a long range).
double dmzbot_run(const fs::path& repo, const dmz::trust::PolicySource& source,
                  const std::vector<std::string>& ids, const std::string& account,
                  unsigned threads) {
  auto start = Clock::now();
  auto mirror = dmz::git::Mirror::open_existing(repo);
  if (!mirror) die(mirror.message());
  auto loaded = dmz::trust::TrustKeys::load(source);
  if (!loaded.keys) die("the bench policy does not load");
  dmz::trust::FactGatherer gatherer;
  gatherer.prefetch(repo, *loaded.keys, ids, threads);
  for (const auto& id : ids) {
    auto fact = gatherer.commit_fact(**mirror, *loaded.keys, id);
    if (!fact) die(fact.message());
    if (fact->signer != account || !fact->signature_problem.empty())
      die("dmzbot verification failed: " + id + ": " + fact->signature_problem);
  }
  if (gatherer.verifications() != ids.size()) die("not every commit was verified once");
  return seconds_since(start);
}

double git_run(const fs::path& repo, const std::string& env_and_options,
               const std::vector<std::string>& ids) {
  auto start = Clock::now();
  for (const auto& id : ids) {
    std::string cmd = "cd " + dmz::sh_quote(repo.string()) + " && " + env_and_options +
                      " verify-commit " + id + " >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) die("git verify-commit failed for " + id);
  }
  return seconds_since(start);
}

struct Row {
  std::string name;
  int n;
  double dmzbot, dmzbot_pool, git;
  int threads;
};

void print(const std::vector<Row>& rows) {
  std::printf("\n%-8s %7s %16s %22s %18s %9s %9s\n", "format", "commits", "dmzbot (c/s)",
              "dmzbot pool (c/s)", "git verify (c/s)", "ratio", "ratio pool");
  for (const auto& r : rows) {
    double d = r.n / r.dmzbot, p = r.n / r.dmzbot_pool, g = r.n / r.git;
    std::printf("%-8s %7d %16.1f %15.1f (x%d) %18.1f %8.1fx %8.1fx\n", r.name.c_str(), r.n, d, p,
                r.threads, g, d / g, p / g);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);  // GPGME writes to pipes
  int n = argc > 1 ? std::atoi(argv[1]) : 1000;
  int threads = argc > 2 ? std::atoi(argv[2])
                         : static_cast<int>(std::min(4u, std::thread::hardware_concurrency()));
  if (n <= 0 || threads <= 0) die("usage: verify_bench [N] [THREADS]");
  dmz::git::init();

  char tmpl[] = "/tmp/verify_bench.XXXXXX";
  if (!::mkdtemp(tmpl)) die("mkdtemp");
  const fs::path tmp = tmpl;
  const fs::path repo = tmp / "repo.git";
  const fs::path gnupg = tmp / "gnupg";
  const std::string git = "GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1 git";
  sh(git + " init -q --bare " + dmz::sh_quote(repo.string()));
  fs::create_directories(gnupg);
  fs::permissions(gnupg, fs::perms::owner_all, fs::perm_options::replace);
  const std::string gpg = "GNUPGHOME=" + dmz::sh_quote(gnupg.string()) +
                          " gpg --batch --pinentry-mode loopback --passphrase '' ";

  std::fprintf(stderr, "generating keys and %d signed commits of each format...\n", n);
  sh(gpg + "--quick-gen-key 'Bench <bench@example.com>' ed25519 sign 1y 2>/dev/null");
  std::string fpr =
      sh(gpg + "--with-colons --list-keys bench@example.com | awk -F: '/^fpr/ {print $10; exit}'");
  std::string armored = sh(gpg + "--armor --export " + fpr);
  sh("ssh-keygen -q -t ed25519 -N '' -C bench -f " + dmz::sh_quote((tmp / "id").string()));
  std::string ssh_pub = sh("cut -d' ' -f1,2 " + dmz::sh_quote((tmp / "id.pub").string()));
  { std::ofstream(tmp / "allowed") << "bench@example.com " << ssh_pub << "\n"; }

  auto gpg_signer = dmz::GpgSigner::create(gnupg.string(), fpr);
  if (!gpg_signer) die("GpgSigner: " + gpg_signer.message());
  auto ssh_signer = dmz::SshSigner::from_file(tmp / "id");
  if (!ssh_signer) die("SshSigner: " + ssh_signer.message());
  auto t0 = Clock::now();
  auto pgp_ids = make_commits(repo, "openpgp", n, **gpg_signer);
  auto ssh_ids = make_commits(repo, "ssh", n, **ssh_signer);
  std::fprintf(stderr, "commits written in %.1fs\n", seconds_since(t0));

  dmz::trust::PolicySource source;
  source.label = "bench policy";
  source.text =
      "version = 1\n[accounts.bench]\nopenpgp = [\"" + fpr + "\"]\nssh = ['" + ssh_pub +
      "']\n[groups]\ndevs = [\"bench\"]\n[[rule]]\nbranch = \"master\"\nsigners = \"devs\"\n";
  source.armored_keys = {{"bench.asc", armored}};

  std::vector<Row> rows;
  {
    Row r{"openpgp", n, 0, 0, 0, threads};
    r.dmzbot = dmzbot_run(repo, source, pgp_ids, "bench", 1);
    r.dmzbot_pool = dmzbot_run(repo, source, pgp_ids, "bench", threads);
    r.git = git_run(repo, "GNUPGHOME=" + dmz::sh_quote(gnupg.string()) + " " + git, pgp_ids);
    rows.push_back(r);
  }
  {
    Row r{"ssh", n, 0, 0, 0, threads};
    r.dmzbot = dmzbot_run(repo, source, ssh_ids, "bench", 1);
    r.dmzbot_pool = dmzbot_run(repo, source, ssh_ids, "bench", threads);
    r.git = git_run(repo,
                    git + " -c gpg.format=ssh -c gpg.ssh.allowedSignersFile=" +
                        dmz::sh_quote((tmp / "allowed").string()),
                    ssh_ids);
    rows.push_back(r);
  }
  print(rows);
  sh("GNUPGHOME=" + dmz::sh_quote(gnupg.string()) + " gpgconf --kill all");
  fs::remove_all(tmp);
  return 0;
}

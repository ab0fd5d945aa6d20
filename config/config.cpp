// Loading and validating dmzbot's TOML configuration (toml++). Every problem is collected and
// reported as "file:line: message", pointing at the offending key, or at the table header
// when a required key is missing. Secrets are read here, once, and never appear in a message.
//
// Schema (see deploy/dmzbot.example.toml for a commented example):
//
//   data_dir = "/var/lib/dmzbot"   # mirrors, database, logs; default: the config file's dir
//
//   [server]
//   host = "127.0.0.1"             # non-empty
//   port = 8080                    # 0..65535 (0: any free port, for tests)
//   body_limit = 1048576           # bytes, 1024..67108864 (64 MiB)
//   read_timeout = 30              # seconds, 1..3600
//   answer_timeout = 30            # seconds for the service to answer, 1..3600
//   max_connections = 512          # open at once, 1..65536
//   threads = 2                    # I/O threads, 1..256
//   public_url = "https://dmzbot.example.com"   # optional; links in answers on PRs
//
//   [log]
//   format = "text"                # "text" (default) or "json": one JSON object per line
//
//   [store]
//   kind = "sqlite"                # the only kind so far
//   path = "dmzbot.db"             # relative to data_dir
//   history_days = 365             # events and outcomes older are pruned (>= 7; 0: kept forever)
//
//   [signing]                      # absent: merge commits are unsigned (a key needs its format)
//   format = "ssh"                 # "ssh" (needs key) or "openpgp" (needs fingerprint)
//   key = "keys/dmzbot_ed25519"    # ssh private key file: a readable regular file, <= 64 KiB
//   fingerprint = "ABCD..."        # openpgp key in gnupg_home: its full fingerprint (40 hex)
//   gnupg_home = "gnupg"           # must be a directory if given
//   name = "dmzbot"                # committer identity
//   email = "dmzbot@localhost"
//
//   [[repo]]                       # one per repository
//   name = "owner/name"            # required; [A-Za-z0-9._-] on both sides of one '/'
//   forge = "plain"                # plain or github; gitlab, gitea are not supported yet
//   remote = "/srv/git/x.git"      # required (but for github); URL, host:path, or a path
//   master = "master"              # valid branch names; dmz must differ from master
//   dmz = "dmz"
//   staging = "staging"            # release promotion (docs/POLICY.md, "Release promotion"):
//   production = "production"      # moved only by signed tags; all four names distinct
//   hotfix_branches = "hotfix/*"   # glob of the hotfix flow's branches (off production)
//   required_checks = ["ci/build"] # non-empty, no duplicates; default: [runner.context] when
//                                  # a runner is configured (a repo with no check at all is a
//                                  # problem: nothing would gate master)
//   check_timeout = 1800           # seconds, 1..604800 (7 days)
//   branch_patterns = ["feature/*", "bug/*", "hotfix/*"]
//   refused_patterns = ["wip/*"]
//   api_token = { file = "secrets/api.token" }   # or { env = "NAME" }; optional (absent:
//   status_token = { env = "DMZ_STATUS_TOKEN" }  # the corresponding API refuses every call)
//   policy_root = "trust/policy.toml"            # optional; a readable regular file, <= 1 MiB
//   network_timeout = 60           # seconds, 1..3600: git's connect and stalled transfer; the
//                                  # whole fetch or push is cut at ten times this
//   [repo.auth]                    # optional credentials for the remote
//   token = { file = "secrets/git.token" }  # or { env = "NAME" }: HTTPS basic auth password,
//                                           # handed to git by an askpass helper, never argv
//   username = "x-access-token"    # HTTPS basic auth user
//   ssh_key = { file = "keys/deploy_ed25519" }  # ssh private key (a regular file, <= 64 KiB)
//   known_hosts = "keys/known_hosts"            # ssh: the pinned host keys; required with
//                                               # ssh_key (host keys are always checked)
//   [repo.queue]                   # optional: how approved PRs become candidates
//   strategy = "serial"            # "serial", "batch", "train" or "adaptive"
//   max_batch = 8                  # PRs per candidate, 1..64 (default 1 for serial and
//                                  # train, 8 for batch and adaptive)
//   window_start = 4               # train/adaptive: candidates in flight at first, 1..256
//   window_floor = 1               # ... at least, 1..256 (<= window_start)
//   window_max = 20                # ... at most, 1..256 (>= window_start)
//   flaky_retries = 0              # 0..3: a failed build is built again this often before
//                                  # anyone is ejected (not with serial)
//   priority_interrupts = false    # a higher-priority PR cuts lower candidates that build
//   lanes = "none"                 # adaptive: "none", "groups" (path_groups) or "paths"
//                                  # (PRs with disjoint changed paths)
//   candidate_branch = "dmz-queue/{id}"   # each candidate's branch; "" for dmz only. dmzbot
//                                  # deletes the branches it names that are no live
//                                  # candidate's, so it must name none of master, dmz,
//                                  # staging, production, the try branches, or a branch
//                                  # the patterns or hotfix_branches match
//   [[repo.queue.path_groups]]     # lanes = "groups": name, paths (globs, queue/glob.hpp)
//   name = "docs"
//   paths = ["docs/**"]
//   [repo.github]                  # forge = "github": GitHub or GitHub Enterprise Server
//   api_url = "https://api.github.com"      # https only; https://HOST/api/v3 for GHES; the
//                                           # remote defaults to that GitHub's clone URL
//   webhook_secret = { file = "..." }       # required: X-Hub-Signature-256 is always checked
//   token = { file = "..." }                # a token, or all three of:
//   app_id = 123                            #   a GitHub App (1..2^53)
//   installation_id = 456                   #   its installation on the repository
//   private_key = { file = "app.pem" }      #   its RSA private key (PEM, unencrypted)
//   merge_label = "dmz:merge"               # at most 50 characters
//   merge_masters = ["alice", "octo/release-team"]  # required, logins or org/team-slug
//   ca_file = "certs/ghes-ca.pem"           # an extra CA (PEM) for a GHES with a private CA
//   bot_name = "dmzbot"                     # the login comments address ("@dmzbot merge")
//   reconcile_interval = 60                 # seconds, 5..3600: the REST API read back
//   permission_cache = 60                   # seconds, 0..3600: merge master checks cached
//   status_labels = false                   # dmz:queued / dmz:failed labels on the PRs
//   try_branch = "dmz-try"                  # `try` builds go to <try_branch>/<number>
//   hook_id = 123456                        # optional: the repository webhook (1..2^53);
//                                           # its failed deliveries are asked for again
//                                           # (an App's own webhook's always are)
//   check_sources = { build = "github-actions" }  # optional: a required check -> the App
//                                           # (slug) or login whose reports of it alone
//                                           # count (statuses also from "slug[bot]"); each
//                                           # key must be in required_checks
//   [repo.runner]                  # optional local CI runner
//   command = "make test"          # required
//   context = "dmzbot/local"
//   timeout = 600                  # seconds, 1..86400 (24 hours)
//   max_parallel = 2               # 1..64
//   max_log_mib = 64               # 1..4096: a build whose log passes it is stopped, failed
//   log_days = 30                  # 1..3650: older build logs are deleted
//   sandbox = "bwrap"              # "bwrap" (bubblewrap, the default) or "none"
//   network = false                # with bwrap: whether the build may use the network
//
// Durations are integer seconds. Relative paths (data_dir, signing.key, signing.gnupg_home,
// token files, policy_root, and a remote that is a local path) are resolved against the config
// file's directory; store.path is resolved against data_dir. Token files are trimmed of
// surrounding whitespace and must not be empty; an inline string token is refused.
//
// Every file named here is read with base/file.hpp's read_regular_file: a symlink is followed,
// but what it reaches must be a regular file (never a device or a FIFO, which could grow memory
// without bound or block), of at most 64 KiB for a token or key, 1 MiB for the configuration
// file and a policy. Problems echo values with their control characters escaped (\n, \x1b),
// so that each is one line.
#include "config/config.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <map>
#include <set>

#include "base/crypto.hpp"
#include "base/file.hpp"
#include "base/git_remote.hpp"
#include "base/log.hpp"
#include "base/text.hpp"
#include "base/url.hpp"
#include "config/toml_words.hpp"
#include "queue/glob.hpp"

namespace dmz::config {
// By hand: config/ does not link libgit2 (whose git_reference_name_is_valid the mirror uses).
bool valid_branch_name(std::string_view b) {
  if (b.empty() || b == "@" || b.front() == '-' || b.back() == '.') return false;
  if (b.find("..") != std::string_view::npos || b.find("@{") != std::string_view::npos)
    return false;
  for (char c : b) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || std::strchr(" ~^:?*[\\", c)) return false;
  }
  for (std::size_t at = 0; at <= b.size();) {  // each part between slashes
    const std::size_t end = std::min(b.find('/', at), b.size());
    const std::string_view part = b.substr(at, end - at);
    if (part.empty() || part.front() == '.' || part.ends_with(".lock")) return false;
    at = end + 1;
  }
  return true;
}

namespace {

// Why OpenSSL cannot take `pem` as a CA file, as the HTTP client will load it (armour around
// bad base64 passes a text search), or nothing when it holds certificates that all read.
std::optional<std::string> pem_certificates_problem(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (!bio) return "cannot be read: out of memory";
  ERR_clear_error();
  int certificates = 0;
  for (int i = 0; i < 10'000; ++i) {  // bounded: the file is at most kMaxPolicyFileBytes
    X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    if (!cert) break;
    X509_free(cert);
    ++certificates;
  }
  const unsigned long err = ERR_peek_last_error();
  BIO_free(bio);
  ERR_clear_error();
  // Running out of PEM blocks is how every read ends.
  const bool at_end = ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE;
  if (err != 0 && !at_end) {
    char text[256] = {};
    ERR_error_string_n(err, text, sizeof text);
    return "holds a certificate OpenSSL cannot read (" + std::string(text) + ")";
  }
  if (certificates == 0) return "holds no PEM certificate";
  return std::nullopt;
}

namespace fs = std::filesystem;

std::string trim(std::string s) {
  auto ws = [](unsigned char c) { return std::isspace(c) != 0; };
  while (!s.empty() && ws(static_cast<unsigned char>(s.back()))) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && ws(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

bool valid_repo_name(std::string_view name) {
  auto slash = name.find('/');
  if (slash == std::string_view::npos || name.find('/', slash + 1) != std::string_view::npos)
    return false;
  auto part_ok = [](std::string_view p) {
    if (p.empty() || p == "." || p == "..") return false;
    return std::all_of(p.begin(), p.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
    });
  };
  return part_ok(name.substr(0, slash)) && part_ok(name.substr(slash + 1));
}

// Whether two branches collide: the same name, or one under the other (git cannot hold
// refs/heads/a beside refs/heads/a/b).
bool branches_nest(const std::string& a, const std::string& b) {
  return !a.empty() && !b.empty() && (a == b || a.starts_with(b + "/") || b.starts_with(a + "/"));
}

// A GitHub login: letters, digits and single hyphens, at most 39 characters.
bool valid_login(std::string_view s) {
  if (s.empty() || s.size() > 39 || s.front() == '-' || s.back() == '-') return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-';
  });
}

// "org/team-slug": a login, then a team slug (letters, digits, '-', '_', '.').
bool valid_team(std::string_view s) {
  auto slash = s.find('/');
  if (slash == std::string_view::npos || !valid_login(s.substr(0, slash))) return false;
  auto slug = s.substr(slash + 1);
  return !slug.empty() && slug.size() <= 100 && std::all_of(slug.begin(), slug.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

// The clone URL of `repo` on the GitHub that serves `api_url`: github.com for
// api.github.com, the same host for a GHES (https://HOST/api/v3).
std::string github_clone_url(const Url& api, const std::string& repo) {
  std::string host = api.host == "api.github.com" ? std::string("github.com") : api.authority();
  return api.scheme + "://" + host + "/" + repo + ".git";
}

std::string octal(unsigned mode) {
  char out[8];
  std::snprintf(out, sizeof out, "%04o", mode);
  return out;
}

class Loader {
 public:
  Loader(std::string file, fs::path base) : file_(std::move(file)), base_(std::move(base)) {}

  std::vector<Problem> problems;

  void problem(int line, std::string message) {
    problems.push_back({file_, line, std::move(message)});
  }
  void problem(const toml::node& n, std::string message) {
    problem(line_of(n), std::move(message));
  }

  fs::path resolve(const std::string& p) const {
    fs::path path(p);
    return path.is_absolute() ? path.lexically_normal() : (base_ / path).lexically_normal();
  }

  // Reports every key of `t` not in `allowed`, at the key's line.
  void unknown_keys(const toml::table& t, std::initializer_list<std::string_view> allowed,
                    std::string_view where) {
    for (auto&& [k, v] : t) {
      if (std::find(allowed.begin(), allowed.end(), k.str()) != allowed.end()) continue;
      int line = k.source().begin.line ? static_cast<int>(k.source().begin.line) : line_of(v);
      std::string msg = "unknown key '" + std::string(k.str()) + "'";
      msg += where.empty() ? std::string(" at the top level") : " in " + std::string(where);
      problem(line, msg);
    }
  }

  // Typed getters: nullptr/nullopt when absent; a problem and nullopt when of the wrong type.
  const toml::table* table(const toml::table& t, std::string_view key, const std::string& name) {
    const toml::node* n = t.get(key);
    if (!n) return nullptr;
    if (!n->is_table()) {
      problem(*n, name + " must be a table, not " + std::string(type_name(*n)));
      return nullptr;
    }
    return n->as_table();
  }
  std::optional<std::string> string(const toml::table& t, std::string_view key,
                                    const std::string& name, bool non_empty = true) {
    const toml::node* n = t.get(key);
    if (!n) return std::nullopt;
    if (!n->is_string()) {
      problem(*n, name + " must be a string, not " + std::string(type_name(*n)));
      return std::nullopt;
    }
    std::string s = n->as_string()->get();
    if (non_empty && s.empty()) {
      problem(*n, name + " must not be empty");
      return std::nullopt;
    }
    return s;
  }
  // An integer in [min, max]; `unit` ("seconds", "bytes") and `max_in_words` ("7 days") make
  // the range readable in the message.
  std::optional<std::int64_t> integer(const toml::table& t, std::string_view key,
                                      const std::string& name, std::int64_t min, std::int64_t max,
                                      std::string_view unit = {},
                                      std::string_view max_in_words = {}) {
    const toml::node* n = t.get(key);
    if (!n) return std::nullopt;
    if (!n->is_integer()) {
      problem(*n, name + " must be an integer, not " + std::string(type_name(*n)));
      return std::nullopt;
    }
    std::int64_t v = n->as_integer()->get();
    if (v < min || v > max) {
      std::string range = "between " + std::to_string(min) + " and " + std::to_string(max);
      if (!unit.empty()) range += " " + std::string(unit);
      if (!max_in_words.empty()) range += " (" + std::string(max_in_words) + ")";
      problem(*n, name + " must be " + range + ", not " + std::to_string(v));
      return std::nullopt;
    }
    return v;
  }
  std::optional<std::vector<std::string>> strings(const toml::table& t, std::string_view key,
                                                  const std::string& name) {
    const toml::node* n = t.get(key);
    if (!n) return std::nullopt;
    const toml::array* a = n->as_array();
    bool ok = a != nullptr;
    std::vector<std::string> out;
    if (a) {
      for (const auto& el : *a) {
        if (!el.is_string()) {
          ok = false;
          break;
        }
        out.push_back(el.as_string()->get());
      }
    }
    if (!ok) {
      problem(*n, name + " must be an array of strings");
      return std::nullopt;
    }
    std::set<std::string> seen;
    for (std::size_t i = 0; i < out.size(); ++i) {
      const toml::node& el = *a->get(i);
      if (out[i].empty()) {
        problem(el, name + " has an empty entry");
        ok = false;
      } else if (!seen.insert(out[i]).second) {
        problem(el, name + " lists '" + out[i] + "' twice");
        ok = false;
      }
    }
    if (!ok) return std::nullopt;
    return out;
  }

  // api_token = { file = "..." } or { env = "NAME" }. Never echoes the value. A token or a
  // webhook secret is `one_line`: a second line (a comment above the token, say) or another
  // control character would only fail later, in git or in an HTTP header, far from here.
  std::optional<Secret> secret(const toml::table& t, std::string_view key, const std::string& name,
                               bool one_line = true) {
    auto control = [](std::string_view v) {
      return std::any_of(v.begin(), v.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; });
    };
    const toml::node* n = t.get(key);
    if (!n) return std::nullopt;
    if (n->is_string()) {
      problem(*n, name + " is inline: secrets must come from a file or the environment (" +
                      std::string(key) + " = { file = \"...\" } or { env = \"NAME\" })");
      return std::nullopt;
    }
    if (!n->is_table()) {
      problem(*n, name + " must be a table { file = \"...\" } or { env = \"NAME\" }, not " +
                      std::string(type_name(*n)));
      return std::nullopt;
    }
    const toml::table& st = *n->as_table();
    unknown_keys(st, {"file", "env"}, name);
    auto file = string(st, "file", name + ".file");
    auto env = string(st, "env", name + ".env");
    if (st.contains("file") && st.contains("env")) {
      problem(*n, name + " must have either 'file' or 'env', not both");
      return std::nullopt;
    }
    if (!st.contains("file") && !st.contains("env")) {
      problem(*n, name + " must have 'file' or 'env'");
      return std::nullopt;
    }
    if (file) {
      fs::path path = resolve(*file);
      secret_files_.push_back(path);
      auto content = read_regular_file(path, kMaxSecretFileBytes);
      const toml::node& at = *st.get("file");
      if (!content) {
        problem(at, name + " file " + content.message());
        return std::nullopt;
      }
      std::string value = trim(std::move(*content));
      if (value.empty()) {
        problem(at, name + " file '" + path.string() + "' is empty");
        return std::nullopt;
      }
      if (one_line && control(value)) {
        problem(at, name + " file '" + path.string() +
                        "' holds more than one line or a control character: it must hold the "
                        "secret alone, on one line");
        return std::nullopt;
      }
      return Secret(std::move(value));
    }
    if (env) {
      const toml::node& at = *st.get("env");
      const char* v = std::getenv(env->c_str());
      if (!v) {
        problem(at, name + ": environment variable " + *env + " is not set");
        return std::nullopt;
      }
      std::string value = trim(v);
      if (value.empty()) {
        problem(at, name + ": environment variable " + *env + " is empty");
        return std::nullopt;
      }
      if (one_line && control(value)) {
        problem(at, name + ": environment variable " + *env +
                        " holds more than one line or a control character");
        return std::nullopt;
      }
      return Secret(std::move(value));
    }
    return std::nullopt;  // the wrong type was reported by string()
  }

  void missing(const toml::table& t, std::string_view key, std::string_view where) {
    problem(line_of(t), "missing required key '" + std::string(key) + "' in " + std::string(where));
  }

  // ---- Sections ----------------------------------------------------------------------------

  void server(const toml::table& root, Server& s) {
    const toml::table* t = table(root, "server", "server");
    if (!t) return;
    unknown_keys(*t,
                 {"host", "port", "body_limit", "read_timeout", "answer_timeout", "max_connections",
                  "threads", "public_url"},
                 "[server]");
    if (auto v = string(*t, "host", "server.host")) s.host = *v;
    if (auto v = integer(*t, "port", "server.port", 0, 65535))
      s.port = static_cast<std::uint16_t>(*v);
    if (auto v = integer(*t, "body_limit", "server.body_limit", 1024, 64 << 20, "bytes", "64 MiB"))
      s.body_limit = static_cast<std::size_t>(*v);
    if (auto v = integer(*t, "read_timeout", "server.read_timeout", 1, 3600, "seconds", "1 hour"))
      s.read_timeout = std::chrono::seconds(*v);
    if (auto v =
            integer(*t, "answer_timeout", "server.answer_timeout", 1, 3600, "seconds", "1 hour"))
      s.answer_timeout = std::chrono::seconds(*v);
    if (auto v = integer(*t, "max_connections", "server.max_connections", 1, 65536))
      s.max_connections = static_cast<int>(*v);
    if (auto v = integer(*t, "threads", "server.threads", 1, 256)) s.threads = static_cast<int>(*v);
    if (auto v = string(*t, "public_url", "server.public_url")) {
      if (auto url = parse_url(*v); !url)
        problem(*t->get("public_url"), "server.public_url: " + url.message());
      else
        s.public_url = v->back() == '/' ? v->substr(0, v->size() - 1) : *v;
    }
  }

  void log_section(const toml::table& root, std::string& format) {
    const toml::table* t = table(root, "log", "log");
    if (!t) return;
    unknown_keys(*t, {"format"}, "[log]");
    if (auto v = string(*t, "format", "log.format")) {
      if (log::parse_format(*v))
        format = *v;
      else
        problem(*t->get("format"), "log.format '" + *v + "' must be \"text\" or \"json\"");
    }
  }

  void store(const toml::table& root, Store& s, const fs::path& data_dir) {
    const toml::table* t = table(root, "store", "store");
    if (t) {
      unknown_keys(*t, {"kind", "path", "history_days"}, "[store]");
      if (auto v = string(*t, "kind", "store.kind")) {
        if (*v == "sqlite")
          s.kind = *v;
        else
          problem(*t->get("kind"), "store.kind '" + *v + "' is not supported (use \"sqlite\")");
      }
      if (auto v = string(*t, "path", "store.path")) s.path = *v;
      if (auto v =
              integer(*t, "history_days", "store.history_days", 0, 36500, "days", "100 years")) {
        // The event log also dates PR heads for approvals and replayed webhooks (a week).
        if (*v > 0 && *v < 7)
          problem(*t->get("history_days"),
                  "store.history_days must be 0 (kept forever) or at least 7, not " +
                      std::to_string(*v));
        else
          s.history_days = static_cast<int>(*v);
      }
    }
    if (s.path.is_relative()) s.path = (data_dir / s.path).lexically_normal();
  }

  void signing(const toml::table& root, Signing& s) {
    const toml::table* t = table(root, "signing", "signing");
    if (!t) return;
    unknown_keys(*t, {"format", "key", "fingerprint", "gnupg_home", "name", "email"}, "[signing]");
    // Written into each merge commit's committer line: a newline or an angle bracket would
    // break the header.
    for (auto [key, field] : {std::pair{"name", &s.name}, std::pair{"email", &s.email}})
      if (auto v = string(*t, key, std::string("signing.") + key)) {
        const bool ok = !v->empty() && std::none_of(v->begin(), v->end(), [](unsigned char c) {
          return c < 0x20 || c == 0x7f || c == '<' || c == '>';
        });
        if (ok)
          *field = *v;
        else
          problem(*t->get(key), std::string("signing.") + key +
                                    " must not be empty or hold a control character, '<' or '>'");
      }
    if (auto v = string(*t, "fingerprint", "signing.fingerprint")) {
      // The full fingerprint (40 hex digits, as the signer takes it): a short key id can name
      // another key.
      const bool hex =
          std::all_of(v->begin(), v->end(), [](unsigned char c) { return std::isxdigit(c) != 0; });
      if (!hex || v->size() != 40)
        problem(*t->get("fingerprint"),
                "signing.fingerprint must be the key's full fingerprint (40 hex digits, no "
                "spaces), not '" +
                    *v + "'");
      s.fingerprint = *v;
    }
    if (auto v = string(*t, "gnupg_home", "signing.gnupg_home")) {
      s.gnupg_home = resolve(*v);
      std::error_code ec;
      if (!fs::is_directory(s.gnupg_home, ec))
        problem(*t->get("gnupg_home"),
                "signing.gnupg_home '" + s.gnupg_home.string() + "' is not a directory");
    }
    if (auto v = string(*t, "key", "signing.key")) {
      s.key = resolve(*v);
      auto content = read_regular_file(s.key, kMaxSecretFileBytes);
      if (!content)
        problem(*t->get("key"), "signing.key file " + content.message());
      else if (content->empty())
        problem(*t->get("key"), "signing.key file '" + s.key.string() + "' is empty");
      else if (content->find("-----BEGIN OPENSSH PRIVATE KEY-----") == std::string::npos)
        problem(*t->get("key"), "signing.key file '" + s.key.string() +
                                    "' is not an OpenSSH private key (a public key, or PEM?): "
                                    "give the private key ssh-keygen wrote, without a passphrase");
    }
    if (!t->contains("format")) {
      // A key without a format would leave every merge unsigned, silently.
      for (const char* k : {"key", "fingerprint", "gnupg_home"})
        if (const toml::node* given = t->get(k)) {
          problem(*given, std::string("signing.") + k +
                              " is set but signing.format is not (\"ssh\" or \"openpgp\"): "
                              "merges would not be signed");
          break;
        }
      return;
    }
    auto format = string(*t, "format", "signing.format");
    if (!format) return;
    const toml::node& at = *t->get("format");
    if (*format == "ssh") {
      if (!t->contains("key")) problem(at, "signing.format \"ssh\" needs signing.key");
    } else if (*format == "openpgp") {
      if (!t->contains("fingerprint"))
        problem(at, "signing.format \"openpgp\" needs signing.fingerprint");
    } else {
      problem(at, "signing.format must be \"ssh\" or \"openpgp\", not '" + *format + "'");
      return;
    }
    s.format = *format;
    // A key that cannot be loaded (check-config and serve try) is reported at this line.
    const toml::node* named = t->get(*format == "ssh" ? "key" : "fingerprint");
    s.line = line_of(named ? *named : at);
  }

  std::optional<Runner> runner(const toml::table& repo) {
    const toml::table* t = table(repo, "runner", "repo.runner");
    if (!t) return std::nullopt;
    Runner r;
    bool ok = true;
    unknown_keys(*t,
                 {"command", "context", "timeout", "max_parallel", "sandbox", "network",
                  "max_log_mib", "log_days"},
                 "[repo.runner]");
    if (auto v = string(*t, "command", "repo.runner.command"))
      r.command = *v;
    else
      ok = false;
    if (!t->contains("command")) missing(*t, "command", "[repo.runner]");
    if (auto v = string(*t, "context", "repo.runner.context")) r.context = *v;
    if (auto v = integer(*t, "timeout", "repo.runner.timeout", 1, 24 * 3600, "seconds", "24 hours"))
      r.timeout = std::chrono::seconds(*v);
    if (auto v = integer(*t, "max_parallel", "repo.runner.max_parallel", 1, 64))
      r.max_parallel = static_cast<int>(*v);
    if (auto v = integer(*t, "max_log_mib", "repo.runner.max_log_mib", 1, 4096))
      r.max_log_mib = static_cast<int>(*v);
    if (auto v = integer(*t, "log_days", "repo.runner.log_days", 1, 3650))
      r.log_days = static_cast<int>(*v);
    if (auto v = string(*t, "sandbox", "repo.runner.sandbox")) {
      if (*v == "bwrap" || *v == "none")
        r.sandbox = *v;
      else
        problem(*t->get("sandbox"),
                "repo.runner.sandbox must be \"bwrap\" or \"none\", not \"" + *v + "\"");
    }
    if (const toml::node* n = t->get("network")) {
      if (n->is_boolean())
        r.network = n->as_boolean()->get();
      else
        problem(*n, "repo.runner.network must be a boolean, not " + std::string(type_name(*n)));
    }
    if (!ok) return std::nullopt;
    return r;
  }

  Queue queue_section(const toml::table& repo) {
    Queue q;
    const toml::table* t = table(repo, "queue", "repo.queue");
    if (!t) return q;
    unknown_keys(
        *t,
        {"strategy", "max_batch", "window_start", "window_floor", "window_max", "flaky_retries",
         "priority_interrupts", "lanes", "path_groups", "candidate_branch"},
        "[repo.queue]");
    if (auto v = string(*t, "strategy", "repo.queue.strategy")) {
      if (auto st = queue::parse_strategy(*v))
        q.strategy = *st;
      else
        problem(*t->get("strategy"),
                "repo.queue.strategy must be \"serial\", \"batch\", "
                "\"train\" or \"adaptive\", not \"" +
                    *v + "\"");
    }
    const bool batches =
        q.strategy == queue::Strategy::Batch || q.strategy == queue::Strategy::Adaptive;
    q.max_batch = batches ? 8 : 1;
    if (auto v = integer(*t, "max_batch", "repo.queue.max_batch", 1, 64))
      q.max_batch = static_cast<int>(*v);
    if (auto v = integer(*t, "window_start", "repo.queue.window_start", 1, 256))
      q.window_start = static_cast<int>(*v);
    if (auto v = integer(*t, "window_floor", "repo.queue.window_floor", 1, 256))
      q.window_floor = static_cast<int>(*v);
    if (auto v = integer(*t, "window_max", "repo.queue.window_max", 1, 256))
      q.window_max = static_cast<int>(*v);
    if (q.window_floor > q.window_start || q.window_start > q.window_max)
      problem(line_of(*t), "[repo.queue] needs window_floor <= window_start <= window_max (" +
                               std::to_string(q.window_floor) + ", " +
                               std::to_string(q.window_start) + ", " +
                               std::to_string(q.window_max) + ")");
    if (auto v = integer(*t, "flaky_retries", "repo.queue.flaky_retries", 0, 3)) {
      q.flaky_retries = static_cast<int>(*v);
      if (q.flaky_retries > 0 && q.strategy == queue::Strategy::Serial)
        problem(*t->get("flaky_retries"),
                "repo.queue.flaky_retries needs strategy \"batch\", \"train\" or "
                "\"adaptive\" (serial fails a candidate at its first failure)");
    }
    if (const toml::node* n = t->get("priority_interrupts")) {
      if (n->is_boolean())
        q.priority_interrupts = n->as_boolean()->get();
      else
        problem(*n, "repo.queue.priority_interrupts must be a boolean, not " +
                        std::string(type_name(*n)));
    }
    if (auto v = string(*t, "lanes", "repo.queue.lanes")) {
      if (auto l = queue::parse_lanes(*v)) {
        q.lanes = *l;
        if (q.lanes != queue::Lanes::None && q.strategy != queue::Strategy::Adaptive)
          problem(*t->get("lanes"), "repo.queue.lanes needs strategy \"adaptive\"");
      } else {
        problem(*t->get("lanes"),
                "repo.queue.lanes must be \"none\", \"groups\" or "
                "\"paths\", not \"" +
                    *v + "\"");
      }
    }
    if (const toml::node* n = t->get("path_groups")) {
      const toml::array* groups = n->as_array();
      if (!groups || !groups->is_array_of_tables()) {
        problem(*n,
                "repo.queue.path_groups must be an array of tables ([[repo.queue.path_groups]])");
      } else {
        std::set<std::string> names;
        for (const auto& el : *groups) {
          const toml::table& g = *el.as_table();
          unknown_keys(g, {"name", "paths"}, "[[repo.queue.path_groups]]");
          queue::PathGroup group;
          if (auto v = string(g, "name", "repo.queue.path_groups.name")) {
            if (!names.insert(*v).second)
              problem(*g.get("name"), "repo.queue.path_groups has '" + *v + "' twice");
            group.name = *v;
          } else if (!g.contains("name")) {
            missing(g, "name", "[[repo.queue.path_groups]]");
          }
          if (auto v = strings(g, "paths", "repo.queue.path_groups.paths")) {
            if (v->empty()) problem(*g.get("paths"), "repo.queue.path_groups.paths is empty");
            group.globs = *v;
          } else if (!g.contains("paths")) {
            missing(g, "paths", "[[repo.queue.path_groups]]");
          }
          q.path_groups.push_back(std::move(group));
        }
        if (q.lanes != queue::Lanes::Groups)
          problem(*n, "repo.queue.path_groups are used only with lanes = \"groups\"");
      }
    } else if (q.lanes == queue::Lanes::Groups) {
      problem(*t->get("lanes"), "repo.queue.lanes = \"groups\" needs [[repo.queue.path_groups]]");
    }
    if (auto v = string(*t, "candidate_branch", "repo.queue.candidate_branch", false)) {
      const toml::node& at = *t->get("candidate_branch");
      const auto brace = v->find("{id}");
      const std::string sample = candidate_branch(*v, 1);
      if (v->empty()) {
        q.candidate_branch.clear();
      } else if (brace == std::string::npos || v->find("{id}", brace + 1) != std::string::npos) {
        problem(at, "repo.queue.candidate_branch must hold \"{id}\" once, not '" + *v + "'");
      } else if (!valid_branch_name(sample)) {
        problem(at, "repo.queue.candidate_branch '" + *v + "' makes invalid branch names");
      } else {
        q.candidate_branch = *v;
      }
    }
    return q;
  }

  // dmzbot deletes every branch the candidate pattern names that is not a live candidate
  // (GitWorker::prune_candidates): none of them may be anyone else's (master, dmz, staging,
  // production, a hotfix's, a PR's), and none may sit where git cannot hold it beside one of
  // those. The try branch is compared in check_try_branch, which runs after [repo.github].
  void check_candidate_branch(const toml::table& t, const Repo& r) {
    const std::string& pattern = r.queue.candidate_branch;
    if (pattern.empty()) return;
    const std::string sample = candidate_branch(pattern, 1);
    std::string under, clash;
    for (const auto* b : {&r.master, &r.dmz, &r.staging, &r.production}) {
      if (candidate_of_branch(pattern, *b))
        clash = *b;
      else if (branches_nest(sample, *b))
        under = *b;
    }
    if (!r.hotfix_branches.empty() && queue::glob_match(r.hotfix_branches, sample))
      clash = r.hotfix_branches;
    for (const auto* patterns : {&r.branch_patterns, &r.refused_patterns})
      for (const auto& p : *patterns)
        if (queue::glob_match(p, sample)) clash = p;
    if (clash.empty() && under.empty()) return;
    // At the key, or where the default was taken: [repo.queue], else [[repo]].
    const toml::table* q = t.get_as<toml::table>("queue");
    const toml::node* key = q ? q->get("candidate_branch") : nullptr;
    const int line = key ? line_of(*key) : q ? line_of(*q) : r.line;
    if (!clash.empty())
      problem(line, "repo.queue.candidate_branch '" + pattern + "' overlaps '" + clash +
                        "': dmzbot deletes the branches it names that are not live candidates");
    else
      problem(line, "repo.queue.candidate_branch '" + pattern + "' " +
                        (sample.starts_with(under + "/") ? "is under " + under + "/"
                                                         : "holds " + under + " under it") +
                        ", which git cannot hold beside the branch itself");
  }

  // adaptive builds probes beside the train, never on dmz: without candidate branches a CI
  // that builds pushed branches never sees them, and each probed PR fails on its timeout.
  // The local runner builds from the mirror and needs no branch.
  void check_probes_have_branches(const toml::table& t, const Repo& r) {
    if (r.queue.strategy != queue::Strategy::Adaptive || !r.queue.candidate_branch.empty()) return;
    const std::string local = r.runner ? r.runner->context : std::string();
    if (std::all_of(r.required_checks.begin(), r.required_checks.end(),
                    [&](const std::string& c) { return c == local; }))
      return;
    const toml::table* q = t.get_as<toml::table>("queue");
    const toml::node* key = q ? q->get("candidate_branch") : nullptr;
    problem(key ? line_of(*key) : r.line,
            "repo.queue.candidate_branch = \"\" leaves strategy \"adaptive\" no branch to push "
            "its probes to (they are built beside the train, never on dmz), so CI could not "
            "build them: keep a pattern such as \"dmz-queue/{id}\"");
  }

  // dmzbot deletes the branches <try_branch>/<number> of PRs it does not follow: none of them
  // may be a branch of anyone else's (master, dmz, a candidate's, a hotfix, a PR's).
  void check_try_branch(const toml::table& t, const Repo& r) {
    const std::string& prefix = r.github->try_branch;
    const std::string sample = prefix + "/1";
    std::string clash;
    for (const auto* b : {&r.master, &r.dmz, &r.staging, &r.production})
      if (branches_nest(prefix, *b)) clash = *b;
    if (!r.queue.candidate_branch.empty() &&
        (branches_nest(candidate_branch(r.queue.candidate_branch, 1), prefix) ||
         candidate_of_branch(r.queue.candidate_branch, sample)))
      clash = r.queue.candidate_branch;
    if (!r.hotfix_branches.empty() && queue::glob_match(r.hotfix_branches, sample))
      clash = r.hotfix_branches;
    for (const auto& pattern : r.branch_patterns)
      if (queue::glob_match(pattern, sample)) clash = pattern;
    if (clash.empty()) return;
    const toml::node* github = t.get("github");
    const toml::node* at = github->as_table()->get("try_branch");
    problem(at ? line_of(*at) : line_of(*github),
            "repo.github.try_branch '" + prefix + "' overlaps '" + clash +
                "': dmzbot deletes the try branches of pull requests it does not follow");
  }

  Auth auth(const toml::table& repo) {
    Auth a;
    const toml::table* t = table(repo, "auth", "repo.auth");
    if (!t) return a;
    unknown_keys(*t, {"token", "username", "ssh_key", "known_hosts"}, "[repo.auth]");
    if (auto v = secret(*t, "token", "repo.auth.token")) a.token = std::move(*v);
    if (auto v = string(*t, "username", "repo.auth.username")) {
      if (v->empty() || v->find_first_of(":@/\n\r") != std::string::npos)
        problem(*t->get("username"),
                "repo.auth.username must be a non-empty name without ':', '@', '/' or newlines");
      else
        a.username = *v;
    }
    if (const toml::node* n = t->get("ssh_key")) {
      // A key is a file for ssh -i: { file = "..." } (an environment variable cannot be one).
      const toml::table* kt = n->as_table();
      auto file =
          kt && kt->contains("file") ? string(*kt, "file", "repo.auth.ssh_key.file") : std::nullopt;
      if (!file) {
        problem(*n, "repo.auth.ssh_key must be { file = \"...\" }");
      } else {
        unknown_keys(*kt, {"file"}, "repo.auth.ssh_key");
        a.ssh_key = resolve(*file);
        secret_files_.push_back(a.ssh_key);
        struct stat st {};
        if (auto content = read_regular_file(a.ssh_key, kMaxSecretFileBytes); !content)
          problem(*kt->get("file"), "repo.auth.ssh_key file " + content.message());
        else if (::stat(a.ssh_key.c_str(), &st) == 0 && (st.st_mode & 077) != 0)
          // ssh ignores such a key ("permissions are too open"): every fetch would fail.
          problem(*kt->get("file"), "repo.auth.ssh_key file '" + a.ssh_key.string() +
                                        "' is readable by others (mode " +
                                        octal(st.st_mode & 0777) + "); ssh refuses it: chmod 600");
      }
    }
    if (auto v = string(*t, "known_hosts", "repo.auth.known_hosts")) {
      a.known_hosts = resolve(*v);
      if (auto content = read_regular_file(a.known_hosts, kMaxPolicyFileBytes); !content)
        problem(*t->get("known_hosts"), "repo.auth.known_hosts " + content.message());
    }
    if (!a.ssh_key.empty() && a.known_hosts.empty())
      problem(line_of(*t),
              "[repo.auth] has ssh_key but no known_hosts: the remote's host key must be pinned");
    return a;
  }

  // [repo.github]: where the API is, how dmzbot authenticates to it and to its webhooks, and
  // who may approve. Secrets are read here; the App key must be an RSA key that signs.
  std::optional<GitHub> github(const toml::table& repo) {
    const toml::table* t = table(repo, "github", "repo.github");
    if (!t) return std::nullopt;
    GitHub g;
    unknown_keys(*t,
                 {"api_url", "webhook_secret", "token", "app_id", "installation_id", "private_key",
                  "merge_label", "merge_masters", "ca_file", "bot_name", "reconcile_interval",
                  "permission_cache", "status_labels", "try_branch", "check_sources", "hook_id"},
                 "[repo.github]");
    if (auto v = string(*t, "api_url", "repo.github.api_url")) {
      auto url = parse_url(*v);
      if (!url)
        problem(*t->get("api_url"), "repo.github.api_url: " + url.message());
      else if (url->scheme != "https")
        problem(*t->get("api_url"), "repo.github.api_url must be https:// (tokens travel on it)");
      else if (url->path.find('?') != std::string::npos)
        problem(*t->get("api_url"), "repo.github.api_url must not have a query");
      else
        g.api_url = v->back() == '/' ? v->substr(0, v->size() - 1) : *v;
    }
    if (auto v = secret(*t, "webhook_secret", "repo.github.webhook_secret"))
      g.webhook_secret = std::move(*v);
    else if (!t->contains("webhook_secret"))
      missing(*t, "webhook_secret", "[repo.github] (webhooks are never taken unsigned)");
    if (auto v = secret(*t, "token", "repo.github.token")) g.token = std::move(*v);
    if (auto v = integer(*t, "app_id", "repo.github.app_id", 1, std::int64_t{1} << 53))
      g.app_id = *v;
    if (auto v =
            integer(*t, "installation_id", "repo.github.installation_id", 1, std::int64_t{1} << 53))
      g.installation_id = *v;
    if (auto v = secret(*t, "private_key", "repo.github.private_key", /*one_line=*/false)) {
      if (auto signed_ = rs256_sign(v->reveal(), "probe"); !signed_)
        problem(*t->get("private_key"), "repo.github.private_key: " + signed_.message());
      else
        g.private_key = std::move(*v);
    }
    const bool has_token = t->contains("token");
    const int app_keys = int(t->contains("app_id")) + int(t->contains("installation_id")) +
                         int(t->contains("private_key"));
    if (has_token && app_keys > 0)
      problem(line_of(*t),
              "[repo.github] has both token and GitHub App keys: use one way to authenticate");
    else if (!has_token && app_keys == 0)
      problem(line_of(*t), "[repo.github] needs token, or app_id, installation_id and private_key");
    else if (!has_token && app_keys != 3)
      problem(
          line_of(*t),
          "[repo.github] needs all of app_id, installation_id and private_key for a GitHub App");
    if (auto v = string(*t, "merge_label", "repo.github.merge_label")) {
      if (v->size() > 50 || has_control(*v))
        problem(*t->get("merge_label"),
                "repo.github.merge_label must be at most 50 characters, without control "
                "characters");
      else
        g.merge_label = *v;
    }
    if (auto v = strings(*t, "merge_masters", "repo.github.merge_masters")) {
      for (std::size_t i = 0; i < v->size(); ++i) {
        const std::string& who = (*v)[i];
        if (!valid_login(who) && !valid_team(who))
          problem(*t->get("merge_masters")->as_array()->get(i),
                  "repo.github.merge_masters: '" + who +
                      "' is neither a GitHub login nor \"org/team-slug\"");
      }
      g.merge_masters = *v;
      if (v->empty())
        problem(*t->get("merge_masters"),
                "repo.github.merge_masters is empty: nobody could approve a pull request");
    } else if (!t->contains("merge_masters")) {
      missing(*t, "merge_masters", "[repo.github] (who may approve)");
    }
    if (auto v = string(*t, "ca_file", "repo.github.ca_file")) {
      g.ca_file = resolve(*v);
      auto content = read_regular_file(g.ca_file, kMaxPolicyFileBytes);
      if (!content)
        problem(*t->get("ca_file"), "repo.github.ca_file " + content.message());
      else if (auto why = pem_certificates_problem(*content))
        problem(*t->get("ca_file"), "repo.github.ca_file '" + g.ca_file.string() + "' " + *why);
    }
    if (auto v = string(*t, "bot_name", "repo.github.bot_name")) {
      if (valid_login(*v) || (v->ends_with("[bot]") && valid_login(v->substr(0, v->size() - 5))))
        g.bot_name = *v;
      else
        problem(*t->get("bot_name"), "repo.github.bot_name '" + *v + "' is not a GitHub login");
    }
    if (auto v = integer(*t, "reconcile_interval", "repo.github.reconcile_interval", 5, 3600,
                         "seconds", "1 hour"))
      g.reconcile_interval = std::chrono::seconds(*v);
    if (auto v = integer(*t, "permission_cache", "repo.github.permission_cache", 0, 3600, "seconds",
                         "1 hour"))
      g.permission_cache = std::chrono::seconds(*v);
    if (auto v = integer(*t, "hook_id", "repo.github.hook_id", 1, std::int64_t{1} << 53))
      g.hook_id = *v;
    if (const toml::node* n = t->get("status_labels")) {
      if (n->is_boolean())
        g.status_labels = n->as_boolean()->get();
      else
        problem(*n,
                "repo.github.status_labels must be a boolean, not " + std::string(type_name(*n)));
    }
    if (auto v = string(*t, "try_branch", "repo.github.try_branch")) {
      if (valid_branch_name(*v))
        g.try_branch = *v;
      else
        problem(*t->get("try_branch"),
                "repo.github.try_branch '" + *v + "' is not a valid branch name");
    }
    if (const toml::table* sources = table(*t, "check_sources", "repo.github.check_sources"))
      for (auto&& [k, v] : *sources) {
        const std::string check(k.str());
        const std::string name = "repo.github.check_sources." + check;
        auto source = string(*sources, k.str(), name);
        if (!source) continue;
        if (valid_login(*source) ||
            (source->ends_with("[bot]") && valid_login(source->substr(0, source->size() - 5))))
          g.check_sources[check] = *source;
        else
          problem(v, name + ": '" + *source + "' is neither a GitHub login nor an App's slug");
      }
    return g;
  }

  // Every check repo.github.check_sources names must be a required check: a source for a check
  // nothing waits for is a typo that would leave the real one open to anyone.
  void check_sources_known(const toml::table& t, const Repo& r) {
    const toml::table* g = t.get_as<toml::table>("github");
    const toml::table* sources = g ? g->get_as<toml::table>("check_sources") : nullptr;
    // No required check read (a problem of its own already): nothing to compare with.
    if (!sources || !r.github || r.required_checks.empty()) return;
    for (auto&& [k, v] : *sources) {
      const std::string check(k.str());
      if (std::find(r.required_checks.begin(), r.required_checks.end(), check) !=
          r.required_checks.end())
        continue;
      const int line = k.source().begin.line ? static_cast<int>(k.source().begin.line) : line_of(v);
      problem(line, "repo.github.check_sources names '" + check +
                        "', which is not in repo.required_checks");
    }
  }

  std::optional<Repo> repo(const toml::table& t) {
    Repo r;
    r.line = line_of(t);
    unknown_keys(t,
                 {"name",
                  "forge",
                  "remote",
                  "master",
                  "dmz",
                  "staging",
                  "production",
                  "hotfix_branches",
                  "required_checks",
                  "check_timeout",
                  "branch_patterns",
                  "refused_patterns",
                  "api_token",
                  "status_token",
                  "policy_root",
                  "runner",
                  "auth",
                  "network_timeout",
                  "queue",
                  "github"},
                 "[[repo]]");
    if (auto v = string(t, "name", "repo.name")) {
      if (valid_repo_name(*v))
        r.name = *v;
      else
        problem(*t.get("name"), "repo.name '" + *v + "' must look like \"owner/name\"");
    } else if (!t.contains("name")) {
      missing(t, "name", "[[repo]]");
    }
    if (auto v = string(t, "forge", "repo.forge")) {
      if (*v == "plain" || *v == "github")
        r.forge = *v;
      else if (*v == "gitlab" || *v == "gitea")
        problem(*t.get("forge"), "forge " + *v + " is not supported yet");
      else
        problem(*t.get("forge"),
                "unknown forge '" + *v + "' (expected plain, github, gitlab or gitea)");
    }
    if (auto v = string(t, "remote", "repo.remote")) {
      // Refused here, at its line, rather than when serve starts git.
      if (auto kind = classify_git_remote(*v); !kind)
        problem(*t.get("remote"), "repo.remote: " + kind.message());
      else
        r.remote = *kind == GitRemote::kLocal ? resolve(*v).string() : *v;
    } else if (!t.contains("remote") && r.forge != "github")  // GitHub: the clone URL, below
      missing(t, "remote", "[[repo]]");
    bool branches_ok = true;
    for (auto [key, field] :
         {std::pair{"master", &r.master}, std::pair{"dmz", &r.dmz},
          std::pair{"staging", &r.staging}, std::pair{"production", &r.production}}) {
      std::string name = std::string("repo.") + key;
      if (auto v = string(t, key, name)) {
        if (valid_branch_name(*v)) {
          *field = *v;
        } else {
          problem(*t.get(key), name + " '" + *v + "' is not a valid branch name");
          branches_ok = false;
        }
      }
    }
    // Checked when they are configured; a default that meets master or dmz (an older
    // configuration with dmz = "staging") only disables promotion to it (bot/service/promoter).
    const bool release_set = t.contains("staging") || t.contains("production");
    if (branches_ok && release_set &&
        (branches_nest(r.staging, r.production) || branches_nest(r.staging, r.master) ||
         branches_nest(r.staging, r.dmz) || branches_nest(r.production, r.master) ||
         branches_nest(r.production, r.dmz))) {
      const toml::node* at = t.get("production") ? t.get("production") : t.get("staging");
      problem(at ? line_of(*at) : r.line,
              "repo.staging and repo.production must differ from each other and from master "
              "and dmz, and not be under one of them (git cannot hold a/b beside a)");
    }
    if (auto v = string(t, "hotfix_branches", "repo.hotfix_branches")) {
      // A glob, not a name: checked as a branch name with its wildcards taken for letters.
      std::string as_name = *v;
      std::replace(as_name.begin(), as_name.end(), '*', 'x');
      const toml::node& at = *t.get("hotfix_branches");
      if (!valid_branch_name(as_name))
        problem(at, "repo.hotfix_branches '" + *v + "' is not a branch name pattern");
      else if (queue::glob_match(*v, r.master) || queue::glob_match(*v, r.dmz) ||
               queue::glob_match(*v, r.staging) || queue::glob_match(*v, r.production))
        problem(at, "repo.hotfix_branches '" + *v + "' matches master, dmz, staging or production");
      else
        r.hotfix_branches = *v;
    }
    if (branches_ok && branches_nest(r.master, r.dmz)) {
      const toml::node* at = t.get("dmz") ? t.get("dmz") : t.get("master");
      problem(at ? line_of(*at) : r.line,
              r.master == r.dmz
                  ? "repo.dmz must differ from repo.master (both are '" + r.master + "')"
                  : "repo.dmz '" + r.dmz + "' and repo.master '" + r.master +
                        "' cannot both be branches: one is under the other");
    }
    auto checks = strings(t, "required_checks", "repo.required_checks");
    if (checks) r.required_checks = *checks;
    if (auto v = integer(t, "check_timeout", "repo.check_timeout", 1, 7 * 24 * 3600, "seconds",
                         "7 days"))
      r.check_timeout = std::chrono::seconds(*v);
    for (auto [key, field] : {std::pair{"branch_patterns", &r.branch_patterns},
                              std::pair{"refused_patterns", &r.refused_patterns}}) {
      const std::string name = std::string("repo.") + key;
      auto v = strings(t, key, name);
      if (!v) continue;
      const toml::node& at = *t.get(key);
      // Only the plain forge takes registrations by branch; a GitHub PR is refused by branch
      // in the trust policy's [branches], which every forge reads.
      if (r.forge != "plain")
        problem(at, name + " applies to forge = \"plain\" only: on " + r.forge +
                        ", allow or refuse branches in the trust policy's [branches]");
      for (const auto& pattern : *v)
        if (std::string why = queue::unmatchable(pattern); !why.empty())
          problem(at, name + " '" + pattern + "' matches no branch: " + why);
      *field = *v;
    }
    if (auto v = secret(t, "api_token", "repo.api_token")) r.api_token = std::move(*v);
    if (auto v = secret(t, "status_token", "repo.status_token")) r.status_token = std::move(*v);
    if (auto v = string(t, "policy_root", "repo.policy_root")) {
      r.policy_root = resolve(*v);
      auto content = read_regular_file(r.policy_root, kMaxPolicyFileBytes);
      if (!content) problem(*t.get("policy_root"), "repo.policy_root " + content.message());
    }
    r.runner = runner(t);
    if (auto v =
            integer(t, "network_timeout", "repo.network_timeout", 1, 3600, "seconds", "1 hour"))
      r.network_timeout = std::chrono::seconds(*v);
    r.auth = auth(t);
    // Refused here, at the token's line, rather than when serve opens the transport.
    if (!r.auth.token.empty() && !token_may_go_to(r.remote))
      if (const toml::table* a = t["auth"].as_table(); a && a->get("token"))
        problem(*a->get("token"), "repo.auth.token goes only over https: repo.remote " + r.remote +
                                      " is plain http (a token would cross the network "
                                      "in clear text)");
    r.queue = queue_section(t);
    check_candidate_branch(t, r);
    r.github = github(t);
    if (r.github) check_try_branch(t, r);
    if (r.forge == "github" && !r.github && !t.contains("github")) {
      problem(r.line, "[[repo]] with forge = \"github\" needs a [repo.github] table");
      if (!t.contains("remote")) missing(t, "remote", "[[repo]]");
    }
    if (r.forge != "github" && t.contains("github"))
      problem(*t.get("github"), "[repo.github] belongs to a repository with forge = \"github\"");
    if (r.github && !t.contains("remote") && !r.name.empty()) {
      if (auto api = parse_url(r.github->api_url)) r.remote = github_clone_url(*api, r.name);
    }
    // git is given the GitHub token (or the App's) when repo.auth has none.
    if (r.github && r.auth.token.empty() && !r.remote.empty() && !token_may_go_to(r.remote))
      problem(t.get("remote") ? line_of(*t.get("remote")) : r.line,
              "repo.remote " + r.remote +
                  " is plain http, and git would send it the GitHub token in clear text: use "
                  "https");
    // Master must be gated by something: default to the runner's check, refuse nothing at all.
    if (const toml::node* n = t.get("required_checks")) {
      if (checks && checks->empty())
        problem(*n, "repo.required_checks is empty: nothing would gate master");
    } else if (r.runner) {
      r.required_checks = {r.runner->context};
    } else if (!t.contains("runner")) {
      problem(r.line,
              "[[repo]] has neither required_checks nor [repo.runner]: nothing would gate master");
    }
    check_sources_known(t, r);
    check_probes_have_branches(t, r);
    return r;
  }

  std::optional<Config> config(const toml::table& root) {
    Config c;
    c.data_dir = base_;
    unknown_keys(root, {"data_dir", "log", "server", "store", "signing", "repo"}, "");
    if (auto v = string(root, "data_dir", "data_dir")) {
      c.data_dir = resolve(*v);
      std::error_code ec;
      if (fs::exists(c.data_dir, ec) && !fs::is_directory(c.data_dir, ec))
        problem(*root.get("data_dir"),
                "data_dir '" + c.data_dir.string() + "' exists and is not a directory");
    }
    log_section(root, c.log_format);
    server(root, c.server);
    store(root, c.store, c.data_dir);
    signing(root, c.signing);
    if (const toml::node* n = root.get("repo"); !n) {
      problem(1,
              "no [[repo]]: dmzbot would serve nothing (add a [[repo]] table for each repository)");
    } else {
      const toml::array* repos = n->as_array();
      if (!repos || !repos->is_array_of_tables()) {
        problem(*n, "repo must be an array of tables ([[repo]])");
      } else {
        // Names compare as the service stores them: without case (as GitHub's do) and with
        // '/' as '_' (the mirror's directory): two repositories must never share a mirror.
        std::map<std::string, std::pair<std::string, int>> seen;  // key -> name, line
        auto key_of = [](const std::string& name) { return ascii_lower(mirror_dir_name(name)); };
        for (const auto& el : *repos) {
          const toml::table& t = *el.as_table();
          auto r = repo(t);
          if (!r) continue;
          if (!r->name.empty()) {
            auto [it, fresh] =
                seen.emplace(key_of(r->name), std::pair{r->name, line_of(*t.get("name"))});
            if (!fresh) {
              const auto& [first, line] = it->second;
              problem(*t.get("name"),
                      first == r->name
                          ? "duplicate repo '" + r->name + "' (first defined on line " +
                                std::to_string(line) + ")"
                          : "repo '" + r->name + "' is the same as '" + first + "' (line " +
                                std::to_string(line) +
                                ") to dmzbot: names compare without case, and '/' as '_'");
            }
          }
          c.repos.push_back(std::move(*r));
        }
      }
    }
    c.secret_files = std::move(secret_files_);
    return c;
  }

 private:
  std::vector<fs::path> secret_files_;  // every file a secret or a key was read from
  std::string file_;
  fs::path base_;
};

}  // namespace

std::string mirror_dir_name(const std::string& repo) {
  std::string name = repo;
  for (char& c : name)
    if (c == '/') c = '_';
  return name + ".git";
}

std::string candidate_branch(const std::string& pattern, std::uint64_t id) {
  std::string out = pattern;
  if (auto at = out.find("{id}"); at != std::string::npos) out.replace(at, 4, std::to_string(id));
  return out;
}

std::optional<std::uint64_t> candidate_of_branch(const std::string& pattern,
                                                 const std::string& branch) {
  const auto at = pattern.find("{id}");
  if (pattern.empty() || at == std::string::npos) return std::nullopt;
  const std::string prefix = pattern.substr(0, at), suffix = pattern.substr(at + 4);
  if (branch.size() <= prefix.size() + suffix.size() || branch.rfind(prefix, 0) != 0 ||
      branch.compare(branch.size() - suffix.size(), suffix.size(), suffix) != 0)
    return std::nullopt;
  const std::string digits =
      branch.substr(prefix.size(), branch.size() - prefix.size() - suffix.size());
  if (digits.size() > 19 || digits.front() == '0' ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  return std::stoull(digits);
}

LoadResult parse(std::string_view toml_text, const std::string& file_name) {
  LoadResult out;
  std::error_code ec;
  fs::path abs = fs::absolute(fs::path(file_name), ec);
  Loader loader(file_name, (ec ? fs::path(file_name) : abs).parent_path().lexically_normal());
  toml::table root;
  try {
    root = toml::parse(toml_text, file_name);
  } catch (const toml::parse_error& e) {
    out.problems.push_back(
        {file_name, static_cast<int>(e.source().begin.line), std::string(e.description())});
    return out;
  }
  auto config = loader.config(root);
  std::stable_sort(loader.problems.begin(), loader.problems.end(),
                   [](const Problem& a, const Problem& b) { return a.line < b.line; });
  out.problems = std::move(loader.problems);
  if (out.problems.empty() && config) {
    config->file = file_name;
    out.config = std::move(config);
  }
  return out;
}

LoadResult load(const fs::path& file) {
  auto content = read_regular_file(file, kMaxConfigFileBytes);
  if (!content) {
    LoadResult out;
    out.problems.push_back({file.string(), 0, "the configuration file " + content.message()});
    return out;
  }
  return parse(*content, file.string());
}

}  // namespace dmz::config

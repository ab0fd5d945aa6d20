// dmzbot's service configuration: the typed result of loading a TOML file. Secrets are held
// only as resolved values in `Secret`, which never prints itself.
// Threading: immutable after load; share freely.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/status.hpp"
#include "queue/model.hpp"

namespace dmz::config {

// A token read from a file or an environment variable; never inline in the file, never logged.
class Secret {
 public:
  Secret() = default;
  explicit Secret(std::string value) : value_(std::move(value)) {}
  bool empty() const { return value_.empty(); }
  const std::string& reveal() const { return value_; }  // for comparison/sending only

 private:
  std::string value_;
};

struct Server {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
  std::size_t body_limit = 1 << 20;         // bytes
  std::chrono::seconds read_timeout{30};    // per request, headers + body
  std::chrono::seconds answer_timeout{30};  // for the service to answer a read request (503)
  int max_connections = 512;                // open at once; more get 503 and are closed
  int threads = 2;                          // I/O threads
  // Where people reach the status page (https://dmzbot.example.com), for links in the answers
  // on pull requests; empty: answers carry no link.
  std::string public_url;
};

struct Store {
  std::string kind = "sqlite";               // "sqlite" (embedded default)
  std::filesystem::path path = "dmzbot.db";  // relative to data_dir
  int history_days = 365;  // events and outcomes older than this are pruned; 0: kept forever
};

struct Runner {                          // the built-in local CI runner
  std::string command;                   // run with /bin/sh -c in the exported tree
  std::string context = "dmzbot/local";  // the check it reports
  std::chrono::seconds timeout{600};
  int max_parallel = 2;
  // The command runs pull-request code: by default inside bubblewrap, seeing only the
  // exported tree (read-write), /usr and /etc (read-only), a private /tmp, no network, never
  // dmzbot's data directory, keys or tokens. "none" runs it as dmzbot's own user, unconfined.
  std::string sandbox = "bwrap";  // "bwrap" or "none"
  bool network = false;           // with bwrap: share the host's network
  int max_log_mib = 64;           // a build whose log would pass this is stopped and fails
  int log_days = 30;              // build logs older than this are deleted
};

struct Signing {              // how dmzbot signs its merge commits
  std::string format;         // "ssh" or "openpgp"; empty = unsigned
  std::filesystem::path key;  // ssh: private key file
  std::string fingerprint;    // openpgp: key in gnupg_home
  std::filesystem::path gnupg_home;
  std::string name = "dmzbot", email = "dmzbot@localhost";  // committer identity
  int line = 0;  // where the key is named (signing.key or signing.fingerprint), for messages
};

// How dmzbot authenticates to a repository's remote (fetch and push go through `git`).
struct Auth {
  Secret token;                             // HTTPS: the password of HTTP basic auth
  std::string username = "x-access-token";  // HTTPS: its user
  std::filesystem::path ssh_key;            // ssh: a private key file
  std::filesystem::path known_hosts;        // ssh: the pinned host keys (strict checking)
};

// How the repository's queue turns approved PRs into candidates ([repo.queue]).
struct Queue {
  queue::Strategy strategy = queue::Strategy::Serial;
  int max_batch = 1;  // PRs per candidate (default 8 for batch and adaptive)
  int window_start = 4, window_floor = 1, window_max = 20;  // train and adaptive
  int flaky_retries = 0;             // builds again before anyone is ejected (not for serial)
  bool priority_interrupts = false;  // a higher priority cuts lower candidates that build
  queue::Lanes lanes = queue::Lanes::None;  // adaptive only
  std::vector<queue::PathGroup> path_groups;
  // Each candidate's own branch ("{id}" is its number), so that any CI builds it on push;
  // "" pushes dmz only. It names no one else's branch (dmzbot deletes those of no live
  // candidate) and none beside which git cannot hold it (dmz and dmz/x).
  std::string candidate_branch = "dmz-queue/{id}";
};

// A repository on GitHub or GitHub Enterprise Server ([repo.github]).
struct GitHub {
  std::string api_url = "https://api.github.com";  // https://HOST/api/v3 for GHES
  Secret webhook_secret;                           // X-Hub-Signature-256 key (required)
  // Authentication to the REST API and git: a token, or a GitHub App installation.
  Secret token;
  std::int64_t app_id = 0, installation_id = 0;
  Secret private_key;  // the App's PEM private key (RSA)
  std::string merge_label = "dmz:merge";
  std::vector<std::string> merge_masters;       // logins, or "org/team-slug"
  std::filesystem::path ca_file;                // a GHES's private CA: the API's and git's
  std::string bot_name = "dmzbot";              // comments address it as "@dmzbot ..."
  std::chrono::seconds reconcile_interval{60};  // how often the REST API is read back
  std::chrono::seconds permission_cache{60};    // how long a merge master check is believed
  bool status_labels = false;                   // dmz:queued / dmz:failed on the PRs
  std::string try_branch = "dmz-try";           // `try` pushes <try_branch>/<number>
  // The repository webhook's id (0: none): its deliveries that never reached dmzbot are asked
  // for again (the token needs to read and write the repository's webhooks). Without it, a
  // GitHub App's own webhook's are.
  std::int64_t hook_id = 0;
  // Required check -> the only source its reports count from: a GitHub App's slug (its check
  // runs; its statuses as "slug[bot]") or a login (its commit statuses). Checks not named
  // here count from anyone who can post them.
  std::map<std::string, std::string> check_sources;

  bool app() const { return app_id != 0; }
};

struct Repo {
  std::string name;             // "owner/name"
  std::string forge = "plain";  // plain or github (gitlab, gitea later)
  std::string remote;           // URL or path of the remote
  std::string master = "master";
  std::string dmz = "dmz";
  std::string staging = "staging";           // moved by release candidate tags (release promotion)
  std::string production = "production";     // moved by release tags
  std::string hotfix_branches = "hotfix/*";  // glob: the hotfix flow's branches (off production)
  std::vector<std::string> required_checks;
  std::chrono::seconds check_timeout{1800};
  std::vector<std::string> branch_patterns = {"feature/*", "bug/*", "hotfix/*"};
  std::vector<std::string> refused_patterns = {"wip/*"};
  Secret api_token;     // merge masters (merge/cancel/retry)
  Secret status_token;  // CI posting statuses
  std::optional<Runner> runner;
  std::filesystem::path policy_root;  // trust root policy file (issue: trust policy)
  Auth auth;
  Queue queue;
  std::chrono::seconds network_timeout{60};  // git: connect and stalled transfer; the whole
                                             // operation may take ten times as long
  std::optional<GitHub> github;              // forge = "github"
  int line = 0;                              // where [[repo]] starts, for messages
};

// Whether git can hold `name` as a branch (git check-ref-format's rules), so that a name it
// cannot is refused at its line rather than at every push.
bool valid_branch_name(std::string_view name);

// The repository's directory name under data_dir (its mirror, build logs and builds):
// "owner_name.git". Two repositories whose names map to the same one are refused at load.
std::string mirror_dir_name(const std::string& repo);

// The branch name of candidate `id` under `pattern` ("dmz-queue/{id}" -> "dmz-queue/7"), and
// the id of a branch that matches the pattern (nullopt for any other branch).
std::string candidate_branch(const std::string& pattern, std::uint64_t id);
std::optional<std::uint64_t> candidate_of_branch(const std::string& pattern,
                                                 const std::string& branch);

struct Config {
  std::filesystem::path file;            // where it was loaded from
  std::filesystem::path data_dir = ".";  // mirrors, database, build logs
  std::string log_format = "text";       // [log] format: "text" or "json" (base/log.hpp)
  Server server;
  Store store;
  Signing signing;
  std::vector<Repo> repos;
  // Every file a secret or key was read from ({ file = ... }, repo.auth.ssh_key): hidden from
  // the builds' sandbox with the rest of dmzbot's own files.
  std::vector<std::filesystem::path> secret_files;

  const Repo* find_repo(std::string_view name) const;
};

// One problem in a configuration file, printed as "file:line: message".
struct Problem {
  std::string file;
  int line = 0;
  std::string message;  // may echo a value as written, control characters included
  // "file:line: message" on one line: control characters are escaped (\n, \x1b).
  std::string to_string() const;
};

// Loads and validates; on failure returns every problem found, not just the first.
struct LoadResult {
  std::optional<Config> config;
  std::vector<Problem> problems;
};
LoadResult load(const std::filesystem::path& file);
LoadResult parse(std::string_view toml_text, const std::string& file_name);

}  // namespace dmz::config

// Talks to a mirror's remote by running the `git` command (fetch, push --porcelain, ls-remote)
// on the mirror's bare repository, with credentials passed only through an askpass helper and
// a file descriptor, and a deadline on every operation (the git process group is sent SIGTERM,
// then SIGKILL after a grace).
// Threading: a Transport runs one operation at a time (the repository's git worker).
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.hpp"

namespace dmz::git {

using Sha = std::string;

// How pushes are signed (`git push --signed=if-asked`: a push certificate, sent only to a
// server that asks for one, i.e. has receive.certNonceSeed set). git signs the certificate
// with its commit-signing machinery, so the key is chosen as for `commit -S`: gpg.format and
// user.signingKey, both of which we always set (-c on git's command line; neither is a
// secret). OpenPGP: user.signingKey is the key id or fingerprint, gpg finds the secret key in
// GNUPGHOME, and the certificate's pusher line is that key id. SSH (git >= 2.34;
// gpg.format=ssh): user.signingKey is the path of the private key file (or of its .pub when
// the private key is in an ssh-agent: the agent's socket is not passed to git here, so in
// practice an unencrypted key file), git runs `ssh-keygen -Y sign -n git`, the pusher line is
// the key's SHA256 fingerprint, and the server verifies against gpg.ssh.allowedSignersFile.
struct PushSigning {
  enum class Format { kOpenPgp, kSsh };
  Format format = Format::kOpenPgp;
  std::string key;                   // OpenPGP fingerprint, or SSH private key file
  std::filesystem::path gnupg_home;  // OpenPGP: GNUPGHOME for gpg; empty = gpg's default
  std::string program;               // gpg.program / gpg.ssh.program; empty = git's default
};

struct TransportOptions {
  // The remote: a local path, file://, git://, http(s)://, ssh:// or scp-like user@host:path.
  // A URL carrying a password (https://user:secret@host) is refused: secrets go in `token`.
  std::string url;

  // HTTP(S): HTTP basic auth with `username` and `token` (a forge access token). Never put in
  // argv, the environment or a file: git reads it through an askpass helper from a sealed
  // memfd that only the git process tree inherits. The child's environment is otherwise
  // minimal: PATH, HOME=scratch_dir, LANG=C, git's isolation variables, and the operator's
  // proxy, CA bundle and TMPDIR variables if set.
  std::string token;
  std::string username = "x-access-token";
  // A token that changes (a GitHub App's installation token, renewed hourly): asked for before
  // every operation, and used instead of `token` when set. Called on the transport's thread.
  std::function<Result<std::string>()> token_source;

  // ssh: the private key to log in with (IdentitiesOnly) and the pinned host keys
  // (StrictHostKeyChecking=yes: an unknown or changed host key fails closed). Empty
  // known_hosts = ssh's own default files, still strict.
  std::filesystem::path ssh_key;
  std::filesystem::path known_hosts;

  // https: the CA (PEM) that signed the remote's certificate, e.g. a GitHub Enterprise
  // Server's private CA (GIT_SSL_CAINFO for git: it replaces the CA bundle for this remote).
  std::filesystem::path ca_file;

  // Connect and stalled-transfer timeout: ssh's ConnectTimeout and keepalives
  // (ServerAliveInterval = timeout/3, 3 missed), curl's low-speed limit for http(s)
  // (http.lowSpeedLimit=1 byte/s for this long). git 2.39 has no setting for curl's connect
  // timeout, and git:// no timeout at all: there only the total deadline cuts it.
  std::chrono::seconds network_timeout{60};
  // Deadline for a whole operation, after which the git process group is terminated (SIGTERM,
  // then SIGKILL 2 s later); 0 = 10 x network_timeout.
  std::chrono::seconds operation_timeout{0};

  // A private (0700) directory for the askpass helper; also git's HOME. Empty = <git
  // dir>/dmzbot-transport. Created at the first operation.
  std::filesystem::path scratch_dir;

  // What fetch() fetches, with --prune. Callers may add e.g.
  // "+refs/pull/*/head:refs/remotes/pull/*".
  std::vector<std::string> fetch_refspecs = {"+refs/heads/*:refs/remotes/origin/*",
                                             "+refs/tags/*:refs/tags/*",
                                             "+refs/notes/*:refs/notes/*"};

  std::optional<PushSigning> sign_pushes;

  // The git executable (looked up in PATH). Tests point it at a wrapper that records what it
  // was given.
  std::string git_program = "git";
};

// One ref to move on the remote.
struct RefUpdate {
  std::string ref;  // full name: "refs/heads/dmz"
  Sha new_sha;      // "" = delete the ref
  // Set: compare-and-swap (--force-with-lease=<ref>:<expected>): the update happens only if
  // the remote ref is at this value ("" = the ref must not exist), checked by the server when
  // it updates the ref. Unset: forced (+sha:ref), whatever the remote had.
  std::optional<Sha> expected_old;
};

enum class RefStatus {
  kUpdated,         // the remote ref now has the new value (created, moved or deleted)
  kUpToDate,        // the remote ref already had the new value (a lease is not checked then)
  kStale,           // the lease failed: the remote ref was not at expected_old; nothing pushed
  kNonFastForward,  // refused as a non-fast-forward (a not-forced update)
  kRemoteRejected,  // the server refused it (a hook, a protected branch, a lost ref race)
  kRejected,        // refused for another reason (e.g. another ref of an atomic push failed)
};

struct RefResult {
  std::string ref;
  RefStatus status = RefStatus::kRejected;
  std::string summary;  // git's words: "[rejected] (stale info)", "78e38dc..dcf4e06", ...
  bool ok() const { return status == RefStatus::kUpdated || status == RefStatus::kUpToDate; }
};

struct PushOutcome {
  std::vector<RefResult> refs;  // one per update, in the order given
  std::string remote_messages;  // what the server's hooks said ("remote: ..."), bounded
  bool ok() const;              // every ref ok
};

class Transport {
 public:
  // Checks the options (URL, files, refspecs); does not touch the network or the disk.
  static Result<std::unique_ptr<Transport>> create(const std::filesystem::path& git_dir,
                                                   TransportOptions options);
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // git fetch --prune of options.fetch_refspecs into the repository.
  Status fetch();
  // git push --porcelain of `updates` (all objects must be in the repository), --atomic when
  // there are several: either all refs move or none. A refused ref is a value in the outcome;
  // only a failure to talk to the remote (or bad input) is an error.
  Result<PushOutcome> push(const std::vector<RefUpdate>& updates);
  // The remote's values of the given full ref names; refs it does not have are left out.
  Result<std::map<std::string, Sha>> ls_remote(const std::vector<std::string>& refs);
  // git gc --auto in the repository (packs loose objects and packs once git's thresholds are
  // passed; keeps every reflog), under the same deadline. No network.
  Status gc();

  // Whether a git run was stopped at its deadline since locks_cleared(). git was sent SIGTERM,
  // then SIGKILL after a grace: killed, it may have left *.lock files in the repository.
  bool may_have_left_locks() const;
  void locks_cleared();

  // The URL with anything that looks like a credential replaced by "***".
  const std::string& display_url() const;

 private:
  struct Impl;
  explicit Transport(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Replaces credentials in URLs with "***": the whole user part for http(s) (a token may be
// the user name: "https://tok@host" -> "https://***@host"), the password for other schemes
// ("ssh://git:pw@host" -> "ssh://git:***@host"); and every occurrence of `secret`, if given.
std::string redact(std::string text, const std::string& secret = "");

}  // namespace dmz::git

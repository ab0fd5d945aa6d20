// dmzbot as a plain git server's hooks: `install-hooks` writes them and sets the nonce seed,
// `pre-receive` refuses protected ref updates without a good push certificate from a pusher the
// policy allows, `post-receive` appends each certificate to an append-only log ref, and
// `verify --pushes` audits that log against the refs. Each runs as its own process (the CLI);
// these functions return the process exit code. Threading: call from the main thread.
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "base/status.hpp"
#include "bot/trust/push_cert.hpp"

namespace dmz {
namespace git {
class Mirror;
}
}  // namespace dmz

namespace dmz::trust {

struct InstallHooksOptions {
  std::filesystem::path repo;    // the bare repository (or a work tree's .git)
  std::filesystem::path config;  // the hooks' configuration (config/hook_config.hpp)
  std::filesystem::path dmzbot;  // the binary the hooks run; empty = this process's executable
};
// Validates the configuration, writes hooks/pre-receive and hooks/post-receive (exec dmzbot with
// absolute paths), sets receive.certNonceSeed (32 random bytes, kept if already set) and
// receive.certNonceSlop (= nonce_slop, 0 included). Refuses where core.hooksPath (any config
// level) points elsewhere: git would not run these hooks. 0 ok, 2 error.
int run_install_hooks(const InstallHooksOptions& options);

// Run by git in the repository with the updates on stdin and GIT_PUSH_CERT* in the
// environment. Prints one "dmzbot: ..." line per reason to stderr (git relays it to the
// pusher); 0 accept, 1 refuse. Whatever the certificate, it refuses updates of the log ref, of
// a ref under it or at a parent path of it, and updates through a symbolic ref.
int run_pre_receive(const std::filesystem::path& config, std::FILE* in);

// Appends the push certificate of an accepted push that moved a protected ref (the pushes
// pre-receive judged in full) to the log ref: a commit whose tree holds `certificate` (the blob
// receive-pack stored) and `updates` (the hook's stdin), whose parent is the previous entry. 0 ok
// (or nothing to log), 1 failure (the push has happened already; the failure is printed).
int run_post_receive(const std::filesystem::path& config, std::FILE* in);

struct VerifyPushesOptions {
  std::filesystem::path repo = ".";
  std::filesystem::path config;  // the hooks' configuration; empty = defaults
  std::filesystem::path policy;  // overrides the configuration's policy source
  bool json = false;
};
// Walks the log oldest first: every certificate must parse, verify with a key of the policy,
// be signed by a pusher the policy allows for each protected ref it moves, record updates it
// certifies, and chain (each update's old id is where the previous entry left the ref); the
// protected refs must be where the log leaves them. 0 consistent, 1 problems, 2 I/O or usage.
int run_verify_pushes(const VerifyPushesOptions& options);

// The updates the push log at `log_ref` records, oldest first (empty without a log), for
// `verify --releases`, which judges every commit a branch was pushed to. Nothing is verified
// here (run_verify_pushes does that); an entry that cannot be read or parsed is an error.
Result<std::vector<RefCommand>> push_log_updates(git::Mirror& mirror, const std::string& log_ref);

}  // namespace dmz::trust

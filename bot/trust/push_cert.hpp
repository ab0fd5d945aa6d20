// Push certificates (`git push --signed`) and the pure judgement of a push by dmzbot's
// pre-receive hook: parse the certificate receive-pack stored, compare its commands with the
// updates being made, and list every reason to refuse. Threading: pure functions; any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.hpp"
#include "bot/trust/signed_object.hpp"

namespace dmz::trust {

inline constexpr std::string_view kZeroSha = "0000000000000000000000000000000000000000";

// One ref update: "<old> <new> <ref>", as in a certificate and on a pre-receive hook's stdin.
struct RefCommand {
  std::string old_sha;  // 40 zeros: the ref is created
  std::string new_sha;  // 40 zeros: the ref is deleted
  std::string ref;
  bool operator==(const RefCommand&) const = default;
  std::string to_string() const { return old_sha + " " + new_sha + " " + ref; }
};

// A certificate as git's send-pack writes it (send-pack.c generate_push_cert):
//   certificate version 0.1 / pusher <ident> <time> <tz> / [pushee <url>] / nonce <nonce> /
//   [push-option <o>]... / blank line / "<old> <new> <ref>" lines / an armored signature.
struct PushCertificate {
  std::string version;
  std::string pusher;  // as written: "<key id or name> <unix time> <tz>"
  std::int64_t pushed_at = 0;
  std::string pushee;
  std::string nonce;  // "" if the certificate has none
  std::vector<std::string> push_options;
  std::vector<RefCommand> commands;
  std::string payload;    // what the signature signs: everything before the signature
  std::string signature;  // the armored block; "" if unsigned
  SignatureKind signature_kind = SignatureKind::none;
};

// Parses certificate text; refuses (invalid) anything that is not one well-formed certificate
// of version 0.1 with at least one command.
Result<PushCertificate> parse_push_certificate(std::string_view text);

// The time in a nonce receive-pack gave ("<unix seconds>-<hmac>", receive-pack.c
// prepare_push_cert_nonce); nullopt if the nonce does not start that way.
std::optional<std::int64_t> nonce_stamp(std::string_view nonce);

// How much older than nonce_slop an OK nonce may be: receive-pack stamps the nonce when it
// advertises its refs, before the pack is uploaded, so a large push's nonce is minutes old.
inline constexpr std::int64_t kNonceUploadMargin = 300;

// Parses a pre-receive/post-receive stdin ("<old> <new> <ref>" lines).
Result<std::vector<RefCommand>> parse_ref_commands(std::string_view text);

// The reasons why `commands` (the certificate's) and `updates` (what receive-pack is about to
// do) differ: each update not certified as is (an old id that differs is a replay), and each
// certified command not being made. Empty when they are equal as sets.
std::vector<std::string> command_differences(const std::vector<RefCommand>& commands,
                                             const std::vector<RefCommand>& updates);

// What receive-pack told the hook about the certificate (GIT_PUSH_CERT*), and what dmzbot found
// when it verified the signature itself with the policy's keys.
struct PushFacts {
  std::vector<RefCommand> updates;         // the hook's stdin
  std::optional<PushCertificate> cert;     // unset: the push is unsigned
  std::string cert_problem;                // GIT_PUSH_CERT set but unreadable/unparsable
  std::string git_status;                  // GIT_PUSH_CERT_STATUS: G, U, B, X, Y, R, E, N
  std::string nonce_status;                // GIT_PUSH_CERT_NONCE_STATUS
  std::optional<std::int64_t> nonce_slop;  // GIT_PUSH_CERT_NONCE_SLOP, with SLOP
  std::optional<std::int64_t> now;         // the server's clock, to check an OK nonce's age
  std::optional<std::string> signer;       // the policy account whose key made the signature
  std::string signature_problem;           // why it did not verify with the policy's keys
};

// The configuration of the judgement (from the hook configuration and the policy in force).
struct PushRules {
  std::vector<std::string> protected_refs;  // globs over full ref names
  bool require_signed = false;              // every other ref too must come with a certificate
  std::int64_t nonce_slop = 0;              // seconds a SLOP nonce may be off
  // For a protected ref: the accounts the policy allows to push it (empty = nobody).
  std::function<std::vector<std::string>(std::string_view ref)> allowed;
};

bool is_protected(const PushRules& rules, std::string_view ref);

// Every reason to refuse the push, one line each; empty = accept.
std::vector<std::string> judge_push(const PushFacts& facts, const PushRules& rules);

}  // namespace dmz::trust

// Verified facts for the signature policy, shared by the PR gate and `dmzbot verify`: the policy
// in force at a commit with its keys, signatures verified and mapped to accounts, a result cache.
// Threading: TrustKeys and FactGatherer are used by one thread at a time (they hold GPGME state).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.hpp"
#include "bot/trust/openpgp.hpp"
#include "bot/trust/signed_object.hpp"
#include "bot/trust/sshsig.hpp"
#include "queue/policy.hpp"

namespace dmz {
namespace git {
class Mirror;
}

namespace trust {

// Where the OpenPGP public keys of a committed policy live: every `*.asc` file directly in this
// directory of the same commit. The policy names fingerprints only; the key material is
// versioned (and reviewed) with it.
inline constexpr std::string_view kKeysDir = ".dmz/keys";

// The text of a policy and the key material that goes with it.
struct PolicySource {
  std::string label;  // names the file in problems: ".dmz/policy.toml@abc1234" or a path
  std::string text;
  std::vector<std::pair<std::string, std::string>> armored_keys;  // file label -> *.asc content
  // Set when a policy is there but cannot be used, text and keys empty: ".dmz/policy.toml at
  // abc1234 is not a regular file (a symlink)", ".dmz at abc1234 is not a directory (a
  // symlink)", "... is larger than 1048576 bytes". Such a policy allows nothing
  // (TrustKeys::load refuses it).
  std::string refusal;
};

// The policy committed in `commit` (.dmz/policy.toml) and the *.asc files of .dmz/keys in the
// same commit (regular files only), read from raw objects; nullopt when the commit has no
// policy file. A `.dmz` that is not a directory, a policy file that is not a regular file (a
// directory, a submodule, a symlink) or larger than kMaxPolicyFileBytes, or such a key file,
// gives a source with `refusal` set; errors are I/O errors.
Result<std::optional<PolicySource>> policy_source_at(git::Mirror& mirror,
                                                     const std::string& commit);

// A policy file outside the repository (the trust root, `dmzbot verify --policy`) and the *.asc
// files of the `keys` directory next to it (if there is one), each read with
// read_regular_file (base/file.hpp: symlinks followed, regular files of at most
// kMaxPolicyFileBytes): not_found, invalid (not a regular file, too large) or unavailable.
Result<PolicySource> policy_source_from_file(const std::filesystem::path& file);

// What the trust root holds, as a digest that any change of it changes: SHA-256 (hex) of the
// policy file and its keys/*.asc (names and contents), or of why it cannot be read (not found,
// not a regular file: every PR fails then, so that is a policy too); "" when `policy_root` is
// empty. nullopt when reading it failed on our side (I/O): unknown, not changed.
std::optional<std::string> trust_root_digest(const std::filesystem::path& policy_root);

// The policy in force at `target`: its committed .dmz/policy.toml (with .dmz/keys), else the
// trust root file `policy_root` (if set), else none. Always read from the target side, so no
// change can be judged by a policy it introduces itself.
Result<std::optional<PolicySource>> policy_in_force(git::Mirror& mirror, const std::string& target,
                                                    const std::filesystem::path& policy_root);

// The outcome of verifying one signature: the account whose key made it, or why not.
// Both empty: the object is unsigned.
struct SignatureCheck {
  std::optional<std::string> signer;
  std::string problem;
  bool operator==(const SignatureCheck&) const = default;
};

// A parsed policy with the keys it names: the ssh lines of its accounts and the OpenPGP keys of
// its key files (imported into a private GnuPG home on first use). Only keys that an account
// names map to an account; a key file for a fingerprint no account lists is never trusted.
class TrustKeys {
 public:
  struct Loaded {
    std::shared_ptr<TrustKeys> keys;    // set iff problems is empty
    std::vector<std::string> problems;  // "file:line: message" (or the source's refusal)
  };
  // Parses the policy and checks its ssh lines (a bad one is a problem at its line).
  static Loaded load(const PolicySource& source);

  const queue::Policy& policy() const { return policy_; }
  // SHA-256 (hex) over the policy text and all key material: the key-set digest of the cache.
  const std::string& digest() const { return digest_; }
  const std::string& label() const { return label_; }
  const PolicySource& source() const { return source_; }

  // Verifies `signature` (armored, of `kind`) over `payload`; `signed_at` is the committer or
  // tagger time (SSH keys' validity windows are checked against it, as git does).
  SignatureCheck verify(SignatureKind kind, std::string_view payload, std::string_view signature,
                        std::int64_t signed_at);

  // Imports the OpenPGP key files now (else at the first OpenPGP signature): why one does not
  // import, which would refuse every OpenPGP signature, or "" (check-config asks).
  std::string import_problem() {
    std::string problem;
    if (!armored_keys_.empty()) openpgp(problem);
    return problem;
  }

 private:
  TrustKeys() = default;
  OpenPgpVerifier* openpgp(std::string& problem);

  queue::Policy policy_;
  PolicySource source_;
  std::string digest_;
  std::string label_;
  std::vector<std::pair<std::string, std::string>> armored_keys_;
  std::vector<SshPublicKey> ssh_keys_;
  std::map<std::string, std::vector<std::string>> ssh_accounts_;  // fingerprint -> accounts
  std::unique_ptr<OpenPgpVerifier> openpgp_;  // created on the first OpenPGP signature
  std::string openpgp_problem_;               // why its key files could not be imported
};

// Loaded policies by key-set digest, so that the GnuPG home holding a policy's keys is made once
// per key set rather than once per check. At most four key sets are kept.
class KeyCache {
 public:
  TrustKeys::Loaded load(const PolicySource& source);

 private:
  std::map<std::string, std::shared_ptr<TrustKeys>> keys_;
};

// A verified annotated tag.
struct TagCheck {
  ParsedTag tag;
  SignatureCheck signature;
  // Set when the tag is refused before its signature counts: "tag refs/tags/x claims to be y",
  // or the parser's refusal.
  std::string refusal;
};

// Signed-note approvals live in this notes ref (docs/POLICY.md, "Making an approval").
inline constexpr std::string_view kApprovalNotesRef = "refs/notes/dmz-approvals";

// One commit of a notes history that adds, changes or removes the note of one object. The notes
// are named by blob id, read one at a time with note_text: a history may hold 10,000 of them.
struct NoteChange {
  std::string commit;       // the notes commit
  std::string before_blob;  // the object's note at the commit's first parent ("" if none)
  std::string after_blob;   // the object's note in the commit ("" if the commit removed it)
};

// An approval note is a few lines; a larger one approves nothing.
inline constexpr std::size_t kMaxNoteBytes = 64 * 1024;
// The text of the note blob `blob` ("" for ""); invalid if it is not a blob or is larger than
// kMaxNoteBytes.
Result<std::string> note_text(git::Mirror& mirror, const std::string& blob);

// Gathers facts from a mirror and caches signature results by (object id, key-set digest), so
// an unchanged object under unchanged keys is verified once. The cache is bounded: it is
// cleared when it holds `cache_limit` entries.
class FactGatherer {
 public:
  explicit FactGatherer(std::size_t cache_limit = 100000) : cache_limit_(cache_limit) {}

  // The fact for one commit: its signature verified with `keys` (a parser refusal becomes the
  // signature_problem), is_merge, changed_paths against its first parent and changes_policy.
  // `parsed`, if given, receives the parsed commit (empty when the parser refused it).
  Result<queue::CommitFact> commit_fact(git::Mirror& mirror, TrustKeys& keys,
                                        const std::string& sha,
                                        std::optional<ParsedCommit>* parsed = nullptr);

  // The annotated tag object `tag_id`, found at refs/tags/<name>, verified with `keys`.
  Result<TagCheck> tag_check(git::Mirror& mirror, TrustKeys& keys, const std::string& name,
                             const std::string& tag_id);

  // The signature of any commit (a notes commit) verified with `keys`, cached like commit_fact's;
  // a parser refusal becomes the problem.
  Result<SignatureCheck> commit_signature(git::Mirror& mirror, TrustKeys& keys,
                                          const std::string& sha);

  // The commits among the `limit` nearest the notes commit `notes_tip` (Mirror::newest_commits;
  // returned parents before children on a chain) that change the note of `object` against their
  // first parent, with the note's blob before and after. Notes trees may be fanned out
  // (ab/cdef...); only the entries on the path of `object`'s note are read, and the blob found
  // in each notes tree is cached by (tree id, object), so a re-check reads no tree again. No
  // signature is verified here.
  Result<std::vector<NoteChange>> note_changes(git::Mirror& mirror, const std::string& notes_tip,
                                               const std::string& object,
                                               std::size_t limit = 10000);

  // Verifies the OpenPGP signatures of the commits `shas` (those not cached yet) on up to
  // `threads` threads, each with its own repository handle (opened at `repo_dir`) and its own
  // TrustKeys loaded from keys.source(), and caches the results: commit_fact then finds them.
  // GnuPG runs a process per signature, so this is how a long range is verified faster; the
  // results are those commit_fact would compute. Does nothing for fewer than 8 signatures per
  // thread (making a GnuPG home per thread would cost more than it saves). Failures are left
  // for commit_fact to find and report.
  void prefetch(const std::filesystem::path& repo_dir, const TrustKeys& keys,
                const std::vector<std::string>& shas, unsigned threads);

  // Signature operations performed so far (cache misses that reached a verifier).
  std::uint64_t verifications() const { return verifications_; }

 private:
  SignatureCheck cached_verify(TrustKeys& keys, const std::string& object_id, SignatureKind kind,
                               std::string_view payload, std::string_view signature,
                               std::int64_t signed_at);

  // The blob of `object`'s note in notes commit `commit` ("" if none, or if `commit` is "").
  Result<std::string> note_blob(git::Mirror& mirror, const std::string& commit,
                                const std::string& object);

  std::size_t cache_limit_;
  std::map<std::pair<std::string, std::string>, SignatureCheck> cache_;
  // (notes tree, object) -> the blob of the object's note there ("" if none)
  std::map<std::pair<std::string, std::string>, std::string> note_blobs_;
  std::uint64_t verifications_ = 0;
};

// The first 7 hex digits of a sha, as reasons name commits.
std::string short_sha(std::string_view sha);

}  // namespace trust
}  // namespace dmz

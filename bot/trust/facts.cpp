#include "bot/trust/facts.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <thread>

#include "base/crypto.hpp"
#include "base/file.hpp"
#include "base/metrics.hpp"
#include "base/text.hpp"
#include "bot/git/mirror.hpp"
#include "bot/trust/raw_objects.hpp"
#include "config/policy_file.hpp"

namespace dmz::trust {
namespace {

std::string hex(const unsigned char* data, size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out += digits[data[i] >> 4];
    out += digits[data[i] & 15];
  }
  return out;
}

// Length-prefixed, so that no two different sources hash alike.
void add_field(std::string& buf, std::string_view field) {
  buf += std::to_string(field.size());
  buf += ':';
  buf += field;
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return hex(md, len);
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// The blob id of the note of `object` in the notes tree `tree` ("" if none): git stores it at the
// object's hex name, fanned out into directories of two hex digits once a notes tree grows
// large. Only the entries on that path are looked at, never the whole notes tree.
Result<std::string> note_blob_in(git::Mirror& mirror, std::string tree, const std::string& object) {
  for (size_t level = 0; level <= 4; ++level) {
    auto entries = list_tree(mirror, tree, "");
    if (!entries) return entries.error();
    if (!*entries) return std::string();
    const std::string rest = object.substr(2 * level), fanout = rest.substr(0, 2);
    std::string next;
    for (const auto& e : **entries) {
      if (e.name == rest && (is_regular_file(e) || e.mode == "120000")) return e.id;  // a blob
      if (e.name == fanout && is_tree(e)) next = e.id;
    }
    if (next.empty()) return std::string();
    tree = std::move(next);
  }
  return std::string();
}

}  // namespace

std::string short_sha(std::string_view sha) { return std::string(sha.substr(0, 7)); }

Result<std::optional<PolicySource>> policy_source_at(git::Mirror& mirror,
                                                     const std::string& commit) {
  using Out = std::optional<PolicySource>;
  // From raw objects: libgit2 would refuse a commit that git accepts (raw_objects.hpp).
  auto links = commit_links(mirror, commit);
  if (!links) return links.error();
  auto top = list_tree(mirror, links->tree, "");
  if (!top) return top.error();
  if (!*top) return Out();
  auto named = [](std::string_view name) {
    return [name](const TreeEntry& e) { return e.name == name; };
  };
  auto dir = std::find_if((*top)->begin(), (*top)->end(), named(queue::kPolicyDir));
  if (dir == (*top)->end()) return Out();

  PolicySource src;
  src.label = std::string(queue::kPolicyPath) + "@" + short_sha(commit);
  const std::string where = " at " + short_sha(commit);
  // A `.dmz` that is not a directory (a symlink, a file, a submodule) holds no policy git could
  // check out, but reading it as "no policy" would let the trust root, or nothing, judge.
  if (!is_tree(*dir)) {
    src.refusal =
        std::string(queue::kPolicyDir) + where + " is not a directory (" + kind_of(*dir) + ")";
    return Out(std::move(src));
  }
  auto dmz = list_tree(mirror, dir->id, "");
  if (!dmz) return dmz.error();
  if (!*dmz) return Out();
  const std::string policy_name(queue::kPolicyPath.substr(queue::kPolicyPath.rfind('/') + 1));
  auto entry = std::find_if((*dmz)->begin(), (*dmz)->end(), named(policy_name));
  if (entry == (*dmz)->end()) return Out();

  // Anything but a regular file (a directory, a submodule, a symlink, whose target git stores
  // as the blob) is refused, never read as "no policy" (which would let everything pass).
  if (!is_regular_file(*entry)) {
    src.refusal = std::string(queue::kPolicyPath) + where + " is not a regular file (" +
                  kind_of(*entry) + ")";
    return Out(std::move(src));
  }
  // The same size limit as for a policy file outside the repository, checked before the blob is
  // read.
  auto read_blob = [&](const TreeEntry& e, const std::string& path) -> Result<std::string> {
    auto blob = mirror.read_object(e.id, kMaxPolicyFileBytes);
    if (!blob) return blob.status().prefixed(path + where + ": ").error();
    return std::move(blob->first);
  };
  auto text = read_blob(*entry, std::string(queue::kPolicyPath));
  if (!text) {
    if (text.code() != Code::kInvalid) return text.error();
    src.refusal = text.message();
    return Out(std::move(src));
  }
  src.text = std::move(*text);
  auto keys = list_tree(mirror, links->tree, kKeysDir);
  if (!keys) return keys.error();
  if (*keys) {
    for (const auto& e : **keys) {  // git sorts tree entries: the order is deterministic
      if (!ends_with(e.name, ".asc") || !is_regular_file(e)) continue;
      const std::string path = std::string(kKeysDir) + "/" + e.name;
      auto blob = read_blob(e, path);
      if (!blob) {
        if (blob.code() != Code::kInvalid) return blob.error();
        src = PolicySource{src.label, {}, {}, blob.message()};
        return Out(std::move(src));
      }
      src.armored_keys.emplace_back(path + "@" + short_sha(commit), std::move(*blob));
    }
  }
  return Out(std::move(src));
}

Result<PolicySource> policy_source_from_file(const std::filesystem::path& file) {
  PolicySource src;
  src.label = file.string();
  auto text = read_regular_file(file, kMaxPolicyFileBytes);
  if (!text) return text.error();
  src.text = std::move(*text);
  std::filesystem::path keys = file.parent_path() / "keys";
  std::error_code ec;
  if (std::filesystem::is_directory(keys, ec)) {
    std::vector<std::filesystem::path> files;
    for (const auto& entry : std::filesystem::directory_iterator(keys, ec))
      if (entry.path().extension() == ".asc") files.push_back(entry.path());
    if (ec) return unavailable("cannot list " + keys.string() + ": " + ec.message());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      // A key file that is not a regular file is an error, not skipped: the operator meant it.
      auto content = read_regular_file(f, kMaxPolicyFileBytes);
      if (!content) return content.error();
      src.armored_keys.emplace_back(f.string(), std::move(*content));
    }
  }
  return src;
}

std::optional<std::string> trust_root_digest(const std::filesystem::path& policy_root) {
  if (policy_root.empty()) return std::string();
  std::string all;  // each part length-prefixed, so no two roots hash the same text
  auto part = [&all](std::string_view s) {
    all += std::to_string(s.size()) + ":";
    all += s;
  };
  auto source = policy_source_from_file(policy_root);
  if (!source) {
    if (source.code() == Code::kUnavailable) return std::nullopt;
    part("unreadable");
    part(source.message());
  } else {
    part(source->text);
    for (const auto& [name, armored] : source->armored_keys) {
      part(std::filesystem::path(name).filename().string());
      part(armored);
    }
  }
  return to_hex(sha256(all));
}

// ---- TrustKeys ---------------------------------------------------------------------------------

TrustKeys::Loaded TrustKeys::load(const PolicySource& source) {
  Loaded out;
  if (!source.refusal.empty()) {  // fail closed: nothing to parse
    out.problems.push_back(escape_control(source.refusal));
    return out;
  }
  // The ssh lines are part of the policy: a malformed one fails the policy (closed), as a
  // parse problem would, at its line. The keys parsed here are kept for verification.
  std::map<std::string, SshPublicKey> ssh_lines;
  auto check_ssh = [&](std::string_view line) -> std::string {
    auto key = parse_ssh_public_key(line);
    if (!key) return key.message();
    ssh_lines.emplace(std::string(line), std::move(*key));
    return {};
  };
  auto parsed = config::parse_policy(source.text, source.label, check_ssh);
  for (const auto& p : parsed.problems) out.problems.push_back(p.to_string());
  if (!parsed.policy) return out;

  std::shared_ptr<TrustKeys> keys(new TrustKeys());
  keys->policy_ = std::move(*parsed.policy);
  keys->label_ = source.label;
  keys->source_ = source;
  keys->armored_keys_ = source.armored_keys;
  for (const auto& [name, account] : keys->policy_.accounts) {
    for (const auto& line : account.ssh) {
      auto key = ssh_lines.find(line);
      if (key == ssh_lines.end()) continue;  // every line was checked: cannot happen
      auto& owners = keys->ssh_accounts_[key->second.fingerprint];
      if (std::find(owners.begin(), owners.end(), name) == owners.end()) owners.push_back(name);
      keys->ssh_keys_.push_back(key->second);
    }
  }

  std::string buf;
  add_field(buf, "dmzbot policy v1");
  add_field(buf, source.text);
  for (const auto& [label, text] : source.armored_keys) add_field(buf, text);
  keys->digest_ = sha256_hex(buf);
  out.keys = std::move(keys);
  return out;
}

OpenPgpVerifier* TrustKeys::openpgp(std::string& problem) {
  if (openpgp_) return openpgp_.get();
  if (!openpgp_problem_.empty()) {
    problem = openpgp_problem_;
    return nullptr;
  }
  auto v = OpenPgpVerifier::create();
  if (!v) {
    // On our side (no room for a GnuPG home, gpg missing): not kept, the next signature tries
    // again; "error:" keeps the result out of the cache, as for any machine failure.
    problem = v.message().starts_with("error:") ? v.message() : "error: " + v.message();
    return nullptr;
  }
  auto verifier = std::make_unique<OpenPgpVerifier>(std::move(*v));
  for (const auto& [label, text] : armored_keys_) {
    if (auto imported = verifier->import_keys(text); !imported) {
      // A key file that does not import is a broken policy commit: refuse every OpenPGP
      // signature rather than judge with part of the keys.
      openpgp_problem_ = "error: key file " + label + ": " + imported.message();
      problem = openpgp_problem_;
      return nullptr;
    }
  }
  openpgp_ = std::move(verifier);
  return openpgp_.get();
}

SignatureCheck TrustKeys::verify(SignatureKind kind, std::string_view payload,
                                 std::string_view signature, std::int64_t signed_at) {
  SignatureCheck out;
  switch (kind) {
    case SignatureKind::none:
      return out;
    case SignatureKind::x509:
      out.problem = "unsupported: x509 signatures";
      return out;
    case SignatureKind::ssh: {
      auto v = verify_sshsig(signature, payload, ssh_keys_, signed_at);
      if (!v) {
        out.problem = v.message();
        return out;
      }
      auto it = ssh_accounts_.find(v->fingerprint);
      if (it == ssh_accounts_.end()) {
        out.problem = "no-key: " + v->fingerprint + " is not in the policy";
      } else if (it->second.size() != 1) {
        out.problem = "ambiguous-key: " + v->fingerprint + " belongs to several accounts";
      } else {
        out.signer = it->second.front();
      }
      return out;
    }
    case SignatureKind::openpgp: {
      OpenPgpVerifier* verifier = openpgp(out.problem);
      if (!verifier) return out;
      auto v = verifier->verify(payload, signature);
      if (!v) {
        out.problem = v.message();
        return out;
      }
      // Only a fingerprint an account names counts, whatever the key files hold.
      const queue::Account* account = policy_.account_for_openpgp(v->primary_fingerprint);
      if (!account) {
        out.problem = "no-key: " + v->primary_fingerprint + " is named by no account of the policy";
      } else {
        out.signer = account->name;
      }
      return out;
    }
  }
  out.problem = "bad-signature: unknown kind";
  return out;
}

// ---- FactGatherer ------------------------------------------------------------------------------

namespace {
// One verification for /metrics: its format and whether it passed.
void count_verification(SignatureKind kind, const SignatureCheck& check) {
  metrics::global().add("dmzbot_signature_verifications_total",
                        {{"format", kind == SignatureKind::openpgp ? "openpgp" : "ssh"},
                         {"result", check.problem.empty() ? "good" : "refused"}});
}
}  // namespace

SignatureCheck FactGatherer::cached_verify(TrustKeys& keys, const std::string& object_id,
                                           SignatureKind kind, std::string_view payload,
                                           std::string_view signature, std::int64_t signed_at) {
  if (kind == SignatureKind::none || kind == SignatureKind::x509)
    return keys.verify(kind, payload, signature, signed_at);  // no signature operation
  std::pair<std::string, std::string> key{object_id, keys.digest()};
  if (auto it = cache_.find(key); it != cache_.end()) return it->second;
  ++verifications_;
  SignatureCheck check = keys.verify(kind, payload, signature, signed_at);
  count_verification(kind, check);
  // Results that depend on the machine rather than the object (GnuPG missing) are not cached.
  if (check.problem.rfind("error:", 0) == 0) return check;
  if (cache_.size() >= cache_limit_) cache_.clear();
  cache_.emplace(std::move(key), check);
  return check;
}

void FactGatherer::prefetch(const std::filesystem::path& repo_dir, const TrustKeys& keys,
                            const std::vector<std::string>& shas, unsigned threads) {
  if (threads < 2) return;
  std::vector<std::string> todo;
  for (const auto& sha : shas)
    if (!cache_.count({sha, keys.digest()})) todo.push_back(sha);
  threads = std::min<unsigned>(threads, static_cast<unsigned>(todo.size() / 8));
  if (threads < 2) return;

  struct Done {
    std::vector<std::pair<std::string, SignatureCheck>> results;
    std::uint64_t verifications = 0;
  };
  std::vector<Done> done(threads);
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      auto mirror = git::Mirror::open_existing(repo_dir);
      if (!mirror) return;
      auto loaded = TrustKeys::load(keys.source());
      if (!loaded.keys) return;
      for (size_t i = t; i < todo.size(); i += threads) {
        auto obj = (*mirror)->read_object(todo[i]);
        if (!obj || obj->second != "commit") continue;
        auto parsed = parse_commit(obj->first);
        if (!parsed || parsed->signature_kind != SignatureKind::openpgp) continue;
        ++done[t].verifications;
        SignatureCheck check = loaded.keys->verify(parsed->signature_kind, parsed->payload,
                                                   *parsed->signature, parsed->committer.time);
        count_verification(parsed->signature_kind, check);
        if (check.problem.rfind("error:", 0) == 0) continue;  // not cached, as in cached_verify
        done[t].results.emplace_back(todo[i], std::move(check));
      }
    });
  }
  for (auto& th : pool) th.join();
  for (auto& d : done) {
    verifications_ += d.verifications;
    for (auto& [sha, check] : d.results) {
      if (cache_.size() >= cache_limit_) cache_.clear();
      cache_[{sha, keys.digest()}] = std::move(check);
    }
  }
}

Result<queue::CommitFact> FactGatherer::commit_fact(git::Mirror& mirror, TrustKeys& keys,
                                                    const std::string& sha,
                                                    std::optional<ParsedCommit>* parsed_out) {
  auto obj = mirror.read_object(sha);
  if (!obj) return obj.error();
  if (obj->second != "commit") return invalid(sha + " is a " + obj->second + ", not a commit");
  queue::CommitFact fact;
  fact.sha = sha;
  if (parsed_out) parsed_out->reset();
  auto parsed = parse_commit(obj->first);
  // Parents and paths come from the raw objects, read as git reads them, so that a commit the
  // strict parser refuses is still placed and judged (raw_objects.hpp).
  auto links = commit_links(mirror, sha);
  if (!links) return links.error();
  std::string parent_tree;
  if (!links->parents.empty()) {
    auto parent = commit_links(mirror, links->parents.front());
    if (!parent) return parent.error();
    parent_tree = parent->tree;
  }
  auto paths = changed_paths(mirror, parent_tree, links->tree);
  if (!paths) return paths.error();
  fact.changes_policy = queue::touches_policy(*paths);
  fact.changed_paths = std::move(*paths);
  if (!parsed) {
    fact.signature_problem = parsed.message();
    fact.is_merge = links->parents.size() > 1;
    return fact;
  }
  fact.is_merge = parsed->parents.size() > 1;
  SignatureCheck check =
      cached_verify(keys, sha, parsed->signature_kind, parsed->payload,
                    parsed->signature ? *parsed->signature : std::string(), parsed->committer.time);
  fact.signer = check.signer;
  fact.signature_problem = check.problem;
  if (parsed_out) *parsed_out = std::move(*parsed);
  return fact;
}

Result<SignatureCheck> FactGatherer::commit_signature(git::Mirror& mirror, TrustKeys& keys,
                                                      const std::string& sha) {
  auto obj = mirror.read_object(sha);
  if (!obj) return obj.error();
  if (obj->second != "commit") return invalid(sha + " is a " + obj->second + ", not a commit");
  auto parsed = parse_commit(obj->first);
  if (!parsed) return SignatureCheck{std::nullopt, parsed.message()};
  return cached_verify(keys, sha, parsed->signature_kind, parsed->payload,
                       parsed->signature ? *parsed->signature : std::string(),
                       parsed->committer.time);
}

Result<std::string> FactGatherer::note_blob(git::Mirror& mirror, const std::string& commit,
                                            const std::string& object) {
  if (commit.empty()) return std::string();
  auto links = commit_links(mirror, commit);
  if (!links) return links.error();
  std::pair<std::string, std::string> key{links->tree, object};
  if (auto it = note_blobs_.find(key); it != note_blobs_.end()) return it->second;
  auto blob = note_blob_in(mirror, links->tree, object);
  if (!blob) return blob.error();
  if (note_blobs_.size() >= cache_limit_) note_blobs_.clear();
  note_blobs_.emplace(std::move(key), *blob);
  return blob;
}

Result<std::vector<NoteChange>> FactGatherer::note_changes(git::Mirror& mirror,
                                                           const std::string& notes_tip,
                                                           const std::string& object,
                                                           std::size_t limit) {
  auto history = mirror.newest_commits(notes_tip, limit);
  if (!history) return history.error();
  std::vector<NoteChange> out;
  for (auto it = history->rbegin(); it != history->rend(); ++it) {  // oldest first
    const auto& [commit, first_parent] = *it;
    auto before = note_blob(mirror, first_parent, object);
    if (!before) return before.error();
    auto after = note_blob(mirror, commit, object);
    if (!after) return after.error();
    if (*before == *after) continue;  // unchanged, or moved by a fan-out
    out.push_back({commit, std::move(*before), std::move(*after)});
  }
  return out;
}

Result<std::string> note_text(git::Mirror& mirror, const std::string& blob) {
  if (blob.empty()) return std::string();
  auto obj = mirror.read_object(blob, kMaxNoteBytes);
  if (!obj) return obj.status().prefixed("note ").error();
  if (obj->second != "blob") return invalid("note " + blob + " is a " + obj->second);
  return std::move(obj->first);
}

Result<TagCheck> FactGatherer::tag_check(git::Mirror& mirror, TrustKeys& keys,
                                         const std::string& name, const std::string& tag_id) {
  auto obj = mirror.read_object(tag_id);
  if (!obj) return obj.error();
  if (obj->second != "tag") return invalid(tag_id + " is a " + obj->second + ", not a tag");
  TagCheck out;
  auto parsed = parse_tag(obj->first);
  if (!parsed) {
    out.refusal = "tag refs/tags/" + name + ": " + parsed.message();
    return out;
  }
  out.tag = std::move(*parsed);
  // The name is inside the signed object; the ref name is not. A tag moved to another name
  // (a replayed approval) says so here.
  if (out.tag.tag != name) {
    out.refusal = "tag refs/tags/" + name + " claims to be " + out.tag.tag;
    return out;
  }
  std::int64_t when = out.tag.tagger ? out.tag.tagger->time : 0;
  out.signature = cached_verify(keys, tag_id, out.tag.signature_kind, out.tag.payload,
                                out.tag.signature ? *out.tag.signature : std::string(), when);
  return out;
}

Result<std::optional<PolicySource>> policy_in_force(git::Mirror& mirror, const std::string& target,
                                                    const std::filesystem::path& policy_root) {
  if (!target.empty()) {
    auto committed = policy_source_at(mirror, target);
    if (!committed)
      return committed.status()
          .prefixed("reading the policy at " + short_sha(target) + ": ")
          .error();
    if (*committed) return std::move(*committed);
  }
  if (policy_root.empty()) return std::optional<PolicySource>();
  auto root = policy_source_from_file(policy_root);
  if (!root) return root.status().prefixed("reading the trust root: ").error();
  return std::optional<PolicySource>(std::move(*root));
}

TrustKeys::Loaded KeyCache::load(const PolicySource& source) {
  auto loaded = TrustKeys::load(source);
  if (!loaded.keys) return loaded;
  if (auto it = keys_.find(loaded.keys->digest()); it != keys_.end()) {
    loaded.keys = it->second;
    return loaded;
  }
  if (keys_.size() >= 4) keys_.clear();
  keys_[loaded.keys->digest()] = loaded.keys;
  return loaded;
}

}  // namespace dmz::trust

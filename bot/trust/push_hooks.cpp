// dmzbot's git server hooks (see push_hooks.hpp). The judging is pure (push_cert.hpp); this file
// gathers the facts (environment, certificate blob, policy and keys) and writes the log.
#include "bot/trust/push_hooks.hpp"

#include <git2.h>
#include <openssl/rand.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "bot/git/mirror.hpp"
#include "bot/trust/facts.hpp"
#include "bot/trust/push_cert.hpp"
#include "config/hook_config.hpp"

namespace dmz::trust {
namespace fs = std::filesystem;
namespace {

constexpr std::size_t kMaxStdin = 16 << 20;
constexpr std::size_t kMaxCertificate = 1 << 20;
constexpr std::size_t kMaxLogEntries = 1000000;

void say(const std::string& line) { std::fprintf(stderr, "dmzbot: %s\n", line.c_str()); }

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

Result<std::string> read_bounded(std::FILE* in) {
  std::string out;
  char buf[65536];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, in)) > 0) {
    out.append(buf, n);
    if (out.size() > kMaxStdin) return invalid("more than 16 MiB of ref updates");
  }
  if (std::ferror(in)) return unavailable("reading the ref updates from stdin failed");
  return out;
}

std::optional<config::HookConfig> load_config(const fs::path& file) {
  if (file.empty()) return config::HookConfig{};
  auto loaded = config::load_hook_config(file);
  for (const auto& p : loaded.problems) say(p.to_string());
  return loaded.config;
}

// The policy that judges pushes: `override` if given, else the committed policy at the tip of
// the policy branch, else the configured trust root. Empty keys: `problem` says why.
struct PushPolicy {
  std::shared_ptr<TrustKeys> keys;
  std::string problem;
};
PushPolicy push_policy(git::Mirror& mirror, const config::HookConfig& cfg,
                       const fs::path& override_file = {}) {
  PushPolicy out;
  Result<std::optional<PolicySource>> source = std::optional<PolicySource>();
  if (!override_file.empty()) {
    auto s = policy_source_from_file(override_file);
    if (!s) {
      out.problem = s.status().message();
      return out;
    }
    source = std::optional<PolicySource>(std::move(*s));
  } else {
    auto tip = mirror.reference("refs/heads/" + cfg.policy_branch);
    source = policy_in_force(mirror, tip.value_or(""), cfg.policy_root);
  }
  if (!source) {
    out.problem = source.status().message();
  } else if (!*source) {
    out.problem = "no policy: " + cfg.policy_branch +
                  " has no .dmz/policy.toml and no policy_root is configured";
  } else {
    auto loaded = TrustKeys::load(**source);
    out.keys = loaded.keys;
    for (const auto& p : loaded.problems) out.problem += (out.problem.empty() ? "" : "; ") + p;
  }
  return out;
}

Result<PushCertificate> read_certificate(git::Mirror& mirror, const std::string& blob) {
  auto object = mirror.read_object(blob, kMaxCertificate);
  if (!object) return object.status().prefixed("the certificate ").error();
  if (object->second != "blob") return invalid("GIT_PUSH_CERT " + blob + " is not a blob");
  return parse_push_certificate(object->first);
}

// Verifies the certificate's signature with the policy's keys: the signing account, or why not.
SignatureCheck check_signature(const PushCertificate& cert, TrustKeys* keys,
                               const std::string& policy_problem) {
  if (!keys) return {std::nullopt, policy_problem};
  if (cert.signature.empty()) return {std::nullopt, "the certificate is unsigned"};
  return keys->verify(cert.signature_kind, cert.payload, cert.signature, cert.pushed_at);
}

PushRules rules_for(const config::HookConfig& cfg, TrustKeys* keys) {
  PushRules rules;
  rules.protected_refs = cfg.protected_refs;
  rules.require_signed = cfg.require_signed;
  rules.nonce_slop = cfg.nonce_slop;
  if (keys) rules.allowed = [keys](std::string_view ref) { return keys->policy().pushers(ref); };
  return rules;
}

// --- libgit2 for the log's writes and the list of refs (Mirror reads everything else) -----

struct RepoCloser {
  void operator()(git_repository* r) const { git_repository_free(r); }
};
using RepoPtr = std::unique_ptr<git_repository, RepoCloser>;

std::string last_git_error(const std::string& what) {
  const git_error* e = git_error_last();
  return what + ": " + (e && e->message ? e->message : "libgit2 error");
}

Result<RepoPtr> open_repo(const fs::path& dir) {
  git_repository* r = nullptr;
  if (git_repository_open_ext(&r, dir.c_str(), 0, nullptr) < 0)
    return unavailable(last_git_error("open repository " + dir.string()));
  return RepoPtr(r);
}

std::vector<std::pair<std::string, std::string>> all_refs(git_repository* repo) {
  std::vector<std::pair<std::string, std::string>> out;
  git_reference_iterator* it = nullptr;
  if (git_reference_iterator_new(&it, repo) < 0) return out;
  git_reference* ref = nullptr;
  while (git_reference_next(&ref, it) == 0) {
    git_reference* resolved = nullptr;
    if (git_reference_resolve(&resolved, ref) == 0) {
      char hex[GIT_OID_HEXSZ + 1] = {};
      git_oid_tostr(hex, sizeof hex, git_reference_target(resolved));
      out.emplace_back(git_reference_name(ref), hex);
      git_reference_free(resolved);
    }
    git_reference_free(ref);
  }
  git_reference_iterator_free(it);
  return out;
}

// Appends one entry to the log: tree {certificate, updates}, parent = the current tip, then
// moves the ref only if it is still at that tip (concurrent pushes retry).
Status append_log_entry(git_repository* repo, const std::string& log_ref,
                        const std::string& cert_blob, const std::string& updates) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    git_oid cert{}, upd{}, tree_id{}, commit_id{}, parent_id{};
    if (git_oid_fromstr(&cert, cert_blob.c_str()) < 0) return invalid("bad GIT_PUSH_CERT");
    if (git_blob_create_from_buffer(&upd, repo, updates.data(), updates.size()) < 0)
      return error(last_git_error("write updates"));
    git_treebuilder* tb = nullptr;
    if (git_treebuilder_new(&tb, repo, nullptr) < 0) return error(last_git_error("tree"));
    bool ok = git_treebuilder_insert(nullptr, tb, "certificate", &cert, GIT_FILEMODE_BLOB) == 0 &&
              git_treebuilder_insert(nullptr, tb, "updates", &upd, GIT_FILEMODE_BLOB) == 0 &&
              git_treebuilder_write(&tree_id, tb) == 0;
    git_treebuilder_free(tb);
    if (!ok) return error(last_git_error("write log tree"));
    git_tree* tree = nullptr;
    if (git_tree_lookup(&tree, repo, &tree_id) < 0) return error(last_git_error("tree"));
    git_commit* parent = nullptr;
    bool has_parent = git_reference_name_to_id(&parent_id, repo, log_ref.c_str()) == 0;
    if (has_parent && git_commit_lookup(&parent, repo, &parent_id) < 0) {
      git_tree_free(tree);
      return error(last_git_error("read " + log_ref));
    }
    git_signature* sig = nullptr;
    git_signature_now(&sig, "dmzbot", "dmzbot@localhost");
    const git_commit* parents[1] = {parent};
    std::string message = "push certificate\n\n" + updates;
    int rc = git_commit_create(&commit_id, repo, nullptr, sig, sig, nullptr, message.c_str(), tree,
                               has_parent ? 1 : 0, parents);
    git_signature_free(sig);
    git_commit_free(parent);
    git_tree_free(tree);
    if (rc < 0) return error(last_git_error("write log entry"));
    git_reference* out = nullptr;
    rc = has_parent ? git_reference_create_matching(&out, repo, log_ref.c_str(), &commit_id, 1,
                                                    &parent_id, "dmzbot: push certificate")
                    : git_reference_create(&out, repo, log_ref.c_str(), &commit_id, 0,
                                           "dmzbot: push certificate");
    git_reference_free(out);
    if (rc == 0) return {};
    if (rc != GIT_EMODIFIED && rc != GIT_EEXISTS && rc != GIT_ELOCKED)
      return error(last_git_error("update " + log_ref));
  }
  return conflict(log_ref + " kept moving under five attempts to append to it");
}

}  // namespace

// The second line of every hook install-hooks writes: how it knows its own from others'.
constexpr std::string_view kHookMarker = "# written by dmzbot install-hooks";

int run_install_hooks(const InstallHooksOptions& options) {
  auto cfg = load_config(options.config);
  if (!cfg) return 2;
  std::error_code ec;
  fs::path config = fs::absolute(options.config, ec);
  fs::path dmzbot = options.dmzbot.empty() ? fs::read_symlink("/proc/self/exe", ec)
                                           : fs::absolute(options.dmzbot, ec);
  if (ec) {
    say("cannot find the dmzbot executable: " + ec.message());
    return 2;
  }
  git_libgit2_init();
  auto repo = open_repo(options.repo);
  if (!repo) {
    say(repo.status().message());
    git_libgit2_shutdown();
    return 2;
  }
  int rc = 0;
  {
    fs::path hooks = fs::path(git_repository_path(repo->get())) / "hooks";
    fs::create_directories(hooks, ec);
    // Paths are single-quoted for sh; a quote in them would break out, so it is refused.
    auto quote = [](const fs::path& p) { return "'" + p.string() + "'"; };
    if (config.string().find('\'') != std::string::npos ||
        dmzbot.string().find('\'') != std::string::npos) {
      say("paths with a single quote are not supported");
      rc = 2;
    }
    // A hook someone else wrote (the server's own CI trigger, another policy) is not replaced
    // without a word: the operator moves it aside or chains it first.
    for (const char* hook : {"pre-receive", "post-receive"}) {
      const fs::path file = hooks / hook;
      if (!fs::exists(file, ec)) continue;
      std::ifstream in(file);
      std::string first, second;
      std::getline(in, first);
      std::getline(in, second);
      if (second != kHookMarker) {
        say(file.string() +
            " exists and was not written by dmzbot; move it aside (or call it "
            "from elsewhere), then install again");
        rc = 2;
      }
    }
    for (const char* hook : {"pre-receive", "post-receive"}) {
      if (rc) break;
      fs::path file = hooks / hook;
      fs::path tmp = hooks / (std::string(hook) + ".dmzbot-tmp");
      {
        std::ofstream out(tmp, std::ios::trunc);
        out << "#!/bin/sh\n"
            << kHookMarker << "\nexec " << quote(dmzbot) << " " << hook << " --config "
            << quote(config) << "\n";
        if (!out) rc = 2;
      }
      fs::permissions(tmp,
                      fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                          fs::perms::others_read | fs::perms::others_exec,
                      ec);
      if (rc || ec) {
        say("cannot write " + tmp.string());
        rc = 2;
        break;
      }
      fs::rename(tmp, file, ec);
      if (ec) {
        say("cannot write " + file.string() + ": " + ec.message());
        rc = 2;
      }
    }
    git_config* gc = nullptr;
    if (!rc && git_repository_config(&gc, repo->get()) == 0) {
      git_buf existing = GIT_BUF_INIT;
      if (git_config_get_string_buf(&existing, gc, "receive.certNonceSeed") != 0) {
        unsigned char seed[32];
        if (RAND_bytes(seed, sizeof seed) != 1) {
          say("no randomness for receive.certNonceSeed");
          rc = 2;
        } else {
          static const char* hexd = "0123456789abcdef";
          std::string hex;
          for (unsigned char c : seed) hex += {hexd[c >> 4], hexd[c & 15]};
          if (git_config_set_string(gc, "receive.certNonceSeed", hex.c_str()) < 0) rc = 2;
        }
      }
      git_buf_dispose(&existing);
      if (!rc && cfg->nonce_slop > 0 &&
          git_config_set_int64(gc, "receive.certNonceSlop", cfg->nonce_slop) < 0)
        rc = 2;
      // A bare repository keeps no reflog by default; with one, `dmzbot verify --releases`
      // audits every commit staging and production ever held, not only their tips.
      if (!rc && git_config_set_string(gc, "core.logAllRefUpdates", "true") < 0) rc = 2;
      if (rc) say(last_git_error("setting receive.certNonceSeed"));
      git_config_free(gc);
    } else if (!rc) {
      say(last_git_error("open the repository's config"));
      rc = 2;
    }
    if (!rc) std::printf("installed pre-receive and post-receive in %s\n", hooks.string().c_str());
  }
  repo->reset();
  git_libgit2_shutdown();
  return rc;
}

int run_pre_receive(const fs::path& config_file, std::FILE* in) {
  auto cfg = load_config(config_file);
  if (!cfg) {
    say("refused: the hooks' configuration is broken");
    return 1;
  }
  auto input = read_bounded(in);
  if (!input) {
    say("refused: " + input.status().message());
    return 1;
  }
  PushFacts facts;
  auto updates = parse_ref_commands(*input);
  if (!updates) {
    say("refused: " + updates.status().message());
    return 1;
  }
  facts.updates = std::move(*updates);

  std::vector<std::string> reasons;
  // Only post-receive writes the log; nobody pushes it.
  for (const RefCommand& u : facts.updates)
    if (u.ref == cfg->log_ref)
      reasons.push_back(u.ref + ": written only by the server's post-receive hook");

  auto mirror = git::Mirror::open_existing(".");
  if (!mirror) {
    say("refused: " + mirror.status().message());
    return 1;
  }
  facts.git_status = env("GIT_PUSH_CERT_STATUS");
  facts.nonce_status = env("GIT_PUSH_CERT_NONCE_STATUS");
  if (std::string slop = env("GIT_PUSH_CERT_NONCE_SLOP"); !slop.empty()) {
    char* end = nullptr;
    long long v = std::strtoll(slop.c_str(), &end, 10);
    if (end && *end == '\0') facts.nonce_slop = v;
  }
  PushPolicy policy;
  bool needs_policy =
      std::any_of(facts.updates.begin(), facts.updates.end(), [&](const RefCommand& u) {
        return cfg->require_signed || is_protected(rules_for(*cfg, nullptr), u.ref);
      });
  if (std::string blob = env("GIT_PUSH_CERT"); !blob.empty()) {
    auto cert = read_certificate(**mirror, blob);
    if (!cert) {
      facts.cert_problem = cert.status().message();
    } else {
      facts.cert = std::move(*cert);
      if (needs_policy) {
        policy = push_policy(**mirror, *cfg);
        SignatureCheck check = check_signature(*facts.cert, policy.keys.get(), policy.problem);
        facts.signer = check.signer;
        if (!check.problem.empty()) facts.signer.reset();
        facts.signature_problem = check.problem;
      }
    }
  }
  for (std::string& r : judge_push(facts, rules_for(*cfg, policy.keys.get())))
    reasons.push_back(std::move(r));
  for (const std::string& r : reasons) say("refused: " + r);
  return reasons.empty() ? 0 : 1;
}

int run_post_receive(const fs::path& config_file, std::FILE* in) {
  auto cfg = load_config(config_file);
  if (!cfg) return 1;
  auto input = read_bounded(in);
  if (!input) {
    say(input.status().message());
    return 1;
  }
  const std::string blob = env("GIT_PUSH_CERT");
  if (blob.empty()) return 0;  // an unsigned push (of an unprotected ref): nothing to log
  git_libgit2_init();
  int rc = 0;
  {
    auto repo = open_repo(".");
    Status s = repo ? append_log_entry(repo->get(), cfg->log_ref, blob, *input) : repo.status();
    if (!s.ok()) {
      say("the push certificate was not logged: " + s.message());
      rc = 1;
    }
  }
  git_libgit2_shutdown();
  return rc;
}

int run_verify_pushes(const VerifyPushesOptions& options) {
  auto cfg = load_config(options.config);
  if (!cfg) return 2;
  auto mirror = git::Mirror::open_existing(options.repo);
  if (!mirror) {
    say(mirror.status().message());
    return 2;
  }
  git::Mirror& m = **mirror;
  PushPolicy policy = push_policy(m, *cfg, options.policy);
  if (!policy.keys) {
    say(policy.problem);
    return 2;
  }
  const PushRules rules = rules_for(*cfg, policy.keys.get());

  // The entries, oldest first: a chain of single-parent commits.
  std::vector<std::string> chain;
  std::vector<std::string> problems;
  auto tip = m.reference(cfg->log_ref);
  for (std::string at = tip.value_or(""); !at.empty();) {
    if (chain.size() >= kMaxLogEntries) {
      say("the log has more than " + std::to_string(kMaxLogEntries) + " entries");
      return 2;
    }
    auto raw = m.read_object(at);
    if (!raw || raw->second != "commit") {
      say("cannot read log entry " + at);
      return 2;
    }
    auto commit = parse_commit(raw->first);
    if (!commit) {
      problems.push_back("entry " + at.substr(0, 12) + ": " + commit.status().message());
      break;
    }
    chain.push_back(at);
    if (commit->parents.size() > 1)
      problems.push_back("entry " + at.substr(0, 12) +
                         " has several parents: not an append-only log");
    at = commit->parents.empty() ? "" : commit->parents[0];
  }
  std::reverse(chain.begin(), chain.end());

  nlohmann::json entries = nlohmann::json::array();
  std::map<std::string, std::string> state;  // protected ref -> where the log leaves it
  std::int64_t last_nonce_time = 0;
  for (size_t i = 0; i < chain.size(); ++i) {
    const std::string& entry = chain[i];
    const std::string label = "entry " + std::to_string(i + 1) + " (" + entry.substr(0, 12) + ")";
    std::vector<std::string> mine;
    auto cert_text = m.read_file(entry, "certificate");
    auto updates_text = m.read_file(entry, "updates");
    if (!cert_text || !updates_text) {
      say("cannot read " + label);
      return 2;
    }
    std::optional<PushCertificate> cert;
    std::vector<RefCommand> updates;
    if (!*cert_text || !*updates_text) {
      mine.push_back("has no certificate or no updates file");
    } else if (auto c = parse_push_certificate(**cert_text); !c) {
      mine.push_back("certificate: " + c.status().message());
    } else if (auto u = parse_ref_commands(**updates_text); !u) {
      mine.push_back("updates: " + u.status().message());
    } else {
      cert = std::move(*c);
      updates = std::move(*u);
    }
    std::string signer;
    if (cert) {
      SignatureCheck check = check_signature(*cert, policy.keys.get(), policy.problem);
      if (!check.signer || !check.problem.empty())
        mine.push_back("the certificate does not verify with the policy's keys" +
                       (check.problem.empty() ? std::string() : ": " + check.problem));
      else
        signer = *check.signer;
      // The nonce starts with the server's time when it gave it: entries are in push order.
      std::int64_t stamp = std::atoll(cert->nonce.c_str());
      if (stamp < last_nonce_time)
        mine.push_back("its nonce is older than the previous entry's: entries out of order");
      last_nonce_time = std::max(last_nonce_time, stamp);
      for (const RefCommand& u : updates) {
        if (std::find(cert->commands.begin(), cert->commands.end(), u) == cert->commands.end())
          mine.push_back(u.ref + ": recorded update " + u.to_string() +
                         " is not what the certificate certifies");
        if (!is_protected(rules, u.ref)) continue;
        auto known = state.find(u.ref);
        if (known != state.end() && known->second != u.old_sha)
          mine.push_back(u.ref + ": moves from " + u.old_sha.substr(0, 12) +
                         " but the previous entry left it at " + known->second.substr(0, 12));
        state[u.ref] = u.new_sha;
        if (!signer.empty()) {
          auto allowed = rules.allowed(u.ref);
          if (std::find(allowed.begin(), allowed.end(), signer) == allowed.end())
            mine.push_back(u.ref + ": " + signer + " may not push it");
        }
      }
    }
    nlohmann::json e = {{"entry", entry}, {"signer", signer}, {"problems", mine}};
    nlohmann::json ups = nlohmann::json::array();
    for (const RefCommand& u : updates) ups.push_back(u.to_string());
    e["updates"] = ups;
    entries.push_back(e);
    for (const std::string& p : mine) problems.push_back(label + ": " + p);
  }

  // Every protected ref must be where the log leaves it; one the log never moved must not exist.
  git_libgit2_init();
  {
    auto repo = open_repo(options.repo);
    if (!repo) {
      say(repo.status().message());
      git_libgit2_shutdown();
      return 2;
    }
    std::set<std::string> seen;
    for (const auto& [ref, sha] : all_refs(repo->get())) {
      if (!is_protected(rules, ref)) continue;
      seen.insert(ref);
      auto it = state.find(ref);
      if (it == state.end())
        problems.push_back(ref + " is at " + sha.substr(0, 12) +
                           " but no logged certificate ever moved it");
      else if (it->second != sha)
        problems.push_back(ref + " is at " + sha.substr(0, 12) + " but the log leaves it at " +
                           it->second.substr(0, 12));
    }
    for (const auto& [ref, sha] : state)
      if (!seen.count(ref) && sha != kZeroSha)
        problems.push_back(ref + " does not exist but the log leaves it at " + sha.substr(0, 12));
  }
  git_libgit2_shutdown();

  if (options.json) {
    nlohmann::json out = {{"log_ref", cfg->log_ref},
                          {"entries", entries},
                          {"problems", problems},
                          {"ok", problems.empty()}};
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    for (size_t i = 0; i < entries.size(); ++i) {
      const auto& e = entries[i];
      std::string ups;
      for (const auto& u : e["updates"]) ups += " " + u.get<std::string>();
      std::printf(
          "%s %zu %s %s%s\n", e["problems"].empty() ? "ok  " : "FAIL", i + 1,
          e["entry"].get<std::string>().substr(0, 12).c_str(),
          e["signer"].get<std::string>().empty() ? "-" : e["signer"].get<std::string>().c_str(),
          ups.c_str());
    }
    for (const std::string& p : problems) std::printf("problem: %s\n", p.c_str());
    std::printf("%s: %zu entries, %zu problems\n", cfg->log_ref.c_str(), entries.size(),
                problems.size());
  }
  return problems.empty() ? 0 : 1;
}

Result<std::vector<RefCommand>> push_log_updates(git::Mirror& m, const std::string& log_ref) {
  std::vector<std::string> chain;
  for (std::string at = m.reference(log_ref).value_or(""); !at.empty();) {
    if (chain.size() >= kMaxLogEntries)
      return invalid(log_ref + " has more than " + std::to_string(kMaxLogEntries) + " entries");
    auto raw = m.read_object(at);
    if (!raw) return raw.error();
    if (raw->second != "commit") return invalid(log_ref + ": entry " + at + " is not a commit");
    auto commit = parse_commit(raw->first);
    if (!commit) return invalid(log_ref + ": entry " + at + ": " + commit.status().message());
    chain.push_back(at);
    at = commit->parents.empty() ? "" : commit->parents[0];
  }
  std::vector<RefCommand> out;
  for (auto entry = chain.rbegin(); entry != chain.rend(); ++entry) {
    auto text = m.read_file(*entry, "updates");
    if (!text) return text.error();
    if (!*text) return invalid(log_ref + ": entry " + *entry + " has no updates file");
    auto updates = parse_ref_commands(**text);
    if (!updates) return invalid(log_ref + ": entry " + *entry + ": " + updates.message());
    for (auto& u : *updates) out.push_back(std::move(u));
  }
  return out;
}

}  // namespace dmz::trust

// dmzbot's git server hooks (see push_hooks.hpp). The judging is pure (push_cert.hpp); this file
// gathers the facts (environment, certificate blob, policy and keys) and writes the log.
#include "bot/trust/push_hooks.hpp"

#include <git2.h>
#include <openssl/rand.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
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

// Every ref and the object it leads to. A ref that cannot be read is an error, not a ref that
// is not there: the audit must not pass on a list it could not make. A symbolic ref to a ref that
// does not exist leads nowhere and is left out.
Result<std::vector<std::pair<std::string, std::string>>> all_refs(git_repository* repo) {
  std::vector<std::pair<std::string, std::string>> out;
  git_reference_iterator* it = nullptr;
  if (git_reference_iterator_new(&it, repo) < 0) return unavailable(last_git_error("list refs"));
  git_reference* ref = nullptr;
  int rc = 0;
  while ((rc = git_reference_next(&ref, it)) == 0) {
    const std::string name = git_reference_name(ref);
    git_reference* resolved = nullptr;
    int resolve_rc = git_reference_resolve(&resolved, ref);
    git_reference_free(ref);
    if (resolve_rc == GIT_ENOTFOUND) continue;
    if (resolve_rc < 0) {
      rc = resolve_rc;
      break;
    }
    char hex[GIT_OID_HEXSZ + 1] = {};
    git_oid_tostr(hex, sizeof hex, git_reference_target(resolved));
    out.emplace_back(name, hex);
    git_reference_free(resolved);
  }
  git_reference_iterator_free(it);
  if (rc != GIT_ITEROVER) return unavailable(last_git_error("list refs"));
  return out;
}

// The target of the symbolic ref `name`; nullopt if it is a direct ref or does not exist.
Result<std::optional<std::string>> symbolic_target(git_repository* repo, const std::string& name) {
  git_reference* ref = nullptr;
  int rc = git_reference_lookup(&ref, repo, name.c_str());
  if (rc == GIT_ENOTFOUND) return std::optional<std::string>();
  if (rc < 0) return unavailable(last_git_error("read " + name));
  std::optional<std::string> target;
  if (git_reference_type(ref) == GIT_REFERENCE_SYMBOLIC)
    target = git_reference_symbolic_target(ref);
  git_reference_free(ref);
  return target;
}

// Refs nobody may push, each with why: the log ref and any ref that would keep post-receive
// from writing it (one under it, or at a parent path such as refs/dmz: a ref cannot be both a
// file and a directory); and updates through a symbolic ref, which receive-pack applies to its
// target (refs/heads/main -> refs/heads/master moves master) while the judgement and the log go
// by the pushed name.
std::vector<std::string> refused_refs(git_repository* repo, const std::vector<RefCommand>& updates,
                                      const std::string& log_ref) {
  std::vector<std::string> reasons;
  for (const RefCommand& u : updates) {
    if (u.ref == log_ref) {
      reasons.push_back(u.ref + ": written only by the server's post-receive hook");
      continue;
    }
    if (u.ref.starts_with(log_ref + "/") || log_ref.starts_with(u.ref + "/")) {
      reasons.push_back(u.ref + ": would keep the server's post-receive hook from writing " +
                        log_ref);
      continue;
    }
    auto target = symbolic_target(repo, u.ref);
    if (!target)
      reasons.push_back(target.status().message());
    else if (*target)
      reasons.push_back(u.ref + " is a symbolic ref to " + **target + "; push " + **target +
                        " itself");
  }
  return reasons;
}

// Where core.hooksPath (any config level git reads) sends receive-pack's hooks, if it is set and
// is not `hooks`: install-hooks writing into `hooks` would then enforce nothing. A relative path
// is taken from where git runs hooks (a bare repository's directory, or the work tree).
Result<std::optional<std::string>> other_hooks_path(git_repository* repo, const fs::path& hooks) {
  git_config* gc = nullptr;
  if (git_repository_config(&gc, repo) < 0)
    return unavailable(last_git_error("open the repository's config"));
  std::optional<std::string> out;
  git_config_entry* entry = nullptr;
  git_buf value = GIT_BUF_INIT;
  if (git_config_get_entry(&entry, gc, "core.hooksPath") == 0 &&
      git_config_get_path(&value, gc, "core.hooksPath") == 0) {
    const char* workdir = git_repository_workdir(repo);
    fs::path path = fs::path(workdir ? workdir : git_repository_path(repo)) / value.ptr;
    std::error_code ec;
    if (!fs::equivalent(path, hooks, ec)) {
      static const std::map<git_config_level_t, std::string> kWhere = {
          {GIT_CONFIG_LEVEL_SYSTEM, "the system config (git config --system)"},
          {GIT_CONFIG_LEVEL_XDG, "the user's ~/.config/git/config"},
          {GIT_CONFIG_LEVEL_GLOBAL, "the user's global config (git config --global)"},
          {GIT_CONFIG_LEVEL_LOCAL, "the repository's config (git config --local)"}};
      auto where = kWhere.find(entry->level);
      out = std::string("core.hooksPath is set to ") + value.ptr + " in " +
            (where == kWhere.end() ? std::string("a git config") : where->second);
    }
  }
  git_buf_dispose(&value);
  git_config_entry_free(entry);
  git_config_free(gc);
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
  // A trust root the hooks cannot read refuses every push to a branch with no committed
  // policy: a typo here would lock everyone out, so it is refused now, by the hooks' reader.
  if (!cfg->policy_root.empty())
    if (auto root = policy_source_from_file(cfg->policy_root); !root) {
      say(options.config.string() + ": policy_root: " + root.status().message() +
          "; pushes would be refused");
      rc = 2;
    }
  {
    fs::path hooks = fs::path(git_repository_path(repo->get())) / "hooks";
    fs::create_directories(hooks, ec);
    // receive-pack runs the hooks core.hooksPath names: ours in `hooks` would never run.
    if (auto elsewhere = other_hooks_path(repo->get(), hooks); !elsewhere) {
      say(elsewhere.status().message());
      rc = 2;
    } else if (*elsewhere) {
      say(**elsewhere + ": git would run the hooks there, not dmzbot's in " + hooks.string() +
          "; unset it, then install again");
      rc = 2;
    }
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
      // Set even when 0: a slop from an earlier install or the system config would make git
      // report a nonce that old as OK (as if it were this push's), hiding its age from the hook.
      if (!rc && git_config_set_int64(gc, "receive.certNonceSlop", cfg->nonce_slop) < 0) rc = 2;
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
  git_libgit2_init();
  if (auto repo = open_repo("."); !repo)
    reasons.push_back(repo.status().message());
  else
    reasons = refused_refs(repo->get(), facts.updates, cfg->log_ref);
  git_libgit2_shutdown();

  auto mirror = git::Mirror::open_existing(".");
  if (!mirror) {
    say("refused: " + mirror.status().message());
    return 1;
  }
  facts.git_status = env("GIT_PUSH_CERT_STATUS");
  facts.nonce_status = env("GIT_PUSH_CERT_NONCE_STATUS");
  facts.now = std::time(nullptr);
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
  auto updates = parse_ref_commands(*input);
  if (!updates) {
    say("the push certificate was not logged: " + updates.status().message());
    return 1;
  }
  // Only pushes that moved a protected ref are logged: pre-receive judged their certificate in
  // full, as `verify --pushes` judges it again. A signed push of other refs alone was not judged
  // (any developer's key may sign a feature branch); logged, it would fail the audit for good.
  const PushRules rules = rules_for(*cfg, nullptr);
  if (std::none_of(updates->begin(), updates->end(),
                   [&](const RefCommand& u) { return is_protected(rules, u.ref); }))
    return 0;
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
      // pre-receive accepts no certificate without one.
      if (auto stamp = nonce_stamp(cert->nonce); !stamp) {
        mine.push_back("the certificate has no nonce this server could have given");
      } else {
        if (*stamp < last_nonce_time)
          mine.push_back("its nonce is older than the previous entry's: entries out of order");
        last_nonce_time = std::max(last_nonce_time, *stamp);
      }
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
    auto refs = all_refs(repo->get());
    if (!refs) {
      say(refs.status().message());
      repo->reset();
      git_libgit2_shutdown();
      return 2;
    }
    std::set<std::string> seen;
    for (const auto& [ref, sha] : *refs) {
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

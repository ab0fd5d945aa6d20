// `dmzbot verify`: each commit of the range is judged with queue::evaluate_commit by the policy
// in force where it entered the audited branch: a commit of the branch's first-parent line by
// its first parent's, a commit a merge brought in (a PR's) by that merge's first parent's, as
// the gate judged it (the --policy file where that commit has none).
#include "bot/trust/verify_command.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "base/text.hpp"
#include "bot/git/mirror.hpp"
#include "bot/trust/facts.hpp"
#include "bot/trust/raw_objects.hpp"
#include "queue/policy.hpp"

namespace dmz {
namespace {

constexpr const char* kTargetBranch = "master";

struct Line {
  std::string sha;
  bool pass = false;
  std::optional<std::string> signer;
  std::vector<std::string> reasons;
};

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? sep : "") + parts[i];
  return out;
}

int usage_error(const std::string& message) {
  std::fprintf(stderr, "dmzbot verify: %s\n", escape_control(message).c_str());
  return 2;
}

class Auditor {
 public:
  struct KeysAt {
    std::shared_ptr<trust::TrustKeys> keys;  // null: no policy
    std::vector<std::string> problems;
  };

  Auditor(git::Mirror& mirror, std::shared_ptr<trust::TrustKeys> fallback)
      : mirror_(mirror), fallback_(std::move(fallback)) {}

  // Walks the first-parent line from `tip` through `range`: each merge on it is where the
  // commits it brought in (reachable from its other parents, not from its first) entered the
  // branch, so they are judged by its first parent's policy, never by one their own branch
  // proposed. (Two merges of the line never bring in the same commit: the older one is an
  // ancestor of the newer one's first parent.)
  Status attribute(const std::string& tip, const std::vector<std::string>& range) {
    const std::set<std::string> in_range(range.begin(), range.end());
    for (std::string at = tip; in_range.count(at);) {
      auto links = trust::commit_links(mirror_, at);
      if (!links) return links.status();
      if (links->parents.empty()) break;
      const std::string& first = links->parents.front();
      if (links->parents.size() > 1) {
        auto brought = trust::rev_list(mirror_, first, at);
        if (!brought) return brought.status();
        for (const auto& sha : *brought)
          if (sha != at) judged_at_[sha] = first;
      }
      at = first;
    }
    return {};
  }

  // Verifies the OpenPGP signatures of `shas` on a small pool of threads ahead of judge(),
  // grouped by the policy in force for each (GnuPG costs a process per signature).
  void prefetch(const std::vector<std::string>& shas, unsigned threads) {
    std::map<const trust::TrustKeys*, std::vector<std::string>> groups;
    for (const auto& sha : shas) {
      auto keys = keys_for(sha);
      if (keys && keys->keys) groups[keys->keys.get()].push_back(sha);
    }
    for (const auto& [keys, group] : groups)
      gatherer_.prefetch(mirror_.path(), *keys, group, threads);
  }

  // The verdict line for one commit, or an I/O error. A commit that cannot be judged (its
  // policy unusable, its headers refused) is a failing verdict, never an error.
  Result<Line> judge(const std::string& sha) {
    Line line;
    line.sha = sha;
    auto in_force = keys_for(sha);
    if (!in_force) return in_force.error();
    if (!in_force->problems.empty()) {
      line.reasons = std::move(in_force->problems);
      return line;
    }
    std::shared_ptr<trust::TrustKeys> keys = in_force->keys;
    if (!keys) {
      line.reasons.push_back("no policy in force");
      return line;
    }

    std::optional<ParsedCommit> parsed;
    auto fact = gatherer_.commit_fact(mirror_, *keys, sha, &parsed);
    if (!fact) return fact.error();
    if (fact->signature_problem.empty()) line.signer = fact->signer;

    // Evil merge: a merge whose tree is not the recomputed merge of its parents carries changes
    // nobody reviewed as a PR; only a conflict resolver may sign it.
    bool evil = false;
    if (fact->is_merge) {
      if (!parsed || parsed->parents.size() != 2) {
        evil = true;  // octopus or unparsable: cannot be recomputed, judge it as hand-made
      } else {
        // A merge libgit2 cannot recompute (it refuses a parent that git accepts) is judged as
        // hand-made too: that only narrows who may sign it.
        auto tree = mirror_.merge_tree(parsed->parents[0], parsed->parents[1]);
        evil = !tree || !*tree || **tree != parsed->tree;
      }
      fact->resolved_conflicts = evil;
    }
    queue::Verdict verdict = queue::evaluate_commit(keys->policy(), kTargetBranch, *fact);
    line.pass = verdict.pass;
    line.reasons = std::move(verdict.reasons);
    if (!verdict.pass && evil)
      line.reasons.push_back("evil merge: tree differs from the recomputed merge of its parents");
    return line;
  }

 private:
  // The policy in force for `sha`: where it entered the branch (attribute), else its first
  // parent's, else the --policy file; problems (reasons for the commit) when that policy is
  // unusable or does not parse.
  Result<KeysAt> keys_for(const std::string& sha) {
    std::string judge_at;
    if (auto it = judged_at_.find(sha); it != judged_at_.end()) {
      judge_at = it->second;
    } else {
      auto links = trust::commit_links(mirror_, sha);
      if (!links) return links.error();
      if (!links->parents.empty()) judge_at = links->parents.front();
    }
    if (!judge_at.empty()) {
      auto k = keys_at(judge_at);
      if (!k) return k.error();
      if (k->keys || !k->problems.empty()) return k;
    }
    return KeysAt{fallback_, {}};
  }

  Result<KeysAt> keys_at(const std::string& commit) {
    auto source = trust::policy_source_at(mirror_, commit);
    if (!source) return source.error();
    if (!*source) return KeysAt{};
    if (!(*source)->refusal.empty()) return KeysAt{nullptr, {(*source)->refusal}};
    auto loaded = trust::TrustKeys::load(**source);
    if (!loaded.keys) {
      std::vector<std::string> reasons = {"the policy at " + trust::short_sha(commit) +
                                          " does not parse"};
      reasons.insert(reasons.end(), loaded.problems.begin(), loaded.problems.end());
      return KeysAt{nullptr, std::move(reasons)};
    }
    // Reuse one TrustKeys (one GnuPG home) per distinct policy and key set.
    auto [it, inserted] = by_digest_.emplace(loaded.keys->digest(), loaded.keys);
    return KeysAt{it->second, {}};
  }

  git::Mirror& mirror_;
  std::shared_ptr<trust::TrustKeys> fallback_;
  trust::FactGatherer gatherer_;
  std::map<std::string, std::shared_ptr<trust::TrustKeys>> by_digest_;
  std::map<std::string, std::string> judged_at_;  // a merged-in commit -> its merge's first parent
};

}  // namespace

int run_verify(const VerifyOptions& options) {
  if (options.range.empty()) return usage_error("a revision range is required");
  auto mirror = git::Mirror::open_existing(options.repo.empty() ? "." : options.repo);
  if (!mirror) return usage_error(mirror.message());

  std::shared_ptr<trust::TrustKeys> fallback;
  if (!options.policy.empty()) {
    auto source = trust::policy_source_from_file(options.policy);
    if (!source) return usage_error(source.message());
    auto loaded = trust::TrustKeys::load(*source);
    if (!loaded.keys) {
      for (const auto& p : loaded.problems) std::fprintf(stderr, "%s\n", p.c_str());
      return usage_error("the policy file " + options.policy + " does not parse");
    }
    fallback = loaded.keys;
  }

  std::string exclude, tip = options.range;
  if (auto dots = options.range.find(".."); dots != std::string::npos) {
    if (options.range.find("...") != std::string::npos)
      return usage_error("symmetric ranges (A...B) are not supported: " + options.range);
    exclude = options.range.substr(0, dots);
    tip = options.range.substr(dots + 2);
    if (exclude.empty() || tip.empty()) return usage_error("bad revision range " + options.range);
  }
  if (!exclude.empty()) {
    auto e = trust::resolve_commit(**mirror, exclude);
    if (!e) return usage_error(e.message());
    exclude = *e;
  }
  auto t = trust::resolve_commit(**mirror, tip);
  if (!t) return usage_error(t.message());
  auto commits = trust::rev_list(**mirror, exclude, *t);
  if (!commits) return usage_error(commits.message());
  // Nothing to judge is not a clean audit: A..B with A at or after B is a mistake.
  if (commits->empty()) return usage_error("the range " + options.range + " is empty");

  Auditor auditor(**mirror, fallback);
  if (Status s = auditor.attribute(*t, *commits); !s.ok()) return usage_error(s.message());
  auditor.prefetch(*commits, std::min(4u, std::max(1u, std::thread::hardware_concurrency())));
  std::vector<Line> lines;
  for (const auto& sha : *commits) {
    auto line = auditor.judge(sha);
    if (!line) return usage_error(line.message());
    lines.push_back(std::move(*line));
  }

  bool all_pass = true;
  for (const auto& l : lines) all_pass = all_pass && l.pass;
  if (options.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& l : lines) {
      out.push_back({{"sha", l.sha},
                     {"verdict", l.pass ? "pass" : "fail"},
                     {"signer", l.signer ? nlohmann::json(*l.signer) : nlohmann::json(nullptr)},
                     {"reasons", l.reasons}});
    }
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    for (const auto& l : lines) {
      std::string text = trust::short_sha(l.sha) + " " + (l.pass ? "pass" : "FAIL") + " " +
                         (l.signer ? *l.signer : "-");
      if (!l.reasons.empty()) text += " " + join(l.reasons, "; ");
      // One line per commit, whatever a reason echoes from the repository.
      std::printf("%s\n", escape_control(text).c_str());
    }
  }
  std::fflush(stdout);
  return all_pass ? 0 : 1;
}

}  // namespace dmz

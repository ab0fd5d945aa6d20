#include "config/policy_file.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <map>
#include <tuple>

#include "config/toml_words.hpp"
#include "queue/glob.hpp"

namespace dmz::config {
namespace {

using queue::Account;
using queue::Policy;
using queue::Rule;

bool is_fingerprint(std::string_view s) {
  return (s.size() == 40 || s.size() == 64) && std::all_of(s.begin(), s.end(), [](char c) {
           return std::isxdigit(static_cast<unsigned char>(c));
         });
}

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// One pass over the parsed document; every check adds a problem and carries on.
class PolicyReader {
 public:
  PolicyReader(const std::string& file, const SshLineCheck& check_ssh)
      : file_(file), check_ssh_(check_ssh) {}

  std::vector<Problem> take_problems() {
    std::stable_sort(problems_.begin(), problems_.end(),
                     [](const Problem& a, const Problem& b) { return a.line < b.line; });
    return std::move(problems_);
  }

  void add(int line, std::string message) {
    problems_.push_back({file_, line, std::move(message)});
  }

  Policy read(const toml::table& doc) {
    Policy policy;
    check_keys(doc,
               {"version", "accounts", "groups", "branches", "rule", "merges", "push", "release"},
               "the policy");
    read_version(doc);
    if (auto* accounts = table_at(doc, "accounts", "accounts")) read_accounts(*accounts, policy);
    if (auto* groups = table_at(doc, "groups", "groups")) read_groups(*groups, policy);
    if (auto* branches = table_at(doc, "branches", "branches")) {
      check_keys(*branches, {"allowed", "refused"}, "[branches]");
      policy.allowed_branches = patterns_at(*branches, "allowed", "branches.allowed", kBranches);
      policy.refused_branches = patterns_at(*branches, "refused", "branches.refused", kBranches);
    }
    read_rules(doc, policy);
    if (auto* merges = table_at(doc, "merges", "merges")) {
      check_keys(*merges, {"signers", "conflict_resolvers"}, "[merges]");
      policy.merge_signers = group_at(*merges, "signers", "merges.signers", policy);
      policy.conflict_resolvers =
          group_at(*merges, "conflict_resolvers", "merges.conflict_resolvers", policy);
    }
    read_push_rules(doc, policy);
    if (auto* release = table_at(doc, "release", "release")) read_release(*release, policy);
    return policy;
  }

 private:
  void read_release(const toml::table& t, Policy& policy) {
    check_keys(t,
               {"candidate_tags", "candidate_signers", "candidate_signatures", "release_tags",
                "release_signers", "release_signatures"},
               "[release]");
    queue::ReleasePolicy r;
    if (t.get("candidate_tags"))
      r.candidate_tags = patterns_at(t, "candidate_tags", "release.candidate_tags", kTags);
    if (t.get("release_tags"))
      r.release_tags = patterns_at(t, "release_tags", "release.release_tags", kTags);
    r.candidate_signers = group_at(t, "candidate_signers", "release.candidate_signers", policy);
    r.release_signers = group_at(t, "release_signers", "release.release_signers", policy);
    if (!t.get("candidate_signers")) add(line_of(t), "[release] has no candidate_signers group");
    if (!t.get("release_signers")) add(line_of(t), "[release] has no release_signers group");
    for (auto [key, group, out] :
         {std::tuple{"candidate_signatures", &r.candidate_signers, &r.candidate_signatures},
          std::tuple{"release_signatures", &r.release_signers, &r.release_signatures}}) {
      const toml::node* n = t.get(key);
      if (!n) continue;
      const std::string name = std::string("release.") + key;
      if (!n->is_integer()) {
        wrong_type(*n, name, "an integer");
        continue;
      }
      const std::int64_t v = n->as_integer()->get();
      const auto g = policy.groups.find(*group);
      if (v < 1)
        add(line_of(*n), name + " must be at least 1, is " + std::to_string(v));
      else if (g != policy.groups.end() && v > static_cast<std::int64_t>(g->second.size()))
        add(line_of(*n), name + " = " + std::to_string(v) + " can never be met: group " + *group +
                             " has " + std::to_string(g->second.size()) + " members");
      else if (v <= 1000)
        *out = static_cast<int>(v);
      else
        add(line_of(*n), name + " is too large");
    }
    policy.release = std::move(r);
  }

  void read_push_rules(const toml::table& doc, Policy& policy) {
    const toml::node* node = doc.get("push");
    if (!node) return;
    const toml::array* array = node->as_array();
    if (!array || !array->is_array_of_tables()) {
      wrong_type(*node, "push", "an array of tables ([[push]])");
      return;
    }
    for (const toml::node& element : *array) {
      const toml::table& t = *element.as_table();
      check_keys(t, {"refs", "signers"}, "[[push]]");
      queue::PushRule rule;
      rule.refs = strings_at(t, "refs", "push.refs");
      for (const std::string& r : rule.refs)
        if (!r.starts_with("refs/"))
          add(line_of(*t.get("refs")),
              "push.refs: \"" + r + "\" is not a full ref name (refs/heads/...)");
      if (rule.refs.empty()) add(line_of(t), "[[push]] has no refs");
      rule.signers = group_at(t, "signers", "push.signers", policy);
      if (rule.signers.empty()) add(line_of(t), "[[push]] has no signers group");
      policy.push_rules.push_back(std::move(rule));
    }
  }

  void check_keys(const toml::table& table, std::initializer_list<std::string_view> known,
                  std::string_view where) {
    for (auto&& [key, value] : table)
      if (std::find(known.begin(), known.end(), key.str()) == known.end())
        add(static_cast<int>(key.source().begin.line),
            "unknown key '" + std::string(key.str()) + "' in " + std::string(where));
  }

  void wrong_type(const toml::node& node, std::string_view name, std::string_view expected) {
    add(line_of(node), std::string(name) + " must be " + std::string(expected) + ", not " +
                           std::string(type_name(node)));
  }

  const toml::table* table_at(const toml::table& parent, std::string_view key,
                              std::string_view name) {
    const toml::node* node = parent.get(key);
    if (!node) return nullptr;
    if (!node->is_table()) wrong_type(*node, name, "a table");
    return node->as_table();
  }

  std::optional<std::string> string_at(const toml::table& t, std::string_view key,
                                       std::string_view name) {
    const toml::node* node = t.get(key);
    if (!node) return std::nullopt;
    if (!node->is_string()) {
      wrong_type(*node, name, "a string");
      return std::nullopt;
    }
    return node->as_string()->get();
  }

  std::optional<bool> bool_at(const toml::table& t, std::string_view key, std::string_view name) {
    const toml::node* node = t.get(key);
    if (!node) return std::nullopt;
    if (!node->is_boolean()) {
      wrong_type(*node, name, "true or false");
      return std::nullopt;
    }
    return node->as_boolean()->get();
  }

  // Each element with its line, so that checks on values can point at them.
  std::vector<std::pair<std::string, int>> strings_with_lines(const toml::table& t,
                                                              std::string_view key,
                                                              std::string_view name) {
    std::vector<std::pair<std::string, int>> out;
    const toml::node* node = t.get(key);
    if (!node) return out;
    const toml::array* array = node->as_array();
    if (!array) {
      wrong_type(*node, name, "an array of strings");
      return out;
    }
    for (const toml::node& element : *array) {
      if (const auto* s = element.as_string())
        out.emplace_back(s->get(), line_of(element));
      else
        wrong_type(element, std::string(name) + "[]", "a string");
    }
    return out;
  }

  std::vector<std::string> strings_at(const toml::table& t, std::string_view key,
                                      std::string_view name) {
    std::vector<std::string> out;
    for (auto& [value, line] : strings_with_lines(t, key, name)) out.push_back(std::move(value));
    return out;
  }

  // What a pattern is matched against: paths of the repository, or the short names of
  // branches or tags ("master", "v1.2"; [[push]] refs are full ref names and not checked here).
  enum Names { kPaths, kBranches, kTags };

  // A pattern that can never match would make its rule silently never apply: reported at its
  // line.
  void check_pattern(const std::string& pattern, int line, std::string_view name, Names names) {
    std::string why = queue::unmatchable(pattern);
    if (why.empty() && names != kPaths && pattern.starts_with("refs/")) {
      const std::string prefix = names == kBranches ? "refs/heads/" : "refs/tags/";
      why = std::string(names == kBranches ? "branches" : "tags") +
            " are matched by their short name";
      if (pattern.starts_with(prefix)) why += " (\"" + pattern.substr(prefix.size()) + "\")";
    }
    if (!why.empty())
      add(line, std::string(name) + ": \"" + pattern + "\" can never match: " + why);
  }

  std::vector<std::string> patterns_at(const toml::table& t, std::string_view key,
                                       std::string_view name, Names names) {
    std::vector<std::string> out;
    for (auto& [value, line] : strings_with_lines(t, key, name)) {
      check_pattern(value, line, name, names);
      out.push_back(std::move(value));
    }
    return out;
  }

  // A group name, reported if unknown; groups are read before anything that names them.
  std::string group_at(const toml::table& t, std::string_view key, std::string_view name,
                       const Policy& policy) {
    auto group = string_at(t, key, name);
    if (!group) return {};
    if (!policy.groups.count(*group))
      add(line_of(*t.get(key)), std::string(name) + " names unknown group '" + *group + "'");
    return *group;
  }

  void read_version(const toml::table& doc) {
    const toml::node* node = doc.get("version");
    if (!node) {
      add(1, "missing 'version = 1'");
    } else if (!node->is_integer()) {
      wrong_type(*node, "version", "an integer");
    } else if (node->as_integer()->get() != 1) {
      add(line_of(*node), "unsupported policy version " +
                              std::to_string(node->as_integer()->get()) +
                              " (this dmzbot reads version 1)");
    }
  }

  void read_accounts(const toml::table& accounts, Policy& policy) {
    struct Claim {
      std::string value, account;
      int line;
    };
    std::vector<Claim> fingerprints, logins;
    for (auto&& [key, node] : accounts) {
      const std::string name(key.str());
      const std::string where = "accounts." + name;
      const toml::table* table = node.as_table();
      if (!table) {
        wrong_type(node, where, "a table");
        continue;
      }
      check_keys(*table, {"openpgp", "ssh", "logins"}, "[" + where + "]");
      Account account;
      account.name = name;
      for (auto& [fpr, line] : strings_with_lines(*table, "openpgp", where + ".openpgp")) {
        if (!is_fingerprint(fpr)) {
          add(line, "malformed OpenPGP fingerprint '" + fpr +
                        "' (expected 40 or 64 hex digits, no spaces)");
          continue;
        }
        account.openpgp.push_back(upper(fpr));
        fingerprints.push_back({upper(fpr), name, line});
      }
      for (auto& [ssh, line] : strings_with_lines(*table, "ssh", where + ".ssh")) {
        if (ssh.find_first_not_of(" \t") == std::string::npos) {
          add(line, "empty ssh key line");
          continue;
        }
        if (check_ssh_) {
          if (std::string why = check_ssh_(ssh); !why.empty()) {
            add(line, where + ".ssh: " + why);
            continue;
          }
        }
        account.ssh.push_back(ssh);
      }
      for (auto& [login, line] : strings_with_lines(*table, "logins", where + ".logins")) {
        if (login.empty()) {
          add(line, "empty login");
          continue;
        }
        logins.push_back({lower(login), name, line});
        account.logins.push_back(login);
      }
      policy.accounts.emplace(name, std::move(account));
    }
    // A key or a login that maps to two accounts would make the mapping ambiguous.
    auto report_duplicates = [&](std::vector<Claim>& claims, std::string_view what) {
      std::stable_sort(claims.begin(), claims.end(),
                       [](const Claim& a, const Claim& b) { return a.line < b.line; });
      std::map<std::string, std::string> owner;
      for (const auto& c : claims) {
        auto [it, fresh] = owner.emplace(c.value, c.account);
        if (!fresh)
          add(c.line, std::string(what) + " '" + c.value + "' of " + c.account + " is already " +
                          it->second + "'s");
      }
    };
    report_duplicates(fingerprints, "fingerprint");
    report_duplicates(logins, "login");
  }

  void read_groups(const toml::table& groups, Policy& policy) {
    for (auto&& [key, node] : groups) {
      const std::string name(key.str());
      std::vector<std::string> members;
      for (auto& [member, line] : strings_with_lines(groups, name, "groups." + name)) {
        if (!policy.accounts.count(member))
          add(line, "group " + name + " names unknown account '" + member + "'");
        // Approvals count distinct accounts: a repeated member would make a rule's approvals
        // look reachable when they are not.
        if (std::find(members.begin(), members.end(), member) != members.end())
          add(line, "group " + name + " names account '" + member + "' twice");
        members.push_back(member);
      }
      policy.groups.emplace(name, std::move(members));  // even if malformed: it exists
    }
  }

  void read_rules(const toml::table& doc, Policy& policy) {
    const toml::node* node = doc.get("rule");
    if (!node) {
      add(1, "no [[rule]]: every pull request would be refused");
      return;
    }
    const toml::array* array = node->as_array();
    if (array && array->empty()) {
      add(line_of(*node), "no [[rule]]: every pull request would be refused");
      return;
    }
    if (!array || !array->is_array_of_tables()) {
      wrong_type(*node, "rule", "an array of tables ([[rule]])");
      return;
    }
    for (const toml::node& element : *array)
      policy.rules.push_back(read_rule(*element.as_table(), policy));
  }

  Rule read_rule(const toml::table& t, const Policy& policy) {
    check_keys(
        t,
        {"branch", "paths", "signers", "author_signs", "approvals", "approvers", "forge_reviews"},
        "[[rule]]");
    Rule rule;
    if (auto branch = string_at(t, "branch", "rule.branch")) {
      rule.branch = *branch;
      check_pattern(rule.branch, line_of(*t.get("branch")), "rule.branch", kBranches);
    } else if (!t.get("branch")) {
      add(line_of(t), "rule has no branch (e.g. branch = \"master\")");
    }
    if (const toml::node* paths = t.get("paths")) {
      rule.paths = patterns_at(t, "paths", "rule.paths", kPaths);
      if (paths->is_array() && paths->as_array()->empty())
        add(line_of(*paths), "rule.paths is empty: the rule would never apply");
    }
    rule.signers = group_at(t, "signers", "rule.signers", policy);
    rule.author_signs = bool_at(t, "author_signs", "rule.author_signs").value_or(false);
    rule.forge_reviews = bool_at(t, "forge_reviews", "rule.forge_reviews").value_or(false);
    rule.approvers = group_at(t, "approvers", "rule.approvers", policy);
    if (const toml::node* approvals = t.get("approvals")) {
      if (!approvals->is_integer()) {
        wrong_type(*approvals, "rule.approvals", "an integer");
      } else {
        const std::int64_t n = approvals->as_integer()->get();
        const auto group = policy.groups.find(rule.approvers);
        const bool known = group != policy.groups.end();
        if (n < 0)
          add(line_of(*approvals), "rule.approvals must not be negative, is " + std::to_string(n));
        else if (known && n > static_cast<std::int64_t>(group->second.size()))
          add(line_of(*approvals), "rule.approvals = " + std::to_string(n) +
                                       " can never be met: group " + rule.approvers + " has " +
                                       std::to_string(group->second.size()) + " members");
        else if (n > std::numeric_limits<int>::max())  // approvers unknown (reported)
          add(line_of(*approvals), "rule.approvals = " + std::to_string(n) + " is too large");
        else
          rule.approvals = static_cast<int>(n);
        if (n > 0 && !t.get("approvers"))
          add(line_of(*approvals),
              "rule.approvals = " + std::to_string(n) + " needs approvers = \"<group>\"");
      }
    }
    return rule;
  }

  std::string file_;
  const SshLineCheck& check_ssh_;
  std::vector<Problem> problems_;
};

}  // namespace

PolicyLoad parse_policy(std::string_view toml_text, const std::string& file_name,
                        const SshLineCheck& check_ssh) {
  PolicyReader reader(file_name, check_ssh);
  PolicyLoad load;
#if TOML_EXCEPTIONS
  toml::table doc;
  try {
    doc = toml::parse(toml_text, std::string_view(file_name));
  } catch (const toml::parse_error& e) {
    reader.add(static_cast<int>(e.source().begin.line), std::string(e.description()));
    load.problems = reader.take_problems();
    return load;
  }
#else
  toml::parse_result parsed = toml::parse(toml_text, std::string_view(file_name));
  if (!parsed) {
    reader.add(static_cast<int>(parsed.error().source().begin.line),
               std::string(parsed.error().description()));
    load.problems = reader.take_problems();
    return load;
  }
  toml::table doc = std::move(parsed).table();
#endif
  queue::Policy policy = reader.read(doc);
  load.problems = reader.take_problems();
  if (load.problems.empty()) load.policy = std::move(policy);
  return load;
}

}  // namespace dmz::config

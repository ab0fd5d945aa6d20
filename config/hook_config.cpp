// Loading the git server hooks' configuration (see hook_config.hpp).
#include "config/hook_config.hpp"

#include <toml++/toml.h>

#include <algorithm>

#include "base/file.hpp"
#include "config/config.hpp"
#include "queue/glob.hpp"

namespace dmz::config {
namespace {

int line_of(const toml::node& n) { return static_cast<int>(n.source().begin.line); }

}  // namespace

HookConfigLoad parse_hook_config(std::string_view toml_text, const std::string& file_name) {
  HookConfigLoad out;
  auto add = [&](int line, std::string message) {
    out.problems.push_back({file_name, line, std::move(message)});
  };
  toml::table root;
  try {
    root = toml::parse(toml_text, file_name);
  } catch (const toml::parse_error& e) {
    add(static_cast<int>(e.source().begin.line), std::string(e.description()));
    return out;
  }
  HookConfig cfg;
  cfg.file = file_name;
  for (auto&& [key, value] : root)
    if (key.str() != "hooks")
      add(static_cast<int>(key.source().begin.line),
          "unknown key '" + std::string(key.str()) + "' (the hooks' settings go in [hooks])");
  const toml::table* t = root["hooks"].as_table();
  if (root.contains("hooks") && !t) add(line_of(*root.get("hooks")), "hooks must be a table");
  int protected_line = 0, policy_branch_line = 0;  // where they were set (0: defaults)
  if (t) {
    for (auto&& [key, value] : *t) {
      const std::string k(key.str());
      const int line = static_cast<int>(key.source().begin.line);
      if (k == "protected") {
        protected_line = line;
        const toml::array* a = value.as_array();
        cfg.protected_refs.clear();
        if (!a) add(line, "hooks.protected must be an array of strings");
        if (a)
          for (const toml::node& e : *a) {
            const auto* s = e.as_string();
            if (!s || !s->get().starts_with("refs/"))
              add(line_of(e),
                  "hooks.protected: each entry must be a full ref name glob "
                  "(refs/heads/..., refs/tags/...)");
            else
              cfg.protected_refs.push_back(s->get());
          }
      } else if (k == "require_signed") {
        if (auto b = value.value<bool>())
          cfg.require_signed = *b;
        else
          add(line, "hooks.require_signed must be true or false");
      } else if (k == "nonce_slop") {
        auto n = value.value<std::int64_t>();
        if (!value.is_integer() || !n || *n < 0 || *n > 86400)
          add(line, "hooks.nonce_slop must be an integer number of seconds, 0..86400");
        else
          cfg.nonce_slop = *n;
      } else if (k == "policy_branch" || k == "policy_root" || k == "log_ref") {
        auto s = value.value<std::string>();
        if (!value.is_string() || !s || s->empty()) {
          add(line, "hooks." + k + " must be a non-empty string");
        } else if (k == "policy_branch") {
          policy_branch_line = line;
          if (valid_branch_name(*s))
            cfg.policy_branch = *s;
          else
            add(line, "hooks.policy_branch '" + *s + "' is not a valid branch name");
        } else if (k == "policy_root") {
          std::filesystem::path p(*s);
          if (p.is_relative()) p = std::filesystem::absolute(file_name).parent_path() / p;
          cfg.policy_root = p.lexically_normal();
        } else if (!s->starts_with("refs/") || !valid_branch_name(s->substr(5))) {
          add(line, "hooks.log_ref must be a full ref name (refs/...), not '" + *s + "'");
        } else if (s->starts_with("refs/heads/") || s->starts_with("refs/tags/")) {
          // Pushes to it are refused (only post-receive writes it): a branch or tag would be
          // closed to everyone, and the log's commits written onto it.
          add(line, "hooks.log_ref '" + *s + "' must be outside refs/heads/ and refs/tags/");
        } else {
          cfg.log_ref = *s;
        }
      } else {
        add(line, "unknown key '" + k + "' in [hooks]");
      }
    }
  }
  // The policy at the tip of policy_branch judges every push: an unsigned push there could
  // add a [[push]] rule for its own key, and the next push would authorize itself.
  const std::string policy_ref = "refs/heads/" + cfg.policy_branch;
  if (std::none_of(cfg.protected_refs.begin(), cfg.protected_refs.end(),
                   [&](const std::string& g) { return queue::glob_match(g, policy_ref); }))
    add(protected_line ? protected_line : std::max(policy_branch_line, 1),
        "hooks.protected must cover " + policy_ref +
            " (the policy_branch): otherwise an unsigned push could change the policy that "
            "judges pushes");
  std::stable_sort(out.problems.begin(), out.problems.end(),
                   [](const Problem& a, const Problem& b) { return a.line < b.line; });
  if (out.problems.empty()) out.config = std::move(cfg);
  return out;
}

HookConfigLoad load_hook_config(const std::filesystem::path& file) {
  auto text = read_regular_file(file, 1 << 20);
  if (!text) {
    HookConfigLoad out;
    out.problems.push_back({file.string(), 0, text.status().message()});
    return out;
  }
  return parse_hook_config(*text, file.string());
}

}  // namespace dmz::config

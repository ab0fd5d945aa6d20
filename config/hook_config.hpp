// The configuration of dmzbot's git server hooks (`dmzbot install-hooks --config FILE`,
// `dmzbot pre-receive`, `post-receive`, `verify --pushes`): which refs are protected, how old a
// nonce may be, where the policy comes from. Threading: pure after load; any thread.
//
//   [hooks]
//   protected = ["refs/heads/master", "refs/heads/dmz", "refs/heads/staging",
//                "refs/heads/production", "refs/tags/v*"]   # globs over full ref names (default)
//   require_signed = false      # true: every other ref too needs a signed push
//   nonce_slop = 0              # seconds a nonce may be old (stateless http pushes); 0..86400
//   policy_branch = "master"    # the .dmz/policy.toml at this branch's tip judges pushes ...
//   policy_root = "policy.toml" # ... or this trust root file, when the branch has none
//   log_ref = "refs/dmz/push-log"
//
// `protected` must cover refs/heads/<policy_branch>: the policy there judges every push, so an
// unsigned push to it could authorize the next one.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace dmz::config {

struct HookConfig {
  std::filesystem::path file;
  std::vector<std::string> protected_refs = {"refs/heads/master", "refs/heads/dmz",
                                             "refs/heads/staging", "refs/heads/production",
                                             "refs/tags/v*"};
  bool require_signed = false;
  std::int64_t nonce_slop = 0;
  std::string policy_branch = "master";
  std::filesystem::path policy_root;  // absolute (relative paths are taken from the file's dir)
  std::string log_ref = "refs/dmz/push-log";
};

struct HookConfigLoad {
  std::optional<HookConfig> config;
  std::vector<Problem> problems;
};
HookConfigLoad parse_hook_config(std::string_view toml_text, const std::string& file_name);
HookConfigLoad load_hook_config(const std::filesystem::path& file);

}  // namespace dmz::config

// Where the signature policy lives in a repository, and whether a change touches it: what the
// engine needs of the policy without its model (queue/policy.hpp).
// Threading: pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dmz::queue {

// The directory the policy in force is read from (the policy file, the keys beside it).
inline constexpr std::string_view kPolicyDir = ".dmz";
inline constexpr std::string_view kPolicyPath = ".dmz/policy.toml";
static_assert(kPolicyPath.starts_with(kPolicyDir) && kPolicyPath[kPolicyDir.size()] == '/');

// Whether a change touches the policy file (.dmz/policy.toml).
bool touches_policy(const std::vector<std::string>& changed_paths);
// Whether a change touches anything the policy in force is read from (.dmz/: the policy file
// and the keys beside it; or .dmz itself, as a file, symlink or submodule).
bool touches_policy_sources(const std::vector<std::string>& changed_paths);

}  // namespace dmz::queue

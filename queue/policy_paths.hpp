// Where the signature policy lives in a repository, and whether a change touches it: what the
// engine needs of the policy without its model (queue/policy.hpp).
// Threading: pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dmz::queue {

inline constexpr std::string_view kPolicyPath = ".dmz/policy.toml";

// Whether a change touches the policy file (.dmz/policy.toml).
bool touches_policy(const std::vector<std::string>& changed_paths);
// Whether a change touches anything the policy in force is read from (.dmz/: the policy file
// and the keys beside it).
bool touches_policy_sources(const std::vector<std::string>& changed_paths);

}  // namespace dmz::queue

// Reads a repository's signature policy (.dmz/policy.toml, see docs/POLICY.md) into the pure
// queue::Policy model, collecting every problem with its line. Threading: pure; any thread.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "queue/policy.hpp"

namespace dmz::config {

// `policy` is set iff `problems` is empty. Problems are sorted by line; whole-file problems
// (a missing version, no rules) are reported on line 1.
struct PolicyLoad {
  std::optional<queue::Policy> policy;
  std::vector<Problem> problems;
};

// Checks one `ssh` line of an account: returns why it is refused ("bad-key-line: ..."), or ""
// if it is good. The shell supplies it (bot/trust parses SSH keys), so that a bad line is a
// problem at its own line like any other.
using SshLineCheck = std::function<std::string(std::string_view line)>;

// Parses and validates policy text; `file_name` only labels the problems. The shell reads
// the text from the repository (the parent commit's blob), so this does no I/O. Without
// `check_ssh`, ssh lines are only checked for being non-empty.
PolicyLoad parse_policy(std::string_view toml_text, const std::string& file_name,
                        const SshLineCheck& check_ssh = {});

}  // namespace dmz::config

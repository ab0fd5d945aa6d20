// Small helpers shared by the TOML readers (service config and policy file) for their
// "file:line: message" problems. Threading: pure functions.
#pragma once

#include <toml++/toml.h>

#include <string_view>

namespace dmz::config {

// "a string", "an integer", ...: how a problem names the type of value it found.
std::string_view type_name(const toml::node& node);

// The 1-based line where `node` starts.
inline int line_of(const toml::node& node) { return static_cast<int>(node.source().begin.line); }

}  // namespace dmz::config

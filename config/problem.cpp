#include "base/text.hpp"
#include "config/config.hpp"

namespace dmz::config {

// Values echoed in messages come from files: their control characters are escaped so that each
// problem prints as exactly one line.
std::string Problem::to_string() const {
  return escape_control(file) + ":" + std::to_string(line) + ": " + escape_control(message);
}

const Repo* Config::find_repo(std::string_view name) const {
  for (const auto& r : repos)
    if (r.name == name) return &r;
  return nullptr;
}

}  // namespace dmz::config

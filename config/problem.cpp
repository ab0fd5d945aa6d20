#include "config/config.hpp"

namespace dmz::config {

std::string Problem::to_string() const {
  return file + ":" + std::to_string(line) + ": " + message;
}

const Repo* Config::find_repo(std::string_view name) const {
  for (const auto& r : repos)
    if (r.name == name) return &r;
  return nullptr;
}

}  // namespace dmz::config

// TEMPORARY stub so that the API tests link; the engine helper's queue/json.cpp replaces it.
// Only repo, master and prs[].number/status/head are meaningful here.
#include "queue/json.hpp"

#include <nlohmann/json.hpp>

namespace dmz::queue {

nlohmann::json to_json(const RepoState& state) {
  nlohmann::json prs = nlohmann::json::array();
  for (const auto& [number, pr] : state.prs)
    prs.push_back({{"number", number}, {"status", std::string(to_string(pr.status))},
                   {"head", pr.head}});
  return {{"repo", state.repo}, {"master", state.master}, {"prs", prs},
          {"train", nlohmann::json::array()}};
}

nlohmann::json to_json(const Event& event) { return {{"type", event_kind(event)}}; }
nlohmann::json to_json(const Action&) { return {{"type", "action"}}; }
std::string event_kind(const Event& event) { return "event" + std::to_string(event.index()); }

}  // namespace dmz::queue

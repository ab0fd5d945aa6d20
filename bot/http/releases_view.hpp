// The repository page's "Releases" section (release promotion, issue 9): what `staging` and
// `production` hold (commit, tag, signers, since when) and the last promotions and refusals
// with every reason. Kept apart from pages.cpp so that the two evolve without clashing; it reads
// the document the promoter serves as the queue JSON's `releases`.
// Threading: pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.hpp"
#include "bot/store/store.hpp"
#include "queue/model.hpp"

namespace dmz::page {

struct HeldRelease {
  std::string branch, commit;
  std::string tag;  // "" when dmzbot did not put the branch where it is (or does not know)
  std::vector<std::string> signers;
  queue::Millis at = 0;
};

struct ReleasesView {
  std::optional<HeldRelease> staging, production;  // nullopt: the branch does not exist
  std::vector<PromotionRecord> recent;             // newest first
  // Nothing to show: no release branch and no tag ever judged (a repository without releases).
  bool empty() const { return !staging && !production && recent.empty(); }
};

// Reads Promoter::json() ({"staging": {...} | null, "production": ..., "recent": [...]});
// invalid if it is not such a document (nothing is guessed).
Result<ReleasesView> parse_releases(std::string_view json);

// The <section> for the repository page; every name and reason escaped.
std::string render_releases(const ReleasesView& view, queue::Millis now);

}  // namespace dmz::page

// Release promotion in the service: judges a tag (bot/trust/release_check) and, if it passes,
// moves staging or production on the remote by a fast-forward with the expected old value
// (a signed push when the server asks); promotes new matching tags found by a fetch; keeps what
// each branch holds and the last promotions and refusals for the queue JSON.
// Threading: promote() and after_fetch() on the repository's git thread; json() from any thread.
#pragma once

#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/clock.hpp"
#include "base/status.hpp"
#include "config/config.hpp"

namespace dmz {
namespace git {
class Mirror;
}

struct PromotionRecord {
  std::string tag;
  std::string kind;    // "candidate", "release" or "none"
  std::string target;  // the branch it moves ("" for a tag of no kind)
  std::string commit;
  std::string from;  // the branch's tip before ("" = it did not exist)
  std::vector<std::string> signers;
  std::vector<std::string> reasons;  // empty iff promoted
  bool promoted = false;
  std::string source;   // "api" or "fetch"
  std::int64_t at = 0;  // unix milliseconds
};

class Promoter {
 public:
  Promoter(config::Repo repo, const Clock& clock) : repo_(std::move(repo)), clock_(clock) {}

  // Fetches, judges refs/tags/<tag> and moves its branch if it passes. An error is a failure to
  // reach the remote or read the repository; a refusal is a record with reasons.
  Result<PromotionRecord> promote(git::Mirror& mirror, const std::string& tag,
                                  const std::string& source);
  // After a fetch: tags matching the policy's patterns that were not there at the previous
  // look are promoted (the first look only takes note of the tags already there).
  void after_fetch(git::Mirror& mirror);

  // {"staging": {"branch", "commit", "tag", "signers", "at"} | null, "production": ...,
  //  "recent": [records, newest first]}
  std::string json() const;
  static std::string record_json(const PromotionRecord& r);

 private:
  Result<PromotionRecord> judge_and_move(git::Mirror& mirror, const std::string& tag,
                                         const std::string& source);
  void remember(const PromotionRecord& r);
  void note_tips(git::Mirror& mirror);

  config::Repo repo_;
  const Clock& clock_;
  std::set<std::string> seen_tags_;  // git thread only
  bool looked_ = false;              // git thread only
  mutable std::mutex mu_;
  std::map<std::string, std::string> tips_;       // branch -> commit (mu_)
  std::map<std::string, PromotionRecord> holds_;  // branch -> the promotion that put it there
  std::deque<PromotionRecord> recent_;            // newest first, at most kRecent (mu_)
  static constexpr std::size_t kRecent = 20;
};

}  // namespace dmz

// Release promotion in the service: judges a tag (bot/trust/release_check) and, if it passes,
// moves staging or production on the remote by a fast-forward with the expected old value
// (a signed push when the server asks; a hotfix candidate may reset staging); promotes every
// matching tag a fetch shows that was never judged (tags there before the first start too);
// records each promotion and refusal in the store, so what each branch holds and the last
// records survive a restart and a tag is judged once; hands a hotfix that reached production
// to the service, which brings it back into master through the queue.
// Threading: promote() and after_fetch() on the repository's git thread; json() from any thread.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/clock.hpp"
#include "base/status.hpp"
#include "bot/store/store.hpp"
#include "config/config.hpp"

namespace dmz {
namespace git {
class Mirror;
}

class Promoter {
 public:
  // Called on the git thread when a release put a hotfix (a commit off master, on a hotfix
  // branch) on production; the record names the branch.
  using HotfixReleased = std::function<void(const PromotionRecord&)>;

  // `store` (may be null: records then live in memory only) keeps the records.
  Promoter(config::Repo repo, const Clock& clock, Store* store = nullptr,
           HotfixReleased on_hotfix = nullptr)
      : repo_(std::move(repo)), clock_(clock), store_(store), on_hotfix_(std::move(on_hotfix)) {}

  // Fetches, judges refs/tags/<tag> and moves its branch if it passes. An error is a failure to
  // reach the remote or read the repository; a refusal is a record with reasons.
  Result<PromotionRecord> promote(git::Mirror& mirror, const std::string& tag,
                                  const std::string& source);
  // After a fetch: every tag matching the policy's patterns that was never judged (by its name
  // and object id) is judged and promoted if it passes, candidates first. A tag whose commit
  // the target branch already holds behind its tip is left alone (an old release). After the
  // first fetch of a run (and again after resume_hotfixes()), every hotfix the records show in
  // production but the fetch does not show on master is handed to on_hotfix again: the run
  // before may have stopped between the push of production and the hand-over.
  void after_fetch(git::Mirror& mirror);
  // Hand the hotfixes over again after the next fetch (the last hand-over failed). Any thread.
  void resume_hotfixes() { hotfixes_handed_ = false; }

  // {"staging": {"branch", "commit", "tag", "signers", "at"} | null, "production": ...,
  //  "recent": [records, newest first]}
  std::string json() const;
  // The same, as values (for the status page): the record that put each branch where it is
  // (nullopt: unknown, or the branch moved since), its tip, and the recent records.
  struct Holdings {
    std::optional<std::string> staging_tip, production_tip;
    std::optional<PromotionRecord> staging, production;
    std::vector<PromotionRecord> recent;  // newest first
  };
  Holdings holdings() const;
  static std::string record_json(const PromotionRecord& r);

 private:
  Result<PromotionRecord> judge_and_move(git::Mirror& mirror, const std::string& tag,
                                         const std::string& source);
  void remember(PromotionRecord& r);
  // Saves the records the store refused before; each saved one gets its seq everywhere.
  void save_unsaved();
  void note_tips(git::Mirror& mirror);
  // Reads the records of earlier runs from the store, once; false if it could not.
  bool load();
  Result<bool> push_hotfix_candidate(git::Mirror& mirror, PromotionRecord& rec);
  void hand_over_hotfixes(git::Mirror& mirror);

  config::Repo repo_;
  const Clock& clock_;
  Store* store_;
  HotfixReleased on_hotfix_;
  std::set<std::pair<std::string, std::string>> judged_;  // (tag, object id); git thread only
  bool loaded_ = false;                                   // git thread only
  std::vector<PromotionRecord> unsaved_;                  // git thread only
  std::atomic<bool> hotfixes_handed_{false};
  mutable std::mutex mu_;
  std::map<std::string, std::string> tips_;       // branch -> commit (mu_)
  std::map<std::string, PromotionRecord> holds_;  // branch -> the promotion that put it there
  std::deque<PromotionRecord> recent_;            // newest first, at most kRecent (mu_)
  static constexpr std::size_t kRecent = 20;
};

}  // namespace dmz

// The plain git forge: for a remote with no forge API a pull request is a branch matching the
// configured patterns (feature/*, bug/*), or a signed tag, registered through dmzbot's API
// with its number; pushes are noticed by comparing fetched heads with the known PR heads; it
// has no comment API, so its outbox writes each notice to the log.
// Threading: see forges/forge.hpp.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "forges/forge.hpp"

namespace dmz::forges {

// A PR made by a signed tag is known under the branch name "tags/<tag name>".
inline constexpr std::string_view kTagPrefix = "tags/";

// Why `branch` cannot be a PR (refused pattern such as wip/*, or not matching any allowed
// pattern), or nullopt if it can.
std::optional<std::string> branch_refusal(const std::string& branch,
                                          const std::vector<std::string>& allowed,
                                          const std::vector<std::string>& refused);

// What a PR can point at: every branch by name and every annotated tag as "tags/<name>" (a
// branch whose name starts with "tags/" is left out: that name is the tag's).
std::map<std::string, queue::Sha> pr_heads(const RemoteRefs& refs);

// The events a fetch implies: PrPushed for every open PR whose head moved (rewritten when the
// new head dropped published commits), PrClosed for PRs whose branch vanished, and
// MasterObserved when master differs from state.master.
std::vector<queue::Event> events_from_fetch(const queue::RepoState& state, const RemoteRefs& refs,
                                            const std::string& master_branch, queue::Millis now);

class PlainForge final : public Forge {
 public:
  struct Options {
    std::string repo;  // "owner/name", for the log
    std::string master = "master";
    std::vector<std::string> branch_patterns, refused_patterns;
  };
  explicit PlainForge(Options options) : options_(std::move(options)) {}

  std::string_view kind() const override { return "plain"; }
  std::vector<queue::Event> events_from_fetch(const queue::RepoState& state, const RemoteRefs& refs,
                                              queue::Millis now) const override;
  Result<queue::PrOpened> register_pull(const RemoteRefs& refs, const Registration& r,
                                        queue::Millis now) const override;
  Status deliver(const OutboxMessage& message) override;

 private:
  Options options_;
};

}  // namespace dmz::forges

#include "forges/plain.hpp"

#include <vector>

#include "base/log.hpp"
#include "base/text.hpp"
#include "queue/glob.hpp"

namespace dmz::forges {
namespace {

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += ", ";
    out += p;
  }
  return out;
}

bool terminal(queue::PrStatus status) {
  switch (status) {
    case queue::PrStatus::Merged:
    case queue::PrStatus::Cancelled:
      return true;
    case queue::PrStatus::Open:
    case queue::PrStatus::Approved:
    case queue::PrStatus::Queued:
    case queue::PrStatus::Merging:
    case queue::PrStatus::InDmz:
    case queue::PrStatus::Building:
    case queue::PrStatus::Failed:
      return false;
  }
  return false;
}

}  // namespace

// An empty `allowed` list allows every branch that is not refused.
std::optional<std::string> branch_refusal(const std::string& branch,
                                          const std::vector<std::string>& allowed,
                                          const std::vector<std::string>& refused) {
  for (const auto& pattern : refused)
    if (queue::glob_match(pattern, branch))
      return "branch " + branch + " is refused by pattern " + pattern;
  if (allowed.empty()) return std::nullopt;
  for (const auto& pattern : allowed)
    if (queue::glob_match(pattern, branch)) return std::nullopt;
  return "branch " + branch + " matches none of " + join(allowed);
}

std::map<std::string, queue::Sha> pr_heads(const RemoteRefs& refs) {
  std::map<std::string, queue::Sha> heads;
  // "tags/<name>" is a tag's: a branch named so is never a PR (the API refuses it), and must
  // not stand in for the tag of a PR by signed tag.
  for (const auto& [name, commit] : refs.branches)
    if (!name.starts_with(kTagPrefix)) heads.emplace(name, commit);
  for (const auto& [name, commit] : refs.tags)
    heads.emplace(std::string(kTagPrefix) + name, commit);
  return heads;
}

// PR events first (in PR number order), then master, so that a pushed PR has left the train
// before the engine rebuilds it on a moved master.
std::vector<queue::Event> events_from_fetch(const queue::RepoState& state, const RemoteRefs& refs,
                                            const std::string& master_branch, queue::Millis now) {
  const auto heads = pr_heads(refs);
  std::vector<queue::Event> out;
  for (const auto& [number, pr] : state.prs) {
    if (terminal(pr.status)) continue;
    auto it = heads.find(pr.branch);
    if (it == heads.end())
      out.push_back(queue::PrClosed{number, now});
    else if (it->second != pr.head)
      out.push_back(queue::PrPushed{number, it->second, now, refs.rewritten.count(pr.branch) > 0});
  }
  auto master = refs.branches.find(master_branch);
  if (master != refs.branches.end() && master->second != state.master)
    out.push_back(queue::MasterObserved{master->second, now});
  return out;
}

std::vector<queue::Event> PlainForge::events_from_fetch(const queue::RepoState& state,
                                                        const RemoteRefs& refs,
                                                        queue::Millis now) const {
  return forges::events_from_fetch(state, refs, options_.master, now);
}

Result<queue::PrOpened> PlainForge::register_pull(const RemoteRefs& refs, const Registration& r,
                                                  queue::Millis now) const {
  // A signed-tag PR is judged by the policy's branch rules (tags/*), not by branch patterns.
  // Only the API's `tag` field makes a "tags/" name: it refuses a branch named so.
  const bool is_tag = r.branch.starts_with(kTagPrefix);
  if (!is_tag)
    if (auto why = branch_refusal(r.branch, options_.branch_patterns, options_.refused_patterns))
      return invalid(*why);
  const std::string name = is_tag ? r.branch.substr(kTagPrefix.size()) : r.branch;
  const auto& pool = is_tag ? refs.tags : refs.branches;
  auto found = pool.find(name);
  if (found == pool.end())
    return invalid((is_tag ? "annotated tag " : "branch ") + name +
                   " does not exist on the remote");
  return queue::PrOpened{r.number, r.branch, r.author, r.title, found->second, now};
}

// The plain forge has no comment API: the notice is logged (escaped: it may quote names and
// titles that came from outside), and the PR's reason carries it to the queue API and the
// status page.
Status PlainForge::deliver(const OutboxMessage& m) {
  auto level =
      m.notice.kind == queue::NoticeKind::Failure ? spdlog::level::warn : spdlog::level::info;
  log::write(level,
             {.repo = options_.repo,
              .pr = m.notice.number,
              .sha = m.notice.head,
              .reason = queue::to_string(m.notice.reason)},
             escape_control(m.notice.message));
  return {};
}

}  // namespace dmz::forges

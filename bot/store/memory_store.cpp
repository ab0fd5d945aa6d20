// The in-memory store: a map per table. save() applies the change as the SQLite store does
// (the header, the PRs the delta names, the train when it changed) so that a wrong delta
// shows up here as it would on disk, and checks the version first so that nothing is written
// when another writer moved the repository on.
#include "bot/store/memory_store.hpp"

#include <algorithm>
#include <deque>
#include <map>
#include <mutex>
#include <set>

namespace dmz {
namespace {

struct Repo {
  queue::RepoState state;
  std::uint64_t version = 0;
  std::map<int, queue::PullRequest> archive;
  std::deque<HistoryEntry> outcomes;  // by seq
  // The seqs of each PR's outcomes (as SQLite's outcomes_by_pr index): a PR's history costs
  // the same after 100,000 finished PRs as after ten.
  std::map<int, std::vector<std::int64_t>> outcomes_by_pr;
  std::deque<EventLogEntry> events;  // by seq
  // Whether each was appended in time order (as the driver's clock stamps them): then pruning
  // reads only the old entries at the front, so its cost does not grow with the history kept.
  bool outcomes_in_order = true, events_in_order = true;
};

class MemoryStore final : public Store {
 public:
  explicit MemoryStore(MemoryStoreOptions options) : options_(options) {}

  Result<Saved> save(const Change& change) override {
    std::lock_guard lock(mu_);
    if (!change.state) return internal("store: a change without a state");
    const queue::RepoState& st = *change.state;
    auto found = repos_.find(st.repo);
    if (change.expected_version == 0 && found != repos_.end())
      return conflict("store: " + st.repo + " was saved by another writer");
    if (change.expected_version != 0 &&
        (found == repos_.end() || found->second.version != change.expected_version))
      return conflict("store: " + st.repo + " is not at version " +
                      std::to_string(change.expected_version) + ": another process wrote it");
    for (int number : change.delta.changed_prs)
      if (!st.prs.count(number))
        return internal("store: changed PR #" + std::to_string(number) +
                        " is not in the state of " + st.repo);
    Repo& r = repos_[st.repo];
    // The header always; PRs and the train as the delta says (what the SQLite store writes).
    r.state.repo = st.repo;
    r.state.master = st.master;
    r.state.next_candidate = st.next_candidate;
    r.state.retry_after = st.retry_after;
    r.state.window = st.window;
    r.state.policy_epoch = st.policy_epoch;
    r.state.trust_root = st.trust_root;
    r.state.observed = st.observed;
    for (int number : change.delta.removed_prs) r.state.prs.erase(number);
    for (int number : change.delta.changed_prs) {
      r.state.prs[number] = st.prs.at(number);
      r.archive.erase(number);  // a PR that came back from the archive lives in one place
    }
    for (const auto& pr : change.archived) {  // what the SQLite archive keeps of a PR
      queue::PullRequest kept = pr;
      kept.candidate.reset();
      kept.paths.clear();
      kept.precheck = queue::CheckState::Pending;
      kept.held_by.reset();
      kept.group = 0;
      kept.probed = false;
      kept.probed_with.clear();
      kept.untested = 0;
      kept.failures = 0;
      kept.merge_errors = 0;
      kept.judged_epoch = 0;
      kept.judged_tag.clear();
      r.archive[pr.number] = std::move(kept);
    }
    if (change.delta.train_changed) r.state.train = st.train;
    for (auto h : change.outcomes) {
      h.seq = ++seq_;
      if (!r.outcomes.empty() && h.at < r.outcomes.back().at) r.outcomes_in_order = false;
      r.outcomes_by_pr[h.number].push_back(h.seq);
      r.outcomes.push_back(std::move(h));
    }
    if (change.event && options_.keep_events) {
      EventLogEntry e = *change.event;
      e.seq = ++seq_;
      if (!r.events.empty() && e.at < r.events.back().at) r.events_in_order = false;
      r.events.push_back(std::move(e));
      if (options_.max_events > 0 && r.events.size() > options_.max_events) r.events.pop_front();
    }
    Saved saved{++r.version, {}};
    for (const auto& n : change.notices) {
      forges::OutboxMessage m{++outbox_seq_, st.repo, n, 0, change.at, "", change.at};
      saved.outbox_ids.push_back(m.id);
      outbox_.emplace(m.id, std::move(m));
    }
    return saved;
  }

  Result<std::optional<Loaded>> load(const std::string& repo) override {
    std::lock_guard lock(mu_);
    auto it = repos_.find(repo);
    if (it == repos_.end()) return std::optional<Loaded>();
    return std::optional<Loaded>(Loaded{it->second.state, it->second.version});
  }

  Result<bool> has_state() override {
    std::lock_guard lock(mu_);
    return !repos_.empty();
  }

  Result<std::optional<queue::PullRequest>> archived(const std::string& repo, int number) override {
    std::lock_guard lock(mu_);
    auto it = repos_.find(repo);
    if (it == repos_.end()) return std::optional<queue::PullRequest>();
    auto pr = it->second.archive.find(number);
    if (pr == it->second.archive.end()) return std::optional<queue::PullRequest>();
    return std::optional<queue::PullRequest>(pr->second);
  }

  Result<std::vector<HistoryEntry>> history(const std::string& repo, std::int64_t before,
                                            std::size_t limit) override {
    return outcomes_of(repo, std::nullopt, before, limit);
  }

  Result<std::vector<HistoryEntry>> pr_history(const std::string& repo, int number,
                                               std::size_t limit) override {
    return outcomes_of(repo, number, 0, limit);
  }

  Result<std::vector<EventLogEntry>> events(const std::string& repo, std::size_t limit) override {
    return events_of(repo, std::nullopt, limit);
  }

  Result<std::vector<EventLogEntry>> pr_events(const std::string& repo, int number,
                                               std::size_t limit) override {
    return events_of(repo, number, limit);
  }

  Result<std::vector<EventLogEntry>> pr_heads(const std::string& repo, int number,
                                              std::size_t limit) override {
    return newest_events(repo, limit,
                         [&](const EventLogEntry& e) { return e.number == number && is_head(e); });
  }

  Result<std::vector<EventLogEntry>> events_after(const std::string& repo, std::int64_t after,
                                                  std::size_t limit) override {
    std::lock_guard lock(mu_);
    std::vector<EventLogEntry> out;
    auto it = repos_.find(repo);
    if (it == repos_.end()) return out;
    for (const auto& e : it->second.events)  // kept in seq order
      if (e.seq > after && out.size() < limit) out.push_back(e);
    return out;
  }

  Result<std::vector<forges::OutboxMessage>> outbox(const std::string& repo) override {
    std::lock_guard lock(mu_);
    std::vector<forges::OutboxMessage> out;
    for (const auto& [id, m] : outbox_)
      if (m.repo == repo) out.push_back(m);
    return out;
  }

  Status outbox_delivered(std::int64_t id) override {
    std::lock_guard lock(mu_);
    outbox_.erase(id);
    return {};
  }

  Status outbox_retry(std::int64_t id, int attempts, queue::Millis next_at,
                      const std::string& last_error) override {
    std::lock_guard lock(mu_);
    auto it = outbox_.find(id);
    if (it == outbox_.end()) return {};
    it->second.attempts = attempts;
    it->second.next_at = next_at;
    it->second.last_error = last_error;
    return {};
  }

  Result<std::vector<bool>> record_deliveries(const std::vector<DeliveryId>& ids,
                                              const std::vector<std::string>& handled) override {
    std::lock_guard lock(mu_);
    std::vector<bool> fresh;
    fresh.reserve(ids.size());
    for (const auto& d : ids) {
      const bool is_new = deliveries_.emplace(d.id, d.at).second;
      fresh.push_back(is_new);
      if (!is_new || d.forge.empty()) continue;
      DeliveryId kept = d;
      kept.seq = ++delivery_seq_;
      unhandled_.emplace(kept.seq, std::move(kept));
    }
    mark_handled(handled);  // after the inserts, as the SQLite store: a new one may be marked too
    return fresh;
  }

  Status mark_deliveries_handled(const std::vector<std::string>& ids) override {
    std::lock_guard lock(mu_);
    mark_handled(ids);
    return {};
  }
  void mark_handled(const std::vector<std::string>& ids) {  // mu_ held
    for (const auto& id : ids)
      std::erase_if(unhandled_, [&](const auto& u) { return u.second.id == id; });
  }

  Result<std::vector<DeliveryId>> unhandled_deliveries(std::int64_t after,
                                                       std::size_t limit) override {
    std::lock_guard lock(mu_);
    std::vector<DeliveryId> out;
    for (auto it = unhandled_.upper_bound(after); it != unhandled_.end() && out.size() < limit;
         ++it)
      out.push_back(it->second);
    return out;
  }

  Result<std::size_t> prune_deliveries(queue::Millis before, std::size_t limit) override {
    std::lock_guard lock(mu_);
    std::vector<std::pair<queue::Millis, std::string>> old;  // (at, id): the oldest go first
    for (const auto& [id, at] : deliveries_)
      if (at < before) old.emplace_back(at, id);
    std::sort(old.begin(), old.end());
    if (old.size() > limit) old.resize(limit);
    std::set<std::string> ids;
    for (auto& o : old) ids.insert(std::move(o.second));
    std::erase_if(deliveries_, [&](const auto& d) { return ids.count(d.first) > 0; });
    std::erase_if(unhandled_, [&](const auto& u) { return ids.count(u.second.id) > 0; });
    return ids.size();
  }

  static bool is_head(const EventLogEntry& e) {
    return e.kind == "pr_opened" || e.kind == "pr_pushed";
  }
  // The event that gave a PR of the hot state a head (kept by prune_history).
  static bool hot_head(const Repo& r, const EventLogEntry& e) {
    return is_head(e) && e.number && r.state.prs.count(*e.number);
  }
  static bool hot_head(const Repo&, const HistoryEntry&) { return false; }

  Result<std::size_t> prune_history(queue::Millis before, std::size_t limit) override {
    std::lock_guard lock(mu_);
    // Where `entries` may hold entries older than `before`: all of it, or, appended in time
    // order, the front up to the first that is not.
    auto old_end = [&](auto& entries, bool in_order) {
      return in_order ? std::find_if(entries.begin(), entries.end(),
                                     [&](const auto& e) { return e.at >= before; })
                      : entries.end();
    };
    // The oldest `limit` of each kind across repositories, as the SQLite store picks them.
    auto oldest = [&](auto Repo::*entries, bool Repo::*in_order) {
      std::vector<std::pair<queue::Millis, std::int64_t>> old;  // (at, seq)
      for (auto& [name, r] : repos_) {
        auto& all = r.*entries;
        for (auto e = all.begin(), end = old_end(all, r.*in_order); e != end; ++e)
          if (e->at < before && !hot_head(r, *e)) old.emplace_back(e->at, e->seq);
      }
      std::sort(old.begin(), old.end());
      if (old.size() > limit) old.resize(limit);
      std::set<std::int64_t> seqs;
      for (const auto& o : old) seqs.insert(o.second);
      return seqs;
    };
    const auto events = oldest(&Repo::events, &Repo::events_in_order);
    const auto outcomes = oldest(&Repo::outcomes, &Repo::outcomes_in_order);
    if (events.empty() && outcomes.empty()) return 0;
    // Removes the entries `seqs` names from `entries`.
    auto remove = [&](auto& entries, bool in_order, const std::set<std::int64_t>& seqs) {
      const auto end = old_end(entries, in_order);
      entries.erase(std::remove_if(entries.begin(), end,
                                   [&](const auto& e) { return seqs.count(e.seq) > 0; }),
                    end);
    };
    for (auto& [name, r] : repos_) {
      for (auto h = r.outcomes.begin(), end = old_end(r.outcomes, r.outcomes_in_order); h != end;
           ++h) {
        if (!outcomes.count(h->seq)) continue;
        auto& mine = r.outcomes_by_pr[h->number];
        std::erase(mine, h->seq);
        if (mine.empty()) r.outcomes_by_pr.erase(h->number);
      }
      remove(r.events, r.events_in_order, events);
      remove(r.outcomes, r.outcomes_in_order, outcomes);
    }
    return events.size() + outcomes.size();
  }

  Result<bool> acquire_lease(const std::string& repo, const std::string& owner, queue::Millis now,
                             queue::Millis ttl) override {
    std::lock_guard lock(mu_);
    auto it = leases_.find(repo);
    if (it != leases_.end() && it->second.first != owner && it->second.second > now) return false;
    leases_[repo] = {owner, now + ttl};
    return true;
  }

  Status release_lease(const std::string& repo, const std::string& owner) override {
    std::lock_guard lock(mu_);
    auto it = leases_.find(repo);
    if (it != leases_.end() && it->second.first == owner) leases_.erase(it);
    return {};
  }

  Result<std::int64_t> record_promotion(const PromotionRecord& record) override {
    std::lock_guard lock(mu_);
    PromotionRecord& kept = promotions_.emplace_back(record);
    kept.seq = ++promotion_seq_;
    return kept.seq;
  }

  Result<std::vector<PromotionRecord>> promotions(const std::string& repo,
                                                  std::size_t limit) override {
    std::lock_guard lock(mu_);
    std::vector<PromotionRecord> out;
    for (auto r = promotions_.rbegin(); r != promotions_.rend() && out.size() < limit; ++r)
      if (r->repo == repo) out.push_back(*r);
    return out;
  }

  Result<std::optional<PromotionRecord>> last_promotion(const std::string& repo,
                                                        const std::string& target) override {
    std::lock_guard lock(mu_);
    for (auto r = promotions_.rbegin(); r != promotions_.rend(); ++r)
      if (r->repo == repo && r->promoted && r->target == target)
        return std::optional<PromotionRecord>(*r);
    return std::optional<PromotionRecord>();
  }

  Result<std::vector<std::pair<std::string, std::string>>> judged_tags(
      const std::string& repo) override {
    std::lock_guard lock(mu_);
    std::set<std::pair<std::string, std::string>> seen;
    for (const auto& r : promotions_)
      if (r.repo == repo) seen.emplace(r.tag, r.tag_object);
    return std::vector<std::pair<std::string, std::string>>(seen.begin(), seen.end());
  }

 private:
  Result<std::vector<HistoryEntry>> outcomes_of(const std::string& repo, std::optional<int> number,
                                                std::int64_t before, std::size_t limit) {
    std::lock_guard lock(mu_);
    std::vector<HistoryEntry> out;
    auto it = repos_.find(repo);
    if (it == repos_.end()) return out;
    const auto& all = it->second.outcomes;
    if (number) {
      auto seqs = it->second.outcomes_by_pr.find(*number);
      if (seqs == it->second.outcomes_by_pr.end()) return out;
      for (auto i = seqs->second.rbegin(); i != seqs->second.rend() && out.size() < limit; ++i) {
        if (before > 0 && *i >= before) continue;
        auto h =
            std::lower_bound(all.begin(), all.end(), *i,
                             [](const HistoryEntry& e, std::int64_t seq) { return e.seq < seq; });
        if (h != all.end() && h->seq == *i) out.push_back(*h);
      }
      return out;
    }
    for (auto h = all.rbegin(); h != all.rend() && out.size() < limit; ++h) {
      if (before > 0 && h->seq >= before) continue;
      if (number && h->number != *number) continue;
      out.push_back(*h);
    }
    return out;
  }

  Result<std::vector<EventLogEntry>> events_of(const std::string& repo, std::optional<int> number,
                                               std::size_t limit) {
    return newest_events(repo, limit, [&](const EventLogEntry& e) {
      return !number || e.number == number ||
             std::find(e.also.begin(), e.also.end(), *number) != e.also.end();
    });
  }

  // The newest `limit` events of `repo` that `keep` takes, oldest first.
  template <class Keep>
  Result<std::vector<EventLogEntry>> newest_events(const std::string& repo, std::size_t limit,
                                                   Keep keep) {
    std::lock_guard lock(mu_);
    std::vector<EventLogEntry> out;
    auto it = repos_.find(repo);
    if (it == repos_.end()) return out;
    const auto& all = it->second.events;
    for (auto e = all.rbegin(); e != all.rend() && out.size() < limit; ++e)
      if (keep(*e)) out.push_back(*e);
    std::reverse(out.begin(), out.end());  // oldest first
    return out;
  }

  MemoryStoreOptions options_;
  std::mutex mu_;
  std::map<std::string, Repo> repos_;
  std::map<std::int64_t, forges::OutboxMessage> outbox_;
  std::map<std::string, queue::Millis> deliveries_;
  std::map<std::int64_t, DeliveryId> unhandled_;  // by seq: those kept with their request
  std::int64_t delivery_seq_ = 0;
  std::map<std::string, std::pair<std::string, queue::Millis>> leases_;
  std::int64_t seq_ = 0;
  std::int64_t outbox_seq_ = 0;
  std::vector<PromotionRecord> promotions_;  // by seq
  std::int64_t promotion_seq_ = 0;
};

}  // namespace

std::unique_ptr<Store> make_memory_store(MemoryStoreOptions options) {
  return std::make_unique<MemoryStore>(options);
}

}  // namespace dmz

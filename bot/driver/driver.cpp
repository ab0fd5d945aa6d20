#include "bot/driver/driver.hpp"

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <set>

#include "base/log.hpp"
#include "base/text.hpp"
#include "queue/delta.hpp"
#include "queue/engine.hpp"
#include "queue/json.hpp"

namespace dmz::driver {

namespace q = queue;

struct Driver::Slot {
  RepoConfig cfg;
  q::RepoState state;
  std::uint64_t version = 0;
  Health health;
  bool fetch_in_flight = false;
  q::Millis lease_renew_at = 0;
  q::Millis last_tick = 0;  // 0: none since the start
  q::Millis blind_ms = 0;   // time CI results could not be observed, not credited yet
};

namespace {

bool finished(q::PrStatus status) {
  switch (status) {
    case q::PrStatus::Merged:
    case q::PrStatus::Failed:
    case q::PrStatus::Cancelled:
      return true;
    case q::PrStatus::Open:
    case q::PrStatus::Approved:
    case q::PrStatus::Queued:
    case q::PrStatus::Merging:
    case q::PrStatus::InDmz:
    case q::PrStatus::Building:
      return false;
  }
  return false;
}

// The PRs of the candidate that `event` is about (its merge, a check's end on its sha, its
// landing) in `state` as it was before the event: the event goes into each one's timeline.
std::vector<int> candidate_prs(const q::RepoState& state, const q::Event& event) {
  const q::Candidate* found = nullptr;
  auto by_id = [&](q::CandidateId id) {
    for (const auto& c : state.train)
      if (c.id == id) found = &c;
  };
  if (const auto* e = std::get_if<q::MergeDone>(&event)) by_id(e->candidate);
  if (const auto* e = std::get_if<q::CandidateChecked>(&event)) by_id(e->candidate);
  if (const auto* e = std::get_if<q::MasterPushed>(&event)) by_id(e->candidate);
  // A check's end, not each of its pending reports (a PR's timeline stays readable).
  if (const auto* e = std::get_if<q::CheckReported>(&event);
      e && e->check.state != q::CheckState::Pending)
    for (const auto& c : state.train)
      if (!c.sha.empty() && c.sha == e->sha) found = &c;
  return found ? found->prs : std::vector<int>{};
}

// Whether a PR leaves the hot state now: merged and closed PRs at once; failed and cancelled
// ones (which a merge master may still retry) once they are `archive_after` old.
bool archivable(const q::PullRequest& pr, q::Millis now, q::Millis archive_after) {
  if (!finished(pr.status)) return false;
  if (pr.status == q::PrStatus::Merged || pr.reason_code == q::Reason::Closed) return true;
  return now - pr.finished_at >= archive_after;
}

q::Outcome refused(Error error) { return q::Outcome{std::move(error), {}}; }

// Delivery failures that a later attempt may get past.
bool transient(Code code) { return code == Code::kUnavailable || code == Code::kInternal; }

// Runs `call`, an observer of a change already saved: one that throws is a bug to log, not a
// reason to keep the change's actions and messages from going out.
template <class F>
void observe(const std::string& repo, std::string_view what, F&& call) {
  try {
    call();
  } catch (const std::exception& e) {
    log::error({.repo = repo}, "{} threw: {}", what, e.what());
  } catch (...) {
    log::error({.repo = repo}, "{} threw", what);
  }
}

}  // namespace

Driver::Driver(const Clock& clock, Store& store, GitPort& git, PolicyPort& policy, CiPort& ci,
               OutboxPort& outbox, std::vector<RepoConfig> repos, Options options)
    : clock_(clock),
      store_(store),
      git_(git),
      policy_(policy),
      ci_(ci),
      outbox_(outbox),
      options_(std::move(options)) {
  for (auto& cfg : repos) {
    auto slot = std::make_unique<Slot>();
    slot->cfg = std::move(cfg);
    slot->state.repo = slot->cfg.name;
    slots_.push_back(std::move(slot));
  }
}

Driver::~Driver() = default;

Driver::Slot* Driver::find(const std::string& repo) {
  for (auto& s : slots_)
    if (s->cfg.name == repo) return s.get();
  return nullptr;
}

const Driver::Slot* Driver::find(const std::string& repo) const {
  return const_cast<Driver*>(this)->find(repo);
}

Status Driver::start() {
  for (auto& slot : slots_) {
    load(*slot);
    if (!slot->health.loaded && slot->health.last_error.starts_with("store:"))
      return unavailable(slot->cfg.name + ": " + slot->health.last_error);
  }
  return {};
}

void Driver::load(Slot& slot) {
  const q::Millis now = clock_.now();
  const std::string& repo = slot.cfg.name;
  auto lease = store_.acquire_lease(repo, options_.owner, now, options_.lease_ttl);
  if (!lease || !*lease) {
    slot.health.last_error =
        lease ? "another dmzbot holds the lease on " + repo : "store: " + lease.message();
    return;
  }
  slot.lease_renew_at = now + options_.lease_ttl / 3;
  auto loaded = store_.load(repo);
  if (!loaded) {
    slot.health.last_error = "store: " + loaded.message();
    return;
  }
  auto outbox = store_.outbox(repo);
  if (!outbox) {
    slot.health.last_error = "store: " + outbox.message();
    return;
  }
  if (*loaded) {
    slot.state = std::move((*loaded)->state);
    slot.version = (*loaded)->version;
  } else if (Status s = save_first(slot, now); !s.ok()) {
    log::warn({.repo = repo}, "cannot save the new repository's empty queue: {}", s.message());
  }
  slot.health.loaded = true;
  slot.health.last_error.clear();
  // A message already being sent (a reload after a conflict, a lease regained) keeps its
  // flight: sending it again now would post it twice.
  for (auto& m : *outbox) {
    auto [it, fresh] = pending_.try_emplace(m.id, Pending{m, false});
    if (!fresh && !it->second.in_flight) it->second.message = std::move(m);
  }
  // Finished PRs of an older run (or of a schema before history) move out now.
  if (Status s = commit(slot, slot.state, nullptr, {}); !s.ok())
    log::warn({.repo = repo}, "cannot archive finished pull requests: {}", s.message());
  dispatch(slot, q::resume(slot.state, slot.cfg.settings), {});
  slot.fetch_in_flight = true;
  slot.health.next_fetch_at = now;
  git_.fetch(repo);
  send_due_outbox(now);
}

// A repository the store has never held is written at once, empty: its mirror is made next,
// and a data directory with mirrors beside a database without state is taken at the next start
// for a lost database (a stop before the first change would otherwise leave exactly that).
Status Driver::save_first(Slot& slot, q::Millis now) {
  Change change;
  change.state = &slot.state;
  change.expected_version = slot.version;
  change.at = now;
  auto saved = store_.save(change);
  if (!saved) return saved.status();
  slot.version = saved->version;
  return {};
}

q::Outcome Driver::apply(const std::string& repo, const q::Event& event) {
  // Whatever throws (a bug, a store's surprise) fails this event, not the engine thread: the
  // slot moves on only once its change is saved (commit), so it still matches the store.
  const auto failed = [&](std::string_view why) {
    log::error({.repo = repo, .pr = q::pr_of(event).value_or(0), .event = q::event_kind(event)},
               "{} failed: {}", q::event_kind(event), why);
    return refused(internal(std::string(q::event_kind(event)) + " failed: " + std::string(why)));
  };
  try {
    return apply_event(repo, event);
  } catch (const std::exception& e) {
    return failed(e.what());
  } catch (...) {
    return failed("an unknown exception");
  }
}

q::Outcome Driver::apply_event(const std::string& repo, const q::Event& event) {
  Slot* slot = find(repo);
  if (!slot) return refused(not_found("unknown repository " + repo));
  if (!slot->health.loaded)
    return refused(unavailable(repo + " is not being served: " + slot->health.last_error));
  q::RepoState work = slot->state;
  // An event about a PR that left the hot state brings it back: the engine judges it as
  // before (retry a failed PR, refuse to approve a merged one).
  std::optional<q::PullRequest> restored;
  if (auto n = q::pr_of(event); n && !work.prs.count(*n)) {
    auto archived = store_.archived(repo, *n);
    if (!archived) return refused(archived.error());
    if (*archived) {
      restored = **archived;
      work.prs.emplace(*n, std::move(**archived));
    }
  }
  q::Outcome out = q::handle(work, event, slot->cfg.settings);
  if (out.rejected) return out;
  if (Status s = commit(*slot, std::move(work), &event, out.actions, restored); !s.ok()) {
    log::error({.repo = repo, .pr = q::pr_of(event).value_or(0), .event = q::event_kind(event)},
               "cannot save the state, {} refused: {}", q::event_kind(event), s.message());
    if (s.code() == Code::kConflict) {  // another writer: reload before acting again
      slot->health.loaded = false;
      slot->health.last_error = s.message();
    }
    // Whatever went wrong was on our side: the caller may retry (503), never give up (409).
    return refused(Error{Code::kUnavailable, s.message()});
  }
  return out;
}

Status Driver::commit(Slot& slot, q::RepoState next, const q::Event* event,
                      const std::vector<q::Action>& actions,
                      const std::optional<q::PullRequest>& restored) {
  const q::Millis now = clock_.now();
  const std::string& repo = slot.cfg.name;
  Change change;
  for (auto it = next.prs.begin(); it != next.prs.end();) {
    if (archivable(it->second, now, slot.cfg.archive_after)) {
      // Back from the archive and unchanged (a `closed` webhook after its landing): it is
      // there already.
      if (!restored || it->second != *restored) change.archived.push_back(std::move(it->second));
      it = next.prs.erase(it);
    } else {
      ++it;
    }
  }
  change.delta = q::diff(slot.state, next);
  // A PR whose status or finishing time changed into a finished one has a new outcome; one
  // brought back from the archive is compared with what it was there.
  auto just_finished = [&](const q::PullRequest& pr) {
    if (!finished(pr.status)) return false;
    const q::PullRequest* before = nullptr;
    if (auto it = slot.state.prs.find(pr.number); it != slot.state.prs.end())
      before = &it->second;
    else if (restored && restored->number == pr.number)
      before = &*restored;
    return !before || before->status != pr.status || before->finished_at != pr.finished_at;
  };
  for (int n : change.delta.changed_prs)
    if (just_finished(next.prs.at(n)))
      change.outcomes.push_back(HistoryEntry::of(repo, next.prs.at(n)));
  for (const auto& pr : change.archived)
    if (just_finished(pr)) change.outcomes.push_back(HistoryEntry::of(repo, pr));
  for (const auto& a : actions)
    if (const auto* n = std::get_if<q::Notify>(&a)) change.notices.push_back(*n);
  if (change.delta.empty() && change.archived.empty() && change.notices.empty() && actions.empty())
    return {};  // an idle tick, a repeated delivery: nothing to write, nothing to do
  change.state = &next;
  change.expected_version = slot.version;
  change.at = now;
  if (event)
    change.event = EventLogEntry{0,
                                 repo,
                                 q::event_kind(*event),
                                 json_text(q::to_json(*event)),
                                 q::pr_of(*event),
                                 now,
                                 candidate_prs(slot.state, *event)};
  const auto write_started = std::chrono::steady_clock::now();
  auto saved = store_.save(change);
  if (options_.metrics)
    options_.metrics->observe(
        "dmzbot_store_write_seconds", {{"repo", repo}},
        std::chrono::duration<double>(std::chrono::steady_clock::now() - write_started).count());
  if (!saved) return saved.status();
  // Saved: from here on the change is the slot's, and its actions and messages go out whatever
  // the metrics, the log or an observer do (a saved candidate would otherwise wait for a
  // restart to be built).
  observe(repo, "counting the change", [&] { record(slot, next, change.outcomes, now); });
  observe(repo, "logging the outcomes", [&] {
    for (const auto& o : change.outcomes)  // one line per PR that left the queue, with its reason
      log::info({.repo = repo,
                 .pr = o.number,
                 .sha = o.head,
                 .reason = q::to_string(o.reason),
                 .event = change.event ? std::string_view(change.event->kind) : std::string_view()},
                "{}{}{}", q::to_string(o.status), o.message.empty() ? "" : ": ",
                escape_control(o.message));
  });
  slot.state = std::move(next);
  slot.version = saved->version;
  if (options_.on_commit)
    observe(repo, "on_commit", [&] {
      options_.on_commit(repo, Committed{&slot.state, &change.delta, &change.archived});
    });
  if (options_.on_saved) observe(repo, "on_saved", [&] { options_.on_saved(repo); });
  dispatch(slot, actions, saved->outbox_ids);
  return {};
}

void Driver::dispatch(Slot& slot, const std::vector<q::Action>& actions,
                      const std::vector<std::int64_t>& outbox_ids) {
  const std::string& repo = slot.cfg.name;
  std::size_t notice = 0;
  for (const auto& action : actions) {
    std::visit(
        [&](const auto& a) {
          using A = std::decay_t<decltype(a)>;
          if constexpr (std::is_same_v<A, q::CheckPolicy>) {
            policy_.check_policy(repo, a);
          } else if constexpr (std::is_same_v<A, q::BuildCandidate>) {
            git_.build_candidate(repo, a);
          } else if constexpr (std::is_same_v<A, q::CheckCandidate>) {
            policy_.check_candidate(repo, a);
          } else if constexpr (std::is_same_v<A, q::ResetDmz>) {
            git_.reset_dmz(repo, a);
          } else if constexpr (std::is_same_v<A, q::StartBuild>) {
            if (options_.metrics)
              options_.metrics->add("dmzbot_builds_started_total", {{"repo", repo}});
            ci_.start_build(repo, a);
          } else if constexpr (std::is_same_v<A, q::CancelBuild>) {
            ci_.cancel_build(repo, a);
          } else if constexpr (std::is_same_v<A, q::FastForwardMaster>) {
            git_.fast_forward(repo, a);
          } else if constexpr (std::is_same_v<A, q::PruneCandidates>) {
            git_.prune_candidates(repo, a);
          } else if constexpr (std::is_same_v<A, q::Notify>) {
            // Saved with the change: delivered now, or retried from the store after a crash.
            if (notice >= outbox_ids.size()) return;  // resume() emits no notices
            forges::OutboxMessage m{outbox_ids[notice++], repo, a, 0, clock_.now(), ""};
            const bool waits = std::any_of(pending_.begin(), pending_.end(), [&](const auto& p) {
              return same_pr(p.second.message, m);  // sent once the earlier one is done
            });
            pending_[m.id] = Pending{m, !waits};
            if (!waits) outbox_.send(m);
          }
        },
        action);
  }
  slot.health.outbox_pending =
      static_cast<std::size_t>(std::count_if(pending_.begin(), pending_.end(), [&](const auto& p) {
        return p.second.message.repo == repo;
      }));
}

void Driver::record(const Slot& slot, const q::RepoState& next,
                    const std::vector<HistoryEntry>& outcomes, q::Millis now) {
  if (!options_.metrics) return;
  metrics::Registry& m = *options_.metrics;
  const metrics::Labels repo{{"repo", slot.cfg.name}};
  for (const auto& h : outcomes) {
    if (h.status == q::PrStatus::Merged) {
      m.add("dmzbot_prs_landed_total", repo);
      if (const int innocent = innocent_ejections(slot.cfg.name, h); innocent > 0)
        m.add("dmzbot_innocent_ejections_total", repo, innocent);
      if (h.approved_at > 0 && h.at >= h.approved_at)
        m.observe("dmzbot_time_to_merge_seconds", repo,
                  static_cast<double>(h.at - h.approved_at) / 1000.0);
    } else {
      m.add("dmzbot_prs_dequeued_total",
            {{"repo", slot.cfg.name}, {"reason", std::string(q::to_string(h.reason))}});
    }
  }
  // A candidate that left the train after reaching the remote has finished its build.
  for (const auto& k : slot.state.train) {
    if (k.pushed_at == 0) continue;
    bool still = std::any_of(next.train.begin(), next.train.end(),
                             [&](const q::Candidate& c) { return c.id == k.id; });
    if (!still)
      m.observe("dmzbot_build_duration_seconds", repo,
                static_cast<double>(now - k.pushed_at) / 1000.0);
  }
}

// A PR that landed at a head it had been ejected at for a failed (or silent) build was not to
// blame for that failure: a flake, or another PR of its candidate. Ejections at an older head
// say nothing (the push may have been the fix). The store knows the PR's earlier outcomes.
int Driver::innocent_ejections(const std::string& repo, const HistoryEntry& landed) {
  auto earlier = store_.pr_history(repo, landed.number, 64);
  if (!earlier) return 0;  // a metric is not worth failing a landing for
  int innocent = 0;
  for (const auto& h : *earlier)
    if (h.status == q::PrStatus::Failed && h.head == landed.head &&
        (h.reason == q::Reason::BuildFailed || h.reason == q::Reason::CheckTimeout))
      ++innocent;
  return innocent;
}

void Driver::record_gauges(const Slot& slot) {
  if (!options_.metrics) return;
  metrics::Registry& m = *options_.metrics;
  const metrics::Labels repo{{"repo", slot.cfg.name}};
  m.set("dmzbot_queue_length", repo, static_cast<double>(q::queue_order(slot.state).size()));
  m.set("dmzbot_train_candidates", repo, static_cast<double>(slot.state.train.size()));
  const double landed = m.value("dmzbot_prs_landed_total", repo);
  if (landed > 0)
    m.set("dmzbot_builds_per_landed_pr", repo,
          m.value("dmzbot_builds_started_total", repo) / landed);
  m.set("dmzbot_repository_healthy", repo, slot.health.loaded && slot.health.remote_ok ? 1.0 : 0.0);
  m.set("dmzbot_outbox_pending", repo, static_cast<double>(slot.health.outbox_pending));
}

// How often time CI results could not be observed is credited to the candidates' deadlines.
constexpr q::Millis kBlindCredit = 60'000;

void Driver::tick() {
  const q::Millis now = clock_.now();
  for (auto& slot : slots_) {
    if (!slot->health.loaded) {
      load(*slot);  // the store or the lease may be back
      record_gauges(*slot);
      continue;
    }
    renew_lease(*slot, now);
    if (!slot->health.loaded) continue;
    // While the forge's API cannot be read, CI results may go unseen: the check timeouts wait.
    const forges::ApiHealth& api = slot->health.api;
    const bool blind = api.used && (!api.ok || api.blocked_until > now);
    const q::Millis since = slot->last_tick > 0 ? std::max<q::Millis>(0, now - slot->last_tick) : 0;
    slot->last_tick = now;
    // The blind time is credited once a minute and when the outage ends, not at every tick:
    // each credit changes the state, a save and an event (86,400 a day at one tick a second).
    if (blind) slot->blind_ms += since;
    const bool credit = slot->blind_ms > 0 && (!blind || slot->blind_ms >= kBlindCredit);
    auto ticked =
        apply(slot->cfg.name, q::Tick{now, credit ? slot->blind_ms : 0, blind && !credit});
    if (credit && !ticked.rejected) slot->blind_ms = 0;
    record_gauges(*slot);
    if (!slot->fetch_in_flight && now >= slot->health.next_fetch_at) {
      slot->fetch_in_flight = true;
      git_.fetch(slot->cfg.name);
    }
  }
  send_due_outbox(now);
  if (now >= next_prune_at_) {
    // A batch at a time on this thread, so that the engine (and the webhooks, which share the
    // deliveries' store) wait for a short delete only; a full batch means more is old (a first
    // prune, downtime, a lowered history_days): soon again.
    const std::size_t batch = std::max<std::size_t>(1, options_.prune_batch);
    next_prune_at_ = now + 3'600'000;
    Store& deliveries = options_.deliveries ? *options_.deliveries : store_;
    auto forgotten = deliveries.prune_deliveries(now - options_.delivery_retention, batch);
    if (!forgotten)
      spdlog::warn("cannot prune old webhook delivery ids: {}", forgotten.message());
    else if (*forgotten >= batch)
      next_prune_at_ = now + 10'000;
    if (options_.history_retention > 0) {
      auto pruned = store_.prune_history(now - options_.history_retention, batch);
      if (!pruned)
        spdlog::warn("cannot prune old history: {}", pruned.message());
      else if (*pruned >= batch)
        next_prune_at_ = now + 10'000;
    }
  }
}

void Driver::renew_lease(Slot& slot, q::Millis now) {
  if (now < slot.lease_renew_at) return;
  auto lease = store_.acquire_lease(slot.cfg.name, options_.owner, now, options_.lease_ttl);
  if (lease && *lease) {
    slot.lease_renew_at = now + options_.lease_ttl / 3;
    return;
  }
  if (!lease) {  // the store is down: try again next tick, keep serving what we have
    log::warn({.repo = slot.cfg.name}, "cannot renew the lease: {}", lease.message());
    return;
  }
  // Another process took the repository over: stop acting on it.
  log::error({.repo = slot.cfg.name}, "another dmzbot took the lease; no longer serving it");
  slot.health.loaded = false;
  slot.health.last_error = "another dmzbot holds the lease on " + slot.cfg.name;
}

bool Driver::same_pr(const forges::OutboxMessage& a, const forges::OutboxMessage& b) {
  return a.repo == b.repo && a.notice.number == b.notice.number;
}

void Driver::send_due_outbox(q::Millis now) {
  // In id order, and one message of a PR at a time: a comment retried after a failure is not
  // overtaken by a later one ("Merged" above "Approval dropped" in the PR's conversation).
  std::set<std::pair<std::string, int>> busy;
  for (auto& [id, p] : pending_) {
    if (!busy.insert({p.message.repo, p.message.notice.number}).second) continue;
    if (p.in_flight || p.message.next_at > now) continue;
    const Slot* slot = find(p.message.repo);
    if (!slot || !slot->health.loaded) continue;
    p.in_flight = true;
    outbox_.send(p.message);
  }
}

void Driver::fetched(const std::string& repo, const forges::RemoteRefs& refs) {
  Slot* slot = find(repo);
  if (!slot) return;
  const q::Millis now = clock_.now();
  slot->fetch_in_flight = false;
  slot->health.remote_ok = true;
  slot->health.fetch_failures = 0;
  slot->health.last_fetch_ok = now;
  slot->health.last_error.clear();
  slot->health.next_fetch_at = now + slot->cfg.fetch_interval;
  if (!slot->health.loaded || !slot->cfg.forge) return;
  for (const auto& event : slot->cfg.forge->events_from_fetch(slot->state, refs, now)) {
    auto out = apply(repo, event);
    if (out.rejected)
      log::warn({.repo = repo, .pr = q::pr_of(event).value_or(0), .event = q::event_kind(event)},
                "{} from a fetch refused: {}", q::event_kind(event),
                escape_control(out.rejected->message));
  }
}

void Driver::fetch_failed(const std::string& repo, const Status& why) {
  Slot* slot = find(repo);
  if (!slot) return;
  const q::Millis now = clock_.now();
  slot->fetch_in_flight = false;
  slot->health.remote_ok = false;
  slot->health.last_fetch_failed = now;
  slot->health.last_error = why.message();
  ++slot->health.fetch_failures;
  slot->health.next_fetch_at =
      now + backoff(slot->cfg.fetch_interval, slot->health.fetch_failures,
                    std::max(options_.max_fetch_backoff, slot->cfg.fetch_interval));
  log::warn({.repo = repo}, "fetch failed ({} in a row), next in {}s: {}",
            slot->health.fetch_failures, (slot->health.next_fetch_at - now) / 1000, why.message());
}

void Driver::delivered(std::int64_t id, const Status& result) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  Pending& p = it->second;
  p.in_flight = false;
  const std::string repo = p.message.repo;
  const bool give_up = !result.ok() && (!transient(result.code()) ||
                                        p.message.attempts + 1 >= options_.max_outbox_attempts);
  if (result.ok() || give_up) {
    if (give_up)
      log::error({.repo = repo,
                  .pr = p.message.notice.number,
                  .sha = p.message.notice.head,
                  .reason = q::to_string(p.message.notice.reason)},
                 "dropping a message after {} attempt(s): {}", p.message.attempts + 1,
                 result.message());
    if (Status s = store_.outbox_delivered(id); !s.ok())
      log::warn({.repo = repo}, "cannot mark outbox message {} delivered: {}", id, s.message());
    pending_.erase(it);
    send_due_outbox(clock_.now());  // the PR's next message, which waited for this one
  } else {
    const q::Millis now = clock_.now();
    ++p.message.attempts;
    p.message.next_at =
        now + backoff(options_.outbox_backoff, p.message.attempts, options_.max_outbox_backoff);
    p.message.last_error = result.message();
    if (Status s =
            store_.outbox_retry(id, p.message.attempts, p.message.next_at, p.message.last_error);
        !s.ok())
      log::warn({.repo = repo}, "cannot reschedule outbox message {}: {}", id, s.message());
  }
  if (Slot* slot = find(repo))
    slot->health.outbox_pending = static_cast<std::size_t>(
        std::count_if(pending_.begin(), pending_.end(),
                      [&](const auto& e) { return e.second.message.repo == repo; }));
}

void Driver::set_api_health(const std::string& repo, const forges::ApiHealth& api) {
  if (Slot* slot = find(repo)) slot->health.api = api;
}

const q::RepoState* Driver::state(const std::string& repo) const {
  const Slot* s = find(repo);
  return s ? &s->state : nullptr;
}

const Health* Driver::health(const std::string& repo) const {
  const Slot* s = find(repo);
  return s ? &s->health : nullptr;
}

const RepoConfig* Driver::config(const std::string& repo) const {
  const Slot* s = find(repo);
  return s ? &s->cfg : nullptr;
}

std::vector<std::string> Driver::repos() const {
  std::vector<std::string> out;
  for (const auto& s : slots_) out.push_back(s->cfg.name);
  return out;
}

}  // namespace dmz::driver

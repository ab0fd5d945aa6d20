// The forge's side of the service: webhook deliveries taken in, their follow-ups carried out on
// the forge's API, reconciliation and the summaries shown on the PRs (service_impl.hpp).
#include <algorithm>
#include <variant>

#include "bot/service/service_impl.hpp"

namespace dmz {

// ---- the forge's API: webhook follow-ups, reconciliation, summaries ------------------------

void Service::Impl::request_fetch(RepoRuntime& rt, std::vector<q::Sha> commits) {
  {
    std::lock_guard lock(rt.fetch_mu);
    if (commits.empty())
      rt.fetch_always = true;
    else
      rt.fetch_for.insert(rt.fetch_for.end(), commits.begin(), commits.end());
    if (std::exchange(rt.fetch_queued, true)) return;  // the queued one takes them too
  }
  rt.git->post([this, &rt] {
    std::this_thread::sleep_until(rt.webhook_fetch_done + options.webhook_fetch_gap);
    std::vector<q::Sha> wanted;
    bool always = false;
    {
      std::lock_guard lock(rt.fetch_mu);
      rt.fetch_queued = false;
      wanted.swap(rt.fetch_for);
      always = std::exchange(rt.fetch_always, false);
    }
    if (!always && rt.worker->has_commits(wanted)) return;
    fetch_into_driver(rt);
    rt.webhook_fetch_done = std::chrono::steady_clock::now();
  });
}

std::vector<q::Sha> Service::Impl::commits_named(const forges::Delivery& d) {
  std::vector<q::Sha> named;
  for (const auto& e : d.events) {
    if (const auto* opened = std::get_if<q::PrOpened>(&e))
      named.push_back(opened->head);
    else if (std::holds_alternative<q::PrPushed>(e) || std::holds_alternative<q::MasterObserved>(e))
      return {};
  }
  for (const auto& f : d.follow_ups) {
    if (f.kind == forges::FollowUp::Kind::kTry) return {};
    if (f.kind != forges::FollowUp::Kind::kAuthorize || !f.event) continue;
    if (const auto* merge = std::get_if<q::MergeRequested>(&*f.event)) {
      if (f.pin_head || merge->sha.size() < 40) return {};
      named.push_back(merge->sha);
    }
  }
  return named;
}

void Service::Impl::accept(std::vector<Taken> taken, std::string key) {
  std::size_t parts = 0;
  for (const auto& t : taken) parts += 1 + t.d.follow_ups.size();
  auto ticket =
      std::make_shared<DeliveryTicket>(std::move(key), parts, *deliveries, unfinished_deliveries);
  for (auto& [rt, d] : taken) {
    if (d.fetch) request_fetch(*rt, commits_named(d));
    engine.post([this, rt, d = std::move(d), ticket]() mutable {
      handle_delivery(*rt, std::move(d), ticket);
    });
  }
}

Result<std::vector<Taken>> Service::Impl::takers(const std::string& forge,
                                                 const forges::InboundRequest& request,
                                                 q::Millis at) {
  std::vector<Taken> taken;
  bool any = false, unauthenticated_seen = false;
  for (auto& rt : repos) {
    if (rt->forge->kind() != forge) continue;
    any = true;
    auto delivery = rt->forge->webhook(request, at);
    if (delivery) {
      taken.push_back({rt.get(), std::move(*delivery)});
      continue;
    }
    const Code code = delivery.code();
    if (code != Code::kUnauthenticated && code != Code::kNotFound) {
      if (taken.empty()) return delivery.error();
      break;  // the same body another repository could read: not ours to refuse
    }
    unauthenticated_seen |= code == Code::kUnauthenticated;
  }
  if (!taken.empty()) return taken;
  if (!any) return not_found("no " + forge + " repository is configured");
  if (unauthenticated_seen)
    return unauthenticated("the webhook's signature matches no configured repository");
  return not_found("the webhook is about no configured repository");
}

Result<std::vector<std::pair<q::Millis, q::Sha>>> Service::Impl::logged_heads(
    const std::string& repo, int n) {
  auto events = store->pr_heads(repo, n, 200);
  if (!events) return events.error();
  std::vector<std::pair<q::Millis, q::Sha>> out;
  for (const auto& e : *events) {
    auto j = nlohmann::json::parse(e.json, nullptr, false);
    out.emplace_back(e.at, j.is_object() ? j.value("head", "") : "");
  }
  return out;
}

q::Millis Service::Impl::written_here(const RepoRuntime& rt, const forges::FollowUp& f) {
  return f.written_at - rt.forge->api_health().clock_offset;
}

Result<q::Sha> Service::Impl::head_when_written(const RepoRuntime& rt, const forges::FollowUp& f) {
  const std::string& repo = rt.cfg.name;
  if (f.written_at == 0) {
    const q::RepoState* state = driver->state(repo);
    if (!state || !state->prs.count(f.number)) return q::Sha();
    return state->prs.at(f.number).head;
  }
  auto logged = logged_heads(repo, f.number);
  if (!logged) return logged.error();
  const q::Millis skew = options.label_skew.count();
  const q::Millis written = written_here(rt, f);  // the heads are logged on our clock
  q::Sha before;                                  // the head at written - skew
  std::set<q::Sha> within;                        // the heads it took until written + skew
  for (const auto& [at, head] : *logged) {
    if (at > written + skew) continue;
    if (at <= written - skew)
      before = head;
    else
      within.insert(head);
  }
  if (!before.empty()) within.insert(before);
  return within.size() == 1 ? *within.begin() : q::Sha();
}

bool Service::Impl::follows(const q::RepoState& state, const q::Sha& sha) {
  for (const auto& k : state.train)
    if (k.sha == sha) return true;
  for (const auto& [n, pr] : state.prs)
    if (pr.head == sha && pr.finished_at == 0) return true;
  return false;
}

void Service::Impl::apply_delivered(const std::string& repo, const std::vector<q::Event>& events,
                                    const std::shared_ptr<DeliveryTicket>& ticket) {
  if (events.empty()) return ticket->done();
  for (std::size_t i = 0; i < events.size(); ++i)
    apply_or_park(
        repo, events[i], Parked::kUntilApplied,
        [repo, event = events[i],
         ticket = i + 1 == events.size() ? ticket : nullptr](const q::Outcome& out) {
          if (out.rejected && out.rejected->code != Code::kNotFound)
            log::info(
                {.repo = repo, .pr = q::pr_of(event).value_or(0), .event = q::event_kind(event)},
                "{} from a webhook refused: {}", q::event_kind(event),
                escape_control(out.rejected->message));
          if (ticket) ticket->done();
        });
}

void Service::Impl::older_than_webhooks(RepoRuntime& rt, forges::RemoteRefs& refs,
                                        q::Millis began) {
  for (auto it = rt.webhook_heads.begin(); it != rt.webhook_heads.end();) {
    const auto& [n, told] = *it;
    auto read = refs.pulls.find(n);
    if (told.second >= began && read != refs.pulls.end() && read->second != told.first)
      refs.moved_pulls.erase(n);
    it = told.second < began ? rt.webhook_heads.erase(it) : std::next(it);
  }
}

bool Service::Impl::stale_push(const q::RepoState& state, const forges::Delivery& d,
                               const q::Event& e) {
  const auto* pushed = std::get_if<q::PrPushed>(&e);
  if (!pushed) return false;
  auto before = d.pushed_from.find(pushed->number);
  auto pr = state.prs.find(pushed->number);
  if (before == d.pushed_from.end() || pr == state.prs.end()) return false;
  const q::Sha& head = pr->second.head;
  if (head == before->second || head == pushed->head) return false;
  log::info({.repo = d.repo, .pr = pushed->number, .sha = pushed->head},
            "push webhook left to the fetch: it replaced {}, the head is {}",
            before->second.substr(0, 7), head.substr(0, 7));
  return true;
}

void Service::Impl::handle_delivery(RepoRuntime& rt, forges::Delivery d,
                                    const std::shared_ptr<DeliveryTicket>& ticket) {
  if (const q::RepoState* state = driver->state(rt.cfg.name))
    std::erase_if(d.events, [&](const q::Event& e) { return stale_push(*state, d, e); });
  for (const auto& e : d.events) {
    if (const auto* pushed = std::get_if<q::PrPushed>(&e))
      rt.webhook_heads[pushed->number] = {pushed->head, now()};
    else if (const auto* opened = std::get_if<q::PrOpened>(&e))
      rt.webhook_heads[opened->number] = {opened->head, now()};
  }
  apply_delivered(rt.cfg.name, d.events, ticket);
  if (d.follow_ups.empty()) return;
  const q::RepoState* state = driver->state(rt.cfg.name);
  // A completed check suite is read back only for a commit the queue follows (a candidate,
  // or a PR's head for its pre-queue result): every push to any branch completes suites, and
  // each read costs two or more API requests.
  std::erase_if(d.follow_ups, [&](const forges::FollowUp& f) {
    if (f.kind != forges::FollowUp::Kind::kRefreshChecks || !state || follows(*state, f.sha))
      return false;
    ticket->done();
    return true;
  });
  std::vector<QueuedFollowUp> queued;
  for (auto& f : d.follow_ups)  // a merge or try by comment takes the head it was written on
    if (pin_head(rt, f, ticket, false)) queued.push_back({std::move(f), ticket});
  queue_follow_ups(rt, std::move(queued));
}

bool Service::Impl::pin_head(RepoRuntime& rt, forges::FollowUp& f,
                             const std::shared_ptr<DeliveryTicket>& ticket, bool again) {
  auto* merge = f.event ? std::get_if<q::MergeRequested>(&*f.event) : nullptr;
  const bool pins =
      (f.pin_head && merge) || (f.kind == forges::FollowUp::Kind::kTry && f.sha.empty());
  const q::RepoState* state = driver->state(rt.cfg.name);
  if (!pins || !state || !state->prs.count(f.number)) return true;
  const Result<q::Sha> head = head_when_written(rt, f);
  if (!head) {  // our failure, not the comment's: it waits for the log
    if (!again)
      log::warn({.repo = rt.cfg.name, .pr = f.number},
                "{} by {} waits: its head cannot be read from the event log: {}", f.command,
                escape_control(f.actor), head.message());
    rt.unpinned.push_back({std::move(f), ticket});
    return false;
  }
  if (head->empty()) {
    reply(rt, f.number, q::NoticeKind::Failure,
          "@" + f.actor + ": " + f.command + " refused: #" + std::to_string(f.number) +
              " was pushed within seconds of your comment, so which commit you meant is not "
              "certain; write `merge <sha>` with the commit you reviewed. Nothing changed.",
          ticket);
    return false;
  }
  if (!merge)
    f.sha = *head;
  else if (merge->sha.empty() || (merge->sha.size() >= 7 && head->starts_with(merge->sha)))
    merge->sha = *head;  // an abbreviation that is not the head stays, and is refused
  return true;
}

void Service::Impl::queue_follow_ups(RepoRuntime& rt, std::vector<QueuedFollowUp> follow_ups) {
  if (follow_ups.empty()) return;
  {
    std::lock_guard lock(rt.inbox_mu);
    for (auto& q : follow_ups) rt.inbox.push_back(std::move(q));
  }
  if (rt.drain_queued.exchange(true)) return;  // the drain already queued takes them too
  rt.forge_thread->post([this, &rt] {
    rt.drain_queued = false;
    drain_follow_ups(rt);
  });
}

void Service::Impl::apply_command(RepoRuntime& rt, const forges::FollowUp& f,
                                  const std::shared_ptr<DeliveryTicket>& ticket) {
  apply_or_park(rt.cfg.name, *f.event, Parked::kUntilApplied,
                [this, &rt, f, ticket](const q::Outcome& out) {
                  if (out.rejected)
                    command_refused(rt, f, out.rejected->message, ticket);
                  else
                    ticket->done();
                });
}

void Service::Impl::command_refused(RepoRuntime& rt, const forges::FollowUp& f,
                                    const std::string& why,
                                    const std::shared_ptr<DeliveryTicket>& ticket) {
  if (!f.quiet)
    return reply(rt, f.number, q::NoticeKind::Failure,
                 "@" + f.actor + ": " + f.command + " refused: " + why, ticket);
  log::info({.repo = rt.cfg.name, .pr = f.number}, "{} by {} changed nothing: {}", f.command,
            escape_control(f.actor), escape_control(why));
  ticket->done();
}

void Service::Impl::reply(RepoRuntime& rt, int number, q::NoticeKind kind, std::string message,
                          const std::shared_ptr<DeliveryTicket>& ticket) {
  apply_or_park(rt.cfg.name, q::Reply{number, kind, std::move(message), {}, now()},
                Parked::kUntilApplied, [&rt, number, ticket](const q::Outcome& out) {
                  if (out.rejected)
                    log::warn({.repo = rt.cfg.name, .pr = number}, "cannot answer: {}",
                              out.rejected->message);
                  ticket->done();
                });
}

Result<std::optional<std::string>> Service::Impl::label_overtaken(RepoRuntime& rt,
                                                                  const forges::FollowUp& f) {
  if (!f.label_added) return std::optional<std::string>{};
  const bool added = *f.label_added;
  const q::Millis late = now() - options.late_command.count() +
                         rt.forge->api_health().clock_offset;  // on the forge's clock
  auto later = rt.forge->label_overtaken(f.number, added, f.actor, late);
  if (!later && later.code() == Code::kUnavailable) return later.error();
  if (!later)
    return added ? std::optional<std::string>(
                       "whether a later gesture overtook it cannot be "
                       "read (" +
                       later.message() + "); the next reconciliation reads the label back")
                 : std::optional<std::string>{};
  if (!*later) return std::optional<std::string>{};
  const forges::LaterCommand& by = **later;
  return std::optional<std::string>(
      "overtaken: " +
      (by.actor.empty() ? std::string("GitHub shows now: ") : "later, @" + by.actor + ": ") +
      by.command);
}

Result<std::optional<std::string>> Service::Impl::overtaken(RepoRuntime& rt,
                                                            const forges::FollowUp& f) {
  const bool queueing = f.event && (std::holds_alternative<q::MergeRequested>(*f.event) ||
                                    std::holds_alternative<q::CancelRequested>(*f.event) ||
                                    std::holds_alternative<q::RetryRequested>(*f.event));
  const q::Millis late = now() - written_here(rt, f);
  if (!queueing || f.written_at == 0 || late < options.late_command.count())
    return std::optional<std::string>{};
  const std::string delay = "it reached dmzbot " +
                            (late < 120'000 ? std::to_string(late / 1000) + " s"
                                            : std::to_string(late / 60'000) + " min") +
                            " after it was written";
  auto later = rt.forge->later_command(f.number, f.written_at);
  if (!later && later.code() == Code::kUnavailable) return later.error();
  if (!later)
    return std::optional<std::string>(delay +
                                      ", and whether a later command overtook it "
                                      "cannot be read (" +
                                      later.message() + "); write it again. Nothing changed.");
  if (!*later) return std::optional<std::string>{};
  return std::optional<std::string>(delay + ", and a later command on #" +
                                    std::to_string(f.number) + " stands: `" + (*later)->command +
                                    "` by @" + (*later)->actor + ". Nothing changed.");
}

void Service::Impl::drain_follow_ups(RepoRuntime& rt) {
  {
    std::lock_guard lock(rt.inbox_mu);
    for (auto& f : rt.inbox) rt.follow_ups.push_back(std::move(f));
    rt.inbox.clear();
  }
  while (!rt.follow_ups.empty()) {
    forges::FollowUp& f = rt.follow_ups.front().f;
    std::shared_ptr<DeliveryTicket> ticket = rt.follow_ups.front().ticket;
    // Each branch completes the follow-up where it is carried out (on the engine thread), so
    // that its delivery is marked handled only then.
    switch (f.kind) {
      case forges::FollowUp::Kind::kAuthorize:
      case forges::FollowUp::Kind::kTry: {
        auto allowed = rt.forge->may_approve(f.actor);
        if (!allowed && allowed.code() == Code::kUnavailable) return;
        if (!allowed || !*allowed) {
          const std::string why = allowed
                                      ? "only merge masters may " + f.command + "; nothing changed"
                                      : "cannot tell whether you may " + f.command + " (" +
                                            allowed.message() + "); nothing changed";
          if (f.quiet) {
            log::info({.repo = rt.cfg.name, .pr = f.number}, "{} by {} ignored: {}", f.command,
                      escape_control(f.actor), why);
            ticket->done();
          } else {
            engine.post([this, &rt, n = f.number, text = "@" + f.actor + ": " + why, ticket] {
              reply(rt, n, q::NoticeKind::Failure, text, ticket);
            });
          }
        } else if (f.kind == forges::FollowUp::Kind::kTry) {
          engine.post([this, &rt, f, ticket] { start_try(rt, f, ticket); });
        } else if (auto stale = label_overtaken(rt, f); !stale) {
          return;  // the forge cannot tell now: asked again at the next tick
        } else if (*stale) {
          log::info({.repo = rt.cfg.name, .pr = f.number}, "{} by {} not applied: {}", f.command,
                    escape_control(f.actor), **stale);
          ticket->done();
        } else if (auto why = overtaken(rt, f); !why) {
          return;  // the forge cannot tell now: asked again at the next tick
        } else if (*why) {
          engine.post([this, &rt, f, why = **why, ticket] { command_refused(rt, f, why, ticket); });
        } else {
          engine.post([this, &rt, f, ticket] { apply_command(rt, f, ticket); });
        }
        break;
      }
      case forges::FollowUp::Kind::kRefreshChecks: {
        auto events = rt.forge->checks_of(f.sha, now());
        if (!events && events.code() == Code::kUnavailable) return;
        if (events)
          engine.post([this, &rt, events = std::move(*events), ticket] {
            apply_delivered(rt.cfg.name, events, ticket);
          });
        else
          ticket->done();  // dropped for good
        break;
      }
      case forges::FollowUp::Kind::kReconcile:
        engine.post([&rt, ticket] {
          rt.next_reconcile_at = 0;
          ticket->done();
        });
        break;
    }
    rt.follow_ups.pop_front();
  }
}

void Service::Impl::start_try(RepoRuntime& rt, const forges::FollowUp& f,
                              const std::shared_ptr<DeliveryTicket>& ticket) {
  const q::RepoState& state = *driver->state(rt.cfg.name);
  auto pr = state.prs.find(f.number);
  if (pr == state.prs.end() || state.master.empty()) {
    reply(rt, f.number, q::NoticeKind::Failure,
          "@" + f.actor + ": try refused: #" + std::to_string(f.number) +
              " is not known to dmzbot yet; ask again in a minute",
          ticket);
    return;
  }
  if (!f.sha.empty() && f.sha != pr->second.head) {
    reply(rt, f.number, q::NoticeKind::Failure,
          "@" + f.actor + ": try refused: #" + std::to_string(f.number) + " was pushed after " +
              "your comment (its head is now " + pr->second.head.substr(0, 7) +
              "); ask again to try it. Nothing changed.",
          ticket);
    return;
  }
  const std::string branch = rt.cfg.github->try_branch + "/" + std::to_string(f.number);
  on_git(rt.cfg.name, [this, n = f.number, head = pr->second.head, master = state.master, branch,
                       actor = f.actor, ticket](RepoRuntime& rt) {
    auto built = rt.worker->try_build(n, head, master, branch);
    engine.post([this, &rt, n, head, master, branch, actor, built, ticket] {
      if (built)
        reply(rt, n, q::NoticeKind::Info,
              "@" + actor + ": trying " + head.substr(0, 7) + " on master " + master.substr(0, 7) +
                  " as " + built->substr(0, 7) + " on branch " + branch +
                  " (not queued); the results will follow here",
              ticket);
      else if (built.code() == Code::kUnavailable)  // the remote's fault, not the PR's
        reply(rt, n, q::NoticeKind::Info,
              "@" + actor + ": try of " + head.substr(0, 7) +
                  " could not start, the git remote is unavailable (" + built.message() +
                  "); ask again once it is back",
              ticket);
      else
        reply(rt, n, q::NoticeKind::Failure,
              "@" + actor + ": try of " + head.substr(0, 7) + " failed: " + built.message(),
              ticket);
    });
  });
}

void Service::Impl::flush_shows(RepoRuntime& rt) {
  {
    std::lock_guard lock(rt.show_mu);
    for (auto& [n, summary] : rt.show_inbox) rt.to_show[n] = std::move(summary);
    rt.show_inbox.clear();
  }
  for (auto it = rt.to_show.begin(); it != rt.to_show.end();) {
    auto shown = rt.shown.find(it->first);
    if (shown != rt.shown.end() && shown->second == it->second) {
      it = rt.to_show.erase(it);
      continue;
    }
    Status s = rt.forge->show(it->second);
    if (!s.ok() && s.code() == Code::kUnavailable) return;
    if (!s.ok())
      log::warn({.repo = rt.cfg.name, .pr = it->first}, "cannot show where it stands: {}",
                s.message());
    else if (it->second.finished())  // it left the queue: not kept for months
      rt.shown.erase(it->first);
    else
      rt.shown[it->first] = it->second;
    it = rt.to_show.erase(it);
  }
}

void Service::Impl::on_commit(const std::string& repo, const driver::Committed& c) {
  RepoRuntime* rt = find(repo);
  if (!rt || !rt->api) return;
  std::vector<forges::PullSummary> changed;
  auto consider = [&](const q::PullRequest& pr) {
    auto s = forges::summarize(*c.state, pr, rt->settings.required_checks);
    if (!s) return;
    auto known = rt->desired.find(pr.number);
    if (known != rt->desired.end() && known->second == *s) return;
    rt->desired[pr.number] = *s;
    changed.push_back(*s);
  };
  for (int n : c.delta->changed_prs) consider(c.state->prs.at(n));
  for (const auto& pr : *c.archived) consider(pr);
  if (!c.delta->changed_prs.empty() || !c.delta->removed_prs.empty() || c.delta->train_changed)
    for (const auto& [n, pr] : c.state->prs)
      if (pr.status == q::PrStatus::Queued || pr.candidate) consider(pr);
  for (const auto& pr : *c.archived) rt->desired.erase(pr.number);
  show(*rt, std::move(changed));
  // PRs that left the hot state (merged, closed, long finished) need their try builds no
  // more: their branches are deleted, as obsolete candidate branches are.
  if (!c.archived->empty() && rt->cfg.github) {
    std::set<int> keep;
    for (const auto& [n, pr] : c.state->prs) keep.insert(n);
    on_git(repo, [keep = std::move(keep)](RepoRuntime& rt) {
      if (Status s = rt.worker->prune_try_branches(rt.cfg.github->try_branch, keep); !s.ok())
        spdlog::warn("{}: cannot delete obsolete try branches: {}", rt.cfg.name, s.message());
    });
  }
}

void Service::Impl::show(RepoRuntime& rt, std::vector<forges::PullSummary> summaries) {
  if (summaries.empty()) return;
  {
    std::lock_guard lock(rt.show_mu);
    for (auto& s : summaries) rt.show_inbox[s.number] = std::move(s);
  }
  if (rt.show_queued.exchange(true)) return;  // the flush already queued takes them too
  rt.forge_thread->post([this, &rt] {
    rt.show_queued = false;  // before flush_shows takes the inbox: none is left behind
    flush_shows(rt);
  });
}

void Service::Impl::forge_tick(RepoRuntime& rt) {
  if (!rt.unpinned.empty()) {
    std::vector<QueuedFollowUp> pinned;
    for (auto& [f, ticket] : std::exchange(rt.unpinned, {}))
      if (pin_head(rt, f, ticket, true)) pinned.push_back({std::move(f), ticket});
    queue_follow_ups(rt, std::move(pinned));
  }
  if (!rt.api || !driver->health(rt.cfg.name)->loaded) return;
  const q::Millis t = now();
  if (!rt.reconcile_in_flight && t >= rt.next_reconcile_at) reconcile(rt);
  if (rt.periodic_queued.exchange(true)) return;
  rt.forge_thread->post([this, &rt] {
    rt.periodic_queued = false;
    drain_follow_ups(rt);
    flush_shows(rt);
    const forges::ApiHealth health = rt.forge->api_health();
    const bool ok = health.ok && health.blocked_until == 0;
    const bool recovered = ok && !rt.api_was_ok;
    rt.api_was_ok = ok;
    engine.post([this, &rt, health, recovered] {
      driver->set_api_health(rt.cfg.name, health);
      if (recovered) rt.next_reconcile_at = 0;  // whatever was missed while it was down
    });
  });
}

void Service::Impl::reconcile(RepoRuntime& rt) {
  rt.reconcile_in_flight = true;
  forges::ReconcileInput input;
  input.state = *driver->state(rt.cfg.name);
  const std::string repo = rt.cfg.name;
  std::map<int, q::Sha> heads;
  for (const auto& [n, pr] : input.state.prs) heads[n] = pr.head;
  // When dmzbot learned each PR's head: from the event log, durable across restarts.
  input.head_seen_at = [this, repo, heads](int n) -> q::Millis {
    auto head = heads.find(n);
    if (head == heads.end()) return std::numeric_limits<q::Millis>::max();
    const auto logged = logged_heads(repo, n);
    if (!logged) return std::numeric_limits<q::Millis>::max();
    for (auto e = logged->rbegin(); e != logged->rend(); ++e)
      if (e->second == head->second) return e->first;
    return std::numeric_limits<q::Millis>::max();
  };
  bool posted = rt.forge_thread->post([this, &rt, input = std::move(input)] {
    // Whatever happens in the adapter, the engine hears back: reconcile_in_flight is
    // cleared there, and an exception left unanswered would stop reconciliation for good.
    Result<std::vector<q::Event>> events = internal("reconciliation threw");
    try {
      events = rt.forge->reconcile(input, now());
    } catch (const std::exception& e) {
      events = internal(std::string("reconciliation threw: ") + e.what());
    }
    if (events)  // the API answers again: the checks that waited for reviews go on
      for (const auto& a : std::exchange(rt.reviews_waiting, {}))
        rt.git->post([this, &rt, a] { judge_policy(rt, a); });
    engine.post([this, &rt, snapshot = input.state, events = std::move(events)]() mutable {
      rt.reconcile_in_flight = false;
      const q::Millis t = now();
      if (!events) {
        log::warn({.repo = rt.cfg.name}, "reconciliation failed: {}", events.message());
        rt.next_reconcile_at = t + std::min<q::Millis>(rt.reconcile_interval, 5'000);
        return;
      }
      rt.next_reconcile_at = t + rt.reconcile_interval;
      // Judged against the state before any of them is applied (one may open a PR that the
      // next approves).
      const q::RepoState* current = driver->state(rt.cfg.name);
      if (!current) return;
      std::erase_if(*events, [&](const q::Event& e) {
        return !forges::still_current(snapshot, *current, e);
      });
      // In order behind any event that waits to be saved, as the store can take them.
      for (const auto& e : *events)
        apply_or_park(rt.cfg.name, e, Parked::kWhileServed, [&rt, e](const q::Outcome& out) {
          if (out.rejected && out.rejected->code != Code::kNotFound)
            log::info(
                {.repo = rt.cfg.name, .pr = q::pr_of(e).value_or(0), .event = q::event_kind(e)},
                "{} from reconciliation refused: {}", q::event_kind(e),
                escape_control(out.rejected->message));
          else if (!out.rejected)
            log::debug({.repo = rt.cfg.name, .pr = q::pr_of(e).value_or(0)}, "reconciliation: {}",
                       q::event_kind(e));
        });
    });
  });
  if (!posted) rt.reconcile_in_flight = false;
}

Status Service::Impl::replay_unhandled() {
  constexpr std::size_t kPage = 256;
  std::size_t replayed = 0, dropped = 0;
  for (std::int64_t after = 0;;) {
    auto page = delivery_store->unhandled_deliveries(after, kPage);
    if (!page) return page.status().prefixed("store: unhandled webhook deliveries: ");
    for (auto& stored : *page) {
      after = stored.seq;
      if (replay(stored))
        ++replayed;
      else {
        deliveries->handled(stored.id);
        ++dropped;
      }
    }
    if (page->size() < kPage) break;
  }
  if (replayed + dropped > 0)
    spdlog::info("{} webhook deliveries from before the restart handled again ({} dropped)",
                 replayed, dropped);
  return {};
}

bool Service::Impl::replay(DeliveryId& stored) {
  forges::InboundRequest request;
  auto headers = nlohmann::json::parse(stored.headers, nullptr, false);
  if (headers.is_object())
    for (const auto& [name, value] : headers.items())
      if (value.is_string()) request.headers[name] = value.get<std::string>();
  request.body = std::move(stored.body);
  auto taken = takers(stored.forge, request, stored.at);  // as it was when it came
  if (taken) {
    accept(std::move(*taken), stored.id);
    return true;
  }
  const std::string why = taken.message();
  spdlog::warn("webhook delivery {} from before the restart is dropped: {}",
               escape_control(stored.id), escape_control(why));
  return false;
}

void Service::Impl::show_all() {
  for (auto& rt : repos) {
    if (!rt->api) continue;
    const q::RepoState* state = driver->state(rt->cfg.name);
    if (!state) continue;
    std::vector<forges::PullSummary> all;
    for (const auto& [n, pr] : state->prs)
      if (auto s = forges::summarize(*state, pr, rt->settings.required_checks)) {
        rt->desired[n] = *s;
        all.push_back(*s);
      }
    show(*rt, std::move(all));
  }
}
}  // namespace dmz

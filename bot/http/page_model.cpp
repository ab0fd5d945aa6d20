#include "bot/http/page_model.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "queue/engine.hpp"

namespace dmz::page {

namespace {

using nlohmann::json;

json parse(const EventLogEntry& e) {
  json j = json::parse(e.json, nullptr, /*allow_exceptions=*/false);
  return j.is_object() ? j : json::object();
}

template <class T>
T get(const json& j, const char* key, T fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    return fallback;
  }
}

std::vector<std::string> strings(const json& j, const char* key) {
  std::vector<std::string> out;
  auto it = j.find(key);
  if (it == j.end() || !it->is_array()) return out;
  for (const auto& s : *it)
    if (s.is_string()) out.push_back(s.get<std::string>());
  return out;
}

std::string short_sha(const std::string& sha) { return sha.substr(0, 10); }

bool ended_badly(queue::CheckState s) {
  return s == queue::CheckState::Failure || s == queue::CheckState::Error;
}

std::string list(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "`" : ", `") + n + "`";
  return out;
}

// The policy verdict that stands for each PR and head, from policy_checked events: the one
// under the newest policy epoch, the latest among those. A verdict under an older epoch was
// superseded even if it came last: the engine did not take it, or judged the PR again since.
struct VerdictEvent {
  bool pass = false;
  std::vector<std::string> reasons;
  std::vector<std::string> signers;
  std::vector<std::string> approvers;
  Millis at = 0;
  std::uint64_t epoch = 0;
};
using Verdicts = std::map<std::pair<int, std::string>, VerdictEvent>;

Verdicts verdicts_of(const std::vector<EventLogEntry>& events) {
  Verdicts out;
  for (const auto& e : events) {
    if (e.kind != "policy_checked") continue;
    auto j = parse(e);
    VerdictEvent v{get<bool>(j, "pass", false),
                   strings(j, "reasons"),
                   strings(j, "signers"),
                   strings(j, "approvers"),
                   e.at,
                   get<std::uint64_t>(j, "epoch", 0)};
    auto [it, fresh] =
        out.try_emplace({get<int>(j, "number", 0), get<std::string>(j, "sha", "")}, v);
    if (!fresh && v.epoch >= it->second.epoch) it->second = std::move(v);
  }
  return out;
}

Verdict verdict_of(const queue::PullRequest& pr, const Verdicts& verdicts) {
  Verdict v;
  if (!pr.approval) {
    // A PR refused by the policy keeps its reasons even after its approval is gone.
    if (pr.reason_code == queue::Reason::PolicyFailed) {
      v.state = Verdict::State::Failed;
      v.reasons = pr.details;
      v.signers = pr.signers;
      v.approvers = pr.approvers;
    }
    return v;
  }
  v.approver = pr.approval->approver;
  v.approved_sha = pr.approval->sha;
  v.approved_at = pr.approval->at;
  v.stale = !pr.head.empty() && pr.approval->sha != pr.head;
  auto it = verdicts.find({pr.number, pr.approval->sha});
  if (pr.status == queue::PrStatus::Approved) {
    v.state = Verdict::State::Checking;
    return v;  // who signed and who approved are not known yet
  }
  // Kept with the PR (durable); an older event log may have them where the PR does not.
  v.signers = pr.signers;
  v.approvers = pr.approvers;
  if (it != verdicts.end()) {
    v.state = it->second.pass ? Verdict::State::Passed : Verdict::State::Failed;
    v.reasons = it->second.reasons;
    v.at = it->second.at;
    if (v.signers.empty()) v.signers = it->second.signers;
    if (v.approvers.empty()) v.approvers = it->second.approvers;
  } else if (pr.reason_code == queue::Reason::PolicyFailed) {
    v.state = Verdict::State::Failed;
    v.reasons = pr.details;
  } else if (pr.status != queue::PrStatus::Open) {
    v.state = Verdict::State::Passed;  // queued or beyond: it passed (its event is older)
  }
  return v;
}

// How long each context took to pass on the candidates that reached dmz, newest last.
std::map<std::string, std::vector<Millis>> pass_durations(
    const std::vector<CandidateRecord>& records) {
  std::map<std::string, std::vector<Millis>> out;
  for (const auto& r : records)
    for (const auto& [context, at] : r.passed_at)
      if (r.pushed_at > 0 && at >= r.pushed_at) out[context].push_back(at - r.pushed_at);
  return out;
}

std::optional<Millis> recent_median(const std::vector<Millis>& v, std::size_t window = 10) {
  std::vector<Millis> recent(v.end() - static_cast<std::ptrdiff_t>(std::min(v.size(), window)),
                             v.end());
  return queue::median(std::move(recent));
}

std::vector<Millis> landed_durations(const std::vector<CandidateRecord>& records) {
  std::vector<Millis> out;
  for (const auto& r : records)
    if (r.landed_at > 0 && r.pushed_at > 0 && r.landed_at >= r.pushed_at)
      out.push_back(r.landed_at - r.pushed_at);
  return out;
}

CheckLook look_of(queue::CheckState s) {
  switch (s) {
    case queue::CheckState::Pending:
      return CheckLook::Running;
    case queue::CheckState::Success:
      return CheckLook::Passed;
    case queue::CheckState::Failure:
    case queue::CheckState::Error:
      return CheckLook::Failed;
  }
  return CheckLook::Running;
}

}  // namespace

std::string_view to_string(CheckLook l) {
  switch (l) {
    case CheckLook::Pending:
      return "pending";
    case CheckLook::Running:
      return "running";
    case CheckLook::Passed:
      return "passed";
    case CheckLook::Failed:
      return "failed";
  }
  return "pending";
}

std::string_view to_string(Verdict::State s) {
  switch (s) {
    case Verdict::State::NotApproved:
      return "not approved";
    case Verdict::State::Checking:
      return "checking";
    case Verdict::State::Passed:
      return "passed";
    case Verdict::State::Failed:
      return "failed";
  }
  return "not approved";
}

namespace {

// Whether `e` may have taken candidates off dmz: a failure, a landing, a push, a command, a
// moved master, a timeout (a tick)... Not what every build brings (another candidate's push, a
// check pending, a passing candidate verdict), nor what concerns only PRs outside the train.
// An event it does not know may: a candidate's life is then counted short, never long.
bool may_end_candidates(const EventLogEntry& e, const json& j, bool on_a_candidate) {
  static const std::set<std::string> never{"pr_opened",      "merge_requested", "retry_requested",
                                           "policy_checked", "reply",           "status_requested"};
  if (never.count(e.kind)) return false;
  if (e.kind == "merge_done") return get<std::string>(j, "outcome", "") != "merged";
  if (e.kind == "candidate_checked") return !get<bool>(j, "pass", false);
  if (e.kind == "check_reported")
    return on_a_candidate &&
           get<std::string>(j.value("check", json::object()), "state", "") != "pending";
  return true;
}

}  // namespace

std::vector<CandidateRecord> candidate_records(const std::vector<EventLogEntry>& events,
                                               const queue::RepoState& state) {
  std::vector<CandidateRecord> out;
  std::map<queue::CandidateId, std::size_t> by_id;
  std::map<std::string, std::size_t> by_sha;
  std::size_t unbounded = 0;  // out[unbounded..] have seen no event that may have ended them
  for (const auto& e : events) {
    auto j = parse(e);
    const bool on_a_candidate =
        e.kind == "check_reported" && by_sha.count(get<std::string>(j, "sha", ""));
    if (may_end_candidates(e, j, on_a_candidate)) {
      for (; unbounded < out.size(); ++unbounded) out[unbounded].alive_until = e.at;
    }
    if (e.kind != "merge_done" && e.kind != "check_reported" && e.kind != "master_pushed") continue;
    if (e.kind == "merge_done") {
      if (get<std::string>(j, "outcome", "") != "merged") continue;
      CandidateRecord r;
      r.id = get<queue::CandidateId>(j, "candidate", 0);
      r.sha = get<std::string>(j, "sha", "");
      r.pushed_at = e.at;
      by_id[r.id] = out.size();
      by_sha[r.sha] = out.size();
      out.push_back(std::move(r));
    } else if (e.kind == "check_reported") {
      auto it = by_sha.find(get<std::string>(j, "sha", ""));
      if (it == by_sha.end()) continue;
      auto c = j.value("check", json::object());
      queue::Check check;
      check.context = get<std::string>(c, "context", "");
      check.state =
          queue::parse_check_state(get<std::string>(c, "state", "")).value_or(check.state);
      check.description = get<std::string>(c, "description", "");
      check.url = get<std::string>(c, "url", "");
      check.at = e.at;
      auto& r = out[it->second];
      if (check.state == queue::CheckState::Success && !r.passed_at.count(check.context))
        r.passed_at[check.context] = e.at;
      r.checks[check.context] = std::move(check);
    } else if (get<bool>(j, "ok", false)) {
      auto it = by_id.find(get<queue::CandidateId>(j, "candidate", 0));
      if (it != by_id.end()) out[it->second].landed_at = e.at;
    }
  }
  std::set<queue::CandidateId> in_train;
  for (const auto& c : state.train) in_train.insert(c.id);
  for (auto& r : out) r.ended = !in_train.count(r.id);
  return out;
}

std::vector<Warning> warnings(const WarningInput& in) {
  std::vector<Warning> out;
  const auto& h = in.health;
  if (!h.loaded)
    out.push_back(
        {"not-served", "this repository is not served" +
                           (h.last_error.empty() ? std::string(".") : ": " + h.last_error)});
  else if (!h.remote_ok && h.fetch_failures >= in.fetch_failures)
    out.push_back({"remote-unreachable",
                   "the remote has not answered " + std::to_string(h.fetch_failures) +
                       " fetches in a row: " + (h.last_error.empty() ? "no error" : h.last_error) +
                       ". Check its URL, credentials and network."});

  // The newest `window` settled candidates: CI had its chance on them. One that ended counts
  // only if it landed, something reported on it or it lived `grace`: a candidate cut seconds
  // after its push (a train's speculation, a cancel) says nothing of a CI that reports only
  // when it is done.
  auto settled_one = [&](const CandidateRecord& r) {
    if (!r.ended) return r.pushed_at > 0 && in.now - r.pushed_at >= in.grace;
    return r.landed_at > 0 || !r.checks.empty() ||
           (r.alive_until > 0 && r.alive_until - r.pushed_at >= in.grace);
  };
  std::vector<const CandidateRecord*> settled;
  for (auto it = in.candidates.rbegin(); it != in.candidates.rend(); ++it) {
    if (settled.size() == in.window) break;
    if (settled_one(*it)) settled.push_back(&*it);
  }
  if (in.window > 0 && settled.size() == in.window) {
    for (const auto& context : in.required_checks) {
      bool reported = false, all_failed = true;
      std::set<std::string> others;
      for (const auto* r : settled) {
        auto it = r->checks.find(context);
        if (it != r->checks.end()) {
          reported = true;
          if (!ended_badly(it->second.state)) all_failed = false;
        }
        for (const auto& [name, check] : r->checks)
          if (std::find(in.required_checks.begin(), in.required_checks.end(), name) ==
              in.required_checks.end())
            others.insert(name);
      }
      const std::string n = std::to_string(in.window);
      if (!reported) {
        std::string text = "`" + context + "` never reports on `" + in.dmz_branch +
                           "` (none of the last " + n +
                           " candidates): does your CI build on push to it?";
        if (!others.empty())
          text += " It reported " + list({others.begin(), others.end()}) +
                  " instead: is the required name spelled the same?";
        out.push_back({"check-never-reports", text});
      } else if (all_failed) {
        out.push_back(
            {"check-always-fails", "`" + context + "` failed on each of the last " + n +
                                       " candidates: is `master` itself broken, or the CI job?"});
      }
    }
  }
  if (h.outbox_pending >= in.outbox_backlog)
    out.push_back({"outbox-backlog", std::to_string(h.outbox_pending) +
                                         " notifications wait to be delivered to the forge: "
                                         "check its API token and its state."});
  return out;
}

std::string strategy_name(const queue::Settings& s) {
  auto n = [](std::size_t v) { return std::to_string(v); };
  std::string out;
  switch (s.strategy) {
    case queue::Strategy::Serial:
      if (s.max_train <= 1 && s.max_batch <= 1) {
        out = "serial";
      } else {
        out = "train of " + n(std::max<std::size_t>(1, s.max_train));
        if (s.max_batch > 1) out += ", batches of " + n(s.max_batch);
      }
      break;
    case queue::Strategy::Batch:
      out = "batches of " + n(s.max_batch) + ", bisected on failure";
      if (s.max_train > 1) out += ", " + n(s.max_train) + " at once";
      break;
    case queue::Strategy::Train:
      out = "train, window " + n(s.window_start) + " (" + n(s.window_floor) + ".." +
            n(s.window_max) + ")";
      if (s.max_batch > 1) out += ", batches of " + n(s.max_batch);
      break;
    case queue::Strategy::Adaptive:
      out = "adaptive, window " + n(s.window_start) + " (" + n(s.window_floor) + ".." +
            n(s.window_max) + ")";
      if (s.lanes == queue::Lanes::Paths) {
        out += ", lanes by paths";
      } else if (s.lanes == queue::Lanes::Groups) {
        out += ", lanes by path groups";
        std::string names;
        for (const auto& g : s.path_groups) names += (names.empty() ? "" : ", ") + g.name;
        if (!names.empty()) out += " (" + names + ")";
      }
      break;
  }
  if (s.strategy != queue::Strategy::Serial && s.flaky_retries > 0)
    out += ", flaky checks built again " + n(static_cast<std::size_t>(s.flaky_retries)) +
           (s.flaky_retries == 1 ? " time" : " times");
  return out;
}

std::vector<Lane> lanes_of(const std::vector<queue::Candidate>& train,
                           const queue::Settings& settings) {
  std::vector<Lane> out;
  auto lane = [&](std::uint64_t id, bool probe) -> Lane& {
    for (auto& l : out)
      if (l.probes == probe && (probe || l.id == id)) return l;
    Lane l;
    l.id = probe ? 0 : id;
    l.probes = probe;
    if (probe)
      l.name =
          "probes (each PR built before it joins the chain, with the PRs ahead it may conflict "
          "with)";
    else if (id == 0)
      l.name = "main lane";
    else if (settings.lanes == queue::Lanes::Groups && id <= settings.path_groups.size())
      l.name = "lane `" + settings.path_groups[id - 1].name + "`";
    else
      l.name = "lane " + std::to_string(id);
    out.push_back(std::move(l));
    return out.back();
  };
  for (std::size_t i = 0; i < train.size(); ++i)
    lane(train[i].lane, train[i].probe).candidates.push_back(i);
  if (out.size() == 1 && !out.front().probes && out.front().id == 0) out.clear();  // one chain
  return out;
}

namespace {

struct Context {
  const RepoInput& in;
  std::vector<CandidateRecord> records;
  Verdicts verdicts;
};

Context context_of(const RepoInput& in) {
  static const std::vector<EventLogEntry> none;
  const auto& events = in.events ? *in.events : none;
  return Context{in, candidate_records(events, in.view->state), verdicts_of(events)};
}

RepoSummary summary_of(const Context& cx) {
  const RepoInput& in = cx.in;
  const RepoView& v = *in.view;
  RepoSummary s;
  s.name = in.name;
  s.forge = in.forge;
  s.strategy = strategy_name(v.settings);
  s.master_branch = in.master_branch;
  s.dmz_branch = in.dmz_branch;
  s.master = v.state.master;
  s.candidates = v.state.train.size();
  for (const auto& [n, pr] : v.state.prs)
    if (pr.status == queue::PrStatus::Queued || pr.candidate) ++s.queue_length;
  const auto& outcomes = in.outcomes ? *in.outcomes : v.recent;
  for (const auto& h : outcomes)
    if (h.status == queue::PrStatus::Merged) {
      s.last_landing = h;
      break;
    }
  s.health = v.health;
  for (auto it = cx.records.rbegin(); it != cx.records.rend() && !s.last_check; ++it) {
    const queue::Check* newest = nullptr;
    for (const auto& [name, c] : it->checks)
      if (!newest || c.at >= newest->at) newest = &c;
    if (newest) s.last_check = LastCheck{newest->context, newest->state, it->sha, newest->at};
  }
  WarningInput w;
  w.required_checks = v.settings.required_checks;
  w.dmz_branch = in.dmz_branch;
  w.candidates = cx.records;
  w.health = v.health;
  w.now = in.now;
  s.warnings = warnings(w);
  return s;
}

// The expected landings, from `memo` when there is one.
std::map<int, Millis> landings(const RepoView& v, const std::vector<Millis>& landed, Millis now,
                               EtaMemo* memo) {
  return memo ? memo->expected_landings(v.state, v.settings, landed, now)
              : queue::expected_landings(v.state, v.settings, landed, now);
}

}  // namespace

RepoSummary build_summary(const RepoInput& in) { return summary_of(context_of(in)); }

std::map<int, Millis> expected_landings(const RepoView& view,
                                        const std::vector<EventLogEntry>& events, Millis now,
                                        EtaMemo* memo) {
  return landings(view, landed_durations(candidate_records(events, view.state)), now, memo);
}

RepoPage build_repo_page(const RepoInput& in) {
  Context cx = context_of(in);
  const RepoView& v = *in.view;
  RepoPage page;
  page.summary = summary_of(cx);
  page.now = in.now;
  page.outcomes = in.outcomes ? *in.outcomes : v.recent;
  if (in.events && !in.events->empty()) page.last_seq = in.events->back().seq;

  const auto order = queue::queue_order(v.state);
  const std::vector<Millis> landed = landed_durations(cx.records);
  page.pace = queue::pace_of(v.state, v.settings, landed);
  page.required_checks = v.settings.required_checks;
  page.lanes = lanes_of(v.state.train, v.settings);
  const std::map<int, Millis> etas = landings(v, landed, in.now, in.eta_memo);
  auto row = [&](const queue::PullRequest& pr) {
    PrRow r;
    r.pr = pr;
    auto at = std::find(order.begin(), order.end(), pr.number);
    if (at != order.end()) r.position = static_cast<std::size_t>(at - order.begin()) + 1;
    if (auto e = etas.find(pr.number); e != etas.end()) r.eta = e->second;
    r.verdict = verdict_of(pr, cx.verdicts);
    return r;
  };

  const auto durations = pass_durations(cx.records);
  for (const auto& c : v.state.train) {
    CandidateRow cr;
    cr.candidate = c;
    for (int n : c.prs)
      if (auto it = v.state.prs.find(n); it != v.state.prs.end()) cr.prs.push_back(row(it->second));
    if (c.pushed_at > 0) cr.elapsed = std::max<Millis>(0, in.now - c.pushed_at);
    if (page.pace) cr.expected = page.pace->per_candidate;
    if (!c.prs.empty())
      if (auto e = etas.find(c.prs.front()); e != etas.end()) cr.eta = e->second;
    auto check_row = [&](const std::string& context, bool required) {
      CheckRow k;
      k.context = context;
      k.required = required;
      auto it = c.checks.find(context);
      Millis until = in.now;
      if (it != c.checks.end()) {
        k.look = look_of(it->second.state);
        k.description = it->second.description;
        k.url = it->second.url;
        k.at = it->second.at;
        if (k.look == CheckLook::Passed || k.look == CheckLook::Failed) until = it->second.at;
      }
      if (c.pushed_at > 0) k.elapsed = std::max<Millis>(0, until - c.pushed_at);
      if (auto d = durations.find(context); d != durations.end())
        k.expected = recent_median(d->second);
      cr.checks.push_back(std::move(k));
    };
    for (const auto& context : v.settings.required_checks) check_row(context, true);
    for (const auto& [context, check] : c.checks)
      if (std::find(v.settings.required_checks.begin(), v.settings.required_checks.end(),
                    context) == v.settings.required_checks.end())
        check_row(context, false);
    page.train.push_back(std::move(cr));
  }
  for (int n : order) page.waiting.push_back(row(v.state.prs.at(n)));
  for (const auto& [n, pr] : v.state.prs)
    if (pr.status != queue::PrStatus::Queued && !pr.candidate) page.others.push_back(row(pr));
  return page;
}

PullPage build_pull_page(const std::string& repo_name, const PullView& view, const RepoPage& repo) {
  PullPage p;
  p.repo = repo_name;
  p.view = view;
  p.now = repo.now;
  p.last_seq = repo.last_seq;
  p.row.pr = view.pr;
  p.row.position = view.position;
  // The repository's page model knows the verdict, position and ETA of a PR in the queue.
  auto from = [&](const std::vector<PrRow>& rows) {
    for (const auto& r : rows)
      if (r.pr.number == view.pr.number) {
        p.row = r;
        return true;
      }
    return false;
  };
  bool found = from(repo.waiting) || from(repo.others);
  for (const auto& c : repo.train)
    for (const auto& r : c.prs)
      if (r.pr.number == view.pr.number) {
        p.row = r;
        p.candidate = c;
        found = true;
      }
  const Verdicts standing = verdicts_of(view.events);
  if (!found) p.row.verdict = verdict_of(view.pr, standing);

  // The candidates it was in (the store files their events under each of their PRs), with the
  // checks reported on them.
  queue::RepoState building;
  for (const auto& c : repo.train) building.train.push_back(c.candidate);
  const auto records = candidate_records(view.events, building);
  std::map<queue::CandidateId, const CandidateRecord*> record_of;
  std::set<std::string> candidate_shas;
  for (const auto& r : records) {
    record_of[r.id] = &r;
    candidate_shas.insert(r.sha);
  }
  auto required = [&](const std::string& context) {
    return std::find(repo.required_checks.begin(), repo.required_checks.end(), context) !=
           repo.required_checks.end();
  };
  auto checks_of = [&](const CandidateRecord& r) {
    std::vector<CheckRow> rows;
    auto add = [&](const std::string& context, const queue::Check* c) {
      CheckRow k;
      k.context = context;
      k.required = required(context);
      if (c) {
        k.look = look_of(c->state);
        k.description = c->description;
        k.url = c->url;
        k.at = c->at;
        if (r.pushed_at > 0) k.elapsed = std::max<Millis>(0, c->at - r.pushed_at);
      }
      rows.push_back(std::move(k));
    };
    for (const auto& context : repo.required_checks) {
      auto it = r.checks.find(context);
      add(context, it == r.checks.end() ? nullptr : &it->second);
    }
    for (const auto& [context, c] : r.checks)
      if (!required(context)) add(context, &c);
    return rows;
  };
  const std::string dmz = repo.summary.dmz_branch.empty() ? "dmz" : repo.summary.dmz_branch;
  const std::string master =
      repo.summary.master_branch.empty() ? "master" : repo.summary.master_branch;

  for (const auto& e : view.events) {
    auto j = parse(e);
    TimelineEntry t;
    t.at = e.at;
    if (e.kind == "check_reported" && candidate_shas.count(get<std::string>(j, "sha", "")))
      continue;  // shown with its candidate
    const auto sha = short_sha(get<std::string>(j, "sha", get<std::string>(j, "head", "")));
    if (e.kind == "pr_opened") {
      t.what = "registered from `" + get<std::string>(j, "branch", "") + "` at `" + sha + "`";
      auto author = get<std::string>(j, "author", "");
      if (!author.empty()) t.what += " by " + author;
    } else if (e.kind == "pr_pushed") {
      t.what = "pushed `" + sha + "`";
      if (get<bool>(j, "rewritten", false)) {
        t.what += ", rewriting published history";
        t.reason_code = "rewritten-history";
      } else {
        t.reason_code = "new-push";
      }
    } else if (e.kind == "pr_closed") {
      t.what = "closed";
      t.reason_code = "closed";
    } else if (e.kind == "merge_requested") {
      // A merge master's request; the policy's approvals are in its verdict (policy_checked).
      t.what = "merge requested by " + get<std::string>(j, "approver", "?") + " at `" + sha + "`";
    } else if (e.kind == "cancel_requested") {
      t.what = "cancelled by " + get<std::string>(j, "by", "?");
      t.reason_code = "cancelled";
    } else if (e.kind == "retry_requested") {
      t.what = "retried by " + get<std::string>(j, "by", "?");
    } else if (e.kind == "policy_checked") {
      const bool pass = get<bool>(j, "pass", false);
      t.what = std::string("policy verdict at `") + sha + "`: " + (pass ? "passed" : "failed");
      if (const auto approvers = strings(j, "approvers"); !approvers.empty())
        t.what += "; approved (policy): " + list(approvers);
      auto stands = standing.find({view.pr.number, get<std::string>(j, "sha", "")});
      const bool superseded =
          stands != standing.end() && get<std::uint64_t>(j, "epoch", 0) < stands->second.epoch;
      if (superseded)
        t.what += " (superseded: judged again under a newer policy)";
      else if (!pass)
        t.reason_code = "policy-failed";
      t.details = strings(j, "reasons");
    } else if (e.kind == "merge_done") {
      const auto id = std::to_string(get<queue::CandidateId>(j, "candidate", 0));
      const auto outcome = get<std::string>(j, "outcome", "");
      if (outcome == "merged") {
        t.what = "in candidate " + id + ", pushed to `" + dmz + "` at `" + sha + "`";
        if (auto r = record_of.find(get<queue::CandidateId>(j, "candidate", 0));
            r != record_of.end())
          t.checks = checks_of(*r->second);
      } else if (outcome == "conflict") {
        const int culprit = get<int>(j, "culprit", 0);
        t.what = "candidate " + id + ": merge conflict" +
                 (culprit == view.pr.number ? std::string(" in its merge")
                                            : " in #" + std::to_string(culprit) + "'s merge");
        if (culprit == view.pr.number) t.reason_code = "merge-conflict";
        t.details = strings(j, "conflicts");
      } else {
        t.what = "candidate " + id +
                 ": merging failed, tried again later: " + get<std::string>(j, "message", "");
      }
    } else if (e.kind == "candidate_checked") {
      const bool pass = get<bool>(j, "pass", false);
      t.what = "candidate " + std::to_string(get<queue::CandidateId>(j, "candidate", 0)) +
               "'s own merge commits " + (pass ? "passed" : "failed") + " the policy";
      if (!pass) t.reason_code = "candidate-policy-failed";
      t.details = strings(j, "reasons");
    } else if (e.kind == "master_pushed") {
      const auto id = get<queue::CandidateId>(j, "candidate", 0);
      if (get<bool>(j, "ok", false)) {
        auto r = record_of.find(id);
        t.what = "candidate " + std::to_string(id) + " landed: `" + master + "` moved to `" +
                 (r != record_of.end() ? short_sha(r->second->sha) : std::string("?")) + "`";
      } else {
        t.what = "landing candidate " + std::to_string(id) +
                 " failed: " + get<std::string>(j, "message", "");
      }
    } else if (e.kind == "check_reported") {
      auto c = j.value("check", json::object());
      t.what = "`" + get<std::string>(c, "context", "") + "` " + get<std::string>(c, "state", "") +
               " on `" + sha + "`";
    } else {
      t.what = e.kind;
    }
    p.timeline.push_back(std::move(t));
  }
  for (const auto& h : view.outcomes) {
    TimelineEntry t;
    t.at = h.at;
    t.what = std::string(queue::to_string(h.status)) + (h.message.empty() ? "" : ": " + h.message);
    t.reason_code = std::string(queue::to_string(h.reason));
    t.details = h.details;
    p.timeline.push_back(std::move(t));
  }
  // A PR that was sent back (or failed and is still hot) shows its current reason too.
  if (!view.archived && view.pr.reason_code != queue::Reason::None && view.outcomes.empty() &&
      !view.pr.reason.empty()) {
    TimelineEntry t;
    t.at = view.pr.finished_at > 0 ? view.pr.finished_at : repo.now;
    t.what = std::string(queue::to_string(view.pr.status)) + ": " + view.pr.reason;
    t.reason_code = std::string(queue::to_string(view.pr.reason_code));
    t.details = view.pr.details;
    p.timeline.push_back(std::move(t));
  }
  std::stable_sort(p.timeline.begin(), p.timeline.end(),
                   [](const TimelineEntry& a, const TimelineEntry& b) { return a.at < b.at; });
  return p;
}

}  // namespace dmz::page

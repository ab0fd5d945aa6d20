#include "bot/sim/replay.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

namespace dmz::sim {
namespace {

using nlohmann::json;

std::string top_dir(const std::string& path) {
  auto slash = path.find('/');
  return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
}

constexpr std::size_t kPage = 10'000;  // events or outcomes read at a time

// One approval as recorded.
struct Arrival {
  int number = 0;
  Millis approved = 0;
  std::string author, head;
  int priority = 0;
  std::vector<std::string> paths;
  bool red = false;  // its head's own CI failed (before or after the approval)
};

// A candidate's build as recorded: when it reached dmz, and the newest terminal state of each
// of its checks (a check built again counts as it ended last).
struct Build {
  Millis pushed = 0;
  Millis decided = 0;                  // the newest terminal check (0: none yet)
  std::map<std::string, bool> passed;  // by context
  bool failed() const {
    return std::any_of(passed.begin(), passed.end(), [](const auto& c) { return !c.second; });
  }
};

// The event log folded oldest first, one event at a time.
class EventFold {
 public:
  std::vector<Arrival> arrivals;        // in log order
  std::map<std::string, Build> builds;  // by candidate sha

  void take(const EventLogEntry& e) {
    auto j = json::parse(e.json, nullptr, false);
    if (!j.is_object()) return;
    try {
      if (e.kind == "pr_opened") authors_[j.at("number").get<int>()] = j.value("author", "");
      if (e.kind == "priority_requested") priority(j);
      if (e.kind == "merge_requested") approval(j);
      if (e.kind == "policy_checked") policy(j);
      if (e.kind == "merge_done" && j.value("outcome", "") == "merged")
        builds[j.at("sha").get<std::string>()].pushed = j.at("at").get<Millis>();
      if (e.kind == "check_reported") check(j);
    } catch (const json::exception&) {
      // an event of an older shape: skipped
    }
  }

 private:
  Arrival* newest(int number) {
    auto it = newest_.find(number);
    return it == newest_.end() ? nullptr : &arrivals[it->second];
  }
  void priority(const json& j) {
    const int n = j.at("number").get<int>();
    priorities_[n] = j.at("priority").get<int>();
    if (Arrival* a = newest(n)) a->priority = priorities_[n];
  }
  void approval(const json& j) {
    Arrival a;
    a.number = j.at("number").get<int>();
    a.approved = j.at("at").get<Millis>();
    a.head = j.at("sha").get<std::string>();
    a.priority = priorities_.count(a.number) ? priorities_[a.number] : 0;
    a.author = authors_.count(a.number) ? authors_[a.number] : "unknown";
    a.red = red_heads_.count(a.head) > 0;
    newest_[a.number] = arrivals.size();
    arrivals.push_back(std::move(a));
  }
  void policy(const json& j) {
    Arrival* a = newest(j.at("number").get<int>());
    if (a && j.contains("paths")) a->paths = j.at("paths").get<std::vector<std::string>>();
  }
  void check(const json& j) {
    const std::string sha = j.at("sha").get<std::string>();
    const std::string state = j.at("check").at("state").get<std::string>();
    const bool failed = state == "failure" || state == "error";
    if (auto b = builds.find(sha); b != builds.end()) {
      if (!failed && state != "success") return;  // still running
      b->second.passed[j.at("check").at("context").get<std::string>()] = !failed;
      b->second.decided = j.at("at").get<Millis>();
    } else if (failed) {
      red_heads_.insert(sha);   // a PR head's own CI, before its approval
      for (auto& a : arrivals)  // or after it
        if (a.head == sha) a.red = true;
    }
  }

  std::map<int, std::string> authors_;  // from pr_opened
  std::map<int, int> priorities_;       // from priority_requested (the latest)
  std::map<int, std::size_t> newest_;   // PR -> its newest approval in `arrivals`
  std::set<std::string> red_heads_;     // PR heads whose own CI failed
};

Result<EventFold> fold_events(Store& store, const std::string& repo) {
  EventFold fold;
  for (std::int64_t after = 0;;) {
    auto page = store.events_after(repo, after, kPage);
    if (!page) return page.status().prefixed("store: ").error();
    for (const auto& e : *page) fold.take(e);
    if (page->size() < kPage) return fold;
    after = page->back().seq;
  }
}

// Every recorded outcome, by PR, oldest first.
Result<std::map<int, std::vector<HistoryEntry>>> outcomes_by_pr(Store& store,
                                                                const std::string& repo) {
  std::map<int, std::vector<HistoryEntry>> out;
  for (std::int64_t before = 0;;) {
    auto page = store.history(repo, before, kPage);  // newest first
    if (!page) return page.status().prefixed("store: ").error();
    for (auto& h : *page) out[h.number].push_back(std::move(h));
    if (page->size() < kPage) break;
    before = page->back().seq;
  }
  for (auto& [n, v] : out) std::reverse(v.begin(), v.end());
  return out;
}

// How each approval ended: its PR's first outcome since, one no earlier approval ended with
// and not after the next approval (none: still in the queue, or its approval was dropped).
std::map<const Arrival*, const HistoryEntry*> endings(
    const std::vector<const Arrival*>& order,
    const std::map<int, std::vector<HistoryEntry>>& outcomes) {
  std::map<int, std::vector<const Arrival*>> by_pr;
  for (const Arrival* a : order) by_pr[a->number].push_back(a);
  std::map<const Arrival*, const HistoryEntry*> out;
  for (const auto& [n, arrivals] : by_pr) {
    auto it = outcomes.find(n);
    if (it == outcomes.end()) continue;
    const auto& ends = it->second;
    std::size_t next = 0;
    for (std::size_t i = 0; i < arrivals.size(); ++i) {
      const Millis until =
          i + 1 < arrivals.size() ? arrivals[i + 1]->approved : std::numeric_limits<Millis>::max();
      while (next < ends.size() && ends[next].at < arrivals[i]->approved) ++next;
      if (next < ends.size() && ends[next].at <= until) out[arrivals[i]] = &ends[next++];
    }
  }
  return out;
}

bool culprit(const HistoryEntry* h) {
  return h && h->status == queue::PrStatus::Failed &&
         (h->reason == queue::Reason::BuildFailed || h->reason == queue::Reason::CheckTimeout);
}

// Cancelled or closed, refused by the policy, conflicting textually, unmergeable: nothing a
// strategy would change, so not replayed.
bool left_out(const HistoryEntry* h) {
  return h && (h->status == queue::PrStatus::Cancelled ||
               (h->status == queue::PrStatus::Failed && !culprit(h)));
}

// When a culprit was on dmz: from the first merge of a candidate of its own (its timeline
// names those) until it was ejected. A chain stacks every candidate merged meanwhile on it, so
// a build that failed in that time held it (a probe beside it is counted so too: the log
// records no candidate's base).
struct OnDmz {
  Millis from = 0, until = 0;
};

Result<std::optional<OnDmz>> on_dmz(Store& store, const std::string& repo, const Arrival& a,
                                    const HistoryEntry& ended) {
  auto events = store.pr_events(repo, a.number, kPage);
  if (!events) return events.status().prefixed("store: ").error();
  for (const auto& e : *events)  // oldest first
    if (e.kind == "merge_done" && e.at >= a.approved && e.at <= ended.at)
      return std::optional<OnDmz>(OnDmz{e.at, ended.at});
  return std::optional<OnDmz>();
}

bool behind_a_culprit(const Build& b, const std::vector<OnDmz>& culprits) {
  return std::any_of(culprits.begin(), culprits.end(),
                     [&](const OnDmz& c) { return b.pushed >= c.from && b.decided <= c.until; });
}

// The share of decided builds that failed holding no culprit: flakes, in [0, 1]; `otherwise`
// when no build was decided.
double flake_rate(const std::map<std::string, Build>& builds, const std::vector<OnDmz>& culprits,
                  double otherwise) {
  int decided = 0, flaky = 0;
  for (const auto& [sha, b] : builds) {
    if (b.passed.empty()) continue;
    ++decided;
    flaky += b.failed() && !behind_a_culprit(b, culprits);
  }
  return decided ? std::clamp(static_cast<double>(flaky) / decided, 0.0, 1.0) : otherwise;
}

// How long each decided build took, from its push to its verdict (at least a second).
std::vector<Millis> build_durations(const std::map<std::string, Build>& builds) {
  std::vector<Millis> out;
  for (const auto& [sha, b] : builds)
    if (!b.passed.empty()) out.push_back(std::max<Millis>(1000, b.decided - b.pushed));
  return out;
}

}  // namespace

Workload Replay::workload(std::uint64_t seed) const {
  Workload w = Workload::from_prs(options, seed, prs);
  if (!durations.empty()) w.use_durations(durations);
  return w;
}

Result<Replay> replay_from(Store& store, const std::string& repo, const WorkloadOptions& base) {
  auto fold = fold_events(store, repo);
  if (!fold) return fold.error();
  auto outcomes = outcomes_by_pr(store, repo);
  if (!outcomes) return outcomes.error();

  Replay r;
  r.options = base;
  std::vector<const Arrival*> order;
  for (const auto& a : fold->arrivals) order.push_back(&a);
  std::stable_sort(order.begin(), order.end(),
                   [](const Arrival* x, const Arrival* y) { return x->approved < y->approved; });
  std::map<std::string, int> target_ids;  // top-level directories as build targets
  std::vector<OnDmz> culprits;            // when each culprit was on dmz
  const auto ended_with = endings(order, *outcomes);
  int bad_count = 0;
  for (const Arrival* a : order) {
    auto e = ended_with.find(a);
    const HistoryEntry* ended = e == ended_with.end() ? nullptr : e->second;
    if (left_out(ended)) {
      ++r.left_out;
      continue;
    }
    SimPr p;
    p.number = static_cast<int>(r.prs.size()) + 1;
    p.approved_at = a->approved;  // made relative to the first below
    p.author = a->author;
    p.priority = a->priority;
    std::set<int> targets;
    for (const auto& path : a->paths)
      targets.insert(
          target_ids.emplace(top_dir(path), static_cast<int>(target_ids.size())).first->second);
    p.targets.assign(targets.begin(), targets.end());
    p.bad = culprit(ended);
    p.precheck_red = a->red;
    if (p.bad) {
      ++bad_count;
      auto when = on_dmz(store, repo, *a, *ended);
      if (!when) return when.error();
      if (*when) culprits.push_back(**when);
    }
    r.prs.push_back(std::move(p));
    r.numbers.push_back(a->number);
  }
  if (r.prs.empty()) return not_found("no recorded approvals for " + repo);
  const Millis first = r.prs.front().approved_at;
  for (auto& p : r.prs) p.approved_at -= first;

  r.options.hours = std::max(1.0 / 60, static_cast<double>(r.prs.back().approved_at) / kHour);
  r.options.rate = static_cast<double>(r.prs.size()) / r.options.hours;
  r.options.fail = static_cast<double>(bad_count) / static_cast<double>(r.prs.size());
  r.options.flake = flake_rate(fold->builds, culprits, base.flake);
  std::vector<Millis> durations = build_durations(fold->builds);
  r.options.targets = std::max(1, static_cast<int>(target_ids.size()));
  if (!durations.empty()) {
    std::vector<double> logs;
    for (Millis d : durations) logs.push_back(std::log(static_cast<double>(d) / kMinute));
    std::sort(logs.begin(), logs.end());
    const double median = logs[logs.size() / 2];
    double ss = 0;
    for (double l : logs) ss += (l - median) * (l - median);
    r.options.ci_median_minutes = std::exp(median);
    r.options.ci_sigma = logs.size() > 1 ? std::sqrt(ss / static_cast<double>(logs.size() - 1)) : 0;
  }
  r.durations = std::move(durations);
  return r;
}

Result<Replay> load_replay(const std::string& data_dir, const std::string& repo,
                           const WorkloadOptions& base) {
  const auto file = std::filesystem::path(data_dir) / "dmzbot.db";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec))
    return not_found("no database at " + file.string());
  auto store = open_sqlite_store(file);
  if (!store) return store.status().prefixed(file.string() + ": ").error();
  return replay_from(**store, repo, base);
}

}  // namespace dmz::sim

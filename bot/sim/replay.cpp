#include "bot/sim/replay.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

namespace dmz::sim {
namespace {

using nlohmann::json;

std::string top_dir(const std::string& path) {
  auto slash = path.find('/');
  return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
}

}  // namespace

Workload Replay::workload(std::uint64_t seed) const {
  Workload w = Workload::from_prs(options, seed, prs);
  if (!durations.empty()) w.use_durations(durations);
  return w;
}

Result<Replay> replay_from(Store& store, const std::string& repo, const WorkloadOptions& base) {
  constexpr std::size_t kAll = std::size_t{1} << 40;
  auto events = store.events(repo, kAll);
  if (!events) return events.status().prefixed("store: ").error();
  auto history = store.history(repo, 0, kAll);
  if (!history) return history.status().prefixed("store: ").error();

  struct Seen {
    Millis approved = 0;
    std::string author, head;
    int priority = 0;
    std::vector<std::string> paths;
    bool red = false;
  };
  std::map<int, Seen> prs;               // by recorded number, first approval only
  std::map<int, std::string> authors;    // from pr_opened
  std::map<int, int> priorities;         // from priority_requested (the latest)
  std::map<std::string, Millis> pushed;  // candidate sha -> when it reached dmz
  std::set<std::string> decided;         // candidate shas whose build verdict was counted
  std::set<std::string> red_heads;       // PR heads whose own CI failed (maybe before approval)
  std::vector<Millis> durations;
  int builds = 0, failed_builds = 0;
  for (const auto& e : *events) {
    auto j = json::parse(e.json, nullptr, false);
    if (!j.is_object()) continue;
    try {
      if (e.kind == "pr_opened") {
        authors[j.at("number").get<int>()] = j.value("author", "");
      } else if (e.kind == "priority_requested") {
        const int n = j.at("number").get<int>();
        priorities[n] = j.at("priority").get<int>();
        if (auto it = prs.find(n); it != prs.end()) it->second.priority = priorities[n];
      } else if (e.kind == "merge_requested") {
        const int n = j.at("number").get<int>();
        if (prs.count(n)) continue;
        Seen s;
        s.approved = j.at("at").get<Millis>();
        s.head = j.at("sha").get<std::string>();
        s.priority = priorities.count(n) ? priorities[n] : 0;
        s.author = authors.count(n) ? authors[n] : "unknown";
        s.red = red_heads.count(s.head) > 0;
        prs.emplace(n, std::move(s));
      } else if (e.kind == "policy_checked") {
        auto it = prs.find(j.at("number").get<int>());
        if (it != prs.end() && j.contains("paths"))
          it->second.paths = j.at("paths").get<std::vector<std::string>>();
      } else if (e.kind == "merge_done") {
        if (j.value("outcome", "") == "merged")
          pushed[j.at("sha").get<std::string>()] = j.at("at").get<Millis>();
      } else if (e.kind == "check_reported") {
        const std::string sha = j.at("sha").get<std::string>();
        const std::string state = j.at("check").at("state").get<std::string>();
        const bool terminal = state == "success" || state == "failure" || state == "error";
        if (auto p = pushed.find(sha); p != pushed.end()) {
          if (terminal && decided.insert(sha).second) {
            durations.push_back(std::max<Millis>(1000, j.at("at").get<Millis>() - p->second));
            ++builds;
            failed_builds += state != "success";
          }
        } else if (state == "failure" || state == "error") {
          red_heads.insert(sha);    // a PR head's own CI, before its approval
          for (auto& [n, s] : prs)  // or after it
            if (s.head == sha) s.red = true;
        }
      }
    } catch (const json::exception&) {
      continue;  // an event of an older shape: skip it
    }
  }
  if (prs.empty()) return not_found("no recorded approvals for " + repo);

  // A PR was bad if its first outcome failed it as the culprit of a build.
  std::map<int, bool> bad;
  for (auto h = history->rbegin(); h != history->rend(); ++h) {  // oldest first
    if (bad.count(h->number)) continue;
    bad[h->number] =
        h->status == queue::PrStatus::Failed &&
        (h->reason == queue::Reason::BuildFailed || h->reason == queue::Reason::CheckTimeout);
  }

  Replay r;
  r.options = base;
  std::vector<std::pair<Millis, int>> order;
  for (const auto& [n, s] : prs) order.emplace_back(s.approved, n);
  std::sort(order.begin(), order.end());
  const Millis first = order.front().first;
  std::map<std::string, int> target_ids;  // top-level directories as build targets
  int bad_count = 0;
  for (const auto& [at, n] : order) {
    const Seen& s = prs.at(n);
    SimPr p;
    p.number = static_cast<int>(r.prs.size()) + 1;
    p.approved_at = at - first;
    p.author = s.author;
    p.priority = s.priority;
    std::set<int> targets;
    for (const auto& path : s.paths)
      targets.insert(
          target_ids.emplace(top_dir(path), static_cast<int>(target_ids.size())).first->second);
    p.targets.assign(targets.begin(), targets.end());
    p.bad = bad.count(n) && bad[n];
    p.precheck_red = s.red;
    bad_count += p.bad;
    r.prs.push_back(std::move(p));
    r.numbers.push_back(n);
  }
  r.options.hours = std::max(1.0 / 60, static_cast<double>(order.back().first - first) / kHour);
  r.options.rate = static_cast<double>(r.prs.size()) / r.options.hours;
  r.options.fail = static_cast<double>(bad_count) / static_cast<double>(r.prs.size());
  // Builds that failed beyond what the culprits explain were flakes (at least 0).
  r.options.flake =
      builds ? std::max(0.0, static_cast<double>(failed_builds - bad_count) / builds) : base.flake;
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

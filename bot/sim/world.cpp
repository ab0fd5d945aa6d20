#include "bot/sim/world.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <queue>

#include "base/clock.hpp"
#include "bot/driver/driver.hpp"
#include "bot/sim/ledger.hpp"
#include "bot/sim/report.hpp"
#include "bot/store/memory_store.hpp"
#include "queue/eta.hpp"
#include "queue/json.hpp"

namespace dmz::sim {
namespace {

namespace q = queue;
constexpr const char* kRepo = "sim/repo";
constexpr const char* kCheck = "ci";
constexpr Millis kStart = 1'700'000'000'000;  // the virtual clock's origin (an epoch time)
// How long the simulated shell takes to answer each kind of request.
constexpr Millis kPolicyDelay = 2'000, kMergeDelay = 5'000, kPushDelay = 3'000;

// A forge whose fetches say only where master is: the simulated world tells the driver about
// PRs directly.
class SimForge final : public forges::Forge {
 public:
  std::string_view kind() const override { return "sim"; }
  std::vector<q::Event> events_from_fetch(const q::RepoState& state, const forges::RemoteRefs& refs,
                                          q::Millis now) const override {
    auto master = refs.branches.find("master");
    if (master == refs.branches.end() || master->second == state.master) return {};
    return {q::MasterObserved{master->second, now}};
  }
  Status deliver(const forges::OutboxMessage&) override { return {}; }
};

std::string sha_of(char kind, std::uint64_t n) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%c%039llu", kind, static_cast<unsigned long long>(n));
  return buf;
}

int pr_of_head(const q::Sha& head) { return std::stoi(head.substr(1)); }

class World final : public driver::GitPort,
                    public driver::PolicyPort,
                    public driver::CiPort,
                    public driver::OutboxPort {
 public:
  World(const Workload& w, const Strategy& strategy, const RunOptions& options)
      : w_(w),
        options_(options),
        clock_(kStart),
        ledger_(sha_of('m', 0), static_cast<int>(w.prs().size())) {
    result_.strategy = strategy.name;
    result_.prs = static_cast<int>(w.prs().size());
    cfg_.name = kRepo;
    cfg_.settings = strategy.settings;
    cfg_.settings.required_checks = {kCheck};
    cfg_.settings.check_timeout = 48 * kHour;  // builds may wait long for a runner
    cfg_.forge = &forge_;
    cfg_.fetch_interval = kHour;
    store_ = make_memory_store({0, false});
  }

  RunResult run() {
    start_driver();
    for (const auto& p : w_.prs()) {
      const Millis at = kStart + 10 * kMinute + p.approved_at;
      const int n = p.number;
      const q::Sha head = sha_of('h', static_cast<std::uint64_t>(n));
      at_time(at - kMinute, [this, n, head] {
        apply(q::PrOpened{n, "feature/" + std::to_string(n), w_.pr(n).author,
                          "PR " + std::to_string(n), head, now()});
      });
      at_time(at - kMinute / 2, [this, n, head] {
        q::Check c{kCheck, w_.pr(n).precheck_red ? q::CheckState::Failure : q::CheckState::Success,
                   "", "", now()};
        apply(q::CheckReported{head, c, now()});
      });
      at_time(at, [this, n, head] {
        if (w_.pr(n).priority != 0) apply(q::PriorityRequested{n, w_.pr(n).priority, "mm", now()});
        apply(q::MergeRequested{n, head, "mm", now()});
      });
    }
    last_arrival_ = kStart + 10 * kMinute + (w_.prs().empty() ? 0 : w_.prs().back().approved_at);
    const Millis stop =
        std::max(last_arrival_,
                 kStart + 10 * kMinute + static_cast<Millis>(w_.options().hours * kHour)) +
        static_cast<Millis>(options_.drain_hours * kHour);
    at_time(now() + options_.tick, [this] { tick(); });
    while (!events_.empty()) {
      Item item = events_.top();
      if (item.at > stop) break;
      events_.pop();
      if (item.at > now()) clock_.set(item.at);
      item.fn();
      if (finished()) break;
    }
    count_samples();
    finish(std::min(now(), stop));
    result_.violations = ledger_.violations();
    return std::move(result_);
  }

  // ---- ports ---------------------------------------------------------------------------------

  void fetch(const std::string&) override {
    later(1'000, [this] {
      forges::RemoteRefs refs;
      refs.branches["master"] = ledger_.master();
      driver_->fetched(kRepo, refs);
    });
  }
  void build_candidate(const std::string&, const q::BuildCandidate& a) override {
    ++counters_["candidates"];
    counters_["candidate_prs"] += static_cast<double>(a.items.size());
    if (!a.tip) ++counters_["probes"];
    std::vector<int> with;  // a probe's PRs of the chain: not its journey's builds
    if (const q::RepoState* st = driver_->state(kRepo))
      for (const auto& k : st->train)
        if (k.id == a.candidate) with = k.with;
    for (const auto& item : a.items) {
      if (std::find(with.begin(), with.end(), item.number) != with.end()) continue;
      Journey& j = journeys_[pr_of_head(item.head)];
      (a.tip ? j.chain_builds : j.probes) += 1;
      (a.tip ? j.last_chain_build : j.last_probe) = now();
      if (!a.tip && j.probes == 1) j.first_probe = now();
      if (a.tip && j.chain_builds == 1) j.first_chain_build = now();
    }
    later(kMergeDelay, [this, a] {
      std::vector<int> prs;
      for (const auto& item : a.items) prs.push_back(pr_of_head(item.head));
      const q::Sha sha = sha_of('c', shas_ + 1);
      if (!ledger_.record_commit(sha, a.base, std::move(prs))) return;
      ++shas_;
      if (!a.tip) probe_base_[sha] = a.base;
      merged_at_[a.candidate] = now();
      apply(q::MergeDone{a.candidate, q::MergeOutcome::Merged, sha, 0, {}, "", now()});
    });
  }
  void reset_dmz(const std::string&, const q::ResetDmz&) override {}
  void prune_candidates(const std::string&, const q::PruneCandidates&) override {}
  void fast_forward(const std::string&, const q::FastForwardMaster& a) override {
    later(kPushDelay, [this, a] {
      if (ledger_.master() != a.from) {  // the lease fails
        apply(q::MasterPushed{a.candidate, false, ledger_.master(), "stale lease", now()});
        return;
      }
      if (a.from == a.to) {  // a read of master (it is at the candidate already): no move
        apply(q::MasterPushed{a.candidate, true, "", "", now()});
        return;
      }
      move_master(a.from, a.to);
      if (auto m = merged_at_.find(a.candidate); m != merged_at_.end())
        landed_durations_.push_back(now() - m->second);
      apply(q::MasterPushed{a.candidate, true, "", "", now()});
    });
  }
  void check_policy(const std::string&, const q::CheckPolicy& a) override {
    later(kPolicyDelay, [this, a] {
      q::PolicyChecked verdict{a.number, a.sha, true, {}, now(), w_.pr(a.number).paths()};
      verdict.target = a.target;
      verdict.epoch = a.epoch;
      apply(std::move(verdict));
      predict_landing(a.number);
    });
  }
  void check_candidate(const std::string&, const q::CheckCandidate& a) override {
    later(kPolicyDelay, [this, a] {
      apply(q::CandidateChecked{a.candidate, a.sha, true, {}, now()});
    });
  }
  void start_build(const std::string&, const q::StartBuild& a) override {
    auto it = builds_.find(a.sha);
    if (it != builds_.end()) {
      if (a.attempt <= it->second.attempt) return;  // a resume: it is already building
      stop_build(a.sha);
    }
    Build b;
    b.attempt = a.attempt;
    b.last = ledger_.last_pr(a.sha);
    b.n = nth_build_[b.last]++;
    b.generation = ++generations_;
    builds_[a.sha] = b;
    waiting_.push_back(a.sha);
    dispatch_runners();
  }
  void cancel_build(const std::string&, const q::CancelBuild& a) override { stop_build(a.sha); }
  void send(const forges::OutboxMessage& m) override {
    const q::Notify& n = m.notice;
    if (n.kind == q::NoticeKind::Success && n.reason == q::Reason::Merged) {
      set_outcome(n.number, Outcome::Landed);
    } else if (n.kind == q::NoticeKind::Failure) {
      // The outbox delivers at least once: a notice resent after a restart counts once.
      if (ledger_.outcome_of(n.number) != Outcome::Ejected && innocent(n.number))
        ++result_.innocent;
      set_outcome(n.number, Outcome::Ejected);
    }
    later(0, [this, id = m.id] { driver_->delivered(id, {}); });
  }

 private:
  using Outcome = Ledger::Outcome;
  static constexpr Millis kNever = Ledger::kNever;

  struct Item {
    Millis at;
    std::uint64_t seq;
    std::function<void()> fn;
    bool operator<(const Item& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };
  struct Build {
    int attempt = 1;
    int last = 0, n = 0;
    std::uint64_t generation = 0;
    bool running = false;
    Millis started = 0;  // when it got a runner
  };
  // A PR's way through the train: its probes and the chain candidates that held it.
  struct Journey {
    int probes = 0, chain_builds = 0;
    Millis first_probe = 0, last_probe = 0, first_chain_build = 0, last_chain_build = 0;
  };

  Millis now() const { return clock_.now(); }
  void at_time(Millis at, std::function<void()> fn) {
    events_.push(Item{std::max(at, now()), ++seq_, std::move(fn)});
  }
  void later(Millis delay, std::function<void()> fn) { at_time(now() + delay, std::move(fn)); }
  void violation(std::string what) { ledger_.violation(std::move(what)); }

  void start_driver() {
    driver_ = std::make_unique<driver::Driver>(clock_, *store_, *this, *this, *this, *this,
                                               std::vector<driver::RepoConfig>{cfg_});
    if (Status s = driver_->start(); !s.ok()) violation("driver start: " + s.message());
  }

  void apply(const q::Event& e) {
    auto out = driver_->apply(kRepo, e);
    if (trace_) {
      std::fprintf(stderr, "%8.1f %s %s\n", static_cast<double>(now() - kStart) / kMinute,
                   q::to_json(e).dump().c_str(), out.rejected ? out.rejected->message.c_str() : "");
      for (const auto& a : out.actions)
        std::fprintf(stderr, "           -> %s\n", q::to_json(a).dump().c_str());
    }
    ++result_.events;
    if (out.rejected && out.rejected->code != Code::kNotFound &&
        out.rejected->code != Code::kConflict)
      violation(std::string("refused: ") + out.rejected->message);
    if (options_.crash_every > 0 && result_.events % options_.crash_every == 0) {
      ++result_.restarts;
      start_driver();  // the old driver is gone with everything it held in memory
    }
  }

  void tick() {
    driver_->tick();
    sample();
    if (!finished()) later(options_.tick, [this] { tick(); });
  }

  bool finished() const { return now() >= last_arrival_ && ledger_.undecided() == 0; }

  void set_outcome(int number, Outcome o) {
    ledger_.outcome(number, o);
    if (options_.progress) options_.progress(result_.prs - ledger_.undecided(), result_.events);
  }

  // Once a minute of virtual time, while PRs are waiting: how busy the queue and CI are.
  void sample() {
    if (w_.prs().empty() || now() < approved(1)) return;
    int approved_so_far = 0;  // PRs approved by now (the workload is in approval order)
    {
      auto it = std::upper_bound(w_.prs().begin(), w_.prs().end(), now() - kStart - 10 * kMinute,
                                 [](Millis t, const SimPr& p) { return t < p.approved_at; });
      approved_so_far = static_cast<int>(it - w_.prs().begin());
    }
    const int decided = result_.prs - ledger_.undecided();
    const q::RepoState* st = driver_->state(kRepo);
    ++samples_;
    sums_["backlog"] += std::max(0, approved_so_far - decided);
    sums_["runners_busy"] += running_;
    sums_["builds_waiting_for_runner"] += static_cast<double>(waiting_.size());
    if (st) {
      sums_["train_candidates"] += static_cast<double>(st->train.size());
      sums_["window"] += static_cast<double>(st->window);
      sums_["observed_fail_permille"] += st->observed.fail_permille;
      for (const auto& [n, pr] : st->prs) {
        if (pr.status == q::PrStatus::Queued) sums_[pr.held_by ? "prs_held" : "prs_queued"] += 1;
        if (pr.status == q::PrStatus::Queued && pr.probed) sums_["prs_queued_probed"] += 1;
        if (pr.status == q::PrStatus::Approved) sums_["prs_approved"] += 1;
        if (pr.candidate) sums_["prs_in_train"] += 1;
      }
      for (const auto& k : st->train) {
        if (k.probe) sums_["train_probes"] += 1;
        sums_[k.probe ? "prs_in_probes" : "prs_in_chain"] += static_cast<double>(k.prs.size());
        if (k.sha.empty()) sums_["train_merging"] += 1;
      }
    }
  }
  // What the status page would have shown as the PR's expected landing when it was queued
  // (queue/eta.hpp, from the landings so far), to compare with when it landed.
  void predict_landing(int number) {
    const q::RepoState* st = driver_->state(kRepo);
    if (!options_.measure_eta || !st || eta_.count(number)) return;
    auto etas = q::expected_landings(*st, cfg_.settings, landed_durations_, now());
    if (auto it = etas.find(number); it != etas.end()) eta_[number] = it->second;
  }

  // Medians over the landed PRs of when (minutes after approval) their first and last probe and
  // their first and last chain candidate were merged, and when they landed: where the time to
  // merge goes. Also when those landed that took the fewest builds probe-first allows, one
  // probe and one chain candidate: the floor of that way through the train. The 95th
  // percentile of the first probe's wait shows who the slowest PRs are (a queue ordered by
  // risk serves the risky last), and the builds of PRs that were ejected what they cost the
  // runners (the oracle spends none on them).
  void count_journeys() {
    std::map<std::string, std::vector<double>> at;
    double probes = 0, chain_builds = 0, landed = 0, ejected = 0, ejected_builds = 0;
    for (const auto& [n, j] : journeys_) {
      const Millis end = ledger_.landed_at(n);
      if (ledger_.outcome_of(n) == Ledger::Outcome::Ejected) {
        ++ejected;
        ejected_builds += j.probes + j.chain_builds;
      }
      if (end == kNever) continue;
      auto after = [&](Millis t) { return static_cast<double>(t - approved(n)) / kMinute; };
      if (j.probes) {
        at["landed_median_min_to_first_probe"].push_back(after(j.first_probe));
        at["landed_median_min_to_last_probe"].push_back(after(j.last_probe));
      }
      if (j.chain_builds) {
        at["landed_median_min_to_first_chain_build"].push_back(after(j.first_chain_build));
        at["landed_median_min_to_last_chain_build"].push_back(after(j.last_chain_build));
      }
      if (j.probes == 1 && j.chain_builds == 1)
        at["landed_median_min_landing_1probe_1chain"].push_back(after(end));
      at["landed_median_min_to_landing"].push_back(after(end));
      if (auto e = eta_.find(n); e != eta_.end()) {
        const double late = static_cast<double>(end - e->second) / kMinute;
        at["landed_median_min_eta_late"].push_back(late);  // landed this much after it
        at["landed_median_min_eta_off"].push_back(std::abs(late));
      }
      probes += j.probes;
      chain_builds += j.chain_builds;
      ++landed;
    }
    if (auto it = at.find("landed_median_min_to_first_probe"); it != at.end())
      counters_["landed_p95_min_to_first_probe"] = percentile(it->second, 95);
    for (auto& [name, v] : at) {
      std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
      counters_[name] = v[v.size() / 2];
    }
    counters_["landed_mean_probes"] = landed ? probes / landed : 0;
    counters_["landed_mean_chain_builds"] = landed ? chain_builds / landed : 0;
    counters_["ejected_mean_builds"] = ejected ? ejected_builds / ejected : 0;
  }

  void count_samples() {
    count_journeys();
    for (const auto& [name, sum] : sums_)
      counters_["mean_" + name] = samples_ ? sum / static_cast<double>(samples_) : 0;
    result_.counters = counters_;
  }

  // ---- CI --------------------------------------------------------------------------------------

  void dispatch_runners() {
    while (running_ < w_.options().runners && !waiting_.empty()) {
      const q::Sha sha = waiting_.front();
      waiting_.pop_front();
      auto it = builds_.find(sha);
      if (it == builds_.end() || it->second.running) continue;
      Build& b = it->second;
      b.running = true;
      b.started = now();
      ++running_;
      ++result_.builds_started;
      const std::uint64_t generation = b.generation;
      later(w_.build_duration(b.last, b.n),
            [this, sha, generation] { build_finished(sha, generation); });
    }
  }

  void stop_build(const q::Sha& sha) {
    auto it = builds_.find(sha);
    if (it == builds_.end()) return;
    ++counters_[it->second.running ? "builds_cancelled_running" : "builds_cancelled_waiting"];
    dead_.insert(sha);
    if (it->second.running) {
      --running_;
      const double minutes = static_cast<double>(now() - it->second.started) / kMinute;
      counters_["runner_minutes_cancelled"] += minutes;
      auto base = probe_base_.find(sha);
      counters_[base == probe_base_.end()   ? "runner_minutes_cancelled_chain"
                : dead_.count(base->second) ? "runner_minutes_cancelled_probes_base_gone"
                                            : "runner_minutes_cancelled_probes_stale"] += minutes;
    }
    builds_.erase(it);
    std::erase(waiting_, sha);
    dispatch_runners();
  }

  void build_finished(const q::Sha& sha, std::uint64_t generation) {
    auto it = builds_.find(sha);
    if (it == builds_.end() || it->second.generation != generation) return;  // cancelled
    const Build b = it->second;
    builds_.erase(it);
    --running_;
    dispatch_runners();
    const Contents held = ledger_.contents(sha);  // what this build judged
    const Breakage why = breakage(held);
    const bool flake = w_.flaky(b.last, b.n);
    const bool pass = why == Breakage::None && !flake;
    if (!pass) dead_.insert(sha);
    const std::string ended = why == Breakage::Bad        ? "failed_bad_pr"
                              : why == Breakage::Conflict ? "failed_conflict"
                              : flake                     ? "failed_flake"
                                                          : "passed";
    counters_["runner_minutes_finished"] += static_cast<double>(now() - b.started) / kMinute;
    ++counters_["builds_" + ended];
    if (const q::RepoState* st = driver_->state(kRepo))
      for (const auto& k : st->train)
        if (k.sha == sha) ++counters_[(k.probe ? "probe_" : "chain_") + ended];
    ledger_.record_build(sha, held, pass);
    apply(q::CheckReported{
        sha,
        q::Check{kCheck, pass ? q::CheckState::Success : q::CheckState::Failure, "", "", now()},
        now()});
  }

  // ---- ground truth ------------------------------------------------------------------------

  Millis approved(int n) const { return kStart + 10 * kMinute + w_.pr(n).approved_at; }
  // Whether a conflict between x and y matters: neither was written on top of the other.
  bool matters(int x, int y) const {
    const Millis lx = ledger_.landed_at(x);
    const Millis ly = ledger_.landed_at(y);
    return !(lx <= approved(y) || ly <= approved(x));
  }

  // The landings of master (in order) that came after PR y's approval, up to the first `end`
  // landings: the only PRs on master a conflict with y can matter with.
  template <class F>
  void landed_after_approval(int y, std::size_t end, F&& f) const {
    const auto& landings = ledger_.landings();
    const auto stop = landings.begin() + static_cast<std::ptrdiff_t>(end);
    auto it =
        std::upper_bound(landings.begin(), stop, approved(y),
                         [](Millis t, const std::pair<Millis, int>& l) { return t < l.first; });
    for (; it != stop; ++it) f(it->second);
  }

  enum class Breakage { None, Bad, Conflict };
  // Why a build holding `held` fails (None: it passes, flakes aside).
  Breakage breakage(const Contents& held) const {
    const std::vector<int>& mine = held.prs;
    const std::size_t end = ledger_.landings_at(held.base);
    Breakage why = Breakage::None;
    for (std::size_t i = 0; i < mine.size(); ++i) {
      if (w_.pr(mine[i]).bad) return Breakage::Bad;
      for (std::size_t j = 0; j < i; ++j)
        if (w_.conflict(mine[j], mine[i]) && matters(mine[j], mine[i])) why = Breakage::Conflict;
      landed_after_approval(mine[i], end, [&](int x) {
        if (w_.conflict(x, mine[i]) && matters(x, mine[i])) why = Breakage::Conflict;
      });
    }
    return why;
  }
  // An ejected PR was innocent if it is good and would pass alone on master now.
  bool innocent(int n) const {
    if (w_.pr(n).bad) return false;
    bool clean = true;
    landed_after_approval(n, ledger_.landings().size(), [&](int m) {
      if (w_.conflict(m, n) && matters(m, n)) clean = false;
    });
    return clean;
  }

  void move_master(const q::Sha& from, const q::Sha& to) {
    // Judged before the move: whether a conflict matters depends on what had landed.
    const bool broken = ledger_.knows(to) && breakage(ledger_.contents(to)) != Breakage::None;
    if (!ledger_.master_moved(from, to, now())) return;
    if (broken) ++result_.escaped;
    ++counters_["master_moves"];
    last_landing_ = now();
  }

  void finish(Millis stop) {
    const q::RepoState* st = driver_->state(kRepo);
    for (int n = 1; n <= result_.prs; ++n) {
      const double from = static_cast<double>(approved(n));
      switch (ledger_.outcome_of(n)) {
        case Outcome::Landed:
          ++result_.landed;
          result_.ttm_minutes.push_back((static_cast<double>(ledger_.landed_at(n)) - from) /
                                        kMinute);
          break;
        case Outcome::Ejected:
          ++result_.ejected;
          break;
        case Outcome::None:
          ++result_.unfinished;
          result_.censored_minutes.push_back((static_cast<double>(stop) - from) / kMinute);
          break;
      }
      if (approved(n) <= stop) ledger_.check_told(n, engine_status(st, n));
      ledger_.check_landing_told(n);
    }
    const Millis first = w_.prs().empty() ? kStart : approved(1);
    result_.active_hours = static_cast<double>(std::max<Millis>(last_landing_ - first, 0)) / kHour;
  }

  // Where the engine has PR `n`; nullopt if it does not know it.
  static std::optional<q::PrStatus> engine_status(const q::RepoState* st, int n) {
    if (!st) return std::nullopt;
    auto it = st->prs.find(n);
    if (it == st->prs.end()) return std::nullopt;
    return it->second.status;
  }

  const Workload& w_;
  RunOptions options_;
  bool trace_ = std::getenv("DMZ_SIM_TRACE") != nullptr;  // every event and action, to stderr
  ManualClock clock_;
  SimForge forge_;
  driver::RepoConfig cfg_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<driver::Driver> driver_;
  std::priority_queue<Item> events_;
  std::uint64_t seq_ = 0;
  RunResult result_;

  Ledger ledger_;           // master, commits, builds, outcomes: and the invariants on them
  std::uint64_t shas_ = 0;  // candidate commits written so far
  std::map<std::string, double> counters_, sums_;
  std::map<int, Journey> journeys_;      // by PR number
  std::map<q::Sha, q::Sha> probe_base_;  // a probe's commit: its base (stats of cancelled builds)
  std::set<q::Sha> dead_;                // commits whose build was cancelled or failed
  std::map<q::CandidateId, Millis> merged_at_;
  std::vector<Millis> landed_durations_;  // from a candidate's merge to its landing, oldest first
  std::map<int, Millis> eta_;             // by PR number: the estimate when it was queued
  long samples_ = 0;
  Millis last_arrival_ = 0, last_landing_ = 0;

  std::map<q::Sha, Build> builds_;
  std::deque<q::Sha> waiting_;
  std::map<int, int> nth_build_;  // builds started so far per last PR
  std::uint64_t generations_ = 0;
  int running_ = 0;
};

}  // namespace

std::vector<Strategy> standard_strategies(const WorkloadOptions& o) {
  std::vector<Strategy> out;
  for (const char* name : {"serial", "batch", "train", "adaptive"})
    out.push_back(*strategy_named(name, o));
  return out;
}

std::optional<Strategy> strategy_named(const std::string& name, const WorkloadOptions& o) {
  auto st = q::parse_strategy(name);
  if (!st) return std::nullopt;
  Strategy s{name, {}};
  q::Settings& cfg = s.settings;
  cfg.strategy = *st;
  const auto runners = static_cast<std::size_t>(std::max(1, o.runners));
  const int retries = o.flake > 0 ? 1 : 0;
  switch (*st) {
    case q::Strategy::Serial:
      break;
    case q::Strategy::Batch:
      cfg.max_batch = 8;
      cfg.flaky_retries = retries;
      break;
    case q::Strategy::Train:  // Zuul's defaults: start 20, floor 3, +1, /2; at most the runners
      cfg.window_max = runners;
      cfg.window_floor = std::min<std::size_t>(3, runners);
      cfg.window_start = std::min<std::size_t>(20, runners);
      cfg.flaky_retries = retries;
      break;
    case q::Strategy::Adaptive:
      cfg.window_max = runners;
      cfg.window_floor = std::min<std::size_t>(3, runners);
      cfg.window_start = runners;
      cfg.max_batch = 8;
      cfg.flaky_retries = retries;
      break;
  }
  return s;
}

RunResult run(const Workload& workload, const Strategy& strategy, const RunOptions& options) {
  World world(workload, strategy, options);
  return world.run();
}

}  // namespace dmz::sim

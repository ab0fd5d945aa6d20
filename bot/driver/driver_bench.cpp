// driver_bench: what one event costs as a repository's history grows. It drives N pull requests
// (default 100,000) through the real Driver, engine and SQLite store, git and CI being answered
// at once by the bench (recording fakes), and prints the cost of an event around 1k, 10k and
// N - 1k (99k by default) finished PRs of history, and the peak memory. Each window is 1,000 PRs
// and no two overlap: N is at least 3,000, and below 12,000 the 10k window is left out. The store
// lives on tmpfs (/dev/shm) unless a directory is given, so that the figures are the work dmzbot
// does, not the disk's fsync. Not part of the tests: `cmake --build build --target driver_bench
// && build/driver_bench [N] [DIR]`. Threading: single-threaded.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "bot/driver/driver.hpp"
#include "bot/driver/fakes.hpp"
#include "forges/fake.hpp"

namespace {

namespace q = dmz::queue;
namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;
constexpr const char* kRepo = "bench/repo";

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "driver_bench: %s\n", what.c_str());
  std::exit(1);
}

q::Sha sha_of(char kind, long n) {
  std::string digits = std::to_string(n);
  return q::Sha(40 - digits.size(), kind) + digits;
}

void must(const q::Outcome& o, const char* what) {
  if (o.rejected) die(std::string(what) + ": " + o.rejected->message);
}

fs::path make_dir(const char* given) {
  if (given) return given;
  std::string base = fs::exists("/dev/shm") ? "/dev/shm" : fs::temp_directory_path().string();
  std::string pattern = base + "/driver-bench-XXXXXX";
  if (!mkdtemp(pattern.data())) die("mkdtemp " + pattern);
  return pattern;
}

}  // namespace

int main(int argc, char** argv) {
  const long n_prs = argc > 1 ? std::atol(argv[1]) : 100'000;
  // The first window, (1000, 2000], and the last, (N - 1000, N], must not be the same PRs.
  if (n_prs < 3'000) die("N must be at least 3000");
  const fs::path dir = make_dir(argc > 2 ? argv[2] : nullptr);
  auto store = dmz::open_sqlite_store(dir / "bench.db");
  if (!store) die(store.message());
  dmz::ManualClock clock;
  dmz::driver::RecordingPorts ports;
  dmz::forges::FakeForge forge;
  dmz::driver::RepoConfig cfg;
  cfg.name = kRepo;
  cfg.settings.required_checks = {"ci/build"};
  cfg.forge = &forge;
  dmz::driver::Driver driver(clock, **store, ports, ports, ports, ports, {cfg});
  if (dmz::Status s = driver.start(); !s.ok()) die(s.message());
  dmz::forges::RemoteRefs refs;
  refs.branches["master"] = sha_of('0', 0);
  driver.fetched(kRepo, refs);

  // The windows measured: 1,000 PRs starting at each of these history sizes; the 10k one only
  // where it ends before the last one starts.
  constexpr long kWindow = 1'000;
  std::vector<long> marks = {1'000};
  if (10'000 + kWindow <= n_prs - kWindow) marks.push_back(10'000);
  marks.push_back(n_prs - kWindow);
  // Per PR in each window: the cost of one of its events. The median is reported: other work
  // on the machine shows up as outliers, not as a shift.
  std::vector<std::vector<double>> samples(marks.size());
  long total_events = 0;
  const auto started = SteadyClock::now();

  for (long n = 1; n <= n_prs; ++n) {
    const int number = static_cast<int>(n);
    const q::Sha head = sha_of('a', n), commit = sha_of('c', n);
    const auto t0 = SteadyClock::now();
    long before = total_events;
    auto apply = [&](const q::Event& e, const char* what) {
      must(driver.apply(kRepo, e), what);
      ++total_events;
    };
    const q::Millis now = clock.now();
    apply(q::PrOpened{number, "feature/" + std::to_string(n), "dev", "PR", head, now}, "open");
    apply(q::MergeRequested{number, head, "mm", now}, "approve");
    apply(q::PolicyChecked{.number = number,
                           .sha = head,
                           .pass = true,
                           .at = now,
                           .target = ports.of<q::CheckPolicy>().back().target,
                           .epoch = ports.of<q::CheckPolicy>().back().epoch},
          "policy");
    auto built = ports.of<q::BuildCandidate>();
    if (built.empty()) die("no candidate for #" + std::to_string(n));
    const auto id = built.back().candidate;
    apply(q::MergeDone{id, q::MergeOutcome::Merged, commit, 0, {}, "", now}, "merge");
    apply(q::CandidateChecked{id, commit, true, {}, now}, "candidate check");
    apply(q::CheckReported{commit, q::Check{"ci/build", q::CheckState::Success}, now}, "check");
    apply(q::MasterPushed{id, true, "", "", now}, "land");
    for (const auto& m : ports.of<dmz::forges::OutboxMessage>()) {
      driver.delivered(m.id, {});
      ++total_events;
    }
    ports.clear();
    clock.advance(1'000);
    if (n % 100 == 0) driver.tick();
    const double took = std::chrono::duration<double>(SteadyClock::now() - t0).count();
    for (std::size_t i = 0; i < marks.size(); ++i)
      if (n > marks[i] && n <= marks[i] + kWindow)
        samples[i].push_back(1e6 * took / static_cast<double>(total_events - before));
  }
  const double all = std::chrono::duration<double>(SteadyClock::now() - started).count();
  for (std::size_t i = 0; i < marks.size(); ++i)
    if (samples[i].size() < static_cast<std::size_t>(kWindow)) {
      if (argc <= 2) fs::remove_all(dir);
      die("the window at " + std::to_string(marks[i]) + " has " +
          std::to_string(samples[i].size()) + " samples, not " + std::to_string(kWindow));
    }
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);

  std::printf("driver_bench: %ld PRs, %ld events in %.1f s; store %s\n", n_prs, total_events, all,
              (dir / "bench.db").c_str());
  std::printf("%-24s %20s\n", "history (finished PRs)", "us per event (p50)");
  std::vector<double> per_event;
  for (std::size_t i = 0; i < marks.size(); ++i) {
    auto& v = samples[i];
    std::nth_element(v.begin(), v.begin() + static_cast<long>(v.size() / 2), v.end());
    per_event.push_back(v[v.size() / 2]);
    std::printf("%-24ld %20.1f\n", marks[i], per_event.back());
  }
  const double ratio = per_event.back() / per_event.front();
  std::printf("cost at %ld / cost at 1000: %.2fx (target <= 1.5x): %s\n", marks.back(), ratio,
              ratio <= 1.5 ? "met" : "NOT met");
  std::printf("hot PRs at the end: %zu; peak memory: %.1f MiB\n", driver.state(kRepo)->prs.size(),
              static_cast<double>(usage.ru_maxrss) / 1024.0);
  if (argc <= 2) fs::remove_all(dir);
  return 0;
}

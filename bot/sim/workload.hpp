// The simulator's workload: who approves which PR when, what each PR touches, which PRs are
// bad, and the random facts of CI (build durations, flakes, semantic conflicts) as pure
// functions of a seed, so that every strategy meets the same world (common random numbers).
// Threading: a Workload is immutable once generated; share it across threads.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "queue/model.hpp"

namespace dmz::sim {

using queue::Millis;
constexpr Millis kMinute = 60'000;
constexpr Millis kHour = 60 * kMinute;

struct WorkloadOptions {
  double rate = 20;          // PRs approved per hour (a Poisson process)
  double hours = 8;          // arrivals stop after this
  double burst = 0;          // probability that an arrival comes with a burst of 2-6 more
  bool day_profile = false;  // the rate follows a working day (peak mid-afternoon; mean `rate`)
  double ci_median_minutes = 30;
  double ci_sigma = 0.5;  // lognormal spread of a build's duration
  double fail = 0.10;     // probability that a PR is bad (its candidates fail)
  double flake = 0.02;    // probability that a build of a good candidate fails anyway
  int runners = 20;       // CI runners
  double precheck = 0.5;  // probability that a bad PR's own CI before the queue is red
  // Semantic conflicts: each PR touches 1..max_targets of `targets` build targets, drawn from
  // a Zipf(zipf) popularity; two PRs sharing a target conflict with a probability calibrated
  // so that `pair_conflict` of random pairs conflict.
  int targets = 200;
  double zipf = 1.1;
  int max_targets = 3;
  double pair_conflict = 0.01;
  int authors = 40;
};

struct SimPr {
  int number = 0;
  Millis approved_at = 0;
  std::string author;
  std::vector<int> targets;   // sorted
  bool bad = false;           // fails every build that contains it
  bool precheck_red = false;  // its own CI before the queue failed
  int priority = 0;
  std::vector<std::string> paths() const;  // one file per target: "t17/lib.cpp"
};

class Workload {
 public:
  static Workload generate(const WorkloadOptions& options, std::uint64_t seed);
  // A workload from given PRs (a replay); `options` gives CI and the conflict model.
  static Workload from_prs(const WorkloadOptions& options, std::uint64_t seed,
                           std::vector<SimPr> prs);

  const WorkloadOptions& options() const { return options_; }
  std::uint64_t seed() const { return seed_; }
  const std::vector<SimPr>& prs() const { return prs_; }
  const SimPr& pr(int number) const { return prs_.at(static_cast<std::size_t>(number - 1)); }

  // Whether PRs a and b conflict semantically when built together (symmetric): they share a
  // target and the pair's coin says so.
  bool conflict(int a, int b) const;
  // The duration and flakiness of the n-th build (0-based) of a candidate whose last PR is
  // `last`: the first build of "master + ... + p" lasts as long under every strategy.
  Millis build_duration(int last, int n) const;
  bool flaky(int last, int n) const;
  // The probability that two PRs sharing a target conflict (from the calibration).
  double conflict_given_share() const { return given_share_; }
  // Empirical durations to draw from instead of the lognormal (a replay), in ms.
  void use_durations(std::vector<Millis> durations) { durations_ = std::move(durations); }

 private:
  WorkloadOptions options_;
  std::uint64_t seed_ = 0;
  std::vector<SimPr> prs_;
  double given_share_ = 0;
  std::vector<Millis> durations_;
};

// Deterministic randomness from a key (splitmix64): uniform in [0, 1).
std::uint64_t mix(std::uint64_t x);
double unit(std::uint64_t key);
std::uint64_t key_of(std::uint64_t a, std::uint64_t b, std::uint64_t c = 0);

}  // namespace dmz::sim

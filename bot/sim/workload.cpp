#include "bot/sim/workload.hpp"

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

namespace dmz::sim {

std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

double unit(std::uint64_t key) { return static_cast<double>(mix(key) >> 11) * 0x1.0p-53; }

std::uint64_t key_of(std::uint64_t a, std::uint64_t b, std::uint64_t c) {
  return mix(mix(mix(a) ^ b) ^ c);
}

std::vector<std::string> SimPr::paths() const {
  std::vector<std::string> out;
  for (int t : targets) out.push_back("t" + std::to_string(t) + "/lib.cpp");
  return out;
}

namespace {

// Draws `k` distinct targets from a Zipf popularity (inverse CDF over cumulative weights).
std::vector<int> draw_targets(std::mt19937_64& rng, const std::vector<double>& cdf, int k) {
  std::uniform_real_distribution<double> u(0, 1);
  std::set<int> picked;
  for (int tries = 0; static_cast<int>(picked.size()) < k && tries < 100; ++tries) {
    const double x = u(rng) * cdf.back();
    picked.insert(static_cast<int>(std::lower_bound(cdf.begin(), cdf.end(), x) - cdf.begin()));
  }
  return {picked.begin(), picked.end()};
}

std::vector<double> zipf_cdf(int n, double s) {
  std::vector<double> cdf;
  double total = 0;
  for (int i = 1; i <= n; ++i) cdf.push_back(total += 1.0 / std::pow(i, s));
  return cdf;
}

bool share(const std::vector<int>& a, const std::vector<int>& b) {
  for (int x : a)
    if (std::binary_search(b.begin(), b.end(), x)) return true;
  return false;
}

// The probability that two random PRs share a target, estimated once with a fixed seed.
double share_probability(const WorkloadOptions& o) {
  std::mt19937_64 rng(12345);
  const auto cdf = zipf_cdf(o.targets, o.zipf);
  std::uniform_int_distribution<int> k(1, std::max(1, o.max_targets));
  int shared = 0;
  constexpr int kPairs = 20000;
  for (int i = 0; i < kPairs; ++i)
    shared += share(draw_targets(rng, cdf, k(rng)), draw_targets(rng, cdf, k(rng)));
  return std::max(1e-6, static_cast<double>(shared) / kPairs);
}

}  // namespace

Workload Workload::from_prs(const WorkloadOptions& options, std::uint64_t seed,
                            std::vector<SimPr> prs) {
  Workload w;
  w.options_ = options;
  w.seed_ = seed;
  w.prs_ = std::move(prs);
  w.given_share_ = std::min(1.0, options.pair_conflict / share_probability(options));
  return w;
}

Workload Workload::generate(const WorkloadOptions& o, std::uint64_t seed) {
  std::mt19937_64 rng(mix(seed));
  std::uniform_real_distribution<double> u(0, 1);
  const auto cdf = zipf_cdf(o.targets, o.zipf);
  std::uniform_int_distribution<int> k(1, std::max(1, o.max_targets));
  std::vector<SimPr> prs;
  const double end = o.hours * kHour;
  // The day profile starts at 09:00 and peaks at 14:00; its mean over a day is 1, its peak 1.9.
  auto shape = [&](double t) {
    if (!o.day_profile) return 1.0;
    const double hour = 9 + t / kHour;
    return 1 + 0.9 * std::cos(2 * M_PI * (hour - 14) / 24);
  };
  const double peak = o.day_profile ? 1.9 : 1.0;
  std::exponential_distribution<double> gap(o.rate * peak / kHour);
  auto add = [&](double at) {
    SimPr p;
    p.number = static_cast<int>(prs.size()) + 1;
    p.approved_at = static_cast<Millis>(at);
    p.author = "dev" + std::to_string(1 + static_cast<int>(u(rng) * o.authors));
    p.targets = draw_targets(rng, cdf, k(rng));
    p.bad = u(rng) < o.fail;
    p.precheck_red = p.bad ? u(rng) < o.precheck : u(rng) < o.flake;
    prs.push_back(std::move(p));
  };
  for (double t = gap(rng); t < end && o.rate > 0; t += gap(rng)) {
    if (u(rng) > shape(t) / peak) continue;  // thinning: the day's rate at t
    add(t);
    if (o.burst > 0 && u(rng) < o.burst) {
      const int more = 2 + static_cast<int>(u(rng) * 5);
      for (int i = 0; i < more; ++i) add(t + (i + 1) * 30'000.0);  // a merge master's round
      t += more * 30'000.0;
    }
  }
  return from_prs(o, seed, std::move(prs));
}

bool Workload::conflict(int a, int b) const {
  if (a == b) return false;
  const auto& pa = pr(a);
  const auto& pb = pr(b);
  if (!share(pa.targets, pb.targets)) return false;
  return unit(key_of(seed_ ^ 0xc0ffee, static_cast<std::uint64_t>(std::min(a, b)),
                     static_cast<std::uint64_t>(std::max(a, b)))) < given_share_;
}

Millis Workload::build_duration(int last, int n) const {
  const std::uint64_t key =
      key_of(seed_ ^ 0xd0d0, static_cast<std::uint64_t>(last), static_cast<std::uint64_t>(n));
  if (!durations_.empty())
    return durations_[static_cast<std::size_t>(mix(key) % durations_.size())];
  // Lognormal: median * exp(sigma * z), z standard normal (Box-Muller on two uniforms).
  const double u1 = std::max(1e-12, unit(key)), u2 = unit(key + 1);
  const double z = std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2);
  const double minutes = options_.ci_median_minutes * std::exp(options_.ci_sigma * z);
  return std::max<Millis>(1000, static_cast<Millis>(minutes * kMinute));
}

bool Workload::flaky(int last, int n) const {
  return unit(key_of(seed_ ^ 0xf1a4e, static_cast<std::uint64_t>(last),
                     static_cast<std::uint64_t>(n))) < options_.flake;
}

}  // namespace dmz::sim

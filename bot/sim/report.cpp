#include "bot/sim/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>

namespace dmz::sim {

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double at = p / 100 * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(at));
  const auto hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (at - static_cast<double>(lo));
}

namespace {

// Student's t at 97.5% for df = 1..30; beyond, the normal's 1.96.
double t975(std::size_t df) {
  static const double t[] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                             2.201,  2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                             2.080,  2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042};
  return df == 0 ? 0 : df <= 30 ? t[df - 1] : 1.96;
}

}  // namespace

Stat stat(const std::vector<double>& s) {
  Stat out;
  out.seeds = static_cast<int>(s.size());
  if (s.empty()) return out;
  double sum = 0;
  for (double x : s) sum += x;
  out.mean = sum / static_cast<double>(s.size());
  if (s.size() < 2) return out;
  double ss = 0;
  for (double x : s) ss += (x - out.mean) * (x - out.mean);
  const double sd = std::sqrt(ss / static_cast<double>(s.size() - 1));
  out.half = t975(s.size() - 1) * sd / std::sqrt(static_cast<double>(s.size()));
  return out;
}

namespace {

// The figures of one seed; nullopt where the seed does not define one.
std::optional<double> percentile_of(const std::vector<double>& values, double p) {
  if (values.empty()) return std::nullopt;
  return percentile(values, p);
}

std::optional<double> ratio(std::optional<double> mine, std::optional<double> oracle) {
  if (!mine || !oracle || *oracle <= 0) return std::nullopt;
  return *mine / *oracle;
}

void add(std::vector<double>& samples, std::optional<double> value) {
  if (value) samples.push_back(*value);
}

}  // namespace

Summary summarize(const std::string& strategy, const std::vector<RunResult>& runs,
                  const std::vector<RunResult>& oracle) {
  Summary out;
  out.strategy = strategy;
  out.seeds = static_cast<int>(runs.size());
  std::vector<double> landed, ejected, innocent, unfinished, p50, p95, p99, r50, r95, r99, bpl, lph,
      escaped;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const RunResult& r = runs[i];
    std::vector<double> all = r.ttm_minutes;
    all.insert(all.end(), r.censored_minutes.begin(), r.censored_minutes.end());
    landed.push_back(r.landed);
    ejected.push_back(r.ejected);
    innocent.push_back(r.innocent);
    unfinished.push_back(r.unfinished);
    const auto mine50 = percentile_of(all, 50), mine95 = percentile_of(all, 95),
               mine99 = percentile_of(all, 99);
    add(p50, mine50);
    add(p95, mine95);
    add(p99, mine99);
    if (i < oracle.size()) {
      const auto& best = oracle[i].ttm_minutes;
      add(r50, ratio(mine50, percentile_of(best, 50)));
      add(r95, ratio(mine95, percentile_of(best, 95)));
      add(r99, ratio(mine99, percentile_of(best, 99)));
    }
    // Per seed, over the seeds that landed something (not sum over sum): each seed is one
    // independent sample, which is what the t-interval of stat() assumes.
    if (r.landed) bpl.push_back(static_cast<double>(r.builds_started) / r.landed);
    lph.push_back(r.active_hours > 0 ? r.landed / r.active_hours : 0);  // none landed: 0 an hour
    escaped.push_back(r.escaped);
    out.violations += static_cast<int>(r.violations.size());
    for (const auto& v : r.violations)
      if (out.first_violations.size() < 5) out.first_violations.push_back(v);
  }
  out.landed = stat(landed);
  out.ejected = stat(ejected);
  out.innocent = stat(innocent);
  out.unfinished = stat(unfinished);
  out.p50 = stat(p50);
  out.p95 = stat(p95);
  out.p99 = stat(p99);
  out.p50_ratio = stat(r50);
  out.p95_ratio = stat(r95);
  out.p99_ratio = stat(r99);
  out.builds_per_landed = stat(bpl);
  out.landings_per_hour = stat(lph);
  out.escaped = stat(escaped);
  return out;
}

namespace {

std::string cell(const Stat& s, int decimals) {
  if (!s.defined()) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f±%.*f", decimals, s.mean, decimals, s.half);
  return buf;
}

}  // namespace

std::string table(const std::vector<Summary>& summaries) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line,
                "%-9s %11s %10s %10s %10s %12s %12s %12s %10s %10s %10s %10s %10s %8s\n",
                "strategy", "landed", "ejected", "innocent", "unfinished", "p50 min", "p95 min",
                "p99 min", "p50/orc", "p95/orc", "p99/orc", "builds/PR", "landed/h", "escaped");
  out += line;
  for (const auto& s : summaries) {
    std::snprintf(line, sizeof line,
                  "%-9s %11s %10s %10s %10s %12s %12s %12s %10s %10s %10s %10s %10s %8s\n",
                  s.strategy.c_str(), cell(s.landed, 1).c_str(), cell(s.ejected, 1).c_str(),
                  cell(s.innocent, 1).c_str(), cell(s.unfinished, 1).c_str(),
                  cell(s.p50, 0).c_str(), cell(s.p95, 0).c_str(), cell(s.p99, 0).c_str(),
                  cell(s.p50_ratio, 2).c_str(), cell(s.p95_ratio, 2).c_str(),
                  cell(s.p99_ratio, 2).c_str(), cell(s.builds_per_landed, 2).c_str(),
                  cell(s.landings_per_hour, 1).c_str(), cell(s.escaped, 0).c_str());
    out += line;
  }
  for (const auto& s : summaries)
    for (const auto& v : s.first_violations)
      out += "INVARIANT BROKEN (" + s.strategy + "): " + v + "\n";
  return out;
}

nlohmann::json to_json(const std::vector<Summary>& summaries) {
  auto j = [](const Stat& s) {
    return s.defined() ? nlohmann::json{{"mean", s.mean}, {"ci95", s.half}} : nlohmann::json();
  };
  nlohmann::json out = nlohmann::json::array();
  for (const auto& s : summaries)
    out.push_back({{"strategy", s.strategy},
                   {"seeds", s.seeds},
                   {"landed", j(s.landed)},
                   {"ejected", j(s.ejected)},
                   {"ejected_innocent", j(s.innocent)},
                   {"unfinished", j(s.unfinished)},
                   {"p50_minutes", j(s.p50)},
                   {"p95_minutes", j(s.p95)},
                   {"p99_minutes", j(s.p99)},
                   {"p50_to_oracle", j(s.p50_ratio)},
                   {"p95_to_oracle", j(s.p95_ratio)},
                   {"p99_to_oracle", j(s.p99_ratio)},
                   {"builds_per_landed", j(s.builds_per_landed)},
                   {"landings_per_hour", j(s.landings_per_hour)},
                   {"escaped_breakages", j(s.escaped)},
                   {"invariant_violations", s.violations}});
  return out;
}

std::string svg(const std::vector<std::pair<std::string, std::vector<double>>>& samples) {
  constexpr int kW = 760, kH = 420, kLeft = 60, kRight = 170, kTop = 30, kBottom = 50;
  const char* colors[] = {"#444444", "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"};
  double xmax = 1;
  for (const auto& [name, v] : samples) xmax = std::max(xmax, percentile(v, 99));
  const double pw = kW - kLeft - kRight, ph = kH - kTop - kBottom;
  auto x = [&](double m) { return kLeft + std::min(m, xmax) / xmax * pw; };
  auto y = [&](double f) { return kTop + (1 - f) * ph; };
  std::string out;
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" "
                "height=\"100%%\" fill=\"white\"/>\n<text x=\"%d\" y=\"18\">Time to merge "
                "(cumulative share of PRs; up to the worst p99)</text>\n",
                kW, kH, kLeft);
  out += buf;
  for (int i = 0; i <= 4; ++i) {  // axes and grid
    const double f = i / 4.0;
    std::snprintf(buf, sizeof buf,
                  "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                  "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.0f%%</text>\n",
                  kLeft, y(f), kLeft + pw, y(f), kLeft - 6, y(f) + 4, f * 100);
    out += buf;
    const double m = xmax * i / 4;
    std::snprintf(buf, sizeof buf,
                  "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                  "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.0f</text>\n",
                  x(m), kTop, x(m), kTop + ph, x(m), kTop + ph + 16, m);
    out += buf;
  }
  std::snprintf(buf, sizeof buf,
                "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">minutes from approval to "
                "master</text>\n",
                kLeft + pw / 2, kH - 10);
  out += buf;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    auto v = samples[i].second;
    std::sort(v.begin(), v.end());
    const char* color = colors[i % 6];
    std::string points = std::to_string(kLeft) + "," + std::to_string(y(0));
    for (std::size_t k = 0; k < v.size(); ++k) {
      std::snprintf(buf, sizeof buf, " %.1f,%.1f", x(v[k]),
                    y(static_cast<double>(k + 1) / static_cast<double>(v.size())));
      points += buf;
    }
    out += "<polyline fill=\"none\" stroke=\"" + std::string(color) +
           "\" stroke-width=\"2\" points=\"" + points + "\"/>\n";
    std::snprintf(buf, sizeof buf,
                  "<line x1=\"%.1f\" y1=\"%zu\" x2=\"%.1f\" y2=\"%zu\" stroke=\"%s\" "
                  "stroke-width=\"3\"/><text x=\"%.1f\" y=\"%zu\">%s</text>\n",
                  kLeft + pw + 15, kTop + 10 + 20 * i, kLeft + pw + 40, kTop + 10 + 20 * i, color,
                  kLeft + pw + 46, kTop + 14 + 20 * i, samples[i].first.c_str());
    out += buf;
  }
  return out + "</svg>\n";
}

}  // namespace dmz::sim

#include "base/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace dmz::metrics {
namespace {

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string labels_text(const Labels& labels, const char* extra_key = nullptr,
                        const std::string& extra_value = {}) {
  if (labels.empty() && !extra_key) return "";
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out += ",";
    first = false;
    out += k + "=\"" + escape_label(v) + "\"";
  }
  if (extra_key) {
    if (!first) out += ",";
    out += std::string(extra_key) + "=\"" + extra_value + "\"";
  }
  return out + "}";
}

const char* type_name(Type t) {
  switch (t) {
    case Type::Counter:
      return "counter";
    case Type::Gauge:
      return "gauge";
    case Type::Histogram:
      return "histogram";
  }
  return "untyped";
}

}  // namespace

std::string escape_label(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

// The catalog: every metric dmzbot exposes on /metrics, in one place.
Registry& global() {
  static Registry* r = [] {
    auto* g = new Registry;  // never destroyed: threads may record while the process exits
    const auto seconds = exponential_buckets(0.005, 2, 16);  // 5 ms .. ~2.7 min
    const auto minutes = exponential_buckets(15, 2, 14);     // 15 s .. ~34 h
    g->declare("dmzbot_queue_length", Type::Gauge, "Approved PRs waiting for the train.");
    g->declare("dmzbot_train_candidates", Type::Gauge, "Candidates in flight.");
    g->declare("dmzbot_prs_landed_total", Type::Counter, "PRs that reached master.");
    g->declare("dmzbot_innocent_ejections_total", Type::Counter,
               "PRs ejected for a failed build that later landed at the same head (retried): "
               "the failure was a flake or another PR's.");
    g->declare("dmzbot_prs_dequeued_total", Type::Counter,
               "PRs that left the queue without landing, by reason code.");
    g->declare("dmzbot_time_to_merge_seconds", Type::Histogram,
               "From a PR's approval to its landing on master.", minutes);
    g->declare("dmzbot_build_duration_seconds", Type::Histogram,
               "From a candidate reaching the remote to its last required check.", minutes);
    g->declare("dmzbot_builds_started_total", Type::Counter, "Candidates handed to CI.");
    g->declare("dmzbot_builds_per_landed_pr", Type::Gauge,
               "Builds started per PR landed, since the service started.");
    g->declare("dmzbot_webhook_deliveries_total", Type::Counter,
               "Webhook deliveries by forge and result.");
    g->declare("dmzbot_webhook_redeliveries_total", Type::Counter,
               "Webhook deliveries that never reached dmzbot, asked of the forge again, by "
               "repository.");
    g->declare("dmzbot_webhook_deliveries_unfinished", Type::Gauge,
               "Webhook deliveries taken and not yet handled (past the bound, 503).");
    g->declare("dmzbot_forge_api_requests_total", Type::Counter,
               "Requests to forge APIs by forge and HTTP status.");
    g->declare("dmzbot_git_operation_seconds", Type::Histogram,
               "Git operations on a repository's mirror and remote.", seconds);
    g->declare("dmzbot_signature_verifications_total", Type::Counter,
               "Signature verifications by format and result.");
    g->declare("dmzbot_policy_checks_deferred_total", Type::Counter,
               "Policy verdicts that failed on dmzbot's side and were asked again.");
    g->declare("dmzbot_store_write_seconds", Type::Histogram, "Saves of a state change.",
               exponential_buckets(0.0005, 2, 14));
    g->declare("dmzbot_repository_healthy", Type::Gauge,
               "1 when the repository's remote answers and its state is served.");
    g->declare("dmzbot_outbox_pending", Type::Gauge, "Messages waiting for their forge.");
    return g;
  }();
  return *r;
}

std::vector<double> exponential_buckets(double start, double factor, int count) {
  std::vector<double> out;
  for (int i = 0; i < count; ++i, start *= factor) out.push_back(start);
  return out;
}

void Registry::declare(std::string name, Type type, std::string help, std::vector<double> buckets) {
  std::lock_guard lock(mu_);
  Family& f = families_[std::move(name)];
  f.type = type;
  f.help = std::move(help);
  std::sort(buckets.begin(), buckets.end());
  f.buckets = std::move(buckets);
}

Registry::Family* Registry::family(std::string_view name, Type type) {
  auto it = families_.find(name);
  return it == families_.end() || it->second.type != type ? nullptr : &it->second;
}

void Registry::add(std::string_view name, const Labels& labels, double amount) {
  std::lock_guard lock(mu_);
  if (Family* f = family(name, Type::Counter); f && amount >= 0) f->series[labels].value += amount;
}

void Registry::set(std::string_view name, const Labels& labels, double value) {
  std::lock_guard lock(mu_);
  if (Family* f = family(name, Type::Gauge)) f->series[labels].value = value;
}

void Registry::clear(std::string_view name) {
  std::lock_guard lock(mu_);
  if (Family* f = family(name, Type::Gauge)) f->series.clear();
}

void Registry::observe(std::string_view name, const Labels& labels, double value) {
  std::lock_guard lock(mu_);
  Family* f = family(name, Type::Histogram);
  if (!f) return;
  Series& s = f->series[labels];
  if (s.hits.empty()) s.hits.assign(f->buckets.size() + 1, 0);
  auto at = std::lower_bound(f->buckets.begin(), f->buckets.end(), value);  // le: value <= bound
  ++s.hits[static_cast<std::size_t>(at - f->buckets.begin())];
  s.value += value;
  ++s.count;
}

double Registry::value(std::string_view name, const Labels& labels) const {
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) return 0;
  auto s = it->second.series.find(labels);
  if (s == it->second.series.end()) return 0;
  return it->second.type == Type::Histogram ? static_cast<double>(s->second.count)
                                            : s->second.value;
}

std::string Registry::text() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& [name, f] : families_) {
    out += "# HELP " + name + " " + escape_label(f.help) + "\n";
    out += "# TYPE " + name + " " + type_name(f.type) + "\n";
    for (const auto& [labels, s] : f.series) {
      if (f.type != Type::Histogram) {
        out += name + labels_text(labels) + " " + number(s.value) + "\n";
        continue;
      }
      std::uint64_t cumulative = 0;
      for (std::size_t i = 0; i <= f.buckets.size(); ++i) {
        cumulative += s.hits[i];
        const std::string le = i < f.buckets.size() ? number(f.buckets[i]) : "+Inf";
        out += name + "_bucket" + labels_text(labels, "le", le) + " " + std::to_string(cumulative) +
               "\n";
      }
      out += name + "_sum" + labels_text(labels) + " " + number(s.value) + "\n";
      out += name + "_count" + labels_text(labels) + " " + std::to_string(s.count) + "\n";
    }
  }
  return out;
}

}  // namespace dmz::metrics

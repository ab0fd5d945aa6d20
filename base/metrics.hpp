// Counters, gauges and histograms with labels, and their Prometheus text exposition (format
// 0.0.4). Written by hand because Debian 12 packages no C++ Prometheus client; it is small,
// and its output is checked by Python's prometheus_client parser in the tests.
// Families are declared once (name, help, type, buckets); recording into an undeclared family
// is ignored, so a typo shows as a missing series in the tests, never as a crash.
// Threading: every method is safe from any thread.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dmz::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

enum class Type { Counter, Gauge, Histogram };

class Registry {
 public:
  void declare(std::string name, Type type, std::string help,
               std::vector<double> buckets = {});  // buckets: histograms only, ascending

  void add(std::string_view name, const Labels& labels, double amount = 1);  // counter
  void set(std::string_view name, const Labels& labels, double value);       // gauge
  void observe(std::string_view name, const Labels& labels, double value);   // histogram
  // Removes every series of a gauge (before setting the current ones again).
  void clear(std::string_view name);

  // The value of one series (a histogram's count), 0 if it has none: for tests.
  double value(std::string_view name, const Labels& labels) const;

  std::string text() const;

 private:
  struct Series {
    double value = 0;                 // counter, gauge; a histogram's sum
    std::vector<std::uint64_t> hits;  // histogram: per bucket (not cumulative), then +Inf
    std::uint64_t count = 0;
  };
  struct Family {
    Type type = Type::Counter;
    std::string help;
    std::vector<double> buckets;
    std::map<Labels, Series> series;
  };
  Family* family(std::string_view name, Type type);

  mutable std::mutex mu_;
  std::map<std::string, Family, std::less<>> families_;
};

// The process's registry, with every family dmzbot records declared (the catalog below).
Registry& global();

// Exponential buckets: start, start*factor, ... (count of them).
std::vector<double> exponential_buckets(double start, double factor, int count);

// A label value or help text escaped for the exposition format.
std::string escape_label(std::string_view value);

}  // namespace dmz::metrics

#include "base/metrics.hpp"

#include <doctest/doctest.h>

namespace dmz::metrics {
namespace {

TEST_CASE("counters, gauges and histograms in the exposition format") {
  Registry r;
  r.declare("dmz_landed_total", Type::Counter, "PRs landed.");
  r.declare("dmz_queue_length", Type::Gauge, "PRs waiting.");
  r.declare("dmz_seconds", Type::Histogram, "Durations.", {1, 10});
  r.add("dmz_landed_total", {{"repo", "a/b"}});
  r.add("dmz_landed_total", {{"repo", "a/b"}}, 2);
  r.add("dmz_landed_total", {{"repo", "a/b"}}, -5);  // a counter never goes down
  r.set("dmz_queue_length", {{"repo", "a/b"}}, 4);
  r.observe("dmz_seconds", {{"repo", "a/b"}}, 0.5);
  r.observe("dmz_seconds", {{"repo", "a/b"}}, 10);  // le="10" includes 10
  r.observe("dmz_seconds", {{"repo", "a/b"}}, 99);
  r.add("dmz_not_declared", {});  // ignored
  CHECK(r.value("dmz_landed_total", {{"repo", "a/b"}}) == 3);
  CHECK(r.value("dmz_seconds", {{"repo", "a/b"}}) == 3);
  CHECK(r.text() ==
        "# HELP dmz_landed_total PRs landed.\n"
        "# TYPE dmz_landed_total counter\n"
        "dmz_landed_total{repo=\"a/b\"} 3\n"
        "# HELP dmz_queue_length PRs waiting.\n"
        "# TYPE dmz_queue_length gauge\n"
        "dmz_queue_length{repo=\"a/b\"} 4\n"
        "# HELP dmz_seconds Durations.\n"
        "# TYPE dmz_seconds histogram\n"
        "dmz_seconds_bucket{repo=\"a/b\",le=\"1\"} 1\n"
        "dmz_seconds_bucket{repo=\"a/b\",le=\"10\"} 2\n"
        "dmz_seconds_bucket{repo=\"a/b\",le=\"+Inf\"} 3\n"
        "dmz_seconds_sum{repo=\"a/b\"} 109.5\n"
        "dmz_seconds_count{repo=\"a/b\"} 3\n");
  r.clear("dmz_queue_length");
  CHECK(r.text().find("dmz_queue_length{") == std::string::npos);
}

TEST_CASE("label values are escaped") {
  CHECK(escape_label("a\"b\\c\nd") == "a\\\"b\\\\c\\nd");
  Registry r;
  r.declare("x", Type::Counter, "h");
  r.add("x", {{"repo", "q\"x"}});
  CHECK(r.text().find("x{repo=\"q\\\"x\"} 1\n") != std::string::npos);
}

TEST_CASE("exponential buckets") {
  CHECK(exponential_buckets(1, 2, 4) == std::vector<double>{1, 2, 4, 8});
}

}  // namespace
}  // namespace dmz::metrics

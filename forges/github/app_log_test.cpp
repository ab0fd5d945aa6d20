// The App's delivery log shared by its repositories: one read while it is fresh and reaches
// back far enough, a new one otherwise; a failed read is not kept.
#include "forges/github/app_log.hpp"

#include <doctest/doctest.h>

namespace dmz::forges::github {
namespace {

namespace q = queue;

TEST_CASE("app delivery log: a fresh read reaching back far enough is shared") {
  AppDeliveryLog shared(30'000);
  std::vector<q::Millis> reads;  // the `since` of each read made
  Result<std::vector<HookDelivery>> answer = std::vector<HookDelivery>{{1, "g1"}};
  auto reader = [&](q::Millis since) {
    reads.push_back(since);
    return answer;
  };
  auto first = shared.deliveries(100, 1'000, reader);
  REQUIRE(first.ok());
  CHECK(first->at == 1'000);
  REQUIRE(first->log.size() == 1);
  CHECK(first->log[0].guid == "g1");
  // Another repository, within max_age, back to a later time: the same read.
  answer = std::vector<HookDelivery>{{2, "g2"}};
  auto second = shared.deliveries(200, 31'000, reader);
  REQUIRE(second.ok());
  CHECK(second->at == 1'000);
  CHECK(second->log[0].guid == "g1");
  CHECK(reads == std::vector<q::Millis>{100});
  // Back to an earlier time than the read reached: read again.
  auto earlier = shared.deliveries(50, 31'000, reader);
  REQUIRE(earlier.ok());
  CHECK(earlier->log[0].guid == "g2");
  CHECK(earlier->at == 31'000);
  CHECK(reads == std::vector<q::Millis>{100, 50});
  // Older than max_age: read again.
  CHECK(shared.deliveries(200, 61'001, reader)->at == 61'001);
  CHECK(reads == std::vector<q::Millis>{100, 50, 200});
  // A failed read is the caller's error and is not kept: the next one reads.
  answer = unavailable("502");
  CHECK(shared.deliveries(300, 100'000, reader).code() == Code::kUnavailable);
  answer = std::vector<HookDelivery>{{3, "g3"}};
  auto after = shared.deliveries(300, 100'000, reader);
  REQUIRE(after.ok());
  CHECK(after->log[0].guid == "g3");
  CHECK(reads.size() == 5);
}

}  // namespace
}  // namespace dmz::forges::github

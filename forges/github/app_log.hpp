// A GitHub App's webhook delivery log, read once for all the repositories the App serves: the
// App's log names every repository's deliveries, so each repository reading it back at each
// reconciliation would cost N reads of the same pages. A read that is fresh enough and
// reaches back far enough answers every repository; each keeps its own deliveries.
// Threading: safe from any thread (each repository's forge thread); one read at a time.
#pragma once

#include <functional>
#include <mutex>
#include <vector>

#include "base/status.hpp"
#include "forges/github/client.hpp"

namespace dmz::forges::github {

class AppDeliveryLog {
 public:
  struct Read {
    std::vector<HookDelivery> log;  // newest first, back to at least the `since` asked
    queue::Millis at = 0;           // when it was read (dmzbot's clock)
  };
  using Reader = std::function<Result<std::vector<HookDelivery>>(queue::Millis since)>;

  // A read made at most `max_age` ago that reached back to `since` is shared.
  explicit AppDeliveryLog(queue::Millis max_age) : max_age_(max_age) {}

  // The log back to `since` at `now`: the shared read when it will do, else `read(since)`
  // (the caller's client; the App's JWT is the same for all), kept for the others. A failed
  // read is not kept.
  Result<Read> deliveries(queue::Millis since, queue::Millis now, const Reader& read);

 private:
  const queue::Millis max_age_;
  std::mutex mu_;
  bool have_ = false;
  Read last_;
  queue::Millis last_since_ = 0;
};

}  // namespace dmz::forges::github

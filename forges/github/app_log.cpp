#include "forges/github/app_log.hpp"

namespace dmz::forges::github {

Result<AppDeliveryLog::Read> AppDeliveryLog::deliveries(queue::Millis since, queue::Millis now,
                                                        const Reader& read) {
  // Held across the read: a repository that comes meanwhile waits for it and shares it.
  std::lock_guard lock(mu_);
  if (have_ && now - last_.at <= max_age_ && last_since_ <= since) return last_;
  auto log = read(since);
  if (!log) return log.error();
  last_ = Read{std::move(*log), now};
  last_since_ = since;
  have_ = true;
  return last_;
}

}  // namespace dmz::forges::github

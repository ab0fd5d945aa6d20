#include "forges/forge.hpp"

namespace dmz::forges {

Result<queue::PrOpened> Forge::register_pull(const RemoteRefs&, const Registration&,
                                             queue::Millis) const {
  return invalid("pull requests of a " + std::string(kind()) +
                 " repository are registered by the forge, not through dmzbot's API");
}

Result<Delivery> Forge::webhook(const InboundRequest&, queue::Millis) const {
  return not_found("the " + std::string(kind()) + " forge has no webhooks");
}

}  // namespace dmz::forges

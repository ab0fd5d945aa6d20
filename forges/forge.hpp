// The forge port: everything forge-specific behind one interface. Inbound, a forge turns what
// it hears (a webhook request, the refs a fetch saw, a registration on the plain forge) into
// domain events; outbound, it carries out the messages of the outbox (comments, statuses,
// labels). A forge never touches git or the store.
// Threading: the inbound functions are pure and may run on any thread; deliver() blocks and is
// called on the outbox's own thread, one message at a time per forge.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/status.hpp"
#include "queue/model.hpp"

namespace dmz::forges {

// What a fetch of the repository's remote saw.
struct RemoteRefs {
  std::map<std::string, queue::Sha> branches;  // branch name -> commit
  std::map<std::string, queue::Sha> tags;      // annotated tag name -> the commit it peels to
  // Branches (or "tags/<name>") whose new head does not contain the head seen before:
  // a force-push dropped published commits.
  std::set<std::string> rewritten;
};

// An inbound HTTP request for a forge (a webhook), without the socket.
struct InboundRequest {
  std::map<std::string, std::string> headers;  // names lowercased
  std::string body;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// What a webhook delivery means for one repository.
struct Delivery {
  std::string id;    // the forge's delivery id (a redelivery repeats it)
  std::string repo;  // "owner/name"; empty for deliveries about no repository (ping)
  std::vector<queue::Event> events;
};

// A plain-forge registration of a pull request (POST .../pulls).
struct Registration {
  int number = 0;
  std::string branch;  // or "tags/<name>" for a pull request by signed tag
  std::string author, title;
};

// One message of the outbox: persisted with the state change that produced it, delivered
// after the change is saved, retried with backoff until the forge takes it.
struct OutboxMessage {
  std::int64_t id = 0;
  std::string repo;
  queue::Notify notice;
  int attempts = 0;       // failed deliveries so far
  queue::Millis next_at;  // not before this time
  std::string last_error;
};

class Forge {
 public:
  virtual ~Forge() = default;
  virtual std::string_view kind() const = 0;  // "plain", "github", ...

  // The events a fetch implies: pushes to PR heads, PRs whose head vanished, a moved master.
  virtual std::vector<queue::Event> events_from_fetch(const queue::RepoState& state,
                                                      const RemoteRefs& refs,
                                                      queue::Millis now) const = 0;

  // A registration through dmzbot's own API; forges with an API of their own refuse it.
  virtual Result<queue::PrOpened> register_pull(const RemoteRefs& refs, const Registration& r,
                                                queue::Millis now) const;

  // A webhook: authenticated (unauthenticated when the signature is missing or wrong) and
  // parsed (invalid for a malformed payload). Forges without webhooks answer not_found.
  virtual Result<Delivery> webhook(const InboundRequest& request, queue::Millis now) const;

  // Carries out one message. A transient failure (unavailable) is retried later; any other
  // error drops the message.
  virtual Status deliver(const OutboxMessage& message) = 0;
};

}  // namespace dmz::forges

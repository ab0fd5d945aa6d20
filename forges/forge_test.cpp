// What a reconciliation computed from a snapshot may still apply once its API calls are done.
#include "forges/forge.hpp"

#include <doctest/doctest.h>

namespace dmz::forges {
namespace {

namespace q = queue;

q::PullRequest pr(int n, const q::Sha& head) {
  q::PullRequest p;
  p.number = n;
  p.head = head;
  return p;
}

TEST_CASE("still_current: a reconciled event about a PR whose head moved since is dropped") {
  const q::Sha a(40, 'a'), b(40, 'b'), c(40, 'c');
  q::RepoState snapshot;
  snapshot.prs[1] = pr(1, a);
  snapshot.prs[2] = pr(2, a);
  q::RepoState now = snapshot;
  now.prs[2].head = c;    // a synchronize webhook applied while the API was read
  now.prs[3] = pr(3, c);  // an opened webhook likewise
  // The list said #1 moved to b (its push webhook was lost): still the state it was computed on.
  CHECK(still_current(snapshot, now, q::PrPushed{1, b, 0, false}));
  // #2 moved to c meanwhile: the list's b is older than what the webhook said.
  CHECK_FALSE(still_current(snapshot, now, q::PrPushed{2, b, 0, false}));
  CHECK_FALSE(still_current(snapshot, now, q::PrClosed{2, 0}));
  CHECK_FALSE(still_current(snapshot, now, q::MergeRequested{2, b, "alice", 0}));
  // #3 was unknown to the snapshot and is known now: its opening came by webhook.
  CHECK_FALSE(still_current(snapshot, now, q::PrOpened{3, "f", "dev", "t", b, 0}));
  // #4, unknown to both: a missed opening, applied.
  CHECK(still_current(snapshot, now, q::PrOpened{4, "f", "dev", "t", b, 0}));
  // A check on a candidate is about no PR.
  CHECK(still_current(snapshot, now,
                      q::CheckReported{c, q::Check{"ci", q::CheckState::Success, "", "", 0}, 0}));
}

}  // namespace
}  // namespace dmz::forges

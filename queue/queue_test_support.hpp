// Test support for queue/ tests: names for commits and a queue of approved PRs as the engine
// leaves it. Header-only; for tests. Threading: none.
#pragma once

#include <doctest/doctest.h>

#include <string>

#include "queue/engine.hpp"

namespace dmz::queue::testing {

// A 40-character name: `kind` then n, zero-padded.
inline Sha sha_of(char kind, int n) {
  std::string s = std::to_string(n);
  return std::string(1, kind) + std::string(39 - s.size(), '0') + s;
}

// PRs 1..count opened, approved and passing the policy `spacing` apart, the last `spacing`
// before `now`; PR n changes p<n>/x.cpp.
inline void queue_approved(RepoState& s, const Settings& cfg, int count, Millis now,
                           Millis spacing) {
  for (int n = 1; n <= count; ++n) {
    const Millis at = now - spacing * (count - n + 1);
    const Sha head = sha_of('h', n);
    for (const Event& e :
         std::initializer_list<Event>{PrOpened{n, "f" + std::to_string(n), "dev", "t", head, at},
                                      MergeRequested{n, head, "mm", at},
                                      PolicyChecked{.number = n,
                                      .sha = head,
                                      .pass = true,
                                      .at = at,
                                      .paths = {"p" + std::to_string(n) + "/x.cpp"},
                                      .target = s.master,
                                      .epoch = s.policy_epoch}})
      REQUIRE_FALSE(handle(s, e, cfg).rejected);
  }
}

}  // namespace dmz::queue::testing

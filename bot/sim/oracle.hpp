// The oracle: the lower bound a merge queue could reach on a workload if it knew every outcome
// in advance. At each approval it starts one build of master plus every good PR so far (bad
// PRs and PRs whose semantic conflict would matter left out, flaky builds known), with as many
// runners as it likes; master fast-forwards whenever such a build finishes. A PR lands when
// the first build that holds it finishes.
// Threading: a pure function of the workload.
#pragma once

#include "bot/sim/world.hpp"

namespace dmz::sim {

RunResult oracle(const Workload& workload);

}  // namespace dmz::sim

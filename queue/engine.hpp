// The merge-queue engine: a pure, deterministic function from (state, event) to actions.
// No I/O, no clock (time arrives in events), no threads. The shell persists `state` after each
// call and before executing the actions.
// Threading: not thread-safe; one caller per RepoState (the service's engine thread).
#pragma once

#include <optional>

#include "queue/model.hpp"

namespace dmz::queue {

// Applies `event` to `state`. On rejection `state` is left exactly as it was.
Outcome handle(RepoState& state, const Event& event, const Settings& settings);

// After a restart: the actions that were in flight for `state` (policy checks, merges,
// builds, fast-forwards, and the reset of dmz: to master when the train holds no chain, else,
// but for serial, to its tip), to be executed again. Every action is idempotent in the shell.
std::vector<Action> resume(const RepoState& state, const Settings& settings);

// The PRs waiting for the train, in the order they will enter it (priority, highest first,
// then queued_at, then number); PRs held while a failure ahead of them is decided are not.
std::vector<int> queue_order(const RepoState& state);

// The strategies' sizes, for the ETA: candidates allowed in flight now (serial and batch:
// max_train; train and adaptive: the current window), and how many PRs the next candidate
// takes when `waiting` PRs wait for `free_slots` places in the window.
std::size_t window_of(const RepoState& state, const Settings& settings);
std::size_t batch_size(const RepoState& state, const Settings& settings, std::size_t waiting,
                       std::size_t free_slots);

// Adaptive under load: a PR's failure in the chain would be expected to fail the build of at
// least one PR behind it (the observed failure rate times the PRs in the train, or queued to
// enter it soon, or arriving during a build). Then every PR is probed before it joins the chain.
bool under_load(const Settings& settings, const RepoState& state);

// Whether a PR in `status` is approved and not decided yet: waiting for the train or in it.
bool in_queue(PrStatus status);

// How likely `pr` is to fail a build, as the adaptive strategy judges it: the observed failure
// rate, moved by the PR's own CI before the queue, its author's and directories' history, and
// a passed probe.
double failure_risk(const RepoState& state, const PullRequest& pr);

// Whether two PRs may conflict: they change a common path (or one's paths are unknown).
bool may_conflict(const PullRequest& a, const PullRequest& b);
// The chance, observed here, that a PR changing a path another changes fails a build holding
// both when they were never built together (nullopt until 16 builds of each kind are seen).
std::optional<double> conflict_risk(const RepoState& state);

}  // namespace dmz::queue

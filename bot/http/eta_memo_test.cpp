#include "bot/http/eta_memo.hpp"

#include <doctest/doctest.h>

#include <thread>
#include <vector>

#include "queue/eta.hpp"

namespace dmz {
namespace {

using queue::Millis;

// An adaptive queue of three approved PRs with builds observed: its estimates are a forecast.
queue::RepoState three_waiting() {
  queue::RepoState st;
  st.repo = "acme/widget";
  st.master = std::string(40, 'a');
  st.observed.builds = 50;
  st.observed.build_ms = 600'000;
  for (int n = 1; n <= 3; ++n) {
    queue::PullRequest pr;
    pr.number = n;
    pr.status = queue::PrStatus::Queued;
    pr.head = std::string(40, char('0' + n));
    pr.approval = queue::Approval{pr.head, "mm", 1};
    pr.queued_at = n;
    st.prs[n] = pr;
  }
  return st;
}

queue::Settings adaptive() {
  queue::Settings cfg;
  cfg.required_checks = {"ci"};
  cfg.strategy = queue::Strategy::Adaptive;
  return cfg;
}

TEST_CASE("eta memo: viewers of one state share an answer; a change or the clock computes anew") {
  EtaMemo memo;
  queue::RepoState st = three_waiting();
  const queue::Settings cfg = adaptive();
  const std::vector<Millis> landed = {700'000, 700'000};
  const Millis now = 1'000'000;

  const auto first = memo.expected_landings(st, cfg, landed, now);
  CHECK(first.size() == 3);
  CHECK(first == queue::expected_landings(st, cfg, landed, now));
  CHECK(memo.computed() == 1);
  // Another viewer a moment later, of the same state: remembered.
  CHECK(memo.expected_landings(st, cfg, landed, now + 500) == first);
  CHECK(memo.computed() == 1);

  SUBCASE("a new PR in the queue") {
    queue::PullRequest pr = st.prs.at(3);
    pr.number = 4;
    pr.queued_at = 4;
    st.prs[4] = pr;
    const auto more = memo.expected_landings(st, cfg, landed, now + 500);
    CHECK(memo.computed() == 2);
    CHECK(more.count(4) == 1);
    CHECK(more == queue::expected_landings(st, cfg, landed, now + 500));
  }
  SUBCASE("what the engine observed") {
    st.observed.build_ms = 1'200'000;
    const auto slower = memo.expected_landings(st, cfg, landed, now);
    CHECK(memo.computed() == 2);
    CHECK(slower.at(1) > first.at(1));
  }
  SUBCASE("the landed durations, or the settings") {
    memo.expected_landings(st, cfg, {700'000}, now);
    CHECK(memo.computed() == 2);
    queue::Settings serial = cfg;
    serial.strategy = queue::Strategy::Serial;
    CHECK(memo.expected_landings(st, serial, {700'000}, now) ==
          queue::expected_landings(st, serial, {700'000}, now));
    CHECK(memo.computed() == 3);
  }
  SUBCASE("the clock, past the reuse") {
    const Millis later = now + EtaMemo::kReuse;
    CHECK(memo.expected_landings(st, cfg, landed, later) ==
          queue::expected_landings(st, cfg, landed, later));
    CHECK(memo.computed() == 2);
  }
  SUBCASE("another repository with an equal queue") {
    queue::RepoState other = st;
    other.repo = "acme/gadget";
    memo.expected_landings(other, cfg, landed, now);
    CHECK(memo.computed() == 2);
    // Each repository keeps its own newest answer.
    memo.expected_landings(st, cfg, landed, now);
    CHECK(memo.computed() == 2);
  }
}

TEST_CASE("eta memo: viewers asking at once get one computation and the same answer") {
  EtaMemo memo;
  const queue::RepoState st = three_waiting();
  const queue::Settings cfg = adaptive();
  const std::vector<Millis> landed = {700'000};
  std::vector<std::map<int, Millis>> answers(8);
  std::vector<std::thread> viewers;
  for (auto& a : answers)
    viewers.emplace_back([&] { a = memo.expected_landings(st, cfg, landed, 1'000'000); });
  for (auto& v : viewers) v.join();
  CHECK(memo.computed() == 1);
  for (const auto& a : answers) CHECK(a == answers.front());
  CHECK(answers.front().size() == 3);
}

}  // namespace
}  // namespace dmz

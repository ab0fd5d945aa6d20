// [repo.queue]: the strategy and its settings, each problem reported at its line.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "config/config.hpp"
#include "tests/support.hpp"

namespace dmz::config {
namespace {

using Lines = std::vector<std::string>;

const std::string kRepo =
    "[[repo]]\nname = \"acme/widgets\"\nremote = \"/srv/widgets.git\"\n"
    "required_checks = [\"ci/build\"]\n";  // lines 1-4

LoadResult load_text(const test::TempDir& dir, const std::string& text) {
  test::write_file(dir / "dmzbot.toml", text);
  return load(dir / "dmzbot.toml");
}

// "line: message" for each problem (the file name checked and stripped).
Lines problems(const std::string& text) {
  test::TempDir dir;
  LoadResult r = load_text(dir, text);
  CHECK_FALSE(r.config.has_value());
  Lines out;
  const std::string file = (dir / "dmzbot.toml").string();
  for (const auto& p : r.problems) {
    CHECK(p.file == file);
    out.push_back(std::to_string(p.line) + ": " + p.message);
  }
  return out;
}

Queue queue_of(const std::string& text) {
  test::TempDir dir;
  LoadResult r = load_text(dir, text);
  std::string all;
  for (const auto& p : r.problems) all += p.to_string() + "\n";
  INFO(all);
  REQUIRE(r.config.has_value());
  return r.config->repos.at(0).queue;
}

TEST_CASE("config: [repo.queue] defaults to serial with candidate branches dmz-queue/{id}") {
  Queue q = queue_of(kRepo);
  CHECK(q.strategy == queue::Strategy::Serial);
  CHECK(q.max_batch == 1);
  CHECK(q.flaky_retries == 0);
  CHECK(q.candidate_branch == "dmz-queue/{id}");
  CHECK(candidate_branch(q.candidate_branch, 42) == "dmz-queue/42");
}

TEST_CASE("config: [repo.queue] with every setting") {
  Queue q =
      queue_of(kRepo +
               "[repo.queue]\nstrategy = \"adaptive\"\nmax_batch = 4\nwindow_start = 6\n"
               "window_floor = 2\nwindow_max = 12\nflaky_retries = 1\n"
               "priority_interrupts = true\nlanes = \"groups\"\n"
               "candidate_branch = \"queue/c-{id}\"\n"
               "[[repo.queue.path_groups]]\nname = \"docs\"\npaths = [\"docs/**\"]\n"
               "[[repo.queue.path_groups]]\nname = \"web\"\npaths = [\"web/**\", \"*.css\"]\n");
  CHECK(q.strategy == queue::Strategy::Adaptive);
  CHECK(q.max_batch == 4);
  CHECK(q.window_start == 6);
  CHECK(q.window_floor == 2);
  CHECK(q.window_max == 12);
  CHECK(q.flaky_retries == 1);
  CHECK(q.priority_interrupts);
  CHECK(q.lanes == queue::Lanes::Groups);
  REQUIRE(q.path_groups.size() == 2);
  CHECK(q.path_groups[1].name == "web");
  CHECK(q.path_groups[1].globs == std::vector<std::string>{"web/**", "*.css"});
  CHECK(q.candidate_branch == "queue/c-{id}");
  // batch and adaptive batch by default; an empty pattern pushes dmz only.
  CHECK(queue_of(kRepo + "[repo.queue]\nstrategy = \"batch\"\n").max_batch == 8);
  CHECK(queue_of(kRepo + "[repo.queue]\ncandidate_branch = \"\"\n").candidate_branch.empty());
}

TEST_CASE("config: adaptive needs candidate branches unless the local runner builds alone") {
  // Its probes are built beside the train, never on dmz: CI must find them on a branch.
  CHECK(problems(kRepo + "[repo.queue]\nstrategy = \"adaptive\"\ncandidate_branch = \"\"\n") ==
        Lines{"7: repo.queue.candidate_branch = \"\" leaves strategy \"adaptive\" no branch to "
              "push its probes to (they are built beside the train, never on dmz), so CI could "
              "not build them: keep a pattern such as \"dmz-queue/{id}\""});
  // train pushes its tip to dmz, and the local runner builds from the mirror: both may.
  CHECK(queue_of(kRepo + "[repo.queue]\nstrategy = \"train\"\ncandidate_branch = \"\"\n")
            .candidate_branch.empty());
  CHECK(queue_of("[[repo]]\nname = \"acme/widgets\"\nremote = \"/srv/widgets.git\"\n"
                 "[repo.runner]\ncommand = \"make test\"\n"
                 "[repo.queue]\nstrategy = \"adaptive\"\ncandidate_branch = \"\"\n")
            .candidate_branch.empty());
}

TEST_CASE("config: [repo.queue] problems name their line") {
  CHECK(problems(kRepo + "[repo.queue]\nstrategy = \"zuul\"\n") ==
        Lines{"6: repo.queue.strategy must be \"serial\", \"batch\", \"train\" or \"adaptive\", "
              "not \"zuul\""});
  CHECK(problems(kRepo + "[repo.queue]\nstrategy = \"train\"\nmax_batch = 0\n") ==
        Lines{"7: repo.queue.max_batch must be between 1 and 64, not 0"});
  CHECK(problems(kRepo + "[repo.queue]\nstrategy = \"train\"\nwindow_start = 9\n"
                         "window_max = 4\n") ==
        Lines{"5: [repo.queue] needs window_floor <= window_start <= window_max (1, 9, 4)"});
  CHECK(problems(kRepo + "[repo.queue]\nflaky_retries = 1\n") ==
        Lines{"6: repo.queue.flaky_retries needs strategy \"batch\", \"train\" or \"adaptive\" "
              "(serial fails a candidate at its first failure)"});
  CHECK(problems(kRepo + "[repo.queue]\nstrategy = \"train\"\nlanes = \"paths\"\n") ==
        Lines{"7: repo.queue.lanes needs strategy \"adaptive\""});
  CHECK(problems(kRepo + "[repo.queue]\nstrategy = \"adaptive\"\nlanes = \"groups\"\n") ==
        Lines{"7: repo.queue.lanes = \"groups\" needs [[repo.queue.path_groups]]"});
  CHECK(problems(kRepo + "[repo.queue]\ncandidate_branch = \"dmz/{id}\"\n") ==
        Lines{"6: repo.queue.candidate_branch 'dmz/{id}' is under dmz/, which git cannot hold "
              "beside the branch itself"});
  CHECK(problems(kRepo + "[repo.queue]\ncandidate_branch = \"queue\"\n") ==
        Lines{"6: repo.queue.candidate_branch must hold \"{id}\" once, not 'queue'"});
  CHECK(problems(kRepo + "[repo.queue]\ncandidate_branch = \"q..{id}\"\n") ==
        Lines{"6: repo.queue.candidate_branch 'q..{id}' makes invalid branch names"});
  CHECK(problems(kRepo + "[repo.queue]\nstratgy = \"batch\"\n") ==
        Lines{"6: unknown key 'stratgy' in [repo.queue]"});
}

// dmzbot deletes every branch the pattern names that is not a live candidate.
TEST_CASE("config: [repo.queue] candidate_branch must name no one else's branches") {
  const std::string why = "': dmzbot deletes the branches it names that are not live candidates";
  CHECK(problems(kRepo + "[repo.queue]\ncandidate_branch = \"bug/{id}\"\n") ==
        Lines{"6: repo.queue.candidate_branch 'bug/{id}' overlaps 'bug/*" + why});
  CHECK(problems(kRepo + "[repo.queue]\ncandidate_branch = \"wip/{id}\"\n") ==
        Lines{"6: repo.queue.candidate_branch 'wip/{id}' overlaps 'wip/*" + why});
  CHECK(problems(kRepo + "hotfix_branches = \"fix-*\"\n[repo.queue]\ncandidate_branch = "
                         "\"fix-{id}\"\n") ==
        Lines{"7: repo.queue.candidate_branch 'fix-{id}' overlaps 'fix-*" + why});
  CHECK(problems(kRepo + "master = \"q/7\"\n[repo.queue]\ncandidate_branch = \"q/{id}\"\n") ==
        Lines{"7: repo.queue.candidate_branch 'q/{id}' overlaps 'q/7" + why});
  CHECK(problems(kRepo + "[repo.queue]\ncandidate_branch = \"staging/{id}\"\n") ==
        Lines{"6: repo.queue.candidate_branch 'staging/{id}' is under staging/, which git "
              "cannot hold beside the branch itself"});
  CHECK(problems(kRepo + "production = \"q1/prod\"\n[repo.queue]\ncandidate_branch = "
                         "\"q{id}\"\n") ==
        Lines{"7: repo.queue.candidate_branch 'q{id}' holds q1/prod under it, which git cannot "
              "hold beside the branch itself"});
  // The default is checked too, at [repo.queue] or else at [[repo]].
  CHECK(problems(kRepo + "branch_patterns = [\"*/*\"]\n") ==
        Lines{"1: repo.queue.candidate_branch 'dmz-queue/{id}' overlaps '*/*" + why});
  CHECK(problems(kRepo + "branch_patterns = [\"*/*\"]\n[repo.queue]\nstrategy = \"batch\"\n") ==
        Lines{"6: repo.queue.candidate_branch 'dmz-queue/{id}' overlaps '*/*" + why});
  CHECK(
      queue_of(kRepo + "[repo.queue]\ncandidate_branch = \"bugs-queue/{id}\"\n").candidate_branch ==
      "bugs-queue/{id}");
  CHECK(queue_of(kRepo + "branch_patterns = [\"*/*\"]\n[repo.queue]\ncandidate_branch = \"\"\n")
            .candidate_branch.empty());
}

TEST_CASE("config: candidate branch names map back to their candidate, and only those") {
  CHECK(candidate_of_branch("dmz-queue/{id}", "dmz-queue/17") == std::uint64_t{17});
  CHECK(candidate_of_branch("q/{id}-x", "q/5-x") == std::uint64_t{5});
  CHECK_FALSE(candidate_of_branch("dmz-queue/{id}", "dmz-queue/"));
  CHECK_FALSE(candidate_of_branch("dmz-queue/{id}", "dmz-queue/017"));
  CHECK_FALSE(candidate_of_branch("dmz-queue/{id}", "dmz-queue/1a"));
  CHECK_FALSE(candidate_of_branch("dmz-queue/{id}", "master"));
  CHECK_FALSE(candidate_of_branch("dmz-queue/{id}", "dmz-queue/99999999999999999999"));
  CHECK_FALSE(candidate_of_branch("", "dmz-queue/1"));
}

}  // namespace
}  // namespace dmz::config

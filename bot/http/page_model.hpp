// What the status pages show, computed from what the service already keeps: a repository's hot
// state and health, its recent event log and its finished PRs become plain structs that the
// HTML renderer (pages.hpp) prints. Also the warnings that need a person, and the candidates
// as the event log tells them (pushes, checks, landings) for the expected times.
// Threading: pure functions (but for the EtaMemo a caller may pass, which is thread-safe).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bot/driver/driver.hpp"
#include "bot/http/api.hpp"
#include "bot/http/eta_memo.hpp"
#include "bot/http/releases_view.hpp"
#include "bot/store/store.hpp"
#include "queue/eta.hpp"
#include "queue/model.hpp"

namespace dmz::page {

using queue::Millis;

// One candidate as the event log tells it: when it reached dmz, what each check reported,
// whether and when it landed.
struct CandidateRecord {
  queue::CandidateId id = 0;
  queue::Sha sha;
  Millis pushed_at = 0;
  Millis landed_at = 0;  // 0: has not landed
  bool ended = false;    // no longer in the train (landed, backed out or dropped)
  // The first event after its push that may have taken it off dmz (0: none yet): it was on
  // dmz at least until then. The log says when a candidate left only by its landing.
  Millis alive_until = 0;
  std::map<std::string, queue::Check> checks;  // the latest report of each context
  std::map<std::string, Millis> passed_at;     // the first success of each context
};

// Candidates pushed to dmz (merge_done "merged") in `events` (oldest first), oldest first,
// with the checks reported on their SHAs and the landings (master_pushed ok); a candidate
// that is not in `state`'s train any more has ended.
std::vector<CandidateRecord> candidate_records(const std::vector<EventLogEntry>& events,
                                               const queue::RepoState& state);

// Something a person must look at; `text` marks names with `backticks`.
struct Warning {
  std::string code;  // stable: check-never-reports, check-always-fails, remote-unreachable,
                     // not-served, outbox-backlog
  std::string text;
};

struct WarningInput {
  std::vector<std::string> required_checks;
  std::string dmz_branch = "dmz";
  std::vector<CandidateRecord> candidates;  // oldest first
  driver::Health health;
  Millis now = 0;
  std::size_t window = 3;         // the newest settled candidates a check pattern is judged on
  Millis grace = 10 * 60 * 1000;  // a candidate still in the train settles after this long
  int fetch_failures = 3;         // failed fetches in a row before the remote is a warning
  std::size_t outbox_backlog = 20;
};

// The warnings, most serious first. A required check that reported on none of the newest
// `window` settled candidates (pushed `grace` ago and still in the train, or ended after it
// landed, had a check reported or lived `grace`) is one ("`ci/test` never reports
// on `dmz`: does your CI build on push to it?"); so is one that failed on all of them.
std::vector<Warning> warnings(const WarningInput& in);

// How a check looks on the page: every state has a word, not only a colour.
enum class CheckLook { Pending, Running, Passed, Failed };  // pending: nothing reported yet
std::string_view to_string(CheckLook);

struct CheckRow {
  std::string context;
  CheckLook look = CheckLook::Pending;
  bool required = false;
  std::string description, url;
  Millis elapsed = 0;              // since the candidate's push, until it reported an end
  std::optional<Millis> expected;  // the median time this check took to pass lately
  Millis at = 0;                   // when it last reported (0: never)
};

// The policy verdict of a PR as the engine keeps it: the merge request (pinned to a head) and
// the newest verdict for that head: who signed, whose approvals counted, and every reason (what
// is missing when it failed).
struct Verdict {
  enum class State { NotApproved, Checking, Passed, Failed };
  State state = State::NotApproved;
  std::string approver;  // the merge master who asked to merge (not a policy approval)
  queue::Sha approved_sha;
  Millis approved_at = 0;
  bool stale = false;  // approved at another head than the PR's head
  std::vector<std::string> reasons;
  std::vector<std::string> signers;    // accounts whose valid signatures the verdict found
  std::vector<std::string> approvers;  // accounts whose approvals the verdict counted
  Millis at = 0;                       // of the verdict
};
std::string_view to_string(Verdict::State);

struct PrRow {
  queue::PullRequest pr;
  std::optional<std::size_t> position;  // 1-based among the waiting PRs
  std::optional<Millis> eta;            // expected landing time
  Verdict verdict;
};

struct CandidateRow {
  queue::Candidate candidate;
  std::vector<PrRow> prs;
  std::vector<CheckRow> checks;  // required ones first (not yet reported: pending), then others
  Millis elapsed = 0;            // since its push (0 while merging)
  std::optional<Millis> expected;
  std::optional<Millis> eta;
};

// Candidates of one lane (queue/model.hpp: an independent chain of candidates of the adaptive
// strategy; 0 is the main lane); probes (isolation builds that never land) form their own.
struct Lane {
  std::uint64_t id = 0;
  std::string name;                     // "main lane", "lane `docs`" (a path group), "lane 7"
  bool probes = false;                  // the isolation builds
  std::vector<std::size_t> candidates;  // indexes into RepoPage::train, in train order
};

struct LastCheck {
  std::string context;
  queue::CheckState state = queue::CheckState::Pending;
  queue::Sha sha;
  Millis at = 0;
};

struct RepoSummary {
  std::string name, forge, strategy, master_branch, dmz_branch;
  queue::Sha master;
  std::size_t queue_length = 0;  // PRs in the train or waiting for it
  std::size_t candidates = 0;
  std::optional<HistoryEntry> last_landing;
  driver::Health health;
  std::optional<LastCheck> last_check;  // the newest check report seen
  std::vector<Warning> warnings;
};

struct RepoPage {
  RepoSummary summary;
  std::vector<CandidateRow> train;
  std::vector<PrRow> waiting;          // in queue order
  std::vector<PrRow> others;           // open, checking, failed or cancelled (hot)
  std::vector<HistoryEntry> outcomes;  // newest first
  std::optional<queue::Pace> pace;     // what the estimates assume
  std::vector<Lane> lanes;             // the train by lane, when it has more than the main one
  std::vector<std::string> required_checks;
  std::int64_t last_seq = 0;  // the newest event seen (where a live feed resumes)
  Millis now = 0;
  std::optional<ReleasesView> releases;  // staging/production (release promotion), if known
};

// Everything the pages need of one repository.
struct RepoInput {
  std::string name, forge, master_branch = "master", dmz_branch = "dmz";
  const RepoView* view = nullptr;                       // required
  const std::vector<EventLogEntry>* events = nullptr;   // the newest ones, oldest first
  const std::vector<HistoryEntry>* outcomes = nullptr;  // newest first (default: view->recent)
  Millis now = 0;
  EtaMemo* eta_memo = nullptr;  // where the expected landings are shared (null: computed here)
};

// What the strategy is, in a few words: "serial", "batches of 4, bisected on failure",
// "train, window 4 (1..32)", "adaptive, lanes by paths", ...
std::string strategy_name(const queue::Settings& s);

// The train's lanes (empty when everything is one chain, the main lane, without probes).
std::vector<Lane> lanes_of(const std::vector<queue::Candidate>& train,
                           const queue::Settings& settings);

RepoSummary build_summary(const RepoInput& in);
RepoPage build_repo_page(const RepoInput& in);

// When each PR in the train or waiting is expected to land, as the repo page shows it
// (queue::expected_landings, with the push-to-landing times of the candidates in `events`, the
// newest of the event log); the queue JSON carries the same.
std::map<int, Millis> expected_landings(const RepoView& view,
                                        const std::vector<EventLogEntry>& events, Millis now,
                                        EtaMemo* memo = nullptr);

struct TimelineEntry {
  Millis at = 0;
  std::string what;                  // one line, names in `backticks`
  std::string reason_code;           // for outcomes and sent-back PRs
  std::vector<std::string> details;  // every reason
  std::vector<CheckRow> checks;      // a candidate's checks as they ended (or stand)
};

struct PullPage {
  std::string repo;
  PullView view;
  PrRow row;                              // verdict, position, ETA
  std::optional<CandidateRow> candidate;  // the candidate it is in now, with its checks
  std::vector<TimelineEntry> timeline;    // oldest first
  std::int64_t last_seq = 0;
  Millis now = 0;
};

// One PR's page: its events and outcomes as a timeline, with the candidates it was in and their
// checks (the store files a candidate's merge, check results and landing under each of its
// PRs); `repo` (its repository's page model) supplies the verdict, the candidate and the ETA
// while it is in the queue.
PullPage build_pull_page(const std::string& repo_name, const PullView& view, const RepoPage& repo);

}  // namespace dmz::page

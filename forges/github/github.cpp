#include "forges/github/github.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <tuple>

#include "base/metrics.hpp"
#include "base/text.hpp"
#include "forges/github/commands.hpp"
#include "forges/plain.hpp"

namespace dmz::forges::github {
namespace {

namespace q = queue;
using nlohmann::json;

// Whether a notice says the PR left the queue because of what its commits do (a build, a
// conflict, the policy): their authors are the ones who can fix it.
bool about_its_commits(const q::Notify& n) {
  if (n.kind != q::NoticeKind::Failure) return false;
  switch (n.reason) {
    case q::Reason::BuildFailed:
    case q::Reason::CheckTimeout:
    case q::Reason::MergeConflict:
    case q::Reason::PolicyFailed:
    case q::Reason::Unmergeable:
      return true;
    default:
      return false;
  }
}

// The commit authors to mention: not `told` (dmzbot, the PR's author, who hears of every
// comment), no bot (GitHub's "name[bot]" accounts), and at most ten, so a long-lived branch
// does not page a crowd.
std::vector<std::string> others_to_tell(const std::vector<std::string>& authors,
                                        const std::vector<std::string>& told) {
  constexpr std::size_t kMaxMentions = 10;
  std::vector<std::string> out;
  for (const auto& login : authors) {
    if (out.size() == kMaxMentions) break;
    if (login.ends_with("[bot]") ||
        std::any_of(told.begin(), told.end(),
                    [&](const std::string& t) { return ascii_lower(t) == ascii_lower(login); }))
      continue;
    // A login is letters, digits and '-': anything else is not mentioned (no markdown).
    if (std::all_of(login.begin(), login.end(),
                    [](unsigned char ch) { return std::isalnum(ch) || ch == '-'; }))
      out.push_back(login);
  }
  return out;
}

bool terminal(const q::PullRequest& pr) {
  return pr.status == q::PrStatus::Merged ||
         (pr.status == q::PrStatus::Cancelled && pr.reason_code == q::Reason::Closed);
}

// Whether a notice means the merge label no longer stands for an approval: the PR left the
// queue without landing. The label is taken off, so that a label on a PR always means "approved
// at the head it was added to" and adding it again approves the new head.
bool drops_label(q::Reason r) {
  switch (r) {
    case q::Reason::BuildFailed:
    case q::Reason::CheckTimeout:
    case q::Reason::MergeConflict:
    case q::Reason::PolicyFailed:
    case q::Reason::CandidatePolicyFailed:
    case q::Reason::NewPush:
    case q::Reason::RewrittenHistory:
    case q::Reason::Cancelled:
    case q::Reason::Unmergeable:
      return true;
    case q::Reason::None:
    case q::Reason::Closed:
    case q::Reason::MasterMoved:
    case q::Reason::TransientError:
    case q::Reason::Merged:
      return false;
  }
  return false;
}

std::string heading(const q::Notify& n) {
  switch (n.reason) {
    case q::Reason::Merged:
      return "Merged";
    case q::Reason::BuildFailed:
      return "Build failed";
    case q::Reason::CheckTimeout:
      return "Check timed out";
    case q::Reason::MergeConflict:
      return "Merge conflict";
    case q::Reason::Unmergeable:
      return "Cannot merge";
    case q::Reason::PolicyFailed:
    case q::Reason::CandidatePolicyFailed:
      return "Policy failed";
    case q::Reason::NewPush:
      return "Approval dropped";
    case q::Reason::RewrittenHistory:
      return "History rewritten";
    case q::Reason::Cancelled:
      return "Cancelled";
    case q::Reason::Closed:
      return "Closed";
    case q::Reason::MasterMoved:
    case q::Reason::TransientError:
    case q::Reason::None:
      return "";
  }
  return "";
}

// A check state of ours on GitHub's words: (status, conclusion) of a check run.
std::pair<std::string, std::string> run_words(PullSummary::State s) {
  switch (s) {
    case PullSummary::State::kQueued:
      return {"queued", ""};
    case PullSummary::State::kInProgress:
      return {"in_progress", ""};
    case PullSummary::State::kSuccess:
      return {"completed", "success"};
    case PullSummary::State::kFailure:
      return {"completed", "failure"};
    case PullSummary::State::kNeutral:
      return {"completed", "neutral"};
  }
  return {"completed", "neutral"};
}

// A commit status has no "neutral": a PR that is not queued (cancelled, approval dropped) shows
// as an error, with the reason as its description.
std::string status_word(PullSummary::State s) {
  switch (s) {
    case PullSummary::State::kQueued:
    case PullSummary::State::kInProgress:
      return "pending";
    case PullSummary::State::kSuccess:
      return "success";
    case PullSummary::State::kFailure:
      return "failure";
    case PullSummary::State::kNeutral:
      return "error";
  }
  return "error";
}

std::string cut(std::string s, std::size_t max) {
  if (s.size() <= max) return s;
  s.resize(max - 3);
  while (!s.empty() && (static_cast<unsigned char>(s.back()) & 0xC0) == 0x80) s.pop_back();
  if (!s.empty() && static_cast<unsigned char>(s.back()) >= 0xC0) s.pop_back();
  return s + "...";
}

}  // namespace

std::vector<q::Event> reconcile_pulls(const q::RepoState& state, const std::vector<PullInfo>& open,
                                      bool complete, q::Millis now, std::vector<int>* missing) {
  std::vector<q::Event> out;
  std::map<int, const PullInfo*> listed;
  for (const auto& p : open) {
    listed.emplace(p.number, &p);
    const q::PrOpened opened{p.number, p.head_ref, p.author, p.title, p.head, now};
    auto it = state.prs.find(p.number);
    if (it == state.prs.end()) {
      out.push_back(opened);  // a PR whose opening was missed (or that was archived)
      continue;
    }
    const q::PullRequest& pr = it->second;
    if (pr.status == q::PrStatus::Merged) continue;
    if (pr.status == q::PrStatus::Cancelled && pr.reason_code == q::Reason::Closed)
      out.push_back(opened);  // reopened
    else if (pr.head != p.head)
      out.push_back(q::PrPushed{p.number, p.head, now, false});
    else if (pr.title != p.title && pr.branch == p.head_ref && pr.author == p.author)
      out.push_back(opened);  // an edited title
    // Converted to a draft, the webhook lost: out of the queue, as converted_to_draft does.
    if (p.draft && pr.head == p.head &&
        (q::stage(pr.status) == q::Stage::Waiting || q::stage(pr.status) == q::Stage::InTrain))
      out.push_back(q::CancelRequested{p.number, "GitHub (it is a draft now)", now});
  }
  if (complete)
    for (const auto& [n, pr] : state.prs) {
      if (listed.count(n) || terminal(pr)) continue;
      if (missing)
        missing->push_back(n);
      else
        out.push_back(q::PrClosed{n, now});
    }
  return out;
}

std::vector<q::Event> reconcile_checks(const q::Candidate& k, const std::vector<q::Check>& checks,
                                       q::Millis now) {
  std::vector<q::Event> out;
  std::map<std::string, q::Check> latest;  // one per context
  for (const auto& c : checks)
    if (!c.context.empty()) latest[c.context] = c;
  for (auto& [context, c] : latest) {
    auto known = k.checks.find(context);
    if (known != k.checks.end() && known->second.state == c.state) continue;
    c.at = now;
    out.push_back(q::CheckReported{k.sha, c, now});
  }
  return out;
}

std::string comment_for(const q::Notify& n, const std::string& repo, const std::string& public_url,
                        const std::string& marker, const std::vector<std::string>& cc) {
  if (n.reason == q::Reason::TransientError || n.reason == q::Reason::MasterMoved) return "";
  // GitHub refuses a comment over 65,536 characters (422), which would drop it for good: the
  // message and the details are cut to fit, the link and the marker always kept.
  constexpr std::size_t kMessageBytes = 4'096, kBodyBytes = 60'000;
  std::string body;
  const std::string head = heading(n);
  if (!head.empty()) body = "**" + head + "**: ";
  body += utf8_prefix(escape_control(n.message), kMessageBytes);
  if (n.reason == q::Reason::Merged && !n.details.empty())
    body += "\n\nThe master commit: " + escape_control(n.details.front());
  else
    for (std::size_t i = 0; i < n.details.size(); ++i) {
      const std::string line = "\n- " + escape_control(n.details[i]);
      if (body.size() + line.size() > kBodyBytes) {
        body += "\n- ... and " + std::to_string(n.details.size() - i) + " more";
        break;
      }
      if (i == 0) body += "\n";
      body += line;
    }
  if (!cc.empty()) {
    body += "\n\ncc";
    for (const auto& login : cc) body += " @" + login;
  }
  if (!public_url.empty())
    body += "\n\n[Queue status](" + public_url + "/repos/" + repo + "/pulls/" +
            std::to_string(n.number) + ")";  // the PR's own page on dmzbot
  if (!marker.empty()) body += "\n\n" + marker;
  return body;
}

GitHubForge::GitHubForge(Options options, std::unique_ptr<Client> client)
    : options_(std::move(options)), client_(std::move(client)) {}

std::vector<q::Event> GitHubForge::events_from_fetch(const q::RepoState& state,
                                                     const RemoteRefs& refs, q::Millis now) const {
  std::vector<q::Event> out;
  for (const auto& [n, pr] : state.prs) {
    if (terminal(pr)) continue;  // a cancelled PR's head is kept current: `retry` takes it
    auto it = refs.pulls.find(n);
    // Only a head this fetch moved: the fetch may have read refs/pull/N/head before a push whose
    // `synchronize` webhook has already been applied, and must not take the PR back to it.
    if (it != refs.pulls.end() && it->second != pr.head && refs.moved_pulls.count(n))
      out.push_back(
          q::PrPushed{n, it->second, now, refs.rewritten.count("pull/" + std::to_string(n)) > 0});
  }
  auto master = refs.branches.find(options_.webhook.master);
  if (master != refs.branches.end() && master->second != state.master)
    out.push_back(q::MasterObserved{master->second, now});
  return out;
}

void GitHubForge::log_ignored(const std::vector<std::string>& ignored, bool repeated) const {
  for (const auto& note : ignored)
    spdlog::log(repeated ? spdlog::level::debug : spdlog::level::info, "{}: {}",
                options_.webhook.repo, note);
}

Result<Delivery> GitHubForge::webhook(const InboundRequest& request, q::Millis now) const {
  std::vector<std::string> ignored;
  auto d = read_delivery(options_.webhook, options_.secret, request, now, &ignored);
  log_ignored(ignored, false);
  return d;
}

// Takes the merge label off for a notice that ended its approval, unless a merge master put
// it on again since that decision: a late or retried removal must not strip a new approval's
// label. dmzbot knows of a new approval it has applied (`approved_since`); one whose webhook is
// late or lost shows in GitHub's label events. GitHub stamps them to the second: a label of
// the decision's own second is taken for the old one (removed; a new approval by it, if its
// webhook comes, has lost its label, as before this check).
Status GitHubForge::drop_merge_label(const OutboxMessage& m) {
  const std::string& label = options_.webhook.merge_label;
  if (m.approved_since) return {};
  if (m.created_at > 0) {
    auto labeled = client_->last_labeled(m.notice.number, label);
    if (!labeled) return labeled.status();
    if (*labeled && (*labeled)->at > m.created_at - m.created_at % 1000) return {};
  }
  return client_->remove_label(m.notice.number, label);
}

Status GitHubForge::deliver(const OutboxMessage& m) {
  const q::Notify& n = m.notice;
  // Idempotent steps first, the comment last: a failure part-way is retried whole.
  if (drops_label(n.reason))
    if (Status s = drop_merge_label(m); !s.ok()) return s;
  // The PR's author hears of a comment anyway; whoever else wrote its commits is told too.
  std::vector<std::string> cc;
  if (about_its_commits(n)) {
    auto authors = client_->commit_authors(n.number);
    auto pull = authors ? client_->pull(n.number) : Result<PullInfo>(authors.error());
    if (!pull && pull.code() != Code::kNotFound) return pull.status();  // asked again later
    if (pull) cc = others_to_tell(*authors, {options_.webhook.bot_name, pull->author});
  }
  const std::string body = comment_for(n, options_.webhook.repo, options_.public_url,
                                       "<!-- dmzbot:notice:" + std::to_string(m.id) + " -->", cc);
  if (body.empty()) return {};
  if (m.attempts > 0) {  // an earlier attempt may have posted it before its answer was lost
    auto posted =
        client_->has_comment_with(n.number, "<!-- dmzbot:notice:" + std::to_string(m.id) + " -->");
    if (!posted) return posted.status();
    if (*posted) return {};
  }
  return client_->comment(n.number, body);
}

Result<std::optional<q::PrOpened>> GitHubForge::open_pull(const PullToOpen& p, q::Millis now) {
  auto existing = client_->pulls_of_branch(p.branch);
  if (!existing) return existing.error();
  const PullInfo* open = nullptr;
  for (const auto& info : *existing) {
    if (info.base != p.base) continue;
    if (info.state == "open")
      open = &info;
    else if (info.head == p.head)
      return std::optional<q::PrOpened>();  // opened and finished
  }
  PullInfo made;
  if (!open) {
    auto created = client_->create_pull(p.branch, p.base, p.title, p.body);
    if (!created) return created.error();
    made = std::move(*created);
    open = &made;
  }
  return std::optional<q::PrOpened>(
      q::PrOpened{open->number, open->head_ref, open->author, open->title, open->head, now});
}

Result<std::vector<std::string>> GitHubForge::approving_reviewers(int number, const q::Sha& sha) {
  return client_->approving_reviewers(number, sha);
}

Result<bool> GitHubForge::may_approve(const std::string& login) {
  if (login.empty()) return false;
  const std::string key = ascii_lower(login);
  const q::Millis now = client_->now();
  if (auto it = permissions_.find(key); it != permissions_.end() && it->second.second > now)
    return it->second.first;
  bool listed = false;
  for (const auto& m : options_.merge_masters)
    if (m.find('/') == std::string::npos && ascii_lower(m) == key) listed = true;
  for (const auto& m : options_.merge_masters) {
    if (listed) break;
    auto slash = m.find('/');
    if (slash == std::string::npos) continue;
    auto member = client_->team_member(m.substr(0, slash), m.substr(slash + 1), login);
    if (!member) return member.error();
    listed = *member;
  }
  bool ok = false;
  if (listed) {
    // A merge master must still be able to push: a listed login that lost its access is not
    // one any more.
    auto permission = client_->permission(login);
    if (!permission) return permission.error();
    ok = *permission == "admin" || *permission == "write";
  }
  permissions_[key] = {ok, now + options_.permission_cache};
  return ok;
}

// A label change as a gesture: "add the dmz:merge label".
static LaterCommand label_gesture(const LabelChange& l, const std::string& label) {
  return {l.actor, (l.added ? "add the " : "remove the ") + label + " label", l.at};
}

Result<std::optional<LaterCommand>> GitHubForge::label_overtaken(int number, bool added,
                                                                 const std::string& actor,
                                                                 q::Millis late) {
  const std::string& label = options_.webhook.merge_label;
  const std::string& bot = options_.webhook.bot_name;
  Result<PullInfo> pull = unavailable("not read");  // read only where it decides
  if (added) {  // the webhook's payload was the PR as it was then
    pull = client_->pull(number);
    if (!pull) return pull.error();
    const char* since = pull->state != "open"                   ? "the PR is closed"
                        : pull->draft                           ? "the PR is a draft"
                        : pull->base != options_.webhook.master ? "the PR is not into master"
                                                                : nullptr;
    if (since) return std::optional<LaterCommand>(LaterCommand{"", since, 0});
  }
  auto changes = client_->label_changes(number, label);
  if (!changes) return changes.error();
  q::Millis at = 0;  // the gesture's own event: the newest of its kind by its actor
  for (const LabelChange& l : *changes)
    if (l.added == added && l.actor == actor) at = std::max(at, l.at);
  if (at == 0) {
    // Not in GitHub's events (yet): the label as it is now says whether it was undone.
    if (!added) pull = client_->pull(number);
    if (!pull) return pull.error();
    const auto& now = pull->labels;
    if ((std::find(now.begin(), now.end(), label) != now.end()) == added)
      return std::optional<LaterCommand>{};
    return std::optional<LaterCommand>(
        LaterCommand{"", "the " + label + " label is " + (added ? "off" : "on"), 0});
  }
  // dmzbot takes the label off a PR that left the queue: the addition came before that decision.
  for (const LabelChange& l : *changes)
    if (added && l.at > at && !l.added && is_bot(l.actor, bot))
      return std::optional<LaterCommand>(label_gesture(l, label));
  // Comments and reviews only for a late gesture, as for a late command: their reads cost two
  // calls more per label, and a command GitHub delivers out of order within seconds of a
  // label is as rare as two commands so delivered (docs/ARCHITECTURE.md, "Known limits").
  auto later = later_gesture(number, at, *changes, at < late);
  if (!later || *later) return later;
  // GitHub's times have whole seconds: within the gesture's second the events list (oldest
  // first) orders the label's changes, and the newest stands when a merge master or dmzbot
  // made it.
  const LabelChange* newest = nullptr;
  for (const LabelChange& l : *changes)
    if (l.at == at) newest = &l;
  if (!newest || newest->added == added) return later;
  if (!is_bot(newest->actor, bot)) {
    auto allowed = may_approve(newest->actor);
    if (!allowed) return allowed.error();
    if (!*allowed) return later;
  }
  return std::optional<LaterCommand>(label_gesture(*newest, label));
}

Result<std::optional<LaterCommand>> GitHubForge::later_command(int number, q::Millis written) {
  auto labels = client_->label_changes(number, options_.webhook.merge_label);
  if (!labels) return labels.error();
  return later_gesture(number, written, *labels);
}

Result<std::optional<LaterCommand>> GitHubForge::later_gesture(
    int number, q::Millis written, const std::vector<LabelChange>& labels, bool commands) {
  // Every gesture that changes whether the PR is queued, after `written`: commands in comments
  // and reviews, and the merge label added or taken off. GitHub's times have whole seconds: one
  // of the same second is not known to be later.
  std::vector<LaterCommand> later;
  const std::string& bot = options_.webhook.bot_name;
  const std::string mention = mention_name(bot);
  auto commands_in = [&](const Result<std::vector<IssueComment>>& items) -> Status {
    if (!items) return items.status();
    for (const IssueComment& c : *items) {
      if (c.created_at <= written || is_bot(c.author, bot)) continue;
      for (const Command& command : parse_commands(c.body, mention))
        if (command.kind == Command::Kind::kMerge || command.kind == Command::Kind::kCancel ||
            command.kind == Command::Kind::kRetry)
          later.push_back({c.author, std::string(to_string(command.kind)), c.created_at});
    }
    return {};
  };
  if (commands) {
    if (Status s = commands_in(client_->comments_since(number, written)); !s.ok()) return s.error();
    if (Status s = commands_in(client_->review_bodies(number)); !s.ok()) return s.error();
  }
  const std::string& label = options_.webhook.merge_label;
  for (const LabelChange& l : labels)
    if (l.at > written && !is_bot(l.actor, bot)) later.push_back(label_gesture(l, label));
  std::stable_sort(later.begin(), later.end(),
                   [](const auto& a, const auto& b) { return a.written < b.written; });
  for (LaterCommand& l : later) {
    auto allowed = may_approve(l.actor);
    if (!allowed) return allowed.error();
    if (*allowed) return std::optional<LaterCommand>(std::move(l));
  }
  return std::optional<LaterCommand>{};
}

Result<std::vector<q::Event>> GitHubForge::checks_of(const q::Sha& sha, q::Millis now) {
  std::vector<std::string> ignored;
  auto checks = client_->checks(sha, options_.webhook.check_sources, &ignored);
  if (!checks) return checks.error();
  log_ignored(ignored, false);
  std::vector<q::Event> out;
  for (auto c : *checks) {
    c.at = now;
    out.push_back(q::CheckReported{sha, c, now});
  }
  return out;
}

std::vector<Redelivery*> deliveries_to_redeliver(const std::vector<HookDelivery>& log,
                                                 std::map<std::string, Redelivery>& pending,
                                                 q::Millis now) {
  struct Seen {
    const HookDelivery* newest = nullptr;
    q::Millis first = 0;
    bool taken = false;
  };
  std::map<std::string, Seen> by_guid;
  for (const auto& d : log) {
    if (d.guid.empty()) continue;
    Seen& g = by_guid[d.guid];
    if (!g.newest ||
        std::tie(d.delivered_at, d.id) > std::tie(g.newest->delivered_at, g.newest->id))
      g.newest = &d;
    g.first = g.first ? std::min(g.first, d.delivered_at) : d.delivered_at;
    g.taken = g.taken || (d.status_code >= 200 && d.status_code < 400);
  }
  for (const auto& [guid, g] : by_guid) {
    const int code = g.newest->status_code;
    if (g.taken || (code != 0 && code < 500)) {
      pending.erase(guid);
      continue;
    }
    Redelivery& r = pending[guid];
    r.attempt = g.newest->id;
    r.first = r.first ? std::min(r.first, g.first) : g.first;
    r.event = g.newest->event;
    r.status_code = code;
  }
  std::vector<Redelivery*> due;
  for (auto& [guid, r] : pending)
    if (r.asks == 0 ||
        (r.asks < kMaxRedeliveries && now - r.at >= kRedeliveryPause << (r.asks - 1)))
      due.push_back(&r);
  std::sort(due.begin(), due.end(), [](const Redelivery* a, const Redelivery* b) {
    return std::tie(a->first, a->attempt) < std::tie(b->first, b->attempt);
  });
  return due;
}

Result<std::vector<q::Event>> GitHubForge::reconcile(const ReconcileInput& input, q::Millis now) {
  const q::RepoState& state = input.state;
  // 1. The open PRs, their heads and titles; PRs the list misses are confirmed one by one
  //    (a just-opened PR may be missing from a list served by a lagging replica).
  auto open = client_->open_pulls(options_.webhook.master);
  if (!open) return open.error();
  std::vector<int> missing;
  auto events = reconcile_pulls(state, open->first, open->second, now, &missing);
  for (int n : missing) {
    auto pr = client_->pull(n);
    if (!pr && pr.code() != Code::kNotFound) return pr.error();
    if (!pr || pr->state != "open" || pr->base != options_.webhook.master)
      events.push_back(q::PrClosed{n, now});
  }
  // 2. Merge labels without an approval at the PR's head: the label's webhook was lost. It
  //    approves only if it was added well after dmzbot learned that head (and after the PR
  //    last left the queue), by a merge master, and no merge master wrote a command since (a
  //    `cancel` answered "not queued" while the label was unknown stands).
  for (const auto& p : open->first) {
    if (p.draft ||
        std::find(p.labels.begin(), p.labels.end(), options_.webhook.merge_label) == p.labels.end())
      continue;
    auto it = state.prs.find(p.number);
    if (it == state.prs.end() || it->second.head != p.head) continue;  // first learn the head
    const q::PullRequest& pr = it->second;
    if (pr.status != q::PrStatus::Open && pr.status != q::PrStatus::Failed &&
        pr.status != q::PrStatus::Cancelled)
      continue;
    if (pr.status == q::PrStatus::Cancelled && pr.reason_code == q::Reason::Closed) continue;
    auto labeled = client_->last_labeled(p.number, options_.webhook.merge_label);
    if (!labeled) return labeled.error();
    if (!*labeled) continue;
    const q::Millis seen = input.head_seen_at ? input.head_seen_at(p.number) : q::Millis{0};
    const q::Millis after = std::max(seen, pr.finished_at) + options_.label_skew;
    if ((*labeled)->at < after || (*labeled)->at < (*labeled)->ready_at) continue;
    auto allowed = may_approve((*labeled)->actor);
    if (!allowed) return allowed.error();
    if (!*allowed) continue;
    auto later = later_command(p.number, (*labeled)->at + api_health().clock_offset);
    if (!later) return later.error();
    if (!*later) events.push_back(q::MergeRequested{p.number, p.head, (*labeled)->actor, now});
  }
  // 3. The checks of the candidates on dmz that still wait for a required check.
  for (const auto& k : state.train) {
    if (k.sha.empty() ||
        (k.status != q::CandidateStatus::InDmz && k.status != q::CandidateStatus::Building))
      continue;
    bool waiting = false;
    for (const auto& context : options_.required_checks) {
      auto c = k.checks.find(context);
      if (c == k.checks.end() || c->second.state == q::CheckState::Pending) waiting = true;
    }
    if (!waiting) continue;
    std::vector<std::string> ignored;
    auto checks = client_->checks(k.sha, options_.webhook.check_sources, &ignored);
    if (!checks) return checks.error();
    log_ignored(ignored, true);  // read again at every reconciliation while the candidate waits
    auto more = reconcile_checks(k, *checks, now);
    events.insert(events.end(), more.begin(), more.end());
  }
  // 4. Webhooks that never reached dmzbot: a comment's command has no other way back.
  if (options_.redeliver_hook) redeliver_failed(now);
  {
    std::lock_guard lock(mu_);
    last_reconcile_ = now;
  }
  return events;
}

void GitHubForge::redeliver_failed(q::Millis now) {
  // Read back to a little before the last complete read (GitHub logs an attempt when it
  // ends), or, the first time, as far as a restart is expected to need.
  constexpr q::Millis kOverlap = 600'000;
  const q::Millis since =
      deliveries_read_at_ ? deliveries_read_at_ - kOverlap : now - options_.redeliver_lookback;
  const std::int64_t hook = *options_.redeliver_hook;
  auto failed = [&](const std::string& what) {
    if (what != redelivery_error_)  // once per cause, not at every reconciliation
      spdlog::warn("{}: webhook deliveries of {}: {}", options_.webhook.repo,
                   hook ? "hook " + std::to_string(hook) : std::string("the App's webhook"), what);
    redelivery_error_ = what;
  };
  auto read_log = [&](q::Millis from) { return client_->hook_deliveries(hook, from); };
  Result<AppDeliveryLog::Read> read = AppDeliveryLog::Read{};
  if (hook == 0 && options_.app_log)
    read = options_.app_log->deliveries(since, now, read_log);
  else if (auto log = read_log(since); log)
    read = AppDeliveryLog::Read{std::move(*log), now};
  else
    read = log.error();
  if (!read) return failed(read.message());
  std::vector<HookDelivery>& log = read->log;
  if (hook == 0) {  // the App's webhook: every repository's deliveries, and installations'
    auto mine = client_->repository_id();
    if (!mine) return failed(mine.message());
    std::erase_if(log, [&](const HookDelivery& d) { return d.repository_id != *mine; });
  }
  deliveries_read_at_ = read->at;
  for (Redelivery* r : deliveries_to_redeliver(log, redeliveries_, now)) {
    if (Status s = client_->redeliver(hook, r->attempt); !s.ok()) return failed(s.message());
    ++r->asks;
    r->at = now;
    metrics::global().add("dmzbot_webhook_redeliveries_total", {{"repo", options_.webhook.repo}});
    spdlog::info("{}: asked GitHub to deliver {} webhook attempt {} again (it got {})",
                 options_.webhook.repo, escape_control(r->event), r->attempt,
                 r->status_code ? std::to_string(r->status_code) : std::string("no answer"));
  }
  redelivery_error_.clear();
  // Given up on: kept until the lookback passes, so that a later window that still shows the
  // delivery does not start its asks over.
  std::erase_if(redeliveries_, [&](const auto& r) {
    return r.second.asks >= kMaxRedeliveries && now - r.second.at > options_.redeliver_lookback;
  });
}

Status GitHubForge::set_status_labels(int number, PullSummary::State state) {
  std::string want;
  switch (state) {
    case PullSummary::State::kQueued:
    case PullSummary::State::kInProgress:
      want = options_.queued_label;
      break;
    case PullSummary::State::kFailure:
      want = options_.failed_label;
      break;
    case PullSummary::State::kSuccess:
    case PullSummary::State::kNeutral:
      break;
  }
  auto have = status_label_.find(number);
  if (have != status_label_.end() && have->second == want) return {};
  for (const auto& label : {options_.queued_label, options_.failed_label})
    if (label != want)
      if (Status s = client_->remove_label(number, label); !s.ok()) return s;
  if (!want.empty())
    if (Status s = client_->add_labels(number, {want}); !s.ok()) return s;
  status_label_[number] = want;
  return {};
}

// A PR that left the queue is not remembered (a forge thread serving for months would hold
// every PR it ever showed): shown again, it costs a lookup or a label call more.
void GitHubForge::forget(const PullSummary& summary) {
  if (!summary.finished()) return;
  check_runs_.erase(summary.head);
  status_label_.erase(summary.number);
}

Status GitHubForge::show(const PullSummary& summary) {
  if (summary.head.empty()) return {};
  const std::string details_url = options_.public_url.empty()
                                      ? std::string()
                                      : options_.public_url + "/repos/" + options_.webhook.repo +
                                            "/pulls/" + std::to_string(summary.number);
  if (client_->app()) {
    auto [status, conclusion] = run_words(summary.state);
    json fields{
        {"name", options_.check_name},
        {"head_sha", summary.head},
        {"status", status},
        {"output",
         {{"title", cut(summary.title, 250)},
          {"summary",
           cut(summary.title + (summary.text.empty() ? "" : "\n\n" + summary.text), 60000)}}}};
    if (!conclusion.empty()) fields["conclusion"] = conclusion;
    if (!details_url.empty()) fields["details_url"] = details_url;
    std::optional<std::int64_t> id;
    if (auto it = check_runs_.find(summary.head); it != check_runs_.end()) {
      id = it->second;
    } else {
      auto found = client_->find_check_run(summary.head, options_.check_name);
      if (!found) return found.status();
      id = *found;
    }
    if (id) fields.erase("head_sha");  // an update names the run, not the commit
    auto run = client_->check_run(id, fields);
    if (!run) return run.status();
    check_runs_[summary.head] = *run;
  } else {
    if (Status s = client_->commit_status(summary.head, status_word(summary.state),
                                          options_.check_name, summary.title, details_url);
        !s.ok())
      return s;
  }
  if (options_.status_labels)
    if (Status s = set_status_labels(summary.number, summary.state); !s.ok()) return s;
  forget(summary);
  return {};
}

ApiHealth GitHubForge::api_health() const {
  ApiHealth h = client_->health();
  std::lock_guard lock(mu_);
  h.last_reconcile = last_reconcile_;
  return h;
}

}  // namespace dmz::forges::github

#include "bot/http/pages.hpp"

#include <ctime>
#include <string>

#include "base/iso_time.hpp"
#include "base/text.hpp"

namespace dmz::page {

namespace {

std::string num(std::int64_t n) { return std::to_string(n); }

std::string short_sha(const std::string& sha) { return sha.substr(0, 10); }

// "/repos/o/n" style path segments: owner and name are configuration, but escape anyway.
std::string repo_path(const std::string& repo) { return "/repos/" + html_escape(repo); }

std::string utc(Millis ms) {
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

std::string iso(Millis ms) { return iso8601_utc(ms / 1000); }

// <time> with the absolute time as its title and a relative text ("5 min ago", "in 3 min").
std::string when(Millis at, Millis now) {
  if (at <= 0) return "never";
  std::string rel;
  if (at <= now) {
    rel = now - at < 1000 ? "just now" : duration_text(now - at) + " ago";
  } else {
    rel = "in " + duration_text(at - now);
  }
  return "<time datetime=\"" + iso(at) + "\" title=\"" + utc(at) + "\">" + rel + "</time>";
}

// A link for dmzbot's own paths and http(s) URLs only: a "javascript:" URL posted by a CI is
// shown as text, never made clickable.
std::string link_or_text(const std::string& text_html, const std::string& url) {
  const bool safe = url.starts_with("https://") || url.starts_with("http://") ||
                    url.starts_with("/api/v1/repos/");
  if (!safe) return text_html;
  return "<a href=\"" + html_escape(url) + "\" rel=\"noopener noreferrer\">" + text_html + "</a>";
}

// A status as a word ("in_dmz" reads "in dmz") in a coloured pill; the colour is only a help.
std::string badge(std::string_view word, std::string_view kind) {
  std::string text(word);
  for (char& c : text)
    if (c == '_') c = ' ';
  return "<span class=\"badge b-" + std::string(kind) + "\">" + html_escape(text) + "</span>";
}

std::string status_badge(queue::PrStatus s) {
  auto word = queue::to_string(s);
  return badge(word, word);
}

std::string check_badge(CheckLook l) {
  auto word = to_string(l);
  return badge(word, word);
}

std::string verdict_badge(Verdict::State s) {
  const char* kind = s == Verdict::State::Passed     ? "passed"
                     : s == Verdict::State::Failed   ? "failed"
                     : s == Verdict::State::Checking ? "running"
                                                     : "pending";
  return badge(to_string(s), kind);
}

// Reasons and details come from PRs (one per unsigned commit, per conflicting path): a page
// shows the first few of each, cut to a line, so that a PR of 300,000 commits does not make
// every viewer download megabytes at every event. The JSON API has them whole.
constexpr std::size_t kShownDetails = 20, kShownDetailBytes = 300, kShownMessageBytes = 1'000;
constexpr std::size_t kShownOthers = 100;  // PRs not in the queue
// A check's description: GitHub shows 140 characters of one; the API takes up to 1 KiB.
constexpr std::size_t kShownDescriptionBytes = 140;

// `text` cut to `max` bytes (never inside a UTF-8 sequence), "..." marking the cut, as HTML.
std::string cut_text(const std::string& text, std::size_t max) {
  if (text.size() <= max) return html_text(text);
  return html_text(std::string(utf8_prefix(text, max))) + "...";
}

std::string details_list(const std::vector<std::string>& details) {
  if (details.empty()) return "";
  std::string out = "<ul class=\"details\">";
  for (std::size_t i = 0; i < details.size() && i < kShownDetails; ++i) {
    const std::string& d = details[i];
    out += "<li>" +
           (d.size() <= kShownDetailBytes ? link_or_text(html_text(d), d)
                                          : cut_text(d, kShownDetailBytes)) +
           "</li>";
  }
  if (details.size() > kShownDetails)
    out += "<li class=\"muted\">... and " +
           num(static_cast<std::int64_t>(details.size() - kShownDetails)) + " more</li>";
  return out + "</ul>";
}

std::string reason_html(queue::Reason code, const std::string& message,
                        const std::vector<std::string>& details) {
  std::string out;
  if (code != queue::Reason::None)
    out += "<code class=\"reason\">" + html_escape(queue::to_string(code)) + "</code> ";
  out += cut_text(message, kShownMessageBytes);
  return out + details_list(details);
}

std::string pr_link(const std::string& repo, const queue::PullRequest& pr) {
  std::string out = "<a href=\"" + repo_path(repo) + "/pulls/" + num(pr.number) + "\">#" +
                    num(pr.number) + "</a> " + html_escape(pr.title);
  return out;
}

std::string pr_meta(const queue::PullRequest& pr) {
  std::string out = "<span class=\"meta\"><code>" + html_escape(pr.branch) + "</code>";
  if (!pr.author.empty()) out += " by " + html_escape(pr.author);
  if (!pr.head.empty()) out += " at <code>" + html_escape(short_sha(pr.head)) + "</code>";
  return out + "</span>";
}

std::string verdict_html(const Verdict& v, Millis now) {
  std::string out =
      "<div class=\"verdict\"><span class=\"label\">Policy</span> " + verdict_badge(v.state);
  // Who asked to merge (a merge master) is not who approved the change under the policy: the
  // two are shown apart.
  if (!v.approver.empty()) {
    out += " merge requested by <strong>" + html_escape(v.approver) + "</strong> at <code>" +
           html_escape(short_sha(v.approved_sha)) + "</code> " + when(v.approved_at, now);
    if (v.stale) out += " <strong>(not the PR's head: approve it again)</strong>";
  }
  if (v.state == Verdict::State::Passed || v.state == Verdict::State::Failed) {
    auto names = [](const std::vector<std::string>& accounts) {
      std::string list;
      for (std::size_t i = 0; i < accounts.size(); ++i)
        list += (i ? ", " : "") + std::string("<strong>") + html_escape(accounts[i]) + "</strong>";
      return list;
    };
    out += "<p class=\"signers\"><span class=\"label\">Signed by</span> ";
    out +=
        v.signers.empty() ? "<span class=\"muted\">no verified signature</span>" : names(v.signers);
    out += "</p><p class=\"approvers\"><span class=\"label\">Approved (policy)</span> ";
    // A passed verdict without counted approvals needed none; a failed one says below what
    // is missing.
    if (!v.approvers.empty())
      out += names(v.approvers);
    else if (v.state == Verdict::State::Passed)
      out += "<span class=\"muted\">no approval required</span>";
    else
      out += "<span class=\"muted\">no approval counted</span>";
    out += "</p>";
  }
  if (!v.reasons.empty()) {
    out += v.state == Verdict::State::Failed ? "<p>What is missing:</p>" : "";
    out += details_list(v.reasons);
  }
  return out + "</div>";
}

std::string eta_html(const std::optional<Millis>& eta, Millis now) {
  if (!eta) return "<span class=\"muted\">no estimate yet (no landing observed)</span>";
  if (*eta <= now) return "any moment now";
  return when(*eta, now);
}

std::string head(const std::string& title) {
  return "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
         "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
         "<meta name=\"color-scheme\" content=\"light dark\">\n"
         "<title>" +
         html_escape(title) +
         " · dmzbot</title>\n"
         "<link rel=\"stylesheet\" href=\"/assets/dmzbot.css\">\n"
         "<script src=\"/assets/dmzbot.js\" defer></script>\n</head>\n<body>\n"
         "<a class=\"skip\" href=\"#main\">Skip to content</a>\n";
}

std::string top(const std::string& crumbs_html) {
  return "<header class=\"top\"><nav aria-label=\"Breadcrumb\"><a class=\"brand\" "
         "href=\"/\">dmzbot</a>" +
         crumbs_html +
         "</nav><span id=\"live\" class=\"live\" role=\"status\" aria-live=\"polite\" "
         "hidden></span></header>\n";
}

std::string main_open(const std::string& events_url, std::int64_t last_seq) {
  std::string out = "<main id=\"main\" tabindex=\"-1\"";
  if (!events_url.empty())
    out +=
        " data-events=\"" + html_escape(events_url) + "\" data-last-seq=\"" + num(last_seq) + "\"";
  return out + ">\n";
}

std::string foot(Millis now) {
  return "</main>\n<footer class=\"foot\">Rendered " + when(now, now) + " (" + utc(now) +
         "). Updates live while JavaScript runs; otherwise reload.</footer>\n</body>\n</html>\n";
}

std::string health_html(const RepoSummary& s, Millis now) {
  const auto& h = s.health;
  std::string out = "<ul class=\"health\">";
  out += "<li><span class=\"label\">Remote</span> ";
  if (!h.loaded)
    out += badge("not served", "failed");
  else if (h.remote_ok)
    out += badge("reachable", "passed") + " last fetch " + when(h.last_fetch_ok, now);
  else if (h.last_fetch_ok == 0 && h.fetch_failures == 0)
    out += badge("not fetched yet", "pending");
  else
    out += badge("unreachable", "failed") + " " + num(h.fetch_failures) +
           " failed fetches in a row" +
           (h.last_error.empty() ? "" : ": " + html_text(h.last_error)) +
           (h.last_fetch_ok > 0 ? "; last success " + when(h.last_fetch_ok, now) : "");
  out += "</li><li><span class=\"label\">Forge</span> <code>" + html_escape(s.forge) + "</code>";
  if (!h.api.used) {
    out += " (no forge API)";
  } else if (h.api.blocked_until > now) {
    out +=
        " " + badge("rate limited", "failed") + " until " + html_escape(utc(h.api.blocked_until));
  } else if (!h.api.ok) {
    out += " " + badge("API failing", "failed") +
           (h.api.last_error.empty() ? "" : ": " + html_text(h.api.last_error));
  } else {
    out += " " + badge("API ok", "passed");
    if (h.api.rate_remaining >= 0) out += "; " + num(h.api.rate_remaining) + " requests left";
  }
  if (h.api.used && h.api.last_reconcile > 0)
    out += "; last reconciled " + when(h.api.last_reconcile, now);
  if (h.outbox_pending > 0) out += "; " + num(h.outbox_pending) + " notifications to deliver";
  out += "</li><li><span class=\"label\">CI</span> ";
  if (s.last_check)
    out += "last check <code>" + html_escape(s.last_check->context) + "</code> " +
           check_badge(s.last_check->state == queue::CheckState::Pending   ? CheckLook::Running
                       : s.last_check->state == queue::CheckState::Success ? CheckLook::Passed
                                                                           : CheckLook::Failed) +
           " on <code>" + html_escape(short_sha(s.last_check->sha)) + "</code> " +
           when(s.last_check->at, now);
  else
    out += "<span class=\"muted\">no check seen yet</span>";
  out += "</li></ul>";
  if (!s.warnings.empty()) {
    out += "<ul class=\"warnings\">";
    for (const auto& w : s.warnings)
      out += "<li data-code=\"" + html_escape(w.code) + "\"><strong>Needs a person:</strong> " +
             html_text(w.text) + "</li>";
    out += "</ul>";
  }
  return out;
}

std::string master_html(const RepoSummary& s, Millis now) {
  std::string out = "<code>" + html_escape(s.master_branch) + "</code> at <code>" +
                    (s.master.empty() ? "unknown" : html_escape(short_sha(s.master))) + "</code>";
  if (s.last_landing)
    out += "; last landing <a href=\"" + repo_path(s.name) + "/pulls/" +
           num(s.last_landing->number) + "\">#" + num(s.last_landing->number) + "</a> " +
           when(s.last_landing->at, now);
  else
    out += "; <span class=\"muted\">no landing yet</span>";
  return out;
}

std::string check_html(const CheckRow& k) {
  std::string name = "<code>" + html_escape(k.context) + "</code>";
  std::string out = "<li class=\"check\">" + check_badge(k.look) + " " + link_or_text(name, k.url);
  if (!k.required) out += " <span class=\"muted\">(not required)</span>";
  if (!k.description.empty())
    out += " <span class=\"muted\">" + cut_text(k.description, kShownDescriptionBytes) + "</span>";
  if (k.look != CheckLook::Pending || k.elapsed > 0) {
    out += " <span class=\"time\"";
    if (k.at > 0) out += " title=\"reported " + utc(k.at) + "\"";
    out += ">" + duration_text(k.elapsed);
    if (k.expected) out += " of ~" + duration_text(*k.expected);
    out += "</span>";
  }
  return out + "</li>";
}

// A candidate's checks: every required one, and at most kOptionalChecksShown others (a PR's own
// workflows may report hundreds on its candidate; the page stays readable and small).
constexpr std::size_t kOptionalChecksShown = 20;
std::string checks_html(const std::vector<CheckRow>& checks) {
  std::string out = "<ul class=\"checks\">";
  std::size_t optional = 0;
  for (const auto& k : checks)
    if (k.required || ++optional <= kOptionalChecksShown) out += check_html(k);
  if (optional > kOptionalChecksShown)
    out += "<li class=\"muted\">and " + num(optional - kOptionalChecksShown) +
           " more checks not required</li>";
  return out + "</ul>";
}

std::string candidate_html(const std::string& repo, const CandidateRow& c, Millis now) {
  const auto& k = c.candidate;
  std::string out = "<article class=\"candidate\" aria-labelledby=\"cand-" + num(k.id) +
                    "\"><h3 id=\"cand-" + num(k.id) + "\">Candidate " + num(k.id) + " " +
                    badge(queue::to_string(k.status), queue::to_string(k.status));
  if (k.probe) out += " " + badge("probe", "pending");
  if (k.prs.size() > 1) out += " <span class=\"batch\">batch of " + num(k.prs.size()) + "</span>";
  if (!k.with.empty()) {
    std::string with;
    for (int n : k.with) with += (with.empty() ? "#" : ", #") + num(n);
    out += " <span class=\"muted\">built with " + with + "</span>";
  }
  if (k.attempt > 1) out += " <span class=\"muted\">build " + num(k.attempt) + "</span>";
  out += "</h3><p class=\"meta\">";
  out += k.sha.empty() ? std::string("merging…")
                       : "<code>" + html_escape(short_sha(k.sha)) + "</code>";
  if (k.pushed_at > 0) {
    out += " · building for " + duration_text(c.elapsed);
    if (c.expected) out += " of ~" + duration_text(*c.expected) + " expected";
  }
  out += " · lands " + eta_html(c.eta, now) + "</p>";
  if (k.pushed_at > 0 && c.expected && *c.expected > 0)
    out += "<progress max=\"" + num(*c.expected) + "\" value=\"" +
           num(std::min(c.elapsed, *c.expected)) + "\" aria-label=\"build progress\"></progress>";
  out += "<ul class=\"prs\">";
  for (const auto& r : c.prs)
    out +=
        "<li>" + pr_link(repo, r.pr) + " " + pr_meta(r.pr) + verdict_html(r.verdict, now) + "</li>";
  out += "</ul><h4>Checks</h4>";
  if (c.checks.empty())
    out += "<p class=\"muted\">no check required or reported</p>";
  else
    out += checks_html(c.checks);
  return out + "</article>";
}

std::string table_open(const std::string& caption, std::initializer_list<const char*> headers) {
  std::string out = "<div class=\"scroll\"><table><caption>" + caption + "</caption><thead><tr>";
  for (const char* h : headers) out += "<th scope=\"col\">" + std::string(h) + "</th>";
  return out + "</tr></thead><tbody>";
}

constexpr const char* kTableClose = "</tbody></table></div>";

// A cell that names its column, so that a phone can show the table as stacked cards.
std::string cell(const char* label, const std::string& content) {
  return "<td data-label=\"" + std::string(label) + "\">" + content + "</td>";
}

}  // namespace

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string html_text(std::string_view text) {
  std::string out;
  bool in_code = false;
  std::size_t start = 0;
  for (;;) {
    auto tick = text.find('`', start);
    if (tick == std::string_view::npos) break;
    // An opening backtick needs a closing one; a lone one stays text.
    if (!in_code && text.find('`', tick + 1) == std::string_view::npos) break;
    out += html_escape(text.substr(start, tick - start));
    out += in_code ? "</code>" : "<code>";
    in_code = !in_code;
    start = tick + 1;
  }
  out += html_escape(text.substr(start));
  if (in_code) out += "</code>";
  return out;
}

std::string duration_text(Millis ms) {
  if (ms < 0) ms = 0;
  std::int64_t s = ms / 1000;
  if (s < 60) return num(s) + " s";
  std::int64_t m = s / 60;
  if (m < 60) return num(m) + " min" + (s % 60 ? " " + num(s % 60) + " s" : "");
  std::int64_t h = m / 60;
  return num(h) + " h" + (m % 60 ? " " + num(m % 60) + " min" : "");
}

std::string render_index(const std::vector<RepoSummary>& repos, Millis now, std::int64_t last_seq) {
  std::string out = head("Repositories") + top("") + main_open("/api/v1/events", last_seq);
  out += "<h1>Repositories</h1>\n";
  if (repos.empty()) out += "<p class=\"muted\">No repository is configured.</p>";
  for (const auto& s : repos) {
    out += "<article class=\"repo card\"><h2><a href=\"" + repo_path(s.name) + "\">" +
           html_escape(s.name) + "</a></h2><dl class=\"facts\">";
    out += "<dt>Queue</dt><dd>" + num(s.queue_length) + (s.queue_length == 1 ? " PR" : " PRs") +
           ", " + num(s.candidates) + (s.candidates == 1 ? " candidate" : " candidates") +
           " building</dd>";
    out += "<dt>Strategy</dt><dd>" + html_escape(s.strategy) + "</dd>";
    out += "<dt>Master</dt><dd>" + master_html(s, now) + "</dd>";
    out += "</dl>" + health_html(s, now) + "</article>\n";
  }
  return out + foot(now);
}

std::string render_repo(const RepoPage& p) {
  const auto& s = p.summary;
  const std::string events = "/api/v1/repos/" + s.name + "/events";
  std::string out =
      head(s.name) +
      top(" / <a href=\"" + repo_path(s.name) + "\">" + html_escape(s.name) + "</a>") +
      main_open(events, p.last_seq);
  out += "<h1>" + html_escape(s.name) + "</h1>\n";
  out +=
      "<section aria-labelledby=\"h-state\" class=\"card\"><h2 id=\"h-state\">State</h2>"
      "<dl class=\"facts\">";
  out += "<dt>Queue</dt><dd>" + num(s.queue_length) + (s.queue_length == 1 ? " PR" : " PRs") +
         "</dd><dt>Strategy</dt><dd>" + html_escape(s.strategy);
  if (p.pace) out += " · a candidate takes ~" + duration_text(p.pace->per_candidate) + " to land";
  out += "</dd><dt>Master</dt><dd>" + master_html(s, p.now) + "</dd></dl>";
  out += health_html(s, p.now) + "</section>\n";

  out += "<section aria-labelledby=\"h-train\"><h2 id=\"h-train\">Train (" + num(p.train.size()) +
         ")</h2>";
  if (p.train.empty()) out += "<p class=\"muted\">Nothing is building.</p>";
  if (p.lanes.empty()) {
    for (const auto& c : p.train) out += candidate_html(s.name, c, p.now);
  } else {
    // Independent chains side by side (stacked on a phone): a failure in one rebuilds nothing
    // in another.
    out += "<div class=\"lanes\">";
    for (const auto& lane : p.lanes) {
      const std::string id = lane.probes ? "lane-probes" : "lane-" + num(lane.id);
      out += "<section class=\"lane\" aria-labelledby=\"" + id + "\"><h3 id=\"" + id + "\">" +
             html_text(lane.name) + " (" + num(lane.candidates.size()) + ")</h3>";
      for (std::size_t i : lane.candidates) out += candidate_html(s.name, p.train[i], p.now);
      out += "</section>";
    }
    out += "</div>";
  }
  out += "</section>\n";

  out += "<section aria-labelledby=\"h-waiting\"><h2 id=\"h-waiting\">Waiting (" +
         num(p.waiting.size()) + ")</h2>";
  if (p.waiting.empty())
    out += "<p class=\"muted\">No PR is waiting.</p>";
  else {
    out += table_open("Approved PRs waiting for a place in the train, in order",
                      {"Position", "Pull request", "Policy", "Expected to land"});
    for (const auto& r : p.waiting)
      out += "<tr>" + cell("Position", num(r.position.value_or(0))) +
             cell("Pull request", pr_link(s.name, r.pr) + " " + pr_meta(r.pr)) +
             cell("Policy", verdict_html(r.verdict, p.now)) +
             cell("Expected to land", eta_html(r.eta, p.now)) + "</tr>";
    out += kTableClose;
  }
  out += "</section>\n";

  if (!p.others.empty()) {
    out += "<section aria-labelledby=\"h-others\"><h2 id=\"h-others\">Not in the queue (" +
           num(p.others.size()) + ")</h2>";
    out += table_open("Open, checking, failed and cancelled PRs",
                      {"Pull request", "Status", "Policy", "Reason"});
    // Every open PR of a forge is here, and every viewer downloads the page again at each
    // event: the newest kShownOthers (by number), the rest counted.
    const std::size_t first = p.others.size() > kShownOthers ? p.others.size() - kShownOthers : 0;
    for (std::size_t i = first; i < p.others.size(); ++i) {
      const PrRow& r = p.others[i];
      out += "<tr>" + cell("Pull request", pr_link(s.name, r.pr) + " " + pr_meta(r.pr)) +
             cell("Status", status_badge(r.pr.status)) +
             cell("Policy", verdict_html(r.verdict, p.now)) +
             cell("Reason", reason_html(r.pr.reason_code, r.pr.reason, r.pr.details)) + "</tr>";
    }
    out += kTableClose;
    if (first > 0)
      out += "<p class=\"muted\">... and " + num(static_cast<std::int64_t>(first)) +
             " older ones, in <a href=\"/api/v1/repos/" + html_escape(s.name) +
             "/queue\">the queue's JSON</a>.</p>";
    out += "</section>\n";
  }

  if (p.releases) out += render_releases(*p.releases, p.now);  // releases_view.hpp

  out += "<section aria-labelledby=\"h-outcomes\"><h2 id=\"h-outcomes\">Recent outcomes (" +
         num(p.outcomes.size()) + ")</h2>";
  if (p.outcomes.empty())
    out += "<p class=\"muted\">No PR has finished yet.</p>";
  else {
    out += table_open("The newest finished PRs, newest first",
                      {"When", "Pull request", "Outcome", "Reason", "Merge requested by"});
    for (const auto& h : p.outcomes) {
      queue::PullRequest pr;
      pr.number = h.number;
      pr.title = h.title;
      pr.branch = h.branch;
      pr.author = h.author;
      pr.head = h.head;
      out += "<tr>" + cell("When", when(h.at, p.now)) +
             cell("Pull request", pr_link(s.name, pr) + " " + pr_meta(pr)) +
             cell("Outcome", status_badge(h.status)) +
             cell("Reason",
                  reason_html(h.reason == queue::Reason::Merged ? queue::Reason::None : h.reason,
                              h.status == queue::PrStatus::Merged ? "" : h.message, h.details)) +
             cell("Merge requested by", html_escape(h.approver)) + "</tr>";
    }
    out += kTableClose;
  }
  out += "</section>\n";
  return out + foot(p.now);
}

std::string render_pull(const PullPage& p) {
  const auto& pr = p.view.pr;
  const std::string events = "/api/v1/repos/" + p.repo + "/events";
  std::string out = head("#" + num(pr.number) + " " + pr.title + " · " + p.repo) +
                    top(" / <a href=\"" + repo_path(p.repo) + "\">" + html_escape(p.repo) +
                        "</a> / #" + num(pr.number)) +
                    main_open(events, p.last_seq);
  out += "<h1>#" + num(pr.number) + " " + html_escape(pr.title) + "</h1>\n";
  out +=
      "<section class=\"card\" aria-labelledby=\"h-now\"><h2 id=\"h-now\">Now</h2>"
      "<dl class=\"facts\">";
  out += "<dt>Status</dt><dd>" + status_badge(pr.status);
  if (p.view.archived) out += " <span class=\"muted\">(finished; from the history)</span>";
  out += "</dd><dt>Branch</dt><dd>" + pr_meta(pr) + "</dd>";
  if (p.row.position) out += "<dt>Position</dt><dd>" + num(*p.row.position) + " in the queue</dd>";
  if (p.row.position || p.candidate)
    out += "<dt>Expected to land</dt><dd>" + eta_html(p.row.eta, p.now) + "</dd>";
  if (pr.reason_code != queue::Reason::None || !pr.reason.empty())
    out += "<dt>Reason</dt><dd>" + reason_html(pr.reason_code, pr.reason, pr.details) + "</dd>";
  out += "</dl>" + verdict_html(p.row.verdict, p.now) + "</section>\n";
  if (p.candidate) {
    out += "<section aria-labelledby=\"h-cand\"><h2 id=\"h-cand\">In the train</h2>" +
           candidate_html(p.repo, *p.candidate, p.now) + "</section>\n";
  }
  out += "<section aria-labelledby=\"h-timeline\"><h2 id=\"h-timeline\">Timeline</h2>";
  if (p.timeline.empty())
    out += "<p class=\"muted\">Nothing recorded yet.</p>";
  else {
    out += "<ol class=\"timeline\">";
    for (const auto& t : p.timeline) {
      out += "<li>" + when(t.at, p.now) + " <span class=\"what\">" + html_text(t.what) + "</span>";
      if (!t.reason_code.empty())
        out += " <code class=\"reason\">" + html_escape(t.reason_code) + "</code>";
      out += details_list(t.details);
      if (!t.checks.empty()) out += checks_html(t.checks);
      out += "</li>";
    }
    out += "</ol>";
  }
  out += "</section>\n";
  return out + foot(p.now);
}

std::string render_error(int status, const std::string& message) {
  return head("Error " + num(status)) + top("") + main_open("", 0) + "<h1>Error " + num(status) +
         "</h1><p>" + html_escape(message) + "</p><p><a href=\"/\">All repositories</a></p>" +
         "</main>\n</body>\n</html>\n";
}

const std::string& pages_csp() {
  static const std::string policy =
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
      "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
  return policy;
}

}  // namespace dmz::page

#include "bot/http/pages.hpp"

#include <doctest/doctest.h>

#include <regex>

using namespace dmz;
using namespace dmz::page;
namespace q = dmz::queue;

namespace {

constexpr Millis kNow = 1'800'000'000'000;  // 2027-01-15
const std::string kHostile = "<script>alert(1)</script>";
const std::string kHostileBranch = "feature/\"><img src=x onerror=alert(1)>";

q::PullRequest hostile_pr(int n) {
  q::PullRequest p;
  p.number = n;
  p.title = kHostile + " & 'quotes'";
  p.branch = kHostileBranch;
  p.author = "<b>eve</b>";
  p.head = std::string(40, 'a');
  p.status = q::PrStatus::Building;
  p.approval = q::Approval{p.head, "mm<i>", kNow - 60'000};
  return p;
}

RepoPage hostile_page() {
  RepoPage p;
  p.now = kNow;
  p.last_seq = 42;
  p.summary.name = "acme/widget";
  p.summary.forge = "plain";
  p.summary.strategy = "serial";
  p.summary.master_branch = "master";
  p.summary.master = std::string(40, 'f');
  p.summary.health.loaded = true;
  p.summary.health.remote_ok = true;
  p.summary.health.last_fetch_ok = kNow - 5'000;
  p.summary.warnings.push_back(
      {"check-never-reports",
       "`ci/test` never reports on `dmz`: does your CI build on push to it?"});
  CandidateRow c;
  c.candidate.id = 3;
  c.candidate.sha = std::string(40, 'c');
  c.candidate.status = q::CandidateStatus::Building;
  c.candidate.pushed_at = kNow - 120'000;
  c.elapsed = 120'000;
  c.expected = 300'000;
  c.eta = kNow + 180'000;
  PrRow r;
  r.pr = hostile_pr(5);
  r.verdict.state = Verdict::State::Passed;
  r.verdict.approver = "mm<i>";
  r.verdict.approved_sha = r.pr.head;
  c.prs.push_back(r);
  CheckRow evil;
  evil.context = "ci/<evil>";
  evil.look = CheckLook::Failed;
  evil.url = "javascript:alert(1)";
  evil.required = true;
  CheckRow good;
  good.context = "ci/test";
  good.look = CheckLook::Running;
  good.url = "https://ci.example/build/1?a=1&b=2";
  good.elapsed = 60'000;
  good.expected = 240'000;
  CheckRow waiting;
  waiting.context = "ci/lint";
  c.checks = {evil, good, waiting};
  p.train.push_back(c);
  PrRow w;
  w.pr = hostile_pr(6);
  w.pr.status = q::PrStatus::Queued;
  w.position = 1;
  w.eta = kNow + 480'000;
  w.verdict.state = Verdict::State::Passed;
  p.waiting.push_back(w);
  PrRow failed;
  failed.pr = hostile_pr(8);
  failed.pr.status = q::PrStatus::Failed;
  failed.pr.reason_code = q::Reason::PolicyFailed;
  failed.pr.reason = "the policy refused it <now>";
  failed.verdict.state = Verdict::State::Failed;
  failed.verdict.reasons = {"commit aaaaaaa is not signed by <anyone>"};
  p.others.push_back(failed);
  HistoryEntry h;
  h.number = 4;
  h.status = q::PrStatus::Failed;
  h.reason = q::Reason::BuildFailed;
  h.message = "check ci/test failed: fix the build, then retry";
  h.details = {"https://ci.example/build/0", "javascript:alert(2)"};
  h.title = kHostile;
  h.branch = kHostileBranch;
  h.at = kNow - 3'600'000;
  p.outcomes.push_back(h);
  return p;
}

std::size_t count(const std::string& hay, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("pages: escaping, and backticks as code") {
  CHECK(html_escape("<a href=\"x\">'&'</a>") ==
        "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
  CHECK(html_text("`ci/test` never reports on `dmz`") ==
        "<code>ci/test</code> never reports on <code>dmz</code>");
  CHECK(html_text("a `<b>` c") == "a <code>&lt;b&gt;</code> c");
  CHECK(html_text("a lone ` tick") == "a lone ` tick");
  CHECK(duration_text(0) == "0 s");
  CHECK(duration_text(59'999) == "59 s");
  CHECK(duration_text(200'000) == "3 min 20 s");
  CHECK(duration_text(180'000) == "3 min");
  CHECK(duration_text(7'500'000) == "2 h 5 min");
}

TEST_CASE("pages: the repository page renders the train, the queue and the outcomes") {
  auto html = render_repo(hostile_page());
  // Data is text: no markup from titles, branches, authors, approvers, checks or reasons.
  CHECK(html.find(kHostile) == std::string::npos);
  CHECK(html.find("<img") == std::string::npos);
  CHECK(html.find("<b>eve") == std::string::npos);
  CHECK(html.find("<i>") == std::string::npos);
  CHECK(html.find("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#39;quotes&#39;") !=
        std::string::npos);
  CHECK(html.find("feature/&quot;&gt;&lt;img src=x onerror=alert(1)&gt;") != std::string::npos);
  CHECK(html.find("ci/&lt;evil&gt;") != std::string::npos);
  // Links only where safe.
  CHECK(html.find("href=\"javascript") == std::string::npos);
  CHECK(html.find("<li>javascript:alert(2)</li>") != std::string::npos);  // shown, as text
  CHECK(html.find("<a href=\"https://ci.example/build/1?a=1&amp;b=2\" rel=\"noopener "
                  "noreferrer\"><code>ci/test</code></a>") != std::string::npos);
  CHECK(html.find("<a href=\"https://ci.example/build/0\"") != std::string::npos);
  // Every status has its word beside its colour.
  for (const char* word : {">failed</span>", ">running</span>", ">pending</span>",
                           ">building</span>", ">passed</span>"})
    CHECK_MESSAGE(html.find(word) != std::string::npos, word);
  // What a developer looks for.
  CHECK(html.find("<h2 id=\"h-train\">Train (1)</h2>") != std::string::npos);
  CHECK(html.find("Candidate 3") != std::string::npos);
  CHECK(html.find("building for 2 min of ~5 min expected") != std::string::npos);
  CHECK(html.find("1 min of ~4 min") != std::string::npos);
  CHECK(html.find("lands <time") != std::string::npos);
  CHECK(html.find(">in 3 min</time>") != std::string::npos);
  CHECK(html.find("<h2 id=\"h-waiting\">Waiting (1)</h2>") != std::string::npos);
  CHECK(html.find(">in 8 min</time>") != std::string::npos);
  CHECK(html.find("merge requested by <strong>mm&lt;i&gt;</strong>") != std::string::npos);
  CHECK(html.find("What is missing:") != std::string::npos);
  CHECK(html.find("commit aaaaaaa is not signed by &lt;anyone&gt;") != std::string::npos);
  CHECK(html.find("<code class=\"reason\">policy-failed</code>") != std::string::npos);
  CHECK(html.find("<code class=\"reason\">build-failed</code> check ci/test failed: fix the "
                  "build, then retry") != std::string::npos);
  CHECK(html.find("<strong>Needs a person:</strong> <code>ci/test</code> never reports on "
                  "<code>dmz</code>") != std::string::npos);
  CHECK(html.find("href=\"/repos/acme/widget/pulls/5\"") != std::string::npos);
  // Live: where the feed is and where it resumes; assets from dmzbot itself, nothing inline.
  CHECK(html.find("data-events=\"/api/v1/repos/acme/widget/events\" data-last-seq=\"42\"") !=
        std::string::npos);
  CHECK(html.find("<script src=\"/assets/dmzbot.js\" defer></script>") != std::string::npos);
  CHECK(count(html, "<script") == 1);
  CHECK(html.find("style=") == std::string::npos);
  CHECK(html.find("<style") == std::string::npos);
  CHECK(html.find("<html lang=\"en\">") != std::string::npos);
  CHECK(html.find("<main id=\"main\"") != std::string::npos);
  // Every table has a caption and column headers.
  CHECK(count(html, "<table>") == count(html, "<caption>"));
  CHECK(count(html, "<th scope=\"col\">") >= 4);
}

TEST_CASE("pages: a PR's long lists of reasons show their first few, cut to a line") {
  RepoPage p = hostile_page();
  PrRow& failed = p.others.at(0);
  failed.verdict.reasons.clear();
  for (int i = 0; i < 5'000; ++i)
    failed.verdict.reasons.push_back("commit c" + std::to_string(i) + " is not signed");
  failed.pr.details = failed.verdict.reasons;
  failed.pr.details[0] = std::string(10'000, 'x');
  failed.pr.reason = "merge conflict in " + std::string(50'000, 'y');
  const auto html = render_repo(p);
  CHECK(html.size() < 40'000);
  CHECK(html.find("commit c19 is not signed") != std::string::npos);
  CHECK(html.find("commit c20 is not signed") == std::string::npos);
  CHECK(count(html, "... and 4980 more") == 2);  // the verdict's reasons and the PR's details
  CHECK(html.find(std::string(300, 'x') + "...</li>") != std::string::npos);
  CHECK(html.find(std::string(301, 'x')) == std::string::npos);
  CHECK(html.find(std::string(1'001, 'y')) == std::string::npos);
}

TEST_CASE("pages: a candidate shows every required check and at most 20 others, the rest counted") {
  RepoPage p = hostile_page();
  auto& checks = p.train.at(0).checks;
  for (int i = 0; i < 500; ++i) {
    CheckRow k;
    k.context = "matrix/" + std::to_string(i);
    checks.push_back(k);
  }
  CheckRow last_required;
  last_required.context = "ci/required-last";
  last_required.required = true;
  checks.push_back(last_required);
  const auto html = render_repo(p);
  CHECK(html.find("<code>ci/&lt;evil&gt;</code>") != std::string::npos);
  CHECK(html.find("<code>ci/required-last</code>") != std::string::npos);
  // ci/test and ci/lint are the first two not required; 18 of the matrix follow them.
  CHECK(html.find("<code>matrix/17</code>") != std::string::npos);
  CHECK(html.find("<code>matrix/18</code>") == std::string::npos);
  CHECK(html.find("and 482 more checks not required") != std::string::npos);
}

TEST_CASE("pages: a check's description is cut to a line (UTF-8 safe)") {
  RepoPage p = hostile_page();
  auto& good = p.train.at(0).checks.at(1);
  good.description = std::string(139, 'd') + "\xc3\xa9" + std::string(1'000, 'q');
  const auto html = render_repo(p);
  CHECK(html.find(std::string(139, 'd') + "...</span>") != std::string::npos);
  CHECK(html.find(std::string(10, 'q')) == std::string::npos);
}

TEST_CASE("pages: the newest 100 PRs not in the queue are listed, the others counted") {
  RepoPage p = hostile_page();
  p.others.clear();
  for (int n = 1; n <= 150; ++n) {
    PrRow r;
    r.pr = hostile_pr(n);
    r.pr.status = q::PrStatus::Open;
    p.others.push_back(r);
  }
  const auto html = render_repo(p);
  CHECK(html.find("Not in the queue (150)") != std::string::npos);
  CHECK(html.find("href=\"/repos/acme/widget/pulls/150\"") != std::string::npos);
  CHECK(html.find("href=\"/repos/acme/widget/pulls/51\"") != std::string::npos);
  CHECK(html.find("href=\"/repos/acme/widget/pulls/50\"") == std::string::npos);
  CHECK(html.find("... and 50 older ones, in <a href=\"/api/v1/repos/acme/widget/queue\">") !=
        std::string::npos);
}

TEST_CASE("pages: an empty repository page says so") {
  RepoPage p;
  p.now = kNow;
  p.summary.name = "acme/empty";
  p.summary.forge = "plain";
  p.summary.strategy = "serial";
  auto html = render_repo(p);
  CHECK(html.find("Nothing is building.") != std::string::npos);
  CHECK(html.find("No PR is waiting.") != std::string::npos);
  CHECK(html.find("No PR has finished yet.") != std::string::npos);
  CHECK(html.find("no landing yet") != std::string::npos);
  CHECK(html.find("no check seen yet") != std::string::npos);
  CHECK(html.find(">not served</span>") != std::string::npos);  // health not loaded
}

TEST_CASE("pages: the index lists every repository with its health") {
  RepoSummary a;
  a.name = "acme/<widget>";
  a.forge = "plain";
  a.strategy = "serial";
  a.queue_length = 2;
  a.candidates = 1;
  a.master = std::string(40, 'f');
  a.health.loaded = true;
  a.health.remote_ok = false;
  a.health.fetch_failures = 4;
  a.health.last_error = "connection <refused>";
  a.last_check = LastCheck{"ci/test", q::CheckState::Success, std::string(40, 'c'), kNow - 1000};
  HistoryEntry landed;
  landed.number = 9;
  landed.at = kNow - 120'000;
  a.last_landing = landed;
  auto html = render_index({a}, kNow);
  CHECK(html.find("acme/&lt;widget&gt;") != std::string::npos);
  CHECK(html.find("<widget>") == std::string::npos);
  CHECK(html.find("2 PRs, 1 candidate building") != std::string::npos);
  CHECK(html.find(">unreachable</span> 4 failed fetches in a row: connection &lt;refused&gt;") !=
        std::string::npos);
  CHECK(html.find("last landing <a href=\"/repos/acme/&lt;widget&gt;/pulls/9\">#9</a>") !=
        std::string::npos);
  CHECK(html.find(">2 min ago</time>") != std::string::npos);
  CHECK(html.find("last check <code>ci/test</code> <span class=\"badge b-passed\">passed</span>") !=
        std::string::npos);
  // The overview follows every repository's live feed from where it was rendered.
  CHECK(html.find("data-events=\"/api/v1/events\" data-last-seq=\"0\"") != std::string::npos);
  CHECK(render_index({a}, kNow, 77).find("data-last-seq=\"77\"") != std::string::npos);
  CHECK(render_index({}, kNow).find("No repository is configured.") != std::string::npos);
  CHECK(html.find("(no forge API)") != std::string::npos);
}

TEST_CASE("pages: a forge API's state shows on the health line: ok, failing, rate limited") {
  RepoSummary a;
  a.name = "octo/widgets";
  a.forge = "github";
  a.health.loaded = true;
  a.health.api.used = true;
  a.health.api.rate_remaining = 4321;
  a.health.api.last_reconcile = kNow - 60'000;
  auto html = render_index({a}, kNow);
  CHECK(html.find("<span class=\"badge b-passed\">API ok</span>; 4321 requests left") !=
        std::string::npos);
  CHECK(html.find("last reconciled") != std::string::npos);
  CHECK(html.find("no forge API") == std::string::npos);
  a.health.api.ok = false;
  a.health.api.last_error = "GET /pulls: 502 <Bad Gateway>";
  html = render_index({a}, kNow);
  CHECK(html.find("API failing</span>: GET /pulls: 502 &lt;Bad Gateway&gt;") != std::string::npos);
  a.health.api.blocked_until = kNow + 600'000;
  html = render_index({a}, kNow);
  CHECK(html.find(">rate limited</span> until") != std::string::npos);
}

TEST_CASE("pages: a PR's timeline") {
  PullPage p;
  p.repo = "acme/widget";
  p.now = kNow;
  p.view.pr = hostile_pr(5);
  p.view.pr.status = q::PrStatus::Failed;
  p.view.pr.reason_code = q::Reason::BuildFailed;
  p.view.pr.reason = "check ci/test failed";
  p.view.archived = true;
  p.row.pr = p.view.pr;
  p.row.verdict.state = Verdict::State::Passed;
  p.row.verdict.approver = "mm";
  p.timeline.push_back({kNow - 300'000, "registered from `" + kHostileBranch + "`", "", {}});
  p.timeline.push_back(
      {kNow - 60'000, "failed: check ci/test failed", "build-failed", {"https://ci.example/1"}});
  auto html = render_pull(p);
  CHECK(html.find("<h1>#5 &lt;script&gt;") != std::string::npos);
  CHECK(html.find(kHostile) == std::string::npos);
  CHECK(html.find("<img") == std::string::npos);
  CHECK(html.find("<ol class=\"timeline\">") != std::string::npos);
  CHECK(html.find(">5 min ago</time> <span class=\"what\">registered from <code>feature/&quot;"
                  "&gt;&lt;img") != std::string::npos);
  CHECK(html.find("<code class=\"reason\">build-failed</code>") != std::string::npos);
  CHECK(html.find("(finished; from the history)") != std::string::npos);
  CHECK(html.find("<a href=\"https://ci.example/1\"") != std::string::npos);
}

TEST_CASE("pages: who signed a PR's commits shows beside its verdict") {
  RepoPage p = hostile_page();
  auto& v = p.train[0].prs[0].verdict;
  v.signers = {"alice", "<b>mallory</b>"};
  auto html = render_repo(p);
  CHECK(html.find("<span class=\"label\">Signed by</span> <strong>alice</strong>, "
                  "<strong>&lt;b&gt;mallory&lt;/b&gt;</strong>") != std::string::npos);
  CHECK(html.find("<b>mallory") == std::string::npos);
  // A passed verdict without verified signatures says so (no policy, or none required).
  CHECK(html.find("no verified signature") != std::string::npos);  // the waiting PR's
  v.state = Verdict::State::Checking;
  v.signers.clear();
  p.waiting.clear();
  p.others.clear();
  CHECK(render_repo(p).find("Signed by") == std::string::npos);  // not judged yet
  PullPage pull;
  pull.repo = "acme/widget";
  pull.now = kNow;
  pull.view.pr = hostile_pr(5);
  pull.row.verdict.state = Verdict::State::Failed;
  pull.row.verdict.signers = {"alice"};
  pull.row.verdict.reasons = {"commit 1234567 is unsigned"};
  html = render_pull(pull);
  CHECK(html.find("Signed by</span> <strong>alice</strong>") != std::string::npos);
  CHECK(html.find("What is missing:") != std::string::npos);
}

TEST_CASE("pages: whose approvals the policy counted, apart from who asked to merge") {
  RepoPage p = hostile_page();
  auto& v = p.train[0].prs[0].verdict;
  v.approvers = {"alice", "<b>bob</b>"};
  auto html = render_repo(p);
  CHECK(html.find("merge requested by <strong>mm&lt;i&gt;</strong>") != std::string::npos);
  CHECK(html.find("<span class=\"label\">Approved (policy)</span> <strong>alice</strong>, "
                  "<strong>&lt;b&gt;bob&lt;/b&gt;</strong>") != std::string::npos);
  CHECK(html.find("<b>bob") == std::string::npos);
  // The waiting PR passed without a counted approval: none was required.
  CHECK(html.find("Approved (policy)</span> <span class=\"muted\">no approval required</span>") !=
        std::string::npos);
  // The policy-failed PR: nothing counted, and what is missing is listed.
  auto& failed = p.others[0].verdict;
  failed.reasons = {"needs 2 approvals from maintainers for paths **, has 0",
                    "approval by <i>dev</i> does not count: dev is the PR's author"};
  html = render_repo(p);
  const auto none = html.find(
      "Approved (policy)</span> <span class=\"muted\">no approval "
      "counted</span>");
  const auto missing = html.find("What is missing:");
  REQUIRE(none != std::string::npos);
  REQUIRE(missing != std::string::npos);
  CHECK(none < missing);
  CHECK(html.find("<li>needs 2 approvals from maintainers for paths **, has 0</li>", missing) !=
        std::string::npos);
  CHECK(html.find("approval by &lt;i&gt;dev&lt;/i&gt; does not count", missing) !=
        std::string::npos);
  // Not judged yet: nobody is named as approving.
  v.state = Verdict::State::Checking;
  p.waiting.clear();
  p.others.clear();
  CHECK(render_repo(p).find("Approved (policy)") == std::string::npos);
  // The PR page shows the same verdict.
  PullPage pull;
  pull.repo = "acme/widget";
  pull.now = kNow;
  pull.view.pr = hostile_pr(5);
  pull.row.verdict.state = Verdict::State::Failed;
  pull.row.verdict.approver = "mm";
  pull.row.verdict.approvers = {"carol"};
  pull.row.verdict.reasons = {"needs 2 approvals from maintainers for paths **, has 1 (carol)"};
  html = render_pull(pull);
  CHECK(html.find("merge requested by <strong>mm</strong>") != std::string::npos);
  CHECK(html.find("Approved (policy)</span> <strong>carol</strong>") != std::string::npos);
  CHECK(html.find("<li>needs 2 approvals from maintainers for paths **, has 1 (carol)</li>") !=
        std::string::npos);
}

TEST_CASE("pages: lanes side by side, batches and probes marked") {
  RepoPage p = hostile_page();
  CandidateRow other = p.train[0];
  other.candidate.id = 9;
  other.candidate.lane = 9;
  other.candidate.prs = {11, 12, 13};
  CandidateRow probe = p.train[0];
  probe.candidate.id = 10;
  probe.candidate.lane = 10;
  probe.candidate.probe = true;
  probe.candidate.with = {11, 12};
  p.train.push_back(other);
  p.train.push_back(probe);
  p.lanes = {Lane{0, "main lane", false, {0}}, Lane{9, "lane 9", false, {1}},
             Lane{0,
                  "probes (each PR built before it joins the chain, with the PRs ahead it may "
                  "conflict with)",
                  true,
                  {2}}};
  auto html = render_repo(p);
  const auto lanes = html.find("<div class=\"lanes\">");
  REQUIRE(lanes != std::string::npos);
  const auto main_lane = html.find("<h3 id=\"lane-0\">main lane (1)</h3>");
  const auto lane9 = html.find("<h3 id=\"lane-9\">lane 9 (1)</h3>");
  const auto probes = html.find(
      "<h3 id=\"lane-probes\">probes (each PR built before it joins the chain, with the PRs "
      "ahead it may conflict with) (1)</h3>");
  REQUIRE(main_lane != std::string::npos);
  REQUIRE(lane9 != std::string::npos);
  REQUIRE(probes != std::string::npos);
  CHECK(lanes < main_lane);
  // Each candidate in its lane's section.
  CHECK(main_lane < html.find("id=\"cand-3\""));
  CHECK(html.find("id=\"cand-3\"") < lane9);
  CHECK(lane9 < html.find("id=\"cand-9\""));
  CHECK(html.find("id=\"cand-9\"") < probes);
  CHECK(probes < html.find("id=\"cand-10\""));
  CHECK(html.find("<span class=\"batch\">batch of 3</span>") != std::string::npos);
  CHECK(html.find("<span class=\"muted\">built with #11, #12</span>") != std::string::npos);
  CHECK(html.find("<span class=\"badge b-pending\">probe</span>") != std::string::npos);
  // One chain: the candidates, no lane sections.
  p.lanes.clear();
  CHECK(render_repo(p).find("class=\"lanes\"") == std::string::npos);
}

TEST_CASE("pages: a finished PR's timeline shows its candidates' checks with their links") {
  PullPage p;
  p.repo = "acme/widget";
  p.now = kNow;
  p.view.pr = hostile_pr(5);
  p.view.archived = true;
  TimelineEntry t{kNow - 120'000, "in candidate 8, pushed to `dmz` at `cccccccccc`", "", {}, {}};
  CheckRow failed;
  failed.context = "ci/test";
  failed.look = CheckLook::Failed;
  failed.required = true;
  failed.url = "https://ci.example/8";
  failed.elapsed = 60'000;
  failed.at = kNow - 60'000;
  CheckRow evil;
  evil.context = "ci/<x>";
  evil.look = CheckLook::Passed;
  evil.url = "javascript:alert(1)";
  t.checks = {failed, evil};
  p.timeline.push_back(t);
  auto html = render_pull(p);
  CHECK(html.find("in candidate 8, pushed to <code>dmz</code>") != std::string::npos);
  CHECK(html.find("<span class=\"badge b-failed\">failed</span> <a href=\"https://ci.example/8\" "
                  "rel=\"noopener noreferrer\"><code>ci/test</code></a>") != std::string::npos);
  CHECK(html.find("title=\"reported ") != std::string::npos);
  CHECK(html.find(">1 min</span>") != std::string::npos);
  CHECK(html.find("javascript:") == std::string::npos);
  CHECK(html.find("<code>ci/&lt;x&gt;</code> <span class=\"muted\">(not required)</span>") !=
        std::string::npos);
}

TEST_CASE("pages: the CSP allows only dmzbot's own assets") {
  const auto& csp = pages_csp();
  CHECK(csp.starts_with("default-src 'none'; script-src 'self'; style-src 'self'"));
  CHECK(csp.find("unsafe") == std::string::npos);
  CHECK(csp.find("frame-ancestors 'none'") != std::string::npos);
  CHECK(render_error(404, "no <such> repo").find("no &lt;such&gt; repo") != std::string::npos);
}

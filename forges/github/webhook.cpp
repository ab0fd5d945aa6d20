#include "forges/github/webhook.hpp"

#include <simdjson.h>

#include <algorithm>
#include <cctype>
#include <optional>

#include "base/crypto.hpp"
#include "base/iso_time.hpp"
#include "base/text.hpp"
#include "forges/github/commands.hpp"

namespace dmz::forges::github {
namespace {

namespace q = queue;
// simdjson, not nlohmann_json: webhooks are parsed on the thread that answers them, and
// simdjson reads a 10 KB payload about 25 times faster (SIMD, one tape per document, no allocation
// per value).
using json = simdjson::dom::element;

// Reading a payload: every field may be missing or null in some GitHub version; `at` walks a
// path and gives nothing for anything that is not there.
std::optional<json> at(json j, std::initializer_list<const char*> path) {
  for (const char* key : path) {
    simdjson::dom::object object;
    json next;
    if (j.get(object) || object.at_key(key).get(next) || next.is_null()) return std::nullopt;
    j = next;
  }
  return j;
}
std::string str(json j, std::initializer_list<const char*> path) {
  std::string_view s;
  auto v = at(j, path);
  return v && !v->get(s) ? std::string(s) : std::string();
}
bool flag(json j, std::initializer_list<const char*> path) {
  bool b = false;
  auto v = at(j, path);
  return v && !v->get(b) && b;
}
int number(json j, std::initializer_list<const char*> path) {
  std::int64_t n = 0;
  auto v = at(j, path);
  if (!v || v->get(n)) return 0;
  return n > 0 && n <= (1 << 30) ? static_cast<int>(n) : 0;
}

bool zero_sha(const std::string& s) { return s.find_first_not_of('0') == std::string::npos; }

std::string url_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() &&
               std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
               std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// One delivery being read.
struct Reader {
  const WebhookSettings& cfg;
  json p;
  q::Millis now;
  Delivery d;
  std::vector<std::string>* ignored = nullptr;  // reports of checks from another source

  // Whether a report of check `name` on `sha` by `reporter` counts (cfg.check_sources); one
  // that does not is noted.
  bool counts(const std::string& name, const std::string& sha, bool check_run,
              const std::string& reporter, std::int64_t app_id = 0) {
    if (from_source(cfg.check_sources, name, check_run, reporter, app_id)) return true;
    if (ignored)
      ignored->push_back(ignored_report(cfg.check_sources, name, sha, check_run, reporter, app_id));
    return false;
  }

  std::string sender() const { return str(p, {"sender", "login"}); }

  void reply(int n, q::NoticeKind kind, std::string message) {
    d.events.push_back(q::Reply{n, kind, std::move(message), {}, now});
  }

  void authorize(int n, const std::string& actor, std::string command, q::Event event,
                 bool pin_head = false, bool quiet = false) {
    FollowUp f;
    f.kind = FollowUp::Kind::kAuthorize;
    f.number = n;
    f.actor = actor;
    f.command = std::move(command);
    f.event = std::move(event);
    f.pin_head = pin_head;
    f.quiet = quiet;
    d.follow_ups.push_back(std::move(f));
  }

  // `reopens`: it makes a closed PR known again (an opening, a reopening, a base moved onto
  // master); a late edit, label, push or ready_for_review of a PR closed since does not.
  q::PrOpened opened(json pr, bool reopens) const {
    return q::PrOpened{number(pr, {"number"}),
                       str(pr, {"head", "ref"}),
                       str(pr, {"user", "login"}),
                       str(pr, {"title"}),
                       str(pr, {"head", "sha"}),
                       now,
                       reopens};
  }

  // Words echoed back inside a code span: without backticks (which would end the span) and
  // without @ (which would mention someone on the writer's behalf).
  static std::string quotable(std::string words) {
    std::erase_if(words, [](char ch) { return ch == '`' || ch == '@'; });
    return words;
  }

  // Why a PR cannot be queued as it is ("" when it can): GitHub merges neither a closed PR
  // nor a draft.
  static std::string not_mergeable(bool closed, bool draft) {
    return closed ? "is closed; reopen it" : draft ? "is a draft; mark it ready for review" : "";
  }

  // "@dmzbot ..." lines of a comment or review on PR n; `seen` is the head the writer saw
  // (a review's commit), "" when unknown: then the head the PR had when it was `written` (the
  // service reads it from the event log, so a push delivered before the comment is never what
  // the comment approves or tries). Anyone may ask for help or the status: each is answered at
  // most once per comment.
  void commands(int n, const std::string& body, const std::string& actor, const std::string& seen,
                q::Millis written, bool closed, bool draft) {
    const std::string why_not = not_mergeable(closed, draft);
    bool helped = false, told = false;
    for (const Command& c : parse_commands(body, mention_name(cfg.bot_name))) {
      const std::string who = "@" + actor;
      const bool queues = c.kind == Command::Kind::kMerge || c.kind == Command::Kind::kTry ||
                          c.kind == Command::Kind::kRetry;
      if (!why_not.empty() && queues) {
        reply(
            n, q::NoticeKind::Failure,
            who + ": #" + std::to_string(n) + " " + why_not + ", then ask again. Nothing changed.");
        continue;
      }
      switch (c.kind) {
        case Command::Kind::kMerge: {
          // A full sha is taken as given (the engine refuses it unless it is the head); an
          // abbreviation or nothing is pinned to the head known when the comment arrived.
          std::string sha = c.sha.empty() ? seen : c.sha;
          const bool pin = !is_object_id(sha);
          authorize(n, actor, "merge", q::MergeRequested{n, sha, actor, now}, pin);
          d.follow_ups.back().written_at = written;
          d.fetch = true;
          break;
        }
        case Command::Kind::kCancel:
          authorize(n, actor, "cancel", q::CancelRequested{n, actor, now});
          d.follow_ups.back().written_at = written;
          break;
        case Command::Kind::kRetry:
          authorize(n, actor, "retry", q::RetryRequested{n, actor, now});
          d.follow_ups.back().written_at = written;
          break;
        case Command::Kind::kPriority:
          authorize(n, actor, "priority", q::PriorityRequested{n, c.priority, actor, now});
          break;
        case Command::Kind::kTry: {
          FollowUp f;
          f.kind = FollowUp::Kind::kTry;
          f.number = n;
          f.actor = actor;
          f.command = "try";
          f.sha = seen;
          f.written_at = written;
          d.follow_ups.push_back(std::move(f));
          d.fetch = true;
          break;
        }
        case Command::Kind::kStatus:
          if (!std::exchange(told, true)) d.events.push_back(q::StatusRequested{n, actor, now});
          break;
        case Command::Kind::kHelp:
          if (std::exchange(helped, true)) break;
          reply(
              n, q::NoticeKind::Info,
              who + ": " +
                  (c.words.empty() ? std::string()
                                   : "I do not know `" + quotable(c.words.substr(0, 80)) + "`; ") +
                  help_text(mention_name(cfg.bot_name), cfg.merge_label));
          break;
      }
    }
  }

  // A check state on a try branch: the result goes to the PR as an answer.
  void try_result(const std::string& branch, const std::string& sha, const std::string& name,
                  q::CheckState state, const std::string& description, const std::string& url) {
    int n = try_number(branch, cfg.try_branch);
    if (n == 0 || state == q::CheckState::Pending) return;
    std::string message =
        "try " + sha.substr(0, 7) + ": " + name + " " + std::string(q::to_string(state));
    if (!description.empty()) message += ": " + description;
    d.events.push_back(q::Reply{
        n, state == q::CheckState::Success ? q::NoticeKind::Success : q::NoticeKind::Failure,
        message, url.empty() ? std::vector<std::string>{} : std::vector<std::string>{url}, now});
  }

  Status pull_request() {
    auto pr = at(p, {"pull_request"});
    if (!pr || !pr->is_object()) return invalid("a pull_request event without its pull request");
    const std::string action = str(p, {"action"});
    const int n = number(*pr, {"number"});
    if (n == 0) return invalid("a pull_request event without a number");
    const std::string head = str(*pr, {"head", "sha"});
    const std::string base = str(*pr, {"base", "ref"});
    // A closed PR is never made known again by an edit or a label: only `reopened` does that.
    const bool closed = str(*pr, {"state"}) == "closed";
    if (action == "edited") {
      if (base != cfg.master && str(p, {"changes", "base", "ref", "from"}) == cfg.master)
        d.events.push_back(q::PrClosed{n, now});  // it left master: out of the queue
      else if (base == cfg.master && is_object_id(head) && !closed)  // a new base or title
        d.events.push_back(opened(*pr, at(p, {"changes", "base"}).has_value()));
      return {};
    }
    if (base != cfg.master) return {};  // a PR into another branch is not dmzbot's
    if (action == "opened" || action == "reopened" || action == "ready_for_review") {
      if (!is_object_id(head))
        return invalid("pull request #" + std::to_string(n) + " has no head sha");
      d.events.push_back(opened(*pr, action != "ready_for_review"));
      d.fetch = true;
    } else if (action == "synchronize") {
      if (!is_object_id(head))
        return invalid("pull request #" + std::to_string(n) + " has no head sha");
      // Made known first, as a label does: a push that overtook its PR's `opened` (GitHub
      // does not deliver in order) is not dropped as a PR unknown, which would leave the
      // older head of the late `opened` as the PR's until the next reconciliation.
      if (!closed) d.events.push_back(opened(*pr, false));
      d.events.push_back(q::PrPushed{n, head, now, false});
      if (const std::string before = str(p, {"before"}); is_object_id(before))
        d.pushed_from[n] = before;
      d.fetch = true;
    } else if (action == "closed") {
      d.events.push_back(q::PrClosed{n, now});
    } else if (action == "converted_to_draft") {
      // Not ready after all: out of the queue (the engine refuses, and it is logged, when the
      // PR was not in it). GitHub lets only the author and writers convert, so no merge master
      // is needed: the author taking their PR back is the usual case.
      d.events.push_back(q::CancelRequested{n, sender(), now});
    } else if (action == "labeled" || action == "unlabeled") {
      if (str(p, {"label", "name"}) != cfg.merge_label || is_bot(sender(), cfg.bot_name)) return {};
      const std::string label = "label " + cfg.merge_label;
      if (action == "unlabeled") {
        authorize(n, sender(), "remove the " + label, q::CancelRequested{n, sender(), now}, false,
                  true);
        d.follow_ups.back().label_added = false;
      } else if (auto why_not = not_mergeable(closed, flag(*pr, {"draft"})); !why_not.empty()) {
        reply(n, q::NoticeKind::Failure,
              "@" + sender() + ": #" + std::to_string(n) + " " + why_not + ", then add the " +
                  label + " again. Nothing changed.");
      } else {
        if (!is_object_id(head))
          return invalid("pull request #" + std::to_string(n) + " has no head sha");
        // Known from here on even if its opening was missed; approved at the head it had when
        // the label was added, never a later one.
        d.events.push_back(opened(*pr, false));
        authorize(n, sender(), "add the " + label, q::MergeRequested{n, head, sender(), now});
        d.follow_ups.back().label_added = true;
        d.fetch = true;
      }
    }
    return {};
  }

  Status issue_comment() {
    if (str(p, {"action"}) != "created" || !at(p, {"issue", "pull_request"})) return {};
    const int n = number(p, {"issue", "number"});
    if (n == 0) return invalid("an issue_comment event without an issue number");
    const std::string actor = str(p, {"comment", "user", "login"});
    if (actor.empty() || is_bot(actor, cfg.bot_name)) return {};
    commands(n, str(p, {"comment", "body"}), actor, "",
             parse_iso8601_ms(str(p, {"comment", "created_at"})).value_or(now),
             str(p, {"issue", "state"}) == "closed", flag(p, {"issue", "draft"}));
    return {};
  }

  Status pull_request_review() {
    const std::string action = str(p, {"action"});
    if (action != "submitted" && action != "dismissed") return {};
    const int n = number(p, {"pull_request", "number"});
    if (n == 0) return invalid("a pull_request_review event without a number");
    if (str(p, {"pull_request", "base", "ref"}) != cfg.master) return {};
    const std::string actor = str(p, {"review", "user", "login"});
    if (actor.empty() || is_bot(actor, cfg.bot_name)) return {};
    // An approval dismissed, or followed by a request for changes, no longer counts (the
    // reviewer's latest review decides, as the policy check reads them).
    if (action == "dismissed" || ascii_lower(str(p, {"review", "state"})) == "changes_requested")
      d.events.push_back(q::ReviewWithdrawn{n, actor, now});
    if (action != "submitted") return {};
    std::string seen = str(p, {"review", "commit_id"});
    if (!is_object_id(seen)) seen.clear();
    commands(n, str(p, {"review", "body"}), actor, seen,
             parse_iso8601_ms(str(p, {"review", "submitted_at"})).value_or(now),
             str(p, {"pull_request", "state"}) == "closed", flag(p, {"pull_request", "draft"}));
    return {};
  }

  Status status() {
    const std::string sha = str(p, {"sha"});
    const std::string context = str(p, {"context"});
    if (!is_object_id(sha) || context.empty())
      return invalid("a status event without sha or context");
    // Who created the status: the status object's creator where the payload has one (the
    // REST API's statuses do), else the event's sender (the status event's payload has no
    // creator; its sender is who posted the status).
    std::string creator = str(p, {"creator", "login"});
    if (creator.empty()) creator = sender();
    if (!counts(context, sha, false, creator)) return {};
    const auto state = status_state(str(p, {"state"}));
    const std::string description = str(p, {"description"});
    const std::string url = str(p, {"target_url"});
    d.events.push_back(q::CheckReported{sha, q::Check{context, state, description, url, now}, now});
    simdjson::dom::array branches;
    if (auto list = at(p, {"branches"}); list && !list->get(branches))
      for (json b : branches)
        if (str(b, {"commit", "sha"}) == sha)
          try_result(str(b, {"name"}), sha, context, state, description, url);
    return {};
  }

  Status check_run() {
    auto run = at(p, {"check_run"});
    if (!run) return invalid("a check_run event without its check run");
    const std::string sha = str(*run, {"head_sha"});
    const std::string name = str(*run, {"name"});
    if (!is_object_id(sha) || name.empty())
      return invalid("a check_run event without head_sha or name");
    if (!counts(name, sha, true, str(*run, {"app", "slug"}), number(*run, {"app", "id"})))
      return {};
    const auto state = run_state(str(*run, {"status"}), str(*run, {"conclusion"}));
    std::string description = str(*run, {"output", "title"});
    if (description.empty()) description = str(*run, {"conclusion"});
    std::string url = str(*run, {"html_url"});
    if (url.empty()) url = str(*run, {"details_url"});
    d.events.push_back(q::CheckReported{sha, q::Check{name, state, description, url, now}, now});
    try_result(str(*run, {"check_suite", "head_branch"}), sha, name, state, description, url);
    return {};
  }

  Status check_suite() {
    const std::string sha = str(p, {"check_suite", "head_sha"});
    if (!is_object_id(sha)) return invalid("a check_suite event without head_sha");
    if (str(p, {"action"}) != "completed") return {};
    // A suite names no checks: its runs are read back, in case one of their events was lost.
    FollowUp f;
    f.kind = FollowUp::Kind::kRefreshChecks;
    f.sha = sha;
    d.follow_ups.push_back(std::move(f));
    return {};
  }

  Status push() {
    const std::string after = str(p, {"after"});
    if (str(p, {"ref"}) != "refs/heads/" + cfg.master || flag(p, {"deleted"}) ||
        !is_object_id(after) || zero_sha(after))
      return {};
    // Only a fetch: the fetch reads where master is now. `after` may be old news (a webhook
    // late behind dmzbot's own later landings, or replayed at a restart), and taken as is it
    // would set master back and cut the whole train to rebuild it twice.
    d.fetch = true;
    return {};
  }

  void reconcile() {
    FollowUp f;
    f.kind = FollowUp::Kind::kReconcile;
    d.follow_ups.push_back(std::move(f));
  }
};

// Whether `list` (an array of repositories) names `repo`.
bool names(std::optional<json> list, const std::string& repo) {
  simdjson::dom::array repos;
  if (!list || list->get(repos)) return false;
  return std::any_of(repos.begin(), repos.end(),
                     [&](json r) { return ascii_lower(str(r, {"full_name"})) == repo; });
}

}  // namespace

q::CheckState status_state(const std::string& s) {
  if (s == "success") return q::CheckState::Success;
  if (s == "failure") return q::CheckState::Failure;
  if (s == "error") return q::CheckState::Error;
  return q::CheckState::Pending;
}

q::CheckState run_state(const std::string& status, const std::string& conclusion) {
  if (status != "completed") return q::CheckState::Pending;
  if (conclusion == "success" || conclusion == "neutral" || conclusion == "skipped")
    return q::CheckState::Success;
  if (conclusion == "cancelled") return q::CheckState::Error;
  return q::CheckState::Failure;
}

std::string mention_name(std::string_view bot_name) {
  std::string name(bot_name);
  if (name.ends_with("[bot]")) name.resize(name.size() - 5);
  return name;
}

bool from_source(const CheckSources& sources, std::string_view name, bool check_run,
                 std::string_view reporter, std::int64_t app_id) {
  auto it = sources.find(std::string(name));
  if (it == sources.end()) return true;
  const std::string who = ascii_lower(reporter), source = ascii_lower(it->second);
  if (check_run && app_id > 0 && source == std::to_string(app_id)) return true;
  if (who.empty()) return false;
  if (check_run) return who == source || who + "[bot]" == source;
  return who == source || who == source + "[bot]";
}

std::string ignored_report(const CheckSources& sources, std::string_view name, std::string_view sha,
                           bool check_run, std::string_view reporter, std::int64_t app_id) {
  auto it = sources.find(std::string(name));
  const std::string source = it == sources.end() ? std::string() : it->second;
  auto quoted = [](std::string_view s) { return "'" + escape_control(utf8_prefix(s, 100)) + "'"; };
  std::string from = !reporter.empty()         ? quoted(reporter)
                     : check_run && app_id > 0 ? "App " + std::to_string(app_id) + " (no slug)"
                     : check_run               ? std::string("no App")
                                               : std::string("nobody");
  return std::string(check_run ? "check run " : "status ") + quoted(name) + " on " +
         escape_control(utf8_prefix(sha, 64)) + " ignored: it came from " + from +
         ", and check_sources takes it only from " + quoted(source);
}

bool is_bot(std::string_view login, std::string_view bot_name) {
  const std::string who = ascii_lower(login), name = ascii_lower(mention_name(bot_name));
  return !who.empty() && (who == name || who == name + "[bot]");
}

int try_number(std::string_view branch, std::string_view try_branch) {
  const std::string prefix = std::string(try_branch) + "/";
  if (!branch.starts_with(prefix)) return 0;
  auto digits = branch.substr(prefix.size());
  if (digits.empty() || digits.size() > 9 || digits.front() == '0' ||
      !std::all_of(digits.begin(), digits.end(),
                   [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
    return 0;
  return std::stoi(std::string(digits));
}

Status verify_signature(std::string_view secret, std::string_view body, std::string_view header) {
  if (secret.empty()) return unauthenticated("no webhook secret is configured");
  if (header.empty()) return unauthenticated("the X-Hub-Signature-256 header is missing");
  const std::string expected = "sha256=" + to_hex(hmac_sha256(secret, body));
  if (!constant_time_equal(ascii_lower(header), expected))
    return unauthenticated("the X-Hub-Signature-256 signature is wrong");
  return {};
}

Result<std::string> payload_of(const InboundRequest& request) {
  std::string type = ascii_lower(request.header("content-type"));
  type = type.substr(0, type.find(';'));
  while (!type.empty() && type.back() == ' ') type.pop_back();
  if (type.empty() || type == "application/json") return request.body;
  if (type == "application/x-www-form-urlencoded") {
    std::string_view body = request.body;
    std::size_t pos = 0;
    while (pos <= body.size()) {
      auto end = body.find('&', pos);
      auto field = body.substr(pos, end == std::string_view::npos ? body.size() - pos : end - pos);
      if (field.starts_with("payload=")) return url_decode(field.substr(8));
      if (end == std::string_view::npos) break;
      pos = end + 1;
    }
    return invalid("a form-encoded webhook without a payload field");
  }
  return invalid("webhook content type " + type + " is neither JSON nor a form");
}

Result<Delivery> parse_delivery(const WebhookSettings& cfg, std::string_view event,
                                std::string_view id, std::string_view payload, q::Millis now,
                                std::vector<std::string>* ignored) {
  if (event.empty()) return invalid("the X-GitHub-Event header is missing");
  if (id.empty() || id.size() > 200) return invalid("the X-GitHub-Delivery header is missing");
  // One parser per thread keeps its buffers between deliveries; a big payload gets its own, so
  // that no thread holds on to a large one's memory.
  constexpr std::size_t kKeptParserBytes = 1 << 20;
  thread_local simdjson::dom::parser kept;
  simdjson::dom::parser big;
  simdjson::dom::parser& parser = payload.size() <= kKeptParserBytes ? kept : big;
  json p;  // the copy made by the parse pads the text, as simdjson needs
  if (parser.parse(payload.data(), payload.size(), /*realloc_if_needed=*/true).get(p) ||
      !p.is_object())
    return invalid("the webhook payload is not a JSON object");
  Reader r{cfg, p, now, {}, ignored};
  r.d.id = std::string(id);
  const std::string repo = ascii_lower(cfg.repo);
  if (auto named = at(p, {"repository"})) {
    if (ascii_lower(str(*named, {"full_name"})) != repo)
      return not_found("the webhook is about " + str(*named, {"full_name"}) + ", not " + cfg.repo);
    r.d.repo = cfg.repo;
  }
  Status s;
  if (event == "pull_request")
    s = r.pull_request();
  else if (event == "issue_comment")
    s = r.issue_comment();
  else if (event == "pull_request_review")
    s = r.pull_request_review();
  else if (event == "status")
    s = r.status();
  else if (event == "check_run")
    s = r.check_run();
  else if (event == "check_suite")
    s = r.check_suite();
  else if (event == "push")
    s = r.push();
  else if (event == "installation" || event == "installation_repositories") {
    const std::string action = str(p, {"action"});
    const bool ours =
        names(at(p, {"repositories"}), repo) || names(at(p, {"repositories_added"}), repo);
    if (ours && action != "deleted" && action != "suspend") {
      r.d.repo = cfg.repo;
      r.reconcile();  // what happened while the App could not see the repository
    }
  }
  // ping and every other event: acknowledged, nothing to do.
  if (!s.ok()) return s.error();
  return std::move(r.d);
}

Result<Delivery> read_delivery(const WebhookSettings& settings, std::string_view secret,
                               const InboundRequest& request, q::Millis now,
                               std::vector<std::string>* ignored) {
  if (Status s = verify_signature(secret, request.body, request.header("x-hub-signature-256"));
      !s.ok())
    return s.error();
  auto payload = payload_of(request);
  if (!payload) return payload.error();
  return parse_delivery(settings, request.header("x-github-event"),
                        request.header("x-github-delivery"), *payload, now, ignored);
}

}  // namespace dmz::forges::github

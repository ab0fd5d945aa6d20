// The repository page's releases section (see releases_view.hpp).
#include "bot/http/releases_view.hpp"

#include <nlohmann/json.hpp>

#include "bot/http/pages.hpp"

namespace dmz::page {
namespace {

using nlohmann::json;

std::vector<std::string> strings(const json& j, const char* key) {
  std::vector<std::string> out;
  if (!j.contains(key)) return out;
  const json& a = j.at(key);
  if (!a.is_array()) throw std::invalid_argument(std::string(key) + " is not an array");
  for (const auto& s : a) out.push_back(s.get<std::string>());
  return out;
}

std::optional<HeldRelease> held(const json& doc, const char* key) {
  if (!doc.contains(key) || doc.at(key).is_null()) return std::nullopt;
  const json& j = doc.at(key);
  HeldRelease h;
  h.branch = j.at("branch").get<std::string>();
  h.commit = j.at("commit").get<std::string>();
  h.tag = j.value("tag", "");
  h.signers = strings(j, "signers");
  h.at = j.value("at", queue::Millis{0});
  return h;
}

std::string ago(queue::Millis at, queue::Millis now) {
  if (at <= 0) return "";
  return at <= now ? (now - at < 1000 ? "just now" : duration_text(now - at) + " ago")
                   : "in " + duration_text(at - now);
}

std::string signers_html(const std::vector<std::string>& signers) {
  if (signers.empty()) return "<span class=\"muted\">nobody</span>";
  std::string out;
  for (const auto& s : signers) out += (out.empty() ? "" : ", ") + html_escape(s);
  return out;
}

std::string held_row(const char* label, const std::optional<HeldRelease>& h, queue::Millis now) {
  std::string out = "<dt>" + std::string(label) + "</dt><dd>";
  if (!h) return out + "<span class=\"muted\">not created yet</span></dd>";
  out += "<code>" + html_escape(h->branch) + "</code> at <code>" +
         html_escape(h->commit.substr(0, 10)) + "</code>";
  if (h->tag.empty())
    out += " · <span class=\"muted\">no promotion by dmzbot is known for this commit</span>";
  else
    out += " · tag <code>" + html_escape(h->tag) + "</code> signed by " + signers_html(h->signers) +
           (h->at > 0 ? " · " + ago(h->at, now) : "");
  return out + "</dd>";
}

}  // namespace

Result<ReleasesView> parse_releases(std::string_view text) {
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return invalid("releases: not a JSON object");
  try {
    ReleasesView v;
    v.staging = held(doc, "staging");
    v.production = held(doc, "production");
    if (doc.contains("recent")) {
      if (!doc.at("recent").is_array()) return invalid("releases: recent is not an array");
      for (const auto& j : doc.at("recent")) {
        PromotionRecord r;
        r.tag = j.at("tag").get<std::string>();
        r.kind = j.value("kind", "");
        r.target = j.value("target", "");
        r.commit = j.value("commit", "");
        r.from = j.value("from", "");
        r.signers = strings(j, "signers");
        r.reasons = strings(j, "reasons");
        r.promoted = j.value("promoted", false);
        r.source = j.value("source", "");
        r.hotfix_branch = j.value("hotfix_branch", "");
        r.at = j.value("at", queue::Millis{0});
        v.recent.push_back(std::move(r));
      }
    }
    return v;
  } catch (const std::exception& e) {  // a missing field or one of the wrong type
    return invalid(std::string("releases: ") + e.what());
  }
}

std::string render_releases(const ReleasesView& v, queue::Millis now) {
  std::string out =
      "<section aria-labelledby=\"h-releases\" class=\"card\"><h2 id=\"h-releases\">Releases</h2>"
      "<dl class=\"facts\">";
  out += held_row("Staging", v.staging, now) + held_row("Production", v.production, now);
  out += "</dl>";
  if (v.recent.empty()) {
    out += "<p class=\"muted\">No tag has been promoted or refused yet.</p>";
    return out + "</section>\n";
  }
  out +=
      "<div class=\"scroll\"><table><caption>The last promotions and refusals, newest first"
      "</caption><thead><tr><th scope=\"col\">When</th><th scope=\"col\">Tag</th>"
      "<th scope=\"col\">Branch</th><th scope=\"col\">Outcome</th><th scope=\"col\">Signers</th>"
      "</tr></thead><tbody>";
  for (const auto& r : v.recent) {
    std::string tag = "<code>" + html_escape(r.tag) + "</code> (" + html_escape(r.kind) + ")";
    if (!r.hotfix_branch.empty())
      tag += " · hotfix <code>" + html_escape(r.hotfix_branch) + "</code>";
    std::string outcome;
    if (r.promoted) {
      outcome = "<span class=\"badge b-passed\">promoted</span> to <code>" +
                html_escape(r.commit.substr(0, 10)) + "</code>";
    } else {
      outcome = "<span class=\"badge b-failed\">refused</span><ul class=\"details\">";
      for (const auto& why : r.reasons) outcome += "<li>" + html_escape(why) + "</li>";
      outcome += "</ul>";
    }
    out += "<tr><td data-label=\"When\">" + ago(r.at, now) + " (" + html_escape(r.source) +
           ")</td><td data-label=\"Tag\">" + tag + "</td><td data-label=\"Branch\">" +
           (r.target.empty() ? "<span class=\"muted\">none</span>"
                             : "<code>" + html_escape(r.target) + "</code>") +
           "</td><td data-label=\"Outcome\">" + outcome + "</td><td data-label=\"Signers\">" +
           signers_html(r.signers) + "</td></tr>";
  }
  return out + "</tbody></table></div></section>\n";
}

}  // namespace dmz::page

#include "bot/http/status_page.hpp"

#include "base/crypto.hpp"  // sha256 and base64 for the CSP hashes

namespace dmz {

namespace {

std::string html_escape(const std::string& s) {
  std::string out;
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

constexpr const char* kHead = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dmzbot</title>
)HTML";

// Inline style and script; the page's Content-Security-Policy allows exactly these by hash.
constexpr const char* kStyle = R"CSS(
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.5em; }
table { border-collapse: collapse; margin: .5em 0 1em; }
th, td { border: 1px solid #ddd; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #eee; }
code { font: 12px ui-monospace, monospace; }
.s { display: inline-block; padding: 0 .4em; border-radius: 3px; background: #ddd; }
.s-merged, .s-success { background: #b7e4b7; } .s-failed, .s-failure, .s-error { background: #f3b3b3; }
.s-building, .s-in_dmz, .s-merging, .s-landing, .s-pending { background: #f6e3a1; }
.s-queued, .s-approved { background: #bcd7f5; } .s-cancelled { background: #ccc; }
.muted { color: #777; } #err, .warn { color: #b00; }
)CSS";

constexpr const char* kScript = R"JS(
"use strict";
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
// A link only for dmzbot's own paths and http(s) URLs: a "javascript:" URL posted by a CI
// status must never become clickable.
function linkOrText(text, url) {
  if (!/^(\/api\/v1\/repos\/|https?:\/\/)/.test(String(url || ""))) return el("span", text);
  const a = el("a", text);
  a.href = url;
  a.rel = "noopener noreferrer";
  return a;
}
function badge(s) { return el("span", s, "s s-" + String(s).replace(/[^a-z_]/g, "")); }
function short(sha) { return sha ? String(sha).slice(0, 10) : ""; }
function checksOf(c) {
  if (!c) return [];
  const list = Array.isArray(c) ? c : Object.keys(c).map(function (k) {
    const v = c[k]; return (v && typeof v === "object") ? Object.assign({context: k}, v) : {context: k, state: v};
  });
  return list;
}
function checkCell(checks) {
  const td = el("td");
  checksOf(checks).forEach(function (c) {
    const d = el("div");
    d.appendChild(linkOrText(c.context || "", c.url));
    d.appendChild(document.createTextNode(" "));
    d.appendChild(badge(c.state || "pending"));
    if (c.description) d.appendChild(el("span", " " + c.description, "muted"));
    td.appendChild(d);
  });
  return td;
}
function row(cells) {
  const tr = el("tr");
  cells.forEach(function (c) { tr.appendChild(c instanceof Node ? c : el("td", c)); });
  return tr;
}
function table(headers, rows) {
  const t = el("table");
  t.appendChild(row(headers.map(function (h) { return el("th", h); })));
  rows.forEach(function (r) { t.appendChild(r); });
  return t;
}
function render(box, q) {
  const out = el("div");
  const m = el("p");
  m.appendChild(document.createTextNode("master "));
  m.appendChild(el("code", short(q.master)));
  out.appendChild(m);
  const api = q.health && q.health.api;
  if (api) {  // a forge with an API: its rate limit and errors show here
    const limited = Number(api.rate_limited_until || 0);
    out.appendChild(el("p", "forge API: " + (limited ? "rate limited until " +
        new Date(limited).toISOString() : api.ok ? "ok" : "failing: " + (api.last_error || "")),
        limited || !api.ok ? "warn" : "muted"));
  }
  const train = Array.isArray(q.train) ? q.train : [];
  out.appendChild(el("h3", "Train (" + train.length + ")"));
  if (train.length) {
    out.appendChild(table(["candidate", "PRs", "sha", "status", "checks"], train.map(function (c) {
      const st = el("td"); st.appendChild(badge(c.status || ""));
      return row([String(c.id), (c.prs || []).map(function (n) { return "#" + n; }).join(" "),
                  el("td", short(c.sha)), st, checkCell(c.checks)]);
    })));
  } else out.appendChild(el("p", "empty", "muted"));
  const prs = Array.isArray(q.prs) ? q.prs.slice() : [];
  prs.sort(function (a, b) { return (a.position ?? 1e9) - (b.position ?? 1e9) || a.number - b.number; });
  out.appendChild(el("h3", "Pull requests (" + prs.length + ")"));
  if (prs.length) {
    out.appendChild(table(["#", "title", "branch", "head", "status", "approval", "reason"], prs.map(function (p) {
      const st = el("td"); st.appendChild(badge(p.status || ""));
      const ap = p.approval ? (p.approval.approver || "") + " @ " + short(p.approval.sha) : "";
      const reason = el("td", p.reason || "");
      (Array.isArray(p.details) ? p.details : []).forEach(function (d) {
        const line = el("div", null, "muted");
        line.appendChild(linkOrText(d, d));
        reason.appendChild(line);
      });
      const tr = row(["#" + p.number, (p.title || "") + (p.author ? " (" + p.author + ")" : ""),
                      p.branch || "", el("td", short(p.head)), st, ap, reason]);
      tr.id = "pr-" + p.number;  // answers on pull requests link here
      return tr;
    })));
  } else out.appendChild(el("p", "none", "muted"));
  const recent = Array.isArray(q.recent) ? q.recent : [];
  out.appendChild(el("h3", "Recently finished (" + recent.length + ")"));
  if (recent.length) {
    out.appendChild(table(["#", "title", "branch", "head", "status", "approval", "reason"], recent.map(function (h) {
      const st = el("td"); st.appendChild(badge(h.status || ""));
      const reason = el("td", h.reason || "");
      (Array.isArray(h.details) ? h.details : []).forEach(function (d) {
        const line = el("div", null, "muted");
        line.appendChild(linkOrText(d, d));
        reason.appendChild(line);
      });
      return row(["#" + h.number, (h.title || "") + (h.author ? " (" + h.author + ")" : ""),
                  h.branch || "", el("td", short(h.head)), st, h.approver || "", reason]);
    })));
  } else out.appendChild(el("p", "none", "muted"));
  box.replaceChildren(out);
}
function queueUrl(repo) {
  return "/api/v1/repos/" + repo.split("/").map(encodeURIComponent).join("/") + "/queue";
}
function watch(repo, box) {
  const status = el("p", "loading…", "muted");
  box.appendChild(status);
  async function poll() {
    try {
      const r = await fetch(queueUrl(repo), {cache: "no-store"});
      const body = await r.json();
      if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
      render(box, body);
    } catch (e) {
      box.replaceChildren(el("p", "cannot load the queue: " + e.message, "muted"));
    }
    setTimeout(poll, 1000);
  }
  poll();
}
async function main() {
  const root = document.getElementById("root");
  const repo = document.body.dataset.repo;
  if (repo) { watch(repo, root); return; }
  try {
    const r = await fetch("/api/v1/repos", {cache: "no-store"});
    const repos = await r.json();
    if (!Array.isArray(repos) || !repos.length) { root.appendChild(el("p", "no repositories configured", "muted")); return; }
    repos.forEach(function (name) {
      const h = el("h2"); const a = el("a", name);
      a.href = "/repos/" + String(name).split("/").map(encodeURIComponent).join("/");
      h.appendChild(a); root.appendChild(h);
      const box = el("div"); root.appendChild(box);
      watch(String(name), box);
    });
  } catch (e) {
    document.getElementById("err").textContent = "cannot load the repository list: " + e.message;
  }
}
main();
)JS";

// 'sha256-<base64>' of an inline element's text, as CSP hashes it.
std::string csp_hash(std::string_view text) {
  return "'sha256-" + base64_encode(sha256(text)) + "'";
}

}  // namespace

std::string status_page_html(const std::string& repo) {
  std::string page = kHead;
  page += "<style>" + std::string(kStyle) + "</style>\n</head>\n";
  page += "<body data-repo=\"" + html_escape(repo) + "\">\n";
  page += "<h1>dmzbot" + (repo.empty() ? std::string() : " — " + html_escape(repo)) + "</h1>\n";
  page += "<p id=\"err\"></p>\n<div id=\"root\"></div>\n";
  page += "<script>" + std::string(kScript) + "</script>\n";
  page += "</body>\n</html>\n";
  return page;
}

const std::string& status_page_csp() {
  static const std::string policy =
      "default-src 'none'; script-src " + csp_hash(kScript) + "; style-src " + csp_hash(kStyle) +
      "; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
  return policy;
}

}  // namespace dmz

#include "bot/http/assets.hpp"

#include <array>

#include "base/crypto.hpp"

namespace dmz {

namespace {

// Light and dark themes follow the system (prefers-color-scheme). Colours keep a contrast of
// at least 4.5:1 for text; every status also has its word.
constexpr std::string_view kCss = R"CSS(
:root {
  --bg: #f6f7f9; --fg: #1d2127; --muted: #59616d; --card: #ffffff; --line: #d5d9e0;
  --link: #0b57c2; --focus: #0b57c2; --code-bg: #eef0f4;
  --ok-bg: #d7f0dc; --ok-fg: #14532d; --bad-bg: #fbdcdc; --bad-fg: #7f1d1d;
  --run-bg: #fdf0c4; --run-fg: #6b4500; --wait-bg: #dde8fb; --wait-fg: #1e3a6e;
  --off-bg: #e4e6ea; --off-fg: #3a3f47; --warn-bg: #fff4d6; --warn-line: #c98a00;
  color-scheme: light dark;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #121417; --fg: #e6e8eb; --muted: #a3abb7; --card: #1b1e23; --line: #343a43;
    --link: #8ab4ff; --focus: #8ab4ff; --code-bg: #262a31;
    --ok-bg: #16361f; --ok-fg: #a6e8b6; --bad-bg: #441b1b; --bad-fg: #ffb4b4;
    --run-bg: #3d3113; --run-fg: #ffd98a; --wait-bg: #1b2d4d; --wait-fg: #b5cdff;
    --off-bg: #2b2f36; --off-fg: #d0d4da; --warn-bg: #3a2e10; --warn-line: #e0a526;
  }
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
a { color: var(--link); }
a:focus-visible, [tabindex]:focus-visible, summary:focus-visible {
  outline: 3px solid var(--focus); outline-offset: 2px; border-radius: 3px; }
.skip { position: absolute; left: -999px; top: 0; padding: .5em 1em; background: var(--card); }
.skip:focus { left: 1em; top: 1em; z-index: 10; }
.top { display: flex; justify-content: space-between; align-items: center; gap: 1em;
  padding: .75em 1.25em; border-bottom: 1px solid var(--line); background: var(--card); }
.brand { font-weight: 700; text-decoration: none; }
.live { font-size: .85em; padding: .1em .6em; border-radius: 999px; background: var(--off-bg);
  color: var(--off-fg); }
.live[data-state="live"] { background: var(--ok-bg); color: var(--ok-fg); }
.live[data-state="down"], .live[data-state="error"] { background: var(--bad-bg); color: var(--bad-fg); }
main { max-width: 72rem; margin: 0 auto; padding: 1em 1.25em 2em; }
main:focus { outline: none; }
h1 { font-size: 1.6em; margin: .3em 0 .6em; overflow-wrap: anywhere; }
h2 { font-size: 1.2em; margin: 1.4em 0 .5em; }
h3 { font-size: 1.05em; margin: 0 0 .3em; }
h4 { font-size: .95em; margin: .8em 0 .2em; }
code { font: .9em ui-monospace, SFMono-Regular, Menlo, monospace; background: var(--code-bg);
  padding: 0 .25em; border-radius: 3px; overflow-wrap: anywhere; }
.card, .candidate { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: .8em 1em; margin: .6em 0; }
.card h2 { margin-top: 0; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1em; margin: .3em 0; }
.facts dt { color: var(--muted); }
.facts dd { margin: 0; }
.label { color: var(--muted); margin-right: .3em; }
.muted, .meta { color: var(--muted); }
.health, .prs, .checks, .details, .warnings { list-style: none; padding: 0; margin: .3em 0; }
.health li, .checks li { margin: .2em 0; }
.details li::before { content: "– "; }
.details { margin-left: 1em; font-size: .92em; }
.prs > li { padding: .3em 0; border-top: 1px dashed var(--line); }
.prs > li:first-child { border-top: 0; }
.warnings li { background: var(--warn-bg); border-left: 4px solid var(--warn-line);
  padding: .4em .7em; margin: .3em 0; border-radius: 4px; }
.badge { display: inline-block; padding: 0 .5em; border-radius: 999px; font-size: .85em;
  font-weight: 600; background: var(--off-bg); color: var(--off-fg); white-space: nowrap; }
.b-passed, .b-merged, .b-success, .b-reachable, .b-landing { background: var(--ok-bg); color: var(--ok-fg); }
.b-failed, .b-failure, .b-error { background: var(--bad-bg); color: var(--bad-fg); }
.b-running, .b-building, .b-in_dmz, .b-merging, .b-approved { background: var(--run-bg); color: var(--run-fg); }
.b-pending, .b-queued { background: var(--wait-bg); color: var(--wait-fg); }
.lanes { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(20rem, 100%), 1fr)); gap: .8em; }
.lane { border-left: 4px solid var(--line); padding-left: .6em; }
.lane h3 { margin: .4em 0 0; }
.batch { font-size: .8em; font-weight: 600; color: var(--muted); }
.signers, .approvers { margin: .1em 0; }
.verdict { margin: .2em 0; font-size: .95em; }
.verdict p { margin: .2em 0 0; }
.time { color: var(--muted); font-variant-numeric: tabular-nums; }
progress { width: 100%; height: .5em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; background: var(--card); }
caption { text-align: left; color: var(--muted); padding: .2em 0; }
th, td { border-bottom: 1px solid var(--line); padding: .45em .6em; text-align: left;
  vertical-align: top; }
th { font-weight: 600; }
.timeline { list-style: none; padding: 0 0 0 1em; border-left: 2px solid var(--line); }
.timeline li { margin: 0 0 .7em; }
.reason { font-weight: 600; }
.foot { max-width: 72rem; margin: 0 auto; padding: 0 1.25em 2em; color: var(--muted);
  font-size: .85em; }
@media (max-width: 40rem) {
  body { font-size: 14px; }
  main { padding: .6em .7em 1.5em; }
  .top { padding: .6em .7em; }
  .facts { grid-template-columns: 1fr; }
  .facts dt { margin-top: .3em; }
  /* Tables become stacked cards: each cell says which column it is. */
  table, caption, tbody, tr, td { display: block; width: 100%; }
  thead tr { position: absolute; width: 1px; height: 1px; overflow: hidden;
    clip-path: inset(50%); white-space: nowrap; }
  tr { border-bottom: 1px solid var(--line); padding: .4em 0; }
  td { border: 0; padding: .15em .5em; }
  td[data-label]::before { content: attr(data-label) ": "; color: var(--muted); font-weight: 600; }
}
)CSS";

// Follows the page's live feed, a repository's or (the overview) every repository's
// (EventSource resumes with Last-Event-ID by itself; after a
// refused connection it starts again from the last id seen) and swaps in the freshly rendered
// <main>. The server renders everything; this script only replaces what it rendered.
constexpr std::string_view kJs = R"JS("use strict";
(function () {
  const main = document.getElementById("main");
  const live = document.getElementById("live");
  if (!main) return;
  function say(text, state) {
    if (!live) return;
    live.hidden = false;
    live.textContent = text;
    live.dataset.state = state;
  }
  let busy = false, again = false;
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      do {
        again = false;
        const r = await fetch(location.pathname + location.search,
                              {cache: "no-store", headers: {Accept: "text/html"}});
        if (!r.ok) throw new Error("HTTP " + r.status);
        const doc = new DOMParser().parseFromString(await r.text(), "text/html");
        const fresh = doc.getElementById("main");
        if (!fresh) throw new Error("no content");
        const focused = document.activeElement;
        const focusedHref = focused && focused.getAttribute ? focused.getAttribute("href") : null;
        const inMain = focused && main.contains(focused);
        // A copy first: adopting a node takes it out of the live childNodes list.
        const nodes = Array.from(fresh.childNodes);
        main.replaceChildren(...nodes.map((n) => document.adoptNode(n)));
        if (inMain && focusedHref) {
          const match = Array.from(main.querySelectorAll("a[href]"))
            .find((a) => a.getAttribute("href") === focusedHref);
          if (match) match.focus();
        }
        document.dispatchEvent(new CustomEvent("dmzbot:updated"));
      } while (again);
    } catch (e) {
      say("update failed: " + e.message, "error");
    }
    busy = false;
  }
  const url = main.dataset.events;
  if (!url) return;
  if (!window.EventSource) {  // a browser without Server-Sent Events: a light poll
    setInterval(refresh, 15000);
    return;
  }
  let lastId = main.dataset.lastSeq || "";
  let timer = null;
  function schedule() {  // a burst of events, one refresh
    if (timer) return;
    timer = setTimeout(() => { timer = null; refresh(); }, 100);
  }
  function connect() {
    const source = new EventSource(lastId ? url + "?after=" + encodeURIComponent(lastId) : url);
    source.onopen = () => say("live", "live");
    source.onmessage = (e) => { if (e.lastEventId) lastId = e.lastEventId; schedule(); };
    source.addEventListener("hello", (e) => { if (e.lastEventId) lastId = e.lastEventId; });
    source.addEventListener("reset", (e) => { if (e.lastEventId) lastId = e.lastEventId; schedule(); });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {  // refused (e.g. 503): try again later
        say("reconnecting…", "down");
        setTimeout(connect, 5000);
      } else {
        say("reconnecting…", "down");
      }
    };
  }
  connect();
})();
)JS";

Asset make(std::string_view type, std::string_view body) {
  return Asset{type, body, "\"" + to_hex(sha256(body)).substr(0, 16) + "\""};
}

}  // namespace

const Asset* find_asset(std::string_view path) {
  static const std::array<std::pair<std::string_view, Asset>, 2> assets = {{
      {"/assets/dmzbot.css", make("text/css; charset=utf-8", kCss)},
      {"/assets/dmzbot.js", make("text/javascript; charset=utf-8", kJs)},
  }};
  for (const auto& [p, a] : assets)
    if (p == path) return &a;
  return nullptr;
}

}  // namespace dmz

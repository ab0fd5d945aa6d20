// Browser test of the status pages: a real `dmzbot serve` on 127.0.0.1 with a real git origin,
// and Debian's chromium driven by playwright-core. It checks what a developer sees: the train
// with its checks, verdicts, positions and expected times, updated live (Server-Sent Events,
// no reload) as CI reports; the reason and the log link of a failure; a PR's timeline; links
// only where they are safe; dark mode and a phone's width; keyboard focus; the pages without
// JavaScript; and an axe-core accessibility check (axe is injected by the test, never served
// by dmzbot). Screenshots go to $DMZBOT_ARTIFACTS (default: ./browser-artifacts).
// Every wait is bounded; the server, the browser and the temp directory go away at the end.
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";

const bin = process.env.DMZBOT_BIN;
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
if (!bin) fail("DMZBOT_BIN must name the dmzbot binary (ctest sets it)");
let chromium, axeSource;
try {
  ({ chromium } = await import("playwright-core"));
  axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
} catch (e) {
  fail("playwright-core or axe-core is not installed; run deploy/setup.sh --test (" +
       e.message + ")");
}
const artifacts = process.env.DMZBOT_ARTIFACTS || join(process.cwd(), "browser-artifacts");
mkdirSync(artifacts, { recursive: true });

function fail(message) {
  console.error("status_page_test: " + message);
  process.exit(1);
}

const dir = mkdtempSync(join(tmpdir(), "dmzbot-browser-"));
const gitEnv = {
  ...process.env,
  GIT_CONFIG_GLOBAL: "/dev/null",
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_AUTHOR_NAME: "dev",
  GIT_AUTHOR_EMAIL: "dev@example.com",
  GIT_COMMITTER_NAME: "dev",
  GIT_COMMITTER_EMAIL: "dev@example.com",
};
const git = (cwd, ...args) =>
  execFileSync("git", args, { cwd, env: gitEnv, encoding: "utf8" }).trim();

let server;
let browser;
let page;  // the main page, for a screenshot when the test fails
let output = "";  // what the server printed
async function cleanup() {
  if (browser) await browser.close().catch(() => {});
  if (server && server.exitCode === null) server.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}

// Polls `probe` every 50 ms for at most `ms`; returns its first truthy value or throws.
async function eventually(what, probe, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 50));
  }
}

try {
  // An origin with master and two feature branches.
  const origin = join(dir, "origin.git");
  const work = join(dir, "work");
  git(dir, "init", "-q", "--bare", "-b", "master", origin);
  git(dir, "init", "-q", "-b", "master", work);
  writeFileSync(join(work, "README"), "hello\n");
  git(work, "add", ".");
  git(work, "commit", "-q", "-m", "initial");
  git(work, "remote", "add", "origin", origin);
  git(work, "push", "-q", "origin", "master");
  const heads = {};
  for (const name of ["feature/good", "feature/bad", "feature/third"]) {
    git(work, "checkout", "-q", "-b", name, "master");
    writeFileSync(join(work, name.replace("/", "-") + ".txt"), name + "\n");
    git(work, "add", ".");
    git(work, "commit", "-q", "-m", name);
    git(work, "push", "-q", "origin", name);
    heads[name] = git(work, "rev-parse", "HEAD");
  }

  // A second repository, adaptive with lanes by paths: two PRs that touch different files.
  const origin2 = join(dir, "lanes.git");
  git(dir, "init", "-q", "--bare", "-b", "master", origin2);
  git(work, "checkout", "-q", "master");
  git(work, "remote", "add", "lanes", origin2);
  git(work, "push", "-q", "lanes", "master");
  const laneHeads = {};
  for (const [name, file] of [["feature/docs", "docs/guide.md"], ["feature/src", "src/main.c"]]) {
    git(work, "checkout", "-q", "-b", name, "master");
    mkdirSync(join(work, file, ".."), { recursive: true });
    writeFileSync(join(work, file), name + "\n");
    git(work, "add", ".");
    git(work, "commit", "-q", "-m", name);
    git(work, "push", "-q", "lanes", name);
    laneHeads[name] = git(work, "rev-parse", "HEAD");
  }

  // The service, gated by an external CI check that this test posts.
  const token = "browser-test-token";
  writeFileSync(join(dir, "token"), token + "\n");
  writeFileSync(
    join(dir, "dmzbot.toml"),
    `data_dir = "data"\n[server]\nport = 0\n` +
      `[[repo]]\nname = "acme/widget"\nremote = "${origin}"\n` +
      `required_checks = ["ci/ext"]\n` +
      `api_token = { file = "token" }\nstatus_token = { file = "token" }\n` +
      `[[repo]]\nname = "acme/lanes"\nremote = "${origin2}"\n` +
      `required_checks = ["ci/ext"]\n` +
      `api_token = { file = "token" }\nstatus_token = { file = "token" }\n` +
      `[repo.queue]\nstrategy = "adaptive"\nlanes = "paths"\n`,
  );
  server = spawn(bin, ["serve", "--config", join(dir, "dmzbot.toml")], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  server.stdout.on("data", (d) => (output += d));
  server.stderr.on("data", (d) => (output += d));
  const port = await eventually("dmzbot to listen", () => {
    const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
    return m && Number(m[1]);
  });
  const base = `http://127.0.0.1:${port}`;
  const api = async (method, path, body, repo = "acme/widget") => {
    const r = await fetch(base + "/api/v1/repos/" + repo + path, {
      method,
      headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
      body: body && JSON.stringify(body),
      signal: AbortSignal.timeout(5000),
    });
    return { status: r.status, body: await r.json() };
  };
  const queue = async () => (await api("GET", "/queue")).body;

  // Three PRs approved at their heads: #1 becomes the candidate, #2 and #3 wait behind it.
  const titles = {
    "feature/good": "Good change", "feature/bad": "Bad <b>change</b>", "feature/third": "Third",
  };
  let n = 1;
  for (const name of ["feature/good", "feature/bad", "feature/third"]) {
    const title = titles[name];
    let r = await api("POST", "/pulls", { number: n, branch: name, author: "dev", title });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    r = await api("POST", `/pulls/${n}/merge`, { sha: heads[name], approver: "mm" });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    ++n;
  }
  const candidate = await eventually("a candidate in the train", async () => {
    const q = await queue();
    return q.train.length === 1 && q.train[0].sha;
  });

  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  const pageErrors = [];
  const cspViolations = [];  // console reports of blocked content, other than the probe below
  page.on("console", (m) => {
    if (/Content Security Policy/.test(m.text()) && !/inline script/i.test(m.text()))
      cspViolations.push(m.text());
  });
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.on("dialog", (d) => {
    pageErrors.push("a dialog opened: " + d.message());
    d.dismiss();
  });
  const mainText = async () => await page.locator("main").innerText();
  const section = (id) => page.locator(`section:has(h2#${id})`);
  const shot = async (name) =>
    await page.screenshot({ path: join(artifacts, name + ".png"), fullPage: true });

  // The overview lists the repository with its health, and links to its page.
  const overview = await page.goto(base + "/", { timeout: 10000 });
  const csp = overview.headers()["content-security-policy"];
  assert.match(csp, /script-src 'self'; style-src 'self'/);
  assert.doesNotMatch(csp, /unsafe/);
  assert.match(await mainText(), /acme\/widget/);
  assert.match(await mainText(), /Queue\s+3 PRs, 1 candidate building/);
  assert.match(await mainText(), /Remote\s+reachable/);
  assert.match(await mainText(), /acme\/lanes[\s\S]*adaptive, window 4 \(1\.\.\d+\), lanes by paths/);
  await shot("overview");
  // A second tab keeps the overview open: it follows every repository's feed, no reload.
  const overviewTab = await context.newPage();
  overviewTab.on("pageerror", (e) => pageErrors.push("overview: " + e.message));
  await overviewTab.goto(base + "/", { timeout: 10000 });
  await overviewTab.locator("#live", { hasText: "live" }).waitFor({ timeout: 10000 });
  await overviewTab.evaluate(() => { window.notReloaded = true; });
  await page.getByRole("link", { name: "acme/widget" }).click({ timeout: 10000 });
  await page.waitForURL(base + "/repos/acme/widget", { timeout: 10000 });
  assert.match(await page.locator("h1").innerText(), /acme\/widget/);

  // The train: the candidate with #1, its verdict and its pending check; #2 waits at 1.
  const train = section("h-train");
  assert.match(await train.locator("h2").innerText(), /Train \(1\)/);
  assert.match(await train.innerText(), new RegExp(candidate.slice(0, 10)));
  assert.match(await train.innerText(), /#1 Good change/);
  // mm asked to merge it; that is not an approval the policy counted.
  assert.match(await train.innerText(), /Policy\s+passed\s+merge requested by mm/);
  // No policy here: the verdict says that no signature was verified and no approval needed.
  assert.match(await train.innerText(), /Signed by\s+no verified signature/);
  assert.match(await train.innerText(), /Approved \(policy\)\s+no approval required/);
  assert.deepEqual((await queue()).prs.find((p) => p.number === 1).approvers, []);
  assert.match(await train.innerText(), /pending\s+ci\/ext/);
  const waitingRow = section("h-waiting").locator("tbody tr").first();
  assert.match(await waitingRow.innerText(), /^1\s+#2 Bad <b>change<\/b>/);
  assert.match(await waitingRow.innerText(), /no estimate yet/);
  // A title is text, never markup.
  assert.equal(await page.locator("main b").count(), 0);

  // The policy is in force: the page's own script runs (it goes live), an injected one does
  // not.
  await page.locator("#live", { hasText: "live" }).waitFor({ timeout: 10000 });
  const injected = await page.evaluate(() => {
    const s = document.createElement("script");
    s.textContent = "window.injected = true;";
    document.body.appendChild(s);
    return window.injected === true;
  });
  assert.equal(injected, false, "an inline script outside the CSP ran");
  await page.evaluate(() => { window.notReloaded = true; });

  // CI reports pending with a javascript: URL: shown live, never clickable.
  let r = await api("POST", `/statuses/${candidate}`, {
    state: "pending", context: "ci/ext", target_url: "javascript:alert(1)",
  });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  await eventually("the running check on the page", async () =>
    /running\s+ci\/ext/.test(await train.innerText()));
  assert.equal(await page.locator('a[href^="javascript"]').count(), 0);

  // Success lands #1; the page follows without a reload, and #2 becomes the candidate.
  r = await api("POST", `/statuses/${candidate}`, {
    state: "success", context: "ci/ext", target_url: "https://ci.example/builds/1",
  });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  const second = await eventually("#2 as the candidate", async () => {
    const q = await queue();
    return q.train.length === 1 && q.train[0].sha !== candidate && q.train[0].sha;
  });
  await eventually("#1 merged and #2 building, on the page", async () => {
    const outcomes = await section("h-outcomes").innerText();
    return /#1 Good change[\s\S]*merged/.test(outcomes) &&
      (await train.innerText()).includes(second.slice(0, 10));
  });
  assert.equal(await page.evaluate(() => window.notReloaded), true, "the page was reloaded");
  // One landing observed: the queue has a pace, and #2 an expected landing time.
  assert.match(await mainText(), /a candidate takes ~\d+ s to land/);
  assert.match(await train.innerText(), /lands (in \d+ s|any moment now)/);
  assert.match(await mainText(), /last landing #1/);
  // The overview in the other tab followed too.
  await eventually("the overview showing #1's landing", async () =>
    /acme\/widget[\s\S]*last landing #1/.test(await overviewTab.locator("main").innerText()));
  assert.equal(await overviewTab.evaluate(() => window.notReloaded), true,
               "the overview was reloaded");
  await overviewTab.close();
  // ... and so has #3, waiting first in line now.
  const third = section("h-waiting").locator("tbody tr").first();
  assert.match(await third.innerText(), /^1\s+#3 Third/);
  assert.match(await third.innerText(), /(in \d+ s|any moment now)/);
  await shot("repo-building");

  // A failure backs #2 out: its reason code, its message and the CI's log link show.
  r = await api("POST", `/statuses/${second}`, {
    state: "failure", context: "ci/ext", description: "3 tests failed",
    target_url: "https://ci.example/builds/2",
  });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  const failedRow = () =>
    page.locator("tr", { hasText: "#2 Bad" }).filter({ hasText: "build-failed" }).first();
  await eventually("#2 failed on the page", async () => (await failedRow().count()) > 0);
  assert.match(await failedRow().innerText(), /failed/);
  assert.match(await failedRow().innerText(), /build-failed\s+check ci\/ext failed/);
  const link = failedRow().locator('a[href^="https://"]');
  assert.equal(await link.getAttribute("href"), "https://ci.example/builds/2");
  assert.equal(await link.getAttribute("rel"), "noopener noreferrer");
  // #3 is next; a merge master cancels it, and the train is empty.
  await eventually("#3 in the train", async () => /#3 Third/.test(await train.innerText()));
  r = await api("POST", "/pulls/3/cancel", { by: "mm" });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  await eventually("the empty train on the page", async () =>
    /Train \(0\)/.test(await train.locator("h2").innerText()));
  assert.equal(await page.evaluate(() => window.notReloaded), true, "the page was reloaded");
  await shot("repo-light");

  // Dark mode follows the system; light text on a dark background.
  const luminance = async (selector, property) => await page.evaluate(([sel, prop]) => {
    const c = getComputedStyle(document.querySelector(sel))[prop].match(/\d+(\.\d+)?/g).map(Number);
    return (0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]) / 255;
  }, [selector, property]);
  assert.ok(await luminance("body", "backgroundColor") > 0.8, "light background");
  await page.emulateMedia({ colorScheme: "dark" });
  assert.ok(await luminance("body", "backgroundColor") < 0.15, "dark background");
  assert.ok(await luminance("body", "color") > 0.8, "light text in dark mode");
  await shot("repo-dark");
  await page.emulateMedia({ colorScheme: "light" });

  // Keyboard: on a fresh load the first Tab reaches the skip link, and focus is visible.
  await page.goto(base + "/repos/acme/widget", { timeout: 10000 });
  await page.keyboard.press("Tab");
  const focus = await page.evaluate(() => {
    const e = document.activeElement;
    const s = getComputedStyle(e);
    const box = e.getBoundingClientRect();
    return { text: e.textContent, outline: s.outlineStyle, width: parseFloat(s.outlineWidth),
             visible: box.left >= 0 && box.top >= 0 && box.width > 0 };
  });
  assert.equal(focus.text, "Skip to content");
  assert.ok(focus.visible, "the focused skip link is on screen");
  assert.notEqual(focus.outline, "none");
  assert.ok(focus.width >= 2, "a focus outline of at least 2px");
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.textContent), "dmzbot");

  // A phone: nothing wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 });
  assert.ok(await page.evaluate(() =>
    document.documentElement.scrollWidth <= window.innerWidth + 1), "no sideways scrolling");
  await shot("repo-phone");
  await page.setViewportSize({ width: 1280, height: 900 });

  // The PR's page: its whole timeline.
  await page.goto(base + "/repos/acme/widget/pulls/2", { timeout: 10000 });
  const timeline = await page.locator("ol.timeline").innerText();
  assert.match(timeline, /registered from feature\/bad/);
  assert.match(timeline, /merge requested by mm at [0-9a-f]{10}/);
  assert.match(timeline, /policy verdict at [0-9a-f]{10}: passed/);
  assert.match(timeline, /failed: check ci\/ext failed[\s\S]*build-failed/);
  assert.match(await page.locator("h1").innerText(), /#2 Bad <b>change<\/b>/);
  await shot("pull");

  // A finished PR's page keeps its candidate's checks, with the log link, and its landing.
  await page.goto(base + "/repos/acme/widget/pulls/1", { timeout: 10000 });
  const landedTimeline = page.locator("ol.timeline");
  const landedText = await landedTimeline.innerText();
  assert.match(landedText, /in candidate \d+, pushed to dmz at [0-9a-f]{10}/);
  assert.match(landedText, /passed\s+ci\/ext/);
  assert.match(landedText, /candidate \d+ landed: master moved to [0-9a-f]{10}/);
  assert.equal(await landedTimeline.locator('a[href="https://ci.example/builds/1"]').count(), 1);
  await shot("pull-merged");

  // Lanes: two PRs with disjoint paths build in independent chains, drawn side by side.
  let lanePr = 1;
  for (const name of ["feature/docs", "feature/src"]) {
    let r2 = await api("POST", "/pulls", { number: lanePr, branch: name, author: "dev",
                                           title: name }, "acme/lanes");
    assert.equal(r2.status, 202, JSON.stringify(r2.body));
    r2 = await api("POST", `/pulls/${lanePr}/merge`, { sha: laneHeads[name], approver: "mm" },
                   "acme/lanes");
    assert.equal(r2.status, 202, JSON.stringify(r2.body));
    ++lanePr;
  }
  await eventually("two candidates in two lanes", async () => {
    const q = (await api("GET", "/queue", undefined, "acme/lanes")).body;
    return q.train.length === 2 && q.train[0].lane !== q.train[1].lane &&
      q.train.every((c) => c.sha);
  });
  await page.goto(base + "/repos/acme/lanes", { timeout: 10000 });
  const lanes = page.locator(".lanes > section.lane");
  assert.equal(await lanes.count(), 2);
  assert.match(await lanes.nth(0).innerText(), /main lane \(1\)[\s\S]*#1 feature\/docs/);
  assert.match(await lanes.nth(1).innerText(), /lane \d+ \(1\)[\s\S]*#2 feature\/src/);
  await shot("lanes");
  await page.setViewportSize({ width: 390, height: 844 });
  assert.ok(await page.evaluate(() =>
    document.documentElement.scrollWidth <= window.innerWidth + 1), "lanes fit a phone");
  await shot("lanes-phone");
  await page.setViewportSize({ width: 1280, height: 900 });

  // Without JavaScript the pages render all the same, read-only.
  const noJs = await browser.newContext({ javaScriptEnabled: false });
  const plain = await noJs.newPage();
  await plain.goto(base + "/repos/acme/widget", { timeout: 10000 });
  const plainText = await plain.locator("main").innerText();
  assert.match(plainText, /Train \(0\)/);
  assert.match(plainText, /#1 Good change[\s\S]*merged/);
  assert.match(plainText, /build-failed/);
  assert.equal(await plain.locator("#live").isVisible(), false);
  await plain.screenshot({ path: join(artifacts, "repo-no-js.png"), fullPage: true });
  await plain.goto(base + "/", { timeout: 10000 });  // the overview too, read-only
  assert.match(await plain.locator("main").innerText(), /acme\/widget[\s\S]*last landing #1/);
  assert.equal(await plain.locator("#live").isVisible(), false);
  await noJs.close();

  // Accessibility: no serious or critical axe-core violation on any page, in either theme.
  // axe is injected by the test (the context bypasses the CSP for it); dmzbot never serves it.
  const axeContext = await browser.newContext({ bypassCSP: true });
  const axePage = await axeContext.newPage();
  for (const path of ["/", "/repos/acme/widget", "/repos/acme/widget/pulls/2",
                      "/repos/acme/widget/pulls/1", "/repos/acme/lanes"]) {
    for (const scheme of ["light", "dark"]) {
      await axePage.emulateMedia({ colorScheme: scheme });
      await axePage.goto(base + path, { timeout: 10000 });
      await axePage.addScriptTag({ content: axeSource });
      const result = await axePage.evaluate(async () =>
        await window.axe.run(document, { resultTypes: ["violations"] }));
      const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
      assert.deepEqual(
        bad.map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target).join(", ")}`),
        [], `axe on ${path} (${scheme})`);
    }
  }
  await axeContext.close();

  // master holds exactly #1.
  const merged = git(origin, "log", "--first-parent", "--format=%s", "master~1..master");
  assert.match(merged, /^Merge #1 from feature\/good/);
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(cspViolations, []);
  console.log("status_page_test: ok (" + port + "); screenshots in " + artifacts);
} catch (e) {
  console.error(e);
  if (page) {
    await page.screenshot({ path: join(artifacts, "failure.png"), fullPage: true }).catch(() => {});
    console.error("--- page ---\n" + (await page.locator("body").innerText().catch(() => "?")));
  }
  console.error("--- server log ---\n" + output);
  await cleanup();
  process.exit(1);
}
await cleanup();

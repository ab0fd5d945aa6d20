// Browser test of the status page: a real `dmzbot serve` on 127.0.0.1 with a real git origin,
// and Debian's chromium driven by playwright-core. It checks what a developer sees: the queue
// rendered, updated live (no reload) as CI reports, and links only where they are safe.
// Every wait is bounded; the server, the browser and the temp directory go away at the end.
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";

const bin = process.env.DMZBOT_BIN;
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
if (!bin) fail("DMZBOT_BIN must name the dmzbot binary (ctest sets it)");
let chromium;
try {
  ({ chromium } = await import("playwright-core"));
} catch (e) {
  fail("playwright-core is not installed; run deploy/setup.sh --test (" + e.message + ")");
}

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
  for (const name of ["feature/good", "feature/bad"]) {
    git(work, "checkout", "-q", "-b", name, "master");
    writeFileSync(join(work, name.replace("/", "-") + ".txt"), name + "\n");
    git(work, "add", ".");
    git(work, "commit", "-q", "-m", name);
    git(work, "push", "-q", "origin", name);
    heads[name] = git(work, "rev-parse", "HEAD");
  }

  // The service, gated by an external CI check that this test posts.
  const token = "browser-test-token";
  writeFileSync(join(dir, "token"), token + "\n");
  writeFileSync(
    join(dir, "dmzbot.toml"),
    `data_dir = "data"\n[server]\nport = 0\n` +
      `[[repo]]\nname = "acme/widget"\nremote = "${origin}"\n` +
      `required_checks = ["ci/ext"]\n` +
      `api_token = { file = "token" }\nstatus_token = { file = "token" }\n`,
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
  const api = async (method, path, body) => {
    const r = await fetch(base + "/api/v1/repos/acme/widget" + path, {
      method,
      headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
      body: body && JSON.stringify(body),
      signal: AbortSignal.timeout(5000),
    });
    return { status: r.status, body: await r.json() };
  };
  const queue = async () => (await api("GET", "/queue")).body;

  // Both PRs approved at their heads: #1 becomes the candidate, #2 waits behind it.
  let n = 1;
  for (const name of ["feature/good", "feature/bad"]) {
    const title = name === "feature/good" ? "Good change" : "Bad <b>change</b>";
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
  const page = await browser.newPage();
  const pageErrors = [];
  const cspViolations = [];  // console reports of blocked content, other than the probe above
  page.on("console", (m) => {
    if (/Content Security Policy/.test(m.text()) && !/window\.injected|inline script/i.test(m.text()))
      cspViolations.push(m.text());
  });
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.on("dialog", (d) => {
    pageErrors.push("a dialog opened: " + d.message());
    d.dismiss();
  });
  const text = async (selector) => (await page.locator(selector).allInnerTexts()).join("\n");
  const prRow = (number) => page.locator("tr", { hasText: `#${number}\t` }).first();

  // The overview lists the repository and links to its page.
  const overview = await page.goto(base + "/", { timeout: 10000 });
  assert.match(overview.headers()["content-security-policy"], /script-src 'sha256-/);
  await page.getByRole("link", { name: "acme/widget" }).click({ timeout: 10000 });
  await page.waitForURL(base + "/repos/acme/widget", { timeout: 10000 });
  await eventually("the train on the page", async () => (await text("h3")).includes("Train (1)"));
  assert.match(await text("h1"), /acme\/widget/);
  assert.match(await text("table"), new RegExp(candidate.slice(0, 10)));
  // The policy is in force: the page's own script runs (it rendered), an injected one does not.
  const injected = await page.evaluate(() => {
    const s = document.createElement("script");
    s.textContent = "window.injected = true;";
    document.body.appendChild(s);
    return window.injected === true;
  });
  assert.equal(injected, false, "an inline script outside the CSP hashes ran");
  // A title is text, never markup.
  assert.equal(await page.locator("td b").count(), 0);
  assert.match(await text("table"), /Bad <b>change<\/b>/);

  // CI reports pending with a javascript: URL: shown, never clickable.
  let r = await api("POST", `/statuses/${candidate}`, {
    state: "pending", context: "ci/ext", target_url: "javascript:alert(1)",
  });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  await eventually("the pending check on the page", async () =>
    (await text("table")).includes("ci/ext pending"));
  assert.equal(await page.locator('a[href^="javascript"]').count(), 0);

  // Success lands #1; the page follows without a reload, and #2 becomes the candidate.
  r = await api("POST", `/statuses/${candidate}`, {
    state: "success", context: "ci/ext", target_url: "https://ci.example/builds/1",
  });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  const second = await eventually("#2 as the candidate", async () => {
    const q = await queue();
    // A merged PR leaves the queue for the history ("recent").
    return q.recent.some((h) => h.number === 1 && h.status === "merged") &&
      q.train.length === 1 && q.train[0].sha !== candidate && q.train[0].sha;
  });
  await eventually("#1 merged on the page", async () =>
    (await prRow(1).innerText()).includes("merged"));

  // A failure backs #2 out; its reason and the CI link show on its row.
  r = await api("POST", `/statuses/${second}`, {
    state: "failure", context: "ci/ext", description: "3 tests failed",
    target_url: "https://ci.example/builds/2",
  });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  await eventually("#2 failed on the page", async () =>
    (await prRow(2).innerText()).includes("failed"));
  assert.match(await prRow(2).innerText(), /check ci\/ext failed/);
  const link = prRow(2).locator("a");
  assert.equal(await link.getAttribute("href"), "https://ci.example/builds/2");
  assert.equal(await link.getAttribute("rel"), "noopener noreferrer");
  await eventually("the empty train on the page", async () =>
    (await text("h3")).includes("Train (0)"));

  // master holds exactly #1.
  const merged = git(origin, "log", "--first-parent", "--format=%s", "master~1..master");
  assert.match(merged, /^Merge #1 from feature\/good/);
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(cspViolations, []);
  console.log("status_page_test: ok (" + port + ")");
} catch (e) {
  console.error(e);
  console.error("--- server log ---\n" + output);
  await cleanup();
  process.exit(1);
}
await cleanup();

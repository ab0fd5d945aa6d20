// Checks that every package locked in package-lock.json runs on the Node that
// `deploy/setup.sh --test` installs on a fresh Debian 12 (bookworm): Debian's nodejs 18. CI
// machines may have a newer Node, on which an upgrade to a Node-20-only playwright-core would
// pass unnoticed; this test fails on such a lock file wherever it runs.
//
// The range check is written out here (a few lines) rather than taken from npm's semver
// module: where npm keeps its own modules differs between Debian's npm and other builds.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";

// bookworm's nodejs (bookworm-security and point releases: 18.19.0, then 18.20.4).
const kDebianNode = "18.19.0";

const parse = (v) => {
  const m = /^v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?$/.exec(v.trim());
  if (!m) throw new Error("unsupported version in an engines range: " + v);
  return m.slice(1, 4).map((p) => (p === undefined || /[xX*]/.test(p) ? null : Number(p)));
};
const cmp = (a, b) => {
  for (let i = 0; i < 3; ++i) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) - (b[i] ?? 0);
  return 0;
};
// One comparator ("", ">=18", "^18.2", "~18.1.0", "18.x", "<21") against version `v`.
function admits(comparator, v) {
  const m = /^(>=|<=|>|<|=|\^|~)?\s*(.*)$/.exec(comparator);
  const [op, ver] = [m[1] || "", m[2]];
  if (ver === "" || ver === "*") return true;
  const p = parse(ver);
  const floor = p.map((x) => x ?? 0);
  const wild = p.findIndex((x) => x === null);  // 18.x: first wildcard position
  const bump = (i) => floor.map((x, j) => (j < i ? x : j === i ? x + 1 : 0));
  switch (op) {
    case ">=": return cmp(v, floor) >= 0;
    case ">": return cmp(v, floor) > 0;
    case "<=": return cmp(v, floor) <= 0;
    case "<": return cmp(v, floor) < 0;
    case "^": {
      const i = floor[0] !== 0 ? 0 : floor[1] !== 0 ? 1 : 2;
      return cmp(v, floor) >= 0 && cmp(v, bump(i)) < 0;
    }
    case "~": return cmp(v, floor) >= 0 && cmp(v, bump(p[1] === null ? 0 : 1)) < 0;
    default:
      return wild < 0 ? cmp(v, floor) === 0
                      : wild === 0 || (cmp(v, floor) >= 0 && cmp(v, bump(wild - 1)) < 0);
  }
}
// A whole range: alternatives joined by ||, each a set of space-separated comparators.
export function satisfies(version, range) {
  const v = parse(version);
  return range.split("||").some((alt) =>
    alt.trim().replace(/(>=|<=|>|<|=|\^|~)\s+/g, "$1").split(/\s+/)
      .every((c) => admits(c, v)));
}

// The checker itself, on ranges whose answers are known.
assert.equal(satisfies("18.19.0", ">=18"), true);
assert.equal(satisfies("18.19.0", ">=20"), false);
assert.equal(satisfies("18.19.0", "^18.0.0 || >=20.0.0"), true);
assert.equal(satisfies("18.19.0", ">=18.20"), false);
assert.equal(satisfies("18.19.0", ">= 14.17 < 19"), true);
assert.equal(satisfies("18.19.0", "18.x"), true);
assert.equal(satisfies("18.19.0", "~18.18.0"), false);

const here = dirname(fileURLToPath(import.meta.url));
// Every lock file a test installs from: the browser test's and the GitHub tests'.
const locks = [join(here, "package-lock.json"), join(here, "..", "github", "package-lock.json")];
const refused = [];
let checked = 0;
for (const file of locks) {
  const lock = JSON.parse(readFileSync(file, "utf8"));
  for (const [path, pkg] of Object.entries(lock.packages || {})) {
    if (!path || !pkg.engines?.node) continue;
    ++checked;
    if (!satisfies(kDebianNode, pkg.engines.node))
      refused.push(`${file}: ${path}@${pkg.version} needs node ${pkg.engines.node}`);
  }
}
if (refused.length) {
  console.error(`node_engines_test: Debian 12's Node ${kDebianNode} is refused by:\n  ` +
                refused.join("\n  ") + "\npin versions that support it (npm view PKG@V engines)");
  process.exit(1);
}
assert.ok(checked > 0, "no locked package declares engines.node: are the lock files empty?");
console.log(`node_engines_test: ok (${checked} locked packages admit node ${kDebianNode})`);

// The Node side of bot/service/webhook_bench: @octokit/webhooks verifying and parsing the same
// signed deliveries (in process, no HTTP), as fast as it goes for SECONDS.
//
//   node webhooks_bench.mjs DELIVERIES.json SECONDS
//
// DELIVERIES.json: {"secret": "...", "items": [{"event", "body", "signature"}]}. Prints
// {"rate": per second, "done": deliveries tried, "errors": how many of them verifyAndReceive
// refused, "handled": how many reached the onAny handler, "first_error": the first refusal's
// message or null} on one line. A rate is only worth reading with errors 0 and handled == done:
// webhook_bench checks both.
import { readFileSync } from "node:fs";
import { Webhooks } from "@octokit/webhooks";

const { secret, items } = JSON.parse(readFileSync(process.argv[2], "utf8"));
const seconds = Number(process.argv[3] || 3);
const webhooks = new Webhooks({ secret });
let handled = 0;
webhooks.onAny(() => { ++handled; });
let done = 0, errors = 0, firstError = null;
const start = process.hrtime.bigint();
const end = start + BigInt(Math.round(seconds * 1e9));
while (process.hrtime.bigint() < end) {
  const d = items[done % items.length];
  try {
    await webhooks.verifyAndReceive({ id: `bench-${done}`, name: d.event, payload: d.body,
                                      signature: d.signature });
  } catch (e) {
    if (errors++ === 0) firstError = `${d.event}: ${e?.message ?? e}`;
  }
  ++done;
}
const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
console.log(JSON.stringify({ rate: done / elapsed, done, errors, handled,
                              first_error: firstError }));

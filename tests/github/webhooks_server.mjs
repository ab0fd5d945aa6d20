// The like-for-like peer of bot/service/webhook_bench: an HTTP server on 127.0.0.1 that takes
// POST /webhooks/github with @octokit/webhooks' own Node middleware (read the body, verify the
// signature, parse, dispatch, answer 200), as a Node webhook receiver would. It keeps nothing:
// unlike dmzbot it writes no delivery to disk before answering.
//
//   WEBHOOK_SECRET=... node webhooks_server.mjs
//
// Prints {"port": N} on one line once it listens; GET /quit stops it.
import http from "node:http";
import { Webhooks, createNodeMiddleware } from "@octokit/webhooks";

const webhooks = new Webhooks({ secret: process.env.WEBHOOK_SECRET || "" });
let handled = 0;
webhooks.onAny(() => { ++handled; });
const middleware = createNodeMiddleware(webhooks, { path: "/webhooks/github" });
const server = http.createServer(async (req, res) => {
  if (req.method === "GET" && req.url === "/quit") {
    res.end(JSON.stringify({ handled }));
    server.close();
    server.closeAllConnections?.();
    return;
  }
  if (await middleware(req, res)) return;
  res.writeHead(404).end();
});
server.listen(0, "127.0.0.1", () => {
  console.log(JSON.stringify({ port: server.address().port }));
});

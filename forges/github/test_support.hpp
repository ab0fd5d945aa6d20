// Helpers for the GitHub adapter's tests: signed webhook requests, the example corpus of
// @octokit/webhooks-examples, and a recording HttpClient that answers from a script.
// Threading: one test thread.
#pragma once

#include <cstdlib>
#include <deque>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/crypto.hpp"
#include "base/http_client.hpp"
#include "forges/forge.hpp"
#include "tests/support.hpp"

namespace dmz::forges::github::testing {

inline InboundRequest signed_request(const std::string& secret, const std::string& event,
                                     const std::string& id, const std::string& body) {
  InboundRequest r;
  r.headers["x-github-event"] = event;
  r.headers["x-github-delivery"] = id;
  r.headers["content-type"] = "application/json";
  r.headers["x-hub-signature-256"] = "sha256=" + to_hex(hmac_sha256(secret, body));
  r.body = body;
  return r;
}

inline std::filesystem::path source_dir() { return test::source_dir(); }

// One example payload of the corpus: the event name, which corpus, and the payload.
struct Example {
  std::string event, corpus;
  nlohmann::json payload;
};

// Every example of every GitHub version in @octokit/webhooks-examples (tests/github's locked
// copy, installed by `deploy/setup.sh --test`); fails the test if it is not installed.
inline std::vector<Example> corpus() {
  const auto root =
      source_dir() / "tests" / "github" / "node_modules" / "@octokit" / "webhooks-examples";
  std::vector<Example> out;
  std::error_code ec;
  for (const auto& dir : std::filesystem::directory_iterator(root, ec)) {
    auto index = dir.path() / "index.json";
    if (!std::filesystem::exists(index)) continue;
    auto all = nlohmann::json::parse(test::read_file(index));
    for (const auto& event : all)
      for (const auto& example : event["examples"])
        out.push_back({event["name"].get<std::string>(), dir.path().filename().string(), example});
  }
  INFO(
      "the webhook corpus is missing: run `npm ci --prefix tests/github` (deploy/setup.sh --test)");
  REQUIRE(out.size() > 300);
  return out;
}

// An example payload of `event` (the first one matching `pick`), to build deliveries from.
inline nlohmann::json example(const std::string& event,
                              const std::function<bool(const nlohmann::json&)>& pick = {}) {
  static const std::vector<Example> all = corpus();
  for (const auto& e : all)
    if (e.corpus == "api.github.com" && e.event == event && (!pick || pick(e.payload)))
      return e.payload;
  FAIL("no example of " << event);
  return {};
}

// An HttpClient that records every call and answers from a queue (then 404).
struct ScriptedHttp final : HttpClient {
  std::vector<HttpCall> calls;
  std::deque<Result<HttpReply>> replies;
  std::function<Result<HttpReply>(const HttpCall&)> otherwise;
  Result<HttpReply> send(const HttpCall& call) override {
    calls.push_back(call);
    if (!replies.empty()) {
      auto r = replies.front();
      replies.pop_front();
      return r;
    }
    if (otherwise) return otherwise(call);
    return HttpReply{404, {}, R"({"message":"Not Found"})"};
  }
  void answer(int status, const std::string& body,
              std::map<std::string, std::string> headers = {}) {
    replies.push_back(HttpReply{status, std::move(headers), body});
  }
};

}  // namespace dmz::forges::github::testing

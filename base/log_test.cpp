#include "base/log.hpp"

#include <doctest/doctest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

namespace dmz {
namespace {

using nlohmann::json;

// The default logger writes into a string for the test's life; the previous one comes back.
struct CapturedLog {
  std::ostringstream out;
  std::shared_ptr<spdlog::logger> previous = spdlog::default_logger();
  log::Format previous_format = log::format();

  CapturedLog(log::Format f) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
    auto logger = std::make_shared<spdlog::logger>("test", sink);
    logger->set_level(spdlog::level::debug);
    spdlog::set_default_logger(logger);
    log::use_format(f);
  }
  ~CapturedLog() {
    spdlog::set_default_logger(previous);
    log::use_format(previous_format);
  }
  std::vector<std::string> lines() const {
    std::vector<std::string> out_lines;
    std::istringstream in(out.str());
    for (std::string line; std::getline(in, line);) out_lines.push_back(line);
    return out_lines;
  }
  std::vector<json> objects() const {
    std::vector<json> out_objects;
    for (const auto& line : lines()) out_objects.push_back(json::parse(line));  // throws if not
    return out_objects;
  }
};

TEST_CASE("json logs: one object per line with time, level, repo, pr, sha and reason") {
  CapturedLog captured(log::Format::Json);
  const std::string sha(40, 'a');
  log::warn({.repo = "acme/widget", .pr = 7, .sha = sha, .reason = "build-failed"},
            "left the queue: {} failed", "ci/test");
  log::info({.repo = "acme/widget"}, "fetched");
  spdlog::error("a line logged with spdlog directly");

  auto lines = captured.objects();
  REQUIRE(lines.size() == 3);
  const auto& a = lines[0];
  CHECK(a["level"] == "warning");
  CHECK(a["repo"] == "acme/widget");
  CHECK(a["pr"] == 7);
  CHECK(a["sha"] == sha);
  CHECK(a["reason"] == "build-failed");
  CHECK(a["msg"] == "left the queue: ci/test failed");
  // ISO 8601 UTC with milliseconds, e.g. 2026-11-26T09:30:00.123Z
  const std::string time = a["time"];
  CHECK(time.size() == 24);
  CHECK(time[10] == 'T');
  CHECK(time.back() == 'Z');
  // Fields that do not apply are left out, not empty.
  CHECK(lines[1]["repo"] == "acme/widget");
  CHECK_FALSE(lines[1].contains("pr"));
  CHECK_FALSE(lines[1].contains("sha"));
  CHECK_FALSE(lines[1].contains("reason"));
  CHECK(lines[1]["level"] == "info");
  CHECK(lines[2]["level"] == "error");
  CHECK(lines[2]["msg"] == "a line logged with spdlog directly");
  CHECK_FALSE(lines[2].contains("repo"));
}

TEST_CASE("json logs: a message with newlines, quotes and bad UTF-8 stays one parsable line") {
  CapturedLog captured(log::Format::Json);
  log::info({.repo = "acme/widget", .pr = 1}, "title \"x\"\nApproved-by: forged\x1b[31m \xff");
  auto lines = captured.lines();
  REQUIRE(lines.size() == 1);
  auto j = json::parse(lines[0]);
  CHECK(j["msg"].get<std::string>().find("\nApproved-by: forged") != std::string::npos);
  CHECK(j["pr"] == 1);
}

TEST_CASE("text logs keep their old shape: repo#pr: message") {
  CapturedLog captured(log::Format::Text);
  log::warn({.repo = "acme/widget", .pr = 7, .sha = "abc", .reason = "build-failed"}, "failed");
  log::info({.repo = "acme/widget"}, "fetched");
  log::info({}, "plain");
  auto lines = captured.lines();
  REQUIRE(lines.size() == 3);
  CHECK(lines[0].ends_with("[warning] acme/widget#7: failed"));
  CHECK(lines[1].ends_with("[info] acme/widget: fetched"));
  CHECK(lines[2].ends_with("[info] plain"));
  CHECK(lines[0].find('{') == std::string::npos);
}

TEST_CASE("logs mask the credentials of URLs, in both formats") {
  CHECK(log::redact("fetch https://bot:s3cr3t@git.example.com/a.git failed") ==
        "fetch https://***@git.example.com/a.git failed");
  CHECK(log::redact("http://tok@h/x and https://u:p@h2") == "http://***@h/x and https://***@h2");
  CHECK(log::redact("no url, mail a@b.c, ssh git@host:x") == "no url, mail a@b.c, ssh git@host:x");
  CHECK(log::redact("https://host/path@x") == "https://host/path@x");  // '@' after the host
  for (auto f : {log::Format::Text, log::Format::Json}) {
    CapturedLog captured(f);
    log::warn({.repo = "acme/widget"}, "fetch failed: https://bot:s3cr3t@example.com/x.git");
    spdlog::warn("direct: https://bot:s3cr3t@example.com/x.git");
    CAPTURE(captured.out.str());
    CHECK(captured.out.str().find("s3cr3t") == std::string::npos);
    CHECK(captured.out.str().find("https://***@example.com/x.git") != std::string::npos);
  }
}

TEST_CASE("parse_format knows text and json only") {
  CHECK(log::parse_format("json") == log::Format::Json);
  CHECK(log::parse_format("text") == log::Format::Text);
  CHECK_FALSE(log::parse_format("JSON"));
  CHECK_FALSE(log::parse_format(""));
}

}  // namespace
}  // namespace dmz

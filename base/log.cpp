#include "base/log.hpp"

#include <spdlog/formatter.h>
#include <spdlog/pattern_formatter.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <nlohmann/json.hpp>

namespace dmz::log {

namespace {

std::atomic<Format> g_format{Format::Text};

// The fields of the line being written on this thread. spdlog's default logger is synchronous:
// the formatter runs on the thread that logs, inside write(), so this is how Fields reach it.
thread_local const Fields* t_fields = nullptr;

std::string iso_time(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto ms = duration_cast<milliseconds>(t.time_since_epoch()).count();
  std::time_t s = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[40];
  const auto n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(ms % 1000));
  return buf;
}

class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    nlohmann::ordered_json j;
    j["time"] = iso_time(msg.time);
    const auto level = spdlog::level::to_string_view(msg.level);
    j["level"] = std::string(level.data(), level.size());
    if (const Fields* f = t_fields) {
      if (!f->repo.empty()) j["repo"] = f->repo;
      if (f->pr != 0) j["pr"] = f->pr;
      if (!f->sha.empty()) j["sha"] = f->sha;
      if (!f->reason.empty()) j["reason"] = f->reason;
      if (!f->event.empty()) j["event"] = f->event;
    }
    // Lines logged with spdlog directly (not through write) are masked here.
    j["msg"] = redact(std::string_view(msg.payload.data(), msg.payload.size()));
    // dump() escapes control characters and replaces invalid UTF-8: always one line.
    const std::string line =
        j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    dest.append(line.data(), line.data() + line.size());
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

// spdlog's default pattern, with URL credentials masked.
class TextFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    spdlog::memory_buf_t line;
    pattern_.format(msg, line);
    const std::string masked = redact(std::string_view(line.data(), line.size()));
    dest.append(masked.data(), masked.data() + masked.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<TextFormatter>();
  }

 private:
  spdlog::pattern_formatter pattern_;
};

}  // namespace

std::optional<Format> parse_format(std::string_view s) {
  if (s == "text") return Format::Text;
  if (s == "json") return Format::Json;
  return std::nullopt;
}

std::string_view to_string(Format f) { return f == Format::Json ? "json" : "text"; }

std::unique_ptr<spdlog::formatter> json_formatter() { return std::make_unique<JsonFormatter>(); }

void use_format(Format f) {
  if (f == Format::Json)
    spdlog::set_formatter(json_formatter());
  else
    spdlog::set_formatter(std::make_unique<TextFormatter>());
  g_format = f;
}

Format format() { return g_format; }

std::string redact(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  std::size_t pos = 0;
  for (;;) {
    const auto scheme_end = text.find("://", pos);
    if (scheme_end == std::string_view::npos) break;
    const auto start = scheme_end + 3;
    // The authority ends at the first '/', whitespace, quote or end of text; its last '@' ends
    // the user information.
    auto end = text.find_first_of("/ \t\r\n\"'<>", start);
    if (end == std::string_view::npos) end = text.size();
    const auto at = text.substr(start, end - start).rfind('@');
    out.append(text.substr(pos, start - pos));
    if (at != std::string_view::npos) {
      out += "***";
      pos = start + at;  // from the '@'
    } else {
      pos = start;
    }
  }
  out.append(text.substr(pos));
  return out;
}

void write(spdlog::level::level_enum level, const Fields& f, std::string_view message) {
  auto* logger = spdlog::default_logger_raw();
  if (g_format == Format::Json) {
    t_fields = &f;
    logger->log(level, "{}", message);
    t_fields = nullptr;
    return;
  }
  // The text lines as they always were: "repo#pr: message", "repo: message" or the message.
  std::string prefix;
  if (!f.repo.empty()) {
    prefix = std::string(f.repo);
    if (f.pr != 0) prefix += "#" + std::to_string(f.pr);
    prefix += ": ";
  }
  logger->log(level, "{}{}", prefix, redact(message));
}

}  // namespace dmz::log

// dmzbot's log lines: spdlog's text (the default, unchanged) or one JSON object per line
// ({"time", "level", "msg", and "repo", "pr", "sha", "reason", "event" where they apply}) for
// log collectors. Callers say what a line is about with Fields instead of formatting it into the
// text; the text format prints "repo#pr: message" as before. URL credentials are masked.
// Threading: logging is thread-safe (spdlog's default logger, synchronous); use_format is meant
// for start-up, before other threads log.
#pragma once

#include <spdlog/formatter.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace dmz::log {

enum class Format { Text, Json };
std::optional<Format> parse_format(std::string_view);  // "text" or "json"
std::string_view to_string(Format);

// Sets how the default logger's lines look (text: spdlog's default pattern).
void use_format(Format);
Format format();

// A formatter that writes spdlog's messages as JSON lines (what use_format(Json) installs), for
// a logger of one's own.
std::unique_ptr<spdlog::formatter> json_formatter();

// What a log line is about; empty fields are left out.
struct Fields {
  std::string_view repo;    // "owner/name"
  int pr = 0;               // 0: no pull request
  std::string_view sha;     // a commit the line is about
  std::string_view reason;  // a reason code ("build-failed"), queue/model.hpp
  std::string_view event;   // the kind of a domain event ("merge_requested")
};

// `text` with the user information of URLs masked ("https://***@host/..."): a remote URL may
// carry a token, and git's errors echo it.
std::string redact(std::string_view text);

// Logs `message` about `fields` at `level` on the default logger.
void write(spdlog::level::level_enum level, const Fields& fields, std::string_view message);

template <class... Args>
void info(const Fields& f, spdlog::format_string_t<Args...> fmt, Args&&... args) {
  if (spdlog::should_log(spdlog::level::info))
    write(spdlog::level::info, f, fmt::format(fmt, std::forward<Args>(args)...));
}
template <class... Args>
void warn(const Fields& f, spdlog::format_string_t<Args...> fmt, Args&&... args) {
  if (spdlog::should_log(spdlog::level::warn))
    write(spdlog::level::warn, f, fmt::format(fmt, std::forward<Args>(args)...));
}
template <class... Args>
void error(const Fields& f, spdlog::format_string_t<Args...> fmt, Args&&... args) {
  if (spdlog::should_log(spdlog::level::err))
    write(spdlog::level::err, f, fmt::format(fmt, std::forward<Args>(args)...));
}
template <class... Args>
void debug(const Fields& f, spdlog::format_string_t<Args...> fmt, Args&&... args) {
  if (spdlog::should_log(spdlog::level::debug))
    write(spdlog::level::debug, f, fmt::format(fmt, std::forward<Args>(args)...));
}

}  // namespace dmz::log

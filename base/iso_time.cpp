#include "base/iso_time.hpp"

#include <cstdio>
#include <cstring>
#include <ctime>

namespace dmz {

std::string iso8601_utc(std::int64_t unix_seconds) {
  const auto t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  if (!gmtime_r(&t, &tm)) return std::to_string(unix_seconds);
  char buf[32];
  if (std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    return std::to_string(unix_seconds);
  return buf;
}

namespace {

// A UTC calendar time (month from 0) as milliseconds since the epoch.
std::optional<std::int64_t> utc_ms(int year, int month, int day, int hour, int minute, int second) {
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  std::time_t epoch = timegm(&tm);
  if (epoch == static_cast<std::time_t>(-1)) return std::nullopt;
  return static_cast<std::int64_t>(epoch) * 1000;
}

}  // namespace

std::optional<std::int64_t> parse_iso8601_ms(const std::string& t) {
  int y, mo, d, h, mi, s;
  char tail = 0;
  if (std::sscanf(t.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c", &y, &mo, &d, &h, &mi, &s, &tail) != 7)
    return std::nullopt;
  if (tail != 'Z' && tail != '.' && tail != '+') return std::nullopt;
  return utc_ms(y, mo - 1, d, h, mi, s);
}

// By hand, not strptime: its %a and %b follow the process locale, and HTTP's names do not.
std::optional<std::int64_t> parse_http_date(const std::string& date) {
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  char weekday[4] = {}, month[4] = {}, zone[4] = {};
  int d, y, h, mi, s, end = 0;
  if (std::sscanf(date.c_str(), "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d %3[A-Z]%n", weekday, &d,
                  month, &y, &h, &mi, &s, zone, &end) != 8 ||
      static_cast<std::size_t>(end) != date.size() || std::strcmp(zone, "GMT") != 0)
    return std::nullopt;
  int mo = 0;
  while (mo < 12 && std::strcmp(month, kMonths[mo]) != 0) ++mo;
  if (mo == 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) return std::nullopt;
  return utc_ms(y, mo, d, h, mi, s);
}

}  // namespace dmz

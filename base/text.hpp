// Text helpers for what comes from outside: finding and escaping control characters so that a
// user-supplied name can never forge a line (a log line, a commit trailer, a file:line message).
// Threading: pure functions.
#pragma once

#include <string>
#include <string_view>

namespace dmz {

// True if `s` holds a C0 control character (U+0000..U+001F) or DEL.
bool has_control(std::string_view s);

// `s` with every control character written as an escape: \n, \r, \t and \xNN; printable
// bytes (UTF-8 included, and backslashes) are kept, so escaping twice changes nothing more.
// The result is always one line.
std::string escape_control(std::string_view s);

}  // namespace dmz

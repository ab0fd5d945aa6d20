// Text helpers for what comes from outside: finding and escaping control characters so that a
// user-supplied name can never forge a line (a log line, a commit trailer, a file:line message),
// and recognising git object names.
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

// A git object name as git writes it: lowercase hex, 40 digits (SHA-1) or 64 (SHA-256).
bool is_object_id(std::string_view s);
// Only a SHA-1 name (40 lowercase hex digits): where the format read has no other.
bool is_sha1_hex(std::string_view s);

// The longest prefix of `s` of at most `max_bytes` that does not split a UTF-8 sequence (for
// limits a forge counts in characters: a cut sequence would be invalid UTF-8 in its JSON).
std::string_view utf8_prefix(std::string_view s, std::size_t max_bytes);

// `s` single-quoted for /bin/sh (a ' written as '\''): a path or value with spaces or quotes
// stays one word.
std::string sh_quote(std::string_view s);

// `s` with ASCII letters lowercased (header names, schemes, logins, hex): other bytes kept.
std::string ascii_lower(std::string_view s);

}  // namespace dmz

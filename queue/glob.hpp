// Glob matching of paths and branch names for the signature policy ('*', '**', '?').
// Threading: pure functions; safe from any thread.
#pragma once

#include <string_view>

namespace dmz::queue {

// Whether `path` matches `pattern` as a whole (anchored at both ends):
//   *    any run of characters except '/' (possibly empty)
//   **   any run of characters including '/'; "**/" also matches nothing, so "**/x" matches
//        "x" and "a/b/x", "a/**/b" matches "a/b" and "a/x/y/b", "a/**" matches everything
//        under "a/" (not "a" itself), and "**" alone matches every path
//   ?    exactly one character except '/'
// Every other character, '[' and '\' included, matches itself: there are no character classes
// and no escapes. Matching is case-sensitive, like git paths and ref names.
bool glob_match(std::string_view pattern, std::string_view path);

}  // namespace dmz::queue

// Glob matching of paths and branch names for the signature policy ('*', '**', '?').
// Threading: pure functions; safe from any thread.
#pragma once

#include <string>
#include <string_view>

namespace dmz::queue {

// Whether `path` matches `pattern` as a whole (anchored at both ends):
//   *    any run of characters except '/' (possibly empty)
//   **   any run of characters including '/'; "**/" also matches nothing, so "**/x" matches
//        "x" and "a/b/x", "a/**/b" matches "a/b" and "a/x/y/b", "a/**" matches everything
//        under "a/" (not "a" itself), and "**" alone matches every path
//   ?    exactly one character except '/': a UTF-8 lead byte and the continuation bytes
//        (0x80-0xBF) after it
// Every other character, '[' and '\' included, matches itself: there are no character classes
// and no escapes. Matching is case-sensitive, like git paths and ref names.
// Memory: (|pattern| + 1) * (|path| + 1) bytes. The shell caps the changed paths it matches
// (4,096 bytes, trust::changed_paths); patterns come from the policy.
bool glob_match(std::string_view pattern, std::string_view path);

// Why no git path or ref name can ever match `pattern`, or "" if one can: git names nothing
// "", "/a", "a/", "a//b", "a/./b" or "a/../b". ("it ends with '/' ...", for messages.)
std::string unmatchable(std::string_view pattern);

}  // namespace dmz::queue

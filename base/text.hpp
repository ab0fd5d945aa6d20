// Text that goes into one-line messages (file:line: message, verdict lines): values from files
// and repositories may hold newlines or terminal escapes that would split or forge lines.
// Threading: pure functions; safe from any thread.
#pragma once

#include <string>
#include <string_view>

namespace dmz {

// `text` with every control character escaped: \n, \r, \t as such, the others (and DEL) as
// \xNN. Everything else, UTF-8 included, is kept as it is.
std::string escape_control(std::string_view text);

}  // namespace dmz

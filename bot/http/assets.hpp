// The status pages' stylesheet and script, built into the binary and served at /assets/ (no
// CDN, nothing fetched at run time), so that the pages' CSP allows only 'self'.
// Threading: immutable data.
#pragma once

#include <string>
#include <string_view>

namespace dmz {

struct Asset {
  std::string_view content_type;
  std::string_view body;
  std::string etag;  // "\"<sha256 prefix>\"" of the body
};

// The asset at `path` ("/assets/dmzbot.css"), or nullptr.
const Asset* find_asset(std::string_view path);

}  // namespace dmz

// The live status page: one self-contained HTML document (inline CSS and JS, no external
// assets) that polls the queue JSON every second and renders the train and the pull requests.
// Every piece of data is inserted with textContent, never as markup.
// Threading: pure function.
#pragma once

#include <string>

namespace dmz {

// `repo` = "owner/name" for one repository's page; empty for the index page, which lists every
// repository from GET /api/v1/repos and shows each one's queue.
std::string status_page_html(const std::string& repo);

// The Content-Security-Policy served with the page: only its own inline style and script (by
// hash), fetches to the same origin, no framing. Defence in depth behind textContent.
const std::string& status_page_csp();

}  // namespace dmz

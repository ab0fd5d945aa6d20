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

}  // namespace dmz

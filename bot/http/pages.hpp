// The status pages as HTML rendered on the server: every repository (/), one repository's
// train, waiting PRs and outcomes (/repos/{o}/{n}), one PR's timeline (/repos/{o}/{n}/pulls/{k}).
// They read completely without JavaScript; the page script (assets.hpp) only follows the live
// feed and swaps in the freshly rendered <main>. Every piece of data is escaped; links go only
// to http(s) URLs and dmzbot's own paths. Every status is a word, its colour only a help.
// Threading: pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "bot/http/page_model.hpp"

namespace dmz::page {

std::string html_escape(std::string_view s);

// `text` escaped, with `name` spans in backticks set as <code>.
std::string html_text(std::string_view text);

// "45 s", "3 min 20 s", "2 h 5 min".
std::string duration_text(Millis ms);

// `last_seq`: the newest event of any repository, where the overview's live feed resumes.
std::string render_index(const std::vector<RepoSummary>& repos, Millis now,
                         std::int64_t last_seq = 0);
std::string render_repo(const RepoPage& page);
std::string render_pull(const PullPage& page);
// A page for an error (unknown repository or PR, the service not answering).
std::string render_error(int status, const std::string& message);

// The Content-Security-Policy of the pages: scripts and styles only from dmzbot's own
// /assets/, fetches and the live feed to the same origin, no framing, no forms.
const std::string& pages_csp();

}  // namespace dmz::page

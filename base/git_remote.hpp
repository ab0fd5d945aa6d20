// Which kind of git remote a URL names, refusing what git would run as a remote helper
// ("ext::cmd", "fd::17") or read as an option, and credentials in the URL (they would sit in
// the mirror's config and on git's command line, which other users can read). The
// configuration refuses such a remote at load (file:line), the transport before git runs.
// Threading: pure functions.
#pragma once

#include <string>

#include "base/status.hpp"

namespace dmz {

enum class GitRemote { kLocal, kFile, kGit, kHttp, kSsh };

// invalid, with a reason that never repeats a credential, for anything else.
Result<GitRemote> classify_git_remote(const std::string& url);

// Whether a token may be sent to the http(s) remote `url`: over https, or over plain http only
// to this machine (127.0.0.1, [::1], localhost), where it crosses no network. Any other kind of
// remote: true (a token is for http only).
bool token_may_go_to(const std::string& url);

}  // namespace dmz

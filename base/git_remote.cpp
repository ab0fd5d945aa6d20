#include "base/git_remote.hpp"

#include "base/text.hpp"
#include "base/url.hpp"

namespace dmz {

Result<GitRemote> classify_git_remote(const std::string& url) {
  if (url.empty()) return invalid("no remote URL");
  if (has_control(url)) return invalid("the remote URL has control characters");
  if (url.front() == '-') return invalid("the remote URL starts with '-'");
  const std::size_t sep = url.find("://");
  const std::size_t slash = url.find('/');
  if (sep != std::string::npos && sep < slash) {
    const std::string scheme = ascii_lower(url.substr(0, sep));
    const std::size_t host = sep + 3;
    const std::size_t path = url.find('/', host);
    const std::string authority =
        url.substr(host, path == std::string::npos ? std::string::npos : path - host);
    const std::size_t at = authority.rfind('@');
    const bool http = scheme == "http" || scheme == "https";
    // ssh names its user in the URL (git@host); http(s) gets the token from the repository's
    // settings, never from the URL.
    if (at != std::string::npos && (http || authority.substr(0, at).find(':') != std::string::npos))
      return invalid("the remote URL carries credentials (" + scheme + "://...@" +
                     authority.substr(at + 1) +
                     "): give the token as the repository's token, not in the URL");
    if (scheme == "file") return GitRemote::kFile;
    if (scheme == "git") return GitRemote::kGit;
    if (http) return GitRemote::kHttp;
    if (scheme == "ssh" || scheme == "git+ssh" || scheme == "ssh+git") return GitRemote::kSsh;
    return invalid("unsupported remote URL scheme '" + escape_control(scheme) + "'");
  }
  const std::size_t helper = url.find("::");
  if (helper != std::string::npos && helper < slash)
    return invalid("remote helper URLs (" + url.substr(0, helper) + "::) are not allowed");
  const std::size_t colon = url.find(':');
  if (colon != std::string::npos && colon < slash) return GitRemote::kSsh;  // scp-like host:path
  return GitRemote::kLocal;
}

bool token_may_go_to(const std::string& url) {
  if (!ascii_lower(url).starts_with("http://")) return true;
  auto parsed = parse_url(url);  // one that does not parse names no host we know: refused
  if (!parsed) return false;
  const std::string host = ascii_lower(parsed->host);
  return host == "127.0.0.1" || host == "::1" || host == "localhost";
}

}  // namespace dmz

#include "base/url.hpp"

#include <cctype>
#include <charconv>

#include "base/text.hpp"

namespace dmz {

std::string Url::authority() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  const bool default_port = (scheme == "https" && port == 443) || (scheme == "http" && port == 80);
  return default_port ? h : h + ":" + std::to_string(port);
}

std::string Url::origin() const { return scheme + "://" + authority(); }

namespace {

// The URL as an error quotes it: without user info (a token written there) or query, since
// such errors reach stderr and the journal.
std::string quotable(std::string_view text) {
  std::string_view shown = text.substr(0, text.find_first_of("?#"));
  const auto sep = shown.find("://");
  const std::size_t host_at = sep == std::string_view::npos ? 0 : sep + 3;
  const auto at = shown.substr(0, shown.find('/', host_at)).rfind('@');
  std::string out(shown);
  if (at != std::string_view::npos && at >= host_at) out.replace(host_at, at - host_at, "***");
  return escape_control(out);
}

}  // namespace

Result<Url> parse_url(std::string_view text) {
  auto bad = [&](std::string why) {
    return invalid("'" + quotable(text) + "' is not an http(s) URL: " + why);
  };
  for (unsigned char c : text)
    if (c <= 0x20 || c == 0x7f) return bad("it has spaces or control characters");
  Url url;
  auto sep = text.find("://");
  if (sep == std::string_view::npos) return bad("no scheme");
  const std::string scheme = ascii_lower(text.substr(0, sep));
  if (scheme != "http" && scheme != "https") return bad("the scheme must be http or https");
  url.scheme = scheme;
  std::string_view rest = text.substr(sep + 3);
  if (rest.find('#') != std::string_view::npos) return bad("it has a fragment");
  auto path_at = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, path_at);
  url.path = path_at == std::string_view::npos ? "/" : std::string(rest.substr(path_at));
  if (url.path.front() == '?') url.path = "/" + url.path;
  if (authority.find('@') != std::string_view::npos)
    return bad("credentials do not belong in a URL");
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return bad("an unclosed IPv6 address");
    url.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("garbage after the IPv6 address");
      port_text = after.substr(1);
    }
    if (url.host.empty() ||
        url.host.find_first_not_of("0123456789abcdefABCDEF:.") != std::string::npos)
      return bad("a bad IPv6 address");
  } else {
    auto colon = authority.find(':');
    url.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
    if (url.host.empty()) return bad("no host");
    for (char c : url.host)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_')
        return bad("a bad host name");
  }
  url.port = scheme == "https" ? 443 : 80;
  if (!port_text.empty() || (authority.size() && authority.back() == ':')) {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || value == 0 ||
        value > 65535)
      return bad("a bad port");
    url.port = static_cast<std::uint16_t>(value);
  }
  return url;
}

}  // namespace dmz

// Written by hand rather than with fnmatch(3): fnmatch has no "**" (FNM_PATHNAME makes '*'
// stop at '/', but then nothing crosses directories), and .gitignore-style "**" is what
// policy path rules need.
#include "queue/glob.hpp"

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

namespace dmz::queue {
namespace {

// Backtracking matcher with a memo over (pattern position, path position), so that patterns
// with several stars stay O(|pattern| * |path|) instead of exponential.
class Matcher {
 public:
  Matcher(std::string_view pattern, std::string_view path)
      : p_(pattern), s_(path), memo_((p_.size() + 1) * (s_.size() + 1), kUnknown) {}

  bool match(std::size_t pi, std::size_t si) {
    signed char& known = memo_[pi * (s_.size() + 1) + si];
    if (known == kUnknown) known = compute(pi, si) ? kYes : kNo;
    return known == kYes;
  }

 private:
  static constexpr signed char kUnknown = -1, kNo = 0, kYes = 1;

  bool compute(std::size_t pi, std::size_t si) {
    if (pi == p_.size()) return si == s_.size();
    const char c = p_[pi];
    if (c == '*' && pi + 1 < p_.size() && p_[pi + 1] == '*') {
      const std::size_t after = pi + 2;
      if (after < p_.size() && p_[after] == '/') {
        // "**/": zero directories, or any prefix that ends with '/'.
        if (match(after + 1, si)) return true;
        for (std::size_t k = si; k < s_.size(); ++k)
          if (s_[k] == '/' && match(after + 1, k + 1)) return true;
        return false;
      }
      for (std::size_t k = si; k <= s_.size(); ++k)  // "**": any run, '/' included
        if (match(after, k)) return true;
      return false;
    }
    if (c == '*') {  // any run within one path segment
      for (std::size_t k = si; k <= s_.size(); ++k) {
        if (match(pi + 1, k)) return true;
        if (k < s_.size() && s_[k] == '/') break;
      }
      return false;
    }
    if (si == s_.size()) return false;
    if (c == '?') {  // one character: its first byte and its UTF-8 continuation bytes
      if (s_[si] == '/') return false;
      std::size_t end = si + 1;
      while (end < s_.size() && (static_cast<unsigned char>(s_[end]) & 0xC0) == 0x80) ++end;
      return match(pi + 1, end);
    }
    return s_[si] == c && match(pi + 1, si + 1);
  }

  std::string_view p_, s_;
  std::vector<signed char> memo_;
};

}  // namespace

bool glob_match(std::string_view pattern, std::string_view path) {
  return Matcher(pattern, path).match(0, 0);
}

// Each of these makes a literal part that no name git stores has, whatever the stars match.
std::string unmatchable(std::string_view pattern) {
  if (pattern.empty()) return "it is empty";
  if (pattern.front() == '/') return "it starts with '/'";
  if (pattern.back() == '/')
    return "it ends with '/' (\"" + std::string(pattern) + "**\" matches what is under it)";
  if (pattern.find("//") != std::string_view::npos) return "it has an empty segment (//)";
  for (std::size_t start = 0; start <= pattern.size();) {
    const std::size_t end = std::min(pattern.find('/', start), pattern.size());
    const std::string_view segment = pattern.substr(start, end - start);
    if (segment == "." || segment == "..")
      return "it has a \"" + std::string(segment) + "\" segment";
    start = end + 1;
  }
  return {};
}

}  // namespace dmz::queue

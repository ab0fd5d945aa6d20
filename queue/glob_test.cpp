#include "queue/glob.hpp"

#include <doctest/doctest.h>

#include <string>

using dmz::queue::glob_match;

TEST_CASE("glob: literals match only themselves, as a whole") {
  CHECK(glob_match("master", "master"));
  CHECK_FALSE(glob_match("master", "master2"));
  CHECK_FALSE(glob_match("master", "maste"));
  CHECK_FALSE(glob_match("master", "Master"));  // case-sensitive
  CHECK(glob_match("", ""));
  CHECK_FALSE(glob_match("", "a"));
  CHECK_FALSE(glob_match("a", ""));
  CHECK(glob_match(".dmz/policy.toml", ".dmz/policy.toml"));
}

TEST_CASE("glob: * matches within one segment") {
  CHECK(glob_match("feature/*", "feature/login"));
  CHECK(glob_match("feature/*", "feature/"));  // an empty run
  CHECK_FALSE(glob_match("feature/*", "feature/a/b"));
  CHECK_FALSE(glob_match("feature/*", "feature"));
  CHECK_FALSE(glob_match("feature/*", "bug/login"));
  CHECK(glob_match("*.md", "README.md"));
  CHECK_FALSE(glob_match("*.md", "docs/README.md"));
  CHECK(glob_match("docs/*.md", "docs/POLICY.md"));
  CHECK(glob_match("*", "anything"));
  CHECK(glob_match("*", ""));
  CHECK_FALSE(glob_match("*", "a/b"));
  CHECK(glob_match("a*b*c", "abc"));
  CHECK(glob_match("a*b*c", "axxbyyc"));
  CHECK_FALSE(glob_match("a*b*c", "axxbyy"));
  CHECK(glob_match("*/*", "a/b"));
  CHECK_FALSE(glob_match("*/*", "a/b/c"));
  CHECK(glob_match("hotfix-*-v*", "hotfix-db-v2"));
}

TEST_CASE("glob: ? matches one character except '/'") {
  CHECK(glob_match("v?", "v1"));
  CHECK_FALSE(glob_match("v?", "v"));
  CHECK_FALSE(glob_match("v?", "v12"));
  CHECK_FALSE(glob_match("a?b", "a/b"));
  CHECK(glob_match("?\?/x", "ab/x"));  // "?\?" avoids the ??/ trigraph
}

TEST_CASE("glob: ? matches a whole UTF-8 character, however many bytes it has") {
  CHECK(glob_match("wip-?", "wip-\xC3\xA9"));  // é, two bytes
  CHECK_FALSE(glob_match("wip-?\?", "wip-\xC3\xA9"));
  CHECK(glob_match("docs/?.md", "docs/\xE2\x82\xAC.md"));  // €, three bytes
  CHECK(glob_match("?/x", "\xF0\x9F\x98\x80/x"));          // an emoji, four bytes
  CHECK_FALSE(glob_match("?", "\xC3\xA9\xC3\xA9"));
  CHECK(glob_match("*?", "\xC3\xA9"));
  CHECK(glob_match("?", "\xA9"));  // a stray continuation byte is a character of its own
}

TEST_CASE("glob: ** alone matches every path") {
  CHECK(glob_match("**", "a"));
  CHECK(glob_match("**", "a/b/c.txt"));
  CHECK(glob_match("**", ".dmz/policy.toml"));
  CHECK(glob_match("**", ""));
}

TEST_CASE("glob: **/x matches x at any depth, the top included") {
  CHECK(glob_match("**/x", "x"));
  CHECK(glob_match("**/x", "a/x"));
  CHECK(glob_match("**/x", "a/b/c/x"));
  CHECK_FALSE(glob_match("**/x", "ax"));
  CHECK_FALSE(glob_match("**/x", "a/x/y"));
  CHECK(glob_match("**/*.cpp", "main.cpp"));
  CHECK(glob_match("**/*.cpp", "queue/policy.cpp"));
  CHECK_FALSE(glob_match("**/*.cpp", "queue/policy.hpp"));
}

TEST_CASE("glob: a/** matches everything under a/, not a itself") {
  CHECK(glob_match(".dmz/**", ".dmz/policy.toml"));
  CHECK(glob_match("deploy/**", "deploy/k8s/manifest.yaml"));
  CHECK_FALSE(glob_match("deploy/**", "deploy"));
  CHECK_FALSE(glob_match("deploy/**", "deployment/x"));
  CHECK_FALSE(glob_match("deploy/**", "src/deploy/x"));
}

TEST_CASE("glob: a/**/b matches zero or more directories in between") {
  CHECK(glob_match("a/**/b", "a/b"));
  CHECK(glob_match("a/**/b", "a/x/b"));
  CHECK(glob_match("a/**/b", "a/x/y/b"));
  CHECK_FALSE(glob_match("a/**/b", "a/xb"));
  CHECK_FALSE(glob_match("a/**/b", "ab"));
  CHECK_FALSE(glob_match("a/**/b", "a/b/c"));
  CHECK(glob_match("src/**/test/*.cpp", "src/test/a.cpp"));
  CHECK(glob_match("src/**/test/*.cpp", "src/x/y/test/a.cpp"));
  CHECK_FALSE(glob_match("src/**/test/*.cpp", "src/x/test/y/a.cpp"));
}

TEST_CASE("glob: ** inside a segment crosses '/'") {
  CHECK(glob_match("a**z", "az"));
  CHECK(glob_match("a**z", "a/b/z"));
  CHECK(glob_match("release/**", "release/2026/11"));
}

TEST_CASE("glob: brackets and backslashes are literal") {
  CHECK(glob_match("a[1]", "a[1]"));
  CHECK_FALSE(glob_match("a[1]", "a1"));
  CHECK(glob_match("a\\*", "a\\bc"));  // '\' matches itself, '*' is still a star
}

TEST_CASE("glob: unmatchable names the patterns no git path or ref name can match") {
  using dmz::queue::unmatchable;
  for (const char* good :
       {"**", "*", "deploy/**", "**/x", ".dmz/**", ".*", "a..b", "wip/*", "master", "?", "a/**/b"})
    CHECK_MESSAGE(unmatchable(good).empty(), good);
  CHECK(unmatchable("") == "it is empty");
  CHECK(unmatchable("/deploy/**") == "it starts with '/'");
  CHECK(unmatchable("deploy/") == "it ends with '/' (\"deploy/**\" matches what is under it)");
  CHECK(unmatchable("a//b") == "it has an empty segment (//)");
  CHECK(unmatchable("./x") == "it has a \".\" segment");
  CHECK(unmatchable("a/**/../b") == "it has a \"..\" segment");
  CHECK(unmatchable("a/..") == "it has a \"..\" segment");
}

TEST_CASE("glob: many stars stay fast (memoised, not exponential)") {
  const std::string path(2000, 'a');
  CHECK_FALSE(glob_match("*a*a*a*a*a*a*a*a*a*a*b", path));
  CHECK_FALSE(glob_match("**a**a**a**a**a**a**a**b", path));
  CHECK(glob_match("**a**a**a**a**a**a**a**", path));
}

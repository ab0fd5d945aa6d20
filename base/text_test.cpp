#include "base/text.hpp"

#include <doctest/doctest.h>

namespace dmz {
namespace {

TEST_CASE("ascii_lower lowers ASCII letters only") {
  CHECK(ascii_lower("X-GitHub-Event: HTTPS://Acme/Widgets") ==
        "x-github-event: https://acme/widgets");
  CHECK(ascii_lower("Ölmann ABC") == "Ölmann abc");  // UTF-8 bytes kept as they are
  CHECK(ascii_lower(std::string("A\0B", 3)) == std::string("a\0b", 3));
  CHECK(ascii_lower("") == "");
}

TEST_CASE("sh_quote makes one shell word of anything") {
  CHECK(sh_quote("") == "''");
  CHECK(sh_quote("my demo's dir") == "'my demo'\\''s dir'");
  CHECK(sh_quote("$(rm -rf /)") == "'$(rm -rf /)'");
}

TEST_CASE("has_control finds C0 controls and DEL, not UTF-8") {
  CHECK_FALSE(has_control("merge-master"));
  CHECK_FALSE(has_control("Jürgen Ölmann"));
  CHECK(has_control("mm\nApproved-by: someone"));
  CHECK(has_control(std::string("a\0b", 3)));
  CHECK(has_control("tab\there"));
  CHECK(has_control("del\x7f"));
}

TEST_CASE("escape_control keeps one line and shows what was there") {
  CHECK(escape_control("mm\nApproved-by: x") == "mm\\nApproved-by: x");
  CHECK(escape_control("a\r\tb\\") == "a\\r\\tb\\");
  CHECK(escape_control(escape_control("x\ny")) == escape_control("x\ny"));  // idempotent
  CHECK(escape_control("\x1b[31mred") == "\\x1b[31mred");
  CHECK(escape_control(std::string("nul\0", 4)) == "nul\\x00");
  CHECK(escape_control("Jürgen") == "Jürgen");
  CHECK_FALSE(has_control(escape_control("x\ny\x01z")));
}

TEST_CASE("escape_control: control characters become visible escapes, the rest stays") {
  CHECK(escape_control("plain text, é ü") == "plain text, é ü");
  CHECK(escape_control("a\nb\rc\td") == "a\\nb\\rc\\td");
  CHECK(escape_control("del\x7f") == "del\\x7f");
  CHECK(escape_control("") == "");
}

}  // namespace

TEST_CASE("object ids: 40 or 64 lowercase hex digits; SHA-1 names only 40") {
  const std::string sha1(40, 'a'), sha256(64, '0');
  CHECK(is_object_id(sha1));
  CHECK(is_object_id(sha256));
  CHECK(is_object_id("0123456789abcdef0123456789abcdef01234567"));
  CHECK_FALSE(is_object_id(""));
  CHECK_FALSE(is_object_id(std::string(39, 'a')));
  CHECK_FALSE(is_object_id(std::string(41, 'a')));
  CHECK_FALSE(is_object_id(std::string(40, 'A')));  // git writes lowercase
  CHECK_FALSE(is_object_id(std::string(39, 'a') + "g"));
  CHECK_FALSE(is_object_id(std::string(39, 'a') + '\0'));
  CHECK(is_sha1_hex(sha1));
  CHECK_FALSE(is_sha1_hex(sha256));
  CHECK_FALSE(is_sha1_hex(std::string(39, 'a') + "G"));
}

TEST_CASE("utf8_prefix cuts at most max bytes, never inside a UTF-8 sequence") {
  CHECK(utf8_prefix("short", 10) == "short");
  CHECK(utf8_prefix("abcdef", 3) == "abc");
  const std::string word = "d\xc3\xa9j\xc3\xa0";  // "déjà": 1 + 2 + 1 + 2 bytes
  CHECK(utf8_prefix(word, 2) == "d");             // é would be cut
  CHECK(utf8_prefix(word, 3) == "d\xc3\xa9");
  CHECK(utf8_prefix(word, 5) == "d\xc3\xa9j");
  CHECK(utf8_prefix("\xf0\x9f\x98\x80!", 3) == "");  // a 4-byte emoji
  CHECK(utf8_prefix("", 0) == "");
}

}  // namespace dmz

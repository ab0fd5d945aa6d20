#include "base/text.hpp"

#include <doctest/doctest.h>

namespace dmz {
namespace {

TEST_CASE("escape_control: control characters become visible escapes, the rest stays") {
  CHECK(escape_control("plain text, é ü") == "plain text, é ü");
  CHECK(escape_control("a\nb\rc\td") == "a\\nb\\rc\\td");
  CHECK(escape_control("\x1b[31mred") == "\\x1b[31mred");
  CHECK(escape_control(std::string("nul\0end", 7)) == "nul\\x00end");
  CHECK(escape_control("del\x7f") == "del\\x7f");
  CHECK(escape_control("") == "");
}

}  // namespace
}  // namespace dmz

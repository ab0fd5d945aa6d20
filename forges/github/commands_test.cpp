// Which lines of a comment are commands: only what a reader sees at the start of a line, so
// not in code (fenced or indented), quotes or HTML comments.
#include "forges/github/commands.hpp"

#include <doctest/doctest.h>

#include <string>

namespace dmz::forges::github {
namespace {

// The commands of `body`, each written out with every field it sets, joined by " | ".
std::string parsed(const std::string& body) {
  std::string out;
  for (const Command& c : parse_commands(body, "dmzbot")) {
    if (!out.empty()) out += " | ";
    out += to_string(c.kind);
    if (!c.sha.empty()) out += " " + c.sha;
    if (c.priority != 0) out += " " + std::to_string(c.priority);
    if (!c.words.empty()) out += " [" + c.words + "]";
  }
  return out;
}

TEST_CASE("commands: an indented code block (4+ columns, a tab to the next 4) holds none") {
  CHECK(parsed("To land it a maintainer writes:\n\n    @dmzbot merge\n") == "");
  CHECK(parsed("    @dmzbot merge") == "");
  CHECK(parsed("        @dmzbot merge 0123abcd") == "");
  CHECK(parsed("\t@dmzbot merge") == "");
  CHECK(parsed("  \t@dmzbot merge") == "");  // 2 spaces, then a tab to column 4
  CHECK(parsed(" \t @dmzbot merge") == "");
  CHECK(parsed("text\r\n\r\n    @dmzbot merge\r\n") == "");
  // Up to 3 columns is no code block.
  CHECK(parsed("   @dmzbot merge") == "merge");
  CHECK(parsed("  @dmzbot merge") == "merge");
  CHECK(parsed(" @dmzbot cancel") == "cancel");
  // Commands before and after the block still count.
  CHECK(parsed("@dmzbot retry\n\n    @dmzbot merge\n\n@dmzbot status") == "retry | status");
  CHECK(parsed("Example:\r\n\r\n\t@dmzbot cancel\r\n\r\n@dmzbot priority 2\r\n") == "priority 2");
}

TEST_CASE("commands: an HTML comment holds none, even over several lines") {
  CHECK(parsed("<!-- @dmzbot merge -->") == "");
  CHECK(parsed("<!--\n@dmzbot merge\n-->") == "");
  CHECK(parsed("Notes for later <!--\n@dmzbot merge\n   @dmzbot retry\n-->\n") == "");
  CHECK(parsed("<!-- never closed\n@dmzbot merge\n\n@dmzbot cancel") == "");
  CHECK(parsed("<!-- a --> <!-- b\n@dmzbot merge\n-->") == "");
  CHECK(parsed("<!--\n```\n-->\n@dmzbot merge") == "merge");  // a fence in a comment is text
  // Commands before and after the comment still count, also on the lines it starts or ends.
  CHECK(parsed("@dmzbot retry\n<!--\n@dmzbot merge\n-->\n@dmzbot status") == "retry | status");
  CHECK(parsed("<!--\n@dmzbot merge\n--> \n@dmzbot cancel") == "cancel");
  CHECK(parsed("<!-- reason -->@dmzbot try") == "try");
  CHECK(parsed("@dmzbot merge <!-- CI is green -->") == "merge");
  CHECK(parsed("@dmzbot priority 3 <!--\n@dmzbot cancel\n-->") == "priority 3");
  // "<!-->" and "<!--->" are whole (empty) comments, as in HTML.
  CHECK(parsed("<!-->\n@dmzbot merge") == "merge");
  CHECK(parsed("<!--->\n@dmzbot merge") == "merge");
  CHECK(parsed("<!---->\n@dmzbot merge") == "merge");
  // "<!--" in code or a quote opens no comment.
  CHECK(parsed("```\n<!--\n```\n@dmzbot merge") == "merge");
  CHECK(parsed("    <!--\n\n@dmzbot merge") == "merge");
  CHECK(parsed("> <!--\n\n@dmzbot merge") == "merge");
}

TEST_CASE("commands: a code fence closes only with a run of its own character, as long, alone") {
  CHECK(parsed("````\n```\n@dmzbot merge\n````\n@dmzbot cancel") == "cancel");
  CHECK(parsed("~~~\n```\n@dmzbot merge\n~~~\n@dmzbot retry") == "retry");
  CHECK(parsed("```\n~~~\n@dmzbot merge\n```\n@dmzbot retry") == "retry");
  CHECK(parsed("```\n``` not a closer\n@dmzbot merge\n```\n@dmzbot status") == "status");
  CHECK(parsed("```c++\n@dmzbot merge\n`````  \n@dmzbot try") == "try");
  CHECK(parsed("```\r\n@dmzbot merge\r\n```\r\n@dmzbot cancel\r\n") == "cancel");
  CHECK(parsed("  ```\n@dmzbot merge\n   ```\n@dmzbot cancel") == "cancel");
  CHECK(parsed("```\n@dmzbot merge\n    ```\n@dmzbot cancel") == "");  // 4 columns: no closer
  CHECK(parsed("~~~ a`b\n@dmzbot merge\n~~~\n@dmzbot cancel") == "cancel");
  // An unclosed fence runs to the end of the comment.
  CHECK(parsed("```\n@dmzbot merge") == "");
  CHECK(parsed("````\n@dmzbot merge\n```\n@dmzbot cancel\n") == "");
  CHECK(parsed("~~~~\n@dmzbot merge\n~~~\n@dmzbot cancel\n") == "");
  // Not fences: two backticks, a backtick in a backtick fence's info (a code span), an indent.
  CHECK(parsed("``\n@dmzbot merge") == "merge");
  CHECK(parsed("```make```\n@dmzbot merge") == "merge");
  CHECK(parsed("    ```\n\n@dmzbot merge") == "merge");
}

TEST_CASE("commands: quotes hold none; everything else reads as before") {
  CHECK(parsed("> @dmzbot merge") == "");
  CHECK(parsed(">@dmzbot merge") == "");
  CHECK(parsed("  > @dmzbot merge") == "");
  CHECK(parsed("@dmzbot: merge 0123ABCD") == "merge 0123abcd");
  CHECK(parsed("@DMZBOT[bot], retry") == "retry");
  CHECK(parsed("@dmzbot merge now") == "help [merge now]");
  CHECK(parsed("@dmzbot priority 2\n"
               "```\n@dmzbot cancel\n```\n"
               "> @dmzbot retry\n"
               "<!-- @dmzbot try -->\n"
               "\n    @dmzbot status\n\n"
               "  @dmzbot merge\n") == "priority 2 | merge");
}

}  // namespace
}  // namespace dmz::forges::github

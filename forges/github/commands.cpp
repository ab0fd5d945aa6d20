#include "forges/github/commands.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <sstream>

#include "base/text.hpp"
#include "queue/model.hpp"

namespace dmz::forges::github {
namespace {

bool is_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; });
}

std::vector<std::string> words_of(std::string_view line) {
  std::vector<std::string> out;
  std::istringstream in{std::string(line)};
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

Command interpret(const std::vector<std::string>& w) {
  Command c;
  auto help = [&] {
    Command h;
    for (const auto& word : w) h.words += (h.words.empty() ? "" : " ") + word;
    return h;
  };
  if (w.empty()) return help();
  const std::string verb = ascii_lower(w[0]);
  const std::size_t n = w.size();
  if (verb == "merge" && n <= 2) {
    c.kind = Command::Kind::kMerge;
    if (n == 2) {
      if (w[1].size() < 7 || w[1].size() > 64 || !is_hex(w[1])) return help();
      c.sha = ascii_lower(w[1]);
    }
    return c;
  }
  if (verb == "priority" && n == 2) {
    int value = 0;
    const auto& t = w[1];
    auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), value);
    if (ec != std::errc() || end != t.data() + t.size() || value < -queue::kMaxPriority ||
        value > queue::kMaxPriority)
      return help();
    c.kind = Command::Kind::kPriority;
    c.priority = value;
    return c;
  }
  if (n != 1) return help();
  if (verb == "cancel")
    c.kind = Command::Kind::kCancel;
  else if (verb == "retry")
    c.kind = Command::Kind::kRetry;
  else if (verb == "try")
    c.kind = Command::Kind::kTry;
  else if (verb == "status")
    c.kind = Command::Kind::kStatus;
  else
    return help();
  return c;
}

// A run of 3 or more '`' or '~' that a line's text starts with: a code fence (n == 0: none).
struct Fence {
  char c = 0;
  std::size_t n = 0;
};

Fence fence_of(std::string_view text) {
  if (text.empty() || (text[0] != '`' && text[0] != '~')) return {};
  const std::size_t n = std::min(text.find_first_not_of(text[0]), text.size());
  return n >= 3 ? Fence{text[0], n} : Fence{};
}

// `line` without its HTML comments, which GitHub does not show; `open` is set when one runs on
// past the end of the line.
std::string without_comments(std::string_view line, bool& open) {
  std::string out;
  for (;;) {
    const auto start = line.find("<!--");
    out += line.substr(0, start);
    if (start == std::string_view::npos) return out;
    // From start + 2: "<!-->" and "<!--->" are whole (empty) comments, as in HTML.
    const auto end = line.find("-->", start + 2);
    if (end == std::string_view::npos) {
      open = true;
      return out;
    }
    line = line.substr(end + 3);
  }
}

}  // namespace

std::vector<Command> parse_commands(std::string_view body, std::string_view bot) {
  std::vector<Command> out;
  const std::string name = "@" + ascii_lower(bot);
  // Only what a reader sees at the start of a line is a command, so code, quotes and HTML
  // comments are skipped as CommonMark renders them: a command shown as an example (or hidden)
  // must not act. Simplified: 4+ columns of indentation is always code, even in a list item.
  Fence fence;              // the open code fence, if any
  bool in_comment = false;  // in an HTML comment `<!-- ... -->` begun on an earlier line
  std::size_t pos = 0;
  while (pos <= body.size() && out.size() < kMaxCommands) {
    auto end = body.find('\n', pos);
    std::string_view line =
        body.substr(pos, end == std::string_view::npos ? body.size() - pos : end - pos);
    pos = end == std::string_view::npos ? body.size() + 1 : end + 1;
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (in_comment) {
      const auto close = line.find("-->");
      if (close == std::string_view::npos) continue;
      in_comment = false;
      line = line.substr(close + 3);  // mid-line: no code or quote can start here
    } else {
      std::size_t column = 0, first = 0;  // a tab goes to the next multiple of 4
      for (; first < line.size() && (line[first] == ' ' || line[first] == '\t'); ++first)
        column = line[first] == '\t' ? column / 4 * 4 + 4 : column + 1;
      const std::string_view text = line.substr(first);
      const Fence f = column < 4 ? fence_of(text) : Fence{};
      if (fence.n > 0) {
        // Closed only by the same character, at least as many, and nothing after but spaces.
        if (f.c == fence.c && f.n >= fence.n &&
            text.find_first_not_of(" \t", f.n) == std::string_view::npos)
          fence = {};
        continue;
      }
      if (column >= 4 || text.starts_with('>')) continue;  // indented code, a quote
      // A backtick in the info string makes "```x```" a code span, not a fence.
      if (f.n > 0 && !(f.c == '`' && text.find('`', f.n) != std::string_view::npos)) {
        fence = f;
        continue;
      }
      line = text;
    }
    auto words = words_of(without_comments(line, in_comment));
    if (words.empty()) continue;
    std::string mention = ascii_lower(words[0]);
    for (char trailing : {',', ':'})  // "@dmzbot: merge"
      if (mention.size() > 1 && mention.back() == trailing) mention.pop_back();
    if (mention != name && mention != name + "[bot]") continue;
    words.erase(words.begin());
    out.push_back(interpret(words));
  }
  return out;
}

bool needs_merge_master(Command::Kind kind) {
  switch (kind) {
    case Command::Kind::kMerge:
    case Command::Kind::kCancel:
    case Command::Kind::kRetry:
    case Command::Kind::kPriority:
    case Command::Kind::kTry:
      return true;
    case Command::Kind::kStatus:
    case Command::Kind::kHelp:
      return false;
  }
  return true;
}

std::string_view to_string(Command::Kind kind) {
  switch (kind) {
    case Command::Kind::kMerge:
      return "merge";
    case Command::Kind::kCancel:
      return "cancel";
    case Command::Kind::kRetry:
      return "retry";
    case Command::Kind::kPriority:
      return "priority";
    case Command::Kind::kTry:
      return "try";
    case Command::Kind::kStatus:
      return "status";
    case Command::Kind::kHelp:
      return "help";
  }
  return "?";
}

std::string help_text(std::string_view bot, std::string_view merge_label) {
  const std::string b = "@" + std::string(bot);
  return "commands: `" + b + " merge [sha]` (approve the head), `" + b + " cancel`, `" + b +
         " retry`, `" + b + " priority <n>`, `" + b + " try` (build on master, not queued), `" + b +
         " status`; merge masters may also add the label `" + std::string(merge_label) +
         "` to approve and remove it to cancel";
}

}  // namespace dmz::forges::github

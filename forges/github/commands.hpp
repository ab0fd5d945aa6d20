// The commands people address to dmzbot in pull request comments and reviews
// ("@dmzbot merge", "@dmzbot priority 3"): parsing only, no permissions.
// Threading: pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dmz::forges::github {

struct Command {
  enum class Kind { kMerge, kCancel, kRetry, kPriority, kTry, kStatus, kHelp };
  Kind kind = Kind::kHelp;
  std::string sha;    // kMerge: the head being approved (7..64 hex digits), or "" for the head
  int priority = 0;   // kPriority
  std::string words;  // kHelp: what was not understood ("" when nothing followed the name)
  bool operator==(const Command&) const = default;
};

inline constexpr std::size_t kMaxCommands = 5;  // per comment; the rest are ignored

// The commands in `body`: every line that starts with "@<bot>" (or "@<bot>[bot]"; any case)
// outside quotes ("> ..."), code (fenced, or indented 4+ columns) and HTML comments ("<!-- -->").
// `bot` is a login without "[bot]".
std::vector<Command> parse_commands(std::string_view body, std::string_view bot);

// Whether the command changes the queue (only merge masters may give it).
bool needs_merge_master(Command::Kind kind);
std::string_view to_string(Command::Kind kind);  // "merge", "priority", ...

// The short help answered to an unknown command.
std::string help_text(std::string_view bot, std::string_view merge_label);

}  // namespace dmz::forges::github

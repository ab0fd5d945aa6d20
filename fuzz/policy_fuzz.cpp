// Fuzzes the repository signature policy parser (config::parse_policy, .dmz/policy.toml), which
// reads text that pull requests can change. Checks: a policy comes back iff no problem was
// reported, problems are sorted by line and lie inside the text.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "config/policy_file.hpp"
#include "fuzz/fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto result = dmz::config::parse_policy(text, ".dmz/policy.toml");
  FUZZ_CHECK(result.policy.has_value() == result.problems.empty(),
             "a policy together with problems, or neither");
  const auto lines = static_cast<int>(std::count(text.begin(), text.end(), '\n')) + 1;
  int last = 0;
  for (const auto& p : result.problems) {
    FUZZ_CHECK(p.line >= last, "problems not sorted by line");
    FUZZ_CHECK(p.line <= lines, "a problem on a line outside the text");
    FUZZ_CHECK(!p.message.empty(), "a problem without a message");
    last = p.line;
  }
  return 0;
}

// Fuzzes the service configuration parser (config::parse) with TOML text. Relative paths in the
// input (token files, keys, policy_root) resolve in an empty directory made for the run.
// Checks: a configuration comes back iff no problem was reported, and every problem names the
// file and a line inside the text.
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

#include "config/config.hpp"
#include "fuzz/fuzz_check.hpp"

namespace {
std::filesystem::path scratch;  // removed at exit
std::string config_file() {
  static const std::string file = [] {
    std::string dir = (std::filesystem::temp_directory_path() / "dmzbot-fuzz-XXXXXX").string();
    if (!mkdtemp(dir.data())) std::abort();
    scratch = dir;
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch, ec);
    });
    return dir + "/dmzbot.toml";
  }();
  return file;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::string file = config_file();
  auto result = dmz::config::parse(text, file);
  FUZZ_CHECK(result.config.has_value() == result.problems.empty(),
             "a configuration together with problems, or neither");
  const auto lines = static_cast<int>(std::count(text.begin(), text.end(), '\n')) + 1;
  for (const auto& p : result.problems) {
    FUZZ_CHECK(p.file == file, "a problem that does not name the file");
    FUZZ_CHECK(p.line >= 0 && p.line <= lines, "a problem on a line outside the text");
    FUZZ_CHECK(!p.message.empty(), "a problem without a message");
  }
  return 0;
}

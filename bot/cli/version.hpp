// dmzbot's version string, for logs and --version.
#pragma once
namespace dmz {
inline constexpr const char* kVersion = "0.1.0";
}

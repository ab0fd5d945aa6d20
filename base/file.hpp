// Reading a whole file that a user named (a configuration, a token, a policy): only a regular
// file, and only up to a size limit, so that /dev/zero, a FIFO or a huge file cannot exhaust
// memory or block. Threading: pure function of the file system; safe from any thread.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>

#include "base/status.hpp"

namespace dmz {

// Limits for the files dmzbot reads from its operator.
inline constexpr std::size_t kMaxSecretFileBytes = 64 * 1024;  // tokens, private keys
inline constexpr std::size_t kMaxPolicyFileBytes = 1 << 20;    // policies and their key files
inline constexpr std::size_t kMaxConfigFileBytes = 1 << 20;    // dmzbot's configuration

// The content of `path`, at most `max_bytes` bytes. A symlink is followed (secrets are often
// mounted as symlinks to regular files); what it reaches must be a regular file. The file is
// opened without blocking (O_NONBLOCK: a FIFO is refused, never waited on) and judged by fstat
// on the open descriptor, so nothing can swap it between the check and the read.
// Errors, each with the path in its message:
//   not_found    "'<path>' does not exist" (or a directory on the way does not)
//   invalid      "'<path>' is not a regular file (a directory)", "... is larger than N bytes"
//   unavailable  "'<path>' cannot be read: <strerror>" (permissions, I/O errors)
Result<std::string> read_regular_file(const std::filesystem::path& path, std::size_t max_bytes);

}  // namespace dmz

#include "base/file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace dmz {
namespace {

std::string quoted(const std::filesystem::path& path) { return "'" + path.string() + "'"; }

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "a special file";
}

Error open_failure(const std::filesystem::path& path, int err) {
  if (err == ENOENT || err == ENOTDIR) return not_found(quoted(path) + " does not exist");
  return unavailable(quoted(path) + " cannot be read: " + std::strerror(err));
}

// Closes the descriptor whichever way the read ends.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

Result<std::string> read_regular_file(const std::filesystem::path& path, std::size_t max_bytes) {
  const std::string too_large =
      quoted(path) + " is larger than " + std::to_string(max_bytes) + " bytes";
  // A first look before opening: a device is never opened (opening some has side effects).
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return open_failure(path, errno);
  if (!S_ISREG(st.st_mode))
    return invalid(quoted(path) + " is not a regular file (" + kind_of(st.st_mode) + ")");
  // O_NONBLOCK: if the path was swapped for a FIFO meanwhile, open must not wait for a writer.
  Fd file{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)};
  if (file.fd < 0) return open_failure(path, errno);
  // The decisive check, on what was actually opened.
  if (::fstat(file.fd, &st) != 0) return open_failure(path, errno);
  if (!S_ISREG(st.st_mode))
    return invalid(quoted(path) + " is not a regular file (" + kind_of(st.st_mode) + ")");
  if (static_cast<std::uintmax_t>(st.st_size) > max_bytes) return invalid(too_large);

  std::string content;
  content.reserve(static_cast<std::size_t>(st.st_size));
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(file.fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return unavailable(quoted(path) + " cannot be read: " + std::strerror(errno));
    }
    if (n == 0) break;
    // The file may grow after fstat: the limit holds for what is read, too.
    if (content.size() + static_cast<std::size_t>(n) > max_bytes) return invalid(too_large);
    content.append(buf, static_cast<std::size_t>(n));
  }
  return content;
}

}  // namespace dmz

#include "base/file.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <future>

#include "tests/support.hpp"

namespace dmz {
namespace {

namespace fs = std::filesystem;

TEST_CASE("read_regular_file: a regular file, whole, up to the limit") {
  test::TempDir dir;
  test::write_file(dir / "token", "t0ken\n");
  auto r = read_regular_file(dir / "token", 6);
  REQUIRE(r.ok());
  CHECK(*r == "t0ken\n");
  test::write_file(dir / "empty", "");
  CHECK(read_regular_file(dir / "empty", 0).value().empty());
}

TEST_CASE("read_regular_file: a symlink to a regular file is followed") {
  test::TempDir dir;
  test::write_file(dir / "real", "secret");
  fs::create_symlink(dir / "real", dir / "link");
  auto r = read_regular_file(dir / "link", 100);
  REQUIRE(r.ok());
  CHECK(*r == "secret");
}

TEST_CASE("read_regular_file: a missing file is not_found") {
  test::TempDir dir;
  auto r = read_regular_file(dir / "nope", 100);
  REQUIRE_FALSE(r.ok());
  CHECK(r.code() == Code::kNotFound);
  CHECK(r.message() == "'" + (dir / "nope").string() + "' does not exist");
  CHECK(read_regular_file(dir / "nope" / "deeper", 100).code() == Code::kNotFound);
}

TEST_CASE("read_regular_file: anything but a regular file is invalid") {
  test::TempDir dir;
  SUBCASE("a directory") {
    auto r = read_regular_file(dir.path(), 100);
    CHECK(r.code() == Code::kInvalid);
    CHECK(r.message() == "'" + dir.path().string() + "' is not a regular file (a directory)");
  }
  SUBCASE("/dev/zero, directly and through a symlink") {
    auto r = read_regular_file("/dev/zero", 100);
    CHECK(r.code() == Code::kInvalid);
    CHECK(r.message() == "'/dev/zero' is not a regular file (a character device)");
    fs::create_symlink("/dev/zero", dir / "zero");
    CHECK(read_regular_file(dir / "zero", 100).code() == Code::kInvalid);
  }
  SUBCASE("a FIFO is refused at once, never waited on") {
    REQUIRE(::mkfifo((dir / "fifo").c_str(), 0600) == 0);
    // Hold a writer end so that a reader that did block would block in read(), and can be
    // released by closing it: the test ends either way.
    int writer = ::open((dir / "fifo").c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(writer >= 0);
    auto pending =
        std::async(std::launch::async, [&] { return read_regular_file(dir / "fifo", 100); });
    bool prompt = pending.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
    ::close(writer);
    auto r = pending.get();
    CHECK(prompt);
    CHECK(r.code() == Code::kInvalid);
    CHECK(r.message() == "'" + (dir / "fifo").string() + "' is not a regular file (a FIFO)");
  }
}

TEST_CASE("read_regular_file: a file over the limit is invalid") {
  test::TempDir dir;
  test::write_file(dir / "big", std::string(101, 'x'));
  auto r = read_regular_file(dir / "big", 100);
  CHECK(r.code() == Code::kInvalid);
  CHECK(r.message() == "'" + (dir / "big").string() + "' is larger than 100 bytes");
  CHECK(read_regular_file(dir / "big", 101).ok());
}

TEST_CASE("read_regular_file: a file it cannot open is unavailable") {
  test::TempDir dir;
  fs::create_symlink(dir / "loop", dir / "loop");  // ELOOP, even for root
  auto r = read_regular_file(dir / "loop", 100);
  CHECK(r.code() == Code::kUnavailable);
  CHECK(r.message() ==
        "'" + (dir / "loop").string() + "' cannot be read: Too many levels of symbolic links");
  if (::geteuid() != 0) {  // root may read any file
    test::write_file(dir / "locked", "x");
    fs::permissions(dir / "locked", fs::perms::none);
    auto locked = read_regular_file(dir / "locked", 100);
    CHECK(locked.code() == Code::kUnavailable);
    CHECK(locked.message().find("cannot be read: Permission denied") != std::string::npos);
  }
}

}  // namespace
}  // namespace dmz

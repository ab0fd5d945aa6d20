#include "base/this_thread.hpp"

#include <doctest/doctest.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <thread>

namespace dmz {

namespace {

std::string name_of_this_thread() {
  char buf[32] = {};
  REQUIRE(pthread_getname_np(pthread_self(), buf, sizeof buf) == 0);
  return buf;
}

}  // namespace

TEST_CASE("name_this_thread names the calling thread, cut to the kernel's 15 bytes") {
  const std::string before = name_of_this_thread();
  std::string short_name, long_name;
  std::thread([&] {
    name_this_thread("engine");
    short_name = name_of_this_thread();
    name_this_thread("git octo/widgets-and-more");
    long_name = name_of_this_thread();
  }).join();
  CHECK(short_name == "engine");
  CHECK(long_name == "git octo/widget");
  CHECK(name_of_this_thread() == before);  // only the calling thread
}

TEST_CASE("a background thread runs niced, and so do the processes it starts") {
  const int before = this_thread_nice();
  int nice = -100, child_nice = -100;
  std::thread([&] {
    make_this_thread_background();
    nice = this_thread_nice();
    pid_t pid = fork();
    if (pid == 0) _exit(this_thread_nice() == nice ? 0 : 1);
    int status = 0;
    if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status))
      child_nice = WEXITSTATUS(status) == 0 ? nice : -1;
  }).join();
  CHECK(nice == std::max(before, kBackgroundNice));
  CHECK(child_nice == nice);
  CHECK(this_thread_nice() == before);  // only the calling thread
}

}  // namespace dmz

#include "base/this_thread.hpp"

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace dmz {

void name_this_thread(std::string_view name) {
  std::string cut(name.substr(0, 15));  // the kernel's limit (16 with the NUL)
  pthread_setname_np(pthread_self(), cut.c_str());
}

// On Linux a nice value belongs to a thread (the tid names it for setpriority), not to the
// whole process as POSIX says.
void make_this_thread_background() {
  if (this_thread_nice() < kBackgroundNice)
    setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), kBackgroundNice);
}

int this_thread_nice() {
  errno = 0;  // -1 is a valid nice value: only errno tells an error
  int nice = getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
  return errno == 0 ? nice : 0;
}

}  // namespace dmz

// SerialExecutor: one thread running posted tasks in order. The engine runs on one (the
// "strand" of DESIGN.md), and each repository's git work runs on another, so blocking libgit2
// or GPGME calls never stall the I/O threads and never run concurrently on one mirror.
// Threading: post() from any thread; tasks run one at a time on the executor's thread.
// A task that owns a promise or an answer should hold it in a shared_ptr whose last copy
// answers when destroyed unrun: stop(kDrop) destroys the tasks it drops (on the caller's thread).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace dmz {

class SerialExecutor {
 public:
  // The thread is named `name`; background work runs niced (base/this_thread.hpp).
  enum class Priority { kNormal, kBackground };
  explicit SerialExecutor(std::string name, Priority priority = Priority::kNormal);
  ~SerialExecutor();  // runs what is already posted, then joins
  SerialExecutor(const SerialExecutor&) = delete;
  SerialExecutor& operator=(const SerialExecutor&) = delete;

  // False (and the task dropped) once stop() has begun.
  bool post(std::function<void()> task);
  // Blocks until every task posted before this call has run (or was dropped by stop(kDrop)).
  // Not from the executor's thread.
  void drain();
  // What stop() does with the tasks still queued: run them all, or drop them (destroyed unrun)
  // once the task under way ends, for work that is re-issued anyway at the next start.
  enum class Pending { kRun, kDrop };
  void stop(Pending pending = Pending::kRun);
  bool on_this_thread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  void loop();

  std::string name_;
  Priority priority_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace dmz

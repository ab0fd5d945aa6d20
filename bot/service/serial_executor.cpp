#include "bot/service/serial_executor.hpp"

#include <spdlog/spdlog.h>

#include <future>
#include <memory>

#include "base/this_thread.hpp"

namespace dmz {

SerialExecutor::SerialExecutor(std::string name, Priority priority)
    : name_(std::move(name)), priority_(priority), thread_([this] { loop(); }) {}

SerialExecutor::~SerialExecutor() { stop(); }

bool SerialExecutor::post(std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return false;
    tasks_.push_back(std::move(task));
  }
  wake_.notify_one();
  return true;
}

void SerialExecutor::drain() {
  // Owned by the task alone: a drain dropped by stop(kDrop) breaks the promise, which ends the
  // wait too.
  auto done = std::make_shared<std::promise<void>>();
  auto future = done->get_future();
  if (post([done = std::move(done)] { done->set_value(); })) future.wait();
}

void SerialExecutor::stop(Pending pending) {
  std::deque<std::function<void()>> dropped;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    if (pending == Pending::kDrop) dropped.swap(tasks_);
  }
  wake_.notify_one();
  // Destroyed outside the lock: what they own may answer a waiter, or post elsewhere.
  dropped.clear();
  if (thread_.joinable() && !on_this_thread()) thread_.join();
}

void SerialExecutor::loop() {
  name_this_thread(name_);
  if (priority_ == Priority::kBackground) make_this_thread_background();
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;  // stopping and nothing left
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    try {
      task();
    } catch (const std::exception& e) {
      // A task must not take the executor down with it; the failure is a bug worth a log line.
      spdlog::error("{}: task threw: {}", name_, e.what());
    } catch (...) {  // not a std::exception: still no reason to end the process
      spdlog::error("{}: task threw something that is not a std::exception", name_);
    }
  }
}

}  // namespace dmz

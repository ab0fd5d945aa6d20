#include "bot/service/serial_executor.hpp"

#include <doctest/doctest.h>
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "base/this_thread.hpp"

namespace dmz {

TEST_CASE("SerialExecutor runs tasks in order on one thread") {
  SerialExecutor ex("test");
  std::vector<int> seen;
  std::thread::id first;
  std::atomic<bool> same_thread = true;
  for (int i = 0; i < 100; ++i)
    CHECK(ex.post([&, i] {
      if (i == 0)
        first = std::this_thread::get_id();
      else if (std::this_thread::get_id() != first)
        same_thread = false;
      seen.push_back(i);
    }));
  ex.drain();
  REQUIRE(seen.size() == 100);
  for (int i = 0; i < 100; ++i) CHECK(seen[i] == i);
  CHECK(same_thread);
}

TEST_CASE("SerialExecutor names its thread; a background one runs niced") {
  const int caller = this_thread_nice();
  SerialExecutor normal("git octo/widgets");
  SerialExecutor background("engine", SerialExecutor::Priority::kBackground);
  std::string name;
  int normal_nice = -100, background_nice = -100;
  normal.post([&] {
    char buf[32] = {};
    pthread_getname_np(pthread_self(), buf, sizeof buf);
    name = buf;
    normal_nice = this_thread_nice();
  });
  background.post([&] { background_nice = this_thread_nice(); });
  normal.drain();
  background.drain();
  CHECK(name == "git octo/widget");
  CHECK(normal_nice == caller);
  CHECK(background_nice == std::max(caller, kBackgroundNice));
}

TEST_CASE("SerialExecutor survives a throwing task and refuses posts after stop") {
  SerialExecutor ex("test");
  int after = 0;
  ex.post([] { throw std::runtime_error("boom"); });
  ex.post([&] { after = 1; });
  ex.drain();
  CHECK(after == 1);
  ex.stop();
  CHECK_FALSE(ex.post([&] { after = 2; }));
  CHECK(after == 1);
}

TEST_CASE("SerialExecutor survives a task that throws something that is not a std::exception") {
  SerialExecutor ex("test");
  int after = 0;
  ex.post([] { throw 42; });
  ex.post([&] { after = 1; });
  ex.drain();
  CHECK(after == 1);
}

TEST_CASE("SerialExecutor runs already posted tasks before stopping") {
  std::atomic<int> ran = 0;
  {
    SerialExecutor ex("test");
    for (int i = 0; i < 10; ++i) ex.post([&] { ++ran; });
  }
  CHECK(ran == 10);
}

TEST_CASE("SerialExecutor stop(kDrop) ends the task under way and drops the queued ones unrun") {
  SerialExecutor ex("test");
  std::promise<void> running, release;
  auto release_future = release.get_future().share();
  std::atomic<int> ran = 0;
  ex.post([&] {
    running.set_value();
    release_future.wait();
    ++ran;
  });
  running.get_future().wait();  // the first task is under way
  // A queued task that owns a promise: dropping it breaks the promise, so its waiter wakes.
  auto owned = std::make_shared<std::promise<int>>();
  auto owned_future = owned->get_future();
  ex.post([owned, &ran] {
    ++ran;
    owned->set_value(1);
  });
  owned.reset();
  for (int i = 0; i < 10; ++i) ex.post([&] { ++ran; });
  // A drain waiting behind the queue ends when it is dropped too.
  std::thread drainer([&] { ex.drain(); });
  std::thread stopper([&] { ex.stop(SerialExecutor::Pending::kDrop); });
  // Released once stop() has begun (posts are refused), so nothing queued can run before it.
  for (int i = 0; i < 5000 && ex.post([] {}); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  release.set_value();
  stopper.join();
  drainer.join();
  CHECK(ran == 1);  // only the task that was under way
  CHECK_THROWS_AS(owned_future.get(), std::future_error);
  CHECK_FALSE(ex.post([&] { ++ran; }));
}

}  // namespace dmz

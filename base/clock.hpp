// The one source of time: a Clock interface, the wall clock (the only code in dmzbot that reads
// the system clock) and a manual clock for tests and the simulator.
// Threading: wall_clock() is safe from any thread; a ManualClock belongs to one thread.
#pragma once

#include <cstdint>

namespace dmz {

using Millis = std::int64_t;  // milliseconds since the Unix epoch

class Clock {
 public:
  virtual ~Clock() = default;
  virtual Millis now() const = 0;
};

// The system's real-time clock.
Clock& wall_clock();

// Time that moves only when told to.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(Millis start = 1'700'000'000'000) : now_(start) {}
  Millis now() const override { return now_; }
  void set(Millis t) { now_ = t; }
  void advance(Millis by) { now_ += by; }

 private:
  Millis now_;
};

// How long to wait after the `failures`-th failure in a row: `base` after the first, doubling
// with each one after it, at most `cap`.
Millis backoff(Millis base, int failures, Millis cap);

}  // namespace dmz

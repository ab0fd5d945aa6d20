// What the calling thread is to the operating system: its name (as `top -H`, `perf` and gdb
// show it) and its scheduling weight.
// Threading: each call affects only the calling thread (and the processes it starts later).
#pragma once

#include <string_view>

namespace dmz {

// Linux keeps 15 bytes of a thread's name; longer names are cut.
void name_this_thread(std::string_view name);

// The nice value of background work: git, the engine, the forge's API calls and local builds.
// Against a busy normal thread they get about a tenth of a CPU, and a normal thread that wakes
// takes the CPU from them at once, so that the threads that answer webhooks and pages (the
// forge waits at most 10 s, a person less) are not delayed by them; they still get every idle
// cycle. The processes such a thread starts (git, a build) inherit it. webhook_bench's p99 at
// 1,000/s: 7 to 15 ms at nice 5, 5.2 to 5.9 ms at 10 (4.4 to 7.2 ms at 19, which would leave
// background work 1.5% of a busy CPU).
constexpr int kBackgroundNice = 10;
// Makes the calling thread background work (nice kBackgroundNice, where allowed).
void make_this_thread_background();
// The calling thread's nice value.
int this_thread_nice();

}  // namespace dmz

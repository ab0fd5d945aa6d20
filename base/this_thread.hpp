// What the calling thread is to the operating system: its name (as `top -H`, `perf` and gdb
// show it) and its scheduling weight.
// Threading: each call affects only the calling thread (and the processes it starts later).
#pragma once

#include <string_view>

namespace dmz {

// Linux keeps 15 bytes of a thread's name; longer names are cut.
void name_this_thread(std::string_view name);

// The nice value of background work: git, the engine, the forge's API calls and local builds.
// Their share of a busy CPU drops to about a third of a normal thread's, so that the threads
// that answer webhooks and pages (the forge waits at most 10 s, a person less) are not
// starved; the processes such a thread starts (git, a build) inherit it.
constexpr int kBackgroundNice = 5;
// Makes the calling thread background work (nice kBackgroundNice, where allowed).
void make_this_thread_background();
// The calling thread's nice value.
int this_thread_nice();

}  // namespace dmz

// What the fuzz targets share: an invariant check that aborts (a crash libFuzzer records, with
// the input that caused it) rather than an assert that NDEBUG would remove.
// Threading: libFuzzer calls a target from one thread.
#pragma once

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond, what)                                                                \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      std::fprintf(stderr, "fuzz invariant broken at %s:%d: %s\n", __FILE__, __LINE__, what); \
      std::abort();                                                                           \
    }                                                                                         \
  } while (0)

// dmzbot's command line: serve, demo, check-config, verify.
#include <cstdio>

int main() {
  std::puts("dmzbot: under construction");
  return 0;
}

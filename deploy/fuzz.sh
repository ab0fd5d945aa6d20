#!/bin/bash
# Builds the libFuzzer targets of fuzz/ (clang, ASan+UBSan) into $BUILD_DIR (default build-fuzz)
# and runs each for SECONDS (default 60) from its seeds: fuzz/corpus/<target>/ (committed) and
# those fuzz/make_seeds.sh makes with throwaway keys. What a run finds is kept in
# $BUILD_DIR/corpus/<target>/ for the next run; a crashing input in $BUILD_DIR/crashes/<target>/.
# Prints per target its executions and crashes, then `fuzz: N targets, M execs, K crashes`;
# exits non-zero if any target crashed (or did not run).
# Usage: deploy/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
[[ $seconds =~ ^[0-9]+$ && $seconds -gt 0 ]] || { echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2; }
shift || true
BUILD_DIR=$(realpath -m "${BUILD_DIR:-build-fuzz}")
deploy/setup.sh --fuzz
start=$SECONDS
CC=clang CXX=clang++ cmake -S . -B "$BUILD_DIR" -G Ninja -DDMZ_FUZZ=ON >/dev/null
cmake --build "$BUILD_DIR" --target fuzz_targets -j "$(nproc)"
echo "fuzz: build took $((SECONDS - start))s"
fuzz/make_seeds.sh "$BUILD_DIR/seeds"

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  for bin in "$BUILD_DIR"/fuzz_*; do [[ -x $bin ]] && targets+=("${bin##*/fuzz_}"); done
fi
[[ ${#targets[@]} -gt 0 ]] || { echo "fuzz: no fuzz targets in $BUILD_DIR" >&2; exit 1; }
total_execs=0 total_crashes=0 failed=0
for t in "${targets[@]}"; do
  bin=$BUILD_DIR/fuzz_$t
  corpus=$BUILD_DIR/corpus/$t crashes=$BUILD_DIR/crashes/$t log=$BUILD_DIR/fuzz-$t.log
  mkdir -p "$corpus" "$crashes" "fuzz/corpus/$t" "$BUILD_DIR/seeds/$t"
  touch "$crashes/.since"
  # -timeout: one input running 10 s is a hang; -rss_limit_mb: 2 GiB is a leak or a bomb.
  rc=0
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$crashes/" "$corpus" "$PWD/fuzz/corpus/$t" "$BUILD_DIR/seeds/$t" \
    </dev/null >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  execs=${execs:-0}
  found=$(find "$crashes" -type f -newer "$crashes/.since")
  crashed=$(grep -c . <<<"$found" || true)
  if [[ $rc -ne 0 && $crashed -eq 0 ]]; then
    echo "fuzz: $t: did not run (exit $rc):"
    tail -n 3 "$log" | sed 's/^/    /'
    failed=1
    continue
  fi
  echo "fuzz: $t: $execs execs, $crashed crashes (log $log)"
  if [[ $crashed -gt 0 ]]; then
    failed=1
    grep -m1 -E 'ERROR: |runtime error|fuzz invariant' "$log" | sed 's/^/    /' || true
    sed 's/^/    input: /' <<<"$found"
    echo "    reproduce: $bin INPUT; then add INPUT to a regression test of the owning folder"
  fi
  total_execs=$((total_execs + execs)) total_crashes=$((total_crashes + crashed))
done
echo "fuzz: ${#targets[@]} targets, $total_execs execs, $total_crashes crashes"
exit $failed

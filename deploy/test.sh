#!/bin/sh
# Sets up, builds and runs every test. This is the README's test command and what .ci/run calls.
set -eu
cd "$(dirname "$0")/.."
deploy/setup.sh --test
deploy/build.sh
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure --no-tests=error -j 2

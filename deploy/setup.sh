#!/bin/sh
# Installs what dmzbot needs to build and run on a fresh Debian 12 machine; with --test, also
# what the tests need (chromium and playwright-core for the status page's browser test, sshd
# for the git transport's ssh tests: they start their own on 127.0.0.1); with --fuzz, clang and
# its libFuzzer runtime for deploy/fuzz.sh. Flags combine.
# Idempotent and non-interactive; run as root (or with sudo available).
set -eu
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
packages="cmake ninja-build g++ pkg-config ccache git gnupg openssh-client bubblewrap
  libboost1.81-dev libgit2-dev libgpgme-dev nlohmann-json3-dev libsimdjson-dev libssl-dev doctest-dev
  libtomlplusplus-dev libsqlite3-dev libpq-dev libspdlog-dev libcli11-dev"
with_tests=false
for arg in "$@"; do
  case $arg in
    --test) with_tests=true ;;
    # libclang-rt-14-dev holds libFuzzer and clang's sanitizer runtimes; clang only recommends it.
    --fuzz) packages="$packages clang libclang-rt-14-dev" ;;
    *) echo "usage: $0 [--test] [--fuzz]" >&2; exit 2 ;;
  esac
done
if $with_tests; then
  # sshd: bot/git's ssh transport tests; the reference Prometheus parser checks /metrics;
  # systemd-analyze checks deploy/dmzbot.service.
  packages="$packages chromium openssh-server python3-prometheus-client systemd"
  # Debian's nodejs does not bring npm; a Node from elsewhere (NodeSource) bundles its own npm
  # and conflicts with Debian's, so Debian's npm is added only beside Debian's node.
  if ! command -v node >/dev/null 2>&1; then
    packages="$packages nodejs npm"
  elif ! command -v npm >/dev/null 2>&1; then
    if dpkg-query -S "$(command -v node)" 2>/dev/null | grep -q '^nodejs:'; then
      packages="$packages npm"
    else
      echo "$0: node is installed but npm is not; install the npm that goes with this node" >&2
      exit 1
    fi
  fi
fi
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  # shellcheck disable=SC2086
  # A new VM's first boot often runs unattended-upgrades: wait for its lock rather than fail.
  $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing
  case " $missing " in
    *" openssh-server "*)
      # Installed for the tests only: the system's own sshd (started by the package under
      # systemd) is not wanted.
      if [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now ssh.service >/dev/null 2>&1 || true
      fi ;;
  esac
fi
if $with_tests; then
  # Exact versions from the committed lock file; a test tool never downloads its own browser.
  npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
  # GitHub's webhook examples and REST description, for the GitHub adapter's tests.
  npm ci --prefix tests/github --no-audit --no-fund --loglevel=error
fi

#!/bin/sh
# Installs what dmzbot needs to build, test and run on a fresh Debian 12 machine.
# Idempotent and non-interactive; run as root (or with sudo available).
set -eu
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
packages="cmake ninja-build g++ pkg-config ccache git gnupg openssh-client
  libboost1.81-dev libgit2-dev libgpgme-dev nlohmann-json3-dev libssl-dev doctest-dev
  libtomlplusplus-dev libsqlite3-dev libpq-dev libspdlog-dev libcli11-dev"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

#!/bin/bash
# Runs a command (e.g. the test suite) as on a fresh machine that knows nothing of its user: no
# git identity (HOME an empty directory, no system git config, no EMAIL), a host name without a
# domain, and no /etc/hosts. The tests must carry everything they rely on, and this is how CI
# proves it. Uses private mount and UTS namespaces, so the host is untouched; needs root (or
# unshare rights): elsewhere it fails (exit 3), unless BARE_MACHINE_OPTIONAL=1, when it says so
# and runs the command as it is (a run that proves nothing about a bare machine).
# Usage: tests/bare_machine.sh COMMAND [ARG...]
set -euo pipefail
if ! unshare --mount --uts --propagation private true 2>/dev/null; then
  if [ "${BARE_MACHINE_OPTIONAL:-0}" != 1 ]; then
    echo "bare_machine: cannot make private namespaces here (needs root or unshare rights);" \
      "BARE_MACHINE_OPTIONAL=1 runs the command as it is" >&2
    exit 3
  fi
  echo "bare_machine: cannot make private namespaces here (needs root): running as is" >&2
  exec "$@"
fi
scratch=$(mktemp -d "${TMPDIR:-/tmp}/bare-machine.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/home" "$scratch/etc"
cp -a /etc/. "$scratch/etc/"
rm -f "$scratch/etc/hosts" "$scratch/etc/mailname" "$scratch/etc/gitconfig"
rc=0
unshare --mount --uts --propagation private bash -c '
  set -eu
  hostname bare
  mount --bind "$1/etc" /etc
  shift
  exec "$@"' bare-machine "$scratch" \
  env -u EMAIL -u GIT_AUTHOR_NAME -u GIT_AUTHOR_EMAIL -u GIT_COMMITTER_NAME \
    -u GIT_COMMITTER_EMAIL -u GIT_CONFIG_GLOBAL HOME="$scratch/home" GIT_CONFIG_NOSYSTEM=1 \
    "$@" || rc=$?
exit $rc

#!/bin/sh
# deploy/dmzbot.service as systemd reads it: `systemd-analyze verify` names no problem, and its
# ExecStartPre (check-config) passes on a valid configuration and stops the start on a bad one.
# The unit is pointed at this build and a configuration in a temp dir.
# Usage: tests/systemd_unit_test.sh DMZBOT_BIN SOURCE_DIR
set -eu
bin=$1
src=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dmzbot-unit.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "systemd_unit_test: $*" >&2; exit 1; }

sed -e "s#/usr/local/bin/dmzbot#$bin#g" -e "s#/etc/dmzbot/dmzbot.toml#$tmp/dmzbot.toml#g" \
  "$src/deploy/dmzbot.service" >"$tmp/dmzbot.service"
grep -q "^ExecStart=$bin serve --config $tmp/dmzbot.toml\$" "$tmp/dmzbot.service" ||
  fail "ExecStart does not run dmzbot serve on /etc/dmzbot/dmzbot.toml"
out=$(systemd-analyze verify "$tmp/dmzbot.service" 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify: $out"
# The builds' sandbox (bubblewrap) mounts a procfs of its own; the kernel refuses that when
# anything is mounted over /proc, as these settings do (ProtectKernelLogs covers /proc/kmsg).
for setting in ProtectKernelLogs ProtectKernelTunables ProtectProc ProcSubset RestrictNamespaces \
  PrivateUsers; do
  if grep -Eq "^$setting=" "$tmp/dmzbot.service"; then
    fail "$setting= breaks the build sandbox (bubblewrap cannot mount /proc)"
  fi
done

# The unit's own ExecStartPre line, run as systemd would (no shell).
pre=$(sed -n 's/^ExecStartPre=//p' "$tmp/dmzbot.service")
[ -n "$pre" ] || fail "no ExecStartPre"
printf 'data_dir = "%s"\n[[repo]]\nname = "acme/app"\nremote = "/srv/app.git"\nrequired_checks = ["ci"]\n' \
  "$tmp" \
  >"$tmp/dmzbot.toml"
# shellcheck disable=SC2086
$pre >"$tmp/out" 2>&1 || fail "ExecStartPre refused a valid configuration: $(cat "$tmp/out")"
printf '[[repo]]\nname = "acme/app"\nremote = "/srv/app.git"\nrequired_checks = ["ci"]\nflavour = 1\n' \
  >"$tmp/dmzbot.toml"
# shellcheck disable=SC2086
if $pre >"$tmp/out" 2>&1; then fail "ExecStartPre accepted a bad configuration"; fi
grep -q "dmzbot.toml:5: " "$tmp/out" || fail "no file:line for the bad key: $(cat "$tmp/out")"
echo "systemd_unit_test: ok"

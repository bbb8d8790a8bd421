#!/usr/bin/env bash
# Runs a command (a test suite) and fails if it leaked anything the engine is
# responsible for:
#   - processes: every descendant inherits ORRERY_LEAKCHECK_TAG, QEMU too (the
#     engine spawns it with the engine's environment), so a process still
#     carrying the tag once the command has returned was left behind; it is
#     listed and killed;
#   - runtime files: ORRERY_RUNTIME_DIR points at a fresh directory for the
#     command, which must hold nothing afterwards (every VM's directory with
#     its sockets and pidfile removed);
#   - file descriptors: the busted helper scripts/lib/orrery/leakcheck.lua
#     (run-busted.sh loads it when ORRERY_LEAK_REPORT is set) writes the Lua
#     process's descriptor counts at the start and end of the run; more at
#     the end is a leak.
# Usage: scripts/leakcheck.sh NAME COMMAND [ARGS...]
# Exit: the command's own status if it failed, else 3 on a leak, else 0.
set -uo pipefail
name=$1
shift
tag="leakcheck-$$-$RANDOM$RANDOM"
work=$(mktemp -d /tmp/orr-leakcheck.XXXXXX)
mkdir -m 0700 "$work/run"

ORRERY_LEAKCHECK_TAG=$tag ORRERY_RUNTIME_DIR="$work/run" \
  ORRERY_LEAK_REPORT="$work/fds" "$@"
status=$?

leaks=0
# Processes: give a QEMU that is being reaped a moment to go.
left=""
for _ in 1 2 3 4 5 6 7 8 9 10; do
  left=$(grep -lsz "^ORRERY_LEAKCHECK_TAG=$tag\$" /proc/[0-9]*/environ |
    sed -E 's|/proc/([0-9]+)/environ|\1|' | grep -vx "$$" || true)
  [ -z "$left" ] && break
  sleep 0.5
done
if [ -n "$left" ]; then
  leaks=1
  for pid in $left; do
    echo "leakcheck $name: process left behind: $pid $(tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null | cut -c1-200)"
    kill -KILL "$pid" 2>/dev/null
  done
fi

files=$(find "$work/run" -mindepth 1 2>/dev/null)
if [ -n "$files" ]; then
  leaks=1
  echo "leakcheck $name: runtime files left behind:"
  echo "$files" | sed 's/^/  /'
fi

if [ -f "$work/fds" ]; then
  read -r _ before after <"$work/fds"
  if [ "$after" -gt "$before" ]; then
    leaks=1
    echo "leakcheck $name: the Lua process held $before file descriptors after warm-up and $after at the end:"
    grep '^new ' "$work/fds" | sed 's/^new /  fd /'
  else
    echo "leakcheck $name: file descriptors $before at the start, $after at the end"
  fi
fi
[ "$leaks" -eq 0 ] && echo "leakcheck $name: no process, runtime file or descriptor left behind"
rm -rf "$work"
[ "$status" -ne 0 ] && exit "$status"
[ "$leaks" -ne 0 ] && exit 3
exit 0

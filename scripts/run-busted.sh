#!/usr/bin/env bash
# Runs the busted specs against a build directory (default: build), keeping
# busted's report in BUILD/busted.log for scripts/test.sh to count. The
# interpreter and Lua paths come from .busted.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
# Under scripts/leakcheck.sh, a helper reports the descriptors the run leaked.
helper=()
[ -n "${ORRERY_LEAK_REPORT:-}" ] && helper=(--helper=scripts/lib/orrery/leakcheck.lua)
busted --cpath="$build/?.so" -o plainTerminal "${helper[@]}" "${@:2}" 2>&1 |
  tee "$build/busted.log"
exit "${PIPESTATUS[0]}"

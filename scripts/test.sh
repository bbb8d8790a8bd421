#!/usr/bin/env bash
# Builds Orrery from scratch and runs every test: the C tests and the busted
# specs, all through ctest. Ends with one line "N passed, N failed" that adds
# up ctest's C tests and busted's specs. Usage: scripts/test.sh [BUILD_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
rm -rf "$build"
cmake -S . -B "$build" -DORR_WERROR=ON >/dev/null || exit 1
cmake --build "$build" -j2 || exit 1
log="$build/ctest.log"
ctest --test-dir "$build" --output-on-failure --timeout 3000 2>&1 | tee "$log"
c_total=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: c/' "$log")
c_failed=$(grep -E '^ *[0-9]+/[0-9]+ Test +#[0-9]+: c/' "$log" | grep -cv ' Passed ')
summary=$(grep -E '^[0-9]+ successes / [0-9]+ failures? / [0-9]+ errors?' "$build/busted.log" 2>/dev/null | tail -1)
b_pass=$(echo "$summary" | awk '{print $1+0}')
b_fail=$(echo "$summary" | awk '{print $4+$7}')
if [ -z "$summary" ]; then
  b_pass=0
  b_fail=1 # busted did not report: count it as a failure
fi
passed=$((c_total - c_failed + b_pass))
failed=$((c_failed + b_fail))
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

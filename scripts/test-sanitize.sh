#!/usr/bin/env bash
# The sanitizer pass of CI. Builds Orrery with AddressSanitizer and
# UndefinedBehaviorSanitizer (ORR_SANITIZE) in its own build directory and
# runs the whole suite under it: the C tests, then the busted specs against
# real QEMU. Then runs the C tests of the plain build once more under
# valgrind memcheck. Every pass must end with zero reports.
#
# Usage: scripts/test-sanitize.sh [ASAN_BUILD_DIR [PLAIN_BUILD_DIR]]
# (defaults build-asan and build; the plain build must exist: scripts/test.sh
# makes it). Prints "sanitize: P ok, F failing" and writes "P F" to
# ASAN_BUILD_DIR/counts for .ci/run, which adds them into its closing line.
#
# How the sanitizers reach each process:
#   - the C tests and build/orrery link the runtime themselves;
#   - busted runs lua5.4, which dlopen()s build/orrery.so, and the ASan
#     runtime must be the first library of the process: a lua5.4 stand-in
#     linked with the runtime (scripts/sanitize/lua.c) goes first on PATH.
#     Not LD_PRELOAD=libasan.so: that reaches every child too, and pgrep
#     hangs under it (see lua.c);
#   - QEMU and the shell tools the specs run are not ours and start clean.
#   - Every report goes to a file under $reports (log_path), so a report from
#     a child whose stderr a spec captured is still counted.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
asan=${1:-build-asan}
plain=${2:-build}
passed=0
failed=0
count() { # count NAME OK(0|1)
  if [ "$2" -eq 0 ]; then passed=$((passed + 1)); else
    failed=$((failed + 1))
    echo "sanitize: FAILED: $1"
  fi
}

rm -rf "$asan"
if ! cmake -S . -B "$asan" -DORR_WERROR=ON -DORR_SANITIZE=ON >/dev/null ||
  ! cmake --build "$asan" -j2 >"$asan/build.log" 2>&1; then
  tail -30 "$asan/build.log"
  echo "sanitize: the ORR_SANITIZE build failed"
  mkdir -p "$asan" && echo "0 1" >"$asan/counts"
  echo "sanitize: 0 ok, 1 failing"
  exit 1
fi
asan=$(cd "$asan" && pwd)
reports="$asan/reports"
mkdir -p "$reports"

shim="$asan/shim"
mkdir -p "$shim"
# shellcheck disable=SC2046
if ! gcc -std=c11 -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
  -fno-sanitize-recover=undefined -DREAL_LUA="\"$(command -v lua5.4)\"" \
  -o "$shim/lua5.4" scripts/sanitize/lua.c $(pkg-config --cflags --libs lua5.4); then
  echo "sanitize: cannot build the lua5.4 stand-in"
  exit 1
fi
export PATH="$shim:$PATH"
export ASAN_OPTIONS="detect_leaks=1:log_path=$reports/asan:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1"
export LSAN_OPTIONS="suppressions=$root/scripts/sanitize/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan"

# 1. The C tests, instrumented.
log="$asan/ctest.log"
scripts/leakcheck.sh asan-c ctest --test-dir "$asan" -L c --output-on-failure \
  --timeout 600 >"$log" 2>&1
leak=$?
cat "$log"
total=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: c/' "$log")
bad=$(grep -E '^ *[0-9]+/[0-9]+ Test +#[0-9]+: c/' "$log" | grep -cv ' Passed ')
passed=$((passed + total - bad))
failed=$((failed + bad))
[ "$total" -gt 0 ] || count "no C test ran under ASan" 1
grep -q '^leakcheck asan-c: no process' "$log"
count "leak check of the C tests under ASan" $?

# 2. The busted specs against real QEMU, in the instrumented interpreter.
scripts/leakcheck.sh asan-busted \
  scripts/run-busted.sh "$asan" >"$asan/busted.out" 2>&1
cat "$asan/busted.out"
summary=$(grep -E '^[0-9]+ successes / [0-9]+ failures? / [0-9]+ errors?' "$asan/busted.log" | tail -1)
if [ -n "$summary" ]; then
  passed=$((passed + $(echo "$summary" | awk '{print $1}')))
  failed=$((failed + $(echo "$summary" | awk '{print $4 + $7}')))
else
  count "busted under ASan did not report" 1
fi
grep -q '^leakcheck asan-busted: no process' "$asan/busted.out"
count "leak check of the busted specs under ASan" $?

# Any sanitizer report from any process of the two runs above.
n=$(find "$reports" -type f | wc -l)
if [ "$n" -gt 0 ]; then
  for f in "$reports"/*; do
    echo "---- $f"
    head -60 "$f"
  done
fi
count "sanitizer reports ($n)" "$n"

# 3. The C tests of the plain build under valgrind memcheck. QEMU is exec'd
# by the tests and runs natively (no --trace-children).
for t in "$plain"/test-*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  vlog="$asan/valgrind-$name.log"
  (cd "$plain" && timeout 900 valgrind -q --error-exitcode=99 \
    --leak-check=full --errors-for-leak-kinds=definite,indirect,possible \
    "./$name") >"$vlog" 2>&1
  rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "---- valgrind $name (exit $rc)"
    tail -60 "$vlog"
  else
    echo "valgrind $name: ok"
  fi
  count "valgrind $name" "$rc"
done

echo "$passed $failed" >"$asan/counts"
echo "sanitize: $passed ok, $failed failing"
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, CMake option ORR_FUZZ, clang) in their
# own build directory and runs each for a bounded time, starting from the
# committed seed corpus fuzz/corpus/<target>/ (copied: the run's new inputs
# go to BUILD/corpus/<target>, never into the source tree).
#
# Usage: scripts/fuzz.sh [SECONDS_EACH [BUILD_DIR [TARGET...]]]
# (defaults 30, build-fuzz, every target). A target passes when libFuzzer
# found nothing (no crash, leak, timeout or out-of-memory input); a finding
# is kept as BUILD/findings/<target>/<kind>-<hash> and its report printed.
# Prints one line per target with its executions, and "fuzz: P ok, F
# failing"; writes "P F" to BUILD/counts for .ci/run.
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
build=${2:-build-fuzz}
shift 2 2>/dev/null || shift $#
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(qmp agent doc modify state image)
passed=0
failed=0

mkdir -p "$build"
if ! CC=clang cmake -S . -B "$build" -DORR_FUZZ=ON -DORR_WERROR=ON \
  -DORR_BUILD_GUEST=OFF >"$build/configure.log" 2>&1 ||
  ! cmake --build "$build" -j2 --target "${targets[@]/#/fuzz_}" \
    >"$build/build.log" 2>&1; then
  tail -30 "$build/configure.log" "$build/build.log"
  echo "fuzz: the ORR_FUZZ build failed (clang and libclang-rt-14-dev installed?)"
  echo "0 1" >"$build/counts"
  echo "fuzz: 0 ok, 1 failing"
  exit 1
fi

for t in "${targets[@]}"; do
  corpus="$build/corpus/$t"
  findings="$build/findings/$t"
  mkdir -p "$corpus" "$findings"
  cp -n fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null
  log="$build/fuzz-$t.log"
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: the machine
  # has 24 GiB and three targets may run in a row.
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$build/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 \
    -print_final_stats=1 -artifact_prefix="$findings/" "$corpus" >"$log" 2>&1
  rc=$?
  execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
  rate=$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}')
  units=$(find "$corpus" -type f | wc -l)
  found=$(find "$findings" -type f | wc -l)
  echo "fuzz $t: ${execs:-0} executions in ${secs} s (${rate:-0}/s), corpus $units inputs, $found findings"
  if [ "$rc" -ne 0 ] || [ "$found" -gt 0 ]; then
    failed=$((failed + 1))
    echo "fuzz $t: FAILED (libFuzzer exit $rc); its report:"
    grep -A40 -E '^==[0-9]+==ERROR|check failed|runtime error|ALARM|out-of-memory' "$log" | head -80
    for f in "$findings"/*; do
      [ -f "$f" ] && echo "fuzz $t: reproduce with $build/fuzz_$t $f"
    done
  else
    passed=$((passed + 1))
  fi
done
echo "$passed $failed" >"$build/counts"
echo "fuzz: $passed ok, $failed failing"
[ "$failed" -eq 0 ]

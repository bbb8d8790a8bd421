#!/usr/bin/env bash
# Runs every fuzz target long, on demand (CI runs them 30 s each): default
# 30 minutes each, in build-fuzz, keeping the corpus the runs grow in
# build-fuzz/corpus/ so a later run starts where this one stopped. Reports
# executions, corpus size and findings per target (scripts/fuzz.sh does the
# work). Usage: bench/fuzz_long.sh [MINUTES_EACH [TARGET...]]
set -uo pipefail
cd "$(dirname "$0")/.."
mins=${1:-30}
shift 2>/dev/null
exec bash scripts/fuzz.sh $((mins * 60)) build-fuzz "$@"

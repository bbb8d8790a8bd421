#!/usr/bin/env bash
# Runs the busted specs against a build directory (default: build).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
exec busted --lua=lua5.4 --cpath="$build/?.so" \
  --lpath='scripts/lib/?.lua;scripts/lib/?/init.lua' "${@:2}"

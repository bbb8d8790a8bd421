#!/usr/bin/env bash
# Installs every Debian package Orrery needs to build, test and run VMs.
# Idempotent: apt-get install skips what is already there. Run as root (or via sudo).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pkgs=$(grep -v '^#' "$here/packages.txt" | awk 'NF {print $1}')
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
echo "install-deps: $(echo $pkgs | wc -w) packages present"

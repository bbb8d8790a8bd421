#!/usr/bin/env bash
# The package pass of CI: Orrery as a user of the Debian packages gets it.
#   1. dpkg-buildpackage -b builds the packages in a copy of the tree (it
#      writes the .debs next to that copy, never next to the checkout);
#   2. apt installs them on this machine;
#   3. with the checkout and the package build's tree hidden (a private
#      mount namespace puts empty tmpfs over both), stock lua5.4 loads the
#      module, the quickstart runs from the installed examples, and the
#      busted specs that make sense on an installed system run against it
#      (spec/install_spec.lua with ORRERY_PREFIX=/usr among them);
#   4. apt purges the packages again (also after a failure);
#   5. luarocks builds the rock into a private tree from another copy, with
#      nothing downloaded, and stock lua5.4 loads the module from there.
# Usage: scripts/package-check.sh [OUT_DIR] (default build-pkg). Prints
# "package: P ok, F failing" and writes "P F" to OUT_DIR/counts for .ci/run.
# Needs root (apt, unshare, mount).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd -P)
out=${1:-build-pkg}
rm -rf "$out"
mkdir -p "$out"
out=$(cd "$out" && pwd -P)
passed=0
failed=0
count() { # count NAME OK(0|1)
  if [ "$2" -eq 0 ]; then
    passed=$((passed + 1))
    echo "package: ok: $1"
  else
    failed=$((failed + 1))
    echo "package: FAILED: $1"
  fi
}
finish() {
  echo "$passed $failed" >"$out/counts"
  echo "package: $passed ok, $failed failing"
  [ "$failed" -eq 0 ]
  exit
}

packages=(orrery lua-orrery liborrery0 liborrery-dev orrery-guest)
version=$(dpkg-parsechangelog -S Version)
work=$(mktemp -d /tmp/orr-pkg.XXXXXX)
src="$work/orrery-$version"
copy_tree() { # copy_tree DEST: the checkout without build trees and git
  mkdir -p "$1"
  tar -C "$root" --exclude='./build*' --exclude=./.git --exclude='./obj-*' -cf - . |
    tar -C "$1" -xf -
}
cleanup() {
  DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${packages[@]}" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

# 1. Build. The guest's kernel comes from the machine's kernel cache (build-kernel.sh), the
# one the build trees use: debhelper points HOME and XDG_CACHE_HOME elsewhere while it
# builds, so the cache is named explicitly, or the package build would compile the kernel
# a second time.
export ORRERY_KERNEL_CACHE=${ORRERY_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/orrery/kernel}
copy_tree "$src"
t0=$(date +%s)
(cd "$src" && DEB_BUILD_OPTIONS="parallel=2 nocheck" dpkg-buildpackage -b -us -uc) \
  >"$out/build.log" 2>&1
rc=$?
[ "$rc" -eq 0 ] || tail -40 "$out/build.log"
count "dpkg-buildpackage -b ($(($(date +%s) - t0)) s)" "$rc"
[ "$rc" -eq 0 ] || finish
ls -l "$work"/*.deb
for p in "${packages[@]}"; do
  ls "$work/${p}_${version}_"*.deb >/dev/null 2>&1
  count "package $p built" $?
done

# 2. Install.
debs=()
for p in "${packages[@]}"; do debs+=("$work/${p}_${version}_"*.deb); done
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${debs[@]}" >"$out/apt.log" 2>&1
rc=$?
[ "$rc" -eq 0 ] || tail -20 "$out/apt.log"
count "apt-get install" "$rc"
[ "$rc" -eq 0 ] || finish

# 3. Use it, with neither tree reachable. The specs (and the one helper
# they share, which is not installed) are copied out first.
specs="$work/specs"
mkdir -p "$specs/spec" "$specs/helpers/orrery"
# The subset that makes sense on an installed system: the installed tree
# itself, the module (builder, documents, plan VMs, tasks) and the
# installed executable on the installed examples. The real-QEMU specs stay
# with the suite: the quickstart above boots the installed guest.
cp spec/install_spec.lua spec/builder_spec.lua spec/builder_traps_spec.lua \
  spec/roundtrip_spec.lua spec/vm_plan_spec.lua spec/tasks_spec.lua \
  spec/plan_cli_spec.lua spec/kubevirt_plan_spec.lua "$specs/spec/"
cp scripts/lib/orrery/testing.lua "$specs/helpers/orrery/"
cat >"$specs/.busted" <<'EOF'
-- The specs against the installed packages: Debian's default Lua paths,
-- plus the specs' own helper.
return {
  _all = { lua = "lua5.4", lpath = "helpers/?.lua", ["auto-insulate"] = true },
  default = { ROOT = { "spec" } },
}
EOF
cat >"$work/installed.sh" <<EOF
set -u
mount -t tmpfs -o size=1m,mode=0755 tmpfs "$root" || exit 90
mount -t tmpfs -o size=1m,mode=0755 tmpfs "$src" || exit 90
cd /
lua5.4 -e 'local o = require "orrery"; assert(o.default_guest()); print("lua5.4: require \"orrery\" ok, " .. o.version)'
echo "lua5.4 rc=\$?"
orrery run -q /usr/share/doc/orrery/examples/quickstart.lua
echo "quickstart rc=\$?"
cd "$specs" && env ORRERY_PREFIX=/usr ORRERY_BIN=/usr/bin/orrery \
  ORRERY_EXAMPLES=/usr/share/doc/orrery/examples \
  ORRERY_FORBIDDEN_PATHS="$root:$src" busted -o plainTerminal 2>&1 | tee "$work/busted.log"
echo "busted rc=\${PIPESTATUS[0]}"
EOF
unshare -m --propagation private bash "$work/installed.sh" 2>&1 | tee "$out/installed.log"
for step in lua5.4 quickstart; do
  rc=$(sed -n "s/^$step rc=\([0-9]*\)$/\1/p" "$out/installed.log" | tail -1)
  count "installed: $step" "${rc:-1}"
done
# Each spec counts, as in the suite.
cp "$work/busted.log" "$out/" 2>/dev/null
summary=$(grep -E '^[0-9]+ successes / [0-9]+ failures? / [0-9]+ errors?' "$out/busted.log" | tail -1)
if [ -n "$summary" ]; then
  echo "package: installed specs: $summary"
  passed=$((passed + $(echo "$summary" | awk '{print $1}')))
  failed=$((failed + $(echo "$summary" | awk '{print $4 + $7}')))
else
  count "installed: the specs ran" 1
fi

# 4. Remove.
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${packages[@]}" >"$out/purge.log" 2>&1
rc=$?
for p in "${packages[@]}"; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q installed; then rc=1; fi
done
count "apt-get purge" "$rc"

# 5. The rock, into a private tree (luarocks builds in the tree it runs in:
# a copy, so no build.luarocks is left in the checkout).
rocksrc="$work/rock-src"
copy_tree "$rocksrc"
(cd "$rocksrc" && MAKEFLAGS=-j2 luarocks --lua-version=5.4 --tree "$work/rock" make) \
  >"$out/rock.log" 2>&1
rc=$?
[ "$rc" -eq 0 ] || tail -30 "$out/rock.log"
count "luarocks make" "$rc"
if [ "$rc" -eq 0 ]; then
  (
    eval "$(luarocks --lua-version=5.4 --tree "$work/rock" path)"
    cd / && lua5.4 -e '
      local o = require "orrery"
      assert(package.searchpath("orrery", package.path):find("/rock/share/lua/5.4/orrery/init.lua", 1, true))
      local b = o.builder{ owner = "rock" }
      b:set_memory{ SizeInMB = 64 }
      assert(o.create("rock", b, { backend = "plan" }))
      -- No guest is installed now: the error says where it looked.
      local ok, err = pcall(o.default_guest)
      assert(not ok and err:find("orrery-guest", 1, true), err)
      print("rock: ok")'
  )
  count "the rock loads with stock lua5.4" $?
fi
finish

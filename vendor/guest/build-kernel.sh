#!/usr/bin/env bash
# build-kernel.sh OUTDIR     builds (or takes from the cache) the default guest's kernel
# build-kernel.sh --key      prints the cache key and exits
#
# The kernel is Debian's own source, linux-source-6.1 (/usr/src/linux-source-6.1.tar.xz),
# configured as `allnoconfig` plus the lines of kernel.config (next to this script): every
# driver the guest needs built in, no modules, nothing else. It boots in well under half the
# time of Debian's generic kernel under TCG (docs/guest.md). Writes:
#   OUTDIR/vmlinux         ELF with the PVH entry (QEMU -kernel boots it directly)
#   OUTDIR/bzImage         the same kernel as a bzImage (gzip, EFI stub), for firmware boots
#   OUTDIR/kernel.config   the full .config it was built with
#   OUTDIR/kernel.release  its release string (6.1.N-orrery)
#
# Cache: compiling takes minutes (docs/guest.md has the figures), so the result is kept in
#   ${ORRERY_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/orrery/kernel}/KEY/
# outside any build tree, and reused by every build directory and package build on the
# machine. The kernel's own build tree stays in CACHE/tree (about 1.5 GB: the unpacked
# source and the objects), so a changed kernel.config recompiles only what it changes. KEY hashes everything that decides the output: the linux-source-6.1 package
# version, kernel.config, this script, and the compiler's and linker's versions. A build
# holds a lock on the cache, so concurrent builds wait for one another instead of compiling
# twice. The three most recently used entries are kept, older ones deleted.
#
# Env: ORRERY_KERNEL_CACHE (cache directory), ORRERY_KERNEL_JOBS (make -j, default nproc),
#      ORRERY_KERNEL_SOURCE (the source tarball, default the package's).
# Host tools (Debian packages, vendor/packages.txt): linux-source-6.1, build-essential, bc,
# bison, flex, libelf-dev (objtool), xz-utils.
# Exit status non-zero, with the reason on stderr, if anything fails: build-guest.sh then
# fails too (it never swaps in another kernel silently).
set -euo pipefail

die() { printf 'build-kernel: error: %s\n' "$*" >&2; exit 1; }
step() { printf 'build-kernel: %s\n' "$*"; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self="$here/build-kernel.sh"
fragment="$here/kernel.config"
srcpkg=linux-source-6.1
tarball=${ORRERY_KERNEL_SOURCE:-/usr/src/$srcpkg.tar.xz}
cache=${ORRERY_KERNEL_CACHE:-${XDG_CACHE_HOME:-${HOME:-/nonexistent}/.cache}/orrery/kernel}

[ $# -eq 1 ] || die "usage: $0 OUTDIR | --key"

for tool in make gcc ld flex bison bc xz tar sha256sum flock dpkg-query readelf; do
  command -v "$tool" >/dev/null ||
    die "$tool not found (run vendor/install-deps.sh: it installs $srcpkg and the tools to build it)"
done
[ -f /usr/include/libelf.h ] || die "libelf.h not found (package libelf-dev, for the kernel's objtool)"
[ -f "$tarball" ] || die "$tarball not found (package $srcpkg; run vendor/install-deps.sh)"
[ -f "$fragment" ] || die "$fragment not found"

# The source's identity: the package's version when the tarball is the package's,
# else the tarball's own hash.
if [ -z "${ORRERY_KERNEL_SOURCE:-}" ]; then
  srcver=$(dpkg-query -W -f '${Version}' "$srcpkg" 2>/dev/null) ||
    die "$srcpkg is not installed (run vendor/install-deps.sh)"
else
  srcver="tarball $(sha256sum <"$tarball" | cut -d' ' -f1)"
fi
key=$( {
  printf 'source %s\n' "$srcver"
  sha256sum <"$fragment"
  sha256sum <"$self"
  gcc --version | head -n1
  ld --version | head -n1
} | sha256sum | cut -c1-16)
if [ "$1" = --key ]; then
  printf '%s\n' "$key"
  exit 0
fi

out=$(realpath -m "$1")
entry="$cache/$key"

# deliver: copy the cache entry to OUTDIR (copies, not links: the output must not change
# when the cache is pruned or cleared).
deliver() {
  mkdir -p "$out"
  local f
  for f in vmlinux bzImage kernel.config kernel.release; do
    cp "$entry/$f" "$out/$f.tmp"
    mv "$out/$f.tmp" "$out/$f"
  done
  touch "$entry"  # most recently used, for pruning
}

if [ -f "$entry/done" ]; then
  step "cached ($entry, $(cat "$entry/kernel.release"))"
  deliver
  exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
if ! flock -n 9; then
  step "waiting for another kernel build (lock $cache/.lock)"
  flock 9
fi
if [ -f "$entry/done" ]; then  # the other build made it
  step "cached ($entry, $(cat "$entry/kernel.release"))"
  deliver
  exit 0
fi

t0=$(date +%s)
# The build tree (the unpacked source and the objects) stays in the cache too, one for the
# current source version: a change to kernel.config then recompiles only what it touches.
tree="$cache/tree"
if [ "$(cat "$tree/source" 2>/dev/null)" != "$srcver" ] || [ ! -f "$tree/src/Makefile" ]; then
  step "unpacking $srcpkg $srcver into $tree"
  rm -rf "$tree"
  mkdir -p "$tree/src" "$tree/obj"
  tar -xf "$tarball" -C "$tree/src" --strip-components=1 ||
    { rm -rf "$tree"; die "cannot unpack $tarball"; }
  printf '%s\n' "$srcver" >"$tree/source"
fi
step "building $srcpkg $srcver in $tree (key $key; a first build takes minutes: docs/guest.md)"

# Run from a make (CMake's guest target), the kernel's make would inherit that make's
# jobserver and flags; it runs on its own -j instead.
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES
# Reproducible: no host name, user, date or build counter in the image.
export KBUILD_BUILD_TIMESTAMP="@0" KBUILD_BUILD_USER=orrery KBUILD_BUILD_HOST=orrery KBUILD_BUILD_VERSION=1
mk() { make -C "$tree/src" O="$tree/obj" ARCH=x86_64 "$@"; }
log="$cache/build.log"
mk -s KCONFIG_ALLCONFIG="$fragment" allnoconfig >"$log" 2>&1 ||
  { tail -n 30 "$log" >&2; die "allnoconfig with $fragment failed"; }

# Every line of the fragment must be in the result: a line Kconfig dropped (an unmet
# dependency, a renamed symbol) would be a driver silently missing from the guest.
missing=()
while IFS= read -r line; do
  case $line in '' | '#'*) continue ;; esac
  name=${line%%=*} val=${line#*=}
  if [ "$val" = n ]; then
    ! grep -q "^$name=" "$tree/obj/.config" || missing+=("$line")
  else
    grep -qxF "$line" "$tree/obj/.config" || missing+=("$line")
  fi
done <"$fragment"
[ ${#missing[@]} -eq 0 ] || die "kernel.config lines not in the final .config (unmet dependencies?): ${missing[*]}"

jobs=${ORRERY_KERNEL_JOBS:-$(nproc)}
step "make -j$jobs vmlinux bzImage"
if ! mk -j"$jobs" vmlinux bzImage >>"$log" 2>&1; then
  tail -n 40 "$log" >&2
  die "kernel build failed (log above; the whole log is $log)"
fi
readelf -n "$tree/obj/vmlinux" 2>/dev/null | grep -Eq 'Xen .*(\(0x00000012\)|PHYS32_ENTRY)' ||
  die "vmlinux has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)"

stage="$cache/$key.tmp"
rm -rf "$stage"
mkdir -p "$stage"
cp "$tree/obj/vmlinux" "$stage/vmlinux"
cp "$tree/obj/arch/x86/boot/bzImage" "$stage/bzImage"
cp "$tree/obj/.config" "$stage/kernel.config"
cp "$tree/obj/include/config/kernel.release" "$stage/kernel.release"
cp "$log" "$stage/build.log"
secs=$(($(date +%s) - t0))
printf 'source %s\njobs %s\nseconds %s\n' "$srcver" "$jobs" "$secs" >"$stage/done"
rm -rf "$entry"
mv "$stage" "$entry"

# Keep the three most recently used entries.
find "$cache" -mindepth 1 -maxdepth 1 -type d -regex '.*/[0-9a-f]\{16\}' -printf '%T@ %p\n' |
  sort -rn | tail -n +4 | cut -d' ' -f2- | while IFS= read -r old; do rm -rf "$old"; done

step "built $(cat "$entry/kernel.release") in ${secs} s → $entry"
deliver

#!/usr/bin/env bash
# build-guest.sh OUTDIR
#
# Assembles Orrery's embedded default guest from Debian 12 packages only:
#   OUTDIR/vmlinux            the kernel as an ELF with a PVH entry (QEMU -kernel boots it
#                             directly): by default built from Debian's linux-source-6.1 by
#                             build-kernel.sh with every driver the guest needs built in
#                             (cached outside the build tree); with ORRERY_GUEST_KERNEL=debian
#                             Debian's generic kernel, decompressed here (see below)
#   OUTDIR/vmlinuz            the same kernel as a bzImage (for firmware boots)
#   OUTDIR/initramfs.cpio     busybox-static + qemu-guest-agent (+ its shared libraries)
#                             (+ the virtio/SCSI/9p/ext4 modules with Debian's kernel), with a
#                             small /init; not compressed: gunzip under TCG cost ~0.2-0.3 s
#   OUTDIR/cmdline            the kernel command line to boot it with (one line)
#   OUTDIR/stamp              hash of this script's inputs; an unchanged rerun says "cached"
#   OUTDIR/manifest.txt       what went in: package versions, modules, sizes
#   OUTDIR/orrery-guest.json  the manifest by which Orrery knows this is its default guest
#
# Packages are fetched with `apt-get download` into OUTDIR/debs (reused on later runs;
# delete that directory to pick up newer Debian versions) and unpacked with `dpkg-deb -x`.
# Nothing is installed on the host and nothing but Debian's apt mirror is contacted.
# `apt-get update` runs only when `apt-get download` fails (usually: no package lists).
#
# Host tools: apt-get, apt-cache, dpkg-deb, readelf (binutils), cpio, xz, GNU grep,
# sha256sum. The host must be amd64 (the guest's static busybox is run once to list applets).
# vendor/packages.txt lists cpio; vendor/install-deps.sh installs it.
#
# Env: ORRERY_GUEST_FORCE=1 rebuilds even when the stamp matches.
#      ORRERY_GUEST_KERNEL=orrery (default) builds the kernel with build-kernel.sh; if that
#      fails, this script fails (it never falls back silently to a guest that boots twice as
#      slowly). ORRERY_GUEST_KERNEL=debian takes Debian's generic kernel package and its
#      modules instead: no compiler or kernel source needed, a slower boot (docs/guest.md).
#      build-kernel.sh's own variables (ORRERY_KERNEL_CACHE, ...) pass through.
set -euo pipefail

t_start=$(date +%s%N)
step() { printf 'build-guest: %s\n' "$*"; }
die() { printf 'build-guest: error: %s\n' "$*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 OUTDIR"
out=$(realpath -m "$1")
self=$(realpath "${BASH_SOURCE[0]}")
here=$(dirname "$self")
kernel_mode=${ORRERY_GUEST_KERNEL:-orrery}
case $kernel_mode in
  orrery | debian) ;;
  *) die "ORRERY_GUEST_KERNEL must be orrery or debian, not '$kernel_mode'" ;;
esac

# --- Which kernel flavour -------------------------------------------------------------------
# Debian ships two amd64 kernel flavours. linux-image-cloud-amd64 is smaller and boots a bit
# faster, but it is built without CONFIG_9P_FS / CONFIG_NET_9P: its package has neither
# fs/9p/9p.ko nor net/9p/9pnet_virtio.ko (checked in 6.1.0-56-cloud-amd64, 6.1.192-2), so a
# guest on it cannot mount Plan9 shares (HCS Plan9 → QEMU virtio-9p-pci). The generic
# linux-image-amd64 flavour has both as modules (and ext4, virtio_*, sd_mod, ... as modules
# too), so that is the one we use. The flavour is checked again below: the build fails if
# the chosen kernel has no 9p modules.
kernel_meta=linux-image-amd64

# Modules the guest carries, each with its dependencies (resolved from the modules' own
# `depends=` records, the same data depmod writes into modules.dep; the Debian package ships
# no modules.dep because depmod runs in its postinst). Names use the kernel's module names
# (underscores); file names may use dashes (virtio-rng.ko). None is loaded unconditionally:
# /init loads what the machine's devices ask for (their modalias, matched against the
# modules' `alias=` records, which the script writes as modules.alias), and the kernel
# (request_module: mount -t ext4/9p, crypto crc32c) or the uevent helper (a hot-added
# controller, disk, NIC, ...) load the rest when first needed. See "How /init works".
modules=(
  virtio_pci            # virtio over PCI (pulls virtio, virtio_ring, virtio_pci_*_dev)
  virtio_scsi sd_mod sr_mod   # HCS SCSI controller/disks/ISOs → virtio-scsi-pci + scsi-hd/cd
  virtio_net            # NICs (pulls net_failover, failover)
  virtio_console        # virtio-serial: the guest agent port, virtconsole
  9pnet_virtio 9p       # Plan9 shares (virtio-9p-pci)
  virtio_rng virtio_balloon virtio_mem
  virtio_pmem nd_pmem   # VPMem (virtio-pmem-pci) as /dev/pmemN (pulls libnvdimm, nd_btt)
  crc32c_generic        # ext4/jbd2 ask the crypto API for crc32c (metadata_csum)
  ext4                  # ext4 and ext2 (CONFIG_EXT4_USE_FOR_EXT2) so the guest can mkfs+mount
  button evdev          # ACPI power button → busybox acpid → poweroff (system_powerdown)
)

# Debian packages unpacked into the guest (the kernel is added below; the shared libraries
# that qemu-ga needs are found by walking the packages' Depends and the ELF NEEDED entries).
guest_pkgs=(busybox-static qemu-guest-agent)

# loglevel=4: only errors and worse reach the (slow, emulated) serial console; a normal boot
# prints none. cryptomgr.notests skips the crypto self-tests (~0.1 s under TCG).
# mitigations=off: no Spectre/Meltdown work inside this single-user test guest (~0.2 s).
# memhp_default_state=online_movable: hot-added DIMMs come online, and can be removed again.
# The rest only saves boot time (measurements in docs/guest.md):
# no_timer_check: no probing whether the 8254 timer reaches the IO-APIC (a busy host made it
#   fail and fall back, with "MP-BIOS bug" on the console).
# pcie_ports=compat: no native PCIe port services (AER, PME, pciehp) on the root ports; PCI
#   hot-plug is ACPI's (acpiphp), which this leaves alone.
# lsm=capability audit=0: no AppArmor, SELinux, TOMOYO, Landlock or audit set-up.
# noreplace-smp: a one-CPU kernel rewrites every LOCK prefix of its text for uniprocessor use;
#   under TCG each rewrite throws translated code away (0.3-0.6 s on a busy host). The
#   locked instructions stay, a negligible cost.
# ipv6.disable=1: no IPv6 (DHCP gives the guest IPv4; inet6_init was the costliest initcall).
# initcall_blacklist=: built-in set-up nothing in this guest uses: crypto_kdf108_init (a
#   self-test of a KDF, which also waits for the initramfs to be unpacked), init_kprobe_trace
#   (kprobe trace events), init_encrypted (the "encrypted" key type), slab_debugfs_init,
#   i8042_init (the PS/2 keyboard and mouse: the console is COM1).
cmdline="console=ttyS0 loglevel=4 mitigations=off memhp_default_state=online_movable"
cmdline+=" no_timer_check noreplace-smp"
# scsi_mod.scan=manual (the built kernel, whose SCSI is built in; with Debian's kernel /init
# loads scsi_mod with scan=manual itself): no scan of all 256 targets of each virtio-scsi
# controller while the kernel boots (~0.19 s under TCG). HCS disks are all on target 0
# (scsi-id=0, LUN = the attachment's), so /init scans only that target and then switches
# scanning back to sync for controllers and LUNs hot-added later.
[ "$kernel_mode" = orrery ] && cmdline+=" scsi_mod.scan=manual"
if [ "$kernel_mode" = debian ]; then
  cmdline+=" cryptomgr.notests pcie_ports=compat lsm=capability audit=0 ipv6.disable=1"
  cmdline+=" initcall_blacklist=crypto_kdf108_init,init_kprobe_trace,init_encrypted,slab_debugfs_init,i8042_init"
fi
# (build-kernel.sh's kernel has none of what the debian-only options switch off: no crypto
# self-tests, PCIe port services, LSMs, audit, IPv6, kprobes, KDF test, PS/2.)

# --- Cache check ------------------------------------------------------------------------------
# The stamp covers this script, the kernel choice and, for the built kernel, build-kernel.sh's
# cache key (source version, kernel.config, build-kernel.sh, compiler).
kernel_key=debian
if [ "$kernel_mode" = orrery ]; then
  kernel_key=$(bash "$here/build-kernel.sh" --key) || die "build-kernel.sh --key failed (see above)"
fi
stamp_val=$( { sha256sum <"$self"; printf '%s\n' "$cmdline" "$kernel_mode $kernel_key"; } | sha256sum | cut -d' ' -f1)
if [ "${ORRERY_GUEST_FORCE:-0}" != 1 ] && [ -f "$out/stamp" ] &&
   [ "$(cat "$out/stamp")" = "$stamp_val" ] &&
   [ -s "$out/vmlinuz" ] && [ -s "$out/vmlinux" ] && [ -s "$out/initramfs.cpio" ] && [ -s "$out/cmdline" ] &&
   [ -s "$out/orrery-guest.json" ]; then
  echo "build-guest: cached ($out, stamp ${stamp_val:0:12})"
  exit 0
fi

for tool in apt-get apt-cache dpkg-deb readelf cpio xz grep sha256sum find; do
  command -v "$tool" >/dev/null || die "$tool not found (run vendor/install-deps.sh; cpio and readelf come from the cpio and binutils packages)"
done

debs="$out/debs"
work="$out/work"
mkdir -p "$debs"
rm -rf "$work"
mkdir -p "$work/pkgs" "$work/root"
rm -f "$out/stamp"
root="$work/root"

# --- Fetching ---------------------------------------------------------------------------------
updated=0
apt_update_once() {
  [ "$updated" = 0 ] || return 1
  updated=1
  step "apt-get download failed; running apt-get update once"
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq; else sudo apt-get update -qq; fi
}

# deb_of PKG: path of the cached .deb for PKG (newest version if several), or nothing.
deb_of() {
  local pkg=$1 f
  f=$(find "$debs" -maxdepth 1 -name "${pkg}_*_*.deb" -printf '%f\n' 2>/dev/null | sort -V | tail -n1)
  [ -n "$f" ] && printf '%s\n' "$debs/$f"
  return 0
}

# fetch PKG: make sure OUTDIR/debs has PKG's .deb (apt-get download, never install).
fetch() {
  local pkg=$1
  if [ -n "$(deb_of "$pkg")" ]; then return 0; fi
  step "download $pkg"
  if ! (cd "$debs" && apt-get download -q "$pkg" >/dev/null 2>"$work/apt.err"); then
    apt_update_once || { cat "$work/apt.err" >&2; die "apt-get download $pkg failed"; }
    (cd "$debs" && apt-get download -q "$pkg" >/dev/null 2>"$work/apt.err") ||
      { cat "$work/apt.err" >&2; die "apt-get download $pkg failed"; }
  fi
  [ -n "$(deb_of "$pkg")" ] || die "apt-get download $pkg left no .deb in $debs"
}

# unpack PKG: dpkg-deb -x into its own directory under work/pkgs; prints that directory.
unpack() {
  local pkg=$1 d="$work/pkgs/$1"
  if [ ! -d "$d" ]; then
    mkdir -p "$d"
    dpkg-deb -x "$(deb_of "$pkg")" "$d"
  fi
  printf '%s\n' "$d"
}

# deps_of PKG: names in Depends + Pre-Depends (first alternative, no versions/arch quals).
deps_of() {
  dpkg-deb -f "$(deb_of "$1")" Depends Pre-Depends 2>/dev/null |
    sed -e 's/^[A-Za-z-]*: //' | tr ',' '\n' |
    sed -e 's/|.*//' -e 's/(.*)//' -e 's/:any//' -e 's/[[:space:]]//g' | awk 'NF' | sort -u
}

pkgver() { dpkg-deb -f "$(deb_of "$1")" Version; }

# --- Kernel -----------------------------------------------------------------------------------
order=()  # the modules in the initramfs (none with the built kernel: everything is built in)
if [ "$kernel_mode" = orrery ]; then
  step "kernel: build-kernel.sh (Debian's linux-source-6.1, drivers built in)"
  bash "$here/build-kernel.sh" "$work/kernel" ||
    die "the guest kernel did not build (above). Fix that, or build the slower guest on Debian's kernel package with ORRERY_GUEST_KERNEL=debian"
  kver=$(cat "$work/kernel/kernel.release")
  kernel_desc="$kver built from linux-source-6.1 $(dpkg-query -W -f '${Version}' linux-source-6.1 2>/dev/null || echo '(tarball)'), key $kernel_key"
else
step "resolve kernel package ($kernel_meta)"
kpkg=$(apt-cache depends "$kernel_meta" 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
if [ -z "$kpkg" ]; then
  # No package lists: reuse a cached kernel if there is one, else update the lists.
  kpkg=$(find "$debs" -maxdepth 1 -name 'linux-image-[0-9]*-amd64_*.deb' -printf '%f\n' 2>/dev/null |
         grep -v -- '-cloud-amd64_' | sort -V | tail -n1 | cut -d_ -f1)
  if [ -z "$kpkg" ]; then
    apt_update_once || true
    kpkg=$(apt-cache depends "$kernel_meta" 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
  fi
fi
[ -n "$kpkg" ] || die "cannot resolve $kernel_meta to a kernel package"
case $kpkg in *-cloud-amd64) die "$kpkg is the cloud flavour, which has no 9p" ;; esac
fetch "$kpkg"
step "unpack $kpkg $(pkgver "$kpkg")"
kdir=$(unpack "$kpkg")
kver=${kpkg#linux-image-}
moddir="$kdir/lib/modules/$kver"
[ -f "$kdir/boot/vmlinuz-$kver" ] || die "no /boot/vmlinuz-$kver in $kpkg"
for need in fs/9p/9p.ko net/9p/9pnet_virtio.ko; do
  [ -n "$(find "$moddir/kernel/$need" "$moddir/kernel/$need.xz" 2>/dev/null | head -n1)" ] ||
    die "$kpkg has no $need: this kernel flavour cannot mount 9p shares"
done

# --- Kernel modules ---------------------------------------------------------------------------
step "resolve module dependencies"
declare -A modpath=() moddeps=() seen=()
while IFS= read -r f; do
  b=${f##*/}; b=${b%.xz}; b=${b%.ko}; b=${b//-/_}
  modpath[$b]=$f
done < <(cd "$moddir" && find kernel -name '*.ko' -o -name '*.ko.xz')
builtin_mods=" $(sed -e 's#.*/##' -e 's/\.ko$//' -e 's/-/_/g' "$moddir/modules.builtin" | tr '\n' ' ') "

modinfo() {  # modinfo FILE KEY: the KEY= records of the module's .modinfo section, one a line
  local f="$moddir/$1"
  case $f in
    *.xz) xz -dc "$f" ;;
    *) cat "$f" ;;
  esac | tr '\0' '\n' | { grep -a "^$2=" || true; } | cut -d= -f2-
}
modinfo_depends() { modinfo "$1" depends | head -n1 | tr ',' ' '; }

visit() {
  local m=${1//-/_} d
  [ -z "${seen[$m]:-}" ] || return 0
  seen[$m]=1
  if [ -z "${modpath[$m]:-}" ]; then
    case $builtin_mods in *" $m "*) return 0 ;; esac
    die "module $m is neither in $kpkg nor built in"
  fi
  moddeps[$m]=$(modinfo_depends "${modpath[$m]}")
  for d in ${moddeps[$m]}; do visit "$d"; done
  order+=("$m")
}
for m in "${modules[@]}"; do visit "$m"; done
closure_of() {  # marks in need[] every module $1 needs (loadable ones, not built in)
  local d
  for d in ${moddeps[$1]}; do
    d=${d//-/_}
    [ -n "${modpath[$d]:-}" ] && [ -z "${need[$d]:-}" ] || continue
    need[$d]=1
    closure_of "$d"
  done
}

mkdir -p "$root/lib/modules/$kver"
: >"$root/lib/modules/$kver/modules.dep"
for m in "${order[@]}"; do
  src=${modpath[$m]}
  dst=${src%.xz}
  mkdir -p "$root/lib/modules/$kver/$(dirname "$dst")"
  case $src in
    *.xz) xz -dc "$moddir/$src" >"$root/lib/modules/$kver/$dst" ;;  # busybox insmod can't do xz
    *) cp "$moddir/$src" "$root/lib/modules/$kver/$dst" ;;
  esac
  # modules.dep lists every module m needs, directly or not, as depmod does: modprobe loads
  # them from the last to the first, so a module comes before the ones it needs.
  declare -A need=()
  closure_of "$m"
  deps=""
  for ((i = ${#order[@]} - 1; i >= 0; i--)); do
    d=${order[$i]}
    [ "$d" != "$m" ] && [ -n "${need[$d]:-}" ] && deps+=" ${modpath[$d]%.xz}"
  done
  unset need
  printf '%s:%s\n' "$dst" "$deps" >>"$root/lib/modules/$kver/modules.dep"
  # modules.alias as depmod writes it: "alias PATTERN MODULE" (busybox modprobe matches the
  # patterns against a modalias or a request_module name such as fs-ext4).
  modinfo "$src" alias | sed "s/^/alias /; s/\$/ $m/" >>"$root/lib/modules/$kver/modules.alias"
done
cp "$moddir/modules.builtin" "$root/lib/modules/$kver/"
for a in 'pci:v00001AF4' 'virtio:d00000003v' 'fs-ext4' 'fs-9p' 'crypto-crc32c' 'scsi:t-0x00' 'acpi\*:LNXPWRBN:'; do
  grep -q "^alias $a" "$root/lib/modules/$kver/modules.alias" ||
    die "no module alias $a: the guest could not load its driver on demand"
done
step "modules (${#order[@]}, dependencies first): ${order[*]}"

kernel_desc="$kpkg $(pkgver "$kpkg")"
fi

# --- Userland packages and the libraries qemu-ga needs ---------------------------------------
# Walk Depends/Pre-Depends from the guest packages (downloading each), unpack them all into
# a staging area, then copy only the shared objects that the ELF NEEDED entries (followed
# recursively from qemu-ga) actually name.
step "fetch guest packages and their dependency closure"
declare -A pkg_seen=()
queue=("${guest_pkgs[@]}")
closure=()
while [ ${#queue[@]} -gt 0 ]; do
  p=${queue[0]}; queue=("${queue[@]:1}")
  [ -z "${pkg_seen[$p]:-}" ] || continue
  pkg_seen[$p]=1
  fetch "$p"
  closure+=("$p")
  [ ${#closure[@]} -le 60 ] || die "dependency closure is unexpectedly large (${closure[*]})"
  # busybox-static needs nothing. Otherwise follow only library packages (lib*, zlib1g):
  # qemu-guest-agent also depends on init-system-helpers, which pulls perl and dpkg, and
  # libgcc-s1 on gcc-12-base (docs only). A library that is really missing fails the
  # NEEDED walk below, loudly.
  [ "$p" = busybox-static ] && continue
  while IFS= read -r d; do
    case $d in lib*|zlib1g) queue+=("$d") ;; esac
  done < <(deps_of "$p")
done
stage="$work/stage"
mkdir -p "$stage"
for p in "${closure[@]}"; do
  dpkg-deb -x "$(deb_of "$p")" "$stage"
done
step "unpacked ${#closure[@]} packages: ${closure[*]}"

libdirs=(lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu lib64 lib usr/lib)
declare -A lib_done=()
find_lib() {
  local n=$1 d
  for d in "${libdirs[@]}"; do
    if [ -e "$stage/$d/$n" ]; then printf '%s\n' "$stage/$d/$n"; return 0; fi
  done
  return 1
}
needed_of() { readelf -d "$1" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
copy_libs_for() {
  local elf=$1 n src
  for n in $(needed_of "$elf"); do
    [ -z "${lib_done[$n]:-}" ] || continue
    lib_done[$n]=1
    src=$(find_lib "$n") || die "shared library $n (needed by ${elf#"$stage"/}) not found in the unpacked packages"
    install -D -m 0755 "$(realpath "$src")" "$root/lib/x86_64-linux-gnu/$n"
    copy_libs_for "$src"
  done
}
qga="$stage/usr/sbin/qemu-ga"
[ -x "$qga" ] || die "no usr/sbin/qemu-ga in qemu-guest-agent"
install -D -m 0755 "$qga" "$root/usr/sbin/qemu-ga"
copy_libs_for "$qga"
interp=$(readelf -l "$qga" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
[ -n "$interp" ] || die "cannot read qemu-ga's ELF interpreter"
src=$(find_lib "${interp##*/}") || die "no ${interp##*/} in libc6"
install -D -m 0755 "$(realpath "$src")" "$root/lib/x86_64-linux-gnu/${interp##*/}"
mkdir -p "$root$(dirname "$interp")"
[ "$interp" = "/lib/x86_64-linux-gnu/${interp##*/}" ] ||
  ln -sf "/lib/x86_64-linux-gnu/${interp##*/}" "$root$interp"
step "qemu-ga $(pkgver qemu-guest-agent) with ${#lib_done[@]} libraries: ${!lib_done[*]}"

# --- busybox and the file tree ----------------------------------------------------------------
step "busybox $(pkgver busybox-static) and applet links"
install -D -m 0755 "$stage/bin/busybox" "$root/bin/busybox"
mkdir -p "$root"/{sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,tmp,root,mnt,var,etc/acpi/PWRF}
ln -s ../run "$root/var/run"
ln -s ../tmp "$root/var/tmp"
for a in $("$root/bin/busybox" --list-full); do
  [ -e "$root/$a" ] || ln -s /bin/busybox "$root/$a"
done
chmod 1777 "$root/tmp"

wr() {  # wr MODE PATH: write stdin to PATH inside the guest root
  install -D -m "$1" /dev/stdin "$root$2"
}

# Names busybox lacks as applets (Debian's build has mke2fs but no mkfs.ext2 link, and no lspci).
printf '#!/bin/sh\nexec /bin/busybox mke2fs "$@"\n' | wr 0755 /sbin/mkfs.ext2
cat <<'EOF' | wr 0755 /usr/bin/lspci
#!/bin/sh
# Minimal lspci from sysfs (busybox-static in Debian 12 has no lspci applet).
# Prints "BB:DD.F CCCC: VVVV:DDDD" like `lspci -n`; -v adds the driver.
v=0; [ "$1" = -v ] && v=1
for d in /sys/bus/pci/devices/*; do
  [ -e "$d" ] || continue
  a=${d##*/}; c=$(cat "$d/class"); c=${c#0x}
  ven=$(cat "$d/vendor"); dev=$(cat "$d/device")
  line="${a#0000:} ${c%??}: ${ven#0x}:${dev#0x}"
  if [ $v = 1 ] && [ -e "$d/driver" ]; then
    drv=$(readlink "$d/driver"); line="$line driver=${drv##*/}"
  fi
  echo "$line"
done
EOF

printf 'root:x:0:0:root:/root:/bin/sh\n' | wr 0644 /etc/passwd
printf 'root:x:0:\n' | wr 0644 /etc/group
printf '127.0.0.1 localhost\n::1 localhost\n' | wr 0644 /etc/hosts
printf 'orrery\n' | wr 0644 /etc/hostname
: | wr 0644 /etc/resolv.conf
printf '/bin/sh\n' | wr 0644 /etc/shells

# qemu-ga's guest-shutdown runs `/sbin/shutdown -h -P|-H|-r +0 MSG`; busybox has no shutdown.
cat <<'EOF' | wr 0755 /sbin/shutdown
#!/bin/sh
act=poweroff
for a in "$@"; do case $a in -r) act=reboot ;; -H) act=halt ;; -P) act=poweroff ;; esac; done
exec /bin/busybox $act
EOF

# Run by init before it stops everything: unmount disks and shares, flush.
cat <<'EOF' | wr 0755 /sbin/orrery-shutdown
#!/bin/sh
sync
awk '$3 ~ /^(ext[234]|9p|vfat|msdos|iso9660)$/ {print $2}' /proc/mounts | sort -r |
  while read -r m; do umount "$m" 2>/dev/null || umount -r "$m" 2>/dev/null; done
sync
exit 0
EOF

# ACPI power button (QMP system_powerdown) → busybox acpid → this script.
printf '#!/bin/sh\nexec /bin/busybox poweroff\n' | wr 0755 /etc/acpi/PWRF/00000080

# udhcpc event script: configure the lease.
cat <<'EOF' | wr 0755 /usr/share/udhcpc/default.script
#!/bin/sh
case $1 in
  deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast $broadcast} dev "$interface"
    if [ -n "$router" ]; then
      while ip route del default dev "$interface" 2>/dev/null; do :; done
      for r in $router; do ip route add default via "$r" dev "$interface" && break; done
    fi
    : >/etc/resolv.conf
    [ -n "$domain" ] && echo "search $domain" >>/etc/resolv.conf
    for s in $dns; do echo "nameserver $s" >>/etc/resolv.conf; done
    echo "$ip" >"/run/orrery/net-$interface"
    ;;
esac
exit 0
EOF

# orrery-net IFACE: bring a NIC up and ask for a DHCP lease in the background.
cat <<'EOF' | wr 0755 /sbin/orrery-net
#!/bin/sh
i=$1
ip link set "$i" up 2>/dev/null || exit 0
# -t 3 -T 1: three DISCOVERs a second apart; -b: then keep trying in the background.
exec udhcpc -i "$i" -s /usr/share/udhcpc/default.script -t 3 -T 1 -A 5 -b -S \
  -p "/run/orrery/udhcpc-$i.pid" -x hostname:"$(hostname)" >/dev/null 2>&1
EOF

# vports: /dev/virtio-ports/NAME → /dev/vportXpY for every named virtio-serial port
# (what udev's 60-qemu-guest-agent/50-udev-default rules do on a full distribution). A shell
# function that /init calls in its wait for the agent port, and /sbin/orrery-vports (the
# uevent helper, orrery-qga) runs. It forks only when a link has to change: under TCG every
# fork of a subshell ($(cat ...), $(readlink ...)) costs milliseconds, and /init runs it
# in a loop while the kernel learns the port names.
cat <<'EOF' | wr 0644 /lib/orrery/vports.sh
vports() {
  [ -d /dev/virtio-ports ] || mkdir -p /dev/virtio-ports
  for p in /sys/class/virtio-ports/*; do
    [ -e "$p/name" ] && read -r n <"$p/name" 2>/dev/null && [ -n "$n" ] || continue
    v=${p##*/}
    [ -e "/dev/$v" ] || continue
    [ "/dev/virtio-ports/$n" -ef "/dev/$v" ] || ln -sfn "../$v" "/dev/virtio-ports/$n"
  done
  # A port unplugged (a mapped pipe removed): its link goes with it.
  for l in /dev/virtio-ports/*; do
    [ -L "$l" ] && [ ! -e "$l" ] && rm -f "$l"
  done
  return 0
}
EOF
printf '#!/bin/sh\n. /lib/orrery/vports.sh\nvports\n' | wr 0755 /sbin/orrery-vports

# uevent helper (run by busybox `uevent` for each kernel uevent once boot is done): devtmpfs
# makes the device nodes; this adds what udev would: the driver module a new device asks
# for, virtio port names, onlining hot-added CPUs, DHCP on hot-added NICs. Hot-added memory
# is onlined by memhp_default_state.
cat <<'EOF' | wr 0755 /sbin/orrery-hotplug
#!/bin/sh
# The driver a new device asks for (a hot-added controller, disk, NIC, rng, ...).
# (A kernel without modules has no /proc/sys/kernel/modprobe: its drivers are built in.)
[ "$ACTION" = add ] && [ -n "$MODALIAS" ] && [ -e /proc/sys/kernel/modprobe ] && modprobe -q "$MODALIAS"
case "$SUBSYSTEM:$ACTION" in
  virtio-ports:add|virtio-ports:change|virtio-ports:remove) /sbin/orrery-vports ;;
  cpu:add) [ -w "/sys$DEVPATH/online" ] && echo 1 >"/sys$DEVPATH/online" ;;
  net:add) [ "$INTERFACE" != lo ] && /sbin/orrery-net "$INTERFACE" ;;
esac
exit 0
EOF

# The guest agent, respawned by init. Prints the ready marker the first time it starts.
cat <<'EOF' | wr 0755 /sbin/orrery-qga
#!/bin/sh
port=/dev/virtio-ports/org.qemu.guest_agent.0
while [ ! -e "$port" ]; do sleep 1; /sbin/orrery-vports; done
if [ ! -e /run/orrery/ready ]; then
  : >/run/orrery/ready
  read -r up _ </proc/uptime
  echo "agent $up" >>/run/orrery/boot-times
  echo "orrery-guest: ready" >/dev/console
fi
exec /usr/sbin/qemu-ga -m virtio-serial -p "$port" -l /run/qemu-ga.log -t /run
EOF

# The console shell, respawned by init once the ready marker is out (so the prompt never
# lands in the middle of the marker line).
cat <<'EOF' | wr 0755 /sbin/orrery-console
#!/bin/sh
n=0
while [ ! -e /run/orrery/ready ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done
# No setsid here: busybox init already made us a session leader, and busybox setsid would
# fork and exit, which init takes for the shell ending and respawns it.
exec cttyhack /bin/sh -l
EOF

printf 'export PATH=/sbin:/usr/sbin:/bin:/usr/bin\nexport PS1="\\h:\\w# "\n' | wr 0644 /etc/profile

cat <<'EOF' | wr 0644 /etc/inittab
# busybox init: started by /init once the system is set up.
::respawn:/sbin/orrery-qga
::respawn:/sbin/orrery-console
::ctrlaltdel:/bin/busybox reboot
::shutdown:/sbin/orrery-shutdown
EOF

cat <<'EOF' | wr 0755 /init
#!/bin/sh
# Orrery default guest: PID 1 until the system is set up, then exec busybox init.
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
mount -t proc proc /proc
read -r t_init _ </proc/uptime
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mkdir -p /run/orrery
exec </dev/console >/dev/console 2>&1
debug= host=orrery
read -r cmdline </proc/cmdline
for a in $cmdline; do
  case $a in
    orrery.debug=1) debug=1 ;;
    orrery.hostname=*) host=${a#orrery.hostname=} ;;
  esac
done
# mark NAME: "NAME UPTIME" in /run/orrery/boot-times (where the boot went, for
# bench/guest_bench.lua and docs/guest.md); with orrery.debug=1 on the console too.
mark() {
  read -r up _ </proc/uptime
  echo "$1 $up" >>/run/orrery/boot-times
  [ -z "$debug" ] || echo "orrery-guest: [$up] $1"
}
echo "init $t_init" >/run/orrery/boot-times
[ -z "$debug" ] || echo "orrery-guest: [$t_init] init started"

# Modules by modalias, as udev's coldplug does: first what the PCI, ACPI and platform
# devices ask for (virtio_pci, button), then what the virtio devices virtio_pci created and
# the input devices ask for (virtio_scsi, virtio_console, virtio_balloon, evdev, ...).
# Filesystems and everything hot-plugged later come on demand (request_module, uevents).
# No autoloading while this runs: each request_module would fork a usermode helper, which
# is slow under TCG. A kernel without modules (the default, build-kernel.sh's) has all its
# drivers bound before /init runs, and no /proc/sys/kernel/modprobe: nothing to do.
read -r kver </proc/sys/kernel/osrelease
modular=
if [ -e /proc/sys/kernel/modprobe ] && [ -e "/lib/modules/$kver/modules.dep" ]; then
  modular=1
  echo >/proc/sys/kernel/modprobe
  modprobe -qa $(cat /sys/bus/*/devices/*/modalias 2>/dev/null)
  # A virtio-scsi controller (virtio device 8): scsi_mod with scan=manual, as the built
  # kernel gets it from the command line (see the SCSI scan below).
  grep -qsx 0x0008 /sys/bus/virtio/devices/*/device && modprobe -q scsi_mod scan=manual
  modprobe -qa $(cat /sys/bus/virtio/devices/*/modalias /sys/class/input/*/modalias 2>/dev/null)
  echo /sbin/modprobe >/proc/sys/kernel/modprobe
fi
# SCSI: the kernel did not scan the controllers' 256 targets each (scsi_mod.scan=manual,
# ~0.19 s under TCG); every HCS disk is on target 0 (scsi-id=0), so scan just that one, then
# switch back to sync scans for controllers and LUN 0s hot-added later.
if read -r scan </sys/module/scsi_mod/parameters/scan 2>/dev/null && [ "$scan" = manual ]; then
  for h in /sys/class/scsi_host/host*/scan; do [ -e "$h" ] && echo "0 0 -" >"$h"; done
  echo sync >/sys/module/scsi_mod/parameters/scan
fi
mark modules

hostname "$host"; echo "$host" >/etc/hostname
ip link set lo up

# NICs: DHCP in the background (QEMU user networking answers at once with 10.0.2.15);
# the ready marker waits for the leases below, but at most ~1 s.
nics=
for n in /sys/class/net/*; do
  i=${n##*/}; [ "$i" = lo ] && continue
  nics="$nics $i"
  /sbin/orrery-net "$i" &
done

# Guest agent port: with a virtio console device present, wait (at most ~3 s) until the
# kernel has learned the port names from QEMU, then make /dev/virtio-ports/* links.
. /lib/orrery/vports.sh
for d in /sys/bus/virtio/devices/*/device; do
  [ -e "$d" ] && read -r id <"$d" || continue
  [ "$id" = 0x0003 ] || continue
  n=0
  while [ $n -lt 600 ]; do
    vports
    [ -e /dev/virtio-ports/org.qemu.guest_agent.0 ] && break
    sleep 0.005; n=$((n+1))
  done
  break
done
mark ports
n=0
for i in $nics; do
  while [ ! -e "/run/orrery/net-$i" ] && [ $n -lt 50 ]; do sleep 0.02; n=$((n+1)); done
done
mark network
# Debian's kernel has no CONFIG_UEVENT_HELPER (/proc/sys/kernel/hotplug), so uevents
# come from netlink through busybox `uevent`.
uevent /sbin/orrery-hotplug </dev/null >/dev/null 2>&1 &
vports
# Coldplug once more, now that the helper listens: a disk the SCSI scan found, or a device
# hot-added, after the passes above (their uevents came before anyone listened).
[ -z "$modular" ] || modprobe -qa $(cat /sys/bus/*/devices/*/modalias /sys/class/input/*/modalias 2>/dev/null)
acpid -c /etc/acpi -l /run/acpid.log -p /run/acpid.pid 2>/dev/null

read -r up _ </proc/uptime
echo
ip4=
for f in /run/orrery/net-*; do [ -e "$f" ] && read -r a <"$f" && ip4="$ip4${ip4:+ }$a"; done
echo "orrery-guest: up ${up}s, kernel $kver, agent $(readlink /dev/virtio-ports/org.qemu.guest_agent.0 2>/dev/null || echo none), ipv4 ${ip4:-none}"
if [ ! -e /dev/virtio-ports/org.qemu.guest_agent.0 ]; then
  : >/run/orrery/ready
  echo "orrery-guest: ready"
fi
exec /bin/busybox init
EOF

# --- Kernel, initramfs, cmdline ---------------------------------------------------------------
if [ "$kernel_mode" = orrery ]; then
  step "write vmlinux and vmlinuz ($kver)"
  install -m 0644 "$work/kernel/vmlinux" "$out/vmlinux.tmp"
  install -m 0644 "$work/kernel/bzImage" "$out/vmlinuz.tmp"
  install -m 0644 "$work/kernel/kernel.config" "$out/kernel.config"
else
step "write vmlinuz ($kpkg)"
install -m 0644 "$kdir/boot/vmlinuz-$kver" "$out/vmlinuz.tmp"
rm -f "$out/kernel.config"

# vmlinux: the same kernel, decompressed here on the host. Debian's bzImage carries an
# xz-compressed ELF; its own decompressor needs ~2.4 s under TCG before the kernel prints
# its first line. The ELF has a PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY, CONFIG_PVH=y),
# and QEMU's -kernel boots such an ELF directly, so booting vmlinux skips that step.
step "write vmlinux (decompressed ELF with PVH entry, for a faster boot under TCG)"
xz_off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$out/vmlinuz.tmp" | head -n1 | cut -d: -f1 || true)
[ -n "$xz_off" ] || die "no xz payload in vmlinuz-$kver (is it still CONFIG_KERNEL_XZ?)"
# (tail gets SIGPIPE when xz stops at the end of the stream: that is expected.)
{ tail -c +$((xz_off + 1)) "$out/vmlinuz.tmp" || true; } | xz -dc --single-stream >"$out/vmlinux.tmp" ||
  die "cannot decompress the vmlinux payload"
readelf -n "$out/vmlinux.tmp" 2>/dev/null | grep -Eq 'Xen .*(\(0x00000012\)|PHYS32_ENTRY)' ||
  die "vmlinux has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)"
fi

# Not compressed: the kernel unpacks a gzip'ed initramfs at ~50 MB/s under TCG (0.2-0.3 s
# for this one), an uncompressed one is only copied; QEMU loads either in milliseconds.
step "write initramfs.cpio"
find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
  cpio --quiet -o -H newc -R 0:0 --reproducible) >"$out/initramfs.cpio.tmp"
printf '%s\n' "$cmdline" >"$out/cmdline.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/vmlinux.tmp" "$out/vmlinux"
mv "$out/initramfs.cpio.tmp" "$out/initramfs.cpio"
rm -f "$out/initramfs.cpio.gz"  # what builds before this one wrote
mv "$out/cmdline.tmp" "$out/cmdline"

{
  echo "kernel: $kernel_desc"
  for p in "${closure[@]}"; do echo "package: $p $(pkgver "$p")"; done
  echo "modules: ${order[*]}"
  echo "libraries: $(printf '%s\n' "${!lib_done[@]}" | sort | tr '\n' ' ')"
  echo "cmdline: $cmdline"
  echo "vmlinuz: $(stat -c %s "$out/vmlinuz") bytes"
  echo "vmlinux: $(stat -c %s "$out/vmlinux") bytes"
  echo "initramfs.cpio: $(stat -c %s "$out/initramfs.cpio") bytes"
} >"$out/manifest.txt"

# orrery-guest.json: what makes this directory the default guest, wherever it is installed
# (engine/include/orrery/guest_image.h reads it). The engine gives a VM booting the kernel
# named here its guest agent port; orrery.default_guest() boots it with this cmdline.
json_str() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }
cat >"$out/orrery-guest.json.tmp" <<EOF
{
  "orrery_guest": 1,
  "kernel": "vmlinux",
  "bzimage": "vmlinuz",
  "initrd": "initramfs.cpio",
  "cmdline": $(json_str "$cmdline"),
  "agent": "org.qemu.guest_agent.0",
  "ready_line": "orrery-guest: ready",
  "kernel_release": $(json_str "$kver")
}
EOF
mv "$out/orrery-guest.json.tmp" "$out/orrery-guest.json"
rm -rf "$work"
printf '%s\n' "$stamp_val" >"$out/stamp"

t_end=$(date +%s%N)
step "vmlinuz $(stat -c %s "$out/vmlinuz") bytes, initramfs.cpio $(stat -c %s "$out/initramfs.cpio") bytes"
step "done in $(( (t_end - t_start) / 1000000 )) ms → $out"

/*
** The accelerator verdict behind accel = "auto". On some hosts /dev/kvm is
** there and QEMU accepts -accel kvm, yet Linux guests hang in early boot,
** so KVM is trusted only after the default guest has really booted under
** it. The probe does that once and caches the verdict; `orrery doctor`
** shows it and `orrery doctor --refresh` probes again.
**
** The cache file ($XDG_CACHE_HOME/orrery/kvm-verdict, else
** ~/.cache/orrery/kvm-verdict) starts with the verdict word, "kvm" or
** "tcg", on a line of its own (what the first version wrote and read);
** "key value" lines follow: qemu_version, qemu_path, qemu_mtime, kernel,
** date and reason. A verdict is stale once the host kernel or the QEMU
** binary it was taken with has changed.
*/
#ifndef ORRERY_ACCEL_H
#define ORRERY_ACCEL_H

#include <stdint.h>

#include "orrery/error.h"

typedef struct {
  char verdict[8];       /* "kvm" or "tcg" */
  char qemu_version[64]; /* "7.2.22" */
  char qemu_path[256];   /* the binary probed */
  long long qemu_mtime;  /* its modification time, seconds */
  char kernel[128];      /* the host's uname -r */
  char date[32];         /* when, UTC, ISO 8601 */
  char reason[256];      /* "the guest was ready in 1.9 s", "timed out ..." */
} orr_kvm_verdict;

typedef struct {
  const char *qemu_binary; /* NULL: qemu-system-x86_64 from PATH */
  const char *guest_dir;   /* NULL: the default guest */
  uint64_t timeout_ms;     /* 0: 15 s */
  int write_cache;         /* store the verdict */
  /* Called about every 100 ms while the guest boots (may be NULL): for a
  ** spinner. */
  void (*tick)(void *arg, uint64_t elapsed_ms);
  void *arg;
} orr_kvm_probe_options;

/* Where the verdict is cached (empty when neither XDG_CACHE_HOME nor HOME
** is set). */
ORR_API void orr_kvm_verdict_path(char *buf, size_t size);

/*
** Reads the cached verdict into v. Returns 0, ORR_ENOENT when there is
** none, or ORR_ESTATE when there is one but the kernel or the QEMU binary
** changed since (v is filled either way, for display).
*/
ORR_API int orr_kvm_verdict_read(orr_kvm_verdict *v);

/*
** Boots the default guest with -accel kvm -cpu host and waits (bounded) for
** its "orrery-guest: ready" line on the serial console: "kvm" if it comes,
** "tcg" otherwise (also when /dev/kvm is not usable; nothing is booted
** then). Blocks the caller: it runs QEMU on a private loop. Returns 0 with
** *v filled (and cached when asked), or an error when no probe could run
** (no QEMU binary, no default guest); those are never cached.
*/
ORR_API int orr_kvm_probe(const orr_kvm_probe_options *o, orr_kvm_verdict *v,
                          orr_error *e);

/* QEMU's version ("7.2.22") from `BINARY --version`; 0 or an error. */
ORR_API int orr_qemu_version(const char *binary, char *buf, size_t size,
                             orr_error *e);

/* The binary's absolute path through PATH (binary may be a path); 0 or
** ORR_ENOENT. */
ORR_API int orr_find_program(const char *binary, char *buf, size_t size);

#endif

/*
** The QEMU Landlock ruleset (landlock.h). Debian 12's kernel headers stop
** at Landlock ABI 2, so the later flags and the grown ruleset attribute
** are spelled out here; the kernel tells which ABI it has, and only what
** it knows is asked for.
*/
#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "landlock.h"

#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14) /* ABI 3 */
#endif
#define ORR_LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0) /* ABI 6 */
#define ORR_LANDLOCK_SCOPE_SIGNAL (1ULL << 1)               /* ABI 6 */

/* struct landlock_ruleset_attr as of ABI 6. */
typedef struct {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;
  uint64_t scoped;
} ruleset_attr;

/* Device nodes QEMU opens read-write when it needs them. */
static const char *const devices[] = {
    "/dev/kvm",         "/dev/null",      "/dev/zero",
    "/dev/full",        "/dev/urandom",   "/dev/random",
    "/dev/vhost-vsock", "/dev/vhost-net", "/dev/net/tun",
};

static int add_rule(int ruleset, int fd, uint64_t access) {
  struct landlock_path_beneath_attr pb;
  memset(&pb, 0, sizeof pb);
  pb.allowed_access = access;
  pb.parent_fd = fd;
  return (int)syscall(SYS_landlock_add_rule, ruleset,
                      LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
}

static int fail(int ruleset, const char *what, orr_error *e) {
  int err = errno;
  close(ruleset);
  return orr_error_set(e, ORR_EIO, "landlock: %s: %s", what, strerror(err));
}

int orr__landlock_qemu(const char *run_dir, const orr_hostres *hr, int *ruleset,
                       int *abi, orr_error *e) {
  uint64_t handled, file_rights;
  ruleset_attr attr;
  const orr_hr_write *writes;
  const int *fds;
  size_t n;
  int v, fd;

  *ruleset = -1;
  *abi = 0;
  v = (int)syscall(SYS_landlock_create_ruleset, NULL, 0,
                   LANDLOCK_CREATE_RULESET_VERSION);
  if (v < 1)
    return 0; /* ENOSYS, EOPNOTSUPP: no Landlock here */
  handled = LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR |
            LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_CHAR |
            LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
            LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO |
            LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SYM;
  if (v >= 2)
    handled |= LANDLOCK_ACCESS_FS_REFER;
  if (v >= 3)
    handled |= LANDLOCK_ACCESS_FS_TRUNCATE;
  file_rights =
      handled & (LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_TRUNCATE);
  memset(&attr, 0, sizeof attr);
  attr.handled_access_fs = handled;
  if (v >= 6)
    attr.scoped =
        ORR_LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | ORR_LANDLOCK_SCOPE_SIGNAL;
  *ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr,
                          v >= 6 ? sizeof attr : sizeof(uint64_t), 0);
  if (*ruleset < 0)
    return orr_error_set(e, ORR_EIO, "landlock: create_ruleset: %s",
                         strerror(errno));
  fcntl(*ruleset, F_SETFD, FD_CLOEXEC);
  /* Its runtime directory: sockets, pidfile, UEFI variables. */
  if ((fd = open(run_dir, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0 ||
      add_rule(*ruleset, fd, handled) != 0) {
    if (fd >= 0)
      close(fd);
    return fail(*ruleset, run_dir, e);
  }
  close(fd);
  /* What it was handed to write through a path (/proc/self/fd/N). */
  fds = orr__hostres_fds(hr, &n);
  writes = orr__hostres_writes(hr);
  for (size_t i = 0; i < n; i++) {
    if (fds[i] < 0 || writes[i] == ORR_HR_READ)
      continue;
    if (add_rule(*ruleset, fds[i],
                 writes[i] == ORR_HR_WRITE_TREE ? handled : file_rights) != 0)
      return fail(*ruleset, "a writable file or share", e);
  }
  for (size_t i = 0; i < sizeof devices / sizeof *devices; i++) {
    if ((fd = open(devices[i], O_PATH | O_CLOEXEC)) < 0)
      continue; /* absent here */
    if (add_rule(*ruleset, fd, LANDLOCK_ACCESS_FS_WRITE_FILE) != 0) {
      close(fd);
      return fail(*ruleset, devices[i], e);
    }
    close(fd);
  }
  *abi = v;
  return 0;
}

/*
** The policy's host primitives (policy.c) for the engine's own use: every
** file, directory and socket a confined engine hands to QEMU is opened here,
** and judged on what was opened. Unconfined (p NULL) they open the same
** objects without the allowed-directory rule, so both modes share one path.
*/
#ifndef ORR_POLICY_HOST_H
#define ORR_POLICY_HOST_H

#include <stdbool.h>
#include <sys/stat.h>

#include "orrery/policy.h"

/*
** Opens a regular file: with O_PATH first (no driver code runs for a device
** node or a FIFO), checked with fstat, then the same inode reopened through
** /proc/self/fd, so nothing can be swapped in between. writable: O_RDWR,
** which under p needs the file inside the allowed directories with one link.
** *outside: the file is not below an allowed directory (always false
** unconfined). *st: its stat. Errors name what and path: ORR_ENOENT,
** ORR_EPERM (a rule), ORR_EINVAL (not a regular file), ORR_EIO.
*/
int orr__policy_open_file(const orr_policy *p, const char *path, bool writable,
                          const char *what, int *fd, bool *outside,
                          struct stat *st, orr_error *e);

/* The same for a directory (a Plan9 share): an O_PATH descriptor of it;
** writable needs it inside the allowed directories. */
int orr__policy_open_dir(const orr_policy *p, const char *path, bool writable,
                         const char *what, int *fd, orr_error *e);

/*
** A unix socket bound at path and listening (a COM port QEMU serves). Its
** directory is opened and judged first, then the socket is bound by a path
** through that descriptor (/proc/self/fd/N/name), so a symlink swapped in
** afterwards changes nothing. A stale socket at path is replaced; anything
** else there is refused.
*/
int orr__policy_listen(const orr_policy *p, const char *path, const char *what,
                       int *fd, orr_error *e);

/* 0 if orr_policy_open for writing would be allowed at path, without
** creating or truncating anything (a dry run). */
int orr__policy_check_write(const orr_policy *p, const char *path,
                            const char *what, orr_error *e);

/* 0 if the directory at path (a runtime_dir), or its parent when it does
** not exist yet, is an allowed directory or below one. */
int orr__policy_check_new_dir(const orr_policy *p, const char *path,
                              const char *what, orr_error *e);

/* Whether raw QMP may send command: only read-only ones (query-*, qom-get,
** qom-list); anything else can make QEMU write a file (blockdev-add,
** screendump, dump-guest-memory) or change the VM behind the engine. */
bool orr__policy_raw_qmp_allowed(const char *command);

/* The kernel's path of an open descriptor into buf (PATH_MAX); -1 if the
** object has none (deleted, anonymous). */
int orr__fd_path(int fd, char *buf, size_t size);

#endif

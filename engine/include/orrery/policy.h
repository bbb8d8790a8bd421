/*
** Confinement: what an engine may make the host do for code it does not
** trust (a sandboxed recipe). An engine without a policy does what its user
** asks; an engine with one ("confined") checks every request against it, in
** the engine, on the objects it is about to use: the normalized document or
** ModifySettingRequest and the create options after every default is
** applied. The threat model is docs/threat-model.md.
**
** The rules of a policy:
**   - files and directories may be written (created, truncated, removed,
**     renamed, locked, bound as a socket) only below the allowed directories,
**     judged on the path the kernel resolved for the object actually opened,
**     never on the name given; a file written must have one link;
**   - reads stay allowed everywhere (a confined engine protects the host's
**     integrity, not its confidentiality), but only of regular files and
**     directories (and /dev/null and the like): opening a device node can
**     arm a watchdog or rewind a tape;
**   - no host program runs (no qemu_binary), no host device is attached or
**     created (VFIO, PassThru disks, tap interfaces), raw QMP is read-only;
**   - QEMU gets every file and socket as a descriptor the engine opened under
**     these rules, and runs under Landlock (docs/threat-model.md).
**
** One-way: once an engine is confined it stays so, with the same policy.
*/
#ifndef ORRERY_POLICY_H
#define ORRERY_POLICY_H

#include <stddef.h>

#include "orrery/api.h"
#include "orrery/error.h"
#include "orrery/vm.h"

typedef struct orr_policy orr_policy;

/* At most this many allowed directories. */
#define ORR_POLICY_MAX_DIRS 32

/*
** A policy allowing writes below each directory of allow_write
** (NULL-terminated; NULL or empty: no writes at all). Each must exist; it is
** resolved (symlinks, "..") now, so a later change of what the name points to
** changes nothing. ORR_EINVAL or ORR_ENOENT naming the directory.
*/
ORR_API int orr_policy_new(const char *const *allow_write, orr_policy **out,
                           orr_error *e);
ORR_API void orr_policy_free(orr_policy *p);

/* The resolved allowed directories: their count, and up to max of them. */
ORR_API size_t orr_policy_dirs(const orr_policy *p, const char **dirs,
                               size_t max);

/*
** Confines eng with p (taken: freed with the engine, or now on failure).
** ORR_EPERM if eng is already confined: a policy is never replaced, so it
** cannot be loosened. VMs created before keep the QEMU they were started
** with; every request made from now on is checked.
*/
ORR_API int orr_engine_confine(orr_engine *eng, orr_policy *p, orr_error *e);
/* The engine's policy, or NULL when it is not confined. */
ORR_API const orr_policy *orr_engine_policy(const orr_engine *eng);

/*
** The rules as host operations, for a host program's own file access on
** behalf of the confined code (the Lua sandbox's io and os functions). what
** names the caller in messages ("io.open"); refusals are ORR_EPERM with the
** message "sandbox: <what>: <path> <rule>".
*/

/* Opens path (flags as for open(2): O_WRONLY or O_RDWR, with O_CREAT,
** O_TRUNC, O_APPEND, O_EXCL) for writing under the rules; *fd is
** close-on-exec. A symlink anywhere in path is followed and the result
** judged; a dangling one is refused (writing it would create its target). */
ORR_API int orr_policy_open(const orr_policy *p, const char *path, int flags,
                            const char *what, int *fd, orr_error *e);
/* Opens path for reading: allowed anywhere, but only a regular file, a
** directory or one of the character devices whose opening does nothing
** (/dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom): opening a
** device node can arm a watchdog or rewind a tape, and a FIFO blocks. The
** type is checked on an O_PATH descriptor, then the same inode reopened. */
ORR_API int orr_policy_open_read(const orr_policy *p, const char *path,
                                 const char *what, int *fd, orr_error *e);
/* The same check without opening (the object is opened by name after:
** for callers that cannot take a descriptor, such as Lua's loadfile). */
ORR_API int orr_policy_check_read(const orr_policy *p, const char *path,
                                  const char *what, orr_error *e);
/* Removes the entry path (a file, a symlink, an empty directory) if its
** directory is allowed. */
ORR_API int orr_policy_remove(const orr_policy *p, const char *path,
                              const char *what, orr_error *e);
/* Renames from to to if both directories are allowed. */
ORR_API int orr_policy_rename(const orr_policy *p, const char *from,
                              const char *to, const char *what, orr_error *e);
/* 0 if a new entry may be created in directory dir. */
ORR_API int orr_policy_check_dir(const orr_policy *p, const char *dir,
                                 const char *what, orr_error *e);

#endif

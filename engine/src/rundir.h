/* The VM's private runtime directory (rundir.c). Not a public header. */
#ifndef ORR_RUNDIR_H
#define ORR_RUNDIR_H

#include "orrery/error.h"

/*
** Makes path (absolute) the VM's runtime directory: creates what is
** missing (0700), and refuses, with ORR_EPERM naming the component and the
** rule, a path another user could redirect: the directory itself a symlink
** or not owned by us, an ancestor that is a symlink owned by another user,
** or an ancestor owned by another user or writable by others without the
** sticky bit. Leaves the directory at mode 0700. ORR_EINVAL for a relative
** path, ORR_EIO for a failed system call (with its text).
*/
int orr__run_dir_make(const char *path, orr_error *e);

/* Removes the files the qemu backend keeps in a runtime directory, then the
** directory itself if that leaves it empty. */
void orr__run_dir_clear(const char *dir);

/*
** Clears the runtime directories under root that a killed engine left
** behind: those whose QEMU (qemu.pid) is gone. A directory without a
** pidfile may be another engine's VM being created right now: kept.
*/
void orr__run_dir_sweep(const char *root);

#endif

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
** path, ORR_EIO for a failed system call (with its text). *dirfd (may be
** NULL) gets an O_RDONLY|O_CLOEXEC descriptor of the directory.
*/
int orr__run_dir_make(const char *path, int *dirfd, orr_error *e);

/*
** The same rules, checked only (orrery.open): creates and chmods nothing,
** and the directory must already exist (ORR_ENOENT) and be private (no
** group or other permission bits: ORR_EPERM). *dirfd as above.
*/
int orr__run_dir_open(const char *path, int *dirfd, orr_error *e);

/*
** Takes the one-owner lock of a runtime directory (flock, exclusive, not
** waiting): 0, or ORR_EBUSY when another open file description holds it.
** The lock goes with the descriptor: closing it (or dying) releases it.
*/
int orr__run_dir_lock(int dirfd, const char *path, orr_error *e);

/* The pid in the directory's pid file (the backend's backend->pidfile),
** 0 when there is none. */
int orr__run_dir_pid(int dirfd, const char *pidfile);

/* Removes the files the engine keeps in the runtime directory dir (open as
** dirfd): the core's journal and files (NULL-terminated, may be NULL: the
** backend's backend->run_files); then the directory itself if that leaves
** it empty. */
void orr__run_dir_clear(int dirfd, const char *dir, const char *const *files);

/*
** Clears the runtime directories under root that a killed engine left
** behind: those that are ours and whose process (the pid in pidfile) is
** gone, unless another engine holds them; files as for orr__run_dir_clear.
** A directory without a pidfile may be another engine's VM being created
** right now: kept. The engine sweeps once per backend that has a pidfile.
*/
void orr__run_dir_sweep(const char *root, const char *pidfile,
                        const char *const *files);

#endif

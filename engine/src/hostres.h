/*
** The host objects one VM launch or one run-time change uses: every file,
** directory and socket the translation layer would hand QEMU goes through
** here, is opened under the engine's policy (policy_host.h), and comes back
** as the reference QEMU gets in its place.
**
** How QEMU gets them depends on the engine:
**   - unconfined: by name, as before (QEMU opens the paths; a file the
**     engine cannot open is still named, so QEMU reports it);
**   - confined ("fd mode"): as descriptors the engine opened and judged, so
**     what was checked is what QEMU uses. At boot they are inherited by the
**     QEMU child at fixed numbers from 3 on (-add-fd for images,
**     /proc/self/fd/N where QEMU 7.2 takes only a path, fd=N for sockets);
**     at run time they travel over QMP with SCM_RIGHTS (add-fd).
** A dry set (the plan backend) judges and inspects the same way and gives
** the same references, but creates, truncates and binds nothing.
*/
#ifndef ORR_HOSTRES_H
#define ORR_HOSTRES_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include <jansson.h>

#include "orrery/policy.h"

typedef struct orr_hostres orr_hostres;

typedef enum {
  ORR_HR_BOOT, /* descriptors inherited by a QEMU about to be spawned */
  ORR_HR_QMP,  /* descriptors sent over QMP to a running QEMU */
} orr_hr_when;

/* p NULL: unconfined. dry (the plan backend): creates, truncates and
** binds nothing; what it opens is only judged and read, and closed when the
** set is freed. */
orr_hostres *orr__hostres_new(const orr_policy *p, orr_hr_when when, bool dry);
void orr__hostres_free(orr_hostres *hr); /* closes what is still held */

const orr_policy *orr__hostres_policy(const orr_hostres *hr);
/* Descriptors instead of names even with no policy: for a QEMU that was
** launched confined (it runs under Landlock for its whole life and may not
** be able to open a path itself) and is now driven by an unconfined engine
** that re-attached to it. Nothing is judged, only passed. */
void orr__hostres_pass_fds(orr_hostres *hr);
/* Descriptors instead of names (the engine is confined, or the QEMU). */
bool orr__hostres_fd_mode(const orr_hostres *hr);

/*
** A file QEMU reads (writable: and writes) whole: a kernel, an initrd, a
** VPMem image. ref gets the path QEMU is given: the path itself, or
** /proc/self/fd/N in fd mode (QEMU 7.2 takes only a path for these). st
** (may be NULL) gets the file's stat: then a file that cannot be opened is
** an error in every mode (the caller needs its size).
*/
int orr__hostres_file(orr_hostres *hr, const char *path, bool writable,
                      const char *what, char *ref, size_t size, struct stat *st,
                      orr_error *e);

/* A directory QEMU exports (a Plan9 share): as orr__hostres_file. */
int orr__hostres_dir(orr_hostres *hr, const char *path, bool writable,
                     const char *what, char *ref, size_t size, orr_error *e);

/*
** A listening unix socket QEMU serves (a COM port). *fdnum is -1 when QEMU
** binds path itself (unconfined), else the descriptor number for
** -chardev socket,fd=N.
*/
int orr__hostres_listen(orr_hostres *hr, const char *path, const char *what,
                        int *fdnum, orr_error *e);

/*
** One file of a disk image chain (an image.h opener): ref gets the filename
** of its file node, the path, or in fd mode /dev/fdset/<fdset> (the
** caller's id: the descriptor goes into that fdset, by -add-fd at boot or
** add-fd at run time); *locking_off whether QEMU must not lock it (a file
** outside the allowed directories, opened read-only: a lock there would
** hold back the file's owner). *fd is a descriptor to read its header
** through (held by hr; in fd mode the very one QEMU gets), *st its stat.
** lenient: unconfined, a file that cannot be opened is named to QEMU all
** the same (*fd -1), so QEMU reports it.
*/
int orr__hostres_image(orr_hostres *hr, const char *path, bool writable,
                       const char *what, int fdset, bool lenient, int *fd,
                       struct stat *st, char *ref, size_t size,
                       bool *locking_off, orr_error *e);

/* The images' fdsets, in the order they were opened: descriptor index
** (child descriptor 3 + index at boot) and fdset id. */
typedef struct {
  int index;
  int id;
} orr_hr_fdset;
const orr_hr_fdset *orr__hostres_fdsets(const orr_hostres *hr, size_t *n);

/* What QEMU writes through each held descriptor, for its Landlock ruleset
** (landlock.h): indexed like orr__hostres_fds. */
typedef enum {
  ORR_HR_READ,       /* reads only, or QEMU got the descriptor itself */
  ORR_HR_WRITE_FILE, /* reopens /proc/self/fd/N for writing: that file */
  ORR_HR_WRITE_TREE, /* writes below it (a writable Plan9 share) */
} orr_hr_write;
const orr_hr_write *orr__hostres_writes(const orr_hostres *hr);

/* Whether a host device may be attached or created (a VFIO function, a
** PassThru disk, a tap interface): not for a confined engine. */
int orr__hostres_host_device(const orr_hostres *hr, const char *what,
                             const char *device, orr_error *e);

/*
** A saved state QEMU reads at start (-incoming fd:N): always a descriptor,
** in every mode, since QEMU runs under -sandbox spawn=deny and can no
** longer read it through a shell command. *fdnum gets N.
*/
int orr__hostres_restore(orr_hostres *hr, const char *path, const char *what,
                         int *fdnum, orr_error *e);

/*
** A file QEMU writes a saved state to (getfd + migrate fd:): always a
** descriptor, created or truncated here (mode 0600: it holds the guest's
** memory). *index gets the descriptor's index for orr__hostres_dup. A dry
** set judges without creating anything.
*/
int orr__hostres_save(orr_hostres *hr, const char *path, const char *what,
                      int *index, orr_error *e);

/* A new descriptor for held descriptor index (the caller closes or passes
** it on), or -1 when none is held there (a dry run's save). */
int orr__hostres_dup(const orr_hostres *hr, int index);

/* The held descriptors in order (child descriptor 3 + i at boot), for
** orr_process_options.inherit; *n their count. */
const int *orr__hostres_fds(const orr_hostres *hr, size_t *n);

#endif

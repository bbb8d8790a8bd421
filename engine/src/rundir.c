/*
** Making a VM's runtime directory without letting anyone else choose where
** it really is. The engine runs as root as often as not, and the directory
** is where QEMU's sockets and pidfile go, where the engine later unlinks
** files and which it chmods: if another user could make any component of
** the path a symlink (the classic /tmp race), the engine would chmod,
** create and delete in a directory of that user's choosing.
**
** The rule (OpenSSH's StrictModes, applied to every component): walking
** from / one component at a time, without following a symlink unless its
** owner is root or us, every existing ancestor must be owned by root or us
** and not writable by group or others unless it has the sticky bit (/tmp
** passes: a sticky directory lets nobody replace our entries); the runtime
** directory itself must not be a symlink and must be ours. Each step opens
** the component relative to the previous one (openat, O_NOFOLLOW where the
** rule says so), so what is checked is what is used.
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orrery/vm.h"
#include "rundir.h"

/* The ancestor check: owner root or us, no foreign write without sticky. */
static int check_ancestor(const struct stat *st, const char *shown,
                          orr_error *e) {
  uid_t me = geteuid();
  if (st->st_uid != 0 && st->st_uid != me)
    return orr_error_set(e, ORR_EPERM,
                         "runtime directory: %s is owned by uid %u, neither "
                         "root nor us (uid %u), so its owner could redirect "
                         "the VM's files",
                         shown, (unsigned)st->st_uid, (unsigned)me);
  if ((st->st_mode & (S_IWGRP | S_IWOTH)) && !(st->st_mode & S_ISVTX))
    return orr_error_set(e, ORR_EPERM,
                         "runtime directory: %s is writable by others "
                         "(mode %03o) without the sticky bit, so they could "
                         "replace a directory below it",
                         shown, (unsigned)(st->st_mode & 07777));
  return 0;
}

/* The walk both variants share. make: create what is missing and leave the
** directory at 0700; otherwise (orrery.open) create and change nothing, and
** refuse a directory that is not already private. On success *out (if not
** NULL) is an O_RDONLY descriptor of the directory itself: what was checked
** is what the caller locks and opens files in. */
static int walk(const char *path, int make, int *out, orr_error *e) {
  char buf[PATH_MAX], shown[PATH_MAX];
  char *comp, *next, *save = NULL;
  struct stat st;
  int dfd, fd, rc = 0;
  if (out)
    *out = -1;
  if (path == NULL || path[0] != '/')
    return orr_error_set(e, ORR_EINVAL,
                         "runtime directory must be an absolute path, got %s",
                         path ? path : "nothing");
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
    return orr_error_set(e, ORR_EINVAL, "runtime directory %s is too long",
                         path);
  dfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0 || fstat(dfd, &st) != 0)
    return orr_error_set(e, ORR_EIO, "cannot open /: %s", strerror(errno));
  if ((rc = check_ancestor(&st, "/", e)) != 0)
    goto out;
  shown[0] = '\0';
  comp = strtok_r(buf, "/", &save);
  if (comp == NULL) {
    rc = orr_error_set(e, ORR_EPERM, "runtime directory must not be / itself");
    goto out;
  }
  while (comp != NULL) {
    next = strtok_r(NULL, "/", &save);
    snprintf(shown + strlen(shown), sizeof shown - strlen(shown), "/%s", comp);
    if (strcmp(comp, "..") == 0 || strcmp(comp, ".") == 0) {
      rc = orr_error_set(e, ORR_EINVAL,
                         "runtime directory %s must not contain . or ..", path);
      goto out;
    }
    if (fstatat(dfd, comp, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT && !make) {
        rc = orr_error_set(e, ORR_ENOENT, "%s does not exist", shown);
        goto out;
      }
      if (errno != ENOENT ||
          (mkdirat(dfd, comp, 0700) != 0 && errno != EEXIST) ||
          fstatat(dfd, comp, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        rc = orr_error_set(e, ORR_EIO, "cannot create %s: %s", shown,
                           strerror(errno));
        goto out;
      }
    }
    if (S_ISLNK(st.st_mode)) {
      if (next == NULL) {
        rc = orr_error_set(e, ORR_EPERM,
                           "runtime directory %s is a symlink; it must be a "
                           "directory of its own",
                           shown);
        goto out;
      }
      if (st.st_uid != 0 && st.st_uid != geteuid()) {
        rc = orr_error_set(e, ORR_EPERM,
                           "runtime directory: %s is a symlink owned by uid "
                           "%u, neither root nor us, so its owner chooses "
                           "where the VM's files go",
                           shown, (unsigned)st.st_uid);
        goto out;
      }
    }
    /* The last component is opened for fchmod and flock, never through a
    ** symlink. */
    fd = openat(dfd, comp,
                next == NULL ? O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
                             : O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
      rc = orr_error_set(
          e, errno == ENOTDIR || errno == ELOOP ? ORR_EPERM : ORR_EIO,
          "runtime directory: cannot open %s: %s", shown, strerror(errno));
      if (fd >= 0)
        close(fd);
      goto out;
    }
    close(dfd);
    dfd = fd;
    if (next != NULL) {
      if ((rc = check_ancestor(&st, shown, e)) != 0)
        goto out;
    } else {
      if (st.st_uid != geteuid()) {
        rc = orr_error_set(e, ORR_EPERM,
                           "runtime directory %s is owned by uid %u, not by "
                           "us (uid %u)",
                           shown, (unsigned)st.st_uid, (unsigned)geteuid());
        goto out;
      }
      if (make && fchmod(dfd, 0700) != 0) {
        rc = orr_error_set(e, ORR_EIO, "cannot chmod %s: %s", shown,
                           strerror(errno));
        goto out;
      }
      if (!make && (st.st_mode & 077) != 0) {
        rc = orr_error_set(e, ORR_EPERM,
                           "runtime directory %s is mode %03o: a VM's "
                           "directory is private (0700), so this is not one "
                           "the engine made",
                           shown, (unsigned)(st.st_mode & 0777));
        goto out;
      }
    }
    comp = next;
  }
  if (out) {
    *out = dfd;
    dfd = -1;
  }
out:
  if (dfd >= 0)
    close(dfd);
  return rc;
}

int orr__run_dir_make(const char *path, int *dirfd, orr_error *e) {
  return walk(path, 1, dirfd, e);
}

int orr__run_dir_open(const char *path, int *dirfd, orr_error *e) {
  return walk(path, 0, dirfd, e);
}

int orr__run_dir_lock(int dirfd, const char *path, orr_error *e) {
  if (flock(dirfd, LOCK_EX | LOCK_NB) == 0)
    return 0;
  if (errno == EWOULDBLOCK)
    return orr_error_set(e, ORR_EBUSY,
                         "%s is held by another engine process (the VM is "
                         "open there; one owner at a time)",
                         path);
  return orr_error_set(e, ORR_EIO, "cannot lock %s: %s", path, strerror(errno));
}

/* The core's own files (the journal, vm_persist.c; the console,
** vm_console.c). */
static const char *const core_files[] = {
    ORR_VM_STATE_FILE,  ORR_VM_STATE_FILE ".tmp",  ORR_VM_NOT_DURABLE_FILE,
    ORR_VM_CONSOLE_LOG, ORR_VM_CONSOLE_LOG ".1"};

/* Unlinks the runtime files below dirfd (the core's and the backend's
** files), then the directory (name, below parent) if that leaves it
** empty. */
static void clear_at(int dirfd, int parent, const char *name,
                     const char *const *files) {
  for (size_t i = 0; i < sizeof core_files / sizeof *core_files; i++)
    unlinkat(dirfd, core_files[i], 0);
  for (size_t i = 0; files && files[i]; i++)
    unlinkat(dirfd, files[i], 0);
  unlinkat(parent, name, AT_REMOVEDIR);
}

void orr__run_dir_clear(int dirfd, const char *dir, const char *const *files) {
  char parent[PATH_MAX];
  const char *slash = strrchr(dir, '/');
  int pfd;
  if (dirfd < 0 || slash == NULL)
    return;
  snprintf(parent, sizeof parent, "%.*s", slash == dir ? 1 : (int)(slash - dir),
           dir);
  pfd = open(parent, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (pfd < 0)
    return;
  clear_at(dirfd, pfd, slash + 1, files);
  close(pfd);
}

/* Reads a pid file below dirfd; 0 when there is none. */
static int read_pidfile(int dirfd, const char *pidfile) {
  char buf[32];
  ssize_t n;
  int fd =
      openat(dirfd, pidfile, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return 0;
  n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0)
    return 0;
  buf[n] = '\0';
  return atoi(buf);
}

int orr__run_dir_pid(int dirfd, const char *pidfile) {
  return read_pidfile(dirfd, pidfile);
}

void orr__run_dir_sweep(const char *root, const char *pidfile,
                        const char *const *files) {
  int rfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d;
  struct dirent *ent;
  if (rfd < 0)
    return;
  d = fdopendir(rfd);
  if (d == NULL) {
    close(rfd);
    return;
  }
  while ((ent = readdir(d)) != NULL) {
    struct stat st;
    int fd, pid;
    if (ent->d_name[0] == '.')
      continue;
    /* Only our own directories: in a shared root (a sticky /tmp) the others
    ** are other users' VMs, whatever their pid files say. */
    fd = openat(rfd, ent->d_name,
                O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
      continue;
    if (fstat(fd, &st) != 0 || st.st_uid != geteuid()) {
      close(fd);
      continue;
    }
    pid = read_pidfile(fd, pidfile);
    /* EPERM means alive but someone else's: not ours to clear. A directory
    ** without a pidfile may be another engine's VM being created right now:
    ** kept. The lock is taken only for a directory about to be cleared (so
    ** a sweep never makes another engine's open of a live VM fail EBUSY),
    ** and skips one another engine holds. */
    if (pid > 0 && !(kill(pid, 0) == 0 || errno == EPERM) &&
        flock(fd, LOCK_EX | LOCK_NB) == 0)
      clear_at(fd, rfd, ent->d_name, files);
    close(fd);
  }
  closedir(d);
}

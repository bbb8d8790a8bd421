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
#include <signal.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/qemu_xlate.h"
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

int orr__run_dir_make(const char *path, orr_error *e) {
  char buf[PATH_MAX], shown[PATH_MAX];
  char *comp, *next, *save = NULL;
  struct stat st;
  int dfd, fd, rc = 0;
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
  while (comp != NULL) {
    next = strtok_r(NULL, "/", &save);
    snprintf(shown + strlen(shown), sizeof shown - strlen(shown), "/%s", comp);
    if (strcmp(comp, "..") == 0 || strcmp(comp, ".") == 0) {
      rc = orr_error_set(e, ORR_EINVAL,
                         "runtime directory %s must not contain . or ..", path);
      goto out;
    }
    if (fstatat(dfd, comp, &st, AT_SYMLINK_NOFOLLOW) != 0) {
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
    /* The last component is opened for fchmod, never through a symlink. */
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
      if (fchmod(dfd, 0700) != 0) {
        rc = orr_error_set(e, ORR_EIO, "cannot chmod %s: %s", shown,
                           strerror(errno));
        goto out;
      }
    }
    comp = next;
  }
out:
  close(dfd);
  return rc;
}

void orr__run_dir_clear(const char *dir) {
  static const char *const files[] = {ORR_QEMU_QMP_SOCK,  ORR_QEMU_QGA_SOCK,
                                      ORR_QEMU_VNC_SOCK,  ORR_QEMU_PIDFILE,
                                      ORR_QEMU_VARS_FILE, "state.json",
                                      "state.json.tmp"};
  char path[4200];
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, files[i]);
    unlink(path);
  }
  rmdir(dir);
}

void orr__run_dir_sweep(const char *root) {
  DIR *d = opendir(root);
  struct dirent *ent;
  if (d == NULL)
    return;
  while ((ent = readdir(d)) != NULL) {
    char dir[4100], pidfile[4200];
    FILE *f;
    int pid = 0;
    if (ent->d_name[0] == '.')
      continue;
    snprintf(dir, sizeof dir, "%s/%s", root, ent->d_name);
    snprintf(pidfile, sizeof pidfile, "%s/" ORR_QEMU_PIDFILE, dir);
    if ((f = fopen(pidfile, "r")) == NULL)
      continue;
    if (fscanf(f, "%d", &pid) != 1)
      pid = 0;
    fclose(f);
    /* EPERM means alive but someone else's: not ours to clear. */
    if (pid > 0 && (kill(pid, 0) == 0 || errno == EPERM))
      continue;
    orr__run_dir_clear(dir);
  }
  closedir(d);
}

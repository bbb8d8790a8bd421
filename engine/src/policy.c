/*
** The confinement policy (orrery/policy.h) and its host primitives
** (policy_host.h). Every check is made on an object already opened: a
** descriptor pins the inode (or, for a new entry, the directory), and the
** kernel's own path of that descriptor is what is judged, so a symlink or a
** rename between the check and the use changes nothing. Opening by a name
** (io.open, QEMU's -blockdev filename) would judge one object and use
** another.
*/
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include "policy_host.h"
#include "vm_internal.h"

struct orr_policy {
  size_t n;
  char *dirs[ORR_POLICY_MAX_DIRS];
};

/* ---- the policy object ---------------------------------------------------
 */

int orr_policy_new(const char *const *allow_write, orr_policy **out,
                   orr_error *e) {
  orr_policy *p = calloc(1, sizeof *p);
  *out = NULL;
  if (p == NULL)
    return orr_error_set(e, ORR_ENOMEM, "sandbox: out of memory");
  for (size_t i = 0; allow_write != NULL && allow_write[i] != NULL; i++) {
    char real[PATH_MAX];
    struct stat st;
    if (p->n >= ORR_POLICY_MAX_DIRS) {
      orr_policy_free(p);
      return orr_error_set(e, ORR_EINVAL,
                           "sandbox: at most %d writable directories",
                           ORR_POLICY_MAX_DIRS);
    }
    if (realpath(allow_write[i], real) == NULL) {
      int err = errno;
      orr_policy_free(p);
      return orr_error_set(e, err == ENOENT ? ORR_ENOENT : ORR_EINVAL,
                           "sandbox: writable directory %s: %s", allow_write[i],
                           strerror(err));
    }
    if (stat(real, &st) != 0 || !S_ISDIR(st.st_mode)) {
      orr_policy_free(p);
      return orr_error_set(e, ORR_EINVAL,
                           "sandbox: writable directory %s is not a directory",
                           allow_write[i]);
    }
    if ((p->dirs[p->n++] = strdup(real)) == NULL) {
      orr_policy_free(p);
      return orr_error_set(e, ORR_ENOMEM, "sandbox: out of memory");
    }
  }
  *out = p;
  return 0;
}

void orr_policy_free(orr_policy *p) {
  if (p == NULL)
    return;
  for (size_t i = 0; i < p->n; i++)
    free(p->dirs[i]);
  free(p);
}

size_t orr_policy_dirs(const orr_policy *p, const char **dirs, size_t max) {
  for (size_t i = 0; i < p->n && i < max; i++)
    dirs[i] = p->dirs[i];
  return p->n;
}

int orr_engine_confine(orr_engine *eng, orr_policy *p, orr_error *e) {
  if (eng->policy != NULL) {
    orr_policy_free(p);
    return orr_error_set(e, ORR_EPERM,
                         "sandbox: this engine is already confined (a policy "
                         "is never replaced)");
  }
  eng->policy = p;
  return 0;
}

const orr_policy *orr_engine_policy(const orr_engine *eng) {
  return eng->policy;
}

/* ---- paths ---------------------------------------------------------------
 */

int orr__fd_path(int fd, char *buf, size_t size) {
  char proc[64];
  ssize_t n;
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  n = readlink(proc, buf, size - 1);
  if (n <= 0 || (size_t)n >= size - 1 || buf[0] != '/')
    return -1;
  buf[n] = '\0';
  /* An unlinked file: its old name proves nothing. */
  if (n > 10 && strcmp(buf + n - 10, " (deleted)") == 0)
    return -1;
  return 0;
}

/* Whether the resolved path real is an allowed directory or below one. */
static bool inside(const orr_policy *p, const char *real) {
  for (size_t i = 0; i < p->n; i++) {
    size_t n = strlen(p->dirs[i]);
    if (strcmp(p->dirs[i], "/") == 0 || (strncmp(real, p->dirs[i], n) == 0 &&
                                         (real[n] == '/' || real[n] == '\0')))
      return true;
  }
  return false;
}

static int outside_error(const char *what, const char *path, const char *real,
                         orr_error *e) {
  bool differs = real != NULL && strcmp(real, path) != 0;
  return orr_error_set(e, ORR_EPERM,
                       "sandbox: %s: %s is outside the directories this "
                       "recipe may write (--allow-write)%s%s",
                       what, path, differs ? "; it resolves to " : "",
                       differs ? real : "");
}

static int sys_error(int err, const char *what, const char *doing,
                     const char *path, orr_error *e) {
  int code = err == ENOENT || err == ENOTDIR                 ? ORR_ENOENT
             : err == EACCES || err == EPERM || err == ELOOP ? ORR_EPERM
                                                             : ORR_EIO;
  return orr_error_set(e, code, "%s: cannot %s %s: %s", what, doing, path,
                       strerror(err));
}

/* The directory part of path (its own descriptor, O_PATH, symlinks
** followed) and the last component, which must name an entry. */
static int open_parent(const char *path, const char *what, int *dfd,
                       const char **base, orr_error *e) {
  char dir[PATH_MAX];
  const char *slash;
  if (path == NULL || path[0] == '\0')
    return orr_error_set(e, ORR_EINVAL, "%s: the path is empty", what);
  if (strlen(path) >= sizeof dir)
    return orr_error_set(e, ORR_EINVAL, "%s: %s is too long", what, path);
  slash = strrchr(path, '/');
  if (slash == NULL) {
    snprintf(dir, sizeof dir, ".");
    *base = path;
  } else {
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    memcpy(dir, path, n);
    dir[n] = '\0';
    *base = slash + 1;
  }
  if (**base == '\0' || strcmp(*base, ".") == 0 || strcmp(*base, "..") == 0)
    return orr_error_set(e, ORR_EINVAL, "%s: %s does not name a file", what,
                         path);
  *dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (*dfd < 0)
    return sys_error(errno, what, "open the directory of", path, e);
  return 0;
}

/* Judges the directory dfd for the entry base of path (NULL: the directory
** itself is the object). */
static int check_parent(const orr_policy *p, int dfd, const char *path,
                        const char *base, const char *what, orr_error *e) {
  char real[PATH_MAX], shown[PATH_MAX + 256];
  if (p == NULL)
    return 0;
  if (orr__fd_path(dfd, real, sizeof real) != 0)
    return orr_error_set(e, ORR_EPERM,
                         "sandbox: %s: the directory of %s has no path any "
                         "more",
                         what, path);
  if (inside(p, real))
    return 0;
  snprintf(shown, sizeof shown, "%s%s%s", real,
           base == NULL || strcmp(real, "/") == 0 ? "" : "/",
           base == NULL ? "" : base);
  return outside_error(what, path, shown, e);
}

int orr_policy_check_dir(const orr_policy *p, const char *dir, const char *what,
                         orr_error *e) {
  int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC), rc;
  if (dfd < 0)
    return sys_error(errno, what, "open", dir, e);
  rc = check_parent(p, dfd, dir, NULL, what, e);
  close(dfd);
  return rc;
}

int orr__policy_check_new_dir(const orr_policy *p, const char *path,
                              const char *what, orr_error *e) {
  const char *base;
  int dfd, rc;
  if (p == NULL)
    return 0;
  /* There already (a VM's directory from an earlier run): judge it. */
  base = NULL;
  if ((dfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
    if (errno != ENOENT)
      return sys_error(errno, what, "open", path, e);
    if ((rc = open_parent(path, what, &dfd, &base, e)) != 0)
      return rc;
  }
  rc = check_parent(p, dfd, path, base, what, e);
  close(dfd);
  return rc;
}

/* ---- opening ---------------------------------------------------------------
 */

/* Reopens the object of the O_PATH descriptor pfd with flags. */
static int reopen(int pfd, int flags) {
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", pfd);
  return open(proc, (flags & ~(O_CREAT | O_EXCL | O_NOFOLLOW)) | O_CLOEXEC |
                        O_NOCTTY);
}

/* Judges the existing object pfd (from path) for a write: inside, one
** link. */
static int check_existing(const orr_policy *p, int pfd, const struct stat *st,
                          const char *path, const char *what, orr_error *e) {
  char real[PATH_MAX];
  if (p == NULL)
    return 0;
  if (orr__fd_path(pfd, real, sizeof real) != 0)
    return orr_error_set(e, ORR_EPERM, "sandbox: %s: %s has no path any more",
                         what, path);
  if (!inside(p, real))
    return outside_error(what, path, real, e);
  if (S_ISREG(st->st_mode) && st->st_nlink > 1)
    return orr_error_set(e, ORR_EPERM,
                         "sandbox: %s: %s has %lu hard links, and a write "
                         "through one lands in all of them",
                         what, path, (unsigned long)st->st_nlink);
  return 0;
}

int orr_policy_open(const orr_policy *p, const char *path, int flags,
                    const char *what, int *fd, orr_error *e) {
  *fd = -1;
  if (path == NULL || path[0] == '\0')
    return orr_error_set(e, ORR_EINVAL, "%s: the path is empty", what);
  /* A name created by someone else between the two steps: look again. */
  for (int attempt = 0; attempt < 4; attempt++) {
    int pfd = open(path, O_PATH | O_CLOEXEC), dfd, rc;
    const char *base;
    struct stat st;
    if (pfd >= 0) {
      if (fstat(pfd, &st) != 0) {
        rc = sys_error(errno, what, "stat", path, e);
      } else if (!S_ISREG(st.st_mode)) {
        rc = orr_error_set(e, ORR_EPERM,
                           "sandbox: %s: %s is not a regular file", what, path);
      } else if ((rc = check_existing(p, pfd, &st, path, what, e)) == 0) {
        if ((flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL))
          rc = orr_error_set(e, ORR_EEXIST, "%s: %s exists", what, path);
        else if ((*fd = reopen(pfd, flags)) < 0)
          rc = sys_error(errno, what, "open", path, e);
      }
      close(pfd);
      return rc;
    }
    if (errno != ENOENT || !(flags & O_CREAT))
      return sys_error(errno, what, "open", path, e);
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
      return orr_error_set(e, ORR_EPERM,
                           "sandbox: %s: %s is a dangling symlink (writing it "
                           "would create its target)",
                           what, path);
    if ((rc = open_parent(path, what, &dfd, &base, e)) != 0)
      return rc;
    if ((rc = check_parent(p, dfd, path, base, what, e)) != 0) {
      close(dfd);
      return rc;
    }
    *fd = openat(dfd, base, flags | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                 0666);
    rc = *fd < 0 ? errno : 0;
    close(dfd);
    if (*fd >= 0)
      return 0;
    if (rc != EEXIST)
      return sys_error(rc, what, "create", path, e);
  }
  return orr_error_set(e, ORR_EBUSY, "%s: %s keeps changing under us", what,
                       path);
}

/* Character devices whose opening does nothing: null, zero, full,
** random, urandom (major 1). */
static bool harmless_device(const struct stat *st) {
  unsigned mi = minor(st->st_rdev);
  return S_ISCHR(st->st_mode) && major(st->st_rdev) == 1 &&
         (mi == 3 || mi == 5 || mi == 7 || mi == 8 || mi == 9);
}

static int readable_type(const struct stat *st, const char *path,
                         const char *what, orr_error *e) {
  if (S_ISREG(st->st_mode) || S_ISDIR(st->st_mode) || harmless_device(st))
    return 0;
  return orr_error_set(e, ORR_EPERM,
                       "sandbox: %s: %s is %s, and only regular files, "
                       "directories and /dev/null-like devices are read (an "
                       "open can act on a device, a FIFO blocks)",
                       what, path,
                       S_ISFIFO(st->st_mode)   ? "a FIFO"
                       : S_ISSOCK(st->st_mode) ? "a socket"
                                               : "a device node");
}

int orr_policy_open_read(const orr_policy *p, const char *path,
                         const char *what, int *fd, orr_error *e) {
  struct stat st;
  int pfd, rc;
  (void)p; /* reads are not confined to the allowed directories */
  *fd = -1;
  if (path == NULL || path[0] == '\0')
    return orr_error_set(e, ORR_EINVAL, "%s: the path is empty", what);
  if ((pfd = open(path, O_PATH | O_CLOEXEC)) < 0)
    return sys_error(errno, what, "open", path, e);
  if (fstat(pfd, &st) != 0)
    rc = sys_error(errno, what, "stat", path, e);
  else if ((rc = readable_type(&st, path, what, e)) == 0 &&
           (*fd = reopen(pfd, O_RDONLY)) < 0)
    rc = sys_error(errno, what, "open", path, e);
  close(pfd);
  return rc;
}

int orr_policy_check_read(const orr_policy *p, const char *path,
                          const char *what, orr_error *e) {
  struct stat st;
  (void)p;
  if (stat(path, &st) != 0)
    return sys_error(errno, what, "open", path, e);
  return readable_type(&st, path, what, e);
}

int orr__policy_check_write(const orr_policy *p, const char *path,
                            const char *what, orr_error *e) {
  const char *base;
  struct stat st;
  int fd, rc;
  if (p == NULL)
    return 0;
  if ((fd = open(path, O_PATH | O_CLOEXEC)) >= 0) {
    if (fstat(fd, &st) != 0)
      rc = sys_error(errno, what, "stat", path, e);
    else if (!S_ISREG(st.st_mode))
      rc = orr_error_set(e, ORR_EPERM, "sandbox: %s: %s is not a regular file",
                         what, path);
    else
      rc = check_existing(p, fd, &st, path, what, e);
    close(fd);
    return rc;
  }
  if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
    return orr_error_set(e, ORR_EPERM,
                         "sandbox: %s: %s is a dangling symlink (writing it "
                         "would create its target)",
                         what, path);
  if ((rc = open_parent(path, what, &fd, &base, e)) != 0)
    return rc;
  rc = check_parent(p, fd, path, base, what, e);
  close(fd);
  return rc;
}

int orr_policy_remove(const orr_policy *p, const char *path, const char *what,
                      orr_error *e) {
  const char *base;
  int dfd, rc;
  if ((rc = open_parent(path, what, &dfd, &base, e)) != 0)
    return rc;
  if ((rc = check_parent(p, dfd, path, base, what, e)) == 0 &&
      unlinkat(dfd, base, 0) != 0) {
    if ((errno == EISDIR || errno == EPERM) &&
        unlinkat(dfd, base, AT_REMOVEDIR) == 0)
      rc = 0;
    else
      rc = sys_error(errno, what, "remove", path, e);
  }
  close(dfd);
  return rc;
}

int orr_policy_rename(const orr_policy *p, const char *from, const char *to,
                      const char *what, orr_error *e) {
  const char *b1, *b2;
  int d1, d2, rc;
  if ((rc = open_parent(from, what, &d1, &b1, e)) != 0)
    return rc;
  if ((rc = open_parent(to, what, &d2, &b2, e)) != 0) {
    close(d1);
    return rc;
  }
  if ((rc = check_parent(p, d1, from, b1, what, e)) == 0 &&
      (rc = check_parent(p, d2, to, b2, what, e)) == 0 &&
      renameat(d1, b1, d2, b2) != 0)
    rc = sys_error(errno, what, "rename", from, e);
  close(d1);
  close(d2);
  return rc;
}

int orr__policy_open_file(const orr_policy *p, const char *path, bool writable,
                          const char *what, int *fd, bool *outside,
                          struct stat *st, orr_error *e) {
  char real[PATH_MAX];
  int pfd, rc = 0;
  *fd = -1;
  *outside = false;
  if (path == NULL || path[0] != '/')
    return orr_error_set(e, ORR_EINVAL, "%s must be an absolute path, got '%s'",
                         what, path ? path : "");
  if ((pfd = open(path, O_PATH | O_CLOEXEC)) < 0)
    return sys_error(errno, what, "open", path, e);
  if (fstat(pfd, st) != 0) {
    rc = sys_error(errno, what, "stat", path, e);
  } else if (!S_ISREG(st->st_mode)) {
    rc = orr_error_set(e, p ? ORR_EPERM : ORR_EINVAL,
                       "%s%s: %s is not a regular file (a device node, FIFO or "
                       "directory is never opened as an image)",
                       p ? "sandbox: " : "", what, path);
  } else if (p != NULL && writable) {
    rc = check_existing(p, pfd, st, path, what, e);
  } else if (p != NULL) {
    *outside = orr__fd_path(pfd, real, sizeof real) != 0 || !inside(p, real);
  }
  if (rc == 0 && (*fd = reopen(pfd, writable ? O_RDWR : O_RDONLY)) < 0)
    rc = sys_error(errno, what, "open", path, e);
  close(pfd);
  return rc;
}

int orr__policy_open_dir(const orr_policy *p, const char *path, bool writable,
                         const char *what, int *fd, orr_error *e) {
  struct stat st;
  int rc = 0;
  *fd = -1;
  if (path == NULL || path[0] != '/')
    return orr_error_set(e, ORR_EINVAL, "%s must be an absolute path, got '%s'",
                         what, path ? path : "");
  if ((*fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
    return sys_error(errno, what, "open the directory", path, e);
  if (fstat(*fd, &st) != 0)
    rc = sys_error(errno, what, "stat", path, e);
  else if (p != NULL && writable)
    rc = check_existing(p, *fd, &st, path, what, e);
  if (rc != 0) {
    close(*fd);
    *fd = -1;
  }
  return rc;
}

int orr__policy_listen(const orr_policy *p, const char *path, const char *what,
                       int *fd, orr_error *e) {
  struct sockaddr_un sa;
  const char *base;
  struct stat st;
  int dfd, rc;
  *fd = -1;
  if (path == NULL || path[0] != '/')
    return orr_error_set(e, ORR_EINVAL, "%s must be an absolute path, got '%s'",
                         what, path ? path : "");
  if ((rc = open_parent(path, what, &dfd, &base, e)) != 0)
    return rc;
  if ((rc = check_parent(p, dfd, path, base, what, e)) != 0)
    goto out;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if ((size_t)snprintf(sa.sun_path, sizeof sa.sun_path, "/proc/self/fd/%d/%s",
                       dfd, base) >= sizeof sa.sun_path) {
    rc = orr_error_set(e, ORR_EINVAL,
                       "%s: the name %s is too long for a unix "
                       "socket",
                       what, base);
    goto out;
  }
  /* What a QEMU binding the socket itself did: a stale socket goes. */
  if (fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      rc = orr_error_set(e, p ? ORR_EPERM : ORR_EEXIST,
                         "%s%s: %s exists and is not a socket",
                         p ? "sandbox: " : "", what, path);
      goto out;
    }
    unlinkat(dfd, base, 0);
  }
  *fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (*fd < 0 || bind(*fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
      listen(*fd, 1) != 0) {
    rc = sys_error(errno, what, "listen on", path, e);
    if (*fd >= 0)
      close(*fd);
    *fd = -1;
  }
out:
  close(dfd);
  return rc;
}

bool orr__policy_raw_qmp_allowed(const char *command) {
  return strncmp(command, "query-", 6) == 0 ||
         strcmp(command, "qom-get") == 0 || strcmp(command, "qom-list") == 0;
}

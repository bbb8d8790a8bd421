/*
** The host objects of one launch or change (hostres.h): opened and judged
** under the engine's policy, handed to the translation layer as the
** references QEMU gets.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hostres.h"
#include "policy_host.h"

struct orr_hostres {
  const orr_policy *policy;
  orr_hr_when when;
  bool dry;
  bool pass_fds;        /* descriptors, not names, even without a policy */
  int *fds;             /* held descriptors (-1: none, a dry run's save) */
  orr_hr_write *writes; /* what QEMU may write through each (Landlock) */
  size_t n, cap;
  orr_hr_fdset *fdsets; /* images: descriptor index -> fdset id */
  size_t nsets, setcap;
  int *inspect; /* opened only to read a header (by name: unconfined) */
  size_t ninspect, inspectcap;
};

/* Holds fd, opened only to be read here, until the set is freed. */
static int inspect(orr_hostres *hr, int fd, orr_error *e) {
  if (hr->ninspect == hr->inspectcap) {
    size_t cap = hr->inspectcap ? hr->inspectcap * 2 : 8;
    int *fds = realloc(hr->inspect, cap * sizeof *fds);
    if (fds == NULL) {
      close(fd);
      return orr_error_set(e, ORR_ENOMEM, "out of memory");
    }
    hr->inspect = fds;
    hr->inspectcap = cap;
  }
  hr->inspect[hr->ninspect++] = fd;
  return 0;
}

/* Holds fd (taken) as the next descriptor; its index, or -1 out of memory
** (fd closed). */
static int keep_as(orr_hostres *hr, int fd, orr_hr_write w) {
  if (hr->n == hr->cap) {
    size_t cap = hr->cap ? hr->cap * 2 : 8;
    int *fds = realloc(hr->fds, cap * sizeof *fds);
    orr_hr_write *ws = fds ? realloc(hr->writes, cap * sizeof *ws) : NULL;
    if (fds != NULL)
      hr->fds = fds;
    if (ws == NULL) {
      if (fd >= 0)
        close(fd);
      return -1;
    }
    hr->writes = ws;
    hr->cap = cap;
  }
  hr->fds[hr->n] = fd;
  hr->writes[hr->n] = w;
  return (int)hr->n++;
}

static int keep(orr_hostres *hr, int fd) {
  return keep_as(hr, fd, ORR_HR_READ);
}

static int kept(orr_hostres *hr, int fd, int *index, orr_error *e) {
  if ((*index = keep(hr, fd)) < 0)
    return orr_error_set(e, ORR_ENOMEM, "out of memory");
  return 0;
}

orr_hostres *orr__hostres_new(const orr_policy *p, orr_hr_when when, bool dry) {
  orr_hostres *hr = calloc(1, sizeof *hr);
  if (hr == NULL)
    return NULL;
  hr->policy = p;
  hr->when = when;
  hr->dry = dry;
  return hr;
}

void orr__hostres_free(orr_hostres *hr) {
  if (hr == NULL)
    return;
  for (size_t i = 0; i < hr->n; i++)
    if (hr->fds[i] >= 0)
      close(hr->fds[i]);
  for (size_t i = 0; i < hr->ninspect; i++)
    close(hr->inspect[i]);
  free(hr->fds);
  free(hr->writes);
  free(hr->fdsets);
  free(hr->inspect);
  free(hr);
}

const orr_policy *orr__hostres_policy(const orr_hostres *hr) {
  return hr ? hr->policy : NULL;
}

void orr__hostres_pass_fds(orr_hostres *hr) {
  if (hr != NULL)
    hr->pass_fds = true;
}

bool orr__hostres_fd_mode(const orr_hostres *hr) {
  return hr != NULL && (hr->policy != NULL || hr->pass_fds);
}

static int copy_ref(const char *path, char *ref, size_t size, const char *what,
                    orr_error *e) {
  if ((size_t)snprintf(ref, size, "%s", path) >= size)
    return orr_error_set(e, ORR_EINVAL, "%s: %s is too long", what, path);
  return 0;
}

/* The reference of held descriptor index for a QEMU option that takes
** only a path: the child's /proc/self/fd/N. Only at boot: at run time
** there is no inherited descriptor to name. */
static int proc_ref(orr_hostres *hr, int index, const char *what, char *ref,
                    size_t size, orr_error *e) {
  if (hr->when != ORR_HR_BOOT)
    return orr_error_set(e, ORR_ENOTSUP,
                         "%s: a running QEMU cannot be handed this file", what);
  snprintf(ref, size, "/proc/self/fd/%d", 3 + index);
  return 0;
}

int orr__hostres_file(orr_hostres *hr, const char *path, bool writable,
                      const char *what, char *ref, size_t size, struct stat *st,
                      orr_error *e) {
  struct stat own;
  bool outside;
  int fd, index, rc;
  /* Unconfined, QEMU opens the name and reports what is wrong with it,
  ** unless the caller needs to know the file now. */
  if (!orr__hostres_fd_mode(hr) && st == NULL)
    return copy_ref(path, ref, size, what, e);
  if ((rc = orr__policy_open_file(orr__hostres_policy(hr), path, writable, what,
                                  &fd, &outside, st ? st : &own, e)) != 0)
    return rc;
  if (!orr__hostres_fd_mode(hr)) {
    close(fd);
    return copy_ref(path, ref, size, what, e);
  }
  if ((index = keep_as(hr, fd, writable ? ORR_HR_WRITE_FILE : ORR_HR_READ)) < 0)
    return orr_error_set(e, ORR_ENOMEM, "out of memory");
  return proc_ref(hr, index, what, ref, size, e);
}

int orr__hostres_dir(orr_hostres *hr, const char *path, bool writable,
                     const char *what, char *ref, size_t size, orr_error *e) {
  int fd, index, rc;
  if (!orr__hostres_fd_mode(hr))
    return copy_ref(path, ref, size, what, e);
  if ((rc = orr__policy_open_dir(hr->policy, path, writable, what, &fd, e)) !=
      0)
    return rc;
  if ((index = keep_as(hr, fd, writable ? ORR_HR_WRITE_TREE : ORR_HR_READ)) < 0)
    return orr_error_set(e, ORR_ENOMEM, "out of memory");
  return proc_ref(hr, index, what, ref, size, e);
}

int orr__hostres_listen(orr_hostres *hr, const char *path, const char *what,
                        int *fdnum, orr_error *e) {
  int fd = -1, index, rc;
  *fdnum = -1;
  if (!orr__hostres_fd_mode(hr))
    return 0;
  /* A dry run binds nothing: that would leave a socket file behind. */
  if (hr->dry)
    rc = orr__policy_check_new_dir(hr->policy, path, what, e);
  else
    rc = orr__policy_listen(hr->policy, path, what, &fd, e);
  if (rc != 0)
    return rc;
  if ((rc = kept(hr, fd, &index, e)) != 0)
    return rc;
  if (hr->when != ORR_HR_BOOT)
    return orr_error_set(e, ORR_ENOTSUP,
                         "%s: a running QEMU cannot be handed a socket", what);
  *fdnum = 3 + index;
  return 0;
}

int orr__hostres_image(orr_hostres *hr, const char *path, bool writable,
                       const char *what, int fdset, bool lenient, int *fd,
                       struct stat *st, char *ref, size_t size,
                       bool *locking_off, orr_error *e) {
  bool outside;
  int index, rc;
  *fd = -1;
  *locking_off = false;
  if (!orr__hostres_fd_mode(hr)) {
    /* By name; opened here only to read its header. */
    if ((rc = orr__policy_open_file(NULL, path, false, what, fd, &outside, st,
                                    e)) != 0) {
      *fd = -1;
      return lenient ? copy_ref(path, ref, size, what, e) : rc;
    }
    if (hr != NULL && (rc = inspect(hr, *fd, e)) != 0)
      return rc;
    return copy_ref(path, ref, size, what, e);
  }
  if ((rc = orr__policy_open_file(hr->policy, path, writable, what, fd,
                                  &outside, st, e)) != 0)
    return rc;
  *locking_off = outside;
  if ((rc = kept(hr, *fd, &index, e)) != 0)
    return rc;
  if (hr->nsets == hr->setcap) {
    size_t cap = hr->setcap ? hr->setcap * 2 : 8;
    orr_hr_fdset *sets = realloc(hr->fdsets, cap * sizeof *sets);
    if (sets == NULL)
      return orr_error_set(e, ORR_ENOMEM, "out of memory");
    hr->fdsets = sets;
    hr->setcap = cap;
  }
  hr->fdsets[hr->nsets].id = fdset;
  hr->fdsets[hr->nsets++].index = index;
  snprintf(ref, size, "/dev/fdset/%d", fdset);
  return 0;
}

int orr__hostres_host_device(const orr_hostres *hr, const char *what,
                             const char *device, orr_error *e) {
  if (orr__hostres_policy(hr) == NULL)
    return 0;
  return orr_error_set(e, ORR_EPERM,
                       "sandbox: %s: %s is a host device, which a sandboxed "
                       "recipe may not attach or create",
                       what, device);
}

int orr__hostres_restore(orr_hostres *hr, const char *path, const char *what,
                         int *fdnum, orr_error *e) {
  struct stat st;
  bool outside;
  int fd = -1, index, rc;
  /* A dry run of an unconfined engine reads nothing (it never did). */
  if ((hr->policy != NULL || !hr->dry) &&
      (rc = orr__policy_open_file(hr->policy, path, false, what, &fd, &outside,
                                  &st, e)) != 0)
    return rc;
  if ((rc = kept(hr, fd, &index, e)) != 0)
    return rc;
  *fdnum = 3 + index;
  return 0;
}

int orr__hostres_save(orr_hostres *hr, const char *path, const char *what,
                      int *index, orr_error *e) {
  int fd = -1, rc;
  if (path == NULL || path[0] != '/')
    return orr_error_set(e, ORR_EINVAL,
                         "%s must be an absolute path, got \"%s\"", what,
                         path ? path : "nothing");
  if (hr->dry) {
    if (hr->policy != NULL &&
        (rc = orr__policy_check_write(hr->policy, path, what, e)) != 0)
      return rc;
  } else if (hr->policy != NULL) {
    if ((rc = orr_policy_open(hr->policy, path, O_WRONLY | O_CREAT | O_TRUNC,
                              what, &fd, e)) != 0)
      return rc;
    fchmod(fd, 0600);
  } else if ((fd = open(path,
                        O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY,
                        0600)) < 0) {
    return orr_error_set(e, errno == ENOENT ? ORR_ENOENT : ORR_EIO,
                         "%s: cannot create %s: %s", what, path,
                         strerror(errno));
  }
  return kept(hr, fd, index, e);
}

int orr__hostres_dup(const orr_hostres *hr, int index) {
  if (hr == NULL || index < 0 || (size_t)index >= hr->n || hr->fds[index] < 0)
    return -1;
  return fcntl(hr->fds[index], F_DUPFD_CLOEXEC, 3);
}

const int *orr__hostres_fds(const orr_hostres *hr, size_t *n) {
  *n = hr->n;
  return hr->fds;
}

const orr_hr_fdset *orr__hostres_fdsets(const orr_hostres *hr, size_t *n) {
  *n = hr ? hr->nsets : 0;
  return hr ? hr->fdsets : NULL;
}

const orr_hr_write *orr__hostres_writes(const orr_hostres *hr) {
  return hr->writes;
}

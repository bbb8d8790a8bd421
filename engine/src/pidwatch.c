/*
** Watching and proving processes that are not our children (pidwatch.h).
*/
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pidwatch.h"

struct orr_pidwatch {
  uv_poll_t poll;
  int fd;
  int fired;
  orr_pidwatch_cb exit_cb, close_cb;
  void *arg;
};

static void on_readable(uv_poll_t *h, int status, int events) {
  orr_pidwatch *w = h->data;
  (void)status, (void)events;
  if (w->fired)
    return;
  w->fired = 1;
  uv_poll_stop(&w->poll);
  if (w->exit_cb)
    w->exit_cb(w->arg);
}

int orr__pidwatch_start(uv_loop_t *loop, int fd, orr_pidwatch_cb exit_cb,
                        void *arg, orr_pidwatch **out, orr_error *e) {
  orr_pidwatch *w = calloc(1, sizeof *w);
  if (w == NULL) {
    close(fd);
    return orr_error_set(e, ORR_ENOMEM, "out of memory");
  }
  w->fd = fd;
  w->exit_cb = exit_cb;
  w->arg = arg;
  uv_poll_init(loop, &w->poll, fd);
  w->poll.data = w;
  uv_poll_start(&w->poll, UV_READABLE, on_readable);
  *out = w;
  return 0;
}

/* Reads a small /proc file whole; its length, or -1. */
static ssize_t read_proc(int pid, const char *file, char *buf, size_t size) {
  char path[64];
  ssize_t n, off = 0;
  int fd;
  snprintf(path, sizeof path, "/proc/%d/%s", pid, file);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  while ((size_t)off < size - 1 &&
         (n = read(fd, buf + off, size - 1 - (size_t)off)) > 0)
    off += n;
  close(fd);
  buf[off] = '\0';
  return off;
}

unsigned long long orr__pid_start_time(int pid) {
  char buf[1024], *p;
  unsigned long long t = 0;
  /* The command name (field 2) may hold spaces and parentheses: the
  ** fields after it start after its last ')'. starttime is field 22. */
  if (pid <= 0 || read_proc(pid, "stat", buf, sizeof buf) <= 0 ||
      (p = strrchr(buf, ')')) == NULL)
    return 0;
  if (sscanf(p + 1,
             " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d "
             "%*d %*d %*d %*d %llu",
             &t) != 1)
    return 0;
  return t;
}

int orr__pid_prove(int pid, unsigned long long start_time, const char *arg,
                   int *pidfd, orr_error *e) {
  static char cmdline[128 * 1024];
  char path[64];
  struct stat st;
  struct pollfd pf;
  unsigned long long t;
  ssize_t n, i;
  bool named = false;
  int fd;
  *pidfd = -1;
  if (pid <= 1)
    return orr_error_set(e, ORR_EPERM, "pid %d is no VM's process", pid);
  fd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0)
    return orr_error_set(e, errno == ESRCH ? ORR_ENOENT : ORR_ENOTSUP,
                         "QEMU pid %d %s", pid,
                         errno == ESRCH ? "is gone" : strerror(errno));
  snprintf(path, sizeof path, "/proc/%d", pid);
  if (stat(path, &st) != 0 || st.st_uid != geteuid()) {
    close(fd);
    return orr_error_set(e, ORR_EPERM,
                         "pid %d is not this VM's QEMU: it runs as uid %u, "
                         "not ours (%u)",
                         pid, (unsigned)st.st_uid, (unsigned)geteuid());
  }
  t = orr__pid_start_time(pid);
  if (t == 0 || t != start_time) {
    close(fd);
    return orr_error_set(e, ORR_EPERM,
                         "pid %d is not this VM's QEMU: it started at tick "
                         "%llu, the VM's QEMU at %llu (the pid was reused)",
                         pid, t, start_time);
  }
  n = read_proc(pid, "cmdline", cmdline, sizeof cmdline);
  for (i = 0; n > 0 && i < n; i += (ssize_t)strlen(cmdline + i) + 1)
    if (strcmp(cmdline + i, arg) == 0)
      named = true;
  if (!named) {
    close(fd);
    return orr_error_set(e, ORR_EPERM,
                         "pid %d is not this VM's QEMU: its command line "
                         "does not hold %s",
                         pid, arg);
  }
  /* Still alive through the pidfd: then what /proc showed was it. */
  pf.fd = fd;
  pf.events = POLLIN;
  if (poll(&pf, 1, 0) != 0) {
    close(fd);
    return orr_error_set(e, ORR_ENOENT, "QEMU pid %d is gone", pid);
  }
  *pidfd = fd;
  return 0;
}

int orr__pidwatch_kill(orr_pidwatch *w, int signum) {
  if (w->fired)
    return ORR_ESTATE;
  if (syscall(SYS_pidfd_send_signal, w->fd, signum, NULL, 0) != 0)
    return ORR_ESTATE;
  return 0;
}

static void on_closed(uv_handle_t *h) {
  orr_pidwatch *w = h->data;
  close(w->fd);
  if (w->close_cb)
    w->close_cb(w->arg);
  free(w);
}

void orr__pidwatch_close(orr_pidwatch *w, orr_pidwatch_cb cb) {
  w->close_cb = cb;
  w->exit_cb = NULL;
  uv_close((uv_handle_t *)&w->poll, on_closed);
}

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
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

int orr__pidwatch_start(uv_loop_t *loop, int pid, orr_pidwatch_cb exit_cb,
                        void *arg, orr_pidwatch **out, orr_error *e) {
  orr_pidwatch *w;
  int fd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0)
    return orr_error_set(e, errno == ESRCH ? ORR_ENOENT : ORR_ENOTSUP,
                         "cannot watch pid %d: %s", pid, strerror(errno));
  w = calloc(1, sizeof *w);
  w->fd = fd;
  w->exit_cb = exit_cb;
  w->arg = arg;
  uv_poll_init(loop, &w->poll, fd);
  w->poll.data = w;
  uv_poll_start(&w->poll, UV_READABLE, on_readable);
  *out = w;
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

/*
** A JSON-lines connection on a unix socket; see jsonconn.h. One job: bytes
** and lines. What a line means is the protocol client's business.
**
** Handles: the retry timer and, once connected, the pipe. c is freed when
** both are closed after orr__jc_close().
*/
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "jsonconn.h"
#include "orrery/error.h"

#define RETRY_FIRST_MS 2
#define RETRY_MAX_MS 100
#define NS_PER_MS UINT64_C(1000000)

struct orr_jc {
  uv_loop_t *loop;
  uv_pipe_t pipe;
  uv_timer_t retry;
  int pipe_open; /* initialized and not yet closing */
  int handles;   /* not yet closed */
  int closing;   /* orr__jc_close() was called: no callback but its own */
  int ended;     /* ended() was called */
  int writes;    /* uv_write()s not yet completed */
  uint64_t retry_ms;
  orr_jc_options o;
  void (*close_cb)(void *arg);
  void *close_arg;
  char path[ORR_JC_PATH_MAX];
  orr_framer framer;
  char rbuf[64 * 1024];
};

typedef struct {
  uv_write_t req;
  char *text;
} write_req;

/* ---- The end ------------------------------------------------------------ */

static void on_handle_closed(uv_handle_t *h) {
  orr_jc *c = h->data;

  if (--c->handles > 0)
    return;
  /* Every write callback has run (uv_close cancels them first). */
  if (c->close_cb != NULL)
    c->close_cb(c->close_arg);
  orr_framer_free(&c->framer);
  free(c);
}

void orr__jc_close(orr_jc *c, void (*cb)(void *arg), void *arg) {
  if (c->closing)
    return;
  c->closing = 1;
  c->close_cb = cb;
  c->close_arg = arg;
  if (c->pipe_open) {
    c->pipe_open = 0;
    uv_read_stop((uv_stream_t *)&c->pipe);
    uv_close((uv_handle_t *)&c->pipe, on_handle_closed);
  }
  uv_close((uv_handle_t *)&c->retry, on_handle_closed);
}

static void end(orr_jc *c, orr_jc_end what, int code) {
  if (c->closing || c->ended)
    return;
  c->ended = 1;
  c->o.ended(c->o.arg, what, code);
}

/* ---- Writing ------------------------------------------------------------ */

static void on_written(uv_write_t *req, int status) {
  write_req *w = (write_req *)req;
  orr_jc *c = req->data;

  free(w->text);
  free(w);
  c->writes--;
  if (c->closing)
    return;
  if (status < 0 && status != UV_ECANCELED) {
    end(c, ORR_JC_WRITE, status);
    return;
  }
  if (c->writes == 0 && c->o.drained != NULL)
    c->o.drained(c->o.arg);
}

/* Queues n buffers; w->text (may be NULL) is freed when written. */
static int queue_write(orr_jc *c, write_req *w, uv_buf_t *bufs, unsigned n) {
  w->req.data = c;
  if (!c->pipe_open ||
      uv_write(&w->req, (uv_stream_t *)&c->pipe, bufs, n, on_written) != 0) {
    free(w->text);
    free(w);
    return ORR_EIO;
  }
  c->writes++;
  return 0;
}

/* Every line sent, but those with a descriptor, goes out here. */
int orr__jc_write(orr_jc *c, char *text, int ff) {
  static char newline[] = "\n", delim[] = "\xff";
  write_req *w = malloc(sizeof *w);
  uv_buf_t bufs[3];
  unsigned n = 0;

  if (w == NULL) {
    free(text);
    return ORR_ENOMEM;
  }
  /* 0xFF resets a guest agent's JSON parser, whatever half a line it has. */
  if (ff)
    bufs[n++] = uv_buf_init(delim, 1);
  bufs[n++] = uv_buf_init(text, (unsigned)strlen(text));
  bufs[n++] = uv_buf_init(newline, 1);
  w->text = text;
  return queue_write(c, w, bufs, n);
}

/* The rest of a line whose start went out with its descriptor. */
static int write_tail(orr_jc *c, const char *tail, size_t n) {
  write_req *w = malloc(sizeof *w);
  uv_buf_t buf;

  if (w == NULL || (w->text = malloc(n)) == NULL) {
    free(w);
    return ORR_ENOMEM;
  }
  memcpy(w->text, tail, n);
  buf = uv_buf_init(w->text, (unsigned)n);
  return queue_write(c, w, &buf, 1);
}

/* Lines with a descriptor go out here. */
int orr__jc_write_fd(orr_jc *c, const char *text, int fd) {
  size_t len = strlen(text);
  char *line;
  char cbuf[CMSG_SPACE(sizeof(int))];
  struct msghdr msg;
  struct iovec iov;
  struct cmsghdr *cm;
  uv_os_fd_t sock;
  ssize_t n;
  int rc = 0;

  if (!c->pipe_open || uv_fileno((uv_handle_t *)&c->pipe, &sock) != 0)
    return ORR_EIO;
  if ((line = malloc(len + 1)) == NULL)
    return ORR_ENOMEM;
  memcpy(line, text, len);
  line[len] = '\n';
  memset(&msg, 0, sizeof msg);
  memset(cbuf, 0, sizeof cbuf);
  iov.iov_base = line;
  iov.iov_len = len + 1;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf;
  msg.msg_controllen = sizeof cbuf;
  cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cm), &fd, sizeof(int));
  do
    n = sendmsg(sock, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    rc = errno == EAGAIN || errno == EWOULDBLOCK ? 1 : ORR_EVMGONE;
  else if ((size_t)n < len + 1)
    /* The descriptor went with the first byte; the rest is plain. */
    rc = write_tail(c, line + n, len + 1 - (size_t)n);
  free(line);
  return rc;
}

int orr__jc_writes(const orr_jc *c) {
  return c->writes;
}

/* ---- Reading ------------------------------------------------------------ */

void orr__jc_resync(orr_jc *c) {
  orr_framer_resync(&c->framer);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  orr_jc *c = h->data;

  (void)suggested;
  /* One read at a time, consumed before the next: one buffer suffices. */
  *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

/* Every line read reaches the client through the framer's callback,
** o.line, called from here. */
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  orr_jc *c = s->data;
  int rc;

  if (n < 0) {
    end(c, ORR_JC_READ, (int)n);
    return;
  }
  rc = orr_framer_feed(&c->framer, buf->base, (size_t)n);
  if (rc < 0)
    end(c, ORR_JC_FRAMING, rc);
}

/* ---- Connecting --------------------------------------------------------- */

static void failed(orr_jc *c, int status, orr_jc_stage stage, const char *why) {
  if (!c->closing)
    c->o.connected(c->o.arg, status, stage, why);
}

static void connected(orr_jc *c, int fd) {
  int rc;

  uv_pipe_init(c->loop, &c->pipe, 0);
  c->pipe.data = c;
  c->handles++;
  c->pipe_open = 1;
  rc = uv_pipe_open(&c->pipe, fd);
  if (rc != 0)
    close(fd);
  else
    rc = uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
  if (rc != 0) {
    failed(c, ORR_EIO, ORR_JC_OPEN, uv_strerror(rc));
    return;
  }
  if (c->o.weak)
    uv_unref((uv_handle_t *)&c->pipe);
  c->o.connected(c->o.arg, 0, ORR_JC_OPEN, "");
}

/* A plain non-blocking connect(), which on a unix socket completes or fails
** at once, so retrying is a timer and a syscall; the fd then becomes a
** uv_pipe_t. */
static void try_connect(uv_timer_t *t) {
  orr_jc *c = t->data;
  struct sockaddr_un sa;
  uint64_t now, left;
  int fd, err;

  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    failed(c, ORR_EIO, ORR_JC_SOCKET, strerror(errno));
    return;
  }
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, c->path, sizeof c->path);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
    connected(c, fd);
    return;
  }
  err = errno;
  close(fd);
  if (err == ECONNREFUSED && c->o.refused_is_gone) {
    failed(c, ORR_EVMGONE, ORR_JC_CONNECT, strerror(err));
    return;
  }
  /* The listener binds the socket some milliseconds after it was spawned,
  ** and a full backlog (EAGAIN) clears as soon as it accepts. */
  if (err == ENOENT || err == ECONNREFUSED || err == EAGAIN || err == EINTR) {
    /* Timers run on the loop's cached clock and may fire a little early:
    ** ask the clock, rounding up, rather than trust that they are late. */
    now = uv_hrtime();
    left = now >= c->o.deadline
               ? 0
               : (c->o.deadline - now + NS_PER_MS - 1) / NS_PER_MS;
    if (left == 0) {
      failed(c, ORR_ETIMEDOUT, ORR_JC_CONNECT, strerror(err));
      return;
    }
    uv_timer_start(t, try_connect, c->retry_ms < left ? c->retry_ms : left, 0);
    c->retry_ms =
        c->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : c->retry_ms * 2;
    return;
  }
  failed(c, err == EACCES || err == EPERM ? ORR_EPERM : ORR_EIO, ORR_JC_CONNECT,
         strerror(err));
}

int orr__jc_open(uv_loop_t *loop, const char *path, const orr_jc_options *o,
                 orr_jc **out) {
  struct sigaction sa;
  orr_jc *c;

  *out = NULL;
  if (path == NULL || path[0] == '\0' || strlen(path) >= ORR_JC_PATH_MAX)
    return ORR_EINVAL;
  c = calloc(1, sizeof *c);
  if (c == NULL)
    return ORR_ENOMEM;
  c->loop = loop;
  c->o = *o;
  strcpy(c->path, path);
  c->retry_ms = RETRY_FIRST_MS;
  orr_framer_init(&c->framer, o->max_line, o->line, o->arg);
  uv_timer_init(loop, &c->retry);
  c->retry.data = c;
  c->handles = 1;
  uv_timer_start(&c->retry, try_connect, 0, 0);

  /* A write to a peer that just died raises SIGPIPE, whose default action
  ** would kill the whole engine; EPIPE is what we want instead. */
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
    signal(SIGPIPE, SIG_IGN);
  *out = c;
  return 0;
}

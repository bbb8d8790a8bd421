/*
** libFuzzer target: bytes as if QEMU had sent them, through the line framer
** and the QMP client.
**
** Part 1, the framer alone: the input is fed once whole and once in chunks
** whose sizes come from the input itself; both runs must hand out the same
** lines in the same order (the framer promises any split gives the same
** result), no line may hold a "\n", and none may exceed the bound.
**
** Part 2, the QMP client on a real unix socket: the fuzzer listens, the
** client connects through the public API with three commands queued (ids
** 1..3, capabilities 4), and the input is written to the accepted socket
** before its write side is shut. The client must then call ready_cb once,
** every reply_cb exactly once, closed_cb once and the close callback once,
** whatever the bytes were: a greeting, replies matched or not, events,
** garbage, overlong lines. No socket is faked, so what runs is the code
** that runs against QEMU.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "orrery/framer.h"
#include "orrery/qmp.h"

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "fuzz_qmp: %s:%d: check failed: %s\n", __FILE__,         \
              __LINE__, #cond);                                                \
      abort();                                                                 \
    }                                                                          \
  } while (0)

/* ---- Part 1: the framer -------------------------------------------------- */

/* A small bound, so overlong lines are reached by short inputs too. */
#define LINE_MAX_BYTES 256

typedef struct {
  char *text; /* every line, each followed by "\n" */
  size_t len, cap;
  int lines;
} line_log;

static int log_line(void *arg, const char *line, size_t len) {
  line_log *l = arg;
  CHECK(len > 0 && len <= LINE_MAX_BYTES);
  CHECK(memchr(line, '\n', len) == NULL);
  if (l->len + len + 1 > l->cap) {
    l->cap = (l->len + len + 1) * 2;
    l->text = realloc(l->text, l->cap);
    CHECK(l->text != NULL);
  }
  memcpy(l->text + l->len, line, len);
  l->len += len;
  l->text[l->len++] = '\n';
  l->lines++;
  return 0;
}

static void fuzz_framer(const uint8_t *data, size_t size) {
  line_log whole = {0}, split = {0};
  orr_framer f;
  size_t i = 0, step;
  int rc_whole, rc_split = 0;

  orr_framer_init(&f, LINE_MAX_BYTES, log_line, &whole);
  rc_whole = orr_framer_feed(&f, (const char *)data, size);
  orr_framer_free(&f);

  orr_framer_init(&f, LINE_MAX_BYTES, log_line, &split);
  while (i < size && rc_split == 0) {
    /* Chunk sizes 1..16 taken from the data itself. */
    step = 1 + (data[i] & 15);
    if (step > size - i)
      step = size - i;
    rc_split = orr_framer_feed(&f, (const char *)data + i, step);
    i += step;
  }
  orr_framer_free(&f);

  /* An overlong line is an error either way; before it, the same lines. */
  CHECK((rc_whole == 0) == (rc_split == 0));
  if (rc_whole == 0) {
    CHECK(whole.lines == split.lines);
    CHECK(whole.len == split.len);
    CHECK(whole.len == 0 || memcmp(whole.text, split.text, whole.len) == 0);
  } else {
    CHECK(rc_whole == ORR_EIO && rc_split == ORR_EIO);
  }
  free(whole.text);
  free(split.text);
}

/* ---- Part 2: the QMP client ---------------------------------------------- */

static uv_loop_t loop;
static int listen_fd = -1;
static char sock_path[108];

typedef struct {
  int ready, closed, released;
  int replies[8];
  int late_replies;
} counts;

static void on_ready(void *arg, int status) {
  (void)status;
  ((counts *)arg)->ready++;
}

static void on_closed(void *arg, int reason) {
  (void)reason;
  ((counts *)arg)->closed++;
}

static void on_released(void *arg) {
  ((counts *)arg)->released++;
}

typedef struct {
  counts *c;
  int slot;
} reply_ctx;

static reply_ctx ctxs[8];

static void on_reply(void *arg, int status, json_t *result,
                     const char *errmsg) {
  reply_ctx *r = arg;
  CHECK(errmsg != NULL);
  CHECK(status == 0 || status == ORR_EBACKEND || status == ORR_EVMGONE ||
        status == ORR_ECANCELED);
  /* A success carries QEMU's "return" value; a failure from QEMU its error
  ** object; the connection's own failures nothing. */
  if (status == ORR_EVMGONE || status == ORR_ECANCELED)
    CHECK(result == NULL);
  if (status == 0)
    CHECK(result != NULL);
  r->c->replies[r->slot]++;
}

static void on_event(void *arg, const char *event, json_t *data,
                     int64_t seconds, int64_t micros) {
  (void)arg, (void)data, (void)seconds, (void)micros;
  CHECK(event != NULL);
}

static void setup(void) {
  struct sockaddr_un sa;
  char dir[] = "/tmp/orr-fuzz-qmp-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  snprintf(sock_path, sizeof sock_path, "%s/qmp.sock", dir);
  CHECK(uv_loop_init(&loop) == 0);
  listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  CHECK(listen_fd >= 0);
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
  CHECK(bind(listen_fd, (struct sockaddr *)&sa, sizeof sa) == 0);
  CHECK(listen(listen_fd, 4) == 0);
}

/* Writes all of data (the client reads meanwhile, so run the loop too). */
static void write_all(int fd, const uint8_t *data, size_t size) {
  while (size > 0) {
    ssize_t n = write(fd, data, size);
    if (n > 0) {
      data += n;
      size -= (size_t)n;
    } else if (n < 0 && errno == EAGAIN) {
      uv_run(&loop, UV_RUN_NOWAIT);
    } else {
      return; /* the client hung up (it dropped an overlong line) */
    }
  }
}

static void fuzz_client(const uint8_t *data, size_t size) {
  static const char *const cmds[3] = {"query-status", "device_del",
                                      "query-block"};
  counts c;
  orr_qmp_options o;
  orr_qmp *q = NULL;
  int fd, i;

  memset(&c, 0, sizeof c);
  memset(&o, 0, sizeof o);
  o.path = sock_path;
  o.timeout_ms = 5000;
  o.ready_cb = on_ready;
  o.closed_cb = on_closed;
  o.arg = &c;
  CHECK(orr_qmp_connect(&loop, &o, &q) == 0);
  orr_qmp_on_event(q, on_event, NULL);
  for (i = 0; i < 3; i++) {
    ctxs[i].c = &c;
    ctxs[i].slot = i;
    CHECK(orr_qmp_send(q, cmds[i],
                       i == 1 ? json_pack("{s:s}", "id", "x") : NULL, on_reply,
                       &ctxs[i]) == 0);
  }
  /* The first connect attempt runs from the loop. */
  while (!c.closed && (fd = accept4(listen_fd, NULL, NULL,
                                    SOCK_CLOEXEC | SOCK_NONBLOCK)) < 0)
    uv_run(&loop, UV_RUN_NOWAIT);
  CHECK(!c.closed);
  write_all(fd, data, size);
  /* EOF after the bytes, as when QEMU exits; the client's own writes still
  ** land in our receive queue, so it sees no reset. */
  shutdown(fd, SHUT_WR);
  while (!c.closed)
    uv_run(&loop, UV_RUN_ONCE);
  /* A command sent after the end fails with EVMGONE, from the loop. */
  ctxs[3].c = &c;
  ctxs[3].slot = 3;
  CHECK(orr_qmp_send(q, "query-status", NULL, on_reply, &ctxs[3]) == 0);
  CHECK(c.replies[3] == 0);
  orr_qmp_close(q, on_released);
  while (!c.released)
    uv_run(&loop, UV_RUN_ONCE);
  close(fd);
  CHECK(c.ready == 1 && c.closed == 1 && c.released == 1);
  for (i = 0; i < 4; i++)
    CHECK(c.replies[i] == 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (listen_fd < 0)
    setup();
  fuzz_framer(data, size);
  fuzz_client(data, size);
  return 0;
}

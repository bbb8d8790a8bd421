/*
** libFuzzer target: a guest agent (qemu-ga) that answers with the fuzzer's
** bytes, through the guest manager's client (engine/src/guest_agent.c):
** the 0xFF sync, the framer's resync, replies matched to commands in
** order, exec polling and file transfers.
**
** The input is a script of answers separated by the byte 0x1e: each time
** the client sends a line, the next answer is written back, with every
** "$ID" replaced by the id of the client's latest guest-sync-delimited (the
** client draws it at random, so a script could not know it). When the
** script runs out, the agent's side shuts down, as when the VM goes away.
** The socket is real; only the agent is played.
**
** What must hold: the open callback and every command's callback run
** exactly once, with a code the guest manager documents and a message,
** and closing the client afterwards frees everything (LeakSanitizer).
** Deadlines are short (the open 300 ms, a command 30 ms) and a client that
** goes quiet gets the next answer unasked after 2 ms, so no input waits
** long; timing makes a few inputs nondeterministic, which libFuzzer
** tolerates.
*/
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "orrery/guest.h"

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "fuzz_agent: %s:%d: check failed: %s\n", __FILE__,       \
              __LINE__, #cond);                                                \
      abort();                                                                 \
    }                                                                          \
  } while (0)

#define NCMDS 6

static uv_loop_t loop;
static int listen_fd = -1;
static char sock_path[108];

typedef struct {
  int calls, status;
} outcome;

/* The played agent. */
typedef struct {
  int fd;
  uv_poll_t poll;
  uv_timer_t nudge;          /* answers anyway when the client has gone quiet */
  const uint8_t *next, *end; /* the script still to answer with */
  char line[1 << 16];        /* the client's partial line */
  size_t len;
  char sync_id[32];
  int eof; /* our side is shut */
} agent;

static void on_done(void *arg, int status, const orr_error *e, json_t *result) {
  outcome *o = arg;
  (void)result;
  CHECK(e != NULL);
  CHECK(status == 0 || status == ORR_ETIMEDOUT || status == ORR_EVMGONE ||
        status == ORR_EBACKEND || status == ORR_ECANCELED ||
        status == ORR_EINVAL || status == ORR_EIO);
  CHECK(status == 0 || e->msg[0] != '\0');
  o->calls++;
  o->status = status;
}

static void setup(void) {
  struct sockaddr_un sa;
  char dir[] = "/tmp/orr-fuzz-agent-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  snprintf(sock_path, sizeof sock_path, "%s/qga.sock", dir);
  CHECK(uv_loop_init(&loop) == 0);
  listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  CHECK(listen_fd >= 0);
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
  CHECK(bind(listen_fd, (struct sockaddr *)&sa, sizeof sa) == 0);
  CHECK(listen(listen_fd, 4) == 0);
}

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w <= 0)
      return; /* the client hung up */
    p += w;
    n -= (size_t)w;
  }
}

/* Writes the next answer of the script, "$ID" replaced; shuts our side
** when the script is over. */
static void answer(agent *a) {
  const uint8_t *sep, *p;
  if (a->eof)
    return;
  if (a->next >= a->end) {
    shutdown(a->fd, SHUT_WR);
    a->eof = 1;
    return;
  }
  sep = memchr(a->next, 0x1e, (size_t)(a->end - a->next));
  if (sep == NULL)
    sep = a->end;
  for (p = a->next; p < sep;) {
    const uint8_t *id = NULL;
    for (const uint8_t *s = p; s + 3 <= sep; s++)
      if (memcmp(s, "$ID", 3) == 0) {
        id = s;
        break;
      }
    if (id == NULL) {
      write_all(a->fd, (const char *)p, (size_t)(sep - p));
      break;
    }
    write_all(a->fd, (const char *)p, (size_t)(id - p));
    write_all(a->fd, a->sync_id, strlen(a->sync_id));
    p = id + 3;
  }
  a->next = sep < a->end ? sep + 1 : sep;
}

static void on_nudge(uv_timer_t *t);

/* Each answer rearms the nudge: if the client asks nothing more for 2 ms
** (it waits for a sync answer the script broke, say), the next answer goes
** out unasked, as a confused agent's would, instead of the client sitting
** out its deadline. So an input costs about 2 ms per answer at most. */
static void answer_and_rearm(agent *a) {
  answer(a);
  if (!a->eof)
    uv_timer_start(&a->nudge, on_nudge, 2, 0);
}

static void on_nudge(uv_timer_t *t) {
  answer_and_rearm(t->data);
}

/* One line from the client: note a sync's id, then answer. */
static void on_request(agent *a, const char *line, size_t len) {
  json_t *msg;
  while (len > 0 && (unsigned char)line[0] == 0xff) {
    line++;
    len--;
  }
  msg = json_loadb(line, len, 0, NULL);
  CHECK(msg != NULL);                     /* the client sends JSON, always */
  if (getenv("FUZZ_AGENT_TRACE") != NULL) /* to write seeds by hand */
    fprintf(stderr, "agent got: %.*s\n", (int)len, line);
  if (strcmp(json_string_value(json_object_get(msg, "execute")),
             "guest-sync-delimited") == 0)
    snprintf(a->sync_id, sizeof a->sync_id, "%" JSON_INTEGER_FORMAT,
             json_integer_value(
                 json_object_get(json_object_get(msg, "arguments"), "id")));
  json_decref(msg);
  answer_and_rearm(a);
}

static void on_readable(uv_poll_t *h, int status, int events) {
  agent *a = h->data;
  ssize_t n;
  char *nl;
  (void)events;
  if (status < 0) {
    uv_poll_stop(h);
    return;
  }
  n = read(a->fd, a->line + a->len, sizeof a->line - a->len);
  if (n <= 0) {
    if (n == 0 || errno != EAGAIN)
      uv_poll_stop(h); /* the client closed */
    return;
  }
  a->len += (size_t)n;
  while ((nl = memchr(a->line, '\n', a->len)) != NULL) {
    size_t linelen = (size_t)(nl - a->line);
    on_request(a, a->line, linelen);
    memmove(a->line, nl + 1, a->len - linelen - 1);
    a->len -= linelen + 1;
  }
  CHECK(a->len < sizeof a->line); /* no command is that long */
}

static int all_done(const outcome *open, const outcome *cmds) {
  if (open->calls == 0)
    return 0;
  for (int i = 0; i < NCMDS; i++)
    if (cmds[i].calls == 0)
      return 0;
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const argv[] = {"cat", NULL};
  orr_guest_exec_req req;
  orr_guest_options o;
  orr_error e = {0, ""};
  outcome open = {0, 0}, cmds[NCMDS];
  orr_guest *g = NULL;
  agent *a;

  if (listen_fd < 0)
    setup();
  memset(cmds, 0, sizeof cmds);
  a = calloc(1, sizeof *a);
  CHECK(a != NULL);
  a->next = data;
  a->end = data + size;
  snprintf(a->sync_id, sizeof a->sync_id, "0");

  orr_guest_options_init(&o);
  o.timeout_ms = 300;
  o.command_timeout_ms = 30;
  CHECK(orr_guest_connect(&loop, sock_path, &o, on_done, &open, &g, &e) == 0);
  /* Queued before the agent is up: they run once the open succeeds, or
  ** fail with it. */
  orr_guest_ping(g, 0, on_done, &cmds[0]);
  orr_guest_command(g, "guest-info", NULL, 0, on_done, &cmds[1]);
  memset(&req, 0, sizeof req);
  req.argv = argv;
  req.input = "hi";
  req.input_len = 2;
  orr_guest_exec(g, &req, on_done, &cmds[2]);
  orr_guest_read_file(g, "/etc/hostname", 0, on_done, &cmds[3]);
  orr_guest_write_file(g, "/tmp/x", "hi", 2, 0, on_done, &cmds[4]);
  orr_guest_os_info(g, 0, on_done, &cmds[5]);

  while ((a->fd = accept4(listen_fd, NULL, NULL,
                          SOCK_CLOEXEC | SOCK_NONBLOCK)) < 0 &&
         open.calls == 0)
    uv_run(&loop, UV_RUN_ONCE);
  if (a->fd >= 0) {
    CHECK(uv_poll_init(&loop, &a->poll, a->fd) == 0);
    a->poll.data = a;
    uv_poll_start(&a->poll, UV_READABLE, on_readable);
    uv_timer_init(&loop, &a->nudge);
    a->nudge.data = a;
  }
  while (!all_done(&open, cmds))
    uv_run(&loop, UV_RUN_ONCE);
  orr_guest_close(g);
  if (a->fd >= 0) {
    uv_close((uv_handle_t *)&a->poll, NULL);
    uv_close((uv_handle_t *)&a->nudge, NULL);
  }
  uv_run(&loop, UV_RUN_DEFAULT); /* until the client's handles are closed */
  if (a->fd >= 0)
    close(a->fd);
  CHECK(open.calls == 1);
  for (int i = 0; i < NCMDS; i++)
    CHECK(cmds[i].calls == 1);
  free(a);
  return 0;
}

/*
** The QMP client against a real qemu-system-x86_64 (TCG, -S, in a private
** temp dir), then against a scripted fake server on the same loop for what
** QEMU will not do on request: garbage, unknown ids, a socket that appears
** late, an overlong line, a peer that hangs up.
*/
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include "orrery/framer.h"
#include "orrery/process.h"
#include "orrery/qmp.h"
#include "task.h"

/* Set around every orr_qmp_send(): a callback that runs inside it fails. */
static int in_send;

typedef struct {
  int calls;
  int status;
  json_t *result;
  char errmsg[256];
} reply;

static void on_reply(void *arg, int status, json_t *result,
                     const char *errmsg) {
  reply *r = arg;

  ASSERT(!in_send);
  ASSERT_NOT_NULL(errmsg);
  r->calls++;
  r->status = status;
  r->result = json_incref(result);
  snprintf(r->errmsg, sizeof r->errmsg, "%s", errmsg);
}

static int send_cb(orr_qmp *q, const char *cmd, json_t *args,
                   orr_qmp_reply_cb cb, void *arg) {
  int rc;

  in_send = 1;
  rc = orr_qmp_send(q, cmd, args, cb, arg);
  in_send = 0;
  return rc;
}

static int send_cmd(orr_qmp *q, const char *cmd, json_t *args, reply *r) {
  return send_cb(q, cmd, args, on_reply, r);
}

static void reply_free(reply *r) {
  json_decref(r->result);
  r->result = NULL;
}

typedef struct test_ctx test_ctx;
typedef void (*step_fn)(test_ctx *t);

struct test_ctx {
  uv_loop_t loop;
  orr_qmp *qmp;
  orr_process *qemu;
  uv_timer_t timer;
  char dir[256];
  char sock[300];
  int ready_calls, ready_status;
  int closed_calls, closed_reason;
  int close_calls;
  int logs;
  char events[8][32];
  int nevents;
  int64_t event_seconds;
  int exits, exit_signal;
  step_fn on_ready; /* the test's next move once ready */
  reply r[8];
};

static void on_ready(void *arg, int status) {
  test_ctx *t = arg;

  ASSERT(!in_send);
  t->ready_calls++;
  t->ready_status = status;
  if (status == 0 && t->on_ready != NULL)
    t->on_ready(t);
}

static void on_closed(void *arg, int reason) {
  test_ctx *t = arg;

  ASSERT(!in_send);
  t->closed_calls++;
  t->closed_reason = reason;
  ASSERT(!orr_qmp_is_ready(t->qmp));
}

static void on_close(void *arg) {
  test_ctx *t = arg;

  t->close_calls++;
}

static void on_log(void *arg, const char *msg) {
  test_ctx *t = arg;

  (void)msg;
  t->logs++;
}

static void on_event(void *arg, const char *event, json_t *data,
                     int64_t seconds, int64_t microseconds) {
  test_ctx *t = arg;

  (void)data;
  (void)microseconds;
  ASSERT_LT(t->nevents, 8);
  snprintf(t->events[t->nevents++], sizeof t->events[0], "%s", event);
  t->event_seconds = seconds;
}

static void ctx_init(test_ctx *t) {
  const char *tmp = getenv("TMPDIR");

  memset(t, 0, sizeof *t);
  ASSERT_UV_OK(uv_loop_init(&t->loop));
  snprintf(t->dir, sizeof t->dir, "%s/orr-qmp-XXXXXX",
           tmp != NULL ? tmp : "/tmp");
  ASSERT_NOT_NULL(mkdtemp(t->dir));
  snprintf(t->sock, sizeof t->sock, "%s/q.sock", t->dir);
}

static void ctx_connect(test_ctx *t, uint64_t timeout_ms) {
  orr_qmp_options o = {0};

  o.path = t->sock;
  o.timeout_ms = timeout_ms;
  o.ready_cb = on_ready;
  o.closed_cb = on_closed;
  o.log_cb = on_log;
  o.arg = t;
  ASSERT_OK(orr_qmp_connect(&t->loop, &o, &t->qmp));
  orr_qmp_on_event(t->qmp, on_event, t);
}

/* Closes the client, runs the loop dry, checks it is empty. */
static void ctx_finish(test_ctx *t) {
  int i;

  orr_qmp_close(t->qmp, on_close);
  ASSERT_EQ(t->close_calls, 0);
  MAKE_VALGRIND_HAPPY(&t->loop);
  ASSERT_EQ(t->close_calls, 1);
  ASSERT_EQ(t->ready_calls, 1);
  ASSERT_EQ(t->closed_calls, 1);
  for (i = 0; i < 8; i++)
    reply_free(&t->r[i]);
  unlink(t->sock);
  ASSERT_EQ(rmdir(t->dir), 0);
}

/* ---- a real QEMU ------------------------------------------------------ */

enum { R_STATUS, R_VERSION, R_UNKNOWN, R_CONT, R_STOP, R_INFLIGHT, R_AFTER };

static void on_qemu_exit(void *arg, int64_t status, int term_signal) {
  test_ctx *t = arg;

  (void)status;
  t->exits++;
  t->exit_signal = term_signal;
}

static void real_on_unknown(void *arg, int status, json_t *result,
                            const char *errmsg) {
  test_ctx *t = arg;

  on_reply(&t->r[R_UNKNOWN], status, result, errmsg);
  /* The replies came in order; now start the VM. */
  ASSERT_EQ(t->r[R_STATUS].calls, 1);
  ASSERT_EQ(t->r[R_VERSION].calls, 1);
  ASSERT_OK(send_cmd(t->qmp, "cont", NULL, &t->r[R_CONT]));
}

static void real_ready(test_ctx *t) {
  int major = 0, minor = -1, micro = -1;

  ASSERT_OK(orr_qmp_version(t->qmp, &major, &minor, &micro));
  ASSERT_EQ(major, 7);
  ASSERT_GE(minor, 0);
  ASSERT_GE(micro, 0);
  ASSERT_OK(send_cmd(t->qmp, "query-version", NULL, &t->r[R_VERSION]));
  ASSERT_OK(send_cb(t->qmp, "xyz", NULL, real_on_unknown, t));
  /* All three in flight at once: query-status was queued before ready. */
  ASSERT_EQ(
      t->r[R_STATUS].calls + t->r[R_VERSION].calls + t->r[R_UNKNOWN].calls, 0);
}

static void on_frozen(uv_timer_t *h) {
  test_ctx *t = h->data;

  /* QEMU is stopped with SIGSTOP and cannot have answered. */
  ASSERT_EQ(t->r[R_INFLIGHT].calls, 0);
  ASSERT_OK(orr_process_kill(t->qemu, SIGKILL));
  uv_close((uv_handle_t *)h, NULL);
}

static void real_on_stop(void *arg, int status, json_t *result,
                         const char *errmsg) {
  test_ctx *t = arg;

  on_reply(&t->r[R_STOP], status, result, errmsg);
  /* QEMU emits STOP while it executes `stop`, before the reply. */
  ASSERT_EQ(t->nevents, 2);
  /* Freeze QEMU, put a command in flight, then kill it for good. */
  ASSERT_OK(orr_process_kill(t->qemu, SIGSTOP));
  ASSERT_OK(send_cmd(t->qmp, "query-status", NULL, &t->r[R_INFLIGHT]));
  ASSERT_UV_OK(uv_timer_init(&t->loop, &t->timer));
  t->timer.data = t;
  ASSERT_UV_OK(uv_timer_start(&t->timer, on_frozen, 100, 0));
}

static void real_on_event(void *arg, const char *event, json_t *data,
                          int64_t seconds, int64_t microseconds) {
  test_ctx *t = arg;

  on_event(arg, event, data, seconds, microseconds);
  if (strcmp(event, "RESUME") == 0)
    ASSERT_OK(send_cb(t->qmp, "stop", NULL, real_on_stop, t));
}

static void real_closed(void *arg, int reason) {
  test_ctx *t = arg;

  on_closed(arg, reason);
  /* After the end: accepted, failed later with EVMGONE, never in here. */
  ASSERT_OK(send_cmd(t->qmp, "query-status", NULL, &t->r[R_AFTER]));
  ASSERT_EQ(t->r[R_AFTER].calls, 0);
}

static void test_real_qemu(void) {
  const char *argv[] = {"qemu-system-x86_64",
                        "-accel",
                        "tcg",
                        "-M",
                        "q35",
                        "-m",
                        "128",
                        "-nodefaults",
                        "-nographic",
                        "-S",
                        "-chardev",
                        NULL, /* socket,id=qmp,path=... */
                        "-mon",
                        "chardev=qmp,mode=control",
                        NULL};
  char chardev[400];
  orr_process_options po = {0};
  orr_qmp_options qo = {0};
  orr_error e = {0};
  test_ctx t;
  const char *status;
  int major = 0;

  ctx_init(&t);
  snprintf(chardev, sizeof chardev, "socket,id=qmp,path=%s,server=on,wait=off",
           t.sock);
  argv[11] = chardev;
  po.argv = argv;
  po.flags = ORR_PROCESS_KILL_WITH_PARENT;
  po.exit_cb = on_qemu_exit;
  po.arg = &t;
  ASSERT_OK(orr_process_spawn(&t.loop, &po, &t.qemu, &e));

  /* Right away: the socket most likely does not exist yet. */
  qo.path = t.sock;
  qo.ready_cb = on_ready;
  qo.closed_cb = real_closed;
  qo.log_cb = on_log;
  qo.arg = &t;
  t.on_ready = real_ready;
  ASSERT_OK(orr_qmp_connect(&t.loop, &qo, &t.qmp));
  orr_qmp_on_event(t.qmp, real_on_event, &t);
  ASSERT_ERR(orr_qmp_version(t.qmp, NULL, NULL, NULL), ORR_ESTATE);
  /* Queued until the handshake is done. */
  ASSERT_OK(send_cmd(t.qmp, "query-status", NULL, &t.r[R_STATUS]));
  ASSERT_EQ(t.ready_calls, 0);

  ASSERT_UV_OK(uv_run(&t.loop, UV_RUN_DEFAULT));

  ASSERT_EQ(t.ready_calls, 1);
  ASSERT_OK(t.ready_status);
  ASSERT_OK(orr_qmp_version(t.qmp, &major, NULL, NULL));
  ASSERT_EQ(major, 7);

  ASSERT_OK(t.r[R_STATUS].status);
  status = json_string_value(json_object_get(t.r[R_STATUS].result, "status"));
  ASSERT_STR_EQ(status, "prelaunch");

  ASSERT_OK(t.r[R_VERSION].status);
  ASSERT_EQ(json_integer_value(json_object_get(
                json_object_get(t.r[R_VERSION].result, "qemu"), "major")),
            7);

  ASSERT_EQ(t.r[R_UNKNOWN].calls, 1);
  ASSERT_ERR(t.r[R_UNKNOWN].status, ORR_EBACKEND);
  ASSERT_STR_EQ(t.r[R_UNKNOWN].errmsg, "The command xyz has not been found");
  ASSERT_STR_EQ(
      json_string_value(json_object_get(t.r[R_UNKNOWN].result, "class")),
      "CommandNotFound");

  ASSERT_OK(t.r[R_CONT].status);
  ASSERT_OK(t.r[R_STOP].status);
  ASSERT_EQ(t.nevents, 2);
  ASSERT_STR_EQ(t.events[0], "RESUME");
  ASSERT_STR_EQ(t.events[1], "STOP");
  ASSERT_GT(t.event_seconds, 1600000000);

  /* The kill: in-flight command, closed once, exit by signal 9. */
  ASSERT_EQ(t.r[R_INFLIGHT].calls, 1);
  ASSERT_ERR(t.r[R_INFLIGHT].status, ORR_EVMGONE);
  ASSERT_NULL(t.r[R_INFLIGHT].result);
  ASSERT_EQ(t.closed_calls, 1);
  ASSERT_ERR(t.closed_reason, ORR_EVMGONE);
  ASSERT_EQ(t.r[R_AFTER].calls, 1);
  ASSERT_ERR(t.r[R_AFTER].status, ORR_EVMGONE);
  ASSERT_EQ(t.exits, 1);
  ASSERT_EQ(t.exit_signal, SIGKILL);
  ASSERT_EQ(t.logs, 0); /* QEMU sent nothing worth complaining about */

  orr_process_close(t.qemu, NULL);
  ctx_finish(&t);
}

/* ---- a fake server ---------------------------------------------------- */

typedef struct server server;
typedef void (*server_msg_fn)(server *s, json_t *msg, json_t *id);

struct server {
  uv_pipe_t listener;
  uv_pipe_t conn;
  uv_shutdown_t shutdown;
  int connected;
  orr_framer framer;
  server_msg_fn on_msg;
  char rbuf[4096];
};

typedef struct {
  uv_write_t req;
  char data[];
} server_write;

static void on_server_written(uv_write_t *req, int status) {
  (void)status; /* EPIPE once the client dropped us is fine */
  free(req);
}

static void server_send_n(server *s, const char *text, size_t n) {
  server_write *w = malloc(sizeof *w + n);
  uv_buf_t buf;

  ASSERT_NOT_NULL(w);
  memcpy(w->data, text, n);
  buf = uv_buf_init(w->data, (unsigned)n);
  ASSERT_UV_OK(
      uv_write(&w->req, (uv_stream_t *)&s->conn, &buf, 1, on_server_written));
}

static void server_send(server *s, const char *text) {
  server_send_n(s, text, strlen(text));
}

/* Answers {"return":{}} (or ret) to the message with this id. */
static void server_return(server *s, json_t *id, json_t *ret) {
  json_t *msg =
      json_pack("{s:o, s:O}", "return", ret ? ret : json_object(), "id", id);
  char *text = json_dumps(msg, JSON_COMPACT);

  server_send(s, text);
  server_send(s, "\n");
  free(text);
  json_decref(msg);
}

static int server_line(void *arg, const char *line, size_t len) {
  server *s = arg;
  json_t *msg = json_loadb(line, len, 0, NULL);

  ASSERT_NOT_NULL(msg); /* the client only ever sends valid JSON */
  s->on_msg(s, msg, json_object_get(msg, "id"));
  json_decref(msg);
  return 0;
}

static void server_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  server *s = h->data;

  (void)size;
  *buf = uv_buf_init(s->rbuf, sizeof s->rbuf);
}

static void server_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  server *s = st->data;

  if (n < 0) {
    if (!uv_is_closing((uv_handle_t *)st))
      uv_close((uv_handle_t *)st, NULL);
    return;
  }
  ASSERT_OK(orr_framer_feed(&s->framer, buf->base, (size_t)n));
}

static void on_server_connection(uv_stream_t *l, int status) {
  server *s = l->data;

  ASSERT_UV_OK(status);
  ASSERT(!s->connected);
  ASSERT_UV_OK(uv_pipe_init(l->loop, &s->conn, 0));
  s->conn.data = s;
  s->connected = 1;
  ASSERT_UV_OK(uv_accept(l, (uv_stream_t *)&s->conn));
  ASSERT_UV_OK(
      uv_read_start((uv_stream_t *)&s->conn, server_alloc, server_read));
  /* The greeting in two pieces, as a slow peer would write it. */
  server_send(s, "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 3, ");
  server_send(s, "\"minor\": 1, \"major\": 9}, \"package\": \"\"}, "
                 "\"capabilities\": [\"oob\"]}}\r\n");
}

static void server_start(server *s, uv_loop_t *loop, const char *path,
                         server_msg_fn on_msg) {
  memset(s, 0, sizeof *s);
  s->on_msg = on_msg;
  orr_framer_init(&s->framer, 0, server_line, s);
  ASSERT_UV_OK(uv_pipe_init(loop, &s->listener, 0));
  s->listener.data = s;
  ASSERT_UV_OK(uv_pipe_bind(&s->listener, path));
  ASSERT_UV_OK(uv_listen((uv_stream_t *)&s->listener, 4, on_server_connection));
}

static void server_close_conn(server *s) {
  if (s->connected && !uv_is_closing((uv_handle_t *)&s->conn))
    uv_close((uv_handle_t *)&s->conn, NULL);
}

static void on_server_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  server_close_conn(req->data);
}

/* Hangs up after what was written so far has gone out. */
static void server_hang_up(server *s) {
  s->shutdown.data = s;
  ASSERT_UV_OK(
      uv_shutdown(&s->shutdown, (uv_stream_t *)&s->conn, on_server_shutdown));
}

static void server_stop(server *s) {
  server_close_conn(s);
  uv_close((uv_handle_t *)&s->listener, NULL);
  orr_framer_free(&s->framer);
}

static const char *cmd_of(json_t *msg) {
  return json_string_value(json_object_get(msg, "execute"));
}

/* Garbage, an unknown id, an unknown message and an event come before the
** reply to "a"; "b" gets an error; "c" is answered by hanging up. */
static void garbage_msg(server *s, json_t *msg, json_t *id) {
  const char *cmd = cmd_of(msg);

  if (strcmp(cmd, "qmp_capabilities") == 0) {
    server_return(s, id, NULL);
  } else if (strcmp(cmd, "a") == 0) {
    ASSERT_EQ(json_integer_value(
                  json_object_get(json_object_get(msg, "arguments"), "n")),
              5);
    server_send(s, "this is not json\n[1, 2]\n\"str\"\n");
    server_send(s, "{\"return\": {}, \"id\": 424242}\n{\"foo\": 1}\n");
    server_send(s, "{\"return\": {}}\n{\"event\": 7}\n");
    server_send(s, "{\"event\": \"TEST\", \"data\": {\"k\": 1}, \"times");
    server_send(s, "tamp\": {\"seconds\": 5, \"microseconds\": 6}}\r\n");
    server_return(s, id, json_pack("{s:b}", "ok", 1));
  } else if (strcmp(cmd, "b") == 0) {
    json_t *err = json_pack("{s:{s:s, s:s}, s:O}", "error", "class",
                            "GenericError", "desc", "nope", "id", id);
    char *text = json_dumps(err, 0);

    server_send(s, text);
    server_send(s, "\n");
    free(text);
    json_decref(err);
  } else if (strcmp(cmd, "c") == 0) {
    server_hang_up(s);
  }
}

static server the_server;

static void start_late(uv_timer_t *h) {
  test_ctx *t = h->data;

  server_start(&the_server, &t->loop, t->sock, garbage_msg);
  uv_close((uv_handle_t *)h, NULL);
}

static void garbage_ready(test_ctx *t) {
  int major = 0, minor = 0, micro = 0;

  ASSERT_OK(orr_qmp_version(t->qmp, &major, &minor, &micro));
  ASSERT_EQ(major * 10000 + minor * 100 + micro, 90103);
  ASSERT_OK(send_cmd(t->qmp, "b", NULL, &t->r[1]));
  ASSERT_OK(send_cmd(t->qmp, "c", NULL, &t->r[2]));
}

static void test_garbage_late_socket_hangup(void) {
  test_ctx t;

  ctx_init(&t);
  /* The socket shows up 50 ms after the client started trying. */
  ctx_connect(&t, 5000);
  t.on_ready = garbage_ready;
  ASSERT_OK(send_cmd(t.qmp, "a", json_pack("{s:i}", "n", 5), &t.r[0]));
  /* Refused synchronously, arguments freed all the same. */
  ASSERT_ERR(send_cmd(t.qmp, "a", json_array(), &t.r[7]), ORR_EINVAL);
  ASSERT_ERR(send_cmd(t.qmp, "", NULL, &t.r[7]), ORR_EINVAL);
  ASSERT_UV_OK(uv_timer_init(&t.loop, &t.timer));
  t.timer.data = &t;
  ASSERT_UV_OK(uv_timer_start(&t.timer, start_late, 50, 0));

  while (t.closed_calls == 0)
    uv_run(&t.loop, UV_RUN_ONCE);
  ASSERT_OK(t.ready_status);
  ASSERT_EQ(t.r[0].calls, 1);
  ASSERT_OK(t.r[0].status);
  ASSERT(json_is_true(json_object_get(t.r[0].result, "ok")));
  ASSERT_EQ(t.r[1].calls, 1);
  ASSERT_ERR(t.r[1].status, ORR_EBACKEND);
  ASSERT_STR_EQ(t.r[1].errmsg, "nope");
  ASSERT_EQ(t.r[2].calls, 1);
  ASSERT_ERR(t.r[2].status, ORR_EVMGONE);
  ASSERT_EQ(t.r[7].calls, 0);
  ASSERT_EQ(t.nevents, 1);
  ASSERT_STR_EQ(t.events[0], "TEST");
  ASSERT_EQ(t.event_seconds, 5);
  /* Not JSON, an array, a string, unknown id, unknown message, no id, an
  ** event without a name: each logged and skipped. */
  ASSERT_EQ(t.logs, 7);
  ASSERT_EQ(t.closed_calls, 1);
  ASSERT_ERR(t.closed_reason, ORR_EVMGONE);

  server_stop(&the_server);
  ctx_finish(&t);
}

/* ---- a line longer than the framer allows ------------------------------ */

static void overlong_msg(server *s, json_t *msg, json_t *id) {
  if (strcmp(cmd_of(msg), "qmp_capabilities") == 0) {
    server_return(s, id, NULL);
  } else {
    size_t n = ORR_FRAMER_DEFAULT_MAX + 1;
    char *big = malloc(n);

    ASSERT_NOT_NULL(big);
    memset(big, ' ', n);
    server_send_n(s, big, n);
    free(big);
  }
}

static void overlong_ready(test_ctx *t) {
  ASSERT_OK(send_cmd(t->qmp, "big", NULL, &t->r[0]));
}

static void test_overlong_line_drops(void) {
  test_ctx t;

  ctx_init(&t);
  server_start(&the_server, &t.loop, t.sock, overlong_msg);
  ctx_connect(&t, 0);
  t.on_ready = overlong_ready;
  while (t.closed_calls == 0)
    uv_run(&t.loop, UV_RUN_ONCE);
  ASSERT_ERR(t.closed_reason, ORR_EIO);
  ASSERT_ERR(t.r[0].status, ORR_EVMGONE);
  ASSERT_EQ(t.logs, 1);
  server_stop(&the_server);
  ctx_finish(&t);
}

/* ---- no socket at all, and giving up early ----------------------------- */

static void test_connect_timeout(void) {
  uint64_t start = uv_hrtime();
  test_ctx t;

  ctx_init(&t);
  ctx_connect(&t, 150);
  ASSERT_OK(send_cmd(t.qmp, "query-status", NULL, &t.r[0]));
  ASSERT_UV_OK(uv_run(&t.loop, UV_RUN_DEFAULT));
  ASSERT_GE((uv_hrtime() - start) / 1000000, 150);
  ASSERT_ERR(t.ready_status, ORR_ETIMEDOUT);
  ASSERT_ERR(t.closed_reason, ORR_ETIMEDOUT);
  ASSERT_ERR(t.r[0].status, ORR_EVMGONE);
  ctx_finish(&t);
}

static void test_close_while_connecting(void) {
  test_ctx t;

  ctx_init(&t);
  ctx_connect(&t, 0);
  ASSERT_OK(send_cmd(t.qmp, "query-status", NULL, &t.r[0]));
  uv_run(&t.loop, UV_RUN_NOWAIT); /* the first attempt: ENOENT */
  ctx_finish(&t);                 /* closes before any socket exists */
  ASSERT_ERR(t.ready_status, ORR_ECANCELED);
  ASSERT_ERR(t.closed_reason, ORR_ECANCELED);
  ASSERT_EQ(t.r[0].calls, 1);
  ASSERT_ERR(t.r[0].status, ORR_ECANCELED);
}

/* ---- close with requests pending --------------------------------------- */

static void silent_msg(server *s, json_t *msg, json_t *id) {
  if (strcmp(cmd_of(msg), "qmp_capabilities") == 0)
    server_return(s, id, NULL); /* and nothing else, ever */
}

static test_ctx *cancel_ctx;

static void on_cancelled(void *arg, int status, json_t *result,
                         const char *errmsg) {
  on_reply(arg, status, result, errmsg);
  /* From inside the close: refused at once, and cb is not called. */
  ASSERT_ERR(orr_qmp_send(cancel_ctx->qmp, "x", json_object(), on_reply,
                          &cancel_ctx->r[7]),
             ORR_ECANCELED);
}

static void cancel_ready(test_ctx *t) {
  ASSERT_OK(orr_qmp_send(t->qmp, "one", NULL, on_cancelled, &t->r[0]));
  ASSERT_OK(orr_qmp_send(t->qmp, "two", NULL, on_cancelled, &t->r[1]));
}

static void test_close_cancels_pending(void) {
  test_ctx t;

  ctx_init(&t);
  cancel_ctx = &t;
  server_start(&the_server, &t.loop, t.sock, silent_msg);
  ctx_connect(&t, 0);
  t.on_ready = cancel_ready;
  while (t.r[0].calls == 0 && !orr_qmp_is_ready(t.qmp))
    uv_run(&t.loop, UV_RUN_ONCE);
  /* Let the two commands reach the server, unanswered. */
  uv_run(&t.loop, UV_RUN_NOWAIT);
  server_stop(&the_server);
  ctx_finish(&t);
  ASSERT_EQ(t.r[0].calls, 1);
  ASSERT_ERR(t.r[0].status, ORR_ECANCELED);
  ASSERT_EQ(t.r[1].calls, 1);
  ASSERT_ERR(t.r[1].status, ORR_ECANCELED);
  ASSERT_EQ(t.r[7].calls, 0);
  ASSERT_ERR(t.closed_reason, ORR_ECANCELED);
}

/* ---- deadlines: a server that stops answering, then answers late ------- */

/* Holds every command after the handshake until released, then answers
** them in order, as a QEMU stopped with SIGSTOP and continued does. */
static json_t *held;

static void hold_msg(server *s, json_t *msg, json_t *id) {
  (void)s;
  if (strcmp(cmd_of(msg), "qmp_capabilities") == 0)
    server_return(s, id, NULL);
  else
    json_array_append(held, id);
}

static void release_held(uv_timer_t *h) {
  size_t i;
  json_t *id;

  (void)h;
  json_array_foreach(held, i, id) server_return(
      &the_server, id, json_pack("{s:I}", "n", json_integer_value(id)));
  json_array_clear(held);
}

typedef struct {
  int calls[2]; /* [0] unresponsive, [1] responsive */
  char command[2][40];
  uint64_t ms[2];
  int order; /* the late reply's position relative to responsive */
} health_log;

static health_log health;
static reply late_r[8];

static void on_health(void *arg, int responsive, const char *command,
                      uint64_t ms) {
  (void)arg;
  ASSERT(!in_send);
  /* They alternate, starting with unresponsive. */
  ASSERT_EQ(health.calls[0], health.calls[1] + responsive);
  health.calls[responsive]++;
  snprintf(health.command[responsive], sizeof health.command[0], "%s", command);
  health.ms[responsive] = ms;
}

/* Same arg as the command's cb (its t->r[i]); records into late_r[i]. */
static void on_late(void *arg, int status, json_t *result, const char *errmsg) {
  int i = (int)((reply *)arg - cancel_ctx->r);

  ASSERT(i >= 0 && i < 8);
  /* responsive is reported before the answer that proves it. */
  ASSERT_GE(health.calls[1], 1);
  on_reply(&late_r[i], status, result, errmsg);
}

/* A command whose cb records into r (one of cancel_ctx->r) and, with_late,
** whose late outcome goes to the matching late_r. */
static int send_timed(orr_qmp *q, const char *cmd, uint64_t ms, reply *r,
                      int with_late) {
  int rc;

  in_send = 1;
  rc = orr_qmp_send_timed(q, cmd, NULL, ms, on_reply,
                          with_late ? on_late : NULL, r);
  in_send = 0;
  return rc;
}

static void deadline_ready(test_ctx *t) {
  /* Three frozen: two with a deadline of their own (one wanting its late
  ** answer, one not), one with the connection's default of 80 ms. */
  ASSERT_OK(send_timed(t->qmp, "first", 40, &t->r[0], 1));
  ASSERT_OK(send_timed(t->qmp, "second", 60, &t->r[1], 0));
  ASSERT_OK(send_cmd(t->qmp, "third", NULL, &t->r[2]));
}

static void test_deadlines_and_late_replies(void) {
  uint64_t start = uv_hrtime();
  orr_qmp_options o = {0};
  uv_timer_t release;
  test_ctx t;

  ctx_init(&t);
  cancel_ctx = &t; /* send_timed finds r's index through it */
  held = json_array();
  memset(&health, 0, sizeof health);
  memset(late_r, 0, sizeof late_r);
  server_start(&the_server, &t.loop, t.sock, hold_msg);
  o.path = t.sock;
  o.command_timeout_ms = 80;
  o.ready_cb = on_ready;
  o.closed_cb = on_closed;
  o.health_cb = on_health;
  o.arg = &t;
  ASSERT_OK(orr_qmp_connect(&t.loop, &o, &t.qmp));
  t.on_ready = deadline_ready;
  ASSERT_UV_OK(uv_timer_init(&t.loop, &release));
  ASSERT_UV_OK(uv_timer_start(&release, release_held, 400, 0));

  /* Each fails at its own deadline; the first miss marks QEMU
  ** unresponsive, once. */
  while (t.r[2].calls == 0)
    uv_run(&t.loop, UV_RUN_ONCE);
  ASSERT_ERR(t.r[0].status, ORR_ETIMEDOUT);
  ASSERT_ERR(t.r[1].status, ORR_ETIMEDOUT);
  ASSERT_ERR(t.r[2].status, ORR_ETIMEDOUT);
  ASSERT_STR_EQ(t.r[0].errmsg, "first: QEMU did not answer within 40 ms");
  ASSERT_GE((uv_hrtime() - start) / 1000000, 80);
  ASSERT_LT((uv_hrtime() - start) / 1000000, 400);
  ASSERT(orr_qmp_is_unresponsive(t.qmp));
  ASSERT_EQ(health.calls[0], 1);
  ASSERT_EQ(health.calls[1], 0);
  ASSERT_STR_EQ(health.command[0], "first");
  ASSERT_EQ(health.ms[0], 40);

  /* The answers come: the late callback gets the first's, the others are
  ** dropped, and QEMU is responsive again. */
  while (late_r[0].calls == 0)
    uv_run(&t.loop, UV_RUN_ONCE);
  uv_run(&t.loop, UV_RUN_NOWAIT);
  ASSERT_OK(late_r[0].status);
  ASSERT_NOT_NULL(late_r[0].result);
  ASSERT_EQ(health.calls[1], 1);
  ASSERT_STR_EQ(health.command[1], "first");
  ASSERT_GE(health.ms[1], 200);
  ASSERT(!orr_qmp_is_unresponsive(t.qmp));
  ASSERT_EQ(t.r[0].calls + t.r[1].calls + t.r[2].calls, 3); /* once each */

  /* A command answered in time is not touched by its deadline. */
  ASSERT_OK(send_timed(t.qmp, "prompt", 5000, &t.r[3], 1));
  ASSERT_UV_OK(uv_timer_start(&release, release_held, 20, 0));
  while (t.r[3].calls == 0)
    uv_run(&t.loop, UV_RUN_ONCE);
  ASSERT_OK(t.r[3].status);
  ASSERT_EQ(late_r[3].calls, 0);

  /* Timed out, then closed: the late callback gets ORR_ECANCELED. */
  ASSERT_OK(send_timed(t.qmp, "never", 10, &t.r[4], 1));
  while (t.r[4].calls == 0)
    uv_run(&t.loop, UV_RUN_ONCE);
  ASSERT_ERR(t.r[4].status, ORR_ETIMEDOUT);
  ASSERT_EQ(health.calls[0], 2);
  uv_close((uv_handle_t *)&release, NULL);
  server_stop(&the_server);
  ctx_finish(&t);
  ASSERT_EQ(t.r[4].calls, 1);
  ASSERT_EQ(late_r[4].calls, 1);
  ASSERT_ERR(late_r[4].status, ORR_ECANCELED);
  json_decref(held);
  for (int i = 0; i < 8; i++)
    reply_free(&late_r[i]);
}

/* ---- descriptors: inherited at spawn, passed over QMP ------------------ */

static int replies_done(test_ctx *t, int n) {
  for (int i = 0; i < n; i++)
    if (t->r[i].calls != 1)
      return 0;
  return 1;
}

/* The fds of fdset id in a query-fdsets answer, or -1 if there is none. */
static int fdset_size(json_t *sets, int id) {
  size_t i;
  json_t *s;
  json_array_foreach(sets, i, s) {
    if (json_integer_value(json_object_get(s, "fdset-id")) == id)
      return (int)json_array_size(json_object_get(s, "fds"));
  }
  return -1;
}

static void test_real_qemu_fds(void) {
  const char *argv[] = {"qemu-system-x86_64", "-accel", "tcg", "-M", "q35",
                        "-m", "64", "-nodefaults", "-nographic", "-S",
                        /* child fd 3 and 4 are inherited */
                        "-add-fd", "fd=3,set=9", "-add-fd", "fd=4,set=9",
                        "-chardev", NULL, "-mon", "chardev=qmp,mode=control",
                        NULL};
  char chardev[400], file[300];
  orr_process_options po = {0};
  orr_error e = {0};
  int inherit[2], fd;
  test_ctx t;

  ctx_init(&t);
  snprintf(chardev, sizeof chardev, "socket,id=qmp,path=%s,server=on,wait=off",
           t.sock);
  argv[15] = chardev;
  snprintf(file, sizeof file, "%s/f", t.dir);
  /* Low numbers on purpose: they collide with the child's 3 and 4. */
  inherit[1] = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  inherit[0] = open(file, O_RDONLY | O_CLOEXEC);
  ASSERT(inherit[0] >= 0 && inherit[1] >= 0);
  po.argv = argv;
  po.flags = ORR_PROCESS_KILL_WITH_PARENT;
  po.inherit = inherit;
  po.ninherit = 2;
  po.exit_cb = on_qemu_exit;
  po.arg = &t;
  ASSERT_OK(orr_process_spawn(&t.loop, &po, &t.qemu, &e));
  close(inherit[0]);
  close(inherit[1]);
  ctx_connect(&t, 10000);

  /* Queued before the handshake: plain, two descriptors, plain. They go
  ** out in order, one descriptor at a time. */
  ASSERT_OK(send_cmd(t.qmp, "query-status", NULL, &t.r[0]));
  fd = open(file, O_RDONLY | O_CLOEXEC);
  ASSERT_OK(orr_qmp_send_fd(t.qmp, "add-fd", json_pack("{s:i}", "fdset-id", 1),
                            fd, 0, on_reply, NULL, &t.r[1]));
  fd = open(file, O_RDWR | O_CLOEXEC);
  ASSERT_OK(orr_qmp_send_fd(t.qmp, "add-fd", json_pack("{s:i}", "fdset-id", 2),
                            fd, 0, on_reply, NULL, &t.r[2]));
  ASSERT_OK(send_cmd(t.qmp, "query-fdsets", NULL, &t.r[3]));
  while (!replies_done(&t, 4))
    ASSERT(uv_run(&t.loop, UV_RUN_ONCE) != 0);
  for (int i = 0; i < 4; i++)
    ASSERT_OK(t.r[i].status);
  ASSERT_EQ(1, json_integer_value(json_object_get(t.r[1].result, "fdset-id")));
  ASSERT_EQ(2, json_integer_value(json_object_get(t.r[2].result, "fdset-id")));
  ASSERT_EQ(1, fdset_size(t.r[3].result, 1));
  ASSERT_EQ(1, fdset_size(t.r[3].result, 2));
  ASSERT_EQ(2, fdset_size(t.r[3].result, 9));

  /* Once ready, a named descriptor: getfd takes it, closefd drops it; a
  ** command that wants none gets none (QEMU says so). */
  fd = open(file, O_RDONLY | O_CLOEXEC);
  ASSERT_OK(orr_qmp_send_fd(t.qmp, "getfd", json_pack("{s:s}", "fdname", "x"),
                            fd, 0, on_reply, NULL, &t.r[4]));
  ASSERT_OK(
      send_cmd(t.qmp, "closefd", json_pack("{s:s}", "fdname", "x"), &t.r[5]));
  ASSERT_OK(
      send_cmd(t.qmp, "getfd", json_pack("{s:s}", "fdname", "y"), &t.r[6]));
  ASSERT_ERR(
      orr_qmp_send_fd(t.qmp, "getfd", NULL, -1, 0, on_reply, NULL, &t.r[7]),
      ORR_EINVAL);
  while (!replies_done(&t, 7))
    ASSERT(uv_run(&t.loop, UV_RUN_ONCE) != 0);
  ASSERT_OK(t.r[4].status);
  ASSERT_OK(t.r[5].status);
  ASSERT_ERR(t.r[6].status, ORR_EBACKEND);
  ASSERT_STR_CONTAINS(t.r[6].errmsg, "No file descriptor supplied");

  ASSERT_OK(orr_process_kill(t.qemu, SIGKILL));
  while (t.exits == 0)
    uv_run(&t.loop, UV_RUN_ONCE);
  orr_process_close(t.qemu, NULL);
  unlink(file);
  ctx_finish(&t);
}

int main(void) {
  alarm(120); /* a hung test fails instead of waiting for ctest */
  RUN_TEST(test_real_qemu);
  RUN_TEST(test_real_qemu_fds);
  RUN_TEST(test_garbage_late_socket_hangup);
  RUN_TEST(test_overlong_line_drops);
  RUN_TEST(test_connect_timeout);
  RUN_TEST(test_close_while_connecting);
  RUN_TEST(test_close_cancels_pending);
  RUN_TEST(test_deadlines_and_late_replies);
  return 0;
}

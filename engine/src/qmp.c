/*
** The QMP protocol client: the greeting and qmp_capabilities handshake,
** commands matched to replies by id, deadlines, events. The socket, its
** connect retries and the line framing are jsonconn.c's.
*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jsonconn.h"
#include "orrery/qmp.h"
#include "orrery/log.h"

#define DEFAULT_TIMEOUT_MS 10000

/* Ordered: every state from DEAD on means the socket is gone. */
enum state { CONNECTING, GREETING, NEGOTIATING, READY, DEAD, CLOSING };

typedef struct request {
  struct request *next;
  uint64_t id;
  char *text; /* the command's JSON until it is handed to uv_write() */
  orr_qmp_reply_cb cb;
  orr_qmp_reply_cb late; /* the outcome after cb got ORR_ETIMEDOUT */
  void *arg;
  uint64_t deadline;   /* uv_hrtime() ns; 0: none */
  uint64_t timeout_ms; /* for messages */
  int timed_out;       /* cb has had ORR_ETIMEDOUT: the answer is owed */
  char name[40];       /* the command, for messages (may be cut short) */
  int fd;              /* passed with the command (orr_qmp_send_fd), or -1 */
  uint64_t sent_ns;    /* uv_hrtime() it was written at (trace latency) */
} request;

/* Requests in send order: QEMU answers in that order too, so the reply is
** almost always the head and the linear search stays O(1). */
typedef struct {
  request *head;
  request **tail;
} reqlist;

struct orr_qmp {
  uv_loop_t *loop;
  orr_jc *conn;      /* the socket; NULL once it is closing */
  uv_timer_t timer;  /* the handshake deadline */
  uv_timer_t dtimer; /* the earliest command deadline */
  uv_idle_t idle;    /* delivers the failures of requests sent when DEAD */
  int handles;       /* handles and conn not yet closed; freed at 0 */
  enum state state;
  enum state stage; /* where the handshake is, or where it stopped */
  char path[ORR_JC_PATH_MAX];
  uint64_t deadline; /* uv_hrtime() of the end of connect + handshake */
  uint64_t next_id;
  uint64_t command_timeout_ms;
  uint64_t dtimer_at; /* the deadline dtimer is armed for; 0: stopped */
  int unresponsive;   /* a deadline passed and nothing was answered since */
  uint64_t unresponsive_at;
  reqlist pending;  /* sent or queued, awaiting a reply */
  reqlist deferred; /* sent after the end, to fail with ORR_EVMGONE */
  int ready_done;
  int closed_done;
  int have_version, major, minor, micro;
  orr_qmp_ready_cb ready_cb;
  orr_qmp_closed_cb closed_cb;
  orr_qmp_log_cb log_cb;
  char log_id[72]; /* who the connection is for, in log lines */
  orr_qmp_health_cb health_cb;
  void *arg;
  orr_qmp_event_cb event_cb;
  void *event_arg;
  orr_qmp_close_cb close_cb;
  /* Descriptor passing (orr_qmp_send_fd). */
  int unwritten;       /* requests queued behind a descriptor */
  uint64_t fd_waiting; /* id of the request sent with a descriptor whose
                          reply is not read yet, or 0 */
  uv_timer_t fd_retry; /* a full socket buffer: try the sendmsg again */
};

static void qlog(orr_qmp *q, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void qlog(orr_qmp *q, const char *fmt, ...) {
  char msg[256];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  orr_log(ORR_LOG_DEBUG, "qmp", q->log_id, "%s", msg);
  if (q->log_cb != NULL)
    q->log_cb(q->arg, msg);
}

/* trace: each message on the wire; a reply with its command's latency. */
static void trace_out(orr_qmp *q, request *r, const char *text) {
  if (r->sent_ns != 0)
    return; /* a descriptor's sendmsg tried again */
  r->sent_ns = uv_hrtime();
  if (orr_log_enabled(ORR_LOG_TRACE, "qmp"))
    orr_log(ORR_LOG_TRACE, "qmp", q->log_id, "-> %s%s", text,
            r->fd >= 0 ? " (with a descriptor)" : "");
}

static void trace_in(orr_qmp *q, const request *r, json_t *msg) {
  char *line;
  if (!orr_log_enabled(ORR_LOG_TRACE, "qmp"))
    return;
  line = json_dumps(msg, JSON_COMPACT);
  if (r == NULL)
    orr_log(ORR_LOG_TRACE, "qmp", q->log_id, "<- %s", line ? line : "?");
  else
    orr_log(ORR_LOG_TRACE, "qmp", q->log_id, "<- %s (%s, %.3f ms)",
            line ? line : "?", r->name,
            r->sent_ns ? (double)(uv_hrtime() - r->sent_ns) / 1e6 : 0.0);
  free(line);
}

/* Milliseconds to the deadline, rounded up: 0 only once it has passed.
** Timers run on the loop's cached clock and may fire a little early, so
** their callbacks ask this again rather than trust that they are late. */
static uint64_t ms_left(const orr_qmp *q) {
  uint64_t now = uv_hrtime();

  return now >= q->deadline ? 0 : (q->deadline - now + 999999) / 1000000;
}

static void list_init(reqlist *l) {
  l->head = NULL;
  l->tail = &l->head;
}

static void list_push(reqlist *l, request *r) {
  r->next = NULL;
  *l->tail = r;
  l->tail = &r->next;
}

static request *list_take_id(reqlist *l, uint64_t id) {
  request **pp, *r;

  for (pp = &l->head; *pp != NULL; pp = &(*pp)->next) {
    if ((*pp)->id != id)
      continue;
    r = *pp;
    *pp = r->next;
    if (l->tail == &r->next)
      l->tail = pp;
    return r;
  }
  return NULL;
}

/* The outcome of r goes to cb, or to late once cb has had its timeout
** (nowhere, if the sender did not ask for it). */
static void deliver(request *r, int status, json_t *result,
                    const char *errmsg) {
  if (!r->timed_out)
    r->cb(r->arg, status, result, errmsg);
  else if (r->late != NULL)
    r->late(r->arg, status, result, errmsg);
}

static void free_request(request *r) {
  if (r->fd >= 0)
    close(r->fd);
  free(r->text);
  free(r);
}

/* Empties the list first, so callbacks that send again do not touch the
** chain being walked. */
static void fail_all(reqlist *l, int status) {
  request *r = l->head, *next;

  list_init(l);
  for (; r != NULL; r = next) {
    next = r->next;
    deliver(r, status, NULL, orr_strerror(status));
    free_request(r);
  }
}

static void report_ready(orr_qmp *q, int status) {
  if (q->ready_done)
    return;
  q->ready_done = 1;
  q->ready_cb(q->arg, status);
}

static void report_closed(orr_qmp *q, int reason) {
  if (q->closed_done)
    return;
  q->closed_done = 1;
  if (q->closed_cb != NULL)
    q->closed_cb(q->arg, reason);
}

static void on_closed(orr_qmp *q) {
  if (--q->handles > 0 || q->state != CLOSING)
    return;
  /* Every write callback has run (uv_close cancels them first), so nothing
  ** refers to q any more once the user's callbacks are done. */
  report_ready(q, ORR_ECANCELED);
  fail_all(&q->pending, ORR_ECANCELED);
  fail_all(&q->deferred, ORR_EVMGONE);
  report_closed(q, ORR_ECANCELED);
  if (q->close_cb != NULL)
    q->close_cb(q->arg);
  free(q);
}

static void on_handle_closed(uv_handle_t *h) {
  on_closed(h->data);
}

static void on_conn_closed(void *arg) {
  on_closed(arg);
}

static void close_conn(orr_qmp *q) {
  orr_jc *c = q->conn;

  if (c == NULL)
    return;
  q->conn = NULL;
  orr__jc_close(c, on_conn_closed, q);
}

/* The connection ended on its own: from a loop callback, so the user's
** callbacks may run right here. */
static void die(orr_qmp *q, int reason) {
  if (q->state >= DEAD)
    return;
  q->state = DEAD;
  uv_timer_stop(&q->timer);
  uv_timer_stop(&q->dtimer);
  uv_timer_stop(&q->fd_retry);
  q->fd_waiting = 0;
  close_conn(q);
  report_ready(q, reason);
  fail_all(&q->pending, ORR_EVMGONE);
  report_closed(q, reason);
}

static void flush(orr_qmp *q);

/* Every uv_write() completed: a command queued behind a descriptor may go. */
static void on_drained(void *arg) {
  orr_qmp *q = arg;

  if (q->unwritten > 0 && q->state == READY)
    flush(q);
}

/* Writes r's text (handed over: r->text is NULL after this). */
static int write_request(orr_qmp *q, request *r) {
  char *text = r->text;

  trace_out(q, r, text);
  r->text = NULL;
  return orr__jc_write(q->conn, text, 0);
}

/* Sends r with its descriptor now: 0, 1 to try again later (the socket
** buffer is full), or an ORR_* code. */
static int send_with_fd(orr_qmp *q, request *r) {
  int rc;

  trace_out(q, r, r->text);
  rc = orr__jc_write_fd(q->conn, r->text, r->fd);

  if (rc == 0) {
    close(r->fd);
    r->fd = -1;
    free(r->text);
    r->text = NULL;
  }
  return rc;
}

static void on_fd_retry(uv_timer_t *t) {
  orr_qmp *q = t->data;
  if (q->state == READY)
    flush(q);
}

/* Writes the requests queued behind a descriptor, in order, as far as a
** descriptor may go (libuv's queue empty, no descriptor awaiting its
** reply). Called again when either changes. */
static void flush(orr_qmp *q) {
  for (request *r = q->pending.head; r != NULL; r = r->next) {
    int rc;
    if (r->text == NULL)
      continue; /* written, awaiting its reply */
    if (r->fd < 0) {
      rc = write_request(q, r);
    } else if (orr__jc_writes(q->conn) > 0 || q->fd_waiting != 0) {
      return;
    } else if ((rc = send_with_fd(q, r)) == 1) {
      uv_timer_start(&q->fd_retry, on_fd_retry, 1, 0);
      return;
    } else if (rc == 0) {
      q->fd_waiting = r->id;
    }
    if (rc != 0) {
      die(q, rc == ORR_EVMGONE ? ORR_EVMGONE : ORR_EIO);
      return;
    }
    q->unwritten--;
  }
}

/* A request with its JSON text; steals args. */
static request *new_request(orr_qmp *q, const char *command, json_t *args,
                            orr_qmp_reply_cb cb, void *arg) {
  request *r = calloc(1, sizeof *r);
  json_t *msg;

  msg =
      json_pack("{s:s, s:I}", "execute", command, "id", (json_int_t)q->next_id);
  /* json_object_set_new() steals args even when it fails (msg NULL too). */
  if (args != NULL && json_object_set_new(msg, "arguments", args) != 0) {
    json_decref(msg);
    msg = NULL;
  }
  if (r != NULL && msg != NULL)
    r->text = json_dumps(msg, JSON_COMPACT);
  json_decref(msg);
  if (r == NULL || r->text == NULL) {
    free(r);
    return NULL;
  }
  r->id = q->next_id++;
  r->cb = cb;
  r->arg = arg;
  r->fd = -1;
  snprintf(r->name, sizeof r->name, "%s", command);
  return r;
}

static void on_capabilities(void *arg, int status, json_t *result,
                            const char *errmsg) {
  orr_qmp *q = arg;
  request *r;

  (void)result;
  if (status == ORR_EBACKEND) {
    qlog(q, "qmp_capabilities: %s", errmsg);
    die(q, ORR_EBACKEND);
    return;
  }
  if (status != 0)
    return; /* die() or close already reported the handshake's end */
  q->state = q->stage = READY;
  uv_timer_stop(&q->timer);
  /* Queued commands go out before ready_cb can add more, keeping order. */
  for (r = q->pending.head; r != NULL; r = r->next)
    if (r->text != NULL)
      q->unwritten++;
  flush(q);
  if (q->state != READY)
    return;
  report_ready(q, 0);
}

static void on_greeting(orr_qmp *q, json_t *greeting) {
  json_t *ver = json_object_get(json_object_get(greeting, "version"), "qemu");
  request *r;

  if (orr_log_enabled(ORR_LOG_TRACE, "qmp")) {
    char *line = json_dumps(greeting, JSON_COMPACT);
    orr_log(ORR_LOG_TRACE, "qmp", q->log_id, "<- {\"QMP\": %s}",
            line ? line : "?");
    free(line);
  }
  if (q->state != GREETING) {
    qlog(q, "ignoring a second greeting");
    return;
  }
  if (json_unpack(ver, "{s:i, s:i, s:i}", "major", &q->major, "minor",
                  &q->minor, "micro", &q->micro) == 0)
    q->have_version = 1;
  else
    qlog(q, "greeting without a QEMU version");

  /* qmp_capabilities must be the first command on the wire: it goes in
  ** front of anything queued and is written now. */
  r = new_request(q, "qmp_capabilities", NULL, on_capabilities, q);
  if (r == NULL || write_request(q, r) != 0) {
    free(r);
    die(q, ORR_EIO);
    return;
  }
  r->next = q->pending.head;
  q->pending.head = r;
  if (q->pending.tail == &q->pending.head)
    q->pending.tail = &r->next;
  q->state = q->stage = NEGOTIATING;
}

static void on_reply(orr_qmp *q, json_t *msg) {
  json_t *id = json_object_get(msg, "id"), *ret, *err;
  const char *desc;
  request *r;

  if (!json_is_integer(id)) {
    /* QEMU sends an error without id only for input it could not parse. */
    qlog(q, "ignoring a reply without an id");
    return;
  }
  r = list_take_id(&q->pending, (uint64_t)json_integer_value(id));
  if (r == NULL) {
    qlog(q, "ignoring a reply to unknown id %" JSON_INTEGER_FORMAT,
         json_integer_value(id));
    return;
  }
  trace_in(q, r, msg);
  if (r->id == q->fd_waiting) {
    /* QEMU ran the command that took the descriptor: the next may go. */
    q->fd_waiting = 0;
    if (q->unwritten > 0)
      flush(q);
  }
  /* QEMU answers again: whatever it was stuck on is over. Said before the
  ** answer is handed on, so its callback sees a responsive QEMU. */
  if (q->unresponsive) {
    q->unresponsive = 0;
    if (q->health_cb != NULL)
      q->health_cb(q->arg, 1, r->name,
                   (uv_hrtime() - q->unresponsive_at) / 1000000);
  }
  ret = json_object_get(msg, "return");
  if (ret != NULL) {
    deliver(r, 0, ret, "");
  } else {
    err = json_object_get(msg, "error");
    desc = json_string_value(json_object_get(err, "desc"));
    deliver(r, ORR_EBACKEND, err, desc != NULL ? desc : "QEMU error");
  }
  free_request(r);
}

static void on_event(orr_qmp *q, json_t *msg) {
  const char *name = json_string_value(json_object_get(msg, "event"));
  json_t *ts = json_object_get(msg, "timestamp");

  if (name == NULL) {
    qlog(q, "ignoring an event without a name");
    return;
  }
  trace_in(q, NULL, msg);
  if (q->event_cb != NULL)
    q->event_cb(q->event_arg, name, json_object_get(msg, "data"),
                json_integer_value(json_object_get(ts, "seconds")),
                json_integer_value(json_object_get(ts, "microseconds")));
}

static int on_line(void *arg, const char *line, size_t len) {
  orr_qmp *q = arg;
  json_error_t jerr;
  json_t *msg, *greeting;

  msg = json_loadb(line, len, 0, &jerr);
  if (!json_is_object(msg)) {
    qlog(q, "ignoring a line that is not a JSON object: %.*s",
         len > 120 ? 120 : (int)len, line);
  } else if ((greeting = json_object_get(msg, "QMP")) != NULL) {
    on_greeting(q, greeting);
  } else if (json_object_get(msg, "event") != NULL) {
    on_event(q, msg);
  } else if (json_object_get(msg, "return") != NULL ||
             json_object_get(msg, "error") != NULL) {
    on_reply(q, msg);
  } else {
    qlog(q, "ignoring an unknown message: %.*s", len > 120 ? 120 : (int)len,
         line);
  }
  json_decref(msg);
  /* A callback may have closed the connection: skip the rest of the read. */
  return q->state >= DEAD;
}

/* The connection ended on its own. */
static void on_ended(void *arg, orr_jc_end what, int code) {
  orr_qmp *q = arg;

  if (what == ORR_JC_WRITE) {
    qlog(q, "write: %s", uv_strerror(code));
    die(q, ORR_EVMGONE);
  } else if (what == ORR_JC_READ) {
    /* EOF after quit, ECONNRESET after a kill: both are QEMU going away. */
    if (code != UV_EOF && code != UV_ECONNRESET)
      qlog(q, "read: %s", uv_strerror(code));
    die(q, ORR_EVMGONE);
  } else {
    qlog(q, "dropping the connection: %s",
         code == ORR_EIO ? "line too long" : orr_strerror(code));
    die(q, ORR_EIO);
  }
}

static void on_handshake_timeout(uv_timer_t *t) {
  orr_qmp *q = t->data;
  uint64_t left = ms_left(q);

  if (left > 0) {
    uv_timer_start(t, on_handshake_timeout, left, 0);
    return;
  }
  qlog(q, "no QMP handshake on %s in time", q->path);
  die(q, ORR_ETIMEDOUT);
}

static void on_connected(void *arg, int status, orr_jc_stage stage,
                         const char *why) {
  orr_qmp *q = arg;

  if (status != 0) {
    if (stage == ORR_JC_SOCKET)
      qlog(q, "socket: %s", why);
    else if (stage == ORR_JC_CONNECT)
      qlog(q, "connect %s: %s", q->path, why);
    else
      qlog(q, "%s: %s", q->path, why);
    die(q, status);
    return;
  }
  q->state = q->stage = GREETING;
  uv_timer_start(&q->timer, on_handshake_timeout, ms_left(q), 0);
}

/* ---- command deadlines ---- */

static void on_deadline(uv_timer_t *t);

/* Keeps dtimer on the earliest deadline still to come. */
static void arm_deadlines(orr_qmp *q) {
  uint64_t next = 0, now;
  request *r;

  for (r = q->pending.head; r != NULL; r = r->next)
    if (r->deadline != 0 && !r->timed_out && (next == 0 || r->deadline < next))
      next = r->deadline;
  if (next == q->dtimer_at)
    return;
  q->dtimer_at = next;
  if (next == 0) {
    uv_timer_stop(&q->dtimer);
    return;
  }
  now = uv_hrtime();
  uv_timer_start(&q->dtimer, on_deadline,
                 next <= now ? 0 : (next - now + 999999) / 1000000, 0);
}

/* Fails each command past its deadline with ORR_ETIMEDOUT; the command
** stays pending, as QEMU still owes its answer. */
static void on_deadline(uv_timer_t *t) {
  orr_qmp *q = t->data;
  uint64_t now = uv_hrtime();
  char msg[160];
  request *r;

  q->dtimer_at = 0;
again:
  for (r = q->pending.head; r != NULL; r = r->next) {
    if (r->deadline == 0 || r->timed_out || r->deadline > now)
      continue;
    r->timed_out = 1;
    qlog(q, "%s: no answer within %llu ms", r->name,
         (unsigned long long)r->timeout_ms);
    if (!q->unresponsive) {
      q->unresponsive = 1;
      q->unresponsive_at = now;
      if (q->health_cb != NULL)
        q->health_cb(q->arg, 0, r->name, r->timeout_ms);
      if (q->state >= DEAD)
        return;
    }
    snprintf(msg, sizeof msg, "%s: QEMU did not answer within %llu ms", r->name,
             (unsigned long long)r->timeout_ms);
    r->cb(r->arg, ORR_ETIMEDOUT, NULL, msg);
    /* The callback may have sent (the list grew) or closed the client. */
    if (q->state >= DEAD)
      return;
    goto again;
  }
  arm_deadlines(q);
}

static void on_idle(uv_idle_t *h) {
  orr_qmp *q = h->data;

  uv_idle_stop(h);
  fail_all(&q->deferred, ORR_EVMGONE);
}

int orr_qmp_connect(uv_loop_t *loop, const orr_qmp_options *o, orr_qmp **out) {
  orr_jc_options jo;
  orr_qmp *q;
  int rc;

  *out = NULL;
  if (loop == NULL || o == NULL || o->path == NULL || o->ready_cb == NULL)
    return ORR_EINVAL;
  if (o->path[0] == '\0' || strlen(o->path) >= sizeof q->path)
    return ORR_EINVAL;
  q = calloc(1, sizeof *q);
  if (q == NULL)
    return ORR_ENOMEM;
  q->loop = loop;
  strcpy(q->path, o->path);
  q->ready_cb = o->ready_cb;
  q->closed_cb = o->closed_cb;
  q->log_cb = o->log_cb;
  snprintf(q->log_id, sizeof q->log_id, "%s", o->log_id ? o->log_id : "");
  q->health_cb = o->health_cb;
  q->command_timeout_ms = o->command_timeout_ms;
  q->arg = o->arg;
  q->next_id = 1;
  q->deadline =
      uv_hrtime() +
      (o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS) * UINT64_C(1000000);
  list_init(&q->pending);
  list_init(&q->deferred);
  memset(&jo, 0, sizeof jo);
  jo.connected = on_connected;
  jo.line = on_line;
  jo.ended = on_ended;
  jo.drained = on_drained;
  jo.arg = q;
  jo.deadline = q->deadline;
  rc = orr__jc_open(loop, q->path, &jo, &q->conn);
  if (rc != 0) {
    free(q);
    return rc;
  }
  uv_timer_init(loop, &q->timer);
  uv_timer_init(loop, &q->dtimer);
  uv_idle_init(loop, &q->idle);
  uv_timer_init(loop, &q->fd_retry);
  q->timer.data = q;
  q->dtimer.data = q;
  q->idle.data = q;
  q->fd_retry.data = q;
  q->handles = 5; /* the four above and conn */
  *out = q;
  return 0;
}

int orr_qmp_send(orr_qmp *q, const char *command, json_t *args,
                 orr_qmp_reply_cb cb, void *arg) {
  return orr_qmp_send_timed(q, command, args, 0, cb, NULL, arg);
}

static int send_request(orr_qmp *q, const char *command, json_t *args, int fd,
                        uint64_t timeout_ms, orr_qmp_reply_cb cb,
                        orr_qmp_reply_cb late, void *arg) {
  request *r;
  int rc;

  if (q == NULL || command == NULL || command[0] == '\0' || cb == NULL ||
      (args != NULL && !json_is_object(args))) {
    json_decref(args);
    return ORR_EINVAL;
  }
  if (q->state == CLOSING) {
    json_decref(args);
    return ORR_ECANCELED;
  }
  r = new_request(q, command, args, cb, arg);
  if (r == NULL)
    return ORR_ENOMEM;
  r->late = late;
  r->fd = fd;
  if (q->state == DEAD) {
    list_push(&q->deferred, r);
    uv_idle_start(&q->idle, on_idle);
    return 0;
  }
  list_push(&q->pending, r);
  if (q->state == READY && (q->unwritten > 0 || fd >= 0)) {
    /* Behind a descriptor, or carrying one: in order, through flush. */
    q->unwritten++;
    flush(q);
  } else if (q->state == READY) {
    rc = write_request(q, r);
    if (rc != 0) {
      list_take_id(&q->pending, r->id);
      r->fd = -1;
      free_request(r);
      return rc;
    }
  }
  r->timeout_ms = timeout_ms ? timeout_ms : q->command_timeout_ms;
  if (r->timeout_ms != 0) {
    r->deadline = uv_hrtime() + r->timeout_ms * UINT64_C(1000000);
    if (q->dtimer_at == 0 || r->deadline < q->dtimer_at)
      arm_deadlines(q);
  }
  return 0;
}

int orr_qmp_send_timed(orr_qmp *q, const char *command, json_t *args,
                       uint64_t timeout_ms, orr_qmp_reply_cb cb,
                       orr_qmp_reply_cb late, void *arg) {
  return send_request(q, command, args, -1, timeout_ms, cb, late, arg);
}

int orr_qmp_send_fd(orr_qmp *q, const char *command, json_t *args, int fd,
                    uint64_t timeout_ms, orr_qmp_reply_cb cb,
                    orr_qmp_reply_cb late, void *arg) {
  int rc;
  if (fd < 0) {
    json_decref(args);
    return ORR_EINVAL;
  }
  rc = send_request(q, command, args, fd, timeout_ms, cb, late, arg);
  if (rc != 0)
    close(fd);
  return rc;
}

int orr_qmp_is_unresponsive(const orr_qmp *q) {
  return q->unresponsive;
}

const char *orr_qmp_stage(const orr_qmp *q) {
  switch (q->stage) {
  case CONNECTING:
    return "connect";
  case GREETING:
    return "greeting";
  case NEGOTIATING:
    return "capabilities";
  default:
    return "ready";
  }
}

void orr_qmp_on_event(orr_qmp *q, orr_qmp_event_cb cb, void *arg) {
  q->event_cb = cb;
  q->event_arg = arg;
}

int orr_qmp_version(const orr_qmp *q, int *major, int *minor, int *micro) {
  if (!q->have_version)
    return ORR_ESTATE;
  if (major != NULL)
    *major = q->major;
  if (minor != NULL)
    *minor = q->minor;
  if (micro != NULL)
    *micro = q->micro;
  return 0;
}

int orr_qmp_is_ready(const orr_qmp *q) {
  return q->state == READY;
}

void orr_qmp_close(orr_qmp *q, orr_qmp_close_cb cb) {
  if (q->state == CLOSING)
    return;
  q->state = CLOSING;
  q->close_cb = cb;
  close_conn(q);
  uv_close((uv_handle_t *)&q->timer, on_handle_closed);
  uv_close((uv_handle_t *)&q->dtimer, on_handle_closed);
  uv_close((uv_handle_t *)&q->idle, on_handle_closed);
  uv_close((uv_handle_t *)&q->fd_retry, on_handle_closed);
}

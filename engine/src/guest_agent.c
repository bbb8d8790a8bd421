/*
** The guest agent protocol client: the connection, the 0xFF sync, and the
** command queue. See orrery/guest.h for the contract.
**
** Why a queue: qemu-ga replies carry no id and come in order, so at most
** one command is on the wire; a reply belongs to the one in flight. When
** a command times out its reply may still come, so the next command is
** preceded by guest-sync-delimited, whose 0xFF-prefixed answer marks where
** the stale bytes end (orr_framer_resync skips to it).
**
** Handles: the connection (jsonconn.c: the socket, its connect retries
** and the framing; its socket unref'd: the timers and the idle keep the
** loop alive exactly while something is owed), conn_timer (sync resends,
** the open deadline), cmd_timer (command deadlines and delayed commands),
** idle (delivers what must not run inside a caller's call).
*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "guest_internal.h"
#include "jsonconn.h"
#include "orrery/log.h"

#define DEFAULT_OPEN_TIMEOUT_MS 30000
#define DEFAULT_CMD_TIMEOUT_MS 30000
/* While the guest boots, QEMU holds what we write until qemu-ga opens the
** port, so one sync would do; the resend covers an agent that restarted
** and lost it. Every sync gets an answer, so this stays slow. */
#define SYNC_RESEND_MS 1000
#define NS_PER_MS UINT64_C(1000000)
/* The longest answer: guest-exec-status with both outputs at qemu-ga's
** 16 MiB cap, base64'ed (4/3), is about 43 MiB. */
#define MAX_LINE (64u * 1024 * 1024)
#define CLOSED_MSG "the guest connection was closed"

/* Ordered: from DEAD on the socket is gone. */
enum state { CONNECTING, OPENING, READY, DEAD, CLOSING };

typedef struct cmd {
  struct cmd *next;
  char name[48];       /* for messages: "guest-exec: ..." */
  json_t *args;        /* owned until sent */
  uint64_t deadline;   /* uv_hrtime() ns */
  uint64_t not_before; /* delayed until then (0: queued) */
  int status;          /* preset failure (orr__guest_fail), else 0 */
  char *msg;           /* its message */
  orr_vm_cb cb;
  void *arg;
} cmd;

typedef struct {
  cmd *head;
  cmd **tail;
} cmdlist;

struct orr_guest {
  uv_loop_t *loop;
  orr_jc *conn; /* the socket; NULL once it is closing */
  uv_timer_t conn_timer;
  uv_timer_t cmd_timer;
  uv_idle_t idle;
  int handles; /* handles and conn not yet closed; freed at 0 */
  enum state state;
  char path[ORR_JC_PATH_MAX];
  orr_guest_options opts;
  uint64_t open_deadline;
  /* The open. */
  orr_vm_cb open_cb;
  void *open_arg;
  int open_done;
  int pinging; /* the open's guest-ping is in flight */
  /* Sync. */
  int need_sync;     /* a reply may be stale: sync before the next command */
  int syncing;       /* a guest-sync-delimited is unanswered */
  uint64_t sync_id;  /* the id of the latest one sent */
  uint64_t sync_at;  /* when (uv_hrtime() ns) */
  uint64_t sync_seq; /* how many were sent (log) */
  /* Commands. */
  cmd *inflight;
  cmdlist queue;   /* waiting to be sent, in order */
  cmdlist delayed; /* not before their time */
  int dead_status;
  char dead_msg[512];
  char log_id[72];   /* who it is for, in log lines */
  uint64_t wrote_ns; /* uv_hrtime() of the last line written (trace) */
};

static void pump(orr_guest *g);
static void arm_conn_timer(orr_guest *g, uint64_t now);

static void glog(orr_guest *g, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void glog(orr_guest *g, const char *fmt, ...) {
  char msg[256];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  orr_log(ORR_LOG_DEBUG, "qga", g->log_id, "%s", msg);
  if (g->opts.log_cb != NULL)
    g->opts.log_cb(g->opts.log_arg, msg);
}

void orr_guest_options_init(orr_guest_options *o) {
  memset(o, 0, sizeof *o);
}

int orr_guest_is_ready(const orr_guest *g) {
  return g->state == READY;
}

int orr_guest_is_open(const orr_guest *g) {
  return g->state < DEAD;
}

const char *orr_guest_path(const orr_guest *g) {
  return g->path;
}

uint64_t orr__guest_deadline(const orr_guest *g, uint64_t timeout_ms) {
  if (timeout_ms == 0)
    timeout_ms = g->opts.command_timeout_ms;
  return uv_hrtime() + timeout_ms * NS_PER_MS;
}

/* ---- Lists -------------------------------------------------------------- */

static void list_init(cmdlist *l) {
  l->head = NULL;
  l->tail = &l->head;
}

static void list_push(cmdlist *l, cmd *c) {
  c->next = NULL;
  *l->tail = c;
  l->tail = &c->next;
}

/* *to = *from, fixing the tail of an empty list. */
static void list_move(cmdlist *to, cmdlist *from) {
  if (from->head == NULL) {
    list_init(to);
  } else {
    to->head = from->head;
    to->tail = from->tail;
  }
  list_init(from);
}

static cmd *list_shift(cmdlist *l) {
  cmd *c = l->head;

  if (c == NULL)
    return NULL;
  l->head = c->next;
  if (l->head == NULL)
    l->tail = &l->head;
  c->next = NULL;
  return c;
}

static void cmd_free(cmd *c) {
  json_decref(c->args);
  free(c->msg);
  free(c);
}

/* Delivers an outcome and frees c. */
static void finish(cmd *c, int status, const char *msg, json_t *result) {
  orr_error e = {status, ""};

  if (status != 0)
    snprintf(e.msg, sizeof e.msg, "%s", msg != NULL ? msg : "");
  c->cb(c->arg, status, &e, result);
  cmd_free(c);
}

/* Empties l first, so callbacks that queue again do not touch the chain
** being walked. */
static void fail_list(cmdlist *l, int status, const char *msg) {
  cmd *c = l->head, *next;

  list_init(l);
  for (; c != NULL; c = next) {
    next = c->next;
    finish(c, c->status != 0 ? c->status : status,
           c->status != 0 ? c->msg : msg, NULL);
  }
}

/* ---- The end of the connection ------------------------------------------ */

static void report_open(orr_guest *g, int status, const char *msg) {
  orr_error e = {status, ""};

  if (g->open_done)
    return;
  g->open_done = 1;
  if (status != 0)
    snprintf(e.msg, sizeof e.msg, "%s", msg);
  g->open_cb(g->open_arg, status, &e, NULL);
}

static void on_closed(orr_guest *g) {
  cmd *c;

  if (--g->handles > 0 || g->state != CLOSING)
    return;
  /* Every write callback has run (uv_close cancels them first): nothing
  ** refers to g once the callbacks below are done. */
  report_open(g, ORR_ECANCELED, CLOSED_MSG);
  if ((c = g->inflight) != NULL) {
    g->inflight = NULL;
    finish(c, ORR_ECANCELED, CLOSED_MSG, NULL);
  }
  /* The callbacks may queue more (they are told to expect ECANCELED). */
  while (g->queue.head != NULL || g->delayed.head != NULL) {
    fail_list(&g->queue, ORR_ECANCELED, CLOSED_MSG);
    fail_list(&g->delayed, ORR_ECANCELED, CLOSED_MSG);
  }
  free(g);
}

static void on_handle_closed(uv_handle_t *h) {
  on_closed(h->data);
}

static void on_conn_closed(void *arg) {
  on_closed(arg);
}

static void close_conn(orr_guest *g) {
  orr_jc *c = g->conn;

  if (c == NULL)
    return;
  g->conn = NULL;
  orr__jc_close(c, on_conn_closed, g);
}

/*
** The connection ended on its own (from a loop callback, so user
** callbacks may run here): the open and every command fail with status.
*/
static void die(orr_guest *g, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void die(orr_guest *g, int status, const char *fmt, ...) {
  va_list ap;
  cmd *c;

  if (g->state >= DEAD)
    return;
  g->state = DEAD;
  g->dead_status = status;
  va_start(ap, fmt);
  vsnprintf(g->dead_msg, sizeof g->dead_msg, fmt, ap);
  va_end(ap);
  glog(g, "%s", g->dead_msg);
  uv_timer_stop(&g->conn_timer);
  uv_timer_stop(&g->cmd_timer);
  close_conn(g);
  report_open(g, status, g->dead_msg);
  if ((c = g->inflight) != NULL) {
    g->inflight = NULL;
    finish(c, status, g->dead_msg, NULL);
  }
  /* Callbacks may have closed g: then on_handle_closed owns what is left. */
  if (g->state == DEAD)
    pump(g);
}

/* ---- Writing ------------------------------------------------------------ */

/* Writes text (taken) as one line; with ff, a 0xFF byte goes first: it
** resets the agent's JSON parser, whatever half a command it holds. */
static int write_line(orr_guest *g, char *text, int ff) {
  g->wrote_ns = uv_hrtime();
  orr_log(ORR_LOG_TRACE, "qga", g->log_id, "-> %s%s", ff ? "\\xff " : "",
          text);
  return orr__jc_write(g->conn, text, ff);
}

static char *command_text(const char *name, json_t *args) {
  json_t *msg = json_pack("{s:s}", "execute", name);
  char *text;

  if (msg != NULL && args != NULL)
    json_object_set(msg, "arguments", args);
  text = msg != NULL ? json_dumps(msg, JSON_COMPACT) : NULL;
  json_decref(msg);
  return text;
}

/* A fresh id each time, random so that answers to another client's syncs
** (an earlier connection, a previous process) never match ours. */
static uint64_t new_sync_id(void) {
  uint32_t v;

  if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v)
    v = (uint32_t)uv_hrtime();
  return (v & 0x7fffffff) | 1; /* a positive int the agent takes as is */
}

static void send_sync(orr_guest *g) {
  json_t *args;
  char *text;
  int rc;

  g->sync_id = new_sync_id();
  g->sync_seq++;
  args = json_pack("{s:I}", "id", (json_int_t)g->sync_id);
  text = command_text("guest-sync-delimited", args);
  json_decref(args);
  if (text == NULL) {
    die(g, ORR_ENOMEM, "out of memory");
    return;
  }
  /* Whatever arrives before the answer's 0xFF is stale. */
  orr__jc_resync(g->conn);
  g->syncing = 1;
  g->sync_at = uv_hrtime();
  rc = write_line(g, text, 1);
  if (rc != 0)
    die(g, ORR_EVMGONE, "cannot write to the guest agent on %s: %s", g->path,
        orr_strerror(rc));
}

/* ---- Timers and the queue ----------------------------------------------- */

static uint64_t ms_until(uint64_t t, uint64_t now) {
  return t <= now ? 0 : (t - now + NS_PER_MS - 1) / NS_PER_MS;
}

/* cmd_timer fires at the earliest deadline or delayed start. */
static void arm_cmd_timer(orr_guest *g, uint64_t now);

static void on_cmd_timer(uv_timer_t *t) {
  pump(t->data);
}

static void arm_cmd_timer(orr_guest *g, uint64_t now) {
  uint64_t next = UINT64_MAX;
  cmd *c;

  if (g->inflight != NULL)
    next = g->inflight->deadline;
  for (c = g->queue.head; c != NULL; c = c->next)
    if (c->deadline < next)
      next = c->deadline;
  for (c = g->delayed.head; c != NULL; c = c->next) {
    uint64_t at = c->not_before < c->deadline ? c->not_before : c->deadline;
    if (at < next)
      next = at;
  }
  if (next == UINT64_MAX)
    uv_timer_stop(&g->cmd_timer);
  else
    uv_timer_start(&g->cmd_timer, on_cmd_timer, ms_until(next, now), 0);
}

static void fail_timeout(orr_guest *g, cmd *c, int sent) {
  char msg[256];

  snprintf(msg, sizeof msg, "%s: no answer from the guest agent in time%s",
           c->name, sent ? "" : " (it was still busy with earlier commands)");
  glog(g, "%s", msg);
  finish(c, ORR_ETIMEDOUT, msg, NULL);
}

/* Fails what is past its deadline and moves due delayed commands to the
** queue. Returns nonzero if a callback closed g. */
static int expire(orr_guest *g, uint64_t now) {
  cmdlist keep, due;
  cmd *c;

  if (g->inflight != NULL && g->inflight->deadline <= now) {
    c = g->inflight;
    g->inflight = NULL;
    /* Its answer may still come: the next command syncs past it. */
    g->need_sync = 1;
    fail_timeout(g, c, 1);
    if (g->state == CLOSING)
      return 1;
  }
  list_init(&keep);
  list_init(&due);
  while ((c = list_shift(&g->queue)) != NULL)
    list_push(c->deadline <= now && c->status == 0 ? &due : &keep, c);
  list_move(&g->queue, &keep);
  while ((c = list_shift(&g->delayed)) != NULL) {
    if (c->deadline <= now)
      list_push(&due, c);
    else if (c->not_before <= now)
      list_push(&g->queue, c);
    else
      list_push(&keep, c);
  }
  list_move(&g->delayed, &keep);
  while ((c = list_shift(&due)) != NULL) {
    fail_timeout(g, c, 0);
    if (g->state == CLOSING) {
      fail_list(&due, ORR_ECANCELED, CLOSED_MSG);
      return 1;
    }
  }
  return 0;
}

/* Delivers the preset failures; nonzero if a callback closed g. */
static int fail_preset(orr_guest *g) {
  cmdlist keep, bad;
  cmd *c;

  list_init(&keep);
  list_init(&bad);
  while ((c = list_shift(&g->queue)) != NULL)
    list_push(c->status != 0 ? &bad : &keep, c);
  list_move(&g->queue, &keep);
  while ((c = list_shift(&bad)) != NULL) {
    finish(c, c->status, c->msg, NULL);
    if (g->state == CLOSING) {
      /* on_handle_closed owns the rest: give it back. */
      while ((c = list_shift(&bad)) != NULL)
        list_push(&g->queue, c);
      return 1;
    }
  }
  return 0;
}

/*
** Moves the queue along: fails what is due, sends the next command (after
** a sync if one is needed). Runs only from loop callbacks.
*/
static void pump(orr_guest *g) {
  uint64_t now = uv_hrtime();
  cmd *c;
  char *text;
  int rc;

  if (g->state == CLOSING)
    return;
  if (g->state == DEAD) {
    uv_idle_stop(&g->idle);
    fail_list(&g->queue, g->dead_status, g->dead_msg);
    if (g->state == DEAD)
      fail_list(&g->delayed, g->dead_status, g->dead_msg);
    return;
  }
  if (expire(g, now))
    return;
  /* Preset failures (bad arguments) go out now, wherever they are queued:
  ** they need no turn on the wire. */
  if (fail_preset(g))
    return;
  if (g->state == READY && g->inflight == NULL && !g->syncing &&
      g->queue.head != NULL) {
    if (g->need_sync) {
      g->need_sync = 0;
      send_sync(g);
      if (g->state != READY)
        return;
    } else {
      c = list_shift(&g->queue);
      text = command_text(c->name, c->args);
      json_decref(c->args);
      c->args = NULL;
      if (text == NULL) {
        finish(c, ORR_ENOMEM, "out of memory", NULL);
        return;
      }
      g->inflight = c;
      rc = write_line(g, text, 0);
      if (rc != 0) {
        die(g, ORR_EVMGONE, "cannot write to the guest agent on %s: %s",
            g->path, orr_strerror(rc));
        return;
      }
    }
  }
  arm_cmd_timer(g, now);
  arm_conn_timer(g, now);
}

static void on_idle(uv_idle_t *h) {
  uv_idle_stop(h);
  pump(h->data);
}

/* ---- Reading ------------------------------------------------------------ */

/* The line right after a 0xFF while a sync is unanswered. */
static void on_sync_line(orr_guest *g, json_t *msg) {
  json_t *ret = json_object_get(msg, "return");

  if (!json_is_integer(ret) ||
      (uint64_t)json_integer_value(ret) != g->sync_id) {
    /* An answer to an earlier sync (ours or another client's): the one we
    ** wait for comes after its own 0xFF. */
    glog(g, "skipping a stale answer before the sync's");
    orr__jc_resync(g->conn);
    return;
  }
  g->syncing = 0;
  if (g->state == OPENING) {
    char *text = command_text("guest-ping", NULL);
    int rc = text != NULL ? write_line(g, text, 0) : ORR_ENOMEM;

    if (rc != 0) {
      die(g, rc == ORR_ENOMEM ? ORR_ENOMEM : ORR_EVMGONE,
          "cannot write to the guest agent on %s: %s", g->path,
          orr_strerror(rc));
      return;
    }
    g->pinging = 1;
    return;
  }
  pump(g);
}

/* The answer to the open's guest-ping: the agent is up. */
static void on_ping_line(orr_guest *g, json_t *msg) {
  json_t *err = json_object_get(msg, "error");
  const char *desc = json_string_value(json_object_get(err, "desc"));

  g->pinging = 0;
  if (json_object_get(msg, "return") == NULL) {
    die(g, err != NULL ? ORR_EBACKEND : ORR_EIO, "guest-ping: %s",
        desc != NULL ? desc : "unexpected answer from the guest agent");
    return;
  }
  g->state = READY;
  uv_timer_stop(&g->conn_timer);
  report_open(g, 0, NULL);
  if (g->state == READY)
    pump(g);
}

static void on_reply_line(orr_guest *g, json_t *msg, const char *line,
                          size_t len) {
  cmd *c = g->inflight;
  json_t *ret = json_object_get(msg, "return");
  json_t *err = json_object_get(msg, "error");
  const char *desc = json_string_value(json_object_get(err, "desc"));
  char text[512];

  g->inflight = NULL;
  if (ret != NULL) {
    finish(c, 0, NULL, ret);
  } else if (err != NULL) {
    snprintf(text, sizeof text, "%s: %s", c->name,
             desc != NULL ? desc : "the guest agent refused it");
    finish(c, ORR_EBACKEND, text, err);
  } else {
    /* Not an answer: the stream is out of step, so resync. */
    g->need_sync = 1;
    snprintf(text, sizeof text, "%s: unexpected answer from the agent: %.*s",
             c->name, len > 120 ? 120 : (int)len, line);
    finish(c, ORR_EIO, text, NULL);
  }
  if (g->state == READY)
    pump(g);
}

static int on_line(void *arg, const char *line, size_t len) {
  orr_guest *g = arg;
  json_error_t jerr;
  json_t *msg = json_loadb(line, len, 0, &jerr);

  /* The latency is since the last line written: the agent answers one
  ** command at a time. */
  orr_log(ORR_LOG_TRACE, "qga", g->log_id, "<- %.*s (%.3f ms)", (int)len, line,
          g->wrote_ns ? (double)(uv_hrtime() - g->wrote_ns) / 1e6 : 0.0);
  if (g->syncing) {
    on_sync_line(g, msg);
  } else if (!json_is_object(msg)) {
    g->need_sync = 1;
    glog(g, "ignoring a line that is not a JSON object: %.*s",
         len > 120 ? 120 : (int)len, line);
  } else if (g->pinging) {
    on_ping_line(g, msg);
  } else if (g->inflight != NULL) {
    on_reply_line(g, msg, line, len);
  } else {
    /* The late answer of a command that timed out. */
    g->need_sync = 1;
    glog(g, "ignoring an answer nobody waits for: %.*s",
         len > 120 ? 120 : (int)len, line);
  }
  json_decref(msg);
  /* A callback may have closed g: skip the rest of the read. */
  return g->state >= DEAD;
}

/* The connection ended on its own. */
static void on_ended(void *arg, orr_jc_end what, int code) {
  orr_guest *g = arg;

  if (what == ORR_JC_WRITE)
    die(g, ORR_EVMGONE, "the guest agent connection on %s broke: %s", g->path,
        uv_strerror(code));
  else if (what == ORR_JC_READ)
    /* EOF or a reset: QEMU exited, or closed the chardev. */
    die(g, ORR_EVMGONE,
        "the guest agent connection on %s closed (%s): the VM is gone", g->path,
        code == UV_EOF ? "end of file" : uv_strerror(code));
  else
    die(g, ORR_EIO, "dropping the guest agent connection on %s: %s", g->path,
        code == ORR_EIO ? "a line longer than 64 MiB" : orr_strerror(code));
}

/* ---- Connecting --------------------------------------------------------- */

static void on_conn_timer(uv_timer_t *t);

static void arm_conn_timer(orr_guest *g, uint64_t now) {
  uint64_t next = UINT64_MAX;

  if (g->state == OPENING) {
    next = g->open_deadline;
    if (g->syncing && g->sync_at + SYNC_RESEND_MS * NS_PER_MS < next)
      next = g->sync_at + SYNC_RESEND_MS * NS_PER_MS;
  } else if (g->state == READY && g->syncing && g->queue.head != NULL) {
    /* Resend only while someone waits behind the sync. */
    next = g->sync_at + SYNC_RESEND_MS * NS_PER_MS;
  } else {
    /* Connecting: the connection retries on its own timer. */
    uv_timer_stop(&g->conn_timer);
    return;
  }
  uv_timer_start(&g->conn_timer, on_conn_timer, ms_until(next, now), 0);
}

static void on_connected(void *arg, int status, orr_jc_stage stage,
                         const char *why) {
  orr_guest *g = arg;

  if (status == ORR_EVMGONE) {
    die(g, status,
        "the guest agent socket %s refuses connections: the VM is gone",
        g->path);
    return;
  }
  if (status == ORR_ETIMEDOUT) {
    die(g, status,
        "cannot connect to the guest agent socket %s within %llu ms: %s",
        g->path, (unsigned long long)g->opts.timeout_ms, why);
    return;
  }
  if (status != 0) {
    if (stage == ORR_JC_SOCKET)
      die(g, status, "socket: %s", why);
    else if (stage == ORR_JC_CONNECT)
      die(g, status, "cannot connect to the guest agent socket %s: %s", g->path,
          why);
    else
      die(g, status, "the guest agent socket %s: %s", g->path, why);
    return;
  }
  g->state = OPENING;
  send_sync(g);
  if (g->state == OPENING)
    arm_conn_timer(g, uv_hrtime());
}

static void on_conn_timer(uv_timer_t *t) {
  orr_guest *g = t->data;
  uint64_t now = uv_hrtime();

  switch (g->state) {
  case OPENING:
    /* Timers run on the loop's cached clock and may fire a little early:
    ** ask the clock rather than trust that they are late. */
    if (now >= g->open_deadline) {
      die(g, ORR_ETIMEDOUT,
          "the guest agent on %s did not answer within %llu ms (has the "
          "guest booted to qemu-ga on org.qemu.guest_agent.0? is another "
          "client connected to the socket?)",
          g->path, (unsigned long long)g->opts.timeout_ms);
      return;
    }
    break;
  case READY:
    if (!g->syncing || g->queue.head == NULL)
      return;
    break;
  default:
    return;
  }
  if (g->syncing && now >= g->sync_at + SYNC_RESEND_MS * NS_PER_MS) {
    glog(g, "no answer to sync %llu yet: sending another",
         (unsigned long long)g->sync_seq);
    send_sync(g);
    if (g->state >= DEAD)
      return;
  }
  arm_conn_timer(g, now);
}

/* ---- The public calls --------------------------------------------------- */

int orr_guest_connect(uv_loop_t *loop, const char *path,
                      const orr_guest_options *opts, orr_vm_cb cb, void *arg,
                      orr_guest **out, orr_error *e) {
  orr_jc_options jo;
  orr_guest *g;
  int rc;

  *out = NULL;
  if (loop == NULL || cb == NULL)
    return orr_error_set(e, ORR_EINVAL, "guest: no loop or callback");
  if (path == NULL || path[0] == '\0')
    return orr_error_set(e, ORR_EINVAL, "guest: no agent socket path");
  if (strlen(path) >= sizeof g->path)
    return orr_error_set(e, ORR_EINVAL,
                         "guest: the agent socket path must be shorter than "
                         "%zu bytes, got %zu",
                         sizeof g->path, strlen(path));
  g = calloc(1, sizeof *g);
  if (g == NULL)
    return orr_error_set(e, ORR_ENOMEM, "out of memory");
  g->loop = loop;
  strcpy(g->path, path);
  if (opts != NULL)
    g->opts = *opts;
  snprintf(g->log_id, sizeof g->log_id, "%s",
           g->opts.log_id != NULL ? g->opts.log_id : "");
  g->opts.log_id = NULL; /* the caller's string need not outlive the call */
  if (g->opts.timeout_ms == 0)
    g->opts.timeout_ms = DEFAULT_OPEN_TIMEOUT_MS;
  if (g->opts.command_timeout_ms == 0)
    g->opts.command_timeout_ms = DEFAULT_CMD_TIMEOUT_MS;
  g->open_cb = cb;
  g->open_arg = arg;
  g->open_deadline = uv_hrtime() + g->opts.timeout_ms * NS_PER_MS;
  list_init(&g->queue);
  list_init(&g->delayed);
  memset(&jo, 0, sizeof jo);
  jo.connected = on_connected;
  jo.line = on_line;
  jo.ended = on_ended;
  jo.arg = g;
  jo.deadline = g->open_deadline;
  jo.max_line = MAX_LINE;
  jo.refused_is_gone = g->opts.refused_is_gone;
  /* The deadline timers keep the loop alive while anything is owed; an
  ** idle connection must not keep a caller's uv_run() going for ever. */
  jo.weak = 1;
  /* The first attempt runs from the loop, never inside this call. */
  rc = orr__jc_open(loop, g->path, &jo, &g->conn);
  if (rc != 0) {
    free(g);
    return orr_error_set(e, rc, "guest: %s", orr_strerror(rc));
  }
  uv_timer_init(loop, &g->conn_timer);
  uv_timer_init(loop, &g->cmd_timer);
  uv_idle_init(loop, &g->idle);
  g->conn_timer.data = g->cmd_timer.data = g->idle.data = g;
  g->handles = 4; /* the three above and conn */
  *out = g;
  return 0;
}

static cmd *new_cmd(const char *name, json_t *args, orr_vm_cb cb, void *arg) {
  cmd *c = calloc(1, sizeof *c);

  if (c == NULL) {
    json_decref(args);
    return NULL;
  }
  snprintf(c->name, sizeof c->name, "%s", name);
  c->args = args;
  c->cb = cb;
  c->arg = arg;
  return c;
}

void orr__guest_send(orr_guest *g, const char *name, json_t *args,
                     uint64_t deadline, uint64_t delay_ms, orr_vm_cb cb,
                     void *arg) {
  cmd *c = new_cmd(name, args, cb, arg);

  if (c == NULL) {
    orr__guest_fail(g, ORR_ENOMEM, "out of memory", cb, arg);
    return;
  }
  c->deadline = deadline;
  if (delay_ms > 0) {
    c->not_before = uv_hrtime() + delay_ms * NS_PER_MS;
    list_push(&g->delayed, c);
  } else {
    list_push(&g->queue, c);
  }
  if (g->state != CLOSING)
    uv_idle_start(&g->idle, on_idle);
}

void orr__guest_fail(orr_guest *g, int status, const char *msg, orr_vm_cb cb,
                     void *arg) {
  cmd *c = calloc(1, sizeof *c);

  /* Out of memory even for this: nothing to queue it with, and cb must
  ** not run from here. Nothing sane is left to do but abort. */
  if (c == NULL || (c->msg = strdup(msg)) == NULL)
    abort();
  snprintf(c->name, sizeof c->name, "(refused)");
  c->status = status;
  c->cb = cb;
  c->arg = arg;
  list_push(&g->queue, c);
  if (g->state != CLOSING)
    uv_idle_start(&g->idle, on_idle);
}

void orr_guest_command(orr_guest *g, const char *command, json_t *arguments,
                       uint64_t timeout_ms, orr_vm_cb cb, void *arg) {
  char msg[160];

  if (command == NULL || command[0] == '\0' ||
      strlen(command) >= sizeof(((cmd *)0)->name) ||
      (arguments != NULL && !json_is_object(arguments))) {
    json_decref(arguments);
    snprintf(msg, sizeof msg,
             "guest command: the name must be 1..%zu characters and the "
             "arguments an object or NULL",
             sizeof(((cmd *)0)->name) - 1);
    orr__guest_fail(g, ORR_EINVAL, msg, cb, arg);
    return;
  }
  orr__guest_send(g, command, arguments, orr__guest_deadline(g, timeout_ms), 0,
                  cb, arg);
}

void orr_guest_ping(orr_guest *g, uint64_t timeout_ms, orr_vm_cb cb,
                    void *arg) {
  orr_guest_command(g, "guest-ping", NULL, timeout_ms, cb, arg);
}

void orr_guest_close(orr_guest *g) {
  if (g->state == CLOSING)
    return;
  g->state = CLOSING;
  close_conn(g);
  uv_close((uv_handle_t *)&g->conn_timer, on_handle_closed);
  uv_close((uv_handle_t *)&g->cmd_timer, on_handle_closed);
  uv_close((uv_handle_t *)&g->idle, on_handle_closed);
}

/*
** Live migration between two engines: the handshake protocol and the
** bookkeeping of both sides (docs/migration.md has the protocol). The
** transport is migrate_wire.c; what is sent to QEMU in each phase comes
** from the backend (orr_backend.migrate_plan).
**
** Source: connect, offer (the live document, the state, the backend's
** layout), wait for "ready"; connect the stream and prove it with the
** destination's token; on "stream-ok" hand the socket to QEMU and start;
** poll until QEMU completed; wait for "running"; quit. Anything else before
** "running" cancels: the migration is cancelled (or, once QEMU completed,
** the VM resumed), and the source runs on as it was.
**
** Destination: listen; take the offer, check it (the document as create
** would, under this engine's policy), launch QEMU waiting for a stream,
** answer "ready" with a token; take the stream connection that presents
** it, hand it to QEMU, answer "stream-ok"; poll until QEMU completed; cont
** (if the source ran); answer "running". Anything else kills that QEMU.
*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "migrate_wire.h"
#include "orrery/document.h"
#include "vm_internal.h"

/* The VM layer's way in (vm_internal.h: it never calls this file). */
static void hook_launched(orr_vm *vm);
static void hook_launch_failed(orr_vm *vm, int status, const orr_error *e);
static void hook_closed(orr_vm *vm);
static void hook_exited(orr_vm *vm);
static int hook_busy(const orr_vm *vm, const char *op, orr_error *e);
static const struct orr_mig_hooks hooks = {hook_launched, hook_launch_failed,
                                           hook_closed, hook_exited, hook_busy};

#define POLL_MS_SOURCE 20
#define POLL_MS_DEST 5
/* Connections the destination holds at once while it waits for the stream:
** a stranger's connection cannot keep the source's out. */
#define MAX_CANDIDATES 4

enum {
  P_CONNECT,   /* source: connecting the control connection */
  P_OFFERED,   /* source: offer sent, waiting for ready */
  P_STREAM,    /* source: stream connecting / proving; dest: waiting */
  P_HANDOFF,   /* QEMU is being given the stream */
  P_MIGRATING, /* the stream flows: polling */
  P_COMPLETED, /* source: QEMU completed, waiting for "running" */
  P_QUITTING,  /* source: the destination runs, our QEMU quits */
  P_LISTEN,    /* dest: waiting for a connection and its offer */
  P_LAUNCHING, /* dest: QEMU starting from the offer */
  P_RESUMING,  /* dest: cont sent */
  P_DONE
};

struct orr_mig {
  orr_vm *vm;
  bool incoming;
  int phase;
  char uri[160];
  orr_muri u;
  orr_mconn *ctl, *stream;
  orr_mconn *cand[MAX_CANDIDATES]; /* dest: connections yet to show a token */
  orr_mlisten *listen;
  json_t *plan;
  char token[33];
  uint64_t t0, deadline, timeout_ms;
  uv_timer_t *timer; /* the deadline, and the poll */
  int inflight;      /* QMP commands not yet answered */
  size_t setup_i;    /* the setup command being sent */
  bool ended;        /* the outcome is decided */
  bool delivered;    /* the caller heard (or never will) */
  bool peer_running; /* source: the destination runs the VM */
  int stats_polls;   /* polls for the times of a completed migration */
  bool started;      /* the source's QEMU was told to migrate */
  bool completed;    /* its QEMU said completed */
  bool was_running;  /* the source ran: the destination resumes it */
  int stream_fd;     /* the socket for QEMU, until handed over */
  json_t *stats;     /* the source's final query-migrate */
  json_t *probe;     /* source: the answer to the plan's "probe" */
  orr_vm_cb cb;      /* source: the caller */
  void *arg;
  int status;
  orr_error err;
};

typedef struct orr_mig mig;

/* The call's name, as its messages start (never a bare backend verb). */
static const char *op(const mig *m) {
  return m->incoming ? "receive:" : "migrate:";
}

static void send_next(mig *m);
static void poll_now(mig *m);
static void on_stream_connected(void *arg, orr_mconn *c, int status,
                                const char *errmsg);

/* ---- bookkeeping ---- */

static uint64_t left(const mig *m) {
  uint64_t now = orr__now_ms();
  return m->deadline > now ? m->deadline - now : 0;
}

static void emit(mig *m, const char *phase, json_t *extra) {
  json_t *d = json_pack("{s:s, s:s, s:s}", "Role",
                        m->incoming ? "destination" : "source", "Phase", phase,
                        m->incoming ? "Listen" : "To", m->uri);
  if (extra != NULL)
    json_object_update(d, extra);
  json_decref(extra);
  orr__vm_emit(m->vm, "migration", d);
  json_decref(d);
}

static void timer_closed(uv_handle_t *h) {
  free(h);
}

/* Frees m once nothing can call back into it; the VM may then be freed. */
static void maybe_free(mig *m) {
  orr_vm *vm = m->vm;
  if (!m->ended || !m->delivered || m->inflight > 0)
    return;
  if (m->timer) {
    uv_timer_stop(m->timer);
    uv_close((uv_handle_t *)m->timer, timer_closed);
  }
  orr__mconn_close(m->ctl);
  orr__mconn_close(m->stream);
  for (int i = 0; i < MAX_CANDIDATES; i++)
    orr__mconn_close(m->cand[i]);
  orr__mlisten_close(m->listen);
  if (m->stream_fd >= 0)
    close(m->stream_fd);
  json_decref(m->plan);
  json_decref(m->stats);
  json_decref(m->probe);
  if (vm->mig == m)
    vm->mig = NULL;
  free(m);
  if (vm->released)
    orr__vm_released(vm);
}

static void arm(mig *m, uint64_t ms, uv_timer_cb cb) {
  if (m->timer == NULL) {
    m->timer = malloc(sizeof *m->timer);
    uv_timer_init(m->vm->eng->loop, m->timer);
    m->timer->data = m;
  }
  uv_timer_start(m->timer, cb, ms, 0);
}

static json_t *msg(const char *type) {
  return json_pack("{s:i, s:s}", "orrery-migrate", ORR_MIGRATE_PROTOCOL, "type",
                   type);
}

/* The code an error name stands for (a peer's refusal), or EBACKEND. */
static int code_by_name(const char *name) {
  static const int codes[] = {
#define ORR_MIG_CODE(n, v, s) ORR_##n,
      ORR_ERRNO_MAP(ORR_MIG_CODE)
#undef ORR_MIG_CODE
  };
  for (size_t i = 0; name && i < sizeof codes / sizeof codes[0]; i++)
    if (strcmp(orr_err_name(codes[i]), name) == 0)
      return codes[i];
  return ORR_EBACKEND;
}

/* Sends one of the plan's commands (fd >= 0: with it) with what is left of
** the deadline. */
static int send_plan(mig *m, const char *key, int fd, orr_backend_reply_cb cb);

static void on_late(void *arg, int status, json_t *result, const char *errmsg) {
  mig *m = arg;
  (void)status, (void)result, (void)errmsg;
  m->inflight--;
  maybe_free(m);
}

static int send_cmd(mig *m, const json_t *c, int fd, orr_backend_reply_cb cb) {
  const char *name = json_string_value(json_object_get(c, "execute"));
  json_t *args = json_deep_copy(json_object_get(c, "arguments"));
  uint64_t ms = m->ended ? ORR_VM_TIMEOUT_MS : left(m);
  int rc;
  if (ms == 0)
    ms = 1;
  if (fd >= 0)
    rc = m->vm->backend->send_fd(m->vm, name, args, fd, ms, cb, on_late, m);
  else
    rc = m->vm->backend->send(m->vm, name, args, ms, cb, on_late, m);
  if (rc == 0)
    m->inflight++;
  return rc;
}

static int send_plan(mig *m, const char *key, int fd, orr_backend_reply_cb cb) {
  return send_cmd(m, json_object_get(m->plan, key), fd, cb);
}

/* First thing in a reply callback: the reply is counted; nonzero when m is
** decided already or the answer is a timeout (the late one is counted). */
static int replied(mig *m, int status) {
  if (status == ORR_ETIMEDOUT)
    return m->ended;
  m->inflight--;
  if (m->ended) {
    maybe_free(m);
    return 1;
  }
  return 0;
}

/* A step of the migration answered: a missed deadline ends the migration
** (on_deadline); otherwise as replied(). 1: nothing more to do here. */
static void on_deadline(uv_timer_t *t);
static int step_replied(mig *m, int status) {
  if (status == ORR_ETIMEDOUT && !m->ended) {
    on_deadline(m->timer);
    return 1;
  }
  return replied(m, status);
}

/* A command whose answer changes nothing (cancel, resume after a
** failure): only counted. */
static void on_counted(void *arg, int status, json_t *result,
                       const char *errmsg) {
  mig *m = arg;
  (void)result, (void)errmsg;
  if (status == ORR_ETIMEDOUT)
    return; /* the late answer is counted */
  m->inflight--;
  maybe_free(m);
}

/* ---- the outcome ---- */

static void deliver_source(void *arg) {
  mig *m = arg;
  orr_vm_cb cb = m->cb;
  json_t *result = NULL;
  m->cb = NULL;
  if (m->status == 0 && m->stats != NULL)
    result = json_incref(m->stats);
  m->delivered = true;
  if (cb)
    cb(m->arg, m->status, &m->err, result);
  json_decref(result);
  m->phase = P_DONE;
  maybe_free(m);
}

static void fail(mig *m, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Ends the migration with code: the peer is told, QEMU is put back (the
** source) or killed (the destination), events say so, the caller hears. */
static void fail(mig *m, int code, const char *fmt, ...) {
  va_list ap;
  json_t *abort_msg;
  if (m->ended || m->phase == P_QUITTING)
    return; /* decided, or handed over: the exit completes it */
  m->ended = true;
  m->status = code;
  va_start(ap, fmt);
  vsnprintf(m->err.msg, sizeof m->err.msg, fmt, ap);
  va_end(ap);
  m->err.code = code;
  if (code == ORR_EVMGONE && m->vm->proc != NULL) {
    /* QEMU says why in its last words (a stream it could not load). */
    char out[300] = "";
    size_t n = orr_process_output(m->vm->proc, out, sizeof out), len;
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
      out[--n] = '\0';
    len = strlen(m->err.msg);
    if (n > 0 && len + 3 < sizeof m->err.msg)
      snprintf(m->err.msg + len, sizeof m->err.msg - len, ": %s", out);
  }
  if (m->timer)
    uv_timer_stop(m->timer);
  if (m->ctl != NULL) {
    abort_msg = msg(m->incoming ? "failed" : "abort");
    json_object_set_new(abort_msg, "code", json_string(orr_err_name(code)));
    json_object_set_new(abort_msg, "message", json_string(m->err.msg));
    orr__mconn_send(m->ctl, abort_msg);
  }
  emit(m,
       code == ORR_ECANCELED   ? "cancelled"
       : code == ORR_ETIMEDOUT ? "timed out"
                               : "failed",
       json_pack("{s:s, s:s}", "Error", orr_err_name(code), "Message",
                 m->err.msg));
  if (!m->incoming) {
    /* The source runs on as it was: a migration under way is cancelled
    ** (QEMU restarts a guest it had stopped for the last pass), one QEMU
    ** completed left the guest stopped in "postmigrate": resume it. */
    if (!m->vm->exited && !m->vm->closed) {
      if (m->completed && m->was_running)
        send_plan(m, "resume", -1, on_counted);
      else if (m->started)
        send_plan(m, "cancel", -1, on_counted);
    }
    if (m->completed)
      m->vm->after_save = !m->was_running; /* "postmigrate" if it stays */
    orr__defer(m->vm->eng, deliver_source, m);
    return;
  }
  /* The destination: what QEMU received is no VM; the receive fails (the
  ** VM layer says "receive: "). */
  {
    orr_vm *vm = m->vm;
    orr_error e = {code, ""};
    const char *text = m->err.msg;
    if (strncmp(text, "receive: ", 9) == 0)
      text += 9;
    snprintf(e.msg, sizeof e.msg, "%s", text);
    orr__vm_launched(vm, code, &e);
    if (vm->launched && !vm->exited)
      vm->backend->kill(vm);
  }
  m->delivered = true;
  m->phase = P_DONE;
  maybe_free(m);
}

static void on_deadline(uv_timer_t *t) {
  mig *m = t->data;
  fail(m, ORR_ETIMEDOUT,
       "%s the migration did not complete within %llu ms (%s)", op(m),
       (unsigned long long)m->timeout_ms,
       m->phase == P_LISTEN      ? "no source connected and offered a VM"
       : m->phase == P_CONNECT   ? "connecting to the destination"
       : m->phase == P_OFFERED   ? "the destination did not answer the offer"
       : m->phase == P_COMPLETED ? "the destination did not say it runs"
       : m->phase == P_LAUNCHING ? "QEMU did not start"
                                 : "the stream did not complete");
}

static void arm_deadline(mig *m) {
  arm(m, left(m), on_deadline);
}

/* ---- both sides: the stream through QEMU ---- */

static void on_poll_timer(uv_timer_t *t) {
  poll_now(t->data);
}

static void on_source_done(mig *m);
static void on_dest_done(mig *m);

static void on_poll(void *arg, int status, json_t *result, const char *errmsg) {
  mig *m = arg;
  const char *st;
  if (replied(m, status))
    return;
  if (status != 0) {
    fail(m, status, "%s query-migrate: %s", op(m),
         status == ORR_EVMGONE ? "the VM process is gone" : errmsg);
    return;
  }
  st = json_string_value(json_object_get(result, "status"));
  if (st && strcmp(st, "completed") == 0 && !m->incoming &&
      json_integer_value(json_object_get(result, "total-time")) == 0 &&
      m->stats_polls++ < 20) {
    /* QEMU says completed a moment before it has written down the
    ** migration's times: ask again for them. */
    arm(m, 2, on_poll_timer);
    return;
  }
  if (st && strcmp(st, "completed") == 0) {
    if (!m->incoming) {
      json_decref(m->stats);
      m->stats = json_incref(result);
      m->completed = true;
      on_source_done(m);
    } else {
      on_dest_done(m);
    }
  } else if (st &&
             (strcmp(st, "failed") == 0 || strcmp(st, "cancelled") == 0)) {
    const char *desc = json_string_value(json_object_get(result, "error-desc"));
    fail(m, ORR_EBACKEND, "%s QEMU's migration %s%s%s", op(m), st,
         desc ? ": " : "", desc ? desc : "");
  } else if (left(m) == 0) {
    on_deadline(m->timer);
  } else {
    uint64_t every = m->incoming ? POLL_MS_DEST : POLL_MS_SOURCE;
    arm(m, left(m) < every ? left(m) : every, on_poll_timer);
  }
}

static void poll_now(mig *m) {
  if (send_plan(m, "poll", -1, on_poll) != 0)
    fail(m, ORR_EVMGONE, "%s the VM process is gone", op(m));
}

static void on_started(void *arg, int status, json_t *result,
                       const char *errmsg) {
  mig *m = arg;
  (void)result;
  if (step_replied(m, status))
    return;
  if (status != 0) {
    if (!m->incoming)
      m->started = false; /* QEMU refused to start: nothing to cancel */
    fail(m, status, "%s %s: %s", op(m),
         json_string_value(
             json_object_get(json_object_get(m->plan, "start"), "execute")),
         status == ORR_EVMGONE ? "the VM process is gone" : errmsg);
    return;
  }
  m->phase = P_MIGRATING;
  if (m->incoming) /* the source may start writing now */
    orr__mconn_send(m->ctl, msg("stream-ok"));
  emit(m, "streaming", NULL);
  poll_now(m);
}

static void on_handed(void *arg, int status, json_t *result,
                      const char *errmsg) {
  mig *m = arg;
  (void)result;
  if (step_replied(m, status))
    return;
  if (status != 0) {
    fail(m, status, "%s %s: %s", op(m),
         json_string_value(
             json_object_get(json_object_get(m->plan, "handoff"), "execute")),
         errmsg);
    return;
  }
  m->started = true;
  if (send_plan(m, "start", -1, on_started) != 0)
    fail(m, ORR_EVMGONE, "migrate: the VM process is gone");
}

/* The stream's socket goes to QEMU (taken by the send), then the start. */
static void hand_off(mig *m) {
  int fd = m->stream_fd;
  m->stream_fd = -1;
  m->phase = P_HANDOFF;
  if (send_plan(m, "handoff", fd, on_handed) != 0)
    fail(m, ORR_EVMGONE, "%s the VM process is gone", op(m));
}

static void on_setup(void *arg, int status, json_t *result,
                     const char *errmsg) {
  mig *m = arg;
  (void)result;
  if (step_replied(m, status))
    return;
  if (status != 0) {
    fail(m, status, "%s %s", op(m), errmsg);
    return;
  }
  m->setup_i++;
  send_next(m);
}

/* The setup commands in turn, then (the source) the hand-off, or (the
** destination) "ready". */
static void send_next(mig *m) {
  json_t *c = json_array_get(json_object_get(m->plan, "setup"), m->setup_i);
  if (c != NULL) {
    if (send_cmd(m, c, -1, on_setup) != 0)
      fail(m, ORR_EVMGONE, "%s the VM process is gone", op(m));
    return;
  }
  if (m->incoming) {
    json_t *r = msg("ready");
    json_object_set_new(r, "token", json_string(m->token));
    m->phase = P_STREAM;
    orr__mconn_send(m->ctl, r);
    emit(m, "accepted", NULL);
    return;
  }
  hand_off(m);
}

/* ---- the source ---- */

static void on_quit(void *arg, int status, json_t *result, const char *errmsg) {
  (void)status, (void)result, (void)errmsg;
  mig *m = arg;
  if (status != ORR_ETIMEDOUT)
    m->inflight--;
  /* The exit completes it (orr__mig_exited); a QEMU that does not quit is
  ** killed: the guest runs at the destination. */
  if (status != 0 && !m->vm->exited)
    m->vm->backend->kill(m->vm);
}

static void source_running(mig *m);

static void on_source_done(mig *m) {
  /* QEMU has sent everything; the guest is stopped here. The destination
  ** says "running" once it resumed it. */
  m->phase = P_COMPLETED;
  emit(m, "completed", NULL);
  if (m->peer_running)
    source_running(m);
  else
    arm_deadline(m);
}

static void source_running(mig *m) {
  json_t *s = m->stats;
  uint64_t total = orr__now_ms() - m->t0;
  json_t *out = json_pack(
      "{s:I, s:I, s:I, s:I, s:I}", "TotalTimeMs", (json_int_t)total,
      "DowntimeMs", json_integer_value(json_object_get(s, "downtime")),
      "SetupTimeMs", json_integer_value(json_object_get(s, "setup-time")),
      "QemuTotalTimeMs", json_integer_value(json_object_get(s, "total-time")),
      "TransferredBytes",
      json_integer_value(
          json_object_get(json_object_get(s, "ram"), "transferred")));
  json_decref(m->stats);
  m->stats = out;
  if (m->timer)
    uv_timer_stop(m->timer);
  emit(m, "handed over", json_deep_copy(out));
  /* From here the VM is the destination's: our QEMU goes, and the caller
  ** hears once it is gone. */
  m->phase = P_QUITTING;
  m->vm->quitting = true;
  /* A QEMU that would undo on its way out what the destination set up (its
  ** pipes' socket names, now the destination's) is killed instead. */
  if (json_is_true(json_object_get(m->plan, "kill_on_handover")))
    m->vm->backend->kill(m->vm);
  else if (orr__vm_send_verb(m->vm, ORR_VERB_QUIT, ORR_VM_QUIT_GRACE_MS,
                             on_quit, m) == 0)
    m->inflight++;
  else
    m->vm->backend->kill(m->vm);
}

static void on_source_msg(void *arg, orr_mconn *c, json_t *in, int status,
                          const char *errmsg) {
  mig *m = arg;
  const char *type;
  json_t *v;
  (void)c;
  if (m->ended || m->phase == P_QUITTING)
    return;
  if (in == NULL) {
    /* A destination that runs the VM has said all it had to say; it may
    ** hang up before our QEMU reports completion (its poll is ahead). */
    if (m->peer_running)
      return;
    fail(m, status == 0 ? ORR_EIO : status,
         "migrate: the destination's connection ended (%s)", errmsg);
    return;
  }
  v = json_object_get(in, "orrery-migrate");
  type = json_string_value(json_object_get(in, "type"));
  if (!json_is_integer(v) || json_integer_value(v) != ORR_MIGRATE_PROTOCOL) {
    fail(m, ORR_ENOTSUP,
         "migrate: the destination speaks migration protocol version %lld, "
         "this engine %d",
         json_is_integer(v) ? (long long)json_integer_value(v) : -1LL,
         ORR_MIGRATE_PROTOCOL);
    return;
  }
  if (type && (strcmp(type, "refused") == 0 || strcmp(type, "failed") == 0)) {
    const char *code = json_string_value(json_object_get(in, "code"));
    const char *text = json_string_value(json_object_get(in, "message"));
    fail(m, code_by_name(code), "migrate: the destination %s: %s",
         strcmp(type, "refused") == 0 ? "refused the VM" : "failed",
         text ? text : "(no reason given)");
    return;
  }
  if (m->phase == P_OFFERED && type && strcmp(type, "ready") == 0) {
    const char *tok = json_string_value(json_object_get(in, "token"));
    orr_error e = {0, ""};
    if (tok == NULL || strlen(tok) >= sizeof m->token) {
      fail(m, ORR_EIO, "migrate: the destination's ready has no token");
      return;
    }
    snprintf(m->token, sizeof m->token, "%s", tok);
    m->phase = P_STREAM;
    emit(m, "accepted", NULL);
    m->stream = orr__mconn_connect(m->vm->eng->loop, m->vm->eng->policy, &m->u,
                                   on_stream_connected, m, &e);
    if (m->stream == NULL)
      fail(m, e.code, "%s", e.msg);
    return;
  }
  if (m->phase == P_STREAM && type && strcmp(type, "stream-ok") == 0) {
    m->stream_fd = orr__mconn_dup_fd(m->stream);
    orr__mconn_release(m->stream);
    m->stream = NULL;
    if (m->stream_fd < 0) {
      fail(m, ORR_EIO, "migrate: cannot take the stream's socket");
      return;
    }
    m->setup_i = 0;
    send_next(m);
    return;
  }
  if (m->phase == P_COMPLETED && type && strcmp(type, "running") == 0) {
    source_running(m);
    return;
  }
  if ((m->phase == P_MIGRATING || m->phase == P_HANDOFF) && type &&
      strcmp(type, "running") == 0) {
    /* The destination runs before our QEMU said completed (it has sent
    ** everything): the next poll will say so. */
    m->peer_running = true;
    return;
  }
  fail(m, ORR_EIO, "migrate: unexpected \"%s\" from the destination",
       type ? type : "(no type)");
}

static void on_stream_connected(void *arg, orr_mconn *c, int status,
                                const char *errmsg) {
  mig *m = arg;
  json_t *hello;
  (void)c;
  if (m->ended)
    return;
  if (status != 0) {
    fail(m, ORR_EIO, "migrate: cannot connect the stream to %s: %s", m->uri,
         errmsg);
    return;
  }
  hello = msg("stream");
  json_object_set_new(hello, "token", json_string(m->token));
  orr__mconn_send(m->stream, hello);
}

static void on_ctl_connected(void *arg, orr_mconn *c, int status,
                             const char *errmsg) {
  mig *m = arg;
  orr_vm *vm = m->vm;
  json_t *offer;
  if (m->ended)
    return;
  if (status != 0) {
    fail(m, ORR_EIO, "migrate: cannot connect to %s: %s", m->uri, errmsg);
    return;
  }
  offer = msg("offer");
  json_object_set_new(offer, "id", json_string(vm->id));
  json_object_set(offer, "document", vm->doc);
  json_object_set_new(offer, "state", json_string(orr_vm_state(vm)));
  json_object_set_new(offer, "backend", json_string(vm->backend->name));
  json_object_set_new(offer, "accel", json_string(vm->accel));
  json_object_set_new(offer, "guest_agent",
                      json_boolean(vm->opts.guest_agent == 1));
  json_object_set_new(offer, "boot_mb", json_integer(vm->boot_mb));
  /* The backend's own layout, for the destination's backend to place the
  ** devices as they are here (qemu: the root port of each), with what the
  ** plan's probe found (qemu: where each memory device sits). */
  {
    json_t *layout = vm->layout ? json_copy(vm->layout) : json_object();
    const char *as = json_string_value(json_object_get(m->plan, "probe_as"));
    if (as != NULL && m->probe != NULL)
      json_object_set(layout, as, m->probe);
    json_object_set_new(offer, "layout", layout);
  }
  m->phase = P_OFFERED;
  orr__mconn_read(c, on_source_msg, m);
  orr__mconn_send(c, offer);
  emit(m, "offered", NULL);
}

static void connect_ctl(mig *m) {
  orr_error e = {0, ""};
  m->ctl = orr__mconn_connect(m->vm->eng->loop, m->vm->eng->policy, &m->u,
                              on_ctl_connected, m, &e);
  if (m->ctl == NULL)
    fail(m, e.code, "%s", e.msg);
}

/* What the backend asks to know of its VM before the offer (qemu: the
** guest address of each memory device). */
static void on_probe(void *arg, int status, json_t *result,
                     const char *errmsg) {
  mig *m = arg;
  if (step_replied(m, status))
    return;
  if (status != 0) {
    fail(m, status, "migrate: %s: %s",
         json_string_value(
             json_object_get(json_object_get(m->plan, "probe"), "execute")),
         status == ORR_EVMGONE ? "the VM process is gone" : errmsg);
    return;
  }
  m->probe = json_incref(result);
  connect_ctl(m);
}

/* Refusals found before anything is sent go through a request, so the
** callback contract (once, from the loop) holds. */
static void refuse(orr_vm *vm, orr_vm_cb cb, void *arg, int code,
                   const char *text) {
  orr_req *r = orr__req_new(vm, cb, arg);
  orr__req_fail(r, code, "migrate: %s", text);
}

void orr_vm_migrate(orr_vm *vm, const char *to, uint64_t timeout_ms,
                    orr_vm_cb cb, void *arg) {
  orr_error e = {0, ""};
  char why[300];
  mig *m;
  if (vm->mig != NULL && !vm->mig->ended) {
    snprintf(why, sizeof why, "VM %s is %s (wait for it to end)", vm->id,
             vm->mig->incoming ? "being received" : "migrating already");
    return refuse(vm, cb, arg, ORR_EBUSY, why);
  }
  if (vm->exited) {
    snprintf(why, sizeof why, "VM %s is gone (%s)", vm->id, vm->exit_reason);
    return refuse(vm, cb, arg, ORR_EVMGONE, why);
  }
  if (vm->state != ORR_VM_RUNNING && vm->state != ORR_VM_PAUSED) {
    snprintf(why, sizeof why,
             "VM %s is %s (only a Running or Paused VM "
             "migrates)",
             vm->id, orr_vm_state(vm));
    return refuse(vm, cb, arg, ORR_ESTATE, why);
  }
  if (vm->backend->migrate_plan == NULL) {
    snprintf(why, sizeof why, "the %s backend cannot migrate a VM",
             vm->backend->name);
    return refuse(vm, cb, arg, ORR_ENOTSUP, why);
  }
  for (orr_req *r = vm->reqs; r; r = r->next)
    if (!r->done || r->in_doubt)
      return refuse(vm, cb, arg, ORR_EBUSY,
                    "a request is still in flight (wait for it first)");
  if (vm->unplugs != NULL || json_object_size(vm->reserved) > 0)
    return refuse(vm, cb, arg, ORR_EBUSY,
                  "a device removal is still pending (the guest has not "
                  "let go of it)");
  m = calloc(1, sizeof *m);
  m->vm = vm;
  m->stream_fd = -1;
  m->cb = cb;
  m->arg = arg;
  m->phase = P_CONNECT;
  m->was_running = vm->state == ORR_VM_RUNNING;
  m->timeout_ms = timeout_ms ? timeout_ms : ORR_VM_MIGRATE_TIMEOUT_MS;
  m->t0 = orr__now_ms();
  m->deadline = m->t0 + m->timeout_ms;
  snprintf(m->uri, sizeof m->uri, "%s", to ? to : "");
  if (orr__muri_parse(vm->eng->policy, to, "migrate: to", &m->u, &e) != 0 ||
      vm->backend->migrate_plan(vm, false, &m->plan, &e) != 0) {
    free(m);
    return refuse(vm, cb, arg, e.code, e.msg);
  }
  vm->mig = m;
  vm->mig_hooks = &hooks;
  arm_deadline(m);
  if (json_object_get(m->plan, "probe") != NULL) {
    if (send_plan(m, "probe", -1, on_probe) != 0)
      fail(m, ORR_EVMGONE, "migrate: the VM process is gone");
    return;
  }
  connect_ctl(m);
}

/* ---- the destination ---- */

static void refuse_offer(mig *m, int code, const char *text) {
  json_t *r = msg("refused");
  if (strncmp(text, "receive: ", 9) == 0)
    text += 9; /* said once, by the VM layer */
  json_object_set_new(r, "code", json_string(orr_err_name(code)));
  json_object_set_new(r, "message", json_string(text));
  orr__mconn_send(m->ctl, r);
  emit(m, "refused",
       json_pack("{s:s, s:s}", "Error", orr_err_name(code), "Message", text));
  /* The peer has its answer: nothing more to tell it. */
  orr__mconn_close(m->ctl);
  m->ctl = NULL;
  fail(m, code, "the offered VM was refused: %s", text);
}

static void take_offer(mig *m, json_t *in) {
  orr_vm *vm = m->vm;
  orr_error e = {0, ""};
  json_t *doc = json_object_get(in, "document"), *norm = NULL;
  json_t *layout = json_object_get(in, "layout");
  const char *state = json_string_value(json_object_get(in, "state"));
  const char *accel = json_string_value(json_object_get(in, "accel"));
  const char *backend = json_string_value(json_object_get(in, "backend"));
  json_t *boot = json_object_get(in, "boot_mb");
  json_t *ga = json_object_get(in, "guest_agent");
  char why[600];
  if (!json_is_object(doc) || !json_is_object(layout) || state == NULL ||
      accel == NULL || !json_is_integer(boot) || !json_is_boolean(ga)) {
    refuse_offer(m, ORR_EINVAL,
                 "the offer needs document, layout, state, accel, "
                 "boot_mb and guest_agent");
    return;
  }
  if (backend == NULL || strcmp(backend, "qemu") != 0) {
    snprintf(why, sizeof why, "backend \"%s\" is not received here (qemu)",
             backend ? backend : "");
    refuse_offer(m, ORR_ENOTSUP, why);
    return;
  }
  if (strcmp(state, "Running") != 0 && strcmp(state, "Paused") != 0) {
    snprintf(why, sizeof why, "state must be Running or Paused, got %s", state);
    refuse_offer(m, ORR_EINVAL, why);
    return;
  }
  /* The document is checked as create would check it, and its files are
  ** judged under this engine's policy when QEMU's argv is made. */
  if (orr_doc_check(doc, &norm, &e) != 0) {
    refuse_offer(m, e.code, e.msg);
    return;
  }
  m->was_running = strcmp(state, "Running") == 0;
  vm->incoming_layout = json_incref(layout);
  vm->opts.guest_agent = json_is_true(ga);
  m->phase = P_LAUNCHING;
  /* QEMU's start-up may take what is left of the receive's deadline. */
  vm->opts.timeout_ms = left(m) ? left(m) : 1;
  {
    const char *src = json_string_value(json_object_get(in, "id"));
    emit(m, "offered", json_pack("{s:s}", "Source", src ? src : ""));
  }
  if (orr__vm_incoming_launch(vm, norm, accel, json_integer_value(boot), &e) !=
      0) {
    refuse_offer(m, e.code, e.msg);
    return;
  }
  /* QEMU starts; orr__mig_launched follows (or the launch fails, which
  ** the VM layer reports through create_cb: orr__mig_exited tells the
  ** source). */
}

/* Answers a connection that is not the source's stream, then drops it:
** whoever made it hears why. */
static void refuse_conn(mig *m, orr_mconn *c, int code, const char *why) {
  json_t *r = msg("refused");
  json_object_set_new(r, "code", json_string(orr_err_name(code)));
  json_object_set_new(r, "message", json_string(why));
  orr__mconn_send(c, r);
  orr__mconn_close(c);
  emit(m, "connection refused",
       json_pack("{s:s, s:s}", "Error", orr_err_name(code), "Message", why));
}

/* A candidate's one line: the source's stream presents the token of
** "ready", then QEMU's bytes follow; anything else is refused. */
static void take_stream(mig *m, orr_mconn *c, json_t *in) {
  const char *tok = in ? json_string_value(json_object_get(in, "token")) : 0;
  const char *type = in ? json_string_value(json_object_get(in, "type")) : 0;
  int i;
  for (i = 0; i < MAX_CANDIDATES && m->cand[i] != c; i++)
    ;
  if (i == MAX_CANDIDATES)
    return;
  m->cand[i] = NULL;
  if (in == NULL) {
    orr__mconn_close(c);
    return;
  }
  if (type == NULL || strcmp(type, "stream") != 0 || tok == NULL) {
    refuse_conn(m, c, ORR_EPERM,
                "receive: a connection to a migration under way must be "
                "the source's stream: {\"type\": \"stream\", \"token\": "
                "the token of \"ready\"} (it has no token)");
    return;
  }
  if (m->phase != P_STREAM || strcmp(tok, m->token) != 0) {
    refuse_conn(m, c, ORR_EPERM,
                m->phase != P_STREAM
                    ? "receive: the stream is taken already"
                    : "receive: the stream's token is wrong (it must be the "
                      "token the destination sent in \"ready\")");
    return;
  }
  orr__mconn_stop(c);
  m->stream_fd = orr__mconn_dup_fd(c);
  orr__mconn_release(c);
  /* The others were not the source's. */
  for (i = 0; i < MAX_CANDIDATES; i++)
    if (m->cand[i] != NULL) {
      orr__mconn_close(m->cand[i]);
      m->cand[i] = NULL;
    }
  if (m->stream_fd < 0) {
    fail(m, ORR_EIO, "cannot take the stream's socket");
    return;
  }
  hand_off(m);
}

static void on_dest_msg(void *arg, orr_mconn *c, json_t *in, int status,
                        const char *errmsg) {
  mig *m = arg;
  const char *type;
  json_t *v;
  (void)status;
  if (m->ended || m->phase == P_DONE)
    return;
  if (c != m->ctl) {
    take_stream(m, c, in);
    return;
  }
  if (in == NULL) {
    fail(m, ORR_EIO, "the source's connection ended (%s)", errmsg);
    return;
  }
  v = json_object_get(in, "orrery-migrate");
  type = json_string_value(json_object_get(in, "type"));
  if (!json_is_integer(v) || json_integer_value(v) != ORR_MIGRATE_PROTOCOL) {
    char why[200];
    snprintf(why, sizeof why,
             "migration protocol version %lld is not spoken here (this "
             "engine speaks %d)",
             json_is_integer(v) ? (long long)json_integer_value(v) : -1LL,
             ORR_MIGRATE_PROTOCOL);
    refuse_offer(m, ORR_ENOTSUP, why);
    return;
  }
  if (m->phase == P_LISTEN && type && strcmp(type, "offer") == 0) {
    take_offer(m, in);
    return;
  }
  if (type && strcmp(type, "abort") == 0) {
    const char *text = json_string_value(json_object_get(in, "message"));
    fail(m, ORR_ECANCELED, "the source ended the migration: %s",
         text ? text : "(no reason given)");
    return;
  }
  fail(m, ORR_EIO, "unexpected \"%s\" from the source",
       type ? type : "(no type)");
}

static void on_dest_conn(void *arg, orr_mconn *c) {
  mig *m = arg;
  if (m->ended || m->phase == P_DONE) {
    orr__mconn_close(c);
    return;
  }
  if (m->ctl == NULL && m->phase == P_LISTEN) {
    m->ctl = c;
    emit(m, "connected", NULL);
    orr__mconn_read(c, on_dest_msg, m);
    return;
  }
  if (m->phase == P_STREAM)
    for (int i = 0; i < MAX_CANDIDATES; i++)
      if (m->cand[i] == NULL) {
        m->cand[i] = c;
        orr__mconn_read(c, on_dest_msg, m);
        return;
      }
  /* One migration at a time, one stream. */
  refuse_conn(m, c, ORR_EBUSY,
              m->phase == P_STREAM
                  ? "receive: too many connections wait to present the "
                    "stream's token"
                  : "receive: this listener is taken by a migration under "
                    "way");
}

static void on_resumed(void *arg, int status, json_t *result,
                       const char *errmsg) {
  mig *m = arg;
  (void)result;
  if (step_replied(m, status))
    return;
  if (status != 0) {
    fail(m, status, "cont: %s", errmsg);
    return;
  }
  /* The VM is ours now: the source may go. */
  orr__mconn_send(m->ctl, msg("running"));
  m->ended = true;
  m->phase = P_DONE;
  if (m->timer)
    uv_timer_stop(m->timer);
  emit(m, "running", NULL);
  m->delivered = true;
  orr__vm_incoming_done(m->vm, m->was_running);
  maybe_free(m);
}

static void on_dest_done(mig *m) {
  orr_error e = {0, ""};
  /* The whole state is here: what the backend takes over from the source's
  ** host side now (qemu: its pipes' socket names). */
  if (m->vm->backend->migrate_arrived != NULL &&
      m->vm->backend->migrate_arrived(m->vm, &e) != 0) {
    fail(m, e.code, "%s", e.msg);
    return;
  }
  m->phase = P_RESUMING;
  if (!m->was_running) { /* the source was paused: so is the VM here */
    m->inflight++;       /* on_resumed counts an answer */
    on_resumed(m, 0, NULL, "");
    return;
  }
  if (send_plan(m, "resume", -1, on_resumed) != 0)
    fail(m, ORR_EVMGONE, "the VM process is gone");
}

static void hook_launched(orr_vm *vm) {
  mig *m = vm->mig;
  orr_error e = {0, ""};
  if (m == NULL || m->ended)
    return;
  if (vm->backend->migrate_plan(vm, true, &m->plan, &e) != 0) {
    fail(m, e.code, "%s", e.msg);
    return;
  }
  m->setup_i = 0;
  send_next(m);
}

/* QEMU did not start (or missed its deadline): the source is told before
** the caller hears, so a recipe that ends on the failure cannot cut the
** answer off. */
static void hook_launch_failed(orr_vm *vm, int status, const orr_error *e) {
  mig *m = vm->mig;
  if (m == NULL || m->ended)
    return;
  fail(m, status, "%s", e ? e->msg : "QEMU did not start");
}

int orr_vm_receive(orr_engine *eng, const char *id, const char *listen,
                   const orr_vm_options *opts, orr_vm_cb cb, void *arg,
                   orr_vm **out, orr_error *e) {
  orr_vm_options defaults;
  unsigned char rnd[16];
  orr_vm *vm;
  mig *m;
  int rc;
  if (opts == NULL) {
    orr_vm_options_init(&defaults);
    opts = &defaults;
  }
  m = calloc(1, sizeof *m);
  m->incoming = true;
  m->stream_fd = -1;
  m->phase = P_LISTEN;
  snprintf(m->uri, sizeof m->uri, "%s", listen ? listen : "");
  if ((rc = orr__muri_parse(eng->policy, listen, "receive: listen", &m->u,
                            e)) != 0 ||
      (rc = orr__vm_incoming_new(eng, id, opts, cb, arg, &vm, e)) != 0) {
    free(m);
    return rc;
  }
  m->vm = vm;
  vm->mig = m;
  vm->mig_hooks = &hooks;
  m->listen =
      orr__mlisten_new(eng->loop, eng->policy, &m->u, on_dest_conn, m, e);
  if (m->listen == NULL) {
    rc = e ? e->code : ORR_EIO;
    m->ended = m->delivered = true;
    vm->create_cb = NULL;
    maybe_free(m);
    orr_vm_close(vm);
    return rc;
  }
  if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
    memset(rnd, 0x5a, sizeof rnd); /* the socket's own rules still hold */
  for (size_t i = 0; i < sizeof rnd; i++)
    snprintf(m->token + 2 * i, 3, "%02x", rnd[i]);
  m->timeout_ms =
      opts->timeout_ms ? opts->timeout_ms : ORR_VM_MIGRATE_TIMEOUT_MS;
  vm->opts.timeout_ms = 0; /* QEMU's own start-up keeps create's default */
  m->t0 = orr__now_ms();
  m->deadline = m->t0 + m->timeout_ms;
  arm_deadline(m);
  emit(m, "listening", NULL);
  *out = vm;
  return 0;
}

/* ---- hooks from the VM layer ---- */

static int hook_busy(const orr_vm *vm, const char *op, orr_error *e) {
  const mig *m = vm->mig;
  if (m == NULL || m->ended)
    return 0;
  return orr_error_set(e, ORR_EBUSY,
                       "%s: VM %s is %s (wait for the migration to end)", op,
                       vm->id, m->incoming ? "being received" : "migrating");
}

static void hook_closed(orr_vm *vm) {
  mig *m = vm->mig;
  if (m == NULL)
    return;
  if (m->incoming)
    m->vm->create_cb = NULL; /* the caller is gone */
  fail(m, ORR_ECANCELED, "%s VM %s was closed", op(m), vm->id);
}

static void hook_exited(orr_vm *vm) {
  mig *m = vm->mig;
  if (m == NULL)
    return;
  if (m->phase == P_QUITTING) {
    /* Handed over: the source's QEMU is gone, as it should be. */
    snprintf(vm->exit_reason, sizeof vm->exit_reason, "migrated");
    m->phase = P_DONE;
    m->ended = true;
    m->status = 0;
    orr__defer(vm->eng, deliver_source, m);
    return;
  }
  fail(m, ORR_EVMGONE, "%s the VM process is gone (%s)", op(m),
       vm->exit_reason);
}

/*
** The request runner: executes a plan's "do" steps (backend.h) in order
** over the backend, undoes the earlier steps in reverse when one fails,
** waits for the deletion a removal needs (orr__vm_device_deleted), runs
** the "after" cleanup, and only then commits the change to the live
** document. The steps are the backend's; the runner reads only their
** "execute" (a name), "fd" and "undo".
**
** Deadlines: a request has one for the whole call (its timeout_ms, else
** ORR_VM_TIMEOUT_MS) and every command it sends carries what is left of
** it, so the caller has its answer by then whatever QEMU does. A step QEMU
** has not answered by then is in doubt, not failed: QEMU still owes the
** answer and may well do the step (a stopped QEMU runs its queued commands
** once continued). So the caller gets ORR_ETIMEDOUT at once, the request
** keeps its resource reserved, and the step's late answer settles it: no
** further step is sent (the caller was told it timed out), a last step
** QEMU did completes the change, which is committed, and anything less is
** undone. Either way the live document ends equal to QEMU, and a "settled"
** event says which way it went.
*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostres.h"
#include "vm_internal.h"

uint64_t orr__now_ms(void) {
  return uv_hrtime() / 1000000;
}

orr_req *orr__req_new(orr_vm *vm, orr_vm_cb cb, void *arg) {
  orr_req *r = calloc(1, sizeof *r);
  r->vm = vm;
  r->cb = cb;
  r->arg = arg;
  r->undo = -1;
  r->next = vm->reqs;
  vm->reqs = r;
  return r;
}

static void unlink_req(orr_req *r) {
  for (orr_req **p = &r->vm->reqs; *p; p = &(*p)->next)
    if (*p == r) {
      *p = r->next;
      return;
    }
}

static void timer_closed(uv_handle_t *h) {
  free(h);
}

static void req_free(orr_req *r) {
  if (r->timer) {
    uv_timer_stop(r->timer);
    uv_close((uv_handle_t *)r->timer, timer_closed);
  }
  json_decref(r->plan);
  json_decref(r->result);
  json_decref(r->data);
  json_decref(r->doc_before);
  orr__hostres_free(r->hr);
  free(r->reserve);
  free(r);
}

/* A request is freed once its outcome is delivered, QEMU has answered
** every command it sent (a reply may still arrive after a timeout) and,
** when it was in doubt, it is settled. */
static void maybe_free(orr_req *r) {
  orr_vm *vm = r->vm;
  if (!r->delivered || r->inflight > 0 || (r->in_doubt && !r->settled))
    return;
  if (r->journaled) {
    /* Settled at last (in doubt, or canceled with a step unanswered):
    ** the intent leaves the journal with the next write. */
    r->journaled = false;
    orr__vm_dirty(vm);
  }
  unlink_req(r);
  req_free(r);
  if (vm->released && vm->reqs == NULL)
    orr__vm_released(vm);
}

static void unreserve(orr_req *r) {
  if (r->reserve == NULL || r->unreserved)
    return;
  r->unreserved = true;
  json_object_del(r->vm->reserved, r->reserve);
}

static void abandon(orr_req *r) {
  void (*fn)(orr_req *) = r->abandon;
  r->abandon = NULL;
  if (fn != NULL)
    fn(r);
}

static void deliver(void *arg) {
  orr_req *r = arg;
  /* A change in doubt keeps its resource and what it claimed until it is
  ** settled. */
  if (!r->in_doubt) {
    unreserve(r);
    if (r->status != 0)
      abandon(r);
  }
  if (r->cb)
    r->cb(r->arg, r->status, &r->err, r->result);
  r->delivered = true;
  maybe_free(r);
}

/* Called at the top of every reply callback: the reply is accounted for,
** and returns nonzero when the request was already decided. */
int orr__req_replied(orr_req *r) {
  r->inflight--;
  if (r->done) {
    maybe_free(r);
    return 1;
  }
  return 0;
}

static void commit_written(void *arg, int status, const orr_error *e);

void orr__req_finish(orr_req *r, int status, const orr_error *e) {
  bool changed = false;
  if (r->done)
    return;
  r->done = true;
  r->status = status;
  if (status != 0 && e != NULL && &r->err != e)
    r->err = *e;
  /* A VM that died says what its console said last (a panic, ...). */
  if (status == ORR_EVMGONE && strstr(r->err.msg, "console lines") == NULL) {
    size_t n = strlen(r->err.msg);
    orr__vm_console_suffix(r->vm, r->err.msg + n, sizeof r->err.msg - n);
  }
  if (r->timer)
    uv_timer_stop(r->timer);
  if (r->joined) {
    /* Leave the unplug pending: a later DEVICE_DELETED still commits. */
    r->joined = NULL;
  }
  if (status == 0 && r->commit) {
    /* An outcome the backend cannot read back from the VM is on disk
    ** before it is reported (or rolled back if it cannot be written). */
    if (r->journal && orr__vm_keeps_state(r->vm) &&
        !orr__plan_verifiable(r->plan)) {
      r->doc_before = json_deep_copy(r->vm->doc);
      r->commit(r);
      /* The write that holds the outcome no longer holds the intent: should
      ** it fail, the file keeps the intent and the old document, which
      ** re-opening settles by undoing, as the rollback here does. */
      r->journaled = false;
      r->inflight++; /* held until written */
      orr__vm_sync(r->vm, "commit", commit_written, r);
      return;
    }
    r->commit(r);
    changed = r->journal;
  }
  /* Settled: the intent leaves the journal with the next write. A step
  ** still unanswered (in doubt, or canceled) keeps it there until then. */
  if (r->journaled && r->inflight == 0) {
    r->journaled = false;
    changed = true;
  }
  if (changed)
    orr__vm_dirty(r->vm);
  /* Always deferred: a failure found while starting must not call back
  ** from inside the starting call. */
  orr__defer(r->vm->eng, deliver, r);
}

void orr__req_fail(orr_req *r, int status, const char *fmt, ...) {
  va_list ap;
  if (r->done)
    return; /* its message may still be on its way to the caller */
  va_start(ap, fmt);
  r->err.code = status;
  vsnprintf(r->err.msg, sizeof r->err.msg, fmt, ap);
  va_end(ap);
  orr__req_finish(r, status, &r->err);
}

static void step(orr_req *r);
static void undo_step(orr_req *r);

static json_t *plan_list(orr_req *r, const char *key) {
  return json_object_get(r->plan, key);
}

uint64_t orr__req_left(orr_req *r) {
  uint64_t now = orr__now_ms();
  if (r->timeout_ms == 0)
    r->timeout_ms = ORR_VM_TIMEOUT_MS;
  if (r->deadline == 0)
    r->deadline = now + r->timeout_ms;
  return r->deadline > now ? r->deadline - now : 0;
}

/* The late outcome of a command nobody waits on any more: only counted. */
static void late_drop(void *arg, int status, json_t *result,
                      const char *errmsg) {
  orr_req *r = arg;
  (void)status, (void)result, (void)errmsg;
  r->inflight--;
  maybe_free(r);
}

/* The deadline of a command r sends. A decided request only settles: that
** is nobody's wait, so the backend's default deadline (0) rather than a
** past one. */
static uint64_t send_ms(orr_req *r) {
  uint64_t ms = 0;
  if (!r->done && (ms = orr__req_left(r)) == 0)
    ms = 1;
  return ms;
}

/* The reply of a command whose answer changes nothing (a cancel): only
** counted, so the request is freed once QEMU has answered it too. */
static void counted_reply(void *arg, int status, json_t *result,
                          const char *errmsg) {
  (void)result, (void)errmsg;
  if (status != ORR_ETIMEDOUT) /* else late_drop counts the late outcome */
    orr__req_replied(arg);
}

int orr__req_send(orr_req *r, const char *name, json_t *args,
                  orr_backend_reply_cb cb, orr_backend_reply_cb late) {
  int rc =
      r->vm->backend->send(r->vm, name, args, send_ms(r),
                           cb ? cb : counted_reply, late ? late : late_drop, r);
  if (rc == 0)
    r->inflight++;
  return rc;
}

/* A step with "fd": i passes the request's held descriptor i along
** (hostres.h). */
int orr__req_send_cmd(orr_req *r, const json_t *cmd, orr_backend_reply_cb cb,
                      orr_backend_reply_cb late) {
  const char *name = json_string_value(json_object_get(cmd, "execute"));
  json_t *args = json_object_get(cmd, "arguments");
  json_t *fdref = json_object_get(cmd, "fd");
  int fd, rc;
  if (fdref == NULL)
    return orr__req_send(r, name, args ? json_deep_copy(args) : NULL, cb, late);
  fd = orr__hostres_dup(r->hr, (int)json_integer_value(fdref));
  if (fd < 0 && !r->vm->backend->dry_run)
    return ORR_EIO;
  rc = r->vm->backend->send_fd(r->vm, name, args ? json_deep_copy(args) : NULL,
                               fd, send_ms(r), cb ? cb : counted_reply,
                               late ? late : late_drop, r);
  if (rc == 0)
    r->inflight++;
  return rc;
}

/* ---- settling a change in doubt ---- */

/* outcome: "committed", "rolled back", "pending" (a removal QEMU accepted,
** completing at DEVICE_DELETED), or NULL (the VM went away: nothing to
** say). */
static void settle_end(orr_req *r, const char *outcome) {
  const char *cmd;
  json_t *ev;
  r->settled = true;
  if (outcome == NULL || strcmp(outcome, "rolled back") == 0)
    abandon(r);
  unreserve(r);
  if (outcome != NULL) {
    cmd = json_string_value(json_object_get(
        json_array_get(plan_list(r, "do"), r->step), "execute"));
    ev = json_pack("{s:s, s:s}", r->reserve ? "ResourcePath" : "Command",
                   r->reserve ? r->reserve
                   : cmd      ? cmd
                              : "",
                   "Outcome", outcome);
    orr__vm_emit(r->vm, "settled", ev);
    json_decref(ev);
  }
  maybe_free(r);
}

/* r failed ETIMEDOUT with its outcome not known yet: what follows
** settles it. */
static void go_in_doubt(orr_req *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void go_in_doubt(orr_req *r, const char *fmt, ...) {
  char what[300];
  va_list ap;
  r->in_doubt = true;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  orr__req_fail(r, ORR_ETIMEDOUT,
                "%s: the change is in doubt until QEMU answers; then it is "
                "committed if QEMU completed it, else rolled back (a "
                "\"settled\" event says which)",
                what);
}

static void rollback_done(orr_req *r);

static void on_undo_reply(void *arg, int status, json_t *result,
                          const char *errmsg) {
  orr_req *r = arg;
  (void)result, (void)errmsg;
  if (status != 0)
    r->undo_failed = true; /* refused, or not confirmed */
  if (status == ORR_ETIMEDOUT) {
    /* QEMU runs commands in the order they came: the next undo can wait
    ** behind this one in its queue as well as here. The late answer is
    ** only counted. */
    if (!r->done && strstr(r->err.msg, "rollback") == NULL) {
      size_t n = strlen(r->err.msg);
      snprintf(r->err.msg + n, sizeof r->err.msg - n,
               " (its rollback is queued but not confirmed: QEMU stopped "
               "answering)");
    }
    undo_step(r);
    return;
  }
  r->inflight--;
  /* A rollback runs after the request was decided (done). */
  if (r->done && !r->in_doubt && !r->rolling_back) {
    maybe_free(r);
    return;
  }
  undo_step(r);
}

/* Rolls back steps undo..0; best effort, QEMU's answers are only noted. */
static void undo_step(orr_req *r) {
  json_t *steps = plan_list(r, "do");
  while (r->undo >= 0) {
    json_t *u = json_object_get(json_array_get(steps, (size_t)r->undo), "undo");
    char point[96];
    r->undo--;
    if (u == NULL || json_is_null(u))
      continue;
    snprintf(point, sizeof point, "undo:%s:before",
             json_string_value(json_object_get(u, "execute")));
    if (r->vm->exited || orr__fault(point) == ORR_FAULT_FAIL) {
      r->undo_failed = true;
      continue;
    }
    if (orr__req_send_cmd(r, u, on_undo_reply, NULL) == 0)
      return;
    r->undo_failed = true;
  }
  if (r->rolling_back)
    rollback_done(r);
  else if (r->in_doubt)
    settle_end(r, r->vm->exited ? NULL : "rolled back");
  else
    orr__req_finish(r, r->err.code, &r->err);
}

/* The outcome of a change QEMU cannot report was not written: the change
** is taken back, QEMU first, then the document. When QEMU cannot take it
** back, the document keeps saying what QEMU has, the call still fails, and
** the VM says its state on disk is behind (not durable) until a write
** succeeds. */
static void commit_written(void *arg, int status, const orr_error *e) {
  orr_req *r = arg;
  orr_error re = {0, ""};
  r->inflight--;
  r->journaled = false;
  if (status == 0 || r->vm->exited) {
    json_decref(r->doc_before);
    r->doc_before = NULL;
    orr__defer(r->vm->eng, deliver, r);
    return;
  }
  r->status = ORR_EIO;
  r->err.code = ORR_EIO;
  snprintf(r->err.msg, sizeof r->err.msg, "%s", e ? e->msg : "write failed");
  r->rolling_back = true;
  if (r->rollback && r->rollback(r, &re) != 0)
    r->undo_failed = true;
  r->undo = (ssize_t)json_array_size(plan_list(r, "do")) - 1;
  undo_step(r);
}

static void rollback_done(orr_req *r) {
  orr_vm *vm = r->vm;
  size_t n = strlen(r->err.msg);
  r->rolling_back = false;
  if (r->undo_failed) {
    json_decref(r->doc_before);
    snprintf(r->err.msg + n, sizeof r->err.msg - n,
             "; the change could not be rolled back either, so the VM keeps "
             "it and its state on disk is behind (not durable) until a "
             "write succeeds");
    orr__vm_set_durable(vm, false, r->err.msg);
  } else {
    json_decref(vm->doc);
    vm->doc = r->doc_before;
    snprintf(r->err.msg + n, sizeof r->err.msg - n,
             "; the change was rolled back");
  }
  r->doc_before = NULL;
  orr__vm_dirty(vm);
  orr__defer(vm->eng, deliver, r);
}

/* "<what>:<command>:<when>", a fault point name. */
static const char *point_name(char *buf, size_t size, const char *what,
                              const json_t *cmd, const char *when) {
  snprintf(buf, size, "%s:%s:%s", what,
           json_string_value(json_object_get(cmd, "execute")), when);
  return buf;
}

static orr_unplug *new_unplug(orr_req *r, const char *device);
static void unplug_done(orr_vm *vm, orr_unplug *u);

/* QEMU did the last step after all: the change happened, so the document
** takes it (a removal: QEMU accepted the device_del, and the unplug
** completes at DEVICE_DELETED as one that timed out waiting for it). */
static void adopt(orr_req *r) {
  const char *wait = json_string_value(plan_list(r, "wait_deleted"));
  orr_vm *vm = r->vm;
  orr_unplug *u;
  if (wait == NULL) {
    if (r->commit) {
      r->commit(r);
      orr__vm_dirty(vm); /* with the intent's leaving, in settle_end */
    }
    settle_end(r, "committed");
    return;
  }
  u = new_unplug(r, wait);
  if (r->deleted_early) {
    unplug_done(vm, u);
    settle_end(r, "committed");
  } else {
    settle_end(r, "pending");
  }
}

/* The answer to a step that missed its deadline. */
static void on_step_late(void *arg, int status, json_t *result,
                         const char *errmsg) {
  orr_req *r = arg;
  (void)result, (void)errmsg;
  r->inflight--;
  if (!r->in_doubt) { /* cancelled before its deadline: nobody settles */
    maybe_free(r);
    return;
  }
  if (status == 0 && r->step + 1 == json_array_size(plan_list(r, "do"))) {
    adopt(r);
  } else if (status == 0 || status == ORR_EBACKEND) {
    /* Done but not all of it, or refused: undo what QEMU did. */
    r->undo = (ssize_t)r->step - (status == 0 ? 0 : 1);
    undo_step(r);
  } else {
    settle_end(r, NULL); /* QEMU is gone, or the VM was closed */
  }
}

static void on_step_reply(void *arg, int status, json_t *result,
                          const char *errmsg) {
  orr_req *r = arg;
  json_t *cmd = json_array_get(plan_list(r, "do"), r->step);
  char point[96];
  if (status == ORR_ETIMEDOUT) {
    /* Still owed: on_step_late gets it (and the count). */
    if (!r->done)
      go_in_doubt(r, "%s (the VM is unresponsive)", errmsg);
    return;
  }
  if (orr__req_replied(r))
    return;
  if (status == 0)
    orr__fault(point_name(point, sizeof point, "step", cmd, "after"));
  if (status != 0) {
    r->err.code = status;
    snprintf(r->err.msg, sizeof r->err.msg, "%s: %s",
             json_string_value(json_object_get(cmd, "execute")),
             status == ORR_EVMGONE ? "the VM process is gone" : errmsg);
    r->undo = (ssize_t)r->step - 1;
    undo_step(r);
    return;
  }
  if (result) {
    json_decref(r->result);
    r->result = json_incref(result);
  }
  r->step++;
  step(r);
}

/* ---- waits ---- */

static void on_deadline(uv_timer_t *t) {
  orr_req *r = t->data;
  if (r->joined && r->joined->deleted) {
    orr__req_fail(r, ORR_ETIMEDOUT,
                  "%s: QEMU deleted %s but did not answer its cleanup "
                  "within %llu ms (the VM is unresponsive); the document no "
                  "longer shows the device",
                  r->joined->resource, r->joined->device,
                  (unsigned long long)r->timeout_ms);
  } else if (r->joined) {
    orr__req_fail(r, ORR_ETIMEDOUT,
                  "%s: QEMU did not complete the removal of %s within %llu "
                  "ms (a PCI unplug needs the guest's cooperation); it "
                  "stays pending and the document still shows the device; "
                  "remove it again to keep waiting",
                  r->joined->resource, r->joined->device,
                  (unsigned long long)r->timeout_ms);
  } else {
    orr__req_fail(r, ORR_ETIMEDOUT, "%s did not complete within %llu ms",
                  r->wait_event ? r->wait_event : "the request",
                  (unsigned long long)r->timeout_ms);
  }
}

void orr__req_arm_timer(orr_req *r, uint64_t ms, uv_timer_cb cb) {
  if (r->timer == NULL) {
    r->timer = malloc(sizeof *r->timer);
    uv_timer_init(r->vm->eng->loop, r->timer);
    r->timer->data = r;
  }
  uv_timer_start(r->timer, cb, ms, 0);
}

static void arm_deadline(orr_req *r) {
  orr__req_arm_timer(r, orr__req_left(r), on_deadline);
}

/* A pending unplug of device for r's resource; the unplug commits, not the
** request: it may finish after the request timed out. */
static orr_unplug *new_unplug(orr_req *r, const char *device) {
  orr_unplug *u = calloc(1, sizeof *u);
  u->device = strdup(device);
  u->resource = strdup(r->reserve ? r->reserve : device);
  u->after = json_incref(plan_list(r, "after"));
  u->data = json_incref(r->data);
  u->commit = r->commit;
  r->commit = NULL;
  u->next = r->vm->unplugs;
  r->vm->unplugs = u;
  /* The unplug carries the intent from here on (a re-attaching engine must
  ** know it is pending). */
  r->journaled = false;
  orr__vm_dirty(r->vm);
  return u;
}

static void wait_unplug(orr_req *r, const char *device) {
  orr_unplug *u = new_unplug(r, device);
  r->joined = u;
  arm_deadline(r);
  if (r->deleted_early)
    unplug_done(r->vm, u);
}

static void step(orr_req *r) {
  json_t *steps = plan_list(r, "do");
  json_t *cmd = json_array_get(steps, r->step);
  const char *wait = json_string_value(plan_list(r, "wait_deleted"));
  int rc;
  if (cmd != NULL) {
    if (r->step > 0 && orr__req_left(r) == 0) {
      /* QEMU answered, but too slowly for the rest to fit: what it did is
      ** known, and is undone in the background. */
      r->undo = (ssize_t)r->step - 1;
      go_in_doubt(r, "%s: the change did not complete within %llu ms",
                  json_string_value(json_object_get(cmd, "execute")),
                  (unsigned long long)r->timeout_ms);
      undo_step(r);
      return;
    }
    char point[96];
    if (orr__fault(point_name(point, sizeof point, "step", cmd, "before")) ==
        ORR_FAULT_FAIL) {
      r->err.code = ORR_EBACKEND;
      snprintf(r->err.msg, sizeof r->err.msg, "%s: fault injected (%s)",
               json_string_value(json_object_get(cmd, "execute")), point);
      r->undo = (ssize_t)r->step - 1;
      undo_step(r);
      return;
    }
    rc = orr__req_send_cmd(r, cmd, on_step_reply, on_step_late);
    if (rc != 0) {
      r->err.code = rc;
      snprintf(r->err.msg, sizeof r->err.msg, "%s: %s",
               json_string_value(json_object_get(cmd, "execute")),
               orr_strerror(rc));
      r->undo = (ssize_t)r->step - 1;
      undo_step(r);
    }
    return;
  }
  if (wait != NULL) {
    wait_unplug(r, wait);
    return;
  }
  if (r->wait_event != NULL) {
    arm_deadline(r);
    return;
  }
  if (r->then != NULL) {
    r->then(r);
    return;
  }
  orr__req_finish(r, 0, NULL);
}

/* The intent is on disk (or could not be written: then nothing was sent,
** and the change fails whole). */
static void intent_written(void *arg, int status, const orr_error *e) {
  orr_req *r = arg;
  r->inflight--;
  if (r->done || status != 0) {
    r->journaled = false;
    orr__vm_dirty(r->vm);
  }
  if (r->done) {
    maybe_free(r);
    return;
  }
  if (status != 0) {
    orr__req_fail(r, status == ORR_EVMGONE ? ORR_EVMGONE : ORR_EIO,
                  "%s; nothing was changed", e ? e->msg : "write failed");
    return;
  }
  if (r->vm->exited) {
    orr__req_fail(r, ORR_EVMGONE, "VM %s is gone (%s)", r->vm->id,
                  r->vm->exit_reason);
    return;
  }
  step(r);
}

void orr__req_run(orr_req *r) {
  if (r->vm->exited) {
    orr__req_fail(r, ORR_EVMGONE, "VM %s is gone (%s)", r->vm->id,
                  r->vm->exit_reason);
    return;
  }
  orr__req_left(r); /* the call's clock starts */
  /* A change of a VM that keeps state: its intent first, on disk. Every
  ** change starting in this loop turn shares the write. */
  if (r->journal && orr__vm_keeps_state(r->vm) &&
      orr__plan_changes_vm(r->plan)) {
    r->journaled = true;
    r->inflight++; /* held until the write is done */
    orr__vm_sync(r->vm, "intent", intent_written, r);
    return;
  }
  step(r);
}

/* Joins an unplug already pending for this resource: wait again. */
int orr__req_join_unplug(orr_req *r, const char *resource) {
  for (orr_unplug *u = r->vm->unplugs; u; u = u->next)
    if (strcmp(u->resource, resource) == 0) {
      r->joined = u;
      r->commit = NULL; /* the unplug commits when it completes */
      arm_deadline(r);
      return 1;
    }
  return 0;
}

static void unplug_free(orr_unplug *u) {
  json_decref(u->after);
  json_decref(u->data);
  free(u->device);
  free(u->resource);
  free(u);
}

/* The device and its cleanup are gone: the removals waiting on it succeed.
** Waiting for the cleanup's answers means a removal that returned has
** released the image too (QEMU drops its file and its lock at
** blockdev-del), and its cost is counted where it belongs. */
static void unplug_finished(orr_vm *vm, orr_unplug *u) {
  for (orr_req *r = vm->reqs; r; r = r->next)
    if (r->joined == u) {
      r->joined = NULL;
      orr__req_finish(r, 0, NULL);
    }
  unplug_free(u);
}

/* Any answer will do: the device is gone either way, and a cleanup QEMU
** refuses (or cannot answer, being gone) leaves nothing to roll back. A
** missed deadline is not an answer: this runs again with the late one. */
static void on_cleanup_reply(void *arg, int status, json_t *result,
                             const char *errmsg) {
  orr_unplug *u = arg;
  (void)result, (void)errmsg;
  if (status == ORR_ETIMEDOUT)
    return;
  if (--u->cleanup_left == 0)
    unplug_finished(u->vm, u);
}

static void unplug_done(orr_vm *vm, orr_unplug *u) {
  size_t i;
  json_t *cmd;
  json_t *ev;
  for (orr_unplug **p = &vm->unplugs; *p; p = &(*p)->next)
    if (*p == u) {
      *p = u->next;
      break;
    }
  /* QEMU no longer has the device: the document says so at once. */
  {
    char point[96];
    snprintf(point, sizeof point, "deleted:%.*s", (int)strcspn(u->device, "-"),
             u->device);
    orr__fault(point);
  }
  if (u->commit) {
    orr_req tmp = {.vm = vm, .data = u->data};
    u->commit(&tmp);
  }
  orr__vm_dirty(vm); /* the outcome; the VM shows it if this is lost */
  u->deleted = true;
  u->vm = vm;
  /* The removals waiting on it keep their deadline: QEMU answers the
  ** cleanup at once, unless it stopped answering. */
  ev =
      json_pack("{s:s, s:s}", "Device", u->device, "ResourcePath", u->resource);
  orr__vm_emit(vm, "device_deleted", ev);
  json_decref(ev);
  /* Cleanup QEMU refused while the device existed (blockdev-del ...). */
  u->cleanup_left = 1; /* held until every command is sent */
  json_array_foreach(u->after, i, cmd) {
    json_t *args = json_object_get(cmd, "arguments");
    char point[96];
    if (orr__fault(point_name(point, sizeof point, "cleanup", cmd, "before")) ==
        ORR_FAULT_FAIL)
      continue;
    if (vm->backend->send(vm,
                          json_string_value(json_object_get(cmd, "execute")),
                          args ? json_deep_copy(args) : NULL, 0,
                          on_cleanup_reply, on_cleanup_reply, u) == 0)
      u->cleanup_left++;
  }
  if (--u->cleanup_left == 0)
    unplug_finished(vm, u);
}

void orr__req_unplug_done(orr_vm *vm, orr_unplug *u) {
  unplug_done(vm, u);
}

int orr__req_device_deleted(orr_vm *vm, const char *dev) {
  for (orr_unplug *u = vm->unplugs; u; u = u->next)
    if (strcmp(u->device, dev) == 0) {
      unplug_done(vm, u);
      return 1;
    }
  /* The event may overtake the reply to our own removal step (QEMU sends
  ** it while running the command, a late one included): remember it for
  ** the request, which then finds its unplug already done. */
  for (orr_req *r = vm->reqs; r; r = r->next) {
    const char *w = json_string_value(plan_list(r, "wait_deleted"));
    if ((!r->done || (r->in_doubt && !r->settled)) && r->joined == NULL && w &&
        strcmp(w, dev) == 0) {
      r->deleted_early = true;
      return 1;
    }
  }
  return 0;
}

void orr__vm_event(orr_vm *vm, const char *event, int status, const char *msg) {
  for (orr_req *r = vm->reqs; r; r = r->next) {
    if (r->done || r->wait_event == NULL || strcmp(r->wait_event, event) != 0)
      continue;
    if (r->step < json_array_size(plan_list(r, "do")))
      continue; /* still sending: not waiting yet */
    if (status == 0)
      orr__req_finish(r, 0, NULL);
    else
      orr__req_fail(r, status, "%s", msg ? msg : event);
  }
}

void orr__req_fail_all(orr_vm *vm, int status) {
  while (vm->unplugs) {
    orr_unplug *u = vm->unplugs;
    vm->unplugs = u->next;
    for (orr_req *r = vm->reqs; r; r = r->next)
      if (r->joined == u)
        r->joined = NULL;
    unplug_free(u);
  }
  for (orr_req *r = vm->reqs; r; r = r->next) {
    /* Requests still between steps get their failure from the backend's
    ** reply; those only waiting for an event are failed here. A removal
    ** whose device QEMU deleted succeeds once its cleanup is answered. */
    if (!r->done && !r->wait_exit && !(r->joined && r->joined->deleted) &&
        (r->timer != NULL || r->wait_event != NULL))
      orr__req_fail(r, status, "VM %s is gone (%s)", vm->id,
                    vm->exit_reason[0] ? vm->exit_reason : "closed");
  }
}
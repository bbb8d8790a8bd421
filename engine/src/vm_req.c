/*
** The request runner: executes a plan's "do" steps in order over the
** backend, undoes the earlier steps in reverse when one fails, waits for
** the completion event a removal needs (with a deadline of its own, since
** QEMU never times out an unplug), runs the "after" cleanup, and only then
** commits the change to the live document.
*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vm_internal.h"

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
  free(r->reserve);
  free(r);
}

/* A request is freed once its outcome is delivered and QEMU has answered
** every command it sent: a reply may still arrive after a timeout. */
static void maybe_free(orr_req *r) {
  orr_vm *vm = r->vm;
  if (!r->delivered || r->inflight > 0)
    return;
  unlink_req(r);
  req_free(r);
  if (vm->released && vm->reqs == NULL)
    orr__vm_released(vm);
}

static void deliver(void *arg) {
  orr_req *r = arg;
  orr_vm *vm = r->vm;
  if (r->reserve)
    json_object_del(vm->reserved, r->reserve);
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

void orr__req_finish(orr_req *r, int status, const orr_error *e) {
  if (r->done)
    return;
  r->done = true;
  r->status = status;
  if (status != 0 && e != NULL && &r->err != e)
    r->err = *e;
  if (status == 0 && r->commit) {
    r->commit(r);
    if (orr__vm_keeps_state(r->vm))
      orr__vm_persist(r->vm);
  }
  if (r->timer)
    uv_timer_stop(r->timer);
  if (r->joined) {
    /* Leave the unplug pending: a later DEVICE_DELETED still commits. */
    r->joined = NULL;
  }
  /* Always deferred: a failure found while starting must not call back
  ** from inside the starting call. */
  orr__defer(r->vm->eng, deliver, r);
}

void orr__req_fail(orr_req *r, int status, const char *fmt, ...) {
  va_list ap;
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

int orr__req_send(orr_req *r, const char *name, json_t *args,
                  orr_qmp_reply_cb cb) {
  int rc = r->vm->backend->send(r->vm, name, args, cb, r);
  if (rc == 0)
    r->inflight++;
  return rc;
}

static int send_cmd(orr_req *r, json_t *cmd, orr_qmp_reply_cb cb) {
  const char *name = json_string_value(json_object_get(cmd, "execute"));
  json_t *args = json_object_get(cmd, "arguments");
  return orr__req_send(r, name, args ? json_deep_copy(args) : NULL, cb);
}

static void on_undo_reply(void *arg, int status, json_t *result,
                          const char *errmsg) {
  orr_req *r = arg;
  (void)status, (void)result, (void)errmsg;
  if (orr__req_replied(r))
    return;
  undo_step(r);
}

/* Rolls back steps undo..0; best effort, QEMU's answers are ignored. */
static void undo_step(orr_req *r) {
  json_t *steps = plan_list(r, "do");
  while (r->undo >= 0) {
    json_t *u = json_object_get(json_array_get(steps, (size_t)r->undo), "undo");
    r->undo--;
    if (u && !json_is_null(u) && !r->vm->exited &&
        send_cmd(r, u, on_undo_reply) == 0)
      return;
  }
  orr__req_finish(r, r->err.code, &r->err);
}

static void on_step_reply(void *arg, int status, json_t *result,
                          const char *errmsg) {
  orr_req *r = arg;
  json_t *cmd = json_array_get(plan_list(r, "do"), r->step);
  if (orr__req_replied(r))
    return;
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

static void on_deadline(uv_timer_t *t) {
  orr_req *r = t->data;
  if (r->joined) {
    orr__req_fail(r, ORR_ETIMEDOUT,
                  "%s: QEMU did not complete the removal of %s within %llu "
                  "ms (a PCI unplug needs the guest's cooperation); it "
                  "stays pending and the document still shows the device; "
                  "remove it again to keep waiting",
                  r->joined->resource, r->joined->qdev,
                  (unsigned long long)r->timeout_ms);
  } else {
    orr__req_fail(r, ORR_ETIMEDOUT, "%s did not complete within %llu ms",
                  r->wait_event ? r->wait_event : "the request",
                  (unsigned long long)r->timeout_ms);
  }
}

void orr__req_arm_deadline(orr_req *r, uv_timer_cb cb) {
  if (r->timer == NULL) {
    r->timer = malloc(sizeof *r->timer);
    uv_timer_init(r->vm->eng->loop, r->timer);
    r->timer->data = r;
  }
  uv_timer_start(r->timer, cb, r->timeout_ms, 0);
}

static void arm_deadline(orr_req *r) {
  if (r->timeout_ms == 0)
    r->timeout_ms = 10000;
  orr__req_arm_deadline(r, on_deadline);
}

static void unplug_done(orr_vm *vm, orr_unplug *u);

static void wait_unplug(orr_req *r, const char *qdev) {
  orr_unplug *u = calloc(1, sizeof *u);
  u->qdev = strdup(qdev);
  u->resource = strdup(r->reserve ? r->reserve : qdev);
  u->after = json_incref(plan_list(r, "after"));
  u->data = json_incref(r->data);
  u->commit = r->commit;
  /* The unplug commits, not the request: it may finish after the request
  ** timed out. */
  r->commit = NULL;
  u->next = r->vm->unplugs;
  r->vm->unplugs = u;
  r->joined = u;
  if (orr__vm_keeps_state(r->vm))
    orr__vm_persist(r->vm); /* a re-attaching engine must know it is pending */
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
    rc = send_cmd(r, cmd, on_step_reply);
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

void orr__req_run(orr_req *r) {
  if (r->vm->exited) {
    orr__req_fail(r, ORR_EVMGONE, "VM %s is gone (%s)", r->vm->id,
                  r->vm->exit_reason);
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
  free(u->qdev);
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
** refuses (or cannot answer, being gone) leaves nothing to roll back. */
static void on_cleanup_reply(void *arg, int status, json_t *result,
                             const char *errmsg) {
  orr_unplug *u = arg;
  (void)status, (void)result, (void)errmsg;
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
  if (u->commit) {
    orr_req tmp = {.vm = vm, .data = u->data};
    u->commit(&tmp);
  }
  if (orr__vm_keeps_state(vm))
    orr__vm_persist(vm);
  u->deleted = true;
  u->vm = vm;
  /* Only the cleanup is left, which QEMU answers at once: no deadline. */
  for (orr_req *r = vm->reqs; r; r = r->next)
    if (r->joined == u && r->timer)
      uv_timer_stop(r->timer);
  ev = json_pack("{s:s, s:s}", "Device", u->qdev, "ResourcePath", u->resource);
  orr__vm_event(vm, "device_deleted", ev);
  json_decref(ev);
  /* Cleanup QEMU refused while the device existed (blockdev-del ...). */
  u->cleanup_left = 1; /* held until every command is sent */
  json_array_foreach(u->after, i, cmd) {
    json_t *args = json_object_get(cmd, "arguments");
    if (vm->backend->send(
            vm, json_string_value(json_object_get(cmd, "execute")),
            args ? json_deep_copy(args) : NULL, on_cleanup_reply, u) == 0)
      u->cleanup_left++;
  }
  if (--u->cleanup_left == 0)
    unplug_finished(vm, u);
}

void orr__req_on_event(orr_vm *vm, const char *event, json_t *data) {
  if (strcmp(event, "DEVICE_DELETED") == 0) {
    /* virtio devices also send one for their backend, with no "device". */
    const char *dev = json_string_value(json_object_get(data, "device"));
    if (dev == NULL)
      return;
    for (orr_unplug *u = vm->unplugs; u; u = u->next)
      if (strcmp(u->qdev, dev) == 0) {
        unplug_done(vm, u);
        return;
      }
    /* The event may overtake the reply to our own device_del: remember it
    ** for the request, which then finds its unplug already done. */
    for (orr_req *r = vm->reqs; r; r = r->next) {
      const char *w = json_string_value(plan_list(r, "wait_deleted"));
      if (!r->done && r->joined == NULL && w && strcmp(w, dev) == 0) {
        r->deleted_early = true;
        return;
      }
    }
    /* Gone without being asked (the guest ejected it): the live document
    ** follows QEMU, and the removal's cleanup runs all the same. */
    orr_unplug *u = orr__vm_unasked_unplug(vm, dev);
    if (u != NULL)
      unplug_done(vm, u);
    return;
  }
  for (orr_req *r = vm->reqs; r; r = r->next) {
    if (r->done || r->wait_event == NULL || strcmp(r->wait_event, event) != 0)
      continue;
    if (r->step < json_array_size(plan_list(r, "do")))
      continue; /* still sending: not waiting yet */
    if (strcmp(event, "MIGRATION") == 0) {
      const char *st = json_string_value(json_object_get(data, "status"));
      if (st && strcmp(st, "completed") == 0)
        orr__req_finish(r, 0, NULL);
      else if (st &&
               (strcmp(st, "failed") == 0 || strcmp(st, "cancelled") == 0))
        orr__req_fail(r, ORR_EBACKEND, "save: migration %s", st);
    } else {
      orr__req_finish(r, 0, NULL);
    }
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

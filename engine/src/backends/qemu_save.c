/*
** The qemu backend's save (backend->save): migrate to the file the request
** holds, then poll query-migrate until QEMU says completed, then
** query-status until QEMU has left "finish-migrate". The core has
** checked the state, opened the file and set the deadline; this drives the
** request through the runner's calls (vm_internal.h).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu_backend.h"
#include "qemu_xlate.h"

#define SAVE_POLL_MS 10

static void save_poll(uv_timer_t *t);
static void settle_query(orr_req *r);
static void settle_poll(uv_timer_t *t);

/* The save's deadline passed: the caller gets ETIMEDOUT, and the VM must
** be left as it was, paused without a migration running. QEMU runs the
** cancel whenever it answers again. */
static void save_expired(orr_req *r, const char *why) {
  orr__req_fail(r, ORR_ETIMEDOUT,
                "save: %s; the migration to %s is cancelled (the file is "
                "left as it is)",
                why, json_string_value(json_object_get(r->data, "path")));
  orr__req_send_cmd(r, json_object_get(r->plan, "cancel"), NULL, NULL);
}

static void on_query_migrate(void *arg, int status, json_t *result,
                             const char *errmsg) {
  orr_req *r = arg;
  const char *st;
  uint64_t left;
  char why[200];
  if (status == ORR_ETIMEDOUT) {
    if (!r->done)
      save_expired(r, errmsg);
    return;
  }
  if (orr__req_replied(r))
    return;
  if (status != 0) {
    orr__req_fail(r, status, "save: query-migrate: %s", errmsg);
    return;
  }
  st = json_string_value(json_object_get(result, "status"));
  if (st && strcmp(st, "completed") == 0) {
    settle_query(r);
  } else if (st &&
             (strcmp(st, "failed") == 0 || strcmp(st, "cancelled") == 0)) {
    const char *desc = json_string_value(json_object_get(result, "error-desc"));
    orr__req_fail(r, ORR_EBACKEND, "save: migration %s%s%s", st,
                  desc ? ": " : "", desc ? desc : "");
  } else if ((left = orr__req_left(r)) == 0) {
    snprintf(why, sizeof why, "the migration did not complete within %llu ms",
             (unsigned long long)r->timeout_ms);
    save_expired(r, why);
  } else {
    orr__req_arm_timer(r, left < SAVE_POLL_MS ? left : SAVE_POLL_MS, save_poll);
  }
}

/* The migration completed: the save is done once QEMU's run state has left
** "finish-migrate" (its migration thread moves it on after announcing
** completion), since until then it refuses cont: a resume, or the next
** save's cont + stop, right after the save would fail. */
static void on_query_status(void *arg, int status, json_t *result,
                            const char *errmsg) {
  orr_req *r = arg;
  const char *st;
  uint64_t left;
  if (status == ORR_ETIMEDOUT) {
    if (!r->done)
      save_expired(r, errmsg);
    return;
  }
  if (orr__req_replied(r))
    return;
  if (status != 0) {
    orr__req_fail(r, status, "save: query-status: %s", errmsg);
    return;
  }
  st = json_string_value(json_object_get(result, "status"));
  if (st == NULL || strcmp(st, "finish-migrate") != 0)
    orr__req_finish(r, 0, NULL);
  else if ((left = orr__req_left(r)) == 0)
    save_expired(r, "QEMU did not leave finish-migrate in time");
  else
    orr__req_arm_timer(r, left < SAVE_POLL_MS ? left : SAVE_POLL_MS,
                       settle_poll);
}

static void settle_poll(uv_timer_t *t) {
  settle_query(t->data);
}

static void settle_query(orr_req *r) {
  if (orr__req_send_cmd(r, json_object_get(r->plan, "settle"), on_query_status,
                        NULL) != 0)
    orr__req_fail(r, ORR_EVMGONE, "save: VM %s is gone", r->vm->id);
}

static void save_query(orr_req *r) {
  if (orr__req_send_cmd(r, json_object_get(r->plan, "poll"), on_query_migrate,
                        NULL) != 0)
    orr__req_fail(r, ORR_EVMGONE, "save: VM %s is gone", r->vm->id);
}

static void save_poll(uv_timer_t *t) {
  save_query(t->data);
}

/* The cont + stop that takes QEMU out of "postmigrate" is no state change
** for the caller: the save clears the flag however it ends. */
typedef struct {
  orr_vm *vm;
  orr_vm_cb cb;
  void *arg;
} cycle_guard;

static void cycle_done(void *arg, int status, const orr_error *err,
                       json_t *result) {
  cycle_guard *g = arg;
  g->vm->cycling = false;
  if (g->cb)
    g->cb(g->arg, status, err, result);
  free(g);
}

/* The migration starts here, not as a plan step: one QEMU starts late
** must still be cancelled (the caller was told the save failed), not
** adopted as a late last step would be. */
static void on_migrate_reply(void *arg, int status, json_t *result,
                             const char *errmsg) {
  orr_req *r = arg;
  (void)result;
  if (status == ORR_ETIMEDOUT) {
    /* The cancel queues behind the migrate: QEMU runs them in order. */
    if (!r->done)
      save_expired(r, errmsg);
    return;
  }
  if (orr__req_replied(r))
    return;
  if (status != 0)
    orr__req_fail(r, status, "save: migrate: %s",
                  status == ORR_EVMGONE ? "the VM process is gone" : errmsg);
  else
    save_query(r);
}

static void save_then(orr_req *r) {
  /* A migration from a paused VM leaves QEMU in "postmigrate" whether it
  ** completes, fails or is cancelled (and if QEMU refuses to start it, the
  ** next save's cont + stop is merely not needed). */
  r->vm->after_save = true;
  if (orr__req_send_cmd(r, json_object_get(r->plan, "start"), on_migrate_reply,
                        NULL) != 0)
    orr__req_fail(r, ORR_EVMGONE, "save: VM %s is gone", r->vm->id);
}

int orr__qemu_save(orr_req *r, int fd, orr_error *e) {
  orr_vm *vm = r->vm;
  if (orr__qemu_plan_save(vm->after_save,
                          vm->template_ram != NULL && vm->opts.template_boot,
                          fd, &r->plan, e) != 0)
    return e->code;
  if (vm->after_save) {
    cycle_guard *g = calloc(1, sizeof *g);
    g->vm = vm;
    g->cb = r->cb;
    g->arg = r->arg;
    r->cb = cycle_done;
    r->arg = g;
    vm->cycling = true;
  }
  r->then = save_then;
  return 0;
}

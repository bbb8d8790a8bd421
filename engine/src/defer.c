/*
** Deferred calls: fn(arg) from the loop soon, never from inside the call
** that asked for it, in the order asked for.
*/
#include <stdlib.h>

#include "vm_internal.h"

struct orr_deferred {
  orr_deferred *next;
  orr_deferred_fn fn;
  void *arg;
};

static void run_deferred(uv_idle_t *h) {
  orr_engine *eng = h->data;
  /* Take the current batch; calls queued while it runs wait a turn. */
  orr_deferred *d = eng->dq_head;
  eng->dq_head = eng->dq_tail = NULL;
  uv_idle_stop(&eng->idle);
  while (d != NULL) {
    orr_deferred *next = d->next;
    d->fn(d->arg);
    free(d);
    d = next;
  }
}

void orr__defer(orr_engine *eng, orr_deferred_fn fn, void *arg) {
  orr_deferred *d = calloc(1, sizeof *d);
  d->fn = fn;
  d->arg = arg;
  if (eng->dq_tail)
    eng->dq_tail->next = d;
  else
    eng->dq_head = d;
  eng->dq_tail = d;
  uv_idle_start(&eng->idle, run_deferred);
}

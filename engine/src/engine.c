/*
** The engine context: one loop, the VMs on it, the runtime root, and the
** backends it offers. (Its deferred-call queue is defer.c's.)
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orrery/log.h"
#include "rundir.h"
#include "vm_internal.h"

/* The registry: the one place that names the backends (architecture.json:
** the engine knows its backends, the core only their interface). */
extern const orr_backend orr__backend_qemu;
extern const orr_backend orr__backend_plan;
extern const orr_backend orr__backend_kubevirt;
static const orr_backend *const backends[] = {
    &orr__backend_qemu, &orr__backend_plan, &orr__backend_kubevirt, NULL};

void orr_engine_on_event(orr_engine *eng, orr_vm_event_cb cb, void *arg) {
  eng->tap_cb = cb;
  eng->tap_arg = arg;
}

int orr_engine_new(uv_loop_t *loop, orr_engine **out, orr_error *e) {
  orr_engine *eng;
  orr_log_init_env();
  eng = calloc(1, sizeof *eng);
  if (eng == NULL)
    return orr_error_set(e, ORR_ENOMEM, "engine: out of memory");
  if (loop == NULL) {
    loop = malloc(sizeof *loop);
    if (uv_loop_init(loop) != 0) {
      free(loop);
      free(eng);
      return orr_error_set(e, ORR_EIO, "engine: uv_loop_init failed");
    }
    eng->own_loop = 1;
  }
  eng->loop = loop;
  uv_idle_init(loop, &eng->idle);
  eng->idle.data = eng;
  orr_runtime_root(eng->runtime_root, sizeof eng->runtime_root);
  orr__fault_init(); /* the crash harness's hook (fault.c), read once */
  eng->backends = backends;
  eng->vm_free = orr__vm_free;
  /* An engine killed outright leaves its VMs' directories behind. */
  for (size_t i = 0; backends[i] != NULL; i++)
    if (backends[i]->pidfile != NULL)
      orr__run_dir_sweep(eng->runtime_root, backends[i]->pidfile,
                         backends[i]->run_files);
  *out = eng;
  return 0;
}

uv_loop_t *orr_engine_loop(orr_engine *eng) {
  return eng->loop;
}

int orr_engine_vm_count(const orr_engine *eng) {
  int n = 0;
  for (orr_vm *vm = eng->vms; vm; vm = vm->next)
    n++;
  return n;
}

void orr_engine_free(orr_engine *eng) {
  uint64_t deadline;
  if (eng == NULL)
    return;
  /* Close what the user left open: that terminates the VMs that ask for
  ** it and cancels pending requests. */
  for (orr_vm *vm = eng->vms; vm; vm = vm->next)
    if (!vm->closed)
      orr_vm_close(vm);
  deadline = uv_now(eng->loop) + 15000;
  while ((eng->vms || eng->dq_head) && uv_now(eng->loop) < deadline)
    uv_run(eng->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&eng->idle, NULL);
  uv_run(eng->loop, UV_RUN_NOWAIT);
  if (eng->own_loop) {
    /* A VM left on purpose (ShouldTerminateOnLastHandleClosed = false)
    ** keeps handles open; walk and close them so the loop can close. */
    if (uv_loop_close(eng->loop) == UV_EBUSY) {
      uv_run(eng->loop, UV_RUN_DEFAULT);
      uv_loop_close(eng->loop);
    }
    free(eng->loop);
  }
  orr_policy_free(eng->policy);
  free(eng);
}

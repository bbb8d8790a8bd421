/*
** Killing a VM whose process does not answer (orr_vm_kill_id): a QEMU
** stopped with SIGSTOP, hung, or whose QMP socket is gone never greets, so
** orrery.open cannot take it and terminate cannot reach it. It is ended
** by its pid instead, and only after the state file's record of it is
** proved (start time, owner, command line: the backend's prove) through a
** pidfd, which can never reach a process that later gets the same pid.
** The runtime directory's lock is held throughout: an engine that owns
** the VM keeps it (ORR_EBUSY), and nobody takes it half-killed.
*/
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cgroup.h"
#include "pidwatch.h"
#include "rundir.h"
#include "vm_internal.h"

typedef struct {
  orr_vm *vm; /* from orr__vm_take_dir: not on the engine's list */
  orr_pidwatch *watch;
  uv_timer_t timer;
  orr_vm_cb cb;
  void *arg;
  int status, open_handles;
  orr_error err;
  uint64_t timeout_ms;
} orr_reap;

static void reap_free(orr_reap *rp) {
  json_t *result = NULL;
  if (rp->status == 0)
    result = json_pack("{s:n, s:i, s:s}", "ExitCode", "Signal", SIGKILL,
                       "Reason", "killed by its pid (it did not answer)");
  if (rp->cb)
    rp->cb(rp->arg, rp->status, rp->status ? &rp->err : NULL, result);
  json_decref(result);
  orr__vm_discard(rp->vm); /* closes the directory: the lock goes */
  free(rp);
}

static void handle_closed(void *arg) {
  orr_reap *rp = arg;
  if (--rp->open_handles == 0)
    reap_free(rp);
}

static void timer_closed(uv_handle_t *h) {
  handle_closed(h->data);
}

static void finish(orr_reap *rp) {
  uv_timer_stop(&rp->timer);
  rp->open_handles = 2;
  orr__pidwatch_close(rp->watch, handle_closed);
  uv_close((uv_handle_t *)&rp->timer, timer_closed);
}

/* Gone: its directory goes as a normal exit's does (journal, sockets,
** pidfile), and a CPU-limit group with it. */
static void on_gone(void *arg) {
  orr_reap *rp = arg;
  orr_vm *vm = rp->vm;
  orr__run_dir_clear(vm->run_dir_fd, vm->run_dir, vm->backend->run_files);
  orr__cgroup_remove(vm->cgroup);
  finish(rp);
}

/* SIGKILL is not refused, but a process stuck in the kernel (a hung NFS
** disk) exits only when the kernel lets it: its directory stays then. */
static void on_timeout(uv_timer_t *t) {
  orr_reap *rp = t->data;
  rp->status =
      orr_error_set(&rp->err, ORR_ETIMEDOUT,
                    "kill: QEMU pid %d of VM \"%s\" was sent SIGKILL "
                    "and has not exited within %llu ms; its runtime "
                    "directory %s is left",
                    rp->vm->pid, rp->vm->id, (unsigned long long)rp->timeout_ms,
                    rp->vm->run_dir);
  finish(rp);
}

int orr_vm_kill_id(orr_engine *eng, const char *id, const orr_vm_options *opts,
                   orr_vm_cb cb, void *arg, orr_error *e) {
  orr_reap *rp;
  orr_vm *vm;
  json_t *st;
  int rc, fd = -1;
  if ((rc = orr__vm_take_dir(eng, id, opts, &vm, &st, e)) != 0) {
    if (strncmp(e->msg, "open: ", 6) == 0)
      memmove(e->msg, e->msg + 6, strlen(e->msg + 6) + 1);
    orr_error_prefix(e, "kill");
    return rc;
  }
  if (vm->backend->prove == NULL)
    rc = orr_error_set(e, ORR_ENOTSUP,
                       "kill: the %s backend cannot prove which process is "
                       "VM \"%s\"'s",
                       vm->backend->name, id);
  else if ((rc = vm->backend->prove(vm, st, &fd, e)) != 0)
    orr_error_prefix(e, "kill");
  json_decref(st);
  if (rc != 0) {
    orr__vm_discard(vm);
    return rc;
  }
  /* Through the pidfd only. ESRCH: it exited since the proof; the watch
  ** sees that too. */
  if (syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0) != 0 &&
      errno != ESRCH) {
    rc = orr_error_set(e, ORR_EPERM, "kill: cannot signal QEMU pid %d: %s",
                       vm->pid, strerror(errno));
    close(fd);
    orr__vm_discard(vm);
    return rc;
  }
  rp = calloc(1, sizeof *rp);
  rp->vm = vm;
  rp->cb = cb;
  rp->arg = arg;
  rp->timeout_ms = opts && opts->timeout_ms ? opts->timeout_ms : 10000;
  if ((rc = orr__pidwatch_start(eng->loop, fd, on_gone, rp, &rp->watch, e)) !=
      0) {
    orr__vm_discard(vm);
    free(rp);
    return rc;
  }
  uv_timer_init(eng->loop, &rp->timer);
  rp->timer.data = rp;
  uv_timer_start(&rp->timer, on_timeout, rp->timeout_ms, 0);
  return 0;
}

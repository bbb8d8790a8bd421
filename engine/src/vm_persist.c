/*
** The journal of a VM that outlives its engine
** (ShouldTerminateOnLastHandleClosed = false); re-attaching to one
** (orrery.open) is vm_open.c's.
**
** <run_dir>/state.json holds the live document, the backend's layout, the
** process identity, and the intents: every change that has started on the
** VM and is not settled yet (a journaled request, a removal waiting for the
** guest). The rules:
**  - an intent is on disk before the first step that changes the VM
**    (vm_req.c waits for orr__vm_sync before sending it);
**  - an outcome the backend can read back from the VM (a device is there
**    or not) is written lazily: should the engine die first, re-opening
**    finds the intent and the backend settles it from what the VM reports;
**  - an outcome it cannot read back (a balloon target, a cgroup limit, a
**    document-only update) is on disk before the change is reported done,
**    and rolled back when it cannot be written.
** Every write is a whole new file: written, fsynced, renamed over
** state.json, the directory fsynced. A machine crash takes QEMU with it, so
** the fsyncs are not for the machine: they make a failed write (a full or
** broken disk) known before the VM is touched, where a plain write() would
** leave it to writeback to lose the data silently. Writes run on libuv's
** thread pool, one at a time per VM; all the syncs asked for while one is
** running or in the same loop turn share the next (group commit).
*/
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orrery/document.h"
#include "rundir.h"
#include "policy_host.h"
#include "vm_internal.h"

#define STATE_MAX (16 * 1024 * 1024)
#define LAZY_MS 100

struct orr_jwait {
  struct orr_jwait *next;
  uint64_t gen;
  int why; /* index in whys[] */
  orr_sync_cb cb;
  void *arg;
};

/* One write on the thread pool. It owns a duplicate of the directory
** descriptor, so the VM's lock outlives the VM until the write is done
** (another engine cannot open the VM and read a file about to change); the
** worker closes it and says so (done), which a closing VM waits for. */
/* What a write is for, in the order a shared write is named by. */
static const char *const whys[] = {"lazy", "create", "intent", "commit"};

struct orr_jwrite {
  uv_work_t work;
  char point[40]; /* its fault point, less ":before"/":after" */
  orr_vm *vm;     /* NULL once the VM no longer cares */
  int dirfd;
  char *text;
  size_t len;
  uint64_t gen;
  int err; /* errno of the failed call, 0 */
  const char *what;
  uv_mutex_t lock;
  uv_cond_t cond;
  bool done;
};

/* ---- the state as JSON ---- */

static json_t *intent_json(const char *resource, orr_req_commit commit,
                           const json_t *data, json_t *plan) {
  return json_pack("{s:s, s:s, s:O, s:o}", "Resource", resource ? resource : "",
                   "Commit", orr__commit_name(commit), "Data",
                   data ? data : json_null(), "Plan", plan);
}

static json_t *intents_json(const orr_vm *vm) {
  json_t *a = json_array();
  for (orr_req *r = vm->reqs; r; r = r->next)
    if (r->journaled && r->data && orr__commit_name(r->commit))
      json_array_append_new(
          a, intent_json(r->reserve, r->commit, r->data, json_incref(r->plan)));
  /* A removal waiting for the guest: its plan is what is left of it. */
  for (orr_unplug *u = vm->unplugs; u; u = u->next)
    if (orr__commit_name(u->commit) != NULL)
      json_array_append_new(
          a, intent_json(u->resource, u->commit, u->data,
                         json_pack("{s:[], s:s, s:O}", "do", "wait_deleted",
                                   u->device, "after",
                                   u->after ? u->after : json_null())));
  return a;
}

static json_t *state_json(const orr_vm *vm) {
  return json_pack(
      "{s:i, s:s, s:s, s:s, s:I, s:i, s:I, s:O, s:O, s:O, s:o}", "Version", 1,
      "Id", vm->id, "RuntimeId", vm->runtime_id, "Accel", vm->accel, "BootMB",
      (json_int_t)vm->boot_mb, "ProcessId", vm->pid, "StartTime",
      (json_int_t)vm->start_time, "Document", vm->doc, "Layout", vm->layout,
      "Plan9Index", vm->p9_index, "Intents", intents_json(vm));
}

/* ---- writing ---- */

static bool journaled_vm(const orr_vm *vm) {
  return vm->backend->attach != NULL && orr__vm_keeps_state(vm) &&
         vm->run_dir_fd >= 0 && !vm->joff;
}

/* Writes text as dirfd's state.json: a new file, fsynced, renamed over the
** old one, the directory fsynced. 0, or the errno with *what failed. */
static int write_state(int dirfd, const char *text, size_t len,
                       const char **what) {
  size_t off = 0;
  int fd, err;
  *what = "create " ORR_VM_STATE_FILE ".tmp";
  fd = openat(dirfd, ORR_VM_STATE_FILE ".tmp",
              O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    goto fail;
  *what = "write " ORR_VM_STATE_FILE ".tmp";
  if (fchmod(fd, 0600) != 0)
    goto fail_fd;
  while (off < len) {
    ssize_t n = write(fd, text + off, len - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      if (n == 0)
        errno = ENOSPC;
      goto fail_fd;
    }
    off += (size_t)n;
  }
  *what = "fsync " ORR_VM_STATE_FILE ".tmp";
  if (fsync(fd) != 0)
    goto fail_fd;
  if (close(fd) != 0) {
    fd = -1;
    goto fail;
  }
  *what = "rename it over " ORR_VM_STATE_FILE;
  if (renameat(dirfd, ORR_VM_STATE_FILE ".tmp", dirfd, ORR_VM_STATE_FILE) != 0)
    goto fail;
  *what = "fsync the runtime directory";
  if (fsync(dirfd) != 0)
    goto fail;
  return 0;
fail_fd:
  err = errno;
  close(fd);
  unlinkat(dirfd, ORR_VM_STATE_FILE ".tmp", 0);
  return err;
fail:
  err = errno;
  unlinkat(dirfd, ORR_VM_STATE_FILE ".tmp", 0);
  return err;
}

static void jw_work(uv_work_t *w) {
  struct orr_jwrite *jw = w->data;
  jw->err = write_state(jw->dirfd, jw->text, jw->len, &jw->what);
  uv_mutex_lock(&jw->lock);
  close(jw->dirfd); /* the lock may go now, as far as this write goes */
  jw->dirfd = -1;
  jw->done = true;
  uv_cond_signal(&jw->cond);
  uv_mutex_unlock(&jw->lock);
}

static void flush(orr_vm *vm);
static void on_lazy(uv_timer_t *t);

/* Calls back the waiters a finished write answers. */
static void wake(orr_vm *vm, uint64_t gen, int status, const orr_error *e) {
  struct orr_jwait **p = &vm->jwaits, *ready = NULL, **tail = &ready;
  while (*p) {
    struct orr_jwait *w = *p;
    if (w->gen <= gen) {
      *p = w->next;
      w->next = NULL;
      *tail = w;
      tail = &w->next;
    } else {
      p = &w->next;
    }
  }
  while (ready) {
    struct orr_jwait *w = ready;
    ready = w->next;
    w->cb(w->arg, status, e);
    free(w);
  }
}

static void jw_free(struct orr_jwrite *jw) {
  if (jw->dirfd >= 0)
    close(jw->dirfd);
  uv_mutex_destroy(&jw->lock);
  uv_cond_destroy(&jw->cond);
  free(jw->text);
  free(jw);
}

static void jw_done(uv_work_t *w, int status) {
  struct orr_jwrite *jw = w->data;
  orr_vm *vm = jw->vm;
  orr_error e = {0, ""};
  (void)status;
  if (vm == NULL) {
    jw_free(jw);
    return;
  }
  vm->jw = NULL;
  if (vm->joff) /* gone meanwhile: a late rename must not leave a file */
    unlinkat(vm->run_dir_fd, ORR_VM_STATE_FILE, 0);
  if (jw->err == 0) {
    char point[64];
    if (jw->gen > vm->jdone)
      vm->jdone = jw->gen;
    if (vm->not_durable && jw->gen >= vm->jnd_gen)
      orr__vm_set_durable(vm, true, NULL); /* what QEMU has is down now */
    snprintf(point, sizeof point, "%s:after", jw->point);
    orr__fault(point);
    wake(vm, jw->gen, 0, NULL);
  } else {
    orr_error_set(&e, ORR_EIO,
                  "the VM's state could not be written to %s/" ORR_VM_STATE_FILE
                  " (%s: %s)",
                  vm->run_dir, jw->what, strerror(jw->err));
    wake(vm, jw->gen, ORR_EIO, &e);
  }
  /* More waited meanwhile: the next write takes all of them at once. A
  ** change nobody waits for goes with the next write, or the lazy one; a
  ** failed write is not retried on its own (the next change tries). */
  if (vm->jwaits != NULL)
    flush(vm);
  else if (jw->err == 0 && vm->jgen > vm->jdone) {
    if (vm->closed)
      flush(vm);
    else if (vm->jlazy && !uv_is_active((uv_handle_t *)vm->jlazy))
      uv_timer_start(vm->jlazy, on_lazy, LAZY_MS, 0);
  }
  jw_free(jw);
  if (vm->released)
    orr__vm_released(vm);
}

static void jw_failed(void *arg) {
  struct orr_jwrite *jw = arg;
  jw_done(&jw->work, 0);
}

/* Starts a write of the state as it is now (one in flight at a time). */
static void flush(orr_vm *vm) {
  struct orr_jwrite *jw;
  json_t *st;
  if (vm->jw != NULL)
    return;
  if (!journaled_vm(vm)) {
    /* Closed or gone: nothing more is written, nobody waits for it. */
    orr_error e;
    orr_error_set(&e, ORR_ECANCELED, "VM %s is closed", vm->id);
    wake(vm, UINT64_MAX, ORR_ECANCELED, &e);
    return;
  }
  if (vm->jlazy)
    uv_timer_stop(vm->jlazy);
  jw = calloc(1, sizeof *jw);
  jw->vm = vm;
  jw->gen = vm->jgen;
  jw->work.data = jw;
  uv_mutex_init(&jw->lock);
  uv_cond_init(&jw->cond);
  st = state_json(vm);
  jw->text = json_dumps(st, JSON_COMPACT);
  json_decref(st);
  jw->dirfd = fcntl(vm->run_dir_fd, F_DUPFD_CLOEXEC, 3);
  {
    int why = 0;
    char point[64];
    for (struct orr_jwait *w = vm->jwaits; w; w = w->next)
      if (w->why > why)
        why = w->why;
    snprintf(jw->point, sizeof jw->point, "journal:%s", whys[why]);
    snprintf(point, sizeof point, "%s:before", jw->point);
    if (orr__fault(point) == ORR_FAULT_FAIL && jw->text != NULL) {
      free(jw->text);
      jw->text = NULL; /* fails below, like a write would */
    }
  }
  if (jw->text == NULL || jw->dirfd < 0) {
    /* Fails like a write would, through the same path. */
    jw->err = jw->dirfd < 0 ? errno : EIO;
    jw->what = "write (or a fault injected before it)";
    jw->done = true;
    vm->jw = jw;
    orr__defer(vm->eng, jw_failed, jw);
    return;
  }
  jw->len = strlen(jw->text);
  vm->jw = jw;
  uv_queue_work(vm->eng->loop, &jw->work, jw_work, jw_done);
}

static void flush_deferred(void *arg) {
  orr_vm *vm = arg;
  vm->jqueued = false;
  flush(vm);
  if (vm->released)
    orr__vm_released(vm);
}

static void on_lazy(uv_timer_t *t) {
  orr_vm *vm = t->data;
  if (vm->jgen > vm->jdone)
    flush(vm);
}

void orr__vm_dirty(orr_vm *vm) {
  if (!journaled_vm(vm))
    return;
  vm->jgen++;
  if (vm->jlazy == NULL) {
    vm->jlazy = malloc(sizeof *vm->jlazy);
    uv_timer_init(vm->eng->loop, vm->jlazy);
    vm->jlazy->data = vm;
  }
  if (!uv_is_active((uv_handle_t *)vm->jlazy))
    uv_timer_start(vm->jlazy, on_lazy, LAZY_MS, 0);
}

typedef struct {
  orr_sync_cb cb;
  void *arg;
} now_cb;

static void call_now(void *p) {
  now_cb *n = p;
  n->cb(n->arg, 0, NULL);
  free(n);
}

void orr__vm_sync(orr_vm *vm, const char *why, orr_sync_cb cb, void *arg) {
  struct orr_jwait *w;
  if (!journaled_vm(vm)) {
    now_cb *n = malloc(sizeof *n);
    n->cb = cb;
    n->arg = arg;
    orr__defer(vm->eng, call_now, n);
    return;
  }
  vm->jgen++;
  w = calloc(1, sizeof *w);
  w->gen = vm->jgen;
  for (size_t i = 0; i < sizeof whys / sizeof *whys; i++)
    if (strcmp(whys[i], why) == 0)
      w->why = (int)i;
  w->cb = cb;
  w->arg = arg;
  w->next = vm->jwaits;
  vm->jwaits = w;
  /* Next loop turn: every sync asked for until then shares the write. */
  if (!vm->jqueued && vm->jw == NULL) {
    vm->jqueued = true;
    orr__defer(vm->eng, flush_deferred, vm);
  }
}

/* The last write of a VM left running, done here and now: the lock goes
** with this call, so another process can open the VM as soon as close
** returns. A write in flight is waited for first (it would land later and
** older). A failure leaves the file a write behind, which re-opening
** settles from what QEMU reports like any crash. */
void orr__vm_persist(orr_vm *vm) {
  const char *what;
  json_t *st;
  char *text;
  if (!journaled_vm(vm))
    return;
  if (vm->jw != NULL) {
    uv_mutex_lock(&vm->jw->lock);
    while (!vm->jw->done)
      uv_cond_wait(&vm->jw->cond, &vm->jw->lock);
    uv_mutex_unlock(&vm->jw->lock);
  }
  st = state_json(vm);
  text = json_dumps(st, JSON_COMPACT);
  json_decref(st);
  if (text != NULL && orr__fault("journal:close:before") != ORR_FAULT_FAIL &&
      write_state(vm->run_dir_fd, text, strlen(text), &what) == 0) {
    vm->jdone = vm->jgen;
    orr__fault("journal:close:after");
  }
  free(text);
  if (vm->jlazy)
    uv_timer_stop(vm->jlazy);
  close(vm->run_dir_fd);
  vm->run_dir_fd = -1;
  /* Callers still waiting (requests the close canceled) hear so from the
  ** loop, not from inside this call. */
  if (vm->jwaits && !vm->jqueued) {
    vm->jqueued = true;
    orr__defer(vm->eng, flush_deferred, vm);
  }
}

static void write_marker(orr_vm *vm) {
  int fd;
  if (vm->run_dir_fd < 0)
    return;
  if (!vm->not_durable) {
    unlinkat(vm->run_dir_fd, ORR_VM_NOT_DURABLE_FILE, 0);
    return;
  }
  /* An empty file needs no data block: it can still be made on a full
  ** disk, where state.json could not. orrery doctor reads it. */
  fd = openat(vm->run_dir_fd, ORR_VM_NOT_DURABLE_FILE,
              O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd >= 0) {
    if (write(fd, vm->durable_err, strlen(vm->durable_err)) < 0) {
      /* The file's existence says it; the reason is a bonus. */
    }
    close(fd);
  }
}

void orr__vm_set_durable(orr_vm *vm, bool ok, const char *why) {
  if (ok && !vm->not_durable)
    return;
  vm->not_durable = !ok;
  if (!ok)
    vm->jnd_gen = vm->jgen + 1; /* the next write that covers it */
  snprintf(vm->durable_err, sizeof vm->durable_err, "%s", ok ? "" : why);
  write_marker(vm);
}

void orr__vm_unpersist(orr_vm *vm) {
  if (vm->run_dir_fd >= 0 && orr__vm_keeps_state(vm)) {
    unlinkat(vm->run_dir_fd, ORR_VM_STATE_FILE, 0);
    unlinkat(vm->run_dir_fd, ORR_VM_NOT_DURABLE_FILE, 0);
  }
  vm->joff = true;
  if (vm->jlazy) {
    uv_timer_stop(vm->jlazy);
  }
  {
    orr_error e;
    orr_error_set(&e, ORR_EVMGONE, "VM %s is gone", vm->id);
    wake(vm, UINT64_MAX, ORR_EVMGONE, &e);
  }
}

/* Called as the VM is freed. */
void orr__vm_journal_free(orr_vm *vm) {
  if (vm->jw)
    vm->jw->vm = NULL;
  if (vm->jlazy)
    uv_close((uv_handle_t *)vm->jlazy, (uv_close_cb)free);
  while (vm->jwaits) {
    struct orr_jwait *w = vm->jwaits;
    vm->jwaits = w->next;
    free(w);
  }
}

bool orr__plan_changes_vm(const json_t *plan) {
  return json_array_size(json_object_get(plan, "do")) > 0 ||
         json_is_string(json_object_get(plan, "wait_deleted"));
}

bool orr__plan_verifiable(const json_t *plan) {
  /* Backends mark a plan whose outcome they cannot read back. */
  return orr__plan_changes_vm(plan) &&
         !json_is_false(json_object_get(plan, "verifiable"));
}

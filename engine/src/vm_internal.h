/*
** What the VM manager's files share: the engine and VM structs, the backend
** interface, and the request runner. Not a public header.
*/
#ifndef ORR_VM_INTERNAL_H
#define ORR_VM_INTERNAL_H

#include <stdbool.h>
#include <sys/types.h>

#include "backend.h"
#include "hostres.h"
#include "orrery/policy.h"
#include "orrery/process.h"
#include "orrery/qmp.h"
#include "orrery/vm.h"

typedef struct orr_deferred orr_deferred;
typedef void (*orr_deferred_fn)(void *arg);

struct orr_engine {
  uv_loop_t *loop;
  int own_loop;
  uv_idle_t idle; /* runs deferred calls on the next loop turn */
  orr_deferred *dq_head, *dq_tail;
  orr_vm *vms; /* every VM not yet freed */
  char runtime_root[256];
  orr_policy *policy; /* confinement (orrery/policy.h), NULL: none */
  /* The backends it offers, NULL-terminated (engine.c's registry). */
  const orr_backend *const *backends;
  orr_vm_event_cb tap_cb; /* every VM's events (orr_engine_on_event) */
  void *tap_arg;
  /* Frees a VM nothing needs any more (vm.c's orr__vm_free, set by
  ** orr_engine_new): orr__vm_released, at the bottom of the core, ends a
  ** VM through it without calling up into vm.c. */
  void (*vm_free)(orr_vm *vm);
};

/* Runs fn(arg) from the loop soon, never from inside this call. */
void orr__defer(orr_engine *eng, orr_deferred_fn fn, void *arg);

typedef enum {
  ORR_VM_CREATING,
  ORR_VM_CREATED,
  ORR_VM_RUNNING,
  ORR_VM_PAUSED,
  ORR_VM_STOPPED,
} orr_vm_st;

typedef struct orr_unplug orr_unplug;

struct orr_vm {
  orr_engine *eng;
  orr_vm *next;
  const orr_backend *backend;
  char id[65];
  char runtime_id[37];
  char run_dir[400];
  orr_vm_st state;
  bool has_run;   /* reached Running once: start is for a VM that never ran */
  json_t *doc;    /* the live document */
  json_t *layout; /* the backend's own (backend.h): stored, never read */
  json_t *argv;
  json_t *plan_log;
  json_t *p9_index; /* share Name -> its index in the boot document */
  long long boot_mb;
  orr_vm_options opts;
  char accel[8];
  char *restore;
  char *template_ram; /* opts.template_ram, owned */
  char vmgenid[37];   /* the generation id a template or clone gets */
  /* Backend state. The qemu backend's fields are here by name (of these
  ** the core reads only pid, start_time and confined, for properties, the
  ** journal and how a change's files are passed); a new backend keeps its
  ** own in priv, which it allocates and frees (release). */
  void *priv;
  orr_process *proc;
  orr_qmp *qmp;
  int pid;
  int pid_closing;          /* handles still closing in release */
  bool owns_run_dir;        /* claimed run_dir: release removes it */
  bool launched;            /* the backend was started (launch returned 0) */
  orr_vm *after;            /* a closed VM with our run_dir, not yet gone:
                               the launch waits for it */
  uv_timer_t *kill_timer;   /* close: SIGKILL if quit is not obeyed */
  uint64_t launch_ms;       /* loop time QEMU was spawned at */
  uv_timer_t *restore_poll; /* polls query-status while QEMU restores */
  /* Exit. */
  bool exited;
  bool quitting; /* quit was sent: QMP closing is expected */
  bool detached; /* closed but left running (no terminate on close) */
  struct orr_pidwatch *pidwatch; /* a QEMU that is not our child */
  long long exit_code;
  int exit_signal;
  char exit_reason[64];
  /* Callers. */
  orr_req *reqs;       /* requests in flight */
  orr_unplug *unplugs; /* removals awaiting their device's deletion */
  json_t *reserved;    /* resource paths with a change in flight */
  orr_vm_event_cb event_cb;
  void *event_arg;
  bool closed;   /* the user's handle is gone */
  bool released; /* backend released; free when unreferenced */
  orr_vm_cb create_cb;
  void *create_arg;
  char cgroup[256]; /* cgroup dir for CPU limits, "" if none */
  /* Health: a QMP command missed its deadline, nothing answered since. */
  bool unresponsive;
  uint64_t unresponsive_at; /* orr__now_ms() */
  uint64_t unresponsive_timeout_ms;
  char unresponsive_cmd[40];
  /* One owner at a time: the runtime directory, open and flock'ed while
  ** this engine holds the VM (-1: none). */
  int run_dir_fd;
  unsigned long long start_time; /* QEMU's, in clock ticks after boot */
  bool attaching;                /* orrery.open has not completed */
  bool attach_failed;            /* open failed: release touches nothing */
  json_t *settling;  /* open: the file's intents, until reconciled */
  void *reconciling; /* the backend's reconcile in progress */
  /* The journal (vm_persist.c): state.json of a VM that keeps state. */
  uint64_t jgen;            /* changes to the in-memory state so far */
  uint64_t jdone;           /* the generation last written */
  struct orr_jwrite *jw;    /* the write in flight, or NULL */
  struct orr_jwait *jwaits; /* callers waiting for a write */
  uv_timer_t *jlazy;        /* writes a change nobody waits for */
  bool jqueued;             /* a write is queued for the next loop turn */
  bool joff;                /* nothing more is written (the VM is gone) */
  /* Durability: false when a change QEMU has could not be written down
  ** nor rolled back; the reason in durable_err. */
  bool not_durable;
  uint64_t jnd_gen; /* a write of this generation makes it durable again */
  char durable_err[256];
  /* What QEMU inherits (hostres.h), held from prepare until the spawn. */
  struct orr_hostres *boot_res;
  /* QEMU is in "postmigrate": a save ran and the VM has not run since. The
  ** next save must take it out first (QEMU refuses to migrate from there). */
  bool after_save;
  /* That cont + stop is under way: no state change for the caller. */
  bool cycling;
  /* Live migration (migrate.c): the one in progress, either way, or NULL;
  ** the VM is not freed while it holds it. */
  struct orr_mig *mig;
  const struct orr_mig_hooks *mig_hooks; /* vm_migrate.c's, with mig */
  /* A VM being received: the backend starts it waiting for the stream,
  ** its devices placed as the source's backend layout (incoming_layout, the
  ** source's vm->layout) has them, with the RAM the source booted with
  ** (boot_mb). */
  bool incoming;
  json_t *incoming_layout;
  bool confined;    /* launched by a confined engine: descriptors only */
  int landlock_abi; /* the Landlock ABI QEMU runs under, 0: none */
  struct orr_vm_console *console; /* vm_console.c */
  struct orr_qemu_console *qcon;  /* the qemu backend's capture */
};

/* Milliseconds on the monotonic clock the QMP deadlines use. */
uint64_t orr__now_ms(void);

/* Backend -> VM layer. */
void orr__vm_launched(orr_vm *vm, int status, const orr_error *e);
/* The guest's CPUs run (true) or stopped (false), whoever asked. */
void orr__vm_running(orr_vm *vm, bool running);
/* The VM is on its way out (the guest powered off, or it was told to
** quit): its exit follows, and reason (may be NULL) is why. */
void orr__vm_stopping(orr_vm *vm, const char *reason);
/* The backend deleted the device with this id (its plan's "wait_deleted",
** or one nobody asked it to delete: backend->device_gone says which
** resource of the document that was). */
void orr__vm_device_deleted(orr_vm *vm, const char *device);
/* A backend event that requests may wait on (r->wait_event, set by the
** backend's own save or migrate): they finish with status and msg. */
void orr__vm_event(orr_vm *vm, const char *event, int status, const char *msg);
/* QEMU missed a deadline (responsive false) or answered again. */
void orr__vm_health(orr_vm *vm, bool responsive, const char *command,
                    uint64_t ms);
/* Emits an event to the VM's subscriber. */
void orr__vm_emit(orr_vm *vm, const char *event, json_t *data);
void orr__vm_exited(orr_vm *vm, long long code, int signal, const char *reason);
void orr__vm_released(orr_vm *vm);
/* Frees the VM now (vm.c; engine->vm_free). */
void orr__vm_free(orr_vm *vm);
/* A state's name ("Running"). */
const char *orr__vm_st_name(orr_vm_st st);
void orr__vm_log(orr_vm *vm, const char *kind, json_t *entry);

/*
** A request: a plan (backend.h) run against the backend, then an
** optional wait for an event, then commit() on success.
**
** Deadline: the call's, from timeout_ms (0: ORR_VM_TIMEOUT_MS) when it
** starts; each command carries what is left of it. A step QEMU does not
** answer in time is in doubt, not failed: the caller gets ORR_ETIMEDOUT at
** once, the request keeps its resource, and the step's late answer settles
** it (vm_req.c): no further step is sent; if QEMU did the last step the
** change is committed, otherwise what was done is undone.
*/
typedef void (*orr_req_commit)(orr_req *r);
struct orr_req {
  orr_vm *vm;
  orr_req *next;
  orr_vm_cb cb;
  void *arg;
  json_t *plan;
  size_t step;
  ssize_t undo;
  int status;
  orr_error err;
  json_t *result;
  orr_req_commit commit; /* applied to the live document on success */
  json_t *data;          /* what commit needs */
  char *reserve;         /* resource path held while in flight */
  uint64_t timeout_ms;   /* the call's deadline (0: ORR_VM_TIMEOUT_MS) */
  uint64_t deadline;     /* orr__now_ms() it passes at; 0: not started */
  uv_timer_t *timer;
  orr_unplug *joined;     /* the unplug this request waits on */
  const char *wait_event; /* a backend event (orr__vm_event) it awaits */
  bool wait_exit;         /* completes when the process is gone */
  bool deleted_early;     /* the deletion overtook the removal step's reply */
  bool done;              /* outcome decided */
  bool delivered;         /* cb has run (or was dropped) */
  bool in_doubt;   /* failed ETIMEDOUT with QEMU's answer owed: settling */
  bool settled;    /* in doubt no more */
  bool unreserved; /* reserve released */
  bool quitting;   /* quit sent (terminate, shutdown's fallback) */
  /* Runs once when the change ends without being committed (failed, or
  ** settled by rolling back): gives back what it claimed (a root port). */
  void (*abandon)(orr_req *r);
  /* A run-time change of a VM that keeps state: its intent goes into
  ** state.json before the first step, and the outcome after. */
  bool journal;
  bool journaled;     /* the intent is part of the state (until settled) */
  json_t *doc_before; /* durable commit: the document to roll back to */
  /* Undoes what the core itself changed for this request (a cgroup
  ** write); 0 or an error. */
  int (*rollback)(orr_req *r, orr_error *e);
  bool undo_failed;  /* QEMU refused an undo step */
  bool rolling_back; /* undoing because the outcome could not be written */
  int inflight;      /* commands sent and not yet answered */
  void (*then)(orr_req *r); /* after the steps, instead of finishing */
  /* The descriptors the plan's steps pass ("fd": i), hostres.h. */
  struct orr_hostres *hr;
};

orr_req *orr__req_new(orr_vm *vm, orr_vm_cb cb, void *arg);
/* Starts running r->plan; the request completes through r->cb. */
void orr__req_run(orr_req *r);
/* Sends one command for r (args stolen) with what is left of r's deadline
** (the default once r is decided: settling is nobody's wait); counts it in
** flight until its outcome. cb gets ORR_ETIMEDOUT at the deadline and must
** then leave the count alone: late (NULL: only the count) gets the outcome.
** cb NULL: the answer is only counted (it changes nothing). Every other cb
** must begin with orr__req_replied (or, at ETIMEDOUT, leave the count to
** late): a command never counted off keeps the request, and every call
** that waits for the VM's requests to end (close), forever. */
int orr__req_send(orr_req *r, const char *name, json_t *args,
                  orr_backend_reply_cb cb, orr_backend_reply_cb late);
/* orr__req_send() of a step {"execute", "arguments", "fd"?} (copied). */
int orr__req_send_cmd(orr_req *r, const json_t *cmd, orr_backend_reply_cb cb,
                      orr_backend_reply_cb late);
/* First thing in a reply callback of r (not for ORR_ETIMEDOUT): nonzero
** means r is already decided (ignore the reply). */
int orr__req_replied(orr_req *r);
/* Milliseconds left of r's deadline (starting its clock); 0 once past. */
uint64_t orr__req_left(orr_req *r);
/* (Re)starts r's timer with cb after ms. */
void orr__req_arm_timer(orr_req *r, uint64_t ms, uv_timer_cb cb);
/* Completes r now (or deferred, when called from the starting call). */
void orr__req_finish(orr_req *r, int status, const orr_error *e);
/* Fails r asynchronously with code/message. */
void orr__req_fail(orr_req *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Makes r wait on the unplug already pending for resource, if any
** (returns 1); a repeated removal waits instead of failing. */
int orr__req_join_unplug(orr_req *r, const char *resource);
/* The backend deleted device: the unplug waiting for it completes, or the
** request whose removal step it overtook is told (1); 0: none of them. */
int orr__req_device_deleted(orr_vm *vm, const char *device);
/* Completes an unplug now: commits it and runs its cleanup. */
void orr__req_unplug_done(orr_vm *vm, orr_unplug *u);
/* The VM is gone: every request and unplug fails with ORR_EVMGONE. */
void orr__req_fail_all(orr_vm *vm, int status);

/* An unplug in progress: outlives the request that started it. */
struct orr_unplug {
  orr_unplug *next;
  char *device; /* the backend's id of the device (opaque) */
  char *resource;
  json_t *after; /* cleanup steps once the device is deleted */
  json_t *data;  /* commit data */
  orr_req_commit commit;
  /* The deletion came: committed, off vm->unplugs, cleanup in flight. */
  bool deleted;
  int cleanup_left; /* cleanup commands not yet answered */
  orr_vm *vm;
};

/* Console (vm_console.c). The backend says which ports it captures (bit
** n: COM n+1) and hands over what they print. */
void orr__vm_console_open(orr_vm *vm, unsigned ports);
void orr__vm_console_data(orr_vm *vm, int port, const char *buf, size_t len);
/* The VM exited: the backend drains, waiters fail ORR_EVMGONE. */
void orr__vm_console_exited(orr_vm *vm);
/* The handle closed: waiters end ORR_ECANCELED. */
void orr__vm_console_cancel(orr_vm *vm);
void orr__vm_console_free(orr_vm *vm);
/* "; last console lines:\n..." for a failure's message ("" if none). */
size_t orr__vm_console_suffix(const orr_vm *vm, char *buf, size_t size);
/* Receiving a VM (vm.c, for migrate.c): a VM with no document yet, linked
** and Creating, whose create_cb reports the outcome; then its launch from
** the offered document (norm taken) with the source's accel. */
int orr__vm_incoming_new(orr_engine *eng, const char *id,
                         const orr_vm_options *opts, orr_vm_cb cb, void *arg,
                         orr_vm **out, orr_error *e);
int orr__vm_incoming_launch(orr_vm *vm, json_t *norm, const char *accel,
                            long long boot_mb, orr_error *e);
/* A received VM runs (or is paused, as the source was): its state, then
** the receive's callback. */
void orr__vm_incoming_done(orr_vm *vm, bool running);

/* vm_migrate.c's hooks, reached through vm->mig_hooks (set with vm->mig)
** so that the VM layer below it never calls up into it: QEMU of a VM being
** received is up (-incoming defer); it failed to start; the VM's handle is
** closed; its process is gone; and busy: a migration holds the VM, no
** change, lifecycle call or save meanwhile. */
struct orr_mig_hooks {
  void (*launched)(orr_vm *vm);
  void (*launch_failed)(orr_vm *vm, int status, const orr_error *e);
  void (*closed)(orr_vm *vm);
  void (*exited)(orr_vm *vm);
  int (*busy)(const orr_vm *vm, const char *op, orr_error *e);
};
static inline void orr__mig_launched(orr_vm *vm) {
  if (vm->mig != NULL)
    vm->mig_hooks->launched(vm);
}
static inline void orr__mig_launch_failed(orr_vm *vm, int status,
                                          const orr_error *e) {
  if (vm->mig != NULL)
    vm->mig_hooks->launch_failed(vm, status, e);
}
static inline void orr__mig_closed(orr_vm *vm) {
  if (vm->mig != NULL)
    vm->mig_hooks->closed(vm);
}
static inline void orr__mig_exited(orr_vm *vm) {
  if (vm->mig != NULL)
    vm->mig_hooks->exited(vm);
}
static inline int orr__mig_busy(const orr_vm *vm, const char *op,
                                orr_error *e) {
  return vm->mig != NULL ? vm->mig_hooks->busy(vm, op, e) : 0;
}

/* Modify requests (vm_modify.c). */
void orr__vm_modify(orr_vm *vm, const json_t *request, const json_t *options,
                    orr_vm_cb cb, void *arg);
/* The unplug of a document device the backend deleted unasked (device:
** its id), or NULL (backend->device_gone knows no such device). */
orr_unplug *orr__vm_unasked_unplug(orr_vm *vm, const char *device);

/* Only a VM that outlives its handle is ever re-attached; rewriting the
** others' state.json on every change would be work for nobody (and a
** rename over a file can wait for a disk discard). */
static inline bool orr__vm_keeps_state(const orr_vm *vm) {
  return json_is_false(
      json_object_get(vm->doc, "ShouldTerminateOnLastHandleClosed"));
}

/*
** The journal (vm_persist.c). Only a VM that keeps state, of a backend
** that can re-attach (backend->attach), has one; for
** the others these are no-ops (sync calls back with 0).
*/
/* The in-memory state changed; it is written soon (within 100 ms), in one
** write with every other change of the moment. */
void orr__vm_dirty(orr_vm *vm);
typedef void (*orr_sync_cb)(void *arg, int status, const orr_error *e);
/* The state as it is now must be on disk: cb(arg, 0 | ORR_EIO, e) from the
** loop once a write that covers it is written, fsynced, renamed and its
** directory fsynced. Every sync asked for in one loop turn shares a write
** (group commit). why ("create", "intent", "commit") names the write's
** fault points: journal:<why>:before and :after (a shared write takes the
** last of those in that order; one nobody waits for is "lazy"). */
void orr__vm_sync(orr_vm *vm, const char *why, orr_sync_cb cb, void *arg);
/* Writes the state now, for a VM left running (close without terminate). */
void orr__vm_persist(orr_vm *vm);
/* The VM is gone: state.json is removed and nothing more is written. */
void orr__vm_unpersist(orr_vm *vm);
/* Nonzero while a write is in flight or wanted: release waits for it. */
int orr__vm_journal_busy(const orr_vm *vm);
/* Frees the journal's handles as the VM is freed. */
void orr__vm_journal_free(orr_vm *vm);
/* A change could not be written down nor rolled back (or, ok, it was). */
void orr__vm_set_durable(orr_vm *vm, bool ok, const char *why);
/* The request's plan changes QEMU (it has steps or a removal to wait
** for): such a change is journaled before its first step. */
bool orr__plan_changes_vm(const json_t *plan);
/* The backend can read the outcome of the plan back from the VM
** (objects it creates or deletes); otherwise the commit must be on disk
** before the change is reported done. */
bool orr__plan_verifiable(const json_t *plan);

/* Checks a parsed state file completely (the core's fields, then the
** backend's check_state): ORR_EINVAL naming the field. id and run_dir are
** what the file must describe. *doc gets the normalized document. */
int orr__vm_state_check(const json_t *st, const char *id, const char *run_dir,
                        const orr_backend *backend, json_t **doc, orr_error *e);

/* (vm_open.c) The part of orrery.open that trusts nothing yet: checks and locks
 *the
 ** VM's runtime directory (ORR_EBUSY: another engine holds it), reads and
 ** checks state.json. *out gets a VM that is not on the engine's list (its
 ** id, run_dir, run_dir_fd holding the lock, backend, runtime_id, doc and
 ** layout), *st the state file; free both with orr__vm_discard and
 ** json_decref. Errors as orr_vm_open's, prefixed "open". */
int orr__vm_take_dir(orr_engine *eng, const char *id,
                     const orr_vm_options *opts, orr_vm **out, json_t **st,
                     orr_error *e);
/* Frees a VM orr__vm_take_dir made (and closes its directory: unlocks). */
void orr__vm_discard(orr_vm *vm);

/* Commits an intent can name (vm_commit.c): "path", "share", "merge",
** "snapshot", "disk_merge". */
void orr__commit_path(orr_req *r);
void orr__commit_remove_share(orr_req *r);
void orr__commit_merge(orr_req *r);
void orr__commit_pipe(orr_req *r);
/* External disk snapshots' (vm_snapshot.c makes the requests): "snapshot"
** (the attachments name their overlays) and "disk_merge" (an attachment
** names the image below its top again); the attachment at (ctrl, lun) of
** the live document or NULL; giving back the disks a request held. */
void orr__commit_snapshot(orr_req *r);
void orr__commit_disk_merge(orr_req *r);
json_t *orr__snapshot_attachment(orr_vm *vm, int ctrl, int lun);
void orr__snapshot_release_held(orr_req *r);
const char *orr__commit_name(orr_req_commit fn);
orr_req_commit orr__commit_by_name(const char *name);

/* Backend -> VM layer, for orrery.open. */
void orr__vm_attached(orr_vm *vm, int status, const orr_error *e);
void orr__vm_reconciled(orr_vm *vm, int status, json_t *outcomes, json_t *gone,
                        const orr_error *e);

/* Named fault points for the crash harness (fault.c): a test-only hook. */
typedef enum { ORR_FAULT_NONE, ORR_FAULT_FAIL } orr_fault_action;
/* Counts a hit of point; kills the process (SIGKILL) when ORRERY_FAULT
** asks for that here, or returns ORR_FAULT_FAIL when it asks the step to
** fail. Read once, when the first engine is made. */
orr_fault_action orr__fault(const char *point);
void orr__fault_init(void);

/* The engine's backend of that name (vm.c), or NULL. */
const orr_backend *orr__backend_find(const orr_engine *eng, const char *name);
/* Plans a lifecycle verb's step and sends it outside any request (close's
** quit): backend->verb, then backend->send. */
int orr__vm_send_verb(orr_vm *vm, orr_verb verb, uint64_t timeout_ms,
                      orr_backend_reply_cb cb, void *arg);

/* KVM verdict for accel "auto" (accel.c). may_probe: without a cached
** verdict, boot the default guest once to find out (never for plan VMs). */
const char *orr__accel_resolve(const char *requested, int may_probe,
                               orr_error *e);

#endif

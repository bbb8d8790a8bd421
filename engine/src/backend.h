/*
** The backend interface: everything the core (vm*.c, rundir.c, engine.c)
** needs from a backend, and nothing it does not. The core keeps validation,
** bookkeeping, the live document, the request runner (deadlines, in-doubt
** handling, undo), the journal and the events; a backend translates the
** document, plans changes as steps, sends them, and reports what its VM
** does. The core includes no header under backends/ and names no message
** of a backend: it passes the steps a backend planned back to that
** backend's send. Not a public header. docs/backends.md lists the files
** each new device type or backend touches.
**
** Steps and plans. A step is a JSON object the backend made; the core reads
** three keys of it and no more:
**   "execute"  a string naming the step (error messages, fault points
**              "step:<execute>:before", the InDoubt property); required
**   "fd"       index of a descriptor the request holds (hostres.h) that
**              goes with the step (send_fd); optional
**   "undo"     the step that takes this one back, or null; optional
** and hands "execute" with "arguments" (any JSON, or absent) to send. For
** QEMU that is a QMP command; for KubeVirt it would be an API request
** named, say, "vm/start" with {method, path, body} as its arguments.
** A plan (one change) is
**   {"do": [step, ...], "wait_deleted": "<device id>" | null,
**    "after": [step, ...], "verifiable": false (optional), ...}
** The runner sends "do" in order, each with what is left of the call's
** deadline; when step i fails it sends the undos of steps i-1..0 in
** reverse. "wait_deleted": the change completes when the backend reports
** that device deleted (orr__vm_device_deleted), then "after" runs (cleanup
** the backend refuses while the device exists). "verifiable": false says
** the backend cannot read the outcome back from the VM (re-attaching could
** not settle it), so the core writes it down before reporting success. Any
** other key is the backend's. Device ids are opaque to the core: it only
** compares the one a plan waits for with the one the backend reports.
**
** Layout. vm->layout is the backend's own JSON (made at translation,
** changed by its plans' commits, kept in state.json); the core stores it
** and reads nothing in it.
*/
#ifndef ORR_BACKEND_H
#define ORR_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "orrery/error.h"
#include "orrery/vm.h"

struct orr_hostres;
typedef struct orr_req orr_req;

/* The answer to a step: status 0 with the result (borrowed), or an orr
** code with the backend's message. ORR_ETIMEDOUT at the step's deadline,
** after which the answer may still come, to the late callback (the same
** contract as orr_qmp_send_timed()). */
typedef void (*orr_backend_reply_cb)(void *arg, int status, json_t *result,
                                     const char *errmsg);

/* The lifecycle verbs: each becomes one step the backend plans (verb) and
** the core sends with its own deadline and follow-up. */
typedef enum {
  ORR_VERB_START,     /* run a VM that never ran (created or restored) */
  ORR_VERB_RESUME,    /* run a paused VM */
  ORR_VERB_PAUSE,     /* stop the guest's CPUs; the VM stays */
  ORR_VERB_POWERDOWN, /* ask the guest to power off (it may ignore it) */
  ORR_VERB_QUIT,      /* end the VM now, without the guest's consent */
} orr_verb;

/* A run-time change the core has checked against the live document:
** validated settings, the resource free (Add) or present (Remove, Update),
** the document rules holding for the result. */
typedef enum { ORR_CHANGE_ADD, ORR_CHANGE_REMOVE, ORR_CHANGE_UPDATE } orr_op;

typedef struct {
  orr_op op;
  /* The document path of the resource, as keys from the root
  ** ({"VirtualMachine", "Devices", "Scsi", <GUID>, "Attachments", "3"}),
  ** NULL-terminated; for a Plan9 share, the Shares array. */
  const char *const *keys;
  size_t nkeys;
  /* The normalized new value (Add, Update); for a Plan9 share removal, the
  ** share as the document has it. NULL otherwise. */
  const json_t *settings;
  /* The value the live document has now (Remove, Update), else NULL. */
  const json_t *current;
  /* Where a change's host files are opened (judged under the engine's
  ** policy); held by the request until its steps are sent. */
  struct orr_hostres *hr;
} orr_change;

/* A backend. Every op gets the VM; a NULL op is a capability the backend
** does not have (the core refuses what needs it with ORR_ENOTSUP). */
typedef struct {
  const char *name;
  /* A dry run: nothing real is started, every host file is judged but
  ** none is kept open, the VM keeps a log of what it would do
  ** (vm:plan_log()), and no host is probed for KVM. */
  bool dry_run;
  /* The VM runs elsewhere (a cluster): no accelerator is resolved on this
  ** host, and the backend takes the cluster create options (kubeconfig,
  ** kube_namespace, sources, dry_run: orrery/vm.h) that the others refuse,
  ** as it refuses the host ones (restore, qemu_binary, runtime_dir). */
  bool remote;
  /* Runtime files the backend keeps in the VM's runtime directory (NULL-
  ** terminated), removed with it; pidfile names the one holding the pid
  ** of the VM's process, whose death makes a directory stale (NULL: the
  ** backend keeps no process on this host). rundir.c is given these. */
  const char *const *run_files;
  const char *pidfile;

  /* ---- boot time ---- */

  /* Create options only this backend interprets, refused early (before
  ** the accelerator is resolved): e.g. a program to run in a confined
  ** engine. May be NULL. */
  int (*check_options)(const orr_vm *vm, orr_error *e);
  /* Translates the boot-time document (vm->doc) and checks what can be
  ** checked without touching the host; fills vm->layout. May be NULL
  ** (launch does it). */
  int (*prepare)(orr_vm *vm, orr_error *e);
  /* Starts the VM paused; later calls orr__vm_launched(vm, status, e). */
  int (*launch)(orr_vm *vm, orr_error *e);

  /* ---- run time ---- */

  /* Sends one step (name and args: its "execute" and "arguments"; args
  ** taken) with a deadline (0: ORR_VM_TIMEOUT_MS). cb gets the answer,
  ** or ORR_ETIMEDOUT at the deadline and late the answer after it.
  ** Nonzero (ORR_EVMGONE): not sent, no callback. */
  int (*send)(orr_vm *vm, const char *name, json_t *args, uint64_t timeout_ms,
              orr_backend_reply_cb cb, orr_backend_reply_cb late, void *arg);
  /* The same with a descriptor (taken; -1 in a dry run). */
  int (*send_fd)(orr_vm *vm, const char *name, json_t *args, int fd,
                 uint64_t timeout_ms, orr_backend_reply_cb cb,
                 orr_backend_reply_cb late, void *arg);
  /* The step of a lifecycle verb. The backend reports what follows through
  ** orr__vm_running / orr__vm_stopping / orr__vm_exited. */
  int (*verb)(orr_vm *vm, orr_verb verb, json_t **step, orr_error *e);
  /* Save (the VM paused, the core checked that): sets r up to write the
  ** VM's state to the file the request holds at descriptor index fd
  ** (r->plan, and r->then for what follows the plan's steps), driving the
  ** request through the runner's calls (vm_internal.h). The core runs r. */
  int (*save)(orr_req *r, int fd, orr_error *e);
  /* External disk snapshots (NULL: ORR_ENOTSUP). disk_snapshot: disks is
  ** [{ctrl, lun, top (the attachment's Path now), overlay, field (the
  ** caller's name for overlay, for errors)}], the core has
  ** checked each attachment and holds it; the backend makes each overlay
  ** (gone again by abandon if the change ends uncommitted) and plans
  ** putting them over the disks at one point in time; its keys of data go
  ** to its commit. disk_commit: sets r up (r->plan, r->then) to merge the
  ** top overlay of (ctrl, lun) into the image below and drives it; data
  ** gets "below", the path the attachment names again once merged. */
  int (*disk_snapshot)(orr_vm *vm, const json_t *disks, json_t *data,
                       json_t **plan, orr_error *e);
  int (*disk_commit)(orr_req *r, int ctrl, int lun, json_t *data, orr_error *e);
  /* A raw message by the caller's name (vm:qmp()); NULL: not offered. */
  int (*raw)(orr_vm *vm, const char *name, const json_t *args, json_t **step,
             orr_error *e);
  /* Plans a change against the live document: *plan as above. data is
  ** the commit data the core made ({"keys", "value"}); the backend may add
  ** keys of its own there, which its commit and abandon read (and
  ** check_state checks in a journal). A resource the backend must claim
  ** (a root port) is claimed here and given back by abandon. */
  int (*plan_change)(orr_vm *vm, const orr_change *ch, json_t *data,
                     json_t **plan, orr_error *e);
  /* A change was committed to the document: apply the backend's part of
  ** data to vm->layout. Also run for an intent adopted when re-attaching
  ** and, on a scratch VM with a copy of the layout, when checking one. */
  void (*commit)(orr_vm *vm, const json_t *data);
  /* A change ended uncommitted: give back what plan_change claimed. */
  void (*abandon)(orr_vm *vm, const json_t *data);
  /* A device the backend reports deleted that no request removed (the
  ** guest ejected it): the Remove request that names the document's
  ** resource, {"ResourcePath", "RequestType": "Remove", "Settings"?},
  ** or NULL when the device is none of the document's. The core plans that
  ** removal (its "after" cleanup still runs) and commits it. */
  json_t *(*device_gone)(orr_vm *vm, const char *device);
  /* CPU limits ({Limit, Weight, Reservation}) of cpus processors; NULL:
  ** ORR_ENOTSUP. Applied at launch by the backend itself. */
  int (*cpu_limits)(orr_vm *vm, const json_t *limits, long long cpus,
                    orr_error *e);
  /* Backend facts for vm:properties() (added to p). May be NULL. */
  void (*properties)(const orr_vm *vm, json_t *p);
  /* The guest agent's socket, or NULL. May be NULL. */
  const char *(*guest_socket)(const orr_vm *vm);
  /* What a dry run of this VM recorded, for `orrery plan` (new reference:
  ** keys merged into the VM's report entry), or NULL. May be NULL: then a
  ** dry_run backend's report is {"plan_log": vm:plan_log()}. */
  json_t *(*plan_report)(const orr_vm *vm);

  /* ---- the end ---- */

  /* Ends the process now (SIGKILL); orr__vm_exited() follows. */
  void (*kill)(orr_vm *vm);
  /* Frees backend state once the VM is gone; then orr__vm_released(). */
  void (*release)(orr_vm *vm);

  /* ---- re-attaching (orrery.open); all NULL: the backend cannot ---- */

  /* Checks the backend's own parts of a state file the core has already
  ** checked (its layout, process identity, every intent's plan and the
  ** backend's keys of its data): ORR_EINVAL naming the field. It reads
  ** nothing but st and run_dir. */
  int (*check_state)(const json_t *st, const char *run_dir, orr_error *e);
  /* Proves that the process the state names is this VM's, watches it and
  ** connects; later orr__vm_attached(vm, status, e). Never signals a
  ** process it has not proved, nor one it could not greet. */
  int (*attach)(orr_vm *vm, const json_t *st, orr_error *e);
  /* Proves that the process the state names is this VM's (as attach
  ** does, nothing sent to it) and opens *pidfd for it, the only way the
  ** core then reaches it (orr_vm_kill_id). ORR_ENOENT when it is gone,
  ** ORR_EPERM naming the check a process failed. */
  int (*prove)(orr_vm *vm, const json_t *st, int *pidfd, orr_error *e);
  /*
  ** Settles the journal against what the VM itself reports: for each intent
  ** of `intents` ({Resource, Commit, Data, Plan}), "adopted" (its change is
  ** complete in the VM), "undone" (it is not, and what part of it was done
  ** has been taken back) or "pending" (a removal the guest has still to
  ** complete); deletes what the backend's naming scheme owns that neither
  ** the document nor an adopted intent accounts for; brings the layout in
  ** line. Then orr__vm_reconciled(vm, status, outcomes, gone, e): gone
  ** lists the device ids of document devices the VM no longer has.
  */
  void (*reconcile)(orr_vm *vm, const json_t *intents);

  /* ---- seeing inside; NULL: the backend has none ---- */

  /* Sends bytes to COM port `port` as if typed; cb from the loop. The
  ** backend captures what the ports print itself and hands it over with
  ** orr__vm_console_open/orr__vm_console_data (vm_internal.h). */
  void (*console_write)(orr_vm *vm, int port, const char *buf, size_t len,
                        orr_vm_cb cb, void *arg);
  /* The VM has exited: hand over what it printed and is not read yet. */
  void (*console_drain)(orr_vm *vm);
  /* Resource use for orr_vm_stats() (orrery/vm.h); cb gets the result. */
  void (*stats)(orr_vm *vm, uint64_t timeout_ms, orr_vm_cb cb, void *arg);
  /* ---- live migration (migrate.c); NULL: the backend cannot ---- */

  /*
  ** The steps of each phase, for the core to send in turn: {"setup":
  ** [steps], "handoff": step (sent with the stream's socket), "start",
  ** "poll" (its answer's "status": "completed", "failed" or "cancelled" end
  ** it; "downtime", "total-time", "setup-time", "ram" say how it went),
  ** "cancel", "resume"}. incoming: the destination's, whose launch
  ** (vm->incoming) waits for a stream with its devices placed as
  ** vm->incoming_layout (the source's vm->layout) has them.
  */
  int (*migrate_plan)(orr_vm *vm, bool incoming, json_t **plan, orr_error *e);
  /* Source plans may also have "probe" (a step whose answer the offer's
  ** layout carries under "probe_as") and "kill_on_handover" (true: the
  ** source's process is killed, not asked to quit, once the destination
  ** runs the VM). */
  /* The destination has the whole state, before it resumes the VM: take
  ** over what the source's host side had (NULL: nothing). Nonzero fails the
  ** migration (the source resumes). */
  int (*migrate_arrived)(orr_vm *vm, orr_error *e);
} orr_backend;

#endif

/*
** What the qemu backend's files share, and what the plan backend (a dry run
** of the same translation) takes from them. Not for the core, which knows
** both only as an orr_backend (backend.h).
**
**   qemu.c            the process, QMP, launch, attach, kill, release
**   qemu_ops.c        QEMU's semantics both backends share: the lifecycle
**                     verbs' commands, QMP events -> the core's calls, the
**                     guest agent socket, the runtime files
**   qemu_change.c     run-time changes: plan_change, commit, abandon,
**                     device_gone (root ports, fdsets, qdev names)
**   qemu_save.c       save: migrate to a file and poll
**   qemu_state.c      a state file's backend parts (check_state)
**   qemu_reconcile.c  settling a re-attached VM's journal (reconcile)
**   qemu_xlate.h      the pure translation (argv, plans, names)
*/
#ifndef ORR_BACKENDS_QEMU_BACKEND_H
#define ORR_BACKENDS_QEMU_BACKEND_H

#include "qemu_xlate.h"
#include "vm_internal.h"

/* The two backends built on QEMU's translation (engine.c registers them). */
extern const orr_backend orr__backend_qemu;
extern const orr_backend orr__backend_plan;

/* The qemu translation's config for this VM: both backends translate the
** same way, so the plan backend records what the qemu backend would run. */
void orr__qemu_vm_config(const orr_vm *vm, orr_qemu_config *cfg);
/* Live migration's steps (qemu_migrate.c). */
int orr__qemu_migrate_plan(orr_vm *vm, bool incoming, json_t **plan,
                           orr_error *e);
/* The destination has the whole state: received pipes' sockets take over
** their host paths. */
int orr__qemu_migrate_arrived(orr_vm *vm, orr_error *e);

/* ---- qemu_ops.c ---- */
/* backend->verb: cont, stop, system_powerdown, quit. */
int orr__qemu_verb(orr_vm *vm, orr_verb verb, json_t **step, orr_error *e);
/* backend->raw: the caller's QMP command as it is. */
int orr__qemu_raw(orr_vm *vm, const char *name, const json_t *args,
                  json_t **step, orr_error *e);
/* A QMP event, as the core's calls (RESUME/STOP: running; SHUTDOWN:
** stopping; DEVICE_DELETED of a device: device_deleted). */
void orr__qemu_event(orr_vm *vm, const char *event, json_t *data);
/* backend->guest_socket: the layout's "qga". */
const char *orr__qemu_guest_socket(const orr_vm *vm);
/* backend->run_files and ->pidfile. */
extern const char *const orr__qemu_run_files[];

/* ---- qemu_change.c ---- */
int orr__qemu_plan_change(orr_vm *vm, const orr_change *ch, json_t *data,
                          json_t **plan, orr_error *e);
void orr__qemu_commit(orr_vm *vm, const json_t *data);
void orr__qemu_abandon(orr_vm *vm, const json_t *data);
json_t *orr__qemu_device_gone(orr_vm *vm, const char *qdev);

/* ---- qemu_save.c ---- */
int orr__qemu_save(orr_req *r, int fd, orr_error *e);
/* External disk snapshots (qemu_snapshot.c): backend->disk_snapshot and
** disk_commit, their layout part of a commit and abandon, and the block job
** events a commit waits on. */
int orr__qemu_disk_snapshot(orr_vm *vm, const json_t *disks, json_t *data,
                            json_t **plan, orr_error *e);
int orr__qemu_disk_commit(orr_req *r, int ctrl, int lun, json_t *data,
                          orr_error *e);
void orr__qemu_snapshot_commit(orr_vm *vm, const json_t *data);
void orr__qemu_snapshot_abandon(orr_vm *vm, const json_t *data);
void orr__qemu_job_event(orr_vm *vm, const char *event, json_t *data);
/* The size of an overlay as the engine writes it (four 64 KiB clusters). */
#define ORR_QEMU_OVERLAY_SIZE (4 * 65536)

/* orr_backend.check_state of the qemu backend (qemu_state.c). */
int orr__qemu_check_state(const json_t *st, const char *run_dir, orr_error *e);
/* fd mode: QEMU 7.2 closes a removed fdset's descriptors only while the VM
** runs. linger_fdset records one removed ({"fdset-id"}) while it does not;
** drop_lingering removes them all again (once it runs). */
void orr__qemu_linger_fdset(orr_vm *vm, const json_t *args);
void orr__qemu_drop_lingering(orr_vm *vm);
/* orr_backend.reconcile of the qemu backend. */
void orr__qemu_reconcile(orr_vm *vm, const json_t *intents);
/* A DEVICE_DELETED that came while reconciling. */
void orr__qemu_reconcile_event(orr_vm *vm, json_t *data);

/* Console capture (qemu_console.c). The COM ports a document has: bit n
** for COM n+1 (COM1 always), *piped those with the document's own socket. */
unsigned orr__qemu_console_ports(const json_t *doc, unsigned *piped);
/* Opens the ports' FIFOs (create: make them, before QEMU is spawned;
** otherwise re-attaching: open what is there) and reads them. */
int orr__qemu_console_start(orr_vm *vm, bool create, orr_error *e);
void orr__qemu_console_write(orr_vm *vm, int port, const char *buf, size_t len,
                             orr_vm_cb cb, void *arg);
void orr__qemu_console_drain(orr_vm *vm);
void orr__qemu_console_stop(orr_vm *vm);
/* orr_backend.stats (qemu_stats.c). */
void orr__qemu_stats(orr_vm *vm, uint64_t timeout_ms, orr_vm_cb cb, void *arg);

#endif

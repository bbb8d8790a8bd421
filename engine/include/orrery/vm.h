/*
** The VM manager: a VM created from a compute system document on a backend
** ("qemu": a real qemu-system-x86_64 driven over QMP; "plan": a dry run that
** records what it would send). Lifecycle and run-time changes are
** asynchronous requests on the engine's loop.
**
** Contract for every call taking an orr_vm_cb: the callback runs exactly
** once, from the loop, never from inside the call. status is 0 or an ORR_*
** code; err (never NULL) carries the message; result is borrowed (may be
** NULL): json_incref() it to keep it.
*/
#ifndef ORRERY_VM_H
#define ORRERY_VM_H

#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "orrery/error.h"

typedef struct orr_engine orr_engine;
typedef struct orr_vm orr_vm;

typedef void (*orr_vm_cb)(void *arg, int status, const orr_error *err,
                          json_t *result);

/*
** Events: "state" {State, Previous}, "exit" {ExitCode, Signal, Reason},
** "device_deleted" {Device, ResourcePath}, "console" {Port, Line} (not yet).
** data is borrowed.
*/
typedef void (*orr_vm_event_cb)(void *arg, orr_vm *vm, const char *event,
                                json_t *data);

/* The engine owns the loop (or borrows the caller's) and every VM. */
ORR_API int orr_engine_new(uv_loop_t *loop, orr_engine **out, orr_error *e);
ORR_API uv_loop_t *orr_engine_loop(orr_engine *eng);
/* Terminates VMs that terminate on last handle close, waits (running the
** loop, bounded) until their processes are gone, and frees everything. Must
** not be called from a loop callback. */
ORR_API void orr_engine_free(orr_engine *eng);
/* Number of VMs the engine still holds (closed ones included until their
** process is gone). */
ORR_API int orr_engine_vm_count(const orr_engine *eng);

typedef struct {
  const char *backend;     /* "qemu" (default) or "plan" */
  const char *accel;       /* "auto" (default), "kvm" or "tcg" */
  int hotplug_ports;       /* free root ports for hot-adds; 0: 16 */
  int guest_agent;         /* 1 add the qemu-ga port, 0 not, -1 (default)
                              when the document boots the default guest */
  const char *restore;     /* saved state file to restore from, or NULL */
  const char *qemu_binary; /* NULL: qemu-system-x86_64 */
  const char *runtime_dir; /* NULL: <runtime root>/<id> */
  uint64_t timeout_ms;     /* create's deadline for the QMP handshake and,
                              with restore, for QEMU to load the state;
                              0: 10 s for the one, 60 s for the other */
} orr_vm_options;

ORR_API void orr_vm_options_init(orr_vm_options *o);

/*
** Creates the VM, not started: for qemu, QEMU runs paused (-S) with QMP
** connected. The document is checked whole first. Errors found before any
** process is started are returned here (and cb never runs); otherwise 0 is
** returned, *out is set, and cb reports the outcome (on failure the VM is
** already torn down: just orr_vm_close() it).
*/
ORR_API int orr_vm_create(orr_engine *eng, const char *id, const json_t *doc,
                          const orr_vm_options *opts, orr_vm_cb cb, void *arg,
                          orr_vm **out, orr_error *e);

/*
** Re-attaches to a qemu VM another engine process created with
** ShouldTerminateOnLastHandleClosed = false, from its runtime directory
** (opts->runtime_dir, else <runtime root>/<id>): its live document,
** pending unplugs and state as QEMU reports it. Errors found at once are
** returned (ORR_ENOENT: no such VM or it is not running); otherwise cb
** reports the outcome as for create.
*/
ORR_API int orr_vm_open(orr_engine *eng, const char *id,
                        const orr_vm_options *opts, orr_vm_cb cb, void *arg,
                        orr_vm **out, orr_error *e);

ORR_API void orr_vm_start(orr_vm *vm, orr_vm_cb cb, void *arg);
ORR_API void orr_vm_pause(orr_vm *vm, orr_vm_cb cb, void *arg);
ORR_API void orr_vm_resume(orr_vm *vm, orr_vm_cb cb, void *arg);
/* options: {SaveStateFilePath = "/abs/path"}; the VM must be paused. */
ORR_API void orr_vm_save(orr_vm *vm, const json_t *options, orr_vm_cb cb,
                         void *arg);
/* ACPI power-down, then terminate after timeout_ms (0: 10 s); result is the
** exit info. */
ORR_API void orr_vm_shutdown(orr_vm *vm, uint64_t timeout_ms, orr_vm_cb cb,
                             void *arg);
ORR_API void orr_vm_terminate(orr_vm *vm, orr_vm_cb cb, void *arg);
/* Completes when the VM's process is gone; result {ExitCode, Signal,
** Reason}. */
ORR_API void orr_vm_wait(orr_vm *vm, orr_vm_cb cb, void *arg);

/*
** A run-time change as an HCS ModifySettingRequest {ResourcePath,
** RequestType, Settings}. options may hold timeout_ms, the deadline for a
** removal QEMU completes only with the guest's help (PCI unplug; default
** 10 s). The live document changes only on success.
*/
ORR_API void orr_vm_modify(orr_vm *vm, const json_t *request,
                           const json_t *options, orr_vm_cb cb, void *arg);

/*
** Sends one raw QMP command and returns QEMU's answer as result: the escape
** hatch (like virsh qemu-monitor-command) and how tests check QEMU's own
** view (query-block, query-pci). It bypasses the live document.
*/
ORR_API void orr_vm_qmp(orr_vm *vm, const char *command,
                        const json_t *arguments, orr_vm_cb cb, void *arg);

/* Sync queries. */
ORR_API const char *orr_vm_id(const orr_vm *vm);
ORR_API const char *
orr_vm_state(const orr_vm *vm); /* "Created", "Running", ... */
ORR_API const json_t *
orr_vm_document(const orr_vm *vm);                   /* live; do not modify */
ORR_API json_t *orr_vm_properties(const orr_vm *vm); /* new reference */
ORR_API json_t *orr_vm_plan_log(const orr_vm *vm);   /* new reference */
/* The unix socket of the guest agent's virtio-serial port (QEMU is the
** server), or NULL when the VM has none (create option guest_agent). */
ORR_API const char *orr_vm_guest_socket(const orr_vm *vm);
/* The engine this VM lives on (its loop runs the guest agent client). */
ORR_API orr_engine *orr_vm_engine(const orr_vm *vm);

/* The one event subscriber (the bindings fan out). */
ORR_API void orr_vm_on_event(orr_vm *vm, orr_vm_event_cb cb, void *arg);

/*
** Releases the caller's handle. With ShouldTerminateOnLastHandleClosed the
** VM is terminated; either way requests still pending complete with
** ORR_ECANCELED (from the loop), the event callback is dropped, and the
** engine frees the VM once its process is gone. vm is invalid afterwards.
*/
ORR_API void orr_vm_close(orr_vm *vm);

#endif

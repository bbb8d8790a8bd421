/*
** What the qemu backend's files share (qemu.c drives the process and QMP,
** qemu_state.c checks a state file's backend parts, qemu_reconcile.c
** settles a re-attached VM's journal). Not for the core.
*/
#ifndef ORR_BACKENDS_QEMU_BACKEND_H
#define ORR_BACKENDS_QEMU_BACKEND_H

#include "vm_internal.h"

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

#endif

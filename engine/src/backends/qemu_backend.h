/*
** What the qemu backend's files share (qemu.c drives the process and QMP,
** qemu_reconcile.c settles a re-attached VM's journal). Not for the core.
*/
#ifndef ORR_BACKENDS_QEMU_BACKEND_H
#define ORR_BACKENDS_QEMU_BACKEND_H

#include "vm_internal.h"

/* orr_backend.reconcile of the qemu backend. */
void orr__qemu_reconcile(orr_vm *vm, const json_t *intents);
/* A DEVICE_DELETED that came while reconciling. */
void orr__qemu_reconcile_event(orr_vm *vm, json_t *data);

#endif

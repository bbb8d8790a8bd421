/*
** The bottom of the VM layer: a VM's facts, its events and log, and the
** end of its last use. Every other core file (vm.c, vm_req.c, vm_modify.c,
** vm_persist.c, vm_console.c, vm_migrate.c, ...) reports through these,
** and this file calls none of them: the core's calls go one way
** (scripts/check-seam.py fails on a circle among the core's files).
*/
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orrery/log.h"
#include "vm_internal.h"

static const char *const state_names[] = {"Creating", "Created", "Running",
                                          "Paused", "Stopped"};

const char *orr__vm_st_name(orr_vm_st st) {
  return state_names[st];
}

void orr_vm_options_init(orr_vm_options *o) {
  memset(o, 0, sizeof *o);
  o->backend = "qemu";
  o->accel = "auto";
  o->guest_agent = -1;
}

const char *orr_vm_id(const orr_vm *vm) {
  return vm->id;
}

const char *orr_vm_state(const orr_vm *vm) {
  return state_names[vm->state];
}

const json_t *orr_vm_document(const orr_vm *vm) {
  return vm->doc;
}

const char *orr_vm_guest_socket(const orr_vm *vm) {
  return vm->backend->guest_socket ? vm->backend->guest_socket(vm) : NULL;
}

orr_engine *orr_vm_engine(const orr_vm *vm) {
  return vm->eng;
}

json_t *orr_vm_plan_log(const orr_vm *vm) {
  return json_incref(vm->plan_log);
}

json_t *orr_vm_plan_report(const orr_vm *vm) {
  if (vm->backend->plan_report != NULL)
    return vm->backend->plan_report(vm);
  if (vm->backend->dry_run)
    return json_pack("{s:O}", "plan_log", vm->plan_log);
  return NULL;
}

void orr_vm_on_event(orr_vm *vm, orr_vm_event_cb cb, void *arg) {
  vm->event_cb = cb;
  vm->event_arg = arg;
}

void orr__vm_log(orr_vm *vm, const char *kind, json_t *entry) {
  json_t *e;
  /* Only the dry run keeps a log; a real VM's would grow without bound. */
  if (!vm->backend->dry_run) {
    json_decref(entry);
    return;
  }
  e = json_pack("{s:s, s:o}", "kind", kind, "value", entry);
  json_array_append_new(vm->plan_log, e);
}

const orr_backend *orr__backend_find(const orr_engine *eng, const char *name) {
  for (size_t i = 0; eng->backends && eng->backends[i]; i++)
    if (strcmp(eng->backends[i]->name, name) == 0)
      return eng->backends[i];
  return NULL;
}

void orr__vm_emit(orr_vm *vm, const char *event, json_t *data) {
  /* Console lines have their own component (and are many). */
  bool console = strcmp(event, "console") == 0;
  if (orr_log_enabled(console ? ORR_LOG_DEBUG : ORR_LOG_INFO,
                      console ? "console" : "vm")) {
    char *text = json_dumps(data, JSON_COMPACT);
    orr_log(console ? ORR_LOG_DEBUG : ORR_LOG_INFO, console ? "console" : "vm",
            vm->id, "%s %s", event, text != NULL ? text : "{}");
    free(text);
  }
  if (vm->eng->tap_cb != NULL)
    vm->eng->tap_cb(vm->eng->tap_arg, vm, event, data);
  if (vm->event_cb && !vm->closed)
    vm->event_cb(vm->event_arg, vm, event, data);
}

int orr__vm_journal_busy(const orr_vm *vm) {
  return vm->jw != NULL || vm->jqueued || vm->jwaits != NULL;
}

/* Freed once no request, no journal write and no migration still needs
** it: by the engine's vm_free (vm.c's, called through the engine so that
** the files below the VM layer that end a VM's last use do not call up
** into it). */
void orr__vm_released(orr_vm *vm) {
  vm->released = true;
  if (vm->reqs == NULL && !orr__vm_journal_busy(vm) && vm->mig == NULL)
    vm->eng->vm_free(vm);
}

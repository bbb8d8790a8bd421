/*
** QEMU's semantics that the qemu backend and its dry run (plan.c) share:
** which QMP command carries out each lifecycle verb, how QEMU's events
** become the core's calls, and which files QEMU keeps in the runtime
** directory.
*/
#include <stdio.h>
#include <string.h>

#include "qemu_backend.h"

const char *const orr__qemu_run_files[] = {
    ORR_QEMU_QMP_SOCK, ORR_QEMU_QGA_SOCK, ORR_QEMU_VNC_SOCK, ORR_QEMU_PIDFILE,
    ORR_QEMU_VARS_FILE,
    /* The COM ports' sockets and capture FIFOs (qemu_console.c). */
    "com0.sock", "com0.out", "com1.sock", "com1.out", "com2.sock", "com2.out",
    "com3.sock", "com3.out", NULL};

int orr__qemu_verb(orr_vm *vm, orr_verb verb, json_t **step, orr_error *e) {
  static const char *const cmds[] = {
      [ORR_VERB_START] = "cont", [ORR_VERB_RESUME] = "cont",
      [ORR_VERB_PAUSE] = "stop", [ORR_VERB_POWERDOWN] = "system_powerdown",
      [ORR_VERB_QUIT] = "quit",
  };
  (void)vm;
  if ((unsigned)verb >= sizeof cmds / sizeof *cmds || cmds[verb] == NULL)
    return orr_error_set(e, ORR_ENOTSUP, "the qemu backend has no verb %d",
                         (int)verb);
  *step = json_pack("{s:s}", "execute", cmds[verb]);
  return 0;
}

int orr__qemu_raw(orr_vm *vm, const char *name, const json_t *args,
                  json_t **step, orr_error *e) {
  (void)vm;
  if (name == NULL)
    return orr_error_set(e, ORR_EINVAL, "qmp: a command name is required");
  *step = json_pack("{s:s}", "execute", name);
  if (args != NULL)
    json_object_set_new(*step, "arguments", json_deep_copy(args));
  return 0;
}

void orr__qemu_event(orr_vm *vm, const char *event, json_t *data) {
  bool resume = strcmp(event, "RESUME") == 0, stop = strcmp(event, "STOP") == 0;
  if (resume)
    vm->after_save = false; /* QEMU left "postmigrate" */
  if (vm->cycling && (stop || resume))
    return; /* a save taking QEMU out of "postmigrate": still Paused */
  if (stop || resume) {
    orr__vm_running(vm, resume);
  } else if (strcmp(event, "SHUTDOWN") == 0) {
    /* QEMU exits next and closes QMP first. */
    orr__vm_stopping(vm, json_string_value(json_object_get(data, "reason")));
  } else if (strncmp(event, "BLOCK_JOB_", 10) == 0 ||
             strcmp(event, "JOB_STATUS_CHANGE") == 0) {
    orr__qemu_job_event(vm, event, data);
  } else if (strcmp(event, "DEVICE_DELETED") == 0) {
    /* virtio devices also send one for their backend, with no "device". */
    const char *dev = json_string_value(json_object_get(data, "device"));
    if (dev != NULL)
      orr__vm_device_deleted(vm, dev);
  }
}

const char *orr__qemu_guest_socket(const orr_vm *vm) {
  return vm->layout ? json_string_value(json_object_get(vm->layout, "qga"))
                    : NULL;
}

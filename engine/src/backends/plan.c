/*
** The plan backend: a dry run. It translates and plans exactly as the qemu
** backend does (qemu_backend.h: the same translation, verbs, change plans
** and save), records the argv and every QMP command it would send
** (vm:plan_log()), and answers as an obedient QEMU with a cooperative guest
** would, its events going through the qemu backend's translation.
*/
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qemu_backend.h"

typedef struct {
  orr_vm *vm;
  orr_qmp_reply_cb cb;
  void *arg;
  char cmd[48];
  json_t *args;
} plan_reply;

static int plan_launch(orr_vm *vm, orr_error *e) {
  orr_qemu_config cfg;
  json_t *argv = NULL, *layout = NULL;
  int rc;
  orr__qemu_vm_config(vm, &cfg);
  /* Judged and inspected as the qemu backend would, nothing kept open. */
  cfg.hr = orr__hostres_new(vm->eng->policy, ORR_HR_BOOT, true);
  if (cfg.hr == NULL)
    return orr_error_set(e, ORR_ENOMEM, "out of memory");
  rc = orr__qemu_argv(vm->doc, &cfg, &argv, &layout, e);
  orr__hostres_free(cfg.hr);
  if (rc != 0)
    return rc;
  vm->argv = argv;
  vm->layout = layout;
  orr__vm_log(vm, "argv", json_incref(argv));
  orr__vm_launched(vm, 0, NULL);
  return 0;
}

static void exit_later(void *arg) {
  orr_vm *vm = arg;
  orr__vm_exited(vm, 0, 0, "quit");
}

static void reply_later(void *p) {
  plan_reply *r = p;
  orr_vm *vm = r->vm;
  const char *status = vm->state == ORR_VM_RUNNING  ? "running"
                       : vm->state == ORR_VM_PAUSED ? "paused"
                                                    : "prelaunch";
  json_t *result = strcmp(r->cmd, "query-status") == 0
                       ? json_pack("{s:s, s:b}", "status", status, "running",
                                   vm->state == ORR_VM_RUNNING)
                   : strcmp(r->cmd, "query-migrate") == 0
                       ? json_pack("{s:s}", "status", "completed")
                       : json_object();
  if (vm->exited) {
    r->cb(r->arg, ORR_EVMGONE, NULL, "the VM process is gone");
  } else {
    r->cb(r->arg, 0, result, "");
    /* Events a QEMU with a cooperative guest would send next. */
    if (strcmp(r->cmd, "cont") == 0) {
      orr__qemu_event(vm, "RESUME", NULL);
    } else if (strcmp(r->cmd, "stop") == 0) {
      orr__qemu_event(vm, "STOP", NULL);
    } else if (strcmp(r->cmd, "device_del") == 0) {
      json_t *ev =
          json_pack("{s:O?}", "device", json_object_get(r->args, "id"));
      orr__qemu_event(vm, "DEVICE_DELETED", ev);
      json_decref(ev);
    } else if (strcmp(r->cmd, "quit") == 0 ||
               strcmp(r->cmd, "system_powerdown") == 0) {
      orr__defer(vm->eng, exit_later, vm);
    }
  }
  json_decref(result);
  json_decref(r->args);
  free(r);
}

static int plan_reply_to(orr_vm *vm, const char *cmd, json_t *args,
                         orr_qmp_reply_cb cb, void *arg) {
  plan_reply *r = calloc(1, sizeof *r);
  r->vm = vm;
  r->cb = cb ? cb : NULL;
  r->arg = arg;
  snprintf(r->cmd, sizeof r->cmd, "%s", cmd);
  r->args = args ? args : json_object();
  if (cb == NULL) {
    json_decref(r->args);
    free(r);
    return 0;
  }
  orr__defer(vm->eng, reply_later, r);
  return 0;
}

/* An obedient QEMU answers at once: the deadline and the late callback
** never come into play. */
static int plan_send(orr_vm *vm, const char *cmd, json_t *args,
                     uint64_t timeout_ms, orr_qmp_reply_cb cb,
                     orr_qmp_reply_cb late, void *arg) {
  json_t *entry = json_pack("{s:s}", "execute", cmd);
  (void)timeout_ms, (void)late;
  if (args)
    json_object_set(entry, "arguments", args);
  orr__vm_log(vm, "qmp", entry);
  return plan_reply_to(vm, cmd, args, cb, arg);
}

/* Recorded with "fd": true where the qemu backend passes a descriptor. */
static int plan_send_fd(orr_vm *vm, const char *cmd, json_t *args, int fd,
                        uint64_t timeout_ms, orr_qmp_reply_cb cb,
                        orr_qmp_reply_cb late, void *arg) {
  json_t *logged = json_pack("{s:s, s:b}", "execute", cmd, "fd", 1);
  (void)timeout_ms, (void)late;
  if (fd >= 0)
    close(fd);
  if (args)
    json_object_set(logged, "arguments", args);
  orr__vm_log(vm, "qmp", logged);
  return plan_reply_to(vm, cmd, args, cb, arg);
}

static void kill_later(void *arg) {
  orr__vm_exited(arg, 0, 9, NULL);
}

static void plan_kill(orr_vm *vm) {
  orr__defer(vm->eng, kill_later, vm);
}

static void release_later(void *arg) {
  orr__vm_released(arg);
}

static void plan_release(orr_vm *vm) {
  orr__defer(vm->eng, release_later, vm);
}

/* What the qemu backend would set: recorded. */
static int plan_cpu_limits(orr_vm *vm, const json_t *limits, long long cpus,
                           orr_error *e) {
  (void)cpus;
  if (json_object_get(limits, "MaximumFrequencyMHz"))
    return orr_error_set(e, ORR_ENOTSUP,
                         "MaximumFrequencyMHz has no equivalent for a QEMU "
                         "process");
  orr__vm_log(vm, "cgroup", json_deep_copy(limits));
  return 0;
}

/* A dry run has nothing to re-attach to, and keeps no runtime files. */
const orr_backend orr__backend_plan = {
    .name = "plan",
    .dry_run = true,
    .launch = plan_launch,
    .send = plan_send,
    .send_fd = plan_send_fd,
    .verb = orr__qemu_verb,
    .save = orr__qemu_save,
    .raw = orr__qemu_raw,
    .plan_change = orr__qemu_plan_change,
    .commit = orr__qemu_commit,
    .abandon = orr__qemu_abandon,
    .device_gone = orr__qemu_device_gone,
    .cpu_limits = plan_cpu_limits,
    .guest_socket = orr__qemu_guest_socket,
    .kill = plan_kill,
    .release = plan_release,
};

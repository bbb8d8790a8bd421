/*
** A qemu VM's state on disk, so another engine process can re-attach
** (orrery.open): the live document, the translation layout (root ports),
** pending unplugs and identity, in <run_dir>/state.json (0600, replaced
** atomically on every committed change).
*/
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vm_internal.h"

#define STATE_FILE "state.json"

static json_t *unplugs_json(const orr_vm *vm) {
  json_t *a = json_array();
  for (orr_unplug *u = vm->unplugs; u; u = u->next)
    json_array_append_new(
        a, json_pack("{s:s, s:s, s:O?, s:O?, s:s}", "qdev", u->qdev, "resource",
                     u->resource, "after", u->after, "data", u->data, "commit",
                     u->commit == orr__commit_remove_share ? "share" : "path"));
  return a;
}

void orr__vm_persist(orr_vm *vm) {
  char path[512], tmp[520], *text;
  json_t *st;
  size_t len;
  int fd;
  if (vm->backend != &orr__backend_qemu || vm->exited)
    return;
  st = json_pack("{s:s, s:s, s:s, s:I, s:i, s:O, s:O, s:O, s:o}", "Id", vm->id,
                 "RuntimeId", vm->runtime_id, "Accel", vm->accel, "BootMB",
                 (json_int_t)vm->boot_mb, "ProcessId", vm->pid, "Document",
                 vm->doc, "Layout", vm->layout, "Plan9Index", vm->p9_index,
                 "Unplugs", unplugs_json(vm));
  snprintf(path, sizeof path, "%s/" STATE_FILE, vm->run_dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  /* One write of the whole text (json_dumpfd writes a byte at a time), and
  ** no fsync: the file must survive the engine, not the machine, and this
  ** runs after every committed change. */
  text = json_dumps(st, JSON_COMPACT);
  json_decref(st);
  if (text == NULL)
    return;
  len = strlen(text);
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd >= 0) {
    if (write(fd, text, len) == (ssize_t)len) {
      close(fd);
      rename(tmp, path);
    } else {
      close(fd);
      unlink(tmp);
    }
  }
  free(text);
}

void orr__vm_unpersist(orr_vm *vm) {
  char path[512];
  snprintf(path, sizeof path, "%s/" STATE_FILE, vm->run_dir);
  unlink(path);
}

/* Rebuilds the pending unplugs a previous engine was waiting on. */
static void restore_unplugs(orr_vm *vm, json_t *list) {
  size_t i;
  json_t *u;
  json_array_foreach(list, i, u) {
    orr_unplug *p = calloc(1, sizeof *p);
    const char *commit = json_string_value(json_object_get(u, "commit"));
    p->qdev = strdup(json_string_value(json_object_get(u, "qdev")));
    p->resource = strdup(json_string_value(json_object_get(u, "resource")));
    p->after = json_incref(json_object_get(u, "after"));
    p->data = json_incref(json_object_get(u, "data"));
    p->commit = commit && strcmp(commit, "share") == 0
                    ? orr__commit_remove_share
                    : orr__commit_path;
    p->next = vm->unplugs;
    vm->unplugs = p;
  }
}

int orr_vm_open(orr_engine *eng, const char *id, const orr_vm_options *opts,
                orr_vm_cb cb, void *arg, orr_vm **out, orr_error *e) {
  char dir[400], path[512];
  json_t *st;
  json_error_t je;
  orr_vm *vm;
  int pid, rc;
  for (orr_vm *o = eng->vms; o; o = o->next)
    if (!o->closed && strcmp(o->id, id) == 0)
      return orr_error_set(
          e, ORR_EBUSY, "open: VM \"%s\" is already open in this process", id);
  if (opts && opts->runtime_dir)
    snprintf(dir, sizeof dir, "%s", opts->runtime_dir);
  else
    snprintf(dir, sizeof dir, "%s/%s", eng->runtime_root, id);
  snprintf(path, sizeof path, "%s/" STATE_FILE, dir);
  st = json_load_file(path, 0, &je);
  if (st == NULL)
    return orr_error_set(e, ORR_ENOENT,
                         "open: no VM \"%s\" to re-attach to (%s: %s); only "
                         "qemu VMs created with "
                         "ShouldTerminateOnLastHandleClosed = false outlive "
                         "their engine",
                         id, path, je.text);
  pid = (int)json_integer_value(json_object_get(st, "ProcessId"));
  if (pid <= 0 || kill(pid, 0) != 0) {
    json_decref(st);
    return orr_error_set(e, ORR_ENOENT,
                         "open: VM \"%s\" is not running (QEMU pid %d is "
                         "gone; its runtime directory %s is stale)",
                         id, pid, dir);
  }
  vm = calloc(1, sizeof *vm);
  vm->eng = eng;
  vm->backend = &orr__backend_qemu;
  snprintf(vm->id, sizeof vm->id, "%s", id);
  snprintf(vm->run_dir, sizeof vm->run_dir, "%s", dir);
  snprintf(vm->runtime_id, sizeof vm->runtime_id, "%s",
           json_string_value(json_object_get(st, "RuntimeId")));
  snprintf(vm->accel, sizeof vm->accel, "%s",
           json_string_value(json_object_get(st, "Accel")));
  vm->boot_mb = json_integer_value(json_object_get(st, "BootMB"));
  vm->doc = json_incref(json_object_get(st, "Document"));
  vm->layout = json_incref(json_object_get(st, "Layout"));
  vm->p9_index = json_incref(json_object_get(st, "Plan9Index"));
  vm->plan_log = json_array();
  vm->reserved = json_object();
  vm->pid = pid;
  orr_vm_options_init(&vm->opts);
  vm->opts.backend = vm->opts.accel = NULL;
  vm->opts.timeout_ms = opts ? opts->timeout_ms : 0; /* the QMP handshake's */
  vm->opts.guest_agent =
      json_string_value(json_object_get(vm->layout, "qga")) != NULL;
  vm->create_cb = cb;
  vm->create_arg = arg;
  vm->state = ORR_VM_CREATING;
  restore_unplugs(vm, json_object_get(st, "Unplugs"));
  json_decref(st);
  if ((rc = orr__qemu_attach(vm, e)) != 0) {
    orr_error_prefix(e, "open");
    vm->released = true;
    vm->next = NULL;
    /* Not linked yet: free directly. */
    json_decref(vm->doc);
    json_decref(vm->layout);
    json_decref(vm->p9_index);
    json_decref(vm->plan_log);
    json_decref(vm->reserved);
    while (vm->unplugs) {
      orr_unplug *u = vm->unplugs;
      vm->unplugs = u->next;
      json_decref(u->after);
      json_decref(u->data);
      free(u->qdev);
      free(u->resource);
      free(u);
    }
    free(vm);
    return rc;
  }
  vm->next = eng->vms;
  eng->vms = vm;
  *out = vm;
  return 0;
}

/*
** External disk snapshots and their commit (orrery/vm.h): the checks and
** the bookkeeping. The backend makes the overlays and plans the steps
** (backend->disk_snapshot, disk_commit); the live document's attachment
** Path always names the disk's top image.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orrery/document.h"
#include "vm_internal.h"

#define SNAP_TIMEOUT_MS 10000
#define COMMIT_TIMEOUT_MS 300000

static void resource_path(char *buf, size_t size, int ctrl, int lun) {
  snprintf(buf, size, "VirtualMachine/Devices/Scsi/%s/Attachments/%d",
           orr_scsi_controller_guid(ctrl), lun);
}

/* Holds the disk while the change is in flight; the request's own reserve
** names the first, data "held" every one (given back at the end). */
static int hold(orr_req *r, int ctrl, int lun, orr_error *e) {
  char path[160];
  resource_path(path, sizeof path, ctrl, lun);
  if (json_object_get(r->vm->reserved, path))
    return orr_error_set(e, ORR_EBUSY,
                         "%s: another change to this disk is in flight", path);
  json_object_set_new(r->vm->reserved, path, json_true());
  if (r->reserve == NULL)
    r->reserve = strdup(path);
  else
    json_array_append_new(json_object_get(r->data, "held"), json_string(path));
  return 0;
}

static bool usable(orr_req *r, const char *op) {
  orr_vm *vm = r->vm;
  if (vm->exited ||
      (vm->state != ORR_VM_RUNNING && vm->state != ORR_VM_PAUSED)) {
    orr__req_fail(r, vm->exited ? ORR_EVMGONE : ORR_ESTATE, "%s: VM %s is %s",
                  op, vm->id, orr_vm_state(vm));
    return false;
  }
  if (vm->backend->disk_snapshot == NULL || vm->backend->disk_commit == NULL) {
    orr__req_fail(r, ORR_ENOTSUP, "%s: the %s backend takes no disk snapshots",
                  op, vm->backend->name);
    return false;
  }
  return true;
}

static uint64_t timeout_of(const json_t *options, uint64_t dflt) {
  json_int_t ms = json_integer_value(json_object_get(options, "timeout_ms"));
  return ms > 0 ? (uint64_t)ms : dflt;
}

static void abandon_snapshot(orr_req *r) {
  orr__snapshot_release_held(r);
  if (r->vm->backend->abandon != NULL)
    r->vm->backend->abandon(r->vm, r->data);
}

/* The name of the field that gave disk key's overlay, for errors: the
** options of vm:snapshot_disk, or the map of vm:snapshot_disks. */
static const char *field(char *buf, size_t size, bool single, const char *key) {
  if (single)
    snprintf(buf, size, "snapshot_disk: options.overlay");
  else
    snprintf(buf, size, "snapshot_disks: disks[\"%s\"]", key);
  return buf;
}

static void snapshot(orr_vm *vm, const json_t *disks, const json_t *options,
                     bool single, orr_vm_cb cb, void *arg) {
  orr_req *r = orr__req_new(vm, cb, arg);
  char f[96];
  json_t *list = json_array(), *v, *plan = NULL;
  orr_error e = {0, ""};
  const char *key;
  int rc = 0;
  r->data = json_pack("{s:o, s:[]}", "disks", list, "held");
  if (!usable(r, "snapshot"))
    return;
  if (!json_is_object(disks) || json_object_size(disks) == 0) {
    orr__req_fail(r, ORR_EINVAL,
                  "snapshot_disks: disks must map \"<controller>-<lun>\" to "
                  "an overlay path");
    return;
  }
  json_object_foreach((json_t *)disks, key, v) {
    int ctrl = -1, lun = -1, n = 0;
    json_t *att;
    const char *ov = json_string_value(v);
    if (sscanf(key, "%d-%d%n", &ctrl, &lun, &n) != 2 || key[n] != '\0') {
      rc = orr_error_set(&e, ORR_EINVAL,
                         "snapshot_disks: disks[\"%s\"]: keys are "
                         "\"<controller>-<lun>\"",
                         key);
      break;
    }
    if ((att = orr__snapshot_attachment(vm, ctrl, lun)) == NULL) {
      rc = orr_error_set(
          &e, ORR_ENOENT, "%s: no SCSI attachment at controller %d LUN %d",
          single ? "snapshot_disk" : "snapshot_disks", ctrl, lun);
      break;
    }
    if (json_is_true(json_object_get(att, "ReadOnly"))) {
      rc = orr_error_set(&e, ORR_EINVAL,
                         "%s: disk %s is ReadOnly: nothing to take a "
                         "snapshot of",
                         single ? "snapshot_disk" : "snapshot_disks", key);
      break;
    }
    if (ov == NULL || ov[0] != '/') {
      rc = orr_error_set(&e, ORR_EINVAL,
                         "%s: must be the absolute path of a new overlay "
                         "file (a raw image has no snapshots of its own)",
                         field(f, sizeof f, single, key));
      break;
    }
    if ((rc = hold(r, ctrl, lun, &e)) != 0)
      break;
    json_array_append_new(
        list, json_pack("{s:i, s:i, s:O, s:s, s:s}", "ctrl", ctrl, "lun", lun,
                        "top", json_object_get(att, "Path"), "overlay", ov,
                        "field", field(f, sizeof f, single, key)));
  }
  if (rc == 0)
    rc = vm->backend->disk_snapshot(vm, list, r->data, &plan, &e);
  if (rc != 0) {
    orr__snapshot_release_held(r);
    orr__req_fail(r, e.code, "%s", e.msg);
    return;
  }
  r->plan = plan;
  r->commit = orr__commit_snapshot;
  r->journal = true; /* a run-time change: journaled when the VM keeps state */
  r->abandon = abandon_snapshot;
  r->timeout_ms = timeout_of(options, SNAP_TIMEOUT_MS);
  orr__req_run(r);
}

void orr_vm_snapshot_disks(orr_vm *vm, const json_t *disks,
                           const json_t *options, orr_vm_cb cb, void *arg) {
  snapshot(vm, disks, options, false, cb, arg);
}

void orr_vm_snapshot_disk(orr_vm *vm, int controller, int lun,
                          const json_t *options, orr_vm_cb cb, void *arg) {
  char key[16];
  json_t *one = json_object();
  json_t *ov = json_object_get(options, "overlay");
  if (!json_is_string(ov)) {
    orr_req *r = orr__req_new(vm, cb, arg);
    json_decref(one);
    orr__req_fail(r, ORR_EINVAL,
                  "snapshot_disk: options.overlay: must be the absolute path "
                  "of a new overlay file (a raw image has no snapshots of its "
                  "own)");
    return;
  }
  snprintf(key, sizeof key, "%d-%d", controller, lun);
  json_object_set(one, key, ov);
  snapshot(vm, one, options, true, cb, arg);
  json_decref(one);
}

void orr_vm_commit_disk(orr_vm *vm, int controller, int lun,
                        const json_t *options, orr_vm_cb cb, void *arg) {
  orr_req *r = orr__req_new(vm, cb, arg);
  orr_error e = {0, ""};
  r->data =
      json_pack("{s:i, s:i, s:[]}", "ctrl", controller, "lun", lun, "held");
  if (!usable(r, "commit_disk"))
    return;
  if (orr__snapshot_attachment(vm, controller, lun) == NULL) {
    orr__req_fail(r, ORR_ENOENT,
                  "commit_disk: no SCSI attachment at controller %d LUN %d",
                  controller, lun);
    return;
  }
  if (hold(r, controller, lun, &e) != 0 ||
      vm->backend->disk_commit(r, controller, lun, r->data, &e) != 0) {
    orr__req_fail(r, e.code, "%s", e.msg);
    return;
  }
  r->commit = orr__commit_disk_merge;
  r->journal = true;
  r->timeout_ms = timeout_of(options, COMMIT_TIMEOUT_MS);
  orr__req_run(r);
}

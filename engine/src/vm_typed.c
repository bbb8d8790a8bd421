/*
** Typed run-time changes for C users: each builds the ModifySettingRequest
** hcsshim would send for it and hands it to orr_vm_modify(), so there is one
** request path (validation, undo, journal, deadlines) whatever the caller
** wrote. An argument that cannot even name a resource (a controller outside
** 0..3, a NULL GUID or settings) fails through the callback like any other
** refusal: the callback contract of vm.h holds for every call.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orrery/document.h"
#include "vm_internal.h"

#define VPCI_PATH "VirtualMachine/Devices/VirtualPci"
#define NIC_PATH "VirtualMachine/Devices/NetworkAdapters"
#define PLAN9_PATH "VirtualMachine/Devices/Plan9/Shares"
#define MEMORY_PATH "VirtualMachine/ComputeTopology/Memory/SizeInMB"
#define LIMITS_PATH "VirtualMachine/ComputeTopology/Processor/Limits"

/* Fails the call from the loop, with the message naming op and the rule. */
static void refuse(orr_vm *vm, orr_vm_cb cb, void *arg, const char *op,
                   const char *why) {
  orr_req *r = orr__req_new(vm, cb, arg);
  orr__req_fail(r, ORR_EINVAL, "%s: %s", op, why);
}

/* Builds {ResourcePath, RequestType?, Settings?} and runs it; settings is
** copied (the caller keeps its reference). */
static void run(orr_vm *vm, const char *path, const char *type,
                json_t *settings, uint64_t timeout_ms, orr_vm_cb cb,
                void *arg) {
  json_t *req = json_object(), *opts = NULL;
  json_object_set_new(req, "ResourcePath", json_string(path));
  if (type != NULL)
    json_object_set_new(req, "RequestType", json_string(type));
  if (settings != NULL)
    json_object_set_new(req, "Settings", settings);
  if (timeout_ms != 0)
    opts = json_pack("{s:I}", "timeout_ms", (json_int_t)timeout_ms);
  orr_vm_modify(vm, req, opts, cb, arg);
  json_decref(req);
  json_decref(opts);
}

static json_t *copy(const json_t *v) {
  return json_deep_copy(v);
}

static int scsi_path(char *buf, size_t size, int controller, int lun) {
  if (controller < 0 || controller >= ORR_SCSI_CONTROLLERS)
    return -1;
  snprintf(buf, size, "VirtualMachine/Devices/Scsi/%s/Attachments/%d",
           orr_scsi_controller_guid(controller), lun);
  return 0;
}

void orr_vm_add_scsi_disk(orr_vm *vm, int controller, int lun,
                          const json_t *attachment, uint64_t timeout_ms,
                          orr_vm_cb cb, void *arg) {
  char path[160];
  if (scsi_path(path, sizeof path, controller, lun) != 0)
    return refuse(vm, cb, arg, "add_scsi_disk", "controller must be in 0..3");
  if (!json_is_object(attachment))
    return refuse(vm, cb, arg, "add_scsi_disk",
                  "attachment must be a JSON object");
  run(vm, path, "Add", copy(attachment), timeout_ms, cb, arg);
}

void orr_vm_remove_scsi_disk(orr_vm *vm, int controller, int lun,
                             uint64_t timeout_ms, orr_vm_cb cb, void *arg) {
  char path[160];
  if (scsi_path(path, sizeof path, controller, lun) != 0)
    return refuse(vm, cb, arg, "remove_scsi_disk",
                  "controller must be in 0..3");
  run(vm, path, "Remove", NULL, timeout_ms, cb, arg);
}

/* "<prefix>/<guid>" with the settings the type needs (NULL: none). */
static void by_guid(orr_vm *vm, const char *op, const char *prefix,
                    const char *guid, const char *type, const json_t *settings,
                    bool need_settings, uint64_t timeout_ms, orr_vm_cb cb,
                    void *arg) {
  char path[256];
  if (guid == NULL)
    return refuse(vm, cb, arg, op, "guid must not be NULL");
  if (strlen(guid) > 64)
    return refuse(vm, cb, arg, op, "guid must be a GUID (36 characters)");
  if (need_settings && !json_is_object(settings))
    return refuse(vm, cb, arg, op, "settings must be a JSON object");
  snprintf(path, sizeof path, "%s/%s", prefix, guid);
  run(vm, path, type, need_settings ? copy(settings) : NULL, timeout_ms, cb,
      arg);
}

void orr_vm_add_vpci_device(orr_vm *vm, const char *guid, const json_t *device,
                            uint64_t timeout_ms, orr_vm_cb cb, void *arg) {
  by_guid(vm, "add_vpci_device", VPCI_PATH, guid, "Add", device, true,
          timeout_ms, cb, arg);
}

void orr_vm_remove_vpci_device(orr_vm *vm, const char *guid,
                               uint64_t timeout_ms, orr_vm_cb cb, void *arg) {
  by_guid(vm, "remove_vpci_device", VPCI_PATH, guid, "Remove", NULL, false,
          timeout_ms, cb, arg);
}

void orr_vm_add_nic(orr_vm *vm, const char *guid, const json_t *adapter,
                    uint64_t timeout_ms, orr_vm_cb cb, void *arg) {
  by_guid(vm, "add_nic", NIC_PATH, guid, "Add", adapter, true, timeout_ms, cb,
          arg);
}

void orr_vm_update_nic(orr_vm *vm, const char *guid, const json_t *adapter,
                       uint64_t timeout_ms, orr_vm_cb cb, void *arg) {
  by_guid(vm, "update_nic", NIC_PATH, guid, "Update", adapter, true, timeout_ms,
          cb, arg);
}

void orr_vm_remove_nic(orr_vm *vm, const char *guid, uint64_t timeout_ms,
                       orr_vm_cb cb, void *arg) {
  by_guid(vm, "remove_nic", NIC_PATH, guid, "Remove", NULL, false, timeout_ms,
          cb, arg);
}

/* Plan9 add and remove both carry the share as Settings (hcsshim). */
static void plan9(orr_vm *vm, const char *op, const char *type,
                  const json_t *share, uint64_t timeout_ms, orr_vm_cb cb,
                  void *arg) {
  if (!json_is_object(share))
    return refuse(vm, cb, arg, op, "share must be a JSON object");
  run(vm, PLAN9_PATH, type, copy(share), timeout_ms, cb, arg);
}

void orr_vm_add_plan9_share(orr_vm *vm, const json_t *share,
                            uint64_t timeout_ms, orr_vm_cb cb, void *arg) {
  plan9(vm, "add_plan9_share", "Add", share, timeout_ms, cb, arg);
}

void orr_vm_remove_plan9_share(orr_vm *vm, const json_t *share,
                               uint64_t timeout_ms, orr_vm_cb cb, void *arg) {
  plan9(vm, "remove_plan9_share", "Remove", share, timeout_ms, cb, arg);
}

/* Resource updates carry no RequestType, as in hcsshim. */
void orr_vm_update_cpu_limits(orr_vm *vm, const json_t *limits,
                              uint64_t timeout_ms, orr_vm_cb cb, void *arg) {
  if (!json_is_object(limits))
    return refuse(vm, cb, arg, "update_cpu_limits",
                  "limits must be a JSON object");
  run(vm, LIMITS_PATH, NULL, copy(limits), timeout_ms, cb, arg);
}

void orr_vm_update_memory(orr_vm *vm, uint64_t size_mb, uint64_t timeout_ms,
                          orr_vm_cb cb, void *arg) {
  if (size_mb > (uint64_t)INT64_MAX)
    return refuse(vm, cb, arg, "update_memory", "size_mb is too large");
  run(vm, MEMORY_PATH, NULL, json_integer((json_int_t)size_mb), timeout_ms, cb,
      arg);
}

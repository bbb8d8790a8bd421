/*
** The builder. Each operation copies the document, changes the copy, checks
** the cross-field rules and swaps the copy in: a failure can never leave
** half an operation behind.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orrery/builder.h"
#include "schema.h"

struct orr_builder {
  json_t *doc;
};

static json_t *devices(const json_t *doc, const char *key) {
  return json_object_get(
      json_object_get(json_object_get(doc, "VirtualMachine"), "Devices"), key);
}

/* Prefixes e->msg with the operation name, as every builder error is. */
static int with_op(orr_error *e, const char *op, int rc) {
  if (rc != 0)
    orr_error_prefix(e, op);
  return rc;
}

/* Object at a key path under root, created when missing (on the copy). */
static json_t *obj_at(json_t *root, const char *const *keys) {
  json_t *cur = root;
  for (; *keys; keys++) {
    json_t *next = json_object_get(cur, *keys);
    if (next == NULL) {
      next = json_object();
      json_object_set_new(cur, *keys, next);
    }
    cur = next;
  }
  return cur;
}

static int finish(orr_builder *b, json_t *next, const char *op, int rc,
                  orr_error *e) {
  if (rc == 0)
    rc = orr_doc_rules(next, 0, e);
  if (rc != 0) {
    json_decref(next);
    return with_op(e, op, rc);
  }
  json_decref(b->doc);
  b->doc = next;
  return 0;
}

/*
** Merges the fields of patch into the object at `where`, refusing any
** field that an earlier operation already set: hcsshim's setters replace
** whole groups and silently drop what other setters wrote.
*/
static int merge_once(orr_builder *b, const char *op, const char *const *where,
                      const char *where_text, const orr_type *type,
                      const json_t *arg, orr_error *e) {
  json_t *patch = NULL, *next, *target, *val;
  const char *key;
  int rc = orr__schema_normalize(type, arg, "", &patch, e);
  if (rc != 0)
    return with_op(e, op, rc);
  next = json_deep_copy(b->doc);
  target = obj_at(next, where);
  json_object_foreach(patch, key, val) {
    json_t *old = json_object_get(target, key);
    if (old != NULL) {
      char brief[80];
      orr__json_brief(old, brief, sizeof brief);
      rc = orr_error_set(e, ORR_EEXIST,
                         "%s.%s is already set (to %s); a builder sets each "
                         "field once, so build from a changed document "
                         "instead (orrery.builder_from)",
                         where_text, key, brief);
      break;
    }
    json_object_set(target, key, val);
  }
  json_decref(patch);
  return finish(b, next, op, rc, e);
}

int orr_builder_new(const char *owner, const json_t *options, orr_builder **out,
                    orr_error *e) {
  orr_builder *b;
  json_t *doc = orr_doc_new(owner);
  const char *key;
  json_t *val;
  json_object_foreach((json_t *)options, key, val) {
    json_t *dst = doc;
    if (strcmp(key, "StopOnReset") == 0)
      dst = json_object_get(doc, "VirtualMachine");
    else if (strcmp(key, "ShouldTerminateOnLastHandleClosed") != 0) {
      json_decref(doc);
      return orr_error_set(e, ORR_EINVAL,
                           "builder: option %s is not known (Owner, "
                           "ShouldTerminateOnLastHandleClosed, StopOnReset)",
                           key);
    }
    if (!json_is_boolean(val)) {
      json_decref(doc);
      return orr_error_set(e, ORR_EINVAL, "builder: %s must be a boolean", key);
    }
    json_object_set(dst, key, val);
  }
  b = calloc(1, sizeof *b);
  b->doc = doc;
  *out = b;
  return 0;
}

int orr_builder_from_doc(const json_t *doc, orr_builder **out, orr_error *e) {
  json_t *norm = NULL;
  int rc = orr_doc_check(doc, &norm, e);
  orr_builder *b;
  if (rc != 0)
    return with_op(e, "builder_from", rc);
  b = calloc(1, sizeof *b);
  b->doc = norm;
  *out = b;
  return 0;
}

void orr_builder_free(orr_builder *b) {
  if (b == NULL)
    return;
  json_decref(b->doc);
  free(b);
}

const json_t *orr_builder_doc(const orr_builder *b) {
  return b->doc;
}

int orr_builder_check(const orr_builder *b, orr_error *e) {
  json_t *norm = NULL;
  int rc = orr_doc_check(b->doc, &norm, e);
  json_decref(norm);
  return rc;
}

#define TOPO(k)                                                                \
  ((const char *const[]){"VirtualMachine", "ComputeTopology", k, NULL})

int orr_builder_set_memory(orr_builder *b, const json_t *memory, orr_error *e) {
  return merge_once(b, "set_memory", TOPO("Memory"), "ComputeTopology.Memory",
                    &orr__t_memory, memory, e);
}

int orr_builder_set_processor(orr_builder *b, const json_t *processor,
                              orr_error *e) {
  return merge_once(b, "set_processor", TOPO("Processor"),
                    "ComputeTopology.Processor", &orr__t_processor, processor,
                    e);
}

/*
** Puts value (owned) at where.key on a copy of the document, refusing a key
** that is already there: the one rule every add and set shares.
*/
static int put_once(orr_builder *b, const char *op, const char *const *where,
                    const char *where_text, const char *key, json_t *value,
                    int code_if_set, orr_error *e) {
  json_t *next = json_deep_copy(b->doc);
  json_t *target = obj_at(next, where);
  json_t *old = json_object_get(target, key);
  int rc = 0;
  if (old != NULL) {
    char brief[80];
    orr__json_brief(old, brief, sizeof brief);
    rc = orr_error_set(e, code_if_set,
                       "%s.%s is already set (to %s); a builder sets each "
                       "field once",
                       where_text, key, brief);
    json_decref(value);
  } else {
    json_object_set_new(target, key, value);
  }
  return finish(b, next, op, rc, e);
}

/* Normalizes arg as type and puts it at where.key once. */
static int merge_wrapped(orr_builder *b, const char *op,
                         const char *const *where, const char *where_text,
                         const char *key, const orr_type *type,
                         const json_t *arg, orr_error *e) {
  json_t *norm = NULL;
  int rc = orr__schema_normalize(type, arg, "", &norm, e);
  if (rc != 0)
    return with_op(e, op, rc);
  return put_once(b, op, where, where_text, key, norm, ORR_EEXIST, e);
}

int orr_builder_set_cpu_group(orr_builder *b, const json_t *group,
                              orr_error *e) {
  return merge_wrapped(b, "set_cpu_group", TOPO("Processor"),
                       "ComputeTopology.Processor", "CpuGroup",
                       &orr__t_cpu_group, group, e);
}

int orr_builder_set_numa(orr_builder *b, const json_t *numa, orr_error *e) {
  return merge_wrapped(
      b, "set_numa",
      (const char *const[]){"VirtualMachine", "ComputeTopology", NULL},
      "ComputeTopology", "Numa", &orr__t_numa, numa, e);
}

int orr_builder_set_numa_processors(orr_builder *b, const json_t *settings,
                                    orr_error *e) {
  return merge_wrapped(b, "set_numa_processors", TOPO("Processor"),
                       "ComputeTopology.Processor", "NumaProcessorsSettings",
                       &orr__t_numa_processors, settings, e);
}

#define CHIPSET ((const char *const[]){"VirtualMachine", "Chipset", NULL})
#define DEVICES(k) ((const char *const[]){"VirtualMachine", "Devices", k, NULL})

int orr_builder_set_uefi_boot(orr_builder *b, const json_t *boot_entry,
                              orr_error *e) {
  json_t *norm = NULL;
  int rc =
      orr__schema_normalize(&orr__t_uefi_boot_entry, boot_entry, "", &norm, e);
  if (rc != 0)
    return with_op(e, "set_uefi_boot", rc);
  return put_once(b, "set_uefi_boot", CHIPSET, "Chipset", "Uefi",
                  json_pack("{s:o}", "BootThis", norm), ORR_EEXIST, e);
}

int orr_builder_set_linux_kernel_direct_boot(orr_builder *b,
                                             const json_t *options,
                                             orr_error *e) {
  return merge_wrapped(b, "set_linux_kernel_direct_boot", CHIPSET, "Chipset",
                       "LinuxKernelDirect", &orr__t_linux_kernel_direct,
                       options, e);
}

int orr_builder_set_storage_qos(orr_builder *b, const json_t *qos,
                                orr_error *e) {
  return merge_wrapped(
      b, "set_storage_qos", (const char *const[]){"VirtualMachine", NULL},
      "VirtualMachine", "StorageQoS", &orr__t_storage_qos, qos, e);
}

int orr_builder_add_scsi_controller(orr_builder *b, long long index,
                                    orr_error *e) {
  const char *guid = orr_scsi_controller_guid((int)index);
  if (guid == NULL || index != (int)index)
    return orr_error_set(e, ORR_EINVAL,
                         "add_scsi_controller: controller must be an integer "
                         "in 0..3, got %lld",
                         index);
  if (json_object_get(devices(b->doc, "Scsi"), guid))
    return orr_error_set(e, ORR_EEXIST,
                         "add_scsi_controller: controller %lld (%s) is "
                         "already added; adding it again would drop its "
                         "attachments",
                         index, guid);
  return put_once(b, "add_scsi_controller", DEVICES("Scsi"), "Devices.Scsi",
                  guid, json_pack("{s:{}}", "Attachments"), ORR_EEXIST, e);
}

int orr_builder_add_scsi_disk(orr_builder *b, long long controller,
                              long long lun, const json_t *attachment,
                              orr_error *e) {
  const char *guid = orr_scsi_controller_guid((int)controller);
  json_t *norm = NULL;
  char lunkey[24];
  int rc;
  if (guid == NULL || controller != (int)controller)
    return orr_error_set(e, ORR_EINVAL,
                         "add_scsi_disk: controller must be an integer in "
                         "0..3, got %lld",
                         controller);
  if (lun < 0 || lun >= ORR_SCSI_LUNS)
    return orr_error_set(e, ORR_EINVAL,
                         "add_scsi_disk: lun must be an integer in 0..63, "
                         "got %lld",
                         lun);
  if (!json_object_get(devices(b->doc, "Scsi"), guid))
    return orr_error_set(e, ORR_ENOENT,
                         "add_scsi_disk: controller %lld has not been added "
                         "(call add_scsi_controller(%lld) first)",
                         controller, controller);
  snprintf(lunkey, sizeof lunkey, "%lld", lun);
  json_t *used = json_object_get(
      json_object_get(json_object_get(devices(b->doc, "Scsi"), guid),
                      "Attachments"),
      lunkey);
  if (used != NULL)
    return orr_error_set(e, ORR_EEXIST,
                         "add_scsi_disk: controller %lld LUN %lld is already "
                         "used by %s; remove it first or pick a free LUN",
                         controller, lun,
                         json_string_value(json_object_get(used, "Path")));
  rc = orr__schema_normalize(&orr__t_attachment, attachment, "", &norm, e);
  if (rc != 0)
    return with_op(e, "add_scsi_disk", rc);
  rc = put_once(b, "add_scsi_disk",
                (const char *const[]){"VirtualMachine", "Devices", "Scsi", guid,
                                      "Attachments", NULL},
                "LUN", lunkey, norm, ORR_EEXIST, e);
  return rc;
}

int orr_builder_add_vpci_device(orr_builder *b, const char *vmbus_guid_in,
                                const json_t *device, orr_error *e) {
  const char *rule = orr__check_guid(vmbus_guid_in, strlen(vmbus_guid_in));
  char vmbus_guid[37];
  orr__guid_lower(vmbus_guid, vmbus_guid_in);
  if (rule != NULL)
    return orr_error_set(e, ORR_EINVAL,
                         "add_vpci_device: vmbus_guid %s, got \"%s\"", rule,
                         vmbus_guid_in);
  if (json_object_get(devices(b->doc, "VirtualPci"), vmbus_guid))
    return orr_error_set(e, ORR_EEXIST,
                         "add_vpci_device: VMBus GUID %s is already used by "
                         "another device; each device needs its own GUID",
                         vmbus_guid);
  return merge_wrapped(b, "add_vpci_device", DEVICES("VirtualPci"),
                       "Devices.VirtualPci", vmbus_guid, &orr__t_vpci_device,
                       device, e);
}

int orr_builder_add_vpmem_controller(orr_builder *b, long long maximum_count,
                                     long long maximum_size_bytes,
                                     orr_error *e) {
  json_t *arg =
      json_pack("{s:I, s:I}", "MaximumCount", (json_int_t)maximum_count,
                "MaximumSizeBytes", (json_int_t)maximum_size_bytes);
  int rc;
  /* Validated through the schema so the ranges live in one place. */
  json_object_set_new(arg, "Devices", json_object());
  rc =
      merge_wrapped(b, "add_vpmem_controller",
                    (const char *const[]){"VirtualMachine", "Devices", NULL},
                    "Devices", "VirtualPMem", &orr__t_vpmem_controller, arg, e);
  json_decref(arg);
  return rc;
}

int orr_builder_add_vpmem_device(orr_builder *b, long long id,
                                 const json_t *device, orr_error *e) {
  json_t *pm = devices(b->doc, "VirtualPMem"), *norm = NULL;
  json_int_t max = json_integer_value(json_object_get(pm, "MaximumCount"));
  char key[24];
  int rc;
  if (pm == NULL)
    return orr_error_set(e, ORR_ENOENT,
                         "add_vpmem_device: the VPMem controller has not been "
                         "added (call add_vpmem_controller first)");
  if (id < 0 || id >= max)
    return orr_error_set(e, ORR_EINVAL,
                         "add_vpmem_device: id must be an integer in 0..%lld "
                         "(below the controller's MaximumCount), got %lld",
                         (long long)max - 1, id);
  rc = orr__schema_normalize(&orr__t_vpmem_device, device, "", &norm, e);
  if (rc != 0)
    return with_op(e, "add_vpmem_device", rc);
  snprintf(key, sizeof key, "%lld", id);
  return put_once(b, "add_vpmem_device",
                  (const char *const[]){"VirtualMachine", "Devices",
                                        "VirtualPMem", "Devices", NULL},
                  "VirtualPMem.Devices", key, norm, ORR_EEXIST, e);
}

int orr_builder_add_vsmb(orr_builder *b, const json_t *settings, orr_error *e) {
  return merge_wrapped(b, "add_vsmb", DEVICES(NULL), "Devices", "VirtualSmb",
                       &orr__t_vsmb, settings, e);
}

/* Appends a normalized share to where.Shares; the rules refuse duplicates. */
static int append_share(orr_builder *b, const char *op,
                        const char *const *where, const orr_type *type,
                        const json_t *share, orr_error *e) {
  json_t *norm = NULL, *next, *list;
  int rc = orr__schema_normalize(type, share, "", &norm, e);
  if (rc != 0)
    return with_op(e, op, rc);
  next = json_deep_copy(b->doc);
  list = json_object_get(obj_at(next, where), "Shares");
  if (list == NULL) {
    list = json_array();
    json_object_set_new(obj_at(next, where), "Shares", list);
  }
  json_array_append_new(list, norm);
  return finish(b, next, op, 0, e);
}

int orr_builder_add_vsmb_share(orr_builder *b, const json_t *share,
                               orr_error *e) {
  if (devices(b->doc, "VirtualSmb") == NULL)
    return orr_error_set(e, ORR_ENOENT,
                         "add_vsmb_share: VSMB has not been added (call "
                         "add_vsmb first)");
  return append_share(b, "add_vsmb_share", DEVICES("VirtualSmb"),
                      &orr__t_vsmb_share, share, e);
}

int orr_builder_add_plan9_share(orr_builder *b, const json_t *share,
                                orr_error *e) {
  return append_share(b, "add_plan9_share", DEVICES("Plan9"),
                      &orr__t_plan9_share, share, e);
}

int orr_builder_set_serial_console(orr_builder *b, long long port,
                                   const char *listener_path, orr_error *e) {
  const char *rule;
  char key[24];
  if (port < 0 || port >= ORR_COM_PORTS)
    return orr_error_set(e, ORR_EINVAL,
                         "set_serial_console: port must be an integer in 0..3 "
                         "(0 is COM1), got %lld",
                         port);
  rule = orr__check_socket_path(listener_path, strlen(listener_path));
  if (rule != NULL)
    return orr_error_set(e, ORR_EINVAL,
                         "set_serial_console: listener path %s, got \"%s\"",
                         rule, listener_path);
  snprintf(key, sizeof key, "%lld", port);
  json_t *set = json_object_get(devices(b->doc, "ComPorts"), key);
  if (set != NULL)
    return orr_error_set(e, ORR_EEXIST,
                         "set_serial_console: COM%lld is already set to %s; "
                         "a builder sets each port once",
                         port + 1,
                         json_string_value(json_object_get(set, "NamedPipe")));
  return put_once(
      b, "set_serial_console", DEVICES("ComPorts"), "Devices.ComPorts", key,
      json_pack("{s:s}", "NamedPipe", listener_path), ORR_EEXIST, e);
}

int orr_builder_add_network_adapter(orr_builder *b, const char *nic_guid_in,
                                    const json_t *adapter, orr_error *e) {
  const char *rule = orr__check_guid(nic_guid_in, strlen(nic_guid_in));
  char nic_guid[37];
  orr__guid_lower(nic_guid, nic_guid_in);
  if (rule != NULL)
    return orr_error_set(e, ORR_EINVAL,
                         "add_network_adapter: nic id %s, got \"%s\"", rule,
                         nic_guid_in);
  if (json_object_get(devices(b->doc, "NetworkAdapters"), nic_guid))
    return orr_error_set(e, ORR_EEXIST,
                         "add_network_adapter: nic id %s is already used by "
                         "another adapter",
                         nic_guid);
  return merge_wrapped(b, "add_network_adapter", DEVICES("NetworkAdapters"),
                       "Devices.NetworkAdapters", nic_guid,
                       &orr__t_network_adapter, adapter, e);
}

int orr_builder_enable_graphics_console(orr_builder *b, orr_error *e) {
  static const char *const keys[] = {"Keyboard", "EnhancedModeVideo",
                                     "VideoMonitor"};
  json_t *next = json_deep_copy(b->doc);
  json_t *dev = obj_at(next, DEVICES(NULL));
  /* Enabling twice loses nothing, so it is not an error. */
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
    if (json_object_get(dev, keys[i]) == NULL)
      json_object_set_new(dev, keys[i], json_object());
  return finish(b, next, "enable_graphics_console", 0, e);
}

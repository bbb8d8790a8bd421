/*
** The builder. Each operation checks its argument against the schema, adds
** it to the live document while noting what it added, runs the cross-field
** rules the change can affect, and takes back what it added if any check
** refuses it: a failure never leaves half an operation behind, and nothing
** is copied on success.
*/
#include <stdlib.h>
#include <string.h>

#include "orrery/builder.h"
#include "schema.h"

struct orr_builder {
  json_t *doc;
  /* Fields set_memory and set_processor were given Go's zero value for:
  ** the document leaves them out (omitempty), but they were set, so a
  ** later call may not set them again. {"<where>": {"<field>": value}}. */
  json_t *zeros;
};

/*
** What an operation added to the live document, in order: a key it set
** (key != NULL) or an entry it appended to a list (key == NULL). Undoing
** removes them in reverse order, which restores the document exactly (keys
** the operation added were absent before; write-once never replaces one).
** Keys point to strings that outlive the operation.
*/
#define UNDO_MAX 24
typedef struct {
  struct {
    json_t *parent;
    const char *key;
  } step[UNDO_MAX];
  int n;
} undo_log;

static void undo_note(undo_log *u, json_t *parent, const char *key) {
  /* UNDO_MAX is above the most keys one operation adds (set_memory: 11
  ** fields and the objects above them). */
  if (u->n < UNDO_MAX) {
    u->step[u->n].parent = parent;
    u->step[u->n].key = key;
    u->n++;
  }
}

static void undo(undo_log *u) {
  while (u->n > 0) {
    u->n--;
    if (u->step[u->n].key != NULL)
      json_object_del(u->step[u->n].parent, u->step[u->n].key);
    else
      json_array_remove(u->step[u->n].parent,
                        json_array_size(u->step[u->n].parent) - 1);
  }
}

/* A small non-negative index as the decimal map key HCS uses ("12"). */
static void index_key(char out[24], long long v) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v > 0);
  for (size_t i = 0; i < n; i++)
    out[i] = tmp[n - 1 - i];
  out[n] = '\0';
}

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

/* Object at a key path under root, created when missing (noted in u). */
static json_t *obj_at(json_t *root, const char *const *keys, undo_log *u) {
  json_t *cur = root;
  for (; *keys; keys++) {
    json_t *next = json_object_get(cur, *keys);
    if (next == NULL) {
      next = json_object();
      json_object_set_new(cur, *keys, next);
      undo_note(u, cur, *keys);
    }
    cur = next;
  }
  return cur;
}

/* Runs the rules `rules` after a change and takes the change back if rc or
** a rule refuses it. */
static int finish(orr_builder *b, undo_log *u, const char *op, unsigned rules,
                  int rc, orr_error *e) {
  if (rc == 0 && rules != 0)
    rc = orr__doc_rules_some(b->doc, 0, rules, e);
  if (rc != 0) {
    undo(u);
    return with_op(e, op, rc);
  }
  return 0;
}

/*
** Merges the fields of arg into the object at `where`, refusing any field
** that an earlier operation already set: hcsshim's setters replace whole
** groups and silently drop what other setters wrote.
*/
static int merge_once(orr_builder *b, const char *op, const char *const *where,
                      const char *where_text, const orr_type *type,
                      unsigned rules, const json_t *arg, orr_error *e) {
  json_t *patch = NULL, *target, *val, *zeros;
  const char *key;
  undo_log u = {.n = 0};
  int rc = orr__schema_normalize_keep_zero(type, arg, &patch, e);
  if (rc != 0)
    return with_op(e, op, rc);
  target = obj_at(b->doc, where, &u);
  zeros = json_object_get(b->zeros, where_text);
  json_object_foreach(patch, key, val) {
    json_t *old = json_object_get(target, key);
    if (old == NULL)
      old = json_object_get(zeros, key);
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
  }
  if (rc == 0) {
    json_object_foreach(patch, key, val) {
      /* The undo log keeps the schema's name for the key: it outlives the
      ** operation, the patch's own copy does not. */
      const orr_field *f = &type->fields[orr__field_index(type, key)];
      json_t *dst = target;
      if (orr__go_empty(f, val)) {
        if (zeros == NULL) {
          zeros = json_object();
          json_object_set_new_nocheck(b->zeros, where_text, zeros);
          undo_note(&u, b->zeros, where_text);
        }
        dst = zeros;
      }
      json_object_set_nocheck(dst, f->name, val);
      undo_note(&u, dst, f->name);
    }
  }
  json_decref(patch);
  return finish(b, &u, op, rules, rc, e);
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
    /* StopOnReset false is Go's zero value, left out; a false
    ** ShouldTerminateOnLastHandleClosed stays (see schema_types.c). */
    if (dst != doc && json_is_false(val))
      json_object_del(dst, key);
    else
      json_object_set(dst, key, val);
  }
  b = calloc(1, sizeof *b);
  b->doc = doc;
  b->zeros = json_object();
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
  b->zeros = json_object();
  *out = b;
  return 0;
}

void orr_builder_free(orr_builder *b) {
  if (b == NULL)
    return;
  json_decref(b->doc);
  json_decref(b->zeros);
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
                    &orr__t_memory, ORR_RULE_NUMA, memory, e);
}

int orr_builder_set_processor(orr_builder *b, const json_t *processor,
                              orr_error *e) {
  return merge_once(b, "set_processor", TOPO("Processor"),
                    "ComputeTopology.Processor", &orr__t_processor,
                    ORR_RULE_NUMA, processor, e);
}

/*
** Puts value (owned) at where.key, refusing a key that is already there:
** the one rule every add and set shares. `rules` are the cross-field rules
** of the part the value goes to.
*/
static int put_once(orr_builder *b, const char *op, const char *const *where,
                    const char *where_text, const char *key, json_t *value,
                    unsigned rules, orr_error *e) {
  undo_log u = {.n = 0};
  json_t *target = obj_at(b->doc, where, &u);
  json_t *old = json_object_get(target, key);
  int rc = 0;
  if (old != NULL) {
    char brief[80];
    orr__json_brief(old, brief, sizeof brief);
    rc = orr_error_set(e, ORR_EEXIST,
                       "%s.%s is already set (to %s); a builder sets each "
                       "field once",
                       where_text, key, brief);
    json_decref(value);
  } else {
    json_object_set_new_nocheck(target, key, value);
    undo_note(&u, target, key);
  }
  return finish(b, &u, op, rules, rc, e);
}

/* Normalizes arg as type and puts it at where.key once. */
static int merge_wrapped(orr_builder *b, const char *op,
                         const char *const *where, const char *where_text,
                         const char *key, const orr_type *type, unsigned rules,
                         const json_t *arg, orr_error *e) {
  json_t *norm = NULL;
  int rc = orr__schema_normalize(type, arg, "", &norm, e);
  if (rc != 0)
    return with_op(e, op, rc);
  return put_once(b, op, where, where_text, key, norm, rules, e);
}

int orr_builder_set_cpu_group(orr_builder *b, const json_t *group,
                              orr_error *e) {
  return merge_wrapped(b, "set_cpu_group", TOPO("Processor"),
                       "ComputeTopology.Processor", "CpuGroup",
                       &orr__t_cpu_group, 0, group, e);
}

int orr_builder_set_numa(orr_builder *b, const json_t *numa, orr_error *e) {
  return merge_wrapped(
      b, "set_numa",
      (const char *const[]){"VirtualMachine", "ComputeTopology", NULL},
      "ComputeTopology", "Numa", &orr__t_numa, ORR_RULE_NUMA, numa, e);
}

int orr_builder_set_numa_processors(orr_builder *b, const json_t *settings,
                                    orr_error *e) {
  return merge_wrapped(b, "set_numa_processors", TOPO("Processor"),
                       "ComputeTopology.Processor", "NumaProcessorsSettings",
                       &orr__t_numa_processors, ORR_RULE_NUMA, settings, e);
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
                  json_pack("{s:o}", "BootThis", norm), ORR_RULE_BOOT, e);
}

int orr_builder_set_linux_kernel_direct_boot(orr_builder *b,
                                             const json_t *options,
                                             orr_error *e) {
  return merge_wrapped(b, "set_linux_kernel_direct_boot", CHIPSET, "Chipset",
                       "LinuxKernelDirect", &orr__t_linux_kernel_direct,
                       ORR_RULE_BOOT, options, e);
}

int orr_builder_set_storage_qos(orr_builder *b, const json_t *qos,
                                orr_error *e) {
  return merge_wrapped(
      b, "set_storage_qos", (const char *const[]){"VirtualMachine", NULL},
      "VirtualMachine", "StorageQoS", &orr__t_storage_qos, 0, qos, e);
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
  /* An empty controller attaches nothing: no rule to run. Its empty
  ** Attachments map is left out, as Go does (omitempty). */
  return put_once(b, "add_scsi_controller", DEVICES("Scsi"), "Devices.Scsi",
                  guid, json_object(), 0, e);
}

int orr_builder_add_scsi_disk(orr_builder *b, long long controller,
                              long long lun, const json_t *attachment,
                              orr_error *e) {
  const char *guid = orr_scsi_controller_guid((int)controller);
  json_t *scsi = devices(b->doc, "Scsi"), *ctl, *list, *used, *norm = NULL;
  char lunkey[24];
  undo_log u = {.n = 0};
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
  if ((ctl = json_object_get(scsi, guid)) == NULL)
    return orr_error_set(e, ORR_ENOENT,
                         "add_scsi_disk: controller %lld has not been added "
                         "(call add_scsi_controller(%lld) first)",
                         controller, controller);
  index_key(lunkey, lun);
  list = json_object_get(ctl, "Attachments");
  if ((used = json_object_get(list, lunkey)) != NULL)
    return orr_error_set(e, ORR_EEXIST,
                         "add_scsi_disk: controller %lld LUN %lld is already "
                         "used by %s; remove it first or pick a free LUN",
                         controller, lun,
                         json_string_value(json_object_get(used, "Path")));
  rc = orr__schema_normalize(&orr__t_attachment, attachment, "", &norm, e);
  if (rc != 0)
    return with_op(e, "add_scsi_disk", rc);
  if (list == NULL) {
    list = json_object();
    json_object_set_new_nocheck(ctl, "Attachments", list);
    undo_note(&u, ctl, "Attachments");
  }
  json_object_set_new_nocheck(list, lunkey, norm);
  undo_note(&u, list, lunkey);
  /* The rest of the document already holds every rule: only the new disk
  ** can conflict, with another one. */
  rc = orr__rule_scsi_path(scsi, guid, lunkey, norm, e);
  return finish(b, &u, "add_scsi_disk", 0, rc, e);
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
                       ORR_RULE_VPCI, device, e);
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
  rc = merge_wrapped(b, "add_vpmem_controller",
                     (const char *const[]){"VirtualMachine", "Devices", NULL},
                     "Devices", "VirtualPMem", &orr__t_vpmem_controller,
                     ORR_RULE_VPMEM, arg, e);
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
  index_key(key, id);
  return put_once(b, "add_vpmem_device",
                  (const char *const[]){"VirtualMachine", "Devices",
                                        "VirtualPMem", "Devices", NULL},
                  "VirtualPMem.Devices", key, norm, ORR_RULE_VPMEM, e);
}

int orr_builder_add_vsmb(orr_builder *b, const json_t *settings, orr_error *e) {
  return merge_wrapped(b, "add_vsmb", DEVICES(NULL), "Devices", "VirtualSmb",
                       &orr__t_vsmb, ORR_RULE_SHARES, settings, e);
}

/* Appends a normalized share to where.Shares; the rules refuse duplicates. */
static int append_share(orr_builder *b, const char *op,
                        const char *const *where, const orr_type *type,
                        const json_t *share, orr_error *e) {
  json_t *norm = NULL, *group, *list;
  undo_log u = {.n = 0};
  int rc = orr__schema_normalize(type, share, "", &norm, e);
  if (rc != 0)
    return with_op(e, op, rc);
  group = obj_at(b->doc, where, &u);
  list = json_object_get(group, "Shares");
  if (list == NULL) {
    list = json_array();
    json_object_set_new_nocheck(group, "Shares", list);
    undo_note(&u, group, "Shares");
  }
  json_array_append_new(list, norm);
  undo_note(&u, list, NULL);
  return finish(b, &u, op, ORR_RULE_SHARES, 0, e);
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
  index_key(key, port);
  json_t *set = json_object_get(devices(b->doc, "ComPorts"), key);
  if (set != NULL)
    return orr_error_set(e, ORR_EEXIST,
                         "set_serial_console: COM%lld is already set to %s; "
                         "a builder sets each port once",
                         port + 1,
                         json_string_value(json_object_get(set, "NamedPipe")));
  return put_once(
      b, "set_serial_console", DEVICES("ComPorts"), "Devices.ComPorts", key,
      json_pack("{s:s}", "NamedPipe", listener_path), ORR_RULE_COM, e);
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
                       &orr__t_network_adapter, ORR_RULE_NICS, adapter, e);
}

int orr_builder_enable_graphics_console(orr_builder *b, orr_error *e) {
  static const char *const keys[] = {"Keyboard", "EnhancedModeVideo",
                                     "VideoMonitor"};
  undo_log u = {.n = 0};
  json_t *dev = obj_at(b->doc, DEVICES(NULL), &u);
  /* Enabling twice loses nothing, so it is not an error; no rule reads
  ** these. */
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
    if (json_object_get(dev, keys[i]) == NULL)
      json_object_set_new_nocheck(dev, keys[i], json_object());
  return finish(b, &u, "enable_graphics_console", 0, 0, e);
}

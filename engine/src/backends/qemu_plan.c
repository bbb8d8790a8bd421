/*
** Run-time change plans: the QMP commands that carry out one
** ModifySettingRequest, with the undo of each step and the cleanup that has
** to wait for DEVICE_DELETED. The shape is documented in qemu_xlate.h.
*/
#include <stdio.h>
#include <string.h>

#include "backends/qemu_xlate.h"
#include "orrery/document.h"
#include "schema.h"

/* {"do":[], "wait_deleted":null, "after":[], "ignored":[]} */
static json_t *plan_new(void) {
  return json_pack("{s:[], s:n, s:[], s:[]}", "do", "wait_deleted", "after",
                   "ignored");
}

static json_t *cmd(const char *execute, json_t *args /* taken */) {
  if (args == NULL)
    return NULL;
  return json_pack("{s:s, s:o}", "execute", execute, "arguments", args);
}

/* Appends a "do" step; takes args and undo (undo may be NULL: none). */
static int step(json_t *plan, const char *execute, json_t *args, json_t *undo) {
  json_t *s = cmd(execute, args);
  if (s == NULL ||
      json_object_set_new(s, "undo", undo ? undo : json_null()) != 0 ||
      json_array_append_new(json_object_get(plan, "do"), s) != 0) {
    json_decref(s);
    return -1;
  }
  return 0;
}

/* A "do" step that passes the request's descriptor fd (its index). */
static int step_fd(json_t *plan, const char *execute, json_t *args, int fd,
                   json_t *undo) {
  json_t *steps = json_object_get(plan, "do");
  if (step(plan, execute, args, undo) != 0)
    return -1;
  return json_object_set_new(json_array_get(steps, json_array_size(steps) - 1),
                             "fd", json_integer(fd));
}

static int after(json_t *plan, const char *execute, json_t *args) {
  json_t *c = cmd(execute, args);
  return c == NULL ||
                 json_array_append_new(json_object_get(plan, "after"), c) != 0
             ? -1
             : 0;
}

static int wait_deleted(json_t *plan, const char *qdev) {
  return json_object_set_new(plan, "wait_deleted", json_string(qdev));
}

static json_t *node_del(const char *node) {
  return json_pack("{s:s}", "node-name", node);
}

static int finish(json_t *plan, bool oom, json_t **out, orr_error *err) {
  if (oom || plan == NULL) {
    json_decref(plan);
    *out = NULL;
    return orr_error_set(err, ORR_ENOMEM, "out of memory");
  }
  *out = plan;
  return 0;
}

/* ---------------------------------------------------------------------- */

int orr__qemu_plan_scsi_add(int ctrl, int lun, const json_t *attachment,
                            bool throttle_group, orr_hostres *hr, json_t **plan,
                            orr_error *err) {
  char path[512];
  json_t *nodes, *dev, *node, *p;
  const orr_hr_fdset *fdsets;
  bool oom = false;
  size_t i, nsets;
  int rc;

  *plan = NULL;
  snprintf(path, sizeof path, "VirtualMachine.Devices.Scsi.%s.Attachments.%d",
           orr_scsi_controller_guid(ctrl) ? orr_scsi_controller_guid(ctrl)
                                          : "?",
           lun);
  if ((p = plan_new()) == NULL)
    return orr_error_set(err, ORR_ENOMEM, "out of memory");
  if ((rc = orr__qemu_disk_objects(ctrl, lun, attachment, path, throttle_group,
                                   hr, json_object_get(p, "ignored"), &nodes,
                                   &dev, err)) != 0) {
    json_decref(p);
    return rc;
  }
  /* In fd mode the images go first, each into its fdset (add-fd with the
  ** descriptor), undone by remove-fd. */
  fdsets = orr__hostres_fdsets(hr, &nsets);
  if (nsets > 0)
    oom |= json_object_set_new(p, "fdsets", json_array()) != 0;
  for (size_t k = 0; k < nsets; k++) {
    oom |= step_fd(p, "add-fd", json_pack("{s:i}", "fdset-id", fdsets[k].id),
                   fdsets[k].index,
                   cmd("remove-fd",
                       json_pack("{s:i}", "fdset-id", fdsets[k].id))) != 0;
    oom |= json_array_append_new(json_object_get(p, "fdsets"),
                                 json_integer(fdsets[k].id)) != 0;
  }
  /* blockdev-add file, format[, throttle]; each undone by blockdev-del. */
  json_array_foreach(nodes, i, node) {
    const char *name = json_string_value(json_object_get(node, "node-name"));
    oom |= step(p, "blockdev-add", json_incref(node),
                cmd("blockdev-del", node_del(name))) != 0;
  }
  /* The last step needs no undo: nothing follows it. */
  oom |= step(p, "device_add", dev, NULL) != 0;
  json_decref(nodes);
  return finish(p, oom, plan, err);
}

/* device_del of qdev, then the wait for its DEVICE_DELETED: how every
** removal starts. NULL when out of memory; *oom collects step failures. */
static json_t *unplug_plan(const char *qdev, bool *oom) {
  json_t *p = plan_new();
  if (p == NULL)
    return NULL;
  *oom |= step(p, "device_del", json_pack("{s:s}", "id", qdev), NULL) != 0;
  *oom |= wait_deleted(p, qdev) != 0;
  return p;
}

int orr__qemu_plan_scsi_remove(int ctrl, int lun, bool throttle_group,
                               const json_t *fdsets, int snaps, json_t **plan,
                               orr_error *err) {
  json_t *p, *id;
  bool oom = false;
  size_t i;

  *plan = NULL;
  if (ctrl < 0 || ctrl > 3 || lun < 0 || lun > 63)
    return orr_error_set(err, ORR_EINVAL,
                         "SCSI remove: controller must be 0..3 and LUN "
                         "0..63, got %d and %d",
                         ctrl, lun);
  if ((p = unplug_plan(orr__qemu_disk_qdev(ctrl, lun).s, &oom)) == NULL)
    return orr_error_set(err, ORR_ENOMEM, "out of memory");
  /* Top node first: a node in use by a parent cannot be deleted. */
  if (throttle_group)
    oom |= after(p, "blockdev-del",
                 node_del(orr__qemu_disk_qos_node(ctrl, lun).s)) != 0;
  for (int k = snaps; k >= 1; k--) {
    oom |= after(p, "blockdev-del",
                 node_del(orr__qemu_snap_node(ctrl, lun, k).s)) != 0;
    oom |= after(p, "blockdev-del",
                 node_del(orr__qemu_snap_file_node(ctrl, lun, k).s)) != 0;
  }
  oom |= after(p, "blockdev-del",
               node_del(orr__qemu_disk_fmt_node(ctrl, lun).s)) != 0;
  oom |= after(p, "blockdev-del",
               node_del(orr__qemu_disk_file_node(ctrl, lun).s)) != 0;
  /* The images' descriptors QEMU still holds once the nodes are gone. */
  json_array_foreach(fdsets, i, id) {
    oom |= after(p, "remove-fd",
                 json_pack("{s:I}", "fdset-id", json_integer_value(id))) != 0;
  }
  return finish(p, oom, plan, err);
}

/* ---------------------------------------------------------------------- */

static int check_port(const char *port, const char *path, orr_error *err) {
  if (port == NULL || strncmp(port, "rp", 2) != 0 || port[2] == '\0' ||
      strspn(port + 2, "0123456789") != strlen(port + 2))
    return orr_error_set(err, ORR_EINVAL,
                         "%s: the root port must be a free \"rpN\" from the "
                         "layout, got '%s'",
                         path, port ? port : "(null)");
  return 0;
}

/* The start of a hot-add into a root port: names the device in path
** ("VirtualMachine.Devices.<group>.<guid>") for messages, checks the GUID
** and the port, and makes the empty plan *out. */
static int hotplug_plan(const char *group, const char *guid, const char *port,
                        char path[512], json_t **out, orr_error *err) {
  int rc;
  snprintf(path, 512, "VirtualMachine.Devices.%s.%s", group,
           guid ? guid : "(null)");
  if (guid == NULL)
    return orr_error_set(err, ORR_EINVAL, "%s: no GUID", path);
  if ((rc = check_port(port, path, err)) != 0)
    return rc;
  if ((*out = plan_new()) == NULL)
    return orr_error_set(err, ORR_ENOMEM, "out of memory");
  return 0;
}

int orr__qemu_plan_vpci_add(const char *guid, const json_t *device,
                            const char *port, orr_hostres *hr, json_t **plan,
                            orr_error *err) {
  char path[512];
  json_t *dev, *p;
  int rc;

  *plan = NULL;
  if ((rc = hotplug_plan("VirtualPci", guid, port, path, &p, err)) != 0)
    return rc;
  if ((rc = orr__qemu_vpci_objects(guid, device, path, port, hr,
                                   json_object_get(p, "ignored"), &dev, err)) !=
      0) {
    json_decref(p);
    return rc;
  }
  return finish(p, step(p, "device_add", dev, NULL) != 0, plan, err);
}

int orr__qemu_plan_vpci_remove(const char *guid, json_t **plan,
                               orr_error *err) {
  json_t *p;
  bool oom = false;

  *plan = NULL;
  if (guid == NULL || orr__check_guid(guid, strlen(guid)) != NULL)
    return orr_error_set(err, ORR_EINVAL,
                         "VirtualMachine.Devices.VirtualPci.%s: the VMBus id "
                         "must be a GUID",
                         guid ? guid : "(null)");
  if ((p = unplug_plan(orr__qemu_vpci_qdev(guid).s, &oom)) == NULL)
    return orr_error_set(err, ORR_ENOMEM, "out of memory");
  return finish(p, oom, plan, err);
}

/* ---------------------------------------------------------------------- */

int orr__qemu_plan_nic_add(const char *guid, const json_t *settings,
                           const char *port, orr_hostres *hr, json_t **plan,
                           orr_error *err) {
  char path[512];
  json_t *netdev, *dev, *p;
  bool oom = false;
  int rc;

  *plan = NULL;
  if ((rc = hotplug_plan("NetworkAdapters", guid, port, path, &p, err)) != 0)
    return rc;
  if ((rc = orr__qemu_nic_objects(guid, settings, path, port, hr,
                                  json_object_get(p, "ignored"), &netdev, &dev,
                                  err)) != 0) {
    json_decref(p);
    return rc;
  }
  oom |= step(p, "netdev_add", netdev,
              cmd("netdev_del",
                  json_pack("{s:s}", "id", orr__qemu_nic_netdev(guid).s))) != 0;
  oom |= step(p, "device_add", dev, NULL) != 0;
  return finish(p, oom, plan, err);
}

int orr__qemu_plan_nic_remove(const char *guid, json_t **plan, orr_error *err) {
  json_t *p;
  bool oom = false;

  *plan = NULL;
  if (guid == NULL || orr__check_guid(guid, strlen(guid)) != NULL)
    return orr_error_set(err, ORR_EINVAL,
                         "VirtualMachine.Devices.NetworkAdapters.%s: the NIC "
                         "id must be a GUID",
                         guid ? guid : "(null)");
  if ((p = unplug_plan(orr__qemu_nic_qdev(guid).s, &oom)) == NULL)
    return orr_error_set(err, ORR_ENOMEM, "out of memory");
  oom |= after(p, "netdev_del",
               json_pack("{s:s}", "id", orr__qemu_nic_netdev(guid).s)) != 0;
  return finish(p, oom, plan, err);
}

/* ---------------------------------------------------------------------- */

static json_t *balloon_args(uint64_t mb) {
  return json_pack("{s:I}", "value", (json_int_t)(mb * 1024 * 1024));
}

static json_t *vmem_args(uint64_t mb) {
  return json_pack("{s:s, s:s, s:I}", "path", ORR_QEMU_VMEM_PATH, "property",
                   "requested-size", "value", (json_int_t)(mb * 1024 * 1024));
}

int orr__qemu_plan_memory(uint64_t size_mb, uint64_t cur_mb, uint64_t boot_mb,
                          uint64_t max_mb, json_t **plan, orr_error *err) {
  static const char *path = "VirtualMachine.ComputeTopology.Memory.SizeInMB";
  /* What each half holds now and is to hold: the balloon's target (at most
  ** boot_mb) and virtio-mem's requested size (above boot_mb). */
  uint64_t bal_cur = cur_mb < boot_mb ? cur_mb : boot_mb;
  uint64_t bal_new = size_mb < boot_mb ? size_mb : boot_mb;
  uint64_t vm_cur = cur_mb > boot_mb ? cur_mb - boot_mb : 0;
  uint64_t vm_new = size_mb > boot_mb ? size_mb - boot_mb : 0;
  bool oom = false;
  json_t *p;

  *plan = NULL;
  if (size_mb < 1 || size_mb > 1048576)
    return orr_error_set(err, ORR_EINVAL,
                         "%s must be an integer in 1..1048576, got %llu", path,
                         (unsigned long long)size_mb);
  if (size_mb > boot_mb && max_mb <= boot_mb)
    return orr_error_set(err, ORR_ENOTSUP,
                         "%s: the VM booted with %llu MB and declared no "
                         "maximum, so it cannot grow to %llu MB (create it "
                         "with the option memory_max_mb; the balloon only "
                         "gives back memory the VM booted with)",
                         path, (unsigned long long)boot_mb,
                         (unsigned long long)size_mb);
  if (size_mb > max_mb && size_mb > boot_mb)
    return orr_error_set(err, ORR_EINVAL,
                         "%s: %llu MB is above the maximum the VM was created "
                         "with (memory_max_mb = %llu)",
                         path, (unsigned long long)size_mb,
                         (unsigned long long)max_mb);
  if (vm_new % ORR_QEMU_VMEM_BLOCK_MB != 0)
    return orr_error_set(err, ORR_EINVAL,
                         "%s: above the boot size (%llu MB) memory grows in "
                         "%d MB blocks (virtio-mem), so %llu MB is not a size "
                         "it can have",
                         path, (unsigned long long)boot_mb,
                         ORR_QEMU_VMEM_BLOCK_MB, (unsigned long long)size_mb);
  if ((p = plan_new()) == NULL)
    return orr_error_set(err, ORR_ENOMEM, "out of memory");
  /* Each step's undo puts the old value back: QEMU cannot report the
  ** balloon's target, so a change whose outcome could not be written is
  ** rolled back. Shrinking takes virtio-mem's part away first, growing
  ** deflates the balloon first. */
  if (vm_new < vm_cur)
    oom |= step(p, "qom-set", vmem_args(vm_new),
                cmd("qom-set", vmem_args(vm_cur))) != 0;
  if (bal_new != bal_cur)
    oom |= step(p, "balloon", balloon_args(bal_new),
                cmd("balloon", balloon_args(bal_cur))) != 0;
  if (vm_new > vm_cur)
    oom |= step(p, "qom-set", vmem_args(vm_new),
                cmd("qom-set", vmem_args(vm_cur))) != 0;
  if (json_array_size(json_object_get(p, "do")) == 0)
    /* Nothing changes (the size it has): the balloon once more, so the
    ** request still talks to QEMU, as it always did. */
    oom |= step(p, "balloon", balloon_args(bal_new),
                cmd("balloon", balloon_args(bal_cur))) != 0;
  oom |= json_object_set_new(p, "verifiable", json_false()) != 0;
  return finish(p, oom, plan, err);
}

int orr__qemu_plan_pmem_add(int k, const json_t *device, long long maxsize,
                            const char *port, orr_hostres *hr, json_t **plan,
                            orr_error *err) {
  char path[512];
  json_t *obj, *dev, *p;
  long long size;
  bool oom = false;
  int rc;

  *plan = NULL;
  snprintf(path, sizeof path, "VirtualMachine.Devices.VirtualPMem.Devices.%d",
           k);
  if (k < 0 || k > 255)
    return orr_error_set(err, ORR_EINVAL, "%s: the device key must be 0..255",
                         path);
  if ((rc = check_port(port, path, err)) != 0)
    return rc;
  if ((p = plan_new()) == NULL)
    return orr_error_set(err, ORR_ENOMEM, "out of memory");
  if ((rc = orr__qemu_pmem_objects(k, device, path, maxsize, hr,
                                   json_object_get(p, "ignored"), &obj, &dev,
                                   &size, err)) != 0) {
    json_decref(p);
    return rc;
  }
  oom |= json_object_set_new(dev, "bus", json_string(port)) != 0;
  oom |= step(p, "object-add", obj,
              cmd("object-del",
                  json_pack("{s:s}", "id", orr__qemu_pmem_memdev(k).s))) != 0;
  oom |= step(p, "device_add", dev, NULL) != 0;
  return finish(p, oom, plan, err);
}

int orr__qemu_plan_pmem_remove(int k, json_t **plan, orr_error *err) {
  /* Found against QEMU 7.2: device_del of a virtio-pmem-pci answers "virtio
  ** based memory devices cannot be unplugged", and an nvdimm cannot be
  ** unplugged either. Refused before anything is sent. */
  *plan = NULL;
  return orr_error_set(err, ORR_ENOTSUP,
                       "VirtualMachine.Devices.VirtualPMem.Devices.%d: QEMU "
                       "7.2 cannot unplug a PMem device (virtio-pmem-pci: "
                       "\"virtio based memory devices cannot be unplugged\"; "
                       "nvdimm has no unplug either); it stays until the VM "
                       "stops",
                       k);
}

int orr__qemu_plan_snapshot(int ctrl, int lun, int k, const char *overlay,
                            json_t **plan, orr_error *err) {
  json_t *p;
  bool oom = false;
  orr_qemu_name top = k == 1 ? orr__qemu_disk_fmt_node(ctrl, lun)
                             : orr__qemu_snap_node(ctrl, lun, k - 1);
  orr_qemu_name snap = orr__qemu_snap_node(ctrl, lun, k);
  orr_qemu_name file = orr__qemu_snap_file_node(ctrl, lun, k);

  *plan = NULL;
  if (ctrl < 0 || ctrl > 3 || lun < 0 || lun > 63 || k < 1 ||
      k > ORR_QEMU_MAX_SNAPSHOTS || overlay == NULL || overlay[0] != '/')
    return orr_error_set(err, ORR_EINVAL,
                         "snapshot: controller 0..3, LUN 0..63, at most %d "
                         "overlays and an absolute overlay path",
                         ORR_QEMU_MAX_SNAPSHOTS);
  if ((p = plan_new()) == NULL)
    return orr_error_set(err, ORR_ENOMEM, "out of memory");
  oom |= step(p, "blockdev-add",
              json_pack("{s:s, s:s, s:s}", "driver", "file", "node-name",
                        file.s, "filename", overlay),
              cmd("blockdev-del", node_del(file.s))) != 0;
  /* No backing: blockdev-snapshot attaches the current top, so QEMU never
  ** opens the name the overlay's header holds. */
  oom |= step(p, "blockdev-add",
              json_pack("{s:s, s:s, s:s, s:n}", "driver", "qcow2", "node-name",
                        snap.s, "file", file.s, "backing"),
              cmd("blockdev-del", node_del(snap.s))) != 0;
  oom |= step(p, "blockdev-snapshot",
              json_pack("{s:s, s:s}", "node", top.s, "overlay", snap.s),
              NULL) != 0;
  return finish(p, oom, plan, err);
}

int orr__qemu_plan_snapshot_group(json_t **group, const json_t *plan,
                                  orr_error *err) {
  const json_t *steps = json_object_get(plan, "do");
  size_t n = json_array_size(steps), i;
  json_t *tx, *last;
  bool oom = false;
  if (*group == NULL) {
    if ((*group = plan_new()) == NULL)
      return orr_error_set(err, ORR_ENOMEM, "out of memory");
    oom |= json_array_append_new(json_object_get(*group, "do"),
                                 json_pack("{s:s, s:{s:[]}, s:n}", "execute",
                                           "transaction", "arguments",
                                           "actions", "undo")) != 0;
  }
  tx = json_object_get(*group, "do");
  last = json_array_get(tx, json_array_size(tx) - 1);
  for (i = 0; i + 1 < n; i++) /* the adds go before the transaction */
    oom |= json_array_insert(tx, json_array_size(tx) - 1,
                             json_array_get(steps, i)) != 0;
  oom |= json_array_append_new(
             json_object_get(json_object_get(last, "arguments"), "actions"),
             json_pack("{s:s, s:O}", "type", "blockdev-snapshot", "data",
                       json_object_get(json_array_get(steps, n - 1),
                                       "arguments"))) != 0;
  if (oom)
    return orr_error_set(err, ORR_ENOMEM, "out of memory");
  return 0;
}

int orr__qemu_plan_commit(int ctrl, int lun, int k, json_t **plan,
                          orr_error *err) {
  json_t *p;
  bool oom = false;
  char job[32];

  *plan = NULL;
  if (k < 1 || k > ORR_QEMU_MAX_SNAPSHOTS)
    return orr_error_set(err, ORR_EINVAL, "commit: no overlay %d", k);
  snprintf(job, sizeof job, "commit-%d-%d", ctrl, lun);
  if ((p = plan_new()) == NULL)
    return orr_error_set(err, ORR_ENOMEM, "out of memory");
  /* base-node: the image just below; without it QEMU merges the whole
  ** chain down into the bottom image. */
  oom |= step(p, "block-commit",
              json_pack("{s:s, s:s, s:s}", "job-id", job, "device",
                        orr__qemu_snap_node(ctrl, lun, k).s, "base-node",
                        k == 1 ? orr__qemu_disk_fmt_node(ctrl, lun).s
                               : orr__qemu_snap_node(ctrl, lun, k - 1).s),
              NULL) != 0;
  oom |= json_object_set_new(p, "job", json_string(job)) != 0;
  oom |= json_object_set_new(
             p, "complete",
             cmd("job-complete", json_pack("{s:s}", "id", job))) != 0;
  oom |= json_object_set_new(
             p, "cancel",
             cmd("block-job-cancel",
                 json_pack("{s:s, s:b}", "device", job, "force", 1))) != 0;
  oom |= after(p, "blockdev-del",
               node_del(orr__qemu_snap_node(ctrl, lun, k).s)) != 0;
  oom |= after(p, "blockdev-del",
               node_del(orr__qemu_snap_file_node(ctrl, lun, k).s)) != 0;
  return finish(p, oom, plan, err);
}

int orr__qemu_plan_pipe_add(int n, const char *host, const char *name,
                            json_t **plan, orr_error *err) {
  json_t *p;
  bool oom = false;

  *plan = NULL;
  if (n < 0 || n >= ORR_QEMU_PIPE_MAX || host == NULL || host[0] != '/' ||
      name == NULL)
    return orr_error_set(err, ORR_EINVAL,
                         "VirtualMachine/Devices/MappedPipes: bad pipe %d", n);
  if ((p = plan_new()) == NULL)
    return orr_error_set(err, ORR_ENOMEM, "out of memory");
  oom |= step(p, "chardev-add",
              json_pack("{s:s, s:{s:s, s:{s:{s:s, s:{s:s}}, s:b, s:b}}}", "id",
                        orr__qemu_pipe_chardev(n).s, "backend", "type",
                        "socket", "data", "addr", "type", "unix", "data",
                        "path", host, "server", 1, "wait", 0),
              cmd("chardev-remove",
                  json_pack("{s:s}", "id", orr__qemu_pipe_chardev(n).s))) != 0;
  oom |= step(p, "device_add",
              json_pack("{s:s, s:s, s:s, s:s, s:s, s:i}", "driver",
                        "virtserialport", "id", orr__qemu_pipe_qdev(n).s, "bus",
                        ORR_QEMU_VSERIAL_ID ".0", "chardev",
                        orr__qemu_pipe_chardev(n).s, "name", name, "nr", n + 2),
              NULL) != 0;
  return finish(p, oom, plan, err);
}

int orr__qemu_plan_pipe_remove(int n, json_t **plan, orr_error *err) {
  json_t *p;
  bool oom = false;

  *plan = NULL;
  if (n < 0 || n > 999)
    return orr_error_set(err, ORR_EINVAL,
                         "VirtualMachine/Devices/MappedPipes: bad pipe %d", n);
  if ((p = unplug_plan(orr__qemu_pipe_qdev(n).s, &oom)) == NULL)
    return orr_error_set(err, ORR_ENOMEM, "out of memory");
  oom |= after(p, "chardev-remove",
               json_pack("{s:s}", "id", orr__qemu_pipe_chardev(n).s)) != 0;
  return finish(p, oom, plan, err);
}

int orr__qemu_plan_storage_qos(const json_t *qos, bool throttle_group,
                               json_t **plan, orr_error *err) {
  static const orr_qemu_field_rule rules[] = {
      {"IopsMaximum", ORR_QF_USE, NULL},
      {"BandwidthMaximum", ORR_QF_USE, NULL},
      {NULL, 0, NULL},
  };
  static const char *path = "VirtualMachine.StorageQoS";
  long long iops, bps;
  json_t *p;
  int rc;

  *plan = NULL;
  if ((rc = orr__qemu_check_fields(qos, path, rules, NULL, err)) != 0 ||
      (rc = orr__qemu_get_int(qos, "IopsMaximum", path, 0, INT32_MAX, 0, &iops,
                              err)) != 0 ||
      (rc = orr__qemu_get_int(qos, "BandwidthMaximum", path, 0, INT32_MAX, 0,
                              &bps, err)) != 0)
    return rc;
  if (!throttle_group)
    return orr_error_set(err, ORR_ENOTSUP,
                         "%s: the VM was created without StorageQoS, so its "
                         "disks have no throttle nodes; set StorageQoS when "
                         "creating the VM",
                         path);
  if ((p = plan_new()) == NULL)
    return orr_error_set(err, ORR_ENOMEM, "out of memory");
  /* Replaces the whole limits struct: unset fields become 0 (unlimited). */
  return finish(
      p,
      step(p, "qom-set",
           json_pack("{s:s, s:s, s:{s:I, s:I}}", "path", ORR_QEMU_THROTTLE_PATH,
                     "property", "limits", "value", "iops-total",
                     (json_int_t)iops, "bps-total", (json_int_t)bps),
           NULL) != 0,
      plan, err);
}

/* ---------------------------------------------------------------------- */

int orr__qemu_plan_save(bool after_save, bool ignore_shared, int fd,
                        json_t **plan, orr_error *err) {
  json_t *p = plan_new();
  bool oom = p == NULL;

  *plan = NULL;
  if (p != NULL && after_save) {
    /* If stop fails the guest runs on: the undo of cont stops it. */
    oom |= step(p, "cont", json_object(), cmd("stop", json_object())) != 0;
    oom |= step(p, "stop", json_object(), NULL) != 0;
  }
  if (p != NULL) {
    json_t *caps = json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability",
                             "events", "state", 1);
    /* A template's RAM is its file: the stream leaves it out. */
    if (ignore_shared && caps != NULL)
      oom |= json_array_append_new(
          json_object_get(caps, "capabilities"),
          json_pack("{s:s, s:b}", "capability", "x-ignore-shared", "state", 1));
    oom |= step(p, "migrate-set-capabilities", caps, NULL) != 0;
    /* A migrate that fails leaves the named descriptor in QEMU: close it. */
    oom |=
        step_fd(p, "getfd", json_pack("{s:s}", "fdname", ORR_QEMU_SAVE_FD), fd,
                cmd("closefd",
                    json_pack("{s:s}", "fdname", ORR_QEMU_SAVE_FD))) != 0;
    oom |= json_object_set_new(
               p, "start",
               cmd("migrate",
                   json_pack("{s:s}", "uri", "fd:" ORR_QEMU_SAVE_FD))) != 0;
    oom |= json_object_set_new(
               p, "poll", json_pack("{s:s}", "execute", "query-migrate")) != 0;
    /* Completed is not yet done: QEMU leaves "finish-migrate" a moment
    ** later, and refuses cont until then. */
    oom |= json_object_set_new(
               p, "settle", json_pack("{s:s}", "execute", "query-status")) != 0;
    oom |=
        json_object_set_new(
            p, "cancel", json_pack("{s:s}", "execute", "migrate_cancel")) != 0;
  }
  return finish(p, oom, plan, err);
}

int orr__qemu_plan_plan9_add(const json_t *share, json_t **plan,
                             orr_error *err) {
  (void)share;
  *plan = NULL;
  return orr_error_set(err, ORR_ENOTSUP,
                       "VirtualMachine.Devices.Plan9.Shares: QEMU 7.2 cannot "
                       "add a 9p share to a running VM (it has no run-time "
                       "fsdev); declare the share in the document");
}

int orr__qemu_plan_plan9_remove(int k, json_t **plan, orr_error *err) {
  json_t *p;
  bool oom = false;

  *plan = NULL;
  if (k < 0)
    return orr_error_set(err, ORR_EINVAL,
                         "VirtualMachine.Devices.Plan9.Shares: bad index %d",
                         k);
  if ((p = unplug_plan(orr__qemu_p9_qdev(k).s, &oom)) == NULL)
    return orr_error_set(err, ORR_ENOMEM, "out of memory");
  return finish(p, oom, plan, err);
}

/* ---------------------------------------------------------------------- */

/*
** The qemu backend's run-time changes (backend.h: plan_change, commit,
** abandon, device_gone): a change the core has checked becomes a plan of
** QMP commands (qemu_plan.c); what the plan claims or leaves in the layout
** (a root port, a disk's fdsets) is the backend's part of the commit data;
** and a qdev QEMU deleted unasked is mapped back to the resource of the
** document it was.
*/
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orrery/document.h"
#include "qemu_backend.h"

static json_t *vm_obj(json_t *doc, const char *k1, const char *k2) {
  json_t *v = json_object_get(json_object_get(doc, "VirtualMachine"), k1);
  return k2 ? json_object_get(v, k2) : v;
}

static bool keys_are(const orr_change *ch, size_t n, const char *k1,
                     const char *k2) {
  return ch->nkeys == n && strcmp(ch->keys[1], k1) == 0 &&
         strcmp(ch->keys[2], k2) == 0;
}

/* ---- root ports (layout "ports") ---- */

/* A free root port, claimed for qdev; NULL if the pool is exhausted. */
static const char *claim_port(orr_vm *vm, const char *qdev) {
  size_t i;
  json_t *p;
  json_array_foreach(json_object_get(vm->layout, "ports"), i, p) {
    if (json_is_null(json_object_get(p, "device")) ||
        json_object_get(p, "device") == NULL) {
      json_object_set_new(p, "device", json_string(qdev));
      return json_string_value(json_object_get(p, "id"));
    }
  }
  return NULL;
}

static void release_port(orr_vm *vm, const char *qdev) {
  size_t i;
  json_t *p;
  json_array_foreach(json_object_get(vm->layout, "ports"), i, p) {
    const char *d = json_string_value(json_object_get(p, "device"));
    if (d && strcmp(d, qdev) == 0)
      json_object_set_new(p, "device", json_null());
  }
}

/* ---- a disk's fdsets (layout "fdsets") ---- */

/* The fdsets a disk's images went into (fd mode) live in the layout, for
** its removal: commit data "fdsets" {"key", "ids"} sets them (ids) or drops
** them (no ids). */
static void disk_fdsets(json_t *data, int ctrl, int lun, json_t *ids) {
  json_object_set_new(data, "fdsets",
                      json_pack("{s:s, s:O?}", "key",
                                orr__qemu_disk_key(ctrl, lun).s, "ids", ids));
}

static const json_t *disk_fdsets_of(const orr_vm *vm, int ctrl, int lun) {
  return json_object_get(json_object_get(vm->layout, "fdsets"),
                         orr__qemu_disk_key(ctrl, lun).s);
}

static void commit_fdsets(orr_vm *vm, const json_t *f) {
  const char *key = json_string_value(json_object_get(f, "key"));
  json_t *ids = json_object_get(f, "ids"), *all;
  if (key == NULL || vm->layout == NULL)
    return;
  all = json_object_get(vm->layout, "fdsets");
  if (!json_is_array(ids)) /* a disk added or gone: no overlays on it */
    json_object_del(json_object_get(vm->layout, "snapshots"), key);
  if (!json_is_array(ids)) { /* none (any more): a name-mode disk, or gone */
    json_object_del(all, key);
    return;
  }
  if (all == NULL) {
    all = json_object();
    json_object_set_new(vm->layout, "fdsets", all);
  }
  json_object_set(all, key, ids);
}

/* ---- plans ---- */

static int scsi(orr_vm *vm, const orr_change *ch, json_t *data, json_t **plan,
                orr_error *e) {
  int ctrl = orr_scsi_controller_index(ch->keys[3]);
  int lun = atoi(ch->keys[5]);
  bool tg = json_is_true(json_object_get(vm->layout, "throttle_group"));
  int rc;
  if (ch->op == ORR_CHANGE_ADD) {
    rc = orr__qemu_plan_scsi_add(ctrl, lun, ch->settings, tg, ch->hr, plan, e);
    if (rc == 0)
      disk_fdsets(data, ctrl, lun, json_object_get(*plan, "fdsets"));
    return rc;
  }
  if (ch->op != ORR_CHANGE_REMOVE)
    return orr_error_set(e, ORR_ENOTSUP,
                         "a SCSI attachment is added or removed, not updated");
  disk_fdsets(data, ctrl, lun, NULL);
  return orr__qemu_plan_scsi_remove(
      ctrl, lun, tg, disk_fdsets_of(vm, ctrl, lun),
      (int)json_array_size(
          json_object_get(json_object_get(vm->layout, "snapshots"),
                          orr__qemu_disk_key(ctrl, lun).s)),
      plan, e);
}

/* VPCI devices and NICs: keyed by a GUID, each in its own root port. */
static int pci_like(orr_vm *vm, const orr_change *ch, json_t *data,
                    json_t **plan, orr_error *e) {
  bool nic = strcmp(ch->keys[2], "NetworkAdapters") == 0;
  const char *guid = ch->keys[3];
  orr_qemu_name qdev =
      nic ? orr__qemu_nic_qdev(guid) : orr__qemu_vpci_qdev(guid);
  const char *port;
  int rc;
  if (ch->op == ORR_CHANGE_REMOVE) {
    json_object_set_new(data, "free_port", json_string("yes"));
    json_object_set_new(data, "qdev", json_string(qdev.s));
    return nic ? orr__qemu_plan_nic_remove(guid, plan, e)
               : orr__qemu_plan_vpci_remove(guid, plan, e);
  }
  if (ch->op == ORR_CHANGE_UPDATE) {
    /* virtio-net cannot change its MAC or backend while plugged in. */
    if (!nic ||
        !json_equal(json_object_get(ch->current, "EndpointId"),
                    json_object_get(ch->settings, "EndpointId")) ||
        !json_equal(json_object_get(ch->current, "MacAddress"),
                    json_object_get(ch->settings, "MacAddress")))
      return orr_error_set(e, ORR_ENOTSUP,
                           "the qemu backend cannot change EndpointId or "
                           "MacAddress of a plugged-in adapter; remove it and "
                           "add it again");
    *plan = json_pack("{s:[]}", "do");
    return 0;
  }
  if ((port = claim_port(vm, qdev.s)) == NULL)
    return orr_error_set(e, ORR_EBUSY,
                         "no free root port left for a hot-add (raise the "
                         "create option hotplug_ports)");
  rc = nic ? orr__qemu_plan_nic_add(guid, ch->settings, port, ch->hr, plan, e)
           : orr__qemu_plan_vpci_add(guid, ch->settings, port, ch->hr, plan, e);
  if (rc != 0) {
    release_port(vm, qdev.s);
    return rc;
  }
  /* Given back by abandon if the add ends uncommitted. */
  json_object_set_new(data, "claimed", json_string(qdev.s));
  return 0;
}

static int plan9(orr_vm *vm, const orr_change *ch, json_t **plan,
                 orr_error *e) {
  const json_t *k;
  if (ch->op == ORR_CHANGE_ADD)
    return orr__qemu_plan_plan9_add(ch->settings, plan, e);
  /* The index keeps the boot-time qdev of every share, removed ones too. */
  k = json_object_get(vm->p9_index,
                      json_string_value(json_object_get(ch->settings, "Name")));
  if (!json_is_integer(k))
    return orr_error_set(e, ORR_ENOENT,
                         "no Plan9 share of that Name was there at boot");
  return orr__qemu_plan_plan9_remove((int)json_integer_value(k), plan, e);
}

static int memory(orr_vm *vm, const orr_change *ch, json_t **plan,
                  orr_error *e) {
  json_int_t mb = json_integer_value(ch->settings);
  json_int_t cur = json_integer_value(ch->current);
  /* The maximum declared at create (memory_max_mb) is in the layout, so a
  ** re-attached VM knows it too. */
  json_int_t max = json_integer_value(
      json_object_get(json_object_get(vm->layout, "virtio_mem"), "max_mb"));
  return orr__qemu_plan_memory(
      (uint64_t)mb, (uint64_t)(cur > 0 ? cur : vm->boot_mb),
      (uint64_t)vm->boot_mb, (uint64_t)(max > 0 ? max : 0), plan, e);
}

/* VPMem device <n>: a memory-backend-file and a virtio-pmem-pci in a root
** port of its own, within the address space kept at create. */
static int pmem(orr_vm *vm, const orr_change *ch, json_t *data, json_t **plan,
                orr_error *e) {
  int k = atoi(ch->keys[4]);
  orr_qemu_name qdev = orr__qemu_pmem_qdev(k);
  const json_t *ctrl = vm_obj(vm->doc, "Devices", "VirtualPMem");
  const json_t *maxv = json_object_get(ctrl, "MaximumSizeBytes");
  const char *port;
  int rc;
  if (ch->op == ORR_CHANGE_REMOVE)
    return orr__qemu_plan_pmem_remove(k, plan, e);
  if (json_integer_value(json_object_get(vm->layout, "pmem_room_mb")) <= 0 &&
      !vm->backend->dry_run)
    return orr_error_set(e, ORR_ENOTSUP,
                         "VirtualMachine.Devices.VirtualPMem: the VM has no "
                         "room for devices added at run time: give the "
                         "controller a MaximumSizeBytes and a MaximumCount "
                         "above the devices it boots with (at most 256 GiB "
                         "in all)");
  if ((port = claim_port(vm, qdev.s)) == NULL)
    return orr_error_set(e, ORR_EBUSY,
                         "no free root port left for a hot-add (raise the "
                         "create option hotplug_ports)");
  rc = orr__qemu_plan_pmem_add(
      k, ch->settings, maxv ? (long long)json_integer_value(maxv) : INT64_MAX,
      port, ch->hr, plan, e);
  if (rc != 0) {
    release_port(vm, qdev.s);
    return rc;
  }
  json_object_set_new(data, "claimed", json_string(qdev.s));
  return 0;
}

/* ---- mapped pipes (layout "pipes": {host path: {n, name}}) ---- */

/* The guest's name of the pipe at host: its last part without ".sock",
** [A-Za-z0-9._-], 1..63 bytes. */
static int pipe_name(const char *host, char *name, size_t size) {
  const char *base = strrchr(host, '/');
  size_t n;
  base = base ? base + 1 : host;
  n = strlen(base);
  if (n > 5 && strcmp(base + n - 5, ".sock") == 0)
    n -= 5;
  if (n == 0 || n >= size || n > 63)
    return -1;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)base[i]) && !strchr("._-", base[i]))
      return -1;
  memcpy(name, base, n);
  name[n] = '\0';
  return strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ? -1 : 0;
}

static int pipe_change(orr_vm *vm, const orr_change *ch, json_t *data,
                       json_t **plan, orr_error *e) {
  const char *host = ch->keys[3], *key;
  json_t *pipes = json_object_get(vm->layout, "pipes");
  json_t *cur = json_object_get(pipes, host), *v;
  char name[64];
  struct stat st;
  int n = 0, rc;
  if (ch->op == ORR_CHANGE_REMOVE) {
    if (cur == NULL)
      return orr_error_set(e, ORR_ENOENT, "no mapped pipe at %s", host);
    n = (int)json_integer_value(json_object_get(cur, "n"));
    json_object_set_new(data, "pipe", json_pack("{s:s}", "host", host));
    return orr__qemu_plan_pipe_remove(n, plan, e);
  }
  if (host[0] != '/' || strlen(host) > 107)
    return orr_error_set(e, ORR_EINVAL,
                         "the host path must be absolute and fit a unix "
                         "socket (at most 107 bytes), got \"%s\"",
                         host);
  if (pipe_name(host, name, sizeof name) != 0)
    return orr_error_set(e, ORR_EINVAL,
                         "the last part of the host path (%s), without "
                         "\".sock\", names the guest's port: it must be "
                         "1..63 of [A-Za-z0-9._-]",
                         host);
  if (cur != NULL)
    return orr_error_set(e, ORR_EEXIST,
                         "%s is already a mapped pipe of this VM", host);
  json_object_foreach(pipes, key, v) {
    if (strcmp(json_string_value(json_object_get(v, "name")), name) == 0)
      return orr_error_set(e, ORR_EEXIST,
                           "the guest port name \"%s\" is taken by the pipe "
                           "at %s",
                           name, key);
  }
  if (strcmp(name, ORR_QEMU_QGA_PORT_NAME) == 0)
    return orr_error_set(e, ORR_EINVAL, "\"%s\" is the guest agent's port",
                         name);
  if (json_is_null(json_object_get(vm->layout, "qga")) && !vm->backend->dry_run)
    return orr_error_set(e, ORR_ENOTSUP,
                         "the VM has no virtio-serial controller for the "
                         "pipe's port (it comes with the guest agent: create "
                         "option guest_agent, the default for the default "
                         "guest)");
  if (vm->eng->policy != NULL || vm->confined)
    return orr_error_set(e, ORR_ENOTSUP,
                         "a confined engine cannot have QEMU listen on a new "
                         "socket while it runs (QEMU opens the path itself)");
  /* QEMU unlinks whatever is at the path before it listens there. */
  if (lstat(host, &st) == 0)
    return orr_error_set(e, ORR_EEXIST,
                         "%s exists; QEMU would replace it with its socket: "
                         "give a path where nothing is",
                         host);
  for (bool taken = true; taken && n < ORR_QEMU_PIPE_MAX; n += taken) {
    taken = false;
    json_object_foreach(pipes, key, v) {
      if (json_integer_value(json_object_get(v, "n")) == n)
        taken = true;
    }
  }
  if (n >= ORR_QEMU_PIPE_MAX)
    return orr_error_set(e, ORR_EBUSY,
                         "the VM has %d mapped pipes, as many as its "
                         "virtio-serial bus has ports for",
                         ORR_QEMU_PIPE_MAX);
  if ((rc = orr__qemu_plan_pipe_add(n, host, name, plan, e)) != 0)
    return rc;
  json_object_set_new(data, "pipe",
                      json_pack("{s:s, s:{s:i, s:s}}", "host", host, "value",
                                "n", n, "name", name));
  return 0;
}

static void commit_pipe(orr_vm *vm, const json_t *p) {
  json_t *pipes = json_object_get(vm->layout, "pipes");
  const char *host = json_string_value(json_object_get(p, "host"));
  json_t *value = json_object_get(p, "value");
  if (host == NULL || vm->layout == NULL)
    return;
  if (pipes == NULL) {
    pipes = json_object();
    json_object_set_new(vm->layout, "pipes", pipes);
  }
  if (value) {
    json_object_set(pipes, host, value);
  } else {
    /* A received pipe's socket was renamed to host from the name QEMU bound
    ** (orr__qemu_migrate_arrived): QEMU removed that name, not this one. */
    struct stat st;
    if (json_object_get(json_object_get(pipes, host), "bound") != NULL &&
        lstat(host, &st) == 0 && S_ISSOCK(st.st_mode))
      unlink(host);
    json_object_del(pipes, host);
  }
}

int orr__qemu_plan_change(orr_vm *vm, const orr_change *ch, json_t *data,
                          json_t **plan, orr_error *e) {
  *plan = NULL;
  if (keys_are(ch, 6, "Devices", "Scsi"))
    return scsi(vm, ch, data, plan, e);
  if (keys_are(ch, 4, "Devices", "VirtualPci") ||
      keys_are(ch, 4, "Devices", "NetworkAdapters"))
    return pci_like(vm, ch, data, plan, e);
  if (keys_are(ch, 4, "Devices", "Plan9"))
    return plan9(vm, ch, plan, e);
  if (keys_are(ch, 4, "ComputeTopology", "Memory"))
    return memory(vm, ch, plan, e);
  if (keys_are(ch, 5, "Devices", "VirtualPMem"))
    return pmem(vm, ch, data, plan, e);
  if (keys_are(ch, 4, "Devices", "MappedPipes"))
    return pipe_change(vm, ch, data, plan, e);
  return orr_error_set(e, ORR_ENOTSUP,
                       "the qemu backend does not change this resource at "
                       "run time");
}

void orr__qemu_commit(orr_vm *vm, const json_t *data) {
  commit_fdsets(vm, json_object_get(data, "fdsets"));
  if (json_object_get(data, "pipe"))
    commit_pipe(vm, json_object_get(data, "pipe"));
  orr__qemu_snapshot_commit(vm, data);
  if (json_object_get(data, "free_port"))
    release_port(vm, json_string_value(json_object_get(data, "qdev")));
}

void orr__qemu_abandon(orr_vm *vm, const json_t *data) {
  orr__qemu_snapshot_abandon(vm, data);
  const char *qdev = json_string_value(json_object_get(data, "claimed"));
  if (qdev != NULL)
    release_port(vm, qdev);
}

/* ---- devices QEMU deleted without being asked ---- */

/* The live document's Plan9 share of that Name, or NULL. */
static bool has_share(orr_vm *vm, const char *name) {
  size_t i;
  json_t *s;
  json_array_foreach(
      json_object_get(vm_obj(vm->doc, "Devices", "Plan9"), "Shares"), i, s) {
    const char *n = json_string_value(json_object_get(s, "Name"));
    if (n && strcmp(n, name) == 0)
      return true;
  }
  return false;
}

/* A device of the document that QEMU reports deleted although nobody asked
** the engine to remove it: the guest ejected it (a PCI slot powered off
** from inside), or a raw device_del went around the engine. Named by the
** Remove request of its resource; NULL for a qdev that is none of the
** document's. */
json_t *orr__qemu_device_gone(orr_vm *vm, const char *qdev) {
  json_t *devs = vm_obj(vm->doc, "Devices", NULL);
  char path[256];
  const char *key;
  json_t *v;
  int c, lun, k, n = 0;
  if (sscanf(qdev, "disk-%d-%d%n", &c, &lun, &n) == 2 && qdev[n] == '\0' &&
      orr_scsi_controller_guid(c) != NULL) {
    char lunkey[16];
    const char *guid = orr_scsi_controller_guid(c);
    snprintf(lunkey, sizeof lunkey, "%d", lun);
    if (json_object_get(
            json_object_get(
                json_object_get(json_object_get(devs, "Scsi"), guid),
                "Attachments"),
            lunkey) == NULL)
      return NULL;
    snprintf(path, sizeof path, "VirtualMachine/Devices/Scsi/%s/Attachments/%s",
             guid, lunkey);
    return json_pack("{s:s, s:s}", "ResourcePath", path, "RequestType",
                     "Remove");
  }
  if (sscanf(qdev, "p9-%d%n", &k, &n) == 1 && qdev[n] == '\0') {
    json_object_foreach(vm->p9_index, key, v) {
      if (json_integer_value(v) == k && has_share(vm, key))
        return json_pack("{s:s, s:s, s:{s:s}}", "ResourcePath",
                         "VirtualMachine/Devices/Plan9/Shares", "RequestType",
                         "Remove", "Settings", "Name", key);
    }
    return NULL;
  }
  static const char *const groups[] = {"VirtualPci", "NetworkAdapters"};
  for (size_t i = 0; i < 2; i++) {
    json_object_foreach(json_object_get(devs, groups[i]), key, v) {
      orr_qemu_name q =
          i == 0 ? orr__qemu_vpci_qdev(key) : orr__qemu_nic_qdev(key);
      if (strcmp(q.s, qdev) != 0)
        continue;
      snprintf(path, sizeof path, "VirtualMachine/Devices/%s/%s", groups[i],
               key);
      return json_pack("{s:s, s:s}", "ResourcePath", path, "RequestType",
                       "Remove");
    }
  }
  return NULL;
}

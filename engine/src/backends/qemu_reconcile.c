/*
** Re-attaching to a QEMU whose engine died: settle the journal against
** what QEMU itself reports, so the re-opened document equals QEMU and every
** image lock is released or owned.
**
** 1. Ask: the devices (qom-list /machine/peripheral), the
**    block nodes (query-named-block-nodes), each disk's top node
**    (query-block) and the netdevs (HMP "info network": QEMU 7.2 has no
**    QMP query for them).
** 2. Settle each intent. An add is adopted when every object its plan
**    creates is there, undone otherwise (what it did create is then an
**    orphan, deleted below). A removal is adopted when its device is gone;
**    otherwise its device_del is sent again (the first may never have left,
**    or QEMU answers "already in the process of unplug") and a SCSI disk,
**    which QEMU unplugs without the guest, is waited for; a PCI device
**    stays a pending removal. A disk snapshot or merge is settled by the
**    disk's top node (settle_disk_top). A change QEMU cannot report (a
**    balloon target) is undone with its plan's undo steps: its outcome was
**    not on disk, so it was never reported done.
** 3. Delete what the naming scheme says is the engine's (disk-, vpci-,
**    nic-, p9- devices; snap-, sfile-, file-, fmt-, qos- nodes; net-
**    netdevs) and neither the document nor an adopted intent accounts
**    for: devices first (a disk's DEVICE_DELETED is waited for), then
**    nodes from the top (snap, sfile, qos, fmt, file), and netdevs whose
**    NIC is gone. Document devices QEMU no longer has are reported as
**    gone.
** 4. Root ports: each hot-plugged PCI device's port is what QEMU says
**    (qom-get parent_bus); a port whose device is gone is free again.
** 5. fd mode (a QEMU launched confined, hostres.h): the fdsets QEMU holds
**    (query-fdsets) that no disk of the document or adopted add accounts
**    for are removed (remove-fd): a half-done add's, or a removal's whose
**    cleanup never ran. A paused QEMU closes a removed fdset only once it
**    runs again (QEMU 7.2), so those are kept in the layout's lingering
**    list for the next RESUME; a running one gets the list's removals now.
**    An adopted add's fdsets enter the layout with its commit.
** Every command is idempotent against the state it is sent in, so a crash
** in the middle of this is settled the same way by the next open.
*/
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"
#include "orrery/document.h"
#include "qemu_backend.h"

#define WAIT_MS 10000

typedef struct {
  orr_vm *vm;
  const json_t *intents;
  json_t *outcomes;   /* per intent: "adopted", "undone", "pending" */
  json_t *gone;       /* document devices QEMU lacks */
  json_t *devs;       /* QEMU's devices: id -> true */
  json_t *nodes;      /* block node names -> true */
  json_t *tops;       /* disk qdev -> its top block node (query-block) */
  json_t *netdevs;    /* netdev ids -> true */
  json_t *fdsets;     /* QEMU's fdsets of the engine's range: id -> true */
  json_t *chardevs;   /* QEMU's pipe chardevs (pipechr-N) -> true */
  json_t *objects;    /* QEMU's PMem memory backends (pmem-N-mem) -> true */
  json_t *gone_pipes; /* layout pipes whose device QEMU lacks: host -> true */
  json_t *fds_kept;   /* the fdsets the document and adopted adds hold */
  json_t *waiting;    /* devices whose DEVICE_DELETED is awaited */
  json_t *ports;      /* device id -> root port, from parent_bus */
  json_t *expected;   /* names the document and adopted intents account for */
  json_t *retry;      /* nodes still in use by a device being finalized */
  json_t *late;       /* deleted after the outcomes were decided */
  int retries;
  int inflight;
  int phase;
  int err;
  char errmsg[400];
  uv_timer_t *timer;
} rec;

static void advance(rec *c);

static void set_err(rec *c, int status, const char *what, const char *msg) {
  if (c->err != 0)
    return;
  c->err = status;
  snprintf(c->errmsg, sizeof c->errmsg, "reconcile: %s: %s", what, msg);
}

/* ---- sending ---- */

typedef void (*rec_reply)(rec *c, json_t *result);

typedef struct {
  rec *c;
  rec_reply fn;
  bool must; /* a failure fails the open */
  char what[64];
  char node[64]; /* a blockdev-del to retry while its node is in use */
} pending;

static void on_reply(void *arg, int status, json_t *result,
                     const char *errmsg) {
  pending *p = arg;
  rec *c = p->c;
  c->inflight--;
  /* A disk that has left QOM can still hold its node for a few ms, until
  ** QEMU finalizes it (its DEVICE_DELETED, gone with the dead engine). */
  if (status != 0 && p->node[0] && strstr(errmsg, "in use"))
    json_array_append_new(c->retry, json_string(p->node));
  if (status != 0 && p->must)
    set_err(c, status, p->what, errmsg);
  else if (status == 0 && p->fn)
    p->fn(c, result);
  free(p);
  advance(c);
}

static pending *rsend(rec *c, const char *cmd, json_t *args, rec_reply fn,
                      bool must) {
  pending *p = calloc(1, sizeof *p);
  p->c = c;
  p->fn = fn;
  p->must = must;
  snprintf(p->what, sizeof p->what, "%s", cmd);
  if (orr_qmp_send(c->vm->qmp, cmd, args, on_reply, p) != 0) {
    if (must)
      set_err(c, ORR_EVMGONE, cmd, "QEMU is gone");
    free(p);
    return NULL;
  }
  c->inflight++;
  return p;
}

static void delete_node(rec *c, const char *name) {
  pending *p = rsend(c, "blockdev-del", json_pack("{s:s}", "node-name", name),
                     NULL, false);
  if (p)
    snprintf(p->node, sizeof p->node, "%s", name);
}

/* ---- phase 1: what QEMU has ---- */

static void got_devices(rec *c, json_t *r) {
  size_t i;
  json_t *p;
  json_array_foreach(r, i, p) {
    const char *type = json_string_value(json_object_get(p, "type"));
    if (type && strncmp(type, "child<", 6) == 0)
      json_object_set_new(
          c->devs, json_string_value(json_object_get(p, "name")), json_true());
  }
}

static void got_nodes(rec *c, json_t *r) {
  size_t i;
  json_t *n;
  json_array_foreach(r, i, n) {
    const char *name = json_string_value(json_object_get(n, "node-name"));
    if (name)
      json_object_set_new(c->nodes, name, json_true());
  }
}

/* query-block: each device's top node (an external snapshot's overlay
** once one is over the disk). qdev is the device's id, or its QOM path. */
static void got_block(rec *c, json_t *r) {
  size_t i;
  json_t *b;
  json_array_foreach(r, i, b) {
    const char *qdev = json_string_value(json_object_get(b, "qdev"));
    const char *node = json_string_value(
        json_object_get(json_object_get(b, "inserted"), "node-name"));
    char id[64];
    if (qdev == NULL || node == NULL)
      continue;
    if (strncmp(qdev, "/machine/peripheral/", 20) == 0)
      qdev += 20;
    snprintf(id, sizeof id, "%.*s", (int)strcspn(qdev, "/"), qdev);
    json_object_set_new(c->tops, id, json_string(node));
  }
}

/* "info network": "<id>: index=..." per line, a NIC's backend below it
** as " \ <id>: ...". */
static void got_network(rec *c, json_t *r) {
  const char *text = json_string_value(r);
  char line[512];
  while (text && *text) {
    size_t n = strcspn(text, "\n");
    const char *s = line;
    snprintf(line, sizeof line, "%.*s", (int)(n < 511 ? n : 511), text);
    text += n + (text[n] == '\n');
    while (*s == ' ' || *s == '\\')
      s++;
    line[strcspn(line, ":")] = '\0';
    if (orr__qemu_name_kind(s) == 'N')
      json_object_set_new(c->netdevs, s, json_true());
  }
}

/* query-fdsets: [{"fdset-id": N, "fds": [...]}, ...]. */
static void got_fdsets(rec *c, json_t *r) {
  size_t i;
  json_t *s;
  json_array_foreach(r, i, s) {
    json_t *id = json_object_get(s, "fdset-id");
    char key[24];
    if (!json_is_integer(id) ||
        orr__qemu_fdset_disk(json_integer_value(id)) < 0)
      continue; /* not of the engine's naming: left alone */
    snprintf(key, sizeof key, "%lld", (long long)json_integer_value(id));
    json_object_set_new(c->fdsets, key, json_true());
  }
}

/* query-chardev: [{"label": id, ...}]; only the pipes' are the engine's to
** sweep (the others are the argv's, for life). */
static void got_chardevs(rec *c, json_t *r) {
  size_t i;
  json_t *ch;
  json_array_foreach(r, i, ch) {
    const char *label = json_string_value(json_object_get(ch, "label"));
    if (label && strncmp(label, "pipechr-", 8) == 0)
      json_object_set_new(c->chardevs, label, json_true());
  }
}

/* qom-list /objects: the PMem devices' memory backends. */
static void got_objects(rec *c, json_t *r) {
  size_t i;
  json_t *p;
  json_array_foreach(r, i, p) {
    const char *name = json_string_value(json_object_get(p, "name"));
    int k, end = 0;
    if (name && sscanf(name, "pmem-%3d-mem%n", &k, &end) == 1 &&
        name[end] == '\0' && k >= 0 && k <= 255 &&
        strcmp(name, orr__qemu_pmem_memdev(k).s) == 0)
      json_object_set_new(c->objects, name, json_true());
  }
}

/* ---- what the document and the intents account for ---- */

/* The fdsets in ids are held by a disk that stays. */
static void keep_fdsets(rec *c, const json_t *ids) {
  size_t i;
  json_t *id;
  json_array_foreach(ids, i, id) {
    char key[24];
    snprintf(key, sizeof key, "%lld", (long long)json_integer_value(id));
    json_object_set_new(c->fds_kept, key, json_true());
  }
}

static void expect(rec *c, const char *name) {
  json_object_set_new(c->expected, name, json_true());
}

static void expect_disk(rec *c, int ctrl, int lun, bool qos) {
  int k = (int)json_array_size(
      json_object_get(json_object_get(c->vm->layout, "snapshots"),
                      orr__qemu_disk_key(ctrl, lun).s));
  expect(c, orr__qemu_disk_qdev(ctrl, lun).s);
  expect(c, orr__qemu_disk_file_node(ctrl, lun).s);
  expect(c, orr__qemu_disk_fmt_node(ctrl, lun).s);
  if (qos)
    expect(c, orr__qemu_disk_qos_node(ctrl, lun).s);
  /* Its external snapshots' overlays (qemu_snapshot.c). */
  for (; k > 0; k--) {
    expect(c, orr__qemu_snap_node(ctrl, lun, k).s);
    expect(c, orr__qemu_snap_file_node(ctrl, lun, k).s);
  }
}

/* Calls fn(c, qdev, resource) for every hot-pluggable device of the
** document, with the names its objects have in QEMU. */
static void doc_devices(rec *c, void (*fn)(rec *c, const char *qdev)) {
  json_t *devs =
      json_object_get(json_object_get(c->vm->doc, "VirtualMachine"), "Devices");
  const char *key, *lun;
  json_t *v, *a, *share;
  size_t i;
  json_object_foreach(json_object_get(devs, "Scsi"), key, v) {
    int ctrl = orr_scsi_controller_index(key);
    json_object_foreach(json_object_get(v, "Attachments"), lun, a) {
      fn(c, orr__qemu_disk_qdev(ctrl, atoi(lun)).s);
    }
  }
  json_object_foreach(json_object_get(devs, "VirtualPci"), key, v) {
    fn(c, orr__qemu_vpci_qdev(key).s);
  }
  json_object_foreach(json_object_get(devs, "NetworkAdapters"), key, v) {
    fn(c, orr__qemu_nic_qdev(key).s);
  }
  json_object_foreach(
      json_object_get(json_object_get(devs, "VirtualPMem"), "Devices"), key,
      v) {
    fn(c, orr__qemu_pmem_qdev(atoi(key)).s);
  }
  json_array_foreach(json_object_get(json_object_get(devs, "Plan9"), "Shares"),
                     i, share) {
    json_t *k = json_object_get(
        c->vm->p9_index, json_string_value(json_object_get(share, "Name")));
    if (json_is_integer(k))
      fn(c, orr__qemu_p9_qdev((int)json_integer_value(k)).s);
  }
}

/* The objects a device of the naming scheme comes with. */
static void expect_device(rec *c, const char *qdev) {
  bool qos = json_is_true(json_object_get(c->vm->layout, "throttle_group"));
  int ctrl, lun;
  expect(c, qdev);
  if (sscanf(qdev, "disk-%d-%d", &ctrl, &lun) == 2) {
    expect_disk(c, ctrl, lun, qos);
    keep_fdsets(c, json_object_get(json_object_get(c->vm->layout, "fdsets"),
                                   orr__qemu_disk_key(ctrl, lun).s));
  } else if (strncmp(qdev, "nic-", 4) == 0) {
    expect(c, orr__qemu_nic_netdev(qdev + 4).s);
  } else if (sscanf(qdev, "pmem-%d", &ctrl) == 1) {
    expect(c, orr__qemu_pmem_memdev(ctrl).s);
  }
}

/* The names an intent's plan creates (the "do" steps that add). */
static void plan_creates(const json_t *plan, json_t *out) {
  size_t i;
  json_t *s;
  json_array_foreach(json_object_get(plan, "do"), i, s) {
    const char *x = json_string_value(json_object_get(s, "execute"));
    const json_t *args = json_object_get(s, "arguments");
    const char *name = NULL;
    if (strcmp(x, "blockdev-add") == 0)
      name = json_string_value(json_object_get(args, "node-name"));
    else if (strcmp(x, "device_add") == 0 || strcmp(x, "netdev_add") == 0 ||
             strcmp(x, "chardev-add") == 0 || strcmp(x, "object-add") == 0)
      name = json_string_value(json_object_get(args, "id"));
    if (name)
      json_array_append_new(out, json_string(name));
  }
}

static bool has(const json_t *set, const char *name) {
  return json_object_get(set, name) != NULL;
}

static bool is_disk(const char *qdev) {
  return strncmp(qdev, "disk-", 5) == 0;
}

/* Sends device_del; a SCSI disk's deletion (QEMU completes it alone) is
** waited for. The answer does not matter: "already in the process of
** unplug" is the pending unplug we meant. */
static void delete_device(rec *c, const char *qdev) {
  rsend(c, "device_del", json_pack("{s:s}", "id", qdev), NULL, false);
  if (is_disk(qdev))
    json_object_set_new(c->waiting, qdev, json_true());
}

/* ---- phase 2: settle the intents, delete orphan devices ---- */

/* The mapped pipes of the layout (the document has no field for them):
** present ones are accounted for with their chardev; gone_pipes (when
** given) collects those QEMU no longer has. */
static void layout_pipes(rec *c, bool note_gone) {
  const char *host;
  json_t *v;
  json_object_foreach(json_object_get(c->vm->layout, "pipes"), host, v) {
    int n = (int)json_integer_value(json_object_get(v, "n"));
    if (!note_gone || has(c->devs, orr__qemu_pipe_qdev(n).s)) {
      expect(c, orr__qemu_pipe_qdev(n).s);
      expect(c, orr__qemu_pipe_chardev(n).s);
    } else {
      json_object_set_new(c->gone_pipes, host, json_true());
    }
  }
}

/* The disk device whose node (snap-<c>-<lun>-<k>) name is, or "". */
static orr_qemu_name disk_of_snap(const char *name) {
  orr_qemu_name q = {""};
  int ctrl, lun, k;
  if (name && sscanf(name, "snap-%d-%d-%d", &ctrl, &lun, &k) == 3)
    q = orr__qemu_disk_qdev(ctrl, lun);
  return q;
}

/* Is node the top of its disk in QEMU now? */
static bool is_top(rec *c, const char *node) {
  const char *top =
      json_string_value(json_object_get(c->tops, disk_of_snap(node).s));
  return top != NULL && strcmp(top, node) == 0;
}

/* An undone snapshot's overlay file goes, but only one exactly as the
** engine writes them (qemu_snapshot.c: a regular file of ours, 0600, four
** clusters, a qcow2 header naming below): state.json names the path, and
** a file it names must not be deleted on its word alone. */
static void remove_overlay(const char *path, const char *below) {
  struct stat st;
  orr_image_refs refs;
  orr_error e = {0, ""};
  int fd;
  if (path == NULL || below == NULL ||
      (fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)) < 0)
    return;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
      (st.st_mode & 07777) == 0600 && st.st_size == ORR_QEMU_OVERLAY_SIZE &&
      orr__image_refs(fd, "qcow2", &refs, &e) == 0 &&
      strcmp(refs.backing, below) == 0)
    unlink(path);
  close(fd);
}

/*
** External disk snapshots and merges (qemu_snapshot.c) are settled by
** what QEMU says is each disk's top node, not by the nodes existing: a
** snapshot's overlay nodes exist before they go over the disk. A snapshot
** happened when each overlay is its disk's top (a transaction: all or
** none); if not, its nodes are orphans (deleted below) and the overlay
** files it wrote go. A merge happened when its overlay is no longer the
** top; if it still is, its job (running, or ready and waiting to be
** completed by the dead engine) is cancelled: the overlay stays the top.
** NULL: not such an intent.
*/
static const char *settle_disk_top(rec *c, const json_t *it) {
  const json_t *plan = json_object_get(it, "Plan");
  const json_t *last =
      json_array_get(json_object_get(plan, "do"),
                     json_array_size(json_object_get(plan, "do")) - 1);
  const char *x = json_string_value(json_object_get(last, "execute"));
  const json_t *args = json_object_get(last, "arguments"), *a;
  size_t i;
  bool all = true;
  if (x == NULL)
    return NULL;
  if (strcmp(x, "block-commit") == 0) {
    if (!is_top(c, json_string_value(json_object_get(args, "device"))))
      return "adopted";
    rsend(c, "block-job-cancel",
          json_deep_copy(
              json_object_get(json_object_get(plan, "cancel"), "arguments")),
          NULL, false);
    return "undone";
  }
  if (strcmp(x, "blockdev-snapshot") == 0) {
    all = is_top(c, json_string_value(json_object_get(args, "overlay")));
  } else if (strcmp(x, "transaction") == 0) {
    json_array_foreach(json_object_get(args, "actions"), i, a) {
      if (!is_top(c, json_string_value(json_object_get(
                         json_object_get(a, "data"), "overlay"))))
        all = false;
    }
  } else {
    return NULL;
  }
  if (all)
    return "adopted";
  json_array_foreach(json_object_get(json_object_get(it, "Data"), "overlays"),
                     i, a) {
    remove_overlay(json_string_value(json_object_get(a, "overlay")),
                   json_string_value(json_object_get(a, "below")));
  }
  return "undone";
}

static void settle(rec *c) {
  size_t i;
  json_t *it;
  const char *name;
  json_t *v;
  doc_devices(c, expect_device);
  layout_pipes(c, false);
  json_array_foreach(c->intents, i, it) {
    const json_t *plan = json_object_get(it, "Plan");
    const char *w = json_string_value(json_object_get(plan, "wait_deleted"));
    json_t *made = json_array();
    size_t k;
    json_t *n;
    const char *outcome = "undone";
    plan_creates(plan, made);
    const char *by_top = settle_disk_top(c, it);
    if (by_top != NULL) {
      outcome = by_top;
      if (strcmp(outcome, "adopted") == 0)
        json_array_foreach(made, k, n) expect(c, json_string_value(n));
    } else if (w != NULL) {
      /* A removal: the device stays expected until it is gone. */
      if (!has(c->devs, w)) {
        outcome = "adopted";
      } else {
        outcome = "pending";
        delete_device(c, w);
      }
    } else if (json_array_size(made) > 0) {
      bool all = true;
      json_array_foreach(made, k, n) {
        const char *s = json_string_value(n);
        if (!has(c->devs, s) && !has(c->nodes, s) && !has(c->netdevs, s) &&
            !has(c->chardevs, s) && !has(c->objects, s))
          all = false;
      }
      if (all) {
        outcome = "adopted";
        json_array_foreach(made, k, n) expect(c, json_string_value(n));
      }
    } else {
      /* Not readable back: its undo steps, newest first. */
      json_t *steps = json_object_get(plan, "do");
      for (k = json_array_size(steps); k-- > 0;) {
        json_t *u = json_object_get(json_array_get(steps, k), "undo");
        if (json_is_object(u))
          rsend(c, json_string_value(json_object_get(u, "execute")),
                json_deep_copy(json_object_get(u, "arguments")), NULL, false);
      }
    }
    json_array_append_new(c->outcomes, json_string(outcome));
    json_decref(made);
  }
  /* Orphan devices: ours by name, accounted for by nothing. */
  json_object_foreach(c->devs, name, v) {
    if (orr__qemu_name_kind(name) == 'd' && !has(c->expected, name))
      delete_device(c, name);
  }
}

/* A document device: accounted for with its objects when QEMU has it;
** reported gone when it does not and no removal in the journal explains
** that (then its nodes and netdev are orphans like any others). */
static void expect_present(rec *c, const char *qdev) {
  size_t i;
  json_t *it;
  if (has(c->devs, qdev)) {
    expect_device(c, qdev);
    return;
  }
  json_array_foreach(c->intents, i, it) {
    const char *w = json_string_value(
        json_object_get(json_object_get(it, "Plan"), "wait_deleted"));
    if (w && strcmp(w, qdev) == 0)
      return;
  }
  json_array_append_new(c->gone, json_string(qdev));
}

/* ---- phase 3: orphan nodes and netdevs, root ports ---- */

static void got_bus(rec *c, json_t *r, const char *qdev) {
  const char *bus = json_string_value(r);
  const char *pre = "/machine/peripheral/";
  char port[64];
  if (bus == NULL || strncmp(bus, pre, strlen(pre)) != 0)
    return;
  snprintf(port, sizeof port, "%.*s", (int)strcspn(bus + strlen(pre), "/"),
           bus + strlen(pre));
  json_object_set_new(c->ports, qdev, json_string(port));
}

typedef struct {
  rec *c;
  char qdev[64];
} bus_query;

static void on_bus(void *arg, int status, json_t *result, const char *errmsg) {
  bus_query *q = arg;
  rec *c = q->c;
  (void)errmsg;
  c->inflight--;
  if (status == 0)
    got_bus(c, result, q->qdev);
  free(q);
  advance(c);
}

/* fd mode: every fdset of the engine's range nothing keeps is removed; the
** lingering list (a paused QEMU) is brought up to date. */
static void sweep_fdsets(rec *c) {
  orr_vm *vm = c->vm;
  bool running = vm->state == ORR_VM_RUNNING;
  const char *key;
  json_t *v;
  /* Removals a dead engine left lingering are finished now if QEMU runs
  ** (as the RESUME it missed would have), else they linger on. */
  if (running)
    orr__qemu_drop_lingering(vm);
  json_object_foreach(c->fdsets, key, v) {
    json_t *args;
    if (has(c->fds_kept, key))
      continue;
    args = json_pack("{s:I}", "fdset-id", (json_int_t)strtoll(key, NULL, 10));
    if (!running)
      orr__qemu_linger_fdset(vm, args);
    rsend(c, "remove-fd", args, NULL, false);
  }
}

static bool hotplug_pci(const char *qdev) {
  return strncmp(qdev, "vpci-", 5) == 0 || strncmp(qdev, "nic-", 4) == 0;
}

static void cleanup(rec *c) {
  static const char *const tops[] = {"snap-", "sfile-", "qos-", "fmt-",
                                     "file-"};
  size_t i;
  json_t *it;
  const char *name;
  json_t *v;
  /* Removals whose device went meanwhile are done; their nodes are no
  ** longer accounted for. */
  json_array_foreach(c->intents, i, it) {
    const char *w = json_string_value(
        json_object_get(json_object_get(it, "Plan"), "wait_deleted"));
    if (w && !has(c->devs, w))
      json_array_set_new(c->outcomes, i, json_string("adopted"));
  }
  json_object_clear(c->expected);
  json_object_clear(c->fds_kept);
  doc_devices(c, expect_present);
  layout_pipes(c, true);
  json_array_foreach(c->intents, i, it) {
    const json_t *plan = json_object_get(it, "Plan");
    const char *o = json_string_value(json_array_get(c->outcomes, i));
    if (strcmp(o, "adopted") == 0 &&
        !json_is_string(json_object_get(plan, "wait_deleted"))) {
      json_t *made = json_array(), *n;
      size_t k;
      plan_creates(plan, made);
      json_array_foreach(made, k, n) expect(c, json_string_value(n));
      json_decref(made);
      keep_fdsets(c, json_object_get(plan, "fdsets"));
    }
  }
  /* A merge adopted: its overlay's nodes (still counted for the disk,
  ** whose layout loses them only with the commit) go, as its after steps
  ** would have deleted them. */
  json_array_foreach(c->intents, i, it) {
    const json_t *plan = json_object_get(it, "Plan"), *d;
    const char *o = json_string_value(json_array_get(c->outcomes, i));
    size_t k;
    if (strcmp(o, "adopted") != 0 || json_object_get(plan, "job") == NULL)
      continue;
    json_array_foreach(json_object_get(plan, "after"), k, d) {
      json_object_del(c->expected,
                      json_string_value(json_object_get(
                          json_object_get(d, "arguments"), "node-name")));
    }
  }
  sweep_fdsets(c);
  /* A pipe's chardev whose device is not there (an add cut short, a
  ** removal whose cleanup never ran): removed, so its number is free. */
  json_object_foreach(c->chardevs, name, v) {
    if (!has(c->expected, name))
      rsend(c, "chardev-remove", json_pack("{s:s}", "id", name), NULL, false);
  }
  /* A PMem backend whose device never came (an add cut short). */
  json_object_foreach(c->objects, name, v) {
    if (!has(c->expected, name))
      rsend(c, "object-del", json_pack("{s:s}", "id", name), NULL, false);
  }
  for (i = 0; i < 5; i++)
    json_object_foreach(c->nodes, name, v) {
      if (strncmp(name, tops[i], strlen(tops[i])) == 0 &&
          orr__qemu_name_kind(name) == 'n' && !has(c->expected, name))
        delete_node(c, name);
    }
  json_object_foreach(c->netdevs, name, v) {
    /* Never under a NIC still plugged (QEMU would cut it off). */
    if (!has(c->expected, name) &&
        !has(c->devs, orr__qemu_nic_qdev(name + 4).s))
      rsend(c, "netdev_del", json_pack("{s:s}", "id", name), NULL, false);
  }
  json_object_foreach(c->devs, name, v) {
    if (hotplug_pci(name) && has(c->expected, name)) {
      bus_query *q = calloc(1, sizeof *q);
      char path[128];
      q->c = c;
      snprintf(q->qdev, sizeof q->qdev, "%s", name);
      snprintf(path, sizeof path, "/machine/peripheral/%s", name);
      if (orr_qmp_send(
              c->vm->qmp, "qom-get",
              json_pack("{s:s, s:s}", "path", path, "property", "parent_bus"),
              on_bus, q) == 0)
        c->inflight++;
      else
        free(q);
    }
  }
}

/* Each hot-plug port holds what QEMU says is in it. */
static void fix_ports(rec *c) {
  size_t i;
  json_t *p;
  const char *qdev;
  json_t *port;
  json_array_foreach(json_object_get(c->vm->layout, "ports"), i, p) {
    const char *d = json_string_value(json_object_get(p, "device"));
    if (d && hotplug_pci(d) && !(has(c->devs, d) && has(c->expected, d)))
      json_object_set_new(p, "device", json_null());
  }
  json_object_foreach(c->ports, qdev, port) {
    json_array_foreach(json_object_get(c->vm->layout, "ports"), i, p) {
      const char *d = json_string_value(json_object_get(p, "device"));
      if (d && strcmp(d, qdev) == 0)
        json_object_set_new(p, "device", json_null());
      if (json_equal(json_object_get(p, "id"), port))
        json_object_set_new(p, "device", json_string(qdev));
    }
  }
}

/* ---- driving ---- */

static void finish(rec *c) {
  orr_vm *vm = c->vm;
  orr_error e = {0, ""};
  vm->reconciling = NULL;
  if (c->timer)
    uv_close((uv_handle_t *)c->timer, (uv_close_cb)free);
  if (c->err == 0) {
    const char *host;
    json_t *v;
    fix_ports(c);
    /* Pipes QEMU no longer has (removed while nobody listened). */
    json_object_foreach(c->gone_pipes, host, v) {
      json_object_del(json_object_get(vm->layout, "pipes"), host);
    }
    vm->owns_run_dir = true; /* its QEMU's exit ends the directory too */
  } else {
    orr_error_set(&e, c->err, "%s", c->errmsg);
  }
  orr__vm_reconciled(vm, c->err, c->outcomes, c->gone, &e);
  if (c->err == 0) {
    size_t i;
    json_t *ev;
    json_array_foreach(c->late, i, ev)
        orr__qemu_event(vm, "DEVICE_DELETED", ev);
  }
  json_decref(c->outcomes);
  json_decref(c->gone);
  json_decref(c->devs);
  json_decref(c->nodes);
  json_decref(c->tops);
  json_decref(c->netdevs);
  json_decref(c->fdsets);
  json_decref(c->chardevs);
  json_decref(c->objects);
  json_decref(c->gone_pipes);
  json_decref(c->fds_kept);
  json_decref(c->waiting);
  json_decref(c->ports);
  json_decref(c->expected);
  json_decref(c->retry);
  json_decref(c->late);
  free(c);
}

static void on_wait_timeout(uv_timer_t *t) {
  rec *c = t->data;
  json_object_clear(c->waiting); /* what is still there stays pending */
  advance(c);
}

static void on_retry(uv_timer_t *t) {
  rec *c = t->data;
  json_t *names = c->retry;
  size_t i;
  json_t *n;
  c->retry = json_array();
  c->phase = 3;
  json_array_foreach(names, i, n) delete_node(c, json_string_value(n));
  json_decref(names);
  advance(c);
}

static void advance(rec *c) {
  if (c->inflight > 0)
    return;
  if (c->err != 0 || c->vm->exited) {
    if (c->err == 0)
      set_err(c, ORR_EVMGONE, "QEMU", "exited while re-attaching");
    finish(c);
    return;
  }
  if (c->phase == 1) {
    c->phase = 2;
    settle(c);
    if (c->inflight > 0 || json_object_size(c->waiting) > 0) {
      c->timer = malloc(sizeof *c->timer);
      uv_timer_init(c->vm->eng->loop, c->timer);
      c->timer->data = c;
      uv_timer_start(c->timer, on_wait_timeout, WAIT_MS, 0);
      if (c->inflight > 0)
        return;
    }
  }
  if (c->phase == 2) {
    if (json_object_size(c->waiting) > 0)
      return;
    if (c->timer)
      uv_timer_stop(c->timer);
    c->phase = 3;
    cleanup(c);
    if (c->inflight > 0)
      return;
  }
  if (c->phase == 4)
    return; /* a retry is due */
  /* Nodes a finalizing disk still held: again in 50 ms, for up to 5 s. */
  if (json_array_size(c->retry) > 0 && c->retries++ < 100) {
    c->phase = 4;
    if (c->timer == NULL) {
      c->timer = malloc(sizeof *c->timer);
      uv_timer_init(c->vm->eng->loop, c->timer);
      c->timer->data = c;
    }
    uv_timer_start(c->timer, on_retry, 50, 0);
    return;
  }
  finish(c);
}

void orr__qemu_reconcile_event(orr_vm *vm, json_t *data) {
  rec *c = vm->reconciling;
  const char *dev = json_string_value(json_object_get(data, "device"));
  if (c == NULL || dev == NULL)
    return;
  /* Once the outcomes are decided (phase 3 on), a device the guest lets go
  ** of now completes its pending removal as any later one would: the event
  ** goes to the VM layer when the open is done. */
  if (c->phase >= 3)
    json_array_append_new(c->late, json_incref(data));
  json_object_del(c->devs, dev);
  json_object_del(c->waiting, dev);
  advance(c);
}

void orr__qemu_reconcile(orr_vm *vm, const json_t *intents) {
  rec *c = calloc(1, sizeof *c);
  c->vm = vm;
  c->intents = intents;
  c->outcomes = json_array();
  c->gone = json_array();
  c->devs = json_object();
  c->nodes = json_object();
  c->tops = json_object();
  c->netdevs = json_object();
  c->fdsets = json_object();
  c->chardevs = json_object();
  c->objects = json_object();
  c->gone_pipes = json_object();
  c->fds_kept = json_object();
  c->waiting = json_object();
  c->ports = json_object();
  c->expected = json_object();
  c->retry = json_array();
  c->late = json_array();
  c->phase = 1;
  vm->reconciling = c;
  rsend(c, "qom-list", json_pack("{s:s}", "path", "/machine/peripheral"),
        got_devices, true);
  rsend(c, "query-named-block-nodes", json_pack("{s:b}", "flat", 1), got_nodes,
        true);
  rsend(c, "human-monitor-command",
        json_pack("{s:s}", "command-line", "info network"), got_network, true);
  rsend(c, "query-fdsets", NULL, got_fdsets, true);
  rsend(c, "query-chardev", NULL, got_chardevs, true);
  rsend(c, "qom-list", json_pack("{s:s}", "path", "/objects"), got_objects,
        true);
  rsend(c, "query-block", NULL, got_block, true);
  advance(c);
}

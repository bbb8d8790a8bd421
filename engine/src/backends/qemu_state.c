/*
** The qemu backend's parts of a state file (orr_backend.check_state): the
** process identity, the layout and every intent's plan, checked before
** orrery.open believes any of it (the core's fields are vm_state.c's). A
** bad file is ORR_EINVAL naming the field; nothing here may crash on any
** input (fuzz/fuzz_state.c).
**
** A plan may hold only commands the engine writes, on names of its own
** naming scheme; in fd mode (a confined QEMU, hostres.h) also add-fd and
** remove-fd, and then only of the fdsets of the intent's own disk: a file
** naming another disk's fdset (or one outside the engine's range) would
** make a re-attaching engine release descriptors a running disk needs.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orrery/document.h"
#include "qemu_backend.h"

/* The path the layout must give for file in run_dir, or NULL (no such
** file) when nullable and the value is null. */
static int check_path(const json_t *layout, const char *key,
                      const char *run_dir, const char *file, bool nullable,
                      orr_error *e) {
  char want[512];
  const json_t *v = json_object_get(layout, key);
  snprintf(want, sizeof want, "%s/%s", run_dir, file);
  if (nullable && json_is_null(v))
    return 0;
  if (!json_is_string(v) || strcmp(json_string_value(v), want) != 0)
    return orr_error_set(e, ORR_EINVAL,
                         "state.json: Layout.%s must be %s%s (files of this "
                         "VM live in its own runtime directory)",
                         key, want, nullable ? " or null" : "");
  return 0;
}

/* One of the engine's fdset ids (fd mode, hostres.h); disk >= 0: of that
** disk (ctrl * 64 + lun). */
static bool is_fdset(const json_t *v, int disk) {
  int d = json_is_integer(v) ? orr__qemu_fdset_disk(json_integer_value(v)) : -1;
  return d >= 0 && (disk < 0 || d == disk);
}

/* An array of at most max of the engine's fdset ids (of disk, if >= 0). */
static bool is_fdsets(const json_t *v, size_t max, int disk) {
  size_t i;
  json_t *id;
  if (!json_is_array(v) || json_array_size(v) > max)
    return false;
  json_array_foreach(v, i, id) {
    if (!is_fdset(id, disk))
      return false;
  }
  return true;
}

static bool is_str(const json_t *v, const char *s) {
  return json_is_string(v) && strcmp(json_string_value(v), s) == 0;
}

/* A disk's merge job id, "commit-<c>-<lun>" (qemu_plan.c). */
static bool is_job(const json_t *v) {
  const char *s = json_string_value(v);
  int c, lun, end = 0;
  char want[32];
  if (s == NULL || sscanf(s, "commit-%d-%d%n", &c, &lun, &end) != 2 ||
      s[end] != '\0' || c < 0 || c > 3 || lun < 0 || lun > 63)
    return false;
  snprintf(want, sizeof want, "commit-%d-%d", c, lun);
  return strcmp(s, want) == 0;
}

static bool is_node(const json_t *v) {
  return orr__qemu_name_kind(json_string_value(v)) == 'n';
}

/* {node, overlay}: blockdev-snapshot's arguments on the engine's nodes. */
static bool snapshot_args(const json_t *a) {
  return json_is_object(a) && json_object_size(a) == 2 &&
         is_node(json_object_get(a, "node")) &&
         is_node(json_object_get(a, "overlay"));
}

/* The steps of an external disk snapshot and its merge (qemu_plan.c):
** blockdev-snapshot, a transaction of them, block-commit. 1: not one of
** those (the caller goes on), 0: good, else the error. */
static int check_snapshot_cmd(const char *x, const json_t *args,
                              const char *field, orr_error *e) {
  bool ok;
  if (strcmp(x, "blockdev-snapshot") == 0) {
    ok = snapshot_args(args);
  } else if (strcmp(x, "transaction") == 0) {
    const json_t *acts = json_object_get(args, "actions"), *a;
    size_t i;
    ok = json_is_object(args) && json_object_size(args) == 1 &&
         json_is_array(acts) && json_array_size(acts) >= 1 &&
         json_array_size(acts) <= 4 * 64;
    json_array_foreach(acts, i, a) {
      const char *t = json_string_value(json_object_get(a, "type"));
      if (!json_is_object(a) || json_object_size(a) != 2 || t == NULL ||
          strcmp(t, "blockdev-snapshot") != 0 ||
          !snapshot_args(json_object_get(a, "data")))
        ok = false;
    }
  } else if (strcmp(x, "block-commit") == 0) {
    ok = json_is_object(args) && json_object_size(args) == 3 &&
         is_job(json_object_get(args, "job-id")) &&
         is_node(json_object_get(args, "device")) &&
         is_node(json_object_get(args, "base-node"));
  } else {
    return 1;
  }
  if (!ok)
    return orr_error_set(e, ORR_EINVAL,
                         "state.json: %s: %s must name only the engine's own "
                         "block nodes (and merge job)",
                         field, x);
  return 0;
}

/* A command a plan or reconcile may send again: deletions of the engine's
** own names, the two value updates, and (fd mode) an image's descriptor
** into one of the engine's fdsets or the fdset's removal. */
static int check_cmd(const json_t *c, bool in_do, const char *field,
                     orr_error *e) {
  static const char *const do_cmds[] = {
      "blockdev-add", "device_add", "netdev_add", "device_del", "balloon",
      "qom-set",      "add-fd",     "object-add", "chardev-add"};
  static const char *const undo_cmds[] = {
      "blockdev-del", "netdev_del", "device_del", "balloon",
      "qom-set",      "remove-fd",  "object-del", "chardev-remove"};
  const char *x = json_string_value(json_object_get(c, "execute"));
  const json_t *args = json_object_get(c, "arguments");
  const json_t *fd = json_object_get(c, "fd");
  const char *name = NULL;
  char kind = 0;
  size_t i, n = in_do ? 9 : 8;
  if (x != NULL && in_do && json_object_get(c, "fd") == NULL) {
    int rc = check_snapshot_cmd(x, args, field, e);
    if (rc != 1)
      return rc;
  }
  for (i = 0; x && i < n && strcmp(x, in_do ? do_cmds[i] : undo_cmds[i]); i++)
    ;
  if (x == NULL || i == n || !json_is_object(args))
    return orr_error_set(
        e, ORR_EINVAL, "state.json: %s is not a step the engine writes", field);
  /* "fd": the request's descriptor the step was sent with (add-fd only). */
  if (strcmp(x, "add-fd") == 0 || strcmp(x, "remove-fd") == 0) {
    bool add = strcmp(x, "add-fd") == 0;
    if (!is_fdset(json_object_get(args, "fdset-id"), -1) ||
        json_object_size(args) != 1 ||
        (add ? !json_is_integer(fd) || json_integer_value(fd) < 0 ||
                   json_integer_value(fd) >= 1024
             : fd != NULL))
      return orr_error_set(e, ORR_EINVAL,
                           "state.json: %s: %s needs only one of the "
                           "engine's fdset ids%s",
                           field, x, add ? " and an fd index" : "");
    return 0;
  }
  if (fd != NULL)
    return orr_error_set(e, ORR_EINVAL,
                         "state.json: %s: only add-fd passes a descriptor",
                         field);
  if (strcmp(x, "blockdev-add") == 0 || strcmp(x, "blockdev-del") == 0)
    name = json_string_value(json_object_get(args, "node-name")), kind = 'n';
  else if (strcmp(x, "netdev_add") == 0 || strcmp(x, "netdev_del") == 0)
    name = json_string_value(json_object_get(args, "id")), kind = 'N';
  else if (strcmp(x, "device_add") == 0 || strcmp(x, "device_del") == 0)
    name = json_string_value(json_object_get(args, "id")), kind = 'd';
  else if (strcmp(x, "object-add") == 0 || strcmp(x, "object-del") == 0)
    name = json_string_value(json_object_get(args, "id")), kind = 'o';
  else if (strcmp(x, "chardev-add") == 0 || strcmp(x, "chardev-remove") == 0)
    name = json_string_value(json_object_get(args, "id")), kind = 'c';
  else if (strcmp(x, "balloon") == 0) {
    json_int_t v = json_integer_value(json_object_get(args, "value"));
    if (!json_is_integer(json_object_get(args, "value")) || v < (1 << 20))
      return orr_error_set(e, ORR_EINVAL,
                           "state.json: %s: balloon needs a value of at "
                           "least 1 MiB",
                           field);
    return 0;
  } else {
    const char *path = json_string_value(json_object_get(args, "path"));
    const char *prop = json_string_value(json_object_get(args, "property"));
    json_t *val = json_object_get(args, "value");
    /* virtio-mem's requested size: bytes, a whole number of blocks. */
    if (path != NULL && strcmp(path, ORR_QEMU_VMEM_PATH) == 0 && prop &&
        strcmp(prop, "requested-size") == 0 && json_is_integer(val) &&
        json_integer_value(val) >= 0 &&
        json_integer_value(val) % (ORR_QEMU_VMEM_BLOCK_MB << 20) == 0)
      return 0;
    if (path == NULL || strcmp(path, ORR_QEMU_THROTTLE_PATH) != 0)
      return orr_error_set(e, ORR_EINVAL,
                           "state.json: %s: qom-set only of %s or of %s's "
                           "requested-size",
                           field, ORR_QEMU_THROTTLE_PATH, ORR_QEMU_VMEM_PATH);
    return 0;
  }
  if (orr__qemu_name_kind(name) != kind)
    return orr_error_set(e, ORR_EINVAL,
                         "state.json: %s names \"%.64s\", not one of the "
                         "engine's own %s names",
                         field, name ? name : "nothing",
                         kind == 'n'   ? "block node"
                         : kind == 'N' ? "netdev"
                         : kind == 'o' ? "object"
                         : kind == 'c' ? "chardev"
                                       : "device");
  return 0;
}

static int check_plan(const json_t *plan, const char *field, orr_error *e) {
  const char *key;
  json_t *v, *c;
  size_t i, max_steps;
  char f[96];
  int rc;
  json_object_foreach((json_t *)plan, key, v) {
    if (strcmp(key, "do") != 0 && strcmp(key, "wait_deleted") != 0 &&
        strcmp(key, "after") != 0 && strcmp(key, "ignored") != 0 &&
        strcmp(key, "verifiable") != 0 && strcmp(key, "fdsets") != 0 &&
        strcmp(key, "job") != 0 && strcmp(key, "complete") != 0 &&
        strcmp(key, "cancel") != 0)
      return orr_error_set(e, ORR_EINVAL,
                           "state.json: %s has an unknown key \"%.64s\"", field,
                           key);
  }
  /* A disk merge: its job, and the job's completion and cancel (reconcile
  ** may send the cancel). */
  v = json_object_get(plan, "job");
  if (v != NULL || json_object_get(plan, "complete") ||
      json_object_get(plan, "cancel")) {
    const json_t *cp = json_object_get(plan, "complete"),
                 *cn = json_object_get(plan, "cancel");
    const json_t *ca = json_object_get(cp, "arguments"),
                 *na = json_object_get(cn, "arguments");
    if (!is_job(v) || json_object_size(cp) != 2 ||
        !is_str(json_object_get(cp, "execute"), "job-complete") ||
        json_object_size(ca) != 1 ||
        !json_equal(json_object_get(ca, "id"), v) ||
        json_object_size(cn) != 2 ||
        !is_str(json_object_get(cn, "execute"), "block-job-cancel") ||
        json_object_size(na) != 2 ||
        !json_equal(json_object_get(na, "device"), v) ||
        !json_is_true(json_object_get(na, "force")))
      return orr_error_set(e, ORR_EINVAL,
                           "state.json: %s: job must be a disk's merge job "
                           "(\"commit-<c>-<lun>\") with its complete and "
                           "cancel commands",
                           field);
  }
  /* A disk add in fd mode puts each image of its chain in an fdset first. */
  v = json_object_get(plan, "fdsets");
  if (v && !is_fdsets(v, ORR_QEMU_FDSET_MEMBERS, -1))
    return orr_error_set(e, ORR_EINVAL,
                         "state.json: %s.fdsets must be an array of at most "
                         "%d of the engine's fdset ids",
                         field, ORR_QEMU_FDSET_MEMBERS);
  v = json_object_get(plan, "do");
  /* A group snapshot: two adds per disk, then the transaction. */
  max_steps = 8 + ORR_QEMU_FDSET_MEMBERS;
  c = json_array_get(v, json_array_size(v) - 1);
  if (is_str(json_object_get(c, "execute"), "transaction"))
    max_steps = 2 * 4 * 64 + 1;
  if (!json_is_array(v) || json_array_size(v) > max_steps)
    return orr_error_set(e, ORR_EINVAL,
                         "state.json: %s.do must be an array of at most %zu "
                         "steps",
                         field, max_steps);
  json_array_foreach(v, i, c) {
    const json_t *undo = json_object_get(c, "undo");
    snprintf(f, sizeof f, "%s.do[%zu]", field, i);
    if (!json_is_object(c) || (rc = check_cmd(c, true, f, e)) != 0)
      return json_is_object(c) ? rc
                               : orr_error_set(e, ORR_EINVAL,
                                               "state.json: %s must be an "
                                               "object",
                                               f);
    snprintf(f, sizeof f, "%s.do[%zu].undo", field, i);
    if (undo && !json_is_null(undo) &&
        (!json_is_object(undo) || (rc = check_cmd(undo, false, f, e)) != 0))
      return json_is_object(undo) ? rc
                                  : orr_error_set(e, ORR_EINVAL,
                                                  "state.json: %s must be "
                                                  "an object",
                                                  f);
  }
  v = json_object_get(plan, "wait_deleted");
  if (v && !json_is_null(v) && orr__qemu_name_kind(json_string_value(v)) != 'd')
    return orr_error_set(e, ORR_EINVAL,
                         "state.json: %s.wait_deleted must name one of the "
                         "engine's own devices",
                         field);
  v = json_object_get(plan, "after");
  if (v && !json_is_null(v)) {
    if (!json_is_array(v) || json_array_size(v) > 8 + ORR_QEMU_FDSET_MEMBERS)
      return orr_error_set(e, ORR_EINVAL,
                           "state.json: %s.after must be an array of at "
                           "most %d commands",
                           field, 8 + ORR_QEMU_FDSET_MEMBERS);
    json_array_foreach(v, i, c) {
      snprintf(f, sizeof f, "%s.after[%zu]", field, i);
      if (!json_is_object(c))
        return orr_error_set(e, ORR_EINVAL, "state.json: %s must be an object",
                             f);
      if ((rc = check_cmd(c, false, f, e)) != 0)
        return rc;
    }
  }
  v = json_object_get(plan, "ignored");
  if (v && !json_is_array(v))
    return orr_error_set(e, ORR_EINVAL,
                         "state.json: %s.ignored must be an array", field);
  v = json_object_get(plan, "verifiable");
  if (v && !json_is_boolean(v))
    return orr_error_set(e, ORR_EINVAL,
                         "state.json: %s.verifiable must be true or false",
                         field);
  return 0;
}

/* The fdset ids a plan's steps name (add-fd and remove-fd, undo steps
** included) into all, and those its do steps add into adds, in order. */
static void plan_fdsets(const json_t *plan, json_t *all, json_t *adds) {
  static const char *const lists[] = {"do", "after"};
  for (size_t l = 0; l < 2; l++) {
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(plan, lists[l]), i, c) {
      const json_t *cmds[2] = {c, json_object_get(c, "undo")};
      for (size_t k = 0; k < 2; k++) {
        const char *x = json_string_value(json_object_get(cmds[k], "execute"));
        json_t *id =
            json_object_get(json_object_get(cmds[k], "arguments"), "fdset-id");
        if (x == NULL || (strcmp(x, "add-fd") != 0 && strcmp(x, "remove-fd")))
          continue;
        json_array_append(all, id);
        if (l == 0 && k == 0 && strcmp(x, "add-fd") == 0)
          json_array_append(adds, id);
      }
    }
  }
}

/* An intent's descriptors (fd mode) are its own disk's: every fdset its
** plan names, the plan's "fdsets" (what its add-fd steps add, in order),
** and its commit's "fdsets", which the layout takes on adoption: the ids
** an add put in, none for a removal. */
static int check_intent_fdsets(const json_t *it, const char *field,
                               orr_error *e) {
  const json_t *data = json_object_get(it, "Data");
  const json_t *plan = json_object_get(it, "Plan");
  const json_t *keys = json_object_get(data, "keys");
  const json_t *df = json_object_get(data, "fdsets");
  const json_t *pf = json_object_get(plan, "fdsets");
  const char *group = json_string_value(json_array_get(keys, 2));
  json_t *all = json_array(), *adds = json_array(), *id;
  int disk = -1, c = -1, lun = 0, rc = 0;
  size_t i;
  /* vm_state.c checked the keys' shape: a SCSI attachment's are
  ** VirtualMachine/Devices/Scsi/<controller GUID>/Attachments/<lun>. */
  if (json_array_size(keys) == 6 && group && strcmp(group, "Scsi") == 0 &&
      (c = orr_scsi_controller_index(
           json_string_value(json_array_get(keys, 3)))) >= 0) {
    lun = atoi(json_string_value(json_array_get(keys, 5)));
    disk = c * 64 + lun;
  }
  plan_fdsets(plan, all, adds);
  if (pf != NULL)
    json_array_foreach(pf, i, id) json_array_append(all, id);
  json_array_foreach(all, i, id) {
    if (disk < 0 || !is_fdset(id, disk)) {
      rc = orr_error_set(e, ORR_EINVAL,
                         "state.json: %s.Plan names fdset %lld, which is "
                         "not one of its own disk's",
                         field, (long long)json_integer_value(id));
      goto out;
    }
  }
  if (pf ? !json_equal(adds, pf) : json_array_size(adds) > 0) {
    rc = orr_error_set(e, ORR_EINVAL,
                       "state.json: %s.Plan.fdsets must list the fdsets its "
                       "add-fd steps add, in order",
                       field);
    goto out;
  }
  if (df != NULL) {
    const json_t *ids = json_object_get(df, "ids");
    const json_t *want = json_object_get(data, "value") ? pf : NULL;
    const char *key = json_string_value(json_object_get(df, "key"));
    if (disk < 0 || key == NULL || strcmp(key, orr__qemu_disk_key(c, lun).s) ||
        !(want ? json_equal(ids, want) : ids == NULL || json_is_null(ids)))
      rc = orr_error_set(e, ORR_EINVAL,
                         "state.json: %s.Data.fdsets must be {key = its own "
                         "disk's \"<controller>-<lun>\", ids = the fdsets "
                         "its add-fd steps add, or null}",
                         field);
  }
out:
  json_decref(all);
  json_decref(adds);
  return rc;
}

/* The qemu backend's keys of an intent's Data (orr__qemu_plan_change adds
** them; the core checked its own, keys and value): a root port to free
** (free_port, qdev) or given back (claimed), a disk's fdsets. */
static int bad(orr_error *e, const char *field, const char *rule) {
  return orr_error_set(e, ORR_EINVAL, "state.json: %s %s", field, rule);
}

/* A disk key, "<c>-<lun>". */
static bool is_disk_key(const json_t *v) {
  const char *s = json_string_value(v);
  int c, lun, end = 0;
  return s != NULL && sscanf(s, "%d-%d%n", &c, &lun, &end) == 2 &&
         s[end] == '\0' && c >= 0 && c <= 3 && lun >= 0 && lun <= 63 &&
         strcmp(s, orr__qemu_disk_key(c, lun).s) == 0;
}

/* An external snapshot's Data (the core checks disks, held; a merge's
** ctrl, lun, held, below): the backend's overlays [{overlay, below, key}]
** (the files it wrote, what each is over) and a merge's merged (the disk
** key). */
static int check_snapshot_data(const char *commit, const json_t *data,
                               const char *f, orr_error *e) {
  bool snap = strcmp(commit, "snapshot") == 0;
  const char *key;
  json_t *v, *o;
  size_t i;
  json_object_foreach((json_t *)data, key, v) {
    if (snap ? strcmp(key, "disks") != 0 && strcmp(key, "held") != 0 &&
                   strcmp(key, "overlays") != 0
             : strcmp(key, "ctrl") != 0 && strcmp(key, "lun") != 0 &&
                   strcmp(key, "held") != 0 && strcmp(key, "below") != 0 &&
                   strcmp(key, "merged") != 0)
      return bad(e, f,
                 snap ? "may hold only disks, held and overlays"
                      : "may hold only ctrl, lun, held, below and merged");
  }
  if (!snap)
    return is_disk_key(json_object_get(data, "merged"))
               ? 0
               : bad(e, f, "merged must be the disk's \"<c>-<lun>\"");
  v = json_object_get(data, "overlays");
  if (!json_is_array(v) || json_array_size(v) > 4 * 64)
    return bad(e, f, "overlays must be an array");
  json_array_foreach(v, i, o) {
    const char *ov = json_string_value(json_object_get(o, "overlay"));
    const char *below = json_string_value(json_object_get(o, "below"));
    if (!json_is_object(o) || json_object_size(o) != 3 || ov == NULL ||
        ov[0] != '/' || below == NULL || below[0] != '/' ||
        !is_disk_key(json_object_get(o, "key")))
      return bad(e, f,
                 "overlays must be {overlay, below (absolute paths), key "
                 "(\"<c>-<lun>\")}");
  }
  return 0;
}

static int check_data_keys(const json_t *it, const char *field, orr_error *e) {
  const json_t *data = json_object_get(it, "Data");
  const char *key;
  json_t *v;
  char f[64];
  const char *commit = json_string_value(json_object_get(it, "Commit"));
  if (commit != NULL && strcmp(commit, "share") == 0)
    return 0; /* {name}: the core's */
  snprintf(f, sizeof f, "%s.Data", field);
  if (commit != NULL &&
      (strcmp(commit, "snapshot") == 0 || strcmp(commit, "disk_merge") == 0))
    return check_snapshot_data(commit, data, f, e);
  json_object_foreach((json_t *)data, key, v) {
    if (strcmp(key, "keys") != 0 && strcmp(key, "value") != 0 &&
        strcmp(key, "free_port") != 0 && strcmp(key, "qdev") != 0 &&
        strcmp(key, "claimed") != 0 && strcmp(key, "fdsets") != 0 &&
        strcmp(key, "pipe") != 0)
      return bad(e, f,
                 "may hold only keys, value, free_port, qdev, claimed, "
                 "fdsets and pipe");
  }
  /* A mapped pipe's: {host = the keys' path, value = {n, name} to add, none
  ** to remove}. */
  v = json_object_get(data, "pipe");
  if (v) {
    const json_t *val = json_object_get(v, "value");
    const json_t *n = json_object_get(val, "n");
    const char *host = json_string_value(json_object_get(v, "host"));
    const char *name = json_string_value(json_object_get(val, "name"));
    const char *k3 =
        json_string_value(json_array_get(json_object_get(data, "keys"), 3));
    if (commit == NULL || strcmp(commit, "pipe") != 0 || host == NULL ||
        k3 == NULL || strcmp(host, k3) != 0 ||
        json_object_size(v) != (val ? 2u : 1u) ||
        (val != NULL && (!json_is_object(val) || json_object_size(val) != 2 ||
                         !json_is_integer(n) || json_integer_value(n) < 0 ||
                         json_integer_value(n) >= ORR_QEMU_PIPE_MAX ||
                         name == NULL || name[0] == '\0' || strlen(name) > 63)))
      return bad(e, f,
                 "pipe must be {host = the intent's path, value = {n, "
                 "name} (an add) or none (a removal)}, in a \"pipe\" "
                 "commit");
  }
  /* A disk's fdsets (fd mode): {key = "<ctrl>-<lun>", ids = [...]}, no
  ** ids when the disk goes. Their values are the backend's to check in
  ** the layout once committed; here only the shape. */
  v = json_object_get(data, "fdsets");
  if (v) {
    const json_t *k = json_object_get(v, "key"),
                 *ids = json_object_get(v, "ids");
    size_t i;
    json_t *id;
    if (!json_is_object(v) || !json_is_string(k) ||
        json_string_length(k) == 0 || json_string_length(k) > 8 ||
        json_object_size(v) != (ids ? 2u : 1u) ||
        (ids && !json_is_null(ids) &&
         (!json_is_array(ids) || json_array_size(ids) > 32)))
      return bad(e, f,
                 "fdsets must be {key = \"<controller>-<lun>\", ids = at "
                 "most 32 fdset ids or null}");
    json_array_foreach(ids, i, id) {
      if (!json_is_integer(id))
        return bad(e, f, "fdsets ids must be integers");
    }
  }
  v = json_object_get(data, "free_port");
  if (v && !(json_is_string(v) && strcmp(json_string_value(v), "yes") == 0))
    return bad(e, f, "free_port must be \"yes\"");
  v = json_object_get(data, "qdev");
  if (v && (!json_is_string(v) || json_string_length(v) == 0 ||
            json_string_length(v) > 63))
    return bad(e, f, "qdev must be a string of 1 to 63 bytes");
  v = json_object_get(data, "claimed"); /* the root port an add took */
  if (v && (!json_is_string(v) || json_string_length(v) == 0 ||
            json_string_length(v) > 63))
    return bad(e, f, "claimed must be a string of 1 to 63 bytes");
  return 0;
}

/* A received pipe's bound name: a socket in the host path's directory. */
static bool bound_beside(const char *bound, const char *host) {
  size_t dir = (size_t)(strrchr(host, '/') - host);
  return bound != NULL && strlen(bound) > dir + 1 &&
         strncmp(bound, host, dir) == 0 && bound[dir] == '/' &&
         strchr(bound + dir + 1, '/') == NULL;
}

/* The qemu backend's parts of a state file: the process identity, the
** layout (every path exactly where this runtime directory puts it: a file
** naming a QMP socket elsewhere is refused) and every intent's plan. */
int orr__qemu_check_state(const json_t *st, const char *run_dir, orr_error *e) {
  static const char *const keys[] = {"ports",
                                     "ignored",
                                     "throttle_group",
                                     "qmp",
                                     "pidfile",
                                     "qga",
                                     "vnc",
                                     "files",
                                     "fdsets",
                                     "fdsets_lingering",
                                     "confinement",
                                     "incoming",
                                     "virtio_mem",
                                     "pmem_room_mb",
                                     "pipes",
                                     "hotplug_memory",
                                     "com_moved",
                                     "snapshots",
                                     NULL};
  const json_t *layout = json_object_get(st, "Layout"), *v, *it;
  const char *key;
  json_t *val;
  size_t i;
  int rc;
  v = json_object_get(st, "ProcessId");
  if (!json_is_integer(v) || json_integer_value(v) < 2 ||
      json_integer_value(v) > 4194304)
    return orr_error_set(e, ORR_EINVAL,
                         "state.json: ProcessId must be a pid in 2..4194304");
  v = json_object_get(st, "StartTime");
  if (!json_is_integer(v) || json_integer_value(v) < 1)
    return orr_error_set(e, ORR_EINVAL,
                         "state.json: StartTime must be a positive integer "
                         "(the process's start time in clock ticks)");
  json_object_foreach((json_t *)layout, key, val) {
    for (i = 0; keys[i] && strcmp(keys[i], key) != 0; i++)
      ;
    if (keys[i] == NULL)
      return orr_error_set(e, ORR_EINVAL,
                           "state.json: Layout has an unknown key "
                           "\"%.64s\"",
                           key);
  }
  /* A clone's deferred restore: done long before any re-attach. */
  v = json_object_get(layout, "incoming");
  if (v != NULL &&
      (!json_is_object(v) || !json_is_string(json_object_get(v, "uri")) ||
       !json_is_boolean(json_object_get(v, "ignore_shared"))))
    return orr_error_set(e, ORR_EINVAL,
                         "state.json: Layout.incoming must be {uri, "
                         "ignore_shared}");
  if ((rc = check_path(layout, "qmp", run_dir, ORR_QEMU_QMP_SOCK, false, e)) ||
      (rc = check_path(layout, "pidfile", run_dir, ORR_QEMU_PIDFILE, false,
                       e)) ||
      (rc = check_path(layout, "qga", run_dir, ORR_QEMU_QGA_SOCK, true, e)) ||
      (rc = check_path(layout, "vnc", run_dir, ORR_QEMU_VNC_SOCK, true, e)))
    return rc;
  if (!json_is_boolean(json_object_get(layout, "throttle_group")))
    return orr_error_set(e, ORR_EINVAL,
                         "state.json: Layout.throttle_group must be true or "
                         "false");
  v = json_object_get(layout, "ignored");
  if (!json_is_array(v))
    return orr_error_set(e, ORR_EINVAL,
                         "state.json: Layout.ignored must be an array");
  json_array_foreach(v, i, it) {
    if (!json_is_string(it))
      return orr_error_set(e, ORR_EINVAL,
                           "state.json: Layout.ignored must hold strings");
  }
  v = json_object_get(layout, "files");
  if (!json_is_array(v) || json_array_size(v) > 4)
    return orr_error_set(e, ORR_EINVAL,
                         "state.json: Layout.files must be an array");
  v = json_object_get(layout, "ports");
  if (!json_is_array(v) || json_array_size(v) > ORR_QEMU_MAX_PORTS)
    return orr_error_set(e, ORR_EINVAL,
                         "state.json: Layout.ports must be an array of at "
                         "most %d ports",
                         ORR_QEMU_MAX_PORTS);
  json_array_foreach(v, i, it) {
    const json_t *d = json_object_get(it, "device");
    const char *id = json_string_value(json_object_get(it, "id"));
    if (!json_is_object(it) || json_object_size(it) != 2 || id == NULL ||
        strcmp(id, orr__qemu_port_id((int)i).s) != 0 ||
        !(json_is_null(d) || (json_is_string(d) && json_string_length(d) > 0 &&
                              json_string_length(d) < 64 &&
                              strspn(json_string_value(d),
                                     "abcdefghijklmnopqrstuvwxyz"
                                     "0123456789-") == json_string_length(d))))
      return orr_error_set(e, ORR_EINVAL,
                           "state.json: Layout.ports[%zu] must be {id = "
                           "\"%s\", device = a device id or null}",
                           i, orr__qemu_port_id((int)i).s);
  }
  /* fd mode: each disk's fdsets, those a removal left, how QEMU is
  ** confined. */
  v = json_object_get(layout, "fdsets");
  if (v != NULL) {
    int c, lun, end;
    if (!json_is_object(v) || json_object_size(v) > 4 * 64)
      return orr_error_set(e, ORR_EINVAL,
                           "state.json: Layout.fdsets must be an object");
    json_object_foreach((json_t *)v, key, val) {
      if (sscanf(key, "%d-%d%n", &c, &lun, &end) != 2 || key[end] != '\0' ||
          c < 0 || c > 3 || lun < 0 || lun > 63 ||
          strcmp(key, orr__qemu_disk_key(c, lun).s) != 0 ||
          !is_fdsets(val, ORR_QEMU_FDSET_MEMBERS, c * 64 + lun))
        return orr_error_set(e, ORR_EINVAL,
                             "state.json: Layout.fdsets must map "
                             "\"<controller>-<lun>\" to that disk's own "
                             "fdset ids");
    }
  }
  v = json_object_get(layout, "fdsets_lingering");
  if (v != NULL && !is_fdsets(v, 4 * 64 * ORR_QEMU_FDSET_MEMBERS, -1))
    return orr_error_set(e, ORR_EINVAL,
                         "state.json: Layout.fdsets_lingering must be an "
                         "array of the engine's fdset ids");
  v = json_object_get(layout, "pipes");
  if (v != NULL) {
    const char *host;
    json_t *pv;
    if (!json_is_object(v) || json_object_size(v) > 64)
      return orr_error_set(e, ORR_EINVAL,
                           "state.json: Layout.pipes must be an object of at "
                           "most 64 pipes");
    json_object_foreach((json_t *)v, host, pv) {
      const json_t *n = json_object_get(pv, "n");
      const char *name = json_string_value(json_object_get(pv, "name"));
      const json_t *bound = json_object_get(pv, "bound");
      if (host[0] != '/' || strlen(host) > 107 || !json_is_integer(n) ||
          json_integer_value(n) < 0 ||
          json_integer_value(n) >= ORR_QEMU_PIPE_MAX || name == NULL ||
          name[0] == '\0' || strlen(name) > 64 ||
          json_object_size(pv) != 2 + (bound != NULL) ||
          (bound != NULL && !bound_beside(json_string_value(bound), host)))
        return orr_error_set(e, ORR_EINVAL,
                             "state.json: Layout.pipes: each must be "
                             "\"<absolute socket path>\": {n = 0..%d, name "
                             "= its guest port name[, bound = the name QEMU "
                             "bound, in the same directory]}",
                             ORR_QEMU_PIPE_MAX - 1);
    }
  }
  v = json_object_get(layout, "com_moved");
  if (v != NULL) {
    const char *host;
    json_t *tv;
    if (!json_is_object(v) || json_object_size(v) > 4)
      return orr_error_set(e, ORR_EINVAL,
                           "state.json: Layout.com_moved must be an object of "
                           "at most 4 COM ports");
    json_object_foreach((json_t *)v, host, tv) {
      if (host[0] != '/' || strlen(host) > 107 ||
          !bound_beside(json_string_value(tv), host))
        return orr_error_set(e, ORR_EINVAL,
                             "state.json: Layout.com_moved: each must be "
                             "\"<absolute socket path>\": the name QEMU "
                             "bound, in the same directory");
    }
  }
  v = json_object_get(layout, "hotplug_memory");
  if (v != NULL && (!json_is_object(v) || json_object_size(v) != 2 ||
                    !json_is_integer(json_object_get(v, "slots")) ||
                    json_integer_value(json_object_get(v, "slots")) < 0 ||
                    json_integer_value(json_object_get(v, "slots")) > 256 ||
                    !json_is_integer(json_object_get(v, "maxmem_mb")) ||
                    json_integer_value(json_object_get(v, "maxmem_mb")) < 1 ||
                    json_integer_value(json_object_get(v, "maxmem_mb")) >
                        4 * 1048576 + ORR_QEMU_PMEM_ROOM_MAX_MB))
    return orr_error_set(e, ORR_EINVAL,
                         "state.json: Layout.hotplug_memory must be {slots = "
                         "0..256, maxmem_mb = QEMU's -m maxmem in MiB}");
  /* External disk snapshots: per disk, the path below each overlay,
  ** oldest first (qemu_snapshot.c). */
  v = json_object_get(layout, "snapshots");
  if (v != NULL) {
    int c, lun, end;
    if (!json_is_object(v) || json_object_size(v) > 4 * 64)
      return orr_error_set(e, ORR_EINVAL,
                           "state.json: Layout.snapshots must be an object");
    json_object_foreach((json_t *)v, key, val) {
      bool ok = sscanf(key, "%d-%d%n", &c, &lun, &end) == 2 &&
                key[end] == '\0' && c >= 0 && c <= 3 && lun >= 0 && lun <= 63 &&
                strcmp(key, orr__qemu_disk_key(c, lun).s) == 0 &&
                json_is_array(val) &&
                json_array_size(val) <= ORR_QEMU_MAX_SNAPSHOTS;
      json_array_foreach(val, i, it) {
        const char *p = json_string_value(it);
        if (p == NULL || p[0] != '/' || strlen(p) > 4096)
          ok = false;
      }
      if (!ok)
        return orr_error_set(e, ORR_EINVAL,
                             "state.json: Layout.snapshots must map "
                             "\"<controller>-<lun>\" to at most %d absolute "
                             "paths (the image below each overlay)",
                             ORR_QEMU_MAX_SNAPSHOTS);
    }
  }
  v = json_object_get(layout, "pmem_room_mb");
  if (v != NULL && (!json_is_integer(v) || json_integer_value(v) < 1 ||
                    json_integer_value(v) > ORR_QEMU_PMEM_ROOM_MAX_MB))
    return orr_error_set(e, ORR_EINVAL,
                         "state.json: Layout.pmem_room_mb must be an integer "
                         "in 1..%lld",
                         ORR_QEMU_PMEM_ROOM_MAX_MB);
  v = json_object_get(layout, "virtio_mem");
  if (v != NULL) {
    const json_t *mx = json_object_get(v, "max_mb"),
                 *bt = json_object_get(v, "boot_mb");
    if (!json_is_object(v) || json_object_size(v) != 2 ||
        !json_is_integer(mx) || !json_is_integer(bt) ||
        json_integer_value(bt) < 1 ||
        json_integer_value(mx) <= json_integer_value(bt) ||
        json_integer_value(mx) > 1048576 ||
        !json_equal(bt, json_object_get(st, "BootMB")))
      return orr_error_set(e, ORR_EINVAL,
                           "state.json: Layout.virtio_mem must be {max_mb, "
                           "boot_mb}: boot_mb the VM's BootMB, max_mb above "
                           "it and at most 1048576");
  }
  v = json_object_get(layout, "confinement");
  if (v != NULL && (!json_is_object(v) || json_object_size(v) != 2 ||
                    !json_is_boolean(json_object_get(v, "descriptors")) ||
                    !json_is_integer(json_object_get(v, "landlock")) ||
                    json_integer_value(json_object_get(v, "landlock")) < 0 ||
                    json_integer_value(json_object_get(v, "landlock")) > 1000))
    return orr_error_set(e, ORR_EINVAL,
                         "state.json: Layout.confinement must be "
                         "{descriptors = true or false, landlock = an ABI "
                         "version}");
  json_array_foreach(json_object_get(st, "Intents"), i, it) {
    char f[48];
    snprintf(f, sizeof f, "Intents[%zu].Plan", i);
    if ((rc = check_plan(json_object_get(it, "Plan"), f, e)) != 0)
      return rc;
    snprintf(f, sizeof f, "Intents[%zu]", i);
    if ((rc = check_data_keys(it, f, e)) != 0 ||
        (rc = check_intent_fdsets(it, f, e)) != 0)
      return rc;
  }
  return 0;
}

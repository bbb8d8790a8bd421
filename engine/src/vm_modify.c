/*
** Run-time changes: a ModifySettingRequest is checked against the live
** document with the builder's rules, translated into a plan by the
** backend's translation layer, run by the request runner, and committed to
** the live document only on success.
*/
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/qemu_xlate.h"
#include "orrery/document.h"
#include "schema.h"
#include "vm_internal.h"

#define MAX_PARTS 8

typedef struct {
  orr_req *r;
  const char *path; /* ResourcePath */
  const char *type; /* RequestType or NULL */
  json_t *settings; /* borrowed, may be NULL */
  char *parts[MAX_PARTS];
  int nparts;
} modify_ctx;

static json_t *vm_obj(json_t *doc, const char *k1, const char *k2) {
  json_t *v = json_object_get(json_object_get(doc, "VirtualMachine"), k1);
  return k2 ? json_object_get(v, k2) : v;
}

/* ---- commits: apply the change to the live document ---- */

static void commit_fdsets(orr_vm *vm, const json_t *f) {
  const char *key = json_string_value(json_object_get(f, "key"));
  json_t *ids = json_object_get(f, "ids"), *all;
  if (key == NULL || vm->layout == NULL)
    return;
  all = json_object_get(vm->layout, "fdsets");
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

/* data: {"keys":[...], "value": v | absent (delete), "port": id, "free":
** port to release, "fdsets": {"key", "ids"} of a disk}. */
void orr__commit_path(orr_req *r) {
  json_t *keys = json_object_get(r->data, "keys");
  json_t *value = json_object_get(r->data, "value");
  json_t *cur = r->vm->doc;
  size_t n = json_array_size(keys);
  const char *free_port =
      json_string_value(json_object_get(r->data, "free_port"));
  for (size_t i = 0; i + 1 < n; i++) {
    const char *k = json_string_value(json_array_get(keys, i));
    json_t *next = json_object_get(cur, k);
    if (next == NULL) {
      next = json_object();
      json_object_set_new(cur, k, next);
    }
    cur = next;
  }
  const char *last = json_string_value(json_array_get(keys, n - 1));
  if (value)
    json_object_set(cur, last, value);
  else
    json_object_del(cur, last);
  commit_fdsets(r->vm, json_object_get(r->data, "fdsets"));
  if (free_port) {
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(r->vm->layout, "ports"), i, p) {
      if (json_equal(json_object_get(p, "device"),
                     json_object_get(r->data, "qdev")))
        json_object_set_new(p, "device", json_null());
    }
  }
}

static void commit_merge(orr_req *r) {
  json_t *keys = json_object_get(r->data, "keys");
  json_t *cur = r->vm->doc;
  size_t i;
  json_t *k;
  json_array_foreach(keys, i, k) {
    json_t *next = json_object_get(cur, json_string_value(k));
    if (next == NULL) {
      next = json_object();
      json_object_set_new(cur, json_string_value(k), next);
    }
    cur = next;
  }
  json_object_update(cur, json_object_get(r->data, "value"));
}

void orr__commit_remove_share(orr_req *r) {
  json_t *shares =
      json_object_get(vm_obj(r->vm->doc, "Devices", "Plan9"), "Shares");
  const char *name = json_string_value(json_object_get(r->data, "name"));
  size_t i;
  json_t *s;
  json_array_foreach(shares, i, s) {
    if (strcmp(json_string_value(json_object_get(s, "Name")), name) == 0) {
      json_array_remove(shares, i);
      return;
    }
  }
}

/* The commits an intent names in state.json. */
static const struct {
  const char *name;
  orr_req_commit fn;
} commits[] = {{"path", orr__commit_path},
               {"share", orr__commit_remove_share},
               {"merge", commit_merge}};

const char *orr__commit_name(orr_req_commit fn) {
  for (size_t i = 0; i < sizeof commits / sizeof *commits; i++)
    if (commits[i].fn == fn)
      return commits[i].name;
  return NULL;
}

orr_req_commit orr__commit_by_name(const char *name) {
  for (size_t i = 0; name && i < sizeof commits / sizeof *commits; i++)
    if (strcmp(commits[i].name, name) == 0)
      return commits[i].fn;
  return NULL;
}

/* ---- helpers ---- */

static int fail(modify_ctx *c, int code, const char *fmt, const char *a,
                const char *b) {
  char msg[400];
  snprintf(msg, sizeof msg, fmt, a ? a : "", b ? b : "");
  orr__req_fail(c->r, code, "%s: %s", c->path, msg);
  return code;
}

static int need_type(modify_ctx *c, const char *allowed) {
  char buf[64];
  const char *t = c->type ? c->type : "";
  snprintf(buf, sizeof buf, ",%s,", t);
  if (strstr(allowed, buf))
    return 0;
  return fail(c, ORR_EINVAL, "RequestType must be one of %s here, got \"%s\"",
              allowed, t);
}

/* Normalizes Settings as type; on failure the request fails. */
static json_t *settings_as(modify_ctx *c, const orr_type *type) {
  json_t *norm = NULL;
  orr_error e = {0, ""};
  if (c->settings == NULL) {
    fail(c, ORR_EINVAL, "Settings are required for this request%s%s", NULL,
         NULL);
    return NULL;
  }
  if (orr__schema_normalize(type, c->settings, "Settings", &norm, &e) != 0) {
    fail(c, e.code, "%s%s", e.msg, NULL);
    return NULL;
  }
  return norm;
}

/* The builder's cross-field rules on the document as it would become. */
static int check_rules(modify_ctx *c, const char *const *keys, json_t *value) {
  json_t *cand = json_deep_copy(c->r->vm->doc), *cur = cand;
  orr_error e = {0, ""};
  int rc;
  for (; keys[1]; keys++) {
    json_t *next = json_object_get(cur, keys[0]);
    if (next == NULL) {
      next = json_object();
      json_object_set_new(cur, keys[0], next);
    }
    cur = next;
  }
  json_object_set(cur, keys[0], value);
  rc = orr_doc_rules(cand, 1, &e);
  json_decref(cand);
  if (rc != 0)
    fail(c, rc, "%s%s", e.msg, NULL);
  return rc;
}

/* Holds the resource while the change is in flight (EBUSY for another). */
static int reserve(modify_ctx *c) {
  if (json_object_get(c->r->vm->reserved, c->path)) {
    for (orr_req *o = c->r->vm->reqs; o; o = o->next)
      if (o->in_doubt && !o->settled && o->reserve &&
          strcmp(o->reserve, c->path) == 0)
        return fail(c, ORR_EBUSY,
                    "a change to this resource timed out and is in doubt "
                    "until QEMU answers (the VM is unresponsive)%s%s",
                    NULL, NULL);
    return fail(c, ORR_EBUSY,
                "another change to this resource is in flight%s%s", NULL, NULL);
  }
  json_object_set_new(c->r->vm->reserved, c->path, json_true());
  c->r->reserve = strdup(c->path);
  return 0;
}

static json_t *keys_json(const char *const *keys) {
  json_t *a = json_array();
  for (; *keys; keys++)
    json_array_append_new(a, json_string(*keys));
  return a;
}

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

/* A port claimed for an add is given back if the add ends uncommitted:
** when it fails, or, in doubt, when it is rolled back. */
static void unclaim_port(orr_req *r) {
  const char *qdev = json_string_value(json_object_get(r->data, "claimed"));
  if (qdev != NULL)
    release_port(r->vm, qdev);
}

/* ---- resources ---- */

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

/* What a change's host files are opened through: judged under the engine's
** policy; the plan backend keeps nothing open. A QEMU launched confined
** gets descriptors from whichever engine drives it: its Landlock domain is
** for life, so it may not be able to open a path itself. */
static orr_hostres *request_hostres(const orr_vm *vm) {
  orr_hostres *hr = orr__hostres_new(vm->eng->policy, ORR_HR_QMP,
                                     vm->backend == &orr__backend_plan);
  if (vm->confined)
    orr__hostres_pass_fds(hr);
  return hr;
}

static int scsi(modify_ctx *c) {
  orr_vm *vm = c->r->vm;
  int ctrl = orr_scsi_controller_index(c->parts[3]);
  const char *lunkey = c->parts[5];
  json_t *attachments, *plan = NULL;
  orr_error e = {0, ""};
  bool tg = json_is_true(json_object_get(vm->layout, "throttle_group"));
  const char *keys[] = {"VirtualMachine", "Devices", "Scsi", c->parts[3],
                        "Attachments",    lunkey,    NULL};
  int lun, rc;
  if (ctrl < 0)
    return fail(c, ORR_EINVAL,
                "controller \"%s\" is not one of the four HCS SCSI controller "
                "GUIDs%s",
                c->parts[3], NULL);
  if (orr__check_lun_key(lunkey, strlen(lunkey)) != NULL)
    return fail(c, ORR_EINVAL, "LUN must be 0..63, got \"%s\"%s", lunkey, NULL);
  lun = atoi(lunkey);
  attachments = json_object_get(
      json_object_get(vm_obj(vm->doc, "Devices", "Scsi"), c->parts[3]),
      "Attachments");
  if (json_object_get(vm_obj(vm->doc, "Devices", "Scsi"), c->parts[3]) == NULL)
    return fail(c, ORR_ENOENT,
                "SCSI controller %s is not in the VM's document (controllers "
                "are added at build time)%s",
                c->parts[3], NULL);
  if (need_type(c, ",Add,Remove,"))
    return -1;
  if (strcmp(c->type, "Add") == 0) {
    json_t *att;
    if (json_object_get(attachments, lunkey))
      return fail(c, ORR_EEXIST, "LUN %s is already used by %s", lunkey,
                  json_string_value(json_object_get(
                      json_object_get(attachments, lunkey), "Path")));
    if ((att = settings_as(c, &orr__t_attachment)) == NULL)
      return -1;
    if (check_rules(c, keys, att) || reserve(c)) {
      json_decref(att);
      return -1;
    }
    /* The request holds the image's descriptors until QEMU has them. */
    c->r->hr = request_hostres(vm);
    rc = orr__qemu_plan_scsi_add(ctrl, lun, att, tg, c->r->hr, &plan, &e);
    c->r->data = json_pack("{s:o, s:o}", "keys", keys_json(keys), "value", att);
    disk_fdsets(c->r->data, ctrl, lun, json_object_get(plan, "fdsets"));
  } else {
    if (json_object_get(attachments, lunkey) == NULL)
      return fail(c, ORR_ENOENT, "LUN %s is not attached on controller %s",
                  lunkey, c->parts[3]);
    c->r->data = json_pack("{s:o}", "keys", keys_json(keys));
    disk_fdsets(c->r->data, ctrl, lun, NULL);
    c->r->commit = orr__commit_path;
    if (orr__req_join_unplug(c->r, c->path))
      return 0;
    if (reserve(c))
      return -1;
    rc = orr__qemu_plan_scsi_remove(ctrl, lun, tg,
                                    disk_fdsets_of(vm, ctrl, lun), &plan, &e);
  }
  if (rc != 0)
    return fail(c, rc, "%s%s", e.msg, NULL);
  c->r->plan = plan;
  c->r->commit = orr__commit_path;
  orr__req_run(c->r);
  return 0;
}

typedef int (*add_plan_fn)(const char *guid, const json_t *settings,
                           const char *port, orr_hostres *hr, json_t **plan,
                           orr_error *e);
typedef int (*remove_plan_fn)(const char *guid, json_t **plan, orr_error *e);

/* VPCI devices and NICs: keyed by a GUID, each in its own root port. */
static int pci_like(modify_ctx *c, const char *group, const orr_type *type,
                    orr_qemu_name qdev, add_plan_fn add, remove_plan_fn rm) {
  orr_vm *vm = c->r->vm;
  const char *guid = c->parts[3];
  const char *keys[] = {"VirtualMachine", "Devices", group, guid, NULL};
  json_t *cur = json_object_get(vm_obj(vm->doc, "Devices", group), guid);
  json_t *plan = NULL, *settings;
  orr_error e = {0, ""};
  orr_hostres *hr;
  const char *port;
  int rc;
  if (orr__check_guid(guid, strlen(guid)) != NULL)
    return fail(c, ORR_EINVAL, "\"%s\" is not a GUID%s", guid, NULL);
  if (need_type(c, strcmp(group, "NetworkAdapters") == 0 ? ",Add,Remove,Update,"
                                                         : ",Add,Remove,"))
    return -1;
  if (strcmp(c->type, "Remove") == 0) {
    if (cur == NULL)
      return fail(c, ORR_ENOENT, "no device %s in the VM's document%s", guid,
                  NULL);
    c->r->data = json_pack("{s:o, s:s, s:s}", "keys", keys_json(keys),
                           "free_port", "yes", "qdev", qdev.s);
    c->r->commit = orr__commit_path;
    if (orr__req_join_unplug(c->r, c->path))
      return 0;
    if (reserve(c))
      return -1;
    if ((rc = rm(guid, &plan, &e)) != 0)
      return fail(c, rc, "%s%s", e.msg, NULL);
    c->r->plan = plan;
    orr__req_run(c->r);
    return 0;
  }
  if ((settings = settings_as(c, type)) == NULL)
    return -1;
  if (strcmp(c->type, "Update") == 0) {
    /* virtio-net cannot change its MAC or backend while plugged in. */
    if (cur == NULL) {
      json_decref(settings);
      return fail(c, ORR_ENOENT, "no network adapter %s in the document%s",
                  guid, NULL);
    }
    if (!json_equal(json_object_get(cur, "EndpointId"),
                    json_object_get(settings, "EndpointId")) ||
        !json_equal(json_object_get(cur, "MacAddress"),
                    json_object_get(settings, "MacAddress"))) {
      json_decref(settings);
      return fail(c, ORR_ENOTSUP,
                  "the qemu backend cannot change EndpointId or MacAddress of "
                  "a plugged-in adapter; remove it and add it again%s%s",
                  NULL, NULL);
    }
    if (check_rules(c, keys, settings)) {
      json_decref(settings);
      return -1;
    }
    c->r->data =
        json_pack("{s:o, s:o}", "keys", keys_json(keys), "value", settings);
    c->r->commit = orr__commit_path;
    c->r->plan = json_pack("{s:[]}", "do");
    orr__req_run(c->r);
    return 0;
  }
  if (cur != NULL) {
    json_decref(settings);
    return fail(c, ORR_EEXIST, "%s is already used by another device%s", guid,
                NULL);
  }
  if (check_rules(c, keys, settings) || reserve(c)) {
    json_decref(settings);
    return -1;
  }
  if ((port = claim_port(vm, qdev.s)) == NULL) {
    json_decref(settings);
    return fail(c, ORR_EBUSY,
                "no free root port left for a hot-add (raise the create "
                "option hotplug_ports)%s%s",
                NULL, NULL);
  }
  c->r->data = json_pack("{s:s}", "claimed", qdev.s);
  c->r->abandon = unclaim_port;
  hr = request_hostres(vm);
  rc = add(guid, settings, port, hr, &plan, &e);
  orr__hostres_free(hr);
  if (rc != 0) {
    json_decref(settings);
    return fail(c, rc, "%s%s", e.msg, NULL);
  }
  json_object_set_new(c->r->data, "keys", keys_json(keys));
  json_object_set_new(c->r->data, "value", settings);
  c->r->commit = orr__commit_path;
  c->r->plan = plan;
  orr__req_run(c->r);
  return 0;
}

/* The live document's Plan9 share of that Name, or NULL. */
static json_t *find_share(orr_vm *vm, const json_t *name) {
  size_t i;
  json_t *s;
  json_array_foreach(
      json_object_get(vm_obj(vm->doc, "Devices", "Plan9"), "Shares"), i, s) {
    if (json_equal(json_object_get(s, "Name"), name))
      return s;
  }
  return NULL;
}

static bool has_share(orr_vm *vm, const json_t *name) {
  return find_share(vm, name) != NULL;
}

/*
** A Remove names the share by Name (hcsshim sends {Name, AccessName, Port},
** without Path). AccessName (the mount tag, Name when absent) and Path,
** when given, must be the share's: a mismatch means the caller meant
** another share. Port, Flags and AllowedFiles do not identify a share.
*/
static int share_matches(modify_ctx *c, const json_t *want,
                         const json_t *have) {
  const json_t *access = json_object_get(want, "AccessName");
  const json_t *path = json_object_get(want, "Path");
  const json_t *tag = json_object_get(have, "AccessName");
  if (tag == NULL)
    tag = json_object_get(have, "Name");
  if (access && !json_equal(access, tag))
    return fail(c, ORR_EINVAL,
                "Settings.AccessName \"%s\" is not the AccessName of the "
                "share of that Name (\"%s\")",
                json_string_value(access), json_string_value(tag));
  if (path && !json_equal(path, json_object_get(have, "Path")))
    return fail(c, ORR_EINVAL,
                "Settings.Path %s is not the Path of the share of that Name "
                "(%s)",
                json_string_value(path),
                json_string_value(json_object_get(have, "Path")));
  return 0;
}

static int plan9(modify_ctx *c) {
  json_t *share, *plan = NULL, *k;
  orr_error e = {0, ""};
  int rc;
  json_t *have;
  if (need_type(c, ",Add,Remove,"))
    return -1;
  if (strcmp(c->type, "Add") == 0) {
    if ((share = settings_as(c, &orr__t_plan9_share)) == NULL)
      return -1;
    rc = orr__qemu_plan_plan9_add(share, &plan, &e);
    json_decref(share);
    json_decref(plan);
    return fail(c, rc ? rc : ORR_ENOTSUP, "%s%s", e.msg, NULL);
  }
  if ((share = settings_as(c, &orr__t_plan9_share_ref)) == NULL)
    return -1;
  k = json_object_get(c->r->vm->p9_index,
                      json_string_value(json_object_get(share, "Name")));
  have = find_share(c->r->vm, json_object_get(share, "Name"));
  /* The index keeps the boot-time qdev of every share, removed ones too:
  ** whether the share is still there is the live document's to say. */
  if (k == NULL || !json_is_integer(k) || have == NULL) {
    fail(c, ORR_ENOENT, "no Plan9 share named \"%s\" in the document%s",
         json_string_value(json_object_get(share, "Name")), NULL);
    json_decref(share);
    return -1;
  }
  if (share_matches(c, share, have) != 0) {
    json_decref(share);
    return -1;
  }
  c->r->data = json_pack("{s:O}", "name", json_object_get(share, "Name"));
  json_decref(share);
  c->r->commit = orr__commit_remove_share;
  if (orr__req_join_unplug(c->r, c->path))
    return 0;
  if (reserve(c))
    return -1;
  if ((rc = orr__qemu_plan_plan9_remove((int)json_integer_value(k), &plan,
                                        &e)) != 0)
    return fail(c, rc, "%s%s", e.msg, NULL);
  c->r->plan = plan;
  orr__req_run(c->r);
  return 0;
}

static int memory(modify_ctx *c) {
  orr_vm *vm = c->r->vm;
  json_t *plan = NULL;
  orr_error e = {0, ""};
  json_int_t mb, cur;
  const char *keys[] = {"VirtualMachine", "ComputeTopology", "Memory",
                        "SizeInMB", NULL};
  int rc;
  if (c->type && strcmp(c->type, "Update") != 0)
    return fail(c, ORR_EINVAL,
                "RequestType must be absent or \"Update\" here, got \"%s\"%s",
                c->type, NULL);
  if (!json_is_integer(c->settings) || json_integer_value(c->settings) < 1)
    return fail(c, ORR_EINVAL,
                "Settings must be the new size in MiB, a positive integer%s%s",
                NULL, NULL);
  mb = json_integer_value(c->settings);
  if (vm_obj(vm->doc, "ComputeTopology", "Numa") != NULL)
    return fail(c, ORR_ENOTSUP,
                "a VM with NUMA nodes cannot change its memory size (the "
                "nodes must add up to it)%s%s",
                NULL, NULL);
  if (reserve(c))
    return -1;
  cur = json_integer_value(json_object_get(
      vm_obj(vm->doc, "ComputeTopology", "Memory"), "SizeInMB"));
  if ((rc = orr__qemu_plan_memory((uint64_t)mb,
                                  (uint64_t)(cur > 0 ? cur : vm->boot_mb),
                                  (uint64_t)vm->boot_mb, &plan, &e)) != 0)
    return fail(c, rc, "%s%s", e.msg, NULL);
  c->r->data = json_pack("{s:o, s:I}", "keys", keys_json(keys), "value", mb);
  c->r->commit = orr__commit_path;
  c->r->plan = plan;
  orr__req_run(c->r);
  return 0;
}

/* Puts back the limits the document had before (none: no cap, default
** weight), when the new ones could not be written down. */
static int cgroup_rollback(orr_req *r, orr_error *e) {
  const json_t *cpu = json_object_get(
      vm_obj(r->doc_before, "ComputeTopology", NULL), "Processor");
  json_int_t cpus = json_integer_value(json_object_get(cpu, "Count"));
  json_t *old =
      json_pack("{s:I, s:I}", "Limit",
                json_integer_value(json_object_get(cpu, "Limit")), "Weight",
                json_object_get(cpu, "Weight")
                    ? json_integer_value(json_object_get(cpu, "Weight"))
                    : 100);
  int rc = orr__cgroup_apply(r->vm, old, cpus ? cpus : 1, e);
  json_decref(old);
  return rc;
}

static int cpu_limits(modify_ctx *c) {
  orr_vm *vm = c->r->vm;
  json_t *limits;
  orr_error e = {0, ""};
  json_int_t cpus = json_integer_value(json_object_get(
      vm_obj(vm->doc, "ComputeTopology", "Processor"), "Count"));
  const char *keys[] = {"VirtualMachine", "ComputeTopology", "Processor", NULL};
  if (c->type && strcmp(c->type, "Update") != 0)
    return fail(c, ORR_EINVAL,
                "RequestType must be absent or \"Update\" here, got \"%s\"%s",
                c->type, NULL);
  if ((limits = settings_as(c, &orr__t_processor_limits)) == NULL)
    return -1;
  if (json_object_get(limits, "MaximumFrequencyMHz")) {
    json_decref(limits);
    return fail(c, ORR_ENOTSUP,
                "MaximumFrequencyMHz has no equivalent for a QEMU process%s%s",
                NULL, NULL);
  }
  orr__fault("cgroup:before");
  if (orr__cgroup_apply(vm, limits, cpus ? cpus : 1, &e) != 0) {
    json_decref(limits);
    return fail(c, e.code, "%s%s", e.msg, NULL);
  }
  orr__fault("cgroup:after");
  c->r->data =
      json_pack("{s:o, s:o}", "keys", keys_json(keys), "value", limits);
  c->r->commit = commit_merge;
  c->r->rollback = cgroup_rollback;
  c->r->plan = json_pack("{s:[]}", "do");
  orr__req_run(c->r);
  return 0;
}

static int nic_add(const char *guid, const json_t *s, const char *port,
                   orr_hostres *hr, json_t **plan, orr_error *e) {
  return orr__qemu_plan_nic_add(guid, s, port, hr, plan, e);
}

static int vpci_add(const char *guid, const json_t *s, const char *port,
                    orr_hostres *hr, json_t **plan, orr_error *e) {
  return orr__qemu_plan_vpci_add(guid, s, port, hr, plan, e);
}

/* ---- devices QEMU deleted without being asked ---- */

/* The unplug record of a device of the document that QEMU reports deleted
** although nobody asked the engine to remove it: the guest ejected it (a
** PCI slot powered off from inside), or a raw device_del went around the
** engine. NULL for a qdev that is not one of the document's devices. */
orr_unplug *orr__vm_unasked_unplug(orr_vm *vm, const char *qdev) {
  json_t *devs = vm_obj(vm->doc, "Devices", NULL);
  json_t *plan = NULL, *data = NULL;
  orr_req_commit commit = orr__commit_path;
  orr_error e = {0, ""};
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
            lunkey) == NULL ||
        orr__qemu_plan_scsi_remove(
            c, lun, json_is_true(json_object_get(vm->layout, "throttle_group")),
            disk_fdsets_of(vm, c, lun), &plan, &e) != 0)
      return NULL;
    snprintf(path, sizeof path, "VirtualMachine/Devices/Scsi/%s/Attachments/%s",
             guid, lunkey);
    data = json_pack("{s:[s,s,s,s,s,s]}", "keys", "VirtualMachine", "Devices",
                     "Scsi", guid, "Attachments", lunkey);
    disk_fdsets(data, c, lun, NULL);
  } else if (sscanf(qdev, "p9-%d%n", &k, &n) == 1 && qdev[n] == '\0') {
    json_object_foreach(vm->p9_index, key, v) {
      json_t *name = json_string(key);
      bool there = json_integer_value(v) == k && has_share(vm, name);
      json_decref(name);
      if (there) {
        snprintf(path, sizeof path, "VirtualMachine/Devices/Plan9/Shares");
        data = json_pack("{s:s}", "name", key);
        commit = orr__commit_remove_share;
        plan = json_pack("{s:[]}", "after");
        break;
      }
    }
  } else {
    static const char *const groups[] = {"VirtualPci", "NetworkAdapters"};
    for (size_t i = 0; i < 2 && data == NULL; i++) {
      json_object_foreach(json_object_get(devs, groups[i]), key, v) {
        orr_qemu_name q =
            i == 0 ? orr__qemu_vpci_qdev(key) : orr__qemu_nic_qdev(key);
        if (strcmp(q.s, qdev) != 0)
          continue;
        if ((i == 0 ? orr__qemu_plan_vpci_remove(key, &plan, &e)
                    : orr__qemu_plan_nic_remove(key, &plan, &e)) != 0)
          return NULL;
        snprintf(path, sizeof path, "VirtualMachine/Devices/%s/%s", groups[i],
                 key);
        data = json_pack("{s:[s,s,s,s], s:s, s:s}", "keys", "VirtualMachine",
                         "Devices", groups[i], key, "free_port", "yes", "qdev",
                         qdev);
        break;
      }
    }
  }
  /* A change to it in flight finds out for itself. */
  if (data == NULL || json_object_get(vm->reserved, path)) {
    json_decref(plan);
    json_decref(data);
    return NULL;
  }
  orr_unplug *u = calloc(1, sizeof *u);
  u->qdev = strdup(qdev);
  u->resource = strdup(path);
  u->after = json_incref(json_object_get(plan, "after"));
  u->data = data;
  u->commit = commit;
  json_decref(plan);
  return u;
}

static void dispatch(modify_ctx *c) {
  char **p = c->parts;
  int n = c->nparts;
  if (n >= 2 && strcmp(p[0], "VirtualMachine") == 0) {
    if (n == 6 && strcmp(p[1], "Devices") == 0 && strcmp(p[2], "Scsi") == 0 &&
        strcmp(p[4], "Attachments") == 0) {
      scsi(c);
      return;
    }
    if (n == 4 && strcmp(p[1], "Devices") == 0 &&
        strcmp(p[2], "VirtualPci") == 0) {
      pci_like(c, "VirtualPci", &orr__t_vpci_device, orr__qemu_vpci_qdev(p[3]),
               vpci_add, orr__qemu_plan_vpci_remove);
      return;
    }
    if (n == 4 && strcmp(p[1], "Devices") == 0 &&
        strcmp(p[2], "NetworkAdapters") == 0) {
      pci_like(c, "NetworkAdapters", &orr__t_network_adapter,
               orr__qemu_nic_qdev(p[3]), nic_add, orr__qemu_plan_nic_remove);
      return;
    }
    if (n == 4 && strcmp(p[1], "Devices") == 0 && strcmp(p[2], "Plan9") == 0 &&
        strcmp(p[3], "Shares") == 0) {
      plan9(c);
      return;
    }
    if (n == 4 && strcmp(p[1], "ComputeTopology") == 0 &&
        strcmp(p[2], "Memory") == 0 && strcmp(p[3], "SizeInMB") == 0) {
      memory(c);
      return;
    }
    if (n == 4 && strcmp(p[1], "ComputeTopology") == 0 &&
        strcmp(p[2], "Processor") == 0 && strcmp(p[3], "Limits") == 0) {
      cpu_limits(c);
      return;
    }
  }
  fail(c, ORR_ENOTSUP,
       "this ResourcePath is not one the VM manager changes at run time "
       "(SCSI attachments, VirtualPci, NetworkAdapters, Plan9 shares, "
       "Memory/SizeInMB, Processor/Limits)%s%s",
       NULL, NULL);
}

/*
** The GuestRequest half of a request (hcsshim sends one with Plan9, SCSI,
** VPMem and network changes, and alone from its guest manager). Its shape
** is checked like any field; carrying it out inside the guest is not done
** yet, so a request that has one is refused whole with ENOTSUP before
** anything changes, and the host half is not done either.
*/
static int guest_request(orr_req *r, const json_t *req) {
  const json_t *g = json_object_get(req, "GuestRequest");
  const char *rtype, *what;
  const orr_type *type;
  json_t *norm = NULL;
  orr_error e = {0, ""};
  if (g == NULL) {
    if (json_object_get(req, "ResourcePath") != NULL)
      return 0;
    orr__req_fail(r, ORR_EINVAL,
                  "modify: request.ResourcePath is required (or a "
                  "GuestRequest)");
    return -1;
  }
  rtype = json_string_value(json_object_get(g, "ResourceType"));
  what = json_string_value(json_object_get(g, "RequestType"));
  type = orr__guest_settings_type(rtype);
  if (type != NULL && json_object_get(g, "Settings") != NULL &&
      orr__schema_normalize(type, json_object_get(g, "Settings"),
                            "request.GuestRequest.Settings", &norm, &e) != 0) {
    orr__req_fail(r, e.code, "modify: %s", e.msg);
    return -1;
  }
  json_decref(norm);
  orr__req_fail(r, ORR_ENOTSUP,
                "modify: request.GuestRequest (%s %s) asks for a change inside "
                "the guest, which the VM manager does not carry out; nothing "
                "was changed (send the host part without it, and act in the "
                "guest through vm:guest())",
                what, rtype);
  return -1;
}

void orr__vm_modify(orr_vm *vm, const json_t *request, const json_t *options,
                    orr_vm_cb cb, void *arg) {
  orr_req *r = orr__req_new(vm, cb, arg);
  r->journal = true; /* a run-time change: journaled when the VM keeps state */
  modify_ctx c = {.r = r, .path = ""};
  json_t *norm = NULL;
  orr_error e = {0, ""};
  char *copy, *save = NULL;
  json_t *t = json_object_get(options, "timeout_ms");
  if (t != NULL) {
    if (!json_is_integer(t) || json_integer_value(t) < 0) {
      orr__req_fail(r, ORR_EINVAL,
                    "modify: timeout_ms must be a non-negative integer (0: "
                    "the default, %d ms)",
                    ORR_VM_TIMEOUT_MS);
      return;
    }
    r->timeout_ms = (uint64_t)json_integer_value(t);
  }
  if (orr__schema_normalize(&orr__t_modify_request, request, "request", &norm,
                            &e) != 0) {
    orr__req_fail(r, e.code, "modify: %s", e.msg);
    return;
  }
  if (vm->exited || vm->state == ORR_VM_CREATING) {
    json_decref(norm);
    orr__req_fail(r, vm->exited ? ORR_EVMGONE : ORR_ESTATE,
                  "modify: VM %s is %s", vm->id, orr_vm_state(vm));
    return;
  }
  if (guest_request(r, norm) != 0) {
    json_decref(norm);
    return;
  }
  c.path = json_string_value(json_object_get(norm, "ResourcePath"));
  c.type = json_string_value(json_object_get(norm, "RequestType"));
  c.settings = json_object_get(norm, "Settings");
  copy = strdup(c.path);
  for (char *tok = strtok_r(copy, "/", &save); tok && c.nparts < MAX_PARTS;
       tok = strtok_r(NULL, "/", &save))
    c.parts[c.nparts++] = tok;
  /* GUIDs compare case-insensitively and the document spells them in lower
  ** case (the builder's rule): "...A3B1..." must find the adapter
  ** "...a3b1...", not become a second key and a second QEMU device for the
  ** same GUID (found by fuzz/fuzz_modify.c); a SCSI controller likewise. */
  if ((c.nparts == 4 && (strcmp(c.parts[2], "VirtualPci") == 0 ||
                         strcmp(c.parts[2], "NetworkAdapters") == 0)) ||
      (c.nparts >= 4 && strcmp(c.parts[2], "Scsi") == 0))
    for (char *p = c.parts[3]; *p != '\0'; p++)
      *p = (char)tolower((unsigned char)*p);
  orr__vm_log(vm, "modify", json_incref(norm));
  dispatch(&c);
  free(copy);
  json_decref(norm);
}

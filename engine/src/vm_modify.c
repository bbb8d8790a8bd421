/*
** Run-time changes: a ModifySettingRequest is checked against the live
** document with the builder's rules, planned by the backend
** (backend->plan_change), run by the request runner, and committed to the
** live document only on success. The same planning, without running,
** serves a device the backend reports deleted unasked. The commits are
** vm_commit.c's.
*/
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
  /* Planning the removal of a device the backend deleted unasked: nothing
  ** is reserved, run or reported; plan gets the backend's plan. */
  bool unasked;
  json_t *plan;
} modify_ctx;

static json_t *vm_obj(json_t *doc, const char *k1, const char *k2) {
  json_t *v = json_object_get(json_object_get(doc, "VirtualMachine"), k1);
  return k2 ? json_object_get(v, k2) : v;
}

/* ---- helpers ---- */

static int fail(modify_ctx *c, int code, const char *fmt, const char *a,
                const char *b) {
  char msg[400];
  if (c->unasked)
    return code; /* nobody asked: nothing to report */
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
                    "until the VM answers (the VM is unresponsive)%s%s",
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

/* A change that ends uncommitted gives back what the backend's plan
** claimed (a root port): when it fails, or, in doubt, when it is rolled
** back. */
static void abandon_backend(orr_req *r) {
  if (r->vm->backend->abandon != NULL)
    r->vm->backend->abandon(r->vm, r->data);
}

/* What a change's host files are opened through: judged under the engine's
** policy; a dry run keeps nothing open. A VM launched confined gets
** descriptors from whichever engine drives it: its Landlock domain is for
** life, so it may not be able to open a path itself. */
static orr_hostres *request_hostres(const orr_vm *vm) {
  orr_hostres *hr =
      orr__hostres_new(vm->eng->policy, ORR_HR_QMP, vm->backend->dry_run);
  if (vm->confined)
    orr__hostres_pass_fds(hr);
  return hr;
}

/* ---- resources ---- */

static size_t nkeys_of(const char *const *keys) {
  size_t n = 0;
  while (keys[n])
    n++;
  return n;
}

/*
** Has the backend plan the change (r->data already holds the core's commit
** data; the backend adds its own keys) and runs the plan, or, for an
** unasked removal, keeps it in c->plan. An Add's host files are opened
** through a resource set the request holds until its steps are sent.
*/
static int plan_and_run(modify_ctx *c, orr_op op, const char *const *keys,
                        const json_t *settings, const json_t *current) {
  orr_vm *vm = c->r->vm;
  orr_change ch = {.op = op,
                   .keys = keys,
                   .nkeys = nkeys_of(keys),
                   .settings = settings,
                   .current = current};
  json_t *plan = NULL;
  orr_error e = {0, ""};
  int rc;
  if (vm->backend->plan_change == NULL)
    return fail(c, ORR_ENOTSUP, "the %s backend changes nothing at run time%s",
                vm->backend->name, NULL);
  if (op == ORR_CHANGE_ADD) {
    c->r->hr = request_hostres(vm);
    ch.hr = c->r->hr;
    c->r->abandon = abandon_backend;
  }
  if ((rc = vm->backend->plan_change(vm, &ch, c->r->data, &plan, &e)) != 0) {
    json_decref(plan);
    return fail(c, rc, "%s%s", e.msg, NULL);
  }
  if (c->unasked) {
    c->plan = plan;
    return 0;
  }
  c->r->plan = plan;
  orr__req_run(c->r);
  return 0;
}

/* The tail of every removal: one already pending for the resource is
** waited on; otherwise the resource is reserved and the removal planned. A
** device deleted unasked while a change to it is in flight is left to that
** change, which finds out for itself. */
static int removal(modify_ctx *c, const char *const *keys,
                   const json_t *settings, const json_t *current) {
  if (c->unasked) {
    if (json_object_get(c->r->vm->reserved, c->path))
      return -1;
  } else {
    if (orr__req_join_unplug(c->r, c->path))
      return 0;
    if (reserve(c))
      return -1;
  }
  return plan_and_run(c, ORR_CHANGE_REMOVE, keys, settings, current);
}

static int scsi(modify_ctx *c) {
  orr_vm *vm = c->r->vm;
  int ctrl = orr_scsi_controller_index(c->parts[3]);
  const char *lunkey = c->parts[5];
  json_t *attachments;
  const char *keys[] = {"VirtualMachine", "Devices", "Scsi", c->parts[3],
                        "Attachments",    lunkey,    NULL};
  if (ctrl < 0)
    return fail(c, ORR_EINVAL,
                "controller \"%s\" is not one of the four HCS SCSI controller "
                "GUIDs%s",
                c->parts[3], NULL);
  if (orr__check_lun_key(lunkey, strlen(lunkey)) != NULL)
    return fail(c, ORR_EINVAL, "LUN must be 0..63, got \"%s\"%s", lunkey, NULL);
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
    c->r->data = json_pack("{s:o, s:o}", "keys", keys_json(keys), "value", att);
    c->r->commit = orr__commit_path;
    return plan_and_run(c, ORR_CHANGE_ADD, keys, att, NULL);
  }
  if (json_object_get(attachments, lunkey) == NULL)
    return fail(c, ORR_ENOENT, "LUN %s is not attached on controller %s",
                lunkey, c->parts[3]);
  c->r->data = json_pack("{s:o}", "keys", keys_json(keys));
  c->r->commit = orr__commit_path;
  return removal(c, keys, NULL, json_object_get(attachments, lunkey));
}

/* VPCI devices and NICs: keyed by a GUID. */
static int pci_like(modify_ctx *c, const char *group, const orr_type *type) {
  orr_vm *vm = c->r->vm;
  const char *guid = c->parts[3];
  const char *keys[] = {"VirtualMachine", "Devices", group, guid, NULL};
  json_t *cur = json_object_get(vm_obj(vm->doc, "Devices", group), guid);
  json_t *settings;
  if (orr__check_guid(guid, strlen(guid)) != NULL)
    return fail(c, ORR_EINVAL, "\"%s\" is not a GUID%s", guid, NULL);
  if (need_type(c, strcmp(group, "NetworkAdapters") == 0 ? ",Add,Remove,Update,"
                                                         : ",Add,Remove,"))
    return -1;
  if (strcmp(c->type, "Remove") == 0) {
    if (cur == NULL)
      return fail(c, ORR_ENOENT, "no device %s in the VM's document%s", guid,
                  NULL);
    c->r->data = json_pack("{s:o}", "keys", keys_json(keys));
    c->r->commit = orr__commit_path;
    return removal(c, keys, NULL, cur);
  }
  if ((settings = settings_as(c, type)) == NULL)
    return -1;
  if (strcmp(c->type, "Update") == 0) {
    json_t *plan = NULL;
    orr_error e = {0, ""};
    orr_change ch = {.op = ORR_CHANGE_UPDATE,
                     .keys = keys,
                     .nkeys = 4,
                     .settings = settings,
                     .current = cur};
    int rc;
    if (cur == NULL) {
      json_decref(settings);
      return fail(c, ORR_ENOENT, "no network adapter %s in the document%s",
                  guid, NULL);
    }
    /* What the backend cannot change in place is refused before the
    ** rules are looked at. */
    c->r->data = json_object();
    rc = vm->backend->plan_change
             ? vm->backend->plan_change(vm, &ch, c->r->data, &plan, &e)
             : orr_error_set(&e, ORR_ENOTSUP,
                             "the %s backend changes nothing at run time",
                             vm->backend->name);
    if (rc != 0) {
      json_decref(settings);
      return fail(c, rc, "%s%s", e.msg, NULL);
    }
    if (check_rules(c, keys, settings)) {
      json_decref(plan);
      json_decref(settings);
      return -1;
    }
    json_object_set_new(c->r->data, "keys", keys_json(keys));
    json_object_set_new(c->r->data, "value", settings);
    c->r->commit = orr__commit_path;
    c->r->plan = plan;
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
  c->r->data =
      json_pack("{s:o, s:o}", "keys", keys_json(keys), "value", settings);
  c->r->commit = orr__commit_path;
  return plan_and_run(c, ORR_CHANGE_ADD, keys, settings, NULL);
}

/*
** VPMem devices (hcsshim's VPMemManager): Add and Remove of
** VirtualMachine/Devices/VirtualPMem/Devices/<n>. As in hcsshim, the
** controller must be in the document; Orrery also holds the device count
** to MaximumCount (the backend holds the image to MaximumSizeBytes).
*/
static int vpmem(modify_ctx *c) {
  orr_vm *vm = c->r->vm;
  const char *key = c->parts[4];
  const char *keys[] = {"VirtualMachine", "Devices", "VirtualPMem",
                        "Devices",        key,       NULL};
  json_t *ctrl = vm_obj(vm->doc, "Devices", "VirtualPMem");
  json_t *devs = json_object_get(ctrl, "Devices");
  json_t *cur = json_object_get(devs, key), *settings;
  json_t *maxv = json_object_get(ctrl, "MaximumCount");
  char *end;
  long k = strtol(key, &end, 10);
  if (*key == '\0' || *end != '\0' || k < 0 || k > 255 ||
      (key[0] == '0' && key[1] != '\0'))
    return fail(c, ORR_EINVAL,
                "the VPMem device key must be a number 0..255, got \"%s\"%s",
                key, NULL);
  if (need_type(c, ",Add,Remove,"))
    return -1;
  if (ctrl == NULL)
    return fail(c, ORR_ENOENT,
                "the VM has no VPMem controller (Devices.VirtualPMem is "
                "added at build time: add_vpmem_controller)%s%s",
                NULL, NULL);
  if (strcmp(c->type, "Remove") == 0) {
    if (cur == NULL)
      return fail(c, ORR_ENOENT, "no VPMem device %s in the VM's document%s",
                  key, NULL);
    c->r->data = json_pack("{s:o}", "keys", keys_json(keys));
    c->r->commit = orr__commit_path;
    return removal(c, keys, NULL, cur);
  }
  if (c->unasked)
    return -1;
  if (cur != NULL)
    return fail(c, ORR_EEXIST, "VPMem device %s is already in the document%s",
                key, NULL);
  if (maxv != NULL &&
      (json_int_t)json_object_size(devs) >= json_integer_value(maxv)) {
    char n[32];
    snprintf(n, sizeof n, "%lld", (long long)json_integer_value(maxv));
    return fail(c, ORR_EINVAL,
                "Devices.VirtualPMem.MaximumCount (%s) devices are already "
                "there%s",
                n, NULL);
  }
  if ((settings = settings_as(c, &orr__t_vpmem_device)) == NULL)
    return -1;
  if (check_rules(c, keys, settings) || reserve(c)) {
    json_decref(settings);
    return -1;
  }
  c->r->data =
      json_pack("{s:o, s:o}", "keys", keys_json(keys), "value", settings);
  c->r->commit = orr__commit_path;
  return plan_and_run(c, ORR_CHANGE_ADD, keys, settings, NULL);
}

/*
** Mapped pipes (hcsshim's PipeManager): VirtualMachine/Devices/MappedPipes/
** <host path>, Add or Remove, no Settings. HCS's document has no field for
** them: the backend keeps them (its layout, its properties), so the commit
** is the backend's alone ("pipe"). Journaled like any run-time change: an
** engine that dies in the middle leaves the intent, which re-opening
** settles from the devices QEMU has.
*/
static int mapped_pipe(modify_ctx *c, const char *host) {
  const char *keys[] = {"VirtualMachine", "Devices", "MappedPipes", host, NULL};
  if (need_type(c, ",Add,Remove,"))
    return -1;
  if (c->settings != NULL && !json_is_null(c->settings))
    return fail(c, ORR_EINVAL,
                "Settings must be absent (hcsshim sends none): the guest's "
                "port is named after the host path%s%s",
                NULL, NULL);
  c->r->data = json_pack("{s:o}", "keys", keys_json(keys));
  c->r->commit = orr__commit_pipe;
  if (strcmp(c->type, "Remove") == 0)
    return removal(c, keys, NULL, NULL);
  if (c->unasked || reserve(c))
    return -1;
  return plan_and_run(c, ORR_CHANGE_ADD, keys, NULL, NULL);
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
  orr_vm *vm = c->r->vm;
  const char *keys[] = {"VirtualMachine", "Devices", "Plan9", "Shares", NULL};
  json_t *share, *k, *have;
  int rc;
  if (need_type(c, ",Add,Remove,"))
    return -1;
  if (strcmp(c->type, "Add") == 0) {
    json_t *plan = NULL;
    orr_error e = {0, ""};
    orr_change ch = {
        .op = ORR_CHANGE_ADD, .keys = keys, .nkeys = 4, .settings = NULL};
    if ((share = settings_as(c, &orr__t_plan9_share)) == NULL)
      return -1;
    ch.settings = share;
    rc = vm->backend->plan_change
             ? vm->backend->plan_change(vm, &ch, NULL, &plan, &e)
             : ORR_ENOTSUP;
    json_decref(share);
    json_decref(plan);
    /* No backend adds one yet, and the journal has no commit for it. */
    if (rc == 0)
      snprintf(e.msg, sizeof e.msg,
               "a Plan9 share added at run time is not recorded by the VM "
               "manager yet");
    return fail(c, rc ? rc : ORR_ENOTSUP, "%s%s", e.msg, NULL);
  }
  if ((share = settings_as(c, &orr__t_plan9_share_ref)) == NULL)
    return -1;
  k = json_object_get(vm->p9_index,
                      json_string_value(json_object_get(share, "Name")));
  have = find_share(vm, json_object_get(share, "Name"));
  /* The index keeps the boot-time index of every share, removed ones too:
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
  c->r->commit = orr__commit_remove_share;
  rc = removal(c, keys, share, have);
  json_decref(share);
  return rc;
}

static int memory(modify_ctx *c) {
  orr_vm *vm = c->r->vm;
  json_int_t mb;
  const char *keys[] = {"VirtualMachine", "ComputeTopology", "Memory",
                        "SizeInMB", NULL};
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
  c->r->data = json_pack("{s:o, s:I}", "keys", keys_json(keys), "value", mb);
  c->r->commit = orr__commit_path;
  return plan_and_run(
      c, ORR_CHANGE_UPDATE, keys, c->settings,
      json_object_get(vm_obj(vm->doc, "ComputeTopology", "Memory"),
                      "SizeInMB"));
}

/* The backend's CPU limits (ENOTSUP without them). */
static int apply_cpu_limits(orr_vm *vm, const json_t *limits, long long cpus,
                            orr_error *e) {
  if (vm->backend->cpu_limits == NULL)
    return orr_error_set(e, ORR_ENOTSUP,
                         "the %s backend cannot limit a VM's CPUs",
                         vm->backend->name);
  return vm->backend->cpu_limits(vm, limits, cpus, e);
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
  int rc = apply_cpu_limits(r->vm, old, cpus ? cpus : 1, e);
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
  orr__fault("cgroup:before");
  if (apply_cpu_limits(vm, limits, cpus ? cpus : 1, &e) != 0) {
    json_decref(limits);
    return fail(c, e.code, "%s%s", e.msg, NULL);
  }
  orr__fault("cgroup:after");
  c->r->data =
      json_pack("{s:o, s:o}", "keys", keys_json(keys), "value", limits);
  c->r->commit = orr__commit_merge;
  c->r->rollback = cgroup_rollback;
  c->r->plan = json_pack("{s:[]}", "do");
  orr__req_run(c->r);
  return 0;
}

#define PIPES_PREFIX "VirtualMachine/Devices/MappedPipes/"

static void dispatch(modify_ctx *c) {
  char **p = c->parts;
  int n = c->nparts;
  /* A pipe's key is a host path, slashes and all. */
  if (strncmp(c->path, PIPES_PREFIX, strlen(PIPES_PREFIX)) == 0 &&
      c->path[strlen(PIPES_PREFIX)] != '\0') {
    mapped_pipe(c, c->path + strlen(PIPES_PREFIX));
    return;
  }
  if (n >= 2 && strcmp(p[0], "VirtualMachine") == 0) {
    if (n == 5 && strcmp(p[1], "Devices") == 0 &&
        strcmp(p[2], "VirtualPMem") == 0 && strcmp(p[3], "Devices") == 0) {
      vpmem(c);
      return;
    }
    if (n == 6 && strcmp(p[1], "Devices") == 0 && strcmp(p[2], "Scsi") == 0 &&
        strcmp(p[4], "Attachments") == 0) {
      scsi(c);
      return;
    }
    if (n == 4 && strcmp(p[1], "Devices") == 0 &&
        strcmp(p[2], "VirtualPci") == 0) {
      pci_like(c, "VirtualPci", &orr__t_vpci_device);
      return;
    }
    if (n == 4 && strcmp(p[1], "Devices") == 0 &&
        strcmp(p[2], "NetworkAdapters") == 0) {
      pci_like(c, "NetworkAdapters", &orr__t_network_adapter);
      return;
    }
    if (n == 4 && strcmp(p[1], "Devices") == 0 && strcmp(p[2], "Plan9") == 0 &&
        strcmp(p[3], "Shares") == 0) {
      plan9(c);
      return;
    }
    if (c->unasked)
      return; /* only devices go away unasked */
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
       "VirtualPMem devices, MappedPipes, Memory/SizeInMB, "
       "Processor/Limits)%s%s",
       NULL, NULL);
}

/* Splits c->path into c->parts (in copy, which the caller frees). GUIDs
** compare case-insensitively and the document spells them in lower case
** (the builder's rule): "...A3B1..." must find the adapter "...a3b1...",
** not become a second key and a second device for the same GUID (found by
** fuzz/fuzz_modify.c); a SCSI controller likewise. */
static char *split_path(modify_ctx *c) {
  char *copy = strdup(c->path), *save = NULL;
  for (char *tok = strtok_r(copy, "/", &save); tok && c->nparts < MAX_PARTS;
       tok = strtok_r(NULL, "/", &save))
    c->parts[c->nparts++] = tok;
  if ((c->nparts == 4 && (strcmp(c->parts[2], "VirtualPci") == 0 ||
                          strcmp(c->parts[2], "NetworkAdapters") == 0)) ||
      (c->nparts >= 4 && strcmp(c->parts[2], "Scsi") == 0))
    for (char *p = c->parts[3]; *p != '\0'; p++)
      *p = (char)tolower((unsigned char)*p);
  return copy;
}

/* ---- devices the backend deleted ---- */

void orr__vm_device_deleted(orr_vm *vm, const char *device) {
  orr_unplug *u;
  if (orr__req_device_deleted(vm, device))
    return; /* a removal waited for it */
  /* Gone without being asked (the guest ejected it): the live document
  ** follows the VM, and the removal's cleanup runs all the same. */
  if ((u = orr__vm_unasked_unplug(vm, device)) != NULL)
    orr__req_unplug_done(vm, u);
}

/* The guest ejected a device of the document (a PCI slot powered off from
** inside), or a raw command went around the engine: the backend names the
** resource it was as a Remove request, planned here as any removal but not
** run (the device is gone; its "after" cleanup still is). NULL for a device
** that is none of the document's, or one with a change in flight. */
orr_unplug *orr__vm_unasked_unplug(orr_vm *vm, const char *device) {
  json_t *req =
      vm->backend->device_gone ? vm->backend->device_gone(vm, device) : NULL;
  orr_req scratch;
  modify_ctx c;
  orr_unplug *u = NULL;
  char *copy;
  if (req == NULL)
    return NULL;
  memset(&scratch, 0, sizeof scratch);
  memset(&c, 0, sizeof c);
  scratch.vm = vm;
  scratch.undo = -1;
  c.r = &scratch;
  c.unasked = true;
  c.path = json_string_value(json_object_get(req, "ResourcePath"));
  c.type = json_string_value(json_object_get(req, "RequestType"));
  c.settings = json_object_get(req, "Settings");
  if (c.path == NULL || c.type == NULL || strcmp(c.type, "Remove") != 0) {
    json_decref(req);
    return NULL;
  }
  copy = split_path(&c);
  dispatch(&c);
  if (c.plan != NULL && scratch.data != NULL && scratch.commit != NULL) {
    u = calloc(1, sizeof *u);
    u->device = strdup(device);
    u->resource = strdup(c.path);
    u->after = json_incref(json_object_get(c.plan, "after"));
    u->data = json_incref(scratch.data);
    u->commit = scratch.commit;
  }
  json_decref(c.plan);
  json_decref(scratch.data);
  orr__hostres_free(scratch.hr);
  free(copy);
  json_decref(req);
  return u;
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
  char *copy;
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
  if (orr__mig_busy(vm, "modify", &e) != 0) {
    json_decref(norm);
    orr__req_fail(r, e.code, "%s", e.msg);
    return;
  }
  if (guest_request(r, norm) != 0) {
    json_decref(norm);
    return;
  }
  c.path = json_string_value(json_object_get(norm, "ResourcePath"));
  c.type = json_string_value(json_object_get(norm, "RequestType"));
  c.settings = json_object_get(norm, "Settings");
  copy = split_path(&c);
  orr__vm_log(vm, "modify", json_incref(norm));
  dispatch(&c);
  free(copy);
  json_decref(norm);
}

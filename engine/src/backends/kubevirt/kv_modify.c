/*
** Lifecycle verbs and run-time changes -> Kubernetes API requests.
**
** HCS verb       request
** create         POST   .../virtualmachines (the manifest)
** start          PUT    subresources .../virtualmachines/NAME/start
** shutdown       PUT    .../virtualmachines/NAME/stop {gracePeriod}
** terminate      PUT    .../virtualmachines/NAME/stop {gracePeriod: 0}
** pause, resume  PUT    .../virtualmachineinstances/NAME/pause, unpause
** restart        PUT    .../virtualmachines/NAME/restart
** migrate        PUT    .../virtualmachines/NAME/migrate
** close          DELETE .../virtualmachines/NAME
**
** Changes go to the VirtualMachine, not only to its instance, so they
** survive a restart as the live document does: SCSI attachments through
** the VM's addvolume/removevolume (hot-pluggable PVC or DataVolume), NICs
** and memory as JSON Patches of the VM's spec, which KubeVirt's LiveUpdate
** rollout applies to the running instance (interface hot-plug on a multus
** network; memory hot-plug). A patch starts by replacing
** metadata.resourceVersion with the one it was planned against, so the API
** server answers 409 instead of applying it to a VM that changed since.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kubevirt.h"
#include "orrery/document.h"

#define DEVICES "/spec/template/spec/domain/devices"

int orr__kv_path(const orr_kv_config *cfg, const char *what, char *buf,
                 size_t size) {
  static const struct {
    const char *what, *kind;
    int collection;
  } kinds[] = {{"vm", "virtualmachines", 0},
               {"vms", "virtualmachines", 1},
               {"vmi", "virtualmachineinstances", 0},
               {"vmis", "virtualmachineinstances", 1}};
  const char *sub = strchr(what, '/');
  size_t wlen = sub ? (size_t)(sub - what) : strlen(what);
  int n = -1;
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    if (strlen(kinds[k].what) != wlen || strncmp(kinds[k].what, what, wlen))
      continue;
    if (sub && !kinds[k].collection)
      n = snprintf(buf, size,
                   "/apis/subresources.kubevirt.io/v1/namespaces/%s/%s/%s%s",
                   cfg->ns, kinds[k].kind, cfg->name, sub);
    else if (!sub && kinds[k].collection)
      n = snprintf(buf, size, "/apis/kubevirt.io/v1/namespaces/%s/%s", cfg->ns,
                   kinds[k].kind);
    else if (!sub)
      n = snprintf(buf, size, "/apis/kubevirt.io/v1/namespaces/%s/%s/%s",
                   cfg->ns, kinds[k].kind, cfg->name);
  }
  return n < 0 || (size_t)n >= size ? ORR_EINVAL : 0;
}

static json_t *request(const char *method, const char *path, json_t *body) {
  json_t *r = json_pack("{s:s, s:s}", "method", method, "path", path);
  if (body)
    json_object_set_new(r, "body", body);
  return r;
}

static json_t *req_at(const orr_kv_config *cfg, const char *method,
                      const char *what, json_t *body) {
  char path[512];
  if (orr__kv_path(cfg, what, path, sizeof path) != 0) {
    json_decref(body);
    return NULL;
  }
  return request(method, path, body);
}

int orr__kv_verb(const orr_kv_config *cfg, orr_kv_verb verb,
                 const orr_kv_verb_opts *opts, json_t **req, orr_error *e) {
  static const orr_kv_verb_opts none = {0};
  json_t *r = NULL;
  if (opts == NULL)
    opts = &none;
  *req = NULL;
  if (cfg == NULL || cfg->name == NULL || cfg->ns == NULL ||
      !orr__kv_valid_name(cfg->name, 63) || !orr__kv_valid_name(cfg->ns, 63))
    return orr_error_set(e, ORR_EINVAL,
                         "name and namespace must be DNS-1123 labels");
  switch (verb) {
  case ORR_KV_CREATE:
    if (opts->manifest == NULL)
      return orr_error_set(e, ORR_EINVAL, "create: the manifest is required");
    r = req_at(cfg, "POST", "vms", json_deep_copy(opts->manifest));
    break;
  case ORR_KV_START:
    r = req_at(cfg, "PUT", "vm/start", json_object());
    break;
  case ORR_KV_STOP:
    if (opts->grace_s < 0)
      return orr_error_set(e, ORR_EINVAL,
                           "shutdown: the grace period must be >= 0 s");
    r = req_at(cfg, "PUT", "vm/stop",
               json_pack("{s:I}", "gracePeriod", (json_int_t)opts->grace_s));
    break;
  case ORR_KV_TERMINATE:
    r = req_at(cfg, "PUT", "vm/stop", json_pack("{s:i}", "gracePeriod", 0));
    break;
  case ORR_KV_RESTART:
    r = req_at(cfg, "PUT", "vm/restart", json_object());
    break;
  case ORR_KV_PAUSE:
    r = req_at(cfg, "PUT", "vmi/pause", json_object());
    break;
  case ORR_KV_UNPAUSE:
    r = req_at(cfg, "PUT", "vmi/unpause", json_object());
    break;
  case ORR_KV_MIGRATE: {
    json_t *body = json_object();
    if (opts->to && opts->to[0]) {
      /* The cluster picks the target; "node:NAME" narrows it to one node. */
      if (strncmp(opts->to, "node:", 5) != 0 ||
          !orr__kv_valid_name(opts->to + 5, 253)) {
        json_decref(body);
        return orr_error_set(e, ORR_EINVAL,
                             "migrate: to must be \"node:NAME\" on the "
                             "kubevirt backend (the cluster places the VM), "
                             "got \"%s\"",
                             opts->to);
      }
      json_object_set_new(
          body, "addedNodeSelector",
          json_pack("{s:s}", "kubernetes.io/hostname", opts->to + 5));
    }
    r = req_at(cfg, "PUT", "vm/migrate", body);
    break;
  }
  case ORR_KV_DELETE:
    r = req_at(cfg, "DELETE", "vm", NULL);
    break;
  case ORR_KV_GET_VM:
    r = req_at(cfg, "GET", "vm", NULL);
    break;
  case ORR_KV_GET_VMI:
    r = req_at(cfg, "GET", "vmi", NULL);
    break;
  }
  if (r == NULL)
    return orr_error_set(e, ORR_EINVAL, "unknown verb or path too long");
  *req = r;
  return 0;
}

/* ---- run-time changes ---- */

typedef struct {
  const orr_kv_config *cfg;
  const json_t *doc, *vm, *settings;
  const char *path, *type;
  char *parts[8];
  int nparts;
  json_t *steps;
  orr_error *e;
} mctx;

static int refuse(mctx *c, int code, const char *why) {
  return orr_error_set(c->e, code, "%s: %s", c->path, why);
}

static void step(mctx *c, json_t *req, json_t *undo) {
  json_object_set_new(req, "undo", undo ? undo : json_null());
  json_array_append_new(c->steps, req);
}

/* A JSON Patch of the VM, led by the resourceVersion it was planned
** against (when the VM object has one: the manifest of a plan has none). */
static json_t *patch(mctx *c, json_t *ops) {
  const char *rv = json_string_value(
      json_object_get(json_object_get(c->vm, "metadata"), "resourceVersion"));
  if (rv)
    json_array_insert_new(ops, 0,
                          json_pack("{s:s, s:s, s:s}", "op", "replace", "path",
                                    "/metadata/resourceVersion", "value", rv));
  return req_at(c->cfg, "PATCH", "vm", ops);
}

static const json_t *tmpl_spec(const json_t *vm) {
  return json_object_get(
      json_object_get(json_object_get(vm, "spec"), "template"), "spec");
}

static json_t *volume_req(mctx *c, const char *verb, json_t *disk,
                          json_t *volume) {
  json_t *body;
  const char *name = json_string_value(json_object_get(volume, "name"));
  if (strcmp(verb, "vm/removevolume") == 0) {
    body = json_pack("{s:s}", "name", name);
  } else {
    json_t *src = json_deep_copy(volume);
    json_object_del(src, "name");
    body = json_pack("{s:s, s:O, s:o}", "name", name, "disk", disk,
                     "volumeSource", src);
  }
  return req_at(c->cfg, "PUT", verb, body);
}

static int scsi(mctx *c) {
  int ctrl = orr_scsi_controller_index(c->parts[3]);
  int lun = atoi(c->parts[5]);
  char field[200];
  json_t *disk, *vol, *add, *rm;
  int rc;
  if (ctrl < 0)
    return refuse(c, ORR_EINVAL, "not one of the four SCSI controller GUIDs");
  snprintf(field, sizeof field, "%s", c->path);
  if (strcmp(c->type, "Add") == 0) {
    if ((rc = orr__kv_disk(ctrl, lun, c->settings, "Settings", c->cfg, true,
                           &disk, &vol, c->e)) != 0) {
      orr_error_prefix(c->e, c->path);
      return rc;
    }
    add = volume_req(c, "vm/addvolume", disk, vol);
    rm = volume_req(c, "vm/removevolume", NULL, vol);
    json_decref(disk);
    json_decref(vol);
    step(c, add, rm);
    return 0;
  }
  if (strcmp(c->type, "Remove") == 0) {
    const json_t *att = json_object_get(
        json_object_get(
            json_object_get(
                json_object_get(
                    json_object_get(json_object_get(c->doc, "VirtualMachine"),
                                    "Devices"),
                    "Scsi"),
                c->parts[3]),
            "Attachments"),
        c->parts[5]);
    json_t *undo = NULL;
    orr_kv_name name = orr__kv_disk_name(ctrl, lun);
    vol = json_pack("{s:s}", "name", name.s);
    rm = volume_req(c, "vm/removevolume", NULL, vol);
    json_decref(vol);
    /* Putting it back needs a hot-pluggable source for it; a boot-time
    ** container disk has none, so that removal cannot be undone. */
    if (att && orr__kv_disk(ctrl, lun, att, "Settings", c->cfg, true, &disk,
                            &vol, NULL) == 0) {
      undo = volume_req(c, "vm/addvolume", disk, vol);
      json_decref(disk);
      json_decref(vol);
    }
    step(c, rm, undo);
    return 0;
  }
  return refuse(c, ORR_EINVAL, "RequestType must be Add or Remove here");
}

/* Index of the element named `name` in array arr, or -1. */
static long find_named(const json_t *arr, const char *name) {
  size_t i;
  json_t *x;
  json_array_foreach(arr, i, x) {
    const char *n = json_string_value(json_object_get(x, "name"));
    if (n && strcmp(n, name) == 0)
      return (long)i;
  }
  return -1;
}

static int nic(mctx *c) {
  const json_t *spec = tmpl_spec(c->vm);
  const json_t *ifaces = json_object_get(
      json_object_get(json_object_get(spec, "domain"), "devices"),
      "interfaces");
  const json_t *nets = json_object_get(spec, "networks");
  orr_kv_name name = orr__kv_nic_name(c->parts[3]);
  long ii = find_named(ifaces, name.s), ni = find_named(nets, name.s);
  char p1[160], p2[160];
  json_t *iface, *net, *ops, *undo;
  int rc;
  if (strcmp(c->type, "Update") == 0)
    return refuse(c, ORR_ENOTSUP,
                  "KubeVirt cannot change a plugged-in interface's network "
                  "or MAC; remove it and add it again");
  if (strcmp(c->type, "Remove") == 0) {
    if (ii < 0)
      return refuse(c, ORR_ENOENT, "the VirtualMachine has no such interface");
    /* KubeVirt unplugs an interface whose state is "absent". */
    snprintf(p1, sizeof p1, DEVICES "/interfaces/%ld/state", ii);
    ops = json_pack("[{s:s, s:s, s:s}]", "op", "add", "path", p1, "value",
                    "absent");
    undo =
        json_object_get(json_array_get(ifaces, (size_t)ii), "state")
            ? json_pack(
                  "[{s:s, s:s, s:O}]", "op", "replace", "path", p1, "value",
                  json_object_get(json_array_get(ifaces, (size_t)ii), "state"))
            : json_pack("[{s:s, s:s}]", "op", "remove", "path", p1);
    step(c, patch(c, ops), patch(c, undo));
    return 0;
  }
  if (strcmp(c->type, "Add") != 0)
    return refuse(c, ORR_EINVAL, "RequestType must be Add, Remove or Update");
  if ((rc = orr__kv_nic(c->parts[3], c->settings, "Settings", c->cfg, true,
                        &iface, &net, c->e)) != 0) {
    orr_error_prefix(c->e, c->path);
    return rc;
  }
  ops = json_array();
  undo = json_array();
  if (ii >= 0) {
    /* Unplugged earlier (state absent): the entry comes back. */
    snprintf(p1, sizeof p1, DEVICES "/interfaces/%ld", ii);
    json_array_append_new(ops, json_pack("{s:s, s:s, s:o}", "op", "replace",
                                         "path", p1, "value", iface));
    json_array_append_new(undo, json_pack("{s:s, s:s, s:O}", "op", "replace",
                                          "path", p1, "value",
                                          json_array_get(ifaces, (size_t)ii)));
  } else if (ifaces) {
    snprintf(p1, sizeof p1, DEVICES "/interfaces/%zu", json_array_size(ifaces));
    json_array_append_new(ops,
                          json_pack("{s:s, s:s, s:o}", "op", "add", "path",
                                    DEVICES "/interfaces/-", "value", iface));
    json_array_append_new(undo,
                          json_pack("{s:s, s:s}", "op", "remove", "path", p1));
  } else {
    json_array_append_new(ops,
                          json_pack("{s:s, s:s, s:[o]}", "op", "add", "path",
                                    DEVICES "/interfaces", "value", iface));
    json_array_append_new(undo, json_pack("{s:s, s:s}", "op", "remove", "path",
                                          DEVICES "/interfaces"));
  }
  if (ni >= 0) {
    snprintf(p2, sizeof p2, "/spec/template/spec/networks/%ld", ni);
    json_array_append_new(ops, json_pack("{s:s, s:s, s:o}", "op", "replace",
                                         "path", p2, "value", net));
    json_array_append_new(undo, json_pack("{s:s, s:s, s:O}", "op", "replace",
                                          "path", p2, "value",
                                          json_array_get(nets, (size_t)ni)));
  } else if (nets) {
    snprintf(p2, sizeof p2, "/spec/template/spec/networks/%zu",
             json_array_size(nets));
    json_array_append_new(ops, json_pack("{s:s, s:s, s:o}", "op", "add", "path",
                                         "/spec/template/spec/networks/-",
                                         "value", net));
    json_array_append_new(undo,
                          json_pack("{s:s, s:s}", "op", "remove", "path", p2));
  } else {
    json_array_append_new(ops, json_pack("{s:s, s:s, s:[o]}", "op", "add",
                                         "path", "/spec/template/spec/networks",
                                         "value", net));
    json_array_append_new(undo, json_pack("{s:s, s:s}", "op", "remove", "path",
                                          "/spec/template/spec/networks"));
  }
  step(c, patch(c, ops), patch(c, undo));
  return 0;
}

static int memory(mctx *c) {
  const char *cur = json_string_value(json_object_get(
      json_object_get(json_object_get(tmpl_spec(c->vm), "domain"), "memory"),
      "guest"));
  long long mb, was = cur ? atoll(cur) : 0;
  char q[32];
  json_t *ops, *undo;
  if (c->type[0] != '\0' && strcmp(c->type, "Update") != 0)
    return refuse(c, ORR_EINVAL, "RequestType must be absent or Update here");
  if (!json_is_integer(c->settings) || json_integer_value(c->settings) < 1)
    return refuse(c, ORR_EINVAL,
                  "Settings must be the new size in MiB, a positive integer");
  mb = (long long)json_integer_value(c->settings);
  if (cur == NULL || strcmp(cur + strspn(cur, "0123456789"), "Mi") != 0)
    return refuse(c, ORR_ENOTSUP,
                  "the VirtualMachine's memory.guest is not in Mi as this "
                  "backend wrote it");
  if (mb < was)
    return refuse(c, ORR_ENOTSUP,
                  "KubeVirt hot-plugs memory but cannot take it away from a "
                  "running guest");
  snprintf(q, sizeof q, "%lldMi", mb);
  ops = json_pack("[{s:s, s:s, s:s}]", "op", "replace", "path",
                  "/spec/template/spec/domain/memory/guest", "value", q);
  undo = json_pack("[{s:s, s:s, s:s}]", "op", "replace", "path",
                   "/spec/template/spec/domain/memory/guest", "value", cur);
  step(c, patch(c, ops), patch(c, undo));
  return 0;
}

int orr__kv_plan_modify(const json_t *live_doc, const json_t *vm,
                        const json_t *request, const orr_kv_config *cfg,
                        json_t **plan, orr_error *e) {
  mctx c = {.cfg = cfg, .doc = live_doc, .vm = vm, .e = e};
  char *copy, *save = NULL;
  int rc;
  const char *path =
      json_string_value(json_object_get(request, "ResourcePath"));
  *plan = NULL;
  if (path == NULL)
    return orr_error_set(e, ORR_EINVAL, "request: ResourcePath is required");
  c.path = path;
  c.type = json_string_value(json_object_get(request, "RequestType"));
  c.settings = json_object_get(request, "Settings");
  c.steps = json_array();
  copy = strdup(path);
  for (char *tok = strtok_r(copy, "/", &save); tok && c.nparts < 8;
       tok = strtok_r(NULL, "/", &save))
    c.parts[c.nparts++] = tok;
  if (c.type == NULL)
    c.type = "";
#define IS(i, s) (c.nparts > (i) && strcmp(c.parts[i], s) == 0)
  if (c.nparts == 6 && IS(0, "VirtualMachine") && IS(1, "Devices") &&
      IS(2, "Scsi") && IS(4, "Attachments"))
    rc = scsi(&c);
  else if (c.nparts == 4 && IS(1, "Devices") && IS(2, "NetworkAdapters"))
    rc = nic(&c);
  else if (c.nparts == 4 && IS(1, "ComputeTopology") && IS(2, "Memory") &&
           IS(3, "SizeInMB"))
    rc = memory(&c);
  else if (c.nparts == 4 && IS(1, "Devices") && IS(2, "VirtualPci"))
    rc = refuse(&c, ORR_ENOTSUP,
                "KubeVirt cannot hot-plug host devices; they are part of the "
                "VM's spec at start");
  else if (c.nparts >= 3 && IS(1, "Devices") && IS(2, "Plan9"))
    rc = refuse(&c, ORR_ENOTSUP,
                "KubeVirt cannot hot-plug filesystems (virtiofs)");
  else if (c.nparts >= 3 && IS(1, "ComputeTopology") && IS(2, "Processor"))
    rc = refuse(&c, ORR_ENOTSUP,
                "KubeVirt changes CPU resources only by restarting the VM");
  else
    rc = refuse(&c, ORR_ENOTSUP,
                "the kubevirt backend changes SCSI attachments, network "
                "adapters and Memory/SizeInMB at run time");
#undef IS
  free(copy);
  if (rc != 0) {
    json_decref(c.steps);
    return rc;
  }
  *plan = json_pack("{s:o}", "do", c.steps);
  return 0;
}

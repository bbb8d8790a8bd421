/*
** The live document as the cluster reports it. KubeVirt is the one that
** knows what the VM has now (a volume someone removed with virtctl, memory
** hot-plugged, an interface unplugged), so the document follows the
** VirtualMachineInstance: its spec lists the volumes and interfaces it
** has, its status what is attached (volumeStatus), the memory the guest
** sees (memory.guestCurrent) and the CPU topology (currentCPUTopology).
*/
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kubevirt.h"
#include "orrery/document.h"

const char *orr__kv_vmi_state(const json_t *vmi) {
  const json_t *status = json_object_get(vmi, "status");
  const char *phase = json_string_value(json_object_get(status, "phase"));
  size_t i;
  json_t *c;
  if (vmi == NULL || phase == NULL)
    return "Created";
  if (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0)
    return "Stopped";
  if (strcmp(phase, "Running") != 0)
    return "Created"; /* Pending, Scheduling, Scheduled, Unknown */
  json_array_foreach(json_object_get(status, "conditions"), i, c) {
    const char *t = json_string_value(json_object_get(c, "type"));
    const char *s = json_string_value(json_object_get(c, "status"));
    if (t && s && strcmp(t, "Paused") == 0 && strcmp(s, "True") == 0)
      return "Paused";
  }
  return "Running";
}

/* A Kubernetes quantity of bytes ("512Mi", "1Gi", "536870912", "1G") in
** MiB, rounded down; -1 if it is not one. */
static long long quantity_mib(const char *q) {
  static const struct {
    const char *suffix;
    double mult;
  } units[] = {{"Ki", 1024.0},
               {"Mi", 1048576.0},
               {"Gi", 1073741824.0},
               {"Ti", 1099511627776.0},
               {"k", 1e3},
               {"M", 1e6},
               {"G", 1e9},
               {"T", 1e12},
               {"", 1.0}};
  char *end;
  double v;
  if (q == NULL || !isdigit((unsigned char)q[0]))
    return -1;
  v = strtod(q, &end);
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
    if (strcmp(end, units[i].suffix) == 0)
      return (long long)(v * units[i].mult / 1048576.0);
  return -1;
}

/* The document path that cfg->sources maps to `source` ("pvc:data"), or
** NULL. */
static const char *path_for(const orr_kv_config *cfg, const char *source) {
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)(cfg ? cfg->sources : NULL), key, v) {
    if (json_string_value(v) && strcmp(json_string_value(v), source) == 0)
      return key;
  }
  return NULL;
}

static const json_t *named(const json_t *arr, const char *name) {
  size_t i;
  json_t *x;
  json_array_foreach(arr, i, x) {
    const char *n = json_string_value(json_object_get(x, "name"));
    if (n && strcmp(n, name) == 0)
      return x;
  }
  return NULL;
}

static void follow_scsi(json_t *doc, const json_t *vmi,
                        const orr_kv_config *cfg, bool *changed) {
  json_t *scsi = json_object_get(
      json_object_get(json_object_get(doc, "VirtualMachine"), "Devices"),
      "Scsi");
  const json_t *spec = json_object_get(vmi, "spec");
  const json_t *vols = json_object_get(spec, "volumes");
  const json_t *disks = json_object_get(
      json_object_get(json_object_get(spec, "domain"), "devices"), "disks");
  const char *guid, *lun;
  json_t *ctrl, *att, *tmp;
  size_t i;
  json_t *vs;
  /* Attachments whose volume the instance no longer has. */
  json_object_foreach(scsi, guid, ctrl) {
    json_t *atts = json_object_get(ctrl, "Attachments");
    int ci = orr_scsi_controller_index(guid);
    json_object_foreach_safe(atts, tmp, lun, att) {
      if (named(vols, orr__kv_disk_name(ci, atoi(lun)).s) == NULL) {
        json_object_del(atts, lun);
        *changed = true;
      }
    }
  }
  /* Hot-plugged volumes the instance reports Ready that the document lacks:
  ** they join it when their source maps back to a document path. */
  json_array_foreach(
      json_object_get(json_object_get(vmi, "status"), "volumeStatus"), i, vs) {
    const char *name = json_string_value(json_object_get(vs, "name"));
    const char *phase = json_string_value(json_object_get(vs, "phase"));
    const json_t *vol, *disk, *pvc, *dv;
    const char *path;
    char src[300], lunkey[8];
    int c, l;
    json_t *ctl, *atts;
    if (name == NULL || phase == NULL || strcmp(phase, "Ready") != 0 ||
        orr__kv_disk_from_name(name, &c, &l) != 0)
      continue;
    snprintf(lunkey, sizeof lunkey, "%d", l);
    ctl = json_object_get(scsi, orr_scsi_controller_guid(c));
    if (ctl == NULL ||
        json_object_get(json_object_get(ctl, "Attachments"), lunkey))
      continue; /* no such controller in the document, or already there */
    vol = named(vols, name);
    disk = named(disks, name);
    pvc = json_object_get(vol, "persistentVolumeClaim");
    dv = json_object_get(vol, "dataVolume");
    if (pvc)
      snprintf(src, sizeof src, "pvc:%s",
               json_string_value(json_object_get(pvc, "claimName")));
    else if (dv)
      snprintf(src, sizeof src, "dv:%s",
               json_string_value(json_object_get(dv, "name")));
    else
      continue;
    if ((path = path_for(cfg, src)) == NULL)
      continue;
    atts = json_object_get(ctl, "Attachments");
    if (atts == NULL)
      json_object_set_new(ctl, "Attachments", atts = json_object());
    att = json_pack("{s:s, s:s}", "Type", "VirtualDisk", "Path", path);
    if (json_is_true(
            json_object_get(json_object_get(disk, "disk"), "readonly")))
      json_object_set_new(att, "ReadOnly", json_true());
    json_object_set_new(atts, lunkey, att);
    *changed = true;
  }
}

static void follow_nics(json_t *doc, const json_t *vmi, bool *changed) {
  json_t *nics = json_object_get(
      json_object_get(json_object_get(doc, "VirtualMachine"), "Devices"),
      "NetworkAdapters");
  const json_t *ifaces = json_object_get(
      json_object_get(json_object_get(json_object_get(vmi, "spec"), "domain"),
                      "devices"),
      "interfaces");
  const char *guid;
  json_t *nic, *tmp;
  json_object_foreach_safe(nics, tmp, guid, nic) {
    const json_t *i = named(ifaces, orr__kv_nic_name(guid).s);
    const char *state = json_string_value(json_object_get(i, "state"));
    if (i == NULL || (state && strcmp(state, "absent") == 0)) {
      json_object_del(nics, guid);
      *changed = true;
    }
  }
}

static void follow_compute(json_t *doc, const json_t *vmi, bool *changed) {
  const json_t *status = json_object_get(vmi, "status");
  json_t *topo = json_object_get(json_object_get(doc, "VirtualMachine"),
                                 "ComputeTopology");
  const char *cur = json_string_value(
      json_object_get(json_object_get(status, "memory"), "guestCurrent"));
  const json_t *cpu = json_object_get(status, "currentCPUTopology");
  long long mib = quantity_mib(cur);
  json_t *mem = json_object_get(topo, "Memory");
  if (mib > 0 && mem &&
      json_integer_value(json_object_get(mem, "SizeInMB")) != mib) {
    json_object_set_new(mem, "SizeInMB", json_integer(mib));
    *changed = true;
  }
  if (cpu) {
    json_int_t n = 1;
    const char *k[] = {"sockets", "cores", "threads"};
    json_t *proc = json_object_get(topo, "Processor");
    for (int i = 0; i < 3; i++)
      if (json_is_integer(json_object_get(cpu, k[i])))
        n *= json_integer_value(json_object_get(cpu, k[i]));
    if (proc == NULL && n != 1)
      json_object_set_new(topo, "Processor", proc = json_object());
    if (proc && json_integer_value(json_object_get(proc, "Count")) != n &&
        !(n == 1 && json_object_get(proc, "Count") == NULL)) {
      json_object_set_new(proc, "Count", json_integer(n));
      *changed = true;
    }
  }
}

int orr__kv_follow_status(const json_t *doc, const json_t *vmi,
                          const orr_kv_config *cfg, json_t **out, bool *changed,
                          orr_error *e) {
  json_t *d;
  bool moved = false;
  *out = NULL;
  if (!json_is_object(doc) || !json_is_object(vmi))
    return orr_error_set(e, ORR_EINVAL,
                         "follow: needs the document and the VMI object");
  d = json_deep_copy(doc);
  /* An instance that is not running yet has not attached anything. */
  if (strcmp(orr__kv_vmi_state(vmi), "Running") == 0 ||
      strcmp(orr__kv_vmi_state(vmi), "Paused") == 0) {
    follow_scsi(d, vmi, cfg, &moved);
    follow_nics(d, vmi, &moved);
    follow_compute(d, vmi, &moved);
  }
  *out = d;
  if (changed)
    *changed = moved;
  return 0;
}

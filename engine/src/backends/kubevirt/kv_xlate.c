/*
** Boot-time document -> kubevirt.io/v1 VirtualMachine. The mapping, field
** by field, with the reason for every refusal, is the table in
** docs/kubevirt.md; the decisions that shape the manifest:
**
** - runStrategy Manual: the VM exists without running, as after HCS's
**   create; the start/stop subresources drive it and the cluster never
**   restarts it on its own.
** - CPU: one socket of Count cores (QEMU 7.2's q35 default, so a guest sees
**   the same topology on both backends). Limit and Reservation are
**   fractions of the VM's CPUs x 1e5 and become resources.limits.cpu and
**   resources.requests.cpu in millicores (Count x value / 100).
** - Every SCSI attachment is a disk on KubeVirt's one SCSI bus named
**   scsi-<controller>-<lun> with serial orr-<controller>-<lun>: KubeVirt
**   picks the SCSI addresses itself, so the guest finds a disk by its
**   serial (/dev/disk/by-id/ holds a link ending in orr-0-3) instead of
*controller and LUN.
** - Names of NICs and host devices carry the document's GUID (nic-<guid>,
**   pci-<guid>), so the live document can be read back from the VMI.
** - The boot document itself rides along in the annotation
**   orrery.io/document, for re-attaching from another engine.
*/
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kubevirt.h"
#include "orrery/document.h"

typedef enum { F_USE, F_IGNORE, F_REFUSE } field_kind;

typedef struct {
  const char *key;
  field_kind kind;
  const char *why; /* F_REFUSE: why KubeVirt cannot express it */
} field_rule;

typedef struct {
  const orr_kv_config *cfg;
  json_t *ignored;
  orr_error *e;
} ctx;

orr_kv_name orr__kv_disk_name(int ctrl, int lun) {
  orr_kv_name n;
  snprintf(n.s, sizeof n.s, "scsi-%d-%d", ctrl, lun);
  return n;
}

orr_kv_name orr__kv_nic_name(const char *guid) {
  orr_kv_name n;
  snprintf(n.s, sizeof n.s, "nic-%s", guid);
  for (char *p = n.s; *p; p++)
    *p = (char)tolower((unsigned char)*p);
  return n;
}

orr_kv_name orr__kv_hostdev_name(const char *guid) {
  orr_kv_name n;
  snprintf(n.s, sizeof n.s, "pci-%s", guid);
  for (char *p = n.s; *p; p++)
    *p = (char)tolower((unsigned char)*p);
  return n;
}

int orr__kv_disk_from_name(const char *name, int *ctrl, int *lun) {
  int c, l, n = 0;
  if (sscanf(name, "scsi-%d-%d%n", &c, &l, &n) != 2 || name[n] != '\0' ||
      c < 0 || c >= ORR_SCSI_CONTROLLERS || l < 0 || l >= ORR_SCSI_LUNS)
    return -1;
  *ctrl = c;
  *lun = l;
  return 0;
}

/* Checks every key of obj against rules: advisory keys go to ignored,
** refused and unknown keys are ORR_ENOTSUP naming them. */
static int fields(ctx *c, const json_t *obj, const char *path,
                  const field_rule *rules) {
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)obj, key, v) {
    const field_rule *r = rules;
    while (r->key && strcmp(r->key, key) != 0)
      r++;
    if (json_is_null(v))
      continue;
    if (r->key == NULL)
      return orr_error_set(c->e, ORR_ENOTSUP,
                           "%s.%s: the kubevirt backend does not know this "
                           "field",
                           path, key);
    if (r->kind == F_REFUSE)
      return orr_error_set(c->e, ORR_ENOTSUP, "%s.%s: %s", path, key, r->why);
    if (r->kind == F_IGNORE && c->ignored) {
      char full[256];
      snprintf(full, sizeof full, "%s.%s", path, key);
      json_array_append_new(c->ignored, json_string(full));
    }
  }
  return 0;
}

static long long int_or(const json_t *obj, const char *key, long long dflt) {
  const json_t *v = json_object_get(obj, key);
  return json_is_integer(v) ? (long long)json_integer_value(v) : dflt;
}

/* ---- compute ---- */

static const field_rule memory_rules[] = {
    {"SizeInMB", F_USE, NULL},
    {"Backing", F_IGNORE, NULL},
    {"AllowOvercommit", F_IGNORE, NULL},
    {"EnableHotHint", F_IGNORE, NULL},
    {"EnableColdHint", F_IGNORE, NULL},
    {"EnableColdDiscardHint", F_IGNORE, NULL},
    {"EnableDeferredCommit", F_IGNORE, NULL},
    {"LowMmioGapInMB", F_IGNORE, NULL},
    {"HighMmioBaseInMB", F_IGNORE, NULL},
    {"HighMmioGapInMB", F_IGNORE, NULL},
    {"SlitType", F_IGNORE, NULL},
    {NULL, F_USE, NULL}};

static const field_rule processor_rules[] = {
    {"Count", F_USE, NULL},
    {"Limit", F_USE, NULL},
    {"Reservation", F_USE, NULL},
    {"Weight", F_REFUSE,
     "KubeVirt has no relative CPU weight (resources.requests.cpu is a "
     "reservation, Processor.Reservation maps to it)"},
    {"CpuGroup", F_IGNORE, NULL},
    {"NumaProcessorsSettings", F_IGNORE, NULL},
    {NULL, F_USE, NULL}};

static const field_rule numa_rules[] = {
    {"VirtualNodeCount", F_USE, NULL},
    {"Settings", F_USE, NULL},
    {"PreferredPhysicalNodes", F_IGNORE, NULL},
    {"MaxSizePerNode", F_IGNORE, NULL},
    {NULL, F_USE, NULL}};

static int compute(ctx *c, const json_t *topo, json_t *domain,
                   json_t *resources) {
  static const char *mp = "VirtualMachine.ComputeTopology.Memory";
  static const char *pp = "VirtualMachine.ComputeTopology.Processor";
  static const char *np = "VirtualMachine.ComputeTopology.Numa";
  const json_t *mem = json_object_get(topo, "Memory");
  const json_t *cpu = json_object_get(topo, "Processor");
  const json_t *numa = json_object_get(topo, "Numa");
  long long size, count, limit, reservation;
  char q[32];
  int rc;
  if (mem == NULL || !json_is_integer(json_object_get(mem, "SizeInMB")))
    return orr_error_set(c->e, ORR_EINVAL,
                         "%s.SizeInMB is required by the kubevirt backend", mp);
  if ((rc = fields(c, mem, mp, memory_rules)) != 0 ||
      (cpu && (rc = fields(c, cpu, pp, processor_rules)) != 0) ||
      (numa && (rc = fields(c, numa, np, numa_rules)) != 0))
    return rc;
  size = int_or(mem, "SizeInMB", 0);
  count = int_or(cpu, "Count", 1);
  if (int_or(numa, "VirtualNodeCount", 1) > 1)
    return orr_error_set(c->e, ORR_ENOTSUP,
                         "%s.VirtualNodeCount: KubeVirt v1 cannot lay out "
                         "guest NUMA nodes (its cpu.numa only mirrors the "
                         "host's nodes of dedicated CPUs)",
                         np);
  snprintf(q, sizeof q, "%lldMi", size);
  json_object_set_new(domain, "memory", json_pack("{s:s}", "guest", q));
  json_object_set_new(domain, "cpu",
                      json_pack("{s:I, s:I, s:I}", "sockets", (json_int_t)1,
                                "cores", (json_int_t)count, "threads",
                                (json_int_t)1));
  limit = int_or(cpu, "Limit", 0);
  reservation = int_or(cpu, "Reservation", 0);
  /* 100000 is all of the VM's CPUs: Count x 1000 millicores. */
  if (limit > 0) {
    snprintf(q, sizeof q, "%lldm", (count * limit + 99) / 100);
    json_object_set_new(json_object_get(resources, "limits"), "cpu",
                        json_string(q));
  }
  if (reservation > 0) {
    snprintf(q, sizeof q, "%lldm", (count * reservation + 99) / 100);
    json_object_set_new(json_object_get(resources, "requests"), "cpu",
                        json_string(q));
  }
  return 0;
}

/* ---- firmware ---- */

static const field_rule chipset_rules[] = {
    {"Uefi", F_USE, NULL},
    {"LinuxKernelDirect", F_USE, NULL},
    {"UseUtc", F_USE, NULL},
    {"IsNumLockDisabled", F_IGNORE, NULL},
    {"BaseBoardSerialNumber", F_USE, NULL},
    {"ChassisSerialNumber", F_IGNORE, NULL},
    {"ChassisAssetTag", F_IGNORE, NULL},
    {"FirmwareFile", F_REFUSE,
     "KubeVirt boots its own BIOS or EFI firmware, not a file"},
    {NULL, F_USE, NULL}};

static const field_rule uefi_rules[] = {
    {"ApplySecureBootTemplate", F_USE, NULL},
    {"BootThis", F_USE, NULL},
    {"EnableDebugger", F_IGNORE, NULL},
    {"SecureBootTemplateId", F_IGNORE, NULL},
    {"Console", F_IGNORE, NULL},
    {NULL, F_USE, NULL}};

static const field_rule kernel_rules[] = {{"KernelFilePath", F_USE, NULL},
                                          {"InitRdPath", F_USE, NULL},
                                          {"KernelCmdLine", F_USE, NULL},
                                          {NULL, F_USE, NULL}};

static int firmware(ctx *c, const json_t *chipset, json_t *domain,
                    const char **boot_disk) {
  static const char *cp = "VirtualMachine.Chipset";
  const json_t *uefi = json_object_get(chipset, "Uefi");
  const json_t *lkd = json_object_get(chipset, "LinuxKernelDirect");
  json_t *fw = json_object();
  int rc;
  json_object_set_new(domain, "firmware", fw);
  if ((rc = fields(c, chipset, cp, chipset_rules)) != 0)
    return rc;
  if (json_string_value(json_object_get(chipset, "BaseBoardSerialNumber")))
    json_object_set(fw, "serial",
                    json_object_get(chipset, "BaseBoardSerialNumber"));
  if (json_is_true(json_object_get(chipset, "UseUtc")))
    json_object_set_new(domain, "clock", json_pack("{s:{}}", "utc"));
  if (uefi) {
    const json_t *boot = json_object_get(uefi, "BootThis");
    const char *sb =
        json_string_value(json_object_get(uefi, "ApplySecureBootTemplate"));
    if ((rc = fields(c, uefi, "VirtualMachine.Chipset.Uefi", uefi_rules)) != 0)
      return rc;
    /* KubeVirt's EFI defaults to secure boot (and needs SMM for it); HCS
    ** applies the template only when asked. */
    json_object_set_new(fw, "bootloader",
                        json_pack("{s:{s:b}}", "efi", "secureBoot",
                                  sb != NULL && strcmp(sb, "Apply") == 0));
    if (sb != NULL && strcmp(sb, "Apply") == 0)
      json_object_set_new(domain, "features",
                          json_pack("{s:{s:b}}", "smm", "enabled", 1));
    if (boot) {
      const char *type = json_string_value(json_object_get(boot, "DeviceType"));
      const char *dp = json_string_value(json_object_get(boot, "DevicePath"));
      if (type == NULL || strcmp(type, "ScsiDrive") != 0 || dp == NULL)
        return orr_error_set(c->e, ORR_ENOTSUP,
                             "%s.Uefi.BootThis: KubeVirt boots from a disk "
                             "(bootOrder); only DeviceType ScsiDrive with a "
                             "DevicePath naming an attachment can be "
                             "expressed",
                             cp);
      *boot_disk = dp;
    }
  }
  if (lkd) {
    static const char *lp = "VirtualMachine.Chipset.LinuxKernelDirect";
    const char *kpath =
        json_string_value(json_object_get(lkd, "KernelFilePath"));
    const char *ipath = json_string_value(json_object_get(lkd, "InitRdPath"));
    const char *cmd = json_string_value(json_object_get(lkd, "KernelCmdLine"));
    orr_kv_source ks, is;
    json_t *container;
    char field[128];
    if ((rc = fields(c, lkd, lp, kernel_rules)) != 0)
      return rc;
    snprintf(field, sizeof field, "%s.KernelFilePath", lp);
    if ((rc = orr__kv_source_for(c->cfg, kpath, field,
                                 1u << ORR_KV_CONTAINERDISK, &ks, c->e)) != 0)
      return rc;
    if (ks.path[0] == '\0')
      return orr_error_set(c->e, ORR_EINVAL,
                           "%s: the source must name the kernel inside the "
                           "image: containerdisk:IMAGE#/PATH",
                           field);
    container = json_pack("{s:s, s:s}", "image", ks.ref, "kernelPath", ks.path);
    json_object_set_new(fw, "kernelBoot",
                        json_pack("{s:o}", "container", container));
    if (ipath) {
      snprintf(field, sizeof field, "%s.InitRdPath", lp);
      if ((rc = orr__kv_source_for(c->cfg, ipath, field,
                                   1u << ORR_KV_CONTAINERDISK, &is, c->e)) != 0)
        return rc;
      if (is.path[0] == '\0' || strcmp(is.ref, ks.ref) != 0)
        return orr_error_set(c->e, is.path[0] ? ORR_ENOTSUP : ORR_EINVAL,
                             "%s: %s", field,
                             is.path[0] ? "KubeVirt takes the kernel and the "
                                          "initrd from one image: both "
                                          "sources must name the same IMAGE"
                                        : "the source must name the initrd "
                                          "inside the image: "
                                          "containerdisk:IMAGE#/PATH");
      json_object_set_new(container, "initrdPath", json_string(is.path));
    }
    if (cmd)
      json_object_set_new(json_object_get(fw, "kernelBoot"), "kernelArgs",
                          json_string(cmd));
  }
  if (json_object_size(fw) == 0)
    json_object_del(domain, "firmware");
  return 0;
}

/* ---- disks ---- */

static const field_rule attachment_rules[] = {
    {"Type", F_USE, NULL},
    {"Path", F_USE, NULL},
    {"ReadOnly", F_USE, NULL},
    {"IgnoreFlushes", F_IGNORE, NULL},
    {"CachingMode", F_IGNORE, NULL},
    {"NoWriteHardening", F_IGNORE, NULL},
    {"DisableExpansionOptimization", F_IGNORE, NULL},
    {"IgnoreRelativeLocator", F_IGNORE, NULL},
    {"CaptureIoAttributionContext", F_IGNORE, NULL},
    {"SupportCompressedVolumes", F_IGNORE, NULL},
    {"AlwaysAllowSparseFiles", F_IGNORE, NULL},
    {"ExtensibleVirtualDiskType", F_REFUSE,
     "KubeVirt has no extensible virtual disk providers"},
    {NULL, F_USE, NULL}};

static int disk(ctx *c, int ctrl, int lun, const json_t *att, const char *field,
                bool hotplug, json_t **out_disk, json_t **volume) {
  const orr_kv_config *cfg = c->cfg;
  orr_error *e = c->e;
  const char *type = json_string_value(json_object_get(att, "Type"));
  const char *path = json_string_value(json_object_get(att, "Path"));
  bool ro = json_is_true(json_object_get(att, "ReadOnly"));
  orr_kv_name name = orr__kv_disk_name(ctrl, lun);
  unsigned allowed = (1u << ORR_KV_PVC) | (1u << ORR_KV_DV);
  orr_kv_source src;
  char pfield[300], serial[32];
  json_t *target, *vs = NULL;
  int rc;
  *out_disk = *volume = NULL;
  if ((rc = fields(c, att, field, attachment_rules)) != 0)
    return rc;
  if (type == NULL || path == NULL)
    return orr_error_set(e, ORR_EINVAL, "%s: Type and Path are required",
                         field);
  if (strcmp(type, "ExtensibleVirtualDisk") == 0)
    return orr_error_set(e, ORR_ENOTSUP,
                         "%s.Type: KubeVirt has no extensible virtual disks",
                         field);
  if (strcmp(type, "PassThru") == 0 && hotplug)
    return orr_error_set(e, ORR_ENOTSUP,
                         "%s.Type: KubeVirt hot-plugs disks, not SCSI "
                         "pass-through LUNs",
                         field);
  if (strcmp(type, "Iso") == 0 && hotplug)
    return orr_error_set(e, ORR_ENOTSUP,
                         "%s.Type: KubeVirt's addvolume hot-plugs disks, not "
                         "CD-ROMs",
                         field);
  /* A container disk is an ephemeral copy of an image: fine to boot from,
  ** impossible to hot-plug or to pass through. */
  if (!hotplug && strcmp(type, "PassThru") != 0)
    allowed |= 1u << ORR_KV_CONTAINERDISK;
  snprintf(pfield, sizeof pfield, "%s.Path", field);
  if ((rc = orr__kv_source_for(cfg, path, pfield, allowed, &src, e)) != 0)
    return rc;
  snprintf(serial, sizeof serial, "orr-%d-%d", ctrl, lun);
  if (strcmp(type, "PassThru") == 0) {
    target = json_pack("{s:s}", "bus", "scsi");
    *out_disk = json_pack("{s:s, s:o}", "name", name.s, "lun", target);
  } else if (strcmp(type, "Iso") == 0) {
    target = json_pack("{s:s, s:b}", "bus", "scsi", "readonly", 1);
    *out_disk = json_pack("{s:s, s:o, s:s}", "name", name.s, "cdrom", target,
                          "serial", serial);
  } else {
    target = json_pack("{s:s}", "bus", "scsi");
    if (ro)
      json_object_set_new(target, "readonly", json_true());
    *out_disk = json_pack("{s:s, s:o, s:s}", "name", name.s, "disk", target,
                          "serial", serial);
  }
  switch (src.kind) {
  case ORR_KV_PVC:
    vs = json_pack("{s:{s:s}}", "persistentVolumeClaim", "claimName", src.ref);
    if (ro)
      json_object_set_new(json_object_get(vs, "persistentVolumeClaim"),
                          "readOnly", json_true());
    if (hotplug)
      json_object_set_new(json_object_get(vs, "persistentVolumeClaim"),
                          "hotpluggable", json_true());
    break;
  case ORR_KV_DV:
    vs = json_pack("{s:{s:s}}", "dataVolume", "name", src.ref);
    if (hotplug)
      json_object_set_new(json_object_get(vs, "dataVolume"), "hotpluggable",
                          json_true());
    break;
  default: /* ORR_KV_CONTAINERDISK */
    vs = json_pack("{s:{s:s}}", "containerDisk", "image", src.ref);
    if (src.path[0])
      json_object_set_new(json_object_get(vs, "containerDisk"), "path",
                          json_string(src.path));
    break;
  }
  *volume = vs;
  json_object_set_new(*volume, "name", json_string(name.s));
  return 0;
}

int orr__kv_disk(int ctrl, int lun, const json_t *att, const char *field,
                 const orr_kv_config *cfg, bool hotplug, json_t **d,
                 json_t **volume, orr_error *e) {
  ctx c = {cfg, NULL, e};
  return disk(&c, ctrl, lun, att, field, hotplug, d, volume);
}

/* ---- NICs ---- */

static const field_rule nic_rules[] = {{"EndpointId", F_USE, NULL},
                                       {"MacAddress", F_USE, NULL},
                                       {"IovSettings", F_IGNORE, NULL},
                                       {NULL, F_USE, NULL}};

static int nic(ctx *c, const char *guid, const json_t *settings,
               const char *field, bool hotplug, json_t **iface,
               json_t **network) {
  const orr_kv_config *cfg = c->cfg;
  orr_error *e = c->e;
  const char *ep = json_string_value(json_object_get(settings, "EndpointId"));
  const char *mac = json_string_value(json_object_get(settings, "MacAddress"));
  orr_kv_name name = orr__kv_nic_name(guid);
  orr_kv_source src;
  char efield[300];
  int rc;
  *iface = *network = NULL;
  if ((rc = fields(c, settings, field, nic_rules)) != 0)
    return rc;
  snprintf(efield, sizeof efield, "%s.EndpointId", field);
  if (ep == NULL)
    return orr_error_set(e, ORR_EINVAL, "%s is required", efield);
  if ((rc = orr__kv_source_for(cfg, ep, efield,
                               (1u << ORR_KV_POD) | (1u << ORR_KV_MULTUS), &src,
                               e)) != 0)
    return rc;
  if (src.kind == ORR_KV_POD && hotplug)
    return orr_error_set(e, ORR_ENOTSUP,
                         "%s: KubeVirt hot-plugs interfaces on secondary "
                         "(multus) networks only, not on the pod network",
                         efield);
  /* The pod network takes masquerade (the VM behind the pod's address);
  ** a multus network takes bridge, the binding KubeVirt hot-plugs. */
  *iface = json_pack("{s:s, s:{}}", "name", name.s,
                     src.kind == ORR_KV_POD ? "masquerade" : "bridge");
  if (mac) {
    char m[18];
    /* HCS spells MACs 00-15-5D-..., Kubernetes 00:15:5d:... */
    for (size_t i = 0; i < 17 && mac[i]; i++)
      m[i] = mac[i] == '-' ? ':' : (char)tolower((unsigned char)mac[i]);
    m[17] = '\0';
    json_object_set_new(*iface, "macAddress", json_string(m));
  }
  if (src.kind == ORR_KV_POD)
    *network = json_pack("{s:s, s:{}}", "name", name.s, "pod");
  else
    *network = json_pack("{s:s, s:{s:s}}", "name", name.s, "multus",
                         "networkName", src.ref);
  return 0;
}

int orr__kv_nic(const char *guid, const json_t *settings, const char *field,
                const orr_kv_config *cfg, bool hotplug, json_t **iface,
                json_t **network, orr_error *e) {
  ctx c = {cfg, NULL, e};
  return nic(&c, guid, settings, field, hotplug, iface, network);
}

/* ---- devices ---- */

static const field_rule devices_rules[] = {
    {"Scsi", F_USE, NULL},
    {"NetworkAdapters", F_USE, NULL},
    {"VirtualPci", F_USE, NULL},
    {"ComPorts", F_USE, NULL},
    {"Plan9", F_USE, NULL},
    {"HvSocket", F_USE, NULL},
    {"VideoMonitor", F_USE, NULL},
    {"Keyboard", F_USE, NULL},
    {"EnhancedModeVideo", F_USE, NULL},
    {"Mouse", F_IGNORE, NULL},
    {"Battery", F_IGNORE, NULL},
    {"GuestCrashReporting", F_IGNORE, NULL},
    {"VirtualPMem", F_REFUSE,
     "KubeVirt v1 has no virtual persistent-memory devices"},
    {"VirtualSmb", F_REFUSE, "KubeVirt has no SMB device"},
    {"FlexibleIov", F_REFUSE, "KubeVirt has no FlexibleIov devices"},
    {"SharedMemory", F_REFUSE, "KubeVirt has no shared-memory regions"},
    {NULL, F_USE, NULL}};

static int scsi(ctx *c, const json_t *scsi_map, json_t *disks, json_t *volumes,
                const char *boot_disk) {
  const char *guid, *lunkey;
  json_t *ctrl, *att;
  bool boot_found = boot_disk == NULL;
  json_object_foreach((json_t *)scsi_map, guid, ctrl) {
    int ci = orr_scsi_controller_index(guid);
    json_object_foreach(json_object_get(ctrl, "Attachments"), lunkey, att) {
      char field[200];
      json_t *d, *vol;
      int rc, lun = atoi(lunkey);
      snprintf(field, sizeof field,
               "VirtualMachine.Devices.Scsi.%s.Attachments.%s", guid, lunkey);
      if ((rc = disk(c, ci, lun, att, field, false, &d, &vol)) != 0)
        return rc;
      if (boot_disk) {
        /* BootThis names the attachment as "<controller guid>/<lun>" (or
        ** with a leading "Scsi/"). */
        char want[64];
        const char *b =
            strncmp(boot_disk, "Scsi/", 5) == 0 ? boot_disk + 5 : boot_disk;
        snprintf(want, sizeof want, "%s/%s", guid, lunkey);
        if (strcasecmp(b, want) == 0) {
          json_object_set_new(d, "bootOrder", json_integer(1));
          boot_found = true;
        }
      }
      json_array_append_new(disks, d);
      json_array_append_new(volumes, vol);
    }
  }
  if (!boot_found)
    return orr_error_set(c->e, ORR_EINVAL,
                         "VirtualMachine.Chipset.Uefi.BootThis.DevicePath: "
                         "\"%s\" names no SCSI attachment of the document "
                         "(the kubevirt backend takes \"<controller "
                         "guid>/<lun>\")",
                         boot_disk);
  return 0;
}

static int nics(ctx *c, const json_t *map, json_t *ifaces, json_t *networks) {
  const char *guid;
  json_t *n;
  int pods = 0;
  json_object_foreach((json_t *)map, guid, n) {
    char field[160];
    json_t *iface, *net;
    int rc;
    snprintf(field, sizeof field, "VirtualMachine.Devices.NetworkAdapters.%s",
             guid);
    if ((rc = nic(c, guid, n, field, false, &iface, &net)) != 0)
      return rc;
    if (json_object_get(net, "pod") && ++pods > 1) {
      json_decref(iface);
      json_decref(net);
      return orr_error_set(c->e, ORR_ENOTSUP,
                           "%s.EndpointId: KubeVirt gives a VM one pod "
                           "network; the others must be multus networks",
                           field);
    }
    json_array_append_new(ifaces, iface);
    json_array_append_new(networks, net);
  }
  return 0;
}

static int vpci(ctx *c, const json_t *map, json_t *devices) {
  const char *guid;
  json_t *dev;
  json_object_foreach((json_t *)map, guid, dev) {
    const json_t *fns = json_object_get(dev, "Functions");
    const json_t *fn = json_array_get(fns, 0);
    const char *dip =
        json_string_value(json_object_get(fn, "DeviceInstancePath"));
    char field[200];
    orr_kv_source src;
    int rc;
    snprintf(field, sizeof field,
             "VirtualMachine.Devices.VirtualPci.%s.Functions", guid);
    if (json_array_size(fns) != 1)
      return orr_error_set(c->e, ORR_ENOTSUP,
                           "%s: KubeVirt assigns a host device as one unit; "
                           "a device of %zu functions cannot be expressed",
                           field, json_array_size(fns));
    if (int_or(fn, "VirtualFunction", 0) != 0)
      return orr_error_set(c->e, ORR_ENOTSUP,
                           "%s[0].VirtualFunction: KubeVirt picks SR-IOV "
                           "virtual functions through device plugins",
                           field);
    if (json_object_get(dev, "PropagateNumaAffinity") && c->ignored) {
      char f2[200];
      snprintf(f2, sizeof f2,
               "VirtualMachine.Devices.VirtualPci.%s.PropagateNumaAffinity",
               guid);
      json_array_append_new(c->ignored, json_string(f2));
    }
    strcat(field, "[0].DeviceInstancePath");
    /* QEMU's entropy device is KubeVirt's rng: a device, not a resource. */
    if (dip && strcmp(dip, "qemu:virtio-rng-pci") == 0) {
      json_object_set_new(devices, "rng", json_object());
      continue;
    }
    if ((rc = orr__kv_source_for(c->cfg, dip, field, 1u << ORR_KV_HOSTDEVICE,
                                 &src, c->e)) != 0)
      return rc;
    json_array_append_new(json_object_get(devices, "hostDevices"),
                          json_pack("{s:s, s:s}", "name",
                                    orr__kv_hostdev_name(guid).s, "deviceName",
                                    src.ref));
  }
  return 0;
}

static const field_rule share_rules[] = {
    {"Name", F_USE, NULL},
    {"AccessName", F_USE, NULL},
    {"Path", F_USE, NULL},
    {"ReadOnly", F_USE, NULL},
    {"Port", F_IGNORE, NULL},
    {"Flags", F_IGNORE, NULL},
    {"UseShareRootIdentity", F_IGNORE, NULL},
    {"AllowedFiles", F_REFUSE, "virtiofs exports the whole volume"},
    {NULL, F_USE, NULL}};

/* Plan9 shares become virtiofs filesystems over a PVC; the guest mounts
** them by the tag AccessName (or Name), the filesystem's name. */
static int shares(ctx *c, const json_t *plan9, json_t *devices,
                  json_t *volumes) {
  size_t i;
  json_t *s;
  json_array_foreach(json_object_get(plan9, "Shares"), i, s) {
    const char *tag = json_string_value(json_object_get(s, "AccessName"));
    const char *path = json_string_value(json_object_get(s, "Path"));
    char field[96], pfield[128];
    orr_kv_source src;
    json_t *vs;
    int rc;
    snprintf(field, sizeof field, "VirtualMachine.Devices.Plan9.Shares[%zu]",
             i);
    if ((rc = fields(c, s, field, share_rules)) != 0)
      return rc;
    if (tag == NULL)
      tag = json_string_value(json_object_get(s, "Name"));
    if (tag == NULL || !orr__kv_valid_name(tag, 63) || strchr(tag, '.'))
      return orr_error_set(c->e, ORR_EINVAL,
                           "%s.AccessName: the kubevirt backend uses it as the "
                           "filesystem's name and mount tag, which must be a "
                           "DNS-1123 label, got \"%s\"",
                           field, tag ? tag : "");
    snprintf(pfield, sizeof pfield, "%s.Path", field);
    if ((rc = orr__kv_source_for(c->cfg, path, pfield,
                                 (1u << ORR_KV_PVC) | (1u << ORR_KV_DV), &src,
                                 c->e)) != 0)
      return rc;
    json_array_append_new(json_object_get(devices, "filesystems"),
                          json_pack("{s:s, s:{}}", "name", tag, "virtiofs"));
    if (src.kind == ORR_KV_PVC) {
      vs = json_pack("{s:s, s:{s:s}}", "name", tag, "persistentVolumeClaim",
                     "claimName", src.ref);
      if (json_is_true(json_object_get(s, "ReadOnly")))
        json_object_set_new(json_object_get(vs, "persistentVolumeClaim"),
                            "readOnly", json_true());
    } else {
      if (json_is_true(json_object_get(s, "ReadOnly")))
        return orr_error_set(c->e, ORR_ENOTSUP,
                             "%s.ReadOnly: a DataVolume is mounted writable; "
                             "use a pvc source to share it read-only",
                             field);
      vs = json_pack("{s:s, s:{s:s}}", "name", tag, "dataVolume", "name",
                     src.ref);
    }
    json_array_append_new(volumes, vs);
  }
  return 0;
}

static int devices(ctx *c, const json_t *devs, json_t *kdev, json_t *volumes,
                   json_t *networks, const char *boot_disk) {
  static const char *dp = "VirtualMachine.Devices";
  const json_t *com = json_object_get(devs, "ComPorts");
  const json_t *hv = json_object_get(devs, "HvSocket");
  const char *key;
  json_t *v;
  void *tmp;
  int rc;
  json_object_set_new(kdev, "disks", json_array());
  json_object_set_new(kdev, "interfaces", json_array());
  json_object_set_new(kdev, "hostDevices", json_array());
  json_object_set_new(kdev, "filesystems", json_array());
  if (devs && (rc = fields(c, devs, dp, devices_rules)) != 0)
    return rc;
  if ((rc = scsi(c, json_object_get(devs, "Scsi"),
                 json_object_get(kdev, "disks"), volumes, boot_disk)) != 0 ||
      (rc = nics(c, json_object_get(devs, "NetworkAdapters"),
                 json_object_get(kdev, "interfaces"), networks)) != 0 ||
      (rc = vpci(c, json_object_get(devs, "VirtualPci"), kdev)) != 0 ||
      (rc = shares(c, json_object_get(devs, "Plan9"), kdev, volumes)) != 0)
    return rc;
  /* COM1 is KubeVirt's serial console, reached through the VMI's console
  ** subresource: the host socket path has no meaning on a cluster. */
  json_object_foreach((json_t *)com, key, v) {
    char f[64];
    if (strcmp(key, "0") != 0)
      return orr_error_set(c->e, ORR_ENOTSUP,
                           "%s.ComPorts.%s: KubeVirt gives a VM one serial "
                           "console (COM1, port \"0\")",
                           dp, key);
    snprintf(f, sizeof f, "%s.ComPorts.0.NamedPipe", dp);
    json_array_append_new(c->ignored, json_string(f));
    if (json_object_get(v, "OptimizeForDebugger")) {
      snprintf(f, sizeof f, "%s.ComPorts.0.OptimizeForDebugger", dp);
      json_array_append_new(c->ignored, json_string(f));
    }
  }
  json_object_set_new(kdev, "autoattachSerialConsole",
                      json_boolean(json_object_get(com, "0") != NULL));
  /* Graphics: KubeVirt's VNC display through the vnc subresource. */
  json_object_set_new(kdev, "autoattachGraphicsDevice",
                      json_boolean(json_object_get(devs, "VideoMonitor") ||
                                   json_object_get(devs, "Keyboard") ||
                                   json_object_get(devs, "EnhancedModeVideo")));
  /* A VM without a NIC in its document has none: KubeVirt would add a pod
  ** interface of its own otherwise. */
  json_object_set_new(kdev, "autoattachPodInterface", json_false());
  if (hv) {
    const json_t *cfgv = json_object_get(hv, "HvSocketConfig");
    if (json_object_size(json_object_get(cfgv, "ServiceTable")) > 0)
      return orr_error_set(c->e, ORR_ENOTSUP,
                           "%s.HvSocket.HvSocketConfig.ServiceTable: "
                           "KubeVirt's VSOCK has no service table or "
                           "security descriptors",
                           dp);
    json_object_foreach((json_t *)cfgv, key, v) {
      char f[128];
      snprintf(f, sizeof f, "%s.HvSocket.HvSocketConfig.%s", dp, key);
      json_array_append_new(c->ignored, json_string(f));
    }
  }
  /* Empty lists are left out, as KubeVirt itself would write them. */
  json_object_foreach_safe(kdev, tmp, key, v) {
    if (json_is_array(v) && json_array_size(v) == 0)
      json_object_del(kdev, key);
  }
  return 0;
}

/* ---- the whole VM ---- */

static const field_rule cs_rules[] = {
    {"Owner", F_USE, NULL},
    {"SchemaVersion", F_IGNORE, NULL},
    {"VirtualMachine", F_USE, NULL},
    {"ShouldTerminateOnLastHandleClosed", F_USE, NULL},
    {"HostingSystemId", F_REFUSE, "KubeVirt VMs are not hosted in another"},
    {NULL, F_USE, NULL}};

static const field_rule vm_rules[] = {
    {"Chipset", F_USE, NULL},
    {"ComputeTopology", F_USE, NULL},
    {"Devices", F_USE, NULL},
    /* KubeVirt reboots a guest in place; there is no stop-on-reset. */
    {"StopOnReset", F_IGNORE, NULL},
    {"Version", F_IGNORE, NULL},
    {"GuestConnection", F_IGNORE, NULL},
    {"RegistryChanges", F_IGNORE, NULL},
    {"DebugOptions", F_IGNORE, NULL},
    {"StorageQoS", F_REFUSE,
     "KubeVirt has no VM-wide I/O limits (set them on the StorageClass)"},
    {"GuestState", F_REFUSE,
     "KubeVirt keeps guest state (TPM, EFI variables) in its own volumes"},
    {"RestoreState", F_REFUSE,
     "KubeVirt restores from VirtualMachineSnapshots, not from a state file"},
    {"SecuritySettings", F_REFUSE, "KubeVirt has no HCS security settings"},
    {NULL, F_USE, NULL}};

int orr__kv_manifest(const json_t *doc, const orr_kv_config *cfg, json_t **vm,
                     json_t **ignored, orr_error *e) {
  const json_t *hvm = json_object_get(doc, "VirtualMachine");
  const char *owner = json_string_value(json_object_get(doc, "Owner"));
  const char *boot_disk = NULL;
  json_t *domain, *resources, *kdev, *volumes, *networks, *spec, *out;
  ctx c = {cfg, NULL, e};
  char *text;
  int rc;
  *vm = NULL;
  if (ignored)
    *ignored = NULL;
  if (cfg == NULL || cfg->name == NULL || !orr__kv_valid_name(cfg->name, 63) ||
      strchr(cfg->name, '.'))
    return orr_error_set(e, ORR_EINVAL,
                         "name: a KubeVirt VM name must be a DNS-1123 label "
                         "(lower-case letters, digits and '-', at most 63), "
                         "got \"%s\"",
                         cfg && cfg->name ? cfg->name : "");
  if (cfg->ns == NULL || !orr__kv_valid_name(cfg->ns, 63) ||
      strchr(cfg->ns, '.'))
    return orr_error_set(e, ORR_EINVAL,
                         "namespace: must be a DNS-1123 label, got \"%s\"",
                         cfg->ns ? cfg->ns : "");
  if (cfg->sources && !json_is_object(cfg->sources))
    return orr_error_set(e, ORR_EINVAL,
                         "sources: must be a table of document string -> "
                         "cluster source");
  c.ignored = json_array();
  domain = json_object();
  resources = json_pack("{s:{}, s:{}}", "requests", "limits");
  kdev = json_object();
  volumes = json_array();
  networks = json_array();
  rc = fields(&c, doc, "ComputeSystem", cs_rules);
  if (rc == 0 && hvm == NULL)
    rc = orr_error_set(e, ORR_EINVAL, "VirtualMachine is required");
  if (rc == 0)
    rc = fields(&c, hvm, "VirtualMachine", vm_rules);
  if (rc == 0)
    rc =
        compute(&c, json_object_get(hvm, "ComputeTopology"), domain, resources);
  if (rc == 0)
    rc = firmware(&c, json_object_get(hvm, "Chipset"), domain, &boot_disk);
  if (rc == 0)
    rc = devices(&c, json_object_get(hvm, "Devices"), kdev, volumes, networks,
                 boot_disk);
  if (rc != 0) {
    json_decref(domain);
    json_decref(resources);
    json_decref(kdev);
    json_decref(volumes);
    json_decref(networks);
    json_decref(c.ignored);
    return rc;
  }
  json_object_set_new(domain, "devices", kdev);
  if (json_object_size(json_object_get(resources, "requests")) == 0)
    json_object_del(resources, "requests");
  if (json_object_size(json_object_get(resources, "limits")) == 0)
    json_object_del(resources, "limits");
  if (json_object_size(resources) > 0)
    json_object_set_new(domain, "resources", resources);
  else
    json_decref(resources);
  spec = json_pack("{s:o}", "domain", domain);
  if (json_array_size(volumes))
    json_object_set_new(spec, "volumes", volumes);
  else
    json_decref(volumes);
  if (json_array_size(networks))
    json_object_set_new(spec, "networks", networks);
  else
    json_decref(networks);
  text = orr_doc_dump(doc, 0);
  out =
      json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}, s:{s:s, s:s}},"
                " s:{s:s, s:{s:{s:{s:s}}, s:o}}}",
                "apiVersion", "kubevirt.io/v1", "kind", "VirtualMachine",
                "metadata", "name", cfg->name, "namespace", cfg->ns, "labels",
                "app.kubernetes.io/managed-by", "orrery", "annotations",
                "orrery.io/owner", owner ? owner : "", "orrery.io/document",
                text ? text : "", "spec", "runStrategy", "Manual", "template",
                "metadata", "labels", "orrery.io/vm", cfg->name, "spec", spec);
  free(text);
  if (out == NULL) {
    json_decref(c.ignored);
    return orr_error_set(e, ORR_ENOMEM, "out of memory");
  }
  *vm = out;
  if (ignored)
    *ignored = c.ignored;
  else
    json_decref(c.ignored);
  return 0;
}

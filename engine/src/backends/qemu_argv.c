/*
** Document -> QEMU 7.2 argv (q35). The mapping of each field is in
** /work/shared/qemu-mapping.md; the decisions taken here:
**
** - Every PCI device sits alone in its own pcie-root-port ("rpN", packed 8
**   functions per pcie.0 slot from 0x02, multifunction=on on function 0,
**   io-reserve=0), never with an addr. Cold-plugged devices take rp0.. in
**   this order: SCSI controllers 0..3, VPCI devices and NICs (by GUID), 9p
**   shares (array order), pmem devices (by key), vsock, the agent's
**   virtio-serial, the balloon; then cfg->hotplug_ports free ports.
** - The display (VGA at pcie.0 addr 0x1 + -vnc unix:RUNDIR/vnc.sock) exists
**   when any of Devices.Keyboard, VideoMonitor or EnhancedModeVideo is
**   present; q35 always has a PS/2 keyboard and mouse. Otherwise
**   -display none only.
** - VirtualPMem: virtio-pmem-pci over memory-backend-file (mem-path =
**   HostPath, share=on, or for ReadOnly share=off,readonly=on: QEMU opens
**   the host file read-only and maps it read-only, so it is never written). The
*size is the file's
**   size, which must be a multiple of 4 KiB (a fixed VHD's 512-byte footer
**   is left out). -m gets slots=<devices>,maxmem=<memory + devices rounded
**   to 2 MiB>. ImageFormat Vhdx is ORR_ENOTSUP (not a flat image).
** - LinuxKernelDirect boots with -bios qboot.rom (no SeaBIOS); see
**   chipset().
** - QEMU runs under -sandbox (ORR_QEMU_SANDBOX) whatever the engine.
** - Restore: -incoming fd:N, a descriptor the engine opened and QEMU
**   inherits (hostres.h): with spawn=deny QEMU can run no shell for exec:.
** - Paths in -fsdev/-chardev have their commas doubled (QEMU's escape).
** - Every -device is JSON. QEMU 7.2 creates all key=value -devices first
**   and the JSON ones after (vl.c keeps two lists), so mixing the two forms
**   reorders creation: a key=value virtserialport would look for its
**   JSON virtio-serial bus before it exists. All JSON = argv order.
**
** Advisory fields (present -> listed in layout "ignored", no effect):
**   VirtualMachine.Version, GuestState, RegistryChanges, DebugOptions,
**   GuestConnection; Chipset.IsNumLockDisabled, BaseBoardSerialNumber,
**   ChassisSerialNumber, ChassisAssetTag, UseUtc, FirmwareFile;
**   Chipset.Uefi.EnableDebugger, SecureBootTemplateId, BootThis, Console;
**   ComputeTopology.Memory.Backing, AllowOvercommit, EnableHotHint,
**   EnableColdHint, EnableColdDiscardHint, EnableDeferredCommit,
**   LowMmioGapInMB, HighMmioBaseInMB, HighMmioGapInMB, SlitType;
**   Processor.CpuGroup, NumaProcessorsSettings, MaximumFrequencyMHz;
**   Numa.PreferredPhysicalNodes, MaxSizePerNode; Numa.Settings[].
**   PhysicalNodeNumber, VirtualSocketNumber, MemoryBackingType;
**   Devices.Mouse, GuestCrashReporting, Battery; ComPorts.N.
**   OptimizeForDebugger; HvSocket.HvSocketConfig.DefaultBindSecurityDescriptor,
**   DefaultConnectSecurityDescriptor, ServiceTable.<id> (vsock has no ACLs);
**   Scsi attachments' IgnoreFlushes, CachingMode, NoWriteHardening,
**   DisableExpansionOptimization, IgnoreRelativeLocator,
**   CaptureIoAttributionContext, SupportCompressedVolumes,
**   AlwaysAllowSparseFiles; VirtualPci.<g>.PropagateNumaAffinity;
**   NetworkAdapters.<g>.IovSettings; Plan9 shares' Port,
**   UseShareRootIdentity, Flags bits other than 0x1 (read-only);
**   VirtualPMem.Backing.
** Processor.Limit/Weight/Reservation are applied by the VM layer (cgroups).
*/
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/qemu_xlate.h"
#include "orrery/document.h"
#include "schema.h"

#define SUN_PATH_MAX 107 /* sizeof(sockaddr_un.sun_path) - 1 */
/* Where q35 sits: binary -S -nodefaults -no-user-config -sandbox V -M q35 */
#define ARGV_MACHINE_VALUE 7

/* The firmware of a LinuxKernelDirect boot, found in QEMU's data directory
** (Debian: qemu-system-data). */
#define KERNEL_FIRMWARE "qboot.rom"

typedef struct {
  const orr_qemu_config *cfg;
  json_t *argv;    /* everything but -device */
  json_t *devs;    /* -device values, in creation order */
  json_t *ports;   /* qdev id per root port, in port order */
  json_t *ignored; /* advisory field paths */
  orr_error *err;
  bool oom;
  long long vmem_mib; /* virtio-mem's backend (memory_max_mb - size), 0: none */
  long long boot_mib; /* Memory.SizeInMB */
  char unpinned[80];  /* a device the pinned layout has no port for */
  long long slots;    /* -m slots (0: none given) */
  long long maxmem_mib; /* -m maxmem (0: none given) */
  json_t *com_moved;    /* received: COM sockets' host path -> bound name */
} bld;

/* ---------------------------------------------------------------------- */
/* Helpers                                                                */
/* ---------------------------------------------------------------------- */

static void push(bld *b, json_t *arr, const char *s) {
  if (s == NULL || json_array_append_new(arr, json_string(s)) != 0)
    b->oom = true;
}

static void pushf(bld *b, json_t *arr, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void pushf(bld *b, json_t *arr, const char *fmt, ...) {
  char *s = NULL;
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(&s, fmt, ap) < 0)
    s = NULL;
  va_end(ap);
  push(b, arr, s);
  free(s);
}

/* "opt" then obj as compact JSON; takes obj. */
static void push_json(bld *b, json_t *arr, const char *opt, json_t *obj) {
  char *s = obj ? json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  json_decref(obj);
  if (opt != NULL)
    push(b, arr, opt);
  push(b, arr, s);
  free(s);
}

/* The port index of qdev id in the pinned layout (cfg->pin_ports), or -1. */
static int pinned_port(const bld *b, const char *id) {
  size_t i;
  json_t *p;
  json_array_foreach(b->cfg->pin_ports, i, p) {
    const char *d = json_string_value(json_object_get(p, "device"));
    if (d != NULL && id != NULL && strcmp(d, id) == 0)
      return (int)i;
  }
  return -1;
}

/* The port a device gets: the next one, or with a pinned layout the one the
** source has it in (-1: none, an error once the argv is done). */
static int port_index(const bld *b, const char *id) {
  if (b->cfg->pin_ports != NULL)
    return pinned_port(b, id);
  return (int)json_array_size(b->ports);
}

/* A PCI device in its root port: sets "bus", queues -device. */
static void add_pci_dev(bld *b, json_t *dev) {
  json_t *id = json_object_get(dev, "id");
  int n = port_index(b, json_string_value(id));
  orr_qemu_name port = orr__qemu_port_id(n);
  if (n < 0) {
    if (b->unpinned[0] == '\0')
      snprintf(b->unpinned, sizeof b->unpinned, "%s",
               id ? json_string_value(id) : "?");
    json_decref(dev);
    return;
  }
  if (dev == NULL || id == NULL ||
      json_object_set_new(dev, "bus", json_string(port.s)) != 0) {
    b->oom = true;
    json_decref(dev);
    return;
  }
  if (b->cfg->pin_ports != NULL) {
    if (json_array_set(b->ports, (size_t)n, id) != 0)
      b->oom = true;
  } else {
    push(b, b->ports, json_string_value(id));
  }
  push_json(b, b->devs, "-device", dev);
}

/* The port the device id will get from add_pci_dev (for builders that need
** it up front). */
static orr_qemu_name next_port(const bld *b, const char *id) {
  return orr__qemu_port_id(port_index(b, id));
}

/* s with every ',' doubled (QEMU's QemuOpts escape); malloc'd. */
static char *double_commas(const char *s) {
  size_t n = strlen(s), extra = 0;
  char *out, *o;
  for (const char *p = s; *p; p++)
    extra += *p == ',';
  out = o = malloc(n + extra + 1);
  if (out == NULL)
    return NULL;
  for (const char *p = s; *p; p++) {
    *o++ = *p;
    if (*p == ',')
      *o++ = ',';
  }
  *o = '\0';
  return out;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The keys of obj, sorted (so the argv is stable); free() the result. */
static const char **sorted_keys(const json_t *obj, size_t *n) {
  const char **keys = malloc((json_object_size(obj) + 1) * sizeof *keys);
  const char *key;
  json_t *val;
  size_t i = 0;
  if (keys == NULL)
    return NULL;
  json_object_foreach((json_t *)obj, key, val) {
    (void)val;
    keys[i++] = key;
  }
  qsort(keys, i, sizeof *keys, cmp_str);
  *n = i;
  return keys;
}

/* A decimal key "0".."max" without leading zeros; -1 otherwise. */
static int small_index(const char *key, int max) {
  int v = 0;
  if (key[0] == '\0' || (key[0] == '0' && key[1] != '\0'))
    return -1;
  for (const char *p = key; *p; p++) {
    if (*p < '0' || *p > '9')
      return -1;
    v = v * 10 + (*p - '0');
    if (v > max)
      return -1;
  }
  return v;
}

static void join(char *buf, size_t size, const char *path, const char *key) {
  snprintf(buf, size, "%s.%s", path, key);
}

/* ---------------------------------------------------------------------- */
/* Field rules                                                            */
/* ---------------------------------------------------------------------- */

static const orr_qemu_field_rule root_rules[] = {
    {"Owner", ORR_QF_USE, NULL},
    {"SchemaVersion", ORR_QF_USE, NULL},
    {"VirtualMachine", ORR_QF_USE, NULL},
    {"ShouldTerminateOnLastHandleClosed", ORR_QF_USE, NULL},
    {"HostingSystemId", ORR_QF_REFUSE_SET,
     "the qemu backend runs virtual machines only"},
    {"HostedSystem", ORR_QF_REFUSE_SET,
     "the qemu backend runs virtual machines only"},
    {"Container", ORR_QF_REFUSE_SET,
     "the qemu backend runs virtual machines only"},
    {NULL, 0, NULL},
};

static const orr_qemu_field_rule vm_rules[] = {
    {"Version", ORR_QF_ADVISORY, NULL},
    {"StopOnReset", ORR_QF_USE, NULL},
    {"Chipset", ORR_QF_USE, NULL},
    {"ComputeTopology", ORR_QF_USE, NULL},
    {"Devices", ORR_QF_USE, NULL},
    {"GuestState", ORR_QF_ADVISORY, NULL},
    {"RestoreState", ORR_QF_REFUSE_SET,
     "restore a saved VM through the VM layer's restore option"},
    {"RegistryChanges", ORR_QF_ADVISORY, NULL},
    {"StorageQoS", ORR_QF_USE, NULL},
    {"DebugOptions", ORR_QF_ADVISORY, NULL},
    {"GuestConnection", ORR_QF_ADVISORY, NULL},
    {"SecuritySettings", ORR_QF_REFUSE_SET,
     "isolated (confidential) VMs are not supported by the qemu backend"},
    {NULL, 0, NULL},
};

static const orr_qemu_field_rule chipset_rules[] = {
    {"Uefi", ORR_QF_USE, NULL},
    {"LinuxKernelDirect", ORR_QF_USE, NULL},
    {"IsNumLockDisabled", ORR_QF_ADVISORY, NULL},
    {"BaseBoardSerialNumber", ORR_QF_ADVISORY, NULL},
    {"ChassisSerialNumber", ORR_QF_ADVISORY, NULL},
    {"ChassisAssetTag", ORR_QF_ADVISORY, NULL},
    {"UseUtc", ORR_QF_ADVISORY, NULL},
    {"FirmwareFile", ORR_QF_ADVISORY, NULL},
    {NULL, 0, NULL},
};

static const orr_qemu_field_rule uefi_rules[] = {
    {"EnableDebugger", ORR_QF_ADVISORY, NULL},
    {"ApplySecureBootTemplate", ORR_QF_REFUSE_SET,
     "secure boot is not supported by the qemu backend"},
    {"SecureBootTemplateId", ORR_QF_ADVISORY, NULL},
    {"BootThis", ORR_QF_ADVISORY, NULL},
    {"Console", ORR_QF_ADVISORY, NULL},
    {NULL, 0, NULL},
};

static const orr_qemu_field_rule lkd_rules[] = {
    {"KernelFilePath", ORR_QF_USE, NULL},
    {"InitRdPath", ORR_QF_USE, NULL},
    {"KernelCmdLine", ORR_QF_USE, NULL},
    {NULL, 0, NULL},
};

static const orr_qemu_field_rule topo_rules[] = {
    {"Memory", ORR_QF_USE, NULL},
    {"Processor", ORR_QF_USE, NULL},
    {"Numa", ORR_QF_USE, NULL},
    {NULL, 0, NULL},
};

static const orr_qemu_field_rule mem_rules[] = {
    {"SizeInMB", ORR_QF_USE, NULL},
    {"Backing", ORR_QF_ADVISORY, NULL},
    {"AllowOvercommit", ORR_QF_ADVISORY, NULL},
    {"EnableHotHint", ORR_QF_ADVISORY, NULL},
    {"EnableColdHint", ORR_QF_ADVISORY, NULL},
    {"EnableColdDiscardHint", ORR_QF_ADVISORY, NULL},
    {"EnableDeferredCommit", ORR_QF_ADVISORY, NULL},
    {"LowMmioGapInMB", ORR_QF_ADVISORY, NULL},
    {"HighMmioBaseInMB", ORR_QF_ADVISORY, NULL},
    {"HighMmioGapInMB", ORR_QF_ADVISORY, NULL},
    {"SlitType", ORR_QF_ADVISORY, NULL},
    {NULL, 0, NULL},
};

static const orr_qemu_field_rule proc_rules[] = {
    {"Count", ORR_QF_USE, NULL},
    {"Limit", ORR_QF_VMLAYER, NULL},
    {"Weight", ORR_QF_VMLAYER, NULL},
    {"Reservation", ORR_QF_VMLAYER, NULL},
    {"CpuGroup", ORR_QF_ADVISORY, NULL},
    {"NumaProcessorsSettings", ORR_QF_ADVISORY, NULL},
    {"MaximumFrequencyMHz", ORR_QF_ADVISORY, NULL},
    {NULL, 0, NULL},
};

static const orr_qemu_field_rule numa_rules[] = {
    {"VirtualNodeCount", ORR_QF_USE, NULL},
    {"Settings", ORR_QF_USE, NULL},
    {"PreferredPhysicalNodes", ORR_QF_ADVISORY, NULL},
    {"MaxSizePerNode", ORR_QF_ADVISORY, NULL},
    {NULL, 0, NULL},
};

static const orr_qemu_field_rule numa_setting_rules[] = {
    {"VirtualNodeNumber", ORR_QF_USE, NULL},
    {"CountOfProcessors", ORR_QF_USE, NULL},
    {"CountOfMemoryBlocks", ORR_QF_USE, NULL},
    {"PhysicalNodeNumber", ORR_QF_ADVISORY, NULL},
    {"VirtualSocketNumber", ORR_QF_ADVISORY, NULL},
    {"MemoryBackingType", ORR_QF_ADVISORY, NULL},
    {NULL, 0, NULL},
};

static const orr_qemu_field_rule devices_rules[] = {
    {"ComPorts", ORR_QF_USE, NULL},
    {"Scsi", ORR_QF_USE, NULL},
    {"VirtualPMem", ORR_QF_USE, NULL},
    {"NetworkAdapters", ORR_QF_USE, NULL},
    {"VideoMonitor", ORR_QF_USE, NULL},
    {"Keyboard", ORR_QF_USE, NULL},
    {"EnhancedModeVideo", ORR_QF_USE, NULL},
    {"Mouse", ORR_QF_ADVISORY, NULL},
    {"HvSocket", ORR_QF_USE, NULL},
    {"GuestCrashReporting", ORR_QF_ADVISORY, NULL},
    {"VirtualSmb", ORR_QF_REFUSE, "the qemu backend has no SMB device"},
    {"Plan9", ORR_QF_USE, NULL},
    {"Battery", ORR_QF_ADVISORY, NULL},
    {"FlexibleIov", ORR_QF_REFUSE_SET,
     "FlexibleIov is not supported by the qemu backend"},
    {"SharedMemory", ORR_QF_REFUSE_SET,
     "shared memory regions are not supported by the qemu backend"},
    {"MappedPipes", ORR_QF_REFUSE_SET,
     "mapped named pipes are a Windows host feature"},
    {"VirtualPci", ORR_QF_USE, NULL},
    {NULL, 0, NULL},
};

static const orr_qemu_field_rule com_rules[] = {
    {"NamedPipe", ORR_QF_USE, NULL},
    {"OptimizeForDebugger", ORR_QF_ADVISORY, NULL},
    {NULL, 0, NULL},
};

static const orr_qemu_field_rule scsi_ctrl_rules[] = {
    {"Attachments", ORR_QF_USE, NULL},
    {NULL, 0, NULL},
};

static const orr_qemu_field_rule hvsock_rules[] = {
    {"HvSocketConfig", ORR_QF_USE, NULL},
    {NULL, 0, NULL},
};

static const orr_qemu_field_rule hvsock_cfg_rules[] = {
    {"DefaultBindSecurityDescriptor", ORR_QF_ADVISORY, NULL},
    {"DefaultConnectSecurityDescriptor", ORR_QF_ADVISORY, NULL},
    {"ServiceTable", ORR_QF_USE, NULL},
    {NULL, 0, NULL},
};

static const orr_qemu_field_rule plan9_rules[] = {
    {"Shares", ORR_QF_USE, NULL},
    {NULL, 0, NULL},
};

static const orr_qemu_field_rule share_rules[] = {
    {"Name", ORR_QF_USE, NULL},
    {"AccessName", ORR_QF_USE, NULL},
    {"Path", ORR_QF_USE, NULL},
    {"Port", ORR_QF_ADVISORY, NULL},
    {"Flags", ORR_QF_USE, NULL},
    {"ReadOnly", ORR_QF_USE, NULL},
    {"UseShareRootIdentity", ORR_QF_ADVISORY, NULL},
    {"AllowedFiles", ORR_QF_REFUSE_SET,
     "the qemu backend exports whole directories over 9p and cannot "
     "restrict a share to some files"},
    {NULL, 0, NULL},
};

static const orr_qemu_field_rule pmem_rules[] = {
    {"MaximumCount", ORR_QF_USE, NULL},
    {"MaximumSizeBytes", ORR_QF_USE, NULL},
    {"Devices", ORR_QF_USE, NULL},
    {"Backing", ORR_QF_ADVISORY, NULL},
    {NULL, 0, NULL},
};

static const orr_qemu_field_rule pmem_dev_rules[] = {
    {"HostPath", ORR_QF_USE, NULL},
    {"ReadOnly", ORR_QF_USE, NULL},
    {"ImageFormat", ORR_QF_USE, NULL},
    {NULL, 0, NULL},
};

static const orr_qemu_field_rule qos_rules[] = {
    {"IopsMaximum", ORR_QF_USE, NULL},
    {"BandwidthMaximum", ORR_QF_USE, NULL},
    {NULL, 0, NULL},
};

/* An optional object member: NULL if absent or null, else must be an
** object. */
static int opt_obj(const json_t *parent, const char *key, const char *path,
                   const json_t **out, orr_error *err) {
  json_t *v = json_object_get(parent, key);
  *out = NULL;
  if (v == NULL || json_is_null(v))
    return 0;
  if (!json_is_object(v))
    return orr_error_set(err, ORR_EINVAL, "%s.%s must be an object", path, key);
  *out = v;
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Sections                                                               */
/* ---------------------------------------------------------------------- */

typedef struct {
  json_t *objects;    /* memory-backend-file -object JSON, one per device */
  json_t *devices;    /* virtio-pmem-pci device JSON (no bus yet) */
  long long count;    /* devices */
  long long mib;      /* address space they need, MiB (2 MiB granules) */
  long long room_mib; /* kept free for devices added at run time */
} pmem_plan;

int orr__qemu_pmem_objects(int k, const json_t *d, const char *dpath,
                           long long maxsize, orr_hostres *hr, json_t *ignored,
                           json_t **object, json_t **device,
                           long long *size_out, orr_error *err) {
  const char *host, *fmt;
  char what[600], ref[4096];
  bool ro;
  struct stat st;
  long long size;
  int rc;
  *object = *device = NULL;
  if ((rc = orr__qemu_check_fields(d, dpath, pmem_dev_rules, ignored, err)) !=
          0 ||
      (rc = orr__qemu_req_str(d, "HostPath", dpath, &host, err)) != 0 ||
      (rc = orr__qemu_get_bool(d, "ReadOnly", dpath, false, &ro, err)) != 0 ||
      (rc = orr__qemu_get_str(d, "ImageFormat", dpath, &fmt, err)) != 0)
    return rc;
  if (fmt != NULL && strcasecmp(fmt, "Vhd1") != 0 &&
      strcasecmp(fmt, "Raw") != 0)
    return orr_error_set(err, ORR_ENOTSUP,
                         "%s.ImageFormat: '%s' is not supported by the "
                         "qemu backend (pmem maps the file as it is: use "
                         "Vhd1 (fixed VHD) or Raw)",
                         dpath, fmt);
  if (host[0] != '/')
    return orr_error_set(err, ORR_EINVAL,
                         "%s.HostPath must be an absolute host path, got "
                         "'%s'",
                         dpath, host);
  snprintf(what, sizeof what, "%s.HostPath", dpath);
  if ((rc = orr__hostres_file(hr, host, !ro, what, ref, sizeof ref, &st,
                              err)) != 0)
    return rc;
  size = (long long)st.st_size;
  if (size % 4096 != 0) {
    /* A fixed VHD: the data, then a 512-byte "conectix" footer. */
    if (size % 4096 == 512 && strcmp(orr__qemu_disk_format(host), "vpc") == 0)
      size -= 512;
    else
      return orr_error_set(err, ORR_EINVAL,
                           "%s.HostPath: the image size (%lld bytes) must "
                           "be a multiple of 4096",
                           dpath, size);
  }
  if (size == 0 || size > maxsize)
    return orr_error_set(err, ORR_EINVAL,
                         "%s.HostPath: the image size (%lld bytes) must be "
                         "in 1..MaximumSizeBytes (%lld)",
                         dpath, size, maxsize);
  *object = json_pack("{s:s, s:s, s:s, s:I, s:b, s:b}", "qom-type",
                      "memory-backend-file", "id", orr__qemu_pmem_memdev(k).s,
                      "mem-path", ref, "size", (json_int_t)size, "share", !ro,
                      "readonly", ro);
  *device =
      json_pack("{s:s, s:s, s:s}", "driver", "virtio-pmem-pci", "id",
                orr__qemu_pmem_qdev(k).s, "memdev", orr__qemu_pmem_memdev(k).s);
  *size_out = size;
  if (*object == NULL || *device == NULL) {
    json_decref(*object);
    json_decref(*device);
    *object = *device = NULL;
    return orr_error_set(err, ORR_ENOMEM, "out of memory");
  }
  return 0;
}

static int scan_pmem(bld *b, const json_t *pm, pmem_plan *p) {
  static const char *path = "VirtualMachine.Devices.VirtualPMem";
  char dpath[512];
  const json_t *devs;
  long long maxcount, maxsize;
  int rc;

  if ((rc = orr__qemu_check_fields(pm, path, pmem_rules, b->ignored, b->err)) !=
          0 ||
      (rc = orr__qemu_get_int(pm, "MaximumCount", path, 1, 256, 256, &maxcount,
                              b->err)) != 0 ||
      (rc = orr__qemu_get_int(pm, "MaximumSizeBytes", path, 1, INT64_MAX,
                              INT64_MAX, &maxsize, b->err)) != 0 ||
      (rc = opt_obj(pm, "Devices", path, &devs, b->err)) != 0)
    return rc;
  if ((long long)json_object_size(devs) > maxcount)
    return orr_error_set(b->err, ORR_EINVAL,
                         "%s.Devices: %zu devices exceed MaximumCount %lld",
                         path, json_object_size(devs), maxcount);
  for (int k = 0; k < 256; k++) {
    char key[8];
    const json_t *d;
    json_t *obj, *dev;
    long long size;
    snprintf(key, sizeof key, "%d", k);
    if ((d = json_object_get(devs, key)) == NULL)
      continue;
    snprintf(dpath, sizeof dpath, "%s.Devices.%s", path, key);
    if ((rc = orr__qemu_pmem_objects(k, d, dpath, maxsize, b->cfg->hr,
                                     b->ignored, &obj, &dev, &size, b->err)) !=
        0)
      return rc;
    if (json_array_append_new(p->objects, obj) != 0 ||
        json_array_append_new(p->devices, dev) != 0)
      b->oom = true;
    p->count++;
    p->mib += (size + (2 << 20) - 1) / (2 << 20) * 2;
  }
  /* Room for devices added at run time: MaximumCount - these, each up to
  ** MaximumSizeBytes, when both are declared and the room is not absurd
  ** (address space only: QEMU reserves no memory for it). */
  if (json_object_get(pm, "MaximumSizeBytes") != NULL && maxcount > p->count) {
    long long each = (maxsize + (2 << 20) - 1) / (2 << 20) * 2;
    if (each <= ORR_QEMU_PMEM_ROOM_MAX_MB / (maxcount - p->count))
      p->room_mib = each * (maxcount - p->count);
  }
  if (p->count != (long long)json_object_size(devs))
    return orr_error_set(b->err, ORR_EINVAL,
                         "%s.Devices: keys must be \"0\"..\"255\"", path);
  return 0;
}

/* -m, -smp and NUMA. */
static int topology(bld *b, const json_t *vm, const pmem_plan *pm) {
  static const char *tpath = "VirtualMachine.ComputeTopology";
  static const char *mpath = "VirtualMachine.ComputeTopology.Memory";
  static const char *ppath = "VirtualMachine.ComputeTopology.Processor";
  static const char *npath = "VirtualMachine.ComputeTopology.Numa";
  const json_t *topo, *mem, *proc, *numa;
  long long size, count;
  int rc;

  if ((rc = opt_obj(vm, "ComputeTopology", "VirtualMachine", &topo, b->err)) !=
      0)
    return rc;
  if (topo == NULL)
    return orr_error_set(b->err, ORR_EINVAL,
                         "%s.Memory.SizeInMB is required by the qemu backend",
                         tpath);
  if ((rc = orr__qemu_check_fields(topo, tpath, topo_rules, b->ignored,
                                   b->err)) != 0 ||
      (rc = opt_obj(topo, "Memory", tpath, &mem, b->err)) != 0 ||
      (rc = opt_obj(topo, "Processor", tpath, &proc, b->err)) != 0 ||
      (rc = opt_obj(topo, "Numa", tpath, &numa, b->err)) != 0)
    return rc;
  if (mem == NULL || json_object_get(mem, "SizeInMB") == NULL)
    return orr_error_set(b->err, ORR_EINVAL,
                         "%s.SizeInMB is required by the qemu backend", mpath);
  if ((rc = orr__qemu_check_fields(mem, mpath, mem_rules, b->ignored,
                                   b->err)) != 0 ||
      (rc = orr__qemu_req_int(mem, "SizeInMB", mpath, 1, 1048576, &size,
                              b->err)) != 0)
    return rc;
  count = 1;
  if (proc != NULL && ((rc = orr__qemu_check_fields(proc, ppath, proc_rules,
                                                    b->ignored, b->err)) != 0 ||
                       (rc = orr__qemu_get_int(proc, "Count", ppath, 1, 288, 1,
                                               &count, b->err)) != 0))
    return rc;

  if (b->cfg->memory_mb > 0)
    size = b->cfg->memory_mb;
  if (b->cfg->ram_file != NULL) {
    char ref[4096];
    int rc2;
    if (numa != NULL)
      return orr_error_set(b->err, ORR_ENOTSUP,
                           "%s: a template's RAM is one file; NUMA nodes are "
                           "not supported with templates",
                           npath);
    /* The template writes its RAM through to the file (share=on); a clone
    ** maps the same file private, so its writes stay its own and the
    ** pages it never writes are shared with every other clone. */
    if ((rc2 = orr__hostres_file(b->cfg->hr, b->cfg->ram_file, true,
                                 "template: RAM file", ref, sizeof ref, NULL,
                                 b->err)) != 0)
      return rc2;
    push_json(b, b->argv, "-object",
              json_pack("{s:s, s:s, s:I, s:s, s:b}", "qom-type",
                        "memory-backend-file", "id", ORR_QEMU_RAM_ID, "size",
                        (json_int_t)size << 20, "mem-path", ref, "share",
                        b->cfg->ram_shared));
  }
  /* Memory to grow into at run time: virtio-mem (build() adds it). */
  if (b->cfg->memory_max_mb > 0) {
    unsigned long long max = b->cfg->memory_max_mb;
    if (max <= (unsigned long long)size || max > 1048576)
      return orr_error_set(b->err, ORR_EINVAL,
                           "memory_max_mb must be above %s.SizeInMB (%lld) "
                           "and at most 1048576, got %llu",
                           mpath, size, max);
    if ((max - (unsigned long long)size) % ORR_QEMU_VMEM_BLOCK_MB != 0)
      return orr_error_set(b->err, ORR_EINVAL,
                           "memory_max_mb - %s.SizeInMB must be a multiple of "
                           "%d MB (virtio-mem's block), got %llu - %lld",
                           mpath, ORR_QEMU_VMEM_BLOCK_MB, max, size);
    if (numa != NULL)
      return orr_error_set(b->err, ORR_ENOTSUP,
                           "memory_max_mb: the qemu backend cannot grow a VM "
                           "with %s at run time (the nodes must add up to "
                           "its memory)",
                           npath);
    b->vmem_mib = (long long)(max - (unsigned long long)size);
  }
  push(b, b->argv, "-m");
  if (b->cfg->pin_memory != NULL) {
    /* Received: the source's slots and maximum, whatever this document's
    ** devices would give (a PMem device it hot-added is cold here). */
    const json_t *pin = b->cfg->pin_memory;
    long long slots = json_integer_value(json_object_get(pin, "slots"));
    long long maxmem = json_integer_value(json_object_get(pin, "maxmem_mb"));
    if (maxmem < size || slots < 0 || slots > 256)
      return orr_error_set(b->err, ORR_EINVAL,
                           "the source's hotplug_memory must be {slots = "
                           "0..256, maxmem_mb >= %lld}",
                           size);
    if (slots > 0)
      pushf(b, b->argv, "%lldM,slots=%lld,maxmem=%lldM", size, slots, maxmem);
    else
      pushf(b, b->argv, "%lldM,maxmem=%lldM", size, maxmem);
    b->slots = slots;
    b->maxmem_mib = maxmem;
  } else if (pm->count > 0) {
    b->slots = pm->count;
    b->maxmem_mib = size + pm->mib + pm->room_mib + b->vmem_mib;
    pushf(b, b->argv, "%lldM,slots=%lld,maxmem=%lldM", size, pm->count,
          size + pm->mib + pm->room_mib + b->vmem_mib);
  } else if (b->vmem_mib > 0 || pm->room_mib > 0) {
    b->maxmem_mib = size + pm->room_mib + b->vmem_mib;
    pushf(b, b->argv, "%lldM,maxmem=%lldM", size,
          size + pm->room_mib + b->vmem_mib);
  } else {
    pushf(b, b->argv, "%lldM", size);
  }
  b->boot_mib = size;

  if (numa != NULL) {
    const json_t *settings;
    long long vcount, nodes, sum_cpu = 0, sum_mem = 0;
    long long cpus[64], mib[64];
    bool seen[64] = {false}, even = true;
    char spath[512];

    if ((rc = orr__qemu_check_fields(numa, npath, numa_rules, b->ignored,
                                     b->err)) != 0 ||
        (rc = orr__qemu_get_int(numa, "VirtualNodeCount", npath, 0, 64, 0,
                                &vcount, b->err)) != 0)
      return rc;
    settings = json_object_get(numa, "Settings");
    nodes = json_is_array(settings) ? (long long)json_array_size(settings) : 0;
    if (settings != NULL && !json_is_null(settings) && !json_is_array(settings))
      return orr_error_set(b->err, ORR_EINVAL, "%s.Settings must be an array",
                           npath);
    if (nodes == 0 && vcount > 1)
      return orr_error_set(b->err, ORR_EINVAL,
                           "%s.Settings is required by the qemu backend when "
                           "VirtualNodeCount > 1",
                           npath);
    if (nodes > 64)
      return orr_error_set(b->err, ORR_EINVAL,
                           "%s.Settings: at most 64 nodes, got %lld", npath,
                           nodes);
    if (vcount != 0 && nodes != 0 && vcount != nodes)
      return orr_error_set(b->err, ORR_EINVAL,
                           "%s.VirtualNodeCount (%lld) must equal the number "
                           "of Settings (%lld)",
                           npath, vcount, nodes);
    for (long long i = 0; i < nodes; i++) {
      const json_t *s = json_array_get(settings, (size_t)i);
      long long node, c, m;
      snprintf(spath, sizeof spath, "%s.Settings.%lld", npath, i);
      if ((rc = orr__qemu_check_fields(s, spath, numa_setting_rules, b->ignored,
                                       b->err)) != 0 ||
          (rc = orr__qemu_get_int(s, "VirtualNodeNumber", spath, 0, nodes - 1,
                                  0, &node, b->err)) != 0 ||
          (rc = orr__qemu_get_int(s, "CountOfProcessors", spath, 0, 288, 0, &c,
                                  b->err)) != 0 ||
          (rc = orr__qemu_req_int(s, "CountOfMemoryBlocks", spath, 1, 1048576,
                                  &m, b->err)) != 0)
        return rc;
      if (seen[node])
        return orr_error_set(b->err, ORR_EINVAL,
                             "%s.VirtualNodeNumber %lld is used twice", spath,
                             node);
      seen[node] = true;
      cpus[node] = c;
      mib[node] = m;
      sum_cpu += c;
      sum_mem += m;
    }
    if (nodes > 0 && (sum_cpu != count || sum_mem != size))
      return orr_error_set(b->err, ORR_EINVAL,
                           "%s.Settings: CountOfProcessors must add up to "
                           "Processor.Count (%lld, got %lld) and "
                           "CountOfMemoryBlocks to Memory.SizeInMB (%lld, "
                           "got %lld)",
                           npath, count, sum_cpu, size, sum_mem);
    for (long long i = 0; i < nodes; i++)
      if (cpus[i] != cpus[0] || cpus[i] == 0)
        even = false;
    if (nodes > 0) {
      push(b, b->argv, "-smp");
      if (even)
        pushf(b, b->argv, "%lld,sockets=%lld,cores=%lld,threads=1", count,
              nodes, count / nodes);
      else
        pushf(b, b->argv, "%lld,sockets=1,cores=%lld,threads=1", count, count);
      for (long long i = 0; i < nodes; i++) {
        push(b, b->argv, "-object");
        pushf(b, b->argv, "memory-backend-ram,id=m%lld,size=%lldM", i, mib[i]);
        push(b, b->argv, "-numa");
        pushf(b, b->argv, "node,nodeid=%lld,memdev=m%lld", i, i);
      }
      /* Uneven nodes: one socket, cores handed out in node order. */
      for (long long i = 0, core = 0; i < nodes; i++) {
        if (even) {
          push(b, b->argv, "-numa");
          pushf(b, b->argv, "cpu,node-id=%lld,socket-id=%lld", i, i);
          continue;
        }
        for (long long k = 0; k < cpus[i]; k++, core++) {
          push(b, b->argv, "-numa");
          pushf(b, b->argv, "cpu,node-id=%lld,socket-id=0,core-id=%lld", i,
                core);
        }
      }
      return 0;
    }
  }
  push(b, b->argv, "-smp");
  pushf(b, b->argv, "%lld", count);
  return 0;
}

static int chipset(bld *b, const json_t *vm, json_t *files,
                   const char **machine_extra) {
  static const char *cpath = "VirtualMachine.Chipset";
  static const char *upath = "VirtualMachine.Chipset.Uefi";
  static const char *lpath = "VirtualMachine.Chipset.LinuxKernelDirect";
  const json_t *cs, *uefi, *lkd;
  int rc;

  *machine_extra = "";
  if ((rc = opt_obj(vm, "Chipset", "VirtualMachine", &cs, b->err)) != 0)
    return rc;
  if (cs == NULL)
    return 0;
  if ((rc = orr__qemu_check_fields(cs, cpath, chipset_rules, b->ignored,
                                   b->err)) != 0 ||
      (rc = opt_obj(cs, "Uefi", cpath, &uefi, b->err)) != 0 ||
      (rc = opt_obj(cs, "LinuxKernelDirect", cpath, &lkd, b->err)) != 0)
    return rc;
  if (uefi != NULL && lkd != NULL)
    return orr_error_set(b->err, ORR_EINVAL,
                         "%s: Uefi and LinuxKernelDirect are exclusive", cpath);
  if (lkd != NULL) {
    const char *kernel, *initrd, *cmdline;
    char ref[4096];
    if ((rc = orr__qemu_check_fields(lkd, lpath, lkd_rules, b->ignored,
                                     b->err)) != 0 ||
        (rc = orr__qemu_req_str(lkd, "KernelFilePath", lpath, &kernel,
                                b->err)) != 0 ||
        (rc = orr__qemu_get_str(lkd, "InitRdPath", lpath, &initrd, b->err)) !=
            0 ||
        (rc = orr__qemu_get_str(lkd, "KernelCmdLine", lpath, &cmdline,
                                b->err)) != 0)
      return rc;
    /* qboot instead of SeaBIOS: it only sets up the chipset, PCI buses
    ** and QEMU's ACPI tables (PCI hot-plug needs them) and jumps to the
    ** kernel, about 0.3 s sooner under TCG. It cannot boot a disk, which a
    ** direct kernel boot never does. README "Decisions". */
    if (b->cfg->vmgenid_guid == NULL) {
      push(b, b->argv, "-bios");
      push(b, b->argv, KERNEL_FIRMWARE);
    }
    /* 7.2 takes these three values verbatim (no option parsing). */
    if ((rc = orr__hostres_file(b->cfg->hr, kernel, false,
                                "VirtualMachine.Chipset.LinuxKernelDirect."
                                "KernelFilePath",
                                ref, sizeof ref, NULL, b->err)) != 0)
      return rc;
    push(b, b->argv, "-kernel");
    push(b, b->argv, ref);
    if (initrd != NULL && *initrd) {
      if ((rc = orr__hostres_file(b->cfg->hr, initrd, false,
                                  "VirtualMachine.Chipset.LinuxKernelDirect."
                                  "InitRdPath",
                                  ref, sizeof ref, NULL, b->err)) != 0)
        return rc;
      push(b, b->argv, "-initrd");
      push(b, b->argv, ref);
    }
    if (cmdline != NULL && *cmdline) {
      push(b, b->argv, "-append");
      push(b, b->argv, cmdline);
    }
  }
  if (uefi != NULL) {
    char vars[4096];
    if ((rc = orr__qemu_check_fields(uefi, upath, uefi_rules, b->ignored,
                                     b->err)) != 0)
      return rc;
    if (orr__qemu_run_path(vars, sizeof vars, b->cfg, ORR_QEMU_VARS_FILE))
      return orr_error_set(b->err, ORR_EINVAL, "cfg.run_dir is too long");
    push_json(b, b->argv, "-blockdev",
              json_pack("{s:s, s:s, s:s, s:b}", "driver", "file", "node-name",
                        "fw-code-file", "filename", b->cfg->ovmf_code,
                        "read-only", 1));
    push_json(b, b->argv, "-blockdev",
              json_pack("{s:s, s:s, s:s, s:b}", "driver", "raw", "node-name",
                        "fw-code", "file", "fw-code-file", "read-only", 1));
    push_json(b, b->argv, "-blockdev",
              json_pack("{s:s, s:s, s:s}", "driver", "file", "node-name",
                        "fw-vars-file", "filename", vars));
    push_json(b, b->argv, "-blockdev",
              json_pack("{s:s, s:s, s:s}", "driver", "raw", "node-name",
                        "fw-vars", "file", "fw-vars-file"));
    if (json_array_append_new(files,
                              json_pack("{s:s, s:s}", "path", vars, "from",
                                        b->cfg->ovmf_vars_template)) != 0)
      b->oom = true;
    *machine_extra = ",pflash0=fw-code,pflash1=fw-vars";
  }
  return 0;
}

static int scsi(bld *b, const json_t *devices, bool throttle) {
  static const char *path = "VirtualMachine.Devices.Scsi";
  const json_t *ctrls, *byidx[4] = {NULL};
  const char *key;
  json_t *val;
  char cpath[512], apath[600];
  int rc;

  if ((rc = opt_obj(devices, "Scsi", "VirtualMachine.Devices", &ctrls,
                    b->err)) != 0 ||
      ctrls == NULL)
    return rc;
  json_object_foreach((json_t *)ctrls, key, val) {
    int i = orr_scsi_controller_index(key);
    if (i < 0 || byidx[i] != NULL)
      return orr_error_set(b->err, ORR_EINVAL,
                           "%s.%s: controllers must be keyed by one of HCS's "
                           "four SCSI controller GUIDs, each once",
                           path, key);
    byidx[i] = val;
  }
  for (int c = 0; c < 4; c++) {
    const json_t *atts, *bylun[64] = {NULL};
    if (byidx[c] == NULL)
      continue;
    join(cpath, sizeof cpath, path, orr_scsi_controller_guid(c));
    if ((rc = orr__qemu_check_fields(byidx[c], cpath, scsi_ctrl_rules,
                                     b->ignored, b->err)) != 0 ||
        (rc = opt_obj(byidx[c], "Attachments", cpath, &atts, b->err)) != 0)
      return rc;
    add_pci_dev(b, json_pack("{s:s, s:s}", "driver", "virtio-scsi-pci", "id",
                             orr__qemu_scsi_ctrl_qdev(c).s));
    if (atts == NULL)
      continue;
    json_object_foreach((json_t *)atts, key, val) {
      int lun = small_index(key, 63);
      if (lun < 0)
        return orr_error_set(b->err, ORR_EINVAL,
                             "%s.Attachments.%s: the LUN key must be \"0\".."
                             "\"63\"",
                             cpath, key);
      bylun[lun] = val;
    }
    for (int lun = 0; lun < 64; lun++) {
      json_t *nodes, *dev;
      size_t i;
      json_t *node;
      if (bylun[lun] == NULL)
        continue;
      snprintf(apath, sizeof apath, "%s.Attachments.%d", cpath, lun);
      if ((rc = orr__qemu_disk_objects(c, lun, bylun[lun], apath, throttle,
                                       b->cfg->hr, b->ignored, &nodes, &dev,
                                       b->err)) != 0)
        return rc;
      json_array_foreach(nodes, i, node) {
        push_json(b, b->argv, "-blockdev", json_incref(node));
      }
      json_decref(nodes);
      push_json(b, b->devs, "-device", dev);
    }
  }
  return 0;
}

static int vpci(bld *b, const json_t *devices) {
  static const char *path = "VirtualMachine.Devices.VirtualPci";
  const json_t *all;
  const char **keys;
  size_t n;
  char dpath[512];
  int rc = 0;

  if ((rc = opt_obj(devices, "VirtualPci", "VirtualMachine.Devices", &all,
                    b->err)) != 0 ||
      all == NULL)
    return rc;
  if ((keys = sorted_keys(all, &n)) == NULL)
    return orr_error_set(b->err, ORR_ENOMEM, "%s: out of memory", path);
  for (size_t i = 0; i < n && rc == 0; i++) {
    json_t *dev;
    join(dpath, sizeof dpath, path, keys[i]);
    rc = orr__qemu_vpci_objects(keys[i], json_object_get(all, keys[i]), dpath,
                                next_port(b, orr__qemu_vpci_qdev(keys[i]).s).s,
                                b->cfg->hr, b->ignored, &dev, b->err);
    if (rc == 0)
      add_pci_dev(b, dev);
  }
  free(keys);
  return rc;
}

static int nics(bld *b, const json_t *devices) {
  static const char *path = "VirtualMachine.Devices.NetworkAdapters";
  const json_t *all;
  const char **keys;
  size_t n;
  char npath[512];
  int rc = 0;

  if ((rc = opt_obj(devices, "NetworkAdapters", "VirtualMachine.Devices", &all,
                    b->err)) != 0 ||
      all == NULL)
    return rc;
  if ((keys = sorted_keys(all, &n)) == NULL)
    return orr_error_set(b->err, ORR_ENOMEM, "%s: out of memory", path);
  for (size_t i = 0; i < n && rc == 0; i++) {
    json_t *netdev, *dev;
    join(npath, sizeof npath, path, keys[i]);
    rc = orr__qemu_nic_objects(keys[i], json_object_get(all, keys[i]), npath,
                               next_port(b, orr__qemu_nic_qdev(keys[i]).s).s,
                               b->cfg->hr, b->ignored, &netdev, &dev, b->err);
    if (rc == 0) {
      push_json(b, b->argv, "-netdev", netdev);
      add_pci_dev(b, dev);
    }
  }
  free(keys);
  return rc;
}

static int plan9(bld *b, const json_t *devices) {
  static const char *path = "VirtualMachine.Devices.Plan9";
  const json_t *p9, *shares, *s;
  char spath[512];
  size_t k;
  int rc;

  if ((rc = opt_obj(devices, "Plan9", "VirtualMachine.Devices", &p9, b->err)) !=
          0 ||
      p9 == NULL)
    return rc;
  if ((rc = orr__qemu_check_fields(p9, path, plan9_rules, b->ignored,
                                   b->err)) != 0)
    return rc;
  shares = json_object_get(p9, "Shares");
  if (shares == NULL || json_is_null(shares))
    return 0;
  if (!json_is_array(shares))
    return orr_error_set(b->err, ORR_EINVAL, "%s.Shares must be an array",
                         path);
  json_array_foreach(shares, k, s) {
    const char *name, *access, *dir, *tag;
    char what[600], ref[4096];
    long long flags;
    bool ro;
    char *esc;
    snprintf(spath, sizeof spath, "%s.Shares.%zu", path, k);
    if ((rc = orr__qemu_check_fields(s, spath, share_rules, b->ignored,
                                     b->err)) != 0 ||
        (rc = orr__qemu_get_str(s, "Name", spath, &name, b->err)) != 0 ||
        (rc = orr__qemu_get_str(s, "AccessName", spath, &access, b->err)) !=
            0 ||
        (rc = orr__qemu_req_str(s, "Path", spath, &dir, b->err)) != 0 ||
        (rc = orr__qemu_get_int(s, "Flags", spath, 0, UINT32_MAX, 0, &flags,
                                b->err)) != 0 ||
        (rc = orr__qemu_get_bool(s, "ReadOnly", spath, false, &ro, b->err)) !=
            0)
      return rc;
    tag = access != NULL && *access ? access : name;
    if (tag == NULL || strlen(tag) == 0 || strlen(tag) > 31)
      return orr_error_set(b->err, ORR_EINVAL,
                           "%s: AccessName (or Name) is the 9p mount tag and "
                           "must be 1..31 bytes, got %zu",
                           spath, tag ? strlen(tag) : (size_t)0);
    if (dir[0] != '/')
      return orr_error_set(b->err, ORR_EINVAL,
                           "%s.Path must be an absolute host path, got '%s'",
                           spath, dir);
    if (flags & ~1LL)
      orr__qemu_ignore(b->ignored, spath, "Flags");
    ro = ro || (flags & 1); /* HCS Plan9 flag 0x1: read-only */
    snprintf(what, sizeof what, "%s.Path", spath);
    if ((rc = orr__hostres_dir(b->cfg->hr, dir, !ro, what, ref, sizeof ref,
                               b->err)) != 0)
      return rc;
    if ((esc = double_commas(ref)) == NULL) {
      b->oom = true;
      return 0;
    }
    push(b, b->argv, "-fsdev");
    pushf(b, b->argv, "local,id=%s,path=%s,security_model=none%s",
          orr__qemu_p9_fsdev((int)k).s, esc, ro ? ",readonly=on" : "");
    free(esc);
    add_pci_dev(b, json_pack("{s:s, s:s, s:s, s:s}", "driver", "virtio-9p-pci",
                             "id", orr__qemu_p9_qdev((int)k).s, "fsdev",
                             orr__qemu_p9_fsdev((int)k).s, "mount_tag", tag));
  }
  return 0;
}

static int hvsocket(bld *b, const json_t *devices) {
  static const char *path = "VirtualMachine.Devices.HvSocket";
  static const char *cpath = "VirtualMachine.Devices.HvSocket.HvSocketConfig";
  const json_t *hv, *cfg, *table;
  const char *key;
  json_t *val;
  int rc;

  if ((rc = opt_obj(devices, "HvSocket", "VirtualMachine.Devices", &hv,
                    b->err)) != 0 ||
      hv == NULL)
    return rc;
  if ((rc = orr__qemu_check_fields(hv, path, hvsock_rules, b->ignored,
                                   b->err)) != 0 ||
      (rc = opt_obj(hv, "HvSocketConfig", path, &cfg, b->err)) != 0 ||
      cfg == NULL)
    return rc;
  if ((rc = orr__qemu_check_fields(cfg, cpath, hvsock_cfg_rules, b->ignored,
                                   b->err)) != 0 ||
      (rc = opt_obj(cfg, "ServiceTable", cpath, &table, b->err)) != 0 ||
      table == NULL || json_object_size(table) == 0)
    return rc;
  if (!b->cfg->host.vhost_vsock)
    return orr_error_set(b->err, ORR_ENOTSUP,
                         "%s.ServiceTable: HvSocket services need vsock, and "
                         "this host has no /dev/vhost-vsock",
                         cpath);
  if (b->cfg->vsock_cid < 3)
    return orr_error_set(b->err, ORR_EINVAL,
                         "cfg.vsock_cid must be >= 3 when %s.ServiceTable is "
                         "set, got %u",
                         cpath, b->cfg->vsock_cid);
  json_object_foreach((json_t *)table, key, val) {
    char spath[512];
    (void)val;
    join(spath, sizeof spath, cpath, "ServiceTable");
    orr__qemu_ignore(b->ignored, spath, key);
  }
  add_pci_dev(b, json_pack("{s:s, s:s, s:I}", "driver", "vhost-vsock-pci", "id",
                           ORR_QEMU_VSOCK_ID, "guest-cid",
                           (json_int_t)b->cfg->vsock_cid));
  return 0;
}

static int com_ports(bld *b, const json_t *devices) {
  static const char *path = "VirtualMachine.Devices.ComPorts";
  const json_t *ports;
  const char *key;
  json_t *val;
  int rc;

  if (devices != NULL &&
      (rc = opt_obj(devices, "ComPorts", "VirtualMachine.Devices", &ports,
                    b->err)) != 0)
    return rc;
  if (devices == NULL)
    ports = NULL;
  json_object_foreach((json_t *)ports, key, val) {
    if (small_index(key, 3) < 0)
      return orr_error_set(b->err, ORR_EINVAL,
                           "%s.%s: the COM port key must be \"0\"..\"3\"", path,
                           key);
  }
  for (int n = 0; n < 4; n++) {
    char key_s[4], ppath[512], what[600];
    const char *pipe;
    char *esc;
    int fdnum;
    const json_t *port;
    char logf[600], *logesc;
    snprintf(key_s, sizeof key_s, "%d", n);
    /* What the port prints also goes to the engine's FIFO (console
    ** capture, qemu_console.c), whoever is attached to its socket. */
    snprintf(logf, sizeof logf, "%s/com%d.out", b->cfg->run_dir, n);
    if ((port = json_object_get(ports, key_s)) == NULL) {
      char sock[600], *sesc;
      if (n != 0)
        continue;
      if ((logesc = double_commas(logf)) == NULL) {
        b->oom = true;
        return 0;
      }
      /* COM1 always exists (as on Hyper-V): QEMU listens in the runtime
      ** directory, where the engine writes what is typed. */
      snprintf(sock, sizeof sock, "%s/com%d.sock", b->cfg->run_dir, n);
      if ((sesc = double_commas(sock)) == NULL) {
        free(logesc);
        b->oom = true;
        return 0;
      }
      push(b, b->argv, "-chardev");
      pushf(b, b->argv,
            "socket,id=%s,path=%s,server=on,wait=off,logfile=%s,"
            "logappend=on",
            orr__qemu_com_chardev(n).s, sesc, logesc);
      free(sesc);
      free(logesc);
      push_json(b, b->devs, "-device",
                json_pack("{s:s, s:s, s:s, s:i}", "driver", "isa-serial", "id",
                          orr__qemu_com_qdev(n).s, "chardev",
                          orr__qemu_com_chardev(n).s, "index", n));
      continue;
    }
    join(ppath, sizeof ppath, path, key_s);
    if ((rc = orr__qemu_check_fields(port, ppath, com_rules, b->ignored,
                                     b->err)) != 0 ||
        (rc = orr__qemu_req_str(port, "NamedPipe", ppath, &pipe, b->err)) != 0)
      return rc;
    if (pipe[0] != '/' || strlen(pipe) > SUN_PATH_MAX)
      return orr_error_set(b->err, ORR_EINVAL,
                           "%s.NamedPipe must be an absolute unix socket path "
                           "of at most %d bytes, got '%s'",
                           ppath, SUN_PATH_MAX, pipe);
    snprintf(what, sizeof what, "%s.NamedPipe", ppath);
    if (b->cfg->incoming) {
      /* Received: the source's QEMU still listens at the path; this one
      ** listens beside it until the VM is here (orr__qemu_migrate_arrived
      ** renames it over the path). */
      char tmp[128];
      if (orr__qemu_sock_tmp(pipe, "com", n, tmp, sizeof tmp) != 0)
        return orr_error_set(b->err, ORR_EINVAL,
                             "%s: %s is too long to receive the VM (its "
                             "directory must leave room for a temporary "
                             "socket name)",
                             what, pipe);
      if (b->com_moved == NULL)
        b->com_moved = json_object();
      if (json_object_set_new(b->com_moved, pipe, json_string(tmp)) != 0)
        b->oom = true;
      pipe = json_string_value(json_object_get(b->com_moved, pipe));
      if (pipe == NULL)
        return orr_error_set(b->err, ORR_ENOMEM, "out of memory");
    }
    if ((rc = orr__hostres_listen(b->cfg->hr, pipe, what, &fdnum, b->err)) != 0)
      return rc;
    if ((logesc = double_commas(logf)) == NULL) {
      b->oom = true;
      return 0;
    }
    push(b, b->argv, "-chardev");
    if (fdnum >= 0) {
      /* The engine bound it (confined): QEMU listens on what it gets. */
      pushf(b, b->argv,
            "socket,id=%s,fd=%d,server=on,wait=off,logfile=%s,logappend=on",
            orr__qemu_com_chardev(n).s, fdnum, logesc);
    } else {
      if ((esc = double_commas(pipe)) == NULL) {
        free(logesc);
        b->oom = true;
        return 0;
      }
      pushf(b, b->argv,
            "socket,id=%s,path=%s,server=on,wait=off,logfile=%s,logappend=on",
            orr__qemu_com_chardev(n).s, esc, logesc);
      free(esc);
    }
    free(logesc);
    push_json(b, b->devs, "-device",
              json_pack("{s:s, s:s, s:s, s:i}", "driver", "isa-serial", "id",
                        orr__qemu_com_qdev(n).s, "chardev",
                        orr__qemu_com_chardev(n).s, "index", n));
  }
  return 0;
}

static int storage_qos(bld *b, const json_t *vm, bool *throttle) {
  static const char *path = "VirtualMachine.StorageQoS";
  const json_t *qos;
  long long iops, bps;
  int rc;

  *throttle = false;
  if ((rc = opt_obj(vm, "StorageQoS", "VirtualMachine", &qos, b->err)) != 0 ||
      qos == NULL)
    return rc;
  if ((rc = orr__qemu_check_fields(qos, path, qos_rules, b->ignored, b->err)) !=
          0 ||
      (rc = orr__qemu_get_int(qos, "IopsMaximum", path, 0, INT32_MAX, 0, &iops,
                              b->err)) != 0 ||
      (rc = orr__qemu_get_int(qos, "BandwidthMaximum", path, 0, INT32_MAX, 0,
                              &bps, b->err)) != 0)
    return rc;
  /* Created even with both limits 0 (= unlimited), so that a later
  ** StorageQoS update has a group and throttle nodes to act on. */
  push_json(b, b->argv, "-object",
            json_pack("{s:s, s:s, s:{s:I, s:I}}", "qom-type", "throttle-group",
                      "id", ORR_QEMU_THROTTLE_GROUP, "limits", "iops-total",
                      (json_int_t)iops, "bps-total", (json_int_t)bps));
  *throttle = true;
  return 0;
}

static int check_config(const orr_qemu_config *cfg, orr_error *err) {
  if (cfg->binary == NULL || *cfg->binary == '\0')
    return orr_error_set(err, ORR_EINVAL, "cfg.binary is required");
  if (cfg->run_dir == NULL || cfg->run_dir[0] != '/' ||
      strchr(cfg->run_dir, ',') != NULL)
    return orr_error_set(err, ORR_EINVAL,
                         "cfg.run_dir must be an absolute path without ','");
  if (strlen(cfg->run_dir) + 1 + strlen(ORR_QEMU_QMP_SOCK) > SUN_PATH_MAX)
    return orr_error_set(err, ORR_EINVAL,
                         "cfg.run_dir is too long for a unix socket path "
                         "(at most %zu bytes)",
                         SUN_PATH_MAX - 1 - strlen(ORR_QEMU_QMP_SOCK));
  if (cfg->accel == NULL ||
      (strcmp(cfg->accel, "tcg") != 0 && strcmp(cfg->accel, "kvm") != 0))
    return orr_error_set(err, ORR_EINVAL,
                         "cfg.accel must be \"tcg\" or \"kvm\", got '%s'",
                         cfg->accel ? cfg->accel : "(null)");
  if (cfg->hotplug_ports < 0 || cfg->hotplug_ports > ORR_QEMU_MAX_PORTS)
    return orr_error_set(err, ORR_EINVAL,
                         "cfg.hotplug_ports must be in 0..%d, got %d",
                         ORR_QEMU_MAX_PORTS, cfg->hotplug_ports);
  if (cfg->ram_file != NULL && cfg->ram_file[0] != '/')
    return orr_error_set(err, ORR_EINVAL,
                         "cfg.ram_file must be an absolute path, got '%s'",
                         cfg->ram_file);
  if (cfg->ram_file != NULL && !cfg->ram_shared && cfg->restore_path == NULL)
    return orr_error_set(err, ORR_EINVAL,
                         "cfg.ram_file: a clone needs the template's device "
                         "state (cfg.restore_path)");
  if (cfg->restore_path != NULL &&
      (cfg->restore_path[0] != '/' || cfg->hr == NULL))
    return orr_error_set(err, ORR_EINVAL,
                         "cfg.restore_path must be an absolute path, read "
                         "through cfg.hr, got '%s'",
                         cfg->restore_path);
  if (cfg->ovmf_code == NULL || cfg->ovmf_vars_template == NULL)
    return orr_error_set(err, ORR_EINVAL,
                         "cfg.ovmf_code and cfg.ovmf_vars_template are "
                         "required");
  return 0;
}

/* -add-fd for every image descriptor the child inherits; byname gets each
** disk's fdset ids under its key ("<ctrl>-<lun>"). */
static int add_fds(bld *b, json_t *byname) {
  size_t n;
  const orr_hr_fdset *sets = orr__hostres_fdsets(b->cfg->hr, &n);
  for (size_t i = 0; i < n; i++) {
    int disk = orr__qemu_fdset_disk(sets[i].id);
    orr_qemu_name key = orr__qemu_disk_key(disk / 64, disk % 64);
    json_t *ids = json_object_get(byname, key.s);
    push(b, b->argv, "-add-fd");
    pushf(b, b->argv, "fd=%d,set=%d", 3 + sets[i].index, sets[i].id);
    if (ids == NULL) {
      ids = json_array();
      if (json_object_set_new(byname, key.s, ids) != 0)
        b->oom = true;
    }
    if (json_array_append_new(ids, json_integer(sets[i].id)) != 0)
      b->oom = true;
  }
  return 0;
}

/* A received memory device at the guest address the source has it at
** (cfg->pin_memaddr, query-memory-devices' answer): QEMU would otherwise
** give addresses in this argv's order, not the order the source plugged
** them in. */
static void pin_memaddr(bld *b, json_t *dev) {
  const char *id = json_string_value(json_object_get(dev, "id"));
  size_t i;
  json_t *md;
  json_array_foreach(b->cfg->pin_memaddr, i, md) {
    const json_t *data = json_object_get(md, "data");
    const json_t *addr = json_object_get(data, "memaddr");
    if (id && json_is_integer(addr) &&
        json_equal(json_object_get(data, "id"), json_object_get(dev, "id")) &&
        json_object_set(dev, "memaddr", (json_t *)addr) != 0)
      b->oom = true;
  }
}

int orr__qemu_sock_tmp(const char *host, const char *tag, int n, char *out,
                       size_t size) {
  const char *slash = strrchr(host, '/');
  int len;
  if (slash == NULL)
    return -1;
  len = snprintf(out, size, "%.*s/.orrery-in-%ld-%s%d", (int)(slash - host),
                 host, (long)getpid(), tag, n);
  return len < 0 || (size_t)len >= size || len > 107 ? -1 : 0;
}

/* Received mapped pipes: each chardev listening on its temporary name (the
** source's QEMU still listens at the host path), its virtserialport at the
** port number the source gave it. The layout keeps them by host path. */
static int received_pipes(bld *b, json_t *pipes_layout) {
  const char *host;
  json_t *v;
  if (json_object_size(b->cfg->pipes) > 0 && !b->cfg->guest_agent)
    return orr_error_set(b->err, ORR_EINVAL,
                         "mapped pipes need the agent's virtio-serial bus "
                         "(create option guest_agent)");
  json_object_foreach((json_t *)b->cfg->pipes, host, v) {
    json_int_t n = json_integer_value(json_object_get(v, "n"));
    const char *name = json_string_value(json_object_get(v, "name"));
    char tmp[128], *esc;
    if (!json_is_integer(json_object_get(v, "n")) || n < 0 ||
        n >= ORR_QEMU_PIPE_MAX || name == NULL || host[0] != '/' ||
        orr__qemu_sock_tmp(host, "pipe", (int)n, tmp, sizeof tmp) != 0)
      return orr_error_set(b->err, ORR_EINVAL,
                           "VirtualMachine/Devices/MappedPipes/%s: the "
                           "source's pipe must be {n = 0..%d, name}, its "
                           "directory short enough for a temporary socket "
                           "name",
                           host, ORR_QEMU_PIPE_MAX - 1);
    if ((esc = double_commas(tmp)) == NULL) {
      b->oom = true;
      return 0;
    }
    push(b, b->argv, "-chardev");
    pushf(b, b->argv, "socket,id=%s,path=%s,server=on,wait=off",
          orr__qemu_pipe_chardev((int)n).s, esc);
    free(esc);
    push_json(b, b->devs, "-device",
              json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "driver",
                        "virtserialport", "id", orr__qemu_pipe_qdev((int)n).s,
                        "bus", ORR_QEMU_VSERIAL_ID ".0", "chardev",
                        orr__qemu_pipe_chardev((int)n).s, "name", name, "nr",
                        n + 2));
    if (json_object_set_new(pipes_layout, host,
                            json_pack("{s:I, s:s, s:s}", "n", n, "name", name,
                                      "bound", tmp)) != 0)
      b->oom = true;
  }
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Entry points                                                           */
/* ---------------------------------------------------------------------- */

static int build(bld *b, const json_t *doc, json_t *layout) {
  const orr_qemu_config *cfg = b->cfg;
  const json_t *vm, *devices;
  const char *machine_extra;
  pmem_plan pm = {json_array(), json_array(), 0, 0, 0};
  char qmp[4096], pid[4096], qga[4096], vnc[4096];
  json_t *files = json_array(), *ports_layout = json_array();
  json_t *fdsets = json_object(), *pipes_layout = json_object();
  bool throttle = false, stop_on_reset, graphics = false;
  int rc, ncold, nports;
  size_t i;
  json_t *v;

  if (pm.objects == NULL || pm.devices == NULL || files == NULL ||
      ports_layout == NULL || fdsets == NULL) {
    rc = orr_error_set(b->err, ORR_ENOMEM, "out of memory");
    goto out;
  }
  if ((rc = check_config(cfg, b->err)) != 0)
    goto out;
  if ((rc = orr__qemu_check_fields(doc, "", root_rules, b->ignored, b->err)) !=
      0)
    goto out;
  if ((rc = opt_obj(doc, "VirtualMachine", "ComputeSystem", &vm, b->err)) != 0)
    goto out;
  if (vm == NULL) {
    rc = orr_error_set(b->err, ORR_EINVAL, "VirtualMachine is required");
    goto out;
  }
  if ((rc = orr__qemu_check_fields(vm, "VirtualMachine", vm_rules, b->ignored,
                                   b->err)) != 0 ||
      (rc = orr__qemu_get_bool(vm, "StopOnReset", "VirtualMachine", false,
                               &stop_on_reset, b->err)) != 0 ||
      (rc = opt_obj(vm, "Devices", "VirtualMachine", &devices, b->err)) != 0)
    goto out;
  if (devices != NULL &&
      (rc = orr__qemu_check_fields(devices, "VirtualMachine.Devices",
                                   devices_rules, b->ignored, b->err)) != 0)
    goto out;
  if (devices != NULL) {
    const json_t *pmem;
    if ((rc = opt_obj(devices, "VirtualPMem", "VirtualMachine.Devices", &pmem,
                      b->err)) != 0 ||
        (pmem != NULL && (rc = scan_pmem(b, pmem, &pm)) != 0))
      goto out;
    graphics = json_object_get(devices, "Keyboard") != NULL ||
               json_object_get(devices, "VideoMonitor") != NULL ||
               json_object_get(devices, "EnhancedModeVideo") != NULL;
  }

  orr__qemu_run_path(qmp, sizeof qmp, cfg, ORR_QEMU_QMP_SOCK);
  orr__qemu_run_path(pid, sizeof pid, cfg, ORR_QEMU_PIDFILE);
  orr__qemu_run_path(qga, sizeof qga, cfg, ORR_QEMU_QGA_SOCK);
  orr__qemu_run_path(vnc, sizeof vnc, cfg, ORR_QEMU_VNC_SOCK);

  push(b, b->argv, cfg->binary);
  push(b, b->argv, "-S");
  push(b, b->argv, "-nodefaults");
  push(b, b->argv, "-no-user-config");
  /* QEMU is confined, always (seccomp): it cannot run a program, raise its
  ** privileges, change its scheduling or use obsolete system calls. */
  push(b, b->argv, "-sandbox");
  push(b, b->argv, ORR_QEMU_SANDBOX);
  /* The -M value (index ARGV_MACHINE_VALUE) gets the pflash options once
  ** the chipset is known. */
  push(b, b->argv, "-M");
  push(b, b->argv, "q35");
  push(b, b->argv, "-accel");
  push(b, b->argv, cfg->accel);
  push(b, b->argv, "-cpu");
  push(b, b->argv, strcmp(cfg->accel, "kvm") == 0 ? "host" : "max");
  if ((rc = topology(b, vm, &pm)) != 0)
    goto out;
  push(b, b->argv, "-pidfile");
  push(b, b->argv, pid);
  push(b, b->argv, "-chardev");
  pushf(b, b->argv, "socket,id=%s,path=%s,server=on,wait=off",
        ORR_QEMU_QMP_CHARDEV, qmp);
  push(b, b->argv, "-mon");
  pushf(b, b->argv, "chardev=%s,mode=control", ORR_QEMU_QMP_CHARDEV);
  push(b, b->argv, "-display");
  push(b, b->argv, "none");
  if (graphics) {
    push(b, b->argv, "-vnc");
    pushf(b, b->argv, "unix:%s", vnc);
    push_json(b, b->devs, "-device",
              json_pack("{s:s, s:s, s:s, s:s}", "driver", "VGA", "id",
                        ORR_QEMU_VIDEO_ID, "bus", "pcie.0", "addr", "0x1"));
  }
  if (stop_on_reset) {
    push(b, b->argv, "-action");
    push(b, b->argv, "reboot=shutdown");
  }
  if ((rc = chipset(b, vm, files, &machine_extra)) != 0)
    goto out;
  if ((*machine_extra || cfg->ram_file != NULL) &&
      json_array_set_new(b->argv, ARGV_MACHINE_VALUE,
                         json_sprintf("q35%s%s", machine_extra,
                                      cfg->ram_file
                                          ? ",memory-backend=" ORR_QEMU_RAM_ID
                                          : "")) != 0)
    b->oom = true;
  if (cfg->vmgenid_guid != NULL)
    push_json(b, b->devs, "-device",
              json_pack("{s:s, s:s, s:s}", "driver", "vmgenid", "id",
                        ORR_QEMU_VMGENID_ID, "guid", cfg->vmgenid_guid));
  if ((rc = storage_qos(b, vm, &throttle)) != 0)
    goto out;
  if (devices != NULL) {
    if ((rc = scsi(b, devices, throttle)) != 0 ||
        (rc = vpci(b, devices)) != 0 || (rc = nics(b, devices)) != 0 ||
        (rc = plan9(b, devices)) != 0)
      goto out;
    json_array_foreach(pm.objects, i, v) {
      push_json(b, b->argv, "-object", json_incref(v));
      pin_memaddr(b, json_array_get(pm.devices, i));
      add_pci_dev(b, json_incref(json_array_get(pm.devices, i)));
    }
    if ((rc = hvsocket(b, devices)) != 0)
      goto out;
  }
  if ((rc = com_ports(b, devices)) != 0)
    goto out;
  if (cfg->guest_agent) {
    add_pci_dev(b, json_pack("{s:s, s:s}", "driver", "virtio-serial-pci", "id",
                             ORR_QEMU_VSERIAL_ID));
    push(b, b->argv, "-chardev");
    pushf(b, b->argv, "socket,id=%s,path=%s,server=on,wait=off",
          ORR_QEMU_QGA_CHARDEV, qga);
    push_json(b, b->devs, "-device",
              json_pack("{s:s, s:s, s:s, s:s}", "driver", "virtserialport",
                        "bus", ORR_QEMU_VSERIAL_ID ".0", "chardev",
                        ORR_QEMU_QGA_CHARDEV, "name", ORR_QEMU_QGA_PORT_NAME));
  }
  if ((rc = received_pipes(b, pipes_layout)) != 0)
    goto out;
  add_pci_dev(b, json_pack("{s:s, s:s}", "driver", "virtio-balloon-pci", "id",
                           ORR_QEMU_BALLOON_ID));
  if (b->vmem_mib > 0) {
    /* Nothing plugged in at boot: requested-size 0 until update_memory. */
    push_json(b, b->argv, "-object",
              json_pack("{s:s, s:s, s:I}", "qom-type", "memory-backend-ram",
                        "id", ORR_QEMU_VMEM_MEMDEV, "size",
                        (json_int_t)b->vmem_mib << 20));
    json_t *vmem = json_pack(
        "{s:s, s:s, s:s, s:i, s:I}", "driver", "virtio-mem-pci", "id",
        ORR_QEMU_VMEM_ID, "memdev", ORR_QEMU_VMEM_MEMDEV, "requested-size", 0,
        "block-size", (json_int_t)ORR_QEMU_VMEM_BLOCK_MB << 20);
    /* Received: the plugged size comes with the stream. */
    pin_memaddr(b, vmem);
    add_pci_dev(b, vmem);
  }
  if (cfg->restore_path != NULL) {
    int fdnum;
    if ((rc = orr__hostres_restore(cfg->hr, cfg->restore_path,
                                   "create: opts.restore", &fdnum, b->err)) !=
        0)
      goto out;
    push(b, b->argv, "-incoming");
    if (cfg->ram_file != NULL && !cfg->ram_shared) {
      /* A clone: the stream leaves out the RAM the file holds, which
      ** QEMU reads only with x-ignore-shared on, a capability that must
      ** be set before the incoming migration starts (7.2 has no -global
      ** for it): the launch sets it, then migrate-incoming. */
      push(b, b->argv, "defer");
      if (json_object_set_new(layout, "incoming",
                              json_pack("{s:o, s:b}", "uri",
                                        json_sprintf("fd:%d", fdnum),
                                        "ignore_shared", 1)) != 0)
        b->oom = true;
    } else {
      pushf(b, b->argv, "fd:%d", fdnum);
    }
  } else if (cfg->incoming) {
    push(b, b->argv, "-incoming");
    push(b, b->argv, "defer");
  }

  /* fd mode: each image descriptor QEMU inherits goes into its fdset, and
  ** the layout says which fdsets are whose, for a later removal. */
  if ((rc = add_fds(b, fdsets)) != 0)
    goto out;

  if (b->unpinned[0] != '\0') {
    rc = orr_error_set(b->err, ORR_EINVAL,
                       "layout.ports: the source's layout has no root port "
                       "for %s",
                       b->unpinned);
    goto out;
  }
  /* The root ports, then the devices that sit in them. */
  ncold = (int)json_array_size(b->ports);
  nports = cfg->pin_ports != NULL ? ncold /* exactly the source's ports */
                                  : ncold + cfg->hotplug_ports;
  if (nports > ORR_QEMU_MAX_PORTS) {
    rc = orr_error_set(b->err, ORR_EINVAL,
                       "cfg.hotplug_ports: %d cold-plugged PCI devices + %d "
                       "hot-plug ports exceed the %d root ports q35 can hold",
                       ncold, cfg->hotplug_ports, ORR_QEMU_MAX_PORTS);
    goto out;
  }
  for (int n = 0; n < nports; n++) {
    json_t *dev = json_array_get(b->ports, (size_t)n);
    if (json_is_null(dev))
      dev = NULL;
    char addr[16];
    snprintf(addr, sizeof addr, "0x%x.0x%x", 2 + n / 8, n % 8);
    push_json(b, b->argv, "-device",
              json_pack("{s:s, s:s, s:s, s:i, s:s, s:b, s:i}", "driver",
                        "pcie-root-port", "id", orr__qemu_port_id(n).s, "bus",
                        "pcie.0", "chassis", n + 1, "addr", addr,
                        "multifunction", n % 8 == 0, "io-reserve", 0));
    if (json_array_append_new(
            ports_layout,
            json_pack("{s:s, s:o}", "id", orr__qemu_port_id(n).s, "device",
                      dev ? json_incref(dev) : json_null())) != 0)
      b->oom = true;
  }
  if (json_array_extend(b->argv, b->devs) != 0)
    b->oom = true;

  if (json_object_set(layout, "ports", ports_layout) != 0 ||
      json_object_set(layout, "ignored", b->ignored) != 0 ||
      json_object_set_new(layout, "throttle_group", json_boolean(throttle)) ||
      json_object_set_new(layout, "qmp", json_string(qmp)) != 0 ||
      json_object_set_new(layout, "pidfile", json_string(pid)) != 0 ||
      json_object_set_new(layout, "qga",
                          cfg->guest_agent ? json_string(qga) : json_null()) ||
      json_object_set_new(layout, "vnc",
                          graphics ? json_string(vnc) : json_null()) != 0 ||
      json_object_set(layout, "files", files) != 0 ||
      (json_object_size(fdsets) > 0 &&
       json_object_set(layout, "fdsets", fdsets) != 0) ||
      (pm.room_mib > 0 &&
       json_object_set_new(layout, "pmem_room_mb", json_integer(pm.room_mib)) !=
           0) ||
      (b->maxmem_mib > 0 &&
       json_object_set_new(layout, "hotplug_memory",
                           json_pack("{s:I, s:I}", "slots",
                                     (json_int_t)b->slots, "maxmem_mb",
                                     (json_int_t)b->maxmem_mib)) != 0) ||
      (json_object_size(pipes_layout) > 0 &&
       json_object_set(layout, "pipes", pipes_layout) != 0) ||
      (b->com_moved != NULL &&
       json_object_set(layout, "com_moved", b->com_moved) != 0) ||
      (b->vmem_mib > 0 &&
       json_object_set_new(layout, "virtio_mem",
                           json_pack("{s:I, s:I}", "max_mb",
                                     (json_int_t)(b->boot_mib + b->vmem_mib),
                                     "boot_mb", (json_int_t)b->boot_mib)) != 0))
    b->oom = true;
  if (b->oom)
    rc = orr_error_set(b->err, ORR_ENOMEM, "out of memory");
out:
  json_decref(pm.objects);
  json_decref(pm.devices);
  json_decref(files);
  json_decref(ports_layout);
  json_decref(pipes_layout);
  json_decref(fdsets);
  return rc;
}

int orr__qemu_argv(const json_t *doc, const orr_qemu_config *cfg, json_t **argv,
                   json_t **layout, orr_error *err) {
  bld b = {cfg,
           json_array(),
           json_array(),
           json_array(),
           json_array(),
           err,
           false,
           0,
           0,
           "",
           0,
           0,
           NULL};
  int rc;

  *layout = json_object();
  if (b.argv == NULL || b.devs == NULL || b.ports == NULL ||
      b.ignored == NULL || *layout == NULL)
    rc = orr_error_set(err, ORR_ENOMEM, "out of memory");
  else if (cfg->pin_ports != NULL &&
           (!json_is_array(cfg->pin_ports) ||
            json_array_size(cfg->pin_ports) > ORR_QEMU_MAX_PORTS))
    rc = orr_error_set(err, ORR_EINVAL,
                       "layout.ports must be an array of at most %d ports",
                       ORR_QEMU_MAX_PORTS);
  else {
    for (size_t i = 0; cfg->pin_ports && i < json_array_size(cfg->pin_ports);
         i++)
      json_array_append_new(b.ports, json_null());
    rc = build(&b, doc, *layout);
  }
  json_decref(b.devs);
  json_decref(b.ports);
  json_decref(b.ignored);
  json_decref(b.com_moved);
  if (rc != 0) {
    json_decref(b.argv);
    json_decref(*layout);
    *argv = *layout = NULL;
    return rc;
  }
  *argv = b.argv;
  return 0;
}

int orr__qemu_prepare_files(const orr_qemu_config *cfg, const json_t *doc,
                            orr_error *err) {
  const json_t *cs =
      json_object_get(json_object_get(doc, "VirtualMachine"), "Chipset");
  char vars[4096], buf[65536];
  int in, out, rc = 0;
  ssize_t n;

  if (!json_is_object(json_object_get(cs, "Uefi")))
    return 0;
  if (cfg->run_dir == NULL ||
      orr__qemu_run_path(vars, sizeof vars, cfg, ORR_QEMU_VARS_FILE) != 0)
    return orr_error_set(err, ORR_EINVAL,
                         "cfg.run_dir is missing or too "
                         "long");
  if (access(vars, F_OK) == 0)
    return 0; /* the VM's NVRAM from an earlier run */
  if ((in = open(cfg->ovmf_vars_template, O_RDONLY | O_CLOEXEC)) < 0)
    return orr_error_set(err, ORR_EIO, "cannot open %s: %s",
                         cfg->ovmf_vars_template, strerror(errno));
  if ((out = open(vars, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
    rc = orr_error_set(err, ORR_EIO, "cannot create %s: %s", vars,
                       strerror(errno));
    close(in);
    return rc;
  }
  while ((n = read(in, buf, sizeof buf)) > 0) {
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(out, buf + off, (size_t)(n - off));
      if (w < 0) {
        if (errno == EINTR)
          continue;
        rc = orr_error_set(err, ORR_EIO, "cannot write %s: %s", vars,
                           strerror(errno));
        goto done;
      }
      off += w;
    }
  }
  if (n < 0)
    rc = orr_error_set(err, ORR_EIO, "cannot read %s: %s",
                       cfg->ovmf_vars_template, strerror(errno));
done:
  if (close(out) != 0 && rc == 0)
    rc = orr_error_set(err, ORR_EIO, "cannot write %s: %s", vars,
                       strerror(errno));
  close(in);
  if (rc != 0)
    unlink(vars);
  return rc;
}

/*
** The HCS schema 2.1 document types (hcsshim's hcsschema package), field by
** field, in the order Go marshals them, with each field's Go shape (pointer,
** struct by value; every field is omitempty). spec/hcs_schema_spec.lua
** checks this table against hcsshim's structs. Ranges are the ones HCS or
** QEMU enforce, never wider than the Go type; where HCS allows more than any
** backend can run, the smaller limit is used and named in the rule text.
*/
#include <string.h>

#include "orrery/document.h"
#include "schema.h"

#define STR(n)                                                                 \
  { .kind = ORR_K_STRING, .name = n }
#define STR_CHECK(n, fn)                                                       \
  { .kind = ORR_K_STRING, .name = n, .check = fn }
#define ENUM(n, vals)                                                          \
  { .kind = ORR_K_STRING, .name = n, .values = vals }
#define INT(n, lo, hi)                                                         \
  { .kind = ORR_K_INT, .name = n, .min = lo, .max = hi }
#define OBJ(n, flds)                                                           \
  { .kind = ORR_K_OBJECT, .name = n, .fields = flds }
#define MAP(n, el, keyfn, maxn)                                                \
  {                                                                            \
    .kind = ORR_K_MAP, .name = n, .elem = el, .key_check = keyfn,              \
    .max_items = maxn                                                          \
  }
#define ARR(n, el, maxn)                                                       \
  { .kind = ORR_K_ARRAY, .name = n, .elem = el, .max_items = maxn }
#define UNSUP(n)                                                               \
  { .kind = ORR_K_UNSUPPORTED, .name = n }
#define END                                                                    \
  { NULL, NULL, 0 }
#define REQ ORR_F_REQUIRED
#define PTR ORR_F_PTR

static const orr_type t_bool = {.kind = ORR_K_BOOL, .name = "bool"};
static const orr_type t_number = {.kind = ORR_K_NUMBER, .name = "float64"};
static const orr_type t_any = {.kind = ORR_K_ANY, .name = "interface{}"};
static const orr_type t_string = STR("string");
static const orr_type t_path = STR_CHECK("path", orr__check_abs_path);
static const orr_type t_guid = STR_CHECK("GUID", orr__check_guid);
static const orr_type t_bytes = STR_CHECK("[]byte", orr__check_base64);
static const orr_type t_u8 = INT("uint8", 0, 255);
static const orr_type t_u16 = INT("uint16", 0, 65535);
static const orr_type t_u32 = INT("uint32", 0, 4294967295LL);
static const orr_type t_u64 = INT("uint64", 0, INT64_MAX);
/* Go's int32 and int64; negative values mean nothing in any of these. */
static const orr_type t_i32 = INT("int32", 0, 2147483647LL);
static const orr_type t_i64 = INT("int64", 0, INT64_MAX);
static const orr_type t_unsupported = UNSUP("unsupported");
static const orr_type t_string_list = ARR("[]string", &t_string, 0);

/* ---- SchemaVersion, Version ---- */
static const orr_field version_fields[] = {
    {"Major", &t_i32, 0}, {"Minor", &t_i32, 0}, END};
static const orr_type t_version = OBJ("Version", version_fields);

/* ---- Chipset ---- */
static const char *const boot_device_types[] = {"ScsiDrive", "VmbFs", "Network",
                                                "File", NULL};
static const orr_type t_boot_device_type =
    ENUM("UefiBootDevice", boot_device_types);
static const orr_field uefi_boot_entry_fields[] = {
    {"DeviceType", &t_boot_device_type, REQ},
    {"DevicePath", &t_string, 0},
    {"DiskNumber", &t_u16, 0},
    {"OptionalData", &t_string, 0},
    {"VmbFsRootPath", &t_string, 0},
    END};
const orr_type orr__t_uefi_boot_entry =
    OBJ("UefiBootEntry", uefi_boot_entry_fields);

static const char *const secure_boot_values[] = {"Apply", "Skip", NULL};
static const orr_type t_secure_boot =
    ENUM("ApplySecureBootTemplateType", secure_boot_values);
static const char *const uefi_console_values[] = {"Default", "ComPort1",
                                                  "ComPort2", "None", NULL};
static const orr_type t_uefi_console =
    ENUM("SerialConsole", uefi_console_values);
static const orr_field uefi_fields[] = {
    {"EnableDebugger", &t_bool, 0},
    {"ApplySecureBootTemplate", &t_secure_boot, 0},
    {"SecureBootTemplateId", &t_guid, 0},
    {"BootThis", &orr__t_uefi_boot_entry, 0},
    {"Console", &t_uefi_console, 0},
    END};
static const orr_type t_uefi = OBJ("Uefi", uefi_fields);

static const orr_field linux_kernel_direct_fields[] = {
    {"KernelFilePath", &t_path, REQ},
    {"InitRdPath", &t_path, 0},
    {"KernelCmdLine", &t_string, 0},
    END};
const orr_type orr__t_linux_kernel_direct =
    OBJ("LinuxKernelDirect", linux_kernel_direct_fields);

static const orr_field firmware_file_fields[] = {{"Parameters", &t_bytes, 0},
                                                 END};
static const orr_type t_firmware_file =
    OBJ("FirmwareFile", firmware_file_fields);

static const orr_field chipset_fields[] = {
    {"Uefi", &t_uefi, 0},
    {"IsNumLockDisabled", &t_bool, 0},
    {"BaseBoardSerialNumber", &t_string, 0},
    {"ChassisSerialNumber", &t_string, 0},
    {"ChassisAssetTag", &t_string, 0},
    {"UseUtc", &t_bool, 0},
    {"LinuxKernelDirect", &orr__t_linux_kernel_direct, 0},
    {"FirmwareFile", &t_firmware_file, 0},
    END};
static const orr_type t_chipset = OBJ("Chipset", chipset_fields);

/* ---- ComputeTopology ---- */
static const char *const backing_values[] = {"Physical", "Virtual", "Hybrid",
                                             NULL};
static const orr_type t_backing = ENUM("MemoryBackingType", backing_values);
static const char *const slit_values[] = {"None", "Firmware", "Measured",
                                          "FirmwareFallbackMeasured", NULL};
static const orr_type t_slit = ENUM("VirtualSlitType", slit_values);
/* 1 TiB: far above anything this project runs, below QEMU's limits. */
static const orr_type t_size_mb = INT("SizeInMB", 1, 1048576);
static const orr_field memory_fields[] = {
    {"SizeInMB", &t_size_mb, 0},          {"Backing", &t_backing, PTR},
    {"AllowOvercommit", &t_bool, 0},      {"EnableHotHint", &t_bool, 0},
    {"EnableColdHint", &t_bool, 0},       {"EnableColdDiscardHint", &t_bool, 0},
    {"EnableDeferredCommit", &t_bool, 0}, {"LowMmioGapInMB", &t_u64, 0},
    {"HighMmioBaseInMB", &t_u64, 0},      {"HighMmioGapInMB", &t_u64, 0},
    {"SlitType", &t_slit, PTR},           END};
const orr_type orr__t_memory = OBJ("VirtualMachineMemory", memory_fields);

static const orr_field cpu_group_fields[] = {{"Id", &t_guid, REQ}, END};
const orr_type orr__t_cpu_group = OBJ("CpuGroup", cpu_group_fields);

static const orr_type t_count_max = INT("uint32", 1, 288);
static const orr_field range_fields[] = {{"max", &t_count_max, 0}, END};
static const orr_type t_range = OBJ("Range", range_fields);
static const orr_field numa_processors_fields[] = {
    /* A struct Go holds by value: `"count_per_node":{}` when unset. */
    {"count_per_node", &t_range, ORR_F_VALUE},
    {"node_per_socket", &t_u32, 0},
    END};
const orr_type orr__t_numa_processors = {.kind = ORR_K_OBJECT,
                                         .name = "NumaProcessors",
                                         .fields = numa_processors_fields,
                                         .value_fields = 1};

/* 288 is q35's vCPU limit in QEMU 7.2. */
static const orr_type t_cpu_count = INT("Count", 1, 288);
/* Limit, Reservation: percent of the VM's CPUs times 1000 (100000 = all). */
static const orr_type t_cpu_fraction = INT("uint64", 0, 100000);
static const orr_type t_cpu_weight = INT("uint64", 0, 10000);
static const orr_field processor_fields[] = {
    {"Count", &t_cpu_count, 0},
    {"Limit", &t_cpu_fraction, 0},
    {"Weight", &t_cpu_weight, 0},
    {"Reservation", &t_cpu_fraction, 0},
    {"CpuGroup", &orr__t_cpu_group, 0},
    {"NumaProcessorsSettings", &orr__t_numa_processors, 0},
    END};
const orr_type orr__t_processor =
    OBJ("VirtualMachineProcessor", processor_fields);

static const orr_field processor_limits_fields[] = {
    {"Limit", &t_cpu_fraction, 0},
    {"Weight", &t_cpu_weight, 0},
    {"Reservation", &t_cpu_fraction, 0},
    {"MaximumFrequencyMHz", &t_u32, 0},
    END};
const orr_type orr__t_processor_limits =
    OBJ("ProcessorLimits", processor_limits_fields);

static const orr_type t_numa_node_number = INT("uint32", 0, 63);
static const orr_field numa_setting_fields[] = {
    {"VirtualNodeNumber", &t_numa_node_number, 0},
    {"PhysicalNodeNumber", &t_numa_node_number, 0},
    {"VirtualSocketNumber", &t_numa_node_number, 0},
    {"CountOfProcessors", &t_u32, 0},
    {"CountOfMemoryBlocks", &t_u64, 0},
    {"MemoryBackingType", &t_backing, 0},
    END};
static const orr_type t_numa_setting = OBJ("NumaSetting", numa_setting_fields);
static const orr_type t_numa_node_count = INT("uint8", 1, 64);
static const orr_type t_numa_settings =
    ARR("[]NumaSetting", &t_numa_setting, 64);
static const orr_type t_node_list = ARR("[]int64", &t_u32, 64);
static const orr_field numa_fields[] = {
    {"VirtualNodeCount", &t_numa_node_count, REQ},
    {"PreferredPhysicalNodes", &t_node_list, 0},
    {"Settings", &t_numa_settings, 0},
    {"MaxSizePerNode", &t_u64, 0},
    END};
const orr_type orr__t_numa = OBJ("Numa", numa_fields);

static const orr_field topology_fields[] = {{"Memory", &orr__t_memory, 0},
                                            {"Processor", &orr__t_processor, 0},
                                            {"Numa", &orr__t_numa, 0},
                                            END};
static const orr_type t_topology = OBJ("Topology", topology_fields);

/* ---- Devices ---- */
static const orr_type t_socket_path =
    STR_CHECK("unix socket path", orr__check_socket_path);
static const orr_field com_port_fields[] = {{"NamedPipe", &t_socket_path, REQ},
                                            {"OptimizeForDebugger", &t_bool, 0},
                                            END};
static const orr_type t_com_port = OBJ("ComPort", com_port_fields);
static const char *com_key_check(const char *s, size_t len) {
  if (len == 1 && s[0] >= '0' && s[0] <= '3')
    return NULL;
  return "must be a COM port number \"0\"..\"3\" (\"0\" is COM1)";
}
static const orr_type t_com_ports =
    MAP("map[string]ComPort", &t_com_port, com_key_check, 4);

static const char *const attachment_types[] = {"VirtualDisk", "Iso", "PassThru",
                                               "ExtensibleVirtualDisk", NULL};
static const orr_type t_attachment_type =
    ENUM("AttachmentType", attachment_types);
static const char *const caching_values[] = {"Uncached", "Cached",
                                             "ReadOnlyCached", NULL};
static const orr_type t_caching = ENUM("CachingMode", caching_values);
static const orr_field attachment_fields[] = {
    {"Type", &t_attachment_type, REQ},
    {"Path", &t_path, REQ},
    {"IgnoreFlushes", &t_bool, 0},
    {"CachingMode", &t_caching, 0},
    {"NoWriteHardening", &t_bool, 0},
    {"DisableExpansionOptimization", &t_bool, 0},
    {"IgnoreRelativeLocator", &t_bool, 0},
    {"CaptureIoAttributionContext", &t_bool, 0},
    {"ReadOnly", &t_bool, 0},
    {"SupportCompressedVolumes", &t_bool, 0},
    {"AlwaysAllowSparseFiles", &t_bool, 0},
    {"ExtensibleVirtualDiskType", &t_string, 0},
    END};
const orr_type orr__t_attachment = OBJ("Attachment", attachment_fields);
static const orr_type t_attachments =
    MAP("map[string]Attachment", &orr__t_attachment, orr__check_lun_key, 64);
static const orr_field scsi_fields[] = {{"Attachments", &t_attachments, 0},
                                        END};
static const orr_type t_scsi = OBJ("Scsi", scsi_fields);
static const orr_type t_scsi_map =
    MAP("map[string]Scsi", &t_scsi, orr__check_scsi_guid, 4);

static const char *const pmem_formats[] = {"Vhdx", "Vhd1", NULL};
static const orr_type t_pmem_format =
    ENUM("VirtualPMemImageFormat", pmem_formats);
static const orr_field vpmem_device_fields[] = {
    {"HostPath", &t_path, REQ},
    {"ReadOnly", &t_bool, 0},
    {"ImageFormat", &t_pmem_format, 0},
    END};
const orr_type orr__t_vpmem_device =
    OBJ("VirtualPMemDevice", vpmem_device_fields);
static const char *vpmem_key_check(const char *s, size_t len) {
  /* "0".."127", decimal without leading zeros. */
  int v = 0;
  if (len == 0 || len > 3 || (len > 1 && s[0] == '0'))
    goto bad;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      goto bad;
    v = v * 10 + (s[i] - '0');
  }
  if (v <= 127)
    return NULL;
bad:
  return "must be a device number \"0\"..\"127\"";
}
static const orr_type t_vpmem_devices = MAP(
    "map[string]VirtualPMemDevice", &orr__t_vpmem_device, vpmem_key_check, 128);
static const orr_type t_vpmem_count = INT("uint32", 1, 128);
static const char *const pmem_backing_values[] = {"Virtual", "Physical", NULL};
static const orr_type t_pmem_backing =
    ENUM("VirtualPMemBackingType", pmem_backing_values);
static const orr_field vpmem_fields[] = {{"Devices", &t_vpmem_devices, 0},
                                         {"MaximumCount", &t_vpmem_count, 0},
                                         {"MaximumSizeBytes", &t_u64, 0},
                                         {"Backing", &t_pmem_backing, 0},
                                         END};
const orr_type orr__t_vpmem_controller =
    OBJ("VirtualPMemController", vpmem_fields);

static const orr_type t_mac = STR_CHECK("MAC address", orr__check_mac);
static const char *const moderation_values[] = {
    "Default", "Adaptive", "Off", "Low", "Medium", "High", NULL};
static const orr_type t_moderation =
    ENUM("InterruptModerationName", moderation_values);
static const orr_field iov_fields[] = {
    {"OffloadWeight", &t_u32, PTR},
    {"QueuePairsRequested", &t_u32, PTR},
    {"InterruptModeration", &t_moderation, PTR},
    END};
static const orr_type t_iov = OBJ("IovSettings", iov_fields);
static const orr_type t_endpoint = STR("EndpointId");
static const orr_field nic_fields[] = {{"EndpointId", &t_endpoint, REQ},
                                       {"MacAddress", &t_mac, 0},
                                       {"IovSettings", &t_iov, 0},
                                       END};
const orr_type orr__t_network_adapter = OBJ("NetworkAdapter", nic_fields);
static const orr_type t_nics = MAP("map[string]NetworkAdapter",
                                   &orr__t_network_adapter, orr__check_guid, 0);

static const orr_field rdp_fields[] = {
    {"AccessSids", &t_string_list, 0}, {"NamedPipe", &t_string, 0}, END};
static const orr_type t_rdp = OBJ("RdpConnectionOptions", rdp_fields);
static const orr_field video_fields[] = {{"HorizontalResolution", &t_u16, 0},
                                         {"VerticalResolution", &t_u16, 0},
                                         {"ConnectionOptions", &t_rdp, 0},
                                         END};
static const orr_type t_video = OBJ("VideoMonitor", video_fields);
static const orr_field enhanced_video_fields[] = {
    {"ConnectionOptions", &t_rdp, 0}, END};
static const orr_type t_enhanced_video =
    OBJ("EnhancedModeVideo", enhanced_video_fields);
static const orr_field empty_fields[] = {END};
static const orr_type t_keyboard = OBJ("Keyboard", empty_fields);
static const orr_type t_mouse = OBJ("Mouse", empty_fields);
static const orr_type t_battery = OBJ("Battery", empty_fields);

static const orr_field hvsock_service_fields[] = {
    {"BindSecurityDescriptor", &t_string, 0},
    {"ConnectSecurityDescriptor", &t_string, 0},
    {"AllowWildcardBinds", &t_bool, 0},
    {"Disabled", &t_bool, 0},
    END};
static const orr_type t_hvsock_service =
    OBJ("HvSocketServiceConfig", hvsock_service_fields);
static const orr_type t_hvsock_table = MAP(
    "map[string]HvSocketServiceConfig", &t_hvsock_service, orr__check_guid, 0);
static const orr_field hvsock_config_fields[] = {
    {"DefaultBindSecurityDescriptor", &t_string, 0},
    {"DefaultConnectSecurityDescriptor", &t_string, 0},
    {"ServiceTable", &t_hvsock_table, 0},
    END};
static const orr_type t_hvsock_config =
    OBJ("HvSocketSystemConfig", hvsock_config_fields);
static const orr_field hvsock_fields[] = {
    {"HvSocketConfig", &t_hvsock_config, 0}, END};
static const orr_type t_hvsock = OBJ("HvSocket2", hvsock_fields);

static const orr_field crash_fields[] = {{"DumpFileName", &t_string, 0},
                                         {"MaxDumpSize", &t_i64, 0},
                                         {"DumpType", &t_string, 0},
                                         END};
static const orr_type t_crash = OBJ("WindowsCrashReporting", crash_fields);
static const orr_field crash_reporting_fields[] = {
    {"WindowsCrashSettings", &t_crash, 0}, END};
static const orr_type t_crash_reporting =
    OBJ("GuestCrashReporting", crash_reporting_fields);

static const orr_field vsmb_options_fields[] = {
    {"ReadOnly", &t_bool, 0},
    {"ShareRead", &t_bool, 0},
    {"CacheIo", &t_bool, 0},
    {"NoOplocks", &t_bool, 0},
    {"TakeBackupPrivilege", &t_bool, 0},
    {"UseShareRootIdentity", &t_bool, 0},
    {"NoDirectmap", &t_bool, 0},
    {"NoLocks", &t_bool, 0},
    {"NoDirnotify", &t_bool, 0},
    {"VmSharedMemory", &t_bool, 0},
    {"RestrictFileAccess", &t_bool, 0},
    {"ForceLevelIIOplocks", &t_bool, 0},
    {"ReparseBaseLayer", &t_bool, 0},
    {"PseudoOplocks", &t_bool, 0},
    {"NonCacheIo", &t_bool, 0},
    {"PseudoDirnotify", &t_bool, 0},
    {"SingleFileMapping", &t_bool, 0},
    END};
static const orr_type t_vsmb_options =
    OBJ("VirtualSmbShareOptions", vsmb_options_fields);
static const orr_field vsmb_share_fields[] = {
    {"Name", &t_string, REQ},
    {"Path", &t_path, REQ},
    {"AllowedFiles", &t_string_list, 0},
    {"Options", &t_vsmb_options, 0},
    END};
const orr_type orr__t_vsmb_share = OBJ("VirtualSmbShare", vsmb_share_fields);
static const orr_type t_vsmb_shares =
    ARR("[]VirtualSmbShare", &orr__t_vsmb_share, 0);
static const orr_field vsmb_fields[] = {
    {"Shares", &t_vsmb_shares, 0}, {"DirectFileMappingInMB", &t_i64, 0}, END};
const orr_type orr__t_vsmb = OBJ("VirtualSmb", vsmb_fields);

/*
** Plan9 share flags (hcsshim's Plan9ShareFlags). hcsshim once had the
** booleans ReadOnly and UseShareRootIdentity beside Flags and now encodes
** them as its bits; Orrery takes either spelling and stores the bits.
*/
#define P9_READ_ONLY 0x1
#define P9_SHARE_ROOT_IDENTITY 0x10
static const orr_type t_p9_flags = INT("Plan9ShareFlags", 0, 2147483647LL);
static const char *plan9_fix(json_t *share, const char **field) {
  static const struct {
    const char *name;
    json_int_t bit;
    const char *rule;
  } alias[] = {{"ReadOnly", P9_READ_ONLY,
                "is false but Flags has its bit 0x1 (ReadOnly) set"},
               {"UseShareRootIdentity", P9_SHARE_ROOT_IDENTITY,
                "is false but Flags has its bit 0x10 (UseShareRootIdentity) "
                "set"}};
  json_int_t flags = json_integer_value(json_object_get(share, "Flags"));
  json_int_t was = flags;
  for (size_t i = 0; i < sizeof alias / sizeof *alias; i++) {
    json_t *v = json_object_get(share, alias[i].name);
    if (v == NULL)
      continue;
    if (json_is_true(v)) {
      flags |= alias[i].bit;
    } else if (flags & alias[i].bit) {
      *field = alias[i].name;
      return alias[i].rule;
    }
    json_object_del(share, alias[i].name);
  }
  if (flags != was)
    json_object_set_new(share, "Flags", json_integer(flags));
  return NULL;
}
static const orr_field plan9_share_fields[] = {
    {"Name", &t_string, REQ},
    {"AccessName", &t_string, 0},
    {"Path", &t_path, REQ},
    {"Port", &t_u16, 0},
    {"Flags", &t_p9_flags, 0},
    {"AllowedFiles", &t_string_list, 0},
    {"ReadOnly", &t_bool, ORR_F_ALIAS},
    {"UseShareRootIdentity", &t_bool, ORR_F_ALIAS},
    END};
const orr_type orr__t_plan9_share = {.kind = ORR_K_OBJECT,
                                     .name = "Plan9Share",
                                     .fields = plan9_share_fields,
                                     .fix = plan9_fix};
/* A share named for removal: hcsshim sends {Name, AccessName, Port}, no
** Path. */
static const orr_field plan9_share_ref_fields[] = {
    {"Name", &t_string, REQ},
    {"AccessName", &t_string, 0},
    {"Path", &t_path, 0},
    {"Port", &t_u16, 0},
    {"Flags", &t_p9_flags, 0},
    {"AllowedFiles", &t_string_list, 0},
    {"ReadOnly", &t_bool, ORR_F_ALIAS},
    {"UseShareRootIdentity", &t_bool, ORR_F_ALIAS},
    END};
const orr_type orr__t_plan9_share_ref = {.kind = ORR_K_OBJECT,
                                         .name = "Plan9Share",
                                         .fields = plan9_share_ref_fields,
                                         .fix = plan9_fix};
static const orr_type t_plan9_shares =
    ARR("[]Plan9Share", &orr__t_plan9_share, 0);
static const orr_field plan9_fields[] = {{"Shares", &t_plan9_shares, 0}, END};
static const orr_type t_plan9 = OBJ("Plan9", plan9_fields);

static const orr_field flexible_io_fields[] = {
    {"EmulatorId", &t_string, 0},
    {"HostingModel", &t_string, 0},
    {"Configuration", &t_string_list, 0},
    END};
static const orr_type t_flexible_io =
    OBJ("FlexibleIoDevice", flexible_io_fields);
static const orr_type t_flexible_iov =
    MAP("map[string]FlexibleIoDevice", &t_flexible_io, NULL, 0);

static const orr_field shared_region_fields[] = {
    {"SectionName", &t_string, 0},   {"StartOffset", &t_i32, 0},
    {"Length", &t_i32, 0},           {"AllowGuestWrite", &t_bool, 0},
    {"HiddenFromGuest", &t_bool, 0}, END};
static const orr_type t_shared_region =
    OBJ("SharedMemoryRegion", shared_region_fields);
static const orr_type t_shared_regions =
    ARR("[]SharedMemoryRegion", &t_shared_region, 0);
static const orr_field shared_memory_fields[] = {
    {"Regions", &t_shared_regions, 0}, END};
static const orr_type t_shared_memory =
    OBJ("SharedMemoryConfiguration", shared_memory_fields);

static const orr_field vpci_function_fields[] = {
    {"DeviceInstancePath", &t_string, REQ},
    {"VirtualFunction", &t_u16, 0},
    END};
static const orr_type t_vpci_function =
    OBJ("VirtualPciFunction", vpci_function_fields);
/* One root port holds one device of up to eight functions. */
static const orr_type t_vpci_functions = {.kind = ORR_K_ARRAY,
                                          .name = "[]VirtualPciFunction",
                                          .min = 1,
                                          .elem = &t_vpci_function,
                                          .max_items = 8};
static const orr_field vpci_device_fields[] = {
    {"Functions", &t_vpci_functions, REQ},
    {"PropagateNumaAffinity", &t_bool, PTR},
    END};
const orr_type orr__t_vpci_device = OBJ("VirtualPciDevice", vpci_device_fields);
static const orr_type t_vpci_map =
    MAP("map[string]VirtualPciDevice", &orr__t_vpci_device, orr__check_guid, 0);

static const orr_field devices_fields[] = {
    {"ComPorts", &t_com_ports, 0},
    {"Scsi", &t_scsi_map, 0},
    {"VirtualPMem", &orr__t_vpmem_controller, 0},
    {"NetworkAdapters", &t_nics, 0},
    {"VideoMonitor", &t_video, 0},
    {"Keyboard", &t_keyboard, 0},
    {"Mouse", &t_mouse, 0},
    {"HvSocket", &t_hvsock, 0},
    {"EnhancedModeVideo", &t_enhanced_video, 0},
    {"GuestCrashReporting", &t_crash_reporting, 0},
    {"VirtualSmb", &orr__t_vsmb, 0},
    {"Plan9", &t_plan9, 0},
    {"Battery", &t_battery, 0},
    {"FlexibleIov", &t_flexible_iov, 0},
    {"SharedMemory", &t_shared_memory, 0},
    {"VirtualPci", &t_vpci_map, 0},
    END};
static const orr_type t_devices = OBJ("Devices", devices_fields);

static const orr_field storage_qos_fields[] = {
    {"IopsMaximum", &t_i32, 0}, {"BandwidthMaximum", &t_i32, 0}, END};
const orr_type orr__t_storage_qos = OBJ("StorageQoS", storage_qos_fields);

/* hcsshim's string; these are the values HCS takes (BlockStorage is what
** hcsshim sends for a confidential Windows guest). */
static const char *const guest_state_types[] = {
    "Default", "FileMode", "MemoryMode", "BlockStorage", NULL};
static const orr_type t_guest_state_type =
    ENUM("GuestStateFileType", guest_state_types);
static const orr_field guest_state_fields[] = {
    {"GuestStateFilePath", &t_path, 0},
    {"GuestStateFileType", &t_guest_state_type, 0},
    {"RuntimeStateFilePath", &t_path, 0},
    {"ForceTransientState", &t_bool, 0},
    END};
static const orr_type t_guest_state = OBJ("GuestState", guest_state_fields);
static const orr_field restore_state_fields[] = {
    {"SaveStateFilePath", &t_path, 0}, {"TemplateSystemId", &t_string, 0}, END};
static const orr_type t_restore_state =
    OBJ("RestoreState", restore_state_fields);

static const char *const hive_values[] = {"System", "Software", "Security",
                                          "Sam", NULL};
static const orr_type t_hive = ENUM("RegistryHive", hive_values);
static const char *const registry_types[] = {
    "None",  "String", "ExpandedString", "MultiString", "Binary",
    "DWord", "QWord",  "CustomType",     NULL};
static const orr_type t_registry_type =
    ENUM("RegistryValueType", registry_types);
static const orr_field registry_key_fields[] = {{"Hive", &t_hive, 0},
                                                {"Name", &t_string, 0},
                                                {"Volatile", &t_bool, 0},
                                                END};
static const orr_type t_registry_key = OBJ("RegistryKey", registry_key_fields);
static const orr_field registry_value_fields[] = {{"Key", &t_registry_key, 0},
                                                  {"Name", &t_string, 0},
                                                  {"Type", &t_registry_type, 0},
                                                  {"StringValue", &t_string, 0},
                                                  {"BinaryValue", &t_string, 0},
                                                  {"DWordValue", &t_i32, 0},
                                                  {"QWordValue", &t_i32, 0},
                                                  {"CustomType", &t_i32, 0},
                                                  END};
static const orr_type t_registry_value =
    OBJ("RegistryValue", registry_value_fields);
static const orr_type t_registry_values =
    ARR("[]RegistryValue", &t_registry_value, 0);
static const orr_type t_registry_keys =
    ARR("[]RegistryKey", &t_registry_key, 0);
static const orr_field registry_changes_fields[] = {
    {"AddValues", &t_registry_values, 0},
    {"DeleteKeys", &t_registry_keys, 0},
    END};
static const orr_type t_registry_changes =
    OBJ("RegistryChanges", registry_changes_fields);

static const orr_field debug_options_fields[] = {
    {"BugcheckSavedStateFileName", &t_string, 0},
    {"BugcheckNoCrashdumpSavedStateFileName", &t_string, 0},
    {"TripleFaultSavedStateFileName", &t_string, 0},
    {"FirmwareDumpFileName", &t_string, 0},
    END};
static const orr_type t_debug_options =
    OBJ("DebugOptions", debug_options_fields);

static const orr_field guest_connection_fields[] = {
    {"UseVsock", &t_bool, 0}, {"UseConnectedSuspend", &t_bool, 0}, END};
static const orr_type t_guest_connection =
    OBJ("GuestConnection", guest_connection_fields);

static const orr_field isolation_fields[] = {
    {"IsolationType", &t_string, 0}, {"DebugHost", &t_string, 0},
    {"DebugPort", &t_i64, 0},        {"LaunchData", &t_string, 0},
    {"HclEnabled", &t_bool, PTR},    END};
static const orr_type t_isolation = OBJ("IsolationSettings", isolation_fields);
static const orr_field security_fields[] = {
    {"EnableTpm", &t_bool, 0}, {"Isolation", &t_isolation, 0}, END};
static const orr_type t_security = OBJ("SecuritySettings", security_fields);

/* ---- MigrationOptions (hcsshim's MigrationInitializeOptions) ---- */
static const char *const origin_values[] = {"Source", "Destination", NULL};
static const orr_type t_origin = ENUM("MigrationOrigin", origin_values);
static const char *const transport_values[] = {"TCP", NULL};
static const orr_type t_transport =
    ENUM("MigrationMemoryTransport", transport_values);
static const orr_type t_percent = INT("uint8", 0, 100);
static const orr_field throttle_fields[] = {
    {"SkipThrottling", &t_bool, PTR},
    {"ThrottlingScale", &t_number, PTR},
    {"MinimumThrottlePercentage", &t_percent, PTR},
    {"TargetNumberOfBrownoutTransferPasses", &t_u32, PTR},
    {"StartingBrownoutPassNumberForThrottling", &t_u32, PTR},
    {"MaximumNumberOfBrownoutTransferPasses", &t_u32, PTR},
    {"TargetBlackoutTransferTime", &t_u32, PTR},
    {"BlackoutTimeThresholdForCancellingMigration", &t_u32, PTR},
    END};
static const orr_type t_throttle =
    OBJ("MemoryMigrationTransferThrottleParams", throttle_fields);
static const orr_field compression_fields[] = {
    {"ThrottleWorkerCount", &t_u32, PTR}, END};
static const orr_type t_compression =
    OBJ("MigrationCompressionSettings", compression_fields);
static const orr_field compatibility_fields[] = {{"Data", &t_bytes, 0}, END};
static const orr_type t_compatibility =
    OBJ("CompatibilityInfo", compatibility_fields);
static const orr_field migration_fields[] = {
    {"Origin", &t_origin, 0},
    {"MemoryTransport", &t_transport, 0},
    {"MemoryTransferThrottleParams", &t_throttle, 0},
    {"CompressionSettings", &t_compression, 0},
    {"ChecksumVerification", &t_bool, 0},
    {"PerfTracingEnabled", &t_bool, 0},
    {"CancelIfBlackoutThresholdExceeds", &t_bool, 0},
    {"PrepareMemoryTransferMode", &t_bool, 0},
    {"CompatibilityData", &t_compatibility, 0},
    END};
static const orr_type t_migration =
    OBJ("MigrationInitializeOptions", migration_fields);

static const orr_field vm_fields[] = {
    {"Version", &t_version, 0},
    {"StopOnReset", &t_bool, 0},
    {"Chipset", &t_chipset, 0},
    {"ComputeTopology", &t_topology, 0},
    {"Devices", &t_devices, 0},
    {"GuestState", &t_guest_state, 0},
    {"RestoreState", &t_restore_state, 0},
    {"RegistryChanges", &t_registry_changes, 0},
    {"StorageQoS", &orr__t_storage_qos, 0},
    {"DebugOptions", &t_debug_options, 0},
    {"GuestConnection", &t_guest_connection, 0},
    {"SecuritySettings", &t_security, 0},
    {"ResourcePartitionId", &t_guid, 0},
    {"MigrationOptions", &t_migration, 0},
    END};
static const orr_type t_vm = OBJ("VirtualMachine", vm_fields);

/*
** A hosted system or a container is not a virtual machine: Orrery runs
** virtual machines only.
** ShouldTerminateOnLastHandleClosed is the one field Orrery keeps as if Go
** held it by pointer: a missing one means true here (no VM outlives its
** engine by accident), so false must stay in the document and its JSON to
** survive a round trip. hcsshim writes nothing for false, which HCS takes
** as false too: the same meaning, one more field in the text.
*/
static const orr_field compute_system_fields[] = {
    {"Owner", &t_string, 0},
    {"SchemaVersion", &t_version, 0},
    {"HostingSystemId", &t_string, 0},
    {"HostedSystem", &t_unsupported, 0},
    {"Container", &t_unsupported, 0},
    {"VirtualMachine", &t_vm, REQ},
    {"ShouldTerminateOnLastHandleClosed", &t_bool, PTR},
    END};
const orr_type orr__t_compute_system =
    OBJ("ComputeSystem", compute_system_fields);

static const char *const request_types[] = {"Add", "Remove", "PreAdd", "Update",
                                            NULL};
static const orr_type t_request_type = ENUM("RequestType", request_types);

/* ---- GuestRequest (hcsshim's guestrequest.ModificationRequest) ---- */
/* The resource types of hcsshim's guestresource package. */
static const char *const guest_resource_types[] = {
    "MappedDirectory",
    "SCSIDevice",
    "MappedVirtualDisk",
    "MappedVirtualDiskForContainerScratch",
    "WCOWBlockCims",
    "Network",
    "NetworkNamespace",
    "CombinedLayers",
    "CWCOWCombinedLayers",
    "VPMemDevice",
    "VPCIDevice",
    "ContainerConstraints",
    "HvSocket",
    "SecurityPolicy",
    "SecurityPolicyFragment",
    "PodCgroupMemoryLimit",
    NULL};
static const orr_type t_guest_resource_type =
    ENUM("ResourceType", guest_resource_types);
static const orr_field guest_request_fields[] = {
    {"RequestType", &t_request_type, REQ},
    {"ResourceType", &t_guest_resource_type, REQ},
    {"Settings", &t_any, 0},
    END};
static const orr_type t_guest_request =
    OBJ("ModificationRequest", guest_request_fields);

/* The Settings of the guest requests hcsshim sends with Plan9, SCSI, VPMem,
** VPCI and network changes of a Linux guest (guestresource.LCOW...). */
static const orr_field lcow_mapped_directory_fields[] = {
    {"MountPath", &t_path, 0},
    {"Port", &t_i32, 0},
    {"ShareName", &t_string, 0},
    {"ReadOnly", &t_bool, 0},
    END};
static const orr_type t_lcow_mapped_directory =
    OBJ("LCOWMappedDirectory", lcow_mapped_directory_fields);
static const orr_field verity_fields[] = {
    {"Ext4SizeInBytes", &t_i64, 0}, {"Version", &t_i32, 0},
    {"Algorithm", &t_string, 0},    {"SuperBlock", &t_bool, 0},
    {"RootDigest", &t_string, 0},   {"Salt", &t_string, 0},
    {"BlockSize", &t_i32, 0},       END};
static const orr_type t_verity = OBJ("DeviceVerityInfo", verity_fields);
static const orr_field lcow_mapped_disk_fields[] = {
    {"MountPath", &t_path, 0},      {"Lun", &t_u8, 0},
    {"Controller", &t_u8, 0},       {"Partition", &t_u64, 0},
    {"ReadOnly", &t_bool, 0},       {"Encrypted", &t_bool, 0},
    {"Options", &t_string_list, 0}, {"BlockDev", &t_bool, 0},
    {"VerityInfo", &t_verity, 0},   {"EnsureFilesystem", &t_bool, 0},
    {"Filesystem", &t_string, 0},   END};
static const orr_type t_lcow_mapped_disk =
    OBJ("LCOWMappedVirtualDisk", lcow_mapped_disk_fields);
static const orr_field vpmem_mapping_info_fields[] = {
    {"DeviceOffsetInBytes", &t_u64, 0}, {"DeviceSizeInBytes", &t_u64, 0}, END};
static const orr_type t_vpmem_mapping_info =
    OBJ("LCOWVPMemMappingInfo", vpmem_mapping_info_fields);
static const orr_field lcow_vpmem_fields[] = {
    {"DeviceNumber", &t_u32, 0},
    {"MountPath", &t_path, 0},
    {"MappingInfo", &t_vpmem_mapping_info, 0},
    {"VerityInfo", &t_verity, 0},
    END};
static const orr_type t_lcow_vpmem =
    OBJ("LCOWMappedVPMemDevice", lcow_vpmem_fields);
static const orr_field lcow_vpci_fields[] = {{"VMBusGUID", &t_guid, 0}, END};
static const orr_type t_lcow_vpci =
    OBJ("LCOWMappedVPCIDevice", lcow_vpci_fields);
static const orr_field ip_config_fields[] = {
    {"IPAddress", &t_string, 0}, {"PrefixLength", &t_u8, 0}, END};
static const orr_type t_ip_config = OBJ("LCOWIPConfig", ip_config_fields);
static const orr_type t_ip_configs = ARR("[]LCOWIPConfig", &t_ip_config, 0);
static const orr_field route_fields[] = {{"NextHop", &t_string, 0},
                                         {"DestinationPrefix", &t_string, 0},
                                         {"Metric", &t_u16, 0},
                                         END};
static const orr_type t_route = OBJ("LCOWRoute", route_fields);
static const orr_type t_routes = ARR("[]LCOWRoute", &t_route, 0);
static const orr_field lcow_network_fields[] = {
    {"NamespaceID", &t_string, 0},   {"ID", &t_string, 0},
    {"MacAddress", &t_string, 0},    {"DNSSuffix", &t_string, 0},
    {"DNSServerList", &t_string, 0}, {"EncapOverhead", &t_u16, 0},
    {"VPCIAssigned", &t_bool, 0},    {"IPConfigs", &t_ip_configs, 0},
    {"Routes", &t_routes, 0},        {"PolicyBasedRouting", &t_bool, 0},
    {"EnableLowMetric", &t_bool, 0}, END};
static const orr_type t_lcow_network =
    OBJ("LCOWNetworkAdapter", lcow_network_fields);

static const struct {
  const char *resource_type;
  const orr_type *type;
} guest_settings[] = {{"MappedDirectory", &t_lcow_mapped_directory},
                      {"MappedVirtualDisk", &t_lcow_mapped_disk},
                      {"VPMemDevice", &t_lcow_vpmem},
                      {"VPCIDevice", &t_lcow_vpci},
                      {"Network", &t_lcow_network}};

const orr_type *orr__guest_settings_type(const char *resource_type) {
  for (size_t i = 0; i < sizeof guest_settings / sizeof *guest_settings; i++)
    if (resource_type &&
        strcmp(guest_settings[i].resource_type, resource_type) == 0)
      return guest_settings[i].type;
  return NULL;
}

/* ResourcePath is optional: a guest-only request carries just the
** GuestRequest (hcsshim's guest manager sends those). */
static const orr_field modify_fields[] = {{"ResourcePath", &t_string, 0},
                                          {"RequestType", &t_request_type, 0},
                                          {"Settings", &t_any, 0},
                                          {"GuestRequest", &t_guest_request, 0},
                                          END};
const orr_type orr__t_modify_request =
    OBJ("ModifySettingRequest", modify_fields);

const orr_type *orr__schema_root(size_t i, const char **name) {
  static const struct {
    const char *name;
    const orr_type *type;
  } roots[] = {{"ComputeSystem", &orr__t_compute_system},
               {"ModifySettingRequest", &orr__t_modify_request},
               {"ProcessorLimits", &orr__t_processor_limits},
               {"Plan9ShareRemove", &orr__t_plan9_share_ref}};
  size_t n = sizeof roots / sizeof *roots;
  if (i < n) {
    *name = roots[i].name;
    return roots[i].type;
  }
  i -= n;
  if (i < sizeof guest_settings / sizeof *guest_settings) {
    *name = guest_settings[i].resource_type;
    return guest_settings[i].type;
  }
  return NULL;
}

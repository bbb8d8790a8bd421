/*
** The HCS schema 2.1 document types (hcsshim's hcsschema package), field by
** field, in the order Go marshals them. Ranges are the ones HCS or QEMU
** enforce; where HCS allows more than any backend can run, the smaller
** limit is used and named in the rule text.
*/
#include <string.h>

#include "orrery/document.h"
#include "schema.h"

#define STR(n)                                                                 \
  { ORR_K_STRING, n, 0, 0, NULL, NULL, NULL, NULL, NULL, 0 }
#define STR_CHECK(n, fn)                                                       \
  { ORR_K_STRING, n, 0, 0, NULL, fn, NULL, NULL, NULL, 0 }
#define ENUM(n, vals)                                                          \
  { ORR_K_STRING, n, 0, 0, vals, NULL, NULL, NULL, NULL, 0 }
#define INT(n, lo, hi)                                                         \
  { ORR_K_INT, n, lo, hi, NULL, NULL, NULL, NULL, NULL, 0 }
#define OBJ(n, flds)                                                           \
  { ORR_K_OBJECT, n, 0, 0, NULL, NULL, flds, NULL, NULL, 0 }
#define MAP(n, el, keyfn, maxn)                                                \
  { ORR_K_MAP, n, 0, 0, NULL, NULL, NULL, el, keyfn, maxn }
#define ARR(n, el, maxn)                                                       \
  { ORR_K_ARRAY, n, 0, 0, NULL, NULL, NULL, el, NULL, maxn }
#define UNSUP(n)                                                               \
  { ORR_K_UNSUPPORTED, n, 0, 0, NULL, NULL, NULL, NULL, NULL, 0 }
#define END                                                                    \
  { NULL, NULL, 0 }

static const orr_type t_bool = {ORR_K_BOOL, "bool", 0,    0,    NULL,
                                NULL,       NULL,   NULL, NULL, 0};
static const orr_type t_any = {ORR_K_ANY, "any", 0,    0,    NULL,
                               NULL,      NULL,  NULL, NULL, 0};
static const orr_type t_string = STR("string");
static const orr_type t_path = STR_CHECK("path", orr__check_abs_path);
static const orr_type t_guid = STR_CHECK("GUID", orr__check_guid);
static const orr_type t_u16 = INT("uint16", 0, 65535);
static const orr_type t_u32 = INT("uint32", 0, 4294967295LL);
static const orr_type t_u64 = INT("uint64", 0, INT64_MAX);
static const orr_type t_i32pos = INT("int32", 0, 2147483647LL);
static const orr_type t_unsupported = UNSUP("unsupported");

/* ---- SchemaVersion, Version ---- */
static const orr_field version_fields[] = {
    {"Major", &t_u32, 1}, {"Minor", &t_u32, 1}, END};
static const orr_type t_version = OBJ("Version", version_fields);

/* ---- Chipset ---- */
static const char *const boot_device_types[] = {"ScsiDrive", "VmbFs", "Network",
                                                "File", NULL};
static const orr_type t_boot_device_type =
    ENUM("UefiBootDevice", boot_device_types);
static const orr_field uefi_boot_entry_fields[] = {
    {"DeviceType", &t_boot_device_type, 1},
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
    {"KernelFilePath", &t_path, 1},
    {"InitRdPath", &t_path, 0},
    {"KernelCmdLine", &t_string, 0},
    END};
const orr_type orr__t_linux_kernel_direct =
    OBJ("LinuxKernelDirect", linux_kernel_direct_fields);

static const orr_field chipset_fields[] = {
    {"Uefi", &t_uefi, 0},
    {"IsNumLockDisabled", &t_bool, 0},
    {"BaseBoardSerialNumber", &t_string, 0},
    {"ChassisSerialNumber", &t_string, 0},
    {"ChassisAssetTag", &t_string, 0},
    {"UseUtc", &t_bool, 0},
    {"LinuxKernelDirect", &orr__t_linux_kernel_direct, 0},
    {"FirmwareFile", &t_unsupported, 0},
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
static const orr_field memory_fields[] = {{"SizeInMB", &t_size_mb, 0},
                                          {"Backing", &t_backing, 0},
                                          {"AllowOvercommit", &t_bool, 0},
                                          {"EnableHotHint", &t_bool, 0},
                                          {"EnableColdHint", &t_bool, 0},
                                          {"EnableColdDiscardHint", &t_bool, 0},
                                          {"EnableDeferredCommit", &t_bool, 0},
                                          {"LowMmioGapInMB", &t_u64, 0},
                                          {"HighMmioBaseInMB", &t_u64, 0},
                                          {"HighMmioGapInMB", &t_u64, 0},
                                          {"SlitType", &t_slit, 0},
                                          END};
const orr_type orr__t_memory = OBJ("VirtualMachineMemory", memory_fields);

static const orr_field cpu_group_fields[] = {{"Id", &t_guid, 1}, END};
const orr_type orr__t_cpu_group = OBJ("CpuGroup", cpu_group_fields);

static const orr_type t_count_max = INT("uint32", 1, 288);
static const orr_field count_per_node_fields[] = {{"max", &t_count_max, 0},
                                                  END};
static const orr_type t_count_per_node =
    OBJ("CountPerNode", count_per_node_fields);
static const orr_field numa_processors_fields[] = {
    {"count_per_node", &t_count_per_node, 0},
    {"node_per_socket", &t_u32, 0},
    END};
const orr_type orr__t_numa_processors =
    OBJ("NumaProcessors", numa_processors_fields);

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

static const orr_type t_numa_node_number = INT("uint8", 0, 63);
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
static const orr_type t_u32_list = ARR("[]uint32", &t_u32, 64);
static const orr_field numa_fields[] = {
    {"VirtualNodeCount", &t_numa_node_count, 1},
    {"PreferredPhysicalNodes", &t_u32_list, 0},
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
static const orr_field com_port_fields[] = {
    {"NamedPipe", &t_socket_path, 1}, {"OptimizeForDebugger", &t_bool, 0}, END};
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
    {"Type", &t_attachment_type, 1},
    {"Path", &t_path, 1},
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
static const char *scsi_key_check(const char *s, size_t len);
static const orr_type t_scsi_map =
    MAP("map[string]Scsi", &t_scsi, scsi_key_check, 4);

static const char *const pmem_formats[] = {"Vhdx", "Vhd1", NULL};
static const orr_type t_pmem_format =
    ENUM("VirtualPMemImageFormat", pmem_formats);
static const orr_field vpmem_device_fields[] = {
    {"HostPath", &t_path, 1},
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
    ENUM("InterruptModerationValue", moderation_values);
static const orr_field iov_fields[] = {
    {"OffloadWeight", &t_u32, 0},
    {"QueuePairsRequested", &t_u32, 0},
    {"InterruptModeration", &t_moderation, 0},
    END};
static const orr_type t_iov = OBJ("IovSettings", iov_fields);
static const orr_type t_endpoint = STR("EndpointId");
static const orr_field nic_fields[] = {{"EndpointId", &t_endpoint, 1},
                                       {"MacAddress", &t_mac, 0},
                                       {"IovSettings", &t_iov, 0},
                                       END};
const orr_type orr__t_network_adapter = OBJ("NetworkAdapter", nic_fields);
static const orr_type t_nics = MAP("map[string]NetworkAdapter",
                                   &orr__t_network_adapter, orr__check_guid, 0);

static const orr_field connection_fields[] = {
    {"AccessName", &t_string, 0}, {"NamedPipe", &t_string, 0}, END};
static const orr_type t_connection =
    OBJ("VideoConnectionOptions", connection_fields);
static const orr_field video_fields[] = {
    {"HorizontalResolution", &t_u16, 0},
    {"VerticalResolution", &t_u16, 0},
    {"ConnectionOptions", &t_connection, 0},
    END};
static const orr_type t_video = OBJ("VideoMonitor", video_fields);
static const orr_field enhanced_video_fields[] = {
    {"ConnectionOptions", &t_connection, 0}, END};
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

static const orr_type t_string_list = ARR("[]string", &t_string, 0);
static const orr_field vsmb_options_fields[] = {
    {"ReadOnly", &t_bool, 0},
    {"ShareRead", &t_bool, 0},
    {"CacheIo", &t_bool, 0},
    {"NoOplocks", &t_bool, 0},
    {"TakeBackupPrivilege", &t_bool, 0},
    {"UseShareRootIdentity", &t_bool, 0},
    {"NoDirectmap", &t_bool, 0},
    {"NoLocks", &t_bool, 0},
    {"PseudoOplocks", &t_bool, 0},
    {"PseudoDirnotify", &t_bool, 0},
    {"SingleFileMapping", &t_bool, 0},
    {"RestrictFileAccess", &t_bool, 0},
    {"ForceLevelIIOplocks", &t_bool, 0},
    {"ReparseBaseLayer", &t_bool, 0},
    {"SupportCloudFiles", &t_bool, 0},
    END};
static const orr_type t_vsmb_options =
    OBJ("VirtualSmbShareOptions", vsmb_options_fields);
static const orr_field vsmb_share_fields[] = {
    {"Name", &t_string, 1},
    {"Path", &t_path, 1},
    {"AllowedFiles", &t_string_list, 0},
    {"Options", &t_vsmb_options, 0},
    END};
const orr_type orr__t_vsmb_share = OBJ("VirtualSmbShare", vsmb_share_fields);
static const orr_type t_vsmb_shares =
    ARR("[]VirtualSmbShare", &orr__t_vsmb_share, 0);
static const orr_field vsmb_fields[] = {
    {"Shares", &t_vsmb_shares, 0}, {"DirectFileMappingInMB", &t_u64, 0}, END};
const orr_type orr__t_vsmb = OBJ("VirtualSmb", vsmb_fields);

static const orr_field plan9_share_fields[] = {
    {"Name", &t_string, 1},
    {"AccessName", &t_string, 0},
    {"Path", &t_path, 1},
    {"Port", &t_u16, 0},
    {"Flags", &t_u32, 0},
    {"ReadOnly", &t_bool, 0},
    {"UseShareRootIdentity", &t_bool, 0},
    {"AllowedFiles", &t_string_list, 0},
    END};
const orr_type orr__t_plan9_share = OBJ("Plan9Share", plan9_share_fields);
/* A share named for removal: hcsshim sends {Name, AccessName, Port}, no
** Path. */
static const orr_field plan9_share_ref_fields[] = {
    {"Name", &t_string, 1},
    {"AccessName", &t_string, 0},
    {"Path", &t_path, 0},
    {"Port", &t_u16, 0},
    {"Flags", &t_u32, 0},
    {"ReadOnly", &t_bool, 0},
    {"UseShareRootIdentity", &t_bool, 0},
    {"AllowedFiles", &t_string_list, 0},
    END};
const orr_type orr__t_plan9_share_ref =
    OBJ("Plan9Share", plan9_share_ref_fields);
static const orr_type t_plan9_shares =
    ARR("[]Plan9Share", &orr__t_plan9_share, 0);
static const orr_field plan9_fields[] = {{"Shares", &t_plan9_shares, 0}, END};
static const orr_type t_plan9 = OBJ("Plan9", plan9_fields);

static const orr_type t_vfn = INT("uint16", 0, 65535);
static const orr_field vpci_function_fields[] = {
    {"DeviceInstancePath", &t_string, 1}, {"VirtualFunction", &t_vfn, 0}, END};
static const orr_type t_vpci_function =
    OBJ("VirtualPciFunction", vpci_function_fields);
/* One root port holds one device of up to eight functions. */
static const orr_type t_vpci_functions = {
    ORR_K_ARRAY, "[]VirtualPciFunction", 1,    0, NULL, NULL,
    NULL,        &t_vpci_function,       NULL, 8};
static const orr_field vpci_device_fields[] = {
    {"Functions", &t_vpci_functions, 1},
    {"PropagateNumaAffinity", &t_bool, 0},
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
    {"GuestCrashReporting", &t_unsupported, 0},
    {"VirtualSmb", &orr__t_vsmb, 0},
    {"Plan9", &t_plan9, 0},
    {"Battery", &t_battery, 0},
    {"FlexibleIov", &t_unsupported, 0},
    {"SharedMemory", &t_unsupported, 0},
    {"VirtualPci", &t_vpci_map, 0},
    END};
static const orr_type t_devices = OBJ("Devices", devices_fields);

static const orr_field storage_qos_fields[] = {
    {"IopsMaximum", &t_i32pos, 0}, {"BandwidthMaximum", &t_i32pos, 0}, END};
const orr_type orr__t_storage_qos = OBJ("StorageQoS", storage_qos_fields);

static const char *const guest_state_types[] = {"Default", "FileMode",
                                                "MemoryMode", NULL};
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
static const orr_field guest_connection_fields[] = {
    {"UseVsock", &t_bool, 0},
    {"UseConnectedSuspend", &t_bool, 0},
    {"UseHostTimeZone", &t_bool, 0},
    END};
static const orr_type t_guest_connection =
    OBJ("GuestConnection", guest_connection_fields);

static const orr_field vm_fields[] = {
    {"Version", &t_version, 0},
    {"StopOnReset", &t_bool, 0},
    {"Chipset", &t_chipset, 0},
    {"ComputeTopology", &t_topology, 0},
    {"Devices", &t_devices, 0},
    {"GuestState", &t_guest_state, 0},
    {"RestoreState", &t_restore_state, 0},
    {"RegistryChanges", &t_unsupported, 0},
    {"StorageQoS", &orr__t_storage_qos, 0},
    {"DebugOptions", &t_unsupported, 0},
    {"GuestConnection", &t_guest_connection, 0},
    {"SecuritySettings", &t_unsupported, 0},
    END};
static const orr_type t_vm = OBJ("VirtualMachine", vm_fields);

static const orr_field compute_system_fields[] = {
    {"Owner", &t_string, 0},
    {"SchemaVersion", &t_version, 0},
    {"HostingSystemId", &t_string, 0},
    {"HostedSystem", &t_unsupported, 0},
    {"Container", &t_unsupported, 0},
    {"VirtualMachine", &t_vm, 1},
    {"ShouldTerminateOnLastHandleClosed", &t_bool, 0},
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
    {"RequestType", &t_request_type, 1},
    {"ResourceType", &t_guest_resource_type, 1},
    {"Settings", &t_any, 0},
    END};
static const orr_type t_guest_request =
    OBJ("ModificationRequest", guest_request_fields);

/* The Settings of the guest requests hcsshim sends with Plan9, SCSI, VPMem,
** VPCI and network changes of a Linux guest (guestresource.LCOW...). */
static const orr_type t_u8 = INT("uint8", 0, 255);
static const orr_type t_i32 = INT("int32", 0, 2147483647LL);
static const orr_field lcow_mapped_directory_fields[] = {
    {"MountPath", &t_path, 0},
    {"Port", &t_i32, 0},
    {"ShareName", &t_string, 0},
    {"ReadOnly", &t_bool, 0},
    END};
static const orr_type t_lcow_mapped_directory =
    OBJ("LCOWMappedDirectory", lcow_mapped_directory_fields);
static const orr_field verity_fields[] = {
    {"Ext4SizeInBytes", &t_u64, 0}, {"Version", &t_i32, 0},
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

const orr_type *orr__guest_settings_type(const char *resource_type) {
  static const struct {
    const char *name;
    const orr_type *type;
  } known[] = {{"MappedDirectory", &t_lcow_mapped_directory},
               {"MappedVirtualDisk", &t_lcow_mapped_disk},
               {"VPMemDevice", &t_lcow_vpmem},
               {"VPCIDevice", &t_lcow_vpci},
               {"Network", &t_lcow_network}};
  for (size_t i = 0; i < sizeof known / sizeof *known; i++)
    if (resource_type && strcmp(known[i].name, resource_type) == 0)
      return known[i].type;
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

/* The four controller GUIDs HCS fixes (hcsshim guestrequest). */
static const char *scsi_key_check(const char *s, size_t len) {
  for (int i = 0; i < ORR_SCSI_CONTROLLERS; i++)
    if (len == 36 && memcmp(s, orr_scsi_controller_guid(i), 36) == 0)
      return NULL;
  return "must be one of the four HCS SCSI controller GUIDs "
         "(df6d0690-79e5-55b6-a5ec-c1e2f77f580a for controller 0, ...)";
}

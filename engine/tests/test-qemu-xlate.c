/*
** The qemu backend's translation layer by value: the argv and layout a
** document becomes, the refusals, and the run-time plans (their steps and
** undos). Pure: nothing is started. test-qemu-real.c starts what this
** checks in a real QEMU.
*/
#include "qemu_xlate_util.h"

/* ---------------------------------------------------------------------- */
/* Documents                                                              */
/* ---------------------------------------------------------------------- */

static const char *minimal_doc =
    "{\"Owner\":\"t\",\"SchemaVersion\":{\"Major\":2,\"Minor\":1},"
    "\"VirtualMachine\":{\"StopOnReset\":true,\"Chipset\":{},"
    "\"ComputeTopology\":{\"Memory\":{\"SizeInMB\":256},\"Processor\":{}},"
    "\"Devices\":{\"HvSocket\":{\"HvSocketConfig\":{"
    "\"DefaultBindSecurityDescriptor\":\"D:P(A;;FA;;;SY)(A;;FA;;;BA)\"}}}},"
    "\"ShouldTerminateOnLastHandleClosed\":true}";

/* hcs-schema.md §c.4 with Linux paths, a real host PCI address, a 9p share
** and a NIC added. */
static const char *full_doc =
    "{\"Owner\":\"containerd-shim-runhcs-v1.exe\","
    "\"SchemaVersion\":{\"Major\":2,\"Minor\":1},"
    "\"VirtualMachine\":{\"StopOnReset\":true,"
    " \"Chipset\":{\"LinuxKernelDirect\":{"
    "  \"KernelFilePath\":\"/srv/boot/vmlinux\","
    "  \"InitRdPath\":\"/srv/boot/initrd.img\","
    "  \"KernelCmdLine\":\"8250_core.nr_uarts=1 console=ttyS0,115200 -- -e 1 "
    "/bin/gcs\"}},"
    " \"ComputeTopology\":{"
    "  \"Memory\":{\"SizeInMB\":4096,\"Backing\":\"Physical\","
    "   \"LowMmioGapInMB\":256,\"HighMmioBaseInMB\":65536,"
    "   \"HighMmioGapInMB\":131072,\"SlitType\":\"FirmwareFallbackMeasured\"},"
    "  \"Processor\":{\"Count\":4,\"Limit\":100000,\"Weight\":100,"
    "   \"NumaProcessorsSettings\":{\"count_per_node\":{\"max\":2},"
    "   \"node_per_socket\":1}},"
    "  \"Numa\":{\"VirtualNodeCount\":2,\"Settings\":["
    "   {\"CountOfProcessors\":2,\"CountOfMemoryBlocks\":2048,"
    "    \"MemoryBackingType\":\"Physical\"},"
    "   {\"VirtualNodeNumber\":1,\"PhysicalNodeNumber\":1,"
    "    \"VirtualSocketNumber\":1,\"CountOfProcessors\":2,"
    "    \"CountOfMemoryBlocks\":2048,\"MemoryBackingType\":\"Physical\"}]}},"
    " \"Devices\":{"
    "  \"ComPorts\":{\"0\":{\"NamedPipe\":\"/run/orrery/uvm/com1.sock\"}},"
    "  \"Scsi\":{"
    "   \"" CTRL1 "\":{\"Attachments\":{\"0\":{\"Type\":\"VirtualDisk\","
    "    \"Path\":\"/srv/state/sandbox.vhdx\"}}},"
    "   \"" CTRL0 "\":{\"Attachments\":{\"0\":{\"Type\":\"VirtualDisk\","
    "    \"Path\":\"/srv/boot/rootfs.vhd\",\"ReadOnly\":true}}}},"
    "  \"HvSocket\":{\"HvSocketConfig\":{"
    "   \"DefaultBindSecurityDescriptor\":\"D:P(A;;FA;;;SY)(A;;FA;;;BA)\"}},"
    "  \"Plan9\":{\"Shares\":[{\"Name\":\"src\",\"AccessName\":\"srctag\","
    "   \"Path\":\"/srv/share\",\"Port\":564,\"ReadOnly\":true}]},"
    "  \"NetworkAdapters\":{\"" NIC_GUID "\":{\"EndpointId\":\"user\","
    "   \"MacAddress\":\"00-15-5D-52-C0-0A\"}},"
    "  \"VirtualPci\":{\"" VPCI_GUID "\":{"
    "   \"Functions\":[{\"DeviceInstancePath\":\"0000:65:00.0\"}],"
    "   \"PropagateNumaAffinity\":true}}},"
    " \"StorageQoS\":{\"IopsMaximum\":5000,\"BandwidthMaximum\":100000000}},"
    "\"ShouldTerminateOnLastHandleClosed\":true}";

/* A document around a Devices object (and optional extra VM members). */
static const char *with_devices(const char *devices, const char *vm_extra) {
  return F("{\"VirtualMachine\":{\"ComputeTopology\":{\"Memory\":"
           "{\"SizeInMB\":256}},\"Devices\":%s%s%s}}",
           devices, vm_extra ? "," : "", vm_extra ? vm_extra : "");
}

/* ---------------------------------------------------------------------- */
/* Argv by value                                                          */
/* ---------------------------------------------------------------------- */

static void test_minimal(void) {
  orr_qemu_config cfg = cfg_default();
  json_t *layout, *argv = build(minimal_doc, &cfg, &layout);
  json_t *ports = json_object_get(layout, "ports");
  json_t *v;
  char qmp[256];

  ASSERT_STR_EQ(arg(argv, 0), "qemu-system-x86_64");
  ASSERT(find_opt(argv, "-M", "q35") > 0);
  ASSERT(find_opt(argv, "-accel", "tcg") > 0);
  ASSERT(find_opt(argv, "-cpu", "max") > 0);
  ASSERT(find_opt(argv, "-m", "256M") > 0);
  ASSERT(find_opt(argv, "-smp", "1") > 0);
  ASSERT(find_opt(argv, "-display", "none") > 0);
  ASSERT(find_opt(argv, "-action", "reboot=shutdown") > 0);
  ASSERT(in_list(argv, "-S") && in_list(argv, "-nodefaults") &&
         in_list(argv, "-no-user-config"));
  ASSERT_NULL(opt_with(argv, "-vnc", ""));
  snprintf(qmp, sizeof qmp,
           "socket,id=qmp,path=%s/qmp.sock,server=on,"
           "wait=off",
           run_dir);
  ASSERT(find_opt(argv, "-chardev", qmp) > 0);
  ASSERT(find_opt(argv, "-mon", "chardev=qmp,mode=control") > 0);
  ASSERT(find_opt(argv, "-pidfile", F("%s/qemu.pid", run_dir)) > 0);
  /* COM1 always exists: QEMU listens in the runtime directory and copies
  ** what the guest prints to the engine's FIFO (console capture). */
  ASSERT(find_opt(argv, "-chardev",
                  F("socket,id=com0,path=%s/com0.sock,server=on,wait=off,"
                    "logfile=%s/com0.out,logappend=on",
                    run_dir, run_dir)) > 0);
  ASSERT_STR_EQ(sget(json_opt(argv, "-device", "id", "serial0"), "chardev"),
                "com0");
  /* balloon + 16 free ports */
  ASSERT_EQ(json_array_size(ports), 17);
  ASSERT_STR_EQ(sget(json_array_get(ports, 0), "id"), "rp0");
  ASSERT_STR_EQ(sget(json_array_get(ports, 0), "device"), "balloon0");
  ASSERT(json_is_null(json_object_get(json_array_get(ports, 16), "device")));
  ASSERT_STR_EQ(sget(json_opt(argv, "-device", "id", "balloon0"), "bus"),
                "rp0");
  v = json_opt(argv, "-device", "id", "rp0");
  ASSERT_STR_EQ(sget(v, "driver"), "pcie-root-port");
  ASSERT_STR_EQ(sget(v, "bus"), "pcie.0");
  ASSERT_EQ(iget(v, "chassis"), 1);
  ASSERT_STR_EQ(sget(v, "addr"), "0x2.0x0");
  ASSERT(json_is_true(json_object_get(v, "multifunction")));
  ASSERT_EQ(iget(v, "io-reserve"), 0);
  v = json_opt(argv, "-device", "id", "rp9");
  ASSERT_EQ(iget(v, "chassis"), 10);
  ASSERT_STR_EQ(sget(v, "addr"), "0x3.0x1");
  ASSERT(json_is_false(json_object_get(v, "multifunction")));
  /* every -device is JSON (QEMU creates key=value ones first); the root
  ** ports come before the devices that sit in them */
  for (size_t i = 0; i + 1 < json_array_size(argv); i++)
    if (strcmp(arg(argv, i), "-device") == 0)
      ASSERT_EQ(arg(argv, i + 1)[0], '{');
  ASSERT_LT(find_opt(argv, "-device", opt_with(argv, "-device", "\"rp16\"")),
            find_opt(argv, "-device", opt_with(argv, "-device", "balloon0")));
  ASSERT(json_is_false(json_object_get(layout, "throttle_group")));
  ASSERT(in_list(json_object_get(layout, "ignored"),
                 "VirtualMachine.Devices.HvSocket.HvSocketConfig."
                 "DefaultBindSecurityDescriptor"));
  ASSERT_STR_EQ(sget(layout, "qmp"), F("%s/qmp.sock", run_dir));
  ASSERT(json_is_null(json_object_get(layout, "qga")));
  ASSERT_EQ(json_array_size(json_object_get(layout, "files")), 0);
  json_decref(argv);
  json_decref(layout);

  /* kvm, no hot-plug ports, the agent */
  cfg.accel = "kvm";
  cfg.hotplug_ports = 0;
  cfg.guest_agent = true;
  argv = build(minimal_doc, &cfg, &layout);
  ASSERT(find_opt(argv, "-accel", "kvm") > 0);
  ASSERT(find_opt(argv, "-cpu", "host") > 0);
  ASSERT_EQ(json_array_size(json_object_get(layout, "ports")), 2);
  ASSERT_STR_EQ(sget(json_opt(argv, "-device", "id", "vser0"), "bus"), "rp0");
  ASSERT(find_opt(argv, "-chardev",
                  F("socket,id=qga,path=%s/qga.sock,server=on,wait=off",
                    run_dir)) > 0);
  v = json_opt(argv, "-device", "driver", "virtserialport");
  ASSERT_STR_EQ(sget(v, "bus"), "vser0.0");
  ASSERT_STR_EQ(sget(v, "chardev"), "qga");
  ASSERT_STR_EQ(sget(v, "name"), "org.qemu.guest_agent.0");
  ASSERT_STR_EQ(sget(layout, "qga"), F("%s/qga.sock", run_dir));
  json_decref(argv);
  json_decref(layout);
}

static void test_memory_required(void) {
  orr_qemu_config cfg = cfg_default();
  expect_err("{\"VirtualMachine\":{}}", &cfg, ORR_EINVAL,
             "VirtualMachine.ComputeTopology.Memory.SizeInMB");
  expect_err("{\"VirtualMachine\":{\"ComputeTopology\":{\"Memory\":{}}}}", &cfg,
             ORR_EINVAL, "VirtualMachine.ComputeTopology.Memory.SizeInMB");
  expect_err("{\"VirtualMachine\":{\"ComputeTopology\":{\"Memory\":"
             "{\"SizeInMB\":-5}}}}",
             &cfg, ORR_EINVAL,
             "VirtualMachine.ComputeTopology.Memory.SizeInMB must be an "
             "integer in 1..1048576, got -5");
}

static void test_full_example(void) {
  orr_qemu_config cfg = cfg_default();
  json_t *layout, *argv = build(full_doc, &cfg, &layout);
  json_t *ports = json_object_get(layout, "ports");
  json_t *ign = json_object_get(layout, "ignored");
  json_t *v, *tg;

  ASSERT(find_opt(argv, "-m", "4096M") > 0);
  ASSERT(find_opt(argv, "-smp", "4,sockets=2,cores=2,threads=1") > 0);
  ASSERT(find_opt(argv, "-object", "memory-backend-ram,id=m0,size=2048M") > 0);
  ASSERT(find_opt(argv, "-object", "memory-backend-ram,id=m1,size=2048M") > 0);
  ASSERT(find_opt(argv, "-numa", "node,nodeid=0,memdev=m0") > 0);
  ASSERT(find_opt(argv, "-numa", "node,nodeid=1,memdev=m1") > 0);
  ASSERT(find_opt(argv, "-numa", "cpu,node-id=0,socket-id=0") > 0);
  ASSERT(find_opt(argv, "-numa", "cpu,node-id=1,socket-id=1") > 0);

  tg = json_opt(argv, "-object", "id", "tg0");
  ASSERT_NOT_NULL(tg);
  ASSERT_STR_EQ(sget(tg, "qom-type"), "throttle-group");
  ASSERT_EQ(iget(json_object_get(tg, "limits"), "iops-total"), 5000);
  ASSERT_EQ(iget(json_object_get(tg, "limits"), "bps-total"), 100000000);
  ASSERT(json_is_true(json_object_get(layout, "throttle_group")));

  /* controllers in distinct root ports, in index order */
  ASSERT_STR_EQ(sget(json_array_get(ports, 0), "device"), "scsi0");
  ASSERT_STR_EQ(sget(json_array_get(ports, 1), "device"), "scsi1");
  ASSERT_STR_EQ(sget(json_opt(argv, "-device", "id", "scsi0"), "bus"), "rp0");
  ASSERT_STR_EQ(sget(json_opt(argv, "-device", "id", "scsi0"), "driver"),
                "virtio-scsi-pci");
  ASSERT_STR_EQ(sget(json_opt(argv, "-device", "id", "scsi1"), "bus"), "rp1");

  /* controller 1 (GUID 0110f83b...) LUN 0: a vhdx through the throttle */
  v = json_opt(argv, "-device", "id", "disk-1-0");
  ASSERT_STR_EQ(sget(v, "driver"), "scsi-hd");
  ASSERT_STR_EQ(sget(v, "bus"), "scsi1.0");
  ASSERT_STR_EQ(sget(v, "drive"), "qos-1-0");
  ASSERT_EQ(iget(v, "lun"), 0);
  ASSERT_EQ(iget(v, "scsi-id"), 0);
  ASSERT_EQ(iget(v, "channel"), 0);
  v = json_opt(argv, "-blockdev", "node-name", "qos-1-0");
  ASSERT_STR_EQ(sget(v, "driver"), "throttle");
  ASSERT_STR_EQ(sget(v, "throttle-group"), "tg0");
  ASSERT_STR_EQ(sget(v, "file"), "fmt-1-0");
  v = json_opt(argv, "-blockdev", "node-name", "fmt-1-0");
  ASSERT_STR_EQ(sget(v, "driver"), "vhdx");
  ASSERT_STR_EQ(sget(v, "file"), "file-1-0");
  ASSERT(json_is_false(json_object_get(v, "read-only")));
  v = json_opt(argv, "-blockdev", "node-name", "file-1-0");
  ASSERT_STR_EQ(sget(v, "driver"), "file");
  ASSERT_STR_EQ(sget(v, "filename"), "/srv/state/sandbox.vhdx");

  /* controller 0 LUN 0: read-only VHD, read-only on file AND format */
  v = json_opt(argv, "-blockdev", "node-name", "fmt-0-0");
  ASSERT_STR_EQ(sget(v, "driver"), "vpc");
  ASSERT(json_is_true(json_object_get(v, "read-only")));
  v = json_opt(argv, "-blockdev", "node-name", "file-0-0");
  ASSERT(json_is_true(json_object_get(v, "read-only")));
  ASSERT_STR_EQ(sget(json_opt(argv, "-device", "id", "disk-0-0"), "bus"),
                "scsi0.0");

  /* VPCI: vfio-pci host=, own port */
  v = json_opt(argv, "-device", "id", "vpci-" VPCI_GUID);
  ASSERT_STR_EQ(sget(v, "driver"), "vfio-pci");
  ASSERT_STR_EQ(sget(v, "host"), "0000:65:00.0");
  ASSERT_STR_EQ(sget(v, "bus"), "rp2");
  ASSERT_STR_EQ(sget(json_array_get(ports, 2), "device"), "vpci-" VPCI_GUID);

  /* NIC: MAC with colons, no ROM, user netdev */
  v = json_opt(argv, "-device", "id", "nic-" NIC_GUID);
  ASSERT_STR_EQ(sget(v, "driver"), "virtio-net-pci");
  ASSERT_STR_EQ(sget(v, "mac"), "00:15:5d:52:c0:0a");
  ASSERT_STR_EQ(sget(v, "romfile"), "");
  ASSERT_STR_EQ(sget(v, "netdev"), "net-" NIC_GUID);
  ASSERT_STR_EQ(sget(v, "bus"), "rp3");
  v = json_opt(argv, "-netdev", "id", "net-" NIC_GUID);
  ASSERT_STR_EQ(sget(v, "type"), "user");

  /* 9p */
  ASSERT(find_opt(argv, "-fsdev",
                  "local,id=fs0,path=/srv/share,security_model=none,"
                  "readonly=on") > 0);
  v = json_opt(argv, "-device", "id", "p9-0");
  ASSERT_STR_EQ(sget(v, "driver"), "virtio-9p-pci");
  ASSERT_STR_EQ(sget(v, "fsdev"), "fs0");
  ASSERT_STR_EQ(sget(v, "mount_tag"), "srctag");
  ASSERT_STR_EQ(sget(v, "bus"), "rp4");

  /* COM1 */
  ASSERT(find_opt(argv, "-chardev",
                  F("socket,id=com0,path=/run/orrery/uvm/com1.sock,server=on,"
                    "wait=off,logfile=%s/com0.out,logappend=on",
                    run_dir)) > 0);
  v = json_opt(argv, "-device", "id", "serial0");
  ASSERT_STR_EQ(sget(v, "driver"), "isa-serial");
  ASSERT_STR_EQ(sget(v, "chardev"), "com0");
  ASSERT_EQ(iget(v, "index"), 0);

  /* kernel direct, verbatim */
  ASSERT(find_opt(argv, "-kernel", "/srv/boot/vmlinux") > 0);
  ASSERT(find_opt(argv, "-bios", "qboot.rom") > 0);
  ASSERT(find_opt(argv, "-initrd", "/srv/boot/initrd.img") > 0);
  ASSERT(find_opt(argv, "-append",
                  "8250_core.nr_uarts=1 "
                  "console=ttyS0,115200 -- -e 1 /bin/gcs") > 0);
  ASSERT(find_opt(argv, "-action", "reboot=shutdown") > 0);

  /* layout: 6 cold devices (scsi0 scsi1 vpci nic p9 balloon) + 16 */
  ASSERT_EQ(json_array_size(ports), 22);
  ASSERT_STR_EQ(sget(json_array_get(ports, 5), "device"), "balloon0");
  ASSERT(json_is_null(json_object_get(json_array_get(ports, 6), "device")));

  /* advisory fields are listed; VM-layer ones are not */
  ASSERT(in_list(ign, "VirtualMachine.ComputeTopology.Memory.Backing"));
  ASSERT(in_list(ign, "VirtualMachine.ComputeTopology.Memory.SlitType"));
  ASSERT(in_list(ign, "VirtualMachine.ComputeTopology.Memory.LowMmioGapInMB"));
  ASSERT(in_list(ign, "VirtualMachine.ComputeTopology.Processor."
                      "NumaProcessorsSettings"));
  ASSERT(in_list(ign, "VirtualMachine.ComputeTopology.Numa.Settings.1."
                      "PhysicalNodeNumber"));
  ASSERT(in_list(ign, "VirtualMachine.Devices.VirtualPci." VPCI_GUID
                      ".PropagateNumaAffinity"));
  ASSERT(in_list(ign, "VirtualMachine.Devices.Plan9.Shares.0.Port"));
  ASSERT(!in_list(ign, "VirtualMachine.ComputeTopology.Processor.Limit"));
  json_decref(argv);
  json_decref(layout);
}

static void test_injection(void) {
  orr_qemu_config cfg = cfg_default();
  json_t *argv = build(
      with_devices("{\"Scsi\":{\"" CTRL0 "\":{\"Attachments\":{\"2\":{"
                   "\"Type\":\"VirtualDisk\",\"Path\":"
                   "\"/tmp/a,driver=host_device\"}}}},"
                   "\"NetworkAdapters\":{\"" NIC_GUID "\":{\"EndpointId\":"
                   "\"user\",\"MacAddress\":\"00-15-5d-00-00-01\"}},"
                   "\"ComPorts\":{\"1\":{\"NamedPipe\":\"/tmp/c,id=x.sock\"}},"
                   "\"Plan9\":{\"Shares\":[{\"Name\":\"s\",\"Path\":"
                   "\"/tmp/p,readonly=off\"}]}}",
                   NULL),
      &cfg, NULL);
  const char *raw = opt_with(argv, "-blockdev", "file-0-2");
  json_t *v = json_opt(argv, "-blockdev", "node-name", "file-0-2");

  /* JSON, and the path is one literal string */
  ASSERT_NOT_NULL(raw);
  ASSERT_EQ(raw[0], '{');
  ASSERT_STR_EQ(sget(v, "filename"), "/tmp/a,driver=host_device");
  ASSERT_STR_EQ(sget(v, "driver"), "file");
  ASSERT_STR_EQ(
      sget(json_opt(argv, "-blockdev", "node-name", "fmt-0-2"), "driver"),
      "raw");
  ASSERT_EQ(json_object_size(v), 4);
  /* non-JSON options: commas doubled */
  ASSERT(find_opt(argv, "-chardev",
                  F("socket,id=com1,path=/tmp/c,,id=x.sock,server=on,"
                    "wait=off,logfile=%s/com1.out,logappend=on",
                    run_dir)) > 0);
  ASSERT(find_opt(argv, "-fsdev",
                  "local,id=fs0,path=/tmp/p,,readonly=off,security_model="
                  "none") > 0);
  ASSERT_EQ(iget(json_opt(argv, "-device", "id", "serial1"), "index"), 1);
  json_decref(argv);
}

static void test_refusals(void) {
  orr_qemu_config cfg = cfg_default();
  const char *att = "{\"Scsi\":{\"" CTRL0 "\":{\"Attachments\":{\"0\":%s}}}}";

  expect_err(with_devices("{\"VirtualSmb\":{}}", NULL), &cfg, ORR_ENOTSUP,
             "VirtualMachine.Devices.VirtualSmb: the qemu backend has no SMB "
             "device");
  expect_err(with_devices("{\"NetworkAdapters\":{\"" NIC_GUID
                          "\":{\"EndpointId\":\"e6b5c2a4-0d1f-4b7e-9c3a-"
                          "1f2e3d4c5b6a\"}}}",
                          NULL),
             &cfg, ORR_ENOTSUP,
             "VirtualMachine.Devices.NetworkAdapters." NIC_GUID ".EndpointId");
  expect_err(with_devices("{\"NetworkAdapters\":{\"" NIC_GUID
                          "\":{\"EndpointId\":\"user\",\"MacAddress\":"
                          "\"zz\"}}}",
                          NULL),
             &cfg, ORR_EINVAL, NIC_GUID ".MacAddress");
  expect_err(with_devices("{\"NetworkAdapters\":{\"" NIC_GUID
                          "\":{\"EndpointId\":\"tap:a;rm -rf\"}}}",
                          NULL),
             &cfg, ORR_EINVAL, ".EndpointId: tap interface name");
  expect_err(with_devices("{\"VirtualPci\":{\"" VPCI_GUID "\":{"
                          "\"Functions\":[{\"DeviceInstancePath\":"
                          "\"PCI\\\\VEN_10DE&DEV_20B5\"}]}}}",
                          NULL),
             &cfg, ORR_EINVAL,
             "VirtualMachine.Devices.VirtualPci." VPCI_GUID
             ".Functions.0.DeviceInstancePath");
  expect_err(with_devices("{\"VirtualPci\":{\"" VPCI_GUID "\":{"
                          "\"Functions\":[{\"DeviceInstancePath\":"
                          "\"qemu:Edu,x=1\"}]}}}",
                          NULL),
             &cfg, ORR_EINVAL, "DeviceInstancePath");
  expect_err(with_devices("{\"VirtualPci\":{\"" VPCI_GUID "\":{"
                          "\"Functions\":[{\"DeviceInstancePath\":"
                          "\"0000:65:00.0\"},{\"DeviceInstancePath\":"
                          "\"0000:65:00.1\"}]}}}",
                          NULL),
             &cfg, ORR_ENOTSUP, VPCI_GUID ".Functions");
  expect_err(with_devices("{\"VirtualPci\":{\"" VPCI_GUID "\":{"
                          "\"Functions\":[{\"DeviceInstancePath\":"
                          "\"0000:65:00.0\",\"VirtualFunction\":2}]}}}",
                          NULL),
             &cfg, ORR_ENOTSUP, ".Functions.0.VirtualFunction");
  expect_err(with_devices("{\"HvSocket\":{\"HvSocketConfig\":{"
                          "\"ServiceTable\":{\"" NIC_GUID "\":{"
                          "\"BindSecurityDescriptor\":\"D:P\"}}}}}",
                          NULL),
             &cfg, ORR_ENOTSUP,
             "VirtualMachine.Devices.HvSocket.HvSocketConfig.ServiceTable: "
             "HvSocket services need vsock");
  expect_err(with_devices(F(att, "{\"Type\":\"VirtualDisk\",\"Path\":"
                                 "\"rel.img\"}"),
                          NULL),
             &cfg, ORR_EINVAL,
             "VirtualMachine.Devices.Scsi." CTRL0 ".Attachments.0.Path must "
             "be an absolute host path");
  expect_err(
      with_devices(F(att, "{\"Type\":\"Floppy\",\"Path\":\"/x\"}"), NULL), &cfg,
      ORR_ENOTSUP, ".Attachments.0.Type: 'Floppy'");
  expect_err(with_devices(F(att, "{\"Type\":\"VirtualDisk\",\"Path\":\"/x\","
                                 "\"Bogus\":1}"),
                          NULL),
             &cfg, ORR_ENOTSUP, ".Attachments.0.Bogus: unknown");
  expect_err(with_devices("{\"Scsi\":{\"" CTRL0 "\":{\"Attachments\":{"
                          "\"64\":{\"Type\":\"Iso\",\"Path\":\"/x\"}}}}}",
                          NULL),
             &cfg, ORR_EINVAL, ".Attachments.64: the LUN key");
  expect_err(with_devices("{\"Scsi\":{\"" NIC_GUID "\":{}}}", NULL), &cfg,
             ORR_EINVAL, "VirtualMachine.Devices.Scsi." NIC_GUID);
  expect_err(with_devices("{\"Plan9\":{\"Shares\":[{\"Name\":"
                          "\"0123456789012345678901234567890123\",\"Path\":"
                          "\"/x\"}]}}",
                          NULL),
             &cfg, ORR_EINVAL, "Plan9.Shares.0: AccessName (or Name)");
  expect_err(with_devices("{\"Plan9\":{\"Shares\":[{\"Name\":\"a\",\"Path\":"
                          "\"/x\",\"AllowedFiles\":[\"f\"]}]}}",
                          NULL),
             &cfg, ORR_ENOTSUP, "Plan9.Shares.0.AllowedFiles");
  expect_err(with_devices("{\"ComPorts\":{\"0\":{\"NamedPipe\":"
                          "\"\\\\\\\\.\\\\pipe\\\\x\"}}}",
                          NULL),
             &cfg, ORR_EINVAL, "ComPorts.0.NamedPipe must be an absolute");
  expect_err(
      with_devices("{\"ComPorts\":{\"4\":{\"NamedPipe\":\"/x\"}}}", NULL), &cfg,
      ORR_EINVAL, "ComPorts.4");
  expect_err(with_devices("{\"FlexibleIov\":{\"x\":{}}}", NULL), &cfg,
             ORR_ENOTSUP, "VirtualMachine.Devices.FlexibleIov");
  expect_err(with_devices("{}", "\"Chipset\":{\"Uefi\":{"
                                "\"ApplySecureBootTemplate\":true}}"),
             &cfg, ORR_ENOTSUP,
             "VirtualMachine.Chipset.Uefi.ApplySecureBootTemplate");
  expect_err(with_devices("{}", "\"Chipset\":{\"Uefi\":{},"
                                "\"LinuxKernelDirect\":{\"KernelFilePath\":"
                                "\"/k\"}}"),
             &cfg, ORR_EINVAL, "VirtualMachine.Chipset: Uefi and");
  expect_err(with_devices("{}", "\"SecuritySettings\":{\"Isolation\":{}}"),
             &cfg, ORR_ENOTSUP, "VirtualMachine.SecuritySettings");
  expect_err(with_devices("{}", "\"Frobnicate\":1"), &cfg, ORR_ENOTSUP,
             "VirtualMachine.Frobnicate: unknown");
  expect_err(with_devices("{\"VirtualPMem\":{\"Devices\":{\"0\":{"
                          "\"HostPath\":\"/nonexistent/x.img\"}}}}",
                          NULL),
             &cfg, ORR_ENOENT, "VirtualPMem.Devices.0.HostPath");
  expect_err(with_devices("{\"VirtualPMem\":{\"Devices\":{\"0\":{"
                          "\"HostPath\":\"/x.vhdx\",\"ImageFormat\":"
                          "\"Vhdx\"}}}}",
                          NULL),
             &cfg, ORR_ENOTSUP, "VirtualPMem.Devices.0.ImageFormat");
  /* NUMA that does not add up */
  expect_err("{\"VirtualMachine\":{\"ComputeTopology\":{\"Memory\":"
             "{\"SizeInMB\":256},\"Processor\":{\"Count\":2},\"Numa\":{"
             "\"Settings\":[{\"CountOfProcessors\":1,\"CountOfMemoryBlocks\":"
             "100},{\"VirtualNodeNumber\":1,\"CountOfProcessors\":1,"
             "\"CountOfMemoryBlocks\":100}]}}}}",
             &cfg, ORR_EINVAL, "VirtualMachine.ComputeTopology.Numa.Settings:");

  /* config: a restore is read through the engine's host resources */
  cfg.restore_path = "/var/lib/orrery/demo.state";
  expect_err(minimal_doc, &cfg, ORR_EINVAL, "cfg.restore_path");
  cfg = cfg_default();
  cfg.accel = "auto";
  expect_err(minimal_doc, &cfg, ORR_EINVAL, "cfg.accel");
  cfg = cfg_default();
  cfg.run_dir = "/tmp/a,b";
  expect_err(minimal_doc, &cfg, ORR_EINVAL, "cfg.run_dir");
  cfg = cfg_default();
  cfg.hotplug_ports = ORR_QEMU_MAX_PORTS;
  expect_err(minimal_doc, &cfg, ORR_EINVAL, "cfg.hotplug_ports: 1 cold");
}

static void test_decisions(void) {
  orr_qemu_config cfg = cfg_default();
  json_t *layout, *argv, *v;
  char pmem[128];

  /* restore: from a descriptor QEMU inherits (no shell: -sandbox
  ** spawn=deny), judged like every host file; a dry set numbers it. */
  cfg.restore_path = "/var/lib/orrery/demo.state; rm -rf /";
  cfg.hr = orr__hostres_new(NULL, ORR_HR_BOOT, true);
  argv = build(minimal_doc, &cfg, NULL);
  ASSERT(find_opt(argv, "-incoming", "fd:3") > 0);
  ASSERT(find_opt(argv, "-sandbox", ORR_QEMU_SANDBOX) > 0);
  json_decref(argv);
  orr__hostres_free(cfg.hr);

  /* UEFI: pflash by blockdev, the per-VM vars file to prepare */
  cfg = cfg_default();
  argv = build(with_devices("{}", "\"Chipset\":{\"Uefi\":{\"BootThis\":{"
                                  "\"DeviceType\":\"ScsiDrive\"}}}"),
               &cfg, &layout);
  ASSERT(find_opt(argv, "-M", "q35,pflash0=fw-code,pflash1=fw-vars") > 0);
  v = json_opt(argv, "-blockdev", "node-name", "fw-code-file");
  ASSERT_STR_EQ(sget(v, "filename"), "/usr/share/OVMF/OVMF_CODE_4M.fd");
  ASSERT(json_is_true(json_object_get(v, "read-only")));
  v = json_opt(argv, "-blockdev", "node-name", "fw-vars-file");
  ASSERT_STR_EQ(sget(v, "filename"), F("%s/OVMF_VARS.fd", run_dir));
  v = json_array_get(json_object_get(layout, "files"), 0);
  ASSERT_STR_EQ(sget(v, "path"), F("%s/OVMF_VARS.fd", run_dir));
  ASSERT_STR_EQ(sget(v, "from"), "/usr/share/OVMF/OVMF_VARS_4M.fd");
  ASSERT(in_list(json_object_get(layout, "ignored"),
                 "VirtualMachine.Chipset.Uefi.BootThis"));
  ASSERT_NULL(opt_with(argv, "-kernel", ""));
  ASSERT_NULL(opt_with(argv, "-bios", "")); /* OVMF is in pflash */
  json_decref(argv);
  json_decref(layout);

  /* graphics */
  argv = build(with_devices("{\"Keyboard\":{},\"EnhancedModeVideo\":{},"
                            "\"VideoMonitor\":{}}",
                            NULL),
               &cfg, &layout);
  ASSERT(find_opt(argv, "-vnc", F("unix:%s/vnc.sock", run_dir)) > 0);
  v = json_opt(argv, "-device", "id", "video0");
  ASSERT_STR_EQ(sget(v, "driver"), "VGA");
  ASSERT_STR_EQ(sget(v, "bus"), "pcie.0");
  ASSERT_STR_EQ(sget(v, "addr"), "0x1");
  ASSERT_STR_EQ(sget(layout, "vnc"), F("%s/vnc.sock", run_dir));
  json_decref(argv);
  json_decref(layout);

  /* vsock where the host has it */
  cfg.host.vhost_vsock = true;
  cfg.vsock_cid = 7;
  argv = build(with_devices("{\"HvSocket\":{\"HvSocketConfig\":{"
                            "\"ServiceTable\":{\"" NIC_GUID "\":{}}}}}",
                            NULL),
               &cfg, NULL);
  v = json_opt(argv, "-device", "id", "vsock0");
  ASSERT_STR_EQ(sget(v, "driver"), "vhost-vsock-pci");
  ASSERT_EQ(iget(v, "guest-cid"), 7);
  json_decref(argv);
  cfg.vsock_cid = 0;
  expect_err(with_devices("{\"HvSocket\":{\"HvSocketConfig\":{"
                          "\"ServiceTable\":{\"" NIC_GUID "\":{}}}}}",
                          NULL),
             &cfg, ORR_EINVAL, "cfg.vsock_cid");
  cfg = cfg_default();

  /* uneven NUMA: one socket, cores handed out per node */
  argv = build("{\"VirtualMachine\":{\"ComputeTopology\":{\"Memory\":"
               "{\"SizeInMB\":384},\"Processor\":{\"Count\":3},\"Numa\":{"
               "\"Settings\":[{\"VirtualNodeNumber\":1,\"CountOfProcessors\":"
               "1,\"CountOfMemoryBlocks\":128},{\"CountOfProcessors\":2,"
               "\"CountOfMemoryBlocks\":256}]}}}}",
               &cfg, NULL);
  ASSERT(find_opt(argv, "-smp", "3,sockets=1,cores=3,threads=1") > 0);
  ASSERT(find_opt(argv, "-object", "memory-backend-ram,id=m0,size=256M") > 0);
  ASSERT(find_opt(argv, "-object", "memory-backend-ram,id=m1,size=128M") > 0);
  ASSERT(find_opt(argv, "-numa", "cpu,node-id=0,socket-id=0,core-id=1") > 0);
  ASSERT(find_opt(argv, "-numa", "cpu,node-id=1,socket-id=0,core-id=2") > 0);
  json_decref(argv);

  /* tap, Iso, PassThru, qemu: model */
  argv = build(
      with_devices("{\"NetworkAdapters\":{\"" NIC_GUID "\":{\"EndpointId\":"
                   "\"tap:qtap0\"}},"
                   "\"Scsi\":{\"" CTRL0 "\":{\"Attachments\":{"
                   "\"1\":{\"Type\":\"Iso\",\"Path\":\"/x/cd.iso\"},"
                   "\"2\":{\"Type\":\"PassThru\",\"Path\":\"/dev/sdz\"}}}},"
                   "\"VirtualPci\":{\"" VPCI_GUID "\":{\"Functions\":[{"
                   "\"DeviceInstancePath\":\"qemu:virtio-rng-pci\"}]}}}",
                   NULL),
      &cfg, NULL);
  v = json_opt(argv, "-netdev", "id", "net-" NIC_GUID);
  ASSERT_STR_EQ(sget(v, "type"), "tap");
  ASSERT_STR_EQ(sget(v, "ifname"), "qtap0");
  ASSERT_STR_EQ(sget(v, "script"), "no");
  ASSERT_STR_EQ(sget(v, "downscript"), "no");
  ASSERT_NULL(json_object_get(v, "vhost"));
  ASSERT_NULL(
      json_object_get(json_opt(argv, "-device", "id", "nic-" NIC_GUID), "mac"));
  ASSERT_STR_EQ(sget(json_opt(argv, "-device", "id", "disk-0-1"), "driver"),
                "scsi-cd");
  ASSERT(json_is_true(json_object_get(
      json_opt(argv, "-blockdev", "node-name", "fmt-0-1"), "read-only")));
  ASSERT_STR_EQ(
      sget(json_opt(argv, "-blockdev", "node-name", "file-0-2"), "driver"),
      "host_device");
  v = json_opt(argv, "-device", "id", "vpci-" VPCI_GUID);
  ASSERT_STR_EQ(sget(v, "driver"), "virtio-rng-pci");
  json_decref(argv);

  /* pmem: size from the file, slots/maxmem on -m, share=off if read-only */
  snprintf(pmem, sizeof pmem, "%s/pm.img", tmpdir);
  write_file(pmem, NULL, 0, 3 << 20);
  argv = build(with_devices(F("{\"VirtualPMem\":{\"MaximumCount\":4,"
                              "\"MaximumSizeBytes\":4194304,\"Devices\":{"
                              "\"1\":{\"HostPath\":\"%s\",\"ReadOnly\":true,"
                              "\"ImageFormat\":\"Vhd1\"}}}}",
                              pmem),
                            NULL),
               &cfg, NULL);
  /* maxmem: the device (4 MiB) and room for the 3 more MaximumCount
  ** allows, MaximumSizeBytes (4 MiB) each, to be added at run time. */
  ASSERT(find_opt(argv, "-m", "256M,slots=1,maxmem=272M") > 0);
  v = json_opt(argv, "-object", "id", "pmem-1-mem");
  ASSERT_STR_EQ(sget(v, "qom-type"), "memory-backend-file");
  ASSERT_STR_EQ(sget(v, "mem-path"), pmem);
  ASSERT_EQ(iget(v, "size"), 3 << 20);
  ASSERT(json_is_false(json_object_get(v, "share")));
  ASSERT(json_is_true(json_object_get(v, "readonly"))); /* opened read-only */
  v = json_opt(argv, "-device", "id", "pmem-1");
  ASSERT_STR_EQ(sget(v, "driver"), "virtio-pmem-pci");
  ASSERT_STR_EQ(sget(v, "memdev"), "pmem-1-mem");
  json_decref(argv);
  expect_err(with_devices(F("{\"VirtualPMem\":{\"MaximumSizeBytes\":1048576,"
                            "\"Devices\":{\"0\":{\"HostPath\":\"%s\"}}}}",
                            pmem),
                          NULL),
             &cfg, ORR_EINVAL,
             "VirtualPMem.Devices.0.HostPath: the image "
             "size");
  /* a fixed VHD: data + 512-byte footer; the footer is left out */
  {
    char foot[512] = "conectix";
    int fd = open(pmem, O_WRONLY | O_APPEND);
    ASSERT(fd >= 0);
    ASSERT_EQ(write(fd, foot, sizeof foot), 512);
    close(fd);
  }
  argv = build(with_devices(F("{\"VirtualPMem\":{\"Devices\":{\"0\":{"
                              "\"HostPath\":\"%s\"}}}}",
                              pmem),
                            NULL),
               &cfg, NULL);
  ASSERT_EQ(iget(json_opt(argv, "-object", "id", "pmem-0-mem"), "size"),
            3 << 20);
  ASSERT(json_is_true(
      json_object_get(json_opt(argv, "-object", "id", "pmem-0-mem"), "share")));
  json_decref(argv);
}

static void test_disk_format(void) {
  char p[160];
  char buf[4096] = {0};

  snprintf(p, sizeof p, "%s/d.qcow2x", tmpdir);
  write_file(p, "QFI\xfb\0\0\0\3", 8, 4096);
  ASSERT_STR_EQ(orr__qemu_disk_format(p), "qcow2");
  snprintf(p, sizeof p, "%s/d.img", tmpdir);
  write_file(p, "vhdxfile", 8, 4096);
  ASSERT_STR_EQ(orr__qemu_disk_format(p), "vhdx");
  snprintf(p, sizeof p, "%s/fixed", tmpdir);
  memcpy(buf + 4096 - 512, "conectix", 8);
  write_file(p, buf, sizeof buf, 0);
  ASSERT_STR_EQ(orr__qemu_disk_format(p), "vpc");
  /* no magic: the extension, else raw */
  snprintf(p, sizeof p, "%s/plain.vhdx", tmpdir);
  write_file(p, NULL, 0, 4096);
  ASSERT_STR_EQ(orr__qemu_disk_format(p), "vhdx");
  snprintf(p, sizeof p, "%s/plain", tmpdir);
  write_file(p, NULL, 0, 4096);
  ASSERT_STR_EQ(orr__qemu_disk_format(p), "raw");
  /* .raw pins raw even over a qcow2 header (guest-written) */
  snprintf(p, sizeof p, "%s/d.raw", tmpdir);
  write_file(p, "QFI\xfb", 4, 4096);
  ASSERT_STR_EQ(orr__qemu_disk_format(p), "raw");
  /* missing files: by extension */
  ASSERT_STR_EQ(orr__qemu_disk_format("/nonexistent/a.qcow2"), "qcow2");
  ASSERT_STR_EQ(orr__qemu_disk_format("/nonexistent/a.VHDX"), "vhdx");
  ASSERT_STR_EQ(orr__qemu_disk_format("/nonexistent/a.vhd"), "vpc");
  ASSERT_STR_EQ(orr__qemu_disk_format("/nonexistent/a"), "raw");
  ASSERT_STR_EQ(orr__qemu_disk_format("/nonexistent.qcow2/a"), "raw");
}

/* ---------------------------------------------------------------------- */
/* Plans by value                                                         */
/* ---------------------------------------------------------------------- */

static json_t *dostep(const json_t *plan, size_t i) {
  return json_array_get(json_object_get(plan, "do"), i);
}

static void test_plans(void) {
  json_t *plan, *s, *att;
  orr_error err = {0, ""};

  att = J("{\"Type\":\"VirtualDisk\",\"Path\":\"/x/d.raw\",\"ReadOnly\":true,"
          "\"CachingMode\":\"Uncached\"}");
  ASSERT_OK(orr__qemu_plan_scsi_add(1, 7, att, true, NULL, &plan, &err));
  ASSERT_EQ(json_array_size(json_object_get(plan, "do")), 4);
  s = dostep(plan, 0);
  ASSERT_STR_EQ(sget(s, "execute"), "blockdev-add");
  ASSERT_STR_EQ(sget(json_object_get(s, "arguments"), "node-name"), "file-1-7");
  ASSERT_STR_EQ(sget(json_object_get(s, "arguments"), "filename"), "/x/d.raw");
  ASSERT(json_is_true(
      json_object_get(json_object_get(s, "arguments"), "read-only")));
  ASSERT_STR_EQ(sget(json_object_get(s, "undo"), "execute"), "blockdev-del");
  ASSERT_STR_EQ(sget(json_object_get(json_object_get(s, "undo"), "arguments"),
                     "node-name"),
                "file-1-7");
  ASSERT_STR_EQ(
      sget(json_object_get(dostep(plan, 1), "arguments"), "node-name"),
      "fmt-1-7");
  ASSERT_STR_EQ(sget(json_object_get(dostep(plan, 2), "arguments"), "driver"),
                "throttle");
  s = dostep(plan, 3);
  ASSERT_STR_EQ(sget(s, "execute"), "device_add");
  ASSERT_STR_EQ(sget(json_object_get(s, "arguments"), "id"), "disk-1-7");
  ASSERT_STR_EQ(sget(json_object_get(s, "arguments"), "bus"), "scsi1.0");
  ASSERT_EQ(iget(json_object_get(s, "arguments"), "lun"), 7);
  ASSERT(json_is_null(json_object_get(s, "undo")));
  ASSERT(json_is_null(json_object_get(plan, "wait_deleted")));
  ASSERT(in_list(json_object_get(plan, "ignored"),
                 "VirtualMachine.Devices.Scsi." CTRL1
                 ".Attachments.7.CachingMode"));
  json_decref(plan);
  json_decref(att);

  ASSERT_OK(orr__qemu_plan_scsi_remove(1, 7, true, NULL, 0, &plan, &err));
  ASSERT_STR_EQ(sget(json_object_get(dostep(plan, 0), "arguments"), "id"),
                "disk-1-7");
  ASSERT_STR_EQ(sget(plan, "wait_deleted"), "disk-1-7");
  s = json_object_get(plan, "after");
  ASSERT_EQ(json_array_size(s), 3);
  ASSERT_STR_EQ(
      sget(json_object_get(json_array_get(s, 0), "arguments"), "node-name"),
      "qos-1-7");
  ASSERT_STR_EQ(
      sget(json_object_get(json_array_get(s, 2), "arguments"), "node-name"),
      "file-1-7");
  json_decref(plan);

  att = J("{\"EndpointId\":\"user\",\"MacAddress\":\"00-15-5D-52-C0-0B\"}");
  ASSERT_OK(orr__qemu_plan_nic_add(NIC_GUID, att, "rp9", NULL, &plan, &err));
  s = dostep(plan, 0);
  ASSERT_STR_EQ(sget(s, "execute"), "netdev_add");
  ASSERT_STR_EQ(sget(json_object_get(s, "arguments"), "id"), "net-" NIC_GUID);
  ASSERT_STR_EQ(sget(json_object_get(s, "undo"), "execute"), "netdev_del");
  s = json_object_get(dostep(plan, 1), "arguments");
  ASSERT_STR_EQ(sget(s, "bus"), "rp9");
  ASSERT_STR_EQ(sget(s, "mac"), "00:15:5d:52:c0:0b");
  json_decref(plan);
  ASSERT_ERR(orr__qemu_plan_nic_add(NIC_GUID, att, "pcie.0", NULL, &plan, &err),
             ORR_EINVAL);
  ASSERT_NULL(plan);
  json_decref(att);
  ASSERT_OK(orr__qemu_plan_nic_remove(NIC_GUID, &plan, &err));
  ASSERT_STR_EQ(sget(plan, "wait_deleted"), "nic-" NIC_GUID);
  ASSERT_STR_EQ(
      sget(json_array_get(json_object_get(plan, "after"), 0), "execute"),
      "netdev_del");
  json_decref(plan);

  att = J("{\"Functions\":[{\"DeviceInstancePath\":\"qemu:edu\"}]}");
  ASSERT_OK(orr__qemu_plan_vpci_add(VPCI_GUID, att, "rp3", NULL, &plan, &err));
  s = json_object_get(dostep(plan, 0), "arguments");
  ASSERT_STR_EQ(sget(s, "driver"), "edu");
  ASSERT_STR_EQ(sget(s, "id"), "vpci-" VPCI_GUID);
  ASSERT_STR_EQ(sget(s, "bus"), "rp3");
  json_decref(plan);
  json_decref(att);
  ASSERT_OK(orr__qemu_plan_vpci_remove(VPCI_GUID, &plan, &err));
  ASSERT_STR_EQ(sget(plan, "wait_deleted"), "vpci-" VPCI_GUID);
  json_decref(plan);

  /* save: to the request's descriptor (getfd, SCM_RIGHTS), never exec:
  ** (QEMU's -sandbox spawn=deny); after a save, out of postmigrate first. */
  json_t *v;
  ASSERT_OK(orr__qemu_plan_save(false, false, 2, &plan, &err));
  ASSERT_EQ(json_array_size(json_object_get(plan, "do")), 2);
  v = json_array_get(json_object_get(plan, "do"), 1);
  ASSERT_STR_EQ(json_string_value(json_object_get(v, "execute")), "getfd");
  ASSERT_EQ(json_integer_value(json_object_get(v, "fd")), 2);
  v = json_object_get(plan, "start");
  ASSERT_STR_EQ(json_string_value(
                    json_object_get(json_object_get(v, "arguments"), "uri")),
                "fd:" ORR_QEMU_SAVE_FD);
  json_decref(plan);
  ASSERT_OK(orr__qemu_plan_save(false, true, 2, &plan, &err));
  /* A template's save leaves its RAM (the file) out of the stream. */
  v = json_object_get(
      json_object_get(json_array_get(json_object_get(plan, "do"), 0),
                      "arguments"),
      "capabilities");
  ASSERT_EQ(json_array_size(v), 2);
  ASSERT_STR_EQ(
      json_string_value(json_object_get(json_array_get(v, 1), "capability")),
      "x-ignore-shared");
  json_decref(plan);
  ASSERT_OK(orr__qemu_plan_save(true, false, 0, &plan, &err));
  v = json_array_get(json_object_get(plan, "do"), 0);
  ASSERT_STR_EQ(json_string_value(json_object_get(v, "execute")), "cont");
  ASSERT_STR_EQ(
      json_string_value(json_object_get(json_object_get(v, "undo"), "execute")),
      "stop");
  json_decref(plan);

  ASSERT_OK(orr__qemu_plan_memory(128, 200, 256, 0, &plan, &err));
  s = dostep(plan, 0);
  ASSERT_STR_EQ(sget(s, "execute"), "balloon");
  ASSERT_EQ(iget(json_object_get(s, "arguments"), "value"), 128 << 20);
  /* Its undo puts the old target back; QEMU cannot report the target. */
  ASSERT_EQ(
      iget(json_object_get(json_object_get(s, "undo"), "arguments"), "value"),
      200 << 20);
  ASSERT(json_is_false(json_object_get(plan, "verifiable")));
  json_decref(plan);
  ASSERT_ERR(orr__qemu_plan_memory(512, 256, 256, 0, &plan, &err), ORR_ENOTSUP);
  ASSERT_STR_CONTAINS(err.msg,
                      "VirtualMachine.ComputeTopology.Memory.SizeInMB");
  ASSERT_STR_CONTAINS(err.msg, "memory_max_mb");
  /* With a maximum: above the boot size virtio-mem grows, in 2 MB blocks,
  ** up to the maximum. */
  ASSERT_ERR(orr__qemu_plan_memory(1025, 256, 256, 1024, &plan, &err),
             ORR_EINVAL);
  ASSERT_STR_CONTAINS(err.msg, "memory_max_mb = 1024");
  ASSERT_ERR(orr__qemu_plan_memory(259, 256, 256, 1024, &plan, &err),
             ORR_EINVAL);
  ASSERT_STR_CONTAINS(err.msg, "2 MB blocks");
  /* From a ballooned 200 to 512: the balloon back to 256, then 256 MB
  ** plugged; each undone to what it was. */
  ASSERT_OK(orr__qemu_plan_memory(512, 200, 256, 1024, &plan, &err));
  ASSERT_EQ((long long)json_array_size(json_object_get(plan, "do")), 2);
  s = dostep(plan, 0);
  ASSERT_STR_EQ(sget(s, "execute"), "balloon");
  ASSERT_EQ(iget(json_object_get(s, "arguments"), "value"), 256 << 20);
  s = dostep(plan, 1);
  ASSERT_STR_EQ(sget(s, "execute"), "qom-set");
  ASSERT_STR_EQ(sget(json_object_get(s, "arguments"), "path"),
                "/machine/peripheral/vmem0");
  ASSERT_STR_EQ(sget(json_object_get(s, "arguments"), "property"),
                "requested-size");
  ASSERT_EQ(iget(json_object_get(s, "arguments"), "value"), 256 << 20);
  ASSERT_EQ(
      iget(json_object_get(json_object_get(s, "undo"), "arguments"), "value"),
      0);
  json_decref(plan);
  /* From 512 down to 128: virtio-mem to 0 first, then the balloon. */
  ASSERT_OK(orr__qemu_plan_memory(128, 512, 256, 1024, &plan, &err));
  ASSERT_EQ((long long)json_array_size(json_object_get(plan, "do")), 2);
  ASSERT_STR_EQ(sget(dostep(plan, 0), "execute"), "qom-set");
  ASSERT_EQ(iget(json_object_get(dostep(plan, 0), "arguments"), "value"), 0);
  ASSERT_STR_EQ(sget(dostep(plan, 1), "execute"), "balloon");
  ASSERT_EQ(iget(json_object_get(dostep(plan, 1), "arguments"), "value"),
            128 << 20);
  json_decref(plan);

  att = J("{\"IopsMaximum\":300}");
  ASSERT_OK(orr__qemu_plan_storage_qos(att, true, &plan, &err));
  s = json_object_get(dostep(plan, 0), "arguments");
  ASSERT_STR_EQ(sget(s, "path"), "/objects/tg0");
  ASSERT_STR_EQ(sget(s, "property"), "limits");
  ASSERT_EQ(iget(json_object_get(s, "value"), "iops-total"), 300);
  ASSERT_EQ(iget(json_object_get(s, "value"), "bps-total"), 0);
  json_decref(plan);
  ASSERT_ERR(orr__qemu_plan_storage_qos(att, false, &plan, &err), ORR_ENOTSUP);
  ASSERT_STR_CONTAINS(err.msg, "VirtualMachine.StorageQoS");
  json_decref(att);

  att = J("{\"Name\":\"a\",\"Path\":\"/x\"}");
  ASSERT_ERR(orr__qemu_plan_plan9_add(att, &plan, &err), ORR_ENOTSUP);
  ASSERT_STR_CONTAINS(err.msg, "run-time fsdev");
  ASSERT_NULL(plan);
  json_decref(att);
  ASSERT_OK(orr__qemu_plan_plan9_remove(0, &plan, &err));
  ASSERT_STR_EQ(sget(plan, "wait_deleted"), "p9-0");
  json_decref(plan);
}

int main(void) {
  scratch_make();
  RUN_TEST(test_minimal);
  RUN_TEST(test_memory_required);
  RUN_TEST(test_full_example);
  RUN_TEST(test_injection);
  RUN_TEST(test_refusals);
  RUN_TEST(test_decisions);
  RUN_TEST(test_disk_format);
  RUN_TEST(test_plans);
  scratch_remove();
  return 0;
}

/*
** The qemu backend's translation layer: argv and plans checked by value,
** then the argv started by a real qemu-system-x86_64 (TCG, -S) and the
** plans executed against it over QMP with a tiny blocking client (this file
** tests translation, not the engine's QMP client).
*/
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "backends/qemu_xlate.h"
#include "task.h"

#define NIC_GUID "2b8d8f0e-8f3c-4c55-a3b1-6f2b1c0d9e7a"
#define VPCI_GUID "6f5c3a1e-1b2d-4c3e-9f4a-0a1b2c3d4e5f"
#define CTRL0 "df6d0690-79e5-55b6-a5ec-c1e2f77f580a"
#define CTRL1 "0110f83b-de10-5172-a266-78bca56bf50a"

static char tmpdir[64];  /* files for the documents */
static char run_dir[96]; /* the VM's run dir */

/* ---------------------------------------------------------------------- */
/* Helpers                                                                */
/* ---------------------------------------------------------------------- */

static json_t *J(const char *text) {
  json_error_t e;
  json_t *v = json_loads(text, 0, &e);
  if (v == NULL)
    TEST_FAIL_("bad JSON in test: %s (line %d col %d)", e.text, e.line,
               e.column);
  return v;
}

/* printf into a static ring of buffers (for building test documents). */
static const char *F(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static const char *F(const char *fmt, ...) {
  static char bufs[8][8192];
  static int i;
  char *b = bufs[i++ % 8];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b, sizeof bufs[0], fmt, ap);
  va_end(ap);
  return b;
}

static orr_qemu_config cfg_default(void) {
  orr_qemu_config cfg;
  orr__qemu_config_init(&cfg);
  cfg.run_dir = run_dir;
  return cfg;
}

static json_t *build(const char *doc_text, const orr_qemu_config *cfg,
                     json_t **layout) {
  json_t *doc = J(doc_text), *argv = NULL, *lay = NULL;
  orr_error err = {0, ""};
  int rc = orr__qemu_argv(doc, cfg, &argv, &lay, &err);
  if (rc != 0)
    TEST_FAIL_("orr__qemu_argv: %s: %s", orr_err_name(rc), err.msg);
  json_decref(doc);
  if (layout)
    *layout = lay;
  else
    json_decref(lay);
  return argv;
}

static void expect_err(const char *doc_text, const orr_qemu_config *cfg,
                       int code, const char *needle) {
  json_t *doc = J(doc_text), *argv = (json_t *)1, *lay = (json_t *)1;
  orr_error err = {0, ""};
  int rc = orr__qemu_argv(doc, cfg, &argv, &lay, &err);
  if (rc != code || strstr(err.msg, needle) == NULL)
    TEST_FAIL_("expected %s naming \"%s\", got %s: \"%s\"", orr_err_name(code),
               needle, orr_err_name(rc), err.msg);
  ASSERT_EQ(err.code, code);
  ASSERT_NULL(argv);
  ASSERT_NULL(lay);
  json_decref(doc);
}

static const char *arg(const json_t *argv, size_t i) {
  return json_string_value(json_array_get(argv, i));
}

/* Index of the value of the first `opt` whose value equals val; -1. */
static int find_opt(const json_t *argv, const char *opt, const char *val) {
  for (size_t i = 0; i + 1 < json_array_size(argv); i++)
    if (strcmp(arg(argv, i), opt) == 0 && strcmp(arg(argv, i + 1), val) == 0)
      return (int)i + 1;
  return -1;
}

/* The value of the first `opt` that contains needle; NULL. */
static const char *opt_with(const json_t *argv, const char *opt,
                            const char *needle) {
  for (size_t i = 0; i + 1 < json_array_size(argv); i++)
    if (strcmp(arg(argv, i), opt) == 0 && strstr(arg(argv, i + 1), needle))
      return arg(argv, i + 1);
  return NULL;
}

/* The JSON value of the `opt` (-device, -blockdev, ...) whose `key` is
** `val`; checks it is JSON. NULL if none. Borrowed from a ring of the last
** 8 results. */
static json_t *json_opt(const json_t *argv, const char *opt, const char *key,
                        const char *val) {
  static json_t *ring[8];
  static int next;
  json_t **last = &ring[next++ % 8];
  json_decref(*last);
  *last = NULL;
  for (size_t i = 0; i + 1 < json_array_size(argv); i++) {
    json_t *v;
    if (strcmp(arg(argv, i), opt) != 0 || arg(argv, i + 1)[0] != '{')
      continue;
    v = J(arg(argv, i + 1));
    if (json_is_string(json_object_get(v, key)) &&
        strcmp(json_string_value(json_object_get(v, key)), val) == 0)
      return *last = v;
    json_decref(v);
  }
  return NULL;
}

static const char *sget(const json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}

static long long iget(const json_t *o, const char *k) {
  ASSERT(json_is_integer(json_object_get(o, k)));
  return json_integer_value(json_object_get(o, k));
}

static bool in_list(const json_t *arr, const char *s) {
  size_t i;
  json_t *v;
  json_array_foreach(arr, i, v) {
    if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
      return true;
  }
  return false;
}

static void write_file(const char *path, const void *data, size_t n,
                       off_t size) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT(fd >= 0);
  if (n)
    ASSERT_EQ(write(fd, data, n), (ssize_t)n);
  if (size)
    ASSERT_EQ(ftruncate(fd, size), 0);
  ASSERT_EQ(close(fd), 0);
}

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
                  "socket,id=com0,path=/run/orrery/uvm/com1.sock,server=on,"
                  "wait=off") > 0);
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
                  "socket,id=com1,path=/tmp/c,,id=x.sock,server=on,"
                  "wait=off") > 0);
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
  ASSERT(find_opt(argv, "-m", "256M,slots=1,maxmem=260M") > 0);
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

  ASSERT_OK(orr__qemu_plan_scsi_remove(1, 7, true, NULL, &plan, &err));
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
  ASSERT_OK(orr__qemu_plan_save(false, 2, &plan, &err));
  ASSERT_EQ(json_array_size(json_object_get(plan, "do")), 2);
  v = json_array_get(json_object_get(plan, "do"), 1);
  ASSERT_STR_EQ(json_string_value(json_object_get(v, "execute")), "getfd");
  ASSERT_EQ(json_integer_value(json_object_get(v, "fd")), 2);
  v = json_object_get(plan, "start");
  ASSERT_STR_EQ(json_string_value(
                    json_object_get(json_object_get(v, "arguments"), "uri")),
                "fd:" ORR_QEMU_SAVE_FD);
  json_decref(plan);
  ASSERT_OK(orr__qemu_plan_save(true, 0, &plan, &err));
  v = json_array_get(json_object_get(plan, "do"), 0);
  ASSERT_STR_EQ(json_string_value(json_object_get(v, "execute")), "cont");
  ASSERT_STR_EQ(
      json_string_value(json_object_get(json_object_get(v, "undo"), "execute")),
      "stop");
  json_decref(plan);

  ASSERT_OK(orr__qemu_plan_memory(128, 200, 256, &plan, &err));
  s = dostep(plan, 0);
  ASSERT_STR_EQ(sget(s, "execute"), "balloon");
  ASSERT_EQ(iget(json_object_get(s, "arguments"), "value"), 128 << 20);
  /* Its undo puts the old target back; QEMU cannot report the target. */
  ASSERT_EQ(
      iget(json_object_get(json_object_get(s, "undo"), "arguments"), "value"),
      200 << 20);
  ASSERT(json_is_false(json_object_get(plan, "verifiable")));
  json_decref(plan);
  ASSERT_ERR(orr__qemu_plan_memory(512, 256, 256, &plan, &err), ORR_ENOTSUP);
  ASSERT_STR_CONTAINS(err.msg,
                      "VirtualMachine.ComputeTopology.Memory.SizeInMB");

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

/* ---------------------------------------------------------------------- */
/* Real QEMU                                                              */
/* ---------------------------------------------------------------------- */

typedef struct {
  pid_t pid;
  int fd;
  char buf[1 << 16];
  size_t len;
  json_t *events;
  char errfile[160];
} vmproc;

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void dump_stderr(const vmproc *vm) {
  char buf[4096];
  int fd = open(vm->errfile, O_RDONLY);
  ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
  if (n > 0) {
    buf[n] = '\0';
    fprintf(stderr, "qemu stderr:\n%s\n", buf);
  }
  if (fd >= 0)
    close(fd);
}

static void print_argv(const json_t *argv) {
  size_t i;
  json_t *v;
  fprintf(stderr, "argv:");
  json_array_foreach(argv, i, v) {
    fprintf(stderr, " '%s'", json_string_value(v));
  }
  fprintf(stderr, "\n");
}

/* Spawns argv, waits 1.5 s, asserts it still runs (-S: paused). */
static void spawn_vm(vmproc *vm, const json_t *argv, const char *tag) {
  size_t n = json_array_size(argv);
  char **av = calloc(n + 1, sizeof *av);
  int status;

  ASSERT_NOT_NULL(av);
  for (size_t i = 0; i < n; i++)
    av[i] = (char *)arg(argv, i);
  snprintf(vm->errfile, sizeof vm->errfile, "%s/%s.stderr", tmpdir, tag);
  vm->pid = fork();
  ASSERT(vm->pid >= 0);
  if (vm->pid == 0) {
    int efd = open(vm->errfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int nfd = open("/dev/null", O_RDWR);
    dup2(nfd, 0);
    dup2(nfd, 1);
    dup2(efd, 2);
    execvp(av[0], av);
    _exit(127);
  }
  free(av);
  usleep(1500 * 1000);
  if (waitpid(vm->pid, &status, WNOHANG) == vm->pid) {
    print_argv(argv);
    dump_stderr(vm);
    TEST_FAIL_("qemu (%s) exited early: status 0x%x", tag, status);
  }
  vm->events = json_array();
  vm->len = 0;
}

static void kill_vm(vmproc *vm) {
  int status;
  if (vm->fd >= 0)
    close(vm->fd);
  kill(vm->pid, SIGKILL);
  waitpid(vm->pid, &status, 0);
  json_decref(vm->events);
}

/* One message from QMP, or NULL on timeout. */
static json_t *qmp_read(vmproc *vm, int timeout_ms) {
  long long deadline = now_ms() + timeout_ms;
  for (;;) {
    char *nl = memchr(vm->buf, '\n', vm->len);
    if (nl != NULL) {
      size_t linelen = (size_t)(nl - vm->buf) + 1;
      json_t *v = json_loadb(vm->buf, linelen, 0, NULL);
      memmove(vm->buf, vm->buf + linelen, vm->len - linelen);
      vm->len -= linelen;
      ASSERT_NOT_NULL(v);
      return v;
    }
    long long left = deadline - now_ms();
    if (left <= 0)
      return NULL;
    struct pollfd pfd = {vm->fd, POLLIN, 0};
    if (poll(&pfd, 1, (int)left) <= 0)
      continue;
    ASSERT_LT(vm->len, sizeof vm->buf);
    ssize_t n = read(vm->fd, vm->buf + vm->len, sizeof vm->buf - vm->len);
    if (n <= 0) {
      dump_stderr(vm);
      TEST_FAIL_("QMP closed");
    }
    vm->len += (size_t)n;
  }
}

/* Sends {"execute","arguments"} of cmd; returns the reply (return/error). */
static json_t *qmp_call(vmproc *vm, const json_t *cmd) {
  json_t *msg = json_pack("{s:O}", "execute", json_object_get(cmd, "execute"));
  char *text;
  if (json_object_get(cmd, "arguments"))
    json_object_set(msg, "arguments", json_object_get(cmd, "arguments"));
  text = json_dumps(msg, JSON_COMPACT);
  ASSERT_NOT_NULL(text);
  ASSERT_EQ(write(vm->fd, text, strlen(text)), (ssize_t)strlen(text));
  ASSERT_EQ(write(vm->fd, "\n", 1), 1);
  free(text);
  json_decref(msg);
  for (;;) {
    json_t *r = qmp_read(vm, 10000);
    if (r == NULL)
      TEST_FAIL_("no QMP reply to %s",
                 sget(cmd, "execute") ? sget(cmd, "execute") : "?");
    if (json_object_get(r, "event")) {
      json_array_append_new(vm->events, r);
      continue;
    }
    return r;
  }
}

static json_t *qmp_ok(vmproc *vm, const char *execute, json_t *args) {
  json_t *cmd = json_pack("{s:s}", "execute", execute);
  json_t *r, *ret;
  if (args)
    json_object_set_new(cmd, "arguments", args);
  r = qmp_call(vm, cmd);
  if (json_object_get(r, "error"))
    TEST_FAIL_("%s: %s", execute, sget(json_object_get(r, "error"), "desc"));
  ret = json_incref(json_object_get(r, "return"));
  json_decref(r);
  json_decref(cmd);
  return ret;
}

static void qmp_connect(vmproc *vm, const char *path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  json_t *greeting;
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  vm->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT(vm->fd >= 0);
  ASSERT_EQ(connect(vm->fd, (struct sockaddr *)&sa, sizeof sa), 0);
  greeting = qmp_read(vm, 5000);
  ASSERT_NOT_NULL(json_object_get(greeting, "QMP"));
  json_decref(greeting);
  json_decref(qmp_ok(vm, "qmp_capabilities", NULL));
}

static bool wait_deleted(vmproc *vm, const char *id, int timeout_ms) {
  long long deadline = now_ms() + timeout_ms;
  for (;;) {
    size_t i;
    json_t *e;
    json_array_foreach(vm->events, i, e) {
      const char *dev = sget(json_object_get(e, "data"), "device");
      if (strcmp(sget(e, "event"), "DEVICE_DELETED") == 0 && dev &&
          strcmp(dev, id) == 0) {
        json_array_remove(vm->events, i);
        return true;
      }
    }
    if (now_ms() >= deadline)
      return false;
    e = qmp_read(vm, (int)(deadline - now_ms()));
    if (e != NULL)
      json_array_append_new(vm->events, e);
  }
}

/*
** Executes a plan as the VM layer will. Returns -1 when "do" step `failed`
** failed (its undos run), 0 otherwise. `reset_for_unplug`: a PCI unplug
** without a guest never completes, but in ACPI mode system_reset completes
** it, so the test issues one after the device_del.
*/
static int run_plan(vmproc *vm, const json_t *plan, int *failed, char *errdesc,
                    size_t errsize, bool reset_for_unplug) {
  json_t *steps = json_object_get(plan, "do"), *s;
  size_t i;

  json_array_foreach(steps, i, s) {
    json_t *r = qmp_call(vm, s);
    if (json_object_get(r, "error")) {
      snprintf(errdesc, errsize, "%s",
               sget(json_object_get(r, "error"), "desc"));
      json_decref(r);
      *failed = (int)i;
      for (size_t k = i; k-- > 0;) {
        json_t *undo = json_object_get(json_array_get(steps, k), "undo");
        if (json_is_object(undo)) {
          json_t *u = qmp_call(vm, undo);
          ASSERT_NULL(json_object_get(u, "error"));
          json_decref(u);
        }
      }
      return -1;
    }
    json_decref(r);
  }
  if (json_is_string(json_object_get(plan, "wait_deleted"))) {
    if (reset_for_unplug)
      json_decref(qmp_ok(vm, "system_reset", NULL));
    ASSERT(wait_deleted(vm, sget(plan, "wait_deleted"), 5000));
  }
  json_array_foreach(json_object_get(plan, "after"), i, s) {
    json_t *r = qmp_call(vm, s);
    if (json_object_get(r, "error"))
      TEST_FAIL_("after step %zu: %s", i,
                 sget(json_object_get(r, "error"), "desc"));
    json_decref(r);
  }
  return 0;
}

static bool node_exists(vmproc *vm, const char *node, const char **file) {
  json_t *nodes =
      qmp_ok(vm, "query-named-block-nodes", json_pack("{s:b}", "flat", 1));
  size_t i;
  json_t *n;
  bool found = false;
  json_array_foreach(nodes, i, n) {
    if (strcmp(sget(n, "node-name"), node) == 0) {
      found = true;
      if (file) {
        static char fname[256];
        snprintf(fname, sizeof fname, "%s", sget(n, "file"));
        *file = fname;
      }
    }
  }
  json_decref(nodes);
  return found;
}

static bool qdev_exists(vmproc *vm, const char *id) {
  json_t *l =
      qmp_ok(vm, "qom-list", json_pack("{s:s}", "path", "/machine/peripheral"));
  size_t i;
  json_t *p;
  bool found = false;
  json_array_foreach(l, i, p) {
    if (strcmp(sget(p, "name"), id) == 0)
      found = true;
  }
  json_decref(l);
  return found;
}

static const char *first_free_port(const json_t *layout, int skip) {
  size_t i;
  json_t *p;
  json_array_foreach(json_object_get(layout, "ports"), i, p) {
    if (json_is_null(json_object_get(p, "device")) && skip-- == 0)
      return sget(p, "id");
  }
  return NULL;
}

static void test_real_qemu(void) {
  char disk[160], inj[160], extra[160], share[160], com[160];
  orr_qemu_config cfg = cfg_default();
  json_t *layout, *argv, *plan, *att, *v;
  orr_error err = {0, ""};
  vmproc vm = {.fd = -1};
  const char *file, *port;
  char desc[256];
  int failed = -1;
  struct stat st;

  snprintf(disk, sizeof disk, "%s/disk.raw", tmpdir);
  snprintf(inj, sizeof inj, "%s/a,driver=host_device", tmpdir);
  snprintf(extra, sizeof extra, "%s/extra.img", tmpdir);
  snprintf(share, sizeof share, "%s/sh,are", tmpdir);
  snprintf(com, sizeof com, "%s/c,om1.sock", tmpdir);
  write_file(disk, NULL, 0, 16 << 20);
  write_file(inj, NULL, 0, 16 << 20);
  write_file(extra, NULL, 0, 16 << 20);
  ASSERT_EQ(mkdir(share, 0700), 0);

  argv =
      build(F("{\"VirtualMachine\":{\"StopOnReset\":false,"
              "\"ComputeTopology\":{\"Memory\":{\"SizeInMB\":256},"
              " \"Processor\":{\"Count\":2,\"Limit\":50000},"
              " \"Numa\":{\"VirtualNodeCount\":2,\"Settings\":["
              "  {\"CountOfProcessors\":1,\"CountOfMemoryBlocks\":128},"
              "  {\"VirtualNodeNumber\":1,\"CountOfProcessors\":1,"
              "   \"CountOfMemoryBlocks\":128}]}},"
              "\"Devices\":{"
              " \"Scsi\":{\"" CTRL0 "\":{\"Attachments\":{"
              "   \"0\":{\"Type\":\"VirtualDisk\",\"Path\":\"%s\"},"
              "   \"1\":{\"Type\":\"VirtualDisk\",\"Path\":\"%s\","
              "    \"ReadOnly\":true}}},"
              "  \"" CTRL1 "\":{\"Attachments\":{}}},"
              " \"NetworkAdapters\":{\"" NIC_GUID "\":{\"EndpointId\":\"user\","
              "  \"MacAddress\":\"00-15-5D-52-C0-0A\"}},"
              " \"Plan9\":{\"Shares\":[{\"Name\":\"share\",\"Path\":\"%s\","
              "  \"Port\":564,\"Flags\":1}]},"
              " \"VirtualPci\":{\"" VPCI_GUID "\":{\"Functions\":[{"
              "  \"DeviceInstancePath\":\"qemu:virtio-rng-pci\"}]}},"
              " \"ComPorts\":{\"0\":{\"NamedPipe\":\"%s\"}},"
              " \"HvSocket\":{\"HvSocketConfig\":{"
              "  \"DefaultBindSecurityDescriptor\":\"D:P(A;;FA;;;SY)\"}}},"
              "\"StorageQoS\":{\"IopsMaximum\":1000,"
              " \"BandwidthMaximum\":10485760}}}",
              disk, inj, share, com),
            &cfg, &layout);
  spawn_vm(&vm, argv, "vm1");
  qmp_connect(&vm, sget(layout, "qmp"));

  /* what QEMU made of it */
  ASSERT(node_exists(&vm, "file-0-1", &file));
  ASSERT_STR_EQ(file, inj); /* the ',driver=' path, literally */
  ASSERT(node_exists(&vm, "qos-0-0", NULL));
  v = qmp_ok(&vm, "qom-get",
             json_pack("{s:s, s:s}", "path", "/machine/peripheral/disk-0-1",
                       "property", "lun"));
  ASSERT_EQ(json_integer_value(v), 1);
  json_decref(v);
  ASSERT(qdev_exists(&vm, "scsi0") && qdev_exists(&vm, "scsi1"));
  ASSERT(qdev_exists(&vm, "vpci-" VPCI_GUID));
  ASSERT(qdev_exists(&vm, "nic-" NIC_GUID));
  ASSERT(qdev_exists(&vm, "p9-0"));
  ASSERT(qdev_exists(&vm, "serial0"));
  ASSERT(qdev_exists(&vm, "balloon0"));
  ASSERT_EQ(stat(com, &st), 0); /* the ',' path, literally */
  ASSERT(S_ISSOCK(st.st_mode));
  v = qmp_ok(&vm, "query-rx-filter",
             json_pack("{s:s}", "name", "nic-" NIC_GUID));
  ASSERT_STR_EQ(sget(json_array_get(v, 0), "main-mac"), "00:15:5d:52:c0:0a");
  json_decref(v);
  v = qmp_ok(&vm, "query-memdev", NULL);
  ASSERT_EQ(json_array_size(v), 2);
  json_decref(v);
  v = qmp_ok(
      &vm, "qom-get",
      json_pack("{s:s, s:s}", "path", "/objects/tg0", "property", "limits"));
  ASSERT_EQ(iget(v, "iops-total"), 1000);
  json_decref(v);

  /* SCSI add at LUN 5, through the throttle */
  att = J(F("{\"Type\":\"VirtualDisk\",\"Path\":\"%s\"}", extra));
  ASSERT_OK(orr__qemu_plan_scsi_add(0, 5, att, true, NULL, &plan, &err));
  ASSERT_EQ(run_plan(&vm, plan, &failed, desc, sizeof desc, false), 0);
  json_decref(plan);
  ASSERT(qdev_exists(&vm, "disk-0-5"));
  ASSERT(node_exists(&vm, "qos-0-5", NULL));
  /* a failing device_add (no controller 2): the undos remove the nodes */
  ASSERT_OK(orr__qemu_plan_scsi_add(2, 0, att, true, NULL, &plan, &err));
  ASSERT_EQ(run_plan(&vm, plan, &failed, desc, sizeof desc, false), -1);
  ASSERT_EQ(failed, 3);
  ASSERT_STR_CONTAINS(desc, "scsi2.0");
  ASSERT(!node_exists(&vm, "file-2-0", NULL));
  ASSERT(!node_exists(&vm, "fmt-2-0", NULL));
  ASSERT(!node_exists(&vm, "qos-2-0", NULL));
  json_decref(plan);
  json_decref(att);
  /* SCSI remove: completes without a guest, then the nodes go */
  ASSERT_OK(orr__qemu_plan_scsi_remove(0, 5, true, NULL, &plan, &err));
  ASSERT_EQ(run_plan(&vm, plan, &failed, desc, sizeof desc, false), 0);
  json_decref(plan);
  ASSERT(!qdev_exists(&vm, "disk-0-5"));
  ASSERT(!node_exists(&vm, "file-0-5", NULL));

  /* NIC add into a free port, then remove (reset completes the unplug) */
  port = first_free_port(layout, 0);
  att = J("{\"EndpointId\":\"user\",\"MacAddress\":\"00-15-5D-52-C0-0B\"}");
  ASSERT_OK(orr__qemu_plan_nic_add("11111111-2222-3333-4444-555555555555", att,
                                   port, NULL, &plan, &err));
  ASSERT_EQ(run_plan(&vm, plan, &failed, desc, sizeof desc, false), 0);
  json_decref(plan);
  json_decref(att);
  ASSERT(qdev_exists(&vm, "nic-11111111-2222-3333-4444-555555555555"));
  ASSERT_OK(orr__qemu_plan_nic_remove("11111111-2222-3333-4444-555555555555",
                                      &plan, &err));
  ASSERT_EQ(run_plan(&vm, plan, &failed, desc, sizeof desc, true), 0);
  json_decref(plan);
  ASSERT(!qdev_exists(&vm, "nic-11111111-2222-3333-4444-555555555555"));

  /* VPCI: an emulated device into the next free port, then remove */
  port = first_free_port(layout, 1);
  att = J("{\"Functions\":[{\"DeviceInstancePath\":\"qemu:edu\"}]}");
  ASSERT_OK(orr__qemu_plan_vpci_add("aaaaaaaa-2222-3333-4444-555555555555", att,
                                    port, NULL, &plan, &err));
  ASSERT_EQ(run_plan(&vm, plan, &failed, desc, sizeof desc, false), 0);
  json_decref(plan);
  json_decref(att);
  ASSERT(qdev_exists(&vm, "vpci-aaaaaaaa-2222-3333-4444-555555555555"));
  ASSERT_OK(orr__qemu_plan_vpci_remove("aaaaaaaa-2222-3333-4444-555555555555",
                                       &plan, &err));
  ASSERT_EQ(run_plan(&vm, plan, &failed, desc, sizeof desc, true), 0);
  json_decref(plan);

  /* StorageQoS update and the balloon */
  att = J("{\"IopsMaximum\":2000,\"BandwidthMaximum\":20971520}");
  ASSERT_OK(orr__qemu_plan_storage_qos(att, true, &plan, &err));
  ASSERT_EQ(run_plan(&vm, plan, &failed, desc, sizeof desc, false), 0);
  json_decref(plan);
  json_decref(att);
  v = qmp_ok(
      &vm, "qom-get",
      json_pack("{s:s, s:s}", "path", "/objects/tg0", "property", "limits"));
  ASSERT_EQ(iget(v, "iops-total"), 2000);
  ASSERT_EQ(iget(v, "bps-total"), 20971520);
  json_decref(v);
  ASSERT_OK(orr__qemu_plan_memory(192, 256, 256, &plan, &err));
  ASSERT_EQ(run_plan(&vm, plan, &failed, desc, sizeof desc, false), 0);
  json_decref(plan);

  kill_vm(&vm);
  json_decref(argv);
  json_decref(layout);
}

/* UEFI (prepared vars), graphics, the agent, pmem, an ISO, a qcow2 disk. */
static void test_real_qemu_uefi(void) {
  char pmem[160], iso[160], qcow[160], cmdline[512];
  orr_qemu_config cfg = cfg_default();
  json_t *layout, *argv, *doc;
  orr_error err = {0, ""};
  vmproc vm = {.fd = -1};
  struct stat st;
  const char *file;

  snprintf(pmem, sizeof pmem, "%s/pmem.img", tmpdir);
  snprintf(iso, sizeof iso, "%s/cd.iso", tmpdir);
  snprintf(qcow, sizeof qcow, "%s/disk.qcow2", tmpdir);
  write_file(pmem, NULL, 0, 4 << 20);
  write_file(iso, NULL, 0, 1 << 20);
  snprintf(cmdline, sizeof cmdline,
           "qemu-img create -q -f qcow2 '%s' 64M 2>/dev/null", qcow);
  ASSERT_EQ(system(cmdline), 0);

  cfg.guest_agent = true;
  cfg.hotplug_ports = 4;
  doc = J(F("{\"VirtualMachine\":{\"StopOnReset\":true,"
            "\"Chipset\":{\"Uefi\":{\"BootThis\":{\"DeviceType\":"
            " \"ScsiDrive\"}}},"
            "\"ComputeTopology\":{\"Memory\":{\"SizeInMB\":256}},"
            "\"Devices\":{\"Keyboard\":{},\"VideoMonitor\":{},"
            " \"EnhancedModeVideo\":{},"
            " \"Scsi\":{\"" CTRL0 "\":{\"Attachments\":{"
            "  \"0\":{\"Type\":\"VirtualDisk\",\"Path\":\"%s\"},"
            "  \"1\":{\"Type\":\"Iso\",\"Path\":\"%s\"}}}},"
            " \"VirtualPMem\":{\"MaximumCount\":2,\"Devices\":{"
            "  \"0\":{\"HostPath\":\"%s\",\"ReadOnly\":true}}}}}}",
            qcow, iso, pmem));
  ASSERT_OK(orr__qemu_prepare_files(&cfg, doc, &err));
  ASSERT_EQ(stat(F("%s/OVMF_VARS.fd", run_dir), &st), 0);
  ASSERT_EQ(st.st_mode & 0777, 0600);
  ASSERT_OK(orr__qemu_argv(doc, &cfg, &argv, &layout, &err));
  ASSERT_EQ(json_array_size(json_object_get(layout, "ports")), 4 + 4);
  spawn_vm(&vm, argv, "vm2");
  qmp_connect(&vm, sget(layout, "qmp"));
  ASSERT(node_exists(&vm, "fw-vars", NULL));
  ASSERT(node_exists(&vm, "file-0-0", &file));
  ASSERT(qdev_exists(&vm, "disk-0-1"));
  ASSERT(qdev_exists(&vm, "pmem-0"));
  ASSERT(qdev_exists(&vm, "video0"));
  ASSERT(qdev_exists(&vm, "vser0"));
  ASSERT_EQ(stat(sget(layout, "vnc"), &st), 0);
  ASSERT_EQ(stat(sget(layout, "qga"), &st), 0);
  {
    json_t *v =
        qmp_ok(&vm, "query-named-block-nodes", json_pack("{s:b}", "flat", 1));
    size_t i;
    json_t *n;
    bool qcow2 = false;
    json_array_foreach(v, i, n) {
      if (strcmp(sget(n, "node-name"), "fmt-0-0") == 0)
        qcow2 = strcmp(sget(n, "drv"), "qcow2") == 0;
    }
    ASSERT(qcow2);
    json_decref(v);
  }
  kill_vm(&vm);
  json_decref(argv);
  json_decref(layout);
  json_decref(doc);
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/orr-xlate-XXXXXX");
  ASSERT_NOT_NULL(mkdtemp(tmpdir));
  snprintf(run_dir, sizeof run_dir, "%s/run", tmpdir);
  ASSERT_EQ(mkdir(run_dir, 0700), 0);

  RUN_TEST(test_minimal);
  RUN_TEST(test_memory_required);
  RUN_TEST(test_full_example);
  RUN_TEST(test_injection);
  RUN_TEST(test_refusals);
  RUN_TEST(test_decisions);
  RUN_TEST(test_disk_format);
  RUN_TEST(test_plans);
  RUN_TEST(test_real_qemu);
  RUN_TEST(test_real_qemu_uefi);

  ASSERT_EQ(system(F("rm -rf '%s'", tmpdir)), 0);
  return 0;
}

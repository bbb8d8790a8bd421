/*
** The kubevirt backend's pure parts: the schema checks, the translation of
** a quickstart-shaped document into a VirtualMachine, the API requests of
** every verb and run-time change, the plan entry and the live document
** read back from a VMI. Everything produced is checked against KubeVirt's
** published v1 schema.
*/
#include "kubevirt.h"
#include "orrery/document.h"
#include "task.h"

#define KERNEL "/srv/orrery/guest/vmlinuz"
#define INITRD "/srv/orrery/guest/initrd.img"
#define DATA "/tmp/quickstart/data.img"
#define C0 "df6d0690-79e5-55b6-a5ec-c1e2f77f580a"
#define NIC1 "2b8d8f0e-8f3c-4c55-a3b1-6f2b1c0d9e7a"
#define NIC2 "6f5c3a1e-1b2d-4c3e-9f4a-0a1b2c3d4e5f"

static json_t *sources;

static orr_kv_config config(void) {
  orr_kv_config c = {"quickstart", "orrery-test", sources};
  return c;
}

/* The quickstart's document: 256 MiB, one CPU, the default guest's kernel,
** SCSI controller 0 with a root disk, COM1. */
static json_t *quickstart_doc(void) {
  json_t *doc = orr_doc_new("quickstart"), *norm = NULL;
  json_t *vm = json_object_get(doc, "VirtualMachine");
  orr_error e = {0, ""};
  json_object_set_new(vm, "ComputeTopology",
                      json_pack("{s:{s:i}, s:{s:i}}", "Memory", "SizeInMB", 256,
                                "Processor", "Count", 1));
  json_object_set_new(json_object_get(vm, "Chipset"), "LinuxKernelDirect",
                      json_pack("{s:s, s:s, s:s}", "KernelFilePath", KERNEL,
                                "InitRdPath", INITRD, "KernelCmdLine",
                                "console=ttyS0 quiet"));
  json_object_set_new(json_object_get(vm, "Devices"), "Scsi",
                      json_pack("{s:{s:{s:{s:s, s:s}}}}", C0, "Attachments",
                                "0", "Type", "VirtualDisk", "Path",
                                "/srv/orrery/root.qcow2"));
  json_object_set_new(json_object_get(vm, "Devices"), "ComPorts",
                      json_pack("{s:{s:s}}", "0", "NamedPipe",
                                "/run/orrery/quickstart/com1.sock"));
  if (orr_doc_check(doc, &norm, &e) != 0)
    TEST_FAIL_("document: %s", e.msg);
  json_decref(doc);
  return norm;
}

static void check_vm(const json_t *vm) {
  orr_error e = {0, ""};
  if (orr__kv_check("v1.VirtualMachine", vm, "manifest", &e) != 0)
    TEST_FAIL_("manifest not schema-valid: %s", e.msg);
}

static void check_req(const json_t *req) {
  orr_error e = {0, ""};
  if (orr__kv_check_request(req, &e) != 0) {
    char *t = json_dumps(req, JSON_COMPACT);
    TEST_FAIL_("request not schema-valid: %s\n%s", e.msg, t);
  }
}

static void check_plan(const json_t *plan) {
  size_t i;
  json_t *s;
  ASSERT(json_array_size(json_object_get(plan, "do")) > 0);
  json_array_foreach(json_object_get(plan, "do"), i, s) {
    check_req(s);
    if (!json_is_null(json_object_get(s, "undo")))
      check_req(json_object_get(s, "undo"));
  }
}

static const json_t *at(const json_t *v, const char *path) {
  /* "a.b.0.c": object keys and array indices. */
  char buf[256], *save = NULL;
  snprintf(buf, sizeof buf, "%s", path);
  for (char *t = strtok_r(buf, ".", &save); t && v;
       t = strtok_r(NULL, ".", &save))
    v = json_is_array(v) ? json_array_get(v, (size_t)atoi(t))
                         : json_object_get(v, t);
  return v;
}

#define ASSERT_AT_STR(v, path, want)                                           \
  ASSERT_STR_EQ(json_string_value(at(v, path)), want)

static void test_quickstart_manifest(void) {
  orr_kv_config cfg = config();
  json_t *doc = quickstart_doc(), *vm = NULL, *ignored = NULL;
  orr_error e = {0, ""};
  const json_t *d;
  ASSERT_OK(orr__kv_manifest(doc, &cfg, &vm, &ignored, &e));
  check_vm(vm);
  ASSERT_AT_STR(vm, "apiVersion", "kubevirt.io/v1");
  ASSERT_AT_STR(vm, "kind", "VirtualMachine");
  ASSERT_AT_STR(vm, "metadata.name", "quickstart");
  ASSERT_AT_STR(vm, "metadata.namespace", "orrery-test");
  ASSERT_AT_STR(vm, "spec.runStrategy", "Manual");
  d = at(vm, "spec.template.spec.domain");
  ASSERT_AT_STR(d, "memory.guest", "256Mi");
  ASSERT_EQ(json_integer_value(at(d, "cpu.cores")), 1);
  ASSERT_AT_STR(d, "firmware.kernelBoot.container.image",
                "registry.example/orrery/guest:1");
  ASSERT_AT_STR(d, "firmware.kernelBoot.container.kernelPath", "/boot/vmlinuz");
  ASSERT_AT_STR(d, "firmware.kernelBoot.container.initrdPath",
                "/boot/initrd.img");
  ASSERT_AT_STR(d, "firmware.kernelBoot.kernelArgs", "console=ttyS0 quiet");
  ASSERT_AT_STR(d, "devices.disks.0.name", "scsi-0-0");
  ASSERT_AT_STR(d, "devices.disks.0.disk.bus", "scsi");
  ASSERT_AT_STR(d, "devices.disks.0.serial", "orr-0-0");
  ASSERT(json_is_true(at(d, "devices.autoattachSerialConsole")));
  ASSERT_AT_STR(vm, "spec.template.spec.volumes.0.name", "scsi-0-0");
  ASSERT_AT_STR(vm,
                "spec.template.spec.volumes.0.persistentVolumeClaim.claimName",
                "quickstart-root");
  /* StopOnReset and the console socket path mean nothing on a cluster. */
  {
    char *t = json_dumps(ignored, JSON_COMPACT);
    ASSERT_STR_CONTAINS(t, "VirtualMachine.StopOnReset");
    ASSERT_STR_CONTAINS(t, "ComPorts.0.NamedPipe");
    free(t);
  }
  /* The boot document rides along for re-attach. */
  ASSERT_STR_CONTAINS(
      json_string_value(json_object_get(at(vm, "metadata.annotations"),
                                        "orrery.io/document")),
      "\"SizeInMB\":256");
  json_decref(ignored);
  json_decref(vm);
  json_decref(doc);
}

/* Every field the translation uses, in one document. */
static void test_whole_mapping(void) {
  orr_kv_config cfg = config();
  json_t *doc, *norm = NULL, *vm = NULL, *ignored = NULL;
  orr_error e = {0, ""};
  json_error_t je;
  const json_t *d;
  char *t;
  doc = json_loads(
      "{\"Owner\":\"full\",\"SchemaVersion\":{\"Major\":2,\"Minor\":1},"
      "\"VirtualMachine\":{\"StopOnReset\":true,"
      "\"Chipset\":{\"Uefi\":{\"ApplySecureBootTemplate\":\"Apply\","
      "\"BootThis\":{\"DeviceType\":\"ScsiDrive\",\"DevicePath\":"
      "\"" C0 "/1\"}},\"UseUtc\":true,\"BaseBoardSerialNumber\":\"SN1\"},"
      "\"ComputeTopology\":{\"Memory\":{\"SizeInMB\":2048,\"Backing\":"
      "\"Virtual\"},\"Processor\":{\"Count\":4,\"Limit\":50000,"
      "\"Reservation\":25000}},"
      "\"Devices\":{\"Scsi\":{\"" C0 "\":{\"Attachments\":{"
      "\"0\":{\"Type\":\"Iso\",\"Path\":\"/srv/install.iso\"},"
      "\"1\":{\"Type\":\"VirtualDisk\",\"Path\":\"/srv/orrery/root.qcow2\","
      "\"CachingMode\":\"Cached\"},"
      "\"2\":{\"Type\":\"PassThru\",\"Path\":\"/dev/sdz\"}}}},"
      "\"NetworkAdapters\":{\"" NIC1 "\":{\"EndpointId\":\"pod\"},"
      "\"" NIC2 "\":{\"EndpointId\":\"storage-endpoint\",\"MacAddress\":"
      "\"00-15-5D-52-C0-0B\"}},"
      "\"VirtualPci\":{\"11111111-2222-3333-4444-555555555555\":{"
      "\"Functions\":[{\"DeviceInstancePath\":\"qemu:virtio-rng-pci\"}]},"
      "\"11111111-2222-3333-4444-666666666666\":{\"Functions\":[{"
      "\"DeviceInstancePath\":\"0000:65:00.0\"}],"
      "\"PropagateNumaAffinity\":true}},"
      "\"Plan9\":{\"Shares\":[{\"Name\":\"src\",\"AccessName\":"
      "\"src\",\"Path\":\"/srv/src\",\"Port\":564,\"ReadOnly\":true}]},"
      "\"Keyboard\":{},\"VideoMonitor\":{}}}}",
      0, &je);
  ASSERT_NOT_NULL(doc);
  json_object_set_new(sources, "/srv/install.iso",
                      json_string("containerdisk:registry.example/iso:1"));
  json_object_set_new(sources, "/dev/sdz", json_string("pvc:san-lun"));
  json_object_set_new(sources, "storage-endpoint",
                      json_string("multus:infra/storage"));
  json_object_set_new(sources, "0000:65:00.0",
                      json_string("hostdevice:nvidia.com/GA102GL"));
  json_object_set_new(sources, "/srv/src", json_string("pvc:sources"));
  if (orr_doc_check(doc, &norm, &e) != 0)
    TEST_FAIL_("document: %s", e.msg);
  ASSERT_OK(orr__kv_manifest(norm, &cfg, &vm, &ignored, &e));
  check_vm(vm);
  d = at(vm, "spec.template.spec.domain");
  ASSERT(json_is_true(at(d, "firmware.bootloader.efi.secureBoot")));
  ASSERT(json_is_true(at(d, "features.smm.enabled")));
  ASSERT_AT_STR(d, "firmware.serial", "SN1");
  ASSERT_NOT_NULL(at(d, "clock.utc"));
  ASSERT_AT_STR(d, "memory.guest", "2048Mi");
  ASSERT_EQ(json_integer_value(at(d, "cpu.cores")), 4);
  /* 50% of 4 CPUs, 25% of 4 CPUs */
  ASSERT_AT_STR(d, "resources.limits.cpu", "2000m");
  ASSERT_AT_STR(d, "resources.requests.cpu", "1000m");
  ASSERT_AT_STR(d, "devices.disks.0.cdrom.bus", "scsi");
  ASSERT_AT_STR(d, "devices.disks.1.name", "scsi-0-1");
  ASSERT_EQ(json_integer_value(at(d, "devices.disks.1.bootOrder")), 1);
  ASSERT_AT_STR(d, "devices.disks.2.lun.bus", "scsi");
  ASSERT_NOT_NULL(at(d, "devices.interfaces.0.masquerade"));
  ASSERT_NOT_NULL(at(d, "devices.interfaces.1.bridge"));
  ASSERT_AT_STR(d, "devices.interfaces.1.macAddress", "00:15:5d:52:c0:0b");
  ASSERT_AT_STR(vm, "spec.template.spec.networks.1.multus.networkName",
                "infra/storage");
  ASSERT_NOT_NULL(at(d, "devices.rng"));
  ASSERT_AT_STR(d, "devices.hostDevices.0.deviceName", "nvidia.com/GA102GL");
  ASSERT_AT_STR(d, "devices.hostDevices.0.name",
                "pci-11111111-2222-3333-4444-666666666666");
  ASSERT_AT_STR(d, "devices.filesystems.0.name", "src");
  ASSERT_NOT_NULL(at(d, "devices.filesystems.0.virtiofs"));
  ASSERT(json_is_true(at(d, "devices.autoattachGraphicsDevice")));
  ASSERT(json_is_false(at(d, "devices.autoattachSerialConsole")));
  t = json_dumps(ignored, JSON_COMPACT);
  ASSERT_STR_CONTAINS(t, "Memory.Backing");
  ASSERT_STR_CONTAINS(t, "Attachments.1.CachingMode");
  ASSERT_STR_CONTAINS(t, "PropagateNumaAffinity");
  ASSERT_STR_CONTAINS(t, "Shares[0].Port");
  free(t);
  json_decref(ignored);
  json_decref(vm);
  /* Two NICs on the pod network: KubeVirt gives one. */
  json_object_set_new(sources, "storage-endpoint", json_string("pod"));
  ASSERT_ERR(orr__kv_manifest(norm, &cfg, &vm, NULL, &e), ORR_ENOTSUP);
  ASSERT_STR_CONTAINS(e.msg, "one pod network");
  json_decref(norm);
  json_decref(doc);
}

static void test_every_verb(void) {
  orr_kv_config cfg = config();
  json_t *doc = quickstart_doc(), *vm = NULL, *req;
  orr_kv_verb_opts o = {0};
  orr_error e = {0, ""};
  static const orr_kv_verb verbs[] = {
      ORR_KV_CREATE,  ORR_KV_START,  ORR_KV_STOP,    ORR_KV_TERMINATE,
      ORR_KV_RESTART, ORR_KV_PAUSE,  ORR_KV_UNPAUSE, ORR_KV_MIGRATE,
      ORR_KV_DELETE,  ORR_KV_GET_VM, ORR_KV_GET_VMI};
  ASSERT_OK(orr__kv_manifest(doc, &cfg, &vm, NULL, &e));
  o.manifest = vm;
  o.grace_s = 10;
  o.to = "node:worker-2";
  for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
    ASSERT_OK(orr__kv_verb(&cfg, verbs[i], &o, &req, &e));
    check_req(req);
    json_decref(req);
  }
  ASSERT_OK(orr__kv_verb(&cfg, ORR_KV_PAUSE, NULL, &req, &e));
  ASSERT_AT_STR(req, "path",
                "/apis/subresources.kubevirt.io/v1/namespaces/orrery-test/"
                "virtualmachineinstances/quickstart/pause");
  ASSERT_AT_STR(req, "method", "PUT");
  json_decref(req);
  ASSERT_OK(orr__kv_verb(&cfg, ORR_KV_STOP, &o, &req, &e));
  ASSERT_EQ(json_integer_value(at(req, "body.gracePeriod")), 10);
  json_decref(req);
  o.to = "unix:/run/m.sock";
  ASSERT_ERR(orr__kv_verb(&cfg, ORR_KV_MIGRATE, &o, &req, &e), ORR_EINVAL);
  ASSERT_STR_CONTAINS(e.msg, "node:NAME");
  json_decref(vm);
  json_decref(doc);
}

static json_t *modify(const char *path, const char *type, json_t *settings) {
  json_t *r = json_pack("{s:s}", "ResourcePath", path);
  if (type)
    json_object_set_new(r, "RequestType", json_string(type));
  if (settings)
    json_object_set_new(r, "Settings", settings);
  return r;
}

static void test_scsi_hotplug(void) {
  orr_kv_config cfg = config();
  json_t *doc = quickstart_doc(), *entry = NULL, *plan = NULL, *req;
  orr_error e = {0, ""};
  ASSERT_OK(orr__kv_plan_new(doc, &cfg, &entry, &e));
  req = modify("VirtualMachine/Devices/Scsi/" C0 "/Attachments/3", "Add",
               json_pack("{s:s, s:s}", "Type", "VirtualDisk", "Path", DATA));
  ASSERT_OK(orr__kv_plan_modify(doc, json_object_get(entry, "manifest"), req,
                                &cfg, &plan, &e));
  check_plan(plan);
  {
    const json_t *s = at(plan, "do.0");
    ASSERT_AT_STR(s, "method", "PUT");
    ASSERT_STR_CONTAINS(json_string_value(at(s, "path")),
                        "/virtualmachines/quickstart/addvolume");
    ASSERT_AT_STR(s, "body.name", "scsi-0-3");
    ASSERT_AT_STR(s, "body.disk.disk.bus", "scsi");
    ASSERT_AT_STR(s, "body.volumeSource.persistentVolumeClaim.claimName",
                  "quickstart-data");
    ASSERT(json_is_true(
        at(s, "body.volumeSource.persistentVolumeClaim.hotpluggable")));
    ASSERT_STR_CONTAINS(json_string_value(at(s, "undo.path")), "/removevolume");
  }
  ASSERT_OK(orr__kv_plan_record(entry, plan, &e));
  check_vm(json_object_get(entry, "manifest"));
  ASSERT_AT_STR(entry, "manifest.spec.template.spec.volumes.1.name",
                "scsi-0-3");
  json_decref(plan);
  json_decref(req);
  /* A container disk is no hot-pluggable source. */
  json_object_set_new(sources, "/tmp/cd.img",
                      json_string("containerdisk:registry.example/disk:1"));
  req = modify(
      "VirtualMachine/Devices/Scsi/" C0 "/Attachments/4", "Add",
      json_pack("{s:s, s:s}", "Type", "VirtualDisk", "Path", "/tmp/cd.img"));
  ASSERT_ERR(orr__kv_plan_modify(doc, json_object_get(entry, "manifest"), req,
                                 &cfg, &plan, &e),
             ORR_ENOTSUP);
  ASSERT_STR_CONTAINS(e.msg, "Settings.Path");
  ASSERT_STR_CONTAINS(e.msg, "containerdisk");
  json_decref(req);
  /* A path with no source at all: EINVAL naming it. */
  req = modify("VirtualMachine/Devices/Scsi/" C0 "/Attachments/5", "Add",
               json_pack("{s:s, s:s}", "Type", "VirtualDisk", "Path",
                         "/var/lib/elsewhere.img"));
  ASSERT_ERR(orr__kv_plan_modify(doc, json_object_get(entry, "manifest"), req,
                                 &cfg, &plan, &e),
             ORR_EINVAL);
  ASSERT_STR_CONTAINS(e.msg, "Settings.Path");
  ASSERT_STR_CONTAINS(e.msg, "/var/lib/elsewhere.img");
  json_decref(req);
  /* Remove, planned from the live document. */
  {
    json_t *live = json_deep_copy(doc);
    json_object_set_new(
        json_object_get(
            json_object_get(
                json_object_get(json_object_get(live, "VirtualMachine"),
                                "Devices"),
                "Scsi"),
            C0),
        "Attachments",
        json_pack("{s:{s:s, s:s}, s:{s:s, s:s}}", "0", "Type", "VirtualDisk",
                  "Path", "/srv/orrery/root.qcow2", "3", "Type", "VirtualDisk",
                  "Path", DATA));
    req = modify("VirtualMachine/Devices/Scsi/" C0 "/Attachments/3", "Remove",
                 NULL);
    ASSERT_OK(orr__kv_plan_modify(live, json_object_get(entry, "manifest"), req,
                                  &cfg, &plan, &e));
    check_plan(plan);
    ASSERT_AT_STR(plan, "do.0.body.name", "scsi-0-3");
    ASSERT_STR_CONTAINS(json_string_value(at(plan, "do.0.undo.path")),
                        "/addvolume");
    ASSERT_OK(orr__kv_plan_record(entry, plan, &e));
    check_vm(json_object_get(entry, "manifest"));
    ASSERT_EQ(json_array_size(at(entry, "manifest.spec.template.spec.volumes")),
              1);
    ASSERT_EQ(json_array_size(json_object_get(entry, "requests")), 3);
    json_decref(plan);
    json_decref(req);
    json_decref(live);
  }
  json_decref(entry);
  json_decref(doc);
}

static void test_nic_hotplug(void) {
  orr_kv_config cfg = config();
  json_t *doc = quickstart_doc(), *entry = NULL, *plan = NULL, *req, *vm;
  orr_error e = {0, ""};
  ASSERT_OK(orr__kv_plan_new(doc, &cfg, &entry, &e));
  /* The pod network cannot be hot-plugged; a multus one can. */
  req = modify("VirtualMachine/Devices/NetworkAdapters/" NIC1, "Add",
               json_pack("{s:s}", "EndpointId", "pod"));
  ASSERT_ERR(orr__kv_plan_modify(doc, json_object_get(entry, "manifest"), req,
                                 &cfg, &plan, &e),
             ORR_ENOTSUP);
  ASSERT_STR_CONTAINS(e.msg, "EndpointId");
  json_decref(req);
  req = modify("VirtualMachine/Devices/NetworkAdapters/" NIC1, "Add",
               json_pack("{s:s, s:s}", "EndpointId", "multus:default/storage",
                         "MacAddress", "00-15-5D-52-C0-0A"));
  ASSERT_OK(orr__kv_plan_modify(doc, json_object_get(entry, "manifest"), req,
                                &cfg, &plan, &e));
  check_plan(plan);
  ASSERT_AT_STR(plan, "do.0.method", "PATCH");
  ASSERT_AT_STR(plan, "do.0.body.0.value.0.macAddress", "00:15:5d:52:c0:0a");
  ASSERT_AT_STR(plan, "do.0.body.1.value.0.multus.networkName",
                "default/storage");
  ASSERT_OK(orr__kv_plan_record(entry, plan, &e));
  json_decref(plan);
  json_decref(req);
  req = modify("VirtualMachine/Devices/NetworkAdapters/" NIC2, "Add",
               json_pack("{s:s}", "EndpointId", "multus:backup"));
  ASSERT_OK(orr__kv_plan_modify(doc, json_object_get(entry, "manifest"), req,
                                &cfg, &plan, &e));
  check_plan(plan);
  ASSERT_AT_STR(plan, "do.0.body.0.path",
                "/spec/template/spec/domain/devices/interfaces/-");
  ASSERT_OK(orr__kv_plan_record(entry, plan, &e));
  json_decref(plan);
  json_decref(req);
  vm = json_object_get(entry, "manifest");
  check_vm(vm);
  ASSERT_EQ(json_array_size(at(vm, "spec.template.spec.networks")), 2);
  /* Removing the second one patches index 1: found by name. */
  req = modify("VirtualMachine/Devices/NetworkAdapters/" NIC2, "Remove", NULL);
  ASSERT_OK(orr__kv_plan_modify(doc, vm, req, &cfg, &plan, &e));
  check_plan(plan);
  ASSERT_AT_STR(plan, "do.0.body.0.path",
                "/spec/template/spec/domain/devices/interfaces/1/state");
  ASSERT_AT_STR(plan, "do.0.body.0.value", "absent");
  json_decref(plan);
  json_decref(req);
  /* Planned against an object read from a cluster: resourceVersion first. */
  json_object_set_new(json_object_get(vm, "metadata"), "resourceVersion",
                      json_string("41"));
  req = modify("VirtualMachine/Devices/NetworkAdapters/" NIC1, "Remove", NULL);
  ASSERT_OK(orr__kv_plan_modify(doc, vm, req, &cfg, &plan, &e));
  check_plan(plan);
  ASSERT_AT_STR(plan, "do.0.body.0.path", "/metadata/resourceVersion");
  ASSERT_AT_STR(plan, "do.0.body.0.value", "41");
  json_decref(plan);
  json_decref(req);
  json_decref(entry);
  json_decref(doc);
}

static void test_refusals(void) {
  orr_kv_config cfg = config();
  orr_error e = {0, ""};
  json_t *vm = NULL, *doc, *plan;
  struct {
    const char *key; /* dotted path under VirtualMachine to set */
    const char *json;
    int code;
    const char *field;
  } cases[] = {
      {"StorageQoS", "{\"IopsMaximum\":100}", ORR_ENOTSUP,
       "VirtualMachine.StorageQoS"},
      {"ComputeTopology.Processor", "{\"Count\":2,\"Weight\":200}", ORR_ENOTSUP,
       "Processor.Weight"},
      {"Devices.ComPorts", "{\"1\":{\"NamedPipe\":\"/run/x.sock\"}}",
       ORR_ENOTSUP, "ComPorts.1"},
      {"Devices.VirtualSmb", "{}", ORR_ENOTSUP, "Devices.VirtualSmb"},
      {"Devices.NetworkAdapters", "{\"" NIC1 "\":{\"EndpointId\":\"user\"}}",
       ORR_EINVAL, "NetworkAdapters." NIC1 ".EndpointId"},
      {"Devices.VirtualPci",
       "{\"" NIC1 "\":{\"Functions\":[{\"DeviceInstancePath\":"
       "\"0000:03:00.0\"}]}}",
       ORR_EINVAL, "DeviceInstancePath"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    json_t *base = quickstart_doc(), *cur, *norm = NULL;
    char key[128], *save = NULL, *tok, *next;
    json_error_t je;
    snprintf(key, sizeof key, "%s", cases[i].key);
    cur = json_object_get(base, "VirtualMachine");
    tok = strtok_r(key, ".", &save);
    while ((next = strtok_r(NULL, ".", &save)) != NULL) {
      if (json_object_get(cur, tok) == NULL)
        json_object_set_new(cur, tok, json_object());
      cur = json_object_get(cur, tok);
      tok = next;
    }
    json_object_set_new(cur, tok, json_loads(cases[i].json, 0, &je));
    if (orr_doc_check(base, &norm, &e) != 0)
      TEST_FAIL_("case %zu: document: %s", i, e.msg);
    ASSERT_ERR(orr__kv_manifest(norm, &cfg, &vm, NULL, &e), cases[i].code);
    ASSERT_NULL(vm);
    if (strstr(e.msg, cases[i].field) == NULL)
      TEST_FAIL_("case %zu: \"%s\" does not name %s", i, e.msg, cases[i].field);
    json_decref(norm);
    json_decref(base);
  }
  /* A kernel on a PVC: KubeVirt boots kernels from images only. */
  json_object_set_new(sources, KERNEL, json_string("pvc:kernels"));
  doc = quickstart_doc();
  ASSERT_ERR(orr__kv_manifest(doc, &cfg, &vm, NULL, &e), ORR_ENOTSUP);
  ASSERT_STR_CONTAINS(e.msg, "LinuxKernelDirect.KernelFilePath");
  /* Not a source at all. */
  json_object_set_new(sources, KERNEL, json_string("nfs:server/kernels"));
  ASSERT_ERR(orr__kv_manifest(doc, &cfg, &vm, NULL, &e), ORR_EINVAL);
  ASSERT_STR_CONTAINS(e.msg, "KernelFilePath");
  ASSERT_STR_CONTAINS(e.msg, "not a cluster source");
  json_object_set_new(
      sources, KERNEL,
      json_string(
          "containerdisk:registry.example/orrery/guest:1#/boot/vmlinuz"));
  /* Names Kubernetes would refuse. */
  cfg.name = "Quick_Start";
  ASSERT_ERR(orr__kv_manifest(doc, &cfg, &vm, NULL, &e), ORR_EINVAL);
  ASSERT_STR_CONTAINS(e.msg, "DNS-1123");
  cfg = config();
  /* Run-time changes KubeVirt cannot make. */
  {
    json_t *req =
        modify("VirtualMachine/Devices/VirtualPci/" NIC1, "Add",
               json_pack("{s:[{s:s}]}", "Functions", "DeviceInstancePath",
                         "qemu:virtio-rng-pci"));
    ASSERT_OK(orr__kv_manifest(doc, &cfg, &vm, NULL, &e));
    ASSERT_ERR(orr__kv_plan_modify(doc, vm, req, &cfg, &plan, &e), ORR_ENOTSUP);
    ASSERT_STR_CONTAINS(e.msg, "VirtualPci");
    json_decref(req);
    req = modify("VirtualMachine/ComputeTopology/Memory/SizeInMB", NULL,
                 json_integer(128));
    ASSERT_ERR(orr__kv_plan_modify(doc, vm, req, &cfg, &plan, &e), ORR_ENOTSUP);
    json_decref(req);
    req = modify("VirtualMachine/ComputeTopology/Memory/SizeInMB", NULL,
                 json_integer(1024));
    ASSERT_OK(orr__kv_plan_modify(doc, vm, req, &cfg, &plan, &e));
    check_plan(plan);
    ASSERT_AT_STR(plan, "do.0.body.0.value", "1024Mi");
    json_decref(plan);
    json_decref(req);
    json_decref(vm);
  }
  json_decref(doc);
}

static void test_schema_catches(void) {
  orr_kv_config cfg = config();
  json_t *doc = quickstart_doc(), *vm = NULL, *bad, *req;
  orr_error e = {0, ""};
  json_error_t je;
  ASSERT_OK(orr__kv_manifest(doc, &cfg, &vm, NULL, &e));
  /* An enum (read from KubeVirt's description of bus). */
  bad = json_deep_copy(vm);
  json_object_set_new(
      json_object_get(
          json_array_get(at(bad, "spec.template.spec.domain.devices.disks"), 0),
          "disk"),
      "bus", json_string("ide"));
  ASSERT_ERR(orr__kv_check("v1.VirtualMachine", bad, "vm", &e), ORR_EINVAL);
  ASSERT_STR_CONTAINS(e.msg,
                      "vm.spec.template.spec.domain.devices.disks[0].disk.bus");
  ASSERT_STR_CONTAINS(e.msg, "virtio, sata, scsi, usb");
  json_decref(bad);
  /* An unknown field, a wrong type, a missing required field. */
  bad = json_deep_copy(vm);
  json_object_set_new(json_object_get(bad, "spec"), "running2", json_true());
  ASSERT_ERR(orr__kv_check("v1.VirtualMachine", bad, "vm", &e), ORR_EINVAL);
  ASSERT_STR_CONTAINS(
      e.msg, "vm.spec.running2: is not a field of v1.VirtualMachineSpec");
  json_decref(bad);
  bad = json_deep_copy(vm);
  json_object_set_new((json_t *)at(bad, "spec.template.spec.domain.cpu"),
                      "cores", json_string("1"));
  ASSERT_ERR(orr__kv_check("v1.VirtualMachine", bad, "vm", &e), ORR_EINVAL);
  ASSERT_STR_CONTAINS(e.msg, "cpu.cores: must be integer, got a string");
  json_decref(bad);
  bad = json_deep_copy(vm);
  json_object_del(json_object_get(bad, "spec"), "template");
  ASSERT_ERR(orr__kv_check("v1.VirtualMachine", bad, "vm", &e), ORR_EINVAL);
  ASSERT_STR_CONTAINS(e.msg, "vm.spec.template: is required");
  json_decref(bad);
  /* int32 range. */
  bad = json_deep_copy(vm);
  json_object_set_new(
      (json_t *)at(bad, "spec.template.spec.domain.devices.disks.0"),
      "bootOrder", json_integer(1LL << 33));
  ASSERT_ERR(orr__kv_check("v1.VirtualMachine", bad, "vm", &e), ORR_EINVAL);
  ASSERT_STR_CONTAINS(e.msg, "bootOrder: does not fit an int32");
  json_decref(bad);
  /* Requests: method, path, query, body, patch paths. */
  req = json_loads("{\"method\":\"POST\",\"path\":\"/apis/subresources."
                   "kubevirt.io/v1/namespaces/a/virtualmachines/b/start\","
                   "\"body\":{}}",
                   0, &je);
  ASSERT_ERR(orr__kv_check_request(req, &e), ORR_EINVAL);
  ASSERT_STR_CONTAINS(e.msg, "POST is not an operation");
  json_decref(req);
  req = json_loads("{\"method\":\"PUT\",\"path\":\"/apis/subresources."
                   "kubevirt.io/v1/namespaces/a/virtualmachines/b/freeze\","
                   "\"body\":{}}",
                   0, &je);
  ASSERT_ERR(orr__kv_check_request(req, &e), ORR_EINVAL);
  ASSERT_STR_CONTAINS(e.msg, "not a path");
  json_decref(req);
  req = json_loads("{\"method\":\"GET\",\"path\":\"/apis/kubevirt.io/v1/"
                   "namespaces/a/virtualmachineinstances?watch=true&follow="
                   "1\"}",
                   0, &je);
  ASSERT_ERR(orr__kv_check_request(req, &e), ORR_EINVAL);
  ASSERT_STR_CONTAINS(e.msg, "\"follow\"");
  json_decref(req);
  req = json_loads("{\"method\":\"PUT\",\"path\":\"/apis/subresources."
                   "kubevirt.io/v1/namespaces/a/virtualmachines/b/addvolume\","
                   "\"body\":{\"name\":\"x\",\"disk\":{}}}",
                   0, &je);
  ASSERT_ERR(orr__kv_check_request(req, &e), ORR_EINVAL);
  ASSERT_STR_CONTAINS(e.msg, "v1.AddVolumeOptions.volumeSource: is required");
  json_decref(req);
  req = json_loads("{\"method\":\"PATCH\",\"path\":\"/apis/kubevirt.io/v1/"
                   "namespaces/a/virtualmachines/b\",\"body\":[{\"op\":"
                   "\"add\",\"path\":\"/spec/template/spec/domain/devices/"
                   "nics/-\",\"value\":{}}]}",
                   0, &je);
  ASSERT_ERR(orr__kv_check_request(req, &e), ORR_EINVAL);
  ASSERT_STR_CONTAINS(e.msg, "devices/nics/- is not a field");
  json_decref(req);
  req = json_loads("{\"method\":\"PATCH\",\"path\":\"/apis/kubevirt.io/v1/"
                   "namespaces/a/virtualmachines/b\",\"body\":[{\"op\":"
                   "\"add\",\"path\":\"/spec/template/spec/domain/devices/"
                   "interfaces/-\",\"value\":{\"bridge\":{}}}]}",
                   0, &je);
  ASSERT_ERR(orr__kv_check_request(req, &e), ORR_EINVAL);
  ASSERT_STR_CONTAINS(e.msg, "name: is required");
  json_decref(req);
  /* The schema says where it came from. */
  ASSERT_STR_EQ(json_string_value(at(orr__kv_schema(), "source.version")),
                "v1.9.0");
  json_decref(vm);
  json_decref(doc);
}

static void test_follow_status(void) {
  orr_kv_config cfg = config();
  json_t *doc = quickstart_doc(), *live = NULL, *vmi;
  json_error_t je;
  orr_error e = {0, ""};
  bool changed = false;
  /* Running; the root disk gone (removed behind our back), data hot-plugged
  ** and Ready, memory hot-plugged to 512 MiB, two cores. */
  vmi = json_loads(
      "{\"apiVersion\":\"kubevirt.io/v1\",\"kind\":\"VirtualMachineInstance\","
      "\"metadata\":{\"name\":\"quickstart\",\"resourceVersion\":\"7\"},"
      "\"spec\":{\"domain\":{\"devices\":{\"disks\":[{\"name\":\"scsi-0-3\","
      "\"disk\":{\"bus\":\"scsi\",\"readonly\":true}}]}},\"volumes\":[{"
      "\"name\":\"scsi-0-3\",\"persistentVolumeClaim\":{\"claimName\":"
      "\"quickstart-data\",\"hotpluggable\":true}}]},"
      "\"status\":{\"phase\":\"Running\",\"volumeStatus\":[{\"name\":"
      "\"scsi-0-3\",\"phase\":\"Ready\",\"target\":\"sdb\",\"hotplugVolume\":"
      "{}}],\"memory\":{\"guestCurrent\":\"512Mi\"},"
      "\"currentCPUTopology\":{\"sockets\":1,\"cores\":2,\"threads\":1}}}",
      0, &je);
  ASSERT_NOT_NULL(vmi);
  ASSERT_OK(orr__kv_check("v1.VirtualMachineInstance", vmi, "vmi", &e));
  ASSERT_STR_EQ(orr__kv_vmi_state(vmi), "Running");
  ASSERT_OK(orr__kv_follow_status(doc, vmi, &cfg, &live, &changed, &e));
  ASSERT(changed);
  ASSERT_NULL(at(live, "VirtualMachine.Devices.Scsi." C0 ".Attachments.0"));
  ASSERT_AT_STR(live, "VirtualMachine.Devices.Scsi." C0 ".Attachments.3.Path",
                DATA);
  ASSERT(json_is_true(
      at(live, "VirtualMachine.Devices.Scsi." C0 ".Attachments.3.ReadOnly")));
  ASSERT_EQ(json_integer_value(
                at(live, "VirtualMachine.ComputeTopology.Memory.SizeInMB")),
            512);
  ASSERT_EQ(json_integer_value(
                at(live, "VirtualMachine.ComputeTopology.Processor.Count")),
            2);
  {
    /* The followed document is still a valid document. */
    json_t *norm = NULL;
    ASSERT_OK(orr_doc_check(live, &norm, &e));
    json_decref(norm);
  }
  json_decref(live);
  /* Paused; a VMI still scheduling changes nothing. */
  json_object_set_new(
      json_object_get(vmi, "status"), "conditions",
      json_pack("[{s:s, s:s}]", "type", "Paused", "status", "True"));
  ASSERT_STR_EQ(orr__kv_vmi_state(vmi), "Paused");
  json_object_set_new(json_object_get(vmi, "status"), "phase",
                      json_string("Scheduling"));
  ASSERT_STR_EQ(orr__kv_vmi_state(vmi), "Created");
  ASSERT_OK(orr__kv_follow_status(doc, vmi, &cfg, &live, &changed, &e));
  ASSERT(!changed);
  ASSERT(json_equal(live, doc));
  json_decref(live);
  json_decref(vmi);
  json_decref(doc);
}

static void test_json_patch(void) {
  json_error_t je;
  json_t *obj = json_loads("{\"a\":[1,2],\"b\":{\"c\":\"x\"}}", 0, &je);
  json_t *ops =
      json_loads("[{\"op\":\"test\",\"path\":\"/b/c\",\"value\":\"x\"},"
                 "{\"op\":\"add\",\"path\":\"/a/-\",\"value\":3},"
                 "{\"op\":\"add\",\"path\":\"/a/0\",\"value\":0},"
                 "{\"op\":\"replace\",\"path\":\"/b/c\",\"value\":\"y\"},"
                 "{\"op\":\"remove\",\"path\":\"/a/1\"},"
                 "{\"op\":\"add\",\"path\":\"/b/d~1e\",\"value\":true}]",
                 0, &je);
  json_t *out = NULL,
         *want = json_loads("{\"a\":[0,2,3],\"b\":{\"c\":\"y\",\"d/e\":true}}",
                            0, &je);
  orr_error e = {0, ""};
  ASSERT_OK(orr__kv_json_patch(obj, ops, &out, &e));
  ASSERT(json_equal(out, want));
  json_decref(out);
  json_decref(ops);
  /* A failed test leaves nothing applied (the copy is dropped). */
  ops = json_loads("[{\"op\":\"replace\",\"path\":\"/b/c\",\"value\":\"z\"},"
                   "{\"op\":\"test\",\"path\":\"/b/c\",\"value\":\"x\"}]",
                   0, &je);
  ASSERT_ERR(orr__kv_json_patch(obj, ops, &out, &e), ORR_EBUSY);
  ASSERT_NULL(out);
  ASSERT_STR_EQ(json_string_value(at(obj, "b.c")), "x");
  json_decref(ops);
  ops = json_loads("[{\"op\":\"remove\",\"path\":\"/a/2\"}]", 0, &je);
  ASSERT_ERR(orr__kv_json_patch(obj, ops, &out, &e), ORR_EINVAL);
  json_decref(ops);
  json_decref(want);
  json_decref(obj);
}

int main(void) {
  sources = json_pack(
      "{s:s, s:s, s:s, s:s}", KERNEL,
      "containerdisk:registry.example/orrery/guest:1#/boot/vmlinuz", INITRD,
      "containerdisk:registry.example/orrery/guest:1#/boot/initrd.img",
      "/srv/orrery/root.qcow2", "pvc:quickstart-root", DATA,
      "pvc:quickstart-data");
  test_quickstart_manifest();
  test_whole_mapping();
  test_every_verb();
  test_scsi_hotplug();
  test_nic_hotplug();
  test_refusals();
  test_schema_catches();
  test_follow_status();
  test_json_patch();
  json_decref(sources);
  orr__kv_schema_release();
  printf("ok\n");
  return 0;
}

/*
** The qemu backend's translation started for real: the argv a document
** becomes runs in qemu-system-x86_64 (TCG, -S: paused, no guest), and the
** run-time plans execute against it step by step, undos included, over
** QMP with the engine's own client (qmp.c), the one the VM manager uses.
** What QEMU made of it is then asked over the same connection. The same
** translation by value is test-qemu-xlate.c.
*/
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "orrery/qmp.h"
#include "qemu_xlate_util.h"

typedef struct {
  pid_t pid;
  uv_loop_t loop;
  orr_qmp *qmp; /* the engine's QMP client (qmp.c) */
  int ready, ready_status, closed;
  json_t *events; /* {event, data} as they came */
  char errfile[160];
} vmproc;

typedef struct {
  int done, status;
  json_t *result; /* "return", or the error object */
  char desc[256];
} reply;

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
}

static void on_qmp_closed(void *arg) {
  ((vmproc *)arg)->closed = 1;
}

/* Closes the client (every handle, so the loop closes clean), then QEMU. */
static void kill_vm(vmproc *vm) {
  int status;
  if (vm->qmp != NULL) {
    orr_qmp_close(vm->qmp, on_qmp_closed);
    while (!vm->closed)
      uv_run(&vm->loop, UV_RUN_ONCE);
  }
  ASSERT_EQ(uv_loop_close(&vm->loop), 0);
  kill(vm->pid, SIGKILL);
  waitpid(vm->pid, &status, 0);
  json_decref(vm->events);
}

static void on_ready(void *arg, int status) {
  vmproc *vm = arg;
  vm->ready = 1;
  vm->ready_status = status;
}

static void on_event(void *arg, const char *event, json_t *data,
                     int64_t seconds, int64_t microseconds) {
  vmproc *vm = arg;
  (void)seconds;
  (void)microseconds;
  json_array_append_new(vm->events,
                        json_pack("{s:s, s:O?}", "event", event, "data", data));
}

static void on_reply(void *arg, int status, json_t *result,
                     const char *errmsg) {
  reply *r = arg;
  r->done = 1;
  r->status = status;
  r->result = json_incref(result);
  snprintf(r->desc, sizeof r->desc, "%s", errmsg);
}

/* Connects the engine's QMP client and waits for the handshake. */
static void qmp_connect(vmproc *vm, const char *path) {
  orr_qmp_options o = {0};
  ASSERT_UV_OK(uv_loop_init(&vm->loop));
  o.path = path;
  o.timeout_ms = 5000;
  o.command_timeout_ms = 10000; /* a reply that never comes fails */
  o.ready_cb = on_ready;
  o.arg = vm;
  ASSERT_OK(orr_qmp_connect(&vm->loop, &o, &vm->qmp));
  orr_qmp_on_event(vm->qmp, on_event, vm);
  while (!vm->ready)
    uv_run(&vm->loop, UV_RUN_ONCE);
  if (vm->ready_status != 0) {
    dump_stderr(vm);
    TEST_FAIL_("QMP handshake: %s", orr_err_name(vm->ready_status));
  }
}

/*
** Sends cmd ({"execute", "arguments"}, as plans hold them) and waits:
** 0 and *ret (the "return", may be NULL), or ORR_EBACKEND and desc (QEMU
** refused it). Anything else (no answer, QEMU gone) fails the test.
*/
static int qmp_call(vmproc *vm, const json_t *cmd, json_t **ret, char *desc,
                    size_t size) {
  const char *execute = sget(cmd, "execute");
  json_t *args = json_object_get(cmd, "arguments");
  reply r = {0};
  ASSERT_NOT_NULL(execute);
  ASSERT_OK(orr_qmp_send(vm->qmp, execute, json_incref(args), on_reply, &r));
  while (!r.done)
    uv_run(&vm->loop, UV_RUN_ONCE);
  if (r.status != 0 && r.status != ORR_EBACKEND) {
    dump_stderr(vm);
    TEST_FAIL_("%s: %s: %s", execute, orr_err_name(r.status), r.desc);
  }
  if (desc != NULL)
    snprintf(desc, size, "%s", r.desc);
  if (ret != NULL && r.status == 0)
    *ret = json_incref(r.result);
  json_decref(r.result);
  return r.status;
}

static json_t *qmp_ok(vmproc *vm, const char *execute, json_t *args) {
  json_t *cmd = json_pack("{s:s}", "execute", execute), *ret = NULL;
  char desc[256];
  if (args)
    json_object_set_new(cmd, "arguments", args);
  if (qmp_call(vm, cmd, &ret, desc, sizeof desc) != 0)
    TEST_FAIL_("%s: %s", execute, desc);
  json_decref(cmd);
  return ret;
}

static void on_wait_timer(uv_timer_t *t) {
  *(int *)t->data = 1;
}

static void on_timer_closed(uv_handle_t *h) {
  (void)h;
}

/* Waits up to timeout_ms for QEMU's DEVICE_DELETED of id. */
static bool wait_deleted(vmproc *vm, const char *id, int timeout_ms) {
  uv_timer_t timer;
  int expired = 0;
  bool found = false;
  uv_timer_init(&vm->loop, &timer);
  timer.data = &expired;
  uv_timer_start(&timer, on_wait_timer, (uint64_t)timeout_ms, 0);
  while (!found) {
    size_t i;
    json_t *e;
    json_array_foreach(vm->events, i, e) {
      const char *dev = sget(json_object_get(e, "data"), "device");
      if (strcmp(sget(e, "event"), "DEVICE_DELETED") == 0 && dev &&
          strcmp(dev, id) == 0) {
        json_array_remove(vm->events, i);
        found = true;
        break;
      }
    }
    if (found || expired)
      break;
    uv_run(&vm->loop, UV_RUN_ONCE);
  }
  uv_close((uv_handle_t *)&timer, on_timer_closed);
  uv_run(&vm->loop, UV_RUN_NOWAIT);
  return found;
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
    if (qmp_call(vm, s, NULL, errdesc, errsize) != 0) {
      *failed = (int)i;
      for (size_t k = i; k-- > 0;) {
        json_t *undo = json_object_get(json_array_get(steps, k), "undo");
        char udesc[256];
        if (json_is_object(undo) &&
            qmp_call(vm, undo, NULL, udesc, sizeof udesc) != 0)
          TEST_FAIL_("undo of step %zu: %s", k, udesc);
      }
      return -1;
    }
  }
  if (json_is_string(json_object_get(plan, "wait_deleted"))) {
    if (reset_for_unplug)
      json_decref(qmp_ok(vm, "system_reset", NULL));
    ASSERT(wait_deleted(vm, sget(plan, "wait_deleted"), 5000));
  }
  json_array_foreach(json_object_get(plan, "after"), i, s) {
    char adesc[256];
    if (qmp_call(vm, s, NULL, adesc, sizeof adesc) != 0)
      TEST_FAIL_("after step %zu: %s", i, adesc);
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
  vmproc vm = {0};
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
  ASSERT_OK(orr__qemu_plan_scsi_remove(0, 5, true, NULL, 0, &plan, &err));
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
  ASSERT_OK(orr__qemu_plan_memory(192, 256, 256, 0, &plan, &err));
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
  vmproc vm = {0};
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
  scratch_make();
  RUN_TEST(test_real_qemu);
  RUN_TEST(test_real_qemu_uefi);
  scratch_remove();
  return 0;
}

/*
** The typed run-time calls (orr_vm_add_scsi_disk, ...) against a real QEMU
** (TCG, no guest OS): each reaches QEMU and the live document through
** orr_vm_modify's path, and an argument that names no resource fails through
** the callback, from the loop, with the rule in the message.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orrery/builder.h"
#include "orrery/document.h"
#include "orrery/vm.h"
#include "task.h"

typedef struct {
  int done, status;
  json_t *result;
  char msg[512];
} outcome;

static void on_done(void *arg, int status, const orr_error *e, json_t *res) {
  outcome *o = arg;
  o->done++;
  o->status = status;
  snprintf(o->msg, sizeof o->msg, "%s", e->msg);
  o->result = res ? json_incref(res) : NULL;
}

static void reset(outcome *o) {
  json_decref(o->result);
  memset(o, 0, sizeof *o);
}

static int wait_for(orr_engine *eng, outcome *o) {
  /* The contract: never called back from inside the call. */
  ASSERT_EQ(0, o->done);
  while (!o->done)
    uv_run(orr_engine_loop(eng), UV_RUN_ONCE);
  ASSERT_EQ(1, o->done);
  return o->status;
}

static int qemu_has(orr_engine *eng, orr_vm *vm, const char *cmd,
                    const char *what) {
  outcome o = {0};
  char *s;
  int found;
  orr_vm_qmp(vm, cmd, NULL, 0, on_done, &o);
  ASSERT_EQ(0, wait_for(eng, &o));
  s = json_dumps(o.result, JSON_COMPACT);
  found = strstr(s, what) != NULL;
  free(s);
  reset(&o);
  return found;
}

static const json_t *doc_at(orr_vm *vm, const char *a, const char *b,
                            const char *c) {
  const json_t *v = json_object_get(
      json_object_get(orr_vm_document(vm), "VirtualMachine"), "Devices");
  v = json_object_get(v, a);
  if (b)
    v = json_object_get(v, b);
  if (c)
    v = json_object_get(v, c);
  return v;
}

#define NIC "2b8d8f0e-8f3c-4c55-a3b1-6f2b1c0d9e7a"

int main(void) {
  orr_engine *eng;
  orr_builder *b;
  orr_vm *vm;
  orr_vm_options opts;
  orr_error e = {0, ""};
  outcome o = {0};
  char dir[] = "/tmp/orr-test-typed-XXXXXX", disk[128], cmd[256];
  const char *scsi0 = orr_scsi_controller_guid(0);
  json_t *att, *nic, *mem, *bad;
  ASSERT_NOT_NULL(mkdtemp(dir));
  snprintf(disk, sizeof disk, "%s/d.img", dir);
  snprintf(cmd, sizeof cmd, "truncate -s 8M %s", disk);
  ASSERT_EQ(0, system(cmd));
  setenv("ORRERY_RUNTIME_DIR", dir, 1);

  ASSERT_OK(orr_engine_new(NULL, &eng, &e));
  ASSERT_OK(orr_builder_new("test", NULL, &b, &e));
  mem = json_pack("{s:i}", "SizeInMB", 128);
  ASSERT_OK(orr_builder_set_memory(b, mem, &e));
  json_decref(mem);
  ASSERT_OK(orr_builder_add_scsi_controller(b, 0, &e));
  orr_vm_options_init(&opts);
  opts.accel = "tcg";
  ASSERT_OK(orr_vm_create(eng, "typed", orr_builder_doc(b), &opts, on_done, &o,
                          &vm, &e));
  ASSERT_EQ(0, wait_for(eng, &o));
  reset(&o);
  orr_vm_start(vm, 0, on_done, &o);
  ASSERT_EQ(0, wait_for(eng, &o));

  /* SCSI disk: QEMU has the device, the document the attachment. */
  att = json_pack("{s:s, s:s}", "Type", "VirtualDisk", "Path", disk);
  reset(&o);
  orr_vm_add_scsi_disk(vm, 0, 3, att, 0, on_done, &o);
  ASSERT_EQ(0, wait_for(eng, &o));
  ASSERT(qemu_has(eng, vm, "query-block", "disk-0-3"));
  ASSERT_NOT_NULL(json_object_get(
      json_object_get(doc_at(vm, "Scsi", scsi0, "Attachments"), "3"), "Path"));
  /* The same LUN again: the request path's EEXIST. */
  reset(&o);
  orr_vm_add_scsi_disk(vm, 0, 3, att, 0, on_done, &o);
  ASSERT_ERR(wait_for(eng, &o), ORR_EEXIST);
  /* A LUN out of range: the request path's rule, nothing sent. */
  reset(&o);
  orr_vm_add_scsi_disk(vm, 0, 64, att, 0, on_done, &o);
  ASSERT_ERR(wait_for(eng, &o), ORR_EINVAL);
  ASSERT_NOT_NULL(strstr(o.msg, "64"));
  /* A controller that names no resource: EINVAL through the callback. */
  reset(&o);
  orr_vm_add_scsi_disk(vm, 4, 1, att, 0, on_done, &o);
  ASSERT_ERR(wait_for(eng, &o), ORR_EINVAL);
  ASSERT_NOT_NULL(strstr(o.msg, "add_scsi_disk: controller must be in 0..3"));
  reset(&o);
  orr_vm_add_scsi_disk(vm, 0, 5, NULL, 0, on_done, &o);
  ASSERT_ERR(wait_for(eng, &o), ORR_EINVAL);
  ASSERT_NOT_NULL(strstr(o.msg, "attachment must be a JSON object"));
  reset(&o);
  orr_vm_remove_scsi_disk(vm, 0, 3, 5000, on_done, &o);
  ASSERT_EQ(0, wait_for(eng, &o));
  ASSERT(!qemu_has(eng, vm, "query-block", "disk-0-3"));
  ASSERT_NULL(json_object_get(doc_at(vm, "Scsi", scsi0, "Attachments"), "3"));
  reset(&o);
  orr_vm_remove_scsi_disk(vm, -1, 3, 0, on_done, &o);
  ASSERT_ERR(wait_for(eng, &o), ORR_EINVAL);

  /* NIC: netdev and device in QEMU, the adapter in the document (its
  ** removal needs a guest to let go of the PCI device: not here). */
  nic = json_pack("{s:s, s:s}", "EndpointId", "user", "MacAddress",
                  "00-15-5D-52-C0-0B");
  reset(&o);
  orr_vm_add_nic(vm, NIC, nic, 0, on_done, &o);
  ASSERT_EQ(0, wait_for(eng, &o));
  ASSERT(qemu_has(eng, vm, "query-pci", "nic-" NIC));
  ASSERT_NOT_NULL(doc_at(vm, "NetworkAdapters", NIC, NULL));
  reset(&o);
  orr_vm_add_nic(vm, NULL, nic, 0, on_done, &o);
  ASSERT_ERR(wait_for(eng, &o), ORR_EINVAL);
  ASSERT_NOT_NULL(strstr(o.msg, "add_nic: guid must not be NULL"));
  reset(&o);
  orr_vm_update_nic(vm, NIC, NULL, 0, on_done, &o);
  ASSERT_ERR(wait_for(eng, &o), ORR_EINVAL);
  ASSERT_NOT_NULL(strstr(o.msg, "update_nic: settings must be a JSON object"));
  /* A VPCI device that is not there cannot be removed. */
  reset(&o);
  orr_vm_remove_vpci_device(vm, "6f5c3a1e-1b2d-4c3e-9f4a-0a1b2c3d4e5f", 0,
                            on_done, &o);
  ASSERT_ERR(wait_for(eng, &o), ORR_ENOENT);
  /* Plan9 add: the qemu backend's ENOTSUP, through the same path. */
  bad =
      json_pack("{s:s, s:s, s:s}", "Name", "s", "AccessName", "s", "Path", dir);
  reset(&o);
  orr_vm_add_plan9_share(vm, bad, 0, on_done, &o);
  ASSERT_ERR(wait_for(eng, &o), ORR_ENOTSUP);
  json_decref(bad);

  /* Memory through the balloon: the document follows. */
  reset(&o);
  orr_vm_update_memory(vm, 96, 0, on_done, &o);
  ASSERT_EQ(0, wait_for(eng, &o));
  ASSERT_EQ(
      96,
      json_integer_value(json_object_get(
          json_object_get(json_object_get(json_object_get(orr_vm_document(vm),
                                                          "VirtualMachine"),
                                          "ComputeTopology"),
                          "Memory"),
          "SizeInMB")));
  reset(&o);
  orr_vm_update_memory(vm, 4096, 0, on_done, &o);
  ASSERT_ERR(wait_for(eng, &o), ORR_ENOTSUP);
  reset(&o);
  orr_vm_update_cpu_limits(vm, NULL, 0, on_done, &o);
  ASSERT_ERR(wait_for(eng, &o), ORR_EINVAL);

  reset(&o);
  orr_vm_terminate(vm, on_done, &o);
  ASSERT_EQ(0, wait_for(eng, &o));
  reset(&o);
  orr_vm_close(vm);
  json_decref(att);
  json_decref(nic);
  orr_builder_free(b);
  orr_engine_free(eng);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  ASSERT_EQ(0, system(cmd));
  printf("ok - typed run-time calls on real QEMU\n");
  return 0;
}

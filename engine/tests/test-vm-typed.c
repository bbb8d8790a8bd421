/*
** The typed run-time calls (orr_vm_add_scsi_disk, ...) against a real QEMU
** (TCG, no guest OS): each reaches QEMU and the live document through
** orr_vm_modify's path, and an argument that names no resource fails through
** the callback, from the loop, with the rule in the message.
*/
#include "orrery/document.h"
#include "vm_fixture.h"

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
  vm_fixture f;
  orr_engine *eng;
  orr_vm *vm;
  outcome o = {0};
  const char *scsi0 = orr_scsi_controller_guid(0);
  json_t *att, *nic, *bad;
  vm_fixture_up(&f, "typed");
  eng = f.eng;
  vm = f.vm;
  orr_vm_start(vm, 0, on_done, &o);
  ASSERT_EQ(0, wait_for(eng, &o));

  /* SCSI disk: QEMU has the device, the document the attachment. */
  att = json_pack("{s:s, s:s}", "Type", "VirtualDisk", "Path", f.disk);
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
  bad = json_pack("{s:s, s:s, s:s}", "Name", "s", "AccessName", "s", "Path",
                  f.dir);
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
  json_decref(att);
  json_decref(nic);
  vm_fixture_down(&f);
  printf("ok - typed run-time calls on real QEMU\n");
  return 0;
}

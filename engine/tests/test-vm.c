/*
** The VM manager against a real QEMU (TCG, no guest OS): create, start, a
** SCSI hot-add and remove checked with query-block, pause/resume, and
** terminate; every request's callback runs once.
*/
#include "vm_fixture.h"

static json_t *query_block_devices(orr_engine *eng, orr_vm *vm) {
  outcome o = {0};
  orr_vm_qmp(vm, "query-block", NULL, 0, on_done, &o);
  ASSERT_EQ(0, wait_for(eng, &o));
  return o.result;
}

static int has_qdev(json_t *blocks, const char *qdev) {
  size_t i;
  json_t *b;
  json_array_foreach(blocks, i, b) {
    const char *q = json_string_value(json_object_get(b, "qdev"));
    if (q && strstr(q, qdev))
      return 1;
  }
  return 0;
}

int main(void) {
  vm_fixture f;
  orr_engine *eng;
  orr_vm *vm;
  outcome o = {0};
  json_t *att, *req, *blocks;
  vm_fixture_up(&f, "t1");
  eng = f.eng;
  vm = f.vm;
  ASSERT_STR_EQ("Created", orr_vm_state(vm));

  reset(&o);
  orr_vm_start(vm, 0, on_done, &o);
  ASSERT_EQ(0, wait_for(eng, &o));
  ASSERT_STR_EQ("Running", orr_vm_state(vm));

  /* Hot-add at LUN 3: the document and QEMU both show it. */
  att = json_pack("{s:s, s:s}", "Type", "VirtualDisk", "Path", f.disk);
  req = json_pack("{s:s, s:s, s:O}", "ResourcePath",
                  "VirtualMachine/Devices/Scsi/"
                  "df6d0690-79e5-55b6-a5ec-c1e2f77f580a/Attachments/3",
                  "RequestType", "Add", "Settings", att);
  reset(&o);
  orr_vm_modify(vm, req, NULL, on_done, &o);
  ASSERT_EQ(0, wait_for(eng, &o));
  blocks = query_block_devices(eng, vm);
  ASSERT(has_qdev(blocks, "disk-0-3"));
  json_decref(blocks);

  /* The same LUN again is EEXIST and QEMU is not asked. */
  reset(&o);
  orr_vm_modify(vm, req, NULL, on_done, &o);
  ASSERT_EQ(ORR_EEXIST, wait_for(eng, &o));

  /* Remove completes without a guest (SCSI unplug is QEMU's alone). */
  json_object_set_new(req, "RequestType", json_string("Remove"));
  json_object_del(req, "Settings");
  reset(&o);
  orr_vm_modify(vm, req, NULL, on_done, &o);
  ASSERT_EQ(0, wait_for(eng, &o));
  blocks = query_block_devices(eng, vm);
  ASSERT(!has_qdev(blocks, "disk-0-3"));
  json_decref(blocks);
  json_decref(req);
  json_decref(att);

  reset(&o);
  orr_vm_pause(vm, 0, on_done, &o);
  ASSERT_EQ(0, wait_for(eng, &o));
  ASSERT_STR_EQ("Paused", orr_vm_state(vm));

  reset(&o);
  orr_vm_terminate(vm, on_done, &o);
  ASSERT_EQ(0, wait_for(eng, &o));
  ASSERT_STR_EQ("Stopped", orr_vm_state(vm));
  reset(&o);
  vm_fixture_down(&f);
  printf("ok - vm lifecycle and scsi hot-add/remove on real QEMU\n");
  return 0;
}

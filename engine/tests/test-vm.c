/*
** The VM manager against a real QEMU (TCG, no guest OS): create, start, a
** SCSI hot-add and remove checked with query-block, pause/resume, and
** terminate; every request's callback runs once.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orrery/builder.h"
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

/* Drops the previous answer before reusing the outcome. */
static void reset(outcome *o) {
  json_decref(o->result);
  memset(o, 0, sizeof *o);
}

static int wait_for(orr_engine *eng, outcome *o) {
  while (!o->done)
    uv_run(orr_engine_loop(eng), UV_RUN_ONCE);
  if (o->status != 0)
    fprintf(stderr, "  request failed: %s\n", o->msg);
  return o->status;
}

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
  orr_engine *eng;
  orr_builder *b;
  orr_vm *vm;
  orr_vm_options opts;
  orr_error e = {0, ""};
  outcome o = {0};
  char dir[] = "/tmp/orr-test-vm-XXXXXX", disk[128], cmd[256];
  json_t *att, *req, *blocks;
  ASSERT_NOT_NULL(mkdtemp(dir));
  snprintf(disk, sizeof disk, "%s/d.img", dir);
  snprintf(cmd, sizeof cmd, "truncate -s 8M %s", disk);
  ASSERT_EQ(0, system(cmd));
  setenv("ORRERY_RUNTIME_DIR", dir, 1);

  ASSERT_OK(orr_engine_new(NULL, &eng, &e));
  ASSERT_OK(orr_builder_new("test", NULL, &b, &e));
  json_t *mem = json_pack("{s:i}", "SizeInMB", 128);
  ASSERT_OK(orr_builder_set_memory(b, mem, &e));
  json_decref(mem);
  ASSERT_OK(orr_builder_add_scsi_controller(b, 0, &e));
  orr_vm_options_init(&opts);
  opts.accel = "tcg";
  ASSERT_OK(orr_vm_create(eng, "t1", orr_builder_doc(b), &opts, on_done, &o,
                          &vm, &e));
  ASSERT_EQ(0, wait_for(eng, &o));
  ASSERT_STR_EQ("Created", orr_vm_state(vm));

  reset(&o);
  orr_vm_start(vm, 0, on_done, &o);
  ASSERT_EQ(0, wait_for(eng, &o));
  ASSERT_STR_EQ("Running", orr_vm_state(vm));

  /* Hot-add at LUN 3: the document and QEMU both show it. */
  att = json_pack("{s:s, s:s}", "Type", "VirtualDisk", "Path", disk);
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
  json_decref(o.result);
  orr_vm_close(vm);
  orr_builder_free(b);
  orr_engine_free(eng);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  ASSERT_EQ(0, system(cmd));
  printf("ok - vm lifecycle and scsi hot-add/remove on real QEMU\n");
  return 0;
}

/*
** The set-up the VM tests against real QEMU share (test-vm.c,
** test-vm-typed.c): a private runtime root with an 8 MiB disk image in it,
** an engine, and one 128 MiB TCG VM with SCSI controller 0, created (not
** started); plus the outcome of one request and the wait for it.
*/
#ifndef ORRERY_TEST_VM_FIXTURE_H
#define ORRERY_TEST_VM_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orrery/builder.h"
#include "orrery/vm.h"
#include "task.h"

/* One request's answer (the callback counts its calls). */
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

/* Runs the loop until o is answered; its status. The contract checked on
** the way: never called back from inside the call, and exactly once. */
static int wait_for(orr_engine *eng, outcome *o) {
  ASSERT_EQ(0, o->done);
  while (!o->done)
    uv_run(orr_engine_loop(eng), UV_RUN_ONCE);
  ASSERT_EQ(1, o->done);
  if (o->status != 0)
    fprintf(stderr, "  request failed: %s\n", o->msg);
  return o->status;
}

typedef struct {
  char dir[64];   /* the runtime root, removed by vm_fixture_down */
  char disk[128]; /* an 8 MiB raw image in it */
  orr_engine *eng;
  orr_builder *b;
  orr_vm *vm;
} vm_fixture;

/* name: the temporary directory's tag and the VM's id. */
static void vm_fixture_up(vm_fixture *f, const char *name) {
  orr_vm_options opts;
  orr_error e = {0, ""};
  outcome o = {0};
  char cmd[256];
  json_t *mem;
  memset(f, 0, sizeof *f);
  snprintf(f->dir, sizeof f->dir, "/tmp/orr-test-%s-XXXXXX", name);
  ASSERT_NOT_NULL(mkdtemp(f->dir));
  snprintf(f->disk, sizeof f->disk, "%s/d.img", f->dir);
  snprintf(cmd, sizeof cmd, "truncate -s 8M %s", f->disk);
  ASSERT_EQ(0, system(cmd));
  setenv("ORRERY_RUNTIME_DIR", f->dir, 1);
  ASSERT_OK(orr_engine_new(NULL, &f->eng, &e));
  ASSERT_OK(orr_builder_new("test", NULL, &f->b, &e));
  mem = json_pack("{s:i}", "SizeInMB", 128);
  ASSERT_OK(orr_builder_set_memory(f->b, mem, &e));
  json_decref(mem);
  ASSERT_OK(orr_builder_add_scsi_controller(f->b, 0, &e));
  orr_vm_options_init(&opts);
  opts.accel = "tcg";
  ASSERT_OK(orr_vm_create(f->eng, name, orr_builder_doc(f->b), &opts, on_done,
                          &o, &f->vm, &e));
  ASSERT_EQ(0, wait_for(f->eng, &o));
  reset(&o);
}

/* Closes the VM (the test ended it) and removes everything the set-up made. */
static void vm_fixture_down(vm_fixture *f) {
  char cmd[128];
  orr_vm_close(f->vm);
  orr_builder_free(f->b);
  orr_engine_free(f->eng);
  snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
  ASSERT_EQ(0, system(cmd));
}

#endif

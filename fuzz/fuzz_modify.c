/*
** libFuzzer target: ModifySettingRequests against a live document, on the
** plan backend (which translates exactly as the qemu backend does and
** answers as an obedient QEMU), driving the engine's loop until each
** request completes.
**
** The input is JSON text: one request object, or an array of up to 8
** steps, each a request object or one of the strings "pause", "resume",
** "terminate" (lifecycle changes the requests then meet). Every input gets
** a fresh running VM from the same document: SCSI controllers 0 and 1 with
** a disk at 0/1, a VPCI device, a NIC, a Plan9 share, CPU limits and a
** StorageQoS group.
**
** What must hold for every step: its callback runs exactly once; the code
** is one the VM manager documents; a failure carries a message and leaves
** the live document exactly as it was; and the live document always passes
** the whole-document check (orr_doc_check), the builder's rules included.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orrery/document.h"
#include "orrery/vm.h"

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "fuzz_modify: %s:%d: check failed: %s\n", __FILE__,      \
              __LINE__, #cond);                                                \
      abort();                                                                 \
    }                                                                          \
  } while (0)

static const char base_doc[] =
    "{\"Owner\":\"fuzz\",\"SchemaVersion\":{\"Major\":2,\"Minor\":1},"
    "\"VirtualMachine\":{\"StopOnReset\":true,\"Chipset\":{},"
    "\"ComputeTopology\":{\"Memory\":{\"SizeInMB\":256},\"Processor\":{"
    "\"Count\":2,\"Limit\":50000,\"Weight\":200}},\"Devices\":{\"Scsi\":{"
    "\"0110f83b-de10-5172-a266-78bca56bf50a\":{\"Attachments\":{}},"
    "\"df6d0690-79e5-55b6-a5ec-c1e2f77f580a\":{\"Attachments\":{\"1\":{"
    "\"Type\":\"VirtualDisk\",\"Path\":\"/nonexistent/a.img\",\"ReadOnly\":"
    "true}}}},\"NetworkAdapters\":{\"2b8d8f0e-8f3c-4c55-a3b1-6f2b1c0d9e7a\":"
    "{\"EndpointId\":\"user\",\"MacAddress\":\"00-15-5D-52-C0-0A\"}},"
    "\"HvSocket\":{\"HvSocketConfig\":{\"DefaultBindSecurityDescriptor\":"
    "\"D:P(A;;FA;;;SY)(A;;FA;;;BA)\"}},\"Plan9\":{\"Shares\":[{\"Name\":"
    "\"src\",\"AccessName\":\"src\",\"Path\":\"/srv/src\",\"Port\":564,"
    "\"ReadOnly\":true}]},\"VirtualPci\":{"
    "\"6f5c3a1e-1b2d-4c3e-9f4a-0a1b2c3d4e5f\":{\"Functions\":[{"
    "\"DeviceInstancePath\":\"qemu:virtio-rng-pci\"}]}}},\"StorageQoS\":{"
    "\"IopsMaximum\":5000,\"BandwidthMaximum\":100000000}},"
    "\"ShouldTerminateOnLastHandleClosed\":true}";

static orr_engine *eng;
static json_t *doc;

typedef struct {
  int calls, status;
  char msg[512];
} outcome;

static void on_done(void *arg, int status, const orr_error *err,
                    json_t *result) {
  outcome *o = arg;
  (void)result;
  CHECK(err != NULL);
  o->calls++;
  o->status = status;
  snprintf(o->msg, sizeof o->msg, "%s", err->msg);
}

static int wait_for(outcome *o) {
  while (o->calls == 0)
    uv_run(orr_engine_loop(eng), UV_RUN_ONCE);
  /* Exactly once: nothing more arrives for it on later turns. */
  uv_run(orr_engine_loop(eng), UV_RUN_NOWAIT);
  CHECK(o->calls == 1);
  return o->status;
}

static int known(int status) {
  switch (status) {
  case 0:
  case ORR_EINVAL:
  case ORR_EEXIST:
  case ORR_ENOENT:
  case ORR_EBUSY:
  case ORR_ENOTSUP:
  case ORR_ESTATE:
  case ORR_EVMGONE:
    return 1;
  default:
    return 0;
  }
}

static void setup(void) {
  orr_error e = {0, ""};
  CHECK(orr_engine_new(NULL, &eng, &e) == 0);
  CHECK(orr_doc_parse(base_doc, strlen(base_doc), &doc, &e) == 0);
}

static void lifecycle(orr_vm *vm, const char *what) {
  outcome o = {0};
  if (strcmp(what, "pause") == 0)
    orr_vm_pause(vm, 0, on_done, &o);
  else if (strcmp(what, "resume") == 0)
    orr_vm_resume(vm, 0, on_done, &o);
  else if (strcmp(what, "terminate") == 0)
    orr_vm_terminate(vm, on_done, &o);
  else
    return;
  CHECK(known(wait_for(&o)));
}

static void modify(orr_vm *vm, const json_t *req) {
  outcome o = {0};
  json_t *before = json_deep_copy(orr_vm_document(vm)), *norm = NULL;
  orr_error e = {0, ""};
  orr_vm_modify(vm, req, NULL, on_done, &o);
  wait_for(&o);
  if (!known(o.status))
    fprintf(stderr, "fuzz_modify: unexpected %s: %s\n", orr_err_name(o.status),
            o.msg);
  CHECK(known(o.status));
  if (o.status != 0) {
    CHECK(o.msg[0] != '\0');
    CHECK(json_equal(before, orr_vm_document(vm)));
  }
  if (orr_doc_check(orr_vm_document(vm), &norm, &e) != 0)
    fprintf(stderr, "fuzz_modify: the live document broke a rule: %s\n", e.msg);
  CHECK(norm != NULL);
  json_decref(norm);
  json_decref(before);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_t *input, *step;
  orr_vm_options opts;
  orr_error e = {0, ""};
  orr_vm *vm = NULL;
  outcome o = {0};
  size_t i;

  if (eng == NULL)
    setup();
  input = json_loadb((const char *)data, size, 0, NULL);
  if (input == NULL)
    return 0;
  orr_vm_options_init(&opts);
  opts.backend = "plan";
  opts.accel = "tcg";
  CHECK(orr_vm_create(eng, "fuzz", doc, &opts, on_done, &o, &vm, &e) == 0);
  CHECK(wait_for(&o) == 0);
  memset(&o, 0, sizeof o);
  orr_vm_start(vm, 0, on_done, &o);
  CHECK(wait_for(&o) == 0);

  if (json_is_array(input)) {
    json_array_foreach(input, i, step) {
      if (i >= 8)
        break;
      if (json_is_string(step))
        lifecycle(vm, json_string_value(step));
      else
        modify(vm, step);
    }
  } else {
    modify(vm, input);
  }

  orr_vm_close(vm);
  while (orr_engine_vm_count(eng) > 0)
    uv_run(orr_engine_loop(eng), UV_RUN_ONCE);
  json_decref(input);
  return 0;
}

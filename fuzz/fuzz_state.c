/*
** libFuzzer target: a state file (state.json) as orrery.open reads it from
** the runtime directory of a VM that outlives its engine.
**
** What must hold for any input:
**   - orr__vm_state_check() (the core's fields, then the qemu backend's
**     layout, process identity and plans) accepts or refuses with ORR_EINVAL
**     and a message that starts "state.json" and names what is wrong; it
**     never crashes, leaks or reads out of bounds;
**   - an accepted file describes the VM being opened: its Id, a document
**     that passes orr_doc_check and keeps its VM (no terminate on close),
**     every path of its layout inside the runtime directory;
**   - adopting any one of its intents leaves a document that still passes
**     orr_doc_check (re-opening never builds a document the engine would
**     refuse; orr__vm_reconciled checks each adoption in turn), and every
**     name a plan would have re-attaching delete is one of the engine's
**     own;
**   - fd mode: every fdset a plan adds or removes, and every fdset the
**     layout gives a disk (before and after an adoption), is one of that
**     disk's own (a re-attaching engine releases them with the disk).
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/qemu_backend.h"
#include "orrery/document.h"

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "fuzz_state: %s:%d: check failed: %s\n", __FILE__,       \
              __LINE__, #cond);                                                \
      abort();                                                                 \
    }                                                                          \
  } while (0)

#define RUN_DIR "/run/orrery/vm1"

/* Each disk's fdsets in layout "fdsets" are its own. */
static void own_fdsets(const json_t *layout) {
  const char *key;
  json_t *ids;
  json_object_foreach(json_object_get(layout, "fdsets"), key, ids) {
    int c, lun;
    size_t i;
    json_t *id;
    CHECK(sscanf(key, "%d-%d", &c, &lun) == 2);
    json_array_foreach(ids, i, id) {
      CHECK(orr__qemu_fdset_disk(json_integer_value(id)) == c * 64 + lun);
    }
  }
}

/* Adopts intents [from, to) on a copy of doc; the result must pass. */
static void adopt(const json_t *doc, const json_t *layout,
                  const json_t *intents, size_t from, size_t to) {
  orr_vm tmp;
  json_t *out = NULL;
  orr_error e = {0, ""};
  memset(&tmp, 0, sizeof tmp);
  tmp.doc = json_deep_copy(doc);
  tmp.layout = json_deep_copy(layout);
  for (size_t i = from; i < to; i++) {
    const json_t *it = json_array_get(intents, i);
    orr_req r;
    memset(&r, 0, sizeof r);
    r.vm = &tmp;
    r.data = json_object_get(it, "Data");
    orr__commit_by_name(json_string_value(json_object_get(it, "Commit")))(&r);
  }
  CHECK(orr_doc_check(tmp.doc, &out, &e) == 0);
  own_fdsets(tmp.layout);
  json_decref(out);
  json_decref(tmp.doc);
  json_decref(tmp.layout);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_error_t je;
  json_t *st =
      json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &je);
  json_t *doc = NULL, *intents, *it;
  orr_error e = {0, ""};
  size_t i;
  int rc;
  if (st == NULL)
    return 0;
  rc = orr__vm_state_check(st, "vm1", RUN_DIR, &orr__backend_qemu, &doc, &e);
  if (rc != 0) {
    CHECK(rc == ORR_EINVAL);
    CHECK(doc == NULL);
    CHECK(strncmp(e.msg, "state.json", 10) == 0);
    CHECK(strlen(e.msg) > 12);
    json_decref(st);
    return 0;
  }
  CHECK(doc != NULL);
  CHECK(strcmp(json_string_value(json_object_get(st, "Id")), "vm1") == 0);
  CHECK(
      json_is_false(json_object_get(doc, "ShouldTerminateOnLastHandleClosed")));
  CHECK(strcmp(json_string_value(
                   json_object_get(json_object_get(st, "Layout"), "qmp")),
               RUN_DIR "/" ORR_QEMU_QMP_SOCK) == 0);
  own_fdsets(json_object_get(st, "Layout"));
  intents = json_object_get(st, "Intents");
  json_array_foreach(intents, i, it) {
    const json_t *plan = json_object_get(it, "Plan");
    const json_t *w = json_object_get(plan, "wait_deleted");
    size_t k;
    json_t *c;
    adopt(doc, json_object_get(st, "Layout"), intents, i, i + 1);
    if (json_is_string(w))
      CHECK(orr__qemu_name_kind(json_string_value(w)) == 'd');
    json_array_foreach(json_object_get(plan, "after"), k, c) {
      const json_t *a = json_object_get(c, "arguments");
      const char *n = json_string_value(json_object_get(a, "node-name"));
      if (n == NULL)
        n = json_string_value(json_object_get(a, "id"));
      if (n == NULL) /* remove-fd */
        CHECK(orr__qemu_fdset_disk(
                  json_integer_value(json_object_get(a, "fdset-id"))) >= 0);
      else
        CHECK(orr__qemu_name_kind(n) != 0);
    }
  }
  json_decref(doc);
  json_decref(st);
  return 0;
}

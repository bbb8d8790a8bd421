/*
** The commits: what a change that succeeded does to the live document
** (and, through backend->commit, to the backend's layout). A journal's
** intents name them ("path", "share", "merge", and vm_snapshot.c's
** "snapshot" and "disk_merge"), so re-attaching adopts a
** change with the same function that committed it, and checking a state
** file (vm_state.c) applies them to a scratch VM.
*/
#include <stdio.h>
#include <string.h>

#include "orrery/document.h"
#include "vm_internal.h"

static json_t *vm_obj(json_t *doc, const char *k1, const char *k2) {
  json_t *v = json_object_get(json_object_get(doc, "VirtualMachine"), k1);
  return k2 ? json_object_get(v, k2) : v;
}

/* ---- commits: apply the change to the live document ---- */

/* The backend's part of a commit (its keys of data), on its layout. A
** scratch VM checking a journal has no backend. */
static void commit_backend(orr_vm *vm, const json_t *data) {
  if (vm->backend != NULL && vm->backend->commit != NULL)
    vm->backend->commit(vm, data);
}

/* data: {"keys":[...], "value": v | absent (delete)}, and the backend's
** keys (backend->plan_change). */
void orr__commit_path(orr_req *r) {
  json_t *keys = json_object_get(r->data, "keys");
  json_t *value = json_object_get(r->data, "value");
  json_t *cur = r->vm->doc;
  size_t n = json_array_size(keys);
  for (size_t i = 0; i + 1 < n; i++) {
    const char *k = json_string_value(json_array_get(keys, i));
    json_t *next = json_object_get(cur, k);
    if (next == NULL) {
      next = json_object();
      json_object_set_new(cur, k, next);
    }
    cur = next;
  }
  const char *last = json_string_value(json_array_get(keys, n - 1));
  if (value)
    json_object_set(cur, last, value);
  else
    json_object_del(cur, last);
  commit_backend(r->vm, r->data);
}

void orr__commit_merge(orr_req *r) {
  json_t *keys = json_object_get(r->data, "keys");
  json_t *cur = r->vm->doc;
  size_t i;
  json_t *k;
  json_array_foreach(keys, i, k) {
    json_t *next = json_object_get(cur, json_string_value(k));
    if (next == NULL) {
      next = json_object();
      json_object_set_new(cur, json_string_value(k), next);
    }
    cur = next;
  }
  json_object_update(cur, json_object_get(r->data, "value"));
  commit_backend(r->vm, r->data);
}

void orr__commit_remove_share(orr_req *r) {
  json_t *shares =
      json_object_get(vm_obj(r->vm->doc, "Devices", "Plan9"), "Shares");
  const char *name = json_string_value(json_object_get(r->data, "name"));
  size_t i;
  json_t *s;
  json_array_foreach(shares, i, s) {
    if (strcmp(json_string_value(json_object_get(s, "Name")), name) == 0) {
      json_array_remove(shares, i);
      break;
    }
  }
  commit_backend(r->vm, r->data);
}

/* A change the document has no field for (a mapped pipe): the backend's
** layout alone. */
void orr__commit_pipe(orr_req *r) {
  commit_backend(r->vm, r->data);
}

/* ---- external disk snapshots (vm_snapshot.c makes the requests) ---- */

/* The attachment at (ctrl, lun) of the live document, or NULL. */
json_t *orr__snapshot_attachment(orr_vm *vm, int ctrl, int lun) {
  json_t *devs =
      json_object_get(json_object_get(vm->doc, "VirtualMachine"), "Devices");
  char key[16];
  if (ctrl < 0 || ctrl > 3 || lun < 0 || lun > 63)
    return NULL;
  snprintf(key, sizeof key, "%d", lun);
  return json_object_get(
      json_object_get(json_object_get(json_object_get(devs, "Scsi"),
                                      orr_scsi_controller_guid(ctrl)),
                      "Attachments"),
      key);
}

void orr__snapshot_release_held(orr_req *r) {
  size_t i;
  json_t *p;
  if (r->vm->reserved == NULL)
    return; /* a scratch VM checking a journal's intent */
  json_array_foreach(json_object_get(r->data, "held"), i, p) {
    json_object_del(r->vm->reserved, json_string_value(p));
  }
  json_array_clear(json_object_get(r->data, "held"));
}

/* Each attachment's Path becomes its overlay; the backend's part next.
** Also how re-attaching adopts a journaled snapshot (vm_commit.c names
** it), and how checking a state file tries one on a scratch VM with no
** backend. */
void orr__commit_snapshot(orr_req *r) {
  size_t i;
  json_t *d;
  orr__snapshot_release_held(r);
  json_array_foreach(json_object_get(r->data, "disks"), i, d) {
    json_t *att = orr__snapshot_attachment(
        r->vm, (int)json_integer_value(json_object_get(d, "ctrl")),
        (int)json_integer_value(json_object_get(d, "lun")));
    if (att != NULL)
      json_object_set(att, "Path", json_object_get(d, "overlay"));
  }
  if (r->vm->backend != NULL && r->vm->backend->commit != NULL)
    r->vm->backend->commit(r->vm, r->data);
}

/* The attachment names the image below again; the backend's part next
** (named for the journal as orr__commit_snapshot is). */
void orr__commit_disk_merge(orr_req *r) {
  json_t *att = orr__snapshot_attachment(
      r->vm, (int)json_integer_value(json_object_get(r->data, "ctrl")),
      (int)json_integer_value(json_object_get(r->data, "lun")));
  if (att != NULL && json_object_get(r->data, "below"))
    json_object_set(att, "Path", json_object_get(r->data, "below"));
  if (r->vm->backend != NULL && r->vm->backend->commit != NULL)
    r->vm->backend->commit(r->vm, r->data);
}

/* The commits an intent names in state.json. */
static const struct {
  const char *name;
  orr_req_commit fn;
} commits[] = {
    {"path", orr__commit_path},         {"share", orr__commit_remove_share},
    {"merge", orr__commit_merge},       {"pipe", orr__commit_pipe},
    {"snapshot", orr__commit_snapshot}, {"disk_merge", orr__commit_disk_merge}};

const char *orr__commit_name(orr_req_commit fn) {
  for (size_t i = 0; i < sizeof commits / sizeof *commits; i++)
    if (commits[i].fn == fn)
      return commits[i].name;
  return NULL;
}

orr_req_commit orr__commit_by_name(const char *name) {
  for (size_t i = 0; name && i < sizeof commits / sizeof *commits; i++)
    if (strcmp(commits[i].name, name) == 0)
      return commits[i].fn;
  return NULL;
}

/*
** Checking a state file (state.json) before anything in it is used. The
** file is the journal of a VM that outlives its engine; orrery.open reads
** it in another process, so it is input like any other: every field is
** checked for type, range and shape, and for agreement with the VM being
** opened (its id, its runtime directory), before one of them is believed.
** A bad file is ORR_EINVAL naming the field; nothing here can crash on any
** input (fuzz/fuzz_state.c holds it to that).
**
** The core checks its own fields here; the backend checks its layout,
** process identity and plans (orr_backend.check_state).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orrery/document.h"
#include "schema.h"
#include "vm_internal.h"

#define MAX_INTENTS 512

static int bad(orr_error *e, const char *field, const char *rule) {
  return orr_error_set(e, ORR_EINVAL, "state.json: %s %s", field, rule);
}

static int need(const json_t *st, const char *key, json_type type,
                const json_t **out, orr_error *e) {
  static const char *const names[] = {
      "must be an object",     "must be an array", "must be a string",
      "must be an integer",    "must be a number", "must be true or false",
      "must be true or false", "must be null"};
  const json_t *v = json_object_get(st, key);
  if (v == NULL)
    return bad(e, key, "is missing");
  if (json_typeof(v) != type)
    return bad(e, key, names[type]);
  *out = v;
  return 0;
}

/* "0".."255", as vm_modify.c takes a VPMem device's key. */
static bool is_pmem_key(const char *s) {
  char *end;
  long k = strtol(s, &end, 10);
  return s[0] >= '0' && s[0] <= '9' && *end == '\0' && k >= 0 && k <= 255 &&
         (s[0] != '0' || s[1] == '\0');
}

/* The shapes of a commit's "keys" that vm_modify.c writes, and nothing
** else: a journal entry can only ever touch what a change could. */
static int check_keys(const json_t *keys, const char *field, int *shape,
                      orr_error *e) {
  char f[160];
  size_t n = json_array_size(keys), i;
  const char *k[8] = {0};
  snprintf(f, sizeof f, "%s.keys", field);
  if (!json_is_array(keys) || n < 3 || n > 6)
    return bad(e, f, "must be an array of 3 to 6 strings");
  for (i = 0; i < n; i++) {
    k[i] = json_string_value(json_array_get(keys, i));
    /* A mapped pipe's key is its host path: a unix socket's 107 bytes. */
    size_t max =
        i == 3 && n == 4 && k[2] && strcmp(k[2], "MappedPipes") == 0 ? 107 : 64;
    if (k[i] == NULL || k[i][0] == '\0' || strlen(k[i]) > max)
      return bad(e, f,
                 "must hold non-empty strings of at most 64 bytes (a "
                 "mapped pipe's path 107)");
  }
  if (strcmp(k[0], "VirtualMachine") != 0)
    return bad(e, f, "must start at VirtualMachine");
  if (n == 6 && strcmp(k[1], "Devices") == 0 && strcmp(k[2], "Scsi") == 0 &&
      orr_scsi_controller_index(k[3]) >= 0 &&
      strcmp(k[4], "Attachments") == 0 &&
      orr__check_lun_key(k[5], strlen(k[5])) == NULL) {
    *shape = 0;
    return 0;
  }
  if (n == 4 && strcmp(k[1], "Devices") == 0 &&
      (strcmp(k[2], "VirtualPci") == 0 ||
       strcmp(k[2], "NetworkAdapters") == 0) &&
      orr__check_guid(k[3], strlen(k[3])) == NULL) {
    *shape = strcmp(k[2], "VirtualPci") == 0 ? 1 : 2;
    return 0;
  }
  if (n == 4 && strcmp(k[1], "ComputeTopology") == 0 &&
      strcmp(k[2], "Memory") == 0 && strcmp(k[3], "SizeInMB") == 0) {
    *shape = 3;
    return 0;
  }
  if (n == 3 && strcmp(k[1], "ComputeTopology") == 0 &&
      strcmp(k[2], "Processor") == 0) {
    *shape = 4;
    return 0;
  }
  if (n == 5 && strcmp(k[1], "Devices") == 0 &&
      strcmp(k[2], "VirtualPMem") == 0 && strcmp(k[3], "Devices") == 0 &&
      is_pmem_key(k[4])) {
    *shape = 5;
    return 0;
  }
  if (n == 4 && strcmp(k[1], "Devices") == 0 &&
      strcmp(k[2], "MappedPipes") == 0 && k[3][0] == '/') {
    *shape = 6;
    return 0;
  }
  return bad(e, f,
             "must name a SCSI attachment, a VirtualPci device, a network "
             "adapter, Memory/SizeInMB, Processor, a VPMem device or a "
             "mapped pipe");
}

/* A SCSI disk's place: controller 0..3 and LUN 0..63. */
static bool disk_at(const json_t *o) {
  const json_t *c = json_object_get(o, "ctrl"), *l = json_object_get(o, "lun");
  return json_is_integer(c) && json_is_integer(l) &&
         json_integer_value(c) >= 0 && json_integer_value(c) <= 3 &&
         json_integer_value(l) >= 0 && json_integer_value(l) <= 63;
}

static bool abs_path(const json_t *v) {
  const char *p = json_string_value(v);
  return p != NULL && p[0] == '/' && strlen(p) <= 4096;
}

/* The core's keys of an external snapshot's Data (vm_snapshot.c): disks
** [{ctrl, lun, top, overlay, field}] and held (the resource paths held);
** a merge's ctrl, lun, held, below. The backend checks its own keys. */
static int check_snapshot_data(const char *commit, const json_t *data,
                               const char *f, orr_error *e) {
  const json_t *held = json_object_get(data, "held"), *d;
  size_t i;
  if (!json_is_array(held) || json_array_size(held) > 4 * 64)
    return bad(e, f, "needs held, an array of resource paths");
  json_array_foreach(held, i, d) {
    if (!json_is_string(d) || json_string_length(d) > 512)
      return bad(e, f, "held must hold resource paths");
  }
  if (strcmp(commit, "disk_merge") == 0) {
    if (!disk_at(data) || !abs_path(json_object_get(data, "below")))
      return bad(e, f,
                 "needs ctrl 0..3, lun 0..63 and below, the absolute path of "
                 "the image below the merged overlay");
    return 0;
  }
  d = json_object_get(data, "disks");
  if (!json_is_array(d) || json_array_size(d) == 0 ||
      json_array_size(d) > 4 * 64)
    return bad(e, f, "needs disks, an array of 1 to 256 disks");
  json_array_foreach(json_object_get(data, "disks"), i, d) {
    const json_t *fl = json_object_get(d, "field");
    if (!disk_at(d) || !json_is_string(json_object_get(d, "top")) ||
        !abs_path(json_object_get(d, "overlay")) ||
        (fl != NULL && !json_is_string(fl)))
      return bad(e, f,
                 "disks must be {ctrl 0..3, lun 0..63, top, overlay (an "
                 "absolute path), field}");
  }
  return 0;
}

/* An intent's Data for its Commit, and that applying it to the document
** leaves a valid document. */
static int check_data(const char *commit, const json_t *data, const json_t *doc,
                      const json_t *layout, const char *field, orr_error *e) {
  static const orr_type *const value_type[] = {
      &orr__t_attachment,       &orr__t_vpci_device,
      &orr__t_network_adapter,  NULL,
      &orr__t_processor_limits, &orr__t_vpmem_device};
  char f[128];
  const char *key;
  json_t *v, *norm = NULL;
  int shape = -1, rc;
  snprintf(f, sizeof f, "%s.Data", field);
  if (!json_is_object(data))
    return bad(e, f, "must be an object");
  if (strcmp(commit, "snapshot") == 0 || strcmp(commit, "disk_merge") == 0) {
    if ((rc = check_snapshot_data(commit, data, f, e)) != 0)
      return rc;
  } else if (strcmp(commit, "share") == 0) {
    json_object_foreach((json_t *)data, key, v) {
      if (strcmp(key, "name") != 0)
        return bad(e, f, "may hold only \"name\"");
    }
    v = json_object_get(data, "name");
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        json_string_length(v) > 256)
      return bad(e, f, "needs name, a string of 1 to 256 bytes");
  } else {
    /* Other keys of Data are the backend's (backend->plan_change adds
    ** them): its check_state checks them. */
    if ((rc = check_keys(json_object_get(data, "keys"), f, &shape, e)) != 0)
      return rc;
    if ((strcmp(commit, "merge") == 0) != (shape == 4) ||
        (strcmp(commit, "pipe") == 0) != (shape == 6))
      return bad(e, f, "keys do not fit the commit");
    if (shape == 6 && json_object_get(data, "value") != NULL)
      return bad(e, f, "of a mapped pipe has no value (the backend's keep it)");
    v = json_object_get(data, "value");
    if (shape == 3 || shape == 4) {
      if (v == NULL)
        return bad(e, f, "needs a value");
    }
    if (v != NULL && shape == 3) {
      if (!json_is_integer(v) || json_integer_value(v) < 1 ||
          json_integer_value(v) > 1048576)
        return bad(e, f, "value must be a size in MiB in 1..1048576");
    } else if (v != NULL) {
      orr_error se = {0, ""};
      if (orr__schema_normalize(value_type[shape], v, "value", &norm, &se) != 0)
        return orr_error_set(e, ORR_EINVAL, "state.json: %s: %s", f, se.msg);
      if (!json_equal(norm, v)) {
        json_decref(norm);
        return bad(e, f, "value is not in the form the engine writes");
      }
      json_decref(norm);
    }
  }
  /* Adopting the intent must leave a document that passes every rule. */
  {
    orr_vm tmp;
    orr_req r;
    orr_error de = {0, ""};
    json_t *out = NULL;
    memset(&tmp, 0, sizeof tmp);
    memset(&r, 0, sizeof r);
    tmp.doc = json_deep_copy(doc);
    tmp.layout = json_deep_copy(layout);
    r.vm = &tmp;
    r.data = (json_t *)data;
    orr__commit_by_name(commit)(&r);
    rc = orr_doc_check(tmp.doc, &out, &de);
    json_decref(out);
    json_decref(tmp.doc);
    json_decref(tmp.layout);
    if (rc != 0)
      return orr_error_set(e, ORR_EINVAL,
                           "state.json: %s: adopting it would break the "
                           "document: %s",
                           field, de.msg);
  }
  return 0;
}

static int check_intents(const json_t *list, const json_t *doc,
                         const json_t *layout, orr_error *e) {
  size_t i;
  json_t *it;
  if (json_array_size(list) > MAX_INTENTS)
    return bad(e, "Intents", "has more entries than the engine ever writes");
  json_array_foreach(list, i, it) {
    char f[48];
    const char *key, *commit;
    json_t *v;
    snprintf(f, sizeof f, "Intents[%zu]", i);
    if (!json_is_object(it))
      return bad(e, f, "must be an object");
    json_object_foreach(it, key, v) {
      if (strcmp(key, "Resource") != 0 && strcmp(key, "Commit") != 0 &&
          strcmp(key, "Data") != 0 && strcmp(key, "Plan") != 0)
        return bad(e, f, "may hold only Resource, Commit, Data and Plan");
    }
    v = json_object_get(it, "Resource");
    if (!json_is_string(v) || json_string_length(v) > 512)
      return bad(e, f, "needs Resource, a string of at most 512 bytes");
    commit = json_string_value(json_object_get(it, "Commit"));
    if (commit == NULL || orr__commit_by_name(commit) == NULL)
      return bad(e, f,
                 "needs Commit, one of \"path\", \"share\", \"merge\", "
                 "\"pipe\", \"snapshot\", \"disk_merge\"");
    if (!json_is_object(json_object_get(it, "Plan")))
      return bad(e, f, "needs Plan, an object");
    int rc = check_data(commit, json_object_get(it, "Data"), doc, layout, f, e);
    if (rc != 0)
      return rc;
  }
  return 0;
}

int orr__vm_state_check(const json_t *st, const char *id, const char *run_dir,
                        const orr_backend *backend, json_t **doc,
                        orr_error *e) {
  static const char *const known[] = {"Version",    "Id",       "RuntimeId",
                                      "Accel",      "BootMB",   "ProcessId",
                                      "StartTime",  "Document", "Layout",
                                      "Plan9Index", "Intents",  NULL};
  const json_t *v, *docv, *layout, *p9, *intents;
  json_t *norm = NULL;
  const char *key;
  json_t *val;
  orr_error de = {0, ""};
  int rc;
  *doc = NULL;
  if (!json_is_object(st))
    return orr_error_set(e, ORR_EINVAL, "state.json must hold a JSON object");
  json_object_foreach((json_t *)st, key, val) {
    size_t i;
    for (i = 0; known[i] && strcmp(known[i], key) != 0; i++)
      ;
    if (known[i] == NULL)
      return orr_error_set(e, ORR_EINVAL, "state.json: unknown field \"%.64s\"",
                           key);
  }
  if ((rc = need(st, "Version", JSON_INTEGER, &v, e)) != 0)
    return rc;
  if (json_integer_value(v) != 1)
    return bad(e, "Version", "must be 1 (written by this engine)");
  if ((rc = need(st, "Id", JSON_STRING, &v, e)) != 0)
    return rc;
  if (strcmp(json_string_value(v), id) != 0)
    return orr_error_set(e, ORR_EINVAL,
                         "state.json: Id is \"%.64s\", not the VM \"%s\" "
                         "being opened",
                         json_string_value(v), id);
  if ((rc = need(st, "RuntimeId", JSON_STRING, &v, e)) != 0)
    return rc;
  if (orr__check_guid(json_string_value(v), json_string_length(v)) != NULL)
    return bad(e, "RuntimeId", "must be a GUID");
  if ((rc = need(st, "Accel", JSON_STRING, &v, e)) != 0)
    return rc;
  if (strcmp(json_string_value(v), "tcg") != 0 &&
      strcmp(json_string_value(v), "kvm") != 0)
    return bad(e, "Accel", "must be \"tcg\" or \"kvm\"");
  if ((rc = need(st, "BootMB", JSON_INTEGER, &v, e)) != 0)
    return rc;
  if (json_integer_value(v) < 1 || json_integer_value(v) > 1048576)
    return bad(e, "BootMB", "must be in 1..1048576");
  if ((rc = need(st, "Document", JSON_OBJECT, &docv, e)) != 0 ||
      (rc = need(st, "Layout", JSON_OBJECT, &layout, e)) != 0 ||
      (rc = need(st, "Plan9Index", JSON_OBJECT, &p9, e)) != 0 ||
      (rc = need(st, "Intents", JSON_ARRAY, &intents, e)) != 0)
    return rc;
  if (orr_doc_check(docv, &norm, &de) != 0)
    return orr_error_set(e, ORR_EINVAL, "state.json: Document: %s", de.msg);
  if (!json_is_false(
          json_object_get(norm, "ShouldTerminateOnLastHandleClosed"))) {
    json_decref(norm);
    return bad(e, "Document",
               "is of a VM that terminates with its handle: only one with "
               "ShouldTerminateOnLastHandleClosed = false is ever re-opened");
  }
  {
    /* Each share name maps to its boot-time index, within the shares the
    ** VM booted with (removed ones stay in the map). */
    json_object_foreach((json_t *)p9, key, val) {
      if (!json_is_integer(val) || json_integer_value(val) < 0 ||
          json_integer_value(val) > 255 || strlen(key) > 256) {
        json_decref(norm);
        return bad(e, "Plan9Index",
                   "must map share names to indexes in 0..255");
      }
    }
  }
  if ((rc = check_intents(intents, norm, layout, e)) != 0) {
    json_decref(norm);
    return rc;
  }
  if (backend->check_state == NULL) {
    json_decref(norm);
    return orr_error_set(e, ORR_ENOTSUP,
                         "the %s backend cannot re-attach to a VM",
                         backend->name);
  }
  if ((rc = backend->check_state(st, run_dir, e)) != 0) {
    json_decref(norm);
    return rc;
  }
  *doc = norm;
  return 0;
}

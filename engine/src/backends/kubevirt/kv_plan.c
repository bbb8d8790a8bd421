/*
** What `orrery plan --backend kubevirt` prints for one VM, and the
** bookkeeping that keeps it true across a recipe: the manifest as the
** VirtualMachine would be after every request recorded so far (volumes
** added and removed, spec patches applied), so a later change is planned
** against it exactly as it would be against the object read back from a
** cluster.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kubevirt.h"

/* ---- RFC 6902 JSON Patch (add, remove, replace, test) ---- */

/* Splits off the next token of an RFC 6901 pointer into tok (unescaped);
** returns the rest of the pointer, or NULL if malformed. */
static const char *next_token(const char *p, char *tok, size_t size) {
  size_t o = 0;
  if (*p != '/')
    return NULL;
  for (p++; *p && *p != '/'; p++) {
    char ch = *p;
    if (ch == '~') {
      if (p[1] != '0' && p[1] != '1')
        return NULL;
      ch = *++p == '0' ? '~' : '/';
    }
    if (o + 1 >= size)
      return NULL;
    tok[o++] = ch;
  }
  tok[o] = '\0';
  return p;
}

static int array_index(const json_t *arr, const char *tok, int allow_end,
                       size_t *out) {
  char *end;
  long v;
  if (allow_end && strcmp(tok, "-") == 0) {
    *out = json_array_size(arr);
    return 0;
  }
  if (tok[0] == '\0' || (tok[0] == '0' && tok[1] != '\0'))
    return -1;
  v = strtol(tok, &end, 10);
  /* add may insert at the end; the other ops need an element. */
  if (*end != '\0' || v < 0 || (size_t)v > json_array_size(arr) ||
      (!allow_end && (size_t)v == json_array_size(arr)))
    return -1;
  *out = (size_t)v;
  return 0;
}

static int apply_op(json_t *doc, const json_t *op, orr_error *e) {
  const char *kind = json_string_value(json_object_get(op, "op"));
  const char *path = json_string_value(json_object_get(op, "path"));
  json_t *value = json_object_get(op, "value");
  json_t *parent = doc;
  char tok[256];
  const char *p = path;
  if (kind == NULL || path == NULL || path[0] != '/')
    return orr_error_set(e, ORR_EINVAL, "JSON Patch: bad op or path");
  /* Walk to the parent of the last token. */
  for (;;) {
    const char *rest = next_token(p, tok, sizeof tok);
    if (rest == NULL)
      return orr_error_set(e, ORR_EINVAL, "JSON Patch: bad path %s", path);
    if (*rest == '\0')
      break;
    if (json_is_object(parent))
      parent = json_object_get(parent, tok);
    else if (json_is_array(parent)) {
      size_t i;
      if (array_index(parent, tok, 0, &i) != 0)
        parent = NULL;
      else
        parent = json_array_get(parent, i);
    } else
      parent = NULL;
    if (parent == NULL)
      return orr_error_set(e, ORR_EINVAL, "JSON Patch: %s: no such location",
                           path);
    p = rest;
  }
  if (strcmp(kind, "remove") != 0 && value == NULL)
    return orr_error_set(e, ORR_EINVAL, "JSON Patch: %s needs a value", kind);
  if (json_is_object(parent)) {
    json_t *cur = json_object_get(parent, tok);
    if (strcmp(kind, "add") == 0)
      return json_object_set_new(parent, tok, json_deep_copy(value))
                 ? ORR_ENOMEM
                 : 0;
    if (cur == NULL)
      return orr_error_set(e, ORR_EINVAL, "JSON Patch: %s: no such member",
                           path);
    if (strcmp(kind, "remove") == 0)
      return json_object_del(parent, tok), 0;
    if (strcmp(kind, "replace") == 0)
      return json_object_set_new(parent, tok, json_deep_copy(value)), 0;
    if (strcmp(kind, "test") == 0)
      return json_equal(cur, value)
                 ? 0
                 : orr_error_set(e, ORR_EBUSY, "JSON Patch: test of %s failed",
                                 path);
  } else if (json_is_array(parent)) {
    size_t i;
    int add = strcmp(kind, "add") == 0;
    if (array_index(parent, tok, add, &i) != 0)
      return orr_error_set(e, ORR_EINVAL, "JSON Patch: %s: bad index", path);
    if (add)
      return json_array_insert_new(parent, i, json_deep_copy(value))
                 ? ORR_ENOMEM
                 : 0;
    if (strcmp(kind, "remove") == 0)
      return json_array_remove(parent, i), 0;
    if (strcmp(kind, "replace") == 0)
      return json_array_set_new(parent, i, json_deep_copy(value)), 0;
    if (strcmp(kind, "test") == 0)
      return json_equal(json_array_get(parent, i), value)
                 ? 0
                 : orr_error_set(e, ORR_EBUSY, "JSON Patch: test of %s failed",
                                 path);
  } else
    return orr_error_set(e, ORR_EINVAL, "JSON Patch: %s: no such location",
                         path);
  return orr_error_set(e, ORR_EINVAL, "JSON Patch: unknown op %s", kind);
}

int orr__kv_json_patch(const json_t *obj, const json_t *ops, json_t **out,
                       orr_error *e) {
  json_t *doc = json_deep_copy(obj);
  size_t i;
  json_t *op;
  *out = NULL;
  if (!json_is_array(ops)) {
    json_decref(doc);
    return orr_error_set(e, ORR_EINVAL, "JSON Patch: not an array");
  }
  json_array_foreach(ops, i, op) {
    int rc = apply_op(doc, op, e);
    if (rc != 0) {
      json_decref(doc);
      return rc;
    }
  }
  *out = doc;
  return 0;
}

/* ---- the plan entry ---- */

int orr__kv_plan_new(const json_t *doc, const orr_kv_config *cfg,
                     json_t **entry, orr_error *e) {
  orr_kv_verb_opts o = {0};
  json_t *vm, *ignored, *create;
  int rc;
  *entry = NULL;
  if ((rc = orr__kv_manifest(doc, cfg, &vm, &ignored, e)) != 0)
    return rc;
  o.manifest = vm;
  if ((rc = orr__kv_verb(cfg, ORR_KV_CREATE, &o, &create, e)) != 0) {
    json_decref(vm);
    json_decref(ignored);
    return rc;
  }
  *entry = json_pack("{s:o, s:[o], s:o}", "manifest", vm, "requests", create,
                     "ignored", ignored);
  return 0;
}

/* The VM's template spec, created on the way. */
static json_t *spec_of(json_t *vm, const char *key, json_t *(*mk)(void)) {
  json_t *s = json_object_get(
      json_object_get(json_object_get(vm, "spec"), "template"), "spec");
  json_t *v = json_object_get(s, key);
  if (v == NULL && mk)
    json_object_set_new(s, key, v = mk());
  return v;
}

static json_t *devices_of(json_t *vm) {
  json_t *dom = spec_of(vm, "domain", json_object);
  json_t *d = json_object_get(dom, "devices");
  if (d == NULL)
    json_object_set_new(dom, "devices", d = json_object());
  return d;
}

static void drop_named(json_t *arr, const char *name) {
  for (size_t i = json_array_size(arr); i-- > 0;) {
    const char *n =
        json_string_value(json_object_get(json_array_get(arr, i), "name"));
    if (n && strcmp(n, name) == 0)
      json_array_remove(arr, i);
  }
}

/* What the API server does to the VM object for one request. */
static int record_one(json_t *entry, const json_t *req, orr_error *e) {
  json_t *vm = json_object_get(entry, "manifest");
  const char *method = json_string_value(json_object_get(req, "method"));
  const char *path = json_string_value(json_object_get(req, "path"));
  const json_t *body = json_object_get(req, "body");
  const char *tail = path ? strrchr(path, '/') : NULL;
  json_t *copy;
  int rc;
  if (method == NULL || tail == NULL)
    return orr_error_set(e, ORR_EINVAL,
                         "plan: a request needs method and path");
  copy = json_pack("{s:s, s:s}", "method", method, "path", path);
  if (body)
    json_object_set(copy, "body", (json_t *)body);
  json_array_append_new(json_object_get(entry, "requests"), copy);
  if (strcmp(method, "PATCH") == 0) {
    json_t *ops = json_deep_copy(body), *next;
    size_t i;
    json_t *op;
    /* The manifest has no resourceVersion to compare. */
    json_array_foreach(ops, i, op) {
      if (strcmp(json_string_value(json_object_get(op, "path")),
                 "/metadata/resourceVersion") == 0) {
        json_array_remove(ops, i);
        break;
      }
    }
    rc = orr__kv_json_patch(vm, ops, &next, e);
    json_decref(ops);
    if (rc != 0)
      return rc;
    json_object_set_new(entry, "manifest", next);
  } else if (strcmp(tail, "/addvolume") == 0 &&
             strstr(path, "/virtualmachines/")) {
    /* As KubeVirt does: the disk keeps the volume's name. */
    json_t *vol = json_deep_copy(json_object_get(body, "volumeSource"));
    json_t *disk = json_deep_copy(json_object_get(body, "disk"));
    json_t *devs = devices_of(vm);
    json_object_set(vol, "name", json_object_get(body, "name"));
    json_object_set(disk, "name", json_object_get(body, "name"));
    if (json_object_get(devs, "disks") == NULL)
      json_object_set_new(devs, "disks", json_array());
    json_array_append_new(json_object_get(devs, "disks"), disk);
    json_array_append_new(spec_of(vm, "volumes", json_array), vol);
  } else if (strcmp(tail, "/removevolume") == 0 &&
             strstr(path, "/virtualmachines/")) {
    const char *name = json_string_value(json_object_get(body, "name"));
    drop_named(json_object_get(devices_of(vm), "disks"), name);
    drop_named(spec_of(vm, "volumes", NULL), name);
  }
  return 0;
}

int orr__kv_plan_record(json_t *entry, const json_t *requests, orr_error *e) {
  const json_t *list =
      json_is_array(requests) ? requests : json_object_get(requests, "do");
  size_t i;
  json_t *r;
  if (list == NULL && json_is_object(requests))
    return record_one(entry, requests, e);
  json_array_foreach(list, i, r) {
    int rc = record_one(entry, r, e);
    if (rc != 0)
      return rc;
  }
  return 0;
}

/*
** Checks objects and API requests against KubeVirt's published v1 OpenAPI
** schema, in the compact form scripts/kubevirt-schema.py extracts
** (kubevirt-v1-schema.json, compiled in as orr__kv_schema_text).
**
** The rules, stricter than a real API server where the schema allows it,
** because what is checked here is what Orrery itself produces:
**   - an object's keys must be properties of its definition (a real server
**     drops or refuses unknown fields, depending on its field validation);
**   - required properties must be present and not null; optional ones may be
**     null (the API server decodes null as absent, and its own answers carry
**     "creationTimestamp": null);
**   - string/integer/number/boolean/array/object as the schema types them,
**     int32/int64 ranges by "format", enums (published or read from the
**     description, see the extractor);
**   - a definition typed "object" without properties (RawExtension, FieldsV1)
**     takes any object.
** A JSON Patch body (the schema types Patch as an opaque object) is checked
** op by op: each path must name a field of the target type, and each value
** must be valid for that field.
*/
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kubevirt.h"
#include "orrery/kubevirt.h"

extern const char orr__kv_schema_text[];

static json_t *schema_doc;

const json_t *orr__kv_schema(void) {
  if (schema_doc == NULL) {
    json_error_t je;
    schema_doc = json_loads(orr__kv_schema_text, 0, &je);
    /* The text is compiled in: a parse failure is a build defect. */
    if (schema_doc == NULL) {
      fprintf(stderr, "kubevirt schema: %s at line %d\n", je.text, je.line);
      abort();
    }
  }
  return schema_doc;
}

void orr__kv_schema_release(void) {
  json_decref(schema_doc);
  schema_doc = NULL;
}

static const json_t *definition(const char *name) {
  return json_object_get(json_object_get(orr__kv_schema(), "definitions"),
                         name);
}

/* The schema node behind a {"$ref": ...} (one hop; refs never chain). */
static const json_t *deref(const json_t *node) {
  const char *ref = json_string_value(json_object_get(node, "$ref"));
  return ref ? definition(ref) : node;
}

static int type_is(const json_t *node, const char *t) {
  const json_t *type = json_object_get(node, "type");
  size_t i;
  json_t *x;
  if (json_is_string(type))
    return strcmp(json_string_value(type), t) == 0;
  json_array_foreach(type, i, x) {
    if (strcmp(json_string_value(x), t) == 0)
      return 1;
  }
  return 0;
}

static const char *jtype(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    return "an object";
  case JSON_ARRAY:
    return "an array";
  case JSON_STRING:
    return "a string";
  case JSON_INTEGER:
    return "an integer";
  case JSON_REAL:
    return "a number";
  case JSON_TRUE:
  case JSON_FALSE:
    return "a boolean";
  default:
    return "null";
  }
}

static int bad(orr_error *e, const char *path, const char *fmt, const char *a) {
  char msg[400];
  snprintf(msg, sizeof msg, fmt, a);
  return orr_error_set(e, ORR_EINVAL, "%s: %s", path, msg);
}

static int check_node(const json_t *node, const json_t *v, const char *path,
                      orr_error *e);

static int check_enum(const json_t *node, const json_t *v, const char *path,
                      orr_error *e) {
  const json_t *en = json_object_get(node, "enum");
  char list[256] = "";
  size_t i, n = 0;
  json_t *x;
  if (en == NULL)
    return 0;
  json_array_foreach(en, i, x) {
    if (json_equal(x, v))
      return 0;
    n += (size_t)snprintf(list + n, n < sizeof list ? sizeof list - n : 0,
                          "%s%s", i ? ", " : "", json_string_value(x));
  }
  return orr_error_set(e, ORR_EINVAL,
                       "%s: must be one of %s (KubeVirt v1 schema), got "
                       "\"%s\"",
                       path, list, json_string_value(v));
}

static int check_integer(const json_t *node, const json_t *v, const char *path,
                         orr_error *e) {
  const char *fmt = json_string_value(json_object_get(node, "format"));
  json_int_t n = json_integer_value(v);
  if (fmt && strcmp(fmt, "int32") == 0 && (n < INT32_MIN || n > INT32_MAX))
    return bad(e, path, "does not fit an %s", "int32");
  return 0;
}

static int check_object(const json_t *node, const char *name, const json_t *v,
                        const char *path, orr_error *e) {
  const json_t *props = json_object_get(node, "properties");
  const json_t *extra = json_object_get(node, "additionalProperties");
  const json_t *req = json_object_get(node, "required");
  const char *key;
  json_t *x;
  char sub[512];
  size_t i;
  json_array_foreach(req, i, x) {
    const json_t *have = json_object_get(v, json_string_value(x));
    if (have == NULL || json_is_null(have)) {
      snprintf(sub, sizeof sub, "%s.%s", path, json_string_value(x));
      return bad(e, sub, "is required%s", "");
    }
  }
  json_object_foreach((json_t *)v, key, x) {
    const json_t *p = json_object_get(props, key);
    snprintf(sub, sizeof sub, "%s.%s", path, key);
    if (p == NULL && json_is_object(extra))
      p = extra;
    if (p == NULL) {
      if (props == NULL && extra == NULL)
        continue; /* an opaque object */
      return bad(e, sub, "is not a field of %s", name);
    }
    if (json_is_null(x))
      continue; /* optional and null: absent */
    if (check_node(p, x, sub, e))
      return e ? e->code : ORR_EINVAL;
  }
  return 0;
}

static int check_node(const json_t *node, const json_t *v, const char *path,
                      orr_error *e) {
  const json_t *ref = json_object_get(node, "$ref");
  const char *name = "this object";
  if (ref) {
    name = json_string_value(ref);
    const json_t *d = definition(json_string_value(ref));
    if (d == NULL)
      return orr_error_set(e, ORR_EINVAL, "%s: schema has no definition %s",
                           path, json_string_value(ref));
    node = d;
  }
  if (json_object_get(node, "type") == NULL)
    return 0; /* untyped: anything */
  if (json_is_string(v) && type_is(node, "string"))
    return check_enum(node, v, path, e);
  if (json_is_integer(v) && type_is(node, "integer"))
    return check_integer(node, v, path, e);
  if (json_is_number(v) && type_is(node, "number"))
    return 0;
  if (json_is_boolean(v) && type_is(node, "boolean"))
    return 0;
  if (json_is_array(v) && type_is(node, "array")) {
    const json_t *items = json_object_get(node, "items");
    size_t i;
    json_t *x;
    char sub[512];
    json_array_foreach(v, i, x) {
      snprintf(sub, sizeof sub, "%s[%zu]", path, i);
      if (items && check_node(items, x, sub, e))
        return e ? e->code : ORR_EINVAL;
    }
    return 0;
  }
  if (json_is_object(v) && type_is(node, "object"))
    return check_object(node, name, v, path, e);
  {
    char want[64];
    const json_t *type = json_object_get(node, "type");
    if (json_is_string(type))
      snprintf(want, sizeof want, "%s", json_string_value(type));
    else
      snprintf(want, sizeof want, "a string or a number");
    return orr_error_set(e, ORR_EINVAL, "%s: must be %s, got %s", path, want,
                         jtype(v));
  }
}

int orr__kv_check(const char *def, const json_t *v, const char *where,
                  orr_error *e) {
  const json_t *d = definition(def);
  if (d == NULL)
    return orr_error_set(e, ORR_EINVAL, "no definition %s in the schema", def);
  if (v == NULL)
    return orr_error_set(e, ORR_EINVAL, "%s: missing", where);
  {
    json_t *ref = json_pack("{s:s}", "$ref", def);
    int rc = check_node(ref, v, where, e);
    json_decref(ref);
    return rc;
  }
}

/* ---- JSON Patch bodies ---- */

/* The schema node at RFC 6901 pointer `ptr` inside `node`; NULL if the
** pointer names no field. For "add", the last token of an array may be "-"
** or any index up to its length. */
static const json_t *resolve(const json_t *node, const char *ptr) {
  char tok[128];
  while (*ptr == '/') {
    size_t n = strcspn(ptr + 1, "/");
    size_t o = 0;
    const json_t *props, *extra;
    if (n >= sizeof tok)
      return NULL;
    for (size_t i = 0; i < n; i++) { /* ~1 is "/", ~0 is "~" */
      char c = ptr[1 + i];
      if (c == '~' && i + 1 < n && (ptr[2 + i] == '0' || ptr[2 + i] == '1'))
        c = ptr[2 + i++] == '0' ? '~' : '/';
      tok[o++] = c;
    }
    tok[o] = '\0';
    ptr += 1 + n;
    node = deref(node);
    if (type_is(node, "array")) {
      char *end;
      if (strcmp(tok, "-") != 0 &&
          (strtol(tok, &end, 10) < 0 || *end != '\0' || tok[0] == '\0'))
        return NULL;
      node = json_object_get(node, "items");
      continue;
    }
    props = json_object_get(node, "properties");
    extra = json_object_get(node, "additionalProperties");
    if (json_object_get(props, tok))
      node = json_object_get(props, tok);
    else if (json_is_object(extra))
      node = extra;
    else
      return NULL;
  }
  return *ptr == '\0' ? node : NULL;
}

int orr__kv_check_patch(const char *def, const json_t *ops, const char *where,
                        orr_error *e) {
  size_t i;
  json_t *op;
  char sub[512];
  if (!json_is_array(ops) || json_array_size(ops) == 0)
    return orr_error_set(e, ORR_EINVAL,
                         "%s: a JSON Patch must be a non-empty array", where);
  json_array_foreach(ops, i, op) {
    const char *kind = json_string_value(json_object_get(op, "op"));
    const char *path = json_string_value(json_object_get(op, "path"));
    const json_t *value = json_object_get(op, "value");
    const json_t *target;
    snprintf(sub, sizeof sub, "%s[%zu]", where, i);
    if (kind == NULL || path == NULL)
      return bad(e, sub, "needs \"op\" and \"path\"%s", "");
    if (strcmp(kind, "add") && strcmp(kind, "remove") &&
        strcmp(kind, "replace") && strcmp(kind, "test"))
      return bad(e, sub, "op must be add, remove, replace or test, got %s",
                 kind);
    target = path[0] == '/' ? resolve(definition(def), path) : NULL;
    if (target == NULL)
      return orr_error_set(e, ORR_EINVAL, "%s.path: %s is not a field of %s",
                           sub, path, def);
    if (strcmp(kind, "remove") == 0) {
      if (value)
        return bad(e, sub, "a remove takes no value%s", "");
      continue;
    }
    if (value == NULL)
      return bad(e, sub, "a %s needs a value", kind);
    snprintf(sub + strlen(sub), sizeof sub - strlen(sub), ".value(%s)", path);
    if (check_node(target, value, sub, e))
      return e ? e->code : ORR_EINVAL;
  }
  return 0;
}

/* ---- requests ---- */

/* A Kubernetes object name (DNS-1123 subdomain, the rule for both VMs and
** namespaces here: lower-case alphanumerics, '-' and '.', 253 at most,
** alphanumeric at both ends). */
int orr__kv_valid_name(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n == 0 || n > max || !isalnum((unsigned char)s[0]) ||
      !isalnum((unsigned char)s[n - 1]))
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) ||
          s[i] == '-' || s[i] == '.'))
      return 0;
  return 1;
}

/* Does `path` (no query) fit template `tpl`? {namespace} and {name} take one
** segment each, a valid object name. */
static int path_matches(const char *tpl, const char *path) {
  while (*tpl && *path) {
    if (*tpl == '{') {
      const char *close = strchr(tpl, '}');
      size_t n = strcspn(path, "/");
      char seg[254];
      if (close == NULL || n == 0 || n >= sizeof seg)
        return 0;
      memcpy(seg, path, n);
      seg[n] = '\0';
      if (!orr__kv_valid_name(seg, 253))
        return 0;
      tpl = close + 1;
      path += n;
      continue;
    }
    if (*tpl++ != *path++)
      return 0;
  }
  return *tpl == '\0' && *path == '\0';
}

static int query_ok(const json_t *op, const char *query, const char *where,
                    orr_error *e) {
  const json_t *allowed = json_object_get(op, "query");
  while (query && *query) {
    size_t n = strcspn(query, "=&");
    int found = 0;
    size_t i;
    json_t *x;
    json_array_foreach(allowed, i, x) {
      if (strlen(json_string_value(x)) == n &&
          strncmp(json_string_value(x), query, n) == 0)
        found = 1;
    }
    if (!found)
      return orr_error_set(e, ORR_EINVAL,
                           "%s: query parameter \"%.*s\" is not one the "
                           "operation takes",
                           where, (int)n, query);
    query += strcspn(query, "&");
    if (*query == '&')
      query++;
  }
  return 0;
}

int orr__kv_check_request(const json_t *req, orr_error *e) {
  const char *method = json_string_value(json_object_get(req, "method"));
  const char *full = json_string_value(json_object_get(req, "path"));
  const json_t *body = json_object_get(req, "body");
  const json_t *ops = json_object_get(orr__kv_schema(), "operations");
  char path[1024];
  const char *query;
  size_t i, n;
  json_t *op;
  int path_known = 0;
  if (method == NULL || full == NULL)
    return orr_error_set(e, ORR_EINVAL,
                         "request: needs a string method and path");
  n = strcspn(full, "?");
  if (n >= sizeof path)
    return orr_error_set(e, ORR_EINVAL, "request: path too long");
  memcpy(path, full, n);
  path[n] = '\0';
  query = full[n] == '?' ? full + n + 1 : NULL;
  json_array_foreach(ops, i, op) {
    const char *tpl = json_string_value(json_object_get(op, "path"));
    const char *bdef = json_string_value(json_object_get(op, "body"));
    char where[1100];
    if (!path_matches(tpl, path))
      continue;
    path_known = 1;
    if (strcmp(json_string_value(json_object_get(op, "method")), method) != 0)
      continue;
    snprintf(where, sizeof where, "%s %s", method, path);
    if (query_ok(op, query, where, e))
      return e ? e->code : ORR_EINVAL;
    if (body == NULL || json_is_null(body)) {
      /* DELETE's DeleteOptions are optional in practice: the API server
      ** takes an empty body, whatever the generated spec says. */
      if (json_is_true(json_object_get(op, "bodyRequired")) &&
          strcmp(method, "DELETE") != 0)
        return orr_error_set(e, ORR_EINVAL, "%s: a %s body is required", where,
                             bdef);
      return 0;
    }
    if (bdef == NULL)
      return orr_error_set(e, ORR_EINVAL, "%s: takes no body", where);
    if (strcmp(method, "PATCH") == 0) {
      /* The target of the patch is what a PUT on the same path takes. */
      size_t j;
      json_t *put;
      json_array_foreach(ops, j, put) {
        if (strcmp(json_string_value(json_object_get(put, "method")), "PUT") ==
                0 &&
            strcmp(json_string_value(json_object_get(put, "path")), tpl) == 0)
          return orr__kv_check_patch(
              json_string_value(json_object_get(put, "body")), body, where, e);
      }
    }
    return orr__kv_check(bdef, body, bdef, e);
  }
  if (path_known)
    return orr_error_set(e, ORR_EINVAL,
                         "request: %s is not an operation of %s (KubeVirt v1 "
                         "schema)",
                         method, path);
  return orr_error_set(
      e, ORR_EINVAL, "request: %s is not a path of the KubeVirt v1 API", path);
}

/* ---- the public checks (orrery/kubevirt.h) ---- */

const json_t *orr_kubevirt_schema_source(void) {
  return json_object_get(orr__kv_schema(), "source");
}

int orr_kubevirt_check(const char *definition, const json_t *v,
                       const char *where, orr_error *e) {
  return orr__kv_check(definition, v, where ? where : "value", e);
}

int orr_kubevirt_check_request(const json_t *req, orr_error *e) {
  return orr__kv_check_request(req, e);
}

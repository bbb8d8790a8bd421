/*
** Checking and normalizing JSON against the schema tables. Everything a
** user can pass in, from Lua tables or JSON text, goes through here first.
*/
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "orrery/document.h"
#include "orrery/path.h"
#include "schema.h"

static int is_hex(char c) {
  return isxdigit((unsigned char)c) != 0;
}

const char *orr__check_guid(const char *s, size_t len) {
  static const int dash[] = {8, 13, 18, 23};
  if (len != 36)
    goto bad;
  for (size_t i = 0, d = 0; i < len; i++) {
    if (d < 4 && (int)i == dash[d]) {
      if (s[i] != '-')
        goto bad;
      d++;
    } else if (!is_hex(s[i])) {
      goto bad;
    }
  }
  return NULL;
bad:
  return "must be a GUID like 6f5c3a1e-1b2d-4c3e-9f4a-0a1b2c3d4e5f";
}

const char *orr__check_scsi_guid(const char *s, size_t len) {
  char key[37];
  if (orr__check_guid(s, len) == NULL) {
    memcpy(key, s, 36);
    key[36] = '\0';
    if (orr_scsi_controller_index(key) >= 0)
      return NULL;
  }
  return "must be one of the four HCS SCSI controller GUIDs "
         "(df6d0690-79e5-55b6-a5ec-c1e2f77f580a for controller 0, ...)";
}

void orr__guid_lower(char out[37], const char *guid) {
  size_t i;
  for (i = 0; i < 36 && guid[i]; i++)
    out[i] = (char)tolower((unsigned char)guid[i]);
  out[i] = '\0';
}

const char *orr__check_mac(const char *s, size_t len) {
  if (len != 17)
    goto bad;
  for (size_t i = 0; i < len; i++) {
    if (i % 3 == 2) {
      if (s[i] != '-')
        goto bad;
    } else if (!is_hex(s[i])) {
      goto bad;
    }
  }
  /* The low bit of the first octet marks a multicast address, which no
  ** NIC may own. */
  if (strtol((char[]){s[0], s[1], 0}, NULL, 16) & 1)
    return "must be a unicast MAC address (first octet even)";
  return NULL;
bad:
  return "must be a MAC address like 00-15-5D-52-C0-0A";
}

const char *orr__check_abs_path(const char *s, size_t len) {
  if (len == 0 || s[0] != '/')
    return "must be an absolute path";
  return NULL;
}

const char *orr__check_socket_path(const char *s, size_t len) {
  const char *r = orr__check_abs_path(s, len);
  if (r != NULL)
    return r;
  /* sun_path holds the terminating NUL too. */
  if (len >= sizeof(((struct sockaddr_un *)0)->sun_path))
    return "must fit a unix socket path (at most 107 bytes)";
  return NULL;
}

const char *orr__check_lun_key(const char *s, size_t len) {
  if ((len == 1 && isdigit((unsigned char)s[0])) ||
      (len == 2 && s[0] >= '1' && s[0] <= '6' && isdigit((unsigned char)s[1]) &&
       (s[0] < '6' || s[1] <= '3')))
    return NULL;
  return "must be a LUN \"0\"..\"63\"";
}

/* Go writes a []byte as standard base64 with padding; a string it would
** write differently (other padding, stray bits) is not one it wrote. */
const char *orr__check_base64(const char *s, size_t len) {
  static const char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t pad = 0;
  const char *last;
  if (len % 4 != 0)
    goto bad;
  while (pad < 2 && pad < len && s[len - 1 - pad] == '=')
    pad++;
  for (size_t i = 0; i < len - pad; i++)
    if (s[i] == '\0' || strchr(alphabet, s[i]) == NULL)
      goto bad;
  /* The bits after the last byte must be zero (canonical). */
  if (pad > 0) {
    last = strchr(alphabet, s[len - 1 - pad]);
    if (((last - alphabet) & (pad == 1 ? 0x3 : 0xf)) != 0)
      goto bad;
  }
  return NULL;
bad:
  return "must be standard base64 with padding (a Go []byte)";
}

void orr__json_brief(const json_t *v, char *buf, size_t len) {
  char *text;
  if (v == NULL) {
    snprintf(buf, len, "nothing");
    return;
  }
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    snprintf(buf, len, "a table");
    return;
  case JSON_ARRAY:
    snprintf(buf, len, "a list");
    return;
  default:
    text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (text == NULL) {
      snprintf(buf, len, "a value");
      return;
    }
    if (strlen(text) > 60)
      snprintf(buf, len, "%.57s...", text);
    else
      snprintf(buf, len, "%s", text);
    free(text);
  }
}

static int fail(orr_error *e, const orr_path *at, const char *rule,
                const json_t *got) {
  char brief[80], path[512];
  if (e == NULL)
    return ORR_EINVAL;
  orr__json_brief(got, brief, sizeof brief);
  orr_path_text(at, path, sizeof path);
  return orr_error_set(e, ORR_EINVAL, "%s %s, got %s", path[0] ? path : "value",
                       rule, brief);
}

static int normalize(const orr_type *t, const json_t *in, const orr_path *at,
                     json_t **out, orr_error *e);

static int normalize_string(const orr_type *t, const json_t *in,
                            const orr_path *at, json_t **out, orr_error *e) {
  const char *s;
  size_t n;
  const char *rule;
  if (!json_is_string(in))
    return fail(e, at, "must be a string", in);
  s = json_string_value(in);
  n = json_string_length(in);
  if (memchr(s, '\0', n) != NULL)
    return fail(e, at, "must not contain a NUL byte", in);
  if (t->values != NULL) {
    char buf[512], rule_text[600];
    size_t off = 0;
    for (const char *const *v = t->values; *v; v++)
      if (strcmp(*v, s) == 0)
        goto ok;
    for (const char *const *v = t->values; *v && off < sizeof buf; v++)
      off += (size_t)snprintf(buf + off, sizeof buf - off, "%s\"%s\"",
                              off ? ", " : "", *v);
    snprintf(rule_text, sizeof rule_text, "must be one of %s", buf);
    return fail(e, at, rule_text, in);
  }
  if (t->check != NULL && (rule = t->check(s, n)) != NULL)
    return fail(e, at, rule, in);
ok:
  /* Scalars are never changed in place, so the copy shares them. */
  *out = json_incref((json_t *)in);
  return 0;
}

static int normalize_int(const orr_type *t, const json_t *in,
                         const orr_path *at, json_t **out, orr_error *e) {
  json_int_t v;
  if (json_is_integer(in)) {
    v = json_integer_value(in);
  } else if (json_is_real(in)) {
    double d = json_real_value(in);
    /* Lua and JSON both may carry 512.0 for 512; accept exact integers. */
    if (!isfinite(d) || d != floor(d) || fabs(d) > 9.0e15)
      goto bad;
    v = (json_int_t)d;
  } else {
    goto bad;
  }
  if (v < t->min || v > t->max)
    goto bad;
  *out = json_is_integer(in) ? json_incref((json_t *)in) : json_integer(v);
  return 0;
bad:;
  char rule[128];
  snprintf(rule, sizeof rule, "must be an integer in %lld..%lld",
           (long long)t->min, (long long)t->max);
  return fail(e, at, rule, in);
}

static int cmp_keys(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The most fields any schema object has; checked by the schema spec. */
#define MAX_FIELDS 32

static int normalize_object(const orr_type *t, const json_t *in,
                            const orr_path *at, int keep_zero, json_t **out,
                            orr_error *e) {
  const json_t *slot[MAX_FIELDS] = {0};
  const char *key, *field, *rule;
  json_t *val, *res;
  size_t nfields = 0;
  char path[512];
  if (json_is_array(in) && json_array_size(in) == 0)
    in = NULL; /* an empty Lua table */
  else if (in != NULL && !json_is_object(in))
    return fail(e, at, "must be a table", in);
  while (t->fields[nfields].name != NULL)
    nfields++;
  if (nfields > MAX_FIELDS)
    return orr_error_set(e, ORR_EINVAL, "%s: bad schema (too many fields)",
                         t->name);
  /* One pass over the given keys: each finds its field, and an unknown one
  ** (a typo) is refused before anything else. */
  json_object_foreach((json_t *)in, key, val) {
    int i = orr__field_index(t, key);
    if (i < 0) {
      orr_path sub = {at, key, 0};
      return orr_error_set(e, ORR_EINVAL,
                           "%s is not a field of %s (HCS names are "
                           "case-sensitive)",
                           orr_path_text(&sub, path, sizeof path), t->name);
    }
    slot[i] = val;
  }
  res = json_object();
  for (size_t i = 0; i < nfields; i++) {
    const orr_field *f = &t->fields[i];
    orr_path sub = {at, f->name, 0};
    json_t *nv = NULL;
    int rc;
    if (slot[i] == NULL || json_is_null(slot[i])) {
      if (f->flags & ORR_F_REQUIRED) {
        json_decref(res);
        return orr_error_set(e, ORR_EINVAL, "%s is required",
                             orr_path_text(&sub, path, sizeof path));
      }
      if (!(f->flags & ORR_F_VALUE))
        continue;
      /* A struct Go holds by value is always there, empty or not. */
      rc = normalize_object(f->type, NULL, &sub, 0, &nv, e);
    } else {
      rc = normalize(f->type, slot[i], &sub, &nv, e);
    }
    if (rc != 0) {
      json_decref(res);
      return e ? e->code : ORR_EINVAL;
    }
    if (!(f->flags & ORR_F_ALIAS) && orr__go_empty(f, nv)) {
      /* Go's zero value: omitempty leaves it out, so the document does
      ** too (a required field must say something). With keep_zero the
      ** caller sees it and decides. */
      if (f->flags & ORR_F_REQUIRED) {
        json_decref(nv);
        json_decref(res);
        return orr_error_set(e, ORR_EINVAL, "%s must not be empty",
                             orr_path_text(&sub, path, sizeof path));
      }
      if (!keep_zero) {
        json_decref(nv);
        continue;
      }
    }
    json_object_set_new_nocheck(res, f->name, nv);
  }
  if (t->fix != NULL && (rule = t->fix(res, &field)) != NULL) {
    orr_path sub = {at, field, 0};
    json_decref(res);
    return orr_error_set(e, ORR_EINVAL, "%s %s",
                         orr_path_text(&sub, path, sizeof path), rule);
  }
  *out = res;
  return 0;
}

static int normalize_map(const orr_type *t, const json_t *in,
                         const orr_path *at, json_t **out, orr_error *e) {
  size_t n, i = 0;
  const char *small[16], **keys = small;
  const char *key;
  json_t *val;
  json_t *res;
  char path[512];
  if (json_is_array(in) && json_array_size(in) == 0)
    in = NULL;
  else if (!json_is_object(in))
    return fail(e, at,
                "must be a table keyed by strings (HCS map keys are "
                "strings, e.g. [\"0\"])",
                in);
  n = in ? json_object_size(in) : 0;
  if (t->max_items && n > t->max_items) {
    char rule[96];
    snprintf(rule, sizeof rule, "must have at most %zu entries", t->max_items);
    return fail(e, at, rule, in);
  }
  if (n > sizeof small / sizeof *small)
    keys = calloc(n, sizeof *keys);
  if (in)
    json_object_foreach((json_t *)in, key, val) keys[i++] = key;
  /* Go marshals maps with sorted keys; so do we. */
  qsort(keys, n, sizeof *keys, cmp_keys);
  res = json_object();
  for (i = 0; i < n; i++) {
    json_t *nv = NULL;
    const char *rule;
    orr_path sub = {at, keys[i], 0};
    if (t->key_check && (rule = t->key_check(keys[i], strlen(keys[i])))) {
      orr_error_set(e, ORR_EINVAL, "%s: key \"%s\" %s",
                    orr_path_text(at, path, sizeof path), keys[i], rule);
      goto err;
    }
    if (normalize(t->elem, json_object_get(in, keys[i]), &sub, &nv, e) != 0)
      goto err;
    if (orr__guid_keyed(t)) {
      /* GUIDs compare case-insensitively: store one spelling, so the same
      ** device cannot appear twice under two. */
      char low[37];
      orr__guid_lower(low, keys[i]);
      if (json_object_get(res, low)) {
        json_decref(nv);
        orr_error_set(e, ORR_EEXIST,
                      "%s: key \"%s\" is the same GUID as "
                      "another key",
                      orr_path_text(at, path, sizeof path), keys[i]);
        goto err;
      }
      json_object_set_new_nocheck(res, low, nv);
      continue;
    }
    json_object_set_new_nocheck(res, keys[i], nv);
  }
  if (keys != small)
    free(keys);
  *out = res;
  return 0;
err:
  if (keys != small)
    free(keys);
  json_decref(res);
  return e ? e->code : ORR_EINVAL;
}

static int normalize_array(const orr_type *t, const json_t *in,
                           const orr_path *at, json_t **out, orr_error *e) {
  json_t *res;
  if (json_is_object(in) && json_object_size(in) == 0) {
    if (t->min > 0)
      return fail(e, at, "must not be empty", in);
    *out = json_array(); /* an empty Lua table */
    return 0;
  }
  if (!json_is_array(in))
    return fail(e, at, "must be a list", in);
  /* For lists, min is the fewest entries (a VPCI device needs a function). */
  if (t->min > 0 && json_array_size(in) < (size_t)t->min) {
    char rule[96];
    snprintf(rule, sizeof rule, "must have at least %lld entr%s",
             (long long)t->min, t->min == 1 ? "y" : "ies");
    return fail(e, at, rule, in);
  }
  if (t->max_items && json_array_size(in) > t->max_items) {
    char rule[96];
    snprintf(rule, sizeof rule, "must have at most %zu entries", t->max_items);
    return fail(e, at, rule, in);
  }
  res = json_array();
  for (size_t i = 0; i < json_array_size(in); i++) {
    json_t *nv = NULL;
    /* 1-based, as the Lua user wrote it. */
    orr_path sub = {at, NULL, i + 1};
    if (normalize(t->elem, json_array_get(in, i), &sub, &nv, e)) {
      json_decref(res);
      return e ? e->code : ORR_EINVAL;
    }
    json_array_append_new(res, nv);
  }
  *out = res;
  return 0;
}

static int normalize(const orr_type *t, const json_t *in, const orr_path *at,
                     json_t **out, orr_error *e) {
  switch (t->kind) {
  case ORR_K_STRING:
    return normalize_string(t, in, at, out, e);
  case ORR_K_BOOL:
    if (!json_is_boolean(in))
      return fail(e, at, "must be a boolean", in);
    *out = json_boolean(json_is_true(in));
    return 0;
  case ORR_K_INT:
    return normalize_int(t, in, at, out, e);
  case ORR_K_NUMBER:
    if (!json_is_number(in) || !isfinite(json_number_value(in)))
      return fail(e, at, "must be a finite number", in);
    *out = json_real(json_number_value(in));
    return 0;
  case ORR_K_OBJECT:
    return normalize_object(t, in, at, 0, out, e);
  case ORR_K_MAP:
    return normalize_map(t, in, at, out, e);
  case ORR_K_ARRAY:
    return normalize_array(t, in, at, out, e);
  case ORR_K_ANY:
    *out = json_deep_copy(in);
    return 0;
  case ORR_K_UNSUPPORTED: {
    char path[512];
    return orr_error_set(e, ORR_EINVAL,
                         "%s is an HCS field Orrery does not support",
                         orr_path_text(at, path, sizeof path));
  }
  }
  return orr_error_set(e, ORR_EINVAL, "bad schema");
}

int orr__schema_normalize(const orr_type *t, const json_t *in, const char *path,
                          json_t **out, orr_error *e) {
  orr_path top = {NULL, path, 0};
  return normalize(t, in, path[0] ? &top : NULL, out, e);
}

int orr__schema_normalize_keep_zero(const orr_type *t, const json_t *in,
                                    json_t **out, orr_error *e) {
  if (t->kind != ORR_K_OBJECT)
    return normalize(t, in, NULL, out, e);
  return normalize_object(t, in, NULL, 1, out, e);
}

static const char *kind_name(orr_kind k) {
  static const char *const names[] = {"string", "bool",   "int",
                                      "number", "object", "map",
                                      "array",  "any",    "unsupported"};
  return (size_t)k < sizeof names / sizeof *names ? names[k] : "?";
}

json_t *orr__schema_describe(const orr_type *t) {
  json_t *d =
      json_pack("{s:s, s:s}", "name", t->name, "kind", kind_name(t->kind));
  switch (t->kind) {
  case ORR_K_INT:
    json_object_set_new(d, "min", json_integer(t->min));
    json_object_set_new(d, "max", json_integer(t->max));
    break;
  case ORR_K_STRING:
    if (t->values != NULL) {
      json_t *v = json_array();
      for (const char *const *s = t->values; *s; s++)
        json_array_append_new(v, json_string(*s));
      json_object_set_new(d, "values", v);
    }
    json_object_set_new(d, "checked", json_boolean(t->check != NULL));
    break;
  case ORR_K_OBJECT: {
    json_t *fields = json_array();
    for (const orr_field *f = t->fields; f->name; f++)
      json_array_append_new(
          fields, json_pack("{s:s, s:b, s:b, s:b, s:b, s:o}", "name", f->name,
                            "required", (f->flags & ORR_F_REQUIRED) != 0,
                            "pointer", (f->flags & ORR_F_PTR) != 0, "value",
                            (f->flags & ORR_F_VALUE) != 0, "alias",
                            (f->flags & ORR_F_ALIAS) != 0, "type",
                            orr__schema_describe(f->type)));
    json_object_set_new(d, "fields", fields);
    json_object_set_new(d, "value_fields", json_boolean(t->value_fields));
    break;
  }
  case ORR_K_MAP:
  case ORR_K_ARRAY:
    json_object_set_new(d, "elem", orr__schema_describe(t->elem));
    json_object_set_new(d, "min", json_integer(t->min));
    json_object_set_new(d, "max_items", json_integer((json_int_t)t->max_items));
    break;
  default:
    break;
  }
  return d;
}

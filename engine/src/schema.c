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

/* Appends ".name" (or "name" at the top) to a path for messages. */
static void path_join(char *out, size_t len, const char *path,
                      const char *name) {
  snprintf(out, len, "%s%s%s", path, path[0] ? "." : "", name);
}

static int fail(orr_error *e, const char *path, const char *rule,
                const json_t *got) {
  char brief[80];
  orr__json_brief(got, brief, sizeof brief);
  return orr_error_set(e, ORR_EINVAL, "%s %s, got %s", path[0] ? path : "value",
                       rule, brief);
}

static int normalize_string(const orr_type *t, const json_t *in,
                            const char *path, json_t **out, orr_error *e) {
  const char *s;
  size_t n;
  const char *rule;
  char buf[512];
  if (!json_is_string(in))
    return fail(e, path, "must be a string", in);
  s = json_string_value(in);
  n = json_string_length(in);
  if (memchr(s, '\0', n) != NULL)
    return fail(e, path, "must not contain a NUL byte", in);
  if (t->values != NULL) {
    size_t off = 0;
    for (const char *const *v = t->values; *v; v++) {
      if (strcmp(*v, s) == 0)
        goto ok;
      off += (size_t)snprintf(buf + off, sizeof buf - off, "%s\"%s\"",
                              off ? ", " : "", *v);
      if (off >= sizeof buf)
        break;
    }
    char rule_text[600];
    snprintf(rule_text, sizeof rule_text, "must be one of %s", buf);
    return fail(e, path, rule_text, in);
  }
  if (t->check != NULL && (rule = t->check(s, n)) != NULL)
    return fail(e, path, rule, in);
ok:
  *out = json_stringn(s, n);
  return 0;
}

static int normalize_int(const orr_type *t, const json_t *in, const char *path,
                         json_t **out, orr_error *e) {
  json_int_t v;
  char rule[128];
  snprintf(rule, sizeof rule, "must be an integer in %lld..%lld",
           (long long)t->min, (long long)t->max);
  if (json_is_integer(in)) {
    v = json_integer_value(in);
  } else if (json_is_real(in)) {
    double d = json_real_value(in);
    /* Lua and JSON both may carry 512.0 for 512; accept exact integers. */
    if (!isfinite(d) || d != floor(d) || fabs(d) > 9.0e15)
      return fail(e, path, rule, in);
    v = (json_int_t)d;
  } else {
    return fail(e, path, rule, in);
  }
  if (v < t->min || v > t->max)
    return fail(e, path, rule, in);
  *out = json_integer(v);
  return 0;
}

static int cmp_keys(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int normalize_object(const orr_type *t, const json_t *in,
                            const char *path, json_t **out, orr_error *e) {
  const char *key;
  json_t *val;
  char sub[512];
  json_t *res;
  if (json_is_array(in) && json_array_size(in) == 0)
    in = NULL; /* an empty Lua table */
  else if (!json_is_object(in))
    return fail(e, path, "must be a table", in);
  /* Unknown keys first: a typo must not pass silently. */
  json_object_foreach((json_t *)in, key, val) {
    const orr_field *f = t->fields;
    while (f->name && strcmp(f->name, key) != 0)
      f++;
    if (f->name == NULL) {
      path_join(sub, sizeof sub, path, key);
      return orr_error_set(e, ORR_EINVAL,
                           "%s is not a field of %s (HCS names are "
                           "case-sensitive)",
                           sub, t->name);
    }
  }
  res = json_object();
  for (const orr_field *f = t->fields; f->name; f++) {
    json_t *v = in ? json_object_get(in, f->name) : NULL;
    json_t *nv = NULL;
    path_join(sub, sizeof sub, path, f->name);
    if (v == NULL || json_is_null(v)) {
      if (f->required) {
        json_decref(res);
        return orr_error_set(e, ORR_EINVAL, "%s is required", sub);
      }
      continue;
    }
    if (orr__schema_normalize(f->type, v, sub, &nv, e) != 0) {
      json_decref(res);
      return e ? e->code : ORR_EINVAL;
    }
    json_object_set_new(res, f->name, nv);
  }
  *out = res;
  return 0;
}

static int normalize_map(const orr_type *t, const json_t *in, const char *path,
                         json_t **out, orr_error *e) {
  size_t n, i = 0;
  const char **keys;
  const char *key;
  json_t *val;
  json_t *res;
  char sub[512];
  if (json_is_array(in) && json_array_size(in) == 0)
    in = NULL;
  else if (!json_is_object(in))
    return fail(e, path,
                "must be a table keyed by strings (HCS map keys are "
                "strings, e.g. [\"0\"])",
                in);
  n = in ? json_object_size(in) : 0;
  if (t->max_items && n > t->max_items) {
    char rule[96];
    snprintf(rule, sizeof rule, "must have at most %zu entries", t->max_items);
    return fail(e, path, rule, in);
  }
  keys = calloc(n ? n : 1, sizeof *keys);
  if (in)
    json_object_foreach((json_t *)in, key, val) keys[i++] = key;
  /* Go marshals maps with sorted keys; so do we. */
  qsort(keys, n, sizeof *keys, cmp_keys);
  res = json_object();
  for (i = 0; i < n; i++) {
    json_t *nv = NULL;
    const char *rule;
    path_join(sub, sizeof sub, path, keys[i]);
    if (t->key_check && (rule = t->key_check(keys[i], strlen(keys[i])))) {
      orr_error_set(e, ORR_EINVAL, "%s: key \"%s\" %s", path, keys[i], rule);
      goto err;
    }
    if (orr__schema_normalize(t->elem, json_object_get(in, keys[i]), sub, &nv,
                              e) != 0)
      goto err;
    if (t->key_check == orr__check_guid) {
      /* GUIDs compare case-insensitively: store one spelling, so the same
      ** device cannot appear twice under two. */
      char low[37];
      orr__guid_lower(low, keys[i]);
      if (json_object_get(res, low)) {
        json_decref(nv);
        orr_error_set(e, ORR_EEXIST,
                      "%s: key \"%s\" is the same GUID as "
                      "another key",
                      path, keys[i]);
        goto err;
      }
      json_object_set_new(res, low, nv);
      continue;
    }
    json_object_set_new(res, keys[i], nv);
  }
  free(keys);
  *out = res;
  return 0;
err:
  free(keys);
  json_decref(res);
  return e ? e->code : ORR_EINVAL;
}

static int normalize_array(const orr_type *t, const json_t *in,
                           const char *path, json_t **out, orr_error *e) {
  json_t *res;
  char sub[512];
  if (json_is_object(in) && json_object_size(in) == 0) {
    if (t->min > 0)
      return fail(e, path, "must not be empty", in);
    *out = json_array(); /* an empty Lua table */
    return 0;
  }
  if (!json_is_array(in))
    return fail(e, path, "must be a list", in);
  /* For lists, min is the fewest entries (a VPCI device needs a function). */
  if (t->min > 0 && json_array_size(in) < (size_t)t->min) {
    char rule[96];
    snprintf(rule, sizeof rule, "must have at least %lld entr%s",
             (long long)t->min, t->min == 1 ? "y" : "ies");
    return fail(e, path, rule, in);
  }
  if (t->max_items && json_array_size(in) > t->max_items) {
    char rule[96];
    snprintf(rule, sizeof rule, "must have at most %zu entries", t->max_items);
    return fail(e, path, rule, in);
  }
  res = json_array();
  for (size_t i = 0; i < json_array_size(in); i++) {
    json_t *nv = NULL;
    /* 1-based, as the Lua user wrote it. */
    snprintf(sub, sizeof sub, "%s[%zu]", path, i + 1);
    if (orr__schema_normalize(t->elem, json_array_get(in, i), sub, &nv, e)) {
      json_decref(res);
      return e ? e->code : ORR_EINVAL;
    }
    json_array_append_new(res, nv);
  }
  *out = res;
  return 0;
}

int orr__schema_normalize(const orr_type *t, const json_t *in, const char *path,
                          json_t **out, orr_error *e) {
  switch (t->kind) {
  case ORR_K_STRING:
    return normalize_string(t, in, path, out, e);
  case ORR_K_BOOL:
    if (!json_is_boolean(in))
      return fail(e, path, "must be a boolean", in);
    *out = json_boolean(json_is_true(in));
    return 0;
  case ORR_K_INT:
    return normalize_int(t, in, path, out, e);
  case ORR_K_OBJECT:
    return normalize_object(t, in, path, out, e);
  case ORR_K_MAP:
    return normalize_map(t, in, path, out, e);
  case ORR_K_ARRAY:
    return normalize_array(t, in, path, out, e);
  case ORR_K_ANY:
    *out = json_deep_copy(in);
    return 0;
  case ORR_K_UNSUPPORTED:
    return orr_error_set(e, ORR_EINVAL,
                         "%s is an HCS field Orrery does not support", path);
  }
  return orr_error_set(e, ORR_EINVAL, "%s: bad schema", path);
}

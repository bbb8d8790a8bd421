/*
** A document as JSON text, byte for byte what hcsshim's marshaller
** (encoding/json over the schema2 structs) writes for it: keys in Go's
** field order, map keys sorted, omitempty fields holding Go's zero value
** left out, structs held by value always written, strings escaped as Go
** escapes them (<, > and & too) and float64 written as Go writes it. One
** pass over the document and its schema into one buffer. A document that
** is not in the form the schema normalizes to (unknown keys, nulls, a list
** where a map belongs, a spelling to fold) is reported back instead, so
** the caller can normalize it first.
*/
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema.h"

typedef struct {
  char *buf;
  size_t len, cap;
  int indent; /* spaces per level; 0 = compact */
  int depth;
  bool bad; /* not in normal form */
  bool oom;
} out_t;

static bool grow_slow(out_t *o, size_t more) {
  size_t cap = o->cap ? o->cap : 1024;
  char *nb;
  if (o->oom)
    return false;
  while (cap < o->len + more + 1)
    cap *= 2;
  if ((nb = realloc(o->buf, cap)) == NULL) {
    o->oom = true;
    return false;
  }
  o->buf = nb;
  o->cap = cap;
  return true;
}

/* Room for `more` bytes and the closing NUL. */
static inline bool grow(out_t *o, size_t more) {
  return o->len + more + 1 <= o->cap || grow_slow(o, more);
}

static inline void put(out_t *o, const char *s, size_t n) {
  if (grow(o, n)) {
    memcpy(o->buf + o->len, s, n);
    o->len += n;
  }
}

static inline void put_char(out_t *o, char c) {
  if (grow(o, 1))
    o->buf[o->len++] = c;
}

/* A line break and the indentation of the current depth (pretty only). */
static void newline(out_t *o) {
  if (o->indent == 0 || !grow(o, 1 + (size_t)(o->depth * o->indent)))
    return;
  o->buf[o->len++] = '\n';
  memset(o->buf + o->len, ' ', (size_t)(o->depth * o->indent));
  o->len += (size_t)(o->depth * o->indent);
}

/* Go's string encoding (encoding/json with HTML escaping, as Marshal
** does): ", \ and control bytes escaped (\b \f \n \r \t short, the rest
** as \u00xx), <, > and & as \u003c \u003e \u0026, and U+2028, U+2029 as
** \u2028, \u2029. Strings here are valid UTF-8 (Jansson's rule). */
/* Per byte: 0 written as is, 1 escaped, 2 the lead byte of U+2028/9. */
// clang-format off
static const unsigned char esc_class[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x00 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x10 */
    0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x20: " & */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, /* 0x30: < > */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x40 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* 0x50: backslash */
    [0xe2] = 2};
// clang-format on

static void put_string(out_t *o, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t run = 0;
  put_char(o, '"');
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[6] = {'\\', 0, '0', '0', 0, 0};
    size_t len = 2;
    if (esc_class[c] == 0)
      continue;
    if (esc_class[c] == 2) {
      if (i + 2 >= n || (unsigned char)s[i + 1] != 0x80 ||
          ((unsigned char)s[i + 2] & 0xfe) != 0xa8)
        continue;
      put(o, s + run, i - run);
      put(o, (unsigned char)s[i + 2] == 0xa8 ? "\\u2028" : "\\u2029", 6);
      i += 2;
      run = i + 1;
      continue;
    }
    put(o, s + run, i - run);
    run = i + 1;
    switch (c) {
    case '"':
    case '\\':
      esc[1] = (char)c;
      break;
    case '\b':
      esc[1] = 'b';
      break;
    case '\f':
      esc[1] = 'f';
      break;
    case '\n':
      esc[1] = 'n';
      break;
    case '\r':
      esc[1] = 'r';
      break;
    case '\t':
      esc[1] = 't';
      break;
    default:
      esc[1] = 'u';
      esc[4] = hex[c >> 4];
      esc[5] = hex[c & 15];
      len = 6;
    }
    put(o, esc, len);
  }
  put(o, s + run, n - run);
  put_char(o, '"');
}

/*
** A float64 as Go's encoding/json writes it: the shortest decimal that
** reads back as the same double, without an exponent (100, 0.000001), or
** with one below 1e-6 and from 1e21 (1.5e-7, 1e+21).
*/
static void put_go_float(out_t *o, double f) {
  char buf[40], digits[24], res[64];
  size_t nd = 0, r = 0;
  int exp10, p;
  double a = fabs(f);
  bool neg = signbit(f);
  if (a == 0) {
    put(o, neg ? "-0" : "0", neg ? 2 : 1);
    return;
  }
  /* The fewest significant digits that read back as f. */
  for (p = 1; p <= 17; p++) {
    snprintf(buf, sizeof buf, "%.*e", p - 1, a);
    if (strtod(buf, NULL) == a)
      break;
  }
  for (const char *c = buf; *c != 'e'; c++)
    if (*c != '.')
      digits[nd++] = *c;
  exp10 = atoi(strchr(buf, 'e') + 1);
  while (nd > 1 && digits[nd - 1] == '0')
    nd--;
  if (neg)
    res[r++] = '-';
  if (a < 1e-6 || a >= 1e21) {
    res[r++] = digits[0];
    if (nd > 1) {
      res[r++] = '.';
      memcpy(res + r, digits + 1, nd - 1);
      r += nd - 1;
    }
    /* The exponent is 21 or more, or below -6: no padding, and Go trims
    ** its e-07 to e-7, which is what %d writes. */
    r += (size_t)snprintf(res + r, sizeof res - r, "e%c%d",
                          exp10 < 0 ? '-' : '+', abs(exp10));
  } else if (exp10 < 0) {
    res[r++] = '0';
    res[r++] = '.';
    for (int z = -exp10 - 1; z > 0; z--)
      res[r++] = '0';
    memcpy(res + r, digits, nd);
    r += nd;
  } else {
    for (size_t i = 0; i < nd || (int)i <= exp10; i++) {
      if ((int)i == exp10 + 1)
        res[r++] = '.';
      res[r++] = i < nd ? digits[i] : '0';
    }
  }
  put(o, res, r);
}

static void put_int(out_t *o, json_int_t v) {
  char tmp[24];
  size_t n = 0;
  unsigned long long u =
      v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
  do {
    tmp[sizeof tmp - 1 - n++] = (char)('0' + u % 10);
    u /= 10;
  } while (u != 0);
  if (v < 0)
    tmp[sizeof tmp - 1 - n++] = '-';
  put(o, tmp + sizeof tmp - n, n);
}

static void emit(out_t *o, const orr_type *t, const json_t *v);

/* The separator before a member and its "key": (escaped unless it is a
** schema field name, which needs none). */
static void member(out_t *o, bool first, const char *key, bool field) {
  size_t n = strlen(key);
  if (!first)
    put_char(o, ',');
  newline(o);
  if (field && grow(o, n + 2)) {
    o->buf[o->len++] = '"';
    memcpy(o->buf + o->len, key, n);
    o->len += n;
    o->buf[o->len++] = '"';
  } else {
    put_string(o, key, n);
  }
  if (o->indent)
    put(o, ": ", 2);
  else
    put_char(o, ':');
}

static void open_container(out_t *o, char c) {
  put_char(o, c);
  o->depth++;
}

static void close_container(out_t *o, char c, bool empty) {
  o->depth--;
  if (!empty)
    newline(o);
  put_char(o, c);
}

#define MAX_MEMBERS 32

static void emit_object(out_t *o, const orr_type *t, const json_t *v) {
  struct {
    int idx;
    const char *key;
    const json_t *val;
  } m[MAX_MEMBERS], tmp;
  size_t n = 0;
  const char *key;
  json_t *val;
  if (!json_is_object(v) || json_object_size(v) > MAX_MEMBERS) {
    o->bad = true;
    return;
  }
  json_object_foreach((json_t *)v, key, val) {
    int i = orr__field_index(t, key);
    if (i < 0 || json_is_null(val) || (t->fields[i].flags & ORR_F_ALIAS)) {
      o->bad = true;
      return;
    }
    /* omitempty: Go leaves a zero value out. */
    if (orr__go_empty(&t->fields[i], val))
      continue;
    /* Insertion sort into field order: objects are small. */
    size_t j = n++;
    m[j].idx = i;
    m[j].key = t->fields[i].name;
    m[j].val = val;
    for (; j > 0 && m[j - 1].idx > m[j].idx; j--) {
      tmp = m[j];
      m[j] = m[j - 1];
      m[j - 1] = tmp;
    }
  }
  /* A struct held by value is always there once normalized. */
  if (t->value_fields)
    for (const orr_field *f = t->fields; f->name != NULL; f++)
      if ((f->flags & ORR_F_VALUE) && json_object_get(v, f->name) == NULL)
        o->bad = true;
  open_container(o, '{');
  for (size_t k = 0; k < n && !o->bad; k++) {
    member(o, k == 0, m[k].key, true);
    emit(o, t->fields[m[k].idx].type, m[k].val);
  }
  close_container(o, '}', n == 0);
}

typedef struct {
  const char *key;
  const json_t *val;
} entry;

static int cmp_entries(const void *a, const void *b) {
  return strcmp(((const entry *)a)->key, ((const entry *)b)->key);
}

static void emit_map(out_t *o, const orr_type *t, const json_t *v) {
  entry small[16], *m = small;
  size_t n, i = 0;
  const char *key;
  json_t *val;
  if (!json_is_object(v)) {
    o->bad = true;
    return;
  }
  n = json_object_size(v);
  if (n > sizeof small / sizeof *small && (m = malloc(n * sizeof *m)) == NULL) {
    o->oom = true;
    return;
  }
  json_object_foreach((json_t *)v, key, val) {
    /* GUID keys are stored in lower case; another spelling is not yet
    ** normalized. */
    if (orr__guid_keyed(t))
      for (const char *p = key; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
          o->bad = true;
    m[i].key = key;
    m[i++].val = val;
  }
  /* Go marshals maps with sorted keys. */
  qsort(m, n, sizeof *m, cmp_entries);
  open_container(o, '{');
  for (i = 0; i < n && !o->bad; i++) {
    member(o, i == 0, m[i].key, false);
    emit(o, t->elem, m[i].val);
  }
  close_container(o, '}', n == 0);
  if (m != small)
    free(m);
}

static void emit_array(out_t *o, const orr_type *t, const json_t *v) {
  size_t i;
  json_t *val;
  if (!json_is_array(v)) {
    o->bad = true;
    return;
  }
  open_container(o, '[');
  json_array_foreach(v, i, val) {
    if (o->bad)
      break;
    if (i > 0)
      put_char(o, ',');
    newline(o);
    emit(o, t->elem, val);
  }
  close_container(o, ']', json_array_size(v) == 0);
}

static void emit(out_t *o, const orr_type *t, const json_t *v) {
  if (o->bad || o->oom)
    return;
  switch (t->kind) {
  case ORR_K_STRING:
    if (!json_is_string(v))
      break;
    put_string(o, json_string_value(v), json_string_length(v));
    return;
  case ORR_K_BOOL:
    if (!json_is_boolean(v))
      break;
    if (json_is_true(v))
      put(o, "true", 4);
    else
      put(o, "false", 5);
    return;
  case ORR_K_INT:
    if (!json_is_integer(v))
      break;
    put_int(o, json_integer_value(v));
    return;
  case ORR_K_NUMBER:
    if (!json_is_number(v))
      break;
    put_go_float(o, json_number_value(v));
    return;
  case ORR_K_OBJECT:
    emit_object(o, t, v);
    return;
  case ORR_K_MAP:
    emit_map(o, t, v);
    return;
  case ORR_K_ARRAY:
    emit_array(o, t, v);
    return;
  case ORR_K_ANY:
  case ORR_K_UNSUPPORTED:
    break;
  }
  o->bad = true;
}

int orr__schema_dump(const orr_type *type, const json_t *v, int indent,
                     char **text) {
  out_t o = {.indent = indent};
  emit(&o, type, v);
  if (o.bad || o.oom || !grow(&o, 0)) {
    free(o.buf);
    *text = NULL;
    return o.oom ? ORR_ENOMEM : ORR_EINVAL;
  }
  o.buf[o.len] = '\0';
  *text = o.buf;
  return 0;
}

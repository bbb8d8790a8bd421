/*
** What the qemu translation tests share (test-qemu-xlate.c: argv and plans
** by value; test-qemu-real.c: the same started by a real QEMU): documents
** built from text, argv lookups, scratch files. Each test is one
** translation unit, so everything here is static inline.
*/
#ifndef ORR_TEST_QEMU_XLATE_UTIL_H
#define ORR_TEST_QEMU_XLATE_UTIL_H

#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "backends/qemu_xlate.h"
#include "task.h"

#define NIC_GUID "2b8d8f0e-8f3c-4c55-a3b1-6f2b1c0d9e7a"
#define VPCI_GUID "6f5c3a1e-1b2d-4c3e-9f4a-0a1b2c3d4e5f"
#define CTRL0 "df6d0690-79e5-55b6-a5ec-c1e2f77f580a"
#define CTRL1 "0110f83b-de10-5172-a266-78bca56bf50a"

static char tmpdir[64];  /* files for the documents */
static char run_dir[96]; /* the VM's run dir */

/* ---------------------------------------------------------------------- */
/* Helpers                                                                */
/* ---------------------------------------------------------------------- */

static inline json_t *J(const char *text) {
  json_error_t e;
  json_t *v = json_loads(text, 0, &e);
  if (v == NULL)
    TEST_FAIL_("bad JSON in test: %s (line %d col %d)", e.text, e.line,
               e.column);
  return v;
}

/* printf into a static inline ring of buffers (for building test documents). */
static inline const char *F(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static inline const char *F(const char *fmt, ...) {
  static char bufs[8][8192];
  static int i;
  char *b = bufs[i++ % 8];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b, sizeof bufs[0], fmt, ap);
  va_end(ap);
  return b;
}

static inline orr_qemu_config cfg_default(void) {
  orr_qemu_config cfg;
  orr__qemu_config_init(&cfg);
  cfg.run_dir = run_dir;
  return cfg;
}

static inline json_t *build(const char *doc_text, const orr_qemu_config *cfg,
                            json_t **layout) {
  json_t *doc = J(doc_text), *argv = NULL, *lay = NULL;
  orr_error err = {0, ""};
  int rc = orr__qemu_argv(doc, cfg, &argv, &lay, &err);
  if (rc != 0)
    TEST_FAIL_("orr__qemu_argv: %s: %s", orr_err_name(rc), err.msg);
  json_decref(doc);
  if (layout)
    *layout = lay;
  else
    json_decref(lay);
  return argv;
}

static inline void expect_err(const char *doc_text, const orr_qemu_config *cfg,
                              int code, const char *needle) {
  json_t *doc = J(doc_text), *argv = (json_t *)1, *lay = (json_t *)1;
  orr_error err = {0, ""};
  int rc = orr__qemu_argv(doc, cfg, &argv, &lay, &err);
  if (rc != code || strstr(err.msg, needle) == NULL)
    TEST_FAIL_("expected %s naming \"%s\", got %s: \"%s\"", orr_err_name(code),
               needle, orr_err_name(rc), err.msg);
  ASSERT_EQ(err.code, code);
  ASSERT_NULL(argv);
  ASSERT_NULL(lay);
  json_decref(doc);
}

static inline const char *arg(const json_t *argv, size_t i) {
  return json_string_value(json_array_get(argv, i));
}

/* Index of the value of the first `opt` whose value equals val; -1. */
static inline int find_opt(const json_t *argv, const char *opt,
                           const char *val) {
  for (size_t i = 0; i + 1 < json_array_size(argv); i++)
    if (strcmp(arg(argv, i), opt) == 0 && strcmp(arg(argv, i + 1), val) == 0)
      return (int)i + 1;
  return -1;
}

/* The value of the first `opt` that contains needle; NULL. */
static inline const char *opt_with(const json_t *argv, const char *opt,
                                   const char *needle) {
  for (size_t i = 0; i + 1 < json_array_size(argv); i++)
    if (strcmp(arg(argv, i), opt) == 0 && strstr(arg(argv, i + 1), needle))
      return arg(argv, i + 1);
  return NULL;
}

/* The JSON value of the `opt` (-device, -blockdev, ...) whose `key` is
** `val`; checks it is JSON. NULL if none. Borrowed from a ring of the last
** 8 results. */
static inline json_t *json_opt(const json_t *argv, const char *opt,
                               const char *key, const char *val) {
  static json_t *ring[8];
  static int next;
  json_t **last = &ring[next++ % 8];
  json_decref(*last);
  *last = NULL;
  for (size_t i = 0; i + 1 < json_array_size(argv); i++) {
    json_t *v;
    if (strcmp(arg(argv, i), opt) != 0 || arg(argv, i + 1)[0] != '{')
      continue;
    v = J(arg(argv, i + 1));
    if (json_is_string(json_object_get(v, key)) &&
        strcmp(json_string_value(json_object_get(v, key)), val) == 0)
      return *last = v;
    json_decref(v);
  }
  return NULL;
}

static inline const char *sget(const json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}

static inline long long iget(const json_t *o, const char *k) {
  ASSERT(json_is_integer(json_object_get(o, k)));
  return json_integer_value(json_object_get(o, k));
}

static inline bool in_list(const json_t *arr, const char *s) {
  size_t i;
  json_t *v;
  json_array_foreach(arr, i, v) {
    if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
      return true;
  }
  return false;
}

static inline void write_file(const char *path, const void *data, size_t n,
                              off_t size) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT(fd >= 0);
  if (n)
    ASSERT_EQ(write(fd, data, n), (ssize_t)n);
  if (size)
    ASSERT_EQ(ftruncate(fd, size), 0);
  ASSERT_EQ(close(fd), 0);
}

/* A scratch directory with run/ below it (tmpdir, run_dir). */
static inline void scratch_make(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/orr-xlate-XXXXXX");
  ASSERT_NOT_NULL(mkdtemp(tmpdir));
  snprintf(run_dir, sizeof run_dir, "%s/run", tmpdir);
  ASSERT_EQ(mkdir(run_dir, 0700), 0);
}

static inline void scratch_remove(void) {
  ASSERT_EQ(system(F("rm -rf '%s'", tmpdir)), 0);
}

#endif

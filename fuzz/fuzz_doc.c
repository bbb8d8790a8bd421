/*
** libFuzzer target: a compute system document as JSON text, the way
** orrery.builder_from(json) and orrery.create(id, json) take one.
**
** What must hold for any input:
**   - orr_doc_parse() accepts or refuses with a code and a message;
**   - an accepted document round-trips: its dump parses again to an equal
**     document whose dump is the same text, byte for byte (the Go-exact
**     writer has one output per document), the dump of the input as parsed
**     but not yet normalized is that text too, and orr_builder_from_doc()
**     accepts it with the same content and orr_builder_check() agrees;
**   - the qemu translation of an accepted document either refuses with a
**     message or produces an argv in which no user string can act as an
**     option: every -device/-blockdev/-netdev/-object value that is JSON
**     parses as one JSON object, and every -chardev/-fsdev value, split the
**     way QEMU splits it (",," is a literal comma), has each key once and
**     only keys the translation writes.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/qemu_xlate.h"
#include "orrery/builder.h"
#include "orrery/document.h"

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "fuzz_doc: %s:%d: check failed: %s\n", __FILE__,         \
              __LINE__, #cond);                                                \
      abort();                                                                 \
    }                                                                          \
  } while (0)

/*
** Splits a QemuOpts string at single commas and checks each key against
** allowed (a NULL-terminated list); the first part of a -chardev value is
** its backend name, without "=". A key may appear once.
*/
static void check_opts(const char *s, const char *const *allowed,
                       int first_is_name) {
  char keys[16][32];
  int nkeys = 0, part = 0;
  const char *p = s;
  while (*p != '\0') {
    const char *start = p, *eq;
    size_t klen;
    /* Find the end of this part: a comma not followed by another. */
    while (*p != '\0') {
      if (p[0] == ',' && p[1] == ',') {
        p += 2;
        continue;
      }
      if (p[0] == ',')
        break;
      p++;
    }
    if (!(part == 0 && first_is_name)) {
      eq = memchr(start, '=', (size_t)(p - start));
      CHECK(eq != NULL);
      klen = (size_t)(eq - start);
      CHECK(klen > 0 && klen < sizeof keys[0]);
      int ok = 0;
      for (const char *const *a = allowed; *a; a++)
        if (strlen(*a) == klen && memcmp(*a, start, klen) == 0)
          ok = 1;
      if (!ok)
        fprintf(stderr, "fuzz_doc: unexpected key in \"%s\"\n", s);
      CHECK(ok);
      for (int i = 0; i < nkeys; i++)
        CHECK(!(strlen(keys[i]) == klen && memcmp(keys[i], start, klen) == 0));
      CHECK(nkeys < 16);
      memcpy(keys[nkeys], start, klen);
      keys[nkeys++][klen] = '\0';
    }
    part++;
    if (*p == ',')
      p++;
  }
}

static void check_argv(const json_t *argv) {
  /* logappend: the console capture keeps one log across restarts. */
  static const char *const chardev_keys[] = {
      "id", "path", "server", "wait", "logfile", "logappend", NULL};
  static const char *const fsdev_keys[] = {"id", "path", "security_model",
                                           "readonly", NULL};
  size_t n = json_array_size(argv);
  CHECK(n > 0);
  for (size_t i = 0; i + 1 < n; i++) {
    const char *opt = json_string_value(json_array_get(argv, i));
    const char *val = json_string_value(json_array_get(argv, i + 1));
    CHECK(opt != NULL && val != NULL);
    if ((strcmp(opt, "-device") == 0 || strcmp(opt, "-blockdev") == 0 ||
         strcmp(opt, "-netdev") == 0 || strcmp(opt, "-object") == 0) &&
        val[0] == '{') {
      json_t *j = json_loads(val, 0, NULL);
      CHECK(json_is_object(j));
      json_decref(j);
    } else if (strcmp(opt, "-chardev") == 0) {
      check_opts(val, chardev_keys, 1);
    } else if (strcmp(opt, "-fsdev") == 0) {
      check_opts(val, fsdev_keys, 1);
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_t *doc = NULL, *again = NULL, *argv = NULL, *layout = NULL, *raw;
  orr_error e = {0, ""};
  orr_builder *b = NULL;
  orr_qemu_config cfg;
  char *text, *text2;
  int rc;

  rc = orr_doc_parse((const char *)data, size, &doc, &e);
  if (rc != 0) {
    CHECK(rc < 0 && e.code == rc && e.msg[0] != '\0');
    CHECK(doc == NULL);
    return 0;
  }

  text = orr_doc_dump(doc, (size & 1) != 0);
  CHECK(text != NULL);
  rc = orr_doc_parse(text, strlen(text), &again, &e);
  if (rc != 0)
    fprintf(stderr, "fuzz_doc: the dump does not parse again: %s\n%s\n", e.msg,
            text);
  CHECK(rc == 0);
  CHECK(json_equal(doc, again));
  text2 = orr_doc_dump(again, (size & 1) != 0);
  CHECK(text2 != NULL && strcmp(text, text2) == 0);
  free(text2);
  raw = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
  text2 = orr_doc_dump(raw, (size & 1) != 0);
  CHECK(text2 != NULL && strcmp(text, text2) == 0);
  free(text2);
  json_decref(raw);
  free(text);
  json_decref(again);

  CHECK(orr_builder_from_doc(doc, &b, &e) == 0);
  CHECK(json_equal(orr_builder_doc(b), doc));
  CHECK(orr_builder_check(b, &e) == 0);
  orr_builder_free(b);

  orr__qemu_config_init(&cfg);
  cfg.run_dir = "/run/orrery/fuzz";
  cfg.accel = "tcg";
  cfg.guest_agent = (size & 2) != 0;
  cfg.vsock_cid = 3;
  cfg.host.vhost_vsock = (size & 4) != 0;
  memset(&e, 0, sizeof e);
  rc = orr__qemu_argv(doc, &cfg, &argv, &layout, &e);
  if (rc == 0) {
    CHECK(argv != NULL && layout != NULL);
    check_argv(argv);
  } else {
    CHECK(rc < 0 && e.msg[0] != '\0');
    CHECK(argv == NULL && layout == NULL);
  }
  json_decref(argv);
  json_decref(layout);
  json_decref(doc);
  return 0;
}

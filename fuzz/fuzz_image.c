/*
** libFuzzer target: disk image headers, as anyone who can write an image
** (a guest writing into its disk, too) may shape them.
**
** The input is up to four files separated by the line "\n--8<--\n"; they
** live, in memory, at /fuzz/f0.img .. /fuzz/f3.img, so a header naming
** "f1.img" (or "/fuzz/f1.img") names the next one; every other name is
** missing. What must hold for any input:
**   - orr__image_probe and orr__image_top_format name a format of QEMU's,
**     and orr__image_refs, for every format, accepts or refuses with a
**     message, and what it accepts is a NUL-free name;
**   - the chain from f0.img is built or refused with a message; a built
**     chain is at most ORR_IMAGE_MAX_CHAIN images, none named with a
**     protocol, each format pinned, and every file opened was one of the
**     four.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "image.h"

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "fuzz_image: %s:%d: check failed: %s\n", __FILE__,       \
              __LINE__, #cond);                                                \
      abort();                                                                 \
    }                                                                          \
  } while (0)

#define NFILES 4
static const char SEP[] = "\n--8<--\n";

typedef struct {
  int fd[NFILES];
  int opened;
} files;

static int fuzz_open(void *arg, const char *name, const char *what,
                     bool writable, int k, bool lenient, int *fd,
                     struct stat *st, char *ref, size_t size, bool *locking_off,
                     orr_error *e) {
  files *f = arg;
  (void)writable, (void)k;
  *locking_off = false;
  *fd = -1;
  for (int i = 0; i < NFILES; i++) {
    char want[32];
    snprintf(want, sizeof want, "/fuzz/f%d.img", i);
    if (strcmp(name, want) == 0 && f->fd[i] >= 0) {
      *fd = f->fd[i];
      f->opened++;
      CHECK(fstat(*fd, st) == 0);
      snprintf(ref, size, "%s", name);
      return 0;
    }
  }
  if (lenient)
    return 0;
  return orr_error_set(e, ORR_ENOENT, "%s: no such file %s", what, name);
}

static const char *const formats[] = {
    "raw", "qcow2", "qcow",  "qed",   "vmdk", "vhdx",      "vpc",
    "vdi", "luks",  "bochs", "cloop", "dmg",  "parallels", "nbd"};

static void check_format(const char *f) {
  bool known = false;
  for (size_t i = 0; i + 1 < sizeof formats / sizeof *formats; i++)
    known |= strcmp(f, formats[i]) == 0;
  CHECK(known);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  files f = {{-1, -1, -1, -1}, 0};
  const uint8_t *p = data, *end = data + size;
  orr_image *chain = NULL;
  orr_error e = {0, ""};
  int n = 0;

  while (n < NFILES) {
    const uint8_t *cut = memmem(p, (size_t)(end - p), SEP, sizeof SEP - 1);
    size_t len = cut ? (size_t)(cut - p) : (size_t)(end - p);
    f.fd[n] = memfd_create("img", MFD_CLOEXEC);
    CHECK(f.fd[n] >= 0);
    CHECK(write(f.fd[n], p, len) == (ssize_t)len);
    n++;
    if (cut == NULL)
      break;
    p = cut + sizeof SEP - 1;
  }
  for (int i = 0; i < n; i++) {
    check_format(orr__image_probe(f.fd[i], "/fuzz/x.img"));
    check_format(orr__image_top_format(f.fd[i], "/fuzz/x.img"));
    for (size_t k = 0; k < sizeof formats / sizeof *formats; k++) {
      orr_image_refs r;
      if (orr__image_refs(f.fd[i], formats[k], &r, &e) != 0) {
        CHECK(e.msg[0] != '\0');
        continue;
      }
      CHECK(memchr(r.backing, '\0', sizeof r.backing) != NULL);
      CHECK(memchr(r.data_file, '\0', sizeof r.data_file) != NULL);
    }
  }
  e.msg[0] = '\0';
  if (orr__image_chain("/fuzz/f0.img", true, "f0", fuzz_open, &f, &chain, &e) !=
      0) {
    CHECK(e.msg[0] != '\0');
  } else {
    int depth = 0;
    for (orr_image *m = chain; m != NULL; m = m->backing) {
      depth++;
      check_format(m->format);
      CHECK(m == chain || !m->writable);
      CHECK(strchr(m->name, ':') == NULL ||
            strchr(m->name, '/') < strchr(m->name, ':'));
    }
    CHECK(depth <= ORR_IMAGE_MAX_CHAIN);
    CHECK(f.opened <= 2 * ORR_IMAGE_MAX_CHAIN);
    orr__image_free(chain);
  }
  for (int i = 0; i < n; i++)
    close(f.fd[i]);
  return 0;
}

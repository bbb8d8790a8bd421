/*
** The default guest image and its manifest (orrery/guest_image.h): found
** by what it is, never by where a build happened to put it.
*/
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "orrery/guest_image.h"
#include "orrery/install.h"

/* A manifest is a few hundred bytes; anything far bigger is not one. */
#define MANIFEST_MAX (64 * 1024)

/* A file name the manifest gives: a plain name inside its directory. */
static int plain_name(const char *s) {
  return s != NULL && s[0] != '\0' && strchr(s, '/') == NULL &&
         strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* Parses the manifest of dir into *out; returns 0 or the error code. */
static int read_manifest(const char *dir, json_t **out, orr_error *e) {
  char path[PATH_MAX];
  json_error_t je;
  json_t *m;
  FILE *f;
  long size;
  *out = NULL;
  snprintf(path, sizeof path, "%s/%s", dir, ORR_GUEST_MANIFEST);
  if ((f = fopen(path, "r")) == NULL)
    return orr_error_set(e, ORR_ENOENT, "no %s in %s", ORR_GUEST_MANIFEST, dir);
  if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 ||
      size > MANIFEST_MAX) {
    fclose(f);
    return orr_error_set(e, ORR_EINVAL, "%s is not a file of at most %d bytes",
                         path, MANIFEST_MAX);
  }
  rewind(f);
  m = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
  fclose(f);
  if (m == NULL)
    return orr_error_set(e, ORR_EINVAL, "%s: line %d: %s", path, je.line,
                         je.text);
  if (!json_is_object(m) ||
      json_integer_value(json_object_get(m, "orrery_guest")) != 1) {
    json_decref(m);
    return orr_error_set(e, ORR_EINVAL,
                         "%s: \"orrery_guest\" must be 1 (the manifest "
                         "format)",
                         path);
  }
  *out = m;
  return 0;
}

/* Copies the string field key into buf; required fields must be there. */
static int field(json_t *m, const char *dir, const char *key, int required,
                 int file, char *buf, size_t size, orr_error *e) {
  json_t *v = json_object_get(m, key);
  const char *s = json_string_value(v);
  buf[0] = '\0';
  if (v == NULL && !required)
    return 0;
  if (s == NULL || (file && !plain_name(s)))
    return orr_error_set(
        e, ORR_EINVAL, "%s/%s: \"%s\" must be %s", dir, ORR_GUEST_MANIFEST, key,
        file ? "a file name in the same directory" : "a string");
  if ((size_t)snprintf(buf, size, file ? "%s/%s" : "%s%s", file ? dir : "",
                       s) >= size)
    return orr_error_set(e, ORR_EINVAL, "%s/%s: \"%s\" is too long", dir,
                         ORR_GUEST_MANIFEST, key);
  return 0;
}

int orr_guest_image_load(const char *dir, orr_guest_image *img, orr_error *e) {
  json_t *m;
  int rc;
  memset(img, 0, sizeof *img);
  if ((size_t)snprintf(img->dir, sizeof img->dir, "%s", dir) >= sizeof img->dir)
    return orr_error_set(e, ORR_EINVAL, "guest directory %s is too long", dir);
  if ((rc = read_manifest(dir, &m, e)) != 0)
    return rc;
  if ((rc = field(m, dir, "kernel", 1, 1, img->kernel, sizeof img->kernel,
                  e)) != 0 ||
      (rc = field(m, dir, "initrd", 1, 1, img->initrd, sizeof img->initrd,
                  e)) != 0 ||
      (rc = field(m, dir, "bzimage", 0, 1, img->bzimage, sizeof img->bzimage,
                  e)) != 0 ||
      (rc = field(m, dir, "cmdline", 1, 0, img->cmdline, sizeof img->cmdline,
                  e)) != 0 ||
      (rc = field(m, dir, "agent", 0, 0, img->agent, sizeof img->agent, e)) !=
          0 ||
      (rc = field(m, dir, "ready_line", 0, 0, img->ready_line,
                  sizeof img->ready_line, e)) != 0 ||
      (rc = field(m, dir, "kernel_release", 0, 0, img->release,
                  sizeof img->release, e)) != 0) {
    json_decref(m);
    return rc;
  }
  json_decref(m);
  if (access(img->kernel, R_OK) != 0)
    return orr_error_set(e, ORR_ENOENT,
                         "%s names the kernel %s, which is missing",
                         ORR_GUEST_MANIFEST, img->kernel);
  if (access(img->initrd, R_OK) != 0)
    return orr_error_set(e, ORR_ENOENT,
                         "%s names the initramfs %s, which is missing",
                         ORR_GUEST_MANIFEST, img->initrd);
  return 0;
}

int orr_guest_image_default(orr_guest_image *img, orr_error *e) {
  const char *env = getenv("ORRERY_GUEST_DIR");
  const char *dirs[3];
  char own[PATH_MAX], tried[1024] = "";
  size_t n = 0, used = 0;
  orr_error why = {0, ""};
  if (env != NULL && env[0] != '\0') {
    if (orr_guest_image_load(env, img, &why) == 0)
      return 0;
    return orr_error_set(e, ORR_ENOENT,
                         "no default guest in $ORRERY_GUEST_DIR: %s "
                         "(vendor/guest/build-guest.sh DIR builds one)",
                         why.msg);
  }
  if (orr_install_dir(ORR_DIR_GUEST, own, sizeof own) == 0)
    dirs[n++] = own;
  dirs[n++] = "/usr/local/share/orrery/guest";
  dirs[n++] = "/usr/share/orrery/guest";
  for (size_t i = 0; i < n; i++) {
    if (i > 0 && strcmp(dirs[i], dirs[0]) == 0)
      continue;
    if (orr_guest_image_load(dirs[i], img, &why) == 0)
      return 0;
    if (used < sizeof tried)
      used += (size_t)snprintf(tried + used, sizeof tried - used, "%s%s",
                               used ? "; " : "", why.msg);
  }
  return orr_error_set(e, ORR_ENOENT,
                       "no default guest (%s): install the orrery-guest "
                       "package, or build one with `cmake --build` or "
                       "vendor/guest/build-guest.sh DIR and set "
                       "ORRERY_GUEST_DIR=DIR",
                       tried);
}

int orr_guest_image_is_kernel(const char *kernel_path) {
  char real[PATH_MAX], *slash;
  orr_guest_image img;
  if (kernel_path == NULL || kernel_path[0] == '\0' ||
      realpath(kernel_path, real) == NULL ||
      (slash = strrchr(real, '/')) == NULL)
    return 0;
  *slash = '\0';
  if (orr_guest_image_load(real[0] ? real : "/", &img, NULL) != 0)
    return 0;
  *slash = '/';
  return strcmp(img.kernel, real) == 0 || strcmp(img.bzimage, real) == 0;
}

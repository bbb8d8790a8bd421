/*
** Choosing the accelerator. On some hosts /dev/kvm exists and QEMU accepts
** -accel kvm, yet Linux guests hang in early boot, so "auto" trusts KVM only
** after the default guest has actually booted under it once; the verdict
** is cached. Until that probe has run and passed, "auto" means TCG.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vm_internal.h"

/* The cached verdict: $XDG_CACHE_HOME/orrery/kvm-verdict ("kvm" or "tcg"),
** written by the probe (orrery doctor). */
static const char *cached_verdict(void) {
  char path[512];
  const char *cache = getenv("XDG_CACHE_HOME");
  const char *home = getenv("HOME");
  char word[8] = "";
  FILE *f;
  if (cache && cache[0] == '/')
    snprintf(path, sizeof path, "%s/orrery/kvm-verdict", cache);
  else if (home)
    snprintf(path, sizeof path, "%s/.cache/orrery/kvm-verdict", home);
  else
    return NULL;
  if ((f = fopen(path, "r")) == NULL)
    return NULL;
  if (fscanf(f, "%7s", word) != 1)
    word[0] = '\0';
  fclose(f);
  return strcmp(word, "kvm") == 0 ? "kvm" : "tcg";
}

const char *orr__accel_resolve(const char *requested, orr_error *e) {
  const char *v;
  if (strcmp(requested, "tcg") == 0)
    return "tcg";
  if (strcmp(requested, "kvm") == 0) {
    if (access("/dev/kvm", R_OK | W_OK) != 0) {
      orr_error_set(e, ORR_ENOTSUP,
                    "create: accel \"kvm\" needs read-write /dev/kvm");
      return NULL;
    }
    return "kvm";
  }
  if (strcmp(requested, "auto") != 0) {
    orr_error_set(e, ORR_EINVAL,
                  "create: accel must be \"auto\", \"kvm\" or \"tcg\", got "
                  "\"%s\"",
                  requested);
    return NULL;
  }
  if (access("/dev/kvm", R_OK | W_OK) != 0)
    return "tcg";
  v = cached_verdict();
  return v ? v : "tcg";
}

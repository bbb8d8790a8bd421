/*
** Where the VMs' runtime directories live. One function, so that the
** engine, `orrery doctor` and the tools that list VMs from outside an
** engine (`orrery ps`) never disagree about it.
*/
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "orrery/vm.h"

const char *orr_runtime_root(char *buf, size_t len) {
  const char *env = getenv("ORRERY_RUNTIME_DIR");
  const char *xdg = getenv("XDG_RUNTIME_DIR");
  /* Relative values are ignored: a root must not move with the cwd. */
  if (env && env[0] == '/')
    snprintf(buf, len, "%s", env);
  else if (xdg && xdg[0] == '/')
    snprintf(buf, len, "%s/orrery", xdg);
  else if (geteuid() == 0)
    snprintf(buf, len, "/run/orrery");
  else
    snprintf(buf, len, "/tmp/orrery-%u", (unsigned)geteuid());
  return buf;
}

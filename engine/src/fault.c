/*
** Named fault points: a test-only hook for the crash-point harness
** (spec/crash_points_spec.lua), in the manner of SQLite's crash tests and
** FoundationDB's simulation: the engine is killed, or one step made to
** fail, at an exact point of a change, and a fresh process must then find
** a document that equals the VM.
**
** ORRERY_FAULT, read once when the first engine is made, is a
** comma-separated list of POINT[#N][:ACTION]: at the N-th hit (default 1)
** of POINT the process SIGKILLs itself (ACTION "kill", the default) or the
** step reports a failure without being carried out ("fail"). A POINT ending
** in '*' matches every point with that prefix. The points:
**   journal:before, journal:after     around each write of state.json
**   step:<command>:before, :after     around each QMP step of a change
**   undo:<command>:before             each undo step
**   deleted:<qdev-kind>               DEVICE_DELETED came, before the commit
**   cleanup:<command>:before          each cleanup after a removal or a
**                                     disk merge
**   cgroup:before, cgroup:after       around a CPU limits write
** ORRERY_FAULT_LOG=PATH appends every point hit to PATH (one per line), so
** a harness can list the points a change passes. Unset, this costs one
** branch per point.
*/
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vm_internal.h"

#define MAX_RULES 8

typedef struct {
  char point[96];
  int nth;  /* fire at this hit */
  int hits; /* hits so far */
  orr_fault_action action;
  bool kill;
} rule;

static rule rules[MAX_RULES];
static int nrules = -1; /* -1: ORRERY_FAULT not read yet */
static int log_fd = -1;

void orr__fault_init(void) {
  const char *env, *logp;
  char buf[1024], *tok, *save = NULL;
  if (nrules >= 0)
    return;
  nrules = 0;
  logp = getenv("ORRERY_FAULT_LOG");
  if (logp && logp[0])
    log_fd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  env = getenv("ORRERY_FAULT");
  if (env == NULL || env[0] == '\0')
    return;
  snprintf(buf, sizeof buf, "%s", env);
  for (tok = strtok_r(buf, ",", &save); tok && nrules < MAX_RULES;
       tok = strtok_r(NULL, ",", &save)) {
    rule *r = &rules[nrules];
    char *act = strrchr(tok, ':'), *hash;
    memset(r, 0, sizeof *r);
    r->kill = true;
    /* ":fail" / ":kill" end the rule; other colons are in the point. */
    if (act && (strcmp(act, ":fail") == 0 || strcmp(act, ":kill") == 0)) {
      r->kill = strcmp(act, ":kill") == 0;
      r->action = r->kill ? ORR_FAULT_NONE : ORR_FAULT_FAIL;
      *act = '\0';
    }
    hash = strrchr(tok, '#');
    r->nth = 1;
    if (hash) {
      r->nth = atoi(hash + 1) > 0 ? atoi(hash + 1) : 1;
      *hash = '\0';
    }
    snprintf(r->point, sizeof r->point, "%s", tok);
    nrules++;
  }
}

static bool matches(const char *pattern, const char *point) {
  size_t n = strlen(pattern);
  if (n > 0 && pattern[n - 1] == '*')
    return strncmp(pattern, point, n - 1) == 0;
  return strcmp(pattern, point) == 0;
}

orr_fault_action orr__fault(const char *point) {
  if (nrules <= 0 && log_fd < 0)
    return ORR_FAULT_NONE;
  if (log_fd >= 0) {
    char line[128];
    int n = snprintf(line, sizeof line, "%s\n", point);
    if (n > 0 && write(log_fd, line, (size_t)n) < 0) {
      /* A harness that cannot log gets fewer points; nothing else to do. */
    }
  }
  for (int i = 0; i < nrules; i++) {
    rule *r = &rules[i];
    if (!matches(r->point, point) || ++r->hits != r->nth)
      continue;
    if (r->kill) {
      /* The engine dies here, as SIGKILL from outside would kill it. */
      raise(SIGKILL);
    }
    return r->action;
  }
  return ORR_FAULT_NONE;
}

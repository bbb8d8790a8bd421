/*
** CPU limits for a QEMU process through the cgroup cpu controller (v1's
** cfs quota and shares, or v2's cpu.max and cpu.weight). HCS expresses
** Limit as a fraction of the VM's processors times 100000, and Weight on
** 1..10000 around a default of 100. A host utility: it knows a process
** and a group, not a VM (the qemu backend's cpu_limits calls it).
*/
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgroup.h"

#define PERIOD_US 100000LL

static int write_file(const char *dir, const char *file, const char *value,
                      orr_error *e) {
  char path[512];
  FILE *f;
  snprintf(path, sizeof path, "%s/%s", dir, file);
  f = fopen(path, "w");
  if (f == NULL || fputs(value, f) < 0 || fclose(f) != 0) {
    int err = errno;
    if (f)
      fclose(f);
    return orr_error_set(e, ORR_ENOTSUP,
                         "CPU limits need a writable cgroup cpu controller: "
                         "cannot write %s: %s",
                         path, strerror(err));
  }
  return 0;
}

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* The controller's mount: cgroup v1's cpu hierarchy or the v2 root. */
static const char *cgroup_base(void) {
  if (exists("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"))
    return "/sys/fs/cgroup/cpu";
  if (exists("/sys/fs/cgroup/cgroup.controllers"))
    return "/sys/fs/cgroup";
  return NULL;
}

void orr__cgroup_find(char *dir, size_t size, const char *name) {
  const char *base = cgroup_base();
  dir[0] = '\0';
  if (base != NULL) {
    snprintf(dir, size, "%s/orrery/%s", base, name);
    if (!exists(dir))
      dir[0] = '\0';
  }
}

int orr__cgroup_apply(char *dir, size_t size, const char *name, int pid,
                      const json_t *limits, long long cpus, orr_error *e) {
  json_t *limit = json_object_get(limits, "Limit");
  json_t *weight = json_object_get(limits, "Weight");
  char val[64];
  int v2, rc;
  if (dir[0] == '\0') {
    const char *base = cgroup_base();
    if (base == NULL) {
      return orr_error_set(e, ORR_ENOTSUP,
                           "CPU limits need the cgroup cpu controller, and "
                           "none is mounted at /sys/fs/cgroup");
    }
    snprintf(dir, size, "%s/orrery", base);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
      goto nodir;
    snprintf(dir, size, "%s/orrery/%s", base, name);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
      goto nodir;
    snprintf(val, sizeof val, "%d", pid);
    if ((rc = write_file(dir, "cgroup.procs", val, e)) != 0)
      return rc;
  }
  v2 = exists("/sys/fs/cgroup/cgroup.controllers") &&
       !exists("/sys/fs/cgroup/cpu/cpu.cfs_quota_us");
  if (limit) {
    long long l = json_integer_value(limit);
    /* Limit/100000 of `cpus` processors per period; 0 means no cap. */
    long long quota = l == 0 ? -1 : l * cpus * PERIOD_US / 100000;
    if (v2) {
      if (quota < 0)
        snprintf(val, sizeof val, "max %lld", PERIOD_US);
      else
        snprintf(val, sizeof val, "%lld %lld", quota, PERIOD_US);
      if ((rc = write_file(dir, "cpu.max", val, e)) != 0)
        return rc;
    } else {
      snprintf(val, sizeof val, "%lld", PERIOD_US);
      if ((rc = write_file(dir, "cpu.cfs_period_us", val, e)) != 0)
        return rc;
      snprintf(val, sizeof val, "%lld",
               quota < 1000 && quota >= 0 ? 1000 : quota);
      if ((rc = write_file(dir, "cpu.cfs_quota_us", val, e)) != 0)
        return rc;
    }
  }
  if (weight && json_integer_value(weight) > 0) {
    long long w = json_integer_value(weight);
    if (v2)
      snprintf(val, sizeof val, "%lld", w);
    else
      snprintf(val, sizeof val, "%lld",
               w * 1024 / 100 < 2 ? 2 : w * 1024 / 100);
    if ((rc = write_file(dir, v2 ? "cpu.weight" : "cpu.shares", val, e)) != 0)
      return rc;
  }
  return 0;
nodir:
  rc = errno;
  dir[0] = '\0';
  return orr_error_set(e, ORR_ENOTSUP,
                       "CPU limits need a writable cgroup cpu controller: "
                       "cannot create a group: %s",
                       strerror(rc));
}

void orr__cgroup_remove(const char *dir) {
  if (dir[0] != '\0')
    rmdir(dir); /* succeeds once the process is gone */
}

/* CPU limits for a process through the cgroup cpu controller (cgroup.c).
** Not a public header. */
#ifndef ORR_CGROUP_H
#define ORR_CGROUP_H

#include <stddef.h>

#include <jansson.h>

#include "orrery/error.h"

/*
** Applies HCS limits ({Limit, Weight}; Reservation is advisory) for cpus
** processors to process pid's group. dir (size bytes) is the group's path:
** "" until the first call, which makes the group <base>/orrery/<name> and
** moves pid into it. ORR_ENOTSUP naming the file when no writable cpu
** controller is there.
*/
int orr__cgroup_apply(char *dir, size_t size, const char *name, int pid,
                      const json_t *limits, long long cpus, orr_error *e);
/* dir gets the group orr__cgroup_apply made for name, "" when there is
** none (an engine that died may have left one behind its VM). */
void orr__cgroup_find(char *dir, size_t size, const char *name);
/* Removes the group dir ("" : none); succeeds once its process is gone. */
void orr__cgroup_remove(const char *dir);

#endif

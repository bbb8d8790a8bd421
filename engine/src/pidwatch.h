/*
** Watching a process that is not (or no longer) our reaped child, through a
** pidfd: readable once the process has exited. Used for VMs re-attached
** with orrery.open and for VMs that outlive their handle. The exit status
** of a process we do not reap is not ours to know.
**
** And proving, before anything is sent to it, that a pid some file names is
** the process that file means: a pid is only a number, reused as soon as
** its process is reaped.
*/
#ifndef ORR_PIDWATCH_H
#define ORR_PIDWATCH_H

#include <uv.h>

#include "orrery/error.h"

typedef struct orr_pidwatch orr_pidwatch;
typedef void (*orr_pidwatch_cb)(void *arg);

/* A process's start time: field 22 of /proc/<pid>/stat (clock ticks after
** boot), which no later process with the same pid can share. 0 when it
** cannot be read. */
unsigned long long orr__pid_start_time(int pid);

/*
** Proves that pid is the process recorded as (start_time, arg): opens a
** pidfd for it first, then checks /proc/<pid> (owned by our uid, started
** at start_time, one argv element exactly arg), then that the pidfd's
** process is still alive, so the /proc entry read was its own. Returns 0
** and *pidfd (use only it from then on: it can never reach a reused pid),
** ORR_ENOENT when no such process runs, ORR_EPERM naming the check a
** process failed.
*/
int orr__pid_prove(int pid, unsigned long long start_time, const char *arg,
                   int *pidfd, orr_error *e);

/* Watches the process of a pidfd (from orr__pid_prove), which the watch
** takes over: exit_cb(arg) once it has exited. */
int orr__pidwatch_start(uv_loop_t *loop, int pidfd, orr_pidwatch_cb exit_cb,
                        void *arg, orr_pidwatch **out, orr_error *e);
/* Signals the process through its pidfd (never a reused pid). */
int orr__pidwatch_kill(orr_pidwatch *w, int signum);
/* Stops watching; cb(arg) once freed (may be NULL). */
void orr__pidwatch_close(orr_pidwatch *w, orr_pidwatch_cb cb);

#endif

/*
** Watching a process that is not (or no longer) our reaped child, through a
** pidfd: readable once the process has exited. Used for VMs re-attached
** with orrery.open and for VMs that outlive their handle. The exit status
** of a process we do not reap is not ours to know.
*/
#ifndef ORR_PIDWATCH_H
#define ORR_PIDWATCH_H

#include <uv.h>

#include "orrery/error.h"

typedef struct orr_pidwatch orr_pidwatch;
typedef void (*orr_pidwatch_cb)(void *arg);

/* ORR_ENOENT when pid is not running, ORR_ENOTSUP without pidfd_open. */
int orr__pidwatch_start(uv_loop_t *loop, int pid, orr_pidwatch_cb exit_cb,
                        void *arg, orr_pidwatch **out, orr_error *e);
/* Signals the process through its pidfd (never a reused pid). */
int orr__pidwatch_kill(orr_pidwatch *w, int signum);
/* Stops watching; cb(arg) once freed (may be NULL). */
void orr__pidwatch_close(orr_pidwatch *w, orr_pidwatch_cb cb);

#endif

/*
** A child process (QEMU) on the libuv loop: spawned from an argv array
** without a shell, stdin from /dev/null, stdout and stderr merged into one
** bounded ring that keeps the last bytes, so the reason QEMU gives for a
** failed start ("qemu-system-x86_64: -device foo: ...") can be reported.
**
** The child is forked and exec'd here rather than with uv_spawn(), because
** uv_spawn (libuv 1.44) has no hook between fork and exec and the engine
** needs one: PR_SET_PDEATHSIG makes the kernel SIGKILL the child when the
** engine dies, and setsid() keeps a terminal's Ctrl-C, aimed at the REPL,
** away from the VMs. QEMU 7.2 itself cannot watch its parent (-run-with
** came in 8.1 and does not do that either). Exit is noticed through a
** SIGCHLD uv_signal_t and waitpid() on this child's pid only, which is how
** libuv reaps its own children too, so the two never steal each other's.
*/
#ifndef ORRERY_PROCESS_H
#define ORRERY_PROCESS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "orrery/error.h"

typedef struct orr_process orr_process;

/* Options for orr_process_spawn(). */
enum {
  /* SIGKILL the child when the thread that spawned it exits (in practice
  ** the engine's loop thread, so: when the engine dies, crashes or is
  ** killed). Leave it unset for a child meant to outlive the engine. */
  ORR_PROCESS_KILL_WITH_PARENT = 1 << 0
};

/*
** The child ended: exit_status is its exit code when it exited, 0 when a
** signal killed it; term_signal is that signal or 0. By the time this runs,
** all the output the child wrote before it died is in the ring.
*/
typedef void (*orr_process_exit_cb)(void *arg, int64_t exit_status,
                                    int term_signal);
typedef void (*orr_process_close_cb)(void *arg);

/* At most this many descriptors are handed to a child (inherit). */
#define ORR_PROCESS_MAX_INHERIT 256

typedef struct {
  const char *const *argv; /* NULL-terminated; PATH is searched for argv[0] */
  const char *cwd;         /* NULL: the engine's */
  unsigned flags;          /* ORR_PROCESS_* */
  size_t output_max;       /* bytes of output kept; 0: 64 KiB */
  orr_process_exit_cb exit_cb; /* may be NULL */
  void *arg;                   /* passed to both callbacks */
  /* Descriptors the child gets: inherit[i] becomes its descriptor 3 + i
  ** (the caller's stay as they are, close-on-exec or not); every other
  ** descriptor of the engine is closed on exec as usual. */
  const int *inherit;
  size_t ninherit; /* at most ORR_PROCESS_MAX_INHERIT */
  /* A Landlock ruleset (landlock_create_ruleset) the child restricts
  ** itself with, after PR_SET_NO_NEW_PRIVS, just before exec; -1 or 0 when
  ** none (a plain zeroed struct means none). */
  int landlock_ruleset;
} orr_process_options;

/*
** Starts the child. Returns 0 and *out, or an error with e filled: the
** program was not found or could not be executed (reported here, not in a
** callback, as uv_spawn does). No callback runs before this returns.
*/
ORR_API int orr_process_spawn(uv_loop_t *loop, const orr_process_options *opts,
                              orr_process **out, orr_error *e);

/* The child's pid, also after it exited (it may then belong to another). */
ORR_API int orr_process_pid(const orr_process *p);

/* Nonzero once the child was reaped and exit_cb ran. */
ORR_API int orr_process_exited(const orr_process *p);

/*
** Sends signum to the child. Returns ORR_ESTATE once the child was reaped:
** the pid may have been reused, so it is never signalled after that.
*/
ORR_API int orr_process_kill(orr_process *p, int signum);

/*
** Copies the last bytes of the child's output (stdout and stderr in the
** order written) into buf, at most size - 1 of them, and NUL-terminates.
** Returns the number of bytes copied.
*/
ORR_API size_t orr_process_output(const orr_process *p, char *buf, size_t size);

/*
** Releases the process. A child still running is sent SIGKILL and reaped
** first, so closing never leaves a zombie or an orphan behind; exit_cb is
** not called after close. cb (may be NULL) runs once everything is freed,
** from the loop; p is invalid from this call on.
*/
ORR_API void orr_process_close(orr_process *p, orr_process_close_cb cb);

/*
** Releases the process WITHOUT killing it: for a child meant to outlive the
** engine (spawned without ORR_PROCESS_KILL_WITH_PARENT). exit_cb is not
** called afterwards, and the engine no longer reaps it (if it exits while
** the engine still runs it stays a zombie until the engine exits; watch it
** with a pidfd meanwhile). cb as for orr_process_close.
*/
ORR_API void orr_process_detach(orr_process *p, orr_process_close_cb cb);

#endif

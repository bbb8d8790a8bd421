/*
** An asynchronous QMP client on a unix socket, on the caller's libuv loop.
**
** Contract: every callback runs from the loop, never from inside the call
** that registered it, and each fires exactly once (the event callback
** aside): ready_cb, then each request's reply_cb, then closed_cb, then the
** close callback given to orr_qmp_close(), after which the memory is gone.
**
** The process must not die of SIGPIPE when it writes to a QEMU that just
** died; orr_qmp_connect() sets SIGPIPE to SIG_IGN if it is still SIG_DFL.
*/
#ifndef ORRERY_QMP_H
#define ORRERY_QMP_H

#include <stdint.h>
#include <jansson.h>
#include <uv.h>

#include "orrery/error.h"

typedef struct orr_qmp orr_qmp;

/*
** The handshake ended: status 0 once the greeting was read and
** qmp_capabilities accepted. Otherwise ORR_ETIMEDOUT (no socket, or no
** greeting, within the timeout), ORR_EVMGONE (the connection closed first),
** ORR_EBACKEND (QEMU refused qmp_capabilities), ORR_EIO or ORR_EPERM (the
** socket could not be used), ORR_ECANCELED (orr_qmp_close() came first);
** closed_cb follows each of those.
*/
typedef void (*orr_qmp_ready_cb)(void *arg, int status);

/*
** A command's outcome, exactly once per orr_qmp_send() that returned 0:
** - 0: result is QEMU's "return" value;
** - ORR_EBACKEND: result is QEMU's error object ({"class","desc"}) and
**   errmsg its desc ("The command xyz has not been found");
** - ORR_ETIMEDOUT: the command's deadline passed first; result is NULL. The
**   command is still owed: QEMU answers every command, in order, so its
**   answer may come later, and goes to the late callback (see
**   orr_qmp_send_timed()) or is read and dropped;
** - ORR_EVMGONE: the connection ended before the reply (QEMU died or quit),
**   or the request was sent after it ended; result is NULL;
** - ORR_ECANCELED: orr_qmp_close() was called first; result is NULL.
** result is borrowed: json_incref() it to keep it. errmsg is never NULL.
*/
typedef void (*orr_qmp_reply_cb)(void *arg, int status, json_t *result,
                                 const char *errmsg);

/* An event: its name, its "data" (borrowed, NULL if absent) and QEMU's
** timestamp. */
typedef void (*orr_qmp_event_cb)(void *arg, const char *event, json_t *data,
                                 int64_t seconds, int64_t microseconds);

/*
** The connection ended, once, for any reason, after every pending request
** has been failed: ORR_EVMGONE (EOF, reset: QEMU quit or died), ORR_EIO
** (a protocol violation such as an overlong line), the handshake's error,
** or ORR_ECANCELED (orr_qmp_close()). The object stays valid, and must
** still be released with orr_qmp_close().
*/
typedef void (*orr_qmp_closed_cb)(void *arg, int reason);

typedef void (*orr_qmp_close_cb)(void *arg);

/*
** QEMU's health as the deadlines show it. responsive 0: a command missed
** its deadline (command names it, ms is the deadline it had); QEMU counts
** as unresponsive until it answers anything again. responsive 1: the first
** answer after that came (command is the command answered, ms how long
** QEMU was unresponsive). Each call reports a change: they alternate,
** starting with 0. Runs from the loop, before the answer's own callback.
*/
typedef void (*orr_qmp_health_cb)(void *arg, int responsive,
                                  const char *command, uint64_t ms);

/* Diagnostics (ignored garbage, unknown reply ids); may be NULL. */
typedef void (*orr_qmp_log_cb)(void *arg, const char *msg);

typedef struct {
  const char *path; /* the QMP socket */
  /* How long to keep retrying while the socket does not exist yet or
  ** refuses (QEMU was just spawned), plus the handshake; 0: 10 s. */
  uint64_t timeout_ms;
  /* The deadline of a command sent without one of its own (orr_qmp_send(),
  ** or timeout_ms 0); 0: such commands have no deadline. */
  uint64_t command_timeout_ms;
  orr_qmp_ready_cb ready_cb;
  orr_qmp_closed_cb closed_cb; /* may be NULL */
  orr_qmp_log_cb log_cb;       /* may be NULL */
  orr_qmp_health_cb health_cb; /* may be NULL */
  void *arg;                   /* passed to the callbacks above */
  const char *log_id; /* who it is for in log lines (a VM id); may be NULL */
} orr_qmp_options;

/*
** Starts connecting (the first attempt runs from the loop, not here).
** Returns 0 and *out, or ORR_EINVAL (no path, or longer than a unix socket
** path can be) or ORR_ENOMEM; on error no callback will ever run.
*/
ORR_API int orr_qmp_connect(uv_loop_t *loop, const orr_qmp_options *opts,
                            orr_qmp **out);

/*
** Sends {"execute": command, "arguments": arguments, "id": N}. arguments is
** stolen (json_decref'd when done), even when this fails, and may be NULL.
** Several commands may be in flight; replies are matched by id. Commands
** sent before the handshake ends are queued and go out, in order, right
** after qmp_capabilities. Returns 0 and cb then runs exactly once, from the
** loop; once the connection has ended that is ORR_EVMGONE, delivered on the
** next loop iteration (a uv_idle_t), never from inside this call. Returns
** ORR_EINVAL, ORR_ENOMEM, ORR_EIO (the write could not be queued) or
** ORR_ECANCELED (after orr_qmp_close()): then cb never runs.
*/
ORR_API int orr_qmp_send(orr_qmp *qmp, const char *command, json_t *arguments,
                         orr_qmp_reply_cb cb, void *arg);

/*
** orr_qmp_send() with a deadline: timeout_ms after this call (0: the
** connection's command_timeout_ms), cb gets ORR_ETIMEDOUT unless the
** outcome came first. The clock runs from this call, so time spent queued
** behind the handshake counts. After an ORR_ETIMEDOUT, late (may be NULL)
** runs exactly once with the command's real outcome when it is known: the
** late answer (0 or ORR_EBACKEND), ORR_EVMGONE or ORR_ECANCELED, under the
** same rules as cb; arg must stay valid until then. late never runs for a
** command whose cb got anything but ORR_ETIMEDOUT.
*/
ORR_API int orr_qmp_send_timed(orr_qmp *qmp, const char *command,
                               json_t *arguments, uint64_t timeout_ms,
                               orr_qmp_reply_cb cb, orr_qmp_reply_cb late,
                               void *arg);

/* Nonzero while a command is past its deadline and QEMU has answered
** nothing since (see orr_qmp_health_cb). */
ORR_API int orr_qmp_is_unresponsive(const orr_qmp *qmp);

/*
** orr_qmp_send_timed with a descriptor passed along (SCM_RIGHTS), for the
** commands that take one: getfd, add-fd. fd is taken: closed once sent, or
** at once when this fails. The command goes out in order with the others,
** but on its own: with sendmsg() once libuv's write queue is empty, since
** uv_write2() only passes libuv handles (a file or a listening socket is
** none, and wrapping one would make libuv set O_NONBLOCK on a file
** description QEMU shares), and on an IPC pipe that reads every message
** as a possible handle. Only one descriptor is in flight at a time: QEMU
** keeps the last one received until a command takes it, so a second one
** arriving before the first command ran would replace it; the next waits
** for the reply.
*/
ORR_API int orr_qmp_send_fd(orr_qmp *qmp, const char *command,
                            json_t *arguments, int fd, uint64_t timeout_ms,
                            orr_qmp_reply_cb cb, orr_qmp_reply_cb late,
                            void *arg);

/* Sets the one event subscriber, replacing the previous one; cb NULL
** unsubscribes. Events that arrive during the handshake are delivered. */
ORR_API void orr_qmp_on_event(orr_qmp *qmp, orr_qmp_event_cb cb, void *arg);

/* QEMU's version from the greeting; ORR_ESTATE before the greeting. */
ORR_API int orr_qmp_version(const orr_qmp *qmp, int *major, int *minor,
                            int *micro);

/* Nonzero between ready_cb(0) and the end of the connection. */
ORR_API int orr_qmp_is_ready(const orr_qmp *qmp);

/* How far the handshake got (where it stopped, once it failed): "connect"
** (no connection to the socket yet), "greeting" (connected, QEMU has not
** greeted), "capabilities" (greeted, qmp_capabilities unanswered), or
** "ready". For a message saying what QEMU did not reach in time. */
ORR_API const char *orr_qmp_stage(const orr_qmp *qmp);

/*
** Closes the connection and releases qmp. Requests still pending fail with
** ORR_ECANCELED (the caller gave up on them; ORR_EVMGONE is kept for a VM
** that went away), a handshake in progress ends with ORR_ECANCELED, and
** closed_cb runs if it has not yet. All of that happens from the loop once
** the socket is closed, then cb(arg) (may be NULL), then the memory is
** freed. qmp must not be used after this call, except that it stays valid
** inside the callbacks it triggers. Safe to call from any callback.
*/
ORR_API void orr_qmp_close(orr_qmp *qmp, orr_qmp_close_cb cb);

#endif

/*
** A JSON-lines connection on a unix socket (jsonconn.c): connects, retrying
** while the socket is not bound yet, reads and splits lines (framer.c),
** writes lines, with an optional descriptor. The QMP client (qmp.c) and
** the guest agent client (guest_agent.c) are the protocols on top of it;
** it knows nothing of either. Not a public header.
**
** Every line that goes out passes through orr__jc_write() or
** orr__jc_write_fd(), and every line that comes in through the line
** callback: the one place to trace a protocol's messages.
**
** Callbacks run from the loop, never from inside the call that caused
** them, and none runs once orr__jc_close() was called except its own.
*/
#ifndef ORR_JSONCONN_H
#define ORR_JSONCONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/un.h>

#include <uv.h>

#include "orrery/framer.h"

#define ORR_JC_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)

typedef struct orr_jc orr_jc;

/* What the connection attempt was doing when it failed. */
typedef enum {
  ORR_JC_SOCKET,  /* socket() */
  ORR_JC_CONNECT, /* connect(), the last attempt */
  ORR_JC_OPEN     /* making the connected socket a uv_pipe_t */
} orr_jc_stage;

/* How an established connection ended. */
typedef enum {
  ORR_JC_READ,    /* a read failed or hit the end: code is libuv's (UV_EOF) */
  ORR_JC_FRAMING, /* a line was too long (ORR_EIO) or ORR_ENOMEM: code */
  ORR_JC_WRITE    /* a queued write failed: code is libuv's */
} orr_jc_end;

typedef struct {
  /*
  ** status 0: connected, lines now flow. Otherwise the connection never
  ** came: ORR_ETIMEDOUT (the socket was still missing or refusing at the
  ** deadline), ORR_EVMGONE (refused, with refused_is_gone), ORR_EPERM or
  ** ORR_EIO; stage says where, why is the system's text.
  */
  void (*connected)(void *arg, int status, orr_jc_stage stage, const char *why);
  /* Each line read, as orr_framer_line_cb: non-zero stops the read. */
  orr_framer_line_cb line;
  /* The connection ended on its own (at most once); the client closes. */
  void (*ended)(void *arg, orr_jc_end what, int code);
  /* Every queued write completed (may be NULL). */
  void (*drained)(void *arg);
  void *arg;
  uint64_t deadline;   /* uv_hrtime() ns after which connecting stops */
  size_t max_line;     /* 0: ORR_FRAMER_DEFAULT_MAX */
  int refused_is_gone; /* ECONNREFUSED ends at once: its listener is gone */
  int weak;            /* the open socket does not keep the loop alive */
} orr_jc_options;

/*
** Starts connecting to path (the first attempt runs from the loop).
** ORR_EINVAL for a path that is empty or does not fit a sun_path, or
** ORR_ENOMEM; then no callback runs. Sets SIGPIPE to SIG_IGN if it is still
** SIG_DFL: a write to a peer that just died must fail, not kill us.
*/
int orr__jc_open(uv_loop_t *loop, const char *path, const orr_jc_options *o,
                 orr_jc **out);

/*
** Writes text (taken, freed in every case) and "\n" as one line; with ff a
** 0xFF byte goes first. 0, or ORR_ENOMEM / ORR_EIO (nothing was queued).
*/
int orr__jc_write(orr_jc *c, char *text, int ff);

/*
** Writes the line text + "\n" with fd attached (SCM_RIGHTS) to its first
** byte, with sendmsg(): only when no other write is queued (the caller
** waits for drained), since libuv's writes pass no plain descriptor. 0
** (fd is the caller's to close), 1 when the socket buffer is full (try
** again later), or ORR_EVMGONE / ORR_ENOMEM / ORR_EIO.
*/
int orr__jc_write_fd(orr_jc *c, const char *text, int fd);

/* uv_write()s queued and not completed. */
int orr__jc_writes(const orr_jc *c);

/* The framer's resync: skip input up to and including the next 0xFF. */
void orr__jc_resync(orr_jc *c);

/* Stops everything; cb(arg) runs from the loop once c's handles are
** closed, then c is freed. Pending writes are cancelled. */
void orr__jc_close(orr_jc *c, void (*cb)(void *arg), void *arg);

#endif

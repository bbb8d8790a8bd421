/*
** The migration handshake's transport (docs/migration.md): URIs, the
** listener and connections of one migration, and JSON lines over them. It
** knows no VM: the core's migrate.c speaks the protocol through it.
**
** A URI is "unix:/abs/path" or "tcp:HOST:PORT" (HOST an IPv4 literal,
** "localhost" or a bracketed IPv6 literal). Under a policy (a confined
** engine) a unix socket is bound or connected only inside the allowed
** directories (its directory is opened and judged first, then used through
** that descriptor), and a tcp one only on a loopback address.
*/
#ifndef ORR_MIGRATE_WIRE_H
#define ORR_MIGRATE_WIRE_H

#include <stdbool.h>

#include <jansson.h>
#include <uv.h>

#include "orrery/error.h"
#include "orrery/framer.h"
#include "orrery/policy.h"

/* The longest handshake line (the offer carries the whole document). */
#define ORR_MIG_LINE_MAX (8u * 1024 * 1024)

typedef struct orr_mconn orr_mconn;
typedef struct orr_mlisten orr_mlisten;

/* A parsed URI. */
typedef struct {
  bool is_unix;
  char path[108];               /* unix */
  struct sockaddr_storage addr; /* tcp */
} orr_muri;

/* Parses and judges uri for listening (listen) or connecting under p
** (NULL: unconfined); what names it in messages. ORR_EINVAL naming the
** rule, ORR_EPERM for what the policy refuses. */
int orr__muri_parse(const orr_policy *p, const char *uri, const char *what,
                    orr_muri *out, orr_error *e);

/* A message arrived (msg borrowed), or the connection ended: msg NULL with
** status ORR_EIO (closed, reset, a line too long or not a JSON object). */
typedef void (*orr_mconn_msg_cb)(void *arg, orr_mconn *c, json_t *msg,
                                 int status, const char *errmsg);
/* A connect completed: 0 or ORR_EIO with the reason. */
typedef void (*orr_mconn_connect_cb)(void *arg, orr_mconn *c, int status,
                                     const char *errmsg);
/* A connection came in on a listener. */
typedef void (*orr_mlisten_cb)(void *arg, orr_mconn *c);

/* Connects to u (parsed under p); cb runs once, from the loop. NULL on a
** failure known at once (e set). */
orr_mconn *orr__mconn_connect(uv_loop_t *loop, const orr_policy *p,
                              const orr_muri *u, orr_mconn_connect_cb cb,
                              void *arg, orr_error *e);
/* Starts reading JSON lines: cb for each, until it ends. */
void orr__mconn_read(orr_mconn *c, orr_mconn_msg_cb cb, void *arg);
/* Stops reading (the bytes that follow belong to QEMU). */
void orr__mconn_stop(orr_mconn *c);
/* Writes msg (taken) as one line. Errors show up as the connection ending. */
void orr__mconn_send(orr_mconn *c, json_t *msg);
/* A blocking-mode duplicate of the socket, for QEMU (SCM_RIGHTS); -1 on
** failure. The connection itself is still to be closed. */
int orr__mconn_dup_fd(orr_mconn *c);
/* After orr__mconn_dup_fd: frees the handle without a shutdown (the socket
** goes on in the duplicate). */
void orr__mconn_release(orr_mconn *c);
/* Closes and frees it once pending writes are flushed (or failed). */
void orr__mconn_close(orr_mconn *c);

/* Listens on u (parsed under p); cb for each connection accepted. */
orr_mlisten *orr__mlisten_new(uv_loop_t *loop, const orr_policy *p,
                              const orr_muri *u, orr_mlisten_cb cb, void *arg,
                              orr_error *e);
/* Stops listening, removes a unix socket it bound, frees it. */
void orr__mlisten_close(orr_mlisten *l);

#endif

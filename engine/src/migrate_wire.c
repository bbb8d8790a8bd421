/*
** The migration handshake's transport: see migrate_wire.h.
*/
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migrate_wire.h"
#include "policy_host.h"

struct orr_mconn {
  union {
    uv_handle_t h;
    uv_stream_t s;
    uv_pipe_t pipe;
    uv_tcp_t tcp;
  } u;
  uv_connect_t creq;
  orr_framer fr;
  orr_mconn_connect_cb ccb;
  orr_mconn_msg_cb mcb;
  void *arg;
  int dir_fd; /* the judged directory of a unix connect, until it is done */
  bool reading, ended, closing;
};

struct orr_mlisten {
  union {
    uv_handle_t h;
    uv_stream_t s;
    uv_pipe_t pipe;
    uv_tcp_t tcp;
  } u;
  uv_loop_t *loop;
  orr_mlisten_cb cb;
  void *arg;
  const orr_policy *policy;
  bool is_unix;
  char path[108];
};

static bool loopback(const struct sockaddr_storage *ss) {
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
  }
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    return IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
  }
  return false;
}

int orr__muri_parse(const orr_policy *p, const char *uri, const char *what,
                    orr_muri *out, orr_error *e) {
  memset(out, 0, sizeof *out);
  if (uri == NULL)
    return orr_error_set(e, ORR_EINVAL,
                         "%s is required (\"unix:/abs/path\" or "
                         "\"tcp:HOST:PORT\")",
                         what);
  if (strncmp(uri, "unix:", 5) == 0) {
    const char *path = uri + 5;
    out->is_unix = true;
    if (path[0] != '/')
      return orr_error_set(e, ORR_EINVAL,
                           "%s: a unix socket path must be absolute, got '%s'",
                           what, path);
    if (strlen(path) >= sizeof out->path - 20)
      return orr_error_set(e, ORR_EINVAL,
                           "%s: the unix socket path %s is too long (at most "
                           "%zu bytes)",
                           what, path, sizeof out->path - 21);
    snprintf(out->path, sizeof out->path, "%s", path);
    return 0;
  }
  if (strncmp(uri, "tcp:", 4) == 0) {
    char host[64];
    const char *h = uri + 4, *colon = strrchr(h, ':');
    char *end;
    long port;
    size_t hl;
    if (colon == NULL)
      return orr_error_set(
          e, ORR_EINVAL, "%s: a tcp URI is tcp:HOST:PORT, got '%s'", what, uri);
    hl = (size_t)(colon - h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
      h++;
      hl -= 2;
    }
    if (hl == 0 || hl >= sizeof host)
      return orr_error_set(e, ORR_EINVAL, "%s: bad host in '%s'", what, uri);
    memcpy(host, h, hl);
    host[hl] = '\0';
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535)
      return orr_error_set(e, ORR_EINVAL,
                           "%s: the port must be an integer in 0..65535, got "
                           "'%s'",
                           what, colon + 1);
    if (strcmp(host, "localhost") == 0)
      snprintf(host, sizeof host, "127.0.0.1");
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&out->addr) != 0 &&
        uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&out->addr) != 0)
      return orr_error_set(e, ORR_EINVAL,
                           "%s: the host must be an IP address or "
                           "\"localhost\", got '%s'",
                           what, host);
    if (p != NULL && !loopback(&out->addr))
      return orr_error_set(e, ORR_EPERM,
                           "sandbox: %s: %s is not a loopback address (a "
                           "confined engine migrates over unix sockets in "
                           "its allowed directories or loopback tcp only)",
                           what, host);
    return 0;
  }
  return orr_error_set(e, ORR_EINVAL,
                       "%s must be \"unix:/abs/path\" or \"tcp:HOST:PORT\", "
                       "got '%s'",
                       what, uri);
}

/* ---- connections ---- */

static orr_mconn *conn_new(void) {
  orr_mconn *c = calloc(1, sizeof *c);
  if (c != NULL)
    c->dir_fd = -1;
  return c;
}

static void conn_freed(uv_handle_t *h) {
  orr_mconn *c = h->data;
  orr_framer_free(&c->fr);
  free(c);
}

static void conn_end(orr_mconn *c, const char *why) {
  orr_mconn_msg_cb cb = c->mcb;
  if (c->ended)
    return;
  c->ended = true;
  if (c->reading)
    uv_read_stop(&c->u.s);
  c->reading = false;
  if (cb && !c->closing)
    cb(c->arg, c, NULL, ORR_EIO, why);
}

static void on_connected(uv_connect_t *req, int status) {
  orr_mconn *c = req->data;
  char why[200];
  if (c->dir_fd >= 0) {
    close(c->dir_fd);
    c->dir_fd = -1;
  }
  if (c->closing)
    return;
  if (status != 0)
    snprintf(why, sizeof why, "%s", uv_strerror(status));
  c->ccb(c->arg, c, status ? ORR_EIO : 0, status ? why : "");
}

orr_mconn *orr__mconn_connect(uv_loop_t *loop, const orr_policy *p,
                              const orr_muri *u, orr_mconn_connect_cb cb,
                              void *arg, orr_error *e) {
  orr_mconn *c = conn_new();
  int rc;
  if (c == NULL) {
    orr_error_set(e, ORR_ENOMEM, "out of memory");
    return NULL;
  }
  c->ccb = cb;
  c->arg = arg;
  c->creq.data = c;
  if (u->is_unix) {
    char dir[108], name[108], via[160];
    snprintf(dir, sizeof dir, "%s", u->path);
    snprintf(name, sizeof name, "%s", u->path);
    /* The directory is judged on what was opened, then used through that
    ** descriptor: a symlink swapped in afterwards changes nothing. */
    if (orr__policy_open_dir(p, dirname(dir), p != NULL, "migrate: to",
                             &c->dir_fd, e) != 0) {
      free(c);
      return NULL;
    }
    snprintf(via, sizeof via, "/proc/self/fd/%d/%s", c->dir_fd, basename(name));
    uv_pipe_init(loop, &c->u.pipe, 0);
    c->u.h.data = c;
    uv_pipe_connect(&c->creq, &c->u.pipe, via, on_connected);
    return c;
  }
  uv_tcp_init(loop, &c->u.tcp);
  c->u.h.data = c;
  uv_tcp_nodelay(&c->u.tcp, 1);
  if ((rc = uv_tcp_connect(&c->creq, &c->u.tcp,
                           (const struct sockaddr *)&u->addr, on_connected)) !=
      0) {
    orr_error_set(e, ORR_EIO, "migrate: connect: %s", uv_strerror(rc));
    c->closing = true;
    uv_close(&c->u.h, conn_freed);
    return NULL;
  }
  return c;
}

static int on_line(void *arg, const char *line, size_t len) {
  orr_mconn *c = arg;
  json_error_t jerr;
  json_t *msg = json_loadb(line, len, 0, &jerr);
  if (!json_is_object(msg)) {
    json_decref(msg);
    conn_end(c, "the peer sent a line that is not a JSON object");
    return 1;
  }
  c->mcb(c->arg, c, msg, 0, "");
  json_decref(msg);
  /* The callback may have stopped reading (the stream follows) or closed. */
  return c->reading && !c->closing ? 0 : 1;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  buf->base = malloc(hint);
  buf->len = buf->base ? hint : 0;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  orr_mconn *c = s->data;
  if (n > 0) {
    int rc = orr_framer_feed(&c->fr, buf->base, (size_t)n);
    if (rc == ORR_EIO)
      conn_end(c, "the peer sent a line longer than the handshake allows");
    else if (rc == ORR_ENOMEM)
      conn_end(c, "out of memory");
  } else if (n < 0) {
    conn_end(c, n == UV_EOF ? "the peer closed the connection"
                            : uv_strerror((int)n));
  }
  free(buf->base);
}

void orr__mconn_read(orr_mconn *c, orr_mconn_msg_cb cb, void *arg) {
  c->mcb = cb;
  c->arg = arg;
  if (c->reading || c->ended)
    return;
  orr_framer_init(&c->fr, ORR_MIG_LINE_MAX, on_line, c);
  c->reading = true;
  if (uv_read_start(&c->u.s, on_alloc, on_read) != 0)
    conn_end(c, "cannot read the connection");
}

void orr__mconn_stop(orr_mconn *c) {
  if (c->reading)
    uv_read_stop(&c->u.s);
  c->reading = false;
}

static void on_written(uv_write_t *w, int status) {
  (void)status; /* a broken connection shows up as its end when read */
  free(w->data);
  free(w);
}

void orr__mconn_send(orr_mconn *c, json_t *msg) {
  char *s = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
  uv_write_t *w;
  uv_buf_t b;
  size_t n;
  json_decref(msg);
  if (s == NULL || c->closing)
    goto fail;
  n = strlen(s);
  s[n] = '\n'; /* one line: the NUL's byte carries the newline */
  w = malloc(sizeof *w);
  if (w == NULL)
    goto fail;
  w->data = s;
  b = uv_buf_init(s, (unsigned)n + 1);
  if (uv_write(w, &c->u.s, &b, 1, on_written) != 0) {
    free(w);
    goto fail;
  }
  return;
fail:
  free(s);
}

int orr__mconn_dup_fd(orr_mconn *c) {
  uv_os_fd_t fd;
  int d, fl;
  if (uv_fileno(&c->u.h, &fd) != 0)
    return -1;
  if ((d = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0)
    return -1;
  /* O_NONBLOCK is the open file's: QEMU gets it blocking, and the loop's
  ** handle is closed right after without another read or write. */
  if ((fl = fcntl(d, F_GETFL)) >= 0)
    fcntl(d, F_SETFL, fl & ~O_NONBLOCK);
  return d;
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  orr_mconn *c = req->data;
  (void)status;
  free(req);
  uv_close(&c->u.h, conn_freed);
}

/* Closes the handle only: the socket lives on in QEMU's duplicate, and a
** shutdown would end the stream for it too. */
void orr__mconn_release(orr_mconn *c) {
  if (c == NULL || c->closing)
    return;
  c->closing = true;
  if (c->reading)
    uv_read_stop(&c->u.s);
  c->reading = false;
  uv_close(&c->u.h, conn_freed);
}

void orr__mconn_close(orr_mconn *c) {
  uv_shutdown_t *req;
  if (c == NULL || c->closing)
    return;
  c->closing = true;
  if (c->reading)
    uv_read_stop(&c->u.s);
  c->reading = false;
  /* What was written still goes (the peer's last answer), then the close;
  ** a connection that never connected closes at once (a connect still in
  ** flight completes, cancelled, before it). */
  req = malloc(sizeof *req);
  if (req != NULL) {
    req->data = c;
    if (uv_shutdown(req, &c->u.s, on_shutdown) == 0)
      return;
    free(req);
  }
  uv_close(&c->u.h, conn_freed);
}

/* ---- the listener ---- */

static void on_connection(uv_stream_t *s, int status) {
  orr_mlisten *l = s->data;
  orr_mconn *c;
  if (status != 0)
    return;
  if ((c = conn_new()) == NULL)
    return;
  if (l->is_unix)
    uv_pipe_init(l->loop, &c->u.pipe, 0);
  else
    uv_tcp_init(l->loop, &c->u.tcp);
  c->u.h.data = c;
  if (uv_accept(s, &c->u.s) != 0) {
    c->closing = true;
    uv_close(&c->u.h, conn_freed);
    return;
  }
  if (!l->is_unix)
    uv_tcp_nodelay(&c->u.tcp, 1);
  l->cb(l->arg, c);
}

/* Why a listen failed, naming the address: a port or path someone else
** holds is ORR_EBUSY, so a caller can tell it from a broken socket. */
static void listen_failed(const orr_muri *u, int rc, orr_error *e) {
  char where[160], ip[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (u->is_unix) {
    snprintf(where, sizeof where, "unix:%s", u->path);
  } else if (u->addr.ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&u->addr;
    uv_ip6_name(a, ip, sizeof ip);
    port = ntohs(a->sin6_port);
    snprintf(where, sizeof where, "tcp:[%s]:%d", ip, port);
  } else {
    const struct sockaddr_in *a = (const struct sockaddr_in *)&u->addr;
    uv_ip4_name(a, ip, sizeof ip);
    port = ntohs(a->sin_port);
    snprintf(where, sizeof where, "tcp:%s:%d", ip, port);
  }
  if (rc == UV_EADDRINUSE)
    orr_error_set(e, ORR_EBUSY,
                  "receive: listen on %s: the address is already in use "
                  "(another process listens there: choose another %s)",
                  where, u->is_unix ? "path" : "port");
  else
    orr_error_set(e, ORR_EIO, "receive: listen on %s: %s", where,
                  uv_strerror(rc));
}

orr_mlisten *orr__mlisten_new(uv_loop_t *loop, const orr_policy *p,
                              const orr_muri *u, orr_mlisten_cb cb, void *arg,
                              orr_error *e) {
  orr_mlisten *l = calloc(1, sizeof *l);
  int rc, fd;
  if (l == NULL) {
    orr_error_set(e, ORR_ENOMEM, "out of memory");
    return NULL;
  }
  l->loop = loop;
  l->cb = cb;
  l->arg = arg;
  l->policy = p;
  l->is_unix = u->is_unix;
  if (u->is_unix) {
    if (orr__policy_listen(p, u->path, "receive: listen", &fd, e) != 0) {
      free(l);
      return NULL;
    }
    snprintf(l->path, sizeof l->path, "%s", u->path);
    uv_pipe_init(loop, &l->u.pipe, 0);
    l->u.h.data = l;
    if ((rc = uv_pipe_open(&l->u.pipe, fd)) != 0) {
      close(fd);
      goto fail;
    }
  } else {
    uv_tcp_init(loop, &l->u.tcp);
    l->u.h.data = l;
    if ((rc = uv_tcp_bind(&l->u.tcp, (const struct sockaddr *)&u->addr, 0)) !=
        0)
      goto fail;
  }
  if ((rc = uv_listen(&l->u.s, 2, on_connection)) != 0)
    goto fail;
  return l;
fail:
  listen_failed(u, rc, e);
  if (l->path[0] != '\0')
    unlink(l->path);
  uv_close(&l->u.h, (uv_close_cb)free);
  return NULL;
}

void orr__mlisten_close(orr_mlisten *l) {
  orr_error e;
  if (l == NULL)
    return;
  /* The socket we bound goes, judged like any removal. */
  if (l->path[0] != '\0') {
    if (l->policy)
      orr_policy_remove(l->policy, l->path, "receive: listen", &e);
    else
      unlink(l->path);
  }
  uv_close(&l->u.h, (uv_close_cb)free);
}

/*
** orrery.Stream: a byte stream over a unix socket on the engine's loop,
** read by lines or by pattern and written to, each wait with a deadline.
** vm:pipe(host_path) hands one out for a mapped pipe (the socket QEMU
** listens on for the guest's virtio-serial port); the type knows nothing
** of VMs, so any socket the engine itself vouches for can use it.
**
** The state lives in malloc'ed memory (libuv handles must outlive a
** collected userdata until their close callbacks). One waiting call at a
** time per stream: a wait is an op that completes on any new bytes, the end
** of the stream or the deadline, and the call's continuation checks what it
** waits for, waiting again if it is not there yet.
*/
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "l_async.h"
#include "l_orrery.h"
#include "l_util.h"

#define STREAM_DEFAULT_TIMEOUT_MS 10000
/* Bytes kept unread at most: a peer that writes more without anyone
** reading loses the oldest bytes (counted in dropped). */
#define STREAM_BUF_MAX (4u << 20)

typedef struct {
  uv_pipe_t *pipe; /* NULL once closed */
  uv_timer_t *timer;
  char *buf;
  size_t len, cap;
  size_t dropped;
  bool connected, eof;
  int read_err;        /* libuv error of the read side, 0: none */
  orr_l_op *waiter;    /* the op a call waits on, or NULL */
  uint64_t deadline;   /* uv_now() the current call gives up at */
  uint64_t timeout_ms; /* the current call's, for messages */
  bool gone;           /* the userdata was collected: free when closed */
  int handles;         /* libuv handles not yet closed */
  char path[108];
} stream_st;

typedef struct {
  stream_st *s;
} lstream;

static void st_free_if_done(stream_st *s) {
  if (s->gone && s->handles == 0) {
    free(s->buf);
    free(s);
  }
}

static void on_handle_closed(uv_handle_t *h) {
  stream_st *s = h->data;
  free(h);
  s->handles--;
  st_free_if_done(s);
}

/* Completes the waiting op, if any: its call looks again. */
static void wake(stream_st *s, int status, const char *msg) {
  orr_l_op *op = s->waiter;
  orr_error e = {status, ""};
  if (op == NULL)
    return;
  s->waiter = NULL;
  if (s->timer)
    uv_timer_stop(s->timer);
  if (msg)
    snprintf(e.msg, sizeof e.msg, "%s", msg);
  orr_l_op_cb(op, status, status ? &e : NULL, NULL);
}

static void st_close(stream_st *s) {
  if (s->pipe != NULL) {
    uv_close((uv_handle_t *)s->pipe, on_handle_closed);
    s->pipe = NULL;
  }
  if (s->timer != NULL) {
    uv_close((uv_handle_t *)s->timer, on_handle_closed);
    s->timer = NULL;
  }
  s->eof = true;
  wake(s, 0, NULL);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  stream_st *s = h->data;
  (void)hint;
  if (s->cap - s->len < 4096) {
    size_t cap = s->cap ? s->cap * 2 : 8192;
    char *nb;
    if (s->len > STREAM_BUF_MAX) { /* nobody reads: drop the oldest half */
      size_t cut = s->len / 2;
      memmove(s->buf, s->buf + cut, s->len - cut);
      s->len -= cut;
      s->dropped += cut;
      cap = s->cap;
    }
    nb = cap != s->cap ? realloc(s->buf, cap) : s->buf;
    if (nb == NULL) {
      *buf = uv_buf_init(NULL, 0);
      return;
    }
    s->buf = nb;
    s->cap = cap;
  }
  *buf = uv_buf_init(s->buf + s->len, (unsigned)(s->cap - s->len));
}

static void on_read(uv_stream_t *h, ssize_t n, const uv_buf_t *buf) {
  stream_st *s = h->data;
  (void)buf;
  if (n > 0) {
    s->len += (size_t)n;
    wake(s, 0, NULL);
    return;
  }
  if (n < 0) {
    if (n != UV_EOF)
      s->read_err = (int)n;
    s->eof = true;
    uv_read_stop(h);
    wake(s, 0, NULL);
  }
}

static void on_timer(uv_timer_t *t) {
  wake(t->data, 0, NULL);
}

static stream_st *check_stream(lua_State *L, int idx) {
  lstream *ls = luaL_checkudata(L, idx, ORR_L_STREAM);
  if (ls->s == NULL || ls->s->pipe == NULL)
    luaL_error(L, "attempt to use a closed " ORR_L_STREAM);
  return ls->s;
}

/* A wait's outcome: nothing when it was woken (the call looks again), the
** fail tuple when it was interrupted (Ctrl-C) or failed. */
static int push_wake(lua_State *L, orr_l_op *op) {
  if (op->status == 0)
    return 0;
  return orr_l_fail(L, &op->err);
}

static uint64_t timeout_arg(lua_State *L, int idx, const char *op) {
  lua_Integer ms = STREAM_DEFAULT_TIMEOUT_MS;
  if (lua_istable(L, idx)) {
    if (lua_getfield(L, idx, "timeout_ms") != LUA_TNIL) {
      if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0)
        luaL_error(L, "%s: timeout_ms must be a non-negative integer", op);
      ms = lua_tointeger(L, -1);
      if (ms == 0)
        ms = STREAM_DEFAULT_TIMEOUT_MS;
    }
    lua_pop(L, 1);
  } else if (!lua_isnoneornil(L, idx))
    luaL_error(L, "%s: options must be a table ({timeout_ms})", op);
  return (uint64_t)ms;
}

/* Starts a wait for more bytes (or the end, or the deadline); k runs when
** it ends, with the call's arguments below base. */
static int wait_more(lua_State *L, stream_st *s, lua_KFunction k, int base) {
  orr_l_op *op;
  uint64_t now = uv_now(s->pipe->loop);
  if (s->waiter != NULL)
    return luaL_error(L, "another call is already waiting on this stream");
  op = orr_l_op_new(L, push_wake);
  s->waiter = op;
  uv_timer_start(s->timer, on_timer, s->deadline > now ? s->deadline - now : 0,
                 0);
  return orr_l_op_waitk(L, op, k, base);
}

/* The call has nothing yet: fail at the end or the deadline, else wait.
** what names what did not come, for the message. */
static int not_yet(lua_State *L, stream_st *s, lua_KFunction k, int base,
                   const char *what) {
  orr_error e = {0, ""};
  if (s->eof) {
    orr_error_set(
        &e, ORR_EIO, "%s: the stream ended before %s (%s; %zu bytes unread)",
        s->path, what,
        s->read_err ? uv_strerror(s->read_err) : "closed by the peer", s->len);
    return orr_l_fail(L, &e);
  }
  if (uv_now(s->pipe->loop) >= s->deadline) {
    orr_error_set(&e, ORR_ETIMEDOUT,
                  "%s: %s not seen within %llu ms (%zu bytes unread)", s->path,
                  what, (unsigned long long)s->timeout_ms, s->len);
    return orr_l_fail(L, &e);
  }
  return wait_more(L, s, k, base);
}

/* Takes n bytes off the front of the buffer. */
static void consume(stream_st *s, size_t n) {
  memmove(s->buf, s->buf + n, s->len - n);
  s->len -= n;
}

/* The continuation's common start: an interrupted wait returns its fail
** tuple (pushed above base); a closed stream fails. */
static int resumed(lua_State *L, int base, stream_st **out) {
  lstream *ls = luaL_checkudata(L, 1, ORR_L_STREAM);
  if (lua_gettop(L) > base)
    return lua_gettop(L) - base;
  if (ls->s == NULL || ls->s->pipe == NULL) {
    orr_error e;
    orr_error_set(&e, ORR_ECANCELED, "the stream was closed");
    return orr_l_fail(L, &e);
  }
  *out = ls->s;
  return 0;
}

static int read_line_k(lua_State *L, int status, lua_KContext base) {
  stream_st *s = NULL;
  char *nl;
  int n;
  (void)status;
  if ((n = resumed(L, (int)base, &s)) != 0)
    return n;
  lua_settop(L, (int)base);
  nl = s->len ? memchr(s->buf, '\n', s->len) : NULL;
  if (nl != NULL) {
    size_t len = (size_t)(nl - s->buf);
    lua_pushlstring(L, s->buf,
                    len > 0 && s->buf[len - 1] == '\r' ? len - 1 : len);
    consume(s, len + 1);
    return 1;
  }
  return not_yet(L, s, read_line_k, (int)base, "a whole line");
}

/* Every read starts the same: its {timeout_ms} at index opts, a check that
** this thread may wait, and the deadline the continuations keep to. */
static void start_wait(lua_State *L, stream_st *s, int opts, const char *name) {
  s->timeout_ms = timeout_arg(L, opts, name);
  orr_l_check_wait(L);
  s->deadline = uv_now(s->pipe->loop) + s->timeout_ms;
}

/* s:read_line{timeout_ms} -> the next line without its "\n" (or "\r\n"). */
static int l_read_line(lua_State *L) {
  stream_st *s = check_stream(L, 1);
  start_wait(L, s, 2, "read_line");
  lua_settop(L, 2);
  return read_line_k(L, LUA_OK, 2);
}

static int read_k(lua_State *L, int status, lua_KContext base) {
  stream_st *s = NULL;
  int n;
  (void)status;
  if ((n = resumed(L, (int)base, &s)) != 0)
    return n;
  lua_settop(L, (int)base);
  if (s->len > 0) {
    lua_pushlstring(L, s->buf, s->len);
    consume(s, s->len);
    return 1;
  }
  return not_yet(L, s, read_k, (int)base, "any bytes");
}

/* s:read{timeout_ms} -> every byte there is, once there is at least one. */
static int l_read(lua_State *L) {
  stream_st *s = check_stream(L, 1);
  start_wait(L, s, 2, "read");
  lua_settop(L, 2);
  return read_k(L, LUA_OK, 2);
}

static int expect_k(lua_State *L, int status, lua_KContext base) {
  stream_st *s = NULL;
  int n;
  (void)status;
  if ((n = resumed(L, (int)base, &s)) != 0)
    return n;
  lua_settop(L, (int)base);
  /* string.find(buffer, pattern, 1, plain) */
  lua_getglobal(L, "string");
  lua_getfield(L, -1, "find");
  lua_remove(L, -2);
  lua_pushlstring(L, s->buf ? s->buf : "", s->len);
  lua_pushvalue(L, 2);
  lua_pushinteger(L, 1);
  lua_getfield(L, 3, "plain");
  lua_call(L, 4, 2);
  if (lua_isinteger(L, -1)) {
    lua_Integer first = lua_tointeger(L, -2), last = lua_tointeger(L, -1);
    lua_settop(L, (int)base);
    lua_pushlstring(L, s->buf + first - 1, (size_t)(last - first + 1));
    consume(s, (size_t)last);
    return 1;
  }
  lua_settop(L, (int)base);
  return not_yet(L, s, expect_k, (int)base, lua_tostring(L, 2));
}

/* s:expect(pattern, {timeout_ms, plain}) -> the text that matched; the
** stream is read through it. */
static int l_expect(lua_State *L) {
  stream_st *s = check_stream(L, 1);
  luaL_checkstring(L, 2);
  start_wait(L, s, 3, "expect");
  lua_settop(L, 3);
  if (lua_isnil(L, 3)) {
    lua_newtable(L);
    lua_replace(L, 3);
  }
  return expect_k(L, LUA_OK, 3);
}

typedef struct {
  uv_write_t req;
  orr_l_op *op;
  char data[];
} wreq;

static void on_written(uv_write_t *w, int status) {
  wreq *wr = (wreq *)w;
  orr_error e = {0, ""};
  if (status < 0)
    orr_error_set(&e, ORR_EIO, "write: %s", uv_strerror(status));
  orr_l_op_cb(wr->op, status < 0 ? ORR_EIO : 0, status < 0 ? &e : NULL, NULL);
  free(wr);
}

/* s:write(bytes) -> true once the bytes are handed to the socket. */
static int l_write(lua_State *L) {
  stream_st *s = check_stream(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  orr_l_op *op;
  wreq *wr;
  uv_buf_t b;
  int rc;
  orr_l_check_wait(L);
  if ((wr = malloc(sizeof *wr + len + 1)) == NULL)
    return luaL_error(L, "write: out of memory");
  memcpy(wr->data, data, len);
  b = uv_buf_init(wr->data, (unsigned)len);
  op = orr_l_op_new(L, NULL);
  wr->op = op;
  if ((rc = uv_write(&wr->req, (uv_stream_t *)s->pipe, &b, 1, on_written)) !=
      0) {
    orr_error e;
    free(wr);
    orr_l_op_cancel(L, op);
    orr_error_set(&e, ORR_EIO, "write: %s", uv_strerror(rc));
    return orr_l_fail(L, &e);
  }
  return orr_l_op_wait(L, op);
}

static int l_close(lua_State *L) {
  lstream *ls = luaL_checkudata(L, 1, ORR_L_STREAM);
  if (ls->s != NULL)
    st_close(ls->s);
  return 0;
}

static int l_gc(lua_State *L) {
  lstream *ls = luaL_checkudata(L, 1, ORR_L_STREAM);
  stream_st *s = ls->s;
  if (s == NULL)
    return 0;
  ls->s = NULL;
  st_close(s);
  s->gone = true;
  st_free_if_done(s);
  return 0;
}

static int l_tostring(lua_State *L) {
  lstream *ls = luaL_checkudata(L, 1, ORR_L_STREAM);
  lua_pushfstring(L, ORR_L_STREAM ": %s (%s)", ls->s ? ls->s->path : "?",
                  ls->s && ls->s->pipe ? (ls->s->eof ? "ended" : "open")
                                       : "closed");
  return 1;
}

static void on_connect(uv_connect_t *c, int status) {
  orr_l_op *op = c->data;
  stream_st *s = c->handle->data;
  orr_error e = {0, ""};
  free(c);
  if (status == 0 && s->pipe != NULL) {
    s->connected = true;
    uv_read_start((uv_stream_t *)s->pipe, on_alloc, on_read);
  } else
    orr_error_set(&e, ORR_EIO, "connect %s: %s", s->path,
                  status ? uv_strerror(status) : "closed");
  orr_l_op_cb(op, e.code, e.code ? &e : NULL, NULL);
}

static int connect_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status, (void)ctx;
  /* The op pushed true or the fail tuple above the userdata. */
  if (lua_toboolean(L, -1) && lua_gettop(L) >= 2 &&
      luaL_testudata(L, -2, ORR_L_STREAM)) {
    lua_pop(L, 1);
    return 1;
  }
  return 3;
}

int orr_l_stream_connect(lua_State *L, const char *path) {
  orr_l_ctx *ctx = orr_l_ctx_get(L);
  lstream *ls;
  stream_st *s;
  uv_connect_t *c;
  orr_l_op *op;
  orr_l_check_wait(L);
  if (strlen(path) >= sizeof s->path)
    return luaL_error(L, "pipe: the path is too long for a unix socket");
  ls = lua_newuserdatauv(L, sizeof *ls, 0);
  ls->s = NULL;
  luaL_setmetatable(L, ORR_L_STREAM);
  s = calloc(1, sizeof *s);
  c = malloc(sizeof *c);
  if (s == NULL || c == NULL || (s->pipe = malloc(sizeof *s->pipe)) == NULL ||
      (s->timer = malloc(sizeof *s->timer)) == NULL) {
    if (s != NULL) {
      free(s->pipe);
      free(s);
    }
    free(c);
    return luaL_error(L, "pipe: out of memory");
  }
  snprintf(s->path, sizeof s->path, "%s", path);
  uv_pipe_init(orr_l_loop(ctx), s->pipe, 0);
  uv_timer_init(orr_l_loop(ctx), s->timer);
  s->pipe->data = s->timer->data = s;
  s->handles = 2;
  ls->s = s;
  op = orr_l_op_new(L, NULL);
  c->data = op;
  uv_pipe_connect(c, s->pipe, s->path, on_connect);
  return orr_l_op_waitk(L, op, connect_k, 0);
}

void orr_l_open_stream(lua_State *L) {
  static const luaL_Reg meta[] = {{"__gc", l_gc},
                                  {"__close", l_gc},
                                  {"__tostring", l_tostring},
                                  {"__index", NULL},
                                  {NULL, NULL}};
  static const luaL_Reg methods[] = {
      {"read_line", l_read_line}, {"read", l_read},   {"expect", l_expect},
      {"write", l_write},         {"close", l_close}, {NULL, NULL}};
  orr_l_newclass(L, ORR_L_STREAM, meta, methods);
}

/*
** Ops, the ready queue, the central task runner and the loop drivers. See
** l_async.h for the model; the rules that keep it safe are:
**   - an op is freed only when nobody owes it a call (pending), it is not in
**     the ready queue (queued) and no waiter will read it (consumer);
**   - a task is resumed only from the ready queue, on a fresh loop turn, so
**     completions never nest resumes and never run inside engine code;
**   - uv_run is called only by a top-level waiter or orrery.run, never from
**     a callback (in_callback counts every way into Lua from the loop).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "l_async.h"
#include "l_util.h"

struct orr_l_ctx {
  uv_loop_t loop;
  uv_idle_t ready;        /* active while the ready queue is not empty */
  uv_check_t alive;       /* active while engine requests are pending */
  int engine_ops;         /* how many */
  orr_engine *engine;     /* NULL until the first VM */
  lua_State *L;           /* the main thread */
  lua_State *driver;      /* the thread inside uv_run, or NULL */
  orr_l_task *running;    /* the task being resumed, or NULL */
  orr_l_op *toplevel;     /* the op a top-level waiter drives the loop for */
  int in_callback;        /* depth of calls into Lua from the loop */
  int closing;            /* lua_close is tearing us down: no more Lua */
  orr_l_report_fn report; /* where failures in callbacks and tasks go */
  void *report_arg;
  orr_l_resume_fn resume_hook; /* told before a waiting task resumes */
  void *resume_arg;
  int live_tasks; /* scheduled or started, not finished */
  int uncaught;   /* failed tasks whose error nobody has read */
  orr_l_op *ops;  /* every live op, freed at teardown if still here */
  orr_l_op *qhead, *qtail;
};

/* registry[&ctx_key]: the sentinel userdata whose __gc tears down. */
static const char ctx_key = 'c';

static void on_ready(uv_idle_t *h);
static void on_alive(uv_check_t *h);
static void fail_task(lua_State *L, orr_l_task *t, int reset);

/* ---- Context ------------------------------------------------------------ */

static void free_handle(uv_handle_t *h) {
  free(h);
}

static void op_free(orr_l_ctx *ctx, lua_State *L, orr_l_op *op) {
  if (op->prev != NULL)
    op->prev->next = op->next;
  else
    ctx->ops = op->next;
  if (op->next != NULL)
    op->next->prev = op->prev;
  if (!ctx->closing && L != NULL) {
    luaL_unref(L, LUA_REGISTRYINDEX, op->anchor);
    luaL_unref(L, LUA_REGISTRYINDEX, op->co_ref);
  }
  json_decref(op->result);
  json_decref(op->keep[0]);
  json_decref(op->keep[1]);
  free(op);
}

/*
** Runs at lua_close, after every VM and Task finalizer (the sentinel is
** created before any of them, and finalizers run in reverse order). Our own
** handles are closed first so the engine's bounded loop run cannot resume a
** task or fire a sleep; then the engine, then the loop.
*/
static int ctx_gc(lua_State *L) {
  orr_l_ctx **slot = lua_touserdata(L, 1);
  orr_l_ctx *ctx = *slot;
  if (ctx == NULL)
    return 0;
  *slot = NULL;
  ctx->closing = 1;
  uv_close((uv_handle_t *)&ctx->ready, NULL);
  for (orr_l_op *op = ctx->ops; op != NULL; op = op->next) {
    if (op->timer != NULL) {
      uv_close((uv_handle_t *)op->timer, free_handle);
      op->timer = NULL;
    }
  }
  /* The engine runs the loop until its VMs are gone; our check handle
  ** keeps the loop alive meanwhile, whatever the engine unrefs. */
  uv_check_start(&ctx->alive, on_alive);
  if (ctx->engine != NULL)
    orr_engine_free(ctx->engine);
  uv_close((uv_handle_t *)&ctx->alive, NULL);
  uv_run(&ctx->loop, UV_RUN_NOWAIT); /* runs our close callbacks */
  while (ctx->ops != NULL)
    op_free(ctx, NULL, ctx->ops);
  /* A VM left running on purpose (ShouldTerminateOnLastHandleClosed =
  ** false) may keep engine handles open: then the loop cannot close, and
  ** the context is left allocated rather than freed under libuv. */
  if (uv_loop_close(&ctx->loop) == 0)
    free(ctx);
  return 0;
}

orr_l_ctx *orr_l_ctx_get(lua_State *L) {
  orr_l_ctx **slot, *ctx;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &ctx_key) == LUA_TUSERDATA) {
    ctx = *(orr_l_ctx **)lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (ctx == NULL)
      luaL_error(L, "orrery: the state is closing");
    return ctx;
  }
  lua_pop(L, 1);
  slot = lua_newuserdatauv(L, sizeof *slot, 0);
  *slot = NULL;
  lua_createtable(L, 0, 1); /* __gc must be set before setmetatable */
  lua_pushcfunction(L, ctx_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  ctx = calloc(1, sizeof *ctx);
  if (ctx == NULL)
    luaL_error(L, "orrery: out of memory");
  if (uv_loop_init(&ctx->loop) != 0) {
    free(ctx);
    luaL_error(L, "orrery: cannot initialize the event loop");
  }
  uv_idle_init(&ctx->loop, &ctx->ready);
  ctx->ready.data = ctx;
  uv_check_init(&ctx->loop, &ctx->alive);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  ctx->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  *slot = ctx;
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ctx_key); /* pops the sentinel */
  return ctx;
}

orr_engine *orr_l_engine(lua_State *L) {
  orr_l_ctx *ctx = orr_l_ctx_get(L);
  if (ctx->engine == NULL) {
    orr_error e = {0, ""};
    if (orr_engine_new(&ctx->loop, &ctx->engine, &e) != 0) {
      ctx->engine = NULL;
      orr_error_prefix(&e, "cannot start the engine");
      orr_l_raise(L, &e);
    }
  }
  return ctx->engine;
}

uv_loop_t *orr_l_loop(orr_l_ctx *ctx) {
  return &ctx->loop;
}

int orr_l_closing(const orr_l_ctx *ctx) {
  return ctx->closing;
}

/* The thread to run callbacks on: the running task or the loop's driver. */
static lua_State *cbthread(orr_l_ctx *ctx) {
  if (ctx->running != NULL)
    return ctx->running->co;
  return ctx->driver != NULL ? ctx->driver : ctx->L;
}

/* ---- Protected calls ---------------------------------------------------- */

void orr_l_set_report(orr_l_ctx *ctx, orr_l_report_fn fn, void *arg) {
  ctx->report = fn;
  ctx->report_arg = arg;
}

/* "orrery: <what> failed: <message>", to the host's reporter or stderr. */
static void report(orr_l_ctx *ctx, const char *what, const char *msg) {
  char *text;
  size_t n;
  if (ctx->report == NULL) {
    fprintf(stderr, "orrery: %s failed: %s\n", what, msg);
    fflush(stderr);
    return;
  }
  n = strlen(what) + strlen(msg) + 32;
  if ((text = malloc(n)) == NULL)
    return;
  snprintf(text, n, "orrery: %s failed: %s\n", what, msg);
  ctx->report(ctx->report_arg, text);
  free(text);
}

int orr_l_pcall(orr_l_ctx *ctx, lua_State *L, int nargs, const char *what) {
  int base = lua_gettop(L) - nargs, status;
  if (!lua_checkstack(L, 2)) {
    lua_settop(L, base - 1);
    return LUA_ERRMEM;
  }
  lua_pushcfunction(L, orr_l_msghandler);
  lua_insert(L, base);
  ctx->in_callback++;
  status = lua_pcall(L, nargs, 0, base);
  ctx->in_callback--;
  if (status != LUA_OK) {
    report(ctx, what,
           lua_isstring(L, -1) ? lua_tostring(L, -1) : "(no message)");
    lua_pop(L, 1);
  }
  lua_remove(L, base);
  return status;
}

int orr_l_cpcall(orr_l_ctx *ctx, lua_CFunction f, void *ud) {
  lua_State *L = cbthread(ctx);
  if (!lua_checkstack(L, 3)) {
    fprintf(stderr, "orrery: out of Lua stack in a loop callback\n");
    return LUA_ERRMEM;
  }
  /* Light C functions and light userdata: nothing here can raise. */
  lua_pushcfunction(L, f);
  lua_pushlightuserdata(L, ud);
  return orr_l_pcall(ctx, L, 1, "loop callback");
}

/* ---- Ops ---------------------------------------------------------------- */

static void on_alive(uv_check_t *h) {
  (void)h;
}

/*
** An engine request owes us a callback, like a libuv request, so it must
** keep the loop alive even if the engine's own handles are unref'd (its
** deferred-call idle is). A check handle does that without turning poll
** into a busy loop, as an idle would.
*/
static void hold_loop(orr_l_op *op, int on) {
  orr_l_ctx *ctx = op->ctx;
  if (op->holds_loop == (unsigned)on)
    return;
  op->holds_loop = on;
  ctx->engine_ops += on ? 1 : -1;
  if (ctx->closing)
    return;
  if (ctx->engine_ops == 1 && on)
    uv_check_start(&ctx->alive, on_alive);
  else if (ctx->engine_ops == 0)
    uv_check_stop(&ctx->alive);
}

static void op_release(lua_State *L, orr_l_op *op) {
  if (op->pending || op->queued || op->consumer)
    return;
  op_free(op->ctx, L != NULL ? L : cbthread(op->ctx), op);
}

static void enqueue(orr_l_ctx *ctx, orr_l_op *op) {
  op->queued = 1;
  op->qnext = NULL;
  if (ctx->qtail != NULL)
    ctx->qtail->qnext = op;
  else
    ctx->qhead = op;
  ctx->qtail = op;
  uv_idle_start(&ctx->ready, on_ready);
}

static orr_l_op *op_alloc(lua_State *L, orr_l_ctx *ctx) {
  orr_l_op *op = calloc(1, sizeof *op);
  if (op == NULL)
    luaL_error(L, "orrery: out of memory");
  op->ctx = ctx;
  op->anchor = op->co_ref = LUA_NOREF;
  op->next = ctx->ops;
  if (ctx->ops != NULL)
    ctx->ops->prev = op;
  ctx->ops = op;
  return op;
}

void orr_l_check_wait(lua_State *L) {
  orr_l_ctx *ctx = orr_l_ctx_get(L);
  if (ctx->running != NULL && ctx->running->co == L) {
    if (!lua_isyieldable(L))
      luaL_error(L, "cannot wait here: the task is inside a call that cannot "
                    "yield (a metamethod, iterator, table.sort comparator or "
                    "require); move the waiting call out of it");
    return;
  }
  if (ctx->in_callback > 0)
    luaL_error(L, "cannot wait inside an event callback or a non-task "
                  "coroutine; use orrery.spawn");
}

orr_l_op *orr_l_op_new(lua_State *L, orr_l_push_fn push) {
  orr_l_ctx *ctx = orr_l_ctx_get(L);
  orr_l_op *op;
  orr_l_check_wait(L);
  op = op_alloc(L, ctx);
  op->push = push;
  op->pending = 1;
  op->consumer = 1;
  hold_loop(op, 1);
  return op;
}

void orr_l_op_anchor(lua_State *L, orr_l_op *op, int idx) {
  lua_pushvalue(L, idx);
  luaL_unref(L, LUA_REGISTRYINDEX, op->anchor);
  op->anchor = luaL_ref(L, LUA_REGISTRYINDEX);
}

void orr_l_op_pushanchor(lua_State *L, const orr_l_op *op) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, op->anchor);
}

void orr_l_op_keep(orr_l_op *op, json_t *v) {
  if (v == NULL)
    return;
  if (op->keep[0] == NULL)
    op->keep[0] = v;
  else if (op->keep[1] == NULL)
    op->keep[1] = v;
  else
    json_decref(v); /* two is all any request needs */
}

void orr_l_op_cb(void *arg, int status, const orr_error *err, json_t *result) {
  orr_l_op *op = arg;
  orr_l_ctx *ctx = op->ctx;
  hold_loop(op, 0);
  if (op->interrupted) {
    /* The waiter has its ECANCELED already: this late outcome is dropped. */
    op->pending = 0;
    op_release(NULL, op);
    return;
  }
  op->pending = 0;
  op->done = 1;
  op->status = status;
  op->err.code = status;
  if (status != 0)
    snprintf(op->err.msg, sizeof op->err.msg, "%s",
             err != NULL && err->msg[0] ? err->msg : orr_strerror(status));
  if (result != NULL)
    op->result = json_incref(result);
  if (ctx->closing)
    op->consumer = 0;
  else if (op->consumer && op->task != NULL)
    enqueue(ctx, op);
  /* A top-level waiter polls op->done after uv_run returns. */
  op_release(NULL, op);
}

void orr_l_op_cancel(lua_State *L, orr_l_op *op) {
  hold_loop(op, 0);
  op->pending = 0;
  op->consumer = 0;
  op_release(L, op);
}

static void on_sleep(uv_timer_t *t) {
  orr_l_op *op = t->data;
  op->timer = NULL;
  uv_close((uv_handle_t *)t, free_handle);
  orr_l_op_cb(op, 0, NULL, NULL);
}

void orr_l_op_sleep(orr_l_op *op, uint64_t ms) {
  uv_timer_t *t = malloc(sizeof *t);
  hold_loop(op, 0); /* the timer keeps the loop alive itself */
  if (t == NULL) {
    orr_error e;
    orr_error_set(&e, ORR_ENOMEM, "sleep: out of memory");
    orr_l_op_cb(op, e.code, &e, NULL);
    return;
  }
  uv_timer_init(&op->ctx->loop, t);
  t->data = op;
  op->timer = t;
  uv_timer_start(t, on_sleep, ms, 0);
}

void orr_l_op_wait_task(orr_l_op *op, orr_l_task *t) {
  orr_l_op **tail = &t->waiters, *last = NULL;
  hold_loop(op, 0); /* only tasks can finish it: deadlocks stay visible */
  while (*tail != NULL) {
    last = *tail;
    tail = &last->wnext;
  }
  *tail = op;
  op->wprev = last;
  op->target = t;
}

static void unlink_waiter(orr_l_op *op) {
  orr_l_task *t = op->target;
  if (t == NULL)
    return;
  if (op->wprev != NULL)
    op->wprev->wnext = op->wnext;
  else
    t->waiters = op->wnext;
  if (op->wnext != NULL)
    op->wnext->wprev = op->wprev;
  op->wnext = op->wprev = NULL;
  op->target = NULL;
  op->pending = 0; /* nothing will complete it any more */
}

/* The waiter is gone (foreign resume, deadlock): free what nobody owes. */
static void op_drop(lua_State *L, orr_l_op *op) {
  if (op->task != NULL && op->task->waiting == op)
    op->task->waiting = NULL;
  op->task = NULL;
  unlink_waiter(op);
  op->consumer = 0;
  op_release(L, op);
}

static int push_default(lua_State *L, orr_l_op *op) {
  if (op->status != 0)
    return orr_l_fail(L, &op->err);
  lua_pushboolean(L, 1);
  return 1;
}

/* Pushes the results, frees the op, then raises or chains to k. */
static int op_finish(lua_State *L, orr_l_op *op) {
  lua_KFunction k = op->k;
  lua_KContext kctx = op->kctx;
  int n;
  if (op->interrupted && k != NULL) {
    /* k expects the outcome it chained for; do not feed it a fake one. */
    char msg[sizeof op->err.msg + 16];
    snprintf(msg, sizeof msg, "ECANCELED: %s", op->err.msg);
    op->consumer = 0;
    op_release(L, op);
    return luaL_error(L, "%s", msg);
  }
  n = op->push != NULL ? op->push(L, op) : push_default(L, op);
  op->consumer = 0;
  op_release(L, op);
  if (n < 0)
    return lua_error(L);
  if (k != NULL)
    return k(L, LUA_OK, kctx);
  return n;
}

/* Runs in the task when the central runner resumes it. */
static int op_k(lua_State *L, int status, lua_KContext kctx) {
  orr_l_op *op = (orr_l_op *)kctx;
  (void)status;
  if (!op->done) {
    orr_l_task *t = op->task;
    op_drop(L, op);
    luaL_where(L, 1);
    lua_pushliteral(L, "a task waiting in an orrery call was resumed from "
                       "outside (coroutine.resume on a task's coroutine)");
    lua_concat(L, 2);
    if (t != NULL && t->co == L) {
      /* The task is lost to its resumer: record it as failed now. */
      lua_pushvalue(L, -1);
      fail_task(L, t, 0);
    }
    return lua_error(L);
  }
  if (op->task != NULL && op->task->waiting == op)
    op->task->waiting = NULL;
  op->task = NULL;
  return op_finish(L, op);
}

int orr_l_op_wait(lua_State *L, orr_l_op *op) {
  return orr_l_op_waitk(L, op, NULL, 0);
}

int orr_l_op_waitk(lua_State *L, orr_l_op *op, lua_KFunction k,
                   lua_KContext kctx) {
  orr_l_ctx *ctx = op->ctx;
  lua_State *prev;
  orr_l_op *prev_op;
  op->k = k;
  op->kctx = kctx;
  if (ctx->running != NULL && ctx->running->co == L) {
    lua_pushthread(L);
    op->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    op->task = ctx->running;
    ctx->running->waiting = op;
    ctx->running->waits++;
    if (op->done && !op->queued)
      enqueue(ctx, op); /* completed already (out of memory paths) */
    return lua_yieldk(L, 0, (lua_KContext)op, op_k);
  }
  /* Top level: drive the loop. orr_l_op_new refused callbacks already. */
  prev = ctx->driver;
  prev_op = ctx->toplevel;
  ctx->driver = L;
  ctx->toplevel = op;
  while (!op->done) {
    if (uv_run(&ctx->loop, UV_RUN_ONCE) == 0 && !op->done) {
      ctx->driver = prev;
      ctx->toplevel = prev_op;
      op_drop(L, op);
      return luaL_error(L, "cannot wait: nothing left on the loop can "
                           "finish this call (tasks waiting for each "
                           "other?)");
    }
  }
  ctx->driver = prev;
  ctx->toplevel = prev_op;
  return op_finish(L, op);
}

int orr_l_op_interrupt(orr_l_op *op, const char *msg) {
  orr_l_ctx *ctx = op->ctx;
  if (op->done || !op->consumer || op->start)
    return 0;
  if (op->timer != NULL) {
    uv_close((uv_handle_t *)op->timer, free_handle);
    op->timer = NULL;
    op->pending = 0;
  }
  unlink_waiter(op); /* a task:wait() / wait_all() op */
  /* An engine request stays pending (and holds the loop) until the engine
  ** calls back; orr_l_op_cb then drops that outcome. */
  op->interrupted = 1;
  op->done = 1;
  op->status = ORR_ECANCELED;
  op->err.code = ORR_ECANCELED;
  snprintf(op->err.msg, sizeof op->err.msg, "%s",
           msg != NULL ? msg : "interrupted");
  if (op->task != NULL && !op->queued)
    enqueue(ctx, op);
  return 1;
}

orr_l_op *orr_l_toplevel_op(orr_l_ctx *ctx) {
  return ctx->toplevel;
}

lua_State *orr_l_running_thread(orr_l_ctx *ctx) {
  return ctx->running != NULL ? ctx->running->co : NULL;
}

/* ---- Tasks -------------------------------------------------------------- */

orr_l_task *orr_l_current_task(lua_State *L) {
  orr_l_ctx *ctx;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &ctx_key) != LUA_TUSERDATA) {
    lua_pop(L, 1);
    return NULL;
  }
  ctx = *(orr_l_ctx **)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (ctx == NULL || ctx->running == NULL || ctx->running->co != L)
    return NULL;
  return ctx->running;
}

void orr_l_task_start(lua_State *L, orr_l_task *t, int idx) {
  orr_l_ctx *ctx = orr_l_ctx_get(L);
  orr_l_op *op;
  t->ctx = ctx;
  t->state = ORR_L_TASK_PENDING;
  lua_pushvalue(L, idx);
  t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  op = op_alloc(L, ctx);
  op->start = 1;
  op->task = t;
  ctx->live_tasks++;
  enqueue(ctx, op);
}

void orr_l_set_resume_hook(orr_l_ctx *ctx, orr_l_resume_fn fn, void *arg) {
  ctx->resume_hook = fn;
  ctx->resume_arg = arg;
}

void orr_l_task_retrieved(orr_l_task *t) {
  if (t->unretrieved) {
    t->unretrieved = 0;
    t->ctx->uncaught--;
  }
}

/* Sets the task's final state, wakes its waiters, drops its anchors. */
static void complete(lua_State *L, orr_l_task *t, int state) {
  orr_l_ctx *ctx = t->ctx;
  int observed = t->watched || t->waiters != NULL;
  orr_l_op *op, *next;
  t->state = state;
  t->waiting = NULL;
  t->co = NULL;
  ctx->live_tasks--;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
  lua_pushnil(L); /* the coroutine is not needed any more */
  lua_setiuservalue(L, -2, 1);
  for (op = t->waiters; op != NULL; op = next) {
    next = op->wnext;
    op->wnext = op->wprev = NULL;
    op->target = NULL;
    op->pending = 0;
    op->done = 1;
    if (op->consumer && op->task != NULL)
      enqueue(ctx, op);
    op_release(L, op);
  }
  t->waiters = NULL;
  if (state == ORR_L_TASK_FAILED && !observed) {
    lua_getiuservalue(L, -1, 2);
    lua_getfield(L, -1, "traceback");
    report(ctx, "task", lua_tostring(L, -1));
    lua_pop(L, 2);
    t->unretrieved = 1;
    ctx->uncaught++;
  }
  lua_pop(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, t->ref);
  t->ref = LUA_NOREF;
}

static void finish_ok(lua_State *L, orr_l_task *t, int nres) {
  int tbl;
  luaL_checkstack(L, nres + 4, "orrery: too many task results");
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
  lua_createtable(L, nres, 1);
  tbl = lua_gettop(L);
  lua_xmove(t->co, L, nres);
  for (int i = nres; i >= 1; i--)
    lua_rawseti(L, tbl, i);
  lua_pushinteger(L, nres);
  lua_setfield(L, tbl, "n");
  lua_setiuservalue(L, -2, 2);
  lua_pop(L, 1);
  complete(L, t, ORR_L_TASK_DONE);
}

/*
** The error object is on top of t->co. With reset, the coroutine is dead
** and is reset to close its to-be-closed variables; without, it is L itself
** (still running) and stays as it is.
*/
static void fail_task(lua_State *L, orr_l_task *t, int reset) {
  lua_State *co = t->co;
  int eidx = lua_gettop(co), err;
  const char *msg;
  luaL_checkstack(L, 8, "orrery: out of stack");
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
  lua_createtable(L, 0, 3);
  lua_pushvalue(co, eidx); /* resetthread hands the original to __close */
  lua_xmove(co, L, 1);     /* (a no-op when co is L) */
  err = lua_gettop(L);
  if (lua_type(L, err) == LUA_TSTRING || lua_type(L, err) == LUA_TNUMBER) {
    msg = lua_pushstring(L, lua_tostring(L, err));
  } else if (luaL_callmeta(L, err, "__tostring") && lua_isstring(L, -1)) {
    msg = lua_tostring(L, -1);
  } else {
    lua_settop(L, err); /* drop a non-string __tostring result */
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, err));
  }
  luaL_traceback(L, co, msg, co == L ? 1 : 0);
  lua_setfield(L, -4, "traceback");
  lua_setfield(L, -3, "msg");
  lua_setfield(L, -2, "err");
  if (reset) {
    /* Closes the task's pending to-be-closed variables (lua_closethread in
    ** 5.4.6); an error inside a __close is dropped, the first one counts. */
#if LUA_VERSION_RELEASE_NUM >= 50406
    lua_closethread(co, L);
#else
    lua_resetthread(co);
#endif
    lua_settop(co, 0);
  }
  lua_setiuservalue(L, -2, 2);
  lua_pop(L, 1);
  if (!reset)
    lua_remove(co, eidx);
  complete(L, t, ORR_L_TASK_FAILED);
}

/* The central runner: every resume of a task goes through here. */
static void run_task(lua_State *L, orr_l_task *t, int nargs) {
  orr_l_ctx *ctx = t->ctx;
  orr_l_task *prev = ctx->running;
  int status, nres = 0;
  t->state = ORR_L_TASK_RUNNING;
  ctx->running = t;
  status = lua_resume(t->co, L, nargs, &nres);
  ctx->running = prev;
  if (status == LUA_YIELD) {
    lua_pop(t->co, nres);
    if (t->waiting != NULL)
      return;             /* blocked on an op; its completion resumes it */
    luaL_where(t->co, 1); /* the line that yielded */
    lua_pushliteral(t->co, "task yielded outside an orrery waiting call "
                           "(coroutine.yield directly in a task; use "
                           "coroutine.wrap for generators)");
    lua_concat(t->co, 2);
    status = LUA_ERRRUN;
  }
  if (status == LUA_OK)
    finish_ok(L, t, nres);
  else
    fail_task(L, t, 1);
}

/* One ready-queue item, under orr_l_cpcall. */
static int process_ready(lua_State *L) {
  orr_l_op *op = lua_touserdata(L, 1);
  orr_l_task *t = op->task;
  if (op->start) {
    op_release(L, op);
    if (t->state == ORR_L_TASK_PENDING)
      run_task(L, t, t->nargs);
    return 0;
  }
  if (t != NULL && t->waiting == op && lua_status(t->co) == LUA_YIELD) {
    if (op->ctx->resume_hook != NULL)
      op->ctx->resume_hook(op->ctx->resume_arg, t);
    run_task(L, t, 0); /* op_k consumes and frees the op */
    return 0;
  }
  op->consumer = 0;
  if (t != NULL && t->waiting == op) {
    /* coroutine.close() on a waiting task: it can never run again. */
    op->task = NULL;
    t->waiting = NULL;
    op_release(L, op);
    lua_settop(t->co, 0);
    lua_pushliteral(t->co, "the task's coroutine was closed while it was "
                           "waiting");
    fail_task(L, t, 1);
    return 0;
  }
  op->task = NULL;
  op_release(L, op);
  return 0;
}

/* Takes the queue as it is now: what these items enqueue runs next turn. */
static void on_ready(uv_idle_t *h) {
  orr_l_ctx *ctx = h->data;
  orr_l_op *op = ctx->qhead, *next;
  ctx->qhead = ctx->qtail = NULL;
  uv_idle_stop(h);
  for (; op != NULL; op = next) {
    next = op->qnext;
    op->queued = 0;
    orr_l_cpcall(ctx, process_ready, op);
  }
}

int orr_l_run_until(lua_State *L, int (*done)(void *arg), void *arg) {
  orr_l_ctx *ctx = orr_l_ctx_get(L);
  lua_State *prev;
  int rc = 0;
  if (ctx->in_callback > 0)
    luaL_error(L, "cannot drive the loop from a task or an event callback");
  prev = ctx->driver;
  ctx->driver = L;
  while (!done(arg)) {
    if (uv_run(&ctx->loop, UV_RUN_ONCE) == 0 && !done(arg)) {
      rc = -1;
      break;
    }
  }
  ctx->driver = prev;
  return rc;
}

int orr_l_run(lua_State *L) {
  orr_l_ctx *ctx = orr_l_ctx_get(L);
  lua_State *prev;
  if (ctx->in_callback > 0)
    luaL_error(L, "orrery.run: cannot be called from a task or an event "
                  "callback (it drives the loop; call it at top level)");
  prev = ctx->driver;
  ctx->driver = L;
  while (ctx->live_tasks > 0) {
    if (uv_run(&ctx->loop, UV_RUN_ONCE) == 0 && ctx->live_tasks > 0) {
      ctx->driver = prev;
      return luaL_error(L,
                        "orrery.run: %d task(s) can never finish (waiting "
                        "for each other?)",
                        ctx->live_tasks);
    }
  }
  ctx->driver = prev;
  return ctx->uncaught;
}

uint64_t orr_l_timeout_opt(lua_State *L, int idx, const char *name) {
  uint64_t ms = 0;
  if (lua_isnoneornil(L, idx))
    return 0;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING ||
        strcmp(lua_tostring(L, -2), "timeout_ms") != 0) {
      lua_pop(L, 1);
      luaL_error(L, "%s: unknown option '%s' (expected timeout_ms)", name,
                 luaL_tolstring(L, -1, NULL));
    }
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0)
      luaL_error(L, "%s: timeout_ms must be a non-negative integer, got %s",
                 name,
                 lua_type(L, -1) == LUA_TNUMBER ? luaL_tolstring(L, -1, NULL)
                                                : luaL_typename(L, -1));
    ms = (uint64_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  return ms;
}

orr_l_op *orr_l_timed_op(lua_State *L, int opts_idx, const char *name,
                         orr_l_push_fn push, uint64_t *ms) {
  orr_l_op *op;
  /* Options first: a bad one raises before anything is started. */
  *ms = orr_l_timeout_opt(L, opts_idx, name);
  op = orr_l_op_new(L, push);
  orr_l_op_anchor(L, op, 1);
  return op;
}

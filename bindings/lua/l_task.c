/*
** orrery.Task and the task functions: spawn, sleep, wait_all, run, now.
** The mechanics (the central runner, waiters, failure reports) live in
** l_async.c; this file is the Lua-facing surface.
*/
#include <math.h>
#include <string.h>

#include "l_async.h"
#include "l_orrery.h"
#include "l_util.h"

static orr_l_task *check_task(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, ORR_L_TASK);
}

static int finished(const orr_l_task *t) {
  return t->state == ORR_L_TASK_DONE || t->state == ORR_L_TASK_FAILED;
}

orr_l_task *orr_l_spawn(lua_State *L, int nargs) {
  int fn = lua_gettop(L) - nargs;
  orr_l_task *t;
  lua_State *co;
  orr_l_ctx_get(L); /* first: its finalizer must run after the task's */
  if (luaL_getmetatable(L, ORR_L_TASK) == LUA_TNIL)
    orr_l_open_task(L); /* a host spawning before require("orrery") */
  lua_pop(L, 1);
  t = lua_newuserdatauv(L, sizeof *t, 2);
  memset(t, 0, sizeof *t);
  t->ref = LUA_NOREF;
  luaL_setmetatable(L, ORR_L_TASK);
  co = lua_newthread(L);
  lua_setiuservalue(L, -2, 1);
  t->co = co;
  t->nargs = nargs;
  if (!lua_checkstack(co, nargs + 1))
    luaL_error(L, "spawn: too many arguments");
  lua_rotate(L, fn, 1); /* task, fn, args... */
  lua_xmove(L, co, nargs + 1);
  orr_l_task_start(L, t, -1);
  return t;
}

/* Pushes a finished task's values, or raises its error (the traceback
** string for string errors, the error object itself otherwise). */
static int task_results(lua_State *L, orr_l_task *t, int idx) {
  lua_Integer n;
  lua_getiuservalue(L, idx, 2);
  if (t->state == ORR_L_TASK_DONE) {
    int out = lua_gettop(L);
    lua_getfield(L, out, "n");
    n = lua_tointeger(L, -1);
    lua_pop(L, 1);
    luaL_checkstack(L, (int)n, "too many task results");
    for (lua_Integer i = 1; i <= n; i++)
      lua_rawgeti(L, out, i);
    lua_remove(L, out);
    return (int)n;
  }
  orr_l_task_retrieved(t);
  lua_getfield(L, -1, "err");
  if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER)
    lua_getfield(L, -2, "traceback");
  return lua_error(L);
}

int orr_l_task_failed(lua_State *L, int idx) {
  orr_l_task *t = check_task(L, idx);
  if (t->state != ORR_L_TASK_FAILED)
    return 0;
  orr_l_task_retrieved(t);
  lua_getiuservalue(L, idx, 2);
  lua_getfield(L, -1, "traceback");
  lua_remove(L, -2);
  return 1;
}

static int push_nothing(lua_State *L, orr_l_op *op) {
  (void)L, (void)op;
  return 0;
}

static int wait_k(lua_State *L, int status, lua_KContext kctx) {
  (void)status, (void)kctx;
  lua_settop(L, 1);
  return task_results(L, check_task(L, 1), 1);
}

/* task:wait() -> the task's values, or raises its error. */
static int l_task_wait(lua_State *L) {
  orr_l_task *t = check_task(L, 1);
  orr_l_op *op;
  if (finished(t))
    return task_results(L, t, 1);
  if (orr_l_current_task(L) == t)
    return luaL_error(L, "a task cannot wait for itself");
  op = orr_l_op_new(L, push_nothing);
  orr_l_op_wait_task(op, t);
  return orr_l_op_waitk(L, op, wait_k, 0);
}

static int l_task_done(lua_State *L) {
  lua_pushboolean(L, finished(check_task(L, 1)));
  return 1;
}

/* task:result() -> true, values... | false, err, traceback. Raises while
** the task runs: there is no outcome to report yet. */
static int l_task_result(lua_State *L) {
  orr_l_task *t = check_task(L, 1);
  if (!finished(t))
    return luaL_error(L, "task:result: the task has not finished (check "
                         "task:done() or use task:wait())");
  lua_settop(L, 1);
  if (t->state == ORR_L_TASK_DONE) {
    lua_pushboolean(L, 1);
    return 1 + task_results(L, t, 1);
  }
  orr_l_task_retrieved(t);
  lua_pushboolean(L, 0);
  lua_getiuservalue(L, 1, 2);
  lua_getfield(L, 3, "err");
  lua_getfield(L, 3, "traceback");
  lua_remove(L, 3);
  return 3;
}

static int l_task_tostring(lua_State *L) {
  orr_l_task *t = check_task(L, 1);
  const char *state = t->state == ORR_L_TASK_DONE     ? "done"
                      : t->state == ORR_L_TASK_FAILED ? "failed"
                                                      : "running";
  lua_pushfstring(L, ORR_L_TASK ": %p (%s)", (void *)t, state);
  return 1;
}

/*
** __gc and __close. A task owns no C resources (the coroutine is in its
** uservalue, its anchors go when it finishes), and closing it cannot stop a
** coroutine mid-call, so this is deliberately a no-op: `local t <close>`
** is allowed and harmless.
*/
static int l_task_gc(lua_State *L) {
  check_task(L, 1);
  return 0;
}

/* orrery.spawn(fn, ...) -> Task */
static int l_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  orr_l_spawn(L, lua_gettop(L) - 1);
  return 1;
}

/* orrery.sleep(ms): a waiting call; fractions round up to the next ms. */
static int l_sleep(lua_State *L) {
  lua_Number ms = luaL_checknumber(L, 1);
  orr_l_op *op;
  luaL_argcheck(L, ms >= 0 && ms < 1e15, 1,
                "must be a non-negative number of milliseconds");
  op = orr_l_op_new(L, NULL);
  orr_l_op_sleep(op, (uint64_t)ceil(ms));
  return orr_l_op_wait(L, op);
}

/* Stack: 1 the caller's list, 2 a checked copy, then scratch. */
static int wait_all_k(lua_State *L, int status, lua_KContext kctx) {
  lua_Integer n, failed = 0;
  luaL_Buffer b;
  (void)status;
  lua_settop(L, 2);
  n = (lua_Integer)lua_rawlen(L, 2);
  for (lua_Integer i = kctx; i <= n; i++) {
    orr_l_task *t;
    lua_rawgeti(L, 2, i);
    t = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (!finished(t)) {
      orr_l_op *op = orr_l_op_new(L, push_nothing);
      orr_l_op_wait_task(op, t);
      return orr_l_op_waitk(L, op, wait_all_k, i);
    }
  }
  lua_createtable(L, (int)n, 0); /* 3: the results */
  luaL_buffinit(L, &b);          /* the buffer may use slots above 3 */
  for (lua_Integer i = 1; i <= n; i++) {
    orr_l_task *t;
    lua_rawgeti(L, 2, i);
    t = lua_touserdata(L, -1);
    lua_getiuservalue(L, -1, 2);
    lua_remove(L, -2);
    if (t->state == ORR_L_TASK_DONE) {
      lua_rawgeti(L, -1, 1);
      lua_rawseti(L, 3, i);
      lua_pop(L, 1);
    } else {
      failed++;
      orr_l_task_retrieved(t);
      lua_getfield(L, -1, "msg");
      lua_remove(L, -2);
      lua_pushfstring(L, "\n  tasks[%I]: %s", (LUAI_UACINT)i,
                      lua_tostring(L, -1));
      lua_remove(L, -2);
      luaL_addvalue(&b);
    }
  }
  if (failed > 0) {
    luaL_pushresult(&b);
    luaL_where(L, 1);
    lua_pushfstring(L, "wait_all: %I of %I tasks failed:", (LUAI_UACINT)failed,
                    (LUAI_UACINT)n);
    lua_rotate(L, -3, -1); /* where, head, list */
    lua_concat(L, 3);
    return lua_error(L);
  }
  lua_settop(L, 3);
  return 1;
}

/* orrery.wait_all{t1, t2, ...} -> {first value of t1, of t2, ...} */
static int l_wait_all(lua_State *L) {
  orr_l_task *me = orr_l_current_task(L);
  lua_Integer n;
  luaL_checktype(L, 1, LUA_TTABLE);
  n = luaL_len(L, 1);
  lua_settop(L, 1);
  lua_createtable(L, (int)n, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    orr_l_task *t;
    lua_geti(L, 1, i);
    t = luaL_testudata(L, -1, ORR_L_TASK);
    if (t == NULL)
      return luaL_error(L,
                        "wait_all: tasks[%I] must be an " ORR_L_TASK ", got %s",
                        (LUAI_UACINT)i, luaL_typename(L, -1));
    if (t == me)
      return luaL_error(L, "wait_all: a task cannot wait for itself");
    lua_rawseti(L, 2, i);
  }
  return wait_all_k(L, LUA_OK, 1);
}

/*
** orrery.run() -> true | false, n. Drives the loop until every task has
** finished (top level only). It returns rather than raises on task
** failures, since they were already reported: n counts the failed tasks
** whose error nobody has read (task:wait, wait_all or task:result clear
** theirs). Raises if tasks remain that nothing can ever finish.
*/
static int l_run(lua_State *L) {
  int n = orr_l_run(L);
  if (n == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_pushinteger(L, n);
  return 2;
}

/*
** orrery.now() -> milliseconds on the loop's monotonic clock, as a float
** with sub-millisecond precision (libuv's loop time is its hrtime in whole
** milliseconds). The loop time is brought up to date too, so a timer armed
** next (orrery.sleep) counts from now.
*/
static int l_now(lua_State *L) {
  uv_loop_t *loop = orr_l_loop(orr_l_ctx_get(L));
  uv_update_time(loop);
  lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e6);
  return 1;
}

static const luaL_Reg methods[] = {
    {"wait", l_task_wait},
    {"done", l_task_done},
    {"result", l_task_result},
    {NULL, NULL},
};

static const luaL_Reg meta[] = {{"__gc", l_task_gc},
                                {"__close", l_task_gc},
                                {"__tostring", l_task_tostring},
                                {"__index", NULL},
                                {NULL, NULL}};

void orr_l_open_task(lua_State *L) {
  orr_l_newclass(L, ORR_L_TASK, meta, methods);
}

const luaL_Reg orr_l_task_funcs[] = {
    {"spawn", l_spawn}, {"sleep", l_sleep}, {"wait_all", l_wait_all},
    {"run", l_run},     {"now", l_now},     {NULL, NULL},
};

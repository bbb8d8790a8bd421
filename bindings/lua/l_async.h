/*
** The glue between engine requests and Lua coroutines.
**
** One context per lua_State holds the loop, the engine (created on first
** use) and the tasks. A waiting call (vm:start(), orrery.sleep(),
** task:wait(), ...) creates an op, passes it as the `arg` of the engine
** request and waits on it:
**   - inside a task (a coroutine started by orrery.spawn or `orrery run`)
**     it yields; the completion resumes the task through one central runner
**     on the next loop turn;
**   - at top level (plain lua5.4, busted, the REPL's top level) it drives
**     the loop itself until the op is done;
**   - anywhere else while the loop is running (an event handler, or a plain
**     coroutine inside a task) it raises, because uv_run is not reentrant.
**
** Ops and the context are malloc'ed, never Lua GC memory; a pending op holds
** registry refs to what it needs. Every call into Lua from a libuv callback
** is protected (lua_pcall or lua_resume), so nothing longjmps across libuv.
*/
#ifndef ORR_L_ASYNC_H
#define ORR_L_ASYNC_H

#include <jansson.h>
#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

#include "orrery/error.h"
#include "orrery/vm.h"

typedef struct orr_l_ctx orr_l_ctx;
typedef struct orr_l_op orr_l_op;
typedef struct orr_l_task orr_l_task;

/*
** Pushes a finished op's results onto L (the waiting thread) and returns
** their count, or pushes an error value and returns -1 to have it raised
** (after the op is freed). op->status says whether it failed.
*/
typedef int (*orr_l_push_fn)(lua_State *L, orr_l_op *op);

struct orr_l_op {
  /* The outcome, valid once the op is done. */
  int status;     /* 0 or an ORR_* code */
  orr_error err;  /* the message when status != 0 */
  json_t *result; /* owned (may be NULL) */
  int anchor;     /* registry ref set by orr_l_op_anchor, or LUA_NOREF */
  /* Private to l_async.c. */
  orr_l_ctx *ctx;
  orr_l_push_fn push;
  lua_KFunction k;
  lua_KContext kctx;
  int co_ref;               /* the waiting coroutine, anchored */
  json_t *keep[2];          /* request arguments kept alive until completion */
  orr_l_task *task;         /* the task blocked on this op, or NULL */
  orr_l_task *target;       /* task:wait(): the task waited for */
  uv_timer_t *timer;        /* orrery.sleep() */
  unsigned done : 1;        /* the outcome is in */
  unsigned pending : 1;     /* the engine / timer / target still owes a call */
  unsigned queued : 1;      /* in the ready queue */
  unsigned consumer : 1;    /* a waiter will still read the outcome */
  unsigned start : 1;       /* a ready-queue item that starts op->task */
  unsigned holds_loop : 1;  /* an engine request: keeps the loop alive */
  unsigned interrupted : 1; /* ended early by orr_l_op_interrupt */
  orr_l_op *next, *prev;    /* all live ops of the context */
  orr_l_op *qnext;          /* ready queue */
  orr_l_op *wnext, *wprev;  /* the target's waiters */
};

enum {
  ORR_L_TASK_PENDING,
  ORR_L_TASK_RUNNING,
  ORR_L_TASK_DONE,
  ORR_L_TASK_FAILED
};

/*
** A task: the C half of an orrery.Task userdata (GC memory, but anchored by
** `ref` until it finishes, and ops point at it only while it is
** unfinished). Uservalue 1 is the coroutine (dropped once finished),
** uservalue 2 the outcome: {n = N, v1, ..., vN} on success, {err = value,
** msg = string, traceback = string} on failure.
*/
struct orr_l_task {
  orr_l_ctx *ctx;
  lua_State *co;
  int state;
  int ref;           /* registry anchor of the userdata until finished */
  int nargs;         /* arguments on co's stack for the first resume */
  orr_l_op *waiting; /* the op the task is blocked on */
  unsigned waits;    /* how many waits it has begun: tells two waits apart
                        even when their ops share an address */
  orr_l_op *waiters; /* task:wait() ops on this task */
  int watched;       /* its outcome is always read: never "task failed" */
  int unretrieved;   /* failed unseen: counted in the context */
};

/* The context of L's state, created on first use (raises on failure). */
orr_l_ctx *orr_l_ctx_get(lua_State *L);
/* The engine, created on first use (raises on failure). */
orr_engine *orr_l_engine(lua_State *L);
uv_loop_t *orr_l_loop(orr_l_ctx *ctx);
/* True once lua_close has started tearing the context down. */
int orr_l_closing(const orr_l_ctx *ctx);

/* Raises unless a waiting call may wait here. Call it before starting any
** request so a refused wait has no side effect. */
void orr_l_check_wait(lua_State *L);

/* A new op for one waiting call (raises like orr_l_check_wait). push NULL:
** true on success, the fail tuple on failure. */
orr_l_op *orr_l_op_new(lua_State *L, orr_l_push_fn push);
/* Reads an options table at idx that may hold only timeout_ms (raises on
** anything else, naming the key and the call) and returns it; 0 when there
** is none (the call's default). */
uint64_t orr_l_timeout_opt(lua_State *L, int idx, const char *name);
/*
** The opening every timed call on a handle shares (vm:start, g:ping, ...):
** reads the {timeout_ms} options at opts_idx into *ms, then makes the op
** and anchors the handle at stack index 1 to it. The caller starts the
** request with orr_l_op_cb and op, and returns orr_l_op_wait(L, op).
*/
orr_l_op *orr_l_timed_op(lua_State *L, int opts_idx, const char *name,
                         orr_l_push_fn push, uint64_t *ms);
/* Anchors the value at idx until the op is freed (one per op). */
void orr_l_op_anchor(lua_State *L, orr_l_op *op, int idx);
/* Pushes the anchored value. */
void orr_l_op_pushanchor(lua_State *L, const orr_l_op *op);
/* Takes ownership of v, released with the op (arguments the engine may
** read until it completes). */
void orr_l_op_keep(orr_l_op *op, json_t *v);
/* The orr_vm_cb to pass with the op as arg. */
void orr_l_op_cb(void *arg, int status, const orr_error *err, json_t *result);
/* The request was refused synchronously: its callback will never run. */
void orr_l_op_cancel(lua_State *L, orr_l_op *op);
/* Makes the op an orrery.sleep(): completes after ms. */
void orr_l_op_sleep(orr_l_op *op, uint64_t ms);
/* Makes the op wait for task t to finish (t must be unfinished). */
void orr_l_op_wait_task(orr_l_op *op, orr_l_task *t);

/*
** Waits for op and returns its results (as a lua_CFunction does): yields in
** a task, drives the loop at top level. With k, once the results are pushed
** k(L, status, kctx) runs (in the task, or directly) and its return value is
** the call's; k may wait again.
*/
int orr_l_op_wait(lua_State *L, orr_l_op *op);
int orr_l_op_waitk(lua_State *L, orr_l_op *op, lua_KFunction k,
                   lua_KContext kctx);

/* The task running L, if L is a task's coroutine being run by the central
** runner; else NULL. */
orr_l_task *orr_l_current_task(lua_State *L);
/* Schedules t (function and nargs arguments already on t->co) to start on
** the next loop turn; the userdata is at idx. */
void orr_l_task_start(lua_State *L, orr_l_task *t, int idx);
/* The outcome's error was read: no longer counted as unseen. */
void orr_l_task_retrieved(orr_l_task *t);
/* Called from the loop when task t's wait has ended, just before t runs
** again (a progress line is erased there, before t prints anything). One
** hook per context; fn NULL removes it. */
typedef void (*orr_l_resume_fn)(void *arg, orr_l_task *t);
void orr_l_set_resume_hook(orr_l_ctx *ctx, orr_l_resume_fn fn, void *arg);

/*
** Drives the loop until every task has finished (top level only; raises if
** tasks can never finish). Returns the number of failed tasks whose error
** nobody has read (by task:wait, wait_all or task:result).
*/
int orr_l_run(lua_State *L);

/*
** Drives the loop (top level only, like orr_l_run) until done(arg) returns
** nonzero; done is checked after every loop turn. Returns 0, or -1 when the
** loop has nothing left that could ever make done true. For hosts that
** own the loop between calls into Lua (the REPL, `orrery run -i`).
*/
int orr_l_run_until(lua_State *L, int (*done)(void *arg), void *arg);

/*
** Ends a waiting call early (Ctrl-C): the waiter resumes on the next loop
** turn and its call returns nil, "ECANCELED: <msg>", "ECANCELED" (or, for
** calls that chain several waits, raises that message). Whatever the call
** started carries on: a VM keeps the state it reaches, and the late
** completion is dropped. Returns 1 if op was still waiting.
*/
int orr_l_op_interrupt(orr_l_op *op, const char *msg);
/* The op the main thread is waiting on at top level, or NULL. */
orr_l_op *orr_l_toplevel_op(orr_l_ctx *ctx);
/* The thread executing Lua right now from the loop (a task), or NULL: what
** a SIGINT handler must hook to stop a busy loop. */
lua_State *orr_l_running_thread(orr_l_ctx *ctx);

/*
** Where "orrery: task failed: ..." and "orrery: event handler failed: ..."
** go (text ends with a newline); NULL: stderr. The REPL writes them above
** its prompt.
*/
typedef void (*orr_l_report_fn)(void *arg, const char *text);
void orr_l_set_report(orr_l_ctx *ctx, orr_l_report_fn fn, void *arg);

/*
** For callbacks into Lua (event handlers): calls the function below nargs
** arguments under lua_pcall with a traceback, counted as "in a callback" so
** it cannot wait. On error prints "orrery: <what> failed: <traceback>".
*/
int orr_l_pcall(orr_l_ctx *ctx, lua_State *L, int nargs, const char *what);
/* Runs f(lightuserdata ud) protected on the thread inside uv_run (or the
** running task), counted as a callback: the one safe way into Lua from a
** libuv callback. */
int orr_l_cpcall(orr_l_ctx *ctx, lua_CFunction f, void *ud);

#endif

/*
** What the command line (cli/) and the REPL (repl/) share on a terminal:
** exit codes, error reports, progress lines for long waits and Ctrl-C.
** Below both: nothing here calls into either.
*/
#ifndef ORR_TERM_H
#define ORR_TERM_H

#include <stdio.h>

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

#include "lua/l_async.h"

/* Exit codes, documented in `orrery --help` and README.md. */
enum {
  ORR_EXIT_OK = 0,
  ORR_EXIT_FAIL = 1,         /* the recipe, a chunk or a task failed; doctor: a
                                check failed */
  ORR_EXIT_USAGE = 2,        /* bad command line */
  ORR_EXIT_INTERRUPTED = 130 /* Ctrl-C stopped `orrery run` (128 + SIGINT) */
};

extern const char *orr_cli_progname;

/* ---- Reports and handles (term.c) --------------------------------------- */

/* Prints the error on top of L prefixed with the program name; returns
** ORR_EXIT_FAIL (or ORR_EXIT_OK for LUA_OK). */
int orr_cli_report(lua_State *L, int status);
/* Closes the handle and drives the loop until its close callback ran. */
void orr_cli_close_handle(lua_State *L, uv_handle_t *h);

/* ---- Progress for long waits (progress.c) --------------------------- */

typedef struct orr_progress orr_progress;
/*
** Reports waits of the task t (set with orr_progress_watch) that last
** long: a spinner line on stderr when it is a terminal, plain lines
** otherwise. Returns NULL when quiet. Stop it before lua_close.
*/
orr_progress *orr_progress_start(lua_State *L, int quiet);
/* The task to watch (NULL: none); anchors nothing, so clear it once the
** task has finished. */
void orr_progress_watch(orr_progress *p, orr_l_task *t, const char *hint);
/* Clears a spinner line now (before printing something else). */
void orr_progress_clear(orr_progress *p);
void orr_progress_stop(lua_State *L, orr_progress *p);

/* ---- Ctrl-C (interrupt.c) ------------------------------------------- */

/*
** SIGINT while Lua code runs or waits. The handler hooks the thread that
** may be executing Lua (the running task, else the main thread), so a busy
** loop raises "interrupted!" as in lua5.4, and wakes the
** loop: cb then runs from the loop with the number of signals received
** since the last call and whether the hook already fired (then the Lua
** error is the interruption and cb should do nothing more).
*/
typedef void (*orr_interrupt_cb)(void *arg, int signals, int hook_fired);
int orr_interrupt_install(lua_State *L, orr_interrupt_cb cb, void *arg);
/* Interrupts the wait of task t (if waiting) and of a top-level waiting
** call; returns how many waits were ended. */
int orr_interrupt_waits(lua_State *L, orr_l_task *t);
/* Restores the previous SIGINT disposition and closes the loop handle. */
void orr_interrupt_uninstall(lua_State *L);

#endif

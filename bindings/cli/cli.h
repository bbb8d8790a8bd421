/*
** The orrery executable's command line: one function per subcommand, the
** helpers they share, and the pieces the REPL reuses (progress lines and
** the SIGINT handling that interrupts a waiting call).
*/
#ifndef ORR_CLI_H
#define ORR_CLI_H

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

/* Subcommands: argv[0] is the subcommand's name, as for main(). */
int orr_cli_run(int argc, char **argv);
int orr_cli_plan(int argc, char **argv);
int orr_cli_repl(int argc, char **argv);
int orr_cli_doctor(int argc, char **argv);
int orr_cli_version(int argc, char **argv);
/* `orrery [OPTIONS] [RECIPE [ARGS...]]`, lua5.4-style (argv[0] is the
** program). */
int orr_cli_toplevel(int argc, char **argv);

/* True for -h and --help. */
int orr_cli_is_help(const char *arg);
/* Prints "orrery CMD: MSG" and a pointer to --help; returns
** ORR_EXIT_USAGE. */
int orr_cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* After getopt_long returned '?': the usage error naming the option
** (unknown, or a long one given an argument it does not take). */
struct option;
int orr_cli_bad_option(const char *cmd, char **argv,
                       const struct option *longopts);
/*
** The options of a command that takes only flags (--json, --compact, ...)
** and -h/--help, through getopt_long: each flag given sets *flag to 1;
** --help prints help (a format taking the program name twice) and sets
** *done. Stops at the first argument that is not an option (*first).
** Returns ORR_EXIT_OK or, for a bad option, ORR_EXIT_USAGE.
*/
#define ORR_CLI_MAX_FLAGS 8
typedef struct {
  const char *name; /* without the dashes; NULL ends the list */
  int *flag;
} orr_cli_flag;
int orr_cli_parse_flags(const char *cmd, int argc, char **argv,
                        const orr_cli_flag *flags, const char *help, int *done,
                        int *first);

/* A Lua state with the standard libraries, package.path reaching the Lua
** library, orrery.core preloaded and the global orrery; NULL (after saying
** why) when out of memory or the Lua library cannot be loaded. */
lua_State *orr_cli_newstate(void);
/* Prints the error on top of L prefixed with the program name; returns
** ORR_EXIT_FAIL (or ORR_EXIT_OK for LUA_OK). */
int orr_cli_report(lua_State *L, int status);
/*
** Sets `arg` (arg[0] = argv[0] the recipe, arg[1..] its arguments), loads
** the recipe (argv[0] "-" is stdin) and pushes its arguments. On success
** the stack holds the chunk and argc - 1 arguments; on failure the error
** message is on top.
*/
int orr_cli_load_recipe(lua_State *L, int argc, char **argv);
/* Runs the chunk at top level with a traceback; returns the lua status. */
int orr_cli_dochunk(lua_State *L, const char *chunk, const char *name);
/* Closes the handle and drives the loop until its close callback ran. */
void orr_cli_close_handle(lua_State *L, uv_handle_t *h);

/* ---- Progress for long waits (cli_progress.c) --------------------------- */

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

/* ---- Ctrl-C (cli_interrupt.c) ------------------------------------------- */

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

/* ---- The REPL (repl.c) -------------------------------------------------- */

/* Runs the interactive REPL on L until Ctrl-D; returns an exit code.
** Creates the session (VM tracking) unless orr_repl_session was called. */
int orr_repl_main(lua_State *L);
/* Starts tracking the VMs created from now on (orrery.session): for
** `orrery run -i`, before the recipe runs. Raises on failure. */
void orr_repl_session(lua_State *L);

#endif

/*
** The orrery executable's command line: one function per subcommand and
** the helpers they share. The top of the executable: it calls the REPL
** (repl/) and the terminal pieces (term/), neither of which calls back.
*/
#ifndef ORR_CLI_H
#define ORR_CLI_H

#include <stdio.h>

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

#include "lua/l_async.h"
#include "term/term.h"

/* Subcommands: argv[0] is the subcommand's name, as for main(). */
int orr_cli_run(int argc, char **argv);
int orr_cli_plan(int argc, char **argv);
int orr_cli_repl(int argc, char **argv);
int orr_cli_doctor(int argc, char **argv);
int orr_cli_version(int argc, char **argv);
int orr_cli_template(int argc, char **argv);
/* VMs from the shell (cli_vms.c). */
int orr_cli_ps(int argc, char **argv);
int orr_cli_console(int argc, char **argv);
int orr_cli_stop(int argc, char **argv);
int orr_cli_kill(int argc, char **argv);
/* `orrery [OPTIONS] [RECIPE [ARGS...]]`, lua5.4-style (argv[0] is the
** program). */
int orr_cli_toplevel(int argc, char **argv);
/* Plain `orrery`, `orrery -i`, `orrery repl`: the REPL on a terminal, else
** (as lua5.4) the script read from stdin; prog is the program's argv[0]. */
int orr_cli_interactive(char *prog);

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
/*
** Sets `arg` (arg[0] = argv[0] the recipe, arg[1..] its arguments), loads
** the recipe (argv[0] "-" is stdin) and pushes its arguments. On success
** the stack holds the chunk and argc - 1 arguments; on failure the error
** message is on top.
*/
int orr_cli_load_recipe(lua_State *L, int argc, char **argv);
/* Runs the chunk at top level with a traceback; returns the lua status. */
int orr_cli_dochunk(lua_State *L, const char *chunk, const char *name);

/* ---- Logging and events (cli_log.c) ------------------------------------ */

/* ORRERY_LOG, then -v (count) and --log-file (NULL: stderr); returns an
** exit code (ORR_EXIT_OK, or ORR_EXIT_FAIL having said why). */
int orr_cli_log_setup(const char *cmd, int verbose, const char *log_file);
/* --events=FILE ("-": stdout): every event of every VM of L's engine as
** one JSON line {Time, Id, Event, Data}. NULL (having said why) on
** failure. Close it after lua_close: the last events come from there. */
typedef struct orr_cli_events orr_cli_events;
orr_cli_events *orr_cli_events_open(lua_State *L, const char *path);
void orr_cli_events_close(orr_cli_events *ev);

#endif

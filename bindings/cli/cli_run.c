/*
** `orrery run` and the lua5.4-style top level (`orrery [-e CHUNK] [-i]
** [RECIPE [ARGS...]]`): -e chunks first, at top level; then the recipe as a
** task, so its waiting calls yield and the tasks it spawns run meanwhile;
** then either every task to its end, or (-i) the REPL with the recipe's
** VMs still alive.
*/
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "lua/l_orrery.h"
#include "lua/l_util.h"
#include "repl/repl.h"

static const char run_help[] =
    "usage: %s run [OPTIONS] RECIPE.lua [ARGS...]\n"
    "       %s [OPTIONS] [RECIPE.lua [ARGS...]]\n"
    "\n"
    "Runs RECIPE as a task (its waiting calls yield, the tasks it spawns run\n"
    "meanwhile), then every task it spawned to its end. ARGS reach the\n"
    "recipe as `...` and as the global `arg` (arg[0] is RECIPE). RECIPE `-`\n"
    "reads the recipe from stdin. The global `orrery` is the library.\n"
    "\n"
    "options (short ones combine: -qe CHUNK):\n"
    "  -e CHUNK    run the Lua CHUNK first, at top level (repeatable)\n"
    "  -l MOD      require MOD into the global MOD; -l G=MOD into the\n"
    "              global G (repeatable; -e and -l run in their order)\n"
    "  -i          after the recipe, enter the REPL with its VMs alive\n"
    "              (without RECIPE: after the -e chunks), even when the\n"
    "              recipe failed, to look at what it left\n"
    "  -q, --quiet no progress lines for long waits\n"
    "  -v          log more: -v info, -vv debug, -vvv trace (see\n"
    "              ORRERY_LOG for per-component levels)\n"
    "  --log-file=FILE\n"
    "              write log lines to FILE (appended) instead of stderr\n"
    "  --events=FILE\n"
    "              write every VM event as one JSON line to FILE\n"
    "              (`-`: standard output)\n"
    "  --sandbox   no os.execute, io.popen, package.loadlib or native\n"
    "              modules, and no file written outside --allow-write\n"
    "              directories, by the recipe or by QEMU for it\n"
    "  --allow-write=DIR\n"
    "              a directory a sandboxed recipe may write below\n"
    "              (repeatable; implies --sandbox)\n"
    "  -h, --help  this help\n"
    "\n"
    "Ctrl-C interrupts the recipe's current waiting call (it returns nil,\n"
    "\"ECANCELED: interrupted\", \"ECANCELED\") and the run exits 130 once\n"
    "the recipe is over; a second Ctrl-C kills. A recipe that returns an\n"
    "orrery.Builder and creates no VM fails, saying how to boot it.\n"
    "\n"
    "exit codes: 0 success, 1 the recipe, a chunk or a task failed,\n"
    "2 usage error, 130 interrupted by Ctrl-C\n";

/* What -e and -l ask for, in command-line order. */
typedef struct {
  char kind; /* 'e' or 'l' */
  const char *arg;
} action;

typedef struct {
  const char *cmd; /* "run", or NULL at the top level */
  action *actions; /* -e and -l, in order */
  int nactions;
  int interactive; /* -i */
  int quiet;       /* -q */
  int argc;        /* RECIPE [ARGS...]; 0: no recipe */
  char **argv;
  int sandbox;              /* --sandbox */
  const char **allow_write; /* --allow-write, NULL-terminated */
  int nallow;
  int verbose;          /* -v count */
  const char *log_file; /* --log-file */
  const char *events;   /* --events */
} run_opts;

typedef struct {
  run_opts *o;
  lua_State *L;
  orr_l_task *task; /* the recipe's */
  orr_progress *progress;
  int interrupted;
  int status; /* exit code so far */
} run_state;

static void help(const char *cmd) {
  (void)cmd;
  printf(run_help, orr_cli_progname, orr_cli_progname);
}

enum { OPT_SANDBOX = 256, OPT_ALLOW_WRITE, OPT_LOG_FILE, OPT_EVENTS };

static const struct option longopts[] = {
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {"sandbox", no_argument, NULL, OPT_SANDBOX},
    {"allow-write", required_argument, NULL, OPT_ALLOW_WRITE},
    {"verbose", no_argument, NULL, 'v'},
    {"log-file", required_argument, NULL, OPT_LOG_FILE},
    {"events", required_argument, NULL, OPT_EVENTS},
    {NULL, 0, NULL, 0},
};

/*
** getopt_long in POSIX order ("+"): options stop at the first argument
** that is not one (the recipe), so the recipe's own arguments pass
** through untouched, as with lua5.4. To add an option, add it to the
** short string or longopts, a case here and a field to run_opts.
*/
static int parse(run_opts *o, int argc, char **argv, int *done) {
  int c;
  *done = 0;
  optind = 0; /* glibc: start afresh */
  opterr = 0;
  while ((c = getopt_long(argc, argv, "+:e:l:iqvh", longopts, NULL)) != -1) {
    switch (c) {
    case 'e':
    case 'l':
      o->actions[o->nactions].kind = (char)c;
      o->actions[o->nactions++].arg = optarg;
      break;
    case 'i':
      o->interactive = 1;
      break;
    case 'q':
      o->quiet = 1;
      break;
    case 'v':
      o->verbose++;
      break;
    case OPT_LOG_FILE:
      if (optarg[0] == '\0')
        return orr_cli_usage_error(o->cmd, "--log-file needs a file");
      o->log_file = optarg;
      break;
    case OPT_EVENTS:
      if (optarg[0] == '\0')
        return orr_cli_usage_error(o->cmd, "--events needs a file or -");
      o->events = optarg;
      break;
    case 'h':
      help(o->cmd);
      *done = 1;
      return ORR_EXIT_OK;
    case OPT_SANDBOX:
      o->sandbox = 1;
      break;
    case OPT_ALLOW_WRITE:
      if (optarg[0] == '\0')
        return orr_cli_usage_error(o->cmd, "--allow-write needs a directory");
      o->allow_write[o->nallow++] = optarg;
      o->sandbox = 1;
      break;
    case ':':
      return orr_cli_usage_error(
          o->cmd, "%s",
          optopt == 'e'            ? "-e needs a chunk"
          : optopt == 'l'          ? "-l needs a module"
          : optopt == OPT_LOG_FILE ? "--log-file needs a file"
          : optopt == OPT_EVENTS   ? "--events needs a file or -"
                                   : "--allow-write needs a directory");
    default:
      return orr_cli_bad_option(o->cmd, argv, longopts);
    }
  }
  o->argc = argc - optind;
  o->argv = argv + optind;
  return ORR_EXIT_OK;
}

static int task_finished(void *arg) {
  orr_l_task *t = arg;
  return t->state == ORR_L_TASK_DONE || t->state == ORR_L_TASK_FAILED;
}

/* The first Ctrl-C ends the recipe's current wait; the next one kills, as
** the user clearly means it (PR_SET_PDEATHSIG takes the VMs along). */
static void on_sigint(void *arg, int signals, int hook_fired) {
  run_state *st = arg;
  st->interrupted += signals;
  if (st->interrupted > 1) {
    signal(SIGINT, SIG_DFL);
    raise(SIGINT);
    return;
  }
  orr_progress_clear(st->progress);
  fprintf(stderr, "%s: interrupted (Ctrl-C again to kill)\n", orr_cli_progname);
  if (!hook_fired)
    orr_interrupt_waits(st->L, st->task);
}

/* A recipe that returned a builder and made no VM expected `run` to boot
** it: say how. Returns the exit status. */
static int returned_builder(lua_State *L, int task, const char *recipe) {
  int is_builder;
  if (orr_l_vm_created(L) > 0)
    return ORR_EXIT_OK;
  lua_getiuservalue(L, task, 2); /* the outcome: {n = N, v1, ...} */
  lua_rawgeti(L, -1, 1);
  is_builder = orr_l_testbuilder(L, -1) != NULL;
  lua_pop(L, 2);
  if (!is_builder)
    return ORR_EXIT_OK;
  fprintf(stderr,
          "%s: %s returned an orrery.Builder and created no VM: `run` boots "
          "only the VMs a recipe creates. Create one in the recipe\n"
          "  local vm <close> = assert(orrery.create(\"NAME\", b))\n"
          "  assert(vm:start())\n"
          "or print the document it describes with `%s plan %s`.\n",
          orr_cli_progname, recipe, orr_cli_progname, recipe);
  return ORR_EXIT_FAIL;
}

/* -l [G=]MOD: G = require(MOD), G defaulting to MOD, as lua5.4 does. */
static int dolibrary(lua_State *L, const char *spec) {
  const char *eq = strchr(spec, '=');
  int base, status;
  lua_pushcfunction(L, orr_l_msghandler);
  base = lua_gettop(L);
  lua_getglobal(L, "require");
  lua_pushstring(L, eq != NULL ? eq + 1 : spec);
  status = lua_pcall(L, 1, 1, base);
  if (status == LUA_OK) {
    if (eq != NULL)
      lua_pushlstring(L, spec, (size_t)(eq - spec));
    else
      lua_pushstring(L, spec);
    lua_insert(L, -2);
    lua_setglobal(L, lua_tostring(L, -2));
    lua_pop(L, 1);
  }
  lua_remove(L, base);
  return status;
}

/* Under lua_pcall: the -e chunks, then the recipe. */
static int run_protected(lua_State *L) {
  run_state *st = lua_touserdata(L, 1);
  run_opts *o = st->o;
  int task, status;
  lua_settop(L, 0);
  /* Before anything of the user's runs, -e chunks included. */
  if (o->sandbox && orr_l_sandbox(L, o->allow_write) != LUA_OK) {
    st->status = orr_cli_report(L, LUA_ERRRUN);
    return 0;
  }
  orr_interrupt_install(L, on_sigint, st);
  st->progress = orr_progress_start(L, o->quiet);
  if (o->interactive)
    orr_repl_session(L);
  for (int i = 0; i < o->nactions; i++) {
    const action *a = &o->actions[i];
    if ((a->kind == 'e' ? orr_cli_dochunk(L, a->arg, "=(command line)")
                        : dolibrary(L, a->arg)) != LUA_OK) {
      st->status = orr_cli_report(L, LUA_ERRRUN);
      return 0;
    }
  }
  if (o->argc == 0)
    return 0;
  status = orr_cli_load_recipe(L, o->argc, o->argv);
  if (status != LUA_OK) {
    st->status = orr_cli_report(L, status);
    return 0;
  }
  st->task = orr_l_spawn(L, o->argc - 1);
  task = lua_gettop(L);
  st->task->watched = 1; /* its error is reported here, not as "task failed" */
  orr_progress_watch(st->progress, st->task, NULL);
  if (o->interactive) {
    orr_l_run_until(L, task_finished, st->task);
  } else {
    int unseen = orr_l_run(L);
    if (unseen > 0 && !orr_l_task_failed(L, task)) {
      orr_progress_watch(st->progress, NULL, NULL);
      fprintf(stderr, "%s: %d task(s) failed\n", orr_cli_progname, unseen);
      st->status = ORR_EXIT_FAIL;
      return 0;
    }
    lua_settop(L, task);
  }
  orr_progress_watch(st->progress, NULL, NULL);
  if (orr_l_task_failed(L, task))
    st->status = orr_cli_report(L, LUA_ERRRUN);
  else if (!o->interactive)
    st->status = returned_builder(L, task, o->argv[0]);
  st->task = NULL;
  return 0;
}

static int run_main(run_opts *o) {
  lua_State *L = orr_cli_newstate();
  run_state st = {o, L, NULL, NULL, 0, ORR_EXIT_OK};
  int status;
  orr_cli_events *ev = NULL;
  if (L == NULL)
    return ORR_EXIT_FAIL;
  if (o->events != NULL && (ev = orr_cli_events_open(L, o->events)) == NULL) {
    lua_close(L);
    return ORR_EXIT_FAIL;
  }
  lua_pushcfunction(L, orr_l_msghandler);
  lua_pushcfunction(L, run_protected);
  lua_pushlightuserdata(L, &st);
  status = lua_pcall(L, 1, 0, 1);
  /* After a raise the task may be finished and collectable: a late Ctrl-C
  ** must not reach it. */
  st.task = NULL;
  if (status != LUA_OK)
    st.status = orr_cli_report(L, status);
  orr_progress_stop(L, st.progress);
  st.progress = NULL;
  orr_interrupt_uninstall(L);
  /* Even after a failure: the REPL is where to look at what it left. */
  if (o->interactive)
    st.status = orr_repl_main(L);
  lua_close(L);
  orr_cli_events_close(ev);
  /* Interrupted is interrupted, even when the recipe took the ECANCELED
  ** in its stride (with -i the REPL's own status counts instead). */
  if (st.interrupted && !o->interactive)
    return ORR_EXIT_INTERRUPTED;
  return st.status;
}

/* A mistyped subcommand ("orrery docter") is a usage error, not a missing
** recipe: a bare word that names no file. */
static int looks_like_command(const char *arg) {
  return strchr(arg, '/') == NULL && strchr(arg, '.') == NULL &&
         strcmp(arg, "-") != 0 && access(arg, F_OK) != 0;
}

static int run_with(const char *cmd, int argc, char **argv, int need_recipe) {
  action *actions = calloc((size_t)argc + 1, sizeof *actions);
  const char **allow = calloc((size_t)argc + 1, sizeof *allow);
  run_opts o = {cmd, actions, 0, 0, 0, 0, NULL, 0, allow, 0, 0, NULL, NULL};
  int done, rc;
  if (actions == NULL || allow == NULL) {
    free(actions);
    free(allow);
    return ORR_EXIT_FAIL;
  }
  rc = parse(&o, argc, argv, &done);
  if (rc == ORR_EXIT_OK && !done)
    rc = orr_cli_log_setup(cmd, o.verbose, o.log_file);
  if (rc == ORR_EXIT_OK && !done) {
    if (need_recipe && o.argc == 0)
      rc = orr_cli_usage_error(cmd, "missing RECIPE");
    else if (cmd == NULL && o.argc > 0 && looks_like_command(o.argv[0]))
      rc = orr_cli_usage_error(NULL, "no command '%s'", o.argv[0]);
    else if (o.argc == 0 && o.nactions == 0)
      rc = orr_cli_interactive(argv[0]); /* plain `orrery` or `orrery -i` */
    else {
      /* As lua5.4: with neither a recipe nor a chunk (`orrery -l MOD`),
      ** the REPL comes after the libraries. */
      int chunks = 0;
      for (int i = 0; i < o.nactions; i++)
        chunks += o.actions[i].kind == 'e';
      if (o.argc == 0 && chunks == 0)
        o.interactive = 1;
      rc = run_main(&o);
    }
  }
  free(actions);
  free(allow);
  return rc;
}

int orr_cli_run(int argc, char **argv) {
  return run_with("run", argc, argv, 1);
}

int orr_cli_toplevel(int argc, char **argv) {
  return run_with(NULL, argc, argv, 0);
}

int orr_cli_interactive(char *prog) {
  char dash[] = "-";
  char *script[] = {prog, dash, NULL};
  lua_State *L;
  int rc;
  /* As lua5.4: without a terminal, stdin is a script. */
  if (!isatty(STDIN_FILENO))
    return run_with(NULL, 2, script, 0);
  if ((L = orr_cli_newstate()) == NULL)
    return ORR_EXIT_FAIL;
  rc = orr_repl_main(L);
  lua_close(L);
  return rc;
}

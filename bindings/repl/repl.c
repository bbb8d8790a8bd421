/*
** The REPL session: `orrery`, `orrery repl`, `orrery -i`. Sets up printing,
** line editing, Ctrl-C and the VM tracking of orrery.session, then turns
** the loop until Ctrl-D; on the way out it closes the VMs the session
** created, saying what becomes of each.
*/
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lua/l_orrery.h"
#include "lua/l_util.h"
#include "repl.h"

#ifndef ORR_VERSION
#define ORR_VERSION "0.0.0"
#endif

/* Under lua_pcall: require("orrery.session").start(). */
static int session_start(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "orrery.session");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "start");
  lua_call(L, 0, 0);
  return 0;
}

void orr_repl_session(lua_State *L) {
  lua_pushcfunction(L, session_start);
  lua_call(L, 0, 0);
}

/* Under lua_pcall: orrery.session.announce(on) or .close_all(). */
static int session_call(lua_State *L) {
  const char *fn = lua_tostring(L, 1);
  int on = lua_toboolean(L, 2);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "orrery.session");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, fn);
  lua_pushboolean(L, on);
  lua_call(L, 1, 0);
  return 0;
}

static void session(orr_repl *r, const char *fn, int on) {
  lua_State *L = r->L;
  lua_pushcfunction(L, orr_l_msghandler);
  lua_pushcfunction(L, session_call);
  lua_pushstring(L, fn);
  lua_pushboolean(L, on);
  if (lua_pcall(L, 2, 0, -4) != LUA_OK) {
    fprintf(stderr, "%s: %s\n", orr_cli_progname, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static int setup(lua_State *L) {
  orr_repl *r = lua_touserdata(L, 1);
  r->ctx = orr_l_ctx_get(L);
  r->loop = orr_l_loop(r->ctx);
  orr_repl_session(L);
  return 0;
}

/* Failures of background tasks and event handlers, above the prompt. */
static void report_above(void *arg, const char *text) {
  orr_repl *r = arg;
  orr_repl_write_to(r, stderr, text, strlen(text));
}

static void leave(orr_repl *r) {
  orr_l_set_report(r->ctx, NULL, NULL);
  orr_repl_unprompt(r);
  orr_interrupt_uninstall(r->L);
  orr_progress_stop(r->L, r->progress);
  r->progress = NULL;
  orr_repl_edit_close(r);
  /* From here on print writes plainly: the closing lines go to stdout. */
  orr_repl_close_print(r);
  session(r, "announce", 0);
  session(r, "close_all", 0);
  fflush(stdout);
}

static int stdin_done(void *arg) {
  orr_l_task *t = arg;
  return t->state == ORR_L_TASK_DONE || t->state == ORR_L_TASK_FAILED;
}

/* Under lua_pcall: stdin as one chunk, run as a task to its end. */
static int stdin_task(lua_State *L) {
  orr_l_task *t;
  int status = luaL_loadfile(L, NULL);
  if (status != LUA_OK)
    return lua_error(L);
  t = orr_l_spawn(L, 0);
  t->watched = 1;
  orr_l_run_until(L, stdin_done, t);
  if (orr_l_task_failed(L, -1))
    return lua_error(L);
  return 0;
}

/* `orrery -i` without a terminal: as lua5.4 does, what stdin holds is run
** (here as one script), and the session ends with it. */
static int run_stdin(lua_State *L) {
  int rc;
  lua_pushcfunction(L, stdin_task);
  rc = orr_cli_report(L, lua_pcall(L, 0, 0, 0));
  lua_pushcfunction(L, session_call);
  lua_pushliteral(L, "close_all");
  lua_pushboolean(L, 0);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK)
    lua_pop(L, 1);
  return rc;
}

int orr_repl_main(lua_State *L) {
  orr_repl *r;
  int rc = ORR_EXIT_OK;
  if (!isatty(STDIN_FILENO))
    return run_stdin(L);
  if ((r = calloc(1, sizeof *r)) == NULL)
    return ORR_EXIT_FAIL;
  r->L = L;
  r->task_ref = LUA_NOREF;
  r->on_line = orr_repl_line;
  lua_pushcfunction(L, setup);
  lua_pushlightuserdata(L, r);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    rc = orr_cli_report(L, LUA_ERRRUN);
    free(r);
    return rc;
  }
  orr_repl_open_print(r);
  if (orr_repl_edit_open(r) != 0) {
    fprintf(stderr, "%s: cannot set up line editing on this terminal\n",
            orr_cli_progname);
    orr_repl_close_print(r);
    free(r);
    return ORR_EXIT_FAIL;
  }
  orr_interrupt_install(L, orr_repl_interrupt, r);
  orr_l_set_report(r->ctx, report_above, r);
  r->progress = orr_progress_start(L, 0);
  session(r, "announce", 1);
  printf("Orrery %s (%s): Tab completes, Ctrl-C interrupts, Ctrl-D "
         "leaves\n",
         ORR_VERSION, LUA_RELEASE);
  orr_repl_prompt(r);
  while (!r->quit) {
    if (orr_l_run_until(L, orr_repl_idle, r) != 0 && r->task == NULL)
      break; /* not even stdin left to read from */
    if (r->task != NULL && !orr_repl_idle(r)) {
      /* Nothing on the loop can ever finish the chunk (tasks waiting for
      ** each other): give the prompt back, the task stays blocked. */
      fprintf(stderr, "the chunk can never finish: it waits for something "
                      "nothing will complete\n");
      luaL_unref(L, LUA_REGISTRYINDEX, r->task_ref);
      r->task_ref = LUA_NOREF;
      r->task = NULL;
      orr_progress_watch(r->progress, NULL, NULL);
      orr_repl_prompt(r);
      continue;
    }
    if (r->task != NULL) {
      orr_repl_finish(r);
      orr_repl_prompt(r);
    }
  }
  leave(r);
  free(r->chunk);
  free(r);
  return rc;
}

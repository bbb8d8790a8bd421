/*
** Progress for long waits: when the watched task has been blocked in one
** waiting call for a while (booting, waiting for the guest agent), say
** which call and where. On a terminal that is a spinner line on stderr,
** redrawn in place and erased when the wait ends; otherwise two plain
** lines, one when the wait gets long and one when it ends, so logs stay
** readable. The name and line come from the waiting coroutine's own stack,
** so no waiting call has to describe itself. Waits are told apart by the
** task's count of them, and the loop says when one ends (before the task
** runs again), so the line always names the current call and is gone
** before anything else is printed.
*/
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "term/term.h"

#define TICK_MS 100
#define TTY_AFTER_MS 1000   /* a spinner appears after this */
#define PLAIN_AFTER_MS 5000 /* a plain line after this */

struct orr_progress {
  uv_timer_t timer;
  orr_l_task *task;
  const char *hint; /* appended to the spinner ("Ctrl-C interrupts") */
  unsigned wait;    /* the task's wait being timed (its waits count); ops
                       are freed and reused, so never their address */
  int waiting;      /* a wait is being timed */
  uint64_t since;
  int tty, shown, frame;
  char what[160];
};

/* "start at recipe.lua:23": the waiting function and the first Lua line
** under it. */
static void describe(lua_State *co, char *buf, size_t size) {
  lua_Debug ar;
  const char *name = "a waiting call";
  buf[0] = '\0';
  if (lua_getstack(co, 0, &ar) && lua_getinfo(co, "n", &ar) && ar.name)
    name = ar.name;
  for (int level = 1; lua_getstack(co, level, &ar); level++) {
    if (lua_getinfo(co, "Sl", &ar) && ar.currentline > 0) {
      snprintf(buf, size, "%s at %s:%d", name, ar.short_src, ar.currentline);
      return;
    }
  }
  snprintf(buf, size, "%s", name);
}

void orr_progress_clear(orr_progress *p) {
  if (p == NULL || !p->shown)
    return;
  if (p->tty) {
    fputs("\r\033[K", stderr);
    p->shown = 0;
  }
  fflush(stderr);
}

/* The wait ended (or another began): erase the spinner, or close the
** plain line's story. */
static void wait_over(orr_progress *p, uint64_t now) {
  if (p->shown && !p->tty)
    fprintf(stderr, "%s: ... %s done after %.1f s\n", orr_cli_progname, p->what,
            (double)(now - p->since) / 1000);
  orr_progress_clear(p);
  p->shown = 0;
  p->waiting = 0;
}

/* The loop is about to resume task t, whose wait has ended: the spinner
** goes now, before t prints anything, not on the next tick. */
static void on_resume(void *arg, orr_l_task *t) {
  orr_progress *p = arg;
  if (t == p->task && p->waiting) {
    uv_update_time(p->timer.loop);
    wait_over(p, uv_now(p->timer.loop));
  }
}

static void on_tick(uv_timer_t *t) {
  static const char frames[] = "|/-\\";
  orr_progress *p = t->data;
  int waiting = p->task != NULL && p->task->waiting != NULL;
  uint64_t now = uv_now(t->loop);
  if (waiting != p->waiting || (waiting && p->task->waits != p->wait)) {
    wait_over(p, now);
    p->waiting = waiting;
    p->since = now;
    if (waiting) {
      p->wait = p->task->waits;
      if (p->task->co != NULL)
        describe(p->task->co, p->what, sizeof p->what);
    }
    return;
  }
  if (!waiting)
    return;
  if (p->tty && now - p->since >= TTY_AFTER_MS) {
    fprintf(stderr, "\r\033[K%c waiting: %s (%.0f s%s%s)",
            frames[p->frame++ % 4], p->what, (double)(now - p->since) / 1000,
            p->hint ? ", " : "", p->hint ? p->hint : "");
    fflush(stderr);
    p->shown = 1;
  } else if (!p->tty && !p->shown && now - p->since >= PLAIN_AFTER_MS) {
    fprintf(stderr, "%s: waiting: %s ...\n", orr_cli_progname, p->what);
    fflush(stderr);
    p->shown = 1;
  }
}

/* registry[&print_key]: the progress whose spinner print erases first. */
static const char print_key = 'p';

/* print, wrapped while a spinner may be on screen: other tasks printing
** during a long wait start on a clean line. */
static int l_print(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &print_key);
  orr_progress_clear(lua_touserdata(L, -1));
  lua_pop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 0);
  return 0;
}

static void wrap_print(lua_State *L, orr_progress *p) {
  lua_pushlightuserdata(L, p);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &print_key);
  lua_getglobal(L, "print");
  lua_pushcclosure(L, l_print, 1);
  lua_setglobal(L, "print");
}

orr_progress *orr_progress_start(lua_State *L, int quiet) {
  orr_progress *p;
  const char *env = getenv("ORRERY_PROGRESS");
  if (quiet || (env != NULL && strcmp(env, "0") == 0))
    return NULL;
  p = calloc(1, sizeof *p);
  if (p == NULL)
    return NULL;
  p->tty = isatty(STDERR_FILENO);
  uv_timer_init(orr_l_loop(orr_l_ctx_get(L)), &p->timer);
  orr_l_set_resume_hook(orr_l_ctx_get(L), on_resume, p);
  p->timer.data = p;
  uv_timer_start(&p->timer, on_tick, TICK_MS, TICK_MS);
  /* Progress alone must never keep the loop (and the program) alive. */
  uv_unref((uv_handle_t *)&p->timer);
  if (p->tty)
    wrap_print(L, p);
  return p;
}

void orr_progress_watch(orr_progress *p, orr_l_task *t, const char *hint) {
  if (p == NULL)
    return;
  wait_over(p, uv_now(p->timer.loop));
  p->task = t;
  p->hint = hint;
}

void orr_progress_stop(lua_State *L, orr_progress *p) {
  if (p == NULL)
    return;
  orr_progress_watch(p, NULL, NULL);
  orr_l_set_resume_hook(orr_l_ctx_get(L), NULL, NULL);
  lua_pushnil(L); /* the print wrapper now just prints */
  lua_rawsetp(L, LUA_REGISTRYINDEX, &print_key);
  uv_timer_stop(&p->timer);
  orr_cli_close_handle(L, (uv_handle_t *)&p->timer);
  free(p);
}

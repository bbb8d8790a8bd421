/*
** What a line means, as in lua5.4 (lua.c: addreturn, multiline,
** incomplete): a first line starting with '=' is "return ..."; a first
** line that compiles as "return <line>;" is an expression; otherwise the
** lines typed so far are compiled as a chunk, and a syntax error ending in
** "<eof>" means the statement continues on the next line.
**
** A complete chunk runs as an orrery task, so its waiting calls
** (vm:start(), orrery.sleep()) yield and the loop keeps running. The
** prompt comes back when the task has finished and its values are printed.
*/
#include <stdlib.h>
#include <string.h>

#include "lua/l_orrery.h"
#include "repl.h"

#define EOFMARK "<eof>"

enum { COMPILED, INCOMPLETE, SYNTAX_ERROR };

/* Adds s to the statement being typed (sep: a newline before it). */
static int append(orr_repl *r, const char *s, int sep) {
  size_t n = strlen(s), need = r->len + n + 2;
  if (need > r->cap) {
    size_t cap = need * 2;
    char *p = realloc(r->chunk, cap);
    if (p == NULL)
      return -1;
    r->chunk = p;
    r->cap = cap;
  }
  if (sep)
    r->chunk[r->len++] = '\n';
  memcpy(r->chunk + r->len, s, n + 1);
  r->len += n;
  return 0;
}

/* Pushes the compiled chunk (COMPILED) or the error message. */
static int compile(lua_State *L, orr_repl *r, int first) {
  size_t mlen;
  const char *msg;
  int status;
  if (first) {
    /* An expression prints its values: try it as one first. */
    const char *ret = lua_pushfstring(L, "return %s;", r->chunk);
    status = luaL_loadbuffer(L, ret, strlen(ret), "=stdin");
    lua_remove(L, -2);
    if (status == LUA_OK)
      return COMPILED;
    lua_pop(L, 1);
  }
  status = luaL_loadbuffer(L, r->chunk, r->len, "=stdin");
  if (status == LUA_OK)
    return COMPILED;
  msg = lua_tolstring(L, -1, &mlen);
  if (status == LUA_ERRSYNTAX && msg != NULL && mlen >= sizeof EOFMARK - 1 &&
      strcmp(msg + mlen - (sizeof EOFMARK - 1), EOFMARK) == 0) {
    lua_pop(L, 1);
    return INCOMPLETE;
  }
  return SYNTAX_ERROR;
}

typedef struct {
  orr_repl *r;
  int first;
  int outcome;
} eval_call;

/* Under orr_l_cpcall: compiles what was typed and, when it is complete,
** spawns it as the chunk's task. */
static int eval_start(lua_State *L) {
  eval_call *c = lua_touserdata(L, 1);
  orr_repl *r = c->r;
  lua_settop(L, 0);
  c->outcome = compile(L, r, c->first);
  if (c->outcome == INCOMPLETE)
    return 0;
  orr_repl_history_add(r, r->chunk); /* errors too: to fix the typo */
  r->len = 0;
  if (c->outcome == SYNTAX_ERROR) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    fflush(stderr);
    return 0;
  }
  r->task = orr_l_spawn(L, 0);
  r->task->watched = 1; /* its error is printed here, not as "task failed" */
  r->task_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

void orr_repl_line(orr_repl *r, const char *line) {
  eval_call c = {r, r->len == 0, SYNTAX_ERROR};
  if (line == NULL) {
    /* Ctrl-D: inside a statement it drops the statement; at an empty
    ** prompt it leaves. */
    fputs("\n", stdout);
    if (r->len > 0) {
      r->len = 0;
      orr_repl_prompt(r);
    } else {
      r->quit = 1;
    }
    return;
  }
  r->ctrl_c = 0;
  if (r->len == 0 && line[strspn(line, " \t")] == '\0') {
    orr_repl_prompt(r);
    return;
  }
  /* lua5.2 compatibility kept by lua5.4: "=expr" prints expr. */
  if (r->len == 0 && line[0] == '=' && append(r, "return ", 0) == 0)
    line++;
  if (append(r, line, r->len > 0 && !c.first) != 0) {
    fprintf(stderr, "orrery: out of memory\n");
    r->len = 0;
    orr_repl_prompt(r);
    return;
  }
  orr_l_cpcall(r->ctx, eval_start, &c);
  if (r->task == NULL) {
    orr_repl_prompt(r); /* more lines, or the next statement */
    return;
  }
  orr_repl_unprompt(r);
  orr_progress_watch(r->progress, r->task, "Ctrl-C interrupts");
}

int orr_repl_idle(void *arg) {
  orr_repl *r = arg;
  return r->quit || (r->task != NULL && (r->task->state == ORR_L_TASK_DONE ||
                                         r->task->state == ORR_L_TASK_FAILED));
}

void orr_repl_finish(orr_repl *r) {
  lua_State *L = r->L;
  if (r->task == NULL)
    return;
  orr_progress_watch(r->progress, NULL, NULL);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->task_ref);
  orr_repl_print_outcome(r, lua_gettop(L));
  lua_pop(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, r->task_ref);
  r->task_ref = LUA_NOREF;
  r->task = NULL;
}

void orr_repl_interrupt(void *arg, int signals, int hook_fired) {
  orr_repl *r = arg;
  if (r->task != NULL) {
    /* A busy loop was stopped by the hook already; otherwise end the wait
    ** (the call returns ECANCELED, whatever it started goes on). */
    if (!hook_fired)
      orr_interrupt_waits(r->L, r->task);
    return;
  }
  if (!r->prompting || hook_fired)
    return;
  if (!orr_repl_line_empty(r)) {
    r->ctrl_c = 0;
    orr_repl_cancel_line(r);
    return;
  }
  r->ctrl_c += signals;
  if (r->ctrl_c >= 2) {
    orr_repl_unprompt(r);
    fputs("\n", stdout);
    r->quit = 1;
    return;
  }
  orr_repl_write(r, "(Ctrl-C again or Ctrl-D to leave)\n", 34);
}

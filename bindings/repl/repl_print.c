/*
** Printing in the REPL. The global print is replaced by one that writes
** through orr_repl_write, so what tasks and event handlers print while the
** prompt waits lands above it. A chunk's values are printed as lua5.4 does
** (through the global print, tab-separated), except that tables go through
** orrery.pretty: nested, keys sorted, cycles marked.
*/
#include <string.h>

#include "repl.h"

/* registry[&print_key]: the print the REPL replaced, restored at exit. */
static const char print_key = 'p';

/* print(...) as in lbaselib.c, written above the prompt. */
static int repl_print(lua_State *L) {
  orr_repl *r = lua_touserdata(L, lua_upvalueindex(1));
  int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    size_t len;
    const char *s = luaL_tolstring(L, i, &len);
    if (i > 1)
      luaL_addchar(&b, '\t');
    luaL_addlstring(&b, s, len);
    lua_pop(L, 1);
  }
  luaL_addchar(&b, '\n');
  luaL_pushresult(&b);
  {
    size_t len;
    const char *text = lua_tolstring(L, -1, &len);
    orr_repl_write(r, text, len);
  }
  return 0;
}

static int open_print(lua_State *L) {
  orr_repl *r = lua_touserdata(L, 1);
  lua_getglobal(L, "print");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &print_key);
  lua_pushlightuserdata(L, r);
  lua_pushcclosure(L, repl_print, 1);
  lua_setglobal(L, "print");
  return 0;
}

void orr_repl_open_print(orr_repl *r) {
  orr_l_cpcall(r->ctx, open_print, r);
}

/* The REPL's print holds a pointer to the REPL: put the old one back. */
static int close_print(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &print_key);
  lua_setglobal(L, "print");
  return 0;
}

void orr_repl_close_print(orr_repl *r) {
  orr_l_cpcall(r->ctx, close_print, r);
}

/* Under lua_pcall: print(values...) with tables formatted. Stack: the
** outcome table {n = N, ...}. */
static int print_values(lua_State *L) {
  lua_Integer n;
  int first;
  lua_getfield(L, 1, "n");
  n = lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (n == 0)
    return 0; /* a statement: nothing to print, not even a newline */
  luaL_checkstack(L, (int)n + 4, "too many results to print");
  lua_getglobal(L, "require");
  lua_pushliteral(L, "orrery.pretty");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "format");
  lua_replace(L, 2); /* 2: pretty.format */
  lua_settop(L, 2);
  lua_getglobal(L, "print");
  first = lua_gettop(L) + 1;
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    if (lua_type(L, -1) == LUA_TTABLE) {
      lua_pushvalue(L, 2);
      lua_insert(L, -2);
      lua_call(L, 1, 1);
    }
  }
  lua_call(L, lua_gettop(L) - first + 1, 0);
  return 0;
}

/* lua.c's msghandler does not apply here: the task's traceback was taken
** when it failed. Its last line is the task's own bottom frame, "[C]: in
** ?", which says nothing to the user. */
static void print_error(lua_State *L, int outcome) {
  const char *tb, *tail;
  lua_getfield(L, outcome, "traceback");
  tb = lua_tostring(L, -1);
  if (tb == NULL)
    tb = "(error object is not a string)";
  tail = strstr(tb, "\n\t[C]: in ?");
  if (tail != NULL && tail[strlen("\n\t[C]: in ?")] == '\0')
    fprintf(stderr, "%.*s\n", (int)(tail - tb), tb);
  else
    fprintf(stderr, "%s\n", tb);
  fflush(stderr);
  lua_pop(L, 1);
}

void orr_repl_print_outcome(orr_repl *r, int idx) {
  lua_State *L = r->L;
  orr_l_task *t = lua_touserdata(L, idx);
  int outcome;
  fflush(stdout);
  lua_getiuservalue(L, idx, 2);
  outcome = lua_gettop(L);
  if (t->state == ORR_L_TASK_FAILED) {
    orr_l_task_retrieved(t);
    print_error(L, outcome);
  } else if (lua_type(L, outcome) == LUA_TTABLE) {
    lua_pushcfunction(L, print_values);
    lua_pushvalue(L, outcome);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
      fprintf(stderr, "error calling 'print' (%s)\n",
              lua_isstring(L, -1) ? lua_tostring(L, -1) : "no message");
      fflush(stderr);
      lua_pop(L, 1);
    }
  }
  fflush(stdout);
  lua_settop(L, outcome - 1);
}

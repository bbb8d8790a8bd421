/*
** Logging from Lua: orrery.log(level, ...), orrery.on_log(fn) and
** orrery.set_log(spec) over the engine's log (orrery/log.h).
**
** The engine has one handler; this file installs it for the state that
** last subscribed and fans records out to that state's functions, each
** under a protected call counted as a callback (a handler cannot wait).
** A record the state's own orrery.log makes is handed to the handlers on
** that very thread; any other (QMP trace from a loop callback, ...) on the
** thread the loop runs Lua on.
*/
#include <string.h>

#include "l_async.h"
#include "l_orrery.h"
#include "l_util.h"
#include "orrery/log.h"

/* Registry key of {handlers = {fn, ...}, sentinel}: the address of this. */
static const char handlers_key = 'h';
#define SENTINEL "orrery.LogHandlers"

typedef struct {
  orr_l_ctx *ctx;
  lua_State *L; /* the main state */
} sink;

static sink *installed;   /* whose handlers the engine's handler calls */
static lua_State *direct; /* a thread inside orrery.log, or NULL */

static void push_record(lua_State *L, const orr_log_record *rec) {
  lua_createtable(L, 0, 5);
  lua_pushnumber(L, (lua_Number)rec->time_us / 1e6);
  lua_setfield(L, -2, "time");
  lua_pushstring(L, orr_log_level_name(rec->level));
  lua_setfield(L, -2, "level");
  lua_pushstring(L, rec->component);
  lua_setfield(L, -2, "component");
  if (rec->vm[0] != '\0') {
    lua_pushstring(L, rec->vm);
    lua_setfield(L, -2, "vm");
  }
  lua_pushstring(L, rec->msg);
  lua_setfield(L, -2, "message");
}

/* Calls each handler with the record (light userdata at 1). */
static int fan_out(lua_State *L) {
  const orr_log_record *rec = lua_touserdata(L, 1);
  lua_Integer n;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &handlers_key) != LUA_TTABLE)
    return 0;
  lua_getfield(L, -1, "handlers"); /* 3 */
  n = luaL_len(L, 3);
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_rawgeti(L, 3, i) != LUA_TFUNCTION) {
      lua_pop(L, 1);
      continue;
    }
    push_record(L, rec);
    orr_l_pcall(orr_l_ctx_get(L), L, 1, "log handler");
  }
  return 0;
}

static void on_record(void *arg, const orr_log_record *rec) {
  sink *s = arg;
  if (s != installed || orr_l_closing(s->ctx))
    return;
  if (direct != NULL) {
    if (!lua_checkstack(direct, 3))
      return;
    lua_pushcfunction(direct, fan_out);
    lua_pushlightuserdata(direct, (void *)rec);
    orr_l_pcall(s->ctx, direct, 1, "log handler");
    return;
  }
  orr_l_cpcall(s->ctx, fan_out, (void *)rec);
}

static int sentinel_gc(lua_State *L) {
  sink *s = luaL_checkudata(L, 1, SENTINEL);
  if (installed == s) {
    orr_log_set_handler(NULL, NULL, 1);
    installed = NULL;
  }
  return 0;
}

/* The handlers table of L's state, created (and the sentinel with it) on
** first use; pushed. */
static void push_state(lua_State *L) {
  sink *s;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &handlers_key) == LUA_TTABLE)
    return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 2);
  lua_newtable(L);
  lua_setfield(L, -2, "handlers");
  s = lua_newuserdatauv(L, sizeof *s, 0);
  s->ctx = orr_l_ctx_get(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  s->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  if (luaL_newmetatable(L, SENTINEL)) {
    lua_pushcfunction(L, sentinel_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, "sentinel");
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &handlers_key);
}

static int level_arg(lua_State *L, int idx) {
  const char *name = luaL_checkstring(L, idx);
  int lv = orr_log_level_parse(name);
  if (lv <= ORR_LOG_OFF)
    return luaL_error(L,
                      "orrery.log: unknown level '%s' (expected error, warn, "
                      "info, debug or trace)",
                      name);
  return lv;
}

/* orrery.log(level, ...): the values as print writes them, tab-separated,
** from component "lua". */
static int l_log(lua_State *L) {
  int lv = level_arg(L, 1), n = lua_gettop(L);
  luaL_Buffer b;
  lua_State *was;
  if (!orr_log_enabled(lv, "lua"))
    return 0;
  luaL_buffinit(L, &b);
  for (int i = 2; i <= n; i++) {
    size_t len;
    const char *s = luaL_tolstring(L, i, &len);
    if (i > 2)
      luaL_addchar(&b, '\t');
    luaL_addvalue(&b);
    (void)s;
  }
  luaL_pushresult(&b);
  was = direct;
  direct = L;
  orr_log(lv, "lua", "", "%s", lua_tostring(L, -1));
  direct = was;
  return 0;
}

static int unsubscribe(lua_State *L) {
  lua_Integer n;
  push_state(L);
  lua_getfield(L, -1, "handlers");
  n = luaL_len(L, -1);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    if (lua_rawequal(L, -1, lua_upvalueindex(1))) {
      lua_pop(L, 1);
      for (; i < n; i++) {
        lua_rawgeti(L, -1, i + 1);
        lua_rawseti(L, -2, i);
      }
      lua_pushnil(L);
      lua_rawseti(L, -2, n);
      break;
    }
    lua_pop(L, 1);
  }
  return 0;
}

/* orrery.on_log(fn) -> unsubscribe function. fn({time, level, component,
** vm, message}) gets every record the configuration wants (the lines still
** go to stderr or the log file). */
static int l_on_log(lua_State *L) {
  sink *s;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  push_state(L); /* 2 */
  lua_getfield(L, 2, "handlers");
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, luaL_len(L, -2) + 1);
  lua_getfield(L, 2, "sentinel");
  s = lua_touserdata(L, -1);
  installed = s;
  orr_log_set_handler(on_record, s, 1);
  lua_pushvalue(L, 1);
  lua_pushcclosure(L, unsubscribe, 1);
  return 1;
}

/* orrery.set_log(spec): as ORRERY_LOG ("info", "qmp=trace,warn"). */
static int l_set_log(lua_State *L) {
  orr_error e = {0, ""};
  if (orr_log_configure(luaL_checkstring(L, 1), &e) != 0)
    return luaL_error(L, "orrery.set_log: %s", e.msg);
  return 0;
}

const luaL_Reg orr_l_log_funcs[] = {
    {"log", l_log},
    {"on_log", l_on_log},
    {"set_log", l_set_log},
    {NULL, NULL},
};

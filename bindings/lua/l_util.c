#include <math.h>
#include <stdio.h>
#include <string.h>

#include "l_util.h"
#include "orrery/path.h"

/* Deeper than any document; stops a cyclic table. */
#define MAX_DEPTH 32

static json_t *tojson(lua_State *L, int idx, const orr_path *at, int depth,
                      char *err, size_t errlen);

static int is_sequence(lua_State *L, int idx, size_t *n_out) {
  size_t count = 0;
  lua_Integer maxkey = 0;
  int seq = 1;
  /* Keys exactly 1..n put t[1] in the table, so its length is not 0: a
  ** table of named fields is known without a pass over it. */
  if (lua_rawlen(L, idx) == 0) {
    *n_out = 0;
    return 0;
  }
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    count++;
    if (lua_type(L, -1) == LUA_TNUMBER && lua_isinteger(L, -1) &&
        lua_tointeger(L, -1) >= 1) {
      if (lua_tointeger(L, -1) > maxkey)
        maxkey = lua_tointeger(L, -1);
    } else {
      seq = 0;
    }
  }
  *n_out = count;
  return count > 0 && seq && (size_t)maxkey == count;
}

static json_t *table_tojson(lua_State *L, int idx, const orr_path *at,
                            int depth, char *err, size_t errlen) {
  size_t n;
  char path[512];
  json_t *res;
  if (depth > MAX_DEPTH) {
    snprintf(err, errlen, "%s is nested too deeply (a cycle?)",
             orr_path_text(at, path, sizeof path));
    return NULL;
  }
  luaL_checkstack(L, 4, "orrery: table too deep");
  if (is_sequence(L, idx, &n)) {
    res = json_array();
    for (size_t i = 1; i <= n; i++) {
      json_t *v;
      orr_path sub = {at, NULL, i};
      lua_geti(L, idx, (lua_Integer)i);
      v = tojson(L, lua_gettop(L), &sub, depth + 1, err, errlen);
      lua_pop(L, 1);
      if (v == NULL) {
        json_decref(res);
        return NULL;
      }
      json_array_append_new(res, v);
    }
    return res;
  }
  res = json_object();
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    char key[64];
    const char *k;
    json_t *v;
    if (lua_type(L, -2) == LUA_TSTRING) {
      k = lua_tostring(L, -2);
    } else if (lua_type(L, -2) == LUA_TNUMBER && lua_isinteger(L, -2)) {
      snprintf(key, sizeof key, "%lld", (long long)lua_tointeger(L, -2));
      k = key;
    } else {
      snprintf(err, errlen, "%s has a %s key; keys must be strings",
               orr_path_text(at, path, sizeof path), luaL_typename(L, -2));
      lua_pop(L, 2);
      json_decref(res);
      return NULL;
    }
    orr_path sub = {at, k, 0};
    v = tojson(L, lua_gettop(L), &sub, depth + 1, err, errlen);
    if (v == NULL) {
      lua_pop(L, 2);
      json_decref(res);
      return NULL;
    }
    json_object_set_new(res, k, v);
    lua_pop(L, 1);
  }
  return res;
}

static json_t *tojson(lua_State *L, int idx, const orr_path *at, int depth,
                      char *err, size_t errlen) {
  size_t len;
  const char *s;
  char path[512];
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    return json_null();
  case LUA_TBOOLEAN:
    return json_boolean(lua_toboolean(L, idx));
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx))
      return json_integer(lua_tointeger(L, idx));
    if (!isfinite(lua_tonumber(L, idx))) {
      snprintf(err, errlen, "%s must be a finite number",
               orr_path_text(at, path, sizeof path));
      return NULL;
    }
    return json_real(lua_tonumber(L, idx));
  case LUA_TSTRING:
    s = lua_tolstring(L, idx, &len);
    return json_stringn(s, len);
  case LUA_TTABLE:
    return table_tojson(L, idx, at, depth, err, errlen);
  default:
    orr_path_text(at, path, sizeof path);
    snprintf(err, errlen,
             "%s must be a table, string, number or boolean, "
             "got a %s",
             path[0] ? path : "value", luaL_typename(L, idx));
    return NULL;
  }
}

json_t *orr_l_tojson(lua_State *L, int idx, const char *path, char *err,
                     size_t errlen) {
  orr_path top = {NULL, path, 0};
  json_t *v =
      tojson(L, lua_absindex(L, idx), path[0] ? &top : NULL, 0, err, errlen);
  if (v != NULL && json_is_null(v)) {
    snprintf(err, errlen, "%s is required", path[0] ? path : "a value");
    return NULL;
  }
  /* Invalid UTF-8 makes Jansson return NULL without a message. */
  if (v == NULL && err[0] == '\0')
    snprintf(err, errlen, "%s holds a string that is not UTF-8",
             path[0] ? path : "value");
  return v;
}

void orr_l_pushjson(lua_State *L, const json_t *v) {
  const char *key;
  json_t *val;
  size_t i;
  luaL_checkstack(L, 3, "orrery: document too deep");
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    lua_createtable(L, 0, (int)json_object_size(v));
    json_object_foreach((json_t *)v, key, val) {
      if (json_is_null(val))
        continue;
      orr_l_pushjson(L, val);
      lua_setfield(L, -2, key);
    }
    break;
  case JSON_ARRAY:
    lua_createtable(L, (int)json_array_size(v), 0);
    json_array_foreach(v, i, val) {
      orr_l_pushjson(L, val);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    break;
  case JSON_STRING:
    lua_pushlstring(L, json_string_value(v), json_string_length(v));
    break;
  case JSON_INTEGER:
    lua_pushinteger(L, (lua_Integer)json_integer_value(v));
    break;
  case JSON_REAL:
    lua_pushnumber(L, json_real_value(v));
    break;
  case JSON_TRUE:
  case JSON_FALSE:
    lua_pushboolean(L, json_is_true(v));
    break;
  case JSON_NULL:
    lua_pushnil(L);
    break;
  }
}

int orr_l_raise(lua_State *L, const orr_error *e) {
  luaL_where(L, 1); /* the Lua line that called us */
  lua_pushstring(L, e->msg);
  lua_concat(L, 2);
  return lua_error(L);
}

int orr_l_fail(lua_State *L, const orr_error *e) {
  luaL_pushfail(L);
  lua_pushfstring(L, "%s: %s", orr_err_name(e->code), e->msg);
  lua_pushstring(L, orr_err_name(e->code));
  return 3;
}

json_t *orr_l_checkjson(lua_State *L, int idx, const char *op) {
  char err[512] = "";
  json_t *v;
  if (lua_type(L, idx) != LUA_TTABLE) {
    orr_error e;
    orr_error_set(&e, ORR_EINVAL, "%s: expected a table of settings, got %s",
                  op, lua_isnone(L, idx) ? "no value" : luaL_typename(L, idx));
    orr_l_raise(L, &e);
  }
  v = orr_l_tojson(L, idx, "", err, sizeof err);
  if (v == NULL) {
    orr_error e;
    orr_error_set(&e, ORR_EINVAL, "%s: %s", op, err);
    orr_l_raise(L, &e);
  }
  return v;
}

int orr_l_msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1;
    msg =
        lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

void orr_l_newclass(lua_State *L, const char *name, const luaL_Reg *meta,
                    const luaL_Reg *methods) {
  luaL_newmetatable(L, name);
  luaL_setfuncs(L, meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

void orr_l_weak_registry(lua_State *L, const void *key, const char *mode) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) != LUA_TTABLE) {
    lua_newtable(L);
    lua_pushstring(L, mode);
    lua_setfield(L, -2, "__mode");
    lua_pushvalue(L, -1);
    lua_setmetatable(L, -2); /* the table is its own metatable */
    lua_rawsetp(L, LUA_REGISTRYINDEX, key);
  }
  lua_pop(L, 1);
}

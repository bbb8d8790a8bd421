/*
** orrery.kubevirt: KubeVirt's v1 schema as compiled into the engine
** (orrery/kubevirt.h), for recipes and specs that check what the kubevirt
** backend makes or would send:
**   orrery.kubevirt.check(definition, value[, where[, pointer]])
**   orrery.kubevirt.check_request(request[, pointer])
**     -> true | nil, msg, code
**   orrery.kubevirt.schema -> {repository, file, version, commit, ...}
** value and request are tables or JSON text (text keeps {} and [] apart,
** which a Lua table cannot); pointer (RFC 6901) picks the value to check
** inside the text: check(def, plan_output, "manifest",
** "/vms/0/kubevirt/manifest").
*/
#include <stdlib.h>
#include <string.h>

#include "l_orrery.h"
#include "l_util.h"
#include "orrery/kubevirt.h"

/* The JSON value at idx: text parsed, or a table converted; raises for
** anything else or bad text. New reference. */
static json_t *json_arg(lua_State *L, int idx, const char *op) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t len;
    const char *text = lua_tolstring(L, idx, &len);
    json_error_t jerr;
    json_t *v = json_loadb(text, len, JSON_DECODE_ANY, &jerr);
    if (v == NULL)
      luaL_error(L, "%s: not valid JSON: %s (line %d)", op, jerr.text,
                 jerr.line);
    return v;
  }
  if (lua_istable(L, idx))
    return orr_l_checkjson(L, idx, op);
  luaL_typeerror(L, idx, "table or JSON text");
  return NULL;
}

/* The value at an RFC 6901 pointer in v (borrowed), or NULL. */
static json_t *at_pointer(json_t *v, const char *ptr) {
  const char *p = ptr;
  while (v != NULL && *p != '\0') {
    char tok[256];
    size_t n = 0;
    if (*p++ != '/')
      return NULL;
    for (; *p && *p != '/' && n + 1 < sizeof tok; p++)
      tok[n++] = *p == '~' && p[1] == '1'   ? (p++, '/')
                 : *p == '~' && p[1] == '0' ? (p++, '~')
                                            : *p;
    tok[n] = '\0';
    if (json_is_array(v)) {
      char *end;
      long i = strtol(tok, &end, 10);
      v = *end == '\0' && n > 0 && i >= 0 ? json_array_get(v, (size_t)i) : NULL;
    } else {
      v = json_object_get(v, tok);
    }
  }
  return v;
}

/* Checks the value at ptr in v (taken) with check; raises when there is
** none. Returns the Lua results. */
static int check_at(lua_State *L, json_t *v, const char *ptr, const char *def,
                    const char *where) {
  json_t *x = at_pointer(v, ptr);
  orr_error e = {0, ""};
  int rc;
  if (x == NULL) {
    json_decref(v);
    return luaL_error(L, "kubevirt: nothing at pointer \"%s\"", ptr);
  }
  rc = def ? orr_kubevirt_check(def, x, where, &e)
           : orr_kubevirt_check_request(x, &e);
  json_decref(v);
  if (rc != 0)
    return orr_l_fail(L, &e);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_check(lua_State *L) {
  const char *def = luaL_checkstring(L, 1);
  const char *where = luaL_optstring(L, 3, "value");
  const char *ptr = luaL_optstring(L, 4, "");
  return check_at(L, json_arg(L, 2, "kubevirt.check"), ptr, def, where);
}

static int l_check_request(lua_State *L) {
  const char *ptr = luaL_optstring(L, 2, "");
  return check_at(L, json_arg(L, 1, "kubevirt.check_request"), ptr, NULL, NULL);
}

void orr_l_push_kubevirt(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"check", l_check}, {"check_request", l_check_request}, {NULL, NULL}};
  const json_t *src = orr_kubevirt_schema_source();
  luaL_newlib(L, funcs);
  if (src != NULL)
    orr_l_pushjson(L, src);
  else
    lua_newtable(L);
  lua_setfield(L, -2, "schema");
}

/*
** Shared glue for the Lua bindings: table <-> JSON conversion and the two
** error channels (raise for programmer errors, nil+message+code for
** operational failures).
*/
#ifndef ORR_L_UTIL_H
#define ORR_L_UTIL_H

#include <jansson.h>
#include <lauxlib.h>
#include <lua.h>

#include "orrery/error.h"

/*
** Converts the Lua value at idx to JSON. Tables with keys 1..n become
** arrays, other tables objects (integer keys turn into decimal strings).
** On failure returns NULL and writes a message naming the path into err.
*/
json_t *orr_l_tojson(lua_State *L, int idx, const char *path, char *err,
                     size_t errlen);

/* Pushes a JSON value as Lua (objects and arrays as tables). */
void orr_l_pushjson(lua_State *L, const json_t *v);

/* Raises e->msg as a Lua error at the calling Lua line, as luaL_error does. */
int orr_l_raise(lua_State *L, const orr_error *e);

/* Pushes fail, "ECODE: message", "ECODE" and returns 3 (luv's convention). */
int orr_l_fail(lua_State *L, const orr_error *e);

/* Like orr_l_tojson but raises "<op>: <message>" on failure. */
json_t *orr_l_checkjson(lua_State *L, int idx, const char *op);

/* Message handler for lua_pcall: the message (or __tostring of an error
** object) with a traceback below it. */
int orr_l_msghandler(lua_State *L);

/* Registers a userdata type: metatable `name` with the meta functions and
** a method table as __index (set __index to NULL in meta). */
void orr_l_newclass(lua_State *L, const char *name, const luaL_Reg *meta,
                    const luaL_Reg *methods);

/* Makes registry[key] a weak table (mode "k" or "v") unless it exists. */
void orr_l_weak_registry(lua_State *L, const void *key, const char *mode);

#endif

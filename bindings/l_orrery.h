/* The pieces of the orrery Lua module, one file per userdata type. */
#ifndef ORR_L_ORRERY_H
#define ORR_L_ORRERY_H

#include <lauxlib.h>
#include <lua.h>

#include "orrery/builder.h"

#define ORR_L_BUILDER "orrery.Builder"

/* The module opener: luaopen_orrery_core and its alias luaopen_orrery. */
int luaopen_orrery_core(lua_State *L);
int luaopen_orrery(lua_State *L);

void orr_l_open_builder(lua_State *L);
extern const luaL_Reg orr_l_builder_funcs[];
orr_builder *orr_l_checkbuilder(lua_State *L, int idx);
orr_builder *orr_l_testbuilder(lua_State *L, int idx);
void orr_l_pushbuilder(lua_State *L, orr_builder *b);

#endif

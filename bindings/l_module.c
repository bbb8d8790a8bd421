/*
** The orrery module table. Loadable as require("orrery.core") from
** build/orrery.so (the all-in-one C loader finds luaopen_orrery_core
** there), which scripts/lib/orrery/init.lua wraps; luaopen_orrery is the
** same table for a plain cpath-only require("orrery").
*/
#include "l_orrery.h"
#include "orrery/document.h"

#ifndef ORR_VERSION
#define ORR_VERSION "0.0.0"
#endif

int luaopen_orrery_core(lua_State *L) {
  luaL_checkversion(L);
  orr_l_open_builder(L);
  orr_l_open_task(L);
  orr_l_open_vm(L);
  orr_l_open_guest(L);
  lua_newtable(L);
  luaL_setfuncs(L, orr_l_builder_funcs, 0);
  luaL_setfuncs(L, orr_l_task_funcs, 0);
  luaL_setfuncs(L, orr_l_vm_funcs, 0);
  orr_l_push_guest_methods(L);
  lua_setfield(L, -2, "Guest");
  lua_pushliteral(L, ORR_VERSION);
  lua_setfield(L, -2, "version");
  /* Where this build put the default guest (scripts/lib's default_guest). */
  lua_pushliteral(L, ORR_BUILD_DIR);
  lua_setfield(L, -2, "build_dir");
  /* HCS's four fixed controller GUIDs, indexed 0..3 like the API. */
  lua_createtable(L, 0, ORR_SCSI_CONTROLLERS);
  for (int i = 0; i < ORR_SCSI_CONTROLLERS; i++) {
    lua_pushstring(L, orr_scsi_controller_guid(i));
    lua_rawseti(L, -2, i);
  }
  lua_setfield(L, -2, "scsi_controller_guids");
  return 1;
}

int luaopen_orrery(lua_State *L) {
  return luaopen_orrery_core(L);
}

/*
** The orrery module table. orrery.so provides it as require("orrery.core")
** (the all-in-one C loader finds luaopen_orrery_core there), which the Lua
** library's orrery/init.lua wraps. A require("orrery") that reaches
** orrery.so itself has found the C half without the Lua half, and says so
** instead of handing out a core without the guest waits.
*/
#include <stdio.h>
#include <unistd.h>

#include "l_orrery.h"
#include "l_util.h"
#include "orrery/document.h"
#include "orrery/guest_image.h"
#include "orrery/install.h"
#include "orrery/log.h"

#ifndef ORR_VERSION
#define ORR_VERSION "0.0.0"
#endif

/* orrery.default_guest() -> the {KernelFilePath, InitRdPath, KernelCmdLine}
** of set_linux_kernel_direct_boot for the default guest (its manifest's). */
static int l_default_guest(lua_State *L) {
  orr_guest_image img;
  orr_error e = {0, ""};
  if (orr_guest_image_default(&img, &e) != 0) {
    orr_error_prefix(&e, "default_guest");
    return orr_l_raise(L, &e);
  }
  lua_createtable(L, 0, 3);
  lua_pushstring(L, img.kernel);
  lua_setfield(L, -2, "KernelFilePath");
  lua_pushstring(L, img.initrd);
  lua_setfield(L, -2, "InitRdPath");
  lua_pushstring(L, img.cmdline);
  lua_setfield(L, -2, "KernelCmdLine");
  return 1;
}

ORR_L_EXPORT int luaopen_orrery_core(lua_State *L) {
  char dir[1024];
  luaL_checkversion(L);
  orr_log_init_env();
  orr_l_open_builder(L);
  orr_l_open_task(L);
  orr_l_open_vm(L);
  orr_l_open_guest(L);
  orr_l_open_stream(L);
  lua_newtable(L);
  luaL_setfuncs(L, orr_l_builder_funcs, 0);
  luaL_setfuncs(L, orr_l_task_funcs, 0);
  luaL_setfuncs(L, orr_l_vm_funcs, 0);
  luaL_setfuncs(L, orr_l_log_funcs, 0);
  lua_pushcfunction(L, l_default_guest);
  lua_setfield(L, -2, "default_guest");
  orr_l_push_guest_methods(L);
  lua_setfield(L, -2, "Guest");
  orr_l_push_kubevirt(L);
  lua_setfield(L, -2, "kubevirt");
  orr_l_push_template_funcs(L);
  lua_setfield(L, -2, "_template");
  orr_l_open_console(L);
  lua_setfield(L, -2, "VM");
  lua_pushliteral(L, ORR_VERSION);
  lua_setfield(L, -2, "version");
  /* Loaded from a build tree: where it is (for specs); nil installed. */
  if (orr_install_dir(ORR_DIR_BUILD, dir, sizeof dir) == 0) {
    lua_pushstring(L, dir);
    lua_setfield(L, -2, "build_dir");
  }
  /* HCS's four fixed controller GUIDs, indexed 0..3 like the API. */
  lua_createtable(L, 0, ORR_SCSI_CONTROLLERS);
  for (int i = 0; i < ORR_SCSI_CONTROLLERS; i++) {
    lua_pushstring(L, orr_scsi_controller_guid(i));
    lua_rawseti(L, -2, i);
  }
  lua_setfield(L, -2, "scsi_controller_guids");
  return 1;
}

ORR_L_EXPORT int luaopen_orrery(lua_State *L) {
  char dir[1024], init[1100];
  const char *where = "";
  if (orr_install_dir(ORR_DIR_LUA, dir, sizeof dir) == 0) {
    snprintf(init, sizeof init, "%s/orrery/init.lua", dir);
    if (access(init, R_OK) == 0)
      where = lua_pushfstring(L,
                              " It is in %s: add \"%s/?.lua;%s/?/init.lua\" "
                              "to LUA_PATH (busted: --lpath).",
                              dir, dir, dir);
  }
  if (where[0] == '\0')
    where = " Install the lua-orrery package (or `cmake --install`), or in "
            "a source tree add scripts/lib/?.lua;scripts/lib/?/init.lua to "
            "LUA_PATH (busted: --lpath).";
  return luaL_error(L,
                    "require(\"orrery\") found only the C core (orrery.so): "
                    "its Lua library, orrery/init.lua, is not on "
                    "package.path, and without it the guest waits and "
                    "helpers are missing.%s",
                    where);
}

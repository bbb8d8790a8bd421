/*
** A stand-in for the lua5.4 interpreter, linked with ASan and UBSan, for the
** sanitizer pass (scripts/test-sanitize.sh puts it first on PATH as
** lua5.4, which is what busted re-executes itself with).
**
** Why not LD_PRELOAD=libasan.so into stock lua5.4: the preload is inherited
** by every process the specs start (sh, pgrep, coreutils, QEMU), and
** uninstrumented programs do not all survive it: pgrep from procps hangs
** for ever in a futex under the preloaded runtime. Linking the runtime into
** the interpreter itself puts it first in this process only; the orrery.so
** that busted loads resolves the Lua API from liblua5.4 as with stock
** lua5.4, and children start clean.
**
** It understands what the suite uses: `lua5.4 [-e CODE]... [--] [SCRIPT
** [ARGS...]]`, with `arg` set as lua5.4 sets it. Any other option hands
** the command line to the real interpreter unchanged (unsanitized, and said
** so on stderr) rather than guess.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#ifndef REAL_LUA
#define REAL_LUA "/usr/bin/lua5.4"
#endif

static const char *progname = "lua5.4";

/*
** lua_close() unloads C modules; LeakSanitizer reports at exit, after that,
** and cannot name functions of an unmapped orrery.so ("<unknown module>").
** This definition takes the place of libc's for liblua5.4, so modules stay
** mapped until the process ends, as they would at exit anyway.
*/
int dlclose(void *handle);
int dlclose(void *handle) {
  (void)handle;
  return 0;
}

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL)
    msg =
        lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Runs the function on top with n arguments below it; reports an error. */
static int call(lua_State *L, int nargs) {
  int base = lua_gettop(L) - nargs, status;
  lua_pushcfunction(L, traceback);
  lua_insert(L, base);
  status = lua_pcall(L, nargs, 0, base);
  lua_remove(L, base);
  if (status != LUA_OK) {
    fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  return status;
}

int main(int argc, char **argv) {
  lua_State *L;
  int i = 1, script, status = LUA_OK;

  for (int j = 1; j < argc && argv[j][0] == '-'; j++) {
    if (strcmp(argv[j], "--") == 0)
      break;
    if (strcmp(argv[j], "-e") == 0 && j + 1 < argc) {
      j++;
      continue;
    }
    fprintf(stderr,
            "%s (sanitizer stand-in): option %s is not handled "
            "here; running %s unsanitized\n",
            progname, argv[j], REAL_LUA);
    execv(REAL_LUA, argv);
    perror(REAL_LUA);
    return 1;
  }

  L = luaL_newstate();
  if (L == NULL)
    return 1;
  luaL_openlibs(L);

  /* Where the script is: the first argument after the options. */
  for (script = 1; script < argc && argv[script][0] == '-'; script++) {
    if (strcmp(argv[script], "--") == 0) {
      script++;
      break;
    }
    script++; /* -e CODE */
  }

  /* arg[0] is the script, negative indices the interpreter and options. */
  lua_createtable(L, argc - script > 0 ? argc - script : 0, script + 1);
  for (int j = 0; j < argc; j++) {
    lua_pushstring(L, argv[j]);
    lua_rawseti(L, -2, j - script);
  }
  lua_setglobal(L, "arg");

  while (status == LUA_OK && i < script) {
    if (strcmp(argv[i], "-e") == 0) {
      status = luaL_loadbuffer(L, argv[i + 1], strlen(argv[i + 1]),
                               "=(command line)");
      if (status == LUA_OK)
        status = call(L, 0);
      else {
        fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
        lua_pop(L, 1);
      }
      i += 2;
    } else {
      i++; /* -- */
    }
  }
  if (status == LUA_OK && script < argc) {
    status = luaL_loadfile(L, argv[script]);
    if (status == LUA_OK) {
      for (int j = script + 1; j < argc; j++)
        lua_pushstring(L, argv[j]);
      status = call(L, argc - script - 1);
    } else {
      fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  }
  /* As lua5.4 does: finalizers run, so the engine tears down and anything
  ** it failed to free shows up as a leak. */
  lua_close(L);
  return status == LUA_OK ? EXIT_SUCCESS : EXIT_FAILURE;
}

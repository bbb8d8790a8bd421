/* What the subcommands share: the Lua state, loading recipes, reporting. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <lualib.h>

#include "cli.h"
#include "l_orrery.h"
#include "l_util.h"
#include "orrery/install.h"

const char *orr_cli_progname = "orrery";

int orr_cli_is_help(const char *arg) {
  return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

int orr_cli_usage_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s%s%s: ", orr_cli_progname, cmd ? " " : "", cmd ? cmd : "");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n(see `%s%s%s --help`)\n", orr_cli_progname, cmd ? " " : "",
          cmd ? cmd : "");
  return ORR_EXIT_USAGE;
}

/* package.path reaches the Lua library that goes with this executable's
** built-in C core ($ORRERY_LUA_LIB overrides where), and orrery.core is
** preloaded. */
static void setup_paths(lua_State *L) {
  char dir[1024];
  const char *lib = getenv("ORRERY_LUA_LIB");
  if ((lib == NULL || lib[0] == '\0') &&
      orr_install_dir(ORR_DIR_LUA, dir, sizeof dir) == 0)
    lib = dir;
  lua_getglobal(L, "package");
  if (lib != NULL && lib[0] != '\0') {
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", lib, lib,
                    lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_orrery_core);
  lua_setfield(L, -2, "orrery.core");
  lua_pop(L, 1);
}

/* Under lua_pcall: the global orrery, everywhere user code runs (recipes,
** -e chunks, the REPL, a script on stdin), as `lua5.4 -l orrery` would. */
static int set_global(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "orrery");
  lua_call(L, 1, 1);
  lua_setglobal(L, "orrery");
  return 0;
}

lua_State *orr_cli_newstate(void) {
  lua_State *L = luaL_newstate();
  if (L == NULL) {
    fprintf(stderr, "%s: cannot create a Lua state: out of memory\n",
            orr_cli_progname);
    return NULL;
  }
  luaL_openlibs(L);
  setup_paths(L);
  lua_pushcfunction(L, set_global);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    orr_cli_report(L, LUA_ERRRUN);
    lua_close(L);
    return NULL;
  }
  return L;
}

int orr_cli_report(lua_State *L, int status) {
  const char *msg;
  if (status == LUA_OK)
    return ORR_EXIT_OK;
  msg = lua_tostring(L, -1);
  fprintf(stderr, "%s: %s\n", orr_cli_progname,
          msg ? msg : "(error object is not a string)");
  fflush(stderr);
  lua_pop(L, 1);
  return ORR_EXIT_FAIL;
}

int orr_cli_load_recipe(lua_State *L, int argc, char **argv) {
  const char *file = strcmp(argv[0], "-") == 0 ? NULL : argv[0];
  int status;
  lua_createtable(L, argc - 1, 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  lua_setglobal(L, "arg");
  status = luaL_loadfile(L, file);
  if (status != LUA_OK)
    return status;
  luaL_checkstack(L, argc, "too many recipe arguments");
  for (int i = 1; i < argc; i++)
    lua_pushstring(L, argv[i]);
  return LUA_OK;
}

int orr_cli_dochunk(lua_State *L, const char *chunk, const char *name) {
  int base, status;
  lua_pushcfunction(L, orr_l_msghandler);
  base = lua_gettop(L);
  status = luaL_loadbuffer(L, chunk, strlen(chunk), name);
  if (status == LUA_OK)
    status = lua_pcall(L, 0, 0, base);
  lua_remove(L, base);
  return status;
}

static void on_closed(uv_handle_t *h) {
  *(int *)h->data = 1;
}

static int is_set(void *arg) {
  return *(int *)arg;
}

void orr_cli_close_handle(lua_State *L, uv_handle_t *h) {
  int closed = 0;
  if (uv_is_closing(h))
    return;
  h->data = &closed;
  uv_close(h, on_closed);
  orr_l_run_until(L, is_set, &closed);
}

int orr_cli_version(int argc, char **argv) {
  int json = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0) {
      json = 1;
    } else if (orr_cli_is_help(argv[i])) {
      printf("usage: %s version [--json]\n\n"
             "Prints the versions of orrery, Lua, libuv and Jansson.\n\n"
             "exit codes: 0 printed, 2 usage error\n",
             orr_cli_progname);
      return ORR_EXIT_OK;
    } else {
      return orr_cli_usage_error("version", "unknown argument %s", argv[i]);
    }
  }
  if (json) {
    json_t *v = json_pack("{s:s, s:s, s:s, s:s}", "orrery", ORR_VERSION, "lua",
                          LUA_RELEASE, "libuv", uv_version_string(), "jansson",
                          JANSSON_VERSION);
    char *text = json_dumps(v, JSON_INDENT(2));
    printf("%s\n", text);
    free(text);
    json_decref(v);
  } else {
    printf("orrery %s (%s, libuv %s, Jansson %s)\n", ORR_VERSION, LUA_RELEASE,
           uv_version_string(), JANSSON_VERSION);
  }
  return ORR_EXIT_OK;
}

/* What the subcommands share: the Lua state, loading recipes, reporting. */
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <lualib.h>

#include "cli.h"
#include "lua/l_orrery.h"
#include "lua/l_util.h"
#include "orrery/install.h"

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

int orr_cli_bad_option(const char *cmd, char **argv,
                       const struct option *longopts) {
  const char *arg = argv[optind - 1];
  if (strncmp(arg, "--", 2) == 0) {
    size_t n = strcspn(arg + 2, "=");
    for (const struct option *o = longopts; o->name != NULL; o++)
      if (strlen(o->name) == n && strncmp(o->name, arg + 2, n) == 0)
        return orr_cli_usage_error(cmd, "option --%s takes no argument",
                                   o->name);
    return orr_cli_usage_error(cmd, "unknown option %.*s", (int)n + 2, arg);
  }
  return orr_cli_usage_error(cmd, "unknown option -%c", optopt);
}

int orr_cli_parse_flags(const char *cmd, int argc, char **argv,
                        const orr_cli_flag *flags, const char *help, int *done,
                        int *first) {
  struct option longopts[ORR_CLI_MAX_FLAGS + 2];
  int n = 0, c;
  *done = 0;
  for (; flags[n].name != NULL && n < ORR_CLI_MAX_FLAGS; n++)
    longopts[n] = (struct option){flags[n].name, no_argument, NULL, n + 1};
  longopts[n] = (struct option){"help", no_argument, NULL, 'h'};
  longopts[n + 1] = (struct option){NULL, 0, NULL, 0};
  optind = 0;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
    if (c == 'h') {
      printf(help, orr_cli_progname, orr_cli_progname);
      *done = 1;
      return ORR_EXIT_OK;
    }
    if (c < 1 || c > n)
      return orr_cli_bad_option(cmd, argv, longopts);
    *flags[c - 1].flag = 1;
  }
  *first = optind;
  return ORR_EXIT_OK;
}

/* package.path reaches the Lua library that goes with this executable's
** built-in C core ($ORRERY_LUA_LIB overrides where), and orrery.core is
** preloaded. Returns where that library is (in dir, or the variable). */
static const char *setup_paths(lua_State *L, char *dir, size_t size) {
  const char *lib = getenv("ORRERY_LUA_LIB");
  if ((lib == NULL || lib[0] == '\0') &&
      orr_install_dir(ORR_DIR_LUA, dir, size) == 0)
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
  return lib != NULL && lib[0] != '\0' ? lib : "package.path";
}

/* Under lua_pcall: the global orrery, everywhere user code runs (recipes,
** -e chunks, the REPL, a script on stdin), as `lua5.4 -l orrery` would. A
** missing or broken Lua library (a partial install) says so. */
static int set_global(lua_State *L) {
  const char *lib = lua_tostring(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "orrery");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK)
    return luaL_error(L,
                      "the Lua library that goes with this executable "
                      "(orrery/init.lua in %s) cannot be loaded; install "
                      "the lua-orrery package or set ORRERY_LUA_LIB:\n%s",
                      lib, lua_tostring(L, -1));
  lua_setglobal(L, "orrery");
  return 0;
}

lua_State *orr_cli_newstate(void) {
  char dir[1024];
  lua_State *L = luaL_newstate();
  if (L == NULL) {
    fprintf(stderr, "%s: cannot create a Lua state: out of memory\n",
            orr_cli_progname);
    return NULL;
  }
  luaL_openlibs(L);
  lua_pushcfunction(L, set_global);
  lua_pushstring(L, setup_paths(L, dir, sizeof dir));
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    orr_cli_report(L, LUA_ERRRUN);
    lua_close(L);
    return NULL;
  }
  return L;
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

static const char version_help[] =
    "usage: %s version [--json]\n\n"
    "Prints the versions of orrery, Lua, libuv and Jansson.\n\n"
    "exit codes: 0 printed, 2 usage error\n";

int orr_cli_version(int argc, char **argv) {
  int json = 0, done, first, rc;
  const orr_cli_flag flags[] = {{"json", &json}, {NULL, NULL}};
  rc = orr_cli_parse_flags("version", argc, argv, flags, version_help, &done,
                           &first);
  if (rc != ORR_EXIT_OK || done)
    return rc;
  if (first < argc)
    return orr_cli_usage_error("version", "unknown argument %s", argv[first]);
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

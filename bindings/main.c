/*
** The orrery executable: Lua 5.4 with the orrery module preloaded, and the
** subcommands run, plan and version.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "l_async.h"
#include "l_orrery.h"
#include "l_util.h"

#ifndef ORR_SOURCE_DIR
#define ORR_SOURCE_DIR "."
#endif

static const char *progname = "orrery";

static void usage(FILE *out) {
  fprintf(out,
          "usage: %s COMMAND [OPTIONS] ...\n"
          "\n"
          "commands:\n"
          "  run RECIPE.lua [ARGS...]          run a recipe as a task, "
          "then every task\n"
          "                                    it spawned, to the end\n"
          "  plan [--compact] RECIPE.lua [ARGS...]\n"
          "                                    run a recipe against the "
          "builder and print\n"
          "                                    the document it returns as "
          "JSON (VMs it\n"
          "                                    creates use the plan backend "
          "and are printed\n"
          "                                    with their plan log)\n"
          "  version                           print the version\n"
          "\n"
          "exit codes: 0 success, 1 the recipe or a task failed, 2 usage "
          "error\n",
          progname);
}

/* Sets package.path so require("orrery") finds scripts/lib. */
static void setup_paths(lua_State *L) {
  const char *lib = getenv("ORRERY_LUA_LIB");
  if (lib == NULL)
    lib = ORR_SOURCE_DIR "/scripts/lib";
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", lib, lib,
                  lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_orrery_core);
  lua_setfield(L, -2, "orrery.core");
  lua_pop(L, 2);
}

/*
** Sets `arg`, pushes the message handler, loads RECIPE and pushes ARGS.
** On success the stack holds orr_l_msghandler (at *base), the chunk and its
** arguments; on failure the error message is on top.
*/
static int load_recipe(lua_State *L, int argc, char **argv, int *base) {
  int status;
  lua_createtable(L, argc - 1, 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  lua_setglobal(L, "arg");
  lua_pushcfunction(L, orr_l_msghandler);
  *base = lua_gettop(L);
  status = luaL_loadfile(L, argv[0]);
  if (status != LUA_OK)
    return status;
  for (int i = 1; i < argc; i++)
    lua_pushstring(L, argv[i]);
  return LUA_OK;
}

/* Loads RECIPE, sets `arg`, calls it with ARGS at top level; leaves its
** results. */
static int run_recipe(lua_State *L, int argc, char **argv, int *nres) {
  int base, status = load_recipe(L, argc, argv, &base);
  if (status != LUA_OK)
    return status;
  status = lua_pcall(L, argc - 1, LUA_MULTRET, base);
  *nres = lua_gettop(L) - base;
  return status;
}

/* orrery.run() for the C side: drives every spawned task to its end.
** Returns the number of failed tasks nobody read the error of. */
static int run_tasks(lua_State *L) {
  lua_pushinteger(L, orr_l_run(L));
  return 1;
}

static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
    return 1;
  }
  return 0;
}

static int cmd_plan(lua_State *L, int argc, char **argv) {
  int compact = 0, nres = 0, status;
  orr_builder *b;
  orr_error e = {0, ""};
  json_t *vms;
  char *text;
  while (argc > 0 && argv[0][0] == '-') {
    if (strcmp(argv[0], "--compact") == 0) {
      compact = 1;
    } else {
      fprintf(stderr, "%s plan: unknown option %s\n", progname, argv[0]);
      return 2;
    }
    argc--, argv++;
  }
  if (argc < 1) {
    usage(stderr);
    return 2;
  }
  /* VMs the recipe creates default to the plan backend and are recorded,
  ** so the output shows what the qemu backend would have sent. */
  orr_l_set_default_backend(L, "plan");
  status = run_recipe(L, argc, argv, &nres);
  if (status != LUA_OK)
    return report(L, status);
  b = nres >= 1 ? orr_l_testbuilder(L, -nres) : NULL;
  lua_pushcfunction(L, orr_l_msghandler);
  lua_pushcfunction(L, run_tasks);
  status = lua_pcall(L, 0, 1, -2);
  if (status != LUA_OK)
    return report(L, status);
  if (lua_tointeger(L, -1) > 0) {
    fprintf(stderr, "%s plan: %d task(s) failed\n", progname,
            (int)lua_tointeger(L, -1));
    return 1;
  }
  /* The document must be one create would accept, not just well-formed
  ** so far (the builder lets halves of a rule wait for each other). */
  if (b != NULL && orr_builder_check(b, &e) != 0) {
    fprintf(stderr, "%s plan: %s: %s\n", progname, argv[0], e.msg);
    return 1;
  }
  vms = orr_l_vm_plan_report(L);
  if (b == NULL && json_array_size(vms) == 0) {
    json_decref(vms);
    fprintf(stderr,
            "%s plan: %s must return an orrery.Builder (end the recipe "
            "with `return b`)\n",
            progname, argv[0]);
    return 1;
  }
  if (json_array_size(vms) == 0) {
    text = orr_doc_dump(orr_builder_doc(b), !compact);
  } else {
    /* {"document": the builder's (if returned), "vms": [...]} */
    json_t *out = json_object();
    if (b != NULL) {
      char *doc = orr_doc_dump(orr_builder_doc(b), 0);
      json_object_set_new(out, "document", json_loads(doc, 0, NULL));
      free(doc);
    }
    json_object_set_new(out, "vms", json_incref(vms));
    text = json_dumps(out, compact ? JSON_COMPACT : JSON_INDENT(2));
    json_decref(out);
  }
  json_decref(vms);
  printf("%s\n", text);
  free(text);
  return 0;
}

/*
** Under lua_pcall, stack: chunk, args... Runs the recipe as a task (so its
** waiting calls yield and other tasks run meanwhile), then every task to
** its end. Returns the recipe's error with traceback (or nil) and the
** number of other tasks that failed unseen (already printed).
*/
static int run_as_task(lua_State *L) {
  orr_l_task *t = orr_l_spawn(L, lua_gettop(L) - 1);
  int task = lua_gettop(L), unseen;
  t->watched = 1; /* its error is reported below, not as "task failed" */
  unseen = orr_l_run(L);
  if (!orr_l_task_failed(L, task))
    lua_pushnil(L);
  lua_pushinteger(L, unseen);
  return 2;
}

static int cmd_run(lua_State *L, int argc, char **argv) {
  int base, status;
  if (argc < 1) {
    usage(stderr);
    return 2;
  }
  status = load_recipe(L, argc, argv, &base);
  if (status != LUA_OK)
    return report(L, status);
  lua_pushcfunction(L, run_as_task);
  lua_insert(L, base + 1);
  status = lua_pcall(L, argc, 2, base);
  if (status != LUA_OK)
    return report(L, status);
  if (!lua_isnil(L, -2)) {
    fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -2));
    return 1;
  }
  if (lua_tointeger(L, -1) > 0) {
    fprintf(stderr, "%s: %d task(s) failed\n", progname,
            (int)lua_tointeger(L, -1));
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  lua_State *L;
  int rc;
  if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
      strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
    printf("orrery %s (%s)\n", ORR_VERSION, LUA_RELEASE);
    return 0;
  }
  L = luaL_newstate();
  if (L == NULL)
    return 1;
  luaL_openlibs(L);
  setup_paths(L);
  if (strcmp(argv[1], "plan") == 0) {
    rc = cmd_plan(L, argc - 2, argv + 2);
  } else if (strcmp(argv[1], "run") == 0) {
    rc = cmd_run(L, argc - 2, argv + 2);
  } else {
    fprintf(stderr, "%s: unknown command '%s'\n", progname, argv[1]);
    usage(stderr);
    rc = 2;
  }
  lua_close(L);
  return rc;
}

/*
** orrery template ls [--json] | rm KEY... | rm --all: the template cache
** (orrery.template, scripts/lib/orrery/template.lua). The listing and the
** removal are the Lua library's (orrery.template_cache.cli); this file
** only parses the command line.
*/
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "cli.h"

static const char template_help[] =
    "usage: %s template ls [--json]\n"
    "       %s template rm KEY... | --all\n\n"
    "The template cache of orrery.template: $XDG_CACHE_HOME/orrery/templates\n"
    "(else ~/.cache/orrery/templates), one directory per key.\n\n"
    "  ls        one line per template, most recently used first: its key,\n"
    "            memory, accelerator, disk used, last use and the kernel it\n"
    "            boots (--json: the same as data)\n"
    "  rm KEY    removes those templates (a key prefix that names one will\n"
    "            do); --all removes every one. Clones still running keep\n"
    "            their files until they exit.\n\n"
    "ORRERY_TEMPLATE_CACHE_MB bounds the cache (default 4096): making a\n"
    "template removes the least recently used others beyond it.\n\n"
    "exit codes: 0 success, 1 a template could not be found or removed,\n"
    "2 usage error\n";

int orr_cli_template(int argc, char **argv) {
  lua_State *L;
  int status;
  if (argc < 2 || orr_cli_is_help(argv[1])) {
    if (argc < 2)
      return orr_cli_usage_error("template", "expected ls or rm");
    printf(template_help, orr_cli_progname, orr_cli_progname);
    return ORR_EXIT_OK;
  }
  if (strcmp(argv[1], "ls") != 0 && strcmp(argv[1], "rm") != 0)
    return orr_cli_usage_error("template", "unknown subcommand %s", argv[1]);
  for (int i = 2; i < argc; i++) {
    if (orr_cli_is_help(argv[i])) {
      printf(template_help, orr_cli_progname, orr_cli_progname);
      return ORR_EXIT_OK;
    }
    if (argv[i][0] == '-' && strcmp(argv[i], "--json") != 0 &&
        strcmp(argv[i], "--all") != 0)
      return orr_cli_usage_error("template", "unknown option %s", argv[i]);
    if (strcmp(argv[i], "--json") == 0 && strcmp(argv[1], "ls") != 0)
      return orr_cli_usage_error("template", "--json is an option of ls");
    if (strcmp(argv[i], "--all") == 0 && strcmp(argv[1], "rm") != 0)
      return orr_cli_usage_error("template", "--all is an option of rm");
    if (argv[i][0] != '-' && strcmp(argv[1], "ls") == 0)
      return orr_cli_usage_error("template", "unknown argument %s", argv[i]);
  }
  if (strcmp(argv[1], "rm") == 0 && argc < 3)
    return orr_cli_usage_error("template", "rm needs a KEY or --all");
  if ((L = orr_cli_newstate()) == NULL)
    return ORR_EXIT_FAIL;
  lua_getglobal(L, "orrery");
  lua_getfield(L, -1, "template_cache");
  lua_getfield(L, -1, "cli");
  lua_createtable(L, argc - 1, 0);
  for (int i = 1; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  status = lua_pcall(L, 1, 1, 0);
  if (status != LUA_OK) {
    status = orr_cli_report(L, status);
  } else {
    status = lua_toboolean(L, -1) ? ORR_EXIT_OK : ORR_EXIT_FAIL;
    lua_pop(L, 1);
  }
  lua_close(L);
  return status;
}

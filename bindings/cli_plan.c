/*
** `orrery plan RECIPE`: runs a recipe against the builder, with every VM it
** creates on the plan backend, and prints the document it returns (and the
** VMs with their plan logs) as JSON. Nothing touches the host.
*/
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "l_orrery.h"
#include "l_util.h"
#include "orrery/document.h"

static const char plan_help[] =
    "usage: %s plan [--compact] RECIPE.lua [ARGS...]\n"
    "\n"
    "Runs RECIPE with every VM it creates on the plan backend (nothing is\n"
    "started) and prints, as JSON, the document it returns (end the recipe\n"
    "with `return b`) or, when it creates VMs, {\"document\": ..., \"vms\":\n"
    "[{\"id\", \"document\", \"plan_log\"}]} with the QEMU argv and every QMP\n"
    "command the qemu backend would send.\n"
    "\n"
    "options:\n"
    "  --compact   one line of JSON\n"
    "  -h, --help  this help\n"
    "\n"
    "exit codes: 0 printed, 1 the recipe failed or returned no valid\n"
    "document, 2 usage error\n";

/* orrery.run() for the C side: drives every spawned task to its end.
** Returns the number of failed tasks nobody read the error of. */
static int run_tasks(lua_State *L) {
  lua_pushinteger(L, orr_l_run(L));
  return 1;
}

/* Calls the loaded recipe at top level; leaves its results. */
static int run_recipe(lua_State *L, int argc, char **argv, int *nres) {
  int base, status;
  lua_pushcfunction(L, orr_l_msghandler);
  base = lua_gettop(L);
  status = orr_cli_load_recipe(L, argc, argv);
  if (status != LUA_OK)
    return status;
  status = lua_pcall(L, argc - 1, LUA_MULTRET, base);
  *nres = lua_gettop(L) - base;
  return status;
}

/* The JSON to print: the document alone, or the document and the VMs. */
static char *plan_text(lua_State *L, orr_builder *b, json_t *vms, int compact) {
  char *text;
  json_t *out;
  if (json_array_size(vms) == 0)
    return orr_doc_dump(orr_builder_doc(b), !compact);
  out = json_object();
  if (b != NULL) {
    char *doc = orr_doc_dump(orr_builder_doc(b), 0);
    json_object_set_new(out, "document", json_loads(doc, 0, NULL));
    free(doc);
  }
  json_object_set_new(out, "vms", json_incref(vms));
  text = json_dumps(out, compact ? JSON_COMPACT : JSON_INDENT(2));
  json_decref(out);
  (void)L;
  return text;
}

static int plan(lua_State *L, int compact, int argc, char **argv) {
  int nres = 0, status;
  orr_builder *b;
  orr_error e = {0, ""};
  json_t *vms;
  char *text;
  /* VMs the recipe creates default to the plan backend and are recorded,
  ** so the output shows what the qemu backend would have sent. */
  orr_l_set_default_backend(L, "plan");
  status = run_recipe(L, argc, argv, &nres);
  if (status != LUA_OK)
    return orr_cli_report(L, status);
  b = nres >= 1 ? orr_l_testbuilder(L, -nres) : NULL;
  lua_pushcfunction(L, orr_l_msghandler);
  lua_pushcfunction(L, run_tasks);
  status = lua_pcall(L, 0, 1, -2);
  if (status != LUA_OK)
    return orr_cli_report(L, status);
  if (lua_tointeger(L, -1) > 0) {
    fprintf(stderr, "%s plan: %d task(s) failed\n", orr_cli_progname,
            (int)lua_tointeger(L, -1));
    return ORR_EXIT_FAIL;
  }
  /* The document must be one create would accept, not just well-formed
  ** so far (the builder lets halves of a rule wait for each other). */
  if (b != NULL && orr_builder_check(b, &e) != 0) {
    fprintf(stderr, "%s plan: %s: %s\n", orr_cli_progname, argv[0], e.msg);
    return ORR_EXIT_FAIL;
  }
  vms = orr_l_vm_plan_report(L);
  if (b == NULL && json_array_size(vms) == 0) {
    json_decref(vms);
    fprintf(stderr,
            "%s plan: %s must return an orrery.Builder (end the recipe "
            "with `return b`)\n",
            orr_cli_progname, argv[0]);
    return ORR_EXIT_FAIL;
  }
  text = plan_text(L, b, vms, compact);
  json_decref(vms);
  printf("%s\n", text);
  free(text);
  return ORR_EXIT_OK;
}

int orr_cli_plan(int argc, char **argv) {
  int compact = 0, i, rc;
  lua_State *L;
  for (i = 1; i < argc && argv[i][0] == '-' && strcmp(argv[i], "-") != 0; i++) {
    if (strcmp(argv[i], "--compact") == 0) {
      compact = 1;
    } else if (orr_cli_is_help(argv[i])) {
      printf(plan_help, orr_cli_progname);
      return ORR_EXIT_OK;
    } else if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    } else {
      return orr_cli_usage_error("plan", "unknown option %s", argv[i]);
    }
  }
  if (i >= argc)
    return orr_cli_usage_error("plan", "missing RECIPE");
  if ((L = orr_cli_newstate()) == NULL)
    return ORR_EXIT_FAIL;
  rc = plan(L, compact, argc - i, argv + i);
  lua_close(L);
  return rc;
}

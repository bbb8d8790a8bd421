/*
** `orrery plan RECIPE`: runs a recipe against the builder, with every VM it
** creates on the plan backend, and prints the document it returns (and the
** VMs with their plan logs) as JSON. Nothing touches the host.
*/
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "lua/l_orrery.h"
#include "lua/l_util.h"
#include "orrery/document.h"

static const char plan_help[] =
    "usage: %s plan [OPTIONS] RECIPE.lua [ARGS...]\n"
    "\n"
    "Runs RECIPE with every VM it creates as a dry run (nothing is started,\n"
    "nothing is sent) and prints, as JSON, the document it returns (end the\n"
    "recipe with `return b`) or, when it creates VMs, {\"document\": ...,\n"
    "\"vms\": [{\"id\", \"document\", ...}]}: with the plan backend each VM\n"
    "has \"plan_log\", the QEMU argv and every QMP command the qemu backend\n"
    "would send; with --backend kubevirt it has \"kubevirt\": {\"manifest\",\n"
    "\"requests\"}, the VirtualMachine and every Kubernetes API request the\n"
    "kubevirt backend would send. Standard output carries the JSON alone:\n"
    "what the recipe prints goes to standard error.\n"
    "\n"
    "options:\n"
    "  --backend=NAME   plan (default: QEMU's dry run) or kubevirt\n"
    "  --namespace=NS   kubevirt: the namespace (default: \"default\")\n"
    "  --source=STRING=SOURCE\n"
    "                   kubevirt: the cluster source of a path or endpoint\n"
    "                   the document names (pvc:NAME, dv:NAME,\n"
    "                   containerdisk:IMAGE[#/PATH], pod, multus:NAME,\n"
    "                   hostdevice:NAME); repeatable, over the recipe's own\n"
    "                   create option sources\n"
    "  --compact        one line of JSON\n"
    "  -h, --help       this help\n"
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

/*
** Standard output is the plan's alone: while the recipe and its tasks run,
** file descriptor 1 is standard error, so whatever they print (print,
** io.write, a program they run) goes there. Returns the descriptor to give
** back to restore_stdout, or -1 when stdout could not be moved (then the
** recipe simply shares it).
*/
static int divert_stdout(void) {
  int saved;
  fflush(stdout);
  if ((saved = dup(STDOUT_FILENO)) < 0)
    return -1;
  if (dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
    close(saved);
    return -1;
  }
  return saved;
}

static void restore_stdout(int saved) {
  if (saved < 0)
    return;
  fflush(stdout);
  dup2(saved, STDOUT_FILENO);
  close(saved);
}

/* Runs the recipe and its tasks with stdout diverted; leaves the recipe's
** results on the stack (*nres) and returns the Lua status (the error on
** top), or LUA_OK with the count of failed tasks in *failed. */
static int run_diverted(lua_State *L, int argc, char **argv, int *nres,
                        int *failed) {
  int saved = divert_stdout(), status;
  status = run_recipe(L, argc, argv, nres);
  if (status == LUA_OK) {
    lua_pushcfunction(L, orr_l_msghandler);
    lua_pushcfunction(L, run_tasks);
    status = lua_pcall(L, 0, 1, -2);
    if (status == LUA_OK) {
      *failed = (int)lua_tointeger(L, -1);
      lua_pop(L, 2);
    } else {
      lua_remove(L, -2);
    }
  }
  restore_stdout(saved);
  return status;
}

typedef struct {
  int compact;
  const char *backend;   /* "plan" or "kubevirt" */
  const char *namespace; /* or NULL */
  json_t *sources;       /* --source entries, or NULL */
} plan_opts;

static int plan(lua_State *L, plan_opts *o, int argc, char **argv) {
  int nres = 0, failed = 0, status, compact = o->compact;
  orr_builder *b;
  orr_error e = {0, ""};
  json_t *vms;
  char *text;
  /* VMs the recipe creates default to a dry run of the backend and are
  ** recorded, so the output shows what it would have sent. */
  orr_l_set_default_backend(L, o->backend);
  orr_l_set_plan_kubevirt(L, o->namespace, o->sources);
  o->sources = NULL;
  status = run_diverted(L, argc, argv, &nres, &failed);
  if (status != LUA_OK)
    return orr_cli_report(L, status);
  b = nres >= 1 ? orr_l_testbuilder(L, -nres) : NULL;
  if (failed > 0) {
    fprintf(stderr, "%s plan: %d task(s) failed\n", orr_cli_progname, failed);
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

enum { OPT_BACKEND = 256, OPT_NAMESPACE, OPT_SOURCE, OPT_COMPACT };

static const struct option longopts[] = {
    {"compact", no_argument, NULL, OPT_COMPACT},
    {"backend", required_argument, NULL, OPT_BACKEND},
    {"namespace", required_argument, NULL, OPT_NAMESPACE},
    {"source", required_argument, NULL, OPT_SOURCE},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* getopt_long in POSIX order: the recipe's own arguments pass through. */
static int parse(plan_opts *o, int argc, char **argv, int *done, int *first) {
  int c;
  *done = 0;
  optind = 0;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "+:h", longopts, NULL)) != -1) {
    const char *eq;
    switch (c) {
    case 'h':
      printf(plan_help, orr_cli_progname);
      *done = 1;
      return ORR_EXIT_OK;
    case OPT_COMPACT:
      o->compact = 1;
      break;
    case OPT_BACKEND:
      if (strcmp(optarg, "plan") != 0 && strcmp(optarg, "kubevirt") != 0)
        return orr_cli_usage_error("plan",
                                   "--backend must be plan or kubevirt, got "
                                   "\"%s\"",
                                   optarg);
      o->backend = optarg;
      break;
    case OPT_NAMESPACE:
      o->namespace = optarg;
      break;
    case OPT_SOURCE:
      /* The string may hold "=" itself: the source is after the last. */
      if ((eq = strrchr(optarg, '=')) == NULL || eq == optarg || !eq[1])
        return orr_cli_usage_error(
            "plan", "--source needs STRING=SOURCE, got \"%s\"", optarg);
      if (o->sources == NULL)
        o->sources = json_object();
      {
        char *key = strndup(optarg, (size_t)(eq - optarg));
        json_object_set_new(o->sources, key, json_string(eq + 1));
        free(key);
      }
      break;
    case ':':
      return orr_cli_usage_error("plan", "%s needs a value", argv[optind - 1]);
    default:
      return orr_cli_bad_option("plan", argv, longopts);
    }
  }
  if ((o->namespace || o->sources) && strcmp(o->backend, "kubevirt") != 0)
    return orr_cli_usage_error("plan", "--namespace and --source are for "
                                       "--backend kubevirt");
  *first = optind;
  return ORR_EXIT_OK;
}

int orr_cli_plan(int argc, char **argv) {
  plan_opts o = {0, "plan", NULL, NULL};
  int done = 0, first = argc, rc;
  lua_State *L;
  rc = parse(&o, argc, argv, &done, &first);
  if (rc != ORR_EXIT_OK || done) {
    json_decref(o.sources);
    return rc;
  }
  if (first >= argc) {
    json_decref(o.sources);
    return orr_cli_usage_error("plan", "missing RECIPE");
  }
  if ((L = orr_cli_newstate()) == NULL) {
    json_decref(o.sources);
    return ORR_EXIT_FAIL;
  }
  rc = plan(L, &o, argc - first, argv + first);
  json_decref(o.sources);
  lua_close(L);
  return rc;
}

/*
** The orrery executable: Lua 5.4 with the orrery module preloaded. The
** first argument picks a subcommand from the table below; anything else is
** read the way lua5.4 reads its command line (cli_run.c), and no argument
** at all opens the REPL.
*/
#include <stdio.h>
#include <string.h>

#include <lua.h>

#include "cli.h"

typedef struct {
  const char *name;
  int (*main)(int argc, char **argv);
  const char *summary;
} command;

static const command commands[] = {
    {"run", orr_cli_run, "run a recipe as a task, then every task it spawned"},
    {"plan", orr_cli_plan,
     "print the document and QEMU plan a recipe makes, touching nothing"},
    {"repl", orr_cli_repl, "the interactive Lua REPL on the engine's loop"},
    {"doctor", orr_cli_doctor,
     "check the host: QEMU, KVM (the real boot probe), OVMF, ..."},
    {"template", orr_cli_template,
     "list or remove the cached templates of orrery.template"},
    {"ps", orr_cli_ps, "list the VMs under the runtime root"},
    {"console", orr_cli_console, "attach the terminal to COM1 of a VM"},
    {"stop", orr_cli_stop, "shut a VM down (power-down, then kill)"},
    {"kill", orr_cli_kill, "terminate a VM at once"},
    {"version", orr_cli_version, "print the versions"},
    {NULL, NULL, NULL},
};

static void usage(FILE *out) {
  fprintf(out,
          "usage: %s COMMAND [OPTIONS] [ARGS...]\n"
          "       %s [-e CHUNK] [-l MOD] [-i] [-q] [RECIPE.lua [ARGS...]]\n"
          "\n"
          "commands:\n",
          orr_cli_progname, orr_cli_progname);
  for (const command *c = commands; c->name != NULL; c++)
    fprintf(out, "  %-9s %s\n", c->name, c->summary);
  fprintf(out,
          "  help CMD  the help of CMD (also `%s CMD --help`)\n"
          "\n"
          "Without a command, %s works like lua5.4: -e runs a chunk, -l "
          "requires a\n"
          "module, -i enters the REPL afterwards, RECIPE runs as with `run`; "
          "with no\n"
          "arguments it opens the REPL (or, when stdin is not a terminal, runs "
          "the\n"
          "script read from it). The global `orrery` is the library; see "
          "orrery(1).\n"
          "\n"
          "exit codes:\n"
          "  0    success\n"
          "  1    the recipe, a chunk or a task failed; doctor: a check "
          "failed\n"
          "  2    usage error\n"
          "  130  interrupted by Ctrl-C\n",
          orr_cli_progname, orr_cli_progname);
}

static const command *find(const char *name) {
  for (const command *c = commands; c->name != NULL; c++)
    if (strcmp(c->name, name) == 0)
      return c;
  return NULL;
}

int main(int argc, char **argv) {
  const command *c;
  if (argc >= 2 && orr_cli_is_help(argv[1])) {
    usage(stdout);
    return ORR_EXIT_OK;
  }
  if (argc >= 2 && strcmp(argv[1], "--version") == 0)
    return orr_cli_version(1, argv + 1);
  if (argc >= 2 && strcmp(argv[1], "help") == 0) {
    char help[] = "--help";
    char *sub[] = {argv[2], help, NULL};
    if (argc < 3) {
      usage(stdout);
      return ORR_EXIT_OK;
    }
    if ((c = find(argv[2])) == NULL)
      return orr_cli_usage_error(NULL, "no command '%s'", argv[2]);
    return c->main(2, sub);
  }
  if (argc >= 2 && (c = find(argv[1])) != NULL)
    return c->main(argc - 1, argv + 1);
  return orr_cli_toplevel(argc, argv);
}

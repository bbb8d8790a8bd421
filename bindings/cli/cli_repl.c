/*
** `orrery repl`: the subcommand; the REPL itself is repl/.
*/
#include "cli.h"

static const char repl_help[] =
    "usage: %s repl\n"
    "       %s\n"
    "\n"
    "The interactive Lua 5.4 REPL with the engine loaded (orrery is a\n"
    "global). It behaves like lua5.4's: an expression prints its values\n"
    "(=expr too), an incomplete statement continues on the next line, an\n"
    "error prints with its traceback. Beyond lua5.4:\n"
    "  - each line runs as a task: waiting calls (vm:start(), orrery.sleep)\n"
    "    yield, and VMs, timers and tasks keep running while you type;\n"
    "  - tables print nested with sorted keys, cycles marked;\n"
    "  - events of the VMs created here (state, exit, device_deleted) and\n"
    "    whatever tasks print appear above the prompt; `vms` holds those\n"
    "    VMs by id;\n"
    "  - Tab completes globals, fields and methods (vm:add_<Tab>);\n"
    "  - Ctrl-C interrupts a waiting call (it returns nil, \"ECANCELED:\n"
    "    interrupted\", \"ECANCELED\"; the VM stays as it is) or a busy\n"
    "    loop; at an empty prompt, a second Ctrl-C leaves;\n"
    "  - Ctrl-D leaves, closing the session's VMs as their\n"
    "    ShouldTerminateOnLastHandleClosed says (and saying so);\n"
    "  - history is kept in $XDG_STATE_HOME/orrery/history\n"
    "    (~/.local/state/orrery/history).\n"
    "When stdin is not a terminal, the script read from it is run instead.\n"
    "\n"
    "exit codes: 0 left normally, 1 the script from stdin failed,\n"
    "2 usage error\n";

int orr_cli_repl(int argc, char **argv) {
  const orr_cli_flag flags[] = {{NULL, NULL}};
  int rc, done, first;
  rc = orr_cli_parse_flags("repl", argc, argv, flags, repl_help, &done, &first);
  if (rc == ORR_EXIT_OK && !done && first < argc)
    rc = orr_cli_usage_error("repl", "unknown argument %s", argv[first]);
  if (rc != ORR_EXIT_OK || done)
    return rc;
  return orr_cli_interactive(argv[0]);
}

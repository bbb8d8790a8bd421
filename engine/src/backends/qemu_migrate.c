/*
** The qemu backend's part of live migration (the protocol and bookkeeping
** are the core's migrate.c; docs/migration.md): the QMP of each phase, as
** named commands the core sends in turn.
**
** Both QEMUs get the stream socket as a descriptor (getfd over SCM_RIGHTS)
** and use it with fd: URIs: the source "migrate", the destination, started
** with -incoming defer, "migrate-incoming". Neither QEMU opens or connects
** anything itself (its -sandbox and Landlock stay as they are), and the
** engine judged the socket's address under its policy.
*/
#include "backends/qemu_xlate.h"
#include "backends/qemu_backend.h"
#include "vm_internal.h"

static json_t *cmd(const char *execute, json_t *args) {
  return json_pack("{s:s, s:o}", "execute", execute, "arguments",
                   args ? args : json_object());
}

/*
** {"setup": [cmds], "handoff": cmd (sent with the socket), "start": cmd,
**  "poll": cmd (its answer's "status": "completed", "failed", "cancelled"
**  end it; "downtime", "total-time", "setup-time", "ram" say how it went),
**  "cancel": cmd, "resume": cmd, "drop": cmd (the named socket, when the
**  start never ran)}
*/
int orr__qemu_migrate_plan(orr_vm *vm, bool incoming, json_t **plan,
                           orr_error *e) {
  const char *name = incoming ? ORR_QEMU_MIGRATE_IN_FD : ORR_QEMU_MIGRATE_FD;
  char uri[64];
  (void)vm;
  snprintf(uri, sizeof uri, "fd:%s", name);
  *plan = json_pack("{s:[o], s:o, s:o, s:o, s:o, s:o, s:o}", "setup",
                    cmd("migrate-set-capabilities",
                        json_pack("{s:[{s:s, s:b}]}", "capabilities",
                                  "capability", "events", "state", 1)),
                    "handoff", cmd("getfd", json_pack("{s:s}", "fdname", name)),
                    "start",
                    cmd(incoming ? "migrate-incoming" : "migrate",
                        json_pack("{s:s}", "uri", uri)),
                    "poll", cmd("query-migrate", NULL), "cancel",
                    cmd("migrate_cancel", NULL), "resume", cmd("cont", NULL),
                    "drop", cmd("closefd", json_pack("{s:s}", "fdname", name)));
  if (*plan == NULL)
    return orr_error_set(e, ORR_ENOMEM, "out of memory");
  return 0;
}

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
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "backends/qemu_xlate.h"
#include "backends/qemu_backend.h"
#include "vm_internal.h"

static json_t *cmd(const char *execute, json_t *args) {
  return json_pack("{s:s, s:o}", "execute", execute, "arguments",
                   args ? args : json_object());
}

/* Sockets at host paths the destination takes over: mapped pipes, COM
** ports' NamedPipe. */
static bool has_host_sockets(const orr_vm *vm) {
  const char *key;
  json_t *v;
  if (json_object_size(json_object_get(vm->layout, "pipes")) > 0)
    return true;
  json_object_foreach(
      json_object_get(
          json_object_get(json_object_get(vm->doc, "VirtualMachine"),
                          "Devices"),
          "ComPorts"),
      key, v) {
    if (json_object_get(v, "NamedPipe") != NULL)
      return true;
  }
  return false;
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
  if (!incoming &&
      (json_object_set_new(*plan, "probe", cmd("query-memory-devices", NULL)) !=
           0 ||
       json_object_set_new(*plan, "probe_as", json_string("memory_devices")) !=
           0 ||
       json_object_set_new(*plan, "kill_on_handover",
                           json_boolean(has_host_sockets(vm))) != 0))
    return orr_error_set(e, ORR_ENOMEM, "out of memory");
  return 0;
}

/*
** Once the destination's QEMU has the whole state: each received pipe's
** socket, bound on a temporary name beside its host path, is renamed over
** the host path (where the source's QEMU listened): from here a host
** program that connects there reaches this VM. Not earlier, so that a
** migration that fails leaves the source's socket where it was; and the
** source's QEMU is killed rather than quit (kill_on_handover), since QEMU
** removes its listening socket's path on the way out, which is now ours.
*/
int orr__qemu_migrate_arrived(orr_vm *vm, orr_error *e) {
  const char *host;
  json_t *v;
  /* COM ports' NamedPipe sockets: the same. */
  json_object_foreach(json_object_get(vm->layout, "com_moved"), host, v) {
    const char *bound = json_string_value(v);
    struct stat st;
    if (bound == NULL || lstat(bound, &st) != 0 || !S_ISSOCK(st.st_mode))
      continue;
    if (rename(bound, host) != 0)
      return orr_error_set(e, ORR_EIO,
                           "receive: %s: cannot move the COM port's socket "
                           "there from %s: %s",
                           host, bound, strerror(errno));
  }
  json_object_foreach(json_object_get(vm->layout, "pipes"), host, v) {
    const char *bound = json_string_value(json_object_get(v, "bound"));
    struct stat st;
    if (bound == NULL || lstat(bound, &st) != 0 || !S_ISSOCK(st.st_mode))
      continue; /* renamed already (a retry), or not a received pipe */
    if (rename(bound, host) != 0)
      return orr_error_set(e, ORR_EIO,
                           "receive: VirtualMachine/Devices/MappedPipes/%s: "
                           "cannot move the pipe's socket there from %s: %s",
                           host, bound, strerror(errno));
  }
  return 0;
}

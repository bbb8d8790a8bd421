/*
** The qemu backend: spawns qemu-system-x86_64 paused (-S) in the VM's
** private runtime directory, connects QMP, and turns QEMU's exit, events
** and replies into the VM layer's callbacks.
*/
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgroup.h"
#include "landlock.h"
#include "orrery/log.h"
#include "pidwatch.h"
#include "qemu_backend.h"
#include "rundir.h"

/* Makes and locks the runtime directory. One left by a QEMU that is still
** alive, or held by another engine, is in use. */
static int claim_run_dir(orr_vm *vm, orr_error *e) {
  int pid, rc, fd = -1;
  /* No component of the path may be another user's to redirect. */
  if ((rc = orr__run_dir_make(vm->run_dir, &fd, e)) != 0)
    return rc;
  if (orr__run_dir_lock(fd, vm->run_dir, e) != 0) {
    close(fd);
    return orr_error_set(e, ORR_EEXIST,
                         "VM id \"%s\" is in use: another engine process "
                         "holds %s",
                         vm->id, vm->run_dir);
  }
  pid = orr__run_dir_pid(fd, ORR_QEMU_PIDFILE);
  if (pid > 0 && kill(pid, 0) == 0) {
    close(fd);
    return orr_error_set(e, ORR_EEXIST,
                         "VM id \"%s\" is in use: QEMU pid %d still runs "
                         "from %s",
                         vm->id, pid, vm->run_dir);
  }
  unlinkat(fd, ORR_QEMU_PIDFILE, 0);
  unlinkat(fd, ORR_VM_NOT_DURABLE_FILE, 0);
  vm->run_dir_fd = fd;
  return 0;
}

/* Only a directory this VM claimed: one it never got may be another's. */
static void remove_run_dir(orr_vm *vm) {
  if (!vm->owns_run_dir)
    return;
  vm->owns_run_dir = false;
  orr__run_dir_clear(vm->run_dir_fd, vm->run_dir, orr__qemu_run_files);
}

static void stop_restore_poll(orr_vm *vm) {
  if (vm->restore_poll) {
    uv_close((uv_handle_t *)vm->restore_poll, (uv_close_cb)free);
    vm->restore_poll = NULL;
  }
}

static void fail_launch(orr_vm *vm, int status, const char *what) {
  orr_error e;
  char out[1024] = "";
  size_t n = vm->proc ? orr_process_output(vm->proc, out, sizeof out) : 0;
  stop_restore_poll(vm);
  while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
    out[--n] = '\0';
  orr_error_set(&e, status, "%s%s%s", what, n ? ": " : "", out);
  n = strlen(e.msg);
  orr__qemu_console_drain(vm);
  orr__vm_console_suffix(vm, e.msg + n, sizeof e.msg - n);
  orr__vm_launched(vm, status, &e);
  if (!vm->exited && vm->proc)
    orr_process_kill(vm->proc, SIGKILL);
}

static void ignore_reply(void *arg, int status, json_t *result,
                         const char *errmsg) {
  (void)arg, (void)status, (void)result, (void)errmsg;
}

/* QEMU 7.2 closes the descriptors of a removed fdset only while the VM
** runs (monitor_fdset_cleanup): a disk removed from a paused VM leaves
** its image open in QEMU. Its lock is gone with the node, but the file
** stays open, so the removal is repeated once the VM runs again. */
void orr__qemu_linger_fdset(orr_vm *vm, const json_t *args) {
  json_t *ids = json_object_get(vm->layout, "fdsets_lingering"), *v;
  json_t *id = json_object_get(args, "fdset-id");
  size_t i;
  if (ids == NULL) {
    ids = json_array();
    json_object_set_new(vm->layout, "fdsets_lingering", ids);
  }
  json_array_foreach(ids, i, v) {
    if (json_equal(v, id))
      return;
  }
  json_array_append(ids, id);
}

/* Also for a re-attached VM: the list is kept in the layout (state.json),
** so a VM paused by a dead engine still gets its removals finished. */
void orr__qemu_drop_lingering(orr_vm *vm) {
  json_t *ids = json_object_get(vm->layout, "fdsets_lingering"), *id;
  size_t i;
  if (ids == NULL)
    return;
  json_array_foreach(ids, i, id) {
    orr_qmp_send(vm->qmp, "remove-fd", json_pack("{s:O}", "fdset-id", id),
                 ignore_reply, NULL);
  }
  json_object_del(vm->layout, "fdsets_lingering");
  orr__vm_dirty(vm);
}

static int send_status(orr_vm *vm);

static void on_event(void *arg, const char *event, json_t *data,
                     int64_t seconds, int64_t micros) {
  orr_vm *vm = arg;
  (void)seconds, (void)micros;
  /* While re-attaching, deletions are reconcile's to account for. */
  if (vm->reconciling && strcmp(event, "DEVICE_DELETED") == 0) {
    orr__qemu_reconcile_event(vm, data);
    return;
  }
  if (strcmp(event, "RESUME") == 0 && vm->layout != NULL)
    orr__qemu_drop_lingering(vm);
  /* A clone's state finished loading (its migration has events on): ask
  ** for the status now rather than at the next tick of the poll. */
  if (vm->state == ORR_VM_CREATING && vm->restore_poll != NULL &&
      strcmp(event, "MIGRATION") == 0) {
    const char *st = json_string_value(json_object_get(data, "status"));
    if (st != NULL &&
        (strcmp(st, "completed") == 0 || strcmp(st, "failed") == 0)) {
      uv_timer_stop(vm->restore_poll);
      if (send_status(vm) != 0)
        fail_launch(vm, ORR_EVMGONE, "QEMU went away during start-up");
      return;
    }
  }
  orr__qemu_event(vm, event, data);
}

/* backend->cpu_limits: the process's cgroup. */
static int qemu_cpu_limits(orr_vm *vm, const json_t *limits, long long cpus,
                           orr_error *e) {
  char name[128];
  if (json_object_get(limits, "MaximumFrequencyMHz"))
    return orr_error_set(e, ORR_ENOTSUP,
                         "MaximumFrequencyMHz has no equivalent for a QEMU "
                         "process");
  snprintf(name, sizeof name, "%s-%.8s", vm->id, vm->runtime_id);
  return orr__cgroup_apply(vm->cgroup, sizeof vm->cgroup, name, vm->pid, limits,
                           cpus, e);
}

static void on_cgroup_ready(orr_vm *vm) {
  json_t *proc = json_object_get(
      json_object_get(
          json_object_get(json_object_get(vm->doc, "VirtualMachine"),
                          "ComputeTopology"),
          "Processor"),
      "Count");
  json_t *cpu = json_object_get(
      json_object_get(json_object_get(vm->doc, "VirtualMachine"),
                      "ComputeTopology"),
      "Processor");
  json_t *limits = json_object();
  orr_error e = {0, ""};
  static const char *const keys[] = {"Limit", "Weight", "Reservation"};
  for (size_t i = 0; i < 3; i++)
    if (json_object_get(cpu, keys[i]))
      json_object_set(limits, keys[i], json_object_get(cpu, keys[i]));
  if (json_object_size(limits) > 0 &&
      qemu_cpu_limits(vm, limits, proc ? json_integer_value(proc) : 1, &e)) {
    json_decref(limits);
    orr__vm_launched(vm, e.code, &e);
    vm->backend->kill(vm);
    return;
  }
  json_decref(limits);
  orr__vm_launched(vm, 0, NULL);
}

static void on_status(void *arg, int status, json_t *result,
                      const char *errmsg);
static void start_incoming(orr_vm *vm);

/* create's deadline: the handshake's (timeout_ms, else 10 s) or, with
** restore, loading the state's (timeout_ms, else 60 s), from the spawn. */
static uint64_t launch_limit(const orr_vm *vm) {
  return vm->opts.timeout_ms ? vm->opts.timeout_ms
         : vm->restore       ? 60000
                             : 10000;
}

/* The QMP handshake's part of it. */
static uint64_t handshake_limit(const orr_vm *vm) {
  return vm->opts.timeout_ms ? vm->opts.timeout_ms : 10000;
}

/* query-status while starting, with what is left of create's deadline. */
static int send_status(orr_vm *vm) {
  uint64_t now, end = vm->launch_ms + launch_limit(vm);
  uv_update_time(vm->eng->loop);
  now = uv_now(vm->eng->loop);
  return orr_qmp_send_timed(vm->qmp, "query-status", NULL,
                            end > now ? end - now : 1, on_status, NULL, vm);
}

/* The restore poll's timer belongs to the VM (released with it), so that
** it can never fire for a VM that is gone. */
static void poll_status(uv_timer_t *t) {
  orr_vm *vm = t->data;
  if (send_status(vm) != 0)
    fail_launch(vm, ORR_EVMGONE, "QEMU went away during start-up");
}

static void on_status(void *arg, int status, json_t *result,
                      const char *errmsg) {
  orr_vm *vm = arg;
  const char *st = json_string_value(json_object_get(result, "status"));
  if (vm->state != ORR_VM_CREATING)
    return;
  /* QEMU going away reports itself, in its own words (on_qemu_exit). */
  if (status == ORR_EVMGONE)
    return;
  if (status == ORR_ETIMEDOUT) {
    char what[600];
    if (vm->restore)
      snprintf(what, sizeof what,
               "QEMU did not load the saved state %s within %llu ms (it "
               "stopped answering QMP)",
               vm->restore, (unsigned long long)launch_limit(vm));
    else
      snprintf(what, sizeof what,
               "QEMU did not answer query-status within create's %llu ms",
               (unsigned long long)launch_limit(vm));
    fail_launch(vm, ORR_ETIMEDOUT, what);
    return;
  }
  if (status != 0) {
    fail_launch(vm, status, errmsg);
    return;
  }
  /* A restore is done once QEMU leaves "inmigrate". It reads a regular
  ** file the engine opened (a bad one makes it exit at once), but a large
  ** state on a slow disk can take its time: the wait has a deadline. */
  if (st && strcmp(st, "inmigrate") == 0 && !vm->incoming) {
    uint64_t limit = launch_limit(vm);
    char what[600];
    uv_update_time(vm->eng->loop);
    if (uv_now(vm->eng->loop) - vm->launch_ms >= limit) {
      snprintf(what, sizeof what,
               "QEMU did not load the saved state %s within %llu ms",
               vm->restore, (unsigned long long)limit);
      fail_launch(vm, ORR_ETIMEDOUT, what);
      return;
    }
    if (vm->restore_poll == NULL) {
      vm->restore_poll = malloc(sizeof *vm->restore_poll);
      uv_timer_init(vm->eng->loop, vm->restore_poll);
      vm->restore_poll->data = vm;
    }
    uv_timer_start(vm->restore_poll, poll_status, 20, 0);
    return;
  }
  stop_restore_poll(vm);
  if (vm->attaching) {
    vm->state = st && strcmp(st, "prelaunch") == 0 ? ORR_VM_CREATED
                : st && strcmp(st, "running") == 0 ? ORR_VM_RUNNING
                                                   : ORR_VM_PAUSED;
    vm->has_run = vm->state != ORR_VM_CREATED;
    vm->after_save = st && strcmp(st, "postmigrate") == 0;
    orr__vm_attached(vm, 0, NULL);
    return;
  }
  on_cgroup_ready(vm);
}

static void on_qmp_closed(void *arg, int reason);

/* The handshake missed create's deadline: say which part QEMU did not
** reach (then it is killed: a QEMU that cannot be driven is no VM). */
static void handshake_timed_out(orr_vm *vm) {
  const char *stage = orr_qmp_stage(vm->qmp);
  const char *sock = json_string_value(json_object_get(vm->layout, "qmp"));
  unsigned long long ms = (unsigned long long)handshake_limit(vm);
  char what[900], head[600], tail[40] = "";
  /* With restore, create's deadline is loading the state's: say that. */
  if (vm->restore) {
    snprintf(head, sizeof head,
             "QEMU did not load the saved state %s within %llu ms: it",
             vm->restore, ms);
  } else {
    snprintf(head, sizeof head, "QEMU");
    snprintf(tail, sizeof tail, " within %llu ms", ms);
  }
  if (strcmp(stage, "connect") == 0)
    snprintf(what, sizeof what, "%s did not open its QMP socket %s%s", head,
             sock, tail);
  else if (strcmp(stage, "greeting") == 0)
    snprintf(what, sizeof what,
             "%s sent no QMP greeting on %s%s (it accepted the connection: "
             "stopped or hung?)",
             head, sock, tail);
  else
    snprintf(what, sizeof what, "%s did not answer qmp_capabilities%s", head,
             tail);
  fail_launch(vm, ORR_ETIMEDOUT, what);
}

static void on_ready(void *arg, int status) {
  orr_vm *vm = arg;
  if (status == ORR_ETIMEDOUT && vm->pidwatch == NULL) {
    handshake_timed_out(vm);
    return;
  }
  if (status != 0) {
    if (vm->attaching) {
      /* A process we only attached to and could not greet is never killed:
      ** whoever holds its monitor, or whatever it is, it is not ours. */
      orr_error e;
      orr_error_set(
          &e, status, "QEMU pid %d did not greet on %s (%s); left as it is",
          vm->pid, json_string_value(json_object_get(vm->layout, "qmp")),
          orr_strerror(status));
      orr__vm_attached(vm, status, &e);
      return;
    }
    if (!vm->exited)
      vm->backend->kill(vm); /* the exit reports QEMU's own words */
    return;
  }
  orr_qmp_on_event(vm->qmp, on_event, vm);
  if (!vm->attaching && json_object_get(vm->layout, "incoming") != NULL) {
    start_incoming(vm);
    return;
  }
  if (send_status(vm) != 0)
    fail_launch(vm, ORR_EVMGONE, "QEMU went away during start-up");
}

static void on_incoming(void *arg, int status, json_t *result,
                        const char *errmsg) {
  orr_vm *vm = arg;
  (void)result;
  if (vm->state != ORR_VM_CREATING || status == ORR_EVMGONE)
    return; /* gone: the exit reports itself */
  if (status != 0) {
    char what[700];
    snprintf(what, sizeof what, "QEMU did not take the saved state %s: %s",
             vm->restore, errmsg);
    fail_launch(vm, status, what);
    return;
  }
  if (send_status(vm) != 0)
    fail_launch(vm, ORR_EVMGONE, "QEMU went away during start-up");
}

static void on_incoming_caps(void *arg, int status, json_t *result,
                             const char *errmsg) {
  orr_vm *vm = arg;
  const json_t *in = json_object_get(vm->layout, "incoming");
  uint64_t now, end = vm->launch_ms + launch_limit(vm);
  if (status != 0) {
    on_incoming(arg, status, result, errmsg);
    return;
  }
  uv_update_time(vm->eng->loop);
  now = uv_now(vm->eng->loop);
  if (orr_qmp_send_timed(vm->qmp, "migrate-incoming",
                         json_pack("{s:O}", "uri", json_object_get(in, "uri")),
                         end > now ? end - now : 1, on_incoming, NULL, vm) != 0)
    fail_launch(vm, ORR_EVMGONE, "QEMU went away during start-up");
}

/* A clone loads the template's state with x-ignore-shared: QEMU 7.2 takes
** the capability only by QMP, so the launch was -incoming defer and the
** migration starts here (from the descriptor QEMU inherited). With events
** on too, the MIGRATION event says when the load ended (on_event), so the
** clone does not wait for the next tick of the status poll. */
static void start_incoming(orr_vm *vm) {
  uint64_t now, end = vm->launch_ms + launch_limit(vm);
  uv_update_time(vm->eng->loop);
  now = uv_now(vm->eng->loop);
  if (orr_qmp_send_timed(
          vm->qmp, "migrate-set-capabilities",
          json_pack("{s:[{s:s, s:b}, {s:s, s:b}]}", "capabilities",
                    "capability", "x-ignore-shared", "state", 1, "capability",
                    "events", "state", 1),
          end > now ? end - now : 1, on_incoming_caps, NULL, vm) != 0)
    fail_launch(vm, ORR_EVMGONE, "QEMU went away during start-up");
}

static void on_health(void *arg, int responsive, const char *command,
                      uint64_t ms) {
  orr__vm_health(arg, responsive != 0, command, ms);
}

/* QMP options common to a launch and an attach. */
static void qmp_options(orr_vm *vm, orr_qmp_options *qo, uint64_t ms) {
  memset(qo, 0, sizeof *qo);
  qo->path = json_string_value(json_object_get(vm->layout, "qmp"));
  qo->timeout_ms = ms;
  qo->command_timeout_ms = ORR_VM_TIMEOUT_MS;
  qo->ready_cb = on_ready;
  qo->closed_cb = on_qmp_closed;
  qo->health_cb = on_health;
  qo->arg = vm;
  qo->log_id = vm->id;
}

static void on_qmp_closed(void *arg, int reason) {
  orr_vm *vm = arg;
  (void)reason;
  /* Without its monitor the VM cannot be driven: end it, so the state the
  ** engine reports (Stopped) is the truth. A QEMU told to quit closes the
  ** socket just before it exits: leave that one alone. */
  if (!vm->exited && vm->proc && !vm->quitting)
    orr_process_kill(vm->proc, SIGKILL);
}

static void on_qemu_exit(void *arg, int64_t status, int signal) {
  orr_vm *vm = arg;
  if (vm->state == ORR_VM_CREATING)
    fail_launch(vm, ORR_EBACKEND, "QEMU exited during start-up");
  orr__cgroup_remove(vm->cgroup);
  orr__vm_exited(vm, status, signal, NULL);
}

void orr__qemu_vm_config(const orr_vm *vm, orr_qemu_config *cfg) {
  orr__qemu_config_init(cfg);
  cfg->run_dir = vm->run_dir;
  cfg->accel = vm->accel;
  if (vm->opts.hotplug_ports > 0)
    cfg->hotplug_ports = vm->opts.hotplug_ports;
  cfg->guest_agent = vm->opts.guest_agent == 1;
  cfg->memory_max_mb = vm->opts.memory_max_mb;
  cfg->restore_path = vm->restore;
  cfg->ram_file = vm->template_ram;
  cfg->ram_shared = vm->template_ram != NULL && vm->opts.template_boot;
  cfg->vmgenid_guid = vm->template_ram != NULL ? vm->vmgenid : NULL;
  if (vm->incoming) {
    cfg->incoming = true;
    cfg->pin_ports = json_object_get(vm->incoming_layout, "ports");
    if (cfg->pin_ports == NULL)
      cfg->pin_ports = json_null(); /* refused by the translation */
    cfg->memory_mb = vm->boot_mb;
    /* What the source grew into, placed and mapped as it has them. */
    cfg->memory_max_mb = (unsigned long long)json_integer_value(json_object_get(
        json_object_get(vm->incoming_layout, "virtio_mem"), "max_mb"));
    cfg->pin_memory = json_object_get(vm->incoming_layout, "hotplug_memory");
    cfg->pin_memaddr = json_object_get(vm->incoming_layout, "memory_devices");
    cfg->pipes = json_object_get(vm->incoming_layout, "pipes");
  }
  if (vm->opts.qemu_binary)
    cfg->binary = vm->opts.qemu_binary;
  orr__qemu_probe_host(&cfg->host);
}

/* Everything that can be refused without touching the host: the argv and
** layout, and a saved state that cannot be read. */
static int qemu_prepare(orr_vm *vm, orr_error *e) {
  orr_qemu_config cfg;
  json_t *argv = NULL, *layout = NULL;
  int rc;
  if (vm->argv != NULL)
    return 0;
  orr__qemu_vm_config(vm, &cfg);
  if (json_object_size(cfg.pipes) > 0 && vm->eng->policy != NULL) {
    const char *host =
        json_object_iter_key(json_object_iter((json_t *)cfg.pipes));
    return orr_error_set(e, ORR_ENOTSUP,
                         "VirtualMachine/Devices/MappedPipes/%s: a confined "
                         "engine cannot receive a mapped pipe (QEMU listens "
                         "on the path itself)",
                         host);
  }
  /* What QEMU will inherit stays open until it is spawned. */
  cfg.hr = orr__hostres_new(vm->eng->policy, ORR_HR_BOOT, false);
  if (cfg.hr == NULL)
    return orr_error_set(e, ORR_ENOMEM, "out of memory");
  if ((rc = orr__qemu_argv(vm->doc, &cfg, &argv, &layout, e)) != 0) {
    orr__hostres_free(cfg.hr);
    return rc;
  }
  vm->argv = argv;
  vm->layout = layout;
  vm->boot_res = cfg.hr;
  return 0;
}

static int qemu_launch(orr_vm *vm, orr_error *e) {
  orr_qemu_config cfg;
  json_t *argv;
  const char **cargv;
  orr_process_options po;
  orr_qmp_options qo;
  size_t i, n;
  mode_t mask;
  int rc, terminate;
  if ((rc = qemu_prepare(vm, e)) != 0)
    return rc;
  argv = vm->argv;
  orr__qemu_vm_config(vm, &cfg);
  if ((rc = claim_run_dir(vm, e)) != 0)
    return rc;
  vm->owns_run_dir = true;
  if ((rc = orr__qemu_prepare_files(&cfg, vm->doc, e)) != 0 ||
      (rc = orr__qemu_console_start(vm, true, e)) != 0) {
    orr__qemu_console_stop(vm);
    remove_run_dir(vm);
    return rc;
  }
  n = json_array_size(argv);
  cargv = calloc(n + 1, sizeof *cargv);
  for (i = 0; i < n; i++)
    cargv[i] = json_string_value(json_array_get(argv, i));
  terminate = !json_is_false(
      json_object_get(vm->doc, "ShouldTerminateOnLastHandleClosed"));
  memset(&po, 0, sizeof po);
  po.argv = cargv;
  po.flags = terminate ? ORR_PROCESS_KILL_WITH_PARENT : 0;
  po.exit_cb = on_qemu_exit;
  po.arg = vm;
  po.inherit = orr__hostres_fds(vm->boot_res, &po.ninherit);
  /* A confined engine's QEMU also runs under Landlock. */
  vm->confined = vm->eng->policy != NULL;
  if (vm->confined &&
      (rc = orr__landlock_qemu(vm->run_dir, vm->boot_res, &po.landlock_ruleset,
                               &vm->landlock_abi, e)) != 0) {
    free(cargv);
    remove_run_dir(vm);
    return rc;
  }
  /* Kept with the layout: an engine that re-attaches reports the same. */
  if (vm->confined)
    json_object_set_new(vm->layout, "confinement",
                        json_pack("{s:b, s:i}", "descriptors", 1, "landlock",
                                  vm->landlock_abi));
  /* QEMU creates its sockets with the process umask: 0177 makes qmp.sock,
  ** qga.sock and vnc.sock 0600 like its pidfile. The fork happens inside
  ** this call, so the engine's own umask is back right after. */
  mask = umask(0177);
  rc = orr_process_spawn(vm->eng->loop, &po, &vm->proc, e);
  umask(mask);
  free(cargv);
  /* QEMU has its copies now (or never will). */
  orr__hostres_free(vm->boot_res);
  vm->boot_res = NULL;
  if (po.landlock_ruleset > 0)
    close(po.landlock_ruleset);
  if (rc != 0) {
    remove_run_dir(vm);
    return rc;
  }
  vm->pid = orr_process_pid(vm->proc);
  /* Its identity for a later orrery.open: the start time never changes
  ** (exec keeps it) and no later process with this pid shares it. */
  vm->start_time = orr__pid_start_time(vm->pid);
  uv_update_time(vm->eng->loop);
  vm->launch_ms = uv_now(vm->eng->loop);
  qmp_options(vm, &qo, handshake_limit(vm));
  if ((rc = orr_qmp_connect(vm->eng->loop, &qo, &vm->qmp)) != 0) {
    /* The caller frees vm: nothing of the child may call back into it. */
    orr_process_close(vm->proc, NULL);
    vm->proc = NULL;
    remove_run_dir(vm);
    return orr_error_set(e, rc, "cannot connect QMP at %s", qo.path);
  }
  return 0;
}

static int qemu_send(orr_vm *vm, const char *cmd, json_t *args,
                     uint64_t timeout_ms, orr_qmp_reply_cb cb,
                     orr_qmp_reply_cb late, void *arg) {
  if (vm->qmp == NULL) {
    json_decref(args);
    return ORR_EVMGONE;
  }
  if (strcmp(cmd, "quit") == 0)
    vm->quitting = true;
  if (strcmp(cmd, "remove-fd") == 0 && vm->state != ORR_VM_RUNNING &&
      vm->layout != NULL)
    orr__qemu_linger_fdset(vm, args);
  return orr_qmp_send_timed(vm->qmp, cmd, args, timeout_ms, cb, late, arg);
}

static int qemu_send_fd(orr_vm *vm, const char *cmd, json_t *args, int fd,
                        uint64_t timeout_ms, orr_qmp_reply_cb cb,
                        orr_qmp_reply_cb late, void *arg) {
  if (vm->qmp == NULL) {
    json_decref(args);
    close(fd);
    return ORR_EVMGONE;
  }
  return orr_qmp_send_fd(vm->qmp, cmd, args, fd, timeout_ms, cb, late, arg);
}

static void qemu_kill(orr_vm *vm) {
  if (vm->exited)
    return;
  if (vm->proc)
    orr_process_kill(vm->proc, SIGKILL);
  else if (vm->pidwatch)
    orr__pidwatch_kill(vm->pidwatch, SIGKILL);
}

static void on_pid_gone(void *arg) {
  orr_vm *vm = arg;
  /* Not our child: the exit status went to whoever reaps it. */
  if (vm->state == ORR_VM_CREATING || vm->attaching)
    fail_launch(vm, ORR_EVMGONE, "QEMU exited while re-attaching");
  orr__cgroup_remove(vm->cgroup);
  orr__vm_exited(vm, -1, 0, "exited (status unknown: not our child)");
}

/* The VM's process identity from its state file, and the proof that the
** pid is still that process (start time, owner, its QMP socket's argument
** on the command line). Also finds a CPU-limit cgroup a dead engine left. */
static int qemu_prove(orr_vm *vm, const json_t *st, int *pidfd, orr_error *e) {
  char arg[600], name[128];
  int rc;
  vm->pid = (int)json_integer_value(json_object_get(st, "ProcessId"));
  vm->start_time =
      (unsigned long long)json_integer_value(json_object_get(st, "StartTime"));
  if (orr__qemu_qmp_chardev(arg, sizeof arg, vm->run_dir) != 0)
    return orr_error_set(e, ORR_EINVAL, "runtime directory %s is too long",
                         vm->run_dir);
  if ((rc = orr__pid_prove(vm->pid, vm->start_time, arg, pidfd, e)) != 0) {
    if (rc == ORR_ENOENT)
      return orr_error_set(e, ORR_ENOENT,
                           "VM \"%s\" is not running (QEMU pid %d is gone; "
                           "its runtime directory %s is stale)",
                           vm->id, vm->pid, vm->run_dir);
    return rc;
  }
  if (vm->cgroup[0] == '\0') {
    snprintf(name, sizeof name, "%s-%.8s", vm->id, vm->runtime_id);
    orr__cgroup_find(vm->cgroup, sizeof vm->cgroup, name);
  }
  return 0;
}

/* orrery.open: prove the process is this VM's QEMU, watch it through the
** pidfd the proof opened, and connect QMP. A previous engine's QMP
** connection is gone with it, so QEMU accepts ours; a live one means
** another engine has it, which the lock already excluded. */
static int qemu_attach(orr_vm *vm, const json_t *st, orr_error *e) {
  orr_qmp_options qo;
  int rc, fd = -1;
  {
    const json_t *c = json_object_get(vm->layout, "confinement");
    vm->confined = json_is_true(json_object_get(c, "descriptors"));
    vm->landlock_abi = (int)json_integer_value(json_object_get(c, "landlock"));
  }
  if ((rc = qemu_prove(vm, st, &fd, e)) != 0)
    return rc;
  if ((rc = orr__pidwatch_start(vm->eng->loop, fd, on_pid_gone, vm,
                                &vm->pidwatch, e)) != 0)
    return rc;
  {
    /* Its console reads on where the last engine stopped; without it the
    ** VM still works. */
    orr_error ce;
    if (orr__qemu_console_start(vm, false, &ce) != 0)
      orr_log(ORR_LOG_WARN, "console", vm->id, "%s", ce.msg);
  }
  uv_update_time(vm->eng->loop);
  vm->launch_ms = uv_now(vm->eng->loop);
  qmp_options(vm, &qo, handshake_limit(vm));
  if ((rc = orr_qmp_connect(vm->eng->loop, &qo, &vm->qmp)) != 0) {
    orr__pidwatch_close(vm->pidwatch, NULL);
    vm->pidwatch = NULL;
    return orr_error_set(e, rc, "cannot connect QMP at %s", qo.path);
  }
  vm->launched = true;
  return 0;
}

/* Both handles must be closed before the VM can be freed. */
static void handle_closed(void *arg) {
  orr_vm *vm = arg;
  if (--vm->pid_closing == 0) {
    if (!vm->detached)
      remove_run_dir(vm); /* a detached VM's directory is how to reopen it */
    orr__vm_released(vm);
  }
}

static void qemu_release(orr_vm *vm) {
  stop_restore_poll(vm);
  orr__qemu_console_stop(vm);
  vm->pid_closing = 1;
  if (vm->qmp) {
    vm->pid_closing++;
    orr_qmp_close(vm->qmp, handle_closed);
    vm->qmp = NULL;
  }
  if (vm->proc) {
    vm->pid_closing++;
    if (vm->detached && !vm->exited)
      orr_process_detach(vm->proc, handle_closed);
    else
      orr_process_close(vm->proc, handle_closed);
    vm->proc = NULL;
  }
  if (vm->pidwatch) {
    vm->pid_closing++;
    orr__pidwatch_close(vm->pidwatch, handle_closed);
    vm->pidwatch = NULL;
  }
  handle_closed(vm);
}

/* A confined engine runs only its own QEMU: a binary of the caller's
** choosing would be a host program run on the caller's say-so. */
static int qemu_check_options(const orr_vm *vm, orr_error *e) {
  if (vm->eng->policy != NULL && vm->opts.qemu_binary != NULL)
    return orr_error_set(e, ORR_EPERM,
                         "sandbox: create: opts.qemu_binary is not allowed (it "
                         "runs a host program; a confined engine runs only "
                         "its own %s)",
                         ORR_QEMU_DEFAULT_BINARY);
  return 0;
}

/* A template's role, and how QEMU is confined: -sandbox always; more for a
** confined engine. */
static void qemu_properties(const orr_vm *vm, json_t *p) {
  json_t *mp = json_object(), *v;
  const char *key;
  /* A template or a clone of one: its RAM file and generation id. */
  if (vm->template_ram)
    json_object_set_new(p, "Template",
                        json_pack("{s:s, s:s, s:s}", "Role",
                                  vm->opts.template_boot ? "template" : "clone",
                                  "RamFile", vm->template_ram, "GenerationId",
                                  vm->vmgenid));
  json_object_set_new(p, "Confinement",
                      json_pack("{s:b, s:b, s:i}", "Seccomp", 1, "Descriptors",
                                vm->confined, "Landlock", vm->landlock_abi));
  /* Mapped pipes: no HCS document field holds them; the layout does. */
  json_object_foreach(json_object_get(vm->layout, "pipes"), key, v) {
    json_object_set_new(
        mp, key,
        json_pack("{s:O, s:s+}", "Name", json_object_get(v, "name"),
                  "GuestPath", "/dev/virtio-ports/",
                  json_string_value(json_object_get(v, "name"))));
  }
  json_object_set_new(p, "MappedPipes", mp);
}

const orr_backend orr__backend_qemu = {
    .name = "qemu",
    .run_files = orr__qemu_run_files,
    .pidfile = ORR_QEMU_PIDFILE,
    .check_options = qemu_check_options,
    .prepare = qemu_prepare,
    .launch = qemu_launch,
    .send = qemu_send,
    .send_fd = qemu_send_fd,
    .verb = orr__qemu_verb,
    .save = orr__qemu_save,
    .disk_snapshot = orr__qemu_disk_snapshot,
    .disk_commit = orr__qemu_disk_commit,
    .raw = orr__qemu_raw,
    .plan_change = orr__qemu_plan_change,
    .commit = orr__qemu_commit,
    .abandon = orr__qemu_abandon,
    .device_gone = orr__qemu_device_gone,
    .cpu_limits = qemu_cpu_limits,
    .properties = qemu_properties,
    .guest_socket = orr__qemu_guest_socket,
    .kill = qemu_kill,
    .release = qemu_release,
    .check_state = orr__qemu_check_state,
    .attach = qemu_attach,
    .prove = qemu_prove,
    .reconcile = orr__qemu_reconcile,
    .console_write = orr__qemu_console_write,
    .console_drain = orr__qemu_console_drain,
    .stats = orr__qemu_stats,
    .migrate_plan = orr__qemu_migrate_plan,
    .migrate_arrived = orr__qemu_migrate_arrived,
};

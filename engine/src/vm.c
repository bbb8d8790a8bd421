/*
** VM lifecycle: create, start, pause, resume, save, shutdown, terminate,
** wait, close, properties and events. Backends only translate and send;
** state, the live document and callers' requests are kept here.
*/
#include <ctype.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "orrery/document.h"
#include "orrery/guest_image.h"
#include "policy_host.h"
#include "orrery/log.h"
#include "vm_internal.h"

/* Health is what the deadlines show: a VM turns unresponsive when a step
** misses its deadline, and responsive at the backend's next answer (the
** late answer to that step at the latest: QEMU answers in order). */
void orr__vm_health(orr_vm *vm, bool responsive, const char *command,
                    uint64_t ms) {
  json_t *ev;
  if (responsive == !vm->unresponsive)
    return;
  vm->unresponsive = !responsive;
  if (responsive) {
    ev = json_pack("{s:s, s:I}", "Command", command, "UnresponsiveMs",
                   (json_int_t)ms);
  } else {
    vm->unresponsive_at = orr__now_ms();
    vm->unresponsive_timeout_ms = ms;
    snprintf(vm->unresponsive_cmd, sizeof vm->unresponsive_cmd, "%s", command);
    ev = json_pack("{s:s, s:I}", "Command", command, "TimeoutMs",
                   (json_int_t)ms);
  }
  orr__vm_emit(vm, responsive ? "responsive" : "unresponsive", ev);
  json_decref(ev);
}

static void set_state(orr_vm *vm, orr_vm_st st) {
  json_t *ev;
  orr_vm_st prev = vm->state;
  if (prev == st)
    return;
  vm->state = st;
  if (st == ORR_VM_RUNNING)
    vm->has_run = true;
  ev = json_pack("{s:s, s:s}", "State", orr__vm_st_name(st), "Previous",
                 orr__vm_st_name(prev));
  orr__vm_emit(vm, "state", ev);
  json_decref(ev);
}

static json_t *exit_info(const orr_vm *vm) {
  return json_pack("{s:I, s:i, s:s}", "ExitCode", (json_int_t)vm->exit_code,
                   "Signal", vm->exit_signal, "Reason", vm->exit_reason);
}

json_t *orr_vm_properties(const orr_vm *vm) {
  json_t *p =
      json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "Id", vm->id, "RuntimeId",
                vm->runtime_id, "State", orr_vm_state(vm), "Backend",
                vm->backend->name, "Owner",
                json_string_value(json_object_get(vm->doc, "Owner"))
                    ? json_string_value(json_object_get(vm->doc, "Owner"))
                    : "",
                "RuntimeDirectory", vm->run_dir);
  const json_t *topo = json_object_get(
      json_object_get(vm->doc, "VirtualMachine"), "ComputeTopology");
  json_t *devs =
      json_object_get(json_object_get(vm->doc, "VirtualMachine"), "Devices");
  json_t *scsi = json_object_get(devs, "Scsi"), *ctl;
  const char *key;
  json_int_t disks = 0;
  json_object_foreach(scsi, key, ctl) disks +=
      (json_int_t)json_object_size(json_object_get(ctl, "Attachments"));
  /* A summary of the live document; vm:document() has all of it. */
  json_object_set_new(
      p, "Summary",
      json_pack(
          "{s:O?, s:O?, s:I, s:I, s:I, s:I}", "MemoryInMB",
          json_object_get(json_object_get(topo, "Memory"), "SizeInMB"),
          "ProcessorCount",
          json_object_get(json_object_get(topo, "Processor"), "Count"),
          "ScsiControllers", (json_int_t)json_object_size(scsi), "ScsiDisks",
          disks, "VirtualPciDevices",
          (json_int_t)json_object_size(json_object_get(devs, "VirtualPci")),
          "NetworkAdapters",
          (json_int_t)json_object_size(
              json_object_get(devs, "NetworkAdapters"))));
  if (vm->pid > 0)
    json_object_set_new(p, "ProcessId", json_integer(vm->pid));
  if (vm->accel[0])
    json_object_set_new(p, "Accel", json_string(vm->accel));
  if (vm->backend->properties)
    vm->backend->properties(vm, p);
  if (vm->exited) {
    json_object_set_new(p, "Exit", exit_info(vm));
    return p;
  }
  json_object_set_new(p, "Responsive", json_boolean(!vm->unresponsive));
  if (vm->unresponsive)
    json_object_set_new(
        p, "Unresponsive",
        json_pack("{s:s, s:I, s:I}", "Command", vm->unresponsive_cmd,
                  "TimeoutMs", (json_int_t)vm->unresponsive_timeout_ms, "ForMs",
                  (json_int_t)(orr__now_ms() - vm->unresponsive_at)));
  /* Changes whose caller got ETIMEDOUT and that the backend has not
  ** settled. */
  json_t *doubt = json_array();
  for (const orr_req *r = vm->reqs; r; r = r->next)
    if (r->in_doubt && !r->settled)
      json_array_append_new(
          doubt,
          json_string(
              r->reserve
                  ? r->reserve
                  : json_string_value(json_object_get(
                        json_array_get(json_object_get(r->plan, "do"), r->step),
                        "execute"))));
  if (json_array_size(doubt) > 0)
    json_object_set_new(p, "InDoubt", doubt);
  else
    json_decref(doubt);
  /* A VM that outlives its engine: whether state.json still describes it
  ** (false only after a change that could be neither written down nor
  ** rolled back; re-opening then settles it from what the VM reports). */
  if (vm->backend->attach != NULL && orr__vm_keeps_state(vm)) {
    json_object_set_new(p, "Durable", json_boolean(!vm->not_durable));
    if (vm->not_durable)
      json_object_set_new(p, "DurableError", json_string(vm->durable_err));
  }
  return p;
}

static int check_id(const char *id, orr_error *e) {
  size_t n = strlen(id);
  if (n == 0 || n > 64 || !isalnum((unsigned char)id[0]))
    goto bad;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)id[i]) && !strchr("_.-", id[i]))
      goto bad;
  return 0;
bad:
  return orr_error_set(e, ORR_EINVAL,
                       "create: id must be 1..64 characters of [A-Za-z0-9_.-] "
                       "starting with a letter or digit, got \"%s\"",
                       id);
}

static void random_guid(char out[37]) {
  unsigned char b[16];
  if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
    memset(b, 0x5a, sizeof b);
  b[6] = (b[6] & 0x0f) | 0x40; /* version 4 */
  b[8] = (b[8] & 0x3f) | 0x80; /* RFC 4122 variant */
  snprintf(out, 37,
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x"
           "%02x",
           b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10],
           b[11], b[12], b[13], b[14], b[15]);
}

static void launch_after(orr_vm *vm, orr_vm *gone);

/* An option of another kind of backend is a mistake, not a hint: refused,
** naming it. (accel, hotplug_ports and guest_agent stay defaults a remote
** backend ignores, so a recipe written for one host plans on a cluster
** unchanged.) */
static int check_remote_opts(const orr_backend *b, const orr_vm_options *o,
                             orr_error *e) {
  const char *host = o->restore       ? "restore"
                     : o->qemu_binary ? "qemu_binary"
                     : o->runtime_dir ? "runtime_dir"
                                      : NULL;
  const char *remote = o->kubeconfig       ? "kubeconfig"
                       : o->kube_namespace ? "namespace"
                       : o->sources        ? "sources"
                       : o->dry_run        ? "dry_run"
                                           : NULL;
  const char *bad = b->remote ? host : remote;
  if (bad != NULL)
    return orr_error_set(e, ORR_EINVAL,
                         "create: opts.%s is not an option of the %s backend",
                         bad, b->name);
  return 0;
}

/* A confined engine's rules for the create options, once every default is
** applied (the runtime directory computed): no program of the caller's
** choosing, a runtime directory the caller may write. The saved state and
** the document's paths are judged where they are opened (hostres.h). */
static int check_confined(const orr_vm *vm, const orr_vm_options *opts,
                          orr_error *e) {
  const orr_policy *p = vm->eng->policy;
  int rc;
  if (p == NULL)
    return 0;
  if (vm->backend->check_options != NULL &&
      (rc = vm->backend->check_options(vm, e)) != 0)
    return rc;
  if (opts->runtime_dir != NULL &&
      (rc = orr__policy_check_new_dir(p, vm->run_dir,
                                      "create: opts.runtime_dir", e)) != 0)
    return rc;
  return 0;
}

/* engine->vm_free: what orr__vm_released calls once nothing needs the VM. */
void orr__vm_free(orr_vm *vm) {
  for (orr_vm **p = &vm->eng->vms; *p; p = &(*p)->next)
    if (*p == vm) {
      *p = vm->next;
      break;
    }
  if (vm->kill_timer)
    uv_close((uv_handle_t *)vm->kill_timer, (uv_close_cb)free);
  for (orr_vm *w = vm->eng->vms; w; w = w->next)
    if (w->after == vm)
      launch_after(w, vm);
  json_decref(vm->doc);
  json_decref(vm->layout);
  json_decref(vm->argv);
  json_decref(vm->plan_log);
  json_decref(vm->p9_index);
  json_decref(vm->reserved);
  json_decref(vm->settling);
  json_decref(vm->incoming_layout);
  orr__vm_journal_free(vm);
  orr__vm_console_free(vm);
  if (vm->run_dir_fd >= 0)
    close(vm->run_dir_fd); /* and with it the VM's lock */
  orr__hostres_free(vm->boot_res);
  free(vm->restore);
  free(vm->template_ram);
  free((char *)vm->opts.qemu_binary);
  free(vm);
}

/* What the VM layer keeps from its document: the default guest's agent
** port, the boot memory, the 9p share order. Takes norm. */
static void adopt_doc(orr_vm *vm, json_t *norm) {
  json_t *shares, *share;
  size_t i;
  json_decref(vm->doc);
  vm->doc = norm;
  json_object_clear(vm->p9_index);
  if (vm->opts.guest_agent < 0) {
    /* The default guest runs qemu-ga: give it its port unless told not to.
    ** It is known by the manifest next to its kernel, wherever it lies. */
    const char *k = json_string_value(json_object_get(
        json_object_get(
            json_object_get(json_object_get(norm, "VirtualMachine"), "Chipset"),
            "LinuxKernelDirect"),
        "KernelFilePath"));
    vm->opts.guest_agent = orr_guest_image_is_kernel(k);
  }
  vm->boot_mb = json_integer_value(json_object_get(
      json_object_get(json_object_get(json_object_get(norm, "VirtualMachine"),
                                      "ComputeTopology"),
                      "Memory"),
      "SizeInMB"));
  shares = json_object_get(
      json_object_get(
          json_object_get(json_object_get(norm, "VirtualMachine"), "Devices"),
          "Plan9"),
      "Shares");
  json_array_foreach(shares, i, share) json_object_set_new(
      vm->p9_index, json_string_value(json_object_get(share, "Name")),
      json_integer((json_int_t)i));
}

/* Frees a VM that was never linked into the engine. */
static void vm_discard(orr_vm *vm) {
  json_decref(vm->doc);
  json_decref(vm->plan_log);
  json_decref(vm->reserved);
  json_decref(vm->p9_index);
  json_decref(vm->layout);
  json_decref(vm->argv);
  json_decref(vm->incoming_layout);
  if (vm->run_dir_fd >= 0)
    close(vm->run_dir_fd);
  orr__hostres_free(vm->boot_res);
  free(vm->restore);
  free(vm->template_ram);
  free((char *)vm->opts.qemu_binary);
  free(vm);
}

/* A VM with no document yet, not linked: its id, options, backend and
** runtime directory, checked. */
static int vm_new(orr_engine *eng, const char *id, const orr_vm_options *opts,
                  const char *op, orr_vm **out, orr_error *e) {
  orr_vm *vm;
  int rc;
  if ((rc = check_id(id, e)) != 0)
    return rc;
  for (orr_vm *o = eng->vms; o; o = o->next)
    if (!o->closed && strcmp(o->id, id) == 0)
      return orr_error_set(e, ORR_EEXIST,
                           "%s: a VM with id \"%s\" already exists", op, id);
  vm = calloc(1, sizeof *vm);
  vm->eng = eng;
  vm->run_dir_fd = -1;
  snprintf(vm->id, sizeof vm->id, "%s", id);
  random_guid(vm->runtime_id);
  vm->plan_log = json_array();
  vm->reserved = json_object();
  vm->p9_index = json_object();
  vm->opts = *opts;
  vm->opts.backend = NULL;
  vm->opts.accel = NULL;
  vm->opts.runtime_dir = NULL;
  vm->opts.restore = NULL;
  vm->opts.template_ram = NULL;
  vm->opts.qemu_binary = opts->qemu_binary ? strdup(opts->qemu_binary) : NULL;
  vm->restore = opts->restore ? strdup(opts->restore) : NULL;
  if (opts->template_ram) {
    vm->template_ram = strdup(opts->template_ram);
    random_guid(vm->vmgenid);
  }
  vm->backend = orr__backend_find(eng, opts->backend ? opts->backend : "qemu");
  if (vm->backend == NULL) {
    rc = orr_error_set(e, ORR_EINVAL,
                       "%s: backend must be \"qemu\", \"plan\" or "
                       "\"kubevirt\", got \"%s\"",
                       op, opts->backend);
    goto fail;
  }
  if ((rc = check_remote_opts(vm->backend, opts, e)) != 0)
    goto fail;
  if (opts->runtime_dir)
    snprintf(vm->run_dir, sizeof vm->run_dir, "%s", opts->runtime_dir);
  else
    snprintf(vm->run_dir, sizeof vm->run_dir, "%s/%s", eng->runtime_root, id);
  if (strlen(vm->run_dir) + sizeof "/qmp.sock" > 108) {
    rc = orr_error_set(e, ORR_EINVAL,
                       "%s: runtime directory %s is too long for a unix "
                       "socket path below it (keep it under 98 bytes)",
                       op, vm->run_dir);
    goto fail;
  }
  if ((rc = check_confined(vm, opts, e)) != 0)
    goto fail;
  *out = vm;
  return 0;
fail:
  vm_discard(vm);
  return rc;
}

static int resolve_accel(orr_vm *vm, const char *requested, orr_error *e) {
  const char *accel = orr__accel_resolve(requested ? requested : "auto",
                                         !vm->backend->dry_run, e);
  if (accel == NULL)
    return e ? e->code : ORR_EINVAL;
  snprintf(vm->accel, sizeof vm->accel, "%s", accel);
  return 0;
}

/* Launches vm now, or once a closed VM with its runtime directory is gone;
** what can be refused now still is. */
static int vm_go(orr_vm *vm, const char *op, orr_error *e) {
  int rc;
  vm->state = ORR_VM_CREATING;
  /* A VM just closed under this id may still be quitting, and releasing it
  ** removes the runtime directory: a new QEMU there would lose its files
  ** (or be refused, the old one still running). So the launch waits for
  ** it; what can be refused now still is. */
  if (!vm->backend->dry_run)
    for (orr_vm *o = vm->eng->vms; o; o = o->next)
      if (o != vm && o->closed && strcmp(o->run_dir, vm->run_dir) == 0)
        vm->after = o;
  if (vm->after) {
    if (vm->backend->prepare && (rc = vm->backend->prepare(vm, e)) != 0) {
      orr_error_prefix(e, op);
      return rc;
    }
  } else if ((rc = vm->backend->launch(vm, e)) != 0) {
    orr_error_prefix(e, op);
    return rc;
  } else {
    vm->launched = true;
  }
  return 0;
}

int orr_vm_create(orr_engine *eng, const char *id, const json_t *doc,
                  const orr_vm_options *opts, orr_vm_cb cb, void *arg,
                  orr_vm **out, orr_error *e) {
  orr_vm_options defaults;
  orr_vm *vm;
  json_t *norm = NULL;
  int rc;
  if (opts == NULL) {
    orr_vm_options_init(&defaults);
    opts = &defaults;
  }
  if ((rc = check_id(id, e)) != 0)
    return rc;
  for (orr_vm *o = eng->vms; o; o = o->next)
    if (!o->closed && strcmp(o->id, id) == 0)
      return orr_error_set(e, ORR_EEXIST,
                           "create: a VM with id \"%s\" already exists", id);
  if ((rc = orr_doc_check(doc, &norm, e)) != 0) {
    orr_error_prefix(e, "create");
    return rc;
  }
  if ((rc = vm_new(eng, id, opts, "create", &vm, e)) != 0) {
    json_decref(norm);
    return rc;
  }
  vm->create_cb = cb;
  vm->create_arg = arg;
  adopt_doc(vm, norm);
  /* A cluster's nodes are its own to pick: no accelerator for remote. */
  if ((!vm->backend->remote && (rc = resolve_accel(vm, opts->accel, e)) != 0) ||
      (rc = vm_go(vm, "create", e)) != 0) {
    vm_discard(vm);
    return rc;
  }
  /* Borrowed for the call: the backend copied what it keeps. */
  vm->opts.kubeconfig = vm->opts.kube_namespace = NULL;
  vm->opts.sources = NULL;
  vm->next = eng->vms;
  eng->vms = vm;
  *out = vm;
  return 0;
}

int orr__vm_incoming_new(orr_engine *eng, const char *id,
                         const orr_vm_options *opts, orr_vm_cb cb, void *arg,
                         orr_vm **out, orr_error *e) {
  orr_vm *vm;
  int rc;
  if (opts->restore != NULL)
    return orr_error_set(e, ORR_EINVAL,
                         "receive: opts.restore cannot be given (the state "
                         "comes from the source)");
  if ((rc = vm_new(eng, id, opts, "receive", &vm, e)) != 0)
    return rc;
  if (vm->backend->dry_run || vm->backend->migrate_plan == NULL) {
    vm_discard(vm);
    return orr_error_set(e, ORR_ENOTSUP,
                         "receive: the %s backend cannot receive a VM",
                         vm->backend->name);
  }
  vm->doc = json_object(); /* until the offer brings the live document */
  vm->create_cb = cb;
  vm->create_arg = arg;
  vm->incoming = true;
  vm->state = ORR_VM_CREATING;
  vm->next = eng->vms;
  eng->vms = vm;
  *out = vm;
  return 0;
}

int orr__vm_incoming_launch(orr_vm *vm, json_t *norm, const char *accel,
                            long long boot_mb, orr_error *e) {
  adopt_doc(vm, norm);
  vm->boot_mb = boot_mb; /* the RAM the source booted with */
  int rc = resolve_accel(vm, accel, e);
  if (rc != 0)
    return rc;
  return vm_go(vm, "receive", e);
}

/* The VM vm waited for is gone: launch, unless another closed VM with the
** same runtime directory is still there (then wait for that one). */
static void launch_after(orr_vm *vm, orr_vm *gone) {
  orr_error e = {0, ""};
  int rc;
  vm->after = NULL;
  if (vm->closed)
    return;
  for (orr_vm *o = vm->eng->vms; o; o = o->next)
    if (o != gone && o->closed && strcmp(o->run_dir, vm->run_dir) == 0) {
      vm->after = o;
      return;
    }
  if ((rc = vm->backend->launch(vm, &e)) != 0) {
    orr__vm_launched(vm, rc, &e);
    return;
  }
  vm->launched = true;
}

static void create_done(void *arg);

void orr__vm_incoming_done(orr_vm *vm, bool running) {
  vm->incoming = false;
  vm->has_run = true;
  set_state(vm, running ? ORR_VM_RUNNING : ORR_VM_PAUSED);
  orr__vm_dirty(vm);
  orr__defer(vm->eng, create_done, vm);
}

static void create_done(void *arg) {
  orr_vm *vm = arg;
  orr_vm_cb cb = vm->create_cb;
  orr_error ok = {0, ""};
  vm->create_cb = NULL;
  if (cb)
    cb(vm->create_arg, 0, &ok, NULL);
}

typedef struct {
  orr_vm *vm;
  orr_vm_cb cb;
  void *arg;
  orr_error err;
} create_fail;

static void create_failed(void *p) {
  create_fail *f = p;
  if (f->cb)
    f->cb(f->arg, f->err.code, &f->err, NULL);
  free(f);
}

/* A VM that keeps state is created once its state is on disk: a VM whose
** engine dies next must be one orrery.open can find. */
static void create_written(void *arg, int status, const orr_error *e) {
  orr_vm *vm = arg;
  if (status == 0) {
    create_done(vm);
    return;
  }
  if (vm->exited || vm->create_cb == NULL)
    return; /* closed or gone meanwhile: nothing to report */
  orr__vm_launched(vm, ORR_EIO, e);
  vm->backend->kill(vm); /* our child, not yet handed out */
}

void orr__vm_launched(orr_vm *vm, int status, const orr_error *e) {
  if (status != 0 && vm->attaching)
    vm->attach_failed = true; /* an open that failed touches nothing more */
  if (status != 0 && vm->incoming)
    orr__mig_launch_failed(vm, status, e); /* the source hears it now */
  /* A launch fails once: the kill that follows a missed deadline must not
  ** report again (its EBACKEND would hide the ETIMEDOUT). */
  if (status != 0 && vm->create_cb == NULL)
    return;
  if (status == 0 && vm->incoming) {
    orr__mig_launched(vm); /* it waits for the stream, still Creating */
    return;
  }
  if (status == 0) {
    /* A restored VM keeps the paused state it was saved in; a re-attached
    ** one already has the state QEMU reported. */
    bool opened = vm->state != ORR_VM_CREATING;
    if (!opened)
      set_state(vm, vm->restore ? ORR_VM_PAUSED : ORR_VM_CREATED);
    if (!opened && orr__vm_keeps_state(vm)) {
      orr__vm_sync(vm, "create", create_written, vm);
      return;
    }
    orr__vm_dirty(vm); /* a re-attached one: what reconcile settled */
    orr__defer(vm->eng, create_done, vm);
    return;
  }
  create_fail *f = calloc(1, sizeof *f);
  f->vm = vm;
  f->cb = vm->create_cb;
  f->arg = vm->create_arg;
  f->err = *e;
  f->err.code = status;
  orr_error_prefix(&f->err, vm->attaching  ? "open"
                            : vm->incoming ? "receive"
                                           : "create");
  vm->create_cb = NULL;
  orr__defer(vm->eng, create_failed, f);
}

void orr__vm_running(orr_vm *vm, bool running) {
  if (!running && vm->state == ORR_VM_RUNNING)
    set_state(vm, ORR_VM_PAUSED);
  else if (running &&
           (vm->state == ORR_VM_PAUSED || vm->state == ORR_VM_CREATED))
    set_state(vm, ORR_VM_RUNNING);
}

void orr__vm_stopping(orr_vm *vm, const char *reason) {
  vm->quitting = true; /* the process exits next, its channel closes first */
  if (reason)
    snprintf(vm->exit_reason, sizeof vm->exit_reason, "%s", reason);
}

void orr__vm_exited(orr_vm *vm, long long code, int signal,
                    const char *reason) {
  json_t *info;
  if (vm->exited)
    return;
  vm->exited = true;
  /* What the guest printed last comes before its exit, and failures below
  ** carry it. */
  if (vm->backend->console_drain != NULL)
    vm->backend->console_drain(vm);
  if (vm->kill_timer)
    uv_timer_stop(vm->kill_timer);
  vm->exit_code = code;
  vm->exit_signal = signal;
  vm->unresponsive = false; /* nothing left to answer */
  if (signal != 0)
    snprintf(vm->exit_reason, sizeof vm->exit_reason, "killed by signal %d",
             signal);
  else if (vm->exit_reason[0] == '\0')
    snprintf(vm->exit_reason, sizeof vm->exit_reason, "%s",
             reason ? reason : "exited");
  orr__vm_unpersist(vm); /* nothing left to re-attach to */
  orr__mig_exited(vm);
  set_state(vm, ORR_VM_STOPPED);
  info = exit_info(vm);
  orr__vm_emit(vm, "exit", info);
  for (orr_req *r = vm->reqs; r; r = r->next)
    if (r->wait_exit && !r->done) {
      json_decref(r->result);
      r->result = json_incref(info);
      orr__req_finish(r, 0, NULL);
    }
  json_decref(info);
  orr__req_fail_all(vm, ORR_EVMGONE);
  orr__vm_console_exited(vm);
  if (vm->closed)
    vm->backend->release(vm);
}

/* ---- lifecycle requests ---- */

/* A request whose plan is the backend's step for verb (NULL: the backend
** could not plan it, and r has failed). */
static orr_req *verb_req(orr_vm *vm, orr_vm_cb cb, void *arg, orr_verb verb,
                         uint64_t timeout_ms) {
  orr_req *r = orr__req_new(vm, cb, arg);
  json_t *step = NULL;
  orr_error e = {0, ""};
  r->timeout_ms = timeout_ms;
  if (vm->backend->verb(vm, verb, &step, &e) != 0) {
    orr__req_fail(r, e.code ? e.code : ORR_ENOTSUP, "%s", e.msg);
    return NULL;
  }
  r->plan = json_pack("{s:[o]}", "do", step);
  return r;
}

int orr__vm_send_verb(orr_vm *vm, orr_verb verb, uint64_t timeout_ms,
                      orr_backend_reply_cb cb, void *arg) {
  json_t *step = NULL, *args;
  orr_error e = {0, ""};
  int rc;
  if (vm->backend->verb(vm, verb, &step, &e) != 0)
    return e.code ? e.code : ORR_ENOTSUP;
  args = json_object_get(step, "arguments");
  rc = vm->backend->send(
      vm, json_string_value(json_object_get(step, "execute")),
      args ? json_deep_copy(args) : NULL, timeout_ms, cb, NULL, arg);
  json_decref(step);
  return rc;
}

static int state_is(orr_req *r, const char *op, int n, ...) {
  va_list ap;
  orr_error e;
  if (orr__mig_busy(r->vm, op, &e) != 0) {
    orr__req_fail(r, e.code, "%s", e.msg);
    return 0;
  }
  va_start(ap, n);
  for (int i = 0; i < n; i++)
    if (r->vm->state == (orr_vm_st)va_arg(ap, int)) {
      va_end(ap);
      return 1;
    }
  va_end(ap);
  if (r->vm->exited)
    orr__req_fail(r, ORR_EVMGONE, "%s: VM %s is gone (%s)", op, r->vm->id,
                  r->vm->exit_reason);
  else
    orr__req_fail(r, ORR_ESTATE, "%s: VM %s is %s", op, r->vm->id,
                  orr_vm_state(r->vm));
  return 0;
}

static void commit_running(orr_req *r) {
  set_state(r->vm, ORR_VM_RUNNING);
}

static void commit_paused(orr_req *r) {
  set_state(r->vm, ORR_VM_PAUSED);
}

/* Start is for a VM that has never run: a created one, or one restored
** from a saved state, which QEMU brings up paused (HCS starts a VM created
** from a saved state with Start, not Resume). */
void orr_vm_start(orr_vm *vm, uint64_t timeout_ms, orr_vm_cb cb, void *arg) {
  orr_req *r = verb_req(vm, cb, arg, ORR_VERB_START, timeout_ms);
  if (r == NULL)
    return;
  r->commit = commit_running;
  if (vm->restore && !vm->has_run && vm->state == ORR_VM_PAUSED)
    orr__req_run(r);
  else if (state_is(r, "start", 1, ORR_VM_CREATED))
    orr__req_run(r);
}

void orr_vm_pause(orr_vm *vm, uint64_t timeout_ms, orr_vm_cb cb, void *arg) {
  orr_req *r = verb_req(vm, cb, arg, ORR_VERB_PAUSE, timeout_ms);
  if (r == NULL)
    return;
  r->commit = commit_paused;
  if (state_is(r, "pause", 1, ORR_VM_RUNNING))
    orr__req_run(r);
}

void orr_vm_resume(orr_vm *vm, uint64_t timeout_ms, orr_vm_cb cb, void *arg) {
  orr_req *r = verb_req(vm, cb, arg, ORR_VERB_RESUME, timeout_ms);
  if (r == NULL)
    return;
  r->commit = commit_running;
  if (state_is(r, "resume", 1, ORR_VM_PAUSED))
    orr__req_run(r);
}

/* A reply only counted: QEMU's answer changes nothing (quit, cancel). */
static void on_counted_reply(void *arg, int status, json_t *result,
                             const char *errmsg) {
  (void)result, (void)errmsg;
  if (status != ORR_ETIMEDOUT) /* else the late outcome is counted */
    orr__req_replied(arg);
}

/* ---- save: the backend's (backend->save), with the core's deadline ---- */

void orr_vm_save(orr_vm *vm, const json_t *options, uint64_t timeout_ms,
                 orr_vm_cb cb, void *arg) {
  orr_req *r = orr__req_new(vm, cb, arg);
  const char *path =
      json_string_value(json_object_get(options, "SaveStateFilePath"));
  orr_error e = {0, ""};
  int index;
  if (!state_is(r, "save", 1, ORR_VM_PAUSED))
    return;
  if (vm->backend->save == NULL) {
    orr__req_fail(r, ORR_ENOTSUP, "save: the %s backend cannot save a VM",
                  vm->backend->name);
    return;
  }
  /* The engine opens the file (under its policy) and the backend's process
  ** writes to that descriptor: no shell, so any path. */
  r->hr = orr__hostres_new(vm->eng->policy, ORR_HR_QMP, vm->backend->dry_run);
  if (r->hr == NULL ||
      orr__hostres_save(r->hr, path, "save: SaveStateFilePath", &index, &e) !=
          0 ||
      vm->backend->save(r, index, &e) != 0) {
    orr__req_fail(r, e.code ? e.code : ORR_ENOMEM, "%s",
                  e.code ? e.msg : "save: out of memory");
    return;
  }
  r->timeout_ms = timeout_ms ? timeout_ms : ORR_VM_SAVE_TIMEOUT_MS;
  r->data = json_pack("{s:s}", "path", path);
  orr__req_run(r);
}

/* ---- shutdown, terminate, wait ---- */

static void force_kill(uv_timer_t *t) {
  orr_req *r = t->data;
  if (!r->vm->exited)
    r->vm->backend->kill(r->vm);
}

/* Sends the step of verb for r (the backend plans it). */
static int send_verb(orr_req *r, orr_verb verb, orr_backend_reply_cb cb) {
  json_t *step = NULL;
  orr_error e = {0, ""};
  int rc;
  if (r->vm->backend->verb(r->vm, verb, &step, &e) != 0)
    return e.code ? e.code : ORR_ENOTSUP;
  rc = orr__req_send_cmd(r, step, cb, NULL);
  json_decref(step);
  return rc;
}

/* Asks the backend to quit; SIGKILL if it has not exited
** ORR_VM_QUIT_GRACE_MS later. A stopped or hung QEMU never reads the quit,
** and SIGKILL ends it all the same (stopped included). Once per request. */
static void quit_then(orr_req *r) {
  if (r->quitting)
    return;
  r->quitting = true;
  r->timeout_ms = ORR_VM_QUIT_GRACE_MS;
  r->deadline = orr__now_ms() + ORR_VM_QUIT_GRACE_MS;
  if (send_verb(r, ORR_VERB_QUIT, on_counted_reply) != 0)
    r->vm->backend->kill(r->vm);
  orr__req_arm_timer(r, ORR_VM_QUIT_GRACE_MS, force_kill);
}

static void powerdown_expired(uv_timer_t *t) {
  orr_req *r = t->data;
  if (!r->vm->exited)
    quit_then(r);
}

static void on_powerdown_reply(void *arg, int status, json_t *result,
                               const char *errmsg) {
  orr_req *r = arg;
  (void)result;
  if (status == ORR_ETIMEDOUT) {
    /* The backend cannot even pass the request on: no guest will power
    ** off. */
    if (!r->done && !r->vm->exited)
      quit_then(r);
    return;
  }
  if (orr__req_replied(r))
    return;
  if (status == ORR_EBACKEND)
    orr__req_fail(r, status, "%s: %s",
                  json_string_value(json_object_get(r->data, "step")), errmsg);
  /* 0: the guest has until the deadline; EVMGONE: the exit finishes r. */
}

static void powerdown_then(orr_req *r) {
  json_t *step = NULL;
  orr_error e = {0, ""};
  /* The guest may ignore ACPI power-down (a busybox guest does). */
  if (r->vm->backend->verb(r->vm, ORR_VERB_POWERDOWN, &step, &e) != 0) {
    quit_then(r);
    return;
  }
  json_decref(r->data);
  r->data = json_pack("{s:O}", "step", json_object_get(step, "execute"));
  if (orr__req_send_cmd(r, step, on_powerdown_reply, NULL) != 0) {
    json_decref(step);
    quit_then(r);
    return;
  }
  json_decref(step);
  orr__req_arm_timer(r, orr__req_left(r), powerdown_expired);
}

static orr_req *exit_req(orr_vm *vm, orr_vm_cb cb, void *arg) {
  orr_req *r = orr__req_new(vm, cb, arg);
  r->wait_exit = true;
  if (vm->exited) {
    r->result = exit_info(vm);
    orr__req_finish(r, 0, NULL);
    return NULL;
  }
  return r;
}

void orr_vm_shutdown(orr_vm *vm, uint64_t timeout_ms, orr_vm_cb cb, void *arg) {
  orr_req *r = exit_req(vm, cb, arg);
  if (r == NULL)
    return;
  r->timeout_ms = timeout_ms ? timeout_ms : 10000;
  r->plan = json_pack("{s:[]}", "do");
  r->then = powerdown_then;
  orr__req_run(r);
}

void orr_vm_terminate(orr_vm *vm, orr_vm_cb cb, void *arg) {
  orr_req *r = exit_req(vm, cb, arg);
  if (r == NULL)
    return;
  r->plan = json_pack("{s:[]}", "do");
  r->then = quit_then;
  orr__req_run(r);
}

static void wait_expired(uv_timer_t *t) {
  orr_req *r = t->data;
  orr__req_fail(r, ORR_ETIMEDOUT, "wait: VM %s still runs after %llu ms",
                r->vm->id, (unsigned long long)r->timeout_ms);
}

void orr_vm_wait(orr_vm *vm, uint64_t timeout_ms, orr_vm_cb cb, void *arg) {
  orr_req *r = exit_req(vm, cb, arg);
  if (r != NULL && timeout_ms > 0) {
    r->timeout_ms = timeout_ms;
    orr__req_arm_timer(r, timeout_ms, wait_expired);
  }
}

void orr_vm_modify(orr_vm *vm, const json_t *request, const json_t *options,
                   orr_vm_cb cb, void *arg) {
  orr__vm_modify(vm, request, options, cb, arg);
}

static void close_quit_reply(void *arg, int status, json_t *result,
                             const char *errmsg) {
  (void)arg, (void)status, (void)result, (void)errmsg;
}

static void close_kill(uv_timer_t *t) {
  orr_vm *vm = t->data;
  if (!vm->exited)
    vm->backend->kill(vm);
}

void orr_vm_close(orr_vm *vm) {
  if (vm->closed)
    return;
  vm->closed = true;
  vm->event_cb = NULL;
  vm->create_cb = NULL;
  orr__vm_console_cancel(vm);
  orr__mig_closed(vm);
  for (orr_req *r = vm->reqs; r; r = r->next)
    if (!r->done)
      orr__req_fail(r, ORR_ECANCELED, "VM %s was closed", vm->id);
  /* Gone, or never started (waiting for its directory, or its launch
  ** failed), or an open that failed (not ours to stop or to write):
  ** nothing to stop. */
  if (vm->exited || !vm->launched || vm->attach_failed) {
    /* An open that failed lets go of the directory's lock at once: the
    ** VM was never this engine's, and orr_vm_kill_id may take it next. */
    if (vm->attach_failed && vm->run_dir_fd >= 0) {
      close(vm->run_dir_fd);
      vm->run_dir_fd = -1;
    }
    vm->backend->release(vm);
    return;
  }
  if (orr__vm_keeps_state(vm) && vm->backend->attach != NULL) {
    /* The VM outlives this handle: stop watching it, leave it running, and
    ** keep its state on disk for orrery.open. */
    vm->detached = true;
    orr__vm_persist(vm);
    vm->backend->release(vm);
    return;
  }
  if (orr__vm_send_verb(vm, ORR_VERB_QUIT, ORR_VM_QUIT_GRACE_MS,
                        close_quit_reply, NULL) != 0) {
    vm->backend->kill(vm);
    return;
  }
  /* The release (and a create waiting for this id) waits for the exit:
  ** a QEMU that does not obey quit must not hold it up for ever. */
  vm->kill_timer = malloc(sizeof *vm->kill_timer);
  uv_timer_init(vm->eng->loop, vm->kill_timer);
  vm->kill_timer->data = vm;
  uv_timer_start(vm->kill_timer, close_kill, ORR_VM_QUIT_GRACE_MS, 0);
}

void orr_vm_qmp(orr_vm *vm, const char *command, const json_t *arguments,
                uint64_t timeout_ms, orr_vm_cb cb, void *arg) {
  orr_req *r = orr__req_new(vm, cb, arg);
  json_t *step = NULL;
  orr_error e = {0, ""};
  r->timeout_ms = timeout_ms;
  if (vm->backend->raw == NULL ||
      vm->backend->raw(vm, command, arguments, &step, &e) != 0) {
    if (vm->backend->raw == NULL)
      orr__req_fail(r, ORR_ENOTSUP, "qmp: the %s backend takes no raw messages",
                    vm->backend->name);
    else
      orr__req_fail(r, e.code, "%s", e.msg);
    return;
  }
  r->plan = json_pack("{s:[o]}", "do", step);
  if (vm->eng->policy != NULL && !orr__policy_raw_qmp_allowed(command)) {
    orr__req_fail(r, ORR_EPERM,
                  "sandbox: qmp: only read-only commands (query-*, qom-get, "
                  "qom-list) are allowed, not %s",
                  command);
    return;
  }
  orr__req_run(r);
}

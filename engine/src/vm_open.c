/*
** Re-attaching to a VM that outlived its engine (orrery.open), and taking
** its directory to kill it by its pid (vm_reap.c). Above the VM layer
** (vm.c): it reports to the caller through orr__vm_launched, as create.
**
** Re-attaching trusts nothing it has not checked: the runtime directory by
** the rules it was made with (rundir.c, without creating or changing
** anything), held under an exclusive lock for as long as the VM is open
** (a second opener gets EBUSY at once); state.json ours, 0600, a regular
** file, and checked completely (vm_state.c) before use; the process proved
** to be this VM's QEMU by the backend before anything is sent to it.
** Nothing the first engine held is re-opened: what it handed a confined
** QEMU as descriptors, QEMU keeps, and the backend's layout says whose
** they are (docs/threat-model.md, "A confined VM that outlives its
** engine").
*/
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orrery/document.h"
#include "policy_host.h"
#include "rundir.h"
#include "vm_internal.h"

/* A re-attach that found nothing to open at dir + file says so with the
** rule (only VMs made to outlive their engine can be re-attached); any
** other failure keeps its own message under "open". */
static void open_failed(orr_error *e, int rc, const char *id, const char *dir,
                        const char *file) {
  if (rc == ORR_ENOENT)
    orr_error_set(e, ORR_ENOENT,
                  "open: no VM \"%s\" to re-attach to (%s%s does not "
                  "exist); only qemu VMs created with "
                  "ShouldTerminateOnLastHandleClosed = false outlive their "
                  "engine",
                  id, dir, file);
  else
    orr_error_prefix(e, "open");
}

#define STATE_MAX (16 * 1024 * 1024)

/* Reads state.json below the checked directory: ours, 0600, a regular file,
** of a sane size, JSON. */
static int read_state(orr_vm *vm, json_t **out, orr_error *e) {
  struct stat st;
  json_error_t je;
  char *buf;
  ssize_t n;
  size_t off = 0;
  int fd = openat(vm->run_dir_fd, ORR_VM_STATE_FILE,
                  O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  *out = NULL;
  if (fd < 0)
    return orr_error_set(e,
                         errno == ENOENT  ? ORR_ENOENT
                         : errno == ELOOP ? ORR_EPERM
                                          : ORR_EIO,
                         "%s/" ORR_VM_STATE_FILE ": %s%s", vm->run_dir,
                         errno == ELOOP ? "is a symlink, " : "",
                         strerror(errno));
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
      (st.st_mode & 07777) != 0600 || st.st_size > STATE_MAX) {
    int rc = orr_error_set(
        e, ORR_EPERM,
        "%s/" ORR_VM_STATE_FILE " is not trusted: it must be a regular file "
        "of ours (uid %u), mode 0600, under 16 MiB; it is %s, uid %u, mode "
        "%04o, %lld bytes",
        vm->run_dir, (unsigned)geteuid(),
        S_ISREG(st.st_mode) ? "a regular file" : "not a regular file",
        (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777),
        (long long)st.st_size);
    close(fd);
    return rc;
  }
  buf = malloc((size_t)st.st_size + 1);
  while (off < (size_t)st.st_size &&
         (n = read(fd, buf + off, (size_t)st.st_size - off)) > 0)
    off += (size_t)n;
  close(fd);
  *out = json_loadb(buf, off, JSON_REJECT_DUPLICATES, &je);
  free(buf);
  if (*out == NULL)
    return orr_error_set(e, ORR_EINVAL, "state.json: not JSON (line %d: %s)",
                         je.line, je.text);
  return 0;
}

static void free_unplugs(orr_vm *vm) {
  while (vm->unplugs) {
    orr_unplug *u = vm->unplugs;
    vm->unplugs = u->next;
    json_decref(u->after);
    json_decref(u->data);
    free(u->device);
    free(u->resource);
    free(u);
  }
}

void orr__vm_discard(orr_vm *vm) {
  json_decref(vm->doc);
  json_decref(vm->layout);
  json_decref(vm->p9_index);
  json_decref(vm->plan_log);
  json_decref(vm->reserved);
  json_decref(vm->settling);
  free_unplugs(vm);
  if (vm->run_dir_fd >= 0)
    close(vm->run_dir_fd);
  free(vm);
}

/* A confined engine re-attaches only to VMs below its own runtime root:
** another directory's state.json may be anyone's, naming any process. A
** runtime_dir given must also be one the caller may write. Judged on the
** name first (dirfd -1), then again on the directory opened (dirfd). */
static int check_confined_open(orr_engine *eng, const char *dir, int dirfd,
                               bool given, orr_error *e) {
  char real[PATH_MAX], root[PATH_MAX];
  size_t n;
  int rc;
  if (eng->policy == NULL)
    return 0;
  if (given && dirfd < 0 &&
      (rc = orr__policy_check_new_dir(eng->policy, dir,
                                      "open: opts.runtime_dir", e)) != 0)
    return rc;
  if (realpath(eng->runtime_root, root) == NULL)
    return orr_error_set(e, ORR_ENOENT, "open: no runtime root %s",
                         eng->runtime_root);
  if (dirfd >= 0 ? orr__fd_path(dirfd, real, sizeof real) != 0
                 : realpath(dir, real) == NULL)
    return orr_error_set(e, ORR_ENOENT, "open: no VM to re-attach to in %s",
                         dir);
  n = strlen(root);
  if (strncmp(real, root, n) != 0 || real[n] != '/')
    return orr_error_set(e, ORR_EPERM,
                         "sandbox: open: %s is not below the engine's runtime "
                         "root %s (a confined engine re-attaches only to its "
                         "own VMs)",
                         dir, root);
  return 0;
}

int orr__vm_take_dir(orr_engine *eng, const char *id,
                     const orr_vm_options *opts, orr_vm **out, json_t **stp,
                     orr_error *e) {
  json_t *st = NULL, *doc = NULL;
  const orr_backend *backend;
  orr_vm *vm;
  int rc;
  *out = NULL;
  *stp = NULL;
  for (orr_vm *o = eng->vms; o; o = o->next)
    if (!o->closed && strcmp(o->id, id) == 0)
      return orr_error_set(
          e, ORR_EBUSY, "open: VM \"%s\" is already open in this process", id);
  {
    char dir[sizeof vm->run_dir];
    if (opts && opts->runtime_dir)
      snprintf(dir, sizeof dir, "%s", opts->runtime_dir);
    else
      snprintf(dir, sizeof dir, "%s/%s", eng->runtime_root, id);
    if ((rc = check_confined_open(eng, dir, -1, opts && opts->runtime_dir,
                                  e)) != 0)
      return rc;
  }
  backend =
      orr__backend_find(eng, opts && opts->backend ? opts->backend : "qemu");
  if (backend == NULL)
    return orr_error_set(e, ORR_EINVAL, "open: no backend \"%s\"",
                         opts->backend);
  vm = calloc(1, sizeof *vm);
  vm->eng = eng;
  vm->backend = backend;
  vm->run_dir_fd = -1;
  snprintf(vm->id, sizeof vm->id, "%s", id);
  if (opts && opts->runtime_dir)
    snprintf(vm->run_dir, sizeof vm->run_dir, "%s", opts->runtime_dir);
  else
    snprintf(vm->run_dir, sizeof vm->run_dir, "%s/%s", eng->runtime_root, id);
  /* The directory by create's rules (checked, never made or changed), then
  ** its lock: from here on nobody else drives this VM. */
  if ((rc = orr__run_dir_open(vm->run_dir, &vm->run_dir_fd, e)) != 0) {
    open_failed(e, rc, id, vm->run_dir, "");
    goto fail;
  }
  if ((rc = check_confined_open(eng, vm->run_dir, vm->run_dir_fd, false, e)) !=
      0)
    goto fail;
  if ((rc = orr__run_dir_lock(vm->run_dir_fd, vm->run_dir, e)) != 0) {
    orr_error_prefix(e, "open");
    goto fail;
  }
  if ((rc = read_state(vm, &st, e)) != 0) {
    open_failed(e, rc, id, vm->run_dir, "/" ORR_VM_STATE_FILE);
    goto fail;
  }
  if ((rc = orr__vm_state_check(st, id, vm->run_dir, vm->backend, &doc, e)) !=
      0) {
    orr_error_prefix(e, "open");
    goto fail;
  }
  snprintf(vm->runtime_id, sizeof vm->runtime_id, "%s",
           json_string_value(json_object_get(st, "RuntimeId")));
  vm->doc = doc;
  vm->layout = json_deep_copy(json_object_get(st, "Layout"));
  *out = vm;
  *stp = st;
  return 0;
fail:
  json_decref(st);
  orr__vm_discard(vm);
  return rc;
}

int orr_vm_open(orr_engine *eng, const char *id, const orr_vm_options *opts,
                orr_vm_cb cb, void *arg, orr_vm **out, orr_error *e) {
  json_t *st;
  orr_vm *vm;
  int rc;
  if ((rc = orr__vm_take_dir(eng, id, opts, &vm, &st, e)) != 0)
    return rc;
  snprintf(vm->accel, sizeof vm->accel, "%s",
           json_string_value(json_object_get(st, "Accel")));
  vm->boot_mb = json_integer_value(json_object_get(st, "BootMB"));
  vm->p9_index = json_deep_copy(json_object_get(st, "Plan9Index"));
  vm->plan_log = json_array();
  vm->reserved = json_object();
  orr_vm_options_init(&vm->opts);
  vm->opts.backend = vm->opts.accel = NULL;
  vm->opts.timeout_ms = opts ? opts->timeout_ms : 0; /* the QMP handshake's */
  vm->opts.guest_agent = orr_vm_guest_socket(vm) != NULL;
  vm->create_cb = cb;
  vm->create_arg = arg;
  vm->state = ORR_VM_CREATING;
  vm->attaching = true;
  if ((rc = vm->backend->attach(vm, st, e)) != 0) {
    orr_error_prefix(e, "open");
    goto fail;
  }
  vm->settling = json_incref(json_object_get(st, "Intents"));
  json_decref(st);
  vm->next = eng->vms;
  eng->vms = vm;
  *out = vm;
  return 0;
fail:
  json_decref(st);
  orr__vm_discard(vm);
  return rc;
}

void orr__vm_attached(orr_vm *vm, int status, const orr_error *e) {
  if (status != 0) {
    orr__vm_launched(vm, status, e);
    return;
  }
  vm->backend->reconcile(vm, vm->settling);
}

/* A removal the guest has still to complete waits as before the engine
** died: the device's deletion commits it. */
static void add_pending(orr_vm *vm, const json_t *it) {
  const json_t *plan = json_object_get(it, "Plan");
  orr_unplug *u = calloc(1, sizeof *u);
  u->device = strdup(json_string_value(json_object_get(plan, "wait_deleted")));
  u->resource = strdup(json_string_value(json_object_get(it, "Resource")));
  u->after = json_incref(json_object_get(plan, "after"));
  u->data = json_deep_copy(json_object_get(it, "Data"));
  u->commit =
      orr__commit_by_name(json_string_value(json_object_get(it, "Commit")));
  u->next = vm->unplugs;
  vm->unplugs = u;
}

void orr__vm_reconciled(orr_vm *vm, int status, json_t *outcomes, json_t *gone,
                        const orr_error *e) {
  json_t *intents = vm->settling;
  size_t i;
  json_t *it, *q;
  vm->settling = NULL;
  if (status != 0) {
    json_decref(intents);
    orr__vm_launched(vm, status, e);
    return;
  }
  json_array_foreach(intents, i, it) {
    const char *o = json_string_value(json_array_get(outcomes, i));
    if (o && strcmp(o, "adopted") == 0) {
      /* Each adoption was checked alone (vm_state.c); together they hold
      ** too, since QEMU cannot have completed two changes that clash (an
      ** image opened writable twice is refused by its lock). Should it
      ** ever be otherwise, the document stays valid: that one is left out. */
      json_t *before = json_deep_copy(vm->doc), *norm = NULL;
      json_t *layout = json_deep_copy(vm->layout); /* a disk's fdsets */
      orr_error de = {0, ""};
      orr_req r;
      memset(&r, 0, sizeof r);
      r.vm = vm;
      r.data = json_object_get(it, "Data");
      orr__commit_by_name(json_string_value(json_object_get(it, "Commit")))(&r);
      if (orr_doc_check(vm->doc, &norm, &de) != 0) {
        json_decref(vm->doc);
        json_decref(vm->layout);
        vm->doc = before;
        vm->layout = layout;
        before = layout = NULL;
      }
      json_decref(norm);
      json_decref(before);
      json_decref(layout);
    } else if (o && strcmp(o, "pending") == 0) {
      add_pending(vm, it);
    }
  }
  json_decref(intents);
  /* Devices the VM no longer has (deleted while nobody listened, or with
  ** the outcome unwritten): the document follows the VM. */
  json_array_foreach(gone, i, q) {
    orr_unplug *u = orr__vm_unasked_unplug(vm, json_string_value(q));
    if (u) {
      orr_req r;
      memset(&r, 0, sizeof r);
      r.vm = vm;
      r.data = u->data;
      u->commit(&r);
      json_decref(u->after);
      json_decref(u->data);
      free(u->device);
      free(u->resource);
      free(u);
    }
  }
  vm->attaching = false;
  /* CPU limits are applied through the backend (a cgroup): as the
  ** document says, whatever a dead engine had written last. */
  {
    json_t *cpu = json_object_get(
        json_object_get(json_object_get(vm->doc, "VirtualMachine"),
                        "ComputeTopology"),
        "Processor");
    json_t *limits = json_object();
    orr_error ce = {0, ""};
    static const char *const keys[] = {"Limit", "Weight", "Reservation"};
    for (size_t k = 0; k < 3; k++)
      if (json_object_get(cpu, keys[k]))
        json_object_set(limits, keys[k], json_object_get(cpu, keys[k]));
    if (json_object_size(limits) > 0 && vm->backend->cpu_limits != NULL)
      vm->backend->cpu_limits(
          vm, limits,
          json_integer_value(json_object_get(cpu, "Count"))
              ? json_integer_value(json_object_get(cpu, "Count"))
              : 1,
          &ce);
    json_decref(limits);
  }
  orr__vm_launched(vm, 0, NULL);
}

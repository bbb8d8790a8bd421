/*
** The kubevirt backend behind the VM layer's interface (backend.h): the VM
** is a kubevirt.io/v1 VirtualMachine in a cluster, driven through the
** Kubernetes API (kv_client.c) and followed through a watch on its
** VirtualMachineInstance (kv_watch.c).
**
** Every step is an API request: {"execute": what, "arguments": {method,
** path, body}, "undo": ...}. The verbs (verb below) are subresources:
**   START start, RESUME unpause, PAUSE pause,
**   POWERDOWN stop {gracePeriod: what is left of the deadline},
**   QUIT stop {gracePeriod: 0}; at close: DELETE the VirtualMachine.
** Run-time changes are planned by kv_modify.c (plan_change) with their
** undos and run by the core's request runner; a PATCH that answers 409 is
** planned again against the VirtualMachine as read then
** (orr__kv_client_apply).
**
** dry_run (`orrery plan --backend kubevirt`, a create option) sends
** nothing: every request is recorded into the plan entry (kv_plan.c),
** whose manifest follows what the API server would make of it, and
** answered as an obedient cluster would.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kubevirt.h"
#include "vm_internal.h"

typedef struct kv_vm {
  orr_vm *vm;
  char name[72], ns[72]; /* DNS-1123 labels, checked */
  json_t *sources;
  orr_kv_config cfg;
  bool dry;
  json_t *entry; /* dry: {manifest, requests, ignored} */
  json_t *obj;   /* live: the VirtualMachine as last answered */
  bool deleted;  /* the DELETE was sent (or recorded) */
  /* live */
  orr_kv_kubeconfig kc;
  orr_kv_client *client;
  orr_kv_watch *watch;
  bool releasing;
} kv_vm;

static kv_vm *kv_of(const orr_vm *vm) {
  return vm->priv;
}

/* ---- configuration ---- */

/* $ORRERY_KUBECONFIG, else $KUBECONFIG (its first file), else
** ~/.kube/config. */
static void default_kubeconfig(char *buf, size_t size) {
  const char *v = getenv("ORRERY_KUBECONFIG");
  const char *home = getenv("HOME");
  if (v == NULL || v[0] == '\0')
    v = getenv("KUBECONFIG");
  if (v != NULL && v[0] != '\0') {
    size_t n = strcspn(v, ":");
    snprintf(buf, size, "%.*s", (int)n, v);
    return;
  }
  snprintf(buf, size, "%s/.kube/config", home ? home : "");
}

static void kv_free(kv_vm *k) {
  if (k == NULL)
    return;
  json_decref(k->sources);
  json_decref(k->entry);
  json_decref(k->obj);
  orr__kv_kubeconfig_free(&k->kc);
  free(k);
}

/* What every VM of this backend needs: its name, namespace and sources. */
static int kv_setup(orr_vm *vm, kv_vm **out, orr_error *e) {
  kv_vm *k = calloc(1, sizeof *k);
  const json_t *src = vm->opts.sources;
  const char *key;
  json_t *v;
  *out = NULL;
  if (k == NULL)
    return orr_error_set(e, ORR_ENOMEM, "out of memory");
  k->vm = vm;
  k->dry = vm->opts.dry_run != 0;
  if (!orr__kv_valid_name(vm->id, 63)) {
    kv_free(k);
    return orr_error_set(e, ORR_EINVAL,
                         "id \"%s\" names the VirtualMachine on the kubevirt "
                         "backend: it must be a DNS-1123 label (at most 63 "
                         "of [a-z0-9-], starting and ending with a letter "
                         "or digit)",
                         vm->id);
  }
  if (src != NULL && !json_is_object(src)) {
    kv_free(k);
    return orr_error_set(e, ORR_EINVAL,
                         "opts.sources must be a table of document strings "
                         "to cluster sources");
  }
  json_object_foreach((json_t *)src, key, v) {
    if (!json_is_string(v)) {
      kv_free(k);
      return orr_error_set(e, ORR_EINVAL,
                           "opts.sources[\"%s\"] must be a string (pvc:NAME, "
                           "dv:NAME, containerdisk:IMAGE, pod, multus:NAME, "
                           "hostdevice:NAME)",
                           key);
    }
  }
  k->sources = src ? json_deep_copy(src) : json_object();
  snprintf(k->name, sizeof k->name, "%s", vm->id);
  if (!k->dry) {
    char path[512];
    int rc;
    if (vm->opts.kubeconfig != NULL)
      snprintf(path, sizeof path, "%s", vm->opts.kubeconfig);
    else
      default_kubeconfig(path, sizeof path);
    if ((rc = orr__kv_kubeconfig_load(path, NULL, &k->kc, e)) != 0) {
      kv_free(k);
      return rc;
    }
  }
  snprintf(k->ns, sizeof k->ns, "%s",
           vm->opts.kube_namespace ? vm->opts.kube_namespace
           : k->kc.ns              ? k->kc.ns
                                   : "default");
  if (!orr__kv_valid_name(k->ns, 63)) {
    int rc = orr_error_set(
        e, ORR_EINVAL, "opts.namespace \"%s\" must be a DNS-1123 label", k->ns);
    kv_free(k);
    return rc;
  }
  k->cfg.name = k->name;
  k->cfg.ns = k->ns;
  k->cfg.sources = k->sources;
  *out = k;
  return 0;
}

/* ---- replies: always from the loop ---- */

typedef struct {
  orr_vm *vm;
  orr_backend_reply_cb cb;
  void *arg;
  int status;
  json_t *result;
  char msg[256];
  int then; /* dry: what an obedient cluster does next */
} later;

/* What the success of a request means for the VM. */
enum { THEN_NONE, THEN_RESUME, THEN_STOP, THEN_EXIT };

static void exit_later(void *arg) {
  orr__vm_exited(arg, 0, 0, "stopped");
}

static void reply_now(void *p) {
  later *l = p;
  orr_vm *vm = l->vm;
  if (l->cb)
    l->cb(l->arg, l->status, l->result, l->msg);
  if (l->status == 0 && !vm->exited) {
    if (l->then == THEN_RESUME)
      orr__vm_running(vm, true);
    else if (l->then == THEN_STOP)
      orr__vm_running(vm, false);
    else if (l->then == THEN_EXIT)
      orr__defer(vm->eng, exit_later, vm);
  }
  json_decref(l->result);
  free(l);
}

static int reply_later(orr_vm *vm, orr_backend_reply_cb cb, void *arg,
                       int status, json_t *result, const char *msg, int then) {
  later *l = calloc(1, sizeof *l);
  if (l == NULL) {
    json_decref(result);
    return ORR_ENOMEM;
  }
  l->vm = vm;
  l->cb = cb;
  l->arg = arg;
  l->status = status;
  l->result = result;
  l->then = then;
  snprintf(l->msg, sizeof l->msg, "%s", msg ? msg : "");
  orr__defer(vm->eng, reply_now, l);
  return 0;
}

/* ---- live calls: the API client with the core's deadline ---- */

typedef struct {
  kv_vm *k;
  orr_backend_reply_cb cb, late;
  void *arg;
  uv_timer_t *timer;
  bool timed_out;
  int verb;       /* what the answer means for the VM: THEN_* */
  json_t *replan; /* {request, step} of a planned change, or NULL */
  json_t *req;    /* the request (an undo's ops, for a 409) */
} call;

static void timer_closed(uv_handle_t *h) {
  free(h);
}

static void call_free(call *c) {
  if (c->timer)
    uv_close((uv_handle_t *)c->timer, timer_closed);
  json_decref(c->replan);
  json_decref(c->req);
  free(c);
}

static void on_call_deadline(uv_timer_t *t) {
  call *c = t->data;
  c->timed_out = true;
  if (c->cb)
    c->cb(c->arg, ORR_ETIMEDOUT, NULL,
          "the API server did not answer within the deadline");
}

static void on_delete_answer(void *arg, int status, json_t *answer,
                             const orr_error *err);

static void on_call_result(void *arg, int status, json_t *answer,
                           const orr_error *err) {
  call *c = arg;
  kv_vm *k = c->k;
  orr_vm *vm = k->vm;
  orr_backend_reply_cb to = c->timed_out ? c->late : c->cb;
  const char *msg = status ? err->msg : "";
  if (c->timer)
    uv_timer_stop(c->timer);
  /* What the cluster reports is what the VM layer hears: a VM gone from
  ** under a request is gone. */
  if (status == ORR_ECANCELED && vm->exited)
    status = ORR_EVMGONE;
  if (status == 0 && json_is_object(answer) &&
      json_string_value(json_object_get(answer, "kind")) &&
      strcmp(json_string_value(json_object_get(answer, "kind")),
             "VirtualMachine") == 0) {
    json_decref(k->obj);
    k->obj = json_incref(answer);
  }
  if (to)
    to(c->arg, status, status == 0 ? answer : NULL, msg);
  if (status == 0 && c->verb == THEN_EXIT && !vm->exited)
    orr__vm_exited(vm, 0, 0, "deleted");
  call_free(c);
}

/* On a 409: the change planned again against the VM as read now. A step
** of a modify plan is planned whole again; an undo (planned against the
** VM before its own step) keeps its ops under the new resourceVersion. */
static json_t *replan_call(void *arg, const json_t *obj, orr_error *e) {
  call *c = arg;
  kv_vm *k = c->k;
  const char *rv = json_string_value(
      json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
  json_t *out;
  json_decref(k->obj);
  k->obj = json_incref((json_t *)obj);
  if (c->replan != NULL) {
    json_t *plan = NULL;
    size_t i = (size_t)json_integer_value(json_object_get(c->replan, "step"));
    if (orr__kv_plan_modify(k->vm->doc, obj,
                            json_object_get(c->replan, "request"), &k->cfg,
                            &plan, e) != 0)
      return NULL;
    out = json_incref(json_array_get(json_object_get(plan, "do"), i));
    json_decref(plan);
    if (out == NULL)
      orr_error_set(e, ORR_EBUSY, "the change no longer plans the same");
    return out;
  }
  out = json_deep_copy(c->req);
  if (rv != NULL && json_is_array(json_object_get(out, "body"))) {
    json_t *first = json_array_get(json_object_get(out, "body"), 0);
    const char *p = json_string_value(json_object_get(first, "path"));
    if (p && strcmp(p, "/metadata/resourceVersion") == 0)
      json_object_set_new(first, "value", json_string(rv));
  }
  return out;
}

static int call_start(kv_vm *k, json_t *req, uint64_t timeout_ms, int verb,
                      orr_backend_reply_cb cb, orr_backend_reply_cb late,
                      void *arg) {
  call *c = calloc(1, sizeof *c);
  const char *method = json_string_value(json_object_get(req, "method"));
  if (c == NULL) {
    json_decref(req);
    return ORR_ENOMEM;
  }
  c->k = k;
  c->cb = cb;
  c->late = late;
  c->arg = arg;
  c->verb = verb;
  c->req = req;
  c->replan = json_incref(json_object_get(req, "replan"));
  if (timeout_ms > 0 && cb != NULL) {
    c->timer = malloc(sizeof *c->timer);
    uv_timer_init(k->vm->eng->loop, c->timer);
    c->timer->data = c;
    uv_timer_start(c->timer, on_call_deadline, timeout_ms, 0);
  }
  if (method && strcmp(method, "PATCH") == 0) {
    char vm_path[512];
    orr__kv_path(&k->cfg, "vm", vm_path, sizeof vm_path);
    orr__kv_client_apply(k->client, req, vm_path, replan_call, c,
                         on_call_result, c);
  } else {
    orr__kv_client_send(k->client, req, on_call_result, c);
  }
  return 0;
}

/* ---- the VMI watch: state, exit, the live document ---- */

static void follow(kv_vm *k, const json_t *vmi) {
  orr_vm *vm = k->vm;
  json_t *doc = NULL;
  bool changed = false;
  orr_error e = {0, ""};
  /* A change in flight owns its part of the document until it ends. */
  if (json_object_size(vm->reserved) > 0)
    return;
  if (orr__kv_follow_status(vm->doc, vmi, &k->cfg, &doc, &changed, &e) != 0)
    return;
  if (changed) {
    json_decref(vm->doc);
    vm->doc = doc;
  } else {
    json_decref(doc);
  }
}

static void on_watch(void *arg, const char *type, const json_t *vmi,
                     const orr_error *err) {
  kv_vm *k = arg;
  orr_vm *vm = k->vm;
  const char *st;
  if (vm->exited)
    return;
  if (strcmp(type, "ERROR") == 0) {
    orr__vm_health(vm, false, "watch", 0);
    (void)err;
    return;
  }
  orr__vm_health(vm, true, "watch", 0);
  if (strcmp(type, "DELETED") == 0) {
    if (vm->has_run)
      orr__vm_exited(vm, 0, 0, "the VirtualMachineInstance is gone");
    return;
  }
  st = orr__kv_vmi_state(vmi);
  if (strcmp(st, "Running") == 0) {
    if (vm->state == ORR_VM_PAUSED)
      orr__vm_running(vm, true);
    follow(k, vmi);
  } else if (strcmp(st, "Paused") == 0) {
    if (vm->state == ORR_VM_RUNNING)
      orr__vm_running(vm, false);
    follow(k, vmi);
  } else if (strcmp(st, "Stopped") == 0 && vm->has_run) {
    orr__vm_exited(vm, 0, 0, "the VirtualMachineInstance stopped");
  }
}

/* ---- the interface ---- */

static void created(void *arg, int status, json_t *answer,
                    const orr_error *err) {
  kv_vm *k = arg;
  orr_vm *vm = k->vm;
  orr_error e = {0, ""};
  if (status != 0) {
    orr__vm_launched(vm, status, err);
    k->deleted = true; /* nothing of ours to delete */
    orr__vm_exited(vm, 0, 0, "create failed");
    return;
  }
  json_decref(k->obj);
  k->obj = json_incref(answer);
  if (orr__kv_watch_start(k->client, &k->cfg, NULL, on_watch, k, &k->watch,
                          &e) != 0) {
    orr__vm_launched(vm, e.code, &e);
    orr__vm_exited(vm, 0, 0, "watch failed");
    return;
  }
  orr__vm_launched(vm, 0, NULL);
}

static void launched_later(void *arg) {
  orr__vm_launched(arg, 0, NULL);
}

/* Everything that needs no cluster, at create: the options read (they are
** the caller's only during the call), the kubeconfig loaded and the
** manifest made, so what KubeVirt cannot take is refused before anything
** is sent, even by a create that waits for a closed VM of its name. */
static int kv_prepare(orr_vm *vm, orr_error *e) {
  kv_vm *k;
  json_t *entry = NULL;
  int rc;
  if (vm->priv != NULL)
    return 0;
  if ((rc = kv_setup(vm, &k, e)) != 0)
    return rc;
  if ((rc = orr__kv_plan_new(vm->doc, &k->cfg, &entry, e)) != 0) {
    kv_free(k);
    return rc;
  }
  k->entry = entry;
  vm->priv = k;
  return 0;
}

static int kv_launch(orr_vm *vm, orr_error *e) {
  kv_vm *k;
  json_t *create;
  int rc;
  if ((rc = kv_prepare(vm, e)) != 0)
    return rc;
  k = kv_of(vm);
  if (k->dry) {
    orr__defer(vm->eng, launched_later, vm);
    return 0;
  }
  if ((rc = orr__kv_client_new(vm->eng->loop, &k->kc, NULL, &k->client, e)) !=
      0) {
    vm->priv = NULL;
    kv_free(k);
    return rc;
  }
  /* Live, the entry was only the create request's carrier. */
  create =
      json_incref(json_array_get(json_object_get(k->entry, "requests"), 0));
  json_decref(k->entry);
  k->entry = NULL;
  orr__kv_client_send(k->client, create, created, k);
  json_decref(create);
  return 0;
}

/* What a request's success means for the VM: from its path. */
static int then_of(const kv_vm *k, const json_t *req) {
  const char *method = json_string_value(json_object_get(req, "method"));
  const char *path = json_string_value(json_object_get(req, "path"));
  const char *tail = path ? strrchr(path, '/') : NULL;
  if (method && strcmp(method, "DELETE") == 0)
    return THEN_EXIT;
  if (tail == NULL || strstr(path, "/apis/subresources.kubevirt.io/") == NULL)
    return THEN_NONE;
  if (strcmp(tail, "/start") == 0 || strcmp(tail, "/unpause") == 0)
    return THEN_RESUME;
  if (strcmp(tail, "/pause") == 0)
    return THEN_STOP;
  /* A stop ends the VM when the watch says its instance is gone; a dry
  ** run's obedient cluster ends it at once. */
  if (strcmp(tail, "/stop") == 0 && k->dry)
    return THEN_EXIT;
  return THEN_NONE;
}

static int kv_verb(orr_vm *vm, orr_verb verb, json_t **step, orr_error *e) {
  kv_vm *k = kv_of(vm);
  orr_kv_verb_opts o = {0};
  orr_kv_verb kv;
  const char *name;
  json_t *req = NULL;
  int rc;
  *step = NULL;
  if (k == NULL)
    return orr_error_set(e, ORR_EVMGONE, "the VM is gone");
  switch (verb) {
  case ORR_VERB_START:
    kv = ORR_KV_START, name = "start";
    break;
  case ORR_VERB_RESUME:
    kv = ORR_KV_UNPAUSE, name = "unpause";
    break;
  case ORR_VERB_PAUSE:
    kv = ORR_KV_PAUSE, name = "pause";
    break;
  case ORR_VERB_POWERDOWN:
    /* The grace period is what is left of the deadline when it is sent. */
    kv = ORR_KV_STOP, name = "stop";
    break;
  case ORR_VERB_QUIT:
    if (vm->closed) {
      /* Closing the last handle removes the VM from the cluster, unless
      ** the document asks for it to outlive the handle. */
      if (json_is_false(
              json_object_get(vm->doc, "ShouldTerminateOnLastHandleClosed"))) {
        *step = json_pack("{s:s, s:{s:b}}", "execute", "leave", "arguments",
                          "leave", 1);
        return 0;
      }
      kv = ORR_KV_DELETE, name = "delete";
      break;
    }
    kv = ORR_KV_TERMINATE, name = "stop";
    break;
  default:
    return orr_error_set(e, ORR_ENOTSUP,
                         "the kubevirt backend has no such verb");
  }
  if ((rc = orr__kv_verb(&k->cfg, kv, &o, &req, e)) != 0)
    return rc;
  if (verb == ORR_VERB_POWERDOWN)
    json_object_set_new(req, "grace_from_deadline", json_true());
  *step = json_pack("{s:s, s:o}", "execute", name, "arguments", req);
  return 0;
}

static int kv_send(orr_vm *vm, const char *name, json_t *args,
                   uint64_t timeout_ms, orr_backend_reply_cb cb,
                   orr_backend_reply_cb late, void *arg) {
  kv_vm *k = kv_of(vm);
  orr_error e = {0, ""};
  int then, rc;
  (void)name;
  if (k == NULL || vm->exited) {
    json_decref(args);
    return ORR_EVMGONE;
  }
  if (json_is_true(json_object_get(args, "leave"))) {
    /* Nothing to send: the VM stays in the cluster. */
    json_decref(args);
    return reply_later(vm, cb, arg, 0, json_object(), "", THEN_EXIT);
  }
  if (json_object_get(args, "method") == NULL) {
    json_decref(args);
    return reply_later(vm, cb, arg, ORR_EINVAL, NULL,
                       "not a step of the kubevirt backend", THEN_NONE);
  }
  if (json_is_true(json_object_get(args, "grace_from_deadline"))) {
    /* Whole seconds, rounded up. */
    uint64_t ms = timeout_ms ? timeout_ms : ORR_VM_TIMEOUT_MS;
    json_object_del(args, "grace_from_deadline");
    json_object_set_new(json_object_get(args, "body"), "gracePeriod",
                        json_integer((json_int_t)((ms + 999) / 1000)));
  }
  if (strcmp(json_string_value(json_object_get(args, "method")), "DELETE") == 0)
    k->deleted = true;
  then = then_of(k, args);
  if (k->dry) {
    rc = orr__kv_plan_record(k->entry, args, &e);
    json_decref(args);
    return reply_later(vm, cb, arg, rc, rc ? NULL : json_object(), e.msg,
                       rc ? THEN_NONE : then);
  }
  return call_start(k, args, timeout_ms, then, cb, late, arg);
}

static int kv_send_fd(orr_vm *vm, const char *name, json_t *args, int fd,
                      uint64_t timeout_ms, orr_backend_reply_cb cb,
                      orr_backend_reply_cb late, void *arg) {
  (void)name, (void)fd, (void)timeout_ms, (void)late;
  json_decref(args);
  return reply_later(vm, cb, arg, ORR_ENOTSUP, NULL,
                     "the kubevirt backend passes no host descriptors",
                     THEN_NONE);
}

static void killed_later(void *arg) {
  orr__vm_exited(arg, 0, 0, "stopped (gracePeriod 0)");
}

/* A VM that did not stop in time: stopped at once, and gone for the VM
** layer (the cluster finishes the stop on its own). */
static void kv_kill(orr_vm *vm) {
  kv_vm *k = kv_of(vm);
  json_t *req = NULL;
  if (k != NULL && !k->dry && k->client != NULL &&
      orr__kv_verb(&k->cfg, ORR_KV_TERMINATE, NULL, &req, NULL) == 0) {
    orr__kv_client_send(k->client, req, on_delete_answer, NULL);
    json_decref(req);
  }
  orr__defer(vm->eng, killed_later, vm);
}

static void on_delete_answer(void *arg, int status, json_t *answer,
                             const orr_error *err) {
  (void)arg, (void)status, (void)answer, (void)err;
}

static void client_closed(void *arg) {
  orr_vm *vm = arg;
  kv_free(vm->priv);
  vm->priv = NULL;
  orr__vm_released(vm);
}

static void released_later(void *arg) {
  orr_vm *vm = arg;
  kv_free(vm->priv);
  vm->priv = NULL;
  orr__vm_released(vm);
}

static void deleted_then_close(void *arg, int status, json_t *answer,
                               const orr_error *err) {
  kv_vm *k = arg;
  (void)status, (void)answer, (void)err;
  orr__kv_client_close(k->client, client_closed, k->vm);
}

static void kv_release(orr_vm *vm) {
  kv_vm *k = kv_of(vm);
  json_t *req = NULL;
  bool del = k != NULL && !k->deleted && vm->closed &&
             !json_is_false(json_object_get(
                 vm->doc, "ShouldTerminateOnLastHandleClosed")) &&
             orr__kv_verb(&k->cfg, ORR_KV_DELETE, NULL, &req, NULL) == 0;
  if (k == NULL || k->client == NULL) {
    /* A dry run (its DELETE recorded, at once, so the plan shows it) or a
    ** launch refused before anything was sent. */
    if (del && k != NULL && k->entry != NULL)
      orr__kv_plan_record(k->entry, req, NULL);
    json_decref(req);
    orr__defer(vm->eng, released_later, vm);
    return;
  }
  if (k->releasing) {
    json_decref(req);
    return;
  }
  k->releasing = true;
  if (k->watch) {
    orr__kv_watch_stop(k->watch);
    k->watch = NULL;
  }
  if (del) {
    k->deleted = true;
    orr__kv_client_send(k->client, req, deleted_then_close, k);
    json_decref(req);
    return;
  }
  orr__kv_client_close(k->client, client_closed, vm);
}

/* kv_modify.c's messages start with the ResourcePath; the core adds it. */
static void drop_path_prefix(orr_error *e, const char *path) {
  size_t n = strlen(path);
  if (e != NULL && strncmp(e->msg, path, n) == 0 &&
      strncmp(e->msg + n, ": ", 2) == 0)
    memmove(e->msg, e->msg + n + 2, strlen(e->msg + n + 2) + 1);
}

/* The API request's own words for a step: "addvolume", "PATCH
** VirtualMachine". */
static void step_name(const json_t *req, char *buf, size_t size) {
  const char *path = json_string_value(json_object_get(req, "path"));
  const char *method = json_string_value(json_object_get(req, "method"));
  const char *tail = path ? strrchr(path, '/') : NULL;
  if (path && strstr(path, "/apis/subresources.kubevirt.io/") && tail)
    snprintf(buf, size, "%s", tail + 1);
  else
    snprintf(buf, size, "%s VirtualMachine", method ? method : "?");
}

static json_t *as_step(const json_t *req, const json_t *replan) {
  char name[64];
  json_t *args =
      json_pack("{s:O, s:O}", "method", json_object_get(req, "method"), "path",
                json_object_get(req, "path"));
  if (json_object_get(req, "body"))
    json_object_set(args, "body", json_object_get(req, "body"));
  if (replan)
    json_object_set(args, "replan", (json_t *)replan);
  step_name(req, name, sizeof name);
  return json_pack("{s:s, s:o}", "execute", name, "arguments", args);
}

static int kv_plan_modify(orr_vm *vm, const json_t *request, json_t **plan,
                          orr_error *e) {
  kv_vm *k = kv_of(vm);
  const json_t *obj = k->dry ? json_object_get(k->entry, "manifest") : k->obj;
  const char *path =
      json_string_value(json_object_get(request, "ResourcePath"));
  json_t *kvplan = NULL, *steps, *s;
  size_t i;
  int rc;
  *plan = NULL;
  if ((rc = orr__kv_plan_modify(vm->doc, obj, request, &k->cfg, &kvplan, e)) !=
      0) {
    drop_path_prefix(e, path ? path : "");
    return rc;
  }
  steps = json_array();
  json_array_foreach(json_object_get(kvplan, "do"), i, s) {
    json_t *replan =
        json_pack("{s:O, s:I}", "request", request, "step", (json_int_t)i);
    json_t *st = as_step(s, replan);
    const json_t *undo = json_object_get(s, "undo");
    json_decref(replan);
    if (json_is_object(undo))
      json_object_set_new(st, "undo", as_step(undo, NULL));
    json_array_append_new(steps, st);
  }
  json_decref(kvplan);
  *plan = json_pack("{s:o}", "do", steps);
  return 0;
}

/* The change as the ModifySettingRequest kv_modify.c plans from. */
static int kv_plan_change(orr_vm *vm, const orr_change *ch, json_t *data,
                          json_t **plan, orr_error *e) {
  static const char *const types[] = {"Add", "Remove", "Update"};
  char path[512] = "";
  size_t n = 0;
  json_t *req;
  int rc;
  (void)data;
  for (size_t i = 0; i < ch->nkeys; i++)
    n += (size_t)snprintf(path + n, n < sizeof path ? sizeof path - n : 0,
                          "%s%s", i ? "/" : "", ch->keys[i]);
  if (n >= sizeof path)
    return orr_error_set(e, ORR_EINVAL, "resource path too long");
  req = json_pack("{s:s, s:s}", "ResourcePath", path, "RequestType",
                  types[ch->op]);
  if (ch->settings != NULL)
    json_object_set(req, "Settings", (json_t *)ch->settings);
  rc = kv_plan_modify(vm, req, plan, e);
  json_decref(req);
  return rc;
}

static int kv_cpu_limits(orr_vm *vm, const json_t *limits, long long cpus,
                         orr_error *e) {
  (void)vm, (void)limits, (void)cpus;
  return orr_error_set(e, ORR_ENOTSUP,
                       "KubeVirt changes CPU resources only by restarting "
                       "the VM");
}

/* Where the VM is, for vm:properties(). */
static void kv_properties(const orr_vm *vm, json_t *p) {
  kv_vm *k = kv_of(vm);
  if (k == NULL)
    return;
  json_object_set_new(p, "Cluster",
                      json_pack("{s:s, s:s, s:b}", "Namespace", k->ns,
                                "VirtualMachine", k->name, "DryRun", k->dry));
}

static json_t *kv_plan_report(const orr_vm *vm) {
  kv_vm *k = kv_of(vm);
  if (k == NULL || !k->dry)
    return NULL;
  /* The entry itself, not a copy: a DELETE recorded at close shows too. */
  return json_pack("{s:O}", "kubevirt", k->entry);
}

const orr_backend orr__backend_kubevirt = {
    .name = "kubevirt",
    .remote = true,
    .prepare = kv_prepare,
    .launch = kv_launch,
    .send = kv_send,
    .send_fd = kv_send_fd,
    .kill = kv_kill,
    .release = kv_release,
    .verb = kv_verb,
    .plan_change = kv_plan_change,
    .cpu_limits = kv_cpu_limits,
    .properties = kv_properties,
    .plan_report = kv_plan_report,
};

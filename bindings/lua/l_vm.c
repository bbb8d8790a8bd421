/*
** orrery.VM: a userdata over orr_vm, and orrery.create. The bindings only
** convert tables to documents and ModifySettingRequests, map errors and
** wait on ops; every rule is in the engine.
**
** Uservalue 1 holds the event handlers ({event = {{fn = f}, ...}}), so a
** dropped VM and its handlers can be collected together; uservalue 2 the
** id (for __tostring after close). While an op is pending the op anchors
** the userdata in the registry.
*/
#include <stdlib.h>
#include <string.h>

#include "l_async.h"
#include "l_orrery.h"
#include "l_util.h"
#include "orrery/document.h"
#include "orrery/vm.h"

typedef struct {
  char *id;
  json_t *doc, *log; /* snapshots taken at close (log: the backend's report) */
  struct lvm *live;  /* the open VM, or NULL */
} plan_rec;

/* Per-state settings of this file: registry[&state_key]. Created by
** orr_l_set_default_backend, before any VM, so it is finalized after them
** (they snapshot into it when closed). */
typedef struct {
  char *backend;      /* the default backend, or NULL */
  char *kv_ns;        /* orrery plan --backend kubevirt --namespace, or NULL */
  json_t *kv_sources; /* its --source entries, or NULL */
  plan_rec *recs;
  size_t n, cap;
  size_t created; /* orrery.create calls that made a VM */
} vm_state;

typedef struct lvm {
  orr_vm *vm; /* NULL once closed */
  orr_l_ctx *ctx;
  vm_state *rec_state; /* recording this plan VM, or NULL */
  size_t rec;          /* its index in rec_state->recs */
} lvm;

static const char state_key = 's'; /* vm_state userdata */
static const char vms_key = 'v';   /* weak {lightuserdata(lvm) = VM} */

static const char *const events[] = {
    "state",      "exit",    "device_deleted", "console",   "unresponsive",
    "responsive", "settled", "migration",      "block_job", NULL};

/* ---- Per-state settings and the plan record ----------------------------- */

static int state_gc(lua_State *L) {
  vm_state *s = lua_touserdata(L, 1);
  for (size_t i = 0; i < s->n; i++) {
    free(s->recs[i].id);
    json_decref(s->recs[i].doc);
    json_decref(s->recs[i].log);
  }
  free(s->recs);
  free(s->backend);
  free(s->kv_ns);
  json_decref(s->kv_sources);
  memset(s, 0, sizeof *s);
  return 0;
}

static vm_state *get_state(lua_State *L, int create) {
  vm_state *s;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &state_key) == LUA_TUSERDATA) {
    s = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return s;
  }
  lua_pop(L, 1);
  if (!create)
    return NULL;
  s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, state_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &state_key);
  return s;
}

size_t orr_l_vm_created(lua_State *L) {
  vm_state *s = get_state(L, 0);
  return s != NULL ? s->created : 0;
}

void orr_l_set_default_backend(lua_State *L, const char *backend) {
  vm_state *s = get_state(L, 1);
  char *copy = backend != NULL ? strdup(backend) : NULL;
  if (backend != NULL && copy == NULL)
    luaL_error(L, "orrery: out of memory");
  free(s->backend);
  s->backend = copy;
}

void orr_l_set_plan_kubevirt(lua_State *L, const char *ns, json_t *sources) {
  vm_state *s = get_state(L, 1);
  free(s->kv_ns);
  json_decref(s->kv_sources);
  s->kv_ns = ns != NULL ? strdup(ns) : NULL;
  s->kv_sources = sources;
}

static void record(lua_State *L, lvm *v, const char *id) {
  vm_state *s = get_state(L, 0);
  plan_rec *r;
  if (s == NULL || s->backend == NULL)
    return;
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 4;
    plan_rec *recs = realloc(s->recs, cap * sizeof *recs);
    if (recs == NULL)
      return; /* the report is best effort; the VM itself is fine */
    s->recs = recs;
    s->cap = cap;
  }
  r = &s->recs[s->n];
  memset(r, 0, sizeof *r);
  r->id = strdup(id);
  r->live = v;
  v->rec_state = s;
  v->rec = s->n++;
}

static void snapshot(lvm *v) {
  plan_rec *r;
  if (v->rec_state == NULL)
    return;
  r = &v->rec_state->recs[v->rec];
  r->doc = json_deep_copy(orr_vm_document(v->vm));
  r->log = orr_vm_plan_report(v->vm);
  r->live = NULL;
  v->rec_state = NULL;
}

/* The document in HCS key order, as orr_doc_dump writes it. */
static json_t *ordered(const json_t *doc) {
  char *text;
  json_t *out = NULL;
  if (doc == NULL)
    return json_null();
  text = orr_doc_dump(doc, 0);
  if (text != NULL)
    out = json_loads(text, 0, NULL);
  free(text);
  return out != NULL ? out : json_deep_copy(doc);
}

json_t *orr_l_vm_plan_report(lua_State *L) {
  vm_state *s = get_state(L, 0);
  json_t *arr = json_array();
  for (size_t i = 0; s != NULL && i < s->n; i++) {
    plan_rec *r = &s->recs[i];
    json_t *doc, *log;
    json_t *entry;
    if (r->live != NULL) {
      doc = ordered(orr_vm_document(r->live->vm));
      log = orr_vm_plan_report(r->live->vm);
    } else {
      doc = ordered(r->doc);
      log = json_incref(r->log);
    }
    entry = json_pack("{s:s, s:o}", "id", r->id ? r->id : "", "document", doc);
    /* The backend's own record: plan_log (QEMU), kubevirt (the cluster). */
    if (json_is_object(log))
      json_object_update(entry, log);
    else
      json_object_set_new(entry, "plan_log", json_array());
    json_decref(log);
    json_array_append_new(arr, entry);
  }
  return arr;
}

/* ---- The userdata ------------------------------------------------------- */

static lvm *check_open(lua_State *L, int idx) {
  lvm *v = luaL_checkudata(L, idx, ORR_L_VM);
  if (v->vm == NULL)
    luaL_error(L, "attempt to use a closed " ORR_L_VM);
  return v;
}

orr_vm *orr_l_tovm(lua_State *L, int idx) {
  lvm *v = luaL_testudata(L, idx, ORR_L_VM);
  return v != NULL ? v->vm : NULL;
}

orr_vm *orr_l_checkvm(lua_State *L, int idx) {
  return check_open(L, idx)->vm;
}

static void vm_close(lvm *v) {
  if (v->vm == NULL)
    return;
  snapshot(v);
  orr_vm_close(v->vm);
  v->vm = NULL;
}

/* vm:close(), __gc and __close: idempotent. With the document's
** ShouldTerminateOnLastHandleClosed the engine terminates the VM. */
static int l_close(lua_State *L) {
  vm_close(luaL_checkudata(L, 1, ORR_L_VM));
  lua_pushboolean(L, 1);
  return 1;
}

static int l_tostring(lua_State *L) {
  lvm *v = luaL_checkudata(L, 1, ORR_L_VM);
  lua_getiuservalue(L, 1, 2);
  if (v->vm == NULL)
    lua_pushfstring(L, ORR_L_VM ": %p (id=%s, closed)", (void *)v,
                    lua_tostring(L, -1));
  else
    lua_pushfstring(L, ORR_L_VM ": %p (id=%s, state=%s)", (void *)v,
                    orr_vm_id(v->vm), orr_vm_state(v->vm));
  return 1;
}

/* ---- Events ------------------------------------------------------------- */

typedef struct {
  lvm *v;
  const char *event;
  json_t *data;
} event_call;

/* Under orr_l_cpcall: calls each handler of the event, each protected. */
static int dispatch(lua_State *L) {
  event_call *e = lua_touserdata(L, 1);
  int ud, first, n;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &vms_key);
  if (lua_rawgetp(L, -1, e->v) != LUA_TUSERDATA)
    return 0; /* unreachable VM about to be finalized */
  ud = lua_gettop(L);
  if (lua_getiuservalue(L, ud, 1) != LUA_TTABLE ||
      lua_getfield(L, -1, e->event) != LUA_TTABLE)
    return 0;
  /* Snapshot the handlers: one may unsubscribe another meanwhile. */
  n = (int)lua_rawlen(L, -1);
  luaL_checkstack(L, n + 5, "orrery: too many event handlers");
  first = lua_gettop(L) + 1;
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, first - 1, i);
    lua_getfield(L, -1, "fn");
    lua_remove(L, -2);
  }
  for (int i = 0; i < n; i++) {
    lua_pushvalue(L, first + i);
    if (e->data != NULL)
      orr_l_pushjson(L, e->data);
    else
      lua_newtable(L);
    lua_pushvalue(L, ud);
    lua_pushstring(L, e->event);
    orr_l_pcall(e->v->ctx, L, 3, "event handler");
  }
  return 0;
}

static void on_event(void *arg, orr_vm *vm, const char *event, json_t *data) {
  lvm *v = arg;
  event_call e = {v, event, data};
  (void)vm;
  if (orr_l_closing(v->ctx))
    return;
  orr_l_cpcall(v->ctx, dispatch, &e);
}

/* The function vm:on returns: removes its handler; true the first time. */
static int l_unsubscribe(lua_State *L) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, lua_upvalueindex(1));
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, lua_upvalueindex(1), i);
    if (lua_rawequal(L, -1, lua_upvalueindex(2))) {
      for (; i < n; i++) {
        lua_rawgeti(L, lua_upvalueindex(1), i + 1);
        lua_rawseti(L, lua_upvalueindex(1), i);
      }
      lua_pushnil(L);
      lua_rawseti(L, lua_upvalueindex(1), n);
      lua_pushboolean(L, 1);
      return 1;
    }
    lua_pop(L, 1);
  }
  lua_pushboolean(L, 0);
  return 1;
}

/* vm:on(event, fn) -> unsubscribe function. fn(data, vm, event) runs from
** the loop: it may spawn tasks but not wait. */
static int l_on(lua_State *L) {
  const char *ev;
  int i;
  check_open(L, 1);
  ev = luaL_checkstring(L, 2);
  for (i = 0; events[i] != NULL && strcmp(events[i], ev) != 0; i++)
    ;
  if (events[i] == NULL)
    return luaL_error(L,
                      "vm:on: unknown event '%s' (expected state, exit, "
                      "device_deleted, console, unresponsive, responsive, "
                      "settled or block_job)",
                      ev);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_settop(L, 3);
  if (lua_getiuservalue(L, 1, 1) != LUA_TTABLE) { /* 4: handlers */
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, 1);
  }
  if (lua_getfield(L, 4, events[i]) != LUA_TTABLE) { /* 5: this event's */
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, 4, events[i]);
  }
  lua_createtable(L, 0, 1); /* 6: the entry, its identity for removal */
  lua_pushvalue(L, 3);
  lua_setfield(L, 6, "fn");
  lua_pushvalue(L, 6);
  lua_rawseti(L, 5, (lua_Integer)lua_rawlen(L, 5) + 1);
  lua_pushcclosure(L, l_unsubscribe, 2); /* the list and the entry */
  return 1;
}

/* ---- Waiting calls ------------------------------------------------------ */

/* The exit info / QMP answer as a table (true when there is none). */
static int push_json(lua_State *L, orr_l_op *op) {
  if (op->status != 0)
    return orr_l_fail(L, &op->err);
  if (op->result != NULL)
    orr_l_pushjson(L, op->result);
  else
    lua_pushboolean(L, 1);
  return 1;
}

typedef void (*vm_call)(orr_vm *, uint64_t, orr_vm_cb, void *);

/* vm:NAME{timeout_ms = n}: timeout_ms 0 or none is the call's default. */
static int simple(lua_State *L, const char *name, vm_call fn,
                  orr_l_push_fn push) {
  lvm *v = check_open(L, 1);
  uint64_t ms;
  orr_l_op *op = orr_l_timed_op(L, 2, name, push, &ms);
  fn(v->vm, ms, orr_l_op_cb, op);
  return orr_l_op_wait(L, op);
}

static int l_start(lua_State *L) {
  return simple(L, "start", orr_vm_start, NULL);
}
static int l_pause(lua_State *L) {
  return simple(L, "pause", orr_vm_pause, NULL);
}
static int l_resume(lua_State *L) {
  return simple(L, "resume", orr_vm_resume, NULL);
}
static int l_wait(lua_State *L) {
  return simple(L, "wait", orr_vm_wait, push_json);
}
/* No deadline to give: it always ends (quit, then SIGKILL). */
static int l_terminate(lua_State *L) {
  lvm *v = check_open(L, 1);
  orr_l_op *op = orr_l_op_new(L, NULL);
  orr_l_op_anchor(L, op, 1);
  orr_vm_terminate(v->vm, orr_l_op_cb, op);
  return orr_l_op_wait(L, op);
}

/* modify's options: none for 0, the call's default. */
static json_t *timeout_json(uint64_t ms) {
  return ms > 0 ? json_pack("{s:I}", "timeout_ms", (json_int_t)ms) : NULL;
}

/* vm:shutdown{timeout_ms = n} -> exit info table | fail */
static int l_shutdown(lua_State *L) {
  lvm *v = check_open(L, 1);
  uint64_t ms;
  orr_l_op *op = orr_l_timed_op(L, 2, "shutdown", push_json, &ms);
  orr_vm_shutdown(v->vm, ms, orr_l_op_cb, op);
  return orr_l_op_wait(L, op);
}

/* vm:save({SaveStateFilePath = "/abs/path"}, {timeout_ms = n}) */
static int l_save(lua_State *L) {
  lvm *v = check_open(L, 1);
  uint64_t ms = 0;
  json_t *opts;
  orr_l_op *op;
  luaL_checktype(L, 2, LUA_TTABLE);
  ms = orr_l_timeout_opt(L, 3, "save");
  orr_l_check_wait(L);
  opts = orr_l_checkjson(L, 2, "save");
  op = orr_l_op_new(L, NULL);
  orr_l_op_keep(op, opts);
  orr_l_op_anchor(L, op, 1);
  orr_vm_save(v->vm, opts, ms, orr_l_op_cb, op);
  return orr_l_op_wait(L, op);
}

/* Reads {to = URI, timeout_ms = n} of vm:migrate; to is left on the stack. */
static const char *migrate_opts(lua_State *L, int idx, uint64_t *ms) {
  const char *to;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING ||
        (strcmp(lua_tostring(L, -1), "to") != 0 &&
         strcmp(lua_tostring(L, -1), "timeout_ms") != 0))
      luaL_error(L, "migrate: unknown option '%s' (expected to or timeout_ms)",
                 luaL_tolstring(L, -1, NULL));
  }
  if (lua_getfield(L, idx, "to") != LUA_TSTRING)
    luaL_error(L,
               "migrate: to must be a string (\"unix:/abs/path\" or "
               "\"tcp:HOST:PORT\"), got %s",
               luaL_typename(L, -1));
  to = lua_tostring(L, -1);
  if (lua_getfield(L, idx, "timeout_ms") != LUA_TNIL &&
      (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0))
    luaL_error(L, "migrate: timeout_ms must be a non-negative integer");
  *ms = lua_isinteger(L, -1) ? (uint64_t)lua_tointeger(L, -1) : 0;
  lua_pop(L, 1);
  return to;
}

/* vm:migrate{to = URI, timeout_ms = n} -> {TotalTimeMs, DowntimeMs, ...} |
** fail: the VM moves to the engine receiving at URI (orrery.receive). */
static int l_migrate(lua_State *L) {
  lvm *v = check_open(L, 1);
  uint64_t ms = 0;
  const char *to;
  orr_l_op *op;
  lua_settop(L, 2);
  to = migrate_opts(L, 2, &ms);
  op = orr_l_op_new(L, push_json);
  orr_l_op_anchor(L, op, 1);
  orr_vm_migrate(v->vm, to, ms, orr_l_op_cb, op);
  return orr_l_op_wait(L, op);
}

/* vm:qmp(command, arguments, {timeout_ms = n}) -> QEMU's answer: the
** escape hatch. */
static int l_qmp(lua_State *L) {
  lvm *v = check_open(L, 1);
  const char *cmd = luaL_checkstring(L, 2);
  json_t *args = NULL;
  uint64_t ms = 0;
  orr_l_op *op;
  ms = orr_l_timeout_opt(L, 4, "qmp");
  orr_l_check_wait(L);
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    args = orr_l_checkjson(L, 3, "qmp");
  }
  op = orr_l_op_new(L, push_json);
  orr_l_op_keep(op, args);
  orr_l_op_anchor(L, op, 1);
  orr_vm_qmp(v->vm, cmd, args, ms, orr_l_op_cb, op);
  return orr_l_op_wait(L, op);
}

/* The one path of every run-time change; takes req and opts. */
static int modify(lua_State *L, lvm *v, json_t *req, json_t *opts) {
  orr_l_op *op;
  if (req == NULL) {
    json_decref(opts);
    return luaL_error(L, "orrery: out of memory");
  }
  op = orr_l_op_new(L, NULL);
  orr_l_op_keep(op, req);
  orr_l_op_keep(op, opts);
  orr_l_op_anchor(L, op, 1);
  orr_vm_modify(v->vm, req, opts, orr_l_op_cb, op);
  return orr_l_op_wait(L, op);
}

/* vm:modify{ResourcePath, RequestType, Settings}, {timeout_ms = n} */
static int l_modify(lua_State *L) {
  lvm *v = check_open(L, 1);
  uint64_t ms = 0;
  json_t *req;
  luaL_checktype(L, 2, LUA_TTABLE);
  ms = orr_l_timeout_opt(L, 3, "modify");
  orr_l_check_wait(L);
  req = orr_l_checkjson(L, 2, "modify");
  return modify(L, v, req, timeout_json(ms));
}

/* A request {ResourcePath = path, RequestType = type?, Settings = json?}. */
static json_t *request(const char *path, const char *type, json_t *settings) {
  json_t *r = json_object();
  json_object_set_new(r, "ResourcePath", json_string(path));
  if (type != NULL)
    json_object_set_new(r, "RequestType", json_string(type));
  if (settings != NULL)
    json_object_set_new(r, "Settings", settings);
  return r;
}

static const char *describe(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER)
    return luaL_tolstring(L, idx, NULL);
  return luaL_typename(L, idx);
}

static int controller_arg(lua_State *L, int idx, const char *op) {
  if (!lua_isinteger(L, idx) || lua_tointeger(L, idx) < 0 ||
      lua_tointeger(L, idx) >= ORR_SCSI_CONTROLLERS)
    luaL_error(L, "%s: controller must be an integer in 0..%d, got %s", op,
               ORR_SCSI_CONTROLLERS - 1, describe(L, idx));
  return (int)lua_tointeger(L, idx);
}

static lua_Integer lun_arg(lua_State *L, int idx, const char *op) {
  if (!lua_isinteger(L, idx))
    luaL_error(L, "%s: lun must be an integer, got %s", op, describe(L, idx));
  return lua_tointeger(L, idx);
}

/* A typed call's op (l_async.c): its JSON argument lives until the op
** completes (the C call copies it, but the op owns it). */
static orr_l_op *change_op(lua_State *L, json_t *keep) {
  orr_l_op *op = orr_l_op_new(L, NULL);
  orr_l_op_keep(op, keep);
  orr_l_op_anchor(L, op, 1);
  return op;
}

/* The LUN as the C call's int (the request path judges it): one outside
** int's range cannot be valid anyway. */
static int lun_int(lua_State *L, lua_Integer lun, const char *op) {
  if (lun < INT32_MIN || lun > INT32_MAX)
    luaL_error(L, "%s: lun must be in 0..63, got %lld", op, (long long)lun);
  return (int)lun;
}

/* vm:add_scsi_disk(controller, lun, attachment, {timeout_ms}) */
static int l_add_scsi_disk(lua_State *L) {
  lvm *v = check_open(L, 1);
  int c = controller_arg(L, 2, "add_scsi_disk");
  int lun = lun_int(L, lun_arg(L, 3, "add_scsi_disk"), "add_scsi_disk");
  uint64_t ms = 0;
  json_t *att;
  orr_l_op *op;
  ms = orr_l_timeout_opt(L, 5, "add_scsi_disk");
  orr_l_check_wait(L);
  att = orr_l_checkjson(L, 4, "add_scsi_disk");
  op = change_op(L, att);
  orr_vm_add_scsi_disk(v->vm, c, lun, att, ms, orr_l_op_cb, op);
  return orr_l_op_wait(L, op);
}

/* vm:remove_scsi_disk(controller, lun, {timeout_ms}) */
static int l_remove_scsi_disk(lua_State *L) {
  lvm *v = check_open(L, 1);
  int c = controller_arg(L, 2, "remove_scsi_disk");
  int lun = lun_int(L, lun_arg(L, 3, "remove_scsi_disk"), "remove_scsi_disk");
  uint64_t ms = 0;
  orr_l_op *op;
  ms = orr_l_timeout_opt(L, 4, "remove_scsi_disk");
  orr_l_check_wait(L);
  op = change_op(L, NULL);
  orr_vm_remove_scsi_disk(v->vm, c, lun, ms, orr_l_op_cb, op);
  return orr_l_op_wait(L, op);
}

/* vm:snapshot_disk(controller, lun, {overlay, timeout_ms}),
** vm:commit_disk(controller, lun, {timeout_ms}),
** vm:snapshot_disks({["<c>-<lun>"] = overlay, ...}, {timeout_ms}). */
static int disk_job(lua_State *L, const char *op_name, int snapshot) {
  lvm *v = check_open(L, 1);
  int c = controller_arg(L, 2, op_name);
  int lun = lun_int(L, lun_arg(L, 3, op_name), op_name);
  json_t *opts = NULL;
  orr_l_op *op;
  if (!lua_isnoneornil(L, 4)) {
    luaL_checktype(L, 4, LUA_TTABLE);
    opts = orr_l_checkjson(L, 4, op_name);
  }
  orr_l_check_wait(L);
  op = orr_l_op_new(L, NULL);
  orr_l_op_keep(op, opts);
  orr_l_op_anchor(L, op, 1);
  if (snapshot)
    orr_vm_snapshot_disk(v->vm, c, lun, opts, orr_l_op_cb, op);
  else
    orr_vm_commit_disk(v->vm, c, lun, opts, orr_l_op_cb, op);
  return orr_l_op_wait(L, op);
}
static int l_snapshot_disk(lua_State *L) {
  return disk_job(L, "snapshot_disk", 1);
}
static int l_commit_disk(lua_State *L) {
  return disk_job(L, "commit_disk", 0);
}
static int l_snapshot_disks(lua_State *L) {
  lvm *v = check_open(L, 1);
  json_t *disks, *opts = NULL;
  orr_l_op *op;
  luaL_checktype(L, 2, LUA_TTABLE);
  disks = orr_l_checkjson(L, 2, "snapshot_disks");
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    opts = orr_l_checkjson(L, 3, "snapshot_disks");
  }
  orr_l_check_wait(L);
  op = orr_l_op_new(L, NULL);
  orr_l_op_keep(op, disks);
  orr_l_op_keep(op, opts);
  orr_l_op_anchor(L, op, 1);
  orr_vm_snapshot_disks(v->vm, disks, opts, orr_l_op_cb, op);
  return orr_l_op_wait(L, op);
}

typedef void (*guid_set_fn)(orr_vm *, const char *, const json_t *, uint64_t,
                            orr_vm_cb, void *);
typedef void (*guid_del_fn)(orr_vm *, const char *, uint64_t, orr_vm_cb,
                            void *);

/* vm:OP(guid, settings, {timeout_ms}) */
static int guid_with_settings(lua_State *L, const char *name, guid_set_fn fn) {
  lvm *v = check_open(L, 1);
  const char *guid = luaL_checkstring(L, 2);
  uint64_t ms = 0;
  json_t *settings;
  orr_l_op *op;
  ms = orr_l_timeout_opt(L, 4, name);
  orr_l_check_wait(L);
  settings = orr_l_checkjson(L, 3, name);
  op = change_op(L, settings);
  fn(v->vm, guid, settings, ms, orr_l_op_cb, op);
  return orr_l_op_wait(L, op);
}

/* vm:OP(guid, {timeout_ms}) */
static int guid_remove(lua_State *L, const char *name, guid_del_fn fn) {
  lvm *v = check_open(L, 1);
  const char *guid = luaL_checkstring(L, 2);
  uint64_t ms = 0;
  orr_l_op *op;
  ms = orr_l_timeout_opt(L, 3, name);
  orr_l_check_wait(L);
  op = change_op(L, NULL);
  fn(v->vm, guid, ms, orr_l_op_cb, op);
  return orr_l_op_wait(L, op);
}

#define VPCI_PATH "VirtualMachine/Devices/VirtualPci"
#define NIC_PATH "VirtualMachine/Devices/NetworkAdapters"
#define PLAN9_PATH "VirtualMachine/Devices/Plan9/Shares"
#define VPMEM_PATH "VirtualMachine/Devices/VirtualPMem/Devices"

static int l_add_vpci_device(lua_State *L) {
  return guid_with_settings(L, "add_vpci_device", orr_vm_add_vpci_device);
}
static int l_remove_vpci_device(lua_State *L) {
  return guid_remove(L, "remove_vpci_device", orr_vm_remove_vpci_device);
}
static int l_add_nic(lua_State *L) {
  return guid_with_settings(L, "add_nic", orr_vm_add_nic);
}
static int l_remove_nic(lua_State *L) {
  return guid_remove(L, "remove_nic", orr_vm_remove_nic);
}
/* Add/Update with settings at "<prefix>/<key>", then {timeout_ms}: a
** change with no typed C call of its own yet. */
static int keyed_with_settings(lua_State *L, const char *op, const char *prefix,
                               const char *type) {
  lvm *v = check_open(L, 1);
  const char *key = luaL_checkstring(L, 2);
  uint64_t ms = 0;
  json_t *settings;
  char path[256];
  ms = orr_l_timeout_opt(L, 4, op);
  orr_l_check_wait(L);
  settings = orr_l_checkjson(L, 3, op);
  snprintf(path, sizeof path, "%s/%s", prefix, key);
  return modify(L, v, request(path, type, settings), timeout_json(ms));
}

/* Remove at "<prefix>/<key>", no Settings. */
static int keyed_remove(lua_State *L, const char *op, const char *prefix) {
  lvm *v = check_open(L, 1);
  const char *key = luaL_checkstring(L, 2);
  uint64_t ms = 0;
  char path[256];
  ms = orr_l_timeout_opt(L, 3, op);
  orr_l_check_wait(L);
  snprintf(path, sizeof path, "%s/%s", prefix, key);
  return modify(L, v, request(path, "Remove", NULL), timeout_json(ms));
}

/* VPMem devices are keyed by a number (hcsshim's uint32 id). */
static void vpmem_key(lua_State *L, const char *op) {
  if (!lua_isinteger(L, 2))
    luaL_error(L, "%s: the device number must be an integer, got %s", op,
               describe(L, 2));
  lua_tostring(L, 2); /* in place: the path's last part */
}
static int l_add_vpmem_device(lua_State *L) {
  check_open(L, 1);
  vpmem_key(L, "add_vpmem_device");
  return keyed_with_settings(L, "add_vpmem_device", VPMEM_PATH, "Add");
}
static int l_remove_vpmem_device(lua_State *L) {
  check_open(L, 1);
  vpmem_key(L, "remove_vpmem_device");
  return keyed_remove(L, "remove_vpmem_device", VPMEM_PATH);
}
/* Mapped pipes: hcsshim's AddPipe/RemovePipe, keyed by the host path. */
#define PIPE_PATH "VirtualMachine/Devices/MappedPipes"
static int pipe_change(lua_State *L, const char *op, const char *type) {
  lvm *v = check_open(L, 1);
  const char *host = luaL_checkstring(L, 2);
  uint64_t ms = 0;
  char path[512];
  ms = orr_l_timeout_opt(L, 3, op);
  orr_l_check_wait(L);
  snprintf(path, sizeof path, "%s/%s", PIPE_PATH, host);
  return modify(L, v, request(path, type, NULL), timeout_json(ms));
}
static int l_add_pipe(lua_State *L) {
  return pipe_change(L, "add_pipe", "Add");
}
static int l_remove_pipe(lua_State *L) {
  return pipe_change(L, "remove_pipe", "Remove");
}
/* vm:pipe(host_path) -> an orrery.Stream to the VM's mapped pipe there. */
static int l_pipe(lua_State *L) {
  lvm *v = check_open(L, 1);
  const char *host = luaL_checkstring(L, 2);
  json_t *props = orr_vm_properties(v->vm);
  int mine =
      json_object_get(json_object_get(props, "MappedPipes"), host) != NULL;
  json_decref(props);
  if (!mine) {
    orr_error e;
    orr_error_set(&e, ORR_ENOENT,
                  "pipe: %s is not a mapped pipe of this VM (vm:add_pipe)",
                  host);
    return orr_l_fail(L, &e);
  }
  return orr_l_stream_connect(L, host);
}
/* hcsshim's UpdateNIC refuses nil settings; so do we, as a raise. */
static int l_update_nic(lua_State *L) {
  check_open(L, 1);
  luaL_checkstring(L, 2);
  if (lua_isnoneornil(L, 3))
    return luaL_error(L, "update_nic: network adapter settings cannot be nil");
  return guid_with_settings(L, "update_nic", orr_vm_update_nic);
}

typedef void (*json_fn)(orr_vm *, const json_t *, uint64_t, orr_vm_cb, void *);

/* vm:OP(table, {timeout_ms}): Plan9 add and remove both carry the share as
** Settings (hcsshim); CPU limits are a resource update. */
static int with_table(lua_State *L, const char *name, json_fn fn) {
  lvm *v = check_open(L, 1);
  uint64_t ms = 0;
  json_t *settings;
  orr_l_op *op;
  luaL_checktype(L, 2, LUA_TTABLE);
  ms = orr_l_timeout_opt(L, 3, name);
  orr_l_check_wait(L);
  settings = orr_l_checkjson(L, 2, name);
  op = change_op(L, settings);
  fn(v->vm, settings, ms, orr_l_op_cb, op);
  return orr_l_op_wait(L, op);
}
static int l_add_plan9_share(lua_State *L) {
  return with_table(L, "add_plan9_share", orr_vm_add_plan9_share);
}
static int l_remove_plan9_share(lua_State *L) {
  return with_table(L, "remove_plan9_share", orr_vm_remove_plan9_share);
}
static int l_update_cpu_limits(lua_State *L) {
  return with_table(L, "update_cpu_limits", orr_vm_update_cpu_limits);
}

static int l_update_memory(lua_State *L) {
  lvm *v = check_open(L, 1);
  uint64_t ms = 0;
  orr_l_op *op;
  if (!lua_isinteger(L, 2))
    return luaL_error(L, "update_memory: size_mb must be an integer, got %s",
                      describe(L, 2));
  ms = orr_l_timeout_opt(L, 3, "update_memory");
  orr_l_check_wait(L);
  if (lua_tointeger(L, 2) < 0) /* the request path names the rule */
    return modify(L, v,
                  request("VirtualMachine/ComputeTopology/Memory/SizeInMB",
                          NULL, json_integer(lua_tointeger(L, 2))),
                  timeout_json(ms));
  op = change_op(L, NULL);
  orr_vm_update_memory(v->vm, (uint64_t)lua_tointeger(L, 2), ms, orr_l_op_cb,
                       op);
  return orr_l_op_wait(L, op);
}

/* vm:guest{timeout_ms} -> orrery.Guest | fail (l_guest.c) */
static int l_guest(lua_State *L) {
  return orr_l_vm_guest(L, check_open(L, 1)->vm);
}

/* ---- Sync queries ------------------------------------------------------- */

static int l_id(lua_State *L) {
  lua_pushstring(L, orr_vm_id(check_open(L, 1)->vm));
  return 1;
}

static int l_state(lua_State *L) {
  lua_pushstring(L, orr_vm_state(check_open(L, 1)->vm));
  return 1;
}

static int push_owned(lua_State *L, json_t *v) {
  if (v != NULL)
    orr_l_pushjson(L, v);
  else
    lua_newtable(L);
  json_decref(v);
  return 1;
}

static int l_properties(lua_State *L) {
  return push_owned(L, orr_vm_properties(check_open(L, 1)->vm));
}

static int l_plan_log(lua_State *L) {
  return push_owned(L, orr_vm_plan_log(check_open(L, 1)->vm));
}

static int l_document(lua_State *L) {
  orr_l_pushjson(L, orr_vm_document(check_open(L, 1)->vm));
  return 1;
}

/* ---- orrery.create ------------------------------------------------------ */

static const char *const opt_names[] = {
    "backend",       "accel",         "hotplug_ports",
    "guest_agent",   "restore",       "qemu_binary",
    "runtime_dir",   "timeout_ms",    "kubeconfig",
    "namespace",     "sources",       "template_ram",
    "template_boot", "memory_max_mb", NULL};

/* A string option into *out if given (else *out keeps the engine's
** default); left on the stack so it lives as long as the call. */
static void str_opt(lua_State *L, int idx, const char *name, const char **out) {
  int t = lua_getfield(L, idx, name);
  if (t == LUA_TNIL)
    return;
  if (t != LUA_TSTRING)
    luaL_error(L, "create: opts.%s must be a string, got %s", name,
               luaL_typename(L, -1));
  *out = lua_tostring(L, -1);
}

static lua_Integer int_opt(lua_State *L, int idx, const char *op,
                           const char *name, lua_Integer max,
                           lua_Integer dflt) {
  lua_Integer n = 0;
  if (lua_getfield(L, idx, name) == LUA_TNIL) {
    lua_pop(L, 1);
    return dflt;
  }
  if (!lua_isinteger(L, -1) || (n = lua_tointeger(L, -1)) < 0 || n > max)
    luaL_error(L, "%s: opts.%s must be an integer in 0..%I, got %s", op, name,
               (LUAI_UACINT)max, describe(L, -1));
  lua_pop(L, 1);
  return n;
}

/* opts.sources (a table of strings to strings) merged with `orrery plan
** --source` (which wins); NULL when neither has any. Raises for a table
** that is not one. */
static json_t *sources_opt(lua_State *L, int idx, const vm_state *s,
                           int planning) {
  json_t *src = NULL;
  if (!lua_isnoneornil(L, idx)) {
    int t = lua_getfield(L, idx, "sources");
    if (t != LUA_TNIL && t != LUA_TTABLE)
      luaL_error(L, "create: opts.sources must be a table, got %s",
                 luaL_typename(L, -1));
    if (t == LUA_TTABLE) {
      src = orr_l_checkjson(L, lua_gettop(L), "create: opts.sources");
      if (json_is_array(src) && json_array_size(src) == 0) {
        json_decref(src); /* {}: no sources */
        src = json_object();
      }
    }
    lua_pop(L, 1);
  }
  if (planning && s->kv_sources != NULL) {
    if (src == NULL)
      src = json_object();
    if (json_is_object(src))
      json_object_update(src, s->kv_sources);
  }
  return src;
}

static void create_opts(lua_State *L, int idx, orr_vm_options *o) {
  vm_state *s = get_state(L, 0);
  const char *backend = NULL;
  orr_vm_options_init(o);
  if (!lua_isnoneornil(L, idx)) {
    luaL_checktype(L, idx, LUA_TTABLE);
    luaL_checkstack(L, 12, NULL);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
      int i = 0;
      lua_pop(L, 1);
      if (lua_type(L, -1) == LUA_TSTRING)
        for (; opt_names[i] != NULL; i++)
          if (strcmp(opt_names[i], lua_tostring(L, -1)) == 0)
            break;
      if (lua_type(L, -1) != LUA_TSTRING || opt_names[i] == NULL)
        luaL_error(L,
                   "create: unknown option '%s' (expected backend, accel, "
                   "hotplug_ports, guest_agent, restore, qemu_binary, "
                   "runtime_dir, timeout_ms, kubeconfig, namespace, "
                   "sources, template or memory_max_mb)",
                   luaL_tolstring(L, -1, NULL));
    }
    str_opt(L, idx, "backend", &backend);
    str_opt(L, idx, "accel", &o->accel);
    str_opt(L, idx, "restore", &o->restore);
    str_opt(L, idx, "qemu_binary", &o->qemu_binary);
    str_opt(L, idx, "runtime_dir", &o->runtime_dir);
    str_opt(L, idx, "kubeconfig", &o->kubeconfig);
    str_opt(L, idx, "namespace", &o->kube_namespace);
    /* What orrery.create's template option becomes (orrery/template.lua). */
    str_opt(L, idx, "template_ram", &o->template_ram);
    if (lua_getfield(L, idx, "template_boot") != LUA_TNIL)
      o->template_boot = lua_toboolean(L, -1);
    lua_pop(L, 1);
    o->hotplug_ports =
        (int)int_opt(L, idx, "create", "hotplug_ports", 4096, o->hotplug_ports);
    o->timeout_ms =
        (uint64_t)int_opt(L, idx, "create", "timeout_ms", LUA_MAXINTEGER,
                          (lua_Integer)o->timeout_ms);
    o->memory_max_mb =
        (uint64_t)int_opt(L, idx, "create", "memory_max_mb", 1048576, 0);
    switch (lua_getfield(L, idx, "guest_agent")) {
    case LUA_TNIL:
      break;
    case LUA_TBOOLEAN:
      o->guest_agent = lua_toboolean(L, -1);
      break;
    default:
      luaL_error(L, "create: opts.guest_agent must be a boolean, got %s",
                 luaL_typename(L, -1));
    }
    lua_pop(L, 1);
  }
  if (backend == NULL && s != NULL)
    backend = s->backend; /* orrery plan's default */
  if (backend != NULL)
    o->backend = backend;
  /* Under `orrery plan` nothing reaches a cluster either: a kubevirt VM is
  ** a dry run of the kubevirt backend. */
  if (s != NULL && s->backend != NULL && strcmp(o->backend, "kubevirt") == 0) {
    o->dry_run = 1;
    if (o->kube_namespace == NULL)
      o->kube_namespace = s->kv_ns;
  }
}

/* The document from a Builder (copied), a table, or JSON text. Returns NULL
** with e set for unparsable text; raises for an unconvertible table. */
static json_t *doc_arg(lua_State *L, int idx, orr_error *e) {
  orr_builder *b = orr_l_testbuilder(L, idx);
  if (b != NULL)
    return json_deep_copy(orr_builder_doc(b));
  if (luaL_testudata(L, idx, ORR_L_BUILDER) != NULL)
    luaL_error(L, "attempt to use a closed " ORR_L_BUILDER);
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t len;
    const char *text = lua_tolstring(L, idx, &len);
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, 0, &jerr);
    if (doc == NULL)
      orr_error_set(e, ORR_EINVAL,
                    "create: the document is not valid JSON: %s (line %d)",
                    jerr.text, jerr.line);
    return doc;
  }
  if (lua_istable(L, idx))
    return orr_l_checkjson(L, idx, "create");
  luaL_typeerror(L, idx, ORR_L_BUILDER ", document table or JSON text");
  return NULL;
}

static int push_create(lua_State *L, orr_l_op *op) {
  orr_l_op_pushanchor(L, op);
  if (op->status == 0)
    return 1;
  vm_close(lua_touserdata(L, -1)); /* the engine tore it down already */
  lua_pop(L, 1);
  return orr_l_fail(L, &op->err);
}

/* orrery.create(id, builder | document | json, opts) -> VM | fail */
/* Pushes a new orrery.VM (its id, at stack index 1, kept as a user value)
** and anchors it to op, so it lives until the create or open completes. */
static lvm *new_vm_ud(lua_State *L, orr_l_op *op, int *ud) {
  lvm *v = lua_newuserdatauv(L, sizeof *v, 2);
  memset(v, 0, sizeof *v);
  *ud = lua_gettop(L);
  luaL_setmetatable(L, ORR_L_VM);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, *ud, 2);
  orr_l_op_anchor(L, op, *ud);
  return v;
}

/* The engine took the VM: bind it to its userdata and listen to it. */
static void bind_vm(lua_State *L, lvm *v, int ud, orr_vm *vm) {
  v->vm = vm;
  v->ctx = orr_l_ctx_get(L);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &vms_key);
  lua_pushvalue(L, ud);
  lua_rawsetp(L, -2, v);
  lua_pop(L, 1);
  orr_vm_on_event(vm, on_event, v);
}

static int l_create(lua_State *L) {
  const char *id = luaL_checkstring(L, 1);
  vm_state *s;
  orr_error e = {0, ""};
  orr_vm_options o;
  orr_engine *eng;
  orr_vm *vm = NULL;
  orr_l_op *op;
  json_t *doc, *sources;
  lvm *v;
  int ud, rc;
  luaL_argexpected(L, !lua_isnoneornil(L, 2), 2,
                   ORR_L_BUILDER ", document table or JSON text");
  lua_settop(L, 3);
  create_opts(L, 3, &o); /* leaves its strings on the stack */
  eng = orr_l_engine(L); /* before the userdata: finalizer order */
  orr_l_check_wait(L);
  s = get_state(L, 1); /* before the VM's userdata: finalizer order */
  sources = sources_opt(L, 3, s, o.dry_run);
  doc = doc_arg(L, 2, &e);
  if (doc == NULL) {
    json_decref(sources);
    return orr_l_fail(L, &e);
  }
  o.sources = sources; /* borrowed by the call only */
  op = orr_l_op_new(L, push_create);
  orr_l_op_keep(op, doc);
  v = new_vm_ud(L, op, &ud);
  rc = orr_vm_create(eng, id, doc, &o, orr_l_op_cb, op, &vm, &e);
  json_decref(sources);
  if (rc != 0) {
    orr_l_op_cancel(L, op);
    return orr_l_fail(L, &e);
  }
  s->created++;
  bind_vm(L, v, ud, vm);
  if (strcmp(o.backend, "plan") == 0 || o.dry_run)
    record(L, v, id);
  return orr_l_op_wait(L, op);
}

/* The options of the calls that name a VM another engine left running
** (orrery.open, orrery.kill): { runtime_dir, timeout_ms } at index 2. The
** runtime_dir string stays on the Lua stack for the call's duration. */
static void by_id_options(lua_State *L, const char *fn, orr_vm_options *o) {
  lua_settop(L, 2);
  orr_vm_options_init(o);
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "runtime_dir");
    o->runtime_dir = luaL_optstring(L, -1, NULL);
    o->timeout_ms =
        (uint64_t)int_opt(L, 2, fn, "timeout_ms", LUA_MAXINTEGER, 0);
  }
}

/* orrery.open(id[, opts]): re-attach to a VM another engine process left
** running (ShouldTerminateOnLastHandleClosed = false). opts: runtime_dir,
** timeout_ms (the QMP handshake's deadline; 0: 10 s). */
static int l_open(lua_State *L) {
  const char *id = luaL_checkstring(L, 1);
  orr_error e = {0, ""};
  orr_vm_options o;
  orr_engine *eng;
  orr_vm *vm = NULL;
  orr_l_op *op;
  lvm *v;
  int ud;
  by_id_options(L, "open", &o);
  eng = orr_l_engine(L);
  orr_l_check_wait(L);
  op = orr_l_op_new(L, push_create);
  v = new_vm_ud(L, op, &ud);
  if (orr_vm_open(eng, id, &o, orr_l_op_cb, op, &vm, &e) != 0) {
    orr_l_op_cancel(L, op);
    return orr_l_fail(L, &e);
  }
  bind_vm(L, v, ud, vm);
  return orr_l_op_wait(L, op);
}

/* orrery.kill(id[, opts]) -> {ExitCode, Signal, Reason} | fail: ends a VM
** another engine left running and whose QEMU does not answer, which
** orrery.open cannot take (orr_vm_kill_id: by its pid, once proved to be
** the VM's QEMU; a VM an engine holds is EBUSY). opts: runtime_dir,
** timeout_ms (how long it may take to exit after SIGKILL; 0: 10 s). */
static int l_kill(lua_State *L) {
  const char *id = luaL_checkstring(L, 1);
  orr_error e = {0, ""};
  orr_vm_options o;
  orr_engine *eng;
  orr_l_op *op;
  by_id_options(L, "kill", &o);
  eng = orr_l_engine(L);
  orr_l_check_wait(L);
  op = orr_l_op_new(L, push_json);
  if (orr_vm_kill_id(eng, id, &o, orr_l_op_cb, op, &e) != 0) {
    orr_l_op_cancel(L, op);
    return orr_l_fail(L, &e);
  }
  return orr_l_op_wait(L, op);
}

/* orrery.receive(id, {listen = URI, timeout_ms = n, runtime_dir = dir}):
** waits for one VM another engine migrates here (vm:migrate) and returns it
** once it runs here. */
static int l_receive(lua_State *L) {
  const char *id = luaL_checkstring(L, 1), *listen;
  orr_error e = {0, ""};
  orr_vm_options o;
  orr_engine *eng;
  orr_vm *vm = NULL;
  orr_l_op *op;
  lvm *v;
  int ud;
  lua_settop(L, 2);
  luaL_checktype(L, 2, LUA_TTABLE);
  orr_vm_options_init(&o);
  lua_pushnil(L);
  while (lua_next(L, 2) != 0) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING ||
        (strcmp(lua_tostring(L, -1), "listen") != 0 &&
         strcmp(lua_tostring(L, -1), "timeout_ms") != 0 &&
         strcmp(lua_tostring(L, -1), "runtime_dir") != 0))
      luaL_error(L,
                 "receive: unknown option '%s' (expected listen, timeout_ms "
                 "or runtime_dir)",
                 luaL_tolstring(L, -1, NULL));
  }
  if (lua_getfield(L, 2, "listen") != LUA_TSTRING)
    return luaL_error(L,
                      "receive: opts.listen must be a string "
                      "(\"unix:/abs/path\" or \"tcp:HOST:PORT\"), got %s",
                      luaL_typename(L, -1));
  listen = lua_tostring(L, -1);
  lua_getfield(L, 2, "runtime_dir");
  o.runtime_dir = luaL_optstring(L, -1, NULL);
  o.timeout_ms =
      (uint64_t)int_opt(L, 2, "receive", "timeout_ms", LUA_MAXINTEGER, 0);
  eng = orr_l_engine(L);
  orr_l_check_wait(L);
  op = orr_l_op_new(L, push_create);
  v = new_vm_ud(L, op, &ud);
  if (orr_vm_receive(eng, id, listen, &o, orr_l_op_cb, op, &vm, &e) != 0) {
    orr_l_op_cancel(L, op);
    return orr_l_fail(L, &e);
  }
  bind_vm(L, v, ud, vm);
  return orr_l_op_wait(L, op);
}

static const luaL_Reg methods[] = {
    {"migrate", l_migrate},
    {"start", l_start},
    {"pause", l_pause},
    {"resume", l_resume},
    {"save", l_save},
    {"shutdown", l_shutdown},
    {"terminate", l_terminate},
    {"wait", l_wait},
    {"close", l_close},
    {"modify", l_modify},
    {"qmp", l_qmp},
    {"add_scsi_disk", l_add_scsi_disk},
    {"remove_scsi_disk", l_remove_scsi_disk},
    {"add_vpci_device", l_add_vpci_device},
    {"remove_vpci_device", l_remove_vpci_device},
    {"add_vpmem_device", l_add_vpmem_device},
    {"remove_vpmem_device", l_remove_vpmem_device},
    {"snapshot_disk", l_snapshot_disk},
    {"snapshot_disks", l_snapshot_disks},
    {"commit_disk", l_commit_disk},
    {"add_pipe", l_add_pipe},
    {"remove_pipe", l_remove_pipe},
    {"pipe", l_pipe},
    {"add_nic", l_add_nic},
    {"remove_nic", l_remove_nic},
    {"update_nic", l_update_nic},
    {"add_plan9_share", l_add_plan9_share},
    {"remove_plan9_share", l_remove_plan9_share},
    {"update_cpu_limits", l_update_cpu_limits},
    {"update_memory", l_update_memory},
    {"on", l_on},
    {"guest", l_guest},
    {"properties", l_properties},
    {"document", l_document},
    {"plan_log", l_plan_log},
    {"id", l_id},
    {"state", l_state},
    {NULL, NULL},
};

static const luaL_Reg meta[] = {{"__gc", l_close},
                                {"__close", l_close},
                                {"__tostring", l_tostring},
                                {"__index", NULL},
                                {NULL, NULL}};

/* Pushes orrery.VM's method table (the Lua library adds to it). */
void orr_l_push_vm_methods(lua_State *L) {
  luaL_getmetatable(L, ORR_L_VM);
  lua_getfield(L, -1, "__index");
  lua_remove(L, -2);
}

void orr_l_open_vm(lua_State *L) {
  orr_l_newclass(L, ORR_L_VM, meta, methods);
  /* The weak map from a VM's C pointer to its userdata, for events. */
  orr_l_weak_registry(L, &vms_key, "v");
}

/* orrery.default_backend() -> the backend orrery.create uses without
** opts.backend: "plan" under `orrery plan`, else "qemu". Lets a recipe
** skip making files that only a real VM needs. */
static int l_default_backend(lua_State *L) {
  vm_state *s = get_state(L, 0);
  lua_pushstring(L, s != NULL && s->backend != NULL ? s->backend : "qemu");
  return 1;
}

const luaL_Reg orr_l_vm_funcs[] = {{"create", l_create},
                                   {"open", l_open},
                                   {"kill", l_kill},
                                   {"receive", l_receive},
                                   {"default_backend", l_default_backend},
                                   {NULL, NULL}};

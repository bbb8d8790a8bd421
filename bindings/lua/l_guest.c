/*
** orrery.Guest: a userdata over orr_guest, made by vm:guest{timeout_ms}.
** The methods here are the agent calls (ping, exec, files, OS facts, the
** raw command); the waits built on exec (wait_scsi_disk, mount_scsi_disk,
** wait_pci_device, wait_nic) are Lua, in scripts/lib/orrery/guest.lua,
** added to the same methods table (orrery.Guest).
**
** Uservalue 1 is the VM userdata (g:vm(), and it keeps the VM alive while
** the guest is), uservalue 2 the VM's id (for __tostring). The agent
** socket serves one client at a time, so vm:guest() keeps one Guest per VM
** (a weak-keyed registry table VM -> Guest) and hands it out again while
** its connection is up.
*/
#include <stdlib.h>
#include <string.h>

#include "l_async.h"
#include "l_orrery.h"
#include "l_util.h"
#include "orrery/guest.h"

typedef struct {
  orr_guest *g; /* NULL once closed */
} lguest;

static const char guests_key = 'g'; /* weak-keyed {VM = Guest} */

static lguest *check_guest(lua_State *L, int idx) {
  lguest *lg = luaL_checkudata(L, idx, ORR_L_GUEST);
  if (lg->g == NULL)
    luaL_error(L, "attempt to use a closed " ORR_L_GUEST);
  return lg;
}

static void guest_close(lguest *lg) {
  if (lg->g == NULL)
    return;
  orr_guest_close(lg->g);
  lg->g = NULL;
}

/* g:close(), __gc and __close: idempotent. Calls still waiting end with
** ECANCELED. */
static int l_close(lua_State *L) {
  guest_close(luaL_checkudata(L, 1, ORR_L_GUEST));
  lua_pushboolean(L, 1);
  return 1;
}

static int l_tostring(lua_State *L) {
  lguest *lg = luaL_checkudata(L, 1, ORR_L_GUEST);
  lua_getiuservalue(L, 1, 2);
  lua_pushfstring(L, ORR_L_GUEST ": %p (vm=%s, %s)", (void *)lg,
                  lua_tostring(L, -1),
                  lg->g == NULL               ? "closed"
                  : orr_guest_is_ready(lg->g) ? "ready"
                                              : "not ready");
  return 1;
}

/* g:vm() -> the orrery.VM this guest runs in. */
static int l_vm(lua_State *L) {
  luaL_checkudata(L, 1, ORR_L_GUEST);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

/* ---- Options ------------------------------------------------------------ */

static uint64_t int_field(lua_State *L, int idx, const char *op,
                          const char *key) {
  lua_Integer n;
  if (!lua_isinteger(L, idx) || (n = lua_tointeger(L, idx)) < 0)
    luaL_error(L, "%s: %s must be a non-negative integer, got %s", op, key,
               lua_type(L, idx) == LUA_TNUMBER ? luaL_tolstring(L, idx, NULL)
                                               : luaL_typename(L, idx));
  return (uint64_t)lua_tointeger(L, idx);
}

/* ---- Pushing results ---------------------------------------------------- */

/* A failure, with the console's last lines when the guest is dead or
** silent (the anchor is the Guest, its uservalue 1 the VM). */
static int guest_fail(lua_State *L, orr_l_op *op) {
  orr_l_op_pushanchor(L, op);
  if (lua_type(L, -1) == LUA_TUSERDATA &&
      lua_getiuservalue(L, -1, 1) == LUA_TUSERDATA)
    orr_l_console_annotate(orr_l_tovm(L, -1), &op->err);
  lua_settop(L, lua_gettop(L) - 2);
  return orr_l_fail(L, &op->err);
}

static int push_true(lua_State *L, orr_l_op *op) {
  if (op->status != 0)
    return guest_fail(L, op);
  lua_pushboolean(L, 1);
  return 1;
}

static int push_json(lua_State *L, orr_l_op *op) {
  if (op->status != 0)
    return guest_fail(L, op);
  if (op->result != NULL)
    orr_l_pushjson(L, op->result);
  else
    lua_pushboolean(L, 1);
  return 1;
}

static int push_content(lua_State *L, orr_l_op *op) {
  json_t *c = json_object_get(op->result, "content");
  if (op->status != 0)
    return guest_fail(L, op);
  lua_pushlstring(L, c != NULL ? json_string_value(c) : "",
                  c != NULL ? json_string_length(c) : 0);
  return 1;
}

/* ---- vm:guest ----------------------------------------------------------- */

static void cache_get(lua_State *L, int vm_idx) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &guests_key);
  lua_pushvalue(L, vm_idx);
  lua_rawget(L, -2);
  lua_remove(L, -2);
}

static void cache_set(lua_State *L, int vm_idx, int guest_idx) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &guests_key);
  lua_pushvalue(L, vm_idx);
  lua_pushvalue(L, guest_idx);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* The guest (the op's anchor), or the failure; a failed open is closed. */
static int push_opened(lua_State *L, orr_l_op *op) {
  orr_l_op_pushanchor(L, op);
  if (op->status == 0)
    return 1;
  guest_close(lua_touserdata(L, -1));
  lua_pop(L, 1);
  return guest_fail(L, op);
}

/* The cached guest answered (or not) a ping. */
static int push_pinged(lua_State *L, orr_l_op *op) {
  if (op->status != 0)
    return guest_fail(L, op);
  orr_l_op_pushanchor(L, op);
  return 1;
}

int orr_l_vm_guest(lua_State *L, orr_vm *vm) {
  uint64_t ms = orr_l_timeout_opt(L, 2, "guest");
  orr_guest_options o;
  orr_error e = {0, ""};
  orr_l_op *op;
  lguest *lg;
  int ud;

  lua_settop(L, 2);
  orr_l_check_wait(L);
  cache_get(L, 1);
  lg = luaL_testudata(L, -1, ORR_L_GUEST);
  /* Still opening (another task asked first) or ready: a ping waits for
  ** the open and proves the connection, without a second connection that
  ** would only sit in QEMU's backlog. */
  if (lg != NULL && lg->g != NULL && orr_guest_is_open(lg->g)) {
    op = orr_l_op_new(L, push_pinged);
    orr_l_op_anchor(L, op, -1);
    orr_guest_ping(lg->g, ms, orr_l_op_cb, op);
    return orr_l_op_wait(L, op);
  }
  if (lg != NULL)
    guest_close(lg); /* its connection ended: make a new one */
  lua_pop(L, 1);
  op = orr_l_op_new(L, push_opened);
  lg = lua_newuserdatauv(L, sizeof *lg, 2);
  lg->g = NULL;
  ud = lua_gettop(L);
  luaL_setmetatable(L, ORR_L_GUEST);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, ud, 1);
  lua_pushstring(L, orr_vm_id(vm));
  lua_setiuservalue(L, ud, 2);
  orr_l_op_anchor(L, op, ud);
  orr_guest_options_init(&o);
  o.timeout_ms = ms;
  if (orr_guest_open(vm, &o, orr_l_op_cb, op, &lg->g, &e) != 0) {
    lg->g = NULL;
    orr_l_op_cancel(L, op);
    return orr_l_fail(L, &e);
  }
  cache_set(L, 1, ud);
  return orr_l_op_wait(L, op);
}

/* ---- Methods ------------------------------------------------------------ */

/* g:ping{timeout_ms} -> true | fail */
static int l_ping(lua_State *L) {
  lguest *lg = check_guest(L, 1);
  uint64_t ms;
  orr_l_op *op = orr_l_timed_op(L, 2, "ping", push_true, &ms);
  orr_guest_ping(lg->g, ms, orr_l_op_cb, op);
  return orr_l_op_wait(L, op);
}

typedef void (*fact_fn)(orr_guest *, uint64_t, orr_vm_cb, void *);

static int fact(lua_State *L, const char *name, fact_fn fn) {
  lguest *lg = check_guest(L, 1);
  uint64_t ms;
  orr_l_op *op = orr_l_timed_op(L, 2, name, push_json, &ms);
  fn(lg->g, ms, orr_l_op_cb, op);
  return orr_l_op_wait(L, op);
}

/* g:os_info{timeout_ms} -> the agent's guest-get-osinfo table */
static int l_os_info(lua_State *L) {
  return fact(L, "os_info", orr_guest_os_info);
}

/* g:interfaces{timeout_ms} -> guest-network-get-interfaces' array */
static int l_interfaces(lua_State *L) {
  return fact(L, "interfaces", orr_guest_interfaces);
}

/* g:command(name, arguments, {timeout_ms}) -> the agent's "return" value:
** the escape hatch, like vm:qmp. */
static int l_command(lua_State *L) {
  lguest *lg = check_guest(L, 1);
  const char *name = luaL_checkstring(L, 2);
  uint64_t ms = orr_l_timeout_opt(L, 4, "command");
  json_t *args = NULL;
  orr_l_op *op;
  orr_l_check_wait(L);
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    args = orr_l_checkjson(L, 3, "command");
    if (!json_is_object(args) && json_array_size(args) == 0) {
      json_decref(args); /* {} converts to an empty array */
      args = json_object();
    }
    if (!json_is_object(args)) {
      json_decref(args);
      return luaL_error(L, "command: arguments must be a table with string "
                           "keys");
    }
  }
  op = orr_l_op_new(L, push_json);
  orr_l_op_anchor(L, op, 1);
  orr_guest_command(lg->g, name, args, ms, orr_l_op_cb, op);
  return orr_l_op_wait(L, op);
}

/* g:read_file(path, {timeout_ms}) -> content | fail */
static int l_read_file(lua_State *L) {
  lguest *lg = check_guest(L, 1);
  const char *path = luaL_checkstring(L, 2);
  uint64_t ms;
  orr_l_op *op = orr_l_timed_op(L, 3, "read_file", push_content, &ms);
  orr_guest_read_file(lg->g, path, ms, orr_l_op_cb, op);
  return orr_l_op_wait(L, op);
}

/* g:write_file(path, data, {timeout_ms}) -> true | fail */
static int l_write_file(lua_State *L) {
  lguest *lg = check_guest(L, 1);
  const char *path = luaL_checkstring(L, 2);
  size_t len;
  const char *data = luaL_checklstring(L, 3, &len);
  uint64_t ms;
  orr_l_op *op = orr_l_timed_op(L, 4, "write_file", push_true, &ms);
  orr_guest_write_file(lg->g, path, data, len, ms, orr_l_op_cb, op);
  return orr_l_op_wait(L, op);
}

/* ---- exec --------------------------------------------------------------- */

/* Reads exec's options from the table at idx: string keys only (an argv
** table's array part is skipped). */
static void exec_opts(lua_State *L, int idx, orr_guest_exec_req *req,
                      int *env_idx) {
  /* env is left on the stack (at *env_idx) for env_array. */
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    const char *k;
    if (lua_type(L, -2) == LUA_TNUMBER) {
      lua_pop(L, 1);
      continue;
    }
    k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
    if (strcmp(k, "stdin") == 0) {
      if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "exec: stdin must be a string, got %s",
                   luaL_typename(L, -1));
      req->input = lua_tolstring(L, -1, &req->input_len);
    } else if (strcmp(k, "env") == 0) {
      if (!lua_istable(L, -1))
        luaL_error(L, "exec: env must be a table, got %s",
                   luaL_typename(L, -1));
    } else if (strcmp(k, "timeout_ms") == 0) {
      req->timeout_ms = int_field(L, -1, "exec", "timeout_ms");
    } else {
      luaL_error(L,
                 "exec: unknown option '%s' (expected stdin, env or "
                 "timeout_ms)",
                 luaL_tolstring(L, -2, NULL));
    }
    lua_pop(L, 1);
  }
  if (lua_getfield(L, idx, "env") != LUA_TNIL)
    *env_idx = lua_gettop(L);
  else
    lua_pop(L, 1);
}

/* A NULL-terminated array of the strings at t[1..n] (GC memory, left on
** the stack). */
static const char **argv_array(lua_State *L, int t) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, t);
  const char **v;
  if (n < 1)
    luaL_error(L, "exec: argv must hold at least the program name");
  v = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *v, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_rawgeti(L, t, i) != LUA_TSTRING)
      luaL_error(L, "exec: argv[%I] must be a string, got %s", (LUAI_UACINT)i,
                 luaL_typename(L, -1));
    v[i - 1] = lua_tostring(L, -1);
    lua_pop(L, 1); /* still referenced by the table */
  }
  v[n] = NULL;
  return v;
}

/* env as {NAME = value} or {"NAME=value", ...}: "NAME=value" strings
** collected in a new table (left on the stack) and returned as an array. */
static const char **env_array(lua_State *L, int t) {
  int out, n = 0;
  const char **v;
  lua_newtable(L);
  out = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
      lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
    } else if (lua_type(L, -2) == LUA_TNUMBER &&
               lua_type(L, -1) == LUA_TSTRING) {
      lua_pushvalue(L, -1);
    } else {
      luaL_error(L,
                 "exec: env must map names to strings or list "
                 "\"NAME=value\" strings, got a %s key with a %s value",
                 luaL_typename(L, -2), luaL_typename(L, -1));
    }
    lua_rawseti(L, out, ++n);
    lua_pop(L, 1);
  }
  v = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *v, 0);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, out, i);
    v[i - 1] = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  v[n] = NULL;
  return v;
}

/*
** g:exec(argv, {stdin, env, timeout_ms}) -> {exit_code, stdout, stderr,
** signal?} | fail. argv is a table of strings, or one string run with
** /bin/sh -c; with no second argument the argv table's own string keys are
** the options: g:exec{"cat", stdin = "x"}.
*/
static int l_exec(lua_State *L) {
  lguest *lg = check_guest(L, 1);
  orr_guest_exec_req req;
  int env_idx = 0;
  orr_l_op *op;

  memset(&req, 0, sizeof req);
  lua_settop(L, 3);
  if (lua_type(L, 2) == LUA_TSTRING) {
    lua_createtable(L, 3, 0);
    lua_pushliteral(L, "/bin/sh");
    lua_rawseti(L, -2, 1);
    lua_pushliteral(L, "-c");
    lua_rawseti(L, -2, 2);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, 3);
    lua_replace(L, 2);
  }
  luaL_argexpected(L, lua_istable(L, 2), 2, "argv table or shell command");
  if (!lua_isnil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    /* Options in both places would leave one set silently unread. */
    lua_pushnil(L);
    while (lua_next(L, 2) != 0) {
      if (!lua_isinteger(L, -2))
        luaL_error(L,
                   "exec: argv holds the key '%s': options go either in "
                   "argv or in the second argument",
                   luaL_tolstring(L, -2, NULL));
      lua_pop(L, 1);
    }
    exec_opts(L, 3, &req, &env_idx);
  } else {
    exec_opts(L, 2, &req, &env_idx);
  }
  orr_l_check_wait(L);
  req.argv = argv_array(L, 2);
  if (env_idx != 0)
    req.env = env_array(L, env_idx);
  op = orr_l_op_new(L, push_json);
  orr_l_op_anchor(L, op, 1);
  /* Copied by orr_guest_exec: the arrays may go with this call. */
  orr_guest_exec(lg->g, &req, orr_l_op_cb, op);
  return orr_l_op_wait(L, op);
}

static const luaL_Reg methods[] = {
    {"ping", l_ping},           {"exec", l_exec},
    {"read_file", l_read_file}, {"write_file", l_write_file},
    {"os_info", l_os_info},     {"interfaces", l_interfaces},
    {"command", l_command},     {"vm", l_vm},
    {"close", l_close},         {NULL, NULL},
};

static const luaL_Reg meta[] = {{"__gc", l_close},
                                {"__close", l_close},
                                {"__tostring", l_tostring},
                                {"__index", NULL},
                                {NULL, NULL}};

void orr_l_open_guest(lua_State *L) {
  orr_l_newclass(L, ORR_L_GUEST, meta, methods);
  orr_l_weak_registry(L, &guests_key, "k");
}

/* The methods table, as orrery.Guest, for the Lua half to extend. */
void orr_l_push_guest_methods(lua_State *L) {
  luaL_getmetatable(L, ORR_L_GUEST);
  lua_getfield(L, -1, "__index");
  lua_remove(L, -2);
}

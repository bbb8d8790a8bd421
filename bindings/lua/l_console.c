/*
** The C half of vm:console(n) and vm:stats(): primitives over the engine's
** console (orrery/vm.h) that scripts/lib/orrery/console.lua builds the
** stream on (read_line, expect, write). They are methods of orrery.VM whose
** names start with an underscore; the waiting ones wait like every other
** call (yield in a task, drive the loop at top level).
*/
#include "l_async.h"
#include "l_orrery.h"
#include "l_util.h"

#include <string.h>

void orr_l_console_annotate(orr_vm *vm, orr_error *e) {
  static const char head[] = "; last console lines:\n";
  size_t n = strlen(e->msg), room;
  if (vm == NULL || (e->code != ORR_ETIMEDOUT && e->code != ORR_EVMGONE) ||
      strstr(e->msg, "console lines") != NULL)
    return;
  room = sizeof e->msg - n;
  if (room <= sizeof head + 1)
    return;
  if (orr_vm_console_tail(vm, 10, e->msg + n + sizeof head - 1,
                          room - (sizeof head - 1)) == 0) {
    e->msg[n] = '\0';
    return;
  }
  memcpy(e->msg + n, head, sizeof head - 1);
}

static int check_port(lua_State *L, int idx) {
  lua_Integer n = luaL_checkinteger(L, idx);
  if (n < 0 || n >= ORR_CONSOLE_PORTS)
    return luaL_error(L, "console: port must be 0..%d (0 is COM1), got %d",
                      ORR_CONSOLE_PORTS - 1, (int)n);
  return (int)n;
}

static uint64_t check_count(lua_State *L, int idx, const char *what) {
  lua_Integer n = luaL_checkinteger(L, idx);
  if (n < 0)
    return (uint64_t)luaL_error(L, "console: %s must be >= 0", what);
  return (uint64_t)n;
}

/* vm:_console_has(port) -> whether the engine captures that port */
static int l_has(lua_State *L) {
  orr_vm *vm = orr_l_checkvm(L, 1);
  lua_pushboolean(L, orr_vm_console_has(vm, check_port(L, 2)));
  return 1;
}

/* vm:_console_next(port) -> the number of the next line, the partial text */
static int l_next(lua_State *L) {
  orr_vm *vm = orr_l_checkvm(L, 1);
  int port = check_port(L, 2);
  lua_pushinteger(L, (lua_Integer)orr_vm_console_next(vm, port));
  lua_pushstring(L, orr_vm_console_partial(vm, port));
  return 2;
}

/* vm:_console_line(port, seq) -> line | nil, oldest number still kept */
static int l_line(lua_State *L) {
  orr_vm *vm = orr_l_checkvm(L, 1);
  int port = check_port(L, 2);
  const char *line = NULL;
  uint64_t first = 0;
  int rc =
      orr_vm_console_line(vm, port, check_count(L, 3, "line"), &line, &first);
  if (rc == 0) {
    lua_pushstring(L, line);
    return 1;
  }
  lua_pushnil(L);
  lua_pushinteger(L, (lua_Integer)first);
  return 2;
}

static uint64_t opt_ms(lua_State *L, int idx) {
  lua_Integer ms = luaL_optinteger(L, idx, 0);
  if (ms < 0)
    return (uint64_t)luaL_error(L, "console: timeout_ms must be >= 0");
  return (uint64_t)ms;
}

/* vm:_console_wait(port, next, partial_len, timeout_ms) -> true | fail:
** returns once the port printed more than that. */
static int l_wait(lua_State *L) {
  orr_vm *vm = orr_l_checkvm(L, 1);
  int port = check_port(L, 2);
  uint64_t next = check_count(L, 3, "next");
  uint64_t plen = check_count(L, 4, "partial length");
  uint64_t ms = opt_ms(L, 5);
  orr_l_op *op;
  orr_l_check_wait(L);
  op = orr_l_op_new(L, NULL);
  orr_l_op_anchor(L, op, 1);
  orr_vm_console_wait(vm, port, next, (size_t)plen, ms, orr_l_op_cb, op);
  return orr_l_op_wait(L, op);
}

/* vm:_console_write(port, bytes) -> true | fail */
static int l_write(lua_State *L) {
  orr_vm *vm = orr_l_checkvm(L, 1);
  int port = check_port(L, 2);
  size_t len;
  const char *s = luaL_checklstring(L, 3, &len);
  orr_l_op *op;
  orr_l_check_wait(L);
  op = orr_l_op_new(L, NULL);
  orr_l_op_anchor(L, op, 1);
  orr_vm_console_write(vm, port, s, len, 0, orr_l_op_cb, op);
  return orr_l_op_wait(L, op);
}

/* vm:console_tail([lines]) -> the last lines of every port, one string */
static int l_tail(lua_State *L) {
  orr_vm *vm = orr_l_checkvm(L, 1);
  lua_Integer n = luaL_optinteger(L, 2, 20);
  luaL_Buffer b;
  char *buf;
  size_t size = 64 * 1024, got;
  if (n < 0 || n > ORR_CONSOLE_RING_LINES)
    return luaL_error(L, "console_tail: lines must be 0..%d",
                      ORR_CONSOLE_RING_LINES);
  buf = luaL_buffinitsize(L, &b, size);
  got = orr_vm_console_tail(vm, (int)n, buf, size);
  luaL_pushresultsize(&b, got);
  return 1;
}

static int push_stats(lua_State *L, orr_l_op *op) {
  if (op->status != 0)
    return orr_l_fail(L, &op->err);
  orr_l_pushjson(L, op->result);
  return 1;
}

/* vm:stats{timeout_ms} -> {Cpu..., Memory..., Disks, Nics, Balloon} */
static int l_stats(lua_State *L) {
  orr_vm *vm = orr_l_checkvm(L, 1);
  uint64_t ms = 0;
  orr_l_op *op;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "timeout_ms");
    ms = opt_ms(L, -1);
    lua_pop(L, 1);
  }
  orr_l_check_wait(L);
  op = orr_l_op_new(L, push_stats);
  orr_l_op_anchor(L, op, 1);
  orr_vm_stats(vm, ms, orr_l_op_cb, op);
  return orr_l_op_wait(L, op);
}

static const luaL_Reg funcs[] = {
    {"_console_has", l_has},     {"_console_next", l_next},
    {"_console_line", l_line},   {"_console_wait", l_wait},
    {"_console_write", l_write}, {"console_tail", l_tail},
    {"stats", l_stats},          {NULL, NULL},
};

void orr_l_open_console(lua_State *L) {
  luaL_getmetatable(L, ORR_L_VM);
  lua_getfield(L, -1, "__index");
  luaL_setfuncs(L, funcs, 0);
  lua_remove(L, -2);
}

/* The pieces of the orrery Lua module, one file per userdata type. */
#ifndef ORR_L_ORRERY_H
#define ORR_L_ORRERY_H

#include <lauxlib.h>
#include <lua.h>

#include <jansson.h>

#include "orrery/builder.h"
#include "orrery/vm.h"

#define ORR_L_BUILDER "orrery.Builder"
#define ORR_L_VM "orrery.VM"
#define ORR_L_TASK "orrery.Task"
#define ORR_L_GUEST "orrery.Guest"
#define ORR_L_STREAM "orrery.Stream"

/* What orrery.so exports (the bindings are compiled with hidden
** visibility): the luaopen_ functions, nothing else. */
#define ORR_L_EXPORT __attribute__((visibility("default")))

/* The module openers: luaopen_orrery_core is the orrery table, which the
** Lua library (orrery/init.lua) extends; luaopen_orrery is only reached
** when that library is missing, and raises saying so. */
ORR_L_EXPORT int luaopen_orrery_core(lua_State *L);
ORR_L_EXPORT int luaopen_orrery(lua_State *L);
/* require("orrery.sandbox") (l_sandbox.c). */
ORR_L_EXPORT int luaopen_orrery_sandbox(lua_State *L);

void orr_l_open_builder(lua_State *L);
extern const luaL_Reg orr_l_builder_funcs[];
orr_builder *orr_l_checkbuilder(lua_State *L, int idx);
orr_builder *orr_l_testbuilder(lua_State *L, int idx);
void orr_l_pushbuilder(lua_State *L, orr_builder *b);

/* orrery.Task and the task functions (spawn, sleep, wait_all, run, now). */
void orr_l_open_task(lua_State *L);
extern const luaL_Reg orr_l_task_funcs[];
/* Spawns the function below the top nargs values as a task (it starts on
** the next loop turn); pops them and pushes the orrery.Task. */
struct orr_l_task *orr_l_spawn(lua_State *L, int nargs);
/* If the Task at idx failed: pushes its error with traceback, marks it
** read and returns 1; else returns 0. */
int orr_l_task_failed(lua_State *L, int idx);

/* orrery.kubevirt (l_kubevirt.c): pushes its table. */
void orr_l_push_kubevirt(lua_State *L);

/* orrery.VM and orrery.create. */
void orr_l_open_vm(lua_State *L);
/* Pushes orrery.VM's method table. */
void orr_l_push_vm_methods(lua_State *L);
/* The open VM at idx (raises if it is not one, or closed). */
orr_vm *orr_l_checkvm(lua_State *L, int idx);
/* The same, or NULL (not a VM, or closed). */
orr_vm *orr_l_tovm(lua_State *L, int idx);
/* A failure of a dead or silent guest (ORR_ETIMEDOUT, ORR_EVMGONE) gets
** "; last console lines:\n..." appended, as much as e holds. */
void orr_l_console_annotate(orr_vm *vm, orr_error *e);
/* The console and stats methods added to orrery.VM's (l_console.c);
** pushes that methods table. */
void orr_l_open_console(lua_State *L);
extern const luaL_Reg orr_l_vm_funcs[];
/* The backend orrery.create uses when opts.backend is absent ("plan" for
** `orrery plan`). Setting it also records the plan VMs created from then on
** for orr_l_vm_plan_report. */
void orr_l_set_default_backend(lua_State *L, const char *backend);
/* `orrery plan --backend kubevirt`'s defaults for kubevirt VMs: the
** namespace (NULL: "default") and sources (taken; may be NULL) that
** orrery.create adds under a recipe's own (the command line's win). */
void orr_l_set_plan_kubevirt(lua_State *L, const char *ns, json_t *sources);
/* [{"id":..., "document":..., "plan_log":[...]}] for the recorded plan VMs,
** {"id", "document", "kubevirt": {"manifest", "requests"}} for kubevirt
** dry runs (new reference; an empty array when none). */
json_t *orr_l_vm_plan_report(lua_State *L);
/* How many VMs orrery.create has made in this state (any backend). */
size_t orr_l_vm_created(lua_State *L);

/* orrery.log, orrery.on_log, orrery.set_log (l_log.c). */
extern const luaL_Reg orr_l_log_funcs[];

/* orrery.Guest (l_guest.c). vm:guest{timeout_ms}: the VM userdata is at
** 1 and is open (vm). Pushes the methods table (orrery.Guest in the
** module, which the Lua half extends). */
void orr_l_open_guest(lua_State *L);
int orr_l_vm_guest(lua_State *L, orr_vm *vm);
void orr_l_push_guest_methods(lua_State *L);

/* The recipe sandbox (l_sandbox.c): after it, L runs no host program,
** loads no native code and writes (itself, or through the engine and QEMU)
** only below the directories in allow_write (NULL-terminated; NULL: none).
** One-way. Returns LUA_OK, or an error status with the message on top. */
/* orrery.core._template: the template cache's host primitives. */
void orr_l_push_template_funcs(lua_State *L);

int orr_l_sandbox(lua_State *L, const char *const *allow_write);

/* orrery.Stream (l_stream.c): the class, and a stream connected to the unix
** socket at path (waits for the connection; pushes the Stream, or the fail
** tuple). Only for sockets the engine vouches for (a VM's mapped pipe). */
void orr_l_open_stream(lua_State *L);
int orr_l_stream_connect(lua_State *L, const char *path);

#endif

/*
** Ctrl-C while Lua code runs or waits. A libuv signal handle would only run
** when the loop turns, which a busy Lua loop never lets happen, so this is
** a raw sigaction handler doing what lua5.4 does (hook the thread so it
** raises "interrupted!") on every thread that may be executing, plus a
** uv_async_send (async-signal-safe) so that, when Lua was merely waiting,
** the loop wakes up and the owner ends the wait instead.
*/
#include <signal.h>
#include <string.h>

#include "term/term.h"

#define MAX_HOOKED 3

static struct {
  int installed;
  uv_async_t async;
  struct sigaction old;
  orr_l_ctx *ctx;
  lua_State *main;
  orr_interrupt_cb cb;
  void *arg;
  /* Written by the handler, read and reset from the loop. */
  volatile sig_atomic_t signals, fired;
  lua_State *volatile hooked[MAX_HOOKED];
} intr;

static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  intr.fired = 1;
  luaL_error(L, "interrupted!");
}

/*
** Hooks the one thread that can be executing Lua: the running task, else
** the main thread (top-level code). Hooking more would raise in innocent
** places, such as the C call that resumed the task, once the task is done.
*/
static void on_sigint(int sig) {
  lua_State *running = orr_l_running_thread(intr.ctx);
  lua_State *t = running != NULL ? running : intr.main;
  int flags = LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT;
  (void)sig;
  for (int i = 0; i < MAX_HOOKED; i++) {
    if (intr.hooked[i] == t || intr.hooked[i] == NULL) {
      intr.hooked[i] = t;
      break;
    }
  }
  lua_sethook(t, stop_hook, flags, 1);
  intr.signals++;
  uv_async_send(&intr.async);
}

/* From the loop, so no Lua code is executing: the hooks that have not
** fired are removed, and the owner ends whatever wait was going on. */
static void on_async(uv_async_t *h) {
  int signals = intr.signals, fired = intr.fired;
  (void)h;
  intr.signals = 0;
  intr.fired = 0;
  for (int i = 0; i < MAX_HOOKED; i++) {
    if (intr.hooked[i] != NULL)
      lua_sethook(intr.hooked[i], NULL, 0, 0);
    intr.hooked[i] = NULL;
  }
  if (signals > 0 && intr.cb != NULL)
    intr.cb(intr.arg, signals, fired);
}

int orr_interrupt_install(lua_State *L, orr_interrupt_cb cb, void *arg) {
  struct sigaction sa;
  if (intr.installed)
    return 0;
  intr.ctx = orr_l_ctx_get(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  intr.main = lua_tothread(L, -1);
  lua_pop(L, 1);
  intr.cb = cb;
  intr.arg = arg;
  if (uv_async_init(orr_l_loop(intr.ctx), &intr.async, on_async) != 0)
    return -1;
  /* The async handle must not keep the loop alive on its own. */
  uv_unref((uv_handle_t *)&intr.async);
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, &intr.old);
  intr.installed = 1;
  return 0;
}

int orr_interrupt_waits(lua_State *L, orr_l_task *t) {
  orr_l_ctx *ctx = orr_l_ctx_get(L);
  orr_l_op *top = orr_l_toplevel_op(ctx);
  int n = 0;
  if (t != NULL && t->waiting != NULL)
    n += orr_l_op_interrupt(t->waiting, "interrupted");
  if (top != NULL)
    n += orr_l_op_interrupt(top, "interrupted");
  return n;
}

void orr_interrupt_uninstall(lua_State *L) {
  if (!intr.installed)
    return;
  sigaction(SIGINT, &intr.old, NULL);
  for (int i = 0; i < MAX_HOOKED; i++) {
    if (intr.hooked[i] != NULL)
      lua_sethook(intr.hooked[i], NULL, 0, 0);
    intr.hooked[i] = NULL;
  }
  orr_cli_close_handle(L, (uv_handle_t *)&intr.async);
  intr.installed = 0;
}

/*
** The bare side of bench/guest_bench.lua: spawns QEMU with the argv it is
** given (no Orrery VM layer: no QMP, no document) and times how long the
** default guest's agent takes to answer guest-ping on SOCKET, using the
** engine's agent client on its own loop. Prints "ready_ms N", then kills
** QEMU. Built only with -DORR_BUILD_BENCH=ON.
**
**   guest_bare SOCKET QEMU-ARGV...
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "orrery/guest.h"

static int done, status;
static char msg[512];

static void on_ready(void *arg, int st, const orr_error *e, json_t *result) {
  (void)arg;
  (void)result;
  done = 1;
  status = st;
  snprintf(msg, sizeof msg, "%s", e->msg);
}

static void on_exit_cb(uv_process_t *p, int64_t code, int sig) {
  (void)code;
  (void)sig;
  uv_close((uv_handle_t *)p, NULL);
}

int main(int argc, char **argv) {
  uv_loop_t *loop = uv_default_loop();
  uv_process_options_t po = {0};
  uv_stdio_container_t stdio[3];
  uv_process_t proc;
  orr_guest_options go;
  orr_guest *g;
  orr_error e = {0, ""};
  uint64_t t0;
  int rc;

  if (argc < 3) {
    fprintf(stderr, "usage: %s SOCKET QEMU-ARGV...\n", argv[0]);
    return 2;
  }
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_IGNORE;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  po.file = argv[2];
  po.args = argv + 2;
  po.exit_cb = on_exit_cb;
  /* Its own session, as the engine gives every QEMU (process.c): with the
  ** kernel's autogroup scheduling a session is a CPU group, so on a busy host
  ** a QEMU left in the benchmark's session would get less CPU than Orrery's. */
  po.flags = UV_PROCESS_DETACHED;
  po.stdio = stdio;
  po.stdio_count = 3;
  t0 = uv_hrtime();
  if ((rc = uv_spawn(loop, &proc, &po)) != 0) {
    fprintf(stderr, "guest_bare: spawn %s: %s\n", argv[2], uv_strerror(rc));
    return 1;
  }
  orr_guest_options_init(&go);
  go.timeout_ms = 60000;
  if (orr_guest_connect(loop, argv[1], &go, on_ready, NULL, &g, &e) != 0) {
    fprintf(stderr, "guest_bare: %s\n", e.msg);
    uv_process_kill(&proc, SIGKILL);
    return 1;
  }
  while (!done)
    uv_run(loop, UV_RUN_ONCE);
  if (status == 0)
    printf("ready_ms %.1f\n", (double)(uv_hrtime() - t0) / 1e6);
  else
    fprintf(stderr, "guest_bare: %s\n", msg);
  orr_guest_close(g);
  uv_process_kill(&proc, SIGKILL);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  return status == 0 ? 0 : 1;
}

/*
** The Landlock ruleset a confined engine's QEMU runs under (landlock.c),
** on a real qemu-system-x86_64: QEMU still starts and serves QMP in its
** runtime directory and reads anywhere, but it cannot open a file for
** writing outside the runtime directory and what it was handed.
*/
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hostres.h"
#include "landlock.h"
#include "orrery/process.h"
#include "orrery/qmp.h"
#include "task.h"

typedef struct {
  int done, status;
  char msg[256];
} reply;

static int ready, ready_status, exited;

static void on_ready(void *arg, int status) {
  (void)arg;
  ready = 1;
  ready_status = status;
}

static void on_reply(void *arg, int status, json_t *result, const char *msg) {
  reply *r = arg;
  (void)result;
  r->done = 1;
  r->status = status;
  snprintf(r->msg, sizeof r->msg, "%s", msg);
}

static void on_exit_cb(void *arg, int64_t status, int sig) {
  (void)arg, (void)status, (void)sig;
  exited = 1;
}

/* blockdev-add of a file node over path, read-write or not. */
static reply add_file(uv_loop_t *loop, orr_qmp *q, const char *node,
                      const char *path, int ro) {
  reply r = {0};
  ASSERT_OK(orr_qmp_send(q, "blockdev-add",
                         json_pack("{s:s, s:s, s:s, s:b}", "driver", "file",
                                   "node-name", node, "filename", path,
                                   "read-only", ro),
                         on_reply, &r));
  while (!r.done)
    uv_run(loop, UV_RUN_ONCE);
  return r;
}

int main(void) {
  char root[] = "/tmp/orr-landlock-XXXXXX";
  char run[300], sock[400], chardev[500], inside[400], outside[400], cmd[600];
  const char *argv[] = {"qemu-system-x86_64",
                        "-accel",
                        "tcg",
                        "-M",
                        "q35",
                        "-m",
                        "64",
                        "-nodefaults",
                        "-display",
                        "none",
                        "-S",
                        "-chardev",
                        NULL,
                        "-mon",
                        "chardev=qmp,mode=control",
                        NULL};
  orr_process_options po = {0};
  orr_qmp_options qo = {0};
  orr_hostres *hr = orr__hostres_new(NULL, ORR_HR_BOOT, false);
  orr_process *qemu;
  orr_error e = {0, ""};
  uv_loop_t loop;
  orr_qmp *q;
  reply r;
  int abi, fd;

  ASSERT_NOT_NULL(mkdtemp(root));
  snprintf(run, sizeof run, "%s/run", root);
  ASSERT_OK(mkdir(run, 0700));
  snprintf(sock, sizeof sock, "%s/qmp.sock", run);
  snprintf(chardev, sizeof chardev, "socket,id=qmp,path=%s,server=on,wait=off",
           sock);
  argv[12] = chardev;
  snprintf(inside, sizeof inside, "%s/inside.img", run);
  snprintf(outside, sizeof outside, "%s/outside.img", root);
  for (int i = 0; i < 2; i++) {
    fd = open(i ? outside : inside, O_WRONLY | O_CREAT, 0600);
    ASSERT(fd >= 0 && ftruncate(fd, 1 << 20) == 0);
    close(fd);
  }

  ASSERT_OK(orr__landlock_qemu(run, hr, &po.landlock_ruleset, &abi, &e));
  if (po.landlock_ruleset < 0) {
    /* (or under valgrind, which does not know the system calls) */
    printf("ok - skipped: no Landlock on this kernel\n");
    orr__hostres_free(hr);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    ASSERT_EQ(0, system(cmd));
    return 0;
  }
  ASSERT_GE(abi, 1);
  ASSERT_UV_OK(uv_loop_init(&loop));
  po.argv = argv;
  po.flags = ORR_PROCESS_KILL_WITH_PARENT;
  po.exit_cb = on_exit_cb;
  ASSERT_OK(orr_process_spawn(&loop, &po, &qemu, &e));
  close(po.landlock_ruleset);
  qo.path = sock;
  qo.ready_cb = on_ready;
  ASSERT_OK(orr_qmp_connect(&loop, &qo, &q));
  while (!ready)
    uv_run(&loop, UV_RUN_ONCE);
  ASSERT_OK(ready_status); /* it made its QMP socket in its directory */

  r = add_file(&loop, q, "in", inside, 0);
  ASSERT_OK(r.status);
  r = add_file(&loop, q, "out-ro", outside, 1); /* reads stay allowed */
  ASSERT_OK(r.status);
  r = add_file(&loop, q, "out", outside, 0);
  ASSERT_ERR(r.status, ORR_EBACKEND);
  ASSERT_STR_CONTAINS(r.msg, "Permission denied");
  printf("ok - landlock ABI %d: writes outside the runtime directory are "
         "refused\n",
         abi);

  orr_process_kill(qemu, SIGKILL);
  while (!exited)
    uv_run(&loop, UV_RUN_ONCE);
  orr_qmp_close(q, NULL);
  orr_process_close(qemu, NULL);
  orr__hostres_free(hr);
  MAKE_VALGRIND_HAPPY(&loop);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  ASSERT_EQ(0, system(cmd));
  return 0;
}

/* Child processes: exit status, captured output, kill, close, and the kill
** that follows the engine's own death. */
#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "orrery/process.h"
#include "task.h"

typedef struct {
  orr_process *p;
  int exits;
  int64_t status;
  int signal;
  char output[4096];
  size_t output_len;
  int closes;
} run;

static void on_exit_cb(void *arg, int64_t status, int term_signal) {
  run *r = arg;

  r->exits++;
  r->status = status;
  r->signal = term_signal;
  /* The output must be complete here, with no further loop turn. */
  r->output_len = orr_process_output(r->p, r->output, sizeof r->output);
}

static void on_close_cb(void *arg) {
  run *r = arg;

  r->closes++;
}

/* Spawns argv, runs the loop until it exits, closes it. */
static void run_to_exit(const char *const *argv, const char *cwd,
                        size_t output_max, run *r) {
  uv_loop_t loop;
  orr_process_options o = {0};
  orr_error e = {0};

  ASSERT_UV_OK(uv_loop_init(&loop));
  o.argv = argv;
  o.cwd = cwd;
  o.flags = ORR_PROCESS_KILL_WITH_PARENT;
  o.output_max = output_max;
  o.exit_cb = on_exit_cb;
  o.arg = r;
  ASSERT_OK(orr_process_spawn(&loop, &o, &r->p, &e));
  ASSERT_GT(orr_process_pid(r->p), 0);
  ASSERT_UV_OK(uv_run(&loop, UV_RUN_DEFAULT));
  ASSERT_EQ(r->exits, 1);
  ASSERT(orr_process_exited(r->p));
  ASSERT_ERR(orr_process_kill(r->p, SIGTERM), ORR_ESTATE);
  orr_process_close(r->p, on_close_cb);
  MAKE_VALGRIND_HAPPY(&loop);
  ASSERT_EQ(r->closes, 1);
}

static void test_exit_status_and_output(void) {
  const char *argv[] = {"sh", "-c", "echo out; pwd; echo err >&2; exit 3",
                        NULL};
  run r = {0};

  run_to_exit(argv, "/", 0, &r);
  ASSERT_EQ(r.status, 3);
  ASSERT_EQ(r.signal, 0);
  ASSERT_STR_EQ(r.output, "out\n/\nerr\n");
}

static void test_output_ring_keeps_the_end(void) {
  const char *argv[] = {
      "sh", "-c", "i=0; while [ $i -lt 500 ]; do echo line$i; i=$((i+1)); done",
      NULL};
  run r = {0};

  run_to_exit(argv, NULL, 1024, &r);
  ASSERT_EQ(r.status, 0);
  ASSERT_EQ(r.output_len, 1024);
  ASSERT_STR_EQ(r.output + r.output_len - 16, "line498\nline499\n");
}

static void test_failing_qemu_reports_stderr(void) {
  const char *argv[] = {
      "qemu-system-x86_64", "-accel",     "tcg", "-M",      "q35", "-m", "128",
      "-nodefaults",        "-nographic", "-S",  "-device", "foo", NULL};
  run r = {0};

  run_to_exit(argv, NULL, 0, &r);
  ASSERT_EQ(r.status, 1);
  ASSERT_STR_CONTAINS(r.output, "qemu-system-x86_64: -device foo: 'foo' is "
                                "not a valid device model name");
}

static void test_missing_program(void) {
  const char *argv[] = {"/nonexistent/qemu-system-x86_64", NULL};
  const char *argv2[] = {"orrery-no-such-program", NULL};
  orr_process_options o = {0};
  orr_error e = {0};
  orr_process *p = (orr_process *)1;
  uv_loop_t loop;

  ASSERT_UV_OK(uv_loop_init(&loop));
  o.argv = argv;
  ASSERT_ERR(orr_process_spawn(&loop, &o, &p, &e), ORR_ENOENT);
  ASSERT_NULL(p);
  ASSERT_EQ(e.code, ORR_ENOENT);
  ASSERT_STR_CONTAINS(e.msg, "No such file or directory");
  o.argv = argv2; /* searched in PATH */
  ASSERT_ERR(orr_process_spawn(&loop, &o, &p, &e), ORR_ENOENT);
  o.argv = NULL;
  ASSERT_ERR(orr_process_spawn(&loop, &o, &p, &e), ORR_EINVAL);
  MAKE_VALGRIND_HAPPY(&loop);
}

static void test_kill(void) {
  const char *argv[] = {"sleep", "100", NULL};
  orr_process_options o = {0};
  orr_error e = {0};
  run r = {0};
  uv_loop_t loop;

  ASSERT_UV_OK(uv_loop_init(&loop));
  o.argv = argv;
  o.exit_cb = on_exit_cb;
  o.arg = &r;
  ASSERT_OK(orr_process_spawn(&loop, &o, &r.p, &e));
  ASSERT_OK(orr_process_kill(r.p, SIGTERM));
  ASSERT_UV_OK(uv_run(&loop, UV_RUN_DEFAULT));
  ASSERT_EQ(r.exits, 1);
  ASSERT_EQ(r.signal, SIGTERM);
  ASSERT_EQ(r.status, 0);
  orr_process_close(r.p, NULL);
  MAKE_VALGRIND_HAPPY(&loop);
}

/* Closing a running child kills and reaps it: no zombie, no orphan, and
** the exit callback is not called after close. */
static void test_close_running(void) {
  const char *argv[] = {"sleep", "100", NULL};
  orr_process_options o = {0};
  orr_error e = {0};
  run r = {0};
  uv_loop_t loop;
  int pid;

  ASSERT_UV_OK(uv_loop_init(&loop));
  o.argv = argv;
  o.exit_cb = on_exit_cb;
  o.arg = &r;
  ASSERT_OK(orr_process_spawn(&loop, &o, &r.p, &e));
  pid = orr_process_pid(r.p);
  orr_process_close(r.p, on_close_cb);
  ASSERT_EQ(r.closes, 0); /* from the loop, not from inside the call */
  MAKE_VALGRIND_HAPPY(&loop);
  ASSERT_EQ(r.closes, 1);
  ASSERT_EQ(r.exits, 0);
  ASSERT_EQ(waitpid(pid, NULL, WNOHANG), -1);
  ASSERT_EQ(errno, ECHILD);
}

/*
** The engine dies without cleaning up: a forked helper plays the engine,
** spawns `sleep` and _exit()s. This test process is a child subreaper, so
** the orphaned sleep is reparented to it and its fate can be read with
** waitpid(): SIGKILL with ORR_PROCESS_KILL_WITH_PARENT, alive without.
*/
static int orphan_fate(unsigned flags) {
  int fds[2], status, pid = 0;
  pid_t helper;

  ASSERT_EQ(pipe(fds), 0);
  helper = fork();
  ASSERT_GE(helper, 0);
  if (helper == 0) {
    const char *argv[] = {"sleep", "100", NULL};
    orr_process_options o = {0};
    orr_process *p;
    uv_loop_t loop;

    uv_loop_init(&loop);
    o.argv = argv;
    o.flags = flags;
    if (orr_process_spawn(&loop, &o, &p, NULL) != 0)
      _exit(1);
    pid = orr_process_pid(p);
    if (write(fds[1], &pid, sizeof pid) != sizeof pid)
      _exit(1);
    _exit(0); /* no close, no cleanup: a crash as far as the child sees */
  }
  close(fds[1]);
  ASSERT_EQ(read(fds[0], &pid, sizeof pid), sizeof pid);
  close(fds[0]);
  ASSERT_EQ(waitpid(helper, &status, 0), helper);
  ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  if (!(flags & ORR_PROCESS_KILL_WITH_PARENT)) {
    usleep(100 * 1000);
    ASSERT_EQ(waitpid(pid, &status, WNOHANG), 0); /* still running */
    kill(pid, SIGKILL);
  }
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  return WIFSIGNALED(status) ? WTERMSIG(status) : -1;
}

static void test_killed_with_parent(void) {
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  ASSERT_EQ(orphan_fate(ORR_PROCESS_KILL_WITH_PARENT), SIGKILL);
  ASSERT_EQ(orphan_fate(0), SIGKILL); /* killed by us, after 100 ms alive */
}

int main(void) {
  alarm(120); /* a hung test fails instead of waiting for ctest */
  RUN_TEST(test_exit_status_and_output);
  RUN_TEST(test_output_ring_keeps_the_end);
  RUN_TEST(test_failing_qemu_reports_stderr);
  RUN_TEST(test_missing_program);
  RUN_TEST(test_kill);
  RUN_TEST(test_close_running);
  RUN_TEST(test_killed_with_parent);
  return 0;
}

/*
** The guest agent client against the real default guest (QEMU on TCG,
** qemu-ga inside): open before boot and while paused, sync past stale
** replies, exec with stdin/env/exit status/signals, binary file round
** trips larger than one chunk, timeouts, close with work pending, and a VM
** that dies under a pending call. Every callback must run once, from the
** loop, never from inside the call that started it.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orrery/builder.h"
#include "orrery/guest.h"
#include "orrery/guest_image.h"
#include "orrery/vm.h"
#include "task.h"

typedef struct {
  int done, status;
  json_t *result;
  char msg[512];
} outcome;

/* Set around every call: a callback that runs while it is set ran inside
** the call that started it. */
static int in_call;

static void on_done(void *arg, int status, const orr_error *e, json_t *res) {
  outcome *o = arg;
  ASSERT(!in_call);
  o->done++;
  ASSERT_EQ(1, o->done);
  o->status = status;
  snprintf(o->msg, sizeof o->msg, "%s", e->msg);
  json_decref(o->result);
  o->result = res ? json_incref(res) : NULL;
}

static void reset(outcome *o) {
  json_decref(o->result);
  memset(o, 0, sizeof *o);
}

static uv_loop_t *loop;

static int wait_for(outcome *o) {
  while (!o->done)
    uv_run(loop, UV_RUN_ONCE);
  return o->status;
}

static orr_engine *eng;

static orr_vm *make_vm(const char *id, const char *backend, int agent) {
  orr_builder *b;
  orr_vm *vm;
  orr_vm_options opts;
  orr_error e = {0, ""};
  outcome o = {0};
  char cmdline[512] = "";
  FILE *f = fopen(ORR_BUILD_DIR "/guest/cmdline", "r");
  json_t *v;

  ASSERT_NOT_NULL(f);
  ASSERT_NOT_NULL(fgets(cmdline, sizeof cmdline, f));
  fclose(f);
  cmdline[strcspn(cmdline, "\n")] = '\0';
  ASSERT_OK(orr_builder_new("test-guest", NULL, &b, &e));
  v = json_pack("{s:i}", "SizeInMB", 256);
  ASSERT_OK(orr_builder_set_memory(b, v, &e));
  json_decref(v);
  v = json_pack("{s:s, s:s, s:s}", "KernelFilePath",
                ORR_BUILD_DIR "/guest/vmlinux", "InitRdPath",
                ORR_BUILD_DIR "/guest/initramfs.cpio", "KernelCmdLine",
                cmdline);
  ASSERT_OK(orr_builder_set_linux_kernel_direct_boot(b, v, &e));
  json_decref(v);
  orr_vm_options_init(&opts);
  opts.accel = "tcg";
  opts.backend = backend;
  opts.guest_agent = agent;
  ASSERT_OK(
      orr_vm_create(eng, id, orr_builder_doc(b), &opts, on_done, &o, &vm, &e));
  ASSERT_OK(wait_for(&o));
  reset(&o);
  orr_builder_free(b);
  return vm;
}

static orr_guest *open_guest(orr_vm *vm, uint64_t timeout_ms, outcome *o) {
  orr_guest_options go;
  orr_guest *g = NULL;
  orr_error e = {0, ""};

  orr_guest_options_init(&go);
  go.timeout_ms = timeout_ms;
  in_call = 1;
  ASSERT_OK(orr_guest_open(vm, &go, on_done, o, &g, &e));
  in_call = 0;
  ASSERT_NOT_NULL(g);
  return g;
}

static int exec(orr_guest *g, const char *const *argv, const char *const *env,
                const char *input, size_t input_len, uint64_t timeout_ms,
                outcome *o) {
  orr_guest_exec_req req = {argv, env, input, input_len, timeout_ms};
  reset(o);
  in_call = 1;
  orr_guest_exec(g, &req, on_done, o);
  in_call = 0;
  return wait_for(o);
}

static const char *str(const outcome *o, const char *key) {
  return json_string_value(json_object_get(o->result, key));
}

static json_int_t num(const outcome *o, const char *key) {
  return json_integer_value(json_object_get(o->result, key));
}

/* Opening a paused VM's agent times out with a message saying why. */
static void test_open_timeout(orr_vm *vm) {
  outcome o = {0};
  orr_guest *g = open_guest(vm, 400, &o);
  ASSERT_ERR(wait_for(&o), ORR_ETIMEDOUT);
  ASSERT_STR_CONTAINS(o.msg, "did not answer within 400 ms");
  orr_guest_close(g);
  reset(&o);
}

static void test_exec(orr_guest *g) {
  outcome o = {0};
  static const char input[] = "in\0put";
  const char *script[] = {"sh", "-c", "echo out; echo err >&2; cat; exit 3",
                          NULL};
  const char *envs[] = {"sh", "-c", "echo \"$FOO:$PATH\"", NULL};
  const char *env[] = {"FOO=bar", NULL};
  const char *killed[] = {"sh", "-c", "kill -9 $$", NULL};
  const char *missing[] = {"no-such-program", NULL};
  const char *none[] = {NULL};

  ASSERT_OK(exec(g, script, NULL, input, sizeof input - 1, 0, &o));
  ASSERT_EQ(3, num(&o, "exit_code"));
  ASSERT_EQ(10, json_string_length(json_object_get(o.result, "stdout")));
  ASSERT(memcmp(str(&o, "stdout"), "out\nin\0put", 10) == 0);
  ASSERT_STR_EQ("err\n", str(&o, "stderr"));

  ASSERT_OK(exec(g, envs, env, NULL, 0, 0, &o));
  ASSERT_STR_EQ("bar:/usr/sbin:/usr/bin:/sbin:/bin\n", str(&o, "stdout"));

  ASSERT_OK(exec(g, killed, NULL, NULL, 0, 0, &o));
  ASSERT_EQ(9, num(&o, "signal"));
  ASSERT_EQ(137, num(&o, "exit_code"));

  ASSERT_ERR(exec(g, missing, NULL, NULL, 0, 0, &o), ORR_EBACKEND);
  ASSERT_STR_CONTAINS(o.msg, "guest-exec: ");
  ASSERT_STR_CONTAINS(o.msg, "no-such-program");

  ASSERT_ERR(exec(g, none, NULL, NULL, 0, 0, &o), ORR_EINVAL);
  ASSERT_STR_CONTAINS(o.msg, "argv");
  reset(&o);

  /* A refused call does not wait behind a slow one. */
  {
    const char *slow[] = {"sleep", "1", NULL};
    orr_guest_exec_req a = {slow, NULL, NULL, 0, 0},
                       b = {none, NULL, NULL, 0, 0};
    outcome oa = {0};
    orr_guest_exec(g, &a, on_done, &oa);
    orr_guest_exec(g, &b, on_done, &o);
    ASSERT_ERR(wait_for(&o), ORR_EINVAL);
    ASSERT_EQ(0, oa.done);
    ASSERT_OK(wait_for(&oa));
    reset(&oa);
    reset(&o);
  }
}

/* An exec that outlives its deadline is killed, and the agent stays in
** step for the next command. */
static void test_exec_timeout(orr_guest *g) {
  outcome o = {0};
  const char *sleeper[] = {"sleep", "30", NULL};
  const char *ps[] = {"sh", "-c", "ps | grep -c '[s]leep 30'", NULL};

  ASSERT_ERR(exec(g, sleeper, NULL, NULL, 0, 300, &o), ORR_ETIMEDOUT);
  ASSERT_STR_CONTAINS(o.msg, "did not exit within 300 ms");
  ASSERT_OK(exec(g, ps, NULL, NULL, 0, 0, &o));
  ASSERT_STR_EQ("0\n", str(&o, "stdout"));
  reset(&o);
}

/* A command that times out answers late; the next one must get its own
** answer, not the stale one (the sync skips it). */
static void test_stale_reply(orr_guest *g) {
  outcome a = {0}, b = {0};

  in_call = 1;
  orr_guest_interfaces(g, 1, on_done, &a);
  orr_guest_os_info(g, 0, on_done, &b);
  in_call = 0;
  wait_for(&a);
  ASSERT_OK(wait_for(&b));
  ASSERT(json_is_object(b.result));
  ASSERT_STR_EQ("x86_64",
                json_string_value(json_object_get(b.result, "machine")));
  if (a.status == 0) { /* the guest was quick after all */
    ASSERT(json_is_array(a.result));
    printf("# the 1 ms command was answered in time: nothing was stale\n");
  } else {
    ASSERT_ERR(a.status, ORR_ETIMEDOUT);
  }
  reset(&a);
  reset(&b);
}

static void test_files(orr_guest *g) {
  outcome o = {0};
  size_t n = 3 * 1024 * 1024 + 17;
  unsigned char *data = malloc(n);
  const json_t *content;

  for (size_t i = 0; i < n; i++)
    data[i] = (unsigned char)(i * 7 + i / 251);
  in_call = 1;
  orr_guest_write_file(g, "/tmp/blob", data, n, 0, on_done, &o);
  in_call = 0;
  ASSERT_OK(wait_for(&o));
  reset(&o);
  in_call = 1;
  orr_guest_read_file(g, "/tmp/blob", 0, on_done, &o);
  in_call = 0;
  ASSERT_OK(wait_for(&o));
  content = json_object_get(o.result, "content");
  ASSERT_EQ(n, json_string_length(content));
  ASSERT(memcmp(json_string_value(content), data, n) == 0);
  free(data);
  reset(&o);

  /* Empty files, short-read /proc files, missing files, bad paths. */
  orr_guest_write_file(g, "/tmp/empty", "", 0, 0, on_done, &o);
  ASSERT_OK(wait_for(&o));
  reset(&o);
  orr_guest_read_file(g, "/tmp/empty", 0, on_done, &o);
  ASSERT_OK(wait_for(&o));
  ASSERT_EQ(0, json_string_length(json_object_get(o.result, "content")));
  reset(&o);
  orr_guest_read_file(g, "/proc/version", 0, on_done, &o);
  ASSERT_OK(wait_for(&o));
  ASSERT_STR_CONTAINS(json_string_value(json_object_get(o.result, "content")),
                      "Linux");
  reset(&o);
  orr_guest_read_file(g, "/no/such/file", 0, on_done, &o);
  ASSERT_ERR(wait_for(&o), ORR_EBACKEND);
  ASSERT_STR_CONTAINS(o.msg, "guest-file-open: ");
  reset(&o);
  in_call = 1;
  orr_guest_read_file(g, "relative", 0, on_done, &o);
  in_call = 0;
  ASSERT_ERR(wait_for(&o), ORR_EINVAL);
  ASSERT_STR_CONTAINS(o.msg, "path must be an absolute guest path");
  reset(&o);
}

static void test_facts(orr_guest *g) {
  outcome o = {0};
  orr_guest_os_info(g, 0, on_done, &o);
  ASSERT_OK(wait_for(&o));
  /* The kernel that answers is the one the guest's manifest names. */
  orr_guest_image img;
  orr_error ie = {0};
  ASSERT(orr_guest_image_load(ORR_BUILD_DIR "/guest", &img, &ie) == 0);
  ASSERT_STR_EQ(img.release,
                json_string_value(json_object_get(o.result, "kernel-release")));
  reset(&o);
  orr_guest_interfaces(g, 0, on_done, &o);
  ASSERT_OK(wait_for(&o));
  ASSERT(json_is_array(o.result));
  ASSERT_STR_EQ("lo", json_string_value(json_object_get(
                          json_array_get(o.result, 0), "name")));
  reset(&o);
  orr_guest_command(g, "guest-no-such-command", NULL, 0, on_done, &o);
  ASSERT_ERR(wait_for(&o), ORR_EBACKEND);
  ASSERT_STR_CONTAINS(o.msg, "guest-no-such-command: ");
  reset(&o);
}

/* Closing fails what is pending with ECANCELED, from the loop. */
static void test_close_pending(orr_vm *vm) {
  outcome open = {0}, a = {0}, b = {0};
  const char *sleeper[] = {"sleep", "1", NULL};
  orr_guest_exec_req req = {sleeper, NULL, NULL, 0, 0};
  orr_guest *g = open_guest(vm, 30000, &open);

  ASSERT_OK(wait_for(&open));
  in_call = 1;
  orr_guest_exec(g, &req, on_done, &a);
  orr_guest_ping(g, 0, on_done, &b);
  orr_guest_close(g);
  in_call = 0;
  ASSERT_ERR(wait_for(&a), ORR_ECANCELED);
  ASSERT_ERR(wait_for(&b), ORR_ECANCELED);
  reset(&open);
  reset(&a);
  reset(&b);
}

/* The VM dies under a pending exec: EVMGONE; then opening is refused. */
static void test_vm_gone(orr_vm *vm, orr_guest *g) {
  outcome a = {0}, t = {0}, o = {0};
  const char *sleeper[] = {"sleep", "30", NULL};
  orr_guest_exec_req req = {sleeper, NULL, NULL, 0, 60000};
  orr_guest *g2 = NULL;
  orr_error e = {0, ""};

  orr_guest_exec(g, &req, on_done, &a);
  orr_vm_terminate(vm, on_done, &t);
  ASSERT_ERR(wait_for(&a), ORR_EVMGONE);
  ASSERT_STR_CONTAINS(a.msg, "the VM is gone");
  ASSERT(!orr_guest_is_open(g));
  ASSERT(!orr_guest_is_ready(g));
  wait_for(&t);
  /* Later calls fail the same way, still from the loop. */
  in_call = 1;
  orr_guest_ping(g, 0, on_done, &o);
  in_call = 0;
  ASSERT_ERR(wait_for(&o), ORR_EVMGONE);
  ASSERT_ERR(orr_guest_open(vm, NULL, on_done, &o, &g2, &e), ORR_EVMGONE);
  ASSERT_NULL(g2);
  reset(&a);
  reset(&t);
  reset(&o);
}

static void test_no_agent(void) {
  orr_vm *plan = make_vm("plan-agent", "plan", 1);
  orr_vm *none = make_vm("plan-none", "plan", 0);
  orr_guest *g = NULL;
  orr_error e = {0, ""};
  outcome o = {0};

  ASSERT_ERR(orr_guest_open(plan, NULL, on_done, &o, &g, &e), ORR_ENOTSUP);
  ASSERT_STR_CONTAINS(e.msg, "plan backend");
  ASSERT_ERR(orr_guest_open(none, NULL, on_done, &o, &g, &e), ORR_ENOENT);
  ASSERT_STR_CONTAINS(e.msg, "no guest agent port");
  ASSERT_NULL(g);
  ASSERT_EQ(0, o.done);
  orr_vm_close(plan);
  orr_vm_close(none);
}

int main(void) {
  orr_error e = {0, ""};
  outcome o = {0};
  orr_guest *g;
  orr_vm *vm;
  char dir[] = "/tmp/orr-test-guest-XXXXXX";
  uint64_t t0;

  ASSERT_NOT_NULL(mkdtemp(dir));
  setenv("ORRERY_RUNTIME_DIR", dir, 1);
  ASSERT_OK(orr_engine_new(NULL, &eng, &e));
  loop = orr_engine_loop(eng);

  RUN_TEST(test_no_agent);
  vm = make_vm("guest", "qemu", 1);
  test_open_timeout(vm);
  printf("ok - test_open_timeout\n");

  orr_vm_start(vm, 0, on_done, &o);
  ASSERT_OK(wait_for(&o));
  reset(&o);
  t0 = uv_hrtime();
  g = open_guest(vm, 60000, &o);
  ASSERT_OK(wait_for(&o));
  ASSERT(orr_guest_is_ready(g));
  printf("ok - open (agent answered %.2f s after start)\n",
         (double)(uv_hrtime() - t0) / 1e9);
  reset(&o);

  test_exec(g);
  printf("ok - test_exec\n");
  test_exec_timeout(g);
  printf("ok - test_exec_timeout\n");
  test_stale_reply(g);
  printf("ok - test_stale_reply\n");
  test_files(g);
  printf("ok - test_files\n");
  test_facts(g);
  printf("ok - test_facts\n");
  /* A second connection while the first is open would sit in QEMU's
  ** backlog: the socket serves one client. Close ours first. */
  orr_guest_close(g);
  test_close_pending(vm);
  printf("ok - test_close_pending\n");
  g = open_guest(vm, 30000, &o);
  ASSERT_OK(wait_for(&o));
  reset(&o);
  test_vm_gone(vm, g);
  printf("ok - test_vm_gone\n");
  orr_guest_close(g);

  orr_vm_close(vm);
  orr_engine_free(eng);
  rmdir(dir);
  return 0;
}

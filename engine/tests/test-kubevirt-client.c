/*
** The kubevirt backend's transport against a real HTTPS API server on
** loopback (engine/tests/kubevirt-server.py: its own state, its own copy
** of the KubeVirt v1 schema rules, TLS with a CA this test makes): the
** quickstart's life (create, start, hot-add and remove a SCSI volume, a NIC
** hot-plug, pause, unpause, stop) followed through the VMI watch, and the
** faults: 409 resolved by resourceVersion, 500 retried with backoff, 422
** refused, slow answers hitting the deadline, dropped and expired watches,
** the wrong token, a client certificate, an API server signed by a CA the
** client does not trust. Every request is checked against the schema here
** and again by the server, which must have counted no violation at the end.
**
** With ORRERY_KUBECONFIG set, the lifecycle runs against that cluster
** instead (namespace from the kubeconfig; the PVC quickstart-data and the
** images named below must exist there) and the fault cases are skipped.
*/
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base64.h"
#include "kubevirt.h"
#include "orrery/document.h"
#include "task.h"

#define C0 "df6d0690-79e5-55b6-a5ec-c1e2f77f580a"
#define NIC1 "2b8d8f0e-8f3c-4c55-a3b1-6f2b1c0d9e7a"
#define KERNEL "/srv/orrery/guest/vmlinuz"
#define INITRD "/srv/orrery/guest/initrd.img"
#define DATA "/tmp/quickstart/data.img"
#define TOKEN "orrery-test-token"

static char dir[] = "/tmp/orr-kubevirt-XXXXXX";
static pid_t server = -1;
static uv_loop_t loop;
static json_t *sources;
static const char *real_cluster;

/* ---- the server ---- */

static void stop_server(void) {
  char cmd[300];
  if (server > 0) {
    kill(-server, SIGTERM);
    waitpid(server, NULL, 0);
    server = -1;
  }
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", dir);
}

static int start_server(void) {
  char cmd[600], port_file[300], buf[16] = "";
  snprintf(cmd, sizeof cmd, "bash %s/engine/tests/kubevirt-pki.sh %s",
           ORR_SOURCE_DIR, dir);
  ASSERT_EQ(system(cmd), 0);
  snprintf(port_file, sizeof port_file, "%s/port", dir);
  server = fork();
  ASSERT(server >= 0);
  if (server == 0) {
    char schema[300], cert[300], key[300], ca[300], script[300];
    setpgid(0, 0);
    /* Dies with the test even when the test crashes before its atexit. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    snprintf(script, sizeof script, "%s/engine/tests/kubevirt-server.py",
             ORR_SOURCE_DIR);
    snprintf(schema, sizeof schema,
             "%s/engine/src/backends/kubevirt/kubevirt-v1-schema.json",
             ORR_SOURCE_DIR);
    snprintf(cert, sizeof cert, "%s/server.pem", dir);
    snprintf(key, sizeof key, "%s/server.key", dir);
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    execl("/usr/bin/python3", "python3", script, "--schema", schema, "--cert",
          cert, "--key", key, "--client-ca", ca, "--token", TOKEN,
          "--port-file", port_file, (char *)NULL);
    _exit(127);
  }
  setpgid(server, server);
  for (int i = 0; i < 200; i++) { /* 20 s: the machine is shared */
    int fd = open(port_file, O_RDONLY);
    if (fd >= 0) {
      ssize_t n = read(fd, buf, sizeof buf - 1);
      close(fd);
      if (n > 0) {
        buf[n] = '\0';
        return atoi(buf);
      }
    }
    usleep(100000);
  }
  TEST_FAIL_("the test server did not start");
}

/* A kubeconfig: auth "token", "cert", "badtoken"; ca "ca" or "rogue". */
static void kubeconfig(const char *name, int port, const char *auth,
                       const char *ca, orr_kv_kubeconfig *kc) {
  char path[300], user[8192];
  FILE *f;
  orr_error e = {0, ""};
  if (strcmp(auth, "cert") == 0) {
    /* Inline, as base64 data: the other form the file takes. */
    char p1[300], p2[300], *c1, *c2, *b1, *b2;
    size_t l1, l2;
    FILE *a, *b;
    snprintf(p1, sizeof p1, "%s/client.pem", dir);
    snprintf(p2, sizeof p2, "%s/client.key", dir);
    a = fopen(p1, "r");
    b = fopen(p2, "r");
    c1 = calloc(1, 8192);
    c2 = calloc(1, 8192);
    l1 = fread(c1, 1, 8191, a);
    l2 = fread(c2, 1, 8191, b);
    fclose(a);
    fclose(b);
    b1 = orr__b64_encode(c1, l1);
    b2 = orr__b64_encode(c2, l2);
    snprintf(user, sizeof user,
             "    client-certificate-data: %s\n    client-key-data: %s\n", b1,
             b2);
    free(c1);
    free(c2);
    free(b1);
    free(b2);
  } else {
    snprintf(user, sizeof user, "    token: %s\n",
             strcmp(auth, "token") == 0 ? TOKEN : "not-the-token");
  }
  snprintf(path, sizeof path, "%s/%s.kubeconfig", dir, name);
  f = fopen(path, "w");
  ASSERT_NOT_NULL(f);
  fprintf(f,
          "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
          "clusters:\n- name: loop\n  cluster:\n    server: "
          "https://127.0.0.1:%d\n    certificate-authority: %s.pem\n"
          "contexts:\n- name: test\n  context: {cluster: loop, user: me, "
          "namespace: orrery-test}\n"
          "users:\n- name: me\n  user:\n%s",
          port, ca, user);
  fclose(f);
  if (orr__kv_kubeconfig_load(path, NULL, kc, &e) != 0)
    TEST_FAIL_("kubeconfig: %s", e.msg);
}

/* ---- running calls to completion ---- */

typedef struct {
  int done, status;
  json_t *answer;
  orr_error err;
} result;

static void on_result(void *arg, int status, json_t *answer,
                      const orr_error *err) {
  result *r = arg;
  r->done = 1;
  r->status = status;
  r->answer = json_incref(answer);
  if (err)
    r->err = *err;
}

static void run_until(int *flag, uint64_t ms) {
  uint64_t end = uv_now(&loop) + ms;
  while (!*flag && uv_now(&loop) < end) {
    uv_run(&loop, UV_RUN_ONCE);
    uv_update_time(&loop);
  }
}

/* A timer that keeps the loop turning while run_until waits on a flag. */
static uv_timer_t ticker;
static void tick(uv_timer_t *t) {
  (void)t;
}

static result call(orr_kv_client *c, const json_t *req, int check) {
  result r = {0};
  orr_error e = {0, ""};
  if (check && orr__kv_check_request(req, &e) != 0) {
    char *t = json_dumps(req, JSON_COMPACT);
    TEST_FAIL_("not schema-valid: %s\n%s", e.msg, t);
  }
  orr__kv_client_send(c, req, on_result, &r);
  run_until(&r.done, 60000);
  ASSERT(r.done);
  return r;
}

static json_t *control(orr_kv_client *c, const char *json) {
  json_error_t je;
  json_t *req =
      json_pack("{s:s, s:s, s:o}", "method", "POST", "path",
                "/orrery-test/control", "body", json_loads(json, 0, &je));
  result r = call(c, req, 0);
  json_decref(req);
  ASSERT_OK(r.status);
  return r.answer;
}

static orr_kv_config config(void) {
  orr_kv_config cfg = {"quickstart", "orrery-test", sources};
  return cfg;
}

/* ---- the watch ---- */

typedef struct {
  json_t *events; /* [{type, phase, paused, volumes: [names], rv}] */
  json_t *last;   /* the last VMI object */
} watch_log;

static void on_event(void *arg, const char *type, const json_t *obj,
                     const orr_error *err) {
  watch_log *w = arg;
  json_t *vols = json_array();
  size_t i;
  json_t *v;
  if (err)
    TEST_FAIL_("watch gave up: %s", err->msg);
  json_array_foreach(
      json_object_get(json_object_get(obj, "status"), "volumeStatus"), i, v)
      json_array_append(vols, json_object_get(v, "name"));
  json_array_append_new(
      w->events, json_pack("{s:s, s:s, s:o, s:O?}", "type", type, "state",
                           orr__kv_vmi_state(obj), "volumes", vols, "rv",
                           json_object_get(json_object_get(obj, "metadata"),
                                           "resourceVersion")));
  if (obj) {
    json_decref(w->last);
    w->last = json_deep_copy(obj);
  }
}

static const char *want_type, *want_state, *want_volume;
static int want_volume_present;

static int matches(const json_t *ev) {
  const char *t = json_string_value(json_object_get(ev, "type"));
  const char *s = json_string_value(json_object_get(ev, "state"));
  if (want_type && strcmp(t, want_type) != 0)
    return 0;
  if (want_state && strcmp(s, want_state) != 0)
    return 0;
  if (want_volume) {
    int found = 0;
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(ev, "volumes"), i, v) {
      if (strcmp(json_string_value(v), want_volume) == 0)
        found = 1;
    }
    if (found != want_volume_present)
      return 0;
  }
  return 1;
}

/* Waits for an event after index `from` that matches; returns its index. */
static size_t wait_event(watch_log *w, size_t from, const char *type,
                         const char *state, const char *volume, int present) {
  uint64_t end;
  uv_update_time(&loop);
  end = uv_now(&loop) + 30000;
  want_type = type;
  want_state = state;
  want_volume = volume;
  want_volume_present = present;
  while (uv_now(&loop) < end) {
    for (size_t i = from; i < json_array_size(w->events); i++)
      if (matches(json_array_get(w->events, i)))
        return i;
    uv_run(&loop, UV_RUN_ONCE);
    uv_update_time(&loop);
  }
  {
    char *t = json_dumps(w->events, JSON_COMPACT);
    TEST_FAIL_("no %s %s event (volume %s %s) after %zu: %s", type ? type : "",
               state ? state : "", volume ? volume : "-",
               present ? "present" : "absent", from, t);
  }
}

static json_t *quickstart_doc(void) {
  json_t *doc = orr_doc_new("quickstart"), *norm = NULL;
  json_t *vm = json_object_get(doc, "VirtualMachine");
  orr_error e = {0, ""};
  json_object_set_new(vm, "ComputeTopology",
                      json_pack("{s:{s:i}, s:{s:i}}", "Memory", "SizeInMB", 256,
                                "Processor", "Count", 1));
  json_object_set_new(json_object_get(vm, "Chipset"), "LinuxKernelDirect",
                      json_pack("{s:s, s:s, s:s}", "KernelFilePath", KERNEL,
                                "InitRdPath", INITRD, "KernelCmdLine",
                                "console=ttyS0"));
  json_object_set_new(json_object_get(vm, "Devices"), "Scsi",
                      json_pack("{s:{s:{}}}", C0, "Attachments"));
  json_object_set_new(json_object_get(vm, "Devices"), "ComPorts",
                      json_pack("{s:{s:s}}", "0", "NamedPipe",
                                "/run/orrery/quickstart/com1.sock"));
  if (orr_doc_check(doc, &norm, &e) != 0)
    TEST_FAIL_("document: %s", e.msg);
  json_decref(doc);
  return norm;
}

static const json_t *attachment(const json_t *doc, const char *lun) {
  const json_t *scsi = json_object_get(
      json_object_get(json_object_get(doc, "VirtualMachine"), "Devices"),
      "Scsi");
  return json_object_get(
      json_object_get(json_object_get(scsi, C0), "Attachments"), lun);
}

static json_t *verb(orr_kv_verb v) {
  orr_kv_config cfg = config();
  json_t *req;
  orr_error e = {0, ""};
  ASSERT_OK(orr__kv_verb(&cfg, v, NULL, &req, &e));
  return req;
}

static result call_verb(orr_kv_client *c, orr_kv_verb v) {
  json_t *req = verb(v);
  result r = call(c, req, 1);
  json_decref(req);
  return r;
}

static void send_verb(orr_kv_client *c, orr_kv_verb v) {
  json_t *req = verb(v);
  result r = call(c, req, 1);
  if (r.status != 0)
    TEST_FAIL_("%s: %s", json_string_value(json_object_get(req, "path")),
               r.err.msg);
  json_decref(r.answer);
  json_decref(req);
}

/* The replan of a NIC add: the same change against the VM as read now. */
typedef struct {
  json_t *doc, *request;
  int calls;
} replan_ctx;

static json_t *replan(void *arg, const json_t *vm, orr_error *e) {
  replan_ctx *p = arg;
  orr_kv_config cfg = config();
  json_t *plan = NULL, *req;
  p->calls++;
  if (orr__kv_plan_modify(p->doc, vm, p->request, &cfg, &plan, e) != 0)
    return NULL;
  req = json_deep_copy(json_array_get(json_object_get(plan, "do"), 0));
  json_object_del(req, "undo");
  json_decref(plan);
  if (orr__kv_check_request(req, e) != 0) {
    json_decref(req);
    return NULL;
  }
  return req;
}

static void closed(void *arg) {
  *(int *)arg = 1;
}

static void close_client(orr_kv_client *c) {
  int done = 0;
  orr__kv_client_close(c, closed, &done);
  run_until(&done, 10000);
  ASSERT(done);
}

/* ---- the quickstart's life ---- */

static void test_lifecycle(orr_kv_client *c) {
  orr_kv_config cfg = config();
  orr_kv_watch *w = NULL;
  watch_log log = {json_array(), NULL};
  json_t *doc = quickstart_doc(), *entry = NULL, *plan = NULL, *req, *live;
  orr_error e = {0, ""};
  orr_kv_stats s0, s1;
  result r;
  size_t at;
  bool changed;

  /* create: the plan's one request, the manifest */
  ASSERT_OK(orr__kv_plan_new(doc, &cfg, &entry, &e));
  r = call(c, json_array_get(json_object_get(entry, "requests"), 0), 1);
  if (r.status != 0)
    TEST_FAIL_("create: %s", r.err.msg);
  ASSERT_NOT_NULL(json_object_get(json_object_get(r.answer, "metadata"),
                                  "resourceVersion"));
  json_decref(r.answer);
  /* Creating it twice is EEXIST, not a conflict to resolve. */
  r = call(c, json_array_get(json_object_get(entry, "requests"), 0), 1);
  ASSERT_ERR(r.status, ORR_EEXIST);
  ASSERT_STR_CONTAINS(r.err.msg, "already exists");

  ASSERT_OK(orr__kv_watch_start(c, &cfg, NULL, on_event, &log, &w, &e));
  send_verb(c, ORR_KV_START);
  at = wait_event(&log, 0, "MODIFIED", "Running", NULL, 0);

  /* hot-add a SCSI volume */
  req = json_pack("{s:s, s:s, s:{s:s, s:s}}", "ResourcePath",
                  "VirtualMachine/Devices/Scsi/" C0 "/Attachments/3",
                  "RequestType", "Add", "Settings", "Type", "VirtualDisk",
                  "Path", DATA);
  ASSERT_OK(orr__kv_plan_modify(doc, json_object_get(entry, "manifest"), req,
                                &cfg, &plan, &e));
  json_decref(req);
  r = call(c, json_array_get(json_object_get(plan, "do"), 0), 1);
  if (r.status != 0)
    TEST_FAIL_("addvolume: %s", r.err.msg);
  json_decref(r.answer);
  json_decref(plan);
  at = wait_event(&log, at + 1, "MODIFIED", "Running", "scsi-0-3", 1);
  /* The live document follows the VMI. */
  ASSERT_OK(orr__kv_follow_status(doc, log.last, &cfg, &live, &changed, &e));
  ASSERT(changed);
  ASSERT_STR_EQ(
      json_string_value(json_object_get(attachment(live, "3"), "Path")), DATA);
  json_decref(doc);
  doc = live;

  /* NIC hot-plug against a VM that changed after we read it: 409, read
  ** again, planned again, applied. */
  if (!real_cluster) {
    replan_ctx p = {doc, NULL, 0};
    json_t *vm;
    r = call_verb(c, ORR_KV_GET_VM);
    ASSERT_OK(r.status);
    vm = r.answer;
    json_decref(control(c, "{\"touch\":\"quickstart\",\"namespace\":"
                           "\"orrery-test\"}"));
    p.request = json_pack("{s:s, s:s, s:{s:s, s:s}}", "ResourcePath",
                          "VirtualMachine/Devices/NetworkAdapters/" NIC1,
                          "RequestType", "Add", "Settings", "EndpointId",
                          "multus:storage", "MacAddress", "00-15-5D-52-C0-0A");
    req = replan(&p, vm, &e);
    ASSERT_NOT_NULL(req);
    orr__kv_client_stats(c, &s0);
    {
      char path[300];
      result rr = {0};
      orr__kv_path(&cfg, "vm", path, sizeof path);
      orr__kv_client_apply(c, req, path, replan, &p, on_result, &rr);
      run_until(&rr.done, 30000);
      if (rr.status != 0)
        TEST_FAIL_("NIC add: %s", rr.err.msg);
      json_decref(rr.answer);
    }
    orr__kv_client_stats(c, &s1);
    ASSERT_EQ(s1.conflicts - s0.conflicts, 1);
    ASSERT_EQ(p.calls, 2);
    json_decref(req);
    json_decref(vm);
    json_decref(p.request);
    at = wait_event(&log, at + 1, "MODIFIED", "Running", NULL, 0);
  }

  /* remove the volume */
  req = json_pack("{s:s, s:s}", "ResourcePath",
                  "VirtualMachine/Devices/Scsi/" C0 "/Attachments/3",
                  "RequestType", "Remove");
  ASSERT_OK(orr__kv_plan_modify(doc, json_object_get(entry, "manifest"), req,
                                &cfg, &plan, &e));
  json_decref(req);
  r = call(c, json_array_get(json_object_get(plan, "do"), 0), 1);
  if (r.status != 0)
    TEST_FAIL_("removevolume: %s", r.err.msg);
  json_decref(r.answer);
  json_decref(plan);
  at = wait_event(&log, at + 1, "MODIFIED", "Running", "scsi-0-3", 0);
  ASSERT_OK(orr__kv_follow_status(doc, log.last, &cfg, &live, &changed, &e));
  ASSERT(changed);
  json_decref(doc);
  doc = live;

  /* pause; the watch drops; unpause still arrives, from where it was */
  send_verb(c, ORR_KV_PAUSE);
  at = wait_event(&log, at + 1, "MODIFIED", "Paused", NULL, 0);
  if (!real_cluster) {
    unsigned before = orr__kv_watch_connects(w);
    json_decref(control(c, "{\"drop_watches\":true}"));
    send_verb(c, ORR_KV_UNPAUSE);
    at = wait_event(&log, at + 1, "MODIFIED", "Running", NULL, 0);
    ASSERT_GT(orr__kv_watch_connects(w), before);
    /* Nothing delivered twice: resourceVersions only grow. */
    for (size_t i = 1; i < json_array_size(log.events); i++)
      ASSERT_GT(atoll(json_string_value(
                    json_object_get(json_array_get(log.events, i), "rv"))),
                atoll(json_string_value(
                    json_object_get(json_array_get(log.events, i - 1), "rv"))));
  } else {
    send_verb(c, ORR_KV_UNPAUSE);
    at = wait_event(&log, at + 1, "MODIFIED", "Running", NULL, 0);
  }

  /* stop through two 500s: retried with backoff */
  if (!real_cluster)
    json_decref(control(c, "{\"fault\":{\"method\":\"PUT\",\"path\":"
                           "\"/stop$\",\"status\":500,\"count\":2}}"));
  orr__kv_client_stats(c, &s0);
  send_verb(c, ORR_KV_STOP);
  orr__kv_client_stats(c, &s1);
  if (!real_cluster)
    ASSERT_EQ(s1.retried - s0.retried, 2);
  wait_event(&log, at + 1, "DELETED", NULL, NULL, 0);
  orr__kv_watch_stop(w);

  send_verb(c, ORR_KV_DELETE);
  json_decref(log.events);
  json_decref(log.last);
  json_decref(entry);
  json_decref(doc);
}

/* ---- faults ---- */

static void test_faults(orr_kv_client *c, int port) {
  orr_kv_config cfg = config();
  orr_kv_kubeconfig kc;
  orr_kv_client *c2;
  orr_kv_retry quick = {1500, 500, 3, 50, 200};
  orr_error e = {0, ""};
  orr_kv_stats s0, s1;
  json_t *req, *st;
  result r;

  /* a VM to work on */
  {
    json_t *doc = quickstart_doc(), *entry;
    ASSERT_OK(orr__kv_plan_new(doc, &cfg, &entry, &e));
    r = call(c, json_array_get(json_object_get(entry, "requests"), 0), 1);
    ASSERT_OK(r.status);
    json_decref(r.answer);
    json_decref(entry);
    json_decref(doc);
  }

  /* 422: refused at once with the server's words, never retried */
  json_decref(control(c, "{\"fault\":{\"method\":\"PUT\",\"path\":"
                         "\"/start$\",\"status\":422,\"count\":1}}"));
  orr__kv_client_stats(c, &s0);
  req = verb(ORR_KV_START);
  r = call(c, req, 1);
  ASSERT_ERR(r.status, ORR_EINVAL);
  ASSERT_STR_CONTAINS(r.err.msg, "HTTP 422: injected by the test");
  orr__kv_client_stats(c, &s1);
  ASSERT_EQ(s1.sent - s0.sent, 1);
  json_decref(req);

  /* a 409 that is not about a stale version (start of a running VM) is
  ** EBUSY: nothing to re-read */
  send_verb(c, ORR_KV_START);
  req = verb(ORR_KV_START);
  r = call(c, req, 1);
  ASSERT_ERR(r.status, ORR_EBUSY);
  ASSERT_STR_CONTAINS(r.err.msg, "already running");
  json_decref(req);

  /* slow answers: one slow attempt is retried; all slow hits the deadline */
  kubeconfig("quick", port, "token", "ca", &kc);
  ASSERT_OK(orr__kv_client_new(&loop, &kc, &quick, &c2, &e));
  orr__kv_kubeconfig_free(&kc);
  json_decref(control(c, "{\"fault\":{\"method\":\"GET\",\"path\":"
                         "\"/virtualmachines/quickstart$\",\"delay_ms\":1500,"
                         "\"count\":1}}"));
  req = verb(ORR_KV_GET_VM);
  r = call(c2, req, 1);
  ASSERT_OK(r.status);
  json_decref(r.answer);
  orr__kv_client_stats(c2, &s1);
  ASSERT_GE(s1.retried, 1);
  json_decref(control(c, "{\"fault\":{\"method\":\"GET\",\"path\":"
                         "\"/virtualmachines/quickstart$\",\"delay_ms\":1500,"
                         "\"count\":20}}"));
  r = call(c2, req, 1);
  ASSERT_ERR(r.status, ORR_ETIMEDOUT);
  json_decref(req);
  /* 500 for ever: the last attempt's words, after max_attempts */
  json_decref(control(c, "{\"fault\":{\"method\":\"PUT\",\"path\":"
                         "\"/pause$\",\"status\":503,\"count\":20}}"));
  orr__kv_client_stats(c2, &s0);
  req = verb(ORR_KV_PAUSE);
  r = call(c2, req, 1);
  ASSERT_ERR(r.status, ORR_EBACKEND);
  ASSERT_STR_CONTAINS(r.err.msg, "HTTP 503");
  orr__kv_client_stats(c2, &s1);
  ASSERT_EQ(s1.sent - s0.sent, 3);
  json_decref(req);
  close_client(c2);
  json_decref(control(c, "{\"clear_faults\":true}"));

  /* what the server checks: a body this backend would never send */
  req =
      json_pack("{s:s, s:s, s:{s:s, s:{s:s, s:{s:s}}, s:{s:{s:s}}}}", "method",
                "PUT", "path",
                "/apis/subresources.kubevirt.io/v1/namespaces/orrery-test/"
                "virtualmachines/quickstart/addvolume",
                "body", "name", "x", "disk", "name", "x", "disk", "bus", "ide",
                "volumeSource", "persistentVolumeClaim", "claimName", "x");
  r = call(c, req, 0);
  ASSERT_ERR(r.status, ORR_EINVAL);
  ASSERT_STR_CONTAINS(r.err.msg, "disk.disk.bus: must be one of");
  json_decref(req);
  st = control(c, "{}");
  ASSERT_EQ(json_array_size(json_object_get(st, "violations")), 1);
  json_decref(st);

  /* credentials */
  kubeconfig("bad", port, "badtoken", "ca", &kc);
  ASSERT_OK(orr__kv_client_new(&loop, &kc, &quick, &c2, &e));
  orr__kv_kubeconfig_free(&kc);
  r = call_verb(c2, ORR_KV_GET_VM);
  ASSERT_ERR(r.status, ORR_EPERM);
  close_client(c2);
  kubeconfig("cert", port, "cert", "ca", &kc);
  ASSERT_OK(orr__kv_client_new(&loop, &kc, &quick, &c2, &e));
  orr__kv_kubeconfig_free(&kc);
  r = call_verb(c2, ORR_KV_GET_VM);
  if (r.status != 0)
    TEST_FAIL_("client certificate: %s", r.err.msg);
  ASSERT_STR_EQ(json_string_value(json_object_get(r.answer, "kind")),
                "VirtualMachine");
  json_decref(r.answer);
  close_client(c2);
  kubeconfig("rogue", port, "token", "rogue", &kc);
  ASSERT_OK(orr__kv_client_new(&loop, &kc, &quick, &c2, &e));
  orr__kv_kubeconfig_free(&kc);
  r = call_verb(c2, ORR_KV_GET_VM);
  ASSERT_ERR(r.status, ORR_EIO);
  ASSERT_STR_CONTAINS(r.err.msg, "certificate");
  close_client(c2);

  /* a watch whose version expired: re-read, then on */
  {
    orr_kv_watch *w;
    watch_log log = {json_array(), NULL};
    size_t at;
    ASSERT_OK(orr__kv_watch_start(c, &cfg, NULL, on_event, &log, &w, &e));
    at = wait_event(&log, 0, "ADDED", "Running", NULL, 0);
    json_decref(control(c, "{\"expire\":true}"));
    json_decref(control(c, "{\"drop_watches\":true}"));
    send_verb(c, ORR_KV_PAUSE);
    at = wait_event(&log, at + 1, "MODIFIED", "Paused", NULL, 0);
    send_verb(c, ORR_KV_STOP);
    wait_event(&log, at + 1, "DELETED", NULL, NULL, 0);
    orr__kv_watch_stop(w);
    json_decref(log.events);
    json_decref(log.last);
  }
  send_verb(c, ORR_KV_DELETE);
}

int main(void) {
  orr_kv_kubeconfig kc;
  orr_kv_client *c;
  orr_error e = {0, ""};
  int port = 0;
  json_t *st;
  sources =
      json_pack("{s:s, s:s, s:s}", KERNEL,
                "containerdisk:quay.io/orrery/guest:1#/boot/vmlinuz", INITRD,
                "containerdisk:quay.io/orrery/guest:1#/boot/initrd.img", DATA,
                "pvc:quickstart-data");
  uv_loop_init(&loop);
  uv_timer_init(&loop, &ticker);
  uv_timer_start(&ticker, tick, 50, 50);
  real_cluster = getenv("ORRERY_KUBECONFIG");
  if (real_cluster) {
    ASSERT_OK(orr__kv_kubeconfig_load(real_cluster, NULL, &kc, &e));
  } else {
    ASSERT_NOT_NULL(mkdtemp(dir));
    atexit(stop_server);
    port = start_server();
    kubeconfig("main", port, "token", "ca", &kc);
  }
  ASSERT_OK(orr__kv_client_new(&loop, &kc, NULL, &c, &e));
  orr__kv_kubeconfig_free(&kc);
  test_lifecycle(c);
  if (!real_cluster) {
    test_faults(c, port);
    st = control(c, "{}");
    /* The one violation is the deliberate one of test_faults. */
    if (json_array_size(json_object_get(st, "violations")) != 1) {
      char *t = json_dumps(st, JSON_INDENT(1));
      TEST_FAIL_("the server saw violations: %s", t);
    }
    json_decref(st);
  }
  close_client(c);
  uv_close((uv_handle_t *)&ticker, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(uv_loop_close(&loop), 0);
  json_decref(sources);
  orr__kv_schema_release();
  printf("ok\n");
  return 0;
}

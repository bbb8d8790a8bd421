/*
** The guest operations built on the agent client (guest_agent.c): open a
** VM's agent, exec with captured output, whole-file read and write, OS
** facts. Each operation is a small job that chains agent commands under
** one deadline; the agent client queues them, so jobs from several callers
** interleave safely.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "guest_internal.h"

#define FILE_CHUNK (1024 * 1024)
#define FILE_MAX (64 * 1024 * 1024)
/* exec polls guest-exec-status from POLL_FIRST_MS, doubling up to
** POLL_MAX_MS: a quick command is seen within milliseconds, and a long one
** costs the (single, emulated) guest CPU little. */
#define POLL_FIRST_MS 1
#define POLL_MAX_MS 20
/* Cleanups after a failure (kill, file close) get their own deadline: the
** job's may have passed. */
#define CLEANUP_MS 5000
#define DEFAULT_PATH "PATH=/usr/sbin:/usr/bin:/sbin:/bin"

int orr_guest_open(orr_vm *vm, const orr_guest_options *opts, orr_vm_cb cb,
                   void *arg, orr_guest **out, orr_error *e) {
  const char *path = orr_vm_guest_socket(vm);
  json_t *props = orr_vm_properties(vm);
  const char *backend = json_string_value(json_object_get(props, "Backend"));
  int plan = backend != NULL && strcmp(backend, "plan") == 0;
  orr_guest_options o;

  json_decref(props);
  *out = NULL;
  if (path == NULL)
    return orr_error_set(e, ORR_ENOENT,
                         "guest: VM %s has no guest agent port (create it "
                         "with guest_agent = true, or boot the default "
                         "guest)",
                         orr_vm_id(vm));
  if (plan)
    return orr_error_set(e, ORR_ENOTSUP,
                         "guest: VM %s runs on the plan backend: no guest "
                         "runs, so there is no agent to talk to",
                         orr_vm_id(vm));
  if (strcmp(orr_vm_state(vm), "Stopped") == 0)
    return orr_error_set(e, ORR_EVMGONE, "guest: VM %s has stopped",
                         orr_vm_id(vm));
  if (opts != NULL)
    o = *opts;
  else
    orr_guest_options_init(&o);
  /* QEMU listens on the socket before create completes: a refusal now
  ** means it has gone, not that it is still starting. */
  o.refused_is_gone = 1;
  if (o.log_id == NULL)
    o.log_id = orr_vm_id(vm);
  return orr_guest_connect(orr_engine_loop(orr_vm_engine(vm)), path, &o, cb,
                           arg, out, e);
}

/* ---- Shared job helpers ------------------------------------------------- */

static void ignore(void *arg, int status, const orr_error *err,
                   json_t *result) {
  (void)arg;
  (void)status;
  (void)err;
  (void)result;
}

static void deliver(orr_vm_cb cb, void *arg, int status, const char *msg,
                    json_t *result) {
  orr_error e = {status, ""};

  if (status != 0)
    snprintf(e.msg, sizeof e.msg, "%.*s", (int)sizeof e.msg - 1, msg);
  cb(arg, status, &e, result);
}

/* A byte string as a JSON string that may hold any byte (see guest.h). */
static json_t *bytes(const unsigned char *p, size_t n) {
  return json_stringn_nocheck(n > 0 ? (const char *)p : "", n);
}

/* Decodes the base64 string member key of obj (absent: empty). Returns
** NULL when it is not base64. */
static unsigned char *decode_member(const json_t *obj, const char *key,
                                    size_t *n) {
  const json_t *v = json_object_get(obj, key);

  if (v == NULL) {
    *n = 0;
    return (unsigned char *)calloc(1, 1);
  }
  if (!json_is_string(v)) {
    *n = 0;
    return NULL;
  }
  return orr__b64_decode(json_string_value(v), json_string_length(v), n);
}

/* ---- exec --------------------------------------------------------------- */

typedef struct {
  orr_guest *g;
  orr_vm_cb cb;
  void *arg;
  uint64_t deadline;
  uint64_t timeout_ms;
  json_int_t pid;
  uint64_t poll_ms;
  char name[64]; /* argv[0], for messages */
} exec_job;

static void exec_end(exec_job *j, int status, const char *msg, json_t *result) {
  deliver(j->cb, j->arg, status, msg, result);
  free(j);
}

static void on_exec_status(void *arg, int status, const orr_error *err,
                           json_t *result);

static void poll_status(exec_job *j, uint64_t delay_ms) {
  orr__guest_send(j->g, "guest-exec-status", json_pack("{s:I}", "pid", j->pid),
                  j->deadline, delay_ms, on_exec_status, j);
}

static void exec_timed_out(exec_job *j) {
  char pid[32], msg[256];

  /* qemu-ga 7.2 has no command to kill what guest-exec started. */
  snprintf(pid, sizeof pid, "%" JSON_INTEGER_FORMAT, j->pid);
  orr__guest_send(
      j->g, "guest-exec",
      json_pack("{s:s, s:[s, s]}", "path", "kill", "arg", "-KILL", pid),
      orr__guest_deadline(j->g, CLEANUP_MS), 0, ignore, NULL);
  snprintf(msg, sizeof msg,
           "exec: %s (pid %s) did not exit within %llu ms; sent it SIGKILL",
           j->name, pid, (unsigned long long)j->timeout_ms);
  exec_end(j, ORR_ETIMEDOUT, msg, NULL);
}

static json_t *exec_result(const json_t *st, const char **bad) {
  json_int_t code = json_integer_value(json_object_get(st, "exitcode"));
  json_t *sig = json_object_get(st, "signal"), *r;
  unsigned char *out, *err;
  size_t nout, nerr;

  out = decode_member(st, "out-data", &nout);
  err = decode_member(st, "err-data", &nerr);
  if (out == NULL || err == NULL) {
    free(out);
    free(err);
    *bad = "the agent's output is not base64";
    return NULL;
  }
  if (json_is_integer(sig))
    code = 128 + json_integer_value(sig);
  r = json_pack("{s:I, s:o, s:o}", "exit_code", code, "stdout",
                bytes(out, nout), "stderr", bytes(err, nerr));
  free(out);
  free(err);
  if (r == NULL) {
    *bad = "out of memory";
    return NULL;
  }
  if (json_is_integer(sig))
    json_object_set(r, "signal", sig);
  if (json_is_true(json_object_get(st, "out-truncated")))
    json_object_set_new(r, "stdout_truncated", json_true());
  if (json_is_true(json_object_get(st, "err-truncated")))
    json_object_set_new(r, "stderr_truncated", json_true());
  return r;
}

static void on_exec_status(void *arg, int status, const orr_error *err,
                           json_t *result) {
  exec_job *j = arg;
  const char *bad = NULL;
  json_t *r;

  if (status == ORR_ETIMEDOUT) {
    exec_timed_out(j);
    return;
  }
  if (status != 0) {
    exec_end(j, status, err->msg, NULL);
    return;
  }
  if (!json_is_true(json_object_get(result, "exited"))) {
    poll_status(j, j->poll_ms);
    j->poll_ms = j->poll_ms * 2 > POLL_MAX_MS ? POLL_MAX_MS : j->poll_ms * 2;
    return;
  }
  r = exec_result(result, &bad);
  if (r == NULL) {
    char msg[160];
    snprintf(msg, sizeof msg, "exec: %s: %s", j->name, bad);
    exec_end(j, ORR_EIO, msg, NULL);
    return;
  }
  exec_end(j, 0, NULL, r);
  json_decref(r);
}

static void on_exec_started(void *arg, int status, const orr_error *err,
                            json_t *result) {
  exec_job *j = arg;
  json_t *pid = json_object_get(result, "pid");

  if (status != 0) {
    char msg[sizeof err->msg];
    /* "guest-exec: Failed to execute child process ..." says it all, but
    ** a timeout here says nothing about the program: name it. */
    if (status == ORR_ETIMEDOUT)
      snprintf(msg, sizeof msg, "exec: %s: %.400s", j->name, err->msg);
    else
      snprintf(msg, sizeof msg, "%s", err->msg);
    exec_end(j, status, msg, NULL);
    return;
  }
  if (!json_is_integer(pid)) {
    exec_end(j, ORR_EIO, "guest-exec: the agent's answer has no pid", NULL);
    return;
  }
  j->pid = json_integer_value(pid);
  j->poll_ms = POLL_FIRST_MS;
  poll_status(j, 0);
}

/* The guest-exec arguments, or NULL with *why set. */
static json_t *exec_args(const orr_guest_exec_req *req, const char **why) {
  json_t *a = json_object(), *args = json_array(), *env;
  int has_path = 0;

  json_object_set_new(a, "path", json_string(req->argv[0]));
  for (size_t i = 1; req->argv[i] != NULL; i++)
    if (json_array_append_new(args, json_string(req->argv[i])) != 0)
      goto bad;
  json_object_set_new(a, "arg", args);
  if (req->env != NULL) {
    env = json_array();
    json_object_set_new(a, "env", env);
    for (size_t i = 0; req->env[i] != NULL; i++) {
      if (strchr(req->env[i], '=') == NULL || req->env[i][0] == '=') {
        *why = "exec: each env entry must be NAME=value";
        json_decref(a);
        return NULL;
      }
      has_path |= strncmp(req->env[i], "PATH=", 5) == 0;
      if (json_array_append_new(env, json_string(req->env[i])) != 0)
        goto bad;
    }
    /* The agent looks argv[0] up in its own PATH, but the program (a
    ** shell script, say) would otherwise run without one. */
    if (!has_path)
      json_array_append_new(env, json_string(DEFAULT_PATH));
  }
  if (req->input != NULL && req->input_len > 0) {
    char *b64 = orr__b64_encode(req->input, req->input_len);
    if (b64 == NULL)
      goto oom;
    json_object_set_new(a, "input-data", json_string(b64));
    free(b64);
  }
  json_object_set_new(a, "capture-output", json_true());
  if (json_object_size(a) < 3)
    goto oom;
  return a;
bad:
  *why = "exec: argv and env must be UTF-8 strings";
  json_decref(a);
  return NULL;
oom:
  *why = "out of memory";
  json_decref(a);
  return NULL;
}

void orr_guest_exec(orr_guest *g, const orr_guest_exec_req *req, orr_vm_cb cb,
                    void *arg) {
  const char *why = NULL;
  exec_job *j;
  json_t *a;

  if (req == NULL || req->argv == NULL || req->argv[0] == NULL ||
      req->argv[0][0] == '\0') {
    orr__guest_fail(g, ORR_EINVAL,
                    "exec: argv must hold at least a non-empty program name",
                    cb, arg);
    return;
  }
  a = exec_args(req, &why);
  j = a != NULL ? calloc(1, sizeof *j) : NULL;
  if (j == NULL) {
    json_decref(a);
    orr__guest_fail(g, why != NULL ? ORR_EINVAL : ORR_ENOMEM,
                    why != NULL ? why : "out of memory", cb, arg);
    return;
  }
  j->g = g;
  j->cb = cb;
  j->arg = arg;
  j->deadline = orr__guest_deadline(g, req->timeout_ms);
  j->timeout_ms = (j->deadline - uv_hrtime() + 500000) / 1000000;
  snprintf(j->name, sizeof j->name, "%s", req->argv[0]);
  orr__guest_send(g, "guest-exec", a, j->deadline, 0, on_exec_started, j);
}

/* ---- Files -------------------------------------------------------------- */

typedef struct {
  orr_guest *g;
  orr_vm_cb cb;
  void *arg;
  uint64_t deadline;
  json_int_t handle;
  int writing;
  unsigned char *buf; /* read: what came so far; write: the data */
  size_t len, cap;    /* read: bytes in buf; write: total to write */
  size_t off;         /* write: bytes written */
  int status;         /* the outcome, once decided (closing the file) */
  char msg[512];
  char path[256]; /* for messages */
} file_job;

static void file_end(file_job *j) {
  json_t *r = NULL;

  if (j->status == 0 && !j->writing) {
    r = json_pack("{s:o}", "content", bytes(j->buf, j->len));
    if (r == NULL) {
      j->status = ORR_ENOMEM;
      snprintf(j->msg, sizeof j->msg, "out of memory");
    }
  }
  deliver(j->cb, j->arg, j->status, j->msg, r);
  json_decref(r);
  free(j->buf);
  free(j);
}

static void on_file_closed(void *arg, int status, const orr_error *err,
                           json_t *result) {
  file_job *j = arg;

  (void)result;
  /* Closing flushes a written file, so its failure is the write's. */
  if (j->status == 0 && status != 0 && j->writing) {
    j->status = status;
    snprintf(j->msg, sizeof j->msg, "%s", err->msg);
  }
  file_end(j);
}

/* Closes the handle, then ends with status (0: success). */
static void file_close(file_job *j, int status, const char *msg) {
  uint64_t deadline = j->deadline;

  j->status = status;
  if (status != 0) {
    snprintf(j->msg, sizeof j->msg, "%s", msg);
    deadline = orr__guest_deadline(j->g, CLEANUP_MS);
  }
  orr__guest_send(j->g, "guest-file-close",
                  json_pack("{s:I}", "handle", j->handle), deadline, 0,
                  status != 0 ? ignore : on_file_closed,
                  status != 0 ? NULL : j);
  if (status != 0)
    file_end(j); /* the close's outcome would change nothing */
}

static void on_file_read(void *arg, int status, const orr_error *err,
                         json_t *result);
static void on_file_written(void *arg, int status, const orr_error *err,
                            json_t *result);

static void read_next(file_job *j) {
  orr__guest_send(
      j->g, "guest-file-read",
      json_pack("{s:I, s:i}", "handle", j->handle, "count", FILE_CHUNK),
      j->deadline, 0, on_file_read, j);
}

static void write_next(file_job *j) {
  size_t n = j->len - j->off < FILE_CHUNK ? j->len - j->off : FILE_CHUNK;
  char *b64 = orr__b64_encode(j->buf + j->off, n);

  if (b64 == NULL) {
    file_close(j, ORR_ENOMEM, "out of memory");
    return;
  }
  orr__guest_send(j->g, "guest-file-write",
                  json_pack("{s:I, s:s}", "handle", j->handle, "buf-b64", b64),
                  j->deadline, 0, on_file_written, j);
  free(b64);
}

static void on_file_read(void *arg, int status, const orr_error *err,
                         json_t *result) {
  file_job *j = arg;
  unsigned char *chunk;
  size_t n;
  char msg[400];

  if (status != 0) {
    file_close(j, status, err->msg);
    return;
  }
  chunk = decode_member(result, "buf-b64", &n);
  if (chunk == NULL) {
    snprintf(msg, sizeof msg, "read_file: %s: the agent's data is not base64",
             j->path);
    file_close(j, ORR_EIO, msg);
    return;
  }
  if (j->len + n > FILE_MAX) {
    free(chunk);
    snprintf(msg, sizeof msg,
             "read_file: %s is larger than the %d MiB read_file reads", j->path,
             FILE_MAX / (1024 * 1024));
    file_close(j, ORR_EINVAL, msg);
    return;
  }
  if (j->len + n > j->cap) {
    size_t cap = j->cap ? j->cap : 4096;
    unsigned char *p;
    while (cap < j->len + n)
      cap *= 2;
    p = realloc(j->buf, cap);
    if (p == NULL) {
      free(chunk);
      file_close(j, ORR_ENOMEM, "out of memory");
      return;
    }
    j->buf = p;
    j->cap = cap;
  }
  if (n > 0)
    memcpy(j->buf + j->len, chunk, n);
  j->len += n;
  free(chunk);
  /* Some files (/proc, /sys) give short reads long before their end, so
  ** only "eof" or an empty read ends the file. */
  if (json_is_true(json_object_get(result, "eof")) || n == 0)
    file_close(j, 0, NULL);
  else
    read_next(j);
}

static void on_file_written(void *arg, int status, const orr_error *err,
                            json_t *result) {
  file_job *j = arg;
  json_int_t n = json_integer_value(json_object_get(result, "count"));
  char msg[400];

  if (status != 0) {
    file_close(j, status, err->msg);
    return;
  }
  if (n <= 0 || (size_t)n > j->len - j->off) {
    snprintf(msg, sizeof msg,
             "write_file: %s: the agent wrote %" JSON_INTEGER_FORMAT
             " bytes of %zu",
             j->path, n, j->len - j->off);
    file_close(j, ORR_EIO, msg);
    return;
  }
  j->off += (size_t)n;
  if (j->off < j->len)
    write_next(j);
  else
    file_close(j, 0, NULL);
}

static void on_file_opened(void *arg, int status, const orr_error *err,
                           json_t *result) {
  file_job *j = arg;

  if (status != 0 || !json_is_integer(result)) {
    j->status = status != 0 ? status : ORR_EIO;
    snprintf(j->msg, sizeof j->msg, "%s",
             status != 0 ? err->msg
                         : "guest-file-open: the agent's answer has no handle");
    file_end(j);
    return;
  }
  j->handle = json_integer_value(result);
  if (!j->writing)
    read_next(j);
  else if (j->len > 0)
    write_next(j);
  else
    file_close(j, 0, NULL);
}

static void file_start(orr_guest *g, file_job *j, const char *path,
                       uint64_t timeout_ms) {
  j->g = g;
  j->deadline = orr__guest_deadline(g, timeout_ms);
  snprintf(j->path, sizeof j->path, "%s", path);
  orr__guest_send(
      g, "guest-file-open",
      json_pack("{s:s, s:s}", "path", path, "mode", j->writing ? "w" : "r"),
      j->deadline, 0, on_file_opened, j);
}

static int check_path(orr_guest *g, const char *op, const char *path,
                      orr_vm_cb cb, void *arg) {
  char msg[128];

  if (path != NULL && path[0] == '/')
    return 0;
  snprintf(msg, sizeof msg, "%s: path must be an absolute guest path", op);
  orr__guest_fail(g, ORR_EINVAL, msg, cb, arg);
  return -1;
}

void orr_guest_read_file(orr_guest *g, const char *path, uint64_t timeout_ms,
                         orr_vm_cb cb, void *arg) {
  file_job *j;

  if (check_path(g, "read_file", path, cb, arg) != 0)
    return;
  j = calloc(1, sizeof *j);
  if (j == NULL) {
    orr__guest_fail(g, ORR_ENOMEM, "out of memory", cb, arg);
    return;
  }
  j->cb = cb;
  j->arg = arg;
  file_start(g, j, path, timeout_ms);
}

void orr_guest_write_file(orr_guest *g, const char *path, const void *data,
                          size_t len, uint64_t timeout_ms, orr_vm_cb cb,
                          void *arg) {
  file_job *j;

  if (check_path(g, "write_file", path, cb, arg) != 0)
    return;
  j = calloc(1, sizeof *j);
  if (j != NULL && len > 0 && (j->buf = malloc(len)) == NULL) {
    free(j);
    j = NULL;
  }
  if (j == NULL) {
    orr__guest_fail(g, ORR_ENOMEM, "out of memory", cb, arg);
    return;
  }
  if (len > 0)
    memcpy(j->buf, data, len);
  j->len = len;
  j->writing = 1;
  j->cb = cb;
  j->arg = arg;
  file_start(g, j, path, timeout_ms);
}

/* ---- Facts -------------------------------------------------------------- */

void orr_guest_os_info(orr_guest *g, uint64_t timeout_ms, orr_vm_cb cb,
                       void *arg) {
  orr_guest_command(g, "guest-get-osinfo", NULL, timeout_ms, cb, arg);
}

void orr_guest_interfaces(orr_guest *g, uint64_t timeout_ms, orr_vm_cb cb,
                          void *arg) {
  orr_guest_command(g, "guest-network-get-interfaces", NULL, timeout_ms, cb,
                    arg);
}

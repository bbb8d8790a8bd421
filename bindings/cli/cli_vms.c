/*
** Operating VMs from the shell: `orrery ps` lists the VMs under the runtime
** root; `orrery console ID`, `orrery stop ID` and `orrery kill ID` act on
** one. Acting takes the VM the way orrery.open does (the exclusive lock on
** its runtime directory: one owner at a time), so they work on a VM that
** outlived its engine and are refused (EBUSY, naming the engine's pid) on
** one an engine holds. ps only reads: the directory, the pidfile,
** state.json, /proc and /proc/locks; it takes no lock and sends nothing.
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "orrery/vm.h"

/* ---- orrery ps ---------------------------------------------------------- */

static const char ps_help[] =
    "usage: %s ps [--json]\n"
    "\n"
    "Lists the VMs under the runtime root (ORRERY_RUNTIME_DIR, ...): ID,\n"
    "STATE (running, stopped: its QEMU is signal-stopped, gone: a stale\n"
    "directory), PID (QEMU's), UPTIME, OWNER (the document's), ENGINE (the\n"
    "pid of the engine process that holds it, - for none) and KEPT (yes: it\n"
    "outlives its engine, ShouldTerminateOnLastHandleClosed = false).\n"
    "\n"
    "  --json      one JSON array of {Id, State, ProcessId, UptimeSeconds,\n"
    "              Owner, EnginePid, Kept, RuntimeDirectory}\n"
    "  -h, --help  this help\n"
    "\n"
    "exit codes: 0 listed (also when there is nothing), 2 usage error\n";

/* The text of a small file below dir, or NULL. */
static char *read_small(int dirfd, const char *name, size_t max) {
  int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  char *buf;
  ssize_t n;
  if (fd < 0)
    return NULL;
  buf = malloc(max + 1);
  n = buf != NULL ? read(fd, buf, max) : -1;
  close(fd);
  if (n < 0) {
    free(buf);
    return NULL;
  }
  buf[n] = '\0';
  return buf;
}

/* The pid of the process holding an flock on the inode (from /proc/locks),
** or 0. */
static long lock_holder(const struct stat *st) {
  FILE *f = fopen("/proc/locks", "re");
  char line[256];
  long pid = 0;
  if (f == NULL)
    return 0;
  while (fgets(line, sizeof line, f) != NULL) {
    char kind[16], mode[16], rw[16];
    long p;
    unsigned maj, min;
    unsigned long long ino;
    if (sscanf(line, "%*d: %15s %15s %15s %ld %x:%x:%llu", kind, mode, rw, &p,
               &maj, &min, &ino) == 7 &&
        strcmp(kind, "FLOCK") == 0 && ino == (unsigned long long)st->st_ino &&
        makedev(maj, min) == st->st_dev) {
      pid = p;
      break;
    }
  }
  fclose(f);
  return pid;
}

/* Process state letter and start time (clock ticks after boot) of pid;
** 0 when it is gone. */
static char proc_state(long pid, unsigned long long *start) {
  char path[64], buf[1024], *p, st = 0;
  FILE *f;
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  if ((f = fopen(path, "re")) == NULL)
    return 0;
  if (fgets(buf, sizeof buf, f) != NULL && (p = strrchr(buf, ')')) != NULL)
    sscanf(p + 2,
           "%c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d "
           "%*d %*d %*d %*d %llu",
           &st, start);
  fclose(f);
  return st;
}

static double uptime_of(unsigned long long start) {
  FILE *f = fopen("/proc/uptime", "re");
  double up = 0;
  long hz = sysconf(_SC_CLK_TCK);
  if (f != NULL) {
    if (fscanf(f, "%lf", &up) != 1)
      up = 0;
    fclose(f);
  }
  if (hz <= 0)
    hz = 100;
  up -= (double)start / (double)hz;
  return up > 0 ? up : 0;
}

static json_t *describe(const char *root, const char *id) {
  char dir[4096], *pidtext, *state;
  int dfd;
  struct stat st;
  long pid = 0, engine;
  unsigned long long start = 0;
  char pst;
  const char *owner = NULL, *vstate;
  json_t *sj = NULL, *out;
  snprintf(dir, sizeof dir, "%s/%s", root, id);
  dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (dfd < 0 || fstat(dfd, &st) != 0 || st.st_uid != geteuid()) {
    if (dfd >= 0)
      close(dfd);
    return NULL; /* not a VM directory of ours */
  }
  pidtext = read_small(dfd, "qemu.pid", 64);
  state = read_small(dfd, ORR_VM_STATE_FILE, 16 * 1024 * 1024);
  if (pidtext != NULL)
    pid = strtol(pidtext, NULL, 10);
  if (state != NULL) {
    sj = json_loads(state, 0, NULL);
    if (pid <= 0)
      pid = (long)json_integer_value(json_object_get(sj, "ProcessId"));
    owner = json_string_value(
        json_object_get(json_object_get(sj, "Document"), "Owner"));
  }
  if (pidtext == NULL && state == NULL) {
    close(dfd);
    return NULL; /* nothing of a VM (yet) */
  }
  engine = lock_holder(&st);
  pst = pid > 0 ? proc_state(pid, &start) : 0;
  vstate = pst == 0                   ? "gone"
           : pst == 'T' || pst == 't' ? "stopped"
           : pst == 'Z'               ? "gone"
                                      : "running";
  out = json_pack("{s:s, s:s, s:I, s:f, s:s?, s:I, s:b, s:s}", "Id", id,
                  "State", vstate, "ProcessId", (json_int_t)pid,
                  "UptimeSeconds", pst ? uptime_of(start) : 0.0, "Owner", owner,
                  "EnginePid", (json_int_t)engine, "Kept", state != NULL,
                  "RuntimeDirectory", dir);
  json_decref(sj);
  free(pidtext);
  free(state);
  close(dfd);
  return out;
}

static int by_id(const void *a, const void *b) {
  return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "Id")),
                json_string_value(json_object_get(*(json_t *const *)b, "Id")));
}

static void uptime_text(double s, char *buf, size_t len) {
  long t = (long)s;
  if (t < 60)
    snprintf(buf, len, "%lds", t);
  else if (t < 3600)
    snprintf(buf, len, "%ldm%02lds", t / 60, t % 60);
  else if (t < 86400)
    snprintf(buf, len, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
  else
    snprintf(buf, len, "%ldd%02ldh", t / 86400, (t % 86400) / 3600);
}

int orr_cli_ps(int argc, char **argv) {
  int json = 0, done, first, rc;
  const orr_cli_flag flags[] = {{"json", &json}, {NULL, NULL}};
  char root[512];
  DIR *d;
  struct dirent *de;
  json_t *list, **items;
  size_t n, i;
  rc = orr_cli_parse_flags("ps", argc, argv, flags, ps_help, &done, &first);
  if (rc != ORR_EXIT_OK || done)
    return rc;
  if (first < argc)
    return orr_cli_usage_error("ps", "unknown argument %s", argv[first]);
  list = json_array(); /* only now: the returns above would leak it */
  orr_runtime_root(root, sizeof root);
  if ((d = opendir(root)) != NULL) {
    while ((de = readdir(d)) != NULL) {
      json_t *vm;
      if (de->d_name[0] == '.')
        continue;
      if ((vm = describe(root, de->d_name)) != NULL)
        json_array_append_new(list, vm);
    }
    closedir(d);
  }
  n = json_array_size(list);
  items = calloc(n + 1, sizeof *items);
  for (i = 0; i < n; i++)
    items[i] = json_array_get(list, i);
  qsort(items, n, sizeof *items, by_id);
  if (json) {
    json_t *sorted = json_array();
    char *text;
    for (i = 0; i < n; i++)
      json_array_append(sorted, items[i]);
    text = json_dumps(sorted, JSON_INDENT(2));
    printf("%s\n", text);
    free(text);
    json_decref(sorted);
  } else {
    printf("%-24s %-8s %8s %8s %-12s %7s %s\n", "ID", "STATE", "PID", "UPTIME",
           "OWNER", "ENGINE", "KEPT");
    for (i = 0; i < n; i++) {
      json_t *v = items[i];
      char up[32], eng[24];
      json_int_t e = json_integer_value(json_object_get(v, "EnginePid"));
      const char *owner = json_string_value(json_object_get(v, "Owner"));
      uptime_text(json_real_value(json_object_get(v, "UptimeSeconds")), up,
                  sizeof up);
      snprintf(eng, sizeof eng, e > 0 ? "%" JSON_INTEGER_FORMAT : "-", e);
      printf("%-24s %-8s %8" JSON_INTEGER_FORMAT " %8s %-12s %7s %s\n",
             json_string_value(json_object_get(v, "Id")),
             json_string_value(json_object_get(v, "State")),
             json_integer_value(json_object_get(v, "ProcessId")), up,
             owner != NULL && owner[0] ? owner : "-", eng,
             json_is_true(json_object_get(v, "Kept")) ? "yes" : "no");
    }
  }
  free(items);
  json_decref(list);
  return ORR_EXIT_OK;
}

/* ---- Taking one VM ------------------------------------------------------ */

typedef struct {
  int done;
  int status;
  orr_error err;
  json_t *result;
} waitv;

static void on_done(void *arg, int status, const orr_error *err,
                    json_t *result) {
  waitv *w = arg;
  w->done = 1;
  w->status = status;
  if (status != 0)
    w->err = *err;
  w->result = json_incref(result);
}

static void run_until(uv_loop_t *loop, waitv *w) {
  while (!w->done)
    if (uv_run(loop, UV_RUN_ONCE) == 0 && !w->done)
      break;
}

/* Says how a stop or kill ended (the exit's Reason) or why it failed, and
** lets go of the result; nonzero when it failed. */
static int report_end(const char *cmd, const char *id, waitv *w) {
  int failed = w->status != 0;
  if (failed)
    fprintf(stderr, "%s %s: %s: %s\n", orr_cli_progname, cmd,
            orr_err_name(w->status), w->err.msg);
  else
    printf("%s: %s\n", id,
           json_string_value(json_object_get(w->result, "Reason")));
  json_decref(w->result);
  w->result = NULL;
  return failed;
}

/* Opens VM id as orrery.open does; on failure says why (with the engine
** that holds it, for EBUSY) and returns NULL. qmp_ms: how long QEMU has
** to greet (0: the default). unanswered (may be NULL) takes, instead of
** the message, a failure after the VM was found, locked and its process
** proved: QEMU did not answer QMP (ETIMEDOUT, or its monitor closed: EIO,
** EVMGONE), the case kill and stop then end by its pid. */
static orr_vm *take(const char *cmd, orr_engine *eng, const char *id,
                    uint64_t qmp_ms, orr_error *unanswered) {
  orr_vm_options o;
  orr_vm *vm = NULL;
  orr_error e = {0, ""};
  waitv w = {0};
  orr_vm_options_init(&o);
  o.timeout_ms = qmp_ms;
  if (orr_vm_open(eng, id, &o, on_done, &w, &vm, &e) != 0) {
    if (e.code == ORR_EBUSY) {
      char root[512], dir[1024];
      struct stat st;
      long holder = 0;
      orr_runtime_root(root, sizeof root);
      snprintf(dir, sizeof dir, "%s/%s", root, id);
      if (stat(dir, &st) == 0)
        holder = lock_holder(&st);
      fprintf(stderr, "%s %s: %s: %s%s%ld%s\n", orr_cli_progname, cmd,
              orr_err_name(e.code), e.msg, holder > 0 ? " (engine pid " : "",
              holder, holder > 0 ? "): stop it there" : "");
    } else {
      fprintf(stderr, "%s %s: %s: %s\n", orr_cli_progname, cmd,
              orr_err_name(e.code), e.msg);
    }
    return NULL;
  }
  run_until(orr_engine_loop(eng), &w);
  json_decref(w.result);
  if (w.status != 0) {
    if (unanswered != NULL &&
        (w.status == ORR_ETIMEDOUT || w.status == ORR_EVMGONE ||
         w.status == ORR_EIO)) {
      *unanswered = w.err;
      unanswered->code = w.status;
    } else {
      fprintf(stderr, "%s %s: %s: %s\n", orr_cli_progname, cmd,
              orr_err_name(w.status), w.err.msg);
    }
    orr_vm_close(vm);
    return NULL;
  }
  return vm;
}

/* Ends VM id by its pid, for a QEMU that did not answer QMP: a fresh
** engine (the failed open's has let go of the directory with it), and
** orr_vm_kill_id's proof before the signal. */
static int kill_unanswered(const char *cmd, const char *id,
                           const orr_error *why) {
  orr_engine *eng = NULL;
  orr_error e = {0, ""};
  waitv w = {0};
  int rc = ORR_EXIT_OK;
  fprintf(stderr, "%s %s: %s: %s; killing it by its pid\n", orr_cli_progname,
          cmd, orr_err_name(why->code), why->msg);
  if (orr_engine_new(NULL, &eng, &e) != 0) {
    fprintf(stderr, "%s %s: %s\n", orr_cli_progname, cmd, e.msg);
    return ORR_EXIT_FAIL;
  }
  if (orr_vm_kill_id(eng, id, NULL, on_done, &w, &e) != 0) {
    w.status = e.code;
    w.err = e;
  } else {
    run_until(orr_engine_loop(eng), &w);
  }
  if (report_end(cmd, id, &w) != 0)
    rc = ORR_EXIT_FAIL;
  orr_engine_free(eng);
  return rc;
}

static const char stop_help[] =
    "usage: %s stop [--timeout=SECONDS] ID\n"
    "\n"
    "Shuts VM ID down: ACPI power-down, and when the guest has not powered\n"
    "off within the timeout (default 30 s), as `kill`. Takes the VM as\n"
    "orrery.open does: a VM another engine holds is refused (EBUSY). A\n"
    "QEMU that does not answer QMP (within 10 s) cannot power down: it is\n"
    "killed by its proved pid as `kill` does.\n"
    "\n"
    "  --timeout=SECONDS  how long the guest has to power off\n"
    "  -h, --help         this help\n"
    "\n"
    "exit codes: 0 stopped, 1 failed (no such VM, held elsewhere, ...),\n"
    "2 usage error\n";

static const char kill_help[] =
    "usage: %s kill ID\n"
    "\n"
    "Terminates VM ID at once: QMP quit, then SIGKILL 3 s later if QEMU\n"
    "has not exited. Takes the VM as orrery.open does: a VM another engine\n"
    "holds is refused (EBUSY). A QEMU that does not answer QMP within 3 s\n"
    "(stopped, hung) is sent SIGKILL by its pid, once its pid is proved to\n"
    "be the VM's QEMU (start time, owner, command line; a pid reused by\n"
    "another process is refused, EPERM).\n"
    "\n"
    "  -h, --help  this help\n"
    "\n"
    "exit codes: 0 killed, 1 failed (no such VM, held elsewhere, ...),\n"
    "2 usage error\n";

static int end_vm(const char *cmd, int argc, char **argv, int stop) {
  static const struct option longopts[] = {
      {"timeout", required_argument, NULL, 't'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  long timeout_s = 30;
  int c, rc = ORR_EXIT_OK;
  orr_engine *eng = NULL;
  orr_error e = {0, ""}, unanswered;
  orr_vm *vm;
  waitv w = {0};
  char *end;
  optind = 0;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "+:h", stop ? longopts : longopts + 1,
                          NULL)) != -1) {
    switch (c) {
    case 'h':
      printf(stop ? stop_help : kill_help, orr_cli_progname);
      return ORR_EXIT_OK;
    case 't':
      timeout_s = strtol(optarg, &end, 10);
      if (*optarg == '\0' || *end != '\0' || timeout_s <= 0 ||
          timeout_s > 86400)
        return orr_cli_usage_error(cmd,
                                   "--timeout must be 1..86400 seconds, got "
                                   "'%s'",
                                   optarg);
      break;
    case ':':
      return orr_cli_usage_error(cmd, "--timeout needs a number of seconds");
    default:
      return orr_cli_bad_option(cmd, argv, stop ? longopts : longopts + 1);
    }
  }
  if (optind != argc - 1)
    return orr_cli_usage_error(cmd, optind >= argc ? "missing ID"
                                                   : "one ID at a time");
  if (orr_engine_new(NULL, &eng, &e) != 0) {
    fprintf(stderr, "%s %s: %s\n", orr_cli_progname, cmd, e.msg);
    return ORR_EXIT_FAIL;
  }
  /* kill gives a QEMU that is alive 3 s to greet (as long as it gives one
  ** to obey quit); stop the default, as a slow greeting then costs the
  ** guest its orderly power-down. */
  unanswered.code = 0;
  if ((vm = take(cmd, eng, argv[optind], stop ? 0 : 3000, &unanswered)) ==
      NULL) {
    orr_engine_free(eng);
    return unanswered.code != 0
               ? kill_unanswered(cmd, argv[optind], &unanswered)
               : ORR_EXIT_FAIL;
  }
  if (stop)
    orr_vm_shutdown(vm, (uint64_t)timeout_s * 1000, on_done, &w);
  else
    orr_vm_terminate(vm, on_done, &w);
  run_until(orr_engine_loop(eng), &w);
  if (report_end(cmd, argv[optind], &w) != 0)
    rc = ORR_EXIT_FAIL;
  orr_vm_close(vm);
  orr_engine_free(eng);
  return rc;
}

int orr_cli_stop(int argc, char **argv) {
  return end_vm("stop", argc, argv, 1);
}

int orr_cli_kill(int argc, char **argv) {
  return end_vm("kill", argc, argv, 0);
}

/* ---- orrery console ----------------------------------------------------- */

static const char console_help[] =
    "usage: %s console ID\n"
    "\n"
    "Attaches the terminal to COM1 of VM ID: what the guest prints appears,\n"
    "what is typed goes to it. Ctrl-] detaches (the VM keeps running).\n"
    "Takes the VM as orrery.open does: a VM another engine holds is refused\n"
    "(EBUSY); while attached, no other engine can open it.\n"
    "\n"
    "  -h, --help  this help\n"
    "\n"
    "exit codes: 0 detached or the VM stopped, 1 failed, 2 usage error\n";

#define ESCAPE_KEY 0x1d /* Ctrl-] */

typedef struct {
  orr_vm *vm;
  uv_loop_t *loop;
  uv_tty_t tty;
  uv_pipe_t pipe;
  uv_stream_t *in;
  int finished;
  int exited;
  int warned;
  int write_only_once;
  char rbuf[4096];
} session;

static void on_console(void *arg, int port, const char *buf, size_t len) {
  (void)arg;
  if (port == 0) {
    ssize_t n = write(STDOUT_FILENO, buf, len);
    (void)n;
  }
}

static void on_vm_event(void *arg, orr_vm *vm, const char *event,
                        json_t *data) {
  session *s = arg;
  (void)vm;
  if (strcmp(event, "exit") == 0) {
    fprintf(stderr, "\r\n%s console: the VM stopped (%s)\r\n", orr_cli_progname,
            json_string_value(json_object_get(data, "Reason")));
    s->exited = 1;
    s->finished = 1;
  }
}

static void on_written(void *arg, int status, const orr_error *err,
                       json_t *result) {
  session *s = arg;
  (void)result;
  if (status != 0 && !s->warned) {
    s->warned = 1;
    fprintf(stderr, "\r\n%s console: typing does not reach COM1: %s\r\n",
            orr_cli_progname, err->msg);
  }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  session *s = h->data;
  (void)suggested;
  *buf = uv_buf_init(s->rbuf, sizeof s->rbuf);
}

static void on_input(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  session *s = st->data;
  char *esc;
  if (n < 0) {
    uv_read_stop(st);
    s->finished = 1; /* end of input: detach */
    return;
  }
  if (n == 0)
    return;
  esc = memchr(buf->base, ESCAPE_KEY, (size_t)n);
  if (esc != NULL) {
    n = esc - buf->base;
    s->finished = 1;
  }
  if (n > 0)
    orr_vm_console_write(s->vm, 0, buf->base, (size_t)n, 0, on_written, s);
}

int orr_cli_console(int argc, char **argv) {
  int done, first, rc = ORR_EXIT_OK;
  const orr_cli_flag flags[] = {{NULL, NULL}};
  orr_engine *eng = NULL;
  orr_error e = {0, ""};
  session s;
  struct termios saved, raw;
  int is_tty = isatty(STDIN_FILENO), raw_on = 0;
  rc = orr_cli_parse_flags("console", argc, argv, flags, console_help, &done,
                           &first);
  if (rc != ORR_EXIT_OK || done)
    return rc;
  if (first != argc - 1)
    return orr_cli_usage_error("console", first >= argc ? "missing ID"
                                                        : "one ID at a time");
  if (orr_engine_new(NULL, &eng, &e) != 0) {
    fprintf(stderr, "%s console: %s\n", orr_cli_progname, e.msg);
    return ORR_EXIT_FAIL;
  }
  memset(&s, 0, sizeof s);
  s.loop = orr_engine_loop(eng);
  if ((s.vm = take("console", eng, argv[first], 0, NULL)) == NULL) {
    orr_engine_free(eng);
    return ORR_EXIT_FAIL;
  }
  if (!orr_vm_console_has(s.vm, 0)) {
    fprintf(stderr,
            "%s console: VM %s has no COM1 the engine captures (it was "
            "started by an engine without console capture)\n",
            orr_cli_progname, argv[first]);
    orr_vm_close(s.vm);
    orr_engine_free(eng);
    return ORR_EXIT_FAIL;
  }
  orr_vm_on_event(s.vm, on_vm_event, &s);
  orr_vm_console_tap(s.vm, on_console, &s);
  /* Input from a terminal or a pipe; anything else (a file, /dev/null)
  ** has nothing to type: attaching ends at once. */
  if (is_tty && uv_tty_init(s.loop, &s.tty, STDIN_FILENO, 1) == 0) {
    s.in = (uv_stream_t *)&s.tty;
  } else if (!is_tty && uv_guess_handle(STDIN_FILENO) == UV_NAMED_PIPE &&
             uv_pipe_init(s.loop, &s.pipe, 0) == 0) {
    s.in = (uv_stream_t *)&s.pipe;
    if (uv_pipe_open(&s.pipe, STDIN_FILENO) != 0) {
      uv_close((uv_handle_t *)&s.pipe, NULL);
      s.in = NULL;
    }
  }
  if (s.in == NULL)
    s.finished = 1;
  else
    s.in->data = &s;
  fprintf(stderr, "Connected to COM1 of VM %s. Escape character is ^]\n",
          argv[first]);
  if (is_tty && tcgetattr(STDIN_FILENO, &saved) == 0) {
    raw = saved;
    cfmakeraw(&raw);
    raw_on = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
  }
  if (s.in != NULL)
    uv_read_start(s.in, on_alloc, on_input);
  while (!s.finished)
    if (uv_run(s.loop, UV_RUN_ONCE) == 0)
      break;
  if (raw_on)
    tcsetattr(STDIN_FILENO, TCSANOW, &saved);
  if (!s.exited)
    fprintf(stderr, "\n%s console: detached from VM %s (it keeps running)\n",
            orr_cli_progname, argv[first]);
  orr_vm_console_tap(s.vm, NULL, NULL);
  if (s.in != NULL) {
    uv_read_stop(s.in);
    uv_close((uv_handle_t *)s.in, NULL);
  }
  orr_vm_close(s.vm);
  orr_engine_free(eng);
  return rc;
}

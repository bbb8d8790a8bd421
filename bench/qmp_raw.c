/*
** The baseline of bench/scsi_bench.lua and bench/create_bench.lua: the
** smallest QMP client that does the job, with nothing between it and QEMU.
** A plain blocking unix socket, one JSON object per line, no event loop,
** no document, no bookkeeping. Built only with -DORR_BUILD_BENCH=ON.
**
**   qmp_raw SCRIPT -- QEMU-ARGV...
**
** Spawns QEMU with the argv given (its QMP socket is the path= of the
** "-chardev socket,id=qmp,..." argument), connects the moment the socket
** accepts (polling every 100 us: no client can do much better), reads the
** greeting, sends qmp_capabilities and prints "ready_ms N", the time from
** just before fork() to that answer. Then it runs SCRIPT, one item a line:
**
**   {"execute": ...}   send it and wait for its answer; a device_del also
**                      waits for the DEVICE_DELETED of its id, as a remove
**                      through the engine does
**   batch ... end      send every command in between at once, then wait
**                      for all their answers and, for each device_del, its
**                      DEVICE_DELETED
**   mark NAME          print "NAME N": milliseconds since the previous mark
**   sleep MS           sleep (untimed: the next mark starts after it)
**
** and finally sends quit and reaps QEMU. An error answer from QEMU ends the
** run with status 1: a benchmark must not time failures.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#define MAX_BATCH 256

static int sock = -1;
static FILE *in;
static long next_id = 1;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void die(const char *fmt, const char *what) {
  fprintf(stderr, "qmp_raw: ");
  fprintf(stderr, fmt, what);
  fputc('\n', stderr);
  exit(1);
}

static void send_line(json_t *cmd) {
  char *text = json_dumps(cmd, JSON_COMPACT);
  size_t n = strlen(text), off = 0;
  text = realloc(text, n + 2);
  text[n++] = '\n';
  while (off < n) {
    ssize_t w = write(sock, text + off, n - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      die("write: %s", strerror(errno));
    off += (size_t)w;
  }
  free(text);
}

/* Next message from QEMU (caller decrefs). */
static json_t *read_msg(void) {
  static char *line;
  static size_t cap;
  json_error_t err;
  json_t *m;
  if (getline(&line, &cap, in) < 0)
    die("QEMU closed the connection%s", "");
  if ((m = json_loads(line, 0, &err)) == NULL)
    die("unparsable line from QEMU: %s", line);
  return m;
}

/* Pending answers (by id) and DEVICE_DELETED events (by device id). */
typedef struct {
  long ids[MAX_BATCH];
  char *devs[MAX_BATCH];
  int nids, ndevs;
} waits;

static void expect_cmd(waits *w, json_t *cmd) {
  long id = next_id++;
  const char *ex = json_string_value(json_object_get(cmd, "execute"));
  if (w->nids == MAX_BATCH || w->ndevs == MAX_BATCH)
    die("more than %s commands in one batch", "256");
  json_object_set_new(cmd, "id", json_integer(id));
  w->ids[w->nids++] = id;
  if (ex && strcmp(ex, "device_del") == 0)
    w->devs[w->ndevs++] = strdup(json_string_value(
        json_object_get(json_object_get(cmd, "arguments"), "id")));
}

static void wait_all(waits *w) {
  while (w->nids > 0 || w->ndevs > 0) {
    json_t *m = read_msg();
    json_t *id = json_object_get(m, "id");
    if (json_object_get(m, "error")) {
      char *text = json_dumps(m, JSON_COMPACT);
      die("QEMU refused a command: %s", text);
    }
    if (id != NULL) {
      for (int i = 0; i < w->nids; i++)
        if (w->ids[i] == (long)json_integer_value(id)) {
          w->ids[i] = w->ids[--w->nids];
          break;
        }
    } else if (json_is_string(json_object_get(m, "event")) &&
               strcmp(json_string_value(json_object_get(m, "event")),
                      "DEVICE_DELETED") == 0) {
      const char *dev = json_string_value(
          json_object_get(json_object_get(m, "data"), "device"));
      for (int i = 0; dev && i < w->ndevs; i++)
        if (strcmp(w->devs[i], dev) == 0) {
          free(w->devs[i]);
          w->devs[i] = w->devs[--w->ndevs];
          break;
        }
    }
    json_decref(m);
  }
}

static void run_one(json_t *cmd) {
  waits w = {.nids = 0};
  expect_cmd(&w, cmd);
  send_line(cmd);
  wait_all(&w);
}

static const char *qmp_path(char **argv) {
  static char path[512];
  for (int i = 0; argv[i]; i++) {
    const char *p;
    if (strncmp(argv[i], "socket,id=qmp,", 14) != 0 ||
        (p = strstr(argv[i], "path=")) == NULL)
      continue;
    snprintf(path, sizeof path, "%s", p + 5);
    path[strcspn(path, ",")] = '\0';
    return path;
  }
  die("no -chardev socket,id=qmp,path=... in the argv%s", "");
  return NULL;
}

int main(int argc, char **argv) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  char **qargv = NULL, *line = NULL;
  size_t cap = 0;
  double t0, mark;
  pid_t pid;
  FILE *script;
  int status, batch = 0;
  waits w = {.nids = 0};
  json_t *m;

  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--") == 0 && i + 1 < argc)
      qargv = argv + i + 1;
  if (argc < 4 || qargv == NULL) {
    fprintf(stderr, "usage: %s SCRIPT -- QEMU-ARGV...\n", argv[0]);
    return 2;
  }
  if ((script = fopen(argv[1], "r")) == NULL)
    die("cannot open the script: %s", strerror(errno));
  if (strlen(qmp_path(qargv)) >= sizeof sa.sun_path)
    die("QMP socket path too long: %s", qmp_path(qargv));
  memcpy(sa.sun_path, qmp_path(qargv), strlen(qmp_path(qargv)) + 1);
  unlink(sa.sun_path);

  t0 = now_ms();
  if ((pid = fork()) == 0) {
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    execvp(qargv[0], qargv);
    _exit(127);
  }
  if (pid < 0)
    die("fork: %s", strerror(errno));
  for (;;) {
    struct timespec pause = {0, 100000};
    sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(sock, (struct sockaddr *)&sa, sizeof sa) == 0)
      break;
    close(sock);
    if (waitpid(pid, &status, WNOHANG) == pid)
      die("QEMU exited before its QMP socket accepted%s", "");
    if (now_ms() - t0 > 10000)
      die("no QMP socket at %s within 10 s", sa.sun_path);
    nanosleep(&pause, NULL);
  }
  in = fdopen(dup(sock), "r");
  json_decref(read_msg()); /* the greeting */
  run_one(json_pack("{s:s}", "execute", "qmp_capabilities"));
  mark = now_ms();
  printf("ready_ms %.3f\n", mark - t0);

  while (getline(&line, &cap, script) > 0) {
    line[strcspn(line, "\n")] = '\0';
    if (strncmp(line, "mark ", 5) == 0) {
      double t = now_ms();
      printf("%s %.3f\n", line + 5, t - mark);
      mark = now_ms();
    } else if (strncmp(line, "sleep ", 6) == 0) {
      long ms = atol(line + 6);
      struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
      nanosleep(&ts, NULL);
      mark = now_ms();
    } else if (strcmp(line, "batch") == 0) {
      batch = 1;
    } else if (strcmp(line, "end") == 0) {
      wait_all(&w);
      batch = 0;
    } else if (line[0] == '{') {
      json_error_t err;
      json_t *cmd = json_loads(line, 0, &err);
      if (cmd == NULL)
        die("bad script line: %s", line);
      if (batch) {
        expect_cmd(&w, cmd);
        send_line(cmd);
      } else {
        run_one(cmd);
      }
      json_decref(cmd);
    }
  }
  fflush(stdout);
  /* quit answers, then QEMU closes the socket and exits. */
  m = json_pack("{s:s}", "execute", "quit");
  send_line(m);
  json_decref(m);
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  return 0;
}

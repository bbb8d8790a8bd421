/*
** Choosing the accelerator. On some hosts /dev/kvm exists and QEMU accepts
** -accel kvm, yet Linux guests hang in early boot, so "auto" trusts KVM only
** after the default guest has actually booted under it once; the verdict
** is cached (format in orrery/accel.h). Without a verdict "auto" probes
** once, on the spot, since the answer cannot be known any other way.
*/
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The KVM probe boots QEMU itself, confined as every QEMU the engine runs. */
#include "backends/qemu_xlate.h"
#include "orrery/accel.h"
#include "orrery/guest_image.h"
#include "orrery/process.h"
#include "vm_internal.h"

#define PROBE_TIMEOUT_MS 15000
/* What a manifest without "ready_line" means. */
#define READY_MARKER "orrery-guest: ready"

extern char **environ;

/* ---- Small host facts --------------------------------------------------- */

int orr_find_program(const char *binary, char *buf, size_t size) {
  const char *path = getenv("PATH");
  if (strchr(binary, '/') != NULL) {
    if (access(binary, X_OK) != 0)
      return ORR_ENOENT;
    if (realpath(binary, buf) == NULL || strlen(buf) >= size)
      snprintf(buf, size, "%s", binary);
    return 0;
  }
  if (path == NULL)
    path = "/usr/local/bin:/usr/bin:/bin";
  while (*path) {
    size_t n = strcspn(path, ":");
    if (n > 0 && (int)n < (int)size - 2) {
      snprintf(buf, size, "%.*s/%s", (int)n, path, binary);
      if (access(buf, X_OK) == 0)
        return 0;
    }
    path += n;
    if (*path == ':')
      path++;
  }
  buf[0] = '\0';
  return ORR_ENOENT;
}

int orr_qemu_version(const char *binary, char *buf, size_t size, orr_error *e) {
  char out[512], *v;
  const char *argv[] = {binary, "--version", NULL};
  posix_spawn_file_actions_t fa;
  int fds[2], status = 0, rc;
  ssize_t n, len = 0;
  pid_t pid;
  if (pipe2(fds, O_CLOEXEC) != 0)
    return orr_error_set(e, ORR_EIO, "pipe: %s", strerror(errno));
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  rc = posix_spawnp(&pid, binary, &fa, NULL, (char *const *)argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    return orr_error_set(e, ORR_ENOENT, "cannot run %s: %s", binary,
                         strerror(rc));
  }
  while (len < (ssize_t)sizeof out - 1 &&
         ((n = read(fds[0], out + len, sizeof out - 1 - (size_t)len)) > 0 ||
          (n < 0 && errno == EINTR)))
    len += n > 0 ? n : 0;
  out[len] = '\0';
  close(fds[0]);
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  /* "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)" */
  v = strstr(out, "version ");
  if (v == NULL)
    return orr_error_set(e, ORR_EBACKEND, "%s --version printed no version",
                         binary);
  v += strlen("version ");
  snprintf(buf, size, "%.*s", (int)strcspn(v, " \n"), v);
  return 0;
}

static void kernel_release(char *buf, size_t size) {
  struct utsname u;
  snprintf(buf, size, "%s", uname(&u) == 0 ? u.release : "unknown");
}

static int kvm_usable(void) {
  return access("/dev/kvm", R_OK | W_OK) == 0;
}

/* ---- The cache ---------------------------------------------------------- */

void orr_kvm_verdict_path(char *buf, size_t size) {
  const char *cache = getenv("XDG_CACHE_HOME");
  const char *home = getenv("HOME");
  if (cache && cache[0] == '/')
    snprintf(buf, size, "%s/orrery/kvm-verdict", cache);
  else if (home && home[0] == '/')
    snprintf(buf, size, "%s/.cache/orrery/kvm-verdict", home);
  else if (size > 0)
    buf[0] = '\0';
}

static void copy_value(char *dst, size_t size, const char *line,
                       const char *key) {
  size_t k = strlen(key);
  if (strncmp(line, key, k) == 0 && line[k] == ' ')
    snprintf(dst, size, "%.*s", (int)strcspn(line + k + 1, "\n"), line + k + 1);
}

int orr_kvm_verdict_read(orr_kvm_verdict *v) {
  char path[512], line[512], kernel[128], mtime[32] = "";
  struct stat st;
  FILE *f;
  memset(v, 0, sizeof *v);
  orr_kvm_verdict_path(path, sizeof path);
  if (path[0] == '\0' || (f = fopen(path, "r")) == NULL)
    return ORR_ENOENT;
  if (fscanf(f, "%7s", v->verdict) != 1) {
    fclose(f);
    return ORR_ENOENT;
  }
  /* Anything but "kvm" is TCG: a damaged file must never enable KVM. */
  if (strcmp(v->verdict, "kvm") != 0)
    snprintf(v->verdict, sizeof v->verdict, "tcg");
  while (fgets(line, sizeof line, f) != NULL) {
    copy_value(v->qemu_version, sizeof v->qemu_version, line, "qemu_version");
    copy_value(v->qemu_path, sizeof v->qemu_path, line, "qemu_path");
    copy_value(mtime, sizeof mtime, line, "qemu_mtime");
    copy_value(v->kernel, sizeof v->kernel, line, "kernel");
    copy_value(v->date, sizeof v->date, line, "date");
    copy_value(v->reason, sizeof v->reason, line, "reason");
  }
  fclose(f);
  v->qemu_mtime = strtoll(mtime, NULL, 10);
  /* A one-word file (the first format) carries nothing to check. */
  kernel_release(kernel, sizeof kernel);
  if (v->kernel[0] && strcmp(v->kernel, kernel) != 0)
    return ORR_ESTATE;
  if (v->qemu_path[0] &&
      (stat(v->qemu_path, &st) != 0 || (long long)st.st_mtime != v->qemu_mtime))
    return ORR_ESTATE;
  return 0;
}

static int mkdirs(char *path) {
  for (char *p = path + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
      *p = '/';
      return -1;
    }
    *p = '/';
  }
  return 0;
}

/* Written to a temporary file and renamed, so concurrent probes (two specs
** starting at once) never leave a half-written verdict. */
static int write_verdict(const orr_kvm_verdict *v, orr_error *e) {
  char path[512], tmp[560];
  FILE *f;
  orr_kvm_verdict_path(path, sizeof path);
  if (path[0] == '\0')
    return orr_error_set(e, ORR_ENOENT, "no cache directory (set HOME)");
  snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
  if (mkdirs(tmp) != 0 || (f = fopen(tmp, "w")) == NULL)
    return orr_error_set(e, ORR_EIO, "cannot write %s: %s", tmp,
                         strerror(errno));
  fprintf(f,
          "%s\nqemu_version %s\nqemu_path %s\nqemu_mtime %lld\nkernel %s\n"
          "date %s\nreason %s\n",
          v->verdict, v->qemu_version, v->qemu_path, v->qemu_mtime, v->kernel,
          v->date, v->reason);
  if (fclose(f) != 0 || rename(tmp, path) != 0) {
    unlink(tmp);
    return orr_error_set(e, ORR_EIO, "cannot write %s: %s", path,
                         strerror(errno));
  }
  return 0;
}

/* ---- The probe ---------------------------------------------------------- */

typedef struct {
  orr_process *proc;
  uv_timer_t tick;
  uint64_t start, timeout_ms;
  const orr_kvm_probe_options *o;
  const char *ready_line;
  int ready, exited, closed;
  int64_t exit_status;
  int term_signal;
} probe;

static void on_probe_exit(void *arg, int64_t status, int sig) {
  probe *p = arg;
  p->exited = 1;
  p->exit_status = status;
  p->term_signal = sig;
}

static void on_probe_closed(void *arg) {
  ((probe *)arg)->closed++;
}

static void on_tick_closed(uv_handle_t *h) {
  on_probe_closed(h->data);
}

static void on_tick(uv_timer_t *t) {
  probe *p = t->data;
  char out[8192];
  uint64_t elapsed = uv_now(t->loop) - p->start;
  orr_process_output(p->proc, out, sizeof out);
  if (strstr(out, p->ready_line) != NULL)
    p->ready = 1;
  if (p->o->tick != NULL)
    p->o->tick(p->o->arg, elapsed);
  if (p->ready || p->exited || elapsed >= p->timeout_ms)
    uv_timer_stop(t);
}

/* The last line QEMU or the guest wrote, for the verdict's reason. */
static void last_line(const orr_process *proc, char *buf, size_t size) {
  char out[4096], *end, *start;
  orr_process_output(proc, out, sizeof out);
  end = out + strlen(out);
  while (end > out && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
    *--end = '\0';
  start = strrchr(out, '\n');
  start = start ? start + 1 : out;
  snprintf(buf, size, "%.120s", start);
}

static void iso_now(char *buf, size_t size) {
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The probe's guest: o->guest_dir, else the default guest. */
static int probe_guest(const char *dir, orr_guest_image *img, orr_error *e) {
  int rc = dir != NULL && dir[0] != '\0' ? orr_guest_image_load(dir, img, e)
                                         : orr_guest_image_default(img, e);
  if (rc == 0 && img->ready_line[0] == '\0')
    snprintf(img->ready_line, sizeof img->ready_line, "%s", READY_MARKER);
  return rc;
}

/* Boots the guest on a private loop; fills v->verdict and v->reason. */
static int boot(const orr_kvm_probe_options *o, const char *qemu,
                orr_kvm_verdict *v, orr_error *e) {
  orr_guest_image img;
  char line[160];
  /* Tests set ORRERY_PROBE_ACCEL=tcg to see the success path on a host
  ** where KVM cannot boot; nothing else should. */
  const char *accel = getenv("ORRERY_PROBE_ACCEL");
  int tcg = accel != NULL && strcmp(accel, "tcg") == 0;
  /* qboot: the firmware VMs boot this kernel with (qemu_argv.c). */
  const char *argv[] = {qemu,
                        "-accel",
                        tcg ? "tcg" : "kvm",
                        "-cpu",
                        tcg ? "max" : "host",
                        "-machine",
                        "q35",
                        "-m",
                        "512",
                        "-smp",
                        "1",
                        "-nodefaults",
                        "-no-user-config",
                        "-sandbox",
                        ORR_QEMU_SANDBOX,
                        "-display",
                        "none",
                        "-serial",
                        "stdio",
                        "-no-reboot",
                        "-bios",
                        "qboot.rom",
                        "-kernel",
                        img.kernel,
                        "-initrd",
                        img.initrd,
                        "-append",
                        img.cmdline,
                        NULL};
  orr_process_options po = {0};
  uv_loop_t loop;
  probe p;
  int rc;
  if ((rc = probe_guest(o->guest_dir, &img, e)) != 0)
    return rc;
  memset(&p, 0, sizeof p);
  p.o = o;
  p.ready_line = img.ready_line;
  /* The 15 s are for KVM; the test hook's TCG boot takes longer on a
  ** loaded host, and the hook is there to see the success path. */
  p.timeout_ms = o->timeout_ms ? o->timeout_ms
                 : tcg         ? 4 * PROBE_TIMEOUT_MS
                               : PROBE_TIMEOUT_MS;
  if (uv_loop_init(&loop) != 0)
    return orr_error_set(e, ORR_EIO, "probe: uv_loop_init failed");
  po.argv = argv;
  po.flags = ORR_PROCESS_KILL_WITH_PARENT;
  po.exit_cb = on_probe_exit;
  po.arg = &p;
  if ((rc = orr_process_spawn(&loop, &po, &p.proc, e)) != 0) {
    uv_loop_close(&loop);
    return rc;
  }
  uv_timer_init(&loop, &p.tick);
  p.tick.data = &p;
  p.start = uv_now(&loop);
  uv_timer_start(&p.tick, on_tick, 100, 100);
  while (uv_is_active((uv_handle_t *)&p.tick))
    uv_run(&loop, UV_RUN_ONCE);
  uv_update_time(&loop);
  if (p.ready) {
    snprintf(v->verdict, sizeof v->verdict, "kvm");
    snprintf(v->reason, sizeof v->reason,
             "the default guest was ready in %.1f s under %s",
             (double)(uv_now(&loop) - p.start) / 1000, tcg ? "TCG" : "KVM");
  } else {
    last_line(p.proc, line, sizeof line);
    snprintf(v->verdict, sizeof v->verdict, "tcg");
    if (p.exited)
      snprintf(v->reason, sizeof v->reason,
               "QEMU with -accel kvm exited (status %lld, signal %d) before "
               "the guest was ready: %s",
               (long long)p.exit_status, p.term_signal, line);
    else
      snprintf(v->reason, sizeof v->reason,
               "the default guest was not ready after %.0f s under KVM "
               "(last console line: %s)",
               (double)p.timeout_ms / 1000, line[0] ? line : "none");
  }
  /* Closing kills QEMU (SIGKILL) and reaps it. */
  orr_process_close(p.proc, on_probe_closed);
  uv_close((uv_handle_t *)&p.tick, on_tick_closed);
  while (p.closed < 2)
    uv_run(&loop, UV_RUN_ONCE);
  uv_run(&loop, UV_RUN_NOWAIT);
  if (uv_loop_close(&loop) != 0)
    fprintf(stderr, "orrery: kvm probe: loop still busy at close\n");
  return 0;
}

int orr_kvm_probe(const orr_kvm_probe_options *o, orr_kvm_verdict *v,
                  orr_error *e) {
  const char *binary = o->qemu_binary ? o->qemu_binary : "qemu-system-x86_64";
  struct stat st;
  int rc;
  memset(v, 0, sizeof *v);
  if (orr_find_program(binary, v->qemu_path, sizeof v->qemu_path) != 0)
    return orr_error_set(e, ORR_ENOENT, "%s not found in PATH", binary);
  if ((rc = orr_qemu_version(v->qemu_path, v->qemu_version,
                             sizeof v->qemu_version, e)) != 0)
    return rc;
  if (stat(v->qemu_path, &st) == 0)
    v->qemu_mtime = (long long)st.st_mtime;
  kernel_release(v->kernel, sizeof v->kernel);
  iso_now(v->date, sizeof v->date);
  if (!kvm_usable() && getenv("ORRERY_PROBE_ACCEL") == NULL) {
    snprintf(v->verdict, sizeof v->verdict, "tcg");
    snprintf(v->reason, sizeof v->reason,
             "/dev/kvm is missing or not read-write for this user");
  } else if ((rc = boot(o, v->qemu_path, v, e)) != 0) {
    return rc;
  }
  return o->write_cache ? write_verdict(v, e) : 0;
}

/* ---- accel = "auto" ----------------------------------------------------- */

/* No usable verdict: probe now, once, and say so (it takes seconds). */
static const char *probe_now(void) {
  orr_kvm_probe_options o = {0};
  orr_kvm_verdict v;
  orr_error e = {0, ""};
  char path[512];
  orr_kvm_verdict_path(path, sizeof path);
  o.write_cache = 1;
  fprintf(stderr,
          "orrery: accel \"auto\": checking once whether KVM boots the "
          "default guest (up to %d s; the verdict is cached in %s, `orrery "
          "doctor --refresh` redoes it)\n",
          PROBE_TIMEOUT_MS / 1000, path[0] ? path : "(nowhere)");
  fflush(stderr);
  if (orr_kvm_probe(&o, &v, &e) != 0) {
    /* No guest or no QEMU to probe with: TCG, uncached, and the create
    ** itself reports a missing QEMU in its own words. */
    return "tcg";
  }
  fprintf(stderr, "orrery: KVM verdict: %s (%s)\n", v.verdict, v.reason);
  fflush(stderr);
  return strcmp(v.verdict, "kvm") == 0 ? "kvm" : "tcg";
}

const char *orr__accel_resolve(const char *requested, int may_probe,
                               orr_error *e) {
  orr_kvm_verdict v;
  if (strcmp(requested, "tcg") == 0)
    return "tcg";
  if (strcmp(requested, "kvm") == 0) {
    if (!kvm_usable()) {
      orr_error_set(e, ORR_ENOTSUP,
                    "create: accel \"kvm\" needs read-write /dev/kvm");
      return NULL;
    }
    return "kvm";
  }
  if (strcmp(requested, "auto") != 0) {
    orr_error_set(e, ORR_EINVAL,
                  "create: accel must be \"auto\", \"kvm\" or \"tcg\", got "
                  "\"%s\"",
                  requested);
    return NULL;
  }
  if (!kvm_usable())
    return "tcg";
  if (orr_kvm_verdict_read(&v) == 0)
    return strcmp(v.verdict, "kvm") == 0 ? "kvm" : "tcg";
  return may_probe ? probe_now() : "tcg";
}

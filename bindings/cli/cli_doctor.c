/*
** `orrery doctor`: one line per host fact Orrery depends on, each with what
** to do when it is wrong. The KVM line is the real thing: whether the
** default guest boots under KVM (the probe behind accel = "auto"), from the
** cached verdict or, without one, by booting it now.
*/
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "orrery/accel.h"
#include "orrery/guest_image.h"
#include "orrery/vm.h"

/* The qemu backend's firmware (engine/src/backends/qemu_xlate.h). */
#define OVMF_CODE "/usr/share/OVMF/OVMF_CODE_4M.fd"
#define OVMF_VARS "/usr/share/OVMF/OVMF_VARS_4M.fd"

static const char doctor_help[] =
    "usage: %s doctor [--json] [--refresh]\n"
    "\n"
    "Checks the host, one line each (ok, warn or FAIL, and what to do):\n"
    "  qemu         the QEMU binary and its version\n"
    "  kvm          whether KVM really boots the default guest: the verdict\n"
    "               accel = \"auto\" uses, cached in\n"
    "               $XDG_CACHE_HOME/orrery/kvm-verdict (probed now when there\n"
    "               is none, or it predates a kernel or QEMU change)\n"
    "  guest        the embedded default guest (kernel, initramfs, cmdline)\n"
    "  ovmf         the UEFI firmware files (UEFI boot only)\n"
    "  runtime-dir  where VMs keep their sockets (must be private, 0700)\n"
    "  cgroup       a writable cgroup cpu controller (CPU limits)\n"
    "  vm-state     VMs that outlive their engine (in the runtime root):\n"
    "               whether each one's state.json still describes it\n"
    "  vhost-vsock  /dev/vhost-vsock (HvSocket services)\n"
    "  tap          /dev/net/tun (tap network adapters)\n"
    "\n"
    "options:\n"
    "  --json      the checks as JSON\n"
    "  --refresh   probe KVM again (boots the default guest, up to 15 s)\n"
    "  -h, --help  this help\n"
    "\n"
    "exit codes: 0 nothing failed (warnings allowed), 1 a check failed,\n"
    "2 usage error\n";

enum { OK, WARN, FAIL };
static const char *const status_names[] = {"ok", "warn", "FAIL"};

typedef struct {
  json_t *checks;  /* [{name, status, detail, fix}] */
  json_t *verdict; /* the KVM verdict, or NULL */
  int failed;
  int json;
} report;

static void add(report *r, const char *name, int status, const char *fix,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void add(report *r, const char *name, int status, const char *fix,
                const char *fmt, ...) {
  char detail[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  if (status == FAIL)
    r->failed++;
  json_array_append_new(
      r->checks, json_pack("{s:s, s:s, s:s, s:s?}", "name", name, "status",
                           status == OK     ? "ok"
                           : status == WARN ? "warn"
                                            : "fail",
                           "detail", detail, "fix", status == OK ? NULL : fix));
  if (!r->json) {
    printf("%-4s  %-11s  %s", status_names[status], name, detail);
    if (status != OK && fix != NULL)
      printf("; fix: %s", fix);
    printf("\n");
    fflush(stdout);
  }
}

static int rw(const char *path) {
  return access(path, R_OK | W_OK) == 0;
}

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static void check_qemu(report *r, char *path, size_t size) {
  char version[64];
  orr_error e = {0, ""};
  if (orr_find_program("qemu-system-x86_64", path, size) != 0) {
    add(r, "qemu", FAIL, "apt-get install qemu-system-x86",
        "qemu-system-x86_64 is not in PATH");
    return;
  }
  if (orr_qemu_version(path, version, sizeof version, &e) != 0) {
    add(r, "qemu", FAIL, "reinstall qemu-system-x86", "%s: %s", path, e.msg);
    return;
  }
  add(r, "qemu", OK, NULL, "%s, QEMU %s", path, version);
}

static void check_guest(report *r) {
  orr_guest_image img;
  orr_error e = {0, ""};
  if (orr_guest_image_default(&img, &e) != 0) {
    add(r, "guest", WARN,
        "apt-get install orrery-guest, or in a source tree `cmake --build "
        "build`",
        "%s (orrery.default_guest() and the KVM probe need one)", e.msg);
    return;
  }
  add(r, "guest", OK, NULL, "%s (%s%s%s)", img.dir, ORR_GUEST_MANIFEST,
      img.release[0] ? ", kernel " : "", img.release);
}

/* The spinner while the probe boots the guest (terminals only). */
static void probe_tick(void *arg, uint64_t ms) {
  static const char frames[] = "|/-\\";
  (void)arg;
  fprintf(stderr,
          "\r\033[K%c probing KVM: booting the default guest (%.0f s "
          "of at most 15)",
          frames[(ms / 100) % 4], (double)ms / 1000);
  fflush(stderr);
}

static void check_kvm(report *r, const char *qemu, int refresh) {
  char cache[512];
  orr_kvm_verdict v;
  orr_error e = {0, ""};
  int rc;
  orr_kvm_verdict_path(cache, sizeof cache);
  /* ORRERY_PROBE_ACCEL (a test hook, see accel.c) probes under another
  ** accelerator, so the probe's paths can be seen on a host without KVM. */
  int hooked = getenv("ORRERY_PROBE_ACCEL") != NULL;
  if (!hooked && !exists("/dev/kvm")) {
    add(r, "kvm", WARN,
        "enable virtualization (VT-x/AMD-V) and load kvm_intel or kvm_amd",
        "no /dev/kvm: VMs run on TCG (a few times slower)");
    return;
  }
  if (!hooked && !rw("/dev/kvm")) {
    add(r, "kvm", WARN, "add yourself to the kvm group and log in again",
        "/dev/kvm is not read-write for this user: VMs run on TCG");
    return;
  }
  rc = refresh ? ORR_ENOENT : orr_kvm_verdict_read(&v);
  if (rc != 0) {
    orr_kvm_probe_options o = {0};
    int tty = isatty(STDERR_FILENO);
    o.qemu_binary = qemu[0] ? qemu : NULL;
    o.write_cache = 1;
    if (tty) {
      o.tick = probe_tick;
    } else {
      fprintf(stderr,
              "%s doctor: probing KVM: booting the default guest "
              "(up to 15 s)\n",
              orr_cli_progname);
    }
    rc = orr_kvm_probe(&o, &v, &e);
    if (tty) {
      fputs("\r\033[K", stderr);
      fflush(stderr);
    }
    if (rc != 0) {
      add(r, "kvm", WARN, "build the default guest (cmake --build build)",
          "cannot probe KVM: %s; accel = \"auto\" uses TCG meanwhile", e.msg);
      return;
    }
  }
  r->verdict = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "verdict", v.verdict,
                         "reason", v.reason, "qemu_version", v.qemu_version,
                         "kernel", v.kernel, "date", v.date, "cache", cache);
  if (strcmp(v.verdict, "kvm") == 0)
    add(r, "kvm", OK, NULL,
        "KVM boots the default guest: accel = \"auto\" uses KVM (%s; "
        "verdict of %s, QEMU %s, kernel %s, in %s)",
        v.reason, v.date[0] ? v.date : "?", v.qemu_version, v.kernel, cache);
  else
    add(r, "kvm", WARN,
        "none needed, VMs work on TCG; `orrery doctor --refresh` probes "
        "again after a kernel or QEMU upgrade",
        "/dev/kvm is usable but %s: accel = \"auto\" uses TCG (verdict of "
        "%s, QEMU %s, kernel %s, in %s)",
        v.reason[0] ? v.reason : "KVM did not boot the guest",
        v.date[0] ? v.date : "?", v.qemu_version, v.kernel, cache);
}

static void check_ovmf(report *r) {
  if (access(OVMF_CODE, R_OK) != 0 || access(OVMF_VARS, R_OK) != 0)
    add(r, "ovmf", WARN, "apt-get install ovmf",
        "%s or %s is missing: UEFI boot (set_uefi_boot) cannot work", OVMF_CODE,
        OVMF_VARS);
  else
    add(r, "ovmf", OK, NULL, "%s, %s", OVMF_CODE, OVMF_VARS);
}

static void check_runtime(report *r) {
  char root[512], parent[512], *slash;
  const char *fix = "set ORRERY_RUNTIME_DIR to a short private directory";
  struct stat st;
  orr_runtime_root(root, sizeof root);
  /* A VM's QMP socket is <root>/<id>/qmp.sock in a 108-byte sun_path. */
  if (strlen(root) > 60) {
    add(r, "runtime-dir", WARN, fix,
        "%s is long: VM ids must stay under %d bytes to fit socket paths", root,
        (int)(98 - strlen(root)));
    return;
  }
  if (stat(root, &st) == 0) {
    if (!S_ISDIR(st.st_mode))
      add(r, "runtime-dir", FAIL, fix, "%s is not a directory", root);
    else if (st.st_uid != geteuid())
      add(r, "runtime-dir", FAIL, fix, "%s belongs to uid %u, not to you", root,
          (unsigned)st.st_uid);
    else if (!rw(root))
      add(r, "runtime-dir", FAIL, fix, "%s is not writable", root);
    else if ((st.st_mode & 077) != 0)
      add(r, "runtime-dir", WARN, "chmod 700 the directory",
          "%s is mode %03o: other users can reach VM sockets", root,
          (unsigned)(st.st_mode & 0777));
    else
      add(r, "runtime-dir", OK, NULL, "%s (0700, yours)", root);
    return;
  }
  snprintf(parent, sizeof parent, "%s", root);
  slash = strrchr(parent, '/');
  if (slash != NULL && slash != parent)
    *slash = '\0';
  if (access(parent, W_OK | X_OK) == 0)
    add(r, "runtime-dir", OK, NULL, "%s (created 0700 on first use)", root);
  else
    add(r, "runtime-dir", FAIL, fix, "cannot create %s: %s is not writable",
        root, parent);
}

/* A small file's first line, or "" (no such file). */
static void first_line(const char *path, char *buf, size_t size) {
  FILE *f = fopen(path, "r");
  buf[0] = '\0';
  if (f == NULL)
    return;
  if (fgets(buf, (int)size, f) == NULL)
    buf[0] = '\0';
  buf[strcspn(buf, "\n")] = '\0';
  fclose(f);
}

/* The VMs of this runtime root that outlive their engine: their QEMU runs
** and state.json describes them, unless the engine marked one whose last
** change could be neither written down nor rolled back. */
static void check_vm_state(report *r) {
  char root[512], path[1400], line[512], bad[1024] = "";
  struct dirent *ent;
  struct stat st;
  int kept = 0, behind = 0;
  DIR *d;
  orr_runtime_root(root, sizeof root);
  d = opendir(root);
  while (d && (ent = readdir(d)) != NULL) {
    int pid;
    if (ent->d_name[0] == '.')
      continue;
    snprintf(path, sizeof path, "%s/%s/" ORR_VM_STATE_FILE, root, ent->d_name);
    if (lstat(path, &st) != 0 || st.st_uid != geteuid())
      continue;
    snprintf(path, sizeof path, "%s/%s/qemu.pid", root, ent->d_name);
    first_line(path, line, sizeof line);
    pid = atoi(line);
    if (pid <= 0 || kill(pid, 0) != 0)
      continue; /* its QEMU is gone: the next engine sweeps it */
    kept++;
    snprintf(path, sizeof path, "%s/%s/" ORR_VM_NOT_DURABLE_FILE, root,
             ent->d_name);
    if (access(path, F_OK) == 0) {
      first_line(path, line, sizeof line);
      behind++;
      snprintf(bad + strlen(bad), sizeof bad - strlen(bad), "%sVM %s: %s",
               behind > 1 ? "; " : "", ent->d_name,
               line[0] ? line : "(no reason recorded)");
    }
  }
  if (d)
    closedir(d);
  if (behind > 0)
    add(r, "vm-state", WARN,
        "make room where the runtime directory is and change the VM again "
        "(the next write brings state.json up to date), or re-open it with "
        "orrery.open, which settles it from what QEMU reports",
        "%d of %d VMs that outlive their engine have a state on disk "
        "behind QEMU (not durable): %s",
        behind, kept, bad);
  else if (kept > 0)
    add(r, "vm-state", OK, NULL,
        "%d VM%s outlive%s their engine in %s, each state.json up to date",
        kept, kept == 1 ? "" : "s", kept == 1 ? "s" : "", root);
  else
    add(r, "vm-state", OK, NULL, "no VM in %s outlives its engine", root);
}

/* Creates and removes a group where the engine would put a VM's. */
static void check_cgroup(report *r) {
  const char *fix = "run as root or delegate the cpu controller to this user";
  const char *base, *knob;
  char group[256], test[320], file[400];
  int ok;
  if (exists("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")) {
    base = "/sys/fs/cgroup/cpu";
    knob = "cpu.cfs_quota_us";
  } else if (exists("/sys/fs/cgroup/cgroup.controllers")) {
    base = "/sys/fs/cgroup";
    knob = "cpu.max";
  } else {
    add(r, "cgroup", WARN, "mount the cgroup cpu controller",
        "no cgroup cpu controller at /sys/fs/cgroup: CPU limits (Limit, "
        "Weight) are refused");
    return;
  }
  snprintf(group, sizeof group, "%s/orrery", base);
  snprintf(test, sizeof test, "%s/doctor-%ld", group, (long)getpid());
  snprintf(file, sizeof file, "%s/%s", test, knob);
  ok = (mkdir(group, 0755) == 0 || errno == EEXIST) && mkdir(test, 0755) == 0;
  ok = ok && access(file, W_OK) == 0;
  rmdir(test);
  if (ok)
    add(r, "cgroup", OK, NULL, "%s is writable (%s): CPU limits work", group,
        knob);
  else
    add(r, "cgroup", WARN, fix,
        "cannot create a group with a writable %s under %s: CPU limits are "
        "refused",
        knob, group);
}

static void check_device(report *r, const char *name, const char *dev,
                         const char *what, const char *fix) {
  if (!exists(dev))
    add(r, name, WARN, fix, "%s is missing: %s", dev, what);
  else if (!rw(dev))
    add(r, name, WARN, "run as root or get read-write access to the device",
        "%s is not read-write for this user: %s", dev, what);
  else
    add(r, name, OK, NULL, "%s is read-write", dev);
}

int orr_cli_doctor(int argc, char **argv) {
  report r = {json_array(), NULL, 0, 0};
  char qemu[512] = "";
  int refresh = 0, done, first, rc;
  const orr_cli_flag flags[] = {
      {"json", &r.json}, {"refresh", &refresh}, {NULL, NULL}};
  rc = orr_cli_parse_flags("doctor", argc, argv, flags, doctor_help, &done,
                           &first);
  if (rc == ORR_EXIT_OK && !done && first < argc)
    rc = orr_cli_usage_error("doctor", "unknown argument %s", argv[first]);
  if (rc != ORR_EXIT_OK || done) {
    json_decref(r.checks);
    return rc;
  }
  check_qemu(&r, qemu, sizeof qemu);
  check_kvm(&r, qemu, refresh);
  check_guest(&r);
  check_ovmf(&r);
  check_runtime(&r);
  check_vm_state(&r);
  check_cgroup(&r);
  check_device(&r, "vhost-vsock", "/dev/vhost-vsock",
               "HvSocket services are refused (ENOTSUP)",
               "modprobe vhost_vsock");
  check_device(&r, "tap", "/dev/net/tun",
               "tap network adapters cannot be created", "modprobe tun");
  if (r.json) {
    json_t *out = json_pack("{s:b, s:O, s:O?}", "ok", r.failed == 0, "checks",
                            r.checks, "kvm_verdict", r.verdict);
    char *text = json_dumps(out, JSON_INDENT(2));
    printf("%s\n", text);
    free(text);
    json_decref(out);
  }
  json_decref(r.checks);
  json_decref(r.verdict);
  return r.failed ? ORR_EXIT_FAIL : ORR_EXIT_OK;
}

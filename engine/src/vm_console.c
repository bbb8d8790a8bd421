/*
** The console of a VM (orrery/vm.h): what its COM ports print, as the
** backend hands it over (orr__vm_console_data), cut into lines, kept in a
** ring per port and in console.log, emitted as "console" events, and
** waited on. How the bytes are captured is the backend's business.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orrery/log.h"
#include "vm_internal.h"

typedef struct waiter waiter;

typedef struct {
  bool on;
  char *ring[ORR_CONSOLE_RING_LINES];
  uint64_t next; /* the number of the next complete line */
  char partial[ORR_CONSOLE_LINE_MAX + 1];
  size_t plen;
} port_t;

struct waiter {
  waiter *next;
  orr_vm *vm; /* NULL once the waiter has been answered */
  int port;
  uint64_t next_seen;
  size_t plen_seen;
  uv_timer_t *timer;
  orr_vm_cb cb;
  void *arg;
  int status;
  orr_error err;
};

struct orr_vm_console {
  port_t ports[ORR_CONSOLE_PORTS];
  orr_vm_console_cb tap;
  void *tap_arg;
  int log_fd;
  off_t log_bytes;
  waiter *waiters;
};

static struct orr_vm_console *get(orr_vm *vm) {
  if (vm->console == NULL) {
    vm->console = calloc(1, sizeof *vm->console);
    if (vm->console != NULL)
      vm->console->log_fd = -1;
  }
  return vm->console;
}

static int log_open(orr_vm *vm, struct orr_vm_console *c) {
  struct stat st;
  int fd =
      vm->run_dir_fd >= 0
          ? openat(vm->run_dir_fd, ORR_VM_CONSOLE_LOG,
                   O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600)
          : -1;
  if (fd < 0) {
    char path[sizeof vm->run_dir + 16];
    snprintf(path, sizeof path, "%s/%s", vm->run_dir, ORR_VM_CONSOLE_LOG);
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW,
              0600);
  }
  if (fd < 0) {
    orr_log(ORR_LOG_WARN, "console", vm->id, "cannot open %s/%s: %s",
            vm->run_dir, ORR_VM_CONSOLE_LOG, strerror(errno));
    return -1;
  }
  c->log_fd = fd;
  c->log_bytes = fstat(fd, &st) == 0 ? st.st_size : 0;
  return 0;
}

void orr__vm_console_open(orr_vm *vm, unsigned ports) {
  struct orr_vm_console *c = get(vm);
  if (c == NULL)
    return;
  for (int i = 0; i < ORR_CONSOLE_PORTS; i++)
    c->ports[i].on = (ports >> i) & 1u;
  if (c->log_fd < 0 && ports != 0)
    log_open(vm, c);
}

/* console.log keeps at most ORR_CONSOLE_LOG_MAX bytes; the part before
** goes to console.log.1 (one generation: the file stays bounded). */
static void log_line(orr_vm *vm, struct orr_vm_console *c, int port,
                     const char *line, size_t len) {
  char prefix[16] = "";
  if (c->log_fd < 0)
    return;
  if (port > 0)
    snprintf(prefix, sizeof prefix, "COM%d: ", port + 1);
  if (c->log_bytes + (off_t)(len + 8) > ORR_CONSOLE_LOG_MAX) {
    char from[sizeof vm->run_dir + 16], to[sizeof vm->run_dir + 16];
    snprintf(from, sizeof from, "%s/%s", vm->run_dir, ORR_VM_CONSOLE_LOG);
    snprintf(to, sizeof to, "%s/%s.1", vm->run_dir, ORR_VM_CONSOLE_LOG);
    close(c->log_fd);
    c->log_fd = -1;
    if (rename(from, to) != 0 || log_open(vm, c) != 0)
      return;
  }
  /* One write per line: a reader never sees half of one. */
  {
    size_t pl = strlen(prefix);
    char *buf = malloc(pl + len + 1);
    ssize_t n;
    if (buf == NULL)
      return;
    memcpy(buf, prefix, pl);
    memcpy(buf + pl, line, len);
    buf[pl + len] = '\n';
    n = write(c->log_fd, buf, pl + len + 1);
    if (n > 0)
      c->log_bytes += n;
    free(buf);
  }
}

/* The timer's data is its waiter: both go once the handle is closed. */
static void waiter_closed(uv_handle_t *h) {
  free(h->data);
  free(h);
}

/* Answers w from the loop (never from inside the call that asked). */
static void waiter_deliver(void *arg) {
  waiter *w = arg;
  w->cb(w->arg, w->status, &w->err, NULL);
  if (w->timer != NULL)
    uv_close((uv_handle_t *)w->timer, waiter_closed);
  else
    free(w);
}

static void waiter_end(orr_vm *vm, waiter *w, int status, const char *msg) {
  struct orr_vm_console *c = vm->console;
  for (waiter **p = &c->waiters; *p != NULL; p = &(*p)->next)
    if (*p == w) {
      *p = w->next;
      break;
    }
  w->vm = NULL;
  w->status = status;
  w->err.code = status;
  snprintf(w->err.msg, sizeof w->err.msg, "%.*s", (int)sizeof w->err.msg - 1,
           msg ? msg : "");
  if (w->timer != NULL)
    uv_timer_stop(w->timer);
  orr__defer(vm->eng, waiter_deliver, w);
}

static void wake(orr_vm *vm, int port) {
  struct orr_vm_console *c = vm->console;
  waiter *w = c->waiters, *next;
  for (; w != NULL; w = next) {
    next = w->next;
    if (w->port == port && (c->ports[port].next > w->next_seen ||
                            c->ports[port].plen != w->plen_seen))
      waiter_end(vm, w, 0, NULL);
  }
}

static void add_line(orr_vm *vm, struct orr_vm_console *c, int port,
                     const char *line, size_t len) {
  port_t *p = &c->ports[port];
  char *copy = malloc(len + 1);
  json_t *ev;
  size_t slot = p->next % ORR_CONSOLE_RING_LINES;
  if (copy == NULL)
    return;
  memcpy(copy, line, len);
  copy[len] = '\0';
  free(p->ring[slot]);
  p->ring[slot] = copy;
  p->next++;
  log_line(vm, c, port, line, len);
  ev = json_pack("{s:i, s:s%}", "Port", port, "Line", line, len);
  if (ev == NULL) /* not UTF-8: the event carries it with its bytes mended */
    ev = json_pack("{s:i, s:s}", "Port", port, "Line", "(not UTF-8)");
  orr__vm_emit(vm, "console", ev);
  json_decref(ev);
}

void orr__vm_console_data(orr_vm *vm, int port, const char *buf, size_t len) {
  struct orr_vm_console *c = vm->console;
  port_t *p;
  bool any = false;
  if (c == NULL || port < 0 || port >= ORR_CONSOLE_PORTS || len == 0)
    return;
  if (c->tap != NULL && !vm->closed)
    c->tap(c->tap_arg, port, buf, len);
  p = &c->ports[port];
  for (size_t i = 0; i < len; i++) {
    char ch = buf[i];
    if (ch == '\r')
      continue; /* a terminal's line end is "\r\n" */
    if (ch == '\n') {
      add_line(vm, c, port, p->partial, p->plen);
      p->plen = 0;
      p->partial[0] = '\0';
      any = true;
      continue;
    }
    if (p->plen == ORR_CONSOLE_LINE_MAX) {
      add_line(vm, c, port, p->partial, p->plen);
      p->plen = 0;
    }
    p->partial[p->plen++] = ch;
    p->partial[p->plen] = '\0';
    any = true;
  }
  if (any)
    wake(vm, port);
}

void orr_vm_console_tap(orr_vm *vm, orr_vm_console_cb cb, void *arg) {
  struct orr_vm_console *c = get(vm);
  if (c == NULL)
    return;
  c->tap = cb;
  c->tap_arg = arg;
}

int orr_vm_console_has(const orr_vm *vm, int port) {
  return vm->console != NULL && port >= 0 && port < ORR_CONSOLE_PORTS &&
         vm->console->ports[port].on;
}

int orr_vm_console_line(const orr_vm *vm, int port, uint64_t seq,
                        const char **line, uint64_t *first) {
  const port_t *p;
  uint64_t oldest;
  if (!orr_vm_console_has(vm, port))
    return ORR_ENOENT;
  p = &vm->console->ports[port];
  oldest =
      p->next > ORR_CONSOLE_RING_LINES ? p->next - ORR_CONSOLE_RING_LINES : 0;
  if (first != NULL)
    *first = oldest;
  if (seq >= p->next)
    return 1;
  if (seq < oldest)
    return ORR_ENOENT;
  *line = p->ring[seq % ORR_CONSOLE_RING_LINES];
  return 0;
}

uint64_t orr_vm_console_next(const orr_vm *vm, int port) {
  return orr_vm_console_has(vm, port) ? vm->console->ports[port].next : 0;
}

const char *orr_vm_console_partial(const orr_vm *vm, int port) {
  return orr_vm_console_has(vm, port) ? vm->console->ports[port].partial : "";
}

/* "VM x is gone (why); last console lines: ..." as much as an orr_error
** holds (msg has ORR_CONSOLE_LINE_MAX bytes). */
static void gone_msg(const orr_vm *vm, char *msg) {
  size_t cap = sizeof(((orr_error *)0)->msg), n;
  snprintf(msg, cap, "VM %s is gone (%s)", vm->id, vm->exit_reason);
  n = strlen(msg);
  orr__vm_console_suffix(vm, msg + n, cap - n);
}

static void on_wait_timer(uv_timer_t *t) {
  waiter *w = t->data;
  char msg[160];
  if (w->vm == NULL)
    return;
  snprintf(msg, sizeof msg, "COM%d of VM %s printed nothing new in the time",
           w->port + 1, w->vm->id);
  waiter_end(w->vm, w, ORR_ETIMEDOUT, msg);
}

static void fail_soon(orr_vm *vm, orr_vm_cb cb, void *arg, int status,
                      const char *msg) {
  waiter *w = calloc(1, sizeof *w);
  if (w == NULL)
    return;
  w->cb = cb;
  w->arg = arg;
  w->status = w->err.code = status;
  snprintf(w->err.msg, sizeof w->err.msg, "%.*s", (int)sizeof w->err.msg - 1,
           msg);
  orr__defer(vm->eng, waiter_deliver, w);
}

void orr_vm_console_wait(orr_vm *vm, int port, uint64_t next,
                         size_t partial_len, uint64_t timeout_ms, orr_vm_cb cb,
                         void *arg) {
  struct orr_vm_console *c = vm->console;
  waiter *w;
  char msg[ORR_CONSOLE_LINE_MAX];
  if (!orr_vm_console_has(vm, port)) {
    snprintf(msg, sizeof msg,
             "console: VM %s has no COM%d it captures (ports 0..3 that the "
             "document names, and 0 always, on the qemu backend)",
             vm->id, port + 1);
    fail_soon(vm, cb, arg, ORR_ENOENT, msg);
    return;
  }
  if (vm->closed) {
    fail_soon(vm, cb, arg, ORR_ECANCELED, "console: the VM was closed");
    return;
  }
  w = calloc(1, sizeof *w);
  if (w == NULL) {
    fail_soon(vm, cb, arg, ORR_ENOMEM, "console: out of memory");
    return;
  }
  w->vm = vm;
  w->port = port;
  w->next_seen = next;
  w->plen_seen = partial_len;
  w->cb = cb;
  w->arg = arg;
  w->next = c->waiters;
  c->waiters = w;
  if (c->ports[port].next > next || c->ports[port].plen != partial_len) {
    waiter_end(vm, w, 0, NULL);
    return;
  }
  if (vm->exited) {
    gone_msg(vm, msg);
    waiter_end(vm, w, ORR_EVMGONE, msg);
    return;
  }
  if (timeout_ms > 0) {
    w->timer = malloc(sizeof *w->timer);
    if (w->timer != NULL) {
      uv_timer_init(vm->eng->loop, w->timer);
      w->timer->data = w;
      uv_timer_start(w->timer, on_wait_timer, timeout_ms, 0);
    }
  }
}

void orr_vm_console_write(orr_vm *vm, int port, const char *buf, size_t len,
                          uint64_t timeout_ms, orr_vm_cb cb, void *arg) {
  char msg[256];
  (void)timeout_ms;
  if (!orr_vm_console_has(vm, port) || vm->backend->console_write == NULL) {
    snprintf(msg, sizeof msg, "console: VM %s has no COM%d it captures", vm->id,
             port + 1);
    fail_soon(vm, cb, arg, ORR_ENOENT, msg);
    return;
  }
  if (vm->exited) {
    snprintf(msg, sizeof msg, "console: VM %s is gone (%s)", vm->id,
             vm->exit_reason);
    fail_soon(vm, cb, arg, ORR_EVMGONE, msg);
    return;
  }
  vm->backend->console_write(vm, port, buf, len, cb, arg);
}

/* Appends text to the growing buffer (b, n, cap); 0 or -1 (no memory). */
static int append(char **b, size_t *n, size_t *cap, const char *text) {
  size_t len = strlen(text);
  if (*n + len + 1 > *cap) {
    size_t ncap = (*n + len + 1) * 2;
    char *nb = realloc(*b, ncap);
    if (nb == NULL)
      return -1;
    *b = nb;
    *cap = ncap;
  }
  memcpy(*b + *n, text, len + 1);
  *n += len;
  return 0;
}

size_t orr_vm_console_tail(const orr_vm *vm, int lines, char *buf,
                           size_t size) {
  char *all = NULL;
  size_t n = 0, cap = 0, skip = 0;
  if (size == 0)
    return 0;
  buf[0] = '\0';
  if (vm->console == NULL || lines <= 0)
    return 0;
  for (int port = 0; port < ORR_CONSOLE_PORTS; port++) {
    const port_t *p = &vm->console->ports[port];
    uint64_t from;
    char prefix[16] = "";
    if (!p->on)
      continue;
    if (port > 0)
      snprintf(prefix, sizeof prefix, "COM%d: ", port + 1);
    from = p->next > (uint64_t)lines ? p->next - (uint64_t)lines : 0;
    if (p->next - from > ORR_CONSOLE_RING_LINES)
      from = p->next - ORR_CONSOLE_RING_LINES;
    for (uint64_t s = from; s <= p->next; s++) {
      const char *line =
          s < p->next ? p->ring[s % ORR_CONSOLE_RING_LINES] : p->partial;
      if (s == p->next && p->plen == 0)
        break;
      if ((n > 0 && append(&all, &n, &cap, "\n") != 0) ||
          append(&all, &n, &cap, prefix) != 0 ||
          append(&all, &n, &cap, line) != 0)
        break;
    }
  }
  if (all == NULL)
    return 0;
  /* The newest lines are the ones that matter: keep the end, from a line
  ** start. */
  if (n >= size) {
    const char *nl;
    skip = n - (size - 1);
    nl = memchr(all + skip, '\n', n - skip);
    if (nl != NULL && (size_t)(nl - all) + 1 < n)
      skip = (size_t)(nl - all) + 1;
  }
  memcpy(buf, all + skip, n - skip);
  buf[n - skip] = '\0';
  free(all);
  return n - skip;
}

size_t orr__vm_console_suffix(const orr_vm *vm, char *buf, size_t size) {
  static const char head[] = "; last console lines:\n";
  size_t n;
  if (size <= sizeof head) {
    if (size > 0)
      buf[0] = '\0';
    return 0;
  }
  n = orr_vm_console_tail(vm, 10, buf + sizeof head - 1,
                          size - (sizeof head - 1));
  if (n == 0) {
    buf[0] = '\0';
    return 0;
  }
  memcpy(buf, head, sizeof head - 1);
  return n + sizeof head - 1;
}

void orr__vm_console_exited(orr_vm *vm) {
  struct orr_vm_console *c;
  char msg[ORR_CONSOLE_LINE_MAX];
  if ((c = vm->console) == NULL)
    return;
  gone_msg(vm, msg);
  while (c->waiters != NULL)
    waiter_end(vm, c->waiters, ORR_EVMGONE, msg);
}

void orr__vm_console_cancel(orr_vm *vm) {
  if (vm->console == NULL)
    return;
  while (vm->console->waiters != NULL)
    waiter_end(vm, vm->console->waiters, ORR_ECANCELED,
               "console: the VM was closed");
}

void orr__vm_console_free(orr_vm *vm) {
  struct orr_vm_console *c = vm->console;
  if (c == NULL)
    return;
  orr__vm_console_cancel(vm);
  for (int i = 0; i < ORR_CONSOLE_PORTS; i++)
    for (int j = 0; j < ORR_CONSOLE_RING_LINES; j++)
      free(c->ports[i].ring[j]);
  if (c->log_fd >= 0)
    close(c->log_fd);
  free(c);
  vm->console = NULL;
}

/* vm:stats() lives here with the console: both are what the VM shows of
** itself, and both belong to the backend. */
void orr_vm_stats(orr_vm *vm, uint64_t timeout_ms, orr_vm_cb cb, void *arg) {
  char msg[200];
  if (vm->backend->stats == NULL) {
    snprintf(msg, sizeof msg,
             "stats: VM %s runs on the %s backend, which has "
             "no process to measure",
             vm->id, vm->backend->name);
    fail_soon(vm, cb, arg, ORR_ENOTSUP, msg);
    return;
  }
  if (vm->exited ||
      (vm->state != ORR_VM_RUNNING && vm->state != ORR_VM_PAUSED &&
       vm->state != ORR_VM_CREATED)) {
    snprintf(msg, sizeof msg, "stats: VM %s is %s", vm->id, orr_vm_state(vm));
    fail_soon(vm, cb, arg, vm->exited ? ORR_EVMGONE : ORR_ESTATE, msg);
    return;
  }
  vm->backend->stats(vm, timeout_ms, cb, arg);
}

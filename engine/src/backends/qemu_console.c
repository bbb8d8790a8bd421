/*
** The qemu backend's console capture. Each COM port's chardev writes a
** copy of everything the guest prints to its `logfile=`, whether or not a
** client is attached to the port's socket: that file is a FIFO in the
** runtime directory (com<N>.out) which the engine holds open for reading
** and writing (so QEMU's open never blocks, and a QEMU whose engine died
** gets EPIPE, which it ignores, instead of blocking). An engine that
** re-attaches opens the same FIFO and reads on. Input goes to the port's
** socket in the runtime directory (com<N>.sock, QEMU listening), for ports
** the document gives no socket of its own.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orrery/log.h"
#include "qemu_backend.h"

typedef struct pending pending;
struct pending {
  pending *next;
  uv_write_t req;
  char *buf;
  orr_vm_cb cb;
  void *arg;
  int status; /* refused before it was sent: the code; buf the message */
};

typedef struct {
  int n;
  struct orr_qemu_console *qc;
  bool on;
  bool piped; /* the document's own socket: no input from here */
  uv_pipe_t out;
  bool out_open;
  uv_pipe_t in;
  bool in_open;
  bool in_ready;
  bool in_failed;
  uv_connect_t conn;
  pending *queue; /* writes waiting for the connection */
  char rbuf[16384];
} cport;

struct orr_qemu_console {
  orr_vm *vm; /* NULL once released */
  int handles;
  cport ports[ORR_CONSOLE_PORTS];
};

unsigned orr__qemu_console_ports(const json_t *doc, unsigned *piped) {
  const json_t *ports = json_object_get(
      json_object_get(json_object_get(doc, "VirtualMachine"), "Devices"),
      "ComPorts");
  unsigned on = 1u; /* COM1 always */
  *piped = 0;
  for (int n = 0; n < ORR_CONSOLE_PORTS; n++) {
    char key[4];
    const json_t *p;
    snprintf(key, sizeof key, "%d", n);
    if ((p = json_object_get(ports, key)) == NULL)
      continue;
    on |= 1u << n;
    if (json_object_get(p, "NamedPipe") != NULL)
      *piped |= 1u << n;
  }
  return on;
}

static void closed(uv_handle_t *h) {
  struct orr_qemu_console *qc = h->data;
  if (--qc->handles == 0)
    free(qc);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  /* h->data is the console; the port is found from the handle's address. */
  struct orr_qemu_console *qc = h->data;
  (void)suggested;
  for (int i = 0; i < ORR_CONSOLE_PORTS; i++)
    if ((uv_handle_t *)&qc->ports[i].out == h ||
        (uv_handle_t *)&qc->ports[i].in == h) {
      *buf = uv_buf_init(qc->ports[i].rbuf, sizeof qc->ports[i].rbuf);
      return;
    }
  *buf = uv_buf_init(NULL, 0);
}

static void on_out(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  struct orr_qemu_console *qc = s->data;
  if (n > 0 && qc->vm != NULL) {
    for (int i = 0; i < ORR_CONSOLE_PORTS; i++)
      if ((uv_stream_t *)&qc->ports[i].out == s)
        orr__vm_console_data(qc->vm, i, buf->base, (size_t)n);
  } else if (n < 0 && n != UV_EAGAIN) {
    uv_read_stop(s);
  }
}

/* The socket echoes what the FIFO already gave: read and dropped, so QEMU
** never stalls on a full socket. */
static void on_in(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  (void)buf;
  if (n < 0 && n != UV_EAGAIN)
    uv_read_stop(s);
}

static int open_fifo(orr_vm *vm, int n, bool create, orr_error *e) {
  struct orr_qemu_console *qc = vm->qcon;
  cport *p = &qc->ports[n];
  char path[sizeof vm->run_dir + 16];
  int fd;
  snprintf(path, sizeof path, "%s/com%d.out", vm->run_dir, n);
  if (create) {
    unlink(path);
    if (mkfifo(path, 0600) != 0)
      return orr_error_set(e, ORR_EIO, "console: cannot make %s: %s", path,
                           strerror(errno));
  }
  fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (!create && errno == ENOENT)
      return 1; /* a VM an engine without console capture started */
    return orr_error_set(e, ORR_EIO, "console: cannot open %s: %s", path,
                         strerror(errno));
  }
  /* Room for a burst while the loop is busy (QEMU blocks on a full FIFO). */
  fcntl(fd, F_SETPIPE_SZ, 1024 * 1024);
  if (uv_pipe_init(vm->eng->loop, &p->out, 0) != 0) {
    close(fd);
    return orr_error_set(e, ORR_EIO, "console: uv_pipe_init failed");
  }
  p->out.data = qc;
  qc->handles++;
  p->out_open = true;
  if (uv_pipe_open(&p->out, fd) != 0 ||
      uv_read_start((uv_stream_t *)&p->out, on_alloc, on_out) != 0) {
    return orr_error_set(e, ORR_EIO, "console: cannot read %s", path);
  }
  return 0;
}

int orr__qemu_console_start(orr_vm *vm, bool create, orr_error *e) {
  struct orr_qemu_console *qc;
  unsigned piped, on = orr__qemu_console_ports(vm->doc, &piped), got = 0;
  int rc;
  if (vm->qcon != NULL)
    return 0;
  if ((qc = calloc(1, sizeof *qc)) == NULL)
    return orr_error_set(e, ORR_ENOMEM, "out of memory");
  qc->vm = vm;
  qc->handles = 1; /* ours, dropped at stop */
  vm->qcon = qc;
  for (int n = 0; n < ORR_CONSOLE_PORTS; n++) {
    cport *p = &qc->ports[n];
    p->n = n;
    p->qc = qc;
    if (!((on >> n) & 1u))
      continue;
    p->piped = (piped >> n) & 1u;
    rc = open_fifo(vm, n, create, e);
    if (rc < 0)
      return rc;
    if (rc == 0) {
      p->on = true;
      got |= 1u << n;
    }
  }
  orr__vm_console_open(vm, got);
  return 0;
}

static void fail_pending(pending *q, int status, const char *msg) {
  while (q != NULL) {
    pending *next = q->next;
    orr_error e = {status, ""};
    snprintf(e.msg, sizeof e.msg, "%s", msg);
    q->cb(q->arg, status, &e, NULL);
    free(q->buf);
    free(q);
    q = next;
  }
}

static void on_written(uv_write_t *req, int status) {
  pending *w = req->data;
  orr_error e = {0, ""};
  if (status < 0)
    orr_error_set(&e, ORR_EIO, "console: write failed: %s",
                  uv_strerror(status));
  w->cb(w->arg, status < 0 ? ORR_EIO : 0, &e, NULL);
  free(w->buf);
  free(w);
}

static void write_now(cport *p, pending *w) {
  uv_buf_t b = uv_buf_init(w->buf, (unsigned)strlen(w->buf));
  w->req.data = w;
  if (uv_write(&w->req, (uv_stream_t *)&p->in, &b, 1, on_written) != 0) {
    w->next = NULL;
    fail_pending(w, ORR_EIO, "console: write failed");
  }
}

static void on_connected(uv_connect_t *c, int status) {
  cport *p = c->data;
  pending *q = p->queue;
  p->queue = NULL;
  if (status < 0 || p->qc->vm == NULL) {
    char msg[200];
    p->in_failed = true;
    snprintf(msg, sizeof msg, "console: cannot connect to COM%d's socket: %s",
             p->n + 1, status < 0 ? uv_strerror(status) : "closed");
    fail_pending(q, status == UV_ECANCELED ? ORR_ECANCELED : ORR_EIO, msg);
    return;
  }
  p->in_ready = true;
  uv_read_start((uv_stream_t *)&p->in, on_alloc, on_in);
  while (q != NULL) {
    pending *next = q->next;
    write_now(p, q);
    q = next;
  }
}

static void deliver_later(void *arg) {
  pending *w = arg;
  w->next = NULL;
  fail_pending(w, w->status, w->buf);
}

void orr__qemu_console_write(orr_vm *vm, int port, const char *buf, size_t len,
                             orr_vm_cb cb, void *arg) {
  struct orr_qemu_console *qc = vm->qcon;
  cport *p = qc != NULL ? &qc->ports[port] : NULL;
  pending *w = calloc(1, sizeof *w);
  if (w == NULL || (w->buf = malloc(len + 1)) == NULL) {
    free(w);
    return;
  }
  memcpy(w->buf, buf, len);
  w->buf[len] = '\0';
  w->cb = cb;
  w->arg = arg;
  if (memchr(buf, '\0', len) != NULL || p == NULL || p->piped || p->in_failed) {
    /* Refused from the loop: the message replaces the bytes. */
    char msg[512];
    if (memchr(buf, '\0', len) != NULL)
      snprintf(msg, sizeof msg, "console: write: a NUL byte cannot be sent");
    else if (p != NULL && p->piped)
      snprintf(msg, sizeof msg,
               "console: COM%d of VM %s is served on the document's own "
               "socket (ComPorts.%d.NamedPipe): write to it there",
               port + 1, vm->id, port);
    else
      snprintf(msg, sizeof msg, "console: COM%d of VM %s cannot be written",
               port + 1, vm->id);
    free(w->buf);
    w->buf = strdup(msg);
    w->status = p != NULL && p->piped && memchr(buf, '\0', len) == NULL
                    ? ORR_ENOTSUP
                : memchr(buf, '\0', len) != NULL ? ORR_EINVAL
                                                 : ORR_EIO;
    orr__defer(vm->eng, deliver_later, w);
    return;
  }
  if (p->in_ready) {
    write_now(p, w);
    return;
  }
  {
    pending **tail = &p->queue; /* in the order they were asked */
    while (*tail != NULL)
      tail = &(*tail)->next;
    *tail = w;
  }
  if (!p->in_open) {
    char path[sizeof vm->run_dir + 16];
    snprintf(path, sizeof path, "%s/com%d.sock", vm->run_dir, port);
    uv_pipe_init(vm->eng->loop, &p->in, 0);
    p->in.data = qc;
    qc->handles++;
    p->in_open = true;
    p->conn.data = p;
    uv_pipe_connect(&p->conn, &p->in, path, on_connected);
  }
}

void orr__qemu_console_drain(orr_vm *vm) {
  struct orr_qemu_console *qc = vm->qcon;
  if (qc == NULL)
    return;
  for (int n = 0; n < ORR_CONSOLE_PORTS; n++) {
    cport *p = &qc->ports[n];
    uv_os_fd_t fd;
    char buf[16384];
    ssize_t got;
    if (!p->on || !p->out_open || uv_fileno((uv_handle_t *)&p->out, &fd) != 0)
      continue;
    while ((got = read(fd, buf, sizeof buf)) > 0)
      orr__vm_console_data(vm, n, buf, (size_t)got);
  }
}

void orr__qemu_console_stop(orr_vm *vm) {
  struct orr_qemu_console *qc = vm->qcon;
  if (qc == NULL)
    return;
  vm->qcon = NULL;
  qc->vm = NULL;
  for (int n = 0; n < ORR_CONSOLE_PORTS; n++) {
    cport *p = &qc->ports[n];
    if (p->out_open)
      uv_close((uv_handle_t *)&p->out, closed);
    if (p->in_open)
      uv_close((uv_handle_t *)&p->in, closed);
  }
  if (--qc->handles == 0)
    free(qc);
}

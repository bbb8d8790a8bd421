#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "orrery/process.h"

#define DEFAULT_OUTPUT_MAX (64u * 1024)

struct orr_process {
  uv_signal_t sigchld;
  uv_poll_t out_poll;
  int out_fd; /* read end of the child's stdout+stderr pipe, or -1 */
  pid_t pid;
  int reaped;
  int closing;
  int handles; /* uv handles not yet closed; p is freed when none are left */
  orr_process_exit_cb exit_cb;
  orr_process_close_cb close_cb;
  void *arg;
  char *ring; /* the last ring_cap bytes of output, oldest at ring_head */
  size_t ring_cap;
  size_t ring_head; /* where the next byte goes */
  size_t ring_len;
};

static void ring_append(orr_process *p, const char *data, size_t n) {
  if (n > p->ring_cap) {
    data += n - p->ring_cap;
    n = p->ring_cap;
  }
  while (n > 0) {
    size_t k = p->ring_cap - p->ring_head;

    if (k > n)
      k = n;
    memcpy(p->ring + p->ring_head, data, k);
    p->ring_head = (p->ring_head + k) % p->ring_cap;
    p->ring_len = p->ring_len + k > p->ring_cap ? p->ring_cap : p->ring_len + k;
    data += k;
    n -= k;
  }
}

size_t orr_process_output(const orr_process *p, char *buf, size_t size) {
  size_t n, start, first;

  if (size == 0)
    return 0;
  n = p->ring_len < size - 1 ? p->ring_len : size - 1;
  start = (p->ring_head + p->ring_cap - n) % p->ring_cap;
  first = p->ring_cap - start < n ? p->ring_cap - start : n;
  memcpy(buf, p->ring + start, first);
  memcpy(buf + first, p->ring, n - first);
  buf[n] = '\0';
  return n;
}

/* Reads whatever the pipe holds now. Plain read() on our own non-blocking
** fd (a uv_poll_t, not a uv_pipe_t) lets the exit path drain the pipe
** synchronously: once the child is dead, all it wrote is already there. */
static void read_output(orr_process *p) {
  char chunk[4096];
  ssize_t r;

  while (p->out_fd >= 0) {
    r = read(p->out_fd, chunk, sizeof chunk);
    if (r > 0) {
      ring_append(p, chunk, (size_t)r);
      continue;
    }
    if (r < 0 && errno == EINTR)
      continue;
    /* EOF or an error: either way nothing more will come. EAGAIN: later. */
    if (r == 0 || errno != EAGAIN)
      uv_poll_stop(&p->out_poll);
    return;
  }
}

static void on_output(uv_poll_t *h, int status, int events) {
  orr_process *p = h->data;

  (void)events;
  if (status < 0) {
    uv_poll_stop(h);
    return;
  }
  read_output(p);
}

static void on_handle_closed(uv_handle_t *h) {
  orr_process *p = h->data;

  if (--p->handles > 0)
    return;
  if (p->close_cb != NULL)
    p->close_cb(p->arg);
  free(p->ring);
  free(p);
}

/* Closes the handles once the child is reaped; frees p when they are. */
static void finish_close(orr_process *p) {
  if (!uv_is_closing((uv_handle_t *)&p->sigchld))
    uv_close((uv_handle_t *)&p->sigchld, on_handle_closed);
  if (p->out_fd >= 0) {
    /* uv_close() unregisters the fd from epoll synchronously; only then may
    ** it be closed, or a recycled fd number could be unregistered. */
    uv_close((uv_handle_t *)&p->out_poll, on_handle_closed);
    close(p->out_fd);
    p->out_fd = -1;
  }
}

static void on_sigchld(uv_signal_t *h, int signum) {
  orr_process *p = h->data;
  int64_t exit_status = 0;
  int term_signal = 0;
  int status = 0;
  pid_t r;

  (void)signum;
  if (p->reaped)
    return;
  /* Only our pid: libuv reaps its uv_spawn children the same way, and a
  ** waitpid(-1) here would steal them. */
  do
    r = waitpid(p->pid, &status, WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == 0)
    return; /* another child's SIGCHLD */
  if (r < 0) {
    /* ECHILD: someone else reaped it with waitpid(-1); the status is lost. */
    exit_status = -1;
  } else if (WIFEXITED(status)) {
    exit_status = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    term_signal = WTERMSIG(status);
  }
  p->reaped = 1;
  uv_signal_stop(&p->sigchld);
  read_output(p);
  /* Output from a grandchild that kept the pipe is not worth keeping the
  ** loop alive for. */
  if (p->out_fd >= 0)
    uv_poll_stop(&p->out_poll);

  if (p->closing)
    finish_close(p);
  else if (p->exit_cb != NULL)
    p->exit_cb(p->arg, exit_status, term_signal);
}

/* Keeps our pipe ends off 0..2, so the child's dup2() onto 0..2 can never
** clobber one of them before it is used. */
static int above_stdio(int fd) {
  int nfd;

  if (fd < 0 || fd > 2)
    return fd;
  nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  close(fd);
  return nfd;
}

/*
** In the child: inherit[i] becomes descriptor 3 + i. Each is first copied
** above every target number (a source or our error pipe may sit on a
** target), then moved down with dup2, which also clears close-on-exec on
** the new descriptor; the copies stay close-on-exec and vanish at exec.
*/
static int inherit_fds(const orr_process_options *o, int *err_fd) {
  int tmp[ORR_PROCESS_MAX_INHERIT], top = 3 + (int)o->ninherit;
  if ((*err_fd = fcntl(*err_fd, F_DUPFD_CLOEXEC, top)) < 0)
    return -1;
  for (size_t i = 0; i < o->ninherit; i++)
    if ((tmp[i] = fcntl(o->inherit[i], F_DUPFD_CLOEXEC, top)) < 0)
      return -1;
  for (size_t i = 0; i < o->ninherit; i++)
    if (dup2(tmp[i], 3 + (int)i) < 0)
      return -1;
  return 0;
}

/*
** Runs in the forked child: only async-signal-safe calls until exec, since
** other threads of the engine may have held locks at fork time. Never
** returns; a failure is reported to the parent as an errno on err_fd.
*/
static void child(const orr_process_options *o, pid_t parent, int null_fd,
                  int out_fd, int err_fd) {
  struct sigaction sa;
  sigset_t none;
  int err, n;

  /* The engine's handlers (libuv's write into a pipe the parent shares)
  ** must not run here; all signals stay blocked until this is done. */
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  for (n = 1; n < 32; n++) {
    if (n != SIGKILL && n != SIGSTOP)
      sigaction(n, &sa, NULL);
  }
  if (setsid() < 0)
    goto fail;
  if (o->flags & ORR_PROCESS_KILL_WITH_PARENT) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
      goto fail;
    /* The parent may have died before prctl(): then nobody would kill us. */
    if (getppid() != parent)
      _exit(127);
  }
  if (dup2(null_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0)
    goto fail;
  if (o->ninherit > 0 && inherit_fds(o, &err_fd) < 0)
    goto fail;
  if (o->cwd != NULL && chdir(o->cwd) < 0)
    goto fail;
  if (o->landlock_ruleset > 0 &&
      (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
       syscall(SYS_landlock_restrict_self, o->landlock_ruleset, 0) < 0))
    goto fail;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  /* glibc's execvp searches PATH with stack buffers, as uv_spawn relies on;
  ** PR_SET_PDEATHSIG survives the exec (QEMU is not set-uid). */
  execvp(o->argv[0], (char *const *)o->argv);
fail:
  err = errno;
  while (write(err_fd, &err, sizeof err) < 0 && errno == EINTR)
    ;
  _exit(127);
}

static int map_errno(int err) {
  switch (err) {
  case ENOENT:
  case ENOTDIR:
    return ORR_ENOENT;
  case EACCES:
  case EPERM:
    return ORR_EPERM;
  case ENOMEM:
  case EAGAIN:
    return ORR_ENOMEM;
  case EINVAL:
    return ORR_EINVAL;
  default:
    return ORR_EIO;
  }
}

int orr_process_spawn(uv_loop_t *loop, const orr_process_options *o,
                      orr_process **out, orr_error *e) {
  int outp[2] = {-1, -1}, errp[2] = {-1, -1}, null_fd = -1;
  sigset_t all, old;
  orr_process *p;
  pid_t parent;
  int rc, err;
  ssize_t r;

  *out = NULL;
  if (o == NULL || o->argv == NULL || o->argv[0] == NULL)
    return orr_error_set(e, ORR_EINVAL, "spawn: argv is empty");
  if (o->ninherit > ORR_PROCESS_MAX_INHERIT)
    return orr_error_set(e, ORR_EINVAL,
                         "spawn: at most %d inherited "
                         "descriptors, got %zu",
                         ORR_PROCESS_MAX_INHERIT, o->ninherit);
  p = calloc(1, sizeof *p);
  if (p == NULL)
    return orr_error_set(e, ORR_ENOMEM, "spawn: out of memory");
  p->out_fd = -1;
  p->reaped = 1; /* until there is a child: the error path kills nothing */
  p->closing = 1;
  p->exit_cb = o->exit_cb;
  p->arg = o->arg;
  p->ring_cap = o->output_max ? o->output_max : DEFAULT_OUTPUT_MAX;
  p->ring = malloc(p->ring_cap);
  if (p->ring == NULL) {
    free(p);
    return orr_error_set(e, ORR_ENOMEM, "spawn: out of memory");
  }

  /* Watch SIGCHLD before the child exists, so its death cannot be missed. */
  rc = uv_signal_init(loop, &p->sigchld);
  if (rc != 0) {
    free(p->ring);
    free(p);
    return orr_error_set(e, ORR_EIO, "spawn: %s", uv_strerror(rc));
  }
  p->sigchld.data = p;
  p->handles = 1;
  uv_signal_start(&p->sigchld, on_sigchld, SIGCHLD);

  if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 ||
      (null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
    goto syserr;
  outp[0] = above_stdio(outp[0]);
  outp[1] = above_stdio(outp[1]);
  errp[1] = above_stdio(errp[1]);
  null_fd = above_stdio(null_fd);
  if (outp[0] < 0 || outp[1] < 0 || errp[1] < 0 || null_fd < 0)
    goto syserr;
  if (fcntl(outp[0], F_SETFL, O_NONBLOCK) < 0)
    goto syserr;

  parent = getpid();
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  p->pid = fork();
  if (p->pid == 0)
    child(o, parent, null_fd, outp[1], errp[1]);
  err = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (p->pid < 0) {
    errno = err;
    goto syserr;
  }
  close(errp[1]);
  close(outp[1]);
  close(null_fd);
  errp[1] = outp[1] = null_fd = -1;

  /* Blocks until the exec (EOF: the pipe is close-on-exec) or the child's
  ** report of why it failed; uv_spawn waits the same way. */
  do
    r = read(errp[0], &err, sizeof err);
  while (r < 0 && errno == EINTR);
  close(errp[0]);
  errp[0] = -1;
  if (r > 0) {
    int status;

    while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
      ;
    rc = orr_error_set(e, map_errno(err), "cannot run %s: %s", o->argv[0],
                       strerror(err));
    goto fail;
  }

  p->out_fd = outp[0];
  outp[0] = -1;
  rc = uv_poll_init(loop, &p->out_poll, p->out_fd);
  if (rc != 0) {
    /* The child runs already; the caller gets an error and no handle. */
    kill(p->pid, SIGKILL);
    close(p->out_fd);
    p->out_fd = -1;
    p->reaped = 0;
    rc = orr_error_set(e, ORR_EIO, "spawn: %s", uv_strerror(rc));
    goto fail;
  }
  p->out_poll.data = p;
  p->handles++;
  uv_poll_start(&p->out_poll, UV_READABLE, on_output);
  p->reaped = 0;
  p->closing = 0;
  *out = p;
  return 0;

syserr:
  rc = orr_error_set(e, map_errno(errno), "spawn %s: %s", o->argv[0],
                     strerror(errno));
fail:
  if (outp[0] >= 0)
    close(outp[0]);
  if (outp[1] >= 0)
    close(outp[1]);
  if (errp[0] >= 0)
    close(errp[0]);
  if (errp[1] >= 0)
    close(errp[1]);
  if (null_fd >= 0)
    close(null_fd);
  /* Freed in the close callback, without calling the user's callbacks;
  ** with p->reaped still 0 the SIGCHLD watcher reaps the killed child. */
  p->exit_cb = NULL;
  if (p->reaped)
    finish_close(p);
  return rc;
}

int orr_process_pid(const orr_process *p) {
  return (int)p->pid;
}

int orr_process_exited(const orr_process *p) {
  return p->reaped;
}

int orr_process_kill(orr_process *p, int signum) {
  if (p->reaped)
    return ORR_ESTATE;
  if (kill(p->pid, signum) < 0)
    return map_errno(errno);
  return 0;
}

void orr_process_close(orr_process *p, orr_process_close_cb cb) {
  if (p->closing)
    return;
  p->closing = 1;
  p->close_cb = cb;
  if (p->reaped) {
    finish_close(p);
    return;
  }
  /* on_sigchld finishes the close once the child is reaped. */
  kill(p->pid, SIGKILL);
}

void orr_process_detach(orr_process *p, orr_process_close_cb cb) {
  if (p->closing)
    return;
  p->closing = 1;
  p->close_cb = cb;
  /* Stop watching without killing: a VM meant to outlive its handle keeps
  ** running, reparented to init when the engine exits. */
  p->reaped = 1;
  finish_close(p);
}

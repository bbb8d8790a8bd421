/*
** HTTPS on the engine's libuv loop, through libcurl's multi-socket
** interface: curl says which sockets to watch (CURLMOPT_SOCKETFUNCTION ->
** one uv_poll_t per socket) and when to wake it (CURLMOPT_TIMERFUNCTION ->
** one uv_timer_t); the loop tells curl what happened
** (curl_multi_socket_action). Nothing blocks and there are no threads.
**
** Every completion (done, failed, cancelled) reaches its callback from a
** loop callback, after curl_multi_socket_action has returned: curl does
** not allow removing a handle from inside its own callbacks, and callers
** may start or cancel transfers from theirs. Cancellations are queued and
** finished by an idle handle for the same reason.
*/
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "kubevirt.h"

struct orr_kv_xfer {
  orr_kv_http *h;
  orr_kv_xfer *next, *prev; /* h->xfers */
  CURL *easy;
  struct curl_slist *headers;
  char *body;
  char *data; /* the collected answer */
  size_t len, cap;
  orr_kv_http_chunk_cb chunk_cb;
  orr_kv_http_cb cb;
  void *arg;
  int canceled; /* queued for the idle handle to finish */
  int oom;
  char errbuf[CURL_ERROR_SIZE];
};

typedef struct sock_ctx {
  uv_poll_t poll;
  curl_socket_t fd;
  orr_kv_http *h;
  struct sock_ctx *next, *prev; /* h->socks */
} sock_ctx;

struct orr_kv_http {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;
  uv_idle_t idle;
  orr_kv_xfer *xfers;
  sock_ctx *socks;
  struct curl_blob ca, cert, key;
  char *auth; /* "Authorization: Bearer ..." or NULL */
  int closing;
  int open_handles; /* uv handles not yet closed (timer, idle, polls) */
  void (*done_cb)(void *);
  void *done_arg;
};

static int global_users;

static void check_done(orr_kv_http *h);

/* ---- curl -> libuv ---- */

static void handle_closed(uv_handle_t *handle) {
  orr_kv_http *h = handle->data;
  if (handle->type == UV_POLL)
    free(handle);
  if (--h->open_handles == 0 && h->closing) {
    void (*done)(void *) = h->done_cb;
    void *arg = h->done_arg;
    free(h);
    if (--global_users == 0)
      curl_global_cleanup();
    if (done)
      done(arg);
  }
}

static void poll_cb(uv_poll_t *p, int status, int events) {
  sock_ctx *s = (sock_ctx *)p;
  orr_kv_http *h = s->h;
  int flags = 0, running;
  if (status < 0)
    flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE)
    flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE)
    flags |= CURL_CSELECT_OUT;
  curl_multi_socket_action(h->multi, s->fd, flags, &running);
  check_done(h);
}

static void close_sock(sock_ctx *s) {
  orr_kv_http *h = s->h;
  if (s->prev)
    s->prev->next = s->next;
  else
    h->socks = s->next;
  if (s->next)
    s->next->prev = s->prev;
  uv_poll_stop(&s->poll);
  s->poll.data = h;
  uv_close((uv_handle_t *)&s->poll, handle_closed);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp,
                     void *socketp) {
  orr_kv_http *h = userp;
  sock_ctx *s = socketp;
  int events = 0;
  (void)easy;
  if (what == CURL_POLL_REMOVE) {
    if (s) {
      curl_multi_assign(h->multi, fd, NULL);
      close_sock(s);
    }
    return 0;
  }
  if (s == NULL) {
    s = calloc(1, sizeof *s);
    if (s == NULL)
      return -1;
    s->fd = fd;
    s->h = h;
    if (uv_poll_init_socket(h->loop, &s->poll, fd) != 0) {
      free(s);
      return -1;
    }
    h->open_handles++;
    s->next = h->socks;
    if (h->socks)
      h->socks->prev = s;
    h->socks = s;
    curl_multi_assign(h->multi, fd, s);
  }
  if (what & CURL_POLL_IN)
    events |= UV_READABLE;
  if (what & CURL_POLL_OUT)
    events |= UV_WRITABLE;
  uv_poll_start(&s->poll, events, poll_cb);
  return 0;
}

static void timer_fired(uv_timer_t *t) {
  orr_kv_http *h = t->data;
  int running;
  curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done(h);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp) {
  orr_kv_http *h = userp;
  (void)multi;
  /* Never act from here: curl is inside one of its own calls. A zero
  ** timeout fires on the next loop turn. */
  if (timeout_ms < 0)
    uv_timer_stop(&h->timer);
  else
    uv_timer_start(&h->timer, timer_fired, (uint64_t)timeout_ms, 0);
  return 0;
}

/* ---- transfers ---- */

static size_t write_cb(char *data, size_t size, size_t n, void *userp) {
  orr_kv_xfer *x = userp;
  size_t len = size * n;
  if (x->canceled)
    return 0; /* aborts the transfer */
  if (x->chunk_cb)
    return x->chunk_cb(x->arg, data, len) == 0 ? len : 0;
  if (x->len + len + 1 > x->cap) {
    size_t cap = x->cap ? x->cap : 4096;
    char *p;
    while (cap < x->len + len + 1)
      cap *= 2;
    if ((p = realloc(x->data, cap)) == NULL) {
      x->oom = 1;
      return 0;
    }
    x->data = p;
    x->cap = cap;
  }
  memcpy(x->data + x->len, data, len);
  x->len += len;
  x->data[x->len] = '\0';
  return len;
}

static void unlink_xfer(orr_kv_xfer *x) {
  if (x->prev)
    x->prev->next = x->next;
  else
    x->h->xfers = x->next;
  if (x->next)
    x->next->prev = x->prev;
  x->next = x->prev = NULL;
}

static void free_xfer(orr_kv_xfer *x) {
  curl_multi_remove_handle(x->h->multi, x->easy);
  curl_easy_cleanup(x->easy);
  curl_slist_free_all(x->headers);
  free(x->body);
  free(x->data);
  free(x);
}

/* Ends x with its callback; x is gone afterwards. */
static void finish(orr_kv_xfer *x, CURLcode res) {
  orr_error err = {0, ""};
  long code = 0;
  int status = 0;
  unlink_xfer(x);
  if (x->canceled) {
    status = orr_error_set(&err, ORR_ECANCELED, "cancelled");
  } else if (x->oom) {
    status = orr_error_set(&err, ORR_ENOMEM, "out of memory");
  } else if (res == CURLE_WRITE_ERROR && x->chunk_cb) {
    status = orr_error_set(&err, ORR_ECANCELED, "stopped by the reader");
  } else if (res == CURLE_OPERATION_TIMEDOUT) {
    status = orr_error_set(&err, ORR_ETIMEDOUT, "%s",
                           x->errbuf[0] ? x->errbuf : curl_easy_strerror(res));
  } else if (res != CURLE_OK) {
    status = orr_error_set(&err, ORR_EIO, "%s",
                           x->errbuf[0] ? x->errbuf : curl_easy_strerror(res));
  } else {
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
  }
  if (x->cb)
    x->cb(x->arg, status, code, x->data ? x->data : "", x->len,
          status ? &err : NULL);
  free_xfer(x);
}

static void check_done(orr_kv_http *h) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(h->multi, &left)) != NULL) {
    orr_kv_xfer *x = NULL;
    if (m->msg != CURLMSG_DONE)
      continue;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
    if (x)
      finish(x, m->data.result);
  }
}

/* The rest of orr__kv_http_close, from the loop. */
static void shut_down(orr_kv_http *h) {
  orr_kv_xfer *x, *next;
  for (x = h->xfers; x; x = next) {
    next = x->next;
    x->canceled = 1;
    finish(x, CURLE_OK);
  }
  /* Closes the cached connections; whatever socket curl did not hand back
  ** through socket_cb is closed here. */
  curl_multi_cleanup(h->multi);
  h->multi = NULL;
  while (h->socks)
    close_sock(h->socks);
  free(h->ca.data);
  free(h->cert.data);
  free(h->key.data);
  if (h->auth)
    memset(h->auth, 0, strlen(h->auth));
  free(h->auth);
  uv_close((uv_handle_t *)&h->timer, handle_closed);
  uv_close((uv_handle_t *)&h->idle, handle_closed);
}

static void idle_cb(uv_idle_t *idle) {
  orr_kv_http *h = idle->data;
  orr_kv_xfer *x = h->xfers, *next;
  uv_idle_stop(idle);
  if (h->closing) {
    shut_down(h);
    return;
  }
  for (; x; x = next) {
    next = x->next;
    if (x->canceled)
      finish(x, CURLE_OK);
  }
}

void orr__kv_http_cancel(orr_kv_xfer *x) {
  if (x == NULL || x->canceled)
    return;
  x->canceled = 1;
  uv_idle_start(&x->h->idle, idle_cb);
}

int orr__kv_http_new(uv_loop_t *loop, const orr_kv_tls *tls, orr_kv_http **out,
                     orr_error *e) {
  orr_kv_http *h = calloc(1, sizeof *h);
  *out = NULL;
  if (h == NULL)
    return orr_error_set(e, ORR_ENOMEM, "out of memory");
  if (global_users++ == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
    global_users--;
    free(h);
    return orr_error_set(e, ORR_EIO, "libcurl did not initialise");
  }
  h->loop = loop;
  h->multi = curl_multi_init();
  if (tls && tls->ca) {
    h->ca.data = malloc(tls->ca_len);
    memcpy(h->ca.data, tls->ca, tls->ca_len);
    h->ca.len = tls->ca_len;
  }
  if (tls && tls->cert && tls->key) {
    h->cert.data = malloc(tls->cert_len);
    memcpy(h->cert.data, tls->cert, tls->cert_len);
    h->cert.len = tls->cert_len;
    h->key.data = malloc(tls->key_len);
    memcpy(h->key.data, tls->key, tls->key_len);
    h->key.len = tls->key_len;
  }
  if (tls && tls->token) {
    size_t n = strlen(tls->token) + 32;
    h->auth = malloc(n);
    snprintf(h->auth, n, "Authorization: Bearer %s", tls->token);
  }
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
  uv_timer_init(loop, &h->timer);
  uv_idle_init(loop, &h->idle);
  h->timer.data = h->idle.data = h;
  h->open_handles = 2;
  *out = h;
  return 0;
}

orr_kv_xfer *orr__kv_http_start(orr_kv_http *h, const char *method,
                                const char *url, const char *content_type,
                                const char *body, uint64_t timeout_ms,
                                orr_kv_http_chunk_cb chunk_cb,
                                orr_kv_http_cb cb, void *arg) {
  orr_kv_xfer *x;
  CURL *c;
  char ct[128];
  if (h->closing || (x = calloc(1, sizeof *x)) == NULL)
    return NULL;
  if ((c = curl_easy_init()) == NULL) {
    free(x);
    return NULL;
  }
  x->h = h;
  x->easy = c;
  x->chunk_cb = chunk_cb;
  x->cb = cb;
  x->arg = arg;
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PRIVATE, x);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, x->errbuf);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
  if (timeout_ms)
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
  if (h->ca.data)
    curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &h->ca);
  if (h->cert.data) {
    curl_easy_setopt(c, CURLOPT_SSLCERT_BLOB, &h->cert);
    curl_easy_setopt(c, CURLOPT_SSLKEY_BLOB, &h->key);
    curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM");
    curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM");
  }
  x->headers = curl_slist_append(NULL, "Accept: application/json");
  if (h->auth)
    x->headers = curl_slist_append(x->headers, h->auth);
  if (body) {
    x->body = strdup(body);
    snprintf(ct, sizeof ct, "Content-Type: %s",
             content_type ? content_type : "application/json");
    x->headers = curl_slist_append(x->headers, ct);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, x->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(x->body));
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, x->headers);
  x->next = h->xfers;
  if (h->xfers)
    h->xfers->prev = x;
  h->xfers = x;
  /* This only arms the timer (timer_cb): the transfer starts from the loop,
  ** so cb is never called from inside this function. */
  curl_multi_add_handle(h->multi, c);
  return x;
}

void orr__kv_http_close(orr_kv_http *h, void (*done_cb)(void *), void *arg) {
  if (h->closing)
    return;
  h->closing = 1;
  h->done_cb = done_cb;
  h->done_arg = arg;
  /* The caller may be inside one of our callbacks, itself inside curl:
  ** the transfers end and the multi handle goes from the idle handle. */
  uv_idle_start(&h->idle, idle_cb);
}

/*
** The Kubernetes API client of the kubevirt backend: one request at a
** time per call, on the loop, with
**   - a deadline for the whole call (retries included) and one per attempt;
**   - retries with exponential backoff after a connection failure, an
**     attempt that timed out, 429 and 5xx;
**   - 409 Conflict resolved by resourceVersion: the object is read again,
**     the change planned again against it (a replan callback) and sent;
**   - the API server's Status turned into an orr code with its message.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kubevirt.h"

typedef struct call call;

struct orr_kv_client {
  uv_loop_t *loop;
  orr_kv_http *http;
  char *server;
  orr_kv_retry retry;
  orr_kv_stats stats;
  call *calls;
  int closing;
  void (*done_cb)(void *);
  void *done_arg;
};

struct call {
  orr_kv_client *c;
  call *next, *prev;
  json_t *req;
  char *vm_path; /* apply: where to read the object on a 409 */
  orr_kv_replan_fn replan;
  void *replan_arg;
  orr_kv_result_cb cb;
  void *arg;
  uint64_t deadline;
  int attempts, conflicts;
  int rereading; /* the transfer in flight is the GET after a 409 */
  orr_kv_xfer *x;
  uv_timer_t *timer; /* backoff; closed when the call ends */
};

static void send_attempt(call *k);

int orr__kv_client_new(uv_loop_t *loop, const orr_kv_kubeconfig *kc,
                       const orr_kv_retry *retry, orr_kv_client **out,
                       orr_error *e) {
  orr_kv_client *c = calloc(1, sizeof *c);
  orr_kv_tls tls = {kc->ca,  kc->ca_len,  kc->cert, kc->cert_len,
                    kc->key, kc->key_len, kc->token};
  int rc;
  *out = NULL;
  if (c == NULL)
    return orr_error_set(e, ORR_ENOMEM, "out of memory");
  if ((rc = orr__kv_http_new(loop, &tls, &c->http, e)) != 0) {
    free(c);
    return rc;
  }
  c->loop = loop;
  c->server = strdup(kc->server);
  if (retry)
    c->retry = *retry;
  if (c->retry.timeout_ms == 0)
    c->retry.timeout_ms = 30000;
  if (c->retry.attempt_ms == 0)
    c->retry.attempt_ms = 10000;
  if (c->retry.max_attempts == 0)
    c->retry.max_attempts = 6;
  if (c->retry.backoff_ms == 0)
    c->retry.backoff_ms = 100;
  if (c->retry.backoff_max_ms == 0)
    c->retry.backoff_max_ms = 3000;
  *out = c;
  return 0;
}

void orr__kv_client_stats(const orr_kv_client *c, orr_kv_stats *out) {
  *out = c->stats;
}
uv_loop_t *orr__kv_client_loop(orr_kv_client *c) {
  return c->loop;
}
const char *orr__kv_client_server(const orr_kv_client *c) {
  return c->server;
}
orr_kv_http *orr__kv_client_http(orr_kv_client *c) {
  return c->http;
}

static void timer_closed(uv_handle_t *h) {
  free(h);
}

static void end_call(call *k, int status, json_t *answer,
                     const orr_error *err) {
  orr_kv_client *c = k->c;
  if (k->prev)
    k->prev->next = k->next;
  else
    c->calls = k->next;
  if (k->next)
    k->next->prev = k->prev;
  if (k->timer)
    uv_close((uv_handle_t *)k->timer, timer_closed);
  if (k->cb)
    k->cb(k->arg, status, answer, err);
  json_decref(answer);
  json_decref(k->req);
  free(k->vm_path);
  free(k);
}

/* The Status message of an answer, else its text (cut). */
static void server_words(const char *body, size_t len, long code,
                         orr_error *err, int rc) {
  json_t *st = json_loadb(body, len, 0, NULL);
  const char *msg = json_string_value(json_object_get(st, "message"));
  if (msg)
    orr_error_set(err, rc, "HTTP %ld: %s", code, msg);
  else
    orr_error_set(err, rc, "HTTP %ld: %.300s", code, len ? body : "(empty)");
  json_decref(st);
}

static void backoff_fired(uv_timer_t *t) {
  send_attempt(t->data);
}

/* Retries k after its backoff, or ends it when out of attempts or time. */
static void retry_or_end(call *k, int rc, const orr_error *why) {
  orr_kv_client *c = k->c;
  uint64_t now = uv_now(c->loop), delay;
  /* A failure that comes in while the client closes is not retried: the
  ** close already ended the calls waiting out a backoff, and a new one
  ** would outlive it. */
  if (c->closing) {
    orr_error err;
    orr_error_set(&err, ORR_ECANCELED, "the client is closing");
    end_call(k, ORR_ECANCELED, NULL, &err);
    return;
  }
  if (k->attempts >= c->retry.max_attempts || now >= k->deadline) {
    orr_error err = *why;
    if (now >= k->deadline && rc != ORR_ETIMEDOUT) {
      char msg[sizeof err.msg];
      snprintf(msg, sizeof msg, "%s", why->msg);
      orr_error_set(&err, ORR_ETIMEDOUT, "deadline of %llu ms passed; last: %s",
                    (unsigned long long)c->retry.timeout_ms, msg);
      rc = ORR_ETIMEDOUT;
    }
    end_call(k, rc, NULL, &err);
    return;
  }
  delay = c->retry.backoff_ms << (k->attempts - 1 < 16 ? k->attempts - 1 : 16);
  if (delay > c->retry.backoff_max_ms)
    delay = c->retry.backoff_max_ms;
  if (now + delay > k->deadline)
    delay = k->deadline - now;
  c->stats.retried++;
  if (k->timer == NULL) {
    k->timer = malloc(sizeof *k->timer);
    uv_timer_init(c->loop, k->timer);
    k->timer->data = k;
  }
  uv_timer_start(k->timer, backoff_fired, delay, 0);
}

static int code_to_err(long code, const char *reason) {
  if (code == 404)
    return ORR_ENOENT;
  if (code == 409)
    return reason && strcmp(reason, "AlreadyExists") == 0 ? ORR_EEXIST
                                                          : ORR_EBUSY;
  if (code == 400 || code == 422)
    return ORR_EINVAL;
  if (code == 401 || code == 403)
    return ORR_EPERM;
  return ORR_EBACKEND;
}

static void reread_done(call *k, long code, const char *body, size_t len) {
  orr_error err = {0, ""};
  json_t *vm, *next;
  if (code != 200 || (vm = json_loadb(body, len, 0, NULL)) == NULL) {
    server_words(body, len, code, &err, code_to_err(code, NULL));
    orr_error_prefix(&err, "reading the object again after a 409");
    end_call(k, err.code, NULL, &err);
    return;
  }
  next = k->replan(k->replan_arg, vm, &err);
  json_decref(vm);
  if (next == NULL) {
    end_call(k, err.code ? err.code : ORR_EINVAL, NULL, &err);
    return;
  }
  json_decref(k->req);
  k->req = next;
  send_attempt(k);
}

static void http_done(void *arg, int status, long code, const char *body,
                      size_t len, const orr_error *herr) {
  call *k = arg;
  orr_kv_client *c = k->c;
  orr_error err = {0, ""};
  const char *reason;
  json_t *st;
  k->x = NULL;
  if (status == ORR_ECANCELED) {
    end_call(k, status, NULL, herr);
    return;
  }
  if (status != 0) { /* connection, TLS, attempt deadline */
    retry_or_end(k, status, herr);
    return;
  }
  if (k->rereading) {
    k->rereading = 0;
    reread_done(k, code, body, len);
    return;
  }
  if (code >= 200 && code < 300) {
    json_t *answer = len ? json_loadb(body, len, 0, NULL) : NULL;
    if (answer == NULL && len)
      answer = json_stringn(body, len); /* subresources answer plain text */
    end_call(k, 0, answer, NULL);
    return;
  }
  if (code == 429 || code >= 500) {
    server_words(body, len, code, &err, ORR_EBACKEND);
    retry_or_end(k, ORR_EBACKEND, &err);
    return;
  }
  st = json_loadb(body, len, 0, NULL);
  reason = json_string_value(json_object_get(st, "reason"));
  if (code == 409 && k->replan && k->vm_path &&
      k->conflicts < c->retry.max_attempts &&
      !(reason && strcmp(reason, "AlreadyExists") == 0)) {
    char url[1024];
    json_decref(st);
    k->conflicts++;
    c->stats.conflicts++;
    k->rereading = 1;
    snprintf(url, sizeof url, "%s%s", c->server, k->vm_path);
    c->stats.sent++;
    k->x = orr__kv_http_start(c->http, "GET", url, NULL, NULL,
                              c->retry.attempt_ms, NULL, http_done, k);
    if (k->x == NULL)
      end_call(k, ORR_ENOMEM, NULL, NULL);
    return;
  }
  server_words(body, len, code, &err, code_to_err(code, reason));
  json_decref(st);
  end_call(k, err.code, NULL, &err);
}

static void send_attempt(call *k) {
  orr_kv_client *c = k->c;
  const char *method = json_string_value(json_object_get(k->req, "method"));
  const char *path = json_string_value(json_object_get(k->req, "path"));
  const json_t *body = json_object_get(k->req, "body");
  uint64_t now = uv_now(c->loop), t;
  char url[1024], *text = NULL;
  k->attempts++;
  if (now >= k->deadline) {
    orr_error err;
    orr_error_set(&err, ORR_ETIMEDOUT, "deadline of %llu ms passed",
                  (unsigned long long)c->retry.timeout_ms);
    end_call(k, ORR_ETIMEDOUT, NULL, &err);
    return;
  }
  t = k->deadline - now < c->retry.attempt_ms ? k->deadline - now
                                              : c->retry.attempt_ms;
  snprintf(url, sizeof url, "%s%s", c->server, path);
  if (body)
    text = json_dumps(body, JSON_COMPACT);
  c->stats.sent++;
  k->x = orr__kv_http_start(
      c->http, method, url,
      strcmp(method, "PATCH") == 0 ? "application/json-patch+json" : NULL, text,
      t, NULL, http_done, k);
  free(text);
  if (k->x == NULL) {
    orr_error err;
    orr_error_set(&err, ORR_ENOMEM, "cannot start the transfer");
    end_call(k, ORR_ENOMEM, NULL, &err);
  }
}

void orr__kv_client_apply(orr_kv_client *c, const json_t *req,
                          const char *vm_path, orr_kv_replan_fn replan,
                          void *replan_arg, orr_kv_result_cb cb, void *arg) {
  call *k = calloc(1, sizeof *k);
  const char *method = json_string_value(json_object_get(req, "method"));
  const char *path = json_string_value(json_object_get(req, "path"));
  if (k == NULL || method == NULL || path == NULL || path[0] != '/' ||
      c->closing) {
    orr_error err;
    free(k);
    orr_error_set(&err, ORR_EINVAL, "request: needs a method and a path");
    if (cb)
      cb(arg, err.code, NULL, &err);
    return;
  }
  k->c = c;
  k->req = json_deep_copy(req);
  k->vm_path = vm_path ? strdup(vm_path) : NULL;
  k->replan = replan;
  k->replan_arg = replan_arg;
  k->cb = cb;
  k->arg = arg;
  k->deadline = uv_now(c->loop) + c->retry.timeout_ms;
  k->next = c->calls;
  if (c->calls)
    c->calls->prev = k;
  c->calls = k;
  send_attempt(k);
}

void orr__kv_client_send(orr_kv_client *c, const json_t *req,
                         orr_kv_result_cb cb, void *arg) {
  orr__kv_client_apply(c, req, NULL, NULL, NULL, cb, arg);
}

static void http_closed(void *arg) {
  orr_kv_client *c = arg;
  void (*done)(void *) = c->done_cb;
  void *darg = c->done_arg;
  free(c->server);
  free(c);
  if (done)
    done(darg);
}

void orr__kv_client_close(orr_kv_client *c, void (*done_cb)(void *),
                          void *arg) {
  c->closing = 1;
  c->done_cb = done_cb;
  c->done_arg = arg;
  /* Ends every call in flight with ECANCELED (through http_done); calls
  ** waiting out a backoff end here. */
  for (call *k = c->calls, *next; k; k = next) {
    next = k->next;
    if (k->x == NULL) {
      orr_error err;
      orr_error_set(&err, ORR_ECANCELED, "the client is closing");
      end_call(k, ORR_ECANCELED, NULL, &err);
    }
  }
  orr__kv_http_close(c->http, http_closed, c);
}

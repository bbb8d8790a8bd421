/*
** The watch on one VirtualMachineInstance: a long GET whose body is a
** stream of JSON lines ({"type": ..., "object": ...}), split by the
** engine's line framer. The watch remembers the last resourceVersion it saw
** (from every event, bookmarks included); when the stream ends or drops, it
** connects again from there after a backoff (100 ms, doubling to 5 s, back
** to 100 ms once events flow again), so nothing is missed and nothing is
** delivered twice. When the server no longer has that version (410 Gone,
** as an HTTP answer or an ERROR event), the watch reads the VMI as it is
** now, delivers it as MODIFIED (DELETED if it is gone) and watches on from
** its version.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kubevirt.h"
#include "orrery/framer.h"

#define BACKOFF_MIN 100
#define BACKOFF_MAX 5000

struct orr_kv_watch {
  orr_kv_client *c;
  orr_kv_config cfg;
  char name[64], ns[64];
  char rv[64];
  orr_kv_watch_cb cb;
  void *arg;
  orr_kv_xfer *x;
  int relisting; /* a GET of the VMI in flight */
  orr_framer framer;
  uv_timer_t *timer;
  uint64_t backoff;
  unsigned connects;
  int stopped;
  int gone; /* the stream said 410: relist before reconnecting */
};

static void connect_watch(orr_kv_watch *w);

static void timer_closed(uv_handle_t *h) {
  free(h);
}

/* Frees w once nothing of it is in flight any more. */
static void maybe_free(orr_kv_watch *w) {
  if (!w->stopped || w->x || w->relisting)
    return;
  orr_framer_free(&w->framer);
  if (w->timer)
    uv_close((uv_handle_t *)w->timer, timer_closed);
  free(w);
}

static void remember_rv(orr_kv_watch *w, const json_t *obj) {
  const char *rv = json_string_value(
      json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
  if (rv && strlen(rv) < sizeof w->rv)
    snprintf(w->rv, sizeof w->rv, "%s", rv);
}

static void give_up(orr_kv_watch *w, const orr_error *err) {
  if (!w->stopped && w->cb)
    w->cb(w->arg, "ERROR", NULL, err);
}

static void timer_fired(uv_timer_t *t) {
  orr_kv_watch *w = t->data;
  if (!w->stopped)
    connect_watch(w);
}

static void later(orr_kv_watch *w) {
  if (w->stopped)
    return;
  if (w->timer == NULL) {
    w->timer = malloc(sizeof *w->timer);
    uv_timer_init(orr__kv_client_loop(w->c), w->timer);
    w->timer->data = w;
  }
  uv_timer_start(w->timer, timer_fired, w->backoff, 0);
  w->backoff = w->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : w->backoff * 2;
}

static void relist_done(void *arg, int status, json_t *answer,
                        const orr_error *err) {
  orr_kv_watch *w = arg;
  w->relisting = 0;
  if (w->stopped) {
    maybe_free(w);
    return;
  }
  if (status == 0 && json_is_object(answer)) {
    remember_rv(w, answer);
    w->cb(w->arg, "MODIFIED", answer, NULL);
  } else if (status == ORR_ENOENT) {
    /* Gone while we were not looking: say so, and watch for a new one from
    ** "now" (no version). */
    w->rv[0] = '\0';
    w->cb(w->arg, "DELETED", NULL, NULL);
  } else if (status == ORR_EPERM) {
    give_up(w, err);
    return;
  }
  if (!w->stopped)
    later(w);
}

static void relist(orr_kv_watch *w) {
  json_t *req;
  orr_error e;
  w->gone = 0;
  if (orr__kv_verb(&w->cfg, ORR_KV_GET_VMI, NULL, &req, &e) != 0) {
    give_up(w, &e);
    return;
  }
  w->relisting = 1;
  orr__kv_client_send(w->c, req, relist_done, w);
  json_decref(req);
}

static int on_line(void *arg, const char *line, size_t len) {
  orr_kv_watch *w = arg;
  json_t *ev = json_loadb(line, len, 0, NULL);
  const char *type = json_string_value(json_object_get(ev, "type"));
  const json_t *obj = json_object_get(ev, "object");
  if (type == NULL || !json_is_object(obj)) {
    json_decref(ev);
    return 0; /* not an event: skip the line */
  }
  w->backoff = BACKOFF_MIN; /* events flow again */
  if (strcmp(type, "ERROR") == 0) {
    /* A Status: 410 means our version is too old. */
    if (json_integer_value(json_object_get(obj, "code")) == 410)
      w->gone = 1;
    json_decref(ev);
    return 0;
  }
  remember_rv(w, obj);
  if (strcmp(type, "BOOKMARK") != 0 && !w->stopped && w->cb)
    w->cb(w->arg, type, obj, NULL);
  json_decref(ev);
  return w->stopped ? 1 : 0;
}

static int on_chunk(void *arg, const char *data, size_t len) {
  orr_kv_watch *w = arg;
  if (w->stopped)
    return 1;
  return orr_framer_feed(&w->framer, data, len) == ORR_EIO ? 1 : 0;
}

static void stream_ended(void *arg, int status, long code, const char *body,
                         size_t len, const orr_error *err) {
  orr_kv_watch *w = arg;
  orr_error e = {0, ""};
  (void)body;
  (void)len;
  w->x = NULL;
  orr_framer_reset(&w->framer);
  if (w->stopped) {
    maybe_free(w);
    return;
  }
  if (status == 0 && (code == 401 || code == 403)) {
    orr_error_set(&e, ORR_EPERM, "watch: HTTP %ld", code);
    give_up(w, &e);
    return;
  }
  if (status == 0 && code == 410)
    w->gone = 1;
  (void)err;
  /* Ended, dropped, refused by a busy server: connect again from rv. */
  if (w->gone)
    relist(w);
  else
    later(w);
}

static void connect_watch(orr_kv_watch *w) {
  char path[512], url[1024];
  int n;
  orr__kv_path(&w->cfg, "vmis", path, sizeof path);
  n = snprintf(url, sizeof url,
               "%s%s?watch=true&fieldSelector=metadata.name%%3D%s",
               orr__kv_client_server(w->c), path, w->name);
  if (w->rv[0] && n > 0 && (size_t)n < sizeof url)
    snprintf(url + n, sizeof url - (size_t)n, "&resourceVersion=%s", w->rv);
  w->connects++;
  w->x = orr__kv_http_start(orr__kv_client_http(w->c), "GET", url, NULL, NULL,
                            0, on_chunk, stream_ended, w);
  if (w->x == NULL)
    later(w);
}

int orr__kv_watch_start(orr_kv_client *c, const orr_kv_config *cfg,
                        const char *rv, orr_kv_watch_cb cb, void *arg,
                        orr_kv_watch **out, orr_error *e) {
  orr_kv_watch *w;
  *out = NULL;
  if (cfg == NULL || cfg->name == NULL || cfg->ns == NULL ||
      !orr__kv_valid_name(cfg->name, 63) || !orr__kv_valid_name(cfg->ns, 63))
    return orr_error_set(e, ORR_EINVAL,
                         "watch: name and namespace must be DNS-1123 labels");
  if (rv && strlen(rv) >= sizeof w->rv)
    return orr_error_set(e, ORR_EINVAL, "watch: resourceVersion too long");
  if ((w = calloc(1, sizeof *w)) == NULL)
    return orr_error_set(e, ORR_ENOMEM, "out of memory");
  w->c = c;
  snprintf(w->name, sizeof w->name, "%s", cfg->name);
  snprintf(w->ns, sizeof w->ns, "%s", cfg->ns);
  w->cfg.name = w->name;
  w->cfg.ns = w->ns;
  if (rv)
    snprintf(w->rv, sizeof w->rv, "%s", rv);
  w->cb = cb;
  w->arg = arg;
  w->backoff = BACKOFF_MIN;
  orr_framer_init(&w->framer, 0, on_line, w);
  connect_watch(w);
  *out = w;
  return 0;
}

unsigned orr__kv_watch_connects(const orr_kv_watch *w) {
  return w->connects;
}

void orr__kv_watch_stop(orr_kv_watch *w) {
  if (w == NULL || w->stopped)
    return;
  w->stopped = 1;
  if (w->timer)
    uv_timer_stop(w->timer);
  if (w->x)
    orr__kv_http_cancel(w->x);
  maybe_free(w);
}

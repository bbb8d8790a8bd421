#include <stdlib.h>
#include <string.h>

#include "orrery/error.h"
#include "orrery/framer.h"

/* A buffer grown for one huge reply is given back afterwards, so a VM that
** once answered query-qmp-schema does not keep megabytes for ever. */
#define SHRINK_ABOVE (1024u * 1024)

void orr_framer_init(orr_framer *f, size_t max, orr_framer_line_cb cb,
                     void *arg) {
  memset(f, 0, sizeof *f);
  f->cb = cb;
  f->arg = arg;
  f->max = max ? max : ORR_FRAMER_DEFAULT_MAX;
}

/* Appends to the partial line; the caller has checked len against max. */
static int append(orr_framer *f, const char *data, size_t n) {
  if (f->len + n > f->cap) {
    size_t cap = f->cap ? f->cap : 4096;
    char *p;

    while (cap < f->len + n)
      cap *= 2;
    if (cap > f->max)
      cap = f->max;
    p = realloc(f->buf, cap);
    if (p == NULL)
      return ORR_ENOMEM;
    f->buf = p;
    f->cap = cap;
  }
  memcpy(f->buf + f->len, data, n);
  f->len += n;
  return 0;
}

int orr_framer_feed(orr_framer *f, const char *data, size_t len) {
  const char *end = data + len;

  if (f->err != 0)
    return f->err;
  while (data < end) {
    const char *nl, *line;
    size_t n, linelen;
    int rc;

    if (f->resync) {
      const char *ff = memchr(data, 0xFF, (size_t)(end - data));

      if (ff == NULL)
        return 0;
      f->resync = 0;
      data = ff + 1;
      continue;
    }

    nl = memchr(data, '\n', (size_t)(end - data));
    n = (size_t)((nl != NULL ? nl : end) - data);
    /* Checked before buffering too, so a peer that never sends "\n" costs
    ** at most max bytes. */
    if (f->len + n > f->max) {
      f->len = 0;
      f->err = ORR_EIO;
      return f->err;
    }
    if (nl == NULL) {
      rc = append(f, data, n);
      if (rc != 0)
        f->err = rc;
      return rc;
    }

    if (f->len == 0) {
      line = data;
      linelen = n;
    } else {
      rc = append(f, data, n);
      if (rc != 0) {
        f->err = rc;
        return rc;
      }
      line = f->buf;
      linelen = f->len;
    }
    data = nl + 1;
    f->len = 0;
    if (linelen > 0 && line[linelen - 1] == '\r')
      linelen--;
    /* An empty line carries nothing in a JSON-lines protocol. */
    rc = linelen > 0 ? f->cb(f->arg, line, linelen) : 0;
    if (f->cap > SHRINK_ABOVE) {
      free(f->buf);
      f->buf = NULL;
      f->cap = 0;
    }
    if (rc != 0)
      return rc;
  }
  return 0;
}

void orr_framer_resync(orr_framer *f) {
  f->len = 0;
  f->resync = 1;
}

int orr_framer_resyncing(const orr_framer *f) {
  return f->resync;
}

void orr_framer_reset(orr_framer *f) {
  f->len = 0;
  f->resync = 0;
  f->err = 0;
}

void orr_framer_free(orr_framer *f) {
  free(f->buf);
  f->buf = NULL;
  f->len = 0;
  f->cap = 0;
}

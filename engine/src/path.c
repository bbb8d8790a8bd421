/*
** Rendering a value's place in a document (orrery/path.h).
*/
#include <stdio.h>

#include "orrery/path.h"

/* Writes p's chain from the top down; the length the whole text needs. */
static size_t render(const orr_path *p, char *buf, size_t len) {
  size_t n = 0;
  int w;
  if (p == NULL)
    return 0;
  n = render(p->up, buf, len);
  if (n >= len)
    return n;
  if (p->key == NULL)
    w = snprintf(buf + n, len - n, "[%zu]", p->index);
  else
    w = snprintf(buf + n, len - n, "%s%s", n ? "." : "", p->key);
  return w < 0 ? n : n + (size_t)w;
}

const char *orr_path_text(const orr_path *p, char *buf, size_t len) {
  if (len == 0)
    return buf;
  buf[0] = '\0';
  render(p, buf, len);
  return buf;
}

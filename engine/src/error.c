#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "orrery/error.h"

const char *orr_strerror(int err) {
  switch (err) {
  case 0:
    return "success";
#define ORR_ERR_STR(name, val, msg)                                            \
  case (val):                                                                  \
    return msg;
    ORR_ERRNO_MAP(ORR_ERR_STR)
#undef ORR_ERR_STR
  }
  return "unknown error";
}

const char *orr_err_name(int err) {
  switch (err) {
  case 0:
    return "OK";
#define ORR_ERR_NAME(name, val, msg)                                           \
  case (val):                                                                  \
    return #name;
    ORR_ERRNO_MAP(ORR_ERR_NAME)
#undef ORR_ERR_NAME
  }
  return "EUNKNOWN";
}

int orr_error_set(orr_error *e, int code, const char *fmt, ...) {
  if (e != NULL) {
    va_list ap;
    va_start(ap, fmt);
    e->code = code;
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
  }
  return code;
}

void orr_error_prefix(orr_error *e, const char *prefix) {
  char tmp[sizeof e->msg];
  size_t n;
  if (e == NULL)
    return;
  n = strlen(prefix);
  if (n + 2 >= sizeof tmp)
    return;
  memcpy(tmp, prefix, n);
  memcpy(tmp + n, ": ", 2);
  /* Keep as much of the old message as fits, always NUL-terminated. */
  size_t room = sizeof tmp - n - 3, len = strnlen(e->msg, room);
  memcpy(tmp + n + 2, e->msg, len);
  tmp[n + 2 + len] = '\0';
  memcpy(e->msg, tmp, sizeof tmp);
}

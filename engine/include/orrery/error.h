/*
** Orrery error codes. One X-macro table generates the enum, the names and
** the messages, so a code can never lack its text. Codes are negative; 0 is
** success, as in libuv.
*/
#ifndef ORRERY_ERROR_H
#define ORRERY_ERROR_H

#include "orrery/api.h"

#include "orrery/api.h"

#define ORR_ERRNO_MAP(XX)                                                      \
  XX(EINVAL, -22, "invalid argument")                                          \
  XX(EEXIST, -17, "already exists")                                            \
  XX(ENOENT, -2, "no such resource")                                           \
  XX(EBUSY, -16, "resource busy")                                              \
  XX(ENOMEM, -12, "out of memory")                                             \
  XX(ETIMEDOUT, -110, "operation timed out")                                   \
  XX(ECANCELED, -125, "operation canceled")                                    \
  XX(ENOTSUP, -95, "not supported by this backend")                            \
  XX(ESTATE, -1001, "not allowed in the VM's current state")                   \
  XX(EBACKEND, -1002, "the backend refused the request")                       \
  XX(EVMGONE, -1003, "the VM process is gone")                                 \
  XX(EIO, -5, "input/output error")                                            \
  XX(EPERM, -1, "operation not permitted")

typedef enum {
  ORR_OK = 0,
#define ORR_ERR_ENUM(name, val, msg) ORR_##name = (val),
  ORR_ERRNO_MAP(ORR_ERR_ENUM)
#undef ORR_ERR_ENUM
} orr_err;

/* Short text for a code ("already exists"); never NULL. */
ORR_API const char *orr_strerror(int err);
/* Stable name for a code ("EEXIST"); never NULL. */
ORR_API const char *orr_err_name(int err);

/*
** An error with its message, filled by calls that can fail for a reason the
** caller should read (the field and the rule, or the backend's own words).
*/
typedef struct {
  int code;
  char msg[512];
} orr_error;

/* Sets e->code and formats e->msg; returns code so callers can
** `return orr_error_set(e, ORR_EINVAL, "...")`. e may be NULL. */
ORR_API int orr_error_set(orr_error *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Turns e->msg into "<prefix>: <msg>", truncating if it must. */
ORR_API void orr_error_prefix(orr_error *e, const char *prefix);

#endif

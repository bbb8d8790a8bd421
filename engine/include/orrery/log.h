/*
** Logging: levels and components, one process-wide configuration.
**
** A record has a time (wall clock, microseconds), a level, a component
** ("qmp", "qga", "vm", "console", "lua", ...), the id of the VM it is
** about (or none) and a message. Which records are wanted is chosen per
** component: a spec "LEVEL" or "COMP=LEVEL,...,LEVEL" (ORRERY_LOG), the
** bare level being the default for every other component. Wanted records
** go to stderr (or the file of orr_log_set_file) as one line each:
**
**   2026-12-06T08:31:35.123456Z trace demo qmp: -> {"execute": "cont"}
**
** and to the handler, if one is set. Levels: error, warn (the default),
** info, debug, trace; trace carries every QMP and guest-agent message with
** its latency.
*/
#ifndef ORRERY_LOG_H
#define ORRERY_LOG_H

#include <stdarg.h>
#include <stdint.h>

#include "orrery/api.h"
#include "orrery/error.h"

typedef enum {
  ORR_LOG_OFF = 0,
  ORR_LOG_ERROR = 1,
  ORR_LOG_WARN = 2,
  ORR_LOG_INFO = 3,
  ORR_LOG_DEBUG = 4,
  ORR_LOG_TRACE = 5,
} orr_log_level;

typedef struct {
  int64_t time_us; /* wall clock, microseconds since the epoch */
  int level;
  const char *component;
  const char *vm; /* "" when the record is about no VM */
  const char *msg;
} orr_log_record;

/* "error".."trace" (also "off"); the level, or -1 for an unknown name. */
ORR_API int orr_log_level_parse(const char *name);
ORR_API const char *orr_log_level_name(int level);

/*
** Replaces the configuration with spec ("info", "qmp=trace,warn", "" or
** NULL: warn). Unknown level names and malformed entries are refused with
** ORR_EINVAL naming the entry, and nothing changes.
*/
ORR_API int orr_log_configure(const char *spec, orr_error *e);
/* Makes the default level at least `level` (-v, -vv), keeping the
** per-component entries. */
ORR_API void orr_log_raise(int level);
/* Applies ORRERY_LOG once; later calls do nothing. Errors are reported on
** stderr (a bad variable must not stop a program). */
ORR_API void orr_log_init_env(void);

/* Lines go to path (appended, created 0600) instead of stderr; NULL: back
** to stderr. */
ORR_API int orr_log_set_file(const char *path, orr_error *e);

/* One handler receives every wanted record (the Lua binding fans out);
** NULL removes it. With echo 0 the line is not written as well. */
typedef void (*orr_log_handler)(void *arg, const orr_log_record *rec);
ORR_API void orr_log_set_handler(orr_log_handler fn, void *arg, int echo);

/* Whether a record of level from component is wanted (cheap: call it
** before building an expensive message). */
ORR_API int orr_log_enabled(int level, const char *component);

ORR_API void orr_log(int level, const char *component, const char *vm,
                     const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
ORR_API void orr_logv(int level, const char *component, const char *vm,
                      const char *fmt, va_list ap);

#endif

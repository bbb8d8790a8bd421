/*
** Logging (orrery/log.h). The configuration is process-wide, like the
** variable it comes from; the engine is single-threaded, but a mutex keeps
** a record whole if a caller logs from another thread.
*/
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "orrery/log.h"

#define MAX_RULES 32
#define COMP_MAX 24

typedef struct {
  char comp[COMP_MAX];
  int level;
} rule;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int default_level = ORR_LOG_WARN;
static rule rules[MAX_RULES];
static int nrules;
static int max_level = ORR_LOG_WARN; /* the highest wanted anywhere */
static FILE *out_file;               /* NULL: stderr */
static orr_log_handler handler;
static void *handler_arg;
static int handler_echo = 1;
static int env_done;
static int in_handler; /* a handler that logs does not recurse */

static const char *const names[] = {"off",  "error", "warn",
                                    "info", "debug", "trace"};

int orr_log_level_parse(const char *name) {
  for (int i = 0; i <= ORR_LOG_TRACE; i++)
    if (name != NULL && strcmp(name, names[i]) == 0)
      return i;
  return -1;
}

const char *orr_log_level_name(int level) {
  return level >= 0 && level <= ORR_LOG_TRACE ? names[level] : "?";
}

static void recompute_max(void) {
  max_level = default_level;
  for (int i = 0; i < nrules; i++)
    if (rules[i].level > max_level)
      max_level = rules[i].level;
}

int orr_log_configure(const char *spec, orr_error *e) {
  rule nr[MAX_RULES];
  int n = 0, def = ORR_LOG_WARN, lv;
  char buf[512], *save = NULL, *tok, *eq;

  if (spec == NULL)
    spec = "";
  if (strlen(spec) >= sizeof buf)
    return orr_error_set(e, ORR_EINVAL, "ORRERY_LOG: longer than %zu bytes",
                         sizeof buf - 1);
  strcpy(buf, spec);
  for (tok = strtok_r(buf, ",", &save); tok != NULL;
       tok = strtok_r(NULL, ",", &save)) {
    while (*tok == ' ')
      tok++;
    if (*tok == '\0')
      continue;
    if ((eq = strchr(tok, '=')) == NULL) {
      if ((lv = orr_log_level_parse(tok)) < 0)
        return orr_error_set(e, ORR_EINVAL,
                             "ORRERY_LOG: unknown level '%s' (expected off, "
                             "error, warn, info, debug or trace)",
                             tok);
      def = lv;
      continue;
    }
    *eq = '\0';
    if (*tok == '\0' || strlen(tok) >= COMP_MAX)
      return orr_error_set(e, ORR_EINVAL,
                           "ORRERY_LOG: '%s=%s': a component name is 1 to %d "
                           "bytes",
                           tok, eq + 1, COMP_MAX - 1);
    if ((lv = orr_log_level_parse(eq + 1)) < 0)
      return orr_error_set(e, ORR_EINVAL,
                           "ORRERY_LOG: '%s=%s': unknown level '%s' (expected "
                           "off, error, warn, info, debug or trace)",
                           tok, eq + 1, eq + 1);
    if (n == MAX_RULES)
      return orr_error_set(e, ORR_EINVAL,
                           "ORRERY_LOG: more than %d component entries",
                           MAX_RULES);
    snprintf(nr[n].comp, COMP_MAX, "%s", tok);
    nr[n++].level = lv;
  }
  pthread_mutex_lock(&mu);
  memcpy(rules, nr, sizeof(rule) * (size_t)n);
  nrules = n;
  default_level = def;
  recompute_max();
  pthread_mutex_unlock(&mu);
  return 0;
}

void orr_log_raise(int level) {
  pthread_mutex_lock(&mu);
  if (level > ORR_LOG_TRACE)
    level = ORR_LOG_TRACE;
  if (level > default_level)
    default_level = level;
  recompute_max();
  pthread_mutex_unlock(&mu);
}

void orr_log_init_env(void) {
  orr_error e;
  const char *v;

  if (env_done)
    return;
  env_done = 1;
  v = getenv("ORRERY_LOG");
  if (v != NULL && orr_log_configure(v, &e) != 0)
    fprintf(stderr, "orrery: %s (ignored)\n", e.msg);
}

int orr_log_set_file(const char *path, orr_error *e) {
  FILE *f = NULL;
  int fd;

  if (path != NULL) {
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
      return orr_error_set(e, ORR_EIO, "log file %s: %s", path,
                           strerror(errno));
    if ((f = fdopen(fd, "a")) == NULL) {
      close(fd);
      return orr_error_set(e, ORR_ENOMEM, "log file %s: %s", path,
                           strerror(errno));
    }
    setvbuf(f, NULL, _IOLBF, 0);
  }
  pthread_mutex_lock(&mu);
  if (out_file != NULL)
    fclose(out_file);
  out_file = f;
  pthread_mutex_unlock(&mu);
  return 0;
}

void orr_log_set_handler(orr_log_handler fn, void *arg, int echo) {
  pthread_mutex_lock(&mu);
  handler = fn;
  handler_arg = arg;
  handler_echo = fn == NULL || echo;
  pthread_mutex_unlock(&mu);
}

static int level_for(const char *component) {
  for (int i = 0; i < nrules; i++)
    if (component != NULL && strcmp(rules[i].comp, component) == 0)
      return rules[i].level;
  return default_level;
}

int orr_log_enabled(int level, const char *component) {
  int ok;
  if (level > max_level || level <= ORR_LOG_OFF)
    return 0;
  pthread_mutex_lock(&mu);
  ok = level <= level_for(component);
  pthread_mutex_unlock(&mu);
  return ok;
}

void orr_logv(int level, const char *component, const char *vm, const char *fmt,
              va_list ap) {
  char msg[4096], stamp[40];
  struct timeval tv;
  struct tm tm;
  orr_log_record rec;
  orr_log_handler h;
  void *harg;
  int echo;

  if (!orr_log_enabled(level, component))
    return;
  vsnprintf(msg, sizeof msg, fmt, ap);
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  rec = (orr_log_record){(int64_t)tv.tv_sec * 1000000 + tv.tv_usec, level,
                         component != NULL ? component : "orrery",
                         vm != NULL && vm[0] != '\0' ? vm : "", msg};
  pthread_mutex_lock(&mu);
  h = in_handler ? NULL : handler;
  harg = handler_arg;
  echo = handler_echo || h == NULL;
  if (echo)
    fprintf(out_file != NULL ? out_file : stderr, "%s.%06ldZ %s %s %s: %s\n",
            stamp, (long)tv.tv_usec, orr_log_level_name(level),
            rec.vm[0] != '\0' ? rec.vm : "-", rec.component, msg);
  pthread_mutex_unlock(&mu);
  if (h != NULL) {
    in_handler = 1;
    h(harg, &rec);
    in_handler = 0;
  }
}

void orr_log(int level, const char *component, const char *vm, const char *fmt,
             ...) {
  va_list ap;
  va_start(ap, fmt);
  orr_logv(level, component, vm, fmt, ap);
  va_end(ap);
}

/*
** The command line's view of the engine's log and events: -v, --log-file
** and `--events=FILE` (every VM event as one JSON line).
*/
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "cli.h"
#include "orrery/log.h"

int orr_cli_log_setup(const char *cmd, int verbose, const char *log_file) {
  orr_error e = {0, ""};
  /* ORRERY_LOG first, so -v raises what it asks for, never lowers it. */
  orr_log_init_env();
  if (verbose > 0)
    orr_log_raise(ORR_LOG_WARN + verbose);
  if (log_file != NULL && orr_log_set_file(log_file, &e) != 0) {
    fprintf(stderr, "%s%s%s: %s\n", orr_cli_progname, cmd ? " " : "",
            cmd ? cmd : "", e.msg);
    return ORR_EXIT_FAIL;
  }
  return ORR_EXIT_OK;
}

struct orr_cli_events {
  FILE *f;
  int own; /* fclose it (not stdout) */
};

static void on_event(void *arg, orr_vm *vm, const char *event, json_t *data) {
  orr_cli_events *ev = arg;
  struct timeval tv;
  json_t *line;
  char *text;
  gettimeofday(&tv, NULL);
  line = json_pack("{s:f, s:s, s:s, s:O?}", "Time",
                   (double)tv.tv_sec + (double)tv.tv_usec / 1e6, "Id",
                   orr_vm_id(vm), "Event", event, "Data", data);
  text = line != NULL ? json_dumps(line, JSON_COMPACT) : NULL;
  if (text != NULL) {
    fprintf(ev->f, "%s\n", text);
    fflush(ev->f);
  }
  free(text);
  json_decref(line);
}

static int install(lua_State *L) {
  orr_cli_events *ev = lua_touserdata(L, 1);
  orr_engine_on_event(orr_l_engine(L), on_event, ev);
  return 0;
}

orr_cli_events *orr_cli_events_open(lua_State *L, const char *path) {
  orr_cli_events *ev = calloc(1, sizeof *ev);
  if (ev == NULL)
    return NULL;
  if (strcmp(path, "-") == 0) {
    ev->f = stdout;
  } else if ((ev->f = fopen(path, "we")) == NULL) {
    fprintf(stderr, "%s: --events %s: %s\n", orr_cli_progname, path,
            strerror(errno));
    free(ev);
    return NULL;
  } else {
    ev->own = 1;
  }
  lua_pushcfunction(L, install);
  lua_pushlightuserdata(L, ev);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    orr_cli_report(L, LUA_ERRRUN);
    orr_cli_events_close(ev);
    return NULL;
  }
  return ev;
}

void orr_cli_events_close(orr_cli_events *ev) {
  if (ev == NULL)
    return;
  if (ev->own)
    fclose(ev->f);
  else
    fflush(ev->f);
  free(ev);
}

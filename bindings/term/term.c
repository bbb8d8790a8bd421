/* The terminal pieces' small helpers: the program's name in messages,
** error reports, closing a handle from outside the loop. */
#include "lua/l_util.h"
#include "term/term.h"

const char *orr_cli_progname = "orrery";

int orr_cli_report(lua_State *L, int status) {
  const char *msg;
  if (status == LUA_OK)
    return ORR_EXIT_OK;
  msg = lua_tostring(L, -1);
  fprintf(stderr, "%s: %s\n", orr_cli_progname,
          msg ? msg : "(error object is not a string)");
  fflush(stderr);
  lua_pop(L, 1);
  return ORR_EXIT_FAIL;
}

static void on_closed(uv_handle_t *h) {
  *(int *)h->data = 1;
}

static int is_set(void *arg) {
  return *(int *)arg;
}

void orr_cli_close_handle(lua_State *L, uv_handle_t *h) {
  int closed = 0;
  if (uv_is_closing(h))
    return;
  h->data = &closed;
  uv_close(h, on_closed);
  orr_l_run_until(L, is_set, &closed);
}

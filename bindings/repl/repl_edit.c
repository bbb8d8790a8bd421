/*
** Line editing: libedit's readline-compatible callback interface driven by
** a uv_poll on stdin, so the loop (QMP, timers, tasks) runs between keys.
**
** libedit's emulation lacks rl_clear_visible_line and makes rl_on_new_line
** and rl_free_line_state no-ops, so output above the prompt is done by
** hand: move to the prompt's first row, erase to the end of the screen,
** write, then rl_forced_update_display(), which in libedit forgets what it
** had drawn and redraws the prompt and the whole line, cursor included,
** from the current (fresh) row. A new empty prompt is
** rl_callback_handler_remove() + rl_callback_handler_install(): the install
** resets libedit's line buffer.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <editline/readline.h>

#include "repl.h"

#define HISTORY_MAX 1000

/* libedit's callbacks carry no argument. */
static orr_repl *active;
static char prompt_buf[128];

static void on_line(char *line) {
  orr_repl *r = active;
  /* libedit has already put the terminal back in cooked mode. */
  r->prompting = 0;
  r->on_line(r, line);
  free(line);
}

static void quit(orr_repl *r) {
  r->quit = 1;
  orr_repl_unprompt(r);
}

static void on_input(uv_poll_t *h, int status, int events) {
  orr_repl *r = h->data;
  if (status < 0 || (events & UV_DISCONNECT)) {
    quit(r); /* the terminal went away */
    return;
  }
  if (r->prompting)
    rl_callback_read_char();
}

static void on_winch(uv_signal_t *h, int signum) {
  (void)h, (void)signum;
  rl_resize_terminal();
}

/* A prompt from the global (a string, read raw: showing a prompt must not
** run user code), else the default. */
static const char *prompt_from(lua_State *L, const char *global,
                               const char *dflt) {
  const char *p = dflt;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  if (lua_getfield(L, -1, global) == LUA_TSTRING)
    p = lua_tostring(L, -1);
  snprintf(prompt_buf, sizeof prompt_buf, "%s", p);
  lua_pop(L, 2);
  return prompt_buf;
}

void orr_repl_prompt(orr_repl *r) {
  if (r->quit)
    return;
  r->prompt = r->len > 0 ? prompt_from(r->L, "_PROMPT2", ">> ")
                         : prompt_from(r->L, "_PROMPT", "> ");
  fflush(stdout);
  r->prompting = 1;
  rl_callback_handler_install(r->prompt, on_line);
  /* The install emptied libedit's line; its rl_point and rl_end catch up
  ** only after the next key, and Ctrl-C needs them right now. */
  rl_point = rl_end = 0;
  uv_poll_start(&r->input, UV_READABLE | UV_DISCONNECT, on_input);
}

void orr_repl_unprompt(orr_repl *r) {
  if (r->prompting) {
    rl_callback_handler_remove();
    r->prompting = 0;
  }
  if (r->edit_open)
    uv_poll_stop(&r->input);
}

int orr_repl_line_empty(const orr_repl *r) {
  return r->len == 0 && (!r->prompting || rl_end == 0);
}

static int screen_cols(void) {
  int cols = 0;
  rl_get_screen_size(NULL, &cols);
  return cols > 0 ? cols : 80;
}

/* Rows of the prompt plus line above the cursor, and below it. */
static void line_rows(const orr_repl *r, int *above, int *below) {
  int cols = screen_cols();
  int plen = (int)strlen(r->prompt ? r->prompt : "");
  *above = (plen + rl_point) / cols;
  *below = (plen + rl_end) / cols - *above;
}

/* "^C" after the last character typed, then a fresh prompt below. */
void orr_repl_cancel_line(orr_repl *r) {
  int above, below, col;
  if (r->prompting) {
    line_rows(r, &above, &below);
    col = (int)(strlen(r->prompt) + (size_t)rl_end) % screen_cols();
    if (below > 0)
      printf("\033[%dB", below);
    fputs("\r", stdout);
    if (col > 0)
      printf("\033[%dC", col);
    fputs("^C\n", stdout);
    rl_callback_handler_remove();
    r->prompting = 0;
  }
  r->len = 0;
  orr_repl_prompt(r);
}

void orr_repl_write_to(orr_repl *r, FILE *f, const char *text, size_t len) {
  int above, below;
  if (!r->prompting) {
    orr_progress_clear(r->progress); /* it redraws on its next tick */
    fwrite(text, 1, len, f);
    fflush(f);
    return;
  }
  line_rows(r, &above, &below);
  fputs("\r", stdout);
  if (above > 0)
    printf("\033[%dA", above);
  fputs("\033[J", stdout);
  fflush(stdout);
  fwrite(text, 1, len, f);
  if (len > 0 && text[len - 1] != '\n')
    fputc('\n', f);
  fflush(f);
  rl_forced_update_display();
}

void orr_repl_write(orr_repl *r, const char *text, size_t len) {
  orr_repl_write_to(r, stdout, text, len);
}

/* ---- History ------------------------------------------------------------ */

/* $XDG_STATE_HOME/orrery/history, else ~/.local/state/orrery/history; the
** directories are created private. Empty when there is no home. */
static void history_path(char *buf, size_t size) {
  const char *state = getenv("XDG_STATE_HOME");
  const char *home = getenv("HOME");
  buf[0] = '\0';
  if (state && state[0] == '/')
    snprintf(buf, size, "%s/orrery/history", state);
  else if (home && home[0] == '/')
    snprintf(buf, size, "%s/.local/state/orrery/history", home);
  for (char *p = buf + 1; *p; p++) {
    if (*p == '/') {
      *p = '\0';
      mkdir(buf, 0700);
      *p = '/';
    }
  }
}

void orr_repl_history_add(orr_repl *r, const char *chunk) {
  static char *last;
  if (chunk[strspn(chunk, " \t\n")] == '\0')
    return;
  if (last != NULL && strcmp(last, chunk) == 0)
    return;
  free(last);
  last = strdup(chunk);
  add_history(chunk);
  /* Saved now, not at exit, so a killed session keeps its history. */
  if (r->history[0])
    write_history(r->history);
}

/* ---- Set-up ------------------------------------------------------------- */

int orr_repl_edit_open(orr_repl *r) {
  int fd;
  active = r;
  /* Our SIGINT and SIGWINCH handling, not libedit's: its handlers
  ** re-raise to the whole process group. */
  rl_catch_signals = 0;
  rl_catch_sigwinch = 0;
  rl_readline_name = "orrery";
  rl_instream = stdin;
  rl_outstream = stdout;
  orr_repl_complete_init(r);
  if (rl_initialize() != 0)
    return -1;
  stifle_history(HISTORY_MAX);
  history_path(r->history, sizeof r->history);
  if (r->history[0]) {
    /* Chunks may hold secrets: the file is the user's alone. */
    if ((fd = open(r->history, O_WRONLY | O_CREAT | O_APPEND, 0600)) >= 0)
      close(fd);
    read_history(r->history);
  }
  if (uv_poll_init(r->loop, &r->input, STDIN_FILENO) != 0)
    return -1;
  /* uv_poll_init made the terminal non-blocking, and stdout shares that
  ** open file: put it back, or writes to a busy terminal fail with EAGAIN.
  ** libedit reads only when the poll says a key is there. */
  fd = 0;
  ioctl(STDIN_FILENO, FIONBIO, &fd);
  r->input.data = r;
  uv_signal_init(r->loop, &r->winch);
  uv_signal_start(&r->winch, on_winch, SIGWINCH);
  /* Neither handle may keep a finished session's loop alive. */
  uv_unref((uv_handle_t *)&r->winch);
  r->edit_open = 1;
  return 0;
}

void orr_repl_edit_close(orr_repl *r) {
  if (!r->edit_open)
    return;
  orr_repl_unprompt(r);
  if (r->history[0])
    write_history(r->history);
  orr_cli_close_handle(r->L, (uv_handle_t *)&r->input);
  orr_cli_close_handle(r->L, (uv_handle_t *)&r->winch);
  r->edit_open = 0;
  active = NULL;
}

/*
** The REPL's parts: line editing (repl_edit.c: libedit in callback mode on
** a uv_poll of stdin, history, output above the prompt), evaluation
** (repl_eval.c: lua5.4's rules for what a line means, each chunk run as a
** task), printing (repl_print.c) and Tab completion (repl_complete.c).
** repl.c ties them into the session.
**
** The loop is the engine's: while the prompt waits, VM events, timers and
** tasks keep running, and their output is written above the prompt.
*/
#ifndef ORR_REPL_H
#define ORR_REPL_H

#include <limits.h>

#include "term/term.h"

typedef struct orr_repl {
  lua_State *L;
  orr_l_ctx *ctx;
  uv_loop_t *loop;
  /* Line editing. */
  uv_poll_t input;    /* stdin is readable: feed libedit one key */
  uv_signal_t winch;  /* the terminal was resized */
  int edit_open;      /* libedit set up, handles open */
  int prompting;      /* a prompt is on screen, libedit owns the line */
  const char *prompt; /* the prompt shown (or to show) */
  char history[PATH_MAX];
  /* A line libedit read (NULL: Ctrl-D): evaluation's, set by repl.c, so
  ** that editing (the lowest part) never calls up into it. */
  void (*on_line)(struct orr_repl *r, const char *line);
  /* The statement being typed: the lines of an incomplete chunk. */
  char *chunk;
  size_t len, cap;
  /* Evaluation. */
  orr_l_task *task; /* the chunk's task, or NULL */
  int task_ref;     /* registry anchor of its userdata */
  orr_progress *progress;
  int ctrl_c; /* consecutive Ctrl-C at an empty prompt */
  int quit;   /* Ctrl-D: leave after this turn */
} orr_repl;

/* repl_edit.c */
int orr_repl_edit_open(orr_repl *r);
void orr_repl_edit_close(orr_repl *r);
/* Shows the prompt (_PROMPT, or _PROMPT2 inside a statement) and hands the
** terminal to libedit. */
void orr_repl_prompt(orr_repl *r);
/* Takes the terminal back from libedit (before evaluating). */
void orr_repl_unprompt(orr_repl *r);
/* Ctrl-C at the prompt: drops what was typed, prompts afresh. */
void orr_repl_cancel_line(orr_repl *r);
/* True when nothing is typed at the prompt. */
int orr_repl_line_empty(const orr_repl *r);
/*
** Writes text to stdout. While a prompt is on screen the prompt and the
** line being typed are erased first and redrawn after, so output from
** events and tasks lands above them instead of inside.
*/
void orr_repl_write(orr_repl *r, const char *text, size_t len);
/* The same to another stream of the terminal (stderr). */
void orr_repl_write_to(orr_repl *r, FILE *f, const char *text, size_t len);
void orr_repl_history_add(orr_repl *r, const char *chunk);

/* repl_eval.c */
/* A line from libedit (NULL: Ctrl-D). */
void orr_repl_line(orr_repl *r, const char *line);
/* True once the chunk's task has finished (or there is none). */
int orr_repl_idle(void *r);
/* After the task finished: prints its values or its error. */
void orr_repl_finish(orr_repl *r);
/* Ctrl-C (from the loop): interrupts the chunk's wait, or the prompt. */
void orr_repl_interrupt(void *r, int signals, int hook_fired);

/* repl_print.c */
/* Replaces the global print with one that writes through orr_repl_write;
** registers notify for orrery.session. */
void orr_repl_open_print(orr_repl *r);
/* Puts the original print back (the REPL's points at the REPL). */
void orr_repl_close_print(orr_repl *r);
/* Prints the values of the finished task at idx, lua5.4 style, with tables
** shown by orrery.pretty; or its error with the traceback. */
void orr_repl_print_outcome(orr_repl *r, int idx);

/* repl_complete.c */
void orr_repl_complete_init(orr_repl *r);

/* ---- The REPL as the command line calls it (repl.c) --------------------- */

/* Runs the interactive REPL on L until Ctrl-D; returns an exit code.
** Creates the session (VM tracking) unless orr_repl_session was called. */
int orr_repl_main(lua_State *L);
/* Starts tracking the VMs created from now on (orrery.session): for
** `orrery run -i`, before the recipe runs. Raises on failure. */
void orr_repl_session(lua_State *L);

#endif

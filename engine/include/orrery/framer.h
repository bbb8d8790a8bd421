/*
** A line framer for JSON-lines protocols (QMP, the QEMU guest agent): feed
** it the byte chunks a stream delivers, in any split, and it calls back once
** per complete line. One buffer, grown by doubling, holds only the partial
** line that straddles two chunks; a line found whole inside a chunk is
** handed out in place, without a copy.
*/
#ifndef ORRERY_FRAMER_H
#define ORRERY_FRAMER_H

#include "orrery/api.h"

#include <stddef.h>

/* QMP replies such as query-qmp-schema are a few hundred KiB; anything near
** this is a broken or hostile peer. */
#define ORR_FRAMER_DEFAULT_MAX (16u * 1024 * 1024)

/*
** Called for each line, without its "\n" and without a "\r" before it. The
** text is not NUL-terminated and lives only until the callback returns.
** Return 0 to go on, anything else to stop: orr_framer_feed() then drops
** the rest of the chunk and returns that value, so a callback that closed
** the connection is not called again for bytes that were already read.
** The callback may call orr_framer_resync() on the same framer.
*/
typedef int (*orr_framer_line_cb)(void *arg, const char *line, size_t len);

/* Embed it in the connection; the fields are private. */
typedef struct {
  orr_framer_line_cb cb;
  void *arg;
  size_t max; /* longest line accepted, "\r" included */
  char *buf;  /* the partial line carried between chunks */
  size_t len; /* bytes in buf */
  size_t cap; /* allocated size of buf */
  int resync; /* dropping input up to and including the next 0xFF */
  int err;    /* sticky: a failed framer refuses input until reset */
} orr_framer;

/* max 0 means ORR_FRAMER_DEFAULT_MAX. Allocates nothing. */
ORR_API void orr_framer_init(orr_framer *f, size_t max, orr_framer_line_cb cb,
                             void *arg);

/*
** Splits data into lines and calls cb for each. Returns 0, the callback's
** non-zero value, ORR_EIO when a line is longer than max (the peer is
** broken: drop the connection) or ORR_ENOMEM. After an error every later
** call returns the same error until orr_framer_reset().
*/
ORR_API int orr_framer_feed(orr_framer *f, const char *data, size_t len);

/*
** Drops the partial line and all further input up to and including the
** next 0xFF byte. The guest agent's guest-sync-delimited writes 0xFF just
** before its reply, so whatever stale output preceded it is skipped.
*/
ORR_API void orr_framer_resync(orr_framer *f);

/* Nonzero while a resync is still waiting for its 0xFF. */
ORR_API int orr_framer_resyncing(const orr_framer *f);

/* Forgets the partial line, the resync and a sticky error (a new stream). */
ORR_API void orr_framer_reset(orr_framer *f);

/* Frees the buffer; the framer may be initialized again. */
ORR_API void orr_framer_free(orr_framer *f);

#endif

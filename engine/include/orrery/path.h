/*
** Where a value sits inside a document, for error messages: a chain of
** frames on the C stack, one per level walked ("VirtualMachine",
** "Devices", "Scsi", [2]). The text is only formatted when a message needs
** it, never on the way down. Shared by the document checks and the Lua
** binding's table conversion, so both name a field the same way.
*/
#ifndef ORRERY_PATH_H
#define ORRERY_PATH_H

#include <stddef.h>

#include "orrery/api.h"

typedef struct orr_path {
  const struct orr_path *up; /* the enclosing value; NULL at the top */
  const char *key;           /* a field or map key; NULL: a list entry */
  size_t index;              /* the list entry's index when key is NULL */
} orr_path;

/* The path text of p ("A.B[2].C"; "" for NULL or a top frame with key ""),
** cut at len - 1 bytes; returns buf. */
ORR_API const char *orr_path_text(const orr_path *p, char *buf, size_t len);

#endif

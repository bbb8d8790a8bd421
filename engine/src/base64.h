/*
** Base64 (RFC 4648, standard alphabet, "=" padding) for the guest agent,
** whose protocol carries every byte string that way: exec stdin/stdout,
** file contents. None of our dependencies (libuv, Jansson, Lua) offers it,
** so it lives here; internal to the engine.
*/
#ifndef ORR_BASE64_H
#define ORR_BASE64_H

#include <stddef.h>

/* Encodes len bytes; returns a NUL-terminated malloc'd string (of
** 4 * ceil(len / 3) characters) or NULL when out of memory. */
char *orr__b64_encode(const void *data, size_t len);

/*
** Decodes text (len characters; whitespace is skipped, as the agent's GLib
** may wrap lines); returns malloc'd bytes with *out_len set, NUL-terminated
** for convenience, or NULL when out of memory or when text is not base64
** (*out_len is then 0).
*/
unsigned char *orr__b64_decode(const char *text, size_t len, size_t *out_len);

#endif

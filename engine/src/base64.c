#include <stdint.h>
#include <stdlib.h>

#include "base64.h"

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *orr__b64_encode(const void *data, size_t len) {
  const unsigned char *p = data;
  char *out, *o;
  size_t i;

  if (len > (SIZE_MAX - 1) / 4 * 3 - 2)
    return NULL;
  out = o = malloc((len + 2) / 3 * 4 + 1);
  if (out == NULL)
    return NULL;
  for (i = 0; i + 2 < len; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
    *o++ = alphabet[v >> 18];
    *o++ = alphabet[(v >> 12) & 63];
    *o++ = alphabet[(v >> 6) & 63];
    *o++ = alphabet[v & 63];
  }
  if (i < len) {
    uint32_t v = (uint32_t)p[i] << 16;
    if (i + 1 < len)
      v |= (uint32_t)p[i + 1] << 8;
    *o++ = alphabet[v >> 18];
    *o++ = alphabet[(v >> 12) & 63];
    *o++ = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
    *o++ = '=';
  }
  *o = '\0';
  return out;
}

/* 0..63 for an alphabet character, -1 for whitespace, -2 otherwise. */
static int value(unsigned char c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '+')
    return 62;
  if (c == '/')
    return 63;
  if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
    return -1;
  return -2;
}

unsigned char *orr__b64_decode(const char *text, size_t len, size_t *out_len) {
  unsigned char *out = malloc(len / 4 * 3 + 3), *o = out;
  uint32_t acc = 0;
  int n = 0, pad = 0;

  *out_len = 0;
  if (out == NULL)
    return NULL;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)text[i];
    int v;

    if (c == '=') {
      pad++;
      continue;
    }
    v = value(c);
    if (v == -1)
      continue;
    /* Data after padding, or a stray character: not base64. */
    if (v == -2 || pad > 0)
      goto bad;
    acc = acc << 6 | (uint32_t)v;
    if (++n == 4) {
      *o++ = (unsigned char)(acc >> 16);
      *o++ = (unsigned char)(acc >> 8);
      *o++ = (unsigned char)acc;
      acc = 0;
      n = 0;
    }
  }
  /* A lone sixth of a byte (n == 1) or too much padding cannot be. */
  if (n == 1 || pad > 2 || (pad > 0 && n + pad != 4))
    goto bad;
  if (n == 2) {
    *o++ = (unsigned char)(acc >> 4);
  } else if (n == 3) {
    *o++ = (unsigned char)(acc >> 10);
    *o++ = (unsigned char)(acc >> 2);
  }
  *o = '\0';
  *out_len = (size_t)(o - out);
  return out;
bad:
  free(out);
  return NULL;
}

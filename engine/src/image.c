/*
** Disk image headers and chains (image.h). The layouts are the formats'
** own (qcow2 docs/interop/qcow2.txt, QED docs/interop/qed_spec.txt, the
** VMDK, VHDX and VHD specifications) and QEMU 7.2's reading of them: a
** header is read here the way QEMU reads it, so that what the engine
** finds is what QEMU would have followed.
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image.h"

#define PROBE_SIZE 2048 /* QEMU's BLOCK_PROBE_BUF_SIZE */

/* ---- reading -------------------------------------------------------------
 */

/* Reads n bytes at off; a short read leaves zeros (as QEMU's probe sees a
** short file). Returns the bytes really read, or -1. */
static ssize_t read_at(int fd, void *buf, size_t n, uint64_t off) {
  size_t got = 0;
  memset(buf, 0, n);
  if (off > (uint64_t)INT64_MAX - n)
    return -1;
  while (got < n) {
    ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return -1;
    if (r == 0)
      break;
    got += (size_t)r;
  }
  return (ssize_t)got;
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}
static uint64_t be64(const uint8_t *p) {
  return (uint64_t)be32(p) << 32 | be32(p + 4);
}
static uint16_t be16(const uint8_t *p) {
  return (uint16_t)(p[0] << 8 | p[1]);
}
static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 |
         p[0];
}
static uint64_t le64(const uint8_t *p) {
  return (uint64_t)le32(p + 4) << 32 | le32(p);
}
static uint16_t le16(const uint8_t *p) {
  return (uint16_t)(p[1] << 8 | p[0]);
}

/* A name of n bytes at off into out (NUL-terminated); it may not hold a
** NUL itself (QEMU would cut it there, and the two would disagree). */
static int read_name(int fd, uint64_t off, size_t n, char *out, size_t size,
                     const char *what, orr_error *e) {
  if (n >= size)
    return orr_error_set(e, ORR_EINVAL, "the %s name is too long (%zu bytes)",
                         what, n);
  if (read_at(fd, out, n, off) != (ssize_t)n)
    return orr_error_set(e, ORR_EINVAL, "the %s name lies past the end", what);
  out[n] = '\0';
  if (strlen(out) != n)
    return orr_error_set(e, ORR_EINVAL, "the %s name holds a NUL byte", what);
  return 0;
}

static bool has_ext(const char *path, const char *ext) {
  const char *slash = strrchr(path, '/');
  const char *dot = strrchr(slash ? slash : path, '.');
  return dot != NULL && strcasecmp(dot, ext) == 0;
}

/* ---- probing ---------------------------------------------------------------
 */

static int vmdk_text_probe(const uint8_t *buf, size_t n) {
  const char *p = (const char *)buf, *end = p + n;
  while (p < end) {
    if (*p == '#') { /* a comment line */
      while (p < end && *p != '\n')
        p++;
      p++;
      continue;
    }
    if (*p == ' ') { /* only blank lines before "version=" */
      while (p < end && *p == ' ')
        p++;
      if (p < end && *p == '\r')
        p++;
      if (p == end || *p != '\n')
        return 0;
      p++;
      continue;
    }
    for (char v = '1'; v <= '3'; v++) {
      char lf[] = "version=X\n", crlf[] = "version=X\r\n";
      lf[8] = crlf[8] = v;
      if ((size_t)(end - p) >= 10 && memcmp(p, lf, 10) == 0)
        return 100;
      if ((size_t)(end - p) >= 11 && memcmp(p, crlf, 11) == 0)
        return 100;
    }
    return 0;
  }
  return 0;
}

static bool is_cstr(const uint8_t *field, size_t size, const char *s) {
  size_t n = strnlen((const char *)field, size);
  return n < size && n == strlen(s) && memcmp(field, s, n) == 0;
}

/* QEMU 7.2's probers over the first PROBE_SIZE bytes, in the order its
** drivers register; the first highest score wins, raw scores 1. */
static const char *probe_buf(const uint8_t *b, const char *name) {
  static const char cloop[] =
      "#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 "
      "/dev/cloop $1\n";
  size_t n = name ? strlen(name) : 0;
  struct {
    const char *format;
    int score;
  } s[] = {
      {"bochs",
       is_cstr(b, 32, "Bochs Virtual HD Image") &&
               is_cstr(b + 32, 16, "Redolog") &&
               is_cstr(b + 48, 16, "Growing") &&
               (le32(b + 64) == 0x00020000 || le32(b + 64) == 0x00010000)
           ? 100
           : 0},
      {"cloop", memcmp(b, cloop, sizeof cloop - 1) == 0 ? 2 : 0},
      {"dmg", n > 4 && strcmp(name + n - 4, ".dmg") == 0 ? 2 : 0},
      {"luks", memcmp(b, "LUKS\xba\xbe", 6) == 0 && be16(b + 6) == 1 ? 100 : 0},
      {"parallels", (memcmp(b, "WithoutFreeSpace", 16) == 0 ||
                     memcmp(b, "WithouFreSpacExt", 16) == 0) &&
                            le32(b + 16) == 2
                        ? 100
                        : 0},
      {"qcow", memcmp(b, "QFI\xfb", 4) == 0 && be32(b + 4) == 1 ? 100 : 0},
      {"qcow2", memcmp(b, "QFI\xfb", 4) == 0 && be32(b + 4) >= 2 ? 100 : 0},
      {"qed", le32(b) == 0x00444551 ? 100 : 0},
      {"vdi", le32(b + 64) == 0xbeda107f ? 100 : 0},
      {"vhdx", memcmp(b, "vhdxfile", 8) == 0 ? 100 : 0},
      {"vmdk", memcmp(b, "COWD", 4) == 0 || memcmp(b, "KDMV", 4) == 0
                   ? 100
                   : vmdk_text_probe(b, PROBE_SIZE)},
      {"vpc", memcmp(b, "conectix", 8) == 0 ? 100 : 0},
  };
  const char *best = "raw";
  int score = 1;
  for (size_t i = 0; i < sizeof s / sizeof *s; i++)
    if (s[i].score > score) {
      score = s[i].score;
      best = s[i].format;
    }
  return best;
}

const char *orr__image_probe(int fd, const char *name) {
  uint8_t b[PROBE_SIZE];
  struct stat st;
  /* QEMU takes an empty image as raw without probing. */
  if (fstat(fd, &st) != 0 || st.st_size == 0 || read_at(fd, b, sizeof b, 0) < 0)
    return "raw";
  return probe_buf(b, name);
}

const char *orr__image_top_format(int fd, const char *path) {
  uint8_t head[8], foot[512];
  struct stat st;
  if (has_ext(path, ".raw") || has_ext(path, ".iso"))
    return "raw";
  if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    if (read_at(fd, head, sizeof head, 0) == (ssize_t)sizeof head) {
      if (memcmp(head, "QFI\xfb", 4) == 0)
        return be32(head + 4) == 1 ? "qcow" : "qcow2";
      if (memcmp(head, "vhdxfile", 8) == 0)
        return "vhdx";
      if (memcmp(head, "conectix", 8) == 0)
        return "vpc";
    }
    if (st.st_size >= (off_t)sizeof foot &&
        read_at(fd, foot, sizeof foot, (uint64_t)st.st_size - sizeof foot) ==
            (ssize_t)sizeof foot &&
        memcmp(foot, "conectix", 8) == 0)
      return "vpc";
  }
  if (has_ext(path, ".qcow2"))
    return "qcow2";
  if (has_ext(path, ".vhdx"))
    return "vhdx";
  if (has_ext(path, ".vhd") || has_ext(path, ".vpc"))
    return "vpc";
  return "raw";
}

bool orr__image_has_backing(const char *format) {
  return strcmp(format, "qcow2") == 0 || strcmp(format, "qcow") == 0 ||
         strcmp(format, "qed") == 0 || strcmp(format, "vmdk") == 0;
}

/* ---- headers ---------------------------------------------------------------
 */

#define QCOW2_INCOMPAT_DATA_FILE (1u << 2)
#define QCOW2_INCOMPAT_KNOWN                                                   \
  0x1fu /* dirty, corrupt, data file, compression,                             \
           extended L2 */
#define QCOW2_AUTOCLEAR_DATA_FILE_RAW (1u << 1)
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau
#define QCOW2_EXT_DATA_FILE 0x44415441u

static int qcow2_refs(int fd, orr_image_refs *r, orr_error *e) {
  uint8_t h[112];
  uint64_t backing_off, incompat = 0, autoclear = 0, cluster, end, off;
  uint32_t version, backing_len, header_len = 72, bits;
  uint8_t *ext = NULL;
  int rc = 0;

  if (read_at(fd, h, sizeof h, 0) < 72)
    return orr_error_set(e, ORR_EINVAL, "a qcow2 header is cut short");
  version = be32(h + 4);
  bits = be32(h + 20);
  if (version != 2 && version != 3)
    return orr_error_set(e, ORR_ENOTSUP, "qcow2 version %u is not supported",
                         version);
  if (bits < 9 || bits > 21)
    return orr_error_set(e, ORR_EINVAL, "qcow2 cluster bits %u is out of range",
                         bits);
  if (be32(h + 32) != 0)
    return orr_error_set(e, ORR_ENOTSUP,
                         "the qcow2 image is encrypted, and a document cannot "
                         "carry its key");
  cluster = 1ull << bits;
  if (version == 3) {
    incompat = be64(h + 72);
    autoclear = be64(h + 88);
    header_len = be32(h + 100);
    if (header_len < 104 || header_len > cluster)
      return orr_error_set(e, ORR_EINVAL, "qcow2 header length %u is bad",
                           header_len);
    if (incompat & ~(uint64_t)QCOW2_INCOMPAT_KNOWN)
      return orr_error_set(e, ORR_ENOTSUP,
                           "the qcow2 image has unknown incompatible features "
                           "(0x%llx)",
                           (unsigned long long)incompat);
  }
  backing_off = be64(h + 8);
  backing_len = be32(h + 16);
  if (backing_off != 0) {
    if (backing_off > cluster || backing_len > 1023 ||
        backing_len > cluster - backing_off)
      return orr_error_set(e, ORR_EINVAL, "the qcow2 backing file name is bad");
    if ((rc = read_name(fd, backing_off, backing_len, r->backing,
                        sizeof r->backing, "backing file", e)) != 0)
      return rc;
  }
  /* Header extensions: from the header's end to the backing file name or
  ** the end of the first cluster, as QEMU reads them. */
  end = backing_off ? backing_off : cluster;
  if (end > header_len) {
    size_t n = (size_t)(end - header_len);
    if ((ext = malloc(n)) == NULL)
      return orr_error_set(e, ORR_ENOMEM, "out of memory");
    read_at(fd, ext, n, header_len);
    for (off = 0; off + 8 <= n;) {
      uint32_t type = be32(ext + off), len = be32(ext + off + 4);
      const uint8_t *data = ext + off + 8;
      if (type == 0)
        break;
      if (len > n - off - 8) {
        rc = orr_error_set(e, ORR_EINVAL,
                           "a qcow2 header extension runs past its space");
        break;
      }
      if (type == QCOW2_EXT_BACKING_FORMAT) {
        if (len >= sizeof r->backing_format || len >= 16) {
          rc = orr_error_set(e, ORR_EINVAL,
                             "the qcow2 backing format is too long");
          break;
        }
        memcpy(r->backing_format, data, len);
        r->backing_format[len] = '\0';
      } else if (type == QCOW2_EXT_DATA_FILE) {
        if (len >= sizeof r->data_file) {
          rc = orr_error_set(e, ORR_EINVAL,
                             "the qcow2 data file name is too long");
          break;
        }
        memcpy(r->data_file, data, len);
        r->data_file[len] = '\0';
        if (strlen(r->data_file) != len) {
          rc = orr_error_set(e, ORR_EINVAL,
                             "the qcow2 data file name holds a NUL byte");
          break;
        }
      }
      off += 8 + (((uint64_t)len + 7) & ~(uint64_t)7);
    }
    free(ext);
    if (rc != 0)
      return rc;
  }
  /* A data file counts only with its incompatible bit, and that bit wants
  ** one (QEMU: "'data-file' is required for this image"). */
  if (!(incompat & QCOW2_INCOMPAT_DATA_FILE)) {
    r->data_file[0] = '\0';
  } else if (r->data_file[0] == '\0') {
    return orr_error_set(e, ORR_EINVAL,
                         "the qcow2 image says it has an external data file "
                         "but names none");
  }
  r->data_file_raw = (autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW) != 0;
  return 0;
}

static int qcow_refs(int fd, orr_image_refs *r, orr_error *e) {
  uint8_t h[48];
  uint64_t off;
  uint32_t len;
  if (read_at(fd, h, sizeof h, 0) < 48)
    return orr_error_set(e, ORR_EINVAL, "a qcow header is cut short");
  if (be32(h + 36) != 0)
    return orr_error_set(e, ORR_ENOTSUP,
                         "the qcow image is encrypted, and a document cannot "
                         "carry its key");
  off = be64(h + 8);
  len = be32(h + 16);
  if (off == 0)
    return 0;
  if (len > 1023)
    return orr_error_set(e, ORR_EINVAL,
                         "the qcow backing file name is too "
                         "long");
  return read_name(fd, off, len, r->backing, sizeof r->backing, "backing file",
                   e);
}

#define QED_F_BACKING_FILE 0x01u
#define QED_F_BACKING_FORMAT_NO_PROBE 0x04u
#define QED_F_KNOWN 0x07u

static int qed_refs(int fd, orr_image_refs *r, orr_error *e) {
  uint8_t h[64];
  uint64_t features;
  int rc;
  if (read_at(fd, h, sizeof h, 0) < 64)
    return orr_error_set(e, ORR_EINVAL, "a QED header is cut short");
  features = le64(h + 16);
  if (features & ~(uint64_t)QED_F_KNOWN)
    return orr_error_set(e, ORR_ENOTSUP,
                         "the QED image has unknown features (0x%llx)",
                         (unsigned long long)features);
  if (!(features & QED_F_BACKING_FILE))
    return 0;
  if ((rc = read_name(fd, le32(h + 56), le32(h + 60), r->backing,
                      sizeof r->backing, "backing file", e)) != 0)
    return rc;
  if (features & QED_F_BACKING_FORMAT_NO_PROBE)
    snprintf(r->backing_format, sizeof r->backing_format, "raw");
  return 0;
}

/* A sparse VMDK ("KDMV", "COWD") is its own only extent; its parent is the
** parentFileNameHint of the descriptor QEMU reads at 0x200, and QEMU 7.2
** opens that parent as a VMDK. A descriptor file instead names its extents:
** files QEMU would open by name, which QAPI cannot pass. */
#define VMDK_DESC_OFFSET 0x200
#define VMDK_DESC_SIZE (20 * 512)

static int vmdk_refs(int fd, orr_image_refs *r, orr_error *e) {
  static const char key[] = "parentFileNameHint";
  char *desc = malloc(VMDK_DESC_SIZE + 1), *p, *q;
  uint8_t magic[4];
  int rc = 0;
  if (desc == NULL)
    return orr_error_set(e, ORR_ENOMEM, "out of memory");
  read_at(fd, magic, sizeof magic, 0);
  if (memcmp(magic, "KDMV", 4) != 0 && memcmp(magic, "COWD", 4) != 0) {
    free(desc);
    return orr_error_set(e, ORR_ENOTSUP,
                         "a VMDK descriptor file keeps its data in extent "
                         "files QEMU would open by name; use a "
                         "monolithicSparse VMDK");
  }
  read_at(fd, desc, VMDK_DESC_SIZE, VMDK_DESC_OFFSET);
  desc[VMDK_DESC_SIZE] = '\0';
  if ((p = strstr(desc, key)) != NULL) {
    /* QEMU skips `parentFileNameHint="` without looking at it. */
    p += sizeof key + 1;
    if (p >= desc + VMDK_DESC_SIZE || (q = strchr(p, '"')) == NULL) {
      rc = orr_error_set(e, ORR_EINVAL,
                         "the VMDK parentFileNameHint is not quoted");
    } else if ((size_t)(q - p) >= sizeof r->backing) {
      rc = orr_error_set(e, ORR_EINVAL, "the VMDK parent name is too long");
    } else {
      memcpy(r->backing, p, (size_t)(q - p));
      r->backing[q - p] = '\0';
      snprintf(r->backing_format, sizeof r->backing_format, "vmdk");
    }
  }
  free(desc);
  return rc;
}

/* UTF-16 (le or be) of n bytes into ASCII for a message. */
static void utf16_ascii(const uint8_t *s, size_t n, bool le, char *out,
                        size_t size) {
  size_t o = 0;
  for (size_t i = 0; i + 1 < n && o + 1 < size; i += 2) {
    uint16_t c = le ? le16(s + i) : be16(s + i);
    if (c == 0)
      break;
    out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
  }
  out[o] = '\0';
}

static const uint8_t VHDX_METADATA_GUID[16] = {
    0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b,
    0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e};
static const uint8_t VHDX_FILE_PARAMS_GUID[16] = {
    0x37, 0x67, 0xa1, 0xca, 0x36, 0xfa, 0x43, 0x4d,
    0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b};
static const uint8_t VHDX_PARENT_LOCATOR_GUID[16] = {
    0x2d, 0x5f, 0xd3, 0xa8, 0x0b, 0xb3, 0x4d, 0x45,
    0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c};

/* The parent's path from a VHDX parent locator at off, for the message. */
static void vhdx_parent(int fd, uint64_t off, uint32_t len, char *out,
                        size_t size) {
  uint8_t *loc;
  snprintf(out, size, "a parent");
  if (len < 20 || len > 65536 || (loc = malloc(len)) == NULL)
    return;
  if (read_at(fd, loc, len, off) == (ssize_t)len) {
    uint16_t count = le16(loc + 18);
    for (uint32_t i = 0; i < count && 20 + 12 * (i + 1) <= len; i++) {
      const uint8_t *kv = loc + 20 + 12 * i;
      uint32_t ko = le32(kv), vo = le32(kv + 4);
      uint16_t kl = le16(kv + 8), vl = le16(kv + 10);
      char k[64];
      if (ko > len || kl > len - ko || vo > len || vl > len - vo)
        break;
      utf16_ascii(loc + ko, kl, true, k, sizeof k);
      if (strcmp(k, "relative_path") == 0 ||
          strcmp(k, "absolute_win32_path") == 0) {
        out[0] = '"';
        utf16_ascii(loc + vo, vl, true, out + 1, size - 2);
        strncat(out, "\"", size - strlen(out) - 1);
        break;
      }
    }
  }
  free(loc);
}

/* A differencing VHDX (HasParent): QEMU 7.2 cannot open it. */
static int vhdx_refs(int fd, orr_error *e) {
  uint8_t rt[16 + 32 * 64], md[32 + 32 * 64];
  uint64_t md_off = 0;
  uint32_t entries;
  char parent[300];
  bool has_parent = false;
  uint64_t loc_off = 0;
  uint32_t loc_len = 0;
  if (read_at(fd, rt, sizeof rt, 192 * 1024) < 16 ||
      le32(rt) != 0x69676572 /* "regi" */)
    return 0; /* QEMU says what is wrong with it */
  entries = le32(rt + 8);
  for (uint32_t i = 0; i < entries && i < 64; i++)
    if (memcmp(rt + 16 + 32 * i, VHDX_METADATA_GUID, 16) == 0)
      md_off = le64(rt + 16 + 32 * i + 16);
  if (md_off == 0 || read_at(fd, md, sizeof md, md_off) < 32 ||
      memcmp(md, "metadata", 8) != 0)
    return 0;
  entries = le16(md + 10);
  for (uint32_t i = 0; i < entries && i < 64; i++) {
    const uint8_t *m = md + 32 + 32 * i;
    uint8_t params[8];
    if (memcmp(m, VHDX_FILE_PARAMS_GUID, 16) == 0 &&
        read_at(fd, params, sizeof params, md_off + le32(m + 16)) == 8)
      has_parent = (le32(params + 4) & 0x2) != 0;
    if (memcmp(m, VHDX_PARENT_LOCATOR_GUID, 16) == 0) {
      loc_off = md_off + le32(m + 16);
      loc_len = le32(m + 20);
    }
  }
  if (!has_parent)
    return 0;
  vhdx_parent(fd, loc_off, loc_len, parent, sizeof parent);
  return orr_error_set(e, ORR_ENOTSUP,
                       "it is a differencing VHDX (its parent is %s), which "
                       "QEMU 7.2 cannot open",
                       parent);
}

/* A differencing VHD: QEMU 7.2 opens it as a dynamic one and never reads
** its parent, so the guest would see holes where the parent has data. */
static int vpc_refs(int fd, orr_error *e) {
  uint8_t f[512], dyn[1024];
  struct stat st;
  char parent[300];
  if (fstat(fd, &st) != 0 || read_at(fd, f, sizeof f, 0) < 512)
    return 0;
  if (memcmp(f, "conectix", 8) != 0 &&
      (st.st_size < 512 ||
       read_at(fd, f, sizeof f, (uint64_t)st.st_size - 512) != 512))
    return 0;
  if (memcmp(f, "conectix", 8) != 0 || be32(f + 60) != 4)
    return 0;
  snprintf(parent, sizeof parent, "a parent");
  if (read_at(fd, dyn, sizeof dyn, be64(f + 16)) == (ssize_t)sizeof dyn &&
      memcmp(dyn, "cxsparse", 8) == 0) {
    parent[0] = '"';
    utf16_ascii(dyn + 64, 512, false, parent + 1, sizeof parent - 2);
    strncat(parent, "\"", sizeof parent - strlen(parent) - 1);
  }
  return orr_error_set(e, ORR_ENOTSUP,
                       "it is a differencing VHD (its parent is %s), which "
                       "QEMU 7.2 would open without its parent",
                       parent);
}

int orr__image_refs(int fd, const char *format, orr_image_refs *r,
                    orr_error *e) {
  memset(r, 0, sizeof *r);
  if (strcmp(format, "qcow2") == 0)
    return qcow2_refs(fd, r, e);
  if (strcmp(format, "qcow") == 0)
    return qcow_refs(fd, r, e);
  if (strcmp(format, "qed") == 0)
    return qed_refs(fd, r, e);
  if (strcmp(format, "vmdk") == 0)
    return vmdk_refs(fd, r, e);
  if (strcmp(format, "vhdx") == 0)
    return vhdx_refs(fd, e);
  if (strcmp(format, "vpc") == 0)
    return vpc_refs(fd, e);
  if (strcmp(format, "luks") == 0)
    return orr_error_set(e, ORR_ENOTSUP,
                         "it is a LUKS image, and a document cannot carry its "
                         "key");
  /* Formats that name no other file. */
  if (strcmp(format, "raw") == 0 || strcmp(format, "vdi") == 0 ||
      strcmp(format, "parallels") == 0 || strcmp(format, "bochs") == 0 ||
      strcmp(format, "cloop") == 0 || strcmp(format, "dmg") == 0)
    return 0;
  return orr_error_set(e, ORR_EINVAL,
                       "\"%s\" is not a disk image format QEMU 7.2 opens",
                       format);
}

/* ---- chains ----------------------------------------------------------------
 */

void orr__image_free(orr_image *img) {
  while (img != NULL) {
    orr_image *next = img->backing;
    free(img->data_file);
    free(img);
    img = next;
  }
}

/* QEMU's path_has_protocol(): a ':' before any '/'. "json:{...}" is one. */
static bool has_protocol(const char *name) {
  const char *p = name + strcspn(name, ":/");
  return *p == ':';
}

/* name as QEMU resolves a file a header names: relative to the directory
** of the image naming it. */
static int resolve(const char *parent, const char *name, char *out, size_t size,
                   const char *what, orr_error *e) {
  const char *slash = strrchr(parent, '/');
  int n;
  if (name[0] == '\0')
    return orr_error_set(e, ORR_EINVAL, "%s names an empty file", what);
  if (has_protocol(name))
    return orr_error_set(e, ORR_EPERM,
                         "%s names \"%s\": a protocol or json: pseudo-file, "
                         "which is never followed",
                         what, name);
  if (name[0] == '/' || slash == NULL)
    n = snprintf(out, size, "%s", name);
  else
    n = snprintf(out, size, "%.*s/%s", (int)(slash - parent), parent, name);
  if (n < 0 || (size_t)n >= size)
    return orr_error_set(e, ORR_EINVAL, "%s names a path too long", what);
  return 0;
}

typedef struct {
  orr_image_open_fn open;
  void *arg;
  int k; /* files opened so far */
  dev_t dev[2 * ORR_IMAGE_MAX_CHAIN];
  ino_t ino[2 * ORR_IMAGE_MAX_CHAIN];
} walk;

/* Opens one file of the chain into img (name set); refuses a file seen
** before in this chain. */
static int open_member(walk *w, orr_image *img, const char *what, bool lenient,
                       int *fd, orr_error *e) {
  struct stat st;
  int rc;
  if (w->k >= 2 * ORR_IMAGE_MAX_CHAIN)
    return orr_error_set(e, ORR_EINVAL, "%s: the chain is too long", what);
  if ((rc = w->open(w->arg, img->name, what, img->writable, w->k, lenient, fd,
                    &st, img->ref, sizeof img->ref, &img->locking_off, e)) != 0)
    return rc;
  if (*fd < 0)
    return 0;
  for (int i = 0; i < w->k; i++)
    if (w->dev[i] == st.st_dev && w->ino[i] == st.st_ino)
      return orr_error_set(e, ORR_EINVAL,
                           "%s: %s is already in the chain (a cycle)", what,
                           img->name);
  w->dev[w->k] = st.st_dev;
  w->ino[w->k] = st.st_ino;
  w->k++;
  return 0;
}

/* The driver name f as a static string, or NULL if it is no image format
** (a backing format may name any driver: "nbd", "host_device", ...). */
static const char *image_format(const char *f) {
  static const char *const formats[] = {
      "raw", "qcow2", "qcow",  "qed",   "vmdk", "vhdx",     "vpc",
      "vdi", "luks",  "bochs", "cloop", "dmg",  "parallels"};
  for (size_t i = 0; i < sizeof formats / sizeof *formats; i++)
    if (strcmp(f, formats[i]) == 0)
      return formats[i];
  return NULL;
}

int orr__image_chain(const char *path, bool writable, const char *what,
                     orr_image_open_fn open, void *arg, orr_image **out,
                     orr_error *e) {
  walk w = {open, arg, 0, {0}, {0}};
  orr_image *top = calloc(1, sizeof *top), *img = top;
  char shown[1024]; /* the image being read, for messages */
  int depth, fd, rc;

  *out = NULL;
  if (top == NULL)
    return orr_error_set(e, ORR_ENOMEM, "out of memory");
  snprintf(top->name, sizeof top->name, "%s", path);
  top->writable = writable;
  if ((rc = open_member(&w, top, what, true, &fd, e)) != 0)
    goto fail;
  top->format = orr__image_top_format(fd, path);
  if (fd < 0) { /* QEMU will say what is wrong with it */
    *out = top;
    return 0;
  }
  snprintf(shown, sizeof shown, "%s", what);
  for (depth = 1;; depth++) {
    orr_image_refs r;
    char sub[1024];
    if ((rc = orr__image_refs(fd, img->format, &r, e)) != 0) {
      orr_error_prefix(e, shown);
      goto fail;
    }
    if (r.data_file[0] != '\0') {
      orr_image *d = calloc(1, sizeof *d);
      int dfd;
      if ((img->data_file = d) == NULL) {
        rc = orr_error_set(e, ORR_ENOMEM, "out of memory");
        goto fail;
      }
      snprintf(sub, sizeof sub, "%.900s, its data file", shown);
      d->format = "raw";
      d->writable = img->writable; /* written with the image */
      if ((rc = resolve(img->name, r.data_file, d->name, sizeof d->name, sub,
                        e)) != 0 ||
          (rc = open_member(&w, d, sub, false, &dfd, e)) != 0)
        goto fail;
    }
    if (r.backing[0] == '\0')
      break;
    snprintf(sub, sizeof sub, "%.900s, backing file %d", what, depth);
    if (depth >= ORR_IMAGE_MAX_CHAIN) {
      rc = orr_error_set(e, ORR_EINVAL,
                         "%s: the backing chain is deeper than %d images", sub,
                         ORR_IMAGE_MAX_CHAIN);
      goto fail;
    }
    if ((img->backing = calloc(1, sizeof *img)) == NULL) {
      rc = orr_error_set(e, ORR_ENOMEM, "out of memory");
      goto fail;
    }
    img->backing->writable = false; /* QEMU only reads a backing file */
    if ((rc = resolve(img->name, r.backing, img->backing->name,
                      sizeof img->backing->name, sub, e)) != 0)
      goto fail;
    img = img->backing;
    if ((rc = open_member(&w, img, sub, false, &fd, e)) != 0)
      goto fail;
    /* Pinned: the header's format, else what QEMU would have probed. */
    if (r.backing_format[0] == '\0') {
      img->format = orr__image_probe(fd, img->name);
    } else if ((img->format = image_format(r.backing_format)) == NULL) {
      rc = orr_error_set(e, ORR_EPERM,
                         "%s: its backing format \"%s\" is no disk image "
                         "format (a protocol or filter driver is never "
                         "followed)",
                         sub, r.backing_format);
      goto fail;
    }
    snprintf(shown, sizeof shown, "%s", sub);
  }
  *out = top;
  return 0;
fail:
  orr__image_free(top);
  return rc;
}

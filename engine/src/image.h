/*
** Disk image chains, inspected before QEMU sees them. One job: read the
** headers of every format QEMU 7.2 can open or probe, through the
** descriptor the engine opened, find every other file an image names
** (backing file, qcow2 external data file, VMDK parent), and turn the
** whole chain into explicit block nodes, so that QEMU never follows a name
** read from a header and never probes a format.
**
** Why: a header is data anyone who can write the image controls, the guest
** included (a guest can write a qcow2 header into its raw disk). Left to
** QEMU, a header names files QEMU then opens, writes (an external data
** file) or locks, protocols it connects to (nbd:, http:), or a json:
** pseudo-filename with any driver and option at all.
**
** The rules (every mode, confined or not; the policy adds its own through
** the opener):
**   - a named file is resolved as QEMU would (relative to the directory of
**     the image naming it) and must be a regular file;
**   - a name with a protocol prefix (anything before a ':' ahead of the
**     first '/', "json:" included) is refused;
**   - a chain is at most ORR_IMAGE_MAX_CHAIN images deep and has no cycle;
**   - an image without a backing format is probed exactly as QEMU 7.2
**     would probe it (orr__image_probe), and the result is then pinned;
**   - what QEMU 7.2 cannot open correctly is refused with the reason:
**     encrypted images (no key in a document), unknown incompatible
**     features, VMDK descriptor files (their extents are files QEMU would
**     open by name, and QAPI cannot pass them), differencing VHDX and VHD
**     images (QEMU would ignore their parent and show wrong data).
*/
#ifndef ORR_IMAGE_H
#define ORR_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "orrery/error.h"

#define ORR_IMAGE_MAX_CHAIN 16 /* images in a backing chain, the top too */
#define ORR_IMAGE_NAME_MAX 4096

/* What one header names. */
typedef struct {
  char backing[ORR_IMAGE_NAME_MAX];   /* "" when none */
  char backing_format[32];            /* "" when the header says none */
  char data_file[ORR_IMAGE_NAME_MAX]; /* qcow2 external data file, or "" */
  bool data_file_raw;                 /* its autoclear "raw" bit */
} orr_image_refs;

/*
** The format QEMU 7.2 would probe the image as (bdrv_find_format's
** probers, first 2048 bytes, highest score wins; "dmg" goes by the name).
** fd is read with pread; name is the file's name as QEMU would see it.
*/
const char *orr__image_probe(int fd, const char *name);

/*
** The engine's own rule for the image a document names (never probed by
** QEMU): ".raw"/".iso" pin raw (a guest that writes a qcow2 header into
** its raw disk must not turn it into a qcow2 with a backing file of its
** choice); else the content says qcow2 ("QFI\xfb", any version; qcow v1
** as "qcow"), vhdx or vpc (a VHD footer at the start or the end); else
** the extension .qcow2, .vhdx, .vhd/.vpc; else raw. fd < 0: by name only.
*/
const char *orr__image_top_format(int fd, const char *path);

/*
** The references in the header of an image of format (a QEMU driver name),
** read through fd. ORR_ENOTSUP for what QEMU 7.2 cannot open correctly,
** ORR_EINVAL for a header that is not one; the message says why (the
** caller prefixes the file).
*/
int orr__image_refs(int fd, const char *format, orr_image_refs *r,
                    orr_error *e);

/* One image of a chain. */
typedef struct orr_image orr_image;
struct orr_image {
  char name[ORR_IMAGE_NAME_MAX]; /* as given, or as QEMU would resolve it */
  const char *format;            /* the QEMU driver it is opened with */
  bool writable;
  char ref[ORR_IMAGE_NAME_MAX]; /* what its file node's filename is */
  bool locking_off;             /* its file node must not lock it */
  orr_image *backing;           /* NULL: none (the chain stops here) */
  orr_image *data_file;         /* a qcow2's external data file, or NULL */
};

/*
** Opens the k-th file of a chain (0: the image itself; what names it in
** messages) for the chain's walk: *fd (kept by the opener until the walk ends)
*is read for its
** header, *st for the cycle check; ref and *locking_off are what its file
** node gets. lenient (the image itself, an unconfined engine): a file that
** cannot be opened is not an error: *fd is -1, and QEMU will say what is
** wrong with it.
*/
typedef int (*orr_image_open_fn)(void *arg, const char *name, const char *what,
                                 bool writable, int k, bool lenient, int *fd,
                                 struct stat *st, char *ref, size_t size,
                                 bool *locking_off, orr_error *e);

/*
** Walks the chain of the image at path (opened writable, or not), opening
** each file through open. what names the image in messages. On success
** *out is the chain (orr__image_free it); every file after the first is
** named in messages with the image that named it.
*/
int orr__image_chain(const char *path, bool writable, const char *what,
                     orr_image_open_fn open, void *arg, orr_image **out,
                     orr_error *e);
void orr__image_free(orr_image *img);

/* Whether format takes a "backing" option in QEMU 7.2's blockdev-add. */
bool orr__image_has_backing(const char *format);

#endif

/*
** The default guest image, recognised by what it is: a directory holding
** the manifest orrery-guest.json next to the kernel and the initramfs it
** names (vendor/guest/build-guest.sh writes it):
**
**   {"orrery_guest": 1, "kernel": "vmlinux", "bzimage": "vmlinuz",
**    "initrd": "initramfs.cpio", "cmdline": "console=ttyS0 ...",
**    "agent": "org.qemu.guest_agent.0", "ready_line": "orrery-guest: ready",
**    "kernel_release": "6.1.0-56-amd64"}
**
** "kernel", "initrd" and "cmdline" are required; file names are relative
** to the manifest's directory. A VM whose KernelFilePath is a kernel some
** manifest names (the one next to it, after resolving symlinks) gets the
** guest agent port by default (create option guest_agent = -1), wherever
** the directory lies.
*/
#ifndef ORRERY_GUEST_IMAGE_H
#define ORRERY_GUEST_IMAGE_H

#include <stddef.h>

#include "orrery/api.h"
#include "orrery/error.h"

#define ORR_GUEST_MANIFEST "orrery-guest.json"

typedef struct {
  char dir[512];        /* the image's directory, as given or found */
  char kernel[640];     /* dir/<kernel>: the uncompressed ELF kernel */
  char bzimage[640];    /* dir/<bzimage>, the same kernel compressed, or "" */
  char initrd[640];     /* dir/<initrd> */
  char cmdline[1024];   /* the kernel command line to boot it with */
  char agent[64];       /* virtio-serial port name of its agent, or "" */
  char ready_line[128]; /* the console line that says it booted, or "" */
  char release[64];     /* the kernel's release (uname -r), or "" */
} orr_guest_image;

/*
** Reads the manifest in dir and checks that the kernel and initramfs it
** names are readable. Returns 0, ORR_ENOENT (no manifest, or a file it
** names is missing) or ORR_EINVAL (the manifest is malformed; the message
** names the field).
*/
ORR_API int orr_guest_image_load(const char *dir, orr_guest_image *img,
                                 orr_error *e);

/*
** The default guest: $ORRERY_GUEST_DIR when set (and only there), else the
** installation's (orr_install_dir(ORR_DIR_GUEST)), then
** /usr/local/share/orrery/guest and /usr/share/orrery/guest. Returns 0, or
** ORR_ENOENT with a message saying where it looked and how to get one.
*/
ORR_API int orr_guest_image_default(orr_guest_image *img, orr_error *e);

/* 1 when kernel_path, symlinks resolved, is the kernel (or bzImage) of
** the image whose manifest lies in the same directory and loads; 0
** otherwise. */
ORR_API int orr_guest_image_is_kernel(const char *kernel_path);

#endif

/*
** Landlock for the QEMU of a confined engine (defence in depth, under the
** descriptors the engine passes and QEMU's own -sandbox): a ruleset the
** child applies to itself just before exec (orr_process_options), so that
** even a QEMU a guest took over writes nowhere but its runtime directory,
** the files and shares it was given for writing and the devices it needs,
** and (Landlock ABI 6 on) signals no process outside itself and reaches no
** abstract unix socket outside. Reads are not restricted: the policy does
** not restrict reads either.
*/
#ifndef ORR_LANDLOCK_H
#define ORR_LANDLOCK_H

#include <stddef.h>

#include "hostres.h"
#include "orrery/error.h"

/*
** A ruleset for a QEMU running in run_dir and inheriting hr's descriptors
** (their orr__hostres_writes say which it may write through). *ruleset is
** its descriptor (close-on-exec; the caller closes it after the spawn), or
** -1 when the kernel has no Landlock: then nothing is added and 0 returned.
** *abi gets the Landlock ABI version used (0: none).
*/
int orr__landlock_qemu(const char *run_dir, const orr_hostres *hr, int *ruleset,
                       int *abi, orr_error *e);

#endif

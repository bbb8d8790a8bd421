/*
** The builder: assembles a compute system document, one operation per
** hcsshim builder method. It never touches the host. Every operation is
** all-or-nothing: it works on a copy and swaps it in only when every field
** and every cross-field rule holds, so a failed call leaves the document
** exactly as it was. Fields are written once: an operation that would
** overwrite or drop something an earlier one set is refused (EEXIST).
**
** Setting arguments are borrowed JSON objects with HCS field names.
** Messages start with the operation's Lua name and name the field and rule:
** "set_memory: SizeInMB must be an integer in 1..1048576, got -5".
*/
#ifndef ORRERY_BUILDER_H
#define ORRERY_BUILDER_H

#include <jansson.h>

#include "orrery/document.h"
#include "orrery/error.h"

typedef struct orr_builder orr_builder;

/* options may be NULL or hold ShouldTerminateOnLastHandleClosed and
** StopOnReset booleans to override hcsshim's defaults. */
ORR_API int orr_builder_new(const char *owner, const json_t *options,
                            orr_builder **out, orr_error *e);
/* A builder holding a checked copy of doc (builder_from). */
ORR_API int orr_builder_from_doc(const json_t *doc, orr_builder **out,
                                 orr_error *e);
ORR_API void orr_builder_free(orr_builder *b);

/* The live document; valid until the next operation. Do not modify. */
ORR_API const json_t *orr_builder_doc(const orr_builder *b);
/* The whole-document check a backend runs before create. */
ORR_API int orr_builder_check(const orr_builder *b, orr_error *e);

ORR_API int orr_builder_set_memory(orr_builder *b, const json_t *memory,
                                   orr_error *e);
ORR_API int orr_builder_set_processor(orr_builder *b, const json_t *processor,
                                      orr_error *e);
ORR_API int orr_builder_set_cpu_group(orr_builder *b, const json_t *group,
                                      orr_error *e);
ORR_API int orr_builder_set_numa(orr_builder *b, const json_t *numa,
                                 orr_error *e);
ORR_API int orr_builder_set_numa_processors(orr_builder *b,
                                            const json_t *settings,
                                            orr_error *e);
ORR_API int orr_builder_set_uefi_boot(orr_builder *b, const json_t *boot_entry,
                                      orr_error *e);
ORR_API int orr_builder_set_linux_kernel_direct_boot(orr_builder *b,
                                                     const json_t *options,
                                                     orr_error *e);
ORR_API int orr_builder_set_storage_qos(orr_builder *b, const json_t *qos,
                                        orr_error *e);
ORR_API int orr_builder_add_scsi_controller(orr_builder *b, long long index,
                                            orr_error *e);
ORR_API int orr_builder_add_scsi_disk(orr_builder *b, long long controller,
                                      long long lun, const json_t *attachment,
                                      orr_error *e);
ORR_API int orr_builder_add_vpci_device(orr_builder *b, const char *vmbus_guid,
                                        const json_t *device, orr_error *e);
ORR_API int orr_builder_add_vpmem_controller(orr_builder *b,
                                             long long maximum_count,
                                             long long maximum_size_bytes,
                                             orr_error *e);
ORR_API int orr_builder_add_vpmem_device(orr_builder *b, long long id,
                                         const json_t *device, orr_error *e);
ORR_API int orr_builder_add_vsmb(orr_builder *b, const json_t *settings,
                                 orr_error *e);
ORR_API int orr_builder_add_vsmb_share(orr_builder *b, const json_t *share,
                                       orr_error *e);
ORR_API int orr_builder_add_plan9_share(orr_builder *b, const json_t *share,
                                        orr_error *e);
ORR_API int orr_builder_set_serial_console(orr_builder *b, long long port,
                                           const char *listener_path,
                                           orr_error *e);
ORR_API int orr_builder_add_network_adapter(orr_builder *b,
                                            const char *nic_guid,
                                            const json_t *adapter,
                                            orr_error *e);
ORR_API int orr_builder_enable_graphics_console(orr_builder *b, orr_error *e);

#endif

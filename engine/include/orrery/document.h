/*
** The compute system document: an HCS schema 2.1 ComputeSystem held as a
** Jansson tree with HCS's exact keys. The document is the contract between
** the builder, the VM manager and every backend.
*/
#ifndef ORRERY_DOCUMENT_H
#define ORRERY_DOCUMENT_H

#include <jansson.h>

#include "orrery/error.h"

#define ORR_SCSI_CONTROLLERS 4
#define ORR_SCSI_LUNS 64
#define ORR_COM_PORTS 4

/* HCS's fixed GUID for SCSI controller 0..3; NULL outside that range. */
ORR_API const char *orr_scsi_controller_guid(int index);
/* The index of a controller GUID, or -1. */
ORR_API int orr_scsi_controller_index(const char *guid);

/* A new document with hcsshim's defaults (SchemaVersion 2.1, StopOnReset,
** ShouldTerminateOnLastHandleClosed, the HvSocket bind descriptor). */
ORR_API json_t *orr_doc_new(const char *owner);

/*
** Validates a whole document: every field against the schema, then every
** cross-field rule (boot exclusivity, NUMA sums, unique PCI functions and
** MACs, ...). On success *out is a new normalized copy: keys in HCS order,
** and Go's zero values left out as hcsshim's JSON leaves them out.
*/
ORR_API int orr_doc_check(const json_t *doc, json_t **out, orr_error *e);

/* Parses JSON text and checks it as above. */
ORR_API int orr_doc_parse(const char *text, size_t len, json_t **out,
                          orr_error *e);

/* JSON text of a document, byte for byte what hcsshim's marshaller (Go's
** encoding/json over its schema2 structs) writes for it; pretty is Go's
** MarshalIndent with two spaces. free() the result. */
ORR_API char *orr_doc_dump(const json_t *doc, int pretty);

/*
** Cross-field rules alone, on a document whose fields are already valid.
** With `complete` unset, a rule whose other half is still missing (NUMA
** nodes before memory is set) passes; the builder uses that between calls.
*/
ORR_API int orr_doc_rules(const json_t *doc, int complete, orr_error *e);

/*
** The schema as data, for tools (orrery.schema()) and the spec that holds
** it against hcsshim's structs: {ComputeSystem = T, ModifySettingRequest =
** T, ProcessorLimits = T, Plan9ShareRemove = T, and one T per GuestRequest
** ResourceType whose Settings Orrery checks}. A type T is {name, kind
** ("object", "map", "array", "string", "bool", "int", "number", "any",
** "unsupported"), fields = [{name, required, pointer, value, alias, type =
** T}], elem = T, min, max, values = [enum values]}. A new reference.
*/
ORR_API json_t *orr_doc_schema(void);

#endif

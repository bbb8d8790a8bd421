/*
** KubeVirt's published v1 API schema, compiled into the engine (the kubevirt
** backend checks what it makes against it; docs/kubevirt.md): for recipes
** and tests that want to check a VirtualMachine, a JSON Patch or a whole
** API request the way the backend's own tests do.
*/
#ifndef ORRERY_KUBEVIRT_H
#define ORRERY_KUBEVIRT_H

#include <jansson.h>

#include "orrery/api.h"
#include "orrery/error.h"

/* Where the schema comes from: {"repository", "file", "version", "commit",
** ...}; borrowed. */
ORR_API const json_t *orr_kubevirt_schema_source(void);

/* Checks v against a definition of the schema ("v1.VirtualMachine"): field
** names, types, formats, required fields and enums. ORR_EINVAL names the
** field (prefixed with where) and the rule. */
ORR_API int orr_kubevirt_check(const char *definition, const json_t *v,
                               const char *where, orr_error *e);

/* Checks an API request {"method", "path", "body"?} against the schema's
** operations: the path is one of them, the query names only parameters it
** takes, and the body is valid for it (a JSON Patch: against its target). */
ORR_API int orr_kubevirt_check_request(const json_t *req, orr_error *e);

#endif

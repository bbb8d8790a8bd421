/*
** The HCS schema 2.1 types that make up a compute system document, as data.
** One table describes every group, so parsing, validation, key order on
** output and error messages all come from the same place.
*/
#ifndef ORR_SCHEMA_H
#define ORR_SCHEMA_H

#include <jansson.h>
#include <stdint.h>

#include "orrery/error.h"

typedef enum {
  ORR_K_STRING,
  ORR_K_BOOL,
  ORR_K_INT,
  ORR_K_NUMBER,      /* a Go float64 */
  ORR_K_OBJECT,      /* fixed fields, HCS names */
  ORR_K_MAP,         /* free keys checked by key_check, values of elem */
  ORR_K_ARRAY,       /* values of elem */
  ORR_K_ANY,         /* any JSON value, copied as is (a Go interface{}) */
  ORR_K_UNSUPPORTED, /* a known HCS field Orrery does not build */
} orr_kind;

/* String checks; each returns NULL when the value is fine, else the rule. */
typedef const char *(*orr_str_check)(const char *s, size_t len);

typedef struct orr_type orr_type;

/*
** How a field behaves, after hcsshim's Go struct: every schema2 field is
** `omitempty`, so a field holding Go's zero value (false, 0, "", an empty
** list or map) is left out of the document and of its JSON, unless the Go
** field is a pointer (then a present zero is kept and written). A struct
** held by value (not a pointer) is always written, even empty.
*/
enum {
  ORR_F_REQUIRED = 1, /* must be given, and not as a zero value */
  ORR_F_PTR = 2,      /* a Go pointer to a scalar: a zero value is kept */
  ORR_F_VALUE = 4,    /* a Go struct held by value: always present */
  ORR_F_ALIAS = 8,    /* accepted as input only; the type's fix folds it
                         into another field (never stored or written) */
};

typedef struct {
  const char *name;
  const orr_type *type;
  int flags; /* ORR_F_* */
} orr_field;

/* A rule over a whole object once its fields are normalized; may change
** obj (fold an alias). Returns NULL, or the rule broken and the field. */
typedef const char *(*orr_obj_fix)(json_t *obj, const char **field);

struct orr_type {
  orr_kind kind;
  const char *name;          /* HCS (Go) type name, for messages */
  int64_t min, max;          /* ORR_K_INT range; ORR_K_ARRAY fewest entries */
  const char *const *values; /* ORR_K_STRING enum, NULL-terminated */
  orr_str_check check;       /* ORR_K_STRING extra rule */
  const orr_field *fields;   /* ORR_K_OBJECT, terminated by name NULL */
  const orr_type *elem;      /* ORR_K_MAP / ORR_K_ARRAY */
  orr_str_check key_check;   /* ORR_K_MAP */
  size_t max_items;          /* ORR_K_MAP / ORR_K_ARRAY, 0 = unbounded */
  orr_obj_fix fix;           /* ORR_K_OBJECT, may be NULL */
  int value_fields;          /* ORR_K_OBJECT: has an ORR_F_VALUE field */
};

/* True when v is the Go zero value of field f's type, which omitempty
** leaves out (never for a pointer or a struct, nor for a value of another
** JSON type than the field's). */
static inline int orr__go_empty(const orr_field *f, const json_t *v) {
  int ptr = (f->flags & ORR_F_PTR) != 0;
  switch (f->type->kind) {
  case ORR_K_STRING:
    return !ptr && json_is_string(v) && json_string_length(v) == 0;
  case ORR_K_BOOL:
    return !ptr && json_is_false(v);
  case ORR_K_INT:
    return !ptr && json_is_integer(v) && json_integer_value(v) == 0;
  case ORR_K_NUMBER:
    return !ptr && json_is_number(v) && json_number_value(v) == 0.0;
  case ORR_K_MAP:
    return json_is_object(v) && json_object_size(v) == 0;
  case ORR_K_ARRAY:
    return json_is_array(v) && json_array_size(v) == 0;
  default:
    return 0;
  }
}

/* The index of the field `key` of an object type t, or -1. */
static inline int orr__field_index(const orr_type *t, const char *key) {
  /* An inline byte loop: field names are short and most differ in the
  ** first byte, and this runs for every key of every document. */
  for (int i = 0; t->fields[i].name != NULL; i++) {
    const char *a = t->fields[i].name, *b = key;
    while (*a != '\0' && *a == *b)
      a++, b++;
    if (*a == *b)
      return i;
  }
  return -1;
}

/* The types the builder and the VM manager need by name. */
extern const orr_type orr__t_compute_system;
extern const orr_type orr__t_memory;
extern const orr_type orr__t_processor;
extern const orr_type orr__t_cpu_group;
extern const orr_type orr__t_numa;
extern const orr_type orr__t_numa_processors;
extern const orr_type orr__t_uefi_boot_entry;
extern const orr_type orr__t_linux_kernel_direct;
extern const orr_type orr__t_storage_qos;
extern const orr_type orr__t_attachment;
extern const orr_type orr__t_vpci_device;
extern const orr_type orr__t_vpmem_controller;
extern const orr_type orr__t_vpmem_device;
extern const orr_type orr__t_vsmb;
extern const orr_type orr__t_vsmb_share;
extern const orr_type orr__t_plan9_share;
extern const orr_type orr__t_plan9_share_ref;
extern const orr_type orr__t_network_adapter;
extern const orr_type orr__t_processor_limits;
extern const orr_type orr__t_modify_request;

/* The Settings type of a GuestRequest of this ResourceType, or NULL for
** one whose Settings Orrery does not check. */
const orr_type *orr__guest_settings_type(const char *resource_type);

/* String rules shared with the builder. */
/* The one GUID checker: 8-4-4-4-12 hex digits, either case. */
const char *orr__check_guid(const char *s, size_t len);
/* One of HCS's four SCSI controller GUIDs (document.c), either case. */
const char *orr__check_scsi_guid(const char *s, size_t len);
const char *orr__check_mac(const char *s, size_t len);
/* The one spelling of a GUID Orrery stores: lower case (GUIDs compare
** case-insensitively, so two spellings must never be two devices). Copies
** at most 36 characters. */
void orr__guid_lower(char out[37], const char *guid);
/* A map keyed by GUIDs: its keys are stored by orr__guid_lower. */
static inline int orr__guid_keyed(const orr_type *t) {
  return t->key_check == orr__check_guid ||
         t->key_check == orr__check_scsi_guid;
}
const char *orr__check_abs_path(const char *s, size_t len);
const char *orr__check_socket_path(const char *s, size_t len);
const char *orr__check_lun_key(const char *s, size_t len);
const char *orr__check_base64(const char *s, size_t len);

/* The i-th type a document or a request starts from, and its name (for
** orr_doc_schema); NULL past the last. */
const orr_type *orr__schema_root(size_t i, const char **name);

/*
** Checks `in` against `type` and returns a new normalized copy in *out
** (scalars shared, never changed in place): keys in schema order, maps
** sorted by key, JSON null treated as absent, an empty object accepted
** where an array is expected (Lua cannot tell them apart), integral reals
** turned into integers, Go's zero values of omitempty fields left out,
** structs Go holds by value filled in, aliases folded (Plan9 ReadOnly into
** Flags). On failure returns ORR_EINVAL with e->msg "<path> <rule>, got
** <value>" and *out untouched. `path` names the value in messages ("" for
** the top).
*/
int orr__schema_normalize(const orr_type *type, const json_t *in,
                          const char *path, json_t **out, orr_error *e);

/*
** The cross-field rules of orr_doc_rules, one bit each. Each rule reads one
** part of the document only (named here); a builder operation runs the
** rules of the parts it writes, since the document it starts from already
** satisfies all of them.
*/
enum {
  ORR_RULE_BOOT = 1 << 0,   /* Chipset.Uefi, Chipset.LinuxKernelDirect */
  ORR_RULE_NUMA = 1 << 1,   /* Numa; Memory.SizeInMB; Processor.Count and
                               .NumaProcessorsSettings */
  ORR_RULE_VPCI = 1 << 2,   /* Devices.VirtualPci */
  ORR_RULE_NICS = 1 << 3,   /* Devices.NetworkAdapters */
  ORR_RULE_SCSI = 1 << 4,   /* Devices.Scsi.*.Attachments */
  ORR_RULE_SHARES = 1 << 5, /* Devices.Plan9.Shares, Devices.VirtualSmb */
  ORR_RULE_VPMEM = 1 << 6,  /* Devices.VirtualPMem */
  ORR_RULE_COM = 1 << 7,    /* Devices.ComPorts */
  ORR_RULES_ALL = 0xff
};
int orr__doc_rules_some(const json_t *doc, int complete, unsigned mask,
                        orr_error *e);
/* ORR_RULE_SCSI for one attachment of the Devices.Scsi map `scsi` (at
** controller GUID ctrl, LUN key lun) against all the others: what adding it
** can break. */
int orr__rule_scsi_path(const json_t *scsi, const char *ctrl, const char *lun,
                        const json_t *attachment, orr_error *e);

/*
** Writes v as JSON text of `type` in one pass: object keys in schema order,
** map keys sorted, `indent` spaces per level (0: one line). v must already
** be in normal form (as orr__schema_normalize returns it); otherwise
** returns ORR_EINVAL and the caller normalizes first. *text is malloc'd.
*/
int orr__schema_dump(const orr_type *type, const json_t *v, int indent,
                     char **text);

/* orr__schema_normalize for an object (at the top, path ""), except that
** its own fields holding Go's zero value are kept: the builder records
** that they were set. */
int orr__schema_normalize_keep_zero(const orr_type *type, const json_t *in,
                                    json_t **out, orr_error *e);

/* A type as data, for orr_doc_schema: {name, kind, fields = [{name,
** required, pointer, value, alias, type}], elem, min, max, values}. */
json_t *orr__schema_describe(const orr_type *t);

/* A short human rendering of a JSON value for messages. */
void orr__json_brief(const json_t *v, char *buf, size_t len);

#endif

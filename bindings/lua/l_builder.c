/*
** orrery.Builder: a userdata over orr_builder. The bindings only convert
** arguments; every rule lives in the engine.
*/
#include <stdlib.h>
#include <string.h>

#include "l_orrery.h"
#include "l_util.h"
#include "orrery/builder.h"

typedef struct {
  orr_builder *b; /* NULL once closed */
} lbuilder;

static lbuilder *check_open(lua_State *L) {
  lbuilder *lb = luaL_checkudata(L, 1, ORR_L_BUILDER);
  if (lb->b == NULL)
    luaL_error(L, "attempt to use a closed " ORR_L_BUILDER);
  return lb;
}

orr_builder *orr_l_checkbuilder(lua_State *L, int idx) {
  lbuilder *lb = luaL_checkudata(L, idx, ORR_L_BUILDER);
  if (lb->b == NULL)
    luaL_error(L, "attempt to use a closed " ORR_L_BUILDER);
  return lb->b;
}

orr_builder *orr_l_testbuilder(lua_State *L, int idx) {
  lbuilder *lb = luaL_testudata(L, idx, ORR_L_BUILDER);
  return lb ? lb->b : NULL;
}

void orr_l_pushbuilder(lua_State *L, orr_builder *b) {
  lbuilder *lb = lua_newuserdatauv(L, sizeof *lb, 0);
  lb->b = b;
  luaL_setmetatable(L, ORR_L_BUILDER);
}

/* Integer argument: the engine checks the range and names it. */
static long long int_arg(lua_State *L, int idx, const char *op,
                         const char *name) {
  int isint = 0;
  lua_Integer v = lua_tointegerx(L, idx, &isint);
  /* 2.0 is 2, as table fields accept it; "2" is not a number here. */
  orr_error e;
  if (isint && lua_type(L, idx) == LUA_TNUMBER)
    return (long long)v;
  orr_error_set(&e, ORR_EINVAL, "%s: %s must be an integer, got %s", op, name,
                lua_type(L, idx) == LUA_TNUMBER ? "a non-integer number"
                                                : luaL_typename(L, idx));
  return orr_l_raise(L, &e);
}

static const char *str_arg(lua_State *L, int idx, const char *op,
                           const char *name) {
  size_t len;
  const char *s;
  if (lua_type(L, idx) != LUA_TSTRING) {
    orr_error e;
    orr_error_set(&e, ORR_EINVAL, "%s: %s must be a string, got %s", op, name,
                  luaL_typename(L, idx));
    orr_l_raise(L, &e);
  }
  s = lua_tolstring(L, idx, &len);
  if (strlen(s) != len) {
    orr_error e;
    orr_error_set(&e, ORR_EINVAL, "%s: %s must not contain a NUL byte", op,
                  name);
    orr_l_raise(L, &e);
  }
  return s;
}

/* Runs op(builder, json-of-arg-2) and raises on failure; returns self. */
typedef int (*set_fn)(orr_builder *, const json_t *, orr_error *);
static int call_set(lua_State *L, const char *op, set_fn fn, int argidx) {
  lbuilder *lb = check_open(L);
  orr_error e = {0, ""};
  json_t *arg = orr_l_checkjson(L, argidx, op);
  int rc = fn(lb->b, arg, &e);
  json_decref(arg);
  if (rc != 0)
    return orr_l_raise(L, &e);
  lua_settop(L, 1);
  return 1; /* self, so calls can chain */
}

#define SETTER(lname, cfn)                                                     \
  static int l_##lname(lua_State *L) {                                         \
    return call_set(L, #lname, cfn, 2);                                        \
  }
SETTER(set_memory, orr_builder_set_memory)
SETTER(set_processor, orr_builder_set_processor)
SETTER(set_cpu_group, orr_builder_set_cpu_group)
SETTER(set_numa, orr_builder_set_numa)
SETTER(set_numa_processors, orr_builder_set_numa_processors)
SETTER(set_uefi_boot, orr_builder_set_uefi_boot)
SETTER(set_linux_kernel_direct_boot, orr_builder_set_linux_kernel_direct_boot)
SETTER(set_storage_qos, orr_builder_set_storage_qos)
SETTER(add_vsmb, orr_builder_add_vsmb)
SETTER(add_vsmb_share, orr_builder_add_vsmb_share)
SETTER(add_plan9_share, orr_builder_add_plan9_share)

static int finish(lua_State *L, int rc, orr_error *e) {
  if (rc != 0)
    return orr_l_raise(L, e);
  lua_settop(L, 1);
  return 1;
}

static int l_add_scsi_controller(lua_State *L) {
  lbuilder *lb = check_open(L);
  orr_error e = {0, ""};
  long long idx = int_arg(L, 2, "add_scsi_controller", "controller");
  return finish(L, orr_builder_add_scsi_controller(lb->b, idx, &e), &e);
}

static int l_add_scsi_disk(lua_State *L) {
  lbuilder *lb = check_open(L);
  orr_error e = {0, ""};
  long long c = int_arg(L, 2, "add_scsi_disk", "controller");
  long long lun = int_arg(L, 3, "add_scsi_disk", "lun");
  json_t *att = orr_l_checkjson(L, 4, "add_scsi_disk");
  int rc = orr_builder_add_scsi_disk(lb->b, c, lun, att, &e);
  json_decref(att);
  return finish(L, rc, &e);
}

static int l_add_vpci_device(lua_State *L) {
  lbuilder *lb = check_open(L);
  orr_error e = {0, ""};
  const char *guid = str_arg(L, 2, "add_vpci_device", "vmbus_guid");
  json_t *dev = orr_l_checkjson(L, 3, "add_vpci_device");
  int rc = orr_builder_add_vpci_device(lb->b, guid, dev, &e);
  json_decref(dev);
  return finish(L, rc, &e);
}

static int l_add_vpmem_controller(lua_State *L) {
  lbuilder *lb = check_open(L);
  orr_error e = {0, ""};
  long long n = int_arg(L, 2, "add_vpmem_controller", "maximum_count");
  long long sz = int_arg(L, 3, "add_vpmem_controller", "maximum_size_bytes");
  return finish(L, orr_builder_add_vpmem_controller(lb->b, n, sz, &e), &e);
}

static int l_add_vpmem_device(lua_State *L) {
  lbuilder *lb = check_open(L);
  orr_error e = {0, ""};
  long long id = int_arg(L, 2, "add_vpmem_device", "id");
  json_t *dev = orr_l_checkjson(L, 3, "add_vpmem_device");
  int rc = orr_builder_add_vpmem_device(lb->b, id, dev, &e);
  json_decref(dev);
  return finish(L, rc, &e);
}

static int l_set_serial_console(lua_State *L) {
  lbuilder *lb = check_open(L);
  orr_error e = {0, ""};
  long long port = int_arg(L, 2, "set_serial_console", "port");
  const char *path = str_arg(L, 3, "set_serial_console", "listener path");
  return finish(L, orr_builder_set_serial_console(lb->b, port, path, &e), &e);
}

static int l_add_network_adapter(lua_State *L) {
  lbuilder *lb = check_open(L);
  orr_error e = {0, ""};
  const char *guid = str_arg(L, 2, "add_network_adapter", "nic id");
  json_t *nic = orr_l_checkjson(L, 3, "add_network_adapter");
  int rc = orr_builder_add_network_adapter(lb->b, guid, nic, &e);
  json_decref(nic);
  return finish(L, rc, &e);
}

static int l_enable_graphics_console(lua_State *L) {
  lbuilder *lb = check_open(L);
  orr_error e = {0, ""};
  return finish(L, orr_builder_enable_graphics_console(lb->b, &e), &e);
}

static int l_document(lua_State *L) {
  lbuilder *lb = check_open(L);
  orr_l_pushjson(L, orr_builder_doc(lb->b));
  return 1;
}

static int l_json(lua_State *L) {
  lbuilder *lb = check_open(L);
  int pretty = 0;
  char *text;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "pretty");
    pretty = lua_toboolean(L, -1);
  }
  text = orr_doc_dump(orr_builder_doc(lb->b), pretty);
  lua_pushstring(L, text);
  free(text);
  return 1;
}

/* b:validate() -> true | nil, msg, code: the check create runs. */
static int l_validate(lua_State *L) {
  lbuilder *lb = check_open(L);
  orr_error e = {0, ""};
  if (orr_builder_check(lb->b, &e) != 0)
    return orr_l_fail(L, &e);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_gc(lua_State *L) {
  lbuilder *lb = luaL_checkudata(L, 1, ORR_L_BUILDER);
  orr_builder_free(lb->b);
  lb->b = NULL;
  return 0;
}

static int l_tostring(lua_State *L) {
  lbuilder *lb = luaL_checkudata(L, 1, ORR_L_BUILDER);
  if (lb->b == NULL) {
    lua_pushfstring(L, ORR_L_BUILDER ": %p (closed)", (void *)lb);
    return 1;
  }
  const json_t *doc = orr_builder_doc(lb->b);
  lua_pushfstring(L, ORR_L_BUILDER ": %p (owner=%s)", (void *)lb,
                  json_string_value(json_object_get(doc, "Owner")));
  return 1;
}

static const luaL_Reg methods[] = {
    {"set_memory", l_set_memory},
    {"set_processor", l_set_processor},
    {"set_cpu_group", l_set_cpu_group},
    {"set_numa", l_set_numa},
    {"set_numa_processors", l_set_numa_processors},
    {"set_uefi_boot", l_set_uefi_boot},
    {"set_linux_kernel_direct_boot", l_set_linux_kernel_direct_boot},
    {"set_storage_qos", l_set_storage_qos},
    {"add_scsi_controller", l_add_scsi_controller},
    {"add_scsi_disk", l_add_scsi_disk},
    {"add_vpci_device", l_add_vpci_device},
    {"add_vpmem_controller", l_add_vpmem_controller},
    {"add_vpmem_device", l_add_vpmem_device},
    {"add_vsmb", l_add_vsmb},
    {"add_vsmb_share", l_add_vsmb_share},
    {"add_plan9_share", l_add_plan9_share},
    {"set_serial_console", l_set_serial_console},
    {"add_network_adapter", l_add_network_adapter},
    {"enable_graphics_console", l_enable_graphics_console},
    {"document", l_document},
    {"json", l_json},
    {"validate", l_validate},
    {"close", l_gc},
    {NULL, NULL}};

static const luaL_Reg meta[] = {{"__gc", l_gc},
                                {"__close", l_gc},
                                {"__tostring", l_tostring},
                                {"__index", NULL},
                                {NULL, NULL}};

/* True when the options table at 1 holds at most owner, as a string. */
static int owner_only(lua_State *L) {
  int n = 0, ok = 1;
  lua_pushnil(L);
  while (lua_next(L, 1) != 0) {
    n++;
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING ||
        strcmp(lua_tostring(L, -2), "owner") != 0)
      ok = 0;
    lua_pop(L, 1);
  }
  return ok && n <= 1;
}

/* orrery.builder{ owner = "demo", ShouldTerminateOnLastHandleClosed = b }
** or orrery.builder("demo"). */
static int l_builder(lua_State *L) {
  orr_builder *b = NULL;
  orr_error e = {0, ""};
  const char *owner = "";
  json_t *opts = NULL;
  int rc;
  if (lua_type(L, 1) == LUA_TSTRING) {
    owner = lua_tostring(L, 1);
  } else if (lua_istable(L, 1) && owner_only(L)) {
    /* The common { owner = "x" } (or {}) needs no conversion. */
    lua_getfield(L, 1, "owner");
    if (lua_type(L, -1) == LUA_TSTRING)
      owner = lua_tostring(L, -1); /* stays on the stack, so alive */
  } else if (lua_istable(L, 1)) {
    opts = orr_l_checkjson(L, 1, "builder");
    if (!json_is_object(opts) && json_array_size(opts) > 0) {
      json_decref(opts);
      orr_error_set(&e, ORR_EINVAL,
                    "builder: options must be named fields (owner = ..., "
                    "ShouldTerminateOnLastHandleClosed = ...), got a list");
      return orr_l_raise(L, &e);
    }
    if (!json_is_object(opts)) {
      json_decref(opts);
      opts = json_object();
    }
    json_t *o = json_object_get(opts, "owner");
    if (o != NULL) {
      if (!json_is_string(o)) {
        json_decref(opts);
        orr_error_set(&e, ORR_EINVAL, "builder: owner must be a string");
        return orr_l_raise(L, &e);
      }
      owner = lua_pushstring(L, json_string_value(o)); /* keep it alive */
      json_object_del(opts, "owner");
    }
  } else if (!lua_isnoneornil(L, 1)) {
    return luaL_typeerror(L, 1, "table or string");
  }
  rc = orr_builder_new(owner, opts, &b, &e);
  json_decref(opts);
  if (rc != 0)
    return orr_l_raise(L, &e);
  orr_l_pushbuilder(L, b);
  return 1;
}

/* orrery.builder_from(table | json | Builder): a checked copy. */
static int l_builder_from(lua_State *L) {
  orr_builder *b = NULL, *src;
  orr_error e = {0, ""};
  json_t *doc = NULL;
  int rc;
  if ((src = orr_l_testbuilder(L, 1)) != NULL) {
    rc = orr_builder_from_doc(orr_builder_doc(src), &b, &e);
  } else if (lua_type(L, 1) == LUA_TSTRING) {
    size_t len;
    const char *text = lua_tolstring(L, 1, &len);
    json_t *norm = NULL;
    rc = orr_doc_parse(text, len, &norm, &e);
    if (rc == 0) {
      rc = orr_builder_from_doc(norm, &b, &e);
      json_decref(norm);
    } else {
      orr_error_prefix(&e, "builder_from");
    }
  } else if (lua_istable(L, 1)) {
    doc = orr_l_checkjson(L, 1, "builder_from");
    rc = orr_builder_from_doc(doc, &b, &e);
    json_decref(doc);
  } else {
    return luaL_typeerror(L, 1, "table, JSON string or " ORR_L_BUILDER);
  }
  if (rc != 0)
    return orr_l_raise(L, &e);
  orr_l_pushbuilder(L, b);
  return 1;
}

void orr_l_open_builder(lua_State *L) {
  orr_l_newclass(L, ORR_L_BUILDER, meta, methods);
}

/* orrery.schema(): the document schema as a table (orr_doc_schema). */
static int l_schema(lua_State *L) {
  json_t *s = orr_doc_schema();
  orr_l_pushjson(L, s);
  json_decref(s);
  return 1;
}

const luaL_Reg orr_l_builder_funcs[] = {{"builder", l_builder},
                                        {"builder_from", l_builder_from},
                                        {"schema", l_schema},
                                        {NULL, NULL}};

/*
** The recipe sandbox (`orrery run --sandbox --allow-write=DIR ...`, or
** require("orrery.sandbox"){ allow_write = {DIR, ...} } from Lua): after it
** is applied, the Lua state can run no host program and load no native code,
** and writes no file outside the directories it was given, whether it writes
** itself or has the engine or QEMU write for it. It is one-way: nothing in
** the state can undo it.
**
** What it takes away or checks, and why:
**   - os.execute, io.popen: run a host program (refused);
**   - package.loadlib and the C searchers of require: load native code
**     (refused; orrery.core is preloaded and the Lua searcher stays);
**   - load, loadfile, dofile and the Lua searcher: binary chunks only, since
**     crafted bytecode can break out of the Lua VM (text mode forced);
**   - debug: it reads the upvalues where the wrappers keep the originals
**     (only debug.traceback is kept);
**   - io.open/io.output for writing, io.lines stays, os.remove, os.rename,
**     os.tmpname, io.tmpfile: the path must be inside an allowed directory;
**   - orrery.create: qemu_binary (it runs a host program) is refused;
**     runtime_dir, every writable disk image (SCSI attachment or VPMem
**     without ReadOnly), every writable Plan9 share (the guest writes there)
**     and every COM port socket must be inside an allowed directory;
**   - vm:add_scsi_disk and vm:modify: the same rule for the disk they add;
**     vm:save: SaveStateFilePath; vm:qmp: only read-only commands (query-*,
**     qom-get, qom-list), since QMP can make QEMU write any file
**     (blockdev-add, screendump, dump-guest-memory) or run a shell
**     (migrate to exec:).
** Reads stay allowed everywhere: the sandbox is about what a recipe can
** change on the host.
**
** Paths are checked after resolving symlinks: a path that is written
** through (open) must resolve, or its missing last component sit in a
** directory that resolves, inside an allowed directory; a dangling symlink
** is refused, because opening it would create its target. A path whose
** entry itself is replaced (remove, rename, a socket) is checked by its
** directory. A directory renamed or a symlink swapped in by another
** process between the check and the write is outside what this can see.
*/
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "l_orrery.h"
#include "l_util.h"

#define MAX_ALLOWED 32

typedef struct {
  int n;
  char dirs[MAX_ALLOWED][PATH_MAX];
} policy;

/* registry[&applied_key]: true once a sandbox is in place. */
static const char applied_key = 's';

static int blocked(lua_State *L) {
  return luaL_error(L, "sandbox: %s is not allowed in a sandboxed recipe",
                    lua_tostring(L, lua_upvalueindex(1)));
}

/* ---- Paths ----------------------------------------------------------------
 */

static int inside(const policy *p, const char *resolved) {
  for (int i = 0; i < p->n; i++) {
    size_t n = strlen(p->dirs[i]);
    if (strncmp(resolved, p->dirs[i], n) == 0 &&
        (resolved[n] == '/' || resolved[n] == '\0' ||
         (n == 1 && p->dirs[i][0] == '/')))
      return 1;
  }
  return 0;
}

/* dir part of path ("." when none) into dir, base part into *base. */
static int split(const char *path, char *dir, size_t size, const char **base) {
  const char *slash = strrchr(path, '/');
  if (slash == NULL) {
    snprintf(dir, size, ".");
    *base = path;
  } else if (slash == path) {
    snprintf(dir, size, "/");
    *base = slash + 1;
  } else {
    if ((size_t)(slash - path) >= size)
      return -1;
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = '\0';
    *base = slash + 1;
  }
  return 0;
}

/*
** Where a write to path lands, resolved into out. follow: the write goes
** through the last component (open); otherwise it replaces the entry itself
** (remove, rename, bind). Returns NULL or why the path cannot be allowed.
*/
static const char *resolve(const char *path, int follow, char *out) {
  char dir[PATH_MAX], rdir[PATH_MAX];
  const char *base;
  struct stat st;
  if (path[0] == '\0')
    return "is empty";
  if (follow && realpath(path, out) != NULL)
    return NULL;
  if (follow && lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
    return "is a dangling symlink (writing it would create its target)";
  if (split(path, dir, sizeof dir, &base) != 0)
    return "is too long";
  if (base[0] == '\0' || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
    return "does not name a file";
  if (realpath(dir, rdir) == NULL)
    return "is in a directory that does not exist";
  if (snprintf(out, PATH_MAX, "%s/%s", strcmp(rdir, "/") == 0 ? "" : rdir,
               base) >= PATH_MAX)
    return "is too long";
  return NULL;
}

/* NULL if a write to path (at what, e.g. "io.open") is allowed, else the
** message, in msg. */
static const char *write_error(const policy *p, const char *what,
                               const char *path, int follow, char *msg,
                               size_t size) {
  char real[PATH_MAX];
  const char *why = resolve(path, follow, real);
  if (why != NULL) {
    snprintf(msg, size, "sandbox: %s: %s %s", what, path, why);
    return msg;
  }
  if (inside(p, real))
    return NULL;
  snprintf(msg, size,
           "sandbox: %s: %s is outside the directories this recipe may write "
           "(--allow-write)%s%s",
           what, path, strcmp(real, path) != 0 ? "; it resolves to " : "",
           strcmp(real, path) != 0 ? real : "");
  return msg;
}

/* Raises unless a write to path is allowed. */
static void check_write(lua_State *L, const policy *p, const char *what,
                        const char *path, int follow) {
  char msg[2 * PATH_MAX + 200];
  if (write_error(p, what, path, follow, msg, sizeof msg) != NULL)
    luaL_error(L, "%s", msg);
}

static policy *get_policy(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(2));
}

/* Calls upvalue 1 (the original) with every argument; returns its results. */
static int call_original(lua_State *L) {
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L);
}

/* ---- io and os ------------------------------------------------------------
 */

static int w_io_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  const char *mode = luaL_optstring(L, 2, "r");
  if (strpbrk(mode, "wa+") != NULL)
    check_write(L, get_policy(L), "io.open", path, 1);
  return call_original(L);
}

static int w_io_output(lua_State *L) {
  if (lua_type(L, 1) == LUA_TSTRING)
    check_write(L, get_policy(L), "io.output", lua_tostring(L, 1), 1);
  return call_original(L);
}

static int w_os_remove(lua_State *L) {
  check_write(L, get_policy(L), "os.remove", luaL_checkstring(L, 1), 0);
  return call_original(L);
}

static int w_os_rename(lua_State *L) {
  check_write(L, get_policy(L), "os.rename", luaL_checkstring(L, 1), 0);
  check_write(L, get_policy(L), "os.rename", luaL_checkstring(L, 2), 0);
  return call_original(L);
}

/* os.tmpname and io.tmpfile create files in /tmp. */
static int w_tmp(lua_State *L) {
  check_write(L, get_policy(L), lua_tostring(L, lua_upvalueindex(3)),
              "/tmp/lua_XXXXXX", 0);
  return call_original(L);
}

/* ---- Loading code: text only ----------------------------------------------
 */

/* load(chunk [, chunkname [, mode [, env]]]) with mode "t". */
static int w_load(lua_State *L) {
  const char *mode = luaL_optstring(L, 3, "t");
  if (strchr(mode, 't') == NULL)
    return luaL_error(L, "sandbox: load: binary chunks are not allowed");
  lua_settop(L, lua_gettop(L) < 3 ? 3 : lua_gettop(L));
  lua_pushliteral(L, "t");
  lua_replace(L, 3);
  return call_original(L);
}

/* loadfile([filename [, mode [, env]]]) with mode "t". */
static int w_loadfile(lua_State *L) {
  const char *mode = luaL_optstring(L, 2, "t");
  if (strchr(mode, 't') == NULL)
    return luaL_error(L, "sandbox: loadfile: binary chunks are not allowed");
  lua_settop(L, lua_gettop(L) < 2 ? 2 : lua_gettop(L));
  lua_pushliteral(L, "t");
  lua_replace(L, 2);
  return call_original(L);
}

static int w_dofile(lua_State *L) {
  const char *fname = luaL_optstring(L, 1, NULL);
  lua_settop(L, 1);
  if (luaL_loadfilex(L, fname, "t") != LUA_OK)
    return lua_error(L);
  lua_call(L, 0, LUA_MULTRET);
  return lua_gettop(L) - 1;
}

/* The Lua searcher of require, loading text only. */
static int searcher_lua_text(lua_State *L) {
  const char *name = luaL_checkstring(L, 1), *file;
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "searchpath");
  lua_pushstring(L, name);
  lua_getfield(L, -3, "path");
  lua_call(L, 2, 2);
  if (lua_isnil(L, -2))
    return 1; /* the message of searchpath */
  lua_pop(L, 1);
  file = lua_tostring(L, -1);
  if (luaL_loadfilex(L, file, "t") != LUA_OK)
    return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s",
                      name, file, lua_tostring(L, -1));
  lua_pushstring(L, file);
  return 2;
}

/* ---- orrery ---------------------------------------------------------------
 */

static int is_true(const json_t *v) {
  return json_is_true(v);
}

/* Checks every place a document makes the engine or QEMU write; the first
** refusal goes into msg. */
static const char *document_error(const policy *p, const json_t *doc, char *msg,
                                  size_t size) {
  json_t *vm = json_object_get(doc, "VirtualMachine");
  json_t *devs = json_object_get(vm, "Devices"), *ctl, *att, *v;
  const char *k1, *k2, *path;
  size_t i;
  json_object_foreach(json_object_get(devs, "Scsi"), k1, ctl) {
    json_object_foreach(json_object_get(ctl, "Attachments"), k2, att) {
      path = json_string_value(json_object_get(att, "Path"));
      if (path != NULL && !is_true(json_object_get(att, "ReadOnly")) &&
          write_error(p, "create: a writable SCSI disk", path, 1, msg, size))
        return msg;
    }
  }
  json_object_foreach(
      json_object_get(json_object_get(devs, "VirtualPMem"), "Devices"), k1, v) {
    path = json_string_value(json_object_get(v, "HostPath"));
    if (path != NULL && !is_true(json_object_get(v, "ReadOnly")) &&
        write_error(p, "create: a writable VPMem image", path, 1, msg, size))
      return msg;
  }
  json_array_foreach(json_object_get(json_object_get(devs, "Plan9"), "Shares"),
                     i, v) {
    json_int_t flags = json_integer_value(json_object_get(v, "Flags"));
    path = json_string_value(json_object_get(v, "Path"));
    if (path != NULL && !is_true(json_object_get(v, "ReadOnly")) &&
        !(flags & 1) &&
        write_error(p, "create: a writable Plan9 share", path, 1, msg, size))
      return msg;
  }
  json_object_foreach(json_object_get(devs, "ComPorts"), k1, v) {
    path = json_string_value(json_object_get(v, "NamedPipe"));
    if (path != NULL &&
        write_error(p, "create: a COM port socket", path, 0, msg, size))
      return msg;
  }
  return NULL;
}

/* The document orrery.create would get from its argument 2, or NULL. */
static json_t *document_arg(lua_State *L, int idx) {
  orr_builder *b = orr_l_testbuilder(L, idx);
  if (b != NULL)
    return json_deep_copy(orr_builder_doc(b));
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t len;
    const char *text = lua_tolstring(L, idx, &len);
    return json_loadb(text, len, 0, NULL);
  }
  if (lua_type(L, idx) == LUA_TTABLE) {
    char err[256] = "";
    return orr_l_tojson(L, idx, "", err, sizeof err);
  }
  return NULL; /* create itself says what is wrong */
}

static int w_create(lua_State *L) {
  policy *p = get_policy(L);
  char msg[2 * PATH_MAX + 200];
  int top = lua_gettop(L);
  const char *why;
  json_t *doc;
  if (lua_type(L, 3) == LUA_TTABLE) {
    if (lua_getfield(L, 3, "qemu_binary") != LUA_TNIL)
      return luaL_error(L, "sandbox: create: opts.qemu_binary is not allowed "
                           "(it runs a host program)");
    if (lua_getfield(L, 3, "runtime_dir") == LUA_TSTRING)
      check_write(L, p, "create: opts.runtime_dir", lua_tostring(L, -1), 0);
    lua_settop(L, top);
  }
  doc = document_arg(L, 2);
  why = doc != NULL ? document_error(p, doc, msg, sizeof msg) : NULL;
  json_decref(doc);
  if (why != NULL)
    return luaL_error(L, "%s", why);
  return call_original(L);
}

static int w_save(lua_State *L) {
  int top = lua_gettop(L);
  if (lua_type(L, 2) == LUA_TTABLE &&
      lua_getfield(L, 2, "SaveStateFilePath") == LUA_TSTRING)
    check_write(L, get_policy(L), "vm:save: SaveStateFilePath",
                lua_tostring(L, -1), 1);
  lua_settop(L, top);
  return call_original(L);
}

static int w_qmp(lua_State *L) {
  const char *cmd = luaL_checkstring(L, 2);
  if (strncmp(cmd, "query-", 6) != 0 && strcmp(cmd, "qom-get") != 0 &&
      strcmp(cmd, "qom-list") != 0)
    return luaL_error(L,
                      "sandbox: vm:qmp: only read-only commands (query-*, "
                      "qom-get, qom-list) are allowed, not %s",
                      cmd);
  return call_original(L);
}

/* An attachment table at idx: its Path must be writable unless ReadOnly. */
static void check_attachment(lua_State *L, const policy *p, int idx,
                             const char *what) {
  if (lua_type(L, idx) != LUA_TTABLE)
    return;
  lua_getfield(L, idx, "ReadOnly");
  lua_getfield(L, idx, "Path");
  if (!lua_toboolean(L, -2) && lua_type(L, -1) == LUA_TSTRING)
    check_write(L, p, what, lua_tostring(L, -1), 1);
  lua_pop(L, 2);
}

static int w_add_scsi_disk(lua_State *L) {
  check_attachment(L, get_policy(L), 4, "vm:add_scsi_disk");
  return call_original(L);
}

static int w_modify(lua_State *L) {
  int top = lua_gettop(L);
  if (lua_type(L, 2) == LUA_TTABLE &&
      lua_getfield(L, 2, "Settings") == LUA_TTABLE) {
    int settings = lua_gettop(L);
    lua_getfield(L, settings, "ReadOnly");
    lua_getfield(L, settings, "HostPath");
    if (!lua_toboolean(L, -2) && lua_type(L, -1) == LUA_TSTRING)
      check_write(L, get_policy(L), "vm:modify", lua_tostring(L, -1), 1);
    check_attachment(L, get_policy(L), settings, "vm:modify");
  }
  lua_settop(L, top);
  return call_original(L);
}

/* ---- Applying it ----------------------------------------------------------
 */

/* t[name] = closure(fn, original t[name], policy [, extra string]). */
static void wrap(lua_State *L, int t, int pol, const char *name,
                 lua_CFunction fn, const char *extra) {
  lua_getfield(L, t, name);
  lua_pushvalue(L, pol);
  if (extra != NULL)
    lua_pushstring(L, extra);
  lua_pushcclosure(L, fn, extra != NULL ? 3 : 2);
  lua_setfield(L, t, name);
}

static void block(lua_State *L, int t, const char *name, const char *shown) {
  lua_pushstring(L, shown);
  lua_pushcclosure(L, blocked, 1);
  lua_setfield(L, t, name);
}

/* Under lua_pcall: the policy userdata at 1. */
static int apply(lua_State *L) {
  int pol = 1, g, t;
  lua_pushglobaltable(L);
  g = lua_gettop(L);

  /* orrery first, while require may still load it from orrery.so (stock
  ** lua5.4; the executable preloads it): its VM methods must exist to be
  ** wrapped, and it cannot be loaded once the C searchers are gone. */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "orrery.core");
  lua_call(L, 1, 1);
  wrap(L, lua_gettop(L), pol, "create", w_create, NULL);
  lua_pop(L, 1);
  if (luaL_getmetatable(L, ORR_L_VM) == LUA_TTABLE &&
      lua_getfield(L, -1, "__index") == LUA_TTABLE) {
    t = lua_gettop(L);
    wrap(L, t, pol, "save", w_save, NULL);
    wrap(L, t, pol, "qmp", w_qmp, NULL);
    wrap(L, t, pol, "add_scsi_disk", w_add_scsi_disk, NULL);
    wrap(L, t, pol, "modify", w_modify, NULL);
  }
  lua_settop(L, g);

  lua_getglobal(L, "os");
  t = lua_gettop(L);
  block(L, t, "execute", "os.execute");
  wrap(L, t, pol, "remove", w_os_remove, NULL);
  wrap(L, t, pol, "rename", w_os_rename, NULL);
  wrap(L, t, pol, "tmpname", w_tmp, "os.tmpname");
  lua_settop(L, g);

  lua_getglobal(L, "io");
  t = lua_gettop(L);
  block(L, t, "popen", "io.popen");
  wrap(L, t, pol, "open", w_io_open, NULL);
  wrap(L, t, pol, "output", w_io_output, NULL);
  wrap(L, t, pol, "tmpfile", w_tmp, "io.tmpfile");
  lua_settop(L, g);

  wrap(L, g, pol, "load", w_load, NULL);
  wrap(L, g, pol, "loadfile", w_loadfile, NULL);
  lua_pushcfunction(L, w_dofile);
  lua_setfield(L, g, "dofile");

  /* package: no native code; require loads Lua text only. */
  lua_getglobal(L, "package");
  t = lua_gettop(L);
  block(L, t, "loadlib", "package.loadlib");
  lua_getfield(L, t, "searchers");
  lua_createtable(L, 2, 0);
  lua_rawgeti(L, -2, 1); /* the preload searcher */
  lua_rawseti(L, -2, 1);
  lua_pushcfunction(L, searcher_lua_text);
  lua_rawseti(L, -2, 2);
  lua_setfield(L, t, "searchers");
  lua_pop(L, 1);

  /* debug: only the traceback. */
  lua_getglobal(L, "debug");
  lua_createtable(L, 0, 1);
  lua_getfield(L, -2, "traceback");
  lua_setfield(L, -2, "traceback");
  lua_pushvalue(L, -1);
  lua_setglobal(L, "debug");
  lua_getfield(L, t, "loaded");
  lua_insert(L, -2);
  lua_setfield(L, -2, "debug");
  lua_settop(L, g);

  lua_pushboolean(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &applied_key);
  return 0;
}

int orr_l_sandbox(lua_State *L, const char *const *allow_write) {
  policy *p;
  int n = 0;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &applied_key) != LUA_TNIL) {
    lua_pop(L, 1);
    lua_pushliteral(L, "sandbox: this Lua state is already sandboxed");
    return LUA_ERRRUN;
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, apply);
  p = lua_newuserdatauv(L, sizeof *p, 0);
  memset(p, 0, sizeof *p);
  for (; allow_write != NULL && allow_write[n] != NULL; n++) {
    if (n >= MAX_ALLOWED) {
      lua_pop(L, 2);
      lua_pushfstring(L, "sandbox: at most %d writable directories",
                      MAX_ALLOWED);
      return LUA_ERRRUN;
    }
    if (realpath(allow_write[n], p->dirs[n]) == NULL) {
      const char *why = strerror(errno);
      lua_pop(L, 2);
      lua_pushfstring(L, "sandbox: writable directory %s: %s", allow_write[n],
                      why);
      return LUA_ERRRUN;
    }
  }
  p->n = n;
  return lua_pcall(L, 1, 0, 0);
}

/* require("orrery.sandbox") -> function(opts): the sandbox from Lua, with
** opts.allow_write a list of directories. Found by lua5.4's all-in-one
** loader in orrery.so, as orrery.core is. */
static int l_sandbox(lua_State *L) {
  const char *dirs[MAX_ALLOWED + 1];
  int n = 0;
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_getfield(L, 1, "allow_write") == LUA_TTABLE) {
      for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TSTRING; i++) {
        if (n >= MAX_ALLOWED)
          return luaL_error(L, "sandbox: at most %d writable directories",
                            MAX_ALLOWED);
        dirs[n++] = lua_tostring(L, -1); /* anchored in the table */
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
  }
  dirs[n] = NULL;
  if (orr_l_sandbox(L, dirs) != LUA_OK)
    return lua_error(L);
  lua_pushboolean(L, 1);
  return 1;
}

int luaopen_orrery_sandbox(lua_State *L);

int luaopen_orrery_sandbox(lua_State *L) {
  lua_pushcfunction(L, l_sandbox);
  return 1;
}

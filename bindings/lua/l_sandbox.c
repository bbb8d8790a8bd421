/*
** The recipe sandbox (`orrery run --sandbox --allow-write=DIR ...`, or
** require("orrery.sandbox"){ allow_write = {DIR, ...} } from Lua). It does
** two things, both one-way:
**
** 1. It confines the state's engine (orrery/policy.h): from then on the
**    engine itself refuses, in C and on the objects it is about to use (the
**    normalized document or request, the create options with every default
**    applied, the descriptor it opened), anything that would make it or QEMU
**    write outside the allowed directories, run a host program, attach a
**    host device or send QMP that is not read-only. No VM method is wrapped
**    here: what a metatable, a second read or a coroutine makes a table say
**    does not matter, since the engine judges what it converted, and every
**    waiting call yields in a task as it does unsandboxed.
**
** 2. It takes away what lets Lua code reach the host by itself:
**   - os.execute, io.popen: run a host program (refused);
**   - package.loadlib and the C searchers of require: load native code
**     (refused; orrery.core is loaded first and the Lua searcher stays);
**   - load, loadfile, dofile and the Lua searcher: text chunks only, since
**     crafted bytecode can break out of the Lua VM;
**   - debug (but debug.traceback): it reaches the registry and the upvalues
**     of these functions;
**   - writes: io.open for writing, io.output, os.remove, os.rename,
**     os.tmpname and io.tmpfile go through the same policy, with the
**     engine's primitives (the file opened is the file judged; io.open hands
**     back a Lua file over that descriptor);
**   - reads (io.open, io.input, io.lines, loadfile, dofile, require,
**     package.searchpath) stay allowed everywhere, but only of regular
**     files and directories (and /dev/null-like devices): opening a device
**     node can act on it (a watchdog arms, a tape rewinds).
** The sandbox is about what a recipe can change on the host
** (docs/threat-model.md).
*/
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "l_async.h"
#include "l_orrery.h"
#include "l_util.h"
#include "orrery/policy.h"

/* The Lua half keeps its own copy of the policy (the engine's lives and
** dies with the engine): a userdata holding the pointer, freed by __gc. */
typedef struct {
  orr_policy *p;
} lpolicy;

static int lpolicy_gc(lua_State *L) {
  lpolicy *lp = lua_touserdata(L, 1);
  orr_policy_free(lp->p);
  lp->p = NULL;
  return 0;
}

static const orr_policy *get_policy(lua_State *L) {
  return ((lpolicy *)lua_touserdata(L, lua_upvalueindex(2)))->p;
}

static int blocked(lua_State *L) {
  return luaL_error(L, "sandbox: %s is not allowed in a sandboxed recipe",
                    lua_tostring(L, lua_upvalueindex(1)));
}

/* A refusal by the rules raises (the recipe asked for what it may not
** have); any other failure is io's usual nil, message, errno. */
static int failed(lua_State *L, const orr_error *e, int err) {
  if (e->code == ORR_EPERM && strncmp(e->msg, "sandbox:", 8) == 0)
    return luaL_error(L, "%s", e->msg);
  luaL_pushfail(L);
  lua_pushstring(L, e->msg);
  lua_pushinteger(L, err);
  return 3;
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

static int close_stream(lua_State *L) {
  luaL_Stream *s = luaL_checkudata(L, 1, LUA_FILEHANDLE);
  int ok = fclose(s->f) == 0;
  return luaL_fileresult(L, ok, NULL);
}

/* Pushes a Lua file opened for writing through the policy (mode as io.open
** takes it) and returns 1, or pushes io's failure and returns 3. */
static int push_write_stream(lua_State *L, const char *path, const char *mode,
                             const char *what) {
  orr_error e = {0, ""};
  luaL_Stream *s;
  int flags, fd, err;
  if ((mode[0] != 'r' && mode[0] != 'w' && mode[0] != 'a') ||
      strspn(mode + 1, "+b") != strlen(mode + 1))
    return luaL_error(L, "%s: invalid mode '%s'", what, mode);
  flags = strchr(mode, '+') ? O_RDWR : O_WRONLY;
  if (mode[0] == 'w')
    flags |= O_CREAT | O_TRUNC;
  else if (mode[0] == 'a')
    flags |= O_CREAT | O_APPEND;
  errno = 0;
  if (orr_policy_open(get_policy(L), path, flags, what, &fd, &e) != 0)
    return failed(L, &e, errno ? errno : EACCES);
  s = lua_newuserdatauv(L, sizeof *s, 0);
  s->closef = NULL; /* not a file until fdopen worked */
  luaL_setmetatable(L, LUA_FILEHANDLE);
  if ((s->f = fdopen(fd, mode)) == NULL) {
    err = errno;
    close(fd);
    errno = err;
    return luaL_fileresult(L, 0, path);
  }
  s->closef = close_stream;
  return 1;
}

/* Pushes a Lua file opened for reading through the policy's read rule
** and returns 1, or pushes io's failure and returns 3. */
static int push_read_stream(lua_State *L, const char *path, const char *mode,
                            const char *what) {
  orr_error e = {0, ""};
  luaL_Stream *s;
  int fd, err;
  if (mode[0] != 'r' || strspn(mode + 1, "b") != strlen(mode + 1))
    return luaL_error(L, "%s: invalid mode '%s'", what, mode);
  errno = 0;
  if (orr_policy_open_read(get_policy(L), path, what, &fd, &e) != 0)
    return failed(L, &e, errno ? errno : ENOENT);
  s = lua_newuserdatauv(L, sizeof *s, 0);
  s->closef = NULL;
  luaL_setmetatable(L, LUA_FILEHANDLE);
  if ((s->f = fdopen(fd, mode)) == NULL) {
    err = errno;
    close(fd);
    errno = err;
    return luaL_fileresult(L, 0, path);
  }
  s->closef = close_stream;
  return 1;
}

/* io.open(path, mode): both ways through the policy. */
static int w_io_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  const char *mode = luaL_optstring(L, 2, "r");
  if (strpbrk(mode, "wa+") == NULL)
    return push_read_stream(L, path, mode, "io.open");
  return push_write_stream(L, path, mode, "io.open");
}

/* io.input(path) and io.lines(path, ...) open path the same way. */
static int w_io_input(lua_State *L) {
  if (lua_type(L, 1) == LUA_TSTRING) {
    if (push_read_stream(L, lua_tostring(L, 1), "r", "io.input") != 1)
      return luaL_error(L, "%s", lua_tostring(L, -2));
    lua_replace(L, 1);
    lua_settop(L, 1);
  }
  return call_original(L);
}

static int w_io_lines(lua_State *L) {
  int n = lua_gettop(L);
  if (lua_isnoneornil(L, 1))
    return call_original(L); /* the default input */
  if (push_read_stream(L, luaL_checkstring(L, 1), "r", "io.lines") != 1)
    return luaL_error(L, "%s", lua_tostring(L, -2));
  lua_replace(L, 1);           /* file, formats... */
  lua_getfield(L, 1, "lines"); /* file, formats..., lines */
  lua_insert(L, 1);            /* lines, file, formats... */
  lua_pushvalue(L, 2);
  lua_insert(L, 1);  /* file, lines, file, formats... */
  lua_call(L, n, 1); /* file, iterator */
  /* As io.lines: the iterator, and the file to close with the loop. */
  lua_pushnil(L);
  lua_pushnil(L);
  lua_pushvalue(L, 1);
  return 4;
}

/* io.output(path) opens path for writing the same way. */
static int w_io_output(lua_State *L) {
  if (lua_type(L, 1) == LUA_TSTRING) {
    if (push_write_stream(L, lua_tostring(L, 1), "w", "io.output") != 1)
      return luaL_error(L, "%s", lua_tostring(L, -2));
    lua_replace(L, 1);
    lua_settop(L, 1);
  }
  return call_original(L);
}

static int w_os_remove(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  orr_error e = {0, ""};
  errno = 0;
  if (orr_policy_remove(get_policy(L), path, "os.remove", &e) != 0)
    return failed(L, &e, errno ? errno : ENOENT);
  lua_pushboolean(L, 1);
  return 1;
}

static int w_os_rename(lua_State *L) {
  const char *from = luaL_checkstring(L, 1), *to = luaL_checkstring(L, 2);
  orr_error e = {0, ""};
  errno = 0;
  if (orr_policy_rename(get_policy(L), from, to, "os.rename", &e) != 0)
    return failed(L, &e, errno ? errno : ENOENT);
  lua_pushboolean(L, 1);
  return 1;
}

/* os.tmpname and io.tmpfile create files in /tmp. */
static int w_tmp(lua_State *L) {
  orr_error e = {0, ""};
  if (orr_policy_check_dir(get_policy(L), "/tmp",
                           lua_tostring(L, lua_upvalueindex(3)), &e) != 0)
    return luaL_error(L, "%s", e.msg);
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

/* Raises unless a chunk file may be opened (the read rule; then opened by
** name: Lua's loader takes no descriptor). */
static void check_chunk_file(lua_State *L, const char *path, const char *what) {
  orr_error e = {0, ""};
  if (path != NULL &&
      orr_policy_check_read(get_policy(L), path, what, &e) != 0 &&
      e.code == ORR_EPERM)
    luaL_error(L, "%s", e.msg);
}

/* loadfile([filename [, mode [, env]]]) with mode "t". */
static int w_loadfile(lua_State *L) {
  const char *mode = luaL_optstring(L, 2, "t");
  if (strchr(mode, 't') == NULL)
    return luaL_error(L, "sandbox: loadfile: binary chunks are not allowed");
  check_chunk_file(L, luaL_optstring(L, 1, NULL), "loadfile");
  lua_settop(L, lua_gettop(L) < 2 ? 2 : lua_gettop(L));
  lua_pushliteral(L, "t");
  lua_replace(L, 2);
  return call_original(L);
}

static int dofile_cont(lua_State *L, int status, lua_KContext ctx) {
  (void)status, (void)ctx;
  return lua_gettop(L) - 1;
}

/* dofile, text only; the chunk may wait (lua_callk), as a task's code. */
static int w_dofile(lua_State *L) {
  const char *fname = luaL_optstring(L, 1, NULL);
  check_chunk_file(L, fname, "dofile");
  lua_settop(L, 1);
  if (luaL_loadfilex(L, fname, "t") != LUA_OK)
    return lua_error(L);
  lua_callk(L, 0, LUA_MULTRET, 0, dofile_cont);
  return dofile_cont(L, LUA_OK, 0);
}

/* package.searchpath(name, path [, sep [, rep]]) that never opens a
** candidate: it stats them, and takes the first regular file (Lua's opens
** each to see whether it can, and an open can act on a device node). */
static int w_searchpath(lua_State *L) {
  const char *name = luaL_checkstring(L, 1), *path = luaL_checkstring(L, 2);
  const char *sep = luaL_optstring(L, 3, "."), *rep = luaL_optstring(L, 4, "/");
  luaL_Buffer tried;
  if (*sep != '\0' && strchr(name, *sep) != NULL)
    name = luaL_gsub(L, name, sep, rep);
  luaL_buffinit(L, &tried);
  while (*path != '\0') {
    const char *end = strchr(path, ';');
    size_t len = end ? (size_t)(end - path) : strlen(path);
    struct stat st;
    const char *file;
    lua_pushlstring(L, path, len);
    file = luaL_gsub(L, lua_tostring(L, -1), LUA_PATH_MARK, name);
    lua_remove(L, -2);
    if (stat(file, &st) == 0 && S_ISREG(st.st_mode))
      return 1;
    lua_pushfstring(L, "\n\tno file '%s'", file);
    lua_remove(L, -2);
    luaL_addvalue(&tried);
    path += len + (end != NULL);
  }
  luaL_pushresult(&tried);
  luaL_pushfail(L);
  lua_insert(L, -2);
  return 2;
}

/* The Lua searcher of require, loading text only. */
static int searcher_lua_text(lua_State *L) {
  const char *name = luaL_checkstring(L, 1), *file;
  lua_pushcfunction(L, w_searchpath);
  lua_pushstring(L, name);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_remove(L, -2);
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

/* ---- Applying it ----------------------------------------------------------
 */

/* t[name] = closure(fn, original t[name], policy [, extra]). */
static void wrap(lua_State *L, int t, int pol, const char *name,
                 lua_CFunction fn, int extra) {
  lua_getfield(L, t, name);
  lua_pushvalue(L, pol);
  if (extra != 0)
    lua_pushvalue(L, extra);
  lua_pushcclosure(L, fn, extra != 0 ? 3 : 2);
  lua_setfield(L, t, name);
}

static void block(lua_State *L, int t, const char *name, const char *shown) {
  lua_pushstring(L, shown);
  lua_pushcclosure(L, blocked, 1);
  lua_setfield(L, t, name);
}

typedef struct {
  const char *const *allow_write;
} apply_args;

/* Under lua_pcall: the apply_args lightuserdata at 1. */
static int apply(lua_State *L) {
  const apply_args *a = lua_touserdata(L, 1);
  orr_policy *engine_policy;
  orr_error e = {0, ""};
  orr_engine *eng;
  lpolicy *lp;
  int pol, g, t, s;

  /* orrery.core first, while require may still load it from orrery.so
  ** (stock lua5.4; the executable preloads it): it cannot be loaded once
  ** the C searchers are gone. */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "orrery.core");
  lua_call(L, 1, 0);

  /* The engine first: if it cannot be confined, nothing changes. */
  if (orr_policy_new(a->allow_write, &engine_policy, &e) != 0)
    return luaL_error(L, "%s", e.msg);
  eng = orr_l_engine(L);
  if (orr_engine_confine(eng, engine_policy, &e) != 0)
    return luaL_error(L, "%s", e.msg);

  lp = lua_newuserdatauv(L, sizeof *lp, 0);
  lp->p = NULL;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, lpolicy_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  pol = lua_gettop(L);
  if (orr_policy_new(a->allow_write, &lp->p, &e) != 0)
    return luaL_error(L, "%s", e.msg);

  lua_pushglobaltable(L);
  g = lua_gettop(L);

  lua_getglobal(L, "os");
  t = lua_gettop(L);
  block(L, t, "execute", "os.execute");
  wrap(L, t, pol, "remove", w_os_remove, 0);
  wrap(L, t, pol, "rename", w_os_rename, 0);
  lua_pushliteral(L, "os.tmpname");
  s = lua_gettop(L);
  wrap(L, t, pol, "tmpname", w_tmp, s);
  lua_settop(L, g);

  lua_getglobal(L, "io");
  t = lua_gettop(L);
  block(L, t, "popen", "io.popen");
  wrap(L, t, pol, "output", w_io_output, 0);
  wrap(L, t, pol, "input", w_io_input, 0);
  wrap(L, t, pol, "lines", w_io_lines, 0);
  wrap(L, t, pol, "open", w_io_open, 0);
  lua_pushliteral(L, "io.tmpfile");
  s = lua_gettop(L);
  wrap(L, t, pol, "tmpfile", w_tmp, s);
  lua_settop(L, g);

  wrap(L, g, pol, "load", w_load, 0);
  wrap(L, g, pol, "loadfile", w_loadfile, 0);
  wrap(L, g, pol, "dofile", w_dofile, 0);

  /* package: no native code; require loads Lua text only. */
  lua_getglobal(L, "package");
  t = lua_gettop(L);
  block(L, t, "loadlib", "package.loadlib");
  lua_pushcfunction(L, w_searchpath);
  lua_setfield(L, t, "searchpath");
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
  return 0;
}

int orr_l_sandbox(lua_State *L, const char *const *allow_write) {
  apply_args a = {allow_write};
  lua_pushcfunction(L, apply);
  lua_pushlightuserdata(L, &a);
  return lua_pcall(L, 1, 0, 0);
}

/* require("orrery.sandbox") -> function(opts): the sandbox from Lua, with
** opts.allow_write a list of directories. Found by lua5.4's all-in-one
** loader in orrery.so, as orrery.core is. */
static int l_sandbox(lua_State *L) {
  const char *dirs[ORR_POLICY_MAX_DIRS + 2];
  int n = 0;
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_getfield(L, 1, "allow_write") == LUA_TTABLE) {
      for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TSTRING; i++) {
        if (n > ORR_POLICY_MAX_DIRS)
          return luaL_error(L, "sandbox: at most %d writable directories",
                            ORR_POLICY_MAX_DIRS);
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

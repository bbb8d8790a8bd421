/*
** The host primitives the template cache (orrery/template.lua) is built
** on, as orrery.core._template: a private directory, stat, list, remove,
** rename, the wall clock, a key hash, JSON in and out, QEMU's version.
** Every write goes through the engine's policy when the engine is confined
** (orrery.sandbox): a sandboxed recipe's cache can only live where it may
** write, as its VMs' files can (docs/threat-model.md).
*/
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "l_async.h"
#include "l_orrery.h"
#include "l_util.h"
#include "orrery/accel.h"
#include "orrery/policy.h"

static const orr_policy *policy(lua_State *L) {
  return orr_engine_policy(orr_l_engine(L));
}

/* nil, "ECODE: message", "ECODE" from an errno. */
static int fail_errno(lua_State *L, int code, const char *what,
                      const char *path) {
  orr_error e;
  orr_error_set(&e, code, "%s: %s: %s", what, path, strerror(errno));
  return orr_l_fail(L, &e);
}

/* hash(text) -> 16 hex digits (FNV-1a, 64 bits): a cache key. The full key
** is kept next to what it names and compared, so a collision costs a
** rebuild, never a wrong template. */
static int l_hash(lua_State *L) {
  size_t n;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
  uint64_t h = 14695981039346656037ull;
  for (size_t i = 0; i < n; i++) {
    h ^= s[i];
    h *= 1099511628211ull;
  }
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
  lua_pushstring(L, hex);
  return 1;
}

/* stat(path) -> {size, mtime_ns, ino, dev, disk (bytes allocated), uid,
** mode, dir} or nil when it does not exist (lstat: a link is not
** followed). */
static int l_stat(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (lstat(path, &st) != 0) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, (lua_Integer)st.st_size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)st.st_mtim.tv_sec * 1000000000 +
                         st.st_mtim.tv_nsec);
  lua_setfield(L, -2, "mtime_ns");
  lua_pushinteger(L, (lua_Integer)st.st_ino);
  lua_setfield(L, -2, "ino");
  lua_pushinteger(L, (lua_Integer)st.st_dev);
  lua_setfield(L, -2, "dev");
  lua_pushinteger(L, (lua_Integer)st.st_blocks * 512);
  lua_setfield(L, -2, "disk");
  lua_pushinteger(L, (lua_Integer)st.st_uid);
  lua_setfield(L, -2, "uid");
  lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
  lua_setfield(L, -2, "mode");
  lua_pushboolean(L, S_ISDIR(st.st_mode));
  lua_setfield(L, -2, "dir");
  lua_pushboolean(L, S_ISREG(st.st_mode));
  lua_setfield(L, -2, "file");
  return 1;
}

/* private_dir(path) -> true: an absolute path made if missing (its
** missing parents too, 0700), and then a directory (not a link) that is
** ours and 0700: its files hold guest memory. A confined engine uses one
** only below an allowed directory. */
static int l_private_dir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  const orr_policy *p = policy(L);
  orr_error e = {0, ""};
  char buf[4096];
  struct stat st;
  if (path[0] != '/' || strlen(path) >= sizeof buf)
    return luaL_error(L, "template: %s must be an absolute path", path);
  /* A confined engine's templates live where it may write, existing or
  ** not: their files are written, and loaded into QEMU (docs/templates.md). */
  if (p != NULL) {
    /* The directory, or the nearest ancestor that exists (made below). */
    snprintf(buf, sizeof buf, "%s", path);
    while (lstat(buf, &st) != 0 && strrchr(buf, '/') != buf)
      *strrchr(buf, '/') = '\0';
    if (orr_policy_check_dir(p, buf, "template", &e) != 0)
      return orr_l_fail(L, &e);
  }
  if (lstat(path, &st) != 0) {
    snprintf(buf, sizeof buf, "%s", path);
    for (char *c = buf + 1;; c++) {
      if (*c == '/' || *c == '\0') {
        char was = *c;
        *c = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
          return fail_errno(L, ORR_EIO, "template: cannot make", buf);
        *c = was;
        if (was == '\0')
          break;
      }
    }
    if (lstat(path, &st) != 0)
      return fail_errno(L, ORR_EIO, "template: cannot make", path);
  }
  if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid()) {
    orr_error_set(&e, ORR_EPERM,
                  "template: %s is not a directory of ours (the cache holds "
                  "guest memory)",
                  path);
    return orr_l_fail(L, &e);
  }
  if ((st.st_mode & 0077) != 0 && chmod(path, 0700) != 0)
    return fail_errno(L, ORR_EIO, "template: cannot chmod", path);
  lua_pushboolean(L, 1);
  return 1;
}

/* list(dir) -> {name, ...} sorted, without "." and ".."; nil if none. */
static int l_list(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  DIR *d = opendir(path);
  struct dirent *de;
  lua_Integer n = 0;
  if (d == NULL) {
    lua_pushnil(L);
    return 1;
  }
  lua_newtable(L);
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    lua_pushstring(L, de->d_name);
    lua_rawseti(L, -2, ++n);
  }
  closedir(d);
  lua_getglobal(L, "table");
  lua_getfield(L, -1, "sort");
  lua_pushvalue(L, -3);
  lua_call(L, 1, 0);
  lua_pop(L, 1);
  return 1;
}

/* remove(path) -> true: a file or an empty directory; a missing one is
** fine (nothing to remove). */
static int l_remove(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  const orr_policy *p = policy(L);
  struct stat st;
  orr_error e = {0, ""};
  if (lstat(path, &st) != 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (p != NULL) {
    if (orr_policy_remove(p, path, "template", &e) != 0)
      return orr_l_fail(L, &e);
  } else if ((S_ISDIR(st.st_mode) ? rmdir(path) : unlink(path)) != 0 &&
             errno != ENOENT) {
    return fail_errno(L, ORR_EIO, "template: cannot remove", path);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* rename(from, to) -> true (a directory over an empty one or none). */
static int l_rename(lua_State *L) {
  const char *from = luaL_checkstring(L, 1), *to = luaL_checkstring(L, 2);
  const orr_policy *p = policy(L);
  orr_error e = {0, ""};
  if (p != NULL) {
    if (orr_policy_rename(p, from, to, "template", &e) != 0)
      return orr_l_fail(L, &e);
  } else if (rename(from, to) != 0) {
    return fail_errno(
        L, errno == ENOTEMPTY || errno == EEXIST ? ORR_EEXIST : ORR_EIO,
        "template: cannot rename", from);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* wallclock() -> seconds since the epoch, a float (the host's clock, for
** the guest's). */
static int l_wallclock(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushinteger(L, (lua_Integer)ts.tv_sec * 1000000000 + ts.tv_nsec);
  return 1;
}

/* encode(value) -> compact JSON text; decode(text) -> value or nil, err. */
static int l_encode(lua_State *L) {
  json_t *v = orr_l_checkjson(L, 1, "template");
  char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
  json_decref(v);
  if (s == NULL)
    return luaL_error(L, "template: out of memory");
  lua_pushstring(L, s);
  free(s);
  return 1;
}

static int l_decode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  json_error_t je;
  json_t *v = json_loadb(s, n, JSON_DECODE_ANY, &je);
  if (v == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, je.text);
    return 2;
  }
  orr_l_pushjson(L, v);
  json_decref(v);
  return 1;
}

/* qemu_version(binary) -> "7.2.22 (Debian ...)" or nil, err. */
static int l_qemu_version(lua_State *L) {
  char buf[256];
  orr_error e = {0, ""};
  if (orr_qemu_version(luaL_checkstring(L, 1), buf, sizeof buf, &e) != 0)
    return orr_l_fail(L, &e);
  lua_pushstring(L, buf);
  return 1;
}

/* accel_verdict() -> "kvm" or "tcg" as accel "auto" would resolve it now
** (the cached verdict), or nil when there is none yet. */
static int l_accel_verdict(lua_State *L) {
  orr_kvm_verdict v;
  if (orr_kvm_verdict_read(&v) == 0)
    lua_pushstring(L, v.verdict);
  else
    lua_pushnil(L);
  return 1;
}

void orr_l_push_template_funcs(lua_State *L) {
  static const luaL_Reg funcs[] = {{"hash", l_hash},
                                   {"stat", l_stat},
                                   {"private_dir", l_private_dir},
                                   {"list", l_list},
                                   {"remove", l_remove},
                                   {"rename", l_rename},
                                   {"wallclock_ns", l_wallclock},
                                   {"encode", l_encode},
                                   {"decode", l_decode},
                                   {"qemu_version", l_qemu_version},
                                   {"accel_verdict", l_accel_verdict},
                                   {NULL, NULL}};
  luaL_newlib(L, funcs);
}

/*
** Where the parts of an installation are (orrery/install.h). The layout
** under a prefix comes from CMake as directories relative to it
** (GNUInstallDirs), never as absolute paths of the source or build tree.
*/
#include <dlfcn.h>
#include <limits.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orrery/error.h"
#include "orrery/install.h"

/* Relative to the install prefix (what CMake's GNUInstallDirs gives). */
#ifndef ORR_INSTALL_BINDIR
#define ORR_INSTALL_BINDIR "bin"
#endif
#ifndef ORR_INSTALL_LIBDIR
#define ORR_INSTALL_LIBDIR "lib"
#endif
#ifndef ORR_INSTALL_LUA_CMODDIR
#define ORR_INSTALL_LUA_CMODDIR "lib/lua/5.4"
#endif
#ifndef ORR_INSTALL_LUADIR
#define ORR_INSTALL_LUADIR "share/lua/5.4"
#endif
#ifndef ORR_INSTALL_GUESTDIR
#define ORR_INSTALL_GUESTDIR "share/orrery/guest"
#endif
#ifndef ORR_INSTALL_EXAMPLESDIR
#define ORR_INSTALL_EXAMPLESDIR "share/doc/orrery/examples"
#endif

/*
** The directory of the file this code was loaded from. The main program's
** link map has an empty name (and dladdr would give argv[0], which may be
** a bare name found through PATH), so that one comes from /proc/self/exe.
*/
static int own_dir(char *buf, size_t size) {
  Dl_info info;
  struct link_map *map = NULL;
  char path[PATH_MAX], *slash;
  ssize_t n;
  if (dladdr1((void *)own_dir, &info, (void **)&map, RTLD_DL_LINKMAP) == 0)
    return ORR_ENOENT;
  if (map == NULL || map->l_name == NULL || map->l_name[0] == '\0') {
    n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n <= 0)
      return ORR_ENOENT;
    path[n] = '\0';
  } else if (realpath(map->l_name, path) == NULL) {
    return ORR_ENOENT;
  }
  if ((slash = strrchr(path, '/')) == NULL)
    return ORR_ENOENT;
  *slash = '\0';
  if ((size_t)snprintf(buf, size, "%s", path[0] ? path : "/") >= size)
    return ORR_ENOENT;
  return 0;
}

/* The value of "key value" in the build tree's marker, if dir has one. */
static int marker_value(const char *dir, const char *key, char *buf,
                        size_t size) {
  char path[PATH_MAX + 32], line[PATH_MAX + 64];
  size_t klen = strlen(key);
  FILE *f;
  int rc = ORR_ENOENT;
  snprintf(path, sizeof path, "%s/%s", dir, ORR_BUILD_TREE_MARKER);
  if ((f = fopen(path, "r")) == NULL)
    return ORR_ENOENT;
  while (fgets(line, sizeof line, f) != NULL) {
    line[strcspn(line, "\n")] = '\0';
    if (strncmp(line, key, klen) == 0 && line[klen] == ' ' &&
        line[klen + 1] == '/') {
      if ((size_t)snprintf(buf, size, "%s", line + klen + 1) < size)
        rc = 0;
      break;
    }
  }
  fclose(f);
  return rc;
}

/* The prefix dir lies under when it is the prefix's rel directory. */
static int strip_suffix(const char *dir, const char *rel, char *prefix,
                        size_t size) {
  size_t d = strlen(dir), r = strlen(rel);
  if (rel[0] == '/' || r == 0 || d <= r + 1 || dir[d - r - 1] != '/' ||
      strcmp(dir + d - r, rel) != 0)
    return ORR_ENOENT;
  if (d - r - 1 == 0) /* the prefix is / itself */
    return snprintf(prefix, size, "/") < (int)size ? 0 : ORR_ENOENT;
  return (size_t)snprintf(prefix, size, "%.*s", (int)(d - r - 1), dir) < size
             ? 0
             : ORR_ENOENT;
}

int orr_install_dir(orr_dir which, char *buf, size_t size) {
  static const char *const keys[] = {"guest_dir", "lua_dir", "examples_dir",
                                     "build_dir"};
  static const char *const rels[] = {ORR_INSTALL_GUESTDIR, ORR_INSTALL_LUADIR,
                                     ORR_INSTALL_EXAMPLESDIR, NULL};
  /* Where the file may sit; the Lua module directory first, as it lies
  ** below the library directory. */
  static const char *const homes[] = {ORR_INSTALL_LUA_CMODDIR,
                                      ORR_INSTALL_LIBDIR, ORR_INSTALL_BINDIR};
  char dir[PATH_MAX], prefix[PATH_MAX];
  const char *rel;
  size_t i;
  if ((unsigned)which > ORR_DIR_BUILD || size == 0)
    return ORR_ENOENT;
  buf[0] = '\0';
  if (own_dir(dir, sizeof dir) != 0)
    return ORR_ENOENT;
  if (marker_value(dir, keys[which], buf, size) == 0)
    return 0;
  if ((rel = rels[which]) == NULL)
    return ORR_ENOENT;
  if (rel[0] == '/') /* an absolute CMAKE_INSTALL_*DIR */
    return (size_t)snprintf(buf, size, "%s", rel) < size ? 0 : ORR_ENOENT;
  for (i = 0; i < sizeof homes / sizeof homes[0]; i++) {
    if (strip_suffix(dir, homes[i], prefix, sizeof prefix) == 0) {
      size_t n = strlen(prefix);
      if ((size_t)snprintf(buf, size, "%s%s%s", prefix,
                           prefix[n - 1] == '/' ? "" : "/", rel) >= size) {
        buf[0] = '\0';
        return ORR_ENOENT;
      }
      return 0;
    }
  }
  return ORR_ENOENT;
}

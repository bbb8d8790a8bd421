/*
** Where the parts of an installation are: the default guest, the Lua
** library, the example recipes. Nothing here is an absolute path of the
** source or build tree compiled in. The code finds the file it was loaded
** from (the orrery executable, orrery.so, liborrery.so or a test program)
** and then:
**   - in a build tree, CMake writes orrery-build-tree.conf next to those
**     files (it is never installed): "key value" lines naming the build
**     directory and the source tree's parts;
**   - installed, the file sits in the prefix's bin, lib or Lua module
**     directory, and the other parts are found relative to that prefix.
**     So `cmake --install build --prefix P` works for any P, and the Debian
**     packages work under /usr.
*/
#ifndef ORRERY_INSTALL_H
#define ORRERY_INSTALL_H

#include <stddef.h>

#include "orrery/api.h"

/* The marker CMake writes into a build directory. */
#define ORR_BUILD_TREE_MARKER "orrery-build-tree.conf"

typedef enum {
  ORR_DIR_GUEST,    /* the default guest (PREFIX/share/orrery/guest) */
  ORR_DIR_LUA,      /* the Lua library's root, orrery/init.lua below it
                       (PREFIX/share/lua/5.4) */
  ORR_DIR_EXAMPLES, /* the recipes (PREFIX/share/doc/orrery/examples) */
  ORR_DIR_BUILD     /* the build directory: only in a build tree */
} orr_dir;

/*
** Writes where `which` is into buf (the directory need not exist). Returns
** 0, or ORR_ENOENT when it cannot be told: ORR_DIR_BUILD outside a build
** tree, or code loaded from somewhere that is neither a build tree nor an
** install prefix's bin, lib or Lua module directory.
*/
ORR_API int orr_install_dir(orr_dir which, char *buf, size_t size);

#endif

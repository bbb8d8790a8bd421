# Where each part of Orrery goes under the install prefix, as Debian puts
# such parts, and how the code finds one part from another.
#
# Nothing absolute is compiled in: engine/src/install.c finds the file it
# was loaded from and then either reads the marker this file writes into a
# build tree (never installed) or walks from the prefix's bin, lib or Lua
# module directory to the others, using the relative directories below. So
# the same build runs from its build tree, after `cmake --install build
# --prefix P` for any P, and from the Debian packages.
include(GNUInstallDirs)

# Debian keeps libraries and Lua C modules under lib/<multiarch>, whatever
# the prefix (GNUInstallDirs does that only for /usr).
if(CMAKE_LIBRARY_ARCHITECTURE AND CMAKE_INSTALL_LIBDIR STREQUAL "lib")
  set(CMAKE_INSTALL_LIBDIR "lib/${CMAKE_LIBRARY_ARCHITECTURE}")
endif()
set(ORR_INSTALL_LUA_CMODDIR "${CMAKE_INSTALL_LIBDIR}/lua/5.4" CACHE STRING
    "where the C module orrery.so goes (stock lua5.4 looks there)")
set(ORR_INSTALL_LUADIR "${CMAKE_INSTALL_DATADIR}/lua/5.4" CACHE STRING
    "where the Lua library (orrery/*.lua) goes")
set(ORR_INSTALL_GUESTDIR "${CMAKE_INSTALL_DATADIR}/orrery/guest" CACHE STRING
    "where the default guest goes")
set(ORR_INSTALL_EXAMPLESDIR "${CMAKE_INSTALL_DOCDIR}/examples" CACHE STRING
    "where the recipes go")

# luarocks' cmake build (orrery-scm-1.rockspec) passes the rock's own
# LIBDIR and LUADIR to install into; once deployed, the module lives in a
# luarocks tree, lib/lua/5.4 and share/lua/5.4, which is what it looks for.
if(DEFINED LIBDIR AND DEFINED LUADIR)
  set(ORR_ROCK ON)
  set(ORR_INSTALL_LUA_CMODDIR "lib/lua/5.4")
  set(ORR_INSTALL_LUADIR "share/lua/5.4")
  set(ORR_ROCK_LIBDIR "${LIBDIR}")
  set(ORR_ROCK_LUADIR "${LUADIR}")
else()
  set(ORR_ROCK OFF)
endif()

set(ORR_LAYOUT_DEFINES
  ORR_INSTALL_BINDIR="${CMAKE_INSTALL_BINDIR}"
  ORR_INSTALL_LIBDIR="${CMAKE_INSTALL_LIBDIR}"
  ORR_INSTALL_LUA_CMODDIR="${ORR_INSTALL_LUA_CMODDIR}"
  ORR_INSTALL_LUADIR="${ORR_INSTALL_LUADIR}"
  ORR_INSTALL_GUESTDIR="${ORR_INSTALL_GUESTDIR}"
  ORR_INSTALL_EXAMPLESDIR="${ORR_INSTALL_EXAMPLESDIR}")

# The build tree's marker: the build directory and the source tree's parts.
file(WRITE ${CMAKE_BINARY_DIR}/orrery-build-tree.conf
  "# Written by CMake: the orrery executable, orrery.so and the tests of\n"
  "# this build tree find the parts of the source tree here.\n"
  "build_dir ${CMAKE_BINARY_DIR}\n"
  "lua_dir ${CMAKE_SOURCE_DIR}/scripts/lib\n"
  "guest_dir ${CMAKE_BINARY_DIR}/guest\n"
  "examples_dir ${CMAKE_SOURCE_DIR}/scripts/recipes\n")

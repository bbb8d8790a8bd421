# `cmake --install build [--prefix P]`: every part where Debian puts such
# parts (the layout is in cmake/OrreryLayout.cmake). The components are the
# Debian packages' split (debian/*.install):
#   program  bin/orrery, orrery(1), bash completion, the recipes as examples
#   lua      the C module orrery.so, the Lua library, orrery-lua(3)
#   runtime  liborrery.so.N
#   dev      the public headers, liborrery.so, orrery.pc
#   guest    the default guest with its manifest
# No installed file holds a path of the source or build tree
# (spec/install_spec.lua greps the installed tree for them).

if(ORR_ROCK)
  # luarocks: the module and its Lua library only, into the rock.
  install(TARGETS orrery_module LIBRARY DESTINATION "${ORR_ROCK_LIBDIR}")
  install(DIRECTORY scripts/lib/orrery DESTINATION "${ORR_ROCK_LUADIR}"
          FILES_MATCHING PATTERN "*.lua"
          PATTERN "testing.lua" EXCLUDE PATTERN "leakcheck.lua" EXCLUDE)
  return()
endif()

if(ORR_BUILD_CLI)
  install(TARGETS orrery_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
          COMPONENT program)
  install(FILES man/orrery.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1
          COMPONENT program)
  install(FILES completions/orrery.bash
          DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions
          RENAME orrery COMPONENT program)
  install(FILES scripts/recipes/quickstart.lua scripts/recipes/minimal.lua
                scripts/recipes/linux-vm.lua
          DESTINATION ${ORR_INSTALL_EXAMPLESDIR} COMPONENT program)
endif()

# The Lua library: what recipes require. The busted helpers of this
# repository's own specs (testing.lua, leakcheck.lua) stay behind.
install(TARGETS orrery_module LIBRARY DESTINATION ${ORR_INSTALL_LUA_CMODDIR}
        COMPONENT lua)
install(DIRECTORY scripts/lib/orrery DESTINATION ${ORR_INSTALL_LUADIR}
        COMPONENT lua FILES_MATCHING PATTERN "*.lua"
        PATTERN "testing.lua" EXCLUDE PATTERN "leakcheck.lua" EXCLUDE)
install(FILES man/orrery-lua.3 DESTINATION ${CMAKE_INSTALL_MANDIR}/man3
        COMPONENT lua)

if(ORR_BUILD_SHARED)
  install(TARGETS orrery_shared
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime
                  NAMELINK_SKIP)
  install(TARGETS orrery_shared
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev
                  NAMELINK_ONLY)
  install(DIRECTORY engine/include/orrery
          DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev
          FILES_MATCHING PATTERN "*.h")
  # orrery.pc, written at install time so that its prefix is the one
  # installed to (`--prefix P` included), not the one configured.
  install(CODE "
    set(pcdir \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig\")
    file(MAKE_DIRECTORY \"\${pcdir}\")
    file(WRITE \"\${pcdir}/orrery.pc\" \"prefix=\${CMAKE_INSTALL_PREFIX}
libdir=\\\${prefix}/${CMAKE_INSTALL_LIBDIR}
includedir=\\\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}

Name: orrery
Description: Orrery VM orchestration engine: HCS documents run on QEMU over QMP
Version: ${PROJECT_VERSION}
Requires: libuv jansson
Libs: -L\\\${libdir} -lorrery
Cflags: -I\\\${includedir}
\")
    message(STATUS \"Installing: \${pcdir}/orrery.pc\")
    list(APPEND CMAKE_INSTALL_MANIFEST_FILES \"\${pcdir}/orrery.pc\")
  " COMPONENT dev)
endif()

# The guest: what build-guest.sh writes (its manifest names the files), not
# its download cache, work area or stamp.
if(ORR_BUILD_GUEST)
  install(DIRECTORY ${CMAKE_BINARY_DIR}/guest/
          DESTINATION ${ORR_INSTALL_GUESTDIR} COMPONENT guest
          PATTERN debs EXCLUDE PATTERN work EXCLUDE PATTERN stamp EXCLUDE
          PATTERN "*.tmp" EXCLUDE)
endif()

-- The orrery module as a rock: the C module orrery.so and the Lua library,
-- built by CMake (cmake/OrreryLayout.cmake sees luarocks' LIBDIR and LUADIR
-- and installs only those two parts). Nothing is downloaded: the only
-- dependency is Lua itself, and the C libraries come from Debian
-- (vendor/packages.txt). The default guest is not part of the rock: install
-- the orrery-guest package or point ORRERY_GUEST_DIR at a guest built with
-- vendor/guest/build-guest.sh.
--   luarocks --lua-version=5.4 --tree TREE make
rockspec_format = "3.0"
package = "orrery"
version = "scm-1"
source = {
  url = "git+file:///dev/null", -- `luarocks make` builds the tree it runs in
}
description = {
  summary = "Lua-scriptable VM orchestration on QEMU",
  detailed = [[
Builds HCS-style compute system documents, runs them as qemu-system-x86_64
processes driven over QMP on a libuv loop, changes them at run time (SCSI
disks, PCI devices, NICs, memory, CPU limits) and acts inside the guest
through its agent. See orrery-lua(3).]],
  license = "unspecified",
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
external_dependencies = {
  LIBUV = { header = "uv.h", library = "uv" },
  JANSSON = { header = "jansson.h", library = "jansson" },
  -- Debian keeps curl.h under the multiarch include dir, where luarocks does
  -- not look; CMake finds it through pkg-config, so only the library is checked.
  CURL = { library = "curl" },
  YAML = { header = "yaml.h", library = "yaml" },
}
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_C_FLAGS = "$(CFLAGS)",
    LIBDIR = "$(LIBDIR)",
    LUADIR = "$(LUADIR)",
    ORR_BUILD_CLI = "OFF",
    ORR_BUILD_SHARED = "OFF",
    ORR_BUILD_TESTS = "OFF",
    ORR_BUILD_GUEST = "OFF",
  },
}

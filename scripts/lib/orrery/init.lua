-- The orrery module: the C core (build/orrery.so, as "orrery.core") plus the
-- parts of the library written in Lua. require("orrery") resolves here when
-- scripts/lib is on package.path (busted's .busted and the orrery executable
-- set that up); the C core alone is also loadable as require("orrery").
local core = require("orrery.core")

-- The embedded default guest built by the build (vendor/guest): a Debian
-- kernel and an initramfs running qemu-ga. Returns the table
-- set_linux_kernel_direct_boot takes. $ORRERY_GUEST_DIR overrides where.
function core.default_guest()
  local dir = os.getenv("ORRERY_GUEST_DIR") or (core.build_dir .. "/guest")
  local f = io.open(dir .. "/cmdline")
  if not f then
    error("default_guest: no guest in " .. dir .. " (build it with "
      .. "`cmake --build build` or vendor/guest/build-guest.sh " .. dir .. ")", 2)
  end
  local cmdline = f:read("l")
  f:close()
  return {
    -- The uncompressed kernel: xz decompression alone costs 2.4 s on TCG.
    KernelFilePath = dir .. "/vmlinux",
    InitRdPath = dir .. "/initramfs.cpio.gz",
    KernelCmdLine = cmdline,
  }
end

-- orrery.Guest's waits built on exec (scripts/lib/orrery/guest.lua); a
-- core built before orrery.Guest existed simply lacks them.
if core.Guest then require("orrery.guest")(core) end

return core

-- The smallest VM that boots: memory, one CPU and the default guest's
-- kernel. `orrery run` boots it, waits until its guest agent answers and
-- shuts it down again; `orrery plan` prints its document and the QEMU
-- command line it would run.
local orrery = require("orrery")

local b = orrery.builder{ owner = "minimal" }
b:set_memory{ SizeInMB = 256 }
b:set_processor{ Count = 1 }
b:set_linux_kernel_direct_boot(orrery.default_guest())

local vm <close> = assert(orrery.create("minimal", b, { accel = "tcg" }))
assert(vm:start())
if orrery.default_backend() ~= "plan" then
  local g = assert(vm:guest{ timeout_ms = 120000 })
  print("booted: Linux " .. assert(g:os_info())["kernel-release"])
  g:close()
end
print("shut down: " .. assert(vm:shutdown{ timeout_ms = 10000 }).Reason)

return b

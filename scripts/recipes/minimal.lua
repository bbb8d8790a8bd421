-- The smallest VM that boots: memory, one CPU and a kernel.
local orrery = require("orrery")

local b = orrery.builder{ owner = "minimal" }
b:set_memory{ SizeInMB = 256 }
b:set_processor{ Count = 1 }
b:set_linux_kernel_direct_boot{
  KernelFilePath = "/var/lib/orrery/guest/vmlinuz",
  InitRdPath = "/var/lib/orrery/guest/initrd.img",
  KernelCmdLine = "console=ttyS0",
}

return b

-- A Linux VM: two SCSI disks, a virtio RNG passed through VPCI, user-mode
-- networking, a Plan9 share and COM1 on a unix socket, over two NUMA nodes.
--   orrery plan scripts/recipes/linux-vm.lua
local orrery = require("orrery")

local b = orrery.builder{ owner = "linux-vm" }

b:set_memory{ SizeInMB = 1024 }
b:set_processor{ Count = 4 }
b:set_numa_processors{ count_per_node = { max = 2 }, node_per_socket = 1 }
b:set_numa{
  VirtualNodeCount = 2,
  Settings = {
    { VirtualNodeNumber = 0, CountOfProcessors = 2, CountOfMemoryBlocks = 512 },
    { VirtualNodeNumber = 1, PhysicalNodeNumber = 0, VirtualSocketNumber = 1,
      CountOfProcessors = 2, CountOfMemoryBlocks = 512 },
  },
}

-- Placeholders: point these at a real kernel and initramfs to boot.
b:set_linux_kernel_direct_boot{
  KernelFilePath = "/var/lib/orrery/guest/vmlinuz",
  InitRdPath = "/var/lib/orrery/guest/initrd.img",
  KernelCmdLine = "console=ttyS0 root=/dev/sda ro",
}

b:add_scsi_controller(0)
b:add_scsi_disk(0, 0, { Type = "VirtualDisk", Path = "/var/lib/orrery/linux-vm/root.img",
                        ReadOnly = true })
b:add_scsi_controller(1)
b:add_scsi_disk(1, 0, { Type = "VirtualDisk", Path = "/var/lib/orrery/linux-vm/data.img" })
b:set_storage_qos{ IopsMaximum = 5000, BandwidthMaximum = 100000000 }

b:add_vpci_device("6f5c3a1e-1b2d-4c3e-9f4a-0a1b2c3d4e5f", {
  Functions = { { DeviceInstancePath = "qemu:virtio-rng-pci" } },
  PropagateNumaAffinity = true,
})

b:add_network_adapter("2b4a8c1e-3d5f-4a6b-8c7d-9e0f1a2b3c4d",
                      { EndpointId = "user", MacAddress = "00-15-5D-52-C0-0A" })

b:add_plan9_share{ Name = "src", AccessName = "src", Path = "/srv/src", Port = 564,
                   ReadOnly = true }

b:set_serial_console(0, "/tmp/orrery-linux-vm-com1.sock")

return b

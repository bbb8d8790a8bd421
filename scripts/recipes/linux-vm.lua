-- A Linux VM with one of everything: two SCSI disks (one read-only), a
-- virtio RNG passed through VPCI, user-mode networking, a Plan9 share and
-- COM1 on a unix socket, over two NUMA nodes. `orrery run` boots it on the
-- default guest and finds each device from inside the guest; `orrery plan`
-- prints the document and the QEMU argv, and makes no files.
--   orrery plan linux-vm.lua
--   orrery run linux-vm.lua
local orrery = require("orrery")

local real = orrery.default_backend() ~= "plan"

-- Disk images, the share and the console socket live in a private
-- directory, removed however the recipe ends.
local dir = "/tmp/orrery-linux-vm"
if real then
  dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -m 0700 " .. dir .. " " .. dir .. "/share"))
  assert(os.execute("truncate -s 16M " .. dir .. "/root.img " .. dir .. "/data.img"))
  local f = assert(io.open(dir .. "/share/hello.txt", "w"))
  f:write("shared from the host\n")
  f:close()
end
local cleanup <close> = setmetatable({}, { __close = function()
  if real then os.execute("rm -rf " .. dir) end
end })

local b = orrery.builder{ owner = "linux-vm" }

b:set_memory{ SizeInMB = 512 }
b:set_processor{ Count = 2 }
b:set_numa_processors{ count_per_node = { max = 1 }, node_per_socket = 1 }
b:set_numa{
  VirtualNodeCount = 2,
  Settings = {
    { VirtualNodeNumber = 0, CountOfProcessors = 1, CountOfMemoryBlocks = 256 },
    { VirtualNodeNumber = 1, PhysicalNodeNumber = 0, VirtualSocketNumber = 1,
      CountOfProcessors = 1, CountOfMemoryBlocks = 256 },
  },
}
b:set_linux_kernel_direct_boot(orrery.default_guest())

b:add_scsi_controller(0)
b:add_scsi_disk(0, 0, { Type = "VirtualDisk", Path = dir .. "/root.img", ReadOnly = true })
b:add_scsi_controller(1)
b:add_scsi_disk(1, 0, { Type = "VirtualDisk", Path = dir .. "/data.img" })
b:set_storage_qos{ IopsMaximum = 5000, BandwidthMaximum = 100000000 }

local RNG = "6f5c3a1e-1b2d-4c3e-9f4a-0a1b2c3d4e5f"
b:add_vpci_device(RNG, {
  Functions = { { DeviceInstancePath = "qemu:virtio-rng-pci" } },
  PropagateNumaAffinity = true,
})

local MAC = "00-15-5D-52-C0-0A"
b:add_network_adapter("2b4a8c1e-3d5f-4a6b-8c7d-9e0f1a2b3c4d",
                      { EndpointId = "user", MacAddress = MAC })

b:add_plan9_share{ Name = "src", AccessName = "src", Path = dir .. "/share", Port = 564,
                   ReadOnly = true }

b:set_serial_console(0, dir .. "/com1.sock")

local vm <close> = assert(orrery.create("linux-vm", b, { accel = "tcg" }))
assert(vm:start())
if real then
  local g = assert(vm:guest{ timeout_ms = 120000 })
  local function sh(cmd)
    local r = assert(g:exec(cmd))
    assert(r.exit_code == 0, cmd .. ": " .. r.stderr)
    return (r.stdout:gsub("\n$", ""))
  end
  print("root disk:  " .. assert(g:wait_scsi_disk(0, 0)) .. " (read-only: "
    .. sh("cat /sys/block/" .. assert(g:wait_scsi_disk(0, 0)):match("[^/]+$") .. "/ro") .. ")")
  print("data disk:  " .. assert(g:wait_scsi_disk(1, 0)))
  print("rng:        PCI " .. assert(g:wait_pci_device(RNG)))
  print("nic:        " .. assert(g:wait_nic(MAC)))
  sh("mkdir -p /mnt/src && mount -t 9p -o trans=virtio,version=9p2000.L src /mnt/src")
  print("share:      " .. sh("cat /mnt/src/hello.txt"))
  print("numa nodes: " .. sh("ls -d /sys/devices/system/node/node* | wc -l"))
  sh("umount /mnt/src")
  g:close()
end
print("shut down: " .. assert(vm:shutdown{ timeout_ms = 10000 }).Reason)

return b

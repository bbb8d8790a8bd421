-- Boots the embedded default guest on a real QEMU (TCG), hot-adds and
-- removes a SCSI disk and a PCI device, and shuts the VM down, printing each
-- step with its time. Run: build/orrery run scripts/recipes/quickstart.lua
local orrery = require("orrery")

local t0 = orrery.now()
local function step(fmt, ...)
  print(string.format("%6d ms  " .. fmt, orrery.now() - t0, ...))
end

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir))
local disk = dir .. "/data.img"
assert(os.execute("truncate -s 64M " .. disk))

local b = orrery.builder{ owner = "quickstart" }
b:set_memory{ SizeInMB = 256 }
b:set_processor{ Count = 1 }
b:set_linux_kernel_direct_boot(orrery.default_guest())
b:add_scsi_controller(0)

local vm <close> = assert(orrery.create("quickstart", b, { accel = "tcg" }))
step("created: QEMU pid %d, paused, QMP connected", vm:properties().ProcessId)
assert(vm:start())
step("started")

assert(vm:add_scsi_disk(0, 3, { Type = "VirtualDisk", Path = disk }))
local seen = false
for _, blk in ipairs(assert(vm:qmp("query-block"))) do
  if blk.qdev and blk.qdev:find("disk-0-3", 1, true) then seen = true end
end
assert(seen, "QEMU does not show the disk")
step("hot-added %s at controller 0 LUN 3 (QEMU's query-block shows it)", disk)
assert(vm:remove_scsi_disk(0, 3))
step("hot-removed the disk")

-- A PCI unplug needs the guest's cooperation (ACPI hotplug), so give the
-- guest time to boot before the round trip; TCG needs about 3 s.
orrery.sleep(5000)
local rng = "6f5c3a1e-1b2d-4c3e-9f4a-0a1b2c3d4e5f"
assert(vm:add_vpci_device(rng, {
  Functions = { { DeviceInstancePath = "qemu:virtio-rng-pci" } } }))
step("hot-added a virtio-rng PCI device")
assert(vm:remove_vpci_device(rng, { timeout_ms = 10000 }))
step("hot-removed it (the guest acknowledged the unplug)")

local info = assert(vm:shutdown{ timeout_ms = 10000 })
step("shut down: %s", info.Reason)
os.remove(disk)
os.remove(dir)

-- Boots the embedded default guest on a real QEMU (TCG) and shows every
-- host-side change from inside the guest: a data disk made on the fly is
-- hot-added, found by its SCSI address, formatted, mounted, written, read
-- back, unmounted and hot-removed; a PCI device is hot-added, found at its
-- PCI address and removed; then the VM shuts down. Each step prints the
-- time since the start.
--   orrery run quickstart.lua [DIR]   the real thing (about 10 s on TCG);
--                                     the data disk is made in DIR (default
--                                     $TMPDIR or /tmp)
--   orrery plan quickstart.lua        the same changes as the QMP they would
--                                     send; no guest, no files
--   orrery plan --backend kubevirt quickstart.lua
--                                     the VirtualMachine and the Kubernetes
--                                     API requests the kubevirt backend
--                                     would send (its paths mapped to
--                                     cluster sources below; override them
--                                     with --source PATH=SOURCE)
-- It runs no host program, so it runs sandboxed too:
--   orrery run --sandbox --allow-write=DIR quickstart.lua DIR
local orrery = require("orrery")

local t0 = orrery.now()
local function step(fmt, ...)
  print(string.format("%6.0f ms  " .. fmt, orrery.now() - t0, ...))
end

local backend = orrery.default_backend()
local real = backend == "qemu"

-- The data disk, a sparse file of a name of its own, removed however the
-- recipe ends (declared before the VM, so it goes after the VM has let go
-- of it).
local dir = (...) or os.getenv("TMPDIR") or "/tmp"
math.randomseed() -- Lua 5.4: a random seed
local disk = string.format("%s/orrery-quickstart-%d.img", dir, math.random(1, 1e9))
local cleanup <close> = setmetatable({}, { __close = function()
  if real then os.remove(disk) end
end })

local b = orrery.builder{ owner = "quickstart" }
b:set_memory{ SizeInMB = 256 }
b:set_processor{ Count = 1 }
b:set_linux_kernel_direct_boot(orrery.default_guest())
b:add_scsi_controller(0)

local opts = { accel = "tcg" }
if backend == "kubevirt" then
  -- A cluster has none of this host's files: each path of the document
  -- gets a cluster source (docs/kubevirt.md). The kernel and initramfs come
  -- from a container image holding the default guest (not published:
  -- build one, and name it with --source), the data disk is a PVC.
  local guest, image = orrery.default_guest(), "localhost/orrery-guest:0.1.0"
  opts = { sources = {
    [guest.KernelFilePath] = "containerdisk:" .. image .. "#/boot/vmlinuz",
    [guest.InitRdPath] = "containerdisk:" .. image .. "#/boot/initrd.img",
    [disk] = "pvc:quickstart-data",
  } }
end
local vm <close> = assert(orrery.create("quickstart", b, opts))
local pid = vm:properties().ProcessId
step(pid and ("created: QEMU pid " .. pid .. ", paused, QMP connected")
  or ("created on the %s backend as a dry run: nothing runs"):format(backend))
assert(vm:start())
step("started")

-- The agent answers once the guest has booted (about 3 s on TCG). A plan
-- has no guest: the steps inside it are skipped.
local g
if real then
  g = assert(vm:guest{ timeout_ms = 120000 })
  step("guest agent ready: Linux %s", assert(g:os_info())["kernel-release"])
end

local function run(argv)
  local r = assert(g:exec(argv))
  assert(r.exit_code == 0, table.concat(argv, " ") .. ": " .. r.stderr)
  return r.stdout
end

if real then -- 64 MiB: the last byte written, the rest a hole
  local f = assert(io.open(disk, "wb"))
  assert(f:seek("set", 64 * 1024 * 1024 - 1))
  assert(f:write("\0"))
  assert(f:close())
end
local lun = 3
assert(vm:add_scsi_disk(0, lun, { Type = "VirtualDisk", Path = disk }))
step("hot-added %s (64 MiB) at controller 0 LUN %d", disk, lun)
if g then
  local dev = assert(g:wait_scsi_disk(0, lun, { timeout_ms = 10000 }))
  step("the guest sees it as %s (found by its SCSI address in /sys)", dev)
  run{ "mkfs.ext2", "-q", dev }
  step("mkfs.ext2 %s", dev)
  assert(g:mount_scsi_disk(0, lun, "/mnt/data", { fstype = "ext2" }))
  step("mounted on /mnt/data")
  local text = "written by the quickstart at " .. os.date("!%Y-%m-%dT%H:%M:%SZ") .. "\n"
  assert(g:write_file("/mnt/data/hello.txt", text))
  run{ "sync" }
  local back = assert(g:read_file("/mnt/data/hello.txt"))
  assert(back == text, "read back something else: " .. back)
  step("wrote and read back /mnt/data/hello.txt (%d bytes)", #back)
  run{ "umount", "/mnt/data" }
  step("unmounted")
end
assert(vm:remove_scsi_disk(0, lun))
step("hot-removed the disk")

local rng = "6f5c3a1e-1b2d-4c3e-9f4a-0a1b2c3d4e5f"
local ok, err, code = vm:add_vpci_device(rng, {
  Functions = { { DeviceInstancePath = "qemu:virtio-rng-pci" } } })
if backend == "kubevirt" then -- KubeVirt adds host devices only at start
  assert(not ok and code == "ENOTSUP", err)
  step("no PCI hot-plug on KubeVirt: %s", err)
else
  assert(ok, err)
  step("hot-added a virtio-rng PCI device")
end
if g then
  local addr = assert(g:wait_pci_device(rng, { timeout_ms = 10000 }))
  local ids = run{ "cat", "/sys/bus/pci/devices/" .. addr .. "/vendor",
                   "/sys/bus/pci/devices/" .. addr .. "/device" }
  step("the guest sees it at %s (%s)", addr,
    ids:gsub("0x", ""):gsub("\n(.)", ":%1"):gsub("\n", ""))
end
if ok then
  assert(vm:remove_vpci_device(rng, { timeout_ms = 10000 }))
  step("hot-removed it%s", g and " (the guest acknowledged the unplug)" or "")
end

if g then g:close() end
local info = assert(vm:shutdown{ timeout_ms = 10000 })
step("shut down: %s", info.Reason)

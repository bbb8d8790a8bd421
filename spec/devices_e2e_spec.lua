-- Run-time devices on a real QEMU (TCG) running the default guest (issue 13
-- §2-4, §6): memory growing and shrinking, VPMem devices, mapped pipes, disk
-- snapshots and GuestRequests, each checked from inside the guest through
-- qemu-ga. One VM (a clone of the document's template) serves the whole
-- file; the tests run in order.
local orrery = require("orrery")

local T = require("orrery.testing")

local ROOT = T.tmpdir()
assert(os.execute("mkdir -p " .. ROOT .. "/run"))
local MEMORY_MB, MAX_MB = 256, 768

local function eventually(fn, timeout_ms) return T.eventually(fn, timeout_ms, 100) end

describe("run-time devices on the default guest (TCG)", function()
  local vm, g

  local function run(cmd)
    local r = assert(g:exec(cmd))
    assert.are.equal(0, r.exit_code, (type(cmd) == "string" and cmd or
      table.concat(cmd, " ")) .. ": " .. r.stderr)
    return r.stdout
  end

  local function mem_total_mb()
    return tonumber(run("grep MemTotal /proc/meminfo"):match("(%d+) kB")) / 1024
  end

  setup(function()
    local b = T.builder("devices-e2e", { memory = MEMORY_MB })
    b:set_linux_kernel_direct_boot(orrery.default_guest())
    b:add_vpmem_controller(4, 64 * 1024 * 1024)
    local id = string.format("devices-e2e-%d-%d", os.time(), math.random(1e6))
    -- A clone of the document's cached template (virtio-mem's maximum
    -- included): what is tested is what happens after start.
    vm, g = T.guest_vm(id, b, { memory_max_mb = MAX_MB }, ROOT .. "/run/vm")
  end)

  teardown(function()
    if g then g:close() end
    if vm then
      vm:terminate()
      vm:close()
    end
    os.execute("rm -rf " .. ROOT)
  end)

  it("grows memory with virtio-mem up to the maximum and shrinks it back", function()
    local boot = mem_total_mb()
    assert(vm:update_memory(MEMORY_MB + 256))
    assert.are.equal(MEMORY_MB + 256,
      vm:document().VirtualMachine.ComputeTopology.Memory.SizeInMB)
    -- virtio-mem plugs the blocks and the guest onlines them (movable).
    local grown = eventually(function()
      local mb = mem_total_mb()
      return mb >= boot + 255 and mb
    end, 60000)
    assert.is_truthy(grown, "MemTotal did not grow by 256 MiB: " .. mem_total_mb())
    assert.are.equal(256 * 1024 * 1024,
      vm:qmp("qom-get", { path = "/machine/peripheral/vmem0", property = "size" }))

    -- Beyond the maximum, or not a whole block above the boot size: refused,
    -- nothing changed.
    local ok, err, code = vm:update_memory(MAX_MB + 2)
    assert.is_nil(ok)
    assert.are.equal("EINVAL", code)
    assert.matches("memory_max_mb = 768", err)
    ok, err, code = vm:update_memory(MEMORY_MB + 3)
    assert.are.equal("EINVAL", code)
    assert.matches("2 MB blocks", err)
    assert.are.equal(MEMORY_MB + 256,
      vm:document().VirtualMachine.ComputeTopology.Memory.SizeInMB)

    -- Back to the boot size: the guest offlines and gives the blocks back.
    assert(vm:update_memory(MEMORY_MB))
    assert.is_truthy(eventually(function() return mem_total_mb() <= boot + 1 end, 60000),
      "MemTotal did not shrink back: " .. mem_total_mb())
    assert.is_truthy(eventually(function()
      return vm:qmp("qom-get", { path = "/machine/peripheral/vmem0", property = "size" }) == 0
    end, 30000))

    -- Below the boot size the balloon takes over.
    assert(vm:update_memory(MEMORY_MB - 64))
    assert.is_truthy(eventually(function() return mem_total_mb() <= boot - 63 end, 60000),
      "MemTotal did not drop by 64 MiB: " .. mem_total_mb())
    assert(vm:update_memory(MEMORY_MB))
    assert.is_truthy(eventually(function() return mem_total_mb() >= boot - 1 end, 60000))
  end)
  it("adds a VPMem device the guest sees as /dev/pmemN (QEMU cannot remove it)", function()
    local img = ROOT .. "/pmem0.raw"
    local text = "written on the host before the add\n"
    T.spit(img, text .. string.rep("\0", 4 * 1024 * 1024 - #text))
    assert(vm:add_vpmem_device(1, { HostPath = img, ReadOnly = true }))
    assert.are.same({ HostPath = img, ReadOnly = true },
      vm:document().VirtualMachine.Devices.VirtualPMem.Devices["1"])
    local dev
    assert.is_truthy(eventually(function()
      local r = assert(g:exec("ls /sys/bus/nd/devices/*/block 2>/dev/null"))
      dev = r.stdout:match("(pmem%d+)")
      return dev ~= nil
    end, 30000), "no /dev/pmemN appeared")
    assert.are.equal(text, run("head -c " .. #text .. " /dev/" .. dev))

    -- Refused, nothing changed: a taken number, a number past MaximumCount,
    -- an image over MaximumSizeBytes.
    local ok, err, code = vm:add_vpmem_device(1, { HostPath = img })
    assert.is_nil(ok)
    assert.are.equal("EEXIST", code)
    local big = T.image(ROOT, "128M")
    ok, err, code = vm:add_vpmem_device(2, { HostPath = big })
    assert.are.equal("EINVAL", code)
    assert.matches("MaximumSizeBytes", err)
    assert.is_nil(vm:document().VirtualMachine.Devices.VirtualPMem.Devices["2"])

    -- QEMU 7.2 cannot unplug it: refused up front, the device stays.
    ok, err, code = vm:remove_vpmem_device(1)
    assert.are.equal("ENOTSUP", code)
    assert.matches("cannot unplug a PMem device", err)
    assert.are.same({ HostPath = img, ReadOnly = true },
      vm:document().VirtualMachine.Devices.VirtualPMem.Devices["1"])
    assert.are.equal(text, run("head -c " .. #text .. " /dev/" .. dev))
    ok, err, code = vm:remove_vpmem_device(3)
    assert.are.equal("ENOENT", code)
  end)
  it("maps a pipe: bytes both ways between a host socket and /dev/virtio-ports/NAME", function()
    local path = ROOT .. "/demo.sock"
    assert(vm:add_pipe(path))
    assert.are.same({ Name = "demo", GuestPath = "/dev/virtio-ports/demo" },
      vm:properties().MappedPipes[path])
    assert.is_truthy(eventually(function()
      return assert(g:exec("test -e /dev/virtio-ports/demo")).exit_code == 0
    end, 10000), "the guest has no /dev/virtio-ports/demo")
    local s <close> = assert(vm:pipe(path))
    -- guest -> host
    run("printf 'first line\\r\\nsecond' > /dev/virtio-ports/demo")
    assert.are.equal("first line", s:read_line{ timeout_ms = 10000 })
    assert.are.equal("sec", s:expect("s%a%a", { timeout_ms = 10000 }))
    assert.are.equal("ond", s:read{ timeout_ms = 10000 })
    -- host -> guest, the guest reading while the host writes
    local reader = orrery.spawn(function()
      return g:exec({ "sh", "-c", "head -n1 /dev/virtio-ports/demo" }, { timeout_ms = 20000 })
    end)
    orrery.sleep(300)
    assert(s:write("from the host\n"))
    local r = reader:wait()
    assert.are.equal("from the host\n", r.stdout)
    -- Nothing more: the deadline, saying what was not seen.
    local ok, err, code = s:read_line{ timeout_ms = 200 }
    assert.is_nil(ok)
    assert.are.equal("ETIMEDOUT", code)
    assert.matches("a whole line not seen within 200 ms", err)

    -- Refused, naming the rule: the same path again, a path where a file is,
    -- a stream to a socket that is not one of the VM's pipes.
    ok, err, code = vm:add_pipe(path)
    assert.are.equal("EEXIST", code)
    T.spit(ROOT .. "/taken", "x")
    ok, err, code = vm:add_pipe(ROOT .. "/taken")
    assert.are.equal("EEXIST", code)
    assert.matches("QEMU would replace it", err)
    assert.are.equal("x", T.slurp(ROOT .. "/taken"))
    ok, err, code = vm:pipe(ROOT .. "/taken")
    assert.are.equal("ENOENT", code)

    s:close()
    assert(vm:remove_pipe(path))
    assert.is_nil(vm:properties().MappedPipes[path])
    assert.is_nil(io.open(path)) -- QEMU took its socket away
    assert.is_truthy(eventually(function()
      return assert(g:exec("test -e /dev/virtio-ports/demo")).exit_code ~= 0
    end, 10000), "/dev/virtio-ports/demo is still there")
    ok, err, code = vm:remove_pipe(path)
    assert.are.equal("ENOENT", code)
  end)

  it("carries out hcsshim's GuestRequests: mounts a disk and a PMem device, refuses the rest", function()
    local guid0 = orrery.scsi_controller_guids[0]
    local img = T.image(ROOT, "16M")
    assert(T.run("mkfs.ext2 -q -F " .. img))
    local lun = "VirtualMachine/Devices/Scsi/" .. guid0 .. "/Attachments/3"
    local gr = { ResourceType = "MappedVirtualDisk", RequestType = "Add",
      Settings = { MountPath = "/mnt/gr", Controller = 0, Lun = 3 } }
    assert(vm:modify{ ResourcePath = lun, RequestType = "Add",
      Settings = { Type = "VirtualDisk", Path = img }, GuestRequest = gr })
    run("echo written > /mnt/gr/f && sync")
    assert.matches("/mnt/gr type ext4", run("mount"))
    gr.RequestType = "Remove"
    assert(vm:modify{ ResourcePath = lun, RequestType = "Remove", GuestRequest = gr })
    assert.is_nil(run("mount"):find("/mnt/gr", 1, true))
    assert.is_nil(vm:document().VirtualMachine.Devices.Scsi[guid0].Attachments["3"])

    -- A guest half that fails takes the host half back: nothing changed.
    local blank = T.image(ROOT, "8M")
    gr.RequestType = "Add"
    local ok, err, code = vm:modify{ ResourcePath = lun, RequestType = "Add",
      Settings = { Type = "VirtualDisk", Path = blank }, GuestRequest = gr }
    assert.is_nil(ok)
    assert.are.equal("EBACKEND", code)
    assert.matches("in the guest: .*mount", err)
    assert.is_nil(vm:document().VirtualMachine.Devices.Scsi[guid0].Attachments["3"])

    -- The PMem device added earlier, mounted by a guest-only request.
    local pm = ROOT .. "/pmem-fs.raw"
    assert(T.run("truncate -s 8M " .. pm .. " && mkfs.ext2 -q -F " .. pm))
    assert(vm:modify{ ResourcePath = "VirtualMachine/Devices/VirtualPMem/Devices/2",
      RequestType = "Add", Settings = { HostPath = pm, ReadOnly = true },
      GuestRequest = { ResourceType = "VPMemDevice", RequestType = "Add",
        Settings = { DeviceNumber = 2, MountPath = "/mnt/pm" } } })
    assert.matches("/mnt/pm type ext4 %(ro", run("mount"))
    assert.matches("lost%+found", run("ls /mnt/pm"))

    -- What the default guest cannot do, and bad shapes: refused, naming it.
    ok, err, code = vm:modify{ GuestRequest = { ResourceType = "Network",
      RequestType = "Add", Settings = { ID = "x" } } }
    assert.are.equal("ENOTSUP", code)
    assert.matches("Add Network", err)
    ok, err, code = vm:modify{ GuestRequest = { ResourceType = "MappedDirectory",
      RequestType = "Add", Settings = { MountPath = 7 } } }
    assert.are.equal("EINVAL", code)
    assert.matches("MountPath", err)
  end)
end)

-- orrery.VM on a real qemu-system-x86_64 (TCG): the lifecycle, every
-- run-time change checked both in the live document and in QEMU's own
-- answers (vm:qmp), the refusals and rollbacks, unplug deadlines, QEMU
-- killed under pending operations, eight VMs at once, and, last, no leaked
-- process, socket or file descriptor.
--
-- Every VM's runtime directory lives below one private root made for this
-- run (the create option runtime_dir: the engine picked its default root
-- when the first VM of this Lua state was created, possibly in another
-- spec file), so the leak checks see this file's QEMUs and sockets only.
local orrery = require("orrery")

local C0 = "df6d0690-79e5-55b6-a5ec-c1e2f77f580a" -- SCSI controller 0
local C1 = "0110f83b-de10-5172-a266-78bca56bf50a" -- SCSI controller 1 (unused)
local SCSI = "VirtualMachine/Devices/Scsi/"

local T = require("orrery.testing")
local sh, alive, eventually, fd_count = T.sh, T.alive, T.eventually, T.fd_count

-- The private root (short, because unix socket paths live below it).
local ROOT = T.tmpdir()

-- QEMUs of this run: their argv names sockets below ROOT.
local function qemu_pids() return T.qemu_pids(ROOT) end

local function image(size) return T.image(ROOT, size) end

-- T.builder, but 128 MiB unless opts.memory says otherwise.
local function builder(owner, opts)
  opts = opts or {}
  return T.builder(owner, { memory = opts.memory or 128, cpus = opts.cpus, StopOnReset = opts.StopOnReset })
end

local function create(id, b, opts) return T.create(id, b, opts, ROOT .. "/" .. id) end

local function attachments(vm, ctrl)
  local scsi = vm:document().VirtualMachine.Devices.Scsi
  return scsi and scsi[ctrl or C0] and scsi[ctrl or C0].Attachments or {}
end

local function devices(vm, group)
  return vm:document().VirtualMachine.Devices[group] or {}
end

-- QEMU's view of the disks: qdev id -> query-block's "inserted".
local function qemu_disks(vm)
  local out = {}
  for _, blk in ipairs(assert(vm:qmp("query-block"))) do
    if blk.qdev then out[blk.qdev] = blk.inserted or {} end
  end
  return out
end

-- QEMU's block nodes: node-name -> node.
local function qemu_nodes(vm)
  local out = {}
  for _, n in ipairs(assert(vm:qmp("query-named-block-nodes", { flat = true }))) do
    out[n["node-name"]] = n
  end
  return out
end

-- QEMU's PCI devices: qdev id -> { vendor, device, parent = qdev id of the
-- bridge (root port) it sits behind }.
local function qemu_pci(vm)
  local out = {}
  local function walk(devs, parent)
    for _, d in ipairs(devs) do
      if d.qdev_id and d.qdev_id ~= "" then
        out[d.qdev_id] = { vendor = d.id.vendor, device = d.id.device, parent = parent }
      end
      if d.pci_bridge and d.pci_bridge.devices then walk(d.pci_bridge.devices, d.qdev_id) end
    end
  end
  for _, bus in ipairs(assert(vm:qmp("query-pci"))) do walk(bus.devices, nil) end
  return out
end

-- Every device QEMU holds that was added by id: qom-list of
-- /machine/peripheral, which unlike query-pci does not depend on the
-- firmware having numbered the buses (after a reset it has not yet).
local function qemu_peripherals(vm)
  local out = {}
  for _, p in ipairs(assert(vm:qmp("qom-list", { path = "/machine/peripheral" }))) do
    out[p.name] = p.type
  end
  return out
end

local function fails_with(code, ok, msg, got)
  assert.is_nil(ok, "expected " .. code .. ", got success")
  assert.equal(code, got, msg)
  assert.matches("^" .. code .. ": ", msg)
end

local VIRTIO, REDHAT = 0x1af4, 0x1b36
local RNG = { Functions = { { DeviceInstancePath = "qemu:virtio-rng-pci" } } }
local TESTDEV = { Functions = { { DeviceInstancePath = "qemu:pci-testdev" } } }

local FD_BASELINE

describe("orrery.VM on QEMU (TCG)", function()
  setup(function()
    -- libuv keeps one descriptor per loop for good once the loop has had a
    -- stream (a /dev/null reserve for EMFILE), so the baseline is taken
    -- after one VM has come and gone; every VM after it must give back
    -- all it took.
    collectgarbage()
    collectgarbage() -- VMs other spec files dropped without closing
    local vm = assert(create("warmup", builder("warmup")))
    assert(vm:terminate())
    vm:close()
    assert(eventually(function() return qemu_pids() == "" end))
    -- Wait for the count to settle: VMs closed by earlier files may still
    -- be on their way out.
    local last = -1
    for _ = 1, 20 do
      orrery.sleep(100)
      local n = fd_count()
      if n == last then break end
      last = n
    end
    FD_BASELINE = last
  end)

  describe("lifecycle", function()
    local vm, restored
    local state_path = ROOT .. "/life.state"
    teardown(function()
      if vm then vm:close() end
      if restored then restored:close() end
      os.remove(state_path)
    end)

    it("creates a VM whose QEMU runs paused with QMP connected", function()
      vm = assert(create("life", builder("life", { memory = 128, cpus = 2 })))
      assert.equal("Created", vm:state())
      local p = vm:properties()
      assert.equal("life", p.Id)
      assert.equal("life", p.Owner)
      assert.equal("Created", p.State)
      assert.equal("qemu", p.Backend)
      assert.equal("tcg", p.Accel)
      assert.equal(ROOT .. "/life", p.RuntimeDirectory)
      assert.matches("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x+$", p.RuntimeId)
      assert.equal("number", math.type(p.ProcessId) and "number")
      assert.is_true(alive(p.ProcessId))
      assert.same({ MemoryInMB = 128, ProcessorCount = 2, ScsiControllers = 1, ScsiDisks = 0,
                    VirtualPciDevices = 0, NetworkAdapters = 0 }, p.Summary)
      assert.is_nil(p.Exit)
      assert.equal("prelaunch", vm:qmp("query-status").status)
      -- QEMU runs in the private directory the VM was given.
      assert.matches(ROOT .. "/life/qmp.sock", sh("cat /proc/" .. p.ProcessId .. "/cmdline | tr '\\0' ' '"),
                     1, true)
      local again, msg, code = create("life", builder("life"))
      fails_with("EEXIST", again, msg, code)
    end)

    it("starts, pauses and resumes, reporting each state", function()
      local states = {}
      vm:on("state", function(data) states[#states + 1] = data.Previous .. ">" .. data.State end)
      fails_with("ESTATE", vm:pause())
      assert.is_true(vm:start())
      assert.equal("Running", vm:state())
      assert.equal("running", vm:qmp("query-status").status)
      fails_with("ESTATE", vm:start())
      assert.is_true(vm:pause())
      assert.equal("Paused", vm:properties().State)
      assert.equal("paused", vm:qmp("query-status").status)
      assert.is_true(vm:resume())
      assert.equal("running", vm:qmp("query-status").status)
      assert.same({ "Created>Running", "Running>Paused", "Paused>Running" }, states)
    end)

    it("saves a paused VM; a VM created from the file is paused and starts", function()
      fails_with("ESTATE", vm:save{ SaveStateFilePath = state_path }) -- running
      assert(vm:pause())
      fails_with("EINVAL", vm:save{ SaveStateFilePath = "relative.state" })
      assert.is_true(vm:save{ SaveStateFilePath = state_path })
      local f = assert(io.open(state_path, "rb"))
      assert.is_true(f:seek("end") > 0)
      f:close()
      restored = assert(create("life-restored", builder("life", { memory = 128, cpus = 2 }),
                               { restore = state_path }))
      assert.equal("Paused", restored:state())
      assert.equal("paused", restored:qmp("query-status").status)
      assert.is_true(restored:start())
      assert.equal("Running", restored:state())
      assert.equal("running", restored:qmp("query-status").status)
      fails_with("ESTATE", restored:start())
      -- A second save needs no resume (QEMU leaves a saved VM in
      -- "postmigrate", which it will not migrate from), nor a shell-safe
      -- name: the engine opens the file and QEMU writes to the descriptor.
      local states = {}
      local off = vm:on("state", function(data) states[#states + 1] = data.State end)
      local again = ROOT .. "/life again; $(x).state"
      assert.is_true(vm:save{ SaveStateFilePath = again })
      assert.is_true(vm:save{ SaveStateFilePath = again })
      off()
      assert.same({}, states)
      assert.equal("Paused", vm:state())
      f = assert(io.open(again, "rb"))
      assert.is_true(f:seek("end") > 0)
      f:close()
      os.remove(again)
      -- The source can go on after a save.
      assert.is_true(vm:resume())
      assert.equal("running", vm:qmp("query-status").status)
    end)

    it("terminates; wait returns ExitCode, Signal and Reason", function()
      local pid = restored:properties().ProcessId
      local exits = {}
      restored:on("exit", function(info) exits[#exits + 1] = info end)
      assert.is_true(restored:terminate())
      local info = restored:wait()
      assert.same({ ExitCode = 0, Signal = 0, Reason = "host-qmp-quit" }, info)
      assert.same({ info }, exits)
      assert.equal("Stopped", restored:state())
      assert.same(info, restored:properties().Exit)
      assert.is_false(alive(pid))
      fails_with("EVMGONE", restored:resume())
      fails_with("EVMGONE", restored:qmp("query-status"))
      fails_with("EVMGONE", restored:add_scsi_disk(0, 1, { Type = "VirtualDisk", Path = image() }))
      assert.same(info, restored:terminate() and restored:wait())
    end)

    it("shuts down: ACPI power-down, then quit when no guest answers it", function()
      local info = vm:shutdown{ timeout_ms = 300 }
      assert.same({ ExitCode = 0, Signal = 0, Reason = "host-qmp-quit" }, info)
      assert.equal("Stopped", vm:state())
      assert.same(info, vm:wait())
    end)
  end)

  describe("an id used again", function()
    it("can be created again right after close, with or without terminate", function()
      -- The first VM is still quitting when the second is created: its
      -- release must not take the new VM's runtime directory with it.
      local a = assert(create("again", builder("again")))
      local pid_a = a:properties().ProcessId
      a:close()
      local b = assert(create("again", builder("again")))
      assert.are_not.equal(pid_a, b:properties().ProcessId)
      assert.is_true(eventually(function() return not alive(pid_a) end))
      orrery.sleep(50) -- the first VM's release has run by now
      assert.is_true(os.execute("test -S " .. ROOT .. "/again/qmp.sock"))
      assert.equal("prelaunch", b:qmp("query-status").status)
      assert.is_true(b:terminate())
      b:close()
      local c = assert(create("again", builder("again")))
      orrery.sleep(50)
      assert.is_true(os.execute("test -S " .. ROOT .. "/again/qmp.sock"))
      assert.equal("prelaunch", c:qmp("query-status").status)
      c:close()
    end)

    it("waits for a QEMU that ignores quit to be killed, then starts the new one", function()
      local a = assert(create("stuck", builder("stuck")))
      local pid = a:properties().ProcessId
      assert(os.execute("kill -STOP " .. pid)) -- it cannot answer quit now
      a:close()
      local b = assert(create("stuck", builder("stuck")))
      assert.is_false(alive(pid))
      assert.equal("prelaunch", b:qmp("query-status").status)
      b:close()
    end)
  end)

  describe("a create that fails", function()
    -- Each failure is reported with QEMU's own words where QEMU had any,
    -- and leaves no process and no runtime directory behind.
    local function gone(id)
      -- The directory goes once the failed VM's handles have closed, a few
      -- loop turns after create returned.
      assert.is_true(eventually(function()
        return sh("ls -d " .. ROOT .. "/" .. id .. " 2>/dev/null") == ""
      end), ROOT .. "/" .. id .. " is left behind")
    end

    it("refuses a document field QEMU cannot honour (ENOTSUP), naming it", function()
      local b = builder("f")
      b:add_vsmb{ DirectFileMappingInMB = 64 }
      local ok, msg, code = create("fail-vsmb", b)
      fails_with("ENOTSUP", ok, msg, code)
      assert.matches("VirtualSmb", msg)
      gone("fail-vsmb")
    end)

    it("refuses a saved state it cannot read (ENOENT) before starting QEMU", function()
      local ok, msg, code = create("fail-missing", builder("f"), { restore = ROOT .. "/missing.state" })
      fails_with("ENOENT", ok, msg, code)
      assert.matches("missing%.state", msg)
      gone("fail-missing")
    end)

    it("reports an empty saved state in QEMU's words (EBACKEND)", function()
      -- QEMU reads the file the engine opened for it: an empty one ends at
      -- once (through the shell of an exec: it used to wait for ever).
      local empty = ROOT .. "/empty.state"
      assert(io.open(empty, "w")):close()
      local ok, msg, code = create("fail-empty", builder("f"), { restore = empty, timeout_ms = 10000 })
      fails_with("EBACKEND", ok, msg, code)
      assert.matches("Not a migration stream", msg)
      os.remove(empty)
      assert.is_true(eventually(function() return qemu_pids() == "" end))
      gone("fail-empty")
    end)

    it("reports QEMU's words when it exits during start-up (EBACKEND)", function()
      local b = builder("f")
      b:add_scsi_disk(0, 0, { Type = "VirtualDisk", Path = ROOT .. "/no-such.img" })
      local ok, msg, code = create("fail-disk", b)
      fails_with("EBACKEND", ok, msg, code)
      assert.matches("Could not open '" .. ROOT .. "/no%-such%.img'", msg)
      gone("fail-disk")
    end)

    it("reports a saved state that does not fit the document (EBACKEND)", function()
      local src = assert(create("fail-src", builder("f", { memory = 128 })))
      local state = ROOT .. "/small.state"
      assert(src:start())
      assert(src:pause())
      assert(src:save{ SaveStateFilePath = state })
      -- A failed save leaves the VM as it was (paused, usable); the
      -- engine opens the file, so a missing directory is ENOENT.
      fails_with("ENOENT", src:save{ SaveStateFilePath = ROOT .. "/no-dir/x.state" })
      assert.equal("Paused", src:state())
      src:close()
      local ok, msg, code = create("fail-size", builder("f", { memory = 256 }), { restore = state })
      fails_with("EBACKEND", ok, msg, code)
      assert.matches("Size mismatch", msg)
      os.remove(state)
      gone("fail-size")
    end)
  end)

  describe("run-time changes", function()
    local vm
    local G1 = "6f5c3a1e-1b2d-4c3e-9f4a-0a1b2c3d4e5f"
    local G2 = "7a6d4b2f-2c3e-4d4f-8a5b-1b2c3d4e5f60"
    local N1 = "2b4a8c1e-3d5f-4a6b-8c7d-9e0f1a2b3c4d"
    local N2 = "3c5b9d2f-4e6a-4b7c-9d8e-0f1a2b3c4d5e"
    local deleted = {}
    local cgroup -- the cpu cgroup the CPU limits went to
    setup(function()
      -- A system_reset completes pending ACPI unplugs (qemu-mapping.md §3);
      -- StopOnReset = false keeps the VM alive through one.
      vm = assert(create("dev", builder("dev", { cpus = 2, StopOnReset = false }),
                         { hotplug_ports = 8 }))
      vm:on("device_deleted", function(d) deleted[#deleted + 1] = d end)
      assert(vm:start())
    end)
    teardown(function()
      if vm then vm:close() end
    end)

    it("hot-adds a SCSI disk and removes it: the document and query-block agree", function()
      local img = image()
      local att = { Type = "VirtualDisk", Path = img }
      assert.is_true(vm:add_scsi_disk(0, 1, att))
      assert.same(att, attachments(vm)["1"])
      assert.equal(1, vm:properties().Summary.ScsiDisks)
      local disk = qemu_disks(vm)["disk-0-1"]
      assert.is_not_nil(disk, "query-block does not show disk-0-1")
      assert.is_false(disk.ro)
      assert.equal(img, disk.file)
      assert.is_not_nil(qemu_nodes(vm)["file-0-1"])

      assert.is_true(vm:remove_scsi_disk(0, 1))
      assert.is_nil(attachments(vm)["1"])
      assert.is_nil(qemu_disks(vm)["disk-0-1"])
      local nodes = qemu_nodes(vm)
      assert.is_nil(nodes["fmt-0-1"])
      assert.is_nil(nodes["file-0-1"])
      assert.same({ Device = "disk-0-1", ResourcePath = SCSI .. C0 .. "/Attachments/1" },
                  deleted[#deleted])
      -- It dies with its engine, so nothing may re-attach to it: no state
      -- file is kept (rewriting one on every change cost milliseconds).
      assert.is_nil(io.open(ROOT .. "/dev/state.json"))
    end)

    it("hot-adds a ReadOnly disk read-only in both its block nodes", function()
      local att = { Type = "VirtualDisk", Path = image(), ReadOnly = true }
      assert.is_true(vm:modify{ ResourcePath = SCSI .. C0 .. "/Attachments/2", RequestType = "Add",
                                Settings = att })
      assert.same(att, attachments(vm)["2"])
      assert.is_true(qemu_disks(vm)["disk-0-2"].ro)
      local nodes = qemu_nodes(vm)
      assert.is_true(nodes["fmt-0-2"].ro)
      assert.is_true(nodes["file-0-2"].ro)
      assert.is_true(vm:remove_scsi_disk(0, 2))
      assert.is_nil(qemu_disks(vm)["disk-0-2"])
    end)

    it("refuses a used LUN (EEXIST) and an absent one (ENOENT) without asking QEMU", function()
      local att = { Type = "VirtualDisk", Path = image() }
      assert(vm:add_scsi_disk(0, 3, att))
      local doc, disks = vm:document(), qemu_disks(vm)
      fails_with("EEXIST", vm:add_scsi_disk(0, 3, { Type = "VirtualDisk", Path = image() }))
      fails_with("ENOENT", vm:remove_scsi_disk(0, 9))
      fails_with("ENOENT", vm:modify{ ResourcePath = SCSI .. C1 .. "/Attachments/0",
                                      RequestType = "Add", Settings = att })
      fails_with("EINVAL", vm:remove_scsi_disk(0, 64))
      assert.same(doc, vm:document())
      assert.same(disks, qemu_disks(vm))
      assert(vm:remove_scsi_disk(0, 3))
    end)

    it("refuses a change to a LUN while another one to it is in flight (EBUSY)", function()
      local function add(path)
        return orrery.spawn(function()
          local ok, msg, code = vm:add_scsi_disk(0, 4, { Type = "VirtualDisk", Path = path })
          return ok and "ok" or code, msg
        end)
      end
      local a, b = image(), image()
      local results = orrery.wait_all{ add(a), add(b) }
      table.sort(results)
      assert.same({ "EBUSY", "ok" }, results)
      assert.is_not_nil(qemu_disks(vm)["disk-0-4"])
      assert.is_true(attachments(vm)["4"].Path == a or attachments(vm)["4"].Path == b)
      assert(vm:remove_scsi_disk(0, 4))
    end)

    it("rolls back a SCSI add whose device_add QEMU refuses: no block node is left", function()
      -- Behind the engine's back, a disk takes LUN 5 in QEMU itself.
      assert(vm:qmp("blockdev-add", { driver = "file", ["node-name"] = "intruder",
                                      filename = image(), ["read-only"] = true }))
      assert(vm:qmp("device_add", { driver = "scsi-hd", id = "intruder-disk", drive = "intruder",
                                    bus = "scsi0.0", channel = 0, ["scsi-id"] = 0, lun = 5 }))
      local doc, nodes = vm:document(), qemu_nodes(vm)
      assert.is_nil(attachments(vm)["5"])

      local ok, msg, code = vm:add_scsi_disk(0, 5, { Type = "VirtualDisk", Path = image() })
      fails_with("EBACKEND", ok, msg, code)
      assert.matches("device_add: .*lun already used by 'intruder%-disk'", msg)
      -- Its blockdev-adds succeeded before the device_add failed; both
      -- nodes are gone again.
      local after = qemu_nodes(vm)
      assert.is_nil(after["file-0-5"])
      assert.is_nil(after["fmt-0-5"])
      assert.same(nodes, after)
      assert.same(doc, vm:document())
      assert.is_nil(qemu_disks(vm)["disk-0-5"])
      -- Nothing is held: the next change goes through.
      assert.is_true(vm:add_scsi_disk(0, 6, { Type = "VirtualDisk", Path = image() }))
      assert.is_true(vm:remove_scsi_disk(0, 6))
    end)

    it("hot-plugs emulated PCI devices, each in its own root port (query-pci)", function()
      assert.is_true(vm:add_vpci_device(G1, RNG))
      assert.is_true(vm:add_vpci_device(G2, TESTDEV))
      assert.same(RNG, devices(vm, "VirtualPci")[G1])
      assert.same(TESTDEV, devices(vm, "VirtualPci")[G2])
      local pci = qemu_pci(vm)
      local rng, testdev = pci["vpci-" .. G1], pci["vpci-" .. G2]
      assert.is_not_nil(rng, "query-pci does not show the virtio-rng device")
      assert.is_not_nil(testdev, "query-pci does not show the pci-testdev")
      assert.same({ VIRTIO, 0x1044 }, { rng.vendor, rng.device })
      assert.same({ REDHAT, 0x0005 }, { testdev.vendor, testdev.device })
      assert.matches("^rp%d+$", rng.parent)
      assert.matches("^rp%d+$", testdev.parent)
      assert.are_not.equal(rng.parent, testdev.parent)
      fails_with("EEXIST", vm:add_vpci_device(G1, TESTDEV))
      fails_with("ENOENT", vm:remove_vpci_device("00000000-0000-4000-8000-000000000001"))
    end)

    it("rolls back a NIC add whose device_add QEMU refuses: its netdev is deleted", function()
      -- Behind the engine's back, a device takes the id the NIC would get;
      -- it sits in the last root port, which the engine hands out last.
      local last = -1
      for name in pairs(qemu_peripherals(vm)) do
        local n = tonumber(name:match("^rp(%d+)$"))
        if n and n > last then last = n end
      end
      assert(vm:qmp("device_add", { driver = "pci-testdev", id = "nic-" .. N2, bus = "rp" .. last }))
      local doc = vm:document()
      local ok, msg, code = vm:add_nic(N2, { EndpointId = "user", MacAddress = "00-15-5D-52-C0-0C" })
      fails_with("EBACKEND", ok, msg, code)
      assert.matches("Duplicate device ID", msg)
      assert.same(doc, vm:document())
      -- netdev_add succeeded first; the undo deleted it again, so the id is free.
      local net = assert(vm:qmp("human-monitor-command", { ["command-line"] = "info network" }))
      assert.is_nil(net:find("net-" .. N2, 1, true), net)
      -- The intruder's unplug stays pending (no guest); the reset below ends it.
      assert(vm:qmp("device_del", { id = "nic-" .. N2 }))
    end)

    it("times out a PCI unplug nobody acknowledges; the device stays; a retry waits again", function()
      local path = "VirtualMachine/Devices/VirtualPci/" .. G1
      local ok, msg, code = vm:remove_vpci_device(G1, { timeout_ms = 200 })
      fails_with("ETIMEDOUT", ok, msg, code)
      assert.matches("stays pending", msg)
      -- QEMU still has it, and so does the document.
      assert.same(RNG, devices(vm, "VirtualPci")[G1])
      assert.is_not_nil(qemu_pci(vm)["vpci-" .. G1])
      fails_with("EEXIST", vm:add_vpci_device(G1, RNG))
      -- A retry joins the pending unplug instead of sending a second
      -- device_del (which QEMU refuses): it times out again, no EBACKEND.
      fails_with("ETIMEDOUT", vm:remove_vpci_device(G1, { timeout_ms = 100 }))
      -- A retry that is still waiting when QEMU completes the unplug
      -- succeeds, and only then does the document lose the device.
      local n = #deleted
      local retry = orrery.spawn(function() return vm:remove_vpci_device(G1, { timeout_ms = 20000 }) end)
      orrery.sleep(50)
      assert.is_not_nil(devices(vm, "VirtualPci")[G1])
      assert(vm:qmp("system_reset")) -- ACPI mode: completes pending unplugs
      assert.is_true(retry:wait())
      assert.is_nil(devices(vm, "VirtualPci")[G1])
      assert.is_nil(qemu_peripherals(vm)["vpci-" .. G1])
      assert.is_not_nil(qemu_peripherals(vm)["vpci-" .. G2])
      -- query-pci sees behind the root ports again once SeaBIOS has
      -- renumbered the buses after the reset.
      assert.is_true(eventually(function() return qemu_pci(vm)["vpci-" .. G2] ~= nil end))
      assert.is_nil(qemu_pci(vm)["vpci-" .. G1])
      assert.same({ Device = "vpci-" .. G1, ResourcePath = path }, deleted[n + 1])
      -- The root port is free again.
      assert.is_true(vm:add_vpci_device(G1, RNG))
    end)

    it("hot-adds a NIC with its MAC (query-rx-filter); update_nic keeps what QEMU cannot change", function()
      local nic = { EndpointId = "user", MacAddress = "00-15-5D-52-C0-0A" }
      assert.is_true(vm:add_nic(N1, nic))
      assert.same(nic, devices(vm, "NetworkAdapters")[N1])
      local rx = assert(vm:qmp("query-rx-filter", { name = "nic-" .. N1 }))
      assert.equal("00:15:5d:52:c0:0a", rx[1]["main-mac"])
      local pci = qemu_pci(vm)["nic-" .. N1]
      assert.same({ VIRTIO, 0x1041 }, { pci.vendor, pci.device })

      fails_with("EEXIST", vm:add_nic(N1, nic))
      fails_with("EEXIST", vm:add_nic(N2, nic)) -- the same MAC twice
      assert.is_nil(qemu_pci(vm)["nic-" .. N2])

      -- Settings QEMU does not need to touch are accepted ...
      local upd = { EndpointId = "user", MacAddress = "00-15-5D-52-C0-0A",
                    IovSettings = { InterruptModeration = "Adaptive" } }
      assert.is_true(vm:update_nic(N1, upd))
      assert.same(upd, devices(vm, "NetworkAdapters")[N1])
      -- ... a new MAC is refused, and neither side changes.
      local doc = vm:document()
      fails_with("ENOTSUP", vm:update_nic(N1, { EndpointId = "user", MacAddress = "00-15-5D-52-C0-0B" }))
      fails_with("ENOENT", vm:update_nic(N2, nic))
      assert.same(doc, vm:document())
      rx = assert(vm:qmp("query-rx-filter", { name = "nic-" .. N1 }))
      assert.equal("00:15:5d:52:c0:0a", rx[1]["main-mac"])
    end)

    it("refuses a Plan9 share at run time (ENOTSUP): QEMU 7.2 has no run-time fsdev", function()
      local doc = vm:document()
      local share = { Name = "src", AccessName = "src", Path = ROOT, Port = 564 }
      local ok, msg, code = vm:add_plan9_share(share)
      fails_with("ENOTSUP", ok, msg, code)
      assert.matches("fsdev", msg)
      fails_with("ENOENT", vm:remove_plan9_share(share))
      assert.same(doc, vm:document())
    end)

    it("applies CPU limits to the QEMU process's cgroup", function()
      local pid = vm:properties().ProcessId
      local doc = vm:document()
      local ok, msg, code = vm:update_cpu_limits{ Limit = 50000, Weight = 200 }
      if not ok and code == "ENOTSUP" and msg:match("cgroup") then
        local probe = "/sys/fs/cgroup/cpu/orrery-spec-probe"
        local writable = os.execute("mkdir " .. probe .. " 2>/dev/null && rmdir " .. probe)
        if not writable then
          -- Nothing to assert on a host whose cgroup tree we may not write.
          assert.same(doc, vm:document())
          pending("the cgroup cpu controller is not writable here: " .. msg)
          return
        end
      end
      assert.is_true(ok, msg)
      local proc = doc.VirtualMachine.ComputeTopology.Processor
      proc.Limit, proc.Weight = 50000, 200
      assert.same(doc, vm:document())
      -- Limit is a fraction of the VM's 2 processors times 100000: a half
      -- of each is one processor's worth per period. v1: cfs quota and
      -- shares (1024 = weight 100); v2: cpu.max and cpu.weight.
      local group
      for line in io.lines("/proc/" .. pid .. "/cgroup") do
        local ctrls, path = line:match("^%d+:([^:]*):(.*)$")
        for c in ctrls:gmatch("[^,]+") do
          if c == "cpu" then group = "/sys/fs/cgroup/" .. ctrls .. path end
        end
        if ctrls == "" and not group and path ~= "/" then group = "/sys/fs/cgroup" .. path end
      end
      assert.is_not_nil(group, "QEMU is in no cpu cgroup")
      local function read(file) return (sh("cat " .. group .. "/" .. file):gsub("%s+$", "")) end
      local v1 = io.open(group .. "/cpu.cfs_quota_us")
      if v1 then
        v1:close()
        assert.equal("100000", read("cpu.cfs_period_us"))
        assert.equal("100000", read("cpu.cfs_quota_us"))
        assert.equal("2048", read("cpu.shares"))
      else
        assert.equal("100000 100000", read("cpu.max"))
        assert.equal("200", read("cpu.weight"))
      end
      assert.matches("/orrery/dev%-", group)
      cgroup = group -- it goes with the VM: the next test checks that
    end)

    it("removes its cgroup when QEMU exits", function()
      local group = cgroup
      if not group then
        pending("no cgroup was made (see the CPU limits test)")
        return
      end
      assert.is_true(vm:terminate())
      assert.equal("", sh("ls -d " .. group .. " 2>/dev/null"), group .. " is still there")
    end)
  end)
  describe("root ports", function()
    local vm
    local G = "8b7e5c3a-3d4f-4e5a-9b6c-2c3d4e5f6071"
    local H = "9c8f6d4b-4e5a-4f6b-8c7d-3d4e5f607182"
    teardown(function()
      if vm then vm:close() end
    end)

    it("gives the port back when QEMU refuses a VPCI device, and refuses when none is free (EBUSY)", function()
      -- One free port; the VM stays in prelaunch, where hot-plug works too.
      vm = assert(create("ports", builder("ports"), { hotplug_ports = 1 }))
      local doc, peripherals = vm:document(), qemu_peripherals(vm)
      local ok, msg, code = vm:add_vpci_device(G, {
        Functions = { { DeviceInstancePath = "qemu:no-such-device" } } })
      fails_with("EBACKEND", ok, msg, code)
      assert.matches("no%-such%-device", msg)
      assert.same(doc, vm:document())
      assert.same(peripherals, qemu_peripherals(vm))
      -- The one port was given back: a real device gets it ...
      assert.is_true(vm:add_vpci_device(G, TESTDEV))
      assert.equal("child<pci-testdev>", qemu_peripherals(vm)["vpci-" .. G])
      -- ... and then there is none left.
      doc = vm:document()
      ok, msg, code = vm:add_vpci_device(H, RNG)
      fails_with("EBUSY", ok, msg, code)
      assert.matches("no free root port", msg)
      fails_with("EBUSY", vm:add_nic(H, { EndpointId = "user" }))
      assert.same(doc, vm:document())
      assert.is_nil(qemu_peripherals(vm)["vpci-" .. H])
      assert.is_nil(qemu_peripherals(vm)["nic-" .. H])
    end)
  end)

  describe("a VM running the default guest", function()
    local vm
    local G = "a1b2c3d4-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
    local N = "b2c3d4e5-6f7a-4b8c-9d0e-1f2a3b4c5d6e"
    local MiB = 1024 * 1024
    local deleted = {}
    setup(function()
      local b = builder("guest", { memory = 256 })
      b:set_linux_kernel_direct_boot(orrery.default_guest())
      -- A clone of the document's template: the share's path stays the same from run to run.
      b:add_plan9_share{ Name = "src", AccessName = "src", Path = T.stable_dir("vmqemu-share"), Port = 564 }
      vm = T.guest_vm("guest", b, {}, ROOT .. "/guest")
      vm:on("device_deleted", function(d) deleted[#deleted + 1] = d end)
    end)
    teardown(function()
      if vm then vm:close() end
    end)

    it("shrinks memory through the balloon; the guest gives the pages back (query-balloon)", function()
      assert.equal(256 * MiB, vm:qmp("query-balloon").actual)
      assert.is_true(vm:update_memory(192))
      assert.equal(192, vm:document().VirtualMachine.ComputeTopology.Memory.SizeInMB)
      assert.equal(192, vm:properties().Summary.MemoryInMB)
      -- The guest's virtio_balloon driver inflates once it has booted.
      assert.is_true(eventually(function() return vm:qmp("query-balloon").actual == 192 * MiB end, 60000),
                     "the balloon did not reach 192 MiB: " .. vm:qmp("query-balloon").actual)
      -- Growing past the boot size is beyond a balloon.
      local ok, msg, code = vm:update_memory(512)
      fails_with("ENOTSUP", ok, msg, code)
      assert.matches("balloon", msg)
      assert.equal(192, vm:document().VirtualMachine.ComputeTopology.Memory.SizeInMB)
    end)

    it("completes PCI unplugs the guest acknowledges, and the NIC's netdev goes too", function()
      assert.is_true(vm:add_vpci_device(G, RNG))
      assert.is_true(vm:add_nic(N, { EndpointId = "user", MacAddress = "00-15-5D-52-C0-1A" }))
      assert.is_not_nil(qemu_pci(vm)["vpci-" .. G])
      assert.is_true(vm:remove_vpci_device(G, { timeout_ms = 30000 }))
      assert.is_true(vm:remove_nic(N, { timeout_ms = 30000 }))
      assert.is_nil(devices(vm, "VirtualPci")[G])
      assert.is_nil(devices(vm, "NetworkAdapters")[N])
      local p = qemu_peripherals(vm)
      assert.is_nil(p["vpci-" .. G])
      assert.is_nil(p["nic-" .. N])
      fails_with("EBACKEND", vm:qmp("query-rx-filter", { name = "nic-" .. N }))
      -- The netdev was deleted after DEVICE_DELETED: a new one may take its id.
      assert(vm:qmp("netdev_add", { type = "user", id = "net-" .. N }))
      assert(vm:qmp("netdev_del", { id = "net-" .. N }))
    end)

    it("follows a device the guest ejects itself: document, cleanup and port", function()
      local g = assert(vm:guest{ timeout_ms = 60000 })
      local nic = { EndpointId = "user", MacAddress = "00-15-5D-52-C0-2A" }
      assert.is_true(vm:add_nic(N, nic))
      local n = #deleted
      -- Power the NIC's slot off from inside (ACPI eject): QEMU deletes the
      -- device without the engine having asked.
      local r = assert(g:exec{ "sh", "-c", [[
        for i in $(seq 50); do
          for d in /sys/bus/pci/devices/*; do
            [ "$(cat $d/device)" = 0x1041 ] && dev=${d##*/}
          done
          [ -n "$dev" ] && break
          sleep 0.1
        done
        for s in /sys/bus/pci/slots/*; do
          [ "$(cat $s/address)" = "${dev%.*}" ] && echo 0 >$s/power && exit 0
        done
        echo "no slot for ${dev:-the NIC}" >&2; exit 1]] })
      assert.equal(0, r.exit_code, r.stderr)
      assert.is_true(eventually(function() return devices(vm, "NetworkAdapters")[N] == nil end, 30000),
                     "the document still has the ejected NIC")
      assert.is_nil(qemu_peripherals(vm)["nic-" .. N])
      assert.same({ Device = "nic-" .. N, ResourcePath = "VirtualMachine/Devices/NetworkAdapters/" .. N },
                  deleted[n + 1])
      -- Its netdev was deleted and its root port freed: the same NIC can
      -- come back.
      assert.is_true(vm:add_nic(N, nic))
      assert.is_true(vm:remove_nic(N, { timeout_ms = 30000 }))
      g:close()
    end)

    it("removes a boot-time Plan9 share; adding one stays refused", function()
      local share = vm:document().VirtualMachine.Devices.Plan9.Shares[1]
      assert.equal("src", share.Name)
      assert.equal("child<virtio-9p-pci>", qemu_peripherals(vm)["p9-0"])
      assert.is_true(vm:remove_plan9_share(share))
      assert.same({}, vm:document().VirtualMachine.Devices.Plan9.Shares)
      assert.is_nil(qemu_peripherals(vm)["p9-0"])
      fails_with("ENOENT", vm:remove_plan9_share(share))
      fails_with("ENOTSUP", vm:add_plan9_share(share))
    end)

    it("shuts down when the guest powers off on ACPI power-down", function()
      -- The guest listens for the power button (acpid) by the time its
      -- agent opens its port, which QEMU reports as the chardev's frontend
      -- being open.
      assert.is_true(eventually(function()
        for _, c in ipairs(vm:qmp("query-chardev")) do
          if c.label == "qga" then return c["frontend-open"] end
        end
        return false
      end, 60000), "the guest agent never opened its port")
      local info = vm:shutdown{ timeout_ms = 60000 }
      assert.same({ ExitCode = 0, Signal = 0, Reason = "guest-shutdown" }, info)
    end)
  end)

  describe("QEMU killed with SIGKILL", function()
    local vm
    local G = "c3d4e5f6-7a8b-4c9d-8e0f-2a3b4c5d6e7f"
    teardown(function()
      if vm then vm:close() end
    end)

    it("fails a pending unplug and a save in flight with EVMGONE; wait reports signal 9", function()
      vm = assert(create("killed", builder("killed")))
      assert(vm:start())
      assert(vm:add_vpci_device(G, TESTDEV))
      assert(vm:pause())
      -- 100 kB/s keeps the save (about 1 MB here) in flight for seconds.
      assert(vm:qmp("migrate-set-parameters", { ["max-bandwidth"] = 100000 }))
      local function call(fn)
        return orrery.spawn(function()
          local ok, msg, code = fn()
          return { ok = ok, msg = msg, code = code }
        end)
      end
      local unplug = call(function() return vm:remove_vpci_device(G, { timeout_ms = 60000 }) end)
      local save = call(function() return vm:save{ SaveStateFilePath = ROOT .. "/killed.state" } end)
      local waiter = orrery.spawn(function() return vm:wait() end)
      -- Commands go out in order on one socket: once QEMU says the
      -- migration is active, the device_del before it was answered too.
      assert.is_true(eventually(function() return vm:qmp("query-migrate").status == "active" end))
      assert.is_false(unplug:done())
      assert.is_false(save:done())
      local pid = vm:properties().ProcessId
      assert(os.execute("kill -9 " .. pid))
      local info = waiter:wait()
      assert.same({ ExitCode = 0, Signal = 9, Reason = "killed by signal 9" }, info)
      local u, s = unplug:wait(), save:wait()
      assert.equal("EVMGONE", u.code, u.msg)
      assert.equal("EVMGONE", s.code, s.msg)
      assert.equal("Stopped", vm:state())
      assert.same(info, vm:properties().Exit)
      assert.is_false(alive(pid))
      -- The document keeps the device: QEMU never said it was gone.
      assert.same(TESTDEV, devices(vm, "VirtualPci")[G])
      fails_with("EVMGONE", vm:remove_vpci_device(G))
      fails_with("EVMGONE", vm:qmp("query-status"))
      assert.same(info, vm:terminate() and vm:wait())
      os.remove(ROOT .. "/killed.state")
    end)
  end)

  describe("eight VMs", function()
    it("are driven concurrently from eight tasks", function()
      local images = {}
      for i = 1, 8 do
        images[i] = {}
        for lun = 0, 3 do images[i][lun] = image("1M") end
      end
      local function drive(i)
        return orrery.spawn(function()
          local id = "many-" .. i
          local vm <close> = assert(create(id, builder(id)))
          assert(vm:start())
          for lun = 0, 3 do
            assert(vm:add_scsi_disk(0, lun, { Type = "VirtualDisk", Path = images[i][lun] }))
          end
          local seen = 0
          for qdev in pairs(qemu_disks(vm)) do
            if qdev:match("^disk%-0%-%d$") then seen = seen + 1 end
          end
          assert(seen == 4, id .. ": QEMU shows " .. seen .. " disks")
          for lun = 0, 3 do assert(vm:remove_scsi_disk(0, lun)) end
          assert(next(attachments(vm)) == nil, id .. ": the document still has disks")
          assert(vm:terminate())
          local info = vm:wait()
          return id .. ":" .. info.Reason
        end)
      end
      local tasks = {}
      for i = 1, 8 do tasks[i] = drive(i) end
      local got = orrery.wait_all(tasks)
      for i = 1, 8 do assert.equal("many-" .. i .. ":host-qmp-quit", got[i]) end
    end)
  end)

  describe("at the end", function()
    it("leaves no QEMU process, socket or file descriptor behind", function()
      -- Closed VMs are released from the loop once their process is gone.
      assert.is_true(eventually(function() return qemu_pids() == "" end), "QEMUs left: " .. qemu_pids())
      assert.is_true(eventually(function()
        return sh("find " .. ROOT .. " -mindepth 1 -type d") == ""
      end), "runtime directories left: " .. sh("find " .. ROOT .. " -mindepth 1 -type d"))
      assert.equal("", sh("find " .. ROOT .. " -type s"))
      assert.is_true(eventually(function() return fd_count() == FD_BASELINE end),
                     "descriptors: " .. fd_count() .. " now, " .. FD_BASELINE .. " at the start:\n"
                       .. sh("ls -l /proc/" .. T.pid() .. "/fd"))
      assert(os.execute("rm -rf '" .. ROOT .. "'"))
    end)
  end)
end)

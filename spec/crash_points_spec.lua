-- The crash-point walk (real QEMU, TCG): for every kind of run-time change
-- to a VM that outlives its engine, the engine is killed at every named
-- point the change passes (engine/src/fault.c: before and after each QMP
-- step, each journal write, the guest's DEVICE_DELETED, each cleanup),
-- and a fresh open must find a document equal to what QEMU reports
-- (compared through vm:qmp), after which the next add and remove of the
-- same LUN, device or NIC (or the next update) succeed. The method is
-- SQLite's crash tests and FoundationDB's simulation: the points are not
-- chosen, they are listed by running the change once with
-- ORRERY_FAULT_LOG, then each is made the one where the engine dies.
--
-- Three VMs: one running SeaBIOS only, for the changes QEMU completes alone
-- (SCSI, every add, the updates); one booting the default guest, for the
-- removals the guest must acknowledge (PCI unplug) and the balloon; and a
-- SeaBIOS one launched by a sandboxed engine (`orrery run --sandbox`), whose
-- QEMU gets descriptors, not names: its disks go through add-fd and
-- remove-fd too, its changes run sandboxed, and the checks and the next
-- add and remove run here, in an unconfined engine that re-attached (which
-- must go on passing descriptors: that QEMU runs under Landlock for life).
local orrery = require("orrery")

local T = require("orrery.testing")
local q, run, sh, read, alive, eventually = T.q, T.run, T.sh, T.read, T.alive, T.eventually

local ROOT = T.tmpdir()
local is_root = sh("id -u"):match("^0") ~= nil
local DISK = T.image(ROOT, "4M")
local PMEM = T.image(ROOT, "2M")
local PIPE = ROOT .. "/crash.sock"
local VPCI = "6f5c3a1e-1b2d-4c3e-9f4a-0a1b2c3d4e5f"
local NIC = "2b8d8f0e-8f3c-4c55-a3b1-6f2b1c0d9e7a"
local NIC_SETTINGS = { EndpointId = "user", MacAddress = "00-15-5D-52-C0-0A" }
local SHARES = 10
local P9 = {}
for k = 0, SHARES - 1 do P9["s" .. k] = k end

local function cgroup_ok()
  return is_root and run("test -w /sys/fs/cgroup/cpu/cpu.cfs_quota_us || test -f /sys/fs/cgroup/cgroup.controllers")
end

local VMS = {
  bios = { id = "cp-bios" },
  guest = { id = "cp-guest" },
  sbx = { id = "cp-sbx", confined = true },
}
for _, v in pairs(VMS) do v.dir = ROOT .. "/" .. v.id end
-- A confined engine re-attaches only below its own runtime root.
local RUNROOT = ROOT .. "/run"
VMS.sbx.dir = RUNROOT .. "/" .. VMS.sbx.id
local SANDBOX = "--sandbox --allow-write=" .. q(ROOT)

-- Runs a recipe in another engine (sandboxed for a confined VM) with env.
local function engine(v, name, body, env)
  env = env or {}
  if v.confined then env.ORRERY_RUNTIME_DIR = RUNROOT end
  return T.orrery_run(ROOT, name, body, env, false, v.confined and SANDBOX or nil)
end

local function open(v) return assert(orrery.open(v.id, { runtime_dir = v.dir })) end

local function has(vm, group, key)
  local devs = vm:document().VirtualMachine.Devices
  if group == "Scsi" then
    local ctl = (devs.Scsi or {})[orrery.scsi_controller_guids[0]]
    return ctl and ctl.Attachments and ctl.Attachments[key] ~= nil
  end
  return (devs[group] or {})[key] ~= nil
end

local function memory_mb(vm) return vm:document().VirtualMachine.ComputeTopology.Memory.SizeInMB end

local function has_pipe(vm) return (vm:properties().MappedPipes or {})[PIPE] ~= nil end

-- The next free VPMem key: QEMU 7.2 cannot remove one, so each add takes a new key.
local NEXT_PMEM = [[
local devs = (vm:document().VirtualMachine.Devices.VirtualPMem or {}).Devices or {}
local k = 0
while devs[tostring(k)] do k = k + 1 end
]]

-- Document == QEMU: devices, block nodes, netdevs, each disk's image; the
-- balloon target once the guest has followed it; the cgroup's limits.
local function consistent(v, vm)
  -- A removal the guest had still to acknowledge may complete during the
  -- check (QEMU drops the device, then tells): the two views are sampled
  -- until they agree twice in a row, and that agreement is what is checked.
  local doc, qemu, agreed = nil, nil, 0
  local deepcompare = require("luassert.util").deepcompare
  eventually(function()
    doc, qemu = T.doc_view(vm, { p9 = P9, fds = v.confined }), T.qemu_view(vm, { fds = v.confined })
    agreed = deepcompare(doc, qemu, true) and agreed + 1 or 0
    return agreed >= 2
  end, 20000, 100)
  assert.same(doc, qemu)
  if v.confined then
    assert.is_true(vm:properties().Confinement.Descriptors, "the re-attached VM forgot how its QEMU runs")
  end
  if v == VMS.guest then
    local want = memory_mb(vm) * 1024 * 1024
    assert.is_true(eventually(function() return assert(vm:qmp("query-balloon")).actual == want end, 30000),
      "balloon at " .. assert(vm:qmp("query-balloon")).actual .. ", document says " .. want)
  end
  local cpu = vm:document().VirtualMachine.ComputeTopology.Processor or {}
  if cpu.Limit and run("test -d /sys/fs/cgroup/cpu/orrery") then
    local g = "/sys/fs/cgroup/cpu/orrery/" .. v.id .. "-" .. vm:properties().RuntimeId:sub(1, 8)
    local quota = tonumber(read(g .. "/cpu.cfs_quota_us"))
    local want = cpu.Limit == 0 and -1 or math.max(1000, cpu.Limit * (cpu.Count or 1) * 100000 // 100000)
    assert.equal(want, quota, "cfs quota of " .. g)
  end
end

-- The changes. before: brings the VM to where the change applies; change:
-- the recipe's code (vm is the opened VM); next: the next add and remove
-- (or update) of the same thing, which must succeed.
local CHANGES = {
  { name = "SCSI add", vm = "bios",
    before = function(vm) if has(vm, "Scsi", "5") then assert(vm:remove_scsi_disk(0, 5)) end end,
    change = string.format("assert(vm:add_scsi_disk(0, 5, { Type = 'VirtualDisk', Path = %q }))", DISK),
    next = function(vm)
      if has(vm, "Scsi", "5") then assert(vm:remove_scsi_disk(0, 5)) end
      assert(vm:add_scsi_disk(0, 5, { Type = "VirtualDisk", Path = DISK }))
      assert(vm:remove_scsi_disk(0, 5))
    end },
  { name = "SCSI remove", vm = "bios",
    before = function(vm)
      if not has(vm, "Scsi", "5") then assert(vm:add_scsi_disk(0, 5, { Type = "VirtualDisk", Path = DISK })) end
    end,
    change = "assert(vm:remove_scsi_disk(0, 5))",
    next = function(vm)
      if has(vm, "Scsi", "5") then assert(vm:remove_scsi_disk(0, 5)) end
      assert(vm:add_scsi_disk(0, 5, { Type = "VirtualDisk", Path = DISK }))
      assert(vm:remove_scsi_disk(0, 5))
    end },
  { name = "SCSI add, confined", vm = "sbx", passes = "step:add-fd:after",
    before = function(vm) if has(vm, "Scsi", "5") then assert(vm:remove_scsi_disk(0, 5)) end end,
    change = string.format("assert(vm:add_scsi_disk(0, 5, { Type = 'VirtualDisk', Path = %q }))", DISK),
    next = function(vm)
      if has(vm, "Scsi", "5") then assert(vm:remove_scsi_disk(0, 5)) end
      assert(vm:add_scsi_disk(0, 5, { Type = "VirtualDisk", Path = DISK }))
      assert(T.block_by_qdev(vm, "disk-0-5").inserted.file:find("^/dev/fdset/"), "LUN 5 was named, not passed")
      assert(vm:remove_scsi_disk(0, 5))
    end },
  { name = "SCSI remove, confined", vm = "sbx", passes = "cleanup:remove-fd:before",
    before = function(vm)
      if not has(vm, "Scsi", "5") then assert(vm:add_scsi_disk(0, 5, { Type = "VirtualDisk", Path = DISK })) end
    end,
    change = "assert(vm:remove_scsi_disk(0, 5))",
    next = function(vm)
      if has(vm, "Scsi", "5") then assert(vm:remove_scsi_disk(0, 5)) end
      assert(vm:add_scsi_disk(0, 5, { Type = "VirtualDisk", Path = DISK }))
      assert(vm:remove_scsi_disk(0, 5))
    end },
  { name = "VPCI add", vm = "guest",
    before = function(vm)
      if has(vm, "VirtualPci", VPCI) then assert(vm:remove_vpci_device(VPCI, { timeout_ms = 60000 })) end
    end,
    change = string.format("assert(vm:add_vpci_device(%q, { Functions = { { DeviceInstancePath = 'qemu:virtio-rng-pci' } } }))", VPCI),
    next = function(vm)
      if has(vm, "VirtualPci", VPCI) then assert(vm:remove_vpci_device(VPCI, { timeout_ms = 60000 })) end
      assert(vm:add_vpci_device(VPCI, { Functions = { { DeviceInstancePath = "qemu:virtio-rng-pci" } } }))
      assert(vm:remove_vpci_device(VPCI, { timeout_ms = 60000 }))
    end },
  { name = "NIC add", vm = "guest",
    before = function(vm)
      if has(vm, "NetworkAdapters", NIC) then assert(vm:remove_nic(NIC, { timeout_ms = 60000 })) end
    end,
    change = string.format("assert(vm:add_nic(%q, { EndpointId = 'user', MacAddress = '00-15-5D-52-C0-0A' }))", NIC),
    next = function(vm)
      if has(vm, "NetworkAdapters", NIC) then assert(vm:remove_nic(NIC, { timeout_ms = 60000 })) end
      assert(vm:add_nic(NIC, NIC_SETTINGS))
      assert(vm:remove_nic(NIC, { timeout_ms = 60000 }))
    end },
  { name = "NIC update", vm = "bios",
    before = function(vm)
      if not has(vm, "NetworkAdapters", NIC) then assert(vm:add_nic(NIC, NIC_SETTINGS)) end
    end,
    change = string.format("assert(vm:update_nic(%q, { EndpointId = 'user', MacAddress = '00-15-5D-52-C0-0A', IovSettings = { OffloadWeight = os.time() %% 90 + 1 } }))", NIC),
    next = function(vm) assert(vm:update_nic(NIC, NIC_SETTINGS)) end },
  { name = "CPU limits", vm = "bios", skip = function() return not cgroup_ok() and "needs a writable cgroup cpu controller" end,
    before = function() end,
    change = "assert(vm:update_cpu_limits{ Limit = 20000 + os.time() % 1000 * 10, Weight = 300 })",
    next = function(vm) assert(vm:update_cpu_limits{ Limit = 50000, Weight = 100 }) end },
  { name = "VPCI remove", vm = "guest",
    before = function(vm)
      if not has(vm, "VirtualPci", VPCI) then
        assert(vm:add_vpci_device(VPCI, { Functions = { { DeviceInstancePath = "qemu:virtio-rng-pci" } } }))
      end
    end,
    change = string.format("assert(vm:remove_vpci_device(%q, { timeout_ms = 60000 }))", VPCI),
    next = function(vm)
      if has(vm, "VirtualPci", VPCI) then assert(vm:remove_vpci_device(VPCI, { timeout_ms = 60000 })) end
      assert(vm:add_vpci_device(VPCI, { Functions = { { DeviceInstancePath = "qemu:virtio-rng-pci" } } }))
      assert(vm:remove_vpci_device(VPCI, { timeout_ms = 60000 }))
    end },
  { name = "NIC remove", vm = "guest",
    before = function(vm) if not has(vm, "NetworkAdapters", NIC) then assert(vm:add_nic(NIC, NIC_SETTINGS)) end end,
    change = string.format("assert(vm:remove_nic(%q, { timeout_ms = 60000 }))", NIC),
    next = function(vm)
      if has(vm, "NetworkAdapters", NIC) then assert(vm:remove_nic(NIC, { timeout_ms = 60000 })) end
      assert(vm:add_nic(NIC, NIC_SETTINGS))
      assert(vm:remove_nic(NIC, { timeout_ms = 60000 }))
    end },
  { name = "Plan9 remove", vm = "guest",
    -- Each removal takes a share for good (QEMU 7.2 cannot add one back):
    -- the VM boots with SHARES of them, one per point.
    before = function(vm, k)
      assert(#(vm:document().VirtualMachine.Devices.Plan9.Shares) > 0, "out of shares")
    end,
    change = "local s = vm:document().VirtualMachine.Devices.Plan9.Shares[1]\n"
      .. "assert(vm:remove_plan9_share(s))",
    next = function() end },
  { name = "VPMem add", vm = "bios",
    before = function() end,
    change = NEXT_PMEM .. string.format("assert(vm:add_vpmem_device(k, { HostPath = %q, ReadOnly = true }))", PMEM),
    next = function(vm)
      local devs = (vm:document().VirtualMachine.Devices.VirtualPMem or {}).Devices or {}
      local k = 0
      while devs[tostring(k)] do k = k + 1 end
      assert(vm:add_vpmem_device(k, { HostPath = PMEM, ReadOnly = true }))
    end },
  { name = "pipe add", vm = "bios",
    before = function(vm) if has_pipe(vm) then assert(vm:remove_pipe(PIPE)) end end,
    change = string.format("assert(vm:add_pipe(%q))", PIPE),
    next = function(vm)
      if has_pipe(vm) then assert(vm:remove_pipe(PIPE)) end
      assert(vm:add_pipe(PIPE))
      assert(vm:remove_pipe(PIPE))
    end },
  { name = "memory", vm = "guest",
    before = function(vm) if memory_mb(vm) ~= 256 then assert(vm:update_memory(256)) end end,
    change = "assert(vm:update_memory(224))",
    next = function(vm)
      assert(vm:update_memory(240))
      assert(vm:update_memory(256))
    end },
}

-- The points a change passes, in order, each as POINT#N (its N-th hit).
-- A write nobody waits for ("lazy") comes when a timer says, not at a
-- point of the change: not walked.
local function points(log)
  local out, seen = {}, {}
  for p in (read(log) or ""):gmatch("[^\n]+") do
    seen[p] = (seen[p] or 0) + 1
    if not p:find("^journal:lazy") then out[#out + 1] = p .. "#" .. seen[p] end
  end
  return out
end

local function recipe(v, body)
  return string.format([[
local orrery = require("orrery")
local vm = assert(orrery.open(%q, { runtime_dir = %q }))
%s
vm:close()
]], v.id, v.dir, body)
end

describe("the crash-point walk", function()
  setup(function()
    local b = orrery.builder{ owner = "crash", ShouldTerminateOnLastHandleClosed = false }
    b:set_memory{ SizeInMB = 128 }
    b:set_processor{ Count = 1 }
    b:add_scsi_controller(0)
    -- Room for a PMem device per point of the VPMem walk (each keeps its root port: QEMU 7.2 cannot
    -- unplug one); the agent's virtio-serial bus for pipes.
    b:add_vpmem_controller(64, 2 * 1024 * 1024)
    local vm = assert(orrery.create(VMS.bios.id, b, { accel = "tcg", runtime_dir = VMS.bios.dir,
      guest_agent = true, hotplug_ports = 48 }))
    assert(vm:start())
    VMS.bios.pid = vm:properties().ProcessId
    vm:close()

    -- The confined one: created by a sandboxed engine, in its runtime root.
    local rc, out = engine(VMS.sbx, "create-sbx", string.format([[
local orrery = require("orrery")
local b = orrery.builder{ owner = "crash", ShouldTerminateOnLastHandleClosed = false }
b:set_memory{ SizeInMB = 64 }
b:set_processor{ Count = 1 }
b:add_scsi_controller(0)
local vm = assert(orrery.create(%q, b, { accel = "tcg" }))
assert(vm:start())
assert(vm:properties().Confinement.Descriptors)
vm:close()
]], VMS.sbx.id))
    assert.equal(0, rc, out)
    VMS.sbx.pid = tonumber(read(VMS.sbx.dir .. "/qemu.pid"))

    b = orrery.builder{ owner = "crash", ShouldTerminateOnLastHandleClosed = false }
    b:set_memory{ SizeInMB = 256 }
    b:set_processor{ Count = 1 }
    b:set_linux_kernel_direct_boot(orrery.default_guest())
    for k = 0, SHARES - 1 do
      assert(run("mkdir -p " .. q(ROOT .. "/share" .. k)))
      b:add_plan9_share{ Name = "s" .. k, AccessName = "s" .. k, Path = ROOT .. "/share" .. k, Port = 564 }
    end
    vm = assert(orrery.create(VMS.guest.id, b, { accel = "tcg", runtime_dir = VMS.guest.dir }))
    assert(vm:start())
    VMS.guest.pid = vm:properties().ProcessId
    -- PCI unplug and the balloon need the guest up.
    assert(vm:guest{ timeout_ms = 120000 }):close()
    vm:close()
  end)

  teardown(function()
    for _, v in pairs(VMS) do
      if v.pid and alive(v.pid) then run("kill -9 " .. v.pid) end
    end
    run("rm -rf " .. q(ROOT))
  end)

  for _, c in ipairs(CHANGES) do
    it("kills the engine at every point of a " .. c.name .. " and re-opens to QEMU's truth", function()
      local why = c.skip and c.skip()
      if why then pending(why) return end
      local v = VMS[c.vm]
      local log = ROOT .. "/" .. c.name:gsub("%W", "-") .. ".points"
      -- Opens the VM for fn(vm) and closes it whatever happens (a failed
      -- check must not leave it open here, where the next change opens it).
      local function with_vm(fn)
        local vm = open(v)
        local ok, err = pcall(fn, vm)
        vm:close()
        if not ok then error(err, 0) end
      end
      with_vm(c.before)
      -- The walk's list: the change once, every point logged.
      local rc, out = engine(v, "list", recipe(v, c.change), { ORRERY_FAULT_LOG = log })
      assert.equal(0, rc, out)
      local list = points(log)
      assert.is_true(#list >= 2, "points: " .. table.concat(list, " "))
      if c.passes then
        assert.truthy(read(log):find(c.passes, 1, true), c.passes .. " not among " .. table.concat(list, " "))
      end
      for _, point in ipairs(list) do
        with_vm(c.before)
        rc, out = engine(v, "kill", recipe(v, c.change), { ORRERY_FAULT = point })
        assert.equal(137, rc, point .. " was not reached: " .. out)
        local ok, err = pcall(with_vm, function(vm)
          consistent(v, vm)
          c.next(vm)
          consistent(v, vm)
        end)
        if not ok then error("after a kill at " .. point .. ": " .. tostring(err), 0) end
      end
    end)
  end

  -- A running QEMU closes an unused fdset itself when the dead engine's
  -- monitor connection goes; a paused one keeps it, and removes nothing
  -- until it runs (QEMU 7.2): the re-attaching engine must remove it and
  -- keep the removal in the journal until the VM runs, across engines.
  it("releases a half-done add's descriptor of a paused confined VM once it runs", function()
    local v = VMS.sbx
    local img = T.image(ROOT, "2M")
    local function held(vm) -- does QEMU hold img open?
      return sh("ls -l /proc/" .. vm:properties().ProcessId .. "/fd"):find(img, 1, true) ~= nil
    end
    local vm = open(v)
    if has(vm, "Scsi", "6") then assert(vm:remove_scsi_disk(0, 6)) end
    assert(vm:pause())
    vm:close()
    local rc, out = engine(v, "kill", recipe(v, string.format(
      "assert(vm:add_scsi_disk(0, 6, { Type = 'VirtualDisk', Path = %q }))", img)),
      { ORRERY_FAULT = "step:blockdev-add:before" })
    assert.equal(137, rc, out)
    vm = open(v)
    assert.equal("Paused", vm:properties().State)
    assert.is_falsy(has(vm, "Scsi", "6"))
    assert.is_true(held(vm), "QEMU of a paused VM should still hold the descriptor the dead engine added")
    vm:close() -- the removal QEMU has yet to finish is in state.json
    vm = open(v)
    assert(vm:resume())
    assert.is_true(eventually(function() return not held(vm) end, 10000), "QEMU still holds " .. img)
    local ok, err = pcall(function()
      consistent(v, vm)
      assert(vm:add_scsi_disk(0, 6, { Type = "VirtualDisk", Path = img }))
      assert.is_true(held(vm))
      assert(vm:remove_scsi_disk(0, 6))
      consistent(v, vm)
      assert.is_false(held(vm))
    end)
    vm:close()
    assert(ok, err)
  end)
end)

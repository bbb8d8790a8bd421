-- orrery.VM on the plan backend: the Lua API end to end (create, lifecycle,
-- run-time changes, events, errors) without starting QEMU. The plan log
-- records {kind = "argv" | "qmp" | "modify", value = ...}: what the qemu
-- backend would have sent, and each ModifySettingRequest as received.
local orrery = require("orrery")

local C0 = "df6d0690-79e5-55b6-a5ec-c1e2f77f580a"
local NIC = "2b4a8c1e-3d5f-4a6b-8c7d-9e0f1a2b3c4d"
local VPCI = "6f5c3a1e-1b2d-4c3e-9f4a-0a1b2c3d4e5f"
local SCSI_ATTACHMENTS = "VirtualMachine/Devices/Scsi/" .. C0 .. "/Attachments/"

local function builder(owner)
  local b = orrery.builder{ owner = owner or "plan-spec" }
  b:set_memory{ SizeInMB = 512 }
  b:set_processor{ Count = 2 }
  b:add_scsi_controller(0)
  return b
end

-- An empty file: a raw image as far as format detection goes.
local function image()
  local path = os.tmpname()
  return path
end

-- The log entries of one kind after the first `skip` entries.
local function entries(vm, kind, skip)
  local out = {}
  for i, e in ipairs(vm:plan_log()) do
    if i > (skip or 0) and e.kind == kind then out[#out + 1] = e.value end
  end
  return out
end

local function executes(cmds)
  local out = {}
  for i, c in ipairs(cmds) do out[i] = c.execute end
  return out
end

local function attachments(vm)
  local scsi = vm:document().VirtualMachine.Devices.Scsi
  return scsi and scsi[C0] and scsi[C0].Attachments or {}
end

describe("orrery.VM on the plan backend", function()
  local vm, img
  before_each(function()
    img = image()
    vm = assert(orrery.create("plan-spec", builder(), { backend = "plan" }))
  end)
  after_each(function()
    vm:close()
    os.remove(img)
  end)

  it("creates a VM that is created, not started", function()
    assert.matches("^orrery%.VM: 0x%x+ %(id=plan%-spec, state=Created%)$", tostring(vm))
    assert.equal("plan-spec", vm:id())
    assert.equal("Created", vm:state())
    local props = vm:properties()
    assert.equal("Created", props.State)
    assert.equal("plan", props.Backend)
    assert.equal("argv", vm:plan_log()[1].kind)
    assert.is_true(vm:start())
    assert.equal("Running", vm:state())
  end)

  it("hot-adds a SCSI disk with the qemu backend's node names", function()
    assert(vm:start())
    local mark = #vm:plan_log()
    local att = { Type = "VirtualDisk", Path = img }
    assert.is_true(vm:add_scsi_disk(0, 2, att))

    assert.same({ { ResourcePath = SCSI_ATTACHMENTS .. "2", RequestType = "Add", Settings = att } },
                entries(vm, "modify", mark))
    local cmds = entries(vm, "qmp", mark)
    assert.same({ "blockdev-add", "blockdev-add", "device_add" }, executes(cmds))
    local file, fmt, dev = cmds[1].arguments, cmds[2].arguments, cmds[3].arguments
    assert.equal("file-0-2", file["node-name"])
    assert.equal("file", file.driver)
    assert.equal(img, file.filename)
    assert.equal("fmt-0-2", fmt["node-name"])
    assert.equal("file-0-2", fmt.file)
    assert.equal("disk-0-2", dev.id)
    assert.equal("fmt-0-2", dev.drive)
    assert.equal("scsi0.0", dev.bus)
    assert.equal(2, dev.lun)

    assert.same(att, attachments(vm)["2"])
  end)

  it("refuses a LUN in use with EEXIST and leaves the document as it was", function()
    assert(vm:start())
    assert(vm:add_scsi_disk(0, 2, { Type = "VirtualDisk", Path = img }))
    local before = vm:document()
    local mark = #vm:plan_log()
    local ok, msg, code = vm:add_scsi_disk(0, 2, { Type = "VirtualDisk", Path = img, ReadOnly = true })
    assert.is_nil(ok)
    assert.equal("EEXIST", code)
    assert.matches("^EEXIST: .*LUN 2", msg)
    assert.same({}, entries(vm, "qmp", mark)) -- nothing sent to QEMU
    assert.same(before, vm:document())
  end)

  it("hot-removes a SCSI disk and updates the document", function()
    assert(vm:start())
    assert(vm:add_scsi_disk(0, 3, { Type = "VirtualDisk", Path = img }))
    local mark = #vm:plan_log()
    assert.is_true(vm:remove_scsi_disk(0, 3, { timeout_ms = 2000 }))
    assert.same({ { ResourcePath = SCSI_ATTACHMENTS .. "3", RequestType = "Remove" } },
                entries(vm, "modify", mark))
    local cmds = entries(vm, "qmp", mark)
    assert.same({ "device_del", "blockdev-del", "blockdev-del" }, executes(cmds))
    assert.equal("disk-0-3", cmds[1].arguments.id)
    assert.equal("fmt-0-3", cmds[2].arguments["node-name"])
    assert.equal("file-0-3", cmds[3].arguments["node-name"])
    assert.is_nil(attachments(vm)["3"])
  end)

  it("reports an unknown LUN with ENOENT", function()
    assert(vm:start())
    local ok, msg, code = vm:remove_scsi_disk(0, 9)
    assert.is_nil(ok)
    assert.equal("ENOENT", code)
    assert.matches("^ENOENT: ", msg)
  end)

  it("builds every typed request exactly as hcsshim does", function()
    assert(vm:start())
    local mark = #vm:plan_log()
    local nic = { EndpointId = "user", MacAddress = "00-15-5D-52-C0-0A" }
    local vpci = { Functions = { { DeviceInstancePath = "qemu:virtio-rng-pci" } } }
    local share = { Name = "src", AccessName = "src", Path = "/tmp", Port = 564 }
    -- Outcomes vary by backend (QEMU cannot do all of these at run time);
    -- the requests must not.
    vm:add_nic(NIC, nic)
    vm:update_nic(NIC, nic)
    vm:remove_nic(NIC, { timeout_ms = 50 })
    vm:add_vpci_device(VPCI, vpci)
    vm:remove_vpci_device(VPCI, { timeout_ms = 50 })
    vm:add_plan9_share(share)
    vm:remove_plan9_share(share)
    vm:update_cpu_limits{ Limit = 50000, Weight = 200 }
    vm:update_memory(1024)
    local NICP = "VirtualMachine/Devices/NetworkAdapters/" .. NIC
    local VPCIP = "VirtualMachine/Devices/VirtualPci/" .. VPCI
    local P9 = "VirtualMachine/Devices/Plan9/Shares"
    assert.same({
      { ResourcePath = NICP, RequestType = "Add", Settings = nic },
      { ResourcePath = NICP, RequestType = "Update", Settings = nic },
      { ResourcePath = NICP, RequestType = "Remove" },
      { ResourcePath = VPCIP, RequestType = "Add", Settings = vpci },
      { ResourcePath = VPCIP, RequestType = "Remove" },
      { ResourcePath = P9, RequestType = "Add", Settings = share },
      { ResourcePath = P9, RequestType = "Remove", Settings = share },
      { ResourcePath = "VirtualMachine/ComputeTopology/Processor/Limits",
        Settings = { Limit = 50000, Weight = 200 } },
      { ResourcePath = "VirtualMachine/ComputeTopology/Memory/SizeInMB", Settings = 1024 },
    }, entries(vm, "modify", mark))
  end)

  it("sends vm:modify through the same path as the typed methods", function()
    assert(vm:start())
    local att = { Type = "VirtualDisk", Path = img }
    assert.is_true(vm:modify{ ResourcePath = SCSI_ATTACHMENTS .. "5", RequestType = "Add",
                              Settings = att })
    assert.same(att, attachments(vm)["5"])
    local ok, _, code = vm:add_scsi_disk(0, 5, att)
    assert.is_nil(ok)
    assert.equal("EEXIST", code)
  end)

  it("takes the controller GUID of a ResourcePath in any case", function()
    -- GUIDs compare case-insensitively, as in HCS: the upper-case spelling
    -- names controller 0 and its LUN, never a second controller.
    assert(vm:start())
    local att = { Type = "VirtualDisk", Path = img }
    local upper = "VirtualMachine/Devices/Scsi/" .. C0:upper() .. "/Attachments/"
    assert.is_true(vm:modify{ ResourcePath = upper .. "6", RequestType = "Add", Settings = att })
    assert.same(att, attachments(vm)["6"])
    assert.same({ C0 }, (function()
      local keys = {}
      for k in pairs(vm:document().VirtualMachine.Devices.Scsi) do keys[#keys + 1] = k end
      return keys
    end)())
    assert.is_true(vm:modify{ ResourcePath = upper .. "6", RequestType = "Remove" })
    assert.is_nil(attachments(vm)["6"])
  end)

  it("raises for programmer errors before sending anything", function()
    local mark = #vm:plan_log()
    assert.error_matches(function() vm:add_scsi_disk(4, 0, {}) end,
                         "add_scsi_disk: controller must be an integer in 0%.%.3, got 4")
    assert.error_matches(function() vm:add_scsi_disk(0, 1.5, {}) end,
                         "add_scsi_disk: lun must be an integer, got 1%.5")
    assert.error_matches(function() vm:update_nic(NIC, nil) end,
                         "update_nic: network adapter settings cannot be nil")
    assert.error_matches(function() vm:remove_nic(NIC, { timeout = 5 }) end,
                         "remove_nic: unknown option 'timeout'")
    assert.error_matches(function() vm:update_memory("1G") end,
                         "update_memory: size_mb must be an integer")
    assert.error_matches(function() vm:on("reboot", print) end, "vm:on: unknown event 'reboot'")
    assert.equal(mark, #vm:plan_log())
  end)

  it("walks the lifecycle and reports the exit", function()
    assert(vm:start())
    assert.is_true(vm:pause())
    assert.equal("Paused", vm:state())
    assert.is_true(vm:resume())
    assert.equal("Running", vm:state())
    assert.equal("running", vm:qmp("query-status").status)
    local info = vm:shutdown{ timeout_ms = 1000 }
    assert.equal("table", type(info))
    assert.equal(0, info.ExitCode)
    local again = vm:wait()
    assert.equal(info.Reason, again.Reason)
  end)

  it("calls every event handler, which may spawn but not wait", function()
    local states, refused, spawned = {}, nil, false
    local off = vm:on("state", function(data, v, event)
      assert.equal(vm, v)
      assert.equal("state", event)
      states[#states + 1] = data.State
    end)
    vm:on("state", function()
      local ok, err = pcall(orrery.sleep, 1)
      refused = not ok and err
      orrery.spawn(function() spawned = true end)
    end)
    assert(vm:start())
    orrery.sleep(1) -- lets the spawned task run
    assert.same({ "Running" }, states)
    assert.matches("cannot wait inside an event callback", refused)
    assert.is_true(spawned)
    assert.is_true(off())
    assert.is_false(off())
    assert(vm:pause())
    assert.same({ "Running" }, states)
  end)

  it("reports a failing handler and keeps calling the others", function()
    local second = false
    vm:on("state", function() error("handler failure (expected in this spec)") end)
    vm:on("state", function() second = true end)
    assert(vm:start())
    assert.is_true(second)
  end)

  it("removes a boot-time Plan9 share once; then it is gone (ENOENT)", function()
    local b = builder("p9")
    local share = { Name = "src", AccessName = "src", Path = "/tmp", Port = 564 }
    b:add_plan9_share(share)
    local p9 <close> = assert(orrery.create("p9", b, { backend = "plan" }))
    assert(p9:start())
    assert.is_true(p9:remove_plan9_share(share))
    assert.same({}, p9:document().VirtualMachine.Devices.Plan9.Shares)
    local mark = #p9:plan_log()
    local ok, _, code = p9:remove_plan9_share(share)
    assert.is_nil(ok)
    assert.equal("ENOENT", code)
    assert.same({}, entries(p9, "qmp", mark)) -- no second device_del
  end)

  it("starts a VM created from a saved state, which comes up paused", function()
    local restored <close> = assert(orrery.create("restored", builder(),
                                                  { backend = "plan", restore = "/tmp/x.state" }))
    assert.equal("Paused", restored:state())
    assert.is_true(restored:start())
    assert.equal("Running", restored:state())
    local ok, _, code = restored:start()
    assert.is_nil(ok)
    assert.equal("ESTATE", code)
  end)

  it("closes idempotently; a closed VM refuses every method", function()
    assert.is_true(vm:close())
    assert.is_true(vm:close())
    assert.matches("%(id=plan%-spec, closed%)$", tostring(vm))
    assert.error_matches(function() vm:start() end, "attempt to use a closed orrery%.VM")
    assert.error_matches(function() vm:state() end, "attempt to use a closed orrery%.VM")
  end)
end)

describe("orrery.create", function()
  it("takes a builder, a document table or JSON text", function()
    local b = builder("forms")
    for _, doc in ipairs{ b, b:document(), b:json() } do
      local vm <close> = assert(orrery.create("forms", doc, { backend = "plan" }))
      assert.equal("Created", vm:state())
    end
  end)

  it("returns the fail tuple for a bad document or option value", function()
    local ok, msg, code = orrery.create("bad", { Owner = 5 }, { backend = "plan" })
    assert.is_nil(ok)
    assert.equal("EINVAL", code)
    assert.matches("Owner", msg)
    ok, msg, code = orrery.create("bad", "{not json", { backend = "plan" })
    assert.is_nil(ok)
    assert.equal("EINVAL", code)
    ok, _, code = orrery.create("bad", builder(), { backend = "no-such-backend" })
    assert.is_nil(ok)
    assert.equal("EINVAL", code)
  end)

  it("raises for an unknown option or a wrong option type", function()
    assert.error_matches(function() orrery.create("x", builder(), { backnd = "plan" }) end,
                         "create: unknown option 'backnd'")
    assert.error_matches(function() orrery.create("x", builder(), { hotplug_ports = -1 }) end,
                         "create: opts%.hotplug_ports must be an integer")
    assert.error_matches(function() orrery.create("x", builder(), { guest_agent = "yes" }) end,
                         "create: opts%.guest_agent must be a boolean")
  end)

  it("yields inside tasks, so VMs are driven concurrently", function()
    local function make(id)
      return orrery.spawn(function()
        local vm <close> = assert(orrery.create(id, builder(id), { backend = "plan" }))
        assert(vm:start())
        return vm:state()
      end)
    end
    assert.same({ "Running", "Running", "Running" },
                orrery.wait_all{ make("t1"), make("t2"), make("t3") })
  end)

  it("keeps a VM with a pending operation alive without references", function()
    local t = orrery.spawn(function()
      local state
      do
        local vm = assert(orrery.create("gc", builder("gc"), { backend = "plan" }))
        collectgarbage()
        assert(vm:start())
        state = vm:state()
        vm:close()
      end
      return state
    end)
    collectgarbage()
    assert.equal("Running", t:wait())
  end)
end)

-- `orrery plan`: VMs a recipe creates default to the plan backend and are
-- printed after the returned builder's document.
describe("orrery plan with VMs", function()
  local ORRERY = os.getenv("ORRERY_BIN") or (orrery.build_dir .. "/orrery")
  local cjson = require("cjson")

  it("prints each VM's id, document and plan log", function()
    local img = image()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(([[
      local orrery = require("orrery")
      local b = orrery.builder{ owner = "planned" }
      b:set_memory{ SizeInMB = 256 }
      b:add_scsi_controller(0)
      local vm <close> = assert(orrery.create("planned", b))
      assert(vm:add_scsi_disk(0, 1, { Type = "VirtualDisk", Path = %q }))
      return b
    ]]):format(img))
    f:close()
    local p = assert(io.popen(ORRERY .. " plan --compact " .. path))
    local out = p:read("a")
    local _, _, code = p:close()
    os.remove(path)
    os.remove(img)
    assert.equal(0, code)
    local result = cjson.decode(out)
    assert.equal("planned", result.document.Owner)
    -- The builder's controller has no disk: Go leaves the empty map out.
    assert.same({}, result.document.VirtualMachine.Devices.Scsi[C0])
    assert.equal(1, #result.vms)
    local vm = result.vms[1]
    assert.equal("planned", vm.id)
    assert.equal(img, vm.document.VirtualMachine.Devices.Scsi[C0].Attachments["1"].Path)
    local sent = {}
    for _, e in ipairs(vm.plan_log) do
      if e.kind == "qmp" then sent[#sent + 1] = e.value.execute end
    end
    assert.same({ "blockdev-add", "blockdev-add", "device_add" }, { sent[1], sent[2], sent[3] })
  end)
end)

-- Run-time requests shaped exactly as hcsshim sends them: a Plan9 Remove
-- naming the share by {Name, AccessName, Port} (no Path), and requests
-- carrying a GuestRequest (with a host part, or alone as its guest manager
-- sends them). The plan backend runs the same request path as the qemu
-- backend; the last block removes a share from a real QEMU.
local orrery = require("orrery")
local T = require("orrery.testing")

local P9 = "VirtualMachine/Devices/Plan9/Shares"
local C0 = "df6d0690-79e5-55b6-a5ec-c1e2f77f580a"

-- hcsshim's Plan9 share of a Linux guest: Name = AccessName, port 564,
-- LinuxMetadata (0x4) | ReadOnly (0x1).
local SHARE = { Name = "1", AccessName = "1", Path = "/tmp", Port = 564, Flags = 5 }
-- internal/uvm/plan9.go RemovePlan9: the share without Path.
local REMOVE = { Name = "1", AccessName = "1", Port = 564 }

local function builder(owner)
  local b = orrery.builder{ owner = owner }
  b:set_memory{ SizeInMB = 256 }
  b:set_processor{ Count = 1 }
  b:add_scsi_controller(0)
  b:add_plan9_share(SHARE)
  return b
end

local function qmp_since(vm, mark)
  local out = {}
  for i, e in ipairs(vm:plan_log()) do
    if i > mark and e.kind == "qmp" then out[#out + 1] = e.value end
  end
  return out
end

local function shares(vm)
  return vm:document().VirtualMachine.Devices.Plan9.Shares
end

describe("hcsshim-shaped requests on the plan backend", function()
  local vm
  before_each(function()
    vm = assert(orrery.create("hcs-requests", builder("hcs-requests"), { backend = "plan" }))
    assert(vm:start())
  end)
  after_each(function() vm:close() end)

  it("removes a Plan9 share named by {Name, AccessName, Port}, without Path", function()
    local mark = #vm:plan_log()
    assert.is_true(vm:modify{ ResourcePath = P9, RequestType = "Remove", Settings = REMOVE })
    assert.same({}, shares(vm))
    local sent = qmp_since(vm, mark)
    assert.equal("device_del", sent[1].execute)
    assert.equal("p9-0", sent[1].arguments.id)
  end)

  it("removes a Plan9 share named by Name alone", function()
    assert.is_true(vm:remove_plan9_share{ Name = "1" })
    assert.same({}, shares(vm))
  end)

  it("refuses a Remove whose AccessName or Path is another share's, changing nothing", function()
    local before = vm:document()
    local mark = #vm:plan_log()
    local ok, msg, code = vm:remove_plan9_share{ Name = "1", AccessName = "2", Port = 564 }
    assert.is_nil(ok)
    assert.equal("EINVAL", code)
    assert.matches("Settings.AccessName \"2\" is not the AccessName", msg, 1, true)
    ok, msg, code = vm:remove_plan9_share{ Name = "1", Path = "/srv/elsewhere" }
    assert.is_nil(ok)
    assert.equal("EINVAL", code)
    assert.matches("Settings.Path /srv/elsewhere is not the Path", msg, 1, true)
    assert.same(before, vm:document())
    assert.same({}, qmp_since(vm, mark))
  end)

  it("still needs a Path to add a share", function()
    local ok, msg, code = vm:add_plan9_share{ Name = "2", AccessName = "2", Port = 564 }
    assert.is_nil(ok)
    assert.equal("EINVAL", code)
    assert.matches("Settings.Path is required", msg, 1, true)
  end)

  it("answers ENOTSUP naming a GuestRequest sent with a Plan9 Remove; nothing is removed", function()
    local mark = #vm:plan_log()
    local ok, msg, code = vm:modify{
      ResourcePath = P9, RequestType = "Remove", Settings = REMOVE,
      GuestRequest = { ResourceType = "MappedDirectory", RequestType = "Remove",
                       Settings = { MountPath = "/run/mounts/m1", ShareName = "1", Port = 564 } } }
    assert.is_nil(ok)
    assert.equal("ENOTSUP", code)
    assert.matches("request.GuestRequest (Remove MappedDirectory)", msg, 1, true)
    assert.equal(1, #shares(vm))
    assert.same({}, qmp_since(vm, mark))
  end)

  it("answers ENOTSUP for a SCSI Add carrying a MappedVirtualDisk GuestRequest; the LUN stays free", function()
    local img = os.tmpname()
    local ok, msg, code = vm:modify{
      ResourcePath = "VirtualMachine/Devices/Scsi/" .. C0 .. "/Attachments/1", RequestType = "Add",
      Settings = { Type = "VirtualDisk", Path = img },
      GuestRequest = { ResourceType = "MappedVirtualDisk", RequestType = "Add",
                       Settings = { MountPath = "/run/mounts/scsi/m1", Controller = 0, Lun = 1 } } }
    os.remove(img)
    assert.is_nil(ok)
    assert.equal("ENOTSUP", code)
    assert.matches("GuestRequest (Add MappedVirtualDisk)", msg, 1, true)
    assert.is_nil((vm:document().VirtualMachine.Devices.Scsi[C0].Attachments or {})["1"])
  end)

  it("answers ENOTSUP for a guest-only request (no ResourcePath), as hcsshim's guest manager sends", function()
    local ok, msg, code = vm:modify{
      GuestRequest = { ResourceType = "VPMemDevice", RequestType = "Add",
                       Settings = { DeviceNumber = 0, MountPath = "/run/layers/p0" } } }
    assert.is_nil(ok)
    assert.equal("ENOTSUP", code)
    assert.matches("GuestRequest (Add VPMemDevice)", msg, 1, true)
  end)

  it("checks a GuestRequest's shape like any field (EINVAL naming it)", function()
    local ok, msg, code = vm:modify{
      GuestRequest = { ResourceType = "MappedDirectory", RequestType = "Add",
                       Settings = { MountPath = "/m", Port = "564" } } }
    assert.is_nil(ok)
    assert.equal("EINVAL", code)
    assert.matches("request.GuestRequest.Settings.Port must be an integer", msg, 1, true)
    ok, msg, code = vm:modify{ GuestRequest = { ResourceType = "Plan9", RequestType = "Add" } }
    assert.is_nil(ok)
    assert.equal("EINVAL", code)
    assert.matches("request.GuestRequest.ResourceType must be one of", msg, 1, true)
    ok, msg, code = vm:modify{ GuestRequest = { ResourceType = "Network", RequestType = "Add",
                                                Settings = { Routes = { { Metric = 70000 } } } } }
    assert.is_nil(ok)
    assert.equal("EINVAL", code)
    assert.matches("request.GuestRequest.Settings.Routes[1].Metric must be an integer in 0..65535",
                   msg, 1, true)
  end)

  it("refuses a request with neither ResourcePath nor GuestRequest", function()
    local ok, msg, code = vm:modify{ RequestType = "Remove" }
    assert.is_nil(ok)
    assert.equal("EINVAL", code)
    assert.matches("request.ResourcePath is required", msg, 1, true)
  end)
end)

describe("an hcsshim-shaped Plan9 Remove on a real QEMU", function()
  local ROOT = T.tmpdir()
  local vm
  setup(function()
    local b = orrery.builder{ owner = "hcs-p9" }
    b:set_memory{ SizeInMB = 256 }
    b:set_processor{ Count = 1 }
    b:set_linux_kernel_direct_boot(orrery.default_guest())
    -- A clone of the document's template (the share's path stays the same from run to run); the
    -- guest must be up to acknowledge the PCI unplug.
    b:add_plan9_share{ Name = "1", AccessName = "1", Path = T.stable_dir("hcs-p9-share"), Port = 564, Flags = 5 }
    local g
    vm, g = T.guest_vm("hcs-p9", b, {}, ROOT .. "/vm")
    g:close()
  end)
  teardown(function()
    if vm then vm:close() end
    T.run("rm -rf " .. T.q(ROOT))
  end)

  it("unplugs the share's device and drops it from the document", function()
    local function p9_present()
      for _, p in ipairs(assert(vm:qmp("qom-list", { path = "/machine/peripheral" }))) do
        if p.name == "p9-0" then return true end
      end
      return false
    end
    assert.is_true(p9_present())
    assert.is_true(vm:modify({ ResourcePath = P9, RequestType = "Remove", Settings = REMOVE },
                             { timeout_ms = 60000 }))
    assert.same({}, vm:document().VirtualMachine.Devices.Plan9.Shares)
    assert.is_false(p9_present())
  end)
end)

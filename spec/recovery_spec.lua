-- Engine crash recovery on real QEMU (TCG): a VM that terminates on last
-- handle close dies with a SIGKILLed engine; one that does not outlives it
-- and a new process re-attaches with orrery.open.
local orrery = require("orrery")

local T = require("orrery.testing")
local sh, alive, read, wait_until = T.sh, T.alive, T.read, T.eventually

describe("engine crash recovery", function()
  local dir, disk

  setup(function()
    dir = T.tmpdir()
    disk = dir .. "/d.img"
    assert(os.execute("truncate -s 8M " .. disk))
  end)

  teardown(function()
    -- A failed assertion must not leave the outliving VM running.
    for _, id in ipairs({ "rec-a", "rec-b" }) do
      local pid = tonumber(read(dir .. "/" .. id .. "/qemu.pid") or "")
      if pid and alive(pid) then os.execute("kill -9 " .. pid) end
    end
    os.execute("rm -rf " .. dir)
  end)

  -- Starts build/orrery on a recipe in the background; returns its pid.
  local function spawn_recipe(name, body)
    local recipe = T.spit(dir .. "/" .. name .. ".lua", body)
    local pid = sh(string.format(
      "ORRERY_RUNTIME_DIR=%s %s/orrery run %s >%s/%s.log 2>&1 & echo $!",
      dir, orrery.build_dir, recipe, dir, name))
    return assert(tonumber(pid))
  end

  local function recipe(id, keep)
    return string.format([[
local orrery = require("orrery")
local b = orrery.builder{ owner = "recovery",
  ShouldTerminateOnLastHandleClosed = %s }
b:set_memory{ SizeInMB = 128 }
b:add_scsi_controller(0)
local vm = assert(orrery.create(%q, b, { accel = "tcg" }))
assert(vm:start())
assert(vm:add_scsi_disk(0, 2, { Type = "VirtualDisk", Path = %q }))
local f = io.open(%q, "w")
f:write(vm:properties().ProcessId)
f:close()
orrery.sleep(60000)
]], tostring(not keep), id, disk, dir .. "/" .. id .. ".pid")
  end

  it("takes a terminate-on-close VM down with a SIGKILLed engine", function()
    local engine = spawn_recipe("a", recipe("rec-a", false))
    assert.is_true(wait_until(function() return read(dir .. "/rec-a.pid") end,
                              15000), read(dir .. "/a.log"))
    local qemu = tonumber(read(dir .. "/rec-a.pid"))
    assert.is_true(alive(qemu))
    assert(os.execute("kill -9 " .. engine))
    assert.is_true(wait_until(function() return not alive(qemu) end, 5000),
                   "QEMU " .. qemu .. " outlived its engine")
    -- The killed engine could not clear its VM's runtime directory; the
    -- next engine on the same runtime root does.
    assert.is_not_nil(read(dir .. "/rec-a/qemu.pid"))
    local sweeper = spawn_recipe("sweep", [[
local orrery = require("orrery")
local b = orrery.builder{ owner = "sweep" }
b:set_memory{ SizeInMB = 64 }
assert(orrery.create("sweep", b, { backend = "plan" }))
]])
    assert.is_true(wait_until(function() return not alive(sweeper) end, 10000))
    assert.is_nil(read(dir .. "/rec-a/qemu.pid"))
    assert.is_false(os.execute("test -e " .. dir .. "/rec-a") == true)
  end)

  it("keeps a VM with ShouldTerminateOnLastHandleClosed = false and re-attaches",
     function()
    local engine = spawn_recipe("b", recipe("rec-b", true))
    assert.is_true(wait_until(function() return read(dir .. "/rec-b.pid") end,
                              15000), read(dir .. "/b.log"))
    local qemu = tonumber(read(dir .. "/rec-b.pid"))
    assert(os.execute("kill -9 " .. engine))
    orrery.sleep(300)
    assert.is_true(alive(qemu), "QEMU died with its engine")

    local vm = assert(orrery.open("rec-b", { runtime_dir = dir .. "/rec-b" }))
    local props = vm:properties()
    assert.equal("Running", props.State)
    assert.equal(qemu, props.ProcessId)
    local guid = orrery.scsi_controller_guids[0]
    local att = vm:document().VirtualMachine.Devices.Scsi[guid].Attachments
    assert.same({ Type = "VirtualDisk", Path = disk }, att["2"])
    -- QMP is live again: a change goes through and reaches QEMU.
    assert(vm:remove_scsi_disk(0, 2))
    assert.is_nil(vm:document().VirtualMachine.Devices.Scsi[guid].Attachments["2"])
    -- A second open in the same process is refused.
    local ok, err, code = orrery.open("rec-b", { runtime_dir = dir .. "/rec-b" })
    assert.is_nil(ok)
    assert.equal("EBUSY", code, err)
    assert(vm:terminate())
    assert.is_true(wait_until(function() return not alive(qemu) end, 5000))
    vm:close()
    assert.is_nil(read(dir .. "/rec-b/state.json"))
  end)

  it("refuses to open a VM that is not running", function()
    local ok, err, code = orrery.open("nothing-here", { runtime_dir = dir .. "/none" })
    assert.is_nil(ok)
    assert.equal("ENOENT", code)
    assert.matches("no VM \"nothing%-here\"", err)
  end)
end)

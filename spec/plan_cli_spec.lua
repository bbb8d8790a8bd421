-- `orrery plan RECIPE`: runs a recipe and prints the document it returns
-- (and the VMs it created, with what the qemu backend would send), as
-- JSON alone on stdout: whatever the recipe prints goes to stderr. Every
-- shipped recipe plans, making no files.
local cjson = require("cjson")

local T = require("orrery.testing")
local quote = T.q

local ORRERY = T.orrery_bin()
local RECIPE = T.recipe("linux-vm.lua")
local RECIPES = { "quickstart.lua", "minimal.lua", "linux-vm.lua" }
local C0 = "df6d0690-79e5-55b6-a5ec-c1e2f77f580a"
local C1 = "0110f83b-de10-5172-a266-78bca56bf50a"
local VPCI = "6f5c3a1e-1b2d-4c3e-9f4a-0a1b2c3d4e5f"
local NIC = "2b4a8c1e-3d5f-4a6b-8c7d-9e0f1a2b3c4d"

local orrery = T.orrery_cmd

describe("orrery plan", function()
  local temp_recipe = T.temp_recipes(after_each)

  it("prints the recipe's document and its VM as JSON with the HCS keys", function()
    local out, err, code = orrery("plan", RECIPE)
    assert.equal(0, code, err)
    local plan = cjson.decode(out)
    local doc = plan.document
    local vm = doc.VirtualMachine
    assert.equal("linux-vm", doc.Owner)
    assert.same({ Major = 2, Minor = 1 }, doc.SchemaVersion)
    assert.is_true(doc.ShouldTerminateOnLastHandleClosed)

    -- Under plan the recipe makes no files: the paths are its placeholders.
    local dir = "/tmp/orrery-linux-vm"
    local scsi = vm.Devices.Scsi
    assert.same({ [C0] = true, [C1] = true },
                (function() local s = {} for k in pairs(scsi) do s[k] = true end return s end)())
    assert.same({ Type = "VirtualDisk", Path = dir .. "/root.img", ReadOnly = true },
                scsi[C0].Attachments["0"])
    assert.same({ Type = "VirtualDisk", Path = dir .. "/data.img" }, scsi[C1].Attachments["0"])

    assert.same({ Functions = { { DeviceInstancePath = "qemu:virtio-rng-pci" } },
                  PropagateNumaAffinity = true }, vm.Devices.VirtualPci[VPCI])
    assert.same({ EndpointId = "user", MacAddress = "00-15-5D-52-C0-0A" },
                vm.Devices.NetworkAdapters[NIC])
    assert.same({ { Name = "src", AccessName = "src", Path = dir .. "/share", Port = 564,
                    Flags = 1 } }, vm.Devices.Plan9.Shares) -- ReadOnly is Flags bit 0x1
    assert.equal(dir .. "/com1.sock", vm.Devices.ComPorts["0"].NamedPipe)

    local topo = vm.ComputeTopology
    assert.equal(512, topo.Memory.SizeInMB)
    assert.equal(2, topo.Processor.Count)
    assert.same({ count_per_node = { max = 1 }, node_per_socket = 1 },
                topo.Processor.NumaProcessorsSettings)
    assert.equal(2, topo.Numa.VirtualNodeCount)
    local cpus, mem = 0, 0
    for _, node in ipairs(topo.Numa.Settings) do
      cpus = cpus + node.CountOfProcessors
      mem = mem + node.CountOfMemoryBlocks
    end
    assert.equal(2, cpus)
    assert.equal(512, mem)
    assert.matches("^/", vm.Chipset.LinuxKernelDirect.KernelFilePath)
    assert.is_nil(vm.Chipset.Uefi)
    assert.same({ IopsMaximum = 5000, BandwidthMaximum = 100000000 }, vm.StorageQoS)

    -- The VM it created, with the argv the qemu backend would run.
    assert.equal(1, #plan.vms)
    assert.equal("linux-vm", plan.vms[1].id)
    assert.equal("argv", plan.vms[1].plan_log[1].kind)
    assert.equal("/tmp/orrery-linux-vm/root.img",
                 plan.vms[1].document.VirtualMachine.Devices.Scsi[C0].Attachments["0"].Path)
  end)

  it("prints the same document the recipe builds in-process", function()
    local path = temp_recipe([[
local b = require("orrery").builder{ owner = "same" }
b:set_memory{ SizeInMB = 256 }
b:set_processor{ Count = 2 }
b:add_scsi_controller(0)
b:add_scsi_disk(0, 1, { Type = "VirtualDisk", Path = "/srv/a.img", ReadOnly = true })
return b
]])
    local b = dofile(path)
    assert.is_true(b:validate())
    assert.equal(b:json{ pretty = true } .. "\n", (orrery("plan", path)))
    -- --compact: one line, the same document.
    local out, _, code = orrery("plan", "--compact", path)
    assert.equal(0, code)
    assert.matches("^{[^\n]*}\n$", out)
    assert.equal(b:json() .. "\n", out)
  end)

  it("plans every shipped recipe: JSON alone on stdout, python3's json.tool agrees", function()
    local python = io.open("/usr/bin/python3") and "/usr/bin/python3"
    for _, name in ipairs(RECIPES) do
      local out, err, code = orrery("plan", "--compact", T.recipe(name))
      assert.equal(0, code, name .. ": " .. err)
      assert.matches("^{[^\n]*}\n$", out, name)
      local plan = cjson.decode(out)
      assert.is_true(#plan.vms >= 1, name)
      for _, vm in ipairs(plan.vms) do
        assert.equal("argv", vm.plan_log[1].kind, name)
      end
      if python then
        local tmp = os.tmpname()
        T.spit(tmp, out)
        assert.is_true(T.run(python .. " -m json.tool " .. quote(tmp) .. " >/dev/null"), name)
        os.remove(tmp)
      end
    end
  end)

  it("plans the recipes without making any file in /tmp", function()
    -- In a private mount namespace /tmp becomes an overlay whose upper
    -- layer is a fresh tmpfs: everything stays readable (the build tree
    -- may live in /tmp), and whatever the plan creates lands in /mnt/up.
    local overlay = "mount -t tmpfs none /mnt && mkdir /mnt/up /mnt/work && mount -t overlay "
      .. "overlay -o lowerdir=/tmp,upperdir=/mnt/up,workdir=/mnt/work /tmp"
    if not T.run("unshare -m --propagation private sh -c " .. quote(overlay) .. " 2>/dev/null") then
      return pending("needs unshare -m and an overlay mount (root)")
    end
    for _, name in ipairs(RECIPES) do
      local out = T.sh("unshare -m --propagation private sh -c " .. quote(overlay .. " && "
        .. ORRERY .. " plan " .. quote(T.sh("realpath " .. quote(T.recipe(name))):gsub("\n$", ""))
        .. " >/dev/null 2>&1; echo rc=$?; ls -A /mnt/up"))
      assert.equal("rc=0\n", out, name)
    end
  end)

  it("sends the recipe's own output to stderr: print, io.write, programs it runs", function()
    local path = temp_recipe([[
print("from print")
io.write("from io.write\n")
io.stdout:write("from io.stdout\n")
os.execute("echo from a child")
orrery.spawn(function() print("from a task") end)
return orrery.builder{ owner = "noisy" }
]])
    local out, err, code = orrery("plan", "--compact", path)
    assert.equal(0, code, err)
    assert.equal("noisy", cjson.decode(out).Owner)
    for _, line in ipairs{ "from print", "from io.write", "from io.stdout", "from a child",
                           "from a task" } do
      assert.truthy(err:find(line, 1, true), line .. " not in stderr: " .. err)
    end
  end)

  it("exits non-zero on a builder error, naming the recipe's file:line and the message", function()
    local path = temp_recipe(table.concat({
      'local orrery = require("orrery")',
      'local b = orrery.builder{ owner = "bad" }',
      'b:add_scsi_controller(0)',
      'b:add_scsi_disk(0, 0, { Type = "VirtualDisk", Path = "/srv/a.img" })',
      'b:add_scsi_disk(0, 0, { Type = "VirtualDisk", Path = "/srv/b.img" })',
      'return b',
    }, "\n") .. "\n")
    local out, err, code = orrery("plan", path)
    assert.is_true(code ~= 0)
    assert.equal("", out)
    assert.truthy(err:find(path .. ":5: add_scsi_disk: controller 0 LUN 0 is already used by "
                           .. "/srv/a.img", 1, true), err)
  end)

  it("exits non-zero when the recipe returns no builder", function()
    local path = temp_recipe('local orrery = require("orrery")\n'
                             .. 'local b = orrery.builder("forgot")\n')
    local out, err, code = orrery("plan", path)
    assert.is_true(code ~= 0)
    assert.equal("", out)
    assert.truthy(err:find(path .. " must return an orrery.Builder", 1, true), err)
    assert.truthy(err:find("return b", 1, true), err)
  end)

  it("exits non-zero when the recipe returns something else", function()
    local path = temp_recipe('return { Owner = "not a builder" }\n')
    local _, err, code = orrery("plan", path)
    assert.is_true(code ~= 0)
    assert.truthy(err:find("must return an orrery.Builder", 1, true), err)
  end)

  it("exits non-zero when the returned document is incomplete (NUMA without memory)", function()
    local path = temp_recipe(table.concat({
      'local b = require("orrery").builder("half")',
      'b:set_processor{ Count = 2 }',
      'b:set_numa{ VirtualNodeCount = 2 }',
      'return b',
    }, "\n") .. "\n")
    local _, err, code = orrery("plan", path)
    assert.is_true(code ~= 0)
    assert.truthy(err:find("Memory.SizeInMB", 1, true), err)
  end)

  it("exits non-zero for a missing recipe and names it", function()
    local _, err, code = orrery("plan", "/nonexistent/recipe.lua")
    assert.is_true(code ~= 0)
    assert.truthy(err:find("/nonexistent/recipe.lua", 1, true), err)
  end)

  it("exits 2 on usage errors", function()
    local _, _, code = orrery("plan")
    assert.equal(2, code)
    _, _, code = orrery("plan", "--bogus", RECIPE)
    assert.equal(2, code)
  end)
end)

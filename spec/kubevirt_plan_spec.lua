-- `orrery plan --backend kubevirt RECIPE`: each VM the recipe creates is a
-- dry run of the kubevirt backend, reported with its VirtualMachine
-- manifest and every Kubernetes API request the backend would send. Every
-- manifest and request is checked against KubeVirt's published v1 schema,
-- compiled into the engine (orrery.kubevirt), and the checks are shown to
-- catch what is wrong.
local cjson = require("cjson")
local orrery = require("orrery")

local T = require("orrery.testing")

local KV = orrery.kubevirt
local NIC = "2b4a8c1e-3d5f-4a6b-8c7d-9e0f1a2b3c4d"
local NIC2 = "3c5b9d2f-4e6a-4b7c-9d8e-0f1a2b3c4d5e"

local orrery_cmd = T.orrery_cmd

-- Checks the value at pointer in the plan's JSON text against a schema
-- definition (the text as printed: a decoded table loses [] versus {}).
local function valid(def, text, where, pointer)
  local ok, msg = KV.check(def, text, where, pointer)
  assert(ok, msg)
end

-- Checks every request of VM i (0-based) in the plan's text.
local function valid_requests(text, kv, i)
  for k = 1, #kv.requests do
    local ok, msg = KV.check_request(text, ("/vms/%d/kubevirt/requests/%d"):format(i or 0, k - 1))
    assert(ok, msg)
  end
end

-- The last path segment of each request, with its method: the sequence.
local function verbs(reqs)
  local out = {}
  for i, r in ipairs(reqs) do
    out[i] = r.method .. " " .. r.path:match("[^/]+$")
  end
  return out
end

-- Every string in v, the orrery.io/document annotation left out (it
-- carries the boot document verbatim, for re-attach).
local function strings(v, out)
  out = out or {}
  if type(v) == "string" then
    out[#out + 1] = v
  elseif type(v) == "table" then
    for k, x in pairs(v) do
      if k ~= "orrery.io/document" then strings(x, out) end
    end
  end
  return out
end

describe("orrery plan --backend kubevirt", function()
  local recipe = T.temp_recipes(after_each)

  it("has KubeVirt's v1 schema compiled in, with its origin", function()
    assert.equal("kubevirt/kubevirt", KV.schema.repository)
    assert.equal("api/openapi-spec/swagger.json", KV.schema.file)
    assert.matches("^v1%.%d+%.%d+$", KV.schema.version)
    assert.matches("^%x+$", KV.schema.commit)
    assert.equal(40, #KV.schema.commit)
  end)

  it("prints the quickstart as a schema-valid VirtualMachine on cluster sources", function()
    local out, err, code = orrery_cmd("plan", "--backend", "kubevirt",
                                      T.recipe("quickstart.lua"))
    assert.equal(0, code, err)
    local plan = cjson.decode(out)
    assert.equal(1, #plan.vms)
    local v = plan.vms[1]
    assert.equal("quickstart", v.id)
    assert.equal("quickstart", v.document.Owner)
    assert.is_nil(v.plan_log) -- QEMU's record belongs to the plan backend
    local kv = v.kubevirt
    local m = kv.manifest
    valid("v1.VirtualMachine", out, "manifest", "/vms/0/kubevirt/manifest")
    assert.equal("VirtualMachine", m.kind)
    assert.equal("kubevirt.io/v1", m.apiVersion)
    assert.equal("quickstart", m.metadata.name)
    assert.equal("default", m.metadata.namespace)
    assert.equal("Manual", m.spec.runStrategy) -- created, not started

    -- The document's host paths became the recipe's cluster sources.
    local doc = v.document.VirtualMachine
    local kernel = doc.Chipset.LinuxKernelDirect
    local boot = m.spec.template.spec.domain.firmware.kernelBoot
    assert.same({ image = "localhost/orrery-guest:0.1.0", kernelPath = "/boot/vmlinuz",
                  initrdPath = "/boot/initrd.img" }, boot.container)
    assert.equal(kernel.KernelCmdLine, boot.kernelArgs)
    assert.equal("256Mi", m.spec.template.spec.domain.memory.guest)
    for _, s in ipairs(strings(kv)) do
      assert.is_nil(s:find(kernel.KernelFilePath, 1, true), s)
      assert.is_nil(s:find(kernel.InitRdPath, 1, true), s)
      assert.is_nil(s:find("orrery-quickstart-", 1, true), s)
    end

    -- Every request, in order, each valid for its operation.
    assert.same({ "POST virtualmachines", "PUT start", "PUT addvolume", "PUT removevolume",
                  "PUT stop", "DELETE quickstart" }, verbs(kv.requests))
    valid_requests(out, kv)
    local create = kv.requests[1]
    valid("v1.VirtualMachine", out, "create", "/vms/0/kubevirt/requests/0/body")
    assert.same(create.body.spec.template.spec.domain.firmware,
                m.spec.template.spec.domain.firmware)
    local add = kv.requests[3].body
    assert.equal("scsi-0-3", add.name)
    assert.same({ claimName = "quickstart-data", hotpluggable = true },
                add.volumeSource.persistentVolumeClaim)
    assert.equal("scsi", add.disk.disk.bus)
    assert.same({ name = "scsi-0-3" }, kv.requests[4].body)
    -- The disk went as it came: the manifest is the VM after it all.
    assert.same({}, m.spec.template.spec.volumes)
    -- shutdown{timeout_ms = 10000}: the guest gets what is left of it.
    assert.equal(10, kv.requests[5].body.gracePeriod)
    for _, r in ipairs(kv.requests) do
      assert.matches("^/apis/[%w.]+/v1/namespaces/default/", r.path)
    end
  end)

  it("takes the namespace and sources from the command line over the recipe's", function()
    local image = "registry.example/guest:2"
    local g = orrery.default_guest()
    local out, err, code = orrery_cmd("plan", "--backend", "kubevirt", "--namespace", "lab",
      "--source", g.KernelFilePath .. "=containerdisk:" .. image .. "#/k",
      "--source", g.InitRdPath .. "=containerdisk:" .. image .. "#/i",
      "--compact", T.recipe("quickstart.lua"))
    assert.equal(0, code, err)
    assert.is_nil(out:find("\n.", 1)) -- one line
    local kv = cjson.decode(out).vms[1].kubevirt
    valid("v1.VirtualMachine", out, "manifest", "/vms/0/kubevirt/manifest")
    assert.equal("lab", kv.manifest.metadata.namespace)
    assert.same({ image = image, kernelPath = "/k", initrdPath = "/i" },
                kv.manifest.spec.template.spec.domain.firmware.kernelBoot.container)
    valid_requests(out, kv)
    for _, r in ipairs(kv.requests) do assert.matches("/namespaces/lab/", r.path) end
  end)

  it("plans every run-time change as requests the schema accepts", function()
    local p = recipe([[
      local orrery = require("orrery")
      assert(orrery.default_backend() == "kubevirt")
      local b = orrery.builder{ owner = "changes" }
      b:set_memory{ SizeInMB = 512 }
      b:set_processor{ Count = 2 }
      b:add_scsi_controller(0)
      b:add_scsi_disk(0, 0, { Type = "VirtualDisk", Path = "/srv/root.img", ReadOnly = true })
      b:add_network_adapter("]] .. NIC .. [[", { EndpointId = "pod", MacAddress = "00-15-5D-52-C0-0A" })
      local vm <close> = assert(orrery.create("changes", b, { sources = {
        ["/srv/root.img"] = "dv:root", ["/srv/data.img"] = "pvc:data" } }))
      assert(vm:start())
      assert(vm:add_scsi_disk(0, 1, { Type = "VirtualDisk", Path = "/srv/data.img" }))
      assert(vm:add_nic("]] .. NIC2 .. [[", { EndpointId = "multus:lab/net1",
                                          MacAddress = "00-15-5D-52-C0-0B" }))
      assert(vm:update_memory(1024))
      assert(vm:pause())
      assert(vm:resume())
      assert(vm:remove_nic("]] .. NIC2 .. [["))
      assert(vm:remove_scsi_disk(0, 1))
      assert(vm:terminate())
      return b
    ]])
    local out, err, code = orrery_cmd("plan", "--backend", "kubevirt", p)
    assert.equal(0, code, err)
    local plan = cjson.decode(out)
    local kv = plan.vms[1].kubevirt
    valid("v1.VirtualMachine", out, "manifest", "/vms/0/kubevirt/manifest")
    assert.same({ "POST virtualmachines", "PUT start", "PUT addvolume", "PATCH changes",
                  "PATCH changes", "PUT pause", "PUT unpause", "PATCH changes",
                  "PUT removevolume", "PUT stop", "DELETE changes" }, verbs(kv.requests))
    valid_requests(out, kv)
    -- The patches: the NIC on its multus network, memory hot-plug, the
    -- NIC's unplug (state absent), each against the VM as it was then.
    local nic_ops = kv.requests[4].body
    assert.equal("/spec/template/spec/domain/devices/interfaces/-", nic_ops[1].path)
    assert.equal("nic-" .. NIC2, nic_ops[1].value.name)
    assert.same({ name = "nic-" .. NIC2, multus = { networkName = "lab/net1" } }, nic_ops[2].value)
    assert.same({ { op = "replace", path = "/spec/template/spec/domain/memory/guest",
                    value = "1024Mi" } }, kv.requests[5].body)
    assert.same({ { op = "add", path = "/spec/template/spec/domain/devices/interfaces/1/state",
                    value = "absent" } }, kv.requests[8].body)
    assert.equal(0, kv.requests[10].body.gracePeriod) -- terminate
    -- The manifest after it all: memory grown, the NIC marked absent, the
    -- data disk gone, the boot disk a DataVolume.
    local spec = kv.manifest.spec.template.spec
    assert.equal("1024Mi", spec.domain.memory.guest)
    assert.equal("absent", spec.domain.devices.interfaces[2].state)
    assert.same({ { name = "scsi-0-0", dataVolume = { name = "root" } } }, spec.volumes)
    -- The live document followed each change.
    local devs = plan.vms[1].document.VirtualMachine.Devices
    assert.is_nil(devs.NetworkAdapters[NIC2])
    assert.equal(1024, plan.vms[1].document.VirtualMachine.ComputeTopology.Memory.SizeInMB)
  end)

  it("refuses a host path without a cluster source, naming the field", function()
    local p = recipe([[
      local b = orrery.builder{ owner = "nosrc" }
      b:set_memory{ SizeInMB = 64 }
      b:add_scsi_controller(0)
      b:add_scsi_disk(0, 2, { Type = "VirtualDisk", Path = "/tmp/data.img" })
      assert(orrery.create("nosrc", b))
    ]])
    local out, err, code = orrery_cmd("plan", "--backend", "kubevirt", p)
    assert.equal(1, code)
    assert.equal("", out)
    assert.matches("EINVAL: create: [^\n]*Attachments%.2%.Path: \"/tmp/data%.img\" means nothing on a cluster", err)
    assert.matches("sources", err)
  end)

  it("refuses what KubeVirt cannot do, and other backends' options", function()
    local p = recipe([[
      local b = orrery.builder{ owner = "refusals" }
      b:set_memory{ SizeInMB = 64 }
      local function msg(...) local _, m = ...; return m end
      print(msg(orrery.create("Not_A_Label", b)))
      print(msg(orrery.create("qb", b, { qemu_binary = "/bin/true" })))
      print(msg(orrery.create("ns", b, { namespace = "Bad_NS" })))
      print(msg(orrery.create("plan", b, { backend = "plan", sources = {} })))
      local vm <close> = assert(orrery.create("ok", b))
      assert(vm:start())
      print(msg(vm:update_cpu_limits{ Limit = 50000 }))
      print(msg(vm:update_memory(32)))
      return b
    ]])
    local out, err, code = orrery_cmd("plan", "--backend", "kubevirt", p)
    assert.equal(0, code, err)
    assert.matches("EINVAL: create: id \"Not_A_Label\" names the VirtualMachine on the kubevirt "
                   .. "backend: it must be a DNS%-1123 label", err)
    assert.matches("EINVAL: create: opts%.qemu_binary is not an option of the kubevirt backend", err)
    assert.matches("EINVAL: create: opts%.namespace \"Bad_NS\" must be a DNS%-1123 label", err)
    assert.matches("EINVAL: create: opts%.sources is not an option of the plan backend", err)
    assert.matches("ENOTSUP: VirtualMachine/ComputeTopology/Processor/Limits: KubeVirt changes "
                   .. "CPU resources only by restarting the VM", err)
    assert.matches("ENOTSUP: VirtualMachine/ComputeTopology/Memory/SizeInMB: KubeVirt hot%-plugs "
                   .. "memory but cannot take it away", err)
    -- A refused change sends nothing.
    local kv = cjson.decode(out).vms[1].kubevirt
    assert.same({ "POST virtualmachines", "PUT start", "DELETE ok" }, verbs(kv.requests))
  end)

  it("has checks that catch what is wrong", function()
    local out, err, code = orrery_cmd("plan", "--backend", "kubevirt", T.recipe("quickstart.lua"))
    assert.equal(0, code, err)
    local kv = cjson.decode(out).vms[1].kubevirt
    -- The create request's body, edited: it holds no empty array, so it
    -- survives a trip through a Lua table as it is.
    local function broken(edit)
      local m = cjson.decode(cjson.encode(kv.requests[1].body))
      edit(m)
      local ok, msg = KV.check("v1.VirtualMachine", cjson.encode(m), "manifest")
      assert.is_nil(ok)
      return msg
    end
    valid("v1.VirtualMachine", cjson.encode(kv.requests[1].body), "manifest")
    assert(KV.check_request(cjson.encode(kv.requests[3])))
    assert.matches("manifest%.spec%.runStrategy", broken(function(m) m.spec.runStrategy = "Sometimes" end))
    assert.matches("manifest%.spec%.template%.spec%.domain%.cpu%.cores",
                   broken(function(m) m.spec.template.spec.domain.cpu.cores = "one" end))
    assert.matches("manifest%.spec%.template%.spec%.domain%.bogus",
                   broken(function(m) m.spec.template.spec.domain.bogus = true end))
    assert.matches("manifest%.spec%.template%.spec%.domain%.devices",
                   broken(function(m) m.spec.template.spec.domain = {} end))
    local function bad_request(edit)
      local r = cjson.decode(cjson.encode(kv.requests[3]))
      edit(r)
      local ok, msg = KV.check_request(cjson.encode(r))
      assert.is_nil(ok)
      return msg
    end
    assert.matches("addvolumes is not a path of the KubeVirt v1 API",
                   bad_request(function(r) r.path = r.path:gsub("addvolume", "addvolumes") end))
    assert.matches("AddVolumeOptions%.volumeSource: must be object",
                   bad_request(function(r) r.body.volumeSource = "pvc" end))
    assert.matches("AddVolumeOptions%.name: is required", bad_request(function(r) r.body.name = nil end))
    assert.matches("POST is not an operation of", bad_request(function(r) r.method = "POST" end))
    assert.matches("query parameter \"bogus\" is not one the operation takes",
                   bad_request(function(r) r.path = r.path .. "?bogus=1" end))
  end)

  it("leaves the plan backend's report as it was", function()
    local out, err, code = orrery_cmd("plan", T.recipe("quickstart.lua"))
    assert.equal(0, code, err)
    local v = cjson.decode(out).vms[1]
    assert.is_nil(v.kubevirt)
    assert.is_table(v.plan_log)
    assert.equal("argv", v.plan_log[1].kind)
  end)

  it("says what is wrong with its options", function()
    local _, err, code = orrery_cmd("plan", "--backend", "xen", "r.lua")
    assert.equal(2, code)
    assert.matches("%-%-backend must be plan or kubevirt, got \"xen\"", err)
    _, err, code = orrery_cmd("plan", "--source", "nokey", "--backend", "kubevirt", "r.lua")
    assert.equal(2, code)
    assert.matches("%-%-source needs STRING=SOURCE", err)
    _, err, code = orrery_cmd("plan", "--namespace", "x", "r.lua")
    assert.equal(2, code)
    assert.matches("%-%-namespace and %-%-source are for %-%-backend kubevirt", err)
  end)
end)

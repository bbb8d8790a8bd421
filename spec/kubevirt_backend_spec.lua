-- The kubevirt backend live: orrery.create(id, b, { backend = "kubevirt" })
-- against a Kubernetes API server. No cluster runs here, so the spec starts
-- engine/tests/kubevirt-server.py on loopback: real TLS with a CA made for
-- the run, bearer-token and client-certificate auth, every request checked
-- against KubeVirt's v1 schema (a violation is a 422 and is counted),
-- objects stored with resourceVersions, subresources, VMI watches, and
-- faults on demand (any status, slow answers, dropped watches, a VM changed
-- behind the client's back). The server is stopped in teardown.
--
-- With ORRERY_KUBECONFIG set, the quickstart's life runs against that
-- cluster instead (its namespace; a hot-pluggable PVC quickstart-data and
-- a container image holding the default guest's kernel, see
-- docs/kubevirt.md), and the injected faults are skipped.
local cjson = require("cjson")
local orrery = require("orrery")
local T = require("orrery.testing")
local q = T.q

local SERVER = "engine/tests/kubevirt-server.py"
local SCHEMA = "engine/src/backends/kubevirt/kubevirt-v1-schema.json"
local TOKEN = "orrery-spec-token"
local CLUSTER = os.getenv("ORRERY_KUBECONFIG")
local HAVE_SERVER = T.read(SERVER) ~= nil and T.run("command -v python3 openssl curl >/dev/null")
local IMAGE = os.getenv("ORRERY_KUBEVIRT_GUEST_IMAGE") or "localhost/orrery-guest:0.1.0"

local dir, port, pid

-- The test server's control and API, out of band (the curl command).
local function https(method, path, body)
  local out = T.sh("curl -sS --cacert " .. q(dir .. "/ca.pem") .. " -X " .. method
                   .. " -H " .. q("Authorization: Bearer " .. TOKEN)
                   .. " -H 'Content-Type: application/json'"
                   .. (body and (" --data-binary " .. q(cjson.encode(body))) or "")
                   .. " " .. q("https://127.0.0.1:" .. port .. path))
  return cjson.decode(out ~= "" and out or "null")
end

local function control(req)
  return https("POST", "/orrery-test/control", req or {})
end

local function kubeconfig(name, user)
  return T.spit(dir .. "/" .. name .. ".kubeconfig", ([[
apiVersion: v1
kind: Config
current-context: test
clusters:
- name: loop
  cluster:
    server: https://127.0.0.1:%d
    certificate-authority: ca.pem
contexts:
- name: test
  context: {cluster: loop, user: me, namespace: orrery-test}
users:
- name: me
  user:
%s]]):format(port, user))
end

local function quickstart_builder()
  local b = orrery.builder{ owner = "quickstart" }
  b:set_memory{ SizeInMB = 256 }
  b:set_processor{ Count = 1 }
  b:set_linux_kernel_direct_boot(orrery.default_guest())
  b:add_scsi_controller(0)
  return b
end

local function sources(extra)
  local g = orrery.default_guest()
  local s = {
    [g.KernelFilePath] = "containerdisk:" .. IMAGE .. "#/boot/vmlinuz",
    [g.InitRdPath] = "containerdisk:" .. IMAGE .. "#/boot/initrd.img",
    ["/data/quickstart.img"] = "pvc:quickstart-data",
  }
  for k, v in pairs(extra or {}) do s[k] = v end
  return s
end

local function vm_path(name)
  return "/apis/kubevirt.io/v1/namespaces/orrery-test/virtualmachines/" .. name
end

describe("the kubevirt backend", function()
  local token_config, cert_config

  setup(function()
    if CLUSTER or not HAVE_SERVER then return end
    dir = T.tmpdir()
    assert(T.run("bash engine/tests/kubevirt-pki.sh " .. q(dir)))
    pid = assert(tonumber(T.sh("python3 " .. SERVER .. " --schema " .. SCHEMA
      .. " --cert " .. q(dir .. "/server.pem") .. " --key " .. q(dir .. "/server.key")
      .. " --client-ca " .. q(dir .. "/ca.pem") .. " --token " .. TOKEN
      .. " --port-file " .. q(dir .. "/port") .. " >" .. q(dir .. "/server.log")
      .. " 2>&1 & echo $!")))
    assert(T.eventually(function() return T.read(dir .. "/port") ~= nil end, 20000),
           "the test server did not start: " .. (T.read(dir .. "/server.log") or ""))
    port = tonumber(T.read(dir .. "/port"))
    token_config = kubeconfig("token", "    token: " .. TOKEN .. "\n")
    cert_config = kubeconfig("cert", "    client-certificate: client.pem\n"
                                     .. "    client-key: client.key\n")
  end)

  teardown(function()
    if pid then
      T.run("kill " .. pid)
      assert(T.eventually(function() return not T.alive(pid) end, 10000))
    end
    if dir then T.run("rm -rf " .. q(dir)) end
  end)

  -- The quickstart's life; returns the events seen.
  local function quickstart(config)
    local seen = {}
    local data = { Type = "VirtualDisk", Path = "/data/quickstart.img" }
    local vm <close> = assert(orrery.create("quickstart", quickstart_builder(),
      { backend = "kubevirt", kubeconfig = config, sources = sources() }))
    vm:on("state", function(ev) seen[#seen + 1] = ev.State end)
    vm:on("exit", function(ev) seen[#seen + 1] = "exit: " .. ev.Reason end)
    assert.equal("Created", vm:state())
    assert.equal("kubevirt", vm:properties().Backend)
    if not CLUSTER then
      local obj = https("GET", vm_path("quickstart"))
      assert.equal("VirtualMachine", obj.kind)
      assert.equal("Manual", obj.spec.runStrategy)
      assert.equal("/boot/vmlinuz", obj.spec.template.spec.domain.firmware.kernelBoot.container.kernelPath)
    end
    assert(vm:start())
    assert.equal("Running", vm:state())
    assert(vm:add_scsi_disk(0, 3, data))
    assert.same(data, vm:document().VirtualMachine.Devices.Scsi[orrery.scsi_controller_guids[0]]
                        .Attachments["3"])
    if not CLUSTER then
      local vols = https("GET", vm_path("quickstart")).spec.template.spec.volumes
      assert.same({ { name = "scsi-0-3", persistentVolumeClaim = { claimName = "quickstart-data",
                                                                    hotpluggable = true } } }, vols)
    end
    assert(vm:remove_scsi_disk(0, 3))
    assert.is_nil((vm:document().VirtualMachine.Devices.Scsi[orrery.scsi_controller_guids[0]]
                    .Attachments or {})["3"])
    assert(vm:pause())
    assert.equal("Paused", vm:state())
    assert(vm:resume())
    assert.equal("Running", vm:state())
    local info = assert(vm:shutdown{ timeout_ms = 20000 })
    assert.matches("VirtualMachineInstance", info.Reason)
    assert.equal("Stopped", vm:state())
    vm:close()
    if not CLUSTER then -- closing the last handle deletes it
      assert.is_true(T.eventually(function()
        return https("GET", vm_path("quickstart")).reason == "NotFound"
      end, 10000))
    end
    return seen
  end

  it("runs the quickstart's life with a bearer token", function()
    if not CLUSTER and not HAVE_SERVER then return pending("needs the source tree, python3, openssl and curl") end
    local seen = quickstart(CLUSTER or token_config)
    assert.same({ "Running", "Paused", "Running", "Stopped",
                  "exit: the VirtualMachineInstance stopped" }, seen)
    if not CLUSTER then
      assert.same({}, control().violations)
    end
  end)

  it("runs it with a client certificate, and refuses a wrong token", function()
    if CLUSTER or not HAVE_SERVER then return pending("against the test server only") end
    quickstart(cert_config)
    local bad = kubeconfig("bad", "    token: not-the-token\n")
    local vm, msg, code = orrery.create("refused", quickstart_builder(),
      { backend = "kubevirt", kubeconfig = bad, sources = sources() })
    assert.is_nil(vm)
    assert.equal("EPERM", code)
    assert.matches("Unauthorized", msg)
    assert.same({}, control().violations)
  end)

  describe("against injected faults", function()
    if CLUSTER then return end
    local vm
    before_each(function()
      if not HAVE_SERVER then return end
      control{ clear_faults = true }
      vm = assert(orrery.create("faults", quickstart_builder(),
        { backend = "kubevirt", kubeconfig = token_config, sources = sources() }))
      assert(vm:start())
    end)
    after_each(function()
      if vm then vm:close() end
      vm = nil
      if HAVE_SERVER then
        control{ clear_faults = true }
        assert.same({}, control().violations)
      end
    end)

    it("retries a 500 and succeeds", function()
      control{ fault = { path = "/addvolume$", status = 500, count = 2 } }
      local before = control().requests
      assert(vm:add_scsi_disk(0, 1, { Type = "VirtualDisk", Path = "/data/quickstart.img" }))
      assert.equal(before + 3, control().requests) -- two 500s and the success
      assert.is_table(vm:document().VirtualMachine.Devices.Scsi[orrery.scsi_controller_guids[0]]
                        .Attachments["1"])
    end)

    it("fails a 422 as EINVAL and leaves the document as it was", function()
      control{ fault = { path = "/addvolume$", status = 422, count = 1 } }
      local ok, msg, code = vm:add_scsi_disk(0, 1, { Type = "VirtualDisk", Path = "/data/quickstart.img" })
      assert.is_nil(ok)
      assert.equal("EINVAL", code)
      assert.matches("injected by the test", msg)
      assert.is_nil((vm:document().VirtualMachine.Devices.Scsi[orrery.scsi_controller_guids[0]]
                      .Attachments or {})["1"])
      -- The resource is free again: the same add goes through.
      assert(vm:add_scsi_disk(0, 1, { Type = "VirtualDisk", Path = "/data/quickstart.img" }))
    end)

    it("resolves a 409 by reading the VM again and planning again", function()
      local before = https("GET", vm_path("faults")).metadata.resourceVersion
      control{ touch = "faults", namespace = "orrery-test" } -- changed behind our back
      assert(vm:update_memory(512))
      local obj = https("GET", vm_path("faults"))
      assert.equal("512Mi", obj.spec.template.spec.domain.memory.guest)
      assert.equal("1", obj.metadata.annotations["orrery.io/touched"]) -- the other change kept
      assert.not_equal(before, obj.metadata.resourceVersion)
      assert.equal(512, vm:document().VirtualMachine.ComputeTopology.Memory.SizeInMB)
    end)

    it("fails a refused patch and leaves the VM and the document as they were", function()
      control{ fault = { method = "PATCH", status = 422, count = 1 } }
      local ok, _, code = vm:update_memory(1024)
      assert.is_nil(ok)
      assert.equal("EINVAL", code)
      assert.equal("256Mi", https("GET", vm_path("faults")).spec.template.spec.domain.memory.guest)
      assert.equal(256, vm:document().VirtualMachine.ComputeTopology.Memory.SizeInMB)
    end)

    it("waits out a slow answer within the deadline, and settles one past it", function()
      control{ fault = { path = "/pause$", delay_ms = 400, count = 1 } }
      assert(vm:pause{ timeout_ms = 5000 })
      assert.equal("Paused", vm:state())
      control{ fault = { path = "/unpause$", delay_ms = 1500, count = 1 } }
      local ok, _, code = vm:resume{ timeout_ms = 200 }
      assert.is_nil(ok)
      assert.equal("ETIMEDOUT", code)
      -- The cluster did it after all: the state follows.
      assert.is_true(T.eventually(function() return vm:state() == "Running" end, 10000))
    end)

    it("commits a change the cluster completed after its deadline", function()
      local settled
      vm:on("settled", function(ev) settled = ev end)
      control{ fault = { path = "/addvolume$", delay_ms = 1500, count = 1 } }
      local data = { Type = "VirtualDisk", Path = "/data/quickstart.img" }
      local ok, _, code = vm:add_scsi_disk(0, 2, data, { timeout_ms = 200 })
      assert.is_nil(ok)
      assert.equal("ETIMEDOUT", code)
      assert.is_true(T.eventually(function() return settled ~= nil end, 10000))
      assert.equal("committed", settled.Outcome)
      assert.same(data, vm:document().VirtualMachine.Devices.Scsi[orrery.scsi_controller_guids[0]]
                          .Attachments["2"])
      assert.equal("scsi-0-2", https("GET", vm_path("faults")).spec.template.spec.volumes[1].name)
    end)

    it("follows the VMI through a dropped watch", function()
      local watches = control().watches
      control{ drop_watches = true }
      assert.is_true(T.eventually(function() return control().watches > watches end, 10000))
      -- Stopped from outside the engine: the event comes through the new watch.
      https("PUT", "/apis/subresources.kubevirt.io/v1/namespaces/orrery-test/virtualmachines/faults/stop",
            { gracePeriod = 0 })
      local info = assert(vm:wait{ timeout_ms = 10000 })
      assert.matches("VirtualMachineInstance", info.Reason)
      assert.equal("Stopped", vm:state())
    end)

    it("follows what is done to the VM outside the engine", function()
      local sub = "/apis/subresources.kubevirt.io/v1/namespaces/orrery-test/"
      local ctrl0 = orrery.scsi_controller_guids[0]
      local function att(lun)
        return (vm:document().VirtualMachine.Devices.Scsi[ctrl0].Attachments or {})[lun]
      end
      -- A volume hot-plugged by someone else, under the backend's naming
      -- and a source the document knows: the live document gains it.
      https("PUT", sub .. "virtualmachines/faults/addvolume", {
        name = "scsi-0-5", disk = { name = "scsi-0-5", disk = { bus = "scsi" } },
        volumeSource = { persistentVolumeClaim = { claimName = "quickstart-data",
                                                   hotpluggable = true } } })
      assert.is_true(T.eventually(function() return att("5") ~= nil end, 10000))
      assert.same({ Type = "VirtualDisk", Path = "/data/quickstart.img" }, att("5"))
      https("PUT", sub .. "virtualmachines/faults/removevolume", { name = "scsi-0-5" })
      assert.is_true(T.eventually(function() return att("5") == nil end, 10000))
      -- Paused and unpaused from outside: the state follows.
      https("PUT", sub .. "virtualmachineinstances/faults/pause", {})
      assert.is_true(T.eventually(function() return vm:state() == "Paused" end, 10000))
      https("PUT", sub .. "virtualmachineinstances/faults/unpause", {})
      assert.is_true(T.eventually(function() return vm:state() == "Running" end, 10000))
    end)

    it("plugs and unplugs a NIC on a multus network", function()
      local nic = "2b4a8c1e-3d5f-4a6b-8c7d-9e0f1a2b3c4d"
      assert(vm:add_nic(nic, { EndpointId = "multus:net1", MacAddress = "00-15-5D-52-C0-0B" }))
      local spec = https("GET", vm_path("faults")).spec.template.spec
      assert.equal("nic-" .. nic, spec.domain.devices.interfaces[1].name)
      assert.same({ networkName = "net1" }, spec.networks[1].multus)
      assert(vm:remove_nic(nic))
      spec = https("GET", vm_path("faults")).spec.template.spec
      assert.equal("absent", spec.domain.devices.interfaces[1].state)
      assert.is_nil((vm:document().VirtualMachine.Devices.NetworkAdapters or {})[nic])
    end)
  end)
end)

-- Hostile input against a real qemu-system-x86_64 (TCG, no guest OS):
-- strings built to inject QEMU options must reach QEMU as literals (checked
-- in QEMU's own answers) or be refused before QEMU sees them; a runtime
-- directory someone else could redirect is refused, and the files in a
-- good one are 0600 in a 0700 directory. The recipe sandbox has its own
-- spec (spec/sandbox_spec.lua).
local orrery = require("orrery")

local C0 = "df6d0690-79e5-55b6-a5ec-c1e2f77f580a"

local T = require("orrery.testing")
local sh, q, run, builder, block_by_qdev, pci_ids = T.sh, T.q, T.run, T.builder, T.block_by_qdev, T.pci_ids

local function exists(path)
  return run("test -e " .. q(path) .. " || test -L " .. q(path))
end

local function mode(path)
  return (sh("stat -c %a " .. q(path)):gsub("%s+$", ""))
end

local ROOT = T.tmpdir()

local function create(id, b, opts) return T.create(id, b, opts, ROOT .. "/run-" .. id) end

teardown(function()
  run("rm -rf " .. q(ROOT))
end)

describe("hostile input: QEMU option injection", function()
  it("a disk Path holding ',' and 'driver=' is one literal file, at boot and hot-added", function()
    local dir = ROOT .. "/x,driver=host_device,filename=/dev"
    assert(run("mkdir -p " .. q(dir)))
    local boot, hot = dir .. "/sda", dir .. "/sdb"
    assert(run("truncate -s 8M " .. q(boot) .. " " .. q(hot)))
    local b = builder("inject-disk")
    b:add_scsi_disk(0, 0, { Type = "VirtualDisk", Path = boot })
    local vm <close> = assert(create("inject-disk", b))
    assert(vm:start())
    assert(vm:add_scsi_disk(0, 1, { Type = "VirtualDisk", Path = hot }))
    -- QEMU opened exactly those files, with the "file" driver: the text
    -- after the comma never became an option of its own.
    assert.equal(boot, block_by_qdev(vm, "disk-0-0").inserted.image.filename)
    assert.equal(hot, block_by_qdev(vm, "disk-0-1").inserted.image.filename)
    local nodes = {}
    for _, n in ipairs(assert(vm:qmp("query-named-block-nodes"))) do
      nodes[n["node-name"]] = n
      assert.not_equal("host_device", n.drv)
    end
    assert.same({ "file", boot }, { nodes["file-0-0"].drv, nodes["file-0-0"].file })
    assert.same({ "file", hot }, { nodes["file-0-1"].drv, nodes["file-0-1"].file })
  end)

  it("a Plan9 share Name and Path with '=' and ',' and a COM socket path with ',server=off' stay literal", function()
    -- Only the literal directory exists: QEMU's 9p backend opens its root at
    -- start, so a Path cut at the comma would fail the create.
    local share = ROOT .. "/share,security_model=passthrough"
    assert(run("mkdir -p " .. q(share)))
    local com = ROOT .. "/c,server=off,x.sock"
    local b = builder("inject-share")
    b:add_plan9_share{ Name = "a=b,c", AccessName = "tag=x,y", Path = share, Port = 564 }
    b:set_serial_console(0, com)
    local vm <close> = assert(create("inject-share", b))
    local qtree = assert(vm:qmp("human-monitor-command", { ["command-line"] = "info qtree" }))
    assert.truthy(qtree:find('mount_tag = "tag=x,y"', 1, true))
    assert.is_true(run("test -S " .. q(com)))
    assert.is_false(exists(ROOT .. "/c"))
    assert.is_false(exists(ROOT .. "/share"))
  end)

  it("junk in GUIDs, MACs, device paths and endpoints is refused before QEMU sees it", function()
    local nic = "2b8d8f0e-8f3c-4c55-a3b1-6f2b1c0d9e7a"
    -- The builder refuses them outright.
    local function refuses(f) assert.has_error(f) end
    refuses(function() builder("j"):add_network_adapter(nic .. ",bus=pcie.0", { EndpointId = "user" }) end)
    refuses(function() builder("j"):add_network_adapter(nic, { EndpointId = "user", MacAddress = "00-15-5D-52-C0-0A,id=x" }) end)
    -- A DeviceInstancePath is free text in HCS, so the builder keeps it and
    -- the qemu backend refuses it at create, before any QEMU starts.
    for _, path in ipairs{ "qemu:virtio-rng-pci,id=x", "0000:03:00.0,romfile=/etc/shadow" } do
      local bv = builder("junk-vpci")
      bv:add_vpci_device(nic, { Functions = { { DeviceInstancePath = path } } })
      local vm, err, code = create("junk-vpci", bv)
      assert.is_nil(vm)
      assert.equal("EINVAL", code)
      assert.truthy(err:find("DeviceInstancePath", 1, true))
    end
    -- An endpoint QEMU would parse as options: create refuses it.
    local b = builder("junk-endpoint")
    b:add_network_adapter(nic, { EndpointId = "user,hostfwd=tcp::2222-:22", MacAddress = "00-15-5D-52-C0-0A" })
    local vm, err, code = create("junk-endpoint", b)
    assert.is_nil(vm)
    assert.equal("ENOTSUP", code)
    assert.truthy(err:find("EndpointId", 1, true))
    -- At run time: refused, QEMU's PCI tree and the document unchanged.
    local live <close> = assert(create("junk-live", builder("junk-live")))
    assert(live:start())
    local pci, doc = pci_ids(live), live:document()
    local cases = {
      { live.add_nic, nic .. ",bus=pcie.0", { EndpointId = "user", MacAddress = "00-15-5D-52-C0-0B" }, "EINVAL" },
      { live.add_nic, nic, { EndpointId = "user", MacAddress = "00-15-5D-52-C0-0B,id=x" }, "EINVAL" },
      { live.add_nic, nic, { EndpointId = "tap:x,script=/bin/sh", MacAddress = "00-15-5D-52-C0-0B" }, nil },
      { live.add_vpci_device, nic, { Functions = { { DeviceInstancePath = "qemu:virtio-rng-pci,id=x" } } }, "EINVAL" },
    }
    for _, c in ipairs(cases) do
      local ok, msg, ecode = c[1](live, c[2], c[3])
      assert.is_nil(ok, msg)
      if c[4] then assert.equal(c[4], ecode) end
    end
    assert.same(doc, live:document())
    assert.equal(pci, pci_ids(live))
    -- A ResourcePath that tries to walk elsewhere.
    local ok, _, ecode = live:modify{ ResourcePath = "VirtualMachine/Devices/Scsi/" .. C0 .. "/Attachments/../../x",
      RequestType = "Add", Settings = { Type = "VirtualDisk", Path = ROOT .. "/none.img" } }
    assert.is_nil(ok)
    assert.truthy(ecode)
    assert.same(doc, live:document())
  end)

  it("a VM id cannot leave the runtime root", function()
    for _, id in ipairs{ "../../etc", "a/b", ".hidden", "x y", "" } do
      local ok, vm, _, code = pcall(orrery.create, id, builder("id"), { accel = "tcg" })
      assert.truthy(not ok or (vm == nil and code == "EINVAL"), id)
    end
  end)
end)

describe("hostile input: the runtime directory", function()
  it("holds qmp.sock, qga.sock and qemu.pid at 0600 in a 0700 directory", function()
    local dir = ROOT .. "/run-modes"
    local vm <close> = assert(create("modes", builder("modes"), { guest_agent = true, runtime_dir = dir }))
    assert.equal("700", mode(dir))
    for _, f in ipairs{ "qmp.sock", "qga.sock", "qemu.pid" } do
      assert.is_true(exists(dir .. "/" .. f), f)
      assert.equal("600", mode(dir .. "/" .. f), f)
    end
  end)

  it("refuses a runtime directory that is a symlink, and leaves its target alone", function()
    local target = ROOT .. "/victim"
    assert(run("mkdir -p " .. q(target) .. " && chmod 755 " .. q(target)))
    assert(run("ln -s " .. q(target) .. " " .. q(ROOT .. "/run-link")))
    local vm, err, code = create("link", builder("link"), { runtime_dir = ROOT .. "/run-link" })
    assert.is_nil(vm)
    assert.equal("EPERM", code)
    assert.truthy(err:find("symlink", 1, true))
    assert.equal("755", mode(target))
    assert.equal("", sh("ls -A " .. q(target)))
  end)

  it("refuses an ancestor another user could redirect: a foreign symlink or a shared writable directory", function()
    local elsewhere = ROOT .. "/elsewhere"
    assert(run("mkdir -p " .. q(elsewhere)))
    assert(run("ln -s " .. q(elsewhere) .. " " .. q(ROOT .. "/foreign") ..
      " && chown -h nobody " .. q(ROOT .. "/foreign")))
    local vm, err, code = create("foreign", builder("foreign"), { runtime_dir = ROOT .. "/foreign/vm" })
    assert.is_nil(vm)
    assert.equal("EPERM", code)
    assert.truthy(err:find("owned by uid", 1, true))
    assert.is_false(exists(elsewhere .. "/vm"))

    assert(run("mkdir -p " .. q(ROOT .. "/shared") .. " && chmod 777 " .. q(ROOT .. "/shared")))
    vm, err, code = create("shared", builder("shared"), { runtime_dir = ROOT .. "/shared/vm" })
    assert.is_nil(vm)
    assert.equal("EPERM", code)
    assert.truthy(err:find("writable by others", 1, true))
    -- With the sticky bit (as /tmp has) nobody can replace our entry: fine.
    assert(run("chmod 1777 " .. q(ROOT .. "/shared")))
    local ok <close> = assert(create("sticky", builder("sticky"), { runtime_dir = ROOT .. "/shared/vm" }))
  end)
end)

-- Hostile input against a real qemu-system-x86_64 (TCG, no guest OS):
-- strings built to inject QEMU options must reach QEMU as literals (checked
-- in QEMU's own answers) or be refused before QEMU sees them; a runtime
-- directory someone else could redirect is refused, and the files in a
-- good one are 0600 in a 0700 directory; a sandboxed recipe cannot run host
-- programs, load native code or write outside the directories it is given.
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

describe("hostile input: the recipe sandbox", function()
  local ALLOWED = ROOT .. "/allowed"
  local OUTSIDE = ROOT .. "/outside"
  assert(run("mkdir -p " .. q(ALLOWED) .. " " .. q(OUTSIDE)))

  -- Runs a recipe in a fresh lua5.4 with the sandbox applied (allowing
  -- ALLOWED only); returns ok, everything it printed.
  local function sandboxed(recipe)
    local file = ROOT .. "/recipe.lua"
    local f = assert(io.open(file, "w"))
    f:write(recipe)
    f:close()
    local setup = string.format(
      "package.cpath=%q; package.path=%q; require('orrery.sandbox'){ allow_write = { %q } }",
      package.cpath, package.path, ALLOWED)
    local out = sh("ORRERY_RUNTIME_DIR=" .. q(ALLOWED .. "/run") .. " lua5.4 -e " .. q(setup) .. " " .. q(file) ..
      " 2>&1; echo \"exit=$?\"")
    return out:match("exit=0%s*$") ~= nil, out
  end

  local function refused(recipe, needle, marker)
    local ok, out = sandboxed(recipe)
    assert.is_false(ok, out)
    assert.truthy(out:find(needle, 1, true), out)
    if marker then assert.is_false(exists(marker), marker) end
  end

  it("blocks os.execute", function()
    refused(string.format("os.execute('touch %s/x')", OUTSIDE), "os.execute is not allowed", OUTSIDE .. "/x")
  end)

  it("blocks io.popen", function()
    refused(string.format("io.popen('touch %s/y'):close()", OUTSIDE), "io.popen is not allowed", OUTSIDE .. "/y")
  end)

  it("blocks package.loadlib and native modules through require", function()
    refused("assert(package.loadlib('libc.so.6', '*'))", "package.loadlib is not allowed")
    refused("package.cpath = '/usr/lib/x86_64-linux-gnu/lua/5.4/?.so'; require('cjson')", "module 'cjson' not found")
  end)

  it("blocks binary chunks and the debug library that would reach the originals", function()
    refused("assert(load(string.dump(function() end)))", "attempt to load a binary chunk")
    refused("local _, open = debug.getupvalue(io.open, 1)", "getupvalue")
  end)

  it("allows writes inside the given directories and refuses them outside, through symlinks too", function()
    local ok, out = sandboxed(string.format(
      "local f = assert(io.open(%q, 'w')); f:write('in'); f:close(); assert(os.remove(%q))",
      ALLOWED .. "/a.txt", ALLOWED .. "/a.txt"))
    assert.is_true(ok, out)
    refused(string.format("assert(io.open(%q, 'w'))", OUTSIDE .. "/b.txt"), "outside the directories", OUTSIDE .. "/b.txt")
    refused(string.format("assert(io.open(%q, 'a'))", ALLOWED .. "/../outside/c.txt"), "outside the directories",
      OUTSIDE .. "/c.txt")
    assert(run("ln -sfn " .. q(OUTSIDE) .. " " .. q(ALLOWED .. "/escape")))
    refused(string.format("assert(io.open(%q, 'w'))", ALLOWED .. "/escape/d.txt"), "resolves to", OUTSIDE .. "/d.txt")
    assert(run("ln -sfn " .. q(OUTSIDE .. "/e.txt") .. " " .. q(ALLOWED .. "/dangling")))
    refused(string.format("assert(io.open(%q, 'w'))", ALLOWED .. "/dangling"), "dangling symlink", OUTSIDE .. "/e.txt")
    assert(run("touch " .. q(OUTSIDE .. "/keep")))
    refused(string.format("assert(os.remove(%q))", OUTSIDE .. "/keep"), "outside the directories")
    assert.is_true(exists(OUTSIDE .. "/keep"))
    refused(string.format("assert(os.rename(%q, %q))", OUTSIDE .. "/keep", ALLOWED .. "/stolen"), "outside the directories")
    refused("io.output(" .. string.format("%q", OUTSIDE .. "/f.txt") .. ")", "outside the directories", OUTSIDE .. "/f.txt")
    refused("os.tmpname()", "os.tmpname")
  end)

  it("is what `orrery run --sandbox --allow-write=DIR` applies, -e chunks included", function()
    -- The executable of the build this module comes from.
    local exe = orrery.build_dir .. "/orrery"
    local file = ROOT .. "/cli-recipe.lua"
    local function cli(opts, recipe)
      local f = assert(io.open(file, "w"))
      f:write(recipe)
      f:close()
      local out = sh("ORRERY_RUNTIME_DIR=" .. q(ALLOWED .. "/run") .. " " .. q(exe) .. " run " .. opts .. " " ..
        q(file) .. " 2>&1; echo \"exit=$?\"")
      return tonumber(out:match("exit=(%d+)%s*$")), out
    end
    local code, out = cli("--sandbox --allow-write=" .. q(ALLOWED),
      string.format("os.execute('touch %s/cli')", OUTSIDE))
    assert.equal(1, code, out)
    assert.truthy(out:find("os.execute is not allowed", 1, true), out)
    assert.is_false(exists(OUTSIDE .. "/cli"))
    code, out = cli("--allow-write " .. q(ALLOWED), string.format(
      "local f = assert(io.open(%q, 'w')); f:write('x'); f:close(); assert(not pcall(io.open, %q, 'w'))",
      ALLOWED .. "/cli.txt", OUTSIDE .. "/cli.txt"))
    assert.equal(0, code, out)
    assert.is_true(exists(ALLOWED .. "/cli.txt"))
    assert.is_false(exists(OUTSIDE .. "/cli.txt"))
    code, out = cli("--sandbox -e " .. q("io.popen('true')"), "print('never')")
    assert.equal(1, code, out)
    assert.truthy(out:find("io.popen is not allowed", 1, true), out)
  end)

  it("refuses what would make the engine or QEMU write or run things outside", function()
    local prelude = [[
      local orrery = require("orrery")
      local function b(disk)
        local b = orrery.builder{ owner = "sb" }
        b:set_memory{ SizeInMB = 64 }; b:set_processor{ Count = 1 }; b:add_scsi_controller(0)
        if disk then b:add_scsi_disk(0, 0, disk) end
        return b
      end
    ]]
    assert(run("truncate -s 8M " .. q(OUTSIDE .. "/disk.img") .. " " .. q(ALLOWED .. "/disk.img")))
    refused(prelude .. "orrery.create('sb', b(), { accel = 'tcg', qemu_binary = '/bin/sh' })", "qemu_binary is not allowed")
    refused(prelude .. string.format("orrery.create('sb', b{ Type = 'VirtualDisk', Path = %q }, { accel = 'tcg' })",
      OUTSIDE .. "/disk.img"), "a writable SCSI disk")
    refused(prelude .. string.format("orrery.create('sb', b(), { accel = 'tcg', runtime_dir = %q })",
      OUTSIDE .. "/run"), "runtime_dir", OUTSIDE .. "/run")
    -- A VM inside the rules runs; what it is asked to do outside is refused.
    local ok, out = sandboxed(prelude .. string.format([[
      local vm <close> = assert(orrery.create('sb', b{ Type = 'VirtualDisk', Path = %q, ReadOnly = true }, { accel = 'tcg' }))
      assert(vm:start())
      assert(vm:qmp('query-status'))
      assert(vm:add_scsi_disk(0, 1, { Type = 'VirtualDisk', Path = %q }))
      local function no(f, needle)
        local ok, err = pcall(f)
        assert(not ok and err:find(needle, 1, true), tostring(err))
      end
      no(function() vm:add_scsi_disk(0, 2, { Type = 'VirtualDisk', Path = %q }) end, 'vm:add_scsi_disk')
      no(function() vm:qmp('human-monitor-command', { ['command-line'] = 'info status' }) end, 'only read-only')
      no(function() vm:qmp('screendump', { filename = %q }) end, 'only read-only')
      assert(vm:pause())
      no(function() vm:save{ SaveStateFilePath = %q } end, 'SaveStateFilePath')
      print('sandboxed VM ok')
    ]], OUTSIDE .. "/disk.img", ALLOWED .. "/disk.img", OUTSIDE .. "/disk.img", OUTSIDE .. "/shot.ppm",
      OUTSIDE .. "/vm.state"))
    assert.is_true(ok, out)
    assert.truthy(out:find("sandboxed VM ok", 1, true), out)
    assert.is_false(exists(OUTSIDE .. "/shot.ppm"))
    assert.is_false(exists(OUTSIDE .. "/vm.state"))
  end)
end)

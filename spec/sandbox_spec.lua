-- The recipe sandbox against a real qemu-system-x86_64 (TCG). Each case is
-- a recipe run by `orrery run --sandbox --allow-write=ALLOWED` (as a task:
-- its waiting calls yield) that tries to make the engine or QEMU write, lock
-- or run something outside ALLOWED; each must fail with EPERM naming the
-- rule, and the spec then checks from outside that nothing was written
-- there. The threat model these stand for is docs/threat-model.md.
local T = require("orrery.testing")
local sh, q, run, spit = T.sh, T.q, T.run, T.spit

local ROOT = T.tmpdir()
local ALLOWED, OUTSIDE = ROOT .. "/allowed", ROOT .. "/outside"
local EXE = T.build_dir() .. "/orrery"
assert(run("mkdir -p " .. q(ALLOWED) .. " " .. q(OUTSIDE)))

teardown(function()
  run("rm -rf " .. q(ROOT))
end)

local function exists(path)
  return run("test -e " .. q(path) .. " || test -L " .. q(path))
end

-- What every recipe starts with: a small VM's builder, and checks that end
-- the recipe with an error (so a non-zero exit) when something got through.
local PRELUDE = string.format([[
local orrery = require("orrery")
local ALLOWED, OUTSIDE = %q, %q
local C0 = orrery.scsi_controller_guids[0]
local function builder(extra)
  local b = orrery.builder{ owner = "sandbox" }
  b:set_memory{ SizeInMB = 64 }
  b:set_processor{ Count = 1 }
  b:add_scsi_controller(0)
  if extra then extra(b) end
  return b
end
local function refused(needle, ok, err, code)
  if ok or code ~= "EPERM" or not tostring(err):find(needle, 1, true) then
    error(string.format("expected EPERM naming %%q, got %%s, %%s, %%s", needle,
      tostring(ok), tostring(err), tostring(code)), 2)
  end
  print("refused: " .. err)
end
local function refused_vm(needle, vm, err, code)
  if vm then vm:close() end
  refused(needle, vm, err, code)
end
local function block(vm, qdev)
  for _, b in ipairs(assert(vm:qmp("query-block"))) do
    if b.qdev and b.qdev:find(qdev, 1, true) then return b end
  end
end
]], ALLOWED, OUTSIDE)

local nrecipe = 0
-- Runs body under `orrery run --sandbox --allow-write=ALLOWED` (args after
-- the recipe); returns the exit code and everything it printed.
local function sandboxed(body, args)
  nrecipe = nrecipe + 1
  local file = spit(ROOT .. "/recipe" .. nrecipe .. ".lua", PRELUDE .. body)
  local out = sh(q(EXE) .. " run --sandbox --allow-write=" .. q(ALLOWED) .. " " .. q(file) ..
    " " .. (args or "") .. " 2>&1; echo \"exit=$?\"")
  return tonumber(out:match("exit=(%d+)%s*$")), out
end

local function passes(body, args)
  local code, out = sandboxed(body, args)
  assert.equal(0, code, out)
  return out
end

local function outside_untouched(names)
  for _, n in ipairs(names) do
    assert.is_false(exists(OUTSIDE .. "/" .. n), OUTSIDE .. "/" .. n .. " was created")
  end
end

local function image(dir, name, size)
  local path = dir .. "/" .. name
  assert(run("truncate -s " .. (size or "8M") .. " " .. q(path)))
  return path
end

describe("sandbox: the engine judges the options and documents it converted", function()
  -- A program that would prove it ran.
  local EVIL = spit(OUTSIDE .. "/evil.sh", "#!/bin/sh\ntouch " .. OUTSIDE .. "/pwned\nexec sleep 1000\n")
  assert(run("chmod +x " .. q(EVIL)))

  it("never runs a qemu_binary, whichever read of the options a metatable answers", function()
    -- The issue's case answered on the second read; here every read is
    -- tried, and the always-answering table too.
    passes(string.format([[
      for _, when in ipairs({ 1, 2, 3, "always" }) do
        local reads = 0
        local opts = setmetatable({ accel = "tcg" }, { __index = function(_, k)
          if k ~= "qemu_binary" then return nil end
          reads = reads + 1
          if when == "always" or reads == when then return %q end
        end })
        local vm, err, code = orrery.create("binary" .. tostring(when), builder(), opts)
        if vm then
          -- Unanswered at the read that counts: the engine's own QEMU runs.
          local pid = vm:properties().ProcessId
          local exe = io.open("/proc/" .. pid .. "/cmdline"):read("a")
          assert(exe:find("qemu-system-x86_64", 1, true), exe)
          vm:close()
          print("default binary at read " .. tostring(when))
        else
          refused("opts.qemu_binary is not allowed", vm, err, code)
        end
      end
    ]], EVIL))
    outside_untouched({ "pwned" })
  end)

  it("refuses a runtime_dir outside, given plainly or through __index", function()
    local out = passes(string.format([[
      refused_vm("opts.runtime_dir", orrery.create("rd1", builder(), { accel = "tcg", runtime_dir = %q }))
      local opts = setmetatable({ accel = "tcg" }, { __index = { runtime_dir = %q } })
      refused_vm("opts.runtime_dir", orrery.create("rd2", builder(), opts))
    ]], OUTSIDE .. "/run1", OUTSIDE .. "/run2"))
    assert.truthy(out:find("is outside the directories this recipe may write", 1, true), out)
    outside_untouched({ "run1", "run2" })
  end)

  it("refuses a writable disk outside however the attachment table is dressed", function()
    local disk = image(OUTSIDE, "disk.img")
    local inside = image(ALLOWED, "inside.img")
    local before = sh("sha256sum " .. q(disk))
    passes(string.format([[
      local DISK, INSIDE = %q, %q
      -- At create: from a builder, a JSON text, a table and builder_from.
      local function with(att) return builder(function(b) b:add_scsi_disk(0, 0, att) end) end
      local att = { Type = "VirtualDisk", Path = DISK }
      refused_vm("Attachments.0.Path", orrery.create("c1", with(att), { accel = "tcg" }))
      refused_vm("Attachments.0.Path", orrery.create("c2", with(att):json(), { accel = "tcg" }))
      refused_vm("Attachments.0.Path", orrery.create("c3", with(att):document(), { accel = "tcg" }))
      refused_vm("Attachments.0.Path", orrery.create("c4", orrery.builder_from(with(att):json()), { accel = "tcg" }))

      local vm <close> = assert(orrery.create("disks", builder(), { accel = "tcg" }))
      assert(vm:start())
      -- The issue's case: ReadOnly answered by __index, which the
      -- conversion (lua_next) never sees: the disk is writable, so refused.
      refused("Attachments.1.Path", vm:add_scsi_disk(0, 1,
        setmetatable({ Type = "VirtualDisk", Path = DISK }, { __index = { ReadOnly = true } })))
      -- __pairs and __len do not hide a field either.
      local hidden = { Type = "VirtualDisk", Path = DISK }
      setmetatable(hidden, {
        __pairs = function() return next, { Type = "VirtualDisk", Path = DISK, ReadOnly = true } end,
        __len = function() return 0 end,
      })
      refused("Attachments.2.Path", vm:add_scsi_disk(0, 2, hidden))
      -- vm:modify, with the settings and the request dressed the same way.
      refused("Attachments.3.Path", vm:modify(setmetatable({
        ResourcePath = "VirtualMachine/Devices/Scsi/" .. C0 .. "/Attachments/3",
        RequestType = "Add",
        Settings = setmetatable({ Type = "VirtualDisk", Path = DISK }, { __index = { ReadOnly = true } }),
      }, { __index = { Settings = { Type = "VirtualDisk", Path = INSIDE } } })))
      for lun = 1, 3 do assert(block(vm, "disk-0-" .. lun) == nil, "LUN " .. lun .. " attached") end
      -- Read-only outside is a read: allowed, as a descriptor in an fdset,
      -- and QEMU gives the descriptor back when the disk goes.
      assert(vm:add_scsi_disk(0, 4, { Type = "VirtualDisk", Path = DISK, ReadOnly = true }))
      local b = block(vm, "disk-0-4")
      assert(b and b.inserted.ro == true, "LUN 4 is not read-only")
      assert(b.inserted.file:find("^/dev/fdset/"), b.inserted.file)
      assert(#assert(vm:qmp("query-fdsets")) == 1)
      assert(vm:remove_scsi_disk(0, 4))
      assert(#assert(vm:qmp("query-fdsets")) == 0)
      -- QEMU keeps a removed fdset open while the VM is paused: the engine
      -- removes it again once the VM runs.
      assert(vm:pause())
      assert(vm:add_scsi_disk(0, 5, { Type = "VirtualDisk", Path = DISK, ReadOnly = true }))
      assert(vm:remove_scsi_disk(0, 5))
      assert(vm:resume())
      local t0 = orrery.now()
      while #assert(vm:qmp("query-fdsets")) > 0 do
        assert(orrery.now() - t0 < 10000, "the fdset stayed")
        orrery.sleep(20)
      end
      print("disks ok")
    ]], disk, inside))
    assert.equal(before, sh("sha256sum " .. q(disk)))
  end)

  it("hands QEMU descriptors, not names, and runs it under Landlock", function()
    local disk = image(ALLOWED, "boot.img")
    passes(string.format([[
      local b = builder(function(b)
        b:add_scsi_disk(0, 0, { Type = "VirtualDisk", Path = %q })
        b:set_linux_kernel_direct_boot(orrery.default_guest())
        b:set_serial_console(0, ALLOWED .. "/console.sock")
      end)
      local vm <close> = assert(orrery.create("fds", b, { accel = "tcg" }))
      local c = vm:properties().Confinement
      assert(c.Seccomp and c.Descriptors and c.Landlock >= 1, "not confined")
      -- QEMU's command line names none of the recipe's files.
      local argv = io.open("/proc/" .. vm:properties().ProcessId .. "/cmdline"):read("a")
      for _, path in ipairs({ %q, orrery.default_guest().KernelFilePath, "console.sock" }) do
        assert(not argv:find(path, 1, true), path .. " is in QEMU's argv")
      end
      assert(argv:find("/dev/fdset/", 1, true) and argv:find("/proc/self/fd/", 1, true))
      assert(vm:start())
      print("descriptors ok")
    ]], disk, disk))
  end)

  it("uses what it converted when a task changes the table while the call waits", function()
    -- Told apart by their sizes, whatever name QEMU shows.
    local inside = image(ALLOWED, "race.img", "8M")
    local disk = image(OUTSIDE, "race.img", "16M")
    passes(string.format([[
      local vm <close> = assert(orrery.create("race", builder(), { accel = "tcg" }))
      assert(vm:start())
      local att = { Type = "VirtualDisk", Path = %q, ReadOnly = true }
      local t = orrery.spawn(function() return vm:add_scsi_disk(0, 1, att) end)
      -- Runs while the add waits on QEMU.
      local m = orrery.spawn(function() att.Path = %q; att.ReadOnly = nil end)
      assert(t:wait()); m:wait()
      local b = block(vm, "disk-0-1")
      assert(b.inserted.image["virtual-size"] == 8 * 1024 * 1024 and b.inserted.ro == true,
        b.inserted.file)
      print("race ok")
    ]], inside, disk))
  end)

  it("judges VPMem images, Plan9 shares and COM port sockets by where they resolve", function()
    local pmem = image(OUTSIDE, "pmem.img", "4M")
    assert(run("mkdir -p " .. q(OUTSIDE .. "/share") .. " " .. q(OUTSIDE .. "/sockets")))
    assert(run("ln -sfn " .. q(OUTSIDE .. "/sockets") .. " " .. q(ALLOWED .. "/sockets")))
    passes(string.format([[
      local PMEM, SHARE, SOCKS = %q, %q, %q
      local function pmem(ro)
        return builder(function(b)
          b:add_vpmem_controller(4, 8 * 1024 * 1024)
          b:add_vpmem_device(0, { HostPath = PMEM, ReadOnly = ro })
        end)
      end
      refused_vm("Devices.0.HostPath", orrery.create("pm1", pmem(false), { accel = "tcg" }))
      local ro <close> = assert(orrery.create("pm2", pmem(true), { accel = "tcg" }))
      local function share(ro)
        return builder(function(b)
          b:add_plan9_share{ Name = "s", AccessName = "s", Path = SHARE, Port = 564, ReadOnly = ro }
        end)
      end
      refused_vm("Shares.0.Path", orrery.create("p9a", share(false), { accel = "tcg" }))
      local p9 <close> = assert(orrery.create("p9b", share(true), { accel = "tcg" }))
      local function com(path) return builder(function(b) b:set_serial_console(0, path) end) end
      refused_vm("ComPorts.0.NamedPipe", orrery.create("com1", com(%q), { accel = "tcg" }))
      -- ALLOWED/sockets is a symlink to a directory outside.
      refused_vm("ComPorts.0.NamedPipe", orrery.create("com2", com(SOCKS .. "/com.sock"), { accel = "tcg" }))
      local ok <close> = assert(orrery.create("com3", com(ALLOWED .. "/com.sock"), { accel = "tcg" }))
      print("devices ok")
    ]], pmem, OUTSIDE .. "/share", ALLOWED .. "/sockets", OUTSIDE .. "/com.sock"))
    outside_untouched({ "com.sock", "sockets/com.sock" })
  end)

  it("reads a kernel anywhere, but only a regular file", function()
    assert(run("mkfifo " .. q(OUTSIDE .. "/fifo")))
    passes(string.format([[
      local b = builder(function(b) b:set_linux_kernel_direct_boot{ KernelFilePath = %q } end)
      refused_vm("not a regular file", orrery.create("fifo", b, { accel = "tcg" }))
    ]], OUTSIDE .. "/fifo"))
  end)

  it("attaches and creates no host device: VFIO, PassThru, tap", function()
    passes([[
      local NIC = "2b8d8f0e-8f3c-4c55-a3b1-6f2b1c0d9e7a"
      local VPCI = "6f5c3a1e-1b2d-4c3e-9f4a-0a1b2c3d4e5f"
      refused_vm("is a host device", orrery.create("tap", builder(function(b)
        b:add_network_adapter(NIC, { EndpointId = "tap:sbx0" }) end), { accel = "tcg" }))
      refused_vm("is a host device", orrery.create("pt", builder(function(b)
        b:add_scsi_disk(0, 0, { Type = "PassThru", Path = "/dev/null" }) end), { accel = "tcg" }))
      local vm <close> = assert(orrery.create("hostdev", builder(), { accel = "tcg" }))
      refused("is a host device", vm:add_nic(NIC, { EndpointId = "tap:sbx0" }))
      refused("is a host device", vm:add_vpci_device(VPCI,
        { Functions = { { DeviceInstancePath = "0000:00:1f.0" } } }))
      assert(vm:add_nic(NIC, { EndpointId = "user" }))
      print("host devices ok")
    ]])
    assert.is_false(run("ip link show sbx0 >/dev/null 2>&1"))
  end)

  it("lets raw QMP read and nothing else", function()
    passes(string.format([[
      local vm <close> = assert(orrery.create("qmp", builder(), { accel = "tcg" }))
      assert(vm:qmp("query-status"))
      assert(vm:qmp("qom-list", { path = "/machine" }))
      refused("only read-only commands", vm:qmp("human-monitor-command", { ["command-line"] = "info status" }))
      refused("only read-only commands", vm:qmp("screendump", { filename = %q }))
      refused("only read-only commands", vm:qmp("blockdev-add",
        { driver = "file", ["node-name"] = "x", filename = %q }))
      refused("only read-only commands", vm:qmp("migrate", { uri = "exec:touch " .. %q }))
    ]], OUTSIDE .. "/shot.ppm", OUTSIDE .. "/evil.sh", OUTSIDE .. "/pwned"))
    outside_untouched({ "shot.ppm", "pwned" })
  end)

  it("saves only inside, judged on where the path resolves", function()
    assert(run("ln -sfn " .. q(OUTSIDE) .. " " .. q(ALLOWED .. "/out-link")))
    assert(run("ln -sfn " .. q(OUTSIDE .. "/dangling.state") .. " " .. q(ALLOWED .. "/dangling.state")))
    passes(string.format([[
      local vm <close> = assert(orrery.create("save", builder(), { accel = "tcg" }))
      assert(vm:start())
      assert(vm:pause())
      refused("SaveStateFilePath", vm:save{ SaveStateFilePath = %q })
      -- Through __index the engine never sees a path at all.
      local ok, _, code = vm:save(setmetatable({}, { __index = { SaveStateFilePath = %q } }))
      assert(not ok and code == "EINVAL", tostring(code))
      refused("resolves to", vm:save{ SaveStateFilePath = %q })
      refused("dangling symlink", vm:save{ SaveStateFilePath = %q })
      assert(vm:save{ SaveStateFilePath = %q })
      assert(vm:save{ SaveStateFilePath = ALLOWED .. "/again.state" }) -- no resume between
      print("save ok")
    ]], OUTSIDE .. "/a.state", OUTSIDE .. "/b.state", ALLOWED .. "/out-link/c.state",
      ALLOWED .. "/dangling.state", ALLOWED .. "/vm.state"))
    outside_untouched({ "a.state", "b.state", "c.state", "dangling.state" })
    assert.is_true(tonumber(sh("stat -c %s " .. q(ALLOWED .. "/vm.state"))) > 0)
  end)

  it("re-attaches only to the engine's own VMs: a planted state.json kills nothing", function()
    -- The issue's case: a recipe writes a state.json naming any process.
    local victim = sh("sleep 300 >/dev/null 2>&1 & echo $!"):match("%d+")
    finally(function() run("kill " .. victim) end)
    assert(run("mkdir -p " .. q(ALLOWED .. "/fake")))
    passes(string.format([[
      local f = assert(io.open(ALLOWED .. "/fake/state.json", "w"))
      f:write('{"Id":"fake","RuntimeId":"x","Accel":"tcg","ProcessId":%s,"Document":{},"Layout":{}}')
      f:close()
      refused("runtime root", orrery.open("fake", { runtime_dir = ALLOWED .. "/fake" }))
      refused("runtime root", orrery.open("fake", setmetatable({}, { __index = { runtime_dir = ALLOWED .. "/fake" } })))
    ]], victim))
    assert.is_true(T.alive(victim))
  end)
end)

describe("sandbox: image chains, inspected before QEMU sees them", function()
  local CH = ALLOWED .. "/chains"
  assert(run("mkdir -p " .. q(CH)))
  local function img(args)
    assert(run("cd " .. q(CH) .. " && qemu-img create -q " .. args), args)
  end
  local function hash(path) return sh("sha256sum " .. q(path)):match("^%x+") end
  img("-f raw " .. q(OUTSIDE .. "/data.raw") .. " 16M")
  img("-f qcow2 -o data_file=" .. q(OUTSIDE .. "/data.raw") .. ",data_file_raw=on df.qcow2 16M")
  img("-f raw " .. q(OUTSIDE .. "/base.raw") .. " 16M")
  img("-f qcow2 -b " .. q(OUTSIDE .. "/base.raw") .. " -F raw outback.qcow2")
  img("-f raw base.raw 16M")
  img("-f qcow2 -u -b 'json:{\"driver\":\"file\",\"filename\":\"" .. OUTSIDE .. "/base.raw\"}' -F raw json.qcow2 16M")
  img("-f qcow2 -u -b json.qcow2 -F qcow2 two.qcow2 16M")
  img("-f qcow2 -u -b nbd:localhost:10809 -F raw nbd.qcow2 16M")
  img("-f qed -b base.raw -F raw q.qed")
  img("-f qcow2 -b q.qed -F qed onqed.qcow2")
  img("-f vmdk -o subformat=monolithicFlat flat.vmdk 16M")
  img("-f qed -b flat.vmdk -F vmdk onflat.qed")
  img("-f qcow2 -b onflat.qed -F qed onflat.qcow2")
  img("-f qcow2 -u -b c2.qcow2 -F qcow2 c1.qcow2 16M")
  img("-f qcow2 -u -b c1.qcow2 -F qcow2 c2.qcow2 16M")
  assert(run("mkfifo " .. q(OUTSIDE .. "/chain.fifo")))
  img("-f qcow2 -u -b " .. q(OUTSIDE .. "/chain.fifo") .. " -F raw fifo.qcow2 16M")

  it("refuses whatever a header names that QEMU would write, connect to or follow", function()
    local data = hash(OUTSIDE .. "/data.raw")
    passes(string.format([[
      local CH = %q
      local vm <close> = assert(orrery.create("chains", builder(), { accel = "tcg" }))
      assert(vm:start())
      local function add(lun, file, ro)
        return vm:add_scsi_disk(0, lun, { Type = "VirtualDisk", Path = CH .. "/" .. file, ReadOnly = ro })
      end
      -- The issue's case: a data file outside, which the guest would write.
      refused("its data file: " .. OUTSIDE .. "/data.raw is outside", add(1, "df.qcow2"))
      -- Read-only it is a read: allowed.
      assert(add(2, "df.qcow2", true))
      -- A protocol or a json: pseudo-file, one level down or two.
      refused("json: pseudo-file", add(3, "json.qcow2"))
      refused("backing file 2 names", add(4, "two.qcow2"))
      refused("protocol", add(5, "nbd.qcow2"))
      -- Extents QEMU would open by name, below a QED below a qcow2.
      local ok, err, code = add(6, "onflat.qcow2")
      assert(not ok and code == "ENOTSUP" and err:find("backing file 2", 1, true), err)
      ok, err, code = add(7, "c1.qcow2")
      assert(not ok and code == "EINVAL" and err:find("cycle", 1, true), err)
      refused("not a regular file", add(8, "fifo.qcow2"))
      for lun = 3, 8 do assert(block(vm, "disk-0-" .. lun) == nil) end
      -- A chain through a QED, explicit at every level: no probing.
      assert(add(9, "onqed.qcow2"))
      local drivers = {}
      for _, n in ipairs(assert(vm:qmp("query-named-block-nodes"))) do
        drivers[n["node-name"] ] = n.drv
      end
      assert(drivers["back-0-9-1"] == "qed" and drivers["back-0-9-2"] == "raw",
        "the chain was not given explicitly")
      print("chains ok")
    ]], CH))
    assert.equal(data, hash(OUTSIDE .. "/data.raw"))
  end)

  it("reads a backing file outside but never locks it", function()
    -- QEMU locks what it opens; a lock on a file outside would hold back
    -- its owner. qemu-img info (without -U) takes the same locks, so it
    -- fails on a file a QEMU holds locked.
    local marker = ALLOWED .. "/outback.pid"
    local file = spit(ROOT .. "/outback.lua", PRELUDE .. string.format([[
      local vm <close> = assert(orrery.create("outback", builder(), { accel = "tcg" }))
      assert(vm:add_scsi_disk(0, 1, { Type = "VirtualDisk", Path = %q }))
      local f = assert(io.open(%q, "w")); f:write(vm:properties().ProcessId); f:close()
      while io.open(%q) do orrery.sleep(50) end -- until the spec has looked
    ]], CH .. "/outback.qcow2", marker, marker))
    local log = ROOT .. "/outback.log"
    assert(run(q(EXE) .. " run --sandbox --allow-write=" .. q(ALLOWED) .. " " .. q(file) ..
      " >" .. q(log) .. " 2>&1 & echo $! >" .. q(ROOT .. "/outback.run")))
    local ran = sh("cat " .. q(ROOT .. "/outback.run")):match("%d+")
    finally(function() os.remove(marker); T.eventually(function() return not T.alive(ran) end, 10000) end)
    assert.is_true(T.eventually(function() return exists(marker) end, 30000), T.read(log))
    local backing_free = run("qemu-img info " .. q(OUTSIDE .. "/base.raw") .. " >/dev/null 2>&1")
    local top_free = run("qemu-img info " .. q(CH .. "/outback.qcow2") .. " >/dev/null 2>&1")
    assert.is_true(backing_free, "the backing file outside is locked")
    assert.is_false(top_free, "the image inside is not locked: the check proves nothing")
  end)
end)

describe("QEMU confined, always (-sandbox), sandboxed recipe or not", function()
  it("runs every QEMU under seccomp: raw QMP cannot make it run a program", function()
    local vm <close> = assert(T.create("seccomp", T.builder("seccomp"), {}, ROOT .. "/run-seccomp"))
    local pid = vm:properties().ProcessId
    assert.truthy(sh("grep '^Seccomp:' /proc/" .. pid .. "/status"):find("2", 1, true))
    assert(vm:start())
    assert(vm:pause())
    -- spawn=deny: the fork for exec: kills QEMU (SIGSYS) instead.
    local ok, _, code = vm:qmp("migrate", { uri = "exec:touch " .. OUTSIDE .. "/spawned" })
    assert.is_true(ok == nil and code == "EVMGONE" or ok ~= nil)
    assert.is_true(T.eventually(function() return vm:state() == "Stopped" end, 10000))
    assert.equal(31, vm:properties().Exit.Signal)
    assert.is_false(T.alive(pid))
    outside_untouched({ "spawned" })
    assert.same({ Seccomp = true, Descriptors = false, Landlock = 0 }, vm:properties().Confinement)
  end)
end)

describe("sandbox: what a recipe may do by itself", function()
  it("blocks host programs, native code, bytecode and the debug library", function()
    local code, out = sandboxed(string.format("os.execute('touch %s/x')", OUTSIDE))
    assert.equal(1, code, out)
    assert.truthy(out:find("os.execute is not allowed", 1, true), out)
    code, out = sandboxed(string.format("io.popen('touch %s/y'):close()", OUTSIDE))
    assert.truthy(out:find("io.popen is not allowed", 1, true), out)
    code, out = sandboxed("assert(package.loadlib('libc.so.6', '*'))")
    assert.truthy(out:find("package.loadlib is not allowed", 1, true), out)
    code, out = sandboxed("package.cpath = '/usr/lib/x86_64-linux-gnu/lua/5.4/?.so'; require('cjson')")
    assert.truthy(out:find("module 'cjson' not found", 1, true), out)
    code, out = sandboxed("assert(load(string.dump(function() end)))")
    assert.truthy(out:find("attempt to load a binary chunk", 1, true), out)
    code, out = sandboxed("local _, open = debug.getupvalue(io.open, 1)")
    assert.truthy(out:find("getupvalue", 1, true), out)
    outside_untouched({ "x", "y" })
  end)

  it("writes inside the allowed directories only, through symlinks too", function()
    assert(run("ln -sfn " .. q(OUTSIDE) .. " " .. q(ALLOWED .. "/escape")))
    assert(run("ln -sfn " .. q(OUTSIDE .. "/e.txt") .. " " .. q(ALLOWED .. "/dangling")))
    assert(run("touch " .. q(OUTSIDE .. "/keep")))
    passes(string.format([[
      local f = assert(io.open(ALLOWED .. "/a.txt", "w"))
      f:write("in"); f:close()
      assert(io.open(ALLOWED .. "/a.txt"):read("a") == "in")
      assert(os.rename(ALLOWED .. "/a.txt", ALLOWED .. "/b.txt"))
      assert(os.remove(ALLOWED .. "/b.txt"))
      local function no(needle, f, ...)
        local ok, err = pcall(f, ...)
        assert(not ok and tostring(err):find(needle, 1, true), tostring(err))
      end
      no("outside the directories", io.open, OUTSIDE .. "/b.txt", "w")
      no("outside the directories", io.open, ALLOWED .. "/../outside/c.txt", "a")
      no("resolves to", io.open, ALLOWED .. "/escape/d.txt", "w")
      no("dangling symlink", io.open, ALLOWED .. "/dangling", "w")
      no("outside the directories", os.remove, OUTSIDE .. "/keep")
      no("outside the directories", os.rename, OUTSIDE .. "/keep", ALLOWED .. "/stolen")
      no("outside the directories", io.output, OUTSIDE .. "/f.txt")
      no("os.tmpname", os.tmpname)
      print("writes ok")
    ]]))
    outside_untouched({ "b.txt", "c.txt", "d.txt", "e.txt", "f.txt" })
    assert.is_true(exists(OUTSIDE .. "/keep"))
  end)

  it("reads anywhere, but opens no device node or FIFO, by any function", function()
    assert(run("mkfifo " .. q(OUTSIDE .. "/lua.fifo")))
    passes(string.format([[
      local FIFO = %q
      assert(io.open("/etc/hostname"):read("l"))
      for _ in io.lines("/etc/hostname") do end
      assert(io.open("/dev/null"):read("a") == "")
      local function no(f, ...)
        local ok, err = pcall(f, ...)
        assert(not ok and tostring(err):find("only regular files", 1, true), tostring(err))
      end
      -- A FIFO would block for ever; /dev/tty stands for every device node.
      no(io.open, FIFO)
      no(io.lines, FIFO)
      no(io.input, FIFO)
      no(loadfile, FIFO)
      no(dofile, "/dev/tty")
      package.path = FIFO:gsub("lua%%.fifo$", "?.fifo")
      assert(not pcall(require, "lua"))
      assert(package.searchpath("lua", package.path) == nil)
      print("reads ok")
    ]], OUTSIDE .. "/lua.fifo"))
  end)

  it("is one-way, and the same from stock lua5.4 and for -e chunks", function()
    local out = sh(q(EXE) .. " run --sandbox -e " .. q("io.popen('true')") .. " " ..
      q(spit(ROOT .. "/never.lua", "print('never')")) .. " 2>&1")
    assert.truthy(out:find("io.popen is not allowed", 1, true), out)
    assert.falsy(out:find("never", 1, true), out)
    local setup = string.format(
      "package.cpath=%q; package.path=%q; require('orrery.sandbox'){ allow_write = { %q } }",
      package.cpath, package.path, ALLOWED)
    out = sh("lua5.4 -e " .. q(setup) .. " " .. q(spit(ROOT .. "/stock.lua", PRELUDE .. [[
      refused_vm("opts.qemu_binary", orrery.create("stock", builder(), { accel = "tcg", qemu_binary = "/bin/sh" }))
      -- One-way: a second sandbox cannot widen the first.
      local ok, err = pcall(require("orrery.sandbox"), { allow_write = { "/" } })
      assert(not ok and err:find("already confined", 1, true), tostring(err))
      print("stock ok")
    ]])) .. " 2>&1")
    assert.truthy(out:find("stock ok", 1, true), out)
  end)

  it("runs the quickstart: a VM recipe waits as it does unsandboxed", function()
    local dir = ALLOWED .. "/quickstart"
    assert(run("mkdir -p " .. q(dir)))
    local out = sh(q(EXE) .. " run -q --sandbox --allow-write=" .. q(dir) .. " " ..
      "scripts/recipes/quickstart.lua " .. q(dir) .. " 2>&1; echo \"exit=$?\"")
    assert.truthy(out:find("exit=0", 1, true), out)
    assert.truthy(out:find("mounted on /mnt/data", 1, true), out)
    assert.truthy(out:find("shut down", 1, true), out)
    assert.equal("", sh("ls -A " .. q(dir)))
  end)
end)

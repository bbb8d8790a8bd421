-- A document that survives any crash (real QEMU, TCG, SeaBIOS only): the
-- journal of a VM created with ShouldTerminateOnLastHandleClosed = false.
-- An engine killed in the middle of 41 concurrent hot-adds, a runtime
-- directory too full to write state.json, a change whose outcome cannot be
-- written down: after each, the document a fresh open builds equals what
-- QEMU reports, every image is either the document's (locked by QEMU) or
-- free, and the next add and remove of the same LUN work.
local orrery = require("orrery")

local T = require("orrery.testing")
local q, run, sh, read, alive, eventually = T.q, T.run, T.sh, T.read, T.alive, T.eventually

local ROOT = T.tmpdir()
local is_root = sh("id -u"):match("^0") ~= nil
local N = 41

local IMG = {}
for lun = 0, N - 1 do IMG[lun] = T.image(ROOT, "1M") end

local function att(lun) return { Type = "VirtualDisk", Path = IMG[lun] } end

local function builder(owner)
  local b = orrery.builder{ owner = owner, ShouldTerminateOnLastHandleClosed = false }
  b:set_memory{ SizeInMB = 128 }
  b:add_scsi_controller(0)
  return b
end

-- The document and QEMU agree, image by image.
local function consistent(vm)
  local doc, qemu = T.doc_view(vm), T.qemu_view(vm)
  assert.same(doc, qemu)
  local mine = {}
  for _, path in pairs(doc.disks) do mine[path] = true end
  for lun = 0, N - 1 do
    -- A document disk's image is QEMU's (locked); any other is free.
    assert.equal(not mine[IMG[lun]], T.unlocked(IMG[lun]), "image of LUN " .. lun)
  end
  return doc
end

local function luns(vm)
  local out = {}
  local ctl = (vm:document().VirtualMachine.Devices.Scsi or {})[orrery.scsi_controller_guids[0]]
  for lun in pairs(ctl and ctl.Attachments or {}) do out[#out + 1] = tonumber(lun) end
  table.sort(out)
  return out
end

describe("the journal", function()
  local pids = {}

  teardown(function()
    for _, pid in ipairs(pids) do
      if alive(pid) then run("kill -9 " .. pid) end
    end
    orrery.sleep(300) -- closed VMs release their directories on the loop
    run("umount " .. q(ROOT .. "/tiny") .. " 2>/dev/null || umount -l " .. q(ROOT .. "/tiny") .. " 2>/dev/null")
    run("rm -rf " .. q(ROOT))
  end)

  it("survives an engine SIGKILLed during 41 concurrent hot-adds", function()
    local dir = ROOT .. "/many"
    local vm = assert(orrery.create("many", builder("many"), { accel = "tcg", runtime_dir = dir }))
    assert(vm:start())
    pids[#pids + 1] = vm:properties().ProcessId
    vm:close()
    -- Each round: another engine opens the VM, starts 41 adds at once and
    -- dies in the middle: killed 20 ms in (the issue's case: whatever that
    -- hits), as the 10th or the 30th add returns (the others in flight),
    -- or at an exact point (fault points, engine/src/fault.c): at
    -- the 20th and the 60th answer to a blockdev-add (every file node
    -- asked for, some format nodes), at the 10th answer to a device_add,
    -- right after the intents were written. The engine sends each disk's
    -- next step as the previous one is answered, and what QEMU still had
    -- queued when the engine died it may or may not carry out: whatever
    -- it did, a fresh open must find a document that is QEMU's, and LUN 30
    -- must add and remove.
    local list = {}
    for lun = 0, N - 1 do list[#list + 1] = string.format("%q", IMG[lun]) end
    local images = table.concat(list, ", ")
    local rounds = {
      { delay = 20 },
      { after = 10 },
      { after = 30 },
      { fault = "step:blockdev-add:after#60" },
      { fault = "step:blockdev-add:after#20" },
      { fault = "step:device_add:after#10" },
      { fault = "journal:intent:after#1" },
    }
    for round, r in ipairs(rounds) do
      local rc, out = T.orrery_run(ROOT, "adds" .. round, string.format([[
local orrery = require("orrery")
local vm = assert(orrery.open("many", { runtime_dir = %q }))
local images = { %s }
local self = io.open("/proc/self/stat"):read("l"):match("^(%%d+)")
local done = 0
for lun = 0, #images - 1 do
  orrery.spawn(function()
    assert(vm:add_scsi_disk(0, lun, { Type = "VirtualDisk", Path = images[lun + 1] }))
    done = done + 1
    if done == %d then os.execute("kill -9 " .. self) end
  end)
end
orrery.sleep(%d)
os.execute("kill -9 " .. self)
]], dir, images, r.after or -1, r.delay or 60000), { ORRERY_FAULT = r.fault })
      assert.equal(137, rc, out)
      vm = assert(orrery.open("many", { runtime_dir = dir }))
      local doc = consistent(vm)
      local have = luns(vm)
      -- The next add and remove of the same LUN succeed.
      if doc.disks["0:30"] then assert(vm:remove_scsi_disk(0, 30)) end
      assert(vm:add_scsi_disk(0, 30, att(30)))
      assert(vm:remove_scsi_disk(0, 30))
      consistent(vm)
      -- Clean slate for the next round.
      local tasks = {}
      for _, lun in ipairs(have) do
        if lun ~= 30 then
          tasks[#tasks + 1] = orrery.spawn(function() assert(vm:remove_scsi_disk(0, lun)) end)
        end
      end
      orrery.wait_all(tasks)
      assert.same({}, luns(vm))
      vm:close()
    end
    vm = assert(orrery.open("many", { runtime_dir = dir }))
    assert(vm:terminate())
    vm:close()
  end)

  describe("a change whose outcome QEMU cannot report (the balloon)", function()
    -- Its outcome must be on disk before it is reported. A write made to
    -- fail (a test-only fault point, engine/src/fault.c) takes the change
    -- back; if QEMU refuses that too, the call fails and the VM says its
    -- state is not durable, in properties() and in `orrery doctor`, until
    -- a write succeeds.
    local function recipe(id)
      return string.format([[
local orrery = require("orrery")
local b = orrery.builder{ owner = "nd", ShouldTerminateOnLastHandleClosed = false }
b:set_memory{ SizeInMB = 128 }
local vm = assert(orrery.create(%q, b, { accel = "tcg", runtime_dir = %q }))
assert(vm:start())
local function report(what, ok, err, code)
  local p = vm:properties()
  io.write(what, "\t", tostring(ok), "\t", tostring(code), "\t", tostring(err), "\t",
    tostring(p.Durable), "\t", tostring(p.DurableError), "\t",
    vm:document().VirtualMachine.ComputeTopology.Memory.SizeInMB, "\n")
end
report("change", vm:update_memory(96))
io.flush()
os.execute(orrery.build_dir .. "/orrery doctor > %s/doctor.out 2>&1")
report("again", vm:update_memory(112))
assert(vm:terminate())
]], id, ROOT .. "/" .. id, ROOT)
    end

    local function lines(out)
      local t = {}
      for what, ok, code, err, durable, derr, mb in out:gmatch("(%w+)\t(%S+)\t(%S+)\t([^\t]*)\t(%S+)\t([^\t]*)\t(%d+)") do
        t[what] = { ok = ok, code = code, err = err, durable = durable, derr = derr, mb = tonumber(mb) }
      end
      return t
    end

    it("is rolled back and fails EIO when its outcome cannot be written", function()
      local rc, out = T.orrery_run(ROOT, "rollback", recipe("rb"), {
        ORRERY_FAULT = "journal:commit:before:fail", ORRERY_RUNTIME_DIR = ROOT })
      assert.equal(0, rc, out)
      local r = lines(out)
      assert.equal("EIO", r.change.code, out)
      assert.matches("the change was rolled back", r.change.err)
      assert.equal(128, r.change.mb) -- the document as it was
      assert.equal("true", r.change.durable)
      assert.equal("true", r.again.ok, out) -- the next change is written
      assert.equal(112, r.again.mb)
    end)

    it("fails and says it is not durable when QEMU cannot take it back either", function()
      local rc, out = T.orrery_run(ROOT, "notdurable", recipe("nd"), {
        -- The outcome's write fails, the undo fails, and so does the lazy
        -- write that would have caught the file up at once.
        ORRERY_FAULT = "journal:commit:before:fail,undo:balloon:before:fail,journal:lazy:before:fail",
        ORRERY_RUNTIME_DIR = ROOT })
      assert.equal(0, rc, out)
      local r = lines(out)
      assert.equal("EIO", r.change.code, out)
      assert.matches("could not be rolled back either", r.change.err)
      assert.equal(96, r.change.mb) -- the document says what QEMU has
      assert.equal("false", r.change.durable)
      assert.matches("not durable", r.change.derr)
      assert.matches("warn%s+vm%-state%s+.*VM nd: .*not durable", T.slurp(ROOT .. "/doctor.out"))
      -- The next change is written, and the state with it.
      assert.equal("true", r.again.ok, out)
      assert.equal("true", r.again.durable)
    end)
  end)

  describe("in a runtime directory that fills up (64 KiB tmpfs)", function()
    local tiny = ROOT .. "/tiny"
    local filler = tiny .. "/filler"

    -- Fills the tmpfs; leave pages free (4 KiB each).
    local function fill(leave)
      run("rm -f " .. q(filler))
      run("dd if=/dev/zero of=" .. q(filler) .. " bs=4096 2>/dev/null")
      if leave and leave > 0 then
        local size = tonumber(sh("stat -c %s " .. q(filler)))
        assert(run("truncate -s " .. (size - 4096 * leave) .. " " .. q(filler)))
      end
    end

    setup(function()
      if is_root then
        assert(run("mkdir -p " .. q(tiny) .. " && mount -t tmpfs -o size=64k,mode=0700 tmpfs " .. q(tiny)))
      end
    end)

    it("refuses to create a VM whose state cannot be written (no orphan QEMU)", function()
      if not is_root then pending("mounting a tmpfs needs root") return end
      fill(1) -- room for QEMU's pid file, none for state.json
      local vm, err, code = orrery.create("full", builder("full"), { accel = "tcg", runtime_dir = tiny .. "/full" })
      assert.is_nil(vm)
      assert.equal("EIO", code, err)
      assert.matches("state could not be written", err)
      assert.is_true(eventually(function() return T.qemu_pids(tiny) == "" end, 5000), "QEMU left behind")
    end)

    it("fails a change it cannot journal (EIO), with nothing changed, and re-opens to QEMU's truth", function()
      if not is_root then pending("mounting a tmpfs needs root") return end
      run("rm -f " .. q(filler))
      local dir = tiny .. "/vm"
      local vm = assert(orrery.create("tiny", builder("tiny"), { accel = "tcg", runtime_dir = dir }))
      pids[#pids + 1] = vm:properties().ProcessId
      assert(vm:start())
      assert(vm:add_scsi_disk(0, 0, att(0)))
      fill(0)
      -- Neither an add nor a remove may return true now.
      local ok, err, code = vm:add_scsi_disk(0, 1, att(1))
      assert.is_nil(ok)
      assert.equal("EIO", code, err)
      assert.matches("nothing was changed", err)
      ok, err, code = vm:remove_scsi_disk(0, 0)
      assert.is_nil(ok)
      assert.equal("EIO", code, err)
      ok, err, code = vm:add_nic("2b8d8f0e-8f3c-4c55-a3b1-6f2b1c0d9e7a",
        { EndpointId = "user", MacAddress = "00-15-5D-52-C0-0A" })
      assert.is_nil(ok)
      assert.equal("EIO", code, err)
      assert.same({ 0 }, luns(vm))
      consistent(vm)
      -- Left running with the disk still full: what the next open finds
      -- is QEMU's truth all the same.
      vm:close()
      vm = assert(orrery.open("tiny", { runtime_dir = dir }))
      assert.same({ 0 }, luns(vm))
      consistent(vm)
      -- Room again: changes work and are journaled.
      run("rm -f " .. q(filler))
      assert(vm:add_scsi_disk(0, 1, att(1)))
      assert(vm:remove_scsi_disk(0, 1))
      assert(vm:remove_scsi_disk(0, 0))
      consistent(vm)
      assert(vm:terminate())
      vm:close()
    end)
  end)
end)

-- No call hangs: QEMU frozen with SIGSTOP (its pid from
-- vm:properties().ProcessId) under every kind of call, against a real
-- qemu-system-x86_64 (TCG). Each call must fail ETIMEDOUT at its own
-- deadline, not when QEMU is continued; the VM must say it is
-- unresponsive (event, properties) and responsive again once QEMU answers;
-- a change whose step QEMU answers late must be settled so that the live
-- document equals QEMU's own view (query-block, query-named-block-nodes,
-- QOM), and the next change of the same LUN must work; terminate, close
-- and shutdown must end a frozen QEMU. Also create's deadline (ETIMEDOUT
-- naming what QEMU did not reach, a QEMU stopped mid-handshake included)
-- and the guest manager on a frozen VM.
--
-- Bounds are generous (the machine is shared and loaded): a call with a
-- 1000 ms deadline must return within 5 s, while QEMU stays frozen longer.
local orrery = require("orrery")

local C0 = "df6d0690-79e5-55b6-a5ec-c1e2f77f580a" -- SCSI controller 0
local SCSI = "VirtualMachine/Devices/Scsi/" .. C0 .. "/Attachments/"

local T = require("orrery.testing")
local q, run, eventually = T.q, T.run, T.eventually

local ROOT = T.tmpdir()
local function qemu_pids() return T.qemu_pids(ROOT) end
local function image() return T.image(ROOT, "4M") end
local function create(id, b, opts) return T.create(id, b, opts, ROOT .. "/" .. id) end

local DEADLINE = 1000 -- each call's timeout_ms
local BOUND = 5 * DEADLINE -- how late its answer may come, at most

-- Stops the VM's QEMU; returns a function that continues it (harmless
-- once QEMU is gone, so it also serves as the test's `finally`).
local function freeze(vm)
  local pid = assert(vm:properties().ProcessId)
  assert(run("kill -STOP " .. pid))
  return function() os.execute("kill -CONT " .. pid .. " 2>/dev/null") end
end

-- Runs fn(), returning its results and the milliseconds it took.
local function timed(fn)
  local t0 = orrery.now()
  local r = table.pack(fn())
  return orrery.now() - t0, table.unpack(r, 1, r.n)
end

-- Records every event of the VM: list of {event, data}.
local function record(vm)
  local seen = {}
  for _, ev in ipairs{ "unresponsive", "responsive", "settled", "state" } do
    vm:on(ev, function(data) seen[#seen + 1] = { ev = ev, data = data } end)
  end
  return seen
end

local function count(seen, ev)
  local n = 0
  for _, e in ipairs(seen) do if e.ev == ev then n = n + 1 end end
  return n
end

local function find(seen, ev)
  for _, e in ipairs(seen) do if e.ev == ev then return e.data end end
end

-- The LUNs the live document has on controller 0, sorted, as a string.
local function doc_luns(vm)
  local scsi = vm:document().VirtualMachine.Devices.Scsi
  local luns = {}
  for k in pairs(scsi[C0].Attachments or {}) do luns[#luns + 1] = tonumber(k) end
  table.sort(luns)
  return table.concat(luns, " ")
end

-- The LUNs QEMU has disks for on controller 0 (query-block's qdev ids).
local function qemu_luns(vm)
  local luns = {}
  for _, blk in ipairs(assert(vm:qmp("query-block"))) do
    local lun = blk.qdev and blk.qdev:match("disk%-0%-(%d+)")
    if lun then luns[#luns + 1] = tonumber(lun) end
  end
  table.sort(luns)
  return table.concat(luns, " ")
end

-- The LUNs QEMU has any block node for (file, format), attached or not.
local function node_luns(vm)
  local seen, luns = {}, {}
  for _, n in ipairs(assert(vm:qmp("query-named-block-nodes", { flat = true }))) do
    local lun = n["node-name"]:match("%-0%-(%d+)$")
    if lun and not seen[lun] then
      seen[lun] = true
      luns[#luns + 1] = tonumber(lun)
    end
  end
  table.sort(luns)
  return table.concat(luns, " ")
end

-- The live document and QEMU agree: every disk of the one is a disk of the
-- other, and no block node is left without its disk.
local function assert_doc_is_qemu(vm)
  local doc = doc_luns(vm)
  assert.are.equal(doc, qemu_luns(vm))
  assert.are.equal(doc, node_luns(vm))
end

local function attachment(path) return { Type = "VirtualDisk", Path = path } end

-- Waits until the VM is responsive and nothing is in doubt.
local function settled(vm)
  return eventually(function()
    local p = vm:properties()
    return p.Responsive and p.InDoubt == nil
  end, 30000)
end

describe("no call hangs on a frozen QEMU", function()
  teardown(function()
    for pid in qemu_pids():gmatch("%d+") do os.execute("kill -9 " .. pid) end
    os.execute("rm -rf " .. q(ROOT))
  end)

  it("fails a modify at its deadline, says unresponsive, and settles the change once QEMU answers", function()
    local vm <close> = assert(create("modify", T.builder("liveness")))
    assert(vm:start())
    local seen = record(vm)
    local img = image()
    assert.is_true(vm:properties().Responsive)
    local thaw = freeze(vm)
    local ok, ms, msg, code
    finally(thaw)
    ms, ok, msg, code = timed(function()
      return vm:modify({ ResourcePath = SCSI .. "3", RequestType = "Add", Settings = attachment(img) },
        { timeout_ms = DEADLINE })
    end)
    assert.is_nil(ok)
    assert.are.equal("ETIMEDOUT", code)
    assert.matches("in doubt", msg)
    assert.is_true(ms >= DEADLINE - 50, "returned after " .. ms .. " ms")
    assert.is_true(ms < BOUND, "returned after " .. ms .. " ms")

    -- The VM says so: one event, and in its properties.
    -- The command's own deadline is what was left of the call's when it was
    -- sent: the call's, less the milliseconds spent before it went out.
    local ev = find(seen, "unresponsive")
    assert.are.equal("blockdev-add", ev.Command)
    assert.is_true(ev.TimeoutMs <= DEADLINE and ev.TimeoutMs >= DEADLINE - 50, tostring(ev.TimeoutMs))
    local p = vm:properties()
    assert.is_false(p.Responsive)
    assert.are.equal("blockdev-add", p.Unresponsive.Command)
    assert.are.equal(ev.TimeoutMs, p.Unresponsive.TimeoutMs)
    assert.is_true(p.Unresponsive.ForMs >= 0)
    assert.are.same({ SCSI .. "3" }, p.InDoubt)
    assert.are.equal("Running", p.State) -- QEMU confirmed no other state
    assert.are.equal("", doc_luns(vm)) -- nothing QEMU confirmed

    -- The same LUN is busy while in doubt, and that fails at once.
    ms, ok, msg, code = timed(function() return vm:add_scsi_disk(0, 3, attachment(img)) end)
    assert.are.equal("EBUSY", code)
    assert.matches("in doubt", msg)
    assert.is_true(ms < BOUND)

    -- Continued: QEMU answers, the VM is responsive, the change settled.
    thaw()
    assert.is_true(settled(vm))
    assert.are.equal(1, count(seen, "unresponsive"))
    assert.are.equal(1, count(seen, "responsive"))
    assert.are.equal("blockdev-add", find(seen, "responsive").Command)
    assert.is_true(find(seen, "responsive").UnresponsiveMs >= 0)
    local s = find(seen, "settled")
    assert.are.equal(SCSI .. "3", s.ResourcePath)
    assert.are.equal("rolled back", s.Outcome) -- QEMU did only its first step
    assert.is_nil(vm:properties().Unresponsive)
    assert_doc_is_qemu(vm)

    -- The next add and remove of the same LUN work.
    assert(vm:add_scsi_disk(0, 3, attachment(img)))
    assert.are.equal("3", doc_luns(vm))
    assert_doc_is_qemu(vm)
    assert(vm:remove_scsi_disk(0, 3))
    assert_doc_is_qemu(vm)
  end)

  it("fails 31 concurrent adds at their deadline, not when QEMU resumes", function()
    local vm <close> = assert(create("adds", T.builder("liveness")))
    local seen = record(vm)
    local imgs = {}
    for lun = 1, 31 do imgs[lun] = image() end
    local thaw = freeze(vm)
    finally(thaw)
    local t0 = orrery.now()
    local results, tasks = {}, {}
    for lun = 1, 31 do
      tasks[lun] = orrery.spawn(function()
        local ok, msg, code = vm:add_scsi_disk(0, lun, attachment(imgs[lun]), { timeout_ms = DEADLINE })
        results[lun] = { ok = ok, msg = msg, code = code, at = orrery.now() - t0 }
      end)
    end
    -- QEMU stays frozen well past every deadline.
    orrery.sleep(BOUND + 1000)
    for lun = 1, 31 do
      local r = results[lun]
      assert.is_not_nil(r, "add of LUN " .. lun .. " still waits")
      assert.are.equal("ETIMEDOUT", r.code, r.msg)
      assert.is_true(r.at < BOUND, "LUN " .. lun .. " answered after " .. r.at .. " ms")
    end
    assert.are.equal(31, #vm:properties().InDoubt)
    assert.are.equal(1, count(seen, "unresponsive")) -- one episode, one event
    thaw()
    orrery.wait_all(tasks)
    assert.is_true(settled(vm))
    assert.are.equal(1, count(seen, "responsive"))
    assert.are.equal(31, count(seen, "settled"))
    assert_doc_is_qemu(vm)
    -- Every LUN is usable again.
    assert(vm:add_scsi_disk(0, 7, attachment(imgs[7])))
    assert(vm:remove_scsi_disk(0, 7))
    assert(vm:add_scsi_disk(0, 7, attachment(imgs[7])))
    assert_doc_is_qemu(vm)
  end)

  it("settles a removal QEMU carries out late as committed", function()
    local vm <close> = assert(create("remove", T.builder("liveness")))
    local seen = record(vm)
    assert(vm:add_scsi_disk(0, 5, attachment(image())))
    local thaw = freeze(vm)
    finally(thaw)
    local ms, ok, _, code = timed(function() return vm:remove_scsi_disk(0, 5, { timeout_ms = DEADLINE }) end)
    assert.is_nil(ok)
    assert.are.equal("ETIMEDOUT", code)
    assert.is_true(ms < BOUND)
    assert.are.equal("5", doc_luns(vm)) -- not confirmed yet
    thaw()
    assert.is_true(settled(vm))
    -- QEMU accepted the device_del: committed, or pending until the
    -- DEVICE_DELETED that follows it (a SCSI unplug needs no guest).
    local outcome = find(seen, "settled").Outcome
    assert.is_truthy(outcome == "committed" or outcome == "pending", outcome)
    assert.is_true(eventually(function() return doc_luns(vm) == "" end))
    assert_doc_is_qemu(vm)
    assert(vm:add_scsi_disk(0, 5, attachment(image())))
    assert_doc_is_qemu(vm)
  end)

  it("fails pause, vm:qmp and save at their deadline; the state follows what QEMU did", function()
    local vm <close> = assert(create("life", T.builder("liveness")))
    assert(vm:start())
    local seen = record(vm)
    local thaw = freeze(vm)
    finally(thaw)

    local ms, ok, msg, code = timed(function() return vm:pause{ timeout_ms = DEADLINE } end)
    assert.are.equal("ETIMEDOUT", code, msg)
    assert.is_true(ms < BOUND)
    assert.are.same({ "stop" }, vm:properties().InDoubt)
    assert.are.equal("Running", vm:state())
    ms, ok, msg, code = timed(function() return vm:qmp("query-status", nil, { timeout_ms = DEADLINE }) end)
    assert.are.equal("ETIMEDOUT", code, msg)
    assert.is_true(ms < BOUND)
    -- A call without a timeout_ms has the default deadline: still bounded.
    assert.is_false(vm:properties().Responsive)

    thaw()
    assert.is_true(settled(vm))
    -- QEMU did run the stop: the VM is paused, as QEMU says.
    assert.are.equal("Paused", vm:state())
    assert.are.equal("paused", assert(vm:qmp("query-status")).status)
    assert.are.equal("committed", find(seen, "settled").Outcome)

    -- Paused and frozen: the save times out too, and leaves no migration.
    local state = ROOT .. "/life.state"
    thaw = freeze(vm)
    ms, ok, msg, code = timed(function()
      return vm:save({ SaveStateFilePath = state }, { timeout_ms = DEADLINE })
    end)
    assert.are.equal("ETIMEDOUT", code, msg)
    assert.is_true(ms < BOUND)
    thaw()
    assert.is_true(settled(vm))
    assert.is_true(eventually(function()
      local st = assert(vm:qmp("query-migrate")).status
      return st == nil or st == "cancelled" or st == "completed"
    end))
    -- And the VM still works: save, then resume.
    assert(vm:save({ SaveStateFilePath = state }))
    assert(vm:resume())
    assert.are.equal("running", assert(vm:qmp("query-status")).status)
  end)

  it("terminates, shuts down and closes a frozen QEMU", function()
    local a = assert(create("term", T.builder("liveness")))
    assert(a:start())
    local pid = a:properties().ProcessId
    freeze(a)
    local ms, info = timed(function() return a:terminate() end)
    assert(info, "terminate failed")
    assert.is_true(ms < 15000, "terminate took " .. ms .. " ms")
    assert.is_false(T.alive(pid))
    assert.are.equal("Stopped", a:state())
    a:close()

    local b = assert(create("shut", T.builder("liveness")))
    assert(b:start())
    pid = b:properties().ProcessId
    freeze(b)
    local exit
    ms, exit = timed(function() return b:shutdown{ timeout_ms = DEADLINE } end)
    assert.is_table(exit)
    assert.are.equal(9, exit.Signal)
    assert.is_true(ms < 15000, "shutdown took " .. ms .. " ms")
    assert.is_false(T.alive(pid))
    b:close()

    local c = assert(create("close", T.builder("liveness")))
    pid = c:properties().ProcessId
    freeze(c)
    c:close()
    assert.is_true(eventually(function() return not T.alive(pid) end, 15000))
    assert.is_true(eventually(function() return qemu_pids() == "" end, 15000))
  end)

  it("ends a wait at its deadline", function()
    local vm <close> = assert(create("wait", T.builder("liveness")))
    local ms, ok, msg, code = timed(function() return vm:wait{ timeout_ms = 300 } end)
    assert.is_nil(ok)
    assert.are.equal("ETIMEDOUT", code)
    assert.matches("still runs", msg)
    assert.is_true(ms >= 250 and ms < 1500)
  end)
end)

describe("create's deadline", function()
  it("is ETIMEDOUT naming what QEMU did not reach (timeout_ms = 20)", function()
    local ms, ok, msg, code = timed(function()
      return create("fast", T.builder("liveness"), { timeout_ms = 20 })
    end)
    assert.is_nil(ok)
    assert.are.equal("ETIMEDOUT", code, msg)
    assert.matches("QMP", msg)
    assert.matches("within 20 ms", msg)
    assert.is_true(ms < 5000)
    assert.is_true(eventually(function() return qemu_pids() == "" end))
  end)

  it("is ETIMEDOUT for a QEMU stopped in the middle of the QMP handshake", function()
    -- A wrapper execs QEMU and stops it as soon as its QMP socket exists:
    -- QEMU's listening socket accepts the connection (the kernel does),
    -- but the greeting never comes.
    local wrapper = ROOT .. "/stopping-qemu"
    T.spit(wrapper, [[#!/bin/sh
sock=
for a in "$@"; do
  case "$a" in socket,id=qmp,path=*) sock=${a#socket,id=qmp,path=}; sock=${sock%%,*} ;; esac
done
( while [ ! -S "$sock" ]; do sleep 0.005; done; kill -STOP $$ ) &
exec qemu-system-x86_64 "$@"
]])
    assert(run("chmod +x " .. q(wrapper)))
    local ms, ok, msg, code = timed(function()
      return create("midshake", T.builder("liveness"), { qemu_binary = wrapper, timeout_ms = 2000 })
    end)
    assert.is_nil(ok)
    assert.are.equal("ETIMEDOUT", code, msg)
    -- Stopped before or after it greeted us (the wrapper races QEMU): the
    -- message names the step it did not reach.
    assert.is_truthy(msg:find("sent no QMP greeting", 1, true) or
      msg:find("did not answer qmp_capabilities", 1, true), msg)
    assert.is_true(ms < 10000, "create took " .. ms .. " ms")
    -- Stopped or not, the QEMU is gone (SIGKILL ends a stopped process).
    assert.is_true(eventually(function() return qemu_pids() == "" end))
  end)
end)

describe("the guest manager on a frozen VM", function()
  it("fails its calls at their deadline and works again once QEMU continues", function()
    local b = T.builder("liveness", { memory = 256 })
    b:set_linux_kernel_direct_boot(orrery.default_guest())
    local vm <close>, g = T.guest_vm("guest", b, {}, ROOT .. "/guest")
    assert(g:ping())
    local thaw = freeze(vm)
    finally(thaw)
    local ms, ok, msg, code = timed(function() return g:exec({ "true" }, { timeout_ms = DEADLINE }) end)
    assert.is_nil(ok)
    assert.are.equal("ETIMEDOUT", code, msg)
    assert.is_true(ms < BOUND, "exec took " .. ms .. " ms")
    ms, ok, msg, code = timed(function() return vm:guest{ timeout_ms = DEADLINE } end)
    assert.are.equal("ETIMEDOUT", code, msg)
    assert.is_true(ms < BOUND, "guest took " .. ms .. " ms")
    ms, ok, msg, code = timed(function() return g:read_file("/proc/version", { timeout_ms = DEADLINE }) end)
    assert.are.equal("ETIMEDOUT", code, msg)
    assert.is_true(ms < BOUND)
    thaw()
    -- The stale answers are skipped (sync) and the agent answers again.
    local r = assert(g:exec({ "echo", "back" }, { timeout_ms = 30000 }))
    assert.are.equal("back\n", r.stdout)
    g:close()
  end)
end)

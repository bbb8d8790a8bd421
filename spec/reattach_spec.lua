-- Re-attach that cannot be fooled (real QEMU, TCG, no guest OS): what
-- orrery.open trusts before it sends or kills anything. A VM made with
-- ShouldTerminateOnLastHandleClosed = false is left running; then its
-- runtime directory and state.json are tampered with in every way the
-- issue saw, and in a few it did not, and each open must fail with the
-- right code, naming what is wrong, with QEMU and every bystander process
-- untouched, and the VM still opens once the tampering is undone.
local orrery = require("orrery")

local T = require("orrery.testing")
local q, run, sh, read, alive, eventually = T.q, T.run, T.sh, T.read, T.alive, T.eventually

local ROOT = T.tmpdir()
local ID = "att"
local DIR = ROOT .. "/" .. ID
local STATE = DIR .. "/state.json"
local DISK = T.image(ROOT, "4M")
local is_root = sh("id -u"):match("^0") ~= nil

-- Opens the VM in another engine process: the malformed files would have
-- crashed the one that opens (on main, `Unplugs:[{}]` did), so never this one.
-- Returns the code, the message and whether that process exited normally.
local function open_elsewhere(id, dir, extra)
  local rc, out = T.orrery_run(ROOT, "open-" .. id, string.format([[
local orrery = require("orrery")
local vm, err, code = orrery.open(%q, { runtime_dir = %q })
if vm then
  io.write("ok\n")
  %s
  vm:close()
else
  io.write(code, "\t", err, "\n")
end
]], id, dir, extra or ""), {})
  local code, msg = out:match("^(%S+)\t([^\n]*)")
  return code or out:match("^ok") or out, msg, rc
end

local function qemu_pid() return tonumber(read(DIR .. "/qemu.pid")) end

local function spit_state(text)
  T.spit(STATE .. ".new", text)
  assert(run("chmod 600 " .. q(STATE .. ".new") .. " && mv " .. q(STATE .. ".new") .. " " .. q(STATE)))
end

describe("orrery.open", function()
  local good, pid

  setup(function()
    local b = orrery.builder{ owner = "reattach", ShouldTerminateOnLastHandleClosed = false }
    b:set_memory{ SizeInMB = 64 }
    b:add_scsi_controller(0)
    local vm = assert(T.create(ID, b, {}, DIR))
    assert(vm:start())
    assert(vm:add_scsi_disk(0, 1, { Type = "VirtualDisk", Path = DISK }))
    pid = vm:properties().ProcessId
    vm:close() -- left running, its lock released
    good = T.slurp(STATE)
  end)

  teardown(function()
    if pid and alive(pid) then run("kill -9 " .. pid) end
    run("rm -rf " .. q(ROOT))
  end)

  after_each(function()
    -- Every case leaves QEMU alive, and the good file back.
    assert.is_true(alive(pid), "QEMU " .. pid .. " was killed")
    run("chmod 700 " .. q(DIR))
    run("rm -f " .. q(STATE))
    spit_state(good)
  end)

  local function refused(want, pattern)
    local code, msg, rc = open_elsewhere(ID, DIR)
    assert.equal(0, rc, "the opening engine died: " .. tostring(code))
    assert.equal(want, code, msg)
    if pattern then assert.matches(pattern, msg) end
  end

  it("re-attaches to the untouched VM, and it works", function()
    local code = open_elsewhere(ID, DIR, [[
assert(vm:remove_scsi_disk(0, 1))
assert(vm:add_scsi_disk(0, 1, { Type = "VirtualDisk", Path = ]] .. string.format("%q", DISK) .. [[ }))]])
    assert.equal("ok", code)
    good = T.slurp(STATE)
  end)

  describe("a malformed state.json is EINVAL naming the field, never a crash", function()
    -- Edits are made on the text: a JSON library in Lua cannot tell an
    -- empty array from an empty object.
    local function with(pattern, repl, want)
      local text, n = good:gsub(pattern, repl, 1)
      assert.equal(1, n, "the edit " .. pattern .. " found nothing")
      spit_state(text)
      refused("EINVAL", want)
    end

    it("Unplugs = [{}] (the issue's crash)", function()
      -- The list of pending unplugs files had before intents replaced it.
      if good:find('"Unplugs":%[%]') then
        with('"Unplugs":%[%]', '"Unplugs":[{}]', 'Unplugs')
      else
        with('"Intents":', '"Unplugs":[{}],"Intents":', 'unknown field "Unplugs"')
      end
    end)
    it("an intent that is an empty object", function()
      with('"Intents":%[%]', '"Intents":[{}]', "Intents%[0%]")
    end)
    it("an intent that would delete a device not of the engine's naming", function()
      with('"Intents":%[%]', '"Intents":[{"Resource":"x","Commit":"path","Data":{"keys":'
        .. '["VirtualMachine","Devices","Scsi","' .. orrery.scsi_controller_guids[0] .. '","Attachments","1"]},'
        .. '"Plan":{"do":[],"wait_deleted":"scsi0","after":[]}}]', "wait_deleted")
    end)
    -- fd mode (a QEMU launched confined): which fdsets are a disk's is
    -- what a re-attaching engine releases with it; never another disk's.
    local SCSI1 = '"Resource":"x","Commit":"path","Data":{"keys":["VirtualMachine","Devices","Scsi","'
      .. orrery.scsi_controller_guids[0] .. '","Attachments","1"]}'
    it("a layout that gives a disk another disk's descriptors", function()
      -- LUN 1's fdsets are 1032..1063; 1064 is LUN 2's.
      with('"Layout":{', '"Layout":{"fdsets":{"0-1":[1064]},', "Layout%.fdsets")
    end)
    it("an intent whose cleanup would release another disk's descriptors", function()
      with('"Intents":%[%]', '"Intents":[{' .. SCSI1 .. ',"Plan":{"do":[],"wait_deleted":"disk-0-1",'
        .. '"after":[{"execute":"remove-fd","arguments":{"fdset-id":1064}}]}}]', "fdset 1064")
    end)
    it("an intent that would release an fdset outside the engine's range", function()
      with('"Intents":%[%]', '"Intents":[{' .. SCSI1 .. ',"Plan":{"do":[],"wait_deleted":"disk-0-1",'
        .. '"after":[{"execute":"remove-fd","arguments":{"fdset-id":7}}]}}]', "remove%-fd")
    end)
    it("a ProcessId of the wrong type", function()
      with('"ProcessId":(%d+)', '"ProcessId":"%1"', "ProcessId")
    end)
    it("a document of a VM that terminates with its handle", function()
      with('"ShouldTerminateOnLastHandleClosed":false', '"ShouldTerminateOnLastHandleClosed":true', "Document")
    end)
    it("a document that breaks the schema", function()
      with('"SizeInMB":64', '"SizeInMB":-5', "Document: .*SizeInMB")
    end)
    it("another VM's id", function()
      with('"Id":"att"', '"Id":"someone-else"', 'Id is "someone%-else"')
    end)
    it("a QMP socket somewhere else", function()
      with('"qmp":"[^"]*"', '"qmp":"' .. ROOT .. '/elsewhere/qmp.sock"', "Layout%.qmp must be " .. DIR:gsub("%p", "%%%0"))
    end)
    it("text that is not JSON", function()
      spit_state(good:sub(1, #good // 2))
      refused("EINVAL", "not JSON")
    end)
  end)

  describe("a file or directory it cannot trust is EPERM", function()
    it("state.json a symlink (to a good copy)", function()
      T.spit(ROOT .. "/copy.json", good)
      assert(run("chmod 600 " .. q(ROOT .. "/copy.json") .. " && ln -sf " .. q(ROOT .. "/copy.json") .. " " .. q(STATE)))
      refused("EPERM", "symlink")
    end)
    it("state.json readable by others", function()
      assert(run("chmod 644 " .. q(STATE)))
      refused("EPERM", "mode 0644")
    end)
    it("the runtime directory readable by others", function()
      assert(run("chmod 755 " .. q(DIR)))
      refused("EPERM", "mode 755")
    end)
    it("state.json owned by another user", function()
      if not is_root then pending("chown needs root") return end
      assert(run("chown nobody " .. q(STATE)))
      refused("EPERM", "uid")
    end)
  end)

  describe("the process it names must be proved this VM's QEMU", function()
    local function with_pid(p, start)
      local text = good:gsub('"ProcessId":%d+', '"ProcessId":' .. p, 1)
      if start then text = text:gsub('"StartTime":%d+', '"StartTime":' .. start, 1) end
      spit_state(text)
    end
    local function start_time(p)
      return tonumber(T.slurp("/proc/" .. p .. "/stat"):match("%)%s+(.*)"):match(("%S+%s+"):rep(19) .. "(%d+)"))
    end

    it("a reused pid: an innocent process is neither signalled nor adopted", function()
      local innocent = tonumber(sh("sleep 300 >/dev/null 2>&1 & echo $!"))
      finally(function() run("kill " .. innocent .. " 2>/dev/null") end)
      with_pid(innocent)
      refused("EPERM", "the pid was reused")
      assert.is_true(alive(innocent))
      -- Even with its own start time it is not QEMU: its command line does
      -- not name this VM's QMP socket.
      with_pid(innocent, start_time(innocent))
      refused("EPERM", "command line")
      assert.is_true(alive(innocent))
    end)

    it("a process it only attached to and could not greet is never killed", function()
      -- An impostor that passes the pid proof (its command line names the
      -- socket, its start time is recorded) but is no QEMU: the greeting
      -- never comes, so open fails and leaves it alone.
      local arg = "socket,id=qmp,path=" .. DIR .. "/qmp.sock,server=on,wait=off"
      local impostor = tonumber(sh("sh -c 'sleep 300; :' sh " .. q(arg) .. " >/dev/null 2>&1 & echo $!"))
      -- Its sleep too: killing the shell alone would leave it behind.
      finally(function() run("pkill -P " .. impostor .. "; kill " .. impostor .. " 2>/dev/null") end)
      assert.is_true(eventually(function() return start_time(impostor) ~= nil end, 2000))
      -- Its socket is one nobody serves.
      local real = DIR .. "/qmp.sock"
      assert(run("mv " .. q(real) .. " " .. q(ROOT .. "/qmp.sock.real")))
      with_pid(impostor, start_time(impostor))
      local code, msg = open_elsewhere(ID, DIR)
      assert(run("mv " .. q(ROOT .. "/qmp.sock.real") .. " " .. q(real)))
      assert.equal("ETIMEDOUT", code, msg)
      assert.matches("did not greet", msg)
      assert.is_true(alive(impostor), "the impostor was killed")
    end)
  end)

  it("takes one owner at a time: a second open is EBUSY at once, the first keeps working", function()
    -- The first owner holds the VM open for a while, and changes it after
    -- the second open was refused.
    local flag = ROOT .. "/second-tried"
    local first = T.orrery_run(ROOT, "first", string.format([[
local orrery = require("orrery")
local vm = assert(orrery.open(%q, { runtime_dir = %q }))
io.write("open\n") io.flush()
local f
repeat orrery.sleep(20); f = io.open(%q) until f
f:close()
assert(vm:remove_scsi_disk(0, 1))
assert(vm:add_scsi_disk(0, 1, { Type = "VirtualDisk", Path = %q }))
io.write("still working\n") io.flush()
vm:close()
]], ID, DIR, flag, DISK), {}, true)
    assert.is_true(eventually(function() return (read(ROOT .. "/first.log") or ""):find("open") ~= nil end, 15000),
      read(ROOT .. "/first.log"))
    local t0 = orrery.now()
    local vm, err, code = orrery.open(ID, { runtime_dir = DIR })
    local took = orrery.now() - t0
    assert.is_nil(vm)
    assert.equal("EBUSY", code, err)
    assert.matches("another engine process", err)
    assert.is_true(took < 2000, "EBUSY took " .. took .. " ms")
    T.spit(flag, "")
    assert.is_true(eventually(function() return not alive(first) end, 15000))
    assert.matches("still working", T.slurp(ROOT .. "/first.log"))
    -- The first owner is gone: the VM opens again.
    vm = assert(orrery.open(ID, { runtime_dir = DIR }))
    assert.equal(pid, vm:properties().ProcessId)
    vm:close()
    good = T.slurp(STATE)
  end)
end)

describe("a shared runtime root (sticky, 1777)", function()
  local base = T.tmpdir()
  local shared = base .. "/shared"

  teardown(function() run("rm -rf " .. q(base)) end)

  it("never trusts, signals or deletes another user's VM", function()
    if not is_root then pending("making files of another user needs root") return end
    assert(run("mkdir -p " .. q(shared) .. " && chmod 1777 " .. q(shared)))
    -- Another user's "VM": a directory and a state.json of theirs naming a
    -- process of theirs.
    local victim = tonumber(sh("setpriv --reuid=nobody --regid=nogroup --clear-groups sleep 300 >/dev/null 2>&1 & echo $!"))
    finally(function() run("kill " .. victim .. " 2>/dev/null") end)
    local theirs = shared .. "/vm1"
    assert(run("mkdir -m 700 " .. q(theirs)))
    T.spit(theirs .. "/state.json", string.format('{"Version":1,"Id":"vm1","ProcessId":%d}', victim))
    T.spit(theirs .. "/qemu.pid", tostring(victim))
    assert(run("chmod 600 " .. q(theirs) .. "/* && chown -R nobody " .. q(theirs)))
    local vm, err, code = orrery.open("vm1", { runtime_dir = theirs })
    assert.is_nil(vm)
    assert.equal("EPERM", code, err)
    assert.matches("owned by uid", err)
    assert.is_true(alive(victim), "the other user's process was killed")
    assert.is_not_nil(read(theirs .. "/state.json"), "the other user's directory was removed")
    -- A new engine on that root sweeps only its own leftovers.
    run("kill " .. victim)
    assert.is_true(eventually(function() return not alive(victim) end, 5000))
    local rc = T.orrery_run(base, "sweep", [[
local orrery = require("orrery")
local b = orrery.builder{ owner = "x" }
b:set_memory{ SizeInMB = 64 }
assert(orrery.create("sweep", b, { backend = "plan" }))]],
      { ORRERY_RUNTIME_DIR = shared })
    assert.equal(0, rc)
    assert.is_not_nil(read(theirs .. "/state.json"), "the sweep removed another user's directory")
  end)
end)
